/* ui_index.c: the folder index and the folder list.
 *
 * The index shows one row per message (or per message matching the limit),
 * in one of three orders (ui->sort): arrival (sequence numbers), date (the
 * Date header, else INTERNALDATE; oldest first) or threads. Only rows on screen are fetched: drawing
 * notes which visible slots are empty and asks for exactly those
 * (FETCH set (UID FLAGS ENVELOPE RFC822.SIZE BODYSTRUCTURE)). Threading needs
 * every message's ids, and the date order every Date, so those header fields
 * (with INTERNALDATE) are fetched in batches of UI_THREAD_BATCH in the
 * background and the order is computed when the last batch is in; until then
 * the rows stay in arrival order and the status line says "sorting…".
 * Invariant: thread_rows is valid (in ui->sort's order) iff thread_count ==
 * exists; every change of sort or of the messages resets or recomputes it. Untagged EXISTS/EXPUNGE/FETCH keep the cache true to the
 * server whether they answer a command or arrive during IDLE. */
#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "header.h"
#include "mutf7.h"
#include "ui.h"

#define UI_THREAD_BATCH 1000

/* ---- the cache ---- */

/* Frees one cached message. */
static void ui_msg_free(struct ui_msg **mp)
{
	struct ui_msg *m = *mp;
	if (m == NULL)
		return;
	free(m->from);
	free(m->subject);
	free(m->message_id);
	free(m->in_reply_to);
	free(m->references);
	free(m->thread_subject);
	free(m);
	*mp = NULL;
}

/* Forgets threads, limit and search results. */
static void ui_views_reset(struct ui *ui)
{
	free(ui->thread_rows);
	free(ui->thread_depth);
	ui->thread_rows = NULL;
	ui->thread_depth = NULL;
	ui->thread_count = 0;
	free(ui->limit);
	ui->limit = NULL;
	ui->limit_count = 0;
	ui->limited = false;
	free(ui->search_hits);
	ui->search_hits = NULL;
	ui->search_hit_count = 0;
}

/* Empties the cache (a new folder or a new connection). */
void ui_index_reset(struct ui *ui)
{
	for (uint32_t i = 0; i < ui->exists; i++)
		ui_msg_free(&ui->msgs[i]);
	ui->exists = 0;
	ui->thread_next = 1;
	ui->thread_fetching = false;
	ui_views_reset(ui);
	ui->cursor = ui->top = 0;
}

/* Frees everything the index holds. */
void ui_index_free(struct ui *ui)
{
	ui_stash_free(ui);
	ui->uidvalidity = 0;
	ui_index_reset(ui);
	free(ui->msgs);
	ui->msgs = NULL;
	ui->msgs_cap = 0;
	for (size_t i = 0; i < ui->folder_count; i++) {
		free(ui->folders[i].name);
		free(ui->folders[i].display);
		free(ui->folders[i].special);
	}
	free(ui->folders);
	ui->folders = NULL;
	ui->folder_count = 0;
	free(ui->sent_folder);
	free(ui->drafts_folder);
	free(ui->trash_folder);
	ui->sent_folder = ui->drafts_folder = ui->trash_folder = NULL;
	free(ui->limit_pattern);
	free(ui->search_pattern);
	ui->limit_pattern = ui->search_pattern = NULL;
	free(ui->fetch_raw);
	ui->fetch_raw = NULL;
}

/* The slot for seq (made when empty), or NULL when out of range. */
struct ui_msg *ui_msg_at(struct ui *ui, uint32_t seq)
{
	if (seq == 0 || seq > ui->exists)
		return NULL;
	if (ui->msgs[seq - 1] == NULL)
		ui->msgs[seq - 1] = xcalloc(1, sizeof(struct ui_msg));
	return ui->msgs[seq - 1];
}

size_t ui_row_count(const struct ui *ui)
{
	return ui->limited ? ui->limit_count : ui->exists;
}

/* The sequence number on a row. */
uint32_t ui_row_seq(const struct ui *ui, size_t row)
{
	if (row >= ui_row_count(ui))
		return 0;
	if (ui->limited)
		return ui->limit[row];
	if (ui->sort != MUA_SORT_ARRIVAL && ui->thread_count == ui->exists)
		return (uint32_t)ui->thread_rows[row] + 1;
	return (uint32_t)row + 1;
}

/* The row showing seq (or the nearest), for keeping the cursor in place. */
static size_t ui_seq_row(const struct ui *ui, uint32_t seq)
{
	size_t n = ui_row_count(ui);
	for (size_t r = 0; r < n; r++)
		if (ui_row_seq(ui, r) == seq)
			return r;
	return n > 0 ? n - 1 : 0;
}

/* ---- threads ---- */

/* qsort has no context argument: each sequence number's position in the order. */
static const size_t *ui_limit_rank;

/* Orders limited rows by their position in the order. */
static int ui_limit_compare(const void *a, const void *b)
{
	size_t x = ui_limit_rank[*(const uint32_t *)a - 1], y = ui_limit_rank[*(const uint32_t *)b - 1];
	return x < y ? -1 : x > y;
}

/* Puts the limited rows in the index's order (arrival while the order waits). */
static void ui_limit_sort(struct ui *ui)
{
	if (!ui->limited || ui->limit_count == 0)
		return;
	size_t *rank = xmalloc(((size_t)ui->exists + 1) * sizeof(*rank));
	bool ordered = ui->sort != MUA_SORT_ARRIVAL && ui->thread_count == ui->exists;
	for (size_t r = 0; r < ui->exists; r++)
		rank[ordered ? ui->thread_rows[r] : r] = r;
	size_t n = 0;
	for (size_t i = 0; i < ui->limit_count; i++)
		if (ui->limit[i] >= 1 && ui->limit[i] <= ui->exists)
			ui->limit[n++] = ui->limit[i];
	ui->limit_count = n;
	ui_limit_rank = rank;
	qsort(ui->limit, n, sizeof(*ui->limit), ui_limit_compare);
	ui_limit_rank = NULL;
	free(rank);
}

/* The order for the status line (see ui.h). */
const char *ui_sort_label(const struct ui *ui)
{
	static const char *const sorting[MUA_SORT_COUNT] = {
		[MUA_SORT_THREADS] = "threads, sorting…",
		[MUA_SORT_DATE] = "date, sorting…",
		[MUA_SORT_ARRIVAL] = "arrival",
	};
	if (ui->sort != MUA_SORT_ARRIVAL && ui->thread_count != ui->exists && ui->sort < MUA_SORT_COUNT)
		return sorting[ui->sort];
	return mua_sort_name(ui->sort);
}

