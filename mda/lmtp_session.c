/* lmtp_session.c: the LMTP server (RFC 2033) the mta delivers through.
 *
 * Session states (one variable, changed only by lmtp_enter, which logs):
 *
 *   START --LHLO--> READY --MAIL--> MAIL --RCPT--> RCPT --DATA--> DATA
 *                     ^                              |              |
 *                     |                            BDAT           "."
 *                     |                              v              v
 *                     +----- replies sent ------- DELIVERING <------+
 *                     +------------ RSET -----------+
 *
 * In DATA the lines are the message (dot-unstuffed); BDAT chunks arrive as
 * exact byte counts while the state stays RCPT (CHUNKING, RFC 3030). When
 * the message is complete each accepted recipient becomes a delivery
 * (delivery.c); input is paused while they run, and their replies go out in
 * RCPT order as each becomes known, one per recipient (RFC 2033 4.2).
 *
 * The transaction (sender, lifecycle id, recipients, data) lives in its own
 * struct so RSET and the end of a delivery just free it. Deliveries find
 * their session again by connection id and transaction number, so a client
 * that hangs up mid-delivery leaves nothing dangling.
 *
 * Lines must end in CRLF (RFC 5321 2.3.8): a bare LF never ends the data
 * (4.1.1.4), and a message holding a bare LF or bare CR is refused with a
 * permanent 550 5.6.0 for every recipient, the same for DATA and BDAT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "fault.h"
#include "log.h"
#include "mda.h"
#include "net.h"
#include "smtp_path.h"

#define LMTP_MAX_LIFECYCLE_ID 64

enum lmtp_state {
	LMTP_STATE_START,
	LMTP_STATE_READY,
	LMTP_STATE_MAIL,
	LMTP_STATE_RCPT,
	LMTP_STATE_DATA,
	LMTP_STATE_DELIVERING,
	LMTP_STATE_COUNT,
};

static const char *const lmtp_state_names[] = {
	"start", "ready", "mail", "rcpt", "data", "delivering",
};

struct lmtp_rcpt {
	char *address;          /* as given, +detail included */
	struct user_info info;  /* moved into the delivery when the data is complete */
	char *reply;            /* the final reply, once known */
};

struct lmtp_txn {
	uint64_t serial;
	char *sender;
	char *lifecycle_id;
	struct lmtp_rcpt *rcpts;
	size_t rcpt_count;
	buf_t data;
	bool bare_newline;      /* a bare LF or CR was seen */
	bool pending_cr;        /* BDAT: the last byte of the last chunk was CR */
	bool too_big;
	bool line_too_long;
	bool bdat;              /* BDAT used: DATA no longer allowed */
	uint64_t bdat_chunk;    /* size of the chunk being read */
	bool bdat_last;
	bool bdat_discard;      /* the chunk is read only to be thrown away */
	size_t replies_sent;
	size_t deliveries_pending;
	bool starting;          /* deliveries are being started: do not finish yet */
};

struct lmtp_session {
	struct mda *mda;
	conn *c;
	enum lmtp_state state;
	struct lmtp_txn *txn;
	uint64_t next_serial;
	unsigned errors;
};

/* Ties an asynchronous delivery back to its session and recipient. */
struct lmtp_pending {
	net_server *srv;
	uint64_t conn_id;
	uint64_t serial;
	size_t index;
};

static net_server *lmtp_server; /* one per process */

/* The one way to change state; logs old -> new. */
static void lmtp_enter(struct lmtp_session *s, enum lmtp_state next)
{
	log_fmt(LOG_DEBUG, conn_id(s->c), "lmtp: %s -> %s", lmtp_state_names[s->state],
		lmtp_state_names[next]);
	s->state = next;
}

/* Frees a transaction (RSET, the end of a delivery, close) and sets *tp NULL. */
static void lmtp_txn_free(struct lmtp_txn **tp)
{
	struct lmtp_txn *t = *tp;
	if (t == NULL)
		return;
	*tp = NULL;
	for (size_t i = 0; i < t->rcpt_count; i++) {
		free(t->rcpts[i].address);
		user_info_free(&t->rcpts[i].info);
		free(t->rcpts[i].reply);
	}
	free(t->rcpts);
	free(t->sender);
	free(t->lifecycle_id);
	buf_free(&t->data);
	free(t);
}

