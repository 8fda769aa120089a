/* smtp_client.c: delivery to other domains over SMTP (RFC 5321 client side).
 *
 * One connection per delivery (one message, one domain). The next hop is the
 * domain's [routes] entry ("host:port", optionally "auth=user:password"),
 * else the "*" route (a smarthost), else its MX records (dns.h, on the thread
 * pool) tried in order of preference on port 25.
 *
 * States:
 *   RESOLVE -> CONNECTING -> GREETING -> EHLO [-> STARTTLS -> TLS -> EHLO]
 *   [-> AUTH] -> MAIL_REPLIES (MAIL, RCPT..., DATA; pipelined when offered)
 *   -> BODY -> DATA_REPLY -> QUIT -> done
 * Any failure ends the delivery: recipients without a result get the reply
 * (5xx = permanent, else temporary) and the connection closes. STARTTLS is
 * used whenever offered (opportunistic, RFC 3207; certificates are not
 * checked because MX hosts rarely have verifiable names).
 *
 * Lab faults (fault.h), each a temporary failure retried on the schedule:
 * `route refuse` fails every connect as refused, `route timeout` as timed
 * out, and `route drop` connects, reads the greeting and hangs up. */
#include "mta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns.h"
#include "fault.h"
#include "log.h"
#include "sasl.h"
#include "smtp_path.h"

#define SMTPC_REPLY_TIMEOUT_MS (300 * 1000)
#define SMTPC_MAX_HOSTS 8

enum smtpc_state {
	SMTPC_RESOLVE,
	SMTPC_CONNECTING,
	SMTPC_GREETING,
	SMTPC_EHLO,
	SMTPC_HELO,
	SMTPC_STARTTLS,
	SMTPC_TLS,
	SMTPC_AUTH,
	SMTPC_MAIL_REPLIES,
	SMTPC_BODY,
	SMTPC_DATA_REPLY,
	SMTPC_QUIT,
	SMTPC_DONE,
};

static const char *const smtpc_state_names[] = {
	"RESOLVE", "CONNECTING", "GREETING", "EHLO", "HELO", "STARTTLS", "TLS", "AUTH",
	"MAIL_REPLIES", "BODY", "DATA_REPLY", "QUIT", "DONE",
};

struct smtpc {
	struct smtp_clients *sc;
	struct delivery *dl;
	conn *c;
	enum smtpc_state state;
	struct smtp_reply reply;
	char *hosts[SMTPC_MAX_HOSTS];
	size_t host_count, host_index;
	int port;
	char *auth_user, *auth_password;
	char *last_error;
	/* what the server offered */
	bool pipelining, starttls, size, eightbit, smtputf8, dsn, auth_plain;
	int64_t size_limit;
	bool tls_done;
	bool fault_drop;        /* route drop: hang up after the greeting */
	char *converted;        /* the body downgraded to 7 bits, or NULL */
	size_t converted_len;
	sasl_client *sasl;
	size_t replies_seen;
	bool mail_failed;
	size_t *accepted;
	size_t accepted_count;
	struct body_sender bs;
	struct smtpc *next;
};

struct smtp_clients {
	struct mta *m;
	tls_ctx *tls;
	struct smtpc *active;
	bool shutting_down;
};

static void smtpc_connect_next(struct smtpc *x);

static void smtpc_enter(struct smtpc *x, enum smtpc_state state)
{
	log_kv(LOG_DEBUG, x->c != NULL ? conn_id(x->c) : 0, "smtp client state", "from",
	       smtpc_state_names[x->state], "to", smtpc_state_names[state], "domain",
	       x->dl != NULL ? x->dl->domain : NULL, NULL);
	x->state = state;
}

struct smtp_clients *smtp_clients_new(struct mta *m)
{
	struct smtp_clients *sc = xcalloc(1, sizeof(*sc));
	sc->m = m;
	char *err = NULL;
	sc->tls = tls_ctx_client_new(false, NULL, &err);
	if (sc->tls == NULL) {
		log_kv(LOG_WARN, 0, "no TLS for outgoing SMTP", "error", err, NULL);
		free(err);
	}
	return sc;
}

