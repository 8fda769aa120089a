/* outbound.c: what the LMTP and SMTP clients share — recording each
 * recipient's result in a delivery and building the MAIL FROM parameters.
 * Replies and the dot-stuffed body are common/smtp_client.c's work. */
#include "mta.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_path.h"

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
