/* trace.c: `mailctl trace`, one message's journey across every component.
 *
 * Every daemon appends its lifecycle events to DATADIR/log/events.log, one
 * logfmt line each (log_event in common/log.h): ts, comp, id, event and the
 * event's own pairs. This command reads that file back, keeps the lines of one
 * lifecycle id and prints them as a timeline (or as JSON, one object per
 * event), and with --follow keeps printing new ones as they are appended.
 *
 * A message can be named by its lifecycle id (from the 250 reply or the
 * Received field), by its Message-ID (the mta records it as message_id in the
 * "received" event, or, failing that, it is looked up in the mailboxes'
 * parsed headers), or as --last, the newest message received. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "store.h"

/* Lines longer than this in events.log are skipped (a bound, not a limit any
 * real event comes near). */
#define TRACE_MAX_LINE (64 * 1024)
#define TRACE_FOLLOW_POLL_US 200000

struct trace_event {
	size_t count;
	char **keys;
	char **values;
};

/* Frees an event's pairs. */
static void trace_event_free(struct trace_event *e)
{
	log_pairs_free(e->count, &e->keys, &e->values);
	e->count = 0;
}

/* The value of one of the event's keys, or NULL. */
static const char *event_get(const struct trace_event *e, const char *key)
{
	return log_pairs_get(e->count, e->keys, e->values, key);
}

/* Reads the next line of f into line (without the LF); false at the end.
 * Over-long lines are consumed and skipped. */
static bool read_line(FILE *f, buf_t *line)
{
	buf_reset(line);
	int ch;
	bool too_long = false;
	while ((ch = getc(f)) != EOF) {
		if (ch == '\n') {
			if (too_long) {
				buf_reset(line);
				too_long = false;
				continue;
			}
			return true;
		}
		if (line->len >= TRACE_MAX_LINE)
			too_long = true;
		else
			buf_append_char(line, (char)ch);
	}
	return false;
}

/* Parses one events line; false unless it has an id and an event. */
static bool parse_event(const char *line, struct trace_event *e_r)
{
	e_r->count = log_parse_line(line, &e_r->keys, &e_r->values);
	return e_r->count > 0 && event_get(e_r, "id") != NULL && event_get(e_r, "event") != NULL;
}

/* Compares a Message-ID with or without its angle brackets. */
static bool message_id_matches(const char *stored, const char *wanted)
{
	size_t ls = strlen(stored), lw = strlen(wanted);
	if (ls >= 2 && stored[0] == '<' && stored[ls - 1] == '>') {
		stored++;
		ls -= 2;
	}
	if (lw >= 2 && wanted[0] == '<' && wanted[lw - 1] == '>') {
		wanted++;
		lw -= 2;
	}
	return ls == lw && strncmp(stored, wanted, ls) == 0;
}

/* Looks through one events file for what the user named (see resolve_id);
 * found is replaced by a later match when looking for the newest message. */
static char *resolve_id_in(const char *path, const char *wanted, char *found)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return found;
	buf_t line = BUF_INIT;
	while (read_line(f, &line)) {
		struct trace_event e;
		if (!parse_event(buf_cstr(&line), &e)) {
			trace_event_free(&e);
			continue;
		}
		const char *event = event_get(&e, "event");
		const char *mid = event_get(&e, "message_id");
		bool match = wanted == NULL ? strcmp(event, "received") == 0
					    : mid != NULL && message_id_matches(mid, wanted);
		if (match) {
			free(found);
			found = xstrdup(event_get(&e, "id"));
			if (wanted != NULL) {
				trace_event_free(&e);
				break;
			}
		}
		trace_event_free(&e);
	}
	buf_free(&line);
	fclose(f);
	return found;
}

/* Finds the lifecycle id for what the user named: an id, a Message-ID, or the
 * newest received message (wanted NULL), across the event files (oldest
 * first). Caller frees; NULL if none. */
