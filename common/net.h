/* net.h: listeners and connections on libuv, with line reading, exact-byte
 * reading, buffered output with backpressure, timeouts, limits and TLS.
 *
 * A daemon creates one net_server per protocol with a table of callbacks and
 * calls net_server_listen_* for each port. Each accepted socket becomes a
 * `conn`: the protocol sees only whole lines (or exact byte counts after
 * conn_read_bytes), writes replies with conn_write*, and never touches libuv
 * or OpenSSL.
 *
 * Reading. Input is split on LF. The callback receives the line without its
 * terminator; crlf tells whether it ended in CRLF (false = bare LF: SMTP must
 * refuse it). A line longer than the connection's max_line is never buffered
 * whole: on_line_too_long is called once and the rest up to the next LF is
 * skipped. Lines are delivered one at a time; a handler that starts async work
 * calls conn_pause() and later conn_resume(), and no further line is
 * delivered in between (pipelined input waits in the buffer, bounded by
 * max_line; reading from the socket stops while paused).
 *
 * Writing. conn_write copies into the output buffer, sent at the end of the
 * current batch of input (so pipelined replies go out in one write). When the
 * unsent output passes NET_OUTPUT_HIGH_WATER, reading stops until it drains
 * below NET_OUTPUT_LOW_WATER; a producer streaming a large message registers
 * conn_on_drain and writes the next chunk when called.
 *
 * STARTTLS. conn_start_tls() is called after the protocol queued its "go
 * ahead" reply: that reply is flushed in plaintext, every input byte already
 * received is discarded (CVE-2011-0411), then the handshake runs and
 * on_tls_ready is called; the protocol resets its session state there.
 *
 * Lifetime. conn_close() flushes and closes; conn_abort() closes at once.
 * on_close is called exactly once, from libuv's close callback, and the conn
 * is freed after it returns. Async work keeps a conn alive with conn_ref() /
 * conn_unref() and checks conn_is_closing() before touching the session. */
#ifndef MAILSTACK_NET_H
#define MAILSTACK_NET_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tls.h"

#define NET_OUTPUT_HIGH_WATER (256 * 1024)
#define NET_OUTPUT_LOW_WATER (64 * 1024)

typedef struct conn conn;
typedef struct net_server net_server;

struct conn_handlers {
	/* Accepted (for implicit TLS: after the handshake). Send the greeting here. */
	void (*on_open)(conn *c);
	/* One line, without its LF (and without the CR before it when crlf).
	 * line[len] is '\0'; the line may contain NUL bytes (check len). */
	void (*on_line)(conn *c, char *line, size_t len, bool crlf);
	/* A line longer than max_line arrived; it is being skipped. */
	void (*on_line_too_long)(conn *c);
	/* Data requested with conn_read_bytes, in chunks; last = this completes it. */
	void (*on_bytes)(conn *c, const char *data, size_t len, bool last);
	/* The STARTTLS handshake completed. */
	void (*on_tls_ready)(conn *c);
	/* The idle or command timer fired; the protocol replies and closes. */
	void (*on_timeout)(conn *c);
	/* The connection is gone (peer closed, error, or conn_close); free the session. */
	void (*on_close)(conn *c);
};

struct net_server_opts {
	const char *proto;             /* "smtp", "lmtp", "imap", "pop3": names transcripts */
	size_t max_line;               /* longest line, terminator excluded */
	unsigned max_connections;      /* 0 = unlimited */
	unsigned max_per_ip;           /* 0 = unlimited */
	uint64_t idle_timeout_ms;      /* 0 = none */
	/* Sent before closing a connection refused by the limits, e.g.
	 * "421 4.7.0 Too many connections\r\n". */
	const char *too_many_reply;
	tls_ctx *tls;                  /* for implicit TLS listeners and STARTTLS; may be NULL */
};

net_server *net_server_new(uv_loop_t *loop, const struct net_server_opts *opts,
			   const struct conn_handlers *handlers, void *server_data);
/* Binds and listens on addr:port (IPv4 or IPv6 literal). kind is the
 * protocol's own tag for the listener (e.g. SMTP_PORT_SUBMISSION), returned by
 * conn_listener_kind. On error returns -1 and *err_r names the address and
 * port, e.g. "cannot listen on 127.0.0.1:10025: address already in use". */
int net_server_listen_tcp(net_server *srv, const char *addr, int port, int kind,
			  bool implicit_tls, char **err_r);
/* A unix socket; an old socket file at path is replaced. Mode 0660. */
int net_server_listen_unix(net_server *srv, const char *path, int kind, char **err_r);
/* Listens on every address of a comma-separated list ("127.0.0.1, ::1"). */
int net_server_listen_list(net_server *srv, const char *addr_list, int port, int kind,
			   bool implicit_tls, char **err_r);
