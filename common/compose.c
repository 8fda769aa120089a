/* compose.c: writing RFC 5322/MIME messages, replies and forwards (see compose.h).
 *
 * The builder works in one pass into a buf_t: header fields in a fixed order
 * (Date, From, To, Cc, Subject, Message-ID, In-Reply-To, References,
 * MIME-Version), then either one text part or multipart/mixed with the text
 * first and each attachment after it. Invariant: every value that came from a
 * user went through compose_header_clean, and every line written ends in CRLF
 * and is at most COMPOSE_MAX_LINE octets (headers are folded by
 * header_encode_words, bodies are 7bit only when their lines are short). */
#include "compose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "address.h"
#include "buffer.h"
#include "codec.h"
#include "header.h"

#define COMPOSE_BOUNDARY_TRIES 8

/* Turns control bytes into spaces and trims blanks (no CR/LF can survive). */
char *compose_header_clean(const char *s)
{
	if (s == NULL)
		return xstrdup("");
	size_t len = strlen(s);
	char *out = xmalloc(len + 1);
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		out[n++] = ((c < 0x20 && c != '\t') || c == 0x7f) ? ' ' : (char)c;
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
	size_t start = 0;
	while (out[start] == ' ')
		start++;
	memmove(out, out + start, n - start + 1);
	return out;
}

/* Frees a list of strings and sets it NULL. */
void compose_free_list(char ***list, size_t count)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		free((*list)[i]);
	free(*list);
	*list = NULL;
}

/* Adds spec to a list unless it is there already (case-insensitive). */
static void list_add_unique(char ***list, size_t *count, const char *spec)
{
	for (size_t i = 0; i < *count; i++)
		if (strcasecmp((*list)[i], spec) == 0)
			return;
	*list = xrealloc(*list, (*count + 1) * sizeof(**list));
	(*list)[(*count)++] = xstrdup(spec);
}

/* Parses a typed list into addr-specs and a header value. */
int compose_parse_recipients(const char *text, char ***addrs_r, size_t *count_r,
			     char **header_r, char **err_r)
{
	char *clean = compose_header_clean(text);
	buf_t header = BUF_INIT;
	char **addrs = NULL;
	size_t count = 0;
	*addrs_r = NULL;
	*count_r = 0;
	if (header_r != NULL)
		*header_r = NULL;
	if (clean[0] == '\0') {
		free(clean);
		if (header_r != NULL)
			*header_r = xstrdup("");
		return 0;
	}
	struct address_list list;
	if (address_list_parse(clean, strlen(clean), &list) < 0 || list.count == 0) {
		*err_r = xasprintf("not an address: %s", clean);
		address_list_free(&list);
		free(clean);
		return -1;
	}
	for (size_t i = 0; i < list.count; i++) {
		const struct mail_address *a = &list.items[i];
		if (a->local == NULL && (a->group_start || a->group_end) && a->name == NULL)
			continue;
		char *spec = a->local != NULL && a->local[0] != '\0' && a->domain != NULL ?
			     mail_address_spec(a) : NULL;
		/* The parser is lenient ("a b@c" reads as "ab@c"); what a user
		 * typed must contain the address as it will be used. */
		if (spec == NULL || !address_spec_valid(spec) || strcasestr(clean, spec) == NULL) {
			*err_r = xasprintf("not an address: %s", spec != NULL ? spec :
					   a->name != NULL ? a->name : a->local != NULL ? a->local :
					   clean);
			free(spec);
			address_list_free(&list);
			compose_free_list(&addrs, count);
			buf_free(&header);
			free(clean);
			return -1;
		}
		if (count >= COMPOSE_MAX_RECIPIENTS) {
			*err_r = xasprintf("more than %d recipients", COMPOSE_MAX_RECIPIENTS);
			free(spec);
			address_list_free(&list);
			compose_free_list(&addrs, count);
			buf_free(&header);
			free(clean);
			return -1;
		}
		char *formatted = mail_address_format(a->name, spec);
		if (header.len > 0)
			buf_append_str(&header, ",\r\n ");
		buf_append_str(&header, formatted);
		free(formatted);
		list_add_unique(&addrs, &count, spec);
		free(spec);
	}
	address_list_free(&list);
	free(clean);
	*addrs_r = addrs;
	*count_r = count;
	if (header_r != NULL)
		*header_r = buf_steal(&header);
	else
		buf_free(&header);
	return 0;
}

