/* log.c: logfmt logging, protocol transcripts and lifecycle events (see log.h).
 *
 * Three destinations, each a file descriptor written with one write(2) per
 * line so that several processes (and libuv's worker threads) may append to
 * the same file without tearing lines: the main log (stderr or log.file),
 * LOGDIR/transcript.log and LOGDIR/events.log, the last two opened O_APPEND.
 *
 * Line layout: ts=<UTC, milliseconds> level= comp= conn= (omitted when 0)
 * msg= then the caller's pairs. A value is written bare when it is made only
 * of printable characters other than space, '=', '"' and '\\'; otherwise it is
 * quoted with \" \\ \n \r \t and \xNN escapes. log_parse_line reads it back.
 *
 * Masking: log_mask_line knows, per protocol, which commands carry secrets
 * and replaces the secret part with "****"; a command table per protocol names
 * the command word and how many words before the secret stay visible. */
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "db.h"

/* The longest line logged; longer values are cut (with "...") before this. */
#define LOG_MAX_LINE 16384
#define LOG_MAX_VALUE 8192

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

static struct {
	char component[32];
	int fd;            /* main log: 2 or an opened file */
	bool fd_owned;
	enum log_level min_level;
	int transcript_fd; /* -1 = transcripts off */
	int events_fd;     /* -1 = no events file */
	char *events_path; /* where events_fd was opened, to follow a rotation */
	time_t events_checked;
	char *transcript_path;
	time_t transcript_checked;
} log_state = {"mailstack", 2, false, LOG_INFO, -1, -1, NULL, 0, NULL, 0};

static pthread_mutex_t log_events_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_follow_rotation(const char *path, int fd, time_t *checked);

/* Opens a log file for appending (created 0640). */
static int log_open_append(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* Closes a descriptor we own and marks it unused. */
static void log_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int log_init(const char *component, const char *path, enum log_level min_level, char **err_r)
{
	snprintf(log_state.component, sizeof(log_state.component), "%s", component);
	log_state.min_level = min_level;
	if (path == NULL || path[0] == '\0') {
		if (log_state.fd_owned)
			close(log_state.fd);
		log_state.fd = 2;
		log_state.fd_owned = false;
		return 0;
	}
	int fd = log_open_append(path);
	if (fd < 0) {
		*err_r = xasprintf("cannot open log file %s: %s", path, strerror(errno));
		return -1;
	}
	if (log_state.fd_owned)
		close(log_state.fd);
	log_state.fd = fd;
	log_state.fd_owned = true;
	return 0;
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcasecmp(log_level_names[i], name) == 0)
			return (int)i;
	}
	if (strcasecmp(name, "warning") == 0)
		return LOG_WARN;
	return -1;
}

void log_set_dirs(const char *log_dir, bool transcripts)
{
	log_close_fd(&log_state.transcript_fd);
	log_close_fd(&log_state.events_fd);
	if (log_dir == NULL)
		return;
	char *err = NULL;
	if (db_mkdir_parents(log_dir, &err) < 0) {
		log_kv(LOG_WARN, 0, "cannot create log directory", "dir", log_dir, "error", err, NULL);
		free(err);
		return;
	}
	char *path = xasprintf("%s/events.log", log_dir);
	log_state.events_fd = log_open_append(path);
	if (log_state.events_fd < 0)
		log_kv(LOG_WARN, 0, "cannot open events log", "path", path, "error", strerror(errno),
		       NULL);
	free(log_state.events_path);
	log_state.events_path = path;
	if (transcripts) {
		path = xasprintf("%s/transcript.log", log_dir);
		log_state.transcript_fd = log_open_append(path);
		if (log_state.transcript_fd < 0)
			log_kv(LOG_WARN, 0, "cannot open transcript log", "path", path, "error",
			       strerror(errno), NULL);
		free(log_state.transcript_path);
		log_state.transcript_path = path;
	}
}

void log_close(void)
{
	log_close_fd(&log_state.transcript_fd);
	log_close_fd(&log_state.events_fd);
	free(log_state.events_path);
	log_state.events_path = NULL;
	free(log_state.transcript_path);
	log_state.transcript_path = NULL;
	if (log_state.fd_owned)
		close(log_state.fd);
	log_state.fd = 2;
	log_state.fd_owned = false;
}

