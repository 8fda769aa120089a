/* queue.h: the mta's durable queue, DATADIR/queue.sqlite.
 *
 * A queued message is one row in `messages` (envelope sender, DSN envelope
 * parameters, who sent it and how), its bytes in `bodies`, one row per final
 * recipient in `recipients` (each with its own state, attempt count, last
 * error and next try) and one row per delivery attempt in `attempts`. The id
 * of a message is its lifecycle id (log.h). When every recipient of a message
 * has reached a final state the message is deleted with all its rows.
 *
 * Recipient states:
 *
 *     QUEUED --delivered--> DELIVERED
 *        |  \--permanent failure or lifetime over--> FAILED
 *        +--temporary failure--> QUEUED (attempts+1, next_try later)
 *
 * The SQL lives here because both the mta (writer and scheduler) and mailctl
 * (`mailctl queue`) use it. A `queue` handle is one SQLite connection: use it
 * from one thread at a time. Times are unix milliseconds. */
#ifndef MAILSTACK_QUEUE_H
#define MAILSTACK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct queue queue;

enum queue_rcpt_state {
	QUEUE_RCPT_QUEUED = 0,
	QUEUE_RCPT_DELIVERED = 1,
	QUEUE_RCPT_FAILED = 2,
};

/* DSN NOTIFY (RFC 3461 4.1) as bits; 0 = not given. */
enum queue_notify {
	QUEUE_NOTIFY_SUCCESS = 1 << 0,
	QUEUE_NOTIFY_FAILURE = 1 << 1,
	QUEUE_NOTIFY_DELAY = 1 << 2,
	QUEUE_NOTIFY_NEVER = 1 << 3,
};

struct queue_rcpt {
	int64_t id;          /* row id; 0 before insertion */
	char *address;       /* final address after alias resolution */
	char *orig;          /* the RCPT TO address as the client gave it */
	char *orcpt;         /* DSN ORCPT ("rfc822;a@b"), or NULL */
	unsigned notify;     /* enum queue_notify bits */
	enum queue_rcpt_state state;
	int attempts;
	char *last_error;    /* last reply or error text, or NULL */
	int64_t next_try;    /* ms */
};

struct queue_msg {
	char *id;            /* lifecycle id */
	char *sender;        /* "" for the null sender */
	char *envid;         /* DSN ENVID (decoded), or NULL */
	char *ret;           /* "FULL", "HDRS" or NULL */
	bool smtputf8;
	bool body_8bit;      /* BODY=8BITMIME was given */
	bool is_dsn;         /* a bounce or delay report made here */
	char *auth_user;     /* or NULL */
	char *client;        /* "helo [ip]" of the sending client */
	int64_t created;     /* ms */
	bool held;
	bool warned;         /* a delay warning was sent */
	int64_t size;        /* body bytes */
	struct queue_rcpt *rcpts;
	size_t rcpt_count;
	char *body;          /* NULL unless loaded with the body */
	size_t body_len;
};

/* Opens (creating and migrating) DATADIR/queue.sqlite. */
int queue_open(const char *datadir, queue **q_r, char **err_r);
void queue_close(queue **q);

/* ---- writing (inside queue_begin/queue_commit: one sync per batch) ---- */
int queue_begin(queue *q, char **err_r);
int queue_commit(queue *q, char **err_r);
void queue_rollback(queue *q);
/* Inserts a message with its body and recipients; sets each rcpt id. */
int queue_insert_message(queue *q, struct queue_msg *m, char **err_r);
/* Records a recipient's new state after an attempt. */
int queue_rcpt_update(queue *q, int64_t rcpt_id, enum queue_rcpt_state state, int attempts,
		      const char *last_error, int64_t next_try, char **err_r);
/* Appends one row to the attempt history. */
int queue_attempt_add(queue *q, const char *msg_id, int64_t rcpt_id, int64_t when,
		      const char *proto, const char *hop, const char *status, const char *reply,
		      char **err_r);
int queue_msg_set_warned(queue *q, const char *id, char **err_r);
/* Deletes the message when no recipient is QUEUED any more; *deleted_r tells. */
int queue_msg_delete_if_done(queue *q, const char *id, bool *deleted_r, char **err_r);
/* True for an error that may pass (busy, I/O): the caller answers 4xx. */
bool queue_error_is_temporary(queue *q);

/* ---- reading ---- */
/* Ids of messages (not held) with a QUEUED recipient due at or before now,
 * earliest first, at most limit (caller frees each and the array). */
size_t queue_due_messages(queue *q, int64_t now, size_t limit, char ***ids_r);
/* Loads a message: its envelope, its recipients (only the QUEUED ones due at
 * or before due_before when due_before >= 0, else all) and, when with_body, its
 * bytes. -1 when it is gone. */
int queue_msg_load(queue *q, const char *id, bool with_body, int64_t due_before,
		   struct queue_msg *m_r, char **err_r);
void queue_msg_free(struct queue_msg *m);
/* Every message without bodies, oldest first (caller frees each with
 * queue_msg_free, then the array). */
size_t queue_list(queue *q, struct queue_msg **list_r);
/* The earliest next_try of a due-able recipient, or -1 when none. */
int64_t queue_next_due(queue *q);

/* ---- operator commands (mailctl queue) ---- */
/* Makes every QUEUED recipient due now (and releases nothing). */
int queue_msg_flush(queue *q, const char *id, char **err_r);
int queue_msg_hold(queue *q, const char *id, bool hold, char **err_r);
int queue_msg_delete(queue *q, const char *id, char **err_r);
/* Flushes every message. */
int queue_flush_all(queue *q, char **err_r);

/* The current time in unix milliseconds. */
int64_t queue_now_ms(void);

#endif
