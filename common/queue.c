/* queue.c: the SQL of the mta's queue (see queue.h for the tables and the
 * recipient states). Statements used on hot paths are prepared once per
 * handle; everything else is prepared when needed. */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buffer.h"
#include "db.h"

static const char *const queue_migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE messages ("
	" id TEXT PRIMARY KEY,"
	" sender TEXT NOT NULL,"
	" envid TEXT,"
	" ret TEXT,"
	" smtputf8 INTEGER NOT NULL DEFAULT 0,"
	" body_8bit INTEGER NOT NULL DEFAULT 0,"
	" is_dsn INTEGER NOT NULL DEFAULT 0,"
	" auth_user TEXT,"
	" client TEXT,"
	" created INTEGER NOT NULL,"
	" held INTEGER NOT NULL DEFAULT 0,"
	" warned INTEGER NOT NULL DEFAULT 0,"
	" size INTEGER NOT NULL);"
	"CREATE TABLE bodies ("
	" msg_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
	" data BLOB NOT NULL);"
	"CREATE TABLE recipients ("
	" id INTEGER PRIMARY KEY,"
	" msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	" address TEXT NOT NULL,"
	" orig TEXT,"
	" orcpt TEXT,"
	" notify INTEGER NOT NULL DEFAULT 0,"
	" state INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT,"
	" next_try INTEGER NOT NULL);"
	"CREATE INDEX recipients_due ON recipients(state, next_try);"
	"CREATE INDEX recipients_msg ON recipients(msg_id);"
	"CREATE TABLE attempts ("
	" id INTEGER PRIMARY KEY,"
	" msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	" rcpt_id INTEGER,"
	" time INTEGER NOT NULL,"
	" proto TEXT, hop TEXT, status TEXT, reply TEXT);"
	"CREATE INDEX attempts_msg ON attempts(msg_id);",
};

struct queue {
	sqlite3 *db;
	int last_rc;
	sqlite3_stmt *insert_msg, *insert_body, *insert_rcpt, *update_rcpt, *insert_attempt;
	sqlite3_stmt *delete_if_done;
};

int64_t queue_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int queue_open(const char *datadir, queue **q_r, char **err_r)
{
	char *path = xasprintf("%s/queue.sqlite", datadir);
	sqlite3 *db = NULL;
	int rc = db_open(path, true, queue_migrations,
			 (int)(sizeof(queue_migrations) / sizeof(queue_migrations[0])), &db, err_r);
	free(path);
	if (rc < 0)
		return -1;
	queue *q = xcalloc(1, sizeof(*q));
	q->db = db;
	q->insert_msg = db_prepare(db,
		"INSERT INTO messages (id, sender, envid, ret, smtputf8, body_8bit, is_dsn,"
		" auth_user, client, created, held, warned, size)"
		" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
	q->insert_body = db_prepare(db, "INSERT INTO bodies (msg_id, data) VALUES (?,?)");
	q->insert_rcpt = db_prepare(db,
		"INSERT INTO recipients (msg_id, address, orig, orcpt, notify, state, attempts,"
		" last_error, next_try) VALUES (?,?,?,?,?,?,?,?,?)");
	q->update_rcpt = db_prepare(db,
		"UPDATE recipients SET state = ?, attempts = ?, last_error = ?, next_try = ?"
		" WHERE id = ?");
	q->insert_attempt = db_prepare(db,
		"INSERT INTO attempts (msg_id, rcpt_id, time, proto, hop, status, reply)"
		" VALUES (?,?,?,?,?,?,?)");
	q->delete_if_done = db_prepare(db,
		"DELETE FROM messages WHERE id = ?1 AND NOT EXISTS"
		" (SELECT 1 FROM recipients WHERE msg_id = ?1 AND state = 0)");
	*q_r = q;
	return 0;
}

void queue_close(queue **q)
{
	if (*q == NULL)
		return;
	sqlite3_finalize((*q)->insert_msg);
	sqlite3_finalize((*q)->insert_body);
	sqlite3_finalize((*q)->insert_rcpt);
	sqlite3_finalize((*q)->update_rcpt);
	sqlite3_finalize((*q)->insert_attempt);
	sqlite3_finalize((*q)->delete_if_done);
	db_close(&(*q)->db);
	free(*q);
	*q = NULL;
}

/* Records the last result code and fills *err_r from the connection. */
static int queue_fail(queue *q, int rc, const char *what, char **err_r)
{
	q->last_rc = rc;
	if (err_r != NULL)
		*err_r = xasprintf("queue: %s: %s", what, sqlite3_errmsg(q->db));
	return -1;
}

bool queue_error_is_temporary(queue *q)
{
	return db_error_is_temporary(q->last_rc);
}

/* Steps a statement that returns no rows, then resets it. */
static int queue_step_done(queue *q, sqlite3_stmt *stmt, const char *what, char **err_r)
{
	int rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	if (rc != SQLITE_DONE)
		return queue_fail(q, rc, what, err_r);
	return 0;
}

int queue_begin(queue *q, char **err_r)
{
	int rc = sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return queue_fail(q, rc, "begin", err_r);
	return 0;
}

int queue_commit(queue *q, char **err_r)
{
	int rc = sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		queue_fail(q, rc, "commit", err_r);
		queue_rollback(q);
		return -1;
	}
	return 0;
}

