/* smtp_client.c: the SMTP/LMTP client conversation (see smtp_client.h).
 *
 * States (cl->state; changed only by smtp_client_enter, which logs old -> new):
 *
 *   CONNECTING --implicit TLS--> TLS --handshake--> GREETING
 *   CONNECTING --> GREETING --220--> EHLO (LHLO) --2xx--> [STARTTLS --220--> TLS --> EHLO]
 *                                    EHLO --refused (SMTP)--> HELO --2xx-->
 *     --> [AUTH --334 ... 235-->] READY
 *   READY --smtp_client_send--> MAIL (replies to MAIL, RCPT..., DATA) --354--> BODY
 *     --the final dot queued--> DATA_END --every final reply--> READY
 *   MAIL, DATA refused --> RSET --250--> READY
 *   READY --smtp_client_quit--> QUIT --221--> (closing)
 *   any --failure or abort--> CLOSED --conn's on_close--> closed callback, freed
 *
 * Each state names the handler of a complete reply that arrives in it and the
 * RFC 5321 4.5.3.2 timeout for that reply (state table below).
 *
 * Invariants: at most one transaction (cl->tx) at a time, and message_done is
 * called exactly once for it; the session is freed only from the conn's
 * on_close, after the closed callback; the first reason to end wins
 * (cl->end). Secrets (AUTH lines) never reach a transcript: they are written
 * quietly and transcribed masked here. */
#include "smtp_client.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "sasl.h"

/* RFC 5321 4.5.3.2 timeouts (ms) before scaling. The RFC names none for
 * EHLO, STARTTLS, AUTH, RSET and QUIT: they get the MAIL value. */
#define SMTP_TIMEOUT_GREETING (5 * 60 * 1000)   /* 4.5.3.2.1 initial 220 */
#define SMTP_TIMEOUT_COMMAND (5 * 60 * 1000)    /* 4.5.3.2.2/3 MAIL, RCPT */
#define SMTP_TIMEOUT_DATA_INIT (2 * 60 * 1000)  /* 4.5.3.2.4 DATA initiation */
#define SMTP_TIMEOUT_DATA_BLOCK (3 * 60 * 1000) /* 4.5.3.2.5 each data block */
#define SMTP_TIMEOUT_DATA_END (10 * 60 * 1000)  /* 4.5.3.2.6 DATA termination */

/* Body bytes handled per step, and steps per wake-up of the loop. */
#define SMTP_CLIENT_BODY_SLICE (64 * 1024)
#define SMTP_CLIENT_BODY_STEPS 64

/* ---- replies ---- */

void smtp_client_reply_clear(struct smtp_client_reply *r)
{
	free(r->text);
	memset(r, 0, sizeof(*r));
}

void smtp_client_reply_copy(struct smtp_client_reply *dst, const struct smtp_client_reply *src)
{
	smtp_client_reply_clear(dst);
	*dst = *src;
	dst->text = src->text != NULL ? xstrdup(src->text) : NULL;
}

char *smtp_client_reply_oneline(const struct smtp_client_reply *r)
{
	char *s = xstrdup(r->text != NULL ? r->text : "");
	for (char *p = s; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return s;
}

/* Reads an enhanced status code at the start of a reply's text (RFC 3463 2:
 * class "." subject "." detail, 1 to 3 digits each) whose class matches the
 * reply code's (RFC 2034 3). True and out filled when there is one. */
static bool smtp_reply_enhanced_code(const char *s, size_t len, int code, char out[16])
{
	int cls = code / 100;
	if ((cls != 2 && cls != 4 && cls != 5) || len < 5 || s[0] != '0' + cls || s[1] != '.')
		return false;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t digits = 0;
		while (i < len && isdigit((unsigned char)s[i]) && digits < 4) {
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return false;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return false;
	memcpy(out, s, i);
	out[i] = '\0';
	return true;
}

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
	buf_init(&p->partial);
	buf_init(&p->text);
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
	buf_free(&p->partial);
	buf_free(&p->text);
	smtp_client_reply_clear(&p->reply);
}

void smtp_reply_parser_reset(struct smtp_reply_parser *p)
{
	buf_reset(&p->partial);
	buf_reset(&p->text);
	p->lines = 0;
	p->code = 0;
	p->error = NULL;
	smtp_client_reply_clear(&p->reply);
}

/* Gives up on the reply being read: -1 with the reason. */
static int smtp_reply_parser_error(struct smtp_reply_parser *p, const char *why)
{
	buf_reset(&p->text);
	p->lines = 0;
	p->code = 0;
	p->error = why;
	return -1;
}

int smtp_reply_parser_line(struct smtp_reply_parser *p, const char *line, size_t len)
{
	smtp_client_reply_clear(&p->reply);
	p->error = NULL;
	if (len > SMTP_REPLY_MAX_LINE)
		return smtp_reply_parser_error(p, "reply line too long");
	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]))
		return smtp_reply_parser_error(p, "reply line without a 3-digit code");
	if (line[0] < '2' || line[0] > '5')
		return smtp_reply_parser_error(p, "reply code out of range");
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return smtp_reply_parser_error(p, "no space or hyphen after the reply code");
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (p->lines > 0 && code != p->code)
		return smtp_reply_parser_error(p, "reply code changes inside a multi-line reply");
	if (p->lines >= SMTP_REPLY_MAX_LINES)
		return smtp_reply_parser_error(p, "reply with too many lines");
	p->code = code;
	p->lines++;
	if (p->text.len > 0)
		buf_append_char(&p->text, '\n');
	buf_append(&p->text, line, len);
	if (len > 3 && line[3] == '-')
		return 0;
	/* The last line: its enhanced code stands for the reply. */
	p->reply.code = code;
	p->reply.enhanced = len > 4 && smtp_reply_enhanced_code(line + 4, len - 4, code,
								p->reply.status);
	if (!p->reply.enhanced)
		snprintf(p->reply.status, sizeof(p->reply.status), "%d.0.0", code / 100);
	p->reply.text = buf_steal(&p->text);
	p->lines = 0;
	p->code = 0;
	return 1;
}

int smtp_reply_parser_feed(struct smtp_reply_parser *p, const char *data, size_t len,
			   size_t *used_r)
{
	size_t i = 0;
	while (i < len) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t n = nl != NULL ? (size_t)(nl - (data + i)) : len - i;
		/* A line may hold SMTP_REPLY_MAX_LINE bytes and the CR of its CRLF. */
		if (p->partial.len + n > SMTP_REPLY_MAX_LINE + 1) {
			buf_reset(&p->partial);
			*used_r = i + n + (nl != NULL ? 1 : 0);
			return smtp_reply_parser_error(p, "reply line too long");
		}
		buf_append(&p->partial, data + i, n);
		if (nl == NULL) {
			i = len;
			break;
		}
		i += n + 1;
		size_t line_len = p->partial.len;
		if (line_len > 0 && p->partial.data[line_len - 1] == '\r')
			line_len--;
		int rc = smtp_reply_parser_line(p, buf_cstr(&p->partial), line_len);
		buf_reset(&p->partial);
		if (rc != 0) {
			*used_r = i;
			return rc;
		}
	}
	*used_r = len;
	return 0;
}

