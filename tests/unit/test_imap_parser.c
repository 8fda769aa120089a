/* test_imap_parser.c: the IMAP command parser, each case run whole and again
 * one byte at a time; plus imapd's sequence sets (linked in from imapd/) and
 * the modified UTF-7 of mailbox names as imapd uses it (common/mutf7.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "imap_parser.h"
#include "imap_seqset.h"
#include "mutf7.h"

/* Writes the parsed arguments in a canonical form: atoms bare, quoted strings
 * in quotes, literals as {n}data, external literals as {n*}, lists in parens. */
static void dump_args(buf_t *out, const struct imap_arg *args, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct imap_arg *a = &args[i];
		if (i > 0)
			buf_append_char(out, ' ');
		switch (a->type) {
		case IMAP_ARG_ATOM:
			buf_append(out, a->data, a->len);
			break;
		case IMAP_ARG_QUOTED:
			buf_append_char(out, '"');
			buf_append(out, a->data, a->len);
			buf_append_char(out, '"');
			break;
		case IMAP_ARG_LITERAL:
			buf_printf(out, "{%zu}", a->len);
			buf_append(out, a->data, a->len);
			break;
		case IMAP_ARG_LITERAL_EXTERNAL:
			buf_printf(out, "{%zu*}", a->len);
			break;
		case IMAP_ARG_LIST:
			buf_append_char(out, '(');
			dump_args(out, a->children, a->count);
			buf_append_char(out, ')');
			break;
		}
	}
}

/* Parses input fed in pieces of `step` bytes (0 = whole); returns the result
 * and the dump (or "ERR:<code>"), plus the literals seen. */
static int parse_in_steps(const char *input, size_t len, size_t step, buf_t *out)
{
	imap_parser *p = imap_parser_new(NULL);
	size_t pos = 0;
	int result = IMAP_PARSE_MORE;
	while (pos < len) {
		size_t n = step == 0 ? len - pos : (len - pos < step ? len - pos : step);
		size_t used;
		result = imap_parser_feed(p, input + pos, n, &used);
		pos += used;
		if (result == IMAP_PARSE_LITERAL) {
			buf_printf(out, "[lit %llu %s]", (unsigned long long)imap_parser_literal_size(p),
				   imap_parser_literal_sync(p) ? "sync" : "plus");
			continue;
		}
		if (result != IMAP_PARSE_MORE)
			break;
	}
	if (result == IMAP_PARSE_DONE) {
		size_t count;
		const struct imap_arg *args = imap_parser_args(p, &count);
		dump_args(out, args, count);
		if (pos != len)
			buf_printf(out, "[rest %zu]", len - pos);
	} else if (result == IMAP_PARSE_ERROR) {
		buf_printf(out, "ERR:%d", (int)imap_parser_error_code(p));
	} else {
		buf_append_str(out, "MORE");
	}
	imap_parser_free(&p);
	assert_null(p);
	return result;
}

struct parse_case {
	const char *input;
	const char *expected;
};

static const struct parse_case parse_cases[] = {
	{"a NOOP\r\n", "a NOOP"},
	{"a NOOP\n", "a NOOP"},
	{"a1 LOGIN alice \"pass word\"\r\n", "a1 LOGIN alice \"pass word\""},
	{"a LOGIN \"a\\\"b\\\\c\" x\r\n", "a LOGIN \"a\"b\\c\" x"},
	{"a LOGIN {5}\r\nalice {3+}\r\nx y\r\n", "[lit 5 sync][lit 3 plus]a LOGIN {5}alice {3}x y"},
	{"a SELECT {0}\r\n\r\n", "[lit 0 sync]a SELECT {0}"},
	{"a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100>)\r\n",
	 "a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100>)"},
	{"a FETCH 1 BODY[]\r\n", "a FETCH 1 BODY[]"},
	{"a STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)\r\n", "a STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)"},
	{"a LIST \"\" %\r\n", "a LIST \"\" %"},
	{"a LIST \"\" *\r\n", "a LIST \"\" *"},
	{"a SEARCH (OR (FROM x) (NOT SEEN)) ALL\r\n", "a SEARCH (OR (FROM x) (NOT SEEN)) ALL"},
	{"a X ()\r\n", "a X ()"},
	{"a X (())\r\n", "a X (())"},
	{"* OK [UIDVALIDITY 3] Ready\r\n", "* OK [UIDVALIDITY 3] Ready"},
	{"\r\n", ""},
	{"a  NOOP\r\n", "a NOOP"},
	{"a NOOP\r\nb NOOP\r\n", "a NOOP[rest 8]"},
	{"a X \"\"\r\n", "a X \"\""},
	/* errors */
	{"a X (\r\n", "ERR:1"},
	{"a X )\r\n", "ERR:1"},
	{"a X \"abc\r\n", "ERR:1"},
	{"a X \"a\\b\"\r\n", "ERR:1"},
	{"a X a\rb\r\n", "ERR:1"},
	{"a X {12x}\r\n", "ERR:1"},
	{"a X {}\r\n", "ERR:1"},
	{"a X {5} \r\n", "ERR:1"},
	{"a X {99999999999999999999}\r\n", "ERR:2"},
	{"a X {70000}\r\n", "ERR:2"},
	{"a X (a)b\r\n", "ERR:1"},
	{"a X \"a\"b\r\n", "ERR:1"},
	{"a X BODY[HEADER\r\n", "ERR:1"},
	{"a X a\x01\r\n", "ERR:1"},
	{"a X \xc3\xa9\r\n", "ERR:1"},
};

