/* demo.c: `mailctl demo`, one message's whole lifecycle, narrated for a
 * lecture.
 *
 * The demo runs the real commands a student would type, as child processes
 * (`/bin/sh -c COMMAND`, with MAILSTACK_DIR set and mailctl's own directory
 * first on PATH), printing each command before its output. Steps, in order
 * (the table demo_steps):
 *
 *   the stack      `mailctl init --demo` when the data directory is new;
 *                  `mailctl up` in the background when nothing listens
 *   the message    alice's message, written to D/demo-message.eml
 *   submission     curl's SMTP client: STARTTLS, AUTH, MAIL/RCPT/DATA
 *   SMTP           `mailctl transcript --proto smtp --last`: the session
 *                  just held, with AUTH masked; gives the lifecycle id
 *   the queue      `mailctl queue` and the mta's events for the id
 *   LMTP           the mda's side of the hand-over
 *   the mailbox    bob's row, through the read-only views (`mailctl views`)
 *   IMAP, POP3     bob reads it with curl, once over each
 *   the trace      `mailctl trace ID`
 *
 * States: each step either succeeds (the demo goes on, pausing for Enter
 * between steps when stdin is a terminal and --no-pause is not given) or
 * fails (the demo says which command failed and exits 1). A stack started
 * by the demo keeps running afterwards, so the class can go on with labs.
 *
 * Every command has a time limit (DEMO_COMMAND_TIMEOUT_S); its output is
 * echoed as it comes and kept (up to DEMO_MAX_OUTPUT) for the step to read
 * values from, such as the lifecycle id in the 250 reply. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "ctl.h"
#include "log.h"

#define DEMO_COMMAND_TIMEOUT_S 60
#define DEMO_START_TIMEOUT_MS 60000
#define DEMO_EVENT_TIMEOUT_MS 30000
#define DEMO_POLL_MS 200
#define DEMO_MAX_OUTPUT (1024 * 1024)
#define DEMO_MAX_CREDENTIALS 4096
#define DEMO_MAX_EVENT_LINE (64 * 1024)

struct demo {
	const char *datadir;
	bool pause;
	const char *init_port_base; /* --port-base, for a data directory made now */
	config *cfg;
	char *host;          /* for URLs: "127.0.0.1" or "[::1]" */
	char *connect_host;  /* for connect(): without brackets */
	int64_t port_base;
	char *cert;
	char *alice, *alice_password;
	char *bob, *bob_password;
	char *message_path;
	char *message_id;
	char *id;            /* the lifecycle id, from the 250 reply */
	char *bob_uid;       /* bob's UID of the message, from the mda's event */
	pid_t up_pid;        /* `mailctl up` started by the demo, or 0 */
	buf_t output;        /* the last command's output */
};

struct demo_step {
	const char *title;
	const char *story;
	int (*run)(struct demo *d);
};

/* ---- running commands ---- */

/* Runs command with /bin/sh after printing it; echoes and keeps its output
 * (stdout and stderr together) in d->output. Returns its exit status, or -1
 * when it could not run or ran out of time. */
