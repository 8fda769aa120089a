/* users.c: the user directory, DATADIR/users.sqlite (see users.h).
 *
 * Tables: domains (the local domains), users (one row per mailbox owner with
 * the yescrypt hash and the encoded SCRAM keys), aliases (alias -> target,
 * several rows for one alias make a list) and sieve_scripts (one active
 * script per user). Every address and domain is stored lower-case (ASCII),
 * so lookups compare with plain equality and the indexes serve them.
 *
 * Plus-addressing: "bob+lists@example.test" names the user bob with the
 * detail "lists". Lookups try the exact address first (so an alias or user
 * spelled with '+' wins), then the address without its detail. New users may
 * not have '+' in their local part, so the two never collide for them.
 * userdb_resolve keeps the detail on a local user it reaches directly
 * ("bob+lists@example.test" resolves to itself) so that the mda can file by
 * detail; it is dropped when an alias is expanded.
 *
 * Only parameterised SQL; a connection is used from one thread (the loop or
 * mailctl), never from libuv's workers. */
#include "users.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "address.h"
#include "buffer.h"
#include "db.h"

/* Bounds of alias expansion (users.h: at most 1000 results). */
#define USERDB_MAX_RESOLVE_RESULTS 1000
#define USERDB_MAX_RESOLVE_DEPTH 20
#define USERDB_MAX_ADDRESS_LEN 320
#define USERDB_MAX_SIEVE_SCRIPT (256 * 1024)

struct userdb {
	sqlite3 *db;
	char *path;
	db_stmt_cache *stmts; /* every query is compiled once per handle */
};

static const char *const userdb_migrations[] = {
	/* version 1 */
	"CREATE TABLE domains ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE users ("
	"  address TEXT PRIMARY KEY NOT NULL,"
	"  local TEXT NOT NULL,"
	"  domain TEXT NOT NULL REFERENCES domains(name),"
	"  password_hash TEXT NOT NULL,"
	"  scram TEXT NOT NULL,"
	"  quota_bytes INTEGER NOT NULL DEFAULT 0,"
	"  quota_messages INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL);"
	"CREATE INDEX users_local ON users(local);"
	"CREATE INDEX users_domain ON users(domain);"
	"CREATE TABLE aliases ("
	"  alias TEXT NOT NULL,"
	"  target TEXT NOT NULL,"
	"  PRIMARY KEY (alias, target));"
	"CREATE INDEX aliases_target ON aliases(target);"
	"CREATE TABLE sieve_scripts ("
	"  address TEXT PRIMARY KEY NOT NULL REFERENCES users(address) ON DELETE CASCADE,"
	"  script TEXT NOT NULL,"
	"  updated INTEGER NOT NULL);",
};

