/* daemon.c: what every daemon does the same way at start and stop (see
 * daemon.h).
 *
 * Life of a daemon process:
 *   daemon_start     options, data directory checks, config, logging, run/
 *                    and log/, TLS context, user directory, signal handlers
 *   (the daemon binds its listeners: daemon_listen_or_exit)
 *   daemon_drop_privileges
 *   daemon_run       pid file, loop; on SIGTERM/SIGINT: d->on_stop, then the
 *                    loop ends when every handle has closed -- or after
 *                    DAEMON_STOP_GRACE_MS every connection is aborted, and
 *                    DAEMON_STOP_FORCE_MS later the loop is stopped outright
 *                    -- and everything is freed.
 * Every error before the loop runs is one line on stderr, "NAME: what went
 * wrong", and exit status 1. Signal handles and the stop timer are unref'd:
 * they never keep the loop alive by themselves. */
#include "daemon.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "buffer.h"
#include "log.h"

/* After a stop signal, connections get this long to finish... */
#define DAEMON_STOP_GRACE_MS 5000
/* ...then they are aborted, and the loop is stopped this much later. */
#define DAEMON_STOP_FORCE_MS 1000

/* One daemon per process: the stop timer lives here, not in struct daemon. */
static uv_timer_t daemon_stop_timer;
static bool daemon_stop_timer_started;
static bool daemon_forced;
/* D/run/NAME.pid while it exists. */
static char *daemon_pid_path;

static char *daemon_write_pid(struct daemon *d);

/* Prints "NAME: message" and exits 1. */
static void daemon_die(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));
static void daemon_die(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* Prints --help. */
static void daemon_print_help(const char *name, const char *summary, const char *usage)
{
	printf("%s - %s\n\n", name, summary != NULL ? summary : "");
	printf("usage: %s [options]\n", name);
	if (usage != NULL && usage[0] != '\0') {
		fputs(usage, stdout);
		if (usage[strlen(usage) - 1] != '\n')
			fputc('\n', stdout);
	}
	printf("\ncommon options:\n"
	       "  --dir D          data directory (default $MAILSTACK_DIR, else ./var)\n"
	       "  --config FILE    config file (default D/mailstack.conf)\n"
	       "  --foreground     stay in the foreground (the default)\n"
	       "  --help           print this help and exit\n");
}

struct daemon_options {
	const char *dir;
	const char *config;
	int rest_index; /* first argument not ours */
};

/* The value of "--opt V" or "--opt=V" at argv[*i], or NULL if argv[*i] is
 * not that option. */
static const char *daemon_option_value(const char *name, const char *opt, int argc, char **argv,
				       int *i)
{
	size_t n = strlen(opt);
	const char *arg = argv[*i];
	if (strncmp(arg, opt, n) != 0)
		return NULL;
	if (arg[n] == '=')
		return arg + n + 1;
	if (arg[n] != '\0')
		return NULL;
	if (*i + 1 >= argc)
		daemon_die(name, "option '%s' needs a value; see %s --help", opt, name);
	return argv[++*i];
}

/* Parses the common options up to the first argument that is not one. */
static void daemon_parse_options(const char *name, const char *summary, const char *usage,
				 int argc, char **argv, struct daemon_options *o)
{
	int i;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *v;
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (arg[0] != '-' || arg[1] == '\0')
			break;
		if ((v = daemon_option_value(name, "--dir", argc, argv, &i)) != NULL) {
			o->dir = v;
		} else if ((v = daemon_option_value(name, "--config", argc, argv, &i)) != NULL) {
			o->config = v;
		} else if (strcmp(arg, "--foreground") == 0) {
			/* The default: daemons never fork away from their supervisor. */
		} else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			daemon_print_help(name, summary, usage);
			exit(0);
		} else {
			daemon_die(name, "unknown option '%s'; see %s --help", arg, name);
		}
	}
	o->rest_index = i;
}