/* Counts a bad command; past smtp.max_errors the client is dropped. */
static void lmtp_error(struct lmtp_session *s, const char *reply)
{
	conn_write_str(s->c, reply);
	if (++s->errors > (unsigned)config_int(s->mda->cfg, "smtp.max_errors")) {
		conn_write_str(s->c, "421 4.7.0 Too many errors, closing connection\r\n");
		conn_close(s->c);
	}
}

/* ---- the end of a transaction ---- */

/* Sends the replies that are known, in RCPT order; when all are out, the
 * transaction ends and input resumes. */
static void lmtp_flush_replies(struct lmtp_session *s)
{
	struct lmtp_txn *t = s->txn;
	while (t->replies_sent < t->rcpt_count && t->rcpts[t->replies_sent].reply != NULL)
		conn_write_str(s->c, t->rcpts[t->replies_sent++].reply);
	if (t->replies_sent < t->rcpt_count || t->starting)
		return;
	lmtp_txn_free(&s->txn);
	lmtp_enter(s, LMTP_STATE_READY);
	conn_resume(s->c);
}

/* The reply for a finished delivery (RFC 3463 codes). */
static char *lmtp_delivery_reply(const struct lmtp_session *s, const struct mda_delivery *dl)
{
	switch (dl->status) {
	case DELIVERY_OK:
		if (dl->already_filed)
			return xasprintf("250 2.0.0 <%s> Already delivered, id %s\r\n", dl->rcpt,
					 dl->msg->lifecycle_id);
		return xasprintf("250 2.0.0 <%s> Delivered, id %s\r\n", dl->rcpt,
				 dl->msg->lifecycle_id);
	case DELIVERY_QUOTA:
		if (s->mda->quota_tempfail)
			return xasprintf("452 4.2.2 <%s> Mailbox is full\r\n", dl->rcpt);
		return xasprintf("552 5.2.2 <%s> Mailbox is full\r\n", dl->rcpt);
	case DELIVERY_TEMP:
	case DELIVERY_PENDING:
		break;
	}
	return xasprintf("451 4.3.0 <%s> Temporary failure, try again later\r\n", dl->rcpt);
}

/* A delivery finished (on the loop). */
static void lmtp_on_delivered(struct mda_delivery *dl, void *arg)
{
	struct lmtp_pending *p = arg;
	conn *c = net_server_find(p->srv, p->conn_id);
	struct lmtp_session *s = c != NULL && !conn_is_closing(c) ? conn_data(c) : NULL;
	if (s != NULL && s->txn != NULL && s->txn->serial == p->serial) {
		s->txn->rcpts[p->index].reply = lmtp_delivery_reply(s, dl);
		s->txn->deliveries_pending--;
		lmtp_flush_replies(s);
		conn_flush(c);
	} else {
		log_kv(LOG_INFO, p->conn_id, "delivery finished after the client left", "id",
		       dl->msg->lifecycle_id, "rcpt", dl->rcpt, NULL);
	}
	free(p);
	delivery_free(&dl);
}

/* Every recipient gets the same refusal. */
static void lmtp_refuse_all(struct lmtp_session *s, const char *code, const char *text)
{
	struct lmtp_txn *t = s->txn;
	for (size_t i = 0; i < t->rcpt_count; i++)
		t->rcpts[i].reply = xasprintf("%s <%s> %s\r\n", code, t->rcpts[i].address, text);
	lmtp_flush_replies(s);
}

/* Delivers the complete message in t->data to each recipient. */
static void lmtp_deliver_all(struct lmtp_session *s)
{
	struct lmtp_txn *t = s->txn;
	size_t len = t->data.len;
	struct mda_message *msg = mda_message_new(buf_steal(&t->data), len, t->sender,
						  t->lifecycle_id);
	char size[32];
	snprintf(size, sizeof(size), "%zu", len);
	log_kv(LOG_INFO, conn_id(s->c), "message received", "id", t->lifecycle_id, "from",
	       t->sender, "size", size, NULL);
	t->starting = true;
	t->deliveries_pending = t->rcpt_count;
	for (size_t i = 0; i < t->rcpt_count; i++) {
		struct lmtp_pending *p = xcalloc(1, sizeof(*p));
		p->srv = lmtp_server;
		p->conn_id = conn_id(s->c);
		p->serial = t->serial;
		p->index = i;
		struct mda_delivery *dl = delivery_new(s->mda, msg, &t->rcpts[i].info,
						       t->rcpts[i].address);
		delivery_start(dl, lmtp_on_delivered, p);
	}
	mda_message_unref(&msg);
	t->starting = false;
	lmtp_flush_replies(s);
}

