/* net.c: listeners and connections on libuv (see net.h for the contract).
 *
 * A conn owns four libuv handles: its stream (TCP or unix), an idle timer, a
 * command timer and a `kick` (uv_idle) that runs deferred work from the loop:
 * resuming line delivery, flushing output written outside a batch, calling
 * the drain callback. The conn is freed only after all four close callbacks
 * have run AND its reference count is zero.
 *
 * Connection states (conn_enter logs every change):
 *
 *   HANDSHAKING --handshake done--> OPEN --conn_close--> DRAINING
 *        ^                           |                      | output sent
 *        +------conn_start_tls-------+                      v     (or 10 s)
 *   any --conn_abort/error--> CLOSING --4 close cbs--> CLOSED --refs 0--> freed
 *
 * Lines are delivered only in OPEN and not paused. Everything a handler
 * writes during a batch (one read, one timer, one kick) is sent at the end of
 * the batch. Reading from the socket runs only when the conn is OPEN or
 * HANDSHAKING, not paused, all received input has been processed, and the
 * unsent output is under the high-water mark (with hysteresis down to the
 * low-water mark) -- so a peer that does not read cannot make us buffer
 * without bound, and pipelined input waits in the kernel while we are busy.
 *
 * on_close is owed only to a conn that was handed to the protocol (on_open
 * ran, or the connect callback got it): a connection turned away by the
 * limits, or an implicit-TLS connection whose handshake failed, closes
 * without calling any handler.
 *
 * The library assumes one loop per thread and ignores SIGPIPE for the process
 * (a peer that resets must not kill a daemon). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "buffer.h"
#include "linereader.h"
#include "log.h"

/* Bytes read from the socket per read callback. */
#define NET_READ_CHUNK 16384
/* Lines (or byte chunks) delivered per wake-up before yielding to the loop. */
#define NET_EVENTS_PER_WAKEUP 64
/* How long a graceful close may wait for the peer to take our output. */
#define NET_CLOSE_FLUSH_MS 10000
/* A TLS handshake (implicit or STARTTLS) must finish within this, whatever
 * the idle timeout: a client that connects and never speaks TLS would
 * otherwise hold one of its address's connection slots for that long. */
#define NET_HANDSHAKE_TIMEOUT_MS 30000
/* Pending connections queued by the kernel per listener. */
#define NET_LISTEN_BACKLOG 511

enum conn_state {
	CONN_HANDSHAKING,
	CONN_OPEN,
	CONN_DRAINING,
	CONN_CLOSING,
	CONN_CLOSED,
};

static const char *const conn_state_names[] = {
	[CONN_HANDSHAKING] = "handshaking",
	[CONN_OPEN] = "open",
	[CONN_DRAINING] = "draining",
	[CONN_CLOSING] = "closing",
	[CONN_CLOSED] = "closed",
};

union net_stream {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_tcp_t tcp;
	uv_pipe_t pipe;
};

struct listener {
	union net_stream h;
	net_server *srv;
	struct listener *next;
	int kind;
	int port;
	bool implicit_tls;
	bool closing;
};

struct net_server {
	uv_loop_t *loop;
	struct net_server_opts opts;
	char *proto;
	char *too_many_reply;
	struct conn_handlers handlers;
	void *data;
	struct listener *listeners;
	conn *conns;        /* every conn accepted here and not yet CLOSED */
	unsigned admitted;  /* conns in the list that count against the limits */
	unsigned live;      /* listeners not yet closed + conns in the list */
	bool shut_down;
	bool free_requested;
};

struct conn {
	union net_stream h;
	uv_timer_t idle_timer;
	uv_timer_t command_timer;
	uv_idle_t kick;
	int handles_open;

	uint64_t id;
	uv_loop_t *loop;
	net_server *srv;          /* NULL for outgoing conns */
	conn *prev, *next;        /* in srv->conns */
	conn *all_prev, *all_next; /* in the list of every conn (net_abort_all) */
	struct conn_handlers handlers;
	void *data;
	char *proto;
	int kind;
	char peer_addr[INET6_ADDRSTRLEN];
	int peer_port;
	struct sockaddr_storage peer_sa;
	bool has_peer_sa;

	enum conn_state state;
	bool refused;      /* turned away by the limits */
	bool admitted;     /* counted in srv->admitted */
	bool opened;       /* handed to the protocol: on_close is owed */
	bool close_called;
	bool paused;
	bool eof;
	bool out_blocked;  /* reading stopped: output over the high-water mark */
	bool reading;
	bool quiet;
	bool mask_next;
	bool outgoing;     /* we are the client: our lines are the C side */
	bool handshake_timer; /* the command timer bounds a TLS handshake */
	int batch_depth;
	unsigned refs;
	char *user;

	struct linereader lr;
	buf_t in;          /* plaintext received, not yet given to the linereader */
	size_t in_off;     /* how much of `in` has been processed */
	buf_t out;         /* written by the protocol, not yet sent (or encrypted) */
	buf_t transcript_out; /* the start of a line written in pieces, for the transcript */
	size_t inflight;   /* bytes handed to uv_write, not yet completed */

	tls_session *tls;
	char *tls_error;
	uint64_t idle_timeout_ms;
	void (*drain_cb)(conn *c, void *arg);
	void *drain_arg;
};

/* Where libuv reads into. Every read is copied into its conn's input (or fed
 * to its TLS session) before the callback returns, so the conns of one loop
 * thread share one buffer instead of carrying 16 KiB each while idle. */
static _Thread_local char net_read_buffer[NET_READ_CHUNK];

/* An input buffer larger than this is given back once it is empty, so an idle
 * connection keeps no memory from its last burst. */
#define NET_IDLE_INPUT_KEEP 4096

struct net_write {
	uv_write_t req;
	conn *c;
	char *data;
	size_t len;
};

static uint64_t net_next_id = 1;
static conn *net_all_conns;

static void conn_flush_now(conn *c);
static void conn_process_input(conn *c);
static void conn_close_handles(conn *c);
static void conn_update_reading(conn *c);
static void conn_schedule(conn *c);
static void conn_closed(conn *c);
static void conn_read_start(conn *c);
static void conn_idle_restart(conn *c);
static void conn_timer_cb(uv_timer_t *timer);

