/* store_bench.c: figures for the mail store alone, in a temporary data
 * directory: durable appends against the machine's ceiling (a bare SQLite
 * loop with one synced commit per row, measured in the same run), group
 * commit, a folder of N messages (SELECT counters, UID map, UID+FLAGS of
 * all, header search, \Recent clearing) and a 50 MB message streamed in and
 * read back in chunks with the peak resident size. Prints; asserts nothing.
 *
 * Usage: bench_store_bench [MESSAGES]   (default 100000) */
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "db.h"
#include "store.h"

#define BENCH_DURABLE_COUNT 300
#define BENCH_GROUP_SIZE 1000
#define BENCH_BIG_SIZE (50u * 1024 * 1024)
#define BENCH_CHUNK (64 * 1024)

static const char bench_message[] = "From: Alice <alice@example.test>\r\n"
				    "To: bob@example.test\r\n"
				    "Subject: a benchmark message\r\n"
				    "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
				    "Message-ID: <bench@example.test>\r\n"
				    "\r\n"
				    "Hello.\r\n";

/* Seconds on the monotonic clock. */
static double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Peak resident size in MiB. */
static double bench_peak_rss_mib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

/* Exits with a message when a store call failed. */
static void bench_check(store *st, int rc, const char *what)
{
	if (rc == 0)
		return;
	fprintf(stderr, "store_bench: %s failed (%d): %s\n", what, rc,
		st != NULL ? store_last_error(st) : "");
	exit(1);
}

/* The ceiling: rows of the same size appended with one durable commit each. */
static double bench_ceiling(const char *dir)
{
	static const char *const schema[] = {"CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB);"};
	char *path = xasprintf("%s/ceiling.sqlite", dir);
	sqlite3 *db = NULL;
	char *err = NULL;
	if (db_open(path, true, schema, 1, &db, &err) < 0) {
		fprintf(stderr, "store_bench: %s\n", err);
		exit(1);
	}
	sqlite3_stmt *stmt = db_prepare(db, "INSERT INTO t (data) VALUES (?1)");
	double t0 = bench_now();
	for (int i = 0; i < BENCH_DURABLE_COUNT; i++) {
		sqlite3_bind_blob(stmt, 1, bench_message, sizeof(bench_message) - 1, SQLITE_STATIC);
		if (sqlite3_step(stmt) != SQLITE_DONE) {
			fprintf(stderr, "store_bench: ceiling insert: %s\n", sqlite3_errmsg(db));
			exit(1);
		}
		sqlite3_reset(stmt);
	}
	double rate = BENCH_DURABLE_COUNT / (bench_now() - t0);
	sqlite3_finalize(stmt);
	db_close(&db);
	free(path);
	return rate;
}

