/* up.c: `mailctl up` (start and supervise the daemons) and `mailctl status`.
 *
 * `up` runs mda, mta, pop3d and imapd from the directory mailctl lives in,
 * each with --dir D, on one libuv loop: uv_spawn for the children (their
 * standard error comes back through a pipe, is passed on line by line, and
 * the last line is kept to explain a failed start), uv_signal for SIGINT and
 * SIGTERM, uv_timer for readiness polls, restart backoff and the stop grace.
 *
 * The supervisor's states (up_enter logs each change):
 *
 *   STARTING --all children listen--> RUNNING --SIGINT/SIGTERM--> STOPPING --> DONE
 *      |                                                            ^
 *      +--a child fails its first start, or SIGINT/SIGTERM----------+
 *
 * A child's states (child_enter logs each change):
 *
 *   STARTING --its ports answer--> RUNNING --it dies--> BACKOFF --timer--> STARTING
 *   STARTING --it dies--> BACKOFF (or, on the very first start: the whole
 *                         stack stops and `up` exits 1 with the child's error)
 *   any --stop--> STOPPING --it dies--> STOPPED
 *
 * A child is dead once both its exit status and the end of its stderr pipe
 * have arrived (so its last words are read before we judge it); its handles
 * are closed then, and re-initialised by the next spawn, which is at least
 * UP_BACKOFF_FIRST_S later. Backoff doubles from 1 s to 30 s and starts over
 * when a child had stayed up for UP_BACKOFF_RESET_S.
 *
 * Invariant: at most one process per daemon; `up` exits only after every
 * child has been reaped. D/run/mailctl.pid holds our pid while we run. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "buffer.h"
#include "config.h"
#include "ctl.h"
#include "fault.h"
#include "log.h"
#include "queue.h"

#define UP_READY_POLL_MS 100
#define UP_READY_TIMEOUT_MS 30000
#define UP_CONNECT_TIMEOUT_MS 200
#define UP_STOP_GRACE_MS 10000
#define UP_STDERR_GRACE_MS 1000
#define UP_BACKOFF_FIRST_S 1
#define UP_BACKOFF_MAX_S 30
#define UP_BACKOFF_RESET_S 60
#define UP_STDERR_LINE_MAX 8192
#define UP_MAX_PORTS 4
#define UP_MAX_LISTEN_ADDRS 8

/* What each daemon serves; the mda's LMTP socket is added from the config. */
struct up_port_spec {
	const char *proto;
	int standard_port;
	const char *tls;
};

struct up_daemon_spec {
	const char *name;
	struct up_port_spec ports[UP_MAX_PORTS];
};

/* In start order: the mda first, since the mta delivers to it. */
static const struct up_daemon_spec up_daemons[] = {
	{"mda", {{NULL, 0, NULL}}},
	{"mta",
	 {{"smtp", 25, "STARTTLS"}, {"submission", 587, "STARTTLS"}, {"smtps", 465, "implicit"}}},
	{"pop3d", {{"pop3", 110, "STARTTLS (STLS)"}, {"pop3s", 995, "implicit"}}},
	{"imapd", {{"imap", 143, "STARTTLS"}, {"imaps", 993, "implicit"}}},
};
#define UP_DAEMON_COUNT (sizeof(up_daemons) / sizeof(up_daemons[0]))

/* One place a daemon listens. */
struct up_endpoint {
	const char *proto;
	char *listen_addr;  /* as configured, NULL for a unix socket */
	char *connect_addr; /* where to test it: a wildcard becomes loopback */
	int port;
	char *path;         /* unix socket */
	const char *tls;
	bool optional;      /* shown, not waited for */
	bool foreign;       /* answered before we started anything: another program */
};

enum child_state {
	CHILD_IDLE,
	CHILD_STARTING,
	CHILD_RUNNING,
	CHILD_BACKOFF,
	CHILD_STOPPING,
	CHILD_STOPPED,
};
static const char *const child_state_names[] = {"idle", "starting", "running",
						"backoff", "stopping", "stopped"};

enum up_state { UP_STARTING, UP_RUNNING, UP_STOPPING, UP_DONE };
static const char *const up_state_names[] = {"starting", "running", "stopping", "done"};

struct supervisor;

struct child {
	struct supervisor *sup;
	const char *name;
	char *bin;
	enum child_state state;
	struct up_endpoint *endpoints;
	size_t endpoint_count;

	uv_process_t process;
	uv_pipe_t err_pipe;
	uv_timer_t timer; /* readiness polls, stderr grace, backoff */
	bool process_open, pipe_open;

	int pid;
	bool exited, stderr_done;
	int64_t exit_status;
	int term_signal;
	buf_t line;
	char *last_line;

	uint64_t started_ms;
	unsigned backoff_s;
	unsigned restarts;
	bool ever_ready;
};

