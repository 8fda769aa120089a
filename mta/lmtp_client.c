/* lmtp_client.c: local delivery over LMTP (RFC 2033) to the mda's unix socket.
 *
 * A small pool of connections kept open between messages. Each connection
 * runs one transaction at a time, pipelined: MAIL, every RCPT and DATA go
 * out in one write; after 354 the body is streamed; then one reply per
 * accepted recipient. When the mda advertises XLIFECYCLE in its LHLO reply
 * the lifecycle id goes along as a MAIL parameter so the mailbox row keeps it.
 *
 * Connection states:
 *   CONNECTING -> GREETING (220) -> LHLO (250) -> IDLE <-> (MAIL_REPLIES ->
 *   BODY -> DATA_REPLIES | RSET) -> IDLE ... ; any error -> closed, and the
 *   transaction's recipients without a result get 451 4.4.2.
 * Invariant: a delivery is owned by exactly one connection or by the queue. */
#include "mta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define LMTP_MAX_CONNECTIONS 32
/* How long the mda may take to answer any step (ms). */
#define LMTP_REPLY_TIMEOUT_MS (300 * 1000)

enum lmtp_state {
	LMTP_CONNECTING,
	LMTP_GREETING,
	LMTP_LHLO,
	LMTP_IDLE,
	LMTP_MAIL_REPLIES, /* MAIL, RCPT..., DATA replies */
	LMTP_BODY,         /* streaming the body */
	LMTP_DATA_REPLIES, /* one per accepted recipient */
	LMTP_RSET,
	LMTP_CLOSED,
};

static const char *const lmtp_state_names[] = {
	"CONNECTING", "GREETING", "LHLO", "IDLE", "MAIL_REPLIES", "BODY", "DATA_REPLIES", "RSET",
	"CLOSED",
};

