/* sendmail: the traditional command for scripts and cron jobs. Reads a
 * message on standard input and submits it to the running mta over its local
 * submit socket (DATADIR/run/submit.sock, SMTP, trusted: no AUTH).
 *
 *   sendmail [-t] [-i|-oi] [-f sender] [-F "Full Name"] [--dir DATADIR] [recipient...]
 *
 * Exit codes from sysexits.h: 0 sent; EX_USAGE no recipients or bad option;
 * EX_NOUSER a recipient was refused (the others still get it); EX_DATAERR the
 * message was refused; EX_TEMPFAIL the mta is down or said "try later";
 * EX_PROTOCOL a reply made no sense; EX_CONFIG no readable config.
 *
 * The conversation is a state machine driven by replies:
 *   GREETING -> EHLO -> MAIL -> RCPT (each) -> DATA -> BODY -> QUIT */
#include <errno.h>
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
#include "mta.h"
#include "net.h"

/* The largest message read from standard input. */
#define SENDMAIL_MAX_MESSAGE (256L * 1024 * 1024)
#define SENDMAIL_TIMEOUT_MS (120 * 1000)
#define SENDMAIL_MAX_RCPTS 1000

enum sendmail_state {
	SM_GREETING,
	SM_EHLO,
	SM_MAIL,
	SM_RCPT,
	SM_DATA,
	SM_BODY,
	SM_QUIT,
};

struct sendmail {
	enum sendmail_state state;
	struct smtp_reply reply;
	char *sender;
	char **rcpts;
	size_t rcpt_count;
	size_t rcpt_index;
	size_t accepted;
	buf_t message;
	struct body_sender bs;
	int status;      /* exit status so far */
	bool finished;
	char hostname[256];
};

static void sendmail_usage(void)
{
	fputs("usage: sendmail [-t] [-i] [-f sender] [-F name] [--dir DATADIR] [recipient...]\n",
	      stderr);
}

/* Reports a reply and remembers the exit status it means. */
static void sendmail_fail(struct sendmail *sm, int status, const char *what)
{
	char *one = smtp_reply_oneline(&sm->reply);
	fprintf(stderr, "sendmail: %s: %s\n", what, one);
	free(one);
	if (sm->status == EX_OK || sm->status == EX_NOUSER)
		sm->status = status;
}

/* Status for a failed reply: 4xx may pass, 5xx does not. */
static int sendmail_status_for(int code, int permanent)
{
	return code / 100 == 4 ? EX_TEMPFAIL : permanent;
}

static void sendmail_quit(struct sendmail *sm, conn *c)
{
	sm->state = SM_QUIT;
	conn_write_str(c, "QUIT\r\n");
	conn_close(c);
}

static void sendmail_body_sent(void *arg)
{
	(void)arg;
}

