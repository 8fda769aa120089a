/* imap_list.c: the mailbox list and the commands that change it: LIST and LSUB
 * (RFC 3501 6.3.8, 6.3.9) with LIST-EXTENDED (RFC 5258), LIST-STATUS (5819),
 * SPECIAL-USE (6154) and CHILDREN (3348) attributes; CREATE, DELETE, RENAME,
 * SUBSCRIBE, UNSUBSCRIBE and STATUS (with STATUS=SIZE, RFC 8438).
 *
 * Names are UTF-8 inside and modified UTF-7 on the wire; '/' separates levels.
 * Pattern matching is a bounded dynamic program (no backtracking blow-up). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mutf7.h"
#include "imapd.h"

/* Longest LIST pattern (reference + pattern), in bytes. */
#define IMAP_LIST_MAX_PATTERN 1024

/* Whether name matches pattern ('*' anything, '%' anything but '/'); the
 * INBOX part is compared case-insensitively. */
static bool list_match(const char *pattern, const char *name)
{
	size_t plen = strlen(pattern), nlen = strlen(name);
	if (plen > IMAP_LIST_MAX_PATTERN)
		return false;
	/* reach[j]: pattern[0..i) can match name[0..j). */
	bool *reach = xcalloc(nlen + 1, sizeof(bool));
	bool *next = xcalloc(nlen + 1, sizeof(bool));
	reach[0] = true;
	bool inbox = strncmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/');
	for (size_t i = 0; i < plen; i++) {
		char pc = pattern[i];
		memset(next, 0, nlen + 1);
		for (size_t j = 0; j <= nlen; j++) {
			if (!reach[j])
				continue;
			if (pc == '*' || pc == '%') {
				for (size_t k = j; k <= nlen; k++) {
					next[k] = true;
					if (k < nlen && pc == '%' && name[k] == '/')
						break;
				}
			} else if (j < nlen) {
				bool same = pc == name[j];
				if (!same && inbox && j < 5)
					same = (pc | 0x20) == (name[j] | 0x20);
				if (same)
					next[j + 1] = true;
			}
		}
		bool *t = reach;
		reach = next;
		next = t;
	}
	bool matched = reach[nlen];
	free(reach);
	free(next);
	return matched;
}

/* Appends a mailbox name for the wire: an atom when it can be one, else a string. */
static void list_append_name(buf_t *out, const char *utf8)
{
	char *wire = mutf7_encode(utf8);
	bool atom = wire[0] != '\0';
	for (const char *p = wire; *p != '\0' && atom; p++) {
		if (strchr("(){ %*\"\\]", *p) != NULL || (unsigned char)*p < 0x21 ||
		    (unsigned char)*p > 0x7e)
			atom = false;
	}
	if (atom)
		buf_append_str(out, wire);
	else
		imap_append_string(out, wire, strlen(wire));
	free(wire);
}

/* Whether a name is among the subscriptions. */
static bool list_is_subscribed(char **subs, const char *name)
{
	for (size_t i = 0; subs != NULL && subs[i] != NULL; i++) {
		if (strcmp(subs[i], name) == 0)
			return true;
	}
	return false;
}

/* Whether child lies below parent in the hierarchy. */
static bool list_is_below(const char *child, const char *parent)
{
	size_t len = strlen(parent);
	return strncmp(child, parent, len) == 0 && child[len] == '/';
}

/* Joins reference and pattern (RFC 3501 6.3.8) into one UTF-8 pattern. */
static char *list_pattern(const char *ref, const char *pattern)
{
	char *ref8 = NULL, *pat8 = NULL;
	if (mutf7_decode(ref, &ref8) < 0 || mutf7_decode(pattern, &pat8) < 0) {
		free(ref8);
		return NULL;
	}
	char *joined;
	if (ref8[0] == '\0' || pat8[0] == '/')
		joined = xstrdup(pat8);
	else if (ref8[strlen(ref8) - 1] == '/')
		joined = xasprintf("%s%s", ref8, pat8);
	else
		joined = xasprintf("%s/%s", ref8, pat8);
	free(ref8);
	free(pat8);
	return joined;
}

struct list_opts {
	bool sel_subscribed, sel_special_use, sel_recursive;
	bool ret_subscribed, ret_children, ret_special_use;
	const struct imap_arg *status_items; /* RETURN (STATUS (...)) */
	bool lsub;
};

/* One name LIST or LSUB may talk about: a folder, a subscription (which
 * may name no folder), or a superior level of a subscription. */
struct list_name {
	char *name;
	const struct store_folder *folder; /* NULL: no such folder */
	bool subscribed;
	bool meets;                        /* meets the selection criteria */
};

