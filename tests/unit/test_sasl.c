/* test_sasl.c: the SASL server against the SASL client in one libuv loop, for
 * PLAIN, LOGIN and SCRAM-SHA-256: success with and without an initial
 * response, wrong password, unknown user, abort, malformed input, the
 * failure delay, callbacks never re-entrant, freeing while a check runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <uv.h>

#include "buffer.h"
#include "codec.h"
#include "sasl.h"
#include "users.h"

#define ALICE "alice@example.test"
#define ALICE_PASSWORD "alice-Secret-1"

static char test_dir[] = "/tmp/test_sasl.XXXXXX";
static userdb *db;

static int setup(void **state)
{
	(void)state;
	if (mkdtemp(test_dir) == NULL)
		return -1;
	char *err = NULL;
	if (userdb_open(test_dir, &db, &err) < 0 ||
	    userdb_user_add(db, ALICE, ALICE_PASSWORD, &err) < 0 ||
	    userdb_user_add(db, "bob@example.test", "bob-pw", &err) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	userdb_close(&db);
	char *cmd = xasprintf("rm -rf '%s'", test_dir);
	int rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

/* One exchange between a server and a client (or scripted responses). */
struct exchange {
	uv_loop_t loop;
	sasl_server *server;
	sasl_client *client;
	const char *const *script; /* responses to send instead of the client's */
	size_t script_pos;
	bool in_step;        /* true while inside sasl_server_step */
	bool reentered;      /* a callback came from inside sasl_server_step */
	int callbacks;
	int steps;
	enum sasl_result result;
	char *username;
	char *final_data;
	char *challenges[8];
	bool client_failed;
	uint64_t started_ms;
	uint64_t elapsed_ms;
};

static void exchange_cb(void *arg, enum sasl_result result, const char *challenge_b64,
			const char *username);

/* Sends one response to the server, checking the callback does not run inside. */
static void exchange_send(struct exchange *x, const char *response)
{
	x->steps++;
	x->in_step = true;
	sasl_server_step(x->server, response, exchange_cb, x);
	x->in_step = false;
}

static void exchange_cb(void *arg, enum sasl_result result, const char *challenge_b64,
			const char *username)
{
	struct exchange *x = arg;
	if (x->in_step)
		x->reentered = true;
	x->callbacks++;
	if (result == SASL_CONTINUE) {
		assert_non_null(challenge_b64);
		if (x->callbacks - 1 < 8)
			x->challenges[x->callbacks - 1] = xstrdup(challenge_b64);
		if (x->script != NULL) {
			const char *next = x->script[x->script_pos];
			if (next == NULL)
				fail_msg("script ended at step %zu; challenge '%s'", x->script_pos,
					 challenge_b64);
			x->script_pos++;
			exchange_send(x, next);
			return;
		}
		char *response = NULL;
		if (sasl_client_step(x->client, challenge_b64, &response) < 0) {
			x->client_failed = true;
			exchange_send(x, "*");
			return;
		}
		exchange_send(x, response);
		free(response);
		return;
	}
	x->result = result;
	x->elapsed_ms = uv_now(&x->loop) - x->started_ms;
	x->username = username != NULL ? xstrdup(username) : NULL;
	if (result == SASL_OK && challenge_b64 != NULL) {
		x->final_data = xstrdup(challenge_b64);
		if (x->client != NULL) {
			char *response = NULL;
			if (sasl_client_step(x->client, challenge_b64, &response) < 0)
				x->client_failed = true;
			free(response);
		}
	}
	sasl_server_free(&x->server);
}

/* Runs a whole exchange: initial response from the client unless
 * no_initial, or the first scripted response. */
static void exchange_run(struct exchange *x, const char *mech, const char *user,
			 const char *password, bool no_initial, const char *const *script,
			 unsigned failures)
{
	memset(x, 0, sizeof(*x));
	assert_int_equal(uv_loop_init(&x->loop), 0);
	x->server = sasl_server_new(&x->loop, db, mech, failures);
	assert_non_null(x->server);
	x->result = (enum sasl_result)-1;
	uv_update_time(&x->loop);
	x->started_ms = uv_now(&x->loop);
	if (script != NULL) {
		x->script = script;
		x->script_pos = 1;
		exchange_send(x, script[0]);
	} else {
		x->client = sasl_client_new(mech, user, password);
		assert_non_null(x->client);
		char *initial = no_initial ? NULL : sasl_client_initial(x->client);
		exchange_send(x, initial);
		free(initial);
	}
	assert_int_equal(x->callbacks, 0); /* never from inside the step */
	assert_int_equal(uv_run(&x->loop, UV_RUN_DEFAULT), 0);
	assert_false(x->reentered);
	assert_int_equal(uv_loop_close(&x->loop), 0);
}