/* True when a byte may appear in a bare (unquoted) value. */
static bool log_char_is_bare(unsigned char c)
{
	return c > ' ' && c != '=' && c != '"' && c != '\\' && c != 0x7f;
}

void log_append_value(struct buf *out, const char *value)
{
	size_t len = strlen(value);
	bool bare = len > 0;
	for (size_t i = 0; bare && i < len; i++)
		bare = log_char_is_bare((unsigned char)value[i]);
	if (bare) {
		buf_append(out, value, len);
		return;
	}
	buf_append_char(out, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		switch (c) {
		case '"':
			buf_append_str(out, "\\\"");
			break;
		case '\\':
			buf_append_str(out, "\\\\");
			break;
		case '\n':
			buf_append_str(out, "\\n");
			break;
		case '\r':
			buf_append_str(out, "\\r");
			break;
		case '\t':
			buf_append_str(out, "\\t");
			break;
		default:
			if (c < ' ' || c == 0x7f)
				buf_printf(out, "\\x%02X", c);
			else
				buf_append_char(out, (char)c);
		}
	}
	buf_append_char(out, '"');
}

/* Appends " key=value", cutting over-long values. */
static void log_append_pair(buf_t *line, const char *key, const char *value)
{
	buf_append_char(line, ' ');
	buf_append_str(line, key);
	buf_append_char(line, '=');
	if (strlen(value) > LOG_MAX_VALUE) {
		char *cut = xasprintf("%.*s...", LOG_MAX_VALUE, value);
		log_append_value(line, cut);
		free(cut);
	} else {
		log_append_value(line, value);
	}
}

/* Starts a line with ts= (UTC, milliseconds). */
static void log_append_timestamp(buf_t *line)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	gmtime_r(&now.tv_sec, &tm);
	buf_printf(line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
}

