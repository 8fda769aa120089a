/* imap_parser.c: the resumable IMAP command parser (see imap_parser.h).
 *
 * States (one variable, p->state; every change goes through parser_enter):
 *
 *   BETWEEN --atom char--> ATOM --'['--> BRACKET --'"'--> BRACKET_QUOTED
 *      |  \--'"'--> QUOTED --'\\'--> QUOTED_ESCAPE                   (and back)
 *      |  \--'{'--> LITERAL_SIZE --'}'--> LITERAL_EOL --LF--> [LITERAL returned]
 *      |                                                       --> LITERAL_DATA
 *      \--CR--> CR --LF--> DONE        any state --bad byte or limit--> ERROR
 *
 * Invariants: `stack[0..depth]` are the open lists, stack[0] the top level; the
 * token being read is in `token` until it is complete; `command_bytes` counts
 * every byte outside literal data and never passes max_command. A list's
 * children array only grows while it is the innermost open list, so the
 * pointers in `stack` stay valid. */
#include "imap_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"

#define IMAP_LITERAL_SIZE_MAX_DIGITS 19

enum parser_state {
	PS_BETWEEN,
	PS_ATOM,
	PS_BRACKET,
	PS_BRACKET_QUOTED,
	PS_BRACKET_QUOTED_ESCAPE,
	PS_QUOTED,
	PS_QUOTED_ESCAPE,
	PS_LITERAL_SIZE,
	PS_LITERAL_EOL,
	PS_LITERAL_LF,
	PS_LITERAL_DECIDE,
	PS_LITERAL_DATA,
	PS_CR,
	PS_DONE,
	PS_ERROR,
};

struct imap_parser {
	struct imap_parser_limits limits;
	enum parser_state state;
	struct imap_arg root;
	struct imap_arg **stack;
	unsigned depth;
	size_t arg_count;
	size_t command_bytes;
	bool need_separator;     /* a token just ended: SP, ')' or the line end must follow */
	bool responses;          /* reading server responses: "((a)(b) x)" lists may touch */
	buf_t token;
	uint64_t literal_size;
	uint64_t literal_left;
	bool literal_sync;
	bool literal_plus_seen;
	unsigned literal_digits;
	enum imap_parse_error error_code;
	char *error;
};

/* Moves the parser to a new state (a single place, so a trace could go here). */
static void parser_enter(imap_parser *p, enum parser_state state)
{
	p->state = state;
}

/* Records an error and enters ERROR; returns IMAP_PARSE_ERROR. */
static enum imap_parse_result parser_fail(imap_parser *p, enum imap_parse_error code,
					  const char *msg)
{
	p->error_code = code;
	free(p->error);
	p->error = xstrdup(msg);
	parser_enter(p, PS_ERROR);
	return IMAP_PARSE_ERROR;
}

/* Frees an argument's contents (recursively for lists). */
static void arg_clear(struct imap_arg *a)
{
	for (size_t i = 0; i < a->count; i++)
		arg_clear(&a->children[i]);
	free(a->children);
	free(a->data);
	memset(a, 0, sizeof(*a));
}

imap_parser *imap_parser_new(const struct imap_parser_limits *limits)
{
	imap_parser *p = xcalloc(1, sizeof(*p));
	if (limits != NULL) {
		p->limits = *limits;
	} else {
		p->limits.max_command = IMAP_PARSER_DEFAULT_MAX_COMMAND;
		p->limits.max_literal = IMAP_PARSER_DEFAULT_MAX_LITERAL_BUFFERED;
		p->limits.max_literal_buffered = IMAP_PARSER_DEFAULT_MAX_LITERAL_BUFFERED;
		p->limits.max_depth = IMAP_PARSER_DEFAULT_MAX_DEPTH;
		p->limits.max_args = IMAP_PARSER_DEFAULT_MAX_ARGS;
	}
	if (p->limits.max_depth == 0)
		p->limits.max_depth = 1;
	p->stack = xcalloc(p->limits.max_depth + 1, sizeof(*p->stack));
	buf_init(&p->token);
	imap_parser_reset(p);
	return p;
}

