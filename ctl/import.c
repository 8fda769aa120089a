/* import.c: `mailctl import` and `mailctl export`, moving mail between a
 * user's SQLite mailbox and the formats other tools read.
 *
 *   mailctl import USER [--folder F] FILE.mbox|MAILDIR
 *   mailctl export USER [--folder F] --mbox FILE | --maildir DIR
 *
 * mbox is mboxrd: each message starts with a "From SENDER DATE" line (the
 * date, asctime in UTC, is the internal date), body lines matching
 * /^>*From / get one more '>' on export and lose one on import, and one
 * empty line separates messages. Flags travel in Status (R = \Seen) and
 * X-Status (A = \Answered, F = \Flagged, T = \Draft, D = \Deleted), added
 * to the header on export and taken out on import.
 *
 * Maildir is cur/ new/ tmp/ with one file per message; flags are the
 * ":2,DFRST" info suffix (D = \Draft, F = \Flagged, R = \Answered,
 * S = \Seen, T = \Deleted), the file's mtime is the internal date, and
 * files are written in tmp/ then renamed into cur/.
 *
 * Files use LF line ends; the store uses CRLF: import turns LF into CRLF,
 * export turns CRLF into LF, so a round trip keeps every message byte for
 * byte. A malformed mbox entry (no header, text before the first From
 * line) is reported with its line number and skipped; the exit status is
 * then 1. Imports are committed in batches of IMPORT_BATCH messages. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "buffer.h"
#include "ctl.h"
#include "header.h"
#include "store.h"
#include "users.h"

#define IMPORT_BATCH 500
#define IMPORT_MAX_MESSAGE (256u * 1024 * 1024)

struct import_ctx {
	store *st;
	const char *folder;
	const char *source;
	size_t imported, skipped, in_batch;
	bool failed;
};

/* ---- shared ---- */

/* Opens the user's mailbox; prints why not. */
static int transfer_open(const char *datadir, const char *name, store **st_r)
{
	userdb *db = NULL;
	char *err = NULL;
	if (userdb_open(datadir, &db, &err) < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot open users.sqlite");
		free(err);
		return -1;
	}
	struct user_info info;
	int ret = userdb_user_lookup(db, name, &info);
	userdb_close(&db);
	if (ret < 0) {
		fprintf(stderr, "mailctl: no such user %s\n", name);
		return -1;
	}
	ret = store_open(datadir, info.address, st_r, &err);
	user_info_free(&info);
	if (ret < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot open the mailbox");
		free(err);
		return -1;
	}
	return 0;
}

/* Appends text with LF line ends made CRLF. */
static void append_crlf(buf_t *out, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			buf_append_char(out, '\r');
		buf_append_char(out, data[i]);
	}
}

/* Appends text with CRLF line ends made LF. */
static void append_lf(buf_t *out, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		buf_append_char(out, data[i]);
	}
}

/* Stores one message, committing every IMPORT_BATCH. */
static int import_store(struct import_ctx *ctx, const char *data, size_t len, uint32_t flags,
			int64_t date)
{
	if (ctx->in_batch == 0 && store_begin(ctx->st) != STORE_OK) {
		fprintf(stderr, "mailctl: %s\n", store_last_error(ctx->st));
		return -1;
	}
	if (store_append(ctx->st, ctx->folder, data, len, flags, NULL, date, NULL, NULL, NULL) !=
	    STORE_OK) {
		fprintf(stderr, "mailctl: %s: cannot store a message: %s\n", ctx->source,
			store_last_error(ctx->st));
		store_rollback(ctx->st);
		ctx->imported -= ctx->in_batch;
		ctx->in_batch = 0;
		return -1;
	}
	ctx->imported++;
	if (++ctx->in_batch >= IMPORT_BATCH) {
		ctx->in_batch = 0;
		if (store_commit(ctx->st) != STORE_OK) {
			fprintf(stderr, "mailctl: %s\n", store_last_error(ctx->st));
			return -1;
		}
	}
	return 0;
}

