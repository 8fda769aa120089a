/* imap_store.c: the commands that change messages of the selected mailbox:
 * STORE (RFC 3501 6.4.6, with UNCHANGEDSINCE of CONDSTORE, RFC 7162), COPY
 * (6.4.7, COPYUID of UIDPLUS, RFC 4315), MOVE (RFC 6851), EXPUNGE and UID
 * EXPUNGE (6.4.3, RFC 4315).
 *
 * STORE reads the rows of its messages once before (by UID, never the whole
 * folder), changes them all in one transaction (one sync), and reads them
 * once after for the responses; EXPUNGE reads only the \Deleted rows (or the
 * ones UID EXPUNGE names).
 *
 * Every flag change and every expunge is logged as a lifecycle event with
 * the message's lifecycle id. This session's own changes are reported by the
 * command itself and noted in the view, so the next sync does not repeat them. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd.h"
#include "log.h"

/* Refuses changes in a mailbox opened with EXAMINE. */
static bool store_check_writable(struct imap_session *s, struct imap_cmd *cmd)
{
	if (s->view->readonly) {
		imap_cmd_finish(s, cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return false;
	}
	return true;
}

/* Appends flags as text for a lifecycle event ("\Seen \Flagged kw"). */
static char *store_flags_text(uint32_t flags, const char *keywords)
{
	buf_t b = BUF_INIT;
	imap_format_flags(&b, flags, keywords, false);
	/* drop the parentheses */
	char *text = xstrndup(b.data + 1, b.len - 2);
	buf_free(&b);
	return text;
}

int imap_store_expunge(struct imap_session *s, const uint32_t *only, size_t only_count,
		       bool report)
{
	struct imap_view *v = s->view;
	struct store_msg *list = NULL;
	size_t count = 0;
	/* Only the rows named (UID EXPUNGE) or the \Deleted ones are read, never
	 * the whole folder. */
	int ret;
	if (only != NULL) {
		size_t *idx = xmalloc((only_count + 1) * sizeof(*idx));
		size_t n = 0;
		for (size_t i = 0; i < only_count; i++) {
			long at = imap_view_find_uid(v, only[i]);
			if (at >= 0)
				idx[n++] = (size_t)at;
		}
		ret = imap_view_load_msgs(s, idx, n, &list, &count);
		free(idx);
	} else {
		ret = store_query_msgs_flagged(s->ms->query, v->folder, STORE_FLAG_DELETED, &list,
					       &count);
	}
	if (ret < 0)
		return ret;
	uint32_t *uids = xmalloc((count + 1) * sizeof(*uids));
	size_t n = 0, k = 0;
	for (size_t i = 0; i < count; i++) {
		if (!(list[i].flags & STORE_FLAG_DELETED))
			continue;
		if (only != NULL) {
			while (k < only_count && only[k] < list[i].uid)
				k++;
			if (k == only_count || only[k] != list[i].uid)
				continue;
		}
		uids[n++] = list[i].uid;
	}
	uint32_t *removed = NULL;
	size_t removed_count = 0;
	ret = n == 0 ? 0 : store_expunge(s->ms->st, v->folder, uids, n, &removed, &removed_count);
	if (ret == 0) {
		for (size_t r = 0, i = 0; r < removed_count; r++) {
			while (i < count && list[i].uid < removed[r])
				i++;
			if (i < count && list[i].uid == removed[r] && list[i].lifecycle_id != NULL)
				log_event(list[i].lifecycle_id, "expunged", "user", s->user, "proto",
					  "imap", "folder", v->folder, NULL);
			if (report)
				imap_view_expunged(s, removed[r]);
		}
	}
	free(removed);
	free(uids);
	store_msg_list_free(list, count);
	return ret;
}

/* Reads "FLAGS", "+FLAGS.SILENT", ... into a mode and the silent bit. */
static int store_parse_item(const char *item, enum store_flag_mode *mode_r, bool *silent_r)
{
	*mode_r = STORE_FLAGS_SET;
	if (item[0] == '+') {
		*mode_r = STORE_FLAGS_ADD;
		item++;
	} else if (item[0] == '-') {
		*mode_r = STORE_FLAGS_REMOVE;
		item++;
	}
	if (strcasecmp(item, "FLAGS") == 0) {
		*silent_r = false;
		return 0;
	}
	if (strcasecmp(item, "FLAGS.SILENT") == 0) {
		*silent_r = true;
		return 0;
	}
	return -1;
}

void imap_cmd_store(struct imap_session *s, struct imap_cmd *cmd)
{
	struct imap_view *v = s->view;
	size_t a = 1;
	uint64_t unchangedsince = 0;
	if (cmd->count >= 2 && cmd->args[1].type == IMAP_ARG_LIST) {
		const struct imap_arg *mods = &cmd->args[1];
		if (mods->count != 2 || !imap_arg_atom_is(&mods->children[0], "UNCHANGEDSINCE") ||
		    mods->children[1].type != IMAP_ARG_ATOM) {
			imap_cmd_finish(s, cmd, "BAD", "Invalid STORE modifier");
			return;
		}
		char *end;
		unchangedsince = strtoull(mods->children[1].data, &end, 10);
		if (*end != '\0' || mods->children[1].data[0] == '-') {
			imap_cmd_finish(s, cmd, "BAD", "Invalid UNCHANGEDSINCE value");
			return;
		}
		s->condstore = true;
		a = 2;
	}
	enum store_flag_mode mode;
	bool silent;
	if (cmd->count != a + 2 || cmd->args[0].type != IMAP_ARG_ATOM ||
	    cmd->args[a].type != IMAP_ARG_ATOM ||
	    store_parse_item(cmd->args[a].data, &mode, &silent) < 0) {
		imap_cmd_finish(s, cmd, "BAD", "STORE takes a set, an item and flags");
		return;
	}
	uint32_t flags;
	char *keywords;
	if (imap_parse_flags(&cmd->args[a + 1], &flags, &keywords) < 0) {
		imap_cmd_finish(s, cmd, "BAD", "Invalid flags");
		return;
	}
	size_t *idx = NULL, n = 0;
	char *err = NULL;
	if (imap_view_resolve(v, cmd->args[0].data, cmd->uid, &idx, &n, &err) < 0) {
		free(keywords);
		imap_cmd_finish(s, cmd, "BAD", "%s", err);
		free(err);
		return;
	}
	if (!store_check_writable(s, cmd)) {
		free(keywords);
		free(idx);
		return;
	}
	/* The rows before, one read; the changes in one transaction (one sync);
	 * the rows after, one read. */
	struct store_msg *before = NULL, *after = NULL;
	size_t before_count = 0, after_count = 0;
	int ret = imap_view_load_msgs(s, idx, n, &before, &before_count);
	if (ret < 0) {
		free(keywords);
		free(idx);
		imap_cmd_store_error(s, cmd, ret, "Cannot change flags");
		return;
	}
	uint32_t *modified = xmalloc((n + 1) * sizeof(*modified));
	size_t modified_count = 0;
	bool *done = xcalloc(n + 1, sizeof(*done));
	int failure = store_begin(s->ms->st);
	for (size_t i = 0, b = 0; i < n && failure == 0; i++) {
		uint32_t uid = imap_view_uid(v, idx[i]);
		while (b < before_count && before[b].uid < uid)
			b++;
		if (b == before_count || before[b].uid != uid)
			continue; /* expunged by someone else meanwhile */
		uint64_t modseq = 0;
		ret = store_msg_set_flags(s->ms->st, v->folder, uid, mode, flags, keywords,
					  unchangedsince, &modseq);
		if (ret == STORE_ERR_MODIFIED)
			modified[modified_count++] = cmd->uid ? uid : (uint32_t)(idx[i] + 1);
		else if (ret == 0)
			done[i] = true;
		else if (ret != STORE_ERR_NOTFOUND)
			failure = ret;
	}
	if (failure == 0)
		failure = store_commit(s->ms->st);
	if (failure < 0)
		store_rollback(s->ms->st);
	else
		failure = imap_view_load_msgs(s, idx, n, &after, &after_count);
	free(keywords);
	if (failure < 0) {
		free(modified);
		free(done);
		free(idx);
		store_msg_list_free(before, before_count);
		imap_cmd_store_error(s, cmd, failure, "Cannot change flags");
		return;
	}
	buf_t b = BUF_INIT;
	for (size_t i = 0, bi = 0, ai = 0; i < n; i++) {
		uint32_t uid = imap_view_uid(v, idx[i]);
		while (bi < before_count && before[bi].uid < uid)
			bi++;
		while (ai < after_count && after[ai].uid < uid)
			ai++;
		if (!done[i] || ai == after_count || after[ai].uid != uid)
			continue;
		const struct store_msg *m = &after[ai];
		bool changed = bi < before_count && before[bi].uid == uid &&
			       before[bi].modseq != m->modseq;
		if (changed && m->lifecycle_id != NULL) {
			char *text = store_flags_text(m->flags, m->keywords);
			log_event(m->lifecycle_id, "flags", "user", s->user, "proto", "imap", "flags",
				  text, NULL);
			free(text);
		}
		imap_view_note_reported(v, uid, m->modseq);
		/* RFC 7162 3.2: a silent STORE still reports MODSEQ when CONDSTORE is on. */
		if (!silent || (s->condstore && unchangedsince > 0)) {
			buf_printf(&b, "* %zu FETCH (", idx[i] + 1);
			if (cmd->uid)
				buf_printf(&b, "UID %u ", uid);
			if (!silent) {
				buf_append_str(&b, "FLAGS ");
				imap_format_flags(&b, m->flags, m->keywords, imap_view_is_recent(v, uid));
			}
			if (s->condstore)
				buf_printf(&b, "%sMODSEQ (%llu)", silent ? "" : " ",
					   (unsigned long long)m->modseq);
			buf_append_str(&b, ")\r\n");
			if (b.len >= 64 * 1024) {
				imap_write_bulk(s, b.data, b.len);
				buf_reset(&b);
			}
		}
	}
	if (b.len > 0)
		imap_write_bulk(s, b.data, b.len);
	buf_free(&b);
	free(done);
	free(idx);
	store_msg_list_free(before, before_count);
	store_msg_list_free(after, after_count);
	if (modified_count > 0) {
		buf_t set = BUF_INIT;
		imap_seqset_format(&set, modified, modified_count);
		imap_cmd_finish(s, cmd, "OK", "[MODIFIED %s] Conditional STORE failed", buf_cstr(&set));
		buf_free(&set);
	} else {
		imap_cmd_finish(s, cmd, "OK", "STORE completed");
	}
	free(modified);
}

/* COPY and MOVE. */
static void store_copy_or_move(struct imap_session *s, struct imap_cmd *cmd, bool move)
{
	struct imap_view *v = s->view;
	if (cmd->count != 2 || cmd->args[0].type != IMAP_ARG_ATOM) {
		imap_cmd_finish(s, cmd, "BAD", "%s takes a set and a mailbox", cmd->name);
		return;
	}
	size_t *idx = NULL, n = 0;
	char *err = NULL;
	if (imap_view_resolve(v, cmd->args[0].data, cmd->uid, &idx, &n, &err) < 0) {
		imap_cmd_finish(s, cmd, "BAD", "%s", err);
		free(err);
		return;
	}
	char *dest = imap_arg_mailbox(s, cmd, &cmd->args[1]);
	if (dest == NULL) {
		free(idx);
		return;
	}
	if (move && !store_check_writable(s, cmd)) {
		free(idx);
		free(dest);
		return;
	}
	struct store_folder f;
	int ret = store_folder_get(s->ms->st, dest, &f);
	if (ret < 0 || f.noselect) {
		if (ret == 0)
			store_folder_free(&f);
		free(idx);
		free(dest);
		if (ret == STORE_ERR_NOTFOUND || ret == 0)
			imap_cmd_finish(s, cmd, "NO", "[TRYCREATE] Mailbox does not exist");
		else
			imap_cmd_store_error(s, cmd, ret, "Cannot copy");
		return;
	}
	store_folder_free(&f);
	uint32_t *src = xmalloc((n + 1) * sizeof(*src));
	for (size_t i = 0; i < n; i++)
		src[i] = imap_view_uid(v, idx[i]);
	free(idx);
	if (n == 0) {
		free(src);
		free(dest);
		imap_cmd_finish(s, cmd, "OK", "No messages to %s", move ? "move" : "copy");
		return;
	}
	uint32_t *dest_uids = NULL, dest_validity = 0;
	ret = store_copy(s->ms->st, v->folder, src, n, dest, move, &dest_uids, &dest_validity);
	if (ret < 0) {
		free(src);
		free(dest);
		imap_cmd_store_error(s, cmd, ret, move ? "Cannot move" : "Cannot copy");
		return;
	}
	buf_t from = BUF_INIT, to = BUF_INIT;
	imap_seqset_format(&from, src, n);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_append_char(&to, ',');
		buf_printf(&to, "%u", dest_uids[i]);
	}
	if (move) {
		imap_send(s, "* OK [COPYUID %u %s %s] Moved", dest_validity, buf_cstr(&from),
			  buf_cstr(&to));
		for (size_t i = n; i > 0; i--)
			imap_view_expunged(s, src[i - 1]);
		imap_cmd_finish(s, cmd, "OK", "MOVE completed");
	} else {
		imap_cmd_finish(s, cmd, "OK", "[COPYUID %u %s %s] COPY completed", dest_validity,
				buf_cstr(&from), buf_cstr(&to));
	}
	buf_free(&from);
	buf_free(&to);
	free(dest_uids);
	free(src);
	free(dest);
}

