/* imap_fetch.c: FETCH and UID FETCH (RFC 3501 6.4.5, 7.4.2) with CONDSTORE's
 * MODSEQ and CHANGEDSINCE (RFC 7162).
 *
 * Items are parsed once into a list; then the messages are answered one by
 * one by a small producer (fetch_run) that stops whenever the unsent output
 * passes NET_OUTPUT_HIGH_WATER and continues from conn_on_drain. A whole
 * message (BODY[], RFC822, TEXT) is streamed from the store in chunks, never
 * loaded whole; headers come from the header section alone; only a part
 * number (BODY[1.2]) loads the message to find the part.
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
	struct store_msg *msgs;   /* every message, UID order */
	size_t msg_count;
	const struct store_msg *cur;
	bool seen_changed;
	store_reader *reader;
	uint64_t stream_off, stream_left;
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

/* Writes "{n}\r\n" and the data, or "" for an empty string. */
static void fetch_write_literal(struct imap_session *s, const char *data, size_t len)
{
	char head[32];
	int n = snprintf(head, sizeof(head), "{%zu}\r\n", len);
	conn_write(s->c, head, (size_t)n);
	if (len > 0)
		conn_write_quiet(s->c, data, len);
}

/* Applies <offset.length> to a loaded piece. */
static void fetch_write_partial(struct imap_session *s, const struct fetch_item *it,
				const char *data, size_t len)
{
	if (it->partial) {
		size_t off = it->partial_offset < len ? (size_t)it->partial_offset : len;
		size_t take = len - off < it->partial_len ? len - off : (size_t)it->partial_len;
		fetch_write_literal(s, data + off, take);
	} else {
		fetch_write_literal(s, data, len);
	}
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

/* Answers a section that names a MIME part: loads the message. */
static void fetch_part_section(struct imap_session *s, const struct fetch_item *it, uint32_t uid)
{
	struct imap_view *v = s->view;
	char *msg = NULL;
	size_t len = 0;
	if (store_msg_load(s->ms->st, v->folder, uid, &msg, &len) < 0) {
		conn_write_str(s->c, "NIL");
		return;
	}
	struct mime_part root;
	mime_parse(msg, len, &root);
	const struct mime_part *part = mime_find_part(&root, it->part);
	buf_t out = BUF_INIT;
	if (part != NULL) {
		switch (it->text) {
		case ST_ALL:
			buf_append(&out, msg + part->body_offset, part->body_len);
			break;
		case ST_MIME:
			buf_append(&out, msg + part->header_offset, part->header_len);
			break;
		default: {
			/* HEADER/TEXT of a part address its encapsulated message. */
			const struct mime_part *inner = part->child_count == 1 &&
								part->message_header != NULL
							? &part->children[0]
							: NULL;
			if (inner == NULL)
				break;
			size_t hstart = part->body_offset;
			size_t hlen = inner->header_offset + inner->header_len - hstart;
			if (inner->header_offset < hstart)
				hlen = inner->header_len;
			if (it->text == ST_HEADER)
				buf_append(&out, msg + hstart, hlen);
			else if (it->text == ST_TEXT)
				buf_append(&out, msg + hstart + hlen, part->body_len > hlen
								      ? part->body_len - hlen : 0);
			else
				fetch_filter_header(msg + hstart, hlen, it, &out);
			break;
		}
		}
	}
	fetch_write_partial(s, it, out.data != NULL ? out.data : "", out.len);
	buf_free(&out);
	mime_part_free(&root);
	free(msg);
}

/* Starts one section item: small pieces are written now; a whole message or
 * its text is set up for streaming. */
static void fetch_section(struct imap_session *s, struct imap_fetch_ctx *f,
			  const struct fetch_item *it, const struct store_msg *m)
{
	struct imap_view *v = s->view;
	conn_write_str(s->c, it->name);
	conn_write_str(s->c, " ");
	if (m->lifecycle_id != NULL)
		log_event(m->lifecycle_id, "fetched", "user", s->user, "proto", "imap", "section",
			  it->name, NULL);
	if (it->part != NULL) {
		fetch_part_section(s, it, m->uid);
		return;
	}
	if (it->text == ST_ALL || it->text == ST_TEXT) {
		uint64_t start = 0, size = m->size;
		if (it->text == ST_TEXT) {
			char *hdr = NULL;
			size_t hlen = 0;
			if (store_msg_load_header(s->ms->st, v->folder, m->uid, &hdr, &hlen) == 0) {
				start = hlen;
				free(hdr);
			}
			size = size > start ? size - start : 0;
		}
		if (it->partial) {
			uint64_t off = it->partial_offset < size ? it->partial_offset : size;
			start += off;
			size -= off;
			if (size > it->partial_len)
				size = it->partial_len;
		}
		if (size == 0 || store_msg_open(s->ms->st, v->folder, m->uid, &f->reader) < 0) {
			fetch_write_literal(s, "", 0);
			return;
		}
		conn_printf(s->c, "{%llu}\r\n", (unsigned long long)size);
		f->stream_off = start;
		f->stream_left = size;
		return;
	}
	char *hdr = NULL;
	size_t hlen = 0;
	if (store_msg_load_header(s->ms->st, v->folder, m->uid, &hdr, &hlen) < 0) {
		fetch_write_literal(s, "", 0);
		return;
	}
	if (it->text == ST_HEADER) {
		fetch_write_partial(s, it, hdr, hlen);
	} else {
		buf_t out = BUF_INIT;
		fetch_filter_header(hdr, hlen, it, &out);
		fetch_write_partial(s, it, buf_cstr(&out), out.len);
		buf_free(&out);
	}
	free(hdr);
}

/* Writes one non-body item. */
static void fetch_simple(struct imap_session *s, const struct fetch_item *it,
			 const struct store_msg *m)
{
	struct imap_view *v = s->view;
	buf_t b = BUF_INIT;
	switch (it->kind) {
	case FI_UID:
		buf_printf(&b, "UID %u", m->uid);
		break;
	case FI_FLAGS:
		buf_append_str(&b, "FLAGS ");
		imap_format_flags(&b, m->flags, m->keywords, imap_view_is_recent(v, m->uid));
		break;
	case FI_INTERNALDATE: {
		static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
						   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
		time_t t = (time_t)(m->internal_date + (int64_t)m->internal_tz * 60);
		struct tm tm;
		gmtime_r(&t, &tm);
		int tz = m->internal_tz < 0 ? -m->internal_tz : m->internal_tz;
		buf_printf(&b, "INTERNALDATE \"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d\"", tm.tm_mday,
			   months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
			   m->internal_tz < 0 ? '-' : '+', tz / 60, tz % 60);
		break;
	}
	case FI_SIZE:
		buf_printf(&b, "RFC822.SIZE %llu", (unsigned long long)m->size);
		break;
	case FI_MODSEQ:
		buf_printf(&b, "MODSEQ (%llu)", (unsigned long long)m->modseq);
		break;
	case FI_ENVELOPE: {
		char *env = imap_envelope(s->ms->st, v->folder, m->uid);
		buf_printf(&b, "ENVELOPE %s", env != NULL ? env : "NIL");
		free(env);
		break;
	}
	case FI_BODY:
	case FI_BODYSTRUCTURE: {
		bool ext = it->kind == FI_BODYSTRUCTURE;
		char *bs = imap_bodystructure(s->ms->st, v->folder, m->uid, ext);
		buf_printf(&b, "%s %s", ext ? "BODYSTRUCTURE" : "BODY", bs != NULL ? bs : "NIL");
		free(bs);
		break;
	}
	case FI_SECTION:
		break;
	}
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
}

/* Sets \Seen before a non-PEEK body fetch (RFC 3501 6.4.5). */
static void fetch_mark_seen(struct imap_session *s, struct imap_fetch_ctx *f,
			    const struct store_msg *m)
{
	f->seen_changed = false;
	if (!f->sets_seen || s->view->readonly || (m->flags & STORE_FLAG_SEEN))
		return;
	uint64_t modseq = 0;
	if (store_msg_set_flags(s->ms->st, s->view->folder, m->uid, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
				NULL, 0, &modseq) < 0)
		return;
	struct store_msg *mm = (struct store_msg *)m;
	mm->flags |= STORE_FLAG_SEEN;
	mm->modseq = modseq;
	imap_view_note_reported(s->view, m->uid, modseq);
	f->seen_changed = true;
	if (m->lifecycle_id != NULL)
		log_event(m->lifecycle_id, "flags", "user", s->user, "proto", "imap", "flags",
			  "+\\Seen", NULL);
}

static void fetch_run(struct imap_session *s);

/* The client read enough: go on. */
static void fetch_drained(conn *c, void *arg)
{
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
		uint32_t uid = s->view->uids[f->idx[f->pos]];
		if (!f->in_message) {
			f->cur = fetch_find_msg(f, uid);
			if (f->cur == NULL || (f->changedsince > 0 && f->cur->modseq <= f->changedsince)) {
				f->pos++;
				continue;
			}
			fetch_mark_seen(s, f, f->cur);
			conn_printf(s->c, "* %zu FETCH (", f->idx[f->pos] + 1);
			f->in_message = true;
			f->item = 0;
		}
		if (f->item < f->item_count) {
			const struct fetch_item *it = &f->items[f->item];
			if (f->item > 0)
				conn_write_str(s->c, " ");
			f->item++;
			if (it->kind == FI_SECTION)
				fetch_section(s, f, it, f->cur);
			else
				fetch_simple(s, it, f->cur);
			continue;
		}
		if (f->seen_changed && !fetch_has(f, FI_FLAGS)) {
			buf_t b = BUF_INIT;
			buf_append_str(&b, " FLAGS ");
			imap_format_flags(&b, f->cur->flags, f->cur->keywords,
					  imap_view_is_recent(s->view, uid));
			conn_write(s->c, b.data, b.len);
			buf_free(&b);
		}
		conn_write_str(s->c, ")\r\n");
		f->in_message = false;
		f->pos++;
	}
	free(chunk);
	fetch_free(&s->fetch);
	imap_cmd_finish(s, &s->cmd, "OK", "%sFETCH completed", s->cmd.uid ? "UID " : "");
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
	ret = f->n == 0 ? 0 : store_msg_list(s->ms->st, v->folder, &f->msgs, &f->msg_count);
	if (ret < 0) {
		fetch_free(&f);
		imap_cmd_store_error(s, cmd, ret, "Cannot read messages");
		return;
	}
	s->fetch = f;
	fetch_run(s);
}
