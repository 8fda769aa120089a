/* test_smtp_client.c: the SMTP/LMTP client against a tiny scripted server on
 * loopback, both in one libuv loop; and the reply parser, whole and one byte
 * at a time.
 *
 * The server (srv_*) speaks just enough SMTP/LMTP: EHLO/LHLO with a reply
 * chosen per test, STARTTLS, AUTH through sasl.h's server side, MAIL, RCPT
 * (addresses starting "bad" get 550, "temp" 451, for LMTP "quota" is accepted
 * and then refused with 452 after the data), DATA, RSET, QUIT; it can refuse
 * DATA, stay silent, or hang up after a given command. Every wait runs the
 * loop until a condition holds or WAIT_MS passes, so no test can hang. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "buffer.h"
#include "net.h"
#include "sasl.h"
#include "smtp_client.h"
#include "tls.h"
#include "users.h"

#define WAIT_MS 8000
#define USER "alice@example.test"
#define PASSWORD "alice-Secret-1"

static uv_loop_t loop;
static char tmpdir[] = "/tmp/test_smtp_client_XXXXXX";
static char cert_path[256], key_path[256];
static tls_ctx *server_tls, *client_tls;
static userdb *db;

/* ---- the reply parser ---- */

struct parser_case {
	const char *input;
	const char *expect; /* each reply "code status text|", or "ERR|" */
};

static const struct parser_case parser_cases[] = {
	{"220 mail.example.test ESMTP\r\n", "220 2.0.0 220 mail.example.test ESMTP|"},
	{"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
	 "250 2.0.0 250-mx.test\n250-PIPELINING\n250 SIZE 1000|"},
	{"550 5.1.1 No such user\r\n", "550 5.1.1 550 5.1.1 No such user|"},
	{"451-4.3.0 first\r\n451 4.3.2 last\r\n", "451 4.3.2 451-4.3.0 first\n451 4.3.2 last|"},
	/* a class that does not match the code is not an enhanced code (RFC 2034) */
	{"550 4.1.1 odd\r\n", "550 5.0.0 550 4.1.1 odd|"},
	{"250 2.1.5\r\n", "250 2.1.5 250 2.1.5|"},
	{"250 2.1234.5 x\r\n", "250 2.0.0 250 2.1234.5 x|"},
	{"354\r\n", "354 3.0.0 354|"},
	{"250 ok\n221 bye\r\n", "250 2.0.0 250 ok|221 2.0.0 221 bye|"},
	{"25\r\n", "ERR|"},
	{"2500 x\r\n", "ERR|"},
	{"abc def\r\n", "ERR|"},
	{"650 x\r\n", "ERR|"},
	{"250-a\r\n251 b\r\n", "ERR|"},
};

/* Runs the parser over input in pieces of `step` bytes (0 = whole), noting each result. */
static char *parse_all(const char *input, size_t step)
{
	struct smtp_reply_parser p;
	smtp_reply_parser_init(&p);
	buf_t out = BUF_INIT;
	size_t len = strlen(input), off = 0;
	while (off < len) {
		size_t n = step == 0 || len - off < step ? len - off : step;
		size_t pos = 0;
		while (pos < n) {
			size_t used = 0;
			int rc = smtp_reply_parser_feed(&p, input + off + pos, n - pos, &used);
			pos += used;
			if (rc < 0) {
				assert_non_null(p.error);
				buf_append_str(&out, "ERR|");
				off = len;
				pos = n;
				break;
			}
			if (rc == 1)
				buf_printf(&out, "%d %s %s|", p.reply.code, p.reply.status, p.reply.text);
		}
		if (off < len)
			off += n;
	}
	smtp_reply_parser_free(&p);
	return buf_steal(&out);
}

static void test_reply_parser(void **state)
{
	for (size_t i = 0; i < sizeof(parser_cases) / sizeof(parser_cases[0]); i++) {
		char *whole = parse_all(parser_cases[i].input, 0);
		char *bytewise = parse_all(parser_cases[i].input, 1);
		if (strcmp(whole, parser_cases[i].expect) != 0)
			fail_msg("case %zu whole: %s", i, whole);
		if (strcmp(bytewise, parser_cases[i].expect) != 0)
			fail_msg("case %zu bytewise: %s", i, bytewise);
		free(whole);
		free(bytewise);
	}
}

