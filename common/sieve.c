/* sieve.c: the Sieve parser and checker (RFC 5228 section 8 grammar).
 *
 * Two layers. The lexer turns the text into tokens (identifiers, :tags,
 * numbers with K/M/G, quoted and multi-line strings, punctuation), skipping
 * whitespace and both comment forms, and remembers where each token starts.
 * The parser reads the generic shape `identifier *argument [test/test-list]
 * (";" / block)`, collects the plain arguments, and hands them to the
 * builder named in the command or test table, which checks tags, argument
 * count and types, and required extensions, and fills the typed node.
 *
 * Errors: the first error wins; it is formatted once with its line and
 * column, and every caller just returns -1 until the top, which frees what
 * was built. Invariants: p->tok always holds the next unread token; nesting
 * never exceeds SIEVE_MAX_NESTING; no string list grows past
 * SIEVE_MAX_LIST_ITEMS. */
#include "sieve.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "buffer.h"

enum token_kind {
	TOK_EOF,
	TOK_IDENT,
	TOK_TAG,
	TOK_NUMBER,
	TOK_STRING,
	TOK_LBRACKET,
	TOK_RBRACKET,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_LBRACE,
	TOK_RBRACE,
	TOK_COMMA,
	TOK_SEMICOLON,
};

struct token {
	enum token_kind kind;
	unsigned line, column;
	buf_t text;      /* identifier or tag (lower-cased, without ':'), or string value */
	uint64_t number;
};

struct parser {
	const char *pos, *end;
	unsigned line;
	const char *line_start;
	struct token tok;
	char *err;
	unsigned extensions;
	bool require_allowed; /* still before the first non-require command */
	unsigned depth;
};

/* A plain argument as written, before a builder gives it meaning. */
enum arg_kind { ARG_STRINGS, ARG_NUMBER, ARG_TAG };
struct arg {
	enum arg_kind kind;
	unsigned line, column;
	bool is_list;                /* written in [ ] */
	struct sieve_strings strings;
	uint64_t number;
	char *tag;
};
struct args {
	struct arg *items;
	size_t count;
};

static void block_free_contents(struct sieve_block *block);

/* Records the first error, with its position. */
static int __attribute__((format(printf, 4, 5)))
parser_fail(struct parser *p, unsigned line, unsigned column, const char *fmt, ...)
{
	if (p->err != NULL)
		return -1;
	buf_t b = BUF_INIT;
	buf_printf(&b, "line %u, column %u: ", line, column);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	p->err = buf_steal(&b);
	return -1;
}

/* The column of the byte at pos (1-based). */
static unsigned parser_column(const struct parser *p, const char *pos)
{
	return (unsigned)(pos - p->line_start) + 1;
}

/* Moves past one byte, counting lines. */
static void parser_advance(struct parser *p)
{
	if (*p->pos == '\n') {
		p->line++;
		p->line_start = p->pos + 1;
	}
	p->pos++;
}

/* Frees a string list and its items. */
static void strings_free(struct sieve_strings *s)
{
	for (size_t i = 0; i < s->count; i++)
		free(s->items[i]);
	free(s->items);
	s->items = NULL;
	s->count = 0;
}

/* Appends item to the list, which takes it over. */
static void strings_add(struct sieve_strings *s, char *item)
{
	s->items = xrealloc(s->items, (s->count + 1) * sizeof(*s->items));
	s->items[s->count++] = item;
}

/* Skips whitespace, "# ..." and bracketed comments. */
static int lexer_skip_space(struct parser *p)
{
	while (p->pos < p->end) {
		char c = *p->pos;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			parser_advance(p);
		} else if (c == '#') {
			while (p->pos < p->end && *p->pos != '\n')
				parser_advance(p);
		} else if (c == '/' && p->pos + 1 < p->end && p->pos[1] == '*') {
			unsigned line = p->line, column = parser_column(p, p->pos);
			parser_advance(p);
			parser_advance(p);
			for (;;) {
				if (p->pos + 1 >= p->end)
					return parser_fail(p, line, column, "unterminated comment");
				if (p->pos[0] == '*' && p->pos[1] == '/') {
					parser_advance(p);
					parser_advance(p);
					break;
				}
				parser_advance(p);
			}
		} else {
			return 0;
		}
	}
	return 0;
}

/* RFC 5228 8.1: an identifier starts with a letter or "_". */
static bool is_ident_start(char c)
{
	return isalpha((unsigned char)c) || c == '_';
}

/* RFC 5228 8.1: then letters, digits and "_". */
static bool is_ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Reads an identifier at pos into tok->text, lower-cased. */
static void lexer_identifier(struct parser *p)
{
	buf_reset(&p->tok.text);
	while (p->pos < p->end && is_ident_char(*p->pos)) {
		buf_append_char(&p->tok.text, (char)tolower((unsigned char)*p->pos));
		parser_advance(p);
	}
}

/* A quoted string (RFC 5228 2.4.2): \" and \\ are escapes; any other
 * backslash is dropped and the next character kept. */
static int lexer_quoted(struct parser *p)
{
	buf_reset(&p->tok.text);
	parser_advance(p);
	for (;;) {
		if (p->pos >= p->end)
			return parser_fail(p, p->tok.line, p->tok.column, "unterminated string");
		char c = *p->pos;
		if (c == '"') {
			parser_advance(p);
			return 0;
		}
		if (c == '\\') {
			parser_advance(p);
			if (p->pos >= p->end)
				return parser_fail(p, p->tok.line, p->tok.column,
						   "unterminated string");
			c = *p->pos;
		}
		buf_append_char(&p->tok.text, c);
		parser_advance(p);
	}
}

