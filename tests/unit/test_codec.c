/* test_codec.c: base64 (RFC 4648 10 test vectors) and quoted-printable
 * (RFC 2045 6.7), whole and fed one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "codec.h"

static const struct { const char *plain, *encoded; } rfc4648_vectors[] = {
	{"", ""},
	{"f", "Zg=="},
	{"fo", "Zm8="},
	{"foo", "Zm9v"},
	{"foob", "Zm9vYg=="},
	{"fooba", "Zm9vYmE="},
	{"foobar", "Zm9vYmFy"},
};

/* Encodes and strictly decodes the RFC 4648 vectors. */
static void test_base64_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rfc4648_vectors) / sizeof(rfc4648_vectors[0]); i++) {
		const char *plain = rfc4648_vectors[i].plain, *enc = rfc4648_vectors[i].encoded;
		char *e = base64_encode(plain, strlen(plain));
		assert_string_equal(e, enc);
		free(e);
		char *d;
		size_t n;
		assert_int_equal(base64_decode(enc, strlen(enc), &d, &n), 0);
		assert_int_equal(n, strlen(plain));
		assert_memory_equal(d, plain, n);
		assert_int_equal(d[n], '\0');
		free(d);
	}
}

/* Strict decoding refuses what SASL must refuse. */
static void test_base64_strict_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {"Zg=", "Zg", "Z===", "Zm9v\r\n", "Zm 9v", "Zg==Zg==",
					  "=Zg=", "Zm9*", "Zm=v"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *d = (char *)1;
		size_t n;
		assert_int_equal(base64_decode(bad[i], strlen(bad[i]), &d, &n), -1);
		assert_null(d);
	}
}

static const struct { const char *in; int ret; const char *out; } mime_cases[] = {
	{"Zm9v\r\nYmFy\r\n", 0, "foobar"},
	{" Zm9 vYg= =\n", 0, "foob"},
	{"Zm9vYg", 0, "foob"},       /* unpadded tail is decodable */
	{"Zm9vY", -1, NULL},         /* a lone dangling character is not */
	{"Zg==Zm8=", 0, "ffo"},      /* concatenated encodings */
	{"Zm9v!", -1, NULL},
	{"Z=g=", -1, NULL},
	{"", 0, ""},
};

/* The lenient MIME decoder, whole and one byte at a time through the stream API. */
static void test_base64_mime(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(mime_cases) / sizeof(mime_cases[0]); i++) {
		const char *in = mime_cases[i].in;
		char *d;
		size_t n;
		assert_int_equal(base64_decode_mime(in, strlen(in), &d, &n), mime_cases[i].ret);
		if (mime_cases[i].ret == 0) {
			assert_string_equal(d, mime_cases[i].out);
			free(d);
		}
		base64_state st;
		buf_t b = BUF_INIT;
		int r = 0;
		base64_stream_init(&st);
		for (size_t k = 0; in[k] != '\0' && r == 0; k++)
			r = base64_stream_decode(&st, in + k, 1, &b);
		if (r == 0)
			r = base64_stream_finish(&st);
		assert_int_equal(r, mime_cases[i].ret);
		if (r == 0)
			assert_string_equal(buf_cstr(&b), mime_cases[i].out);
		buf_free(&b);
	}
}

/* Binary data survives encode_lines and the MIME decoder; lines are 76 + CRLF. */
static void test_base64_lines_roundtrip(void **state)
{
	(void)state;
	unsigned char data[1000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);
	char *e = base64_encode_lines(data, sizeof(data));
	for (const char *line = e; *line != '\0';) {
		const char *crlf = strstr(line, "\r\n");
		assert_non_null(crlf);
		assert_true(crlf - line <= 76);
		line = crlf + 2;
	}
	assert_int_equal(strncmp(e + 76, "\r\n", 2), 0);
	char *d;
	size_t n;
	assert_int_equal(base64_decode_mime(e, strlen(e), &d, &n), 0);
	assert_int_equal(n, sizeof(data));
	assert_memory_equal(d, data, n);
	free(d);
	free(e);
}

static const struct { const char *in, *out; } qp_cases[] = {
	{"a=3Db", "a=b"},
	{"caf=C3=A9", "caf\xc3\xa9"},
	{"caf=c3=a9", "caf\xc3\xa9"},                  /* lower-case hex tolerated */
	{"soft=\r\nbreak", "softbreak"},
	{"soft=\nbreak", "softbreak"},
	{"soft=  \r\nbreak", "softbreak"},             /* transport padding after '=' */
	{"trailing   \r\nspace\t\r\n", "trailing\r\nspace\r\n"}, /* rule 3 */
	{"inner  space", "inner  space"},
	{"bad=4x and =zz", "bad=4x and =zz"},          /* kept literally */
	{"end=", "end"},
	{"end=4", "end=4"},
	{"trailing  ", "trailing"},
	{"bare\rcr", "bare\rcr"},
	{"lf\nonly\n", "lf\nonly\n"},
	{"== =", "== "},
	{"=\r\n", ""},
	{"", ""},
};

