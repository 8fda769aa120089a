/* smtpc.c: sending one message over SMTP submission (RFC 6409) with
 * STARTTLS (RFC 3207) and AUTH PLAIN (RFC 4954), asynchronously.
 *
 * States (job->state; changed only by smtpc_enter, which notes it):
 *
 *   CONNECTING --implicit--> TLS --> GREETING --220--> EHLO
 *   EHLO --STARTTLS mode--> STARTTLS --220, handshake--> EHLO (again, over TLS)
 *   EHLO --> AUTH --235--> MAIL --250--> RCPT (each) --250--> DATA --354--> BODY
 *   BODY --250--> QUIT --> DONE;  any failure --> QUIT/close with the reply as message
 *
 * The done callback runs exactly once, from the close callback, so the owner
 * never sees the connection again. Multi-line replies are gathered until the
 * line with a space after the code. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "net.h"
#include "sasl.h"
#include "mua.h"

#define SMTPC_MAX_LINE 4096
#define SMTPC_REPLY_TIMEOUT_MS 60000
#define SMTPC_DATA_TIMEOUT_MS 600000

enum smtpc_state {
	SMTPC_CONNECTING,
	SMTPC_TLS,
	SMTPC_GREETING,
	SMTPC_EHLO,
	SMTPC_STARTTLS,
	SMTPC_AUTH,
	SMTPC_MAIL,
	SMTPC_RCPT,
	SMTPC_DATA,
	SMTPC_BODY,
	SMTPC_QUIT,
	SMTPC_DONE,
};

static const char *const smtpc_state_names[] = {
	[SMTPC_CONNECTING] = "connecting", [SMTPC_TLS] = "tls",   [SMTPC_GREETING] = "greeting",
	[SMTPC_EHLO] = "ehlo",             [SMTPC_STARTTLS] = "starttls",
	[SMTPC_AUTH] = "auth",             [SMTPC_MAIL] = "mail", [SMTPC_RCPT] = "rcpt",
	[SMTPC_DATA] = "data",             [SMTPC_BODY] = "body", [SMTPC_QUIT] = "quit",
	[SMTPC_DONE] = "done",
};

struct smtpc_job {
	enum smtpc_state state;
	struct mua_account *account;
	tls_ctx *tls;
	char *from;
	char **rcpts;
	size_t rcpt_count, rcpt_next;
	char *message;
	size_t len;
	bool ehlo_starttls, ehlo_auth_plain, tls_done;
	buf_t reply;          /* the reply's text lines so far */
	bool ok;
	char *result;
	smtpc_done_cb *done;
	void *arg;
};

/* Changes state and notes it. */
static void smtpc_enter(struct smtpc_job *j, enum smtpc_state state)
{
	if (j->state != state)
		mua_transcript_note("smtp %s -> %s", smtpc_state_names[j->state],
				    smtpc_state_names[state]);
	j->state = state;
}

/* Writes a command line and records it. */
static void smtpc_write(conn *c, const char *line, bool secret)
{
	mua_transcript_add("smtp", 'C', line, strlen(line), secret);
	conn_write_str(c, line);
	conn_write_str(c, "\r\n");
	conn_set_command_timeout(c, SMTPC_REPLY_TIMEOUT_MS);
}

/* Records the outcome (the first one wins). */
static void smtpc_result(struct smtpc_job *j, bool ok, const char *msg)
{
	if (j->result != NULL)
		return;
	j->ok = ok;
	j->result = xstrdup(msg);
}

/* Fails with the server's reply and closes politely. */
static void smtpc_fail(struct smtpc_job *j, conn *c, const char *what)
{
	char *msg = xasprintf("%s refused: %s", what, buf_cstr(&j->reply));
	smtpc_result(j, false, msg);
	free(msg);
	smtpc_enter(j, SMTPC_QUIT);
	smtpc_write(c, "QUIT", false);
}

