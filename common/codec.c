/* codec.c: base64 (RFC 4648) and quoted-printable (RFC 2045 6.7).
 *
 * The decoders that read message bodies are resumable so a body can be decoded
 * as it streams from the store:
 *
 *   base64_state: bits holds the sextets not yet emitted, nbits how many bits
 *   of them are pending. nbits encodes the position inside the 4-character
 *   quantum: 0 -> 0 (or 4), 6 -> 1, 4 -> 2, 2 -> 3 characters seen. pad counts
 *   the '=' seen in the current quantum; once pad > 0 only '=' may follow
 *   until the quantum is complete. A completed quantum resets pad, so
 *   concatenated base64 ("QQ==QQ==") decodes as the sender meant.
 *
 *   qp_state: pending holds bytes whose meaning depends on what follows, and
 *   is always one of: a run of spaces/tabs (dropped if the line ends, RFC 2045
 *   6.7 rule 3), that run plus CR, "=", "=" plus one hex digit, "=" plus
 *   transport padding, or that plus CR. Everything else is decided at once.
 *
 * Whole-buffer decoders are written on top of the stream decoders, so the two
 * can never disagree. */
#include "codec.h"

#include <stdint.h>
#include <string.h>

#include "buffer.h"

/* buf_reserve alone does not write the NUL: terminate before handing the data out. */
static char *steal_terminated(buf_t *b)
{
	buf_append(b, "", 0);
	return buf_steal(b);
}

static const char base64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The value of a base64 character, -1 for '=' handled elsewhere, -2 for others. */
static int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -2;
}

/* Encodes into b, inserting CRLF after every line_len output characters when line_len > 0. */
static void base64_encode_into(buf_t *b, const unsigned char *p, size_t len, size_t line_len)
{
	size_t column = 0;
	buf_reserve(b, (len + 2) / 3 * 4 + (line_len > 0 ? (len / 57 + 1) * 2 : 0));
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;
		if (n > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (n > 2)
			v |= p[i + 2];
		char q[4];
		q[0] = base64_alphabet[(v >> 18) & 63];
		q[1] = base64_alphabet[(v >> 12) & 63];
		q[2] = n > 1 ? base64_alphabet[(v >> 6) & 63] : '=';
		q[3] = n > 2 ? base64_alphabet[v & 63] : '=';
		buf_append(b, q, 4);
		column += 4;
		if (line_len > 0 && column >= line_len) {
			buf_append(b, "\r\n", 2);
			column = 0;
		}
	}
	if (line_len > 0 && column > 0)
		buf_append(b, "\r\n", 2);
}

/* Encodes data as one line of base64 (caller frees). */
char *base64_encode(const void *data, size_t len)
{
	buf_t b = BUF_INIT;
	base64_encode_into(&b, data, len, 0);
	return steal_terminated(&b);
}

/* Encodes data as base64 lines of 76 characters, each ending in CRLF (caller frees). */
char *base64_encode_lines(const void *data, size_t len)
{
	buf_t b = BUF_INIT;
	base64_encode_into(&b, data, len, 76);
	return steal_terminated(&b);
}

/* Strict decoding: length a multiple of 4, only the alphabet, '=' only at the end. */
int base64_decode(const char *text, size_t text_len, char **out_r, size_t *len_r)
{
	*out_r = NULL;
	*len_r = 0;
	if (text_len % 4 != 0)
		return -1;
	buf_t b = BUF_INIT;
	buf_reserve(&b, text_len / 4 * 3);
	for (size_t i = 0; i < text_len; i += 4) {
		bool last = i + 4 == text_len;
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)text[i + (size_t)k];
			if (c == '=' && last && k >= 2) {
				pad++;
				v[k] = 0;
				continue;
			}
			v[k] = base64_value(c);
			if (v[k] < 0 || pad > 0) {
				buf_free(&b);
				return -1;
			}
		}
		uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		char bytes[3] = {(char)(q >> 16), (char)(q >> 8), (char)q};
		buf_append(&b, bytes, (size_t)(3 - pad));
	}
	*len_r = b.len;
	*out_r = steal_terminated(&b);
	return 0;
}

