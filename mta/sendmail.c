/* sendmail: the traditional command for scripts and cron jobs. Reads a
 * message on standard input and submits it to the running mta over its local
 * submit socket (DATADIR/run/submit.sock, SMTP, trusted: no AUTH), through
 * the project's one SMTP client (smtp_client.h).
 *
 *   sendmail [-t] [-i|-oi] [-f sender] [-F "Full Name"] [--dir DATADIR] [recipient...]
 *
 * Exit codes from sysexits.h: 0 sent; EX_USAGE no recipients or bad option;
 * EX_NOUSER a recipient was refused (the others still get it); EX_DATAERR the
 * message was refused; EX_TEMPFAIL the mta is down or said "try later";
 * EX_PROTOCOL a reply made no sense; EX_CONFIG no readable config.
 *
 * States: CONNECTING (until the session is ready) -> SENDING (one message
 * handed to the client) -> QUITTING -> CLOSED. The exit status only gets
 * worse: a later failure never turns an error back into success. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "address.h"
#include "buffer.h"
#include "config.h"
#include "header.h"
#include "log.h"
#include "smtp_client.h"

/* The largest message read from standard input. */
#define SENDMAIL_MAX_MESSAGE (256L * 1024 * 1024)
/* Times the RFC 5321 timeouts: about two minutes for each command's reply. */
#define SENDMAIL_TIMEOUT_SCALE 0.4
#define SENDMAIL_MAX_RCPTS 1000

enum sendmail_state {
	SM_CONNECTING,
	SM_SENDING,
	SM_QUITTING,
	SM_CLOSED,
};

static const char *const sendmail_state_names[] = {
	[SM_CONNECTING] = "CONNECTING",
	[SM_SENDING] = "SENDING",
	[SM_QUITTING] = "QUITTING",
	[SM_CLOSED] = "CLOSED",
};

struct sendmail {
	enum sendmail_state state;
	char *sender;
	char **rcpts;
	size_t rcpt_count;
	buf_t message;
	int status;      /* exit status so far */
	bool finished;   /* the mta took the message */
	char hostname[256];
};

static void sendmail_usage(void)
{
	fputs("usage: sendmail [-t] [-i] [-f sender] [-F name] [--dir DATADIR] [recipient...]\n",
	      stderr);
}

/* Moves to a new state and logs the transition. */
static void sendmail_set_state(struct sendmail *sm, enum sendmail_state state)
{
	log_debug(0, "sendmail: %s -> %s", sendmail_state_names[sm->state],
		  sendmail_state_names[state]);
	sm->state = state;
}

/* Remembers an exit status unless a worse one is already set. */
static void sendmail_set_status(struct sendmail *sm, int status)
{
	if (sm->status == EX_OK || sm->status == EX_NOUSER)
		sm->status = status;
}

/* Reports a reply and remembers the exit status it means. */
static void sendmail_fail(struct sendmail *sm, int status, const char *what,
			  const struct smtp_client_reply *reply)
{
	char *one = smtp_client_reply_oneline(reply);
	fprintf(stderr, "sendmail: %s: %s\n", what, one);
	free(one);
	sendmail_set_status(sm, status);
}

/* Status for a failed reply: 4xx may pass, 5xx does not. */
static int sendmail_status_for(int code, int permanent)
{
	return code / 100 == 4 ? EX_TEMPFAIL : permanent;
}

/* The session is idle: hand it the message once, then quit. */
static void sendmail_on_ready(smtp_client *cl, void *arg)
{
	struct sendmail *sm = arg;
	if (sm->state != SM_CONNECTING) {
		sendmail_set_state(sm, SM_QUITTING);
		smtp_client_quit(cl);
		return;
	}
	struct smtp_client_message msg = {
		.sender = sm->sender,
		.rcpts = (const char *const *)sm->rcpts,
		.rcpt_count = sm->rcpt_count,
		.data = sm->message.data != NULL ? sm->message.data : "",
		.len = sm->message.len,
	};
	sendmail_set_state(sm, SM_SENDING);
	smtp_client_send(cl, &msg);
}

/* Turns the transaction's replies into messages and the exit status. */
static void sendmail_on_message_done(smtp_client *cl, const struct smtp_client_result *result,
				     void *arg)
{
	struct sendmail *sm = arg;
	(void)cl;
	if (result->mail->code != 0 && result->mail->code / 100 != 2) {
		sendmail_fail(sm, sendmail_status_for(result->mail->code, EX_DATAERR),
			      "sender refused", result->mail);
		return;
	}
	for (size_t i = 0; i < result->rcpt_count; i++) {
		const struct smtp_client_rcpt_result *r = &result->rcpts[i];
		if (r->accepted || r->stage != SMTP_STAGE_RCPT)
			continue;
		char *what = xasprintf("recipient <%s> refused", sm->rcpts[i]);
		sendmail_fail(sm, sendmail_status_for(r->reply.code, EX_NOUSER), what, &r->reply);
		free(what);
	}
	if (result->accepted == 0)
		return;
	if (result->data->code != 0 && result->data->code != 354) {
		sendmail_fail(sm, sendmail_status_for(result->data->code, EX_DATAERR), "DATA",
			      result->data);
		return;
	}
	if (result->final->code == 0)
		return; /* the session broke: closed says how */
	if (result->final->code / 100 != 2)
		sendmail_fail(sm, sendmail_status_for(result->final->code, EX_DATAERR),
			      "message refused", result->final);
	else
		sm->finished = true;
}

