/* test_sieve.c: the Sieve parser (common/sieve.c) and interpreter
 * (mda/sieve_run.c, compiled in here since it is pure), table-driven: scripts
 * that parse, scripts refused with their line and column, every test and
 * action run against one message, and the match types. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "header.h"
#include "sieve.h"

#include "../../mda/sieve_run.c"

/* Scripts that must parse. */
static const char *const good_scripts[] = {
	"",
	"keep;",
	"# comment\nkeep; /* bracketed\ncomment */ stop;",
	"require \"fileinto\";\nfileinto \"Lists\";",
	"require [\"fileinto\", \"envelope\", \"vacation\", \"mailbox\", \"subaddress\"];",
	"require [\"comparator-i;octet\"];",
	"if true { keep; } elsif false { discard; } else { stop; }",
	"if header :contains \"Subject\" \"x\" { discard; }",
	"if header :comparator \"i;octet\" :is \"Subject\" \"X\" { discard; }",
	"if address :domain :is [\"From\",\"To\"] \"example.test\" { keep; }",
	"require \"envelope\"; if envelope :localpart :is \"from\" \"alice\" { keep; }",
	"require [\"subaddress\", \"envelope\"]; if envelope :detail \"to\" \"lists\" { keep; }",
	"if exists [\"List-Id\", \"From\"] { keep; }",
	"if size :over 100K { discard; } if size :under 1M { keep; }",
	"if not anyof (true, allof (false, true)) { keep; }",
	"redirect \"carol@example.test\";",
	("require \"vacation\"; vacation :days 3 :subject \"Away\" :from \"bob@example.test\" "
	 "  :addresses [\"b@example.test\"] :mime :handle \"h\" \"I am away\";"),
	"require \"vacation\";\nvacation text:\nI am away.\n..and this line started with a dot\n.\n;",
	"require \"mailbox\"; require \"fileinto\"; fileinto :create \"A/B\";",
	"IF TRUE { KEEP; }",
	"if header :matches \"Subject\" \"*\\\\*\" { keep; }",
};

static void test_parse_good(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good_scripts) / sizeof(good_scripts[0]); i++) {
		struct sieve_script *script = NULL;
		char *err = NULL;
		int ret = sieve_parse(good_scripts[i], strlen(good_scripts[i]), &script, &err);
		if (ret != 0)
			fail_msg("script %zu refused: %s", i, err);
		assert_non_null(script);
		sieve_script_free(&script);
		assert_null(script);
	}
}

