/* imapc.c: the mua's asynchronous IMAP client (RFC 3501, IDLE RFC 2177,
 * LITERAL+ RFC 7888, SASL-IR RFC 4959) on a net.h connection.
 *
 * States (cl->state; every change goes through imapc_enter, which logs to the
 * transcript and tells the owner):
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
	struct imapc_cmd *next;
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
	uv_loop_t *loop;
	struct mua_account *account;
	struct imapc_events ev;
	void *arg;
	enum imapc_state state;
	conn *c;
	tls_ctx *tls;
	imap_parser *parser;
	bool in_data;
	char *caps;            /* " IMAP4REV1 IDLE ... " upper-cased, spaces around */
	uint32_t uidvalidity;  /* from the last SELECT/EXAMINE's [UIDVALIDITY n], 0 = none */
	struct imapc_cmd *queue_head, *queue_tail;
	struct imapc_cmd *running;
	unsigned tag_counter;
	bool idle_enabled, idling, idle_done_sent;
	bool selected;
	bool reconnect, no_retry;
	uint64_t backoff_ms;
	uv_timer_t timer;      /* reconnect, or the short wait before IDLE */
	bool timer_is_idle;
	sasl_client *sasl;
	char *bye_text;
	bool connect_pending;
	bool freeing;
};

static void imapc_pump(imapc *cl);
static void imapc_send(imapc *cl, struct imapc_cmd *cmd);

/* Changes state, notes it in the transcript and tells the owner. */
static void imapc_enter(imapc *cl, enum imapc_state state, const char *msg)
{
	if (cl->state != state)
		mua_transcript_note("imap %s -> %s%s%s", imapc_state_names[cl->state],
				    imapc_state_names[state], msg != NULL ? ": " : "",
				    msg != NULL ? msg : "");
	cl->state = state;
	if (cl->ev.on_state != NULL && !cl->freeing)
		cl->ev.on_state(cl->arg, state, msg);
}

/* Writes one line (CRLF added) and records it. */
static void imapc_write_line(imapc *cl, const char *line, bool secret)
{
	mua_transcript_add("imap", 'C', line, strlen(line), secret);
	conn_write_str(cl->c, line);
	conn_write_str(cl->c, "\r\n");
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
	if (cmd->done != NULL && !cl->freeing)
		cmd->done(cmd->arg, result, text);
	imapc_cmd_free(&cmd);
}

/* Fails the running and every queued command (the connection is gone). */
static void imapc_drop_all(imapc *cl, const char *why)
{
	if (cl->running != NULL)
		imapc_cmd_finish(cl, cl->running, IMAPC_DROPPED, why);
	while (cl->queue_head != NULL) {
		struct imapc_cmd *cmd = cl->queue_head;
		cl->queue_head = cmd->next;
		if (cl->queue_head == NULL)
			cl->queue_tail = NULL;
		imapc_cmd_finish(cl, cmd, IMAPC_DROPPED, why);
	}
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
			conn_write_quiet(cl->c, cmd->literal, cmd->literal_len);
			conn_write_str(cl->c, "\r\n");
			mua_transcript_note("(%zu bytes of literal sent)", cmd->literal_len);
		} else {
			cmd->literal_waiting = true;
		}
	} else {
		/* LOGIN and AUTHENTICATE lines are masked by the transcript. */
		imapc_write_line(cl, buf_cstr(&line), false);
	}
	buf_free(&line);
	conn_set_command_timeout(cl->c, cmd->kind == CMD_IDLE ? IMAPC_IDLE_RESTART_MS :
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
		cmd->next = cl->queue_head;
		cl->queue_head = cmd;
		if (cl->queue_tail == NULL)
			cl->queue_tail = cmd;
	}
	imapc_enter(cl, IMAPC_READY, NULL);
}