static void test_reply_parser_limits(void **state)
{
	struct smtp_reply_parser p;
	smtp_reply_parser_init(&p);
	/* a line one byte over the limit, given in two pieces */
	buf_t line = BUF_INIT;
	buf_append_str(&line, "250 ");
	while (line.len < SMTP_REPLY_MAX_LINE + 1)
		buf_append_char(&line, 'x');
	size_t used = 0;
	assert_int_equal(smtp_reply_parser_feed(&p, line.data, line.len / 2, &used), 0);
	assert_int_equal(smtp_reply_parser_feed(&p, line.data + line.len / 2,
						line.len - line.len / 2, &used), 0);
	assert_int_equal(smtp_reply_parser_feed(&p, "\r\n", 2, &used), -1);
	/* the parser goes on with the next reply */
	assert_int_equal(smtp_reply_parser_feed(&p, "250 ok\r\n", 8, &used), 1);
	assert_int_equal(p.reply.code, 250);
	/* too many lines */
	int rc = 0;
	for (int i = 0; i <= SMTP_REPLY_MAX_LINES && rc == 0; i++)
		rc = smtp_reply_parser_line(&p, "250-x", 5);
	assert_int_equal(rc, -1);
	/* the one-line form */
	struct smtp_client_reply copy = {0};
	assert_int_equal(smtp_reply_parser_line(&p, "550-5.1.1 a", 11), 0);
	assert_int_equal(smtp_reply_parser_line(&p, "550 5.1.1 b", 11), 1);
	smtp_client_reply_copy(&copy, &p.reply);
	char *one = smtp_client_reply_oneline(&copy);
	assert_string_equal(one, "550-5.1.1 a 550 5.1.1 b");
	assert_true(copy.enhanced);
	free(one);
	smtp_client_reply_clear(&copy);
	buf_free(&line);
	smtp_reply_parser_free(&p);
}

/* ---- the scripted server ---- */

struct srv_config {
	bool lmtp;
	const char *greeting;   /* NULL = never greet */
	const char *ehlo;       /* the whole EHLO/LHLO reply */
	bool refuse_data;
	const char *drop_after; /* hang up after a command starting so */
};

struct srv_conn {
	bool in_data;
	bool in_auth;
	bool auth_final;        /* a SCRAM server-final was sent: the next line ends AUTH */
	sasl_server *sasl;
	char *rcpts[16];
	size_t rcpt_count;
	buf_t body;
};

static struct {
	struct srv_config cfg;
	buf_t log;              /* commands received, one a line */
	buf_t body;             /* the last message, unstuffed */
	char *auth_user;
	bool tls_at_mail;
	unsigned messages;
} S;

static net_server *srv;
static int srv_port;

static void srv_reset_transaction(struct srv_conn *sc)
{
	for (size_t i = 0; i < sc->rcpt_count; i++)
		free(sc->rcpts[i]);
	sc->rcpt_count = 0;
	buf_reset(&sc->body);
}

static void srv_on_open(conn *c)
{
	struct srv_conn *sc = xcalloc(1, sizeof(*sc));
	buf_init(&sc->body);
	conn_set_data(c, sc);
	if (S.cfg.greeting != NULL)
		conn_printf(c, "%s\r\n", S.cfg.greeting);
}

/* The SASL server's answer. */
static void srv_sasl_done(void *arg, enum sasl_result result, const char *challenge_b64,
			  const char *username)
{
	conn *c = arg;
	struct srv_conn *sc = conn_data(c);
	if (!conn_is_closing(c) && sc != NULL) {
		switch (result) {
		case SASL_CONTINUE:
			conn_printf(c, "334 %s\r\n", challenge_b64);
			break;
		case SASL_OK:
			free(S.auth_user);
			S.auth_user = xstrdup(username);
			if (challenge_b64 != NULL && *challenge_b64 != '\0') {
				conn_printf(c, "334 %s\r\n", challenge_b64);
				sc->auth_final = true;
				break;
			}
			sc->in_auth = false;
			conn_write_str(c, "235 2.7.0 Authentication successful\r\n");
			break;
		default:
			sc->in_auth = false;
			conn_write_str(c, "535 5.7.8 Authentication credentials invalid\r\n");
			break;
		}
	}
	conn_unref(c);
}

/* Passes a response to the SASL server. */
static void srv_sasl_step(conn *c, struct srv_conn *sc, const char *response)
{
	conn_ref(c);
	sasl_server_step(sc->sasl, response, srv_sasl_done, c);
}

/* The end of the data: one reply (SMTP) or one per recipient (LMTP). */
static void srv_end_of_data(conn *c, struct srv_conn *sc)
{
	buf_reset(&S.body);
	buf_append(&S.body, sc->body.data, sc->body.len);
	S.messages++;
	if (!S.cfg.lmtp) {
		conn_printf(c, "250 2.0.0 Queued as %u\r\n", S.messages);
	} else {
		for (size_t i = 0; i < sc->rcpt_count; i++) {
			if (strncmp(sc->rcpts[i], "quota", 5) == 0)
				conn_printf(c, "452 4.2.2 <%s> Mailbox full\r\n", sc->rcpts[i]);
			else
				conn_printf(c, "250 2.0.0 <%s> Delivered\r\n", sc->rcpts[i]);
		}
	}
	srv_reset_transaction(sc);
}