/* A lower-cased copy (ASCII only: domains and local parts we store). */
static char *userdb_lower(const char *s)
{
	char *out = xstrdup(s);
	for (char *p = out; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return out;
}

/* Reports a failed statement: "what: sqlite message". */
static int userdb_fail(userdb *db, const char *what, char **err_r)
{
	if (err_r != NULL)
		*err_r = xasprintf("%s: %s", what, sqlite3_errmsg(db->db));
	return -1;
}

/* Sets *err_r (when wanted) and returns -1. */
static int userdb_error(char **err_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int userdb_error(char **err_r, const char *fmt, ...)
{
	if (err_r != NULL) {
		buf_t b = BUF_INIT;
		va_list ap;
		va_start(ap, fmt);
		buf_vprintf(&b, fmt, ap);
		va_end(ap);
		*err_r = buf_steal(&b);
	}
	return -1;
}

int userdb_open(const char *datadir, userdb **db_r, char **err_r)
{
	char *path = xasprintf("%s/users.sqlite", datadir);
	sqlite3 *sq = NULL;
	if (db_open(path, true, userdb_migrations,
		    (int)(sizeof(userdb_migrations) / sizeof(userdb_migrations[0])), &sq,
		    err_r) < 0) {
		free(path);
		return -1;
	}
	userdb *db = xcalloc(1, sizeof(*db));
	db->db = sq;
	db->path = path;
	*db_r = db;
	return 0;
}

void userdb_close(userdb **dbp)
{
	userdb *db = *dbp;
	if (db == NULL)
		return;
	db_cache_free(&db->stmts);
	db_close(&db->db);
	free(db->path);
	free(db);
	*dbp = NULL;
}

/* Runs a statement that returns no rows with up to three text parameters. */
static int userdb_run(userdb *db, const char *sql, const char *a, const char *b, const char *c)
{
	sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db, sql);
	const char *params[] = {a, b, c};
	for (int i = 0; i < 3 && params[i] != NULL; i++)
		sqlite3_bind_text(stmt, i + 1, params[i], -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(stmt);
	db_cache_release(db->stmts, stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Counts rows of a query with one or two text parameters (-1 on error). */
static int64_t userdb_count(userdb *db, const char *sql, const char *a, const char *b)
{
	sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db, sql);
	sqlite3_bind_text(stmt, 1, a, -1, SQLITE_TRANSIENT);
	if (b != NULL)
		sqlite3_bind_text(stmt, 2, b, -1, SQLITE_TRANSIENT);
	int64_t n = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
	db_cache_release(db->stmts, stmt);
	return n;
}

/* Collects the first text column of every row (one optional parameter) into
 * a NULL-terminated vector. */
static char **userdb_strv_query(userdb *db, const char *sql, const char *param, size_t *count_r)
{
	sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db, sql);
	if (param != NULL)
		sqlite3_bind_text(stmt, 1, param, -1, SQLITE_TRANSIENT);
	size_t n = 0, cap = 8;
	char **v = xmalloc(cap * sizeof(char *));
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		int cols = sqlite3_column_count(stmt);
		for (int c = 0; c < cols; c++) {
			if (n + 2 > cap) {
				cap *= 2;
				v = xrealloc(v, cap * sizeof(char *));
			}
			const unsigned char *text = sqlite3_column_text(stmt, c);
			v[n++] = xstrdup(text != NULL ? (const char *)text : "");
		}
	}
	db_cache_release(db->stmts, stmt);
	v[n] = NULL;
	if (count_r != NULL)
		*count_r = n;
	return v;
}

void userdb_strv_free(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

/* True for a syntactically valid domain name (letters, digits, '-', dots). */
static bool userdb_domain_valid(const char *domain)
{
	size_t len = strlen(domain);
	if (len == 0 || len > 253 || domain[0] == '.' || domain[len - 1] == '.' ||
	    strstr(domain, "..") != NULL)
		return false;
	for (const char *p = domain; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return false;
	}
	return true;
}

int userdb_domain_add(userdb *db, const char *domain, char **err_r)
{
	if (!userdb_domain_valid(domain))
		return userdb_error(err_r, "invalid domain '%s'", domain);
	char *name = userdb_lower(domain);
	int ret = 0;
	if (userdb_domain_is_local(db, name)) {
		ret = userdb_error(err_r, "domain %s already exists", name);
	} else {
		sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db,
						"INSERT INTO domains (name, created) VALUES (?, ?)");
		sqlite3_bind_text(stmt, 1, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(stmt, 2, (sqlite3_int64)time(NULL));
		if (sqlite3_step(stmt) != SQLITE_DONE)
			ret = userdb_fail(db, "cannot add domain", err_r);
		db_cache_release(db->stmts, stmt);
	}
	free(name);
	return ret;
}

int userdb_domain_del(userdb *db, const char *domain, char **err_r)
{
	char *name = userdb_lower(domain);
	int ret = 0;
	int64_t users = userdb_count(db, "SELECT count(*) FROM users WHERE domain = ?", name, NULL);
	if (!userdb_domain_is_local(db, name))
		ret = userdb_error(err_r, "no such domain %s", name);
	else if (users != 0)
		ret = userdb_error(err_r, "domain %s still has %lld user(s)", name, (long long)users);
	else if (userdb_run(db, "DELETE FROM domains WHERE name = ?", name, NULL, NULL) < 0)
		ret = userdb_fail(db, "cannot delete domain", err_r);
	free(name);
	return ret;
}

bool userdb_domain_is_local(userdb *db, const char *domain)
{
	char *name = userdb_lower(domain);
	bool local = userdb_count(db, "SELECT count(*) FROM domains WHERE name = ?", name, NULL) > 0;
	free(name);
	return local;
}

char **userdb_domain_list(userdb *db)
{
	return userdb_strv_query(db, "SELECT name FROM domains ORDER BY name", NULL, NULL);
}

/* Splits a lower-cased address at its last '@' (pointers into a copy the
 * caller frees through *copy_r); -1 when there is no '@'. */
static int userdb_split(const char *address, char **copy_r, const char **local_r,
			const char **domain_r)
{
	char *copy = userdb_lower(address);
	char *at = strrchr(copy, '@');
	if (at == NULL) {
		free(copy);
		return -1;
	}
	*at = '\0';
	*copy_r = copy;
	*local_r = copy;
	*domain_r = at + 1;
	return 0;
}

/* Checks an address for storing: valid, bounded, no detail separator. */
static int userdb_check_new_address(const char *address, bool allow_plus, char **err_r)
{
	if (strlen(address) > USERDB_MAX_ADDRESS_LEN || !address_spec_valid(address) ||
	    strchr(address, '@') == NULL)
		return userdb_error(err_r, "invalid address '%s'", address);
	const char *at = strrchr(address, '@');
	if (!userdb_domain_valid(at + 1))
		return userdb_error(err_r, "invalid domain in '%s'", address);
	if (!allow_plus && memchr(address, '+', (size_t)(at - address)) != NULL)
		return userdb_error(err_r,
				    "invalid address '%s': '+' separates a detail and cannot be "
				    "part of a user name",
				    address);
	return 0;
}

/* Computes the stored credentials of a password. */
static int userdb_credentials(const char *password, char **hash_r, char **scram_r, char **err_r)
{
	struct scram_keys keys;
	char *hash = password_hash(password);
	if (hash == NULL || scram_keys_make(password, SCRAM_DEFAULT_ITERATIONS, &keys) < 0) {
		free(hash);
		return userdb_error(err_r, "cannot hash the password");
	}
	*hash_r = hash;
	*scram_r = scram_keys_encode(&keys);
	return 0;
}

/* A user's local part names its mailbox file (mail/<domain>/<local>.sqlite):
 * refuse what the store would refuse, before the account exists. */
static int userdb_check_mailbox_name(const char *address, char **err_r)
{
	size_t local_len = (size_t)(strrchr(address, '@') - address);
	if (address[0] == '.' || memchr(address, '/', local_len) != NULL ||
	    memchr(address, '\\', local_len) != NULL)
		return userdb_error(err_r,
				    "invalid address '%s': a user name cannot start with '.' or "
				    "contain '/' or '\\' (it names the mailbox file)",
				    address);
	return 0;
}

int userdb_user_add(userdb *db, const char *address, const char *password, char **err_r)
{
	if (userdb_check_new_address(address, false, err_r) < 0 ||
	    userdb_check_mailbox_name(address, err_r) < 0)
		return -1;
	char *copy;
	const char *local, *domain;
	if (userdb_split(address, &copy, &local, &domain) < 0)
		return userdb_error(err_r, "invalid address '%s'", address);
	char *canonical = xasprintf("%s@%s", local, domain);
	int ret = 0;
	char *hash = NULL, *scram = NULL;
	if (userdb_count(db, "SELECT count(*) FROM users WHERE address = ?", canonical, NULL) != 0) {
		ret = userdb_error(err_r, "user %s already exists", canonical);
		goto out;
	}
	if (userdb_credentials(password, &hash, &scram, err_r) < 0) {
		ret = -1;
		goto out;
	}
	if (db_exec(db->db, "BEGIN IMMEDIATE", err_r) < 0) {
		ret = -1;
		goto out;
	}
	sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db, "INSERT OR IGNORE INTO domains (name, created) "
						"VALUES (?, ?)");
	sqlite3_bind_text(stmt, 1, domain, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 2, (sqlite3_int64)time(NULL));
	int rc = sqlite3_step(stmt);
	db_cache_release(db->stmts, stmt);
	if (rc == SQLITE_DONE) {
		stmt = db_cache_prepare(&db->stmts, db->db,
				  "INSERT INTO users (address, local, domain, password_hash, scram, "
				  "created) VALUES (?, ?, ?, ?, ?, ?)");
		sqlite3_bind_text(stmt, 1, canonical, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, 2, local, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, 3, domain, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, 4, hash, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, 5, scram, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(stmt, 6, (sqlite3_int64)time(NULL));
		rc = sqlite3_step(stmt);
		db_cache_release(db->stmts, stmt);
	}
	if (rc != SQLITE_DONE) {
		ret = userdb_fail(db, "cannot add user", err_r);
		db_exec(db->db, "ROLLBACK", NULL);
	} else if (db_exec(db->db, "COMMIT", err_r) < 0) {
		ret = -1;
		db_exec(db->db, "ROLLBACK", NULL);
	}
out:
	free(hash);
	free(scram);
	free(canonical);
	free(copy);
	return ret;
}

/* Finds the canonical stored address for a user name ("a@b", "a+x@b" or a
 * bare "a"), with the detail split off (caller frees both; *detail_r may be
 * NULL). -1 when there is no such user. */
static int userdb_find_user(userdb *db, const char *name, char **address_r, char **detail_r)
{
	char *lower = userdb_lower(name);
	*detail_r = NULL;
	*address_r = NULL;
	char *at = strrchr(lower, '@');
	if (at != NULL) {
		if (userdb_count(db, "SELECT count(*) FROM users WHERE address = ?", lower, NULL) > 0) {
			*address_r = lower;
			return 0;
		}
		char *plus = memchr(lower, '+', (size_t)(at - lower));
		if (plus != NULL && plus > lower) {
			char *stripped = xasprintf("%.*s%s", (int)(plus - lower), lower, at);
			if (userdb_count(db, "SELECT count(*) FROM users WHERE address = ?", stripped,
					 NULL) > 0) {
				*detail_r = xstrndup(plus + 1, (size_t)(at - plus - 1));
				*address_r = stripped;
				free(lower);
				return 0;
			}
			free(stripped);
		}
		free(lower);
		return -1;
	}
	/* A bare name: unique across domains, exact first, then without detail. */
	for (int pass = 0; pass < 2; pass++) {
		char *local = lower;
		char *plus = strchr(lower, '+');
		if (pass == 1) {
			if (plus == NULL || plus == lower)
				break;
			local = xstrndup(lower, (size_t)(plus - lower));
		}
		size_t count = 0;
		char **found = userdb_strv_query(db, "SELECT address FROM users WHERE local = ?",
						 local, &count);
		if (local != lower)
			free(local);
		if (count == 1) {
			*address_r = xstrdup(found[0]);
			if (pass == 1)
				*detail_r = xstrdup(plus + 1);
			userdb_strv_free(found);
			free(lower);
			return 0;
		}
		userdb_strv_free(found);
		if (count > 1)
			break;
	}
	free(lower);
	return -1;
}

int userdb_user_lookup(userdb *db, const char *name, struct user_info *info_r)
{
	memset(info_r, 0, sizeof(*info_r));
	char *address = NULL, *detail = NULL;
	if (strlen(name) > USERDB_MAX_ADDRESS_LEN ||
	    userdb_find_user(db, name, &address, &detail) < 0)
		return -1;
	sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db,
					"SELECT local, domain, password_hash, scram, quota_bytes, "
					"quota_messages FROM users WHERE address = ?");
	sqlite3_bind_text(stmt, 1, address, -1, SQLITE_TRANSIENT);
	int ret = -1;
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		info_r->address = address;
		address = NULL;
		info_r->local = xstrdup((const char *)sqlite3_column_text(stmt, 0));
		info_r->domain = xstrdup((const char *)sqlite3_column_text(stmt, 1));
		info_r->password_hash = xstrdup((const char *)sqlite3_column_text(stmt, 2));
		info_r->detail = detail;
		detail = NULL;
		if (scram_keys_decode((const char *)sqlite3_column_text(stmt, 3), &info_r->scram) < 0)
			memset(&info_r->scram, 0, sizeof(info_r->scram));
		info_r->quota_bytes = sqlite3_column_int64(stmt, 4);
		info_r->quota_messages = sqlite3_column_int64(stmt, 5);
		ret = 0;
	}
	db_cache_release(db->stmts, stmt);
	free(address);
	free(detail);
	return ret;
}