/* The "mda slow" fault's timer: finds its session by id, which may be gone. */
struct lmtp_slow {
	uv_timer_t timer;
	net_server *srv;
	uint64_t conn_id;
	uint64_t serial;
};

/* The fault timer's close callback: the only place it is freed. */
static void lmtp_slow_closed(uv_handle_t *handle)
{
	free(handle->data);
}

/* The injected delay ran out: finds the session again by id and delivers. */
static void lmtp_slow_done(uv_timer_t *timer)
{
	struct lmtp_slow *slow = timer->data;
	conn *c = net_server_find(slow->srv, slow->conn_id);
	struct lmtp_session *s = c != NULL && !conn_is_closing(c) ? conn_data(c) : NULL;
	if (s != NULL && s->txn != NULL && s->txn->serial == slow->serial)
		lmtp_deliver_all(s);
	uv_close((uv_handle_t *)timer, lmtp_slow_closed);
}

/* Applies the faults injected for labs (common/fault.h); true when one
 * answered or delayed the transaction. */
static bool lmtp_apply_faults(struct lmtp_session *s)
{
	const char *datadir = s->mda->datadir;
	if (fault_get(datadir, "mda", "tempfail") != NULL) {
		lmtp_refuse_all(s, "451 4.3.0", "Temporary failure (injected fault: mda tempfail)");
		return true;
	}
	if (fault_get(datadir, "mda", "permfail") != NULL) {
		lmtp_refuse_all(s, "554 5.3.0", "Delivery refused (injected fault: mda permfail)");
		return true;
	}
	const char *slow = fault_get(datadir, "mda", "slow");
	if (slow != NULL) {
		struct lmtp_slow *timer = xcalloc(1, sizeof(*timer));
		timer->srv = lmtp_server;
		timer->conn_id = conn_id(s->c);
		timer->serial = s->txn->serial;
		uv_timer_init(s->mda->loop, &timer->timer);
		timer->timer.data = timer;
		log_kv(LOG_INFO, conn_id(s->c), "injected fault: mda slow", "seconds", slow, NULL);
		uv_timer_start(&timer->timer, lmtp_slow_done, (uint64_t)strtoul(slow, NULL, 10) * 1000,
			       0);
		return true;
	}
	return false;
}

/* The whole message is in t->data: check it, then deliver to each recipient. */
static void lmtp_message_complete(struct lmtp_session *s)
{
	struct lmtp_txn *t = s->txn;
	lmtp_enter(s, LMTP_STATE_DELIVERING);
	conn_pause(s->c);
	conn_set_transcript_quiet(s->c, false);
	conn_set_max_line(s->c, MDA_MAX_LINE);
	conn_set_command_timeout(s->c, 0);
	if (t->pending_cr)
		t->bare_newline = true;
	if (t->too_big) {
		lmtp_refuse_all(s, "552 5.3.4", "Message too big");
		return;
	}
	if (t->line_too_long) {
		lmtp_refuse_all(s, "554 5.6.0", "Message has a line longer than 65536 octets");
		return;
	}
	if (t->bare_newline) {
		lmtp_refuse_all(s, "550 5.6.0",
				"Message refused: bare LF or CR in the data, lines must end in "
				"CRLF (RFC 5321 2.3.8)");
		return;
	}
	if (lmtp_apply_faults(s))
		return;
	lmtp_deliver_all(s);
}

/* ---- DATA and BDAT content ---- */

/* Appends message bytes, enforcing the size limit before the buffer grows. */
static void lmtp_data_append(struct lmtp_session *s, const char *data, size_t len)
{
	struct lmtp_txn *t = s->txn;
	if (t->too_big || t->data.len + len > s->mda->max_message_size) {
		t->too_big = true;
		return;
	}
	buf_append(&t->data, data, len);
}