static const struct {
	const char *ext;
	const char *type;
} compose_types[] = {
	{"txt", "text/plain"},        {"text", "text/plain"},     {"md", "text/markdown"},
	{"csv", "text/csv"},          {"html", "text/html"},      {"htm", "text/html"},
	{"css", "text/css"},          {"ics", "text/calendar"},   {"vcf", "text/vcard"},
	{"xml", "application/xml"},   {"json", "application/json"},
	{"pdf", "application/pdf"},   {"zip", "application/zip"}, {"gz", "application/gzip"},
	{"tar", "application/x-tar"}, {"doc", "application/msword"},
	{"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
	{"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
	{"odt", "application/vnd.oasis.opendocument.text"},
	{"png", "image/png"},         {"jpg", "image/jpeg"},      {"jpeg", "image/jpeg"},
	{"gif", "image/gif"},         {"svg", "image/svg+xml"},   {"webp", "image/webp"},
	{"mp3", "audio/mpeg"},        {"ogg", "audio/ogg"},       {"wav", "audio/wav"},
	{"mp4", "video/mp4"},         {"webm", "video/webm"},     {"eml", "message/rfc822"},
	{"c", "text/x-c"},            {"h", "text/x-c"},          {"py", "text/x-python"},
	{"sh", "application/x-sh"},
};

/* Guesses a MIME type from the file name's extension. */
const char *compose_guess_type(const char *filename)
{
	const char *dot = filename != NULL ? strrchr(filename, '.') : NULL;
	if (dot == NULL || strchr(dot, '/') != NULL)
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof(compose_types) / sizeof(compose_types[0]); i++)
		if (strcasecmp(dot + 1, compose_types[i].ext) == 0)
			return compose_types[i].type;
	return "application/octet-stream";
}

/* Random bytes for ids and boundaries (falls back to time when getrandom fails). */
static uint64_t compose_random64(void)
{
	uint64_t r;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)clock();
	return r;
}

/* Makes a Message-ID for domain. */
char *compose_message_id(const char *domain)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char *clean = compose_header_clean(domain != NULL && domain[0] != '\0' ? domain :
					   "localhost");
	for (char *p = clean; *p != '\0'; p++)
		if (*p == ' ' || *p == '<' || *p == '>' || *p == '@')
			*p = '-';
	char *id = xasprintf("<%llx.%llx.%016llx@%s>", (unsigned long long)ts.tv_sec,
			     (unsigned long long)ts.tv_nsec, (unsigned long long)compose_random64(),
			     clean);
	free(clean);
	return id;
}

/* True when the text can go unencoded (RFC 2045 2.7, 2.8): no NUL, no bare
 * CR, no line over COMPOSE_MAX_LINE, and, unless eight_bit, ASCII only. */
static bool text_fits(const char *s, size_t len, bool eight_bit)
{
	size_t column = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n') {
			column = 0;
			continue;
		}
		if (c == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue;
		if (c == 0 || c == '\r' || (c >= 0x80 && !eight_bit))
			return false;
		if (++column > COMPOSE_MAX_LINE)
			return false;
	}
	return true;
}

/* True when the text can go as 7bit. */
static bool text_is_7bit(const char *s, size_t len)
{
	return text_fits(s, len, false);
}

/* True when the text is 8bit-safe. */
static bool text_is_8bit(const char *s, size_t len)
{
	return text_fits(s, len, true);
}

/* Appends text with every line end turned into CRLF; ends with CRLF. */
static void append_crlf_text(buf_t *b, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n') {
			buf_append(b, "\r\n", 2);
		} else if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
			continue;
		} else {
			buf_append_char(b, s[i]);
		}
	}
	if (b->len < 2 || b->data[b->len - 1] != '\n')
		buf_append(b, "\r\n", 2);
}

/* Appends the text part's headers and body (7bit when possible, else QP). */
static void append_text_part(buf_t *b, const char *body)
{
	size_t len = body != NULL ? strlen(body) : 0;
	if (body == NULL)
		body = "";
	bool seven = text_is_7bit(body, len);
	buf_printf(b, "Content-Type: text/plain; charset=%s\r\n"
		   "Content-Transfer-Encoding: %s\r\n\r\n",
		   utf8_valid(body, len) ? "utf-8" : "unknown-8bit",
		   seven ? "7bit" : "quoted-printable");
	if (seven) {
		append_crlf_text(b, body, len);
	} else {
		char *qp = qp_encode(body, len);
		buf_append_str(b, qp);
		if (b->len < 2 || b->data[b->len - 1] != '\n')
			buf_append(b, "\r\n", 2);
		free(qp);
	}
}

