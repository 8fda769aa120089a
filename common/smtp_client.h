/* smtp_client.h: one SMTP (RFC 5321) and LMTP (RFC 2033) client conversation
 * on a net.h conn, for every program that sends mail: the mta's relay and its
 * LMTP pool, the mda's redirects and vacation replies, the mua's submission.
 *
 * A session connects (TCP or unix socket), reads the greeting, sends EHLO (or
 * LHLO; HELO when an SMTP server refuses EHLO), optionally STARTTLS and EHLO
 * again, optionally AUTH (PLAIN, LOGIN, SCRAM-SHA-256 through sasl.h), and is
 * then READY: the owner hands it one message at a time with smtp_client_send.
 * MAIL, every RCPT and DATA go out in one write when the server offers
 * PIPELINING (always for LMTP), the body is streamed dot-stuffed with
 * backpressure, and the owner gets one result per message: a reply per
 * recipient (the one that decided its fate) and the message's final reply.
 * After a transaction that did not end with the data, RSET; the session is
 * READY again. smtp_client_quit ends it politely.
 *
 * Callbacks, in order: greeted (optional), ready (each time the session
 * becomes idle), message_done (once per smtp_client_send, also when the
 * session breaks in the middle: complete = false), closed (exactly once,
 * last; the session is freed when it returns). Every callback may call
 * smtp_client_send (in ready), smtp_client_quit or smtp_client_abort.
 *
 * Replies are parsed here once: multi-line replies (RFC 5321 4.2.1), bounded
 * in line length and line count, with the enhanced status code (RFC 2034,
 * RFC 3463) split out. The parser is resumable and usable alone (tests,
 * fuzzing, other clients). */
#ifndef MAILSTACK_SMTP_CLIENT_H
#define MAILSTACK_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buffer.h"
#include "net.h"
#include "tls.h"

/* A reply line, CRLF excluded (RFC 5321 4.5.3.1.5 says 512; servers send more). */
#define SMTP_REPLY_MAX_LINE 2048
/* Lines in one multi-line reply (an EHLO reply lists one extension a line). */
#define SMTP_REPLY_MAX_LINES 64

/* ---- replies ---- */

struct smtp_client_reply {
	int code;         /* 0 = no reply */
	char status[16];  /* enhanced status code "5.1.1"; "N.0.0" from the class when none was sent */
	bool enhanced;    /* status came from the server */
	char *text;       /* every line with its code, joined with "\n" (owned; NULL when code is 0) */
};

/* The reply as one line for logs and reports ("550 5.1.1 No such user"),
 * lines joined with spaces (caller frees). */
char *smtp_client_reply_oneline(const struct smtp_client_reply *r);
void smtp_client_reply_copy(struct smtp_client_reply *dst, const struct smtp_client_reply *src);
/* Frees the text and zeroes the reply. */
void smtp_client_reply_clear(struct smtp_client_reply *r);

