/* test_imap_responses.c: the IMAP parser in response mode
 * (imap_parser_set_responses), as the mua reads a server: each case run whole
 * and again one byte at a time. The only grammar difference from commands is
 * that a list may directly follow a list (RFC 3501 body-type-mpart), so a
 * multipart BODYSTRUCTURE parses; in command mode the same bytes are an error. */
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

/* The arguments in a canonical form: atoms bare, strings quoted, literals {n}data, lists (..). */
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
			buf_printf(out, "\"%s\"", a->data);
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

/* Parses one response fed `step` bytes at a time (0 = whole): the result and
 * the dump, or "ERR" on an error. */
static int parse_response(const char *input, size_t step, bool responses, buf_t *out)
{
	imap_parser *p = imap_parser_new(NULL);
	imap_parser_set_responses(p, responses);
	size_t len = strlen(input), pos = 0;
	int result = IMAP_PARSE_MORE;
	while (pos < len && result != IMAP_PARSE_DONE && result != IMAP_PARSE_ERROR) {
		size_t n = step == 0 ? len - pos : (len - pos < step ? len - pos : step);
		size_t used = 0;
		result = imap_parser_feed(p, input + pos, n, &used);
		pos += used;
		if (result == IMAP_PARSE_LITERAL)
			assert_int_equal(imap_parser_literal_accept(p), 0);
	}
	if (result == IMAP_PARSE_DONE) {
		size_t count;
		const struct imap_arg *args = imap_parser_args(p, &count);
		dump_args(out, args, count);
	} else {
		buf_append_str(out, "ERR");
	}
	imap_parser_free(&p);
	return result;
}

struct response_case {
	const char *input;
	const char *expect; /* the dump in response mode */
	bool command_ok;    /* the same bytes also parse as a command */
};

static const struct response_case response_cases[] = {
	/* A multipart BODYSTRUCTURE: two parts back to back, then the subtype. */
	{"* 1 FETCH (UID 7 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
	 "\"7bit\" 12 1)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 100) "
	 "\"mixed\"))\r\n",
	 "* 1 FETCH (UID 7 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
	 "\"7bit\" 12 1) (\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 100) "
	 "\"mixed\"))", false},
	/* Nested multiparts: lists touching at two depths. */
	{"* 2 FETCH (BODYSTRUCTURE (((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)(\"text\" "
	 "\"html\" NIL NIL NIL \"7bit\" 1 1) \"alternative\")(\"image\" \"png\" NIL NIL NIL "
	 "\"base64\" 4) \"mixed\"))\r\n",
	 "* 2 FETCH (BODYSTRUCTURE (((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1) (\"text\" "
	 "\"html\" NIL NIL NIL \"7bit\" 1 1) \"alternative\") (\"image\" \"png\" NIL NIL NIL "
	 "\"base64\" 4) \"mixed\"))", false},
	/* A literal inside a FETCH response, and the bracketed section as one atom. */
	{"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: hi\r\n\r\n UID 9)\r\n",
	 "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {15}Subject: hi\r\n\r\n UID 9)", true},
	/* LIST with flags and a quoted delimiter; STATUS; SEARCH numbers. */
	{"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n",
	 "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"", true},
	{"* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 1)\r\n",
	 "* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 1)", true},
	{"* SEARCH 2 5 8\r\n", "* SEARCH 2 5 8", true},
	/* ENVELOPE with NIL fields and an address list. */
	{"* 4 FETCH (ENVELOPE (\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Hi\" ((\"Al\" NIL \"al\" "
	 "\"x.test\")) NIL NIL NIL NIL NIL NIL \"<id@x>\"))\r\n",
	 "* 4 FETCH (ENVELOPE (\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Hi\" ((\"Al\" NIL \"al\" "
	 "\"x.test\")) NIL NIL NIL NIL NIL NIL \"<id@x>\"))", true},
};

/* Every case parses the same whole and byte by byte; in command mode only
 * the cases without touching lists do. */
static void test_response_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(response_cases) / sizeof(response_cases[0]); i++) {
		const struct response_case *c = &response_cases[i];
		for (size_t step = 0; step <= 1; step++) {
			buf_t out = BUF_INIT;
			int r = parse_response(c->input, step, true, &out);
			if (r != IMAP_PARSE_DONE || strcmp(buf_cstr(&out), c->expect) != 0)
				fail_msg("case %zu step %zu: got %s", i, step, buf_cstr(&out));
			buf_free(&out);
			out = (buf_t)BUF_INIT;
			r = parse_response(c->input, step, false, &out);
			assert_int_equal(r == IMAP_PARSE_DONE, c->command_ok);
			buf_free(&out);
		}
	}
}

/* Response mode still refuses what no server may send. */
static void test_response_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"* 1 FETCH (UID 1\r\n",       /* unclosed list */
		"* 1 FETCH (UID 1))\r\n",     /* unbalanced ')' */
		"* 1 FETCH (UID 1)\"x\"\r\n", /* a string glued to a list */
		"* OK \"open\r\n",            /* unterminated quoted string */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (size_t step = 0; step <= 1; step++) {
			buf_t out = BUF_INIT;
			int r = parse_response(bad[i], step, true, &out);
			if (r != IMAP_PARSE_ERROR && r != IMAP_PARSE_MORE)
				fail_msg("bad case %zu step %zu parsed: %s", i, step, buf_cstr(&out));
			buf_free(&out);
		}
}

/* The mode survives a reset: the next response is read the same way. */
static void test_response_mode_after_reset(void **state)
{
	(void)state;
	imap_parser *p = imap_parser_new(NULL);
	imap_parser_set_responses(p, true);
	const char *first = "* 1 FETCH (BODYSTRUCTURE ((\"a\" \"b\")(\"c\" \"d\") \"mixed\"))\r\n";
	for (int round = 0; round < 2; round++) {
		size_t used = 0;
		assert_int_equal(imap_parser_feed(p, first, strlen(first), &used), IMAP_PARSE_DONE);
		assert_int_equal(used, strlen(first));
		size_t count;
		const struct imap_arg *args = imap_parser_args(p, &count);
		assert_int_equal(count, 4);
		assert_int_equal(args[3].type, IMAP_ARG_LIST);
		const struct imap_arg *bs = &args[3].children[1];
		assert_int_equal(bs->count, 3);
		assert_string_equal(imap_arg_string(&bs->children[2]), "mixed");
		imap_parser_reset(p);
	}
	imap_parser_set_responses(p, false);
	size_t used = 0;
	assert_int_equal(imap_parser_feed(p, first, strlen(first), &used), IMAP_PARSE_ERROR);
	imap_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_response_cases),
		cmocka_unit_test(test_response_errors),
		cmocka_unit_test(test_response_mode_after_reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
