/* ui_compose.c: writing mail: new messages, replies, forwards, drafts.
 *
 * A draft goes through: the header prompts (To, Subject), the body in
 * $EDITOR (or the built-in editor when none is set), then the compose screen,
 * where fields can be changed, files attached, the message previewed, sent
 * (SMTP submission, then a copy APPENDed to Sent and the original marked
 * \Answered) or postponed (APPENDed to Drafts with \Draft). Typed fields are
 * only ever put into headers by compose_build, which strips CR/LF. */
#include <curses.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buffer.h"
#include "ui.h"

#define UI_EDIT_MAX (1024 * 1024)

/* Frees a draft's contents. */
void ui_draft_free(struct ui_draft *d)
{
	free(d->to);
	free(d->cc);
	free(d->bcc);
	free(d->subject);
	free(d->body);
	for (size_t i = 0; i < d->att_count; i++) {
		free(d->atts[i].filename);
		free(d->atts[i].content_type);
		free(d->atts[i].data);
	}
	free(d->atts);
	free(d->in_reply_to);
	free(d->references);
	free(d->reply_folder);
	memset(d, 0, sizeof(*d));
}

/* Replaces a string field of the draft. */
static void draft_set(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value != NULL ? value : "");
}

/* Starts a fresh draft. */
static void ui_draft_begin(struct ui *ui)
{
	ui_draft_free(&ui->draft);
	ui->draft_active = true;
	draft_set(&ui->draft.to, "");
	draft_set(&ui->draft.cc, "");
	draft_set(&ui->draft.bcc, "");
	draft_set(&ui->draft.subject, "");
	draft_set(&ui->draft.body, "");
	ui->compose_cursor = 0;
}

/* Drops the draft (sent, postponed, aborted or cancelled). */
static void ui_draft_drop(struct ui *ui)
{
	ui_draft_free(&ui->draft);
	ui->draft_active = false;
}

/* Reads a whole small file. */
static char *ui_slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	buf_t b = BUF_INIT;
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < UI_EDIT_MAX)
		buf_append(&b, chunk, n);
	fclose(f);
	return buf_steal(&b);
}

/* Edits the body: $EDITOR on a temporary file, or the built-in editor. */
static void ui_compose_edit_body(struct ui *ui)
{
	const char *tmpdir = getenv("TMPDIR");
	char *path = xasprintf("%s/mua-draft-XXXXXX", tmpdir != NULL && tmpdir[0] != '\0' ?
			       tmpdir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0) {
		ui_status(ui, "Cannot create a temporary file: %s", strerror(errno));
		free(path);
		ui_enter_screen(ui, SCR_COMPOSE);
		return;
	}
	size_t len = strlen(ui->draft.body);
	bool written = write(fd, ui->draft.body, len) == (ssize_t)len;
	close(fd);
	int rc = written ? ui_run_editor(ui, path) : -2;
	if (rc == -1) {
		/* No editor configured: the built-in one. */
		unlink(path);
		free(path);
		buf_reset(&ui->edit_text);
		buf_append_str(&ui->edit_text, ui->draft.body);
		ui_enter_screen(ui, SCR_EDIT);
		return;
	}
	if (rc == 0) {
		char *body = ui_slurp(path);
		if (body != NULL) {
			free(ui->draft.body);
			ui->draft.body = body;
		}
	}
	unlink(path);
	free(path);
	ui_enter_screen(ui, SCR_COMPOSE);
}

/* Checks a typed address list; returns true when usable (empty is usable). */
static bool ui_addresses_ok(struct ui *ui, const char *text)
{
	char **addrs = NULL, *header = NULL, *err = NULL;
	size_t count = 0;
	if (compose_parse_recipients(text, &addrs, &count, &header, &err) < 0) {
		ui_status(ui, "Bad address: %s", err);
		free(err);
		return false;
	}
	for (size_t i = 0; i < count; i++)
		ui_remember_address(ui, addrs[i]);
	compose_free_list(&addrs, count);
	free(header);
	return true;
}

/* A To: answer that cannot be used: asks again (saying what was wrong in the
 * prompt's label, since the prompt takes the bottom line) and returns true. */