/* Scripts that must be refused, with the exact start of the error. */
static const struct {
	const char *script;
	const char *error;
} bad_scripts[] = {
	{"keep", "line 1, column 5: expected ';' after keep"},
	{"kep;", "line 1, column 1: unknown command 'kep'"},
	{"keep;\n  fileinto \"x\";", "line 2, column 3: fileinto needs require \"fileinto\""},
	{"require \"imap4flags\";", "line 1, column 9: unsupported extension \"imap4flags\""},
	{"keep;\nrequire \"fileinto\";", "line 2, column 1: require must come before"},
	{"if true { keep;", "line 1, column 16: missing '}'"},
	{"}", "line 1, column 1: unexpected '}'"},
	{"if header :is \"a\" { keep; }", "line 1, column 4: header: expected 2 arguments"},
	{"if header :bogus \"a\" \"b\" { keep; }", "line 1, column 11: header: unknown tag ':bogus'"},
	{"if header :is :contains \"a\" \"b\" {}", "line 1, column 15: header: more than one tag"},
	{"if header :comparator \"i;unicode\" \"a\" \"b\" {}",
	 "line 1, column 23: comparator \"i;unicode\" is not supported"},
	{"if size 100 { keep; }", "line 1, column 4: size needs :over or :under"},
	{"if address :user \"to\" \"x\" {}", "line 1, column 12: user needs require \"subaddress\""},
	{"if envelope \"from\" \"x\" {}", "line 1, column 4: envelope needs require \"envelope\""},
	{"require \"envelope\";\nif envelope \"cc\" \"x\" {}",
	 "line 2, column 13: envelope: unknown envelope part \"cc\""},
	{"elsif true { keep; }", "line 1, column 1: elsif without a preceding if"},
	{"if true {} else {} else {}", "line 1, column 20: else without a preceding if"},
	{"if true keep;", "line 1, column 9: unknown test 'keep'"},
	{"if true;", "line 1, column 8: expected '{' after if"},
	{"if { keep; }", "line 1, column 1: if needs one test"},
	{"if not (true, false) {}", "line 1, column 4: not needs one test"},
	{"if anyof true {}", "line 1, column 4: anyof needs a test list"},
	{"if bogus {}", "line 1, column 4: unknown test 'bogus'"},
	{"redirect \"not an address\";", "line 1, column 10: redirect: invalid address"},
	{"redirect [\"a@b.test\"];", "line 1, column 10: redirect: expected one string"},
	{"require \"fileinto\"; fileinto :copy \"x\";", "line 1, column 30: fileinto: unknown tag"},
	{"require \"fileinto\"; fileinto :create \"x\";",
	 "line 1, column 30: :create needs require \"mailbox\""},
	{"keep \"x\";", "line 1, column 6: keep: too many arguments"},
	{"keep; \"unterminated", "line 1, column 7: unterminated string"},
	{"/* open", "line 1, column 1: unterminated comment"},
	{"require \"vacation\"; vacation text:\nno end\n", "line 1, column 30: multi-line string"},
	{"if size :over 99999999999999999999 {}", "line 1, column 15: number too large"},
	{"keep; @", "line 1, column 7: unexpected character '@'"},
	{"keep true;", "line 1, column 6: keep takes no test"},
	{"require \"vacation\"; vacation :days \"x\" \"r\";", "line 1, column 36: vacation: :days needs"},
};

static void test_parse_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_scripts) / sizeof(bad_scripts[0]); i++) {
		struct sieve_script *script = NULL;
		char *err = NULL;
		int ret = sieve_parse(bad_scripts[i].script, strlen(bad_scripts[i].script), &script,
				      &err);
		if (ret == 0)
			fail_msg("script %zu accepted: %s", i, bad_scripts[i].script);
		assert_null(script);
		assert_non_null(err);
		if (strncmp(err, bad_scripts[i].error, strlen(bad_scripts[i].error)) != 0)
			fail_msg("script %zu: got \"%s\", want \"%s...\"", i, err,
				 bad_scripts[i].error);
		free(err);
	}
}

/* Every prefix of every script either parses or fails cleanly (no crash, no leak). */
static void test_parse_prefixes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good_scripts) / sizeof(good_scripts[0]); i++) {
		size_t len = strlen(good_scripts[i]);
		for (size_t n = 0; n <= len; n++) {
			char *copy = xstrndup(good_scripts[i], n);
			struct sieve_script *script = NULL;
			char *err = NULL;
			if (sieve_parse(copy, n, &script, &err) == 0)
				sieve_script_free(&script);
			else
				free(err);
			free(copy);
		}
	}
}

static void test_limits(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	for (int i = 0; i < SIEVE_MAX_NESTING + 1; i++)
		buf_append_str(&b, "if true {");
	struct sieve_script *script = NULL;
	char *err = NULL;
	assert_int_equal(sieve_parse(b.data, b.len, &script, &err), -1);
	assert_non_null(strstr(err, "nested deeper"));
	free(err);
	buf_reset(&b);
	for (int i = 0; i < SIEVE_MAX_NESTING + 1; i++)
		buf_append_str(&b, "not ");
	buf_free(&b);
	char *big = xcalloc(SIEVE_MAX_SCRIPT_SIZE + 2, 1);
	memset(big, ' ', SIEVE_MAX_SCRIPT_SIZE + 1);
	err = NULL;
	assert_int_equal(sieve_parse(big, SIEVE_MAX_SCRIPT_SIZE + 1, &script, &err), -1);
	assert_non_null(strstr(err, "larger than"));
	free(err);
	free(big);
}