static void exchange_free(struct exchange *x)
{
	sasl_server_free(&x->server);
	sasl_client_free(&x->client);
	free(x->username);
	free(x->final_data);
	for (size_t i = 0; i < 8; i++)
		free(x->challenges[i]);
}

/* Records one result with its data (for tests that drive steps by hand). */
static void exchange_record_cb(void *arg, enum sasl_result result, const char *challenge_b64,
			       const char *username)
{
	struct exchange *x = arg;
	x->callbacks++;
	x->result = result;
	free(x->final_data);
	x->final_data = challenge_b64 != NULL ? xstrdup(challenge_b64) : NULL;
	free(x->username);
	x->username = username != NULL ? xstrdup(username) : NULL;
}

/* Decodes a challenge for inspection (caller frees). */
static char *decoded(const char *b64)
{
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(base64_decode(b64, strlen(b64), &out, &len), 0);
	return out;
}

struct success_case {
	const char *mech;
	const char *user;
	bool no_initial;
	int callbacks; /* CONTINUE challenges + final */
};

/* Each mechanism, with and without an initial response, and user name forms. */
static void test_success(void **state)
{
	(void)state;
	static const struct success_case cases[] = {
		{"PLAIN", ALICE, false, 1},
		{"plain", ALICE, true, 2},
		{"PLAIN", "alice", false, 1},
		{"PLAIN", "ALICE@Example.Test", false, 1},
		{"LOGIN", ALICE, true, 3},
		{"SCRAM-SHA-256", ALICE, false, 2},
		{"scram-sha-256", ALICE, true, 3},
		{"SCRAM-SHA-256", "alice", false, 2},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct exchange x;
		exchange_run(&x, cases[i].mech, cases[i].user, ALICE_PASSWORD, cases[i].no_initial,
			     NULL, 0);
		if (x.result != SASL_OK)
			fail_msg("%s %s: result %d", cases[i].mech, cases[i].user, x.result);
		assert_string_equal(x.username, ALICE);
		assert_int_equal(x.callbacks, cases[i].callbacks);
		assert_false(x.client_failed);
		assert_true(x.elapsed_ms < 250); /* no failure delay */
		bool scram = strcasecmp(cases[i].mech, "SCRAM-SHA-256") == 0;
		if (scram) {
			assert_non_null(x.final_data);
			char *final = decoded(x.final_data);
			assert_int_equal(strncmp(final, "v=", 2), 0);
			free(final);
			assert_true(sasl_client_server_verified(x.client));
		} else {
			assert_null(x.final_data);
			assert_false(sasl_client_server_verified(x.client));
		}
		if (strcasecmp(cases[i].mech, "LOGIN") == 0) {
			assert_string_equal(x.challenges[0], "VXNlcm5hbWU6");
			assert_string_equal(x.challenges[1], "UGFzc3dvcmQ6");
		}
		else if (cases[i].no_initial)
			assert_string_equal(x.challenges[0], "");
		exchange_free(&x);
	}
}

