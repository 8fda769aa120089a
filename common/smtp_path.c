/* smtp_path.c: MAIL FROM / RCPT TO arguments (RFC 5321 4.1.2, RFC 6531 3.3).
 *
 * One pass over the text with a cursor: optional spaces (LENIENT_SPACE), the
 * path in angle brackets, then SP-separated ESMTP parameters. Every refusal
 * names its reason in a static string the mta turns into its 501/553 reply.
 *
 * Invariants: nothing is allocated until the whole text has been checked, so
 * an error never leaves a half-filled smtp_path behind; limits (local part 64,
 * domain 255, path 256 octets, SMTP_PATH_MAX_PARAMS) are checked on lengths
 * before any copy is made.
 *
 * A quoted local part whose content is also a valid dot-string is stored
 * without its quotes ("\"alice\"@x" is alice@x); other quoted local parts keep
 * their quotes, so path->address can be given back to another MTA as is. */
#include "smtp_path.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "codec.h"

#define SMTP_LOCAL_MAX 64
#define SMTP_DOMAIN_MAX 255
#define SMTP_LABEL_MAX 63
#define SMTP_PATH_MAX 256
#define SMTP_PARAM_VALUE_MAX 1000

/* RFC 5322 atext, plus any non-ASCII byte (checked as UTF-8 afterwards). */
static bool is_atext(unsigned char c)
{
	if (isalnum(c) || c >= 0x80)
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Characters a command line could turn into actions: refused outside quotes. */
static bool is_shell_meta(unsigned char c)
{
	return c != '\0' && strchr("`$|&{}", c) != NULL;
}

/* Checks a dot-string local part: atoms separated by single dots. */
static const char *check_dot_string(const char *s, size_t len)
{
	if (len == 0)
		return "the local part is empty";
	if (s[0] == '.' || s[len - 1] == '.')
		return "the local part may not begin or end with a dot";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (s[i + 1] == '.')
				return "the local part may not have two dots in a row";
			continue;
		}
		if (c == '%' || c == '!')
			return "'%' and '!' routing is not accepted";
		if (is_shell_meta(c))
			return "shell metacharacters are not accepted in the local part";
		if (!is_atext(c))
			return "invalid character in the local part";
	}
	return NULL;
}

/* Checks a quoted-string local part (with its quotes) as RFC 5321 qtextSMTP / quoted-pairSMTP. */
static const char *check_quoted_string(const char *s, size_t len)
{
	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return "unterminated quoted string in the local part";
	for (size_t i = 1; i + 1 < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			i++;
			if (i + 1 >= len || (unsigned char)s[i] < 32 || (unsigned char)s[i] > 126)
				return "invalid quoted pair in the local part";
			continue;
		}
		if (c == '"')
			return "unterminated quoted string in the local part";
		if (c < 32 || c == 127)
			return "control characters are not accepted";
	}
	return NULL;
}

/* Checks a host name: LDH labels (U-labels with UTF-8), each 1..63 octets. */
static const char *check_domain_name(const char *s, size_t len)
{
	size_t label = 0;
	if (len == 0)
		return "the domain is empty";
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (label == 0)
				return "empty label in the domain";
			if (s[i - 1] == '-')
				return "a domain label may not end with '-'";
			label = 0;
			continue;
		}
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || c == '-' || c >= 0x80))
			return "invalid character in the domain";
		if (label == 0 && c == '-')
			return "a domain label may not begin with '-'";
		if (++label > SMTP_LABEL_MAX)
			return "a domain label is longer than 63 octets";
	}
	return NULL;
}

