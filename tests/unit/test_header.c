/* test_header.c: header sections (whole, byte by byte, every prefix), RFC 2047
 * encoded words (the RFC's section 8 examples), RFC 5322 dates (with the
 * appendix A and obsolete forms), and RFC 2231 parameters (its examples). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "header.h"

static const struct {
	const char *msg;
	size_t header_len;
	bool separator;
	size_t count;
	const char *fields[4][2]; /* name, value of the first fields */
} sections[] = {
	{"From: a@b\r\nSubject: hi\r\n\r\nbody", 26, true, 2, {{"From", "a@b"}, {"Subject", "hi"}}},
	{"From: a@b\nSubject: hi\n\nbody\n", 23, true, 2, {{"From", "a@b"}, {"Subject", "hi"}}},
	{"Subject: one\r\n two\r\n\tthree\r\nX: y\r\n\r\n", 36, true, 2,
	 {{"Subject", "one two\tthree"}, {"X", "y"}}},
	{"Subject : obsolete blank\r\n\r\n", 28, true, 1, {{"Subject", "obsolete blank"}}},
	{"A:\r\nB:   \r\n\r\n", 13, true, 2, {{"A", ""}, {"B", ""}}},
	{"From: a@b\r\nnot a field\r\nmore\r\n", 11, false, 1, {{"From", "a@b"}}},
	{"From: a@b\r\n", 11, false, 1, {{"From", "a@b"}}},
	{"From: a@b", 9, false, 1, {{"From", "a@b"}}},
	{"\r\nbody only", 2, true, 0, {{NULL, NULL}}},
	{" leading blank\r\n\r\n", 0, false, 0, {{NULL, NULL}}},
	{"body without header\r\n", 0, false, 0, {{NULL, NULL}}},
	{"X-Long: a\r\n  b\r\n  c\r\nX-Empty-Continued:\r\n x\r\n\r\n", 47, true, 2,
	 {{"X-Long", "a  b  c"}, {"X-Empty-Continued", "x"}}},
	{"", 0, false, 0, {{NULL, NULL}}},
	{"From: a@b\r\n\rx", 11, false, 1, {{"From", "a@b"}}},
};

/* header_parse on each section: fields, lengths, raw offsets. */
static void test_header_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		struct header h;
		const char *msg = sections[i].msg;
		assert_int_equal(header_parse(msg, strlen(msg), &h), 0);
		if (h.header_len != sections[i].header_len)
			fail_msg("case %zu: header_len %zu, expected %zu", i, h.header_len,
				 sections[i].header_len);
		assert_int_equal(h.has_body_separator, sections[i].separator);
		assert_int_equal(h.count, sections[i].count);
		for (size_t k = 0; k < h.count && k < 4; k++) {
			assert_string_equal(h.fields[k].name, sections[i].fields[k][0]);
			assert_string_equal(h.fields[k].value, sections[i].fields[k][1]);
			assert_true(h.fields[k].raw_offset + h.fields[k].raw_len <= h.header_len);
			assert_memory_equal(msg + h.fields[k].raw_offset, h.fields[k].name,
					    strlen(h.fields[k].name));
		}
		assert_int_equal(header_section_length(msg, strlen(msg)), sections[i].header_len);
		header_free(&h);
		assert_null(h.fields);
	}
}

/* The scanner fed one byte at a time finds the same end as the whole parse. */
static void test_header_scanner_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		const char *msg = sections[i].msg;
		size_t len = strlen(msg), end = 0;
		struct header_scanner sc;
		int r = 0;
		header_scanner_init(&sc);
		size_t k;
		for (k = 0; k < len && r == 0; k++)
			r = header_scanner_feed(&sc, msg + k, 1, &end);
		if (r == 0)
			end = len;
		assert_int_equal(end, sections[i].header_len);
		assert_int_equal(r == 1 && sc.has_separator, sections[i].separator);
		/* An empty line is known at its LF; a line that is no field only once
		 * read into, so the end may lie behind what was fed. */
		if (r == 1 && sc.has_separator)
			assert_int_equal(k, end);
		else if (r == 1)
			assert_true(k > end);
	}
}