/* Writes a finished line (newline added) with a single write(2). */
static void log_write_line(int fd, buf_t *line)
{
	if (fd < 0)
		return;
	if (line->len > LOG_MAX_LINE) {
		line->len = LOG_MAX_LINE - 4;
		line->data[line->len] = '\0';
		buf_append_str(line, "...");
	}
	buf_append_char(line, '\n');
	size_t off = 0;
	/* A short write to a regular file or pipe is rare; finish it rather than
	 * lose the tail, accepting that this one line may then interleave. */
	for (int tries = 0; off < line->len && tries < 8; tries++) {
		ssize_t n = write(fd, line->data + off, line->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
}

/* Appends the common head: ts level comp conn. */
static void log_append_head(buf_t *line, enum log_level level, uint64_t conn)
{
	log_append_timestamp(line);
	buf_printf(line, " level=%s comp=", log_level_names[level]);
	log_append_value(line, log_state.component);
	if (conn != 0)
		buf_printf(line, " conn=%llu", (unsigned long long)conn);
}

/* Appends the NULL-terminated (key, value) list; NULL values are skipped. */
static void log_append_pairs(buf_t *line, va_list ap)
{
	for (int i = 0; i < 256; i++) {
		const char *key = va_arg(ap, const char *);
		if (key == NULL)
			break;
		const char *value = va_arg(ap, const char *);
		if (value != NULL)
			log_append_pair(line, key, value);
	}
}

void log_kv(enum log_level level, uint64_t conn, const char *msg, ...)
{
	if (level < log_state.min_level)
		return;
	buf_t line = BUF_INIT;
	log_append_head(&line, level, conn);
	log_append_pair(&line, "msg", msg);
	va_list ap;
	va_start(ap, msg);
	log_append_pairs(&line, ap);
	va_end(ap);
	log_write_line(log_state.fd, &line);
	buf_free(&line);
}

void log_fmt(enum log_level level, uint64_t conn, const char *fmt, ...)
{
	if (level < log_state.min_level)
		return;
	buf_t msg = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	buf_t line = BUF_INIT;
	log_append_head(&line, level, conn);
	log_append_pair(&line, "msg", buf_cstr(&msg));
	log_write_line(log_state.fd, &line);
	buf_free(&line);
	buf_free(&msg);
}

/* ---- masking ---- */

/* One secret-bearing command: `visible` words after the command stay
 * readable, the rest of the line becomes "****". */
struct log_mask_rule {
	const char *command;
	int visible;
};

struct log_mask_proto {
	const char *proto;
	bool tagged;  /* IMAP: the first word is a tag */
	const struct log_mask_rule *rules;
	size_t rule_count;
};

static const struct log_mask_rule log_mask_smtp[] = {
	{"AUTH", 1}, /* AUTH mech initial-response */
};
static const struct log_mask_rule log_mask_pop3[] = {
	{"PASS", 0},
	{"AUTH", 1},
};
static const struct log_mask_rule log_mask_imap[] = {
	{"LOGIN", 1},        /* tag LOGIN user password */
	{"AUTHENTICATE", 1}, /* tag AUTHENTICATE mech initial-response */
};

#define RULES(r) r, sizeof(r) / sizeof(r[0])
static const struct log_mask_proto log_mask_protos[] = {
	{"smtp", false, RULES(log_mask_smtp)},
	{"lmtp", false, RULES(log_mask_smtp)},
	{"submission", false, RULES(log_mask_smtp)},
	{"pop3", false, RULES(log_mask_pop3)},
	{"imap", true, RULES(log_mask_imap)},
};
#undef RULES

/* Skips spaces. */
static size_t log_skip_spaces(const char *s, size_t i, size_t len)
{
	while (i < len && s[i] == ' ')
		i++;
	return i;
}

/* Skips one word: an atom, an IMAP quoted string or a literal marker {n}/{n+}. */
static size_t log_skip_word(const char *s, size_t i, size_t len)
{
	if (i < len && s[i] == '"') {
		for (i++; i < len; i++) {
			if (s[i] == '\\' && i + 1 < len)
				i++;
			else if (s[i] == '"')
				return i + 1;
		}
		return len;
	}
	while (i < len && s[i] != ' ')
		i++;
	return i;
}

char *log_mask_line(const char *proto, const char *line, size_t len)
{
	size_t body = len;
	while (body > 0 && (line[body - 1] == '\n' || line[body - 1] == '\r'))
		body--;
	const struct log_mask_proto *p = NULL;
	for (size_t i = 0; i < sizeof(log_mask_protos) / sizeof(log_mask_protos[0]); i++) {
		if (proto != NULL && strcasecmp(log_mask_protos[i].proto, proto) == 0)
			p = &log_mask_protos[i];
	}
	size_t pos = log_skip_spaces(line, 0, body);
	if (p != NULL && p->tagged)
		pos = log_skip_spaces(line, log_skip_word(line, pos, body), body);
	size_t word_end = p != NULL ? log_skip_word(line, pos, body) : pos;
	const struct log_mask_rule *rule = NULL;
	for (size_t i = 0; p != NULL && i < p->rule_count; i++) {
		size_t n = strlen(p->rules[i].command);
		if (word_end - pos == n && strncasecmp(line + pos, p->rules[i].command, n) == 0)
			rule = &p->rules[i];
	}
	if (rule == NULL)
		return xstrndup(line, len);
	/* Keep the command and the visible words; a literal marker as the last
	 * visible word means the secret comes on a later line (passed as secret). */
	size_t keep = word_end;
	for (int w = 0; w < rule->visible; w++) {
		size_t start = log_skip_spaces(line, keep, body);
		if (start == body)
			return xstrndup(line, len);
		keep = log_skip_word(line, start, body);
	}
	if (log_skip_spaces(line, keep, body) == body)
		return xstrndup(line, len);
	buf_t out = BUF_INIT;
	buf_append(&out, line, keep);
	buf_append_str(&out, " ****");
	buf_append(&out, line + body, len - body);
	return buf_steal(&out);
}

void log_transcript(const char *proto, uint64_t conn, char dir, bool tls, const char *user,
		    const char *line, size_t len, bool secret)
{
	if (log_state.transcript_fd < 0)
		return;
	log_follow_rotation(log_state.transcript_path, log_state.transcript_fd,
			    &log_state.transcript_checked);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	char *shown = secret ? xstrdup("****")
		      : dir == 'C' ? log_mask_line(proto, line, len)
				   : xstrndup(line, len);
	buf_t out = BUF_INIT;
	log_append_timestamp(&out);
	buf_append_str(&out, " comp=");
	log_append_value(&out, log_state.component);
	log_append_pair(&out, "proto", proto);
	buf_printf(&out, " conn=%llu dir=%c tls=%s", (unsigned long long)conn, dir,
		   tls ? "yes" : "no");
	if (user != NULL)
		log_append_pair(&out, "user", user);
	log_append_pair(&out, "line", shown);
	log_write_line(log_state.transcript_fd, &out);
	buf_free(&out);
	free(shown);
}

/* When log_prune_file has moved a log aside, switches to the new file
 * (checked at most once a second; dup2 keeps the descriptor number, so a
 * write racing in another thread goes to one file or the other, never nowhere). */
static void log_follow_rotation(const char *path, int fd, time_t *checked)
{
	if (path == NULL || fd < 0)
		return;
	time_t now = time(NULL);
	if (now == *checked)
		return;
	pthread_mutex_lock(&log_events_lock);
	*checked = now;
	struct stat on_disk, open_file;
	if (stat(path, &on_disk) < 0 || fstat(fd, &open_file) < 0 ||
	    on_disk.st_ino != open_file.st_ino || on_disk.st_dev != open_file.st_dev) {
		int fresh = log_open_append(path);
		if (fresh >= 0) {
			dup2(fresh, fd);
			close(fresh);
		}
	}
	pthread_mutex_unlock(&log_events_lock);
}

static void log_events_follow_rotation(void)
{
	log_follow_rotation(log_state.events_path, log_state.events_fd, &log_state.events_checked);
}

void log_event(const char *id, const char *event, ...)
{
	buf_t pairs = BUF_INIT;
	va_list ap;
	va_start(ap, event);
	log_append_pairs(&pairs, ap);
	va_end(ap);

	buf_t out = BUF_INIT;
	log_append_timestamp(&out);
	buf_append_str(&out, " comp=");
	log_append_value(&out, log_state.component);
	log_append_pair(&out, "id", id);
	log_append_pair(&out, "event", event);
	buf_append(&out, buf_cstr(&pairs), pairs.len);
	log_events_follow_rotation();
	log_write_line(log_state.events_fd, &out);
	buf_free(&out);

	if (LOG_INFO >= log_state.min_level) {
		buf_t line = BUF_INIT;
		log_append_head(&line, LOG_INFO, 0);
		log_append_pair(&line, "msg", "lifecycle");
		log_append_pair(&line, "id", id);
		log_append_pair(&line, "event", event);
		buf_append(&line, buf_cstr(&pairs), pairs.len);
		log_write_line(log_state.fd, &line);
		buf_free(&line);
	}
	buf_free(&pairs);
}

/* ---- lifecycle ids ---- */

/* Crockford's base32: no I, L, O, U, so ids read aloud without confusion. */
static const char log_id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define LOG_ID_TIME_CHARS 9   /* 45 bits of milliseconds: past the year 3000 */
#define LOG_ID_RANDOM_CHARS 7 /* 35 random bits */

static pthread_mutex_t log_id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t log_id_last_ms;
static uint64_t log_id_last_random;

_Static_assert(LOG_ID_TIME_CHARS + LOG_ID_RANDOM_CHARS == LIFECYCLE_ID_LEN,
	       "a lifecycle id is LIFECYCLE_ID_LEN characters");

/* The shape check for ids from users and logs (see log.h). */
bool lifecycle_id_valid(const char *s)
{
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		bool digit = s[n] >= '0' && s[n] <= '9', upper = s[n] >= 'A' && s[n] <= 'Z';
		if (n == LIFECYCLE_ID_LEN || !(digit || upper))
			return false;
	}
	return n == LIFECYCLE_ID_LEN;
}

char *lifecycle_id_new(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
	uint64_t random_mask = (UINT64_C(1) << (5 * LOG_ID_RANDOM_CHARS)) - 1;
	uint64_t random;

	pthread_mutex_lock(&log_id_lock);
	/* Within one millisecond of one process, count up from the last random
	 * part so ids stay ordered and distinct; across processes the 35 random
	 * bits make a collision within one millisecond negligible. */
	if (ms <= log_id_last_ms && log_id_last_random < random_mask) {
		ms = log_id_last_ms;
		random = log_id_last_random + 1;
	} else {
		if (ms <= log_id_last_ms)
			ms = log_id_last_ms + 1;
		unsigned char bytes[8];
		if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
			fprintf(stderr, "mailstack: RAND_bytes failed\n");
			abort();
		}
		random = 0;
		for (size_t i = 0; i < sizeof(bytes); i++)
			random = random << 8 | bytes[i];
		/* Leave headroom so a burst in one millisecond can count up. */
		random &= random_mask >> 1;
	}
	log_id_last_ms = ms;
	log_id_last_random = random;
	pthread_mutex_unlock(&log_id_lock);

	char *id = xmalloc(LOG_ID_TIME_CHARS + LOG_ID_RANDOM_CHARS + 1);
	for (int i = LOG_ID_TIME_CHARS - 1; i >= 0; i--, ms >>= 5)
		id[i] = log_id_alphabet[ms & 31];
	for (int i = LOG_ID_RANDOM_CHARS - 1; i >= 0; i--, random >>= 5)
		id[LOG_ID_TIME_CHARS + i] = log_id_alphabet[random & 31];
	id[LOG_ID_TIME_CHARS + LOG_ID_RANDOM_CHARS] = '\0';
	return id;
}