static void srv_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct srv_conn *sc = conn_data(c);
	if (sc->in_data) {
		if (strcmp(line, ".") == 0) {
			sc->in_data = false;
			srv_end_of_data(c, sc);
			return;
		}
		const char *text = line[0] == '.' ? line + 1 : line;
		buf_append_str(&sc->body, text);
		buf_append_str(&sc->body, "\r\n");
		return;
	}
	if (sc->in_auth) {
		if (sc->auth_final) {
			sc->in_auth = sc->auth_final = false;
			conn_write_str(c, "235 2.7.0 Authentication successful\r\n");
			return;
		}
		srv_sasl_step(c, sc, line);
		return;
	}
	buf_printf(&S.log, "%s\n", line);
	if (S.cfg.drop_after != NULL &&
	    strncasecmp(line, S.cfg.drop_after, strlen(S.cfg.drop_after)) == 0) {
		conn_abort(c);
		return;
	}
	if (strncasecmp(line, "EHLO ", 5) == 0 || strncasecmp(line, "LHLO ", 5) == 0) {
		conn_write_str(c, S.cfg.ehlo);
	} else if (strncasecmp(line, "HELO ", 5) == 0) {
		conn_write_str(c, "250 mx.test\r\n");
	} else if (strcasecmp(line, "STARTTLS") == 0) {
		conn_write_str(c, "220 2.0.0 Ready to start TLS\r\n");
		assert_int_equal(conn_start_tls(c), 0);
	} else if (strncasecmp(line, "AUTH ", 5) == 0) {
		char mech[32] = "";
		char initial[1024] = "";
		int n = sscanf(line + 5, "%31s %1023s", mech, initial);
		sasl_server_free(&sc->sasl);
		sc->sasl = sasl_server_new(&loop, db, mech, 0);
		if (sc->sasl == NULL) {
			conn_write_str(c, "504 5.5.4 Unknown mechanism\r\n");
			return;
		}
		sc->in_auth = true;
		srv_sasl_step(c, sc, n == 2 ? (strcmp(initial, "=") == 0 ? "" : initial) : NULL);
	} else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
		S.tls_at_mail = conn_is_tls(c);
		conn_write_str(c, "250 2.1.0 Ok\r\n");
	} else if (strncasecmp(line, "RCPT TO:<", 9) == 0) {
		const char *addr = line + 9;
		size_t alen = strcspn(addr, ">");
		if (strncmp(addr, "bad", 3) == 0) {
			conn_write_str(c, "550 5.1.1 No such user\r\n");
		} else if (strncmp(addr, "temp", 4) == 0) {
			conn_write_str(c, "451 4.2.1 Try again later\r\n");
		} else if (sc->rcpt_count < 16) {
			sc->rcpts[sc->rcpt_count++] = xstrndup(addr, alen);
			conn_write_str(c, "250 2.1.5 Ok\r\n");
		}
	} else if (strcasecmp(line, "DATA") == 0) {
		if (S.cfg.refuse_data)
			conn_write_str(c, "554 5.3.0 Not today\r\n");
		else if (sc->rcpt_count == 0)
			conn_write_str(c, "503 5.5.1 No valid recipients\r\n");
		else {
			conn_write_str(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
			sc->in_data = true;
		}
	} else if (strcasecmp(line, "RSET") == 0) {
		srv_reset_transaction(sc);
		conn_write_str(c, "250 2.0.0 Ok\r\n");
	} else if (strcasecmp(line, "QUIT") == 0) {
		conn_write_str(c, "221 2.0.0 Bye\r\n");
		conn_close(c);
	} else {
		conn_write_str(c, "500 5.5.2 What?\r\n");
	}
}

static void srv_on_tls_ready(conn *c)
{
}

static void srv_on_close(conn *c)
{
	struct srv_conn *sc = conn_data(c);
	if (sc == NULL)
		return;
	srv_reset_transaction(sc);
	buf_free(&sc->body);
	sasl_server_free(&sc->sasl);
	free(sc);
	conn_set_data(c, NULL);
}

static const struct conn_handlers srv_handlers = {
	.on_open = srv_on_open,
	.on_line = srv_on_line,
	.on_tls_ready = srv_on_tls_ready,
	.on_close = srv_on_close,
};

#define EHLO_BASIC "250-mx.test greets you\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n"
#define EHLO_PIPELINING "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"

/* Starts the server with cfg. */
static void srv_start(const struct srv_config *cfg)
{
	S.cfg = *cfg;
	struct net_server_opts opts = {
		.proto = cfg->lmtp ? "lmtp" : "smtp",
		.max_line = 4096,
		.tls = server_tls,
	};
	srv = net_server_new(&loop, &opts, &srv_handlers, NULL);
	char *err = NULL;
	assert_int_equal(net_server_listen_tcp(srv, "127.0.0.1", 0, 1, false, &err), 0);
	srv_port = net_server_bound_port(srv, 1);
	assert_true(srv_port > 0);
}

/* ---- the client side ---- */

struct outcome {
	enum smtp_client_stage stage;
	int code;
	char status[16];
	bool accepted;
};