/* Frees the client state once it is detached from its connection. */
static void smtpc_free(struct smtpc *x)
{
	for (size_t i = 0; i < x->host_count; i++)
		free(x->hosts[i]);
	free(x->auth_user);
	free(x->auth_password);
	free(x->last_error);
	free(x->converted);
	free(x->accepted);
	sasl_client_free(&x->sasl);
	buf_free(&x->reply.text);
	struct smtp_clients *sc = x->sc;
	for (struct smtpc **pp = &sc->active; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	free(x);
}

/* Hands the delivery back: recipients without a result get `reply`. */
static void smtpc_finish(struct smtpc *x, int code, const char *status, const char *reply)
{
	struct delivery *dl = x->dl;
	if (dl == NULL)
		return;
	x->dl = NULL;
	if (reply != NULL)
		delivery_set_rest(dl, code, status, reply);
	dl->done(dl);
}

/* Ends the session after a failure reply: QUIT politely, then close. */
static void smtpc_fail(struct smtpc *x, int code, const char *status, const char *reply)
{
	smtpc_finish(x, code, status, reply);
	if (x->c != NULL && !conn_is_closing(x->c)) {
		smtpc_enter(x, SMTPC_QUIT);
		conn_write_str(x->c, "QUIT\r\n");
		conn_close(x->c);
	}
}

/* Fails with the server's reply (its class decides permanent or not). */
static void smtpc_fail_reply(struct smtpc *x, const char *when)
{
	char status[16];
	smtp_reply_status(&x->reply, status, sizeof(status));
	char *one = smtp_reply_oneline(&x->reply);
	char *text = xasprintf("%s (in reply to %s, host %s)", one, when,
			       x->dl != NULL && x->dl->hop != NULL ? x->dl->hop : "?");
	int code = x->reply.code / 100 == 5 ? x->reply.code : 451;
	smtpc_fail(x, code, code == 451 && x->reply.code / 100 != 4 ? "4.5.0" : status, text);
	free(one);
	free(text);
}

/* Reads the EHLO keywords. */
static void smtpc_read_ehlo(struct smtpc *x)
{
	x->pipelining = x->starttls = x->size = x->eightbit = x->smtputf8 = x->dsn = false;
	x->auth_plain = false;
	x->size_limit = 0;
	const char *line = buf_cstr(&x->reply.text);
	bool first = true;
	while (line != NULL && *line != '\0') {
		const char *end = strchr(line, '\n');
		size_t n = end != NULL ? (size_t)(end - line) : strlen(line);
		char *kw = n > 4 ? xstrndup(line + 4, n - 4) : xstrdup("");
		if (!first) {
			if (strcasecmp(kw, "PIPELINING") == 0)
				x->pipelining = true;
			else if (strcasecmp(kw, "STARTTLS") == 0)
				x->starttls = true;
			else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == '\0' || kw[4] == ' ')) {
				x->size = true;
				x->size_limit = kw[4] == ' ' ? strtoll(kw + 5, NULL, 10) : 0;
			} else if (strcasecmp(kw, "8BITMIME") == 0)
				x->eightbit = true;
			else if (strcasecmp(kw, "SMTPUTF8") == 0)
				x->smtputf8 = true;
			else if (strcasecmp(kw, "DSN") == 0)
				x->dsn = true;
			else if (strncasecmp(kw, "AUTH ", 5) == 0 && strcasestr(kw, "PLAIN") != NULL)
				x->auth_plain = true;
		}
		free(kw);
		first = false;
		line = end != NULL ? end + 1 : NULL;
	}
}