/* Commits the last batch. */
static int import_finish(struct import_ctx *ctx)
{
	if (ctx->in_batch == 0)
		return 0;
	ctx->in_batch = 0;
	if (store_commit(ctx->st) != STORE_OK) {
		fprintf(stderr, "mailctl: %s\n", store_last_error(ctx->st));
		return -1;
	}
	return 0;
}

/* ---- mbox ---- */

/* Parses the asctime date of a From_ line ("From a@b Thu Nov 26 10:00:00 2026"). */
static int64_t mbox_from_date(const char *line)
{
	const char *p = line + 5;
	const char *sp = strchr(p, ' ');
	if (sp == NULL)
		return (int64_t)time(NULL);
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(sp + 1, "%a %b %d %H:%M:%S %Y", &tm);
	if (end == NULL)
		return (int64_t)time(NULL);
	return (int64_t)timegm(&tm);
}

/* Takes Status/X-Status out of the header of msg (CRLF) and returns the flags. */
static uint32_t mbox_take_status(buf_t *msg)
{
	struct header h;
	header_parse(msg->data, msg->len, &h);
	uint32_t flags = 0;
	buf_t out = BUF_INIT;
	size_t pos = 0;
	for (size_t i = 0; i < h.count; i++) {
		const struct header_field *f = &h.fields[i];
		bool status = strcasecmp(f->name, "Status") == 0;
		bool xstatus = strcasecmp(f->name, "X-Status") == 0;
		if (!status && !xstatus)
			continue;
		for (const char *c = f->value; *c != '\0'; c++) {
			if (status && *c == 'R')
				flags |= STORE_FLAG_SEEN;
			if (xstatus && *c == 'A')
				flags |= STORE_FLAG_ANSWERED;
			if (xstatus && *c == 'F')
				flags |= STORE_FLAG_FLAGGED;
			if (xstatus && *c == 'T')
				flags |= STORE_FLAG_DRAFT;
			if (xstatus && *c == 'D')
				flags |= STORE_FLAG_DELETED;
		}
		buf_append(&out, msg->data + pos, f->raw_offset - pos);
		pos = f->raw_offset + f->raw_len;
	}
	if (pos > 0) {
		buf_append(&out, msg->data + pos, msg->len - pos);
		buf_free(msg);
		*msg = out;
	} else {
		buf_free(&out);
	}
	header_free(&h);
	return flags;
}

/* One mbox entry is complete: check it and store it. */
static void mbox_entry_done(struct import_ctx *ctx, buf_t *entry, const char *from_line,
			    size_t line_no, size_t index)
{
	/* The empty line before the next From_ line separates; it is not content. */
	if (entry->len > 0 && entry->data[entry->len - 1] == '\n' &&
	    (entry->len == 1 || entry->data[entry->len - 2] == '\n'))
		entry->len--;
	buf_t msg = BUF_INIT;
	append_crlf(&msg, entry->data != NULL ? entry->data : "", entry->len);
	struct header h;
	header_parse(msg.data != NULL ? msg.data : "", msg.len, &h);
	bool ok = h.count > 0 && (h.has_body_separator || h.header_len == msg.len);
	header_free(&h);
	if (!ok) {
		fprintf(stderr, "mailctl: %s:%zu: entry %zu skipped: no valid header section\n",
			ctx->source, line_no, index);
		ctx->skipped++;
	} else {
		uint32_t flags = mbox_take_status(&msg);
		if (import_store(ctx, buf_cstr(&msg), msg.len, flags, mbox_from_date(from_line)) < 0)
			ctx->failed = true;
	}
	buf_free(&msg);
	buf_reset(entry);
}

/* Reads one line (with its LF) into line, keeping at most max bytes of it
 * (*cut_r tells whether more were dropped), so that no line of the file can
 * make mailctl grow without bound. false at the end of the file. */
static bool mbox_read_line(FILE *f, buf_t *line, size_t max, bool *cut_r)
{
	buf_reset(line);
	*cut_r = false;
	bool any = false;
	int ch;
	while ((ch = getc_unlocked(f)) != EOF) {
		any = true;
		if (line->len < max)
			buf_append_char(line, (char)ch);
		else
			*cut_r = true;
		if (ch == '\n')
			break;
	}
	return any;
}