/* Computes the rows' order (threads or date) from the cached header fields. */
void ui_thread_compute(struct ui *ui)
{
	if (ui->sort == MUA_SORT_ARRIVAL)
		return;
	uint32_t keep = ui_row_seq(ui, ui->cursor);
	struct thread_input *in = xcalloc(ui->exists + 1, sizeof(*in));
	for (uint32_t i = 0; i < ui->exists; i++) {
		struct ui_msg *m = ui->msgs[i];
		if (m == NULL)
			continue;
		in[i].message_id = m->message_id;
		in[i].in_reply_to = m->in_reply_to;
		in[i].references = m->references;
		in[i].subject = m->thread_subject;
		in[i].date = m->thread_time;
		in[i].internal_date = m->internal_time;
		in[i].uid = m->uid;
	}
	free(ui->thread_rows);
	free(ui->thread_depth);
	if (ui->sort == MUA_SORT_THREADS) {
		thread_order(in, ui->exists, &ui->thread_rows, &ui->thread_depth);
	} else {
		thread_date_order(in, ui->exists, &ui->thread_rows);
		ui->thread_depth = xcalloc((size_t)ui->exists + 1, sizeof(*ui->thread_depth));
	}
	ui->thread_count = ui->exists;
	free(in);
	ui_limit_sort(ui);
	if (keep != 0)
		ui->cursor = ui_seq_row(ui, keep);
	ui->dirty = true;
}

static void ui_thread_fetch_next(struct ui *ui);

/* A batch of thread headers is in. */
static void ui_thread_batch_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	ui->thread_fetching = false;
	if (result == IMAPC_DROPPED)
		return;
	ui_thread_fetch_next(ui);
}

/* Asks for the next batch of thread headers, or threads when all are in. */
static void ui_thread_fetch_next(struct ui *ui)
{
	if (ui_is_pop3(ui)) {
		/* POP3 headers come with the index: thread at once. */
		if (ui->sort != MUA_SORT_ARRIVAL && ui->thread_count != ui->exists && ui->exists > 0)
			ui_thread_compute(ui);
		return;
	}
	if (ui->sort == MUA_SORT_ARRIVAL || ui->thread_fetching || !ui->selected || ui->cl == NULL)
		return;
	while (ui->thread_next <= ui->exists && ui->msgs[ui->thread_next - 1] != NULL &&
	       ui->msgs[ui->thread_next - 1]->have_thread)
		ui->thread_next++;
	if (ui->thread_next > ui->exists) {
		if (ui->thread_count != ui->exists)
			ui_thread_compute(ui);
		return;
	}
	uint32_t end = ui->thread_next + UI_THREAD_BATCH - 1;
	if (end > ui->exists)
		end = ui->exists;
	char *cmd = xasprintf("FETCH %u:%u (UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID "
			      "IN-REPLY-TO REFERENCES SUBJECT DATE)])", ui->thread_next, end);
	ui->thread_next = end + 1;
	ui->thread_fetching = true;
	if (ui->exists > UI_THREAD_BATCH)
		ui_status(ui, "Sorting... %u/%u", end, ui->exists);
	imapc_command(ui->cl, cmd, NULL, 0, NULL, ui_thread_batch_done, ui);
	free(cmd);
}

/* ---- untagged data ---- */

/* Keeps a header field's value (or NULL). */
static char *ui_field(const struct header *h, const char *name)
{
	const char *v = header_get(h, name);
	return v != NULL ? xstrdup(v) : NULL;
}

/* FETCH data: whatever items it carries update the cache. */
void ui_on_fetch(void *arg, uint32_t seq, const struct imap_arg *list)
{
	struct ui *ui = arg;
	struct ui_msg *m = ui_msg_at(ui, seq);
	if (m == NULL)
		return;
	const struct imap_arg *a;
	if ((a = mua_fetch_item(list, "UID")) != NULL && imap_arg_string(a) != NULL)
		m->uid = (uint32_t)strtoul(imap_arg_string(a), NULL, 10);
	if ((a = mua_fetch_item(list, "FLAGS")) != NULL && a->type == IMAP_ARG_LIST) {
		static const struct {
			const char *name;
			unsigned bit;
		} names[] = {{"\\Seen", UF_SEEN},       {"\\Answered", UF_ANSWERED},
			     {"\\Flagged", UF_FLAGGED}, {"\\Deleted", UF_DELETED},
			     {"\\Draft", UF_DRAFT}};
		m->flags = 0;
		for (size_t i = 0; i < a->count; i++)
			for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
				if (imap_arg_atom_is(&a->children[i], names[k].name))
					m->flags |= names[k].bit;
	}
	if ((a = mua_fetch_item(list, "ENVELOPE")) != NULL) {
		struct mua_envelope env;
		mua_envelope_parse(a, &env);
		free(m->from);
		free(m->subject);
		m->from = xstrdup(env.from);
		m->subject = xstrdup(env.subject);
		m->time = env.time;
		ui_remember_address(ui, env.from_addr);
		mua_envelope_free(&env);
		m->have = true;
		m->pending = false;
	}
	if ((a = mua_fetch_item(list, "INTERNALDATE")) != NULL && imap_arg_string(a) != NULL)
		m->internal_time = thread_internaldate_value(imap_arg_string(a));
	if ((a = mua_fetch_item(list, "RFC822.SIZE")) != NULL && imap_arg_string(a) != NULL)
		m->size = (uint32_t)strtoul(imap_arg_string(a), NULL, 10);
	if ((a = mua_fetch_item(list, "BODYSTRUCTURE")) != NULL)
		m->attachment = mua_bodystructure_has_attachment(a);
	if ((a = mua_fetch_item(list, "BODY[HEADER.FIELDS")) != NULL &&
	    imap_arg_string(a) != NULL) {
		struct header h;
		header_parse(a->data, a->len, &h);
		free(m->message_id);
		free(m->in_reply_to);
		free(m->references);
		free(m->thread_subject);
		m->message_id = ui_field(&h, "Message-ID");
		if (m->message_id != NULL) {
			/* Only the <id> itself: the thread code matches exact bytes. */
			char *lt = strchr(m->message_id, '<'), *gt = lt != NULL ? strchr(lt, '>') : NULL;
			if (gt != NULL) {
				char *id = xstrndup(lt, (size_t)(gt - lt + 1));
				free(m->message_id);
				m->message_id = id;
			}
		}
		m->in_reply_to = ui_field(&h, "In-Reply-To");
		m->references = ui_field(&h, "References");
		const char *subj = header_get(&h, "Subject");
		m->thread_subject = subj != NULL ? header_decode_words(subj) : xstrdup("");
		m->thread_time = thread_date_value(header_get(&h, "Date"));
		header_free(&h);
		m->have_thread = true;
	}
	if ((a = mua_fetch_item(list, "BODY[]")) != NULL && imap_arg_string(a) != NULL &&
	    seq == ui->fetch_seq && ui->fetch_raw == NULL) {
		ui->fetch_raw = xmalloc(a->len + 1);
		memcpy(ui->fetch_raw, a->data, a->len);
		ui->fetch_raw[a->len] = '\0';
		ui->fetch_len = a->len;
	}
	ui->dirty = true;
}

