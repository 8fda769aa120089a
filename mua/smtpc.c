/* smtpc.c: sending one message over SMTP submission (RFC 6409) for the mua,
 * on the project's one SMTP client (common/smtp_client.h), which does the
 * conversation: greeting, EHLO, STARTTLS (RFC 3207) or implicit TLS, AUTH
 * (RFC 4954), MAIL, every RCPT, DATA, the dot-stuffed body and QUIT. This
 * file picks the options from the account and turns the client's results
 * into the one line the owner shows.
 *
 * States (job->state; changed only by smtpc_enter, which notes it):
 *
 *   CONNECTING --ready--> SENDING --message_done--> QUITTING --closed--> DONE
 *   any --closed--> DONE
 *
 * Invariants: the message is handed over at most once (the first ready); the
 * first outcome recorded wins (a refusal or the success from message_done,
 * else the reason the session ended); the done callback runs exactly once,
 * from the closed callback (or from smtpc_send when no session started), and
 * the job is freed right after it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "net.h"
#include "smtp_client.h"
#include "tls.h"
#include "mua.h"

/* RFC 5321 4.5.3.2 timeouts times this: about 60 s for a command's reply,
 * two minutes for the reply to the final dot. */
#define SMTPC_TIMEOUT_SCALE 0.2
/* The AUTH mechanism the mua uses (over TLS). */
#define SMTPC_AUTH_MECHANISM "PLAIN"

enum smtpc_state {
	SMTPC_CONNECTING,
	SMTPC_SENDING,
	SMTPC_QUITTING,
	SMTPC_DONE,
};

static const char *const smtpc_state_names[] = {
	[SMTPC_CONNECTING] = "connecting",
	[SMTPC_SENDING] = "sending",
	[SMTPC_QUITTING] = "quitting",
	[SMTPC_DONE] = "done",
};

