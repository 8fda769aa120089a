/* msgview.c: a fetched message made readable, and the IMAP envelope helpers.
 *
 * msgview_new parses the header and the MIME tree (mime.h) and writes the
 * pager's text: the chosen headers decoded (RFC 2047), then the body parts in
 * order. multipart/alternative shows its text/plain part (its HTML one only
 * when there is no plain text), text is decoded from quoted-printable/base64
 * and converted to UTF-8, every other leaf becomes an attachment line. A body
 * that cannot be decoded is shown as written: malformed MIME is never
 * refused. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "address.h"
#include "buffer.h"
#include "header.h"
#include "mime.h"
#include "mua.h"

#define MSGVIEW_MAX_ATTACHMENTS 1000

/* A header's decoded value or "". */
static char *decoded_field(const struct header *h, const char *name)
{
	const char *v = header_get(h, name);
	return v != NULL ? header_decode_words(v) : xstrdup("");
}

/* A header's raw value or "". */
static char *raw_field(const struct header *h, const char *name)
{
	const char *v = header_get(h, name);
	return xstrdup(v != NULL ? v : "");
}

/* True when a part is meant as an attachment rather than inline text. */
static bool part_is_attachment(const struct mime_part *p)
{
	return p->disposition.type != NULL && strcasecmp(p->disposition.type, "attachment") == 0;
}

/* The file name of a part: disposition filename, then Content-Type name. */
static const char *part_filename(const struct mime_part *p)
{
	const char *name = p->disposition.type != NULL ?
			   content_type_param(&p->disposition, "filename") : NULL;
	if (name == NULL)
		name = content_type_param(&p->type, "name");
	return name;
}

/* Appends decoded text of a part (raw when it cannot be decoded). */
static void append_part_text(struct msgview *v, const struct mime_part *p, bool html, buf_t *out)
{
	char *data = NULL;
	size_t len = 0;
	if (mime_decode_body(v->raw, p, true, &data, &len) < 0) {
		free(data);
		data = xstrndup(v->raw + p->body_offset, p->body_len);
		len = p->body_len;
	}
	if (html) {
		char *text = msgview_html_to_text(data, len);
		free(data);
		data = text;
		len = strlen(text);
	}
	/* Line ends become LF; other control bytes are shown as spaces by the pager. */
	for (size_t i = 0; i < len; i++)
		if (!(data[i] == '\r' && i + 1 < len && data[i + 1] == '\n'))
			buf_append_char(out, data[i] == '\0' ? ' ' : data[i]);
	if (out->len > 0 && out->data[out->len - 1] != '\n')
		buf_append_char(out, '\n');
	free(data);
}

/* Records an attachment and writes its line into the text. */
static void add_attachment(struct msgview *v, const struct mime_part *p, const char *section,
			   buf_t *out)
{
	if (v->attachment_count >= MSGVIEW_MAX_ATTACHMENTS)
		return;
	char *data = NULL;
	size_t len = 0;
	size_t size = p->body_len;
	if (mime_decode_body(v->raw, p, false, &data, &len) == 0)
		size = len;
	free(data);
	v->attachments = xrealloc(v->attachments, (v->attachment_count + 1) *
				  sizeof(*v->attachments));
	struct msgview_attachment *a = &v->attachments[v->attachment_count++];
	const char *name = part_filename(p);
	a->section = xstrdup(section);
	a->filename = name != NULL ? xstrdup(name) : xasprintf("part-%s", section);
	/* A name from the message must not walk out of the save directory. */
	for (char *s = a->filename; *s != '\0'; s++)
		if (*s == '/' || *s == '\\' || (unsigned char)*s < 0x20)
			*s = '_';
	if (a->filename[0] == '.')
		a->filename[0] = '_';
	a->content_type = xasprintf("%s/%s", p->type.type != NULL ? p->type.type : "application",
				    p->type.subtype != NULL ? p->type.subtype : "octet-stream");
	a->size = size;
	a->part = p;
	buf_printf(out, "\n[-- Attachment #%zu: %s (%s, %zu bytes) --]\n", v->attachment_count,
		   a->filename, a->content_type, a->size);
}