const char *smtp_client_stage_name(enum smtp_client_stage stage)
{
	static const char *const names[] = {
		[SMTP_STAGE_NONE] = "",
		[SMTP_STAGE_MAIL] = "MAIL FROM",
		[SMTP_STAGE_RCPT] = "RCPT TO",
		[SMTP_STAGE_DATA] = "DATA",
		[SMTP_STAGE_END_OF_DATA] = "end of DATA",
	};
	return (size_t)stage < sizeof(names) / sizeof(names[0]) ? names[stage] : "";
}

/* ---- the session ---- */

enum smtp_client_state {
	SMTPC_CONNECTING,
	SMTPC_TLS,
	SMTPC_GREETING,
	SMTPC_EHLO,
	SMTPC_HELO,
	SMTPC_STARTTLS,
	SMTPC_AUTH,
	SMTPC_READY,
	SMTPC_MAIL,
	SMTPC_BODY,
	SMTPC_DATA_END,
	SMTPC_RSET,
	SMTPC_QUIT,
	SMTPC_CLOSED,
};

struct smtp_client_extension_entry {
	char *keyword;
	char *params;
};

/* One message on its way: what to send and the replies so far. */
struct smtp_client_tx {
	char *sender, *mail_params;
	char **rcpts, **rcpt_params;
	size_t rcpt_count;
	bool pipelined;          /* MAIL, RCPTs (and DATA) sent at once */
	bool data_sent;
	size_t replies;          /* replies read: 0 = MAIL, 1..n = RCPT, n+1 = DATA */
	bool mail_failed;
	size_t *accepted;        /* indexes of the recipients accepted at RCPT */
	size_t accepted_count;
	size_t end_replies;      /* LMTP: final replies read */
	bool discard_end;        /* an empty data was sent to end a failed transaction */
	struct smtp_client_rcpt_result *results;
	struct smtp_client_reply mail, data, final;
	/* the body */
	smtp_client_body_reader *reader;
	void *reader_arg;
	bool reader_eof;
	const char *chunk;
	size_t chunk_len, chunk_off;
	bool line_start;         /* the next byte starts a line (dot-stuffing) */
	bool last_cr;            /* the last byte sent was CR (newline normalising) */
};

struct smtp_client {
	uv_loop_t *loop;
	conn *c;
	enum smtp_client_state state;
	struct smtp_client_callbacks cb;
	void *arg;
	/* options */
	enum smtp_client_protocol protocol;
	enum smtp_client_tls_mode tls_mode;
	tls_ctx *tls;
	char *helo_name, *tls_server_name, *auth_user, *auth_password, *auth_mechanism, *proto;
	double timeout_scale;
	bool require_all_rcpts, normalize_newlines;
	/* the session */
	struct smtp_reply_parser parser;
	struct smtp_client_extension_entry exts[SMTP_REPLY_MAX_LINES];
	size_t ext_count;
	bool greeted;
	bool tls_tried;          /* STARTTLS done, or given up on (opportunistic) */
	sasl_client *sasl;
	const char *auth_used;   /* the mechanism, once authenticated */
	bool auth_cancelled;     /* we sent "*": the server's data did not verify */
	struct smtp_client_tx *tx;
	/* why it ended (the first reason wins) */
	bool end_set;
	enum smtp_client_failure end_failure;
	const char *end_state;
	const char *end_command;
	struct smtp_client_reply end_reply;
	char *end_error;
};

typedef void smtp_client_reply_fn(smtp_client *cl, const struct smtp_client_reply *r);

static smtp_client_reply_fn smtp_client_on_greeting, smtp_client_on_ehlo, smtp_client_on_helo,
	smtp_client_on_starttls, smtp_client_on_auth, smtp_client_on_unexpected,
	smtp_client_on_mail_reply, smtp_client_on_body_reply, smtp_client_on_end_reply,
	smtp_client_on_rset, smtp_client_on_quit;

/* Each state: its name, what a complete reply in it means, and how long the
 * reply may take (RFC 5321 4.5.3.2; 0 = no limit). */
static const struct smtp_client_state_info {
	const char *name;
	smtp_client_reply_fn *on_reply;
	uint64_t timeout_ms;
} smtp_client_states[] = {
	[SMTPC_CONNECTING] = {"CONNECTING", NULL, 0},
	[SMTPC_TLS] = {"TLS", NULL, SMTP_TIMEOUT_GREETING},
	[SMTPC_GREETING] = {"GREETING", smtp_client_on_greeting, SMTP_TIMEOUT_GREETING},
	[SMTPC_EHLO] = {"EHLO", smtp_client_on_ehlo, SMTP_TIMEOUT_COMMAND},
	[SMTPC_HELO] = {"HELO", smtp_client_on_helo, SMTP_TIMEOUT_COMMAND},
	[SMTPC_STARTTLS] = {"STARTTLS", smtp_client_on_starttls, SMTP_TIMEOUT_COMMAND},
	[SMTPC_AUTH] = {"AUTH", smtp_client_on_auth, SMTP_TIMEOUT_COMMAND},
	[SMTPC_READY] = {"READY", smtp_client_on_unexpected, 0},
	[SMTPC_MAIL] = {"MAIL", smtp_client_on_mail_reply, SMTP_TIMEOUT_COMMAND},
	[SMTPC_BODY] = {"BODY", smtp_client_on_body_reply, SMTP_TIMEOUT_DATA_BLOCK},
	[SMTPC_DATA_END] = {"DATA_END", smtp_client_on_end_reply, SMTP_TIMEOUT_DATA_END},
	[SMTPC_RSET] = {"RSET", smtp_client_on_rset, SMTP_TIMEOUT_COMMAND},
	[SMTPC_QUIT] = {"QUIT", smtp_client_on_quit, SMTP_TIMEOUT_COMMAND},
	[SMTPC_CLOSED] = {"CLOSED", NULL, 0},
};

/* A base timeout scaled by the session's factor. */
static uint64_t smtp_client_scaled(const smtp_client *cl, uint64_t ms)
{
	double scaled = (double)ms * cl->timeout_scale;
	return scaled < 1.0 ? 1 : (uint64_t)scaled;
}