void imap_parser_free(imap_parser **pp)
{
	imap_parser *p = *pp;
	if (p == NULL)
		return;
	arg_clear(&p->root);
	buf_free(&p->token);
	free(p->stack);
	free(p->error);
	free(p);
	*pp = NULL;
}

void imap_parser_reset(imap_parser *p)
{
	arg_clear(&p->root);
	p->root.type = IMAP_ARG_LIST;
	p->stack[0] = &p->root;
	p->depth = 0;
	p->arg_count = 0;
	p->command_bytes = 0;
	p->need_separator = false;
	buf_reset(&p->token);
	p->literal_size = p->literal_left = 0;
	p->literal_sync = true;
	p->literal_plus_seen = false;
	p->literal_digits = 0;
	p->error_code = IMAP_PERR_NONE;
	free(p->error);
	p->error = NULL;
	parser_enter(p, PS_BETWEEN);
}

/* Adds an empty argument of the given type to the innermost open list. */
static struct imap_arg *parser_add_arg(imap_parser *p, enum imap_arg_type type)
{
	struct imap_arg *list = p->stack[p->depth];
	if (list->count == list->cap) {
		list->cap = list->cap == 0 ? 8 : list->cap * 2;
		list->children = xrealloc(list->children, list->cap * sizeof(*list->children));
	}
	struct imap_arg *a = &list->children[list->count++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	p->arg_count++;
	return a;
}

/* Ends the token in p->token as an argument of the given type. */
static void parser_finish_token(imap_parser *p, enum imap_arg_type type)
{
	struct imap_arg *a = parser_add_arg(p, type);
	a->len = p->token.len;
	a->data = xmalloc(a->len + 1);
	if (a->len > 0)
		memcpy(a->data, p->token.data, a->len);
	a->data[a->len] = '\0';
	buf_reset(&p->token);
	p->need_separator = true;
}

/* True for bytes allowed in an atom (outside brackets). Wildcards, '\' and ']'
 * are allowed because LIST patterns, flags and sequence sets use them. */
static bool is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return c != '(' && c != ')' && c != '{' && c != '"';
}

/* Checks the argument-count limit before a new argument starts. */
static bool parser_room_for_arg(imap_parser *p)
{
	return p->arg_count < p->limits.max_args;
}

/* Handles one byte between tokens. Returns IMAP_PARSE_MORE to go on. */
static enum imap_parse_result parser_between(imap_parser *p, unsigned char c)
{
	switch (c) {
	case ' ':
		p->need_separator = false;
		return IMAP_PARSE_MORE;
	case '\r':
		parser_enter(p, PS_CR);
		return IMAP_PARSE_MORE;
	case '\n':
		if (p->depth > 0)
			return parser_fail(p, IMAP_PERR_SYNTAX, "Unclosed list");
		parser_enter(p, PS_DONE);
		return IMAP_PARSE_DONE;
	case ')':
		if (p->depth == 0)
			return parser_fail(p, IMAP_PERR_SYNTAX, "Unexpected ')'");
		p->depth--;
		p->need_separator = true;
		return IMAP_PARSE_MORE;
	default:
		break;
	}
	/* RFC 3501 body-type-mpart: "1*body SP media-subtype", bodies unseparated. */
	if (p->need_separator && !(p->responses && c == '('))
		return parser_fail(p, IMAP_PERR_SYNTAX, "Missing space between arguments");
	if (!parser_room_for_arg(p))
		return parser_fail(p, IMAP_PERR_TOOMANY, "Too many arguments");
	switch (c) {
	case '(':
		if (p->depth >= p->limits.max_depth)
			return parser_fail(p, IMAP_PERR_TOODEEP, "Lists nested too deeply");
		struct imap_arg *list = parser_add_arg(p, IMAP_ARG_LIST);
		p->stack[++p->depth] = list;
		p->need_separator = false;
		return IMAP_PARSE_MORE;
	case '"':
		parser_enter(p, PS_QUOTED);
		return IMAP_PARSE_MORE;
	case '{':
		p->literal_size = 0;
		p->literal_digits = 0;
		p->literal_plus_seen = false;
		parser_enter(p, PS_LITERAL_SIZE);
		return IMAP_PARSE_MORE;
	case '[':
		buf_append_char(&p->token, (char)c);
		parser_enter(p, PS_BRACKET);
		return IMAP_PARSE_MORE;
	default:
		if (!is_atom_char(c))
			return parser_fail(p, IMAP_PERR_SYNTAX,
					   c == 0 ? "NUL byte in command" : "Invalid character in atom");
		buf_append_char(&p->token, (char)c);
		parser_enter(p, PS_ATOM);
		return IMAP_PARSE_MORE;
	}
}

