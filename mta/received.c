/* received.c: the header fields the mta adds to a message.
 *
 * Every message gets a Received field (RFC 5321 4.4) naming the client, us,
 * the protocol (RFC 3848 / RFC 6531 3.7.3 names), the lifecycle id, the TLS
 * version and cipher and the authenticated user. On submission (RFC 6409 8)
 * a message without Message-ID or Date gets them. */
#include "mta.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "header.h"

void received_date_now(char *out, size_t cap)
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	int tz = (int)(tm.tm_gmtoff / 60);
	header_format_date((int64_t)now, tz, out, cap);
}

const char *received_protocol(bool esmtp, bool tls, bool auth, bool smtputf8)
{
	if (!esmtp)
		return "SMTP";
	if (smtputf8)
		return tls ? (auth ? "UTF8SMTPSA" : "UTF8SMTPS") : (auth ? "UTF8SMTPA" : "UTF8SMTP");
	return tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

void received_append(buf_t *out, const char *hostname, const struct received_info *ri)
{
	char date[64];
	received_date_now(date, sizeof(date));
	if (strcmp(ri->peer_addr, "unix") == 0)
		buf_printf(out, "Received: from %s (local submission)\r\n", ri->helo);
	else
		buf_printf(out, "Received: from %s ([%s])\r\n", ri->helo, ri->peer_addr);
	buf_printf(out, "\tby %s (mailstack) with %s id %s\r\n", hostname, ri->protocol, ri->id);
	if (ri->tls_version != NULL || ri->auth_user != NULL) {
		buf_append_str(out, "\t(");
		if (ri->tls_version != NULL)
			buf_printf(out, "using %s with cipher %s", ri->tls_version,
				   ri->tls_cipher != NULL ? ri->tls_cipher : "unknown");
		if (ri->auth_user != NULL)
			buf_printf(out, "%sauthenticated as %s", ri->tls_version != NULL ? "; " : "",
				   ri->auth_user);
		buf_append_str(out, ")\r\n");
	}
	if (ri->for_rcpt != NULL)
		buf_printf(out, "\tfor <%s>; %s\r\n", ri->for_rcpt, date);
	else
		buf_printf(out, "\t; %s\r\n", date);
}

void received_append_missing(buf_t *out, const char *msg, size_t len, const char *hostname,
			     const char *id)
{
	struct header h;
	memset(&h, 0, sizeof(h));
	header_parse(msg, len, &h);
	if (header_get(&h, "Message-ID") == NULL)
		buf_printf(out, "Message-ID: <%s@%s>\r\n", id, hostname);
	if (header_get(&h, "Date") == NULL) {
		char date[64];
		received_date_now(date, sizeof(date));
		buf_printf(out, "Date: %s\r\n", date);
	}
	header_free(&h);
}