static int demo_run(struct demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int demo_run(struct demo *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_t command = BUF_INIT;
	buf_vprintf(&command, fmt, ap);
	va_end(ap);
	printf("\n$ %s\n", buf_cstr(&command));
	fflush(stdout);
	buf_reset(&d->output);

	int fds[2];
	if (pipe(fds) < 0) {
		fprintf(stderr, "mailctl: pipe: %s\n", strerror(errno));
		buf_free(&command);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "mailctl: fork: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		buf_free(&command);
		return -1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		execl("/bin/sh", "sh", "-c", buf_cstr(&command), (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	buf_free(&command);
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	bool timed_out = false;
	char chunk[4096];
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 +
				  (now.tv_nsec - start.tv_nsec) / 1000000;
		long left_ms = DEMO_COMMAND_TIMEOUT_S * 1000L - elapsed_ms;
		if (left_ms <= 0) {
			timed_out = true;
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		int r = poll(&p, 1, (int)left_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		ssize_t n = read(fds[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fwrite(chunk, 1, (size_t)n, stdout);
		if (d->output.len + (size_t)n <= DEMO_MAX_OUTPUT)
			buf_append(&d->output, chunk, (size_t)n);
	}
	fflush(stdout);
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out) {
		fprintf(stderr, "mailctl: the command took more than %d s and was stopped\n",
			DEMO_COMMAND_TIMEOUT_S);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a command that must succeed; prints why not and returns -1. */
static int demo_run_ok(struct demo *d, const char *command)
{
	int rc = demo_run(d, "%s", command);
	if (rc != 0) {
		fprintf(stderr, "mailctl: demo: that command failed (exit status %d)\n", rc);
		return -1;
	}
	return 0;
}

/* ---- waiting ---- */

/* True when something accepts a TCP connection on host:port. */
static bool demo_port_answers(const char *host, int port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		len = sizeof(*in6);
	} else {
		return false;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool ok = connect(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

/* The ports the demo talks to, and the mda's socket, all answer. */
static bool demo_stack_ready(struct demo *d)
{
	static const int standard_ports[] = {587, 143, 110};
	for (size_t i = 0; i < sizeof(standard_ports) / sizeof(standard_ports[0]); i++) {
		if (!demo_port_answers(d->connect_host, (int)d->port_base + standard_ports[i]))
			return false;
	}
	char *sock = config_path_in_datadir(d->cfg, "lmtp.socket");
	bool ok = access(sock, F_OK) == 0;
	free(sock);
	return ok;
}

/* Finds the first event of the lifecycle id with this kind (and component,
 * unless NULL) in events.log; fills *value_r with the value of key when
 * asked. True when found. */
static bool demo_find_event(struct demo *d, const char *event, const char *comp,
			    const char *key, char **value_r)
{
	char *path = xasprintf("%s/log/events.log", d->datadir);
	FILE *f = fopen(path, "r");
	free(path);
	if (f == NULL)
		return false;
	bool found = false;
	buf_t line = BUF_INIT;
	int ch = 0;
	while (!found && ch != EOF) {
		buf_reset(&line);
		while ((ch = getc(f)) != EOF && ch != '\n')
			if (line.len < DEMO_MAX_EVENT_LINE)
				buf_append_char(&line, (char)ch);
		if (ch == EOF)
			break; /* a line still being written */
		char **keys, **values;
		size_t n = log_parse_line(buf_cstr(&line), &keys, &values);
		const char *id = log_pairs_get(n, keys, values, "id");
		const char *ev = log_pairs_get(n, keys, values, "event");
		const char *co = log_pairs_get(n, keys, values, "comp");
		const char *val = key != NULL ? log_pairs_get(n, keys, values, key) : NULL;
		if (id != NULL && ev != NULL && strcmp(id, d->id) == 0 && strcmp(ev, event) == 0 &&
		    (comp == NULL || (co != NULL && strcmp(co, comp) == 0))) {
			found = true;
			if (value_r != NULL)
				*value_r = val != NULL ? xstrdup(val) : NULL;
		}
		log_pairs_free(n, &keys, &values);
	}
	buf_free(&line);
	fclose(f);
	return found;
}

/* Waits (bounded) for an event of the message; see demo_find_event. */
static bool demo_wait_event(struct demo *d, const char *event, const char *comp,
			    const char *key, char **value_r)
{
	for (long waited = 0; waited < DEMO_EVENT_TIMEOUT_MS; waited += DEMO_POLL_MS) {
		if (demo_find_event(d, event, comp, key, value_r))
			return true;
		ctl_sleep_ms(DEMO_POLL_MS);
	}
	fprintf(stderr, "mailctl: demo: no '%s' event for %s after %d s\n", event, d->id,
		DEMO_EVENT_TIMEOUT_MS / 1000);
	return false;
}

/* ---- the set-up ---- */

/* Reads alice's and bob's demo passwords from D/demo-credentials. */
static int demo_read_credentials(struct demo *d)
{
	char *path = xasprintf("%s/demo-credentials", d->datadir);
	FILE *f = fopen(path, "r");
	if (f == NULL && errno != ENOENT) {
		fprintf(stderr, "mailctl: demo: cannot read %s: %s\n", path, strerror(errno));
		free(path);
		return -1;
	}
	char *text = xmalloc(DEMO_MAX_CREDENTIALS + 1);
	size_t n = 0;
	if (f != NULL) {
		n = fread(text, 1, DEMO_MAX_CREDENTIALS, f);
		fclose(f);
	}
	text[n] = '\0';
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *space = strchr(line, ' ');
		if (space == NULL)
			continue;
		*space = '\0';
		if (strncmp(line, "alice@", 6) == 0 && d->alice == NULL) {
			d->alice = xstrdup(line);
			d->alice_password = xstrdup(space + 1);
		} else if (strncmp(line, "bob@", 4) == 0 && d->bob == NULL) {
			d->bob = xstrdup(line);
			d->bob_password = xstrdup(space + 1);
		}
	}
	free(text);
	if (d->alice == NULL || d->bob == NULL) {
		fprintf(stderr,
			"mailctl: demo: %s does not hold alice's and bob's passwords "
			"(the users were made without --demo, or their passwords were changed): "
			"use a data directory made with `mailctl init --demo`\n",
			path);
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

/* Loads the config: where to connect, which certificate to trust. */
static int demo_load_config(struct demo *d)
{
	if (ctl_load_config(d->datadir, &d->cfg) < 0)
		return -1;
	d->port_base = config_int(d->cfg, "server.port_base");
	const char *listen = config_str(d->cfg, "server.listen");
	size_t skip = strspn(listen, " \t");
	size_t len = strcspn(listen + skip, ", \t");
	char *first = xstrndup(listen + skip, len);
	if (len == 0 || strcmp(first, "0.0.0.0") == 0 || strcmp(first, "*") == 0) {
		free(first);
		first = xstrdup("127.0.0.1");
	} else if (strcmp(first, "::") == 0) {
		free(first);
		first = xstrdup("::1");
	}
	d->connect_host = first;
	d->host = strchr(first, ':') != NULL ? xasprintf("[%s]", first) : xstrdup(first);
	d->cert = config_path_in_datadir(d->cfg, "server.tls_cert");
	return 0;
}

/* Starts `mailctl up` in its own session, logging to D/log/demo-up.log. */
static int demo_start_stack(struct demo *d)
{
	char *log_dir = xasprintf("%s/log", d->datadir);
	if (mkdir(log_dir, 0755) == 0)
		ctl_match_owner(d->datadir, log_dir);
	char *log_path = xasprintf("%s/demo-up.log", log_dir);
	free(log_dir);
	char *mailctl = ctl_bin_path("mailctl");
	printf("\n$ mailctl up > %s 2>&1 &\n", log_path);
	fflush(stdout);
	const char *argv[] = {mailctl, "--dir", d->datadir, "up", NULL};
	pid_t pid = ctl_spawn_logged(log_path, argv);
	free(mailctl);
	if (pid < 0) {
		fprintf(stderr, "mailctl: fork: %s\n", strerror(errno));
		free(log_path);
		return -1;
	}
	for (long waited = 0; waited < DEMO_START_TIMEOUT_MS; waited += DEMO_POLL_MS) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "mailctl: demo: `mailctl up` stopped; its log, %s, says why\n",
				log_path);
			free(log_path);
			return -1;
		}
		if (demo_stack_ready(d)) {
			d->up_pid = pid;
			printf("The stack is up (mailctl up runs as pid %d; it keeps running after the "
			       "demo: stop it with `kill %d`).\n",
			       (int)pid, (int)pid);
			free(log_path);
			return 0;
		}
		ctl_sleep_ms(DEMO_POLL_MS);
	}
	fprintf(stderr, "mailctl: demo: the stack did not answer within %d s (see %s)\n",
		DEMO_START_TIMEOUT_MS / 1000, log_path);
	kill(pid, SIGTERM);
	free(log_path);
	return -1;
}

/* ---- the steps ---- */

/* Step 1: initialises the data directory if needed and starts the stack. */
static int step_stack(struct demo *d)
{
	char *conf = xasprintf("%s/mailstack.conf", d->datadir);
	bool fresh = access(conf, F_OK) < 0;
	free(conf);
	char *creds = xasprintf("%s/demo-credentials", d->datadir);
	bool no_credentials = access(creds, F_OK) < 0;
	free(creds);
	if (fresh || no_credentials) {
		char *command = d->init_port_base != NULL
					? xasprintf("mailctl init --demo --port-base %s", d->init_port_base)
					: xstrdup("mailctl init --demo");
		int rc = demo_run_ok(d, command);
		free(command);
		if (rc < 0)
			return -1;
	}
	if (demo_read_credentials(d) < 0 || demo_load_config(d) < 0)
		return -1;
	if (demo_stack_ready(d)) {
		return demo_run(d, "mailctl status") < 0 ? -1 : 0;
	}
	printf("\nNothing answers on the submission, IMAP and POP3 ports yet: starting the "
	       "stack.\n");
	if (demo_start_stack(d) < 0)
		return -1;
	return demo_run(d, "mailctl status") < 0 ? -1 : 0;
}

/* Writes the message the demo sends, with a Message-ID of its own. */
static int step_message(struct demo *d)
{
	d->message_path = xasprintf("%s/demo-message.eml", d->datadir);
	d->message_id = xasprintf("<demo.%lld.%d@%s>", (long long)time(NULL), (int)getpid(),
				  strchr(d->alice, '@') + 1);
	FILE *f = fopen(d->message_path, "w");
	if (f == NULL) {
		fprintf(stderr, "mailctl: demo: cannot write %s: %s\n", d->message_path,
			strerror(errno));
		return -1;
	}
	fprintf(f,
		"From: Alice <%s>\r\n"
		"To: Bob <%s>\r\n"
		"Subject: Hello Bob, this is the mailstack demo\r\n"
		"Message-ID: %s\r\n"
		"\r\n"
		"Hi Bob,\r\n"
		"\r\n"
		"this message travels over SMTP submission, waits in the queue, goes\r\n"
		"over LMTP into your SQLite mailbox, and you read it over IMAP and POP3.\r\n"
		"\r\n"
		"Alice\r\n",
		d->alice, d->bob, d->message_id);
	if (fclose(f) != 0) {
		fprintf(stderr, "mailctl: demo: cannot write %s\n", d->message_path);
		return -1;
	}
	ctl_match_owner(d->datadir, d->message_path);
	char *command = xasprintf("cat %s", d->message_path);
	int rc = demo_run_ok(d, command);
	free(command);
	return rc;
}

/* Submits the message with curl over SMTP with STARTTLS and AUTH. */
static int step_submit(struct demo *d)
{
	int rc = demo_run(d,
			  "curl -sS --ssl-reqd smtp://%s:%lld --mail-from %s --mail-rcpt %s "
			  "--user '%s:%s' --cacert %s -T %s",
			  d->host, (long long)(d->port_base + 587), d->alice, d->bob, d->alice,
			  d->alice_password, d->cert, d->message_path);
	if (rc != 0) {
		fprintf(stderr, "mailctl: demo: curl could not send the message (exit status %d)\n",
			rc);
		return -1;
	}
	printf("(curl says nothing when all went well: the mta answered 250.)\n");
	return 0;
}

/* Shows the mta's side of that SMTP conversation. */
static int step_smtp_transcript(struct demo *d)
{
	if (demo_run_ok(d, "mailctl transcript --proto smtp --comp mta --last") < 0)
		return -1;
	const char *text = buf_cstr(&d->output);
	const char *queued = NULL;
	for (const char *p = strstr(text, "queued as "); p != NULL; p = strstr(p + 1, "queued as "))
		queued = p + strlen("queued as ");
	if (queued == NULL || strspn(queued, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") <
				      LIFECYCLE_ID_LEN) {
		fprintf(stderr, "mailctl: demo: no \"250 ... queued as ID\" in the transcript\n");
		return -1;
	}
	d->id = xstrndup(queued, LIFECYCLE_ID_LEN);
	printf("\nThe lifecycle id of the message is %s: every component logs it.\n", d->id);
	return 0;
}

/* Shows the queue while the message passes through it. */
static int step_queue(struct demo *d)
{
	if (demo_run_ok(d, "mailctl queue") < 0)
		return -1;
	printf("(The queue is most likely empty again already: delivery took milliseconds. "
	       "Its story is in the events:)\n");
	/* The whole hand-over, so the events below include the attempt. */
	if (!demo_wait_event(d, "removed", "mta", NULL, NULL) &&
	    !demo_find_event(d, "delivered", "mta", NULL, NULL))
		return -1;
	char *command = xasprintf("mailctl trace --comp mta %s", d->id);
	int rc = demo_run_ok(d, command);
	free(command);
	return rc;
}

/* Waits for the LMTP delivery and shows its transcript. */
static int step_lmtp(struct demo *d)
{
	if (!demo_wait_event(d, "delivered", "mda", "uid", &d->bob_uid))
		return -1;
	return demo_run_ok(d, "mailctl transcript --proto lmtp --comp mda --last");
}

/* Shows the message's row in bob's SQLite mailbox. */
static int step_mailbox(struct demo *d)
{
	return demo_run(d,
			"sqlite3 -readonly -header -column -cmd \"$(mailctl views)\" "
			"\"$(mailctl views --path %s)\" "
			"\"SELECT folder, uid, lifecycle_id, flags, size, arrived_utc, subject "
			"FROM message_list WHERE lifecycle_id = '%s'\"",
			d->bob, d->id) == 0
		       ? 0
		       : -1;
}

/* Reads the message back over IMAP with curl. */
static int step_imap(struct demo *d)
{
	if (d->bob_uid == NULL) {
		fprintf(stderr, "mailctl: demo: the mda did not say which UID it gave\n");
		return -1;
	}
	char *command = xasprintf("curl -sS --ssl-reqd 'imap://%s:%lld/INBOX;UID=%s' "
				  "--user '%s:%s' --cacert %s",
				  d->host, (long long)(d->port_base + 143), d->bob_uid, d->bob,
				  d->bob_password, d->cert);
	int rc = demo_run_ok(d, command);
	free(command);
	return rc;
}

/* Lists and reads the message over POP3 with curl. */
static int step_pop3(struct demo *d)
{
	char *url = xasprintf("pop3://%s:%lld", d->host, (long long)(d->port_base + 110));
	char *command = xasprintf("curl -sS --ssl-reqd %s/ --user '%s:%s' --cacert %s", url,
				  d->bob, d->bob_password, d->cert);
	int rc = demo_run_ok(d, command);
	free(command);
	/* LIST: "N SIZE" lines; the newest message is the last one. */
	long number = 0;
	const char *text = buf_cstr(&d->output);
	for (const char *line = text; rc == 0 && *line != '\0';) {
		long n = strtol(line, NULL, 10);
		if (n > 0)
			number = n;
		const char *next = strchr(line, '\n');
		line = next != NULL ? next + 1 : line + strlen(line);
	}
	if (rc == 0 && number == 0) {
		fprintf(stderr, "mailctl: demo: bob's POP3 maildrop lists no message\n");
		rc = -1;
	}
	if (rc == 0) {
		printf("(The newest message is the last one listed: number %ld.)\n", number);
		command = xasprintf("curl -sS --ssl-reqd %s/%ld --user '%s:%s' --cacert %s", url,
				    number, d->bob, d->bob_password, d->cert);
		rc = demo_run_ok(d, command);
		free(command);
	}
	free(url);
	return rc;
}

/* Shows the message's whole journey with mailctl trace. */
static int step_trace(struct demo *d)
{
	/* The readers' events are written as they read: wait for both. */
	if (!demo_wait_event(d, "fetched", NULL, NULL, NULL) ||
	    !demo_wait_event(d, "retrieved", NULL, NULL, NULL))
		return -1;
	char *command = xasprintf("mailctl trace %s", d->id);
	int rc = demo_run_ok(d, command);
	free(command);
	return rc;
}

static const struct demo_step demo_steps[] = {
	{"The stack",
	 "mailstack is four daemons: the mta (SMTP), the mda (LMTP into SQLite\n"
	 "mailboxes), imapd and pop3d. The demo uses the data directory below and\n"
	 "its demo users alice and bob.",
	 step_stack},
	{"Alice writes a message",
	 "A message is a header (From, To, Subject, Message-ID ...) and a body,\n"
	 "separated by an empty line (RFC 5322).",
	 step_message},
	{"Alice sends it over submission (port 587)",
	 "curl's SMTP client connects to the submission port, upgrades the connection\n"
	 "with STARTTLS, authenticates as alice (AUTH), then sends the envelope\n"
	 "(MAIL FROM, RCPT TO) and the message (DATA).",
	 step_submit},
	{"The SMTP conversation, as the mta saw it",
	 "Every line each side sent, with the session's TLS state. The AUTH\n"
	 "payload is masked: secrets never reach a log. The 250 reply at the end\n"
	 "is sent only once the message is safely on disk in the queue.",
	 step_smtp_transcript},
	{"The queue",
	 "The mta keeps the message in queue.sqlite until every recipient is done,\n"
	 "then hands it to the mda over LMTP.",
	 step_queue},
	{"The LMTP conversation, as the mda saw it",
	 "LMTP (RFC 2033) is SMTP for the last hop: one reply per recipient after\n"
	 "the data, so each mailbox succeeds or fails on its own.",
	 step_lmtp},
	{"The row in bob's SQLite mailbox",
	 "Each user has one SQLite file. `mailctl views` gives read-only views with\n"
	 "readable columns; sqlite3 -readonly guarantees we change nothing.",
	 step_mailbox},
	{"Bob reads it over IMAP (port 143, STARTTLS)",
	 "IMAP leaves mail on the server, in folders, with flags: fetching it sets\n"
	 "\\Seen.",
	 step_imap},
	{"Bob reads it again over POP3 (port 110, STLS)",
	 "POP3 sees the inbox as a numbered list to download: LIST, then RETR.",
	 step_pop3},
	{"The whole journey",
	 "`mailctl trace ID` puts every component's events for this message on one\n"
	 "timeline.",
	 step_trace},
};

/* Waits for Enter when stdin is a terminal and pausing is on. */
static void demo_pause(const struct demo *d)
{
	if (!d->pause || !isatty(STDIN_FILENO))
		return;
	printf("\n-- press Enter to continue --");
	fflush(stdout);
	int ch;
	while ((ch = getchar()) != EOF && ch != '\n')
		;
}

/* Frees what the demo holds (the stack it started keeps running). */
static void demo_free(struct demo *d)
{
	config_free(&d->cfg);
	free(d->host);
	free(d->connect_host);
	free(d->cert);
	free(d->alice);
	free(d->alice_password);
	free(d->bob);
	free(d->bob_password);
	free(d->message_path);
	free(d->message_id);
	free(d->id);
	free(d->bob_uid);
	buf_free(&d->output);
}

static void demo_usage(FILE *out)
{
	fputs("usage: mailctl demo [--no-pause] [--port-base N]\n"
	      "  runs one message's whole lifecycle, narrated: alice sends bob a message over\n"
	      "  submission (STARTTLS, AUTH), then the SMTP transcript, the queue, LMTP, bob's\n"
	      "  SQLite mailbox, IMAP, POP3 and the trace. Starts the stack when it is not\n"
	      "  running (`mailctl up` in the background). Pauses between steps on a\n"
	      "  terminal; --no-pause runs straight through. A new data directory is made\n"
	      "  with `mailctl init --demo` (--port-base N: on other ports than 10000+).\n",
	      out);
}

int cmd_demo(int argc, char **argv, const char *datadir)
{
	struct demo d = {.datadir = datadir, .pause = true, .output = BUF_INIT};
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-pause") == 0) {
			d.pause = false;
		} else if (strcmp(argv[i], "--port-base") == 0 && i + 1 < argc &&
			   argv[i + 1][0] != '\0' &&
			   strspn(argv[i + 1], "0123456789") == strlen(argv[i + 1])) {
			d.init_port_base = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			demo_usage(stdout);
			return 0;
		} else {
			demo_usage(stderr);
			return 1;
		}
	}
	/* The commands shown are the ones a student types: `mailctl` is this
	 * program (./mailstack runs it too), acting on this data directory. */
	char *self = ctl_bin_path("mailctl");
	char *slash = strrchr(self, '/');
	if (slash != NULL)
		*slash = '\0';
	const char *old_path = getenv("PATH");
	char *path = xasprintf("%s:%s", self, old_path != NULL ? old_path : "/usr/bin:/bin");
	setenv("PATH", path, 1);
	setenv("MAILSTACK_DIR", datadir, 1);
	free(path);
	printf("mailstack demo: the life of one message\n"
	       "data directory %s (MAILSTACK_DIR); mailctl is %s/mailctl "
	       "(./mailstack COMMAND runs `mailctl COMMAND`)\n",
	       datadir, self);
	free(self);

	size_t count = sizeof(demo_steps) / sizeof(demo_steps[0]);
	int rc = 0;
	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			demo_pause(&d);
		printf("\n== Step %zu/%zu: %s ==\n%s\n", i + 1, count, demo_steps[i].title,
		       demo_steps[i].story);
		fflush(stdout);
		if (demo_steps[i].run(&d) < 0) {
			fprintf(stderr, "mailctl: demo stopped at step %zu (%s)\n", i + 1,
				demo_steps[i].title);
			rc = 1;
			break;
		}
	}
	if (rc == 0)
		printf("\nThat was the whole lifecycle of message %s. Try the labs next: labs/README.md\n",
		       d.id);
	if (d.up_pid > 0)
		printf("The stack started by the demo is still running: stop it with `kill %d`.\n",
		       (int)d.up_pid);
	demo_free(&d);
	return rc;
}
