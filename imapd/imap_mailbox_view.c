/* imap_mailbox_view.c: the selected mailbox as one session sees it, and
 * SELECT, EXAMINE, CLOSE, UNSELECT, CHECK.
 *
 * The view is the list of UIDs in sequence order (sequence number = index + 1).
 * Others change the folder at any time; the view follows them only in
 * imap_view_sync, at the points RFC 3501 7.4.1 allows: EXISTS/RECENT and
 * FETCH FLAGS after any command, EXPUNGE only after commands other than
 * FETCH, STORE and SEARCH by sequence number (and in IDLE). Until then an
 * expunged message stays in the view, so sequence numbers never shift under
 * the client.
 *
 * The UIDs are kept as runs of consecutive values (struct imap_uid_run): a
 * lookup by index or by UID is a binary search over the runs, an expunge
 * shortens or splits one run.
 *
 * Invariants: UIDs ascend strictly; runs are non-empty and ascending, and
 * run[i].start is the sum of the lengths before it; known_modseq and
 * expunge_modseq only grow;
 * a change with MODSEQ above known_modseq that was already reported (by this
 * sync or by this session's own STORE) is listed in `reported` so it is not
 * reported twice. */
#include <stdlib.h>
#include <string.h>

#include "imapd.h"
#include "log.h"

void imap_view_free(struct imap_view **vp)
{
	struct imap_view *v = *vp;
	if (v == NULL)
		return;
	free(v->folder);
	free(v->runs);
	free(v->recent_uids);
	free(v->reported);
	free(v);
	*vp = NULL;
}