/* Walks the MIME tree writing text and collecting attachments. */
static void render_part(struct msgview *v, const struct mime_part *p, const char *section,
			buf_t *out, unsigned depth)
{
	const char *type = p->type.type != NULL ? p->type.type : "text";
	const char *sub = p->type.subtype != NULL ? p->type.subtype : "plain";
	if (depth > MIME_MAX_DEPTH)
		return;
	if (strcmp(type, "multipart") == 0 && p->child_count > 0) {
		if (strcmp(sub, "alternative") == 0) {
			size_t pick = 0;
			bool found = false;
			for (size_t i = 0; i < p->child_count; i++) {
				const struct mime_part *c = &p->children[i];
				if (c->type.type != NULL && strcmp(c->type.type, "text") == 0 &&
				    c->type.subtype != NULL && strcmp(c->type.subtype, "plain") == 0) {
					pick = i;
					found = true;
				}
			}
			for (size_t i = 0; !found && i < p->child_count; i++) {
				const struct mime_part *c = &p->children[i];
				if (c->type.type != NULL && strcmp(c->type.type, "text") == 0) {
					pick = i;
					found = true;
				}
			}
			char *s = section[0] != '\0' ? xasprintf("%s.%zu", section, pick + 1) :
				  xasprintf("%zu", pick + 1);
			render_part(v, &p->children[pick], s, out, depth + 1);
			free(s);
			return;
		}
		for (size_t i = 0; i < p->child_count; i++) {
			char *s = section[0] != '\0' ? xasprintf("%s.%zu", section, i + 1) :
				  xasprintf("%zu", i + 1);
			render_part(v, &p->children[i], s, out, depth + 1);
			free(s);
		}
		return;
	}
	const char *sec = section[0] != '\0' ? section : "1";
	if (strcmp(type, "message") == 0 && strcmp(sub, "rfc822") == 0 && p->child_count == 1 &&
	    p->message_header != NULL) {
		add_attachment(v, p, sec, out);
		buf_append_str(out, "\n[-- Forwarded message --]\n");
		static const char *const names[] = {"From", "Date", "Subject", "To"};
		for (size_t i = 0; i < 4; i++) {
			char *val = decoded_field(p->message_header, names[i]);
			if (val[0] != '\0')
				buf_printf(out, "%s: %s\n", names[i], val);
			free(val);
		}
		buf_append_char(out, '\n');
		render_part(v, &p->children[0], sec, out, depth + 1);
		return;
	}
	if (strcmp(type, "text") == 0 && !part_is_attachment(p) &&
	    (strcmp(sub, "plain") == 0 || strcmp(sub, "html") == 0) &&
	    (strcmp(sub, "plain") == 0 || part_filename(p) == NULL)) {
		append_part_text(v, p, strcmp(sub, "html") == 0, out);
		return;
	}
	add_attachment(v, p, sec, out);
}

/* Parses a message for display. */
struct msgview *msgview_new(const char *raw, size_t len)
{
	struct msgview *v = xcalloc(1, sizeof(*v));
	v->raw = xmalloc(len + 1);
	memcpy(v->raw, raw, len);
	v->raw[len] = '\0';
	v->raw_len = len;
	struct header h;
	header_parse(v->raw, len, &h);
	v->from = decoded_field(&h, "From");
	v->to = decoded_field(&h, "To");
	v->cc = decoded_field(&h, "Cc");
	v->date = decoded_field(&h, "Date");
	v->subject = decoded_field(&h, "Subject");
	v->reply_to = decoded_field(&h, "Reply-To");
	v->message_id = raw_field(&h, "Message-ID");
	v->in_reply_to = raw_field(&h, "In-Reply-To");
	v->references = raw_field(&h, "References");
	v->from_raw = raw_field(&h, "From");
	v->to_raw = raw_field(&h, "To");
	v->cc_raw = raw_field(&h, "Cc");
	v->reply_to_raw = raw_field(&h, "Reply-To");
	buf_t all = BUF_INIT;
	for (size_t i = 0; i < h.count; i++) {
		char *val = header_decode_words(h.fields[i].value);
		buf_printf(&all, "%s: %s\n", h.fields[i].name, val);
		free(val);
	}
	v->all_headers = buf_steal(&all);
	header_free(&h);