/* Removes one entry of the temporary tree. */
static int bench_remove(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(int argc, char **argv)
{
	unsigned long count = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
	char dir[] = "/tmp/store_bench.XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	store *st = NULL;
	char *err = NULL;
	if (store_open(dir, "bench@example.test", &st, &err) < 0) {
		fprintf(stderr, "store_bench: %s\n", err);
		return 1;
	}

	/* A 50 MB message streamed in and read back in chunks. */
	char *chunk = xmalloc(BENCH_CHUNK);
	memset(chunk, 'x', BENCH_CHUNK);
	memcpy(chunk, "Subject: big\r\n\r\n", 16);
	double t0 = bench_now();
	store_appender *a = NULL;
	bench_check(st, store_append_start(st, "Drafts", BENCH_BIG_SIZE, 0, NULL, 0, NULL, &a),
		    "append_start");
	for (uint64_t off = 0; off < BENCH_BIG_SIZE; off += BENCH_CHUNK)
		bench_check(st, store_append_write(a, chunk, BENCH_CHUNK), "append_write");
	uint32_t uid = 0;
	bench_check(st, store_append_finish(&a, &uid, NULL), "append_finish");
	double in_s = bench_now() - t0;
	t0 = bench_now();
	store_reader *r = NULL;
	bench_check(st, store_msg_open(st, "Drafts", uid, &r), "msg_open");
	uint64_t off = 0;
	long got;
	while ((got = store_reader_read(r, off, chunk, BENCH_CHUNK)) > 0)
		off += (uint64_t)got;
	store_reader_close(&r);
	double out_s = bench_now() - t0;
	printf("50 MB message: append %.0f MB/s, read %.0f MB/s (%llu bytes); peak RSS so far %.1f MiB\n",
	       50 / in_s, 50 / out_s, (unsigned long long)off, bench_peak_rss_mib());
	free(chunk);


	/* Durable appends, one commit each, against the bare loop. */
	double ceiling = bench_ceiling(dir);
	t0 = bench_now();
	for (int i = 0; i < BENCH_DURABLE_COUNT; i++)
		bench_check(st, store_append(st, "Archive", bench_message, sizeof(bench_message) - 1,
					     0, NULL, 0, NULL, NULL, NULL), "append");
	double durable = BENCH_DURABLE_COUNT / (bench_now() - t0);
	printf("durable appends:        %8.0f/s   ceiling %8.0f/s   ratio %.2f\n", durable,
	       ceiling, durable / ceiling);

	/* The folder of count messages, group-committed. */
	t0 = bench_now();
	for (unsigned long done = 0; done < count;) {
		bench_check(st, store_begin(st), "begin");
		for (int i = 0; i < BENCH_GROUP_SIZE && done < count; i++, done++)
			bench_check(st, store_append(st, "INBOX", bench_message,
						     sizeof(bench_message) - 1,
						     done % 3 == 0 ? STORE_FLAG_SEEN : 0, NULL, 0,
						     NULL, NULL, NULL), "append");
		bench_check(st, store_commit(st), "commit");
	}
	double group = (double)count / (bench_now() - t0);
	printf("group-commit appends:   %8.0f/s   (%d per commit)  ratio to ceiling %.1f\n", group,
	       BENCH_GROUP_SIZE, group / ceiling);

	/* A fresh handle, as a new IMAP session would have. */
	store_close(&st);
	bench_check(NULL, store_open(dir, "bench@example.test", &st, &err), "open");
	t0 = bench_now();
	struct store_folder f;
	bench_check(st, store_folder_get(st, "INBOX", &f), "folder_get");
	uint32_t *uids = NULL;
	size_t n = 0;
	bench_check(st, store_uid_list(st, "INBOX", &uids, &n), "uid_list");
	double select_ms = (bench_now() - t0) * 1e3;
	free(uids);
	printf("SELECT (counters + UID map of %u): %.1f ms\n", f.messages, select_ms);
	store_folder_free(&f);

	t0 = bench_now();
	struct store_msg *list = NULL;
	bench_check(st, store_msg_list(st, "INBOX", &list, &n), "msg_list");
	printf("UID+FLAGS of %zu:        %.1f ms\n", n, (bench_now() - t0) * 1e3);
	store_msg_list_free(list, n);

	t0 = bench_now();
	bench_check(st, store_search_header(st, "INBOX", STORE_SEARCH_SUBJECT, "x", &uids, &n),
		    "search");
	printf("SEARCH SUBJECT x:        %.1f ms (%zu hits)\n", (bench_now() - t0) * 1e3, n);
	free(uids);

	t0 = bench_now();
	struct store_msg_headers *headers = NULL;
	bench_check(st, store_msg_headers_list(st, "INBOX", &headers, &n), "headers_list");
	printf("parsed headers of %zu:   %.1f ms\n", n, (bench_now() - t0) * 1e3);
	store_msg_headers_list_free(headers, n);

	t0 = bench_now();
	bench_check(st, store_folder_clear_recent(st, "INBOX"), "clear_recent");
	printf("clear \\Recent of all:    %.1f ms\n", (bench_now() - t0) * 1e3);

	store_close(&st);
	nftw(dir, bench_remove, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
