/* mta.h: what the mta's modules share (this folder only).
 *
 * The mta is one process, one libuv loop:
 *   smtp_session.c / smtp_commands.c  the SMTP server (25, 587, 465, run/submit.sock)
 *   smtp_policy.c                     who may relay, send as whom, reach whom
 *   received.c                        the trace and submission header fields
 *   queue_writer.c                    group commit into queue.sqlite
 *   queue_scheduler.c                 picks due recipients, records the outcome
 *   lmtp_client.c / smtp_client.c     the two ways out; outbound.c what they share
 *   bounce.c                          RFC 3464 delivery status notifications
 *   user_cache.c                      userdb answers, until users.sqlite changes
 *   downgrade.c                       8BITMIME to quoted-printable for 7-bit hops
 */
#ifndef MAILSTACK_MTA_H
#define MAILSTACK_MTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "buffer.h"
#include "config.h"
#include "daemon.h"
#include "net.h"
#include "queue.h"
#include "users.h"

/* Listener kinds (conn_listener_kind). */
enum mta_port {
	MTA_PORT_SMTP = 25,
	MTA_PORT_SUBMISSION = 587,
	MTA_PORT_SMTPS = 465,
	MTA_PORT_LOCAL = 1, /* run/submit.sock: trusted local programs */
};

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets; we allow more for
 * AUTH initial responses and parameter lists, bounded all the same. */
#define SMTP_MAX_COMMAND_LINE 2048
/* RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF. */
#define SMTP_MAX_TEXT_LINE 998

struct trusted_net {
	int family;
	unsigned char addr[16];
	unsigned prefix;
};

struct queue_writer;
struct scheduler;
struct user_cache;

struct mta {
	struct daemon *d;
	uv_loop_t *loop;
	const config *cfg;
	userdb *users;
	const char *hostname;
	queue *reader;               /* loop-side connection: scheduler reads */
	struct queue_writer *writer; /* its own connection, used on the thread pool */
	struct scheduler *sched;
	struct user_cache *user_cache;
	net_server *server;
	char *lmtp_path;
	char *submit_path;
	struct trusted_net *trusted;
	size_t trusted_count;
	int64_t max_message_size;
	int64_t max_recipients;
	int64_t max_errors;
	int64_t junk_command_limit;
	unsigned max_auth_failures;
	bool allow_plaintext_auth;
};

/* ---- smtp_session.c ---- */
net_server *smtp_server_new(struct mta *m);

/* ---- smtp_policy.c ---- */
int policy_trusted_parse(const char *list, struct trusted_net **nets_r, size_t *count_r,
			 char **err_r);
bool policy_address_trusted(const struct mta *m, const struct sockaddr *sa);
/* The local part and domain of an address, the domain lower-cased (caller frees). */
char *policy_domain_of(const char *address);

/* ---- user_cache.c: userdb answers kept until users.sqlite changes ---- */
bool user_cache_domain_is_local(struct mta *m, const char *domain);
/* As userdb_resolve (caller frees with userdb_strv_free). */
char **user_cache_resolve(struct mta *m, const char *address);
void user_cache_free(struct user_cache **c);

/* ---- received.c ---- */
struct received_info {
	const char *helo;
	const char *peer_addr;   /* "127.0.0.1" or "unix" */
	const char *protocol;    /* "ESMTPSA" ... */
	const char *id;
	const char *tls_version; /* NULL when not TLS */
	const char *tls_cipher;
	const char *auth_user;   /* NULL when not authenticated */
	const char *for_rcpt;    /* NULL unless exactly one recipient */
};
/* Appends a Received field (RFC 5321 4.4) to out. */
void received_append(buf_t *out, const char *hostname, const struct received_info *ri);
/* The protocol name for "with" (RFC 3848, RFC 6531 3.7.3). */
const char *received_protocol(bool esmtp, bool tls, bool auth, bool smtputf8);
/* On submission: appends Message-ID and Date fields the message lacks. */
void received_append_missing(buf_t *out, const char *msg, size_t len, const char *hostname,
			     const char *id);
/* The current time as an RFC 5322 date-time into out (at least 64 bytes). */
void received_date_now(char *out, size_t cap);

/* ---- queue_writer.c ---- */
struct queue_update {
	int64_t rcpt_id;
	enum queue_rcpt_state state;
	int attempts;
	char *last_error;
	int64_t next_try;
	/* the attempt row */
	int64_t when;
	char *proto, *hop, *status, *reply;
};

struct queue_job {
	struct queue_msg *new_msg;   /* to insert (owned), or NULL */
	struct queue_msg *dsn;       /* a report to insert with the updates (owned), or NULL */
	char *msg_id;                /* the message the updates belong to */
	struct queue_update *updates;
	size_t update_count;
	bool set_warned;
	bool delete_if_done;
	/* results, valid in done */
	int status;
	bool temporary;
	char *err;
	bool deleted;
	void (*done)(struct queue_job *job, void *arg);
	void *arg;
	struct queue_job *next;
};