/* Ends an mbox entry: imports it, or skips it when it grew past the limit. */
static void mbox_entry_end(struct import_ctx *ctx, buf_t *entry, const char *from_line,
			   size_t entry_line, size_t index, bool too_big)
{
	if (!too_big) {
		mbox_entry_done(ctx, entry, from_line, entry_line, index);
		return;
	}
	fprintf(stderr, "mailctl: %s:%zu: entry %zu skipped: larger than %u bytes\n", ctx->source,
		entry_line, index, IMPORT_MAX_MESSAGE);
	ctx->skipped++;
	buf_reset(entry);
}

/* Imports an mboxrd file. */
static void import_mbox(struct import_ctx *ctx, FILE *f)
{
	buf_t line = BUF_INIT;
	size_t line_no = 0, entry_line = 0, index = 0;
	buf_t entry = BUF_INIT;
	char *from_line = NULL;
	bool garbage_reported = false, too_big = false, cut;
	while (!ctx->failed && mbox_read_line(f, &line, IMPORT_MAX_MESSAGE + 1, &cut)) {
		line_no++;
		size_t n = line.len;
		const char *text = buf_cstr(&line);
		if (n >= 5 && memcmp(text, "From ", 5) == 0) {
			if (from_line != NULL)
				mbox_entry_end(ctx, &entry, from_line, entry_line, index, too_big);
			free(from_line);
			from_line = xstrndup(text, n);
			entry_line = line_no;
			index++;
			too_big = false;
			continue;
		}
		if (from_line == NULL) {
			if (!garbage_reported && !(n == 1 && text[0] == '\n')) {
				fprintf(stderr, "mailctl: %s:%zu: text before the first From line skipped\n",
					ctx->source, line_no);
				ctx->skipped++;
				garbage_reported = true;
			}
			continue;
		}
		size_t len = n;
		size_t gt = 0;
		while (gt < len && text[gt] == '>')
			gt++;
		if (gt > 0 && len - gt >= 5 && memcmp(text + gt, "From ", 5) == 0) {
			text++; /* mboxrd: one '>' less */
			len--;
		}
		/* Once too big, nothing more is kept: a later short line must not
		 * make a message with a hole in it. */
		if (cut || too_big || entry.len + len > IMPORT_MAX_MESSAGE)
			too_big = true;
		else
			buf_append(&entry, text, len);
	}
	if (from_line != NULL && !ctx->failed)
		mbox_entry_end(ctx, &entry, from_line, entry_line, index, too_big);
	free(from_line);
	buf_free(&line);
	buf_free(&entry);
}

/* ---- Maildir ---- */

struct maildir_file {
	char *path;
	time_t mtime;
	uint32_t flags;
};

/* Flags from a Maildir name's ":2," info (and \Seen-less new/). */
static uint32_t maildir_flags(const char *name)
{
	const char *info = strstr(name, ":2,");
	uint32_t flags = 0;
	if (info == NULL)
		return 0;
	static const struct {
		char letter;
		uint32_t flag;
	} table[] = {{'D', STORE_FLAG_DRAFT},    {'F', STORE_FLAG_FLAGGED}, {'R', STORE_FLAG_ANSWERED},
		     {'S', STORE_FLAG_SEEN},     {'T', STORE_FLAG_DELETED}};
	for (const char *c = info + 3; *c != '\0'; c++)
		for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
			if (table[i].letter == *c)
				flags |= table[i].flag;
	return flags;
}

/* Orders Maildir files oldest first (qsort). */
static int maildir_file_cmp(const void *a, const void *b)
{
	const struct maildir_file *x = a, *y = b;
	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* Lists DIR/sub's files into files. */
static void maildir_scan(const char *dir, const char *sub, struct maildir_file **files,
			 size_t *count)
{
	char *path = xasprintf("%s/%s", dir, sub);
	DIR *d = opendir(path);
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			char *file = xasprintf("%s/%s", path, e->d_name);
			struct stat st;
			if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
				free(file);
				continue;
			}
			*files = xrealloc(*files, (*count + 1) * sizeof(**files));
			(*files)[*count].path = file;
			(*files)[*count].mtime = st.st_mtime;
			(*files)[*count].flags = maildir_flags(e->d_name);
			(*count)++;
		}
		closedir(d);
	}
	free(path);
}

