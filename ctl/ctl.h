/* ctl.h: mailctl's subcommands. main.c holds the command table; each
 * subcommand lives in its own file and has this signature. argv[0] is the
 * subcommand's name; datadir is --dir, else $MAILSTACK_DIR, else ./var.
 * Returns the process exit status. */
#ifndef MAILSTACK_CTL_H
#define MAILSTACK_CTL_H

#include <sys/types.h>

typedef int ctl_command_fn(int argc, char **argv, const char *datadir);

ctl_command_fn cmd_init;      /* init.c */
ctl_command_fn cmd_user;      /* users.c: user add|del|passwd|list|quota */
ctl_command_fn cmd_alias;     /* users.c: alias add|del|list */
ctl_command_fn cmd_up;        /* up.c: start and supervise the daemons */
ctl_command_fn cmd_status;    /* up.c */
ctl_command_fn cmd_config;    /* config.c */
ctl_command_fn cmd_queue;     /* queue.c (mta work): queue [flush|hold|release|delete ID] */
ctl_command_fn cmd_sieve;     /* sieve.c (mda work): sieve put|get|del USER [FILE] */
ctl_command_fn cmd_import;    /* import.c (mda work) */
ctl_command_fn cmd_export;    /* import.c (mda work) */
ctl_command_fn cmd_trace;     /* trace.c (lifecycle work) */
ctl_command_fn cmd_transcript; /* transcript.c: live protocol conversations */
ctl_command_fn cmd_fault;     /* fault.c: injected faults for labs */
ctl_command_fn cmd_mua;       /* runs build/bin/mua with the demo account */
ctl_command_fn cmd_views;     /* views.c: read-only SQL views over a mailbox (labs) */
ctl_command_fn cmd_demo;      /* demo.c: one message's lifecycle, narrated */
ctl_command_fn cmd_lab;       /* lab.c: lab net up|down|status, two hosts (root) */

/* Helpers shared by the subcommands (main.c, config.c). */
struct config;
/* Loads DATADIR/mailstack.conf after checking that the data directory exists
 * and is readable; prints "mailctl: ..." and returns -1 on any error. */
int ctl_load_config(const char *datadir, struct config **cfg_r);
/* `trace --prune` and `transcript --prune`: drops the lines of DATADIR/log/file
 * older than the config key's retention and says how many ("events"). */
int ctl_prune_log(const char *datadir, const char *file, const char *retention_key,
		  const char *what);
/* When run as root, gives path to the owner of the data directory (the
 * daemons' server.run_as user once they have started), so that files mailctl
 * creates stay usable by daemons that dropped privileges. */
void ctl_match_owner(const char *datadir, const char *path);
/* The path of a program installed next to mailctl (caller frees). */
char *ctl_bin_path(const char *program);

/* spawn.c: starts argv (argv[0] looked up in PATH unless it holds a '/') in
 * its own session, stdin from /dev/null, stdout and stderr appended to
 * log_path. Returns the child's pid, or -1 (errno set) if fork failed; an exec
 * failure shows as the child exiting with 127. */
pid_t ctl_spawn_logged(const char *log_path, const char *const argv[]);
/* Sleeps ms milliseconds, resuming after signals. */
void ctl_sleep_ms(long ms);

#endif
