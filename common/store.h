/* store.h: the mail store, one SQLite database per user at
 * DATADIR/mail/<domain>/<local>.sqlite.
 *
 * It holds folders (name in UTF-8, '/' as hierarchy separator, UIDVALIDITY,
 * UIDNEXT, HIGHESTMODSEQ, special-use role, subscription) and messages (UID,
 * flags and keywords, internal date, size, MODSEQ, the lifecycle id, a few
 * header fields parsed once at delivery, and the raw message as a blob read in
 * chunks). WAL mode, a busy timeout, the schema version in PRAGMA user_version
 * with migrations in store.c. mda, imapd, pop3d and mailctl use only this API.
 *
 * Durability: store_append outside a transaction is durable when it returns.
 * store_begin/store_commit group several appends (and other changes) into one
 * transaction and one sync: the mda's group commit.
 *
 * Change notification: every commit that changes the mailbox touches
 * store_notify_path(); a reader watches that file (uv_fs_event) and then asks
 * what changed with store_folder_get (counts, UIDNEXT, HIGHESTMODSEQ) and
 * store_msg_list_changed (by MODSEQ). Expunged UIDs are kept in a table with
 * the MODSEQ of their expunge so readers can learn which UIDs went. */
#ifndef MAILSTACK_STORE_H
#define MAILSTACK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A handle is used by one thread at a time (each daemon's loop thread). */
typedef struct store store;

/* System flags as bits. */
enum store_flag {
	STORE_FLAG_SEEN = 1 << 0,
	STORE_FLAG_ANSWERED = 1 << 1,
	STORE_FLAG_FLAGGED = 1 << 2,
	STORE_FLAG_DELETED = 1 << 3,
	STORE_FLAG_DRAFT = 1 << 4,
};

enum store_special_use {
	STORE_SPECIAL_NONE = 0,
	STORE_SPECIAL_INBOX,
	STORE_SPECIAL_DRAFTS,
	STORE_SPECIAL_SENT,
	STORE_SPECIAL_TRASH,
	STORE_SPECIAL_JUNK,
	STORE_SPECIAL_ARCHIVE,
};
/* "\\Drafts", ... or NULL for none/INBOX. */
const char *store_special_use_name(enum store_special_use use);

enum store_error {
	STORE_OK = 0,
	STORE_ERR_NOTFOUND = -1,  /* no such folder or message */
	STORE_ERR_EXISTS = -2,    /* folder already exists */
	STORE_ERR_INVALID = -3,   /* bad folder name, or operation not allowed (delete INBOX) */
	STORE_ERR_TEMP = -4,      /* busy past the timeout, disk full, I/O: may pass */
	STORE_ERR_MODIFIED = -5,  /* UNCHANGEDSINCE failed */
};

struct store_folder {
	int64_t id;
	char *name;             /* UTF-8, "INBOX" for the inbox */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	enum store_special_use special_use;
	bool subscribed;
	bool noselect;          /* a placeholder kept for its children */
	uint32_t messages;
	uint32_t unseen;
	uint32_t recent;
	uint64_t size;          /* sum of message sizes */
};

struct store_msg {
	int64_t id;             /* row id of the message in its folder */
	uint32_t uid;
	uint32_t flags;         /* enum store_flag bits */
	char *keywords;         /* space-separated keywords, or NULL */
	int64_t internal_date;  /* unix seconds */
	int32_t internal_tz;    /* offset in minutes east of UTC, for INTERNALDATE */
	uint64_t size;          /* exact octets of the stored message (CRLF line ends) */
	uint64_t modseq;
	char *lifecycle_id;     /* the mta's id, or NULL */
	bool recent;
};

/* Opens the store for address "local@domain", creating the file, its directory
 * and the default folders (INBOX, Drafts, Sent, Trash, Junk, Archive with their
 * roles) when missing. */
int store_open(const char *datadir, const char *address, store **st_r, char **err_r);
void store_close(store **st);
/* The path of a file that belongs to address's mailbox:
 * DATADIR/mail/<domain>/<local><suffix> (".sqlite", ".notify", ".vacation"),
 * named as store_open names them (lower case); NULL when the address could not
 * name a mailbox file. Opens nothing. Caller frees. */
char *store_mailbox_file(const char *datadir, const char *address, const char *suffix);
/* The path of the database and of the change-notification file. */
const char *store_db_path(const store *st);
const char *store_notify_path(const store *st);
/* The last error message for the failed call. */
const char *store_last_error(const store *st);

