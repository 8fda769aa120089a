/* pop3c.c: the mua's asynchronous POP3 client (RFC 1939, CAPA RFC 2449,
 * STLS RFC 2595, AUTH RFC 5034) on a net.h connection.
 *
 * States (cl->sc.state, the same names the IMAP client shows; every change
 * goes through server_conn_enter, which notes it in the transcript and tells
 * the owner). Connecting, TLS, reconnecting and the closing reasons are
 * server_conn.c's; the POP3 steps are here:
 *
 *   DISCONNECTED --pop3c_connect--> CONNECTING --implicit TLS--> TLS --> GREETING
 *                                         \-------plain/STLS------------> GREETING
 *   GREETING --+OK--> (CAPA) --STLS mode--> STARTTLS --handshake--> (CAPA again)
 *   --> AUTH (AUTH PLAIN with an initial response, or USER/PASS) --+OK--> READY
 *   READY --pop3c_quit--> LOGOUT --+OK/close--> DISCONNECTED
 *   any --connection lost / refused / TLS failure--> DISCONNECTED (+ reconnect timer)
 *
 * One command runs at a time (cl->running); the rest wait in a FIFO and go out
 * only in READY. A multi-line reply (RFC 1939 3: ends with ".", dot-stuffed
 * lines) is gathered into cl->data, bounded by POP3C_MAX_DATA, and given to
 * the command's callback whole. POP3 sees the maildrop as it was at login, so
 * the owner learns of new mail by quitting and connecting again (polling);
 * DELE takes effect only at QUIT. Invariant: cl->in_data is true exactly
 * while a multi-line reply is being gathered. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "net.h"
#include "sasl.h"
#include "mua.h"
#include "server_conn.h"

#define POP3C_MAX_LINE (64 * 1024)
#define POP3C_MAX_DATA (64 * 1024 * 1024)
#define POP3C_REPLY_TIMEOUT_MS 60000
#define POP3C_RECONNECT_MIN_MS 2000
#define POP3C_RECONNECT_MAX_MS 30000

static const char *const pop3c_state_names[] = {
	[IMAPC_DISCONNECTED] = "disconnected", [IMAPC_CONNECTING] = "connecting",
	[IMAPC_TLS] = "tls",                   [IMAPC_GREETING] = "greeting",
	[IMAPC_STARTTLS] = "stls",             [IMAPC_AUTH] = "auth",
	[IMAPC_READY] = "transaction",         [IMAPC_LOGOUT] = "quit",
};

enum pop3c_cmd_kind { P3_USER, P3_CAPA, P3_STLS, P3_AUTH, P3_USERNAME, P3_PASS, P3_QUIT };

struct pop3c_cmd {
	struct server_cmd_link link; /* first: the queue holds it */
	enum pop3c_cmd_kind kind;
	char *text;
	bool multiline;
	bool secret;         /* the line carries a password */
	pop3c_done_cb *done;
	void *arg;
};

struct pop3c {
	struct server_conn sc; /* first: the conn's data is the client; only ev.on_state is used */
	struct server_queue queue;
	struct pop3c_cmd *running;
	bool in_data;
	buf_t data;
	bool data_too_big;
	size_t data_lines;
	char *status;          /* the +OK line of the running multi-line reply */
	bool cap_stls, cap_sasl_plain, cap_user, cap_top, cap_uidl;
};

static void pop3c_pump(pop3c *cl);

/* Changes state, notes it and tells the owner. */
static void pop3c_enter(pop3c *cl, enum imapc_state state, const char *msg)
{
	server_conn_enter(&cl->sc, state, msg);
}

/* Frees one command. */
static void pop3c_cmd_free(struct pop3c_cmd **cmd)
{
	if (*cmd == NULL)
		return;
	if ((*cmd)->secret)
		explicit_bzero((*cmd)->text, strlen((*cmd)->text));
	free((*cmd)->text);
	free(*cmd);
	*cmd = NULL;
}