/* Ignores SIGPIPE once: writes to a reset peer must fail, not kill us. */
static void net_ignore_sigpipe(void)
{
	static bool done;
	if (!done) {
		signal(SIGPIPE, SIG_IGN);
		done = true;
	}
}

/* The one way to change a conn's state; logs the transition. */
static void conn_enter(conn *c, enum conn_state state)
{
	if (c->state == state)
		return;
	log_debug(c->id, "conn %s -> %s", conn_state_names[c->state], conn_state_names[state]);
	c->state = state;
}

/* The transcript's direction for data we read ('C') or write ('S'), seen
 * from the protocol: on an outgoing conn we are the client. */
static char conn_transcript_dir(const conn *c, char dir)
{
	if (!c->outgoing)
		return dir;
	return dir == 'C' ? 'S' : 'C';
}

/* Logs data one line at a time to the transcript. */
static void conn_transcribe(conn *c, char dir, const char *data, size_t len, bool secret)
{
	bool tls = c->tls != NULL && tls_session_established(c->tls);
	dir = conn_transcript_dir(c, dir);
	while (len > 0) {
		const char *lf = memchr(data, '\n', len);
		size_t n = lf != NULL ? (size_t)(lf - data) + 1 : len;
		log_transcript(c->proto, c->id, dir, tls, c->user, data, n, secret);
		data += n;
		len -= n;
	}
}

/* A line longer than this, written in pieces, is logged in parts. */
#define NET_TRANSCRIPT_PARTIAL_MAX 4096

/* Logs what we write, whole lines only: a reply written in several pieces
 * (text, then CRLF) is one transcript line. */
static void conn_transcribe_output(conn *c, const char *data, size_t len)
{
	while (len > 0) {
		const char *lf = memchr(data, '\n', len);
		size_t n = lf != NULL ? (size_t)(lf - data) + 1 : len;
		if (lf == NULL && c->transcript_out.len + n < NET_TRANSCRIPT_PARTIAL_MAX) {
			buf_append(&c->transcript_out, data, n);
			return;
		}
		if (c->transcript_out.len > 0) {
			buf_append(&c->transcript_out, data, n);
			conn_transcribe(c, 'S', c->transcript_out.data, c->transcript_out.len, false);
			buf_reset(&c->transcript_out);
		} else {
			conn_transcribe(c, 'S', data, n, false);
		}
		data += n;
		len -= n;
	}
}

/* ---- lifetime ---- */

/* Counts one of the conn's handles closed; the last one finishes the conn. */
static void conn_handle_closed_cb(uv_handle_t *handle)
{
	conn *c = handle->data;
	if (--c->handles_open == 0)
		conn_closed(c);
}

/* Releases everything; only when CLOSED and unreferenced. */
static void conn_destroy(conn *c)
{
	if (c->all_prev != NULL)
		c->all_prev->all_next = c->all_next;
	else if (net_all_conns == c)
		net_all_conns = c->all_next;
	if (c->all_next != NULL)
		c->all_next->all_prev = c->all_prev;
	if (c->transcript_out.len > 0)
		conn_transcribe(c, 'S', c->transcript_out.data, c->transcript_out.len, false);
	buf_free(&c->transcript_out);
	linereader_free(&c->lr);
	buf_free(&c->in);
	buf_free(&c->out);
	tls_session_free(&c->tls);
	free(c->tls_error);
	free(c->user);
	free(c->proto);
	free(c);
}

/* Frees the server once nothing of it is left and its owner let go. */
static void net_server_maybe_free(net_server *srv)
{
	if (!srv->free_requested || srv->live > 0)
		return;
	free(srv->proto);
	free(srv->too_many_reply);
	free(srv);
}

/* Takes a conn out of its server's list and counts. */
static void conn_unlink(conn *c)
{
	net_server *srv = c->srv;
	if (srv == NULL)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	if (c->admitted)
		srv->admitted--;
	srv->live--;
	c->srv = NULL;
	net_server_maybe_free(srv);
}

/* All handles are closed: tell the protocol, then free when unreferenced. */
static void conn_closed(conn *c)
{
	conn_enter(c, CONN_CLOSED);
	conn_unlink(c);
	c->refs++;
	if (c->drain_cb != NULL) {
		/* net.h: a waiting producer hears of the close once, to let go. */
		void (*cb)(conn *, void *) = c->drain_cb;
		c->drain_cb = NULL;
		cb(c, c->drain_arg);
	}
	c->refs--;
	if (c->opened && !c->close_called && c->handlers.on_close != NULL) {
		c->close_called = true;
		c->refs++;
		c->handlers.on_close(c);
		c->refs--;
	}
	c->close_called = true;
	if (c->refs == 0)
		conn_destroy(c);
}

/* A new conn with its timers and kick initialised (the stream is not). */
static conn *conn_new(uv_loop_t *loop, const char *proto, size_t max_line,
		      const struct conn_handlers *handlers, void *data)
{
	conn *c = xcalloc(1, sizeof(*c));
	c->id = net_next_id++;
	c->loop = loop;
	c->handlers = *handlers;
	c->data = data;
	c->proto = xstrdup(proto != NULL ? proto : "");
	c->state = CONN_OPEN;
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", "-");
	linereader_init(&c->lr, max_line);
	buf_init(&c->in);
	buf_init(&c->out);
	buf_init(&c->transcript_out);
	uv_timer_init(loop, &c->idle_timer);
	uv_timer_init(loop, &c->command_timer);
	uv_idle_init(loop, &c->kick);
	c->idle_timer.data = c;
	c->command_timer.data = c;
	c->kick.data = c;
	c->handles_open = 3;
	c->all_next = net_all_conns;
	if (net_all_conns != NULL)
		net_all_conns->all_prev = c;
	net_all_conns = c;
	return c;
}

