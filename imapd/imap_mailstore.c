/* imap_mailstore.c: each user's store is opened once and shared by all of that
 * user's sessions, with one uv_fs_event watcher on its change-notification
 * file (store_notify_path). When another process (the mda, pop3d, another
 * imapd session) commits a change, the watcher tells every session on the
 * store; a session in IDLE asks the store what changed and reports it at once.
 *
 * Invariants: a mailstore is in server->stores while refs > 0; refs counts the
 * sessions holding it; the watcher handle is freed in its close callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imapd.h"
#include "log.h"

/* The watcher's handle is freed only once libuv has closed it. */
static void mailstore_watcher_closed(uv_handle_t *h)
{
	free(h);
}

/* The notify file changed: every session on this store may have news. */
static void mailstore_on_change(uv_fs_event_t *ev, const char *filename, int events, int status)
{
	struct imap_mailstore *ms = ev->data;
	if (ms == NULL || status < 0)
		return;
	for (size_t i = 0; i < ms->session_count; i++)
		imap_view_changed(ms->sessions[i]);
}

/* Starts watching the store's notify file (best effort: without it, updates
 * still arrive at every command). */
static void mailstore_watch(struct imap_mailstore *ms, uv_loop_t *loop)
{
	const char *path = store_notify_path(ms->st);
	if (path == NULL)
		return;
	if (access(path, F_OK) != 0) {
		FILE *f = fopen(path, "a");
		if (f != NULL)
			fclose(f);
	}
	uv_fs_event_t *ev = xcalloc(1, sizeof(*ev));
	uv_fs_event_init(loop, ev);
	ev->data = ms;
	if (uv_fs_event_start(ev, mailstore_on_change, path, 0) < 0) {
		log_warn(0, "cannot watch %s; IDLE updates come only with commands", path);
		uv_close((uv_handle_t *)ev, mailstore_watcher_closed);
		return;
	}
	ms->watcher = ev;
}

int imap_mailstore_open(struct imap_session *s, const char *user, char **err_r)
{
	struct imapd *server = s->server;
	struct imap_mailstore *ms;
	for (ms = server->stores; ms != NULL; ms = ms->next) {
		if (strcmp(ms->user, user) == 0)
			break;
	}
	if (ms == NULL) {
		store *st = NULL;
		store_query *query = NULL;
		if (store_open(server->d->datadir, user, &st, err_r) < 0)
			return -1;
		if (store_query_open(st, &query, err_r) < 0) {
			store_close(&st);
			return -1;
		}
		ms = xcalloc(1, sizeof(*ms));
		ms->server = server;
		ms->user = xstrdup(user);
		ms->st = st;
		ms->query = query;
		mailstore_watch(ms, conn_loop(s->c));
		ms->next = server->stores;
		server->stores = ms;
	}
	if (ms->session_count == ms->session_cap) {
		ms->session_cap = ms->session_cap == 0 ? 4 : ms->session_cap * 2;
		ms->sessions = xrealloc(ms->sessions, ms->session_cap * sizeof(*ms->sessions));
	}
	ms->sessions[ms->session_count++] = s;
	ms->refs++;
	s->ms = ms;
	return 0;
}

void imap_mailstore_release(struct imap_session *s)
{
	struct imap_mailstore *ms = s->ms;
	if (ms == NULL)
		return;
	s->ms = NULL;
	for (size_t i = 0; i < ms->session_count; i++) {
		if (ms->sessions[i] == s) {
			ms->sessions[i] = ms->sessions[--ms->session_count];
			break;
		}
	}
	if (--ms->refs > 0)
		return;
	struct imap_mailstore **pp = &ms->server->stores;
	while (*pp != ms)
		pp = &(*pp)->next;
	*pp = ms->next;
	if (ms->watcher != NULL) {
		ms->watcher->data = NULL;
		uv_fs_event_stop(ms->watcher);
		uv_close((uv_handle_t *)ms->watcher, mailstore_watcher_closed);
	}
	store_query_close(&ms->query);
	store_close(&ms->st);
	free(ms->sessions);
	free(ms->user);
	free(ms);
}
