/* ui_pop3.c: the screens over an account that reads with POP3.
 *
 * POP3 has one folder and no flags, so the index comes from a pop3box (UIDL
 * keyed, headers read with TOP once and cached on disk with the flags the
 * user sets), the pager reads with RETR, and expunge is DELE then QUIT.
 * POP3 shows the maildrop as it was at login, so new mail is found by
 * polling: every poll_interval seconds (or on G) the client QUITs and logs
 * in again, and a refresh that finds unknown UIDLs gives the same "New mail"
 * notice as IMAP IDLE.
 *
 * States of the session (ui->pop3_phase, changed only by ui_pop3_enter):
 *   IDLE       connected, nothing of ours under way (or offline)
 *   REFRESH    UIDL/LIST/TOP running
 *   CYCLE      QUIT sent to poll or to commit DELE; reconnect when it closes
 * Invariant: ui->msgs[i] mirrors entry i + 1 of ui->box after each refresh. */
#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "log.h"
#include "ui.h"

#define UI_POP3_DEFAULT_POLL_S 60

static const char *const ui_pop3_phase_names[] = {
	[POP3_PHASE_IDLE] = "idle", [POP3_PHASE_REFRESH] = "refresh",
	[POP3_PHASE_CYCLE] = "cycle",
};

/* Changes the session phase (logged). */
static void ui_pop3_enter(struct ui *ui, enum ui_pop3_phase phase)
{
	if (ui->pop3_phase != phase)
		log_debug(0, "mua: pop3 %s -> %s", ui_pop3_phase_names[ui->pop3_phase],
			  ui_pop3_phase_names[phase]);
	ui->pop3_phase = phase;
}

/* True when the account reads over POP3. */
bool ui_is_pop3(const struct ui *ui)
{
	return ui->account->read_pop3;
}

/* True when commands can go out now. */
static bool ui_pop3_ready(const struct ui *ui)
{
	return ui->pc != NULL && pop3c_get_state(ui->pc) == IMAPC_READY;
}

/* Copies the mailbox into the index rows, keeping the cursor on its message. */
static void ui_pop3_rebuild(struct ui *ui)
{
	char *keep = NULL;
	uint32_t cursor_seq = ui_row_seq(ui, ui->cursor);
	const struct pop3_entry *ce = cursor_seq != 0 ? pop3box_entry(ui->box, cursor_seq) : NULL;
	if (ce != NULL && ui->box_rows > 0)
		keep = xstrdup(ce->uidl);
	bool first = ui->box_rows == 0 && !ui->selected;
	ui_index_reset(ui);
	uint32_t count = (uint32_t)pop3box_count(ui->box);
	ui_on_exists(ui, count);
	for (uint32_t n = 1; n <= count; n++) {
		const struct pop3_entry *e = pop3box_entry(ui->box, n);
		struct ui_msg *m = ui_msg_at(ui, n);
		m->have = e->have_headers;
		m->flags = e->flags;
		m->time = e->time;
		m->size = e->size;
		m->attachment = e->attachment;
		m->from = xstrdup(e->from != NULL ? e->from : "");
		m->subject = xstrdup(e->subject != NULL ? e->subject : "");
		m->have_thread = e->have_headers;
		m->message_id = e->message_id != NULL && e->message_id[0] != '\0' ?
				xstrdup(e->message_id) : NULL;
		m->in_reply_to = e->in_reply_to != NULL && e->in_reply_to[0] != '\0' ?
				 xstrdup(e->in_reply_to) : NULL;
		m->references = e->references != NULL && e->references[0] != '\0' ?
				xstrdup(e->references) : NULL;
		m->thread_subject = xstrdup(m->subject);
		m->thread_time = e->time;
		if (e->from_addr != NULL)
			ui_remember_address(ui, e->from_addr);
	}
	ui->box_rows = count;
	ui->selected = true;
	ui->selecting = false;
	if (ui->sort != MUA_SORT_ARRIVAL && count > 0)
		ui_thread_compute(ui);
	size_t rows = ui_row_count(ui);
	ui->cursor = rows > 0 ? rows - 1 : 0;
	for (uint32_t n = 1; keep != NULL && n <= count; n++)
		if (strcmp(pop3box_entry(ui->box, n)->uidl, keep) == 0) {
			for (size_t r = 0; r < rows; r++)
				if (ui_row_seq(ui, r) == n)
					ui->cursor = r;
			break;
		}
	(void)first;
	free(keep);
	ui->dirty = true;
}

