/* sieve_run.c: the Sieve interpreter (RFC 5228 section 2.10, 4, 5).
 *
 * Walks the typed tree from common/sieve.c once, top to bottom. Tests read
 * the parsed header and the envelope; actions are only collected, never
 * carried out here, so a run that fails half-way has done nothing and the
 * caller falls back to the implicit keep (2.10.6). Invariants: duplicate
 * fileinto/redirect/keep of the same target collapse into one action
 * (2.10.3); keep, fileinto, redirect and discard cancel the implicit keep,
 * vacation does not (RFC 5230 4.7); the action list never passes
 * SIEVE_MAX_ACTIONS nor the redirects SIEVE_MAX_REDIRECTS. */
#include "sieve_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "buffer.h"
#include "store.h"

/* How a block's run ended. */
enum run_status { RUN_CONTINUE, RUN_STOP, RUN_ERROR };

struct run {
	const struct sieve_input *in;
	struct sieve_result *r;
	size_t redirects;
};

/* Records a run-time error (the first one). */
static enum run_status run_fail(struct run *run, unsigned line, const char *what,
				const char *detail)
{
	if (run->r->error == NULL)
		run->r->error = xasprintf("line %u: %s%s%s", line, what, detail ? ": " : "",
					  detail ? detail : "");
	return RUN_ERROR;
}

/* ---- matching (RFC 5228 2.7.1) ---- */

enum pattern_kind { PATTERN_LITERAL, PATTERN_ONE, PATTERN_ANY };
struct pattern_item {
	enum pattern_kind kind;
	unsigned char c;
};

/* Compares two octets under the comparator. */
static bool comparator_equal(enum sieve_comparator comparator, unsigned char a, unsigned char b)
{
	if (comparator == SIEVE_COMPARATOR_ASCII_CASEMAP) {
		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a - 'A' + 'a');
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b - 'A' + 'a');
	}
	return a == b;
}

/* Length of the character at s: one octet for i;octet, a UTF-8 sequence
 * otherwise (a stray continuation byte counts alone). */
static size_t char_length(enum sieve_comparator comparator, const char *s, size_t left)
{
	if (comparator == SIEVE_COMPARATOR_OCTET || left == 0)
		return 1;
	size_t n = 1;
	while (n < left && n < 4 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n++;
	return n;
}

/* Glob matching of value against the compiled pattern: '*' any run, '?'
 * one character. Iterative with one backtrack point, so O(len * items). */
static bool pattern_match(enum sieve_comparator comparator, const struct pattern_item *items,
			  size_t count, const char *value, size_t len)
{
	size_t vi = 0, pi = 0, star = (size_t)-1, mark = 0;
	while (vi < len) {
		if (pi < count && items[pi].kind == PATTERN_ONE) {
			vi += char_length(comparator, value + vi, len - vi);
			pi++;
		} else if (pi < count && items[pi].kind == PATTERN_LITERAL &&
			   comparator_equal(comparator, items[pi].c, (unsigned char)value[vi])) {
			vi++;
			pi++;
		} else if (pi < count && items[pi].kind == PATTERN_ANY) {
			star = pi++;
			mark = vi;
		} else if (star != (size_t)-1) {
			pi = star + 1;
			mark += char_length(comparator, value + mark, len - mark);
			vi = mark;
		} else {
			return false;
		}
	}
	while (pi < count && items[pi].kind == PATTERN_ANY)
		pi++;
	return pi == count;
}

bool sieve_match(enum sieve_match_type match, enum sieve_comparator comparator,
		 const char *value, const char *key)
{
	size_t vlen = strlen(value), klen = strlen(key);
	switch (match) {
	case SIEVE_MATCH_IS:
		if (vlen != klen)
			return false;
		for (size_t i = 0; i < vlen; i++)
			if (!comparator_equal(comparator, (unsigned char)value[i],
					      (unsigned char)key[i]))
				return false;
		return true;
	case SIEVE_MATCH_CONTAINS:
		for (size_t start = 0; start + klen <= vlen; start++) {
			size_t i = 0;
			while (i < klen && comparator_equal(comparator, (unsigned char)value[start + i],
							    (unsigned char)key[i]))
				i++;
			if (i == klen)
				return true;
		}
		return false;
	case SIEVE_MATCH_MATCHES: {
		struct pattern_item *items = xmalloc((klen + 1) * sizeof(*items));
		size_t count = 0;
		for (size_t i = 0; i < klen; i++) {
			struct pattern_item *it = &items[count++];
			if (key[i] == '*') {
				it->kind = PATTERN_ANY;
			} else if (key[i] == '?') {
				it->kind = PATTERN_ONE;
			} else {
				if (key[i] == '\\' && i + 1 < klen)
					i++;
				it->kind = PATTERN_LITERAL;
				it->c = (unsigned char)key[i];
			}
		}
		bool ok = pattern_match(comparator, items, count, value, vlen);
		free(items);
		return ok;
	}
	}
	return false;
}

/* True when value matches any of the keys. */
static bool test_keys_match(const struct sieve_test *t, const char *value)
{
	for (size_t i = 0; i < t->keys.count; i++)
		if (sieve_match(t->match, t->comparator, value, t->keys.items[i]))
			return true;
	return false;
}

/* ---- tests ---- */

/* The decoded value of a header field, trailing whitespace removed (caller frees). */
static char *header_value_decoded(const struct header_field *f)
{
	char *value = header_decode_words(f->value);
	size_t len = strlen(value);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' ||
			   value[len - 1] == '\r' || value[len - 1] == '\n'))
		value[--len] = '\0';
	return value;
}

