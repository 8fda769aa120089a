/* store.c: the mail store, one SQLite database per user (see store.h).
 *
 * Layout of a mailbox database (schema version in PRAGMA user_version):
 *   mailbox      one row: the mailbox-wide MODSEQ counter and the last
 *                UIDVALIDITY handed out
 *   folders      name (UTF-8, '/' separated, "INBOX" spelt in capitals),
 *                UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, role, \Noselect, and the
 *                counters (messages, unseen, recent, size) that SELECT and
 *                STATUS read without scanning; triggers keep the counters
 *                true whatever statement changes a message; first_recent_uid:
 *                messages from that UID on are \Recent (RFC 3501 2.3.2)
 *   messages     one row per message in a folder: UID, flags, keywords,
 *                dates, size, MODSEQ, lifecycle id, \Recent, body_id; kept
 *                narrow so listing 100,000 rows never pages through bodies
 *   bodies       the raw messages (CRLF line ends), one BLOB each, shared by
 *                copies; deleted when the last message using it goes
 *   msg_headers  header fields parsed once at append (ENVELOPE, SEARCH, SORT)
 *   cache        per-message values computed by readers (BODYSTRUCTURE, ...)
 *   expunged     (folder, UID, MODSEQ) of every expunge, for QRESYNC-style
 *                "what went since MODSEQ n" questions
 *   subscriptions names, which may outlive their folders (RFC 3501 6.3.9)
 *
 * Invariants:
 *   - UIDs in a folder are strictly ascending and never reused: they come
 *     from folders.uidnext, which only grows while the folder lives.
 *   - UIDVALIDITY is time-based and strictly increasing per mailbox, so a
 *     folder created again under an old name never repeats an old value.
 *   - MODSEQ is strictly increasing per mailbox: every call that changes
 *     messages takes one new value from mailbox.modseq.
 *   - Every superior name of a folder exists as a folder (perhaps \Noselect).
 *
 * States of a handle (store_enter logs each transition):
 *
 *     AUTOCOMMIT --store_begin--> TRANSACTION --store_commit/rollback--> AUTOCOMMIT
 *
 * In AUTOCOMMIT every writing call is its own BEGIN IMMEDIATE ... COMMIT,
 * durable when it returns (synchronous=FULL). In TRANSACTION each writing call
 * runs inside a SAVEPOINT so a failed call undoes only itself, and the one
 * COMMIT of store_commit syncs them all (the mda's group commit). After every
 * commit that changed something, the notify file is written so inotify
 * watchers in other processes (imapd IDLE) wake up.
 *
 * Bodies are read in chunks with sqlite3 incremental blob I/O. A reader of a
 * large message uses its own connection, so the snapshot it holds while a slow
 * client drains the message never stands in the way of writes on the main
 * connection. A streaming append collects its bytes in memory (small) or in
 * an unlinked temporary file (large) and only takes the write lock at
 * store_append_finish: a slow IMAP client never holds up deliveries. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "db.h"
#include "header.h"
#include "log.h"

#define STORE_FOLDER_NAME_MAX 512
#define STORE_ADDRESS_PART_MAX 255
#define STORE_KEYWORDS_MAX 4096
#define STORE_LIFECYCLE_ID_MAX 128
/* Messages up to this size are buffered in memory by a streaming append and
 * loaded whole by a reader; above it, a temporary file and a blob handle. */
#define STORE_MEMORY_MAX (256 * 1024)
/* Only this much of a message's start is parsed for header columns. */
#define STORE_HEADER_SCAN_MAX (256 * 1024)
#define STORE_CHUNK_SIZE (256 * 1024)
#define STORE_SEARCH_NEEDLE_MAX 1024

static const char *const store_migrations[] = {
	/* 0 -> 1: the first schema. */
	"CREATE TABLE mailbox ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  modseq INTEGER NOT NULL,"
	"  last_uidvalidity INTEGER NOT NULL);"
	"INSERT INTO mailbox (id, modseq, last_uidvalidity) VALUES (1, 1, 0);"
	"CREATE TABLE folders ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  uidvalidity INTEGER NOT NULL,"
	"  uidnext INTEGER NOT NULL DEFAULT 1,"
	"  highestmodseq INTEGER NOT NULL,"
	"  special_use INTEGER NOT NULL DEFAULT 0,"
	"  noselect INTEGER NOT NULL DEFAULT 0,"
	"  messages INTEGER NOT NULL DEFAULT 0,"
	"  unseen INTEGER NOT NULL DEFAULT 0,"
	"  recent INTEGER NOT NULL DEFAULT 0,"
	"  size INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE bodies ("
	"  id INTEGER PRIMARY KEY,"
	"  data BLOB NOT NULL);"
	"CREATE TABLE messages ("
	"  id INTEGER PRIMARY KEY,"
	"  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
	"  uid INTEGER NOT NULL,"
	"  flags INTEGER NOT NULL,"
	"  modseq INTEGER NOT NULL,"
	"  recent INTEGER NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  internal_date INTEGER NOT NULL,"
	"  internal_tz INTEGER NOT NULL,"
	"  keywords TEXT,"
	"  lifecycle_id TEXT,"
	"  body_id INTEGER NOT NULL);"
	"CREATE UNIQUE INDEX messages_uid ON messages(folder_id, uid);"
	"CREATE INDEX messages_modseq ON messages(folder_id, modseq);"
	"CREATE INDEX messages_body ON messages(body_id);"
	"CREATE INDEX messages_lifecycle ON messages(lifecycle_id) WHERE lifecycle_id IS NOT NULL;"
	"CREATE TABLE msg_headers ("
	"  message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
	"  header_size INTEGER NOT NULL,"
	"  date TEXT, subject TEXT, from_ TEXT, sender TEXT, reply_to TEXT,"
	"  to_ TEXT, cc TEXT, bcc TEXT, in_reply_to TEXT, message_id_ TEXT,"
	"  references_ TEXT,"
	"  date_time INTEGER NOT NULL DEFAULT 0, date_tz INTEGER NOT NULL DEFAULT 0,"
	"  subject_utf8 TEXT, from_utf8 TEXT, to_utf8 TEXT, cc_utf8 TEXT, bcc_utf8 TEXT);"
	"CREATE TABLE cache ("
	"  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	"  key TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (message_id, key)) WITHOUT ROWID;"
	"CREATE TABLE expunged ("
	"  folder_id INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL,"
	"  modseq INTEGER NOT NULL,"
	"  PRIMARY KEY (folder_id, uid)) WITHOUT ROWID;"
	"CREATE INDEX expunged_modseq ON expunged(folder_id, modseq);"
	"CREATE TABLE subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID;"
	/* The counters follow every change of a message row. */
	"CREATE TRIGGER messages_insert AFTER INSERT ON messages BEGIN"
	"  UPDATE folders SET messages = messages + 1,"
	"    unseen = unseen + ((NEW.flags & 1) = 0), recent = recent + NEW.recent,"
	"    size = size + NEW.size, highestmodseq = max(highestmodseq, NEW.modseq)"
	"    WHERE id = NEW.folder_id;"
	"END;"
	"CREATE TRIGGER messages_delete AFTER DELETE ON messages BEGIN"
	"  UPDATE folders SET messages = messages - 1,"
	"    unseen = unseen - ((OLD.flags & 1) = 0), recent = recent - OLD.recent,"
	"    size = size - OLD.size WHERE id = OLD.folder_id;"
	"END;"
	"CREATE TRIGGER messages_update AFTER UPDATE OF folder_id, flags, recent, size, modseq"
	"  ON messages BEGIN"
	"  UPDATE folders SET messages = messages - 1,"
	"    unseen = unseen - ((OLD.flags & 1) = 0), recent = recent - OLD.recent,"
	"    size = size - OLD.size WHERE id = OLD.folder_id;"
	"  UPDATE folders SET messages = messages + 1,"
	"    unseen = unseen + ((NEW.flags & 1) = 0), recent = recent + NEW.recent,"
	"    size = size + NEW.size, highestmodseq = max(highestmodseq, NEW.modseq)"
	"    WHERE id = NEW.folder_id;"
	"END;"
	"CREATE TRIGGER expunged_insert AFTER INSERT ON expunged BEGIN"
	"  UPDATE folders SET highestmodseq = max(highestmodseq, NEW.modseq)"
	"    WHERE id = NEW.folder_id;"
	"END;",
	/* 1 -> 2: \Recent becomes "uid >= folders.first_recent_uid" (the
	 * first UID no session has seen selected), so clearing it at SELECT is
	 * one row, not one write per message of a 100,000-message folder. */
	"DROP TRIGGER messages_insert;"
	"DROP TRIGGER messages_delete;"
	"DROP TRIGGER messages_update;"
	"ALTER TABLE folders ADD COLUMN first_recent_uid INTEGER NOT NULL DEFAULT 1;"
	"UPDATE folders SET first_recent_uid = coalesce((SELECT min(m.uid) FROM messages m"
	"  WHERE m.folder_id = folders.id AND m.recent), uidnext);"
	"UPDATE folders SET recent = (SELECT count(*) FROM messages m"
	"  WHERE m.folder_id = folders.id AND m.uid >= folders.first_recent_uid);"
	"ALTER TABLE messages DROP COLUMN recent;"
	"CREATE TRIGGER messages_insert AFTER INSERT ON messages BEGIN"
	"  UPDATE folders SET messages = messages + 1,"
	"    unseen = unseen + ((NEW.flags & 1) = 0),"
	"    recent = recent + (NEW.uid >= first_recent_uid),"
	"    size = size + NEW.size, highestmodseq = max(highestmodseq, NEW.modseq)"
	"    WHERE id = NEW.folder_id;"
	"END;"
	"CREATE TRIGGER messages_delete AFTER DELETE ON messages BEGIN"
	"  UPDATE folders SET messages = messages - 1,"
	"    unseen = unseen - ((OLD.flags & 1) = 0),"
	"    recent = recent - (OLD.uid >= first_recent_uid),"
	"    size = size - OLD.size WHERE id = OLD.folder_id;"
	"END;"
	"CREATE TRIGGER messages_update AFTER UPDATE OF folder_id, uid, flags, size, modseq"
	"  ON messages BEGIN"
	"  UPDATE folders SET messages = messages - 1,"
	"    unseen = unseen - ((OLD.flags & 1) = 0),"
	"    recent = recent - (OLD.uid >= first_recent_uid),"
	"    size = size - OLD.size WHERE id = OLD.folder_id;"
	"  UPDATE folders SET messages = messages + 1,"
	"    unseen = unseen + ((NEW.flags & 1) = 0),"
	"    recent = recent + (NEW.uid >= first_recent_uid),"
	"    size = size + NEW.size, highestmodseq = max(highestmodseq, NEW.modseq)"
	"    WHERE id = NEW.folder_id;"
	"END;",
};

/* Every statement the store runs, prepared once per handle. Values are
 * always bound, never pasted into the SQL. */
enum store_sql_id {
	SQL_MODSEQ_NEXT,
	SQL_UIDVALIDITY_GET,
	SQL_UIDVALIDITY_SET,
	SQL_FOLDER_ROW,
	SQL_FOLDER_GET,
	SQL_FOLDER_LIST,
	SQL_FOLDER_INSERT,
	SQL_FOLDER_REVIVE,
	SQL_FOLDER_UIDNEXT_TAKE,
	SQL_FOLDER_HAS_CHILDREN,
	SQL_FOLDER_DELETE,
	SQL_FOLDER_MAKE_NOSELECT,
	SQL_FOLDER_RENAME_TREE,
	SQL_FOLDER_BODIES_DELETE,
	SQL_FOLDER_MESSAGES_DELETE,
	SQL_FOLDER_EXPUNGED_DELETE,
	SQL_FOLDER_MODSEQ_BUMP,
	SQL_FOLDER_CLEAR_RECENT,
	SQL_SUBSCRIBE,
	SQL_UNSUBSCRIBE,
	SQL_SUBSCRIPTIONS,
	SQL_SUBSCRIPTIONS_RENAME_TREE,
	SQL_BODY_INSERT,
	SQL_BODY_DELETE_UNUSED,
	SQL_MSG_INSERT,
	SQL_MSG_COPY,
	SQL_MSG_MOVE,
	SQL_MSG_GET,
	SQL_MSG_LIST,
	SQL_MSG_LIST_CHANGED,
	SQL_MSG_LIST_DELETED,
	SQL_MSG_LIST_IDS,
	SQL_MSG_LIST_UIDS,
	SQL_MSG_SET_FLAGS,
	SQL_MSG_DELETE,
	SQL_MSG_FIND_LIFECYCLE,
	SQL_HEADERS_INSERT,
	SQL_HEADERS_COPY,
	SQL_HEADERS_GET,
	SQL_HEADERS_LIST,
	SQL_EXPUNGED_INSERT,
	SQL_EXPUNGED_SINCE,
	SQL_CACHE_GET,
	SQL_CACHE_PUT,
	SQL_CACHE_COPY,
	SQL_USAGE,
	SQL_SEARCH_SUBJECT,
	SQL_SEARCH_FROM,
	SQL_SEARCH_TO,
	SQL_SEARCH_CC,
	SQL_SEARCH_BCC,
	SQL_COUNT
};

