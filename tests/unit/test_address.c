/* test_address.c: RFC 5322 address lists (the appendix A examples and the
 * obsolete and broken forms real mail has), formatting and addr-spec checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "address.h"

/* One expected item: name, local, domain, group, start, end ("" stands for NULL). */
struct expect {
	const char *name, *local, *domain, *group;
	bool start, end;
};

static const struct {
	const char *in;
	int ret;
	size_t count;
	struct expect items[4];
} lists[] = {
	/* A.1.1 */
	{"John Doe <jdoe@machine.example>", 0, 1, {{"John Doe", "jdoe", "machine.example", "", 0, 0}}},
	/* A.1.2 */
	{"\"Joe Q. Public\" <john.q.public@example.com>", 0, 1,
	 {{"Joe Q. Public", "john.q.public", "example.com", "", 0, 0}}},
	{"Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>", 0, 3,
	 {{"Mary Smith", "mary", "x.test", "", 0, 0},
	  {"", "jdoe", "example.org", "", 0, 0},
	  {"Who?", "one", "y.test", "", 0, 0}}},
	{"<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>", 0, 2,
	 {{"", "boss", "nil.test", "", 0, 0},
	  {"Giant; \"Big\" Box", "sysservices", "example.net", "", 0, 0}}},
	/* A.1.3 */
	{"A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;", 0, 3,
	 {{"Ed Jones", "c", "a.test", "A Group", 1, 0},
	  {"", "joe", "where.test", "", 0, 0},
	  {"John", "jdoe", "one.test", "", 0, 1}}},
	{"Undisclosed recipients:;", 0, 1, {{"", "", "", "Undisclosed recipients", 1, 1}}},
	/* A group whose ';' never comes is closed at the end, empty or not. */
	{"Team: a@x.test, b@y.test", 0, 2,
	 {{"", "a", "x.test", "Team", 1, 0}, {"", "b", "y.test", "", 0, 1}}},
	{"Nobody:", 0, 1, {{"", "", "", "Nobody", 1, 1}}},
	/* A.5 */
	{"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", 0, 1,
	 {{"Pete", "pete", "silly.test", "", 0, 0}}},
	{"A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n"
	 "         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of the group)",
	 0, 3,
	 {{"Chris Jones", "c", "public.example", "A Group", 1, 0},
	  {"", "joe", "example.org", "", 0, 0},
	  {"John", "jdoe", "one.test", "", 0, 1}}},
	{"(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;", 0, 1,
	 {{"", "", "", "Hidden recipients", 1, 1}}},
	/* A.6.1 obsolete phrase, A.6.2 route, A.6.3 CFWS in dot-atoms */
	{"Joe Q. Public <john.q.public@example.com>", 0, 1,
	 {{"Joe Q. Public", "john.q.public", "example.com", "", 0, 0}}},
	{"Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example", 0, 2,
	 {{"Mary Smith", "mary", "example.net", "", 0, 0}, {"", "jdoe", "test.example", "", 0, 0}}},
	{"John Doe <jdoe@machine(comment).  example>", 0, 1,
	 {{"John Doe", "jdoe", "machine.example", "", 0, 0}}},
	/* encoded words, quoted local parts, old-style comment names */
	{"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>", 0, 1,
	 {{"Keld J\xc3\xb8rn Simonsen", "keld", "dkuug.dk", "", 0, 0}}},
	{"\"=?UTF-8?Q?J=C3=B6rg?=\" <j@x.test>", 0, 1, {{"J\xc3\xb6rg", "j", "x.test", "", 0, 0}}},
	{"\"john doe\"@example.test", 0, 1, {{"", "john doe", "example.test", "", 0, 0}}},
	{"john@example.test (John Doe)", 0, 1, {{"John Doe", "john", "example.test", "", 0, 0}}},
	{"Bob <bob@[192.0.2.1]>", 0, 1, {{"Bob", "bob", "[192.0.2.1]", "", 0, 0}}},
	{"<>", 0, 1, {{"", "", "", "", 0, 0}}},
	/* broken: kept rather than dropped */
	{"alice", 0, 1, {{"", "alice", "", "", 0, 0}}},
	{"bob@example.test <bob@example.test>", 0, 1, {{"bob@example.test", "bob", "example.test", "", 0, 0}}},
	{"Broken <a@b> extra, c@d", 0, 2, {{"", "Broken <a@b> extra", "", "", 0, 0}, {"", "c", "d", "", 0, 0}}},
	{"Group: a@b", 0, 1, {{"", "a", "b", "Group", 1, 1}}},
	{"Unterminated <a@b", 0, 1, {{"Unterminated", "a", "b", "", 0, 0}}},
	{",,,", -1, 0, {{NULL, NULL, NULL, NULL, 0, 0}}},
	{"", 0, 0, {{NULL, NULL, NULL, NULL, 0, 0}}},
	{"  (just a comment) ", 0, 0, {{NULL, NULL, NULL, NULL, 0, 0}}},
};

