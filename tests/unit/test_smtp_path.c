/* test_smtp_path.c: MAIL FROM / RCPT TO paths (RFC 5321 4.1.2), ESMTP
 * parameters and xtext (RFC 3461 4); every input also cut at every prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_path.h"

#define F_NULL SMTP_PATH_ALLOW_NULL
#define F_UTF8 SMTP_PATH_ALLOW_UTF8
#define F_PM SMTP_PATH_ALLOW_POSTMASTER
#define F_SP SMTP_PATH_LENIENT_SPACE

static const struct {
	const char *text;
	unsigned flags;
	const char *address, *local, *domain; /* NULL address: refused */
	const char *reason;
	size_t params;
} cases[] = {
	{"<alice@example.test>", 0, "alice@example.test", "alice", "example.test", NULL, 0},
	{"<first.last+tag@sub.example.test>", 0, "first.last+tag@sub.example.test",
	 "first.last+tag", "sub.example.test", NULL, 0},
	{"<>", F_NULL, "", "", "", NULL, 0},
	{"<>", 0, NULL, NULL, NULL, "the null path <> is not allowed here", 0},
	{"<Postmaster>", F_PM, "Postmaster", "Postmaster", "", NULL, 0},
	{"<postmaster>", 0, NULL, NULL, NULL, "the address has no '@' and domain", 0},
	{"alice@example.test", 0, NULL, NULL, NULL, "the address must be enclosed in <>", 0},
	{"<alice@example.test", 0, NULL, NULL, NULL, "the address must be enclosed in <>", 0},
	{" <alice@example.test>", 0, NULL, NULL, NULL, "no space is allowed after the colon", 0},
	{" <alice@example.test>", F_SP, "alice@example.test", "alice", "example.test", NULL, 0},
	{"<@relay.test,@r2.test:alice@example.test>", 0, NULL, NULL, NULL,
	 "source routes are not accepted", 0},
	{"<alice%example.test@relay.test>", 0, NULL, NULL, NULL,
	 "'%' and '!' routing is not accepted", 0},
	{"<host!alice@relay.test>", 0, NULL, NULL, NULL, "'%' and '!' routing is not accepted", 0},
	{"<a`id`@example.test>", 0, NULL, NULL, NULL,
	 "shell metacharacters are not accepted in the local part", 0},
	{"<${run{x}}@example.test>", 0, NULL, NULL, NULL,
	 "shell metacharacters are not accepted in the local part", 0},
	{"<a;b@example.test>", 0, NULL, NULL, NULL, "invalid character in the local part", 0},
	{"<a\rb@example.test>", 0, NULL, NULL, NULL, "control characters are not accepted", 0},
	{"<a@example.test>\r\n", 0, NULL, NULL, NULL, "control characters are not accepted", 0},
	{"<\"john doe\"@example.test>", 0, "\"john doe\"@example.test", "\"john doe\"",
	 "example.test", NULL, 0},
	{"<\"a`b\"@example.test>", 0, "\"a`b\"@example.test", "\"a`b\"", "example.test", NULL, 0},
	{"<\"alice\"@example.test>", 0, "alice@example.test", "alice", "example.test", NULL, 0},
	{"<\"a>b\"@example.test>", 0, "\"a>b\"@example.test", "\"a>b\"", "example.test", NULL, 0},
	{"<\"unterminated@example.test>", 0, NULL, NULL, NULL,
	 "the address must be enclosed in <>", 0},
	{"<.alice@example.test>", 0, NULL, NULL, NULL,
	 "the local part may not begin or end with a dot", 0},
	{"<a..b@example.test>", 0, NULL, NULL, NULL,
	 "the local part may not have two dots in a row", 0},
	{"<@example.test>", 0, NULL, NULL, NULL, "source routes are not accepted", 0},
	{"<alice@>", 0, NULL, NULL, NULL, "the domain is empty", 0},
	{"<alice@-bad.test>", 0, NULL, NULL, NULL, "a domain label may not begin with '-'", 0},
	{"<alice@bad-.test>", 0, NULL, NULL, NULL, "a domain label may not end with '-'", 0},
	{"<alice@a..test>", 0, NULL, NULL, NULL, "empty label in the domain", 0},
	{"<alice@exa_mple.test>", 0, NULL, NULL, NULL, "invalid character in the domain", 0},
	{"<alice@[192.0.2.1]>", 0, "alice@[192.0.2.1]", "alice", "[192.0.2.1]", NULL, 0},
	{"<alice@[IPv6:2001:db8::1]>", 0, "alice@[IPv6:2001:db8::1]", "alice",
	 "[IPv6:2001:db8::1]", NULL, 0},
	{"<alice@[192.0.2.300]>", 0, NULL, NULL, NULL, "invalid IPv4 address literal", 0},
	{"<alice@[IPv6:zz]>", 0, NULL, NULL, NULL, "invalid IPv6 address literal", 0},
	{"<alice@[x-tag:abc]>", 0, "alice@[x-tag:abc]", "alice", "[x-tag:abc]", NULL, 0},
	{"<j\xc3\xb6rg@b\xc3\xbc" "cher.test>", 0, NULL, NULL, NULL,
	 "non-ASCII address requires SMTPUTF8", 0},
	{"<j\xc3\xb6rg@b\xc3\xbc" "cher.test>", F_UTF8, "j\xc3\xb6rg@b\xc3\xbc" "cher.test",
	 "j\xc3\xb6rg", "b\xc3\xbc" "cher.test", NULL, 0},
	{"<j\xc3rg@example.test>", F_UTF8, NULL, NULL, NULL, "invalid UTF-8 in the address", 0},
	{"<a@b.test> SIZE=1000 BODY=8BITMIME", 0, "a@b.test", "a", "b.test", NULL, 2},
	{"<a@b.test>  SMTPUTF8  RET=HDRS ENVID=QQ314159", F_NULL, "a@b.test", "a", "b.test",
	 NULL, 3},
	{"<a@b.test>SIZE=1", 0, NULL, NULL, NULL, "unexpected text after the address", 0},
	{"<a@b.test> SIZE=", 0, NULL, NULL, NULL, "empty parameter value", 0},
	{"<a@b.test> =1", 0, NULL, NULL, NULL, "empty parameter keyword", 0},
	{"<a@b.test> -X=1", 0, NULL, NULL, NULL, "invalid parameter keyword", 0},
	{"<a@b.test> X=a=b", 0, NULL, NULL, NULL, "'=' is not allowed in a parameter value", 0},
	{"<a@b.test> SIZE=1 size=2", 0, NULL, NULL, NULL, "duplicate parameter", 0},
	{"<a@b.test> A B C D E F G H I J K L M N O P Q", 0, NULL, NULL, NULL,
	 "too many parameters", 0},
	{"<a@b.test> ORCPT=rfc822;\xc3\xa9", 0, NULL, NULL, NULL,
	 "non-ASCII parameter value requires SMTPUTF8", 0},
};

