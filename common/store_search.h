/* store_search.h: the questions about a user's mail store that a server of
 * large folders asks and store.h does not offer: messages by UID range (a
 * FETCH or STORE of a few messages never lists the whole folder), the first
 * unseen message (SELECT without reading every row), and the zone of a
 * message's internal date (APPEND's date-time keeps the zone it was given).
 *
 * A store_query is a second SQLite connection to the store's database file
 * (store_db_path), opened by the caller beside its store handle and used from
 * the same thread. In WAL mode its reads never wait for the store's writer and
 * see every commit made before they begin; they do not see the changes of a
 * transaction the store handle has open (store_begin), so a caller reads
 * through it only outside such a transaction. It knows the store's schema
 * (the columns of folders and messages it reads); when a migration of
 * common/store.c changes them, opening fails with the reason instead of
 * misreading rows. */
#ifndef MAILSTACK_STORE_SEARCH_H
#define MAILSTACK_STORE_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct store_query store_query;

/* Opens the query connection for a store. -1 with *err_r. */
int store_query_open(store *st, store_query **q_r, char **err_r);
void store_query_close(store_query **q);
/* The last error message for the failed call. */
const char *store_query_last_error(const store_query *q);

/* Messages of a folder with first <= UID <= last, in UID order, as
 * store_msg_list gives them (\Recent included). Free with store_msg_list_free.
 * STORE_ERR_NOTFOUND for a folder that does not exist. */
int store_query_msgs(store_query *q, const char *folder, uint32_t first, uint32_t last,
		     struct store_msg **list_r, size_t *count_r);

/* Messages of a folder that have every flag in flags (enum store_flag bits),
 * in UID order: the \Deleted ones for EXPUNGE, without listing the rest. */
int store_query_msgs_flagged(store_query *q, const char *folder, uint32_t flags,
			     struct store_msg **list_r, size_t *count_r);

/* The lowest UID of a message without \Seen, or 0 when all are seen. */
int store_query_first_unseen(store_query *q, const char *folder, uint32_t *uid_r);

/* Sets the zone (minutes east of UTC) in which INTERNALDATE shows a message;
 * its instant is unchanged. Durable when it returns. */
int store_query_set_internal_tz(store_query *q, const char *folder, uint32_t uid,
				int tz_minutes);

#endif
