/* init.c: `mailctl init`, making a data directory ready for the daemons.
 *
 *   mailctl init [--dir D] [--domain DOMAIN] [--port-base N] [--hostname H] [--demo]
 *
 * Creates, each only when missing: D (0700), D/mailstack.conf (every key with
 * its help, generated from the defaults so it is always complete), the
 * self-signed certificate and key (key 0600), users.sqlite, mail/, run/, log/,
 * the local DOMAIN (default example.test) and, with --demo, the users
 * alice@example.test and bob@example.test with generated passwords, their
 * mailboxes and D/demo-credentials (0600).
 *
 * Invariant: init never destroys or rewrites anything that exists. Run again,
 * it keeps every existing file and says so, and creates only what is missing
 * (so it also repairs a directory whose certificate was deleted). */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "ctl.h"
#include "password.h"
#include "store.h"
#include "tls.h"
#include "users.h"

#define INIT_DEFAULT_DOMAIN "example.test"
#define INIT_DEMO_DOMAIN "example.test"
#define INIT_DEMO_PASSWORD_LEN 16
#define INIT_HOSTNAME_MAX 253

static const char *const init_demo_users[] = {"alice", "bob"};

struct init_opts {
	const char *domain;
	const char *hostname;
	const char *port_base;
	bool demo;
};

/* Reports one item: created or kept. */
static void init_report(bool created, const char *what, const char *path)
{
	if (created)
		printf("created %s %s\n", what, path);
	else
		printf("kept    %s %s (already exists)\n", what, path);
}

/* Creates dir with mode 0700 unless it exists; reports which. */
static int init_mkdir(const char *dir, const char *what)
{
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			fprintf(stderr, "mailctl: %s exists and is not a directory\n", dir);
			return -1;
		}
		init_report(false, what, dir);
		return 0;
	}
	if (mkdir(dir, 0700) < 0) {
		fprintf(stderr, "mailctl: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	init_report(true, what, dir);
	return 0;
}

/* The first ancestor of dir that user pw cannot pass through (caller
 * frees), or NULL. dir itself does not count: the daemons hand it to their
 * user when they start as root. Only the primary group is considered, as the
 * daemons drop every supplementary group. */
static char *init_blocking_ancestor(const char *dir, const struct passwd *pw)
{
	char *path = xstrdup(dir);
	char *blocked = NULL;
	for (char *slash = strchr(path + 1, '/'); slash != NULL && blocked == NULL;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		struct stat st;
		if (stat(path, &st) == 0) {
			mode_t need = st.st_uid == pw->pw_uid	? S_IXUSR
				      : st.st_gid == pw->pw_gid ? S_IXGRP
								: S_IXOTH;
			if ((st.st_mode & need) == 0)
				blocked = xstrdup(path);
		}
		*slash = '/';
	}
	free(path);
	return blocked;
}

/* server.run_as for a new config: the default, unless init runs as root and
 * that user could not reach the data directory (e.g. a clone under /root),
 * where dropping privileges would leave the daemons unable to read their
 * mailboxes: then root, said out loud. NULL = keep the default. */
static const char *init_choose_run_as(const char *datadir)
{
	if (geteuid() != 0)
		return NULL;
	config *defaults = config_defaults();
	char *user = xstrdup(config_str(defaults, "server.run_as"));
	config_free(&defaults);
	struct passwd *pw = getpwnam(user);
	const char *choice = NULL;
	char *blocked = pw != NULL ? init_blocking_ancestor(datadir, pw) : NULL;
	if (blocked != NULL) {
		printf("note: %s cannot pass through %s, so the daemons will keep running as "
		       "root (server.run_as = root); use a data directory %s can reach to have "
		       "them drop privileges\n",
		       user, blocked, user);
		choice = "root";
	}
	free(blocked);
	free(user);
	return choice;
}

/* The text of a new mailstack.conf: every key with its help, the chosen
 * port_base and hostname, and an empty [routes] section with an example. */
static int init_config_text(const char *datadir, const struct init_opts *opts, char **text_r)
{
	config *cfg = config_defaults();
	char *err = NULL;
	const char *run_as = init_choose_run_as(datadir);
	if ((opts->port_base != NULL &&
	     config_set(cfg, "server.port_base", opts->port_base, &err) < 0) ||
	    (opts->hostname != NULL && config_set(cfg, "server.hostname", opts->hostname, &err) < 0) ||
	    (run_as != NULL && config_set(cfg, "server.run_as", run_as, &err) < 0)) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "bad value");
		free(err);
		config_free(&cfg);
		return -1;
	}
	char *printed = NULL;
	size_t printed_len = 0;
	FILE *mem = open_memstream(&printed, &printed_len);
	if (mem == NULL) {
		fprintf(stderr, "mailctl: %s\n", strerror(errno));
		config_free(&cfg);
		return -1;
	}
	config_print(cfg, mem);
	fclose(mem);
	config_free(&cfg);

	buf_t text = BUF_INIT;
	buf_append_str(&text, "# mailstack.conf: the config of one mailstack data directory.\n"
			      "# Made by `mailctl init`; every key is listed with its help.\n"
			      "# `mailctl config` prints the effective values, `mailctl config check`\n"
			      "# validates this file.\n");
	const char *routes_example =
		"# Where mail for other domains goes (domain = host:port), instead of\n"
		"# looking up MX records. Example:\n"
		"# example.org = 127.0.0.1:20025\n";
	/* config_print may already print the [routes] header; put the example
	 * comment under it rather than adding a second header. */
	/* Its first line says "effective configuration (defaults)": not true of
	 * a file the user will edit. */
	const char *body = printed;
	if (strncmp(body, "# effective configuration", 25) == 0 && strchr(body, '\n') != NULL)
		body = strchr(body, '\n') + 1;
	const char *header = strstr(body, "[routes]\n");
	if (header != NULL) {
		size_t head_len = (size_t)(header - body) + strlen("[routes]\n");
		buf_append(&text, body, head_len);
		buf_append_str(&text, routes_example);
		buf_append_str(&text, body + head_len);
	} else {
		buf_append_str(&text, body);
		if (printed_len > 0 && printed[printed_len - 1] != '\n')
			buf_append_char(&text, '\n');
		buf_append_str(&text, "\n[routes]\n");
		buf_append_str(&text, routes_example);
	}
	free(printed);
	*text_r = buf_steal(&text);
	return 0;
}