/* Starts a resumable base64 decode. */
void base64_stream_init(base64_state *st)
{
	st->bits = 0;
	st->nbits = 0;
	st->pad = 0;
}

/* Decodes one more chunk, skipping whitespace; -1 on a character outside the alphabet
 * or misplaced padding. */
int base64_stream_decode(base64_state *st, const char *in, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			/* Padding is legal only as the 3rd or 4th character of a quantum. */
			if (st->nbits != 4 && st->nbits != 2)
				return -1;
			st->pad++;
			st->nbits += 6;
			if (st->nbits >= 8)
				st->nbits -= 8;
			st->bits = 0;
			if (st->nbits == 0)
				st->pad = 0;
			continue;
		}
		int v = base64_value(c);
		if (v < 0 || st->pad > 0)
			return -1;
		st->bits = ((st->bits << 6) | (unsigned)v) & 0xffffffu;
		st->nbits += 6;
		if (st->nbits >= 8) {
			st->nbits -= 8;
			buf_append_char(out, (char)((st->bits >> st->nbits) & 0xff));
		}
	}
	return 0;
}

/* Checks how the input ended. */
int base64_stream_finish(const base64_state *st)
{
	/* Six pending bits: one lone character, which carries no whole byte. */
	return st->nbits == 6 ? -1 : 0;
}

/* Lenient decoding for MIME bodies: whitespace and line breaks are skipped. */
int base64_decode_mime(const char *text, size_t text_len, char **out_r, size_t *len_r)
{
	base64_state st;
	buf_t b = BUF_INIT;
	*out_r = NULL;
	*len_r = 0;
	base64_stream_init(&st);
	buf_reserve(&b, text_len / 4 * 3);
	if (base64_stream_decode(&st, text, text_len, &b) < 0 || base64_stream_finish(&st) < 0) {
		buf_free(&b);
		return -1;
	}
	*len_r = b.len;
	*out_r = steal_terminated(&b);
	return 0;
}