/* The folder grew (new mail) or was sized by SELECT. */
void ui_on_exists(void *arg, uint32_t count)
{
	struct ui *ui = arg;
	if (count > ui->msgs_cap) {
		size_t cap = ui->msgs_cap == 0 ? 64 : ui->msgs_cap;
		while (cap < count)
			cap *= 2;
		ui->msgs = xrealloc(ui->msgs, cap * sizeof(*ui->msgs));
		memset(ui->msgs + ui->msgs_cap, 0, (cap - ui->msgs_cap) * sizeof(*ui->msgs));
		ui->msgs_cap = cap;
	}
	for (uint32_t i = count; i < ui->exists; i++)
		ui_msg_free(&ui->msgs[i]);
	uint32_t old = ui->exists;
	bool at_end = ui->cursor + 1 >= ui_row_count(ui);
	ui->exists = count;
	if (count > old && ui->selected && !ui->selecting) {
		char *shown = mutf7_display(ui->folder);
		ui_status(ui, "New mail in %s.", shown);
		free(shown);
		beep();
		if (!ui->limited && at_end && ui->screen == SCR_INDEX && ui->sort == MUA_SORT_ARRIVAL)
			ui->cursor = count - 1;
		ui_thread_fetch_next(ui);
	}
	ui->dirty = true;
}

/* A message went away: close the gap in every list. */
void ui_on_expunge(void *arg, uint32_t seq)
{
	struct ui *ui = arg;
	if (seq == 0 || seq > ui->exists)
		return;
	ui_msg_free(&ui->msgs[seq - 1]);
	memmove(ui->msgs + seq - 1, ui->msgs + seq, (ui->exists - seq) * sizeof(*ui->msgs));
	ui->msgs[ui->exists - 1] = NULL;
	ui->exists--;
	if (ui->thread_next > seq)
		ui->thread_next--;
	if (ui->limited) {
		size_t n = 0;
		for (size_t i = 0; i < ui->limit_count; i++)
			if (ui->limit[i] != seq)
				ui->limit[n++] = ui->limit[i] > seq ? ui->limit[i] - 1 : ui->limit[i];
		ui->limit_count = n;
	}
	ui->search_hit_count = 0;
	if (ui->view_seq == seq)
		ui->view_seq = 0;
	else if (ui->view_seq > seq)
		ui->view_seq--;
	if (ui->sort != MUA_SORT_ARRIVAL && ui->thread_next > ui->exists && ui->exists > 0)
		ui_thread_compute(ui);
	else
		ui->thread_count = 0;
	size_t rows = ui_row_count(ui);
	if (ui->cursor >= rows)
		ui->cursor = rows > 0 ? rows - 1 : 0;
	ui->dirty = true;
}

/* ---- selecting a folder ---- */

static void ui_thread_fetch_next(struct ui *ui);

static int ui_msg_uid_compare(const void *a, const void *b)
{
	const struct ui_msg *x = *(const struct ui_msg *const *)a, *y = *(const struct ui_msg *const *)b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Keeps the cached messages of the folder aside (by UID) before it is selected again. */
static void ui_stash_cache(struct ui *ui)
{
	ui_stash_free(ui);
	ui->stash = xmalloc(((size_t)ui->exists + 1) * sizeof(*ui->stash));
	for (uint32_t i = 0; i < ui->exists; i++) {
		struct ui_msg *m = ui->msgs[i];
		if (m != NULL && m->uid != 0 && (m->have || m->have_thread)) {
			ui->stash[ui->stash_count++] = m;
			ui->msgs[i] = NULL;
		}
	}
	qsort(ui->stash, ui->stash_count, sizeof(*ui->stash), ui_msg_uid_compare);
	ui->stash_uidvalidity = ui->uidvalidity;
}

/* Forgets the stash. */
void ui_stash_free(struct ui *ui)
{
	for (size_t i = 0; i < ui->stash_count; i++)
		ui_msg_free(&ui->stash[i]);
	free(ui->stash);
	ui->stash = NULL;
	ui->stash_count = 0;
}

/* UID FLAGS of every message after a reselect: stashed messages go back in place. */
static void ui_restore_untagged(void *arg, const char *name, uint32_t number,
				const struct imap_arg *args, size_t count)
{
	struct ui *ui = arg;
	if (strcasecmp(name, "FETCH") != 0 || count < 1 || args[0].type != IMAP_ARG_LIST)
		return;
	const struct imap_arg *a = mua_fetch_item(&args[0], "UID");
	uint32_t uid = a != NULL && imap_arg_string(a) != NULL ?
		       (uint32_t)strtoul(imap_arg_string(a), NULL, 10) : 0;
	if (uid != 0 && number >= 1 && number <= ui->exists && ui->stash_count > 0) {
		struct ui_msg key = {.uid = uid}, *kp = &key;
		struct ui_msg **found = bsearch(&kp, ui->stash, ui->stash_count, sizeof(*ui->stash),
						ui_msg_uid_compare);
		if (found != NULL && *found != NULL) {
			ui_msg_free(&ui->msgs[number - 1]);
			ui->msgs[number - 1] = *found;
			(*found)->pending = false;
			/* A hole, so that the array stays sorted for the next searches. */
			*found = xcalloc(1, sizeof(struct ui_msg));
			(*found)->uid = uid;
		}
	}
	ui_on_fetch(ui, number, &args[0]);
}

/* The stash is back in place: fetch what is still missing. */
static void ui_restore_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	size_t kept = 0;
	for (uint32_t i = 0; i < ui->exists; i++)
		kept += ui->msgs[i] != NULL && ui->msgs[i]->have;
	mua_transcript_note("UIDVALIDITY %u unchanged: %zu cached messages kept", ui->uidvalidity,
			    kept);
	ui_stash_free(ui);
	ui->dirty = true;
	if (result == IMAPC_OK)
		ui_thread_fetch_next(ui);
}

