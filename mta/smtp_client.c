/* smtp_client.c: delivery to other domains over SMTP (RFC 5321 client side).
 *
 * One connection per delivery (one message, one domain). The next hop is the
 * domain's [routes] entry ("host:port", optionally "auth=user:password"),
 * else the "*" route (a smarthost), else its MX records (dns.h, on the thread
 * pool) tried in order of preference on port 25.
 *
 * The conversation is common/smtp_client.h's: greeting, EHLO (HELO when
 * refused), STARTTLS whenever offered (opportunistic, RFC 3207; certificates
 * are not checked because MX hosts rarely have verifiable names), AUTH PLAIN
 * when the route has credentials, then one pipelined transaction. What is
 * left here is the mta's part: which hosts, what the next hop must support
 * for this message (SIZE, SMTPUTF8, 8BITMIME with a 7-bit downgrade, DSN
 * parameters), and what each recipient's reply means for the queue:
 * 5xx = permanent, anything else that is not success is temporary (451).
 *
 * A delivery goes RESOLVE (MX lookup) -> CONNECT (the next host) -> SESSION
 * -> finished; a connection that cannot be made moves on to the next host.
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
#include "smtp_client.h"
#include "smtp_path.h"

#define SMTPC_MAX_HOSTS 8

struct smtpc {
	struct smtp_clients *sc;
	struct delivery *dl;
	smtp_client *cl;        /* the session with the current host, or NULL */
	char *hosts[SMTPC_MAX_HOSTS];
	size_t host_count, host_index;
	int port;
	char *auth_user, *auth_password;
	char *last_error;
	bool fault_drop;        /* route drop: hang up after the greeting */
	bool sent;
	char *converted;        /* the body downgraded to 7 bits, or NULL */
	size_t converted_len;
	const char **rcpts;     /* the transaction's addresses (pointing into dl) */
	char **rcpt_params;
	struct smtpc *next;
};

struct smtp_clients {
	struct mta *m;
	tls_ctx *tls;
	struct smtpc *active;
	bool shutting_down;
};

static void smtpc_connect_next(struct smtpc *x);

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

/* Frees the per-transaction recipient lists. */
static void smtpc_free_rcpts(struct smtpc *x)
{
	if (x->rcpt_params != NULL && x->dl != NULL)
		for (size_t i = 0; i < x->dl->count; i++)
			free(x->rcpt_params[i]);
	free(x->rcpt_params);
	free(x->rcpts);
	x->rcpt_params = NULL;
	x->rcpts = NULL;
}

/* Frees the delivery state once no session refers to it. */
static void smtpc_free(struct smtpc *x)
{
	smtpc_free_rcpts(x);
	for (size_t i = 0; i < x->host_count; i++)
		free(x->hosts[i]);
	free(x->auth_user);
	free(x->auth_password);
	free(x->last_error);
	free(x->converted);
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
	smtpc_free_rcpts(x);
	x->dl = NULL;
	if (reply != NULL)
		delivery_set_rest(dl, code, status, reply);
	dl->done(dl);
}

/* Ends the delivery before the transaction, politely. */
static void smtpc_give_up(struct smtpc *x, int code, const char *status, const char *reply)
{
	smtpc_finish(x, code, status, reply);
	smtp_client_quit(x->cl);
}

/* What a refusal means for the queue: 5xx stays, everything else is a 451
 * that keeps a 4xx's enhanced code (a success is kept only when `success`). */