static void test_parse_tree(void **state)
{
	(void)state;
	const char *text = "require [\"fileinto\", \"vacation\"];\n"
			   "if header :matches \"Subject\" \"*x*\" { fileinto \"A\"; }\n"
			   "elsif size :over 2K { discard; }\n"
			   "else { vacation :days 200 \"away\"; }\n";
	struct sieve_script *script = NULL;
	char *err = NULL;
	assert_int_equal(sieve_parse(text, strlen(text), &script, &err), 0);
	assert_int_equal(script->extensions, SIEVE_EXT_FILEINTO | SIEVE_EXT_VACATION);
	assert_int_equal(script->top.count, 1);
	const struct sieve_command *c = &script->top.commands[0];
	assert_int_equal(c->kind, SIEVE_CMD_IF);
	assert_int_equal(c->line, 2);
	assert_int_equal(c->branch_count, 3);
	assert_int_equal(c->branches[0].test->kind, SIEVE_TEST_HEADER);
	assert_int_equal(c->branches[0].test->match, SIEVE_MATCH_MATCHES);
	assert_string_equal(c->branches[0].block.commands[0].argument, "A");
	assert_int_equal(c->branches[1].test->limit, 2048);
	assert_true(c->branches[1].test->over);
	assert_null(c->branches[2].test);
	assert_int_equal(c->branches[2].block.commands[0].days, SIEVE_VACATION_MAX_DAYS);
	sieve_script_free(&script);

	text = "require \"vacation\";\nvacation text:\nline one\n..two\n.\n;";
	assert_int_equal(sieve_parse(text, strlen(text), &script, &err), 0);
	assert_string_equal(script->top.commands[0].argument, "line one\r\n.two\r\n");
	sieve_script_free(&script);
}

/* ---- matching ---- */

static const struct {
	enum sieve_match_type match;
	enum sieve_comparator comparator;
	const char *value, *key;
	bool want;
} match_cases[] = {
	{SIEVE_MATCH_IS, SIEVE_COMPARATOR_ASCII_CASEMAP, "Hello", "hello", true},
	{SIEVE_MATCH_IS, SIEVE_COMPARATOR_OCTET, "Hello", "hello", false},
	{SIEVE_MATCH_IS, SIEVE_COMPARATOR_OCTET, "", "", true},
	{SIEVE_MATCH_CONTAINS, SIEVE_COMPARATOR_ASCII_CASEMAP, "Buy CHEAP now", "cheap", true},
	{SIEVE_MATCH_CONTAINS, SIEVE_COMPARATOR_ASCII_CASEMAP, "abc", "", true},
	{SIEVE_MATCH_CONTAINS, SIEVE_COMPARATOR_OCTET, "abc", "abcd", false},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "[list] hi", "[LIST]*", true},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "abc", "a?c", true},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "ac", "a?c", false},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "caf\xc3\xa9", "caf?", true},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_OCTET, "caf\xc3\xa9", "caf?", false},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "a*b", "a\\*b", true},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "axb", "a\\*b", false},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "xaxbxcx", "*a*b*c*", true},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "xaxbx", "*a*b*c*", false},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "", "*", true},
	{SIEVE_MATCH_MATCHES, SIEVE_COMPARATOR_ASCII_CASEMAP, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
	 "*a*a*a*a*a*a*a*a*a*c", false},
};

static void test_match(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		bool got = sieve_match(match_cases[i].match, match_cases[i].comparator,
				       match_cases[i].value, match_cases[i].key);
		if (got != match_cases[i].want)
			fail_msg("case %zu: \"%s\" vs \"%s\" gave %d", i, match_cases[i].value,
				 match_cases[i].key, got);
	}
}