/* True when the message cannot go without SMTPUTF8 (non-ASCII addresses). */
static bool smtpc_needs_utf8(const struct delivery *dl)
{
	for (const char *p = dl->msg->sender; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return true;
	for (size_t i = 0; i < dl->count; i++)
		for (const char *p = dl->rcpts[i].rcpt->address; *p != '\0'; p++)
			if ((unsigned char)*p >= 0x80)
				return true;
	return false;
}

/* Writes command k of the transaction: 0 = MAIL, 1..n = RCPT, n+1 = DATA. */
static void smtpc_write_command(struct smtpc *x, size_t k)
{
	struct delivery *dl = x->dl;
	buf_t out = BUF_INIT;
	if (k == 0) {
		unsigned flags = (x->size ? MAIL_FROM_SIZE : 0) | (x->eightbit ? MAIL_FROM_8BIT : 0) |
				 (x->smtputf8 ? MAIL_FROM_SMTPUTF8 : 0) | (x->dsn ? MAIL_FROM_DSN : 0);
		delivery_mail_from(&out, dl, flags, NULL);
	} else if (k <= dl->count) {
		const struct queue_rcpt *r = dl->rcpts[k - 1].rcpt;
		buf_printf(&out, "RCPT TO:<%s>", r->address);
		if (x->dsn && r->notify != 0) {
			buf_append_str(&out, " NOTIFY=");
			if (r->notify & QUEUE_NOTIFY_NEVER) {
				buf_append_str(&out, "NEVER");
			} else {
				const char *sep = "";
				if (r->notify & QUEUE_NOTIFY_SUCCESS) {
					buf_append_str(&out, "SUCCESS");
					sep = ",";
				}
				if (r->notify & QUEUE_NOTIFY_FAILURE) {
					buf_printf(&out, "%sFAILURE", sep);
					sep = ",";
				}
				if (r->notify & QUEUE_NOTIFY_DELAY)
					buf_printf(&out, "%sDELAY", sep);
			}
		}
		if (x->dsn && r->orcpt != NULL) {
			const char *semi = strchr(r->orcpt, ';');
			if (semi != NULL) {
				char *enc = xtext_encode(semi + 1);
				buf_printf(&out, " ORCPT=%.*s;%s", (int)(semi - r->orcpt), r->orcpt, enc);
				free(enc);
			}
		}
	} else {
		buf_append_str(&out, "DATA");
	}
	buf_append_str(&out, "\r\n");
	conn_write(x->c, out.data, out.len);
	buf_free(&out);
}

/* Greeted (and maybe in TLS and authenticated): start the transaction. */
static void smtpc_begin_transaction(struct smtpc *x)
{
	struct delivery *dl = x->dl;
	if (x->size && x->size_limit > 0 && (int64_t)dl->msg->body_len > x->size_limit) {
		char *text = xasprintf("552 5.3.4 Message too big for %s (limit %lld)", dl->hop,
				       (long long)x->size_limit);
		smtpc_fail(x, 552, "5.3.4", text);
		free(text);
		return;
	}
	if (dl->msg->smtputf8 && !x->smtputf8 && smtpc_needs_utf8(dl)) {
		char *text = xasprintf("553 5.6.7 %s does not support SMTPUTF8 (RFC 6531 3.2)", dl->hop);
		smtpc_fail(x, 553, "5.6.7", text);
		free(text);
		return;
	}
	if (dl->msg->body_8bit && !x->eightbit && x->converted == NULL) {
		const char *why = NULL;
		if (downgrade_to_7bit(dl->msg->body, dl->msg->body_len, &x->converted,
				      &x->converted_len, &why) < 0) {
			char *text = xasprintf("554 5.6.3 Conversion required but not supported: %s "
					       "does not support 8BITMIME and %s (RFC 6152 3)",
					       dl->hop, why);
			smtpc_fail(x, 554, "5.6.3", text);
			free(text);
			return;
		}
	}
	dl->remote_dsn = x->dsn;
	x->replies_seen = 0;
	x->mail_failed = false;
	x->accepted = xcalloc(dl->count > 0 ? dl->count : 1, sizeof(*x->accepted));
	x->accepted_count = 0;
	smtpc_enter(x, SMTPC_MAIL_REPLIES);
	if (x->pipelining) {
		for (size_t k = 0; k <= dl->count + 1; k++)
			smtpc_write_command(x, k);
	} else {
		smtpc_write_command(x, 0);
	}
}

/* After EHLO: STARTTLS if offered, AUTH if the route asks, then MAIL. */
static void smtpc_after_ehlo(struct smtpc *x)
{
	if (x->starttls && !x->tls_done && x->sc->tls != NULL) {
		smtpc_enter(x, SMTPC_STARTTLS);
		conn_write_str(x->c, "STARTTLS\r\n");
		return;
	}
	if (x->auth_user != NULL) {
		if (!x->auth_plain) {
			char *text = xasprintf("451 4.7.0 %s does not offer AUTH PLAIN%s", x->dl->hop,
					       conn_is_tls(x->c) ? "" : " (no TLS)");
			smtpc_fail(x, 451, "4.7.0", text);
			free(text);
			return;
		}
		x->sasl = sasl_client_new("PLAIN", x->auth_user, x->auth_password);
		char *initial = sasl_client_initial(x->sasl);
		smtpc_enter(x, SMTPC_AUTH);
		conn_mask_next_line(x->c);
		conn_printf(x->c, "AUTH PLAIN %s\r\n", initial != NULL ? initial : "=");
		free(initial);
		return;
	}
	smtpc_begin_transaction(x);
}

static void smtpc_body_sent(void *arg)
{
	struct smtpc *x = arg;
	if (x->state == SMTPC_BODY)
		smtpc_enter(x, SMTPC_DATA_REPLY);
}

/* One reply to MAIL, a RCPT or DATA. */
static void smtpc_mail_reply(struct smtpc *x)
{
	struct delivery *dl = x->dl;
	int code = x->reply.code;
	size_t k = x->replies_seen++;
	char status[16];
	smtp_reply_status(&x->reply, status, sizeof(status));
	if (k == 0) {
		if (code / 100 != 2) {
			/* Every recipient gets the MAIL reply; the rest is ignored. */
			x->mail_failed = true;
			char *one = smtp_reply_oneline(&x->reply);
			char *text = xasprintf("%s (in reply to MAIL FROM, host %s)", one, dl->hop);
			delivery_set_rest(dl, code / 100 == 5 ? code : 451,
					  code / 100 == 5 || code / 100 == 4 ? status : "4.5.0", text);
			free(one);
			free(text);
			if (!x->pipelining)
				smtpc_fail(x, 451, "4.5.0", NULL);
			return;
		} else if (!x->pipelining) {
			smtpc_write_command(x, 1);
		}
		return;
	}
	if (k <= dl->count) {
		if (!x->mail_failed) {
			if (code / 100 == 2) {
				x->accepted[x->accepted_count++] = k - 1;
			} else {
				char *one = smtp_reply_oneline(&x->reply);
				char *text = xasprintf("%s (in reply to RCPT TO, host %s)", one, dl->hop);
				delivery_set(&dl->rcpts[k - 1], code / 100 == 5 ? code : 451,
					     code / 100 == 5 || code / 100 == 4 ? status : "4.5.0", text);
				free(one);
				free(text);
			}
		}
		if (!x->pipelining) {
			if (k < dl->count) {
				smtpc_write_command(x, k + 1);
			} else if (x->accepted_count == 0) {
				smtpc_fail(x, 451, "4.5.0", "451 4.5.0 No recipient was accepted");
			} else {
				smtpc_write_command(x, k + 1);
			}
		}
		return;
	}
	/* DATA */
	if (x->mail_failed) {
		if (code == 354)
			conn_write_str(x->c, ".\r\n");
		smtpc_fail(x, 451, "4.5.0", NULL);
		return;
	}
	if (code == 354 && x->accepted_count > 0) {
		smtpc_enter(x, SMTPC_BODY);
		conn_set_command_timeout(x->c, 0);
		if (x->converted != NULL)
			body_sender_start(&x->bs, x->c, x->converted, x->converted_len, smtpc_body_sent,
					  x);
		else
			body_sender_start(&x->bs, x->c, dl->msg->body, dl->msg->body_len,
					  smtpc_body_sent, x);
		return;
	}
	if (code == 354) {
		conn_write_str(x->c, ".\r\n");
		smtpc_fail(x, 451, "4.5.0", "451 4.5.0 No recipient was accepted");
		return;
	}
	if (x->accepted_count == 0) {
		smtpc_fail(x, 451, "4.5.0", "451 4.5.0 No recipient was accepted");
		return;
	}
	smtpc_fail_reply(x, "DATA");
}

/* The final reply after the body: it applies to every accepted recipient. */
static void smtpc_data_reply(struct smtpc *x)
{
	struct delivery *dl = x->dl;
	char status[16];
	smtp_reply_status(&x->reply, status, sizeof(status));
	char *one = smtp_reply_oneline(&x->reply);
	char *text = xasprintf("%s (in reply to end of DATA, host %s)", one, dl->hop);
	int code = x->reply.code;
	int stored = code / 100 == 2 || code / 100 == 5 ? code : 451;
	const char *st = code / 100 == 2 || code / 100 == 5 || code / 100 == 4 ? status : "4.5.0";
	for (size_t i = 0; i < x->accepted_count; i++)
		delivery_set(&dl->rcpts[x->accepted[i]], stored, st, text);
	free(one);
	free(text);
	smtpc_finish(x, 451, "4.5.0", "451 4.5.0 No reply for this recipient");
	smtpc_enter(x, SMTPC_QUIT);
	conn_write_str(x->c, "QUIT\r\n");
	conn_close(x->c);
}

static void smtpc_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct smtpc *x = conn_data(c);
	if (x == NULL || x->dl == NULL)
		return;
	int rc = smtp_reply_feed(&x->reply, line, len);
	if (rc < 0) {
		char *text = xasprintf("451 4.5.0 Malformed reply from %s", x->dl->hop);
		smtpc_fail(x, 451, "4.5.0", text);
		free(text);
		conn_abort(c);
		return;
	}
	if (rc == 0)
		return;
	conn_set_command_timeout(c, SMTPC_REPLY_TIMEOUT_MS);
	int code = x->reply.code;
	switch (x->state) {
	case SMTPC_GREETING:
		if (code != 220) {
			smtpc_fail_reply(x, "the greeting");
			break;
		}
		if (fault_get(x->sc->m->d->datadir, "route", "drop") != NULL) {
			x->fault_drop = true;
			conn_abort(c);
			break;
		}
		smtpc_enter(x, SMTPC_EHLO);
		conn_printf(c, "EHLO %s\r\n", x->sc->m->hostname);
		break;
	case SMTPC_EHLO:
		if (code / 100 != 2) {
			smtpc_enter(x, SMTPC_HELO);
			conn_printf(c, "HELO %s\r\n", x->sc->m->hostname);
			break;
		}
		smtpc_read_ehlo(x);
		smtpc_after_ehlo(x);
		break;
	case SMTPC_HELO:
		if (code / 100 != 2) {
			smtpc_fail_reply(x, "HELO");
			break;
		}
		x->pipelining = false;
		smtpc_after_ehlo(x);
		break;
	case SMTPC_STARTTLS:
		if (code != 220) {
			/* Offered but refused: go on without TLS. */
			x->tls_done = true;
			smtpc_after_ehlo(x);
			break;
		}
		smtpc_enter(x, SMTPC_TLS);
		if (conn_start_tls_client(c, x->sc->tls, NULL) < 0) {
			smtpc_fail(x, 451, "4.7.5", "451 4.7.5 Cannot start TLS");
			conn_abort(c);
		}
		break;
	case SMTPC_AUTH:
		if (code == 334) {
			/* PLAIN has no further steps; anything else is a failure. */
			conn_write_str(c, "*\r\n");
			break;
		}
		if (code != 235) {
			smtpc_fail_reply(x, "AUTH");
			break;
		}
		sasl_client_free(&x->sasl);
		smtpc_begin_transaction(x);
		break;
	case SMTPC_MAIL_REPLIES:
		smtpc_mail_reply(x);
		break;
	case SMTPC_BODY:
	case SMTPC_DATA_REPLY:
		smtpc_data_reply(x);
		break;
	default:
		break;
	}
	smtp_reply_reset(&x->reply);
}

