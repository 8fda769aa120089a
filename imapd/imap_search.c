/* imap_search.c: SEARCH and UID SEARCH (RFC 3501 6.4.4) with every search key,
 * CHARSET UTF-8/US-ASCII, ESEARCH return options (RFC 4731) and CONDSTORE's
 * MODSEQ key (RFC 7162).
 *
 * The criteria are parsed into a tree (bounded depth), then evaluated on each
 * message of the view with what the store already keeps. Before that, each
 * FROM/TO/CC/BCC/SUBJECT key is answered for the whole folder at once from
 * the header columns parsed at delivery (store_search_header: one query, no
 * message read), and the message rows (flags, sizes, dates) and the parsed
 * headers are read only when a key needs them. HEADER, BODY and TEXT read
 * more (the header section or the message), lazily and once per message.
 * Search strings are bound as data (or compared in memory), never query text.
 *
 * Where it runs. A search that reads messages (HEADER, BODY, TEXT) may take
 * seconds on a large folder, and nothing may block the loop that long
 * (DESIGN.md): it goes to libuv's thread pool as a search_job, which holds
 * copies of everything it reads (the criteria, the view's UIDs and \Recent
 * set) and opens its own store handles there (SQLite connections are never
 * shared between threads). Meanwhile the session's input stays paused (its
 * command is active) and its conn is held with conn_ref; when the scan ends,
 * search_work_done finds the session by conn id and answers, or drops the
 * answer if the client left. The view cannot change in between: updates are
 * only applied when a command finishes. Other searches run at once on the
 * loop with the session's shared store handles. Both paths evaluate the
 * same way (search_run), so the responses are the same. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imapd.h"
#include "log.h"

#define SEARCH_MAX_DEPTH 64
#define SEARCH_MAX_NODES 10000

enum search_op {
	SK_ALL, SK_AND, SK_OR, SK_NOT, SK_FLAG_SET, SK_FLAG_UNSET, SK_KEYWORD, SK_UNKEYWORD,
	SK_NEW, SK_OLD, SK_RECENT, SK_LARGER, SK_SMALLER, SK_BEFORE, SK_ON, SK_SINCE,
	SK_SENTBEFORE, SK_SENTON, SK_SENTSINCE, SK_FROM, SK_TO, SK_CC, SK_BCC, SK_SUBJECT,
	SK_HEADER, SK_BODY, SK_TEXT, SK_SEQSET, SK_UIDSET, SK_MODSEQ,
};

struct search_node {
	enum search_op op;
	uint32_t flag;
	char *str;             /* a copy: a worker may read it after the session is gone */
	char *field;           /* HEADER field (a copy) */
	uint64_t num;          /* sizes, days since epoch, MODSEQ */
	struct imap_seqset set;
	struct search_node **kids;
	size_t kid_count;
	uint32_t *hits;        /* header keys: the matching UIDs, ascending */
	size_t hit_count;
	bool hits_ready;
};

struct search_parse {
	const struct imap_arg *args;
	size_t count;
	size_t pos;
	size_t nodes;
	const char *error;
};

/* Frees a tree. */
static void search_node_free(struct search_node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->kid_count; i++)
		search_node_free(n->kids[i]);
	free(n->kids);
	free(n->hits);
	free(n->str);
	free(n->field);
	imap_seqset_free(&n->set);
	free(n);
}

/* A new node, counted against the limit. */
static struct search_node *search_new(struct search_parse *p, enum search_op op)
{
	if (++p->nodes > SEARCH_MAX_NODES) {
		p->error = "Too many search keys";
		return NULL;
	}
	struct search_node *n = xcalloc(1, sizeof(*n));
	n->op = op;
	return n;
}

/* Adds a child node. */
static void search_add_kid(struct search_node *n, struct search_node *kid)
{
	n->kids = xrealloc(n->kids, (n->kid_count + 1) * sizeof(*n->kids));
	n->kids[n->kid_count++] = kid;
}

/* Parses an IMAP date "1-Feb-1994" into days since 1970-01-01. */
static int search_parse_date(const char *text, uint64_t *days_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int day, year;
	char mon[4] = {0};
	char extra;
	if (text == NULL || sscanf(text, "%2d-%3c-%4d%c", &day, mon, &year, &extra) != 3)
		return -1;
	const char *m = strcasestr(months, mon);
	if (m == NULL || (m - months) % 3 != 0 || day < 1 || day > 31 || year < 1970)
		return -1;
	int month = (int)(m - months) / 3;
	int y = year - (month < 2);
	int era = y / 400;
	int yoe = y - era * 400;
	int mp = (month + 10) % 12; /* month is 0-based: March = 0 */
	int doy = (153 * mp + 2) / 5 + day - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	*days_r = (uint64_t)((int64_t)era * 146097 + doe - 719468);
	return 0;
}