struct queue_writer *queue_writer_new(uv_loop_t *loop, queue *q);
/* Queues a job for the next commit; job->done runs on the loop after it. */
void queue_writer_submit(struct queue_writer *w, struct queue_job *job);
/* True while a commit is running or jobs wait. */
bool queue_writer_busy(const struct queue_writer *w);
/* Frees the writer once idle (call after the loop has drained it). */
void queue_writer_free(struct queue_writer **w);
void queue_job_free(struct queue_job **job);
/* Frees a heap queue_msg and its contents. */
void queue_msg_destroy(struct queue_msg **m);

/* ---- outbound.c: what the LMTP and SMTP clients share ---- */
struct delivery_rcpt {
	struct queue_rcpt *rcpt; /* points into the message */
	int code;                /* 0 = no result yet */
	char *reply;             /* one line */
	char status[16];         /* enhanced code "2.0.0" */
};

struct delivery {
	const struct queue_msg *msg;
	char *domain;            /* NULL for local delivery */
	struct delivery_rcpt *rcpts;
	size_t count;
	char proto[8];           /* "LMTP" / "SMTP" */
	char *hop;               /* where it went, for logs and DSNs */
	bool remote_dsn;         /* the next hop took NOTIFY (no "relayed" DSN needed) */
	void (*done)(struct delivery *dl);
	void *owner;
	struct delivery *next;
};
/* Gives every recipient still without a result this reply. */
void delivery_set_rest(struct delivery *dl, int code, const char *status, const char *reply);
/* Gives one recipient its result. */
void delivery_set(struct delivery_rcpt *r, int code, const char *status, const char *reply);
/* What the next hop advertised, for delivery_mail_params. */
enum mail_from_flags {
	MAIL_FROM_SIZE = 1 << 0,
	MAIL_FROM_8BIT = 1 << 1,
	MAIL_FROM_SMTPUTF8 = 1 << 2,
	MAIL_FROM_DSN = 1 << 3,
};
/* Appends the MAIL parameters the next hop understands ("SIZE=1234 BODY=8BITMIME"),
 * space-separated. */
void delivery_mail_params(buf_t *out, const struct delivery *dl, unsigned flags,
			  const char *lifecycle_param);

/* ---- downgrade.c ---- */
/* An 8BITMIME message made fit for a next hop without 8BITMIME: 0 with *out_r
 * NULL when it is 7-bit already, 0 with a converted copy (caller frees), or
 * -1 with *why_r (static text) when it cannot be converted (RFC 6152 3: 5.6.3). */
int downgrade_to_7bit(const char *msg, size_t len, char **out_r, size_t *out_len_r,
		      const char **why_r);

/* ---- lmtp_client.c ---- */
struct lmtp_pool;
struct lmtp_pool *lmtp_pool_new(struct mta *m);
void lmtp_deliver(struct lmtp_pool *p, struct delivery *dl);
void lmtp_pool_shutdown(struct lmtp_pool *p);
void lmtp_pool_free(struct lmtp_pool **p);

/* ---- smtp_client.c ---- */
struct smtp_clients;
struct smtp_clients *smtp_clients_new(struct mta *m);
void smtp_deliver(struct smtp_clients *sc, struct delivery *dl);
void smtp_clients_shutdown(struct smtp_clients *sc);
void smtp_clients_free(struct smtp_clients **sc);

/* ---- queue_scheduler.c ---- */
struct scheduler *scheduler_new(struct mta *m);
/* Scans queue.sqlite for due work soon. */
void scheduler_kick(struct scheduler *s);
/* Hands over a message just committed (with its body and recipient ids):
 * the scheduler owns it from here and delivers it without reading it back. */
void scheduler_submit(struct scheduler *s, struct queue_msg *msg);
void scheduler_shutdown(struct scheduler *s);
void scheduler_free(struct scheduler **s);

/* ---- bounce.c ---- */
enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED };
struct dsn_rcpt {
	const struct queue_rcpt *rcpt;
	enum dsn_action action;
	const char *status;      /* "5.1.1" */
	const char *diagnostic;  /* the remote reply, or NULL */
	const char *remote_mta;  /* or NULL */
};
/* Whether this recipient wants a report of this kind (RFC 3461 4.1). */
bool dsn_wanted(const struct queue_msg *msg, const struct queue_rcpt *r, enum dsn_action action);
/* Builds a report message for msg (which must have a body) to its sender;
 * NULL for the null sender. The result is ready to insert (recipients set). */
struct queue_msg *dsn_build(struct mta *m, const struct queue_msg *msg, const struct dsn_rcpt *rcpts,
			    size_t count, int64_t retry_until);

#endif
