/* smtp_session.c: the SMTP server session (RFC 5321) — states, the command
 * table, reading commands and message data, and queueing a finished message.
 *
 * States (smtp_enter logs every change):
 *
 *   INIT --HELO/EHLO--> READY --MAIL--> MAIL --RCPT--> RCPT --DATA--> DATA
 *                         ^                                 \--BDAT--> BDAT_READ <-> BDAT
 *                         |                                                   |
 *                         +--- 250 queued as ID <-- BUSY (group commit) <-----+ "." / LAST
 *   READY --AUTH--> BUSY (password check) <-> AUTH (334 exchange) --> READY
 *   INIT/READY --STARTTLS--> TLS --handshake--> INIT (everything forgotten)
 *   any --QUIT / too many errors / timeout--> CLOSING
 *
 * RSET and HELO/EHLO free the transaction (struct smtp_txn) and go back to
 * READY. Invariants: input is paused exactly while BUSY or TLS; a session with
 * async work outstanding holds a conn_ref and is freed by that work's
 * callback if the connection closed meanwhile (async_pending / dead). */
#include "smtp_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fault.h"
#include "header.h"
#include "log.h"

static const char *const smtp_state_names[SMTP_STATE_COUNT] = {
	[SMTP_STATE_INIT] = "INIT",
	[SMTP_STATE_READY] = "READY",
	[SMTP_STATE_MAIL] = "MAIL",
	[SMTP_STATE_RCPT] = "RCPT",
	[SMTP_STATE_DATA] = "DATA",
	[SMTP_STATE_BDAT] = "BDAT",
	[SMTP_STATE_BDAT_READ] = "BDAT_READ",
	[SMTP_STATE_AUTH] = "AUTH",
	[SMTP_STATE_BUSY] = "BUSY",
	[SMTP_STATE_TLS] = "TLS",
	[SMTP_STATE_CLOSING] = "CLOSING",
};

/* Command flags (Postfix-style policy in the table). */
enum {
	CMD_NO_ARGS = 1 << 0,    /* anything after the verb is a 501 */
	CMD_NEEDS_ARGS = 1 << 1, /* nothing after the verb is a 501 */
	CMD_JUNK = 1 << 2        /* moves no mail: counts towards smtp.junk_command_limit */
};

#define ST(x) SMTP_STATE_BIT(SMTP_STATE_##x)
#define ST_GREETED (ST(READY) | ST(MAIL) | ST(RCPT) | ST(BDAT))
#define ST_ANY (ST(INIT) | ST_GREETED)

struct smtp_command {
	const char *name;
	unsigned states;       /* where it may be used; elsewhere 503 5.5.1 */
	unsigned flags;
	const char *usage;     /* for 501 replies */
	const char *out_of_order; /* the 503 text */
	smtp_command_fn *handler;
};