/* Arms the command timer for the reply the session now waits for. */
static void smtp_client_arm_timer(smtp_client *cl)
{
	if (cl->c == NULL || conn_is_closing(cl->c))
		return;
	uint64_t ms = smtp_client_states[cl->state].timeout_ms;
	/* In MAIL, the DATA reply is the next one only when all before it came. */
	if (cl->state == SMTPC_MAIL && cl->tx != NULL && cl->tx->replies == cl->tx->rcpt_count + 1)
		ms = SMTP_TIMEOUT_DATA_INIT;
	conn_set_command_timeout(cl->c, ms > 0 ? smtp_client_scaled(cl, ms) : 0);
}

/* The one way to change state: logs the transition and arms the timer. */
static void smtp_client_enter(smtp_client *cl, enum smtp_client_state state)
{
	if (cl->state != state)
		log_kv(LOG_DEBUG, cl->c != NULL ? conn_id(cl->c) : 0, "smtp client state", "proto",
		       cl->proto, "from", smtp_client_states[cl->state].name, "to",
		       smtp_client_states[state].name, NULL);
	cl->state = state;
	smtp_client_arm_timer(cl);
}

/* Hands a line we send or receive to the owner's transcript. */
static void smtp_client_transcribe(smtp_client *cl, char dir, const char *line, size_t len)
{
	if (cl->cb.transcript != NULL)
		cl->cb.transcript(cl, dir, line, len, cl->arg);
}