/* A multi-line string after "text:" (RFC 5228 8.1): the rest of the line is
 * blank or a comment, then lines up to one holding only ".", with a leading
 * ".." unstuffed to ".". Lines end in CRLF in the value. */
static int lexer_multiline(struct parser *p)
{
	buf_reset(&p->tok.text);
	while (p->pos < p->end && (*p->pos == ' ' || *p->pos == '\t'))
		parser_advance(p);
	if (p->pos < p->end && *p->pos == '#') {
		while (p->pos < p->end && *p->pos != '\n')
			parser_advance(p);
	}
	if (p->pos < p->end && *p->pos == '\r')
		parser_advance(p);
	if (p->pos >= p->end || *p->pos != '\n')
		return parser_fail(p, p->line, parser_column(p, p->pos),
				   "expected a line break after \"text:\"");
	parser_advance(p);
	for (;;) {
		if (p->pos >= p->end)
			return parser_fail(p, p->tok.line, p->tok.column,
					   "multi-line string not ended by a line with \".\"");
		const char *line = p->pos;
		const char *eol = memchr(line, '\n', (size_t)(p->end - line));
		const char *stop = eol != NULL ? eol : p->end;
		size_t len = (size_t)(stop - line);
		if (len > 0 && line[len - 1] == '\r')
			len--;
		while (p->pos < stop)
			parser_advance(p);
		if (eol != NULL)
			parser_advance(p);
		if (len == 1 && line[0] == '.')
			return 0;
		if (len >= 2 && line[0] == '.' && line[1] == '.') {
			line++;
			len--;
		}
		buf_append(&p->tok.text, line, len);
		buf_append_str(&p->tok.text, "\r\n");
	}
}

/* A number with an optional K, M or G quantifier (2.4.1). */
static int lexer_number(struct parser *p)
{
	uint64_t value = 0;
	while (p->pos < p->end && isdigit((unsigned char)*p->pos)) {
		unsigned digit = (unsigned)(*p->pos - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return parser_fail(p, p->tok.line, p->tok.column, "number too large");
		value = value * 10 + digit;
		parser_advance(p);
	}
	unsigned shift = 0;
	if (p->pos < p->end) {
		switch (toupper((unsigned char)*p->pos)) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		default: break;
		}
		if (shift != 0)
			parser_advance(p);
	}
	if (p->pos < p->end && is_ident_char(*p->pos))
		return parser_fail(p, p->line, parser_column(p, p->pos),
				   "unexpected character after a number");
	if (shift != 0 && value > (UINT64_MAX >> shift))
		return parser_fail(p, p->tok.line, p->tok.column, "number too large");
	p->tok.number = value << shift;
	return 0;
}

/* Reads the next token into p->tok. */
static int lexer_next(struct parser *p)
{
	if (lexer_skip_space(p) < 0)
		return -1;
	p->tok.line = p->line;
	p->tok.column = parser_column(p, p->pos);
	if (p->pos >= p->end) {
		p->tok.kind = TOK_EOF;
		return 0;
	}
	char c = *p->pos;
	static const struct {
		char c;
		enum token_kind kind;
	} punctuation[] = {
		{'[', TOK_LBRACKET}, {']', TOK_RBRACKET}, {'(', TOK_LPAREN}, {')', TOK_RPAREN},
		{'{', TOK_LBRACE},   {'}', TOK_RBRACE},   {',', TOK_COMMA},  {';', TOK_SEMICOLON},
	};
	for (size_t i = 0; i < sizeof(punctuation) / sizeof(punctuation[0]); i++) {
		if (punctuation[i].c == c) {
			p->tok.kind = punctuation[i].kind;
			parser_advance(p);
			return 0;
		}
	}
	if (c == '"') {
		p->tok.kind = TOK_STRING;
		return lexer_quoted(p);
	}
	if (isdigit((unsigned char)c)) {
		p->tok.kind = TOK_NUMBER;
		return lexer_number(p);
	}
	if (c == ':') {
		parser_advance(p);
		if (p->pos >= p->end || !is_ident_start(*p->pos))
			return parser_fail(p, p->tok.line, p->tok.column,
					   "expected a tag name after ':'");
		p->tok.kind = TOK_TAG;
		lexer_identifier(p);
		return 0;
	}
	if (is_ident_start(c)) {
		lexer_identifier(p);
		if (strcmp(buf_cstr(&p->tok.text), "text") == 0 && p->pos < p->end &&
		    *p->pos == ':') {
			parser_advance(p);
			p->tok.kind = TOK_STRING;
			return lexer_multiline(p);
		}
		p->tok.kind = TOK_IDENT;
		return 0;
	}
	if (c == '\0')
		return parser_fail(p, p->tok.line, p->tok.column, "NUL character in script");
	if (isprint((unsigned char)c))
		return parser_fail(p, p->tok.line, p->tok.column, "unexpected character '%c'", c);
	return parser_fail(p, p->tok.line, p->tok.column, "unexpected character 0x%02x",
			   (unsigned char)c);
}

/* ---- plain arguments ---- */

/* Frees a command's or test's parsed arguments. */
static void args_free(struct args *a)
{
	for (size_t i = 0; i < a->count; i++) {
		strings_free(&a->items[i].strings);
		free(a->items[i].tag);
	}
	free(a->items);
	a->items = NULL;
	a->count = 0;
}

