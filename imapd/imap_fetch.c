/* imap_fetch.c: FETCH and UID FETCH (RFC 3501 6.4.5, 7.4.2) with CONDSTORE's
 * MODSEQ and CHANGEDSINCE (RFC 7162).
 *
 * Items are parsed once into a list; the rows of the messages asked for are
 * read by UID range (store_search.h), never the whole folder for a few
 * messages; a non-PEEK body fetch sets \Seen on all of them first, in one
 * transaction. Then the messages are answered one by one by a small producer
 * (fetch_run) that stops whenever the unsent output passes
 * NET_OUTPUT_HIGH_WATER and continues from conn_on_drain. Each response is
 * built in one buffer and written at once (one transcript line per message);
 * literal data is written apart and kept out of the transcript. A whole
 * message (BODY[], RFC822, TEXT) is streamed from the store in chunks, never
 * loaded whole; headers come from the header section alone; a part number
 * (BODY[1.2]) is found in the message's part map (imap_bodystructure.c),
 * computed once, and only that part's bytes are read. BODY and BODYSTRUCTURE
 * are computed first on the thread pool (fetch_warm_start), so a folder of
 * messages never parsed before does not stall the other sessions.
 *
 * Producer state: pos (message), item (within it), and an open reader with
 * stream_left bytes still to copy. Invariant: at most one reader is open. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imapd.h"
#include "log.h"

#define FETCH_CHUNK (64 * 1024)
#define FETCH_MAX_ITEMS 64
/* HEADER.FIELDS of an encapsulated message reads at most this much of it. */
#define FETCH_PART_HEADER_MAX (1024 * 1024)

enum fetch_kind {
	FI_UID, FI_FLAGS, FI_INTERNALDATE, FI_SIZE, FI_ENVELOPE, FI_BODY, FI_BODYSTRUCTURE,
	FI_MODSEQ, FI_SECTION,
};

enum section_text { ST_ALL, ST_HEADER, ST_HEADER_FIELDS, ST_HEADER_FIELDS_NOT, ST_TEXT, ST_MIME };

struct fetch_item {
	enum fetch_kind kind;
	/* FI_SECTION */
	char *name;            /* as echoed: "BODY[HEADER]", "RFC822.TEXT" */
	char *part;            /* "1.2" or NULL */
	enum section_text text;
	char **fields;         /* HEADER.FIELDS names, NULL-terminated */
	bool peek;
	bool partial;
	uint64_t partial_offset, partial_len;
};

struct imap_fetch_ctx {
	struct fetch_item items[FETCH_MAX_ITEMS];
	size_t item_count;
	bool sets_seen;
	uint64_t changedsince;
	size_t *idx;
	size_t n;
	size_t pos;
	size_t item;
	bool in_message;
	struct store_msg *msgs;   /* the messages asked for (maybe more), UID order */
	size_t msg_count;
	bool *wanted;             /* per row: in the set (a UID range may hold more) */
	bool *seen_changed;       /* per row: this FETCH set its \Seen */
	const struct store_msg *cur;
	store_reader *reader;
	uint64_t stream_off, stream_left;
	buf_t line;               /* the response being built, up to the next literal */
};

/* Frees an item's strings. */
static void fetch_item_clear(struct fetch_item *it)
{
	free(it->name);
	free(it->part);
	if (it->fields != NULL) {
		for (size_t i = 0; it->fields[i] != NULL; i++)
			free(it->fields[i]);
		free(it->fields);
	}
	memset(it, 0, sizeof(*it));
}

/* Frees the fetch context. */
static void fetch_free(struct imap_fetch_ctx **fp)
{
	struct imap_fetch_ctx *f = *fp;
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->item_count; i++)
		fetch_item_clear(&f->items[i]);
	store_reader_close(&f->reader);
	store_msg_list_free(f->msgs, f->msg_count);
	free(f->wanted);
	free(f->seen_changed);
	buf_free(&f->line);
	free(f->idx);
	free(f);
	*fp = NULL;
}

void imap_fetch_abort(struct imap_session *s)
{
	fetch_free(&s->fetch);
}

