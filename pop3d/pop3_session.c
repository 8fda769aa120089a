/* pop3_session.c: one POP3 session (RFC 1939) with CAPA and response codes
 * (RFC 2449), STLS (RFC 2595) and AUTH (RFC 5034).
 *
 * States, changed only through session_enter(), which logs each move:
 *
 *   AUTHORIZATION --USER/PASS or AUTH ok--> TRANSACTION --QUIT--> UPDATE --> closed
 *        |   ^                                   |
 *        |   +-- SASL done/failed --+            +-- connection lost: nothing removed
 *        +--AUTH--> SASL ------------+
 *
 * While a command waits for something asynchronous (on the thread pool: a
 * password check, the maildrop being opened, the deletions being committed;
 * on the loop: a message streaming out) the connection's input is paused, so
 * pipelined commands (RFC 2449 6.6) are answered strictly in order. Every bad input gets a precise -ERR and the
 * session goes on; too many failed logins close it.
 *
 * Invariants: `user` is set only in TRANSACTION and UPDATE, and then the
 * maildrop lock for it is held by this session; the maildrop is open exactly
 * in those states. While a login's maildrop is being opened the lock is held
 * by that job, which hands it to the session or releases it. */
#include "pop3.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buffer.h"
#include "log.h"
#include "sasl.h"

enum pop3_state {
	POP3_AUTHORIZATION,
	POP3_SASL,
	POP3_TRANSACTION,
	POP3_UPDATE,
};

static const char *const pop3_state_names[] = {
	[POP3_AUTHORIZATION] = "AUTHORIZATION",
	[POP3_SASL] = "SASL",
	[POP3_TRANSACTION] = "TRANSACTION",
	[POP3_UPDATE] = "UPDATE",
};

struct pop3_session {
	conn *c;
	struct pop3_server *server;
	enum pop3_state state;
	char *pending_user;     /* from USER, waiting for PASS */
	char *user;             /* the authenticated user (TRANSACTION, UPDATE) */
	unsigned auth_failures;
	sasl_server *sasl;
	struct pop3_maildrop drop;
	bool drop_open;
	bool busy;              /* an async step is running: input is paused */
	bool orphaned;          /* the connection closed while busy: free when the step ends */
};

/* Bits for the states a command is valid in. */
#define IN_AUTH (1u << POP3_AUTHORIZATION)
#define IN_TRANS (1u << POP3_TRANSACTION)

struct pop3_command {
	const char *name;
	unsigned states;
	void (*handler)(struct pop3_session *s, char *args);
};

/* The one way to change state: logs old -> new. */
static void session_enter(struct pop3_session *s, enum pop3_state state)
{
	if (s->state == state)
		return;
	log_kv(LOG_DEBUG, conn_id(s->c), "state", "from", pop3_state_names[s->state], "to",
	       pop3_state_names[state], NULL);
	s->state = state;
}

/* The daemon a session belongs to (config, TLS, users). */
static struct daemon *session_daemon(const struct pop3_session *s)
{
	return s->server->daemon;
}

/* RFC 2595 2: passwords go only over TLS unless the config allows plaintext. */
static bool plaintext_auth_allowed(const struct pop3_session *s)
{
	return conn_is_tls(s->c) ||
	       config_bool(session_daemon(s)->cfg, "server.allow_plaintext_auth");
}

static void reply(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Sends one response line; the CRLF is added here. */
static void reply(struct pop3_session *s, const char *fmt, ...)
{
	buf_t line = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&line, fmt, ap);
	va_end(ap);
	buf_append(&line, "\r\n", 2);
	conn_write(s->c, line.data, line.len);
	buf_free(&line);
}

static void session_free(struct pop3_session *s);

/* Pauses input while an asynchronous step runs (keeps pipelined commands
 * queued). The session outlives its connection until the step ends. */
static void session_busy(struct pop3_session *s)
{
	s->busy = true;
	conn_pause(s->c);
	conn_ref(s->c);
}

