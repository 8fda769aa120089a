/* transcript.c: `mailctl transcript`, the live protocol conversations of all
 * daemons, for watching a client talk to the servers.
 *
 * Each daemon appends every protocol line it reads or writes to
 * DATADIR/log/transcript.log (log_transcript in common/log.h, secrets already
 * masked there): comp, proto, conn, dir (C or S), tls, user and line. This
 * command prints the recent lines and then follows the file, filtered by
 * protocol and by user. Connection numbers are per daemon, so a conversation is
 * named "comp#conn". A user filter keeps a conversation from the moment its
 * session is known to belong to that user (after authentication), and keeps
 * following it until it ends.
 *
 * --last prints only the newest conversation in which the client said
 * something (readiness probes that connect and leave are not conversations),
 * and stops: the demo shows "the SMTP session that just happened" with it. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "ctl.h"
#include "log.h"

#define TRANSCRIPT_MAX_LINE (64 * 1024)
#define TRANSCRIPT_POLL_US 100000
#define TRANSCRIPT_MAX_TRACKED 4096

struct transcript_filter {
	const char *proto;
	const char *comp;
	const char *user;
	/* --last: only this conversation ("comp#conn"), once it is known. */
	char *only;
	/* Conversations ("comp#conn") seen with the wanted user. */
	char *tracked[TRANSCRIPT_MAX_TRACKED];
	size_t tracked_count;
};

static volatile sig_atomic_t transcript_stop;

/* Ctrl-C: stops following at the next poll. */
static void on_signal(int sig)
{
	(void)sig;
	transcript_stop = 1;
}

/* True when the conversation (comp#conn) passed the filter earlier. */
static bool is_tracked(struct transcript_filter *f, const char *conversation)
{
	for (size_t i = 0; i < f->tracked_count; i++) {
		if (strcmp(f->tracked[i], conversation) == 0)
			return true;
	}
	return false;
}

/* Remembers a conversation that passed the filter, forgetting the oldest past the bound. */
static void track(struct transcript_filter *f, const char *conversation)
{
	if (is_tracked(f, conversation))
		return;
	if (f->tracked_count == TRANSCRIPT_MAX_TRACKED) {
		/* Forget the oldest conversation: a bound on memory for long follows. */
		free(f->tracked[0]);
		memmove(f->tracked, f->tracked + 1, (TRANSCRIPT_MAX_TRACKED - 1) * sizeof(char *));
		f->tracked_count--;
	}
	f->tracked[f->tracked_count++] = xstrdup(conversation);
}

/* Formats one transcript record if it passes the filter; NULL otherwise. */
static char *format_record(struct transcript_filter *f, const char *text)
{
	char **keys, **values;
	size_t n = log_parse_line(text, &keys, &values);
	char *result = NULL;
	const char *proto = log_pairs_get(n, keys, values, "proto");
	const char *comp = log_pairs_get(n, keys, values, "comp");
	const char *conn = log_pairs_get(n, keys, values, "conn");
	const char *dir = log_pairs_get(n, keys, values, "dir");
	const char *tls = log_pairs_get(n, keys, values, "tls");
	const char *user = log_pairs_get(n, keys, values, "user");
	const char *line = log_pairs_get(n, keys, values, "line");
	const char *ts = log_pairs_get(n, keys, values, "ts");
	if (proto == NULL || comp == NULL || conn == NULL || dir == NULL || line == NULL)
		goto out;
	if (f->proto != NULL && strcasecmp(proto, f->proto) != 0)
		goto out;
	if (f->comp != NULL && strcasecmp(comp, f->comp) != 0)
		goto out;
	char conversation[96];
	snprintf(conversation, sizeof(conversation), "%s#%s", comp, conn);
	if (f->only != NULL && strcmp(f->only, conversation) != 0)
		goto out;
	if (f->user != NULL && f->only == NULL) {
		if (user != NULL && strcasecmp(user, f->user) == 0)
			track(f, conversation);
		if (!is_tracked(f, conversation))
			goto out;
	}
	/* "2026-11-26T10:00:00.123Z" -> "10:00:00.123" */
	const char *clock = ts != NULL && strchr(ts, 'T') != NULL ? strchr(ts, 'T') + 1 : "";
	size_t clock_len = strcspn(clock, "Z");
	result = xasprintf("%.*s %-4s %-12s %-5s %s: %s", (int)clock_len, clock, proto,
			   conversation, tls != NULL && strcmp(tls, "yes") == 0 ? "TLS" : "plain",
			   dir, line);
out:
	log_pairs_free(n, &keys, &values);
	return result;
}