static bool ui_to_retry(struct ui *ui, const char *text, ui_prompt_cb *again)
{
	if (text[0] != '\0' && ui_addresses_ok(ui, text))
		return false;
	char label[128];
	snprintf(label, sizeof(label), "%.90s  To: ", text[0] == '\0' ?
		 "No recipients were specified." : ui->status);
	ui_prompt(ui, label, text, true, again);
	return true;
}

static void ui_new_subject_done(struct ui *ui, const char *text)
{
	if (text == NULL) {
		ui_draft_drop(ui);
		return;
	}
	draft_set(&ui->draft.subject, text);
	ui_compose_edit_body(ui);
}

static void ui_new_to_done(struct ui *ui, const char *text)
{
	if (text == NULL) {
		ui_draft_drop(ui);
		return;
	}
	if (ui_to_retry(ui, text, ui_new_to_done))
		return;
	draft_set(&ui->draft.to, text);
	ui_prompt(ui, "Subject: ", ui->draft.subject, false, ui_new_subject_done);
}

/* m: a new message. */
void ui_compose_new(struct ui *ui)
{
	ui_draft_begin(ui);
	ui_prompt(ui, "To: ", NULL, true, ui_new_to_done);
}

/* Forward: the recipients are asked for, then the body is edited. */
static void ui_forward_to_done(struct ui *ui, const char *text)
{
	if (text == NULL) {
		ui_draft_drop(ui);
		return;
	}
	if (ui_to_retry(ui, text, ui_forward_to_done))
		return;
	draft_set(&ui->draft.to, text);
	ui_compose_edit_body(ui);
}

/* A file name for a forwarded message ("Subject.eml"). */
static char *ui_eml_name(const char *subject)
{
	buf_t b = BUF_INIT;
	for (const char *p = subject; *p != '\0' && b.len < 60; p++)
		buf_append_char(&b, *p == '/' || *p == '\\' || (unsigned char)*p < 0x20 ? '_' : *p);
	if (b.len == 0)
		buf_append_str(&b, "message");
	buf_append_str(&b, ".eml");
	return buf_steal(&b);
}

/* The sender's display name from a From value. */
static char *ui_display_name(const char *from)
{
	char **addrs = NULL, *header = NULL, *err = NULL;
	size_t count = 0;
	const char *lt = strchr(from, '<');
	if (lt != NULL && lt > from) {
		char *name = xstrndup(from, (size_t)(lt - from));
		char *clean = compose_header_clean(name);
		free(name);
		if (clean[0] == '"' && strlen(clean) > 1 && clean[strlen(clean) - 1] == '"') {
			memmove(clean, clean + 1, strlen(clean));
			clean[strlen(clean) - 1] = '\0';
		}
		return clean;
	}
	if (compose_parse_recipients(from, &addrs, &count, &header, &err) == 0 && count > 0) {
		char *spec = xstrdup(addrs[0]);
		compose_free_list(&addrs, count);
		free(header);
		return spec;
	}
	free(err);
	return compose_header_clean(from);
}