/* A string list: one string, or "[" string *("," string) "]". */
static int parse_string_list(struct parser *p, struct arg *arg)
{
	arg->kind = ARG_STRINGS;
	if (p->tok.kind == TOK_STRING) {
		strings_add(&arg->strings, buf_steal(&p->tok.text));
		return lexer_next(p);
	}
	arg->is_list = true;
	if (lexer_next(p) < 0)
		return -1;
	for (;;) {
		if (p->tok.kind != TOK_STRING)
			return parser_fail(p, p->tok.line, p->tok.column,
					   "expected a string in the list");
		if (arg->strings.count >= SIEVE_MAX_LIST_ITEMS)
			return parser_fail(p, p->tok.line, p->tok.column,
					   "more than %d strings in a list", SIEVE_MAX_LIST_ITEMS);
		strings_add(&arg->strings, buf_steal(&p->tok.text));
		if (lexer_next(p) < 0)
			return -1;
		if (p->tok.kind == TOK_RBRACKET)
			return lexer_next(p);
		if (p->tok.kind != TOK_COMMA)
			return parser_fail(p, p->tok.line, p->tok.column,
					   "expected ',' or ']' in a string list");
		if (lexer_next(p) < 0)
			return -1;
	}
}

/* Reads *argument: string lists, numbers and tags, up to a test, a block or ';'. */
static int parse_arguments(struct parser *p, struct args *args)
{
	for (;;) {
		enum token_kind kind = p->tok.kind;
		if (kind != TOK_STRING && kind != TOK_LBRACKET && kind != TOK_NUMBER &&
		    kind != TOK_TAG)
			return 0;
		if (args->count >= SIEVE_MAX_LIST_ITEMS)
			return parser_fail(p, p->tok.line, p->tok.column, "too many arguments");
		args->items = xrealloc(args->items, (args->count + 1) * sizeof(*args->items));
		struct arg *arg = &args->items[args->count++];
		memset(arg, 0, sizeof(*arg));
		arg->line = p->tok.line;
		arg->column = p->tok.column;
		if (kind == TOK_NUMBER) {
			arg->kind = ARG_NUMBER;
			arg->number = p->tok.number;
			if (lexer_next(p) < 0)
				return -1;
		} else if (kind == TOK_TAG) {
			arg->kind = ARG_TAG;
			arg->tag = buf_steal(&p->tok.text);
			if (lexer_next(p) < 0)
				return -1;
		} else if (parse_string_list(p, arg) < 0) {
			return -1;
		}
	}
}

/* ---- tags shared by tests ---- */

enum tag_group { TAG_MATCH, TAG_COMPARATOR, TAG_PART, TAG_SIZE };

static const struct tag_def {
	const char *name;
	enum tag_group group;
	int value;
	unsigned extension; /* needed in require, or 0 */
} tag_table[] = {
	{"is", TAG_MATCH, SIEVE_MATCH_IS, 0},
	{"contains", TAG_MATCH, SIEVE_MATCH_CONTAINS, 0},
	{"matches", TAG_MATCH, SIEVE_MATCH_MATCHES, 0},
	{"comparator", TAG_COMPARATOR, 0, 0},
	{"all", TAG_PART, SIEVE_PART_ALL, 0},
	{"localpart", TAG_PART, SIEVE_PART_LOCALPART, 0},
	{"domain", TAG_PART, SIEVE_PART_DOMAIN, 0},
	{"user", TAG_PART, SIEVE_PART_USER, SIEVE_EXT_SUBADDRESS},
	{"detail", TAG_PART, SIEVE_PART_DETAIL, SIEVE_EXT_SUBADDRESS},
	{"over", TAG_SIZE, 1, 0},
	{"under", TAG_SIZE, 0, 0},
};

static const struct extension_def {
	const char *name;
	unsigned bit;
} extension_table[] = {
	{"fileinto", SIEVE_EXT_FILEINTO},
	{"envelope", SIEVE_EXT_ENVELOPE},
	{"vacation", SIEVE_EXT_VACATION},
	{"mailbox", SIEVE_EXT_MAILBOX},
	{"subaddress", SIEVE_EXT_SUBADDRESS},
	{"comparator-i;octet", SIEVE_EXT_COMPARATOR_OCTET},
	{"comparator-i;ascii-casemap", SIEVE_EXT_COMPARATOR_CASEMAP},
};

/* The require name of an extension bit. */
static const char *extension_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(extension_table) / sizeof(extension_table[0]); i++)
		if (extension_table[i].bit == bit)
			return extension_table[i].name;
	return "?";
}

/* Fails unless the script required the extension. */
static int parser_need_extension(struct parser *p, unsigned bit, unsigned line, unsigned column,
				 const char *what)
{
	if ((p->extensions & bit) != 0)
		return 0;
	return parser_fail(p, line, column, "%s needs require \"%s\"", what, extension_name(bit));
}

/* Consumes the leading tags of a test's arguments; groups is a bit mask of
 * enum tag_group values the test accepts. *next_r is the first positional. */