	v->root = xcalloc(1, sizeof(*v->root));
	mime_parse(v->raw, len, v->root);
	buf_t body = BUF_INIT;
	render_part(v, v->root, "", &body, 0);
	v->body_text = buf_steal(&body);

	buf_t text = BUF_INIT;
	static const char *const names[] = {"From", "To", "Cc", "Date", "Subject"};
	const char *values[] = {v->from, v->to, v->cc, v->date, v->subject};
	for (size_t i = 0; i < 5; i++)
		if (values[i][0] != '\0' || i == 4)
			buf_printf(&text, "%s: %s\n", names[i], values[i]);
	buf_append_char(&text, '\n');
	buf_append_str(&text, v->body_text);
	v->text = buf_steal(&text);
	return v;
}

/* Frees a view. */
void msgview_free(struct msgview **vp)
{
	struct msgview *v = *vp;
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->attachment_count; i++) {
		free(v->attachments[i].section);
		free(v->attachments[i].filename);
		free(v->attachments[i].content_type);
	}
	free(v->attachments);
	if (v->root != NULL) {
		mime_part_free(v->root);
		free(v->root);
	}
	char **fields[] = {&v->raw, &v->text, &v->all_headers, &v->body_text, &v->from, &v->to,
			   &v->cc, &v->date, &v->subject, &v->message_id, &v->in_reply_to,
			   &v->references, &v->reply_to, &v->from_raw, &v->to_raw, &v->cc_raw,
			   &v->reply_to_raw};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		free(*fields[i]);
	free(v);
	*vp = NULL;
}

/* The decoded bytes of attachment i. */
int msgview_attachment_data(const struct msgview *v, size_t i, char **data_r, size_t *len_r)
{
	if (i >= v->attachment_count)
		return -1;
	const struct mime_part *p = v->attachments[i].part;
	if (p->type.type != NULL && strcmp(p->type.type, "message") == 0) {
		*data_r = xstrndup(v->raw + p->body_offset, p->body_len);
		*len_r = p->body_len;
		return 0;
	}
	if (mime_decode_body(v->raw, p, false, data_r, len_r) < 0) {
		free(*data_r);
		*data_r = NULL;
		return -1;
	}
	return 0;
}