/* SELECT finished. */
static void ui_select_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	ui->selecting = false;
	if (result != IMAPC_OK) {
		if (result != IMAPC_DROPPED)
			ui_status(ui, "Cannot open %s: %s", ui->folder, text);
		return;
	}
	ui->selected = true;
	size_t rows = ui_row_count(ui);
	ui->cursor = rows > 0 ? rows - 1 : 0;
	/* RFC 3501 2.3.1.1: UIDs stay valid only while UIDVALIDITY does. */
	uint32_t uidvalidity = imapc_uidvalidity(ui->cl);
	bool restore = ui->stash != NULL && uidvalidity != 0 &&
		       uidvalidity == ui->stash_uidvalidity && ui->exists > 0;
	if (ui->stash != NULL && !restore && ui->stash_uidvalidity != 0 && uidvalidity != 0 &&
	    uidvalidity != ui->stash_uidvalidity)
		ui_status(ui, "UIDVALIDITY of %s changed (%u -> %u): fetching it again.",
			  ui->folder, ui->stash_uidvalidity, uidvalidity);
	ui->uidvalidity = uidvalidity;
	if (restore) {
		imapc_command(ui->cl, "FETCH 1:* (UID FLAGS)", NULL, 0, ui_restore_untagged,
			      ui_restore_done, ui);
	} else {
		ui_stash_free(ui);
		ui_thread_fetch_next(ui);
	}
	ui->dirty = true;
}

/* Opens a folder (again). */
void ui_select_folder(struct ui *ui, const char *folder)
{
	if (folder != ui->folder && strcmp(folder, ui->folder) == 0)
		folder = ui->folder;
	if (folder == ui->folder && ui->uidvalidity != 0 && ui->stash == NULL) {
		/* The same folder again (a reconnect): keep what is cached, by UID. */
		ui_stash_cache(ui);
	} else if (folder != ui->folder) {
		ui_stash_free(ui);
		ui->uidvalidity = 0;
		free(ui->folder);
		ui->folder = xstrdup(folder);
	}
	ui_index_reset(ui);
	ui->selected = false;
	if (ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY) {
		ui_status(ui, "Not connected: %s will open when the connection is back.", folder);
		return;
	}
	ui->selecting = true;
	char *q = imapc_quote(folder);
	char *cmd = xasprintf("SELECT %s", q);
	imapc_command(ui->cl, cmd, NULL, 0, NULL, ui_select_done, ui);
	free(cmd);
	free(q);
	ui->dirty = true;
}

/* ---- folders ---- */

/* Orders folders: INBOX, the special-use ones, then by name. */
static int ui_folder_compare(const void *a, const void *b)
{
	const struct ui_folder *x = a, *y = b;
	int rx = strcasecmp(x->name, "INBOX") == 0 ? 0 : x->special != NULL ? 1 : 2;
	int ry = strcasecmp(y->name, "INBOX") == 0 ? 0 : y->special != NULL ? 1 : 2;
	if (rx != ry)
		return rx - ry;
	return strcmp(x->display, y->display);
}

/* The folder entry for name (made when absent). */
static struct ui_folder *ui_folder_get(struct ui *ui, const char *name)
{
	for (size_t i = 0; i < ui->folder_count; i++)
		if (strcmp(ui->folders[i].name, name) == 0)
			return &ui->folders[i];
	ui->folders = xrealloc(ui->folders, (ui->folder_count + 1) * sizeof(*ui->folders));
	struct ui_folder *f = &ui->folders[ui->folder_count++];
	memset(f, 0, sizeof(*f));
	f->name = xstrdup(name);
	f->display = mutf7_display(name);
	return f;
}

/* LIST and STATUS lines of the folder listing. */
static void ui_list_untagged(void *arg, const char *name, uint32_t number,
			     const struct imap_arg *args, size_t count)
{
	struct ui *ui = arg;
	if (strcasecmp(name, "LIST") == 0 && count >= 3 && args[0].type == IMAP_ARG_LIST) {
		const char *mailbox = imap_arg_string(&args[2]);
		if (mailbox == NULL)
			return;
		bool noselect = false;
		const char *special = NULL;
		static const char *const uses[] = {"\\Sent", "\\Drafts", "\\Trash", "\\Junk",
						   "\\Archive", "\\All", "\\Flagged"};
		for (size_t i = 0; i < args[0].count; i++) {
			noselect |= imap_arg_atom_is(&args[0].children[i], "\\Noselect") ||
				    imap_arg_atom_is(&args[0].children[i], "\\NonExistent");
			for (size_t k = 0; k < sizeof(uses) / sizeof(uses[0]); k++)
				if (imap_arg_atom_is(&args[0].children[i], uses[k]))
					special = uses[k];
		}
		if (noselect)
			return;
		struct ui_folder *f = ui_folder_get(ui, mailbox);
		free(f->special);
		f->special = special != NULL ? xstrdup(special) : NULL;
		char **slot = special == NULL ? NULL : strcmp(special, "\\Sent") == 0 ? &ui->sent_folder
			      : strcmp(special, "\\Drafts") == 0 ? &ui->drafts_folder
			      : strcmp(special, "\\Trash") == 0 ? &ui->trash_folder : NULL;
		if (slot != NULL && *slot == NULL)
			*slot = xstrdup(mailbox);
	} else if (strcasecmp(name, "STATUS") == 0 && count >= 2 &&
		   args[1].type == IMAP_ARG_LIST) {
		const char *mailbox = imap_arg_string(&args[0]);
		if (mailbox == NULL)
			return;
		struct ui_folder *f = ui_folder_get(ui, mailbox);
		for (size_t i = 0; i + 1 < args[1].count; i += 2) {
			const char *v = imap_arg_string(&args[1].children[i + 1]);
			uint32_t n = v != NULL ? (uint32_t)strtoul(v, NULL, 10) : 0;
			if (imap_arg_atom_is(&args[1].children[i], "MESSAGES"))
				f->total = n;
			else if (imap_arg_atom_is(&args[1].children[i], "UNSEEN"))
				f->unseen = n;
		}
	}
}

static bool ui_list_show;

/* The listing is complete. */
static void ui_list_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	if (result != IMAPC_OK) {
		if (result != IMAPC_DROPPED)
			ui_status(ui, "Cannot list folders: %s", text);
		return;
	}
	qsort(ui->folders, ui->folder_count, sizeof(*ui->folders), ui_folder_compare);
	if (ui->sent_folder == NULL)
		ui->sent_folder = xstrdup("Sent");
	if (ui->drafts_folder == NULL)
		ui->drafts_folder = xstrdup("Drafts");
	if (ui_list_show) {
		ui_list_show = false;
		if (ui->folder_cursor >= ui->folder_count)
			ui->folder_cursor = 0;
		ui_enter_screen(ui, SCR_FOLDERS);
	}
	ui->dirty = true;
}