#define FOLDER_COLUMNS                                                                         \
	"f.id, f.name, f.uidvalidity, f.uidnext, f.highestmodseq, f.special_use, "           \
	"s.name IS NOT NULL, f.noselect, f.messages, f.unseen, f.recent, f.size "            \
	"FROM folders f LEFT JOIN subscriptions s ON s.name = f.name "
#define MSG_COLUMNS                                                                            \
	"id, uid, flags, keywords, internal_date, internal_tz, size, modseq, lifecycle_id "
#define HEADER_COLUMNS                                                                         \
	"m.uid, h.header_size, h.date, h.subject, h.from_, h.sender, h.reply_to, h.to_, "     \
	"h.cc, h.bcc, h.in_reply_to, h.message_id_, h.references_, h.date_time, h.date_tz, " \
	"h.subject_utf8, h.from_utf8, h.to_utf8, h.cc_utf8, h.bcc_utf8 "

/* The raw or the decoded value of a header column containing ?2, a LIKE
 * pattern (ASCII letters compare without case, as SEARCH wants). */
#define SEARCH_SQL(raw, utf8)                                                                  \
	"SELECT m.uid FROM messages m JOIN msg_headers h ON h.message_id = m.id "             \
	"WHERE m.folder_id = ?1 AND (h." utf8 " LIKE ?2 ESCAPE '\\' OR h." raw               \
	" LIKE ?2 ESCAPE '\\') ORDER BY m.uid"

static const char *const store_sql[SQL_COUNT] = {
	[SQL_MODSEQ_NEXT] = "UPDATE mailbox SET modseq = modseq + 1 RETURNING modseq",
	[SQL_UIDVALIDITY_GET] = "SELECT last_uidvalidity FROM mailbox",
	[SQL_UIDVALIDITY_SET] = "UPDATE mailbox SET last_uidvalidity = ?1",
	[SQL_FOLDER_ROW] = "SELECT id, uidvalidity, noselect, first_recent_uid, messages "
			   "FROM folders WHERE name = ?1",
	[SQL_FOLDER_GET] = "SELECT " FOLDER_COLUMNS "WHERE f.name = ?1",
	[SQL_FOLDER_LIST] = "SELECT " FOLDER_COLUMNS "ORDER BY f.name <> 'INBOX', f.name",
	[SQL_FOLDER_INSERT] = "INSERT INTO folders (name, uidvalidity, highestmodseq, special_use, "
			      "noselect) VALUES (?1, ?2, ?3, ?4, ?5)",
	[SQL_FOLDER_REVIVE] = "UPDATE folders SET noselect = 0, uidvalidity = ?2, uidnext = 1, "
			      "first_recent_uid = 1, "
			      "highestmodseq = ?3, special_use = ?4 WHERE id = ?1",
	[SQL_FOLDER_UIDNEXT_TAKE] = "UPDATE folders SET uidnext = uidnext + 1 WHERE id = ?1 "
				    "RETURNING uidnext - 1",
	/* Children are the names in [name "/", name "0"): '0' follows '/'. */
	[SQL_FOLDER_HAS_CHILDREN] = "SELECT 1 FROM folders WHERE name > ?1 || '/' "
				    "AND name < ?1 || '0' LIMIT 1",
	[SQL_FOLDER_DELETE] = "DELETE FROM folders WHERE id = ?1",
	[SQL_FOLDER_MAKE_NOSELECT] = "UPDATE folders SET noselect = 1, special_use = 0 "
				     "WHERE id = ?1",
	[SQL_FOLDER_RENAME_TREE] = "UPDATE folders SET name = ?2 || substr(name, length(?1) + 1) "
				   "WHERE name = ?1 OR (name > ?1 || '/' AND name < ?1 || '0')",
	[SQL_FOLDER_BODIES_DELETE] =
		"DELETE FROM bodies WHERE id IN (SELECT body_id FROM messages WHERE folder_id = ?1) "
		"AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = bodies.id "
		"AND m.folder_id <> ?1)",
	[SQL_FOLDER_MESSAGES_DELETE] = "DELETE FROM messages WHERE folder_id = ?1",
	[SQL_FOLDER_EXPUNGED_DELETE] = "DELETE FROM expunged WHERE folder_id = ?1",
	[SQL_FOLDER_MODSEQ_BUMP] = "UPDATE folders SET highestmodseq = max(highestmodseq, ?2) "
				   "WHERE id = ?1",
	[SQL_FOLDER_CLEAR_RECENT] = "UPDATE folders SET first_recent_uid = uidnext, recent = 0 "
				    "WHERE id = ?1",
	[SQL_SUBSCRIBE] = "INSERT OR IGNORE INTO subscriptions (name) VALUES (?1)",
	[SQL_UNSUBSCRIBE] = "DELETE FROM subscriptions WHERE name = ?1",
	[SQL_SUBSCRIPTIONS] = "SELECT name FROM subscriptions ORDER BY name <> 'INBOX', name",
	[SQL_SUBSCRIPTIONS_RENAME_TREE] =
		"UPDATE OR REPLACE subscriptions SET name = ?2 || substr(name, length(?1) + 1) "
		"WHERE name = ?1 OR (name > ?1 || '/' AND name < ?1 || '0')",
	[SQL_BODY_INSERT] = "INSERT INTO bodies (data) VALUES (?1)",
	[SQL_BODY_DELETE_UNUSED] = "DELETE FROM bodies WHERE id = ?1 AND NOT EXISTS "
				   "(SELECT 1 FROM messages WHERE body_id = ?1)",
	[SQL_MSG_INSERT] = "INSERT INTO messages (folder_id, uid, flags, modseq, size, "
			   "internal_date, internal_tz, keywords, lifecycle_id, body_id) "
			   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[SQL_MSG_COPY] = "INSERT INTO messages (folder_id, uid, flags, modseq, size, "
			 "internal_date, internal_tz, keywords, lifecycle_id, body_id) "
			 "SELECT ?2, ?3, flags, ?4, size, internal_date, internal_tz, keywords, "
			 "lifecycle_id, body_id FROM messages WHERE id = ?1",
	[SQL_MSG_MOVE] = "UPDATE messages SET folder_id = ?2, uid = ?3, modseq = ?4 WHERE id = ?1",
	[SQL_MSG_GET] = "SELECT " MSG_COLUMNS ", body_id FROM messages "
			"WHERE folder_id = ?1 AND uid = ?2",
	[SQL_MSG_LIST] = "SELECT " MSG_COLUMNS "FROM messages WHERE folder_id = ?1 ORDER BY uid",
	[SQL_MSG_LIST_CHANGED] = "SELECT " MSG_COLUMNS "FROM messages WHERE folder_id = ?1 "
				 "AND modseq > ?2 ORDER BY uid",
	[SQL_MSG_LIST_DELETED] = "SELECT id, uid, body_id FROM messages WHERE folder_id = ?1 "
				 "AND (flags & 8) <> 0 ORDER BY uid",
	[SQL_MSG_LIST_IDS] = "SELECT id, uid, body_id FROM messages WHERE folder_id = ?1 "
			     "ORDER BY uid",
	/* Answered from the (folder_id, uid) index alone. */
	[SQL_MSG_LIST_UIDS] = "SELECT uid FROM messages WHERE folder_id = ?1 ORDER BY uid",
	[SQL_MSG_SET_FLAGS] = "UPDATE messages SET flags = ?2, keywords = ?3, modseq = ?4 "
			      "WHERE id = ?1",
	[SQL_MSG_DELETE] = "DELETE FROM messages WHERE id = ?1",
	[SQL_MSG_FIND_LIFECYCLE] = "SELECT f.name, m.uid FROM messages m JOIN folders f "
				   "ON f.id = m.folder_id WHERE m.lifecycle_id = ?1 "
				   "ORDER BY f.name, m.uid",
	[SQL_HEADERS_INSERT] = "INSERT INTO msg_headers (message_id, header_size, date, subject, "
			       "from_, sender, reply_to, to_, cc, bcc, in_reply_to, message_id_, "
			       "references_, date_time, date_tz, subject_utf8, from_utf8, to_utf8, "
			       "cc_utf8, bcc_utf8) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
			       "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
	[SQL_HEADERS_COPY] = "INSERT INTO msg_headers SELECT ?2, header_size, date, subject, from_, "
			     "sender, reply_to, to_, cc, bcc, in_reply_to, message_id_, "
			     "references_, date_time, date_tz, subject_utf8, from_utf8, to_utf8, "
			     "cc_utf8, bcc_utf8 FROM msg_headers WHERE message_id = ?1",
	[SQL_HEADERS_GET] = "SELECT " HEADER_COLUMNS "FROM messages m JOIN msg_headers h "
			    "ON h.message_id = m.id WHERE m.folder_id = ?1 AND m.uid = ?2",
	[SQL_HEADERS_LIST] = "SELECT " HEADER_COLUMNS "FROM messages m JOIN msg_headers h "
			     "ON h.message_id = m.id WHERE m.folder_id = ?1 ORDER BY m.uid",
	[SQL_EXPUNGED_INSERT] = "INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) "
				"VALUES (?1, ?2, ?3)",
	[SQL_EXPUNGED_SINCE] = "SELECT uid FROM expunged WHERE folder_id = ?1 AND modseq > ?2 "
			       "ORDER BY uid",
	[SQL_CACHE_GET] = "SELECT value FROM cache WHERE message_id = ?1 AND key = ?2",
	[SQL_CACHE_PUT] = "INSERT OR REPLACE INTO cache (message_id, key, value) "
			  "VALUES (?1, ?2, ?3)",
	[SQL_CACHE_COPY] = "INSERT INTO cache (message_id, key, value) SELECT ?2, key, value "
			   "FROM cache WHERE message_id = ?1",
	[SQL_USAGE] = "SELECT coalesce(sum(size), 0), coalesce(sum(messages), 0) FROM folders",
	[SQL_SEARCH_SUBJECT] = SEARCH_SQL("subject", "subject_utf8"),
	[SQL_SEARCH_FROM] = SEARCH_SQL("from_", "from_utf8"),
	[SQL_SEARCH_TO] = SEARCH_SQL("to_", "to_utf8"),
	[SQL_SEARCH_CC] = SEARCH_SQL("cc", "cc_utf8"),
	[SQL_SEARCH_BCC] = SEARCH_SQL("bcc", "bcc_utf8"),
};

enum store_state { STORE_STATE_AUTOCOMMIT, STORE_STATE_TRANSACTION };

static const char *const store_state_names[] = {
	[STORE_STATE_AUTOCOMMIT] = "autocommit",
	[STORE_STATE_TRANSACTION] = "transaction",
};

struct store {
	sqlite3 *db;
	char *address;
	char *db_path;
	char *notify_path;
	int notify_fd;
	int busy_timeout_ms;
	enum store_state state;
	bool changed; /* the open transaction changed the mailbox */
	buf_t error;
	sqlite3_stmt *stmts[SQL_COUNT];
};

/* What the store knows of a folder while working on it. */
struct folder_row {
	int64_t id;
	uint32_t uidvalidity;
	bool noselect;
	uint32_t first_recent_uid; /* messages from this UID on are \Recent */
	uint32_t messages;
};

/* Where the bytes of a message being appended come from. */
struct append_source {
	const char *data; /* the whole message in memory, or NULL */
	int fd;           /* else a file holding it from offset 0 */
	uint64_t size;
	const char *head; /* the first head_len bytes, for header parsing */
	size_t head_len;
};