struct run {
	smtp_client *cl;
	struct smtp_client_message msg;
	unsigned to_send;        /* messages to send in the session */
	unsigned sent;
	unsigned done;
	struct outcome rcpt[8];
	size_t rcpt_count;
	int final_code;
	bool complete;
	bool tls;
	char auth[32];
	bool quit_in_done;       /* QUIT from message_done instead of ready */
	bool closed;
	enum smtp_client_failure failure;
	char command[16];
	int end_code;
	char end_error[128];
	buf_t transcript;
	bool greeted;
};

static void run_ready(smtp_client *cl, void *arg)
{
	struct run *r = arg;
	if (r->sent < r->to_send) {
		r->sent++;
		smtp_client_send(cl, &r->msg);
		return;
	}
	smtp_client_quit(cl);
}

static void run_message_done(smtp_client *cl, const struct smtp_client_result *res, void *arg)
{
	struct run *r = arg;
	r->done++;
	r->rcpt_count = res->rcpt_count;
	for (size_t i = 0; i < res->rcpt_count && i < 8; i++) {
		r->rcpt[i].stage = res->rcpts[i].stage;
		r->rcpt[i].code = res->rcpts[i].reply.code;
		snprintf(r->rcpt[i].status, sizeof(r->rcpt[i].status), "%s",
			 res->rcpts[i].reply.status);
		r->rcpt[i].accepted = res->rcpts[i].accepted;
	}
	r->final_code = res->final->code;
	r->complete = res->complete;
	r->tls = smtp_client_is_tls(cl);
	const char *mech = smtp_client_auth_mechanism(cl);
	snprintf(r->auth, sizeof(r->auth), "%s", mech != NULL ? mech : "");
	if (r->quit_in_done)
		smtp_client_quit(cl);
}

static void run_closed(smtp_client *cl, const struct smtp_client_end *end, void *arg)
{
	struct run *r = arg;
	r->closed = true;
	r->failure = end->failure;
	snprintf(r->command, sizeof(r->command), "%s", end->command != NULL ? end->command : "");
	r->end_code = end->reply != NULL ? end->reply->code : 0;
	snprintf(r->end_error, sizeof(r->end_error), "%s", end->error != NULL ? end->error : "");
	r->cl = NULL;
}

static void run_transcript(smtp_client *cl, char dir, const char *line, size_t len, void *arg)
{
	struct run *r = arg;
	buf_printf(&r->transcript, "%c: %.*s\n", dir, (int)len, line);
}

static void run_greeted(smtp_client *cl, const struct smtp_client_reply *greeting, void *arg)
{
	struct run *r = arg;
	r->greeted = true;
}

static const struct smtp_client_callbacks run_callbacks = {
	.greeted = run_greeted,
	.ready = run_ready,
	.message_done = run_message_done,
	.closed = run_closed,
	.transcript = run_transcript,
};

/* A repeating timer so UV_RUN_ONCE always returns within 10 ms. */
static uv_timer_t tick;
static void tick_cb(uv_timer_t *t)
{
}

/* Connects with opts and callbacks and runs the loop until the session has closed. */
static void run_session_with(struct run *r, const struct smtp_client_opts *opts,
			     const struct smtp_client_callbacks *callbacks)
{
	buf_init(&r->transcript);
	char *err = NULL;
	assert_int_equal(smtp_client_connect_tcp(&loop, "127.0.0.1", srv_port, opts, callbacks, r,
						 &r->cl, &err),
			 0);
	uint64_t deadline = uv_now(&loop) + WAIT_MS;
	while (!r->closed && uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(r->closed);
}

/* The same with the usual callbacks. */
static void run_session(struct run *r, const struct smtp_client_opts *opts)
{
	run_session_with(r, opts, &run_callbacks);
}

/* Runs the loop until the server's log holds text (the server may read the
 * client's last line after the client is gone). */
static bool wait_log(const char *text)
{
	uint64_t deadline = uv_now(&loop) + WAIT_MS;
	while (strstr(buf_cstr(&S.log), text) == NULL && uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	return strstr(buf_cstr(&S.log), text) != NULL;
}

static const char *const two_rcpts[] = {"bob@example.test", "carol@example.test"};
static const char body_text[] = "Subject: hi\r\n\r\nHello.\r\n.hidden line\r\n..two dots\r\n";

/* A message to two recipients with the body above. */
static struct smtp_client_message message_to(const char *const *rcpts, size_t count)
{
	struct smtp_client_message m = {
		.sender = "alice@example.test",
		.mail_params = "BODY=8BITMIME",
		.rcpts = rcpts,
		.rcpt_count = count,
		.data = body_text,
		.len = sizeof(body_text) - 1,
	};
	return m;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	memset(&S, 0, sizeof(S));
	buf_init(&S.log);
	buf_init(&S.body);
	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 10, 10);
	return 0;
}

static int teardown(void **state)
{
	net_server_free(&srv);
	uv_close((uv_handle_t *)&tick, NULL);
	for (int i = 0; i < 1000 && uv_loop_alive(&loop); i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&loop), 0);
	buf_free(&S.log);
	buf_free(&S.body);
	free(S.auth_user);
	return 0;
}