static void smtpc_on_line_too_long(conn *c)
{
	struct smtpc *x = conn_data(c);
	if (x != NULL && x->dl != NULL) {
		char *text = xasprintf("451 4.5.0 Over-long reply line from %s", x->dl->hop);
		smtpc_fail(x, 451, "4.5.0", text);
		free(text);
	}
	conn_abort(c);
}

static void smtpc_on_tls_ready(conn *c)
{
	struct smtpc *x = conn_data(c);
	if (x == NULL || x->dl == NULL)
		return;
	x->tls_done = true;
	smtpc_enter(x, SMTPC_EHLO);
	conn_printf(c, "EHLO %s\r\n", x->sc->m->hostname);
}

static void smtpc_on_timeout(conn *c)
{
	struct smtpc *x = conn_data(c);
	if (x != NULL && x->dl != NULL) {
		char *text = xasprintf("451 4.4.2 Timeout waiting for %s in state %s", x->dl->hop,
				       smtpc_state_names[x->state]);
		smtpc_finish(x, 451, "4.4.2", text);
		free(text);
	}
	conn_abort(c);
}

static void smtpc_on_close(conn *c)
{
	struct smtpc *x = conn_data(c);
	if (x == NULL)
		return;
	conn_set_data(c, NULL);
	if (x->dl != NULL) {
		char *text;
		if (x->state == SMTPC_TLS)
			text = xasprintf("451 4.7.5 TLS handshake with %s failed: %s", x->dl->hop,
					 conn_tls_error(c) != NULL ? conn_tls_error(c) : "error");
		else
			text = xasprintf("451 4.4.2 Lost connection with %s in state %s%s", x->dl->hop,
					 smtpc_state_names[x->state],
					 x->fault_drop ? " (injected fault: route drop)" : "");
		smtpc_finish(x, 451, x->state == SMTPC_TLS ? "4.7.5" : "4.4.2", text);
		free(text);
	}
	smtpc_free(x);
}