struct store_appender {
	store *st;
	char *folder;
	uint64_t size;
	uint64_t received;
	uint32_t flags;
	char *keywords;
	int64_t internal_date;
	char *lifecycle_id;
	buf_t head; /* the whole message when small, else its first bytes */
	int fd;     /* temporary file for a large message, or -1 */
	bool failed;
};

struct store_reader {
	uint64_t size;
	char *data;        /* a small message, loaded whole */
	sqlite3 *db;       /* a large one: its own connection ... */
	sqlite3_blob *blob; /* ... and an open blob handle */
};

/* Logs and makes a change of the handle's state. */
static void store_enter(store *st, enum store_state state)
{
	if (st->state == state)
		return;
	log_debug(0, "store %s: %s -> %s", st->address, store_state_names[st->state],
		  store_state_names[state]);
	st->state = state;
}

/* Records an error text for store_last_error and returns code. */
static int __attribute__((format(printf, 3, 4)))
store_fail(store *st, int code, const char *fmt, ...)
{
	va_list ap;
	buf_reset(&st->error);
	va_start(ap, fmt);
	buf_vprintf(&st->error, fmt, ap);
	va_end(ap);
	return code;
}

/* Records an SQLite failure. Everything SQLite reports is treated as a
 * failure that may pass (4xx, never 5xx): busy, full and I/O certainly are,
 * and anything stranger is safer retried than bounced. */
static int store_fail_sql(store *st, int rc, const char *what)
{
	return store_fail(st, STORE_ERR_TEMP, "%s: %s (%s)", what, sqlite3_errmsg(st->db),
			  sqlite3_errstr(rc));
}

/* The handle's prepared statement for id, reset and ready for binding. */
static sqlite3_stmt *store_stmt(store *st, enum store_sql_id id)
{
	if (st->stmts[id] == NULL)
		st->stmts[id] = db_prepare(st->db, store_sql[id]);
	return st->stmts[id];
}

/* Ends a statement's use: resets it and drops its bindings. */
static void store_stmt_done(sqlite3_stmt *stmt)
{
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
}

/* Runs a statement that returns no rows (or whose rows do not matter). */
static int store_stmt_run(store *st, sqlite3_stmt *stmt, const char *what)
{
	int rc = sqlite3_step(stmt);
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(stmt);
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE)
		return store_fail_sql(st, rc, what);
	return 0;
}

/* Binds text or NULL. */
static void store_bind_text(sqlite3_stmt *stmt, int index, const char *text)
{
	if (text == NULL)
		sqlite3_bind_null(stmt, index);
	else
		sqlite3_bind_text(stmt, index, text, -1, SQLITE_TRANSIENT);
}

/* A copy of a text column, or NULL for SQL NULL. */
static char *store_column_strdup(sqlite3_stmt *stmt, int col)
{
	const unsigned char *text = sqlite3_column_text(stmt, col);
	if (text == NULL)
		return NULL;
	return xstrndup((const char *)text, (size_t)sqlite3_column_bytes(stmt, col));
}

/* ---- names -------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (1..4) if it is well formed (no
 * overlong forms, surrogates or values past U+10FFFF) and not a control
 * character (C0, DEL or C1); 0 otherwise. */
static size_t store_utf8_char_ok(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x20 || c == 0x7f)
		return 0;
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	static const uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min_for_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	if (cp >= 0x80 && cp <= 0x9f)
		return 0;
	return len;
}

bool store_folder_name_valid(const char *name)
{
	if (name == NULL)
		return false;
	size_t len = strlen(name);
	if (len == 0 || len > STORE_FOLDER_NAME_MAX || name[0] == '/' || name[len - 1] == '/')
		return false;
	const unsigned char *p = (const unsigned char *)name;
	const unsigned char *level = p;
	while (*p != '\0') {
		if (*p == '/') {
			size_t level_len = (size_t)(p - level);
			if (level_len == 0 || (level_len == 1 && level[0] == '.') ||
			    (level_len == 2 && level[0] == '.' && level[1] == '.'))
				return false;
			p++;
			level = p;
			continue;
		}
		size_t n = store_utf8_char_ok(p);
		if (n == 0)
			return false;
		p += n;
	}
	size_t level_len = (size_t)(p - level);
	return !((level_len == 1 && level[0] == '.') ||
		 (level_len == 2 && level[0] == '.' && level[1] == '.'));
}

/* Checks name and writes it to out with a first level of "inbox" in any
 * case spelt "INBOX" (RFC 3501 5.1: INBOX is case-insensitive). */
static int store_folder_name_normalize(store *st, const char *name,
				       char out[STORE_FOLDER_NAME_MAX + 1])
{
	if (!store_folder_name_valid(name))
		return store_fail(st, STORE_ERR_INVALID, "invalid folder name");
	size_t len = strlen(name);
	memcpy(out, name, len + 1);
	if (strncasecmp(out, "INBOX", 5) == 0 && (out[5] == '\0' || out[5] == '/'))
		memcpy(out, "INBOX", 5);
	return 0;
}

/* True if one part of an address can be used as a file or directory name:
 * not empty, not starting with '.', no '/', '\\' or control characters. */
static bool store_address_part_ok(const char *s, size_t len)
{
	if (len == 0 || len > STORE_ADDRESS_PART_MAX || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
			return false;
	}
	return true;
}

/* ---- transactions and notification --------------------------------------- */

/* Wakes watchers in other processes: one byte written at offset 0 raises
 * inotify's IN_MODIFY on the notify file without growing it. */
static void store_notify(store *st)
{
	if (st->notify_fd < 0)
		return;
	if (pwrite(st->notify_fd, "\n", 1, 0) < 0)
		log_warn(0, "store %s: cannot write %s: %s", st->address, st->notify_path,
			 strerror(errno));
}

/* Starts one writing call: a transaction of its own, or a savepoint in the
 * caller's transaction. */
static int store_write_begin(store *st)
{
	const char *sql = st->state == STORE_STATE_TRANSACTION ? "SAVEPOINT store_op"
							       : "BEGIN IMMEDIATE";
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_fail_sql(st, rc, "cannot start a transaction");
	return 0;
}

/* Ends one writing call begun with store_write_begin: commits (and
 * notifies) when result is 0 and changed, else undoes it. Returns result, or
 * the failure of the commit. */
static int store_write_end(store *st, int result, bool changed)
{
	if (st->state == STORE_STATE_TRANSACTION) {
		if (result < 0)
			sqlite3_exec(st->db, "ROLLBACK TO store_op", NULL, NULL, NULL);
		sqlite3_exec(st->db, "RELEASE store_op", NULL, NULL, NULL);
		if (result == 0 && changed)
			st->changed = true;
		return result;
	}
	if (result < 0) {
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return result;
	}
	int rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		int err = store_fail_sql(st, rc, "cannot commit");
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
	if (changed)
		store_notify(st);
	return 0;
}

int store_begin(store *st)
{
	if (st->state == STORE_STATE_TRANSACTION)
		return store_fail(st, STORE_ERR_INVALID, "a transaction is already open");
	int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_fail_sql(st, rc, "cannot start a transaction");
	st->changed = false;
	store_enter(st, STORE_STATE_TRANSACTION);
	return 0;
}

int store_commit(store *st)
{
	if (st->state != STORE_STATE_TRANSACTION)
		return store_fail(st, STORE_ERR_INVALID, "no transaction is open");
	int rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		int err = store_fail_sql(st, rc, "cannot commit");
		store_rollback(st);
		return err;
	}
	store_enter(st, STORE_STATE_AUTOCOMMIT);
	if (st->changed)
		store_notify(st);
	st->changed = false;
	return 0;
}

void store_rollback(store *st)
{
	if (st->state != STORE_STATE_TRANSACTION)
		return;
	if (sqlite3_get_autocommit(st->db) == 0)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	st->changed = false;
	store_enter(st, STORE_STATE_AUTOCOMMIT);
}

/* Takes the next mailbox-wide MODSEQ. */
static int store_modseq_next(store *st, uint64_t *modseq_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_MODSEQ_NEXT);
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		store_stmt_done(stmt);
		return store_fail_sql(st, rc, "cannot take a modseq");
	}
	*modseq_r = (uint64_t)sqlite3_column_int64(stmt, 0);
	store_stmt_run(st, stmt, "modseq");
	return 0;
}

/* Takes a new UIDVALIDITY: the time, or one past the last one if the clock
 * has not moved on (or went back), so no two folders ever share one. */
static int store_uidvalidity_next(store *st, uint32_t *uidvalidity_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_UIDVALIDITY_GET);
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		store_stmt_done(stmt);
		return store_fail_sql(st, rc, "cannot read uidvalidity");
	}
	uint32_t last = (uint32_t)sqlite3_column_int64(stmt, 0);
	store_stmt_done(stmt);
	uint32_t now = (uint32_t)time(NULL);
	uint32_t next = now > last ? now : last + 1;
	if (next == 0)
		next = 1;
	stmt = store_stmt(st, SQL_UIDVALIDITY_SET);
	sqlite3_bind_int64(stmt, 1, next);
	if (store_stmt_run(st, stmt, "cannot store uidvalidity") < 0)
		return STORE_ERR_TEMP;
	*uidvalidity_r = next;
	return 0;
}

/* ---- folders ------------------------------------------------------------- */

const char *store_special_use_name(enum store_special_use use)
{
	static const char *const names[] = {
		[STORE_SPECIAL_NONE] = NULL,      [STORE_SPECIAL_INBOX] = NULL,
		[STORE_SPECIAL_DRAFTS] = "\\Drafts", [STORE_SPECIAL_SENT] = "\\Sent",
		[STORE_SPECIAL_TRASH] = "\\Trash", [STORE_SPECIAL_JUNK] = "\\Junk",
		[STORE_SPECIAL_ARCHIVE] = "\\Archive",
	};
	if ((unsigned)use >= sizeof(names) / sizeof(names[0]))
		return NULL;
	return names[use];
}

/* Finds a folder by its normalized name: 0, STORE_ERR_NOTFOUND or TEMP. */
static int store_folder_row(store *st, const char *name, struct folder_row *row_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_FOLDER_ROW);
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		row_r->id = sqlite3_column_int64(stmt, 0);
		row_r->uidvalidity = (uint32_t)sqlite3_column_int64(stmt, 1);
		row_r->noselect = sqlite3_column_int(stmt, 2) != 0;
		row_r->first_recent_uid = (uint32_t)sqlite3_column_int64(stmt, 3);
		row_r->messages = (uint32_t)sqlite3_column_int64(stmt, 4);
		store_stmt_done(stmt);
		return 0;
	}
	store_stmt_done(stmt);
	if (rc == SQLITE_DONE)
		return store_fail(st, STORE_ERR_NOTFOUND, "no such folder: %s", name);
	return store_fail_sql(st, rc, "cannot look up a folder");
}

/* Normalizes name and finds a folder that can hold messages (not \Noselect). */
static int store_folder_open(store *st, const char *name, struct folder_row *row_r)
{
	char norm[STORE_FOLDER_NAME_MAX + 1];
	int ret = store_folder_name_normalize(st, name, norm);
	if (ret == 0)
		ret = store_folder_row(st, norm, row_r);
	if (ret == 0 && row_r->noselect)
		ret = store_fail(st, STORE_ERR_INVALID, "folder %s cannot hold messages", norm);
	return ret;
}

/* Fills a folder from a row of FOLDER_COLUMNS. */
static void store_folder_from_row(sqlite3_stmt *stmt, struct store_folder *f)
{
	f->id = sqlite3_column_int64(stmt, 0);
	f->name = store_column_strdup(stmt, 1);
	f->uidvalidity = (uint32_t)sqlite3_column_int64(stmt, 2);
	f->uidnext = (uint32_t)sqlite3_column_int64(stmt, 3);
	f->highestmodseq = (uint64_t)sqlite3_column_int64(stmt, 4);
	f->special_use = (enum store_special_use)sqlite3_column_int(stmt, 5);
	f->subscribed = sqlite3_column_int(stmt, 6) != 0;
	f->noselect = sqlite3_column_int(stmt, 7) != 0;
	f->messages = (uint32_t)sqlite3_column_int64(stmt, 8);
	f->unseen = (uint32_t)sqlite3_column_int64(stmt, 9);
	f->recent = (uint32_t)sqlite3_column_int64(stmt, 10);
	f->size = (uint64_t)sqlite3_column_int64(stmt, 11);
}