int store_begin(store *st);
int store_commit(store *st);
void store_rollback(store *st);

/* Folder names: UTF-8, '/' separated; "INBOX" matches case-insensitively.
 * Refused with STORE_ERR_INVALID: empty, leading or trailing '/', empty
 * levels, "." or ".." levels, control characters, longer than 512 bytes. */
bool store_folder_name_valid(const char *name);
int store_folder_list(store *st, struct store_folder **list_r, size_t *count_r);
int store_folder_get(store *st, const char *name, struct store_folder *folder_r);
int store_folder_create(store *st, const char *name, enum store_special_use use);
/* Deletes a folder and its messages. A folder with children is kept as a
 * \Noselect placeholder without messages (RFC 3501 6.3.4). INBOX cannot be
 * deleted (STORE_ERR_INVALID). */
int store_folder_delete(store *st, const char *name);
/* Renames a folder and its children. Renaming INBOX moves its messages into a
 * new folder and leaves INBOX empty (RFC 3501 6.3.5). */
int store_folder_rename(store *st, const char *from, const char *to);
int store_folder_subscribe(store *st, const char *name, bool subscribed);
/* Subscriptions may name folders that do not exist. NULL-terminated; caller frees. */
char **store_subscriptions(store *st);
void store_folder_free(struct store_folder *f);
void store_folder_list_free(struct store_folder *list, size_t count);

/* Appends a whole message. uid_r, uidvalidity_r may be NULL. */
int store_append(store *st, const char *folder, const char *data, size_t len, uint32_t flags,
		 const char *keywords, int64_t internal_date, const char *lifecycle_id,
		 uint32_t *uid_r, uint32_t *uidvalidity_r);

/* Streaming append: for messages received in pieces (IMAP literals). */
typedef struct store_appender store_appender;
int store_append_start(store *st, const char *folder, uint64_t size, uint32_t flags,
		       const char *keywords, int64_t internal_date, const char *lifecycle_id,
		       store_appender **a_r);
int store_append_write(store_appender *a, const char *data, size_t len);
int store_append_finish(store_appender **a, uint32_t *uid_r, uint32_t *uidvalidity_r);
void store_append_abort(store_appender **a);

/* All messages of a folder in UID order, without bodies. */
int store_msg_list(store *st, const char *folder, struct store_msg **list_r, size_t *count_r);
/* Only the UIDs of a folder, ascending, read from the index alone: the
 * cheap way to build a sequence-number map at SELECT. Caller frees. */
int store_uid_list(store *st, const char *folder, uint32_t **uids_r, size_t *count_r);
/* Messages whose MODSEQ > modseq (flag changes and new messages). */
int store_msg_list_changed(store *st, const char *folder, uint64_t modseq,
			   struct store_msg **list_r, size_t *count_r);
/* UIDs expunged with MODSEQ > modseq (ascending). */
int store_expunged_since(store *st, const char *folder, uint64_t modseq, uint32_t **uids_r,
			 size_t *count_r);
int store_msg_get(store *st, const char *folder, uint32_t uid, struct store_msg *msg_r);
void store_msg_free(struct store_msg *m);
void store_msg_list_free(struct store_msg *list, size_t count);

/* Reading a message body in chunks (sqlite3 incremental blob I/O). A reader
 * may outlive its store handle. Messages up to 256 KiB are read whole at
 * open; a larger one gets a connection of its own holding a snapshot, so it
 * reads on to the end even if the message is expunged meanwhile, never holds
 * up writes, but cannot see a message appended in a transaction that is
 * still open on the handle. */
typedef struct store_reader store_reader;
int store_msg_open(store *st, const char *folder, uint32_t uid, store_reader **r_r);
uint64_t store_reader_size(const store_reader *r);
/* Reads up to len bytes at offset; returns bytes read (0 at the end) or < 0. */
long store_reader_read(store_reader *r, uint64_t offset, char *out, size_t len);
void store_reader_close(store_reader **r);
/* Loads a whole message (for small messages and header parsing); caller frees. */
int store_msg_load(store *st, const char *folder, uint32_t uid, char **data_r, size_t *len_r);
/* The header section (up to and including the blank line), loaded alone. */
int store_msg_load_header(store *st, const char *folder, uint32_t uid, char **data_r,
			  size_t *len_r);

enum store_flag_mode { STORE_FLAGS_SET, STORE_FLAGS_ADD, STORE_FLAGS_REMOVE };
/* Changes flags/keywords of one message; bumps its MODSEQ if anything changed.
 * unchangedsince: 0 = no condition; else fails with STORE_ERR_MODIFIED when the
 * message's MODSEQ is greater (RFC 7162). modseq_r gets the new MODSEQ. */