/* Reply, group reply, forward or resume from the message in ui->view. */
void ui_compose_from_view(struct ui *ui, enum ui_action action)
{
	struct msgview *v = ui->view;
	if (v == NULL)
		return;
	ui_draft_begin(ui);
	struct ui_draft *d = &ui->draft;
	struct ui_msg *m = ui_msg_at(ui, ui->view_seq);
	switch (action) {
	case ACT_REPLY:
	case ACT_GROUP_REPLY: {
		char *to = NULL, *cc = NULL;
		compose_reply_recipients(v->from_raw, v->reply_to_raw, v->to_raw, v->cc_raw,
					 ui->account->address, action == ACT_GROUP_REPLY, &to, &cc);
		free(d->to);
		free(d->cc);
		d->to = to;
		d->cc = cc;
		free(d->subject);
		d->subject = compose_reply_subject(v->subject);
		d->in_reply_to = v->message_id[0] != '\0' ? xstrdup(v->message_id) : NULL;
		d->references = compose_reply_references(v->references, v->in_reply_to,
							  v->message_id);
		char *name = ui_display_name(v->from);
		free(d->body);
		d->body = compose_quote_body(v->body_text, v->date, name);
		free(name);
		/* POP3 messages have no UID: their number in this session stands in. */
		d->reply_uid = ui_is_pop3(ui) ? ui->view_seq : m != NULL ? m->uid : 0;
		d->reply_folder = xstrdup(ui->folder);
		ui_compose_edit_body(ui);
		return;
	}
	case ACT_FORWARD:
	case ACT_FORWARD_ATTACH:
		free(d->subject);
		d->subject = compose_forward_subject(v->subject);
		free(d->body);
		if (action == ACT_FORWARD) {
			d->body = compose_forward_body(v->from, v->date, v->subject, v->to,
						       v->body_text);
		} else {
			d->body = xstrdup("");
			d->atts = xcalloc(1, sizeof(*d->atts));
			d->atts[0].filename = ui_eml_name(v->subject);
			d->atts[0].content_type = xstrdup("message/rfc822");
			d->atts[0].data = xmalloc(v->raw_len + 1);
			memcpy(d->atts[0].data, v->raw, v->raw_len);
			d->atts[0].len = v->raw_len;
			d->att_count = 1;
		}
		ui_prompt(ui, "To: ", NULL, true, ui_forward_to_done);
		return;
	case ACT_RESUME: {
		draft_set(&d->to, v->to);
		draft_set(&d->cc, v->cc);
		const char *bcc = NULL;
		struct header h;
		header_parse(v->raw, v->raw_len, &h);
		bcc = header_get(&h, "Bcc");
		draft_set(&d->bcc, bcc);
		header_free(&h);
		draft_set(&d->subject, v->subject);
		/* The text without the attachment lines the view adds. */
		buf_t body = BUF_INIT;
		const char *p = v->body_text;
		while (*p != '\0') {
			const char *eol = strchr(p, '\n');
			size_t len = eol != NULL ? (size_t)(eol - p + 1) : strlen(p);
			if (strncmp(p, "[-- Attachment #", 16) != 0)
				buf_append(&body, p, len);
			p += len;
		}
		while (body.len > 0 && body.data[body.len - 1] == '\n' && body.len > 1 &&
		       body.data[body.len - 2] == '\n')
			body.data[--body.len] = '\0';
		free(d->body);
		d->body = buf_steal(&body);
		if (v->in_reply_to[0] != '\0')
			d->in_reply_to = xstrdup(v->in_reply_to);
		if (v->references[0] != '\0')
			d->references = xstrdup(v->references);
		for (size_t i = 0; i < v->attachment_count; i++) {
			char *data = NULL;
			size_t len = 0;
			if (msgview_attachment_data(v, i, &data, &len) < 0)
				continue;
			d->atts = xrealloc(d->atts, (d->att_count + 1) * sizeof(*d->atts));
			struct compose_attachment *a = &d->atts[d->att_count++];
			a->filename = xstrdup(v->attachments[i].filename);
			a->content_type = xstrdup(v->attachments[i].content_type);
			a->data = data;
			a->len = len;
		}
		/* Recalling a draft takes it out of Drafts (as mutt does). */
		if (m != NULL && m->uid != 0 && ui->cl != NULL) {
			char *cmd = xasprintf("UID STORE %u +FLAGS.SILENT (\\Deleted)", m->uid);
			imapc_command(ui->cl, cmd, NULL, 0, NULL, NULL, NULL);
			free(cmd);
			if (imapc_has_capability(ui->cl, "UIDPLUS")) {
				cmd = xasprintf("UID EXPUNGE %u", m->uid);
				imapc_command(ui->cl, cmd, NULL, 0, NULL, NULL, NULL);
				free(cmd);
			}
		}
		ui_enter_screen(ui, SCR_COMPOSE);
		return;
	}
	default:
		return;
	}
}

/* Builds the draft into a message; NULL with a status message on error. */
static char *ui_draft_build(struct ui *ui, bool with_bcc, size_t *len_r, char ***rcpts_r,
			    size_t *rcpt_count_r)
{
	struct ui_draft *d = &ui->draft;
	char *from = mua_account_from(ui->account);
	char *bcc_header = NULL;
	if (with_bcc && d->bcc[0] != '\0') {
		char *clean = compose_header_clean(d->bcc);
		bcc_header = xasprintf("Bcc: %s\r\nUser-Agent: mailstack-mua/0.1\r\n", clean);
		free(clean);
	}
	struct compose_message m = {
		.from = from, .to = d->to, .cc = d->cc, .bcc = d->bcc, .subject = d->subject,
		.body = d->body, .in_reply_to = d->in_reply_to, .references = d->references,
		.attachments = d->atts, .attachment_count = d->att_count,
		.extra_headers = bcc_header != NULL ? bcc_header :
				 "User-Agent: mailstack-mua/0.1\r\n",
	};
	char *msg = NULL, *err = NULL;
	if (compose_build(&m, &msg, len_r, &err) < 0 ||
	    (rcpts_r != NULL && compose_envelope_recipients(&m, rcpts_r, rcpt_count_r, &err) < 0)) {
		ui_status(ui, "%s", err);
		free(err);
		free(msg);
		msg = NULL;
	}
	free(bcc_header);
	free(from);
	return msg;
}

