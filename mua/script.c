/* script.c: `mua send`, `mua list` and `mua read` without a screen.
 *
 * The same asynchronous clients as the screen, driven step by step: each step
 * starts one exchange and turns the loop (UV_RUN_ONCE) until its callback has
 * run or nothing is left to wait for, so the code reads in order. Exit codes
 * come from sysexits.h: EX_USAGE for bad arguments, EX_DATAERR for a bad
 * address or message number, EX_NOINPUT for an unreadable attachment,
 * EX_UNAVAILABLE when a server is down or refuses, EX_TEMPFAIL for a 4xx. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buffer.h"
#include "compose.h"
#include "mua.h"
#include "mutf7.h"

#define SCRIPT_MAX_BODY (50 * 1024 * 1024)

struct script_conn {
	enum imapc_state state; /* the client's, as last reported */
	bool ready, failed;
	char *message;
	uint32_t exists;
};

struct script_cmd {
	bool done;
	enum imapc_result result;
	char *text;
	void *data; /* what the untagged callback fills */
};

/* Connection events for a script. */
static void script_on_state(void *arg, enum imapc_state state, const char *msg)
{
	struct script_conn *sc = arg;
	sc->state = state;
	if (state == IMAPC_READY)
		sc->ready = true;
	if (state == IMAPC_DISCONNECTED && !sc->ready) {
		sc->failed = true;
		free(sc->message);
		sc->message = xstrdup(msg != NULL ? msg : "disconnected");
	}
}

static void script_on_exists(void *arg, uint32_t count)
{
	struct script_conn *sc = arg;
	sc->exists = count;
}

static const struct imapc_events script_events = {
	.on_state = script_on_state,
	.on_exists = script_on_exists,
};

/* Turns the loop until *flag is set or nothing is left to run. */
static void script_wait(uv_loop_t *loop, const bool *flag)
{
	while (!*flag)
		if (uv_run(loop, UV_RUN_ONCE) == 0 && !*flag)
			break;
}