int store_msg_set_flags(store *st, const char *folder, uint32_t uid, enum store_flag_mode mode,
			uint32_t flags, const char *keywords, uint64_t unchangedsince,
			uint64_t *modseq_r);
/* Clears the \Recent state of every message in a folder (the first SELECT sees them). */
int store_folder_clear_recent(store *st, const char *folder);

/* Removes the given UIDs (count 0 and uids NULL: every \Deleted message).
 * Returns the UIDs actually removed in *removed_r (caller frees). */
int store_expunge(store *st, const char *folder, const uint32_t *uids, size_t count,
		  uint32_t **removed_r, size_t *removed_count_r);
/* Copies (or moves) messages; fills the new UIDs in dest_uids_r (same order;
 * caller frees; 0 for a UID that no longer exists) and the destination's
 * UIDVALIDITY. Flags are kept. A move is one transaction and records the
 * source UIDs as expunged. */
int store_copy(store *st, const char *from, const uint32_t *uids, size_t count, const char *to,
	       bool move, uint32_t **dest_uids_r, uint32_t *dest_uidvalidity_r);

/* Usage across all folders, for quotas. */
int store_usage(store *st, uint64_t *bytes_r, uint64_t *messages_r);

/* A small per-message cache of parsed data kept beside the message (e.g. imapd's
 * ENVELOPE and BODYSTRUCTURE, computed once). key is a short name. */
int store_cache_get(store *st, const char *folder, uint32_t uid, const char *key,
		    char **value_r);
int store_cache_put(store *st, const char *folder, uint32_t uid, const char *key,
		    const char *value);

/* Finds messages by lifecycle id across folders (for mailctl trace): fills
 * folder names and UIDs (caller frees with store_strv_free and free). */
int store_find_lifecycle(store *st, const char *lifecycle_id, char ***folders_r,
			 uint32_t **uids_r, size_t *count_r);
void store_strv_free(char **v);

/* Header fields parsed once at append (for ENVELOPE, SEARCH and SORT without
 * reading bodies). Raw values are unfolded but otherwise as written (encoded
 * words kept, as ENVELOPE wants them); the *_utf8 ones have RFC 2047 words
 * decoded. NULL when the field is absent. Only the first 256 KiB of a
 * message are parsed. */
struct store_msg_headers {
	uint32_t uid;
	uint64_t header_size;   /* octets of the header section incl. the blank line */
	char *date;
	char *subject;
	char *from;
	char *sender;
	char *reply_to;
	char *to;
	char *cc;
	char *bcc;
	char *in_reply_to;
	char *message_id;
	char *references;
	int64_t date_time;      /* Date parsed (UTC seconds), 0 if absent or unparsable */
	int32_t date_tz;        /* its zone, minutes east of UTC */
	char *subject_utf8;
	char *from_utf8;
	char *to_utf8;
	char *cc_utf8;
	char *bcc_utf8;
};
int store_msg_headers_get(store *st, const char *folder, uint32_t uid,
			  struct store_msg_headers *h_r);
/* Every message's parsed headers in UID order (caller frees the list). */
int store_msg_headers_list(store *st, const char *folder, struct store_msg_headers **list_r,
			   size_t *count_r);
void store_msg_headers_free(struct store_msg_headers *h);
void store_msg_headers_list_free(struct store_msg_headers *list, size_t count);

/* Header fields store_search_header looks in. */
enum store_search_field {
	STORE_SEARCH_SUBJECT,
	STORE_SEARCH_FROM,
	STORE_SEARCH_TO,
	STORE_SEARCH_CC,
	STORE_SEARCH_BCC,
};
/* UIDs (ascending) of the messages whose field, raw or decoded, contains
 * needle, ASCII letters compared without case (RFC 3501 6.4.4 SUBJECT, FROM,
 * TO, CC, BCC), answered from the parsed columns without reading bodies.
 * needle is at most 1024 bytes (else STORE_ERR_INVALID). Caller frees. */
int store_search_header(store *st, const char *folder, enum store_search_field field,
			const char *needle, uint32_t **uids_r, size_t *count_r);

/* Sets how long a call waits for another process's write lock before it
 * fails with STORE_ERR_TEMP (default DB_BUSY_TIMEOUT_MS). */
int store_set_busy_timeout(store *st, int ms);

#endif