/* Stops listening and closes every connection (graceful: flushes output). */
void net_server_shutdown(net_server *srv);
void net_server_free(net_server **srv);
void *net_server_data(const net_server *srv);
unsigned net_server_connection_count(const net_server *srv);
/* Finds a live connection by id (NULL when it is gone). */
conn *net_server_find(net_server *srv, uint64_t id);
/* The port the server's first TCP listener of this kind is bound to (useful
 * after listening on port 0), or -1. */
int net_server_bound_port(const net_server *srv, int kind);
/* Closes every connection on the loop at once, without flushing (a daemon's
 * forced stop). */
void net_abort_all(uv_loop_t *loop);

/* ---- outgoing connections (mta delivery, mua, tests) ---- */

/* Called once: status 0 and c != NULL when connected, else status < 0 (a libuv
 * error) and c == NULL, with err a message naming host and port. */
typedef void (*conn_connect_cb)(conn *c, int status, const char *err, void *arg);
/* Resolves host without blocking the loop and connects. The conn's handlers are
 * `handlers`; its data is `data`. on_open is not called for outgoing conns. */
int net_connect_tcp(uv_loop_t *loop, const char *host, int port, const char *proto,
		    size_t max_line, const struct conn_handlers *handlers, void *data,
		    conn_connect_cb cb, void *arg);
int net_connect_unix(uv_loop_t *loop, const char *path, const char *proto, size_t max_line,
		     const struct conn_handlers *handlers, void *data, conn_connect_cb cb,
		     void *arg);

/* ---- connections ---- */

uint64_t conn_id(const conn *c);
void *conn_data(const conn *c);
void conn_set_data(conn *c, void *data);
net_server *conn_server(const conn *c);
uv_loop_t *conn_loop(const conn *c);
int conn_listener_kind(const conn *c);
/* Peer address as text ("127.0.0.1", "::1", "unix"). */
const char *conn_peer_addr(const conn *c);
int conn_peer_port(const conn *c);
/* The peer's address as a sockaddr (for trusted_networks checks); NULL for unix. */
const struct sockaddr *conn_peer_sockaddr(const conn *c);

void conn_set_max_line(conn *c, size_t max_line);
/* The next `count` bytes go to on_bytes, then reading returns to lines. */
void conn_read_bytes(conn *c, uint64_t count);
void conn_pause(conn *c);
/* Resumes line delivery; buffered lines are delivered from the loop, never
 * from inside this call. */
void conn_resume(conn *c);

void conn_write(conn *c, const void *data, size_t len);
void conn_write_str(conn *c, const char *s);
void conn_printf(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void conn_vprintf(conn *c, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Writes data without logging it to the transcript (message bodies, literals). */
void conn_write_quiet(conn *c, const void *data, size_t len);
/* Sends what is buffered now (normally automatic at the end of a batch). */
void conn_flush(conn *c);
size_t conn_output_pending(const conn *c);
/* cb is called once when the output drops below NET_OUTPUT_LOW_WATER
 * (immediately from the loop if it already is). If the connection closes
 * first, cb is still called once (conn_is_closing is then true) so the
 * producer can release what it holds. */
void conn_on_drain(conn *c, void (*cb)(conn *c, void *arg), void *arg);

/* Transcript control: the next input line is a secret (SASL exchange); called
 * just before conn_read_bytes, the requested bytes are the secret instead. */
void conn_mask_next_line(conn *c);
/* Input lines and on_bytes data are not transcribed while quiet (DATA bodies). */
void conn_set_transcript_quiet(conn *c, bool quiet);
/* The authenticated user, shown in transcripts. */
void conn_set_user(conn *c, const char *user);

/* Timers: the idle timer restarts on every read; 0 disables. The command
 * timer runs once from now (e.g. a whole DATA transfer); 0 cancels. */
void conn_set_idle_timeout(conn *c, uint64_t ms);
void conn_set_command_timeout(conn *c, uint64_t ms);

int conn_start_tls(conn *c);
/* Client side: flushes, handshakes with ctx, then calls on_tls_ready (or
 * on_close if the handshake fails; conn_tls_error tells why). */
int conn_start_tls_client(conn *c, tls_ctx *ctx, const char *server_name);
bool conn_is_tls(const conn *c);
const char *conn_tls_version(const conn *c);
const char *conn_tls_cipher(const conn *c);
const char *conn_tls_error(const conn *c);
char *conn_tls_peer_fingerprint(const conn *c);
bool conn_tls_peer_verified(const conn *c);

void conn_close(conn *c);
void conn_abort(conn *c);
bool conn_is_closing(const conn *c);
void conn_ref(conn *c);
void conn_unref(conn *c);

#endif