/* Sends AUTH, or goes straight to MAIL when there is nothing to authenticate with. */
static void smtpc_after_ehlo(struct smtpc_job *j, conn *c)
{
	if (j->account->send_tls == MUA_TLS_STARTTLS && !j->tls_done) {
		if (!j->ehlo_starttls) {
			smtpc_result(j, false, "the SMTP server does not offer STARTTLS "
				     "(password not sent)");
			smtpc_enter(j, SMTPC_QUIT);
			smtpc_write(c, "QUIT", false);
			return;
		}
		smtpc_enter(j, SMTPC_STARTTLS);
		smtpc_write(c, "STARTTLS", false);
		return;
	}
	if (j->account->password != NULL && j->ehlo_auth_plain) {
		sasl_client *sc = sasl_client_new("PLAIN", j->account->login, j->account->password);
		char *ir = sasl_client_initial(sc);
		char *line = xasprintf("AUTH PLAIN %s", ir);
		smtpc_enter(j, SMTPC_AUTH);
		smtpc_write(c, line, false);
		explicit_bzero(line, strlen(line));
		explicit_bzero(ir, strlen(ir));
		free(line);
		free(ir);
		sasl_client_free(&sc);
		return;
	}
	char *line = xasprintf("MAIL FROM:<%s>", j->from);
	smtpc_enter(j, SMTPC_MAIL);
	smtpc_write(c, line, false);
	free(line);
}

/* Sends the next RCPT, or DATA after the last. */
static void smtpc_next_rcpt(struct smtpc_job *j, conn *c)
{
	if (j->rcpt_next < j->rcpt_count) {
		char *line = xasprintf("RCPT TO:<%s>", j->rcpts[j->rcpt_next++]);
		smtpc_enter(j, SMTPC_RCPT);
		smtpc_write(c, line, false);
		free(line);
		return;
	}
	smtpc_enter(j, SMTPC_DATA);
	smtpc_write(c, "DATA", false);
}

/* Sends the message with dot-stuffing (RFC 5321 4.5.2) and the final dot. */
static void smtpc_send_body(struct smtpc_job *j, conn *c)
{
	buf_t b = BUF_INIT;
	buf_reserve(&b, j->len + j->len / 50 + 8);
	bool line_start = true;
	for (size_t i = 0; i < j->len; i++) {
		char ch = j->message[i];
		if (line_start && ch == '.')
			buf_append_char(&b, '.');
		if (ch == '\n' && (i == 0 || j->message[i - 1] != '\r'))
			buf_append_char(&b, '\r');
		buf_append_char(&b, ch);
		line_start = ch == '\n';
	}
	if (!line_start)
		buf_append_str(&b, "\r\n");
	buf_append_str(&b, ".\r\n");
	conn_write_quiet(c, b.data, b.len);
	mua_transcript_note("(message of %zu bytes sent)", j->len);
	mua_transcript_add("smtp", 'C', ".", 1, false);
	buf_free(&b);
	smtpc_enter(j, SMTPC_BODY);
	conn_set_command_timeout(c, SMTPC_DATA_TIMEOUT_MS);
}

/* Reads EHLO keywords from one reply line's text. */
static void smtpc_ehlo_keyword(struct smtpc_job *j, const char *text)
{
	if (strncasecmp(text, "STARTTLS", 8) == 0 && (text[8] == '\0' || text[8] == ' '))
		j->ehlo_starttls = true;
	if (strncasecmp(text, "AUTH ", 5) == 0 || strncasecmp(text, "AUTH=", 5) == 0) {
		for (const char *p = text + 5; *p != '\0'; p++)
			if (strncasecmp(p, "PLAIN", 5) == 0 && (p == text + 5 || p[-1] == ' ') &&
			    (p[5] == '\0' || p[5] == ' '))
				j->ehlo_auth_plain = true;
	}
}

