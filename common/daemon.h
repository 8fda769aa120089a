/* daemon.h: what every daemon does the same way at start and stop.
 *
 * daemon_start parses the common options (--dir D, --config FILE, --help,
 * --foreground is the default), loads the config (D/mailstack.conf), sets up
 * logging and transcripts under D/log, loads the TLS certificate, opens the
 * user directory, and installs SIGTERM/SIGINT handlers that stop the loop
 * gracefully. After the daemon has bound its ports it calls
 * daemon_drop_privileges (switches to server.run_as when running as root) and
 * daemon_run. It writes D/run/<name>.pid while running. */
#ifndef MAILSTACK_DAEMON_H
#define MAILSTACK_DAEMON_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "tls.h"
#include "net.h"
#include "users.h"

struct daemon {
	const char *name;   /* "mta", "mda", "pop3d", "imapd" */
	uv_loop_t *loop;
	config *cfg;
	char *datadir;
	tls_ctx *tls;       /* server context from server.tls_cert/tls_key */
	userdb *users;
	/* Called when SIGTERM/SIGINT arrives: close listeners and sessions. */
	void (*on_stop)(struct daemon *d);
	void *data;
	uv_signal_t sigterm, sigint, sighup;
	bool stopping;
};

/* usage: the daemon's own option lines for --help (may be NULL). Extra
 * arguments the daemon handles itself are returned through rest_argc and rest_argv
 * (e.g. "mda deliver ..."). Exits with a message and status 1 on any error,
 * 0 after --help. */
void daemon_start(struct daemon *d, const char *name, const char *summary, const char *usage,
		  int argc, char **argv, int *rest_argc, char ***rest_argv);
/* Port for a standard port number: server.port_base + standard. */
int daemon_port(const struct daemon *d, int standard_port);
/* Listens on server.listen at the port; on failure prints the error and exits 1. */
void daemon_listen_or_exit(struct daemon *d, struct net_server *srv, int standard_port, int kind,
			   bool implicit_tls);
int daemon_drop_privileges(struct daemon *d);
/* Runs the loop until stopped; frees everything; returns the exit status. */
int daemon_run(struct daemon *d);

#endif
