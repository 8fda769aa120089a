/* test_net.c: a real server and real clients over loopback in one libuv loop.
 *
 * The server speaks a tiny test protocol (below, server_on_line); clients
 * are conns made with net_connect_tcp/unix, so the outgoing side is tested
 * too. Every wait runs the loop until a condition holds or a deadline passes
 * (WAIT_MS), so no test can hang. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buffer.h"
#include "net.h"
#include "tls.h"

#define WAIT_MS 5000
#define KIND_PLAIN 1
#define KIND_TLS 2
/* Lines of the streamed reply: 998 'x' + CRLF. */
#define STREAM_LINE 1000

/* ---- the test server ---- */

struct server_state {
	buf_t log;          /* what the server saw, one event per line */
	conn *last;         /* the most recent conn opened */
	unsigned closes;
	uv_timer_t resume_timer;
	conn *paused;
	uint64_t bytes_got;
	/* streaming (conn_on_drain) */
	uint64_t stream_left;
	size_t max_pending;
	unsigned fills;
};

static struct server_state S;
static uv_loop_t loop;
static char tmpdir[] = "/tmp/test_net_XXXXXX";
static char cert_path[256], key_path[256];

static void server_on_open(conn *c)
{
	S.last = c;
	buf_append_str(&S.log, "open\n");
	conn_write_str(c, "220 hello\r\n");
}

/* Ends the pause PAUSE started; lines must come only after "resumed". */
static void resume_cb(uv_timer_t *t)
{
	buf_append_str(&S.log, "resuming\n");
	conn_resume(S.paused);
	buf_append_str(&S.log, "resumed\n");
	conn_unref(S.paused);
	S.paused = NULL;
}

/* Writes the next chunk of a STREAM reply each time the output drains. */
static void stream_more(conn *c, void *arg)
{
	if (conn_is_closing(c))
		return;
	char line[STREAM_LINE];
	memset(line, 'x', sizeof(line));
	line[STREAM_LINE - 2] = '\r';
	line[STREAM_LINE - 1] = '\n';
	for (int i = 0; i < 64 && S.stream_left > 0; i++) {
		conn_write_quiet(c, line, sizeof(line));
		S.stream_left--;
	}
	if (conn_output_pending(c) > S.max_pending)
		S.max_pending = conn_output_pending(c);
	if (S.stream_left > 0)
		conn_on_drain(c, stream_more, NULL);
	else
		conn_write_str(c, "END\r\n");
}

static void server_on_line(conn *c, char *line, size_t len, bool crlf)
{
	buf_printf(&S.log, "line %s\n", line);
	if (strcmp(line, "PAUSE") == 0) {
		conn_pause(c);
		conn_ref(c);
		S.paused = c;
		uv_timer_start(&S.resume_timer, resume_cb, 100, 0);
	} else if (strcmp(line, "STARTTLS") == 0) {
		conn_write_str(c, "220 go ahead\r\n");
		assert_int_equal(conn_start_tls(c), 0);
	} else if (strncmp(line, "BYTES ", 6) == 0) {
		conn_read_bytes(c, strtoull(line + 6, NULL, 10));
	} else if (strncmp(line, "STREAM ", 7) == 0) {
		S.stream_left = strtoull(line + 7, NULL, 10);
		S.max_pending = 0;
		stream_more(c, NULL);
	} else if (strcmp(line, "FILL") == 0) {
		/* A reply bigger than the client takes: backpressure. */
		static char fill[32768];
		memset(fill, 'f', sizeof(fill) - 2);
		fill[sizeof(fill) - 2] = '\r';
		fill[sizeof(fill) - 1] = '\n';
		conn_write_quiet(c, fill, sizeof(fill));
		S.fills++;
		if (conn_output_pending(c) > S.max_pending)
			S.max_pending = conn_output_pending(c);
	} else if (strcmp(line, "QUIT") == 0) {
		conn_write_str(c, "221 bye\r\n");
		conn_close(c);
	} else if (strcmp(line, "TLS?") == 0) {
		conn_printf(c, "TLS %s\r\n", conn_is_tls(c) ? conn_tls_version(c) : "no");
	} else {
		conn_printf(c, "E%c:%.*s\r\n", crlf ? '+' : '-', (int)len, line);
	}
}