/* Appends a parameter (name="value", or RFC 2231 name*=utf-8''... when not ASCII). */
static void append_param(buf_t *b, const char *name, const char *value)
{
	bool ascii = true;
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++)
		if (*p >= 0x80)
			ascii = false;
	if (ascii && strlen(value) < 60) {
		buf_printf(b, ";\r\n\t%s=\"", name);
		for (const char *p = value; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				buf_append_char(b, '\\');
			buf_append_char(b, *p);
		}
		buf_append_char(b, '"');
		return;
	}
	/* RFC 2231 3 and 4: split into numbered sections so no line is long. */
	static const char hex[] = "0123456789ABCDEF";
	size_t section = 0, column = 0;
	buf_printf(b, ";\r\n\t%s*0*=utf-8''", name);
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		if (column >= 60) {
			buf_printf(b, ";\r\n\t%s*%zu*=", name, ++section);
			column = 0;
		}
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p) != NULL) {
			buf_append_char(b, (char)*p);
			column++;
		} else {
			char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			buf_append(b, enc, 3);
			column += 3;
		}
	}
}

/* Appends one attachment part (base64, or 7bit/8bit for message/rfc822). */
static void append_attachment(buf_t *b, const struct compose_attachment *a)
{
	char *name = compose_header_clean(a->filename != NULL ? a->filename : "attachment");
	const char *slash = strrchr(name, '/');
	const char *base = slash != NULL ? slash + 1 : name;
	char *type = compose_header_clean(a->content_type != NULL ? a->content_type :
					  compose_guess_type(base));
	if (strchr(type, '/') == NULL || strpbrk(type, " ;\"") != NULL) {
		free(type);
		type = xstrdup("application/octet-stream");
	}
	bool message = strcasecmp(type, "message/rfc822") == 0;
	if (message && !text_is_8bit(a->data, a->len)) {
		free(type);
		type = xstrdup("application/octet-stream");
		message = false;
	}
	buf_printf(b, "Content-Type: %s", type);
	if (!message)
		append_param(b, "name", base);
	buf_append_str(b, "\r\nContent-Disposition: ");
	buf_append_str(b, message ? "inline" : "attachment");
	append_param(b, "filename", base);
	if (message) {
		buf_printf(b, "\r\nContent-Transfer-Encoding: %s\r\n\r\n",
			   text_is_7bit(a->data, a->len) ? "7bit" : "8bit");
		append_crlf_text(b, a->data, a->len);
	} else {
		buf_append_str(b, "\r\nContent-Transfer-Encoding: base64\r\n\r\n");
		char *enc = base64_encode_lines(a->data, a->len);
		buf_append_str(b, enc);
		if (b->len < 2 || b->data[b->len - 1] != '\n')
			buf_append(b, "\r\n", 2);
		free(enc);
	}
	free(type);
	free(name);
}

/* Appends "Name: value" with the value cleaned and folded as encoded words. */
static void append_unstructured(buf_t *b, const char *name, const char *value)
{
	char *clean = compose_header_clean(value);
	char *enc = header_encode_words(clean, strlen(name) + 2);
	buf_printf(b, "%s: %s\r\n", name, enc);
	free(enc);
	free(clean);
}

