/* smtp_path.h: the RFC 5321 4.1.2 grammar for MAIL FROM / RCPT TO arguments.
 *
 * Parses "<local@domain> KEY=VALUE ..." (after "MAIL FROM:" / "RCPT TO:").
 * Accepted: dot-atom and quoted-string local parts, domains and address
 * literals, UTF-8 in both when smtputf8 (RFC 6531), the null path "<>" where
 * allowed. Refused with a reason: missing brackets, source routes
 * ("<@a,@b:u@d>"), '%' and '!' routing hacks, CR, LF, NUL and other controls,
 * shell and header metacharacters outside quoted strings, over-long parts
 * (local part 64, domain 255, path 256 octets), bad parameters. */
#ifndef MAILSTACK_SMTP_PATH_H
#define MAILSTACK_SMTP_PATH_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_PATH_MAX_PARAMS 16

struct smtp_param {
	char *keyword; /* upper-cased */
	char *value;   /* NULL when the parameter has no value */
};

struct smtp_path {
	char *address;  /* "local@domain" without brackets; "" for the null path */
	char *local;
	char *domain;
	bool is_null;
	bool has_utf8;  /* non-ASCII in the address (needs SMTPUTF8) */
	struct smtp_param params[SMTP_PATH_MAX_PARAMS];
	size_t param_count;
};

enum smtp_path_flags {
	SMTP_PATH_ALLOW_NULL = 1 << 0,    /* "<>" allowed (MAIL FROM) */
	SMTP_PATH_ALLOW_UTF8 = 1 << 1,    /* SMTPUTF8 was given */
	SMTP_PATH_ALLOW_POSTMASTER = 1 << 2, /* bare "<Postmaster>" (RCPT) */
	SMTP_PATH_LENIENT_SPACE = 1 << 3, /* allow a space after ':' (common in the wild) */
};

/* Parses text (the part after "FROM:" or "TO:"). 0 on success; on error -1 and
 * *reason_r points to a static explanation such as "source routes are not accepted". */
int smtp_path_parse(const char *text, size_t len, unsigned flags, struct smtp_path *path_r,
		    const char **reason_r);
void smtp_path_free(struct smtp_path *path);
/* The value of a parameter (case-insensitive keyword), or NULL; *present_r tells
 * whether it was there at all (for value-less parameters). */
const char *smtp_path_param(const struct smtp_path *path, const char *keyword, bool *present_r);

/* xtext (RFC 3461 4): decode into a new string, -1 on malformed input. */
int xtext_decode(const char *text, char **out_r);
char *xtext_encode(const char *text);

#endif