/* INBOX first, then by name: the order of store_folder_list. */
static int list_name_cmp(const void *a, const void *b)
{
	const struct list_name *x = a, *y = b;
	bool xi = strcmp(x->name, "INBOX") == 0, yi = strcmp(y->name, "INBOX") == 0;
	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Adds a name unless it is there already. */
static void list_names_add(struct list_name **names, size_t *count, size_t *cap, const char *name,
			   const struct store_folder *folder)
{
	for (size_t i = 0; i < *count; i++) {
		if (strcmp((*names)[i].name, name) == 0)
			return;
	}
	if (*count == *cap) {
		*cap = *cap == 0 ? 16 : *cap * 2;
		*names = xrealloc(*names, *cap * sizeof(**names));
	}
	(*names)[(*count)++] = (struct list_name){.name = xstrdup(name), .folder = folder};
}

/* Whether a name matches one of the patterns. */
static bool list_match_any(char **patterns, size_t npatterns, const char *name)
{
	for (size_t p = 0; p < npatterns; p++) {
		if (list_match(patterns[p], name))
			return true;
	}
	return false;
}

/* Writes the LIST/LSUB lines for the names matching one of the patterns.
 * Which names answer (RFC 3501 6.3.8, 6.3.9; RFC 5258 3 and its table of
 * "exists / meets the criteria / has a child that does" as RFC 9051 6.3.9
 * repeats it):
 *   LIST            every folder;
 *   LIST (SUBSCRIBED) every subscription, \NonExistent when no folder has
 *                   its name; with SPECIAL-USE only folders with a role;
 *   RECURSIVEMATCH  also a name that does not meet the criteria but has a
 *                   descendant that does, with ("CHILDINFO" ("SUBSCRIBED"));
 *   LSUB            every subscription, and a superior level of one whose
 *                   subscribed descendant the pattern does not reach ("%"),
 *                   flagged \Noselect. */
static void list_write(struct imap_session *s, char **patterns, size_t npatterns,
		       const struct list_opts *o)
{
	struct store_folder *folders = NULL;
	size_t count = 0;
	if (store_folder_list(s->ms->st, &folders, &count) < 0)
		count = 0;
	char **subs = store_subscriptions(s->ms->st);
	struct list_name *names = NULL;
	size_t nnames = 0, cap = 0;
	for (size_t i = 0; i < count; i++)
		list_names_add(&names, &nnames, &cap, folders[i].name, &folders[i]);
	bool by_subscription = o->lsub || o->sel_subscribed;
	for (size_t i = 0; by_subscription && subs != NULL && subs[i] != NULL; i++) {
		list_names_add(&names, &nnames, &cap, subs[i], NULL);
		/* Superior levels, for LSUB's \Noselect and RECURSIVEMATCH. */
		char *up = xstrdup(subs[i]);
		for (char *slash = strrchr(up, '/'); slash != NULL; slash = strrchr(up, '/')) {
			*slash = '\0';
			list_names_add(&names, &nnames, &cap, up, NULL);
		}
		free(up);
	}
	/* Names added as subscriptions may be folders too: link them. */
	for (size_t i = 0; i < nnames; i++) {
		struct list_name *n = &names[i];
		for (size_t j = 0; n->folder == NULL && j < count; j++) {
			if (strcmp(folders[j].name, n->name) == 0)
				n->folder = &folders[j];
		}
		n->subscribed = list_is_subscribed(subs, n->name);
		/* A role that LIST shows (INBOX has none: RFC 6154 2). */
		bool role = n->folder != NULL &&
			    store_special_use_name(n->folder->special_use) != NULL;
		if (by_subscription)
			n->meets = n->subscribed && (!o->sel_special_use || role);
		else if (o->sel_special_use)
			n->meets = role;
		else
			n->meets = n->folder != NULL;
	}
	qsort(names, nnames, sizeof(*names), list_name_cmp);
	/* CHILDINFO names the criteria a descendant meets: only SUBSCRIBED has one. */
	bool recursive = !o->lsub && o->sel_recursive && o->sel_subscribed;
	buf_t b = BUF_INIT;
	for (size_t i = 0; i < nnames; i++) {
		const struct list_name *n = &names[i];
		if (!list_match_any(patterns, npatterns, n->name))
			continue;
		bool child_meets = false, child_unreached = false;
		for (size_t j = 0; j < nnames; j++) {
			if (!names[j].meets || !list_is_below(names[j].name, n->name))
				continue;
			child_meets = true;
			if (!list_match_any(patterns, npatterns, names[j].name))
				child_unreached = true;
		}
		bool childinfo = false, lsub_noselect = false;
		if (!n->meets) {
			if (o->lsub && child_unreached)
				lsub_noselect = true;
			else if (recursive && child_meets)
				childinfo = true;
			else
				continue;
		} else if (recursive && child_meets) {
			childinfo = true;
		}
		const struct store_folder *f = n->folder;
		buf_reset(&b);
		buf_printf(&b, "* %s (", o->lsub ? "LSUB" : "LIST");
		size_t start = b.len;
		if (o->lsub) {
			if (lsub_noselect || (f != NULL && f->noselect))
				buf_append_str(&b, "\\Noselect ");
		} else if (f == NULL) {
			buf_append_str(&b, "\\NonExistent ");
		} else {
			if (f->noselect)
				buf_append_str(&b, "\\Noselect ");
			bool children = false;
			for (size_t j = 0; j < count && !children; j++)
				children = list_is_below(folders[j].name, f->name);
			buf_append_str(&b, children ? "\\HasChildren " : "\\HasNoChildren ");
		}
		if (!o->lsub && (o->ret_subscribed || o->sel_subscribed) && n->subscribed)
			buf_append_str(&b, "\\Subscribed ");
		const char *use = f != NULL ? store_special_use_name(f->special_use) : NULL;
		if (use != NULL && !o->lsub)
			buf_printf(&b, "%s ", use);
		if (b.len > start)
			b.len--; /* the last space */
		b.data[b.len] = '\0';
		buf_append_str(&b, ") \"/\" ");
		list_append_name(&b, n->name);
		if (childinfo)
			buf_append_str(&b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
		buf_append_str(&b, "\r\n");
		conn_write(s->c, b.data, b.len);
		if (o->status_items != NULL && f != NULL && !f->noselect) {
			char *err = NULL;
			if (imap_status_write(s, f->name, o->status_items->children,
					      o->status_items->count, &err) < 0)
				free(err);
		}
	}
	buf_free(&b);
	for (size_t i = 0; i < nnames; i++)
		free(names[i].name);
	free(names);
	store_strv_free(subs);
	store_folder_list_free(folders, count);
}

/* Reads LIST-EXTENDED options from a list of atoms. */
static int list_parse_selection(const struct imap_arg *a, struct list_opts *o)
{
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *opt = &a->children[i];
		if (imap_arg_atom_is(opt, "SUBSCRIBED"))
			o->sel_subscribed = true;
		else if (imap_arg_atom_is(opt, "SPECIAL-USE"))
			o->sel_special_use = true;
		else if (imap_arg_atom_is(opt, "RECURSIVEMATCH"))
			o->sel_recursive = true;
		else if (imap_arg_atom_is(opt, "REMOTE"))
			continue;
		else
			return -1;
	}
	/* RECURSIVEMATCH needs another selection option (RFC 5258 3.1). */
	return o->sel_recursive && !o->sel_subscribed && !o->sel_special_use ? -1 : 0;
}

/* Reads RETURN (...) options. */
static int list_parse_return(const struct imap_arg *a, struct list_opts *o)
{
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *opt = &a->children[i];
		if (imap_arg_atom_is(opt, "SUBSCRIBED")) {
			o->ret_subscribed = true;
		} else if (imap_arg_atom_is(opt, "CHILDREN")) {
			o->ret_children = true;
		} else if (imap_arg_atom_is(opt, "SPECIAL-USE")) {
			o->ret_special_use = true;
		} else if (imap_arg_atom_is(opt, "STATUS") && i + 1 < a->count &&
			   a->children[i + 1].type == IMAP_ARG_LIST) {
			o->status_items = &a->children[++i];
		} else {
			return -1;
		}
	}
	return 0;
}