/* Ends an asynchronous step; false (and the session is gone) if the
 * connection closed meanwhile. */
static bool session_unbusy(struct pop3_session *s)
{
	conn *c = s->c;
	s->busy = false;
	if (s->orphaned) {
		session_free(s);
		conn_unref(c);
		return false;
	}
	conn_unref(c);
	if (conn_is_closing(c))
		return false;
	conn_resume(c);
	return true;
}

/* ---- argument parsing ---- */

/* Splits the next space-separated word off *args; NULL when none is left. */
static char *next_word(char **args)
{
	char *p = *args;
	while (*p == ' ')
		p++;
	if (*p == '\0') {
		*args = p;
		return NULL;
	}
	char *word = p;
	while (*p != '\0' && *p != ' ')
		p++;
	if (*p == ' ')
		*p++ = '\0';
	*args = p;
	return word;
}

/* Parses a decimal number of at most 9 digits (no sign); -1 if it is not one. */
static long parse_number(const char *word)
{
	if (word == NULL || *word == '\0' || strlen(word) > 9)
		return -1;
	long n = 0;
	for (const char *p = word; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		n = n * 10 + (*p - '0');
	}
	return n;
}

/* Finds the message named by the next argument, answering -ERR itself when
 * there is none: missing, not a number, out of range, or marked deleted. */
static struct pop3_message *message_arg(struct pop3_session *s, char **args, long *number_r)
{
	char *word = next_word(args);
	if (word == NULL) {
		reply(s, "-ERR Missing message number");
		return NULL;
	}
	long n = parse_number(word);
	if (n < 0) {
		reply(s, "-ERR Invalid message number: %s", word[0] == '-' ? "negative" : "not a number");
		return NULL;
	}
	if (n < 1 || (size_t)n > s->drop.count) {
		reply(s, "-ERR No such message");
		return NULL;
	}
	struct pop3_message *m = &s->drop.messages[n - 1];
	if (m->deleted) {
		reply(s, "-ERR Message %ld is deleted", n);
		return NULL;
	}
	*number_r = n;
	return m;
}

/* True when args holds another word (without consuming it). */
static bool has_args(const char *args)
{
	return args[strspn(args, " ")] != '\0';
}

/* True when args is used up; otherwise answers -ERR itself. */
static bool no_more_args(struct pop3_session *s, char *args)
{
	if (next_word(&args) != NULL) {
		reply(s, "-ERR Too many arguments");
		return false;
	}
	return true;
}

/* ---- AUTHORIZATION ---- */

/* CAPA (RFC 2449 5): what this state offers; USER/SASL only where a login may follow. */
static void cmd_capa(struct pop3_session *s, char *args)
{
	bool auth_ok = plaintext_auth_allowed(s);
	reply(s, "+OK Capability list follows");
	if (s->state == POP3_AUTHORIZATION) {
		if (auth_ok) {
			reply(s, "USER");
			reply(s, "SASL %s", sasl_mechanisms());
		}
		if (!conn_is_tls(s->c) && session_daemon(s)->tls != NULL)
			reply(s, "STLS");
	}
	reply(s, "TOP");
	reply(s, "UIDL");
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");
	reply(s, "PIPELINING");
	/* RFC 2449 6.5/6.7: a value that differs per user is given with USER
	 * before login; ours is the same for everyone. */
	reply(s, "EXPIRE NEVER");
	reply(s, "LOGIN-DELAY 0");
	if (s->state == POP3_TRANSACTION)
		reply(s, "IMPLEMENTATION mailstack");
	reply(s, ".");
}

/* STLS (RFC 2595 4): +OK, then the handshake; net.c drops pipelined plaintext. */
static void cmd_stls(struct pop3_session *s, char *args)
{
	if (!no_more_args(s, args))
		return;
	if (conn_is_tls(s->c)) {
		reply(s, "-ERR Already using TLS");
		return;
	}
	if (session_daemon(s)->tls == NULL) {
		reply(s, "-ERR [SYS/PERM] TLS is not available");
		return;
	}
	reply(s, "+OK Begin TLS negotiation");
	conn_start_tls(s->c);
}