/* ---- reading logfmt back ---- */

/* Value of a hex digit, or -1. */
static int log_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads a quoted value starting after the opening quote; returns the index
 * after the closing quote (or the end when unterminated). */
static size_t log_parse_quoted(const char *s, size_t i, buf_t *value)
{
	while (s[i] != '\0' && s[i] != '"') {
		if (s[i] != '\\' || s[i + 1] == '\0') {
			buf_append_char(value, s[i++]);
			continue;
		}
		char c = s[i + 1];
		i += 2;
		switch (c) {
		case 'n':
			buf_append_char(value, '\n');
			break;
		case 'r':
			buf_append_char(value, '\r');
			break;
		case 't':
			buf_append_char(value, '\t');
			break;
		case 'x': {
			int hi = log_hex_value(s[i]);
			int lo = hi >= 0 ? log_hex_value(s[i + 1]) : -1;
			if (lo >= 0) {
				buf_append_char(value, (char)(hi << 4 | lo));
				i += 2;
			} else {
				buf_append_str(value, "\\x");
			}
			break;
		}
		default:
			buf_append_char(value, c);
		}
	}
	return s[i] == '"' ? i + 1 : i;
}

size_t log_parse_line(const char *line, char ***keys_r, char ***values_r)
{
	size_t count = 0, cap = 8;
	char **keys = xmalloc(cap * sizeof(char *));
	char **values = xmalloc(cap * sizeof(char *));
	size_t i = 0;
	for (;;) {
		while (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')
			i++;
		if (line[i] == '\0')
			break;
		size_t key_start = i;
		while (line[i] != '\0' && line[i] != '=' && line[i] != ' ' && line[i] != '\t' &&
		       line[i] != '\n' && line[i] != '\r')
			i++;
		size_t key_end = i;
		buf_t value = BUF_INIT;
		if (line[i] == '=') {
			i++;
			if (line[i] == '"') {
				i = log_parse_quoted(line, i + 1, &value);
			} else {
				while (line[i] != '\0' && line[i] != ' ' && line[i] != '\t' &&
				       line[i] != '\n' && line[i] != '\r')
					buf_append_char(&value, line[i++]);
			}
		}
		if (key_end == key_start) {
			buf_free(&value);
			if (line[i] != '\0' && line[i] != ' ')
				i++;
			continue;
		}
		if (count == cap) {
			cap *= 2;
			keys = xrealloc(keys, cap * sizeof(char *));
			values = xrealloc(values, cap * sizeof(char *));
		}
		keys[count] = xstrndup(line + key_start, key_end - key_start);
		values[count] = buf_steal(&value);
		count++;
	}
	*keys_r = keys;
	*values_r = values;
	return count;
}

const char *log_pairs_get(size_t count, char **keys, char **values, const char *key)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(keys[i], key) == 0)
			return values[i];
	}
	return NULL;
}