/* A batch of headers is in: show what is known so far. */
static void ui_pop3_progress(void *arg, bool ok, const char *err, size_t new_count)
{
	struct ui *ui = arg;
	ui_pop3_rebuild(ui);
	ui_status(ui, "Reading headers...");
}

/* The refresh finished. */
static void ui_pop3_refresh_done(void *arg, bool ok, const char *err, size_t new_count)
{
	struct ui *ui = arg;
	ui_pop3_enter(ui, POP3_PHASE_IDLE);
	if (!ok) {
		ui_status(ui, "Cannot read the maildrop: %s", err != NULL ? err : "error");
		return;
	}
	bool had = ui->pop3_loaded;
	ui_pop3_rebuild(ui);
	ui->pop3_loaded = true;
	if (ui->pop3_deleted > 0) {
		ui_status(ui, "%zu message%s deleted.", ui->pop3_deleted,
			  ui->pop3_deleted == 1 ? "" : "s");
		ui->pop3_deleted = 0;
	} else if (had && new_count > 0) {
		ui_status(ui, "New mail in %s.", ui->folder);
		beep();
	} else if (ui->status[0] == '\0' || strncmp(ui->status, "Reading headers", 15) == 0) {
		ui_status(ui, "%zu messages in %s.", pop3box_count(ui->box), ui->folder);
	}
}

/* Logged in: read the maildrop. */
void ui_pop3_on_ready(struct ui *ui)
{
	if (ui->pop3_phase == POP3_PHASE_REFRESH)
		return;
	ui_pop3_enter(ui, POP3_PHASE_REFRESH);
	if (!ui->pop3_loaded)
		ui->selecting = true;
	pop3box_refresh(ui->box, ui->pc, ui_pop3_progress, ui_pop3_refresh_done, ui);
}

/* Connection states: a QUIT of ours is followed by a new login at once. */
bool ui_pop3_on_state(struct ui *ui, enum imapc_state state, const char *msg)
{
	if (ui->pop3_phase == POP3_PHASE_CYCLE) {
		if (state == IMAPC_DISCONNECTED && msg != NULL && strcmp(msg, "logged out") == 0) {
			ui->conn_state = state;
			pop3c_connect(ui->pc);
			return true;
		}
		if (state == IMAPC_READY) {
			ui_pop3_enter(ui, POP3_PHASE_IDLE);
			ui->conn_state = state;
			ui_pop3_on_ready(ui);
			return true;
		}
		if (state != IMAPC_DISCONNECTED) {
			/* Quietly through connecting, TLS and login. */
			ui->conn_state = state;
			return true;
		}
		ui_pop3_enter(ui, POP3_PHASE_IDLE);
	}
	if (state == IMAPC_DISCONNECTED && ui->pop3_phase == POP3_PHASE_REFRESH)
		ui_pop3_enter(ui, POP3_PHASE_IDLE);
	return false;
}

/* QUITs and logs in again (to see new mail, or to commit deletions). */
static void ui_pop3_cycle(struct ui *ui)
{
	ui_pop3_enter(ui, POP3_PHASE_CYCLE);
	pop3c_quit(ui->pc);
}

/* Polls for new mail when the session is quiet. */
void ui_pop3_poll(struct ui *ui, bool asked)
{
	if (!ui_pop3_ready(ui)) {
		if (asked)
			ui_status(ui, "Not connected.");
		return;
	}
	if (ui->pop3_phase != POP3_PHASE_IDLE || pop3c_pending(ui->pc) > 0 || ui->fetch_seq != 0) {
		if (asked)
			ui_status(ui, "Busy; try again in a moment.");
		return;
	}
	if (asked)
		ui_status(ui, "Checking for new mail...");
	ui_pop3_cycle(ui);
}

/* The poll timer. */
static void ui_pop3_poll_cb(uv_timer_t *t)
{
	ui_pop3_poll(t->data, false);
}

/* Starts the POP3 client for the current account. */
void ui_pop3_start(struct ui *ui, const struct imapc_events *ev)
{
	char *path = pop3box_cache_path(ui->account);
	ui->box = pop3box_new(path);
	free(path);
	ui->box_rows = 0;
	ui->pop3_loaded = false;
	ui->pop3_deleted = 0;
	ui_pop3_enter(ui, POP3_PHASE_IDLE);
	ui->pc = pop3c_new(ui->loop, ui->account, ev, ui);
	pop3c_set_reconnect(ui->pc, true);
	if (!ui->poll_timer_live) {
		uv_timer_init(ui->loop, &ui->poll_timer);
		ui->poll_timer.data = ui;
		ui->poll_timer_live = true;
	}
	uint64_t ms = (uint64_t)(ui->account->poll_seconds > 0 ? ui->account->poll_seconds :
				 UI_POP3_DEFAULT_POLL_S) * 1000;
	uv_timer_start(&ui->poll_timer, ui_pop3_poll_cb, ms, ms);
	pop3c_connect(ui->pc);
}