/* Runs every parse case whole, in 1-byte, 2-byte and 3-byte steps. */
static void test_parse_cases(void **state)
{
	(void)state;
	static const size_t steps[] = {0, 1, 2, 3};
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			buf_t out = BUF_INIT;
			parse_in_steps(parse_cases[i].input, strlen(parse_cases[i].input), steps[s],
				       &out);
			if (strcmp(buf_cstr(&out), parse_cases[i].expected) != 0)
				fail_msg("case %zu step %zu: %s -> got '%s', want '%s'", i, steps[s],
					 parse_cases[i].input, buf_cstr(&out), parse_cases[i].expected);
			buf_free(&out);
		}
	}
}

/* NUL inside a literal is kept; NUL in a quoted string is an error. */
static void test_parse_nul(void **state)
{
	(void)state;
	static const char lit[] = "a X {3}\r\na\0b\r\n";
	buf_t out = BUF_INIT;
	assert_int_equal(parse_in_steps(lit, sizeof(lit) - 1, 1, &out), IMAP_PARSE_DONE);
	assert_int_equal(out.len, strlen("[lit 3 sync]a X {3}") + 3);
	buf_free(&out);
	static const char quoted[] = "a X \"a\0b\"\r\n";
	assert_int_equal(parse_in_steps(quoted, sizeof(quoted) - 1, 0, &out), IMAP_PARSE_ERROR);
	buf_free(&out);
}

/* Nesting deeper than the limit fails without growing anything. */
static void test_parse_depth_and_args(void **state)
{
	(void)state;
	buf_t in = BUF_INIT;
	buf_append_str(&in, "a SEARCH ");
	for (int i = 0; i < 100; i++)
		buf_append_char(&in, '(');
	buf_append_str(&in, "ALL");
	for (int i = 0; i < 100; i++)
		buf_append_char(&in, ')');
	buf_append_str(&in, "\r\n");
	buf_t out = BUF_INIT;
	assert_int_equal(parse_in_steps(in.data, in.len, 0, &out), IMAP_PARSE_ERROR);
	assert_string_equal(buf_cstr(&out), "ERR:4");
	buf_reset(&out);
	buf_reset(&in);
	buf_append_str(&in, "a X");
	for (int i = 0; i < 20000; i++)
		buf_append_str(&in, " a");
	buf_append_str(&in, "\r\n");
	assert_int_equal(parse_in_steps(in.data, in.len, 0, &out), IMAP_PARSE_ERROR);
	assert_string_equal(buf_cstr(&out), "ERR:5");
	buf_reset(&out);
	buf_reset(&in);
	buf_append_str(&in, "a X ");
	for (int i = 0; i < 70000; i++)
		buf_append_char(&in, 'x');
	buf_append_str(&in, "\r\n");
	assert_int_equal(parse_in_steps(in.data, in.len, 0, &out), IMAP_PARSE_ERROR);
	assert_string_equal(buf_cstr(&out), "ERR:3");
	buf_free(&out);
	buf_free(&in);
}

/* The caller can take a literal's bytes itself (APPEND streaming). */
static void test_parse_external_literal(void **state)
{
	(void)state;
	imap_parser *p = imap_parser_new(NULL);
	const char *line1 = "a APPEND INBOX (\\Seen) {5}\r\n";
	size_t used;
	assert_int_equal(imap_parser_feed(p, line1, strlen(line1), &used), IMAP_PARSE_LITERAL);
	assert_int_equal(used, strlen(line1));
	assert_int_equal(imap_parser_depth(p), 0);
	imap_parser_literal_external(p);
	assert_int_equal(imap_parser_feed(p, "\r\n", 2, &used), IMAP_PARSE_DONE);
	size_t count;
	const struct imap_arg *args = imap_parser_args(p, &count);
	buf_t out = BUF_INIT;
	dump_args(&out, args, count);
	assert_string_equal(buf_cstr(&out), "a APPEND INBOX (\\Seen) {5*}");
	assert_string_equal(imap_parser_tag(p), "a");
	imap_parser_reset(p);
	assert_int_equal(imap_parser_feed(p, "b NOOP\r\n", 8, &used), IMAP_PARSE_DONE);
	assert_string_equal(imap_parser_tag(p), "b");
	buf_free(&out);
	imap_parser_free(&p);
}