/* Remembers the peer's address from the connected socket. */
static void conn_load_peer(conn *c, bool is_unix)
{
	if (is_unix) {
		snprintf(c->peer_addr, sizeof(c->peer_addr), "unix");
		return;
	}
	int len = sizeof(c->peer_sa);
	if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&c->peer_sa, &len) != 0)
		return;
	c->has_peer_sa = true;
	if (c->peer_sa.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->peer_sa;
		uv_ip6_name(sin6, c->peer_addr, sizeof(c->peer_addr));
		c->peer_port = ntohs(sin6->sin6_port);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&c->peer_sa;
		uv_ip4_name(sin, c->peer_addr, sizeof(c->peer_addr));
		c->peer_port = ntohs(sin->sin_port);
	}
}

/* ---- batches: everything written inside one is sent at its end ---- */

static void conn_batch_begin(conn *c)
{
	c->batch_depth++;
}

/* Ends a batch: flush, close after EOF when idle, adjust reading. */
static void conn_batch_end(conn *c)
{
	if (--c->batch_depth > 0)
		return;
	if (c->state >= CONN_CLOSING)
		return;
	conn_flush_now(c);
	if (c->state == CONN_OPEN && c->eof && !c->paused && c->in_off >= c->in.len)
		conn_close(c);
	if (c->state < CONN_CLOSING)
		conn_update_reading(c);
}

/* ---- output ---- */

/* A write completed: account for it and see whether anyone waits on it. */
static void conn_write_cb(uv_write_t *req, int status)
{
	struct net_write *w = req->data;
	conn *c = w->c;
	c->inflight -= w->len;
	free(w->data);
	free(w);
	if (c->state >= CONN_CLOSING)
		return;
	if (status < 0) {
		log_debug(c->id, "write failed: %s", uv_strerror(status));
		conn_abort(c);
		return;
	}
	if (c->state == CONN_DRAINING) {
		if (conn_output_pending(c) == 0)
			conn_close_handles(c);
		return;
	}
	conn_update_reading(c);
	/* Under the low mark again: a waiting producer, or pipelined input held
	 * back by conn_process_input, continues from the loop. */
	if (!c->out_blocked && (c->drain_cb != NULL || c->in.len > c->in_off))
		conn_schedule(c);
}

/* Hands bytes (owned by the callee from now on) to libuv. */
static void conn_submit(conn *c, char *data, size_t len)
{
	struct net_write *w = xmalloc(sizeof(*w));
	w->req.data = w;
	w->c = c;
	w->data = data;
	w->len = len;
	uv_buf_t b = uv_buf_init(data, (unsigned int)len);
	int r = uv_write(&w->req, &c->h.stream, &b, 1, conn_write_cb);
	if (r < 0) {
		log_debug(c->id, "write failed: %s", uv_strerror(r));
		free(data);
		free(w);
		conn_abort(c);
		return;
	}
	c->inflight += len;
}

/* Sends what is buffered: plaintext as is, or through TLS once established. */
static void conn_flush_now(conn *c)
{
	if (c->state >= CONN_CLOSING)
		return;
	if (c->tls == NULL) {
		if (c->out.len > 0) {
			size_t len = c->out.len;
			conn_submit(c, buf_steal(&c->out), len);
		}
		return;
	}
	/* Once the handshake is over, protocol output goes through TLS -- also
	 * after the peer's close_notify, or a reply queued with it would never
	 * drain and a graceful close would hang. */
	if (c->state != CONN_HANDSHAKING && c->out.len > 0) {
		if (tls_session_write(c->tls, c->out.data, c->out.len) != TLS_OK) {
			conn_abort(c);
			return;
		}
		buf_reset(&c->out);
	}
	size_t pending = tls_session_pending_output(c->tls);
	if (pending > 0) {
		char *data = xmalloc(pending);
		size_t got = tls_session_take_output(c->tls, data, pending);
		if (got == 0) {
			free(data);
			return;
		}
		conn_submit(c, data, got);
	}
}

/* Queues bytes; transcribed unless quiet. */
static void conn_write_internal(conn *c, const void *data, size_t len, bool quiet)
{
	if (c->state >= CONN_DRAINING || len == 0)
		return;
	if (!quiet)
		conn_transcribe_output(c, data, len);
	buf_append(&c->out, data, len);
	if (c->batch_depth == 0)
		conn_schedule(c);
}

void conn_write(conn *c, const void *data, size_t len)
{
	conn_write_internal(c, data, len, false);
}

void conn_write_str(conn *c, const char *s)
{
	conn_write_internal(c, s, strlen(s), false);
}

void conn_write_quiet(conn *c, const void *data, size_t len)
{
	conn_write_internal(c, data, len, true);
}

void conn_vprintf(conn *c, const char *fmt, va_list ap)
{
	buf_t b = BUF_INIT;
	buf_vprintf(&b, fmt, ap);
	conn_write_internal(c, b.data, b.len, false);
	buf_free(&b);
}

void conn_printf(conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conn_vprintf(c, fmt, ap);
	va_end(ap);
}

/* Sends what is buffered now. */
void conn_flush(conn *c)
{
	conn_flush_now(c);
	if (c->state < CONN_CLOSING)
		conn_update_reading(c);
}

/* Unsent bytes: buffered, waiting in TLS, or in flight. */
size_t conn_output_pending(const conn *c)
{
	size_t n = c->out.len + c->inflight;
	if (c->tls != NULL)
		n += tls_session_pending_output(c->tls);
	return n;
}

/* Registers cb for when output drops below the low-water mark. */
void conn_on_drain(conn *c, void (*cb)(conn *c, void *arg), void *arg)
{
	c->drain_cb = cb;
	c->drain_arg = arg;
	if (cb != NULL)
		conn_schedule(c);
}

/* ---- input ---- */

/* Starts or stops reading from the socket as the rules in the top comment say. */
static void conn_update_reading(conn *c)
{
	size_t pending = conn_output_pending(c);
	if (pending > NET_OUTPUT_HIGH_WATER)
		c->out_blocked = true;
	else if (pending < NET_OUTPUT_LOW_WATER)
		c->out_blocked = false;
	bool want = !c->eof && !c->out_blocked && c->in_off >= c->in.len &&
		    (c->state == CONN_HANDSHAKING || (c->state == CONN_OPEN && !c->paused));
	if (want == c->reading)
		return;
	if (want) {
		conn_read_start(c);
	} else {
		uv_read_stop(&c->h.stream);
		c->reading = false;
	}
}