/* Every prefix of every section parses and agrees with the scanner. */
static void test_header_prefixes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		const char *msg = sections[i].msg;
		for (size_t n = 0; n <= strlen(msg); n++) {
			char *copy = malloc(n + 1);
			memcpy(copy, msg, n);
			struct header h;
			assert_int_equal(header_parse(copy, n, &h), 0);
			assert_true(h.header_len <= n);
			header_free(&h);
			free(copy);
		}
	}
}

/* A header with more than HEADER_MAX_FIELDS fields keeps the first ones only. */
static void test_header_field_limit(void **state)
{
	(void)state;
	size_t n = HEADER_MAX_FIELDS + 5;
	char *msg = malloc(n * 4 + 3);
	for (size_t i = 0; i < n; i++)
		memcpy(msg + i * 4, "A:\r\n", 4);
	memcpy(msg + n * 4, "\r\n", 3);
	struct header h;
	header_parse(msg, n * 4 + 2, &h);
	assert_int_equal(h.count, HEADER_MAX_FIELDS);
	assert_int_equal(h.header_len, n * 4 + 2);
	header_free(&h);
	free(msg);
}

/* header_get is case-insensitive and returns the first. */
static void test_header_get(void **state)
{
	(void)state;
	const char *msg = "Received: one\r\nreceived: two\r\nSUBJECT: s\r\n\r\n";
	struct header h;
	header_parse(msg, strlen(msg), &h);
	assert_string_equal(header_get(&h, "RECEIVED"), "one");
	assert_string_equal(header_get(&h, "subject"), "s");
	assert_null(header_get(&h, "From"));
	header_free(&h);
}

static const struct { const char *in, *out; } words[] = {
	/* RFC 2047 section 8 */
	{"(=?ISO-8859-1?Q?a?=)", "(a)"},
	{"(=?ISO-8859-1?Q?a?= b)", "(a b)"},
	{"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"},
	{"(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"},
	{"(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"},
	{"(=?ISO-8859-1?Q?a_b?=)", "(a b)"},
	{"(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"},
	{"=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>", "Keith Moore <moore@cs.utk.edu>"},
	{"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld J\xc3\xb8rn Simonsen"},
	{"=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard"},
	{"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
	 "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
	 "If you can read this you understand the example."},
	/* RFC 2231 5: language in the charset */
	{"=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore"},
	/* a UTF-8 character split across two words is joined before conversion */
	{"=?UTF-8?Q?=C3?= =?UTF-8?Q?=A9t=C3=A9?=", "\xc3\xa9t\xc3\xa9"},
	{"=?utf-8?b?w6k=?=", "\xc3\xa9"},
	{"=?windows-1252?Q?=80_5?=", "\xe2\x82\xac 5"},
	{"=?koi8-r?B?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"},
	/* malformed or unknown: kept as written */
	{"=?UTF-8?Q?bad=Z?=", "=?UTF-8?Q?bad=Z?="},
	{"=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="},
	{"=?x-no-such-charset?Q?abc?= =?x-no-such-charset?Q?d?=",
	 "=?x-no-such-charset?Q?abc?= =?x-no-such-charset?Q?d?="},
	{"=?UTF-8?B?!!!?=", "=?UTF-8?B?!!!?="},
	{"=?UTF-8?Q?unterminated", "=?UTF-8?Q?unterminated"},
	{"a =?UTF-8?Q?x?= b", "a x b"},
	/* decoded line breaks cannot split a header */
	{"=?UTF-8?Q?a=0D=0Ab?=", "a  b"},
	{"plain text", "plain text"},
	{"", ""},
};