/* Reads a whole file (bounded); -1 on error. */
static int read_whole(const char *path, buf_t *out)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -1;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (out->len + n > IMPORT_MAX_MESSAGE) {
			fclose(f);
			return -1;
		}
		buf_append(out, chunk, n);
	}
	bool failed = ferror(f) != 0;
	fclose(f);
	return failed ? -1 : 0;
}

/* Imports cur/ and new/ of a Maildir, oldest first. */
static void import_maildir(struct import_ctx *ctx, const char *dir)
{
	struct maildir_file *files = NULL;
	size_t count = 0;
	maildir_scan(dir, "cur", &files, &count);
	maildir_scan(dir, "new", &files, &count);
	qsort(files, count, sizeof(*files), maildir_file_cmp);
	for (size_t i = 0; i < count && !ctx->failed; i++) {
		buf_t raw = BUF_INIT, msg = BUF_INIT;
		if (read_whole(files[i].path, &raw) < 0) {
			fprintf(stderr, "mailctl: %s: cannot read, skipped\n", files[i].path);
			ctx->skipped++;
		} else {
			append_crlf(&msg, buf_cstr(&raw), raw.len);
			if (import_store(ctx, buf_cstr(&msg), msg.len, files[i].flags,
					 (int64_t)files[i].mtime) < 0)
				ctx->failed = true;
		}
		buf_free(&raw);
		buf_free(&msg);
	}
	for (size_t i = 0; i < count; i++)
		free(files[i].path);
	free(files);
}

/* ---- export ---- */

/* The header of msg with Status/X-Status lines added before the blank line. */
static void mbox_write_message(FILE *out, const char *data, size_t len,
			       const struct store_msg *m)
{
	buf_t lf = BUF_INIT;
	append_lf(&lf, data, len);
	const char *text = buf_cstr(&lf);
	size_t hlen = header_section_length(text, lf.len);
	/* header_section_length includes the blank line; insert before it. */
	size_t insert = hlen;
	if (insert > 0 && text[insert - 1] == '\n' && insert >= 2 && text[insert - 2] == '\n')
		insert--;
	else if (insert == lf.len && (insert == 0 || text[insert - 1] != '\n'))
		insert = lf.len;
	struct header h;
	header_parse(data, len, &h);
	const char *rp = header_get(&h, "Return-Path");
	char *sender = NULL;
	if (rp != NULL) {
		const char *lt = strchr(rp, '<'), *gt = lt != NULL ? strchr(lt, '>') : NULL;
		if (lt != NULL && gt != NULL && gt > lt + 1)
			sender = xstrndup(lt + 1, (size_t)(gt - lt - 1));
	}
	const char *from = header_get(&h, "From");
	if (sender == NULL && from != NULL) {
		/* No envelope sender kept: the author's address is the best guess. */
		struct address_list list = {NULL, 0};
		address_list_parse(from, strlen(from), &list);
		if (list.count > 0 && list.items[0].local != NULL)
			sender = mail_address_spec(&list.items[0]);
		address_list_free(&list);
	}
	header_free(&h);
	time_t t = (time_t)m->internal_date;
	struct tm tm;
	gmtime_r(&t, &tm);
	char date[64];
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	fprintf(out, "From %s %s\n", sender != NULL ? sender : "MAILER-DAEMON", date);
	free(sender);
	buf_t status = BUF_INIT;
	buf_printf(&status, "Status: %sO\n", (m->flags & STORE_FLAG_SEEN) ? "R" : "");
	if (m->flags & (STORE_FLAG_ANSWERED | STORE_FLAG_FLAGGED | STORE_FLAG_DRAFT |
			STORE_FLAG_DELETED))
		buf_printf(&status, "X-Status: %s%s%s%s\n", (m->flags & STORE_FLAG_ANSWERED) ? "A" : "",
			   (m->flags & STORE_FLAG_FLAGGED) ? "F" : "",
			   (m->flags & STORE_FLAG_DRAFT) ? "T" : "",
			   (m->flags & STORE_FLAG_DELETED) ? "D" : "");
	fwrite(text, 1, insert, out);
	if (insert > 0 && text[insert - 1] != '\n')
		fputc('\n', out);
	fwrite(status.data, 1, status.len, out);
	/* The rest, with mboxrd quoting of From lines. */
	const char *p = text + insert, *end = text + lf.len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = eol != NULL ? (size_t)(eol - p) + 1 : (size_t)(end - p);
		size_t gt = 0;
		while (gt < n && p[gt] == '>')
			gt++;
		if (n - gt >= 5 && memcmp(p + gt, "From ", 5) == 0)
			fputc('>', out);
		fwrite(p, 1, n, out);
		p += n;
	}
	if (lf.len == 0 || text[lf.len - 1] != '\n')
		fputc('\n', out);
	fputc('\n', out);
	buf_free(&status);
	buf_free(&lf);
}

