/* user_cache.c: the user directory's answers the mta needs on every RCPT and
 * every dispatch (is this domain local, what does this address resolve to),
 * remembered until users.sqlite changes.
 *
 * users.sqlite is written by other processes (mailctl user/alias), so the
 * cache is checked against the database and its WAL file before each use:
 * any commit changes the WAL's size or modification time (or, after a
 * checkpoint, the database file's), and then everything is forgotten. A
 * stat of two files costs far less than preparing and running the queries.
 *
 * Entries live in a fixed hash of chained lists; past USER_CACHE_MAX_ENTRIES
 * the whole cache is dropped (simple, bounded, and rare). */
#include "mta.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define USER_CACHE_BUCKETS 1024
#define USER_CACHE_MAX_ENTRIES 4096

enum user_cache_kind { USER_CACHE_DOMAIN, USER_CACHE_RESOLVE };

struct user_cache_entry {
	enum user_cache_kind kind;
	char *key;
	bool local;             /* DOMAIN */
	char **targets;         /* RESOLVE: NULL-terminated, or NULL for none */
	struct user_cache_entry *next;
};

struct file_stamp {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct user_cache {
	char *db_path, *wal_path;
	struct file_stamp db, wal;
	struct user_cache_entry *buckets[USER_CACHE_BUCKETS];
	size_t count;
};

/* The mta's cache, created on first use (used on the loop only). */
static struct user_cache *user_cache_get(struct mta *m)
{
	if (m->user_cache == NULL) {
		struct user_cache *c = xcalloc(1, sizeof(*c));
		c->db_path = xasprintf("%s/users.sqlite", m->d->datadir);
		c->wal_path = xasprintf("%s/users.sqlite-wal", m->d->datadir);
		m->user_cache = c;
	}
	return m->user_cache;
}

/* Reads a file's identity; true when it differs from *stamp (which is updated). */
static bool file_stamp_changed(const char *path, struct file_stamp *stamp)
{
	struct stat st;
	struct file_stamp now;
	memset(&now, 0, sizeof(now));
	if (stat(path, &st) == 0) {
		now.exists = true;
		now.dev = st.st_dev;
		now.ino = st.st_ino;
		now.size = st.st_size;
		now.mtime = st.st_mtim;
	}
	bool changed = now.exists != stamp->exists || now.dev != stamp->dev ||
		       now.ino != stamp->ino || now.size != stamp->size ||
		       now.mtime.tv_sec != stamp->mtime.tv_sec ||
		       now.mtime.tv_nsec != stamp->mtime.tv_nsec;
	*stamp = now;
	return changed;
}

/* Forgets every entry. */
static void user_cache_clear(struct user_cache *c)
{
	for (size_t i = 0; i < USER_CACHE_BUCKETS; i++) {
		while (c->buckets[i] != NULL) {
			struct user_cache_entry *e = c->buckets[i];
			c->buckets[i] = e->next;
			free(e->key);
			userdb_strv_free(e->targets);
			free(e);
		}
	}
	c->count = 0;
}

/* Drops everything when users.sqlite changed since the last look. */
static void user_cache_validate(struct user_cache *c)
{
	bool db_changed = file_stamp_changed(c->db_path, &c->db);
	bool wal_changed = file_stamp_changed(c->wal_path, &c->wal);
	if (db_changed || wal_changed)
		user_cache_clear(c);
}

static size_t user_cache_bucket(enum user_cache_kind kind, const char *key)
{
	uint32_t h = 2166136261u ^ (uint32_t)kind;
	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h % USER_CACHE_BUCKETS;
}

static struct user_cache_entry *user_cache_find(struct user_cache *c, enum user_cache_kind kind,
						const char *key)
{
	for (struct user_cache_entry *e = c->buckets[user_cache_bucket(kind, key)]; e != NULL;
	     e = e->next)
		if (e->kind == kind && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

/* Adds an entry (the cache takes targets). */
static struct user_cache_entry *user_cache_add(struct user_cache *c, enum user_cache_kind kind,
					       const char *key)
{
	if (c->count >= USER_CACHE_MAX_ENTRIES)
		user_cache_clear(c);
	struct user_cache_entry *e = xcalloc(1, sizeof(*e));
	e->kind = kind;
	e->key = xstrdup(key);
	size_t b = user_cache_bucket(kind, key);
	e->next = c->buckets[b];
	c->buckets[b] = e;
	c->count++;
	return e;
}

/* A copy of a NULL-terminated list (NULL stays NULL). */
static char **strv_copy(char *const *v)
{
	if (v == NULL)
		return NULL;
	size_t n = 0;
	while (v[n] != NULL)
		n++;
	char **copy = xcalloc(n + 1, sizeof(*copy));
	for (size_t i = 0; i < n; i++)
		copy[i] = xstrdup(v[i]);
	return copy;
}

bool user_cache_domain_is_local(struct mta *m, const char *domain)
{
	struct user_cache *c = user_cache_get(m);
	user_cache_validate(c);
	struct user_cache_entry *e = user_cache_find(c, USER_CACHE_DOMAIN, domain);
	if (e == NULL) {
		bool local = userdb_domain_is_local(m->users, domain);
		e = user_cache_add(c, USER_CACHE_DOMAIN, domain);
		e->local = local;
	}
	return e->local;
}

char **user_cache_resolve(struct mta *m, const char *address)
{
	struct user_cache *c = user_cache_get(m);
	user_cache_validate(c);
	struct user_cache_entry *e = user_cache_find(c, USER_CACHE_RESOLVE, address);
	if (e == NULL) {
		char **targets = userdb_resolve(m->users, address);
		e = user_cache_add(c, USER_CACHE_RESOLVE, address);
		e->targets = targets;
	}
	return strv_copy(e->targets);
}

void user_cache_free(struct user_cache **c)
{
	if (*c == NULL)
		return;
	user_cache_clear(*c);
	free((*c)->db_path);
	free((*c)->wal_path);
	free(*c);
	*c = NULL;
}