static const struct conn_handlers smtpc_handlers = {
	.on_line = smtpc_on_line,
	.on_line_too_long = smtpc_on_line_too_long,
	.on_tls_ready = smtpc_on_tls_ready,
	.on_timeout = smtpc_on_timeout,
	.on_close = smtpc_on_close,
};

static void smtpc_connected(conn *c, int status, const char *err, void *arg)
{
	struct smtpc *x = arg;
	if (status < 0) {
		free(x->last_error);
		x->last_error = xstrdup(err != NULL ? err : "connection failed");
		x->host_index++;
		smtpc_connect_next(x);
		return;
	}
	x->c = c;
	conn_set_data(c, x);
	conn_set_command_timeout(c, SMTPC_REPLY_TIMEOUT_MS);
	smtpc_enter(x, SMTPC_GREETING);
}

/* Tries the next exchanger; when none is left the delivery is deferred. */
static void smtpc_connect_next(struct smtpc *x)
{
	if (x->sc->shutting_down) {
		smtpc_finish(x, 451, "4.3.2", "451 4.3.2 The mta is shutting down");
		smtpc_free(x);
		return;
	}
	const char *datadir = x->sc->m->d->datadir;
	while (x->host_index < x->host_count) {
		const char *host = x->hosts[x->host_index];
		free(x->dl->hop);
		x->dl->hop = xasprintf("%s:%d", host, x->port);
		smtpc_enter(x, SMTPC_CONNECTING);
		const char *injected = fault_get(datadir, "route", "refuse") != NULL ?
			"connection refused (injected fault: route refuse)" :
			fault_get(datadir, "route", "timeout") != NULL ?
			"connection timed out (injected fault: route timeout)" : NULL;
		if (injected != NULL) {
			log_kv(LOG_INFO, 0, "injected fault", "hop", x->dl->hop, "error", injected, NULL);
			free(x->last_error);
			x->last_error = xstrdup(injected);
			x->host_index++;
			continue;
		}
		if (net_connect_tcp(x->sc->m->loop, host, x->port, "smtp-client", SMTP_MAX_REPLY_LINE,
				    &smtpc_handlers, x, smtpc_connected, x) == 0)
			return;
		x->host_index++;
	}
	char *text = xasprintf("451 4.4.1 Cannot connect to %s: %s", x->dl->hop != NULL ?
			       x->dl->hop : x->dl->domain, x->last_error != NULL ? x->last_error :
			       "no host to try");
	smtpc_finish(x, 451, "4.4.1", text);
	free(text);
	smtpc_free(x);
}