/* Writes one Maildir file: tmp/ then rename into cur/, mtime = internal date. */
static int maildir_write_message(const char *dir, const char *data, size_t len,
				 const struct store_msg *m, size_t seq)
{
	char flags[8];
	size_t n = 0;
	if (m->flags & STORE_FLAG_DRAFT)
		flags[n++] = 'D';
	if (m->flags & STORE_FLAG_FLAGGED)
		flags[n++] = 'F';
	if (m->flags & STORE_FLAG_ANSWERED)
		flags[n++] = 'R';
	if (m->flags & STORE_FLAG_SEEN)
		flags[n++] = 'S';
	if (m->flags & STORE_FLAG_DELETED)
		flags[n++] = 'T';
	flags[n] = '\0';
	char host[256];
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	char *base = xasprintf("%lld.M%zuP%ldU%u.%s", (long long)m->internal_date, seq,
			       (long)getpid(), m->uid, host);
	char *tmp = xasprintf("%s/tmp/%s", dir, base);
	char *cur = xasprintf("%s/cur/%s:2,%s", dir, base, flags);
	free(base);
	buf_t lf = BUF_INIT;
	append_lf(&lf, data, len);
	int ret = -1;
	FILE *f = fopen(tmp, "wbx");
	if (f != NULL) {
		bool ok = fwrite(buf_cstr(&lf), 1, lf.len, f) == lf.len;
		ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
		ok = fclose(f) == 0 && ok;
		struct timeval times[2] = {{(time_t)m->internal_date, 0},
					   {(time_t)m->internal_date, 0}};
		if (ok && utimes(tmp, times) == 0 && rename(tmp, cur) == 0)
			ret = 0;
	}
	if (ret < 0)
		fprintf(stderr, "mailctl: cannot write %s: %s\n", cur, strerror(errno));
	buf_free(&lf);
	free(tmp);
	free(cur);
	return ret;
}

/* Creates DIR/cur, new, tmp. */
static int maildir_create(const char *dir)
{
	const char *subs[] = {"", "/cur", "/new", "/tmp"};
	for (size_t i = 0; i < 4; i++) {
		char *path = xasprintf("%s%s", dir, subs[i]);
		int ret = mkdir(path, 0700);
		if (ret != 0 && errno != EEXIST) {
			fprintf(stderr, "mailctl: cannot create %s: %s\n", path, strerror(errno));
			free(path);
			return -1;
		}
		free(path);
	}
	return 0;
}

/* ---- commands ---- */

/* Parses USER [--folder F] and the rest; returns the number of rest args or -1. */
static int transfer_args(int argc, char **argv, const char **user_r, const char **folder_r,
			 const char **rest, int max_rest)
{
	int count = 0;
	*user_r = NULL;
	*folder_r = "INBOX";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--folder") == 0 && i + 1 < argc) {
			*folder_r = argv[++i];
		} else if (*user_r == NULL && argv[i][0] != '-') {
			*user_r = argv[i];
		} else {
			if (count >= max_rest)
				return -1;
			rest[count++] = argv[i];
		}
	}
	return *user_r != NULL ? count : -1;
}