/* Quoted-printable decoding, whole, one byte at a time, and at every split point. */
static void test_qp_decode(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(qp_cases) / sizeof(qp_cases[0]); i++) {
		const char *in = qp_cases[i].in;
		size_t len = strlen(in);
		char *d;
		size_t n;
		assert_int_equal(qp_decode(in, len, &d, &n), 0);
		assert_string_equal(d, qp_cases[i].out);
		free(d);
		qp_state st;
		buf_t b = BUF_INIT;
		qp_stream_init(&st);
		for (size_t k = 0; k < len; k++)
			assert_int_equal(qp_stream_decode(&st, in + k, 1, &b), 0);
		qp_stream_finish(&st, &b);
		assert_string_equal(buf_cstr(&b), qp_cases[i].out);
		for (size_t split = 0; split <= len; split++) {
			buf_reset(&b);
			qp_stream_init(&st);
			qp_stream_decode(&st, in, split, &b);
			qp_stream_decode(&st, in + split, len - split, &b);
			qp_stream_finish(&st, &b);
			assert_string_equal(buf_cstr(&b), qp_cases[i].out);
		}
		buf_free(&b);
	}
}

/* A whitespace run longer than the pending limit is kept, not lost. */
static void test_qp_long_whitespace(void **state)
{
	(void)state;
	char in[QP_STREAM_PENDING_MAX * 3 + 2];
	memset(in, ' ', sizeof(in) - 2);
	in[sizeof(in) - 2] = 'x';
	in[sizeof(in) - 1] = '\0';
	char *d;
	size_t n;
	qp_decode(in, strlen(in), &d, &n);
	assert_string_equal(d, in);
	free(d);
}

/* Encoding: the exact output for known inputs, and line lengths for a long one. */
static void test_qp_encode(void **state)
{
	(void)state;
	static const struct { const char *in, *out; } cases[] = {
		{"plain", "plain"},
		{"a=b", "a=3Db"},
		{"caf\xc3\xa9", "caf=C3=A9"},
		{"space at end \nnext", "space at end=20\r\nnext"},
		{"tab\t\r\n", "tab=09\r\n"},
		{"cr\ralone", "cr=0Dalone"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = qp_encode(cases[i].in, strlen(cases[i].in));
		assert_string_equal(e, cases[i].out);
		free(e);
	}
	char text[600];
	for (size_t i = 0; i < sizeof(text) - 1; i++)
		text[i] = (char)(i % 3 == 0 ? '=' : i % 5 == 0 ? ' ' : 'a' + (char)(i % 26));
	text[sizeof(text) - 1] = '\0';
	char *e = qp_encode(text, strlen(text));
	for (const char *line = e; *line != '\0';) {
		const char *crlf = strstr(line, "\r\n");
		size_t n = crlf != NULL ? (size_t)(crlf - line) : strlen(line);
		assert_true(n <= 76);
		line += n + (crlf != NULL ? 2 : 0);
	}
	char *d;
	size_t n;
	qp_decode(e, strlen(e), &d, &n);
	assert_string_equal(d, text);
	free(d);
	free(e);
}

/* UTF-8 well-formedness (RFC 3629 examples and the classic ill-formed cases). */
static void test_utf8_valid(void **state)
{
	(void)state;
	static const struct { const char *s; bool ok; } cases[] = {
		{"ascii", true},
		{"\xc3\xa9", true},
		{"\xe2\x82\xac", true},
		{"\xf0\x9f\x98\x80", true},
		{"\xc0\xaf", false},         /* overlong '/' */
		{"\xe0\x80\xaf", false},     /* overlong */
		{"\xed\xa0\x80", false},     /* surrogate */
		{"\xf4\x90\x80\x80", false}, /* past U+10FFFF */
		{"\xc3", false},             /* truncated */
		{"\x80", false},
		{"\xff", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_base64_strict_errors),
		cmocka_unit_test(test_base64_mime),
		cmocka_unit_test(test_base64_lines_roundtrip),
		cmocka_unit_test(test_qp_decode),
		cmocka_unit_test(test_qp_long_whitespace),
		cmocka_unit_test(test_qp_encode),
		cmocka_unit_test(test_utf8_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