/* A literal larger than the buffered limit is refused before its data. */
static void test_parse_literal_accept(void **state)
{
	(void)state;
	struct imap_parser_limits limits = {1024, 1000000, 100, 8, 100};
	imap_parser *p = imap_parser_new(&limits);
	size_t used;
	assert_int_equal(imap_parser_feed(p, "a X {500}\r\n", 11, &used), IMAP_PARSE_LITERAL);
	assert_int_equal(imap_parser_literal_accept(p), -1);
	assert_int_equal(imap_parser_error_code(p), IMAP_PERR_TOOBIG);
	imap_parser_reset(p);
	assert_int_equal(imap_parser_feed(p, "a X {2000000}\r\n", 15, &used), IMAP_PARSE_ERROR);
	assert_int_equal(imap_parser_error_code(p), IMAP_PERR_TOOBIG);
	imap_parser_free(&p);
}

/* Quoting for output. */
static void test_append_string(void **state)
{
	(void)state;
	buf_t out = BUF_INIT;
	imap_append_string(&out, "a\"b", 3);
	buf_append_char(&out, ' ');
	imap_append_string(&out, NULL, 0);
	buf_append_char(&out, ' ');
	imap_append_string(&out, "x\r\ny", 4);
	assert_string_equal(buf_cstr(&out), "\"a\\\"b\" NIL {4}\r\nx\r\ny");
	buf_free(&out);
}

/* Sequence sets: parsing, limits and membership. */
static void test_seqset(void **state)
{
	(void)state;
	struct imap_seqset set;
	char *err = NULL;
	assert_int_equal(imap_seqset_parse("1,3:5,9:*", &set, &err), 0);
	assert_true(imap_seqset_contains(&set, 1, 20));
	assert_false(imap_seqset_contains(&set, 2, 20));
	assert_true(imap_seqset_contains(&set, 4, 20));
	assert_true(imap_seqset_contains(&set, 20, 20));
	assert_false(imap_seqset_contains(&set, 8, 20));
	imap_seqset_free(&set);
	assert_int_equal(imap_seqset_parse("5:2", &set, &err), 0);
	assert_true(imap_seqset_contains(&set, 3, 10));
	imap_seqset_free(&set);
	assert_int_equal(imap_seqset_parse("*:4", &set, &err), 0);
	assert_true(imap_seqset_contains(&set, 7, 7));
	assert_false(imap_seqset_contains(&set, 3, 7));
	imap_seqset_free(&set);
	static const char *bad[] = {"", "0", "1,", ",1", "1:", "a", "1:0", "4294967296", "1::2", "1:2:3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(imap_seqset_parse(bad[i], &set, &err), -1);
		assert_non_null(err);
		free(err);
		err = NULL;
	}
	buf_t big = BUF_INIT;
	for (int i = 0; i < IMAP_SEQSET_MAX_RANGES + 1; i++)
		buf_printf(&big, "%s%d", i > 0 ? "," : "", i * 2 + 1);
	assert_int_equal(imap_seqset_parse(big.data, &set, &err), -1);
	free(err);
	buf_free(&big);
}

/* Modified UTF-7 (RFC 3501 5.1.3) both ways, and the invalid forms imapd refuses. */
static void test_utf7(void **state)
{
	(void)state;
	static const struct { const char *utf8, *utf7; } cases[] = {
		{"INBOX", "INBOX"},
		{"a&b", "a&-b"},
		{"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		 "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"Entw\xc3\xbc" "rfe", "Entw&APw-rfe"},
		{"\xf0\x9f\x98\x80", "&2D3eAA-"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *enc = mutf7_encode(cases[i].utf8);
		assert_string_equal(enc, cases[i].utf7);
		free(enc);
		char *dec = NULL;
		assert_int_equal(mutf7_decode(cases[i].utf7, &dec), 0);
		assert_string_equal(dec, cases[i].utf8);
		free(dec);
	}
	static const char *bad[] = {"&", "&U,BTFw", "&AGE-", "&-&-x\x80", "&ZeVnLIqe", "&2D0-"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *dec = NULL;
		if (mutf7_decode(bad[i], &dec) == 0)
			fail_msg("accepted invalid modified UTF-7 '%s'", bad[i]);
		assert_null(dec);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_cases),
		cmocka_unit_test(test_parse_nul),
		cmocka_unit_test(test_parse_depth_and_args),
		cmocka_unit_test(test_parse_external_literal),
		cmocka_unit_test(test_parse_literal_accept),
		cmocka_unit_test(test_append_string),
		cmocka_unit_test(test_seqset),
		cmocka_unit_test(test_utf7),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