/* Checks that the data directory exists and can be read; returns it absolute. */
static char *daemon_check_datadir(const char *name, const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			daemon_die(name, "data directory %s does not exist; run mailctl init", dir);
		daemon_die(name, "data directory %s is not readable: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		daemon_die(name, "data directory %s is not a directory", dir);
	if (access(dir, R_OK | X_OK) != 0)
		daemon_die(name, "data directory %s is not readable: %s", dir, strerror(errno));
	char *abs = realpath(dir, NULL);
	if (abs == NULL)
		daemon_die(name, "data directory %s is not readable: %s", dir, strerror(errno));
	char *copy = xstrdup(abs);
	free(abs);
	return copy;
}

/* Creates DIR/sub if it is missing. */
static void daemon_make_subdir(const char *name, const char *datadir, const char *sub)
{
	char *path = xasprintf("%s/%s", datadir, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		daemon_die(name, "cannot create %s: %s", path, strerror(errno));
	free(path);
}

/* Sets up logging from log.file, log.level and log.transcript. */
static void daemon_init_logging(struct daemon *d)
{
	const char *level_name = config_str(d->cfg, "log.level");
	int level = log_level_parse(level_name);
	if (level < 0)
		daemon_die(d->name, "unknown log.level '%s'", level_name);
	char *file = NULL;
	if (config_str(d->cfg, "log.file")[0] != '\0')
		file = config_path_in_datadir(d->cfg, "log.file");
	char *err = NULL;
	if (log_init(d->name, file, (enum log_level)level, &err) < 0)
		daemon_die(d->name, "%s", err);
	free(file);
	char *log_dir = xasprintf("%s/log", d->datadir);
	log_set_dirs(log_dir, config_bool(d->cfg, "log.transcript"));
	free(log_dir);
}

/* The stop timer: first abort every connection, then stop the loop. */
static void daemon_stop_timer_cb(uv_timer_t *timer)
{
	struct daemon *d = timer->data;
	if (!daemon_forced) {
		daemon_forced = true;
		log_warn(0, "connections did not close within %d ms: aborting them",
			 DAEMON_STOP_GRACE_MS);
		net_abort_all(d->loop);
		uv_timer_start(timer, daemon_stop_timer_cb, DAEMON_STOP_FORCE_MS, 0);
		return;
	}
	log_warn(0, "the loop did not end: stopping it");
	uv_stop(d->loop);
}

/* SIGTERM/SIGINT: stop gracefully (a second signal stops at once). SIGHUP: noted. */
static void daemon_signal_cb(uv_signal_t *sig, int signum)
{
	struct daemon *d = sig->data;
	if (signum == SIGHUP) {
		log_info(0, "SIGHUP ignored: restart the daemon to reload its config");
		return;
	}
	if (d->stopping) {
		log_warn(0, "second stop signal: stopping now");
		net_abort_all(d->loop);
		uv_stop(d->loop);
		return;
	}
	d->stopping = true;
	log_info(0, "stopping (signal %d)", signum);
	if (d->on_stop != NULL)
		d->on_stop(d);
	uv_timer_init(d->loop, &daemon_stop_timer);
	daemon_stop_timer.data = d;
	daemon_stop_timer_started = true;
	uv_timer_start(&daemon_stop_timer, daemon_stop_timer_cb, DAEMON_STOP_GRACE_MS, 0);
	uv_unref((uv_handle_t *)&daemon_stop_timer);
}

/* Installs one signal handler that never keeps the loop alive. */
static void daemon_watch_signal(struct daemon *d, uv_signal_t *sig, int signum)
{
	uv_signal_init(d->loop, sig);
	sig->data = d;
	uv_signal_start(sig, daemon_signal_cb, signum);
	uv_unref((uv_handle_t *)sig);
}

void daemon_start(struct daemon *d, const char *name, const char *summary, const char *usage,
		  int argc, char **argv, int *rest_argc, char ***rest_argv)
{
	void *data = d->data;
	void (*on_stop)(struct daemon *) = d->on_stop;
	memset(d, 0, sizeof(*d));
	d->data = data;
	d->on_stop = on_stop;
	d->name = name;

	/* Streaming servers allocate and free buffers of a few hundred KiB all the
	 * time (output batches, message chunks). With glibc's defaults each such
	 * buffer may come from a fresh mmap or from heap just trimmed, so every
	 * use pays page faults again; keep freed memory for reuse instead. */
	mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);

	struct daemon_options o = {0};
	daemon_parse_options(name, summary, usage, argc, argv, &o);
	if (o.rest_index < argc && rest_argc == NULL)
		daemon_die(name, "unexpected argument '%s'; see %s --help", argv[o.rest_index], name);
	if (rest_argc != NULL)
		*rest_argc = argc - o.rest_index;
	if (rest_argv != NULL)
		*rest_argv = argv + o.rest_index;

	const char *dir = o.dir;
	if (dir == NULL)
		dir = getenv("MAILSTACK_DIR");
	if (dir == NULL || dir[0] == '\0')
		dir = "./var";
	d->datadir = daemon_check_datadir(name, dir);

	char *config_file = o.config != NULL ? xstrdup(o.config)
					     : xasprintf("%s/mailstack.conf", d->datadir);
	char *err = NULL;
	if (config_load(config_file, false, &d->cfg, &err) < 0)
		daemon_die(name, "%s", err);
	free(config_file);
	config_set_datadir(d->cfg, d->datadir);

	daemon_make_subdir(name, d->datadir, "run");
	daemon_make_subdir(name, d->datadir, "log");
	daemon_init_logging(d);

	signal(SIGPIPE, SIG_IGN);
	char *cert = config_path_in_datadir(d->cfg, "server.tls_cert");
	char *key = config_path_in_datadir(d->cfg, "server.tls_key");
	d->tls = tls_ctx_server_new(cert, key, &err);
	free(cert);
	free(key);
	if (d->tls == NULL)
		daemon_die(name, "%s", err);

	if (userdb_open(d->datadir, &d->users, &err) < 0)
		daemon_die(name, "%s", err);

	d->loop = xmalloc(sizeof(*d->loop));
	if (uv_loop_init(d->loop) != 0)
		daemon_die(name, "cannot create the event loop");
	daemon_watch_signal(d, &d->sigterm, SIGTERM);
	daemon_watch_signal(d, &d->sigint, SIGINT);
	daemon_watch_signal(d, &d->sighup, SIGHUP);
	daemon_pid_path = daemon_write_pid(d);
	log_info(0, "starting: data directory %s", d->datadir);
}

int daemon_port(const struct daemon *d, int standard_port)
{
	return (int)config_int(d->cfg, "server.port_base") + standard_port;
}

void daemon_listen_or_exit(struct daemon *d, struct net_server *srv, int standard_port, int kind,
			   bool implicit_tls)
{
	char *err = NULL;
	int port = daemon_port(d, standard_port);
	if (net_server_listen_list(srv, config_str(d->cfg, "server.listen"), port, kind,
				   implicit_tls, &err) < 0) {
		log_error(0, "%s", err);
		if (daemon_pid_path != NULL)
			unlink(daemon_pid_path);
		daemon_die(d->name, "%s", err);
	}
}

/* The user the data directory is being handed to (nftw has no argument). */
static uid_t daemon_chown_uid;
static gid_t daemon_chown_gid;

/* nftw callback: gives one entry of the data directory to the run_as user. */
static int daemon_chown_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if ((st->st_uid != daemon_chown_uid || st->st_gid != daemon_chown_gid) &&
	    lchown(path, daemon_chown_uid, daemon_chown_gid) != 0)
		log_warn(0, "cannot chown %s: %s", path, strerror(errno));
	return 0;
}