static void server_on_too_long(conn *c)
{
	buf_append_str(&S.log, "too long\n");
	conn_write_str(c, "500 too long\r\n");
}

static void server_on_bytes(conn *c, const char *data, size_t len, bool last)
{
	S.bytes_got += len;
	if (last) {
		conn_printf(c, "GOT %llu\r\n", (unsigned long long)S.bytes_got);
		S.bytes_got = 0;
	}
}

static void server_on_tls_ready(conn *c)
{
	buf_append_str(&S.log, "tls ready\n");
}

static void server_on_timeout(conn *c)
{
	conn_write_str(c, "421 timeout\r\n");
	conn_close(c);
}

static void server_on_close(conn *c)
{
	S.closes++;
	if (S.last == c)
		S.last = NULL;
}

static const struct conn_handlers server_handlers = {
	.on_open = server_on_open,
	.on_line = server_on_line,
	.on_line_too_long = server_on_too_long,
	.on_bytes = server_on_bytes,
	.on_tls_ready = server_on_tls_ready,
	.on_timeout = server_on_timeout,
	.on_close = server_on_close,
};

/* ---- test clients ---- */

struct client {
	conn *c;
	int connect_status;
	bool connected;
	bool closed;
	bool tls_ready;
	buf_t lines;        /* non-stream lines received, '\n' after each */
	uint64_t stream_lines;
	char *tls_error;
};

static void client_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct client *cl = conn_data(c);
	if (len > 0 && (line[0] == 'x' || line[0] == 'f')) {
		cl->stream_lines++;
		return;
	}
	buf_append(&cl->lines, line, len);
	buf_append_char(&cl->lines, '\n');
}

static void client_on_tls_ready(conn *c)
{
	struct client *cl = conn_data(c);
	cl->tls_ready = true;
}

static void client_on_close(conn *c)
{
	struct client *cl = conn_data(c);
	cl->closed = true;
	free(cl->tls_error);
	cl->tls_error = xstrdup(conn_tls_error(c));
	cl->c = NULL;
}

static const struct conn_handlers client_handlers = {
	.on_line = client_on_line,
	.on_tls_ready = client_on_tls_ready,
	.on_close = client_on_close,
};

static void client_connected(conn *c, int status, const char *err, void *arg)
{
	struct client *cl = arg;
	cl->connect_status = status;
	cl->connected = true;
	cl->c = c;
}

/* A repeating timer so UV_RUN_ONCE always returns within 10 ms. */
static uv_timer_t tick;
static void tick_cb(uv_timer_t *t)
{
}