struct supervisor {
	enum up_state state;
	uv_loop_t loop;
	config *cfg;
	const char *datadir;
	char *pid_path;
	struct child children[UP_DAEMON_COUNT];
	uv_signal_t sigint, sigterm;
	uv_timer_t kill_timer;
	uv_timer_t prune_timer;  /* prunes old lifecycle events, hourly */
	uv_work_t prune_work;
	bool pruning;
	int exit_status;
	char *failure; /* why the stack could not start: repeated as the last line */
};

static void child_spawn(struct child *ch);
static void child_on_backoff_done(uv_timer_t *timer);
static void up_stop(struct supervisor *sup);

/* ---- endpoints ---- */

/* Splits the comma-separated server.listen into trimmed addresses. */
static size_t up_listen_addrs(const config *cfg, char *addrs[UP_MAX_LISTEN_ADDRS])
{
	char *copy = xstrdup(config_str(cfg, "server.listen"));
	size_t count = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL && count < UP_MAX_LISTEN_ADDRS;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		size_t len = strlen(tok);
		while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
			tok[--len] = '\0';
		if (len > 0)
			addrs[count++] = xstrdup(tok);
	}
	free(copy);
	return count;
}

/* Adds a TCP endpoint for every listen address. */
static void up_endpoints_add_tcp(struct child *ch, char **addrs, size_t addr_count,
				 const char *proto, int port, const char *tls, bool optional)
{
	for (size_t i = 0; i < addr_count; i++) {
		ch->endpoints = xrealloc(ch->endpoints,
					 (ch->endpoint_count + 1) * sizeof(*ch->endpoints));
		struct up_endpoint *ep = &ch->endpoints[ch->endpoint_count++];
		memset(ep, 0, sizeof(*ep));
		ep->proto = proto;
		ep->listen_addr = xstrdup(addrs[i]);
		if (strcmp(addrs[i], "0.0.0.0") == 0)
			ep->connect_addr = xstrdup("127.0.0.1");
		else if (strcmp(addrs[i], "::") == 0)
			ep->connect_addr = xstrdup("::1");
		else
			ep->connect_addr = xstrdup(addrs[i]);
		ep->port = port;
		ep->tls = tls;
		ep->optional = optional;
	}
}

/* Fills each child's endpoints from the config. */
static void up_endpoints_build(struct child *children, const config *cfg)
{
	char *addrs[UP_MAX_LISTEN_ADDRS];
	size_t addr_count = up_listen_addrs(cfg, addrs);
	int64_t base = config_int(cfg, "server.port_base");
	for (size_t d = 0; d < UP_DAEMON_COUNT; d++) {
		struct child *ch = &children[d];
		const struct up_daemon_spec *spec = &up_daemons[d];
		if (strcmp(spec->name, "mda") == 0) {
			ch->endpoints = xcalloc(1, sizeof(*ch->endpoints));
			ch->endpoint_count = 1;
			ch->endpoints[0].proto = "lmtp";
			ch->endpoints[0].path = config_path_in_datadir(cfg, "lmtp.socket");
			ch->endpoints[0].tls = "none";
			int64_t lmtp_port = config_int(cfg, "lmtp.tcp_port");
			if (lmtp_port > 0)
				up_endpoints_add_tcp(ch, addrs, addr_count, "lmtp", (int)lmtp_port,
						     "none", true);
		}
		for (size_t p = 0; p < UP_MAX_PORTS && spec->ports[p].proto != NULL; p++)
			up_endpoints_add_tcp(ch, addrs, addr_count, spec->ports[p].proto,
					     (int)(base + spec->ports[p].standard_port),
					     spec->ports[p].tls, false);
	}
	for (size_t i = 0; i < addr_count; i++)
		free(addrs[i]);
}

/* Frees the endpoints a daemon's readiness is checked on. */
static void up_endpoints_free(struct child *ch)
{
	for (size_t i = 0; i < ch->endpoint_count; i++) {
		free(ch->endpoints[i].listen_addr);
		free(ch->endpoints[i].connect_addr);
		free(ch->endpoints[i].path);
	}
	free(ch->endpoints);
	ch->endpoints = NULL;
	ch->endpoint_count = 0;
}

/* "127.0.0.1:10025", "[::1]:10025" or the socket path (caller frees). */
static char *up_endpoint_text(const struct up_endpoint *ep)
{
	if (ep->path != NULL)
		return xstrdup(ep->path);
	if (strchr(ep->listen_addr, ':') != NULL)
		return xasprintf("[%s]:%d", ep->listen_addr, ep->port);
	return xasprintf("%s:%d", ep->listen_addr, ep->port);
}