int store_folder_list(store *st, struct store_folder **list_r, size_t *count_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_FOLDER_LIST);
	struct store_folder *list = NULL;
	size_t count = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			list = xrealloc(list, cap * sizeof(*list));
		}
		store_folder_from_row(stmt, &list[count++]);
	}
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE) {
		store_folder_list_free(list, count);
		return store_fail_sql(st, rc, "cannot list folders");
	}
	*list_r = list;
	*count_r = count;
	return 0;
}

int store_folder_get(store *st, const char *name, struct store_folder *folder_r)
{
	char norm[STORE_FOLDER_NAME_MAX + 1];
	int ret = store_folder_name_normalize(st, name, norm);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_FOLDER_GET);
	sqlite3_bind_text(stmt, 1, norm, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		store_folder_from_row(stmt, folder_r);
		store_stmt_done(stmt);
		return 0;
	}
	store_stmt_done(stmt);
	if (rc == SQLITE_DONE)
		return store_fail(st, STORE_ERR_NOTFOUND, "no such folder: %s", norm);
	return store_fail_sql(st, rc, "cannot read a folder");
}

/* Inserts one folder row (inside a write). A \Noselect placeholder of the
 * same name becomes a real folder with a fresh UIDVALIDITY. */
static int store_folder_insert(store *st, const char *norm, enum store_special_use use,
			       bool noselect, int64_t *id_r)
{
	struct folder_row row;
	int ret = store_folder_row(st, norm, &row);
	if (ret == 0 && (noselect || !row.noselect))
		return store_fail(st, STORE_ERR_EXISTS, "folder exists: %s", norm);
	if (ret != 0 && ret != STORE_ERR_NOTFOUND)
		return ret;
	bool revive = ret == 0;
	uint32_t uidvalidity = 0;
	uint64_t modseq = 0;
	if ((ret = store_uidvalidity_next(st, &uidvalidity)) < 0 ||
	    (ret = store_modseq_next(st, &modseq)) < 0)
		return ret;
	sqlite3_stmt *stmt;
	if (revive) {
		stmt = store_stmt(st, SQL_FOLDER_REVIVE);
		sqlite3_bind_int64(stmt, 1, row.id);
		sqlite3_bind_int64(stmt, 2, uidvalidity);
		sqlite3_bind_int64(stmt, 3, (int64_t)modseq);
		sqlite3_bind_int(stmt, 4, use);
		if (id_r != NULL)
			*id_r = row.id;
		return store_stmt_run(st, stmt, "cannot create a folder");
	}
	stmt = store_stmt(st, SQL_FOLDER_INSERT);
	sqlite3_bind_text(stmt, 1, norm, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, uidvalidity);
	sqlite3_bind_int64(stmt, 3, (int64_t)modseq);
	sqlite3_bind_int(stmt, 4, use);
	sqlite3_bind_int(stmt, 5, noselect);
	if (store_stmt_run(st, stmt, "cannot create a folder") < 0)
		return STORE_ERR_TEMP;
	if (id_r != NULL)
		*id_r = sqlite3_last_insert_rowid(st->db);
	return 0;
}

/* Creates every missing superior name of norm as an ordinary folder
 * (RFC 3501 6.3.3: the server SHOULD create them). */
static int store_folder_create_parents(store *st, const char *norm)
{
	char parent[STORE_FOLDER_NAME_MAX + 1];
	for (const char *slash = strchr(norm, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
		size_t len = (size_t)(slash - norm);
		memcpy(parent, norm, len);
		parent[len] = '\0';
		struct folder_row row;
		int ret = store_folder_row(st, parent, &row);
		if (ret == STORE_ERR_NOTFOUND)
			ret = store_folder_insert(st, parent, STORE_SPECIAL_NONE, false, NULL);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int store_folder_create(store *st, const char *name, enum store_special_use use)
{
	char norm[STORE_FOLDER_NAME_MAX + 1];
	int ret = store_folder_name_normalize(st, name, norm);
	if (ret < 0)
		return ret;
	if (use == STORE_SPECIAL_INBOX || (unsigned)use > STORE_SPECIAL_ARCHIVE)
		return store_fail(st, STORE_ERR_INVALID, "invalid special-use role");
	if ((ret = store_write_begin(st)) < 0)
		return ret;
	ret = store_folder_create_parents(st, norm);
	if (ret == 0)
		ret = store_folder_insert(st, norm, use, false, NULL);
	return store_write_end(st, ret, true);
}

/* True (1) if norm has children, 0 if not, or an error. */
static int store_folder_has_children(store *st, const char *norm)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_FOLDER_HAS_CHILDREN);
	sqlite3_bind_text(stmt, 1, norm, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	store_stmt_done(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_fail_sql(st, rc, "cannot look for children");
}

/* Runs one statement bound to a single integer id. */
static int store_run_with_id(store *st, enum store_sql_id id, int64_t value, const char *what)
{
	sqlite3_stmt *stmt = store_stmt(st, id);
	sqlite3_bind_int64(stmt, 1, value);
	return store_stmt_run(st, stmt, what);
}

/* Removes every message of a folder and its expunge history. */
static int store_folder_empty(store *st, int64_t folder_id)
{
	if (store_run_with_id(st, SQL_FOLDER_BODIES_DELETE, folder_id, "cannot delete bodies") < 0 ||
	    store_run_with_id(st, SQL_FOLDER_MESSAGES_DELETE, folder_id,
			      "cannot delete messages") < 0 ||
	    store_run_with_id(st, SQL_FOLDER_EXPUNGED_DELETE, folder_id,
			      "cannot delete expunge history") < 0)
		return STORE_ERR_TEMP;
	return 0;
}

int store_folder_delete(store *st, const char *name)
{
	char norm[STORE_FOLDER_NAME_MAX + 1];
	int ret = store_folder_name_normalize(st, name, norm);
	if (ret < 0)
		return ret;
	if (strcmp(norm, "INBOX") == 0)
		return store_fail(st, STORE_ERR_INVALID, "INBOX cannot be deleted");
	if ((ret = store_write_begin(st)) < 0)
		return ret;
	struct folder_row row;
	ret = store_folder_row(st, norm, &row);
	int children = ret == 0 ? store_folder_has_children(st, norm) : 0;
	if (ret == 0 && children < 0)
		ret = children;
	if (ret == 0 && children && row.noselect)
		ret = store_fail(st, STORE_ERR_INVALID, "%s has children and no messages", norm);
	if (ret == 0)
		ret = store_folder_empty(st, row.id);
	if (ret == 0 && children)
		ret = store_run_with_id(st, SQL_FOLDER_MAKE_NOSELECT, row.id,
					"cannot keep a placeholder");
	else if (ret == 0)
		ret = store_run_with_id(st, SQL_FOLDER_DELETE, row.id, "cannot delete a folder");
	return store_write_end(st, ret, true);
}

/* Moves one message row to another folder under a new UID and records its
 * old UID as expunged from the source with modseq. */
static int store_msg_move_row(store *st, int64_t msg_id, int64_t from_folder, uint32_t old_uid,
			      int64_t to_folder, uint64_t modseq, uint32_t *uid_r);
/* Takes the next UID of a folder. */
static int store_uid_next(store *st, int64_t folder_id, uint32_t *uid_r);

/* RENAME INBOX (RFC 3501 6.3.5): a new folder receives all of INBOX's
 * messages under new UIDs; INBOX stays, empty. */
static int store_folder_rename_inbox(store *st, const char *to)
{
	int ret = store_folder_create_parents(st, to);
	int64_t to_id = 0;
	if (ret == 0)
		ret = store_folder_insert(st, to, STORE_SPECIAL_NONE, false, &to_id);
	struct folder_row inbox;
	if (ret == 0)
		ret = store_folder_row(st, "INBOX", &inbox);
	uint64_t modseq = 0;
	if (ret == 0)
		ret = store_modseq_next(st, &modseq);
	if (ret < 0)
		return ret;
	/* Collect first: moving rows while stepping over them would be unsafe. */
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_LIST_IDS);
	sqlite3_bind_int64(stmt, 1, inbox.id);
	int64_t *ids = NULL;
	uint32_t *uids = NULL;
	size_t count = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			ids = xrealloc(ids, cap * sizeof(*ids));
			uids = xrealloc(uids, cap * sizeof(*uids));
		}
		ids[count] = sqlite3_column_int64(stmt, 0);
		uids[count++] = (uint32_t)sqlite3_column_int64(stmt, 1);
	}
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE)
		ret = store_fail_sql(st, rc, "cannot list INBOX");
	for (size_t i = 0; ret == 0 && i < count; i++)
		ret = store_msg_move_row(st, ids[i], inbox.id, uids[i], to_id, modseq, NULL);
	free(ids);
	free(uids);
	return ret;
}

int store_folder_rename(store *st, const char *from, const char *to)
{
	char from_norm[STORE_FOLDER_NAME_MAX + 1], to_norm[STORE_FOLDER_NAME_MAX + 1];
	int ret = store_folder_name_normalize(st, from, from_norm);
	if (ret == 0)
		ret = store_folder_name_normalize(st, to, to_norm);
	if (ret < 0)
		return ret;
	/* INBOX may move its messages to a child ("INBOX/old"); other folders
	 * cannot become their own children. */
	size_t from_len = strlen(from_norm);
	bool from_inbox = strcmp(from_norm, "INBOX") == 0;
	if (strncmp(to_norm, from_norm, from_len) == 0 &&
	    (to_norm[from_len] == '\0' || (to_norm[from_len] == '/' && !from_inbox)))
		return store_fail(st, STORE_ERR_INVALID, "cannot rename %s into itself", from_norm);
	if ((ret = store_write_begin(st)) < 0)
		return ret;
	struct folder_row row;
	ret = store_folder_row(st, to_norm, &row);
	if (ret == 0)
		ret = store_fail(st, STORE_ERR_EXISTS, "folder exists: %s", to_norm);
	else if (ret == STORE_ERR_NOTFOUND)
		ret = store_folder_row(st, from_norm, &row);
	if (ret == 0 && from_inbox) {
		ret = store_folder_rename_inbox(st, to_norm);
		return store_write_end(st, ret, true);
	}
	if (ret == 0)
		ret = store_folder_create_parents(st, to_norm);
	if (ret == 0) {
		sqlite3_stmt *stmt = store_stmt(st, SQL_FOLDER_RENAME_TREE);
		sqlite3_bind_text(stmt, 1, from_norm, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, to_norm, -1, SQLITE_STATIC);
		ret = store_stmt_run(st, stmt, "cannot rename a folder");
	}
	if (ret == 0) {
		/* Subscriptions follow the folders they name. */
		sqlite3_stmt *stmt = store_stmt(st, SQL_SUBSCRIPTIONS_RENAME_TREE);
		sqlite3_bind_text(stmt, 1, from_norm, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, to_norm, -1, SQLITE_STATIC);
		ret = store_stmt_run(st, stmt, "cannot rename subscriptions");
	}
	return store_write_end(st, ret, true);
}

int store_folder_subscribe(store *st, const char *name, bool subscribed)
{
	char norm[STORE_FOLDER_NAME_MAX + 1];
	int ret = store_folder_name_normalize(st, name, norm);
	if (ret < 0)
		return ret;
	if ((ret = store_write_begin(st)) < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, subscribed ? SQL_SUBSCRIBE : SQL_UNSUBSCRIBE);
	sqlite3_bind_text(stmt, 1, norm, -1, SQLITE_STATIC);
	ret = store_stmt_run(st, stmt, "cannot change a subscription");
	return store_write_end(st, ret, false);
}

char **store_subscriptions(store *st)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_SUBSCRIPTIONS);
	char **v = xmalloc(sizeof(*v));
	size_t count = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		v = xrealloc(v, (count + 2) * sizeof(*v));
		v[count++] = store_column_strdup(stmt, 0);
	}
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE)
		store_fail_sql(st, rc, "cannot list subscriptions");
	v[count] = NULL;
	return v;
}

void store_folder_free(struct store_folder *f)
{
	if (f == NULL)
		return;
	free(f->name);
	f->name = NULL;
}

