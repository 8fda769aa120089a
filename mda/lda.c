/* lda.c: `mda deliver`, the one-shot local delivery agent for other MTAs,
 * procmail-style pipes and scripts.
 *
 *   mda [--dir D] [--config F] deliver [-f SENDER] [-m FOLDER] RECIPIENT... < message
 *
 * Reads one message from standard input (LF or CRLF line ends; a leading
 * mbox "From " line is dropped and gives the sender when -f is absent),
 * checks it, looks every recipient up before delivering to any, then runs
 * the same delivery path as LMTP (rules, redirects, group commit) on a
 * private loop. Exit codes (sysexits.h): 0 delivered; EX_DATAERR (65) a
 * malformed message; EX_NOUSER (67) an unknown recipient; EX_CANTCREAT (73)
 * over quota; EX_TEMPFAIL (75) anything that may pass. With several
 * recipients the first failure, in recipient order, decides. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buffer.h"
#include "log.h"
#include "mda.h"
#include "smtp_path.h"

struct lda_options {
	const char *dir;
	const char *config;
	const char *sender;
	const char *folder;
	char **rcpts;
	int rcpt_count;
};

/* Prints a message and returns the exit code. */
static int __attribute__((format(printf, 2, 3))) lda_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mda deliver: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

/* Prints the usage of `mda deliver`. */
static void lda_usage(void)
{
	fputs("usage: mda [--dir D] [--config F] deliver [-f SENDER] [-m FOLDER] RECIPIENT... "
	      "< message\n",
	      stderr);
}

/* Parses the command line; -1 on a usage error. */
static int lda_parse_options(int argc, char **argv, struct lda_options *o)
{
	int i = 1;
	for (; i < argc && strcmp(argv[i], "deliver") != 0; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			o->dir = argv[++i];
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			o->config = argv[++i];
		else if (strcmp(argv[i], "--foreground") != 0)
			return -1;
	}
	for (i++; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "-f") == 0 && i + 1 < argc)
			o->sender = argv[++i];
		else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc)
			o->folder = argv[++i];
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			o->dir = argv[++i];
		else
			return -1;
	}
	o->rcpts = argv + i;
	o->rcpt_count = argc - i;
	return o->rcpt_count > 0 ? 0 : -1;
}

/* The envelope sender as delivered: "" for the null path (also spelt
 * MAILER-DAEMON), else the bare address; NULL when text is not a
 * reverse-path (RFC 5321 4.1.2). A local name without a domain ("root", as
 * cron and scripts pass it) is taken when it would be a valid local part. It
 * becomes the Return-Path field, so CR, LF and other controls never pass. */
static char *lda_sender_parse(const char *text)
{
	if (text[0] == '\0' || strcmp(text, "<>") == 0 || strcasecmp(text, "MAILER-DAEMON") == 0)
		return xstrdup("");
	bool local_only = text[0] != '<' && strchr(text, '@') == NULL;
	char *bracketed = text[0] == '<'  ? xstrdup(text)
			  : local_only    ? xasprintf("<%s@localhost.invalid>", text)
					  : xasprintf("<%s>", text);
	struct smtp_path path;
	const char *reason = NULL;
	int r = smtp_path_parse(bracketed, strlen(bracketed),
				SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_UTF8, &path, &reason);
	free(bracketed);
	if (r < 0)
		return NULL;
	char *address = path.param_count > 0 ? NULL
			: local_only	      ? xstrdup(path.local)
					      : xstrdup(path.address);
	smtp_path_free(&path);
	return address;
}

/* Reads standard input up to limit bytes (+1 to detect more); -1 on error. */
static int lda_read_input(buf_t *in, uint64_t limit)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (in->len + (size_t)n > limit + 1)
			n = (ssize_t)(limit + 1 - in->len);
		buf_append(in, chunk, (size_t)n);
		if (in->len > limit)
			return 0;
	}
}

/* Turns the input into a stored message: drops a "From " line (keeping its
 * sender in *from_line_r), makes every line end in CRLF. */
static char *lda_normalize(const buf_t *in, size_t *len_r, char **from_line_r)
{
	const char *p = buf_cstr(in), *end = p + in->len;
	*from_line_r = NULL;
	if (in->len >= 5 && memcmp(p, "From ", 5) == 0) {
		const char *eol = memchr(p, '\n', in->len);
		const char *stop = eol != NULL ? eol : end;
		if (stop > p + 5 && stop[-1] == '\r')
			stop--;
		const char *addr = p + 5, *sp = memchr(addr, ' ', (size_t)(stop - addr));
		*from_line_r = xstrndup(addr, (size_t)((sp != NULL ? sp : stop) - addr));
		if (strcmp(*from_line_r, "MAILER-DAEMON") == 0)
			(*from_line_r)[0] = '\0';
		p = eol != NULL ? eol + 1 : end;
	}
	buf_t out = BUF_INIT;
	buf_reserve(&out, (size_t)(end - p) + (size_t)(end - p) / 32 + 2);
	for (; p < end; p++) {
		if (*p == '\n' && (out.len == 0 || out.data[out.len - 1] != '\r'))
			buf_append_char(&out, '\r');
		buf_append_char(&out, *p);
	}
	if (out.len > 0 && out.data[out.len - 1] != '\n')
		buf_append_str(&out, "\r\n");
	*len_r = out.len;
	return buf_steal(&out);
}

/* Why the message is malformed, or NULL: empty, NUL bytes, or a header
 * section that stops at a line that is neither a field nor a blank line. */
