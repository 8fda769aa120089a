/* header.c: RFC 5322 header sections, RFC 2047 encoded words, RFC 5322 dates,
 * and MIME parameters with RFC 2231 continuations.
 *
 * The header section is found by a resumable scanner (struct header_scanner)
 * with these states, one per position in a line:
 *
 *   LINE_START --ftext--> NAME --':'--> VALUE --LF--> LINE_START
 *       |  \--WSP (after a field)--> VALUE    \--WSP--> NAME_BLANK --':'--> VALUE
 *       |--CR--> START_CR --LF--> done (empty line, has_separator)
 *       \--LF--> done (empty line)
 *   Anything else at a line start, in NAME or in NAME_BLANK: done, and the
 *   header ends where that line began (a line that is no field ends it).
 *
 * header_parse runs the same scanner over a whole buffer and then splits the
 * section into fields, so the streaming and whole-buffer views always agree.
 * CRLF and bare LF are both line ends everywhere in this file. */
#include "header.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "codec.h"

#define CHARSET_NAME_MAX 64
#define CONTENT_TYPE_MAX_PARAMS 64
#define CONTENT_TYPE_MAX_RAW_PARAMS 256
#define RFC2231_MAX_SECTIONS 100
#define ENCODED_WORD_LINE_MAX 76

enum header_scan_state {
	HS_LINE_START,
	HS_START_CR,
	HS_NAME,
	HS_NAME_BLANK,
	HS_VALUE,
	HS_DONE,
};

/* RFC 5322 ftext: printable ASCII except ':'. */
static bool is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* Resets a scanner to the start of a message. */
void header_scanner_init(struct header_scanner *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->state = HS_LINE_START;
}

/* Ends the scan with the header ending at end. */
static int header_scanner_stop(struct header_scanner *sc, size_t end, bool separator,
			       size_t *end_r)
{
	sc->state = HS_DONE;
	sc->end = end;
	sc->has_separator = separator;
	*end_r = end;
	return 1;
}

/* Consumes bytes until the header ends; see the state diagram at the top. */
int header_scanner_feed(struct header_scanner *sc, const char *data, size_t len, size_t *end_r)
{
	if (sc->state == HS_DONE) {
		*end_r = sc->end;
		return 1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)data[i];
		size_t off = sc->offset++;
		switch (sc->state) {
		case HS_LINE_START:
			if (c == '\n')
				return header_scanner_stop(sc, off + 1, true, end_r);
			if (c == '\r')
				sc->state = HS_START_CR;
			else if ((c == ' ' || c == '\t') && sc->seen_field)
				sc->state = HS_VALUE;
			else if (is_ftext(c))
				sc->state = HS_NAME;
			else
				return header_scanner_stop(sc, off, false, end_r);
			break;
		case HS_START_CR:
			if (c == '\n')
				return header_scanner_stop(sc, off + 1, true, end_r);
			return header_scanner_stop(sc, sc->line_start, false, end_r);
		case HS_NAME:
			if (c == ':') {
				sc->state = HS_VALUE;
				sc->seen_field = true;
			} else if (c == ' ' || c == '\t')
				sc->state = HS_NAME_BLANK;
			else if (!is_ftext(c))
				return header_scanner_stop(sc, sc->line_start, false, end_r);
			break;
		case HS_NAME_BLANK:
			if (c == ':') {
				sc->state = HS_VALUE;
				sc->seen_field = true;
			} else if (c != ' ' && c != '\t')
				return header_scanner_stop(sc, sc->line_start, false, end_r);
			break;
		case HS_VALUE:
			if (c == '\n') {
				sc->state = HS_LINE_START;
				sc->line_start = off + 1;
			}
			break;
		}
	}
	return 0;
}

/* Scans a whole buffer: the header length and whether an empty line ended it. */
static size_t header_scan_whole(const char *msg, size_t len, bool *separator_r)
{
	struct header_scanner sc;
	size_t end;
	header_scanner_init(&sc);
	if (header_scanner_feed(&sc, msg, len, &end) == 1) {
		*separator_r = sc.has_separator;
		return end;
	}
	*separator_r = false;
	return len;
}

/* Where the body starts. */
size_t header_section_length(const char *msg, size_t len)
{
	bool separator;
	return header_scan_whole(msg, len, &separator);
}