/* Decoding encoded words, and every prefix of each input without a crash. */
static void test_decode_words(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		char *d = header_decode_words(words[i].in);
		if (strcmp(d, words[i].out) != 0)
			fail_msg("case %zu: got [%s], expected [%s]", i, d, words[i].out);
		free(d);
		size_t len = strlen(words[i].in);
		for (size_t n = 0; n < len; n++) {
			char *copy = strndup(words[i].in, n);
			free(header_decode_words(copy));
			free(copy);
		}
	}
}

/* Encoding: ASCII unchanged; UTF-8 becomes words, lines within 76, round trip exact. */
static void test_encode_words(void **state)
{
	(void)state;
	static const char *const values[] = {
		"Caf\xc3\xa9",
		"Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln \xe2\x80\x94 ein ziemlich langer Betreff, der "
		"gefaltet werden muss, damit alles auf die Zeilen passt",
		"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d\xe3\x81\xa7"
		"\xe3\x81\x99\xe3\x80\x82\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6"
		"\xe5\x90\x8d\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		"looks =?like?= a word",
		"line\r\nbreak injection: X-Evil: yes",
	};
	char *plain = header_encode_words("plain ASCII subject", 7);
	assert_string_equal(plain, "plain ASCII subject");
	free(plain);
	char *cafe = header_encode_words("Caf\xc3\xa9", 7);
	assert_string_equal(cafe, "=?UTF-8?Q?Caf=C3=A9?=");
	free(cafe);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char *e = header_encode_words(values[i], 7);
		size_t column = 9; /* "Subject: " */
		for (const char *p = e; *p != '\0'; p++) {
			assert_true((unsigned char)*p < 0x80);
			if (*p == '\r') {
				assert_true(column <= 76);
				assert_int_equal(p[1], '\n');
				assert_int_equal(p[2], ' ');
				column = 0;
				p++;
				continue;
			}
			column++;
		}
		assert_true(column <= 76);
		char *d = header_decode_words(e);
		if (strstr(values[i], "\r\n") != NULL)
			assert_null(strchr(d, '\n'));
		else
			assert_string_equal(d, values[i]);
		free(d);
		free(e);
	}
}

/* charset_to_utf8: built-in charsets, iconv, replacement, unknown. */
static void test_charset(void **state)
{
	(void)state;
	size_t n;
	char *s = charset_to_utf8("ISO-8859-1", "K\xf6ln", 4, &n);
	assert_string_equal(s, "K\xc3\xb6ln");
	assert_int_equal(n, 5);
	free(s);
	s = charset_to_utf8("utf-8", "a\xff" "b", 3, &n);
	assert_string_equal(s, "a\xef\xbf\xbd" "b");
	free(s);
	s = charset_to_utf8("iso-8859-15", "\xa4", 1, &n);
	assert_string_equal(s, "\xe2\x82\xac");
	free(s);
	s = charset_to_utf8("us-ascii", "caf\xc3\xa9", 5, &n);
	assert_string_equal(s, "caf\xc3\xa9");
	free(s);
	s = charset_to_utf8("shift_jis", "\x82\xa0", 2, &n);
	assert_string_equal(s, "\xe3\x81\x82");
	free(s);
	assert_null(charset_to_utf8("x-unknown", "a", 1, &n));
	assert_null(charset_to_utf8("../../etc/passwd", "a", 1, &n));
	assert_null(charset_to_utf8("", "a", 1, &n));
}