static struct search_node *search_parse_key(struct search_parse *p, unsigned depth);

/* Takes the next argument as a string (astring). */
static const char *search_next_string(struct search_parse *p)
{
	if (p->pos >= p->count) {
		p->error = "Missing search argument";
		return NULL;
	}
	const struct imap_arg *a = &p->args[p->pos++];
	const char *s = imap_arg_string(a);
	if (s == NULL || !imap_arg_string_clean(a)) {
		p->error = "Invalid search string";
		return NULL;
	}
	return s;
}

static const struct {
	const char *name;
	enum search_op op;
	uint32_t flag;
} search_simple_keys[] = {
	{"ALL", SK_ALL, 0},
	{"ANSWERED", SK_FLAG_SET, STORE_FLAG_ANSWERED},
	{"DELETED", SK_FLAG_SET, STORE_FLAG_DELETED},
	{"DRAFT", SK_FLAG_SET, STORE_FLAG_DRAFT},
	{"FLAGGED", SK_FLAG_SET, STORE_FLAG_FLAGGED},
	{"SEEN", SK_FLAG_SET, STORE_FLAG_SEEN},
	{"UNANSWERED", SK_FLAG_UNSET, STORE_FLAG_ANSWERED},
	{"UNDELETED", SK_FLAG_UNSET, STORE_FLAG_DELETED},
	{"UNDRAFT", SK_FLAG_UNSET, STORE_FLAG_DRAFT},
	{"UNFLAGGED", SK_FLAG_UNSET, STORE_FLAG_FLAGGED},
	{"UNSEEN", SK_FLAG_UNSET, STORE_FLAG_SEEN},
	{"NEW", SK_NEW, 0},
	{"OLD", SK_OLD, 0},
	{"RECENT", SK_RECENT, 0},
};

static const struct {
	const char *name;
	enum search_op op;
} search_string_keys[] = {
	{"FROM", SK_FROM}, {"TO", SK_TO}, {"CC", SK_CC}, {"BCC", SK_BCC},
	{"SUBJECT", SK_SUBJECT}, {"BODY", SK_BODY}, {"TEXT", SK_TEXT},
	{"KEYWORD", SK_KEYWORD}, {"UNKEYWORD", SK_UNKEYWORD},
};

static const struct {
	const char *name;
	enum search_op op;
} search_date_keys[] = {
	{"BEFORE", SK_BEFORE}, {"ON", SK_ON}, {"SINCE", SK_SINCE},
	{"SENTBEFORE", SK_SENTBEFORE}, {"SENTON", SK_SENTON}, {"SENTSINCE", SK_SENTSINCE},
};

/* Parses a sequence of keys until the end of the list (an implicit AND). */
static struct search_node *search_parse_list(struct search_parse *p, const struct imap_arg *args,
					     size_t count, unsigned depth)
{
	if (depth > SEARCH_MAX_DEPTH) {
		p->error = "Search criteria nested too deeply";
		return NULL;
	}
	struct search_parse sub = *p;
	sub.args = args;
	sub.count = count;
	sub.pos = 0;
	struct search_node *and = search_new(&sub, SK_AND);
	while (and != NULL && sub.pos < sub.count) {
		struct search_node *k = search_parse_key(&sub, depth + 1);
		if (k == NULL) {
			search_node_free(and);
			and = NULL;
			break;
		}
		search_add_kid(and, k);
	}
	if (and != NULL && and->kid_count == 0) {
		sub.error = "Empty search criteria";
		search_node_free(and);
		and = NULL;
	}
	p->nodes = sub.nodes;
	p->error = sub.error;
	return and;
}