/* Unfolds a field's value: line ends removed, NULs dropped, blanks trimmed at both ends. */
static char *header_unfold(const char *p, size_t len)
{
	buf_t b = BUF_INIT;
	buf_reserve(&b, len);
	for (size_t i = 0; i < len; i++) {
		char c = p[i];
		if (c == '\n' || c == '\0' || (c == '\r' && i + 1 < len && p[i + 1] == '\n'))
			continue;
		if (c == '\r' && i + 1 == len)
			continue;
		buf_append_char(&b, c);
	}
	size_t start = 0;
	while (start < b.len && (b.data[start] == ' ' || b.data[start] == '\t'))
		start++;
	while (b.len > start && (b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\t'))
		b.len--;
	char *value = xstrndup(b.data != NULL ? b.data + start : "", b.len - start);
	buf_free(&b);
	return value;
}

/* Splits the header section into fields. */
int header_parse(const char *msg, size_t len, struct header *h_r)
{
	bool separator;
	size_t end = header_scan_whole(msg, len, &separator);
	size_t cap = 0;
	memset(h_r, 0, sizeof(*h_r));
	h_r->header_len = end;
	h_r->has_body_separator = separator;
	/* The empty line itself is not part of any field. */
	size_t fields_end = end;
	if (separator) {
		fields_end--;
		if (fields_end > 0 && msg[fields_end - 1] == '\r')
			fields_end--;
	}
	size_t pos = 0;
	while (pos < fields_end) {
		/* One field: its first line and every continuation line after it. */
		size_t line_end = pos;
		while (line_end < fields_end && msg[line_end] != '\n')
			line_end++;
		size_t field_end = line_end < fields_end ? line_end + 1 : fields_end;
		while (field_end < fields_end && (msg[field_end] == ' ' || msg[field_end] == '\t')) {
			while (field_end < fields_end && msg[field_end] != '\n')
				field_end++;
			if (field_end < fields_end)
				field_end++;
		}
		size_t name_end = pos;
		while (name_end < field_end && is_ftext((unsigned char)msg[name_end]))
			name_end++;
		size_t colon = name_end;
		while (colon < field_end && (msg[colon] == ' ' || msg[colon] == '\t'))
			colon++;
		if (name_end > pos && colon < field_end && msg[colon] == ':' &&
		    h_r->count < HEADER_MAX_FIELDS) {
			if (h_r->count == cap) {
				cap = cap == 0 ? 16 : cap * 2;
				h_r->fields = xrealloc(h_r->fields, cap * sizeof(*h_r->fields));
			}
			struct header_field *f = &h_r->fields[h_r->count++];
			f->name = xstrndup(msg + pos, name_end - pos);
			f->value = header_unfold(msg + colon + 1, field_end - colon - 1);
			f->raw_offset = pos;
			f->raw_len = field_end - pos;
		}
		pos = field_end;
	}
	return 0;
}

/* Frees the fields and clears the struct. */
void header_free(struct header *h)
{
	for (size_t i = 0; i < h->count; i++) {
		free(h->fields[i].name);
		free(h->fields[i].value);
	}
	free(h->fields);
	memset(h, 0, sizeof(*h));
}

/* The first field named name (case-insensitive). */
const char *header_get(const struct header *h, const char *name)
{
	for (size_t i = 0; i < h->count; i++)
		if (strcasecmp(h->fields[i].name, name) == 0)
			return h->fields[i].value;
	return NULL;
}

/* ---- charsets ---- */

/* Appends U+FFFD, the replacement character. */
static void append_replacement(buf_t *b)
{
	buf_append(b, "\xef\xbf\xbd", 3);
}

/* Copies UTF-8, replacing each ill-formed byte with U+FFFD. */
static void utf8_sanitize_into(buf_t *b, const char *text, size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t run = 0;
		/* Take the longest valid prefix in one step. */
		while (i + run < len) {
			unsigned char c = (unsigned char)text[i + run];
			size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
			if (i + run + n > len || !utf8_valid(text + i + run, n))
				break;
			run += n;
		}
		buf_append(b, text + i, run);
		i += run;
		if (i < len) {
			append_replacement(b);
			i++;
		}
	}
}

/* Converts ISO-8859-1: each byte is the code point of the same value. */
static void latin1_into(buf_t *b, const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x80) {
			buf_append_char(b, (char)c);
		} else {
			char two[2] = {(char)(0xc0 | c >> 6), (char)(0x80 | (c & 0x3f))};
			buf_append(b, two, 2);
		}
	}
}