struct ui_sent {
	struct ui *ui;
	char *message;
	size_t len;
	uint32_t reply_uid;
	char *reply_folder;
};

/* The Sent copy is stored (or not). */
static void ui_append_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	if (result == IMAPC_OK)
		return;
	ui_status(ui, "Sent, but the copy was not saved: %s", text);
}

/* Submission finished. */
static void ui_send_done(void *arg, bool ok, const char *message)
{
	struct ui_sent *s = arg;
	struct ui *ui = s->ui;
	ui->draft.sending = false;
	if (!ok) {
		ui_status(ui, "Sending failed: %s", message);
	} else {
		ui_status(ui, "Mail sent.");
		if (ui_is_pop3(ui)) {
			/* No Sent folder over POP3; the answered mark is kept locally. */
			if (s->reply_uid != 0)
				ui_pop3_set_flag(ui, s->reply_uid, UF_ANSWERED, true);
		} else if (ui->cl != NULL && imapc_get_state(ui->cl) == IMAPC_READY) {
			char *q = imapc_quote(ui->sent_folder != NULL ? ui->sent_folder : "Sent");
			char *cmd = xasprintf("APPEND %s (\\Seen)", q);
			imapc_command(ui->cl, cmd, s->message, s->len, NULL, ui_append_done, ui);
			free(cmd);
			free(q);
			if (s->reply_uid != 0 && s->reply_folder != NULL && ui->folder != NULL &&
			    strcmp(s->reply_folder, ui->folder) == 0) {
				cmd = xasprintf("UID STORE %u +FLAGS.SILENT (\\Answered)", s->reply_uid);
				imapc_command(ui->cl, cmd, NULL, 0, NULL, NULL, NULL);
				free(cmd);
				for (uint32_t i = 0; i < ui->exists; i++)
					if (ui->msgs[i] != NULL && ui->msgs[i]->uid == s->reply_uid)
						ui->msgs[i]->flags |= UF_ANSWERED;
			}
		} else {
			ui_status(ui, "Mail sent (not connected: no copy in Sent).");
		}
		if (ui->screen == SCR_COMPOSE) {
			ui_draft_drop(ui);
			ui_enter_screen(ui, SCR_INDEX);
		}
	}
	free(s->message);
	free(s->reply_folder);
	free(s);
	ui->dirty = true;
}

/* y: sends the draft. */
static void ui_compose_send(struct ui *ui)
{
	if (ui->draft.sending) {
		ui_status(ui, "Already sending...");
		return;
	}
	size_t len = 0, count = 0;
	char **rcpts = NULL;
	char *msg = ui_draft_build(ui, false, &len, &rcpts, &count);
	if (msg == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		ui_remember_address(ui, rcpts[i]);
	struct ui_sent *s = xcalloc(1, sizeof(*s));
	s->ui = ui;
	s->message = msg;
	s->len = len;
	s->reply_uid = ui->draft.reply_uid;
	s->reply_folder = ui->draft.reply_folder != NULL ? xstrdup(ui->draft.reply_folder) : NULL;
	ui->draft.sending = true;
	ui_status(ui, "Sending message...");
	smtpc_send(ui->loop, ui->account, ui->account->address, rcpts, count, msg, len,
		   ui_send_done, s);
	compose_free_list(&rcpts, count);
}

/* The postponed copy is stored (or not). */
static void ui_postpone_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	if (result == IMAPC_OK)
		ui_status(ui, "Message postponed.");
	else
		ui_status(ui, "Postponing failed: %s", text);
}