static const struct smtp_command smtp_commands[] = {
	{"EHLO", ST_ANY, CMD_NEEDS_ARGS, "EHLO hostname", NULL, smtp_cmd_ehlo},
	{"HELO", ST_ANY, CMD_NEEDS_ARGS, "HELO hostname", NULL, smtp_cmd_helo},
	{"MAIL", ST(READY), CMD_NEEDS_ARGS, "MAIL FROM:<address>",
	 "Send HELO/EHLO first, and only one MAIL per transaction", smtp_cmd_mail},
	{"RCPT", ST(MAIL) | ST(RCPT), CMD_NEEDS_ARGS, "RCPT TO:<address>", "Need MAIL command",
	 smtp_cmd_rcpt},
	{"DATA", ST(MAIL) | ST(RCPT), CMD_NO_ARGS, "DATA", "Need MAIL and RCPT commands",
	 smtp_cmd_data},
	/* BDAT checks its own state: a refused chunk must still be read. */
	{"BDAT", ST_ANY, CMD_NEEDS_ARGS, "BDAT size [LAST]", NULL, smtp_cmd_bdat},
	{"RSET", ST_ANY, CMD_NO_ARGS | CMD_JUNK, "RSET", NULL, smtp_cmd_rset},
	{"NOOP", ST_ANY, CMD_JUNK, NULL, NULL, smtp_cmd_noop},
	{"QUIT", ST_ANY, CMD_NO_ARGS, "QUIT", NULL, smtp_cmd_quit},
	{"VRFY", ST_ANY, CMD_NEEDS_ARGS | CMD_JUNK, "VRFY address", NULL, smtp_cmd_vrfy},
	{"EXPN", ST_ANY, CMD_JUNK, NULL, NULL, smtp_cmd_expn},
	{"HELP", ST_ANY, CMD_JUNK, NULL, NULL, smtp_cmd_help},
	{"STARTTLS", ST(INIT) | ST(READY), CMD_NO_ARGS, "STARTTLS",
	 "STARTTLS is not allowed in a mail transaction", smtp_cmd_starttls},
	{"AUTH", ST(READY), CMD_NEEDS_ARGS, "AUTH mechanism [initial-response]",
	 "AUTH needs HELO/EHLO first and is not allowed in a mail transaction", smtp_cmd_auth},
};

void smtp_enter(struct smtp_session *s, enum smtp_state state)
{
	if (s->state == state)
		return;
	log_kv(LOG_DEBUG, s->id, "state", "from", smtp_state_names[s->state], "to",
	       smtp_state_names[state], NULL);
	s->state = state;
}

void smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	if (s->c == NULL || s->state == SMTP_STATE_CLOSING)
		return;
	va_list ap;
	va_start(ap, fmt);
	conn_vprintf(s->c, fmt, ap);
	va_end(ap);
	conn_write_str(s->c, "\r\n");
}

void smtp_close(struct smtp_session *s, const char *reply)
{
	if (s->state == SMTP_STATE_CLOSING || s->c == NULL)
		return;
	if (reply != NULL)
		smtp_reply(s, "%s", reply);
	smtp_enter(s, SMTP_STATE_CLOSING);
	conn_close(s->c);
}

void smtp_error(struct smtp_session *s, const char *fmt, ...)
{
	if (s->c == NULL || s->state == SMTP_STATE_CLOSING)
		return;
	va_list ap;
	va_start(ap, fmt);
	conn_vprintf(s->c, fmt, ap);
	va_end(ap);
	conn_write_str(s->c, "\r\n");
	s->errors++;
	if (s->m->max_errors > 0 && s->errors >= (unsigned)s->m->max_errors)
		smtp_close(s, "421 4.7.0 Too many errors, closing connection");
}

void smtp_txn_free(struct smtp_txn **txn)
{
	struct smtp_txn *t = *txn;
	if (t == NULL)
		return;
	free(t->sender);
	free(t->envid);
	free(t->ret);
	for (size_t i = 0; i < t->rcpt_count; i++) {
		free(t->rcpts[i].orig);
		free(t->rcpts[i].orcpt);
		userdb_strv_free(t->rcpts[i].targets);
	}
	free(t->rcpts);
	buf_free(&t->data);
	free(t);
	*txn = NULL;
}

void smtp_reset(struct smtp_session *s)
{
	smtp_txn_free(&s->txn);
	smtp_enter(s, s->helo != NULL ? SMTP_STATE_READY : SMTP_STATE_INIT);
}

void smtp_async_begin(struct smtp_session *s)
{
	s->async_pending = true;
	conn_ref(s->c);
	conn_pause(s->c);
	smtp_enter(s, SMTP_STATE_BUSY);
}

static void smtp_session_free(struct smtp_session *s)
{
	smtp_txn_free(&s->txn);
	sasl_server_free(&s->sasl);
	free(s->helo);
	free(s->auth_user);
	free(s->auth_pending);
	free(s);
}