/* LIST and LSUB. */
static void list_command(struct imap_session *s, struct imap_cmd *cmd, bool lsub)
{
	struct list_opts o = {.lsub = lsub};
	size_t i = 0;
	if (!lsub && cmd->count > 0 && cmd->args[0].type == IMAP_ARG_LIST) {
		if (list_parse_selection(&cmd->args[0], &o) < 0) {
			imap_cmd_finish(s, cmd, "BAD", "Invalid LIST selection options");
			return;
		}
		i = 1;
	}
	if (cmd->count < i + 2 || imap_arg_string(&cmd->args[i]) == NULL) {
		imap_cmd_finish(s, cmd, "BAD", "%s takes a reference and a pattern", cmd->name);
		return;
	}
	const struct imap_arg *ref = &cmd->args[i];
	const struct imap_arg *pat = &cmd->args[i + 1];
	size_t rest = i + 2;
	if (!lsub && rest < cmd->count) {
		if (rest + 2 != cmd->count || !imap_arg_atom_is(&cmd->args[rest], "RETURN") ||
		    cmd->args[rest + 1].type != IMAP_ARG_LIST ||
		    list_parse_return(&cmd->args[rest + 1], &o) < 0) {
			imap_cmd_finish(s, cmd, "BAD", "Invalid LIST return options");
			return;
		}
	} else if (rest != cmd->count) {
		imap_cmd_finish(s, cmd, "BAD", "Too many arguments for %s", cmd->name);
		return;
	}
	const struct imap_arg *pats = pat->type == IMAP_ARG_LIST && !lsub ? pat->children : pat;
	size_t npats = pat->type == IMAP_ARG_LIST && !lsub ? pat->count : 1;
	char **patterns = xcalloc(npats + 1, sizeof(*patterns));
	bool empty = false;
	for (size_t p = 0; p < npats; p++) {
		const char *text = imap_arg_string(&pats[p]);
		if (text == NULL || !imap_arg_string_clean(&pats[p]) ||
		    (patterns[p] = list_pattern(imap_arg_string(ref), text)) == NULL) {
			for (size_t q = 0; q < p; q++)
				free(patterns[q]);
			free(patterns);
			imap_cmd_finish(s, cmd, "BAD", "Invalid mailbox pattern");
			return;
		}
		if (text[0] == '\0' && npats == 1)
			empty = true;
	}
	if (empty) {
		/* LIST "" "": the hierarchy delimiter and root (RFC 3501 6.3.8). */
		if (!lsub)
			imap_send(s, "* LIST (\\Noselect) \"/\" \"\"");
	} else {
		list_write(s, patterns, npats, &o);
	}
	for (size_t p = 0; p < npats; p++)
		free(patterns[p]);
	free(patterns);
	imap_cmd_finish(s, cmd, "OK", "%s completed", cmd->name);
}