/* The session ended: reports why when the message did not get through. */
static void sendmail_on_closed(smtp_client *cl, const struct smtp_client_end *end, void *arg)
{
	struct sendmail *sm = arg;
	(void)cl;
	sendmail_set_state(sm, SM_CLOSED);
	switch (end->failure) {
	case SMTP_CLIENT_CONNECT:
		fprintf(stderr, "sendmail: cannot reach the mta: %s\n",
			end->error != NULL ? end->error : "error");
		sm->status = EX_TEMPFAIL;
		return;
	case SMTP_CLIENT_REFUSED:
		if (end->command != NULL && strcmp(end->command, "greeting") == 0)
			sendmail_fail(sm, sendmail_status_for(end->reply->code, EX_UNAVAILABLE),
				      "greeting", end->reply);
		else if (!sm->finished)
			sendmail_fail(sm, sendmail_status_for(end->reply->code, EX_PROTOCOL),
				      end->command != NULL ? end->command : "reply", end->reply);
		return;
	case SMTP_CLIENT_TIMEOUT:
		fprintf(stderr, "sendmail: timeout talking to the mta\n");
		sm->status = EX_TEMPFAIL;
		return;
	case SMTP_CLIENT_PROTOCOL:
		fprintf(stderr, "sendmail: malformed reply from the mta\n");
		sm->status = EX_PROTOCOL;
		return;
	default:
		break;
	}
	if (!sm->finished && sm->status == EX_OK) {
		fprintf(stderr, "sendmail: the mta closed the connection\n");
		sm->status = EX_TEMPFAIL;
	}
}

static const struct smtp_client_callbacks sendmail_callbacks = {
	.ready = sendmail_on_ready,
	.message_done = sendmail_on_message_done,
	.closed = sendmail_on_closed,
};

/* Reads standard input; without -i a line holding only "." ends the message.
 * Lines keep their ends: the client sends a bare LF as CRLF. */
static int sendmail_read_message(buf_t *out, bool dot_ends)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		size_t len = (size_t)n;
		if (dot_ends && ((len == 2 && memcmp(line, ".\n", 2) == 0) ||
				 (len == 3 && memcmp(line, ".\r\n", 3) == 0)))
			break;
		if (out->len + len > (size_t)SENDMAIL_MAX_MESSAGE) {
			free(line);
			fprintf(stderr, "sendmail: message too large\n");
			return -1;
		}
		buf_append(out, line, len);
	}
	free(line);
	return 0;
}

/* Adds a recipient once (case-insensitively), up to SENDMAIL_MAX_RCPTS. */
static void sendmail_add_rcpt(struct sendmail *sm, const char *address)
{
	if (sm->rcpt_count >= SENDMAIL_MAX_RCPTS)
		return;
	for (size_t i = 0; i < sm->rcpt_count; i++)
		if (strcasecmp(sm->rcpts[i], address) == 0)
			return;
	sm->rcpts = xrealloc(sm->rcpts, (sm->rcpt_count + 1) * sizeof(*sm->rcpts));
	sm->rcpts[sm->rcpt_count++] = xstrdup(address);
}

/* -t: recipients from To, Cc and Bcc; Bcc fields are removed. */
static void sendmail_header_rcpts(struct sendmail *sm)
{
	struct header h;
	memset(&h, 0, sizeof(h));
	header_parse(sm->message.data != NULL ? sm->message.data : "", sm->message.len, &h);
	buf_t kept = BUF_INIT;
	size_t pos = 0;
	for (size_t i = 0; i < h.count; i++) {
		const struct header_field *f = &h.fields[i];
		bool bcc = strcasecmp(f->name, "Bcc") == 0;
		if (bcc || strcasecmp(f->name, "To") == 0 || strcasecmp(f->name, "Cc") == 0) {
			struct address_list list;
			memset(&list, 0, sizeof(list));
			address_list_parse(f->value, strlen(f->value), &list);
			for (size_t j = 0; j < list.count; j++) {
				if (list.items[j].local == NULL || list.items[j].domain == NULL)
					continue;
				char *spec = mail_address_spec(&list.items[j]);
				sendmail_add_rcpt(sm, spec);
				free(spec);
			}
			address_list_free(&list);
		}
		if (bcc) {
			buf_append(&kept, sm->message.data + pos, f->raw_offset - pos);
			pos = f->raw_offset + f->raw_len;
		}
	}
	header_free(&h);
	if (pos > 0) {
		buf_append(&kept, sm->message.data + pos, sm->message.len - pos);
		buf_free(&sm->message);
		sm->message = kept;
	} else {
		buf_free(&kept);
	}
}