/* --last, first pass: the conversation of the newest client line that passes
 * the protocol and user filters, from the file's position; the position is
 * restored. NULL when there is none (caller frees). */
static char *find_last_conversation(FILE *in, const struct transcript_filter *f)
{
	long start = ftell(in);
	char *found = NULL;
	buf_t line = BUF_INIT;
	int ch;
	bool done = false;
	while (!done) {
		buf_reset(&line);
		bool too_long = false;
		while ((ch = getc(in)) != EOF && ch != '\n') {
			if (line.len < TRANSCRIPT_MAX_LINE)
				buf_append_char(&line, (char)ch);
			else
				too_long = true;
		}
		done = ch == EOF;
		if (done || too_long)
			continue;
		char **keys, **values;
		size_t n = log_parse_line(buf_cstr(&line), &keys, &values);
		const char *proto = log_pairs_get(n, keys, values, "proto");
		const char *comp = log_pairs_get(n, keys, values, "comp");
		const char *conn = log_pairs_get(n, keys, values, "conn");
		const char *dir = log_pairs_get(n, keys, values, "dir");
		const char *user = log_pairs_get(n, keys, values, "user");
		if (proto != NULL && comp != NULL && conn != NULL && dir != NULL &&
		    strcmp(dir, "C") == 0 && (f->proto == NULL || strcasecmp(proto, f->proto) == 0) &&
		    (f->comp == NULL || strcasecmp(comp, f->comp) == 0) &&
		    (f->user == NULL || (user != NULL && strcasecmp(user, f->user) == 0))) {
			free(found);
			found = xasprintf("%s#%s", comp, conn);
		}
		log_pairs_free(n, &keys, &values);
	}
	buf_free(&line);
	clearerr(in);
	fseek(in, start, SEEK_SET);
	return found;
}

/* Prints the records from the file's position to its end; a partial last line
 * is left for the next poll. */
static void print_new(FILE *in, struct transcript_filter *f)
{
	buf_t line = BUF_INIT;
	for (;;) {
		long start = ftell(in);
		int ch;
		bool complete = false, too_long = false;
		buf_reset(&line);
		while ((ch = getc(in)) != EOF) {
			if (ch == '\n') {
				complete = true;
				break;
			}
			if (line.len < TRANSCRIPT_MAX_LINE)
				buf_append_char(&line, (char)ch);
			else
				too_long = true;
		}
		if (!complete) {
			clearerr(in);
			fseek(in, start, SEEK_SET);
			break;
		}
		if (too_long)
			continue;
		char *shown = format_record(f, buf_cstr(&line));
		if (shown != NULL) {
			puts(shown);
			free(shown);
		}
	}
	buf_free(&line);
	fflush(stdout);
}

static void transcript_usage(FILE *out)
{
	fputs("usage: mailctl transcript [--dir D] [--proto smtp|lmtp|imap|pop3] [--user U]\n"
	      "                          [--comp mta|mda|imapd|pop3d]\n"
	      "                          [--no-follow] [--all] [--last]\n"
	      "  prints the protocol conversations of all daemons (secrets masked),\n"
	      "  the recent ones first (--all: from the beginning), then follows them\n"
	      "  until Ctrl-C (--no-follow: stops at the end of what is there)\n"
	      "  --comp: only the conversations of one daemon (the mda's side of LMTP)\n"
	      "  --last: only the newest conversation in which the client spoke, then stop\n"
	      "       mailctl transcript --prune\n"
	      "  drops lines older than log.transcript_retention (mailctl up does it hourly)\n",
	      out);
}