bool smtp_async_end(struct smtp_session *s)
{
	conn *c = s->c;
	s->async_pending = false;
	if (s->dead) {
		smtp_session_free(s);
		conn_unref(c);
		return false;
	}
	conn_unref(c);
	if (conn_is_closing(c)) {
		smtp_enter(s, SMTP_STATE_CLOSING);
		return false;
	}
	conn_resume(c);
	return true;
}

/* ---- connection callbacks ---- */

static void smtp_on_open(conn *c)
{
	struct mta *m = net_server_data(conn_server(c));
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->c = c;
	s->id = conn_id(c);
	s->port = (enum mta_port)conn_listener_kind(c);
	s->state = SMTP_STATE_INIT;
	s->local = s->port == MTA_PORT_LOCAL;
	s->trusted = !s->local && policy_address_trusted(m, conn_peer_sockaddr(c));
	conn_set_data(c, s);
	conn_set_max_line(c, SMTP_MAX_COMMAND_LINE);
	conn_set_idle_timeout(c, (uint64_t)config_int(m->cfg, "smtp.idle_timeout") * 1000);
	log_kv(LOG_INFO, s->id, "session start", "remote", conn_peer_addr(c), "port",
	       s->local ? "local" : s->port == MTA_PORT_SMTP ? "smtp" :
	       s->port == MTA_PORT_SUBMISSION ? "submission" : "smtps",
	       "tls", conn_is_tls(c) ? "yes" : "no", NULL);
	smtp_reply(s, "220 %s ESMTP mailstack", m->hostname);
}

/* Looks a verb up in the command table (case-insensitive, RFC 5321 2.4). */
static const struct smtp_command *smtp_command_find(const char *verb, size_t len)
{
	for (size_t i = 0; i < sizeof(smtp_commands) / sizeof(smtp_commands[0]); i++) {
		if (strlen(smtp_commands[i].name) == len &&
		    strncasecmp(smtp_commands[i].name, verb, len) == 0)
			return &smtp_commands[i];
	}
	return NULL;
}

/* One command line: split, look up, check state and arguments, run. */
static void smtp_dispatch(struct smtp_session *s, char *line, size_t len)
{
	size_t vlen = 0;
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	char *args = line + vlen;
	while (*args == ' ')
		args++;
	/* trailing spaces are not part of the arguments */
	size_t alen = strlen(args);
	while (alen > 0 && args[alen - 1] == ' ')
		args[--alen] = '\0';
	const struct smtp_command *cmd = smtp_command_find(line, vlen);
	if (cmd == NULL) {
		smtp_error(s, "500 5.5.2 Error: command not recognized");
		return;
	}
	/* Postfix's smtpd_junk_command_limit: a client that only keeps the
	 * session busy is cut off however well-formed its commands are. */
	if ((cmd->flags & CMD_JUNK) && s->m->junk_command_limit > 0 &&
	    ++s->junk_commands > (unsigned)s->m->junk_command_limit) {
		smtp_close(s, "421 4.7.0 Error: too many NOOP, VRFY, HELP or RSET commands, "
			      "closing connection");
		return;
	}
	if ((cmd->states & SMTP_STATE_BIT(s->state)) == 0) {
		smtp_error(s, "503 5.5.1 Error: %s", cmd->out_of_order != NULL ?
			   cmd->out_of_order : "bad sequence of commands");
		return;
	}
	if ((cmd->flags & CMD_NO_ARGS) && alen > 0) {
		smtp_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
		return;
	}
	if ((cmd->flags & CMD_NEEDS_ARGS) && alen == 0) {
		smtp_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
		return;
	}
	cmd->handler(s, args);
}

