/* pop3.h: the POP3 server's internal interfaces (RFC 1939, 2449, 2595, 5034).
 *
 * main.c starts the daemon and its listeners; pop3_session.c holds the
 * session states and the command table; pop3_maildrop.c holds the snapshot of
 * the INBOX a session works on and streams messages out of the store. */
#ifndef MAILSTACK_POP3_H
#define MAILSTACK_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "net.h"
#include "store.h"

/* Listener kinds. */
enum pop3_listener { POP3_LISTENER_PLAIN = 110, POP3_LISTENER_TLS = 995 };

/* RFC 2449 4: a command line is at most 255 octets; SASL responses
 * (RFC 5034 4) may be longer. */
#define POP3_MAX_COMMAND_LINE 255
#define POP3_MAX_SASL_LINE 16384
/* Bytes read from the store per chunk while streaming RETR and TOP. */
#define POP3_STREAM_CHUNK (64 * 1024)

struct pop3_server {
	struct daemon *daemon;
	net_server *net;
	/* Users with a session in TRANSACTION state (the maildrop lock, RFC 1939 8). */
	char **locked_users;
	size_t locked_count;
};

void pop3_server_init(struct pop3_server *server, struct daemon *d);
const struct conn_handlers *pop3_session_handlers(void);
/* Takes the maildrop lock for user: false when another session holds it. */
bool pop3_server_lock(struct pop3_server *server, const char *user);
void pop3_server_unlock(struct pop3_server *server, const char *user);

/* ---- the maildrop: INBOX as it was at login ---- */

struct pop3_message {
	uint32_t uid;
	uint64_t size;
	char *lifecycle_id;
	bool deleted;
};

struct pop3_maildrop {
	store *st;
	uint32_t uidvalidity;
	struct pop3_message *messages;
	size_t count;
};

/* Opens the user's store and takes the snapshot; -1 with *err_r. temporary_r
 * tells whether the failure may pass ([SYS/TEMP]) or not ([SYS/PERM]). */
int pop3_maildrop_open(const char *datadir, const char *user, struct pop3_maildrop *drop_r,
		       bool *temporary_r, char **err_r);
void pop3_maildrop_close(struct pop3_maildrop *drop);
/* Counts and octets of the messages not marked deleted. */
void pop3_maildrop_stat(const struct pop3_maildrop *drop, size_t *count_r, uint64_t *octets_r);
/* The UIDL of a message: UIDVALIDITY and UID, fixed for the message's life. */
void pop3_maildrop_uidl(const struct pop3_maildrop *drop, const struct pop3_message *m,
			char *out, size_t cap);
/* Removes every message marked deleted in one transaction; -1 with *err_r. */
int pop3_maildrop_commit_deletions(struct pop3_maildrop *drop, size_t *removed_r, char **err_r);

/* Streams message m to c after ok_line, dot-stuffed and terminated by
 * ".\r\n": the whole message (body_lines < 0) or the header, the blank line
 * and body_lines lines of the body (TOP). Returns -1 (and writes nothing) when
 * the message cannot be opened. Otherwise done is called (possibly before
 * this returns) once the terminating line is queued (ok), or when the stream
 * failed or the peer left (!ok: the connection is closing). The caller pauses
 * its input meanwhile. */
typedef void (*pop3_stream_done_cb)(conn *c, bool ok, void *arg);
int pop3_stream_message(conn *c, struct pop3_maildrop *drop, const struct pop3_message *m,
			long body_lines, const char *ok_line, pop3_stream_done_cb done, void *arg);

#endif