/* Lower-cases a charset name without an RFC 2231 language suffix into out;
 * false when it is too long or has characters no charset name has. */
static bool charset_normalize(const char *charset, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = charset; *p != '\0' && *p != '*'; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || strchr("-_.:()+", c) != NULL))
			return false;
		if (n + 1 >= cap)
			return false;
		out[n++] = (char)tolower(c);
	}
	out[n] = '\0';
	return n > 0;
}

/* Converts through iconv; NULL when iconv does not know the charset. */
static char *iconv_to_utf8(const char *charset, const char *text, size_t len, size_t *out_len_r)
{
	iconv_t cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return NULL;
	buf_t b = BUF_INIT;
	char *in = (char *)text;
	size_t in_left = len;
	char chunk[1024];
	bool flushing = false;
	for (;;) {
		char *out = chunk;
		size_t out_left = sizeof(chunk);
		size_t r = flushing ? iconv(cd, NULL, NULL, &out, &out_left)
				    : iconv(cd, &in, &in_left, &out, &out_left);
		int saved = errno;
		buf_append(&b, chunk, sizeof(chunk) - out_left);
		if (r != (size_t)-1) {
			if (flushing)
				break;
			flushing = true; /* stateful charsets (ISO-2022-JP) may owe a shift back */
			continue;
		}
		if (saved == E2BIG)
			continue;
		if (flushing)
			break;
		append_replacement(&b);
		if (saved == EILSEQ && in_left > 0) {
			in++;
			in_left--;
			continue;
		}
		break; /* EINVAL: the input ends inside a character */
	}
	iconv_close(cd);
	*out_len_r = b.len;
	return buf_steal(&b);
}

/* Converts text in charset to UTF-8 (caller frees); NULL when the charset is unknown. */
char *charset_to_utf8(const char *charset, const char *text, size_t len, size_t *out_len_r)
{
	char name[CHARSET_NAME_MAX + 1];
	size_t dummy;
	if (out_len_r == NULL)
		out_len_r = &dummy;
	if (!charset_normalize(charset, name, sizeof(name)))
		return NULL;
	buf_t b = BUF_INIT;
	if (strcmp(name, "utf-8") == 0 || strcmp(name, "utf8") == 0) {
		utf8_sanitize_into(&b, text, len);
	} else if (strcmp(name, "us-ascii") == 0 || strcmp(name, "ascii") == 0 ||
		   strcmp(name, "ansi_x3.4-1968") == 0) {
		/* 8-bit text labelled ASCII is UTF-8 more often than not; else Latin-1. */
		if (utf8_valid(text, len))
			buf_append(&b, text, len);
		else
			latin1_into(&b, text, len);
	} else if (strcmp(name, "iso-8859-1") == 0 || strcmp(name, "latin1") == 0 ||
		   strcmp(name, "iso_8859-1") == 0 || strcmp(name, "l1") == 0) {
		latin1_into(&b, text, len);
	} else {
		return iconv_to_utf8(name, text, len, out_len_r);
	}
	if (b.data == NULL)
		buf_append(&b, "", 0);
	*out_len_r = b.len;
	return buf_steal(&b);
}

/* ---- RFC 2047 encoded words ---- */

struct encoded_word {
	const char *charset; /* not NUL-terminated */
	size_t charset_len;
	char encoding;       /* 'B' or 'Q' */
	const char *text;
	size_t text_len;
	size_t len;          /* the whole word, "=?" to "?=" */
};

/* Recognises "=?charset?enc?text?=" at s (RFC 2047 2); false if it is not one. */
static bool encoded_word_scan(const char *s, size_t len, struct encoded_word *w)
{
	if (len < 8 || s[0] != '=' || s[1] != '?')
		return false;
	size_t i = 2;
	while (i < len && s[i] != '?' && (unsigned char)s[i] > 32 && (unsigned char)s[i] < 127)
		i++;
	if (i == 2 || i >= len || s[i] != '?' || i - 2 > CHARSET_NAME_MAX)
		return false;
	w->charset = s + 2;
	w->charset_len = i - 2;
	if (i + 2 >= len || s[i + 2] != '?')
		return false;
	w->encoding = (char)toupper((unsigned char)s[i + 1]);
	if (w->encoding != 'B' && w->encoding != 'Q')
		return false;
	size_t t = i + 3;
	size_t k = t;
	while (k < len && s[k] != '?' && (unsigned char)s[k] > 32 && (unsigned char)s[k] < 127)
		k++;
	if (k + 1 >= len || s[k] != '?' || s[k + 1] != '=')
		return false;
	w->text = s + t;
	w->text_len = k - t;
	w->len = k + 2;
	return true;
}