/* A whole reply arrived: act by state. */
static void smtpc_reply(struct smtpc_job *j, conn *c, int code)
{
	conn_set_command_timeout(c, 0);
	switch (j->state) {
	case SMTPC_GREETING:
		if (code != 220) {
			smtpc_fail(j, c, "greeting");
			return;
		}
		smtpc_enter(j, SMTPC_EHLO);
		smtpc_write(c, "EHLO localhost", false);
		return;
	case SMTPC_EHLO:
		if (code != 250) {
			smtpc_fail(j, c, "EHLO");
			return;
		}
		smtpc_after_ehlo(j, c);
		return;
	case SMTPC_STARTTLS:
		if (code != 220) {
			smtpc_fail(j, c, "STARTTLS");
			return;
		}
		if (conn_start_tls_client(c, j->tls, j->account->send_host) < 0) {
			smtpc_result(j, false, "cannot start TLS");
			conn_abort(c);
		}
		return;
	case SMTPC_AUTH:
		if (code != 235) {
			smtpc_fail(j, c, "login");
			return;
		}
		{
			char *line = xasprintf("MAIL FROM:<%s>", j->from);
			smtpc_enter(j, SMTPC_MAIL);
			smtpc_write(c, line, false);
			free(line);
		}
		return;
	case SMTPC_MAIL:
		if (code != 250) {
			smtpc_fail(j, c, "sender");
			return;
		}
		smtpc_next_rcpt(j, c);
		return;
	case SMTPC_RCPT:
		if (code != 250 && code != 251) {
			char *what = xasprintf("recipient %s", j->rcpts[j->rcpt_next - 1]);
			smtpc_fail(j, c, what);
			free(what);
			return;
		}
		smtpc_next_rcpt(j, c);
		return;
	case SMTPC_DATA:
		if (code != 354) {
			smtpc_fail(j, c, "DATA");
			return;
		}
		smtpc_send_body(j, c);
		return;
	case SMTPC_BODY:
		if (code != 250) {
			smtpc_fail(j, c, "message");
			return;
		}
		smtpc_result(j, true, buf_cstr(&j->reply));
		smtpc_enter(j, SMTPC_QUIT);
		smtpc_write(c, "QUIT", false);
		return;
	case SMTPC_QUIT:
		smtpc_enter(j, SMTPC_DONE);
		conn_close(c);
		return;
	default:
		return;
	}
}

/* One reply line: gather until the last line of the reply. */
static void smtpc_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct smtpc_job *j = conn_data(c);
	if (j == NULL)
		return;
	mua_transcript_add("smtp", 'S', line, len, false);
	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2])) {
		buf_reset(&j->reply);
		buf_append(&j->reply, line, len);
		smtpc_result(j, false, "malformed reply from the SMTP server");
		conn_abort(c);
		return;
	}
	const char *text = len > 4 ? line + 4 : "";
	if (j->state == SMTPC_EHLO)
		smtpc_ehlo_keyword(j, text);
	if (j->reply.len > 0)
		buf_append_char(&j->reply, ' ');
	buf_append(&j->reply, line, len);
	if (len > 3 && line[3] == '-')
		return;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	smtpc_reply(j, c, code);
	buf_reset(&j->reply);
}

static void smtpc_on_line_too_long(conn *c)
{
	struct smtpc_job *j = conn_data(c);
	if (j != NULL)
		smtpc_result(j, false, "over-long reply from the SMTP server");
	conn_abort(c);
}

/* TLS is up: greeting next (implicit), or EHLO again (STARTTLS). */
static void smtpc_on_tls_ready(conn *c)
{
	struct smtpc_job *j = conn_data(c);
	if (j == NULL)
		return;
	j->tls_done = true;
	mua_transcript_note("TLS %s %s", conn_tls_version(c), conn_tls_cipher(c));
	if (j->state == SMTPC_TLS) {
		smtpc_enter(j, SMTPC_GREETING);
		conn_set_command_timeout(c, SMTPC_REPLY_TIMEOUT_MS);
		return;
	}
	j->ehlo_auth_plain = false;
	j->ehlo_starttls = false;
	smtpc_enter(j, SMTPC_EHLO);
	smtpc_write(c, "EHLO localhost", false);
}

static void smtpc_on_timeout(conn *c)
{
	struct smtpc_job *j = conn_data(c);
	if (j != NULL) {
		char *msg = xasprintf("the SMTP server does not answer (%s)",
				      smtpc_state_names[j->state]);
		smtpc_result(j, false, msg);
		free(msg);
	}
	conn_abort(c);
}

