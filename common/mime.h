/* mime.h: the MIME structure of a message (RFC 2045, 2046), for IMAP
 * BODYSTRUCTURE and the mua.
 *
 * Builds a tree of parts with byte offsets into the raw message: each part's
 * header, body, size and line count, its Content-Type with parameters,
 * Content-ID, Description, Transfer-Encoding, Disposition, Language and
 * Location. message/rfc822 parts hold their inner message as a child.
 * Malformed MIME (missing boundaries, bad headers) is not refused: what cannot
 * be split is one text/plain leaf, as IMAP servers report it. Depth is limited
 * (MIME_MAX_DEPTH) so a crafted message cannot exhaust the stack. */
#ifndef MAILSTACK_MIME_H
#define MAILSTACK_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "header.h"

#define MIME_MAX_DEPTH 32
#define MIME_MAX_PARTS 10000

struct mime_part {
	struct content_type type;           /* defaults: text/plain; charset=us-ascii */
	char *id;                           /* Content-ID, or NULL */
	char *description;                  /* Content-Description, or NULL */
	char *encoding;                     /* Content-Transfer-Encoding, lower-cased; "7bit" default */
	char *md5;
	struct content_type disposition;    /* type NULL when absent */
	char *language;                     /* Content-Language as written, or NULL */
	char *location;                     /* Content-Location, or NULL */
	size_t header_offset, header_len;   /* the part's MIME header (with its blank line) */
	size_t body_offset, body_len;       /* the body */
	size_t body_lines;                  /* lines in the body */
	struct mime_part *children;         /* multipart parts, or the one message/rfc822 child */
	size_t child_count;
	struct header *message_header;      /* for message/rfc822: the inner header, else NULL */
};

/* Parses msg; returns 0 and the root part (always, even for malformed input). */
int mime_parse(const char *msg, size_t len, struct mime_part *root_r);
void mime_part_free(struct mime_part *part);
/* The part at an IMAP section number ("1.2.3"); NULL if there is none. */
const struct mime_part *mime_find_part(const struct mime_part *root, const char *section);
/* Decodes a part's body (base64/quoted-printable) and, for text, converts it to
 * UTF-8 (caller frees). */
int mime_decode_body(const char *msg, const struct mime_part *part, bool to_utf8, char **out_r,
		     size_t *len_r);

#endif