struct lmtp_conn {
	struct lmtp_pool *pool;
	conn *c;
	enum lmtp_state state;
	struct smtp_reply reply;
	bool xlifecycle, eightbit, smtputf8, size;
	struct delivery *dl;
	size_t replies_seen;    /* in MAIL_REPLIES: 0 = MAIL, 1..n = RCPT, n+1 = DATA */
	bool mail_failed;
	size_t *accepted;       /* indexes of recipients that got 2xx to RCPT */
	size_t accepted_count;
	size_t data_replies;
	struct body_sender bs;
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

static void lmtp_enter(struct lmtp_conn *lc, enum lmtp_state state)
{
	uint64_t id = lc->c != NULL ? conn_id(lc->c) : 0;
	log_kv(LOG_DEBUG, id, "lmtp state", "from", lmtp_state_names[lc->state], "to",
	       lmtp_state_names[state], NULL);
	lc->state = state;
}

struct lmtp_pool *lmtp_pool_new(struct mta *m)
{
	struct lmtp_pool *p = xcalloc(1, sizeof(*p));
	p->m = m;
	p->tail = &p->head;
	p->hop = xasprintf("unix:%s", m->lmtp_path);
	return p;
}

/* Gives the delivery back to its owner. */
static void lmtp_finish(struct lmtp_conn *lc, const char *code_status, const char *reply)
{
	struct delivery *dl = lc->dl;
	if (dl == NULL)
		return;
	lc->dl = NULL;
	free(lc->accepted);
	lc->accepted = NULL;
	lc->accepted_count = 0;
	if (reply != NULL)
		delivery_set_rest(dl, 451, code_status, reply);
	conn_set_command_timeout(lc->c, 0);
	dl->done(dl);
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

/* Starts a transaction on an idle connection: everything up to DATA at once. */
static void lmtp_start(struct lmtp_conn *lc, struct delivery *dl)
{
	lc->dl = dl;
	free(dl->hop);
	dl->hop = xstrdup(lc->pool->hop);
	snprintf(dl->proto, sizeof(dl->proto), "LMTP");
	lc->replies_seen = 0;
	lc->mail_failed = false;
	lc->accepted = xcalloc(dl->count > 0 ? dl->count : 1, sizeof(*lc->accepted));
	lc->accepted_count = 0;
	lc->data_replies = 0;
	buf_t out = BUF_INIT;
	unsigned flags = (lc->size ? MAIL_FROM_SIZE : 0) | (lc->eightbit ? MAIL_FROM_8BIT : 0) |
			 (lc->smtputf8 ? MAIL_FROM_SMTPUTF8 : 0);
	delivery_mail_from(&out, dl, flags, lc->xlifecycle ? dl->msg->id : NULL);
	buf_append_str(&out, "\r\n");
	for (size_t i = 0; i < dl->count; i++)
		buf_printf(&out, "RCPT TO:<%s>\r\n", dl->rcpts[i].rcpt->address);
	buf_append_str(&out, "DATA\r\n");
	conn_write(lc->c, out.data, out.len);
	buf_free(&out);
	conn_set_command_timeout(lc->c, LMTP_REPLY_TIMEOUT_MS);
	lmtp_enter(lc, LMTP_MAIL_REPLIES);
}

/* The body is queued for writing: wait for the per-recipient replies. */
static void lmtp_body_sent(void *arg)
{
	struct lmtp_conn *lc = arg;
	if (lc->state == LMTP_BODY)
		lmtp_enter(lc, LMTP_DATA_REPLIES);
}

/* A transaction ended normally: back to IDLE and on to the next. */
static void lmtp_transaction_done(struct lmtp_conn *lc)
{
	lmtp_finish(lc, NULL, NULL);
	lmtp_enter(lc, LMTP_IDLE);
	lmtp_pump(lc->pool);
}

/* One complete reply while MAIL, RCPT and DATA replies come back. */
static void lmtp_mail_reply(struct lmtp_conn *lc, int code, const char *status, const char *text)
{
	struct delivery *dl = lc->dl;
	size_t k = lc->replies_seen++;
	if (k == 0) {
		if (code / 100 != 2) {
			lc->mail_failed = true;
			delivery_set_rest(dl, code, status, text);
		}
		return;
	}
	if (k <= dl->count) {
		struct delivery_rcpt *r = &dl->rcpts[k - 1];
		if (lc->mail_failed)
			return;
		if (code / 100 == 2)
			lc->accepted[lc->accepted_count++] = k - 1;
		else
			delivery_set(r, code, status, text);
		return;
	}
	/* the DATA reply */
	if (code == 354) {
		if (lc->accepted_count == 0) {
			/* Should not happen (no valid recipient): end an empty message. */
			conn_write_str(lc->c, ".\r\n");
			lmtp_enter(lc, LMTP_RSET);
			conn_write_str(lc->c, "RSET\r\n");
			lc->data_replies = 0;
			return;
		}
		lmtp_enter(lc, LMTP_BODY);
		body_sender_start(&lc->bs, lc->c, dl->msg->body, dl->msg->body_len, lmtp_body_sent, lc);
		return;
	}
	delivery_set_rest(dl, code / 100 == 2 ? 451 : code, code / 100 == 2 ? "4.5.0" : status, text);
	lmtp_enter(lc, LMTP_RSET);
	conn_write_str(lc->c, "RSET\r\n");
}

/* Reads the LHLO keywords we care about. */
static void lmtp_read_lhlo(struct lmtp_conn *lc)
{
	const char *text = buf_cstr(&lc->reply.text);
	const char *line = text;
	while (line != NULL && *line != '\0') {
		const char *kw = strlen(line) > 4 ? line + 4 : "";
		const char *end = strchr(line, '\n');
		size_t n = end != NULL ? (size_t)(end - kw) : strlen(kw);
		if (n >= 10 && strncasecmp(kw, "XLIFECYCLE", 10) == 0)
			lc->xlifecycle = true;
		else if (n >= 8 && strncasecmp(kw, "8BITMIME", 8) == 0)
			lc->eightbit = true;
		else if (n >= 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0)
			lc->smtputf8 = true;
		else if (n >= 4 && strncasecmp(kw, "SIZE", 4) == 0)
			lc->size = true;
		line = end != NULL ? end + 1 : NULL;
	}
}

static void lmtp_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct lmtp_conn *lc = conn_data(c);
	if (lc == NULL || lc->state == LMTP_CLOSED)
		return;
	int rc = smtp_reply_feed(&lc->reply, line, len);
	if (rc < 0) {
		log_kv(LOG_WARN, conn_id(c), "lmtp: malformed reply", NULL);
		conn_abort(c);
		return;
	}
	if (rc == 0)
		return;
	int code = lc->reply.code;
	char status[16];
	smtp_reply_status(&lc->reply, status, sizeof(status));
	char *text = smtp_reply_oneline(&lc->reply);
	switch (lc->state) {
	case LMTP_GREETING:
		if (code != 220) {
			conn_abort(c);
			break;
		}
		conn_printf(c, "LHLO %s\r\n", lc->pool->m->hostname);
		lmtp_enter(lc, LMTP_LHLO);
		break;
	case LMTP_LHLO:
		if (code != 250) {
			conn_abort(c);
			break;
		}
		lmtp_read_lhlo(lc);
		lmtp_enter(lc, LMTP_IDLE);
		lmtp_pump(lc->pool);
		break;
	case LMTP_MAIL_REPLIES:
		lmtp_mail_reply(lc, code, status, text);
		break;
	case LMTP_DATA_REPLIES:
	case LMTP_BODY:
		if (lc->data_replies < lc->accepted_count) {
			size_t idx = lc->accepted[lc->data_replies++];
			delivery_set(&lc->dl->rcpts[idx], code, status, text);
		}
		if (lc->data_replies == lc->accepted_count)
			lmtp_transaction_done(lc);
		break;
	case LMTP_RSET:
		lmtp_transaction_done(lc);
		break;
	default:
		/* An unexpected reply (e.g. 421 while idle): the mda is going away. */
		conn_close(c);
		break;
	}
	free(text);
	smtp_reply_reset(&lc->reply);
}

static void lmtp_on_line_too_long(conn *c)
{
	conn_abort(c);
}

static void lmtp_on_timeout(conn *c)
{
	log_kv(LOG_WARN, conn_id(c), "lmtp: timeout", NULL);
	conn_abort(c);
}

static void lmtp_on_close(conn *c)
{
	struct lmtp_conn *lc = conn_data(c);
	if (lc == NULL)
		return;
	conn_set_data(c, NULL);
	struct lmtp_pool *p = lc->pool;
	lc->state = LMTP_CLOSED;
	lmtp_finish(lc, "4.4.2", "451 4.4.2 LMTP connection to the mda was lost");
	for (struct lmtp_conn **pp = &p->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == lc) {
			*pp = lc->next;
			break;
		}
	}
	p->count--;
	buf_free(&lc->reply.text);
	free(lc);
	if (!p->shutting_down)
		lmtp_pump(p);
	else
		lmtp_fail_queued(p, "451 4.3.2 The mta is shutting down");
}