void user_info_free(struct user_info *info)
{
	if (info == NULL)
		return;
	free(info->address);
	free(info->local);
	free(info->domain);
	free(info->detail);
	if (info->password_hash != NULL)
		explicit_bzero(info->password_hash, strlen(info->password_hash));
	free(info->password_hash);
	memset(info, 0, sizeof(*info));
}

size_t userdb_user_list(userdb *db, struct user_info **list_r)
{
	size_t count = 0;
	char **addresses =
		userdb_strv_query(db, "SELECT address FROM users ORDER BY address", NULL, &count);
	struct user_info *list = xcalloc(count + 1, sizeof(*list));
	size_t n = 0;
	for (size_t i = 0; i < count; i++) {
		if (userdb_user_lookup(db, addresses[i], &list[n]) == 0)
			n++;
	}
	userdb_strv_free(addresses);
	*list_r = list;
	return n;
}

/* Canonical address of an existing user given exactly (no detail), or NULL. */
static char *userdb_existing_user(userdb *db, const char *address, char **err_r)
{
	char *lower = userdb_lower(address);
	if (userdb_count(db, "SELECT count(*) FROM users WHERE address = ?", lower, NULL) > 0)
		return lower;
	userdb_error(err_r, "no such user %s", lower);
	free(lower);
	return NULL;
}