int cmd_transcript(int argc, char **argv, const char *datadir)
{
	static const struct option options[] = {
		{"proto", required_argument, NULL, 'p'},
		{"user", required_argument, NULL, 'u'},
		{"comp", required_argument, NULL, 'c'},
		{"no-follow", no_argument, NULL, 'n'},
		{"all", no_argument, NULL, 'a'},
		{"last", no_argument, NULL, 'l'},
		{"prune", no_argument, NULL, 'P'},
		{"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct transcript_filter filter = {0};
	bool follow = true, all = false, last = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "p:u:c:nal", options, NULL)) != -1) {
		switch (opt) {
		case 'p': filter.proto = optarg; break;
		case 'u': filter.user = optarg; break;
		case 'c': filter.comp = optarg; break;
		case 'n': follow = false; break;
		case 'a': all = true; break;
		case 'l': last = true; follow = false; break;
		case 'P':
			return ctl_prune_log(datadir, "transcript.log", "log.transcript_retention",
					     "transcript lines");
		case 'd': break; /* handled by main.c */
		case 'h': transcript_usage(stdout); return 0;
		default: transcript_usage(stderr); return 1;
		}
	}
	static const char *const protos[] = {"smtp", "lmtp", "imap", "pop3"};
	if (filter.proto != NULL) {
		bool known = false;
		for (size_t i = 0; i < 4; i++)
			known = known || strcasecmp(filter.proto, protos[i]) == 0;
		if (!known) {
			fprintf(stderr, "mailctl: unknown protocol '%s' (smtp, lmtp, imap or pop3)\n",
				filter.proto);
			return 1;
		}
	}
	if (optind < argc) {
		transcript_usage(stderr);
		return 1;
	}
	char *path = xasprintf("%s/log/transcript.log", datadir);
	FILE *in = fopen(path, "r");
	if (in == NULL && !follow) {
		fprintf(stderr, "mailctl: no transcript yet (%s: %s)\n", path, strerror(errno));
		free(path);
		return 1;
	}
	if (in != NULL && !all) {
		/* Start near the end: the last 64 KiB, from a line boundary. */
		if (fseek(in, 0, SEEK_END) == 0 && ftell(in) > 65536) {
			fseek(in, -65536, SEEK_END);
			int ch;
			while ((ch = getc(in)) != EOF && ch != '\n')
				;
		} else {
			fseek(in, 0, SEEK_SET);
		}
	}
	if (in != NULL && last) {
		filter.only = find_last_conversation(in, &filter);
		if (filter.only == NULL) {
			fprintf(stderr, "mailctl: no %s%sconversation in %s%s\n",
				filter.proto != NULL ? filter.proto : "", filter.proto != NULL ? " " : "",
				path, all ? "" : " (the last 64 KiB; --all reads it whole)");
			fclose(in);
			free(path);
			return 1;
		}
	}
	if (in != NULL)
		print_new(in, &filter);
	if (follow) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		while (!transcript_stop) {
			usleep(TRANSCRIPT_POLL_US);
			struct stat on_disk, open_file;
			if (in != NULL && stat(path, &on_disk) == 0 && fstat(fileno(in), &open_file) == 0 &&
			    on_disk.st_ino != open_file.st_ino) {
				/* Pruning moved the file aside: finish it, then follow the new one. */
				print_new(in, &filter);
				fclose(in);
				in = NULL;
			}
			if (in == NULL)
				in = fopen(path, "r");
			if (in != NULL)
				print_new(in, &filter);
		}
	}
	if (in != NULL)
		fclose(in);
	for (size_t i = 0; i < filter.tracked_count; i++)
		free(filter.tracked[i]);
	free(filter.only);
	free(path);
	return 0;
}
