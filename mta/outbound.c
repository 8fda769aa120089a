/* outbound.c: what the LMTP and SMTP clients share — reading (multi-line)
 * replies, streaming a dot-stuffed body with backpressure, and recording each
 * recipient's result in a delivery.
 *
 * A reply is complete at the line whose fourth octet is a space (RFC 5321
 * 4.2.1); every line must start with the same three digits. Replies are
 * bounded in line length (by the conn) and in lines (SMTP_MAX_REPLY_LINES). */
#include "mta.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_path.h"

void smtp_reply_reset(struct smtp_reply *r)
{
	r->code = 0;
	r->lines = 0;
	r->malformed = false;
	buf_reset(&r->text);
}

int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len)
{
	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-')) {
		r->malformed = true;
		return -1;
	}
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->lines > 0 && code != r->code) {
		r->malformed = true;
		return -1;
	}
	r->code = code;
	if (++r->lines > SMTP_MAX_REPLY_LINES) {
		r->malformed = true;
		return -1;
	}
	if (r->text.len > 0)
		buf_append_char(&r->text, '\n');
	buf_append(&r->text, line, len);
	if (len == 3 || line[3] == ' ')
		return 1;
	return 0;
}

void smtp_reply_status(const struct smtp_reply *r, char *out, size_t cap)
{
	/* The enhanced code is the first word after "NNN " of the last line. */
	const char *text = buf_cstr(&r->text);
	const char *last = strrchr(text, '\n');
	last = last != NULL ? last + 1 : text;
	if (strlen(last) > 4) {
		const char *p = last + 4;
		int cls = p[0] - '0';
		if ((cls == 2 || cls == 4 || cls == 5) && p[1] == '.') {
			size_t n = strspn(p, "0123456789.");
			if (n >= 5 && n < cap && (p[n] == ' ' || p[n] == '\0')) {
				memcpy(out, p, n);
				out[n] = '\0';
				return;
			}
		}
	}
	snprintf(out, cap, "%d.0.0", r->code / 100);
}

char *smtp_reply_oneline(const struct smtp_reply *r)
{
	char *s = xstrdup(buf_cstr(&r->text));
	for (char *p = s; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return s;
}

/* Queues the next piece of the body; finishes with "." when all is queued. */
static void body_sender_pump(conn *c, void *arg)
{
	struct body_sender *bs = arg;
	if (conn_is_closing(c))
		return; /* the owner's on_close reports the failure */
	while (bs->off < bs->len) {
		if (conn_output_pending(c) >= NET_OUTPUT_HIGH_WATER) {
			conn_on_drain(c, body_sender_pump, bs);
			return;
		}
		/* Up to the next line that starts with a dot, or 64 KiB. */
		size_t end = bs->off + 65536 < bs->len ? bs->off + 65536 : bs->len;
		if (bs->line_start && bs->data[bs->off] == '.')
			conn_write_quiet(c, ".", 1);
		size_t i = bs->off;
		while (i < end) {
			const char *nl = memchr(bs->data + i, '\n', end - i);
			if (nl == NULL) {
				i = end;
				bs->line_start = false;
				break;
			}
			i = (size_t)(nl - bs->data) + 1;
			bs->line_start = true;
			if (i < bs->len && bs->data[i] == '.')
				break;
		}
		conn_write_quiet(c, bs->data + bs->off, i - bs->off);
		bs->off = i;
	}
	if (bs->len > 0 && bs->data[bs->len - 1] != '\n')
		conn_write_quiet(c, "\r\n", 2);
	conn_write_quiet(c, ".\r\n", 3);
	bs->done(bs->arg);
}

void body_sender_start(struct body_sender *bs, conn *c, const char *data, size_t len,
		       void (*done)(void *arg), void *arg)
{
	bs->c = c;
	bs->data = data;
	bs->len = len;
	bs->off = 0;
	bs->line_start = true;
	bs->done = done;
	bs->arg = arg;
	body_sender_pump(c, bs);
}

void delivery_set(struct delivery_rcpt *r, int code, const char *status, const char *reply)
{
	if (r->code != 0)
		return;
	r->code = code;
	snprintf(r->status, sizeof(r->status), "%s", status);
	free(r->reply);
	r->reply = xstrdup(reply);
}

void delivery_set_rest(struct delivery *dl, int code, const char *status, const char *reply)
{
	for (size_t i = 0; i < dl->count; i++)
		delivery_set(&dl->rcpts[i], code, status, reply);
}

/* Appends one parameter, space-separated from those before it. */
static void delivery_param(buf_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void delivery_param(buf_t *out, const char *fmt, ...)
{
	if (out->len > 0)
		buf_append_char(out, ' ');
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(out, fmt, ap);
	va_end(ap);
}

void delivery_mail_params(buf_t *out, const struct delivery *dl, unsigned flags,
			  const char *lifecycle_param)
{
	const struct queue_msg *msg = dl->msg;
	if (flags & MAIL_FROM_SIZE)
		delivery_param(out, "SIZE=%zu", msg->body_len);
	if (msg->body_8bit && (flags & MAIL_FROM_8BIT))
		delivery_param(out, "BODY=8BITMIME");
	if (msg->smtputf8 && (flags & MAIL_FROM_SMTPUTF8))
		delivery_param(out, "SMTPUTF8");
	if (flags & MAIL_FROM_DSN) {
		if (msg->ret != NULL)
			delivery_param(out, "RET=%s", msg->ret);
		if (msg->envid != NULL) {
			char *x = xtext_encode(msg->envid);
			delivery_param(out, "ENVID=%s", x);
			free(x);
		}
	}
	if (lifecycle_param != NULL)
		delivery_param(out, "XLIFECYCLE=%s", lifecycle_param);
}