static char *resolve_id(char **files, const char *wanted)
{
	if (wanted != NULL && lifecycle_id_valid(wanted))
		return xstrdup(wanted);
	char *found = NULL;
	for (size_t i = 0; files[i] != NULL; i++) {
		found = resolve_id_in(files[i], wanted, found);
		if (found != NULL && wanted != NULL)
			break;
	}
	return found;
}

/* Frees a NULL-terminated list of paths. */
static void free_files(char **files)
{
	for (size_t i = 0; files[i] != NULL; i++)
		free(files[i]);
	free(files);
}

int ctl_prune_log(const char *datadir, const char *file, const char *retention_key,
		  const char *what)
{
	struct config *cfg = NULL;
	if (ctl_load_config(datadir, &cfg) < 0)
		return 1;
	char *log_dir = xasprintf("%s/log", datadir);
	size_t removed = 0;
	char *err = NULL;
	int64_t retention = config_int(cfg, retention_key);
	int rc = log_prune_file(log_dir, file, retention, 1500, &removed, &err);
	if (rc < 0) {
		fprintf(stderr, "mailctl: %s\n", err);
		free(err);
	} else {
		printf("pruned %zu %s older than %lld seconds\n", removed, what, (long long)retention);
	}
	free(log_dir);
	config_free(&cfg);
	return rc < 0 ? 1 : 0;
}

/* Looks for a Message-ID in one mailbox's parsed headers; the lifecycle id
 * of the first message that has it (caller frees), or NULL. */
static char *mailbox_find_message_id(const char *datadir, const char *address,
				     const char *wanted)
{
	store *st = NULL;
	char *err = NULL;
	if (store_open(datadir, address, &st, &err) < 0) {
		free(err);
		return NULL;
	}
	char *found = NULL;
	struct store_folder *folders = NULL;
	size_t folder_count = 0;
	if (store_folder_list(st, &folders, &folder_count) < 0)
		folder_count = 0;
	for (size_t f = 0; found == NULL && f < folder_count; f++) {
		struct store_msg_headers *list = NULL;
		size_t count = 0;
		if (store_msg_headers_list(st, folders[f].name, &list, &count) < 0)
			continue;
		for (size_t i = 0; found == NULL && i < count; i++) {
			if (list[i].message_id == NULL || !message_id_matches(list[i].message_id, wanted))
				continue;
			struct store_msg m;
			if (store_msg_get(st, folders[f].name, list[i].uid, &m) == 0) {
				if (m.lifecycle_id != NULL)
					found = xstrdup(m.lifecycle_id);
				store_msg_free(&m);
			}
		}
		store_msg_headers_list_free(list, count);
	}
	store_folder_list_free(folders, folder_count);
	store_close(&st);
	return found;
}

