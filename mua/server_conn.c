/* server_conn.c: the connection life both mua reading clients share (see
 * server_conn.h): TLS context, connect, implicit TLS, STARTTLS start,
 * handshake check, reconnect with backoff, why the connection ended, freeing.
 *
 * States are enum imapc_state in sc->state; every change goes through
 * server_conn_enter, which notes "<proto> <old> -> <new>: why" in the
 * transcript and tells the owner. The protocol steps between GREETING and
 * READY stay in the clients. Invariants: sc->c is the live conn or NULL;
 * connect_pending is true exactly while net_connect_tcp has not called back,
 * and while it is, freeing waits for that callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "server_conn.h"

/* Queues a command last. */
void server_queue_push(struct server_queue *q, struct server_cmd_link *cmd)
{
	cmd->next = NULL;
	if (q->tail != NULL)
		q->tail->next = cmd;
	else
		q->head = cmd;
	q->tail = cmd;
}

/* Queues a command first. */
void server_queue_push_front(struct server_queue *q, struct server_cmd_link *cmd)
{
	cmd->next = q->head;
	q->head = cmd;
	if (q->tail == NULL)
		q->tail = cmd;
}

/* Takes the first command off the queue, or NULL. */
struct server_cmd_link *server_queue_pop(struct server_queue *q)
{
	struct server_cmd_link *cmd = q->head;
	if (cmd == NULL)
		return NULL;
	q->head = cmd->next;
	if (q->head == NULL)
		q->tail = NULL;
	cmd->next = NULL;
	return cmd;
}

/* The number of commands waiting. */
size_t server_queue_count(const struct server_queue *q)
{
	size_t n = 0;
	for (const struct server_cmd_link *cmd = q->head; cmd != NULL; cmd = cmd->next)
		n++;
	return n;
}

/* Sets up sc inside its client. */
void server_conn_init(struct server_conn *sc, const struct server_proto *proto, uv_loop_t *loop,
		      struct mua_account *account, const struct imapc_events *ev, void *arg)
{
	sc->proto = proto;
	sc->loop = loop;
	sc->account = account;
	if (ev != NULL)
		sc->ev = *ev;
	sc->arg = arg;
	uv_timer_init(loop, &sc->timer);
	sc->timer.data = sc;
}

/* Changes state, notes it in the transcript and tells the owner. */
void server_conn_enter(struct server_conn *sc, enum imapc_state state, const char *msg)
{
	const char *const *names = sc->proto->state_names;
	if (sc->state != state)
		mua_transcript_note("%s %s -> %s%s%s", sc->proto->name, names[sc->state],
				    names[state], msg != NULL ? ": " : "", msg != NULL ? msg : "");
	sc->state = state;
	if (sc->ev.on_state != NULL && !sc->freeing)
		sc->ev.on_state(sc->arg, state, msg);
}

/* Gives up for good: DISCONNECTED with msg, no retry, the conn aborted. */
void server_conn_fail(struct server_conn *sc, const char *msg)
{
	sc->no_retry = true;
	server_conn_enter(sc, IMAPC_DISCONNECTED, msg);
	conn_abort(sc->c);
}

/* Writes one line (CRLF added) and records it. */
void server_conn_write_line(struct server_conn *sc, const char *line, bool secret)
{
	mua_transcript_add(sc->proto->name, 'C', line, strlen(line), secret);
	conn_write_str(sc->c, line);
	conn_write_str(sc->c, "\r\n");
}

/* Starts the TLS handshake (a failure aborts the conn). */
void server_conn_start_tls(struct server_conn *sc)
{
	conn *c = sc->c;
	if (conn_start_tls_client(c, sc->tls, sc->account->read_host) < 0) {
		server_conn_enter(sc, IMAPC_DISCONNECTED, "cannot start TLS");
		conn_abort(c);
	}
}

/* Starts the reconnect timer with backoff. */
void server_conn_schedule_reconnect(struct server_conn *sc)
{
	if (!sc->reconnect || sc->no_retry || sc->freeing)
		return;
	const struct server_proto *p = sc->proto;
	sc->backoff_ms = sc->backoff_ms == 0 ? p->reconnect_min_ms : sc->backoff_ms * 2;
	if (sc->backoff_ms > p->reconnect_max_ms)
		sc->backoff_ms = p->reconnect_max_ms;
	uv_timer_start(&sc->timer, p->timer_cb, sc->backoff_ms, 0);
}

/* The TCP connection is up (or failed). */
static void server_conn_connected(conn *c, int status, const char *err, void *arg)
{
	struct server_conn *sc = arg;
	sc->connect_pending = false;
	if (sc->freeing) {
		if (c != NULL) {
			conn_set_data(c, NULL);
			conn_abort(c);
		}
		sc->proto->release(sc);
		return;
	}
	if (status < 0) {
		char *msg = xasprintf("cannot connect to %s server: %s", sc->proto->label,
				      err != NULL ? err : "error");
		server_conn_enter(sc, IMAPC_DISCONNECTED, msg);
		free(msg);
		server_conn_schedule_reconnect(sc);
		return;
	}
	sc->c = c;
	conn_set_data(c, sc);
	if (sc->proto->backoff_reset_on_connect)
		sc->backoff_ms = 0;
	if (sc->account->read_tls == MUA_TLS_IMPLICIT) {
		server_conn_enter(sc, IMAPC_TLS, NULL);
		server_conn_start_tls(sc);
		return;
	}
	server_conn_enter(sc, IMAPC_GREETING, NULL);
	conn_set_command_timeout(c, sc->proto->reply_timeout_ms);
}

