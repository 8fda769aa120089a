/* imap_utf7.c: modified UTF-7 (RFC 3501 5.1.3, a variant of RFC 2152).
 *
 * Printable US-ASCII stands for itself except '&', written "&-". Anything
 * else is UTF-16, base64-encoded with ',' in place of '/', between '&' and
 * '-'. Decoding is strict so that one folder has one wire name: it refuses
 * what an encoder would never produce. */
#include "imap_utf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

static const char utf7_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Reads one code point from UTF-8 at *s; invalid sequences give U+FFFD. */
static uint32_t utf8_next(const unsigned char **s)
{
	const unsigned char *p = *s;
	uint32_t cp;
	int extra;
	if (p[0] < 0x80) {
		*s = p + 1;
		return p[0];
	} else if ((p[0] & 0xe0) == 0xc0) {
		cp = p[0] & 0x1f;
		extra = 1;
	} else if ((p[0] & 0xf0) == 0xe0) {
		cp = p[0] & 0x0f;
		extra = 2;
	} else if ((p[0] & 0xf8) == 0xf0) {
		cp = p[0] & 0x07;
		extra = 3;
	} else {
		*s = p + 1;
		return 0xfffd;
	}
	for (int i = 1; i <= extra; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			*s = p + i;
			return 0xfffd;
		}
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	*s = p + extra + 1;
	static const uint32_t min_for_len[] = {0, 0x80, 0x800, 0x10000};
	if (cp < min_for_len[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0xfffd;
	return cp;
}

/* Appends a code point as UTF-8. */
static void utf8_append(buf_t *out, uint32_t cp)
{
	if (cp < 0x80) {
		buf_append_char(out, (char)cp);
	} else if (cp < 0x800) {
		buf_append_char(out, (char)(0xc0 | (cp >> 6)));
		buf_append_char(out, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		buf_append_char(out, (char)(0xe0 | (cp >> 12)));
		buf_append_char(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_append_char(out, (char)(0x80 | (cp & 0x3f)));
	} else {
		buf_append_char(out, (char)(0xf0 | (cp >> 18)));
		buf_append_char(out, (char)(0x80 | ((cp >> 12) & 0x3f)));
		buf_append_char(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_append_char(out, (char)(0x80 | (cp & 0x3f)));
	}
}

/* Adds 16 bits to a base64 run. */
static void utf7_push16(buf_t *out, uint32_t *bits, int *nbits, uint32_t unit)
{
	*bits = (*bits << 16) | unit;
	*nbits += 16;
	while (*nbits >= 6) {
		*nbits -= 6;
		buf_append_char(out, utf7_alphabet[(*bits >> *nbits) & 0x3f]);
	}
	*bits &= (1u << *nbits) - 1;
}

char *imap_utf7_encode(const char *utf8)
{
	buf_t out = BUF_INIT;
	const unsigned char *s = (const unsigned char *)utf8;
	bool in_base64 = false;
	uint32_t bits = 0;
	int nbits = 0;
	while (*s != '\0') {
		uint32_t cp = utf8_next(&s);
		if (cp >= 0x20 && cp <= 0x7e) {
			if (in_base64) {
				if (nbits > 0)
					buf_append_char(&out, utf7_alphabet[(bits << (6 - nbits)) & 0x3f]);
				buf_append_char(&out, '-');
				in_base64 = false;
				bits = 0;
				nbits = 0;
			}
			buf_append_char(&out, (char)cp);
			if (cp == '&')
				buf_append_char(&out, '-');
			continue;
		}
		if (!in_base64) {
			buf_append_char(&out, '&');
			in_base64 = true;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			utf7_push16(&out, &bits, &nbits, 0xd800 | (cp >> 10));
			utf7_push16(&out, &bits, &nbits, 0xdc00 | (cp & 0x3ff));
		} else {
			utf7_push16(&out, &bits, &nbits, cp);
		}
	}
	if (in_base64) {
		if (nbits > 0)
			buf_append_char(&out, utf7_alphabet[(bits << (6 - nbits)) & 0x3f]);
		buf_append_char(&out, '-');
	}
	return buf_steal(&out);
}

/* The value of a modified-base64 character, or -1. */
static int utf7_value(unsigned char c)
{
	const char *p = c != '\0' ? strchr(utf7_alphabet, c) : NULL;
	return p != NULL ? (int)(p - utf7_alphabet) : -1;
}

/* Decodes one base64 run starting after '&'; *s ends after its '-'. */
static int utf7_decode_run(const unsigned char **s, buf_t *out)
{
	const unsigned char *p = *s;
	uint32_t bits = 0;
	int nbits = 0;
	uint32_t high_surrogate = 0;
	size_t units = 0;
	while (*p != '-') {
		int v = utf7_value(*p);
		if (v < 0)
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		p++;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t unit = (bits >> nbits) & 0xffff;
		bits &= (1u << nbits) - 1;
		units++;
		if (high_surrogate != 0) {
			if (unit < 0xdc00 || unit > 0xdfff)
				return -1;
			utf8_append(out, 0x10000 + ((high_surrogate - 0xd800) << 10) + (unit - 0xdc00));
			high_surrogate = 0;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			high_surrogate = unit;
		} else if (unit >= 0xdc00 && unit <= 0xdfff) {
			return -1;
		} else if (unit >= 0x20 && unit <= 0x7e) {
			return -1; /* printable ASCII must stand for itself */
		} else {
			utf8_append(out, unit);
		}
	}
	/* Leftover bits: fewer than 6 and all zero; no dangling surrogate; not empty. */
	if (units == 0 || nbits >= 6 || bits != 0 || high_surrogate != 0)
		return -1;
	*s = p + 1;
	return 0;
}

int imap_utf7_decode(const char *utf7, char **utf8_r)
{
	buf_t out = BUF_INIT;
	const unsigned char *s = (const unsigned char *)utf7;
	*utf8_r = NULL;
	while (*s != '\0') {
		if (*s < 0x20 || *s > 0x7e)
			goto invalid;
		if (*s != '&') {
			buf_append_char(&out, (char)*s++);
			continue;
		}
		s++;
		if (*s == '-') {
			buf_append_char(&out, '&');
			s++;
			continue;
		}
		if (utf7_decode_run(&s, &out) < 0)
			goto invalid;
	}
	*utf8_r = buf_steal(&out);
	return 0;
invalid:
	buf_free(&out);
	return -1;
}
