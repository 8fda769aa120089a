/* mta: the mail transfer agent — SMTP server on 25 (mail exchange), 587
 * (submission, RFC 6409) and 465 (implicit TLS, RFC 8314), the local submit
 * socket, the durable queue and its delivery over LMTP and SMTP.
 *
 * The local submit socket, DATADIR/run/submit.sock (mode 0660), speaks SMTP
 * for programs on this machine: the sendmail command, the mda's Sieve
 * redirects and vacation replies. It is trusted: it may relay, needs no AUTH
 * and the envelope sender is taken as given. Protect it with file
 * permissions (the data directory is 0700).
 *
 * Start-up: options and config (daemon_start), the queue (two connections:
 * one for the writer on the thread pool, one for the scheduler on the loop),
 * the listeners, then the loop. SIGTERM: stop listening, close sessions,
 * let deliveries in progress finish or fail, drain the writer, exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "mta.h"

static void mta_on_stop(struct daemon *d)
{
	struct mta *m = d->data;
	if (m->server != NULL)
		net_server_shutdown(m->server);
	if (m->sched != NULL)
		scheduler_shutdown(m->sched);
}

/* Reads the config values the sessions consult on every command. */
static void mta_load_settings(struct mta *m)
{
	m->hostname = config_str(m->cfg, "server.hostname");
	m->max_message_size = config_int(m->cfg, "smtp.max_message_size");
	m->max_recipients = config_int(m->cfg, "smtp.max_recipients");
	m->max_errors = config_int(m->cfg, "smtp.max_errors");
	m->junk_command_limit = config_int(m->cfg, "smtp.junk_command_limit");
	m->max_auth_failures = (unsigned)config_int(m->cfg, "server.max_auth_failures");
	if (m->max_auth_failures == 0)
		m->max_auth_failures = 1;
	m->allow_plaintext_auth = config_bool(m->cfg, "server.allow_plaintext_auth");
	char *err = NULL;
	if (policy_trusted_parse(config_str(m->cfg, "smtp.trusted_networks"), &m->trusted,
				 &m->trusted_count, &err) < 0) {
		fprintf(stderr, "mta: %s\n", err);
		free(err);
		exit(1);
	}
	m->lmtp_path = config_path_in_datadir(m->cfg, "lmtp.socket");
	m->submit_path = xasprintf("%s/run/submit.sock", m->d->datadir);
}

/* Opens queue.sqlite twice: the writer's connection and the scheduler's. */
static void mta_open_queue(struct mta *m)
{
	queue *wq = NULL;
	char *err = NULL;
	if (queue_open(m->d->datadir, &wq, &err) < 0 || queue_open(m->d->datadir, &m->reader, &err) < 0) {
		fprintf(stderr, "mta: %s\n", err);
		free(err);
		exit(1);
	}
	m->writer = queue_writer_new(m->loop, wq);
}

int main(int argc, char **argv)
{
	static struct daemon d;
	static struct mta m;
	d.data = &m;
	d.on_stop = mta_on_stop;
	daemon_start(&d, "mta", "the SMTP server, mail queue and delivery agent", NULL, argc, argv,
		     NULL, NULL);
	m.d = &d;
	m.loop = d.loop;
	m.cfg = d.cfg;
	m.users = d.users;
	mta_load_settings(&m);
	mta_open_queue(&m);

	m.server = smtp_server_new(&m);
	daemon_listen_or_exit(&d, m.server, MTA_PORT_SMTP, MTA_PORT_SMTP, false);
	daemon_listen_or_exit(&d, m.server, MTA_PORT_SUBMISSION, MTA_PORT_SUBMISSION, false);
	if (d.tls != NULL)
		daemon_listen_or_exit(&d, m.server, MTA_PORT_SMTPS, MTA_PORT_SMTPS, true);
	char *err = NULL;
	if (net_server_listen_unix(m.server, m.submit_path, MTA_PORT_LOCAL, &err) < 0) {
		fprintf(stderr, "mta: %s\n", err);
		free(err);
		return 1;
	}
	if (daemon_drop_privileges(&d) < 0)
		return 1;
	m.sched = scheduler_new(&m);
	log_kv(LOG_INFO, 0, "mta ready", "submit_socket", m.submit_path, "lmtp", m.lmtp_path, NULL);

	/* daemon_run frees the loop, config and user directory: keep what we need. */
	net_server *server = m.server;
	int status = daemon_run(&d);
	net_server_free(&server);
	scheduler_free(&m.sched);
	queue_writer_free(&m.writer);
	queue_close(&m.reader);
	user_cache_free(&m.user_cache);
	free(m.trusted);
	free(m.lmtp_path);
	free(m.submit_path);
	return status;
}
