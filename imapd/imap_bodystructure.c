/* imap_bodystructure.c: the ENVELOPE, BODY and BODYSTRUCTURE of a message
 * (RFC 3501 7.4.2), built from common/mime.h's part tree and common/header.h.
 *
 * They are computed once per message and kept with store_cache_put, so a
 * client that asks again (or another client) costs one cache read, not a
 * parse. Strings are IMAP quoted strings or literals as imap_append_string
 * chooses; absent values are NIL. Types and parameter names are given as
 * mime.c lower-cases them. */
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

void imap_envelope_format(buf_t *out, const struct header *h)
{
	const char *from = header_get(h, "From");
	const char *sender = header_get(h, "Sender");
	const char *reply_to = header_get(h, "Reply-To");
	buf_append_char(out, '(');
	bs_nstring(out, header_get(h, "Date"));
	buf_append_char(out, ' ');
	bs_nstring(out, header_get(h, "Subject"));
	buf_append_char(out, ' ');
	bs_address_list(out, from);
	buf_append_char(out, ' ');
	/* Sender and Reply-To default to From (RFC 3501 7.4.2). */
	bs_address_list(out, sender != NULL ? sender : from);
	buf_append_char(out, ' ');
	bs_address_list(out, reply_to != NULL ? reply_to : from);
	buf_append_char(out, ' ');
	bs_address_list(out, header_get(h, "To"));
	buf_append_char(out, ' ');
	bs_address_list(out, header_get(h, "Cc"));
	buf_append_char(out, ' ');
	bs_address_list(out, header_get(h, "Bcc"));
	buf_append_char(out, ' ');
	bs_nstring(out, header_get(h, "In-Reply-To"));
	buf_append_char(out, ' ');
	bs_nstring(out, header_get(h, "Message-ID"));
	buf_append_char(out, ')');
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

char *imap_envelope(store *st, const char *folder, uint32_t uid)
{
	char *cached = NULL;
	if (store_cache_get(st, folder, uid, "envelope", &cached) == 0 && cached != NULL)
		return cached;
	char *data = NULL;
	size_t len = 0;
	if (store_msg_load_header(st, folder, uid, &data, &len) < 0)
		return NULL;
	struct header h;
	buf_t out = BUF_INIT;
	if (header_parse(data, len, &h) == 0) {
		imap_envelope_format(&out, &h);
		header_free(&h);
	} else {
		buf_append_str(&out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	}
	free(data);
	(void)store_cache_put(st, folder, uid, "envelope", buf_cstr(&out));
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
		mime_part_free(&root);
	}
	free(data);
	(void)store_cache_put(st, folder, uid, key, buf_cstr(&out));
	return buf_steal(&out);
}