void store_folder_list_free(struct store_folder *list, size_t count)
{
	for (size_t i = 0; i < count; i++)
		store_folder_free(&list[i]);
	free(list);
}

void store_strv_free(char **v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* ---- open and close ------------------------------------------------------ */

/* The default folders of a new mailbox with their roles (RFC 6154). */
static const struct {
	const char *name;
	enum store_special_use use;
} store_default_folders[] = {
	{"INBOX", STORE_SPECIAL_INBOX},   {"Drafts", STORE_SPECIAL_DRAFTS},
	{"Sent", STORE_SPECIAL_SENT},     {"Trash", STORE_SPECIAL_TRASH},
	{"Junk", STORE_SPECIAL_JUNK},     {"Archive", STORE_SPECIAL_ARCHIVE},
};

/* Creates and subscribes the default folders once, when INBOX is missing. */
static int store_create_defaults(store *st)
{
	struct folder_row row;
	int ret = store_folder_row(st, "INBOX", &row);
	if (ret != STORE_ERR_NOTFOUND)
		return ret;
	if ((ret = store_write_begin(st)) < 0)
		return ret;
	/* Another process may have made them while we waited for the lock. */
	ret = store_folder_row(st, "INBOX", &row);
	if (ret != STORE_ERR_NOTFOUND)
		return store_write_end(st, ret, false);
	ret = 0;
	for (size_t i = 0; ret == 0 && i < sizeof(store_default_folders) /
						    sizeof(store_default_folders[0]); i++) {
		const char *name = store_default_folders[i].name;
		ret = store_folder_insert(st, name, store_default_folders[i].use, false, NULL);
		if (ret == STORE_ERR_EXISTS)
			ret = 0;
		if (ret == 0) {
			sqlite3_stmt *stmt = store_stmt(st, SQL_SUBSCRIBE);
			sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
			ret = store_stmt_run(st, stmt, "cannot subscribe");
		}
	}
	return store_write_end(st, ret, true);
}

/* Splits a mailbox address into its parts, folded to lower case so that one
 * user never ends up with two mailbox files; false when either part could
 * not name a file (see store_address_part_ok). */
static bool store_address_fold(const char *address, char **local_r, char **domain_r)
{
	const char *at = address != NULL ? strrchr(address, '@') : NULL;
	if (at == NULL || !store_address_part_ok(address, (size_t)(at - address)) ||
	    !store_address_part_ok(at + 1, strlen(at + 1)))
		return false;
	char *local = xstrndup(address, (size_t)(at - address));
	char *domain = xstrdup(at + 1);
	for (char *p = local; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	for (char *p = domain; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	*local_r = local;
	*domain_r = domain;
	return true;
}

char *store_mailbox_file(const char *datadir, const char *address, const char *suffix)
{
	char *local, *domain;
	if (!store_address_fold(address, &local, &domain))
		return NULL;
	char *path = xasprintf("%s/mail/%s/%s%s", datadir, domain, local, suffix);
	free(local);
	free(domain);
	return path;
}

int store_open(const char *datadir, const char *address, store **st_r, char **err_r)
{
	char *local, *domain;
	if (!store_address_fold(address, &local, &domain)) {
		*err_r = xasprintf("invalid mailbox address");
		return STORE_ERR_INVALID;
	}
	char *dir = xasprintf("%s/mail/%s", datadir, domain);
	store *st = xcalloc(1, sizeof(*st));
	st->address = xasprintf("%s@%s", local, domain);
	st->db_path = xasprintf("%s/%s.sqlite", dir, local);
	st->notify_path = xasprintf("%s/%s.notify", dir, local);
	st->notify_fd = -1;
	st->busy_timeout_ms = DB_BUSY_TIMEOUT_MS;
	st->state = STORE_STATE_AUTOCOMMIT;
	free(local);
	free(domain);
	int ret = db_mkdir_parents(dir, err_r);
	free(dir);
	if (ret < 0) {
		store_close(&st);
		return STORE_ERR_TEMP;
	}
	if (db_open(st->db_path, true, store_migrations,
		    (int)(sizeof(store_migrations) / sizeof(store_migrations[0])), &st->db,
		    err_r) < 0) {
		store_close(&st);
		return STORE_ERR_TEMP;
	}
	/* A 50 MB message passes through the WAL; do not keep the file that big
	 * after a checkpoint. The savepoint of each call inside a group commit
	 * journals the pages it touches: in memory, not in a temporary file
	 * (a tenth of the system time per append). */
	db_exec(st->db, "PRAGMA journal_size_limit = 67108864; PRAGMA temp_store = MEMORY", NULL);
	st->notify_fd = open(st->notify_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (st->notify_fd < 0) {
		*err_r = xasprintf("cannot open %s: %s", st->notify_path, strerror(errno));
		store_close(&st);
		return STORE_ERR_TEMP;
	}
	if ((ret = store_create_defaults(st)) < 0) {
		*err_r = xstrdup(store_last_error(st));
		store_close(&st);
		return ret;
	}
	*st_r = st;
	return 0;
}

void store_close(store **stp)
{
	store *st = *stp;
	if (st == NULL)
		return;
	store_rollback(st);
	for (size_t i = 0; i < SQL_COUNT; i++)
		sqlite3_finalize(st->stmts[i]);
	db_close(&st->db);
	if (st->notify_fd >= 0)
		close(st->notify_fd);
	free(st->address);
	free(st->db_path);
	free(st->notify_path);
	buf_free(&st->error);
	free(st);
	*stp = NULL;
}

const char *store_db_path(const store *st)
{
	return st->db_path;
}

const char *store_notify_path(const store *st)
{
	return st->notify_path;
}

const char *store_last_error(const store *st)
{
	return buf_cstr(&st->error);
}

int store_set_busy_timeout(store *st, int ms)
{
	st->busy_timeout_ms = ms;
	return sqlite3_busy_timeout(st->db, ms) == SQLITE_OK ? 0 : STORE_ERR_INVALID;
}

/* ---- messages: rows ------------------------------------------------------ */

/* Takes the folder's next UID (RFC 3501 2.3.1.1: strictly ascending, never reused). */
static int store_uid_next(store *st, int64_t folder_id, uint32_t *uid_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_FOLDER_UIDNEXT_TAKE);
	sqlite3_bind_int64(stmt, 1, folder_id);
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		store_stmt_done(stmt);
		return store_fail_sql(st, rc, "cannot take a UID");
	}
	int64_t uid = sqlite3_column_int64(stmt, 0);
	store_stmt_run(st, stmt, "uid");
	if (uid <= 0 || uid > UINT32_MAX)
		return store_fail(st, STORE_ERR_INVALID, "the folder has run out of UIDs");
	*uid_r = (uint32_t)uid;
	return 0;
}

/* Records an expunged UID. */
static int store_expunged_add(store *st, int64_t folder_id, uint32_t uid, uint64_t modseq)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_EXPUNGED_INSERT);
	sqlite3_bind_int64(stmt, 1, folder_id);
	sqlite3_bind_int64(stmt, 2, uid);
	sqlite3_bind_int64(stmt, 3, (int64_t)modseq);
	return store_stmt_run(st, stmt, "cannot record an expunge");
}

static int store_msg_move_row(store *st, int64_t msg_id, int64_t from_folder, uint32_t old_uid,
			      int64_t to_folder, uint64_t modseq, uint32_t *uid_r)
{
	uint32_t uid;
	int ret = store_uid_next(st, to_folder, &uid);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_MOVE);
	sqlite3_bind_int64(stmt, 1, msg_id);
	sqlite3_bind_int64(stmt, 2, to_folder);
	sqlite3_bind_int64(stmt, 3, uid);
	sqlite3_bind_int64(stmt, 4, (int64_t)modseq);
	if ((ret = store_stmt_run(st, stmt, "cannot move a message")) < 0)
		return ret;
	if ((ret = store_expunged_add(st, from_folder, old_uid, modseq)) < 0)
		return ret;
	if (uid_r != NULL)
		*uid_r = uid;
	return 0;
}

/* Fills a message from a row of MSG_COLUMNS of a folder whose messages
 * from first_recent_uid on are \Recent. */
static void store_msg_from_row(sqlite3_stmt *stmt, uint32_t first_recent_uid,
			       struct store_msg *m)
{
	m->id = sqlite3_column_int64(stmt, 0);
	m->uid = (uint32_t)sqlite3_column_int64(stmt, 1);
	m->flags = (uint32_t)sqlite3_column_int64(stmt, 2);
	m->keywords = store_column_strdup(stmt, 3);
	m->internal_date = sqlite3_column_int64(stmt, 4);
	m->internal_tz = sqlite3_column_int(stmt, 5);
	m->size = (uint64_t)sqlite3_column_int64(stmt, 6);
	m->modseq = (uint64_t)sqlite3_column_int64(stmt, 7);
	m->lifecycle_id = store_column_strdup(stmt, 8);
	m->recent = m->uid >= first_recent_uid;
}

/* Looks up one message: its row and the id of its body. */
static int store_msg_row(store *st, const struct folder_row *folder, uint32_t uid,
			 struct store_msg *msg_r, int64_t *body_id_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_GET);
	sqlite3_bind_int64(stmt, 1, folder->id);
	sqlite3_bind_int64(stmt, 2, uid);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		store_msg_from_row(stmt, folder->first_recent_uid, msg_r);
		if (body_id_r != NULL)
			*body_id_r = sqlite3_column_int64(stmt, 9);
		store_stmt_done(stmt);
		return 0;
	}
	store_stmt_done(stmt);
	if (rc == SQLITE_DONE)
		return store_fail(st, STORE_ERR_NOTFOUND, "no message with UID %u", uid);
	return store_fail_sql(st, rc, "cannot read a message");
}

/* Runs a message-list statement (already bound) into a new array. */
static int store_msg_list_run(store *st, sqlite3_stmt *stmt, const struct folder_row *folder,
			      size_t hint, struct store_msg **list_r, size_t *count_r)
{
	size_t cap = hint > 0 ? hint : 16, count = 0;
	struct store_msg *list = xmalloc(cap * sizeof(*list));
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			list = xrealloc(list, cap * sizeof(*list));
		}
		store_msg_from_row(stmt, folder->first_recent_uid, &list[count++]);
	}
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE) {
		store_msg_list_free(list, count);
		return store_fail_sql(st, rc, "cannot list messages");
	}
	*list_r = list;
	*count_r = count;
	return 0;
}

int store_msg_list(store *st, const char *folder, struct store_msg **list_r, size_t *count_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_LIST);
	sqlite3_bind_int64(stmt, 1, row.id);
	return store_msg_list_run(st, stmt, &row, (size_t)row.messages + 1, list_r, count_r);
}

int store_msg_list_changed(store *st, const char *folder, uint64_t modseq,
			   struct store_msg **list_r, size_t *count_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_LIST_CHANGED);
	sqlite3_bind_int64(stmt, 1, row.id);
	sqlite3_bind_int64(stmt, 2, (int64_t)modseq);
	return store_msg_list_run(st, stmt, &row, 0, list_r, count_r);
}

/* Runs a statement (already bound) whose first column is a UID into a new
 * array. */
static int store_uid_list_run(store *st, sqlite3_stmt *stmt, size_t hint, uint32_t **uids_r,
			      size_t *count_r)
{
	size_t count = 0, cap = hint > 0 ? hint : 16;
	uint32_t *uids = xmalloc(cap * sizeof(*uids));
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			uids = xrealloc(uids, cap * sizeof(*uids));
		}
		uids[count++] = (uint32_t)sqlite3_column_int64(stmt, 0);
	}
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE) {
		free(uids);
		return store_fail_sql(st, rc, "cannot list UIDs");
	}
	*uids_r = uids;
	*count_r = count;
	return 0;
}

int store_expunged_since(store *st, const char *folder, uint64_t modseq, uint32_t **uids_r,
			 size_t *count_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_EXPUNGED_SINCE);
	sqlite3_bind_int64(stmt, 1, row.id);
	sqlite3_bind_int64(stmt, 2, (int64_t)modseq);
	return store_uid_list_run(st, stmt, 0, uids_r, count_r);
}

