/* imap_parser.h: a resumable, bounded parser for IMAP command lines (RFC 3501
 * section 9) and, with the same grammar, for the untagged and tagged
 * responses that an IMAP client reads.
 *
 * Bytes are fed as they arrive, in any split (one byte at a time works). A
 * command is a list of arguments: atoms, quoted strings, literals {n} and
 * {n+} (RFC 7888), and parenthesised lists. An atom may carry a bracketed
 * part with spaces in it, so BODY[HEADER.FIELDS (From To)]<0.100> and
 * [UIDVALIDITY 3] are each one atom; the caller parses those further.
 *
 * imap_parser_feed returns:
 *   IMAP_PARSE_DONE     a whole command was read (its line end consumed);
 *   IMAP_PARSE_MORE     every byte was consumed, the command goes on;
 *   IMAP_PARSE_LITERAL  a literal header "{n}" and its line end were read: the
 *                       caller looks at imap_parser_literal_size/_sync and then
 *                       either lets the parser keep the n bytes (feed them;
 *                       imap_parser_literal_accept says first whether they fit),
 *                       or takes them itself (imap_parser_literal_external, for
 *                       APPEND streaming into the store);
 *   IMAP_PARSE_ERROR    the input is malformed or over a limit;
 *                       imap_parser_error and imap_parser_error_code say why.
 * After DONE or ERROR the caller reads the arguments (or the tag, to answer
 * BAD) and calls imap_parser_reset before the next command.
 *
 * Limits are checked before anything grows: bytes of a command outside
 * literals (max_command), a literal's size (max_literal, and max_literal_buffered
 * for literals kept in memory), list nesting (max_depth) and the number of
 * arguments (max_args). Line ends: CRLF or a bare LF; a CR not followed by LF is
 * an error. NUL is refused outside literals. */
#ifndef MAILSTACK_IMAP_PARSER_H
#define MAILSTACK_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_parse_result {
	IMAP_PARSE_ERROR = -1,
	IMAP_PARSE_MORE = 0,
	IMAP_PARSE_DONE = 1,
	IMAP_PARSE_LITERAL = 2,
};

enum imap_parse_error {
	IMAP_PERR_NONE = 0,
	IMAP_PERR_SYNTAX,   /* malformed */
	IMAP_PERR_TOOBIG,   /* a literal over max_literal / max_literal_buffered */
	IMAP_PERR_TOOLONG,  /* the command passed max_command */
	IMAP_PERR_TOODEEP,  /* lists nested deeper than max_depth */
	IMAP_PERR_TOOMANY,  /* more than max_args arguments */
};

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,
	IMAP_ARG_LITERAL_EXTERNAL, /* taken by the caller: only len (its size) is set */
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	char *data;                 /* NUL-terminated after len; NULL for lists */
	size_t len;
	struct imap_arg *children;  /* lists */
	size_t count;
	size_t cap;
};

struct imap_parser_limits {
	size_t max_command;          /* bytes outside literals */
	uint64_t max_literal;        /* any literal, also one taken by the caller */
	uint64_t max_literal_buffered; /* a literal the parser keeps in memory */
	unsigned max_depth;          /* list nesting */
	size_t max_args;             /* arguments in all lists together */
};

#define IMAP_PARSER_DEFAULT_MAX_COMMAND (64 * 1024)
#define IMAP_PARSER_DEFAULT_MAX_LITERAL_BUFFERED (64 * 1024)
#define IMAP_PARSER_DEFAULT_MAX_DEPTH 32
#define IMAP_PARSER_DEFAULT_MAX_ARGS 10000

typedef struct imap_parser imap_parser;

/* limits NULL = the defaults (max_literal = max_literal_buffered). */
imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
void imap_parser_free(imap_parser **p);
/* Parses server responses instead of commands: the only difference is that a
 * list may directly follow a list (BODYSTRUCTURE's "((...)(...) \"mixed\")"). */
void imap_parser_set_responses(imap_parser *p, bool responses);
/* Forgets the current command; ready for the next one. */
void imap_parser_reset(imap_parser *p);

/* Feeds bytes; *consumed_r says how many were used (the rest belong to what
 * follows: the literal's data after IMAP_PARSE_LITERAL, the next command after
 * IMAP_PARSE_DONE). */
enum imap_parse_result imap_parser_feed(imap_parser *p, const char *data, size_t len,
					size_t *consumed_r);

/* After IMAP_PARSE_LITERAL: the announced size and whether the client waits
 * for a continuation ("+ ...") before sending it ({n}) or not ({n+}). */
uint64_t imap_parser_literal_size(const imap_parser *p);
bool imap_parser_literal_sync(const imap_parser *p);
/* The parser will keep the literal: 0, or -1 (error TOOBIG) when it is larger
 * than max_literal_buffered. Feeding without calling this accepts implicitly. */
int imap_parser_literal_accept(imap_parser *p);
/* The caller reads the literal's bytes itself; the parser records an
 * IMAP_ARG_LITERAL_EXTERNAL argument and continues after the data. */
void imap_parser_literal_external(imap_parser *p);
/* Depth of list nesting at the current point (0 = top level). */
unsigned imap_parser_depth(const imap_parser *p);

/* The top-level arguments read so far (complete ones). */
const struct imap_arg *imap_parser_args(const imap_parser *p, size_t *count_r);
/* The tag (first argument when it is an atom), or NULL. */
const char *imap_parser_tag(const imap_parser *p);
const char *imap_parser_error(const imap_parser *p);
enum imap_parse_error imap_parser_error_code(const imap_parser *p);

/* ---- helpers for reading arguments ---- */

/* An atom, quoted string or literal: the string (NULL for lists and external literals). */
const char *imap_arg_string(const struct imap_arg *a);
/* An atom equal to name, case-insensitively. */
bool imap_arg_atom_is(const struct imap_arg *a, const char *name);
/* An atom "NIL" (an nstring that is absent). */
bool imap_arg_is_nil(const struct imap_arg *a);
/* True when the string contains no NUL byte. */
bool imap_arg_string_clean(const struct imap_arg *a);

/* Appends s to out as an IMAP string: an atom-safe quoted string when it can be
 * one, else a literal (for CR, LF, NUL, 8-bit or long text). NULL gives NIL. */
struct buf;
void imap_append_string(struct buf *out, const char *s, size_t len);
/* As imap_append_string, always quoted or literal (never NIL). */
void imap_append_nstring(struct buf *out, const char *s);

#endif