/* Parses one search key (with its arguments). */
static struct search_node *search_parse_key(struct search_parse *p, unsigned depth)
{
	if (depth > SEARCH_MAX_DEPTH) {
		p->error = "Search criteria nested too deeply";
		return NULL;
	}
	const struct imap_arg *a = &p->args[p->pos++];
	if (a->type == IMAP_ARG_LIST)
		return search_parse_list(p, a->children, a->count, depth + 1);
	if (a->type != IMAP_ARG_ATOM) {
		p->error = "Invalid search key";
		return NULL;
	}
	const char *k = a->data;
	struct search_node *n;
	for (size_t i = 0; i < sizeof(search_simple_keys) / sizeof(search_simple_keys[0]); i++) {
		if (strcasecmp(k, search_simple_keys[i].name) == 0) {
			n = search_new(p, search_simple_keys[i].op);
			if (n != NULL)
				n->flag = search_simple_keys[i].flag;
			return n;
		}
	}
	for (size_t i = 0; i < sizeof(search_string_keys) / sizeof(search_string_keys[0]); i++) {
		if (strcasecmp(k, search_string_keys[i].name) == 0) {
			const char *s = search_next_string(p);
			if (s == NULL || (n = search_new(p, search_string_keys[i].op)) == NULL)
				return NULL;
			n->str = xstrdup(s);
			return n;
		}
	}
	for (size_t i = 0; i < sizeof(search_date_keys) / sizeof(search_date_keys[0]); i++) {
		if (strcasecmp(k, search_date_keys[i].name) == 0) {
			const char *s = search_next_string(p);
			uint64_t days;
			if (s == NULL || search_parse_date(s, &days) < 0) {
				p->error = "Invalid search date";
				return NULL;
			}
			if ((n = search_new(p, search_date_keys[i].op)) == NULL)
				return NULL;
			n->num = days;
			return n;
		}
	}
	if (strcasecmp(k, "LARGER") == 0 || strcasecmp(k, "SMALLER") == 0 ||
	    strcasecmp(k, "MODSEQ") == 0) {
		bool modseq = strcasecmp(k, "MODSEQ") == 0;
		/* MODSEQ may carry an entry name and type first (RFC 7162 3.1.5). */
		if (modseq && p->pos + 2 < p->count + 0 && p->args[p->pos].type == IMAP_ARG_QUOTED)
			p->pos += 2;
		const char *s = search_next_string(p);
		char *end;
		if (s == NULL || s[0] < '0' || s[0] > '9')
			return p->error = "Invalid number", NULL;
		uint64_t num = strtoull(s, &end, 10);
		if (*end != '\0')
			return p->error = "Invalid number", NULL;
		n = search_new(p, modseq ? SK_MODSEQ : k[0] == 'L' || k[0] == 'l' ? SK_LARGER
										   : SK_SMALLER);
		if (n != NULL)
			n->num = num;
		return n;
	}
	if (strcasecmp(k, "HEADER") == 0) {
		const char *field = search_next_string(p);
		const char *s = field != NULL ? search_next_string(p) : NULL;
		if (s == NULL || (n = search_new(p, SK_HEADER)) == NULL)
			return NULL;
		n->field = xstrdup(field);
		n->str = xstrdup(s);
		return n;
	}
	if (strcasecmp(k, "NOT") == 0 || strcasecmp(k, "OR") == 0) {
		bool or = strcasecmp(k, "OR") == 0;
		n = search_new(p, or ? SK_OR : SK_NOT);
		if (n == NULL)
			return NULL;
		for (int i = 0; i < (or ? 2 : 1); i++) {
			if (p->pos >= p->count) {
				p->error = "Missing search key";
				search_node_free(n);
				return NULL;
			}
			struct search_node *kid = search_parse_key(p, depth + 1);
			if (kid == NULL) {
				search_node_free(n);
				return NULL;
			}
			search_add_kid(n, kid);
		}
		return n;
	}
	bool uid = strcasecmp(k, "UID") == 0;
	const char *set = uid ? search_next_string(p) : k;
	if (set == NULL)
		return NULL;
	if ((n = search_new(p, uid ? SK_UIDSET : SK_SEQSET)) == NULL)
		return NULL;
	char *err = NULL;
	if (imap_seqset_parse(set, &n->set, &err) < 0) {
		free(err);
		search_node_free(n);
		p->error = "Unknown search key";
		return NULL;
	}
	return n;
}

/* ESEARCH's RETURN (...) options (RFC 4731). */
enum { RET_MIN = 1, RET_MAX = 2, RET_ALL = 4, RET_COUNT = 8 };

/* A SEARCH being answered: the question, copied from the session so that
 * the evaluation never reads the session (on the thread pool it may be gone
 * by the time the scan ends), and the answer. */
struct search_job {
	uv_work_t work;
	struct search_node *root;
	char *folder;
	uint32_t *uids;          /* the view's UIDs: uids[seq - 1] */
	size_t count;
	uint32_t *recent;        /* the session's \Recent UIDs, ascending */
	size_t recent_len;
	bool uid;                /* UID SEARCH: answer with UIDs */
	bool modseq;             /* a MODSEQ key: the reply carries the highest */
	bool esearch;            /* RETURN (...) given: answer with ESEARCH */
	unsigned ret_opts;       /* RET_* */
	/* On the thread pool: whose store the worker opens, and whom it answers. */
	char *datadir;
	char *user;
	net_server *srv;
	conn *c;                 /* held with conn_ref until the answer */
	uint64_t conn_id;
	uint64_t queued_ns;
	/* The answer. */
	int ret;                 /* 0 or a STORE_ERR_* */
	uint32_t *found;         /* sequence numbers or UIDs, ascending */
	size_t nfound;
	uint64_t max_modseq;
};