/* Each case: the exact result or the exact reason. */
static void test_path_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_path p;
		const char *why = NULL;
		int r = smtp_path_parse(cases[i].text, strlen(cases[i].text), cases[i].flags, &p, &why);
		if (cases[i].address == NULL) {
			if (r != -1 || why == NULL || strcmp(why, cases[i].reason) != 0)
				fail_msg("case %zu (%s): r=%d why=%s", i, cases[i].text, r,
					 why != NULL ? why : "(none)");
			assert_null(p.address);
			continue;
		}
		if (r != 0)
			fail_msg("case %zu (%s): refused: %s", i, cases[i].text, why);
		assert_string_equal(p.address, cases[i].address);
		assert_string_equal(p.local, cases[i].local);
		assert_string_equal(p.domain, cases[i].domain);
		assert_int_equal(p.param_count, cases[i].params);
		assert_int_equal(p.is_null, cases[i].address[0] == '\0');
		smtp_path_free(&p);
		assert_null(p.address);
	}
}

/* Length limits: local part 64, domain 255, path 256 octets. */
static void test_path_limits(void **state)
{
	(void)state;
	char text[600];
	struct smtp_path p;
	const char *why;
	memset(text, 0, sizeof(text));
	text[0] = '<';
	memset(text + 1, 'a', 64);
	strcpy(text + 65, "@example.test>");
	assert_int_equal(smtp_path_parse(text, strlen(text), 0, &p, &why), 0);
	smtp_path_free(&p);
	memset(text + 1, 'a', 65);
	strcpy(text + 66, "@example.test>");
	assert_int_equal(smtp_path_parse(text, strlen(text), 0, &p, &why), -1);
	assert_string_equal(why, "the local part is longer than 64 octets");
	/* A 64-octet label is too long; so is a path over 256 octets. */
	strcpy(text, "<a@");
	memset(text + 3, 'b', 64);
	strcpy(text + 67, ".test>");
	assert_int_equal(smtp_path_parse(text, strlen(text), 0, &p, &why), -1);
	assert_string_equal(why, "a domain label is longer than 63 octets");
	strcpy(text, "<a@");
	size_t n = 3;
	for (int i = 0; i < 5; i++) {
		memset(text + n, 'c', 60);
		n += 60;
		text[n++] = '.';
	}
	strcpy(text + n, "test>");
	assert_int_equal(smtp_path_parse(text, strlen(text), 0, &p, &why), -1);
	assert_string_equal(why, "the path is longer than 256 octets");
}