static int group_setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	char *err = NULL;
	assert_int_equal(tls_make_self_signed(cert_path, key_path, "mx.test", &err), 0);
	server_tls = tls_ctx_server_new(cert_path, key_path, &err);
	assert_non_null(server_tls);
	client_tls = tls_ctx_client_new(false, NULL, &err);
	assert_non_null(client_tls);
	if (userdb_open(tmpdir, &db, &err) < 0 || userdb_user_add(db, USER, PASSWORD, &err) < 0)
		fail_msg("userdb: %s", err);
	return 0;
}

static int group_teardown(void **state)
{
	userdb_close(&db);
	tls_ctx_free(&server_tls);
	tls_ctx_free(&client_tls);
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	int rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

static const struct smtp_client_opts smtp_opts = {
	.protocol = SMTP_CLIENT_SMTP,
	.helo_name = "client.test",
};

/* ---- sessions ---- */

/* Without PIPELINING: one command, one reply; the body dot-stuffed; QUIT. */
static void test_normal_flow(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_BASIC};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 2)};
	run_session(&r, &smtp_opts);
	assert_true(r.greeted);
	assert_int_equal(r.done, 1);
	assert_true(r.complete);
	assert_int_equal(r.failure, SMTP_CLIENT_QUIT);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(r.rcpt[i].stage, SMTP_STAGE_END_OF_DATA);
		assert_int_equal(r.rcpt[i].code, 250);
		assert_string_equal(r.rcpt[i].status, "2.0.0");
	}
	assert_int_equal(r.final_code, 250);
	assert_string_equal(buf_cstr(&S.body), "Subject: hi\r\n\r\nHello.\r\n.hidden line\r\n"
			    "..two dots\r\n");
	assert_string_equal(buf_cstr(&S.log), "EHLO client.test\n"
			    "MAIL FROM:<alice@example.test> BODY=8BITMIME\n"
			    "RCPT TO:<bob@example.test>\nRCPT TO:<carol@example.test>\nDATA\nQUIT\n");
	/* lockstep: each command waits for its reply */
	assert_non_null(strstr(buf_cstr(&r.transcript),
			       "C: MAIL FROM:<alice@example.test> BODY=8BITMIME\nS: 250 2.1.0 Ok\n"
			       "C: RCPT TO:<bob@example.test>\nS: 250 2.1.5 Ok\n"));
	buf_free(&r.transcript);
}

/* With PIPELINING: MAIL, RCPTs and DATA in one batch, replies read in order. */
static void test_pipelining(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_PIPELINING};
	srv_start(&cfg);
	struct run r = {.to_send = 2, .msg = message_to(two_rcpts, 2)};
	run_session(&r, &smtp_opts);
	assert_int_equal(r.done, 2);
	assert_int_equal(S.messages, 2);
	assert_non_null(strstr(buf_cstr(&r.transcript),
			       "C: MAIL FROM:<alice@example.test> BODY=8BITMIME\n"
			       "C: RCPT TO:<bob@example.test>\nC: RCPT TO:<carol@example.test>\n"
			       "C: DATA\nS: 250 2.1.0 Ok\n"));
	/* no RSET after a transaction that ended with the data */
	assert_null(strstr(buf_cstr(&S.log), "RSET"));
	assert_int_equal(r.rcpt[1].code, 250);
	buf_free(&r.transcript);
}

/* LMTP: one reply per accepted recipient after the data. */
static void test_lmtp_per_recipient(void **state)
{
	struct srv_config cfg = {.lmtp = true, .greeting = "220 mda LMTP",
				 .ehlo = "250-mda\r\n250-8BITMIME\r\n250 XLIFECYCLE\r\n"};
	srv_start(&cfg);
	static const char *const rcpts[] = {"bob@example.test", "bad@example.test",
					    "quota@example.test"};
	struct run r = {.to_send = 1, .msg = message_to(rcpts, 3)};
	struct smtp_client_opts opts = {.protocol = SMTP_CLIENT_LMTP, .helo_name = "mta.test"};
	run_session(&r, &opts);
	assert_int_equal(r.done, 1);
	assert_true(r.complete);
	assert_int_equal(r.rcpt[0].stage, SMTP_STAGE_END_OF_DATA);
	assert_int_equal(r.rcpt[0].code, 250);
	assert_int_equal(r.rcpt[1].stage, SMTP_STAGE_RCPT);
	assert_int_equal(r.rcpt[1].code, 550);
	assert_string_equal(r.rcpt[1].status, "5.1.1");
	assert_false(r.rcpt[1].accepted);
	assert_int_equal(r.rcpt[2].stage, SMTP_STAGE_END_OF_DATA);
	assert_int_equal(r.rcpt[2].code, 452);
	assert_string_equal(r.rcpt[2].status, "4.2.2");
	assert_true(r.rcpt[2].accepted);
	assert_non_null(strstr(buf_cstr(&S.log), "LHLO mta.test\n"));
	/* always pipelined (RFC 2033 4.2) */
	assert_non_null(strstr(buf_cstr(&r.transcript), "C: DATA\nS: 250 2.1.0 Ok\n"));
	buf_free(&r.transcript);
}