/* Lists folders with counts (LIST-STATUS, RFC 5819); show = open the screen. */
void ui_list_folders(struct ui *ui, bool show)
{
	if (ui_is_pop3(ui)) {
		ui_status(ui, "POP3 reads one folder: INBOX.");
		return;
	}
	if (ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY) {
		ui_status(ui, "Not connected.");
		return;
	}
	for (size_t i = 0; i < ui->folder_count; i++) {
		free(ui->folders[i].name);
		free(ui->folders[i].display);
		free(ui->folders[i].special);
	}
	ui->folder_count = 0;
	ui_list_show = show;
	const char *cmd = imapc_has_capability(ui->cl, "LIST-STATUS") ?
			  "LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))" :
			  "LIST \"\" \"*\"";
	imapc_command(ui->cl, cmd, NULL, 0, ui_list_untagged, ui_list_done, ui);
}

/* Connected (again): learn the folders and open the current one. */
void ui_on_ready(struct ui *ui)
{
	if (ui_is_pop3(ui)) {
		ui_pop3_on_ready(ui);
		return;
	}
	ui_list_folders(ui, false);
	ui_select_folder(ui, ui->folder);
}

/* Draws the folder list. */
void ui_folders_draw(struct ui *ui, int rows)
{
	size_t top = ui->folder_cursor >= (size_t)rows ? ui->folder_cursor - (size_t)rows + 1 : 0;
	for (int r = 0; r < rows; r++) {
		size_t i = top + (size_t)r;
		if (i >= ui->folder_count) {
			ui_put(1 + r, 0, COLS, "", true);
			continue;
		}
		const struct ui_folder *f = &ui->folders[i];
		char line[512];
		/* The name padded to 30 columns (it may hold wide characters). */
		snprintf(line, sizeof(line), "%3zu %s ", i + 1,
			 strcmp(f->name, ui->folder) == 0 ? "*" : " ");
		if (i == ui->folder_cursor)
			attron(A_REVERSE);
		int used = ui_put(1 + r, 0, COLS, line, false);
		used += ui_put(1 + r, used, COLS - used > 30 ? 30 : COLS - used, f->display, true);
		snprintf(line, sizeof(line), " %6u msgs %6u new  %s", f->total, f->unseen,
			 f->special != NULL ? f->special + 1 : "");
		if (used < COLS)
			ui_put(1 + r, used, COLS - used, line, true);
		if (i == ui->folder_cursor)
			attroff(A_REVERSE);
	}
}

/* Keys of the folder list. */
bool ui_folders_key(struct ui *ui, int key)
{
	switch (key) {
	case 'j':
	case KEY_DOWN:
		if (ui->folder_cursor + 1 < ui->folder_count)
			ui->folder_cursor++;
		return true;
	case 'k':
	case KEY_UP:
		if (ui->folder_cursor > 0)
			ui->folder_cursor--;
		return true;
	case '\r':
	case '\n':
	case KEY_ENTER:
		if (ui->folder_cursor < ui->folder_count) {
			ui_enter_screen(ui, SCR_INDEX);
			ui_select_folder(ui, ui->folders[ui->folder_cursor].name);
		}
		return true;
	case 'q':
	case 'x':
		ui_enter_screen(ui, SCR_INDEX);
		return true;
	default:
		return false;
	}
}

/* ---- drawing the index ---- */

/* "1.2K" style sizes. */
static void ui_format_size(uint32_t size, char *out, size_t cap)
{
	if (size < 1000)
		snprintf(out, cap, "%u", size);
	else if (size < 10 * 1024)
		snprintf(out, cap, "%.1fK", size / 1024.0);
	else if (size < 1024 * 1024)
		snprintf(out, cap, "%uK", (size + 512) / 1024);
	else
		snprintf(out, cap, "%.1fM", size / (1024.0 * 1024.0));
}

/* Appends "a:b" or "a" to a sequence set. */
static void seqset_add_range(buf_t *b, uint32_t first, uint32_t last)
{
	if (b->len > 0)
		buf_append_char(b, ',');
	if (first == last)
		buf_printf(b, "%u", first);
	else
		buf_printf(b, "%u:%u", first, last);
}

/* Fetches the envelopes of the visible rows not yet known. */
static void ui_index_fetch_visible(struct ui *ui, int rows)
{
	/* While a stash is being put back, its rows are not missing. */
	if (!ui->selected || ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY ||
	    ui->stash != NULL)
		return;
	uint32_t *want = xmalloc(((size_t)rows + 1) * sizeof(*want));
	size_t n = 0;
	for (int r = 0; r < rows; r++) {
		uint32_t seq = ui_row_seq(ui, ui->top + (size_t)r);
		if (seq == 0)
			break;
		struct ui_msg *m = ui_msg_at(ui, seq);
		if (!m->have && !m->pending) {
			m->pending = true;
			want[n++] = seq;
		}
	}
	if (n > 0) {
		/* Sorted into ranges: threaded rows come in any order. */
		for (size_t i = 1; i < n; i++)
			for (size_t j = i; j > 0 && want[j - 1] > want[j]; j--) {
				uint32_t t = want[j];
				want[j] = want[j - 1];
				want[j - 1] = t;
			}
		buf_t set = BUF_INIT;
		uint32_t first = want[0], last = want[0];
		for (size_t i = 1; i <= n; i++) {
			if (i < n && want[i] == last + 1) {
				last = want[i];
				continue;
			}
			seqset_add_range(&set, first, last);
			if (i < n)
				first = last = want[i];
		}
		char *cmd = xasprintf("FETCH %s (UID FLAGS ENVELOPE RFC822.SIZE BODYSTRUCTURE)",
				      buf_cstr(&set));
		imapc_command(ui->cl, cmd, NULL, 0, NULL, NULL, NULL);
		free(cmd);
		buf_free(&set);
	}
	free(want);
}