/* The MX answer arrived. */
static void smtpc_mx_done(void *arg, enum dns_status status, const struct dns_mx *hosts,
			  size_t count, const char *err)
{
	struct smtpc *x = arg;
	if (status != DNS_OK) {
		bool perm = status == DNS_PERMFAIL;
		char *text = xasprintf(perm ? "550 5.1.2 %s" : "451 4.4.3 %s", err);
		smtpc_finish(x, perm ? 550 : 451, perm ? "5.1.2" : "4.4.3", text);
		free(text);
		smtpc_free(x);
		return;
	}
	for (size_t i = 0; i < count && x->host_count < SMTPC_MAX_HOSTS; i++)
		x->hosts[x->host_count++] = xstrdup(hosts[i].host);
	x->port = 25;
	smtpc_connect_next(x);
}

/* Parses a route: "host[:port]" or "[v6]:port", then "auth=user:password". */
static int smtpc_parse_route(struct smtpc *x, const char *route)
{
	char *copy = xstrdup(route);
	char *save = NULL;
	int rc = -1;
	char *hostport = strtok_r(copy, " \t", &save);
	if (hostport != NULL) {
		char *host = hostport, *port = NULL;
		if (host[0] == '[') {
			char *close = strchr(host, ']');
			if (close != NULL) {
				*close = '\0';
				host++;
				port = close[1] == ':' ? close + 2 : NULL;
			}
		} else {
			port = strrchr(host, ':');
			if (port != NULL)
				*port++ = '\0';
		}
		x->port = port != NULL ? atoi(port) : 25;
		if (*host != '\0' && x->port > 0 && x->port < 65536) {
			x->hosts[x->host_count++] = xstrdup(host);
			rc = 0;
		}
	}
	for (char *tok = strtok_r(NULL, " \t", &save); rc == 0 && tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (strncasecmp(tok, "auth=", 5) == 0) {
			char *colon = strchr(tok + 5, ':');
			if (colon == NULL) {
				rc = -1;
				break;
			}
			x->auth_user = xstrndup(tok + 5, (size_t)(colon - tok - 5));
			x->auth_password = xstrdup(colon + 1);
		}
	}
	free(copy);
	return rc;
}

