/* pop3box.c: a POP3 maildrop as the mua sees it: one entry per message,
 * keyed by its UIDL, with the headers the index shows and the flags POP3
 * does not keep (read, answered, flagged, deleted), cached in a file so that
 * headers are read once and flags survive a restart.
 *
 * A refresh runs on a client in the TRANSACTION state and goes:
 *
 *   UIDL --> LIST --> TOP n 0 for each message the cache does not know, in
 *   batches of POP3BOX_TOP_BATCH (the owner hears of each batch) --> done
 *
 * Before a refresh the entries are the last maildrop; after it they are the
 * messages of this session in maildrop order (number = index + 1), each
 * taking its headers and flags from the old entry with the same UIDL.
 * Entries whose UIDL is gone are forgotten (another client removed them).
 *
 * The cache file has one line per message: UIDL, flags, size, date, the
 * attachment mark, then From name, From address, Subject, Message-ID,
 * In-Reply-To, References, separated by TABs (TABs and line ends in values
 * become spaces). A line that does not parse is skipped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "buffer.h"
#include "header.h"
#include "mua.h"

#define POP3BOX_TOP_BATCH 100
#define POP3BOX_MAX_MESSAGES 1000000
#define POP3BOX_CACHE_LINE_MAX 16384
#define POP3BOX_UIDL_MAX 70 /* RFC 1939 7: 1 to 70 characters */

enum pop3box_step { STEP_IDLE, STEP_UIDL, STEP_LIST, STEP_TOP };

struct pop3box {
	char *cache_path;     /* NULL = no cache file */
	struct pop3_entry *entries;
	size_t count;
	/* a refresh in progress */
	enum pop3box_step step;
	pop3c *cl;
	struct pop3_entry *old; /* the entries before the refresh, sorted by UIDL */
	size_t old_count;
	size_t top_next, new_count;
	size_t top_queue[POP3BOX_TOP_BATCH]; /* entry indexes of the batch on its way */
	size_t top_head, top_count;
	bool top_failed;
	pop3box_done_cb *done;
	pop3box_done_cb *progress;
	void *arg;
};

/* Frees the strings of one entry. */
static void pop3_entry_clear(struct pop3_entry *e)
{
	free(e->uidl);
	free(e->from);
	free(e->from_addr);
	free(e->subject);
	free(e->message_id);
	free(e->in_reply_to);
	free(e->references);
	memset(e, 0, sizeof(*e));
}

/* Frees an array of entries. */
static void pop3_entries_free(struct pop3_entry **entries, size_t *count)
{
	for (size_t i = 0; i < *count; i++)
		pop3_entry_clear(&(*entries)[i]);
	free(*entries);
	*entries = NULL;
	*count = 0;
}

/* A copy of s that fits one cache field (TAB, CR, LF become spaces). */
static char *pop3box_field(const char *s)
{
	char *out = xstrdup(s != NULL ? s : "");
	for (char *p = out; *p != '\0'; p++)
		if (*p == '\t' || *p == '\r' || *p == '\n')
			*p = ' ';
	return out;
}