/* Delivers buffered lines / byte chunks until paused, out of input, or the
 * per-wake-up cap is reached (then the kick continues later). */
static void conn_process_input(conn *c)
{
	static char empty[1];
	unsigned events = 0;
	while (c->state == CONN_OPEN && !c->paused) {
		/* A peer that does not read gets no more answers until it does:
		 * pipelined input waits (conn_write_cb resumes it). */
		if (conn_output_pending(c) > NET_OUTPUT_HIGH_WATER) {
			c->out_blocked = true;
			break;
		}
		if (events >= NET_EVENTS_PER_WAKEUP) {
			conn_schedule(c);
			break;
		}
		size_t avail = c->in.len - c->in_off;
		char *data = c->in.data != NULL ? c->in.data + c->in_off : empty;
		size_t used;
		struct linereader_item item;
		enum linereader_event ev = linereader_next(&c->lr, data, avail, &used, &item);
		c->in_off += used;
		if (ev == LINEREADER_NEED_MORE)
			break;
		events++;
		switch (ev) {
		case LINEREADER_LINE: {
			bool secret = c->mask_next;
			c->mask_next = false;
			if (!c->quiet || secret)
				log_transcript(c->proto, c->id, conn_transcript_dir(c, 'C'),
					       c->tls != NULL && tls_session_established(c->tls),
					       c->user, item.data, item.len, secret);
			if (c->handlers.on_line != NULL)
				c->handlers.on_line(c, item.data, item.len, item.crlf);
			break;
		}
		case LINEREADER_TOO_LONG:
			log_debug(c->id, "line too long (max %zu)", c->lr.max_line);
			if (c->handlers.on_line_too_long != NULL)
				c->handlers.on_line_too_long(c);
			break;
		case LINEREADER_BYTES: {
			/* conn_mask_next_line before conn_read_bytes masks the bytes
			 * too (an IMAP LOGIN password sent as a literal). */
			bool secret = c->mask_next;
			if (item.last)
				c->mask_next = false;
			if (!c->quiet || secret)
				conn_transcribe(c, 'C', item.data, item.len, secret);
			if (c->handlers.on_bytes != NULL)
				c->handlers.on_bytes(c, item.data, item.len, item.last);
			break;
		}
		case LINEREADER_NEED_MORE:
			break;
		}
	}
	if (c->in_off >= c->in.len) {
		if (c->in.cap > NET_IDLE_INPUT_KEEP)
			buf_free(&c->in);
		else
			buf_reset(&c->in);
		c->in_off = 0;
	} else if (c->in_off > 0) {
		buf_consume(&c->in, c->in_off);
		c->in_off = 0;
	}
}

/* Bounds a TLS handshake that starts now with the command timer. */
static void conn_handshake_timer_start(conn *c)
{
	c->handshake_timer = true;
	uv_timer_start(&c->command_timer, conn_timer_cb, NET_HANDSHAKE_TIMEOUT_MS, 0);
}

/* The handshake finished: the protocol may speak now. */
static void conn_tls_ready(conn *c)
{
	if (c->handshake_timer) {
		c->handshake_timer = false;
		uv_timer_stop(&c->command_timer);
	}
	conn_enter(c, CONN_OPEN);
	log_debug(c->id, "TLS established: %s %s", tls_session_version(c->tls),
		  tls_session_cipher(c->tls));
	if (!c->opened) {
		/* Implicit TLS: the protocol hears of the conn only now. */
		c->opened = true;
		if (c->handlers.on_open != NULL)
			c->handlers.on_open(c);
	} else if (c->handlers.on_tls_ready != NULL) {
		c->handlers.on_tls_ready(c);
	}
}

/* Records a TLS failure and closes. */
static void conn_tls_failed(conn *c)
{
	free(c->tls_error);
	c->tls_error = xstrdup(tls_session_error(c->tls));
	log_info(c->id, "TLS failed: %s", c->tls_error);
	/* Send any alert OpenSSL queued, best effort, then close. */
	conn_flush_now(c);
	conn_abort(c);
}

/* Ciphertext arrived: advance the handshake, then decrypt into `in`. */
static void conn_tls_input(conn *c, const char *data, size_t len)
{
	if (tls_session_feed(c->tls, data, len) != TLS_OK) {
		conn_tls_failed(c);
		return;
	}
	if (c->state == CONN_HANDSHAKING) {
		int r = tls_session_handshake(c->tls);
		if (r == TLS_ERROR) {
			conn_tls_failed(c);
			return;
		}
		if (r == TLS_WANT_MORE)
			return;
		conn_tls_ready(c);
		if (c->state != CONN_OPEN && c->state != CONN_DRAINING)
			return;
	}
	for (;;) {
		buf_reserve(&c->in, NET_READ_CHUNK);
		long n = tls_session_read(c->tls, c->in.data + c->in.len, NET_READ_CHUNK);
		if (n > 0) {
			c->in.len += (size_t)n;
			c->in.data[c->in.len] = '\0';
			continue;
		}
		if (n == 0)
			break;
		if (n == -TLS_CLOSED) {
			c->eof = true;
			break;
		}
		conn_tls_failed(c);
		return;
	}
}

/* libuv asks where to put the next read. */
static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	(void)handle;
	buf->base = net_read_buffer;
	buf->len = sizeof(net_read_buffer);
}

/* Bytes (or EOF, or an error) from the socket. */
static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	conn *c = stream->data;
	if (nread == 0)
		return;
	conn_batch_begin(c);
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug(c->id, "read failed: %s", uv_strerror((int)nread));
		c->eof = true;
		uv_read_stop(&c->h.stream);
		c->reading = false;
		if (nread != UV_EOF || c->state == CONN_HANDSHAKING)
			conn_abort(c);
	} else {
		if (c->idle_timeout_ms > 0 && c->state < CONN_DRAINING)
			conn_idle_restart(c);
		if (c->state == CONN_DRAINING) {
			/* Closing: input is no longer wanted. */
		} else if (c->tls != NULL) {
			conn_tls_input(c, buf->base, (size_t)nread);
		} else {
			buf_append(&c->in, buf->base, (size_t)nread);
		}
		conn_process_input(c);
	}
	conn_batch_end(c);
}