/* Parameters keep keyword (upper-cased) and value; lookups are case-insensitive. */
static void test_path_params(void **state)
{
	(void)state;
	const char *text = "<a@b.test> size=12345 BODY=8BITMIME SMTPUTF8 NOTIFY=SUCCESS,FAILURE "
			   "ORCPT=rfc822;bob+2Bx@b.test AUTH=<> RET=FULL";
	struct smtp_path p;
	const char *why;
	bool present;
	assert_int_equal(smtp_path_parse(text, strlen(text), 0, &p, &why), 0);
	assert_int_equal(p.param_count, 7);
	assert_string_equal(p.params[0].keyword, "SIZE");
	assert_string_equal(smtp_path_param(&p, "Size", &present), "12345");
	assert_true(present);
	assert_string_equal(smtp_path_param(&p, "BODY", NULL), "8BITMIME");
	assert_null(smtp_path_param(&p, "SMTPUTF8", &present));
	assert_true(present);
	assert_null(smtp_path_param(&p, "ENVID", &present));
	assert_false(present);
	assert_string_equal(smtp_path_param(&p, "NOTIFY", NULL), "SUCCESS,FAILURE");
	assert_string_equal(smtp_path_param(&p, "ORCPT", NULL), "rfc822;bob+2Bx@b.test");
	assert_string_equal(smtp_path_param(&p, "AUTH", NULL), "<>");
	assert_string_equal(smtp_path_param(&p, "ret", NULL), "FULL");
	smtp_path_free(&p);
}

/* Every prefix of every case parses or is refused with a reason, never crashes. */
static void test_path_prefixes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].text);
		for (size_t n = 0; n <= len; n++) {
			char *copy = malloc(n + 1);
			memcpy(copy, cases[i].text, n);
			struct smtp_path p;
			const char *why = NULL;
			if (smtp_path_parse(copy, n, cases[i].flags, &p, &why) == 0)
				smtp_path_free(&p);
			else
				assert_non_null(why);
			free(copy);
		}
	}
}

/* xtext (RFC 3461 4): the examples and round trips. */
static void test_xtext(void **state)
{
	(void)state;
	static const struct { const char *plain, *xtext; } cases_x[] = {
		{"rfc822;bob+x@b.test", "rfc822;bob+2Bx@b.test"},
		{"a=b c", "a+3Db+20c"},
		{"plain", "plain"},
		{"", ""},
	};
	for (size_t i = 0; i < sizeof(cases_x) / sizeof(cases_x[0]); i++) {
		char *e = xtext_encode(cases_x[i].plain);
		assert_string_equal(e, cases_x[i].xtext);
		free(e);
		char *d;
		assert_int_equal(xtext_decode(cases_x[i].xtext, &d), 0);
		assert_string_equal(d, cases_x[i].plain);
		free(d);
	}
	static const char *const bad[] = {"a+2", "a+2b", "a+ZZ", "a=b", "a b", "+00", "+"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *d = (char *)1;
		assert_int_equal(xtext_decode(bad[i], &d), -1);
		assert_null(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_cases),
		cmocka_unit_test(test_path_limits),
		cmocka_unit_test(test_path_params),
		cmocka_unit_test(test_path_prefixes),
		cmocka_unit_test(test_xtext),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