int store_uid_list(store *st, const char *folder, uint32_t **uids_r, size_t *count_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_LIST_UIDS);
	sqlite3_bind_int64(stmt, 1, row.id);
	return store_uid_list_run(st, stmt, (size_t)row.messages + 1, uids_r, count_r);
}

int store_msg_get(store *st, const char *folder, uint32_t uid, struct store_msg *msg_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	return store_msg_row(st, &row, uid, msg_r, NULL);
}

void store_msg_free(struct store_msg *m)
{
	if (m == NULL)
		return;
	free(m->keywords);
	free(m->lifecycle_id);
	m->keywords = NULL;
	m->lifecycle_id = NULL;
}

void store_msg_list_free(struct store_msg *list, size_t count)
{
	for (size_t i = 0; i < count; i++)
		store_msg_free(&list[i]);
	free(list);
}

/* ---- append ---------------------------------------------------------------- */

/* The local time zone's offset at t, in minutes east of UTC. */
static int32_t store_local_tz(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (localtime_r(&tt, &tm) == NULL)
		return 0;
	return (int32_t)(tm.tm_gmtoff / 60);
}

/* Checks a keyword list: printable ASCII words separated by single spaces,
 * within STORE_KEYWORDS_MAX. NULL and "" are fine. */
static bool store_keywords_ok(const char *keywords)
{
	if (keywords == NULL)
		return true;
	if (strlen(keywords) > STORE_KEYWORDS_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)keywords; *p != '\0'; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return false;
	return true;
}

/* Header fields kept as columns: name, and whether a decoded copy is kept. */
static const struct {
	const char *name;
	int column;      /* parameter index of the raw value */
	int utf8_column; /* parameter index of the decoded value, or 0 */
} store_header_columns[] = {
	{"Date", 3, 0},         {"Subject", 4, 16},    {"From", 5, 17},
	{"Sender", 6, 0},       {"Reply-To", 7, 0},    {"To", 8, 18},
	{"Cc", 9, 19},          {"Bcc", 10, 20},       {"In-Reply-To", 11, 0},
	{"Message-ID", 12, 0},  {"References", 13, 0},
};

/* Parses the start of a new message and stores its header columns. */
static int store_headers_insert(store *st, int64_t msg_id, const char *head, size_t head_len)
{
	struct header h;
	memset(&h, 0, sizeof(h));
	size_t header_size = header_section_length(head, head_len);
	bool parsed = header_parse(head, header_size, &h) == 0;
	sqlite3_stmt *stmt = store_stmt(st, SQL_HEADERS_INSERT);
	sqlite3_bind_int64(stmt, 1, msg_id);
	sqlite3_bind_int64(stmt, 2, (int64_t)header_size);
	int64_t date_time = 0;
	int date_tz = 0;
	for (size_t i = 0; parsed && i < sizeof(store_header_columns) /
						 sizeof(store_header_columns[0]); i++) {
		const char *value = header_get(&h, store_header_columns[i].name);
		if (value == NULL)
			continue;
		store_bind_text(stmt, store_header_columns[i].column, value);
		if (store_header_columns[i].utf8_column != 0) {
			char *decoded = header_decode_words(value);
			store_bind_text(stmt, store_header_columns[i].utf8_column, decoded);
			free(decoded);
		}
		if (i == 0 && header_parse_date(value, &date_time, &date_tz) < 0) {
			date_time = 0;
			date_tz = 0;
		}
	}
	sqlite3_bind_int64(stmt, 14, date_time);
	sqlite3_bind_int(stmt, 15, date_tz);
	if (parsed)
		header_free(&h);
	return store_stmt_run(st, stmt, "cannot store header fields");
}

/* Copies a message from a file into an open blob, chunk by chunk. */
static int store_blob_fill_from_fd(store *st, sqlite3_blob *blob, int fd, uint64_t size)
{
	char *chunk = xmalloc(STORE_CHUNK_SIZE);
	int ret = 0;
	for (uint64_t offset = 0; ret == 0 && offset < size;) {
		size_t want = size - offset < STORE_CHUNK_SIZE ? (size_t)(size - offset)
							       : STORE_CHUNK_SIZE;
		ssize_t n = pread(fd, chunk, want, (off_t)offset);
		if (n <= 0) {
			ret = store_fail(st, STORE_ERR_TEMP, "cannot read the staged message: %s",
					 n < 0 ? strerror(errno) : "short file");
			break;
		}
		int rc = sqlite3_blob_write(blob, chunk, (int)n, (int)offset);
		if (rc != SQLITE_OK)
			ret = store_fail_sql(st, rc, "cannot write a message");
		offset += (uint64_t)n;
	}
	free(chunk);
	return ret;
}

/* Writes a new body row: bound directly from memory, or as a zeroblob of
 * the known size filled in chunks through incremental blob I/O. */
static int store_body_insert(store *st, const struct append_source *src, int64_t *body_id_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_BODY_INSERT);
	if (src->data != NULL)
		sqlite3_bind_blob64(stmt, 1, src->data, src->size, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob64(stmt, 1, src->size);
	int ret = store_stmt_run(st, stmt, "cannot store a message");
	if (ret < 0)
		return ret;
	int64_t body_id = sqlite3_last_insert_rowid(st->db);
	if (src->data == NULL && src->size > 0) {
		sqlite3_blob *blob = NULL;
		int rc = sqlite3_blob_open(st->db, "main", "bodies", "data", body_id, 1, &blob);
		if (rc != SQLITE_OK)
			ret = store_fail_sql(st, rc, "cannot open a message for writing");
		else
			ret = store_blob_fill_from_fd(st, blob, src->fd, src->size);
		sqlite3_blob_close(blob);
	}
	*body_id_r = body_id;
	return ret;
}

/* The body of every append: one new message in folder, inside a write. */
static int store_msg_insert(store *st, const char *folder, const struct append_source *src,
			    uint32_t flags, const char *keywords, int64_t internal_date,
			    const char *lifecycle_id, uint32_t *uid_r, uint32_t *uidvalidity_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	int64_t body_id = 0;
	uint32_t uid = 0;
	uint64_t modseq = 0;
	if (ret == 0)
		ret = store_body_insert(st, src, &body_id);
	if (ret == 0)
		ret = store_uid_next(st, row.id, &uid);
	if (ret == 0)
		ret = store_modseq_next(st, &modseq);
	if (ret < 0)
		return ret;
	if (internal_date <= 0)
		internal_date = (int64_t)time(NULL);
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_INSERT);
	sqlite3_bind_int64(stmt, 1, row.id);
	sqlite3_bind_int64(stmt, 2, uid);
	sqlite3_bind_int64(stmt, 3, flags & 0x1f);
	sqlite3_bind_int64(stmt, 4, (int64_t)modseq);
	sqlite3_bind_int64(stmt, 5, (int64_t)src->size);
	sqlite3_bind_int64(stmt, 6, internal_date);
	sqlite3_bind_int(stmt, 7, store_local_tz(internal_date));
	store_bind_text(stmt, 8, keywords != NULL && keywords[0] != '\0' ? keywords : NULL);
	store_bind_text(stmt, 9, lifecycle_id);
	sqlite3_bind_int64(stmt, 10, body_id);
	if ((ret = store_stmt_run(st, stmt, "cannot store a message")) < 0)
		return ret;
	int64_t msg_id = sqlite3_last_insert_rowid(st->db);
	if ((ret = store_headers_insert(st, msg_id, src->head, src->head_len)) < 0)
		return ret;
	if (uid_r != NULL)
		*uid_r = uid;
	if (uidvalidity_r != NULL)
		*uidvalidity_r = row.uidvalidity;
	return 0;
}

/* Checks what every append is given. */
static int store_append_check(store *st, uint64_t size, const char *keywords,
			      const char *lifecycle_id)
{
	if (size > (uint64_t)sqlite3_limit(st->db, SQLITE_LIMIT_LENGTH, -1))
		return store_fail(st, STORE_ERR_INVALID, "message too large");
	if (!store_keywords_ok(keywords))
		return store_fail(st, STORE_ERR_INVALID, "invalid keywords");
	if (lifecycle_id != NULL && strlen(lifecycle_id) > STORE_LIFECYCLE_ID_MAX)
		return store_fail(st, STORE_ERR_INVALID, "lifecycle id too long");
	return 0;
}

int store_append(store *st, const char *folder, const char *data, size_t len, uint32_t flags,
		 const char *keywords, int64_t internal_date, const char *lifecycle_id,
		 uint32_t *uid_r, uint32_t *uidvalidity_r)
{
	int ret = store_append_check(st, len, keywords, lifecycle_id);
	if (ret < 0)
		return ret;
	struct append_source src = {
		.data = data != NULL ? data : "",
		.fd = -1,
		.size = len,
		.head = data != NULL ? data : "",
		.head_len = len < STORE_HEADER_SCAN_MAX ? len : STORE_HEADER_SCAN_MAX,
	};
	if ((ret = store_write_begin(st)) < 0)
		return ret;
	ret = store_msg_insert(st, folder, &src, flags, keywords, internal_date, lifecycle_id,
			       uid_r, uidvalidity_r);
	return store_write_end(st, ret, true);
}

/* An unlinked temporary file beside the mailbox, for staging a large
 * message on the same file system as the database. */
static int store_temp_file(store *st)
{
	char *path = xasprintf("%s.append-XXXXXX", st->db_path);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	else
		store_fail(st, STORE_ERR_TEMP, "cannot create %s: %s", path, strerror(errno));
	free(path);
	return fd;
}

int store_append_start(store *st, const char *folder, uint64_t size, uint32_t flags,
		       const char *keywords, int64_t internal_date, const char *lifecycle_id,
		       store_appender **a_r)
{
	int ret = store_append_check(st, size, keywords, lifecycle_id);
	struct folder_row row;
	if (ret == 0)
		ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	int fd = -1;
	if (size > STORE_MEMORY_MAX && (fd = store_temp_file(st)) < 0)
		return STORE_ERR_TEMP;
	store_appender *a = xcalloc(1, sizeof(*a));
	a->st = st;
	a->folder = xstrdup(folder);
	a->size = size;
	a->flags = flags;
	a->keywords = keywords != NULL ? xstrdup(keywords) : NULL;
	a->internal_date = internal_date;
	a->lifecycle_id = lifecycle_id != NULL ? xstrdup(lifecycle_id) : NULL;
	a->fd = fd;
	buf_init(&a->head);
	*a_r = a;
	return 0;
}