/* Handles one byte of an atom; a byte that ends it is handled again between tokens. */
static enum imap_parse_result parser_atom(imap_parser *p, unsigned char c, bool *reprocess_r)
{
	if (c == '[') {
		buf_append_char(&p->token, (char)c);
		parser_enter(p, PS_BRACKET);
		return IMAP_PARSE_MORE;
	}
	if (is_atom_char(c)) {
		buf_append_char(&p->token, (char)c);
		return IMAP_PARSE_MORE;
	}
	if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
		parser_finish_token(p, IMAP_ARG_ATOM);
		parser_enter(p, PS_BETWEEN);
		*reprocess_r = true;
		return IMAP_PARSE_MORE;
	}
	return parser_fail(p, IMAP_PERR_SYNTAX,
			   c == 0 ? "NUL byte in command" : "Invalid character in atom");
}

/* Handles one byte inside an atom's [...] part (spaces and lists allowed). */
static enum imap_parse_result parser_bracket(imap_parser *p, unsigned char c)
{
	if (c == 0 || c == '\r' || c == '\n' || c == '[')
		return parser_fail(p, IMAP_PERR_SYNTAX, "Unterminated '[' in atom");
	buf_append_char(&p->token, (char)c);
	if (c == ']')
		parser_enter(p, PS_ATOM);
	else if (c == '"')
		parser_enter(p, PS_BRACKET_QUOTED);
	return IMAP_PARSE_MORE;
}

/* Handles one byte of a quoted string inside brackets (kept as written). */
static enum imap_parse_result parser_bracket_quoted(imap_parser *p, unsigned char c)
{
	if (c == 0 || c == '\r' || c == '\n')
		return parser_fail(p, IMAP_PERR_SYNTAX, "Unterminated quoted string");
	buf_append_char(&p->token, (char)c);
	if (p->state == PS_BRACKET_QUOTED_ESCAPE)
		parser_enter(p, PS_BRACKET_QUOTED);
	else if (c == '\\')
		parser_enter(p, PS_BRACKET_QUOTED_ESCAPE);
	else if (c == '"')
		parser_enter(p, PS_BRACKET);
	return IMAP_PARSE_MORE;
}

/* Handles one byte of a quoted string (RFC 3501: only \" and \\ are escapes). */
static enum imap_parse_result parser_quoted(imap_parser *p, unsigned char c)
{
	if (c == 0)
		return parser_fail(p, IMAP_PERR_SYNTAX, "NUL byte in quoted string");
	if (c == '\r' || c == '\n')
		return parser_fail(p, IMAP_PERR_SYNTAX, "Line end in quoted string");
	if (p->state == PS_QUOTED_ESCAPE) {
		if (c != '"' && c != '\\')
			return parser_fail(p, IMAP_PERR_SYNTAX, "Invalid escape in quoted string");
		buf_append_char(&p->token, (char)c);
		parser_enter(p, PS_QUOTED);
		return IMAP_PARSE_MORE;
	}
	if (c == '\\') {
		parser_enter(p, PS_QUOTED_ESCAPE);
	} else if (c == '"') {
		parser_finish_token(p, IMAP_ARG_QUOTED);
		parser_enter(p, PS_BETWEEN);
	} else {
		buf_append_char(&p->token, (char)c);
	}
	return IMAP_PARSE_MORE;
}