static int test_take_tags(struct parser *p, struct sieve_test *t, const char *test_name,
			  struct args *args, unsigned groups, size_t *next_r)
{
	unsigned seen = 0;
	size_t i = 0;
	for (; i < args->count && args->items[i].kind == ARG_TAG; i++) {
		struct arg *arg = &args->items[i];
		const struct tag_def *def = NULL;
		for (size_t k = 0; k < sizeof(tag_table) / sizeof(tag_table[0]); k++)
			if (strcmp(tag_table[k].name, arg->tag) == 0)
				def = &tag_table[k];
		if (def == NULL || (groups & (1u << def->group)) == 0)
			return parser_fail(p, arg->line, arg->column, "%s: unknown tag ':%s'",
					   test_name, arg->tag);
		if (def->extension != 0 &&
		    parser_need_extension(p, def->extension, arg->line, arg->column,
					  def->name) < 0)
			return -1;
		if ((seen & (1u << def->group)) != 0)
			return parser_fail(p, arg->line, arg->column,
					   "%s: more than one tag of the kind of ':%s'", test_name,
					   arg->tag);
		seen |= 1u << def->group;
		switch (def->group) {
		case TAG_MATCH:
			t->match = (enum sieve_match_type)def->value;
			break;
		case TAG_PART:
			t->part = (enum sieve_address_part)def->value;
			break;
		case TAG_SIZE:
			t->over = def->value != 0;
			break;
		case TAG_COMPARATOR: {
			if (i + 1 >= args->count || args->items[i + 1].kind != ARG_STRINGS ||
			    args->items[i + 1].is_list)
				return parser_fail(p, arg->line, arg->column,
						   ":comparator needs a comparator name");
			const char *name = args->items[i + 1].strings.items[0];
			if (strcasecmp(name, "i;octet") == 0)
				t->comparator = SIEVE_COMPARATOR_OCTET;
			else if (strcasecmp(name, "i;ascii-casemap") == 0)
				t->comparator = SIEVE_COMPARATOR_ASCII_CASEMAP;
			else
				return parser_fail(p, args->items[i + 1].line,
						   args->items[i + 1].column,
						   "comparator \"%s\" is not supported", name);
			i++;
			break;
		}
		}
	}
	if (groups & (1u << TAG_SIZE) && (seen & (1u << TAG_SIZE)) == 0)
		return parser_fail(p, t->line, t->column, "size needs :over or :under");
	*next_r = i;
	return 0;
}

/* Checks that exactly `want` positional arguments of the given kinds follow. */
static int args_expect(struct parser *p, unsigned line, unsigned column, const char *name,
		       struct args *args, size_t first, const enum arg_kind *kinds, size_t want)
{
	size_t have = args->count - first;
	for (size_t i = 0; i < have && i < want; i++) {
		struct arg *arg = &args->items[first + i];
		if (arg->kind == ARG_TAG)
			return parser_fail(p, arg->line, arg->column, "%s: unexpected tag ':%s'",
					   name, arg->tag);
		if (arg->kind != kinds[i])
			return parser_fail(p, arg->line, arg->column, "%s: expected %s", name,
					   kinds[i] == ARG_NUMBER ? "a number" : "a string or list");
	}
	if (have > want) {
		struct arg *arg = &args->items[first + want];
		return parser_fail(p, arg->line, arg->column, "%s: too many arguments", name);
	}
	if (have < want)
		return parser_fail(p, line, column, "%s: expected %zu argument%s", name, want,
				   want == 1 ? "" : "s");
	return 0;
}

/* Moves a string-list argument's strings into dest. */
static void arg_take_strings(struct arg *arg, struct sieve_strings *dest)
{
	*dest = arg->strings;
	arg->strings.items = NULL;
	arg->strings.count = 0;
}

/* ---- tests ---- */

/* Frees what a test holds (its nested tests too), not the test itself. */
static void test_free_contents(struct sieve_test *t)
{
	strings_free(&t->fields);
	strings_free(&t->keys);
	for (size_t i = 0; i < t->test_count; i++)
		test_free_contents(&t->tests[i]);
	free(t->tests);
	t->tests = NULL;
	t->test_count = 0;
}

struct test_def;
typedef int test_build_fn(struct parser *p, const struct test_def *def, struct sieve_test *t,
			  struct args *args);

struct test_def {
	const char *name;
	enum sieve_test_kind kind;
	unsigned extension;
	unsigned tag_groups;
	int nested;            /* 0 none, 1 exactly one test, 2 a test list */
	test_build_fn *build;
};

/* header/address/envelope: [tags] <names: string-list> <keys: string-list>. */
static int build_compare_test(struct parser *p, const struct test_def *def, struct sieve_test *t,
			      struct args *args)
{
	size_t first;
	if (test_take_tags(p, t, def->name, args, def->tag_groups, &first) < 0)
		return -1;
	static const enum arg_kind kinds[] = {ARG_STRINGS, ARG_STRINGS};
	if (args_expect(p, t->line, t->column, def->name, args, first, kinds, 2) < 0)
		return -1;
	arg_take_strings(&args->items[first], &t->fields);
	arg_take_strings(&args->items[first + 1], &t->keys);
	if (t->kind == SIEVE_TEST_ENVELOPE) {
		for (size_t i = 0; i < t->fields.count; i++) {
			if (strcasecmp(t->fields.items[i], "from") != 0 &&
			    strcasecmp(t->fields.items[i], "to") != 0)
				return parser_fail(p, args->items[first].line,
						   args->items[first].column,
						   "envelope: unknown envelope part \"%s\"",
						   t->fields.items[i]);
		}
	}
	return 0;
}

/* exists <names: string-list>. */
static int build_exists(struct parser *p, const struct test_def *def, struct sieve_test *t,
			struct args *args)
{
	static const enum arg_kind kinds[] = {ARG_STRINGS};
	if (args_expect(p, t->line, t->column, def->name, args, 0, kinds, 1) < 0)
		return -1;
	arg_take_strings(&args->items[0], &t->fields);
	return 0;
}

