/* mua.h: the terminal mail client's internal interfaces.
 *
 * The mua is one libuv loop. Its parts, one file each:
 *   account.c    accounts from mua.conf or from a demo data directory
 *   transcript.c the ring of protocol lines shown in the transcript pane
 *   imapc.c      the asynchronous IMAP client (one command at a time, IDLE)
 *   pop3c.c      the asynchronous POP3 client
 *   server_conn.c the connection life both reading clients share (connect, TLS,
 *                reconnect with backoff, state notes, why it ended)
 *   smtpc.c      the asynchronous SMTP submission client (one message a job)
 *   msgview.c    a fetched message turned into pager text and attachments
 *   thread.c     threading by References/In-Reply-To with subject fallback
 *   script.c     `mua send|list|read` without a screen
 *   ui*.c        the ncurses screens
 * Nothing here blocks the loop except running $EDITOR, which owns the
 * terminal while it runs. */
#ifndef MAILSTACK_MUA_H
#define MAILSTACK_MUA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "imap_parser.h"
#include "mime.h"

/* sysexits.h values the scripting mode returns. */
#include <sysexits.h>

/* ---- accounts (account.c) ---- */

enum mua_tls_mode { MUA_TLS_NONE, MUA_TLS_STARTTLS, MUA_TLS_IMPLICIT };

#define MUA_MAX_ACCOUNTS 32

struct mua_account {
	char *name;
	char *address;      /* addr-spec */
	char *real_name;    /* display name for From, or NULL */
	bool read_pop3;
	char *read_host;
	int read_port;
	enum mua_tls_mode read_tls;
	char *send_host;
	int send_port;
	enum mua_tls_mode send_tls;
	char *login;
	char *password;     /* in memory only; NULL until asked */
	char *password_command;
	bool tls_verify;
	char *tls_ca_file;
	int poll_seconds;   /* POP3: how often to look for new mail (0 = 60) */
};

struct mua_accounts {
	struct mua_account items[MUA_MAX_ACCOUNTS];
	size_t count;
};

/* Reads an INI file of [account NAME] sections: 0, or -1 and *err_r. */
int mua_accounts_load(const char *path, struct mua_accounts *accounts, char **err_r);
/* Builds the demo accounts from a mailstack data directory (its config,
 * demo-credentials and certificate). */
int mua_accounts_demo(const char *datadir, struct mua_accounts *accounts, char **err_r);
/* The account named or addressed `key` (NULL = the first), or NULL. */
struct mua_account *mua_accounts_find(struct mua_accounts *accounts, const char *key);
void mua_accounts_free(struct mua_accounts *accounts);
/* Fills a->password from password_command, or by prompting on the terminal
 * without echo when interactive: 0 or -1 and *err_r. */
int mua_account_password(struct mua_account *a, bool interactive, char **err_r);
/* Why a TLS handshake with host:port failed, for the status line: the error,
 * the certificate's SHA-256 fingerprint and how to trust it (caller frees). */
struct conn;
char *mua_tls_failure_message(const char *host, int port, const struct conn *c);
/* "Name <addr>" for From. */
char *mua_account_from(const struct mua_account *a);
/* The ~/.config/mailstack/mua.conf path (caller frees). */
char *mua_default_config_path(void);

/* ---- transcript (transcript.c) ---- */

#define MUA_TRANSCRIPT_LINES 2000
#define MUA_TRANSCRIPT_LINE_MAX 300

/* Records one protocol line, masked (secret = the whole line is a secret). */
void mua_transcript_add(const char *proto, char dir, const char *line, size_t len, bool secret);
/* A note of the client's own ("connecting to ..."). */
void mua_transcript_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
size_t mua_transcript_count(void);
/* Counts every line ever recorded (to notice new ones). */
uint64_t mua_transcript_generation(void);
/* Line i, 0 = the oldest kept. */
const char *mua_transcript_line(size_t i);
/* When set, every line is also written there (scripting mode --verbose). */
void mua_transcript_echo(bool on);
void mua_transcript_free(void);

/* ---- IMAP client (imapc.c) ---- */

typedef struct imapc imapc;

enum imapc_state {
	IMAPC_DISCONNECTED,
	IMAPC_CONNECTING,
	IMAPC_TLS,
	IMAPC_GREETING,
	IMAPC_STARTTLS,
	IMAPC_AUTH,
	IMAPC_READY,
	IMAPC_LOGOUT,
};

/* How a command ended. */
enum imapc_result { IMAPC_OK, IMAPC_NO, IMAPC_BAD, IMAPC_DROPPED };

struct imapc_events {
	/* The connection changed state; msg says why (errors, fingerprint). */
	void (*on_state)(void *arg, enum imapc_state state, const char *msg);
	/* Untagged responses not claimed by the running command. */
	void (*on_exists)(void *arg, uint32_t count);
	void (*on_expunge)(void *arg, uint32_t seq);
	void (*on_fetch)(void *arg, uint32_t seq, const struct imap_arg *list);
};

/* Untagged data for the running command: name is "FETCH", "LIST", "SEARCH",
 * "STATUS", "ESEARCH"...; number is the leading number (FETCH) or 0; args
 * follow the name. */