/* Appends a code point as UTF-8. */
static void append_utf8(buf_t *b, unsigned long cp)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	if (cp < 0x80) {
		buf_append_char(b, (char)cp);
	} else if (cp < 0x800) {
		buf_append_char(b, (char)(0xc0 | (cp >> 6)));
		buf_append_char(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		buf_append_char(b, (char)(0xe0 | (cp >> 12)));
		buf_append_char(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_append_char(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		buf_append_char(b, (char)(0xf0 | (cp >> 18)));
		buf_append_char(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
		buf_append_char(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_append_char(b, (char)(0x80 | (cp & 0x3f)));
	}
}

static const struct {
	const char *name;
	unsigned long cp;
} html_entities[] = {
	{"amp", '&'},     {"lt", '<'},       {"gt", '>'},       {"quot", '"'},
	{"apos", '\''},   {"nbsp", 0xa0},    {"copy", 0xa9},    {"reg", 0xae},
	{"mdash", 0x2014}, {"ndash", 0x2013}, {"hellip", 0x2026}, {"euro", 0x20ac},
	{"laquo", 0xab},  {"raquo", 0xbb},   {"rsquo", 0x2019}, {"lsquo", 0x2018},
	{"ldquo", 0x201c}, {"rdquo", 0x201d}, {"bull", 0x2022},
};

/* Tags that end a line of text. */
static bool html_tag_breaks(const char *tag)
{
	static const char *const tags[] = {"br", "p", "/p", "div", "/div", "li", "tr", "/tr",
					   "h1", "h2", "h3", "h4", "h5", "h6", "/h1", "/h2",
					   "/h3", "/h4", "/h5", "/h6", "ul", "/ul", "ol", "/ol",
					   "table", "/table", "blockquote", "/blockquote", "hr"};
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
		if (strcasecmp(tag, tags[i]) == 0)
			return true;
	return false;
}

/* HTML to text: tags dropped, scripts and styles skipped, entities decoded. */
char *msgview_html_to_text(const char *html, size_t len)
{
	buf_t b = BUF_INIT;
	bool space = false, skip = false, pre = false;
	size_t newlines = 2;
	for (size_t i = 0; i < len; i++) {
		char c = html[i];
		if (c == '<') {
			size_t end = i + 1;
			while (end < len && html[end] != '>')
				end++;
			char tag[16];
			size_t t = 0;
			size_t k = i + 1;
			if (k < len && html[k] == '/')
				tag[t++] = html[k++];
			while (k < end && t < sizeof(tag) - 1 && isalnum((unsigned char)html[k]))
				tag[t++] = (char)tolower((unsigned char)html[k++]);
			tag[t] = '\0';
			if (strcmp(tag, "script") == 0 || strcmp(tag, "style") == 0 ||
			    strcmp(tag, "head") == 0)
				skip = true;
			else if (strcmp(tag, "/script") == 0 || strcmp(tag, "/style") == 0 ||
				 strcmp(tag, "/head") == 0)
				skip = false;
			else if (strcmp(tag, "pre") == 0)
				pre = true;
			else if (strcmp(tag, "/pre") == 0)
				pre = false;
			if (!skip && html_tag_breaks(tag) && newlines < 2) {
				buf_append_char(&b, '\n');
				newlines++;
				space = false;
			}
			if (!skip && strcmp(tag, "li") == 0) {
				buf_append_str(&b, "* ");
				newlines = 0;
			}
			i = end;
			continue;
		}
		if (skip)
			continue;
		if (c == '&') {
			size_t end = i + 1;
			while (end < len && end - i < 12 && html[end] != ';' && html[end] != '<' &&
			       !isspace((unsigned char)html[end]))
				end++;
			if (end < len && html[end] == ';') {
				char name[16];
				size_t n = end - i - 1;
				memcpy(name, html + i + 1, n);
				name[n] = '\0';
				unsigned long cp = 0;
				if (name[0] == '#')
					cp = (name[1] == 'x' || name[1] == 'X') ?
					     strtoul(name + 2, NULL, 16) : strtoul(name + 1, NULL, 10);
				for (size_t e = 0; cp == 0 && e < sizeof(html_entities) /
							sizeof(html_entities[0]); e++)
					if (strcmp(name, html_entities[e].name) == 0)
						cp = html_entities[e].cp;
				if (cp != 0) {
					if (space)
						buf_append_char(&b, ' ');
					space = false;
					append_utf8(&b, cp == 0xa0 ? ' ' : cp);
					newlines = 0;
					i = end;
					continue;
				}
			}
		}
		if (!pre && isspace((unsigned char)c)) {
			space = newlines == 0;
			continue;
		}
		if (pre && c == '\n') {
			buf_append_char(&b, '\n');
			newlines++;
			continue;
		}
		if (space)
			buf_append_char(&b, ' ');
		space = false;
		buf_append_char(&b, c);
		newlines = 0;
	}
	if (b.len > 0 && b.data[b.len - 1] != '\n')
		buf_append_char(&b, '\n');
	return buf_steal(&b);
}

/* ---- IMAP envelope and FETCH helpers ---- */

/* A string argument or NULL (NIL, lists). */
static const char *arg_str(const struct imap_arg *a)
{
	if (a == NULL || imap_arg_is_nil(a))
		return NULL;
	return imap_arg_string(a);
}

/* Looks up a FETCH item by name (a name with an unclosed '[' is a prefix). */
const struct imap_arg *mua_fetch_item(const struct imap_arg *list, const char *name)
{
	if (list == NULL || list->type != IMAP_ARG_LIST)
		return NULL;
	size_t nlen = strlen(name);
	/* "BODY[HEADER.FIELDS" (an open bracket) matches any field list. */
	bool prefix = strchr(name, '[') != NULL && name[nlen - 1] != ']';
	for (size_t i = 0; i + 1 < list->count; i += 2) {
		const char *key = imap_arg_string(&list->children[i]);
		if (key == NULL)
			continue;
		if (prefix ? strncasecmp(key, name, nlen) == 0 : strcasecmp(key, name) == 0)
			return &list->children[i + 1];
	}
	return NULL;
}

/* The first address of an envelope address list: display and addr-spec. */
static void envelope_first_address(const struct imap_arg *list, char **display_r, char **spec_r)
{
	*display_r = xstrdup("");
	*spec_r = xstrdup("");
	if (list == NULL || list->type != IMAP_ARG_LIST || list->count == 0)
		return;
	const struct imap_arg *a = &list->children[0];
	if (a->type != IMAP_ARG_LIST || a->count < 4)
		return;
	const char *name = arg_str(&a->children[0]);
	const char *mailbox = arg_str(&a->children[2]);
	const char *host = arg_str(&a->children[3]);
	free(*spec_r);
	*spec_r = xasprintf("%s%s%s", mailbox != NULL ? mailbox : "", host != NULL ? "@" : "",
			    host != NULL ? host : "");
	free(*display_r);
	*display_r = name != NULL && name[0] != '\0' ? header_decode_words(name) : xstrdup(*spec_r);
}

/* Parses an ENVELOPE list. */
void mua_envelope_parse(const struct imap_arg *env, struct mua_envelope *out)
{
	memset(out, 0, sizeof(*out));
	const struct imap_arg *c = env != NULL && env->type == IMAP_ARG_LIST && env->count >= 10 ?
				   env->children : NULL;
	const char *date = c != NULL ? arg_str(&c[0]) : NULL;
	const char *subject = c != NULL ? arg_str(&c[1]) : NULL;
	out->date = xstrdup(date != NULL ? date : "");
	int tz;
	if (date == NULL || header_parse_date(date, &out->time, &tz) < 0)
		out->time = 0;
	out->subject = subject != NULL ? header_decode_words(subject) : xstrdup("");
	for (char *p = out->subject; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	envelope_first_address(c != NULL ? &c[2] : NULL, &out->from, &out->from_addr);
	char *to_spec;
	envelope_first_address(c != NULL ? &c[5] : NULL, &out->to, &to_spec);
	free(to_spec);
	const char *irt = c != NULL ? arg_str(&c[8]) : NULL;
	const char *mid = c != NULL ? arg_str(&c[9]) : NULL;
	out->in_reply_to = xstrdup(irt != NULL ? irt : "");
	out->message_id = xstrdup(mid != NULL ? mid : "");
}

void mua_envelope_free(struct mua_envelope *e)
{
	free(e->date);
	free(e->subject);
	free(e->from);
	free(e->from_addr);
	free(e->to);
	free(e->message_id);
	free(e->in_reply_to);
	memset(e, 0, sizeof(*e));
}

/* True when a BODYSTRUCTURE has an attachment-like part. */
bool mua_bodystructure_has_attachment(const struct imap_arg *bs)
{
	if (bs == NULL || bs->type != IMAP_ARG_LIST || bs->count == 0)
		return false;
	if (bs->children[0].type == IMAP_ARG_LIST) {
		for (size_t i = 0; i < bs->count; i++)
			if (bs->children[i].type == IMAP_ARG_LIST &&
			    mua_bodystructure_has_attachment(&bs->children[i]))
				return true;
		return false;
	}
	const char *type = arg_str(&bs->children[0]);
	for (size_t i = 0; i < bs->count; i++) {
		const struct imap_arg *a = &bs->children[i];
		if (a->type == IMAP_ARG_LIST && a->count >= 1) {
			const char *first = arg_str(&a->children[0]);
			if (first != NULL && strcasecmp(first, "attachment") == 0)
				return true;
		}
	}
	if (type != NULL && strcasecmp(type, "text") != 0 && strcasecmp(type, "multipart") != 0)
		return true;
	return false;
}

/* "Jan 05" (this year) or "2024-01-05". */
void mua_format_short_date(int64_t t, char *out, size_t cap)
{
	if (t == 0) {
		snprintf(out, cap, "      ");
		return;
	}
	time_t tt = (time_t)t, now = time(NULL);
	struct tm tm, now_tm;
	localtime_r(&tt, &tm);
	localtime_r(&now, &now_tm);
	if (tm.tm_year == now_tm.tm_year)
		strftime(out, cap, "%b %d", &tm);
	else
		strftime(out, cap, "%Y-%m", &tm);
}