/* Waits up to UP_CONNECT_TIMEOUT_MS for a non-blocking connect to finish. */
static bool up_connect_finish(int fd, int rc)
{
	if (rc == 0)
		return true;
	if (errno != EINPROGRESS)
		return false;
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	if (poll(&pfd, 1, UP_CONNECT_TIMEOUT_MS) != 1)
		return false;
	int err = 0;
	socklen_t len = sizeof(err);
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

/* True when something accepts connections at the endpoint. */
static bool up_endpoint_answers(const struct up_endpoint *ep)
{
	bool ok = false;
	if (ep->path != NULL) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (strlen(ep->path) >= sizeof(sun.sun_path))
			return false;
		memcpy(sun.sun_path, ep->path, strlen(ep->path) + 1);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return false;
		ok = up_connect_finish(fd, connect(fd, (struct sockaddr *)&sun, sizeof(sun)));
		close(fd);
		return ok;
	}
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", ep->port);
	if (getaddrinfo(ep->connect_addr, port, &hints, &res) != 0)
		return false;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0) {
		ok = up_connect_finish(fd, connect(fd, res->ai_addr, res->ai_addrlen));
		close(fd);
	}
	freeaddrinfo(res);
	return ok;
}

/* Prints the table of what listens where. */
static void up_print_table(FILE *out, const struct child *children)
{
	fprintf(out, "%-7s %-11s %-40s %s\n", "DAEMON", "PROTOCOL", "LISTENS ON", "TLS");
	for (size_t d = 0; d < UP_DAEMON_COUNT; d++) {
		for (size_t i = 0; i < children[d].endpoint_count; i++) {
			const struct up_endpoint *ep = &children[d].endpoints[i];
			char *where = up_endpoint_text(ep);
			fprintf(out, "%-7s %-11s %-40s %s\n", children[d].name, ep->proto, where,
				ep->tls);
			free(where);
		}
	}
	fflush(out);
}

/* ---- pid files ---- */

/* Reads a pid file; 0 when missing or unreadable. */
static int up_pid_read(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	long pid = 0;
	if (fscanf(f, "%ld", &pid) != 1 || pid <= 0 || pid > INT32_MAX)
		pid = 0;
	fclose(f);
	return (int)pid;
}

/* True when pid is alive and its command name is name (not a reused pid). */
static bool up_pid_is(int pid, const char *name)
{
	if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM))
		return false;
	char path[64], comm[64] = "";
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return true;
	if (fgets(comm, sizeof(comm), f) == NULL)
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	/* The kernel keeps 15 characters of the name. */
	return strncmp(comm, name, 15) == 0;
}

/* ---- state transitions ---- */

/* The one way to change the supervisor's state: logs old -> new. */
static void up_enter(struct supervisor *sup, enum up_state state)
{
	log_kv(LOG_DEBUG, 0, "supervisor state", "from", up_state_names[sup->state], "to",
	       up_state_names[state], NULL);
	sup->state = state;
}

/* The one way to change a daemon's state: logs old -> new. */
static void child_enter(struct child *ch, enum child_state state)
{
	log_kv(LOG_DEBUG, 0, "daemon state", "daemon", ch->name, "from",
	       child_state_names[ch->state], "to", child_state_names[state], NULL);
	ch->state = state;
}

/* "status 1" or "signal 9 (SIGKILL)" for the child's last exit. */
static char *child_exit_text(const struct child *ch)
{
	if (ch->term_signal != 0) {
		const char *abbrev = sigabbrev_np(ch->term_signal);
		return xasprintf("killed by signal %d (SIG%s)", ch->term_signal,
				 abbrev != NULL ? abbrev : "?");
	}
	return xasprintf("exit status %lld", (long long)ch->exit_status);
}

/* ---- the supervisor ---- */

/* Close callback for handles embedded in the supervisor: nothing to free. */
static void up_on_handle_closed(uv_handle_t *handle)
{
	(void)handle;
}

/* ---- pruning lifecycle events (log.event_retention) ---- */

#define UP_PRUNE_FIRST_MS (10 * 1000)
#define UP_PRUNE_EVERY_MS (60 * 60 * 1000)

/* On the thread pool: drops lifecycle events older than log.event_retention. */
static void up_prune_run(uv_work_t *work)
{
	struct supervisor *sup = work->data;
	char *log_dir = xasprintf("%s/log", sup->datadir);
	static const struct {
		const char *file;
		const char *key;
	} logs[] = {
		{"events.log", "log.event_retention"},
		{"transcript.log", "log.transcript_retention"},
	};
	for (size_t i = 0; i < sizeof(logs) / sizeof(logs[0]); i++) {
		size_t removed = 0;
		char *err = NULL;
		if (log_prune_file(log_dir, logs[i].file, config_int(sup->cfg, logs[i].key), 1500,
				   &removed, &err) < 0) {
			log_kv(LOG_WARN, 0, "pruning a log failed", "file", logs[i].file, "error", err,
			       NULL);
			free(err);
		} else if (removed > 0) {
			char count[32];
			snprintf(count, sizeof(count), "%zu", removed);
			log_kv(LOG_INFO, 0, "pruned old log lines", "file", logs[i].file, "removed",
			       count, NULL);
		}
	}
	free(log_dir);
}

/* Back on the loop: the next tick may prune again. */
static void up_prune_done(uv_work_t *work, int status)
{
	struct supervisor *sup = work->data;
	sup->pruning = false;
}

