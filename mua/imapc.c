/* imapc.c: the mua's asynchronous IMAP client (RFC 3501, IDLE RFC 2177,
 * LITERAL+ RFC 7888, SASL-IR RFC 4959) on a net.h connection.
 *
 * States (cl->sc.state; every change goes through server_conn_enter, which logs
 * to the transcript and tells the owner). Connecting, TLS, reconnecting and
 * the closing reasons are server_conn.c's; the IMAP steps are here:
 *
 *   DISCONNECTED --imapc_connect--> CONNECTING --implicit TLS--> TLS --> GREETING
 *                                        \----------plain/STARTTLS-----> GREETING
 *   GREETING --STARTTLS mode--> STARTTLS --handshake--> AUTH
 *   GREETING --otherwise--> AUTH --tagged OK--> READY --imapc_logout--> LOGOUT
 *   any --connection lost / refused / TLS failure--> DISCONNECTED (+ reconnect timer)
 *
 * One command runs at a time (cl->running); the rest wait in a FIFO and go
 * out only in READY. When nothing waits and a folder is selected, the client
 * IDLEs; queuing a command sends DONE first. Server lines are read whole
 * unless they carry literals: data responses go through the IMAP parser
 * (imap_parser.h), whose literals are read with conn_read_bytes. Status
 * responses (OK/NO/BAD/BYE/PREAUTH and tagged ones) are split by hand because
 * their text is free-form. Invariant: cl->in_data is true exactly while the
 * parser holds part of a response. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "net.h"
#include "sasl.h"
#include "mua.h"
#include "server_conn.h"

#define IMAPC_MAX_LINE (1024 * 1024)
#define IMAPC_MAX_LITERAL (64 * 1024 * 1024)
#define IMAPC_REPLY_TIMEOUT_MS 60000
#define IMAPC_IDLE_RESTART_MS (25 * 60 * 1000)
#define IMAPC_IDLE_DELAY_MS 100
#define IMAPC_RECONNECT_MIN_MS 2000
#define IMAPC_RECONNECT_MAX_MS 30000

static const char *const imapc_state_names[] = {
	[IMAPC_DISCONNECTED] = "disconnected", [IMAPC_CONNECTING] = "connecting",
	[IMAPC_TLS] = "tls",                   [IMAPC_GREETING] = "greeting",
	[IMAPC_STARTTLS] = "starttls",         [IMAPC_AUTH] = "auth",
	[IMAPC_READY] = "ready",               [IMAPC_LOGOUT] = "logout",
};

enum imapc_cmd_kind { CMD_USER, CMD_IDLE, CMD_CAPABILITY, CMD_STARTTLS, CMD_AUTH, CMD_LOGOUT };

struct imapc_cmd {
	struct server_cmd_link link; /* first: the queue holds it */
	enum imapc_cmd_kind kind;
	char tag[16];
	char *text;
	char *literal;
	size_t literal_len;
	bool literal_waiting; /* a {n} literal waits for the server's "+" */
	bool selects;         /* SELECT/EXAMINE: a folder is selected on OK */
	imapc_untagged_cb *untagged;
	imapc_done_cb *done;
	void *arg;
};

struct imapc {
	struct server_conn sc; /* first: the conn's data is the client; its timer also waits before IDLE */
	imap_parser *parser;
	bool in_data;
	char *caps;            /* " IMAP4REV1 IDLE ... " upper-cased, spaces around */
	uint32_t uidvalidity;  /* from the last SELECT/EXAMINE's [UIDVALIDITY n], 0 = none */
	struct server_queue queue;
	struct imapc_cmd *running;
	unsigned tag_counter;
	bool idle_enabled, idling, idle_done_sent;
	bool selected;
	bool timer_is_idle;    /* sc.timer waits before IDLE, not to reconnect */
	sasl_client *sasl;
	char *bye_text;
};

static void imapc_pump(imapc *cl);
static void imapc_send(imapc *cl, struct imapc_cmd *cmd);