/* Handles one byte of a literal header "{123+}" and its line end. */
static enum imap_parse_result parser_literal_header(imap_parser *p, unsigned char c)
{
	switch (p->state) {
	case PS_LITERAL_SIZE:
		if (c >= '0' && c <= '9' && !p->literal_plus_seen) {
			if (p->literal_digits >= IMAP_LITERAL_SIZE_MAX_DIGITS)
				return parser_fail(p, IMAP_PERR_TOOBIG, "Literal size too large");
			p->literal_size = p->literal_size * 10 + (uint64_t)(c - '0');
			p->literal_digits++;
			return IMAP_PARSE_MORE;
		}
		if (c == '+' && p->literal_digits > 0 && !p->literal_plus_seen) {
			p->literal_plus_seen = true;
			return IMAP_PARSE_MORE;
		}
		if (c == '}' && p->literal_digits > 0) {
			parser_enter(p, PS_LITERAL_EOL);
			return IMAP_PARSE_MORE;
		}
		return parser_fail(p, IMAP_PERR_SYNTAX, "Invalid literal size");
	case PS_LITERAL_EOL:
		if (c == '\r') {
			parser_enter(p, PS_LITERAL_LF);
			return IMAP_PARSE_MORE;
		}
		/* fall through */
	case PS_LITERAL_LF:
		if (c != '\n')
			return parser_fail(p, IMAP_PERR_SYNTAX, "Literal header not at end of line");
		p->literal_sync = !p->literal_plus_seen;
		p->literal_left = p->literal_size;
		if (p->literal_size > p->limits.max_literal)
			return parser_fail(p, IMAP_PERR_TOOBIG, "Literal too large");
		parser_enter(p, PS_LITERAL_DECIDE);
		return IMAP_PARSE_LITERAL;
	default:
		return parser_fail(p, IMAP_PERR_SYNTAX, "Internal parser state");
	}
}

int imap_parser_literal_accept(imap_parser *p)
{
	if (p->state != PS_LITERAL_DECIDE)
		return p->state == PS_LITERAL_DATA ? 0 : -1;
	if (p->literal_size > p->limits.max_literal_buffered) {
		parser_fail(p, IMAP_PERR_TOOBIG, "Literal too large");
		return -1;
	}
	buf_reset(&p->token);
	buf_reserve(&p->token, (size_t)p->literal_size);
	parser_enter(p, PS_LITERAL_DATA);
	if (p->literal_size == 0) {
		parser_finish_token(p, IMAP_ARG_LITERAL);
		parser_enter(p, PS_BETWEEN);
	}
	return 0;
}

void imap_parser_literal_external(imap_parser *p)
{
	if (p->state != PS_LITERAL_DECIDE)
		return;
	struct imap_arg *a = parser_add_arg(p, IMAP_ARG_LITERAL_EXTERNAL);
	a->len = (size_t)p->literal_size;
	p->need_separator = true;
	parser_enter(p, PS_BETWEEN);
}

/* Takes literal data from the input; returns the bytes used. */
static size_t parser_literal_data(imap_parser *p, const char *data, size_t len)
{
	size_t take = len < p->literal_left ? len : (size_t)p->literal_left;
	buf_append(&p->token, data, take);
	p->literal_left -= take;
	if (p->literal_left == 0) {
		parser_finish_token(p, IMAP_ARG_LITERAL);
		parser_enter(p, PS_BETWEEN);
	}
	return take;
}