/* Fills an entry's index fields from a header section (TOP n 0). */
void pop3_entry_set_headers(struct pop3_entry *e, const char *text, size_t len)
{
	struct header h;
	header_parse(text, len, &h);
	const char *from = header_get(&h, "From");
	struct address_list list = {0};
	char *name = NULL, *addr = NULL;
	if (from != NULL && address_list_parse(from, strlen(from), &list) == 0 && list.count > 0) {
		const struct mail_address *a = &list.items[0];
		if (a->local != NULL)
			addr = mail_address_spec(a);
		if (a->name != NULL && a->name[0] != '\0')
			name = xstrdup(a->name);
	}
	address_list_free(&list);
	if (addr == NULL)
		addr = from != NULL ? header_decode_words(from) : xstrdup("");
	if (name == NULL)
		name = xstrdup(addr);
	free(e->from);
	free(e->from_addr);
	e->from = pop3box_field(name);
	e->from_addr = pop3box_field(addr);
	free(name);
	free(addr);
	const char *subject = header_get(&h, "Subject");
	char *decoded = subject != NULL ? header_decode_words(subject) : xstrdup("");
	free(e->subject);
	e->subject = pop3box_field(decoded);
	for (char *p = e->subject; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	free(decoded);
	const char *date = header_get(&h, "Date");
	int tz;
	if (date == NULL || header_parse_date(date, &e->time, &tz) < 0)
		e->time = 0;
	const char *mid = header_get(&h, "Message-ID");
	char *id = NULL;
	if (mid != NULL) {
		const char *lt = strchr(mid, '<'), *gt = lt != NULL ? strchr(lt, '>') : NULL;
		id = gt != NULL ? xstrndup(lt, (size_t)(gt - lt + 1)) : xstrdup(mid);
	}
	free(e->message_id);
	e->message_id = pop3box_field(id);
	free(id);
	free(e->in_reply_to);
	e->in_reply_to = pop3box_field(header_get(&h, "In-Reply-To"));
	free(e->references);
	e->references = pop3box_field(header_get(&h, "References"));
	/* Only the header is known: a multipart/mixed message most likely has an attachment. */
	const char *ctype = header_get(&h, "Content-Type");
	e->attachment = ctype != NULL && strncasecmp(ctype + strspn(ctype, " \t"), "multipart/mixed",
						     15) == 0;
	e->have_headers = true;
	header_free(&h);
}

/* ---- the cache file ---- */

/* The cache file for an account: $XDG_CACHE_HOME/mailstack/pop3-LOGIN@HOST-PORT. */
char *pop3box_cache_path(const struct mua_account *a)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char *dir = xdg != NULL && xdg[0] != '\0' ? xasprintf("%s/mailstack", xdg)
		    : xasprintf("%s/.cache/mailstack", home != NULL ? home : ".");
	char *name = xasprintf("pop3-%s@%s-%d", a->login != NULL ? a->login : a->address,
			       a->read_host, a->read_port);
	for (char *p = name; *p != '\0'; p++)
		if (*p == '/' || (unsigned char)*p < 0x20)
			*p = '_';
	char *path = xasprintf("%s/%s", dir, name);
	free(dir);
	free(name);
	return path;
}

/* Splits a cache line into its fields: 0, or -1 when it is malformed. */
static int pop3box_parse_line(char *line, struct pop3_entry *e)
{
	char *fields[11];
	size_t n = 0;
	char *p = line;
	while (n < 11) {
		fields[n++] = p;
		char *tab = strchr(p, '\t');
		if (tab == NULL)
			break;
		*tab = '\0';
		p = tab + 1;
	}
	if (n != 11 || fields[0][0] == '\0' || strlen(fields[0]) > POP3BOX_UIDL_MAX)
		return -1;
	memset(e, 0, sizeof(*e));
	e->uidl = xstrdup(fields[0]);
	e->flags = (unsigned)strtoul(fields[1], NULL, 10) & 31u;
	e->size = (uint32_t)strtoul(fields[2], NULL, 10);
	e->time = strtoll(fields[3], NULL, 10);
	e->attachment = fields[4][0] == '1';
	e->from = xstrdup(fields[5]);
	e->from_addr = xstrdup(fields[6]);
	e->subject = xstrdup(fields[7]);
	e->message_id = xstrdup(fields[8]);
	e->in_reply_to = xstrdup(fields[9]);
	e->references = xstrdup(fields[10]);
	e->have_headers = true;
	return 0;
}

/* Reads the cache file (a missing or unreadable one is an empty cache). */
static void pop3box_load(struct pop3box *b)
{
	if (b->cache_path == NULL)
		return;
	FILE *f = fopen(b->cache_path, "r");
	if (f == NULL)
		return;
	char *line = xmalloc(POP3BOX_CACHE_LINE_MAX);
	size_t cap = 0;
	while (fgets(line, POP3BOX_CACHE_LINE_MAX, f) != NULL && b->count < POP3BOX_MAX_MESSAGES) {
		size_t len = strcspn(line, "\n");
		if (line[len] != '\n' && !feof(f)) {
			/* Too long: skip the rest of it. */
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			continue;
		}
		line[len] = '\0';
		struct pop3_entry e;
		if (pop3box_parse_line(line, &e) < 0)
			continue;
		if (b->count == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			b->entries = xrealloc(b->entries, cap * sizeof(*b->entries));
		}
		e.number = (uint32_t)b->count + 1;
		b->entries[b->count++] = e;
	}
	free(line);
	fclose(f);
}