/* size :over|:under <limit: number>. */
static int build_size(struct parser *p, const struct test_def *def, struct sieve_test *t,
		      struct args *args)
{
	size_t first;
	if (test_take_tags(p, t, def->name, args, def->tag_groups, &first) < 0)
		return -1;
	static const enum arg_kind kinds[] = {ARG_NUMBER};
	if (args_expect(p, t->line, t->column, def->name, args, first, kinds, 1) < 0)
		return -1;
	t->limit = args->items[first].number;
	return 0;
}

/* true, false, not, anyof, allof: no plain arguments. */
static int build_no_args(struct parser *p, const struct test_def *def, struct sieve_test *t,
			 struct args *args)
{
	return args_expect(p, t->line, t->column, def->name, args, 0, NULL, 0);
}

#define TAGS_COMPARE ((1u << TAG_MATCH) | (1u << TAG_COMPARATOR))
#define TAGS_ADDRESS (TAGS_COMPARE | (1u << TAG_PART))

static const struct test_def test_table[] = {
	{"true", SIEVE_TEST_TRUE, 0, 0, 0, build_no_args},
	{"false", SIEVE_TEST_FALSE, 0, 0, 0, build_no_args},
	{"not", SIEVE_TEST_NOT, 0, 0, 1, build_no_args},
	{"anyof", SIEVE_TEST_ANYOF, 0, 0, 2, build_no_args},
	{"allof", SIEVE_TEST_ALLOF, 0, 0, 2, build_no_args},
	{"header", SIEVE_TEST_HEADER, 0, TAGS_COMPARE, 0, build_compare_test},
	{"address", SIEVE_TEST_ADDRESS, 0, TAGS_ADDRESS, 0, build_compare_test},
	{"envelope", SIEVE_TEST_ENVELOPE, SIEVE_EXT_ENVELOPE, TAGS_ADDRESS, 0, build_compare_test},
	{"exists", SIEVE_TEST_EXISTS, 0, 0, 0, build_exists},
	{"size", SIEVE_TEST_SIZE, 0, 1u << TAG_SIZE, 0, build_size},
};

static int parse_test(struct parser *p, struct sieve_test *t);

/* "(" test *("," test) ")" into t->tests. */
static int parse_test_list(struct parser *p, struct sieve_test **tests_r, size_t *count_r)
{
	if (lexer_next(p) < 0)
		return -1;
	for (;;) {
		if (*count_r >= SIEVE_MAX_TESTS)
			return parser_fail(p, p->tok.line, p->tok.column,
					   "more than %d tests in a list", SIEVE_MAX_TESTS);
		*tests_r = xrealloc(*tests_r, (*count_r + 1) * sizeof(**tests_r));
		struct sieve_test *t = &(*tests_r)[(*count_r)++];
		memset(t, 0, sizeof(*t));
		if (parse_test(p, t) < 0)
			return -1;
		if (p->tok.kind == TOK_RPAREN)
			return lexer_next(p);
		if (p->tok.kind != TOK_COMMA)
			return parser_fail(p, p->tok.line, p->tok.column,
					   "expected ',' or ')' in a test list");
		if (lexer_next(p) < 0)
			return -1;
	}
}

/* Parses an optional test or test list after the arguments. */
static int parse_nested_tests(struct parser *p, struct sieve_test **tests_r, size_t *count_r,
			      bool *was_list_r)
{
	*was_list_r = false;
	if (p->tok.kind == TOK_LPAREN) {
		*was_list_r = true;
		return parse_test_list(p, tests_r, count_r);
	}
	if (p->tok.kind == TOK_IDENT) {
		*tests_r = xcalloc(1, sizeof(**tests_r));
		*count_r = 1;
		return parse_test(p, *tests_r);
	}
	return 0;
}

/* test = identifier arguments; the current token is the identifier. */
static int parse_test(struct parser *p, struct sieve_test *t)
{
	t->line = p->tok.line;
	t->column = p->tok.column;
	if (p->tok.kind != TOK_IDENT)
		return parser_fail(p, t->line, t->column, "expected a test");
	if (++p->depth > SIEVE_MAX_NESTING)
		return parser_fail(p, t->line, t->column, "tests nested deeper than %d",
				   SIEVE_MAX_NESTING);
	const struct test_def *def = NULL;
	for (size_t i = 0; i < sizeof(test_table) / sizeof(test_table[0]); i++)
		if (strcmp(test_table[i].name, buf_cstr(&p->tok.text)) == 0)
			def = &test_table[i];
	if (def == NULL)
		return parser_fail(p, t->line, t->column, "unknown test '%s'",
				   buf_cstr(&p->tok.text));
	t->kind = def->kind;
	if (def->extension != 0 &&
	    parser_need_extension(p, def->extension, t->line, t->column, def->name) < 0)
		return -1;
	if (lexer_next(p) < 0)
		return -1;
	struct args args = {NULL, 0};
	bool was_list = false;
	int ret = parse_arguments(p, &args);
	if (ret == 0)
		ret = parse_nested_tests(p, &t->tests, &t->test_count, &was_list);
	if (ret == 0)
		ret = def->build(p, def, t, &args);
	args_free(&args);
	if (ret < 0)
		return -1;
	if (def->nested == 0 && t->test_count > 0)
		return parser_fail(p, t->tests[0].line, t->tests[0].column,
				   "%s takes no test", def->name);
	if (def->nested == 1 && (t->test_count != 1 || was_list))
		return parser_fail(p, t->line, t->column, "%s needs one test", def->name);
	if (def->nested == 2 && !was_list)
		return parser_fail(p, t->line, t->column, "%s needs a test list in ( )",
				   def->name);
	p->depth--;
	return 0;
}