/* Picks the address part of local@domain into out; false when the part is
 * absent (a :detail of an address without '+', RFC 5233 4). */
static bool address_part(enum sieve_address_part part, const char *local, const char *domain,
			 buf_t *out)
{
	buf_reset(out);
	const char *plus = strchr(local, '+');
	switch (part) {
	case SIEVE_PART_ALL:
		buf_append_str(out, local);
		if (domain != NULL && domain[0] != '\0') {
			buf_append_char(out, '@');
			buf_append_str(out, domain);
		}
		return true;
	case SIEVE_PART_LOCALPART:
		buf_append_str(out, local);
		return true;
	case SIEVE_PART_DOMAIN:
		buf_append_str(out, domain != NULL ? domain : "");
		return true;
	case SIEVE_PART_USER:
		buf_append(out, local, plus != NULL ? (size_t)(plus - local) : strlen(local));
		return true;
	case SIEVE_PART_DETAIL:
		if (plus == NULL)
			return false;
		buf_append_str(out, plus + 1);
		return true;
	}
	return false;
}

/* header: any occurrence of any named field matches any key. */
static bool test_header(const struct run *run, const struct sieve_test *t)
{
	const struct header *h = run->in->header;
	for (size_t n = 0; n < t->fields.count; n++) {
		for (size_t i = 0; i < h->count; i++) {
			if (strcasecmp(h->fields[i].name, t->fields.items[n]) != 0)
				continue;
			char *value = header_value_decoded(&h->fields[i]);
			bool ok = test_keys_match(t, value);
			free(value);
			if (ok)
				return true;
		}
	}
	return false;
}

/* address: every address in the named fields, by address part. */
static bool test_address(const struct run *run, const struct sieve_test *t)
{
	const struct header *h = run->in->header;
	buf_t part = BUF_INIT;
	bool ok = false;
	for (size_t n = 0; n < t->fields.count && !ok; n++) {
		for (size_t i = 0; i < h->count && !ok; i++) {
			if (strcasecmp(h->fields[i].name, t->fields.items[n]) != 0)
				continue;
			struct address_list list = {NULL, 0};
			const char *value = h->fields[i].value;
			if (address_list_parse(value, strlen(value), &list) < 0)
				continue;
			for (size_t a = 0; a < list.count && !ok; a++) {
				const struct mail_address *addr = &list.items[a];
				if (addr->local == NULL)
					continue;
				if (address_part(t->part, addr->local, addr->domain, &part))
					ok = test_keys_match(t, buf_cstr(&part));
			}
			address_list_free(&list);
		}
	}
	buf_free(&part);
	return ok;
}

