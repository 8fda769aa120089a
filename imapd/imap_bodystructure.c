/* imap_bodystructure.c: the ENVELOPE, BODY and BODYSTRUCTURE of a message
 * (RFC 3501 7.4.2), built from common/mime.h's part tree and common/header.h.
 *
 * ENVELOPE comes from the header fields the store parsed at delivery.
 * BODY and BODYSTRUCTURE are computed once per message and kept with
 * store_cache_put, so a client that asks again (or another client) costs one
 * cache read, not a parse. The same parse leaves the message's part map in the cache: for
 * every section number, where the part's MIME header and body lie (and, for
 * message/rfc822, the length of the encapsulated header), so BODY[1.2]
 * reads only those bytes (imap_part_find). Strings are IMAP quoted strings or literals as imap_append_string
 * chooses; absent values are NIL. Types and parameter names are given as
 * mime.c lower-cases them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "imapd.h"

/* Appends an nstring from a possibly-NULL C string. */
static void bs_nstring(buf_t *out, const char *s)
{
	imap_append_string(out, s, s != NULL ? strlen(s) : 0);
}

/* Appends an address list as ((name adl mailbox host) ...) or NIL. */
static void bs_address_list(buf_t *out, const char *value)
{
	struct address_list list = {0};
	if (value == NULL || address_list_parse(value, strlen(value), &list) < 0 ||
	    list.count == 0) {
		address_list_free(&list);
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_char(out, '(');
	for (size_t i = 0; i < list.count; i++) {
		const struct mail_address *a = &list.items[i];
		if (a->group_start) {
			/* RFC 3501: a group starts with (NIL NIL "group" NIL). */
			buf_append_str(out, "(NIL NIL ");
			bs_nstring(out, a->group);
			buf_append_str(out, " NIL)");
		}
		if (a->local != NULL || a->domain != NULL) {
			buf_append_char(out, '(');
			bs_nstring(out, a->name_raw != NULL ? a->name_raw : a->name);
			buf_append_str(out, " NIL ");
			bs_nstring(out, a->local);
			buf_append_char(out, ' ');
			bs_nstring(out, a->domain);
			buf_append_char(out, ')');
		}
		if (a->group_end)
			buf_append_str(out, "(NIL NIL NIL NIL)");
	}
	buf_append_char(out, ')');
	address_list_free(&list);
}

/* The ENVELOPE of RFC 3501 7.4.2 from the raw (unfolded) field values. */
static void bs_envelope_values(buf_t *out, const char *date, const char *subject,
			       const char *from, const char *sender, const char *reply_to,
			       const char *to, const char *cc, const char *bcc,
			       const char *in_reply_to, const char *message_id)
{
	buf_append_char(out, '(');
	bs_nstring(out, date);
	buf_append_char(out, ' ');
	bs_nstring(out, subject);
	buf_append_char(out, ' ');
	bs_address_list(out, from);
	buf_append_char(out, ' ');
	/* Sender and Reply-To default to From (RFC 3501 7.4.2). */
	bs_address_list(out, sender != NULL ? sender : from);
	buf_append_char(out, ' ');
	bs_address_list(out, reply_to != NULL ? reply_to : from);
	buf_append_char(out, ' ');
	bs_address_list(out, to);
	buf_append_char(out, ' ');
	bs_address_list(out, cc);
	buf_append_char(out, ' ');
	bs_address_list(out, bcc);
	buf_append_char(out, ' ');
	bs_nstring(out, in_reply_to);
	buf_append_char(out, ' ');
	bs_nstring(out, message_id);
	buf_append_char(out, ')');
}

void imap_envelope_format(buf_t *out, const struct header *h)
{
	bs_envelope_values(out, header_get(h, "Date"), header_get(h, "Subject"),
			   header_get(h, "From"), header_get(h, "Sender"), header_get(h, "Reply-To"),
			   header_get(h, "To"), header_get(h, "Cc"), header_get(h, "Bcc"),
			   header_get(h, "In-Reply-To"), header_get(h, "Message-ID"));
}

/* Whether a parameter value can go on the wire as it is: printable ASCII. */
static bool bs_value_is_ascii(const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p < 0x20 || *p > 0x7e)
			return false;
	}
	return true;
}