/* ---- commands ---- */

/* Frees what a command holds (branches, blocks), not the command itself. */
static void command_free_contents(struct sieve_command *c)
{
	for (size_t i = 0; i < c->branch_count; i++) {
		if (c->branches[i].test != NULL) {
			test_free_contents(c->branches[i].test);
			free(c->branches[i].test);
		}
		block_free_contents(&c->branches[i].block);
	}
	free(c->branches);
	free(c->argument);
	free(c->subject);
	free(c->from);
	free(c->handle);
	strings_free(&c->addresses);
}

/* Frees a block's commands, not the block itself. */
static void block_free_contents(struct sieve_block *block)
{
	for (size_t i = 0; i < block->count; i++)
		command_free_contents(&block->commands[i]);
	free(block->commands);
	block->commands = NULL;
	block->count = 0;
}

struct command_def;
typedef int command_build_fn(struct parser *p, const struct command_def *def,
			     struct sieve_command *c, struct args *args);

struct command_def {
	const char *name;
	enum sieve_command_kind kind;
	unsigned extension;
	command_build_fn *build;
};

/* keep, discard, stop: no arguments. */
static int build_plain(struct parser *p, const struct command_def *def, struct sieve_command *c,
		       struct args *args)
{
	return args_expect(p, c->line, c->column, def->name, args, 0, NULL, 0);
}

/* Takes a single string (not a list) argument. */
static int arg_single_string(struct parser *p, const char *name, struct arg *arg, char **out_r)
{
	if (arg->kind != ARG_STRINGS || arg->is_list || arg->strings.count != 1)
		return parser_fail(p, arg->line, arg->column, "%s: expected one string", name);
	*out_r = arg->strings.items[0];
	arg->strings.items[0] = NULL;
	return 0;
}

/* fileinto [:create] <folder>. */
static int build_fileinto(struct parser *p, const struct command_def *def,
			  struct sieve_command *c, struct args *args)
{
	size_t i = 0;
	for (; i < args->count && args->items[i].kind == ARG_TAG; i++) {
		struct arg *arg = &args->items[i];
		if (strcmp(arg->tag, "create") != 0)
			return parser_fail(p, arg->line, arg->column, "fileinto: unknown tag ':%s'",
					   arg->tag);
		if (parser_need_extension(p, SIEVE_EXT_MAILBOX, arg->line, arg->column,
					  ":create") < 0)
			return -1;
		c->create = true;
	}
	static const enum arg_kind kinds[] = {ARG_STRINGS};
	if (args_expect(p, c->line, c->column, def->name, args, i, kinds, 1) < 0)
		return -1;
	if (arg_single_string(p, def->name, &args->items[i], &c->argument) < 0)
		return -1;
	if (c->argument[0] == '\0')
		return parser_fail(p, args->items[i].line, args->items[i].column,
				   "fileinto: empty folder name");
	return 0;
}

/* redirect <address>: the address must be valid (RFC 5228 4.2). */
static int build_redirect(struct parser *p, const struct command_def *def,
			  struct sieve_command *c, struct args *args)
{
	static const enum arg_kind kinds[] = {ARG_STRINGS};
	if (args_expect(p, c->line, c->column, def->name, args, 0, kinds, 1) < 0)
		return -1;
	if (arg_single_string(p, def->name, &args->items[0], &c->argument) < 0)
		return -1;
	if (!address_spec_valid(c->argument))
		return parser_fail(p, args->items[0].line, args->items[0].column,
				   "redirect: invalid address \"%s\"", c->argument);
	return 0;
}

/* vacation [:days n] [:subject s] [:from s] [:addresses list] [:mime]
 * [:handle s] <reason> (RFC 5230 4). */
static int build_vacation(struct parser *p, const struct command_def *def,
			  struct sieve_command *c, struct args *args)
{
	static const char *const tags[] = {"days", "subject", "from", "addresses", "mime",
					   "handle"};
	unsigned seen = 0;
	size_t i = 0;
	c->days = SIEVE_VACATION_DEFAULT_DAYS;
	while (i < args->count && args->items[i].kind == ARG_TAG) {
		struct arg *arg = &args->items[i];
		size_t which = sizeof(tags) / sizeof(tags[0]);
		for (size_t k = 0; k < sizeof(tags) / sizeof(tags[0]); k++)
			if (strcmp(tags[k], arg->tag) == 0)
				which = k;
		if (which == sizeof(tags) / sizeof(tags[0]))
			return parser_fail(p, arg->line, arg->column, "vacation: unknown tag ':%s'",
					   arg->tag);
		if ((seen & (1u << which)) != 0)
			return parser_fail(p, arg->line, arg->column,
					   "vacation: ':%s' given twice", arg->tag);
		seen |= 1u << which;
		i++;
		if (which == 4) { /* :mime takes no value */
			c->mime = true;
			continue;
		}
		if (i >= args->count || args->items[i].kind == ARG_TAG)
			return parser_fail(p, arg->line, arg->column, "vacation: ':%s' needs a value",
					   arg->tag);
		struct arg *value = &args->items[i++];
		switch (which) {
		case 0:
			if (value->kind != ARG_NUMBER)
				return parser_fail(p, value->line, value->column,
						   "vacation: :days needs a number");
			/* RFC 5230 4.1: out-of-range values are clamped to the site limits. */
			c->days = value->number < SIEVE_VACATION_MIN_DAYS ? SIEVE_VACATION_MIN_DAYS
				: value->number > SIEVE_VACATION_MAX_DAYS ? SIEVE_VACATION_MAX_DAYS
				: (int64_t)value->number;
			break;
		case 1:
			if (arg_single_string(p, "vacation :subject", value, &c->subject) < 0)
				return -1;
			break;
		case 2:
			if (arg_single_string(p, "vacation :from", value, &c->from) < 0)
				return -1;
			if (!address_spec_valid(c->from))
				return parser_fail(p, value->line, value->column,
						   "vacation: invalid :from address \"%s\"",
						   c->from);
			break;
		case 3:
			if (value->kind != ARG_STRINGS)
				return parser_fail(p, value->line, value->column,
						   "vacation: :addresses needs a string list");
			arg_take_strings(value, &c->addresses);
			break;
		case 5:
			if (arg_single_string(p, "vacation :handle", value, &c->handle) < 0)
				return -1;
			break;
		default:
			break;
		}
	}
	static const enum arg_kind kinds[] = {ARG_STRINGS};
	if (args_expect(p, c->line, c->column, def->name, args, i, kinds, 1) < 0)
		return -1;
	return arg_single_string(p, def->name, &args->items[i], &c->argument);
}