/* Runs the loop until *flag is true or WAIT_MS passes; returns *flag. */
static bool wait_flag(const bool *flag)
{
	uint64_t deadline = uv_now(&loop) + WAIT_MS;
	while (!*flag && uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	return *flag;
}

/* Runs the loop until text appears in buf or WAIT_MS passes. */
static bool wait_text(const buf_t *b, const char *text)
{
	uint64_t deadline = uv_now(&loop) + WAIT_MS;
	while (strstr(buf_cstr(b), text) == NULL && uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	return strstr(buf_cstr(b), text) != NULL;
}

/* Runs the loop for ms milliseconds. */
static void run_for(uint64_t ms)
{
	uint64_t deadline = uv_now(&loop) + ms;
	while (uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
}

static struct client *client_tcp(const char *host, int port)
{
	struct client *cl = xcalloc(1, sizeof(*cl));
	buf_init(&cl->lines);
	assert_int_equal(net_connect_tcp(&loop, host, port, "test", 65536, &client_handlers, cl,
					 client_connected, cl),
			 0);
	assert_true(wait_flag(&cl->connected));
	assert_int_equal(cl->connect_status, 0);
	return cl;
}

/* Closes the client if open, waits for its on_close, frees it. */
static void client_free(struct client *cl)
{
	if (cl->c != NULL) {
		conn_abort(cl->c);
		assert_true(wait_flag(&cl->closed));
	}
	buf_free(&cl->lines);
	free(cl->tls_error);
	free(cl);
}

/* ---- fixtures ---- */

static net_server *srv;
static tls_ctx *server_tls;
static int plain_port, tls_port;

static int setup(void **state)
{
	memset(&S, 0, sizeof(S));
	buf_init(&S.log);
	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 10, 10);
	uv_timer_init(&loop, &S.resume_timer);
	return 0;
}

/* Starts the test server with the given limits. */
static void server_start(unsigned max_conn, unsigned max_per_ip, uint64_t idle_ms)
{
	struct net_server_opts opts = {
		.proto = "test",
		.max_line = 100,
		.max_connections = max_conn,
		.max_per_ip = max_per_ip,
		.idle_timeout_ms = idle_ms,
		.too_many_reply = "421 too many\r\n",
		.tls = server_tls,
	};
	srv = net_server_new(&loop, &opts, &server_handlers, NULL);
	char *err = NULL;
	assert_int_equal(net_server_listen_tcp(srv, "127.0.0.1", 0, KIND_PLAIN, false, &err), 0);
	assert_int_equal(net_server_listen_tcp(srv, "127.0.0.1", 0, KIND_TLS, true, &err), 0);
	plain_port = net_server_bound_port(srv, KIND_PLAIN);
	tls_port = net_server_bound_port(srv, KIND_TLS);
	assert_true(plain_port > 0);
	assert_true(tls_port > 0);
}

static int teardown(void **state)
{
	net_server_free(&srv);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_close((uv_handle_t *)&S.resume_timer, NULL);
	/* Everything closes within a few iterations. */
	for (int i = 0; i < 1000 && uv_loop_alive(&loop); i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&loop), 0);
	buf_free(&S.log);
	return 0;
}

static int group_setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	char *err = NULL;
	assert_int_equal(tls_make_self_signed(cert_path, key_path, "mail.example.test", &err), 0);
	server_tls = tls_ctx_server_new(cert_path, key_path, &err);
	assert_non_null(server_tls);
	return 0;
}

static int group_teardown(void **state)
{
	tls_ctx_free(&server_tls);
	unlink(cert_path);
	unlink(key_path);
	rmdir(tmpdir);
	return 0;
}

/* ---- tests ---- */

/* Greeting, CRLF and bare-LF lines, QUIT flushes then closes. */
static void test_lines_and_quit(void **state)
{
	server_start(0, 0, 0);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_text(&cl->lines, "220 hello\n"));
	assert_string_equal(conn_peer_addr(cl->c), "127.0.0.1");
	conn_write_str(cl->c, "one\r\ntwo\nthree\rx\r\nQUIT\r\n");
	assert_true(wait_flag(&cl->closed));
	assert_string_equal(buf_cstr(&cl->lines),
			    "220 hello\nE+:one\nE-:two\nE+:three\rx\n221 bye\n");
	assert_int_equal(S.closes, 1);
	assert_int_equal(net_server_connection_count(srv), 0);
	client_free(cl);
}

/* Pipelined lines after PAUSE wait until the resume, delivered from the loop. */
static void test_pause_resume(void **state)
{
	server_start(0, 0, 0);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	conn_write_str(cl->c, "PAUSE\r\nA\r\nB\r\n");
	assert_true(wait_text(&cl->lines, "E+:B\n"));
	assert_string_equal(buf_cstr(&S.log),
			    "open\nline PAUSE\nresuming\nresumed\nline A\nline B\n");
	client_free(cl);
}

/* An over-long line gets one error and the session goes on. */
static void test_line_too_long(void **state)
{
	server_start(0, 0, 0);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	char big[1000];
	memset(big, 'a', sizeof(big));
	conn_write(cl->c, big, sizeof(big));
	conn_write(cl->c, big, sizeof(big));
	conn_write_str(cl->c, "\r\nNEXT\r\n");
	assert_true(wait_text(&cl->lines, "E+:NEXT\n"));
	assert_string_equal(buf_cstr(&cl->lines), "220 hello\n500 too long\nE+:NEXT\n");
	client_free(cl);
}

