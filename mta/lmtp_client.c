/* lmtp_client.c: local delivery over LMTP (RFC 2033) to the mda's unix socket.
 *
 * A small pool of common/smtp_client.h sessions kept open between messages.
 * Each session runs one transaction at a time (the client pipelines MAIL,
 * every RCPT and DATA, streams the body, and reads one reply per accepted
 * recipient). When the mda advertises XLIFECYCLE in its LHLO reply the
 * lifecycle id goes along as a MAIL parameter so the mailbox row keeps it.
 *
 * A pool connection is STARTING (connecting, greeting, LHLO), IDLE (the
 * session is READY and holds no delivery) or BUSY (it holds one delivery);
 * a session that ends leaves the pool, and its delivery's recipients without
 * a result get 451 4.4.2.
 * Invariant: a delivery is owned by exactly one connection or by the queue. */
#include "mta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_client.h"

#define LMTP_MAX_CONNECTIONS 32

struct lmtp_conn {
	struct lmtp_pool *pool;
	smtp_client *cl;
	bool started;           /* the session has been READY once */
	bool idle;              /* READY, without a delivery */
	struct delivery *dl;    /* the delivery in progress, or NULL */
	const char **rcpts;     /* its addresses (pointing into dl) */
	struct lmtp_conn *next;
};

struct lmtp_pool {
	struct mta *m;
	struct lmtp_conn *conns;
	size_t count;
	struct delivery *head, **tail;
	bool shutting_down;
	char *hop;
};

static void lmtp_pump(struct lmtp_pool *p);

struct lmtp_pool *lmtp_pool_new(struct mta *m)
{
	struct lmtp_pool *p = xcalloc(1, sizeof(*p));
	p->m = m;
	p->tail = &p->head;
	p->hop = xasprintf("unix:%s", m->lmtp_path);
	return p;
}

/* Fails every delivery waiting for a connection. */
static void lmtp_fail_queued(struct lmtp_pool *p, const char *reply)
{
	while (p->head != NULL) {
		struct delivery *dl = p->head;
		p->head = dl->next;
		if (p->head == NULL)
			p->tail = &p->head;
		dl->next = NULL;
		delivery_set_rest(dl, 451, "4.4.1", reply);
		dl->done(dl);
	}
}

/* Starts a transaction on an idle connection. */
static void lmtp_start(struct lmtp_conn *lc, struct delivery *dl)
{
	lc->dl = dl;
	lc->idle = false;
	free(dl->hop);
	dl->hop = xstrdup(lc->pool->hop);
	snprintf(dl->proto, sizeof(dl->proto), "LMTP");
	unsigned flags = (smtp_client_has_extension(lc->cl, "SIZE") ? MAIL_FROM_SIZE : 0) |
			 (smtp_client_has_extension(lc->cl, "8BITMIME") ? MAIL_FROM_8BIT : 0) |
			 (smtp_client_has_extension(lc->cl, "SMTPUTF8") ? MAIL_FROM_SMTPUTF8 : 0);
	buf_t params = BUF_INIT;
	delivery_mail_params(&params, dl, flags,
			     smtp_client_has_extension(lc->cl, "XLIFECYCLE") ? dl->msg->id : NULL);
	lc->rcpts = xcalloc(dl->count > 0 ? dl->count : 1, sizeof(*lc->rcpts));
	for (size_t i = 0; i < dl->count; i++)
		lc->rcpts[i] = dl->rcpts[i].rcpt->address;
	struct smtp_client_message msg = {
		.sender = dl->msg->sender,
		.mail_params = buf_cstr(&params),
		.rcpts = lc->rcpts,
		.rcpt_count = dl->count,
		.data = dl->msg->body,
		.len = dl->msg->body_len,
	};
	smtp_client_send(lc->cl, &msg);
	buf_free(&params);
}

/* The session is READY: take the next delivery. */
static void lmtp_ready(smtp_client *cl, void *arg)
{
	struct lmtp_conn *lc = arg;
	lc->started = true;
	lc->idle = true;
	if (lc->pool->shutting_down) {
		smtp_client_quit(cl);
		return;
	}
	lmtp_pump(lc->pool);
}

/* The transaction ended: each recipient's reply is its result. */
static void lmtp_message_done(smtp_client *cl, const struct smtp_client_result *res, void *arg)
{
	struct lmtp_conn *lc = arg;
	struct delivery *dl = lc->dl;
	lc->dl = NULL;
	free(lc->rcpts);
	lc->rcpts = NULL;
	for (size_t i = 0; i < res->rcpt_count && i < dl->count; i++) {
		const struct smtp_client_rcpt_result *r = &res->rcpts[i];
		if (r->stage == SMTP_STAGE_NONE)
			continue;
		int code = r->reply.code;
		const char *status = r->reply.status;
		if (r->stage == SMTP_STAGE_DATA && code / 100 == 2) {
			/* DATA answered with success instead of 354: nothing went. */
			code = 451;
			status = "4.5.0";
		}
		char *text = smtp_client_reply_oneline(&r->reply);
		delivery_set(&dl->rcpts[i], code, status, text);
		free(text);
	}
	if (!res->complete)
		delivery_set_rest(dl, 451, "4.4.2", "451 4.4.2 LMTP connection to the mda was lost");
	else
		delivery_set_rest(dl, 451, "4.5.0", "451 4.5.0 No reply for this recipient");
	dl->done(dl);
}