/* ---- running ---- */

static const char test_message[] =
	"From: Alice Example <alice@example.test>\r\n"
	"To: bob+lists@example.test, Carol <carol@other.test>\r\n"
	"Subject: =?UTF-8?Q?Caf=C3=A9?= meeting  \r\n"
	"List-Id: <dev.lists.example.test>\r\n"
	"X-Spam-Flag: YES\r\n"
	"\r\n"
	"Hello.\r\n";

/* Runs script on the test message; returns a summary of the outcome such as
 * "fileinto:Lists(3) implicit" or "error". */
static char *run_script(const char *text, const char *envelope_from)
{
	struct sieve_script *script = NULL;
	char *err = NULL;
	if (sieve_parse(text, strlen(text), &script, &err) != 0)
		fail_msg("script refused: %s", err);
	struct header h;
	assert_int_equal(header_parse(test_message, sizeof(test_message) - 1, &h), 0);
	struct sieve_input in = {&h, envelope_from, "bob+lists@example.test",
				 sizeof(test_message) - 1};
	struct sieve_result r;
	buf_t out = BUF_INIT;
	if (sieve_run(script, &in, &r) < 0) {
		assert_non_null(r.error);
		buf_printf(&out, "error ");
	}
	for (size_t i = 0; i < r.count; i++) {
		const struct sieve_action *a = &r.actions[i];
		buf_append_str(&out, sieve_action_name(a->kind));
		if (a->folder != NULL)
			buf_printf(&out, ":%s%s", a->folder, a->create ? "+" : "");
		if (a->address != NULL)
			buf_printf(&out, ":%s", a->address);
		buf_printf(&out, "(%u) ", a->line);
	}
	if (r.implicit_keep)
		buf_append_str(&out, "implicit");
	while (out.len > 0 && out.data[out.len - 1] == ' ')
		out.data[--out.len] = '\0';
	sieve_result_free(&r);
	header_free(&h);
	sieve_script_free(&script);
	return buf_steal(&out);
}

#define F "require [\"fileinto\", \"envelope\", \"subaddress\", \"vacation\", \"mailbox\"];\n"

