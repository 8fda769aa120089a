/* pop3d: the POP3 server (RFC 1939) on ports port_base+110 (STLS) and
 * port_base+995 (implicit TLS, RFC 8314). One process, one libuv loop. */
#include <stdlib.h>

#include "buffer.h"
#include "daemon.h"
#include "net.h"
#include "pop3.h"

void pop3_server_init(struct pop3_server *server, struct daemon *d)
{
	server->daemon = d;
	struct net_server_opts opts = {
		.proto = "pop3",
		.max_line = POP3_MAX_COMMAND_LINE,
		.max_connections = (unsigned)config_int(d->cfg, "server.max_connections"),
		.max_per_ip = (unsigned)config_int(d->cfg, "server.max_connections_per_ip"),
		.idle_timeout_ms = (uint64_t)config_int(d->cfg, "pop3.idle_timeout") * 1000,
		.too_many_reply = "-ERR [SYS/TEMP] Too many connections, try later\r\n",
		.tls = d->tls,
	};
	server->net = net_server_new(d->loop, &opts, pop3_session_handlers(), server);
}

/* Stops accepting connections; sessions end on their own. */
static void pop3_stop(struct daemon *d)
{
	struct pop3_server *server = d->data;
	net_server_shutdown(server->net);
}

int main(int argc, char **argv)
{
	struct daemon d = {0};
	struct pop3_server server = {0};
	daemon_start(&d, "pop3d", "the mailstack POP3 server (RFC 1939, STLS, SASL)", NULL, argc,
		     argv, NULL, NULL);
	d.data = &server;
	d.on_stop = pop3_stop;
	pop3_server_init(&server, &d);
	daemon_listen_or_exit(&d, server.net, 110, POP3_LISTENER_PLAIN, false);
	daemon_listen_or_exit(&d, server.net, 995, POP3_LISTENER_TLS, true);
	daemon_drop_privileges(&d);
	int status = daemon_run(&d);
	net_server_free(&server.net);
	for (size_t i = 0; i < server.locked_count; i++)
		free(server.locked_users[i]);
	free(server.locked_users);
	return status;
}