/* One line of DATA (RFC 5321 4.5.2 dot-unstuffing). */
static void lmtp_data_line(struct lmtp_session *s, char *line, size_t len, bool crlf)
{
	struct lmtp_txn *t = s->txn;
	if (crlf && len == 1 && line[0] == '.') {
		lmtp_message_complete(s);
		return;
	}
	/* "\n.\n" is not the end (4.1.1.4): a bare LF line is content. */
	if (!crlf || memchr(line, '\r', len) != NULL)
		t->bare_newline = true;
	if (len > 0 && line[0] == '.') {
		line++;
		len--;
	}
	lmtp_data_append(s, line, len);
	lmtp_data_append(s, "\r\n", 2);
}

/* Scans a BDAT chunk for bare CR and bare LF across chunk boundaries. */
static void lmtp_bdat_scan(struct lmtp_txn *t, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (t->pending_cr && data[i] != '\n')
			t->bare_newline = true;
		if (data[i] == '\n' && !t->pending_cr)
			t->bare_newline = true;
		t->pending_cr = data[i] == '\r';
	}
}

/* A piece of a BDAT chunk: checked for bare CR/LF and kept (or discarded). */
static void lmtp_on_bytes(conn *c, const char *data, size_t len, bool last)
{
	struct lmtp_session *s = conn_data(c);
	struct lmtp_txn *t = s->txn;
	if (!t->bdat_discard) {
		lmtp_bdat_scan(t, data, len);
		lmtp_data_append(s, data, len);
	}
	if (!last)
		return;
	conn_set_transcript_quiet(c, false);
	if (t->bdat_discard) {
		t->bdat_discard = false;
		lmtp_error(s, "503 5.5.1 No valid recipients\r\n");
		return;
	}
	if (t->bdat_last) {
		lmtp_message_complete(s);
		return;
	}
	conn_printf(c, "250 2.0.0 %llu octets received\r\n", (unsigned long long)t->bdat_chunk);
}

/* ---- commands ---- */

typedef void lmtp_handler(struct lmtp_session *s, char *args);

/* Text after "KEYWORD:" (case-insensitive), or NULL. */
static char *lmtp_after_keyword(char *args, const char *keyword)
{
	size_t n = strlen(keyword);
	if (args == NULL || strncasecmp(args, keyword, n) != 0)
		return NULL;
	return args + n;
}

/* LHLO (RFC 2033 4.1): the greeting and our extensions. */
static void cmd_lhlo(struct lmtp_session *s, char *args)
{
	if (args == NULL || args[0] == '\0') {
		lmtp_error(s, "501 5.5.4 Syntax: LHLO hostname\r\n");
		return;
	}
	lmtp_txn_free(&s->txn);
	conn_printf(s->c,
		    "250-%s\r\n"
		    "250-PIPELINING\r\n"
		    "250-ENHANCEDSTATUSCODES\r\n"
		    "250-8BITMIME\r\n"
		    "250-SIZE %llu\r\n"
		    "250-CHUNKING\r\n"
		    "250-SMTPUTF8\r\n"
		    "250 XLIFECYCLE\r\n",
		    s->mda->hostname, (unsigned long long)s->mda->max_message_size);
	lmtp_enter(s, LMTP_STATE_READY);
}

/* Checks an XLIFECYCLE value: [0-9A-Za-z], bounded. */
static bool lmtp_lifecycle_valid(const char *id)
{
	size_t len = strlen(id);
	if (len == 0 || len > LMTP_MAX_LIFECYCLE_ID)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = id[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= 'a' && ch <= 'z')))
			return false;
	}
	return true;
}

/* Checks MAIL parameters; returns a reply on error (static) or NULL. */
static const char *lmtp_mail_params(struct lmtp_session *s, const struct smtp_path *path,
				    const char **lifecycle_r)
{
	*lifecycle_r = NULL;
	for (size_t i = 0; i < path->param_count; i++) {
		const struct smtp_param *p = &path->params[i];
		if (strcmp(p->keyword, "SIZE") == 0) {
			if (p->value == NULL)
				return "501 5.5.4 SIZE needs a value\r\n";
			char *end;
			unsigned long long size = strtoull(p->value, &end, 10);
			if (*end != '\0')
				return "501 5.5.4 Bad SIZE value\r\n";
			if (size > s->mda->max_message_size)
				return "552 5.3.4 Message too big\r\n";
		} else if (strcmp(p->keyword, "BODY") == 0) {
			if (p->value == NULL || (strcasecmp(p->value, "7BIT") != 0 &&
						 strcasecmp(p->value, "8BITMIME") != 0))
				return "501 5.5.4 BODY must be 7BIT or 8BITMIME\r\n";
		} else if (strcmp(p->keyword, "SMTPUTF8") == 0) {
			if (p->value != NULL)
				return "501 5.5.4 SMTPUTF8 takes no value\r\n";
		} else if (strcmp(p->keyword, "XLIFECYCLE") == 0) {
			if (p->value == NULL || !lmtp_lifecycle_valid(p->value))
				return "501 5.5.4 Bad XLIFECYCLE value\r\n";
			*lifecycle_r = p->value;
		} else {
			return "555 5.5.4 Unsupported MAIL parameter\r\n";
		}
	}
	return NULL;
}