int userdb_user_del(userdb *db, const char *address, char **err_r)
{
	char *canonical = userdb_existing_user(db, address, err_r);
	if (canonical == NULL)
		return -1;
	int ret = 0;
	/* Aliases pointing at the user go with it, so nothing resolves to a
	 * mailbox that no longer exists; its Sieve script goes by cascade. */
	if (db_exec(db->db, "BEGIN IMMEDIATE", err_r) < 0) {
		ret = -1;
	} else if (userdb_run(db, "DELETE FROM aliases WHERE target = ?", canonical, NULL, NULL) <
			   0 ||
		   userdb_run(db, "DELETE FROM users WHERE address = ?", canonical, NULL, NULL) < 0) {
		ret = userdb_fail(db, "cannot delete user", err_r);
		db_exec(db->db, "ROLLBACK", NULL);
	} else if (db_exec(db->db, "COMMIT", err_r) < 0) {
		ret = -1;
		db_exec(db->db, "ROLLBACK", NULL);
	}
	free(canonical);
	return ret;
}

int userdb_user_passwd(userdb *db, const char *address, const char *password, char **err_r)
{
	char *canonical = userdb_existing_user(db, address, err_r);
	if (canonical == NULL)
		return -1;
	char *hash = NULL, *scram = NULL;
	int ret = userdb_credentials(password, &hash, &scram, err_r);
	if (ret == 0 && userdb_run(db, "UPDATE users SET password_hash = ?, scram = ? "
				       "WHERE address = ?",
				   hash, scram, canonical) < 0)
		ret = userdb_fail(db, "cannot change password", err_r);
	free(hash);
	free(scram);
	free(canonical);
	return ret;
}