/* The session ended: leave the pool; deliveries waiting are retried or failed. */
static void lmtp_closed(smtp_client *cl, const struct smtp_client_end *end, void *arg)
{
	struct lmtp_conn *lc = arg;
	struct lmtp_pool *p = lc->pool;
	for (struct lmtp_conn **pp = &p->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == lc) {
			*pp = lc->next;
			break;
		}
	}
	p->count--;
	free(lc->rcpts);
	free(lc);
	if (end->failure == SMTP_CLIENT_CONNECT) {
		log_kv(LOG_WARN, 0, "lmtp: cannot connect", "error", end->error, NULL);
		/* Nothing can reach the mda now: everything waiting is deferred. */
		char *reply = xasprintf("451 4.4.1 Cannot connect to the mda at %s: %s", p->hop,
					end->error != NULL ? end->error : "error");
		lmtp_fail_queued(p, reply);
		free(reply);
		return;
	}
	if (end->failure != SMTP_CLIENT_QUIT)
		log_kv(LOG_INFO, 0, "lmtp: session ended", "state", end->state, "error", end->error,
		       NULL);
	if (!p->shutting_down)
		lmtp_pump(p);
	else
		lmtp_fail_queued(p, "451 4.3.2 The mta is shutting down");
}

static const struct smtp_client_callbacks lmtp_callbacks = {
	.ready = lmtp_ready,
	.message_done = lmtp_message_done,
	.closed = lmtp_closed,
};

/* Opens another connection to the mda. */
static void lmtp_connect(struct lmtp_pool *p)
{
	struct lmtp_conn *lc = xcalloc(1, sizeof(*lc));
	lc->pool = p;
	struct smtp_client_opts opts = {
		.protocol = SMTP_CLIENT_LMTP,
		.helo_name = p->m->hostname,
		.transcript_proto = "lmtp",
	};
	char *err = NULL;
	if (smtp_client_connect_unix(p->m->loop, p->m->lmtp_path, &opts, &lmtp_callbacks, lc,
				     &lc->cl, &err) < 0) {
		log_kv(LOG_WARN, 0, "lmtp: cannot connect", "error", err, NULL);
		free(err);
		free(lc);
		lmtp_fail_queued(p, "451 4.4.1 Cannot connect to the mda");
		return;
	}
	lc->next = p->conns;
	p->conns = lc;
	p->count++;
}

/* Hands waiting deliveries to idle connections, opening more when allowed. */
static void lmtp_pump(struct lmtp_pool *p)
{
	if (p->shutting_down)
		return;
	for (struct lmtp_conn *lc = p->conns; lc != NULL && p->head != NULL; lc = lc->next) {
		/* A session may have failed since it became idle (closed comes later). */
		if (!lc->idle || !smtp_client_is_ready(lc->cl))
			continue;
		struct delivery *dl = p->head;
		p->head = dl->next;
		if (p->head == NULL)
			p->tail = &p->head;
		dl->next = NULL;
		lmtp_start(lc, dl);
	}
	if (p->head == NULL)
		return;
	/* Deliveries still wait: open a connection unless enough are starting. */
	size_t starting = 0;
	for (struct lmtp_conn *lc = p->conns; lc != NULL; lc = lc->next)
		if (!lc->started)
			starting++;
	size_t waiting = 0;
	for (struct delivery *dl = p->head; dl != NULL; dl = dl->next)
		waiting++;
	while (p->count < LMTP_MAX_CONNECTIONS && starting < waiting) {
		lmtp_connect(p);
		starting++;
		if (p->head == NULL)
			break;
	}
}

void lmtp_deliver(struct lmtp_pool *p, struct delivery *dl)
{
	dl->next = NULL;
	snprintf(dl->proto, sizeof(dl->proto), "LMTP");
	free(dl->hop);
	dl->hop = xstrdup(p->hop);
	if (p->shutting_down) {
		delivery_set_rest(dl, 451, "4.3.2", "451 4.3.2 The mta is shutting down");
		dl->done(dl);
		return;
	}
	*p->tail = dl;
	p->tail = &dl->next;
	lmtp_pump(p);
}

void lmtp_pool_shutdown(struct lmtp_pool *p)
{
	p->shutting_down = true;
	lmtp_fail_queued(p, "451 4.3.2 The mta is shutting down");
	/* Idle sessions QUIT; busy ones finish their delivery first (lmtp_ready). */
	for (struct lmtp_conn *lc = p->conns; lc != NULL; lc = lc->next)
		if (lc->idle)
			smtp_client_quit(lc->cl);
}

void lmtp_pool_free(struct lmtp_pool **p)
{
	if (*p == NULL)
		return;
	/* Called after the loop ended: every session has closed and freed itself. */
	free((*p)->hop);
	free(*p);
	*p = NULL;
}