/* The prune timer: starts a pruning unless one runs or we are stopping. */
static void up_prune_tick(uv_timer_t *timer)
{
	struct supervisor *sup = timer->data;
	if (sup->pruning || sup->state == UP_DONE)
		return;
	sup->pruning = true;
	sup->prune_work.data = sup;
	uv_queue_work(&sup->loop, &sup->prune_work, up_prune_run, up_prune_done);
}

/* Everything is down: close the supervisor's own handles so the loop ends. */
static void up_finish(struct supervisor *sup)
{
	up_enter(sup, UP_DONE);
	uv_close((uv_handle_t *)&sup->prune_timer, up_on_handle_closed);
	uv_close((uv_handle_t *)&sup->sigint, up_on_handle_closed);
	uv_close((uv_handle_t *)&sup->sigterm, up_on_handle_closed);
	uv_close((uv_handle_t *)&sup->kill_timer, up_on_handle_closed);
	for (size_t i = 0; i < UP_DAEMON_COUNT; i++)
		uv_close((uv_handle_t *)&sup->children[i].timer, up_on_handle_closed);
}

/* While stopping: finishes when no child is left. */
static void up_check_stopped(struct supervisor *sup)
{
	if (sup->state != UP_STOPPING)
		return;
	for (size_t i = 0; i < UP_DAEMON_COUNT; i++) {
		enum child_state s = sup->children[i].state;
		if (s != CHILD_STOPPED && s != CHILD_IDLE)
			return;
	}
	log_kv(LOG_INFO, 0, "all daemons stopped", NULL);
	up_finish(sup);
}

/* The stop grace ran out: kill what is left. */
static void up_on_kill_timer(uv_timer_t *timer)
{
	struct supervisor *sup = timer->data;
	for (size_t i = 0; i < UP_DAEMON_COUNT; i++) {
		struct child *ch = &sup->children[i];
		if (ch->state == CHILD_STOPPING && !ch->exited) {
			log_kv(LOG_WARN, 0, "daemon ignored SIGTERM; sending SIGKILL", "daemon",
			       ch->name, NULL);
			uv_process_kill(&ch->process, SIGKILL);
		}
	}
}

/* Stops every child: SIGTERM now, SIGKILL after UP_STOP_GRACE_MS. */
static void up_stop(struct supervisor *sup)
{
	if (sup->state == UP_STOPPING || sup->state == UP_DONE)
		return;
	up_enter(sup, UP_STOPPING);
	for (size_t i = 0; i < UP_DAEMON_COUNT; i++) {
		struct child *ch = &sup->children[i];
		switch (ch->state) {
		case CHILD_STARTING:
		case CHILD_RUNNING:
			child_enter(ch, CHILD_STOPPING);
			/* An exited child's timer waits for its stderr: leave it. */
			if (!ch->exited) {
				uv_timer_stop(&ch->timer);
				uv_process_kill(&ch->process, SIGTERM);
			}
			break;
		case CHILD_BACKOFF:
			/* Already dead and reaped: only the restart timer is left. */
			uv_timer_stop(&ch->timer);
			child_enter(ch, CHILD_STOPPED);
			break;
		case CHILD_IDLE:
		case CHILD_STOPPING:
		case CHILD_STOPPED:
			break;
		}
	}
	uv_timer_start(&sup->kill_timer, up_on_kill_timer, UP_STOP_GRACE_MS, 0);
	up_check_stopped(sup);
}

/* SIGINT/SIGTERM: stops the daemons gracefully; a second one kills at once. */
static void up_on_signal(uv_signal_t *handle, int signum)
{
	struct supervisor *sup = handle->data;
	if (sup->state == UP_STOPPING) {
		/* A second Ctrl-C: do not wait for the grace period. */
		up_on_kill_timer(&sup->kill_timer);
		return;
	}
	log_kv(LOG_INFO, 0, "stopping the daemons", "signal", sigabbrev_np(signum), NULL);
	up_stop(sup);
}

/* Every child listens: show the table. */
static void up_check_all_running(struct supervisor *sup)
{
	if (sup->state != UP_STARTING)
		return;
	for (size_t i = 0; i < UP_DAEMON_COUNT; i++) {
		if (sup->children[i].state != CHILD_RUNNING)
			return;
	}
	up_enter(sup, UP_RUNNING);
	up_print_table(stdout, sup->children);
	printf("mailstack is up (data directory %s); Ctrl-C stops it.\n", sup->datadir);
	fflush(stdout);
}

/* A child failed before it ever listened while the stack was starting. */
static void up_fail_start(struct supervisor *sup, struct child *ch, const char *why)
{
	free(sup->failure);
	sup->failure = xasprintf("mailctl: %s could not start (%s)%s%s", ch->name, why,
				 ch->last_line != NULL ? ": " : "",
				 ch->last_line != NULL ? ch->last_line : "");
	fprintf(stderr, "%s\n", sup->failure);
	sup->exit_status = 1;
	up_stop(sup);
}

/* ---- one child ---- */