/* Starts reading (only conn_update_reading decides when). */
static void conn_read_start(conn *c)
{
	if (uv_read_start(&c->h.stream, conn_alloc_cb, conn_read_cb) == 0)
		c->reading = true;
}

/* ---- deferred work and timers ---- */

/* Runs from the loop: resumed lines, output written outside a batch, drain. */
static void conn_kick_cb(uv_idle_t *idle)
{
	conn *c = idle->data;
	uv_idle_stop(&c->kick);
	if (c->state >= CONN_CLOSING)
		return;
	conn_batch_begin(c);
	conn_process_input(c);
	if (c->drain_cb != NULL && c->state == CONN_OPEN) {
		/* Flush first so the pending count is honest. */
		conn_flush_now(c);
		if (conn_output_pending(c) < NET_OUTPUT_LOW_WATER) {
			void (*cb)(conn *, void *) = c->drain_cb;
			c->drain_cb = NULL;
			cb(c, c->drain_arg);
		}
	}
	conn_batch_end(c);
}

/* Asks the loop to run conn_kick_cb soon. */
static void conn_schedule(conn *c)
{
	if (c->state < CONN_CLOSING)
		uv_idle_start(&c->kick, conn_kick_cb);
}

/* The idle or command timer fired: the protocol decides, else we close. */
static void conn_timer_cb(uv_timer_t *timer)
{
	conn *c = timer->data;
	if (c->state >= CONN_CLOSING)
		return;
	if (c->state == CONN_DRAINING || c->state == CONN_HANDSHAKING) {
		/* A graceful close that could not flush, or a stalled handshake. */
		conn_abort(c);
		return;
	}
	log_debug(c->id, "%s timeout", timer == &c->idle_timer ? "idle" : "command");
	conn_batch_begin(c);
	if (c->handlers.on_timeout != NULL)
		c->handlers.on_timeout(c);
	else
		conn_close(c);
	conn_batch_end(c);
}

/* Restarts the idle timer (on every read). */
static void conn_idle_restart(conn *c)
{
	uv_timer_start(&c->idle_timer, conn_timer_cb, c->idle_timeout_ms, 0);
}

void conn_set_idle_timeout(conn *c, uint64_t ms)
{
	c->idle_timeout_ms = ms;
	if (c->state >= CONN_DRAINING)
		return;
	if (ms == 0)
		uv_timer_stop(&c->idle_timer);
	else
		uv_timer_start(&c->idle_timer, conn_timer_cb, ms, 0);
}

void conn_set_command_timeout(conn *c, uint64_t ms)
{
	if (c->state >= CONN_DRAINING)
		return;
	if (ms == 0)
		uv_timer_stop(&c->command_timer);
	else
		uv_timer_start(&c->command_timer, conn_timer_cb, ms, 0);
}

/* ---- closing ---- */

/* Closes all four handles; conn_closed runs after the last close callback. */
static void conn_close_handles(conn *c)
{
	if (c->state >= CONN_CLOSING)
		return;
	conn_enter(c, CONN_CLOSING);
	c->reading = false;
	uv_close(&c->h.handle, conn_handle_closed_cb);
	uv_close((uv_handle_t *)&c->idle_timer, conn_handle_closed_cb);
	uv_close((uv_handle_t *)&c->command_timer, conn_handle_closed_cb);
	uv_close((uv_handle_t *)&c->kick, conn_handle_closed_cb);
}

/* Flushes, says close_notify over TLS, then closes (bounded in time). */
void conn_close(conn *c)
{
	if (c->state >= CONN_DRAINING)
		return;
	if (c->state == CONN_HANDSHAKING) {
		conn_close_handles(c);
		return;
	}
	conn_enter(c, CONN_DRAINING);
	uv_read_stop(&c->h.stream);
	c->reading = false;
	uv_timer_stop(&c->idle_timer);
	uv_idle_stop(&c->kick);
	if (c->tls != NULL && tls_session_established(c->tls)) {
		conn_flush_now(c);
		tls_session_shutdown(c->tls);
	}
	conn_flush_now(c);
	if (c->state != CONN_DRAINING)
		return;
	if (conn_output_pending(c) == 0) {
		conn_close_handles(c);
		return;
	}
	uv_timer_start(&c->command_timer, conn_timer_cb, NET_CLOSE_FLUSH_MS, 0);
}

void conn_abort(conn *c)
{
	conn_close_handles(c);
}

bool conn_is_closing(const conn *c)
{
	return c->state >= CONN_DRAINING;
}

void conn_ref(conn *c)
{
	c->refs++;
}

/* Drops a reference; the last one frees a conn that is already closed. */
void conn_unref(conn *c)
{
	if (c->refs == 0) {
		log_error(c->id, "conn_unref without conn_ref");
		abort();
	}
	if (--c->refs == 0 && c->state == CONN_CLOSED && c->close_called)
		conn_destroy(c);
}

/* ---- accessors and settings ---- */

uint64_t conn_id(const conn *c)
{
	return c->id;
}

void *conn_data(const conn *c)
{
	return c->data;
}

void conn_set_data(conn *c, void *data)
{
	c->data = data;
}

net_server *conn_server(const conn *c)
{
	return c->srv;
}

uv_loop_t *conn_loop(const conn *c)
{
	return c->loop;
}

int conn_listener_kind(const conn *c)
{
	return c->kind;
}

const char *conn_peer_addr(const conn *c)
{
	return c->peer_addr;
}

int conn_peer_port(const conn *c)
{
	return c->peer_port;
}

const struct sockaddr *conn_peer_sockaddr(const conn *c)
{
	return c->has_peer_sa ? (const struct sockaddr *)&c->peer_sa : NULL;
}

void conn_set_max_line(conn *c, size_t max_line)
{
	linereader_set_max_line(&c->lr, max_line);
}

/* The next count bytes go to on_bytes; lines resume after them. */
void conn_read_bytes(conn *c, uint64_t count)
{
	linereader_read_bytes(&c->lr, count);
}