/* USER: remembers the name for the PASS that must follow. */
static void cmd_user(struct pop3_session *s, char *args)
{
	if (!plaintext_auth_allowed(s)) {
		reply(s, "-ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)");
		return;
	}
	char *name = next_word(&args);
	if (name == NULL) {
		reply(s, "-ERR Missing user name");
		return;
	}
	if (!no_more_args(s, args))
		return;
	free(s->pending_user);
	s->pending_user = xstrdup(name);
	reply(s, "+OK Send the password with PASS");
}

/* Counts a failed login and answers it; too many close the connection. */
static void session_auth_failed(struct pop3_session *s, const char *text)
{
	s->auth_failures++;
	unsigned max = (unsigned)config_int(session_daemon(s)->cfg, "server.max_auth_failures");
	reply(s, "-ERR [AUTH] %s", text);
	if (s->auth_failures >= max) {
		log_kv(LOG_WARN, conn_id(s->c), "too many authentication failures", "remote",
		       conn_peer_addr(s->c), NULL);
		reply(s, "-ERR [AUTH] Too many authentication failures, closing");
		conn_close(s->c);
	}
}

/* A login's maildrop opening, run on the thread pool: opening the store (and
 * migrating it) and listing a big INBOX must not stall the loop. */
struct pop3_login_job {
	uv_work_t work;
	struct pop3_session *s;
	struct pop3_server *server;
	const char *datadir;
	char *user;
	struct pop3_maildrop drop;
	int result;
	bool temporary;
	char *err;
};

/* On a pool thread: opens the store and takes the snapshot. */
static void login_work(uv_work_t *work)
{
	struct pop3_login_job *job = work->data;
	job->result = pop3_maildrop_open(job->datadir, job->user, &job->drop, &job->temporary,
					 &job->err);
}

/* Back on the loop: enters TRANSACTION, or answers why not. Whatever the
 * session can no longer take (the client left) is released here. */
static void login_done(uv_work_t *work, int status)
{
	struct pop3_login_job *job = work->data;
	struct pop3_session *s = job->s;
	if (status != 0 && job->result == 0) {
		pop3_maildrop_close(&job->drop);
		job->result = -1;
		job->temporary = true;
		job->err = xstrdup(uv_strerror(status));
	}
	if (job->result < 0) {
		log_kv(LOG_ERROR, conn_id(s->c), "cannot open maildrop", "user", job->user, "error",
		       job->err, NULL);
		pop3_server_unlock(job->server, job->user);
		if (session_unbusy(s))
			reply(s, "-ERR [SYS/%s] Cannot open the mailbox",
			      job->temporary ? "TEMP" : "PERM");
	} else if (!session_unbusy(s)) {
		pop3_maildrop_close(&job->drop);
		pop3_server_unlock(job->server, job->user);
	} else {
		s->drop = job->drop;
		s->drop_open = true;
		s->user = xstrdup(job->user);
		conn_set_user(s->c, s->user);
		session_enter(s, POP3_TRANSACTION);
		size_t count;
		uint64_t octets;
		pop3_maildrop_stat(&s->drop, &count, &octets);
		log_kv(LOG_INFO, conn_id(s->c), "login", "user", s->user, "tls",
		       conn_is_tls(s->c) ? "yes" : "no", NULL);
		reply(s, "+OK Logged in, %zu messages (%" PRIu64 " octets)", count, octets);
	}
	free(job->err);
	free(job->user);
	free(job);
}

/* Enters TRANSACTION for user: takes the maildrop lock here, then the
 * snapshot on the thread pool (input paused meanwhile). */