struct smtp_reply_parser {
	buf_t partial;     /* bytes mode: the line read so far */
	buf_t text;        /* the lines of the reply so far */
	size_t lines;
	int code;
	struct smtp_client_reply reply; /* the last complete reply */
	const char *error; /* why the last call returned -1 (static text) */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
void smtp_reply_parser_free(struct smtp_reply_parser *p);
/* Forgets a partial reply and the last complete one. */
void smtp_reply_parser_reset(struct smtp_reply_parser *p);
/* Takes one line without its line end: 1 = p->reply holds a complete reply
 * (until the next call), 0 = more lines to come, -1 = malformed (p->error). */
int smtp_reply_parser_line(struct smtp_reply_parser *p, const char *line, size_t len);
/* Takes bytes as they come (lines end in CRLF or LF): 1 = a complete reply
 * in p->reply after *used_r bytes, 0 = every byte used and more are needed,
 * -1 = malformed or a line over SMTP_REPLY_MAX_LINE. */
int smtp_reply_parser_feed(struct smtp_reply_parser *p, const char *data, size_t len,
			   size_t *used_r);

/* ---- the client session ---- */

typedef struct smtp_client smtp_client;

enum smtp_client_protocol {
	SMTP_CLIENT_SMTP,
	SMTP_CLIENT_LMTP,
};

enum smtp_client_tls_mode {
	SMTP_CLIENT_TLS_NONE,          /* never STARTTLS */
	SMTP_CLIENT_TLS_OPPORTUNISTIC, /* STARTTLS when offered; plaintext if not or refused */
	SMTP_CLIENT_TLS_REQUIRED,      /* STARTTLS or give up before MAIL or AUTH */
	SMTP_CLIENT_TLS_IMPLICIT,      /* TLS from the first byte (port 465) */
};

/* Which command a recipient's deciding reply answered. */
enum smtp_client_stage {
	SMTP_STAGE_NONE,        /* no reply: the session ended first */
	SMTP_STAGE_MAIL,
	SMTP_STAGE_RCPT,
	SMTP_STAGE_DATA,
	SMTP_STAGE_END_OF_DATA,
};

/* "MAIL FROM", "RCPT TO", "DATA", "end of DATA" ("" for NONE). */
const char *smtp_client_stage_name(enum smtp_client_stage stage);

/* Why a session ended. */
enum smtp_client_failure {
	SMTP_CLIENT_QUIT,       /* QUIT answered (or no failure) */
	SMTP_CLIENT_CONNECT,    /* the connection could not be made (error) */
	SMTP_CLIENT_REFUSED,    /* a reply ended the session (command, reply) */
	SMTP_CLIENT_NO_TLS,     /* TLS required but STARTTLS not offered */
	SMTP_CLIENT_TLS_FAILED, /* the TLS handshake failed (error) */
	SMTP_CLIENT_NO_AUTH,    /* credentials given but no usable mechanism offered */
	SMTP_CLIENT_AUTH_FAILED, /* the server's SASL data did not verify (SCRAM) */
	SMTP_CLIENT_LOST,       /* the server closed the connection */
	SMTP_CLIENT_TIMEOUT,    /* no reply within the stage's timeout */
	SMTP_CLIENT_PROTOCOL,   /* a malformed or over-long reply (error) */
	SMTP_CLIENT_ABORTED,    /* smtp_client_abort, or the body reader failed */
};

struct smtp_client_end {
	enum smtp_client_failure failure;
	const char *state;      /* the state it ended in ("GREETING", "MAIL", ...) */
	const char *command;    /* REFUSED: what the reply answered ("greeting", "EHLO",
				 * "HELO", "LHLO", "STARTTLS", "AUTH", "RSET"), else NULL */
	const struct smtp_client_reply *reply; /* REFUSED: the reply, else NULL */
	const char *error;      /* a description for the other failures, else NULL */
};

struct smtp_client_rcpt_result {
	enum smtp_client_stage stage;   /* what reply decided this recipient */
	struct smtp_client_reply reply; /* that reply (code 0 with stage NONE) */
	bool accepted;                  /* 2xx to its RCPT */
};

struct smtp_client_result {
	const struct smtp_client_rcpt_result *rcpts; /* one per recipient, in order */
	size_t rcpt_count;
	size_t accepted;                        /* recipients accepted at RCPT */
	const struct smtp_client_reply *mail;   /* the reply to MAIL (code 0: none) */
	const struct smtp_client_reply *data;   /* to DATA: 354 or a refusal (code 0: none) */
	const struct smtp_client_reply *final;  /* SMTP: to the end of data; LMTP: the last
						 * recipient's (code 0: none) */
	bool complete;                          /* false: the session ended before every reply */
};

/* A body source: 1 with the next chunk (valid until the next call), 0 at the
 * end, -1 on error (the session is aborted: there is no way to cancel DATA). */
typedef int smtp_client_body_reader(void *arg, const char **chunk_r, size_t *len_r);

struct smtp_client_message {
	const char *sender;             /* reverse-path without <>; "" = the null sender */
	const char *mail_params;        /* "SIZE=123 BODY=8BITMIME", or NULL */
	const char *const *rcpts;       /* forward-paths without <> */
	const char *const *rcpt_params; /* per recipient ("NOTIFY=NEVER"), or NULL (or NULL entries) */
	size_t rcpt_count;
	const char *data;               /* the message, kept valid by the owner until message_done */
	size_t len;
	smtp_client_body_reader *reader; /* instead of data when not NULL */
	void *reader_arg;
};

struct smtp_client_callbacks {
	/* Optional: the 220 greeting arrived (smtp_client_abort here hangs up). */
	void (*greeted)(smtp_client *cl, const struct smtp_client_reply *greeting, void *arg);
	/* The session is idle: send a message, quit, or wait (keep the session). */
	void (*ready)(smtp_client *cl, void *arg);
	/* A transaction ended; the result is valid during the call only. */
	void (*message_done)(smtp_client *cl, const struct smtp_client_result *result, void *arg);
	/* Exactly once, last; cl is freed when this returns. */
	void (*closed)(smtp_client *cl, const struct smtp_client_end *end, void *arg);
	/* Optional: each line sent ('C', secrets masked) or received ('S'). */
	void (*transcript)(smtp_client *cl, char dir, const char *line, size_t len, void *arg);
};

struct smtp_client_opts {
	enum smtp_client_protocol protocol;
	const char *helo_name;          /* the EHLO/LHLO argument */
	enum smtp_client_tls_mode tls_mode;
	tls_ctx *tls;                   /* for STARTTLS or implicit TLS (not owned) */
	const char *tls_server_name;    /* SNI and the name to verify, or NULL */
	const char *auth_user;          /* NULL = no AUTH */
	const char *auth_password;
	const char *auth_mechanism;     /* "PLAIN", "LOGIN", "SCRAM-SHA-256"; NULL = the best offered */
	double timeout_scale;           /* times the RFC 5321 4.5.3.2 timeouts; 0 = 1 */
	bool require_all_rcpts;         /* DATA only when every RCPT was accepted, else RSET */
	bool normalize_newlines;        /* send a bare LF in the body as CRLF */
	const char *transcript_proto;   /* the conn's proto in transcripts; NULL = "smtp"/"lmtp" */
};

/* Starts a session. 0: *cl_r is set and the callbacks will come (closed
 * exactly once). -1: *err_r says why and no callback is called. */
int smtp_client_connect_tcp(uv_loop_t *loop, const char *host, int port,
			    const struct smtp_client_opts *opts,
			    const struct smtp_client_callbacks *callbacks, void *arg,
			    smtp_client **cl_r, char **err_r);
int smtp_client_connect_unix(uv_loop_t *loop, const char *path,
			     const struct smtp_client_opts *opts,
			     const struct smtp_client_callbacks *callbacks, void *arg,
			     smtp_client **cl_r, char **err_r);

/* Starts a transaction; only when READY (from or after the ready callback).
 * Strings are copied; the data (or the reader) must stay valid until
 * message_done. */
void smtp_client_send(smtp_client *cl, const struct smtp_client_message *msg);
/* Ends the session: QUIT when no transaction runs (closed comes after the
 * 221), else as smtp_client_abort. */
void smtp_client_quit(smtp_client *cl);
/* Closes at once; a running transaction ends incomplete. */
void smtp_client_abort(smtp_client *cl);

bool smtp_client_is_ready(const smtp_client *cl);
/* What the last EHLO/LHLO offered: the keyword's parameters ("" when it has
 * none), or NULL when not offered. Keywords are case-insensitive. */
const char *smtp_client_extension(const smtp_client *cl, const char *keyword);
bool smtp_client_has_extension(const smtp_client *cl, const char *keyword);
/* True when the keyword was offered with `param` among its parameters (AUTH PLAIN). */
bool smtp_client_extension_has_param(const smtp_client *cl, const char *keyword,
				     const char *param);
/* The AUTH mechanism used, or NULL. */
const char *smtp_client_auth_mechanism(const smtp_client *cl);
bool smtp_client_is_tls(const smtp_client *cl);
/* The connection (NULL before it is made), for TLS details and logs. */
conn *smtp_client_conn(const smtp_client *cl);
/* The state's name ("READY"). */
const char *smtp_client_state_name(const smtp_client *cl);

#endif