/* What one message offers to the evaluator; the text parts are loaded lazily. */
struct search_msg {
	const struct search_job *job;
	store *st;               /* the handle of the thread evaluating */
	uint32_t uid;
	const struct store_msg *m;  /* NULL when no key needs the row */
	const struct store_msg_headers *h;
	uint32_t seq, star_seq, star_uid;
	char *header;        /* the header section, or NULL until needed */
	size_t header_len;
	char *body;          /* the whole message, or NULL until needed */
	size_t body_len;
	bool header_loaded, body_loaded;
};

/* Case-insensitive (ASCII) substring test on text that may hold NUL bytes:
 * memchr finds the candidates for the needle's first byte in either case. */
static bool search_contains(const char *hay, size_t len, const char *needle)
{
	size_t nlen = strlen(needle);
	if (nlen == 0)
		return true;
	if (hay == NULL || len < nlen)
		return false;
	int lower = tolower((unsigned char)needle[0]), upper = toupper((unsigned char)needle[0]);
	const char *p = hay, *end = hay + (len - nlen) + 1;
	while (p < end) {
		const char *c = memchr(p, lower, (size_t)(end - p));
		if (upper != lower) {
			const char *u = memchr(p, upper, (size_t)((c != NULL ? c : end) - p));
			if (u != NULL)
				c = u;
		}
		if (c == NULL)
			return false;
		if (strncasecmp(c + 1, needle + 1, nlen - 1) == 0)
			return true;
		p = c + 1;
	}
	return false;
}

/* Whether a text part's raw bytes are already its text as the search sees
 * it: no transfer encoding to undo and a charset that needs no conversion. */
static bool search_part_is_plain(const struct mime_part *part)
{
	const char *enc = part->encoding != NULL ? part->encoding : "7bit";
	const char *cs = content_type_param(&part->type, "charset");
	return (strcmp(enc, "7bit") == 0 || strcmp(enc, "8bit") == 0 || strcmp(enc, "binary") == 0) &&
	       (cs == NULL || strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "utf-8") == 0);
}

/* Loads the header section once. */
static void search_need_header(struct search_msg *sm)
{
	if (sm->header_loaded)
		return;
	sm->header_loaded = true;
	(void)store_msg_load_header(sm->st, sm->job->folder, sm->uid, &sm->header,
				    &sm->header_len);
}

/* Loads the message once. */
static void search_need_body(struct search_msg *sm)
{
	if (sm->body_loaded)
		return;
	sm->body_loaded = true;
	(void)store_msg_load(sm->st, sm->job->folder, sm->uid, &sm->body, &sm->body_len);
}

/* HEADER field string: any field of that name whose decoded value contains s. */
static bool search_header(struct search_msg *sm, const char *field, const char *needle)
{
	search_need_header(sm);
	if (sm->header == NULL)
		return false;
	struct header h;
	if (header_parse(sm->header, sm->header_len, &h) < 0)
		return false;
	bool found = false;
	for (size_t i = 0; i < h.count && !found; i++) {
		if (strcasecmp(h.fields[i].name, field) != 0)
			continue;
		char *decoded = header_decode_words(h.fields[i].value);
		found = search_contains(decoded, strlen(decoded), needle);
		free(decoded);
	}
	header_free(&h);
	return found;
}