void conn_pause(conn *c)
{
	c->paused = true;
}

/* Resumes delivery from the loop (never from inside this call). */
void conn_resume(conn *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	conn_schedule(c);
}

void conn_mask_next_line(conn *c)
{
	c->mask_next = true;
}

void conn_set_transcript_quiet(conn *c, bool quiet)
{
	c->quiet = quiet;
}

void conn_set_user(conn *c, const char *user)
{
	free(c->user);
	c->user = user != NULL ? xstrdup(user) : NULL;
}

/* ---- TLS on a live conn ---- */

/* Common part of both STARTTLS directions: flush plaintext, drop input. */
static void conn_begin_tls(conn *c, tls_ctx *ctx, bool server, const char *server_name)
{
	conn_flush_now(c);
	/* CVE-2011-0411: whatever arrived in plaintext before this point must
	 * never be read as if it came over TLS. */
	buf_reset(&c->in);
	c->in_off = 0;
	linereader_reset(&c->lr);
	c->tls = tls_session_new(ctx, server, server_name);
	conn_enter(c, CONN_HANDSHAKING);
	conn_handshake_timer_start(c);
}

/* Server side STARTTLS, after the protocol queued its go-ahead reply. */
int conn_start_tls(conn *c)
{
	if (c->state != CONN_OPEN || c->tls != NULL || c->srv == NULL || c->srv->opts.tls == NULL)
		return -1;
	conn_begin_tls(c, c->srv->opts.tls, true, NULL);
	if (c->batch_depth == 0)
		conn_update_reading(c);
	return 0;
}

/* Client side: handshake with ctx, verifying server_name. */
int conn_start_tls_client(conn *c, tls_ctx *ctx, const char *server_name)
{
	if (c->state != CONN_OPEN || c->tls != NULL || ctx == NULL)
		return -1;
	conn_begin_tls(c, ctx, false, server_name);
	if (tls_session_handshake(c->tls) == TLS_ERROR) {
		conn_tls_failed(c);
		return -1;
	}
	conn_flush_now(c);
	if (c->batch_depth == 0 && c->state < CONN_CLOSING)
		conn_update_reading(c);
	return 0;
}

bool conn_is_tls(const conn *c)
{
	return c->tls != NULL && tls_session_established(c->tls);
}

const char *conn_tls_version(const conn *c)
{
	return conn_is_tls(c) ? tls_session_version(c->tls) : "";
}

const char *conn_tls_cipher(const conn *c)
{
	return conn_is_tls(c) ? tls_session_cipher(c->tls) : "";
}

const char *conn_tls_error(const conn *c)
{
	if (c->tls_error != NULL)
		return c->tls_error;
	return c->tls != NULL ? tls_session_error(c->tls) : "";
}

char *conn_tls_peer_fingerprint(const conn *c)
{
	return c->tls != NULL ? tls_session_peer_fingerprint(c->tls) : NULL;
}

bool conn_tls_peer_verified(const conn *c)
{
	return c->tls != NULL && tls_session_peer_verified(c->tls);
}

/* ---- servers ---- */

net_server *net_server_new(uv_loop_t *loop, const struct net_server_opts *opts,
			   const struct conn_handlers *handlers, void *server_data)
{
	net_ignore_sigpipe();
	net_server *srv = xcalloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->opts = *opts;
	srv->proto = xstrdup(opts->proto != NULL ? opts->proto : "");
	srv->too_many_reply = xstrdup(opts->too_many_reply != NULL ? opts->too_many_reply : "");
	srv->opts.proto = srv->proto;
	srv->opts.too_many_reply = srv->too_many_reply;
	srv->handlers = *handlers;
	srv->data = server_data;
	return srv;
}

void *net_server_data(const net_server *srv)
{
	return srv->data;
}

unsigned net_server_connection_count(const net_server *srv)
{
	return srv->admitted;
}

conn *net_server_find(net_server *srv, uint64_t id)
{
	for (conn *c = srv->conns; c != NULL; c = c->next)
		if (c->id == id && !c->refused && c->state < CONN_DRAINING)
			return c;
	return NULL;
}

/* Admitted connections from the same address as c. */
static unsigned net_server_count_from(net_server *srv, const conn *c)
{
	unsigned n = 0;
	for (conn *o = srv->conns; o != NULL; o = o->next)
		if (o->admitted && strcmp(o->peer_addr, c->peer_addr) == 0)
			n++;
	return n;
}

/* A client connected to one of our listeners. */
static void net_accept_cb(uv_stream_t *stream, int status)
{
	struct listener *l = stream->data;
	net_server *srv = l->srv;
	if (status < 0) {
		log_warn(0, "accept failed: %s", uv_strerror(status));
		return;
	}
	conn *c = conn_new(srv->loop, srv->proto, srv->opts.max_line, &srv->handlers, NULL);
	bool is_unix = l->h.handle.type == UV_NAMED_PIPE;
	if (is_unix)
		uv_pipe_init(srv->loop, &c->h.pipe, 0);
	else
		uv_tcp_init(srv->loop, &c->h.tcp);
	c->h.handle.data = c;
	c->handles_open++;
	c->srv = srv;
	c->kind = l->kind;
	c->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = c;
	srv->conns = c;
	srv->live++;
	if (uv_accept(stream, &c->h.stream) != 0) {
		conn_close_handles(c);
		return;
	}
	conn_load_peer(c, is_unix);
	if (!is_unix)
		uv_tcp_nodelay(&c->h.tcp, 1);

	if ((srv->opts.max_connections > 0 && srv->admitted >= srv->opts.max_connections) ||
	    (srv->opts.max_per_ip > 0 && net_server_count_from(srv, c) >= srv->opts.max_per_ip)) {
		log_kv(LOG_WARN, c->id, "connection refused: too many connections", "remote",
		       c->peer_addr, "proto", srv->proto, (char *)NULL);
		c->refused = true;
		if (l->implicit_tls) {
			/* No way to speak to it before a handshake: just close. */
			conn_abort(c);
			return;
		}
		conn_batch_begin(c);
		conn_write_str(c, srv->too_many_reply);
		conn_close(c);
		conn_batch_end(c);
		return;
	}
	c->admitted = true;
	srv->admitted++;
	c->idle_timeout_ms = srv->opts.idle_timeout_ms;
	log_kv(LOG_INFO, c->id, "connect", "remote", c->peer_addr, "proto", srv->proto,
	       "tls", l->implicit_tls ? "implicit" : "no", (char *)NULL);
	conn_batch_begin(c);
	if (c->idle_timeout_ms > 0)
		conn_idle_restart(c);
	if (l->implicit_tls) {
		c->tls = tls_session_new(srv->opts.tls, true, NULL);
		conn_enter(c, CONN_HANDSHAKING);
		conn_handshake_timer_start(c);
	} else {
		c->opened = true;
		if (srv->handlers.on_open != NULL)
			srv->handlers.on_open(c);
	}
	conn_batch_end(c);
}

