/* server_conn.h: what the mua's two reading clients (imapc.c, pop3c.c) share
 * about their one server connection: connecting with TLS set up first,
 * implicit TLS and STARTTLS/STLS, the state changes noted in the transcript,
 * the reconnect timer with backoff, the reasons shown when the connection
 * ends, and the freeing that waits for a pending connect.
 *
 * A client embeds `struct server_conn` as its FIRST member, so the conn's data
 * pointer (the client) is also the server_conn; the shared handlers below rely
 * on it. The timer's data is the client too: the client's timer callback gets
 * the client and server_conn_release frees it once the timer is closed. */
#ifndef MAILSTACK_MUA_SERVER_CONN_H
#define MAILSTACK_MUA_SERVER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net.h"
#include "mua.h"

/* A FIFO of commands: each client's command record starts with a
 * struct server_cmd_link, so the queue holds any of them. */
struct server_cmd_link {
	struct server_cmd_link *next;
};

struct server_queue {
	struct server_cmd_link *head, *tail;
};

/* Queues a command last. */
void server_queue_push(struct server_queue *q, struct server_cmd_link *cmd);
/* Queues a command first (it goes before what waits). */
void server_queue_push_front(struct server_queue *q, struct server_cmd_link *cmd);
/* Takes the first command off the queue, or NULL. */
struct server_cmd_link *server_queue_pop(struct server_queue *q);
/* The number of commands waiting. */
size_t server_queue_count(const struct server_queue *q);

/* What tells one protocol from the other. */
struct server_proto {
	const char *name;              /* "imap": transcript and net.h */
	const char *label;             /* "IMAP": status-line messages */
	const char *starttls;          /* "STARTTLS" / "STLS": the connecting note */
	const char *const *state_names; /* indexed by enum imapc_state */
	size_t max_line;
	uint64_t reply_timeout_ms;
	uint64_t reconnect_min_ms, reconnect_max_ms;
	bool backoff_reset_on_connect; /* else the client resets it once logged in */
	const struct conn_handlers *handlers;
	uv_timer_cb timer_cb;          /* the reconnect (and any other) timer */
	void (*release)(void *client); /* frees the client's own parts, then server_conn_release */
};

struct server_conn {
	const struct server_proto *proto;
	uv_loop_t *loop;
	struct mua_account *account;
	struct imapc_events ev;
	void *arg;
	enum imapc_state state;
	conn *c;
	tls_ctx *tls;
	bool reconnect, no_retry;
	uint64_t backoff_ms;
	uv_timer_t timer;
	bool connect_pending;
	bool freeing;
};

/* Sets up sc inside client (sc must be the client's first member). */
void server_conn_init(struct server_conn *sc, const struct server_proto *proto, uv_loop_t *loop,
		      struct mua_account *account, const struct imapc_events *ev, void *arg);
/* Changes state, notes it in the transcript and tells the owner. */
void server_conn_enter(struct server_conn *sc, enum imapc_state state, const char *msg);
/* Gives up for good on this connection: DISCONNECTED with msg, no retry, aborted. */
void server_conn_fail(struct server_conn *sc, const char *msg);
/* Writes one line (CRLF added) and records it in the transcript. */
void server_conn_write_line(struct server_conn *sc, const char *line, bool secret);
/* Starts the TLS handshake on the connection (a failure aborts it). */
void server_conn_start_tls(struct server_conn *sc);
/* Connects unless connected or connecting (TLS context made first). */
void server_conn_connect(struct server_conn *sc);
/* Starts the reconnect timer with backoff, when reconnecting is on. */
void server_conn_schedule_reconnect(struct server_conn *sc);
/* The handshake finished: false when the peer is refused (the conn is aborted),
 * else notes the TLS version and cipher. */
bool server_conn_tls_ready(struct server_conn *sc, conn *c);
/* The conn is closing: unhooks it and says why for the status line (caller
 * frees; NULL when already DISCONNECTED). bye = the server's BYE text or NULL. */
char *server_conn_lost(struct server_conn *sc, conn *c, const char *bye);
/* After server_conn_lost and the client's own cleanup: DISCONNECTED with msg (freed). */
void server_conn_enter_lost(struct server_conn *sc, char *msg);
/* The server did not answer in time: DISCONNECTED, aborted. */
void server_conn_timed_out(struct server_conn *sc, conn *c);
/* A conn handler: an over-long line ends the connection. */
void server_conn_on_line_too_long(conn *c);
/* Marks the client freeing and drops its conn: true when it may be released
 * now (false: the pending connect releases it). */
bool server_conn_free_begin(struct server_conn *sc);
/* Frees the TLS context and closes the timer; the client's memory goes in its callback. */
void server_conn_release(struct server_conn *sc);

#endif
