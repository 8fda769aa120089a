/* views.c: `mailctl views`, read-only SQL views over a user's mailbox, for
 * labs that read the store with sqlite3.
 *
 * The mailbox schema (common/store.c) is built for the servers: flags are a
 * bit set, dates are seconds since 1970, headers sit in their own table and
 * bodies are shared BLOBs. These views give students readable names over the
 * same rows, without touching the file: they are TEMP views, so they live in
 * sqlite3's own temporary database and work with `sqlite3 -readonly`.
 *
 *   mailctl views                   prints the CREATE TEMP VIEW statements
 *   mailctl views USER              the same, after a comment naming USER's file
 *   mailctl views --path USER       prints only the path of USER's mailbox
 *
 * Typical use (labs/09-sqlite-store.md):
 *   sqlite3 -readonly -cmd "$(mailctl views)" "$(mailctl views --path bob@example.test)" \
 *       "SELECT folder, uid, flags, subject FROM message_list"
 *
 * The statements only read main.* tables; the views are named in the table
 * below with one line of help each, and that help is printed as SQL comments. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "ctl.h"
#include "store.h"

/* Longest address accepted for a path (RFC 5321 4.5.3.1.3, a path's limit). */
#define VIEWS_MAX_ADDRESS 256

struct store_view {
	const char *name;
	const char *help;
	const char *select;
};

/* Flag bits as common/store.h numbers them: Seen 1, Answered 2, Flagged 4,
 * Deleted 8, Draft 16. */
#define VIEWS_FLAGS_TEXT(col)                                                              \
	"trim((CASE WHEN " col " & 1 THEN '\\Seen ' ELSE '' END) ||"                       \
	" (CASE WHEN " col " & 2 THEN '\\Answered ' ELSE '' END) ||"                       \
	" (CASE WHEN " col " & 4 THEN '\\Flagged ' ELSE '' END) ||"                        \
	" (CASE WHEN " col " & 8 THEN '\\Deleted ' ELSE '' END) ||"                        \
	" (CASE WHEN " col " & 16 THEN '\\Draft ' ELSE '' END))"

static const struct store_view store_views[] = {
	{"folder_summary", "one row per folder: counts kept by triggers, UIDVALIDITY, UIDNEXT",
	 "SELECT name AS folder, messages, unseen, recent, size, uidvalidity, uidnext,"
	 " highestmodseq FROM main.folders WHERE noselect = 0 ORDER BY id"},
	{"message_list",
	 "one row per message: folder, UID, lifecycle id, flags as text, size, arrival, headers",
	 "SELECT f.name AS folder, m.uid AS uid, m.lifecycle_id AS lifecycle_id,"
	 " " VIEWS_FLAGS_TEXT("m.flags") " AS flags,"
	 " coalesce(m.keywords, '') AS keywords, m.size AS size,"
	 " datetime(m.internal_date, 'unixepoch') AS arrived_utc, m.modseq AS modseq,"
	 " h.from_ AS from_addr, h.to_ AS to_addr, h.subject AS subject,"
	 " h.message_id_ AS message_id, h.date AS date"
	 " FROM main.messages m JOIN main.folders f ON f.id = m.folder_id"
	 " LEFT JOIN main.msg_headers h ON h.message_id = m.id ORDER BY f.id, m.uid"},
	{"message_source", "the raw message (header and body) of each message, as text",
	 "SELECT f.name AS folder, m.uid AS uid, m.lifecycle_id AS lifecycle_id,"
	 " CAST(b.data AS TEXT) AS source FROM main.messages m"
	 " JOIN main.folders f ON f.id = m.folder_id JOIN main.bodies b ON b.id = m.body_id"
	 " ORDER BY f.id, m.uid"},
	{"expunge_log", "every expunged UID with the MODSEQ of its expunge",
	 "SELECT f.name AS folder, e.uid AS uid, e.modseq AS modseq FROM main.expunged e"
	 " LEFT JOIN main.folders f ON f.id = e.folder_id ORDER BY e.modseq"},
};

/* Prints every view's statement, each preceded by its help as a comment. */
static void views_print_sql(FILE *out)
{
	fputs("-- mailstack read-only views (mailctl views); TEMP: nothing is written to the file\n",
	      out);
	for (size_t i = 0; i < sizeof(store_views) / sizeof(store_views[0]); i++)
		fprintf(out, "-- %s: %s\nCREATE TEMP VIEW IF NOT EXISTS %s AS %s;\n",
			store_views[i].name, store_views[i].help, store_views[i].name,
			store_views[i].select);
}

/* The mailbox path of address (as store.c names it: lower case), or NULL
 * with *err_r when the address is not local@domain. */
static char *views_mailbox_path(const char *datadir, const char *address, char **err_r)
{
	const char *at = strrchr(address, '@');
	if (strlen(address) > VIEWS_MAX_ADDRESS || at == NULL || at == address ||
	    at[1] == '\0' || strchr(address, '/') != NULL || strstr(address, "..") != NULL) {
		*err_r = xasprintf("'%s' is not an address like bob@example.test", address);
		return NULL;
	}
	char *path = store_mailbox_file(datadir, address, ".sqlite");
	if (path == NULL) {
		*err_r = xasprintf("'%s' cannot name a mailbox", address);
		return NULL;
	}
	if (access(path, F_OK) < 0) {
		*err_r = xasprintf("%s has no mailbox (%s does not exist)", address, path);
		free(path);
		return NULL;
	}
	return path;
}

static void views_usage(FILE *out)
{
	fputs("usage: mailctl views [USER]       print CREATE TEMP VIEW statements for sqlite3\n"
	      "       mailctl views --path USER  print the path of USER's mailbox file\n"
	      "example:\n"
	      "  sqlite3 -readonly -cmd \"$(mailctl views)\" \"$(mailctl views --path "
	      "bob@example.test)\" \\\n"
	      "      \"SELECT folder, uid, flags, subject FROM message_list\"\n"
	      "views:\n",
	      out);
	for (size_t i = 0; i < sizeof(store_views) / sizeof(store_views[0]); i++)
		fprintf(out, "  %-15s %s\n", store_views[i].name, store_views[i].help);
}

int cmd_views(int argc, char **argv, const char *datadir)
{
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		views_usage(stdout);
		return 0;
	}
	bool path_only = argc == 3 && strcmp(argv[1], "--path") == 0;
	if (argc > 2 && !path_only) {
		views_usage(stderr);
		return 1;
	}
	if (argc == 1) {
		views_print_sql(stdout);
		return 0;
	}
	const char *user = argv[argc - 1];
	if (user[0] == '-') {
		views_usage(stderr);
		return 1;
	}
	char *err = NULL;
	char *path = views_mailbox_path(datadir, user, &err);
	if (path == NULL) {
		fprintf(stderr, "mailctl: %s\n", err);
		free(err);
		return 1;
	}
	if (path_only) {
		puts(path);
	} else {
		printf("-- mailbox of %s: %s\n", user, path);
		views_print_sql(stdout);
	}
	free(path);
	return 0;
}