static const char *lda_check_message(const char *data, size_t len)
{
	if (len == 0)
		return "empty message";
	if (memchr(data, '\0', len) != NULL)
		return "NUL byte in the message";
	struct header h;
	header_parse(data, len, &h);
	const char *why = NULL;
	if (h.count == 0)
		why = "no header fields";
	else if (!h.has_body_separator && h.header_len < len)
		why = "malformed header section (a line is neither a field nor blank)";
	header_free(&h);
	return why;
}

struct lda_state {
	size_t pending;
	enum delivery_status *status;
};

struct lda_slot {
	struct lda_state *state;
	size_t index;
};

/* One recipient is done. */
static void lda_on_delivered(struct mda_delivery *dl, void *arg)
{
	struct lda_slot *slot = arg;
	slot->state->status[slot->index] = dl->status;
	if (dl->status != DELIVERY_OK)
		fprintf(stderr, "mda deliver: %s: %s\n", dl->rcpt,
			dl->error != NULL ? dl->error : "failed");
	slot->state->pending--;
	free(slot);
	delivery_free(&dl);
}

/* Runs the loop until every handle is closed. */
static void lda_drain(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
}

int lda_main(int argc, char **argv)
{
	struct lda_options o = {0};
	if (lda_parse_options(argc, argv, &o) < 0) {
		lda_usage();
		return MDA_EX_TEMPFAIL;
	}
	const char *dir = o.dir != NULL ? o.dir : getenv("MAILSTACK_DIR");
	if (dir == NULL || dir[0] == '\0')
		dir = "./var";
	char *config_file = o.config != NULL ? xstrdup(o.config)
					     : xasprintf("%s/mailstack.conf", dir);
	config *cfg = NULL;
	char *err = NULL;
	if (config_load(config_file, false, &cfg, &err) < 0) {
		free(config_file);
		int code = lda_fail(MDA_EX_TEMPFAIL, "%s", err);
		free(err);
		return code;
	}
	free(config_file);
	config_set_datadir(cfg, dir);
	log_init("mda", NULL, LOG_WARN, NULL);
	char *log_dir = xasprintf("%s/log", dir);
	log_set_dirs(log_dir, false);
	free(log_dir);

	int code = MDA_EX_OK;
	userdb *users = NULL;
	buf_t in = BUF_INIT;
	char *data = NULL, *from_line = NULL, *sender = NULL;
	size_t len = 0;
	struct user_info *infos = xcalloc((size_t)o.rcpt_count, sizeof(*infos));
	if (userdb_open(dir, &users, &err) < 0) {
		code = lda_fail(MDA_EX_TEMPFAIL, "%s", err);
		free(err);
		goto out;
	}
	uint64_t limit = (uint64_t)config_int(cfg, "smtp.max_message_size");
	if (lda_read_input(&in, limit) < 0) {
		code = lda_fail(MDA_EX_TEMPFAIL, "cannot read the message: %s", strerror(errno));
		goto out;
	}
	if (in.len > limit) {
		code = lda_fail(MDA_EX_DATAERR, "message larger than %llu bytes",
				(unsigned long long)limit);
		goto out;
	}
	data = lda_normalize(&in, &len, &from_line);
	const char *why = lda_check_message(data, len);
	if (why != NULL) {
		code = lda_fail(MDA_EX_DATAERR, "malformed message: %s", why);
		goto out;
	}
	for (int i = 0; i < o.rcpt_count; i++) {
		if (userdb_user_lookup(users, o.rcpts[i], &infos[i]) < 0) {
			code = lda_fail(MDA_EX_NOUSER, "%s: user unknown", o.rcpts[i]);
			goto out;
		}
	}
	if (o.sender != NULL) {
		sender = lda_sender_parse(o.sender);
		if (sender == NULL) {
			code = lda_fail(MDA_EX_TEMPFAIL, "-f %s: not a valid sender address", o.sender);
			goto out;
		}
	} else if (from_line != NULL) {
		/* A From_ line that does not hold an address gives no sender. */
		sender = lda_sender_parse(from_line);
		if (sender == NULL)
			sender = xstrdup("");
	} else {
		sender = xstrdup("");
	}

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct mda mda;
	mda_init(&mda, &loop, cfg, users, dir);
	char *id = lifecycle_id_new();
	log_event(id, "received", "via", "lda", "from", sender, NULL);
	struct mda_message *msg = mda_message_new(data, len, sender, id);
	data = NULL;
	free(id);
	struct lda_state state = {(size_t)o.rcpt_count,
				  xcalloc((size_t)o.rcpt_count, sizeof(enum delivery_status))};
	for (int i = 0; i < o.rcpt_count; i++) {
		struct lda_slot *slot = xcalloc(1, sizeof(*slot));
		slot->state = &state;
		slot->index = (size_t)i;
		struct mda_delivery *dl = delivery_new(&mda, msg, &infos[i], o.rcpts[i]);
		if (o.folder != NULL)
			dl->forced_folder = xstrdup(o.folder);
		delivery_start(dl, lda_on_delivered, slot);
	}
	mda_message_unref(&msg);
	lda_drain(&loop);
	delivery_committer_free(&mda.committer);
	lda_drain(&loop);
	for (int i = 0; i < o.rcpt_count && code == MDA_EX_OK; i++) {
		if (state.status[i] == DELIVERY_QUOTA)
			code = MDA_EX_CANTCREAT;
		else if (state.status[i] != DELIVERY_OK)
			code = MDA_EX_TEMPFAIL;
	}
	free(state.status);
	mda_cleanup(&mda);
	if (uv_loop_close(&loop) != 0)
		log_warn(0, "event loop still busy at exit");
out:
	for (int i = 0; i < o.rcpt_count; i++)
		user_info_free(&infos[i]);
	free(infos);
	free(data);
	free(from_line);
	free(sender);
	buf_free(&in);
	userdb_close(&users);
	config_free(&cfg);
	log_close();
	return code;
}