int store_append_write(store_appender *a, const char *data, size_t len)
{
	if (a->failed)
		return store_fail(a->st, STORE_ERR_INVALID, "the append has failed already");
	if (len > a->size - a->received) {
		a->failed = true;
		return store_fail(a->st, STORE_ERR_INVALID, "more data than announced");
	}
	/* Small messages live in head whole; large ones keep their start there
	 * for header parsing and go to the file. */
	size_t head_room = a->fd < 0 ? len
		: (a->head.len < STORE_HEADER_SCAN_MAX ? STORE_HEADER_SCAN_MAX - a->head.len : 0);
	if (head_room > len)
		head_room = len;
	if (head_room > 0)
		buf_append(&a->head, data, head_room);
	if (a->fd >= 0) {
		size_t done = 0;
		while (done < len) {
			ssize_t n = pwrite(a->fd, data + done, len - done,
					   (off_t)(a->received + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				a->failed = true;
				return store_fail(a->st, STORE_ERR_TEMP,
						  "cannot stage the message: %s",
						  n < 0 ? strerror(errno) : "no space");
			}
			done += (size_t)n;
		}
	}
	a->received += len;
	return 0;
}

int store_append_finish(store_appender **ap, uint32_t *uid_r, uint32_t *uidvalidity_r)
{
	store_appender *a = *ap;
	store *st = a->st;
	int ret = 0;
	if (a->failed)
		ret = store_fail(st, STORE_ERR_INVALID, "the append has failed already");
	else if (a->received != a->size)
		ret = store_fail(st, STORE_ERR_INVALID, "message shorter than announced");
	if (ret == 0) {
		struct append_source src = {
			.data = a->fd < 0 ? buf_cstr(&a->head) : NULL,
			.fd = a->fd,
			.size = a->size,
			.head = buf_cstr(&a->head),
			.head_len = a->head.len < STORE_HEADER_SCAN_MAX ? a->head.len
									: STORE_HEADER_SCAN_MAX,
		};
		ret = store_write_begin(st);
		if (ret == 0) {
			ret = store_msg_insert(st, a->folder, &src, a->flags, a->keywords,
					       a->internal_date, a->lifecycle_id, uid_r,
					       uidvalidity_r);
			ret = store_write_end(st, ret, true);
		}
	}
	/* Keep the error text: abort does not touch it. */
	store_append_abort(ap);
	return ret;
}

void store_append_abort(store_appender **ap)
{
	store_appender *a = *ap;
	if (a == NULL)
		return;
	if (a->fd >= 0)
		close(a->fd);
	buf_free(&a->head);
	free(a->folder);
	free(a->keywords);
	free(a->lifecycle_id);
	free(a);
	*ap = NULL;
}

/* ---- reading --------------------------------------------------------------- */

/* Reads len bytes at offset of a body through the main connection, opening
 * and closing the blob at once so no read transaction stays open. */
static int store_body_read(store *st, int64_t body_id, uint64_t offset, char *out, size_t len)
{
	sqlite3_blob *blob = NULL;
	int rc = sqlite3_blob_open(st->db, "main", "bodies", "data", body_id, 0, &blob);
	if (rc == SQLITE_OK && len > 0)
		rc = sqlite3_blob_read(blob, out, (int)len, (int)offset);
	sqlite3_blob_close(blob);
	if (rc != SQLITE_OK)
		return store_fail_sql(st, rc, "cannot read a message");
	return 0;
}

/* Finds a message to read: its body id and size. */
static int store_msg_locate(store *st, const char *folder, uint32_t uid, int64_t *body_id_r,
			    uint64_t *size_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	struct store_msg m;
	if (ret == 0)
		ret = store_msg_row(st, &row, uid, &m, body_id_r);
	if (ret < 0)
		return ret;
	*size_r = m.size;
	store_msg_free(&m);
	return 0;
}

int store_msg_open(store *st, const char *folder, uint32_t uid, store_reader **r_r)
{
	int64_t body_id = 0;
	uint64_t size = 0;
	int ret = store_msg_locate(st, folder, uid, &body_id, &size);
	if (ret < 0)
		return ret;
	store_reader *r = xcalloc(1, sizeof(*r));
	r->size = size;
	if (size <= STORE_MEMORY_MAX) {
		r->data = xmalloc(size + 1);
		if ((ret = store_body_read(st, body_id, 0, r->data, size)) < 0) {
			store_reader_close(&r);
			return ret;
		}
		*r_r = r;
		return 0;
	}
	/* A large message: its own connection holds the snapshot while it is
	 * read, so the main connection stays free to write. */
	int rc = sqlite3_open_v2(st->db_path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(r->db, st->busy_timeout_ms);
		rc = sqlite3_blob_open(r->db, "main", "bodies", "data", body_id, 0, &r->blob);
	}
	if (rc != SQLITE_OK) {
		ret = store_fail(st, STORE_ERR_TEMP, "cannot open a message for reading: %s",
				 r->db != NULL ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
		store_reader_close(&r);
		return ret;
	}
	*r_r = r;
	return 0;
}

uint64_t store_reader_size(const store_reader *r)
{
	return r->size;
}

long store_reader_read(store_reader *r, uint64_t offset, char *out, size_t len)
{
	if (offset >= r->size)
		return 0;
	uint64_t left = r->size - offset;
	size_t n = left < len ? (size_t)left : len;
	if (n > INT_MAX)
		n = INT_MAX;
	if (r->data != NULL) {
		memcpy(out, r->data + offset, n);
		return (long)n;
	}
	if (sqlite3_blob_read(r->blob, out, (int)n, (int)offset) != SQLITE_OK)
		return STORE_ERR_TEMP;
	return (long)n;
}

void store_reader_close(store_reader **rp)
{
	store_reader *r = *rp;
	if (r == NULL)
		return;
	sqlite3_blob_close(r->blob);
	if (r->db != NULL)
		sqlite3_close_v2(r->db);
	free(r->data);
	free(r);
	*rp = NULL;
}

int store_msg_load(store *st, const char *folder, uint32_t uid, char **data_r, size_t *len_r)
{
	int64_t body_id = 0;
	uint64_t size = 0;
	int ret = store_msg_locate(st, folder, uid, &body_id, &size);
	if (ret < 0)
		return ret;
	char *data = xmalloc(size + 1);
	if ((ret = store_body_read(st, body_id, 0, data, size)) < 0) {
		free(data);
		return ret;
	}
	data[size] = '\0';
	*data_r = data;
	*len_r = size;
	return 0;
}

int store_msg_load_header(store *st, const char *folder, uint32_t uid, char **data_r,
			  size_t *len_r)
{
	struct store_msg_headers h;
	int ret = store_msg_headers_get(st, folder, uid, &h);
	int64_t body_id = 0;
	uint64_t size = 0;
	if (ret == 0)
		ret = store_msg_locate(st, folder, uid, &body_id, &size);
	if (ret < 0) {
		store_msg_headers_free(&h);
		return ret;
	}
	size_t len = h.header_size <= size ? (size_t)h.header_size : (size_t)size;
	store_msg_headers_free(&h);
	char *data = xmalloc(len + 1);
	if ((ret = store_body_read(st, body_id, 0, data, len)) < 0) {
		free(data);
		return ret;
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

/* ---- parsed headers -------------------------------------------------------- */

/* Fills parsed headers from a row of HEADER_COLUMNS. */
static void store_headers_from_row(sqlite3_stmt *stmt, struct store_msg_headers *h)
{
	h->uid = (uint32_t)sqlite3_column_int64(stmt, 0);
	h->header_size = (uint64_t)sqlite3_column_int64(stmt, 1);
	h->date = store_column_strdup(stmt, 2);
	h->subject = store_column_strdup(stmt, 3);
	h->from = store_column_strdup(stmt, 4);
	h->sender = store_column_strdup(stmt, 5);
	h->reply_to = store_column_strdup(stmt, 6);
	h->to = store_column_strdup(stmt, 7);
	h->cc = store_column_strdup(stmt, 8);
	h->bcc = store_column_strdup(stmt, 9);
	h->in_reply_to = store_column_strdup(stmt, 10);
	h->message_id = store_column_strdup(stmt, 11);
	h->references = store_column_strdup(stmt, 12);
	h->date_time = sqlite3_column_int64(stmt, 13);
	h->date_tz = sqlite3_column_int(stmt, 14);
	h->subject_utf8 = store_column_strdup(stmt, 15);
	h->from_utf8 = store_column_strdup(stmt, 16);
	h->to_utf8 = store_column_strdup(stmt, 17);
	h->cc_utf8 = store_column_strdup(stmt, 18);
	h->bcc_utf8 = store_column_strdup(stmt, 19);
}

int store_msg_headers_get(store *st, const char *folder, uint32_t uid,
			  struct store_msg_headers *h_r)
{
	memset(h_r, 0, sizeof(*h_r));
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_HEADERS_GET);
	sqlite3_bind_int64(stmt, 1, row.id);
	sqlite3_bind_int64(stmt, 2, uid);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		store_headers_from_row(stmt, h_r);
		store_stmt_done(stmt);
		return 0;
	}
	store_stmt_done(stmt);
	if (rc == SQLITE_DONE)
		return store_fail(st, STORE_ERR_NOTFOUND, "no message with UID %u", uid);
	return store_fail_sql(st, rc, "cannot read header fields");
}

int store_msg_headers_list(store *st, const char *folder, struct store_msg_headers **list_r,
			   size_t *count_r)
{
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_HEADERS_LIST);
	sqlite3_bind_int64(stmt, 1, row.id);
	size_t count = 0, cap = 16;
	struct store_msg_headers *list = xmalloc(cap * sizeof(*list));
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			list = xrealloc(list, cap * sizeof(*list));
		}
		store_headers_from_row(stmt, &list[count++]);
	}
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE) {
		store_msg_headers_list_free(list, count);
		return store_fail_sql(st, rc, "cannot list header fields");
	}
	*list_r = list;
	*count_r = count;
	return 0;
}

void store_msg_headers_free(struct store_msg_headers *h)
{
	if (h == NULL)
		return;
	char **fields[] = {&h->date,         &h->subject,      &h->from,     &h->sender,
			   &h->reply_to,     &h->to,           &h->cc,       &h->bcc,
			   &h->in_reply_to,  &h->message_id,   &h->references, &h->subject_utf8,
			   &h->from_utf8,    &h->to_utf8,      &h->cc_utf8,  &h->bcc_utf8};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
}

void store_msg_headers_list_free(struct store_msg_headers *list, size_t count)
{
	for (size_t i = 0; i < count; i++)
		store_msg_headers_free(&list[i]);
	free(list);
}

/* ---- flags ----------------------------------------------------------------- */

/* True if the space-separated list has word (keywords compare without
 * regard to case, RFC 3501 2.3.2). */