int userdb_user_set_quota(userdb *db, const char *address, int64_t bytes, int64_t messages,
			  char **err_r)
{
	if (bytes < 0 || messages < 0)
		return userdb_error(err_r, "a quota cannot be negative");
	char *canonical = userdb_existing_user(db, address, err_r);
	if (canonical == NULL)
		return -1;
	sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db, "UPDATE users SET quota_bytes = ?, "
						"quota_messages = ? WHERE address = ?");
	sqlite3_bind_int64(stmt, 1, bytes);
	sqlite3_bind_int64(stmt, 2, messages);
	sqlite3_bind_text(stmt, 3, canonical, -1, SQLITE_TRANSIENT);
	int ret = sqlite3_step(stmt) == SQLITE_DONE ? 0 : userdb_fail(db, "cannot set quota", err_r);
	db_cache_release(db->stmts, stmt);
	free(canonical);
	return ret;
}

int userdb_alias_add(userdb *db, const char *alias, const char *target, char **err_r)
{
	if (userdb_check_new_address(alias, true, err_r) < 0 ||
	    userdb_check_new_address(target, true, err_r) < 0)
		return -1;
	char *a = userdb_lower(alias);
	char *t = userdb_lower(target);
	int ret = 0;
	if (strcmp(a, t) == 0)
		ret = userdb_error(err_r, "alias %s cannot point to itself", a);
	else if (!userdb_domain_is_local(db, strrchr(a, '@') + 1))
		ret = userdb_error(err_r, "domain of alias %s is not a local domain", a);
	else if (userdb_count(db, "SELECT count(*) FROM aliases WHERE alias = ? AND target = ?", a,
			      t) > 0)
		ret = userdb_error(err_r, "alias %s -> %s already exists", a, t);
	else if (userdb_run(db, "INSERT INTO aliases (alias, target) VALUES (?, ?)", a, t, NULL) <
		 0)
		ret = userdb_fail(db, "cannot add alias", err_r);
	free(a);
	free(t);
	return ret;
}