static void session_login(struct pop3_session *s, const char *user)
{
	if (!pop3_server_lock(s->server, user)) {
		log_kv(LOG_INFO, conn_id(s->c), "maildrop in use", "user", user, NULL);
		reply(s, "-ERR [IN-USE] Mailbox is locked by another POP3 session");
		return;
	}
	struct pop3_login_job *job = xcalloc(1, sizeof(*job));
	job->work.data = job;
	job->s = s;
	job->server = s->server;
	job->datadir = session_daemon(s)->datadir;
	job->user = xstrdup(user);
	session_busy(s);
	if (uv_queue_work(conn_loop(s->c), &job->work, login_work, login_done) != 0) {
		/* Only when the loop is shutting down: open it here. */
		login_work(&job->work);
		login_done(&job->work, 0);
	}
}

static void pass_checked(void *arg, enum sasl_result result, const char *challenge_b64,
			 const char *username)
{
	struct pop3_session *s = arg;
	if (!session_unbusy(s))
		return;
	if (result == SASL_OK)
		session_login(s, username);
	else
		session_auth_failed(s, "Authentication failed");
}

/* PASS: checks the password on the thread pool (input paused meanwhile). */
static void cmd_pass(struct pop3_session *s, char *args)
{
	if (!plaintext_auth_allowed(s)) {
		reply(s, "-ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)");
		return;
	}
	if (s->pending_user == NULL) {
		reply(s, "-ERR Send USER first");
		return;
	}
	/* RFC 1939 7: the password may contain spaces; it is the rest of the line. */
	if (*args == '\0') {
		reply(s, "-ERR Missing password");
		return;
	}
	char *user = s->pending_user;
	s->pending_user = NULL;
	session_busy(s);
	sasl_check_password(conn_loop(s->c), session_daemon(s)->users, user, args,
			    s->auth_failures, pass_checked, s);
	free(user);
}

static void sasl_stepped(void *arg, enum sasl_result result, const char *challenge_b64,
			 const char *username);

/* Feeds one client response (or NULL for none) to the SASL exchange. */
static void sasl_feed(struct pop3_session *s, const char *response)
{
	session_busy(s);
	sasl_server_step(s->sasl, response, sasl_stepped, s);
}

/* Leaves the SASL exchange: back to command-sized lines and AUTHORIZATION. */
static void sasl_end(struct pop3_session *s)
{
	sasl_server_free(&s->sasl);
	conn_set_max_line(s->c, POP3_MAX_COMMAND_LINE);
	if (s->state == POP3_SASL)
		session_enter(s, POP3_AUTHORIZATION);
}

static void sasl_stepped(void *arg, enum sasl_result result, const char *challenge_b64,
			 const char *username)
{
	struct pop3_session *s = arg;
	if (!session_unbusy(s))
		return;
	switch (result) {
	case SASL_CONTINUE:
		reply(s, "+ %s", challenge_b64 != NULL ? challenge_b64 : "");
		conn_mask_next_line(s->c);
		return;
	case SASL_OK:
		if (challenge_b64 != NULL && *challenge_b64 != '\0') {
			/* RFC 5034 4: data with success goes in a continuation,
			 * answered by an empty line; keep the result until then. */
			reply(s, "+ %s", challenge_b64);
			free(s->pending_user);
			s->pending_user = xstrdup(username);
			sasl_server_free(&s->sasl);
			return;
		}
		sasl_end(s);
		session_login(s, username);
		return;
	case SASL_ABORTED:
		sasl_end(s);
		reply(s, "-ERR Authentication aborted");
		return;
	case SASL_MALFORMED:
		sasl_end(s);
		session_auth_failed(s, "Invalid SASL response");
		return;
	case SASL_FAIL:
		sasl_end(s);
		session_auth_failed(s, "Authentication failed");
		return;
	}
}