/* Appends one command line to out (to be written with the others). */
static void smtp_client_append(smtp_client *cl, buf_t *out, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void smtp_client_append(smtp_client *cl, buf_t *out, const char *fmt, ...)
{
	size_t start = out->len;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(out, fmt, ap);
	va_end(ap);
	smtp_client_transcribe(cl, 'C', out->data + start, out->len - start);
	buf_append_str(out, "\r\n");
}

/* Writes one command line. */
static void smtp_client_command(smtp_client *cl, const char *line)
{
	smtp_client_transcribe(cl, 'C', line, strlen(line));
	conn_write_str(cl->c, line);
	conn_write_str(cl->c, "\r\n");
}

/* Writes a line holding a secret: sent quietly, transcribed as `shown`. */
static void smtp_client_command_secret(smtp_client *cl, const char *line, const char *shown)
{
	log_transcript(cl->proto, conn_id(cl->c), 'C', conn_is_tls(cl->c), NULL, shown,
		       strlen(shown), false);
	smtp_client_transcribe(cl, 'C', shown, strlen(shown));
	conn_write_quiet(cl->c, line, strlen(line));
	conn_write_quiet(cl->c, "\r\n", 2);
}

/* Records why the session ends; the first reason wins. */
static void smtp_client_set_end(smtp_client *cl, enum smtp_client_failure failure,
				const char *command, const struct smtp_client_reply *r,
				const char *error)
{
	if (cl->end_set)
		return;
	cl->end_set = true;
	cl->end_failure = failure;
	cl->end_state = smtp_client_states[cl->state].name;
	cl->end_command = command;
	if (r != NULL)
		smtp_client_reply_copy(&cl->end_reply, r);
	cl->end_error = error != NULL ? xstrdup(error) : NULL;
}

/* Ends the session: a refusal is answered with QUIT and a graceful close,
 * anything else closes at once. The closed callback comes from on_close. */
static void smtp_client_fail(smtp_client *cl, enum smtp_client_failure failure,
			     const char *command, const struct smtp_client_reply *r,
			     const char *error)
{
	smtp_client_set_end(cl, failure, command, r, error);
	bool polite = failure == SMTP_CLIENT_REFUSED || failure == SMTP_CLIENT_NO_TLS ||
		      failure == SMTP_CLIENT_NO_AUTH || failure == SMTP_CLIENT_AUTH_FAILED;
	smtp_client_enter(cl, SMTPC_CLOSED);
	if (cl->c == NULL || conn_is_closing(cl->c))
		return;
	conn_set_command_timeout(cl->c, 0);
	if (polite) {
		smtp_client_command(cl, "QUIT");
		conn_close(cl->c);
	} else {
		conn_abort(cl->c);
	}
}

/* Frees a transaction. */
static void smtp_client_tx_free(struct smtp_client_tx **txp)
{
	struct smtp_client_tx *tx = *txp;
	if (tx == NULL)
		return;
	free(tx->sender);
	free(tx->mail_params);
	for (size_t i = 0; i < tx->rcpt_count; i++) {
		free(tx->rcpts[i]);
		free(tx->rcpt_params[i]);
		smtp_client_reply_clear(&tx->results[i].reply);
	}
	free(tx->rcpts);
	free(tx->rcpt_params);
	free(tx->results);
	free(tx->accepted);
	smtp_client_reply_clear(&tx->mail);
	smtp_client_reply_clear(&tx->data);
	smtp_client_reply_clear(&tx->final);
	free(tx);
	*txp = NULL;
}

/* Gives recipient i its deciding reply, unless it has one. */
static void smtp_client_rcpt_decided(struct smtp_client_tx *tx, size_t i,
				     enum smtp_client_stage stage,
				     const struct smtp_client_reply *r)
{
	if (tx->results[i].stage != SMTP_STAGE_NONE)
		return;
	tx->results[i].stage = stage;
	smtp_client_reply_copy(&tx->results[i].reply, r);
}

/* Tells the owner how the transaction went and forgets it. */
static void smtp_client_report(smtp_client *cl, bool complete)
{
	struct smtp_client_tx *tx = cl->tx;
	cl->tx = NULL;
	struct smtp_client_result result = {
		.rcpts = tx->results,
		.rcpt_count = tx->rcpt_count,
		.accepted = tx->accepted_count,
		.mail = &tx->mail,
		.data = &tx->data,
		.final = &tx->final,
		.complete = complete,
	};
	if (cl->cb.message_done != NULL)
		cl->cb.message_done(cl, &result, cl->arg);
	smtp_client_tx_free(&tx);
}

/* Idle: tell the owner. */
static void smtp_client_become_ready(smtp_client *cl)
{
	smtp_client_enter(cl, SMTPC_READY);
	if (cl->cb.ready != NULL)
		cl->cb.ready(cl, cl->arg);
}

/* The transaction is over: report it, then RSET (when it did not end with the
 * data) or become READY, unless the owner quit meanwhile. */
static void smtp_client_transaction_end(smtp_client *cl, bool need_rset)
{
	enum smtp_client_state before = cl->state;
	smtp_client_report(cl, true);
	if (cl->state != before)
		return;
	if (need_rset) {
		smtp_client_command(cl, "RSET");
		smtp_client_enter(cl, SMTPC_RSET);
		return;
	}
	smtp_client_become_ready(cl);
}

/* ---- EHLO, STARTTLS, AUTH ---- */

/* Forgets what the server offered (after TLS or before a new EHLO). */
static void smtp_client_clear_extensions(smtp_client *cl)
{
	for (size_t i = 0; i < cl->ext_count; i++) {
		free(cl->exts[i].keyword);
		free(cl->exts[i].params);
	}
	cl->ext_count = 0;
}

/* Reads the keywords and parameters of an EHLO/LHLO reply (RFC 5321 4.1.1.1:
 * the first line greets, each other line is "keyword [params]"; the old
 * "AUTH=PLAIN" form counts as AUTH). */
static void smtp_client_read_extensions(smtp_client *cl, const struct smtp_client_reply *r)
{
	smtp_client_clear_extensions(cl);
	const char *line = r->text;
	bool first = true;
	while (line != NULL && *line != '\0' && cl->ext_count < SMTP_REPLY_MAX_LINES) {
		const char *end = strchr(line, '\n');
		size_t n = end != NULL ? (size_t)(end - line) : strlen(line);
		if (!first && n > 4) {
			const char *kw = line + 4;
			size_t kw_len = strcspn(kw, " =\n");
			if (kw_len > (size_t)(line + n - kw))
				kw_len = (size_t)(line + n - kw);
			const char *params = kw + kw_len;
			const char *params_end = line + n;
			while (params < params_end && (*params == ' ' || *params == '='))
				params++;
			while (params_end > params && params_end[-1] == ' ')
				params_end--;
			if (kw_len > 0) {
				cl->exts[cl->ext_count].keyword = xstrndup(kw, kw_len);
				cl->exts[cl->ext_count].params =
					xstrndup(params, (size_t)(params_end - params));
				cl->ext_count++;
			}
		}
		first = false;
		line = end != NULL ? end + 1 : NULL;
	}
}

/* Sends EHLO (or LHLO). */
static void smtp_client_send_ehlo(smtp_client *cl)
{
	char *line = xasprintf("%s %s", cl->protocol == SMTP_CLIENT_LMTP ? "LHLO" : "EHLO",
			       cl->helo_name);
	smtp_client_command(cl, line);
	free(line);
	smtp_client_enter(cl, SMTPC_EHLO);
}

/* The mechanism to authenticate with: the one asked for if offered, else
 * the strongest offered that sasl.h knows. */
static const char *smtp_client_pick_mechanism(const smtp_client *cl)
{
	static const char *const preference[] = {"SCRAM-SHA-256", "PLAIN", "LOGIN"};
	if (cl->auth_mechanism != NULL)
		return smtp_client_extension_has_param(cl, "AUTH", cl->auth_mechanism) ?
			cl->auth_mechanism : NULL;
	for (size_t i = 0; i < sizeof(preference) / sizeof(preference[0]); i++)
		if (smtp_client_extension_has_param(cl, "AUTH", preference[i]))
			return preference[i];
	return NULL;
}

/* Sends AUTH with the initial response when the mechanism has one (RFC 4954 4). */
static void smtp_client_start_auth(smtp_client *cl)
{
	const char *mech = smtp_client_pick_mechanism(cl);
	if (mech != NULL)
		cl->sasl = sasl_client_new(mech, cl->auth_user, cl->auth_password);
	if (cl->sasl == NULL) {
		char *why = xasprintf("the server does not offer AUTH %s%s",
				      cl->auth_mechanism != NULL ? cl->auth_mechanism :
				      "with a known mechanism",
				      smtp_client_is_tls(cl) ? "" : " (no TLS)");
		smtp_client_fail(cl, SMTP_CLIENT_NO_AUTH, NULL, NULL, why);
		free(why);
		return;
	}
	cl->auth_used = mech;
	char *initial = sasl_client_initial(cl->sasl);
	char *line, *shown;
	if (initial != NULL) {
		/* An empty initial response is sent as "=". */
		line = xasprintf("AUTH %s %s", mech, *initial != '\0' ? initial : "=");
		shown = xasprintf("AUTH %s ****", mech);
	} else {
		line = xasprintf("AUTH %s", mech);
		shown = xstrdup(line);
	}
	smtp_client_command_secret(cl, line, shown);
	explicit_bzero(line, strlen(line));
	if (initial != NULL)
		explicit_bzero(initial, strlen(initial));
	free(initial);
	free(line);
	free(shown);
	cl->auth_cancelled = false;
	smtp_client_enter(cl, SMTPC_AUTH);
}

/* After EHLO: STARTTLS when wanted, AUTH when there are credentials, then READY. */
static void smtp_client_after_ehlo(smtp_client *cl)
{
	bool want_tls = cl->tls_mode == SMTP_CLIENT_TLS_OPPORTUNISTIC ||
			cl->tls_mode == SMTP_CLIENT_TLS_REQUIRED;
	if (want_tls && !cl->tls_tried) {
		if (cl->tls != NULL && smtp_client_has_extension(cl, "STARTTLS")) {
			smtp_client_command(cl, "STARTTLS");
			smtp_client_enter(cl, SMTPC_STARTTLS);
			return;
		}
		if (cl->tls_mode == SMTP_CLIENT_TLS_REQUIRED) {
			smtp_client_fail(cl, SMTP_CLIENT_NO_TLS, NULL, NULL,
					 "the server does not offer STARTTLS");
			return;
		}
		cl->tls_tried = true;
	}
	if (cl->auth_user != NULL && cl->auth_used == NULL) {
		smtp_client_start_auth(cl);
		return;
	}
	smtp_client_become_ready(cl);
}

/* 220 greeting: EHLO (the owner may hang up first). */
static void smtp_client_on_greeting(smtp_client *cl, const struct smtp_client_reply *r)
{
	if (r->code != 220) {
		smtp_client_fail(cl, SMTP_CLIENT_REFUSED, "greeting", r, NULL);
		return;
	}
	cl->greeted = true;
	if (cl->cb.greeted != NULL) {
		cl->cb.greeted(cl, r, cl->arg);
		if (cl->state != SMTPC_GREETING)
			return;
	}
	smtp_client_send_ehlo(cl);
}

/* The EHLO/LHLO reply: the extensions; an SMTP server that refuses EHLO gets HELO. */
static void smtp_client_on_ehlo(smtp_client *cl, const struct smtp_client_reply *r)
{
	if (r->code / 100 == 2) {
		smtp_client_read_extensions(cl, r);
		smtp_client_after_ehlo(cl);
		return;
	}
	if (cl->protocol == SMTP_CLIENT_LMTP) {
		smtp_client_fail(cl, SMTP_CLIENT_REFUSED, "LHLO", r, NULL);
		return;
	}
	char *line = xasprintf("HELO %s", cl->helo_name);
	smtp_client_command(cl, line);
	free(line);
	smtp_client_enter(cl, SMTPC_HELO);
}

/* The HELO reply: no extensions at all. */
static void smtp_client_on_helo(smtp_client *cl, const struct smtp_client_reply *r)
{
	if (r->code / 100 != 2) {
		smtp_client_fail(cl, SMTP_CLIENT_REFUSED, "HELO", r, NULL);
		return;
	}
	smtp_client_clear_extensions(cl);
	smtp_client_after_ehlo(cl);
}

/* The STARTTLS reply: 220 = handshake (RFC 3207 4). */
static void smtp_client_on_starttls(smtp_client *cl, const struct smtp_client_reply *r)
{
	if (r->code != 220) {
		if (cl->tls_mode == SMTP_CLIENT_TLS_REQUIRED) {
			smtp_client_fail(cl, SMTP_CLIENT_REFUSED, "STARTTLS", r, NULL);
			return;
		}
		/* Opportunistic: go on without TLS. */
		cl->tls_tried = true;
		smtp_client_after_ehlo(cl);
		return;
	}
	smtp_client_enter(cl, SMTPC_TLS);
	if (conn_start_tls_client(cl->c, cl->tls, cl->tls_server_name) < 0)
		smtp_client_fail(cl, SMTP_CLIENT_TLS_FAILED, NULL, NULL, "cannot start TLS");
}

/* An AUTH reply: 334 = a challenge to answer, 235 = done (RFC 4954 4). */
static void smtp_client_on_auth(smtp_client *cl, const struct smtp_client_reply *r)
{
	if (r->code == 334 && !cl->auth_cancelled) {
		const char *last = strrchr(r->text, '\n');
		last = last != NULL ? last + 1 : r->text;
		const char *challenge = strlen(last) > 4 ? last + 4 : "";
		char *response = NULL;
		if (sasl_client_step(cl->sasl, challenge, &response) < 0) {
			/* The server's data is wrong: cancel, and end once it answers. */
			cl->auth_cancelled = true;
			smtp_client_command(cl, "*");
			return;
		}
		log_transcript(cl->proto, conn_id(cl->c), 'C', conn_is_tls(cl->c), NULL, response,
			       strlen(response), true);
		smtp_client_transcribe(cl, 'C', "****", 4);
		conn_write_quiet(cl->c, response, strlen(response));
		conn_write_quiet(cl->c, "\r\n", 2);
		explicit_bzero(response, strlen(response));
		free(response);
		smtp_client_arm_timer(cl);
		return;
	}
	if (cl->auth_cancelled || r->code == 334) {
		smtp_client_fail(cl, SMTP_CLIENT_AUTH_FAILED, "AUTH", r,
				 "the server's authentication data does not verify");
		return;
	}
	if (r->code != 235) {
		cl->auth_used = NULL;
		smtp_client_fail(cl, SMTP_CLIENT_REFUSED, "AUTH", r, NULL);
		return;
	}
	if (strcasecmp(cl->auth_used, "SCRAM-SHA-256") == 0 &&
	    !sasl_client_server_verified(cl->sasl)) {
		smtp_client_fail(cl, SMTP_CLIENT_AUTH_FAILED, "AUTH", r,
				 "the server did not prove it knows the password (SCRAM)");
		return;
	}
	sasl_client_free(&cl->sasl);
	smtp_client_become_ready(cl);
}

/* A reply nobody asked for (421 before closing an idle session). */
static void smtp_client_on_unexpected(smtp_client *cl, const struct smtp_client_reply *r)
{
	smtp_client_fail(cl, SMTP_CLIENT_REFUSED, "idle", r, NULL);
}

/* ---- the transaction ---- */

/* Appends command k of the transaction: 0 = MAIL, 1..n = RCPT, n+1 = DATA. */
static void smtp_client_append_tx_command(smtp_client *cl, buf_t *out, size_t k)
{
	struct smtp_client_tx *tx = cl->tx;
	if (k == 0) {
		smtp_client_append(cl, out, "MAIL FROM:<%s>%s%s", tx->sender,
				   tx->mail_params != NULL ? " " : "",
				   tx->mail_params != NULL ? tx->mail_params : "");
	} else if (k <= tx->rcpt_count) {
		const char *params = tx->rcpt_params[k - 1];
		smtp_client_append(cl, out, "RCPT TO:<%s>%s%s", tx->rcpts[k - 1],
				   params != NULL ? " " : "", params != NULL ? params : "");
	} else {
		smtp_client_append(cl, out, "DATA");
		tx->data_sent = true;
	}
}

/* Writes commands first..last of the transaction in one write. */
static void smtp_client_write_tx_commands(smtp_client *cl, size_t first, size_t last)
{
	buf_t out = BUF_INIT;
	for (size_t k = first; k <= last; k++)
		smtp_client_append_tx_command(cl, &out, k);
	conn_write(cl->c, out.data, out.len);
	buf_free(&out);
}

void smtp_client_send(smtp_client *cl, const struct smtp_client_message *msg)
{
	assert(cl->state == SMTPC_READY && cl->tx == NULL);
	struct smtp_client_tx *tx = xcalloc(1, sizeof(*tx));
	size_t n = msg->rcpt_count;
	tx->sender = xstrdup(msg->sender != NULL ? msg->sender : "");
	tx->mail_params = msg->mail_params != NULL && *msg->mail_params != '\0' ?
		xstrdup(msg->mail_params) : NULL;
	tx->rcpts = xcalloc(n > 0 ? n : 1, sizeof(*tx->rcpts));
	tx->rcpt_params = xcalloc(n > 0 ? n : 1, sizeof(*tx->rcpt_params));
	tx->results = xcalloc(n > 0 ? n : 1, sizeof(*tx->results));
	tx->accepted = xcalloc(n > 0 ? n : 1, sizeof(*tx->accepted));
	tx->rcpt_count = n;
	for (size_t i = 0; i < n; i++) {
		tx->rcpts[i] = xstrdup(msg->rcpts[i]);
		const char *params = msg->rcpt_params != NULL ? msg->rcpt_params[i] : NULL;
		tx->rcpt_params[i] = params != NULL && *params != '\0' ? xstrdup(params) : NULL;
	}
	tx->reader = msg->reader;
	tx->reader_arg = msg->reader_arg;
	if (tx->reader == NULL) {
		tx->chunk = msg->data != NULL ? msg->data : "";
		tx->chunk_len = msg->data != NULL ? msg->len : 0;
	}
	tx->line_start = true;
	/* LMTP servers must pipeline (RFC 2033 4.2); SMTP ones say so (RFC 2920). */
	tx->pipelined = cl->protocol == SMTP_CLIENT_LMTP ||
			smtp_client_has_extension(cl, "PIPELINING");
	cl->tx = tx;
	smtp_client_enter(cl, SMTPC_MAIL);
	if (!tx->pipelined)
		smtp_client_write_tx_commands(cl, 0, 0);
	else if (cl->require_all_rcpts)
		smtp_client_write_tx_commands(cl, 0, n);
	else
		smtp_client_write_tx_commands(cl, 0, n + 1);
}

/* Every RCPT reply is in and DATA is not sent yet: send it, or give up. */
static void smtp_client_decide_data(smtp_client *cl)
{
	struct smtp_client_tx *tx = cl->tx;
	if (tx->mail_failed || tx->accepted_count == 0 ||
	    (cl->require_all_rcpts && tx->accepted_count < tx->rcpt_count)) {
		smtp_client_transaction_end(cl, true);
		return;
	}
	smtp_client_write_tx_commands(cl, tx->rcpt_count + 1, tx->rcpt_count + 1);
	smtp_client_arm_timer(cl);
}

static void smtp_client_start_body(smtp_client *cl);

/* One reply to MAIL, a RCPT or DATA, in the order they were sent. */
static void smtp_client_on_mail_reply(smtp_client *cl, const struct smtp_client_reply *r)
{
	struct smtp_client_tx *tx = cl->tx;
	size_t n = tx->rcpt_count;
	size_t k = tx->replies++;
	bool ok = r->code / 100 == 2;
	if (k == 0) {
		smtp_client_reply_copy(&tx->mail, r);
		if (!ok) {
			/* Every recipient shares the sender's fate. */
			tx->mail_failed = true;
			for (size_t i = 0; i < n; i++)
				smtp_client_rcpt_decided(tx, i, SMTP_STAGE_MAIL, r);
			if (!tx->pipelined) {
				smtp_client_transaction_end(cl, true);
				return;
			}
		} else if (!tx->pipelined) {
			smtp_client_write_tx_commands(cl, 1, 1);
		}
		if (n == 0 && !tx->data_sent) {
			smtp_client_decide_data(cl);
			return;
		}
		smtp_client_arm_timer(cl);
		return;
	}
	if (k <= n) {
		size_t i = k - 1;
		if (!tx->mail_failed) {
			if (ok) {
				tx->results[i].accepted = true;
				tx->accepted[tx->accepted_count++] = i;
			} else {
				smtp_client_rcpt_decided(tx, i, SMTP_STAGE_RCPT, r);
			}
		}
		if (k < n) {
			if (!tx->pipelined)
				smtp_client_write_tx_commands(cl, k + 1, k + 1);
			smtp_client_arm_timer(cl);
			return;
		}
		if (!tx->data_sent) {
			smtp_client_decide_data(cl);
			return;
		}
		smtp_client_arm_timer(cl);
		return;
	}
	/* the DATA reply */
	smtp_client_reply_copy(&tx->data, r);
	if (r->code == 354) {
		if (tx->mail_failed || tx->accepted_count == 0) {
			/* Pipelined DATA went ahead of failures: end an empty message
			 * that has no recipient (RFC 2920 3.1). */
			conn_write_str(cl->c, ".\r\n");
			tx->discard_end = true;
			smtp_client_enter(cl, SMTPC_DATA_END);
			return;
		}
		smtp_client_start_body(cl);
		return;
	}
	for (size_t a = 0; a < tx->accepted_count; a++)
		smtp_client_rcpt_decided(tx, tx->accepted[a], SMTP_STAGE_DATA, r);
	smtp_client_transaction_end(cl, true);
}

/* Writes the next slice of the current chunk dot-stuffed (RFC 5321 4.5.2),
 * a bare LF made CRLF when asked; plain runs of lines go out in one write. */
static void smtp_client_body_slice(smtp_client *cl, struct smtp_client_tx *tx)
{
	const char *p = tx->chunk;
	size_t end = tx->chunk_len - tx->chunk_off > SMTP_CLIENT_BODY_SLICE ?
		tx->chunk_off + SMTP_CLIENT_BODY_SLICE : tx->chunk_len;
	size_t i = tx->chunk_off, run = i;
	while (i < end) {
		if (tx->line_start && p[i] == '.') {
			conn_write_quiet(cl->c, p + run, i - run);
			conn_write_quiet(cl->c, ".", 1);
			run = i;
		}
		const char *nl = memchr(p + i, '\n', end - i);
		if (nl == NULL) {
			tx->last_cr = p[end - 1] == '\r';
			tx->line_start = false;
			i = end;
			break;
		}
		size_t j = (size_t)(nl - p);
		bool has_cr = j > 0 ? p[j - 1] == '\r' : tx->last_cr;
		if (cl->normalize_newlines && !has_cr) {
			conn_write_quiet(cl->c, p + run, j - run);
			conn_write_quiet(cl->c, "\r\n", 2);
			run = j + 1;
		}
		i = j + 1;
		tx->line_start = true;
		tx->last_cr = false;
	}
	if (i > run)
		conn_write_quiet(cl->c, p + run, i - run);
	tx->chunk_off = i;
}

/* Streams the body while the output is under the high-water mark; waits for
 * conn_on_drain otherwise; ends with the final dot. */
static void smtp_client_body_pump(conn *c, void *arg)
{
	smtp_client *cl = arg;
	if (conn_is_closing(c) || cl->state != SMTPC_BODY)
		return; /* on_close reports the transaction */
	struct smtp_client_tx *tx = cl->tx;
	for (unsigned step = 0;; step++) {
		if (conn_output_pending(c) >= NET_OUTPUT_HIGH_WATER ||
		    step >= SMTP_CLIENT_BODY_STEPS) {
			/* Also yields to the loop after a bounded amount of work. */
			conn_on_drain(c, smtp_client_body_pump, cl);
			smtp_client_arm_timer(cl);
			return;
		}
		if (tx->chunk_off < tx->chunk_len) {
			smtp_client_body_slice(cl, tx);
			continue;
		}
		if (tx->reader == NULL || tx->reader_eof)
			break;
		const char *chunk = NULL;
		size_t len = 0;
		int rc = tx->reader(tx->reader_arg, &chunk, &len);
		if (rc < 0) {
			smtp_client_fail(cl, SMTP_CLIENT_ABORTED, NULL, NULL,
					 "the message could not be read");
			return;
		}
		if (rc == 0) {
			tx->reader_eof = true;
			break;
		}
		tx->chunk = chunk;
		tx->chunk_len = len;
		tx->chunk_off = 0;
	}
	if (!tx->line_start)
		conn_write_quiet(c, "\r\n", 2);
	conn_write_quiet(c, ".\r\n", 3);
	smtp_client_enter(cl, SMTPC_DATA_END);
}

/* 354: the body goes out. */
static void smtp_client_start_body(smtp_client *cl)
{
	smtp_client_enter(cl, SMTPC_BODY);
	smtp_client_body_pump(cl->c, cl);
}

/* A reply while the body is still being sent: the server gave up on it. The
 * stream is out of step, so the session ends after recording the reply. */
static void smtp_client_on_body_reply(smtp_client *cl, const struct smtp_client_reply *r)
{
	struct smtp_client_tx *tx = cl->tx;
	smtp_client_reply_copy(&tx->final, r);
	for (size_t a = 0; a < tx->accepted_count; a++)
		smtp_client_rcpt_decided(tx, tx->accepted[a], SMTP_STAGE_END_OF_DATA, r);
	smtp_client_fail(cl, SMTP_CLIENT_LOST, NULL, NULL,
			 "the server replied before the end of the data");
}

/* The reply to the final dot (SMTP), or one per accepted recipient (LMTP,
 * RFC 2033 4.2). */
static void smtp_client_on_end_reply(smtp_client *cl, const struct smtp_client_reply *r)
{
	struct smtp_client_tx *tx = cl->tx;
	if (tx->discard_end) {
		smtp_client_transaction_end(cl, false);
		return;
	}
	smtp_client_reply_copy(&tx->final, r);
	if (cl->protocol == SMTP_CLIENT_SMTP) {
		for (size_t a = 0; a < tx->accepted_count; a++)
			smtp_client_rcpt_decided(tx, tx->accepted[a], SMTP_STAGE_END_OF_DATA, r);
		smtp_client_transaction_end(cl, false);
		return;
	}
	smtp_client_rcpt_decided(tx, tx->accepted[tx->end_replies++], SMTP_STAGE_END_OF_DATA, r);
	if (tx->end_replies == tx->accepted_count) {
		smtp_client_transaction_end(cl, false);
		return;
	}
	smtp_client_arm_timer(cl);
}

/* The RSET reply: READY again. */
static void smtp_client_on_rset(smtp_client *cl, const struct smtp_client_reply *r)
{
	if (r->code / 100 != 2) {
		smtp_client_fail(cl, SMTP_CLIENT_REFUSED, "RSET", r, NULL);
		return;
	}
	smtp_client_become_ready(cl);
}

/* The QUIT reply (RFC 5321 4.1.1.10): close. */
static void smtp_client_on_quit(smtp_client *cl, const struct smtp_client_reply *r)
{
	smtp_client_set_end(cl, SMTP_CLIENT_QUIT, NULL, NULL, NULL);
	smtp_client_enter(cl, SMTPC_CLOSED);
	conn_close(cl->c);
}

/* ---- conn handlers ---- */

static void smtp_client_on_line(conn *c, char *line, size_t len, bool crlf)
{
	smtp_client *cl = conn_data(c);
	if (cl == NULL || cl->state == SMTPC_CLOSED)
		return;
	smtp_client_transcribe(cl, 'S', line, len);
	int rc = smtp_reply_parser_line(&cl->parser, line, len);
	if (rc < 0) {
		char *why = xasprintf("malformed reply: %s", cl->parser.error);
		smtp_client_fail(cl, SMTP_CLIENT_PROTOCOL, NULL, NULL, why);
		free(why);
		return;
	}
	if (rc == 0)
		return;
	smtp_client_reply_fn *handler = smtp_client_states[cl->state].on_reply;
	if (handler != NULL)
		handler(cl, &cl->parser.reply);
}

static void smtp_client_on_line_too_long(conn *c)
{
	smtp_client *cl = conn_data(c);
	if (cl != NULL)
		smtp_client_fail(cl, SMTP_CLIENT_PROTOCOL, NULL, NULL,
				 "malformed reply: reply line too long");
}

static void smtp_client_on_tls_ready(conn *c)
{
	smtp_client *cl = conn_data(c);
	if (cl == NULL || cl->state != SMTPC_TLS)
		return;
	cl->tls_tried = true;
	smtp_client_clear_extensions(cl);
	if (!cl->greeted) {
		smtp_client_enter(cl, SMTPC_GREETING);
		return;
	}
	/* RFC 3207 4.2: forget what was learnt before TLS and ask again. */
	smtp_client_send_ehlo(cl);
}

static void smtp_client_on_timeout(conn *c)
{
	smtp_client *cl = conn_data(c);
	if (cl == NULL)
		return;
	char *why = xasprintf("no reply in state %s", smtp_client_states[cl->state].name);
	smtp_client_fail(cl, SMTP_CLIENT_TIMEOUT, NULL, NULL, why);
	free(why);
}

/* Frees the session. */
static void smtp_client_free(smtp_client **clp)
{
	smtp_client *cl = *clp;
	smtp_client_tx_free(&cl->tx);
	smtp_client_clear_extensions(cl);
	smtp_reply_parser_free(&cl->parser);
	sasl_client_free(&cl->sasl);
	smtp_client_reply_clear(&cl->end_reply);
	free(cl->end_error);
	free(cl->helo_name);
	free(cl->tls_server_name);
	free(cl->auth_user);
	if (cl->auth_password != NULL)
		explicit_bzero(cl->auth_password, strlen(cl->auth_password));
	free(cl->auth_password);
	free(cl->auth_mechanism);
	free(cl->proto);
	free(cl);
	*clp = NULL;
}

/* The end: report a running transaction, then the session, then free it. */
static void smtp_client_finish(smtp_client *cl)
{
	smtp_client_enter(cl, SMTPC_CLOSED);
	if (cl->tx != NULL)
		smtp_client_report(cl, false);
	struct smtp_client_end end = {
		.failure = cl->end_failure,
		.state = cl->end_state,
		.command = cl->end_command,
		.reply = cl->end_reply.code != 0 ? &cl->end_reply : NULL,
		.error = cl->end_error,
	};
	if (cl->cb.closed != NULL)
		cl->cb.closed(cl, &end, cl->arg);
	smtp_client_free(&cl);
}

static void smtp_client_on_close(conn *c)
{
	smtp_client *cl = conn_data(c);
	if (cl == NULL)
		return;
	if (cl->state == SMTPC_TLS)
		smtp_client_set_end(cl, SMTP_CLIENT_TLS_FAILED, NULL, NULL,
				    conn_tls_error(c) != NULL ? conn_tls_error(c) :
				    "TLS handshake failed");
	else
		smtp_client_set_end(cl, SMTP_CLIENT_LOST, NULL, NULL, "connection closed");
	conn_set_data(c, NULL);
	smtp_client_finish(cl);
}

static const struct conn_handlers smtp_client_handlers = {
	.on_line = smtp_client_on_line,
	.on_line_too_long = smtp_client_on_line_too_long,
	.on_tls_ready = smtp_client_on_tls_ready,
	.on_timeout = smtp_client_on_timeout,
	.on_close = smtp_client_on_close,
};

/* The connect attempt finished. */
static void smtp_client_connected(conn *c, int status, const char *err, void *arg)
{
	smtp_client *cl = arg;
	if (status < 0 || c == NULL) {
		smtp_client_set_end(cl, SMTP_CLIENT_CONNECT, NULL, NULL,
				    err != NULL ? err : "cannot connect");
		smtp_client_finish(cl);
		return;
	}
	cl->c = c;
	conn_set_data(c, cl);
	if (cl->state == SMTPC_CLOSED) {
		/* Aborted while connecting. */
		conn_abort(c);
		return;
	}
	if (cl->tls_mode == SMTP_CLIENT_TLS_IMPLICIT) {
		smtp_client_enter(cl, SMTPC_TLS);
		if (conn_start_tls_client(c, cl->tls, cl->tls_server_name) < 0)
			smtp_client_fail(cl, SMTP_CLIENT_TLS_FAILED, NULL, NULL, "cannot start TLS");
		return;
	}
	smtp_client_enter(cl, SMTPC_GREETING);
}

/* A session not connected yet, from the options (strings copied). */
static smtp_client *smtp_client_new(uv_loop_t *loop, const struct smtp_client_opts *opts,
				    const struct smtp_client_callbacks *callbacks, void *arg)
{
	smtp_client *cl = xcalloc(1, sizeof(*cl));
	cl->loop = loop;
	cl->state = SMTPC_CONNECTING;
	cl->cb = *callbacks;
	cl->arg = arg;
	cl->protocol = opts->protocol;
	cl->tls_mode = opts->tls_mode;
	cl->tls = opts->tls;
	cl->helo_name = xstrdup(opts->helo_name != NULL ? opts->helo_name : "localhost");
	cl->tls_server_name = opts->tls_server_name != NULL ? xstrdup(opts->tls_server_name) : NULL;
	cl->auth_user = opts->auth_user != NULL ? xstrdup(opts->auth_user) : NULL;
	cl->auth_password = xstrdup(opts->auth_password != NULL ? opts->auth_password : "");
	cl->auth_mechanism = opts->auth_mechanism != NULL ? xstrdup(opts->auth_mechanism) : NULL;
	cl->proto = xstrdup(opts->transcript_proto != NULL ? opts->transcript_proto :
			    opts->protocol == SMTP_CLIENT_LMTP ? "lmtp" : "smtp");
	cl->timeout_scale = opts->timeout_scale > 0 ? opts->timeout_scale : 1.0;
	cl->require_all_rcpts = opts->require_all_rcpts;
	cl->normalize_newlines = opts->normalize_newlines;
	smtp_reply_parser_init(&cl->parser);
	return cl;
}

/* Checks options that cannot work; -1 with *err_r. */
static int smtp_client_check_opts(const struct smtp_client_opts *opts, char **err_r)
{
	if (opts->tls_mode == SMTP_CLIENT_TLS_IMPLICIT && opts->tls == NULL) {
		*err_r = xstrdup("implicit TLS needs a TLS context");
		return -1;
	}
	return 0;
}

int smtp_client_connect_tcp(uv_loop_t *loop, const char *host, int port,
			    const struct smtp_client_opts *opts,
			    const struct smtp_client_callbacks *callbacks, void *arg,
			    smtp_client **cl_r, char **err_r)
{
	*cl_r = NULL;
	if (smtp_client_check_opts(opts, err_r) < 0)
		return -1;
	smtp_client *cl = smtp_client_new(loop, opts, callbacks, arg);
	if (net_connect_tcp(loop, host, port, cl->proto, SMTP_REPLY_MAX_LINE,
			    &smtp_client_handlers, cl, smtp_client_connected, cl) < 0) {
		*err_r = xasprintf("cannot connect to %s:%d", host, port);
		smtp_client_free(&cl);
		return -1;
	}
	*cl_r = cl;
	return 0;
}

int smtp_client_connect_unix(uv_loop_t *loop, const char *path,
			     const struct smtp_client_opts *opts,
			     const struct smtp_client_callbacks *callbacks, void *arg,
			     smtp_client **cl_r, char **err_r)
{
	*cl_r = NULL;
	if (smtp_client_check_opts(opts, err_r) < 0)
		return -1;
	smtp_client *cl = smtp_client_new(loop, opts, callbacks, arg);
	if (net_connect_unix(loop, path, cl->proto, SMTP_REPLY_MAX_LINE, &smtp_client_handlers, cl,
			     smtp_client_connected, cl) < 0) {
		*err_r = xasprintf("cannot connect to %s", path);
		smtp_client_free(&cl);
		return -1;
	}
	*cl_r = cl;
	return 0;
}

void smtp_client_quit(smtp_client *cl)
{
	if (cl->state == SMTPC_CLOSED || cl->state == SMTPC_QUIT)
		return;
	if (cl->c == NULL || cl->tx != NULL || cl->state == SMTPC_CONNECTING ||
	    cl->state == SMTPC_TLS || conn_is_closing(cl->c)) {
		smtp_client_abort(cl);
		return;
	}
	smtp_client_set_end(cl, SMTP_CLIENT_QUIT, NULL, NULL, NULL);
	smtp_client_command(cl, "QUIT");
	smtp_client_enter(cl, SMTPC_QUIT);
}

void smtp_client_abort(smtp_client *cl)
{
	if (cl->state == SMTPC_CLOSED)
		return;
	smtp_client_set_end(cl, SMTP_CLIENT_ABORTED, NULL, NULL, "aborted");
	smtp_client_enter(cl, SMTPC_CLOSED);
	if (cl->c != NULL && !conn_is_closing(cl->c))
		conn_abort(cl->c);
	/* Still connecting: smtp_client_connected closes it. */
}

bool smtp_client_is_ready(const smtp_client *cl)
{
	return cl->state == SMTPC_READY;
}

const char *smtp_client_extension(const smtp_client *cl, const char *keyword)
{
	for (size_t i = 0; i < cl->ext_count; i++)
		if (strcasecmp(cl->exts[i].keyword, keyword) == 0)
			return cl->exts[i].params;
	return NULL;
}

bool smtp_client_has_extension(const smtp_client *cl, const char *keyword)
{
	return smtp_client_extension(cl, keyword) != NULL;
}

bool smtp_client_extension_has_param(const smtp_client *cl, const char *keyword,
				     const char *param)
{
	const char *p = smtp_client_extension(cl, keyword);
	size_t want = strlen(param);
	while (p != NULL && *p != '\0') {
		size_t n = strcspn(p, " ");
		if (n == want && strncasecmp(p, param, n) == 0)
			return true;
		p += n;
		while (*p == ' ')
			p++;
	}
	return false;
}

const char *smtp_client_auth_mechanism(const smtp_client *cl)
{
	return cl->state == SMTPC_AUTH ? NULL : cl->auth_used;
}

bool smtp_client_is_tls(const smtp_client *cl)
{
	return cl->c != NULL && conn_is_tls(cl->c);
}

conn *smtp_client_conn(const smtp_client *cl)
{
	return cl->c;
}

const char *smtp_client_state_name(const smtp_client *cl)
{
	return smtp_client_states[cl->state].name;
}