void queue_rollback(queue *q)
{
	if (!sqlite3_get_autocommit(q->db))
		sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Binds s as text, or NULL when s is NULL. */
static void bind_text_or_null(sqlite3_stmt *stmt, int col, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(stmt, col);
	else
		sqlite3_bind_text(stmt, col, s, -1, SQLITE_STATIC);
}

int queue_insert_message(queue *q, struct queue_msg *m, char **err_r)
{
	sqlite3_stmt *s = q->insert_msg;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, m->sender, -1, SQLITE_STATIC);
	bind_text_or_null(s, 3, m->envid);
	bind_text_or_null(s, 4, m->ret);
	sqlite3_bind_int(s, 5, m->smtputf8);
	sqlite3_bind_int(s, 6, m->body_8bit);
	sqlite3_bind_int(s, 7, m->is_dsn);
	bind_text_or_null(s, 8, m->auth_user);
	bind_text_or_null(s, 9, m->client);
	sqlite3_bind_int64(s, 10, m->created);
	sqlite3_bind_int(s, 11, m->held);
	sqlite3_bind_int(s, 12, m->warned);
	sqlite3_bind_int64(s, 13, (int64_t)m->body_len);
	if (queue_step_done(q, s, "insert message", err_r) < 0)
		return -1;
	s = q->insert_body;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(s, 2, m->body != NULL ? m->body : "", m->body_len, SQLITE_STATIC);
	if (queue_step_done(q, s, "insert body", err_r) < 0)
		return -1;
	for (size_t i = 0; i < m->rcpt_count; i++) {
		struct queue_rcpt *r = &m->rcpts[i];
		s = q->insert_rcpt;
		sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, r->address, -1, SQLITE_STATIC);
		bind_text_or_null(s, 3, r->orig);
		bind_text_or_null(s, 4, r->orcpt);
		sqlite3_bind_int(s, 5, (int)r->notify);
		sqlite3_bind_int(s, 6, (int)r->state);
		sqlite3_bind_int(s, 7, r->attempts);
		bind_text_or_null(s, 8, r->last_error);
		sqlite3_bind_int64(s, 9, r->next_try);
		if (queue_step_done(q, s, "insert recipient", err_r) < 0)
			return -1;
		r->id = sqlite3_last_insert_rowid(q->db);
	}
	return 0;
}

int queue_rcpt_update(queue *q, int64_t rcpt_id, enum queue_rcpt_state state, int attempts,
		      const char *last_error, int64_t next_try, char **err_r)
{
	sqlite3_stmt *s = q->update_rcpt;
	sqlite3_bind_int(s, 1, (int)state);
	sqlite3_bind_int(s, 2, attempts);
	bind_text_or_null(s, 3, last_error);
	sqlite3_bind_int64(s, 4, next_try);
	sqlite3_bind_int64(s, 5, rcpt_id);
	return queue_step_done(q, s, "update recipient", err_r);
}

int queue_attempt_add(queue *q, const char *msg_id, int64_t rcpt_id, int64_t when,
		      const char *proto, const char *hop, const char *status, const char *reply,
		      char **err_r)
{
	sqlite3_stmt *s = q->insert_attempt;
	sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, rcpt_id);
	sqlite3_bind_int64(s, 3, when);
	bind_text_or_null(s, 4, proto);
	bind_text_or_null(s, 5, hop);
	bind_text_or_null(s, 6, status);
	bind_text_or_null(s, 7, reply);
	return queue_step_done(q, s, "insert attempt", err_r);
}

/* Runs one statement bound to a message id. */
static int queue_exec_id(queue *q, const char *sql, const char *id, const char *what,
			 char **err_r)
{
	sqlite3_stmt *s = db_prepare(q->db, sql);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return queue_fail(q, rc, what, err_r);
	return 0;
}