enum imap_parse_result imap_parser_feed(imap_parser *p, const char *data, size_t len,
					size_t *consumed_r)
{
	size_t i = 0;
	enum imap_parse_result result = IMAP_PARSE_MORE;
	*consumed_r = 0;
	if (p->state == PS_DONE)
		return IMAP_PARSE_DONE;
	if (p->state == PS_ERROR)
		return IMAP_PARSE_ERROR;
	while (i < len) {
		if (p->state == PS_LITERAL_DECIDE && imap_parser_literal_accept(p) < 0) {
			result = IMAP_PARSE_ERROR;
			break;
		}
		if (p->state == PS_LITERAL_DATA) {
			i += parser_literal_data(p, data + i, len - i);
			continue;
		}
		if (p->command_bytes >= p->limits.max_command) {
			result = parser_fail(p, IMAP_PERR_TOOLONG, "Command line too long");
			break;
		}
		unsigned char c = (unsigned char)data[i];
		bool reprocess = false;
		switch (p->state) {
		case PS_BETWEEN:
			result = parser_between(p, c);
			break;
		case PS_ATOM:
			result = parser_atom(p, c, &reprocess);
			break;
		case PS_BRACKET:
			result = parser_bracket(p, c);
			break;
		case PS_BRACKET_QUOTED:
		case PS_BRACKET_QUOTED_ESCAPE:
			result = parser_bracket_quoted(p, c);
			break;
		case PS_QUOTED:
		case PS_QUOTED_ESCAPE:
			result = parser_quoted(p, c);
			break;
		case PS_LITERAL_SIZE:
		case PS_LITERAL_EOL:
		case PS_LITERAL_LF:
			result = parser_literal_header(p, c);
			break;
		case PS_CR:
			if (c != '\n') {
				result = parser_fail(p, IMAP_PERR_SYNTAX, "CR not followed by LF");
				break;
			}
			if (p->depth > 0) {
				result = parser_fail(p, IMAP_PERR_SYNTAX, "Unclosed list");
				break;
			}
			parser_enter(p, PS_DONE);
			result = IMAP_PARSE_DONE;
			break;
		default:
			result = parser_fail(p, IMAP_PERR_SYNTAX, "Internal parser state");
			break;
		}
		if (reprocess)
			continue; /* the byte that ended an atom is read again between tokens */
		p->command_bytes++;
		i++;
		if (result != IMAP_PARSE_MORE)
			break;
	}
	*consumed_r = i;
	return result;
}

uint64_t imap_parser_literal_size(const imap_parser *p)
{
	return p->literal_size;
}

bool imap_parser_literal_sync(const imap_parser *p)
{
	return p->literal_sync;
}

unsigned imap_parser_depth(const imap_parser *p)
{
	return p->depth;
}

const struct imap_arg *imap_parser_args(const imap_parser *p, size_t *count_r)
{
	*count_r = p->root.count;
	return p->root.children;
}

const char *imap_parser_tag(const imap_parser *p)
{
	if (p->root.count == 0 || p->root.children[0].type != IMAP_ARG_ATOM)
		return NULL;
	const char *tag = p->root.children[0].data;
	/* RFC 3501 tag: ASTRING-CHARs except '+'; no brackets or wildcards. */
	for (const char *s = tag; *s != '\0'; s++) {
		if (*s == '+' || *s == '[' || *s == '*' || *s == '%' || *s == '\\')
			return NULL;
	}
	return tag;
}

const char *imap_parser_error(const imap_parser *p)
{
	return p->error != NULL ? p->error : "";
}

enum imap_parse_error imap_parser_error_code(const imap_parser *p)
{
	return p->error_code;
}

const char *imap_arg_string(const struct imap_arg *a)
{
	if (a == NULL || a->type == IMAP_ARG_LIST || a->type == IMAP_ARG_LITERAL_EXTERNAL)
		return NULL;
	return a->data;
}

bool imap_arg_atom_is(const struct imap_arg *a, const char *name)
{
	return a != NULL && a->type == IMAP_ARG_ATOM && strcasecmp(a->data, name) == 0;
}

bool imap_arg_is_nil(const struct imap_arg *a)
{
	return imap_arg_atom_is(a, "NIL");
}

bool imap_arg_string_clean(const struct imap_arg *a)
{
	const char *s = imap_arg_string(a);
	return s != NULL && strlen(s) == a->len;
}

/* Longest string sent quoted rather than as a literal. */
#define IMAP_QUOTED_MAX 1024

void imap_append_string(struct buf *out, const char *s, size_t len)
{
	if (s == NULL) {
		buf_append_str(out, "NIL");
		return;
	}
	bool literal = len > IMAP_QUOTED_MAX;
	for (size_t i = 0; i < len && !literal; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c == '\r' || c == '\n' || c >= 0x80)
			literal = true;
	}
	if (literal) {
		buf_printf(out, "{%zu}\r\n", len);
		buf_append(out, s, len);
		return;
	}
	buf_append_char(out, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_append_char(out, '\\');
		buf_append_char(out, s[i]);
	}
	buf_append_char(out, '"');
}

void imap_append_nstring(struct buf *out, const char *s)
{
	if (s == NULL)
		s = "";
	imap_append_string(out, s, strlen(s));
}

/* Reads server responses: a list may follow a list without a space. */
void imap_parser_set_responses(imap_parser *p, bool responses)
{
	p->responses = responses;
}