typedef void imapc_untagged_cb(void *arg, const char *name, uint32_t number,
			       const struct imap_arg *args, size_t count);
typedef void imapc_done_cb(void *arg, enum imapc_result result, const char *text);

imapc *imapc_new(uv_loop_t *loop, struct mua_account *account, const struct imapc_events *ev,
		 void *arg);
/* Drops the connection and frees the client (pending commands are dropped). */
void imapc_free(imapc **cl);
/* Connects (again); the state callbacks tell how it goes. */
void imapc_connect(imapc *cl);
/* Reconnect by itself after a drop (the screen); off for scripts. */
void imapc_set_reconnect(imapc *cl, bool on);
/* Use IDLE while nothing is queued and a folder is selected. */
void imapc_set_idle(imapc *cl, bool on);
enum imapc_state imapc_get_state(const imapc *cl);
/* The UIDVALIDITY of the folder selected last (0 before its SELECT answered). */
uint32_t imapc_uidvalidity(const imapc *cl);
bool imapc_has_capability(const imapc *cl, const char *cap);
/* Queues a command (text without tag and CRLF). literal, when not NULL, is
 * sent as the command's one literal where the text has "{}" at its end. */
void imapc_command(imapc *cl, const char *text, const char *literal, size_t literal_len,
		   imapc_untagged_cb *untagged, imapc_done_cb *done, void *arg);
/* The number of commands queued or running. */
size_t imapc_pending(const imapc *cl);
/* Logs out and closes (done = the close). */
void imapc_logout(imapc *cl);
/* A quoted IMAP string (caller frees). */
char *imapc_quote(const char *s);

/* ---- POP3 client (pop3c.c) ---- */

/* The POP3 client reports the same connection states as the IMAP client
 * (READY = the TRANSACTION state, LOGOUT = QUIT sent) through on_state. */
typedef struct pop3c pop3c;
/* A reply: ok = "+OK"; status is the status line; data/len the multi-line
 * part (dot-unstuffed, CRLF line ends) or NULL. */
typedef void pop3c_done_cb(void *arg, bool ok, const char *status, const char *data,
			   size_t len);
pop3c *pop3c_new(uv_loop_t *loop, struct mua_account *account, const struct imapc_events *ev,
		 void *arg);
void pop3c_free(pop3c **cl);
void pop3c_connect(pop3c *cl);
void pop3c_set_reconnect(pop3c *cl, bool on);
enum imapc_state pop3c_get_state(const pop3c *cl);
bool pop3c_has_top(const pop3c *cl);
/* Queues a command (no CRLF); fails at once with "-ERR not connected" unless READY. */
void pop3c_command(pop3c *cl, const char *text, bool multiline, pop3c_done_cb *done, void *arg);
size_t pop3c_pending(const pop3c *cl);
/* QUIT after the queued commands: deletions take effect, then the connection closes. */
void pop3c_quit(pop3c *cl);

/* ---- a POP3 maildrop with its header cache (pop3box.c) ---- */

/* Flag bits the mua keeps for POP3 messages (the same bits as enum ui_flag). */
enum mua_flag { MF_SEEN = 1, MF_ANSWERED = 2, MF_FLAGGED = 4, MF_DELETED = 8, MF_DRAFT = 16 };

struct pop3_entry {
	char *uidl;
	uint32_t number;     /* in this session's maildrop (1-based) */
	uint32_t size;
	unsigned flags;      /* enum mua_flag */
	int64_t time;
	bool attachment;     /* multipart/mixed */
	bool have_headers;
	char *from, *from_addr, *subject, *message_id, *in_reply_to, *references;
};

struct pop3box;
/* ok, and the number of messages the cache did not know. */
typedef void pop3box_done_cb(void *arg, bool ok, const char *err, size_t new_count);
struct pop3box *pop3box_new(const char *cache_path);
void pop3box_free(struct pop3box **b);
char *pop3box_cache_path(const struct mua_account *a);
int pop3box_save(const struct pop3box *b, char **err_r);
size_t pop3box_count(const struct pop3box *b);
struct pop3_entry *pop3box_entry(struct pop3box *b, uint32_t number);
bool pop3box_refreshing(const struct pop3box *b);
/* UIDL, LIST, then TOP for unknown messages (progress after each batch). */
void pop3box_refresh(struct pop3box *b, pop3c *cl, pop3box_done_cb *progress,
		     pop3box_done_cb *done, void *arg);
/* The pure steps, for tests: a UIDL listing becomes the entries; headers fill one. */
void pop3box_take_uidl(struct pop3box *b, const char *data);
void pop3_entry_set_headers(struct pop3_entry *e, const char *text, size_t len);

/* ---- SMTP submission (smtpc.c) ---- */

typedef void smtpc_done_cb(void *arg, bool ok, const char *message);
/* Sends one message: connect, EHLO, STARTTLS, AUTH, MAIL, RCPT..., DATA. */
void smtpc_send(uv_loop_t *loop, struct mua_account *account, const char *from,
		char **recipients, size_t count, const char *message, size_t len,
		smtpc_done_cb *done, void *arg);