int queue_msg_set_warned(queue *q, const char *id, char **err_r)
{
	return queue_exec_id(q, "UPDATE messages SET warned = 1 WHERE id = ?", id, "set warned",
			     err_r);
}

int queue_msg_delete_if_done(queue *q, const char *id, bool *deleted_r, char **err_r)
{
	*deleted_r = false;
	sqlite3_stmt *s = q->delete_if_done;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (queue_step_done(q, s, "delete message", err_r) < 0)
		return -1;
	*deleted_r = sqlite3_changes(q->db) > 0;
	return 0;
}

size_t queue_due_messages(queue *q, int64_t now, size_t limit, char ***ids_r)
{
	sqlite3_stmt *s = db_prepare(q->db,
		"SELECT r.msg_id, MIN(r.next_try) AS t FROM recipients r"
		" JOIN messages m ON m.id = r.msg_id"
		" WHERE r.state = 0 AND r.next_try <= ? AND m.held = 0"
		" GROUP BY r.msg_id ORDER BY t LIMIT ?");
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, (int64_t)limit);
	size_t count = 0, cap = 16;
	char **ids = xmalloc(cap * sizeof(*ids));
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (count + 1 >= cap) {
			cap *= 2;
			ids = xrealloc(ids, cap * sizeof(*ids));
		}
		ids[count++] = xstrdup((const char *)sqlite3_column_text(s, 0));
	}
	sqlite3_finalize(s);
	ids[count] = NULL;
	*ids_r = ids;
	return count;
}

/* A copy of a text column, or NULL for SQL NULL. */
static char *column_strdup(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	return t != NULL ? xstrdup((const char *)t) : NULL;
}

/* Fills the envelope fields of m from a row of the messages table. */
static void queue_msg_from_row(sqlite3_stmt *s, struct queue_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->id = column_strdup(s, 0);
	m->sender = column_strdup(s, 1);
	if (m->sender == NULL)
		m->sender = xstrdup("");
	m->envid = column_strdup(s, 2);
	m->ret = column_strdup(s, 3);
	m->smtputf8 = sqlite3_column_int(s, 4) != 0;
	m->body_8bit = sqlite3_column_int(s, 5) != 0;
	m->is_dsn = sqlite3_column_int(s, 6) != 0;
	m->auth_user = column_strdup(s, 7);
	m->client = column_strdup(s, 8);
	m->created = sqlite3_column_int64(s, 9);
	m->held = sqlite3_column_int(s, 10) != 0;
	m->warned = sqlite3_column_int(s, 11) != 0;
	m->size = sqlite3_column_int64(s, 12);
}

#define QUEUE_MSG_COLUMNS \
	"id, sender, envid, ret, smtputf8, body_8bit, is_dsn, auth_user, client, created," \
	" held, warned, size"

/* Loads the recipients of m (only due QUEUED ones when due_before >= 0). */
static void queue_load_rcpts(queue *q, struct queue_msg *m, int64_t due_before)
{
	sqlite3_stmt *s = db_prepare(q->db, due_before >= 0 ?
		"SELECT id, address, orig, orcpt, notify, state, attempts, last_error, next_try"
		" FROM recipients WHERE msg_id = ? AND state = 0 AND next_try <= ? ORDER BY id" :
		"SELECT id, address, orig, orcpt, notify, state, attempts, last_error, next_try"
		" FROM recipients WHERE msg_id = ? ORDER BY id");
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	if (due_before >= 0)
		sqlite3_bind_int64(s, 2, due_before);
	size_t cap = 4;
	m->rcpts = xcalloc(cap, sizeof(*m->rcpts));
	m->rcpt_count = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (m->rcpt_count == cap) {
			cap *= 2;
			m->rcpts = xrealloc(m->rcpts, cap * sizeof(*m->rcpts));
		}
		struct queue_rcpt *r = &m->rcpts[m->rcpt_count++];
		memset(r, 0, sizeof(*r));
		r->id = sqlite3_column_int64(s, 0);
		r->address = column_strdup(s, 1);
		r->orig = column_strdup(s, 2);
		r->orcpt = column_strdup(s, 3);
		r->notify = (unsigned)sqlite3_column_int(s, 4);
		r->state = (enum queue_rcpt_state)sqlite3_column_int(s, 5);
		r->attempts = sqlite3_column_int(s, 6);
		r->last_error = column_strdup(s, 7);
		r->next_try = sqlite3_column_int64(s, 8);
	}
	sqlite3_finalize(s);
}