/* MAIL FROM: starts a transaction with the sender and its lifecycle id. */
static void cmd_mail(struct lmtp_session *s, char *args)
{
	char *rest = lmtp_after_keyword(args, "FROM:");
	if (rest == NULL) {
		lmtp_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
		return;
	}
	struct smtp_path path;
	const char *reason;
	if (smtp_path_parse(rest, strlen(rest),
			    SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_UTF8 | SMTP_PATH_LENIENT_SPACE,
			    &path, &reason) < 0) {
		char *reply = xasprintf("501 5.1.7 Bad sender address: %s\r\n", reason);
		lmtp_error(s, reply);
		free(reply);
		return;
	}
	const char *lifecycle;
	const char *bad = lmtp_mail_params(s, &path, &lifecycle);
	if (bad != NULL) {
		lmtp_error(s, bad);
		smtp_path_free(&path);
		return;
	}
	struct lmtp_txn *t = xcalloc(1, sizeof(*t));
	t->serial = ++s->next_serial;
	t->sender = xstrdup(path.address);
	t->lifecycle_id = lifecycle != NULL ? xstrdup(lifecycle) : lifecycle_id_new();
	buf_init(&t->data);
	s->txn = t;
	smtp_path_free(&path);
	conn_printf(s->c, "250 2.1.0 Sender OK, id %s\r\n", t->lifecycle_id);
	lmtp_enter(s, LMTP_STATE_MAIL);
}