/* One line of DATA: dot-unstuffing, the end marker and the body checks. */
static void smtp_data_line(struct smtp_session *s, char *line, size_t len, bool crlf)
{
	struct smtp_txn *t = s->txn;
	bool after_bare = t->bare_line;
	t->bare_line = !crlf;
	/* Only CRLF "." CRLF ends the data: a "." after a bare LF is data. */
	if (crlf && !after_bare && len == 1 && line[0] == '.') {
		conn_set_transcript_quiet(s->c, false);
		conn_set_max_line(s->c, SMTP_MAX_COMMAND_LINE);
		conn_set_command_timeout(s->c, 0);
		smtp_finish_message(s);
		return;
	}
	/* RFC 5321 2.3.8 and the smuggling class (CVE-2023-51764): a bare LF or
	 * CR never ends anything; the message is refused after the real end. */
	if (!crlf || memchr(line, '\r', len) != NULL) {
		if (t->data_error == NULL)
			t->data_error = "550 5.6.0 Message refused: bare CR or LF in the data "
					"(lines must end with CRLF, RFC 5321 2.3.8)";
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		if (t->data_error == NULL)
			t->data_error = "550 5.6.0 Message refused: NUL octet in the data";
		return;
	}
	if (len > 0 && line[0] == '.') {
		line++;
		len--;
	}
	if (t->too_big || t->data.len + len + 2 > (size_t)s->m->max_message_size) {
		t->too_big = true;
		return;
	}
	buf_append(&t->data, line, len);
	buf_append(&t->data, "\r\n", 2);
}

static void smtp_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct smtp_session *s = conn_data(c);
	if (s == NULL || s->state == SMTP_STATE_CLOSING)
		return;
	switch (s->state) {
	case SMTP_STATE_DATA:
		smtp_data_line(s, line, len, crlf);
		return;
	case SMTP_STATE_AUTH:
		if (!crlf) {
			sasl_server_free(&s->sasl);
			smtp_enter(s, SMTP_STATE_READY);
			smtp_error(s, "500 5.5.2 Error: bare LF received, lines must end with CRLF");
			return;
		}
		smtp_auth_response(s, line, len);
		return;
	case SMTP_STATE_BUSY:
	case SMTP_STATE_TLS:
	case SMTP_STATE_BDAT_READ:
		return; /* paused; cannot happen */
	default:
		break;
	}
	if (!crlf) {
		smtp_error(s, "500 5.5.2 Error: bare LF received, lines must end with CRLF");
		return;
	}
	if (memchr(line, '\r', len) != NULL || memchr(line, '\0', len) != NULL) {
		smtp_error(s, "500 5.5.2 Error: bare CR or NUL in command");
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];
		if (ch < 0x20 && ch != '\t') {
			smtp_error(s, "500 5.5.2 Error: control character in command");
			return;
		}
	}
	smtp_dispatch(s, line, len);
}

static void smtp_on_line_too_long(conn *c)
{
	struct smtp_session *s = conn_data(c);
	if (s == NULL)
		return;
	if (s->state == SMTP_STATE_DATA) {
		if (s->txn->data_error == NULL)
			s->txn->data_error = "550 5.6.0 Message refused: a line is longer than "
					     "1000 octets (RFC 5321 4.5.3.1.6)";
		return;
	}
	if (s->state == SMTP_STATE_AUTH) {
		sasl_server_free(&s->sasl);
		smtp_enter(s, SMTP_STATE_READY);
	}
	smtp_error(s, "500 5.5.2 Error: line too long");
}

void smtp_txn_scan_bytes(struct smtp_txn *t, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char ch = data[i];
		if (ch == '\n') {
			if (!t->prev_cr && t->data_error == NULL)
				t->data_error = "550 5.6.0 Message refused: bare LF in the data "
						"(lines must end with CRLF, RFC 5321 2.3.8)";
			t->line_len = 0;
			t->prev_cr = false;
			continue;
		}
		if (t->prev_cr && t->data_error == NULL)
			t->data_error = "550 5.6.0 Message refused: bare CR in the data "
					"(lines must end with CRLF, RFC 5321 2.3.8)";
		if (ch == '\0' && t->data_error == NULL)
			t->data_error = "550 5.6.0 Message refused: NUL octet in the data";
		t->prev_cr = ch == '\r';
		if (!t->prev_cr && ++t->line_len > SMTP_MAX_TEXT_LINE && t->data_error == NULL)
			t->data_error = "550 5.6.0 Message refused: a line is longer than "
					"1000 octets (RFC 5321 4.5.3.1.6)";
	}
}