/* Exact-byte mode switches back to lines in the middle of one read. */
static void test_read_bytes(void **state)
{
	server_start(0, 0, 0);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	conn_write_str(cl->c, "BYTES 12\r\n0123456789\r\nNEXT\r\nBYTES 0\r\nLAST\r\n");
	assert_true(wait_text(&cl->lines, "E+:LAST\n"));
	assert_string_equal(buf_cstr(&cl->lines), "220 hello\nGOT 12\nE+:NEXT\nGOT 0\nE+:LAST\n");
	client_free(cl);
}

/* A client that does not read: the server stops reading it, output stays
 * bounded; once it reads again everything arrives. */
static void test_backpressure(void **state)
{
	server_start(0, 0, 0);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_text(&cl->lines, "220 hello\n"));
	conn_pause(cl->c);
	/* Loopback kernel buffers can hold several megabytes: ask for far more. */
	enum { FILLS = 1000 };
	for (int i = 0; i < FILLS; i++)
		conn_write_str(cl->c, "FILL\r\n");
	run_for(500);
	/* 1000 x 32 KiB = 32 MB asked for; the server stopped well before. */
	assert_true(S.fills < FILLS);
	assert_true(S.last != NULL);
	size_t pending = conn_output_pending(S.last);
	assert_true(pending > 0);
	assert_true(pending <= NET_OUTPUT_HIGH_WATER + 64 * 32768);
	conn_resume(cl->c);
	uint64_t deadline = uv_now(&loop) + WAIT_MS;
	while (cl->stream_lines < FILLS && uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(cl->stream_lines, FILLS);
	assert_int_equal(S.fills, FILLS);
	client_free(cl);
}

/* A producer streaming with conn_on_drain keeps output under the mark. */
static void test_drain_stream(void **state)
{
	server_start(0, 0, 0);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	conn_pause(cl->c);
	conn_write_str(cl->c, "STREAM 5000\r\n");
	run_for(300);
	conn_resume(cl->c);
	assert_true(wait_text(&cl->lines, "END\n"));
	assert_int_equal(cl->stream_lines, 5000);
	/* Each drain adds one batch of 64 lines on top of less than the low mark. */
	assert_true(S.max_pending < NET_OUTPUT_LOW_WATER + 64 * STREAM_LINE);
	client_free(cl);
}

/* The idle timer calls on_timeout; the reply is flushed before the close. */
static void test_idle_timeout(void **state)
{
	server_start(0, 0, 200);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_flag(&cl->closed));
	assert_string_equal(buf_cstr(&cl->lines), "220 hello\n421 timeout\n");
	client_free(cl);
}

/* Over the per-IP limit: the reply, then close; the others are untouched. */
static void test_connection_limits(void **state)
{
	server_start(10, 2, 0);
	struct client *a = client_tcp("127.0.0.1", plain_port);
	struct client *b = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_text(&a->lines, "220 hello\n"));
	assert_true(wait_text(&b->lines, "220 hello\n"));
	struct client *c = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_flag(&c->closed));
	assert_string_equal(buf_cstr(&c->lines), "421 too many\n");
	assert_int_equal(net_server_connection_count(srv), 2);
	client_free(c);
	client_free(a);
	/* A slot is free again. */
	run_for(50);
	struct client *d = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_text(&d->lines, "220 hello\n"));
	client_free(d);
	client_free(b);
}

/* Total limit. */
static void test_total_limit(void **state)
{
	server_start(1, 0, 0);
	struct client *a = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_text(&a->lines, "220 hello\n"));
	struct client *b = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_flag(&b->closed));
	assert_string_equal(buf_cstr(&b->lines), "421 too many\n");
	client_free(b);
	client_free(a);
}