/* Wrong passwords and unknown users fail, after the failure delay. */
static void test_failures(void **state)
{
	(void)state;
	static const struct {
		const char *mech;
		const char *user;
		const char *password;
		unsigned failures;
	} cases[] = {
		{"PLAIN", ALICE, "wrong", 0},
		{"PLAIN", "nobody@example.test", ALICE_PASSWORD, 0},
		{"PLAIN", "bob@example.test", ALICE_PASSWORD, 0},
		{"LOGIN", ALICE, "wrong", 0},
		{"LOGIN", "nobody@example.test", "x", 0},
		{"SCRAM-SHA-256", ALICE, "wrong", 0},
		{"SCRAM-SHA-256", "nobody@example.test", "x", 0},
		{"PLAIN", ALICE, "wrong", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct exchange x;
		exchange_run(&x, cases[i].mech, cases[i].user, cases[i].password, true, NULL,
			     cases[i].failures);
		if (x.result != SASL_FAIL)
			fail_msg("%s %s: result %d", cases[i].mech, cases[i].user, x.result);
		assert_null(x.username);
		assert_null(x.final_data);
		uint64_t delay = auth_failure_delay_ms(cases[i].failures);
		if (x.elapsed_ms + 5 < delay || x.elapsed_ms > delay + 2000)
			fail_msg("%s: answered after %llu ms, delay %llu", cases[i].mech,
				 (unsigned long long)x.elapsed_ms, (unsigned long long)delay);
		exchange_free(&x);
	}
}

/* The delay grows with the failures so far and stays within 5 s. */
static void test_delay(void **state)
{
	(void)state;
	static const uint64_t want[] = {250, 500, 1000, 2000, 4000, 5000, 5000};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(auth_failure_delay_ms(i), want[i]);
	assert_int_equal(auth_failure_delay_ms(1000000), 5000);
	assert_true(auth_failure_delay_ms(0) <= 500);
}

/* Base64 of text (caller frees). */
static char *b64(const char *text, size_t len)
{
	return base64_encode(text, len);
}

/* Scripted exchanges: aborts, malformed input, authzid rules. */
static void test_scripted(void **state)
{
	(void)state;
	char *plain_ok = b64("\0alice\0" ALICE_PASSWORD, 7 + strlen(ALICE_PASSWORD));
	char *plain_authz_same = b64(ALICE "\0alice\0" ALICE_PASSWORD,
				     strlen(ALICE) + 7 + strlen(ALICE_PASSWORD));
	char *plain_authz_other = b64("bob@example.test\0alice\0" ALICE_PASSWORD,
				      16 + 7 + strlen(ALICE_PASSWORD));
	char *plain_one_nul = b64("alice\0pw", 8);
	char *plain_three_nul = b64("\0alice\0pw\0x", 11);
	char *plain_no_user = b64("\0\0pw", 4);
	char *login_user = b64("alice", 5);
	char *login_pw = b64(ALICE_PASSWORD, strlen(ALICE_PASSWORD));
	char *login_nul = b64("al\0ice", 6);
	char *scram_p = b64("p=tls-unique,,n=alice,r=abc", 27);
	char *scram_noheader = b64("n=alice,r=abc", 13);
	char *scram_mext = b64("n,,m=x,n=alice,r=abc", 20);
	char *scram_badname = b64("n,,n=al=ice,r=abc", 17);
	char *scram_nonce = b64("n,,n=alice,r=a,b", 16);
	char *scram_first = b64("n,,n=alice,r=clientnonce", 24);
	char *scram_final_badnonce = b64("c=biws,r=othernonce,p=AAAA", 26);
	char *huge = xmalloc(9001);
	memset(huge, 'A', 9000);
	huge[9000] = '\0';

	struct script_case {
		const char *mech;
		const char *script[4];
		enum sasl_result result;
		const char *username;
	} cases[] = {
		{"PLAIN", {plain_ok}, SASL_OK, ALICE},
		{"PLAIN", {plain_authz_same}, SASL_OK, ALICE},
		{"PLAIN", {plain_authz_other}, SASL_FAIL, NULL},
		{"PLAIN", {"*"}, SASL_ABORTED, NULL},
		{"PLAIN", {NULL, "*"}, SASL_ABORTED, NULL},
		{"PLAIN", {"not base64!"}, SASL_MALFORMED, NULL},
		{"PLAIN", {"YWJj="}, SASL_MALFORMED, NULL},
		{"PLAIN", {""}, SASL_MALFORMED, NULL},
		{"PLAIN", {"="}, SASL_MALFORMED, NULL},
		{"PLAIN", {plain_one_nul}, SASL_MALFORMED, NULL},
		{"PLAIN", {plain_three_nul}, SASL_MALFORMED, NULL},
		{"PLAIN", {plain_no_user}, SASL_MALFORMED, NULL},
		{"PLAIN", {huge}, SASL_MALFORMED, NULL},
		{"LOGIN", {login_user, login_pw}, SASL_OK, ALICE},
		{"LOGIN", {NULL, login_user, login_pw}, SASL_OK, ALICE},
		{"LOGIN", {NULL, login_user, "*"}, SASL_ABORTED, NULL},
		{"LOGIN", {NULL, "*"}, SASL_ABORTED, NULL},
		{"LOGIN", {NULL, "%%%"}, SASL_MALFORMED, NULL},
		{"LOGIN", {NULL, login_nul}, SASL_MALFORMED, NULL},
		{"LOGIN", {NULL, ""}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {scram_p}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {scram_noheader}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {scram_mext}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {scram_badname}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {scram_nonce}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {"@@"}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {scram_first, "*"}, SASL_ABORTED, NULL},
		{"SCRAM-SHA-256", {scram_first, scram_final_badnonce}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {scram_first, "!"}, SASL_MALFORMED, NULL},
		{"SCRAM-SHA-256", {NULL, "*"}, SASL_ABORTED, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct exchange x;
		/* a NULL first entry means "no initial response"; count the rest */
		exchange_run(&x, cases[i].mech, NULL, NULL, false, cases[i].script, 0);
		if (x.result != cases[i].result)
			fail_msg("case %zu (%s): result %d, want %d", i, cases[i].mech, x.result,
				 cases[i].result);
		if (cases[i].username != NULL)
			assert_string_equal(x.username, cases[i].username);
		else
			assert_null(x.username);
		if (cases[i].result == SASL_MALFORMED || cases[i].result == SASL_ABORTED)
			assert_true(x.elapsed_ms < 250); /* only failures are delayed */
		exchange_free(&x);
	}
	free(plain_ok);
	free(plain_authz_same);
	free(plain_authz_other);
	free(plain_one_nul);
	free(plain_three_nul);
	free(plain_no_user);
	free(login_user);
	free(login_pw);
	free(login_nul);
	free(scram_p);
	free(scram_noheader);
	free(scram_mext);
	free(scram_badname);
	free(scram_nonce);
	free(scram_first);
	free(scram_final_badnonce);
	free(huge);
}

/* Captures the first SCRAM challenge for a user name, then aborts. */
static char *scram_server_first(const char *user)
{
	char *msg = xasprintf("n,,n=%s,r=fixednonce", user);
	char *first = b64(msg, strlen(msg));
	const char *script[] = {first, "*", NULL};
	struct exchange x;
	exchange_run(&x, "SCRAM-SHA-256", NULL, NULL, false, script, 0);
	assert_int_equal(x.result, SASL_ABORTED);
	char *server_first = decoded(x.challenges[0]);
	exchange_free(&x);
	free(first);
	free(msg);
	return server_first;
}

/* Returns the s= attribute of a server-first message (caller frees). */
static char *salt_of(const char *server_first)
{
	const char *s = strstr(server_first, ",s=");
	assert_non_null(s);
	const char *end = strchr(s + 3, ',');
	assert_non_null(end);
	return xstrndup(s + 3, (size_t)(end - s - 3));
}

/* An unknown user's server-first looks like a real one and stays the same. */
static void test_scram_unknown_user_consistent(void **state)
{
	(void)state;
	char *a1 = scram_server_first("nobody@example.test");
	char *a2 = scram_server_first("nobody@example.test");
	char *b = scram_server_first("other@example.test");
	char *real = scram_server_first(ALICE);
	assert_int_equal(strncmp(a1, "r=fixednonce", 12), 0);
	assert_true(strlen(a1) > strlen("r=fixednonce,s=,i=4096"));
	assert_non_null(strstr(a1, ",i=4096"));
	assert_non_null(strstr(real, ",i=4096"));
	char *sa1 = salt_of(a1), *sa2 = salt_of(a2), *sb = salt_of(b), *sr = salt_of(real);
	assert_string_equal(sa1, sa2);
	assert_string_not_equal(sa1, sb);
	assert_int_equal(strlen(sa1), strlen(sr));
	struct user_info info;
	assert_int_equal(userdb_user_lookup(db, ALICE, &info), 0);
	assert_string_equal(sr, info.scram.salt_b64);
	user_info_free(&info);
	/* server nonces differ each time */
	assert_string_not_equal(a1, a2);
	free(sa1);
	free(sa2);
	free(sb);
	free(sr);
	free(a1);
	free(a2);
	free(b);
	free(real);
}

/* The client refuses a server whose signature does not verify. */
static void test_client_checks_server(void **state)
{
	(void)state;
	sasl_client *c = sasl_client_new("SCRAM-SHA-256", ALICE, ALICE_PASSWORD);
	char *initial = sasl_client_initial(c);
	char *first = decoded(initial);
	const char *nonce = strstr(first, ",r=") + 3;
	char *server_first = xasprintf("r=%sSERVER,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", nonce);
	char *sf = b64(server_first, strlen(server_first));
	char *response = NULL;
	assert_int_equal(sasl_client_step(c, sf, &response), 0);
	char *final = decoded(response);
	assert_int_equal(strncmp(final, "c=biws,r=", 9), 0);
	assert_non_null(strstr(final, ",p="));
	free(final);
	free(response);
	char *bad = b64("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 46);
	assert_int_equal(sasl_client_step(c, bad, &response), -1);
	assert_null(response);
	assert_false(sasl_client_server_verified(c));
	sasl_client_free(&c);
	assert_null(c);
	free(bad);
	free(sf);
	free(server_first);
	free(first);
	free(initial);

	/* A server nonce that does not extend ours, or a bad iteration count;
	 * "NONCE" stands for the client's nonce. */
	static const char *const bad_first[] = {
		"r=othernonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"r=NONCE,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"r=NONCEX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
		"r=NONCEX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
		"r=NONCEX,s=W22ZaJ0SNY7soEsUEjb6gQ==",
		"r=NONCEX,s=!!,i=4096",
		"e=other-error",
	};
	for (size_t i = 0; i < sizeof(bad_first) / sizeof(bad_first[0]); i++) {
		c = sasl_client_new("SCRAM-SHA-256", ALICE, ALICE_PASSWORD);
		initial = sasl_client_initial(c);
		first = decoded(initial);
		nonce = strstr(first, ",r=") + 3;
		const char *mark = strstr(bad_first[i], "NONCE");
		char *text = mark == NULL ? xstrdup(bad_first[i])
					  : xasprintf("%.*s%s%s", (int)(mark - bad_first[i]),
						      bad_first[i], nonce, mark + 5);
		sf = b64(text, strlen(text));
		response = NULL;
		if (sasl_client_step(c, sf, &response) == 0)
			fail_msg("client accepted '%s'", text);
		assert_null(response);
		free(text);
		free(sf);
		free(first);
		free(initial);
		sasl_client_free(&c);
	}
	assert_null(sasl_client_new("CRAM-MD5", "a", "b"));
}

/* Counts callbacks for the check_password and free-while-pending tests. */
struct counter {
	int calls;
	enum sasl_result result;
	char *username;
};

static void counter_cb(void *arg, enum sasl_result result, const char *challenge_b64,
		       const char *username)
{
	struct counter *c = arg;
	c->calls++;
	c->result = result;
	assert_null(challenge_b64);
	free(c->username);
	c->username = username != NULL ? xstrdup(username) : NULL;
}

/* Like counter_cb, for any result (challenges allowed). */
static void counter_cb_any(void *arg, enum sasl_result result, const char *challenge_b64,
			   const char *username)
{
	struct counter *c = arg;
	(void)challenge_b64;
	c->calls++;
	c->result = result;
	free(c->username);
	c->username = username != NULL ? xstrdup(username) : NULL;
}

/* sasl_check_password: the POP3 USER/PASS and IMAP LOGIN path. */
static void test_check_password(void **state)
{
	(void)state;
	static const struct {
		const char *user;
		const char *password;
		enum sasl_result result;
		const char *username;
	} cases[] = {
		{ALICE, ALICE_PASSWORD, SASL_OK, ALICE},
		{"alice", ALICE_PASSWORD, SASL_OK, ALICE},
		{"alice+box@example.test", ALICE_PASSWORD, SASL_OK, ALICE},
		{ALICE, "nope", SASL_FAIL, NULL},
		{"nobody", "nope", SASL_FAIL, NULL},
		{"", "", SASL_FAIL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uv_loop_t loop;
		uv_loop_init(&loop);
		struct counter c = {0, SASL_CONTINUE, NULL};
		sasl_check_password(&loop, db, cases[i].user, cases[i].password, 0, counter_cb, &c);
		assert_int_equal(c.calls, 0);
		assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
		assert_int_equal(uv_loop_close(&loop), 0);
		assert_int_equal(c.calls, 1);
		assert_int_equal(c.result, cases[i].result);
		if (cases[i].username != NULL)
			assert_string_equal(c.username, cases[i].username);
		else
			assert_null(c.username);
		free(c.username);
	}
}

static void stop_timer_closed(uv_handle_t *handle)
{
	(void)handle;
}

/* Stops the loop once (used to pause in the middle of a failure delay). */
static void stop_loop(uv_timer_t *timer)
{
	uv_stop(timer->loop);
	uv_close((uv_handle_t *)timer, stop_timer_closed);
}

/* Freeing the server while a check runs or a failure delay is pending: the
 * callback still comes exactly once (sasl.h), promptly, and nothing leaks. */
static void test_free_while_pending(void **state)
{
	(void)state;
	char *plain_ok = b64("\0alice\0" ALICE_PASSWORD, 7 + strlen(ALICE_PASSWORD));
	char *plain_bad = b64("\0alice\0wrong", 12);
	static const struct {
		int response; /* 0 ok, 1 bad, 2 none */
		bool wait_for_delay;
		enum sasl_result result;
	} cases[] = {
		{0, false, SASL_OK},
		{1, false, SASL_FAIL},
		{1, true, SASL_FAIL},
		{2, false, SASL_CONTINUE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *response = cases[i].response == 0   ? plain_ok
				       : cases[i].response == 1 ? plain_bad
								: NULL;
		uv_loop_t loop;
		uv_loop_init(&loop);
		struct counter c = {0, SASL_MALFORMED, NULL};
		/* 3 failures so far: a 2 s delay after this one */
		sasl_server *s = sasl_server_new(&loop, db, "PLAIN", 3);
		sasl_server_step(s, response, counter_cb_any, &c);
		if (cases[i].wait_for_delay) {
			/* let the check finish: the failure delay timer is then running */
			uv_timer_t stop;
			uv_timer_init(&loop, &stop);
			uv_timer_start(&stop, stop_loop, 600, 0);
			uv_run(&loop, UV_RUN_DEFAULT);
			assert_int_equal(c.calls, 0);
		}
		sasl_server_free(&s);
		assert_null(s);
		assert_int_equal(c.calls, 0); /* never from inside free either */
		uv_update_time(&loop);
		uint64_t start = uv_now(&loop);
		assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
		uv_update_time(&loop);
		assert_true(uv_now(&loop) - start < 1000);
		assert_int_equal(uv_loop_close(&loop), 0);
		assert_int_equal(c.calls, 1);
		assert_int_equal(c.result, cases[i].result);
		free(c.username);
	}
	free(plain_ok);
	free(plain_bad);
}

/* Computes a SCRAM client-final message (base64) for a gs2 header, the
 * client-first-message-bare and the server's first challenge. */
static char *scram_final_for(const char *gs2, const char *bare, const char *server_first_b64,
			     const char *password)
{
	char *server_first = decoded(server_first_b64);
	const char *r = server_first + 2;
	size_t nonce_len = strcspn(r, ",");
	const char *salt = strstr(server_first, ",s=") + 3;
	size_t salt_len = strcspn(salt, ",");
	char *salt_b64 = xstrndup(salt, salt_len);
	unsigned long iterations = strtoul(strstr(server_first, ",i=") + 3, NULL, 10);
	struct scram_keys keys;
	unsigned char client_key[SCRAM_KEY_LEN], signature[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	assert_int_equal(scram_keys_derive_client(password, salt_b64, (uint32_t)iterations, &keys,
						  client_key),
			 0);
	char *cbind = b64(gs2, strlen(gs2));
	char *without = xasprintf("c=%s,r=%.*s", cbind, (int)nonce_len, r);
	char *auth_message = xasprintf("%s,%s,%s", bare, server_first, without);
	unsigned int len = 0;
	HMAC(EVP_sha256(), keys.stored_key, SCRAM_KEY_LEN, (const unsigned char *)auth_message,
	     strlen(auth_message), signature, &len);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ signature[i];
	char *proof_b64 = b64((const char *)proof, SCRAM_KEY_LEN);
	char *final = xasprintf("%s,p=%s", without, proof_b64);
	char *final_b64 = b64(final, strlen(final));
	free(final);
	free(proof_b64);
	free(auth_message);
	free(without);
	free(cbind);
	free(salt_b64);
	free(server_first);
	return final_b64;
}

/* Runs one server step to completion and returns the callback's result. */
static void run_step(uv_loop_t *loop, sasl_server *s, const char *response, struct exchange *x)
{
	x->callbacks = 0;
	sasl_server_step(s, response, exchange_record_cb, x);
	assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(x->callbacks, 1);
}

/* SCRAM with the gs2 header variants: "y" flag, an authzid naming the same
 * user (accepted) or another user (refused), and a channel-binding value
 * that does not match the header (malformed). */
static void test_scram_gs2_headers(void **state)
{
	(void)state;
	static const struct {
		const char *gs2;      /* sent in client-first */
		const char *cbind;    /* gs2 header echoed in c=, NULL = same */
		const char *password;
		enum sasl_result result;
	} cases[] = {
		{"n,,", NULL, ALICE_PASSWORD, SASL_OK},
		{"y,,", NULL, ALICE_PASSWORD, SASL_OK},
		{"n,a=alice@example.test,", NULL, ALICE_PASSWORD, SASL_OK},
		{"n,a=ALICE@example.test,", NULL, ALICE_PASSWORD, SASL_OK},
		{"n,a=bob@example.test,", NULL, ALICE_PASSWORD, SASL_FAIL},
		{"n,,", NULL, "wrong", SASL_FAIL},
		{"n,,", "y,,", ALICE_PASSWORD, SASL_MALFORMED},
		{"n,a=alice@example.test,", "n,,", ALICE_PASSWORD, SASL_MALFORMED},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uv_loop_t loop;
		uv_loop_init(&loop);
		sasl_server *s = sasl_server_new(&loop, db, "SCRAM-SHA-256", 0);
		struct exchange x;
		memset(&x, 0, sizeof(x));
		const char *bare = "n=alice@example.test,r=0123456789abcdef";
		char *first = xasprintf("%s%s", cases[i].gs2, bare);
		char *first_b64 = b64(first, strlen(first));
		run_step(&loop, s, first_b64, &x);
		assert_int_equal(x.result, SASL_CONTINUE);
		char *final = scram_final_for(cases[i].cbind != NULL ? cases[i].cbind : cases[i].gs2,
					      bare, x.final_data, cases[i].password);
		free(x.final_data);
		x.final_data = NULL;
		run_step(&loop, s, final, &x);
		if (x.result != cases[i].result)
			fail_msg("case %zu (%s): result %d, want %d", i, cases[i].gs2, x.result,
				 cases[i].result);
		if (x.result == SASL_OK) {
			assert_string_equal(x.username, ALICE);
			char *v = decoded(x.final_data);
			assert_int_equal(strncmp(v, "v=", 2), 0);
			free(v);
		}
		sasl_server_free(&s);
		assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
		assert_int_equal(uv_loop_close(&loop), 0);
		free(final);
		free(first_b64);
		free(first);
		exchange_free(&x);
	}
}

/* A step after the end is malformed; unknown mechanisms are refused. */
static void test_misuse(void **state)
{
	(void)state;
	assert_string_equal(sasl_mechanisms(), "PLAIN LOGIN SCRAM-SHA-256");
	assert_true(sasl_mechanism_known("plain"));
	assert_true(sasl_mechanism_known("Scram-Sha-256"));
	assert_false(sasl_mechanism_known("CRAM-MD5"));
	assert_false(sasl_mechanism_known("SCRAM-SHA-1"));
	assert_false(sasl_mechanism_known(""));
	uv_loop_t loop;
	uv_loop_init(&loop);
	assert_null(sasl_server_new(&loop, db, "GSSAPI", 0));
	sasl_server *s = sasl_server_new(&loop, db, "PLAIN", 0);
	struct counter c = {0, SASL_CONTINUE, NULL};
	sasl_server_step(s, "*", counter_cb, &c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(c.result, SASL_ABORTED);
	sasl_server_step(s, "AGFsaWNlAHg=", counter_cb, &c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(c.calls, 2);
	assert_int_equal(c.result, SASL_MALFORMED);
	sasl_server_free(&s);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_delay),
		cmocka_unit_test(test_scripted),
		cmocka_unit_test(test_scram_unknown_user_consistent),
		cmocka_unit_test(test_scram_gs2_headers),
		cmocka_unit_test(test_client_checks_server),
		cmocka_unit_test(test_check_password),
		cmocka_unit_test(test_free_while_pending),
		cmocka_unit_test(test_misuse),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