static void smtp_on_bytes(conn *c, const char *data, size_t len, bool last)
{
	struct smtp_session *s = conn_data(c);
	if (s == NULL || s->state == SMTP_STATE_CLOSING)
		return;
	if (s->bdat_discard) {
		if (last) {
			s->bdat_discard = false;
			conn_set_transcript_quiet(c, false);
			conn_set_command_timeout(c, 0);
			smtp_error(s, "%s", s->bdat_discard_reply);
		}
		return;
	}
	struct smtp_txn *t = s->txn;
	smtp_txn_scan_bytes(t, data, len);
	if (!t->too_big && t->data.len + len > (size_t)s->m->max_message_size)
		t->too_big = true;
	if (!t->too_big)
		buf_append(&t->data, data, len);
	if (!last)
		return;
	conn_set_transcript_quiet(c, false);
	conn_set_command_timeout(c, 0);
	if (t->bdat_last) {
		smtp_finish_message(s);
		return;
	}
	if (t->too_big) {
		smtp_reset(s);
		smtp_error(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	smtp_enter(s, SMTP_STATE_BDAT);
	smtp_reply(s, "250 2.0.0 %zu octets received", t->data.len);
}

static void smtp_on_tls_ready(conn *c)
{
	struct smtp_session *s = conn_data(c);
	if (s == NULL)
		return;
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	smtp_txn_free(&s->txn);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	smtp_enter(s, SMTP_STATE_INIT);
	log_kv(LOG_INFO, s->id, "tls established", "version", conn_tls_version(c), "cipher",
	       conn_tls_cipher(c), NULL);
}

static void smtp_on_timeout(conn *c)
{
	struct smtp_session *s = conn_data(c);
	if (s == NULL)
		return;
	smtp_close(s, "421 4.4.2 Error: timeout exceeded, closing connection");
}

static void smtp_on_close(conn *c)
{
	struct smtp_session *s = conn_data(c);
	if (s == NULL)
		return;
	conn_set_data(c, NULL);
	log_kv(LOG_INFO, s->id, "session end", NULL);
	if (s->async_pending) {
		/* the callback frees it */
		s->dead = true;
		return;
	}
	smtp_session_free(s);
}

static const struct conn_handlers smtp_handlers = {
	.on_open = smtp_on_open,
	.on_line = smtp_on_line,
	.on_line_too_long = smtp_on_line_too_long,
	.on_bytes = smtp_on_bytes,
	.on_tls_ready = smtp_on_tls_ready,
	.on_timeout = smtp_on_timeout,
	.on_close = smtp_on_close,
};

net_server *smtp_server_new(struct mta *m)
{
	struct net_server_opts opts = {
		.proto = "smtp",
		.max_line = SMTP_MAX_COMMAND_LINE,
		.max_connections = (unsigned)config_int(m->cfg, "server.max_connections"),
		.max_per_ip = (unsigned)config_int(m->cfg, "server.max_connections_per_ip"),
		.idle_timeout_ms = (uint64_t)config_int(m->cfg, "smtp.idle_timeout") * 1000,
		.too_many_reply = "421 4.7.0 Error: too many connections, try again later\r\n",
		.tls = m->d->tls,
	};
	return net_server_new(m->loop, &opts, &smtp_handlers, m);
}

/* ---- finishing a message ---- */

/* The commit finished: answer the client (the 250 means "on disk"). */
static void smtp_commit_done(struct queue_job *job, void *arg)
{
	struct smtp_session *s = arg;
	struct mta *m = s->m; /* s may be freed by smtp_async_end */
	struct queue_msg *msg = job->new_msg;
	if (job->status == 0) {
		char rcpts[32];
		snprintf(rcpts, sizeof(rcpts), "%zu", msg->rcpt_count);
		log_event(msg->id, "queued", "rcpts", rcpts, NULL);
	} else {
		log_kv(LOG_ERROR, s->id, "queue commit failed", "id", msg->id, "error", job->err,
		       NULL);
	}
	if (smtp_async_end(s)) {
		smtp_txn_free(&s->txn);
		smtp_enter(s, s->helo != NULL ? SMTP_STATE_READY : SMTP_STATE_INIT);
		if (job->status == 0) {
			s->junk_commands = 0;
			smtp_reply(s, "250 2.0.0 Ok: queued as %s", msg->id);
		}
		else
			smtp_reply(s, "451 4.3.0 Error: queue file write error, try again later");
	}
	if (job->status == 0) {
		/* Straight to delivery, body and all (after the reply is on its way). */
		job->new_msg = NULL;
		scheduler_submit(m->sched, msg);
	}
	queue_job_free(&job);
}

/* Builds the queue message from the transaction: envelope, recipients, body. */
static struct queue_msg *smtp_build_queue_msg(struct smtp_session *s, char *id)
{
	struct smtp_txn *t = s->txn;
	struct mta *m = s->m;
	struct queue_msg *msg = xcalloc(1, sizeof(*msg));
	msg->id = id;
	msg->sender = xstrdup(t->sender);
	msg->envid = t->envid != NULL ? xstrdup(t->envid) : NULL;
	msg->ret = t->ret != NULL ? xstrdup(t->ret) : NULL;
	msg->smtputf8 = t->smtputf8;
	msg->body_8bit = t->body_8bit;
	msg->auth_user = s->auth_user != NULL ? xstrdup(s->auth_user) : NULL;
	msg->client = xasprintf("%s [%s]", s->helo != NULL ? s->helo : "unknown",
				conn_peer_addr(s->c));
	msg->created = queue_now_ms();
	/* Recipients: every target of every RCPT, each address once. */
	size_t cap = 0;
	for (size_t i = 0; i < t->rcpt_count; i++)
		for (char **p = t->rcpts[i].targets; p != NULL && *p != NULL; p++)
			cap++;
	msg->rcpts = xcalloc(cap > 0 ? cap : 1, sizeof(*msg->rcpts));
	for (size_t i = 0; i < t->rcpt_count; i++) {
		for (char **p = t->rcpts[i].targets; p != NULL && *p != NULL; p++) {
			bool dup = false;
			for (size_t j = 0; j < msg->rcpt_count && !dup; j++)
				dup = strcasecmp(msg->rcpts[j].address, *p) == 0;
			if (dup)
				continue;
			struct queue_rcpt *r = &msg->rcpts[msg->rcpt_count++];
			r->address = xstrdup(*p);
			r->orig = xstrdup(t->rcpts[i].orig);
			r->orcpt = t->rcpts[i].orcpt != NULL ? xstrdup(t->rcpts[i].orcpt) : NULL;
			r->notify = t->rcpts[i].notify;
			r->state = QUEUE_RCPT_QUEUED;
			r->next_try = 0;
		}
	}
	/* Body: our Received field, then on submission the missing fields, then the data. */
	buf_t body = BUF_INIT;
	bool tls = conn_is_tls(s->c);
	struct received_info ri = {
		.helo = s->helo != NULL ? s->helo : "unknown",
		.peer_addr = conn_peer_addr(s->c),
		.protocol = received_protocol(s->esmtp, tls, s->auth_user != NULL, t->smtputf8),
		.id = id,
		.tls_version = tls ? conn_tls_version(s->c) : NULL,
		.tls_cipher = tls ? conn_tls_cipher(s->c) : NULL,
		.auth_user = s->auth_user,
		.for_rcpt = t->rcpt_count == 1 ? t->rcpts[0].orig : NULL,
	};
	received_append(&body, m->hostname, &ri);
	if (s->port == MTA_PORT_SUBMISSION || s->port == MTA_PORT_SMTPS || s->local)
		received_append_missing(&body, t->data.data != NULL ? t->data.data : "", t->data.len,
					m->hostname, id);
	buf_append(&body, t->data.data != NULL ? t->data.data : "", t->data.len);
	if (body.len < 2 || memcmp(body.data + body.len - 2, "\r\n", 2) != 0)
		buf_append(&body, "\r\n", 2);
	msg->body_len = body.len;
	msg->size = (int64_t)body.len;
	msg->body = buf_steal(&body);
	return msg;
}

/* The Message-ID of a queued body (ours on submission when it had none), or NULL. */
static char *smtp_message_id(const struct queue_msg *msg)
{
	size_t hlen = header_section_length(msg->body, msg->body_len);
	struct header h;
	if (header_parse(msg->body, hlen, &h) < 0)
		return NULL;
	const char *v = header_get(&h, "Message-ID");
	char *id = NULL;
	if (v != NULL) {
		/* trimmed, and bounded: it goes into a log line */
		size_t n = strcspn(v, "\r\n");
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		id = xstrndup(v, n < SMTP_MAX_TEXT_LINE ? n : SMTP_MAX_TEXT_LINE);
	}
	header_free(&h);
	return id;
}

/* The final recipients as one comma-separated value for the events log. */
static char *smtp_rcpt_list(const struct queue_msg *msg)
{
	buf_t b = BUF_INIT;
	for (size_t i = 0; i < msg->rcpt_count; i++) {
		if (i > 0)
			buf_append_char(&b, ',');
		buf_append_str(&b, msg->rcpts[i].address);
	}
	return buf_steal(&b);
}

void smtp_finish_message(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	if (t->data_error != NULL) {
		const char *reply = t->data_error;
		smtp_reset(s);
		smtp_error(s, "%s", reply);
		return;
	}
	if (t->too_big) {
		smtp_reset(s);
		smtp_error(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	if (t->chunking && t->prev_cr) {
		smtp_reset(s);
		smtp_error(s, "550 5.6.0 Message refused: bare CR at the end of the data");
		return;
	}
	if (fault_get(s->m->d->datadir, "queue", "disk-full") != NULL) {
		/* Lab fault: the queue cannot store it. A failure that may pass, so
		 * the client keeps the message and tries again (RFC 5321 4.2.5). */
		log_kv(LOG_INFO, s->id, "injected fault: queue disk-full", NULL);
		smtp_reset(s);
		smtp_reply(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	char *id = lifecycle_id_new();
	struct queue_msg *msg = smtp_build_queue_msg(s, id);
	bool tls = conn_is_tls(s->c);
	char *tls_desc = tls ? xasprintf("%s/%s", conn_tls_version(s->c), conn_tls_cipher(s->c))
			     : xstrdup("no");
	char size[32], rcpts[32];
	snprintf(size, sizeof(size), "%zu", msg->body_len);
	snprintf(rcpts, sizeof(rcpts), "%zu", msg->rcpt_count);
	char *message_id = smtp_message_id(msg);
	char *to = smtp_rcpt_list(msg);
	/* from/sender: the envelope sender ("" is the null sender); client: who sent it */
	log_event(id, "received", "message_id", message_id, "from", msg->sender, "sender",
		  msg->sender, "to", to, "rcpts", rcpts, "client", msg->client, "auth",
		  s->auth_user, "tls", tls_desc, "proto",
		  received_protocol(s->esmtp, tls, s->auth_user != NULL, t->smtputf8), "size", size,
		  NULL);
	free(message_id);
	free(to);
	for (size_t i = 0; i < msg->rcpt_count; i++)
		log_event(id, "rcpt", "rcpt", msg->rcpts[i].address, "orig", msg->rcpts[i].orig,
			  NULL);
	free(tls_desc);
	struct queue_job *job = xcalloc(1, sizeof(*job));
	job->new_msg = msg;
	job->done = smtp_commit_done;
	job->arg = s;
	smtp_async_begin(s);
	queue_writer_submit(s->m->writer, job);
}