/* Adds a From field when the message has none (with -F's name). */
static void sendmail_add_from(struct sendmail *sm, const char *full_name)
{
	struct header h;
	memset(&h, 0, sizeof(h));
	header_parse(sm->message.data != NULL ? sm->message.data : "", sm->message.len, &h);
	bool has_from = header_get(&h, "From") != NULL;
	header_free(&h);
	if (has_from)
		return;
	char *from = mail_address_format(full_name, sm->sender);
	buf_t msg = BUF_INIT;
	buf_printf(&msg, "From: %s\r\n", from);
	if (sm->message.len > 0)
		buf_append(&msg, sm->message.data, sm->message.len);
	free(from);
	buf_free(&sm->message);
	sm->message = msg;
}

int main(int argc, char **argv)
{
	struct sendmail sm;
	memset(&sm, 0, sizeof(sm));
	bool from_headers = false, dot_ends = true;
	const char *sender = NULL, *full_name = NULL, *datadir = getenv("MAILSTACK_DIR");
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "-t") == 0) {
			from_headers = true;
		} else if (strcmp(a, "-i") == 0 || strcmp(a, "-oi") == 0) {
			dot_ends = false;
		} else if (strncmp(a, "-f", 2) == 0 || strncmp(a, "-r", 2) == 0) {
			sender = a[2] != '\0' ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
		} else if (strncmp(a, "-F", 2) == 0) {
			full_name = a[2] != '\0' ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
		} else if (strcmp(a, "--dir") == 0 && i + 1 < argc) {
			datadir = argv[++i];
		} else if (strncmp(a, "-o", 2) == 0 || strncmp(a, "-B", 2) == 0 ||
			   strcmp(a, "-v") == 0 || strcmp(a, "-bm") == 0 || strncmp(a, "-N", 2) == 0 ||
			   strncmp(a, "-R", 2) == 0 || strncmp(a, "-V", 2) == 0) {
			/* accepted and ignored, as other sendmails do */
			if ((strcmp(a, "-N") == 0 || strcmp(a, "-R") == 0 || strcmp(a, "-V") == 0 ||
			     strcmp(a, "-B") == 0) && i + 1 < argc)
				i++;
		} else {
			fprintf(stderr, "sendmail: unknown option %s\n", a);
			sendmail_usage();
			return EX_USAGE;
		}
	}
	if (datadir == NULL)
		datadir = "./var";
	char *conf = xasprintf("%s/mailstack.conf", datadir);
	config *cfg = NULL;
	char *err = NULL;
	if (config_load(conf, false, &cfg, &err) < 0) {
		fprintf(stderr, "sendmail: %s\n", err);
		free(err);
		free(conf);
		return EX_CONFIG;
	}
	free(conf);
	snprintf(sm.hostname, sizeof(sm.hostname), "%s", config_str(cfg, "server.hostname"));
	if (sender != NULL) {
		sm.sender = xstrdup(sender);
	} else {
		struct passwd *pw = getpwuid(getuid());
		sm.sender = xasprintf("%s@%s", pw != NULL ? pw->pw_name : "nobody", sm.hostname);
	}
	for (; i < argc; i++)
		sendmail_add_rcpt(&sm, argv[i]);
	if (sendmail_read_message(&sm.message, dot_ends) < 0) {
		config_free(&cfg);
		return EX_DATAERR;
	}
	if (from_headers)
		sendmail_header_rcpts(&sm);
	if (sm.rcpt_count == 0) {
		fprintf(stderr, "sendmail: no recipients\n");
		config_free(&cfg);
		free(sm.sender);
		buf_free(&sm.message);
		return EX_USAGE;
	}
	sendmail_add_from(&sm, full_name);
	log_init("sendmail", NULL, LOG_WARN, NULL);

	char *socket_path = xasprintf("%s/run/submit.sock", datadir);
	struct smtp_client_opts opts = {
		.protocol = SMTP_CLIENT_SMTP,
		.helo_name = sm.hostname,
		.tls_mode = SMTP_CLIENT_TLS_NONE,
		.timeout_scale = SENDMAIL_TIMEOUT_SCALE,
		.normalize_newlines = true,
		.transcript_proto = "sendmail",
	};
	uv_loop_t loop;
	uv_loop_init(&loop);
	smtp_client *cl = NULL;
	if (smtp_client_connect_unix(&loop, socket_path, &opts, &sendmail_callbacks, &sm, &cl,
				     &err) < 0) {
		fprintf(stderr, "sendmail: cannot reach the mta at %s: %s\n", socket_path, err);
		free(err);
		sm.status = EX_TEMPFAIL;
	} else {
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&loop);
	free(socket_path);
	for (size_t k = 0; k < sm.rcpt_count; k++)
		free(sm.rcpts[k]);
	free(sm.rcpts);
	free(sm.sender);
	buf_free(&sm.message);
	config_free(&cfg);
	log_close();
	return sm.status;
}
