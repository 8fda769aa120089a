/* imap_idle.c: IDLE (RFC 2177).
 *
 * The session answers "+ idling" and waits for DONE; meanwhile the mailstore
 * watcher (imap_mailstore.c) calls imap_view_changed, which reports new
 * messages, expunges and flag changes at once. The idle timer of the
 * connection (imap.idle_timeout) still applies, as the RFC expects clients to
 * re-issue IDLE at least every 29 minutes. */
#include <string.h>
#include <strings.h>

#include "imapd.h"

void imap_cmd_idle(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "IDLE takes no arguments");
		return;
	}
	imap_send(s, "+ idling");
	s->input = IMAP_INPUT_IDLE;
	/* Changes that arrived before IDLE began are reported now. */
	if (s->state == IMAP_STATE_SELECTED && s->view != NULL)
		imap_view_sync(s, true);
	s->idle_dirty = false;
}

void imap_idle_line(struct imap_session *s, const char *line, size_t len)
{
	if (len == 4 && strncasecmp(line, "DONE", 4) == 0) {
		imap_cmd_finish(s, &s->cmd, "OK", "IDLE terminated");
		return;
	}
	imap_cmd_finish(s, &s->cmd, "BAD", "Expected DONE");
}
