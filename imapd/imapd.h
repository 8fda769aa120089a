/* imapd.h: what the modules of the IMAP server share: the server context, the
 * session with its state, the parsed command, and each module's entry points.
 *
 * One imap_session per connection. Its state (NOT_AUTHENTICATED ->
 * AUTHENTICATED <-> SELECTED -> LOGOUT) changes only through
 * imap_session_enter. A command is parsed whole (imap_parser) into a
 * struct imap_cmd, looked up in the command table (imap_session.c) which
 * checks the state, and run by its handler; the handler answers with
 * imap_cmd_finish (maybe later, after async work), which first delivers the
 * untagged mailbox updates that RFC 3501 7.4.1 allows at that point. */
#ifndef MAILSTACK_IMAPD_H
#define MAILSTACK_IMAPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buffer.h"
#include "daemon.h"
#include "header.h"
#include "mime.h"
#include "imap_parser.h"
#include "imap_seqset.h"
#include "net.h"
#include "sasl.h"
#include "store.h"
#include "store_search.h"

#define IMAP_PORT 143
#define IMAPS_PORT 993
enum imap_listener { IMAP_LISTENER_PLAIN = 1, IMAP_LISTENER_TLS = 2 };

/* The server: settings read once, and the shared mailbox stores. */
struct imapd {
	struct daemon *d;
	net_server *srv;
	bool allow_plaintext_auth;
	uint64_t max_literal;
	size_t max_line;
	uint64_t idle_timeout_ms;
	unsigned max_auth_failures;
	struct imap_mailstore *stores; /* open user stores, shared by sessions */
};

/* One user's store, opened once and shared by every session of that user,
 * with one watcher on its change-notification file. */
struct imap_mailstore {
	struct imap_mailstore *next;
	struct imapd *server;
	char *user;
	store *st;
	store_query *query;       /* reads by UID range, first unseen (store_search.h) */
	uv_fs_event_t *watcher;   /* NULL when the notify file could not be watched */
	unsigned refs;
	struct imap_session **sessions;
	size_t session_count, session_cap;
};

enum imap_state {
	IMAP_STATE_NOT_AUTHENTICATED,
	IMAP_STATE_AUTHENTICATED,
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT,
};
#define IMAP_STATE_BIT(s) (1u << (s))

/* How the next input line is read. */
enum imap_input {
	IMAP_INPUT_COMMAND,    /* lines and literals feed the parser */
	IMAP_INPUT_SASL,       /* a SASL response line */
	IMAP_INPUT_IDLE,       /* waiting for DONE */
	IMAP_INPUT_APPEND,     /* literal bytes go to the store */
	IMAP_INPUT_DISCARD,    /* literal bytes are dropped (refused LITERAL+) */
	IMAP_INPUT_BUSY,       /* a command is running; input waits (conn paused) */
};

struct imap_cmd {
	char *tag;
	char *name;                 /* upper-cased */
	const struct imap_arg *args; /* after the command name (and after UID) */
	size_t count;
	bool uid;                   /* UID FETCH/STORE/... */
	const struct imap_command_def *def;
};

/* A run of consecutive UIDs in the view: first, first + 1, ..., first + len - 1
 * at indexes start .. start + len - 1. */
struct imap_uid_run {
	uint32_t first;
	uint32_t len;
	size_t start;
};

/* The selected mailbox's view: sequence number = index + 1; the UIDs kept as
 * runs of consecutive values, so a folder of 100,000 messages delivered in
 * order costs one run per session, not 400 KB (imap_view_uid reads one). */
struct imap_view {
	char *folder;               /* UTF-8 */
	bool readonly;
	uint32_t uidvalidity;
	struct imap_uid_run *runs;  /* ascending, none empty, starts cumulative */
	size_t run_count, run_cap;
	size_t count;               /* messages in the view */
	uint64_t known_modseq;      /* flag changes and arrivals up to here were reported */
	uint64_t expunge_modseq;    /* expunges up to here were reported */
	uint32_t *recent_uids;      /* \Recent for this session, ascending */
	size_t recent_len;
	/* Flag changes already reported (or made here silently) beyond known_modseq. */
	struct { uint32_t uid; uint64_t modseq; } *reported;
	size_t reported_count, reported_cap;
};

struct imap_fetch_ctx;
struct imap_append_ctx;