/* RCPT TO: looks the recipient up and adds it to the transaction. */
static void cmd_rcpt(struct lmtp_session *s, char *args)
{
	char *rest = lmtp_after_keyword(args, "TO:");
	if (rest == NULL) {
		lmtp_error(s, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
		return;
	}
	struct lmtp_txn *t = s->txn;
	if (t->rcpt_count >= (size_t)config_int(s->mda->cfg, "smtp.max_recipients")) {
		conn_write_str(s->c, "452 4.5.3 Too many recipients\r\n");
		return;
	}
	struct smtp_path path;
	const char *reason;
	if (smtp_path_parse(rest, strlen(rest),
			    SMTP_PATH_ALLOW_UTF8 | SMTP_PATH_ALLOW_POSTMASTER |
				    SMTP_PATH_LENIENT_SPACE,
			    &path, &reason) < 0) {
		char *reply = xasprintf("501 5.1.3 Bad recipient address: %s\r\n", reason);
		lmtp_error(s, reply);
		free(reply);
		return;
	}
	if (path.param_count > 0) {
		lmtp_error(s, "555 5.5.4 Unsupported RCPT parameter\r\n");
		smtp_path_free(&path);
		return;
	}
	struct user_info info;
	memset(&info, 0, sizeof(info));
	if (userdb_user_lookup(s->mda->users, path.address, &info) < 0) {
		conn_printf(s->c, "550 5.1.1 <%s> User unknown\r\n", path.address);
		smtp_path_free(&path);
		return;
	}
	t->rcpts = xrealloc(t->rcpts, (t->rcpt_count + 1) * sizeof(*t->rcpts));
	struct lmtp_rcpt *r = &t->rcpts[t->rcpt_count++];
	r->address = xstrdup(path.address);
	r->info = info;
	r->reply = NULL;
	conn_printf(s->c, "250 2.1.5 <%s> Recipient OK\r\n", path.address);
	smtp_path_free(&path);
	if (s->state == LMTP_STATE_MAIL)
		lmtp_enter(s, LMTP_STATE_RCPT);
}

/* DATA: the message follows as dot-stuffed lines. */
static void cmd_data(struct lmtp_session *s, char *args)
{
	if (args != NULL && args[0] != '\0') {
		lmtp_error(s, "501 5.5.4 DATA takes no arguments\r\n");
		return;
	}
	if (s->state == LMTP_STATE_MAIL) {
		lmtp_error(s, "503 5.5.1 No valid recipients\r\n");
		return;
	}
	if (s->txn->bdat) {
		lmtp_error(s, "503 5.5.1 DATA after BDAT\r\n");
		return;
	}
	conn_write_str(s->c, "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	conn_set_max_line(s->c, MDA_DATA_MAX_LINE);
	conn_set_transcript_quiet(s->c, true);
	conn_set_command_timeout(s->c, (uint64_t)config_int(s->mda->cfg, "smtp.data_timeout") * 1000);
	lmtp_enter(s, LMTP_STATE_DATA);
}

/* BDAT size [LAST] (RFC 3030): the next size bytes are message data. */
static void cmd_bdat(struct lmtp_session *s, char *args)
{
	char *end = NULL;
	unsigned long long size = args != NULL ? strtoull(args, &end, 10) : 0;
	if (args == NULL || end == args || (*end != '\0' && *end != ' ')) {
		lmtp_error(s, "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
		return;
	}
	while (*end == ' ')
		end++;
	bool last = false;
	if (strcasecmp(end, "LAST") == 0)
		last = true;
	else if (*end != '\0') {
		lmtp_error(s, "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
		return;
	}
	struct lmtp_txn *t = s->txn;
	t->bdat = true;
	t->bdat_chunk = size;
	t->bdat_last = last;
	t->bdat_discard = s->state == LMTP_STATE_MAIL;
	if (size == 0) {
		lmtp_on_bytes(s->c, "", 0, true);
		return;
	}
	conn_set_transcript_quiet(s->c, true);
	conn_read_bytes(s->c, size);
}

/* RSET: drops the transaction. */
static void cmd_rset(struct lmtp_session *s, char *args)
{
	lmtp_txn_free(&s->txn);
	conn_write_str(s->c, "250 2.0.0 OK\r\n");
	if (s->state != LMTP_STATE_START)
		lmtp_enter(s, LMTP_STATE_READY);
}

/* NOOP: 250. */
static void cmd_noop(struct lmtp_session *s, char *args)
{
	conn_write_str(s->c, "250 2.0.0 OK\r\n");
}

/* QUIT: 221, then closes. */
static void cmd_quit(struct lmtp_session *s, char *args)
{
	conn_write_str(s->c, "221 2.0.0 Bye\r\n");
	conn_close(s->c);
}

/* HELO and EHLO: refused, LMTP greets with LHLO (RFC 2033 4.1). */
static void cmd_helo(struct lmtp_session *s, char *args)
{
	lmtp_error(s, "500 5.5.1 This is an LMTP server: use LHLO\r\n");
}

/* VRFY: 252, we neither confirm nor deny addresses. */
static void cmd_vrfy(struct lmtp_session *s, char *args)
{
	conn_write_str(s->c, "252 2.5.0 Cannot VRFY, but will try delivery\r\n");
}

#define IN(state) (1u << (state))
#define ANY_STATE (IN(LMTP_STATE_START) | IN(LMTP_STATE_READY) | IN(LMTP_STATE_MAIL) | \
		   IN(LMTP_STATE_RCPT))

static const struct lmtp_command {
	const char *name;
	unsigned states;        /* states the command is allowed in */
	const char *wrong_state; /* reply when it is not */
	lmtp_handler *handler;
} lmtp_commands[] = {
	{"LHLO", ANY_STATE, NULL, cmd_lhlo},
	{"MAIL", IN(LMTP_STATE_READY), "503 5.5.1 Send LHLO first, one MAIL per transaction\r\n",
	 cmd_mail},
	{"RCPT", IN(LMTP_STATE_MAIL) | IN(LMTP_STATE_RCPT), "503 5.5.1 Send MAIL first\r\n",
	 cmd_rcpt},
	{"DATA", IN(LMTP_STATE_MAIL) | IN(LMTP_STATE_RCPT), "503 5.5.1 Send MAIL and RCPT first\r\n",
	 cmd_data},
	{"BDAT", IN(LMTP_STATE_MAIL) | IN(LMTP_STATE_RCPT), "503 5.5.1 Send MAIL and RCPT first\r\n",
	 cmd_bdat},
	{"RSET", ANY_STATE, NULL, cmd_rset},
	{"NOOP", ANY_STATE, NULL, cmd_noop},
	{"QUIT", ANY_STATE, NULL, cmd_quit},
	{"VRFY", ANY_STATE, NULL, cmd_vrfy},
	{"HELO", ANY_STATE, NULL, cmd_helo},
	{"EHLO", ANY_STATE, NULL, cmd_helo},
};

/* One command line: find it in the table, check the state, run it. */
static void lmtp_command(struct lmtp_session *s, char *line, size_t len)
{
	if (memchr(line, '\0', len) != NULL) {
		lmtp_error(s, "500 5.5.2 NUL in command\r\n");
		return;
	}
	char *args = strchr(line, ' ');
	size_t name_len = args != NULL ? (size_t)(args - line) : len;
	if (args != NULL)
		args++;
	for (size_t i = 0; i < sizeof(lmtp_commands) / sizeof(lmtp_commands[0]); i++) {
		const struct lmtp_command *cmd = &lmtp_commands[i];
		if (strlen(cmd->name) != name_len || strncasecmp(cmd->name, line, name_len) != 0)
			continue;
		if ((cmd->states & IN(s->state)) == 0) {
			lmtp_error(s, s->state == LMTP_STATE_START
					      ? "503 5.5.1 Send LHLO first\r\n"
					      : cmd->wrong_state);
			return;
		}
		cmd->handler(s, args);
		return;
	}
	lmtp_error(s, "500 5.5.2 Unknown command\r\n");
}

/* ---- connection callbacks ---- */

/* A new connection: a session in START and the 220 greeting. */
static void lmtp_on_open(conn *c)
{
	struct mda *mda = net_server_data(conn_server(c));
	struct lmtp_session *s = xcalloc(1, sizeof(*s));
	s->mda = mda;
	s->c = c;
	s->state = LMTP_STATE_START;
	conn_set_data(c, s);
	conn_printf(c, "220 %s LMTP mailstack mda ready\r\n", mda->hostname);
}

/* One input line: message data in DATA, otherwise a command (CRLF only). */
static void lmtp_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct lmtp_session *s = conn_data(c);
	if (s->state == LMTP_STATE_DATA) {
		lmtp_data_line(s, line, len, crlf);
		return;
	}
	if (!crlf) {
		lmtp_error(s, "500 5.5.2 Commands must end in CRLF (RFC 5321 2.3.8)\r\n");
		return;
	}
	lmtp_command(s, line, len);
}

/* A line past the limit: spoils the message in DATA, else a 500. */
static void lmtp_on_line_too_long(conn *c)
{
	struct lmtp_session *s = conn_data(c);
	if (s->state == LMTP_STATE_DATA) {
		s->txn->line_too_long = true;
		return;
	}
	lmtp_error(s, "500 5.5.2 Line too long\r\n");
}

/* The idle timer fired: 421 and close. */
static void lmtp_on_timeout(conn *c)
{
	conn_write_str(c, "421 4.4.2 Timeout, closing connection\r\n");
	conn_close(c);
}

/* The connection closed: frees the session; deliveries still running find it gone by id. */
static void lmtp_on_close(conn *c)
{
	struct lmtp_session *s = conn_data(c);
	if (s == NULL)
		return;
	conn_set_data(c, NULL);
	lmtp_txn_free(&s->txn);
	free(s);
}

static const struct conn_handlers lmtp_handlers = {
	.on_open = lmtp_on_open,
	.on_line = lmtp_on_line,
	.on_line_too_long = lmtp_on_line_too_long,
	.on_bytes = lmtp_on_bytes,
	.on_timeout = lmtp_on_timeout,
	.on_close = lmtp_on_close,
};

struct net_server *lmtp_server_new(struct mda *mda)
{
	struct net_server_opts opts = {
		.proto = "lmtp",
		.max_line = MDA_MAX_LINE,
		.max_connections = (unsigned)config_int(mda->cfg, "server.max_connections"),
		.max_per_ip = 0,
		.idle_timeout_ms = (uint64_t)config_int(mda->cfg, "smtp.idle_timeout") * 1000,
		.too_many_reply = "421 4.7.0 Too many connections, try later\r\n",
		.tls = NULL,
	};
	lmtp_server = net_server_new(mda->loop, &opts, &lmtp_handlers, mda);
	return lmtp_server;
}