/* Compares a string field against "" meaning NULL. */
static void check_field(size_t i, size_t k, const char *what, const char *got, const char *want)
{
	if (want[0] == '\0' && got == NULL)
		return;
	if (got == NULL || strcmp(got, want) != 0)
		fail_msg("case %zu item %zu %s: got [%s], expected [%s]", i, k, what,
			 got != NULL ? got : "(null)", want);
}

/* Each list: the exact items; and every prefix of it parses without a crash. */
static void test_address_lists(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		struct address_list l;
		int r = address_list_parse(lists[i].in, strlen(lists[i].in), &l);
		if (r != lists[i].ret || l.count != lists[i].count)
			fail_msg("case %zu: r=%d count=%zu", i, r, l.count);
		for (size_t k = 0; k < l.count; k++) {
			const struct mail_address *a = &l.items[k];
			const struct expect *e = &lists[i].items[k];
			check_field(i, k, "name", a->name, e->name);
			check_field(i, k, "local", a->local, e->local);
			check_field(i, k, "domain", a->domain, e->domain);
			check_field(i, k, "group", a->group, e->group);
			assert_int_equal(a->group_start, e->start);
			assert_int_equal(a->group_end, e->end);
		}
		address_list_free(&l);
		assert_null(l.items);
		for (size_t n = 0; n < strlen(lists[i].in); n++) {
			address_list_parse(lists[i].in, n, &l);
			address_list_free(&l);
		}
	}
}

/* name_raw keeps encoded words as written (IMAP ENVELOPE sends them so). */
static void test_address_name_raw(void **state)
{
	(void)state;
	const char *in = "=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>";
	struct address_list l;
	assert_int_equal(address_list_parse(in, strlen(in), &l), 0);
	assert_string_equal(l.items[0].name_raw, "=?ISO-8859-1?Q?Andr=E9?= Pirard");
	assert_string_equal(l.items[0].name, "Andr\xc3\xa9 Pirard");
	char *spec = mail_address_spec(&l.items[0]);
	assert_string_equal(spec, "PIRARD@vm1.ulg.ac.be");
	free(spec);
	address_list_free(&l);
}

/* mail_address_spec quotes a local part that is not a dot-atom. */
static void test_address_spec(void **state)
{
	(void)state;
	struct mail_address a = {NULL, NULL, "john doe", "example.test", NULL, false, false};
	char *s = mail_address_spec(&a);
	assert_string_equal(s, "\"john doe\"@example.test");
	free(s);
	struct mail_address b = {NULL, NULL, "a\"b", "x.test", NULL, false, false};
	s = mail_address_spec(&b);
	assert_string_equal(s, "\"a\\\"b\"@x.test");
	free(s);
	struct mail_address c = {NULL, NULL, "first.last", "x.test", NULL, false, false};
	s = mail_address_spec(&c);
	assert_string_equal(s, "first.last@x.test");
	free(s);
}

/* Formatting names: plain, quoted for specials, encoded for non-ASCII, no injection. */
static void test_address_format(void **state)
{
	(void)state;
	static const struct { const char *name, *spec, *out; } cases[] = {
		{"Alice Example", "alice@example.test", "Alice Example <alice@example.test>"},
		{NULL, "alice@example.test", "alice@example.test"},
		{"", "alice@example.test", "alice@example.test"},
		{"Doe, John", "j@x.test", "\"Doe, John\" <j@x.test>"},
		{"Say \"hi\"", "j@x.test", "\"Say \\\"hi\\\"\" <j@x.test>"},
		{"J\xc3\xb6rg", "j@x.test", "=?UTF-8?Q?J=C3=B6rg?= <j@x.test>"},
		{"Evil\r\nBcc: x@y", "j@x.test", "=?UTF-8?Q?Evil=20=20Bcc=3A_x=40y?= <j@x.test>"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = mail_address_format(cases[i].name, cases[i].spec);
		assert_string_equal(s, cases[i].out);
		assert_null(strchr(s, '\n'));
		free(s);
	}
}

/* address_spec_valid: what a user may type as an address. */
static void test_address_spec_valid(void **state)
{
	(void)state;
	static const struct { const char *spec; bool ok; } cases[] = {
		{"alice@example.test", true},
		{"first.last+tag@sub.example.test", true},
		{"j\xc3\xb6rg@b\xc3\xbc" "cher.test", true},
		{"\"john doe\"@example.test", true},
		{"alice", false},
		{"alice@", false},
		{"@example.test", false},
		{"a b@example.test", false},
		{"a..b@example.test", false},
		{"alice@example..test", false},
		{"<alice@example.test>", false},
		{"alice@example.test\n", false},
		{"a%b@example.test", false},
		{"", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (address_spec_valid(cases[i].spec) != cases[i].ok)
			fail_msg("case %zu (%s)", i, cases[i].spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_lists),
		cmocka_unit_test(test_address_name_raw),
		cmocka_unit_test(test_address_spec),
		cmocka_unit_test(test_address_format),
		cmocka_unit_test(test_address_spec_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
