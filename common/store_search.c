/* store_search.c: the query connection beside a store (see store_search.h).
 *
 * One sqlite3 handle and its prepared statements, made at store_query_open
 * and kept for the life of the query object; every call binds, steps and
 * resets one statement, so nothing stays open between calls (no read
 * transaction pins an old snapshot of the WAL). The folder is named in each
 * statement (a join on folders.name), never looked up and cached, so a
 * folder renamed or recreated by another process is seen at once.
 *
 * Errors: STORE_ERR_* as store.h defines them; SQLite's busy, locked and I/O
 * errors are STORE_ERR_TEMP (they may pass), the text in last_error. */
#include "store_search.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "db.h"

enum query_sql {
	QSQL_MSGS,
	QSQL_MSGS_FLAGGED,
	QSQL_FIRST_UNSEEN,
	QSQL_FOLDER_EXISTS,
	QSQL_SET_TZ,
	QSQL_COUNT,
};

/* The statements, each against store.c's schema (messages.folder_id, uid,
 * flags with \Seen as bit 0, keywords, internal_date, internal_tz, size,
 * modseq, lifecycle_id; folders.name, first_recent_uid). */
static const char *const query_sql[QSQL_COUNT] = {
	[QSQL_MSGS] = "SELECT m.id, m.uid, m.flags, m.keywords, m.internal_date, m.internal_tz, "
		      "m.size, m.modseq, m.lifecycle_id, m.uid >= f.first_recent_uid "
		      "FROM folders f JOIN messages m ON m.folder_id = f.id "
		      "WHERE f.name = ?1 AND m.uid BETWEEN ?2 AND ?3 ORDER BY m.uid",
	[QSQL_MSGS_FLAGGED] = "SELECT m.id, m.uid, m.flags, m.keywords, m.internal_date, "
			      "m.internal_tz, m.size, m.modseq, m.lifecycle_id, "
			      "m.uid >= f.first_recent_uid "
			      "FROM folders f JOIN messages m ON m.folder_id = f.id "
			      "WHERE f.name = ?1 AND (m.flags & ?2) = ?2 ORDER BY m.uid",
	[QSQL_FIRST_UNSEEN] = "SELECT m.uid FROM folders f JOIN messages m ON m.folder_id = f.id "
			      "WHERE f.name = ?1 AND (m.flags & 1) = 0 ORDER BY m.uid LIMIT 1",
	[QSQL_FOLDER_EXISTS] = "SELECT 1 FROM folders WHERE name = ?1 AND noselect = 0",
	[QSQL_SET_TZ] = "UPDATE messages SET internal_tz = ?3 "
			"WHERE folder_id = (SELECT id FROM folders WHERE name = ?1) AND uid = ?2",
};

struct store_query {
	sqlite3 *db;
	sqlite3_stmt *stmts[QSQL_COUNT];
	buf_t error;
};