/* Handles a dead child (exit seen and stderr drained): restart, or account. */
static void child_on_dead(struct child *ch)
{
	struct supervisor *sup = ch->sup;
	uv_timer_stop(&ch->timer);
	char *how = child_exit_text(ch);
	if (ch->state == CHILD_STOPPING || sup->state == UP_STOPPING ||
	    sup->state == UP_DONE) {
		log_kv(LOG_INFO, 0, "daemon stopped", "daemon", ch->name, "how", how, NULL);
		child_enter(ch, CHILD_STOPPED);
		free(how);
		up_check_stopped(sup);
		return;
	}
	if (!ch->ever_ready && sup->state == UP_STARTING) {
		child_enter(ch, CHILD_STOPPED);
		up_fail_start(sup, ch, how);
		free(how);
		return;
	}
	uint64_t uptime_s = (uv_now(&sup->loop) - ch->started_ms) / 1000;
	if (uptime_s >= UP_BACKOFF_RESET_S)
		ch->backoff_s = UP_BACKOFF_FIRST_S;
	unsigned delay = ch->backoff_s;
	ch->backoff_s = ch->backoff_s * 2 > UP_BACKOFF_MAX_S ? UP_BACKOFF_MAX_S : ch->backoff_s * 2;
	char pid[16], uptime[32], restart_in[16];
	snprintf(pid, sizeof(pid), "%d", ch->pid);
	snprintf(uptime, sizeof(uptime), "%llus", (unsigned long long)uptime_s);
	snprintf(restart_in, sizeof(restart_in), "%us", delay);
	log_kv(LOG_WARN, 0, "daemon died; restarting", "daemon", ch->name, "pid", pid, "how", how,
	       "uptime", uptime, "restart_in", restart_in, "last_line", ch->last_line, NULL);
	free(how);
	child_enter(ch, CHILD_BACKOFF);
	uv_timer_start(&ch->timer, child_on_backoff_done, (uint64_t)delay * 1000, 0);
}

/* The process and the pipe are both finished with. */
static void child_check_dead(struct child *ch)
{
	if (ch->exited && ch->stderr_done)
		child_on_dead(ch);
}

/* The daemon's process handle is closed. */
static void child_on_process_closed(uv_handle_t *handle)
{
	struct child *ch = handle->data;
	ch->process_open = false;
}

/* The daemon's stderr pipe is closed. */
static void child_on_pipe_closed(uv_handle_t *handle)
{
	struct child *ch = handle->data;
	ch->pipe_open = false;
}

/* Passes one line of the child's stderr on and keeps it as the last words. */
static void child_stderr_line(struct child *ch, const char *line, size_t len)
{
	fprintf(stderr, "%.*s\n", (int)len, line);
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len > 0) {
		free(ch->last_line);
		ch->last_line = xstrndup(line, len);
	}
}

/* Ends the stderr stream: flushes a partial line and closes the pipe. */
static void child_stderr_end(struct child *ch)
{
	if (ch->line.len > 0)
		child_stderr_line(ch, ch->line.data, ch->line.len);
	buf_reset(&ch->line);
	fflush(stderr);
	if (!uv_is_closing((uv_handle_t *)&ch->err_pipe))
		uv_close((uv_handle_t *)&ch->err_pipe, child_on_pipe_closed);
	ch->stderr_done = true;
}

/* Read buffer for stderr: one static chunk, used before the next read. */
static void child_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out)
{
	(void)suggested;
	static char chunk[4096];
	(void)handle;
	*out = uv_buf_init(chunk, sizeof(chunk));
}

/* Splits a daemon's stderr into bounded lines and passes them on. */
static void child_on_stderr(uv_stream_t *stream, ssize_t nread, const uv_buf_t *data)
{
	struct child *ch = stream->data;
	if (nread < 0) {
		child_stderr_end(ch);
		child_check_dead(ch);
		return;
	}
	const char *p = data->base, *end = data->base + nread;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t take = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		/* A line is never buffered past the limit: the excess is passed
		 * on as a line of its own. */
		if (ch->line.len + take > UP_STDERR_LINE_MAX) {
			child_stderr_line(ch, ch->line.data != NULL ? ch->line.data : "",
					  ch->line.len);
			buf_reset(&ch->line);
			if (take > UP_STDERR_LINE_MAX)
				take = UP_STDERR_LINE_MAX;
			nl = NULL;
		}
		buf_append(&ch->line, p, take);
		p += take;
		if (nl != NULL) {
			child_stderr_line(ch, ch->line.data, ch->line.len);
			buf_reset(&ch->line);
			p++;
		}
	}
	fflush(stderr);
}

/* The child exited but its stderr is still open (a grandchild holds it):
 * stop waiting for it. */
static void child_on_stderr_grace(uv_timer_t *timer)
{
	struct child *ch = timer->data;
	if (!ch->stderr_done) {
		child_stderr_end(ch);
		child_check_dead(ch);
	}
}