void imap_cmd_list(struct imap_session *s, struct imap_cmd *cmd)
{
	list_command(s, cmd, false);
}

void imap_cmd_lsub(struct imap_session *s, struct imap_cmd *cmd)
{
	list_command(s, cmd, true);
}

/* Reads the one mailbox argument of CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE. */
static char *list_one_mailbox(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 1) {
		imap_cmd_finish(s, cmd, "BAD", "%s takes one mailbox name", cmd->name);
		return NULL;
	}
	return imap_arg_mailbox(s, cmd, &cmd->args[0]);
}

void imap_cmd_create(struct imap_session *s, struct imap_cmd *cmd)
{
	/* A trailing separator only says that children will follow (6.3.3). */
	if (cmd->count == 1 && cmd->args[0].type != IMAP_ARG_LIST && cmd->args[0].len > 1 &&
	    cmd->args[0].data[cmd->args[0].len - 1] == '/') {
		cmd->args[0].data[--((struct imap_arg *)&cmd->args[0])->len] = '\0';
	}
	char *name = list_one_mailbox(s, cmd);
	if (name == NULL)
		return;
	int ret = strcmp(name, "INBOX") == 0 ? STORE_ERR_EXISTS
					      : store_folder_create(s->ms->st, name, STORE_SPECIAL_NONE);
	free(name);
	if (ret < 0) {
		imap_cmd_store_error(s, cmd, ret,
				     ret == STORE_ERR_EXISTS ? "Mailbox already exists" : "Cannot create");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "CREATE completed");
}

void imap_cmd_delete(struct imap_session *s, struct imap_cmd *cmd)
{
	char *name = list_one_mailbox(s, cmd);
	if (name == NULL)
		return;
	if (strcmp(name, "INBOX") == 0) {
		free(name);
		imap_cmd_finish(s, cmd, "NO", "[CANNOT] INBOX cannot be deleted");
		return;
	}
	int ret = store_folder_delete(s->ms->st, name);
	free(name);
	if (ret < 0) {
		imap_cmd_store_error(s, cmd, ret,
				     ret == STORE_ERR_NOTFOUND ? "Mailbox does not exist" : "Cannot delete");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "DELETE completed");
}

void imap_cmd_rename(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 2) {
		imap_cmd_finish(s, cmd, "BAD", "RENAME takes two mailbox names");
		return;
	}
	char *from = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (from == NULL)
		return;
	char *to = imap_arg_mailbox(s, cmd, &cmd->args[1]);
	if (to == NULL) {
		free(from);
		return;
	}
	int ret = strcmp(to, "INBOX") == 0 ? STORE_ERR_EXISTS : store_folder_rename(s->ms->st, from, to);
	free(from);
	free(to);
	if (ret < 0) {
		imap_cmd_store_error(s, cmd, ret,
				     ret == STORE_ERR_NOTFOUND ? "Mailbox does not exist"
				     : ret == STORE_ERR_EXISTS ? "Target mailbox already exists"
							      : "Cannot rename");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "RENAME completed");
}

