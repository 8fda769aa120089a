/* mime.c: the MIME structure of a message (RFC 2045, RFC 2046) for IMAP
 * BODYSTRUCTURE and the mua.
 *
 * mime_parse_part handles one byte range [start, end) of the raw message:
 * its header (header_parse), then by Content-Type one of
 *
 *   leaf             nothing more
 *   multipart/ *     the body is split at delimiter lines into child ranges
 *                    (mime_split_multipart) and each is parsed, depth + 1
 *   message/rfc822   the body is one inner message: its header is kept in
 *                    message_header and it becomes the only child, depth + 1
 *
 * Invariants, which imapd relies on for BODYSTRUCTURE: a part of type
 * multipart always has at least one child; a message/rfc822 (or
 * message/global) part always has exactly one child and a message_header.
 * Whatever would break them (no boundary parameter, no delimiter line,
 * MIME_MAX_DEPTH or MIME_MAX_PARTS reached) turns the part into a
 * text/plain; charset=us-ascii leaf, as RFC 2045 5.2 says for a bad type.
 *
 * Delimiters (RFC 2046 5.1.1) count only at the start of a line, followed by
 * nothing but blanks; the line end before a delimiter belongs to it, not to
 * the part above. The preamble and the epilogue belong to no part. A missing
 * close delimiter ends the last part at the end of its parent. */
#include "mime.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "codec.h"

#define MIME_BOUNDARY_MAX 200
#define MIME_SECTION_DEPTH_MAX 64

struct range {
	size_t start, end;
};