/* A daemon exited: records how, then decides once its stderr has ended. */
static void child_on_exit(uv_process_t *process, int64_t exit_status, int term_signal)
{
	struct child *ch = process->data;
	ch->exited = true;
	ch->exit_status = exit_status;
	ch->term_signal = term_signal;
	uv_close((uv_handle_t *)&ch->process, child_on_process_closed);
	if (!ch->stderr_done)
		uv_timer_start(&ch->timer, child_on_stderr_grace, UP_STDERR_GRACE_MS, 0);
	child_check_dead(ch);
}

/* Readiness poll while STARTING. */
static void child_on_ready_poll(uv_timer_t *timer)
{
	struct child *ch = timer->data;
	struct supervisor *sup = ch->sup;
	if (ch->state != CHILD_STARTING || ch->exited)
		return;
	const struct up_endpoint *waiting = NULL;
	for (size_t i = 0; i < ch->endpoint_count && waiting == NULL; i++) {
		const struct up_endpoint *ep = &ch->endpoints[i];
		if (!ep->optional && (ep->foreign || !up_endpoint_answers(ep)))
			waiting = ep;
	}
	if (waiting == NULL) {
		uv_timer_stop(&ch->timer);
		child_enter(ch, CHILD_RUNNING);
		char pid[16];
		snprintf(pid, sizeof(pid), "%d", ch->pid);
		if (ch->ever_ready) {
			char restarts[16];
			snprintf(restarts, sizeof(restarts), "%u", ch->restarts);
			log_kv(LOG_INFO, 0, "daemon restarted", "daemon", ch->name, "pid", pid,
			       "restarts", restarts, NULL);
		} else {
			log_kv(LOG_INFO, 0, "daemon listening", "daemon", ch->name, "pid", pid,
			       NULL);
		}
		ch->ever_ready = true;
		up_check_all_running(sup);
		return;
	}
	if (uv_now(&sup->loop) - ch->started_ms < UP_READY_TIMEOUT_MS)
		return;
	char *where = up_endpoint_text(waiting);
	char *why = waiting->foreign
			    ? xasprintf("%s (%s) is already in use by another program", where,
					waiting->proto)
			    : xasprintf("nothing listens on %s (%s) after %d s", where,
					waiting->proto, UP_READY_TIMEOUT_MS / 1000);
	free(where);
	if (!ch->ever_ready && sup->state == UP_STARTING) {
		uv_timer_stop(&ch->timer);
		free(sup->failure);
		sup->failure = xasprintf("mailctl: %s could not start: %s", ch->name, why);
		fprintf(stderr, "%s\n", sup->failure);
		sup->exit_status = 1;
		up_stop(sup);
	} else {
		/* A restarted daemon that hangs: kill it, the death path restarts it. */
		log_kv(LOG_WARN, 0, "daemon not ready; killing it", "daemon", ch->name, "why", why,
		       NULL);
		uv_timer_stop(&ch->timer);
		uv_process_kill(&ch->process, SIGKILL);
	}
	free(why);
}

/* Starts (or restarts) a child. */
static void child_spawn(struct child *ch)
{
	struct supervisor *sup = ch->sup;
	if (sup->state == UP_STOPPING || sup->state == UP_DONE)
		return;
	if (ch->process_open || ch->pipe_open) {
		/* The last run's handles are still closing: try again shortly. */
		uv_timer_start(&ch->timer, child_on_backoff_done, UP_READY_POLL_MS, 0);
		return;
	}
	char *args[] = {ch->bin, (char *)"--dir", (char *)sup->datadir, NULL};
	uv_stdio_container_t stdio[3];
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = STDOUT_FILENO;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&ch->err_pipe;
	uv_process_options_t opts = {
		.exit_cb = child_on_exit,
		.file = ch->bin,
		.args = args,
		.stdio_count = 3,
		.stdio = stdio,
		/* A session of its own: Ctrl-C on the terminal reaches only us,
		 * and we stop the children in order (one SIGTERM each, not a
		 * SIGINT and then a SIGTERM that a daemon takes as "stop now"). */
		.flags = UV_PROCESS_DETACHED,
	};
	uv_pipe_init(&sup->loop, &ch->err_pipe, 0);
	ch->err_pipe.data = ch;
	ch->process.data = ch;
	ch->pipe_open = ch->process_open = true;
	ch->exited = ch->stderr_done = false;
	ch->exit_status = 0;
	ch->term_signal = 0;
	free(ch->last_line);
	ch->last_line = NULL;
	buf_reset(&ch->line);
	if (ch->ever_ready)
		ch->restarts++;
	child_enter(ch, CHILD_STARTING);
	ch->started_ms = uv_now(&sup->loop);
	int rc = uv_spawn(&sup->loop, &ch->process, &opts);
	if (rc < 0) {
		uv_close((uv_handle_t *)&ch->process, child_on_process_closed);
		uv_close((uv_handle_t *)&ch->err_pipe, child_on_pipe_closed);
		ch->last_line = xasprintf("cannot run %s: %s", ch->bin, uv_strerror(rc));
		ch->exited = ch->stderr_done = true;
		ch->exit_status = 127;
		child_on_dead(ch);
		return;
	}
	ch->pid = ch->process.pid;
	uv_read_start((uv_stream_t *)&ch->err_pipe, child_on_alloc, child_on_stderr);
	uv_timer_start(&ch->timer, child_on_ready_poll, UP_READY_POLL_MS, UP_READY_POLL_MS);
}