static const struct conn_handlers lmtp_handlers = {
	.on_line = lmtp_on_line,
	.on_line_too_long = lmtp_on_line_too_long,
	.on_timeout = lmtp_on_timeout,
	.on_close = lmtp_on_close,
};

/* The connect attempt finished. */
static void lmtp_connected(conn *c, int status, const char *err, void *arg)
{
	struct lmtp_conn *lc = arg;
	struct lmtp_pool *p = lc->pool;
	if (status < 0) {
		log_kv(LOG_WARN, 0, "lmtp: cannot connect", "error", err, NULL);
		for (struct lmtp_conn **pp = &p->conns; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == lc) {
				*pp = lc->next;
				break;
			}
		}
		p->count--;
		free(lc);
		/* Nothing can reach the mda now: everything waiting is deferred. */
		char *reply = xasprintf("451 4.4.1 Cannot connect to the mda at %s: %s", p->hop,
					err != NULL ? err : "error");
		lmtp_fail_queued(p, reply);
		free(reply);
		return;
	}
	lc->c = c;
	conn_set_data(c, lc);
	conn_set_command_timeout(c, LMTP_REPLY_TIMEOUT_MS);
	lmtp_enter(lc, LMTP_GREETING);
}

/* Opens another connection to the mda. */
static void lmtp_connect(struct lmtp_pool *p)
{
	struct lmtp_conn *lc = xcalloc(1, sizeof(*lc));
	lc->pool = p;
	lc->state = LMTP_CONNECTING;
	lc->next = p->conns;
	p->conns = lc;
	p->count++;
	if (net_connect_unix(p->m->loop, p->m->lmtp_path, "lmtp", SMTP_MAX_REPLY_LINE,
			     &lmtp_handlers, lc, lmtp_connected, lc) < 0) {
		/* the callback is not called */
		p->conns = lc->next;
		p->count--;
		free(lc);
		lmtp_fail_queued(p, "451 4.4.1 Cannot connect to the mda");
	}
}

/* Hands waiting deliveries to idle connections, opening more when allowed. */
static void lmtp_pump(struct lmtp_pool *p)
{
	if (p->shutting_down)
		return;
	for (struct lmtp_conn *lc = p->conns; lc != NULL && p->head != NULL; lc = lc->next) {
		if (lc->state != LMTP_IDLE)
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
		if (lc->state == LMTP_CONNECTING || lc->state == LMTP_GREETING ||
		    lc->state == LMTP_LHLO)
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
	for (struct lmtp_conn *lc = p->conns; lc != NULL; lc = lc->next) {
		if (lc->c != NULL && lc->state == LMTP_IDLE) {
			conn_write_str(lc->c, "QUIT\r\n");
			conn_close(lc->c);
		}
	}
}

void lmtp_pool_free(struct lmtp_pool **p)
{
	if (*p == NULL)
		return;
	/* Called after the loop ended: every connection has closed and freed itself. */
	free((*p)->hop);
	free(*p);
	*p = NULL;
}
