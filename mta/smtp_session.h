/* smtp_session.h: one SMTP server session, shared by smtp_session.c (states,
 * command table, input dispatch) and smtp_commands.c (the handlers) and
 * smtp_policy.c (the decisions). See smtp_session.c for the state diagram. */
#ifndef MAILSTACK_SMTP_SESSION_H
#define MAILSTACK_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "mta.h"
#include "net.h"
#include "sasl.h"

enum smtp_state {
	SMTP_STATE_INIT,       /* connected, no HELO/EHLO yet */
	SMTP_STATE_READY,      /* greeted, no transaction */
	SMTP_STATE_MAIL,       /* MAIL accepted, no recipient yet */
	SMTP_STATE_RCPT,       /* at least one recipient accepted */
	SMTP_STATE_DATA,       /* reading DATA lines up to "." */
	SMTP_STATE_BDAT,       /* between BDAT chunks */
	SMTP_STATE_BDAT_READ,  /* reading the bytes of one BDAT chunk */
	SMTP_STATE_AUTH,       /* waiting for the client's SASL response */
	SMTP_STATE_BUSY,       /* async work (commit, password check); input paused */
	SMTP_STATE_TLS,        /* STARTTLS handshake */
	SMTP_STATE_CLOSING,    /* 221/421 sent, closing */
	SMTP_STATE_COUNT
};

#define SMTP_STATE_BIT(s) (1u << (s))

struct smtp_txn_rcpt {
	char *orig;          /* the address as given in RCPT TO */
	char *orcpt;         /* "rfc822;addr" (decoded), or NULL */
	unsigned notify;     /* enum queue_notify */
	char **targets;      /* final addresses (userdb_strv_free) */
};

/* One mail transaction: MAIL to the end of the data. RSET just frees it. */
struct smtp_txn {
	char *sender;        /* "" for <> */
	char *envid;
	char *ret;           /* "FULL" / "HDRS" / NULL */
	bool smtputf8;
	bool body_8bit;
	struct smtp_txn_rcpt *rcpts;
	size_t rcpt_count, rcpt_cap;
	buf_t data;          /* the message as received (dot-unstuffed) */
	bool too_big;
	const char *data_error; /* a full reply line when the data must be refused */
	bool chunking;       /* BDAT was used */
	bool bare_line;      /* DATA: the last line ended in a bare LF (no end marker next) */
	bool prev_cr;        /* BDAT: the last byte seen was CR */
	size_t line_len;     /* BDAT: octets in the current line */
	bool bdat_last;      /* the chunk being read is the LAST one */
};

struct smtp_session {
	struct mta *m;
	conn *c;
	uint64_t id;
	enum mta_port port;
	enum smtp_state state;
	char *helo;
	bool esmtp;
	bool local;          /* unix submit socket: trusted */
	bool trusted;        /* from smtp.trusted_networks */
	char *auth_user;
	unsigned errors;
	unsigned junk_commands; /* NOOP/VRFY/HELP/RSET since the last message accepted */
	unsigned auth_failures;
	sasl_server *sasl;
	bool auth_final;     /* SCRAM: waiting for the empty reply to server-final */
	char *auth_pending;  /* the user name while auth_final */
	struct smtp_txn *txn;
	/* a refused BDAT whose bytes are being read and dropped */
	bool bdat_discard;
	const char *bdat_discard_reply;
	/* async work holds a conn_ref; on_close defers the free to it */
	bool async_pending;
	bool dead;
};

/* smtp_session.c */
void smtp_enter(struct smtp_session *s, enum smtp_state state);
/* Sends a reply line (CRLF added). */
void smtp_reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends an error reply, counts it, and disconnects with 421 past smtp.max_errors. */
void smtp_error(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void smtp_close(struct smtp_session *s, const char *reply);
void smtp_txn_free(struct smtp_txn **txn);
/* Back to READY (or INIT when not greeted) without a transaction. */
void smtp_reset(struct smtp_session *s);
/* The message is complete (DATA "." or BDAT LAST): check, queue and answer. */
void smtp_finish_message(struct smtp_session *s);
/* Starts async work: pauses input and keeps the connection alive. */
void smtp_async_begin(struct smtp_session *s);
/* Ends it: false when the session died meanwhile (it is freed then). */
bool smtp_async_end(struct smtp_session *s);
/* Counts BDAT bytes into the body checks (bare CR/LF, line length). */
void smtp_txn_scan_bytes(struct smtp_txn *txn, const char *data, size_t len);

/* smtp_commands.c */
typedef void smtp_command_fn(struct smtp_session *s, char *args);
smtp_command_fn smtp_cmd_ehlo, smtp_cmd_helo, smtp_cmd_mail, smtp_cmd_rcpt, smtp_cmd_data,
	smtp_cmd_bdat, smtp_cmd_rset, smtp_cmd_noop, smtp_cmd_quit, smtp_cmd_vrfy, smtp_cmd_expn,
	smtp_cmd_help, smtp_cmd_starttls, smtp_cmd_auth;
/* A line while in SMTP_STATE_AUTH. */
void smtp_auth_response(struct smtp_session *s, char *line, size_t len);
/* BDAT with bytes to drop then a reply (refused chunk). */
void smtp_bdat_discard(struct smtp_session *s, uint64_t size, const char *reply);

/* smtp_policy.c */
bool policy_may_relay(const struct smtp_session *s);
bool policy_needs_auth(const struct smtp_session *s);
bool policy_auth_offered(const struct smtp_session *s);
/* Checks a sender: 0, or -1 with *reply_r (static text). */
int policy_check_sender(struct smtp_session *s, const char *sender, const char **reply_r);
/* Checks a recipient and resolves it: 0 and *targets_r, or -1 with *reply_r (allocated). */
int policy_check_rcpt(struct smtp_session *s, const char *address, char ***targets_r,
		      char **reply_r);

#endif