/* Draws the index rows. */
void ui_index_draw(struct ui *ui, int rows)
{
	size_t count = ui_row_count(ui);
	if (ui->cursor >= count)
		ui->cursor = count > 0 ? count - 1 : 0;
	if (ui->cursor < ui->top)
		ui->top = ui->cursor;
	if (ui->cursor >= ui->top + (size_t)rows)
		ui->top = ui->cursor - (size_t)rows + 1;
	ui_index_fetch_visible(ui, rows);
	if (count == 0 && ui->conn_state != IMAPC_READY && ui->conn_error[0] != '\0') {
		/* The whole reason (a certificate's fingerprint does not fit the status line). */
		ui_put_wrapped(1, rows, ui->conn_error);
		return;
	}
	if (count == 0) {
		ui_put(1, 0, COLS, ui->selecting ? "Opening folder..." :
			   ui->selected ? (ui->limited ? "No messages match the limit." :
					   "No messages in this folder.") : "", true);
		return;
	}
	bool threads = ui->sort == MUA_SORT_THREADS && !ui->limited && ui->thread_count == ui->exists;
	for (int r = 0; r < rows; r++) {
		size_t row = ui->top + (size_t)r;
		uint32_t seq = ui_row_seq(ui, row);
		if (seq == 0)
			break;
		struct ui_msg *m = ui_msg_at(ui, seq);
		char left[128], size[16], date[32];
		buf_t line = BUF_INIT;
		if (m->have) {
			char f1 = m->flags & UF_DELETED ? 'D' : !(m->flags & UF_SEEN) ? 'N' :
				  m->flags & UF_ANSWERED ? 'r' : ' ';
			ui_format_size(m->size, size, sizeof(size));
			mua_format_short_date(m->time, date, sizeof(date));
			snprintf(left, sizeof(left), "%5u %c%c%c %-6s ", seq, f1,
				 m->flags & UF_FLAGGED ? '!' : ' ', m->attachment ? 'A' : ' ', date);
			char sz[24];
			snprintf(sz, sizeof(sz), " (%5s) ", size);
			unsigned depth = threads ? ui->thread_depth[row] : 0;
			for (unsigned d = 1; d < depth && d < 20; d++)
				buf_append_str(&line, "  ");
			if (depth > 0)
				buf_append_str(&line, "└─>");
			buf_append_str(&line, m->subject);
			bool cursor = row == ui->cursor;
			if (cursor)
				attron(A_REVERSE);
			else if (!(m->flags & UF_SEEN))
				attron(A_BOLD);
			/* Redraw the whole row so the highlight covers it. */
			move(1 + r, 0);
			int x = ui_put(1 + r, 0, COLS, left, false);
			x += ui_put(1 + r, x, 18 < COLS - x ? 18 : COLS - x, m->from, true);
			x += ui_put(1 + r, x, COLS - x > 0 ? COLS - x : 0, sz, false);
			ui_put(1 + r, x, COLS - x > 0 ? COLS - x : 0, buf_cstr(&line), true);
			attroff(A_REVERSE | A_BOLD);
		} else {
			snprintf(left, sizeof(left), "%5u     ...", seq);
			if (row == ui->cursor)
				attron(A_REVERSE);
			ui_put(1 + r, 0, COLS, left, true);
			attroff(A_REVERSE);
		}
		buf_free(&line);
	}
}

/* ---- actions ---- */

/* The message whose body was asked for arrived (or not). */
static void ui_fetch_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	uint32_t seq = ui->fetch_seq;
	enum ui_action action = ui->fetch_action;
	ui->fetch_seq = 0;
	if (result != IMAPC_OK || ui->fetch_raw == NULL) {
		if (result != IMAPC_DROPPED)
			ui_status(ui, "Cannot fetch message %u: %s", seq, text);
		free(ui->fetch_raw);
		ui->fetch_raw = NULL;
		return;
	}
	struct msgview *v = msgview_new(ui->fetch_raw, ui->fetch_len);
	free(ui->fetch_raw);
	ui->fetch_raw = NULL;
	msgview_free(&ui->view);
	ui->view = v;
	ui->view_seq = seq;
	ui->view_is_preview = false;
	ui->status[0] = '\0';
	if (action == ACT_OPEN)
		ui_pager_show(ui, v, seq, false);
	else
		ui_compose_from_view(ui, action);
}

/* Fetches a message whole, then acts on it. */
void ui_fetch_message(struct ui *ui, uint32_t seq, enum ui_action action)
{
	if (seq == 0) {
		ui_status(ui, "No message.");
		return;
	}
	if (ui->view != NULL && ui->view_seq == seq && !ui->view_is_preview &&
	    (ui->screen == SCR_PAGER || ui->screen == SCR_ATTACH)) {
		if (action == ACT_OPEN)
			ui_pager_show(ui, ui->view, seq, false);
		else
			ui_compose_from_view(ui, action);
		return;
	}
	if (ui_is_pop3(ui)) {
		ui_pop3_fetch_message(ui, seq, action);
		return;
	}
	if (ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY) {
		ui_status(ui, "Not connected.");
		return;
	}
	if (ui->fetch_seq != 0)
		return;
	ui->fetch_seq = seq;
	ui->fetch_action = action;
	free(ui->fetch_raw);
	ui->fetch_raw = NULL;
	/* Opening reads the message (\Seen); replying and forwarding do not. */
	char *cmd = xasprintf("FETCH %u (%s)", seq, action == ACT_OPEN ? "BODY[]" : "BODY.PEEK[]");
	ui_status(ui, "Fetching message %u...", seq);
	imapc_command(ui->cl, cmd, NULL, 0, NULL, ui_fetch_done, ui);
	free(cmd);
}

/* Shows the result of a STORE/COPY/MOVE/EXPUNGE that failed. */
static void ui_command_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	if (result == IMAPC_NO || result == IMAPC_BAD)
		ui_status(ui, "The server said: %s", text);
}

/* Sets or clears a flag on one message (locally at once, then on the server). */
void ui_set_flag(struct ui *ui, uint32_t seq, unsigned flag, bool on)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {{UF_SEEN, "\\Seen"},       {UF_ANSWERED, "\\Answered"},
		     {UF_FLAGGED, "\\Flagged"}, {UF_DELETED, "\\Deleted"}};
	if (ui_is_pop3(ui)) {
		ui_pop3_set_flag(ui, seq, flag, on);
		return;
	}
	struct ui_msg *m = ui_msg_at(ui, seq);
	if (m == NULL || ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY) {
		ui_status(ui, "Not connected.");
		return;
	}
	const char *name = NULL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].bit == flag)
			name = names[i].name;
	if (on)
		m->flags |= flag;
	else
		m->flags &= ~flag;
	char *cmd = m->uid != 0 ? xasprintf("UID STORE %u %cFLAGS.SILENT (%s)", m->uid,
					    on ? '+' : '-', name)
				: xasprintf("STORE %u %cFLAGS.SILENT (%s)", seq, on ? '+' : '-', name);
	imapc_command(ui->cl, cmd, NULL, 0, NULL, ui_command_done, ui);
	free(cmd);
	ui->dirty = true;
}

static bool ui_copy_is_move;