/* SUBSCRIBE and UNSUBSCRIBE. */
static void list_subscribe(struct imap_session *s, struct imap_cmd *cmd, bool on)
{
	char *name = list_one_mailbox(s, cmd);
	if (name == NULL)
		return;
	int ret = store_folder_subscribe(s->ms->st, name, on);
	free(name);
	if (ret < 0) {
		imap_cmd_store_error(s, cmd, ret, "Mailbox does not exist");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "%s completed", cmd->name);
}

void imap_cmd_subscribe(struct imap_session *s, struct imap_cmd *cmd)
{
	list_subscribe(s, cmd, true);
}

void imap_cmd_unsubscribe(struct imap_session *s, struct imap_cmd *cmd)
{
	list_subscribe(s, cmd, false);
}

int imap_status_write(struct imap_session *s, const char *folder, const struct imap_arg *items,
		      size_t count, char **err_r)
{
	struct store_folder f;
	int ret = store_folder_get(s->ms->st, folder, &f);
	if (ret < 0) {
		*err_r = xstrdup("Mailbox does not exist");
		return ret;
	}
	if (f.noselect) {
		store_folder_free(&f);
		*err_r = xstrdup("Mailbox cannot be selected");
		return STORE_ERR_NOTFOUND;
	}
	buf_t b = BUF_INIT;
	buf_append_str(&b, "* STATUS ");
	list_append_name(&b, folder);
	buf_append_str(&b, " (");
	for (size_t i = 0; i < count; i++) {
		const struct imap_arg *it = &items[i];
		if (i > 0)
			buf_append_char(&b, ' ');
		if (imap_arg_atom_is(it, "MESSAGES"))
			buf_printf(&b, "MESSAGES %u", f.messages);
		else if (imap_arg_atom_is(it, "RECENT"))
			buf_printf(&b, "RECENT %u", f.recent);
		else if (imap_arg_atom_is(it, "UIDNEXT"))
			buf_printf(&b, "UIDNEXT %u", f.uidnext);
		else if (imap_arg_atom_is(it, "UIDVALIDITY"))
			buf_printf(&b, "UIDVALIDITY %u", f.uidvalidity);
		else if (imap_arg_atom_is(it, "UNSEEN"))
			buf_printf(&b, "UNSEEN %u", f.unseen);
		else if (imap_arg_atom_is(it, "SIZE"))
			buf_printf(&b, "SIZE %llu", (unsigned long long)f.size);
		else if (imap_arg_atom_is(it, "HIGHESTMODSEQ"))
			buf_printf(&b, "HIGHESTMODSEQ %llu", (unsigned long long)f.highestmodseq);
		else {
			buf_free(&b);
			store_folder_free(&f);
			*err_r = xstrdup("Unknown STATUS item");
			return STORE_ERR_INVALID;
		}
	}
	buf_append_str(&b, ")\r\n");
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
	store_folder_free(&f);
	return 0;
}

void imap_cmd_status(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 2 || cmd->args[1].type != IMAP_ARG_LIST || cmd->args[1].count == 0) {
		imap_cmd_finish(s, cmd, "BAD", "STATUS takes a mailbox and a list of items");
		return;
	}
	for (size_t i = 0; i < cmd->args[1].count; i++) {
		if (cmd->args[1].children[i].type != IMAP_ARG_ATOM) {
			imap_cmd_finish(s, cmd, "BAD", "Invalid STATUS item");
			return;
		}
	}
	char *name = imap_arg_mailbox(s, cmd, &cmd->args[0]);
	if (name == NULL)
		return;
	/* STATUS of the selected mailbox first reports this session's own updates. */
	if (s->view != NULL && strcmp(s->view->folder, name) == 0)
		imap_view_sync(s, false);
	char *err = NULL;
	int ret = imap_status_write(s, name, cmd->args[1].children, cmd->args[1].count, &err);
	free(name);
	if (ret == STORE_ERR_INVALID) {
		imap_cmd_finish(s, cmd, "BAD", "%s", err);
	} else if (ret < 0) {
		imap_cmd_store_error(s, cmd, ret, err);
	} else {
		imap_cmd_finish(s, cmd, "OK", "STATUS completed");
	}
	free(err);
}