/* Appends a header of message ids ("<a> <b>"), folded one id per line. */
static void append_ids(buf_t *b, const char *name, const char *ids)
{
	char *clean = compose_header_clean(ids);
	if (clean[0] == '\0') {
		free(clean);
		return;
	}
	buf_printf(b, "%s:", name);
	char *save = NULL;
	bool first = true;
	for (char *tok = strtok_r(clean, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		buf_printf(b, "%s%s", first ? " " : "\r\n ", tok);
		first = false;
	}
	buf_append_str(b, "\r\n");
	free(clean);
}

/* Parses one address field into the header: 0, or -1 with *err_r. */
static int append_address_field(buf_t *b, const char *name, const char *text, bool required,
				char **err_r)
{
	char **addrs;
	size_t count;
	char *header;
	if (compose_parse_recipients(text, &addrs, &count, &header, err_r) < 0) {
		char *inner = *err_r;
		*err_r = xasprintf("%s: %s", name, inner);
		free(inner);
		return -1;
	}
	if (count == 0 && required) {
		*err_r = xasprintf("%s: no address", name);
		free(header);
		return -1;
	}
	if (count > 0)
		buf_printf(b, "%s: %s\r\n", name, header);
	free(header);
	compose_free_list(&addrs, count);
	return 0;
}

/* The local time zone's offset at t, in minutes east of UTC. */
static int local_tz_minutes(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (localtime_r(&tt, &tm) == NULL)
		return 0;
	return (int)(tm.tm_gmtoff / 60);
}

/* Builds the whole message (see compose.h). */
int compose_build(const struct compose_message *m, char **out_r, size_t *len_r, char **err_r)
{
	buf_t b = BUF_INIT;
	if (m->attachment_count > COMPOSE_MAX_ATTACHMENTS) {
		*err_r = xasprintf("more than %d attachments", COMPOSE_MAX_ATTACHMENTS);
		return -1;
	}
	for (size_t i = 0; i < m->attachment_count; i++)
		if (m->attachments[i].len > COMPOSE_MAX_ATTACHMENT_SIZE) {
			*err_r = xasprintf("attachment %s is larger than %d bytes",
					   m->attachments[i].filename, COMPOSE_MAX_ATTACHMENT_SIZE);
			return -1;
		}
	int64_t now = m->date != 0 ? m->date : (int64_t)time(NULL);
	char date[64];
	header_format_date(now, m->date != 0 ? m->tz_minutes : local_tz_minutes(now), date,
			   sizeof(date));
	buf_printf(&b, "Date: %s\r\n", date);
	if (append_address_field(&b, "From", m->from, true, err_r) < 0 ||
	    append_address_field(&b, "To", m->to, false, err_r) < 0 ||
	    append_address_field(&b, "Cc", m->cc, false, err_r) < 0) {
		buf_free(&b);
		return -1;
	}
	/* Bcc is checked here but never written (RFC 5322 3.6.3, first method). */
	char **bcc;
	size_t bcc_count;
	if (compose_parse_recipients(m->bcc, &bcc, &bcc_count, NULL, err_r) < 0) {
		char *inner = *err_r;
		*err_r = xasprintf("Bcc: %s", inner);
		free(inner);
		buf_free(&b);
		return -1;
	}
	compose_free_list(&bcc, bcc_count);
	append_unstructured(&b, "Subject", m->subject != NULL ? m->subject : "");
	if (m->message_id != NULL) {
		append_ids(&b, "Message-ID", m->message_id);
	} else {
		char **from;
		size_t from_count;
		compose_parse_recipients(m->from, &from, &from_count, NULL, err_r);
		const char *at = from_count > 0 ? strrchr(from[0], '@') : NULL;
		char *id = compose_message_id(at != NULL ? at + 1 : "localhost");
		buf_printf(&b, "Message-ID: %s\r\n", id);
		free(id);
		compose_free_list(&from, from_count);
	}
	if (m->in_reply_to != NULL)
		append_ids(&b, "In-Reply-To", m->in_reply_to);
	if (m->references != NULL)
		append_ids(&b, "References", m->references);
	if (m->extra_headers != NULL)
		buf_append_str(&b, m->extra_headers);
	buf_append_str(&b, "MIME-Version: 1.0\r\n");
	if (m->attachment_count == 0) {
		append_text_part(&b, m->body);
	} else {
		/* "=_" cannot occur in base64 or quoted-printable text; 7bit text
		 * is checked, and another boundary is drawn when it clashes. */
		char boundary[64];
		for (int tries = 0; tries < COMPOSE_BOUNDARY_TRIES; tries++) {
			snprintf(boundary, sizeof(boundary), "=_mailstack_%016llx",
				 (unsigned long long)compose_random64());
			bool clash = m->body != NULL && strstr(m->body, boundary) != NULL;
			for (size_t i = 0; i < m->attachment_count && !clash; i++)
				clash = memmem(m->attachments[i].data, m->attachments[i].len,
					       boundary, strlen(boundary)) != NULL;
			if (!clash)
				break;
		}
		buf_printf(&b, "Content-Type: multipart/mixed;\r\n\tboundary=\"%s\"\r\n\r\n"
			   "This is a multi-part message in MIME format.\r\n", boundary);
		buf_printf(&b, "\r\n--%s\r\n", boundary);
		append_text_part(&b, m->body);
		for (size_t i = 0; i < m->attachment_count; i++) {
			buf_printf(&b, "\r\n--%s\r\n", boundary);
			append_attachment(&b, &m->attachments[i]);
		}
		buf_printf(&b, "\r\n--%s--\r\n", boundary);
	}
	*len_r = b.len;
	*out_r = buf_steal(&b);
	return 0;
}

/* Collects To, Cc and Bcc addr-specs without duplicates. */
int compose_envelope_recipients(const struct compose_message *m, char ***addrs_r,
				size_t *count_r, char **err_r)
{
	const char *fields[] = {m->to, m->cc, m->bcc};
	const char *names[] = {"To", "Cc", "Bcc"};
	char **all = NULL;
	size_t count = 0;
	for (size_t f = 0; f < 3; f++) {
		char **addrs;
		size_t n;
		if (compose_parse_recipients(fields[f], &addrs, &n, NULL, err_r) < 0) {
			char *inner = *err_r;
			*err_r = xasprintf("%s: %s", names[f], inner);
			free(inner);
			compose_free_list(&all, count);
			return -1;
		}
		for (size_t i = 0; i < n; i++)
			list_add_unique(&all, &count, addrs[i]);
		compose_free_list(&addrs, n);
	}
	if (count == 0) {
		*err_r = xstrdup("no recipients");
		return -1;
	}
	if (count > COMPOSE_MAX_RECIPIENTS) {
		compose_free_list(&all, count);
		*err_r = xasprintf("more than %d recipients", COMPOSE_MAX_RECIPIENTS);
		return -1;
	}
	*addrs_r = all;
	*count_r = count;
	return 0;
}

/* Adds a prefix unless one of the given prefixes is already there. */
static char *subject_prefixed(const char *subject, const char *prefix, const char *const *known,
			      size_t known_count)
{
	char *clean = compose_header_clean(subject);
	for (size_t i = 0; i < known_count; i++)
		if (strncasecmp(clean, known[i], strlen(known[i])) == 0)
			return clean;
	char *out = xasprintf("%s%s", prefix, clean);
	free(clean);
	return out;
}

/* "Re: subject". */
char *compose_reply_subject(const char *subject)
{
	static const char *const known[] = {"Re:"};
	return subject_prefixed(subject, "Re: ", known, 1);
}

/* "Fwd: subject". */
char *compose_forward_subject(const char *subject)
{
	static const char *const known[] = {"Fwd:", "Fw:"};
	return subject_prefixed(subject, "Fwd: ", known, 2);
}

/* Splits a list of message ids "<a> <b>" into an array (only <...> tokens). */
static size_t ids_split(const char *text, char ***ids_r)
{
	char **ids = NULL;
	size_t count = 0;
	const char *p = text != NULL ? text : "";
	while ((p = strchr(p, '<')) != NULL) {
		const char *end = strchr(p, '>');
		if (end == NULL)
			break;
		bool clean = true;
		for (const char *q = p + 1; q < end; q++)
			if (*q == '<' || (unsigned char)*q <= ' ')
				clean = false;
		if (clean && end > p + 1) {
			ids = xrealloc(ids, (count + 1) * sizeof(*ids));
			ids[count++] = xstrndup(p, (size_t)(end - p + 1));
		}
		p = end + 1;
	}
	*ids_r = ids;
	return count;
}

/* References for a reply (RFC 5322 3.6.4). */
char *compose_reply_references(const char *references, const char *in_reply_to,
			       const char *message_id)
{
	char **ids;
	size_t count = ids_split(references, &ids);
	if (count == 0) {
		free(ids);
		count = ids_split(in_reply_to, &ids);
		/* Only a single parent id is meaningful from In-Reply-To. */
		while (count > 1)
			free(ids[--count]);
	}
	char **own;
	size_t own_count = ids_split(message_id, &own);
	if (own_count > 0) {
		ids = xrealloc(ids, (count + 1) * sizeof(*ids));
		ids[count++] = own[0];
		for (size_t i = 1; i < own_count; i++)
			free(own[i]);
	}
	free(own);
	if (count == 0) {
		free(ids);
		return NULL;
	}
	buf_t b = BUF_INIT;
	size_t skip_from = 1, skip_to = 1;
	if (count > COMPOSE_MAX_REFERENCES)
		skip_to = count - (COMPOSE_MAX_REFERENCES - 1);
	for (size_t i = 0; i < count; i++) {
		if (i < skip_from || i >= skip_to) {
			if (b.len > 0)
				buf_append_char(&b, ' ');
			buf_append_str(&b, ids[i]);
		}
		free(ids[i]);
	}
	free(ids);
	return buf_steal(&b);
}

/* Quotes text for a reply. */
char *compose_quote_body(const char *text, const char *date, const char *from_name)
{
	buf_t b = BUF_INIT;
	char *d = compose_header_clean(date);
	char *n = compose_header_clean(from_name);
	if (d[0] != '\0')
		buf_printf(&b, "On %s, %s wrote:\n", d, n[0] != '\0' ? n : "someone");
	else
		buf_printf(&b, "%s wrote:\n", n[0] != '\0' ? n : "Someone");
	free(d);
	free(n);
	const char *p = text != NULL ? text : "";
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		buf_append_str(&b, len > 0 && p[0] == '>' ? ">" : len > 0 ? "> " : ">");
		buf_append(&b, p, len);
		buf_append_char(&b, '\n');
		if (eol == NULL)
			break;
		p = eol + 1;
	}
	return buf_steal(&b);
}