static void sendmail_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct sendmail *sm = conn_data(c);
	int rc = smtp_reply_feed(&sm->reply, line, len);
	if (rc < 0) {
		fprintf(stderr, "sendmail: malformed reply from the mta\n");
		sm->status = EX_PROTOCOL;
		conn_abort(c);
		return;
	}
	if (rc == 0)
		return;
	int code = sm->reply.code;
	switch (sm->state) {
	case SM_GREETING:
		if (code != 220) {
			sendmail_fail(sm, sendmail_status_for(code, EX_UNAVAILABLE), "greeting");
			sendmail_quit(sm, c);
			break;
		}
		conn_printf(c, "EHLO %s\r\n", sm->hostname);
		sm->state = SM_EHLO;
		break;
	case SM_EHLO:
		if (code != 250) {
			sendmail_fail(sm, sendmail_status_for(code, EX_PROTOCOL), "EHLO");
			sendmail_quit(sm, c);
			break;
		}
		conn_printf(c, "MAIL FROM:<%s>\r\n", sm->sender);
		sm->state = SM_MAIL;
		break;
	case SM_MAIL:
		if (code != 250) {
			sendmail_fail(sm, sendmail_status_for(code, EX_DATAERR), "sender refused");
			sendmail_quit(sm, c);
			break;
		}
		sm->state = SM_RCPT;
		conn_printf(c, "RCPT TO:<%s>\r\n", sm->rcpts[sm->rcpt_index]);
		break;
	case SM_RCPT:
		if (code / 100 == 2) {
			sm->accepted++;
		} else {
			char *what = xasprintf("recipient <%s> refused", sm->rcpts[sm->rcpt_index]);
			sendmail_fail(sm, sendmail_status_for(code, EX_NOUSER), what);
			free(what);
		}
		if (++sm->rcpt_index < sm->rcpt_count) {
			conn_printf(c, "RCPT TO:<%s>\r\n", sm->rcpts[sm->rcpt_index]);
			break;
		}
		if (sm->accepted == 0) {
			sendmail_quit(sm, c);
			break;
		}
		conn_write_str(c, "DATA\r\n");
		sm->state = SM_DATA;
		break;
	case SM_DATA:
		if (code != 354) {
			sendmail_fail(sm, sendmail_status_for(code, EX_DATAERR), "DATA");
			sendmail_quit(sm, c);
			break;
		}
		sm->state = SM_BODY;
		body_sender_start(&sm->bs, c, sm->message.data, sm->message.len, sendmail_body_sent,
				  sm);
		break;
	case SM_BODY:
		if (code / 100 != 2)
			sendmail_fail(sm, sendmail_status_for(code, EX_DATAERR), "message refused");
		else
			sm->finished = true;
		sendmail_quit(sm, c);
		break;
	case SM_QUIT:
		break;
	}
	smtp_reply_reset(&sm->reply);
}

static void sendmail_on_line_too_long(conn *c)
{
	struct sendmail *sm = conn_data(c);
	sm->status = EX_PROTOCOL;
	conn_abort(c);
}

static void sendmail_on_timeout(conn *c)
{
	struct sendmail *sm = conn_data(c);
	fprintf(stderr, "sendmail: timeout talking to the mta\n");
	sm->status = EX_TEMPFAIL;
	conn_abort(c);
}

static void sendmail_on_close(conn *c)
{
	struct sendmail *sm = conn_data(c);
	if (!sm->finished && sm->status == EX_OK) {
		fprintf(stderr, "sendmail: the mta closed the connection\n");
		sm->status = EX_TEMPFAIL;
	}
}

static const struct conn_handlers sendmail_handlers = {
	.on_line = sendmail_on_line,
	.on_line_too_long = sendmail_on_line_too_long,
	.on_timeout = sendmail_on_timeout,
	.on_close = sendmail_on_close,
};

static void sendmail_connected(conn *c, int status, const char *err, void *arg)
{
	struct sendmail *sm = arg;
	if (status < 0) {
		fprintf(stderr, "sendmail: cannot reach the mta: %s\n", err != NULL ? err : "error");
		sm->status = EX_TEMPFAIL;
		return;
	}
	conn_set_command_timeout(c, SENDMAIL_TIMEOUT_MS);
	conn_set_idle_timeout(c, SENDMAIL_TIMEOUT_MS);
}

/* Reads standard input, making every line end in CRLF; without -i a line
 * holding only "." ends the message. */
static int sendmail_read_message(buf_t *out, bool dot_ends)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		size_t len = (size_t)n;
		bool had_nl = line[len - 1] == '\n';
		if (had_nl)
			len--;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (dot_ends && had_nl && len == 1 && line[0] == '.')
			break;
		if (out->len + len + 2 > (size_t)SENDMAIL_MAX_MESSAGE) {
			free(line);
			fprintf(stderr, "sendmail: message too large\n");
			return -1;
		}
		buf_append(out, line, len);
		buf_append(out, "\r\n", 2);
	}
	free(line);
	return 0;
}

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
	uv_loop_t loop;
	uv_loop_init(&loop);
	if (net_connect_unix(&loop, socket_path, "sendmail", SMTP_MAX_REPLY_LINE, &sendmail_handlers,
			     &sm, sendmail_connected, &sm) < 0) {
		fprintf(stderr, "sendmail: cannot reach the mta at %s\n", socket_path);
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
	buf_free(&sm.reply.text);
	config_free(&cfg);
	log_close();
	return sm.status;
}