/* Decodes a word's text into out; -1 if it is malformed. */
static int encoded_word_decode(const struct encoded_word *w, buf_t *out)
{
	if (w->encoding == 'B') {
		base64_state st;
		base64_stream_init(&st);
		if (base64_stream_decode(&st, w->text, w->text_len, out) < 0 ||
		    base64_stream_finish(&st) < 0)
			return -1;
		return 0;
	}
	for (size_t i = 0; i < w->text_len; i++) {
		char c = w->text[i];
		if (c == '_') {
			buf_append_char(out, ' ');
		} else if (c == '=') {
			static const char hex[] = "0123456789ABCDEF0123456789abcdef";
			const char *hi = i + 1 < w->text_len ? strchr(hex, w->text[i + 1]) : NULL;
			const char *lo = i + 2 < w->text_len ? strchr(hex, w->text[i + 2]) : NULL;
			if (hi == NULL || lo == NULL || w->text[i + 1] == '\0' || w->text[i + 2] == '\0')
				return -1;
			buf_append_char(out, (char)(((hi - hex) & 15) << 4 | ((lo - hex) & 15)));
			i += 2;
		} else {
			buf_append_char(out, c);
		}
	}
	return 0;
}

/* A run of adjacent encoded words in one charset, decoded but not yet converted:
 * joining them first keeps a character split across two words whole. */
struct word_run {
	char charset[CHARSET_NAME_MAX + 1];
	buf_t bytes;
	size_t raw_start, raw_end; /* the words as written, for an unknown charset */
	bool active;
};

/* Converts a pending run into out; control characters become spaces so a
 * decoded value can never break a line. */
static void word_run_flush(struct word_run *run, const char *value, buf_t *out)
{
	if (!run->active)
		return;
	size_t n;
	char *text = charset_to_utf8(run->charset, buf_cstr(&run->bytes), run->bytes.len, &n);
	if (text == NULL) {
		buf_append(out, value + run->raw_start, run->raw_end - run->raw_start);
	} else {
		for (size_t i = 0; i < n; i++)
			if (text[i] == '\0' || text[i] == '\r' || text[i] == '\n')
				text[i] = ' ';
		buf_append(out, text, n);
		free(text);
	}
	buf_reset(&run->bytes);
	run->active = false;
}

/* Decodes the encoded words of an unstructured value into UTF-8. */
char *header_decode_words(const char *value)
{
	size_t len = strlen(value);
	buf_t out = BUF_INIT;
	struct word_run run = {.active = false};
	buf_init(&run.bytes);
	bool after_word = false;
	size_t i = 0;
	while (i < len) {
		struct encoded_word w;
		if (value[i] == '=' && encoded_word_scan(value + i, len - i, &w)) {
			char charset[CHARSET_NAME_MAX + 1];
			memcpy(charset, w.charset, w.charset_len);
			charset[w.charset_len] = '\0';
			/* RFC 2231 5: "charset*language" */
			char *star = strchr(charset, '*');
			if (star != NULL)
				*star = '\0';
			if (run.active && strcasecmp(run.charset, charset) != 0)
				word_run_flush(&run, value, &out);
			size_t before = run.bytes.len;
			if (encoded_word_decode(&w, &run.bytes) < 0) {
				/* Malformed: keep it as written. */
				run.bytes.len = before;
				word_run_flush(&run, value, &out);
				buf_append(&out, value + i, w.len);
				after_word = false;
			} else {
				if (!run.active) {
					snprintf(run.charset, sizeof(run.charset), "%s", charset);
					run.raw_start = i;
					run.active = true;
				}
				run.raw_end = i + w.len;
				after_word = true;
			}
			i += w.len;
			continue;
		}
		if (after_word && strchr(" \t\r\n", value[i]) != NULL) {
			/* Whitespace between two encoded words is dropped (RFC 2047 6.2),
			 * a fold included for values that were not unfolded. */
			size_t j = i;
			while (j < len && strchr(" \t\r\n", value[j]) != NULL)
				j++;
			if (j < len && value[j] == '=' && encoded_word_scan(value + j, len - j, &w)) {
				i = j;
				continue;
			}
		}
		word_run_flush(&run, value, &out);
		buf_append_char(&out, value[i]);
		after_word = false;
		i++;
	}
	word_run_flush(&run, value, &out);
	buf_free(&run.bytes);
	return buf_steal(&out);
}