/* Writes a new file with mode, failing if it exists (O_EXCL). */
static int init_write_new_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		fprintf(stderr, "mailctl: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t len = strlen(text), done = 0;
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "mailctl: cannot write %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fprintf(stderr, "mailctl: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Writes mailstack.conf unless it exists. */
static int init_config_file(const char *datadir, const struct init_opts *opts)
{
	char *path = xasprintf("%s/mailstack.conf", datadir);
	int ret = 0;
	if (access(path, F_OK) == 0) {
		init_report(false, "config", path);
		if (opts->port_base != NULL || opts->hostname != NULL)
			printf("        (--port-base and --hostname apply only to a new config; "
			       "edit %s to change them)\n",
			       path);
	} else {
		char *text = NULL;
		ret = init_config_text(datadir, opts, &text);
		if (ret == 0)
			ret = init_write_new_file(path, text, 0600);
		if (ret == 0)
			init_report(true, "config", path);
		free(text);
	}
	free(path);
	return ret;
}

/* Makes the self-signed certificate and key unless both exist. */
static int init_tls(const config *cfg)
{
	char *cert = config_path_in_datadir(cfg, "server.tls_cert");
	char *key = config_path_in_datadir(cfg, "server.tls_key");
	bool have_cert = access(cert, F_OK) == 0, have_key = access(key, F_OK) == 0;
	int ret = 0;
	if (have_cert && have_key) {
		init_report(false, "certificate", cert);
		init_report(false, "key", key);
	} else if (have_cert || have_key) {
		/* Replacing the half that exists could destroy a real certificate. */
		fprintf(stderr,
			"mailctl: %s exists but %s is missing; restore it, or remove both to "
			"make a new self-signed pair\n",
			have_cert ? cert : key, have_cert ? key : cert);
		ret = -1;
	} else {
		char *dir = xstrdup(cert);
		char *slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if (access(dir, F_OK) < 0 && mkdir(dir, 0700) < 0) {
				fprintf(stderr, "mailctl: cannot create %s: %s\n", dir,
					strerror(errno));
				ret = -1;
			}
		}
		free(dir);
		char *err = NULL;
		if (ret == 0 &&
		    tls_make_self_signed(cert, key, config_str(cfg, "server.hostname"), &err) < 0) {
			fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot make certificate");
			ret = -1;
		}
		free(err);
		if (ret == 0) {
			const char *host = config_str(cfg, "server.hostname");
			printf("created certificate %s (self-signed for %s%s, 127.0.0.1 and ::1)\n",
			       cert, host, strcmp(host, "localhost") == 0 ? "" : ", localhost");
			init_report(true, "key", key);
		}
	}
	free(cert);
	free(key);
	return ret;
}