/* A listener's handle is closed: free it. */
static void net_listener_closed_cb(uv_handle_t *handle)
{
	struct listener *l = handle->data;
	net_server *srv = l->srv;
	free(l);
	srv->live--;
	net_server_maybe_free(srv);
}

/* Closes a listener that failed to start and reports err. */
static int net_listen_failed(struct listener *l, const char *where, int r, char **err_r)
{
	*err_r = xasprintf("cannot listen on %s: %s", where, uv_strerror(r));
	uv_close(&l->h.handle, net_listener_closed_cb);
	return -1;
}

/* Adds l to the server's listeners. */
static void net_listener_add(net_server *srv, struct listener *l)
{
	l->next = srv->listeners;
	srv->listeners = l;
}

static int net_server_listen_tcp_at(net_server *srv, const char *addr, bool v6, const char *where,
				    int port, int kind, bool implicit_tls, char **err_r);

int net_server_listen_tcp(net_server *srv, const char *addr, int port, int kind,
			  bool implicit_tls, char **err_r)
{
	bool v6 = strchr(addr, ':') != NULL;
	char *where = v6 ? xasprintf("[%s]:%d", addr, port) : xasprintf("%s:%d", addr, port);
	int ret = net_server_listen_tcp_at(srv, addr, v6, where, port, kind, implicit_tls, err_r);
	free(where);
	return ret;
}

/* net_server_listen_tcp with the address already classified and named. */
static int net_server_listen_tcp_at(net_server *srv, const char *addr, bool v6, const char *where,
				    int port, int kind, bool implicit_tls, char **err_r)
{
	if (implicit_tls && srv->opts.tls == NULL) {
		*err_r = xasprintf("cannot listen on %s: no TLS certificate loaded", where);
		return -1;
	}
	struct sockaddr_storage ss;
	int r = v6 ? uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss)
		   : uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss);
	if (r != 0) {
		*err_r = xasprintf("cannot listen on %s: not an IP address", where);
		return -1;
	}
	struct listener *l = xcalloc(1, sizeof(*l));
	l->srv = srv;
	l->kind = kind;
	l->implicit_tls = implicit_tls;
	uv_tcp_init(srv->loop, &l->h.tcp);
	l->h.handle.data = l;
	srv->live++;
	r = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, v6 ? UV_TCP_IPV6ONLY : 0);
	if (r == 0)
		r = uv_listen(&l->h.stream, NET_LISTEN_BACKLOG, net_accept_cb);
	if (r != 0)
		return net_listen_failed(l, where, r, err_r);
	struct sockaddr_storage bound;
	int len = sizeof(bound);
	l->port = port;
	if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&bound, &len) == 0)
		l->port = ntohs(bound.ss_family == AF_INET6
					? ((struct sockaddr_in6 *)&bound)->sin6_port
					: ((struct sockaddr_in *)&bound)->sin_port);
	net_listener_add(srv, l);
	return 0;
}

int net_server_listen_unix(net_server *srv, const char *path, int kind, char **err_r)
{
	struct sockaddr_un sun;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*err_r = xasprintf("cannot listen on %s: path too long", path);
		return -1;
	}
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	struct listener *l = xcalloc(1, sizeof(*l));
	l->srv = srv;
	l->kind = kind;
	uv_pipe_init(srv->loop, &l->h.pipe, 0);
	l->h.handle.data = l;
	srv->live++;
	int r = uv_pipe_bind(&l->h.pipe, path);
	if (r == 0)
		r = uv_listen(&l->h.stream, NET_LISTEN_BACKLOG, net_accept_cb);
	if (r != 0)
		return net_listen_failed(l, path, r, err_r);
	if (chmod(path, 0660) != 0) {
		*err_r = xasprintf("cannot chmod %s: %s", path, strerror(errno));
		l->closing = true;
		uv_close(&l->h.handle, net_listener_closed_cb);
		return -1;
	}
	net_listener_add(srv, l);
	return 0;
}

int net_server_listen_list(net_server *srv, const char *addr_list, int port, int kind,
			   bool implicit_tls, char **err_r)
{
	char *copy = xstrdup(addr_list);
	char *save = NULL;
	int count = 0;
	int ret = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		size_t n = strlen(tok);
		while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
			tok[--n] = '\0';
		if (n == 0)
			continue;
		if (net_server_listen_tcp(srv, tok, port, kind, implicit_tls, err_r) < 0) {
			ret = -1;
			break;
		}
		count++;
	}
	if (ret == 0 && count == 0) {
		*err_r = xasprintf("cannot listen on port %d: no address in '%s'", port, addr_list);
		ret = -1;
	}
	free(copy);
	return ret;
}

int net_server_bound_port(const net_server *srv, int kind)
{
	for (const struct listener *l = srv->listeners; l != NULL; l = l->next)
		if (l->kind == kind && !l->closing && l->h.handle.type == UV_TCP)
			return l->port;
	return -1;
}

/* Stops listening and closes every connection gracefully. */
void net_server_shutdown(net_server *srv)
{
	srv->shut_down = true;
	for (struct listener *l = srv->listeners; l != NULL; l = l->next) {
		if (!l->closing) {
			l->closing = true;
			uv_close(&l->h.handle, net_listener_closed_cb);
		}
	}
	srv->listeners = NULL;
	for (conn *c = srv->conns; c != NULL; c = c->next)
		conn_close(c);
}

