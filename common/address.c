/* address.c: RFC 5322 3.4 address lists, with the obsolete forms of 4.4.
 *
 * Two passes. The lexer turns the value into tokens (atoms, quoted strings,
 * comments, domain literals, and the specials < > @ , ; : .), each knowing
 * where it sits in the input and whether blanks came before it. The parser
 * then walks the tokens one address at a time:
 *
 *   LIST --phrase ':'--> GROUP (members until ';') --> LIST
 *   LIST --[phrase] '<' [route ':'] addr-spec '>'--> one mailbox
 *   LIST --addr-spec [comment]--> one mailbox (the comment is the old-style name)
 *
 * Whatever does not fit is kept: an address without '@' keeps its local part
 * and a NULL domain (as IMAP ENVELOPE shows it), and a piece that makes no
 * sense at all becomes an item whose local part is the raw text. Limits:
 * ADDRESS_MAX_ITEMS addresses per list; tokens are bounded by the input. */
#include "address.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "header.h"
#include "smtp_path.h"

#define ADDRESS_MAX_ITEMS 10000

enum token_kind {
	TOK_ATOM,
	TOK_QUOTED,
	TOK_COMMENT,
	TOK_DLITERAL,
	TOK_SPECIAL, /* one of < > @ , ; : . */
	TOK_OTHER,   /* a character that belongs nowhere */
};

struct token {
	enum token_kind kind;
	char special;
	size_t start, end; /* in the input, quotes and parentheses included */
	bool blank_before;
};

struct token_list {
	struct token *items;
	size_t count, cap;
};

/* RFC 5322 atext (any non-ASCII byte counts, RFC 6532). */
static bool is_atext(unsigned char c)
{
	return isalnum(c) || c >= 0x80 || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Appends a token. */
static void token_add(struct token_list *l, enum token_kind kind, char special, size_t start,
		      size_t end, bool blank)
{
	if (l->count == l->cap) {
		l->cap = l->cap == 0 ? 16 : l->cap * 2;
		l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
	}
	l->items[l->count++] = (struct token){kind, special, start, end, blank};
}

/* Skips a delimited run (quoted string, comment, literal) from s[i], honouring
 * backslash pairs and, for comments, nesting; the index after it. */
static size_t skip_delimited(const char *s, size_t len, size_t i, char open, char close)
{
	int depth = 0;
	for (; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len) {
			i++;
			continue;
		}
		if (s[i] == open && (open != close || depth == 0)) {
			depth++;
			continue;
		}
		if (s[i] == close && --depth == 0)
			return i + 1;
	}
	return len;
}

/* Splits the value into tokens. */
static void address_lex(const char *s, size_t len, struct token_list *l)
{
	size_t i = 0;
	bool blank = false;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t start = i;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			blank = true;
			i++;
			continue;
		}
		if (c == '"') {
			i = skip_delimited(s, len, i, '"', '"');
			token_add(l, TOK_QUOTED, 0, start, i, blank);
		} else if (c == '(') {
			i = skip_delimited(s, len, i, '(', ')');
			token_add(l, TOK_COMMENT, 0, start, i, blank);
		} else if (c == '[') {
			i = skip_delimited(s, len, i, '[', ']');
			token_add(l, TOK_DLITERAL, 0, start, i, blank);
		} else if (strchr("<>@,;:.", c) != NULL && c != '\0') {
			i++;
			token_add(l, TOK_SPECIAL, (char)c, start, i, blank);
		} else if (is_atext(c)) {
			while (i < len && is_atext((unsigned char)s[i]))
				i++;
			token_add(l, TOK_ATOM, 0, start, i, blank);
		} else {
			i++;
			token_add(l, TOK_OTHER, (char)c, start, i, blank);
		}
		blank = false;
	}
}

/* Appends a token's text: quoted strings and comments without their delimiters
 * and with quoted pairs resolved. */