/* Stops polling (before the last QUIT). */
void ui_pop3_poll_stop(struct ui *ui)
{
	if (ui->poll_timer_live)
		uv_timer_stop(&ui->poll_timer);
	ui_pop3_enter(ui, POP3_PHASE_IDLE);
}

/* Stops the POP3 client (a polite QUIT first is the caller's business). */
void ui_pop3_stop(struct ui *ui)
{
	if (ui->poll_timer_live) {
		uv_timer_stop(&ui->poll_timer);
		uv_close((uv_handle_t *)&ui->poll_timer, NULL);
		ui->poll_timer_live = false;
	}
	pop3c_free(&ui->pc);
	if (ui->box != NULL) {
		char *err = NULL;
		if (pop3box_save(ui->box, &err) < 0)
			free(err);
	}
	pop3box_free(&ui->box);
	ui->box_rows = 0;
}

/* Saves the flags (a failure only costs them after a restart). */
static void ui_pop3_save(struct ui *ui)
{
	char *err = NULL;
	if (pop3box_save(ui->box, &err) < 0) {
		ui_status(ui, "%s", err);
		free(err);
	}
}

/* Sets or clears a flag on one message, kept in the cache. */
void ui_pop3_set_flag(struct ui *ui, uint32_t seq, unsigned flag, bool on)
{
	struct pop3_entry *e = ui->box != NULL && seq <= ui->box_rows ?
			       pop3box_entry(ui->box, seq) : NULL;
	struct ui_msg *m = ui_msg_at(ui, seq);
	if (e == NULL || m == NULL)
		return;
	if (on) {
		e->flags |= flag;
		m->flags |= flag;
	} else {
		e->flags &= ~flag;
		m->flags &= ~flag;
	}
	ui_pop3_save(ui);
	ui->dirty = true;
}

struct ui_pop3_retr {
	struct ui *ui;
	uint32_t seq;
	char *uidl;
	enum ui_action action;
};

/* RETR answered. */
static void ui_pop3_retr_done(void *arg, bool ok, const char *status, const char *data,
			      size_t len)
{
	struct ui_pop3_retr *r = arg;
	struct ui *ui = r->ui;
	ui->fetch_seq = 0;
	const struct pop3_entry *e = ui->box != NULL ? pop3box_entry(ui->box, r->seq) : NULL;
	if (!ok || data == NULL || e == NULL || strcmp(e->uidl, r->uidl) != 0) {
		if (strstr(status, "connection lost") == NULL)
			ui_status(ui, "Cannot fetch message %u: %s", r->seq, status);
	} else {
		struct msgview *v = msgview_new(data, len);
		msgview_free(&ui->view);
		ui->view = v;
		ui->view_seq = r->seq;
		ui->view_is_preview = false;
		ui->status[0] = '\0';
		if (r->action == ACT_OPEN) {
			ui_pop3_set_flag(ui, r->seq, UF_SEEN, true);
			ui_pager_show(ui, v, r->seq, false);
		} else {
			ui_compose_from_view(ui, r->action);
		}
	}
	free(r->uidl);
	free(r);
	ui->dirty = true;
}

/* Reads a message whole with RETR, then acts on it. */
void ui_pop3_fetch_message(struct ui *ui, uint32_t seq, enum ui_action action)
{
	if (!ui_pop3_ready(ui)) {
		ui_status(ui, "Not connected.");
		return;
	}
	const struct pop3_entry *e = seq <= ui->box_rows ? pop3box_entry(ui->box, seq) : NULL;
	if (e == NULL || ui->fetch_seq != 0)
		return;
	if (action == ACT_RESUME) {
		ui_status(ui, "Postponed messages need an IMAP account (Drafts).");
		return;
	}
	struct ui_pop3_retr *r = xcalloc(1, sizeof(*r));
	r->ui = ui;
	r->seq = seq;
	r->uidl = xstrdup(e->uidl);
	r->action = action;
	ui->fetch_seq = seq;
	ui_status(ui, "Fetching message %u...", seq);
	char *cmd = xasprintf("RETR %u", e->number);
	pop3c_command(ui->pc, cmd, true, ui_pop3_retr_done, r);
	free(cmd);
}

