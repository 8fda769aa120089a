/* db.h: opening SQLite databases the one way mailstack does: WAL mode, a busy
 * timeout, foreign keys, synchronous=FULL (a commit is on disk when it
 * returns: DESIGN.md "durable before acknowledged"), and the schema version in
 * PRAGMA user_version brought up to date by a list of migrations. */
#ifndef MAILSTACK_DB_H
#define MAILSTACK_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#define DB_BUSY_TIMEOUT_MS 5000

/* migrations[i] brings the schema from version i to i+1 (SQL run in one
 * transaction). Opens (creating when create) and migrates; -1 with *err_r. */
int db_open(const char *path, bool create, const char *const *migrations, int migration_count,
	    sqlite3 **db_r, char **err_r);
void db_close(sqlite3 **db);
/* Runs SQL without results; -1 with *err_r. */
int db_exec(sqlite3 *db, const char *sql, char **err_r);
/* Prepares a statement; aborts on a programming error (bad SQL is a bug). */
sqlite3_stmt *db_prepare(sqlite3 *db, const char *sql);
/* A cache of prepared statements for one connection, so that hot queries are
 * compiled once. Statements are found by their SQL text; one that is in use
 * (a caller stepping through it, or a recursive call) is never handed out
 * twice: the second caller gets a fresh statement, finalized on release. */
typedef struct db_stmt_cache db_stmt_cache;
/* A statement for sql, reset and without bindings; aborts on bad SQL. */
sqlite3_stmt *db_cache_prepare(db_stmt_cache **cache, sqlite3 *db, const char *sql);
/* Gives a statement back (reset, bindings cleared) or finalizes an uncached one. */
void db_cache_release(db_stmt_cache *cache, sqlite3_stmt *stmt);
/* Finalizes every cached statement; call before closing the connection. */
void db_cache_free(db_stmt_cache **cache);

/* True for errors that may pass (busy, locked, I/O, full): reply 4xx, not 5xx. */
bool db_error_is_temporary(int sqlite_rc);
/* Creates a directory and its parents (mode 0700 for new ones). */
int db_mkdir_parents(const char *dir, char **err_r);

#endif