int userdb_alias_del(userdb *db, const char *alias, const char *target, char **err_r)
{
	char *a = userdb_lower(alias);
	char *t = target != NULL ? userdb_lower(target) : NULL;
	int ret = 0;
	/* A NULL target removes every target of the alias. */
	int64_t n = t != NULL ? userdb_count(db, "SELECT count(*) FROM aliases WHERE alias = ? "
						 "AND target = ?",
					     a, t)
			      : userdb_count(db, "SELECT count(*) FROM aliases WHERE alias = ?", a,
					     NULL);
	if (n <= 0)
		ret = t != NULL ? userdb_error(err_r, "no alias %s -> %s", a, t)
				: userdb_error(err_r, "no alias %s", a);
	else if ((t != NULL ? userdb_run(db, "DELETE FROM aliases WHERE alias = ? AND target = ?",
					 a, t, NULL)
			    : userdb_run(db, "DELETE FROM aliases WHERE alias = ?", a, NULL, NULL)) < 0)
		ret = userdb_fail(db, "cannot delete alias", err_r);
	free(a);
	free(t);
	return ret;
}

char **userdb_alias_list(userdb *db)
{
	return userdb_strv_query(db, "SELECT alias, target FROM aliases ORDER BY alias, target",
				 NULL, NULL);
}

/* A growing, duplicate-free set of addresses. */
struct userdb_addrset {
	char **items;
	size_t count;
	size_t cap;
	size_t limit;
};

/* True when the set already holds address. */
static bool addrset_has(const struct userdb_addrset *set, const char *address)
{
	for (size_t i = 0; i < set->count; i++) {
		if (strcmp(set->items[i], address) == 0)
			return true;
	}
	return false;
}

/* Adds a copy unless present; false when the set is full. */
static bool addrset_add(struct userdb_addrset *set, const char *address)
{
	if (addrset_has(set, address))
		return true;
	if (set->count >= set->limit)
		return false;
	if (set->count + 2 > set->cap) {
		set->cap = set->cap == 0 ? 8 : set->cap * 2;
		set->items = xrealloc(set->items, set->cap * sizeof(char *));
	}
	set->items[set->count++] = xstrdup(address);
	set->items[set->count] = NULL;
	return true;
}

/* Frees the addresses of a set. */
static void addrset_free(struct userdb_addrset *set)
{
	for (size_t i = 0; i < set->count; i++)
		free(set->items[i]);
	free(set->items);
	memset(set, 0, sizeof(*set));
}

/* The alias targets of an address: exact, else without its detail. */
static char **userdb_alias_targets(userdb *db, const char *address, size_t *count_r)
{
	char **targets = userdb_strv_query(db, "SELECT target FROM aliases WHERE alias = ? "
					       "ORDER BY rowid",
					   address, count_r);
	if (*count_r > 0)
		return targets;
	userdb_strv_free(targets);
	const char *at = strrchr(address, '@');
	const char *plus = at != NULL ? memchr(address, '+', (size_t)(at - address)) : NULL;
	if (plus == NULL || plus == address)
		return NULL;
	char *stripped = xasprintf("%.*s%s", (int)(plus - address), address, at);
	targets = userdb_strv_query(db, "SELECT target FROM aliases WHERE alias = ? ORDER BY rowid",
				    stripped, count_r);
	free(stripped);
	if (*count_r > 0)
		return targets;
	userdb_strv_free(targets);
	return NULL;
}

/* Expands one address into results; visited guards against alias loops. */
static void userdb_resolve_into(userdb *db, const char *address, int depth,
				struct userdb_addrset *visited, struct userdb_addrset *results)
{
	if (depth > USERDB_MAX_RESOLVE_DEPTH || addrset_has(visited, address) ||
	    !addrset_add(visited, address))
		return;
	size_t count = 0;
	char **targets = userdb_alias_targets(db, address, &count);
	if (targets != NULL) {
		for (size_t i = 0; i < count; i++)
			userdb_resolve_into(db, targets[i], depth + 1, visited, results);
		userdb_strv_free(targets);
		return;
	}
	const char *at = strrchr(address, '@');
	if (at == NULL)
		return;
	if (!userdb_domain_is_local(db, at + 1)) {
		addrset_add(results, address);
		return;
	}
	char *canonical = NULL, *detail = NULL;
	if (userdb_find_user(db, address, &canonical, &detail) == 0)
		addrset_add(results, address);
	free(canonical);
	free(detail);
}