/* A line while in the SASL state: the client's next response. */
static void session_sasl_line(struct pop3_session *s, char *line)
{
	if (s->sasl == NULL) {
		/* The success continuation was answered. */
		char *user = s->pending_user;
		s->pending_user = NULL;
		sasl_end(s);
		if (*line != '\0') {
			free(user);
			reply(s, "-ERR Authentication aborted");
			return;
		}
		session_login(s, user);
		free(user);
		return;
	}
	sasl_feed(s, line);
}

/* AUTH (RFC 5034): lists the mechanisms, or starts an exchange. */
static void cmd_auth(struct pop3_session *s, char *args)
{
	char *mech = next_word(&args);
	if (mech == NULL) {
		/* The pre-RFC 5034 listing form, still used by some clients. */
		reply(s, "+OK Supported mechanisms follow");
		if (plaintext_auth_allowed(s)) {
			char *list = xstrdup(sasl_mechanisms());
			char *rest = list, *word;
			while ((word = next_word(&rest)) != NULL)
				reply(s, "%s", word);
			free(list);
		}
		reply(s, ".");
		return;
	}
	if (!plaintext_auth_allowed(s)) {
		reply(s, "-ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)");
		return;
	}
	char *initial = next_word(&args);
	if (!no_more_args(s, args))
		return;
	s->sasl = sasl_server_new(conn_loop(s->c), session_daemon(s)->users, mech,
				  s->auth_failures);
	if (s->sasl == NULL) {
		reply(s, "-ERR Unsupported authentication mechanism");
		return;
	}
	free(s->pending_user);
	s->pending_user = NULL;
	session_enter(s, POP3_SASL);
	conn_set_max_line(s->c, POP3_MAX_SASL_LINE);
	/* RFC 5034 4: "=" is an empty initial response. */
	if (initial != NULL && strcmp(initial, "=") == 0)
		initial[0] = '\0';
	sasl_feed(s, initial);
}

/* ---- TRANSACTION ---- */

/* STAT: count and octets of the messages not marked deleted. */
static void cmd_stat(struct pop3_session *s, char *args)
{
	if (!no_more_args(s, args))
		return;
	size_t count;
	uint64_t octets;
	pop3_maildrop_stat(&s->drop, &count, &octets);
	reply(s, "+OK %zu %" PRIu64, count, octets);
}

/* LIST [n]: one message size, or all of them as a multi-line answer. */
static void cmd_list(struct pop3_session *s, char *args)
{
	if (has_args(args)) {
		long n;
		struct pop3_message *m = message_arg(s, &args, &n);
		if (m != NULL && no_more_args(s, args))
			reply(s, "+OK %ld %" PRIu64, n, m->size);
		return;
	}
	size_t count;
	uint64_t octets;
	pop3_maildrop_stat(&s->drop, &count, &octets);
	reply(s, "+OK %zu messages (%" PRIu64 " octets)", count, octets);
	for (size_t i = 0; i < s->drop.count; i++) {
		if (!s->drop.messages[i].deleted)
			reply(s, "%zu %" PRIu64, i + 1, s->drop.messages[i].size);
	}
	reply(s, ".");
}

/* UIDL [n]: the unique ids, one or all. */
static void cmd_uidl(struct pop3_session *s, char *args)
{
	char uidl[32];
	if (has_args(args)) {
		long n;
		struct pop3_message *m = message_arg(s, &args, &n);
		if (m != NULL && no_more_args(s, args)) {
			pop3_maildrop_uidl(&s->drop, m, uidl, sizeof(uidl));
			reply(s, "+OK %ld %s", n, uidl);
		}
		return;
	}
	reply(s, "+OK Unique-ID listing follows");
	for (size_t i = 0; i < s->drop.count; i++) {
		if (s->drop.messages[i].deleted)
			continue;
		pop3_maildrop_uidl(&s->drop, &s->drop.messages[i], uidl, sizeof(uidl));
		reply(s, "%zu %s", i + 1, uidl);
	}
	reply(s, ".");
}