/* Length of the UTF-8 character starting at s (1 for a stray byte). */
static size_t utf8_char_len(const unsigned char *s, size_t left)
{
	size_t n = s[0] < 0xc0 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	if (n > left)
		return 1;
	for (size_t k = 1; k < n; k++)
		if ((s[k] & 0xc0) != 0x80)
			return 1;
	return n;
}

/* True for bytes that stand for themselves in a Q-encoded word in any position
 * (RFC 2047 5 (3)). */
static bool q_word_safe(unsigned char c)
{
	return isalnum(c) || strchr("!*+-/", c) != NULL;
}

/* Encodes a UTF-8 value as RFC 2047 words folded at 76 columns; ASCII stays as is. */
char *header_encode_words(const char *value, size_t name_len)
{
	size_t len = strlen(value);
	bool plain = strstr(value, "=?") == NULL;
	size_t q_len = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c >= 0x80 || c < 32 || c == 127)
			plain = false;
		q_len += q_word_safe(c) || c == ' ' ? 1 : 3;
	}
	if (plain)
		return xstrdup(value);
	/* Q keeps mostly-Latin text readable; B is shorter for most other scripts. */
	bool use_q = q_len * 2 <= (len + 2) / 3 * 4 * 3;
	const char *prefix = use_q ? "=?UTF-8?Q?" : "=?UTF-8?B?";
	size_t overhead = strlen(prefix) + 2;
	buf_t out = BUF_INIT;
	buf_t word = BUF_INIT; /* the raw bytes of the current word */
	size_t word_enc = 0;   /* its encoded length */
	size_t line_used = name_len + 2;
	const unsigned char *p = (const unsigned char *)value;
	size_t i = 0;
	while (i <= len) {
		size_t n = i < len ? utf8_char_len(p + i, len - i) : 0;
		size_t add = 0;
		for (size_t k = 0; k < n; k++)
			add += q_word_safe(p[i + k]) || p[i + k] == ' ' ? 1 : 3;
		size_t next_enc = use_q ? word_enc + add : (word.len + n + 2) / 3 * 4;
		size_t room = ENCODED_WORD_LINE_MAX - (line_used < 60 ? line_used : 60);
		if (room > 75)
			room = 75;
		if (i == len || (word.len > 0 && overhead + next_enc > room)) {
			/* Close the current word. */
			if (out.len > 0)
				buf_append(&out, "\r\n ", 3);
			buf_append_str(&out, prefix);
			if (use_q) {
				for (size_t k = 0; k < word.len; k++) {
					unsigned char c = (unsigned char)word.data[k];
					if (c == ' ')
						buf_append_char(&out, '_');
					else if (q_word_safe(c))
						buf_append_char(&out, (char)c);
					else if (c == '\r' || c == '\n')
						buf_append(&out, "=20", 3);
					else
						buf_printf(&out, "=%02X", c);
				}
			} else {
				char *b64 = base64_encode(word.data, word.len);
				buf_append_str(&out, b64);
				free(b64);
			}
			buf_append(&out, "?=", 2);
			buf_reset(&word);
			word_enc = 0;
			line_used = 1;
			if (i == len)
				break;
			continue;
		}
		buf_append(&word, value + i, n);
		word_enc += add;
		i += n;
	}
	buf_free(&word);
	return buf_steal(&out);
}

/* ---- dates (RFC 5322 3.3 and 4.3) ---- */

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const day_names[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The date of a day number since 1970-01-01. */
static void civil_from_days(int64_t z, int64_t *y_r, int *m_r, int *d_r)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d_r = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m_r = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y_r = yoe + era * 400 + (*m_r <= 2);
}

/* Skips blanks, line ends and (nested) comments. */
static const char *skip_cfws(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '(')
			return p;
		int depth = 0;
		while (*p != '\0') {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
			p++;
		}
	}
}

/* Reads up to max_digits digits into *v; the number of digits read. */
static int read_number(const char **pp, int max_digits, int *v)
{
	int n = 0;
	*v = 0;
	while (n < max_digits && isdigit((unsigned char)**pp)) {
		*v = *v * 10 + (**pp - '0');
		(*pp)++;
		n++;
	}
	return n;
}