/* Adds an item; -1 when there are too many. */
static struct fetch_item *fetch_add(struct imap_fetch_ctx *f, enum fetch_kind kind)
{
	for (size_t i = 0; i < f->item_count; i++) {
		if (f->items[i].kind == kind && kind != FI_SECTION)
			return &f->items[i];
	}
	if (f->item_count >= FETCH_MAX_ITEMS)
		return NULL;
	struct fetch_item *it = &f->items[f->item_count++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	return it;
}

/* Whether an item of this kind was asked for. */
static bool fetch_has(const struct imap_fetch_ctx *f, enum fetch_kind kind)
{
	for (size_t i = 0; i < f->item_count; i++) {
		if (f->items[i].kind == kind)
			return true;
	}
	return false;
}

/* Parses the header field list of HEADER.FIELDS: " (From "To")". */
static int fetch_parse_fields(const char *s, struct fetch_item *it, buf_t *echo)
{
	while (*s == ' ')
		s++;
	if (*s++ != '(')
		return -1;
	size_t count = 0;
	it->fields = xcalloc(1, sizeof(char *));
	buf_append_str(echo, " (");
	while (*s != ')') {
		while (*s == ' ')
			s++;
		if (*s == ')')
			break;
		buf_t name = BUF_INIT;
		if (*s == '"') {
			s++;
			while (*s != '"' && *s != '\0') {
				if (*s == '\\' && s[1] != '\0')
					s++;
				buf_append_char(&name, *s++);
			}
			if (*s++ != '"') {
				buf_free(&name);
				return -1;
			}
		} else {
			while (*s != ' ' && *s != ')' && *s != '\0')
				buf_append_char(&name, *s++);
		}
		if (*s == '\0' || name.len == 0 || count >= 256) {
			buf_free(&name);
			return -1;
		}
		for (size_t i = 0; i < name.len; i++)
			name.data[i] = (char)toupper((unsigned char)name.data[i]);
		if (count > 0)
			buf_append_char(echo, ' ');
		buf_append_str(echo, name.data);
		it->fields = xrealloc(it->fields, (count + 2) * sizeof(char *));
		it->fields[count++] = buf_steal(&name);
		it->fields[count] = NULL;
	}
	buf_append_char(echo, ')');
	return s[1] == '\0' ? 0 : -1;
}

/* Parses "BODY[...]<a.b>" or "BODY.PEEK[...]" into a section item. */
static int fetch_parse_section(struct imap_fetch_ctx *f, const char *atom)
{
	bool peek = strncasecmp(atom, "BODY.PEEK[", 10) == 0;
	if (!peek && strncasecmp(atom, "BODY[", 5) != 0)
		return -1;
	const char *sec = atom + (peek ? 10 : 5);
	const char *close = strchr(sec, ']');
	if (close == NULL)
		return -1;
	struct fetch_item *it = fetch_add(f, FI_SECTION);
	if (it == NULL)
		return -1;
	it->peek = peek;
	char *spec = xstrndup(sec, (size_t)(close - sec));
	buf_t echo = BUF_INIT;
	buf_append_str(&echo, "BODY[");
	/* part numbers: digits separated by dots */
	const char *p = spec;
	buf_t part = BUF_INIT;
	while (*p >= '1' && *p <= '9') {
		const char *start = p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (part.len > 0)
			buf_append_char(&part, '.');
		buf_append(&part, start, (size_t)(p - start));
		if (*p == '.')
			p++;
		else
			break;
		if (!(*p >= '1' && *p <= '9'))
			break;
	}
	if (part.len > 0) {
		it->part = buf_steal(&part);
		buf_append_str(&echo, it->part);
		if (*p != '\0')
			buf_append_char(&echo, '.');
	}
	buf_free(&part);
	int ret = 0;
	if (*p == '\0') {
		it->text = ST_ALL;
	} else if (strcasecmp(p, "HEADER") == 0) {
		it->text = ST_HEADER;
		buf_append_str(&echo, "HEADER");
	} else if (strcasecmp(p, "TEXT") == 0) {
		it->text = ST_TEXT;
		buf_append_str(&echo, "TEXT");
	} else if (strcasecmp(p, "MIME") == 0 && it->part != NULL) {
		it->text = ST_MIME;
		buf_append_str(&echo, "MIME");
	} else if (strncasecmp(p, "HEADER.FIELDS.NOT", 17) == 0 && (p[17] == ' ' || p[17] == '(')) {
		it->text = ST_HEADER_FIELDS_NOT;
		buf_append_str(&echo, "HEADER.FIELDS.NOT");
		ret = fetch_parse_fields(p + 17, it, &echo);
	} else if (strncasecmp(p, "HEADER.FIELDS", 13) == 0 && (p[13] == ' ' || p[13] == '(')) {
		it->text = ST_HEADER_FIELDS;
		buf_append_str(&echo, "HEADER.FIELDS");
		ret = fetch_parse_fields(p + 13, it, &echo);
	} else {
		ret = -1;
	}
	free(spec);
	buf_append_char(&echo, ']');
	const char *rest = close + 1;
	if (ret == 0 && *rest == '<') {
		char *end;
		unsigned long long off = strtoull(rest + 1, &end, 10);
		if (end == rest + 1 || *end != '.')
			ret = -1;
		else {
			const char *lenp = end + 1;
			unsigned long long len = strtoull(lenp, &end, 10);
			if (end == lenp || *end != '>' || end[1] != '\0' || len == 0)
				ret = -1;
			it->partial = true;
			it->partial_offset = off;
			it->partial_len = len;
			buf_printf(&echo, "<%llu>", off);
		}
	} else if (ret == 0 && *rest != '\0') {
		ret = -1;
	}
	it->name = buf_steal(&echo);
	if (!peek)
		f->sets_seen = true;
	return ret;
}

/* Adds a whole-message section with an RFC822 name. */
static int fetch_add_rfc822(struct imap_fetch_ctx *f, const char *name, enum section_text text,
			    bool seen)
{
	struct fetch_item *it = fetch_add(f, FI_SECTION);
	if (it == NULL)
		return -1;
	it->name = xstrdup(name);
	it->text = text;
	it->peek = !seen;
	if (seen)
		f->sets_seen = true;
	return 0;
}

/* Parses one fetch attribute (or macro). */
static int fetch_parse_item(struct imap_fetch_ctx *f, const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_ATOM)
		return -1;
	const char *n = a->data;
	static const struct {
		const char *name;
		enum fetch_kind kinds[5];
		size_t count;
	} simple[] = {
		{"UID", {FI_UID}, 1},
		{"FLAGS", {FI_FLAGS}, 1},
		{"INTERNALDATE", {FI_INTERNALDATE}, 1},
		{"RFC822.SIZE", {FI_SIZE}, 1},
		{"ENVELOPE", {FI_ENVELOPE}, 1},
		{"BODY", {FI_BODY}, 1},
		{"BODYSTRUCTURE", {FI_BODYSTRUCTURE}, 1},
		{"MODSEQ", {FI_MODSEQ}, 1},
		{"ALL", {FI_FLAGS, FI_INTERNALDATE, FI_SIZE, FI_ENVELOPE}, 4},
		{"FAST", {FI_FLAGS, FI_INTERNALDATE, FI_SIZE}, 3},
		{"FULL", {FI_FLAGS, FI_INTERNALDATE, FI_SIZE, FI_ENVELOPE, FI_BODY}, 5},
	};
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (strcasecmp(n, simple[i].name) != 0)
			continue;
		for (size_t k = 0; k < simple[i].count; k++) {
			if (fetch_add(f, simple[i].kinds[k]) == NULL)
				return -1;
		}
		return 0;
	}
	if (strcasecmp(n, "RFC822") == 0)
		return fetch_add_rfc822(f, "RFC822", ST_ALL, true);
	if (strcasecmp(n, "RFC822.HEADER") == 0)
		return fetch_add_rfc822(f, "RFC822.HEADER", ST_HEADER, false);
	if (strcasecmp(n, "RFC822.TEXT") == 0)
		return fetch_add_rfc822(f, "RFC822.TEXT", ST_TEXT, true);
	return fetch_parse_section(f, n);
}