/* Ends a command: unhooks it, calls its callback, frees it. */
static void pop3c_cmd_finish(pop3c *cl, struct pop3c_cmd *cmd, bool ok, const char *status,
			     const char *data, size_t len)
{
	if (cl->running == cmd)
		cl->running = NULL;
	if (cmd->done != NULL && !cl->sc.freeing)
		cmd->done(cmd->arg, ok, status, data, len);
	pop3c_cmd_free(&cmd);
}

/* Takes the first queued command off the queue, or NULL. */
static struct pop3c_cmd *pop3c_dequeue(pop3c *cl)
{
	return (struct pop3c_cmd *)server_queue_pop(&cl->queue);
}

/* Fails the running and every queued command. */
static void pop3c_drop_all(pop3c *cl, const char *why)
{
	if (cl->running != NULL)
		pop3c_cmd_finish(cl, cl->running, false, why, NULL, 0);
	for (struct pop3c_cmd *cmd; (cmd = pop3c_dequeue(cl)) != NULL;)
		pop3c_cmd_finish(cl, cmd, false, why, NULL, 0);
}

/* Makes a command record. */
static struct pop3c_cmd *pop3c_cmd_new(enum pop3c_cmd_kind kind, const char *text, bool multiline)
{
	struct pop3c_cmd *cmd = xcalloc(1, sizeof(*cmd));
	cmd->kind = kind;
	cmd->text = xstrdup(text);
	cmd->multiline = multiline;
	return cmd;
}

/* Sends a command now (it becomes cl->running). */
static void pop3c_send(pop3c *cl, struct pop3c_cmd *cmd)
{
	cl->running = cmd;
	server_conn_write_line(&cl->sc, cmd->text, false);
	conn_set_command_timeout(cl->sc.c, POP3C_REPLY_TIMEOUT_MS);
}

/* Runs a session-setup command, outside the user queue. */
static void pop3c_send_internal(pop3c *cl, enum pop3c_cmd_kind kind, const char *text,
				bool multiline)
{
	struct pop3c_cmd *cmd = pop3c_cmd_new(kind, text, multiline);
	cmd->secret = kind == P3_AUTH || kind == P3_PASS;
	pop3c_send(cl, cmd);
}

/* Logs in: AUTH PLAIN with an initial response when offered, else USER/PASS. */
static void pop3c_authenticate(pop3c *cl)
{
	pop3c_enter(cl, IMAPC_AUTH, NULL);
	struct mua_account *a = cl->sc.account;
	if (cl->cap_sasl_plain || !cl->cap_user) {
		sasl_client *sasl = sasl_client_new("PLAIN", a->login,
						    a->password != NULL ? a->password : "");
		char *ir = sasl_client_initial(sasl);
		char *text = xasprintf("AUTH PLAIN %s", ir);
		pop3c_send_internal(cl, P3_AUTH, text, false);
		explicit_bzero(text, strlen(text));
		explicit_bzero(ir, strlen(ir));
		free(text);
		free(ir);
		sasl_client_free(&sasl);
		return;
	}
	char *text = xasprintf("USER %s", a->login);
	pop3c_send_internal(cl, P3_USERNAME, text, false);
	free(text);
}

/* After CAPA (first time or after STLS): TLS first when asked, then log in. */
static void pop3c_after_capa(pop3c *cl)
{
	if (cl->sc.account->read_tls == MUA_TLS_STARTTLS && !conn_is_tls(cl->sc.c)) {
		if (!cl->cap_stls) {
			server_conn_fail(&cl->sc, "the POP3 server does not offer STLS (password not sent)");
			return;
		}
		pop3c_enter(cl, IMAPC_STARTTLS, NULL);
		pop3c_send_internal(cl, P3_STLS, "STLS", false);
		return;
	}
	pop3c_authenticate(cl);
}