/* The folder to move or copy to was typed. */
static void ui_copy_prompt_done(struct ui *ui, const char *text)
{
	if (text == NULL || text[0] == '\0')
		return;
	uint32_t seq = ui->screen == SCR_PAGER ? ui->view_seq : ui_row_seq(ui, ui->cursor);
	struct ui_msg *m = ui_msg_at(ui, seq);
	if (m == NULL || ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY) {
		ui_status(ui, "No message, or not connected.");
		return;
	}
	char *wire = mutf7_encode(text);
	char *q = imapc_quote(wire);
	free(wire);
	bool move = ui_copy_is_move && imapc_has_capability(ui->cl, "MOVE");
	char *cmd = m->uid != 0 ? xasprintf("UID %s %u %s", move ? "MOVE" : "COPY", m->uid, q)
				: xasprintf("%s %u %s", move ? "MOVE" : "COPY", seq, q);
	imapc_command(ui->cl, cmd, NULL, 0, NULL, ui_command_done, ui);
	if (ui_copy_is_move && !move)
		ui_set_flag(ui, seq, UF_DELETED, true);
	ui_status(ui, "%s to %s.", ui_copy_is_move ? "Moved" : "Copied", text);
	if (ui_copy_is_move && ui->screen == SCR_PAGER)
		ui_enter_screen(ui, SCR_INDEX);
	free(cmd);
	free(q);
}

/* Starts a move (s) or copy (C). */
void ui_copy_start(struct ui *ui, bool move)
{
	if (ui_is_pop3(ui)) {
		ui_status(ui, "POP3 has no other folders to %s to.", move ? "move" : "copy");
		return;
	}
	ui_copy_is_move = move;
	ui_prompt(ui, move ? "Move to folder: " : "Copy to folder: ", NULL, false,
		  ui_copy_prompt_done);
}

/* SEARCH results. */
static void ui_search_untagged(void *arg, const char *name, uint32_t number,
			       const struct imap_arg *args, size_t count)
{
	struct ui *ui = arg;
	if (strcasecmp(name, "SEARCH") != 0)
		return;
	ui->search_hits = xrealloc(ui->search_hits, (ui->search_hit_count + count + 1) *
				   sizeof(*ui->search_hits));
	for (size_t i = 0; i < count; i++) {
		const char *s = imap_arg_string(&args[i]);
		if (s != NULL)
			ui->search_hits[ui->search_hit_count++] = (uint32_t)strtoul(s, NULL, 10);
	}
}

/* True when seq is among the search hits. */
static bool ui_is_hit(const struct ui *ui, uint32_t seq)
{
	for (size_t i = 0; i < ui->search_hit_count; i++)
		if (ui->search_hits[i] == seq)
			return true;
	return false;
}

/* Moves the cursor to the next row that matched. */
static void ui_search_jump(struct ui *ui)
{
	size_t rows = ui_row_count(ui);
	for (size_t k = 1; k <= rows; k++) {
		size_t row = (ui->cursor + k) % rows;
		if (ui_is_hit(ui, ui_row_seq(ui, row))) {
			if (row <= ui->cursor)
				ui_status(ui, "Search wrapped to top.");
			ui->cursor = row;
			ui->dirty = true;
			return;
		}
	}
	ui_status(ui, "Not found.");
}

static bool ui_search_is_limit;

/* SEARCH finished: jump, or limit to the hits. */
static void ui_search_done(void *arg, enum imapc_result result, const char *text)
{
	struct ui *ui = arg;
	if (result != IMAPC_OK) {
		if (result != IMAPC_DROPPED)
			ui_status(ui, "Search failed: %s", text);
		return;
	}
	if (!ui_search_is_limit) {
		ui_search_jump(ui);
		return;
	}
	free(ui->limit);
	ui->limit = xmalloc((ui->search_hit_count + 1) * sizeof(*ui->limit));
	memcpy(ui->limit, ui->search_hits, ui->search_hit_count * sizeof(*ui->limit));
	ui->limit_count = ui->search_hit_count;
	ui->limited = true;
	ui_limit_sort(ui);
	ui->cursor = ui->limit_count > 0 ? ui->limit_count - 1 : 0;
	ui->top = 0;
	ui_status(ui, "%zu messages match.", ui->limit_count);
}

/* Runs a pattern as SEARCH. */
static void ui_search_run(struct ui *ui, const char *pattern, bool limit)
{
	char *keys = NULL, *err = NULL;
	if (ui_is_pop3(ui)) {
		if (ui_pop3_search(ui, pattern, &err) < 0) {
			ui_status(ui, "%s", err);
			free(err);
			return;
		}
		ui_search_is_limit = limit;
		ui_search_done(ui, IMAPC_OK, "");
		return;
	}
	if (mua_pattern_to_search(pattern, &keys, &err) < 0) {
		ui_status(ui, "%s", err);
		free(err);
		return;
	}
	if (ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY || !ui->selected) {
		ui_status(ui, "Not connected.");
		free(keys);
		return;
	}
	bool ascii = true;
	for (const char *p = keys; *p != '\0'; p++)
		ascii &= (unsigned char)*p < 0x80;
	char *cmd = xasprintf("SEARCH %s%s", ascii ? "" : "CHARSET UTF-8 ", keys);
	ui->search_hit_count = 0;
	ui_search_is_limit = limit;
	imapc_command(ui->cl, cmd, NULL, 0, ui_search_untagged, ui_search_done, ui);
	free(cmd);
	free(keys);
}

static void ui_search_prompt_done(struct ui *ui, const char *text)
{
	if (text == NULL || text[0] == '\0')
		return;
	free(ui->search_pattern);
	ui->search_pattern = xstrdup(text);
	ui_search_run(ui, text, false);
}

static void ui_limit_prompt_done(struct ui *ui, const char *text)
{
	if (text == NULL)
		return;
	uint32_t keep = ui_row_seq(ui, ui->cursor);
	if (text[0] == '\0' || strcmp(text, "all") == 0 || strcmp(text, "~A") == 0) {
		ui->limited = false;
		free(ui->limit_pattern);
		ui->limit_pattern = NULL;
		ui->cursor = keep != 0 ? ui_seq_row(ui, keep) : 0;
		ui_status(ui, "Showing all messages.");
		return;
	}
	free(ui->limit_pattern);
	ui->limit_pattern = xstrdup(text);
	ui_search_run(ui, text, true);
}

/* The confirmation of expunge. */
static void ui_expunge_answer(struct ui *ui, bool yes)
{
	if (yes && ui_is_pop3(ui)) {
		ui_pop3_expunge(ui);
		return;
	}
	if (!yes || ui->cl == NULL || imapc_get_state(ui->cl) != IMAPC_READY)
		return;
	imapc_command(ui->cl, "EXPUNGE", NULL, 0, NULL, ui_command_done, ui);
	ui_status(ui, "Expunging deleted messages...");
}