/* Lines in [start, end): line feeds, plus a last line that has none. */
static size_t count_lines(const char *msg, size_t start, size_t end)
{
	size_t lines = 0;
	const char *p = msg + start;
	const char *stop = msg + end;
	while (p < stop) {
		const char *nl = memchr(p, '\n', (size_t)(stop - p));
		lines++;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return lines;
}

/* Sets the default type: text/plain; charset=us-ascii, or message/rfc822 in a digest. */
static void mime_set_default_type(struct content_type *ct, bool in_digest)
{
	content_type_free(ct);
	if (in_digest) {
		ct->type = xstrdup("message");
		ct->subtype = xstrdup("rfc822");
		return;
	}
	ct->type = xstrdup("text");
	ct->subtype = xstrdup("plain");
	ct->params = xmalloc(sizeof(*ct->params));
	ct->params[0].name = xstrdup("charset");
	ct->params[0].value = xstrdup("us-ascii");
	ct->param_count = 1;
}

/* Checks whether the line at p (up to stop) is a delimiter for boundary:
 * 0 no, 1 a part delimiter, 2 the close delimiter. */
static int delimiter_kind(const char *p, const char *stop, const char *boundary, size_t blen)
{
	if ((size_t)(stop - p) < blen + 2 || p[0] != '-' || p[1] != '-' ||
	    memcmp(p + 2, boundary, blen) != 0)
		return 0;
	p += blen + 2;
	int kind = 1;
	if (stop - p >= 2 && p[0] == '-' && p[1] == '-') {
		kind = 2;
		p += 2;
	}
	while (p < stop && (*p == ' ' || *p == '\t'))
		p++;
	if (p == stop || *p == '\n' || (*p == '\r' && (p + 1 == stop || p[1] == '\n')))
		return kind;
	return 0;
}

/* Splits a multipart body into its parts' ranges (at most max of them). */
static size_t mime_split_multipart(const char *msg, size_t start, size_t end,
				   const char *boundary, struct range **ranges_r, size_t max)
{
	size_t blen = strlen(boundary);
	size_t count = 0, cap = 0;
	bool in_preamble = true;
	size_t part_start = start;
	size_t pos = start;
	*ranges_r = NULL;
	while (pos < end) {
		const char *nl = memchr(msg + pos, '\n', end - pos);
		size_t line_end = nl != NULL ? (size_t)(nl - msg) + 1 : end;
		int kind = msg[pos] == '-' ? delimiter_kind(msg + pos, msg + end, boundary, blen) : 0;
		if (kind != 0) {
			if (!in_preamble) {
				size_t content_end = pos;
				/* The line end before the delimiter is part of it. */
				if (content_end > part_start && msg[content_end - 1] == '\n')
					content_end--;
				if (content_end > part_start && msg[content_end - 1] == '\r')
					content_end--;
				if (count == max)
					return count;
				if (count == cap) {
					cap = cap == 0 ? 4 : cap * 2;
					*ranges_r = xrealloc(*ranges_r, cap * sizeof(**ranges_r));
				}
				(*ranges_r)[count++] = (struct range){part_start, content_end};
			}
			in_preamble = false;
			part_start = line_end;
			if (kind == 2)
				return count; /* the epilogue is ignored */
		}
		pos = line_end;
	}
	if (!in_preamble && count < max) {
		/* No close delimiter: the last part runs to the end. */
		if (count == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			*ranges_r = xrealloc(*ranges_r, cap * sizeof(**ranges_r));
		}
		(*ranges_r)[count++] = (struct range){part_start, end};
	}
	return count;
}

/* A copy of a header value, or NULL. */
static char *header_dup(const struct header *h, const char *name)
{
	const char *v = header_get(h, name);
	return v != NULL ? xstrdup(v) : NULL;
}

/* The transfer encoding: the first token, lower-cased, "7bit" when absent. */
static char *mime_encoding(const struct header *h)
{
	const char *v = header_get(h, "Content-Transfer-Encoding");
	if (v == NULL)
		return xstrdup("7bit");
	while (*v == ' ' || *v == '\t')
		v++;
	size_t n = 0;
	while (v[n] != '\0' && v[n] != ' ' && v[n] != '\t' && v[n] != '(' && v[n] != ';')
		n++;
	if (n == 0)
		return xstrdup("7bit");
	char *e = xstrndup(v, n);
	for (char *p = e; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return e;
}

/* True for the types whose body is one whole message. */
static bool is_message_type(const struct content_type *ct)
{
	return strcmp(ct->type, "message") == 0 &&
	       (strcmp(ct->subtype, "rfc822") == 0 || strcmp(ct->subtype, "global") == 0);
}

/* Parses the part in [start, end); see the top of the file. */
static void mime_parse_part(const char *msg, size_t start, size_t end, int depth, bool in_digest,
			    size_t *parts, struct mime_part *part)
{
	struct header h;
	memset(part, 0, sizeof(*part));
	(*parts)++;
	header_parse(msg + start, end - start, &h);
	part->header_offset = start;
	part->header_len = h.header_len;
	part->body_offset = start + h.header_len;
	part->body_len = end - part->body_offset;
	part->body_lines = count_lines(msg, part->body_offset, end);

	const char *ctv = header_get(&h, "Content-Type");
	/* Absent: the default; unparsable (content_type_parse falls back to a bare
	 * text/plain): text/plain; charset=us-ascii (RFC 2045 5.2). */
	if (ctv == NULL)
		mime_set_default_type(&part->type, in_digest);
	else if (content_type_parse(ctv, false, &part->type) < 0 && part->type.param_count == 0 &&
		 strcmp(part->type.type, "text") == 0 && strcmp(part->type.subtype, "plain") == 0)
		mime_set_default_type(&part->type, false);
	part->id = header_dup(&h, "Content-ID");
	part->description = header_dup(&h, "Content-Description");
	part->md5 = header_dup(&h, "Content-MD5");
	part->language = header_dup(&h, "Content-Language");
	part->location = header_dup(&h, "Content-Location");
	part->encoding = mime_encoding(&h);
	const char *disp = header_get(&h, "Content-Disposition");
	if (disp != NULL && content_type_parse(disp, true, &part->disposition) < 0 &&
	    part->disposition.type == NULL)
		content_type_free(&part->disposition);
	header_free(&h);

	bool room = depth + 1 < MIME_MAX_DEPTH && *parts < MIME_MAX_PARTS;
	if (strcmp(part->type.type, "multipart") == 0) {
		const char *boundary = content_type_param(&part->type, "boundary");
		struct range *ranges = NULL;
		size_t count = 0;
		if (room && boundary != NULL && boundary[0] != '\0' &&
		    strlen(boundary) <= MIME_BOUNDARY_MAX)
			count = mime_split_multipart(msg, part->body_offset, end, boundary, &ranges,
						     MIME_MAX_PARTS - *parts);
		if (count == 0) {
			mime_set_default_type(&part->type, false);
		} else {
			bool digest = strcmp(part->type.subtype, "digest") == 0;
			part->children = xcalloc(count, sizeof(*part->children));
			part->child_count = count;
			for (size_t i = 0; i < count; i++)
				mime_parse_part(msg, ranges[i].start, ranges[i].end, depth + 1, digest,
						parts, &part->children[i]);
		}
		free(ranges);
	} else if (is_message_type(&part->type)) {
		if (!room) {
			mime_set_default_type(&part->type, false);
			return;
		}
		part->message_header = xmalloc(sizeof(*part->message_header));
		header_parse(msg + part->body_offset, part->body_len, part->message_header);
		part->children = xcalloc(1, sizeof(*part->children));
		part->child_count = 1;
		mime_parse_part(msg, part->body_offset, end, depth + 1, false, parts, part->children);
	}
}

/* Parses a whole message into its MIME tree. */
int mime_parse(const char *msg, size_t len, struct mime_part *root_r)
{
	size_t parts = 0;
	mime_parse_part(msg, 0, len, 0, false, &parts, root_r);
	return 0;
}

/* Frees a part and everything under it, and clears it. */
void mime_part_free(struct mime_part *part)
{
	for (size_t i = 0; i < part->child_count; i++)
		mime_part_free(&part->children[i]);
	free(part->children);
	content_type_free(&part->type);
	content_type_free(&part->disposition);
	free(part->id);
	free(part->description);
	free(part->encoding);
	free(part->md5);
	free(part->language);
	free(part->location);
	if (part->message_header != NULL) {
		header_free(part->message_header);
		free(part->message_header);
	}
	memset(part, 0, sizeof(*part));
}

/* True for a part with children by multipart splitting. */
static bool is_multipart(const struct mime_part *p)
{
	return p->type.type != NULL && strcmp(p->type.type, "multipart") == 0 &&
	       p->child_count > 0;
}

/* Follows an IMAP section number (RFC 3501 6.4.5): numbers index the parts of a
 * multipart; a non-multipart body is its own part 1; past a message/rfc822
 * part, numbers continue in its inner message. "" is the whole message. */
const struct mime_part *mime_find_part(const struct mime_part *root, const char *section)
{
	const struct mime_part *body = root; /* the body the next number looks into */
	const struct mime_part *cur = root;
	const char *p = section;
	int depth = 0;
	if (p == NULL || *p == '\0')
		return root;
	for (;;) {
		if (!isdigit((unsigned char)*p) || *p == '0' || ++depth > MIME_SECTION_DEPTH_MAX)
			return NULL;
		size_t n = 0;
		while (isdigit((unsigned char)*p)) {
			if (n > MIME_MAX_PARTS)
				return NULL;
			n = n * 10 + (size_t)(*p++ - '0');
		}
		if (is_multipart(body)) {
			if (n > body->child_count)
				return NULL;
			cur = &body->children[n - 1];
		} else if (n == 1) {
			cur = body;
		} else {
			return NULL;
		}
		if (*p == '\0')
			return cur;
		if (*p++ != '.')
			return NULL;
		if (is_multipart(cur))
			body = cur;
		else if (cur->message_header != NULL && cur->child_count == 1)
			body = &cur->children[0];
		else
			return NULL;
	}
}

/* Decodes a part's body and, for text with to_utf8, converts it to UTF-8. */
int mime_decode_body(const char *msg, const struct mime_part *part, bool to_utf8, char **out_r,
		     size_t *len_r)
{
	const char *body = msg + part->body_offset;
	size_t len = part->body_len;
	buf_t b = BUF_INIT;
	const char *enc = part->encoding != NULL ? part->encoding : "7bit";
	if (strcmp(enc, "base64") == 0) {
		/* RFC 2045 6.8: characters outside the alphabet are ignored, and
		 * padding that completes a quantum marks the end of the data. */
		base64_state st;
		base64_stream_init(&st);
		buf_reserve(&b, len / 4 * 3);
		size_t run = 0;
		for (size_t i = 0; i <= len; i++) {
			unsigned char c = i < len ? (unsigned char)body[i] : 0;
			if (i < len && (isalnum(c) || c == '+' || c == '/')) {
				run++;
				continue;
			}
			if (run > 0 && base64_stream_decode(&st, body + i - run, run, &b) < 0)
				break;
			run = 0;
			if (c == '=' && (base64_stream_decode(&st, "=", 1, &b) < 0 || st.nbits == 0))
				break;
		}
	} else if (strcmp(enc, "quoted-printable") == 0) {
		qp_state st;
		qp_stream_init(&st);
		buf_reserve(&b, len);
		qp_stream_decode(&st, body, len, &b);
		qp_stream_finish(&st, &b);
	} else {
		buf_append(&b, body, len);
	}
	buf_append(&b, "", 0); /* a NUL even when nothing was decoded */
	if (to_utf8 && part->type.type != NULL && strcmp(part->type.type, "text") == 0) {
		const char *charset = content_type_param(&part->type, "charset");
		size_t n;
		char *text = charset_to_utf8(charset != NULL ? charset : "us-ascii", buf_cstr(&b),
					     b.len, &n);
		if (text != NULL) {
			buf_free(&b);
			*out_r = text;
			*len_r = n;
			return 0;
		}
	}
	*len_r = b.len;
	*out_r = buf_steal(&b);
	return 0;
}