void log_pairs_free(size_t count, char ***keys, char ***values)
{
	for (size_t i = 0; i < count; i++) {
		free((*keys)[i]);
		free((*values)[i]);
	}
	free(*keys);
	free(*values);
	*keys = NULL;
	*values = NULL;
}

/* ---- pruning lifecycle events ---- */

/* The time of a logfmt line that starts with "ts=YYYY-MM-DDTHH:MM:SS"; -1 if none. */
static int64_t log_line_time(const char *line)
{
	struct tm tm = {0};
	if (strncmp(line, "ts=", 3) != 0 || strptime(line + 3, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
		return -1;
	return (int64_t)timegm(&tm);
}

/* Appends the lines of path that are not older than cutoff to out; counts the others. */
static void log_keep_recent(const char *path, int64_t cutoff, FILE *out, size_t *removed)
{
	FILE *in = fopen(path, "r");
	if (in == NULL)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, in)) > 0) {
		int64_t t = log_line_time(line);
		if (t >= 0 && t < cutoff) {
			(*removed)++;
			continue;
		}
		fwrite(line, 1, (size_t)n, out);
		if (line[n - 1] != '\n')
			fputc('\n', out);
	}
	free(line);
	fclose(in);
}

/* True when the first line of path has a time before cutoff. */
static bool log_file_starts_before(const char *path, int64_t cutoff)
{
	FILE *in = fopen(path, "r");
	if (in == NULL)
		return false;
	char head[64] = "";
	bool before = fgets(head, sizeof(head), in) != NULL && log_line_time(head) >= 0 &&
		      log_line_time(head) < cutoff;
	fclose(in);
	return before;
}

