/* sieve_run.h: runs a parsed Sieve script (common/sieve.h) against one
 * message and says what to do with it. Pure: it reads the message's header
 * and envelope and returns a list of actions; the caller carries them out
 * (files the message, re-submits redirects, sends the vacation reply). */
#ifndef MAILSTACK_MDA_SIEVE_RUN_H
#define MAILSTACK_MDA_SIEVE_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "header.h"
#include "sieve.h"

#define SIEVE_MAX_ACTIONS 32   /* actions one run may produce */
#define SIEVE_MAX_REDIRECTS 4  /* redirects one run may produce */

struct sieve_input {
	const struct header *header; /* the message's header, parsed */
	const char *envelope_from;   /* "" for the null sender */
	const char *envelope_to;     /* the recipient as given, +detail included */
	uint64_t size;               /* the message's size in octets */
};

enum sieve_action_kind {
	SIEVE_ACTION_KEEP,      /* file into INBOX */
	SIEVE_ACTION_FILEINTO,
	SIEVE_ACTION_REDIRECT,
	SIEVE_ACTION_DISCARD,
	SIEVE_ACTION_VACATION,
};

struct sieve_action {
	enum sieve_action_kind kind;
	unsigned line;                            /* the command that chose it */
	const char *folder;                       /* fileinto (points into the script) */
	bool create;
	const char *address;                      /* redirect */
	const struct sieve_command *vacation;     /* vacation: its parameters */
};

struct sieve_result {
	struct sieve_action *actions;
	size_t count;
	bool implicit_keep; /* no keep/fileinto/redirect/discard ran: file into INBOX */
	char *error;        /* set when the run failed: deliver to INBOX, log this */
};

/* Runs script against in. Returns 0, or -1 with r->error set (the actions are
 * then dropped and implicit_keep is true, RFC 5228 2.10.6). */
int sieve_run(const struct sieve_script *script, const struct sieve_input *in,
	      struct sieve_result *r);
void sieve_result_free(struct sieve_result *r);
/* "keep", "fileinto", ... for logs. */
const char *sieve_action_name(enum sieve_action_kind kind);

/* The matching of RFC 5228 2.7.1, exposed for tests: does value match key? */
bool sieve_match(enum sieve_match_type match, enum sieve_comparator comparator,
		 const char *value, const char *key);

#endif