/* Reads a word of letters into out (lower bound on size 16); its length. */
static size_t read_alpha(const char **pp, char *out, size_t cap)
{
	size_t n = 0;
	while (isalpha((unsigned char)**pp)) {
		if (n + 1 < cap)
			out[n++] = **pp;
		(*pp)++;
	}
	out[n] = '\0';
	return n;
}

/* The offset in minutes of an obsolete zone name (RFC 5322 4.3); false if unknown. */
static bool zone_name_offset(const char *name, int *minutes_r)
{
	static const struct { const char *name; int hours; } zones[] = {
		{"UT", 0}, {"UTC", 0}, {"GMT", 0}, {"Z", 0}, {"EST", -5}, {"EDT", -4},
		{"CST", -6}, {"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7},
	};
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
		if (strcasecmp(name, zones[i].name) == 0) {
			*minutes_r = zones[i].hours * 60;
			return true;
		}
	/* Military zones other than Z were defined with the wrong sign: treat as -0000. */
	if (strlen(name) == 1) {
		*minutes_r = 0;
		return true;
	}
	return false;
}

/* Parses an RFC 5322 date-time, with the obsolete forms. */
int header_parse_date(const char *value, int64_t *time_r, int *tz_minutes_r)
{
	const char *p = skip_cfws(value);
	char word[16];
	int day, month = 0, year, hour, minute, second = 0, tz = 0;

	/* [day-of-week ","] -- the comma is optional in the wild. */
	if (isalpha((unsigned char)*p)) {
		const char *save = p;
		read_alpha(&p, word, sizeof(word));
		p = skip_cfws(p);
		bool is_day = false;
		for (int i = 0; i < 7; i++)
			if (strncasecmp(word, day_names[i], 3) == 0)
				is_day = true;
		if (*p == ',')
			p = skip_cfws(p + 1);
		else if (!is_day)
			p = save;
	}
	if (read_number(&p, 2, &day) == 0 || day < 1)
		return -1;
	p = skip_cfws(p);
	if (*p == '-')
		p++;
	p = skip_cfws(p);
	if (read_alpha(&p, word, sizeof(word)) < 3)
		return -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(word, month_names[i], 3) == 0)
			month = i + 1;
	if (month == 0)
		return -1;
	p = skip_cfws(p);
	if (*p == '-')
		p++;
	p = skip_cfws(p);
	int ydigits = read_number(&p, 4, &year);
	if (ydigits < 2 || isdigit((unsigned char)*p))
		return -1;
	if (ydigits == 2)
		year += year < 50 ? 2000 : 1900; /* RFC 5322 4.3 */
	else if (ydigits == 3)
		year += 1900;
	p = skip_cfws(p);
	if (read_number(&p, 2, &hour) == 0 || *(p = skip_cfws(p)) != ':')
		return -1;
	p = skip_cfws(p + 1);
	if (read_number(&p, 2, &minute) != 2)
		return -1;
	p = skip_cfws(p);
	if (*p == ':') {
		p = skip_cfws(p + 1);
		if (read_number(&p, 2, &second) != 2)
			return -1;
		p = skip_cfws(p);
	}
	static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (day > month_days[month - 1] || (month == 2 && day == 29 && !leap) || hour > 23 ||
	    minute > 59 || second > 60)
		return -1;
	if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int hhmm;
		p++;
		if (read_number(&p, 4, &hhmm) != 4 || hhmm % 100 > 59)
			return -1;
		tz = sign * (hhmm / 100 * 60 + hhmm % 100);
	} else if (isalpha((unsigned char)*p)) {
		read_alpha(&p, word, sizeof(word));
		if (!zone_name_offset(word, &tz))
			tz = 0;
	}
	*time_r = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second -
		  (int64_t)tz * 60;
	*tz_minutes_r = tz;
	return 0;
}

/* Formats "Tue, 1 Jul 2003 10:52:37 +0200". */
void header_format_date(int64_t t, int tz_minutes, char *out, size_t cap)
{
	int64_t local = t + (int64_t)tz_minutes * 60;
	int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
	int64_t secs = local - days * 86400;
	int64_t year;
	int month, day;
	civil_from_days(days, &year, &month, &day);
	int weekday = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
	int tz = tz_minutes < 0 ? -tz_minutes : tz_minutes;
	snprintf(out, cap, "%s, %d %s %04lld %02d:%02d:%02d %c%02d%02d", day_names[weekday], day,
		 month_names[month - 1], (long long)year, (int)(secs / 3600),
		 (int)(secs / 60 % 60), (int)(secs % 60), tz_minutes < 0 ? '-' : '+', tz / 60,
		 tz % 60);
}