void smtp_deliver(struct smtp_clients *sc, struct delivery *dl)
{
	snprintf(dl->proto, sizeof(dl->proto), "SMTP");
	if (sc->shutting_down) {
		delivery_set_rest(dl, 451, "4.3.2", "451 4.3.2 The mta is shutting down");
		dl->done(dl);
		return;
	}
	struct smtpc *x = xcalloc(1, sizeof(*x));
	x->sc = sc;
	x->dl = dl;
	x->state = SMTPC_RESOLVE;
	x->next = sc->active;
	sc->active = x;
	const char *route = config_section_get(sc->m->cfg, "routes", dl->domain);
	if (route == NULL)
		route = config_section_get(sc->m->cfg, "routes", "*");
	if (route != NULL) {
		if (smtpc_parse_route(x, route) < 0) {
			char *text = xasprintf("451 4.3.5 Bad [routes] entry for %s: %s", dl->domain,
					       route);
			smtpc_finish(x, 451, "4.3.5", text);
			free(text);
			smtpc_free(x);
			return;
		}
		smtpc_connect_next(x);
		return;
	}
	dns_mx_lookup(sc->m->loop, dl->domain, smtpc_mx_done, x);
}

void smtp_clients_shutdown(struct smtp_clients *sc)
{
	sc->shutting_down = true;
	for (struct smtpc *x = sc->active; x != NULL; x = x->next)
		if (x->c != NULL)
			conn_close(x->c);
}

void smtp_clients_free(struct smtp_clients **sc)
{
	if (*sc == NULL)
		return;
	tls_ctx_free(&(*sc)->tls);
	free(*sc);
	*sc = NULL;
}
