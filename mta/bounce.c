/* bounce.c: delivery status notifications (RFC 3464, with RFC 3461's
 * NOTIFY / RET / ENVID / ORCPT, and RFC 6533 for SMTPUTF8 messages).
 *
 * A report is a new queued message from the null sender <> to the original
 * sender: a multipart/report with a human-readable part, the
 * message/delivery-status part (one block per recipient: failed, delayed,
 * delivered or relayed) and the original message's header (RET=HDRS, the
 * default) or the whole message (RET=FULL). No report ever goes to the null
 * sender, so reports cannot loop. */
#include "mta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "header.h"
#include "log.h"

bool dsn_wanted(const struct queue_msg *msg, const struct queue_rcpt *r, enum dsn_action action)
{
	if (msg->sender == NULL || msg->sender[0] == '\0')
		return false;
	if (r->notify & QUEUE_NOTIFY_NEVER)
		return false;
	switch (action) {
	case DSN_FAILED:
		return r->notify == 0 || (r->notify & QUEUE_NOTIFY_FAILURE);
	case DSN_DELAYED:
		return r->notify == 0 || (r->notify & QUEUE_NOTIFY_DELAY);
	case DSN_DELIVERED:
	case DSN_RELAYED:
		return (r->notify & QUEUE_NOTIFY_SUCCESS) != 0;
	}
	return false;
}

static const char *dsn_action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "failed";
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	case DSN_RELAYED:
		return "relayed";
	}
	return "failed";
}

/* RFC 5322 date of a unix ms time in local time. */
static void dsn_date(int64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	header_format_date((int64_t)t, (int)(tm.tm_gmtoff / 60), out, cap);
}

/* Appends text with every line break made CRLF and no line over 900 octets. */
static void dsn_append_text(buf_t *out, const char *text)
{
	size_t col = 0;
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\r')
			continue;
		if (*p == '\n') {
			buf_append(out, "\r\n", 2);
			col = 0;
			continue;
		}
		if (col >= 900) {
			buf_append(out, "\r\n ", 3);
			col = 1;
		}
		buf_append_char(out, *p);
		col++;
	}
}

/* The human-readable first part. */
static void dsn_append_notice(buf_t *b, struct mta *m, const struct dsn_rcpt *rcpts, size_t count,
			      bool any_failed, bool any_delayed, int64_t retry_until)
{
	buf_printf(b, "This is the mail system at host %s.\r\n\r\n", m->hostname);
	if (any_failed)
		buf_append_str(b, "Your message could not be delivered to one or more recipients.\r\n"
				  "It is attached below.\r\n\r\n");
	if (any_delayed) {
		char until[64];
		dsn_date(retry_until, until, sizeof(until));
		buf_printf(b, "Your message could not be delivered yet to one or more recipients.\r\n"
			      "This is only a warning: the mail system will keep trying until\r\n"
			      "%s.\r\n\r\n", until);
	}
	if (!any_failed && !any_delayed)
		buf_append_str(b, "Your message was delivered to the recipients below, as you "
				  "asked.\r\n\r\n");
	for (size_t i = 0; i < count; i++) {
		buf_printf(b, "<%s>: %s: ", rcpts[i].rcpt->address, dsn_action_name(rcpts[i].action));
		dsn_append_text(b, rcpts[i].diagnostic != NULL ? rcpts[i].diagnostic : "");
		buf_append_str(b, "\r\n");
	}
}

/* The message/delivery-status part (RFC 3464 2.2 and 2.3). */
static void dsn_append_status(buf_t *b, struct mta *m, const struct queue_msg *msg,
			      const struct dsn_rcpt *rcpts, size_t count, int64_t retry_until)
{
	char date[64];
	buf_printf(b, "Reporting-MTA: dns; %s\r\n", m->hostname);
	buf_printf(b, "X-Mailstack-Queue-ID: %s\r\n", msg->id);
	if (msg->envid != NULL)
		buf_printf(b, "Original-Envelope-Id: %s\r\n", msg->envid);
	buf_printf(b, "X-Original-Sender: rfc822; %s\r\n", msg->sender);
	dsn_date(msg->created, date, sizeof(date));
	buf_printf(b, "Arrival-Date: %s\r\n", date);
	char now[64];
	dsn_date(queue_now_ms(), now, sizeof(now));
	for (size_t i = 0; i < count; i++) {
		const struct dsn_rcpt *r = &rcpts[i];
		buf_append_str(b, "\r\n");
		if (r->rcpt->orcpt != NULL) {
			const char *semi = strchr(r->rcpt->orcpt, ';');
			if (semi != NULL)
				buf_printf(b, "Original-Recipient: %.*s; %s\r\n",
					   (int)(semi - r->rcpt->orcpt), r->rcpt->orcpt, semi + 1);
		}
		buf_printf(b, "Final-Recipient: rfc822; %s\r\n", r->rcpt->address);
		buf_printf(b, "Action: %s\r\n", dsn_action_name(r->action));
		buf_printf(b, "Status: %s\r\n", r->status != NULL ? r->status : "5.0.0");
		if (r->remote_mta != NULL) {
			char *host = xstrdup(r->remote_mta);
			char *colon = strrchr(host, ':');
			if (colon != NULL)
				*colon = '\0';
			buf_printf(b, "Remote-MTA: dns; %s\r\n", host);
			free(host);
		}
		if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
			buf_append_str(b, "Diagnostic-Code: smtp; ");
			dsn_append_text(b, r->diagnostic);
			buf_append_str(b, "\r\n");
		}
		buf_printf(b, "Last-Attempt-Date: %s\r\n", now);
		if (r->action == DSN_DELAYED) {
			char until[64];
			dsn_date(retry_until, until, sizeof(until));
			buf_printf(b, "Will-Retry-Until: %s\r\n", until);
		}
	}
}