struct imap_session {
	conn *c;
	uint64_t id;
	struct imapd *server;
	enum imap_state state;
	enum imap_input input;
	imap_parser *parser;
	unsigned auth_failures;
	unsigned bad_commands;      /* BAD replies in a row */
	char *user;
	struct imap_mailstore *ms;
	struct imap_view *view;
	bool condstore;             /* CONDSTORE enabled (ENABLE or a CONDSTORE command) */
	bool utf8_accept;
	/* the command being run (owned while input is BUSY/SASL/IDLE/APPEND) */
	struct imap_cmd cmd;
	bool cmd_active;
	sasl_server *sasl;
	struct imap_fetch_ctx *fetch;
	struct imap_append_ctx *append;
	uint64_t discard_left;
	bool skip_line;             /* the rest of a refused command follows a dropped literal */
	bool idle_dirty;
	/* Untagged lines of the running command, for imap_write_bulk. */
	uint64_t bulk_lines, bulk_quiet_lines, bulk_quiet_octets;
};

/* A command handler: runs the command and calls imap_cmd_finish (now or later). */
typedef void imap_command_fn(struct imap_session *s, struct imap_cmd *cmd);

enum imap_command_flag {
	IMAP_CMD_FLAG_UID = 1 << 0,          /* may follow UID */
	IMAP_CMD_FLAG_NO_EXPUNGE = 1 << 1,   /* no EXPUNGE responses after it (FETCH, STORE, SEARCH) */
	IMAP_CMD_FLAG_BEFORE_TLS = 1 << 2,   /* allowed when plaintext auth is off and no TLS */
};

struct imap_command_def {
	const char *name;
	imap_command_fn *run;
	unsigned states;   /* IMAP_STATE_BIT mask */
	unsigned flags;
};