/* Changes state, notes it in the transcript and tells the owner. */
static void imapc_enter(imapc *cl, enum imapc_state state, const char *msg)
{
	server_conn_enter(&cl->sc, state, msg);
}

/* Writes one line (CRLF added) and records it. */
static void imapc_write_line(imapc *cl, const char *line, bool secret)
{
	server_conn_write_line(&cl->sc, line, secret);
}

/* Frees one command. */
static void imapc_cmd_free(struct imapc_cmd **cmd)
{
	if (*cmd == NULL)
		return;
	free((*cmd)->text);
	free((*cmd)->literal);
	free(*cmd);
	*cmd = NULL;
}

/* Ends a command: unhooks it, calls its callback, frees it. */
static void imapc_cmd_finish(imapc *cl, struct imapc_cmd *cmd, enum imapc_result result,
			     const char *text)
{
	if (cl->running == cmd)
		cl->running = NULL;
	if (cmd->done != NULL && !cl->sc.freeing)
		cmd->done(cmd->arg, result, text);
	imapc_cmd_free(&cmd);
}

/* Takes the first queued command off the queue, or NULL. */
static struct imapc_cmd *imapc_dequeue(imapc *cl)
{
	return (struct imapc_cmd *)server_queue_pop(&cl->queue);
}

/* Fails the running and every queued command (the connection is gone). */
static void imapc_drop_all(imapc *cl, const char *why)
{
	if (cl->running != NULL)
		imapc_cmd_finish(cl, cl->running, IMAPC_DROPPED, why);
	for (struct imapc_cmd *cmd; (cmd = imapc_dequeue(cl)) != NULL;)
		imapc_cmd_finish(cl, cmd, IMAPC_DROPPED, why);
}

/* Parses a capability list ("IMAP4rev1 IDLE AUTH=PLAIN") into cl->caps. */
static void imapc_set_caps(imapc *cl, const char *text, size_t len)
{
	free(cl->caps);
	buf_t b = BUF_INIT;
	buf_append_char(&b, ' ');
	for (size_t i = 0; i < len && text[i] != ']'; i++)
		buf_append_char(&b, (char)toupper((unsigned char)text[i]));
	buf_append_char(&b, ' ');
	cl->caps = buf_steal(&b);
}

