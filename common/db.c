/* db.c: opening, migrating and running SQLite databases (see db.h). */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buffer.h"

/* Reads PRAGMA user_version, the schema version. */
static int db_user_version(sqlite3 *db, int *version_r)
{
	sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK)
		return -1;
	int rc = sqlite3_step(stmt);
	*version_r = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW ? 0 : -1;
}

int db_exec(sqlite3 *db, const char *sql, char **err_r)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		if (err_r != NULL)
			*err_r = xasprintf("%s", msg != NULL ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Runs every migration past the current version, each in its own transaction
 * together with the user_version bump, so a crash never leaves half a step. */
static int db_migrate(sqlite3 *db, const char *path, const char *const *migrations, int count,
		      char **err_r)
{
	int version;
	if (db_user_version(db, &version) < 0) {
		*err_r = xasprintf("%s: cannot read schema version: %s", path, sqlite3_errmsg(db));
		return -1;
	}
	if (version > count) {
		*err_r = xasprintf("%s: schema version %d is newer than this program (%d)", path,
				   version, count);
		return -1;
	}
	for (int v = version; v < count; v++) {
		char *err = NULL;
		if (db_exec(db, "BEGIN IMMEDIATE", &err) < 0) {
			*err_r = xasprintf("%s: %s", path, err);
			free(err);
			return -1;
		}
		/* Another process may have migrated while we waited for the lock. */
		int now;
		if (db_user_version(db, &now) == 0 && now > v) {
			db_exec(db, "COMMIT", NULL);
			v = now - 1;
			continue;
		}
		char pragma[64];
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
		if (db_exec(db, migrations[v], &err) < 0 || db_exec(db, pragma, &err) < 0 ||
		    db_exec(db, "COMMIT", &err) < 0) {
			*err_r = xasprintf("%s: migration to version %d failed: %s", path, v + 1, err);
			free(err);
			db_exec(db, "ROLLBACK", NULL);
			return -1;
		}
	}
	return 0;
}

int db_open(const char *path, bool create, const char *const *migrations, int migration_count,
	    sqlite3 **db_r, char **err_r)
{
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		*err_r = xasprintf("cannot open %s: %s", path,
				   db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(db, 1);
	char *err = NULL;
	if (db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
			"PRAGMA foreign_keys=ON;", &err) < 0) {
		*err_r = xasprintf("cannot set up %s: %s", path, err);
		free(err);
		sqlite3_close(db);
		return -1;
	}
	if (db_migrate(db, path, migrations, migration_count, err_r) < 0) {
		sqlite3_close(db);
		return -1;
	}
	*db_r = db;
	return 0;
}

void db_close(sqlite3 **db)
{
	if (*db == NULL)
		return;
	sqlite3_close_v2(*db);
	*db = NULL;
}

sqlite3_stmt *db_prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		fprintf(stderr, "mailstack: bad SQL (%s): %s\n", sqlite3_errmsg(db), sql);
		abort();
	}
	return stmt;
}

/* Enough for every distinct query of one module; past it, statements are
 * prepared and finalized per use as without a cache. */
#define DB_STMT_CACHE_SIZE 64

struct db_stmt_cache {
	size_t count;
	struct {
		char *sql;
		sqlite3_stmt *stmt;
		bool in_use;
	} items[DB_STMT_CACHE_SIZE];
};

sqlite3_stmt *db_cache_prepare(db_stmt_cache **cache, sqlite3 *db, const char *sql)
{
	if (*cache == NULL)
		*cache = xcalloc(1, sizeof(**cache));
	db_stmt_cache *c = *cache;
	for (size_t i = 0; i < c->count; i++) {
		if (!c->items[i].in_use && strcmp(c->items[i].sql, sql) == 0) {
			c->items[i].in_use = true;
			return c->items[i].stmt;
		}
	}
	sqlite3_stmt *stmt = db_prepare(db, sql);
	if (c->count < DB_STMT_CACHE_SIZE) {
		c->items[c->count].sql = xstrdup(sql);
		c->items[c->count].stmt = stmt;
		c->items[c->count].in_use = true;
		c->count++;
	}
	return stmt;
}

void db_cache_release(db_stmt_cache *cache, sqlite3_stmt *stmt)
{
	if (stmt == NULL)
		return;
	for (size_t i = 0; cache != NULL && i < cache->count; i++) {
		if (cache->items[i].stmt == stmt) {
			sqlite3_reset(stmt);
			sqlite3_clear_bindings(stmt);
			cache->items[i].in_use = false;
			return;
		}
	}
	sqlite3_finalize(stmt);
}

void db_cache_free(db_stmt_cache **cache)
{
	if (*cache == NULL)
		return;
	for (size_t i = 0; i < (*cache)->count; i++) {
		sqlite3_finalize((*cache)->items[i].stmt);
		free((*cache)->items[i].sql);
	}
	free(*cache);
	*cache = NULL;
}

bool db_error_is_temporary(int sqlite_rc)
{
	switch (sqlite_rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_NOMEM:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL:
		return true;
	default:
		return false;
	}
}

int db_mkdir_parents(const char *dir, char **err_r)
{
	char *path = xstrdup(dir);
	for (char *p = path + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;
			*p = '\0';
			if (mkdir(path, 0700) < 0 && errno != EEXIST) {
				*err_r = xasprintf("cannot create directory %s: %s", path, strerror(errno));
				free(path);
				return -1;
			}
			*p = saved;
			if (saved == '\0')
				break;
		}
	}
	free(path);
	return 0;
}