/* The report's recipients: the original sender, through aliases when local. */
static bool dsn_set_recipients(struct mta *m, const struct queue_msg *msg, struct queue_msg *dsn)
{
	char *domain = policy_domain_of(msg->sender);
	bool local = userdb_domain_is_local(m->users, domain);
	free(domain);
	char **targets = NULL;
	if (local) {
		targets = userdb_resolve(m->users, msg->sender);
		if (targets == NULL || targets[0] == NULL) {
			userdb_strv_free(targets);
			return false;
		}
	} else {
		targets = xcalloc(2, sizeof(*targets));
		targets[0] = xstrdup(msg->sender);
	}
	size_t n = 0;
	while (targets[n] != NULL)
		n++;
	dsn->rcpts = xcalloc(n, sizeof(*dsn->rcpts));
	for (size_t i = 0; i < n; i++) {
		struct queue_rcpt *r = &dsn->rcpts[dsn->rcpt_count++];
		r->address = xstrdup(targets[i]);
		r->orig = xstrdup(msg->sender);
		r->state = QUEUE_RCPT_QUEUED;
		/* RFC 3461 6.2: a report asks for no reports about itself. */
		r->notify = QUEUE_NOTIFY_NEVER;
	}
	userdb_strv_free(targets);
	return true;
}

struct queue_msg *dsn_build(struct mta *m, const struct queue_msg *msg, const struct dsn_rcpt *rcpts,
			    size_t count, int64_t retry_until)
{
	if (msg->sender == NULL || msg->sender[0] == '\0' || count == 0 || msg->body == NULL)
		return NULL;
	struct queue_msg *dsn = xcalloc(1, sizeof(*dsn));
	if (!dsn_set_recipients(m, msg, dsn)) {
		log_kv(LOG_WARN, 0, "no report: the sender is not a local user", "id", msg->id,
		       "sender", msg->sender, NULL);
		queue_msg_destroy(&dsn);
		return NULL;
	}
	bool any_failed = false, any_delayed = false;
	for (size_t i = 0; i < count; i++) {
		any_failed |= rcpts[i].action == DSN_FAILED;
		any_delayed |= rcpts[i].action == DSN_DELAYED;
	}
	dsn->id = lifecycle_id_new();
	dsn->sender = xstrdup("");
	dsn->is_dsn = true;
	dsn->smtputf8 = msg->smtputf8;
	dsn->body_8bit = true;
	dsn->created = queue_now_ms();
	dsn->client = xstrdup("mta (delivery status notification)");

	buf_t b = BUF_INIT;
	char date[64];
	dsn_date(dsn->created, date, sizeof(date));
	buf_printf(&b, "Received: by %s (mailstack) id %s; %s\r\n", m->hostname, dsn->id, date);
	buf_printf(&b, "Date: %s\r\n", date);
	buf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", m->hostname);
	buf_printf(&b, "To: <%s>\r\n", msg->sender);
	buf_printf(&b, "Subject: %s\r\n", any_failed ? "Undelivered Mail Returned to Sender" :
		   any_delayed ? "Delayed Mail (still being retried)" :
		   "Successful Mail Delivery Report");
	buf_printf(&b, "Message-ID: <%s@%s>\r\n", dsn->id, m->hostname);
	buf_append_str(&b, "Auto-Submitted: auto-replied\r\n");
	buf_append_str(&b, "MIME-Version: 1.0\r\n");
	buf_printf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
		       "\tboundary=\"%s/%s\"\r\n", dsn->id, m->hostname);
	buf_append_str(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	buf_printf(&b, "--%s/%s\r\n", dsn->id, m->hostname);
	buf_append_str(&b, "Content-Description: Notification\r\n"
			   "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	dsn_append_notice(&b, m, rcpts, count, any_failed, any_delayed, retry_until);
	buf_append_str(&b, "\r\n");

	buf_printf(&b, "--%s/%s\r\n", dsn->id, m->hostname);
	buf_printf(&b, "Content-Description: Delivery report\r\nContent-Type: %s\r\n\r\n",
		   msg->smtputf8 ? "message/global-delivery-status" : "message/delivery-status");
	dsn_append_status(&b, m, msg, rcpts, count, retry_until);
	buf_append_str(&b, "\r\n");

	bool full = msg->ret != NULL && strcasecmp(msg->ret, "FULL") == 0;
	size_t header_len = header_section_length(msg->body, msg->body_len);
	buf_printf(&b, "--%s/%s\r\n", dsn->id, m->hostname);
	if (full)
		buf_printf(&b, "Content-Description: %s\r\nContent-Type: %s\r\n\r\n",
			   any_failed ? "Undelivered Message" : "Message",
			   msg->smtputf8 ? "message/global" : "message/rfc822");
	else
		buf_printf(&b, "Content-Description: %s\r\nContent-Type: %s\r\n\r\n",
			   any_failed ? "Undelivered Message Headers" : "Message Headers",
			   msg->smtputf8 ? "message/global-headers" : "text/rfc822-headers");
	buf_append(&b, msg->body, full ? msg->body_len : header_len);
	if (b.len >= 2 && memcmp(b.data + b.len - 2, "\r\n", 2) != 0)
		buf_append_str(&b, "\r\n");
	buf_printf(&b, "\r\n--%s/%s--\r\n", dsn->id, m->hostname);
	dsn->body_len = b.len;
	dsn->size = (int64_t)b.len;
	dsn->body = buf_steal(&b);
	return dsn;
}