/* Connects unless already connected or connecting. */
void server_conn_connect(struct server_conn *sc)
{
	if (sc->state != IMAPC_DISCONNECTED || sc->connect_pending || sc->freeing)
		return;
	uv_timer_stop(&sc->timer);
	sc->no_retry = false;
	struct mua_account *a = sc->account;
	const struct server_proto *p = sc->proto;
	if (a->read_tls != MUA_TLS_NONE && sc->tls == NULL) {
		char *err = NULL;
		sc->tls = tls_ctx_client_new(a->tls_verify, a->tls_ca_file, &err);
		if (sc->tls == NULL) {
			char *msg = xasprintf("TLS setup: %s", err != NULL ? err : "error");
			sc->no_retry = true;
			server_conn_enter(sc, IMAPC_DISCONNECTED, msg);
			free(msg);
			free(err);
			return;
		}
	}
	mua_transcript_note("connecting to %s:%d (%s)", a->read_host, a->read_port,
			    a->read_tls == MUA_TLS_IMPLICIT   ? "implicit TLS"
			    : a->read_tls == MUA_TLS_STARTTLS ? p->starttls
							      : "no TLS");
	server_conn_enter(sc, IMAPC_CONNECTING, NULL);
	sc->connect_pending = true;
	if (net_connect_tcp(sc->loop, a->read_host, a->read_port, p->name, p->max_line,
			    p->handlers, sc, server_conn_connected, sc) < 0) {
		sc->connect_pending = false;
		char *msg = xasprintf("cannot connect to the %s server", p->label);
		server_conn_enter(sc, IMAPC_DISCONNECTED, msg);
		free(msg);
		server_conn_schedule_reconnect(sc);
	}
}

/* The handshake finished: refuses an unverified peer, else notes the cipher. */
bool server_conn_tls_ready(struct server_conn *sc, conn *c)
{
	if (!conn_tls_peer_verified(c) && sc->account->tls_verify) {
		/* tls.c refuses unverified peers when asked to verify; this is a belt. */
		server_conn_enter(sc, IMAPC_DISCONNECTED, "certificate not verified");
		conn_abort(c);
		return false;
	}
	mua_transcript_note("TLS %s %s", conn_tls_version(c), conn_tls_cipher(c));
	return true;
}

/* The conn is closing: unhooks it and says why (caller frees). */
char *server_conn_lost(struct server_conn *sc, conn *c, const char *bye)
{
	conn_set_data(c, NULL);
	struct mua_account *a = sc->account;
	char *msg = NULL;
	if (sc->state == IMAPC_TLS || (sc->state == IMAPC_STARTTLS && !conn_is_tls(c))) {
		msg = mua_tls_failure_message(a->read_host, a->read_port, c);
		sc->no_retry = true;
	} else if (sc->state == IMAPC_LOGOUT) {
		msg = xstrdup("logged out");
	} else if (sc->state != IMAPC_DISCONNECTED) {
		msg = xasprintf("connection to %s server %s:%d lost%s%s", sc->proto->label,
				a->read_host, a->read_port, bye != NULL ? ": " : "",
				bye != NULL ? bye : "");
	}
	sc->c = NULL;
	return msg;
}

/* DISCONNECTED with the reason server_conn_lost gave (freed here). */
void server_conn_enter_lost(struct server_conn *sc, char *msg)
{
	if (msg != NULL || sc->state != IMAPC_DISCONNECTED)
		server_conn_enter(sc, IMAPC_DISCONNECTED, msg);
	free(msg);
}

/* The server did not answer in time. */
void server_conn_timed_out(struct server_conn *sc, conn *c)
{
	char *msg = xasprintf("the %s server does not answer", sc->proto->label);
	server_conn_enter(sc, IMAPC_DISCONNECTED, msg);
	free(msg);
	conn_abort(c);
}

/* An over-long line from the server ends the connection. */
void server_conn_on_line_too_long(conn *c)
{
	struct server_conn *sc = conn_data(c);
	if (sc == NULL)
		return;
	mua_transcript_note("over-long line from the %s server", sc->proto->label);
	conn_abort(c);
}

/* Marks the client freeing and drops its conn: true when it may be released now. */
bool server_conn_free_begin(struct server_conn *sc)
{
	sc->freeing = true;
	if (sc->c != NULL) {
		conn_set_data(sc->c, NULL);
		conn_abort(sc->c);
		sc->c = NULL;
	}
	return !sc->connect_pending; /* else server_conn_connected releases it */
}

/* The timer is closed: the client's memory goes (sc is its first member). */
static void server_conn_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Frees the TLS context and closes the timer. */
void server_conn_release(struct server_conn *sc)
{
	tls_ctx_free(&sc->tls);
	uv_close((uv_handle_t *)&sc->timer, server_conn_timer_closed);
}