/* Makes the directories above path (mode 0700). */
static void pop3box_make_dirs(const char *path)
{
	char *dir = xstrdup(path);
	for (char *p = dir + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(dir, 0700);
		*p = '/';
	}
	free(dir);
}

/* Writes the cache file (through a temporary file and rename): 0 or -1. */
int pop3box_save(const struct pop3box *b, char **err_r)
{
	if (b->cache_path == NULL)
		return 0;
	pop3box_make_dirs(b->cache_path);
	char *tmp = xasprintf("%s.tmp", b->cache_path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		*err_r = xasprintf("cannot write %s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	for (size_t i = 0; i < b->count; i++) {
		const struct pop3_entry *e = &b->entries[i];
		if (!e->have_headers)
			continue;
		fprintf(f, "%s\t%u\t%u\t%lld\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e->uidl, e->flags, e->size,
			(long long)e->time, e->attachment ? 1 : 0, e->from, e->from_addr, e->subject,
			e->message_id, e->in_reply_to, e->references);
	}
	bool failed = ferror(f) != 0;
	failed |= fclose(f) != 0;
	if (failed || rename(tmp, b->cache_path) != 0) {
		*err_r = xasprintf("cannot write %s: %s", b->cache_path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

/* ---- the mailbox ---- */

/* A mailbox with what the cache file holds (cache_path NULL = none). */
struct pop3box *pop3box_new(const char *cache_path)
{
	struct pop3box *b = xcalloc(1, sizeof(*b));
	b->cache_path = cache_path != NULL ? xstrdup(cache_path) : NULL;
	pop3box_load(b);
	return b;
}

void pop3box_free(struct pop3box **bp)
{
	struct pop3box *b = *bp;
	if (b == NULL)
		return;
	pop3_entries_free(&b->entries, &b->count);
	pop3_entries_free(&b->old, &b->old_count);
	free(b->cache_path);
	free(b);
	*bp = NULL;
}

size_t pop3box_count(const struct pop3box *b)
{
	return b->count;
}

/* Entry for message number n (1-based), or NULL. */
struct pop3_entry *pop3box_entry(struct pop3box *b, uint32_t number)
{
	return number >= 1 && number <= b->count ? &b->entries[number - 1] : NULL;
}

bool pop3box_refreshing(const struct pop3box *b)
{
	return b->step != STEP_IDLE;
}

static int entry_uidl_compare(const void *x, const void *y)
{
	const struct pop3_entry *a = x, *b = y;
	return strcmp(a->uidl, b->uidl);
}

/* Ends the refresh and tells the owner. */
static void pop3box_refresh_end(struct pop3box *b, bool ok, const char *err)
{
	b->step = STEP_IDLE;
	b->cl = NULL;
	pop3_entries_free(&b->old, &b->old_count);
	if (ok) {
		char *serr = NULL;
		if (pop3box_save(b, &serr) < 0)
			free(serr); /* a cache that cannot be written only costs speed */
	}
	pop3box_done_cb *done = b->done;
	b->done = b->progress = NULL;
	if (done != NULL)
		done(b->arg, ok, err, b->new_count);
}

static void pop3box_top_next(struct pop3box *b);

/* One TOP reply: replies come in the order the commands were queued. */
static void pop3box_top_done(void *arg, bool ok, const char *status, const char *data,
			     size_t len)
{
	struct pop3box *b = arg;
	if (b->step != STEP_TOP || b->top_head >= b->top_count)
		return;
	struct pop3_entry *e = &b->entries[b->top_queue[b->top_head++]];
	if (ok && data != NULL)
		pop3_entry_set_headers(e, data, len);
	else
		b->top_failed = true;
	if (b->top_head < b->top_count)
		return;
	if (b->top_failed && pop3c_get_state(b->cl) != IMAPC_READY) {
		pop3box_refresh_end(b, false, status);
		return;
	}
	if (b->progress != NULL)
		b->progress(b->arg, true, NULL, b->new_count);
	pop3box_top_next(b);
}

/* Queues the next batch of TOP commands, or ends the refresh. */
static void pop3box_top_next(struct pop3box *b)
{
	b->top_head = b->top_count = 0;
	b->top_failed = false;
	for (size_t i = b->top_next; i < b->count && b->top_count < POP3BOX_TOP_BATCH; i++) {
		b->top_next = i + 1;
		if (!b->entries[i].have_headers)
			b->top_queue[b->top_count++] = i;
	}
	if (b->top_count == 0) {
		pop3box_refresh_end(b, true, NULL);
		return;
	}
	/* Commands fail at once when the connection is gone: count them all first. */
	size_t n = b->top_count;
	for (size_t k = 0; k < n && b->step == STEP_TOP; k++) {
		char *cmd = xasprintf("TOP %u 0", b->entries[b->top_queue[k]].number);
		pop3c_command(b->cl, cmd, true, pop3box_top_done, b);
		free(cmd);
	}
}

/* LIST: the sizes. */
static void pop3box_list_done(void *arg, bool ok, const char *status, const char *data,
			      size_t len)
{
	struct pop3box *b = arg;
	if (!ok) {
		pop3box_refresh_end(b, false, status);
		return;
	}
	const char *p = data;
	while (p != NULL && *p != '\0') {
		unsigned long n = strtoul(p, NULL, 10);
		const char *sp = strchr(p, ' ');
		if (sp != NULL && n >= 1 && n <= b->count)
			b->entries[n - 1].size = (uint32_t)strtoul(sp + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	b->step = STEP_TOP;
	b->top_next = 0;
	pop3box_top_next(b);
}

/* Parses a UIDL listing into fresh entries, taking what the old ones knew. */
void pop3box_take_uidl(struct pop3box *b, const char *data)
{
	/* The old entries, sorted by UIDL for lookups. */
	pop3_entries_free(&b->old, &b->old_count);
	b->old = b->entries;
	b->old_count = b->count;
	b->entries = NULL;
	b->count = 0;
	if (b->old_count > 0)
		qsort(b->old, b->old_count, sizeof(*b->old), entry_uidl_compare);
	size_t cap = 0;
	b->new_count = 0;
	const char *p = data;
	while (p != NULL && *p != '\0' && b->count < POP3BOX_MAX_MESSAGES) {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		char *line = xstrndup(p, len);
		line[strcspn(line, "\r")] = '\0';
		char *sp = strchr(line, ' ');
		unsigned long n = strtoul(line, NULL, 10);
		if (sp != NULL && n == b->count + 1 && sp[1] != '\0' &&
		    strlen(sp + 1) <= POP3BOX_UIDL_MAX) {
			if (b->count == cap) {
				cap = cap == 0 ? 64 : cap * 2;
				b->entries = xrealloc(b->entries, cap * sizeof(*b->entries));
			}
			struct pop3_entry *e = &b->entries[b->count++];
			struct pop3_entry key = {.uidl = sp + 1};
			struct pop3_entry *old = b->old_count > 0 ?
						 bsearch(&key, b->old, b->old_count, sizeof(*b->old),
							 entry_uidl_compare) : NULL;
			if (old != NULL && old->uidl != NULL) {
				*e = *old;
				memset(old, 0, sizeof(*old));
				/* A hole keeps the array sorted for later searches. */
				old->uidl = xstrdup(e->uidl);
			} else {
				memset(e, 0, sizeof(*e));
				e->uidl = xstrdup(sp + 1);
				b->new_count++;
			}
			e->number = (uint32_t)n;
		}
		free(line);
		p = eol != NULL ? eol + 1 : NULL;
	}
}

/* UIDL: who is who. */
static void pop3box_uidl_done(void *arg, bool ok, const char *status, const char *data,
			      size_t len)
{
	struct pop3box *b = arg;
	if (!ok) {
		pop3box_refresh_end(b, false, status);
		return;
	}
	pop3box_take_uidl(b, data != NULL ? data : "");
	b->step = STEP_LIST;
	pop3c_command(b->cl, "LIST", true, pop3box_list_done, b);
}

/* Starts a refresh on a client in the TRANSACTION state. */
void pop3box_refresh(struct pop3box *b, pop3c *cl, pop3box_done_cb *progress,
		     pop3box_done_cb *done, void *arg)
{
	if (b->step != STEP_IDLE)
		return;
	b->cl = cl;
	b->done = done;
	b->progress = progress;
	b->arg = arg;
	b->step = STEP_UIDL;
	b->new_count = 0;
	pop3c_command(cl, "UIDL", true, pop3box_uidl_done, b);
}
