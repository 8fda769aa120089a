/* main.c: imapd, the IMAP server (RFC 3501 and extensions; issue 6).
 *
 * Reads the imap.* settings, listens on port_base+143 (STARTTLS) and
 * port_base+993 (implicit TLS), and serves every connection from one libuv
 * loop; the protocol lives in imap_session.c and the modules it calls. */
#include <stdlib.h>

#include "config.h"
#include "daemon.h"
#include "imapd.h"
#include "log.h"

/* Stops listening and closes the sessions when SIGTERM arrives. */
static void imapd_on_stop(struct daemon *d)
{
	struct imapd *server = d->data;
	net_server_shutdown(server->srv);
}

int main(int argc, char **argv)
{
	struct daemon d = {0};
	struct imapd server = {0};
	daemon_start(&d, "imapd", "the IMAP server", NULL, argc, argv, NULL, NULL);
	server.d = &d;
	server.allow_plaintext_auth = config_bool(d.cfg, "server.allow_plaintext_auth");
	server.max_literal = (uint64_t)config_int(d.cfg, "imap.max_literal_size");
	server.max_line = (size_t)config_int(d.cfg, "imap.max_line_length");
	server.idle_timeout_ms = (uint64_t)config_int(d.cfg, "imap.idle_timeout") * 1000;
	server.max_auth_failures = (unsigned)config_int(d.cfg, "server.max_auth_failures");
	if (server.max_line < 1024)
		server.max_line = 1024;
	struct net_server_opts opts = {
		.proto = "imap",
		.max_line = server.max_line,
		.max_connections = (unsigned)config_int(d.cfg, "server.max_connections"),
		.max_per_ip = (unsigned)config_int(d.cfg, "server.max_connections_per_ip"),
		.idle_timeout_ms = server.idle_timeout_ms,
		.too_many_reply = "* BYE Too many connections\r\n",
		.tls = d.tls,
	};
	server.srv = net_server_new(d.loop, &opts, &imap_conn_handlers, &server);
	d.data = &server;
	d.on_stop = imapd_on_stop;
	daemon_listen_or_exit(&d, server.srv, IMAP_PORT, IMAP_LISTENER_PLAIN, false);
	if (d.tls != NULL)
		daemon_listen_or_exit(&d, server.srv, IMAPS_PORT, IMAP_LISTENER_TLS, true);
	if (daemon_drop_privileges(&d) < 0)
		return 1;
	int status = daemon_run(&d);
	net_server_free(&server.srv);
	return status;
}