/* The Message-ID fallback: every DATADIR/mail/DOMAIN/LOCAL.sqlite in turn. */
static char *mailboxes_find_message_id(const char *datadir, const char *wanted)
{
	char *mail_dir = xasprintf("%s/mail", datadir);
	DIR *domains = opendir(mail_dir);
	char *found = NULL;
	struct dirent *d;
	while (domains != NULL && found == NULL && (d = readdir(domains)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		char *domain_dir = xasprintf("%s/%s", mail_dir, d->d_name);
		DIR *users = opendir(domain_dir);
		struct dirent *u;
		while (users != NULL && found == NULL && (u = readdir(users)) != NULL) {
			size_t len = strlen(u->d_name);
			if (u->d_name[0] == '.' || len <= 7 || strcmp(u->d_name + len - 7, ".sqlite") != 0)
				continue;
			char *address = xasprintf("%.*s@%s", (int)(len - 7), u->d_name, d->d_name);
			found = mailbox_find_message_id(datadir, address, wanted);
			free(address);
		}
		if (users != NULL)
			closedir(users);
		free(domain_dir);
	}
	if (domains != NULL)
		closedir(domains);
	free(mail_dir);
	return found;
}

/* Appends s as a JSON string (RFC 8259 7 escapes). */
static void json_string(buf_t *out, const char *s)
{
	buf_append_char(out, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		switch (*p) {
		case '"': buf_append_str(out, "\\\""); break;
		case '\\': buf_append_str(out, "\\\\"); break;
		case '\n': buf_append_str(out, "\\n"); break;
		case '\r': buf_append_str(out, "\\r"); break;
		case '\t': buf_append_str(out, "\\t"); break;
		default:
			if (*p < 0x20)
				buf_printf(out, "\\u%04x", *p);
			else
				buf_append_char(out, (char)*p);
		}
	}
	buf_append_char(out, '"');
}

/* Prints an event as one JSON object on one line. */
static void print_json(const struct trace_event *e)
{
	buf_t out = BUF_INIT;
	buf_append_char(&out, '{');
	for (size_t i = 0; i < e->count; i++) {
		if (i > 0)
			buf_append_char(&out, ',');
		json_string(&out, e->keys[i]);
		buf_append_char(&out, ':');
		json_string(&out, e->values[i]);
	}
	buf_append_str(&out, "}\n");
	fputs(buf_cstr(&out), stdout);
	buf_free(&out);
}

/* One line of description for an event, from its kind's most telling pairs.
 * comp NULL matches any component; a row naming a component comes first
 * (the mta's "delivered" is a hand-over, the mda's is the mailbox). */
struct event_story {
	const char *comp;
	const char *event;
	const char *text;     /* what happened */
	const char *keys[8];  /* pairs shown first, in this order */
};

static const struct event_story stories[] = {
	{NULL, "received", "accepted over SMTP",
	 {"proto", "from", "sender", "rcpts", "auth", "tls", "size", "message_id"}},
	{NULL, "rcpt", "recipient accepted", {"rcpt", "orig"}},
	{NULL, "queued", "committed to the queue", {"rcpts", "size"}},
	{NULL, "attempt", "delivery attempt", {"rcpt", "proto", "hop", "status", "reply"}},
	{NULL, "deferred", "deferred, will retry",
	 {"rcpt", "status", "reply", "attempts", "next_try"}},
	{"mda", "delivered", "filed in the mailbox", {"rcpt", "user", "folder", "uid", "rule"}},
	{NULL, "delivered", "delivered to the next hop", {"rcpt", "proto", "hop", "reply"}},
	{NULL, "failed", "the mda could not file it", {"rcpt", "user", "status", "reason"}},
	{NULL, "filtered", "filter rule applied", {"rcpt", "user", "rule", "action", "folder"}},
	{NULL, "redirected", "redirected by a filter", {"rcpt", "user", "to", "rule"}},
	{NULL, "discarded", "discarded by a filter", {"rcpt", "user", "rule"}},
	{NULL, "vacation", "vacation reply considered", {"rcpt", "to", "result", "reason"}},
	{NULL, "bounced", "failed permanently: a bounce goes to the sender",
	 {"rcpt", "status", "reply"}},
	{NULL, "delayed", "delay warning sent to the sender", {"rcpt", "dsn"}},
	{NULL, "dsn", "delivery status notification sent", {"rcpt", "kind", "dsn"}},
	{NULL, "removed", "left the queue: every recipient is done", {NULL}},
	{NULL, "appended", "appended over IMAP", {"user", "folder", "uid"}},
	{NULL, "fetched", "read over IMAP", {"user", "folder", "uid", "section"}},
	{NULL, "retrieved", "read over POP3", {"user", "command"}},
	{NULL, "flags", "flags changed", {"user", "folder", "uid", "flags"}},
	{NULL, "expunged", "expunged", {"user", "folder", "uid", "proto"}},
	{NULL, "deleted", "deleted over POP3", {"user", "proto"}},
};

/* The sentence that tells this event of this component, or NULL. */
static const struct event_story *story_for(const char *comp, const char *event)
{
	for (size_t i = 0; i < sizeof(stories) / sizeof(stories[0]); i++) {
		if (strcmp(stories[i].event, event) == 0 &&
		    (stories[i].comp == NULL || (comp != NULL && strcmp(stories[i].comp, comp) == 0)))
			return &stories[i];
	}
	return NULL;
}

/* True when the story already shows key, so the row need not repeat it. */
static bool key_is_shown_first(const struct event_story *story, const char *key)
{
	if (story == NULL)
		return false;
	for (size_t i = 0; i < 8 && story->keys[i] != NULL; i++) {
		if (strcmp(story->keys[i], key) == 0)
			return true;
	}
	return false;
}

/* Prints an event as a timeline row: time, component, story, the other keys. */
static void print_timeline_row(const struct trace_event *e)
{
	const char *ts = event_get(e, "ts");
	const char *comp = event_get(e, "comp");
	const char *event = event_get(e, "event");
	/* "2026-11-26T10:00:00.123Z" -> "2026-11-26 10:00:00.123" */
	char when[32] = "?";
	if (ts != NULL) {
		snprintf(when, sizeof(when), "%s", ts);
		char *t = strchr(when, 'T');
		if (t != NULL)
			*t = ' ';
		size_t n = strlen(when);
		if (n > 0 && when[n - 1] == 'Z')
			when[n - 1] = '\0';
	}
	const struct event_story *story = story_for(comp, event);
	buf_t row = BUF_INIT;
	buf_printf(&row, "%-23s  %-6s %-10s", when, comp != NULL ? comp : "?", event);
	if (story != NULL)
		buf_printf(&row, " %s", story->text);
	for (size_t k = 0; story != NULL && k < 8 && story->keys[k] != NULL; k++) {
		const char *v = event_get(e, story->keys[k]);
		if (v != NULL) {
			buf_printf(&row, "\n%45s%s=", "", story->keys[k]);
			log_append_value(&row, v);
		}
	}
	for (size_t i = 0; i < e->count; i++) {
		const char *k = e->keys[i];
		if (strcmp(k, "ts") == 0 || strcmp(k, "comp") == 0 || strcmp(k, "id") == 0 ||
		    strcmp(k, "event") == 0 || strcmp(k, "level") == 0 || key_is_shown_first(story, k))
			continue;
		buf_printf(&row, "\n%45s%s=", "", k);
		log_append_value(&row, e->values[i]);
	}
	puts(buf_cstr(&row));
	buf_free(&row);
}

static volatile sig_atomic_t trace_stop;

/* Ctrl-C: stops --follow at the next poll. */
static void on_signal(int sig)
{
	(void)sig;
	trace_stop = 1;
}

/* Prints the events of id found in f from its current position; returns how
 * many were printed. */
static size_t print_events(FILE *f, const char *id, const char *comp, bool json)
{
	size_t printed = 0;
	buf_t line = BUF_INIT;
	long start = ftell(f);
	while (read_line(f, &line)) {
		struct trace_event e;
		if (parse_event(buf_cstr(&line), &e) && strcmp(event_get(&e, "id"), id) == 0 &&
		    (comp == NULL || (event_get(&e, "comp") != NULL &&
				      strcmp(event_get(&e, "comp"), comp) == 0))) {
			if (json)
				print_json(&e);
			else
				print_timeline_row(&e);
			printed++;
		}
		trace_event_free(&e);
		start = ftell(f);
	}
	/* A partly written last line is read again on the next poll. */
	if (line.len > 0)
		fseek(f, start, SEEK_SET);
	else
		clearerr(f);
	buf_free(&line);
	fflush(stdout);
	return printed;
}

static void trace_usage(FILE *out)
{
	fputs("usage: mailctl trace [--dir D] [--json] [--follow] [--comp C] ID|MESSAGE-ID|--last\n"
	      "  ID          the lifecycle id from a 250 reply or a Received field\n"
	      "  MESSAGE-ID  a Message-ID, with or without <>\n"
	      "  --last      the newest message received\n"
	      "  --json      one JSON object per event\n"
	      "  --follow    keep printing new events (Ctrl-C to stop)\n"
	      "  --comp C    only the events of one component (mta, mda, imapd, pop3d)\n"
	      "       mailctl trace --prune\n"
	      "  drops events older than log.event_retention (mailctl up does it hourly)\n",
	      out);
}

int cmd_trace(int argc, char **argv, const char *datadir)
{
	static const struct option options[] = {
		{"json", no_argument, NULL, 'j'},
		{"follow", no_argument, NULL, 'f'},
		{"last", no_argument, NULL, 'l'},
		{"comp", required_argument, NULL, 'c'},
		{"prune", no_argument, NULL, 'p'},
		{"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool json = false, follow = false, last = false, prune = false;
	const char *comp = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "jflc:", options, NULL)) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		case 'f': follow = true; break;
		case 'l': last = true; break;
		case 'c': comp = optarg; break;
		case 'p': prune = true; break;
		case 'd': break; /* handled by main.c */
		case 'h': trace_usage(stdout); return 0;
		default: trace_usage(stderr); return 1;
		}
	}
	const char *wanted = optind < argc ? argv[optind] : NULL;
	if (prune && wanted == NULL && !last)
		return ctl_prune_log(datadir, "events.log", "log.event_retention", "events");
	if ((wanted == NULL) == !last || optind + (wanted != NULL) < argc || prune) {
		trace_usage(stderr);
		return 1;
	}
	char *path = xasprintf("%s/log/events.log", datadir);
	char *log_dir = xasprintf("%s/log", datadir);
	char **files = log_event_files(log_dir);
	free(log_dir);
	char *id = resolve_id(files, wanted);
	if (id == NULL && wanted != NULL)
		id = mailboxes_find_message_id(datadir, wanted);
	if (id == NULL) {
		if (access(path, R_OK) < 0)
			fprintf(stderr, "mailctl: no events yet (%s: %s)\n", path, strerror(errno));
		else if (wanted == NULL)
			fprintf(stderr, "mailctl: no message has been received yet\n");
		else
			fprintf(stderr, "mailctl: no message with id or Message-ID '%s'\n", wanted);
		free(path);
		free_files(files);
		return 1;
	}
	if (!json)
		printf("Message %s\n", id);
	/* The archived events first (events.log.1, then a file being pruned). */
	size_t printed = 0;
	for (size_t i = 0; files[i] != NULL; i++) {
		if (strcmp(files[i], path) == 0)
			continue;
		FILE *old = fopen(files[i], "r");
		if (old != NULL) {
			printed += print_events(old, id, comp, json);
			fclose(old);
		}
	}
	free_files(files);
	FILE *f = fopen(path, "r");
	if (f != NULL)
		printed += print_events(f, id, comp, json);
	if (printed == 0 && !follow) {
		fprintf(stderr, "mailctl: no events for %s\n", id);
		if (f != NULL)
			fclose(f);
		free(path);
		free(id);
		return 1;
	}
	if (follow) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		while (!trace_stop) {
			usleep(TRACE_FOLLOW_POLL_US);
			struct stat on_disk, open_file;
			if (f != NULL && stat(path, &on_disk) == 0 && fstat(fileno(f), &open_file) == 0 &&
			    on_disk.st_ino != open_file.st_ino) {
				/* Pruning moved the file aside: finish it, then follow the new one. */
				print_events(f, id, comp, json);
				fclose(f);
				f = NULL;
			}
			if (f == NULL)
				f = fopen(path, "r");
			if (f != NULL)
				print_events(f, id, comp, json);
		}
	}
	if (f != NULL)
		fclose(f);
	free(path);
	free(id);
	return 0;
}