/* Reads the capabilities from a CAPA listing. */
static void pop3c_parse_capa(pop3c *cl, const char *data)
{
	cl->cap_stls = cl->cap_sasl_plain = cl->cap_user = cl->cap_top = cl->cap_uidl = false;
	const char *p = data;
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		char *line = xstrndup(p, len);
		for (char *q = line; *q != '\0'; q++)
			*q = (char)toupper((unsigned char)*q);
		char *word = strtok(line, " \r");
		if (word != NULL) {
			if (strcmp(word, "STLS") == 0)
				cl->cap_stls = true;
			else if (strcmp(word, "USER") == 0)
				cl->cap_user = true;
			else if (strcmp(word, "TOP") == 0)
				cl->cap_top = true;
			else if (strcmp(word, "UIDL") == 0)
				cl->cap_uidl = true;
			else if (strcmp(word, "SASL") == 0)
				for (char *m = strtok(NULL, " \r"); m != NULL; m = strtok(NULL, " \r"))
					cl->cap_sasl_plain |= strcmp(m, "PLAIN") == 0;
		}
		free(line);
		p += len + (eol != NULL);
	}
}

/* The server's text after "+OK " or "-ERR ". */
static const char *pop3c_reply_text(const char *line)
{
	const char *sp = strchr(line, ' ');
	return sp != NULL ? sp + 1 : "";
}

/* A whole reply (single line, or multi-line with its data) for the running command. */
static void pop3c_reply(pop3c *cl, bool ok, const char *status, const char *data, size_t len)
{
	struct pop3c_cmd *cmd = cl->running;
	conn_set_command_timeout(cl->sc.c, 0);
	switch (cmd->kind) {
	case P3_CAPA:
		pop3c_parse_capa(cl, ok && data != NULL ? data : "");
		pop3c_cmd_finish(cl, cmd, ok, status, data, len);
		pop3c_after_capa(cl);
		return;
	case P3_STLS:
		pop3c_cmd_finish(cl, cmd, ok, status, NULL, 0);
		if (!ok) {
			server_conn_fail(&cl->sc, "the POP3 server refused STLS");
			return;
		}
		server_conn_start_tls(&cl->sc);
		return;
	case P3_USERNAME:
	case P3_AUTH:
	case P3_PASS: {
		bool was_user = cmd->kind == P3_USERNAME;
		pop3c_cmd_finish(cl, cmd, ok, status, NULL, 0);
		if (ok && was_user) {
			const char *pw = cl->sc.account->password != NULL ? cl->sc.account->password : "";
			char *text = xasprintf("PASS %s", pw);
			pop3c_send_internal(cl, P3_PASS, text, false);
			explicit_bzero(text, strlen(text));
			free(text);
			return;
		}
		if (!ok) {
			char *msg = xasprintf("POP3 login refused: %s", pop3c_reply_text(status));
			server_conn_fail(&cl->sc, msg);
			free(msg);
			return;
		}
		cl->sc.backoff_ms = 0;
		pop3c_enter(cl, IMAPC_READY, NULL);
		break;
	}
	case P3_QUIT:
		pop3c_cmd_finish(cl, cmd, ok, status, NULL, 0);
		conn_close(cl->sc.c);
		return;
	case P3_USER:
		pop3c_cmd_finish(cl, cmd, ok, status, data, len);
		break;
	}
	pop3c_pump(cl);
}