/* Switches to server.run_as when running as root. The data directory is
 * handed to that user first: after the switch the daemon must still write
 * its mailboxes, queue, logs and pid file. */
int daemon_drop_privileges(struct daemon *d)
{
	if (geteuid() != 0)
		return 0;
	const char *user = config_str(d->cfg, "server.run_as");
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		log_error(0, "cannot drop privileges: no user '%s'", user);
		fprintf(stderr, "%s: cannot drop privileges: no user '%s'\n", d->name, user);
		return -1;
	}
	daemon_chown_uid = pw->pw_uid;
	daemon_chown_gid = pw->pw_gid;
	nftw(d->datadir, daemon_chown_entry, 32, FTW_PHYS);
	if (setgroups(1, &pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		log_error(0, "cannot switch to user %s: %s", user, strerror(errno));
		fprintf(stderr, "%s: cannot switch to user %s: %s\n", d->name, user,
			strerror(errno));
		return -1;
	}
	log_info(0, "running as %s", user);
	return 0;
}

/* Writes D/run/NAME.pid; returns its path (caller frees) or NULL. */
static char *daemon_write_pid(struct daemon *d)
{
	char *path = xasprintf("%s/run/%s.pid", d->datadir, d->name);
	FILE *f = fopen(path, "we");
	if (f == NULL) {
		log_warn(0, "cannot write %s: %s", path, strerror(errno));
		free(path);
		return NULL;
	}
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
	return path;
}

/* uv_walk callback: closes a handle still open after a forced stop. */
static void daemon_close_leftover(uv_handle_t *handle, void *arg)
{
	if (!uv_is_closing(handle))
		uv_close(handle, NULL);
}

int daemon_run(struct daemon *d)
{
	log_info(0, "running");
	uv_run(d->loop, UV_RUN_DEFAULT);

	/* Our own handles, then anything a forced stop left behind. */
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	if (daemon_stop_timer_started)
		uv_close((uv_handle_t *)&daemon_stop_timer, NULL);
	uv_run(d->loop, UV_RUN_NOWAIT);
	if (uv_loop_alive(d->loop)) {
		net_abort_all(d->loop);
		uv_run(d->loop, UV_RUN_NOWAIT);
		uv_walk(d->loop, daemon_close_leftover, NULL);
		uv_run(d->loop, UV_RUN_DEFAULT);
	}
	if (uv_loop_close(d->loop) != 0)
		log_warn(0, "event loop still busy at exit");
	free(d->loop);
	d->loop = NULL;

	if (daemon_pid_path != NULL) {
		unlink(daemon_pid_path);
		free(daemon_pid_path);
		daemon_pid_path = NULL;
	}
	log_info(0, "stopped");
	userdb_close(&d->users);
	tls_ctx_free(&d->tls);
	config_free(&d->cfg);
	free(d->datadir);
	d->datadir = NULL;
	log_close();
	return 0;
}
