/* log.h: logging in logfmt, protocol transcripts and lifecycle events.
 *
 * One line per event: `ts=2026-11-26T10:00:00.123Z level=info comp=mta conn=17
 * msg="session start" remote=127.0.0.1 tls=no`. Values with spaces, quotes or
 * '=' are quoted and escaped by the logger, so callers pass raw strings.
 *
 * Transcripts: every protocol line each side sends, to log/transcript.log in
 * the data directory when log.transcript is on, one logfmt line each with
 * proto=, conn=, dir=C|S, tls=yes|no, user= and line=. Secrets are masked
 * here, once, for every protocol (see log_transcript).
 *
 * Lifecycle events: the journey of one message (DESIGN.md, "The lifecycle
 * id"). Each is appended to log/events.log with fsync batching left to the OS
 * (one write(2) per event, O_APPEND) and echoed to the normal log. `mailctl
 * trace` reads that file back. */
#ifndef MAILSTACK_LOG_H
#define MAILSTACK_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the component name ("mta", "imapd", ...) and the destination
 * (NULL or "" = stderr). Returns -1 with *err_r if the file cannot be opened. */
int log_init(const char *component, const char *path, enum log_level min_level, char **err_r);
/* Parses "debug", "info", ...; returns -1 if unknown. */
int log_level_parse(const char *name);
/* Sets where transcripts and lifecycle events go (the data directory's log/);
 * NULL turns transcripts off. Events are always written when a dir is set. */
void log_set_dirs(const char *log_dir, bool transcripts);
void log_close(void);

/* Logs msg with key/value pairs: a NULL-terminated list of (key, value)
 * strings. A NULL value is skipped. conn 0 = not tied to a connection. */
void log_kv(enum log_level level, uint64_t conn, const char *msg, ...)
	__attribute__((sentinel));
/* printf-style message, no extra pairs. */
void log_fmt(enum log_level level, uint64_t conn, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(conn, ...) log_fmt(LOG_DEBUG, (conn), __VA_ARGS__)
#define log_info(conn, ...) log_fmt(LOG_INFO, (conn), __VA_ARGS__)
#define log_warn(conn, ...) log_fmt(LOG_WARN, (conn), __VA_ARGS__)
#define log_error(conn, ...) log_fmt(LOG_ERROR, (conn), __VA_ARGS__)

/* Records one protocol line. dir is 'C' (client to server) or 'S'.
 * secret: the whole line is a secret (a SASL continuation): logged as "****".
 * Otherwise known secret-bearing commands are masked by protocol: SMTP
 * "AUTH PLAIN xxx" -> "AUTH PLAIN ****", POP3 "PASS ****", IMAP
 * "a LOGIN user ****" and "a AUTHENTICATE PLAIN ****". The line may end in CRLF. */
void log_transcript(const char *proto, uint64_t conn, char dir, bool tls, const char *user,
		    const char *line, size_t len, bool secret);
/* The masked form of a line (caller frees): exposed for tests and the mua. */
char *log_mask_line(const char *proto, const char *line, size_t len);

/* Records a lifecycle event for message id `id` (the lifecycle id), event
 * kind `event` (received, queued, attempt, delivered, bounced, delayed,
 * fetched, flags, expunged, deleted, retrieved, filtered ...), with pairs as in
 * log_kv. Also logs it at info level. */
void log_event(const char *id, const char *event, ...) __attribute__((sentinel));

/* Drops the lines of LOG_DIR/name (events.log, transcript.log) older than
 * retention_seconds. The file is moved aside (writers follow to a new file
 * within a second; settle_ms waits for that), and what is kept of it and of
 * the previous archive is written to name.1. Nothing is moved when nothing is
 * old enough. Blocking: run it off the event loop. *removed_r counts the
 * dropped lines. */
int log_prune_file(const char *log_dir, const char *name, int64_t retention_seconds,
		   unsigned settle_ms, size_t *removed_r, char **err_r);
/* The event files to read, oldest first (events.log.1, events.log.old while a
 * prune runs, events.log), those that exist; NULL-terminated, caller frees
 * each and the array. */
char **log_event_files(const char *log_dir);

/* A new lifecycle id: 16 characters [0-9A-Z], time-ordered then random, e.g.
 * "0KX3F2A9Q4M7ZB1C" (caller frees). */
char *lifecycle_id_new(void);
#define LIFECYCLE_ID_LEN 16
/* True when s has the shape lifecycle_id_new gives: LIFECYCLE_ID_LEN of [0-9A-Z]. */
bool lifecycle_id_valid(const char *s);

/* Appends `value` to out as a logfmt value, quoted if needed (for readers). */
struct buf;
void log_append_value(struct buf *out, const char *value);
/* Parses one logfmt line into pairs (for `mailctl trace`): returns the count,
 * fills keys/values (caller frees each and the arrays). */
size_t log_parse_line(const char *line, char ***keys_r, char ***values_r);
/* The value of key among the count pairs from log_parse_line; NULL if absent. */
const char *log_pairs_get(size_t count, char **keys, char **values, const char *key);
/* Frees the pairs from log_parse_line and sets both arrays NULL. */
void log_pairs_free(size_t count, char ***keys, char ***values);

#endif