static const struct command_def command_table[] = {
	{"keep", SIEVE_CMD_KEEP, 0, build_plain},
	{"discard", SIEVE_CMD_DISCARD, 0, build_plain},
	{"stop", SIEVE_CMD_STOP, 0, build_plain},
	{"fileinto", SIEVE_CMD_FILEINTO, SIEVE_EXT_FILEINTO, build_fileinto},
	{"redirect", SIEVE_CMD_REDIRECT, 0, build_redirect},
	{"vacation", SIEVE_CMD_VACATION, SIEVE_EXT_VACATION, build_vacation},
};

static int parse_block(struct parser *p, struct sieve_block *block, bool top);

/* require <capabilities: string-list>: only before other commands. */
static int parse_require(struct parser *p, unsigned line, unsigned column, struct args *args)
{
	if (!p->require_allowed)
		return parser_fail(p, line, column, "require must come before other commands");
	static const enum arg_kind kinds[] = {ARG_STRINGS};
	if (args_expect(p, line, column, "require", args, 0, kinds, 1) < 0)
		return -1;
	struct sieve_strings *names = &args->items[0].strings;
	for (size_t i = 0; i < names->count; i++) {
		unsigned bit = 0;
		for (size_t k = 0; k < sizeof(extension_table) / sizeof(extension_table[0]); k++)
			if (strcasecmp(extension_table[k].name, names->items[i]) == 0)
				bit = extension_table[k].bit;
		if (bit == 0)
			return parser_fail(p, args->items[0].line, args->items[0].column,
					   "unsupported extension \"%s\" (supported: %s)",
					   names->items[i], sieve_supported_extensions());
		p->extensions |= bit;
	}
	return 0;
}

/* Expects ';' after a command without a block. */
static int parse_end_of_command(struct parser *p, const char *name)
{
	if (p->tok.kind == TOK_LBRACE)
		return parser_fail(p, p->tok.line, p->tok.column, "%s takes no block", name);
	if (p->tok.kind != TOK_SEMICOLON)
		return parser_fail(p, p->tok.line, p->tok.column, "expected ';' after %s", name);
	return lexer_next(p);
}

/* "{" commands "}" after if/elsif/else. */
static int parse_braced_block(struct parser *p, const char *name, struct sieve_block *block)
{
	if (p->tok.kind != TOK_LBRACE)
		return parser_fail(p, p->tok.line, p->tok.column, "expected '{' after %s", name);
	if (++p->depth > SIEVE_MAX_NESTING)
		return parser_fail(p, p->tok.line, p->tok.column, "blocks nested deeper than %d",
				   SIEVE_MAX_NESTING);
	if (lexer_next(p) < 0 || parse_block(p, block, false) < 0)
		return -1;
	p->depth--;
	return lexer_next(p); /* past '}' */
}

/* if/elsif/else: one branch; elsif and else join the preceding if. */
static int parse_branch(struct parser *p, struct sieve_block *block, const char *name,
			unsigned line, unsigned column, struct args *args)
{
	bool is_if = strcmp(name, "if") == 0, is_else = strcmp(name, "else") == 0;
	struct sieve_command *owner = NULL;
	if (!is_if) {
		struct sieve_command *prev = block->count > 0 ? &block->commands[block->count - 1]
							      : NULL;
		if (prev == NULL || prev->kind != SIEVE_CMD_IF ||
		    prev->branches[prev->branch_count - 1].test == NULL)
			return parser_fail(p, line, column, "%s without a preceding if", name);
		owner = prev;
	}
	if (args_expect(p, line, column, name, args, 0, NULL, 0) < 0)
		return -1;
	struct sieve_test *tests = NULL;
	size_t count = 0;
	bool was_list = false;
	int ret = parse_nested_tests(p, &tests, &count, &was_list);
	if (ret == 0 && is_else && count != 0)
		ret = parser_fail(p, line, column, "else takes no test");
	else if (ret == 0 && !is_else && (count != 1 || was_list))
		ret = parser_fail(p, line, column, "%s needs one test", name);
	if (ret < 0) {
		for (size_t i = 0; i < count; i++)
			test_free_contents(&tests[i]);
		free(tests);
		return -1;
	}
	if (owner == NULL) {
		block->commands = xrealloc(block->commands,
					   (block->count + 1) * sizeof(*block->commands));
		owner = &block->commands[block->count++];
		memset(owner, 0, sizeof(*owner));
		owner->kind = SIEVE_CMD_IF;
		owner->line = line;
		owner->column = column;
	}
	owner->branches = xrealloc(owner->branches,
				   (owner->branch_count + 1) * sizeof(*owner->branches));
	struct sieve_branch *branch = &owner->branches[owner->branch_count++];
	memset(branch, 0, sizeof(*branch));
	branch->test = tests;
	return parse_braced_block(p, name, &branch->block);
}