/* BODY: the raw body, and the decoded text of each part. */
static bool search_body(struct search_msg *sm, const char *needle, bool with_header)
{
	search_need_body(sm);
	if (sm->body == NULL)
		return false;
	size_t hlen = header_section_length(sm->body, sm->body_len);
	if (with_header) {
		if (search_contains(sm->body, hlen, needle))
			return true;
		/* Encoded words only when there are any ("=?" starts each). */
		if (search_contains(sm->body, hlen, "=?")) {
			char *raw = xstrndup(sm->body, hlen);
			char *words = header_decode_words(raw);
			bool found = search_contains(words, strlen(words), needle);
			free(words);
			free(raw);
			if (found)
				return true;
		}
	}
	if (search_contains(sm->body + hlen, sm->body_len - hlen, needle))
		return true;
	struct mime_part root;
	if (mime_parse(sm->body, sm->body_len, &root) < 0)
		return false;
	bool found = false;
	/* Walk the leaves iteratively (depth is bounded by MIME_MAX_DEPTH). */
	const struct mime_part *stack[MIME_MAX_DEPTH + 2];
	size_t top = 0;
	stack[top++] = &root;
	while (top > 0 && !found) {
		const struct mime_part *part = stack[--top];
		for (size_t i = 0; i < part->child_count && top < MIME_MAX_DEPTH + 1; i++)
			stack[top++] = &part->children[i];
		/* A plain part was searched with the raw body above. */
		if (part->child_count == 0 && part->type.type != NULL &&
		    strcmp(part->type.type, "text") == 0 && !search_part_is_plain(part)) {
			char *text = NULL;
			size_t len = 0;
			if (mime_decode_body(sm->body, part, true, &text, &len) == 0) {
				found = search_contains(text, len, needle);
				free(text);
			}
		}
	}
	mime_part_free(&root);
	return found;
}

/* Whether a space-separated keyword list holds kw. */
static bool search_has_keyword(const char *keywords, const char *kw)
{
	size_t len = strlen(kw);
	for (const char *p = keywords; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ' ');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n == len && strncasecmp(p, kw, n) == 0)
			return true;
		p = end != NULL ? end + 1 : NULL;
	}
	return false;
}

/* Days since the epoch of a time in its own zone (RFC 3501: ignoring time and zone). */
static uint64_t search_day(int64_t t, int tz_minutes)
{
	int64_t local = t + (int64_t)tz_minutes * 60;
	return local < 0 ? 0 : (uint64_t)(local / 86400);
}