/* envelope: "from" and "to"; the null sender is "" whatever the part (5.4). */
static bool test_envelope(const struct run *run, const struct sieve_test *t)
{
	buf_t part = BUF_INIT;
	bool ok = false;
	for (size_t n = 0; n < t->fields.count && !ok; n++) {
		bool from = strcasecmp(t->fields.items[n], "from") == 0;
		const char *address = from ? run->in->envelope_from : run->in->envelope_to;
		if (address == NULL)
			continue;
		if (address[0] == '\0') {
			ok = test_keys_match(t, "");
			continue;
		}
		const char *at = strrchr(address, '@');
		char *local = at != NULL ? xstrndup(address, (size_t)(at - address))
					 : xstrdup(address);
		if (address_part(t->part, local, at != NULL ? at + 1 : NULL, &part))
			ok = test_keys_match(t, buf_cstr(&part));
		free(local);
	}
	buf_free(&part);
	return ok;
}

/* exists: every named field is present. */
static bool test_exists(const struct run *run, const struct sieve_test *t)
{
	for (size_t n = 0; n < t->fields.count; n++)
		if (header_get(run->in->header, t->fields.items[n]) == NULL)
			return false;
	return true;
}

static bool test_eval(const struct run *run, const struct sieve_test *t);

/* not, anyof, allof. */
static bool test_logic(const struct run *run, const struct sieve_test *t)
{
	if (t->kind == SIEVE_TEST_NOT)
		return !test_eval(run, &t->tests[0]);
	bool any = t->kind == SIEVE_TEST_ANYOF;
	for (size_t i = 0; i < t->test_count; i++)
		if (test_eval(run, &t->tests[i]) == any)
			return any; /* anyof short-circuits on true, allof on false */
	return !any;
}

/* Evaluates one test. */
static bool test_eval(const struct run *run, const struct sieve_test *t)
{
	switch (t->kind) {
	case SIEVE_TEST_TRUE:
		return true;
	case SIEVE_TEST_FALSE:
		return false;
	case SIEVE_TEST_NOT:
	case SIEVE_TEST_ANYOF:
	case SIEVE_TEST_ALLOF:
		return test_logic(run, t);
	case SIEVE_TEST_HEADER:
		return test_header(run, t);
	case SIEVE_TEST_ADDRESS:
		return test_address(run, t);
	case SIEVE_TEST_ENVELOPE:
		return test_envelope(run, t);
	case SIEVE_TEST_EXISTS:
		return test_exists(run, t);
	case SIEVE_TEST_SIZE:
		return t->over ? run->in->size > t->limit : run->in->size < t->limit;
	}
	return false;
}

/* ---- actions ---- */