/* The account's password without a prompt: 0, or -1 after printing why. */
static int script_password(struct mua_account *a)
{
	char *err = NULL;
	if (mua_account_password(a, false, &err) < 0) {
		fprintf(stderr, "mua: %s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

/* Turns the loop until the client connecting is logged in: true, or false
 * after printing why (the caller frees the client). */
static bool script_wait_ready(uv_loop_t *loop, struct script_conn *sc)
{
	while (!sc->ready && !sc->failed)
		if (uv_run(loop, UV_RUN_ONCE) == 0)
			break;
	if (sc->ready)
		return true;
	fprintf(stderr, "mua: %s\n", sc->message != NULL ? sc->message : "cannot connect");
	return false;
}

/* Turns the loop (bounded) until the client logging out has disconnected. */
static void script_wait_closed(uv_loop_t *loop, const struct script_conn *sc)
{
	for (int i = 0; i < 1000 && sc->state != IMAPC_DISCONNECTED; i++)
		if (uv_run(loop, UV_RUN_ONCE) == 0)
			break;
}

/* After the client is freed: lets the loop finish closing, forgets the message. */
static void script_conn_end(uv_loop_t *loop, struct script_conn *sc)
{
	uv_run(loop, UV_RUN_NOWAIT);
	free(sc->message);
	sc->message = NULL;
}

/* Connects and logs in: the client, or NULL after printing why. */
static imapc *script_imap_open(uv_loop_t *loop, struct mua_account *a, struct script_conn *sc)
{
	if (script_password(a) < 0)
		return NULL;
	imapc *cl = imapc_new(loop, a, &script_events, sc);
	imapc_connect(cl);
	if (!script_wait_ready(loop, sc)) {
		imapc_free(&cl);
		return NULL;
	}
	return cl;
}

/* Logs out and lets the loop finish closing. */
static void script_imap_close(uv_loop_t *loop, imapc **cl, struct script_conn *sc)
{
	if (*cl == NULL)
		return;
	imapc_logout(*cl);
	script_wait_closed(loop, sc);
	imapc_free(cl);
	script_conn_end(loop, sc);
}

static void script_cmd_done(void *arg, enum imapc_result result, const char *text)
{
	struct script_cmd *cmd = arg;
	cmd->done = true;
	cmd->result = result;
	cmd->text = xstrdup(text != NULL ? text : "");
}

/* Runs one command to its end: its result (text in *text_r when not NULL). */
static enum imapc_result script_imap_run(uv_loop_t *loop, imapc *cl, const char *text,
					 const char *literal, size_t literal_len,
					 imapc_untagged_cb *untagged, void *untagged_arg,
					 char **text_r)
{
	struct script_cmd cmd = {.data = untagged_arg};
	imapc_command(cl, text, literal, literal_len, untagged, script_cmd_done, &cmd);
	script_wait(loop, &cmd.done);
	if (!cmd.done) {
		cmd.result = IMAPC_DROPPED;
		cmd.text = xstrdup("connection lost");
	}
	if (text_r != NULL)
		*text_r = cmd.text;
	else
		free(cmd.text);
	return cmd.result;
}

/* ---- finding the Sent folder ---- */

struct list_result {
	char *sent;
	char *drafts;
};

/* LIST lines: remembers the \Sent and \Drafts folders. */
static void script_list_untagged(void *arg, const char *name, uint32_t number,
				 const struct imap_arg *args, size_t count)
{
	struct list_result *lr = ((struct script_cmd *)arg)->data;
	if (strcasecmp(name, "LIST") != 0 || count < 3 || args[0].type != IMAP_ARG_LIST)
		return;
	const char *mailbox = imap_arg_string(&args[2]);
	if (mailbox == NULL)
		return;
	for (size_t i = 0; i < args[0].count; i++) {
		if (imap_arg_atom_is(&args[0].children[i], "\\Sent") && lr->sent == NULL)
			lr->sent = xstrdup(mailbox);
		if (imap_arg_atom_is(&args[0].children[i], "\\Drafts") && lr->drafts == NULL)
			lr->drafts = xstrdup(mailbox);
	}
}

/* The name of the \Sent folder ("Sent" when none is marked). */
static char *script_find_sent(uv_loop_t *loop, imapc *cl)
{
	struct list_result lr = {0};
	script_imap_run(loop, cl, "LIST \"\" \"*\"", NULL, 0, script_list_untagged, &lr, NULL);
	free(lr.drafts);
	return lr.sent != NULL ? lr.sent : xstrdup("Sent");
}

/* ---- send ---- */

struct send_result {
	bool done, ok;
	char *message;
};

static void script_send_done(void *arg, bool ok, const char *message)
{
	struct send_result *r = arg;
	r->done = true;
	r->ok = ok;
	r->message = xstrdup(message != NULL ? message : "");
}

/* Reads a whole file (attachments, the body). */
static int read_file(FILE *f, size_t max, char **data_r, size_t *len_r)
{
	buf_t b = BUF_INIT;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b.len + n > max) {
			buf_free(&b);
			errno = EFBIG;
			return -1;
		}
		buf_append(&b, chunk, n);
	}
	if (ferror(f)) {
		buf_free(&b);
		return -1;
	}
	*len_r = b.len;
	*data_r = buf_steal(&b);
	return 0;
}

/* Loads an attachment from a path. */
int mua_load_attachment(const char *path, struct compose_attachment *a, char **err_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		*err_r = xasprintf("cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	memset(a, 0, sizeof(*a));
	if (read_file(f, COMPOSE_MAX_ATTACHMENT_SIZE, &a->data, &a->len) < 0) {
		*err_r = xasprintf("cannot read %s: %s", path, strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	const char *slash = strrchr(path, '/');
	a->filename = xstrdup(slash != NULL ? slash + 1 : path);
	a->content_type = xstrdup(compose_guess_type(a->filename));
	return 0;
}

/* Appends a message to the Sent folder; prints a warning when it fails. */
static void script_save_sent(uv_loop_t *loop, struct mua_account *a, const char *msg,
			     size_t len)
{
	struct script_conn sc = {0};
	imapc *cl = script_imap_open(loop, a, &sc);
	if (cl == NULL) {
		fprintf(stderr, "mua: warning: the message was sent but not saved to Sent\n");
		free(sc.message);
		return;
	}
	char *sent = script_find_sent(loop, cl);
	char *quoted = imapc_quote(sent);
	char *cmd = xasprintf("APPEND %s (\\Seen)", quoted);
	char *text = NULL;
	if (script_imap_run(loop, cl, cmd, msg, len, NULL, NULL, &text) != IMAPC_OK)
		fprintf(stderr, "mua: warning: saving to %s failed: %s\n", sent, text);
	free(text);
	free(cmd);
	free(quoted);
	free(sent);
	script_imap_close(loop, &cl, &sc);
}

/* `mua send --to A [--cc B] [--bcc C] --subject S [--attach FILE]... < body`. */
int mua_script_send(uv_loop_t *loop, struct mua_account *a, int argc, char **argv)
{
	const char *to = NULL, *cc = NULL, *bcc = NULL, *subject = NULL;
	bool no_save = false;
	struct compose_attachment atts[COMPOSE_MAX_ATTACHMENTS];
	size_t att_count = 0;
	int rc = EX_OK;
	char *err = NULL;
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		bool has_value = i + 1 < argc;
		if (strcmp(opt, "--to") == 0 && has_value) {
			to = argv[++i];
		} else if (strcmp(opt, "--cc") == 0 && has_value) {
			cc = argv[++i];
		} else if (strcmp(opt, "--bcc") == 0 && has_value) {
			bcc = argv[++i];
		} else if (strcmp(opt, "--subject") == 0 && has_value) {
			subject = argv[++i];
		} else if (strcmp(opt, "--no-save") == 0) {
			no_save = true;
		} else if (strcmp(opt, "--attach") == 0 && has_value) {
			if (att_count >= COMPOSE_MAX_ATTACHMENTS) {
				fprintf(stderr, "mua: more than %d attachments\n",
					COMPOSE_MAX_ATTACHMENTS);
				rc = EX_USAGE;
				goto out;
			}
			if (mua_load_attachment(argv[++i], &atts[att_count], &err) < 0) {
				fprintf(stderr, "mua: %s\n", err);
				rc = EX_NOINPUT;
				goto out;
			}
			att_count++;
		} else {
			fprintf(stderr, "mua: send: unknown or incomplete option %s\n"
				"usage: mua send --to A [--cc B] [--bcc C] --subject S "
				"[--attach FILE]... < body\n", opt);
			rc = EX_USAGE;
			goto out;
		}
	}
	if (to == NULL && cc == NULL && bcc == NULL) {
		fprintf(stderr, "mua: send: --to is required\n");
		rc = EX_USAGE;
		goto out;
	}
	char *body = NULL;
	size_t body_len = 0;
	if (read_file(stdin, SCRIPT_MAX_BODY, &body, &body_len) < 0) {
		fprintf(stderr, "mua: cannot read the body: %s\n", strerror(errno));
		rc = EX_IOERR;
		goto out;
	}
	if (memchr(body, '\0', body_len) != NULL) {
		fprintf(stderr, "mua: the body contains NUL bytes; attach binary data instead\n");
		free(body);
		rc = EX_DATAERR;
		goto out;
	}
	char *from = mua_account_from(a);
	struct compose_message m = {
		.from = from, .to = to, .cc = cc, .bcc = bcc,
		.subject = subject != NULL ? subject : "", .body = body,
		.attachments = atts, .attachment_count = att_count,
		.extra_headers = "User-Agent: mailstack-mua/0.1\r\n",
	};
	char *msg = NULL;
	size_t len = 0;
	char **rcpts = NULL;
	size_t rcpt_count = 0;
	if (compose_build(&m, &msg, &len, &err) < 0 ||
	    compose_envelope_recipients(&m, &rcpts, &rcpt_count, &err) < 0) {
		fprintf(stderr, "mua: %s\n", err);
		rc = EX_DATAERR;
	} else if (mua_account_password(a, false, &err) < 0) {
		fprintf(stderr, "mua: %s\n", err);
		rc = EX_CONFIG;
	} else {
		struct send_result r = {0};
		smtpc_send(loop, a, a->address, rcpts, rcpt_count, msg, len, script_send_done, &r);
		script_wait(loop, &r.done);
		if (!r.done) {
			fprintf(stderr, "mua: sending did not finish\n");
			rc = EX_SOFTWARE;
		} else if (!r.ok) {
			fprintf(stderr, "mua: %s\n", r.message);
			rc = strstr(r.message, " 4") != NULL && strstr(r.message, " 5") == NULL ?
			     EX_TEMPFAIL : EX_UNAVAILABLE;
		} else {
			printf("sent: %s\n", r.message);
			if (!no_save && !a->read_pop3)
				script_save_sent(loop, a, msg, len);
		}
		free(r.message);
	}
	compose_free_list(&rcpts, rcpt_count);
	free(msg);
	free(from);
	free(body);
out:
	free(err);
	for (size_t i = 0; i < att_count; i++) {
		free(atts[i].filename);
		free(atts[i].content_type);
		free(atts[i].data);
	}
	return rc;
}

/* ---- list ---- */

static void script_print_row(uint32_t number, int64_t time_value, const char *from,
			     const char *subject, unsigned flags, bool attachment);

/* Prints one FETCH line of `mua list`. */
static void script_print_fetch(void *arg, const char *name, uint32_t number,
			       const struct imap_arg *args, size_t count)
{
	if (strcasecmp(name, "FETCH") != 0 || count < 1)
		return;
	const struct imap_arg *list = &args[0];
	struct mua_envelope env;
	mua_envelope_parse(mua_fetch_item(list, "ENVELOPE"), &env);
	const struct imap_arg *flags = mua_fetch_item(list, "FLAGS");
	bool seen = false, answered = false, flagged = false, deleted = false;
	if (flags != NULL && flags->type == IMAP_ARG_LIST)
		for (size_t i = 0; i < flags->count; i++) {
			seen |= imap_arg_atom_is(&flags->children[i], "\\Seen");
			answered |= imap_arg_atom_is(&flags->children[i], "\\Answered");
			flagged |= imap_arg_atom_is(&flags->children[i], "\\Flagged");
			deleted |= imap_arg_atom_is(&flags->children[i], "\\Deleted");
		}
	bool attach = mua_bodystructure_has_attachment(mua_fetch_item(list, "BODYSTRUCTURE"));
	unsigned fl = (seen ? MF_SEEN : 0) | (answered ? MF_ANSWERED : 0) |
		      (flagged ? MF_FLAGGED : 0) | (deleted ? MF_DELETED : 0);
	script_print_row(number, env.time, env.from_addr[0] != '\0' ? env.from_addr : env.from,
			 env.subject, fl, attach);
	mua_envelope_free(&env);
}

/* Reads "--folder F" from the arguments (INBOX by default). */
static int script_folder_arg(int argc, char **argv, int first_free, const char **folder_r,
			     const char **number_r)
{
	*folder_r = "INBOX";
	if (number_r != NULL)
		*number_r = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--folder") == 0 && i + 1 < argc) {
			*folder_r = argv[++i];
		} else if (number_r != NULL && *number_r == NULL && argv[i][0] != '-') {
			*number_r = argv[i];
		} else {
			return -1;
		}
	}
	(void)first_free;
	return 0;
}

/* ---- POP3 ---- */

struct script_pop3_reply {
	bool done, ok;
	char *status;
	char *data;
	size_t len;
};

static void script_pop3_done(void *arg, bool ok, const char *status, const char *data,
			     size_t len)
{
	struct script_pop3_reply *r = arg;
	r->done = true;
	r->ok = ok;
	r->status = xstrdup(status != NULL ? status : "");
	if (data != NULL) {
		r->data = xmalloc(len + 1);
		memcpy(r->data, data, len);
		r->data[len] = '\0';
		r->len = len;
	}
}

/* Connects to the POP3 server and logs in: the client, or NULL after printing why. */
static pop3c *script_pop3_open(uv_loop_t *loop, struct mua_account *a, struct script_conn *sc)
{
	if (script_password(a) < 0)
		return NULL;
	pop3c *cl = pop3c_new(loop, a, &script_events, sc);
	pop3c_connect(cl);
	if (!script_wait_ready(loop, sc)) {
		pop3c_free(&cl);
		free(sc->message);
		sc->message = NULL;
		return NULL;
	}
	return cl;
}

/* QUIT (deletions take effect) and let the loop finish closing. */
static void script_pop3_close(uv_loop_t *loop, pop3c **cl, struct script_conn *sc)
{
	pop3c_quit(*cl);
	script_wait_closed(loop, sc);
	pop3c_free(cl);
	script_conn_end(loop, sc);
}

struct script_refresh {
	bool done, ok;
	char *err;
};

static void script_refresh_done(void *arg, bool ok, const char *err, size_t new_count)
{
	struct script_refresh *r = arg;
	r->done = true;
	r->ok = ok;
	r->err = xstrdup(err != NULL ? err : "");
}

/* Opens the maildrop and reads its index (from the cache and TOP): NULL on error. */
static struct pop3box *script_pop3_box(uv_loop_t *loop, struct mua_account *a, pop3c *cl)
{
	char *path = pop3box_cache_path(a);
	struct pop3box *box = pop3box_new(path);
	free(path);
	struct script_refresh r = {0};
	pop3box_refresh(box, cl, NULL, script_refresh_done, &r);
	script_wait(loop, &r.done);
	if (!r.ok) {
		fprintf(stderr, "mua: cannot read the maildrop: %s\n",
			r.err != NULL ? r.err : "connection lost");
		pop3box_free(&box);
	}
	free(r.err);
	return box;
}

/* Prints one line of `mua list`: number, date, sender, subject, flags. */
static void script_print_row(uint32_t number, int64_t time_value, const char *from,
			     const char *subject, unsigned flags, bool attachment)
{
	char date[32] = "-";
	if (time_value != 0) {
		time_t t = (time_t)time_value;
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M", &tm);
	}
	char fl[8];
	size_t n = 0;
	if (!(flags & MF_SEEN))
		fl[n++] = 'N';
	if (flags & MF_ANSWERED)
		fl[n++] = 'r';
	if (flags & MF_FLAGGED)
		fl[n++] = '!';
	if (flags & MF_DELETED)
		fl[n++] = 'D';
	if (attachment)
		fl[n++] = 'A';
	if (n == 0)
		fl[n++] = '-';
	fl[n] = '\0';
	printf("%u\t%s\t%s\t%s\t%s\n", number, date, from, subject, fl);
}

/* `mua list` over POP3: the maildrop (one folder). */
static int script_pop3_list(uv_loop_t *loop, struct mua_account *a)
{
	struct script_conn sc = {0};
	pop3c *cl = script_pop3_open(loop, a, &sc);
	if (cl == NULL)
		return EX_UNAVAILABLE;
	struct pop3box *box = script_pop3_box(loop, a, cl);
	int rc = box != NULL ? EX_OK : EX_UNAVAILABLE;
	for (uint32_t n = 1; box != NULL && n <= pop3box_count(box); n++) {
		const struct pop3_entry *e = pop3box_entry(box, n);
		script_print_row(n, e->time, e->from_addr, e->subject, e->flags, e->attachment);
	}
	pop3box_free(&box);
	script_pop3_close(loop, &cl, &sc);
	return rc;
}

/* `mua read N` over POP3: RETR, shown as the pager would; marked read in the cache. */
static int script_pop3_read(uv_loop_t *loop, struct mua_account *a, unsigned long n)
{
	struct script_conn sc = {0};
	pop3c *cl = script_pop3_open(loop, a, &sc);
	if (cl == NULL)
		return EX_UNAVAILABLE;
	int rc = EX_OK;
	struct pop3box *box = script_pop3_box(loop, a, cl);
	if (box == NULL) {
		rc = EX_UNAVAILABLE;
	} else if (n > pop3box_count(box)) {
		fprintf(stderr, "mua: no message %lu in INBOX (%zu messages)\n", n,
			pop3box_count(box));
		rc = EX_DATAERR;
	} else {
		char *cmd = xasprintf("RETR %lu", n);
		struct script_pop3_reply r = {0};
		pop3c_command(cl, cmd, true, script_pop3_done, &r);
		free(cmd);
		script_wait(loop, &r.done);
		if (!r.ok || r.data == NULL) {
			fprintf(stderr, "mua: cannot fetch message %lu: %s\n", n,
				r.status != NULL ? r.status : "connection lost");
			rc = EX_UNAVAILABLE;
		} else {
			struct msgview *v = msgview_new(r.data, r.len);
			fputs(v->text, stdout);
			msgview_free(&v);
			pop3box_entry(box, (uint32_t)n)->flags |= MF_SEEN;
			char *err = NULL;
			if (pop3box_save(box, &err) < 0) {
				fprintf(stderr, "mua: warning: %s\n", err);
				free(err);
			}
		}
		free(r.status);
		free(r.data);
	}
	pop3box_free(&box);
	script_pop3_close(loop, &cl, &sc);
	return rc;
}

/* `mua list [--folder F]`. */
int mua_script_list(uv_loop_t *loop, struct mua_account *a, int argc, char **argv)
{
	const char *folder;
	if (script_folder_arg(argc, argv, 1, &folder, NULL) < 0) {
		fprintf(stderr, "usage: mua list [--folder F]\n");
		return EX_USAGE;
	}
	if (a->read_pop3) {
		if (strcasecmp(folder, "INBOX") != 0) {
			fprintf(stderr, "mua: account %s reads over POP3, which has only INBOX\n",
				a->name);
			return EX_DATAERR;
		}
		return script_pop3_list(loop, a);
	}
	struct script_conn sc = {0};
	imapc *cl = script_imap_open(loop, a, &sc);
	if (cl == NULL) {
		free(sc.message);
		return EX_UNAVAILABLE;
	}
	int rc = EX_OK;
	char *wire = mutf7_encode(folder);
	char *quoted = imapc_quote(wire);
	free(wire);
	char *cmd = xasprintf("EXAMINE %s", quoted);
	char *text = NULL;
	if (script_imap_run(loop, cl, cmd, NULL, 0, NULL, NULL, &text) != IMAPC_OK) {
		fprintf(stderr, "mua: cannot open %s: %s\n", folder, text);
		rc = EX_DATAERR;
	} else if (sc.exists > 0) {
		free(text);
		text = NULL;
		if (script_imap_run(loop, cl, "FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE BODYSTRUCTURE)",
				    NULL, 0, script_print_fetch, NULL, &text) != IMAPC_OK) {
			fprintf(stderr, "mua: FETCH failed: %s\n", text);
			rc = EX_UNAVAILABLE;
		}
	}
	free(text);
	free(cmd);
	free(quoted);
	script_imap_close(loop, &cl, &sc);
	return rc;
}

/* ---- read ---- */

struct read_result {
	char *raw;
	size_t len;
};

/* Keeps the BODY[] literal of the FETCH. */
static void script_read_fetch(void *arg, const char *name, uint32_t number,
			      const struct imap_arg *args, size_t count)
{
	struct read_result *rr = ((struct script_cmd *)arg)->data;
	if (strcasecmp(name, "FETCH") != 0 || count < 1)
		return;
	const struct imap_arg *body = mua_fetch_item(&args[0], "BODY[]");
	const char *s = body != NULL ? imap_arg_string(body) : NULL;
	if (s != NULL && rr->raw == NULL) {
		rr->raw = xmalloc(body->len + 1);
		memcpy(rr->raw, s, body->len);
		rr->raw[body->len] = '\0';
		rr->len = body->len;
	}
}

/* `mua read N [--folder F]`: headers and decoded text. */
int mua_script_read(uv_loop_t *loop, struct mua_account *a, int argc, char **argv)
{
	const char *folder, *number;
	if (script_folder_arg(argc, argv, 1, &folder, &number) < 0 || number == NULL) {
		fprintf(stderr, "usage: mua read N [--folder F]\n");
		return EX_USAGE;
	}
	char *end;
	unsigned long n = strtoul(number, &end, 10);
	if (*end != '\0' || n == 0 || n > UINT32_MAX) {
		fprintf(stderr, "mua: not a message number: %s\n", number);
		return EX_USAGE;
	}
	if (a->read_pop3) {
		if (strcasecmp(folder, "INBOX") != 0) {
			fprintf(stderr, "mua: account %s reads over POP3, which has only INBOX\n",
				a->name);
			return EX_DATAERR;
		}
		return script_pop3_read(loop, a, n);
	}
	struct script_conn sc = {0};
	imapc *cl = script_imap_open(loop, a, &sc);
	if (cl == NULL) {
		free(sc.message);
		return EX_UNAVAILABLE;
	}
	int rc = EX_OK;
	char *wire = mutf7_encode(folder);
	char *quoted = imapc_quote(wire);
	free(wire);
	char *cmd = xasprintf("SELECT %s", quoted);
	char *text = NULL;
	struct read_result rr = {0};
	if (script_imap_run(loop, cl, cmd, NULL, 0, NULL, NULL, &text) != IMAPC_OK) {
		fprintf(stderr, "mua: cannot open %s: %s\n", folder, text);
		rc = EX_DATAERR;
	} else if (n > sc.exists) {
		fprintf(stderr, "mua: no message %lu in %s (%u messages)\n", n, folder, sc.exists);
		rc = EX_DATAERR;
	} else {
		free(text);
		text = NULL;
		char *fetch = xasprintf("FETCH %lu (BODY[])", n);
		enum imapc_result r = script_imap_run(loop, cl, fetch, NULL, 0, script_read_fetch,
						      &rr, &text);
		free(fetch);
		if (r != IMAPC_OK || rr.raw == NULL) {
			fprintf(stderr, "mua: cannot fetch message %lu: %s\n", n,
				text != NULL ? text : "no data");
			rc = EX_UNAVAILABLE;
		} else {
			struct msgview *v = msgview_new(rr.raw, rr.len);
			fputs(v->text, stdout);
			msgview_free(&v);
		}
	}
	free(rr.raw);
	free(text);
	free(cmd);
	free(quoted);
	script_imap_close(loop, &cl, &sc);
	return rc;
}
