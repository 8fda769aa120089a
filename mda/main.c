/* mda: the delivery agent. `mda [--dir D]` serves LMTP (RFC 2033) on the unix
 * socket lmtp.socket (and on TCP lmtp.tcp_port when set) for the mta;
 * `mda [--dir D] deliver [-f SENDER] [-m FOLDER] RECIPIENT...` is the
 * one-shot LDA (lda.c). One process, one libuv loop; mailbox commits run on
 * the libuv thread pool (committer.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "daemon.h"
#include "db.h"
#include "log.h"
#include "mda.h"
#include "net.h"

#define MDA_THREADPOOL_SIZE "16"
#define MDA_LISTENER_UNIX 1
#define MDA_LISTENER_TCP 2

void mda_init(struct mda *mda, uv_loop_t *loop, config *cfg, userdb *users, const char *datadir)
{
	memset(mda, 0, sizeof(*mda));
	mda->loop = loop;
	mda->cfg = cfg;
	mda->users = users;
	mda->datadir = xstrdup(datadir);
	mda->hostname = xstrdup(config_str(cfg, "server.hostname"));
	mda->submit_socket = xasprintf("%s/run/submit.sock", datadir);
	mda->max_message_size = (uint64_t)config_int(cfg, "smtp.max_message_size");
	mda->quota_tempfail = config_bool(cfg, "mda.quota_tempfail");
	mda->committer = delivery_committer_new(mda);
}

void mda_cleanup(struct mda *mda)
{
	free(mda->datadir);
	free(mda->hostname);
	free(mda->submit_socket);
	memset(mda, 0, sizeof(*mda));
}

static struct net_server *mda_lmtp;

/* SIGTERM/SIGINT: stop accepting, let running commits finish (the
 * committer is freed once its last batch is done). */
static void mda_stop(struct daemon *d)
{
	struct mda *mda = d->data;
	net_server_shutdown(mda_lmtp);
	delivery_committer_free(&mda->committer);
}

/* True when the first argument after the options is "deliver". */
static bool mda_is_lda(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 || strcmp(argv[i], "--config") == 0) {
			i++;
			continue;
		}
		if (argv[i][0] == '-')
			continue;
		return strcmp(argv[i], "deliver") == 0;
	}
	return false;
}

/* Binds the LMTP socket (creating run/) and the optional TCP port. */
static void mda_listen(struct daemon *d, struct mda *mda)
{
	char *path = config_path_in_datadir(d->cfg, "lmtp.socket");
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	char *err = NULL;
	if (slash != NULL) {
		*slash = '\0';
		if (dir[0] != '\0' && db_mkdir_parents(dir, &err) < 0) {
			log_error(0, "%s", err);
			fprintf(stderr, "mda: %s\n", err);
			exit(1);
		}
	}
	free(dir);
	if (net_server_listen_unix(mda_lmtp, path, MDA_LISTENER_UNIX, &err) < 0) {
		log_error(0, "%s", err);
		fprintf(stderr, "mda: %s\n", err);
		exit(1);
	}
	log_info(0, "LMTP on %s", path);
	free(path);
	int port = (int)config_int(d->cfg, "lmtp.tcp_port");
	if (port != 0) {
		if (net_server_listen_tcp(mda_lmtp, "127.0.0.1", port, MDA_LISTENER_TCP, false,
					  &err) < 0) {
			log_error(0, "%s", err);
			fprintf(stderr, "mda: %s\n", err);
			exit(1);
		}
		log_info(0, "LMTP on 127.0.0.1:%d", port);
	}
}

int main(int argc, char **argv)
{
	/* Commits to many mailboxes run side by side on the pool. */
	setenv("UV_THREADPOOL_SIZE", MDA_THREADPOOL_SIZE, 0);
	if (mda_is_lda(argc, argv))
		return lda_main(argc, argv);
	struct daemon d = {0};
	struct mda mda;
	daemon_start(&d, "mda",
		     "the mailstack delivery agent: LMTP server (RFC 2033), or one-shot LDA with "
		     "`mda deliver [-f SENDER] [-m FOLDER] RECIPIENT... < message`",
		     NULL, argc, argv, NULL, NULL);
	mda_init(&mda, d.loop, d.cfg, d.users, d.datadir);
	d.data = &mda;
	d.on_stop = mda_stop;
	mda_lmtp = lmtp_server_new(&mda);
	mda_listen(&d, &mda);
	daemon_drop_privileges(&d);
	int status = daemon_run(&d);
	net_server_free(&mda_lmtp);
	mda_cleanup(&mda);
	return status;
}