/* Adds an action unless the same one is already there. */
static enum run_status action_add(struct run *run, const struct sieve_command *c,
				  enum sieve_action_kind kind, const char *target)
{
	struct sieve_result *r = run->r;
	for (size_t i = 0; i < r->count; i++) {
		const struct sieve_action *a = &r->actions[i];
		if (a->kind != kind)
			continue;
		if (kind == SIEVE_ACTION_KEEP || kind == SIEVE_ACTION_DISCARD)
			return RUN_CONTINUE;
		if (kind == SIEVE_ACTION_FILEINTO && strcmp(a->folder, target) == 0)
			return RUN_CONTINUE;
		if (kind == SIEVE_ACTION_REDIRECT && strcasecmp(a->address, target) == 0)
			return RUN_CONTINUE;
		if (kind == SIEVE_ACTION_VACATION)
			return run_fail(run, c->line, "vacation used more than once", NULL);
	}
	if (r->count >= SIEVE_MAX_ACTIONS)
		return run_fail(run, c->line, "too many actions", NULL);
	if (kind == SIEVE_ACTION_REDIRECT && ++run->redirects > SIEVE_MAX_REDIRECTS)
		return run_fail(run, c->line, "too many redirects", NULL);
	r->actions = xrealloc(r->actions, (r->count + 1) * sizeof(*r->actions));
	struct sieve_action *a = &r->actions[r->count++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->line = c->line;
	if (kind == SIEVE_ACTION_FILEINTO) {
		a->folder = target;
		a->create = c->create;
	} else if (kind == SIEVE_ACTION_REDIRECT) {
		a->address = target;
	} else if (kind == SIEVE_ACTION_VACATION) {
		a->vacation = c;
	}
	if (kind != SIEVE_ACTION_VACATION)
		r->implicit_keep = false;
	return RUN_CONTINUE;
}

static enum run_status block_run(struct run *run, const struct sieve_block *block);

/* Runs one command. */
static enum run_status command_run(struct run *run, const struct sieve_command *c)
{
	switch (c->kind) {
	case SIEVE_CMD_IF:
		for (size_t i = 0; i < c->branch_count; i++) {
			const struct sieve_branch *b = &c->branches[i];
			if (b->test == NULL || test_eval(run, b->test))
				return block_run(run, &b->block);
		}
		return RUN_CONTINUE;
	case SIEVE_CMD_STOP:
		return RUN_STOP;
	case SIEVE_CMD_KEEP:
		return action_add(run, c, SIEVE_ACTION_KEEP, NULL);
	case SIEVE_CMD_DISCARD:
		return action_add(run, c, SIEVE_ACTION_DISCARD, NULL);
	case SIEVE_CMD_FILEINTO:
		if (strcasecmp(c->argument, "INBOX") == 0)
			return action_add(run, c, SIEVE_ACTION_KEEP, NULL);
		if (!store_folder_name_valid(c->argument))
			return run_fail(run, c->line, "fileinto: invalid folder name", c->argument);
		return action_add(run, c, SIEVE_ACTION_FILEINTO, c->argument);
	case SIEVE_CMD_REDIRECT:
		return action_add(run, c, SIEVE_ACTION_REDIRECT, c->argument);
	case SIEVE_CMD_VACATION:
		return action_add(run, c, SIEVE_ACTION_VACATION, NULL);
	}
	return RUN_CONTINUE;
}

/* Runs the commands of a block in order until one stops the script. */
static enum run_status block_run(struct run *run, const struct sieve_block *block)
{
	for (size_t i = 0; i < block->count; i++) {
		enum run_status status = command_run(run, &block->commands[i]);
		if (status != RUN_CONTINUE)
			return status;
	}
	return RUN_CONTINUE;
}

int sieve_run(const struct sieve_script *script, const struct sieve_input *in,
	      struct sieve_result *r)
{
	memset(r, 0, sizeof(*r));
	r->implicit_keep = true;
	struct run run = {in, r, 0};
	if (block_run(&run, &script->top) == RUN_ERROR) {
		free(r->actions);
		r->actions = NULL;
		r->count = 0;
		r->implicit_keep = true;
		return -1;
	}
	return 0;
}

void sieve_result_free(struct sieve_result *r)
{
	free(r->actions);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

const char *sieve_action_name(enum sieve_action_kind kind)
{
	static const char *const names[] = {
		[SIEVE_ACTION_KEEP] = "keep",         [SIEVE_ACTION_FILEINTO] = "fileinto",
		[SIEVE_ACTION_REDIRECT] = "redirect", [SIEVE_ACTION_DISCARD] = "discard",
		[SIEVE_ACTION_VACATION] = "vacation",
	};
	return (size_t)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}