/* A RETR/TOP stream ended: lets the next pipelined command in. */
static void stream_done(conn *c, bool ok, void *arg)
{
	struct pop3_session *s = arg;
	session_unbusy(s);
}

/* Starts streaming a message (RETR, or TOP with body_lines >= 0). */
static void session_send_message(struct pop3_session *s, long n, struct pop3_message *m,
				 long body_lines)
{
	char ok_line[64];
	if (body_lines < 0)
		snprintf(ok_line, sizeof(ok_line), "+OK %" PRIu64 " octets\r\n", m->size);
	else
		snprintf(ok_line, sizeof(ok_line), "+OK Top of message follows\r\n");
	session_busy(s);
	if (pop3_stream_message(s->c, &s->drop, m, body_lines, ok_line, stream_done, s) < 0) {
		if (session_unbusy(s))
			reply(s, "-ERR [SYS/TEMP] Cannot read message %ld", n);
		return;
	}
	log_event(m->lifecycle_id != NULL ? m->lifecycle_id : "-", "retrieved", "proto", "pop3",
		  "user", s->user, "command", body_lines < 0 ? "RETR" : "TOP", NULL);
}

/* RETR n: streams the whole message. */
static void cmd_retr(struct pop3_session *s, char *args)
{
	long n;
	struct pop3_message *m = message_arg(s, &args, &n);
	if (m == NULL || !no_more_args(s, args))
		return;
	session_send_message(s, n, m, -1);
}

/* TOP n lines: streams the header and the first lines of the body. */
static void cmd_top(struct pop3_session *s, char *args)
{
	long n;
	struct pop3_message *m = message_arg(s, &args, &n);
	if (m == NULL)
		return;
	char *word = next_word(&args);
	if (word == NULL) {
		reply(s, "-ERR Missing number of lines");
		return;
	}
	long lines = parse_number(word);
	if (lines < 0) {
		reply(s, "-ERR Invalid number of lines: %s", word[0] == '-' ? "negative" : "not a number");
		return;
	}
	if (!no_more_args(s, args))
		return;
	session_send_message(s, n, m, lines);
}

/* DELE n: only a mark; QUIT commits it (RFC 1939 6). */
static void cmd_dele(struct pop3_session *s, char *args)
{
	long n;
	struct pop3_message *m = message_arg(s, &args, &n);
	if (m == NULL || !no_more_args(s, args))
		return;
	m->deleted = true;
	reply(s, "+OK Message %ld deleted", n);
}

/* RSET: unmarks every message marked deleted. */
static void cmd_rset(struct pop3_session *s, char *args)
{
	if (!no_more_args(s, args))
		return;
	for (size_t i = 0; i < s->drop.count; i++)
		s->drop.messages[i].deleted = false;
	size_t count;
	uint64_t octets;
	pop3_maildrop_stat(&s->drop, &count, &octets);
	reply(s, "+OK Maildrop has %zu messages (%" PRIu64 " octets)", count, octets);
}

/* NOOP: +OK. */
static void cmd_noop(struct pop3_session *s, char *args)
{
	if (no_more_args(s, args))
		reply(s, "+OK");
}

/* The UPDATE state's commit, run on the thread pool: a big expunge and its
 * sync must not stall every other session on the loop. */
struct pop3_update_job {
	uv_work_t work;
	struct pop3_session *s;
	int result;
	size_t removed;
	char *err;
};

/* On a pool thread: removes the marked messages. Nothing else touches the
 * store meanwhile: input is paused and the session is busy. */
static void update_work(uv_work_t *work)
{
	struct pop3_update_job *job = work->data;
	job->result = pop3_maildrop_commit_deletions(&job->s->drop, &job->removed, &job->err);
}