/* Appends one "name" "value" pair. Values arrive decoded (RFC 2231
 * continuations joined, charsets converted to UTF-8); a value that is not
 * printable ASCII goes out in RFC 2231 extended form, "name*" "utf-8''%E2%82%AC",
 * so the response stays 7-bit and clients decode it as they would the header. */
static void bs_param(buf_t *out, const char *name, const char *value)
{
	if (value == NULL || bs_value_is_ascii(value)) {
		bs_nstring(out, name);
		buf_append_char(out, ' ');
		bs_nstring(out, value != NULL ? value : "");
		return;
	}
	buf_t n = BUF_INIT, v = BUF_INIT;
	buf_printf(&n, "%s*", name);
	buf_append_str(&v, "utf-8''");
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		/* RFC 2231 7: attribute-char is a token character other than * ' %. */
		if (*p > 0x20 && *p < 0x7f && strchr("*'%()<>@,;:\\\"/[]?=", *p) == NULL)
			buf_append_char(&v, (char)*p);
		else
			buf_printf(&v, "%%%02X", *p);
	}
	bs_nstring(out, buf_cstr(&n));
	buf_append_char(out, ' ');
	bs_nstring(out, buf_cstr(&v));
	buf_free(&n);
	buf_free(&v);
}

/* Appends a parameter list ("name" "value" ...) or NIL. A text part without a
 * charset parameter gets "charset" "us-ascii" first, its default (RFC 2045
 * 5.2, RFC 2046 4.1.2), as RFC 3501's own examples show it. */
