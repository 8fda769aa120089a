/* sieve.h: the Sieve filter language (RFC 5228), the subset mailstack runs,
 * parsed and checked into a typed tree.
 *
 * The subset: `require`; `if`/`elsif`/`else`; tests `header`, `address`,
 * `envelope`, `exists`, `size`, `allof`, `anyof`, `not`, `true`, `false`
 * with the match types :is/:contains/:matches, the comparators
 * i;ascii-casemap and i;octet and the address parts :all/:localpart/:domain
 * (plus :user/:detail of "subaddress", RFC 5233); actions `keep`,
 * `fileinto` (with :create of "mailbox", RFC 5490), `discard`, `redirect`,
 * `stop` and `vacation` (RFC 5230).
 *
 * The parser is used twice: by mailctl when a script is stored (a script that
 * does not parse is refused, and the message names the line and column) and
 * by the mda before it runs a script (mda/sieve_run.c walks the tree). A
 * script that requires an extension outside the subset, or uses a command,
 * test or tag whose extension it did not require, is refused here rather than
 * ignored at delivery. Scripts are whole strings (stored in users.sqlite), so
 * the parser takes the whole text; its input and nesting are bounded by the
 * SIEVE_MAX_* limits below. */
#ifndef MAILSTACK_SIEVE_H
#define MAILSTACK_SIEVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIEVE_MAX_SCRIPT_SIZE (256 * 1024) /* bytes of script text */
#define SIEVE_MAX_NESTING 32               /* blocks and tests inside each other */
#define SIEVE_MAX_LIST_ITEMS 1024          /* strings in one string list */
#define SIEVE_MAX_TESTS 256                /* tests in one anyof/allof */
#define SIEVE_VACATION_MIN_DAYS 1
#define SIEVE_VACATION_MAX_DAYS 90
#define SIEVE_VACATION_DEFAULT_DAYS 7

/* Extensions the script named in `require` (bits). */
enum sieve_extension {
	SIEVE_EXT_FILEINTO = 1 << 0,
	SIEVE_EXT_ENVELOPE = 1 << 1,
	SIEVE_EXT_VACATION = 1 << 2,
	SIEVE_EXT_MAILBOX = 1 << 3,
	SIEVE_EXT_SUBADDRESS = 1 << 4,
	SIEVE_EXT_COMPARATOR_OCTET = 1 << 5,
	SIEVE_EXT_COMPARATOR_CASEMAP = 1 << 6,
};

enum sieve_match_type { SIEVE_MATCH_IS, SIEVE_MATCH_CONTAINS, SIEVE_MATCH_MATCHES };
enum sieve_comparator { SIEVE_COMPARATOR_ASCII_CASEMAP, SIEVE_COMPARATOR_OCTET };
enum sieve_address_part {
	SIEVE_PART_ALL,
	SIEVE_PART_LOCALPART,
	SIEVE_PART_DOMAIN,
	SIEVE_PART_USER,   /* local part without the +detail (RFC 5233) */
	SIEVE_PART_DETAIL, /* the +detail; a test on a missing detail fails */
};

struct sieve_strings {
	char **items;
	size_t count;
};

enum sieve_test_kind {
	SIEVE_TEST_TRUE,
	SIEVE_TEST_FALSE,
	SIEVE_TEST_NOT,
	SIEVE_TEST_ANYOF,
	SIEVE_TEST_ALLOF,
	SIEVE_TEST_HEADER,
	SIEVE_TEST_ADDRESS,
	SIEVE_TEST_ENVELOPE,
	SIEVE_TEST_EXISTS,
	SIEVE_TEST_SIZE,
};

struct sieve_test {
	enum sieve_test_kind kind;
	unsigned line, column;
	enum sieve_match_type match;
	enum sieve_comparator comparator;
	enum sieve_address_part part;
	struct sieve_strings fields; /* header names, or envelope parts ("from", "to") */
	struct sieve_strings keys;
	bool over;                   /* size: :over (else :under) */
	uint64_t limit;              /* size: the number, quantifier applied */
	struct sieve_test *tests;    /* not (one), anyof, allof */
	size_t test_count;
};

enum sieve_command_kind {
	SIEVE_CMD_IF,
	SIEVE_CMD_KEEP,
	SIEVE_CMD_DISCARD,
	SIEVE_CMD_STOP,
	SIEVE_CMD_FILEINTO,
	SIEVE_CMD_REDIRECT,
	SIEVE_CMD_VACATION,
};

struct sieve_command;

struct sieve_block {
	struct sieve_command *commands;
	size_t count;
};

/* One arm of an if/elsif/else chain; test is NULL for else. */
struct sieve_branch {
	struct sieve_test *test;
	struct sieve_block block;
};

struct sieve_command {
	enum sieve_command_kind kind;
	unsigned line, column;
	struct sieve_branch *branches; /* if: the if, each elsif, the else */
	size_t branch_count;
	char *argument;                /* fileinto: folder; redirect: address; vacation: reason */
	bool create;                   /* fileinto :create */
	/* vacation */
	int64_t days;
	char *subject;                 /* or NULL */
	char *from;                    /* or NULL */
	char *handle;                  /* or NULL */
	bool mime;
	struct sieve_strings addresses;
};

struct sieve_script {
	unsigned extensions; /* enum sieve_extension bits */
	struct sieve_block top;
};

/* Parses and checks a script. On error returns -1 and *err_r (caller frees)
 * is "line L, column C: what is wrong". */
int sieve_parse(const char *text, size_t len, struct sieve_script **script_r, char **err_r);
void sieve_script_free(struct sieve_script **script);

/* Names for logs: "fileinto", "header", ... */
const char *sieve_command_name(enum sieve_command_kind kind);
const char *sieve_test_name(enum sieve_test_kind kind);
/* The extensions the parser accepts in `require`, space-separated. */
const char *sieve_supported_extensions(void);

#endif