/* STARTTLS when offered, then EHLO again over TLS. */
static void test_starttls(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP",
				 .ehlo = "250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n"};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 1)};
	struct smtp_client_opts opts = smtp_opts;
	opts.tls_mode = SMTP_CLIENT_TLS_OPPORTUNISTIC;
	opts.tls = client_tls;
	run_session(&r, &opts);
	assert_int_equal(r.done, 1);
	assert_true(r.tls);
	assert_true(S.tls_at_mail);
	assert_string_equal(buf_cstr(&S.log), "EHLO client.test\nSTARTTLS\nEHLO client.test\n"
			    "MAIL FROM:<alice@example.test> BODY=8BITMIME\n"
			    "RCPT TO:<bob@example.test>\nDATA\nQUIT\n");
	buf_free(&r.transcript);
}

/* TLS required but not offered: nothing is sent, the session ends. */
static void test_starttls_required(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_BASIC};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 1)};
	struct smtp_client_opts opts = smtp_opts;
	opts.tls_mode = SMTP_CLIENT_TLS_REQUIRED;
	opts.tls = client_tls;
	opts.auth_user = USER;
	opts.auth_password = PASSWORD;
	run_session(&r, &opts);
	assert_int_equal(r.done, 0);
	assert_int_equal(r.failure, SMTP_CLIENT_NO_TLS);
	assert_null(strstr(buf_cstr(&S.log), "AUTH"));
	buf_free(&r.transcript);
}

/* AUTH with a given mechanism, or the best one offered; a wrong password. */
static void run_auth(const char *mech, const char *password, struct run *r)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP",
				 .ehlo = "250-mx.test\r\n250-AUTH LOGIN PLAIN SCRAM-SHA-256\r\n"
					 "250 PIPELINING\r\n"};
	srv_start(&cfg);
	r->to_send = 1;
	r->msg = message_to(two_rcpts, 1);
	struct smtp_client_opts opts = smtp_opts;
	opts.auth_user = USER;
	opts.auth_password = password;
	opts.auth_mechanism = mech;
	run_session(r, &opts);
}

static void test_auth_plain(void **state)
{
	struct run r = {0};
	run_auth("PLAIN", PASSWORD, &r);
	assert_int_equal(r.done, 1);
	assert_string_equal(r.auth, "PLAIN");
	assert_string_equal(S.auth_user, USER);
	/* the secret never reaches the transcript */
	assert_non_null(strstr(buf_cstr(&r.transcript), "C: AUTH PLAIN ****\n"));
	buf_free(&r.transcript);
}

static void test_auth_scram(void **state)
{
	struct run r = {0};
	run_auth(NULL, PASSWORD, &r);
	assert_int_equal(r.done, 1);
	assert_string_equal(r.auth, "SCRAM-SHA-256");
	assert_string_equal(S.auth_user, USER);
	buf_free(&r.transcript);
}

static void test_auth_login(void **state)
{
	struct run r = {0};
	run_auth("LOGIN", PASSWORD, &r);
	assert_int_equal(r.done, 1);
	assert_string_equal(r.auth, "LOGIN");
	buf_free(&r.transcript);
}

static void test_auth_refused(void **state)
{
	struct run r = {0};
	run_auth("PLAIN", "wrong", &r);
	assert_int_equal(r.done, 0);
	assert_int_equal(r.failure, SMTP_CLIENT_REFUSED);
	assert_string_equal(r.command, "AUTH");
	assert_int_equal(r.end_code, 535);
	assert_true(wait_log("QUIT\n"));
	buf_free(&r.transcript);
}

/* A 4xx to one RCPT: that recipient has its reply, the other is delivered. */
static void test_rcpt_temporary_failure(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_PIPELINING};
	srv_start(&cfg);
	static const char *const rcpts[] = {"temp@example.test", "bob@example.test"};
	struct run r = {.to_send = 1, .msg = message_to(rcpts, 2)};
	run_session(&r, &smtp_opts);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.rcpt[0].stage, SMTP_STAGE_RCPT);
	assert_int_equal(r.rcpt[0].code, 451);
	assert_string_equal(r.rcpt[0].status, "4.2.1");
	assert_int_equal(r.rcpt[1].stage, SMTP_STAGE_END_OF_DATA);
	assert_int_equal(r.rcpt[1].code, 250);
	assert_int_equal(S.messages, 1);
	buf_free(&r.transcript);
}