/* The body of an inline forward. */
char *compose_forward_body(const char *from, const char *date, const char *subject,
			   const char *to, const char *text)
{
	buf_t b = BUF_INIT;
	buf_append_str(&b, "\n---------- Forwarded message ----------\n");
	const char *names[] = {"From", "Date", "Subject", "To"};
	const char *values[] = {from, date, subject, to};
	for (size_t i = 0; i < 4; i++) {
		if (values[i] == NULL || values[i][0] == '\0')
			continue;
		char *clean = compose_header_clean(values[i]);
		buf_printf(&b, "%s: %s\n", names[i], clean);
		free(clean);
	}
	buf_append_char(&b, '\n');
	if (text != NULL)
		buf_append_str(&b, text);
	if (b.len > 0 && b.data[b.len - 1] != '\n')
		buf_append_char(&b, '\n');
	return buf_steal(&b);
}

/* Appends the addresses of a header value to a formatted list, skipping
 * `self` and what `seen` holds; records them in `seen`. */
static void reply_collect(buf_t *out, const char *value, const char *self, char ***seen,
			  size_t *seen_count)
{
	if (value == NULL || value[0] == '\0')
		return;
	struct address_list list;
	address_list_parse(value, strlen(value), &list);
	for (size_t i = 0; i < list.count; i++) {
		const struct mail_address *a = &list.items[i];
		if (a->local == NULL || a->domain == NULL)
			continue;
		char *spec = mail_address_spec(a);
		bool skip = self != NULL && strcasecmp(spec, self) == 0;
		for (size_t j = 0; j < *seen_count && !skip; j++)
			if (strcasecmp((*seen)[j], spec) == 0)
				skip = true;
		if (!skip) {
			char *name = a->name != NULL ? compose_header_clean(a->name) : NULL;
			char *formatted = mail_address_format(name, spec);
			if (out->len > 0)
				buf_append_str(out, ", ");
			/* The list is re-parsed when sent, so keep it on one line. */
			for (char *p = formatted; *p != '\0'; p++)
				if (*p != '\r' && *p != '\n')
					buf_append_char(out, *p);
			free(formatted);
			free(name);
			list_add_unique(seen, seen_count, spec);
		}
		free(spec);
	}
	address_list_free(&list);
}

/* Recipients of a reply or reply-all. */
int compose_reply_recipients(const char *from, const char *reply_to, const char *to,
			     const char *cc, const char *self, bool all, char **to_r,
			     char **cc_r)
{
	buf_t to_buf = BUF_INIT, cc_buf = BUF_INIT;
	char **seen = NULL;
	size_t seen_count = 0;
	const char *target = reply_to != NULL && reply_to[0] != '\0' ? reply_to : from;
	/* Replying to one's own message goes back to its recipients. */
	reply_collect(&to_buf, target, NULL, &seen, &seen_count);
	bool own = seen_count == 1 && self != NULL && strcasecmp(seen[0], self) == 0;
	if (own && to != NULL && to[0] != '\0') {
		buf_reset(&to_buf);
		compose_free_list(&seen, seen_count);
		seen_count = 0;
		reply_collect(&to_buf, to, self, &seen, &seen_count);
	}
	if (all) {
		if (!own)
			reply_collect(&cc_buf, to, self, &seen, &seen_count);
		reply_collect(&cc_buf, cc, self, &seen, &seen_count);
	}
	compose_free_list(&seen, seen_count);
	*to_r = buf_steal(&to_buf);
	*cc_r = buf_steal(&cc_buf);
	return 0;
}