static const struct {
	const char *in;
	int ret;
	int64_t t;
	int tz;
} dates[] = {
	{"Tue, 1 Jul 2003 10:52:37 +0200", 0, 1057049557, 120},
	{"Fri, 21 Nov 1997 09:55:06 -0600", 0, 880127706, -360},   /* RFC 5322 A.1.1 */
	{"Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n"
	 "               -0330 (Newfoundland Time)", 0, -27723480, -210}, /* A.5 */
	{"21 Nov 97 09:55:06 GMT", 0, 880106106, 0},                /* A.6.2 */
	{"Fri, 21 Nov 1997 09:55:06 PST", 0, 880134906, -480},
	{"Fri, 21 Nov 1997 09:55:06 EDT", 0, 880120506, -240},
	{"Fri, 21 Nov 1997 09:55:06 UT", 0, 880106106, 0},
	{"Fri, 21 Nov 1997 09:55:06 Q", 0, 880106106, 0},            /* military: -0000 */
	{"Fri, 21 Nov 1997 09:55:06", 0, 880106106, 0},
	{"Fri, 21 Nov 1997 09:55 +0000", 0, 880106100, 0},
	{"21 Nov 49 00:00:00 +0000", 0, 2521065600, 0},               /* 2049 */
	{"21 Nov 50 00:00:00 +0000", 0, -603158400, 0},               /* 1950 */
	{"1 Jan 100 00:00:00 +0000", 0, 946684800, 0},                /* 3 digits: +1900 */
	{"Mon, 29 Feb 2016 12:00:00 +0000", 0, 1456747200, 0},
	{"01-Jul-2003 10:52:37 +0200", 0, 1057049557, 120},           /* IMAP-style */
	{"Tue 1 Jul 2003 10:52:37 +0200", 0, 1057049557, 120},        /* day without comma */
	{"Sat, 1 Jan 2000 00:00:60 +0000", 0, 946684860, 0},          /* leap second */
	{"Tue, 29 Feb 2015 10:00:00 +0000", -1, 0, 0},
	{"Tue, 31 Apr 2003 10:52:37 +0200", -1, 0, 0},
	{"Tue, 1 Foo 2003 10:52:37 +0200", -1, 0, 0},
	{"Tue, 1 Jul 2003 24:00:00 +0200", -1, 0, 0},
	{"Tue, 1 Jul 2003 10:52:37 +02", -1, 0, 0},
	{"Tue, 1 Jul 20031 10:52:37 +0200", -1, 0, 0},
	{"yesterday", -1, 0, 0},
	{"", -1, 0, 0},
};

/* Dates, and every prefix of each without a crash. */
static void test_dates(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		int64_t t = 0;
		int tz = 0;
		int r = header_parse_date(dates[i].in, &t, &tz);
		if (r != dates[i].ret || (r == 0 && (t != dates[i].t || tz != dates[i].tz)))
			fail_msg("case %zu (%s): r=%d t=%lld tz=%d", i, dates[i].in, r, (long long)t, tz);
		for (size_t n = 0; n < strlen(dates[i].in); n++) {
			char *copy = strndup(dates[i].in, n);
			header_parse_date(copy, &t, &tz);
			free(copy);
		}
	}
}

/* Formatting a date, and parsing it back. */
static void test_format_date(void **state)
{
	(void)state;
	char out[64];
	header_format_date(1057049557, 120, out, sizeof(out));
	assert_string_equal(out, "Tue, 1 Jul 2003 10:52:37 +0200");
	header_format_date(-27723480, -210, out, sizeof(out));
	assert_string_equal(out, "Thu, 13 Feb 1969 23:32:00 -0330");
	header_format_date(0, 0, out, sizeof(out));
	assert_string_equal(out, "Thu, 1 Jan 1970 00:00:00 +0000");
	for (int64_t t = -100000000; t < 4000000000; t += 98765431) {
		int64_t back;
		int tz;
		header_format_date(t, -450, out, sizeof(out));
		assert_int_equal(header_parse_date(out, &back, &tz), 0);
		assert_int_equal(back, t);
		assert_int_equal(tz, -450);
	}
}

