/* submit_client.c: hands a message to the mta's local submission socket
 * (D/run/submit.sock, an SMTP server that trusts local clients, no AUTH),
 * for Sieve redirects and vacation replies.
 *
 * One conversation per message, a state machine driven by replies:
 *   GREETING -220-> EHLO -250-> MAIL -250-> RCPT -250-> DATA -354-> BODY
 *   -250-> QUIT -> closed
 * Each state names the reply class it expects and the command that the
 * next state sends (the table below). Any other reply ends the conversation;
 * the caller's done callback is called exactly once: 0 after the body was
 * accepted, else -1 with the reply or the connection error (permanent for a
 * 5xx reply). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "log.h"
#include "mda.h"
#include "net.h"

#define SUBMIT_TIMEOUT_MS 60000
#define SUBMIT_MAX_LINE 4096

enum submit_state {
	SUBMIT_GREETING,
	SUBMIT_EHLO,
	SUBMIT_MAIL,
	SUBMIT_RCPT,
	SUBMIT_DATA,
	SUBMIT_BODY,
	SUBMIT_QUIT,
	SUBMIT_DONE,
};

struct submit_job {
	enum submit_state state;
	char *hostname, *sender, *rcpt;
	char *data;
	size_t len;
	submit_done_fn *done;
	void *arg;
	bool reported;
};

static const char *const submit_state_names[] = {
	"greeting", "ehlo", "mail", "rcpt", "data", "body", "quit", "done",
};

/* Reply class each state waits for (2 = 2xx, 3 = 3xx). */
static const int submit_expected[] = {2, 2, 2, 2, 3, 2, 2, 0};

/* Tells the caller once. */
static void submit_report(struct submit_job *job, int status, bool permanent, const char *reason)
{
	if (job->reported)
		return;
	job->reported = true;
	job->done(status, permanent, reason, job->arg);
}

/* Moves to the next state, logging the transition. */
static void submit_enter(struct submit_job *job, conn *c, enum submit_state next)
{
	log_fmt(LOG_DEBUG, conn_id(c), "submit: %s -> %s", submit_state_names[job->state],
		submit_state_names[next]);
	job->state = next;
}

/* Writes the message dot-stuffed, ending with CRLF "." CRLF (RFC 5321 4.5.2). */
static void submit_write_body(conn *c, const struct submit_job *job)
{
	buf_t b = BUF_INIT;
	buf_reserve(&b, job->len + job->len / 64 + 8);
	bool line_start = true;
	for (size_t i = 0; i < job->len; i++) {
		char ch = job->data[i];
		if (line_start && ch == '.')
			buf_append_char(&b, '.');
		buf_append_char(&b, ch);
		line_start = ch == '\n';
	}
	if (!line_start)
		buf_append_str(&b, "\r\n");
	buf_append_str(&b, ".\r\n");
	conn_write_quiet(c, b.data, b.len);
	buf_free(&b);
}

/* The reply for the current state arrived complete and as expected. */
static void submit_advance(conn *c, struct submit_job *job)
{
	switch (job->state) {
	case SUBMIT_GREETING:
		conn_printf(c, "EHLO %s\r\n", job->hostname);
		submit_enter(job, c, SUBMIT_EHLO);
		break;
	case SUBMIT_EHLO:
		conn_printf(c, "MAIL FROM:<%s>\r\n", job->sender);
		submit_enter(job, c, SUBMIT_MAIL);
		break;
	case SUBMIT_MAIL:
		conn_printf(c, "RCPT TO:<%s>\r\n", job->rcpt);
		submit_enter(job, c, SUBMIT_RCPT);
		break;
	case SUBMIT_RCPT:
		conn_write_str(c, "DATA\r\n");
		submit_enter(job, c, SUBMIT_DATA);
		break;
	case SUBMIT_DATA:
		submit_write_body(c, job);
		submit_enter(job, c, SUBMIT_BODY);
		break;
	case SUBMIT_BODY:
		submit_report(job, 0, false, NULL);
		conn_write_str(c, "QUIT\r\n");
		submit_enter(job, c, SUBMIT_QUIT);
		break;
	case SUBMIT_QUIT:
	case SUBMIT_DONE:
		submit_enter(job, c, SUBMIT_DONE);
		conn_close(c);
		break;
	}
}

static void submit_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct submit_job *job = conn_data(c);
	if (job == NULL || job->state == SUBMIT_DONE)
		return;
	if (len < 3 || line[0] < '2' || line[0] > '5') {
		submit_report(job, -1, false, "malformed reply from the submission server");
		conn_close(c);
		return;
	}
	if (len > 3 && line[3] == '-')
		return; /* a continuation of a multi-line reply */
	int class = line[0] - '0';
	if (class == submit_expected[job->state]) {
		submit_advance(c, job);
		return;
	}
	char *reason = xasprintf("%s: %s", submit_state_names[job->state], line);
	submit_report(job, -1, class == 5, reason);
	free(reason);
	job->state = SUBMIT_DONE;
	conn_close(c);
}

static void submit_on_timeout(conn *c)
{
	struct submit_job *job = conn_data(c);
	if (job != NULL)
		submit_report(job, -1, false, "timeout talking to the submission server");
	conn_abort(c);
}

static void submit_on_close(conn *c)
{
	struct submit_job *job = conn_data(c);
	if (job == NULL)
		return;
	conn_set_data(c, NULL);
	submit_report(job, -1, false, "connection to the submission server closed");
	free(job->hostname);
	free(job->sender);
	free(job->rcpt);
	free(job->data);
	free(job);
}

static const struct conn_handlers submit_handlers = {
	.on_line = submit_on_line,
	.on_timeout = submit_on_timeout,
	.on_close = submit_on_close,
};

/* Connected (or not). */
static void submit_on_connect(conn *c, int status, const char *err, void *arg)
{
	struct submit_job *job = arg;
	if (status < 0 || c == NULL) {
		submit_report(job, -1, false, err != NULL ? err : "cannot connect");
		free(job->hostname);
		free(job->sender);
		free(job->rcpt);
		free(job->data);
		free(job);
		return;
	}
	conn_set_idle_timeout(c, SUBMIT_TIMEOUT_MS);
}

void submit_message(uv_loop_t *loop, const char *socket_path, const char *hostname,
		    const char *sender, const char *rcpt, const char *data, size_t len,
		    submit_done_fn *done, void *arg)
{
	struct submit_job *job = xcalloc(1, sizeof(*job));
	job->state = SUBMIT_GREETING;
	job->hostname = xstrdup(hostname);
	job->sender = xstrdup(sender);
	job->rcpt = xstrdup(rcpt);
	job->data = xmalloc(len + 1);
	memcpy(job->data, data, len);
	job->len = len;
	job->done = done;
	job->arg = arg;
	if (net_connect_unix(loop, socket_path, "smtp", SUBMIT_MAX_LINE, &submit_handlers, job,
			     submit_on_connect, job) < 0) {
		/* net_connect_unix reports through the callback; a -1 here means it
		 * could not even start, and the callback may not run. */
		if (!job->reported) {
			submit_report(job, -1, false, "cannot connect to the submission socket");
			free(job->hostname);
			free(job->sender);
			free(job->rcpt);
			free(job->data);
			free(job);
		}
	}
}