static void smtpc_map_reply(const struct smtp_client_reply *r, bool success, int *code_r,
			    const char **status_r)
{
	int cls = r->code / 100;
	*code_r = cls == 5 || (success && cls == 2) ? r->code : 451;
	*status_r = cls == 5 || cls == 4 || (success && cls == 2) ? r->status : "4.5.0";
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

/* The DSN parameters of one RCPT (RFC 3461 4.1, 4.2), or NULL. */
static char *smtpc_rcpt_params(const struct queue_rcpt *r)
{
	buf_t out = BUF_INIT;
	if (r->notify != 0) {
		buf_append_str(&out, "NOTIFY=");
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
	if (r->orcpt != NULL) {
		const char *semi = strchr(r->orcpt, ';');
		if (semi != NULL) {
			char *enc = xtext_encode(semi + 1);
			buf_printf(&out, "%sORCPT=%.*s;%s", out.len > 0 ? " " : "",
				   (int)(semi - r->orcpt), r->orcpt, enc);
			free(enc);
		}
	}
	if (out.len == 0) {
		buf_free(&out);
		return NULL;
	}
	return buf_steal(&out);
}

/* Ready (greeted, maybe in TLS and authenticated): check what this message
 * needs from the next hop, then send it. */
static void smtpc_ready(smtp_client *cl, void *arg)
{
	struct smtpc *x = arg;
	struct delivery *dl = x->dl;
	if (dl == NULL || x->sent) {
		smtp_client_quit(cl);
		return;
	}
	const char *size = smtp_client_extension(cl, "SIZE");
	long long size_limit = size != NULL ? strtoll(size, NULL, 10) : 0;
	if (size_limit > 0 && (long long)dl->msg->body_len > size_limit) {
		char *text = xasprintf("552 5.3.4 Message too big for %s (limit %lld)", dl->hop,
				       size_limit);
		smtpc_give_up(x, 552, "5.3.4", text);
		free(text);
		return;
	}
	bool utf8 = smtp_client_has_extension(cl, "SMTPUTF8");
	if (dl->msg->smtputf8 && !utf8 && smtpc_needs_utf8(dl)) {
		char *text = xasprintf("553 5.6.7 %s does not support SMTPUTF8 (RFC 6531 3.2)", dl->hop);
		smtpc_give_up(x, 553, "5.6.7", text);
		free(text);
		return;
	}
	bool eightbit = smtp_client_has_extension(cl, "8BITMIME");
	if (dl->msg->body_8bit && !eightbit && x->converted == NULL) {
		const char *why = NULL;
		if (downgrade_to_7bit(dl->msg->body, dl->msg->body_len, &x->converted,
				      &x->converted_len, &why) < 0) {
			char *text = xasprintf("554 5.6.3 Conversion required but not supported: %s "
					       "does not support 8BITMIME and %s (RFC 6152 3)",
					       dl->hop, why);
			smtpc_give_up(x, 554, "5.6.3", text);
			free(text);
			return;
		}
	}
	bool dsn = smtp_client_has_extension(cl, "DSN");
	dl->remote_dsn = dsn;
	unsigned flags = (size != NULL ? MAIL_FROM_SIZE : 0) | (eightbit ? MAIL_FROM_8BIT : 0) |
			 (utf8 ? MAIL_FROM_SMTPUTF8 : 0) | (dsn ? MAIL_FROM_DSN : 0);
	buf_t params = BUF_INIT;
	delivery_mail_params(&params, dl, flags, NULL);
	x->rcpts = xcalloc(dl->count > 0 ? dl->count : 1, sizeof(*x->rcpts));
	x->rcpt_params = xcalloc(dl->count > 0 ? dl->count : 1, sizeof(*x->rcpt_params));
	for (size_t i = 0; i < dl->count; i++) {
		x->rcpts[i] = dl->rcpts[i].rcpt->address;
		x->rcpt_params[i] = dsn ? smtpc_rcpt_params(dl->rcpts[i].rcpt) : NULL;
	}
	struct smtp_client_message msg = {
		.sender = dl->msg->sender,
		.mail_params = buf_cstr(&params),
		.rcpts = x->rcpts,
		.rcpt_params = (const char *const *)x->rcpt_params,
		.rcpt_count = dl->count,
		.data = x->converted != NULL ? x->converted : dl->msg->body,
		.len = x->converted != NULL ? x->converted_len : dl->msg->body_len,
	};
	x->sent = true;
	smtp_client_send(cl, &msg);
	buf_free(&params);
}

/* The transaction ended: each recipient's deciding reply is its result. */
static void smtpc_message_done(smtp_client *cl, const struct smtp_client_result *res, void *arg)
{
	struct smtpc *x = arg;
	struct delivery *dl = x->dl;
	for (size_t i = 0; i < res->rcpt_count && i < dl->count; i++) {
		const struct smtp_client_rcpt_result *r = &res->rcpts[i];
		if (r->stage == SMTP_STAGE_NONE)
			continue;
		int code;
		const char *status;
		smtpc_map_reply(&r->reply, r->stage == SMTP_STAGE_END_OF_DATA, &code, &status);
		char *one = smtp_client_reply_oneline(&r->reply);
		char *text = xasprintf("%s (in reply to %s, host %s)", one,
				       smtp_client_stage_name(r->stage), dl->hop);
		delivery_set(&dl->rcpts[i], code, status, text);
		free(one);
		free(text);
	}
	/* Cut short: the rest hear why when the session closes. */
	if (!res->complete)
		return;
	smtpc_finish(x, 451, "4.5.0", "451 4.5.0 No reply for this recipient");
	smtp_client_quit(cl);
}

/* A lab fault hangs up right after the greeting. */
static void smtpc_greeted(smtp_client *cl, const struct smtp_client_reply *greeting, void *arg)
{
	struct smtpc *x = arg;
	if (fault_get(x->sc->m->d->datadir, "route", "drop") != NULL) {
		x->fault_drop = true;
		smtp_client_abort(cl);
	}
}

/* The reply for a session that ended before the transaction could finish. */
static char *smtpc_end_text(const struct smtpc *x, const struct smtp_client_end *end,
			    int *code_r, const char **status_r)
{
	const char *hop = x->dl->hop != NULL ? x->dl->hop : "?";
	*code_r = 451;
	switch (end->failure) {
	case SMTP_CLIENT_REFUSED: {
		smtpc_map_reply(end->reply, false, code_r, status_r);
		char *one = smtp_client_reply_oneline(end->reply);
		char *text = xasprintf("%s (in reply to %s, host %s)", one,
				       strcmp(end->command, "greeting") == 0 ? "the greeting" :
				       end->command, hop);
		free(one);
		return text;
	}
	case SMTP_CLIENT_NO_AUTH:
		*status_r = "4.7.0";
		return xasprintf("451 4.7.0 %s does not offer AUTH PLAIN%s", hop,
				 smtp_client_is_tls(x->cl) ? "" : " (no TLS)");
	case SMTP_CLIENT_AUTH_FAILED:
		*status_r = "4.7.0";
		return xasprintf("451 4.7.0 Authentication with %s failed: %s", hop, end->error);
	case SMTP_CLIENT_TLS_FAILED:
		*status_r = "4.7.5";
		return xasprintf("451 4.7.5 TLS handshake with %s failed: %s", hop,
				 end->error != NULL ? end->error : "error");
	case SMTP_CLIENT_TIMEOUT:
		*status_r = "4.4.2";
		return xasprintf("451 4.4.2 Timeout waiting for %s in state %s", hop, end->state);
	case SMTP_CLIENT_PROTOCOL:
		*status_r = "4.5.0";
		return xasprintf("451 4.5.0 Malformed reply from %s (%s)", hop, end->error);
	default:
		*status_r = "4.4.2";
		return xasprintf("451 4.4.2 Lost connection with %s in state %s%s", hop, end->state,
				 x->fault_drop ? " (injected fault: route drop)" : "");
	}
}

/* The session is over: on to the next host when it could not connect, else
 * the delivery ends here. */
static void smtpc_closed(smtp_client *cl, const struct smtp_client_end *end, void *arg)
{
	struct smtpc *x = arg;
	x->cl = NULL;
	if (x->dl != NULL && end->failure == SMTP_CLIENT_CONNECT && !x->sent) {
		free(x->last_error);
		x->last_error = xstrdup(end->error != NULL ? end->error : "connection failed");
		x->host_index++;
		smtpc_connect_next(x);
		return;
	}
	if (x->dl != NULL) {
		x->cl = cl; /* for smtpc_end_text's TLS question */
		int code;
		const char *status;
		char *text = smtpc_end_text(x, end, &code, &status);
		x->cl = NULL;
		smtpc_finish(x, code, status, text);
		free(text);
	}
	smtpc_free(x);
}

static const struct smtp_client_callbacks smtpc_callbacks = {
	.greeted = smtpc_greeted,
	.ready = smtpc_ready,
	.message_done = smtpc_message_done,
	.closed = smtpc_closed,
};

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
		log_kv(LOG_DEBUG, 0, "smtp delivery: connecting", "domain", x->dl->domain, "hop",
		       x->dl->hop, NULL);
		struct smtp_client_opts opts = {
			.protocol = SMTP_CLIENT_SMTP,
			.helo_name = x->sc->m->hostname,
			.tls_mode = x->sc->tls != NULL ? SMTP_CLIENT_TLS_OPPORTUNISTIC :
				SMTP_CLIENT_TLS_NONE,
			.tls = x->sc->tls,
			.auth_user = x->auth_user,
			.auth_password = x->auth_password,
			.auth_mechanism = "PLAIN",
			.transcript_proto = "smtp-client",
		};
		char *err = NULL;
		if (smtp_client_connect_tcp(x->sc->m->loop, host, x->port, &opts, &smtpc_callbacks, x,
					    &x->cl, &err) == 0)
			return;
		free(x->last_error);
		x->last_error = err;
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
	/* The sessions end (closed comes later, from the loop) and their
	 * deliveries are deferred. */
	for (struct smtpc *x = sc->active; x != NULL; x = x->next)
		if (x->cl != NULL)
			smtp_client_abort(x->cl);
}

void smtp_clients_free(struct smtp_clients **sc)
{
	if (*sc == NULL)
		return;
	tls_ctx_free(&(*sc)->tls);
	free(*sc);
	*sc = NULL;
}