/* Every RCPT refused with DATA pipelined: no message goes, RSET, next one. */
static void test_all_rcpts_refused(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_PIPELINING};
	srv_start(&cfg);
	static const char *const rcpts[] = {"bad1@example.test", "bad2@example.test"};
	struct run r = {.to_send = 2, .msg = message_to(rcpts, 2)};
	run_session(&r, &smtp_opts);
	assert_int_equal(r.done, 2);
	assert_int_equal(r.rcpt[0].code, 550);
	assert_int_equal(r.rcpt[1].code, 550);
	assert_int_equal(S.messages, 0);
	assert_non_null(strstr(buf_cstr(&S.log), "DATA\nRSET\nMAIL"));
	buf_free(&r.transcript);
}

/* require_all_rcpts: one refusal and no DATA is sent. */
static void test_require_all_rcpts(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_PIPELINING};
	srv_start(&cfg);
	static const char *const rcpts[] = {"bob@example.test", "bad@example.test"};
	struct run r = {.to_send = 1, .msg = message_to(rcpts, 2)};
	struct smtp_client_opts opts = smtp_opts;
	opts.require_all_rcpts = true;
	run_session(&r, &opts);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.rcpt[0].stage, SMTP_STAGE_NONE);
	assert_true(r.rcpt[0].accepted);
	assert_int_equal(r.rcpt[1].code, 550);
	assert_null(strstr(buf_cstr(&S.log), "DATA"));
	assert_non_null(strstr(buf_cstr(&S.log), "RSET\nQUIT\n"));
	buf_free(&r.transcript);
}

/* A 5xx to DATA: the accepted recipients get it; RSET; the session goes on. */
static void test_data_refused(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_BASIC,
				 .refuse_data = true};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 2)};
	run_session(&r, &smtp_opts);
	assert_int_equal(r.done, 1);
	assert_true(r.complete);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(r.rcpt[i].stage, SMTP_STAGE_DATA);
		assert_int_equal(r.rcpt[i].code, 554);
		assert_string_equal(r.rcpt[i].status, "5.3.0");
	}
	assert_non_null(strstr(buf_cstr(&S.log), "DATA\nRSET\nQUIT\n"));
	assert_int_equal(r.failure, SMTP_CLIENT_QUIT);
	buf_free(&r.transcript);
}

/* The server hangs up in the middle: the message ends incomplete, the session LOST. */
static void test_dropped_connection(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_BASIC,
				 .drop_after = "RCPT TO:<carol"};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 2)};
	run_session(&r, &smtp_opts);
	assert_int_equal(r.done, 1);
	assert_false(r.complete);
	assert_true(r.rcpt[0].accepted);
	assert_int_equal(r.rcpt[0].stage, SMTP_STAGE_NONE);
	assert_int_equal(r.rcpt[1].stage, SMTP_STAGE_NONE);
	assert_int_equal(r.failure, SMTP_CLIENT_LOST);
	buf_free(&r.transcript);
}

/* A refused greeting ends the session with the reply. */
static void test_greeting_refused(void **state)
{
	struct srv_config cfg = {.greeting = "554-5.3.2 mx.test\r\n554 5.3.2 No service",
				 .ehlo = EHLO_BASIC};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 2)};
	run_session(&r, &smtp_opts);
	assert_int_equal(r.failure, SMTP_CLIENT_REFUSED);
	assert_string_equal(r.command, "greeting");
	assert_int_equal(r.end_code, 554);
	assert_int_equal(r.done, 0);
	buf_free(&r.transcript);
}

/* A server that never greets: the greeting timeout (scaled down) ends it. */
static void test_timeout(void **state)
{
	struct srv_config cfg = {.greeting = NULL, .ehlo = EHLO_BASIC};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 2)};
	struct smtp_client_opts opts = smtp_opts;
	opts.timeout_scale = 0.001; /* 300 ms */
	run_session(&r, &opts);
	assert_int_equal(r.failure, SMTP_CLIENT_TIMEOUT);
	assert_non_null(strstr(r.end_error, "GREETING"));
	buf_free(&r.transcript);
}

/* The extensions as seen from ready. */
static struct {
	bool checked;
	bool size, size_param, auth_plain, auth_cram, dsn, pipelining, helo_fallback;
} E;

static void ext_ready(smtp_client *cl, void *arg)
{
	E.checked = true;
	const char *size = smtp_client_extension(cl, "size");
	E.size = size != NULL;
	E.size_param = size != NULL && strcmp(size, "35882577") == 0;
	E.auth_plain = smtp_client_extension_has_param(cl, "AUTH", "plain");
	E.auth_cram = smtp_client_extension_has_param(cl, "AUTH", "CRAM-MD5");
	E.dsn = smtp_client_has_extension(cl, "DSN");
	E.pipelining = smtp_client_has_extension(cl, "PIPELINING");
	smtp_client_quit(cl);
}