/* The answer to "Forward as attachment?". */
static void ui_forward_answer(struct ui *ui, bool yes)
{
	uint32_t seq = ui->screen == SCR_PAGER ? ui->view_seq : ui_row_seq(ui, ui->cursor);
	ui_fetch_message(ui, seq, yes ? ACT_FORWARD_ATTACH : ACT_FORWARD);
}

/* Asks how to forward (mutt's mime_forward=ask). */
void ui_forward_start(struct ui *ui)
{
	ui_question(ui, "Forward as attachment?", ui_forward_answer);
	/* The default answer is no: the question's Enter means yes, so say it. */
	snprintf(ui->prompt_label, sizeof(ui->prompt_label),
		 "Forward as attachment? (y/[n]): ");
}

/* Moves the cursor to the next message after a delete (mutt's resolve). */
static void ui_cursor_next(struct ui *ui)
{
	if (ui->cursor + 1 < ui_row_count(ui))
		ui->cursor++;
}

/* The order's transition: threads -> date -> arrival -> threads (logged).
 * The rows of the old order go; the new one is computed when its headers
 * are in, and the cursor stays on its message. */
static void ui_sort_next(struct ui *ui)
{
	static const enum mua_sort next[MUA_SORT_COUNT] = {
		[MUA_SORT_THREADS] = MUA_SORT_DATE,
		[MUA_SORT_DATE] = MUA_SORT_ARRIVAL,
		[MUA_SORT_ARRIVAL] = MUA_SORT_THREADS,
	};
	uint32_t keep = ui_row_seq(ui, ui->cursor);
	enum mua_sort from = ui->sort;
	ui->sort = next[from < MUA_SORT_COUNT ? from : MUA_SORT_ARRIVAL];
	mua_transcript_note("index order: %s -> %s", mua_sort_name(from), mua_sort_name(ui->sort));
	free(ui->thread_rows);
	free(ui->thread_depth);
	ui->thread_rows = NULL;
	ui->thread_depth = NULL;
	ui->thread_count = 0;
	ui_limit_sort(ui);
	ui_thread_fetch_next(ui);
	ui->cursor = keep != 0 ? ui_seq_row(ui, keep) : 0;
	if (ui->sort == MUA_SORT_ARRIVAL || ui->thread_count == ui->exists)
		ui_status(ui, "Sorted by %s.", mua_sort_name(ui->sort));
	else
		ui_status(ui, "Sorting by %s...", mua_sort_name(ui->sort));
	ui->dirty = true;
}

/* Keys of the index. */
bool ui_index_key(struct ui *ui, int key)
{
	size_t rows = ui_row_count(ui);
	size_t page = (size_t)ui_content_rows(ui);
	uint32_t seq = ui_row_seq(ui, ui->cursor);
	struct ui_msg *m = ui_msg_at(ui, seq);
	switch (key) {
	case 'j':
	case KEY_DOWN:
		if (ui->cursor + 1 < rows)
			ui->cursor++;
		else
			ui_status(ui, "You are on the last message.");
		return true;
	case 'k':
	case KEY_UP:
		if (ui->cursor > 0)
			ui->cursor--;
		else
			ui_status(ui, "You are on the first message.");
		return true;
	case KEY_NPAGE:
	case ' ':
		ui->cursor = ui->cursor + page < rows ? ui->cursor + page : rows > 0 ? rows - 1 : 0;
		ui->top = ui->top + page < rows ? ui->top + page : ui->top;
		return true;
	case KEY_PPAGE:
	case '-':
		ui->cursor = ui->cursor > page ? ui->cursor - page : 0;
		ui->top = ui->top > page ? ui->top - page : 0;
		return true;
	case KEY_HOME:
	case '=':
		ui->cursor = 0;
		return true;
	case KEY_END:
	case '*':
		ui->cursor = rows > 0 ? rows - 1 : 0;
		return true;
	case '\r':
	case '\n':
	case KEY_ENTER:
		ui_fetch_message(ui, seq, ACT_OPEN);
		return true;
	case 'q':
	case 'x':
		ui_quit(ui);
		return true;
	case 'm':
		ui_compose_new(ui);
		return true;
	case 'r':
		ui_fetch_message(ui, seq, ACT_REPLY);
		return true;
	case 'g':
		ui_fetch_message(ui, seq, ACT_GROUP_REPLY);
		return true;
	case 'f':
		if (seq != 0)
			ui_forward_start(ui);
		return true;
	case 'G':
		if (ui_is_pop3(ui))
			ui_pop3_poll(ui, true);
		else if (ui->cl != NULL && imapc_get_state(ui->cl) == IMAPC_READY)
			imapc_command(ui->cl, "NOOP", NULL, 0, NULL, ui_command_done, ui);
		else
			ui_status(ui, "Not connected.");
		return true;
	case 'R':
		if (ui_is_pop3(ui))
			ui_status(ui, "Postponed messages need an IMAP account (Drafts).");
		else if (ui->drafts_folder != NULL && strcmp(ui->folder, ui->drafts_folder) != 0) {
			ui_select_folder(ui, ui->drafts_folder);
			ui_status(ui, "Postponed messages: choose one and press R.");
		} else {
			ui_fetch_message(ui, seq, ACT_RESUME);
		}
		return true;
	case 'd':
	case 'u':
		if (m != NULL) {
			ui_set_flag(ui, seq, UF_DELETED, key == 'd');
			ui_cursor_next(ui);
		}
		return true;
	case 'F':
		if (m != NULL)
			ui_set_flag(ui, seq, UF_FLAGGED, !(m->flags & UF_FLAGGED));
		return true;
	case 'N':
		if (m != NULL)
			ui_set_flag(ui, seq, UF_SEEN, !(m->flags & UF_SEEN));
		return true;
	case '$':
		ui_question(ui, "Expunge deleted messages?", ui_expunge_answer);
		return true;
	case 's':
	case 'C':
		if (m != NULL)
			ui_copy_start(ui, key == 's');
		return true;
	case '/':
		ui_prompt(ui, "Search for: ", ui->search_pattern, false, ui_search_prompt_done);
		return true;
	case 'n':
		if (ui->search_hit_count > 0)
			ui_search_jump(ui);
		else
			ui_status(ui, "No search pattern.");
		return true;
	case 'l':
		ui_prompt(ui, "Limit to messages matching: ", ui->limit_pattern, false,
			  ui_limit_prompt_done);
		return true;
	case 'o':
		ui_sort_next(ui);
		return true;
	case 'c':
	case 'y':
		ui_list_folders(ui, true);
		return true;
	case 'A':
		ui_next_account(ui);
		return true;
	default:
		return false;
	}
}