/* Checks an address literal "[...]": IPv4, "IPv6:...", or a General-address-literal. */
static const char *check_address_literal(const char *s, size_t len)
{
	char text[SMTP_DOMAIN_MAX + 1];
	if (len < 3 || s[len - 1] != ']')
		return "unterminated address literal";
	memcpy(text, s + 1, len - 2);
	text[len - 2] = '\0';
	unsigned char addr[16];
	if (strncasecmp(text, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, text + 5, addr) == 1 ? NULL : "invalid IPv6 address literal";
	if (isdigit((unsigned char)text[0]))
		return inet_pton(AF_INET, text, addr) == 1 ? NULL : "invalid IPv4 address literal";
	/* General-address-literal = Standardized-tag ":" 1*dcontent */
	char *colon = strchr(text, ':');
	if (colon == NULL || colon == text || colon[1] == '\0')
		return "invalid address literal";
	for (char *p = text; p < colon; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-'))
			return "invalid address literal";
	for (char *p = colon + 1; *p != '\0'; p++)
		if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == '[' || *p == ']' ||
		    *p == '\\')
			return "invalid address literal";
	return NULL;
}

/* True when the content of a quoted local part would also be a valid dot-string. */
static bool quoted_is_plain(const char *s, size_t len)
{
	for (size_t i = 1; i + 1 < len; i++)
		if (s[i] == '\\')
			return false;
	return len > 2 && check_dot_string(s + 1, len - 2) == NULL;
}

/* Parses one ESMTP parameter "KEYWORD[=value]" of len bytes into params[idx]. */
static const char *check_param(const char *s, size_t len, bool allow_utf8, size_t *key_len_r)
{
	size_t k = 0;
	while (k < len && s[k] != '=')
		k++;
	*key_len_r = k;
	if (k == 0)
		return "empty parameter keyword";
	if (!isalnum((unsigned char)s[0]))
		return "invalid parameter keyword";
	for (size_t i = 1; i < k; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '-'))
			return "invalid parameter keyword";
	if (k == len)
		return NULL;
	if (k + 1 == len)
		return "empty parameter value";
	if (len - k - 1 > SMTP_PARAM_VALUE_MAX)
		return "parameter value too long";
	for (size_t i = k + 1; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '=')
			return "'=' is not allowed in a parameter value";
		if (c >= 0x80 && !allow_utf8)
			return "non-ASCII parameter value requires SMTPUTF8";
		if (c < 33 || c == 127)
			return "control characters are not accepted";
	}
	if (allow_utf8 && !utf8_valid(s + k + 1, len - k - 1))
		return "invalid UTF-8 in a parameter value";
	return NULL;
}

/* Upper-cases a copy of n bytes. */
static char *upper_dup(const char *s, size_t n)
{
	char *p = xstrndup(s, n);
	for (char *q = p; *q != '\0'; q++)
		*q = (char)toupper((unsigned char)*q);
	return p;
}

/* Parses the mailbox between the brackets: local part, '@', domain. */
static const char *check_mailbox(const char *s, size_t len, size_t *at_r)
{
	size_t at;
	if (len > 0 && s[0] == '"') {
		/* Find the closing quote, honouring quoted pairs. */
		size_t i = 1;
		while (i < len && s[i] != '"') {
			if (s[i] == '\\')
				i++;
			i++;
		}
		if (i >= len)
			return "unterminated quoted string in the local part";
		at = i + 1;
		if (at >= len || s[at] != '@')
			return "the address has no '@' and domain";
		const char *why = check_quoted_string(s, at);
		if (why != NULL)
			return why;
	} else {
		const char *at_p = memchr(s, '@', len);
		if (at_p == NULL)
			return "the address has no '@' and domain";
		at = (size_t)(at_p - s);
		const char *why = check_dot_string(s, at);
		if (why != NULL)
			return why;
	}
	if (at > SMTP_LOCAL_MAX)
		return "the local part is longer than 64 octets";
	const char *domain = s + at + 1;
	size_t domain_len = len - at - 1;
	if (domain_len > SMTP_DOMAIN_MAX)
		return "the domain is longer than 255 octets";
	*at_r = at;
	if (domain_len > 0 && domain[0] == '[')
		return check_address_literal(domain, domain_len);
	return check_domain_name(domain, domain_len);
}