/* Back on the loop: answers QUIT (if the client is still there) and closes. */
static void update_done(uv_work_t *work, int status)
{
	struct pop3_update_job *job = work->data;
	struct pop3_session *s = job->s;
	if (status != 0 && job->result == 0) {
		job->result = -1;
		job->err = xstrdup(uv_strerror(status));
	}
	if (job->result < 0) {
		log_kv(LOG_ERROR, conn_id(s->c), "deleting messages failed", "user", s->user,
		       "error", job->err, NULL);
	} else {
		/* Told only once it is true: a failed commit removed nothing. */
		for (size_t i = 0; i < s->drop.count; i++) {
			struct pop3_message *m = &s->drop.messages[i];
			if (m->deleted)
				log_event(m->lifecycle_id != NULL ? m->lifecycle_id : "-", "deleted",
					  "proto", "pop3", "user", s->user, NULL);
		}
	}
	if (session_unbusy(s)) {
		if (job->result < 0)
			reply(s, "-ERR [SYS/TEMP] Some deleted messages were not removed");
		else
			reply(s, "+OK Logging out, %zu messages deleted", job->removed);
		conn_close(s->c);
	}
	free(job->err);
	free(job);
}

/* QUIT in TRANSACTION: the UPDATE state removes what was marked, in one
 * transaction on the thread pool, then answers and closes. */
static void session_update(struct pop3_session *s)
{
	session_enter(s, POP3_UPDATE);
	struct pop3_update_job *job = xcalloc(1, sizeof(*job));
	job->s = s;
	job->work.data = job;
	session_busy(s);
	int rc = uv_queue_work(conn_loop(s->c), &job->work, update_work, update_done);
	if (rc != 0) {
		/* Only when the loop is shutting down: run it here rather than lose it. */
		update_work(&job->work);
		update_done(&job->work, 0);
	}
}

/* QUIT: commits the deletions in TRANSACTION, then closes. */
static void cmd_quit(struct pop3_session *s, char *args)
{
	if (!no_more_args(s, args))
		return;
	if (s->state == POP3_TRANSACTION) {
		session_update(s);
		return;
	}
	reply(s, "+OK Bye");
	conn_close(s->c);
}

static const struct pop3_command pop3_commands[] = {
	{"CAPA", IN_AUTH | IN_TRANS, cmd_capa},
	{"STLS", IN_AUTH, cmd_stls},
	{"USER", IN_AUTH, cmd_user},
	{"PASS", IN_AUTH, cmd_pass},
	{"AUTH", IN_AUTH, cmd_auth},
	{"STAT", IN_TRANS, cmd_stat},
	{"LIST", IN_TRANS, cmd_list},
	{"RETR", IN_TRANS, cmd_retr},
	{"DELE", IN_TRANS, cmd_dele},
	{"NOOP", IN_TRANS, cmd_noop},
	{"RSET", IN_TRANS, cmd_rset},
	{"TOP", IN_TRANS, cmd_top},
	{"UIDL", IN_TRANS, cmd_uidl},
	{"QUIT", IN_AUTH | IN_TRANS, cmd_quit},
};

/* Looks a command up in the table, case-insensitively; NULL if unknown. */
static const struct pop3_command *command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(pop3_commands) / sizeof(pop3_commands[0]); i++) {
		if (strcasecmp(pop3_commands[i].name, name) == 0)
			return &pop3_commands[i];
	}
	return NULL;
}

/* ---- connection callbacks ---- */

/* A new connection: a session in AUTHORIZATION and the greeting. */
static void on_open(conn *c)
{
	struct pop3_server *server = net_server_data(conn_server(c));
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->server = server;
	s->state = POP3_AUTHORIZATION;
	conn_set_data(c, s);
	conn_set_max_line(c, POP3_MAX_COMMAND_LINE);
	conn_set_idle_timeout(c, (uint64_t)config_int(server->daemon->cfg, "pop3.idle_timeout") *
					 1000);
	log_kv(LOG_INFO, conn_id(c), "connect", "remote", conn_peer_addr(c), "tls",
	       conn_is_tls(c) ? "yes" : "no", NULL);
	reply(s, "+OK mailstack POP3 server ready");
}