static void token_text_into(const char *s, const struct token *t, buf_t *b)
{
	size_t start = t->start, end = t->end;
	if (t->kind == TOK_QUOTED || t->kind == TOK_COMMENT) {
		char close = t->kind == TOK_QUOTED ? '"' : ')';
		for (size_t i = start + 1; i < end; i++) {
			if (s[i] == '\\' && i + 1 < end)
				i++;
			else if (i == end - 1 && s[i] == close)
				break; /* the closing delimiter (absent when unterminated) */
			if (s[i] == '\r' || s[i] == '\n')
				continue;
			buf_append_char(b, s[i]);
		}
		return;
	}
	buf_append(b, s + t->start, t->end - t->start);
}

/* Joins tokens [from, to) as a phrase: words separated by one space where the
 * input had blanks, comments left out. NULL when there is nothing. */
static char *phrase_join(const char *s, const struct token *t, size_t from, size_t to)
{
	buf_t b = BUF_INIT;
	bool first = true;
	for (size_t i = from; i < to; i++) {
		if (t[i].kind == TOK_COMMENT)
			continue;
		if (!first && (t[i].blank_before || (i > 0 && t[i - 1].kind == TOK_COMMENT)))
			buf_append_char(&b, ' ');
		token_text_into(s, &t[i], &b);
		first = false;
	}
	if (b.len == 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* Joins tokens [from, to) without blanks (local parts and domains), comments left out. */
static char *tight_join(const char *s, const struct token *t, size_t from, size_t to)
{
	buf_t b = BUF_INIT;
	for (size_t i = from; i < to; i++)
		if (t[i].kind != TOK_COMMENT)
			token_text_into(s, &t[i], &b);
	if (b.len == 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* True when token i is the special character c. */
static bool is_special(const struct token *t, size_t i, char c)
{
	return t[i].kind == TOK_SPECIAL && t[i].special == c;
}

/* Fills a from an addr-spec in tokens [from, to): local "@" domain. */
static bool parse_addr_spec(const char *s, const struct token *t, size_t from, size_t to,
			    struct mail_address *a)
{
	size_t at = to;
	for (size_t i = from; i < to; i++) {
		if (is_special(t, i, '@'))
			at = i; /* the last '@' splits, as "a@b"@c would need quotes */
		else if (t[i].kind == TOK_OTHER ||
			 (t[i].kind == TOK_SPECIAL && t[i].special != '.'))
			return false;
	}
	for (size_t i = from; i < at; i++)
		if (t[i].kind == TOK_DLITERAL)
			return false;
	a->local = tight_join(s, t, from, at);
	a->domain = at < to ? tight_join(s, t, at + 1, to) : NULL;
	if (a->local == NULL && a->domain == NULL)
		return false;
	if (a->local == NULL)
		a->local = xstrdup("");
	return true;
}

/* Sets the display name from a raw phrase: name_raw as written, name decoded. */
static void set_name(struct mail_address *a, char *raw)
{
	a->name_raw = raw;
	a->name = raw != NULL ? header_decode_words(raw) : NULL;
}

/* Parses one mailbox from tokens [from, to) into a; false if it makes no sense. */
static bool parse_mailbox(const char *s, const struct token *t, size_t from, size_t to,
			  struct mail_address *a)
{
	size_t lt = to;
	for (size_t i = from; i < to; i++)
		if (is_special(t, i, '<')) {
			lt = i;
			break;
		}
	if (lt < to) {
		size_t gt = lt + 1;
		while (gt < to && !is_special(t, gt, '>'))
			gt++;
		/* Only comments may follow the '>'. */
		for (size_t i = gt + 1; i < to; i++)
			if (t[i].kind != TOK_COMMENT)
				return false;
		size_t inner = lt + 1;
		/* obs-route: "@a,@b:" before the addr-spec is skipped. */
		if (inner < gt && is_special(t, inner, '@')) {
			size_t colon = inner;
			while (colon < gt && !is_special(t, colon, ':'))
				colon++;
			if (colon == gt)
				return false;
			inner = colon + 1;
		}
		if (inner == gt) {
			/* "<>" (a null return path): an empty address. */
			a->local = xstrdup("");
		} else if (!parse_addr_spec(s, t, inner, gt, a)) {
			return false;
		}
		set_name(a, phrase_join(s, t, from, lt));
		return true;
	}
	if (!parse_addr_spec(s, t, from, to, a))
		return false;
	/* "addr (Name)": a trailing comment is the name, as readers show it. */
	for (size_t i = to; i > from && t[i - 1].kind == TOK_COMMENT; i--) {
		buf_t b = BUF_INIT;
		token_text_into(s, &t[i - 1], &b);
		if (b.len > 0) {
			set_name(a, buf_steal(&b));
			break;
		}
		buf_free(&b);
	}
	return true;
}

/* Adds an item to the list (within ADDRESS_MAX_ITEMS); the new item or NULL. */
static struct mail_address *list_add(struct address_list *l, size_t *cap)
{
	if (l->count == ADDRESS_MAX_ITEMS)
		return NULL;
	if (l->count == *cap) {
		*cap = *cap == 0 ? 4 : *cap * 2;
		l->items = xrealloc(l->items, *cap * sizeof(*l->items));
	}
	struct mail_address *a = &l->items[l->count++];
	memset(a, 0, sizeof(*a));
	return a;
}

/* Frees one item's strings. */
static void mail_address_clear(struct mail_address *a)
{
	free(a->name);
	free(a->name_raw);
	free(a->local);
	free(a->domain);
	free(a->group);
	memset(a, 0, sizeof(*a));
}

/* Closes a group (at its ';' or at the end of the text): marks its last
 * member, or adds a marker item for an empty group, which takes the name
 * over; *group_name is freed and set NULL either way. */
static void group_close(struct address_list *list, size_t *cap, size_t group_first,
			char **group_name)
{
	if (list->count == group_first) {
		struct mail_address *a = list_add(list, cap);
		if (a != NULL) {
			a->group = *group_name;
			a->group_start = true;
			*group_name = NULL;
		}
	}
	if (list->count > group_first)
		list->items[list->count - 1].group_end = true;
	free(*group_name);
	*group_name = NULL;
}

/* Parses an address list; see address.h. */
int address_list_parse(const char *text, size_t len, struct address_list *list_r)
{
	struct token_list tl = {NULL, 0, 0};
	size_t cap = 0;
	memset(list_r, 0, sizeof(*list_r));
	address_lex(text, len, &tl);
	const struct token *t = tl.items;
	size_t n = tl.count;
	bool in_group = false;
	size_t group_first = 0; /* index in list_r of the group's first item */
	char *group_name = NULL;
	bool any_content = false;
	size_t i = 0;
	while (i < n) {
		if (t[i].kind != TOK_COMMENT)
			any_content = true;
		if (is_special(t, i, ',') || t[i].kind == TOK_COMMENT) {
			i++;
			continue;
		}
		if (is_special(t, i, ';')) {
			i++;
			if (!in_group)
				continue;
			group_close(list_r, &cap, group_first, &group_name);
			in_group = false;
			continue;
		}
		/* The extent of one address: up to a ',' (or ';' in a group) outside <>. */
		size_t end = i;
		bool in_angle = false;
		size_t colon = n;
		bool before_addr = true;
		for (; end < n; end++) {
			if (is_special(t, end, '<')) {
				in_angle = true;
				before_addr = false;
			} else if (is_special(t, end, '>')) {
				in_angle = false;
			} else if (is_special(t, end, '@') && !in_angle) {
				before_addr = false;
			} else if (is_special(t, end, ':') && before_addr && !in_angle && colon == n &&
				   !in_group) {
				colon = end;
			}
			if (!in_angle && (is_special(t, end, ',') || is_special(t, end, ';')))
				break;
			if (colon < n)
				break;
		}
		if (colon < n) {
			/* A group starts: "name:". */
			in_group = true;
			group_first = list_r->count;
			free(group_name);
			group_name = phrase_join(text, t, i, colon);
			if (group_name == NULL)
				group_name = xstrdup("");
			i = colon + 1;
			continue;
		}
		struct mail_address *a = list_add(list_r, &cap);
		if (a == NULL)
			break;
		if (!parse_mailbox(text, t, i, end, a)) {
			/* Keep what we could not understand as raw text. */
			mail_address_clear(a);
			size_t from = t[i].start, to = t[end - 1].end;
			while (from < to && (text[from] == ' ' || text[from] == '\t'))
				from++;
			a->local = xstrndup(text + from, to - from);
		}
		if (in_group && list_r->count - 1 == group_first) {
			a->group = group_name;
			a->group_start = true;
			group_name = NULL;
		}
		i = end;
	}
	if (in_group) /* a group without its ';': close it at the end */
		group_close(list_r, &cap, group_first, &group_name);
	free(group_name);
	free(tl.items);
	if (list_r->count == 0 && any_content)
		return -1;
	return 0;
}

/* Frees every item and clears the list. */
void address_list_free(struct address_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		mail_address_clear(&list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* True when a local part can be written without quotes (a dot-atom). */
static bool local_is_dot_atom(const char *s)
{
	if (*s == '\0' || *s == '.')
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
			return false;
		if (*p != '.' && !is_atext((unsigned char)*p))
			return false;
	}
	return true;
}

/* Appends s as a quoted string. */
static void append_quoted(buf_t *b, const char *s)
{
	buf_append_char(b, '"');
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			continue;
		if (*s == '"' || *s == '\\')
			buf_append_char(b, '\\');
		buf_append_char(b, *s);
	}
	buf_append_char(b, '"');
}

/* "local@domain", quoting the local part when it is not a dot-atom. */
char *mail_address_spec(const struct mail_address *a)
{
	buf_t b = BUF_INIT;
	if (a->local != NULL) {
		if (local_is_dot_atom(a->local) || a->domain == NULL)
			buf_append_str(&b, a->local);
		else
			append_quoted(&b, a->local);
	}
	if (a->domain != NULL) {
		buf_append_char(&b, '@');
		buf_append_str(&b, a->domain);
	}
	return buf_steal(&b);
}

/* Formats "Name <addr>" for a header field. */
char *mail_address_format(const char *name, const char *addr_spec)
{
	buf_t b = BUF_INIT;
	bool ascii = true, special = false;
	if (name == NULL || name[0] == '\0')
		return xstrdup(addr_spec);
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		if (*p >= 0x80 || *p < 32 || *p == 127)
			ascii = false;
		else if (!is_atext(*p) && *p != ' ')
			special = true;
	}
	if (!ascii || strstr(name, "=?") != NULL) {
		/* Encoded words with no folding inside the name: one line of words
		 * separated by blanks, each within RFC 2047's 75 characters. */
		char *words = header_encode_words(name, 0);
		for (char *p = words; *p != '\0'; p++)
			if (*p == '\r' || *p == '\n')
				continue;
			else
				buf_append_char(&b, *p);
		free(words);
	} else if (special || name[0] == ' ' || name[strlen(name) - 1] == ' ') {
		append_quoted(&b, name);
	} else {
		buf_append_str(&b, name);
	}
	buf_printf(&b, " <%s>", addr_spec);
	return buf_steal(&b);
}

/* Checks "local@domain" with the SMTP grammar (RFC 5321 4.1.2). */
bool address_spec_valid(const char *spec)
{
	struct smtp_path path;
	const char *why;
	size_t len = strlen(spec);
	if (len == 0 || len > 254 || spec[0] == '<')
		return false;
	char *bracketed = xasprintf("<%s>", spec);
	int r = smtp_path_parse(bracketed, len + 2, SMTP_PATH_ALLOW_UTF8, &path, &why);
	free(bracketed);
	if (r < 0)
		return false;
	smtp_path_free(&path);
	return true;
}