/* ---- Content-Type and Content-Disposition (RFC 2045 5.1, RFC 2183, RFC 2231) ---- */

/* RFC 2045 token characters. */
static bool is_token_char(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* Reads a token; NULL when there is none. */
static char *read_token(const char **pp, bool lower)
{
	const char *s = *pp;
	while (is_token_char((unsigned char)**pp))
		(*pp)++;
	if (*pp == s)
		return NULL;
	char *t = xstrndup(s, (size_t)(*pp - s));
	if (lower)
		for (char *q = t; *q != '\0'; q++)
			*q = (char)tolower((unsigned char)*q);
	return t;
}

/* Reads a quoted string at p (which points at '"'), unescaping quoted pairs. */
static char *read_quoted(const char **pp)
{
	buf_t b = BUF_INIT;
	const char *p = *pp + 1;
	while (*p != '\0' && *p != '"') {
		if (*p == '\\' && p[1] != '\0')
			p++;
		buf_append_char(&b, *p);
		p++;
	}
	if (*p == '"')
		p++;
	*pp = p;
	return buf_steal(&b);
}

struct raw_param {
	char *name;   /* base name, lower-cased, without the RFC 2231 "*N*" */
	int section;  /* -1 when there is no section number */
	bool extended; /* ends in '*': charset'lang'%XX */
	char *value;
};

/* Percent-decodes RFC 2231 extended text into b (a bad "%" is kept). */
static void percent_decode_into(buf_t *b, const char *s)
{
	for (; *s != '\0'; s++) {
		int hi, lo;
		if (*s == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
			hi = isdigit((unsigned char)s[1]) ? s[1] - '0' : (tolower((unsigned char)s[1]) - 'a' + 10);
			lo = isdigit((unsigned char)s[2]) ? s[2] - '0' : (tolower((unsigned char)s[2]) - 'a' + 10);
			buf_append_char(b, (char)(hi << 4 | lo));
			s += 2;
		} else {
			buf_append_char(b, *s);
		}
	}
}

/* Splits "charset'language'text" off an extended value; the text part. */
static const char *rfc2231_split(const char *v, char *charset, size_t cap)
{
	const char *q1 = strchr(v, '\'');
	const char *q2 = q1 != NULL ? strchr(q1 + 1, '\'') : NULL;
	charset[0] = '\0';
	if (q2 == NULL)
		return v;
	size_t n = (size_t)(q1 - v);
	if (n < cap) {
		memcpy(charset, v, n);
		charset[n] = '\0';
	}
	return q2 + 1;
}

/* Joins the raw parameters named name into one decoded value (RFC 2231 3, 4). */
static char *rfc2231_assemble(struct raw_param *raw, size_t count, const char *name)
{
	char charset[CHARSET_NAME_MAX + 1] = "";
	buf_t b = BUF_INIT;
	bool any = false;
	for (size_t i = 0; i < count; i++)
		if (strcmp(raw[i].name, name) == 0 && raw[i].section == -1 && raw[i].extended) {
			percent_decode_into(&b, rfc2231_split(raw[i].value, charset, sizeof(charset)));
			any = true;
			break;
		}
	for (int sec = 0; !any || sec > 0; sec++) {
		if (sec >= RFC2231_MAX_SECTIONS)
			break;
		size_t i = 0;
		while (i < count && !(strcmp(raw[i].name, name) == 0 && raw[i].section == sec))
			i++;
		if (i == count)
			break;
		any = true;
		const char *v = raw[i].value;
		if (raw[i].extended) {
			if (sec == 0)
				v = rfc2231_split(v, charset, sizeof(charset));
			percent_decode_into(&b, v);
		} else {
			buf_append_str(&b, v);
		}
	}
	if (!any) {
		buf_free(&b);
		for (size_t i = 0; i < count; i++)
			if (strcmp(raw[i].name, name) == 0 && raw[i].section == -1) {
				const char *v = raw[i].value;
				return strstr(v, "=?") != NULL ? header_decode_words(v) : xstrdup(v);
			}
		return NULL;
	}
	if (charset[0] != '\0') {
		size_t n;
		char *text = charset_to_utf8(charset, buf_cstr(&b), b.len, &n);
		if (text != NULL) {
			buf_free(&b);
			return text;
		}
	}
	return buf_steal(&b);
}

/* Parses a Content-Type (or, with is_disposition, Content-Disposition) value. */
int content_type_parse(const char *value, bool is_disposition, struct content_type *ct_r)
{
	const char *p = skip_cfws(value);
	int ret = 0;
	memset(ct_r, 0, sizeof(*ct_r));
	ct_r->type = read_token(&p, true);
	if (!is_disposition) {
		p = skip_cfws(p);
		if (ct_r->type != NULL && *p == '/') {
			p = skip_cfws(p + 1);
			ct_r->subtype = read_token(&p, true);
		}
		if (ct_r->type == NULL || ct_r->subtype == NULL) {
			free(ct_r->type);
			free(ct_r->subtype);
			ct_r->type = xstrdup("text");
			ct_r->subtype = xstrdup("plain");
			return -1;
		}
	} else if (ct_r->type == NULL) {
		return -1;
	}

	struct raw_param raw[CONTENT_TYPE_MAX_RAW_PARAMS];
	size_t raw_count = 0;
	for (;;) {
		p = skip_cfws(p);
		if (*p == '\0')
			break;
		if (*p != ';') {
			/* Junk where a ';' belongs: skip to the next parameter. */
			while (*p != '\0' && *p != ';')
				p++;
			ret = -1;
			continue;
		}
		p = skip_cfws(p + 1);
		char *name = read_token(&p, true);
		if (name == NULL)
			continue;
		p = skip_cfws(p);
		if (*p != '=' || raw_count == CONTENT_TYPE_MAX_RAW_PARAMS) {
			free(name);
			continue;
		}
		p = skip_cfws(p + 1);
		char *v;
		if (*p == '"') {
			v = read_quoted(&p);
		} else {
			const char *start = p;
			while (*p != '\0' && *p != ';' && *p != '(' && *p != '"' &&
			       (is_token_char((unsigned char)*p) || *p == ' ' || *p == '\t' ||
				*p == '/' || *p == '?' || *p == '=' || *p == '@' || *p == ':' ||
				*p == '[' || *p == ']' || *p == '<' || *p == '>' ||
				(unsigned char)*p >= 0x80))
				p++;
			/* Lenient: an unquoted value with blanks (a file name) runs to the ';'. */
			size_t n = (size_t)(p - start);
			while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t'))
				n--;
			v = xstrndup(start, n);
		}
		struct raw_param *rp = &raw[raw_count++];
		rp->section = -1;
		rp->extended = false;
		char *star = strchr(name, '*');
		if (star != NULL) {
			*star = '\0';
			const char *s = star + 1;
			if (isdigit((unsigned char)*s)) {
				int sec = 0;
				while (isdigit((unsigned char)*s) && sec < 100000)
					sec = sec * 10 + (*s++ - '0');
				rp->section = sec;
			}
			rp->extended = *s == '*' || (s == star + 1 && *s == '\0');
		}
		rp->name = name;
		rp->value = v;
	}
	/* One parameter per base name, in the order of first appearance. */
	for (size_t i = 0; i < raw_count; i++) {
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(raw[k].name, raw[i].name) == 0;
		if (seen || ct_r->param_count == CONTENT_TYPE_MAX_PARAMS || raw[i].name[0] == '\0')
			continue;
		char *v = rfc2231_assemble(raw, raw_count, raw[i].name);
		if (v == NULL)
			continue;
		ct_r->params = xrealloc(ct_r->params, (ct_r->param_count + 1) * sizeof(*ct_r->params));
		ct_r->params[ct_r->param_count].name = xstrdup(raw[i].name);
		ct_r->params[ct_r->param_count].value = v;
		ct_r->param_count++;
	}
	for (size_t i = 0; i < raw_count; i++) {
		free(raw[i].name);
		free(raw[i].value);
	}
	return ret;
}

/* A parameter's value by name (case-insensitive), or NULL. */
const char *content_type_param(const struct content_type *ct, const char *name)
{
	for (size_t i = 0; i < ct->param_count; i++)
		if (strcasecmp(ct->params[i].name, name) == 0)
			return ct->params[i].value;
	return NULL;
}

/* Frees a parsed Content-Type and clears it. */
void content_type_free(struct content_type *ct)
{
	free(ct->type);
	free(ct->subtype);
	for (size_t i = 0; i < ct->param_count; i++) {
		free(ct->params[i].name);
		free(ct->params[i].value);
	}
	free(ct->params);
	memset(ct, 0, sizeof(*ct));
}