static bool store_keyword_in(const char *list, const char *word, size_t word_len)
{
	for (const char *p = list; p != NULL && *p != '\0';) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");
		if (n == word_len && n > 0 && strncasecmp(p, word, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/* Computes a new keyword list from old, the mode and the given words, with
 * duplicates dropped; NULL when empty. */
static char *store_keywords_apply(const char *old, enum store_flag_mode mode, const char *words)
{
	buf_t out = BUF_INIT;
	const char *sources[2] = {mode == STORE_FLAGS_SET ? NULL : old,
				  mode == STORE_FLAGS_REMOVE ? NULL : words};
	for (size_t s = 0; s < 2; s++) {
		for (const char *p = sources[s]; p != NULL && *p != '\0';) {
			while (*p == ' ')
				p++;
			size_t n = strcspn(p, " ");
			if (n > 0 && !store_keyword_in(buf_cstr(&out), p, n) &&
			    !(mode == STORE_FLAGS_REMOVE && store_keyword_in(words, p, n))) {
				if (out.len > 0)
					buf_append_char(&out, ' ');
				buf_append(&out, p, n);
			}
			p += n;
		}
	}
	if (out.len == 0) {
		buf_free(&out);
		return NULL;
	}
	return buf_steal(&out);
}

/* True if two keyword lists hold the same words. */
static bool store_keywords_equal(const char *a, const char *b)
{
	for (int pass = 0; pass < 2; pass++) {
		const char *from = pass == 0 ? a : b, *other = pass == 0 ? b : a;
		for (const char *p = from; p != NULL && *p != '\0';) {
			while (*p == ' ')
				p++;
			size_t n = strcspn(p, " ");
			if (n > 0 && !store_keyword_in(other, p, n))
				return false;
			p += n;
		}
	}
	return true;
}

int store_msg_set_flags(store *st, const char *folder, uint32_t uid, enum store_flag_mode mode,
			uint32_t flags, const char *keywords, uint64_t unchangedsince,
			uint64_t *modseq_r)
{
	if (!store_keywords_ok(keywords))
		return store_fail(st, STORE_ERR_INVALID, "invalid keywords");
	int ret = store_write_begin(st);
	if (ret < 0)
		return ret;
	struct folder_row row;
	struct store_msg m = {0};
	bool changed = false;
	ret = store_folder_open(st, folder, &row);
	if (ret == 0)
		ret = store_msg_row(st, &row, uid, &m, NULL);
	if (ret == 0 && unchangedsince != 0 && m.modseq > unchangedsince)
		ret = store_fail(st, STORE_ERR_MODIFIED, "UID %u changed since %llu", uid,
				 (unsigned long long)unchangedsince);
	if (ret == 0) {
		flags &= 0x1f;
		uint32_t new_flags = mode == STORE_FLAGS_SET ? flags
				     : mode == STORE_FLAGS_ADD ? (m.flags | flags)
							       : (m.flags & ~flags);
		char *new_keywords = store_keywords_apply(m.keywords, mode, keywords);
		uint64_t modseq = m.modseq;
		if (new_flags != m.flags || !store_keywords_equal(m.keywords, new_keywords)) {
			changed = true;
			ret = store_modseq_next(st, &modseq);
			if (ret == 0) {
				sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_SET_FLAGS);
				sqlite3_bind_int64(stmt, 1, m.id);
				sqlite3_bind_int64(stmt, 2, new_flags);
				store_bind_text(stmt, 3, new_keywords);
				sqlite3_bind_int64(stmt, 4, (int64_t)modseq);
				ret = store_stmt_run(st, stmt, "cannot change flags");
			}
		}
		free(new_keywords);
		if (ret == 0 && modseq_r != NULL)
			*modseq_r = modseq;
	}
	store_msg_free(&m);
	return store_write_end(st, ret, changed);
}

int store_folder_clear_recent(store *st, const char *folder)
{
	int ret = store_write_begin(st);
	if (ret < 0)
		return ret;
	struct folder_row row;
	ret = store_folder_open(st, folder, &row);
	if (ret == 0)
		ret = store_run_with_id(st, SQL_FOLDER_CLEAR_RECENT, row.id,
					"cannot clear \\Recent");
	return store_write_end(st, ret, false);
}

/* ---- expunge and copy ------------------------------------------------------ */

/* Deletes one message row and its body when no copy still uses it. */
static int store_msg_delete_row(store *st, int64_t msg_id, int64_t body_id)
{
	int ret = store_run_with_id(st, SQL_MSG_DELETE, msg_id, "cannot expunge");
	if (ret == 0)
		ret = store_run_with_id(st, SQL_BODY_DELETE_UNUSED, body_id,
					"cannot delete a message body");
	return ret;
}

/* Compares UIDs for qsort. */
static int store_uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int store_expunge(store *st, const char *folder, const uint32_t *uids, size_t count,
		  uint32_t **removed_r, size_t *removed_count_r)
{
	int ret = store_write_begin(st);
	if (ret < 0)
		return ret;
	struct folder_row row;
	uint64_t modseq = 0;
	ret = store_folder_open(st, folder, &row);
	/* Collect the targets first: (message id, uid, body id). */
	size_t n = 0, cap = 0;
	int64_t *ids = NULL, *bodies = NULL;
	uint32_t *removed = NULL;
	if (ret == 0 && uids == NULL) {
		sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_LIST_DELETED);
		sqlite3_bind_int64(stmt, 1, row.id);
		int rc;
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap == 0 ? 16 : cap * 2;
				ids = xrealloc(ids, cap * sizeof(*ids));
				bodies = xrealloc(bodies, cap * sizeof(*bodies));
				removed = xrealloc(removed, cap * sizeof(*removed));
			}
			ids[n] = sqlite3_column_int64(stmt, 0);
			removed[n] = (uint32_t)sqlite3_column_int64(stmt, 1);
			bodies[n++] = sqlite3_column_int64(stmt, 2);
		}
		store_stmt_done(stmt);
		if (rc != SQLITE_DONE)
			ret = store_fail_sql(st, rc, "cannot list deleted messages");
	} else if (ret == 0) {
		uint32_t *sorted = xmalloc((count + 1) * sizeof(*sorted));
		if (count > 0)
			memcpy(sorted, uids, count * sizeof(*sorted));
		qsort(sorted, count, sizeof(*sorted), store_uid_cmp);
		ids = xmalloc((count + 1) * sizeof(*ids));
		bodies = xmalloc((count + 1) * sizeof(*bodies));
		removed = xmalloc((count + 1) * sizeof(*removed));
		for (size_t i = 0; ret == 0 && i < count; i++) {
			if (i > 0 && sorted[i] == sorted[i - 1])
				continue;
			struct store_msg m;
			int64_t body_id = 0;
			int r = store_msg_row(st, &row, sorted[i], &m, &body_id);
			if (r == STORE_ERR_NOTFOUND)
				continue;
			if (r < 0) {
				ret = r;
				break;
			}
			ids[n] = m.id;
			bodies[n] = body_id;
			removed[n++] = m.uid;
			store_msg_free(&m);
		}
		free(sorted);
	}
	if (ret == 0 && n > 0)
		ret = store_modseq_next(st, &modseq);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		ret = store_msg_delete_row(st, ids[i], bodies[i]);
		if (ret == 0)
			ret = store_expunged_add(st, row.id, removed[i], modseq);
	}
	free(ids);
	free(bodies);
	ret = store_write_end(st, ret, n > 0);
	if (ret < 0) {
		free(removed);
		return ret;
	}
	if (removed_r != NULL)
		*removed_r = removed != NULL ? removed : xmalloc(sizeof(*removed));
	else
		free(removed);
	if (removed_count_r != NULL)
		*removed_count_r = n;
	return 0;
}

/* Copies one message row (and its parsed headers and cache) into a folder;
 * the body is shared. */
static int store_msg_copy_row(store *st, int64_t msg_id, int64_t to_folder, uint64_t modseq,
			      uint32_t *uid_r)
{
	uint32_t uid;
	int ret = store_uid_next(st, to_folder, &uid);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_COPY);
	sqlite3_bind_int64(stmt, 1, msg_id);
	sqlite3_bind_int64(stmt, 2, to_folder);
	sqlite3_bind_int64(stmt, 3, uid);
	sqlite3_bind_int64(stmt, 4, (int64_t)modseq);
	if ((ret = store_stmt_run(st, stmt, "cannot copy a message")) < 0)
		return ret;
	int64_t new_id = sqlite3_last_insert_rowid(st->db);
	enum store_sql_id follow[] = {SQL_HEADERS_COPY, SQL_CACHE_COPY};
	for (size_t i = 0; ret == 0 && i < 2; i++) {
		stmt = store_stmt(st, follow[i]);
		sqlite3_bind_int64(stmt, 1, msg_id);
		sqlite3_bind_int64(stmt, 2, new_id);
		ret = store_stmt_run(st, stmt, "cannot copy a message");
	}
	*uid_r = uid;
	return ret;
}

int store_copy(store *st, const char *from, const uint32_t *uids, size_t count, const char *to,
	       bool move, uint32_t **dest_uids_r, uint32_t *dest_uidvalidity_r)
{
	int ret = store_write_begin(st);
	if (ret < 0)
		return ret;
	struct folder_row src, dest;
	uint64_t modseq = 0;
	ret = store_folder_open(st, from, &src);
	if (ret == 0)
		ret = store_folder_open(st, to, &dest);
	if (ret == 0)
		ret = store_modseq_next(st, &modseq);
	uint32_t *dest_uids = xcalloc(count + 1, sizeof(*dest_uids));
	bool changed = false;
	for (size_t i = 0; ret == 0 && i < count; i++) {
		struct store_msg m;
		int r = store_msg_row(st, &src, uids[i], &m, NULL);
		if (r == STORE_ERR_NOTFOUND)
			continue; /* gone meanwhile: its place stays 0 */
		if (r < 0) {
			ret = r;
			break;
		}
		if (move)
			ret = store_msg_move_row(st, m.id, src.id, m.uid, dest.id, modseq,
						 &dest_uids[i]);
		else
			ret = store_msg_copy_row(st, m.id, dest.id, modseq, &dest_uids[i]);
		store_msg_free(&m);
		changed = true;
	}
	ret = store_write_end(st, ret, changed);
	if (ret < 0) {
		free(dest_uids);
		return ret;
	}
	if (dest_uids_r != NULL)
		*dest_uids_r = dest_uids;
	else
		free(dest_uids);
	if (dest_uidvalidity_r != NULL)
		*dest_uidvalidity_r = dest.uidvalidity;
	return 0;
}

/* ---- usage, cache, lifecycle ------------------------------------------------ */

int store_usage(store *st, uint64_t *bytes_r, uint64_t *messages_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_USAGE);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		if (bytes_r != NULL)
			*bytes_r = (uint64_t)sqlite3_column_int64(stmt, 0);
		if (messages_r != NULL)
			*messages_r = (uint64_t)sqlite3_column_int64(stmt, 1);
	}
	store_stmt_done(stmt);
	if (rc != SQLITE_ROW)
		return store_fail_sql(st, rc, "cannot compute usage");
	return 0;
}

/* Finds the row id of a message for the cache. */
static int store_msg_id(store *st, const char *folder, uint32_t uid, int64_t *id_r)
{
	struct folder_row row;
	struct store_msg m;
	int ret = store_folder_open(st, folder, &row);
	if (ret == 0)
		ret = store_msg_row(st, &row, uid, &m, NULL);
	if (ret < 0)
		return ret;
	*id_r = m.id;
	store_msg_free(&m);
	return 0;
}

int store_cache_get(store *st, const char *folder, uint32_t uid, const char *key,
		    char **value_r)
{
	int64_t id = 0;
	int ret = store_msg_id(st, folder, uid, &id);
	if (ret < 0)
		return ret;
	sqlite3_stmt *stmt = store_stmt(st, SQL_CACHE_GET);
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_text(stmt, 2, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*value_r = store_column_strdup(stmt, 0);
	store_stmt_done(stmt);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return store_fail(st, STORE_ERR_NOTFOUND, "no cached %s", key);
	return store_fail_sql(st, rc, "cannot read the cache");
}

int store_cache_put(store *st, const char *folder, uint32_t uid, const char *key,
		    const char *value)
{
	int ret = store_write_begin(st);
	if (ret < 0)
		return ret;
	int64_t id = 0;
	ret = store_msg_id(st, folder, uid, &id);
	if (ret == 0) {
		sqlite3_stmt *stmt = store_stmt(st, SQL_CACHE_PUT);
		sqlite3_bind_int64(stmt, 1, id);
		sqlite3_bind_text(stmt, 2, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, value, -1, SQLITE_STATIC);
		ret = store_stmt_run(st, stmt, "cannot write the cache");
	}
	return store_write_end(st, ret, false);
}

int store_find_lifecycle(store *st, const char *lifecycle_id, char ***folders_r,
			 uint32_t **uids_r, size_t *count_r)
{
	sqlite3_stmt *stmt = store_stmt(st, SQL_MSG_FIND_LIFECYCLE);
	sqlite3_bind_text(stmt, 1, lifecycle_id, -1, SQLITE_STATIC);
	size_t count = 0;
	char **folders = xmalloc(sizeof(*folders));
	uint32_t *uids = xmalloc(sizeof(*uids));
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		folders = xrealloc(folders, (count + 2) * sizeof(*folders));
		uids = xrealloc(uids, (count + 1) * sizeof(*uids));
		folders[count] = store_column_strdup(stmt, 0);
		uids[count++] = (uint32_t)sqlite3_column_int64(stmt, 1);
	}
	folders[count] = NULL;
	store_stmt_done(stmt);
	if (rc != SQLITE_DONE) {
		store_strv_free(folders);
		free(uids);
		return store_fail_sql(st, rc, "cannot search lifecycle ids");
	}
	*folders_r = folders;
	*uids_r = uids;
	*count_r = count;
	return 0;
}

int store_search_header(store *st, const char *folder, enum store_search_field field,
			const char *needle, uint32_t **uids_r, size_t *count_r)
{
	static const enum store_sql_id by_field[] = {
		[STORE_SEARCH_SUBJECT] = SQL_SEARCH_SUBJECT, [STORE_SEARCH_FROM] = SQL_SEARCH_FROM,
		[STORE_SEARCH_TO] = SQL_SEARCH_TO,           [STORE_SEARCH_CC] = SQL_SEARCH_CC,
		[STORE_SEARCH_BCC] = SQL_SEARCH_BCC,
	};
	if ((unsigned)field >= sizeof(by_field) / sizeof(by_field[0]))
		return store_fail(st, STORE_ERR_INVALID, "unknown search field");
	if (strlen(needle) > STORE_SEARCH_NEEDLE_MAX)
		return store_fail(st, STORE_ERR_INVALID, "search string too long");
	struct folder_row row;
	int ret = store_folder_open(st, folder, &row);
	if (ret < 0)
		return ret;
	/* '%', '_' and the escape itself match only themselves. */
	buf_t pattern = BUF_INIT;
	buf_append_char(&pattern, '%');
	for (const char *p = needle; *p != '\0'; p++) {
		if (*p == '%' || *p == '_' || *p == '\\')
			buf_append_char(&pattern, '\\');
		buf_append_char(&pattern, *p);
	}
	buf_append_char(&pattern, '%');
	sqlite3_stmt *stmt = store_stmt(st, by_field[field]);
	sqlite3_bind_int64(stmt, 1, row.id);
	sqlite3_bind_text(stmt, 2, buf_cstr(&pattern), (int)pattern.len, SQLITE_STATIC);
	ret = store_uid_list_run(st, stmt, 0, uids_r, count_r);
	buf_free(&pattern);
	return ret;
}
