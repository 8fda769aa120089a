/* header.h: RFC 5322 header sections and RFC 2047 encoded words.
 *
 * A header section is split into fields; folded lines are unfolded; names are
 * compared case-insensitively. The parser is lenient: a line without a colon
 * ends the header (as most readers do) unless it is a continuation. */
#ifndef MAILSTACK_HEADER_H
#define MAILSTACK_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct header_field {
	char *name;        /* as written */
	char *value;       /* unfolded (CRLF WSP -> WSP), leading whitespace removed */
	size_t raw_offset; /* where the field starts in the input */
	size_t raw_len;    /* its length including the line end */
};

struct header {
	struct header_field *fields;
	size_t count;
	size_t header_len; /* bytes up to and including the empty line (or all input) */
	bool has_body_separator;
};

/* Parses the header section at the start of msg. */
int header_parse(const char *msg, size_t len, struct header *h_r);
void header_free(struct header *h);
/* The first field's value named name, or NULL. */
const char *header_get(const struct header *h, const char *name);
/* Where the header section ends (offset of the body), scanning at most len bytes. */
size_t header_section_length(const char *msg, size_t len);

/* Resumable header-section scanner for bytes as they arrive (the same rules as
 * header_parse): the header ends after an empty line, or before a line that is
 * neither a field ("name:" with optional blanks before the colon) nor a
 * continuation of one. It keeps no input, only a state and an offset. */
#define HEADER_MAX_FIELDS 10000
struct header_scanner {
	int state;          /* private: where in a line the scanner is */
	bool seen_field;    /* a field has started (continuations are allowed) */
	size_t offset;      /* bytes consumed so far */
	size_t line_start;  /* offset where the current line began */
	size_t end;         /* the header length, once found */
	bool has_separator; /* it ended with an empty line */
};
void header_scanner_init(struct header_scanner *sc);
/* Consumes up to len bytes. Returns 1 when the header has ended (*end_r = its
 * length counted from the first byte ever fed), 0 when it needs more input.
 * After an empty line it stops right behind the LF; a line that is not a field
 * is recognised only after reading into it, so then *end_r lies before bytes
 * already fed. At the end of the input the header is everything fed. */
int header_scanner_feed(struct header_scanner *sc, const char *data, size_t len, size_t *end_r);

/* Decodes RFC 2047 encoded words in an unstructured value into UTF-8 (caller
 * frees); charsets other than UTF-8/US-ASCII/ISO-8859-1 go through iconv;
 * undecodable words are kept as written. */
char *header_decode_words(const char *value);
/* Encodes a UTF-8 value as RFC 2047 words ("=?UTF-8?Q?...?=") when it has
 * non-ASCII, folding so no line passes 76 characters; ASCII is returned as is. */
char *header_encode_words(const char *value, size_t name_len);
/* Converts text from charset to UTF-8 with iconv (caller frees); NULL if unknown. */
char *charset_to_utf8(const char *charset, const char *text, size_t len, size_t *out_len_r);

/* Parses an RFC 5322 date-time ("Tue, 1 Jul 2003 10:52:37 +0200"), lenient
 * about obsolete forms; 0 and *time_r (UTC seconds), *tz_minutes_r, or -1. */
int header_parse_date(const char *value, int64_t *time_r, int *tz_minutes_r);
/* Formats a date-time for a Date field into out (at least 40 bytes). */
void header_format_date(int64_t t, int tz_minutes, char *out, size_t cap);

/* Structured parameters (Content-Type, Content-Disposition) with RFC 2231
 * continuations and charsets decoded. */
struct header_param {
	char *name;  /* lower-cased */
	char *value; /* decoded to UTF-8 */
};
struct content_type {
	char *type;     /* lower-cased, e.g. "text" (default "text") */
	char *subtype;  /* lower-cased, e.g. "plain" (default "plain") */
	struct header_param *params;
	size_t param_count;
};
/* Parses "type/subtype; a=b; ..." (also a disposition: type = "attachment", subtype NULL). */
int content_type_parse(const char *value, bool is_disposition, struct content_type *ct_r);
const char *content_type_param(const struct content_type *ct, const char *name);
void content_type_free(struct content_type *ct);

#endif