/* Records an error and returns code. */
static int query_fail(store_query *q, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int query_fail(store_query *q, int code, const char *fmt, ...)
{
	va_list ap;
	buf_reset(&q->error);
	va_start(ap, fmt);
	buf_vprintf(&q->error, fmt, ap);
	va_end(ap);
	return code;
}

/* Records a failed SQLite call, temporary or not. */
static int query_fail_sql(store_query *q, int rc, const char *what)
{
	return query_fail(q, db_error_is_temporary(rc) ? STORE_ERR_TEMP : STORE_ERR_INVALID,
			  "%s: %s", what, sqlite3_errmsg(q->db));
}

/* Resets a statement after use. */
static void query_done(sqlite3_stmt *stmt)
{
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
}

int store_query_open(store *st, store_query **q_r, char **err_r)
{
	const char *path = store_db_path(st);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		*err_r = xasprintf("cannot open %s: %s", path,
				   db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(db, 1);
	char *err = NULL;
	if (db_exec(db, "PRAGMA synchronous=FULL", &err) < 0) {
		*err_r = xasprintf("cannot set up %s: %s", path, err);
		free(err);
		sqlite3_close(db);
		return -1;
	}
	store_query *q = xcalloc(1, sizeof(*q));
	q->db = db;
	for (int i = 0; i < QSQL_COUNT; i++) {
		/* Not db_prepare: a schema we cannot read is an error to report, not a bug. */
		if (sqlite3_prepare_v3(db, query_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &q->stmts[i], NULL) != SQLITE_OK) {
			*err_r = xasprintf("%s: the store's schema is not the one expected: %s", path,
					   sqlite3_errmsg(db));
			store_query_close(&q);
			return -1;
		}
	}
	*q_r = q;
	return 0;
}

void store_query_close(store_query **qp)
{
	store_query *q = *qp;
	if (q == NULL)
		return;
	for (int i = 0; i < QSQL_COUNT; i++)
		sqlite3_finalize(q->stmts[i]);
	sqlite3_close_v2(q->db);
	buf_free(&q->error);
	free(q);
	*qp = NULL;
}

const char *store_query_last_error(const store_query *q)
{
	return buf_cstr(&q->error);
}

/* A copy of a text column, or NULL. */
static char *query_column_strdup(sqlite3_stmt *stmt, int col)
{
	const unsigned char *text = sqlite3_column_text(stmt, col);
	if (text == NULL)
		return NULL;
	return xstrndup((const char *)text, (size_t)sqlite3_column_bytes(stmt, col));
}

/* STORE_ERR_NOTFOUND when the (selectable) folder does not exist, else 0:
 * an empty answer must not hide a missing folder. */
static int query_folder_check(store_query *q, const char *folder)
{
	sqlite3_stmt *stmt = q->stmts[QSQL_FOLDER_EXISTS];
	sqlite3_bind_text(stmt, 1, folder, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	query_done(stmt);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return query_fail(q, STORE_ERR_NOTFOUND, "no folder %s", folder);
	return query_fail_sql(q, rc, "cannot read the folder");
}

/* Runs a bound statement of message rows into a new list. */
static int query_msgs_run(store_query *q, sqlite3_stmt *stmt, const char *folder,
			  struct store_msg **list_r, size_t *count_r)
{
	size_t cap = 16, count = 0;
	struct store_msg *list = xmalloc(cap * sizeof(*list));
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			list = xrealloc(list, cap * sizeof(*list));
		}
		struct store_msg *m = &list[count++];
		m->id = sqlite3_column_int64(stmt, 0);
		m->uid = (uint32_t)sqlite3_column_int64(stmt, 1);
		m->flags = (uint32_t)sqlite3_column_int64(stmt, 2);
		m->keywords = query_column_strdup(stmt, 3);
		m->internal_date = sqlite3_column_int64(stmt, 4);
		m->internal_tz = sqlite3_column_int(stmt, 5);
		m->size = (uint64_t)sqlite3_column_int64(stmt, 6);
		m->modseq = (uint64_t)sqlite3_column_int64(stmt, 7);
		m->lifecycle_id = query_column_strdup(stmt, 8);
		m->recent = sqlite3_column_int(stmt, 9) != 0;
	}
	query_done(stmt);
	if (rc != SQLITE_DONE) {
		store_msg_list_free(list, count);
		return query_fail_sql(q, rc, "cannot list messages");
	}
	if (count == 0) {
		free(list);
		return query_folder_check(q, folder);
	}
	*list_r = list;
	*count_r = count;
	return 0;
}

int store_query_msgs(store_query *q, const char *folder, uint32_t first, uint32_t last,
		     struct store_msg **list_r, size_t *count_r)
{
	*list_r = NULL;
	*count_r = 0;
	sqlite3_stmt *stmt = q->stmts[QSQL_MSGS];
	sqlite3_bind_text(stmt, 1, folder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, first);
	sqlite3_bind_int64(stmt, 3, last);
	return query_msgs_run(q, stmt, folder, list_r, count_r);
}

int store_query_msgs_flagged(store_query *q, const char *folder, uint32_t flags,
			     struct store_msg **list_r, size_t *count_r)
{
	*list_r = NULL;
	*count_r = 0;
	sqlite3_stmt *stmt = q->stmts[QSQL_MSGS_FLAGGED];
	sqlite3_bind_text(stmt, 1, folder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, flags);
	return query_msgs_run(q, stmt, folder, list_r, count_r);
}

int store_query_first_unseen(store_query *q, const char *folder, uint32_t *uid_r)
{
	*uid_r = 0;
	sqlite3_stmt *stmt = q->stmts[QSQL_FIRST_UNSEEN];
	sqlite3_bind_text(stmt, 1, folder, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*uid_r = (uint32_t)sqlite3_column_int64(stmt, 0);
	query_done(stmt);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return query_folder_check(q, folder);
	return query_fail_sql(q, rc, "cannot find the first unseen message");
}

int store_query_set_internal_tz(store_query *q, const char *folder, uint32_t uid,
				int tz_minutes)
{
	if (tz_minutes < -24 * 60 || tz_minutes > 24 * 60)
		return query_fail(q, STORE_ERR_INVALID, "zone out of range");
	sqlite3_stmt *stmt = q->stmts[QSQL_SET_TZ];
	sqlite3_bind_text(stmt, 1, folder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, uid);
	sqlite3_bind_int(stmt, 3, tz_minutes);
	int rc = sqlite3_step(stmt);
	query_done(stmt);
	if (rc != SQLITE_DONE)
		return query_fail_sql(q, rc, "cannot set the internal date's zone");
	if (sqlite3_changes(q->db) == 0)
		return query_fail(q, STORE_ERR_NOTFOUND, "no message with UID %u", uid);
	return 0;
}