static const struct {
	const char *in;
	bool disposition;
	int ret;
	const char *type, *subtype;
	const char *params[4][2];
} types[] = {
	{"text/plain; charset=us-ascii", false, 0, "text", "plain", {{"charset", "us-ascii"}}},
	{"TEXT/HTML; CHARSET=\"UTF-8\"", false, 0, "text", "html", {{"charset", "UTF-8"}}},
	{"text/plain; charset=\"us-ascii\" (Plain text)", false, 0, "text", "plain",
	 {{"charset", "us-ascii"}}},
	{"(comment) multipart / mixed ; boundary=\"=_a b\\\"c\"", false, 0, "multipart", "mixed",
	 {{"boundary", "=_a b\"c"}}},
	/* RFC 2231 3 */
	{"message/external-body; access-type=URL;\r\n URL*0=\"ftp://\";\r\n"
	 " URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"", false, 0, "message",
	 "external-body",
	 {{"access-type", "URL"}, {"url", "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"}}},
	/* RFC 2231 4 */
	{"application/x-stuff;\r\n title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A",
	 false, 0, "application", "x-stuff", {{"title", "This is ***fun***"}}},
	/* RFC 2231 4.1 */
	{"application/x-stuff;\r\n title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
	 " title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n title*2=\"isn't it!\"", false, 0, "application",
	 "x-stuff", {{"title", "This is even more ***fun*** isn't it!"}}},
	{"attachment; filename*=UTF-8''%E2%82%AC%20rates.txt", true, 0, "attachment", NULL,
	 {{"filename", "\xe2\x82\xac rates.txt"}}},
	{"attachment; filename*=iso-8859-1''K%F6ln.txt; filename=\"Koln.txt\"", true, 0,
	 "attachment", NULL, {{"filename", "K\xc3\xb6ln.txt"}}},
	{"attachment; filename=\"=?UTF-8?Q?K=C3=B6ln.txt?=\"", true, 0, "attachment", NULL,
	 {{"filename", "K\xc3\xb6ln.txt"}}},
	{"inline; filename=my file.pdf; size=123", true, 0, "inline", NULL,
	 {{"filename", "my file.pdf"}, {"size", "123"}}},
	{"text/plain; charset=a; charset=b", false, 0, "text", "plain", {{"charset", "a"}}},
	{"text/plain;; ;charset=x;", false, 0, "text", "plain", {{"charset", "x"}}},
	{"text/plain junk; a=b", false, -1, "text", "plain", {{"a", "b"}}},
	{"text", false, -1, "text", "plain", {{NULL, NULL}}},
	{"/plain", false, -1, "text", "plain", {{NULL, NULL}}},
	{"", false, -1, "text", "plain", {{NULL, NULL}}},
	{"", true, -1, NULL, NULL, {{NULL, NULL}}},
};

/* Content-Type / Content-Disposition parsing, and every prefix without a crash. */
static void test_content_type(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct content_type ct;
		int r = content_type_parse(types[i].in, types[i].disposition, &ct);
		if (r != types[i].ret)
			fail_msg("case %zu: r=%d", i, r);
		if (types[i].type == NULL)
			assert_null(ct.type);
		else
			assert_string_equal(ct.type, types[i].type);
		if (types[i].subtype == NULL)
			assert_null(ct.subtype);
		else
			assert_string_equal(ct.subtype, types[i].subtype);
		size_t expected = 0;
		while (expected < 4 && types[i].params[expected][0] != NULL)
			expected++;
		assert_int_equal(ct.param_count, expected);
		for (size_t k = 0; k < expected; k++) {
			assert_string_equal(ct.params[k].name, types[i].params[k][0]);
			assert_string_equal(ct.params[k].value, types[i].params[k][1]);
			assert_string_equal(content_type_param(&ct, types[i].params[k][0]),
					    types[i].params[k][1]);
		}
		content_type_free(&ct);
		assert_null(ct.params);
		for (size_t n = 0; n < strlen(types[i].in); n++) {
			char *copy = strndup(types[i].in, n);
			content_type_parse(copy, types[i].disposition, &ct);
			content_type_free(&ct);
			free(copy);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_parse),
		cmocka_unit_test(test_header_scanner_bytewise),
		cmocka_unit_test(test_header_prefixes),
		cmocka_unit_test(test_header_field_limit),
		cmocka_unit_test(test_header_get),
		cmocka_unit_test(test_decode_words),
		cmocka_unit_test(test_encode_words),
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_format_date),
		cmocka_unit_test(test_content_type),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