struct smtpc_job {
	enum smtpc_state state;
	struct mua_account *account;
	tls_ctx *tls;
	char *from;
	char **rcpts;
	size_t rcpt_count;
	char *message;
	size_t len;
	bool ok;
	char *result;      /* the outcome's line; NULL until known */
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

/* Records the outcome (the first one wins). */
static void smtpc_result(struct smtpc_job *j, bool ok, const char *msg)
{
	if (j->result != NULL)
		return;
	j->ok = ok;
	j->result = xstrdup(msg);
}

/* Records "<what> refused: <reply>". */
static void smtpc_refused(struct smtpc_job *j, const char *what,
			  const struct smtp_client_reply *reply)
{
	char *line = smtp_client_reply_oneline(reply);
	char *msg = xasprintf("%s refused: %s", what, line);
	smtpc_result(j, false, msg);
	free(msg);
	free(line);
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
	free(j->result);
	free(j);
	*jp = NULL;
}

/* Calls the owner once with the outcome (fallback when none was recorded)
 * and frees the job. */
static void smtpc_finish(struct smtpc_job *j, const char *fallback)
{
	smtpc_enter(j, SMTPC_DONE);
	smtpc_result(j, false, fallback);
	j->done(j->arg, j->ok, j->result);
	smtpc_job_free(&j);
}

/* ---- the client's callbacks ---- */

/* Each line sent or received goes to the transcript (secrets arrive masked). */
static void smtpc_on_transcript(smtp_client *cl, char dir, const char *line, size_t len,
				void *arg)
{
	(void)cl;
	(void)arg;
	mua_transcript_add("smtp", dir, line, len, false);
}

/* Idle: hand over the message the first time, quit after it. */
static void smtpc_on_ready(smtp_client *cl, void *arg)
{
	struct smtpc_job *j = arg;
	if (j->state != SMTPC_CONNECTING) {
		smtpc_enter(j, SMTPC_QUITTING);
		smtp_client_quit(cl);
		return;
	}
	conn *c = smtp_client_conn(cl);
	if (c != NULL && smtp_client_is_tls(cl))
		mua_transcript_note("TLS %s %s", conn_tls_version(c), conn_tls_cipher(c));
	struct smtp_client_message msg = {
		.sender = j->from,
		.rcpts = (const char *const *)j->rcpts,
		.rcpt_count = j->rcpt_count,
		.data = j->message,
		.len = j->len,
	};
	smtpc_enter(j, SMTPC_SENDING);
	smtp_client_send(cl, &msg);
	mua_transcript_note("(message of %zu bytes sent)", j->len);
}

/* Whether a reply is there and is not a success. */
static bool smtpc_reply_failed(const struct smtp_client_reply *r, int success)
{
	return r->code != 0 && r->code / 100 != success / 100;
}

/* The transaction ended: success only when every recipient got a 2xx at the
 * end of DATA; otherwise the first refusal, in the order of the commands. */
static void smtpc_on_message_done(smtp_client *cl, const struct smtp_client_result *result,
				  void *arg)
{
	(void)cl;
	struct smtpc_job *j = arg;
	if (smtpc_reply_failed(result->mail, 250)) {
		smtpc_refused(j, "sender", result->mail);
		return;
	}
	for (size_t i = 0; i < result->rcpt_count; i++) {
		const struct smtp_client_rcpt_result *rr = &result->rcpts[i];
		if (rr->stage == SMTP_STAGE_RCPT && !rr->accepted) {
			char *what = xasprintf("recipient %s",
					       i < j->rcpt_count ? j->rcpts[i] : "?");
			smtpc_refused(j, what, &rr->reply);
			free(what);
			return;
		}
	}
	if (smtpc_reply_failed(result->data, 354)) {
		smtpc_refused(j, "DATA", result->data);
		return;
	}
	if (smtpc_reply_failed(result->final, 250)) {
		smtpc_refused(j, "message", result->final);
		return;
	}
	if (!result->complete)
		return; /* the closed callback says why */
	for (size_t i = 0; i < result->rcpt_count; i++) {
		const struct smtp_client_rcpt_result *rr = &result->rcpts[i];
		if (rr->stage != SMTP_STAGE_END_OF_DATA || rr->reply.code / 100 != 2) {
			smtpc_result(j, false, "the message was not accepted for every recipient");
			return;
		}
	}
	char *line = smtp_client_reply_oneline(result->final);
	smtpc_result(j, result->rcpt_count > 0, line);
	free(line);
}

/* What a refused command means to the user. */
static const struct {
	const char *command;
	const char *what;
} smtpc_commands[] = {
	{ "greeting", "greeting" },
	{ "EHLO", "EHLO" },
	{ "HELO", "HELO" },
	{ "STARTTLS", "STARTTLS" },
	{ "AUTH", "login" },
	{ "RSET", "RSET" },
};

/* How each way of ending reads: the text, then the error after ": " or the
 * state in parentheses. */
enum smtpc_detail { SMTPC_DETAIL_NONE, SMTPC_DETAIL_ERROR, SMTPC_DETAIL_STATE };

static const struct {
	const char *text;
	enum smtpc_detail detail;
} smtpc_endings[] = {
	[SMTP_CLIENT_QUIT] = { "the SMTP session ended before the message was sent",
			       SMTPC_DETAIL_NONE },
	[SMTP_CLIENT_CONNECT] = { "cannot connect to SMTP server", SMTPC_DETAIL_ERROR },
	[SMTP_CLIENT_REFUSED] = { "the SMTP server refused", SMTPC_DETAIL_STATE },
	[SMTP_CLIENT_NO_TLS] = { "the SMTP server does not offer STARTTLS (password not sent)",
				 SMTPC_DETAIL_NONE },
	[SMTP_CLIENT_TLS_FAILED] = { "TLS with the SMTP server failed", SMTPC_DETAIL_ERROR },
	[SMTP_CLIENT_NO_AUTH] = { "the SMTP server offers no AUTH " SMTPC_AUTH_MECHANISM
				  " (password not sent)", SMTPC_DETAIL_NONE },
	[SMTP_CLIENT_AUTH_FAILED] = { "SMTP login failed", SMTPC_DETAIL_ERROR },
	[SMTP_CLIENT_LOST] = { "connection to SMTP server lost", SMTPC_DETAIL_STATE },
	[SMTP_CLIENT_TIMEOUT] = { "the SMTP server does not answer", SMTPC_DETAIL_STATE },
	[SMTP_CLIENT_PROTOCOL] = { "malformed reply from the SMTP server", SMTPC_DETAIL_ERROR },
	[SMTP_CLIENT_ABORTED] = { "sending aborted", SMTPC_DETAIL_ERROR },
};

/* The line for a session that ended without an outcome (caller frees). */
static char *smtpc_end_message(struct smtpc_job *j, smtp_client *cl,
			       const struct smtp_client_end *end)
{
	if (end->failure == SMTP_CLIENT_REFUSED && end->reply != NULL) {
		const char *what = end->command != NULL ? end->command : "command";
		for (size_t i = 0; i < sizeof(smtpc_commands) / sizeof(smtpc_commands[0]); i++)
			if (end->command != NULL &&
			    strcmp(end->command, smtpc_commands[i].command) == 0)
				what = smtpc_commands[i].what;
		char *line = smtp_client_reply_oneline(end->reply);
		char *msg = xasprintf("%s refused: %s", what, line);
		free(line);
		return msg;
	}
	conn *c = smtp_client_conn(cl);
	if (end->failure == SMTP_CLIENT_TLS_FAILED && c != NULL)
		return mua_tls_failure_message(j->account->send_host, j->account->send_port, c);
	size_t n = sizeof(smtpc_endings) / sizeof(smtpc_endings[0]);
	if ((size_t)end->failure >= n || smtpc_endings[end->failure].text == NULL)
		return xstrdup("the SMTP session ended");
	const char *text = smtpc_endings[end->failure].text;
	switch (smtpc_endings[end->failure].detail) {
	case SMTPC_DETAIL_ERROR:
		return xasprintf("%s: %s", text, end->error != NULL ? end->error : "error");
	case SMTPC_DETAIL_STATE:
		return xasprintf("%s (%s)", text, end->state != NULL ? end->state : "?");
	case SMTPC_DETAIL_NONE:
	default:
		return xstrdup(text);
	}
}

/* The session is over: report to the owner (cl is freed after this). */
static void smtpc_on_closed(smtp_client *cl, const struct smtp_client_end *end, void *arg)
{
	struct smtpc_job *j = arg;
	char *msg = smtpc_end_message(j, cl, end);
	smtpc_finish(j, msg);
	free(msg);
}

static const struct smtp_client_callbacks smtpc_callbacks = {
	.ready = smtpc_on_ready,
	.message_done = smtpc_on_message_done,
	.closed = smtpc_on_closed,
	.transcript = smtpc_on_transcript,
};

/* The client's TLS mode for the account's. */
static enum smtp_client_tls_mode smtpc_tls_mode(enum mua_tls_mode mode)
{
	static const enum smtp_client_tls_mode modes[] = {
		[MUA_TLS_NONE] = SMTP_CLIENT_TLS_NONE,
		[MUA_TLS_STARTTLS] = SMTP_CLIENT_TLS_REQUIRED,
		[MUA_TLS_IMPLICIT] = SMTP_CLIENT_TLS_IMPLICIT,
	};
	return (size_t)mode < sizeof(modes) / sizeof(modes[0]) ? modes[mode] :
	       SMTP_CLIENT_TLS_REQUIRED;
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
	if (count == 0) {
		smtpc_finish(j, "no recipients");
		return;
	}
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
	bool auth = account->password != NULL;
	struct smtp_client_opts opts = {
		.protocol = SMTP_CLIENT_SMTP,
		.helo_name = "localhost",
		.tls_mode = smtpc_tls_mode(account->send_tls),
		.tls = j->tls,
		.tls_server_name = account->send_host,
		.auth_user = auth ? account->login : NULL,
		.auth_password = auth ? account->password : NULL,
		.auth_mechanism = SMTPC_AUTH_MECHANISM,
		.timeout_scale = SMTPC_TIMEOUT_SCALE,
		.require_all_rcpts = true,
		.normalize_newlines = true,
	};
	mua_transcript_note("connecting to %s:%d for submission", account->send_host,
			    account->send_port);
	smtp_client *cl = NULL;
	char *err = NULL;
	if (smtp_client_connect_tcp(loop, account->send_host, account->send_port, &opts,
				    &smtpc_callbacks, j, &cl, &err) < 0) {
		char *msg = xasprintf("cannot connect to SMTP server: %s",
				      err != NULL ? err : "error");
		free(err);
		smtpc_finish(j, msg);
		free(msg);
	}
}