int log_prune_file(const char *log_dir, const char *name, int64_t retention_seconds,
		   unsigned settle_ms, size_t *removed_r, char **err_r)
{
	char *current = xasprintf("%s/%s", log_dir, name);
	char *moved = xasprintf("%s/%s.old", log_dir, name);
	char *archive = xasprintf("%s/%s.1", log_dir, name);
	char *tmp = xasprintf("%s/%s.1.tmp", log_dir, name);
	int rc = -1;
	*removed_r = 0;
	int64_t cutoff = (int64_t)time(NULL) - retention_seconds;
	/* Events are appended in time order: when the oldest line of each file
	 * is recent enough, there is nothing to drop and nothing is moved. */
	if (!log_file_starts_before(archive, cutoff) && !log_file_starts_before(current, cutoff)) {
		rc = 0;
		goto out;
	}
	if (rename(current, moved) < 0 && errno != ENOENT) {
		*err_r = xasprintf("cannot move %s aside: %s", current, strerror(errno));
		goto out;
	}
	/* Writers notice the move within a second and open a new file. */
	usleep(settle_ms * 1000);
	FILE *out = fopen(tmp, "w");
	if (out == NULL) {
		*err_r = xasprintf("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	log_keep_recent(archive, cutoff, out, removed_r);
	log_keep_recent(moved, cutoff, out, removed_r);
	if (fflush(out) != 0 || fsync(fileno(out)) < 0 || fclose(out) != 0) {
		*err_r = xasprintf("cannot write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, archive) < 0) {
		*err_r = xasprintf("cannot replace %s: %s", archive, strerror(errno));
		unlink(tmp);
		goto out;
	}
	unlink(moved);
	rc = 0;
out:
	free(current);
	free(moved);
	free(archive);
	free(tmp);
	return rc;
}

char **log_event_files(const char *log_dir)
{
	static const char *const names[] = {"events.log.1", "events.log.old", "events.log"};
	char **files = xcalloc(4, sizeof(char *));
	size_t n = 0;
	for (size_t i = 0; i < 3; i++) {
		char *path = xasprintf("%s/%s", log_dir, names[i]);
		if (access(path, R_OK) == 0)
			files[n++] = path;
		else
			free(path);
	}
	return files;
}
