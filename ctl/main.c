/* main.c: mailctl's entry point and its command table.
 *
 * mailctl [--dir D] COMMAND [ARGS...]: `--dir D` (or `--dir=D`) may appear
 * anywhere on the command line and is removed before the subcommand sees its
 * arguments. The data directory is --dir, else $MAILSTACK_DIR, else ./var,
 * made absolute so that children started by `up` and paths in messages do not
 * depend on the working directory.
 *
 * The table below is the only place that knows the subcommands: one row per
 * command (name, handler, one line of summary). A subcommand written in its own
 * file (ctl.h declares them all) joins mailctl by adding its row here. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "ctl.h"

#define CTL_DEFAULT_DATADIR "var"

struct ctl_command {
	const char *name;
	ctl_command_fn *handler;
	const char *summary;
};

static const struct ctl_command ctl_commands[] = {
	{"init", cmd_init, "create the data directory: config, certificate, databases (--demo: users)"},
	{"user", cmd_user, "user add|del|passwd|list|quota: manage mail accounts"},
	{"alias", cmd_alias, "alias add|del|list: manage address aliases"},
	{"up", cmd_up, "start mta, mda, pop3d and imapd, supervise them until Ctrl-C"},
	{"status", cmd_status, "which daemons run, where they listen, the queue"},
	{"config", cmd_config, "print the effective config; `config check` validates it"},
	{"queue", cmd_queue, "the mta's queue: queue [list] | flush [ID] | hold|release|delete ID"},
	{"sieve", cmd_sieve, "sieve put|get|del USER [FILE] | check FILE: a user's filter script"},
	{"import", cmd_import, "import USER [--folder F] FILE.mbox|MAILDIR: bring mail in, with flags and dates"},
	{"export", cmd_export, "export USER [--folder F] --mbox FILE|--maildir DIR: write mail out"},
	{"mua", cmd_mua, "run the terminal mail client on this data directory"},
	{"trace", cmd_trace, "show a message's journey: trace ID|MESSAGE-ID|--last [--json] [--follow]"},
	{"transcript", cmd_transcript, "follow the protocol conversations of all daemons [--proto P] [--user U]"},
	{"fault", cmd_fault, "fault set COMPONENT FAULT [ARG] | clear | list: injected faults for labs"},
	{"demo", cmd_demo, "demo [--no-pause]: one message's whole lifecycle, narrated for a lecture"},
	{"lab", cmd_lab, "lab net up|down|status: two mail hosts in network namespaces (root)"},
	{"views", cmd_views, "views [USER] | --path USER: read-only SQL views of a mailbox for sqlite3"},
};

/* Prints the usage and the command table to out. */
static void ctl_usage(FILE *out)
{
	fputs("usage: mailctl [--dir DIR] COMMAND [ARGS...]\n"
	      "\n"
	      "The data directory is --dir DIR, else $MAILSTACK_DIR, else ./var.\n"
	      "\n"
	      "commands:\n",
	      out);
	for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++)
		fprintf(out, "  %-10s %s\n", ctl_commands[i].name, ctl_commands[i].summary);
	fputs("  help       show this list\n"
	      "\n"
	      "`mailctl COMMAND --help` describes a command's arguments.\n",
	      out);
}

/* Finds a command by name, or NULL. */
static const struct ctl_command *ctl_command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++) {
		if (strcmp(ctl_commands[i].name, name) == 0)
			return &ctl_commands[i];
	}
	return NULL;
}

/* Removes every "--dir D" / "--dir=D" from argv (keeping the last value);
 * returns the new argc, or -1 when --dir has no value. */
static int ctl_take_dir_option(int argc, char **argv, const char **dir_r)
{
	int out = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0) {
			if (i + 1 >= argc || argv[i + 1][0] == '\0')
				return -1;
			*dir_r = argv[++i];
			continue;
		}
		if (strncmp(argv[i], "--dir=", 6) == 0) {
			if (argv[i][6] == '\0')
				return -1;
			*dir_r = argv[i] + 6;
			continue;
		}
		argv[out++] = argv[i];
	}
	argv[out] = NULL;
	return out;
}

/* The data directory as an absolute path without trailing slashes (caller frees). */
static char *ctl_datadir_absolute(const char *dir)
{
	char *path;
	if (dir[0] == '/') {
		path = xstrdup(dir);
	} else {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			fprintf(stderr, "mailctl: cannot find the current directory: %s\n",
				strerror(errno));
			exit(1);
		}
		const char *rest = dir;
		while (strncmp(rest, "./", 2) == 0)
			rest += 2;
		path = strcmp(rest, ".") == 0 || rest[0] == '\0'
			       ? xstrdup(cwd)
			       : xasprintf("%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, rest);
	}
	size_t len = strlen(path);
	while (len > 1 && path[len - 1] == '/')
		path[--len] = '\0';
	return path;
}

char *ctl_bin_path(const char *program)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return xstrdup(program);
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return xstrdup(program);
	*slash = '\0';
	return xasprintf("%s/%s", self, program);
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	argc = ctl_take_dir_option(argc, argv, &dir);
	if (argc < 0) {
		fputs("mailctl: --dir needs a directory\n", stderr);
		return 1;
	}
	if (argc < 2) {
		ctl_usage(stderr);
		return 1;
	}
	const char *name = argv[1];
	if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		ctl_usage(stdout);
		return 0;
	}
	const struct ctl_command *cmd = ctl_command_find(name);
	if (cmd == NULL) {
		fprintf(stderr, "mailctl: unknown command '%s' (try 'mailctl help')\n", name);
		return 1;
	}
	if (dir == NULL) {
		const char *env = getenv("MAILSTACK_DIR");
		dir = env != NULL && env[0] != '\0' ? env : CTL_DEFAULT_DATADIR;
	}
	char *datadir = ctl_datadir_absolute(dir);
	/* stdout may be a pipe (tests, `| less`): keep the order of our lines
	 * and a child's lines the same as on a terminal. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	int status = cmd->handler(argc - 1, argv + 1, datadir);
	free(datadir);
	return status;
}