int queue_msg_load(queue *q, const char *id, bool with_body, int64_t due_before,
		   struct queue_msg *m_r, char **err_r)
{
	sqlite3_stmt *s = db_prepare(q->db, "SELECT " QUEUE_MSG_COLUMNS " FROM messages WHERE id = ?");
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(s);
		if (rc == SQLITE_DONE) {
			*err_r = xasprintf("queue: no message %s", id);
			return -1;
		}
		return queue_fail(q, rc, "load message", err_r);
	}
	queue_msg_from_row(s, m_r);
	sqlite3_finalize(s);
	queue_load_rcpts(q, m_r, due_before);
	if (with_body) {
		s = db_prepare(q->db, "SELECT data FROM bodies WHERE msg_id = ?");
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW) {
			size_t len = (size_t)sqlite3_column_bytes(s, 0);
			const void *data = sqlite3_column_blob(s, 0);
			m_r->body = xmalloc(len + 1);
			if (len > 0)
				memcpy(m_r->body, data, len);
			m_r->body[len] = '\0';
			m_r->body_len = len;
		}
		sqlite3_finalize(s);
		if (m_r->body == NULL) {
			queue_msg_free(m_r);
			*err_r = xasprintf("queue: message %s has no body", id);
			return -1;
		}
	}
	return 0;
}

void queue_msg_free(struct queue_msg *m)
{
	free(m->id);
	free(m->sender);
	free(m->envid);
	free(m->ret);
	free(m->auth_user);
	free(m->client);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		free(m->rcpts[i].address);
		free(m->rcpts[i].orig);
		free(m->rcpts[i].orcpt);
		free(m->rcpts[i].last_error);
	}
	free(m->rcpts);
	free(m->body);
	memset(m, 0, sizeof(*m));
}

size_t queue_list(queue *q, struct queue_msg **list_r)
{
	sqlite3_stmt *s = db_prepare(q->db,
		"SELECT " QUEUE_MSG_COLUMNS " FROM messages ORDER BY created, id");
	size_t count = 0, cap = 16;
	struct queue_msg *list = xcalloc(cap, sizeof(*list));
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			list = xrealloc(list, cap * sizeof(*list));
		}
		queue_msg_from_row(s, &list[count++]);
	}
	sqlite3_finalize(s);
	for (size_t i = 0; i < count; i++)
		queue_load_rcpts(q, &list[i], -1);
	*list_r = list;
	return count;
}

int64_t queue_next_due(queue *q)
{
	sqlite3_stmt *s = db_prepare(q->db,
		"SELECT MIN(r.next_try) FROM recipients r JOIN messages m ON m.id = r.msg_id"
		" WHERE r.state = 0 AND m.held = 0");
	int64_t t = -1;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
		t = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return t;
}

/* Runs a one-statement operator command and fails when no message matched. */
static int queue_operator(queue *q, const char *sql, const char *id, const char *what,
			  char **err_r)
{
	if (queue_exec_id(q, sql, id, what, err_r) < 0)
		return -1;
	if (sqlite3_changes(q->db) == 0) {
		*err_r = xasprintf("no queued message %s", id);
		return -1;
	}
	return 0;
}

int queue_msg_flush(queue *q, const char *id, char **err_r)
{
	/* Touch the message row too so an id with no queued recipient is still found. */
	if (queue_operator(q, "UPDATE messages SET held = held WHERE id = ?", id, "flush",
			   err_r) < 0)
		return -1;
	return queue_exec_id(q, "UPDATE recipients SET next_try = 0 WHERE msg_id = ? AND state = 0",
			     id, "flush", err_r);
}

int queue_msg_hold(queue *q, const char *id, bool hold, char **err_r)
{
	return queue_operator(q, hold ? "UPDATE messages SET held = 1 WHERE id = ?" :
				  "UPDATE messages SET held = 0 WHERE id = ?", id,
			      hold ? "hold" : "release", err_r);
}

int queue_msg_delete(queue *q, const char *id, char **err_r)
{
	return queue_operator(q, "DELETE FROM messages WHERE id = ?", id, "delete", err_r);
}

int queue_flush_all(queue *q, char **err_r)
{
	int rc = sqlite3_exec(q->db, "UPDATE recipients SET next_try = 0 WHERE state = 0", NULL,
			      NULL, NULL);
	if (rc != SQLITE_OK)
		return queue_fail(q, rc, "flush", err_r);
	return 0;
}