void imap_cmd_copy(struct imap_session *s, struct imap_cmd *cmd)
{
	store_copy_or_move(s, cmd, false);
}

void imap_cmd_move(struct imap_session *s, struct imap_cmd *cmd)
{
	store_copy_or_move(s, cmd, true);
}

void imap_cmd_expunge(struct imap_session *s, struct imap_cmd *cmd)
{
	struct imap_view *v = s->view;
	if (cmd->count != (cmd->uid ? 1u : 0u) || (cmd->uid && cmd->args[0].type != IMAP_ARG_ATOM)) {
		imap_cmd_finish(s, cmd, "BAD", cmd->uid ? "UID EXPUNGE takes a UID set"
							 : "EXPUNGE takes no arguments");
		return;
	}
	uint32_t *only = NULL;
	size_t only_count = 0;
	if (cmd->uid) {
		size_t *idx = NULL;
		char *err = NULL;
		if (imap_view_resolve(v, cmd->args[0].data, true, &idx, &only_count, &err) < 0) {
			imap_cmd_finish(s, cmd, "BAD", "%s", err);
			free(err);
			return;
		}
		only = xmalloc((only_count + 1) * sizeof(*only));
		for (size_t i = 0; i < only_count; i++)
			only[i] = imap_view_uid(v, idx[i]);
		free(idx);
	}
	if (!store_check_writable(s, cmd)) {
		free(only);
		return;
	}
	int ret = imap_store_expunge(s, cmd->uid ? only : NULL, only_count, true);
	free(only);
	if (ret < 0) {
		imap_cmd_store_error(s, cmd, ret, "Cannot expunge");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "EXPUNGE completed");
}