/* Lets go of the server; it is freed once its last conn and listener closed. */
void net_server_free(net_server **srv)
{
	if (*srv == NULL)
		return;
	net_server *s = *srv;
	*srv = NULL;
	if (!s->shut_down)
		net_server_shutdown(s);
	s->free_requested = true;
	net_server_maybe_free(s);
}

/* Closes every conn on loop at once (a daemon's forced stop). */
void net_abort_all(uv_loop_t *loop)
{
	for (conn *c = net_all_conns; c != NULL; c = c->all_next)
		if (c->loop == loop)
			conn_abort(c);
}

/* ---- outgoing connections ---- */

struct net_connect_req {
	uv_loop_t *loop;
	char *host;     /* or the unix path */
	int port;
	bool is_unix;
	char *proto;
	size_t max_line;
	struct conn_handlers handlers;
	void *data;
	conn_connect_cb cb;
	void *arg;
	uv_getaddrinfo_t gai;
	struct addrinfo *res;
	struct addrinfo *next_ai;
	uv_connect_t connect;
	conn *c;
	int last_status;
};

static void net_connect_try_next(struct net_connect_req *req);

/* Frees a finished connect request. */
static void net_connect_req_free(struct net_connect_req *req)
{
	if (req->res != NULL)
		uv_freeaddrinfo(req->res);
	free(req->host);
	free(req->proto);
	free(req);
}

/* Reports failure to the caller and ends the request. */
static void net_connect_fail(struct net_connect_req *req, int status)
{
	char *err = req->is_unix
			    ? xasprintf("cannot connect to %s: %s", req->host, uv_strerror(status))
			    : xasprintf("cannot connect to %s:%d: %s", req->host, req->port,
					uv_strerror(status));
	req->cb(NULL, status, err, req->arg);
	free(err);
	net_connect_req_free(req);
}

/* The connect attempt finished. */
static void net_connect_cb(uv_connect_t *creq, int status)
{
	struct net_connect_req *req = creq->data;
	conn *c = req->c;
	req->c = NULL;
	if (status < 0) {
		req->last_status = status;
		conn_close_handles(c); /* not opened: no handler is called */
		if (req->is_unix)
			net_connect_fail(req, status);
		else
			net_connect_try_next(req);
		return;
	}
	conn_load_peer(c, req->is_unix);
	if (!req->is_unix)
		uv_tcp_nodelay(&c->h.tcp, 1);
	c->opened = true;
	log_kv(LOG_DEBUG, c->id, "connected", "remote", c->peer_addr, "proto", c->proto,
	       (char *)NULL);
	conn_batch_begin(c);
	req->cb(c, 0, NULL, req->arg);
	conn_batch_end(c);
	net_connect_req_free(req);
}

/* A fresh conn for an outgoing attempt. */
static conn *net_connect_conn(struct net_connect_req *req)
{
	conn *c = conn_new(req->loop, req->proto, req->max_line, &req->handlers, req->data);
	c->outgoing = true;
	if (req->is_unix)
		uv_pipe_init(req->loop, &c->h.pipe, 0);
	else
		uv_tcp_init(req->loop, &c->h.tcp);
	c->h.handle.data = c;
	c->handles_open++;
	req->c = c;
	req->connect.data = req;
	return c;
}

/* Tries the next resolved address, or reports the last failure. */
static void net_connect_try_next(struct net_connect_req *req)
{
	while (req->next_ai != NULL) {
		struct addrinfo *ai = req->next_ai;
		req->next_ai = ai->ai_next;
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		conn *c = net_connect_conn(req);
		int r = uv_tcp_connect(&req->connect, &c->h.tcp, ai->ai_addr, net_connect_cb);
		if (r == 0)
			return;
		req->last_status = r;
		req->c = NULL;
		conn_close_handles(c);
	}
	net_connect_fail(req, req->last_status != 0 ? req->last_status : UV_EADDRNOTAVAIL);
}

/* The host name is resolved. */
static void net_resolved_cb(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
	struct net_connect_req *req = gai->data;
	if (status < 0) {
		req->last_status = status;
		net_connect_fail(req, status);
		return;
	}
	req->res = res;
	req->next_ai = res;
	net_connect_try_next(req);
}

/* A connect request with the caller's settings copied. */
static struct net_connect_req *net_connect_req_new(uv_loop_t *loop, const char *host, int port,
						   const char *proto, size_t max_line,
						   const struct conn_handlers *handlers, void *data,
						   conn_connect_cb cb, void *arg)
{
	net_ignore_sigpipe();
	struct net_connect_req *req = xcalloc(1, sizeof(*req));
	req->loop = loop;
	req->host = xstrdup(host);
	req->port = port;
	req->proto = xstrdup(proto != NULL ? proto : "");
	req->max_line = max_line;
	req->handlers = *handlers;
	req->data = data;
	req->cb = cb;
	req->arg = arg;
	return req;
}

int net_connect_tcp(uv_loop_t *loop, const char *host, int port, const char *proto,
		    size_t max_line, const struct conn_handlers *handlers, void *data,
		    conn_connect_cb cb, void *arg)
{
	struct net_connect_req *req =
		net_connect_req_new(loop, host, port, proto, max_line, handlers, data, cb, arg);
	char service[16];
	snprintf(service, sizeof(service), "%d", port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	req->gai.data = req;
	int r = uv_getaddrinfo(loop, &req->gai, net_resolved_cb, host, service, &hints);
	if (r < 0) {
		net_connect_req_free(req);
		return r;
	}
	return 0;
}

int net_connect_unix(uv_loop_t *loop, const char *path, const char *proto, size_t max_line,
		     const struct conn_handlers *handlers, void *data, conn_connect_cb cb,
		     void *arg)
{
	struct net_connect_req *req =
		net_connect_req_new(loop, path, 0, proto, max_line, handlers, data, cb, arg);
	req->is_unix = true;
	conn *c = net_connect_conn(req);
	uv_pipe_connect(&req->connect, &c->h.pipe, path, net_connect_cb);
	return 0;
}
