/* compose.h: writing messages (RFC 5322 and MIME, RFC 2045/2046/2047) and the
 * pure parts of replying and forwarding, for the mua and any other program
 * that writes mail.
 *
 * Everything a user typed goes through compose_header_clean before it reaches
 * a header, so CR and LF can never start a new field (header injection).
 * Output always uses CRLF, no line passes COMPOSE_MAX_LINE octets (text is
 * quoted-printable when it is not short 7-bit lines), non-ASCII names and
 * subjects become encoded words, and attachments are base64 inside
 * multipart/mixed (message/rfc822 parts stay 7bit/8bit as RFC 2046 5.2.1
 * demands). */
#ifndef MAILSTACK_COMPOSE_H
#define MAILSTACK_COMPOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5322 2.1.1: lines must be no longer than 998 characters plus CRLF. */
#define COMPOSE_MAX_LINE 998
/* Limits on what a user may type or attach. */
#define COMPOSE_MAX_RECIPIENTS 1000
#define COMPOSE_MAX_REFERENCES 20
#define COMPOSE_MAX_ATTACHMENTS 100
#define COMPOSE_MAX_ATTACHMENT_SIZE (50 * 1024 * 1024)

struct compose_attachment {
	char *filename;     /* shown name (no directories), UTF-8 */
	char *content_type; /* "application/pdf"; guessed from the name when NULL */
	char *data;
	size_t len;
};

struct compose_message {
	const char *from;        /* "Name <addr>" or "addr" */
	const char *to;          /* comma-separated lists as typed */
	const char *cc;
	const char *bcc;         /* not written to the header */
	const char *subject;
	const char *body;        /* UTF-8, LF or CRLF line ends */
	const char *in_reply_to; /* "<id>" or NULL */
	const char *references;  /* "<a> <b>" or NULL */
	const char *message_id;  /* NULL = make one */
	int64_t date;            /* 0 = now */
	int tz_minutes;          /* the Date's offset from UTC */
	const struct compose_attachment *attachments;
	size_t attachment_count;
	const char *extra_headers; /* preformatted "Name: value\r\n" lines (e.g. X-Mailer), or NULL */
};

/* A copy of s with CR, LF and other control bytes (except TAB) turned into
 * spaces and surrounding blanks trimmed: safe to put in a header field. */
char *compose_header_clean(const char *s);

/* Parses a typed address list ("Bob <bob@x>, carol@y"): 0 and the addr-specs
 * (*addrs_r, caller frees each and the array) plus the list formatted for a
 * header (*header_r, names encoded), or -1 with *err_r naming the bad entry. */
int compose_parse_recipients(const char *text, char ***addrs_r, size_t *count_r,
			     char **header_r, char **err_r);
void compose_free_list(char ***list, size_t count);

/* The MIME type for a file name, by extension ("application/octet-stream"). */
const char *compose_guess_type(const char *filename);

/* A new Message-ID "<time.random@domain>" (caller frees). */
char *compose_message_id(const char *domain);

/* Builds the whole message: 0 and *out_r (NUL-terminated, *len_r bytes), or -1
 * and *err_r (a bad address, too many recipients, an attachment too big). */
int compose_build(const struct compose_message *m, char **out_r, size_t *len_r, char **err_r);

/* Envelope recipients of a message (To, Cc and Bcc, duplicates removed). */
int compose_envelope_recipients(const struct compose_message *m, char ***addrs_r,
				size_t *count_r, char **err_r);

/* "Re: subject" unless it already starts with Re: (any case); NULL gives "Re: ". */
char *compose_reply_subject(const char *subject);
/* "Fwd: subject" unless it already starts with Fwd: or Fw:. */
char *compose_forward_subject(const char *subject);
/* The References for a reply: the parent's References (or its In-Reply-To)
 * followed by its Message-ID, keeping the first and the last
 * COMPOSE_MAX_REFERENCES - 1 ids (RFC 5322 3.6.4). NULL when there is none. */
char *compose_reply_references(const char *references, const char *in_reply_to,
			       const char *message_id);
/* The body quoted for a reply: an attribution line ("On DATE, NAME wrote:")
 * then each line prefixed with "> " (">" for lines already quoted). */
char *compose_quote_body(const char *text, const char *date, const char *from_name);
/* The body of an inline forward: a divider, the original's chosen headers and text. */
char *compose_forward_body(const char *from, const char *date, const char *subject,
			   const char *to, const char *text);

/* Recipients of a reply. reply-to (or from) becomes To; for reply-all the
 * other To and Cc addresses become Cc, leaving out `self` and duplicates.
 * Results are header-ready lists (caller frees; *cc_r may be ""). */
int compose_reply_recipients(const char *from, const char *reply_to, const char *to,
			     const char *cc, const char *self, bool all, char **to_r,
			     char **cc_r);

#endif