/* Appends "address password" to D/demo-credentials (0600). */
static int init_demo_credentials_add(const char *datadir, const char *address,
				     const char *password)
{
	char *path = xasprintf("%s/demo-credentials", datadir);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int ret = 0;
	if (fd < 0) {
		fprintf(stderr, "mailctl: cannot write %s: %s\n", path, strerror(errno));
		ret = -1;
	} else {
		char *line = xasprintf("%s %s\n", address, password);
		size_t len = strlen(line);
		if (write(fd, line, len) != (ssize_t)len || fsync(fd) < 0) {
			fprintf(stderr, "mailctl: cannot write %s: %s\n", path, strerror(errno));
			ret = -1;
		}
		free(line);
		close(fd);
	}
	free(path);
	return ret;
}

/* Creates a user's mailbox with its default folders. */
static int init_mailbox(const char *datadir, const char *address)
{
	store *st = NULL;
	char *err = NULL;
	if (store_open(datadir, address, &st, &err) < 0) {
		fprintf(stderr, "mailctl: mailbox of %s: %s\n", address,
			err != NULL ? err : "cannot open");
		free(err);
		return -1;
	}
	/* A data directory the daemons already took over keeps one owner. */
	char *domain_dir = xstrdup(store_db_path(st));
	char *slash = strrchr(domain_dir, '/');
	if (slash != NULL)
		*slash = '\0';
	ctl_match_owner(datadir, domain_dir);
	ctl_match_owner(datadir, store_db_path(st));
	ctl_match_owner(datadir, store_notify_path(st));
	free(domain_dir);
	store_close(&st);
	return 0;
}

/* Adds the demo users that are missing; prints their passwords once. */
static int init_demo(const char *datadir, userdb *db)
{
	for (size_t i = 0; i < sizeof(init_demo_users) / sizeof(init_demo_users[0]); i++) {
		char *address = xasprintf("%s@%s", init_demo_users[i], INIT_DEMO_DOMAIN);
		struct user_info info;
		int ret = 0;
		if (userdb_user_lookup(db, address, &info) == 0) {
			user_info_free(&info);
			printf("kept    user %s (already exists; password unchanged)\n", address);
		} else {
			char *password = password_generate(INIT_DEMO_PASSWORD_LEN);
			char *err = NULL;
			if (userdb_user_add(db, address, password, &err) < 0) {
				fprintf(stderr, "mailctl: cannot add %s: %s\n", address,
					err != NULL ? err : "failed");
				ret = -1;
			}
			free(err);
			if (ret == 0)
				ret = init_mailbox(datadir, address);
			if (ret == 0)
				ret = init_demo_credentials_add(datadir, address, password);
			if (ret == 0)
				printf("created user %s password %s\n", address, password);
			free(password);
		}
		free(address);
		if (ret < 0)
			return -1;
	}
	printf("        (demo passwords are also in %s/demo-credentials)\n", datadir);
	return 0;
}