static const struct {
	const char *script;
	const char *envelope_from;
	const char *want;
} run_cases[] = {
	/* actions */
	{"", "a@b.test", "implicit"},
	{"keep;", "a@b.test", "keep(1)"},
	{"keep; keep;", "a@b.test", "keep(1)"},
	{"discard;", "a@b.test", "discard(1)"},
	{F "fileinto \"Lists\";", "a@b.test", "fileinto:Lists(2)"},
	{F "fileinto \"Lists\"; fileinto \"Lists\"; keep;", "a@b.test",
	 "fileinto:Lists(2) keep(2)"},
	{F "fileinto :create \"New/Sub\";", "a@b.test", "fileinto:New/Sub+(2)"},
	{F "fileinto \"inbox\";", "a@b.test", "keep(2)"},
	{"redirect \"carol@example.test\";", "a@b.test", "redirect:carol@example.test(1)"},
	{"redirect \"carol@example.test\"; keep;", "a@b.test",
	 "redirect:carol@example.test(1) keep(1)"},
	{F "vacation \"away\";", "a@b.test", "vacation(2) implicit"},
	{"stop; discard;", "a@b.test", "implicit"},
	{"if true { stop; } discard;", "a@b.test", "implicit"},
	/* tests */
	{"if true { discard; }", "a@b.test", "discard(1)"},
	{"if false { discard; }", "a@b.test", "implicit"},
	{"if not false { discard; }", "a@b.test", "discard(1)"},
	{"if anyof (false, true) { discard; }", "a@b.test", "discard(1)"},
	{"if anyof (false, false) { discard; }", "a@b.test", "implicit"},
	{"if allof (true, true) { discard; }", "a@b.test", "discard(1)"},
	{"if allof (true, false) { discard; }", "a@b.test", "implicit"},
	{"if header :is \"subject\" \"Caf\xc3\xa9 meeting\" { discard; }", "a@b.test",
	 "discard(1)"},
	{"if header :contains [\"X-Other\", \"X-Spam-Flag\"] \"yes\" { discard; }", "a@b.test",
	 "discard(1)"},
	{"if header :comparator \"i;octet\" :contains \"X-Spam-Flag\" \"yes\" { discard; }",
	 "a@b.test", "implicit"},
	{"if header :matches \"List-Id\" \"*.example.test>\" { discard; }", "a@b.test",
	 "discard(1)"},
	{"if header \"Subject\" \"Caf\xc3\xa9\" { discard; }", "a@b.test", "implicit"},
	{"if address :is \"from\" \"alice@example.test\" { discard; }", "a@b.test", "discard(1)"},
	{"if address :all :is \"from\" \"Alice Example\" { discard; }", "a@b.test", "implicit"},
	{"if address :localpart :is \"from\" \"alice\" { discard; }", "a@b.test", "discard(1)"},
	{"if address :domain :is \"to\" \"other.test\" { discard; }", "a@b.test", "discard(1)"},
	{F "if address :user :is \"to\" \"bob\" { discard; }", "a@b.test", "discard(2)"},
	{F "if address :detail :is \"to\" \"lists\" { discard; }", "a@b.test", "discard(2)"},
	{F "if address :detail :matches \"from\" \"*\" { discard; }", "a@b.test", "implicit"},
	{F "if envelope :is \"from\" \"a@b.test\" { discard; }", "a@b.test", "discard(2)"},
	{F "if envelope :domain :is \"from\" \"B.TEST\" { discard; }", "a@b.test", "discard(2)"},
	{F "if envelope :is \"from\" \"\" { discard; }", "", "discard(2)"},
	{F "if envelope :detail \"to\" \"lists\" { fileinto \"Lists\"; }", "a@b.test",
	 "fileinto:Lists(2)"},
	{F "if envelope :user \"to\" \"bob\" { discard; }", "a@b.test", "discard(2)"},
	{"if exists \"List-Id\" { discard; }", "a@b.test", "discard(1)"},
	{"if exists [\"List-Id\", \"X-Missing\"] { discard; }", "a@b.test", "implicit"},
	{"if size :over 100 { discard; }", "a@b.test", "discard(1)"},
	{"if size :under 100 { discard; }", "a@b.test", "implicit"},
	{"if size :under 1K { discard; }", "a@b.test", "discard(1)"},
	{"if false { keep; } elsif true { discard; } else { stop; }", "a@b.test", "discard(1)"},
	{"if false { keep; } elsif false { discard; } else { redirect \"x@y.test\"; }",
	 "a@b.test", "redirect:x@y.test(1)"},
	/* run-time errors fall back to the implicit keep */
	{F "fileinto \"a//b\";", "a@b.test", "error implicit"},
	{"redirect \"a@x.test\"; redirect \"b@x.test\"; redirect \"c@x.test\";"
	 " redirect \"d@x.test\"; redirect \"e@x.test\";",
	 "a@b.test", "error implicit"},
	{F "vacation \"a\"; vacation \"b\";", "a@b.test", "error implicit"},
};

static void test_run(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(run_cases) / sizeof(run_cases[0]); i++) {
		char *got = run_script(run_cases[i].script, run_cases[i].envelope_from);
		if (strcmp(got, run_cases[i].want) != 0)
			fail_msg("case %zu (%s): got \"%s\", want \"%s\"", i, run_cases[i].script,
				 got, run_cases[i].want);
		free(got);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),  cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_parse_prefixes), cmocka_unit_test(test_limits),
		cmocka_unit_test(test_parse_tree),  cmocka_unit_test(test_match),
		cmocka_unit_test(test_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