/* True for the characters that stand for themselves in quoted-printable. */
static bool qp_literal_ok(unsigned char c)
{
	return (c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t';
}

/* Encodes text as quoted-printable; CRLF and bare LF become CRLF line breaks, and lines
 * are broken softly so none passes 76 characters (caller frees). */
char *qp_encode(const void *data, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = data;
	buf_t b = BUF_INIT;
	size_t column = 0;
	buf_reserve(&b, len + len / 8);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		if (c == '\n' || (c == '\r' && i + 1 < len && p[i + 1] == '\n')) {
			if (c == '\r')
				i++;
			buf_append(&b, "\r\n", 2);
			column = 0;
			continue;
		}
		bool at_line_end = i + 1 == len || p[i + 1] == '\n' ||
				   (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n');
		char enc[3];
		size_t n;
		/* Whitespace at a line end must be encoded, or it would be stripped (rule 3). */
		if (qp_literal_ok(c) && !((c == ' ' || c == '\t') && at_line_end)) {
			enc[0] = (char)c;
			n = 1;
		} else {
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			n = 3;
		}
		/* 75 characters and a '=' make the longest allowed line; the last
		 * character of a line may use the 76th column itself. */
		size_t limit = at_line_end ? 76 : 75;
		if (column + n > limit) {
			buf_append(&b, "=\r\n", 3);
			column = 0;
		}
		buf_append(&b, enc, n);
		column += n;
	}
	return steal_terminated(&b);
}

/* The value of a hex digit (either case), -1 if it is not one. */
static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Starts a resumable quoted-printable decode. */
void qp_stream_init(qp_state *st)
{
	st->pending_len = 0;
}

/* Emits what is pending as literal text and empties it. */
static void qp_flush_literal(qp_state *st, buf_t *out)
{
	buf_append(out, st->pending, st->pending_len);
	st->pending_len = 0;
}

/* Adds one byte to pending, flushing first when it is full. */
static void qp_pending_add(qp_state *st, buf_t *out, char c)
{
	if (st->pending_len == QP_STREAM_PENDING_MAX) {
		/* Too long to be transport padding: it was never going to be removed. */
		qp_flush_literal(st, out);
	}
	st->pending[st->pending_len++] = c;
}

/* Decides one byte against what is pending (see the state list at the top). */
static void qp_stream_byte(qp_state *st, unsigned char c, buf_t *out)
{
	for (;;) {
		const char *p = st->pending;
		size_t n = st->pending_len;
		bool soft = n > 0 && p[0] == '=';
		bool ends_cr = n > 0 && p[n - 1] == '\r';
		if (ends_cr) {
			if (c == '\n') {
				if (!soft)
					buf_append(out, "\r\n", 2);
				st->pending_len = 0;
				return;
			}
			/* A bare CR is data: keep everything before it as written. */
			qp_flush_literal(st, out);
			continue;
		}
		if (soft && n == 2 && hex_value((unsigned char)p[1]) >= 0) {
			int hi = hex_value((unsigned char)p[1]);
			int lo = hex_value(c);
			if (lo >= 0) {
				buf_append_char(out, (char)(hi << 4 | lo));
				st->pending_len = 0;
				return;
			}
			qp_flush_literal(st, out); /* "=4x" is kept as written */
			continue;
		}
		if (soft && n == 1 && hex_value(c) >= 0) {
			qp_pending_add(st, out, (char)c);
			return;
		}
		if (c == ' ' || c == '\t') {
			qp_pending_add(st, out, (char)c);
			return;
		}
		if (c == '\r') {
			qp_pending_add(st, out, (char)c);
			return;
		}
		if (c == '\n') {
			/* The line ends: trailing whitespace goes, "=" + padding is a soft break. */
			if (!soft)
				buf_append_char(out, '\n');
			st->pending_len = 0;
			return;
		}
		if (n > 0) {
			/* Anything else decides pending as literal text ("= x" kept as written). */
			qp_flush_literal(st, out);
		}
		if (c == '=')
			st->pending[st->pending_len++] = '=';
		else
			buf_append_char(out, (char)c);
		return;
	}
}

/* Decodes one more chunk of quoted-printable. */
int qp_stream_decode(qp_state *st, const char *in, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++)
		qp_stream_byte(st, (unsigned char)in[i], out);
	return 0;
}

/* Flushes at the end of the input: trailing whitespace is dropped as at any line end,
 * a final "=" is a soft break without its CRLF, "=4" is kept as written. */
int qp_stream_finish(qp_state *st, struct buf *out)
{
	const char *p = st->pending;
	size_t n = st->pending_len;
	if (n == 0)
		return 0;
	if (p[0] == '=' && n == 2 && hex_value((unsigned char)p[1]) >= 0)
		qp_flush_literal(st, out);
	else if (p[n - 1] == '\r' && p[0] != '=')
		buf_append_char(out, '\r');
	st->pending_len = 0;
	return 0;
}

/* Decodes quoted-printable text; malformed '=' sequences are kept literally. */
int qp_decode(const char *text, size_t text_len, char **out_r, size_t *len_r)
{
	qp_state st;
	buf_t b = BUF_INIT;
	qp_stream_init(&st);
	buf_reserve(&b, text_len);
	qp_stream_decode(&st, text, text_len, &b);
	qp_stream_finish(&st, &b);
	*len_r = b.len;
	*out_r = steal_terminated(&b);
	return 0;
}

/* Checks UTF-8 well-formedness (RFC 3629 4). */
bool utf8_valid(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		unsigned char lo = 0x80, hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0; /* no overlongs */
			if (c == 0xed)
				hi = 0x9f; /* no surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;
			if (c == 0xf4)
				hi = 0x8f; /* nothing past U+10FFFF */
		} else
			return false;
		if (len - i <= n)
			return false;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= n; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return false;
		i += n + 1;
	}
	return true;
}