/* Opens (creating) users.sqlite, adds the domain and the demo users. */
static int init_users(const char *datadir, const struct init_opts *opts)
{
	char *path = xasprintf("%s/users.sqlite", datadir);
	bool existed = access(path, F_OK) == 0;
	userdb *db = NULL;
	char *err = NULL;
	if (userdb_open(datadir, &db, &err) < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : path);
		free(err);
		free(path);
		return -1;
	}
	chmod(path, 0600);
	init_report(!existed, "user directory", path);
	free(path);

	int ret = 0;
	const char *domain = opts->domain != NULL ? opts->domain : INIT_DEFAULT_DOMAIN;
	if (userdb_domain_is_local(db, domain)) {
		printf("kept    domain %s (already local)\n", domain);
	} else if (userdb_domain_add(db, domain, &err) < 0) {
		fprintf(stderr, "mailctl: cannot add domain %s: %s\n", domain,
			err != NULL ? err : "failed");
		free(err);
		ret = -1;
	} else {
		printf("created domain %s\n", domain);
	}
	if (ret == 0 && opts->demo)
		ret = init_demo(datadir, db);
	userdb_close(&db);
	return ret;
}

/* Checks a port base: a number such that every port stays below 65536. */
static bool init_port_base_valid(const char *text)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(text, &end, 10);
	/* The highest standard port we add to it is 995. */
	return errno == 0 && end != text && *end == '\0' && v >= 0 && v + 995 <= 65535;
}

static void init_usage(FILE *out)
{
	fputs("usage: mailctl init [--dir D] [--domain DOMAIN] [--port-base N] [--hostname H] "
	      "[--demo]\n"
	      "  --domain DOMAIN  local mail domain (default example.test)\n"
	      "  --port-base N    added to every standard port (default 10000; 0 = 25, 587...)\n"
	      "  --hostname H     name in greetings and the certificate (default localhost)\n"
	      "  --demo           add alice@example.test and bob@example.test and print\n"
	      "                   their passwords (also in D/demo-credentials)\n"
	      "Existing files are never overwritten; running init again is safe.\n",
	      out);
}

int cmd_init(int argc, char **argv, const char *datadir)
{
	struct init_opts opts = {0};
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char **value = NULL;
		if (strcmp(arg, "--demo") == 0) {
			opts.demo = true;
			continue;
		} else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			init_usage(stdout);
			return 0;
		} else if (strcmp(arg, "--domain") == 0) {
			value = &opts.domain;
		} else if (strcmp(arg, "--port-base") == 0) {
			value = &opts.port_base;
		} else if (strcmp(arg, "--hostname") == 0) {
			value = &opts.hostname;
		} else {
			fprintf(stderr, "mailctl: init: unknown argument '%s'\n", arg);
			init_usage(stderr);
			return 1;
		}
		if (i + 1 >= argc || argv[i + 1][0] == '\0') {
			fprintf(stderr, "mailctl: init: %s needs a value\n", arg);
			return 1;
		}
		*value = argv[++i];
	}
	if (opts.port_base != NULL && !init_port_base_valid(opts.port_base)) {
		fprintf(stderr, "mailctl: init: bad port base '%s' (0 to 64540)\n", opts.port_base);
		return 1;
	}
	if (opts.hostname != NULL &&
	    (strlen(opts.hostname) > INIT_HOSTNAME_MAX || strpbrk(opts.hostname, " \t/") != NULL)) {
		fprintf(stderr, "mailctl: init: bad host name '%s'\n", opts.hostname);
		return 1;
	}
	if (opts.domain != NULL && (strchr(opts.domain, '.') == NULL ||
				    strpbrk(opts.domain, " \t@/") != NULL)) {
		fprintf(stderr, "mailctl: init: bad domain '%s'\n", opts.domain);
		return 1;
	}

	/* Files we create are private whatever the caller's umask. */
	umask(077);
	if (init_mkdir(datadir, "data directory") < 0 ||
	    init_config_file(datadir, &opts) < 0)
		return 1;
	config *cfg = NULL;
	if (ctl_load_config(datadir, &cfg) < 0)
		return 1;
	static const char *const subdirs[][2] = {
		{"mail", "mail directory"}, {"run", "run directory"}, {"log", "log directory"}};
	int ret = init_tls(cfg);
	for (size_t i = 0; ret == 0 && i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		char *dir = xasprintf("%s/%s", datadir, subdirs[i][0]);
		ret = init_mkdir(dir, subdirs[i][1]);
		free(dir);
	}
	if (ret == 0)
		ret = init_users(datadir, &opts);
	config_free(&cfg);
	if (ret < 0)
		return 1;
	printf("ready: start the daemons with 'mailctl up --dir %s'\n", datadir);
	return 0;
}