/* The backoff is over: start the child again. */
static void child_on_backoff_done(uv_timer_t *timer)
{
	child_spawn(timer->data);
}

/* ---- the command ---- */

/* Writes our pid to D/run/mailctl.pid unless another `up` runs. */
static int up_pid_file_write(struct supervisor *sup)
{
	char *run = xasprintf("%s/run", sup->datadir);
	if (mkdir(run, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "mailctl: cannot create %s: %s\n", run, strerror(errno));
		free(run);
		return -1;
	}
	free(run);
	int other = up_pid_read(sup->pid_path);
	if (other != 0 && other != getpid() && up_pid_is(other, "mailctl")) {
		fprintf(stderr, "mailctl: mailstack is already running in %s (mailctl pid %d)\n",
			sup->datadir, other);
		return -1;
	}
	FILE *f = fopen(sup->pid_path, "we");
	if (f == NULL) {
		fprintf(stderr, "mailctl: cannot write %s: %s\n", sup->pid_path, strerror(errno));
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) != 0) {
		fprintf(stderr, "mailctl: cannot write %s: %s\n", sup->pid_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Checks the daemons exist, marks ports someone else already holds. */
static int up_preflight(struct supervisor *sup)
{
	for (size_t d = 0; d < UP_DAEMON_COUNT; d++) {
		struct child *ch = &sup->children[d];
		if (access(ch->bin, X_OK) < 0) {
			fprintf(stderr, "mailctl: cannot find %s next to mailctl (looked for %s: %s)\n",
				ch->name, ch->bin, strerror(errno));
			return -1;
		}
		for (size_t i = 0; i < ch->endpoint_count; i++) {
			struct up_endpoint *ep = &ch->endpoints[i];
			if (ep->path == NULL && up_endpoint_answers(ep))
				ep->foreign = true;
		}
	}
	return 0;
}

static void up_usage(FILE *out)
{
	fputs("usage: mailctl up [--dir D]\n"
	      "Starts mda, mta, pop3d and imapd on the data directory, prints where they\n"
	      "listen, restarts a daemon that dies (backoff 1 s doubling to 30 s) and stops\n"
	      "them all on Ctrl-C or SIGTERM. Exits 1 if a daemon cannot start.\n",
	      out);
}

int cmd_up(int argc, char **argv, const char *datadir)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		up_usage(stdout);
		return 0;
	}
	if (argc >= 2) {
		fprintf(stderr, "mailctl: up: unknown argument '%s'\n", argv[1]);
		up_usage(stderr);
		return 1;
	}
	struct supervisor *sup = xcalloc(1, sizeof(*sup));
	sup->datadir = datadir;
	if (ctl_load_config(datadir, &sup->cfg) < 0) {
		free(sup);
		return 1;
	}
	char *err = NULL;
	const char *level_name = config_str(sup->cfg, "log.level");
	int level = log_level_parse(level_name);
	if (log_init("mailctl", NULL, level < 0 ? LOG_INFO : (enum log_level)level, &err) < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot start logging");
		free(err);
	}
	sup->pid_path = xasprintf("%s/run/mailctl.pid", datadir);
	for (size_t d = 0; d < UP_DAEMON_COUNT; d++) {
		sup->children[d].sup = sup;
		sup->children[d].name = up_daemons[d].name;
		sup->children[d].bin = ctl_bin_path(up_daemons[d].name);
		sup->children[d].backoff_s = UP_BACKOFF_FIRST_S;
	}
	up_endpoints_build(sup->children, sup->cfg);

	bool pid_written = false;
	if (up_preflight(sup) == 0 && up_pid_file_write(sup) == 0) {
		pid_written = true;
		signal(SIGPIPE, SIG_IGN);
		uv_loop_init(&sup->loop);
		uv_signal_init(&sup->loop, &sup->sigint);
		uv_signal_init(&sup->loop, &sup->sigterm);
		sup->sigint.data = sup->sigterm.data = sup;
		uv_signal_start(&sup->sigint, up_on_signal, SIGINT);
		uv_signal_start(&sup->sigterm, up_on_signal, SIGTERM);
		uv_timer_init(&sup->loop, &sup->kill_timer);
		sup->kill_timer.data = sup;
		uv_timer_init(&sup->loop, &sup->prune_timer);
		sup->prune_timer.data = sup;
		uv_timer_start(&sup->prune_timer, up_prune_tick, UP_PRUNE_FIRST_MS, UP_PRUNE_EVERY_MS);
		for (size_t d = 0; d < UP_DAEMON_COUNT; d++) {
			uv_timer_init(&sup->loop, &sup->children[d].timer);
			sup->children[d].timer.data = &sup->children[d];
		}
		up_enter(sup, UP_STARTING);
		for (size_t d = 0; d < UP_DAEMON_COUNT && sup->state == UP_STARTING; d++)
			child_spawn(&sup->children[d]);
		uv_run(&sup->loop, UV_RUN_DEFAULT);
		uv_loop_close(&sup->loop);
		if (sup->exit_status == 0)
			printf("mailstack stopped\n");
		else if (sup->failure != NULL)
			fprintf(stderr, "%s\n", sup->failure);
	} else {
		sup->exit_status = 1;
	}
	if (pid_written && up_pid_read(sup->pid_path) == getpid())
		unlink(sup->pid_path);
	int status = sup->exit_status;
	for (size_t d = 0; d < UP_DAEMON_COUNT; d++) {
		struct child *ch = &sup->children[d];
		free(ch->bin);
		free(ch->last_line);
		buf_free(&ch->line);
		up_endpoints_free(ch);
	}
	free(sup->pid_path);
	free(sup->failure);
	config_free(&sup->cfg);
	free(sup);
	log_close();
	return status;
}

