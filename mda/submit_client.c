/* submit_client.c: hands a message to the mta's local submission socket
 * (D/run/submit.sock, an SMTP server that trusts local clients, no AUTH),
 * for Sieve redirects and vacation replies.
 *
 * One common/smtp_client.h session per message: when the session is READY
 * the message goes (one recipient), and when its transaction ends the session
 * QUITs. The caller's done callback is called exactly once: 0 after the data
 * was accepted, else -1 with the reply or the connection error (permanent for
 * a 5xx reply). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "log.h"
#include "mda.h"
#include "smtp_client.h"

/* The local submission server answers at once; a minute is plenty for any
 * reply (RFC 5321 4.5.3.2 gives 5 to 10 minutes: scaled by 1/5). */
#define SUBMIT_TIMEOUT_SCALE 0.2

struct submit_job {
	char *sender, *rcpt;
	char *data;
	size_t len;
	bool sent;
	submit_done_fn *done;
	void *arg;
	bool reported;
};

/* Tells the caller once. */
static void submit_report(struct submit_job *job, int status, bool permanent, const char *reason)
{
	if (job->reported)
		return;
	job->reported = true;
	job->done(status, permanent, reason, job->arg);
}

static void submit_job_free(struct submit_job **jobp)
{
	struct submit_job *job = *jobp;
	free(job->sender);
	free(job->rcpt);
	free(job->data);
	free(job);
	*jobp = NULL;
}

/* Reports a refusal: which command and the server's reply. */
static void submit_report_reply(struct submit_job *job, const char *what,
				const struct smtp_client_reply *r)
{
	char *one = smtp_client_reply_oneline(r);
	char *reason = xasprintf("%s: %s", what, one);
	submit_report(job, -1, r->code / 100 == 5, reason);
	free(reason);
	free(one);
}

/* Greeted and EHLO answered: send the message, once. */
static void submit_ready(smtp_client *cl, void *arg)
{
	struct submit_job *job = arg;
	if (job->sent) {
		smtp_client_quit(cl);
		return;
	}
	job->sent = true;
	const char *rcpts[] = {job->rcpt};
	struct smtp_client_message msg = {
		.sender = job->sender,
		.rcpts = rcpts,
		.rcpt_count = 1,
		.data = job->data,
		.len = job->len,
	};
	smtp_client_send(cl, &msg);
}

/* The transaction ended: the recipient's reply decides. */
static void submit_message_done(smtp_client *cl, const struct smtp_client_result *res, void *arg)
{
	struct submit_job *job = arg;
	const struct smtp_client_rcpt_result *r = &res->rcpts[0];
	if (r->stage == SMTP_STAGE_END_OF_DATA && r->reply.code / 100 == 2)
		submit_report(job, 0, false, NULL);
	else if (r->stage != SMTP_STAGE_NONE)
		submit_report_reply(job, smtp_client_stage_name(r->stage), &r->reply);
	smtp_client_quit(cl);
}

/* The session is over: report a failure that has not been, and free the job. */
static void submit_closed(smtp_client *cl, const struct smtp_client_end *end, void *arg)
{
	struct submit_job *job = arg;
	switch (end->failure) {
	case SMTP_CLIENT_REFUSED:
		submit_report_reply(job, end->command, end->reply);
		break;
	case SMTP_CLIENT_CONNECT:
		submit_report(job, -1, false, end->error);
		break;
	case SMTP_CLIENT_TIMEOUT:
		submit_report(job, -1, false, "timeout talking to the submission server");
		break;
	default:
		submit_report(job, -1, false, "connection to the submission server closed");
		break;
	}
	submit_job_free(&job);
}

static const struct smtp_client_callbacks submit_callbacks = {
	.ready = submit_ready,
	.message_done = submit_message_done,
	.closed = submit_closed,
};

void submit_message(uv_loop_t *loop, const char *socket_path, const char *hostname,
		    const char *sender, const char *rcpt, const char *data, size_t len,
		    submit_done_fn *done, void *arg)
{
	struct submit_job *job = xcalloc(1, sizeof(*job));
	job->sender = xstrdup(sender);
	job->rcpt = xstrdup(rcpt);
	job->data = xmalloc(len + 1);
	memcpy(job->data, data, len);
	job->len = len;
	job->done = done;
	job->arg = arg;
	struct smtp_client_opts opts = {
		.protocol = SMTP_CLIENT_SMTP,
		.helo_name = hostname,
		.timeout_scale = SUBMIT_TIMEOUT_SCALE,
		.transcript_proto = "smtp",
	};
	smtp_client *cl = NULL;
	char *err = NULL;
	if (smtp_client_connect_unix(loop, socket_path, &opts, &submit_callbacks, job, &cl,
				     &err) < 0) {
		log_kv(LOG_WARN, 0, "submit: cannot connect", "error", err, NULL);
		submit_report(job, -1, false, "cannot connect to the submission socket");
		free(err);
		submit_job_free(&job);
	}
}