/* One line from the server. */
static void pop3c_on_line(conn *c, char *line, size_t len, bool crlf)
{
	pop3c *cl = conn_data(c);
	if (cl == NULL)
		return;
	if (cl->in_data) {
		if (len == 1 && line[0] == '.') {
			cl->in_data = false;
			mua_transcript_add("pop3", 'S', ".", 1, false);
			char *status = cl->status;
			cl->status = NULL;
			bool too_big = cl->data_too_big;
			cl->data_too_big = false;
			if (too_big) {
				buf_reset(&cl->data);
				pop3c_reply(cl, false, "-ERR the reply is too large", NULL, 0);
			} else {
				char *data = buf_steal(&cl->data);
				size_t dlen = strlen(data);
				pop3c_reply(cl, true, status, data, dlen);
				free(data);
			}
			free(status);
			return;
		}
		/* RFC 1939 3: a line starting with "." has it doubled. */
		const char *p = line[0] == '.' ? line + 1 : line;
		size_t n = line[0] == '.' ? len - 1 : len;
		if (cl->data.len + n + 2 > POP3C_MAX_DATA) {
			cl->data_too_big = true;
			return;
		}
		/* Listings show in the transcript; message text only as a count. */
		if (cl->data_lines < 50 && n < 200 && cl->running->kind != P3_USER)
			mua_transcript_add("pop3", 'S', p, n, false);
		else if (cl->data_lines < 50 && cl->running->kind == P3_USER &&
			 strncasecmp(cl->running->text, "UIDL", 4) == 0)
			mua_transcript_add("pop3", 'S', p, n, false);
		cl->data_lines++;
		buf_append(&cl->data, p, n);
		buf_append(&cl->data, "\r\n", 2);
		return;
	}
	mua_transcript_add("pop3", 'S', line, len, false);
	bool ok = strncmp(line, "+OK", 3) == 0 && (line[3] == ' ' || line[3] == '\0');
	bool err = strncmp(line, "-ERR", 4) == 0 && (line[4] == ' ' || line[4] == '\0');
	if (cl->sc.state == IMAPC_GREETING && cl->running == NULL) {
		if (!ok) {
			char *msg = xasprintf("the POP3 server refused the connection: %s",
					      pop3c_reply_text(line));
			pop3c_enter(cl, IMAPC_DISCONNECTED, msg);
			free(msg);
			conn_abort(c);
			return;
		}
		conn_set_command_timeout(c, 0);
		pop3c_send_internal(cl, P3_CAPA, "CAPA", true);
		return;
	}
	if (cl->running == NULL || (!ok && !err)) {
		if (line[0] == '+' && cl->running != NULL && cl->running->kind == P3_AUTH)
			pop3c_reply(cl, false, "-ERR unexpected challenge", NULL, 0);
		return;
	}
	if (ok && cl->running->multiline) {
		cl->in_data = true;
		cl->data_lines = 0;
		buf_reset(&cl->data);
		free(cl->status);
		cl->status = xstrdup(line);
		return;
	}
	pop3c_reply(cl, ok, line, NULL, 0);
}

/* The handshake finished: wait for the greeting (implicit) or ask CAPA again. */
static void pop3c_on_tls_ready(conn *c)
{
	pop3c *cl = conn_data(c);
	if (cl == NULL)
		return;
	if (!server_conn_tls_ready(&cl->sc, c))
		return;
	if (cl->sc.state == IMAPC_TLS) {
		pop3c_enter(cl, IMAPC_GREETING, NULL);
		conn_set_command_timeout(c, POP3C_REPLY_TIMEOUT_MS);
		return;
	}
	/* RFC 2595 4: capabilities may change after STLS. */
	pop3c_send_internal(cl, P3_CAPA, "CAPA", true);
}

/* The server took too long. */
static void pop3c_on_timeout(conn *c)
{
	pop3c *cl = conn_data(c);
	if (cl == NULL)
		return;
	server_conn_timed_out(&cl->sc, c);
}

/* The connection is gone: tell why, drop commands, maybe reconnect. */
static void pop3c_on_close(conn *c)
{
	pop3c *cl = conn_data(c);
	if (cl == NULL)
		return;
	bool was_logout = cl->sc.state == IMAPC_LOGOUT;
	char *msg = server_conn_lost(&cl->sc, c, NULL);
	cl->in_data = false;
	buf_reset(&cl->data);
	free(cl->status);
	cl->status = NULL;
	server_conn_enter_lost(&cl->sc, msg);
	pop3c_drop_all(cl, "connection lost");
	if (!was_logout)
		server_conn_schedule_reconnect(&cl->sc);
}

static const struct conn_handlers pop3c_handlers = {
	.on_line = pop3c_on_line,
	.on_line_too_long = server_conn_on_line_too_long,
	.on_tls_ready = pop3c_on_tls_ready,
	.on_timeout = pop3c_on_timeout,
	.on_close = pop3c_on_close,
};