/* True when the server announced cap. */
bool imapc_has_capability(const imapc *cl, const char *cap)
{
	if (cl->caps == NULL)
		return false;
	char *needle = xasprintf(" %s ", cap);
	for (char *p = needle; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	bool found = strstr(cl->caps, needle) != NULL;
	free(needle);
	return found;
}

/* Picks up "[CAPABILITY ...]" and "[UIDVALIDITY n]" in a status response's text. */
static void imapc_scan_resp_code(imapc *cl, const char *text)
{
	const char *uv = strstr(text, "[UIDVALIDITY ");
	if (uv != NULL)
		cl->uidvalidity = (uint32_t)strtoul(uv + strlen("[UIDVALIDITY "), NULL, 10);
	const char *p = strstr(text, "[CAPABILITY ");
	if (p != NULL) {
		p += strlen("[CAPABILITY ");
		const char *end = strchr(p, ']');
		imapc_set_caps(cl, p, end != NULL ? (size_t)(end - p) : strlen(p));
	}
}

/* Makes a command record. */
static struct imapc_cmd *imapc_cmd_new(enum imapc_cmd_kind kind, const char *text)
{
	struct imapc_cmd *cmd = xcalloc(1, sizeof(*cmd));
	cmd->kind = kind;
	cmd->text = xstrdup(text);
	return cmd;
}

/* Sends a command now (it becomes cl->running). */
static void imapc_send(imapc *cl, struct imapc_cmd *cmd)
{
	snprintf(cmd->tag, sizeof(cmd->tag), "a%u", ++cl->tag_counter);
	cl->running = cmd;
	buf_t line = BUF_INIT;
	buf_printf(&line, "%s %s", cmd->tag, cmd->text);
	if (cmd->literal != NULL) {
		bool plus = imapc_has_capability(cl, "LITERAL+");
		buf_printf(&line, " {%zu%s}", cmd->literal_len, plus ? "+" : "");
		imapc_write_line(cl, buf_cstr(&line), false);
		if (plus) {
			conn_write_quiet(cl->sc.c, cmd->literal, cmd->literal_len);
			conn_write_str(cl->sc.c, "\r\n");
			mua_transcript_note("(%zu bytes of literal sent)", cmd->literal_len);
		} else {
			cmd->literal_waiting = true;
		}
	} else {
		/* LOGIN and AUTHENTICATE lines are masked by the transcript. */
		imapc_write_line(cl, buf_cstr(&line), false);
	}
	buf_free(&line);
	conn_set_command_timeout(cl->sc.c, cmd->kind == CMD_IDLE ? IMAPC_IDLE_RESTART_MS :
					 IMAPC_REPLY_TIMEOUT_MS);
}

/* Runs a connection-setup command, outside the user queue. */
static void imapc_send_internal(imapc *cl, enum imapc_cmd_kind kind, const char *text)
{
	imapc_send(cl, imapc_cmd_new(kind, text));
}

/* Logged in: READY, with an ID (RFC 2971) first when the server takes one. */
static void imapc_become_ready(imapc *cl)
{
	if (imapc_has_capability(cl, "ID")) {
		struct imapc_cmd *cmd = imapc_cmd_new(CMD_USER, "ID (\"name\" \"mailstack-mua\" "
						      "\"version\" \"0.1\")");
		server_queue_push_front(&cl->queue, &cmd->link);
	}
	imapc_enter(cl, IMAPC_READY, NULL);
}

/* Starts logging in: AUTHENTICATE PLAIN (with SASL-IR when offered) or LOGIN. */
static void imapc_authenticate(imapc *cl)
{
	imapc_enter(cl, IMAPC_AUTH, NULL);
	struct mua_account *a = cl->sc.account;
	if (imapc_has_capability(cl, "AUTH=PLAIN")) {
		sasl_client_free(&cl->sasl);
		cl->sasl = sasl_client_new("PLAIN", a->login, a->password != NULL ? a->password : "");
		if (imapc_has_capability(cl, "SASL-IR")) {
			char *ir = sasl_client_initial(cl->sasl);
			char *text = xasprintf("AUTHENTICATE PLAIN %s", ir);
			imapc_send_internal(cl, CMD_AUTH, text);
			explicit_bzero(text, strlen(text));
			explicit_bzero(ir, strlen(ir));
			free(text);
			free(ir);
		} else {
			imapc_send_internal(cl, CMD_AUTH, "AUTHENTICATE PLAIN");
		}
		return;
	}
	char *user = imapc_quote(a->login);
	char *pass = imapc_quote(a->password != NULL ? a->password : "");
	char *text = xasprintf("LOGIN %s %s", user, pass);
	imapc_send_internal(cl, CMD_AUTH, text);
	explicit_bzero(text, strlen(text));
	explicit_bzero(pass, strlen(pass));
	free(text);
	free(user);
	free(pass);
}

/* After the greeting (or a finished STARTTLS): TLS first when asked, then log in. */
static void imapc_after_greeting(imapc *cl)
{
	if (cl->sc.account->read_tls == MUA_TLS_STARTTLS && !conn_is_tls(cl->sc.c)) {
		if (!imapc_has_capability(cl, "STARTTLS")) {
			server_conn_fail(&cl->sc,
					 "the IMAP server does not offer STARTTLS (password not sent)");
			return;
		}
		imapc_enter(cl, IMAPC_STARTTLS, NULL);
		imapc_send_internal(cl, CMD_STARTTLS, "STARTTLS");
		return;
	}
	imapc_authenticate(cl);
}

/* Handles a continuation request "+ ...". */
static void imapc_continuation(imapc *cl, const char *text)
{
	struct imapc_cmd *cmd = cl->running;
	if (cmd == NULL)
		return;
	if (cmd->literal_waiting) {
		cmd->literal_waiting = false;
		conn_write_quiet(cl->sc.c, cmd->literal, cmd->literal_len);
		conn_write_str(cl->sc.c, "\r\n");
		mua_transcript_note("(%zu bytes of literal sent)", cmd->literal_len);
		return;
	}
	if (cmd->kind == CMD_IDLE) {
		cl->idling = true;
		conn_set_command_timeout(cl->sc.c, IMAPC_IDLE_RESTART_MS);
		if (cl->queue.head != NULL && !cl->idle_done_sent) {
			cl->idle_done_sent = true;
			imapc_write_line(cl, "DONE", false);
		}
		return;
	}
	if (cmd->kind == CMD_AUTH && cl->sasl != NULL) {
		char *response = NULL;
		if (text[0] == '\0' || strcmp(text, "=") == 0) {
			response = sasl_client_initial(cl->sasl);
		} else if (sasl_client_step(cl->sasl, text, &response) < 0) {
			imapc_write_line(cl, "*", false);
			return;
		}
		imapc_write_line(cl, response != NULL ? response : "", true);
		if (response != NULL)
			explicit_bzero(response, strlen(response));
		free(response);
		return;
	}
	/* Nothing to continue: cancel whatever the server expects. */
	imapc_write_line(cl, "*", false);
}

/* A tagged response for the running command. */
static void imapc_tagged(imapc *cl, const char *status, const char *text)
{
	struct imapc_cmd *cmd = cl->running;
	enum imapc_result result = strcasecmp(status, "OK") == 0   ? IMAPC_OK
				   : strcasecmp(status, "NO") == 0 ? IMAPC_NO
								   : IMAPC_BAD;
	conn_set_command_timeout(cl->sc.c, 0);
	imapc_scan_resp_code(cl, text);
	switch (cmd->kind) {
	case CMD_STARTTLS:
		imapc_cmd_finish(cl, cmd, result, text);
		if (result != IMAPC_OK) {
			server_conn_fail(&cl->sc, "the IMAP server refused STARTTLS");
			return;
		}
		server_conn_start_tls(&cl->sc);
		return;
	case CMD_CAPABILITY:
		imapc_cmd_finish(cl, cmd, result, text);
		if (cl->sc.state == IMAPC_STARTTLS || cl->sc.state == IMAPC_GREETING)
			imapc_after_greeting(cl);
		else if (cl->sc.state == IMAPC_AUTH)
			imapc_become_ready(cl);
		break;
	case CMD_AUTH:
		sasl_client_free(&cl->sasl);
		imapc_cmd_finish(cl, cmd, result, text);
		if (result != IMAPC_OK) {
			char *msg = xasprintf("IMAP login refused: %s", text);
			server_conn_fail(&cl->sc, msg);
			free(msg);
			return;
		}
		if (strstr(text, "[CAPABILITY ") == NULL) {
			imapc_send_internal(cl, CMD_CAPABILITY, "CAPABILITY");
			return;
		}
		imapc_become_ready(cl);
		break;
	case CMD_IDLE:
		cl->idling = false;
		cl->idle_done_sent = false;
		imapc_cmd_finish(cl, cmd, result, text);
		break;
	case CMD_LOGOUT:
		imapc_cmd_finish(cl, cmd, result, text);
		conn_close(cl->sc.c);
		return;
	case CMD_USER:
		if (cmd->selects)
			cl->selected = result == IMAPC_OK;
		imapc_cmd_finish(cl, cmd, result, text);
		break;
	}
	imapc_pump(cl);
}

/* Hands a parsed data response to the running command or the owner. */
static void imapc_dispatch(imapc *cl)
{
	size_t count;
	const struct imap_arg *args = imap_parser_args(cl->parser, &count);
	if (count < 2 || !imap_arg_atom_is(&args[0], "*"))
		return;
	uint32_t number = 0;
	size_t name_at = 1;
	const char *first = imap_arg_string(&args[1]);
	if (first != NULL && isdigit((unsigned char)first[0])) {
		number = (uint32_t)strtoul(first, NULL, 10);
		name_at = 2;
	}
	if (name_at >= count)
		return;
	const char *name = imap_arg_string(&args[name_at]);
	if (name == NULL)
		return;
	const struct imap_arg *rest = &args[name_at + 1];
	size_t rest_count = count - name_at - 1;
	if (cl->running != NULL && cl->running->untagged != NULL && cl->running->kind == CMD_USER) {
		cl->running->untagged(cl->running->arg, name, number, rest, rest_count);
		return;
	}
	if (strcasecmp(name, "FETCH") == 0 && rest_count > 0 &&
	    rest[0].type == IMAP_ARG_LIST && cl->sc.ev.on_fetch != NULL)
		cl->sc.ev.on_fetch(cl->sc.arg, number, &rest[0]);
}

/* Feeds response bytes to the parser and acts on what it returns. */
static void imapc_feed(imapc *cl, const char *data, size_t len)
{
	while (true) {
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(cl->parser, data, len, &used);
		data += used;
		len -= used;
		switch (r) {
		case IMAP_PARSE_DONE:
			cl->in_data = false;
			imapc_dispatch(cl);
			imap_parser_reset(cl->parser);
			if (len == 0)
				return;
			break;
		case IMAP_PARSE_MORE:
			cl->in_data = true;
			return;
		case IMAP_PARSE_LITERAL: {
			uint64_t size = imap_parser_literal_size(cl->parser);
			cl->in_data = true;
			if (imap_parser_literal_accept(cl->parser) < 0) {
				mua_transcript_note("literal of %llu bytes is too large",
						    (unsigned long long)size);
				conn_abort(cl->sc.c);
				return;
			}
			mua_transcript_note("(%llu bytes of literal)", (unsigned long long)size);
			conn_read_bytes(cl->sc.c, size);
			return;
		}
		case IMAP_PARSE_ERROR:
			mua_transcript_note("unparsable response: %s", imap_parser_error(cl->parser));
			imap_parser_reset(cl->parser);
			cl->in_data = false;
			return;
		}
	}
}

/* Feeds a whole line (its CRLF put back) to the parser. */
static void imapc_feed_line(imapc *cl, const char *line, size_t len)
{
	buf_t b = BUF_INIT;
	buf_append(&b, line, len);
	buf_append(&b, "\r\n", 2);
	imapc_feed(cl, b.data, b.len);
	buf_free(&b);
}

/* True when word (up to a space) equals name. */
static bool word_is(const char *word, const char *name)
{
	size_t n = strlen(name);
	return strncasecmp(word, name, n) == 0 && (word[n] == ' ' || word[n] == '\0');
}

/* One line from the server. */
static void imapc_on_line(conn *c, char *line, size_t len, bool crlf)
{
	imapc *cl = conn_data(c);
	if (cl == NULL)
		return;
	mua_transcript_add("imap", 'S', line, len, false);
	if (cl->in_data) {
		imapc_feed_line(cl, line, len);
		return;
	}
	if (line[0] == '+') {
		imapc_continuation(cl, line[1] == ' ' ? line + 2 : line + 1);
		return;
	}
	if (line[0] == '*' && line[1] == ' ') {
		const char *word = line + 2;
		if (isdigit((unsigned char)*word)) {
			uint32_t n = (uint32_t)strtoul(word, NULL, 10);
			const char *what = strchr(word, ' ');
			what = what != NULL ? what + 1 : "";
			if (word_is(what, "EXISTS")) {
				if (cl->sc.ev.on_exists != NULL)
					cl->sc.ev.on_exists(cl->sc.arg, n);
				return;
			}
			if (word_is(what, "EXPUNGE")) {
				if (cl->sc.ev.on_expunge != NULL)
					cl->sc.ev.on_expunge(cl->sc.arg, n);
				return;
			}
			if (word_is(what, "RECENT"))
				return;
		} else if (word_is(word, "OK") || word_is(word, "NO") || word_is(word, "BAD") ||
			   word_is(word, "PREAUTH") || word_is(word, "BYE")) {
			imapc_scan_resp_code(cl, word);
			if (word_is(word, "BYE")) {
				free(cl->bye_text);
				cl->bye_text = xstrdup(strchr(word, ' ') != NULL ?
						       strchr(word, ' ') + 1 : "");
			}
			if (cl->sc.state == IMAPC_GREETING) {
				if (word_is(word, "PREAUTH"))
					imapc_become_ready(cl);
				else if (word_is(word, "OK") && strstr(word, "[CAPABILITY ") != NULL)
					imapc_after_greeting(cl);
				else if (word_is(word, "OK"))
					imapc_send_internal(cl, CMD_CAPABILITY, "CAPABILITY");
				imapc_pump(cl);
			}
			return;
		} else if (word_is(word, "CAPABILITY")) {
			word += strlen("CAPABILITY");
			imapc_set_caps(cl, word, strlen(word));
			return;
		}
		imapc_feed_line(cl, line, len);
		return;
	}
	/* Tagged: "a12 OK text". */
	char *sp = strchr(line, ' ');
	if (sp == NULL || cl->running == NULL)
		return;
	*sp = '\0';
	if (strcmp(line, cl->running->tag) != 0)
		return;
	char *status = sp + 1;
	char *text = strchr(status, ' ');
	if (text != NULL)
		*text++ = '\0';
	imapc_tagged(cl, status, text != NULL ? text : "");
}

/* Literal bytes for the parser. */
static void imapc_on_bytes(conn *c, const char *data, size_t len, bool last)
{
	imapc *cl = conn_data(c);
	if (cl != NULL)
		imapc_feed(cl, data, len);
}

/* The handshake finished: wait for the greeting (implicit) or re-ask capabilities. */
static void imapc_on_tls_ready(conn *c)
{
	imapc *cl = conn_data(c);
	if (cl == NULL)
		return;
	if (!server_conn_tls_ready(&cl->sc, c))
		return;
	if (cl->sc.state == IMAPC_TLS) {
		imapc_enter(cl, IMAPC_GREETING, NULL);
		return;
	}
	imapc_send_internal(cl, CMD_CAPABILITY, "CAPABILITY");
}

/* The server took too long: restart IDLE, or give up on the connection. */
static void imapc_on_timeout(conn *c)
{
	imapc *cl = conn_data(c);
	if (cl == NULL)
		return;
	if (cl->running != NULL && cl->running->kind == CMD_IDLE && cl->idling) {
		if (!cl->idle_done_sent) {
			cl->idle_done_sent = true;
			imapc_write_line(cl, "DONE", false);
		}
		conn_set_command_timeout(c, IMAPC_REPLY_TIMEOUT_MS);
		return;
	}
	server_conn_timed_out(&cl->sc, c);
}

/* The connection is gone: tell why, drop commands, maybe reconnect. */
static void imapc_on_close(conn *c)
{
	imapc *cl = conn_data(c);
	if (cl == NULL)
		return;
	char *msg = server_conn_lost(&cl->sc, c, cl->bye_text);
	cl->in_data = false;
	cl->idling = false;
	cl->idle_done_sent = false;
	cl->selected = false;
	imap_parser_reset(cl->parser);
	sasl_client_free(&cl->sasl);
	free(cl->bye_text);
	cl->bye_text = NULL;
	if (cl->timer_is_idle) {
		/* No IDLE without a connection; the timer may serve the reconnect. */
		uv_timer_stop(&cl->sc.timer);
		cl->timer_is_idle = false;
	}
	server_conn_enter_lost(&cl->sc, msg);
	imapc_drop_all(cl, "connection lost");
	server_conn_schedule_reconnect(&cl->sc);
}

static const struct conn_handlers imapc_handlers = {
	.on_line = imapc_on_line,
	.on_line_too_long = server_conn_on_line_too_long,
	.on_bytes = imapc_on_bytes,
	.on_tls_ready = imapc_on_tls_ready,
	.on_timeout = imapc_on_timeout,
	.on_close = imapc_on_close,
};

/* Frees what the client holds and closes its timer (the memory goes in its callback). */
static void imapc_release(void *client)
{
	imapc *cl = client;
	imapc_drop_all(cl, "closed");
	free(cl->caps);
	free(cl->bye_text);
	sasl_client_free(&cl->sasl);
	imap_parser_free(&cl->parser);
	server_conn_release(&cl->sc);
}

/* Connects unless already connected or connecting. */
void imapc_connect(imapc *cl)
{
	server_conn_connect(&cl->sc);
}

/* The timer: reconnect, or start IDLE after a quiet moment. */
static void imapc_timer_cb(uv_timer_t *t)
{
	imapc *cl = t->data;
	if (cl->timer_is_idle) {
		cl->timer_is_idle = false;
		if (cl->sc.state == IMAPC_READY && cl->running == NULL && cl->queue.head == NULL &&
		    cl->selected && cl->idle_enabled && imapc_has_capability(cl, "IDLE"))
			imapc_send_internal(cl, CMD_IDLE, "IDLE");
		return;
	}
	imapc_connect(cl);
}

static const struct server_proto imapc_proto = {
	.name = "imap",
	.label = "IMAP",
	.starttls = "STARTTLS",
	.state_names = imapc_state_names,
	.max_line = IMAPC_MAX_LINE,
	.reply_timeout_ms = IMAPC_REPLY_TIMEOUT_MS,
	.reconnect_min_ms = IMAPC_RECONNECT_MIN_MS,
	.reconnect_max_ms = IMAPC_RECONNECT_MAX_MS,
	.backoff_reset_on_connect = true,
	.handlers = &imapc_handlers,
	.timer_cb = imapc_timer_cb,
	.release = imapc_release,
};

/* Sends the next queued command, or arranges IDLE when nothing waits. */
static void imapc_pump(imapc *cl)
{
	if ((cl->sc.state != IMAPC_READY && cl->sc.state != IMAPC_LOGOUT) || cl->sc.c == NULL)
		return;
	if (cl->running != NULL) {
		if (cl->running->kind == CMD_IDLE && cl->idling && cl->queue.head != NULL &&
		    !cl->idle_done_sent) {
			cl->idle_done_sent = true;
			imapc_write_line(cl, "DONE", false);
		}
		return;
	}
	if (cl->queue.head != NULL) {
		imapc_send(cl, imapc_dequeue(cl));
		return;
	}
	if (cl->selected && cl->idle_enabled && imapc_has_capability(cl, "IDLE")) {
		cl->timer_is_idle = true;
		uv_timer_start(&cl->sc.timer, imapc_timer_cb, IMAPC_IDLE_DELAY_MS, 0);
	}
}

/* Makes a client. */
imapc *imapc_new(uv_loop_t *loop, struct mua_account *account, const struct imapc_events *ev,
		 void *arg)
{
	imapc *cl = xcalloc(1, sizeof(*cl));
	server_conn_init(&cl->sc, &imapc_proto, loop, account, ev, arg);
	struct imap_parser_limits limits = {
		.max_command = IMAPC_MAX_LINE,
		.max_literal = IMAPC_MAX_LITERAL,
		.max_literal_buffered = IMAPC_MAX_LITERAL,
		.max_depth = IMAP_PARSER_DEFAULT_MAX_DEPTH,
		.max_args = 1000000,
	};
	cl->parser = imap_parser_new(&limits);
	imap_parser_set_responses(cl->parser, true);
	return cl;
}

/* Drops the connection and frees the client. */
void imapc_free(imapc **clp)
{
	imapc *cl = *clp;
	if (cl == NULL)
		return;
	*clp = NULL;
	if (server_conn_free_begin(&cl->sc))
		imapc_release(cl);
}

void imapc_set_reconnect(imapc *cl, bool on)
{
	cl->sc.reconnect = on;
}

void imapc_set_idle(imapc *cl, bool on)
{
	cl->idle_enabled = on;
}

uint32_t imapc_uidvalidity(const imapc *cl)
{
	return cl->uidvalidity;
}

enum imapc_state imapc_get_state(const imapc *cl)
{
	return cl->sc.state;
}

/* Queues a user command. */
void imapc_command(imapc *cl, const char *text, const char *literal, size_t literal_len,
		   imapc_untagged_cb *untagged, imapc_done_cb *done, void *arg)
{
	struct imapc_cmd *cmd = imapc_cmd_new(CMD_USER, text);
	if (literal != NULL) {
		cmd->literal = xmalloc(literal_len + 1);
		memcpy(cmd->literal, literal, literal_len);
		cmd->literal[literal_len] = '\0';
		cmd->literal_len = literal_len;
	}
	cmd->selects = strncasecmp(text, "SELECT ", 7) == 0 || strncasecmp(text, "EXAMINE ", 8) == 0;
	cmd->untagged = untagged;
	cmd->done = done;
	cmd->arg = arg;
	if (cl->sc.state != IMAPC_READY) {
		/* Not connected: the owner asks again once READY. */
		if (done != NULL)
			done(arg, IMAPC_DROPPED, "not connected");
		imapc_cmd_free(&cmd);
		return;
	}
	if (cmd->selects) {
		cl->selected = false;
		cl->uidvalidity = 0;
	}
	server_queue_push(&cl->queue, &cmd->link);
	if (cl->timer_is_idle) {
		uv_timer_stop(&cl->sc.timer);
		cl->timer_is_idle = false;
	}
	imapc_pump(cl);
}

/* Commands queued or running (IDLE does not count). */
size_t imapc_pending(const imapc *cl)
{
	size_t n = cl->running != NULL && cl->running->kind != CMD_IDLE ? 1 : 0;
	n += server_queue_count(&cl->queue);
	return n;
}

/* Logs out politely. */
void imapc_logout(imapc *cl)
{
	if (cl->sc.state != IMAPC_READY || cl->sc.c == NULL)
		return;
	cl->sc.reconnect = false;
	struct imapc_cmd *cmd = imapc_cmd_new(CMD_LOGOUT, "LOGOUT");
	imapc_enter(cl, IMAPC_LOGOUT, NULL);
	if (cl->running != NULL && cl->running->kind == CMD_IDLE) {
		if (!cl->idle_done_sent)
			imapc_write_line(cl, "DONE", false);
		cl->idle_done_sent = true;
	}
	if (cl->running == NULL) {
		imapc_send(cl, cmd);
	} else {
		/* After the running command: put it first. */
		server_queue_push_front(&cl->queue, &cmd->link);
	}
}

/* The status-line text for a failed TLS handshake. A certificate that does
 * not verify is named by its SHA-256 fingerprint, so the user can compare it
 * with the server's (`openssl x509 -fingerprint -sha256`) before trusting it. */
char *mua_tls_failure_message(const char *host, int port, const conn *c)
{
	const char *err = conn_tls_error(c);
	if (err == NULL || err[0] == '\0')
		err = "handshake error";
	char *fp = conn_tls_peer_fingerprint(c);
	char *msg;
	if (fp != NULL && strstr(err, "verify") != NULL)
		msg = xasprintf("TLS with %s:%d failed: %s; certificate SHA-256 %s; to trust it set "
				"tls_ca_file = its CA file, or tls_verify = no for a lab", host, port,
				err, fp);
	else if (fp != NULL)
		msg = xasprintf("TLS with %s:%d failed: %s; certificate SHA-256 %s", host, port, err,
				fp);
	else
		msg = xasprintf("TLS with %s:%d failed: %s", host, port, err);
	free(fp);
	return msg;
}

/* A quoted string (CR/LF dropped, quotes and backslashes escaped). */
char *imapc_quote(const char *s)
{
	buf_t b = BUF_INIT;
	buf_append_char(&b, '"');
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		if (*p == '"' || *p == '\\')
			buf_append_char(&b, '\\');
		buf_append_char(&b, *p);
	}
	buf_append_char(&b, '"');
	return buf_steal(&b);
}