/* Whether a UID is \Recent for the session that asked. */
static bool search_is_recent(const struct search_job *job, uint32_t uid)
{
	size_t lo = 0, hi = job->recent_len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (job->recent[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < job->recent_len && job->recent[lo] == uid;
}

/* Evaluates a node for one message. */
static bool search_eval(const struct search_node *n, struct search_msg *sm)
{
	const struct store_msg *m = sm->m;
	const struct store_msg_headers *h = sm->h;
	switch (n->op) {
	case SK_ALL:
		return true;
	case SK_AND:
		for (size_t i = 0; i < n->kid_count; i++) {
			if (!search_eval(n->kids[i], sm))
				return false;
		}
		return true;
	case SK_OR:
		return search_eval(n->kids[0], sm) || search_eval(n->kids[1], sm);
	case SK_NOT:
		return !search_eval(n->kids[0], sm);
	case SK_FLAG_SET:
		return (m->flags & n->flag) != 0;
	case SK_FLAG_UNSET:
		return (m->flags & n->flag) == 0;
	case SK_KEYWORD:
		return search_has_keyword(m->keywords, n->str);
	case SK_UNKEYWORD:
		return !search_has_keyword(m->keywords, n->str);
	case SK_RECENT:
		return search_is_recent(sm->job, sm->uid);
	case SK_NEW:
		return search_is_recent(sm->job, sm->uid) && !(m->flags & STORE_FLAG_SEEN);
	case SK_OLD:
		return !search_is_recent(sm->job, sm->uid);
	case SK_LARGER:
		return m->size > n->num;
	case SK_SMALLER:
		return m->size < n->num;
	case SK_MODSEQ:
		return m->modseq >= n->num;
	case SK_BEFORE:
		return search_day(m->internal_date, m->internal_tz) < n->num;
	case SK_ON:
		return search_day(m->internal_date, m->internal_tz) == n->num;
	case SK_SINCE:
		return search_day(m->internal_date, m->internal_tz) >= n->num;
	case SK_SENTBEFORE:
	case SK_SENTON:
	case SK_SENTSINCE: {
		if (h == NULL || h->date_time == 0)
			return false;
		uint64_t d = search_day(h->date_time, h->date_tz);
		return n->op == SK_SENTBEFORE ? d < n->num : n->op == SK_SENTON ? d == n->num
										 : d >= n->num;
	}
	case SK_FROM:
	case SK_TO:
	case SK_CC:
	case SK_BCC:
	case SK_SUBJECT: {
		static const char *const names[] = {[SK_FROM] = "From", [SK_TO] = "To",
						     [SK_CC] = "Cc", [SK_BCC] = "Bcc",
						     [SK_SUBJECT] = "Subject"};
		if (n->hits_ready) {
			size_t lo = 0, hi = n->hit_count;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (n->hits[mid] < sm->uid)
					lo = mid + 1;
				else
					hi = mid;
			}
			return lo < n->hit_count && n->hits[lo] == sm->uid;
		}
		const char *v = NULL;
		if (h != NULL) {
			v = n->op == SK_FROM ? h->from_utf8 : n->op == SK_TO ? h->to_utf8
				: n->op == SK_CC ? h->cc_utf8 : n->op == SK_BCC ? h->bcc_utf8
										 : h->subject_utf8;
		}
		if (v != NULL)
			return search_contains(v, strlen(v), n->str);
		return h == NULL ? search_header(sm, names[n->op], n->str) : false;
	}
	case SK_HEADER:
		return search_header(sm, n->field, n->str);
	case SK_BODY:
		return search_body(sm, n->str, false);
	case SK_TEXT:
		return search_body(sm, n->str, true);
	case SK_SEQSET:
		return imap_seqset_contains(&n->set, sm->seq, sm->star_seq);
	case SK_UIDSET:
		return imap_seqset_contains(&n->set, sm->uid, sm->star_uid);
	}
	return false;
}

/* Whether the tree uses a MODSEQ key (the reply then carries (MODSEQ n)). */
static bool search_uses_modseq(const struct search_node *n)
{
	if (n->op == SK_MODSEQ)
		return true;
	for (size_t i = 0; i < n->kid_count; i++) {
		if (search_uses_modseq(n->kids[i]))
			return true;
	}
	return false;
}

/* What the evaluation of a tree reads besides the view. */
enum { NEED_MSG = 1, NEED_HEADERS = 2 };

/* Answers the header keys of a tree from the parsed header columns, one
 * query each; returns what else the tree needs (NEED_* bits). A key the
 * query cannot answer (a needle over its limit) falls back to the headers
 * read per message. */
static unsigned search_prepare(struct search_node *n, store *st, const char *folder)
{
	static const enum store_search_field fields[] = {
		[SK_FROM] = STORE_SEARCH_FROM, [SK_TO] = STORE_SEARCH_TO, [SK_CC] = STORE_SEARCH_CC,
		[SK_BCC] = STORE_SEARCH_BCC,   [SK_SUBJECT] = STORE_SEARCH_SUBJECT,
	};
	unsigned need = 0;
	for (size_t i = 0; i < n->kid_count; i++)
		need |= search_prepare(n->kids[i], st, folder);
	switch (n->op) {
	case SK_FROM:
	case SK_TO:
	case SK_CC:
	case SK_BCC:
	case SK_SUBJECT:
		if (store_search_header(st, folder, fields[n->op], n->str, &n->hits,
					&n->hit_count) == 0)
			n->hits_ready = true;
		else
			need |= NEED_HEADERS;
		break;
	case SK_SENTBEFORE:
	case SK_SENTON:
	case SK_SENTSINCE:
		need |= NEED_HEADERS;
		break;
	case SK_FLAG_SET:
	case SK_FLAG_UNSET:
	case SK_KEYWORD:
	case SK_UNKEYWORD:
	case SK_NEW:
	case SK_LARGER:
	case SK_SMALLER:
	case SK_MODSEQ:
	case SK_BEFORE:
	case SK_ON:
	case SK_SINCE:
		need |= NEED_MSG;
		break;
	default:
		break;
	}
	return need;
}

/* Whether the tree reads messages themselves (HEADER, BODY, TEXT): a scan
 * that may take seconds on a large folder, so it runs on the thread pool. */
static bool search_reads_messages(const struct search_node *n)
{
	if (n->op == SK_HEADER || n->op == SK_BODY || n->op == SK_TEXT)
		return true;
	for (size_t i = 0; i < n->kid_count; i++) {
		if (search_reads_messages(n->kids[i]))
			return true;
	}
	return false;
}

/* Evaluates the job's criteria on every message of its view with the store
 * handles of the calling thread; fills ret, found, nfound and max_modseq. */
static void search_run(struct search_job *job, store *st, store_query *query)
{
	unsigned need = search_prepare(job->root, st, job->folder) | (job->modseq ? NEED_MSG : 0);
	struct store_msg *msgs = NULL;
	size_t msg_count = 0;
	struct store_msg_headers *hdrs = NULL;
	size_t hdr_count = 0;
	job->ret = 0;
	if ((need & NEED_MSG) && job->count > 0)
		job->ret = store_query_msgs(query, job->folder, job->uids[0],
					    job->uids[job->count - 1], &msgs, &msg_count);
	if (job->ret == 0 && (need & NEED_HEADERS) &&
	    store_msg_headers_list(st, job->folder, &hdrs, &hdr_count) < 0)
		hdr_count = 0;
	if (job->ret < 0)
		return;
	job->found = xmalloc((job->count + 1) * sizeof(*job->found));
	size_t mi = 0, hi = 0;
	for (size_t i = 0; i < job->count; i++) {
		uint32_t uid = job->uids[i];
		const struct store_msg *m = NULL;
		if (need & NEED_MSG) {
			while (mi < msg_count && msgs[mi].uid < uid)
				mi++;
			if (mi == msg_count || msgs[mi].uid != uid)
				continue; /* expunged by another session, not yet reported */
			m = &msgs[mi];
		}
		while (hi < hdr_count && hdrs[hi].uid < uid)
			hi++;
		struct search_msg sm = {
			.job = job,
			.st = st,
			.uid = uid,
			.m = m,
			.h = hi < hdr_count && hdrs[hi].uid == uid ? &hdrs[hi] : NULL,
			.seq = (uint32_t)(i + 1),
			.star_seq = (uint32_t)job->count,
			.star_uid = job->count > 0 ? job->uids[job->count - 1] : 0,
		};
		bool match = search_eval(job->root, &sm);
		free(sm.header);
		free(sm.body);
		if (!match)
			continue;
		job->found[job->nfound++] = job->uid ? uid : (uint32_t)(i + 1);
		if (m != NULL && m->modseq > job->max_modseq)
			job->max_modseq = m->modseq;
	}
	store_msg_list_free(msgs, msg_count);
	store_msg_headers_list_free(hdrs, hdr_count);
}

/* Frees a job and everything it copied. */
static void search_job_free(struct search_job **jobp)
{
	struct search_job *job = *jobp;
	if (job == NULL)
		return;
	*jobp = NULL;
	search_node_free(job->root);
	free(job->folder);
	free(job->uids);
	free(job->recent);
	free(job->datadir);
	free(job->user);
	free(job->found);
	free(job);
}

/* Sends the SEARCH or ESEARCH response and the tagged reply of a finished job. */
static void search_reply(struct imap_session *s, struct imap_cmd *cmd, const struct search_job *job)
{
	if (job->ret < 0) {
		imap_cmd_store_error(s, cmd, job->ret, "Cannot search");
		return;
	}
	const uint32_t *found = job->found;
	size_t nfound = job->nfound;
	buf_t b = BUF_INIT;
	if (job->esearch) {
		buf_printf(&b, "* ESEARCH (TAG \"%s\")%s", cmd->tag, cmd->uid ? " UID" : "");
		if (nfound > 0 && (job->ret_opts & RET_MIN))
			buf_printf(&b, " MIN %u", found[0]);
		if (nfound > 0 && (job->ret_opts & RET_MAX))
			buf_printf(&b, " MAX %u", found[nfound - 1]);
		if (job->ret_opts & RET_COUNT)
			buf_printf(&b, " COUNT %zu", nfound);
		if (nfound > 0 && (job->ret_opts & RET_ALL)) {
			buf_append_str(&b, " ALL ");
			imap_seqset_format(&b, found, nfound);
		}
		if (job->modseq && nfound > 0)
			buf_printf(&b, " MODSEQ %llu", (unsigned long long)job->max_modseq);
	} else {
		buf_append_str(&b, "* SEARCH");
		for (size_t i = 0; i < nfound; i++)
			buf_printf(&b, " %u", found[i]);
		if (job->modseq && nfound > 0)
			buf_printf(&b, " (MODSEQ %llu)", (unsigned long long)job->max_modseq);
	}
	buf_append_str(&b, "\r\n");
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
	imap_cmd_finish(s, cmd, "OK", "%sSEARCH completed", cmd->uid ? "UID " : "");
}

/* On the thread pool: opens the user's store on this thread (an SQLite
 * connection is never shared between threads) and scans. */
static void search_work(uv_work_t *work)
{
	struct search_job *job = work->data;
	store *st = NULL;
	store_query *query = NULL;
	char *err = NULL;
	job->ret = STORE_ERR_TEMP;
	if (store_open(job->datadir, job->user, &st, &err) < 0 ||
	    store_query_open(st, &query, &err) < 0) {
		log_warn(job->conn_id, "imap: SEARCH cannot open the store of %s: %s", job->user,
			 err != NULL ? err : "unknown error");
		free(err);
		store_close(&st);
		return;
	}
	search_run(job, st, query);
	store_query_close(&query);
	store_close(&st);
}

/* Back on the loop: answers the session if it is still there. */
static void search_work_done(uv_work_t *work, int status)
{
	struct search_job *job = work->data;
	if (status < 0)
		job->ret = STORE_ERR_TEMP;
	conn *c = net_server_find(job->srv, job->conn_id);
	struct imap_session *s = c != NULL ? conn_data(c) : NULL;
	log_debug(job->conn_id, "imap: SEARCH of %zu messages on the thread pool: %zu found in %llu ms%s",
		  job->count, job->nfound,
		  (unsigned long long)((uv_hrtime() - job->queued_ns) / 1000000),
		  s == NULL ? ", client gone" : "");
	if (s != NULL && s->cmd_active && s->input == IMAP_INPUT_BUSY)
		search_reply(s, &s->cmd, job);
	conn_unref(job->c);
	search_job_free(&job);
}

/* Copies what the evaluation needs from the session into a new job. */
static struct search_job *search_job_new(struct imap_session *s, struct imap_cmd *cmd,
					 struct search_node *root)
{
	struct imap_view *v = s->view;
	struct search_job *job = xcalloc(1, sizeof(*job));
	job->work.data = job;
	job->root = root;
	job->folder = xstrdup(v->folder);
	job->count = v->count;
	job->uids = xmalloc((v->count + 1) * sizeof(*job->uids));
	for (size_t i = 0; i < v->count; i++)
		job->uids[i] = imap_view_uid(v, i);
	job->recent_len = v->recent_len;
	job->recent = xmalloc((v->recent_len + 1) * sizeof(*job->recent));
	if (v->recent_len > 0)
		memcpy(job->recent, v->recent_uids, v->recent_len * sizeof(*job->recent));
	job->uid = cmd->uid;
	job->modseq = search_uses_modseq(root);
	return job;
}

/* Runs a job now on the loop's own store handles and answers. */
static void search_run_here(struct imap_session *s, struct imap_cmd *cmd, struct search_job *job)
{
	search_run(job, s->ms->st, s->ms->query);
	search_reply(s, cmd, job);
	search_job_free(&job);
}

void imap_cmd_search(struct imap_session *s, struct imap_cmd *cmd)
{
	size_t first = 0;
	unsigned ret_opts = 0;
	bool esearch = false;
	if (first + 1 < cmd->count && imap_arg_atom_is(&cmd->args[first], "RETURN") &&
	    cmd->args[first + 1].type == IMAP_ARG_LIST) {
		const struct imap_arg *opts = &cmd->args[first + 1];
		esearch = true;
		for (size_t i = 0; i < opts->count; i++) {
			const struct imap_arg *o = &opts->children[i];
			if (imap_arg_atom_is(o, "MIN"))
				ret_opts |= RET_MIN;
			else if (imap_arg_atom_is(o, "MAX"))
				ret_opts |= RET_MAX;
			else if (imap_arg_atom_is(o, "ALL"))
				ret_opts |= RET_ALL;
			else if (imap_arg_atom_is(o, "COUNT"))
				ret_opts |= RET_COUNT;
			else {
				imap_cmd_finish(s, cmd, "BAD", "Unknown SEARCH return option");
				return;
			}
		}
		if (ret_opts == 0)
			ret_opts = RET_ALL;
		first += 2;
	}
	if (first + 1 < cmd->count && imap_arg_atom_is(&cmd->args[first], "CHARSET")) {
		const char *cs = imap_arg_string(&cmd->args[first + 1]);
		if (cs == NULL || (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0)) {
			imap_cmd_finish(s, cmd, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return;
		}
		first += 2;
	}
	if (first >= cmd->count) {
		imap_cmd_finish(s, cmd, "BAD", "SEARCH needs criteria");
		return;
	}
	struct search_parse p = {0};
	struct search_node *root = search_parse_list(&p, cmd->args + first, cmd->count - first, 0);
	if (root == NULL) {
		imap_cmd_finish(s, cmd, "BAD", "%s", p.error != NULL ? p.error : "Invalid criteria");
		return;
	}
	struct search_job *job = search_job_new(s, cmd, root);
	job->esearch = esearch;
	job->ret_opts = ret_opts;
	if (!search_reads_messages(root) || job->count == 0) {
		search_run_here(s, cmd, job);
		return;
	}
	/* The input stays paused (the command is active) until search_work_done. */
	job->datadir = xstrdup(s->server->d->datadir);
	job->user = xstrdup(s->ms->user);
	job->srv = s->server->srv;
	job->c = s->c;
	job->conn_id = s->id;
	job->queued_ns = uv_hrtime();
	conn_ref(s->c);
	if (uv_queue_work(conn_loop(s->c), &job->work, search_work, search_work_done) != 0) {
		conn_unref(s->c);
		search_run_here(s, cmd, job);
	}
}