/* Frees what the client holds and closes its timer (the memory goes in its callback). */
static void pop3c_release(void *client)
{
	pop3c *cl = client;
	pop3c_drop_all(cl, "closed");
	buf_free(&cl->data);
	free(cl->status);
	server_conn_release(&cl->sc);
}

/* Connects unless already connected or connecting. */
void pop3c_connect(pop3c *cl)
{
	server_conn_connect(&cl->sc);
}

/* The reconnect timer. */
static void pop3c_timer_cb(uv_timer_t *t)
{
	pop3c_connect(t->data);
}

static const struct server_proto pop3c_proto = {
	.name = "pop3",
	.label = "POP3",
	.starttls = "STLS",
	.state_names = pop3c_state_names,
	.max_line = POP3C_MAX_LINE,
	.reply_timeout_ms = POP3C_REPLY_TIMEOUT_MS,
	.reconnect_min_ms = POP3C_RECONNECT_MIN_MS,
	.reconnect_max_ms = POP3C_RECONNECT_MAX_MS,
	.backoff_reset_on_connect = false,
	.handlers = &pop3c_handlers,
	.timer_cb = pop3c_timer_cb,
	.release = pop3c_release,
};

/* Sends the next queued command. */
static void pop3c_pump(pop3c *cl)
{
	if ((cl->sc.state != IMAPC_READY && cl->sc.state != IMAPC_LOGOUT) || cl->sc.c == NULL ||
	    cl->running != NULL || cl->queue.head == NULL)
		return;
	pop3c_send(cl, pop3c_dequeue(cl));
}

/* Makes a client. */
pop3c *pop3c_new(uv_loop_t *loop, struct mua_account *account, const struct imapc_events *ev,
		 void *arg)
{
	pop3c *cl = xcalloc(1, sizeof(*cl));
	server_conn_init(&cl->sc, &pop3c_proto, loop, account, ev, arg);
	return cl;
}

/* Drops the connection and frees the client. */
void pop3c_free(pop3c **clp)
{
	pop3c *cl = *clp;
	if (cl == NULL)
		return;
	*clp = NULL;
	if (server_conn_free_begin(&cl->sc))
		pop3c_release(cl);
}

void pop3c_set_reconnect(pop3c *cl, bool on)
{
	cl->sc.reconnect = on;
}

enum imapc_state pop3c_get_state(const pop3c *cl)
{
	return cl->sc.state;
}

/* True when the server listed TOP (the index reads headers with it). */
bool pop3c_has_top(const pop3c *cl)
{
	return cl->cap_top;
}

/* Queues a command; multiline = the reply has a data part ending in ".". */
void pop3c_command(pop3c *cl, const char *text, bool multiline, pop3c_done_cb *done, void *arg)
{
	if (cl->sc.state != IMAPC_READY) {
		if (done != NULL)
			done(arg, false, "-ERR not connected", NULL, 0);
		return;
	}
	struct pop3c_cmd *cmd = pop3c_cmd_new(P3_USER, text, multiline);
	cmd->done = done;
	cmd->arg = arg;
	server_queue_push(&cl->queue, &cmd->link);
	pop3c_pump(cl);
}

/* Commands queued or running. */
size_t pop3c_pending(const pop3c *cl)
{
	size_t n = cl->running != NULL ? 1 : 0;
	n += server_queue_count(&cl->queue);
	return n;
}

/* QUIT after what is queued (this commits DELE, RFC 1939 6), then close. */
void pop3c_quit(pop3c *cl)
{
	if (cl->sc.state != IMAPC_READY || cl->sc.c == NULL)
		return;
	pop3c_enter(cl, IMAPC_LOGOUT, NULL);
	struct pop3c_cmd *cmd = pop3c_cmd_new(P3_QUIT, "QUIT", false);
	server_queue_push(&cl->queue, &cmd->link);
	pop3c_pump(cl);
}