/* ---- imap_session.c ---- */
extern const struct conn_handlers imap_conn_handlers;
void imap_session_enter(struct imap_session *s, enum imap_state state);
/* Writes an untagged or continuation line (fmt without CRLF). */
void imap_send(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes untagged responses of the running command (whole lines). The first
 * IMAP_TRANSCRIPT_BULK_LINES of a command go to the transcript as usual; the
 * rest are sent without it and summed up in one transcript line before the
 * tagged reply, so FETCH 1:* on a big folder neither floods log/ nor spends
 * its time writing it. */
#define IMAP_TRANSCRIPT_BULK_LINES 200
void imap_write_bulk(struct imap_session *s, const char *data, size_t len);
/* Delivers allowed updates, then the tagged reply "tag STATUS text", and
 * returns the session to reading commands. */
void imap_cmd_finish(struct imap_session *s, struct imap_cmd *cmd, const char *status,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The CAPABILITY list for the session's state. */
void imap_capabilities(struct imap_session *s, buf_t *out);
/* Reads an astring/mailbox argument as a UTF-8 folder name (decodes modified
 * UTF-7, maps INBOX); NULL with a NO/BAD already sent when it is not valid. */
char *imap_arg_mailbox(struct imap_session *s, struct imap_cmd *cmd, const struct imap_arg *a);
/* Sends the reply for a store error (NO with a response code, or NO [SERVERBUG]). */
void imap_cmd_store_error(struct imap_session *s, struct imap_cmd *cmd, int err,
			  const char *what);
/* Parses a flag list "(\Seen foo)" or a single flag into bits and keywords. */
int imap_parse_flags(const struct imap_arg *a, uint32_t *flags_r, char **keywords_r);
/* Appends "(\Seen \Answered kw)" for flags and keywords. */
void imap_format_flags(buf_t *out, uint32_t flags, const char *keywords, bool recent);

/* ---- imap_auth.c ---- */
void imap_cmd_login(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_authenticate(struct imap_session *s, struct imap_cmd *cmd);
void imap_auth_line(struct imap_session *s, const char *line, size_t len);
void imap_auth_abort(struct imap_session *s);

/* ---- imap_mailstore.c ---- */
int imap_mailstore_open(struct imap_session *s, const char *user, char **err_r);
void imap_mailstore_release(struct imap_session *s);

/* ---- imap_list.c ---- */
void imap_cmd_list(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_lsub(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_create(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_delete(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_rename(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_subscribe(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_unsubscribe(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_status(struct imap_session *s, struct imap_cmd *cmd);
/* Writes "* STATUS name (items)" for a list of status item atoms. */
int imap_status_write(struct imap_session *s, const char *folder, const struct imap_arg *items,
		      size_t count, char **err_r);

/* ---- imap_append.c ---- */
void imap_cmd_append(struct imap_session *s, struct imap_cmd *cmd);
/* A literal header arrived while parsing APPEND: 1 = taken (streams to the
 * store), 0 = not an APPEND message literal, -1 = refused (reply sent). */
int imap_append_literal(struct imap_session *s, uint64_t size, bool sync);
void imap_append_bytes(struct imap_session *s, const char *data, size_t len, bool last);
void imap_append_abort(struct imap_session *s);

/* ---- imap_mailbox_view.c ---- */
void imap_cmd_select(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_examine(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_close(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_unselect(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_check(struct imap_session *s, struct imap_cmd *cmd);
void imap_view_free(struct imap_view **v);
/* Sends EXISTS/RECENT/FETCH/EXPUNGE for changes by others since the last sync. */
void imap_view_sync(struct imap_session *s, bool allow_expunge);
/* Resolves a sequence or UID set to ascending view indexes (caller frees). */
int imap_view_resolve(struct imap_view *v, const char *set_text, bool uid, size_t **idx_r,
		      size_t *count_r, char **err_r);
/* The store rows of the view's messages at ascending indexes idx (those
 * still in the store; a UID range may bring others in between: callers
 * match by UID). Free with store_msg_list_free. */
int imap_view_load_msgs(struct imap_session *s, const size_t *idx, size_t n,
			struct store_msg **list_r, size_t *count_r);
/* The index of a UID in the view, or -1. */
long imap_view_find_uid(const struct imap_view *v, uint32_t uid);
/* The UID at an index (< count); the last UID (0 for an empty view). */
uint32_t imap_view_uid(const struct imap_view *v, size_t index);
uint32_t imap_view_last_uid(const struct imap_view *v);
/* Removes an expunged UID and sends "* n EXPUNGE". */
void imap_view_expunged(struct imap_session *s, uint32_t uid);
/* Records a flag change this session reported itself (no FETCH again at sync). */
void imap_view_note_reported(struct imap_view *v, uint32_t uid, uint64_t modseq);
bool imap_view_is_recent(const struct imap_view *v, uint32_t uid);
/* Called by the mailstore watcher: a session in IDLE gets its updates now. */
void imap_view_changed(struct imap_session *s);

/* ---- imap_fetch.c ---- */
void imap_cmd_fetch(struct imap_session *s, struct imap_cmd *cmd);
void imap_fetch_abort(struct imap_session *s);

/* ---- imap_bodystructure.c ---- */
/* The ENVELOPE / BODYSTRUCTURE / BODY text of a message (caller frees), from
 * the cache or computed and cached. */
char *imap_envelope(store *st, const char *folder, uint32_t uid);
char *imap_bodystructure(store *st, const char *folder, uint32_t uid, bool extended);
/* Where a part lies in the raw message (octet offsets and lengths). */
struct imap_part_range {
	uint64_t header_offset, header_len; /* its MIME header, with the blank line */
	uint64_t body_offset, body_len;
	bool is_message;                    /* message/rfc822: an encapsulated message */
	uint64_t inner_header_len;          /* that message's header section */
};
/* Finds the part at an IMAP section number ("1.2") from the message's part
 * map (cached; made now when missing); -1 when there is no such part. */
int imap_part_find(store *st, const char *folder, uint32_t uid, const char *section,
		   struct imap_part_range *r);
/* Pure formatting from a parsed message (for tests and the cache). */
void imap_envelope_format(buf_t *out, const struct header *h);
void imap_bodystructure_format(buf_t *out, const char *msg, const struct mime_part *part,
			       bool extended);

/* ---- imap_search.c ---- */
void imap_cmd_search(struct imap_session *s, struct imap_cmd *cmd);

/* ---- imap_store.c ---- */
void imap_cmd_store(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_copy(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_move(struct imap_session *s, struct imap_cmd *cmd);
void imap_cmd_expunge(struct imap_session *s, struct imap_cmd *cmd);
/* Expunges the \Deleted messages (only those in `only`, ascending, when not
 * NULL), logs each, and with report sends the EXPUNGE responses. */
int imap_store_expunge(struct imap_session *s, const uint32_t *only, size_t only_count,
		       bool report);

/* ---- imap_idle.c ---- */
void imap_cmd_idle(struct imap_session *s, struct imap_cmd *cmd);
void imap_idle_line(struct imap_session *s, const char *line, size_t len);

#endif
