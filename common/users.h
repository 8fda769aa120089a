/* users.h: the user directory, users.sqlite: domains, users, aliases, quotas
 * and Sieve scripts. Daemons and mailctl use only this API to reach it.
 *
 * Addresses are "local@domain"; local parts and domains are compared
 * case-insensitively and stored lower-case. A user's plus-detail
 * ("bob+lists") is not part of the user name: users_lookup strips it. */
#ifndef MAILSTACK_USERS_H
#define MAILSTACK_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "password.h"

typedef struct userdb userdb;

struct user_info {
	char *address;   /* canonical "alice@example.test" */
	char *local;     /* "alice" */
	char *domain;    /* "example.test" */
	char *detail;    /* "lists" from alice+lists@..., or NULL */
	char *password_hash;
	struct scram_keys scram;
	int64_t quota_bytes;    /* 0 = unlimited */
	int64_t quota_messages; /* 0 = unlimited */
};

/* Opens (creating and migrating if needed) DATADIR/users.sqlite. */
int userdb_open(const char *datadir, userdb **db_r, char **err_r);
void userdb_close(userdb **db);

int userdb_domain_add(userdb *db, const char *domain, char **err_r);
int userdb_domain_del(userdb *db, const char *domain, char **err_r);
bool userdb_domain_is_local(userdb *db, const char *domain);
/* NULL-terminated list (caller frees with userdb_strv_free). */
char **userdb_domain_list(userdb *db);

/* Adds a user (its domain is added when missing); hashes the password. */
int userdb_user_add(userdb *db, const char *address, const char *password, char **err_r);
int userdb_user_del(userdb *db, const char *address, char **err_r);
int userdb_user_passwd(userdb *db, const char *address, const char *password, char **err_r);
int userdb_user_set_quota(userdb *db, const char *address, int64_t bytes, int64_t messages,
			  char **err_r);
/* Looks up "user@domain" (a bare "user" matches when exactly one domain has
 * it); 0 and fills *info_r, or -1 when unknown. */
int userdb_user_lookup(userdb *db, const char *name, struct user_info *info_r);
void user_info_free(struct user_info *info);
/* Every user, sorted by address (caller frees with user_info_free on each, then free()). */
size_t userdb_user_list(userdb *db, struct user_info **list_r);

int userdb_alias_add(userdb *db, const char *alias, const char *target, char **err_r);
int userdb_alias_del(userdb *db, const char *alias, const char *target, char **err_r);
/* Pairs "alias -> target", NULL-terminated, alternating alias and target. */
char **userdb_alias_list(userdb *db);
/* Expands an address through aliases (recursively, loop-safe, at most 1000
 * results): the final addresses, NULL-terminated (local users and outside
 * addresses). Returns NULL when the address is neither an alias nor a user of
 * a local domain; returns the address itself for a non-local domain. A local
 * user named with a detail resolves to itself, detail kept
 * ("bob+lists@example.test"), so that the mda can file by detail; aliases are
 * matched exactly first, then without the detail, and their targets replace it. */
char **userdb_resolve(userdb *db, const char *address);
/* Addresses the user may use as envelope sender: its own and its aliases. */
bool userdb_sender_allowed(userdb *db, const char *user, const char *sender);

int userdb_sieve_put(userdb *db, const char *address, const char *script, char **err_r);
/* The user's script (caller frees) or NULL. */
char *userdb_sieve_get(userdb *db, const char *address);
int userdb_sieve_del(userdb *db, const char *address, char **err_r);

void userdb_strv_free(char **v);

#endif