/* P: saves the draft to Drafts. */
static void ui_compose_postpone(struct ui *ui)
{
	if (ui_is_pop3(ui)) {
		ui_status(ui, "Postponing needs an IMAP account (Drafts).");
		return;
	}
	if (ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY) {
		ui_status(ui, "Not connected: cannot postpone.");
		return;
	}
	size_t len = 0;
	char *msg = ui_draft_build(ui, true, &len, NULL, NULL);
	if (msg == NULL)
		return;
	char *q = imapc_quote(ui->drafts_folder != NULL ? ui->drafts_folder : "Drafts");
	char *cmd = xasprintf("APPEND %s (\\Draft \\Seen)", q);
	imapc_command(ui->cl, cmd, msg, len, NULL, ui_postpone_done, ui);
	free(cmd);
	free(q);
	free(msg);
	ui_draft_drop(ui);
	ui_enter_screen(ui, SCR_INDEX);
}

/* v: shows the message as it would be sent. */
static void ui_compose_preview(struct ui *ui)
{
	size_t len = 0;
	char *msg = ui_draft_build(ui, false, &len, NULL, NULL);
	if (msg == NULL)
		return;
	struct msgview *v = msgview_new(msg, len);
	free(msg);
	ui_pager_show(ui, v, 0, true);
}

static void ui_field_to_done(struct ui *ui, const char *text)
{
	if (text != NULL && ui_addresses_ok(ui, text))
		draft_set(&ui->draft.to, text);
}
static void ui_field_cc_done(struct ui *ui, const char *text)
{
	if (text != NULL && ui_addresses_ok(ui, text))
		draft_set(&ui->draft.cc, text);
}
static void ui_field_bcc_done(struct ui *ui, const char *text)
{
	if (text != NULL && ui_addresses_ok(ui, text))
		draft_set(&ui->draft.bcc, text);
}
static void ui_field_subject_done(struct ui *ui, const char *text)
{
	if (text != NULL)
		draft_set(&ui->draft.subject, text);
}

/* a: attaches the file at the typed path. */
static void ui_attach_file_done(struct ui *ui, const char *text)
{
	if (text == NULL || text[0] == '\0')
		return;
	if (ui->draft.att_count >= COMPOSE_MAX_ATTACHMENTS) {
		ui_status(ui, "Too many attachments.");
		return;
	}
	char *path = text[0] == '~' && text[1] == '/' && getenv("HOME") != NULL ?
		     xasprintf("%s%s", getenv("HOME"), text + 1) : xstrdup(text);
	struct compose_attachment a;
	char *err = NULL;
	if (mua_load_attachment(path, &a, &err) < 0) {
		ui_status(ui, "%s", err);
		free(err);
	} else {
		ui->draft.atts = xrealloc(ui->draft.atts, (ui->draft.att_count + 1) *
					  sizeof(*ui->draft.atts));
		ui->draft.atts[ui->draft.att_count++] = a;
		ui_status(ui, "Attached %s (%s, %zu bytes).", a.filename, a.content_type, a.len);
	}
	free(path);
}

static void ui_abort_answer(struct ui *ui, bool yes)
{
	if (!yes)
		return;
	ui_draft_drop(ui);
	ui_status(ui, "Mail not sent.");
	ui_enter_screen(ui, SCR_INDEX);
}

/* Draws the compose screen. */
void ui_compose_draw(struct ui *ui, int rows)
{
	struct ui_draft *d = &ui->draft;
	char *from = mua_account_from(ui->account);
	const char *names[] = {"    From: ", "      To: ", "      Cc: ", "     Bcc: ", " Subject: "};
	const char *values[] = {from, d->to, d->cc, d->bcc, d->subject};
	int r = 0;
	for (size_t i = 0; i < 5 && r < rows; i++, r++) {
		attron(COLOR_PAIR(4) | A_BOLD);
		int used = ui_put(1 + r, 0, COLS, names[i], false);
		attroff(COLOR_PAIR(4) | A_BOLD);
		ui_put(1 + r, used, COLS - used, values[i] != NULL ? values[i] : "", true);
	}
	free(from);
	if (r < rows)
		ui_put(1 + r++, 0, COLS, "-- Attachments", true);
	char line[600];
	size_t body_len = d->body != NULL ? strlen(d->body) : 0;
	snprintf(line, sizeof(line), "- I   1 <message text>   [text/plain, utf-8, %zu bytes]",
		 body_len);
	if (r < rows)
		ui_put(1 + r++, 0, COLS, line, true);
	for (size_t i = 0; i < d->att_count && r < rows; i++, r++) {
		snprintf(line, sizeof(line), "  A %3zu %-20s [%s, %zu bytes]", i + 2,
			 d->atts[i].filename, d->atts[i].content_type, d->atts[i].len);
		ui_put(1 + r, 0, COLS, line, true);
	}
	if (r + 1 < rows) {
		r++;
		ui_put(1 + r++, 0, COLS, "Message text:", true);
	}
	/* The start of the text, so the writer sees what goes out. */
	const char *p = d->body != NULL ? d->body : "";
	while (r < rows && *p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		char *piece = xstrndup(p, len);
		if (piece[0] == '>')
			attron(COLOR_PAIR(1));
		ui_put(1 + r++, 2, COLS - 2, piece, true);
		attroff(COLOR_PAIR(1));
		free(piece);
		p += len + (eol != NULL);
	}
}