/* The index of the first element >= uid in an ascending array. */
static size_t uid_lower_bound(const uint32_t *uids, size_t count, uint32_t uid)
{
	size_t lo = 0, hi = count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The run holding an index (< count). */
static size_t view_run_of_index(const struct imap_view *v, size_t index)
{
	size_t lo = 0, hi = v->run_count;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->runs[mid].start <= index)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The first run whose last UID is >= uid (run_count when none). */
static size_t view_run_of_uid(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->run_count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if ((uint64_t)v->runs[mid].first + v->runs[mid].len - 1 < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t imap_view_uid(const struct imap_view *v, size_t index)
{
	const struct imap_uid_run *r = &v->runs[view_run_of_index(v, index)];
	return r->first + (uint32_t)(index - r->start);
}

uint32_t imap_view_last_uid(const struct imap_view *v)
{
	if (v->run_count == 0)
		return 0;
	const struct imap_uid_run *r = &v->runs[v->run_count - 1];
	return r->first + r->len - 1;
}

/* The first index whose UID is >= uid (count when none). */
static size_t view_lower_bound(const struct imap_view *v, uint32_t uid)
{
	size_t r = view_run_of_uid(v, uid);
	if (r == v->run_count)
		return v->count;
	const struct imap_uid_run *run = &v->runs[r];
	return run->start + (uid > run->first ? uid - run->first : 0);
}

long imap_view_find_uid(const struct imap_view *v, uint32_t uid)
{
	size_t r = view_run_of_uid(v, uid);
	if (r == v->run_count || uid < v->runs[r].first)
		return -1;
	return (long)(v->runs[r].start + (uid - v->runs[r].first));
}

bool imap_view_is_recent(const struct imap_view *v, uint32_t uid)
{
	size_t i = uid_lower_bound(v->recent_uids, v->recent_len, uid);
	return i < v->recent_len && v->recent_uids[i] == uid;
}

/* Appends a UID (above every other) at the end of the view. */
static void view_push_uid(struct imap_view *v, uint32_t uid)
{
	if (v->run_count > 0) {
		struct imap_uid_run *last = &v->runs[v->run_count - 1];
		if ((uint64_t)last->first + last->len == uid) {
			last->len++;
			v->count++;
			return;
		}
	}
	if (v->run_count == v->run_cap) {
		v->run_cap = v->run_cap == 0 ? 4 : v->run_cap * 2;
		v->runs = xrealloc(v->runs, v->run_cap * sizeof(*v->runs));
	}
	v->runs[v->run_count++] = (struct imap_uid_run){.first = uid, .len = 1, .start = v->count};
	v->count++;
}

/* Removes the message at an index: its run shrinks, or splits in two. */
static void view_remove_index(struct imap_view *v, size_t index)
{
	size_t r = view_run_of_index(v, index);
	struct imap_uid_run *run = &v->runs[r];
	size_t off = index - run->start;
	if (run->len == 1) {
		memmove(run, run + 1, (v->run_count - r - 1) * sizeof(*run));
		v->run_count--;
	} else if (off == 0) {
		run->first++;
		run->len--;
		r++;
	} else if (off == run->len - 1) {
		run->len--;
		r++;
	} else {
		if (v->run_count == v->run_cap) {
			v->run_cap *= 2;
			v->runs = xrealloc(v->runs, v->run_cap * sizeof(*v->runs));
			run = &v->runs[r];
		}
		memmove(run + 2, run + 1, (v->run_count - r - 1) * sizeof(*run));
		v->run_count++;
		run[1] = (struct imap_uid_run){.first = run->first + (uint32_t)off + 1,
					       .len = run->len - (uint32_t)off - 1,
					       .start = run->start + off};
		run->len = (uint32_t)off;
		r += 2;
	}
	/* The runs after it start one index earlier. */
	for (size_t i = r; i < v->run_count; i++)
		v->runs[i].start--;
	v->count--;
}

/* Marks a UID as \Recent for this session; UIDs come in ascending order. */
static void view_add_recent(struct imap_view *v, uint32_t uid)
{
	v->recent_uids = xrealloc(v->recent_uids, (v->recent_len + 1) * sizeof(*v->recent_uids));
	v->recent_uids[v->recent_len++] = uid;
}

void imap_view_note_reported(struct imap_view *v, uint32_t uid, uint64_t modseq)
{
	if (modseq <= v->known_modseq)
		return;
	if (v->reported_count == v->reported_cap) {
		v->reported_cap = v->reported_cap == 0 ? 16 : v->reported_cap * 2;
		v->reported = xrealloc(v->reported, v->reported_cap * sizeof(*v->reported));
	}
	v->reported[v->reported_count].uid = uid;
	v->reported[v->reported_count].modseq = modseq;
	v->reported_count++;
}

/* Whether this change was already reported. */
static bool view_was_reported(const struct imap_view *v, uint32_t uid, uint64_t modseq)
{
	for (size_t i = 0; i < v->reported_count; i++) {
		if (v->reported[i].uid == uid && v->reported[i].modseq == modseq)
			return true;
	}
	return false;
}

/* Forgets reported changes at or below known_modseq. */
static void view_prune_reported(struct imap_view *v)
{
	size_t out = 0;
	for (size_t i = 0; i < v->reported_count; i++) {
		if (v->reported[i].modseq > v->known_modseq)
			v->reported[out++] = v->reported[i];
	}
	v->reported_count = out;
}

void imap_view_expunged(struct imap_session *s, uint32_t uid)
{
	struct imap_view *v = s->view;
	long idx = imap_view_find_uid(v, uid);
	if (idx < 0)
		return;
	imap_send(s, "* %ld EXPUNGE", idx + 1);
	view_remove_index(v, (size_t)idx);
	size_t r = uid_lower_bound(v->recent_uids, v->recent_len, uid);
	if (r < v->recent_len && v->recent_uids[r] == uid) {
		memmove(&v->recent_uids[r], &v->recent_uids[r + 1],
			(v->recent_len - r - 1) * sizeof(*v->recent_uids));
		v->recent_len--;
	}
}

void imap_view_sync(struct imap_session *s, bool allow_expunge)
{
	struct imap_view *v = s->view;
	store *st = s->ms->st;
	struct store_folder f;
	if (v == NULL || store_folder_get(st, v->folder, &f) < 0)
		return;
	uint64_t high = f.highestmodseq;
	store_folder_free(&f);
	bool expunges_due = allow_expunge && v->expunge_modseq < high;
	if (high <= v->known_modseq && !expunges_due)
		return;
	if (expunges_due) {
		uint32_t *gone = NULL;
		size_t gone_count = 0;
		if (store_expunged_since(st, v->folder, v->expunge_modseq, &gone, &gone_count) == 0) {
			for (size_t i = 0; i < gone_count; i++)
				imap_view_expunged(s, gone[i]);
			free(gone);
			v->expunge_modseq = high;
		}
	}
	if (high <= v->known_modseq)
		return;
	struct store_msg *list = NULL;
	size_t count = 0;
	if (store_msg_list_changed(st, v->folder, v->known_modseq, &list, &count) < 0)
		return;
	size_t old_count = v->count;
	bool claimed_recent = false;
	buf_t b = BUF_INIT;
	for (size_t i = 0; i < count; i++) {
		struct store_msg *m = &list[i];
		if (view_was_reported(v, m->uid, m->modseq))
			continue;
		long idx = imap_view_find_uid(v, m->uid);
		if (idx < 0 || (size_t)idx >= old_count) {
			if (idx < 0 && (v->count == 0 || m->uid > imap_view_last_uid(v))) {
				view_push_uid(v, m->uid);
				if (m->recent && !v->readonly) {
					view_add_recent(v, m->uid);
					claimed_recent = true;
				}
			}
		} else {
			buf_printf(&b, "* %ld FETCH (", idx + 1);
			if (s->cmd.uid)
				buf_printf(&b, "UID %u ", m->uid);
			buf_append_str(&b, "FLAGS ");
			imap_format_flags(&b, m->flags, m->keywords, imap_view_is_recent(v, m->uid));
			if (s->condstore)
				buf_printf(&b, " MODSEQ (%llu)", (unsigned long long)m->modseq);
			buf_append_str(&b, ")\r\n");
			if (b.len >= 64 * 1024) {
				imap_write_bulk(s, b.data, b.len);
				buf_reset(&b);
			}
		}
		if (m->modseq > high)
			imap_view_note_reported(v, m->uid, m->modseq);
	}
	if (b.len > 0)
		imap_write_bulk(s, b.data, b.len);
	buf_free(&b);
	store_msg_list_free(list, count);
	if (claimed_recent)
		(void)store_folder_clear_recent(st, v->folder);
	if (v->count != old_count) {
		imap_send(s, "* %zu EXISTS", v->count);
		imap_send(s, "* %zu RECENT", v->recent_len);
	}
	v->known_modseq = high;
	view_prune_reported(v);
}

void imap_view_changed(struct imap_session *s)
{
	if (s->input == IMAP_INPUT_IDLE && s->state == IMAP_STATE_SELECTED && s->view != NULL) {
		imap_view_sync(s, true);
		conn_flush(s->c);
	} else {
		s->idle_dirty = true;
	}
}

int imap_view_resolve(struct imap_view *v, const char *set_text, bool uid, size_t **idx_r,
		      size_t *count_r, char **err_r)
{
	struct imap_seqset set;
	*idx_r = NULL;
	*count_r = 0;
	if (set_text == NULL) {
		*err_r = xstrdup("Invalid sequence set");
		return -1;
	}
	if (imap_seqset_parse(set_text, &set, err_r) < 0)
		return -1;
	unsigned char *mark = xcalloc(v->count / 8 + 1, 1);
	uint32_t star = uid ? imap_view_last_uid(v) : (uint32_t)v->count;
	for (size_t r = 0; r < set.count; r++) {
		uint32_t lo, hi;
		imap_seqrange_resolve(&set.ranges[r], star, &lo, &hi);
		if (uid) {
			/* UID ranges may name UIDs that do not exist: they match nothing. */
			for (size_t i = view_lower_bound(v, lo); i < v->count && imap_view_uid(v, i) <= hi;
			     i++)
				mark[i / 8] |= (unsigned char)(1u << (i % 8));
			continue;
		}
		if (lo == 0 || hi > v->count) {
			free(mark);
			imap_seqset_free(&set);
			*err_r = xstrdup("Invalid message sequence number");
			return -1;
		}
		for (uint32_t n = lo; n <= hi; n++) {
			mark[(n - 1) / 8] |= (unsigned char)(1u << ((n - 1) % 8));
			if (n == UINT32_MAX)
				break;
		}
	}
	imap_seqset_free(&set);
	size_t n = 0;
	for (size_t i = 0; i < v->count; i++)
		n += (mark[i / 8] >> (i % 8)) & 1;
	size_t *idx = xmalloc((n + 1) * sizeof(*idx));
	n = 0;
	for (size_t i = 0; i < v->count; i++) {
		if ((mark[i / 8] >> (i % 8)) & 1)
			idx[n++] = i;
	}
	free(mark);
	*idx_r = idx;
	*count_r = n;
	return 0;
}

/* Messages whose indexes lie this close together are read as one UID range
 * (the few rows between cost less than another query). */
#define VIEW_RANGE_GAP 8

int imap_view_load_msgs(struct imap_session *s, const size_t *idx, size_t n,
			struct store_msg **list_r, size_t *count_r)
{
	struct imap_view *v = s->view;
	store_query *q = s->ms->query;
	*list_r = NULL;
	*count_r = 0;
	struct store_msg *list = NULL;
	size_t count = 0, cap = 0;
	/* Clusters of nearby indexes: 1:* is one range query, a scattered set
	 * of 1,000 messages is about 1,000 small ones, never the whole folder. */
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && idx[j + 1] - idx[j] <= VIEW_RANGE_GAP)
			j++;
		struct store_msg *part = NULL;
		size_t got = 0;
		int ret = store_query_msgs(q, v->folder, imap_view_uid(v, idx[i]),
					   imap_view_uid(v, idx[j]), &part, &got);
		if (ret < 0) {
			store_msg_list_free(list, count);
			return ret;
		}
		if (list == NULL) {
			list = part;
			count = cap = got;
		} else if (got > 0) {
			if (count + got > cap) {
				cap = (count + got) * 2;
				list = xrealloc(list, cap * sizeof(*list));
			}
			memcpy(list + count, part, got * sizeof(*part)); /* takes over the strings */
			count += got;
			free(part);
		}
		i = j + 1;
	}
	*list_r = list;
	*count_r = count;
	return 0;
}

/* Leaves the selected state (without expunging). */
static void view_deselect(struct imap_session *s)
{
	imap_view_free(&s->view);
	if (s->state == IMAP_STATE_SELECTED)
		imap_session_enter(s, IMAP_STATE_AUTHENTICATED);
}

/* SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2; CONDSTORE parameter, RFC 7162). */
static void view_select(struct imap_session *s, struct imap_cmd *cmd, bool readonly)
{
	if (cmd->count < 1 || cmd->count > 2 ||
	    (cmd->count == 2 && cmd->args[1].type != IMAP_ARG_LIST)) {
		imap_cmd_finish(s, cmd, "BAD", "%s takes a mailbox name", cmd->name);
		return;
	}
	if (cmd->count == 2) {
		const struct imap_arg *params = &cmd->args[1];
		for (size_t i = 0; i < params->count; i++) {
			if (!imap_arg_atom_is(&params->children[i], "CONDSTORE")) {
				imap_cmd_finish(s, cmd, "BAD", "Unknown %s parameter", cmd->name);
				return;
			}
			s->condstore = true;
		}
	}
	if (s->state == IMAP_STATE_SELECTED) {
		view_deselect(s);
		imap_send(s, "* OK [CLOSED] Previous mailbox closed");
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return;
	store *st = s->ms->st;
	struct store_folder f;
	int ret = store_folder_get(st, name, &f);
	if (ret < 0) {
		free(name);
		imap_cmd_store_error(s, cmd, ret, "Mailbox does not exist");
		return;
	}
	if (f.noselect) {
		store_folder_free(&f);
		free(name);
		imap_cmd_finish(s, cmd, "NO", "[CANNOT] Mailbox cannot be selected");
		return;
	}
	/* The sequence map from the UID index alone; no message row is read but
	 * the first unseen one. Messages newer than the folder's UIDNEXT as read
	 * above arrived meanwhile: the next sync reports them. */
	uint32_t *uids = NULL;
	size_t count = 0;
	uint32_t unseen_uid = 0;
	ret = store_uid_list(st, name, &uids, &count);
	if (ret == 0 && f.unseen > 0)
		ret = store_query_first_unseen(s->ms->query, name, &unseen_uid);
	if (ret < 0) {
		free(uids);
		store_folder_free(&f);
		free(name);
		imap_cmd_store_error(s, cmd, ret, "Cannot read the mailbox");
		return;
	}
	while (count > 0 && uids[count - 1] >= f.uidnext)
		count--;
	struct imap_view *v = xcalloc(1, sizeof(*v));
	v->folder = name;
	v->readonly = readonly;
	v->uidvalidity = f.uidvalidity;
	v->known_modseq = f.highestmodseq;
	v->expunge_modseq = f.highestmodseq;
	for (size_t i = 0; i < count; i++)
		view_push_uid(v, uids[i]);
	/* \Recent messages are the newest ones (those from the folder's first
	 * recent UID on), so they are the last f.recent of the map. */
	if (!readonly && f.recent > 0) {
		size_t n = f.recent < count ? f.recent : count;
		v->recent_uids = xmalloc(n * sizeof(*v->recent_uids));
		memcpy(v->recent_uids, uids + count - n, n * sizeof(*v->recent_uids));
		v->recent_len = n;
	}
	size_t first_unseen = 0;
	if (unseen_uid != 0) {
		long idx = imap_view_find_uid(v, unseen_uid);
		first_unseen = idx >= 0 ? (size_t)idx + 1 : 0;
	}
	free(uids);
	if (!readonly && v->recent_len > 0)
		(void)store_folder_clear_recent(st, name);
	s->view = v;
	imap_session_enter(s, IMAP_STATE_SELECTED);
	imap_send(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
	imap_send(s, "* OK [PERMANENTFLAGS (%s)] Flags permitted",
		  readonly ? "" : "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*");
	imap_send(s, "* %zu EXISTS", v->count);
	imap_send(s, "* %zu RECENT", v->recent_len);
	if (first_unseen > 0)
		imap_send(s, "* OK [UNSEEN %zu] First unseen", first_unseen);
	imap_send(s, "* OK [UIDVALIDITY %u] UIDs valid", f.uidvalidity);
	imap_send(s, "* OK [UIDNEXT %u] Predicted next UID", f.uidnext);
	imap_send(s, "* OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)f.highestmodseq);
	store_folder_free(&f);
	imap_cmd_finish(s, cmd, "OK", "[%s] %s completed", readonly ? "READ-ONLY" : "READ-WRITE",
			cmd->name);
}

void imap_cmd_select(struct imap_session *s, struct imap_cmd *cmd)
{
	view_select(s, cmd, false);
}

void imap_cmd_examine(struct imap_session *s, struct imap_cmd *cmd)
{
	view_select(s, cmd, true);
}

/* CLOSE (6.4.2): expunges \Deleted messages silently unless read-only. */
void imap_cmd_close(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "CLOSE takes no arguments");
		return;
	}
	struct imap_view *v = s->view;
	if (!v->readonly)
		(void)imap_store_expunge(s, NULL, 0, false);
	view_deselect(s);
	imap_cmd_finish(s, cmd, "OK", "CLOSE completed");
}

/* UNSELECT (RFC 3691): leaves the mailbox without expunging. */
void imap_cmd_unselect(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "UNSELECT takes no arguments");
		return;
	}
	view_deselect(s);
	imap_cmd_finish(s, cmd, "OK", "UNSELECT completed");
}

/* CHECK (6.4.1): every change is already durable; the reply carries updates. */
void imap_cmd_check(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "CHECK takes no arguments");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "CHECK completed");
}
