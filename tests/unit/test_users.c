/* test_users.c: the user directory: domains, users, passwords, quotas,
 * aliases and their resolution, plus-details, permitted senders, Sieve scripts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "password.h"
#include "users.h"

static char test_dir[] = "/tmp/test_users.XXXXXX";

/* A fresh database per test in its own directory. */
static int setup_db(void **state)
{
	static int counter;
	char *dir = xasprintf("%s/%d", test_dir, counter++);
	char *cmd = xasprintf("mkdir -p '%s'", dir);
	int rc = system(cmd);
	free(cmd);
	if (rc != 0)
		return -1;
	userdb *db = NULL;
	char *err = NULL;
	if (userdb_open(dir, &db, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
		free(dir);
		return -1;
	}
	free(dir);
	*state = db;
	return 0;
}

static int teardown_db(void **state)
{
	userdb *db = *state;
	userdb_close(&db);
	return db == NULL ? 0 : -1;
}

static int setup_group(void **state)
{
	(void)state;
	return mkdtemp(test_dir) != NULL ? 0 : -1;
}

static int teardown_group(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", test_dir);
	int rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

/* Adds a user, failing the test on error. */
static void add_user(userdb *db, const char *address, const char *password)
{
	char *err = NULL;
	if (userdb_user_add(db, address, password, &err) < 0)
		fail_msg("cannot add %s: %s", address, err);
}

/* Counts a NULL-terminated vector. */
static size_t strv_len(char **v)
{
	size_t n = 0;
	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

/* True when v holds s. */
static bool strv_has(char **v, const char *s)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++) {
		if (strcmp(v[i], s) == 0)
			return true;
	}
	return false;
}

static void test_domains(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	assert_false(userdb_domain_is_local(db, "example.test"));
	assert_int_equal(userdb_domain_add(db, "Example.TEST", &err), 0);
	assert_true(userdb_domain_is_local(db, "example.test"));
	assert_true(userdb_domain_is_local(db, "EXAMPLE.test"));
	assert_int_equal(userdb_domain_add(db, "example.test", &err), -1);
	assert_string_equal(err, "domain example.test already exists");
	free(err);
	static const char *const bad[] = {"", ".a", "a.", "a..b", "a b", "a@b", "x;drop"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		assert_int_equal(userdb_domain_add(db, bad[i], &err), -1);
		char *want = xasprintf("invalid domain '%s'", bad[i]);
		assert_string_equal(err, want);
		free(want);
		free(err);
	}
	assert_int_equal(userdb_domain_add(db, "another.test", &err), 0);
	char **list = userdb_domain_list(db);
	assert_int_equal(strv_len(list), 2);
	assert_string_equal(list[0], "another.test");
	assert_string_equal(list[1], "example.test");
	userdb_strv_free(list);

	add_user(db, "alice@example.test", "pw");
	assert_int_equal(userdb_domain_del(db, "example.test", &err), -1);
	assert_string_equal(err, "domain example.test still has 1 user(s)");
	free(err);
	assert_int_equal(userdb_domain_del(db, "another.test", &err), 0);
	assert_int_equal(userdb_domain_del(db, "another.test", &err), -1);
	assert_string_equal(err, "no such domain another.test");
	free(err);
}

static void test_user_add_lookup(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	add_user(db, "Alice@Example.Test", "alice-pw");
	assert_true(userdb_domain_is_local(db, "example.test")); /* added with the user */

	struct user_info info;
	assert_int_equal(userdb_user_lookup(db, "alice@example.test", &info), 0);
	assert_string_equal(info.address, "alice@example.test");
	assert_string_equal(info.local, "alice");
	assert_string_equal(info.domain, "example.test");
	assert_null(info.detail);
	assert_int_equal(info.quota_bytes, 0);
	assert_int_equal(info.quota_messages, 0);
	assert_int_equal(strncmp(info.password_hash, "$y$", 3), 0);
	assert_true(password_verify(info.password_hash, "alice-pw"));
	assert_false(password_verify(info.password_hash, "wrong"));
	assert_int_equal(info.scram.iterations, SCRAM_DEFAULT_ITERATIONS);
	struct scram_keys keys;
	assert_int_equal(scram_keys_derive("alice-pw", info.scram.salt_b64, info.scram.iterations,
					   &keys),
			 0);
	assert_memory_equal(keys.stored_key, info.scram.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(keys.server_key, info.scram.server_key, SCRAM_KEY_LEN);
	user_info_free(&info);
	assert_null(info.address);

	/* Case-insensitive, bare name, plus-detail. */
	static const struct {
		const char *name;
		const char *detail;
	} found[] = {
		{"ALICE@EXAMPLE.TEST", NULL},
		{"alice", NULL},
		{"Alice", NULL},
		{"alice+lists@example.test", "lists"},
		{"alice+Lists@Example.test", "lists"},
		{"alice+@example.test", ""},
		{"alice+a+b@example.test", "a+b"},
		{"alice+x", "x"},
	};
	for (size_t i = 0; i < sizeof(found) / sizeof(found[0]); i++) {
		if (userdb_user_lookup(db, found[i].name, &info) < 0)
			fail_msg("lookup of '%s' failed", found[i].name);
		assert_string_equal(info.address, "alice@example.test");
		if (found[i].detail == NULL)
			assert_null(info.detail);
		else
			assert_string_equal(info.detail, found[i].detail);
		user_info_free(&info);
	}
	static const char *const missing[] = {"bob@example.test", "alice@other.test", "bob",
					      "+alice@example.test", "", "@example.test",
					      "alice@"};
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		if (userdb_user_lookup(db, missing[i], &info) == 0)
			fail_msg("lookup of '%s' succeeded", missing[i]);
	}

	/* A bare name shared by two domains is ambiguous. */
	add_user(db, "alice@other.test", "pw2");
	assert_int_equal(userdb_user_lookup(db, "alice", &info), -1);
	assert_int_equal(userdb_user_lookup(db, "alice@other.test", &info), 0);
	assert_true(password_verify(info.password_hash, "pw2"));
	user_info_free(&info);

	/* Refusals. */
	static const struct {
		const char *address;
		const char *error;
	} refused[] = {
		{"alice@example.test", "user alice@example.test already exists"},
		{"ALICE@example.test", "user alice@example.test already exists"},
		{"no-at-sign", "invalid address 'no-at-sign'"},
		{"a b@example.test", "invalid address 'a b@example.test'"},
		{"@example.test", "invalid address '@example.test'"},
		{"bob@", "invalid address 'bob@'"},
		{"bob@exa mple.test", "invalid address 'bob@exa mple.test'"},
		{"bob+x@example.test", "invalid address 'bob+x@example.test': '+' separates a "
				       "detail and cannot be part of a user name"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		err = NULL;
		assert_int_equal(userdb_user_add(db, refused[i].address, "pw", &err), -1);
		assert_string_equal(err, refused[i].error);
		free(err);
	}
}

static void test_user_del_passwd_quota_list(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	add_user(db, "carol@example.test", "c1");
	add_user(db, "bob@example.test", "b1");
	add_user(db, "alice@example.test", "a1");

	struct user_info info;
	assert_int_equal(userdb_user_passwd(db, "BOB@example.test", "b2", &err), 0);
	assert_int_equal(userdb_user_lookup(db, "bob@example.test", &info), 0);
	assert_false(password_verify(info.password_hash, "b1"));
	assert_true(password_verify(info.password_hash, "b2"));
	struct scram_keys keys;
	assert_int_equal(scram_keys_derive("b2", info.scram.salt_b64, info.scram.iterations, &keys),
			 0);
	assert_memory_equal(keys.stored_key, info.scram.stored_key, SCRAM_KEY_LEN);
	user_info_free(&info);
	assert_int_equal(userdb_user_passwd(db, "nobody@example.test", "x", &err), -1);
	assert_string_equal(err, "no such user nobody@example.test");
	free(err);

	assert_int_equal(userdb_user_set_quota(db, "bob@example.test", 1048576, 100, &err), 0);
	assert_int_equal(userdb_user_lookup(db, "bob", &info), 0);
	assert_int_equal(info.quota_bytes, 1048576);
	assert_int_equal(info.quota_messages, 100);
	user_info_free(&info);
	assert_int_equal(userdb_user_set_quota(db, "bob@example.test", -1, 0, &err), -1);
	assert_string_equal(err, "a quota cannot be negative");
	free(err);
	assert_int_equal(userdb_user_set_quota(db, "zed@example.test", 1, 1, &err), -1);
	assert_string_equal(err, "no such user zed@example.test");
	free(err);

	struct user_info *list = NULL;
	size_t n = userdb_user_list(db, &list);
	assert_int_equal(n, 3);
	assert_string_equal(list[0].address, "alice@example.test");
	assert_string_equal(list[1].address, "bob@example.test");
	assert_string_equal(list[2].address, "carol@example.test");
	assert_int_equal(list[1].quota_messages, 100);
	for (size_t i = 0; i < n; i++)
		user_info_free(&list[i]);
	free(list);

	assert_int_equal(userdb_alias_add(db, "postmaster@example.test", "bob@example.test", &err),
			 0);
	assert_int_equal(userdb_sieve_put(db, "bob@example.test", "keep;", &err), 0);
	assert_int_equal(userdb_user_del(db, "bob@example.test", &err), 0);
	assert_int_equal(userdb_user_lookup(db, "bob@example.test", &info), -1);
	assert_null(userdb_sieve_get(db, "bob@example.test"));
	char **aliases = userdb_alias_list(db);
	assert_int_equal(strv_len(aliases), 0); /* the alias to bob went with him */
	userdb_strv_free(aliases);
	assert_int_equal(userdb_user_del(db, "bob@example.test", &err), -1);
	assert_string_equal(err, "no such user bob@example.test");
	free(err);
	n = userdb_user_list(db, &list);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		user_info_free(&list[i]);
	free(list);
}

static void test_aliases_resolve(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	add_user(db, "alice@example.test", "a");
	add_user(db, "bob@example.test", "b");
	static const char *const pairs[][2] = {
		{"postmaster@example.test", "alice@example.test"},
		{"team@example.test", "alice@example.test"},
		{"team@example.test", "bob@example.test"},
		{"team@example.test", "friend@elsewhere.test"},
		{"all@example.test", "team@example.test"},
		{"all@example.test", "postmaster@example.test"}, /* alice twice: once in the result */
		{"loop1@example.test", "loop2@example.test"},
		{"loop2@example.test", "loop1@example.test"},
		{"loop2@example.test", "bob@example.test"},
		{"ghost@example.test", "nobody@example.test"},
		{"Upper@Example.Test", "BOB@example.test"},
	};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		if (userdb_alias_add(db, pairs[i][0], pairs[i][1], &err) < 0)
			fail_msg("alias %s -> %s: %s", pairs[i][0], pairs[i][1], err);
	}
	static const struct {
		const char *alias;
		const char *target;
		const char *error;
	} refused[] = {
		{"team@example.test", "bob@example.test",
		 "alias team@example.test -> bob@example.test already exists"},
		{"x@example.test", "X@example.test", "alias x@example.test cannot point to itself"},
		{"x@remote.test", "bob@example.test",
		 "domain of alias x@remote.test is not a local domain"},
		{"bad alias@example.test", "bob@example.test",
		 "invalid address 'bad alias@example.test'"},
		{"x@example.test", "no-at", "invalid address 'no-at'"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		err = NULL;
		assert_int_equal(userdb_alias_add(db, refused[i].alias, refused[i].target, &err), -1);
		assert_string_equal(err, refused[i].error);
		free(err);
	}

	static const struct {
		const char *address;
		const char *results[4]; /* NULL-terminated; all NULL = resolve returns NULL */
	} cases[] = {
		{"alice@example.test", {"alice@example.test"}},
		{"ALICE@example.test", {"alice@example.test"}},
		{"alice+lists@example.test", {"alice+lists@example.test"}},
		{"postmaster@example.test", {"alice@example.test"}},
		{"postmaster+x@example.test", {"alice@example.test"}},
		{"team@example.test",
		 {"alice@example.test", "bob@example.test", "friend@elsewhere.test"}},
		{"all@example.test",
		 {"alice@example.test", "bob@example.test", "friend@elsewhere.test"}},
		{"loop1@example.test", {"bob@example.test"}},
		{"upper@example.test", {"bob@example.test"}},
		{"someone@remote.test", {"someone@remote.test"}},
		{"nobody@example.test", {NULL}},
		{"ghost@example.test", {NULL}},
		{"no-at-sign", {NULL}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char **got = userdb_resolve(db, cases[i].address);
		size_t want = 0;
		while (want < 4 && cases[i].results[want] != NULL)
			want++;
		if (want == 0) {
			if (got != NULL)
				fail_msg("%s resolved to %s", cases[i].address, got[0]);
			continue;
		}
		if (got == NULL)
			fail_msg("%s did not resolve", cases[i].address);
		if (strv_len(got) != want)
			fail_msg("%s: %zu results, want %zu", cases[i].address, strv_len(got), want);
		for (size_t j = 0; j < want; j++) {
			if (!strv_has(got, cases[i].results[j]))
				fail_msg("%s: missing %s", cases[i].address, cases[i].results[j]);
		}
		userdb_strv_free(got);
	}

	char **list = userdb_alias_list(db);
	assert_int_equal(strv_len(list), 2 * 11);
	assert_string_equal(list[0], "all@example.test");
	assert_string_equal(list[1], "postmaster@example.test");
	userdb_strv_free(list);

	assert_int_equal(userdb_alias_del(db, "team@example.test", "bob@example.test", &err), 0);
	char **got = userdb_resolve(db, "team@example.test");
	assert_int_equal(strv_len(got), 2);
	assert_false(strv_has(got, "bob@example.test"));
	userdb_strv_free(got);
	assert_int_equal(userdb_alias_del(db, "team@example.test", "bob@example.test", &err), -1);
	assert_string_equal(err, "no alias team@example.test -> bob@example.test");
	free(err);
	assert_int_equal(userdb_alias_del(db, "TEAM@example.test", NULL, &err), 0);
	assert_null(userdb_resolve(db, "team@example.test"));
	assert_int_equal(userdb_alias_del(db, "team@example.test", NULL, &err), -1);
	assert_string_equal(err, "no alias team@example.test");
	free(err);
}

/* A long chain and a wide fan-out stay within the documented bounds. */
static void test_resolve_bounds(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	add_user(db, "end@example.test", "e");
	for (int i = 0; i < 30; i++) {
		char *a = xasprintf("chain%d@example.test", i);
		char *t = i == 29 ? xstrdup("end@example.test") : xasprintf("chain%d@example.test", i + 1);
		assert_int_equal(userdb_alias_add(db, a, t, &err), 0);
		free(a);
		free(t);
	}
	/* Deeper than the depth limit: nothing is reached from the start... */
	assert_null(userdb_resolve(db, "chain0@example.test"));
	/* ...but a shorter chain resolves. */
	char **got = userdb_resolve(db, "chain15@example.test");
	assert_int_equal(strv_len(got), 1);
	assert_string_equal(got[0], "end@example.test");
	userdb_strv_free(got);

	/* A fan-out wider than 1000 is cut at 1000 results. */
	for (int i = 0; i < 1005; i++) {
		char *t = xasprintf("r%d@remote.test", i);
		assert_int_equal(userdb_alias_add(db, "wide@example.test", t, &err), 0);
		free(t);
	}
	got = userdb_resolve(db, "wide@example.test");
	assert_int_equal(strv_len(got), 1000);
	userdb_strv_free(got);
}

static void test_sender_allowed(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	add_user(db, "alice@example.test", "a");
	add_user(db, "bob@example.test", "b");
	assert_int_equal(userdb_alias_add(db, "sales@example.test", "alice@example.test", &err), 0);
	assert_int_equal(userdb_alias_add(db, "info@example.test", "sales@example.test", &err), 0);
	assert_int_equal(userdb_alias_add(db, "fwd@example.test", "x@remote.test", &err), 0);
	static const struct {
		const char *user;
		const char *sender;
		bool allowed;
	} cases[] = {
		{"alice@example.test", "alice@example.test", true},
		{"alice@example.test", "ALICE@Example.Test", true},
		{"alice", "alice@example.test", true},
		{"alice@example.test", "alice+news@example.test", true},
		{"alice@example.test", "sales@example.test", true},
		{"alice@example.test", "info@example.test", true},
		{"alice@example.test", "sales+x@example.test", true},
		{"alice@example.test", "bob@example.test", false},
		{"bob@example.test", "sales@example.test", false},
		{"alice@example.test", "fwd@example.test", false},
		{"alice@example.test", "x@remote.test", false},
		{"alice@example.test", "", false},
		{"alice@example.test", "alice", false},
		{"nobody@example.test", "nobody@example.test", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (userdb_sender_allowed(db, cases[i].user, cases[i].sender) != cases[i].allowed)
			fail_msg("%s as %s: want %s", cases[i].user, cases[i].sender,
				 cases[i].allowed ? "allowed" : "refused");
	}
}

static void test_sieve(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	add_user(db, "alice@example.test", "a");
	assert_null(userdb_sieve_get(db, "alice@example.test"));
	assert_int_equal(userdb_sieve_put(db, "Alice@example.test", "keep;", &err), 0);
	char *script = userdb_sieve_get(db, "alice@example.test");
	assert_string_equal(script, "keep;");
	free(script);
	assert_int_equal(userdb_sieve_put(db, "alice@example.test", "discard;", &err), 0);
	script = userdb_sieve_get(db, "alice+x@example.test");
	assert_string_equal(script, "discard;");
	free(script);
	assert_int_equal(userdb_sieve_put(db, "bob@example.test", "keep;", &err), -1);
	assert_string_equal(err, "no such user bob@example.test");
	free(err);
	assert_int_equal(userdb_sieve_del(db, "alice@example.test", &err), 0);
	assert_null(userdb_sieve_get(db, "alice@example.test"));
	assert_int_equal(userdb_sieve_del(db, "alice@example.test", &err), -1);
	assert_string_equal(err, "alice@example.test has no sieve script");
	free(err);
}

/* Data survives closing and reopening; hostile text stays data. */
static void test_reopen_and_injection(void **state)
{
	userdb *db = *state;
	char *err = NULL;
	add_user(db, "o'brien@example.test", "pw');DROP TABLE users;--");
	assert_int_equal(userdb_alias_add(db, "x@example.test", "o'brien@example.test", &err), 0);
	char *dir = xasprintf("%s/reopen", test_dir);
	char *cmd = xasprintf("mkdir -p '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	userdb *other = NULL;
	assert_int_equal(userdb_open(dir, &other, &err), 0);
	add_user(other, "keep@example.test", "k");
	userdb_close(&other);
	assert_null(other);
	assert_int_equal(userdb_open(dir, &other, &err), 0);
	struct user_info info;
	assert_int_equal(userdb_user_lookup(other, "keep@example.test", &info), 0);
	assert_true(password_verify(info.password_hash, "k"));
	user_info_free(&info);
	userdb_close(&other);
	free(dir);

	assert_int_equal(userdb_user_lookup(db, "o'brien@example.test", &info), 0);
	assert_true(password_verify(info.password_hash, "pw');DROP TABLE users;--"));
	user_info_free(&info);
	char **got = userdb_resolve(db, "x@example.test");
	assert_int_equal(strv_len(got), 1);
	assert_string_equal(got[0], "o'brien@example.test");
	userdb_strv_free(got);

	assert_int_equal(userdb_open("/nonexistent/dir", &other, &err), -1);
	assert_non_null(strstr(err, "/nonexistent/dir/users.sqlite"));
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_domains, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_user_add_lookup, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_user_del_passwd_quota_list, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_aliases_resolve, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_resolve_bounds, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_sender_allowed, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_sieve, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_reopen_and_injection, setup_db, teardown_db),
	};
	return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