/* Starts logging in: AUTHENTICATE PLAIN (with SASL-IR when offered) or LOGIN. */
static void imapc_authenticate(imapc *cl)
{
	imapc_enter(cl, IMAPC_AUTH, NULL);
	struct mua_account *a = cl->account;
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
	if (cl->account->read_tls == MUA_TLS_STARTTLS && !conn_is_tls(cl->c)) {
		if (!imapc_has_capability(cl, "STARTTLS")) {
			cl->no_retry = true;
			imapc_enter(cl, IMAPC_DISCONNECTED,
				    "the IMAP server does not offer STARTTLS (password not sent)");
			conn_abort(cl->c);
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
		conn_write_quiet(cl->c, cmd->literal, cmd->literal_len);
		conn_write_str(cl->c, "\r\n");
		mua_transcript_note("(%zu bytes of literal sent)", cmd->literal_len);
		return;
	}
	if (cmd->kind == CMD_IDLE) {
		cl->idling = true;
		conn_set_command_timeout(cl->c, IMAPC_IDLE_RESTART_MS);
		if (cl->queue_head != NULL && !cl->idle_done_sent) {
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
	conn_set_command_timeout(cl->c, 0);
	imapc_scan_resp_code(cl, text);
	switch (cmd->kind) {
	case CMD_STARTTLS:
		imapc_cmd_finish(cl, cmd, result, text);
		if (result != IMAPC_OK) {
			cl->no_retry = true;
			imapc_enter(cl, IMAPC_DISCONNECTED, "the IMAP server refused STARTTLS");
			conn_abort(cl->c);
			return;
		}
		if (conn_start_tls_client(cl->c, cl->tls, cl->account->read_host) < 0) {
			imapc_enter(cl, IMAPC_DISCONNECTED, "cannot start TLS");
			conn_abort(cl->c);
		}
		return;
	case CMD_CAPABILITY:
		imapc_cmd_finish(cl, cmd, result, text);
		if (cl->state == IMAPC_STARTTLS || cl->state == IMAPC_GREETING)
			imapc_after_greeting(cl);
		else if (cl->state == IMAPC_AUTH)
			imapc_become_ready(cl);
		break;
	case CMD_AUTH:
		sasl_client_free(&cl->sasl);
		imapc_cmd_finish(cl, cmd, result, text);
		if (result != IMAPC_OK) {
			char *msg = xasprintf("IMAP login refused: %s", text);
			cl->no_retry = true;
			imapc_enter(cl, IMAPC_DISCONNECTED, msg);
			free(msg);
			conn_abort(cl->c);
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
		conn_close(cl->c);
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
	    rest[0].type == IMAP_ARG_LIST && cl->ev.on_fetch != NULL)
		cl->ev.on_fetch(cl->arg, number, &rest[0]);
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
				conn_abort(cl->c);
				return;
			}
			mua_transcript_note("(%llu bytes of literal)", (unsigned long long)size);
			conn_read_bytes(cl->c, size);
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
		buf_t b = BUF_INIT;
		buf_append(&b, line, len);
		buf_append(&b, "\r\n", 2);
		imapc_feed(cl, b.data, b.len);
		buf_free(&b);
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
				if (cl->ev.on_exists != NULL)
					cl->ev.on_exists(cl->arg, n);
				return;
			}
			if (word_is(what, "EXPUNGE")) {
				if (cl->ev.on_expunge != NULL)
					cl->ev.on_expunge(cl->arg, n);
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
			if (cl->state == IMAPC_GREETING) {
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
		buf_t b = BUF_INIT;
		buf_append(&b, line, len);
		buf_append(&b, "\r\n", 2);
		imapc_feed(cl, b.data, b.len);
		buf_free(&b);
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

static void imapc_on_line_too_long(conn *c)
{
	imapc *cl = conn_data(c);
	if (cl == NULL)
		return;
	mua_transcript_note("over-long line from the IMAP server");
	conn_abort(c);
}

/* The handshake finished: wait for the greeting (implicit) or re-ask capabilities. */
static void imapc_on_tls_ready(conn *c)
{
	imapc *cl = conn_data(c);
	if (cl == NULL)
		return;
	if (!conn_tls_peer_verified(c) && cl->account->tls_verify) {
		/* tls.c refuses unverified peers when asked to verify; this is a belt. */
		imapc_enter(cl, IMAPC_DISCONNECTED, "certificate not verified");
		conn_abort(c);
		return;
	}
	mua_transcript_note("TLS %s %s", conn_tls_version(c), conn_tls_cipher(c));
	if (cl->state == IMAPC_TLS) {
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
	imapc_enter(cl, IMAPC_DISCONNECTED, "the IMAP server does not answer");
	conn_abort(c);
}

static void imapc_timer_cb(uv_timer_t *t);

/* Starts the reconnect timer with backoff. */
static void imapc_schedule_reconnect(imapc *cl)
{
	if (!cl->reconnect || cl->no_retry || cl->freeing)
		return;
	cl->backoff_ms = cl->backoff_ms == 0 ? IMAPC_RECONNECT_MIN_MS : cl->backoff_ms * 2;
	if (cl->backoff_ms > IMAPC_RECONNECT_MAX_MS)
		cl->backoff_ms = IMAPC_RECONNECT_MAX_MS;
	cl->timer_is_idle = false;
	uv_timer_start(&cl->timer, imapc_timer_cb, cl->backoff_ms, 0);
}

/* The connection is gone: tell why, drop commands, maybe reconnect. */
static void imapc_on_close(conn *c)
{
	imapc *cl = conn_data(c);
	if (cl == NULL)
		return;
	conn_set_data(c, NULL);
	char *msg;
	char *where = xasprintf("%s:%d", cl->account->read_host, cl->account->read_port);
	if (cl->state == IMAPC_TLS || (cl->state == IMAPC_STARTTLS && !conn_is_tls(c))) {
		msg = mua_tls_failure_message(cl->account->read_host, cl->account->read_port, c);
		cl->no_retry = true;
	} else if (cl->state == IMAPC_LOGOUT) {
		msg = xstrdup("logged out");
	} else if (cl->state == IMAPC_DISCONNECTED) {
		msg = NULL;
	} else {
		msg = xasprintf("connection to IMAP server %s lost%s%s", where,
				cl->bye_text != NULL ? ": " : "",
				cl->bye_text != NULL ? cl->bye_text : "");
	}
	free(where);
	cl->c = NULL;
	cl->in_data = false;
	cl->idling = false;
	cl->idle_done_sent = false;
	cl->selected = false;
	imap_parser_reset(cl->parser);
	sasl_client_free(&cl->sasl);
	free(cl->bye_text);
	cl->bye_text = NULL;
	if (msg != NULL || cl->state != IMAPC_DISCONNECTED)
		imapc_enter(cl, IMAPC_DISCONNECTED, msg);
	free(msg);
	imapc_drop_all(cl, "connection lost");
	imapc_schedule_reconnect(cl);
}

static const struct conn_handlers imapc_handlers = {
	.on_line = imapc_on_line,
	.on_line_too_long = imapc_on_line_too_long,
	.on_bytes = imapc_on_bytes,
	.on_tls_ready = imapc_on_tls_ready,
	.on_timeout = imapc_on_timeout,
	.on_close = imapc_on_close,
};

static void imapc_timer_close_cb(uv_handle_t *h)
{
	imapc *cl = h->data;
	free(cl);
}

/* Frees what the client holds and closes its timer (the memory goes in its callback). */
static void imapc_release(imapc *cl)
{
	imapc_drop_all(cl, "closed");
	free(cl->caps);
	free(cl->bye_text);
	sasl_client_free(&cl->sasl);
	imap_parser_free(&cl->parser);
	tls_ctx_free(&cl->tls);
	uv_close((uv_handle_t *)&cl->timer, imapc_timer_close_cb);
}

/* The TCP connection is up (or failed). */
static void imapc_connected(conn *c, int status, const char *err, void *arg)
{
	imapc *cl = arg;
	cl->connect_pending = false;
	if (cl->freeing) {
		if (c != NULL) {
			conn_set_data(c, NULL);
			conn_abort(c);
		}
		imapc_release(cl);
		return;
	}
	if (status < 0) {
		char *msg = xasprintf("cannot connect to IMAP server: %s", err != NULL ? err :
				      "error");
		imapc_enter(cl, IMAPC_DISCONNECTED, msg);
		free(msg);
		imapc_schedule_reconnect(cl);
		return;
	}
	cl->c = c;
	conn_set_data(c, cl);
	cl->backoff_ms = 0;
	if (cl->account->read_tls == MUA_TLS_IMPLICIT) {
		imapc_enter(cl, IMAPC_TLS, NULL);
		if (conn_start_tls_client(c, cl->tls, cl->account->read_host) < 0) {
			imapc_enter(cl, IMAPC_DISCONNECTED, "cannot start TLS");
			conn_abort(c);
		}
		return;
	}
	imapc_enter(cl, IMAPC_GREETING, NULL);
	conn_set_command_timeout(c, IMAPC_REPLY_TIMEOUT_MS);
}

/* Connects unless already connected or connecting. */
void imapc_connect(imapc *cl)
{
	if (cl->state != IMAPC_DISCONNECTED || cl->connect_pending || cl->freeing)
		return;
	uv_timer_stop(&cl->timer);
	cl->no_retry = false;
	struct mua_account *a = cl->account;
	if (a->read_tls != MUA_TLS_NONE && cl->tls == NULL) {
		char *err = NULL;
		cl->tls = tls_ctx_client_new(a->tls_verify, a->tls_ca_file, &err);
		if (cl->tls == NULL) {
			char *msg = xasprintf("TLS setup: %s", err != NULL ? err : "error");
			cl->no_retry = true;
			imapc_enter(cl, IMAPC_DISCONNECTED, msg);
			free(msg);
			free(err);
			return;
		}
	}
	mua_transcript_note("connecting to %s:%d (%s)", a->read_host, a->read_port,
			    a->read_tls == MUA_TLS_IMPLICIT   ? "implicit TLS"
			    : a->read_tls == MUA_TLS_STARTTLS ? "STARTTLS"
							      : "no TLS");
	imapc_enter(cl, IMAPC_CONNECTING, NULL);
	cl->connect_pending = true;
	if (net_connect_tcp(cl->loop, a->read_host, a->read_port, "imap", IMAPC_MAX_LINE,
			    &imapc_handlers, cl, imapc_connected, cl) < 0) {
		cl->connect_pending = false;
		imapc_enter(cl, IMAPC_DISCONNECTED, "cannot connect to the IMAP server");
		imapc_schedule_reconnect(cl);
	}
}

/* The timer: reconnect, or start IDLE after a quiet moment. */
static void imapc_timer_cb(uv_timer_t *t)
{
	imapc *cl = t->data;
	if (cl->timer_is_idle) {
		cl->timer_is_idle = false;
		if (cl->state == IMAPC_READY && cl->running == NULL && cl->queue_head == NULL &&
		    cl->selected && cl->idle_enabled && imapc_has_capability(cl, "IDLE"))
			imapc_send_internal(cl, CMD_IDLE, "IDLE");
		return;
	}
	imapc_connect(cl);
}

/* Sends the next queued command, or arranges IDLE when nothing waits. */
static void imapc_pump(imapc *cl)
{
	if ((cl->state != IMAPC_READY && cl->state != IMAPC_LOGOUT) || cl->c == NULL)
		return;
	if (cl->running != NULL) {
		if (cl->running->kind == CMD_IDLE && cl->idling && cl->queue_head != NULL &&
		    !cl->idle_done_sent) {
			cl->idle_done_sent = true;
			imapc_write_line(cl, "DONE", false);
		}
		return;
	}
	if (cl->queue_head != NULL) {
		struct imapc_cmd *cmd = cl->queue_head;
		cl->queue_head = cmd->next;
		if (cl->queue_head == NULL)
			cl->queue_tail = NULL;
		cmd->next = NULL;
		imapc_send(cl, cmd);
		return;
	}
	if (cl->selected && cl->idle_enabled && imapc_has_capability(cl, "IDLE")) {
		cl->timer_is_idle = true;
		uv_timer_start(&cl->timer, imapc_timer_cb, IMAPC_IDLE_DELAY_MS, 0);
	}
}

/* Makes a client. */
imapc *imapc_new(uv_loop_t *loop, struct mua_account *account, const struct imapc_events *ev,
		 void *arg)
{
	imapc *cl = xcalloc(1, sizeof(*cl));
	cl->loop = loop;
	cl->account = account;
	if (ev != NULL)
		cl->ev = *ev;
	cl->arg = arg;
	struct imap_parser_limits limits = {
		.max_command = IMAPC_MAX_LINE,
		.max_literal = IMAPC_MAX_LITERAL,
		.max_literal_buffered = IMAPC_MAX_LITERAL,
		.max_depth = IMAP_PARSER_DEFAULT_MAX_DEPTH,
		.max_args = 1000000,
	};
	cl->parser = imap_parser_new(&limits);
	imap_parser_set_responses(cl->parser, true);
	uv_timer_init(loop, &cl->timer);
	cl->timer.data = cl;
	return cl;
}

/* Drops the connection and frees the client. */
void imapc_free(imapc **clp)
{
	imapc *cl = *clp;
	if (cl == NULL)
		return;
	*clp = NULL;
	cl->freeing = true;
	if (cl->c != NULL) {
		conn_set_data(cl->c, NULL);
		conn_abort(cl->c);
		cl->c = NULL;
	}
	if (cl->connect_pending)
		return; /* imapc_connected releases it */
	imapc_release(cl);
}

void imapc_set_reconnect(imapc *cl, bool on)
{
	cl->reconnect = on;
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
	return cl->state;
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
	if (cl->state != IMAPC_READY) {
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
	if (cl->queue_tail != NULL)
		cl->queue_tail->next = cmd;
	else
		cl->queue_head = cmd;
	cl->queue_tail = cmd;
	if (cl->timer_is_idle) {
		uv_timer_stop(&cl->timer);
		cl->timer_is_idle = false;
	}
	imapc_pump(cl);
}

/* Commands queued or running (IDLE does not count). */
size_t imapc_pending(const imapc *cl)
{
	size_t n = cl->running != NULL && cl->running->kind != CMD_IDLE ? 1 : 0;
	for (const struct imapc_cmd *cmd = cl->queue_head; cmd != NULL; cmd = cmd->next)
		n++;
	return n;
}

/* Logs out politely. */
void imapc_logout(imapc *cl)
{
	if (cl->state != IMAPC_READY || cl->c == NULL)
		return;
	cl->reconnect = false;
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
		cmd->next = cl->queue_head;
		cl->queue_head = cmd;
		if (cl->queue_tail == NULL)
			cl->queue_tail = cmd;
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