/* A multi-line EHLO: keywords with parameters, case-insensitive, the old AUTH= form. */
static void test_extensions(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP",
				 .ehlo = "250-mx.test Hello client.test [127.0.0.1]\r\n"
					 "250-SIZE 35882577\r\n250-8BITMIME\r\n"
					 "250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
					 "250-dsn\r\n250 SMTPUTF8\r\n"};
	srv_start(&cfg);
	memset(&E, 0, sizeof(E));
	struct run r = {0};
	struct smtp_client_callbacks cbs = run_callbacks;
	cbs.ready = ext_ready;
	run_session_with(&r, &smtp_opts, &cbs);
	assert_true(E.checked);
	assert_true(E.size && E.size_param && E.auth_plain && E.dsn);
	assert_false(E.auth_cram);
	assert_false(E.pipelining);
	assert_int_equal(r.failure, SMTP_CLIENT_QUIT);
	buf_free(&r.transcript);
}

/* EHLO refused: HELO, and nothing offered. */
static void test_helo_fallback(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test", .ehlo = "502 5.5.1 Not here\r\n"};
	srv_start(&cfg);
	memset(&E, 0, sizeof(E));
	E.pipelining = true;
	struct run r = {0};
	struct smtp_client_callbacks cbs = run_callbacks;
	cbs.ready = ext_ready;
	run_session_with(&r, &smtp_opts, &cbs);
	assert_true(E.checked);
	assert_false(E.size || E.dsn || E.pipelining);
	assert_non_null(strstr(buf_cstr(&S.log), "EHLO client.test\nHELO client.test\n"));
	buf_free(&r.transcript);
}

/* A large body from a reader, bare LFs made CRLF, streamed with backpressure. */
#define READER_LINES 40000
static struct {
	unsigned line;
	char chunk[64];
} R;

static int reader_next(void *arg, const char **chunk_r, size_t *len_r)
{
	if (R.line >= READER_LINES)
		return 0;
	int n = R.line % 1000 == 7 ? snprintf(R.chunk, sizeof(R.chunk), ".dot line %u\n", R.line)
				   : snprintf(R.chunk, sizeof(R.chunk), "line %u of the body\n", R.line);
	R.line++;
	*chunk_r = R.chunk;
	*len_r = (size_t)n;
	return 1;
}

static void test_reader_body(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_PIPELINING};
	srv_start(&cfg);
	memset(&R, 0, sizeof(R));
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 1)};
	r.msg.data = NULL;
	r.msg.len = 0;
	r.msg.reader = reader_next;
	struct smtp_client_opts opts = smtp_opts;
	opts.normalize_newlines = true;
	run_session(&r, &opts);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.rcpt[0].code, 250);
	/* the server saw every line, CRLF-terminated and unstuffed */
	buf_t want = BUF_INIT;
	for (unsigned i = 0; i < READER_LINES; i++) {
		if (i % 1000 == 7)
			buf_printf(&want, ".dot line %u\r\n", i);
		else
			buf_printf(&want, "line %u of the body\r\n", i);
	}
	assert_true(want.len > NET_OUTPUT_HIGH_WATER);
	assert_int_equal(S.body.len, want.len);
	assert_memory_equal(S.body.data, want.data, want.len);
	buf_free(&want);
	buf_free(&r.transcript);
}

/* Abort while the greeting is awaited (a lab fault hangs up there). */
static void abort_on_greeting(smtp_client *cl, const struct smtp_client_reply *g, void *arg)
{
	smtp_client_abort(cl);
}

static void test_abort_after_greeting(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test ESMTP", .ehlo = EHLO_BASIC};
	srv_start(&cfg);
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 1)};
	struct smtp_client_callbacks cbs = run_callbacks;
	cbs.greeted = abort_on_greeting;
	run_session_with(&r, &smtp_opts, &cbs);
	assert_int_equal(r.failure, SMTP_CLIENT_ABORTED);
	assert_int_equal(S.log.len, 0);
	buf_free(&r.transcript);
}

/* Nobody listening: CONNECT, with the error. */
static void test_connect_refused(void **state)
{
	struct srv_config cfg = {.greeting = "220 mx.test", .ehlo = EHLO_BASIC};
	srv_start(&cfg);
	int port = srv_port;
	net_server_free(&srv);
	srv_port = port;
	struct run r = {.to_send = 1, .msg = message_to(two_rcpts, 1)};
	run_session(&r, &smtp_opts);
	assert_int_equal(r.failure, SMTP_CLIENT_CONNECT);
	assert_true(r.end_error[0] != '\0');
	buf_free(&r.transcript);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_parser),
		cmocka_unit_test(test_reply_parser_limits),
		cmocka_unit_test_setup_teardown(test_normal_flow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmtp_per_recipient, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starttls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starttls_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_scram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_login, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rcpt_temporary_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_rcpts_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_require_all_rcpts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dropped_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_greeting_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extensions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_helo_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_after_greeting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