/* Parses text after "FROM:" / "TO:"; see smtp_path.h. */
int smtp_path_parse(const char *text, size_t len, unsigned flags, struct smtp_path *path_r,
		    const char **reason_r)
{
	const char *why = NULL;
	bool allow_utf8 = (flags & SMTP_PATH_ALLOW_UTF8) != 0;
	size_t i = 0;
	memset(path_r, 0, sizeof(*path_r));
	*reason_r = NULL;

	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)text[k];
		if (c == '\0' || c == '\r' || c == '\n' || (c < 32 && c != '\t') || c == 127) {
			*reason_r = "control characters are not accepted";
			return -1;
		}
	}
	if ((flags & SMTP_PATH_LENIENT_SPACE) != 0)
		while (i < len && (text[i] == ' ' || text[i] == '\t'))
			i++;
	if (i < len && (text[i] == ' ' || text[i] == '\t')) {
		*reason_r = "no space is allowed after the colon";
		return -1;
	}
	if (i == len || text[i] != '<') {
		*reason_r = "the address must be enclosed in <>";
		return -1;
	}
	const char *close = memchr(text + i, '>', len - i);
	/* A '>' inside a quoted local part does not close the path. */
	if (i + 1 < len && text[i + 1] == '"') {
		size_t k = i + 2;
		while (k < len && text[k] != '"') {
			if (text[k] == '\\')
				k++;
			k++;
		}
		close = k < len ? memchr(text + k, '>', len - k) : NULL;
	}
	if (close == NULL) {
		*reason_r = "the address must be enclosed in <>";
		return -1;
	}
	const char *inner = text + i + 1;
	size_t inner_len = (size_t)(close - inner);
	size_t after = (size_t)(close - text) + 1;
	if (inner_len + 2 > SMTP_PATH_MAX) {
		*reason_r = "the path is longer than 256 octets";
		return -1;
	}

	bool is_null = inner_len == 0;
	bool is_postmaster = inner_len == 10 && strncasecmp(inner, "postmaster", 10) == 0;
	size_t at = 0;
	if (is_null) {
		if ((flags & SMTP_PATH_ALLOW_NULL) == 0)
			why = "the null path <> is not allowed here";
	} else if (is_postmaster && (flags & SMTP_PATH_ALLOW_POSTMASTER) != 0) {
		at = inner_len;
	} else if (inner[0] == '@') {
		why = "source routes are not accepted";
	} else if (memchr(inner, '<', inner_len) != NULL) {
		why = "the address must be enclosed in <>";
	} else {
		why = check_mailbox(inner, inner_len, &at);
	}
	if (why == NULL) {
		bool utf8 = false;
		for (size_t k = 0; k < inner_len; k++)
			if ((unsigned char)inner[k] >= 0x80)
				utf8 = true;
		if (utf8 && !allow_utf8)
			why = "non-ASCII address requires SMTPUTF8";
		else if (utf8 && !utf8_valid(inner, inner_len))
			why = "invalid UTF-8 in the address";
		path_r->has_utf8 = utf8;
	}
	if (why != NULL) {
		*reason_r = why;
		return -1;
	}

	/* Parameters: SP-separated (runs of spaces tolerated). */
	struct { size_t off, len, key_len; } params[SMTP_PATH_MAX_PARAMS];
	size_t count = 0;
	if (after < len && text[after] != ' ') {
		*reason_r = "unexpected text after the address";
		return -1;
	}
	while (after < len) {
		while (after < len && text[after] == ' ')
			after++;
		if (after == len)
			break;
		size_t end = after;
		while (end < len && text[end] != ' ')
			end++;
		if (count == SMTP_PATH_MAX_PARAMS) {
			*reason_r = "too many parameters";
			return -1;
		}
		size_t key_len;
		why = check_param(text + after, end - after, allow_utf8, &key_len);
		if (why != NULL) {
			*reason_r = why;
			return -1;
		}
		for (size_t k = 0; k < count; k++)
			if (params[k].key_len == key_len &&
			    strncasecmp(text + params[k].off, text + after, key_len) == 0) {
				*reason_r = "duplicate parameter";
				return -1;
			}
		params[count].off = after;
		params[count].len = end - after;
		params[count].key_len = key_len;
		count++;
		after = end;
	}

	/* Everything checked: build the result. */
	path_r->is_null = is_null;
	if (is_null) {
		path_r->address = xstrdup("");
		path_r->local = xstrdup("");
		path_r->domain = xstrdup("");
	} else if (at == inner_len) {
		path_r->address = xstrndup(inner, inner_len);
		path_r->local = xstrndup(inner, inner_len);
		path_r->domain = xstrdup("");
	} else {
		bool unquote = inner[0] == '"' && quoted_is_plain(inner, at);
		path_r->local = unquote ? xstrndup(inner + 1, at - 2) : xstrndup(inner, at);
		path_r->domain = xstrndup(inner + at + 1, inner_len - at - 1);
		path_r->address = xasprintf("%s@%s", path_r->local, path_r->domain);
	}
	for (size_t k = 0; k < count; k++) {
		const char *p = text + params[k].off;
		path_r->params[k].keyword = upper_dup(p, params[k].key_len);
		path_r->params[k].value = params[k].key_len < params[k].len
						  ? xstrndup(p + params[k].key_len + 1,
							     params[k].len - params[k].key_len - 1)
						  : NULL;
	}
	path_r->param_count = count;
	return 0;
}