/* One DELE answered. */
static void ui_pop3_dele_done(void *arg, bool ok, const char *status, const char *data,
			      size_t len)
{
	struct ui *ui = arg;
	if (ok)
		ui->pop3_deleted++;
	else if (strstr(status, "connection lost") == NULL)
		ui_status(ui, "The server said: %s", status);
}

/* $: DELE every message marked deleted, then QUIT so that it takes effect. */
void ui_pop3_expunge(struct ui *ui)
{
	if (!ui_pop3_ready(ui) || ui->pop3_phase != POP3_PHASE_IDLE) {
		ui_status(ui, ui_pop3_ready(ui) ? "Busy; try again in a moment." : "Not connected.");
		return;
	}
	size_t count = 0;
	ui->pop3_deleted = 0;
	for (uint32_t n = 1; n <= ui->box_rows; n++) {
		const struct pop3_entry *e = pop3box_entry(ui->box, n);
		if (e == NULL || !(e->flags & MF_DELETED))
			continue;
		char *cmd = xasprintf("DELE %u", e->number);
		pop3c_command(ui->pc, cmd, false, ui_pop3_dele_done, ui);
		free(cmd);
		count++;
	}
	if (count == 0) {
		ui_status(ui, "No deleted messages.");
		return;
	}
	ui_status(ui, "Expunging deleted messages...");
	ui_pop3_cycle(ui);
}

/* True when haystack contains needle, ignoring ASCII case. */
static bool contains_nocase(const char *haystack, const char *needle)
{
	if (haystack == NULL)
		return false;
	size_t n = strlen(needle);
	for (const char *p = haystack; *p != '\0'; p++)
		if (strncasecmp(p, needle, n) == 0)
			return true;
	return n == 0;
}

/* Matches the index with a pattern locally (POP3 has no SEARCH): the hits go
 * to ui->search_hits. Terms are ANDed: ~f X, ~s X, ~N, ~O, ~F, ~D, ~A, or a
 * word matched against sender and subject. 0, or -1 and *err_r. */
int ui_pop3_search(struct ui *ui, const char *pattern, char **err_r)
{
	char *copy = xstrdup(pattern);
	struct term {
		char op;
		const char *arg;
	} terms[32];
	size_t nterms = 0;
	char *save = NULL;
	for (char *w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
		if (nterms == sizeof(terms) / sizeof(terms[0])) {
			*err_r = xstrdup("Too many search terms.");
			free(copy);
			return -1;
		}
		char op = w[0] == '~' && w[1] != '\0' && w[2] == '\0' ? w[1] : 'w';
		const char *arg = w;
		if (op == 'f' || op == 's' || op == 'b' || op == 't' || op == 'c') {
			arg = strtok_r(NULL, " ", &save);
			if (arg == NULL) {
				*err_r = xasprintf("~%c needs a word.", op);
				free(copy);
				return -1;
			}
		}
		if (strchr("fswNOFDA", op) == NULL) {
			*err_r = xasprintf("~%c needs an IMAP account (POP3 reads headers only).", op);
			free(copy);
			return -1;
		}
		terms[nterms++] = (struct term){op, arg};
	}
	ui->search_hit_count = 0;
	ui->search_hits = xrealloc(ui->search_hits, ((size_t)ui->exists + 1) *
				   sizeof(*ui->search_hits));
	for (uint32_t seq = 1; seq <= ui->exists; seq++) {
		const struct ui_msg *m = ui->msgs[seq - 1];
		const struct pop3_entry *e = pop3box_entry(ui->box, seq);
		if (m == NULL || e == NULL)
			continue;
		bool match = true;
		for (size_t i = 0; i < nterms && match; i++) {
			switch (terms[i].op) {
			case 'f':
				match = contains_nocase(e->from, terms[i].arg) ||
					contains_nocase(e->from_addr, terms[i].arg);
				break;
			case 's':
				match = contains_nocase(e->subject, terms[i].arg);
				break;
			case 'N':
				match = !(m->flags & UF_SEEN);
				break;
			case 'O':
				match = (m->flags & UF_SEEN) != 0;
				break;
			case 'F':
				match = (m->flags & UF_FLAGGED) != 0;
				break;
			case 'D':
				match = (m->flags & UF_DELETED) != 0;
				break;
			case 'A':
				break;
			default:
				match = contains_nocase(e->from, terms[i].arg) ||
					contains_nocase(e->from_addr, terms[i].arg) ||
					contains_nocase(e->subject, terms[i].arg);
				break;
			}
		}
		if (match)
			ui->search_hits[ui->search_hit_count++] = seq;
	}
	free(copy);
	return 0;
}