/* status: the queue's length and how many messages are held. */
static void up_status_queue(const char *datadir)
{
	char *path = xasprintf("%s/queue.sqlite", datadir);
	bool exists = access(path, F_OK) == 0;
	free(path);
	if (!exists) {
		printf("%-8s empty (no queue yet)\n", "queue");
		return;
	}
	queue *q = NULL;
	char *err = NULL;
	if (queue_open(datadir, &q, &err) < 0) {
		printf("%-8s cannot be read: %s\n", "queue", err != NULL ? err : "");
		free(err);
		return;
	}
	struct queue_msg *list = NULL;
	size_t count = queue_list(q, &list), held = 0;
	for (size_t i = 0; i < count; i++) {
		if (list[i].held)
			held++;
		queue_msg_free(&list[i]);
	}
	free(list);
	queue_close(&q);
	printf("%-8s %zu message%s", "queue", count, count == 1 ? "" : "s");
	if (held > 0)
		printf(" (%zu held)", held);
	printf("\n");
}

/* status: faults injected for labs (`mailctl fault`), one per line. */
static void up_status_faults(const char *datadir)
{
	char *text = fault_list(datadir);
	if (text == NULL || text[0] == '\0') {
		printf("%-8s none\n", "faults");
	} else {
		char *save = NULL;
		for (char *line = strtok_r(text, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			printf("%-8s %s\n", "faults", line);
	}
	free(text);
}

/* mailctl status: what runs, where it listens, the queue, injected faults. */
int cmd_status(int argc, char **argv, const char *datadir)
{
	if (argc >= 2) {
		bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
		fputs("usage: mailctl status [--dir D]\n"
		      "Shows which daemons run (pid files), whether their ports answer, the\n"
		      "queue length and injected faults. Exits 0 when all four daemons run,\n"
		      "3 otherwise.\n",
		      help ? stdout : stderr);
		return help ? 0 : 1;
	}
	config *cfg = NULL;
	if (ctl_load_config(datadir, &cfg) < 0)
		return 1;
	struct child children[UP_DAEMON_COUNT];
	memset(children, 0, sizeof(children));
	for (size_t d = 0; d < UP_DAEMON_COUNT; d++)
		children[d].name = up_daemons[d].name;
	up_endpoints_build(children, cfg);

	printf("data directory %s\n", datadir);
	char *path = xasprintf("%s/run/mailctl.pid", datadir);
	int pid = up_pid_read(path);
	free(path);
	if (up_pid_is(pid, "mailctl"))
		printf("%-8s running (pid %d)\n", "up", pid);
	else
		printf("%-8s not running\n", "up");

	size_t running = 0;
	for (size_t d = 0; d < UP_DAEMON_COUNT; d++) {
		path = xasprintf("%s/run/%s.pid", datadir, children[d].name);
		pid = up_pid_read(path);
		free(path);
		if (up_pid_is(pid, children[d].name)) {
			printf("%-8s running (pid %d)\n", children[d].name, pid);
			running++;
		} else if (pid != 0) {
			printf("%-8s not running (stale pid file)\n", children[d].name);
		} else {
			printf("%-8s not running\n", children[d].name);
		}
		for (size_t i = 0; i < children[d].endpoint_count; i++) {
			const struct up_endpoint *ep = &children[d].endpoints[i];
			char *where = up_endpoint_text(ep);
			printf("%-8s   %-11s %-40s %s\n", "", ep->proto, where,
			       up_endpoint_answers(ep) ? "answers" : "does not answer");
			free(where);
		}
		up_endpoints_free(&children[d]);
	}

	up_status_queue(datadir);
	up_status_faults(datadir);
	config_free(&cfg);
	return running == UP_DAEMON_COUNT ? 0 : 3;
}
