/* mutf7.c: modified UTF-7 (RFC 3501 section 5.1.3).
 *
 * Printable ASCII (0x20-0x7e) stands for itself, except "&", written "&-".
 * Every other run of characters is written as UTF-16 big-endian code units
 * in base64 with "," for "/" and no padding, between "&" and "-". Decoding
 * is strict, so that one name has exactly one wire form: a base64 run must
 * not be empty (that is "&-"), must not hold printable ASCII, must end on a
 * code-unit boundary with zero bits left over, and must pair its surrogates. */
#include "mutf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "buffer.h"

static const char mutf7_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Decodes one UTF-8 character at *p (advancing it); invalid input gives U+FFFD. */
static uint32_t utf8_next(const unsigned char **p)
{
	const unsigned char *s = *p;
	uint32_t c = s[0];
	size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 :
		   (c & 0xf8) == 0xf0 ? 3 : 99;
	if (n == 99) {
		*p = s + 1;
		return 0xfffd;
	}
	c &= n == 0 ? 0x7f : n == 1 ? 0x1f : n == 2 ? 0x0f : 0x07;
	for (size_t i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*p = s + i;
			return 0xfffd;
		}
		c = (c << 6) | (s[i] & 0x3f);
	}
	*p = s + n + 1;
	/* Overlong forms, surrogates and values past U+10FFFF are not characters. */
	static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
	if (c < min[n] || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0xfffd;
	return c;
}

/* Appends a code point as UTF-8. */
static void utf8_put(buf_t *out, uint32_t c)
{
	if (c < 0x80) {
		buf_append_char(out, (char)c);
	} else if (c < 0x800) {
		buf_append_char(out, (char)(0xc0 | (c >> 6)));
		buf_append_char(out, (char)(0x80 | (c & 0x3f)));
	} else if (c < 0x10000) {
		buf_append_char(out, (char)(0xe0 | (c >> 12)));
		buf_append_char(out, (char)(0x80 | ((c >> 6) & 0x3f)));
		buf_append_char(out, (char)(0x80 | (c & 0x3f)));
	} else {
		buf_append_char(out, (char)(0xf0 | (c >> 18)));
		buf_append_char(out, (char)(0x80 | ((c >> 12) & 0x3f)));
		buf_append_char(out, (char)(0x80 | ((c >> 6) & 0x3f)));
		buf_append_char(out, (char)(0x80 | (c & 0x3f)));
	}
}

/* UTF-8 to modified UTF-7. */
char *mutf7_encode(const char *utf8)
{
	buf_t out = BUF_INIT;
	const unsigned char *p = (const unsigned char *)utf8;
	while (*p != '\0') {
		if (*p >= 0x20 && *p <= 0x7e) {
			if (*p == '&')
				buf_append_str(&out, "&-");
			else
				buf_append_char(&out, (char)*p);
			p++;
			continue;
		}
		/* A run of characters outside printable ASCII, as UTF-16 in base64. */
		buf_append_char(&out, '&');
		uint32_t bits = 0;
		int nbits = 0;
		while (*p != '\0' && !(*p >= 0x20 && *p <= 0x7e)) {
			uint32_t c = utf8_next(&p);
			uint16_t units[2];
			size_t nunits = 1;
			if (c >= 0x10000) {
				c -= 0x10000;
				units[0] = (uint16_t)(0xd800 | (c >> 10));
				units[1] = (uint16_t)(0xdc00 | (c & 0x3ff));
				nunits = 2;
			} else {
				units[0] = (uint16_t)c;
			}
			for (size_t u = 0; u < nunits; u++) {
				bits = (bits << 16) | units[u];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					buf_append_char(&out, mutf7_alphabet[(bits >> nbits) & 0x3f]);
				}
				bits &= (1u << nbits) - 1;
			}
		}
		if (nbits > 0)
			buf_append_char(&out, mutf7_alphabet[(bits << (6 - nbits)) & 0x3f]);
		buf_append_char(&out, '-');
	}
	return buf_steal(&out);
}

/* The value of a modified base64 character, or -1. */
static int mutf7_value(char c)
{
	const char *at = c != '\0' ? strchr(mutf7_alphabet, c) : NULL;
	return at != NULL ? (int)(at - mutf7_alphabet) : -1;
}

/* Modified UTF-7 to UTF-8. */
int mutf7_decode(const char *utf7, char **utf8_r)
{
	buf_t out = BUF_INIT;
	const char *p = utf7;
	*utf8_r = NULL;
	while (*p != '\0') {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c > 0x7e)
			goto bad;
		if (c != '&') {
			buf_append_char(&out, (char)c);
			p++;
			continue;
		}
		p++;
		if (*p == '-') {
			buf_append_char(&out, '&');
			p++;
			continue;
		}
		uint32_t bits = 0;
		int nbits = 0;
		uint32_t high = 0; /* a high surrogate waiting for its pair */
		size_t units = 0;
		while (*p != '-') {
			int v = mutf7_value(*p);
			if (v < 0)
				goto bad; /* includes the end of the string */
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			p++;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t unit = (bits >> nbits) & 0xffff;
			bits &= (1u << nbits) - 1;
			units++;
			if (high != 0) {
				if (unit < 0xdc00 || unit > 0xdfff)
					goto bad;
				utf8_put(&out, 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00));
				high = 0;
			} else if (unit >= 0xd800 && unit <= 0xdbff) {
				high = unit;
			} else if (unit >= 0xdc00 && unit <= 0xdfff) {
				goto bad;
			} else if (unit >= 0x20 && unit <= 0x7e) {
				goto bad; /* printable ASCII must stand for itself */
			} else {
				utf8_put(&out, unit);
			}
		}
		/* Leftover bits: fewer than 6, and all zero. */
		if (units == 0 || high != 0 || nbits >= 6 || bits != 0)
			goto bad;
		p++;
	}
	*utf8_r = buf_steal(&out);
	return 0;
bad:
	buf_free(&out);
	return -1;
}

/* The name for display. */
char *mutf7_display(const char *utf7)
{
	char *utf8 = NULL;
	if (mutf7_decode(utf7, &utf8) < 0)
		return xstrdup(utf7);
	return utf8;
}
