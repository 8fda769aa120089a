/* test_mua_mutf7.c: modified UTF-7 mailbox names (common/mutf7.c), the form
 * the mua puts on the wire: table-driven both ways, strict decoding, and a
 * round trip over many code points. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "mutf7.h"

static const struct {
	const char *utf8;
	const char *utf7;
} pairs[] = {
	{"INBOX", "INBOX"},
	{"", ""},
	{"Tom & Jerry", "Tom &- Jerry"},
	{"&", "&-"},
	/* RFC 3501 5.1.3's example. */
	{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
	{"Entwürfe", "Entw&APw-rfe"},
	{"Gesendete Objekte", "Gesendete Objekte"},
	{"Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"},
	/* Outside the BMP: a surrogate pair. */
	{"📬 Mail", "&2D3c7A- Mail"},
	{"a\tb", "a&AAk-b"},
};

static void test_mutf7_pairs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		char *enc = mutf7_encode(pairs[i].utf8);
		if (strcmp(enc, pairs[i].utf7) != 0)
			fail_msg("encode %s: got %s, want %s", pairs[i].utf8, enc, pairs[i].utf7);
		free(enc);
		char *dec = NULL;
		assert_int_equal(mutf7_decode(pairs[i].utf7, &dec), 0);
		assert_string_equal(dec, pairs[i].utf8);
		free(dec);
	}
}

static void test_mutf7_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"&",          /* unterminated */
		"&U,BTFw",    /* no closing '-' */
		"&-&",        /* a second one unterminated */
		"&AGE-",      /* "a" encoded: ASCII must stand for itself */
		"&2D3-",      /* a lone high surrogate */
		"&3Kw-",      /* a lone low surrogate */
		"&U,B-",      /* bits left over that are not zero */
		"caf\xc3\xa9", /* raw 8-bit */
		"&U/BTFw-",   /* '/' is not modified base64 */
		"a\x01",      /* a control character */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *dec = (char *)"x";
		if (mutf7_decode(bad[i], &dec) != -1)
			fail_msg("decoded invalid %s as %s", bad[i], dec);
		assert_null(dec);
	}
	/* Display falls back to the name as written. */
	char *shown = mutf7_display("&2D3-");
	assert_string_equal(shown, "&2D3-");
	free(shown);
	shown = mutf7_display("Entw&APw-rfe");
	assert_string_equal(shown, "Entwürfe");
	free(shown);
}

/* Invalid UTF-8 becomes U+FFFD rather than being dropped or passed through. */
static void test_mutf7_invalid_utf8(void **state)
{
	(void)state;
	char *enc = mutf7_encode("a\xff" "b");
	assert_string_equal(enc, "a&,,0-b");
	char *dec = NULL;
	assert_int_equal(mutf7_decode(enc, &dec), 0);
	assert_string_equal(dec, "a\xef\xbf\xbd" "b");
	free(dec);
	free(enc);
}

/* Every kind of code point survives encode then decode. */
static void test_mutf7_round_trip(void **state)
{
	(void)state;
	static const uint32_t points[] = {0x7f, 0x80, 0xe9, 0x7ff, 0x800, 0xfffd, 0xffff,
					  0x10000, 0x1f600, 0x10ffff};
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++)
		for (size_t run = 1; run <= 3; run++) {
			buf_t in = BUF_INIT;
			buf_append_str(&in, "x");
			for (size_t k = 0; k < run; k++) {
				uint32_t c = points[i];
				if (c < 0x80) {
					buf_append_char(&in, (char)c);
				} else if (c < 0x800) {
					buf_append_char(&in, (char)(0xc0 | (c >> 6)));
					buf_append_char(&in, (char)(0x80 | (c & 0x3f)));
				} else if (c < 0x10000) {
					buf_append_char(&in, (char)(0xe0 | (c >> 12)));
					buf_append_char(&in, (char)(0x80 | ((c >> 6) & 0x3f)));
					buf_append_char(&in, (char)(0x80 | (c & 0x3f)));
				} else {
					buf_append_char(&in, (char)(0xf0 | (c >> 18)));
					buf_append_char(&in, (char)(0x80 | ((c >> 12) & 0x3f)));
					buf_append_char(&in, (char)(0x80 | ((c >> 6) & 0x3f)));
					buf_append_char(&in, (char)(0x80 | (c & 0x3f)));
				}
			}
			buf_append_str(&in, "y");
			char *enc = mutf7_encode(buf_cstr(&in));
			for (const char *p = enc; *p != '\0'; p++)
				assert_true(*p >= 0x20 && *p <= 0x7e);
			char *dec = NULL;
			assert_int_equal(mutf7_decode(enc, &dec), 0);
			assert_string_equal(dec, buf_cstr(&in));
			free(dec);
			free(enc);
			buf_free(&in);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mutf7_pairs),
		cmocka_unit_test(test_mutf7_invalid),
		cmocka_unit_test(test_mutf7_invalid_utf8),
		cmocka_unit_test(test_mutf7_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