/* Finds a message's data by UID. */
static const struct store_msg *fetch_find_msg(const struct imap_fetch_ctx *f, uint32_t uid)
{
	size_t lo = 0, hi = f->msg_count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->msg_count && f->msgs[lo].uid == uid ? &f->msgs[lo] : NULL;
}

/* Appends a number without printf (FETCH 1:* writes hundreds of thousands). */
static void fetch_append_uint(buf_t *b, uint64_t v)
{
	char digits[24];
	size_t n = sizeof(digits);
	do {
		digits[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	buf_append(b, digits + n, sizeof(digits) - n);
}

/* Sends the response built so far. */
static void fetch_flush(struct imap_session *s, struct imap_fetch_ctx *f)
{
	if (f->line.len > 0)
		imap_write_bulk(s, f->line.data, f->line.len);
	buf_reset(&f->line);
}

/* Writes "{n}\r\n" and the data (kept out of the transcript). */
static void fetch_write_literal(struct imap_session *s, struct imap_fetch_ctx *f,
				const char *data, size_t len)
{
	buf_append_char(&f->line, '{');
	fetch_append_uint(&f->line, len);
	buf_append_str(&f->line, "}\r\n");
	fetch_flush(s, f);
	if (len > 0)
		conn_write_quiet(s->c, data, len);
}

/* Applies <offset.length> to a loaded piece. */
static void fetch_write_partial(struct imap_session *s, struct imap_fetch_ctx *f,
				const struct fetch_item *it, const char *data, size_t len)
{
	if (it->partial) {
		size_t off = it->partial_offset < len ? (size_t)it->partial_offset : len;
		size_t take = len - off < it->partial_len ? len - off : (size_t)it->partial_len;
		fetch_write_literal(s, f, data + off, take);
	} else {
		fetch_write_literal(s, f, data, len);
	}
}

/* Announces a literal of the byte range [start, start + size) of the message
 * (after <offset.length>) and sets it up for streaming by fetch_run. */
static void fetch_stream_range(struct imap_session *s, struct imap_fetch_ctx *f,
			       const struct fetch_item *it, uint32_t uid, uint64_t start,
			       uint64_t size)
{
	if (it->partial) {
		uint64_t off = it->partial_offset < size ? it->partial_offset : size;
		start += off;
		size -= off;
		if (size > it->partial_len)
			size = it->partial_len;
	}
	if (size == 0 || store_msg_open(s->ms->st, s->view->folder, uid, &f->reader) < 0) {
		fetch_write_literal(s, f, "", 0);
		return;
	}
	buf_append_char(&f->line, '{');
	fetch_append_uint(&f->line, size);
	buf_append_str(&f->line, "}\r\n");
	fetch_flush(s, f);
	f->stream_off = start;
	f->stream_left = size;
}

/* Picks header lines by name (HEADER.FIELDS / .NOT), ending with the blank line. */
static void fetch_filter_header(const char *hdr, size_t len, const struct fetch_item *it,
				buf_t *out)
{
	struct header h;
	if (header_parse(hdr, len, &h) < 0)
		return;
	for (size_t i = 0; i < h.count; i++) {
		bool listed = false;
		for (size_t k = 0; it->fields[k] != NULL && !listed; k++)
			listed = strcasecmp(h.fields[i].name, it->fields[k]) == 0;
		if (listed == (it->text == ST_HEADER_FIELDS))
			buf_append(out, hdr + h.fields[i].raw_offset, h.fields[i].raw_len);
	}
	buf_append_str(out, "\r\n");
	header_free(&h);
}

/* Answers a section that names a MIME part, from the message's part map:
 * the part's bytes are streamed; only HEADER.FIELDS reads the (inner)
 * header into memory to pick its lines. */
static void fetch_part_section(struct imap_session *s, struct imap_fetch_ctx *f,
			       const struct fetch_item *it, uint32_t uid)
{
	struct imap_part_range r;
	if (imap_part_find(s->ms->st, s->view->folder, uid, it->part, &r) < 0) {
		fetch_write_literal(s, f, "", 0);
		return;
	}
	switch (it->text) {
	case ST_ALL:
		fetch_stream_range(s, f, it, uid, r.body_offset, r.body_len);
		return;
	case ST_MIME:
		fetch_stream_range(s, f, it, uid, r.header_offset, r.header_len);
		return;
	case ST_HEADER:
		/* HEADER and TEXT of a part address its encapsulated message. */
		fetch_stream_range(s, f, it, uid, r.body_offset, r.is_message ? r.inner_header_len : 0);
		return;
	case ST_TEXT:
		fetch_stream_range(s, f, it, uid, r.body_offset + r.inner_header_len,
				   r.is_message ? r.body_len - r.inner_header_len : 0);
		return;
	default:
		break;
	}
	buf_t out = BUF_INIT;
	size_t hlen = r.is_message && r.inner_header_len <= FETCH_PART_HEADER_MAX
			      ? (size_t)r.inner_header_len : 0;
	store_reader *reader = NULL;
	if (hlen > 0 && store_msg_open(s->ms->st, s->view->folder, uid, &reader) == 0) {
		char *hdr = xmalloc(hlen + 1);
		long got = store_reader_read(reader, r.body_offset, hdr, hlen);
		if (got == (long)hlen)
			fetch_filter_header(hdr, hlen, it, &out);
		free(hdr);
		store_reader_close(&reader);
	}
	fetch_write_partial(s, f, it, out.data != NULL ? out.data : "", out.len);
	buf_free(&out);
}

/* Starts one section item: small pieces are written now; a whole message or
 * its text is set up for streaming. */
static void fetch_section(struct imap_session *s, struct imap_fetch_ctx *f,
			  const struct fetch_item *it, const struct store_msg *m)
{
	struct imap_view *v = s->view;
	buf_append_str(&f->line, it->name);
	buf_append_char(&f->line, ' ');
	if (m->lifecycle_id != NULL)
		log_event(m->lifecycle_id, "fetched", "user", s->user, "proto", "imap", "section",
			  it->name, NULL);
	if (it->part != NULL) {
		fetch_part_section(s, f, it, m->uid);
		return;
	}
	if (it->text == ST_ALL) {
		fetch_stream_range(s, f, it, m->uid, 0, m->size);
		return;
	}
	char *hdr = NULL;
	size_t hlen = 0;
	if (store_msg_load_header(s->ms->st, v->folder, m->uid, &hdr, &hlen) < 0) {
		fetch_write_literal(s, f, "", 0);
		return;
	}
	if (it->text == ST_TEXT) {
		free(hdr);
		fetch_stream_range(s, f, it, m->uid, hlen, m->size > hlen ? m->size - hlen : 0);
	} else if (it->text == ST_HEADER) {
		fetch_write_partial(s, f, it, hdr, hlen);
		free(hdr);
	} else {
		buf_t out = BUF_INIT;
		fetch_filter_header(hdr, hlen, it, &out);
		fetch_write_partial(s, f, it, buf_cstr(&out), out.len);
		buf_free(&out);
		free(hdr);
	}
}

/* Appends one non-body item to the response. */
static void fetch_simple(struct imap_session *s, buf_t *b, const struct fetch_item *it,
			 const struct store_msg *m)
{
	struct imap_view *v = s->view;
	switch (it->kind) {
	case FI_UID:
		buf_append_str(b, "UID ");
		fetch_append_uint(b, m->uid);
		break;
	case FI_FLAGS:
		buf_append_str(b, "FLAGS ");
		imap_format_flags(b, m->flags, m->keywords, imap_view_is_recent(v, m->uid));
		break;
	case FI_INTERNALDATE: {
		static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
						   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
		time_t t = (time_t)(m->internal_date + (int64_t)m->internal_tz * 60);
		struct tm tm;
		gmtime_r(&t, &tm);
		int tz = m->internal_tz < 0 ? -m->internal_tz : m->internal_tz;
		buf_printf(b, "INTERNALDATE \"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d\"", tm.tm_mday,
			   months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
			   m->internal_tz < 0 ? '-' : '+', tz / 60, tz % 60);
		break;
	}
	case FI_SIZE:
		buf_append_str(b, "RFC822.SIZE ");
		fetch_append_uint(b, m->size);
		break;
	case FI_MODSEQ:
		buf_append_str(b, "MODSEQ (");
		fetch_append_uint(b, m->modseq);
		buf_append_char(b, ')');
		break;
	case FI_ENVELOPE: {
		char *env = imap_envelope(s->ms->st, v->folder, m->uid);
		buf_append_str(b, "ENVELOPE ");
		buf_append_str(b, env != NULL ? env : "NIL");
		free(env);
		break;
	}
	case FI_BODY:
	case FI_BODYSTRUCTURE: {
		bool ext = it->kind == FI_BODYSTRUCTURE;
		char *bs = imap_bodystructure(s->ms->st, v->folder, m->uid, ext);
		buf_append_str(b, ext ? "BODYSTRUCTURE " : "BODY ");
		buf_append_str(b, bs != NULL ? bs : "NIL");
		free(bs);
		break;
	}
	case FI_SECTION:
		break;
	}
}

/* Sets \Seen on the messages of a non-PEEK body fetch before any is answered
 * (RFC 3501 6.4.5), all in one transaction; marks which ones changed so
 * their responses carry the new FLAGS. */
static void fetch_mark_seen(struct imap_session *s, struct imap_fetch_ctx *f)
{
	if (!f->sets_seen || s->view->readonly)
		return;
	store *st = s->ms->st;
	size_t pending = 0;
	for (size_t i = 0; i < f->msg_count; i++)
		pending += f->wanted[i] && !(f->msgs[i].flags & STORE_FLAG_SEEN);
	if (pending == 0 || store_begin(st) < 0)
		return;
	uint64_t *modseqs = xcalloc(f->msg_count, sizeof(*modseqs));
	for (size_t i = 0; i < f->msg_count; i++) {
		struct store_msg *m = &f->msgs[i];
		if (!f->wanted[i] || (m->flags & STORE_FLAG_SEEN))
			continue;
		if (store_msg_set_flags(st, s->view->folder, m->uid, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					NULL, 0, &modseqs[i]) < 0)
			modseqs[i] = 0;
	}
	if (store_commit(st) < 0) {
		store_rollback(st);
		free(modseqs);
		return;
	}
	for (size_t i = 0; i < f->msg_count; i++) {
		struct store_msg *m = &f->msgs[i];
		if (modseqs[i] == 0)
			continue;
		m->flags |= STORE_FLAG_SEEN;
		m->modseq = modseqs[i];
		f->seen_changed[i] = true;
		imap_view_note_reported(s->view, m->uid, modseqs[i]);
		if (m->lifecycle_id != NULL)
			log_event(m->lifecycle_id, "flags", "user", s->user, "proto", "imap", "flags",
				  "+\\Seen", NULL);
	}
	free(modseqs);
}

static void fetch_run(struct imap_session *s);

/* The client read enough: go on. */
static void fetch_drained(conn *c, void *arg)
{
	(void)arg;
	if (conn_is_closing(c))
		return;
	struct imap_session *s = conn_data(c);
	if (s != NULL && s->fetch != NULL)
		fetch_run(s);
}

/* Produces responses until done or until the output is full. */
static void fetch_run(struct imap_session *s)
{
	struct imap_fetch_ctx *f = s->fetch;
	char *chunk = NULL;
	while (f->pos < f->n) {
		if (conn_output_pending(s->c) > NET_OUTPUT_HIGH_WATER) {
			free(chunk);
			fetch_flush(s, f);
			conn_on_drain(s->c, fetch_drained, NULL);
			return;
		}
		if (f->stream_left > 0) {
			if (chunk == NULL)
				chunk = xmalloc(FETCH_CHUNK);
			size_t want = f->stream_left < FETCH_CHUNK ? (size_t)f->stream_left : FETCH_CHUNK;
			long got = store_reader_read(f->reader, f->stream_off, chunk, want);
			if (got <= 0) {
				/* The message vanished mid-stream: pad so the literal stays whole. */
				memset(chunk, ' ', want);
				got = (long)want;
			}
			conn_write_quiet(s->c, chunk, (size_t)got);
			f->stream_off += (uint64_t)got;
			f->stream_left -= (uint64_t)got;
			if (f->stream_left == 0)
				store_reader_close(&f->reader);
			continue;
		}
		uint32_t uid = imap_view_uid(s->view, f->idx[f->pos]);
		if (!f->in_message) {
			f->cur = fetch_find_msg(f, uid);
			if (f->cur == NULL || (f->changedsince > 0 && f->cur->modseq <= f->changedsince)) {
				f->pos++;
				continue;
			}
			buf_append_str(&f->line, "* ");
			fetch_append_uint(&f->line, f->idx[f->pos] + 1);
			buf_append_str(&f->line, " FETCH (");
			f->in_message = true;
			f->item = 0;
		}
		if (f->item < f->item_count) {
			const struct fetch_item *it = &f->items[f->item];
			if (f->item > 0)
				buf_append_char(&f->line, ' ');
			f->item++;
			if (it->kind == FI_SECTION)
				fetch_section(s, f, it, f->cur);
			else
				fetch_simple(s, &f->line, it, f->cur);
			continue;
		}
		if (f->seen_changed[f->cur - f->msgs] && !fetch_has(f, FI_FLAGS)) {
			buf_append_str(&f->line, " FLAGS ");
			imap_format_flags(&f->line, f->cur->flags, f->cur->keywords,
					  imap_view_is_recent(s->view, uid));
		}
		buf_append_str(&f->line, ")\r\n");
		/* Small responses go out together, a buffer's worth at a time. */
		if (f->line.len >= FETCH_CHUNK)
			fetch_flush(s, f);
		f->in_message = false;
		f->pos++;
	}
	free(chunk);
	fetch_flush(s, f);
	fetch_free(&s->fetch);
	imap_cmd_finish(s, &s->cmd, "OK", "%sFETCH completed", s->cmd.uid ? "UID " : "");
}

/* The BODY / BODYSTRUCTURE of a FETCH's messages, made on the thread pool
 * before any response is produced: a first-time BODYSTRUCTURE parses the
 * whole message (seconds for many large ones), which must not stall the loop.
 * The worker opens its own store handles (SQLite connections stay on their
 * thread), computes what the cache lacks and stores it; fetch_run then reads
 * each from the cache. The session's input stays paused meanwhile and its
 * conn referenced; the answer finds the session by conn id. */
struct fetch_warm_job {
	uv_work_t work;
	char *datadir;
	char *user;
	char *folder;
	uint32_t *uids;           /* the messages that will be answered */
	size_t count;
	bool body, bodystructure;
	net_server *srv;
	conn *c;                  /* held with conn_ref until done */
	uint64_t conn_id;
	uint64_t queued_ns;
};

/* On the thread pool: computes and caches the structures. */
static void fetch_warm_work(uv_work_t *work)
{
	struct fetch_warm_job *job = work->data;
	store *st = NULL;
	char *err = NULL;
	if (store_open(job->datadir, job->user, &st, &err) < 0) {
		/* fetch_run computes them on the loop then, as it always could. */
		log_warn(job->conn_id, "imap: FETCH cannot open the store of %s: %s", job->user,
			 err != NULL ? err : "unknown error");
		free(err);
		return;
	}
	for (size_t i = 0; i < job->count; i++) {
		if (job->body)
			free(imap_bodystructure(st, job->folder, job->uids[i], false));
		if (job->bodystructure)
			free(imap_bodystructure(st, job->folder, job->uids[i], true));
	}
	store_close(&st);
}

/* Back on the loop: the FETCH goes on if its session is still there. */
static void fetch_warm_done(uv_work_t *work, int status)
{
	(void)status;
	struct fetch_warm_job *job = work->data;
	conn *c = net_server_find(job->srv, job->conn_id);
	struct imap_session *s = c != NULL ? conn_data(c) : NULL;
	log_debug(job->conn_id, "imap: structures of %zu messages on the thread pool in %llu ms%s",
		  job->count, (unsigned long long)((uv_hrtime() - job->queued_ns) / 1000000),
		  s == NULL ? ", client gone" : "");
	if (s != NULL && s->fetch != NULL)
		fetch_run(s);
	conn_unref(job->c);
	free(job->datadir);
	free(job->user);
	free(job->folder);
	free(job->uids);
	free(job);
}

/* Sends the structure work of a FETCH to the thread pool; false when there
 * is none (or the pool refused it) and fetch_run should go on now. */
static bool fetch_warm_start(struct imap_session *s, struct imap_fetch_ctx *f)
{
	bool body = fetch_has(f, FI_BODY), bodystructure = fetch_has(f, FI_BODYSTRUCTURE);
	if (!body && !bodystructure)
		return false;
	struct fetch_warm_job *job = xcalloc(1, sizeof(*job));
	job->uids = xmalloc((f->msg_count + 1) * sizeof(*job->uids));
	for (size_t i = 0; i < f->msg_count; i++) {
		if (f->wanted[i] && (f->changedsince == 0 || f->msgs[i].modseq > f->changedsince))
			job->uids[job->count++] = f->msgs[i].uid;
	}
	if (job->count == 0) {
		free(job->uids);
		free(job);
		return false;
	}
	job->work.data = job;
	job->datadir = xstrdup(s->server->d->datadir);
	job->user = xstrdup(s->ms->user);
	job->folder = xstrdup(s->view->folder);
	job->body = body;
	job->bodystructure = bodystructure;
	job->srv = s->server->srv;
	job->c = s->c;
	job->conn_id = s->id;
	job->queued_ns = uv_hrtime();
	conn_ref(s->c);
	if (uv_queue_work(conn_loop(s->c), &job->work, fetch_warm_work, fetch_warm_done) != 0) {
		conn_unref(s->c);
		free(job->datadir);
		free(job->user);
		free(job->folder);
		free(job->uids);
		free(job);
		return false;
	}
	return true;
}

/* Reads the rows of the messages asked for and marks which were asked for. */
static int fetch_load_msgs(struct imap_session *s, struct imap_fetch_ctx *f)
{
	int ret = imap_view_load_msgs(s, f->idx, f->n, &f->msgs, &f->msg_count);
	if (ret < 0)
		return ret;
	struct imap_view *v = s->view;
	f->wanted = xcalloc(f->msg_count + 1, sizeof(*f->wanted));
	f->seen_changed = xcalloc(f->msg_count + 1, sizeof(*f->seen_changed));
	for (size_t i = 0, k = 0; i < f->msg_count; i++) {
		while (k < f->n && imap_view_uid(v, f->idx[k]) < f->msgs[i].uid)
			k++;
		f->wanted[i] = k < f->n && imap_view_uid(v, f->idx[k]) == f->msgs[i].uid;
	}
	return 0;
}

void imap_cmd_fetch(struct imap_session *s, struct imap_cmd *cmd)
{
	struct imap_view *v = s->view;
	if (cmd->count < 2 || cmd->count > 3 || cmd->args[0].type != IMAP_ARG_ATOM) {
		imap_cmd_finish(s, cmd, "BAD", "FETCH takes a set and items");
		return;
	}
	struct imap_fetch_ctx *f = xcalloc(1, sizeof(*f));
	const struct imap_arg *items = &cmd->args[1];
	int ret = 0;
	if (items->type == IMAP_ARG_LIST) {
		if (items->count == 0)
			ret = -1;
		for (size_t i = 0; i < items->count && ret == 0; i++)
			ret = fetch_parse_item(f, &items->children[i]);
	} else {
		ret = fetch_parse_item(f, items);
	}
	if (ret == 0 && cmd->count == 3) {
		const struct imap_arg *mods = &cmd->args[2];
		char *end = NULL;
		if (mods->type != IMAP_ARG_LIST || mods->count != 2 ||
		    !imap_arg_atom_is(&mods->children[0], "CHANGEDSINCE") ||
		    mods->children[1].type != IMAP_ARG_ATOM ||
		    (f->changedsince = strtoull(mods->children[1].data, &end, 10), *end != '\0')) {
			ret = -1;
		} else {
			s->condstore = true;
			if (fetch_add(f, FI_MODSEQ) == NULL)
				ret = -1;
		}
	}
	if (ret < 0) {
		fetch_free(&f);
		imap_cmd_finish(s, cmd, "BAD", "Invalid FETCH items");
		return;
	}
	if (s->condstore && fetch_add(f, FI_MODSEQ) == NULL) {
		fetch_free(&f);
		imap_cmd_finish(s, cmd, "BAD", "Too many FETCH items");
		return;
	}
	/* UID FETCH always answers with the UID, first (RFC 3501 6.4.8). */
	if (cmd->uid) {
		struct fetch_item *uid = fetch_add(f, FI_UID);
		if (uid == NULL) {
			fetch_free(&f);
			imap_cmd_finish(s, cmd, "BAD", "Too many FETCH items");
			return;
		}
		struct fetch_item tmp = *uid;
		memmove(&f->items[1], &f->items[0], (size_t)(uid - f->items) * sizeof(tmp));
		f->items[0] = tmp;
	}
	char *err = NULL;
	if (imap_view_resolve(v, cmd->args[0].data, cmd->uid, &f->idx, &f->n, &err) < 0) {
		fetch_free(&f);
		imap_cmd_finish(s, cmd, "BAD", "%s", err);
		free(err);
		return;
	}
	ret = f->n == 0 ? 0 : fetch_load_msgs(s, f);
	if (ret < 0) {
		fetch_free(&f);
		imap_cmd_store_error(s, cmd, ret, "Cannot read messages");
		return;
	}
	fetch_mark_seen(s, f);
	s->fetch = f;
	if (!fetch_warm_start(s, f))
		fetch_run(s);
}