/* The SHA-256 fingerprint of the test certificate, as tls.h formats it. */
static char *cert_fingerprint(void)
{
	FILE *f = fopen(cert_path, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n;
	assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
	X509_free(x);
	buf_t b = BUF_INIT;
	for (unsigned i = 0; i < n; i++)
		buf_printf(&b, i > 0 ? ":%02X" : "%02X", md[i]);
	return buf_steal(&b);
}

/* STARTTLS: plaintext sent after the command is discarded, never executed. */
static void test_starttls_injection(void **state)
{
	server_start(0, 0, 0);
	char *err = NULL;
	tls_ctx *client_tls = tls_ctx_client_new(true, cert_path, &err);
	assert_non_null(client_tls);
	struct client *cl = client_tcp("127.0.0.1", plain_port);
	conn_write_str(cl->c, "STARTTLS\r\nINJECTED\r\n");
	assert_true(wait_text(&cl->lines, "220 go ahead\n"));
	assert_int_equal(conn_start_tls_client(cl->c, client_tls, "mail.example.test"), 0);
	assert_true(wait_flag(&cl->tls_ready));
	assert_true(conn_is_tls(cl->c));
	assert_true(conn_tls_peer_verified(cl->c));
	char *fp = conn_tls_peer_fingerprint(cl->c);
	char *expect = cert_fingerprint();
	assert_string_equal(fp, expect);
	free(fp);
	free(expect);
	const char *version = conn_tls_version(cl->c);
	assert_true(strcmp(version, "TLSv1.2") == 0 || strcmp(version, "TLSv1.3") == 0);
	conn_write_str(cl->c, "TLS?\r\nAFTER\r\n");
	assert_true(wait_text(&cl->lines, "E+:AFTER\n"));
	assert_null(strstr(buf_cstr(&S.log), "INJECTED"));
	assert_string_equal(buf_cstr(&S.log),
			    "open\nline STARTTLS\ntls ready\nline TLS?\nline AFTER\n");
	assert_non_null(strstr(buf_cstr(&cl->lines), "TLS TLSv1."));
	/* Graceful close over TLS. */
	conn_write_str(cl->c, "QUIT\r\n");
	assert_true(wait_flag(&cl->closed));
	assert_non_null(strstr(buf_cstr(&cl->lines), "221 bye\n"));
	client_free(cl);
	tls_ctx_free(&client_tls);
}

/* Implicit TLS: on_open (the greeting) comes after the handshake. */
static void test_implicit_tls(void **state)
{
	server_start(0, 0, 0);
	char *err = NULL;
	tls_ctx *client_tls = tls_ctx_client_new(true, cert_path, &err);
	struct client *cl = client_tcp("127.0.0.1", tls_port);
	assert_int_equal(conn_start_tls_client(cl->c, client_tls, "localhost"), 0);
	assert_true(wait_flag(&cl->tls_ready));
	assert_true(wait_text(&cl->lines, "220 hello\n"));
	conn_write_str(cl->c, "TLS?\r\n");
	assert_true(wait_text(&cl->lines, "TLS TLSv1."));
	client_free(cl);
	tls_ctx_free(&client_tls);
}

/* A client that trusts only the system store rejects the self-signed cert;
 * one that trusts it rejects a wrong name. on_close reports why. */
static void test_tls_verify_failure(void **state)
{
	server_start(0, 0, 0);
	char *err = NULL;
	tls_ctx *system_ctx = tls_ctx_client_new(true, NULL, &err);
	struct client *cl = client_tcp("127.0.0.1", tls_port);
	assert_int_equal(conn_start_tls_client(cl->c, system_ctx, "localhost"), 0);
	assert_true(wait_flag(&cl->closed));
	assert_false(cl->tls_ready);
	assert_non_null(strstr(cl->tls_error, "certificate verify failed"));
	client_free(cl);

	tls_ctx *trusting = tls_ctx_client_new(true, cert_path, &err);
	cl = client_tcp("127.0.0.1", tls_port);
	assert_int_equal(conn_start_tls_client(cl->c, trusting, "wrong.example.org"), 0);
	assert_true(wait_flag(&cl->closed));
	assert_false(cl->tls_ready);
	assert_non_null(strstr(cl->tls_error, "certificate verify failed"));
	client_free(cl);

	/* Not verifying: connects, but reports the peer as unverified. */
	tls_ctx *lax = tls_ctx_client_new(false, NULL, &err);
	cl = client_tcp("127.0.0.1", tls_port);
	assert_int_equal(conn_start_tls_client(cl->c, lax, "localhost"), 0);
	assert_true(wait_flag(&cl->tls_ready));
	assert_false(conn_tls_peer_verified(cl->c));
	client_free(cl);
	tls_ctx_free(&system_ctx);
	tls_ctx_free(&trusting);
	tls_ctx_free(&lax);
}

/* Unix sockets and IPv6. */
static void test_unix_and_ipv6(void **state)
{
	server_start(0, 0, 0);
	char path[300];
	snprintf(path, sizeof(path), "%s/test.sock", tmpdir);
	char *err = NULL;
	assert_int_equal(net_server_listen_unix(srv, path, KIND_PLAIN, &err), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	struct client *cl = xcalloc(1, sizeof(*cl));
	buf_init(&cl->lines);
	assert_int_equal(net_connect_unix(&loop, path, "test", 4096, &client_handlers, cl,
					  client_connected, cl),
			 0);
	assert_true(wait_flag(&cl->connected));
	assert_int_equal(cl->connect_status, 0);
	assert_true(wait_text(&cl->lines, "220 hello\n"));
	assert_non_null(S.last);
	assert_string_equal(conn_peer_addr(S.last), "unix");
	assert_null(conn_peer_sockaddr(S.last));
	client_free(cl);

	assert_int_equal(net_server_listen_tcp(srv, "::1", 0, 7, false, &err), 0);
	int port6 = net_server_bound_port(srv, 7);
	cl = client_tcp("::1", port6);
	assert_true(wait_text(&cl->lines, "220 hello\n"));
	assert_string_equal(conn_peer_addr(S.last), "::1");
	client_free(cl);
	unlink(path);
}

/* Errors name the address; a refused connect names host and port. */
static void test_errors(void **state)
{
	server_start(0, 0, 0);
	char *err = NULL;
	assert_int_equal(net_server_listen_tcp(srv, "127.0.0.1", plain_port, 9, false, &err), -1);
	char expect[100];
	snprintf(expect, sizeof(expect), "cannot listen on 127.0.0.1:%d: address already in use",
		 plain_port);
	assert_string_equal(err, expect);
	free(err);
	err = NULL;
	assert_int_equal(net_server_listen_list(srv, " nonsense ", 0, 9, false, &err), -1);
	assert_string_equal(err, "cannot listen on nonsense:0: not an IP address");
	free(err);

	/* A port nobody listens on: the one we just closed. */
	struct client *probe = client_tcp("127.0.0.1", plain_port);
	client_free(probe);
	net_server_free(&srv);
	run_for(50);
	struct client *cl = xcalloc(1, sizeof(*cl));
	buf_init(&cl->lines);
	assert_int_equal(net_connect_tcp(&loop, "127.0.0.1", plain_port, "test", 100,
					 &client_handlers, cl, client_connected, cl),
			 0);
	assert_true(wait_flag(&cl->connected));
	assert_int_equal(cl->connect_status, UV_ECONNREFUSED);
	assert_null(cl->c);
	client_free(cl);
}

/* Graceful server shutdown flushes and closes every connection. */
static void test_shutdown(void **state)
{
	server_start(0, 0, 0);
	struct client *a = client_tcp("127.0.0.1", plain_port);
	struct client *b = client_tcp("127.0.0.1", plain_port);
	assert_true(wait_text(&a->lines, "220 hello\n"));
	assert_true(wait_text(&b->lines, "220 hello\n"));
	net_server_shutdown(srv);
	assert_true(wait_flag(&a->closed));
	assert_true(wait_flag(&b->closed));
	run_for(50);
	assert_int_equal(S.closes, 2);
	client_free(a);
	client_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_and_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_total_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starttls_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_implicit_tls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_verify_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unix_and_ipv6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