/* Frees what smtp_path_parse allocated and clears the struct. */
void smtp_path_free(struct smtp_path *path)
{
	free(path->address);
	free(path->local);
	free(path->domain);
	for (size_t i = 0; i < path->param_count; i++) {
		free(path->params[i].keyword);
		free(path->params[i].value);
	}
	memset(path, 0, sizeof(*path));
}

/* Looks a parameter up by keyword (case-insensitive). */
const char *smtp_path_param(const struct smtp_path *path, const char *keyword, bool *present_r)
{
	for (size_t i = 0; i < path->param_count; i++)
		if (strcasecmp(path->params[i].keyword, keyword) == 0) {
			if (present_r != NULL)
				*present_r = true;
			return path->params[i].value;
		}
	if (present_r != NULL)
		*present_r = false;
	return NULL;
}

/* Decodes xtext (RFC 3461 4): "+" and two upper-case hex digits stand for a byte. */
int xtext_decode(const char *text, char **out_r)
{
	buf_t b = BUF_INIT;
	static const char hex[] = "0123456789ABCDEF";
	*out_r = NULL;
	for (size_t i = 0; text[i] != '\0'; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '+') {
			const char *hi = text[i + 1] != '\0' ? strchr(hex, text[i + 1]) : NULL;
			const char *lo = hi != NULL && text[i + 2] != '\0' ? strchr(hex, text[i + 2]) : NULL;
			if (hi == NULL || lo == NULL) {
				buf_free(&b);
				return -1;
			}
			if (hi == hex && lo == hex) {
				buf_free(&b); /* NUL cannot travel in a C string */
				return -1;
			}
			buf_append_char(&b, (char)((hi - hex) << 4 | (lo - hex)));
			i += 2;
			continue;
		}
		if (c < 33 || c > 126 || c == '=') {
			buf_free(&b);
			return -1;
		}
		buf_append_char(&b, (char)c);
	}
	*out_r = buf_steal(&b);
	return 0;
}

/* Encodes text as xtext (caller frees). */
char *xtext_encode(const char *text)
{
	buf_t b = BUF_INIT;
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
			buf_printf(&b, "+%02X", *p);
		else
			buf_append_char(&b, (char)*p);
	}
	return buf_steal(&b);
}