static void bs_params(buf_t *out, const struct content_type *ct, bool text)
{
	bool add_charset = text && content_type_param(ct, "charset") == NULL;
	if (ct->param_count == 0 && !add_charset) {
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_char(out, '(');
	if (add_charset)
		buf_append_str(out, ct->param_count > 0 ? "\"charset\" \"us-ascii\" "
							  : "\"charset\" \"us-ascii\"");
	for (size_t i = 0; i < ct->param_count; i++) {
		if (i > 0)
			buf_append_char(out, ' ');
		bs_param(out, ct->params[i].name, ct->params[i].value);
	}
	buf_append_char(out, ')');
}

/* Appends the disposition ("type" (params)) or NIL. */
static void bs_disposition(buf_t *out, const struct mime_part *part)
{
	if (part->disposition.type == NULL) {
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_char(out, '(');
	bs_nstring(out, part->disposition.type);
	buf_append_char(out, ' ');
	bs_params(out, &part->disposition, false);
	buf_append_char(out, ')');
}

/* Appends Content-Language: NIL, "en", or ("en" "de"). */
static void bs_language(buf_t *out, const char *language)
{
	if (language == NULL) {
		buf_append_str(out, "NIL");
		return;
	}
	char *copy = xstrdup(language);
	char *items[64];
	size_t n = 0;
	for (char *tok = strtok(copy, ", \t"); tok != NULL && n < 64; tok = strtok(NULL, ", \t"))
		items[n++] = tok;
	if (n == 0) {
		buf_append_str(out, "NIL");
	} else if (n == 1) {
		bs_nstring(out, items[0]);
	} else {
		buf_append_char(out, '(');
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				buf_append_char(out, ' ');
			bs_nstring(out, items[i]);
		}
		buf_append_char(out, ')');
	}
	free(copy);
}

/* The extension data shared by every part: disposition, language, location. */
static void bs_extension_tail(buf_t *out, const struct mime_part *part)
{
	buf_append_char(out, ' ');
	bs_disposition(out, part);
	buf_append_char(out, ' ');
	bs_language(out, part->language);
	buf_append_char(out, ' ');
	bs_nstring(out, part->location);
}

void imap_bodystructure_format(buf_t *out, const char *msg, const struct mime_part *part,
			       bool extended)
{
	const char *type = part->type.type != NULL ? part->type.type : "text";
	const char *subtype = part->type.subtype != NULL ? part->type.subtype : "plain";
	buf_append_char(out, '(');
	if (strcmp(type, "multipart") == 0 && part->child_count > 0) {
		for (size_t i = 0; i < part->child_count; i++)
			imap_bodystructure_format(out, msg, &part->children[i], extended);
		buf_append_char(out, ' ');
		bs_nstring(out, subtype);
		if (extended) {
			buf_append_char(out, ' ');
			bs_params(out, &part->type, false);
			bs_extension_tail(out, part);
		}
		buf_append_char(out, ')');
		return;
	}
	bs_nstring(out, type);
	buf_append_char(out, ' ');
	bs_nstring(out, subtype);
	buf_append_char(out, ' ');
	bs_params(out, &part->type, strcmp(type, "text") == 0);
	buf_append_char(out, ' ');
	bs_nstring(out, part->id);
	buf_append_char(out, ' ');
	bs_nstring(out, part->description);
	buf_append_char(out, ' ');
	bs_nstring(out, part->encoding != NULL ? part->encoding : "7bit");
	buf_printf(out, " %zu", part->body_len);
	if (strcmp(type, "message") == 0 && strcmp(subtype, "rfc822") == 0 &&
	    part->child_count == 1 && part->message_header != NULL) {
		buf_append_char(out, ' ');
		imap_envelope_format(out, part->message_header);
		buf_append_char(out, ' ');
		imap_bodystructure_format(out, msg, &part->children[0], extended);
		buf_printf(out, " %zu", part->body_lines);
	} else if (strcmp(type, "text") == 0) {
		buf_printf(out, " %zu", part->body_lines);
	}
	if (extended) {
		buf_append_char(out, ' ');
		bs_nstring(out, part->md5);
		bs_extension_tail(out, part);
	}
	buf_append_char(out, ')');
}

/* A message with more parts than this keeps no part map (it is parsed per fetch). */
#define IMAP_PART_MAP_MAX 1000
#define IMAP_PART_MAP_KEY "parts.1"

/* True for a part split into children by boundaries. */
static bool bs_is_multipart(const struct mime_part *p)
{
	return p->type.type != NULL && strcmp(p->type.type, "multipart") == 0 && p->child_count > 0;
}

/* Appends one line of the part map: "section hoff hlen boff blen msg ihlen". */
static void part_map_line(buf_t *out, const char *section, const struct mime_part *p)
{
	bool msg = p->message_header != NULL && p->child_count == 1;
	buf_printf(out, "%s %zu %zu %zu %zu %d %zu\n", section, p->header_offset, p->header_len,
		   p->body_offset, p->body_len, msg ? 1 : 0, msg ? p->children[0].header_len : 0);
}

static size_t part_map_body(buf_t *out, const struct mime_part *body, const char *prefix,
			    size_t budget);

/* Descends into a part: a multipart's children, or an encapsulated message. */
static size_t part_map_descend(buf_t *out, const struct mime_part *p, const char *section,
			       size_t budget)
{
	char *prefix = xasprintf("%s.", section);
	size_t used = 0;
	if (bs_is_multipart(p))
		used = part_map_body(out, p, prefix, budget);
	else if (p->message_header != NULL && p->child_count == 1)
		used = part_map_body(out, &p->children[0], prefix, budget);
	free(prefix);
	return used;
}

/* Lists the parts that section numbers "prefix N" name inside body, as
 * mime_find_part numbers them (RFC 3501 6.4.5): a multipart's children, or
 * a single part as its own part 1. Returns the lines written (at most budget;
 * more means the map is incomplete). */
static size_t part_map_body(buf_t *out, const struct mime_part *body, const char *prefix,
			    size_t budget)
{
	size_t used = 0;
	size_t n = bs_is_multipart(body) ? body->child_count : 1;
	for (size_t i = 0; i < n && used <= budget; i++) {
		const struct mime_part *p = bs_is_multipart(body) ? &body->children[i] : body;
		char *section = xasprintf("%s%zu", prefix, i + 1);
		part_map_line(out, section, p);
		used++;
		used += part_map_descend(out, p, section, budget - used + 1);
		free(section);
	}
	return used;
}

/* Makes the part map of a parsed message; NULL when it has too many parts. */
static char *part_map_make(const struct mime_part *root)
{
	buf_t out = BUF_INIT;
	if (part_map_body(&out, root, "", IMAP_PART_MAP_MAX) > IMAP_PART_MAP_MAX) {
		buf_free(&out);
		return NULL;
	}
	return buf_steal(&out);
}

/* Finds a section in a part map. */
static int part_map_lookup(const char *map, const char *section, struct imap_part_range *r)
{
	size_t len = strlen(section);
	for (const char *line = map; line != NULL && *line != '\0';) {
		const char *next = strchr(line, '\n');
		if (strncmp(line, section, len) == 0 && line[len] == ' ') {
			int msg = 0;
			if (sscanf(line + len, " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %d %" SCNu64,
				   &r->header_offset, &r->header_len, &r->body_offset, &r->body_len, &msg,
				   &r->inner_header_len) != 6)
				return -1;
			r->is_message = msg != 0;
			if (r->inner_header_len > r->body_len)
				r->inner_header_len = r->body_len;
			return 0;
		}
		line = next != NULL ? next + 1 : NULL;
	}
	return -1;
}

/* Fills a range from a parsed part (messages too big for a map). */
static void part_range_from(const struct mime_part *p, struct imap_part_range *r)
{
	r->header_offset = p->header_offset;
	r->header_len = p->header_len;
	r->body_offset = p->body_offset;
	r->body_len = p->body_len;
	r->is_message = p->message_header != NULL && p->child_count == 1;
	r->inner_header_len = r->is_message ? p->children[0].header_len : 0;
	if (r->inner_header_len > r->body_len)
		r->inner_header_len = r->body_len;
}

int imap_part_find(store *st, const char *folder, uint32_t uid, const char *section,
		   struct imap_part_range *r)
{
	memset(r, 0, sizeof(*r));
	char *map = NULL;
	if (store_cache_get(st, folder, uid, IMAP_PART_MAP_KEY, &map) == 0 && map != NULL) {
		int ret = part_map_lookup(map, section, r);
		free(map);
		return ret;
	}
	char *data = NULL;
	size_t len = 0;
	if (store_msg_load(st, folder, uid, &data, &len) < 0)
		return -1;
	struct mime_part root;
	mime_parse(data, len, &root);
	int ret = -1;
	map = part_map_make(&root);
	if (map != NULL) {
		(void)store_cache_put(st, folder, uid, IMAP_PART_MAP_KEY, map);
		ret = part_map_lookup(map, section, r);
		free(map);
	} else {
		const struct mime_part *p = mime_find_part(&root, section);
		if (p != NULL) {
			part_range_from(p, r);
			ret = 0;
		}
	}
	mime_part_free(&root);
	free(data);
	return ret;
}

char *imap_envelope(store *st, const char *folder, uint32_t uid)
{
	/* From the fields parsed at delivery: no message read, nothing to cache. */
	struct store_msg_headers h;
	buf_t out = BUF_INIT;
	if (store_msg_headers_get(st, folder, uid, &h) == 0) {
		bs_envelope_values(&out, h.date, h.subject, h.from, h.sender, h.reply_to, h.to, h.cc,
				   h.bcc, h.in_reply_to, h.message_id);
		store_msg_headers_free(&h);
		return buf_steal(&out);
	}
	char *data = NULL;
	size_t len = 0;
	if (store_msg_load_header(st, folder, uid, &data, &len) < 0)
		return NULL;
	struct header hdr;
	if (header_parse(data, len, &hdr) == 0) {
		imap_envelope_format(&out, &hdr);
		header_free(&hdr);
	} else {
		buf_append_str(&out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	}
	free(data);
	return buf_steal(&out);
}

char *imap_bodystructure(store *st, const char *folder, uint32_t uid, bool extended)
{
	/* The keys name the format's version: a change of format recomputes. */
	const char *key = extended ? "bodystructure.2" : "body.2";
	char *cached = NULL;
	if (store_cache_get(st, folder, uid, key, &cached) == 0 && cached != NULL)
		return cached;
	char *data = NULL;
	size_t len = 0;
	if (store_msg_load(st, folder, uid, &data, &len) < 0)
		return NULL;
	struct mime_part root;
	buf_t out = BUF_INIT;
	if (mime_parse(data, len, &root) == 0) {
		imap_bodystructure_format(&out, data, &root, extended);
		/* The part map comes with the same parse, for the BODY[n] fetches
		 * that usually follow a BODYSTRUCTURE. */
		char *map = part_map_make(&root);
		if (map != NULL)
			(void)store_cache_put(st, folder, uid, IMAP_PART_MAP_KEY, map);
		free(map);
		mime_part_free(&root);
	}
	free(data);
	(void)store_cache_put(st, folder, uid, key, buf_cstr(&out));
	return buf_steal(&out);
}
