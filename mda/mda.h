/* mda.h: the delivery agent's internal interfaces, shared by the LMTP server
 * (lmtp_session.c), the one-shot LDA (lda.c) and the delivery engine
 * (delivery.c, with its helpers submit_client.c and vacation.c).
 *
 * A message is read once into an mda_message (shared, reference-counted on
 * the loop thread); each recipient becomes an mda_delivery that goes through
 * delivery_start: its Sieve script is run, redirects are re-submitted, the
 * copies are filed by the group committer on the thread pool, and its done
 * callback is called on the loop with the outcome. */
#ifndef MAILSTACK_MDA_H
#define MAILSTACK_MDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "header.h"
#include "users.h"

#define MDA_MAX_LINE 4096             /* LMTP command line */
#define MDA_DATA_MAX_LINE (64 * 1024) /* one line of message data */
#define MDA_STORE_CACHE_MAX 256       /* mailboxes kept open by the committer */
#define MDA_BATCH_MAX 512             /* deliveries in one group commit */

/* Sysexits codes used by the LDA (sysexits.h). */
#define MDA_EX_OK 0
#define MDA_EX_DATAERR 65
#define MDA_EX_NOUSER 67
#define MDA_EX_CANTCREAT 73
#define MDA_EX_TEMPFAIL 75

/* The mda's shared state: one per process. */
struct mda {
	uv_loop_t *loop;
	config *cfg;
	userdb *users;
	char *datadir;
	char *hostname;
	char *submit_socket;          /* D/run/submit.sock */
	uint64_t max_message_size;
	bool quota_tempfail;
	struct delivery_committer *committer;
};

/* One received message: the raw bytes (CRLF lines) and its envelope sender. */
struct mda_message {
	unsigned refs;
	char *data;
	size_t len;
	char *sender;        /* "" for the null sender */
	char *lifecycle_id;
	struct header header;
};

struct mda_message *mda_message_new(char *data, size_t len, const char *sender,
				    const char *lifecycle_id);
struct mda_message *mda_message_ref(struct mda_message *m);
void mda_message_unref(struct mda_message **m);

enum delivery_status {
	DELIVERY_PENDING,
	DELIVERY_OK,       /* filed (or discarded/redirected as the rules said) */
	DELIVERY_TEMP,     /* may pass: 4xx / EX_TEMPFAIL */
	DELIVERY_QUOTA,    /* over quota: 552 5.2.2 (or 452 4.2.2) / EX_CANTCREAT */
};

/* Where one copy goes. */
struct delivery_target {
	char *folder;
	bool create;
	uint32_t uid;      /* filled after the commit */
};

struct mda_delivery;
typedef void delivery_done_fn(struct mda_delivery *dl, void *arg);

struct mda_delivery {
	struct mda *mda;
	struct mda_message *msg;
	struct user_info user;   /* the recipient's account */
	char *rcpt;              /* the address as given (with +detail) */
	char *forced_folder;     /* LDA -m FOLDER, or NULL */
	char *rule;              /* what chose the folders, for logs ("implicit keep", "line 3 fileinto") */
	struct delivery_target *targets;
	size_t target_count;
	char **redirects;        /* addresses to re-submit to */
	size_t redirect_count, redirects_pending;
	bool redirect_failed;
	const struct sieve_command *vacation; /* owned by script */
	struct sieve_script *script;
	enum delivery_status status;
	bool already_filed;      /* the mailbox held this lifecycle id: not filed again */
	char *error;             /* why, for a failure */
	delivery_done_fn *done;
	void *done_arg;
	struct mda_delivery *next; /* in the committer's queue */
};

/* Creates a delivery of msg to the user (info is moved in; caller's copy is
 * zeroed). */
struct mda_delivery *delivery_new(struct mda *mda, struct mda_message *msg,
				  struct user_info *info, const char *rcpt);
/* Runs the rules and files the message; done is called later on the loop. */
void delivery_start(struct mda_delivery *dl, delivery_done_fn *done, void *arg);
void delivery_free(struct mda_delivery **dl);

/* The group committer: queues per mailbox, one commit per batch on the
 * thread pool. */
struct delivery_committer *delivery_committer_new(struct mda *mda);
/* Closes cached stores; call when no delivery is pending. */
void delivery_committer_free(struct delivery_committer **c);
/* Number of deliveries queued or being committed. */
size_t delivery_committer_pending(const struct delivery_committer *c);
/* Queues dl; when its batch is committed (or failed), delivery_committed(dl)
 * is called on the loop. */
void delivery_committer_submit(struct delivery_committer *c, struct mda_delivery *dl);
void delivery_committed(struct mda_delivery *dl);

/* Re-submits a message through the mta's local submission socket (an SMTP
 * conversation). done gets 0 on success, or -1 with the reason (a 5xx
 * reply: permanent = true). */
typedef void submit_done_fn(int status, bool permanent, const char *reason, void *arg);
void submit_message(uv_loop_t *loop, const char *socket_path, const char *hostname,
		    const char *sender, const char *rcpt, const char *data, size_t len,
		    submit_done_fn *done, void *arg);

/* Vacation (RFC 5230): decides whether to answer the message and, if so,
 * sends the reply. Fire and forget: logs what it did. */
void vacation_consider(struct mda *mda, const struct mda_delivery *dl);

/* The mda's setup from a loaded config (both modes). */
void mda_init(struct mda *mda, uv_loop_t *loop, config *cfg, userdb *users,
	      const char *datadir);
void mda_cleanup(struct mda *mda);

/* LMTP server (lmtp_session.c). */
struct net_server;
struct net_server *lmtp_server_new(struct mda *mda);

/* LDA: `mda deliver ...`; returns the exit status. */
int lda_main(int argc, char **argv);

#endif