int cmd_import(int argc, char **argv, const char *datadir)
{
	const char *user, *folder, *rest[1] = {NULL};
	if (transfer_args(argc, argv, &user, &folder, rest, 1) != 1 || rest[0][0] == '-') {
		fputs("usage: mailctl import USER [--folder F] FILE.mbox|MAILDIR\n", stderr);
		return 2;
	}
	struct stat st;
	if (stat(rest[0], &st) != 0) {
		fprintf(stderr, "mailctl: %s: %s\n", rest[0], strerror(errno));
		return 1;
	}
	struct import_ctx ctx = {0};
	ctx.folder = folder;
	ctx.source = rest[0];
	if (transfer_open(datadir, user, &ctx.st) < 0)
		return 1;
	int ret = store_folder_create(ctx.st, folder, STORE_SPECIAL_NONE);
	if (ret != STORE_OK && ret != STORE_ERR_EXISTS) {
		fprintf(stderr, "mailctl: folder %s: %s\n", folder, store_last_error(ctx.st));
		store_close(&ctx.st);
		return 1;
	}
	if (S_ISDIR(st.st_mode)) {
		import_maildir(&ctx, rest[0]);
	} else {
		FILE *f = fopen(rest[0], "rb");
		if (f == NULL) {
			fprintf(stderr, "mailctl: %s: %s\n", rest[0], strerror(errno));
			store_close(&ctx.st);
			return 1;
		}
		import_mbox(&ctx, f);
		fclose(f);
	}
	if (!ctx.failed && import_finish(&ctx) < 0)
		ctx.failed = true;
	store_close(&ctx.st);
	printf("imported %zu message%s into %s, %zu skipped\n", ctx.imported,
	       ctx.imported == 1 ? "" : "s", folder, ctx.skipped);
	return ctx.failed || ctx.skipped > 0 ? 1 : 0;
}

int cmd_export(int argc, char **argv, const char *datadir)
{
	const char *user, *folder, *rest[2] = {NULL, NULL};
	int n = transfer_args(argc, argv, &user, &folder, rest, 2);
	bool mbox = n == 2 && strcmp(rest[0], "--mbox") == 0;
	bool maildir = n == 2 && strcmp(rest[0], "--maildir") == 0;
	if (!mbox && !maildir) {
		fputs("usage: mailctl export USER [--folder F] --mbox FILE | --maildir DIR\n", stderr);
		return 2;
	}
	store *st = NULL;
	if (transfer_open(datadir, user, &st) < 0)
		return 1;
	struct store_msg *list = NULL;
	size_t count = 0;
	if (store_msg_list(st, folder, &list, &count) != STORE_OK) {
		fprintf(stderr, "mailctl: folder %s: %s\n", folder, store_last_error(st));
		store_close(&st);
		return 1;
	}
	FILE *out = NULL;
	int status = 0;
	if (mbox) {
		out = strcmp(rest[1], "-") == 0 ? stdout : fopen(rest[1], "wb");
		if (out == NULL) {
			fprintf(stderr, "mailctl: %s: %s\n", rest[1], strerror(errno));
			status = 1;
		}
	} else if (maildir_create(rest[1]) < 0) {
		status = 1;
	}
	for (size_t i = 0; i < count && status == 0; i++) {
		char *data = NULL;
		size_t len = 0;
		if (store_msg_load(st, folder, list[i].uid, &data, &len) != STORE_OK) {
			fprintf(stderr, "mailctl: UID %u: %s\n", list[i].uid, store_last_error(st));
			status = 1;
			break;
		}
		if (mbox)
			mbox_write_message(out, data, len, &list[i]);
		else if (maildir_write_message(rest[1], data, len, &list[i], i) < 0)
			status = 1;
		free(data);
	}
	if (out != NULL && out != stdout && fclose(out) != 0) {
		fprintf(stderr, "mailctl: %s: %s\n", rest[1], strerror(errno));
		status = 1;
	}
	if (status == 0)
		fprintf(stderr, "exported %zu message%s from %s\n", count, count == 1 ? "" : "s",
			folder);
	store_msg_list_free(list, count);
	store_close(&st);
	return status;
}