/* One command; the current token is its identifier. */
static int parse_command(struct parser *p, struct sieve_block *block)
{
	unsigned line = p->tok.line, column = p->tok.column;
	char *name = buf_steal(&p->tok.text);
	struct args args = {NULL, 0};
	int ret = lexer_next(p);
	if (ret == 0)
		ret = parse_arguments(p, &args);
	if (ret < 0)
		goto out;
	if (strcmp(name, "require") == 0) {
		ret = parse_require(p, line, column, &args);
		if (ret == 0)
			ret = parse_end_of_command(p, name);
		goto out;
	}
	p->require_allowed = false;
	if (strcmp(name, "if") == 0 || strcmp(name, "elsif") == 0 || strcmp(name, "else") == 0) {
		ret = parse_branch(p, block, name, line, column, &args);
		goto out;
	}
	const struct command_def *def = NULL;
	for (size_t i = 0; i < sizeof(command_table) / sizeof(command_table[0]); i++)
		if (strcmp(command_table[i].name, name) == 0)
			def = &command_table[i];
	if (def == NULL) {
		ret = parser_fail(p, line, column, "unknown command '%s'", name);
		goto out;
	}
	ret = -1;
	if (def->extension != 0 &&
	    parser_need_extension(p, def->extension, line, column, def->name) < 0)
		goto out;
	if (p->tok.kind == TOK_IDENT || p->tok.kind == TOK_LPAREN) {
		parser_fail(p, p->tok.line, p->tok.column, "%s takes no test", name);
		goto out;
	}
	block->commands = xrealloc(block->commands, (block->count + 1) * sizeof(*block->commands));
	struct sieve_command *c = &block->commands[block->count++];
	memset(c, 0, sizeof(*c));
	c->kind = def->kind;
	c->line = line;
	c->column = column;
	if (def->build(p, def, c, &args) < 0)
		goto out;
	ret = parse_end_of_command(p, name);
out:
	args_free(&args);
	free(name);
	return ret;
}

/* Commands up to '}' (inner blocks) or the end of the script (top). */
static int parse_block(struct parser *p, struct sieve_block *block, bool top)
{
	for (;;) {
		if (p->tok.kind == TOK_EOF) {
			if (top)
				return 0;
			return parser_fail(p, p->tok.line, p->tok.column, "missing '}'");
		}
		if (p->tok.kind == TOK_RBRACE) {
			if (!top)
				return 0;
			return parser_fail(p, p->tok.line, p->tok.column, "unexpected '}'");
		}
		if (p->tok.kind != TOK_IDENT)
			return parser_fail(p, p->tok.line, p->tok.column, "expected a command");
		if (parse_command(p, block) < 0)
			return -1;
	}
}

int sieve_parse(const char *text, size_t len, struct sieve_script **script_r, char **err_r)
{
	*script_r = NULL;
	if (len > SIEVE_MAX_SCRIPT_SIZE) {
		*err_r = xasprintf("line 1, column 1: script larger than %d bytes",
				   SIEVE_MAX_SCRIPT_SIZE);
		return -1;
	}
	struct parser p;
	memset(&p, 0, sizeof(p));
	p.pos = text;
	p.end = text + len;
	p.line = 1;
	p.line_start = text;
	p.require_allowed = true;
	buf_init(&p.tok.text);
	struct sieve_script *script = xcalloc(1, sizeof(*script));
	if (lexer_next(&p) < 0 || parse_block(&p, &script->top, true) < 0) {
		if (p.err == NULL) /* a bug: every failure records why */
			p.err = xstrdup("line 1, column 1: invalid script");
		buf_free(&p.tok.text);
		sieve_script_free(&script);
		*err_r = p.err;
		return -1;
	}
	buf_free(&p.tok.text);
	script->extensions = p.extensions;
	*script_r = script;
	return 0;
}

void sieve_script_free(struct sieve_script **script)
{
	if (*script == NULL)
		return;
	block_free_contents(&(*script)->top);
	free(*script);
	*script = NULL;
}

const char *sieve_command_name(enum sieve_command_kind kind)
{
	if (kind == SIEVE_CMD_IF)
		return "if";
	for (size_t i = 0; i < sizeof(command_table) / sizeof(command_table[0]); i++)
		if (command_table[i].kind == kind)
			return command_table[i].name;
	return "?";
}

const char *sieve_test_name(enum sieve_test_kind kind)
{
	for (size_t i = 0; i < sizeof(test_table) / sizeof(test_table[0]); i++)
		if (test_table[i].kind == kind)
			return test_table[i].name;
	return "?";
}

const char *sieve_supported_extensions(void)
{
	return "fileinto envelope vacation mailbox subaddress comparator-i;octet "
	       "comparator-i;ascii-casemap";
}