/* One input line: a SASL response, or a command checked against the table. */
static void on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct pop3_session *s = conn_data(c);
	if (memchr(line, '\0', len) != NULL) {
		reply(s, "-ERR NUL byte in command");
		return;
	}
	if (s->state == POP3_SASL) {
		session_sasl_line(s, line);
		return;
	}
	if (s->state == POP3_UPDATE)
		return;
	char *args = line;
	char *name = next_word(&args);
	if (name == NULL) {
		reply(s, "-ERR Empty command");
		return;
	}
	const struct pop3_command *cmd = command_find(name);
	if (cmd == NULL) {
		reply(s, "-ERR Unknown command");
		return;
	}
	if ((cmd->states & (1u << s->state)) == 0) {
		reply(s, "-ERR %s is not valid in the %s state", cmd->name,
		      pop3_state_names[s->state]);
		return;
	}
	cmd->handler(s, args);
}

/* A line past the limit: a failed SASL exchange, or -ERR for a command. */
static void on_line_too_long(conn *c)
{
	struct pop3_session *s = conn_data(c);
	if (s->state == POP3_SASL) {
		sasl_end(s);
		session_auth_failed(s, "SASL response too long");
		return;
	}
	reply(s, "-ERR Line too long");
}

/* The STLS handshake finished. */
static void on_tls_ready(conn *c)
{
	struct pop3_session *s = conn_data(c);
	/* RFC 2595 4: forget everything learned before TLS. */
	free(s->pending_user);
	s->pending_user = NULL;
	log_kv(LOG_INFO, conn_id(c), "tls", "version", conn_tls_version(c), "cipher",
	       conn_tls_cipher(c), NULL);
}

/* The idle timer fired: says so and closes. */
static void on_timeout(conn *c)
{
	struct pop3_session *s = conn_data(c);
	reply(s, "-ERR Disconnected for inactivity");
	conn_close(c);
}

/* Frees a session and releases its maildrop lock. */
static void session_free(struct pop3_session *s)
{
	/* A dropped connection removes nothing (RFC 1939 6). */
	if (s->drop_open)
		pop3_maildrop_close(&s->drop);
	if (s->user != NULL)
		pop3_server_unlock(s->server, s->user);
	sasl_server_free(&s->sasl);
	free(s->pending_user);
	free(s->user);
	free(s);
}

/* The connection closed: frees the session, or leaves that to the running async step. */
static void on_close(conn *c)
{
	struct pop3_session *s = conn_data(c);
	if (s == NULL)
		return;
	log_kv(LOG_INFO, conn_id(c), "disconnect", "user", s->user, NULL);
	conn_set_data(c, NULL);
	if (s->busy) {
		/* A password check or a stream still uses the session. */
		s->orphaned = true;
		return;
	}
	session_free(s);
}

static const struct conn_handlers pop3_handlers = {
	.on_open = on_open,
	.on_line = on_line,
	.on_line_too_long = on_line_too_long,
	.on_tls_ready = on_tls_ready,
	.on_timeout = on_timeout,
	.on_close = on_close,
};

const struct conn_handlers *pop3_session_handlers(void)
{
	return &pop3_handlers;
}

/* ---- the maildrop lock ---- */

bool pop3_server_lock(struct pop3_server *server, const char *user)
{
	for (size_t i = 0; i < server->locked_count; i++) {
		if (strcmp(server->locked_users[i], user) == 0)
			return false;
	}
	server->locked_users = xrealloc(server->locked_users,
					(server->locked_count + 1) * sizeof(char *));
	server->locked_users[server->locked_count++] = xstrdup(user);
	return true;
}

void pop3_server_unlock(struct pop3_server *server, const char *user)
{
	for (size_t i = 0; i < server->locked_count; i++) {
		if (strcmp(server->locked_users[i], user) == 0) {
			free(server->locked_users[i]);
			server->locked_users[i] = server->locked_users[--server->locked_count];
			return;
		}
	}
}