char **userdb_resolve(userdb *db, const char *address)
{
	if (strlen(address) > USERDB_MAX_ADDRESS_LEN || strchr(address, '@') == NULL)
		return NULL;
	char *lower = userdb_lower(address);
	/* Visiting is bounded too, more loosely: aliases that lead nowhere count. */
	struct userdb_addrset visited = {NULL, 0, 0, 4 * USERDB_MAX_RESOLVE_RESULTS};
	struct userdb_addrset results = {NULL, 0, 0, USERDB_MAX_RESOLVE_RESULTS};
	userdb_resolve_into(db, lower, 0, &visited, &results);
	free(lower);
	addrset_free(&visited);
	if (results.count == 0) {
		addrset_free(&results);
		return NULL;
	}
	return results.items;
}

bool userdb_sender_allowed(userdb *db, const char *user, const char *sender)
{
	if (user == NULL || sender == NULL || strchr(sender, '@') == NULL)
		return false;
	char *user_address = NULL, *user_detail = NULL;
	if (userdb_find_user(db, user, &user_address, &user_detail) < 0)
		return false;
	free(user_detail);
	bool allowed = false;
	/* Its own address, with or without a detail. */
	char *sender_address = NULL, *sender_detail = NULL;
	if (userdb_find_user(db, sender, &sender_address, &sender_detail) == 0)
		allowed = strcmp(sender_address, user_address) == 0;
	free(sender_address);
	free(sender_detail);
	/* An alias whose expansion reaches the user. */
	char **reached = allowed ? NULL : userdb_resolve(db, sender);
	for (char **p = reached; p != NULL && *p != NULL && !allowed; p++) {
		char *a = NULL, *d = NULL;
		if (userdb_find_user(db, *p, &a, &d) == 0)
			allowed = strcmp(a, user_address) == 0;
		free(a);
		free(d);
	}
	userdb_strv_free(reached);
	free(user_address);
	return allowed;
}

int userdb_sieve_put(userdb *db, const char *address, const char *script, char **err_r)
{
	if (strlen(script) > USERDB_MAX_SIEVE_SCRIPT)
		return userdb_error(err_r, "script is larger than %d bytes",
				    USERDB_MAX_SIEVE_SCRIPT);
	char *canonical = userdb_existing_user(db, address, err_r);
	if (canonical == NULL)
		return -1;
	sqlite3_stmt *stmt = db_cache_prepare(&db->stmts, db->db,
					"INSERT INTO sieve_scripts (address, script, updated) "
					"VALUES (?, ?, ?) ON CONFLICT(address) DO UPDATE SET "
					"script = excluded.script, updated = excluded.updated");
	sqlite3_bind_text(stmt, 1, canonical, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, script, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 3, (sqlite3_int64)time(NULL));
	int ret = sqlite3_step(stmt) == SQLITE_DONE ? 0
						    : userdb_fail(db, "cannot store script", err_r);
	db_cache_release(db->stmts, stmt);
	free(canonical);
	return ret;
}

char *userdb_sieve_get(userdb *db, const char *address)
{
	char *canonical = NULL, *detail = NULL;
	if (userdb_find_user(db, address, &canonical, &detail) < 0)
		return NULL;
	free(detail);
	sqlite3_stmt *stmt =
		db_cache_prepare(&db->stmts, db->db, "SELECT script FROM sieve_scripts WHERE address = ?");
	sqlite3_bind_text(stmt, 1, canonical, -1, SQLITE_TRANSIENT);
	char *script = NULL;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		script = xstrdup((const char *)sqlite3_column_text(stmt, 0));
	db_cache_release(db->stmts, stmt);
	free(canonical);
	return script;
}

int userdb_sieve_del(userdb *db, const char *address, char **err_r)
{
	char *canonical = userdb_existing_user(db, address, err_r);
	if (canonical == NULL)
		return -1;
	int ret = 0;
	if (userdb_count(db, "SELECT count(*) FROM sieve_scripts WHERE address = ?", canonical,
			 NULL) <= 0)
		ret = userdb_error(err_r, "%s has no sieve script", canonical);
	else if (userdb_run(db, "DELETE FROM sieve_scripts WHERE address = ?", canonical, NULL,
			    NULL) < 0)
		ret = userdb_fail(db, "cannot delete script", err_r);
	free(canonical);
	return ret;
}