/* Frees a job. */
static void smtpc_job_free(struct smtpc_job **jp)
{
	struct smtpc_job *j = *jp;
	if (j == NULL)
		return;
	tls_ctx_free(&j->tls);
	free(j->from);
	for (size_t i = 0; i < j->rcpt_count; i++)
		free(j->rcpts[i]);
	free(j->rcpts);
	free(j->message);
	buf_free(&j->reply);
	free(j->result);
	free(j);
	*jp = NULL;
}

/* Calls the owner once with the outcome and frees the job. */
static void smtpc_finish(struct smtpc_job *j, const char *fallback)
{
	smtpc_result(j, false, fallback);
	j->done(j->arg, j->ok, j->result);
	smtpc_job_free(&j);
}

/* The connection closed: report. */
static void smtpc_on_close(conn *c)
{
	struct smtpc_job *j = conn_data(c);
	if (j == NULL)
		return;
	conn_set_data(c, NULL);
	char *msg;
	if ((j->state == SMTPC_TLS || j->state == SMTPC_STARTTLS) && !j->tls_done) {
		msg = mua_tls_failure_message(j->account->send_host, j->account->send_port, c);
	} else {
		msg = xasprintf("connection to SMTP server lost (%s)", smtpc_state_names[j->state]);
	}
	smtpc_finish(j, msg);
	free(msg);
}

static const struct conn_handlers smtpc_handlers = {
	.on_line = smtpc_on_line,
	.on_line_too_long = smtpc_on_line_too_long,
	.on_tls_ready = smtpc_on_tls_ready,
	.on_timeout = smtpc_on_timeout,
	.on_close = smtpc_on_close,
};

/* Connected (or not). */
static void smtpc_connected(conn *c, int status, const char *err, void *arg)
{
	struct smtpc_job *j = arg;
	if (status < 0) {
		char *msg = xasprintf("cannot connect to SMTP server: %s", err != NULL ? err :
				      "error");
		smtpc_finish(j, msg);
		free(msg);
		return;
	}
	conn_set_data(c, j);
	if (j->account->send_tls == MUA_TLS_IMPLICIT) {
		smtpc_enter(j, SMTPC_TLS);
		if (conn_start_tls_client(c, j->tls, j->account->send_host) < 0) {
			smtpc_result(j, false, "cannot start TLS");
			conn_abort(c);
		}
		return;
	}
	smtpc_enter(j, SMTPC_GREETING);
	conn_set_command_timeout(c, SMTPC_REPLY_TIMEOUT_MS);
}

/* Starts sending one message. */
void smtpc_send(uv_loop_t *loop, struct mua_account *account, const char *from,
		char **recipients, size_t count, const char *message, size_t len,
		smtpc_done_cb *done, void *arg)
{
	struct smtpc_job *j = xcalloc(1, sizeof(*j));
	j->account = account;
	j->from = xstrdup(from);
	j->rcpts = xcalloc(count > 0 ? count : 1, sizeof(*j->rcpts));
	for (size_t i = 0; i < count; i++)
		j->rcpts[i] = xstrdup(recipients[i]);
	j->rcpt_count = count;
	j->message = xmalloc(len + 1);
	memcpy(j->message, message, len);
	j->message[len] = '\0';
	j->len = len;
	j->done = done;
	j->arg = arg;
	if (account->send_tls != MUA_TLS_NONE) {
		char *err = NULL;
		j->tls = tls_ctx_client_new(account->tls_verify, account->tls_ca_file, &err);
		if (j->tls == NULL) {
			char *msg = xasprintf("TLS setup: %s", err != NULL ? err : "error");
			free(err);
			smtpc_finish(j, msg);
			free(msg);
			return;
		}
	}
	mua_transcript_note("connecting to %s:%d for submission", account->send_host,
			    account->send_port);
	if (net_connect_tcp(loop, account->send_host, account->send_port, "smtp", SMTPC_MAX_LINE,
			    &smtpc_handlers, j, smtpc_connected, j) < 0)
		smtpc_finish(j, "cannot connect to the SMTP server");
}