/* ---- message view (msgview.c) ---- */

struct msgview_attachment {
	char *section;      /* IMAP section / part path, e.g. "2" */
	char *filename;
	char *content_type;
	size_t size;        /* decoded size */
	const struct mime_part *part;
};

struct msgview {
	char *raw;          /* the message as fetched */
	size_t raw_len;
	struct mime_part *root;
	char *text;         /* what the pager shows: chosen headers, a blank line, the body */
	char *all_headers;  /* every header field, decoded */
	char *body_text;    /* the text alone (for quoting and forwarding) */
	char *from, *to, *cc, *date, *subject, *message_id, *in_reply_to, *references,
	     *reply_to;     /* decoded values ("" when absent) */
	char *from_raw, *to_raw, *cc_raw, *reply_to_raw; /* as written, for replies */
	struct msgview_attachment *attachments;
	size_t attachment_count;
};

/* Parses a message for display: always succeeds (malformed MIME is shown raw). */
struct msgview *msgview_new(const char *raw, size_t len);
void msgview_free(struct msgview **v);
/* Decodes attachment i: 0 and the bytes, or -1. */
int msgview_attachment_data(const struct msgview *v, size_t i, char **data_r, size_t *len_r);
/* HTML reduced to readable text (tags dropped, entities and breaks kept). */
char *msgview_html_to_text(const char *html, size_t len);

/* ---- threads (thread.c) ---- */

struct thread_input {
	const char *message_id;
	const char *in_reply_to;
	const char *references;
	const char *subject;
	int64_t date;          /* the Date header (unix seconds); 0 = missing or garbled */
	int64_t internal_date; /* INTERNALDATE, the fallback; 0 = unknown */
	uint32_t uid;          /* the last fallback (0 = the position decides) */
};

/* The orders the index offers (mutt's sort=threads, date, mailbox-order). */
enum mua_sort { MUA_SORT_THREADS, MUA_SORT_DATE, MUA_SORT_ARRIVAL, MUA_SORT_COUNT };

/* Orders n messages as threads: order_r[k] is the index of the k-th row and
 * depth_r[k] its depth (roots by date of their first message, children by
 * date). Caller frees both arrays. */
void thread_order(const struct thread_input *in, size_t n, size_t **order_r,
		  unsigned **depth_r);
/* The subject without Re:/Fwd: prefixes and list tags, for the fallback. */
char *thread_base_subject(const char *subject);
/* Orders n messages by date, oldest first: the Date header, else INTERNALDATE
 * (a message with neither counts as the oldest), ties by UID, then position.
 * order_r[k] is the index of the k-th row; caller frees it. */
void thread_date_order(const struct thread_input *in, size_t n, size_t **order_r);
/* A Date field's value as unix seconds; 0 when missing (NULL) or garbled. */
int64_t thread_date_value(const char *date);
/* An IMAP INTERNALDATE ("17-Jul-1996 02:44:25 -0700") as unix seconds; 0 when
 * missing or garbled. */
int64_t thread_internaldate_value(const char *internaldate);
/* The name of an order for the status line ("threads", "date", "arrival"). */
const char *mua_sort_name(enum mua_sort sort);

/* ---- search patterns (pattern.c) ---- */

/* Turns a mutt-style pattern ("~f alice ~N") into IMAP SEARCH keys. */
int mua_pattern_to_search(const char *pattern, char **search_r, char **err_r);

/* ---- scripting (script.c) and the screen (ui.c) ---- */

struct compose_attachment;
/* Reads a file into an attachment (name and guessed type filled). */
int mua_load_attachment(const char *path, struct compose_attachment *a, char **err_r);

int mua_script_send(uv_loop_t *loop, struct mua_account *a, int argc, char **argv);
int mua_script_list(uv_loop_t *loop, struct mua_account *a, int argc, char **argv);
int mua_script_read(uv_loop_t *loop, struct mua_account *a, int argc, char **argv);
int mua_ui_run(uv_loop_t *loop, struct mua_accounts *accounts, struct mua_account *first);

/* Envelope parsing shared by list and the index. */
struct mua_envelope {
	char *date;         /* as written */
	int64_t time;       /* parsed, 0 if not */
	char *subject;      /* decoded */
	char *from;         /* display: name or address, decoded */
	char *from_addr;    /* addr-spec */
	char *to;           /* display list */
	char *message_id;
	char *in_reply_to;
};
void mua_envelope_parse(const struct imap_arg *env, struct mua_envelope *out);
void mua_envelope_free(struct mua_envelope *e);
/* Looks up a FETCH item ("FLAGS", "ENVELOPE", "BODY[]") in a FETCH list; a
 * name with an unclosed bracket ("BODY[HEADER.FIELDS") matches as a prefix. */
const struct imap_arg *mua_fetch_item(const struct imap_arg *list, const char *name);
/* True when a BODYSTRUCTURE has a part with an attachment disposition or a name. */
bool mua_bodystructure_has_attachment(const struct imap_arg *bs);
/* Formats a date for the index ("Jan 05" or "14:02" today) into out. */
void mua_format_short_date(int64_t t, char *out, size_t cap);

#endif