/* Keys of the compose screen. */
bool ui_compose_key(struct ui *ui, int key)
{
	struct ui_draft *d = &ui->draft;
	switch (key) {
	case 'y':
		ui_compose_send(ui);
		return true;
	case 't':
		ui_prompt(ui, "To: ", d->to, true, ui_field_to_done);
		return true;
	case 'c':
		ui_prompt(ui, "Cc: ", d->cc, true, ui_field_cc_done);
		return true;
	case 'b':
		ui_prompt(ui, "Bcc: ", d->bcc, true, ui_field_bcc_done);
		return true;
	case 's':
		ui_prompt(ui, "Subject: ", d->subject, false, ui_field_subject_done);
		return true;
	case 'e':
		ui_compose_edit_body(ui);
		return true;
	case 'a':
		ui_prompt(ui, "Attach file: ", NULL, false, ui_attach_file_done);
		return true;
	case 'D':
		if (d->att_count > 0) {
			d->att_count--;
			free(d->atts[d->att_count].filename);
			free(d->atts[d->att_count].content_type);
			free(d->atts[d->att_count].data);
			ui_status(ui, "Attachment removed.");
		}
		return true;
	case 'v':
		ui_compose_preview(ui);
		return true;
	case 'P':
		ui_compose_postpone(ui);
		return true;
	case 'q':
		ui_question(ui, "Abort this message?", ui_abort_answer);
		return true;
	default:
		return false;
	}
}

/* ---- the built-in editor (when $EDITOR is not set) ---- */

/* Draws the text being typed: its last lines, with a cursor at the end. */
void ui_edit_draw(struct ui *ui, int rows)
{
	const char *text = buf_cstr(&ui->edit_text);
	size_t lines = 1;
	for (const char *p = text; *p != '\0'; p++)
		lines += *p == '\n';
	size_t skip = lines > (size_t)rows ? lines - (size_t)rows : 0;
	const char *p = text;
	for (size_t i = 0; i < skip; i++)
		p = strchr(p, '\n') + 1;
	int r = 0, x = 0;
	while (r < rows) {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		char *piece = xstrndup(p, len);
		x = ui_put(1 + r, 0, COLS - 1, piece, true);
		free(piece);
		if (eol == NULL)
			break;
		p = eol + 1;
		r++;
	}
	move(1 + r, x < COLS - 1 ? x : COLS - 1);
}

/* Keys of the built-in editor. */
bool ui_edit_key(struct ui *ui, wint_t key, bool is_key_code)
{
	buf_t *b = &ui->edit_text;
	if (!is_key_code && (key == 24 || key == 4)) { /* ^X, ^D: done */
		free(ui->draft.body);
		ui->draft.body = buf_steal(b);
		ui_enter_screen(ui, SCR_COMPOSE);
		return true;
	}
	if (!is_key_code && key == 27) {
		buf_reset(b);
		ui_status(ui, "Edit cancelled; the text is unchanged.");
		ui_enter_screen(ui, SCR_COMPOSE);
		return true;
	}
	if ((is_key_code && key == KEY_BACKSPACE) || (!is_key_code && (key == 127 || key == 8))) {
		ui_buf_drop_last_char(b);
		return true;
	}
	if (is_key_code && key == KEY_ENTER)
		key = '\n';
	else if (is_key_code)
		return true;
	if (b->len >= UI_EDIT_MAX)
		return true;
	if (key == '\r' || key == '\n') {
		buf_append_char(b, '\n');
	} else if (key >= 0x20 || key == '\t') {
		ui_buf_append_wchar(b, key);
	}
	return true;
}
