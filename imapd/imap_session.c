/* imap_session.c: one IMAP connection: its state, the command table, reading
 * commands (lines and literals through imap_parser), and the commands that
 * need nothing else (CAPABILITY, NOOP, LOGOUT, STARTTLS, ID, ENABLE, NAMESPACE).
 *
 * States (imap_session_enter logs each change):
 *   NOT_AUTHENTICATED --LOGIN/AUTHENTICATE--> AUTHENTICATED --SELECT/EXAMINE-->
 *   SELECTED --CLOSE/UNSELECT/failed SELECT--> AUTHENTICATED; any --LOGOUT--> LOGOUT.
 * Input modes (s->input): COMMAND reads commands; a handler that waits for
 * something (a password check, a SASL line, IDLE's DONE, literal bytes)
 * switches the mode, and imap_cmd_finish returns it to COMMAND. While a
 * command runs the connection is paused, so pipelined commands wait their turn
 * and never see the parser's arguments of the command in progress.
 * Invariant: s->cmd points into the parser's arguments; the parser is reset
 * only when the command has finished. */
#include "imapd.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mutf7.h"
#include "log.h"

/* Bad commands in a row before the server gives up on a client (a client
 * that speaks another protocol, or a fuzzer, is not served forever). */
#define IMAP_MAX_BAD_COMMANDS 20

static const char *const imap_state_names[] = {
	[IMAP_STATE_NOT_AUTHENTICATED] = "not-authenticated",
	[IMAP_STATE_AUTHENTICATED] = "authenticated",
	[IMAP_STATE_SELECTED] = "selected",
	[IMAP_STATE_LOGOUT] = "logout",
};

void imap_session_enter(struct imap_session *s, enum imap_state state)
{
	if (s->state != state)
		log_debug(s->id, "imap state %s -> %s", imap_state_names[s->state],
			  imap_state_names[state]);
	s->state = state;
}

void imap_send(struct imap_session *s, const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_append_str(&b, "\r\n");
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
}

void imap_write_bulk(struct imap_session *s, const char *data, size_t len)
{
	uint64_t lines = 0;
	for (const char *p = data; (p = memchr(p, '\n', len - (size_t)(p - data))) != NULL; p++)
		lines++;
	if (s->bulk_lines + lines <= IMAP_TRANSCRIPT_BULK_LINES) {
		s->bulk_lines += lines;
		conn_write(s->c, data, len);
		return;
	}
	s->bulk_lines += lines;
	s->bulk_quiet_lines += lines;
	s->bulk_quiet_octets += len;
	conn_write_quiet(s->c, data, len);
}

/* Sums up the untagged lines that imap_write_bulk kept out of the transcript. */
static void session_bulk_done(struct imap_session *s)
{
	if (s->bulk_quiet_lines > 0) {
		char note[128];
		int n = snprintf(note, sizeof(note),
				 "[%llu more untagged lines, %llu octets, not transcribed]",
				 (unsigned long long)s->bulk_quiet_lines,
				 (unsigned long long)s->bulk_quiet_octets);
		log_transcript("imap", s->id, 'S', conn_is_tls(s->c), s->user, note, (size_t)n, false);
	}
	s->bulk_lines = s->bulk_quiet_lines = s->bulk_quiet_octets = 0;
}

void imap_capabilities(struct imap_session *s, buf_t *out)
{
	buf_append_str(out, "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE");
	if (s->state == IMAP_STATE_NOT_AUTHENTICATED) {
		if (!conn_is_tls(s->c) && s->server->d->tls != NULL)
			buf_append_str(out, " STARTTLS");
		if (!conn_is_tls(s->c) && !s->server->allow_plaintext_auth) {
			buf_append_str(out, " LOGINDISABLED");
		} else {
			buf_append_str(out, " AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256");
		}
		return;
	}
	buf_printf(out, " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE LIST-EXTENDED MULTIAPPEND"
			" LIST-STATUS ESEARCH CONDSTORE APPENDLIMIT=%llu STATUS=SIZE",
		   (unsigned long long)s->server->max_literal);
}

/* Frees the strings of the finished command. */
static void session_cmd_clear(struct imap_session *s)
{
	free(s->cmd.tag);
	free(s->cmd.name);
	memset(&s->cmd, 0, sizeof(s->cmd));
	s->cmd_active = false;
}

/* Returns the session to reading commands. */
static void session_ready(struct imap_session *s)
{
	bool was_busy = s->input != IMAP_INPUT_COMMAND;
	s->input = IMAP_INPUT_COMMAND;
	imap_parser_reset(s->parser);
	if (was_busy)
		conn_resume(s->c);
}

/* Counts a reply: BAD ones in a row, reset by any other. At the limit the
 * session says BYE and ends; returns true then. */
static bool session_count_reply(struct imap_session *s, const char *status)
{
	if (strcmp(status, "BAD") != 0) {
		s->bad_commands = 0;
		return false;
	}
	if (++s->bad_commands < IMAP_MAX_BAD_COMMANDS)
		return false;
	log_info(s->id, "imap: %u invalid commands in a row, disconnecting", s->bad_commands);
	imap_send(s, "* BYE Too many invalid commands");
	imap_session_enter(s, IMAP_STATE_LOGOUT);
	conn_close(s->c);
	return true;
}

void imap_cmd_finish(struct imap_session *s, struct imap_cmd *cmd, const char *status,
		     const char *fmt, ...)
{
	if (s->state == IMAP_STATE_SELECTED && s->view != NULL)
		imap_view_sync(s, cmd->def == NULL || !(cmd->def->flags & IMAP_CMD_FLAG_NO_EXPUNGE) ||
					  cmd->uid);
	session_bulk_done(s);
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s %s ", cmd->tag != NULL ? cmd->tag : "*", status);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_append_str(&b, "\r\n");
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
	session_cmd_clear(s);
	if (s->state == IMAP_STATE_LOGOUT) {
		conn_close(s->c);
		return;
	}
	if (session_count_reply(s, status))
		return;
	session_ready(s);
}

void imap_cmd_store_error(struct imap_session *s, struct imap_cmd *cmd, int err, const char *what)
{
	switch (err) {
	case STORE_ERR_NOTFOUND:
		imap_cmd_finish(s, cmd, "NO", "[NONEXISTENT] %s", what);
		break;
	case STORE_ERR_EXISTS:
		imap_cmd_finish(s, cmd, "NO", "[ALREADYEXISTS] %s", what);
		break;
	case STORE_ERR_INVALID:
		imap_cmd_finish(s, cmd, "NO", "[CANNOT] %s", what);
		break;
	case STORE_ERR_MODIFIED:
		imap_cmd_finish(s, cmd, "NO", "[MODIFIED] %s", what);
		break;
	default:
		imap_cmd_finish(s, cmd, "NO", "[UNAVAILABLE] %s: temporary failure, try again", what);
		break;
	}
}

char *imap_arg_mailbox(struct imap_session *s, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const char *wire = imap_arg_string(a);
	if (wire == NULL || !imap_arg_string_clean(a)) {
		imap_cmd_finish(s, cmd, "BAD", "Invalid mailbox name");
		return NULL;
	}
	char *name = NULL;
	if (mutf7_decode(wire, &name) < 0) {
		imap_cmd_finish(s, cmd, "NO", "[CANNOT] Mailbox name is not valid modified UTF-7");
		return NULL;
	}
	/* INBOX is case-insensitive, also as the first level of a hierarchy. */
	if (strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/'))
		memcpy(name, "INBOX", 5);
	if (!store_folder_name_valid(name)) {
		free(name);
		imap_cmd_finish(s, cmd, "NO", "[CANNOT] Invalid mailbox name");
		return NULL;
	}
	return name;
}

static const struct {
	const char *name;
	uint32_t bit;
} imap_system_flags[] = {
	{"\\Seen", STORE_FLAG_SEEN},     {"\\Answered", STORE_FLAG_ANSWERED},
	{"\\Flagged", STORE_FLAG_FLAGGED}, {"\\Deleted", STORE_FLAG_DELETED},
	{"\\Draft", STORE_FLAG_DRAFT},
};

/* Adds one flag atom; -1 when it is not a flag. */
static int flags_add_one(const struct imap_arg *a, uint32_t *flags, buf_t *keywords)
{
	if (a->type != IMAP_ARG_ATOM)
		return -1;
	const char *f = a->data;
	if (f[0] == '\\') {
		for (size_t i = 0; i < sizeof(imap_system_flags) / sizeof(imap_system_flags[0]); i++) {
			if (strcasecmp(f, imap_system_flags[i].name) == 0) {
				*flags |= imap_system_flags[i].bit;
				return 0;
			}
		}
		if (strcasecmp(f, "\\Recent") == 0)
			return 0; /* cannot be set by clients: ignored */
		return -1;
	}
	for (const char *p = f; *p != '\0'; p++) {
		if (strchr("[]%*\\", *p) != NULL)
			return -1;
	}
	if (keywords->len > 0)
		buf_append_char(keywords, ' ');
	buf_append_str(keywords, f);
	return 0;
}

int imap_parse_flags(const struct imap_arg *a, uint32_t *flags_r, char **keywords_r)
{
	buf_t keywords = BUF_INIT;
	*flags_r = 0;
	*keywords_r = NULL;
	int ret = 0;
	if (a->type == IMAP_ARG_LIST) {
		for (size_t i = 0; i < a->count && ret == 0; i++)
			ret = flags_add_one(&a->children[i], flags_r, &keywords);
	} else {
		ret = flags_add_one(a, flags_r, &keywords);
	}
	if (ret < 0 || keywords.len == 0) {
		buf_free(&keywords);
		return ret;
	}
	*keywords_r = buf_steal(&keywords);
	return 0;
}

void imap_format_flags(buf_t *out, uint32_t flags, const char *keywords, bool recent)
{
	bool first = true;
	buf_append_char(out, '(');
	for (size_t i = 0; i < sizeof(imap_system_flags) / sizeof(imap_system_flags[0]); i++) {
		if (flags & imap_system_flags[i].bit) {
			buf_printf(out, "%s%s", first ? "" : " ", imap_system_flags[i].name);
			first = false;
		}
	}
	if (recent) {
		buf_printf(out, "%s\\Recent", first ? "" : " ");
		first = false;
	}
	if (keywords != NULL && keywords[0] != '\0')
		buf_printf(out, "%s%s", first ? "" : " ", keywords);
	buf_append_char(out, ')');
}

/* ---- the commands without a module of their own ---- */

/* CAPABILITY (RFC 3501 6.1.1). */
static void cmd_capability(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "CAPABILITY takes no arguments");
		return;
	}
	buf_t b = BUF_INIT;
	imap_capabilities(s, &b);
	imap_send(s, "* CAPABILITY %s", buf_cstr(&b));
	buf_free(&b);
	imap_cmd_finish(s, cmd, "OK", "CAPABILITY completed");
}

/* NOOP (6.1.2): its reply carries pending mailbox updates. */
static void cmd_noop(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "NOOP takes no arguments");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "NOOP completed");
}

/* LOGOUT (6.1.3). */
static void cmd_logout(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "LOGOUT takes no arguments");
		return;
	}
	imap_send(s, "* BYE Logging out");
	imap_session_enter(s, IMAP_STATE_LOGOUT);
	imap_cmd_finish(s, cmd, "OK", "LOGOUT completed");
}

/* STARTTLS (6.2.1): the OK goes out in plaintext, then the handshake. */
static void cmd_starttls(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "STARTTLS takes no arguments");
		return;
	}
	if (conn_is_tls(s->c)) {
		imap_cmd_finish(s, cmd, "BAD", "TLS is already active");
		return;
	}
	if (s->server->d->tls == NULL) {
		imap_cmd_finish(s, cmd, "NO", "TLS is not configured");
		return;
	}
	imap_cmd_finish(s, cmd, "OK", "Begin TLS negotiation now");
	conn_pause(s->c);
	s->input = IMAP_INPUT_BUSY;
	if (conn_start_tls(s->c) < 0)
		conn_abort(s->c);
}

/* ID (RFC 2971): the client's data is logged; ours is a name. */
static void cmd_id(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 1 || (cmd->args[0].type != IMAP_ARG_LIST && !imap_arg_is_nil(&cmd->args[0]))) {
		imap_cmd_finish(s, cmd, "BAD", "ID takes one list or NIL");
		return;
	}
	const struct imap_arg *list = &cmd->args[0];
	if (list->type == IMAP_ARG_LIST && (list->count % 2 != 0 || list->count > 60)) {
		imap_cmd_finish(s, cmd, "BAD", "ID list must hold at most 30 field/value pairs");
		return;
	}
	imap_send(s, "* ID (\"name\" \"mailstack\" \"version\" \"0.1\")");
	imap_cmd_finish(s, cmd, "OK", "ID completed");
}

/* ENABLE (RFC 5161): CONDSTORE is the one extension that needs it here. */
static void cmd_enable(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count == 0) {
		imap_cmd_finish(s, cmd, "BAD", "ENABLE needs at least one capability");
		return;
	}
	buf_t enabled = BUF_INIT;
	for (size_t i = 0; i < cmd->count; i++) {
		if (cmd->args[i].type != IMAP_ARG_ATOM) {
			buf_free(&enabled);
			imap_cmd_finish(s, cmd, "BAD", "ENABLE takes capability names");
			return;
		}
		if (imap_arg_atom_is(&cmd->args[i], "CONDSTORE") && !s->condstore) {
			s->condstore = true;
			buf_append_str(&enabled, " CONDSTORE");
		}
	}
	imap_send(s, "* ENABLED%s", buf_cstr(&enabled));
	buf_free(&enabled);
	imap_cmd_finish(s, cmd, "OK", "ENABLE completed");
}

/* NAMESPACE (RFC 2342): one personal namespace, "/" separated. */
static void cmd_namespace(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 0) {
		imap_cmd_finish(s, cmd, "BAD", "NAMESPACE takes no arguments");
		return;
	}
	imap_send(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_cmd_finish(s, cmd, "OK", "NAMESPACE completed");
}

#define ANY_STATE                                                                             \
	(IMAP_STATE_BIT(IMAP_STATE_NOT_AUTHENTICATED) | IMAP_STATE_BIT(IMAP_STATE_AUTHENTICATED) | \
	 IMAP_STATE_BIT(IMAP_STATE_SELECTED))
#define NOT_AUTH IMAP_STATE_BIT(IMAP_STATE_NOT_AUTHENTICATED)
#define AUTH (IMAP_STATE_BIT(IMAP_STATE_AUTHENTICATED) | IMAP_STATE_BIT(IMAP_STATE_SELECTED))
#define SELECTED IMAP_STATE_BIT(IMAP_STATE_SELECTED)

/* The command table: name, handler, states where it is valid, flags. */
static const struct imap_command_def imap_commands[] = {
	{"CAPABILITY", cmd_capability, ANY_STATE, IMAP_CMD_FLAG_BEFORE_TLS},
	{"NOOP", cmd_noop, ANY_STATE, IMAP_CMD_FLAG_BEFORE_TLS},
	{"LOGOUT", cmd_logout, ANY_STATE, IMAP_CMD_FLAG_BEFORE_TLS},
	{"ID", cmd_id, ANY_STATE, IMAP_CMD_FLAG_BEFORE_TLS},
	{"STARTTLS", cmd_starttls, NOT_AUTH, IMAP_CMD_FLAG_BEFORE_TLS},
	{"LOGIN", imap_cmd_login, NOT_AUTH, 0},
	{"AUTHENTICATE", imap_cmd_authenticate, NOT_AUTH, 0},
	{"ENABLE", cmd_enable, AUTH, 0},
	{"NAMESPACE", cmd_namespace, AUTH, 0},
	{"SELECT", imap_cmd_select, AUTH, 0},
	{"EXAMINE", imap_cmd_examine, AUTH, 0},
	{"CREATE", imap_cmd_create, AUTH, 0},
	{"DELETE", imap_cmd_delete, AUTH, 0},
	{"RENAME", imap_cmd_rename, AUTH, 0},
	{"SUBSCRIBE", imap_cmd_subscribe, AUTH, 0},
	{"UNSUBSCRIBE", imap_cmd_unsubscribe, AUTH, 0},
	{"LIST", imap_cmd_list, AUTH, 0},
	{"LSUB", imap_cmd_lsub, AUTH, 0},
	{"STATUS", imap_cmd_status, AUTH, 0},
	{"APPEND", imap_cmd_append, AUTH, 0},
	{"IDLE", imap_cmd_idle, AUTH, 0},
	{"CHECK", imap_cmd_check, SELECTED, 0},
	{"CLOSE", imap_cmd_close, SELECTED, 0},
	{"UNSELECT", imap_cmd_unselect, SELECTED, 0},
	{"EXPUNGE", imap_cmd_expunge, SELECTED, IMAP_CMD_FLAG_UID},
	{"SEARCH", imap_cmd_search, SELECTED, IMAP_CMD_FLAG_UID | IMAP_CMD_FLAG_NO_EXPUNGE},
	{"FETCH", imap_cmd_fetch, SELECTED, IMAP_CMD_FLAG_UID | IMAP_CMD_FLAG_NO_EXPUNGE},
	{"STORE", imap_cmd_store, SELECTED, IMAP_CMD_FLAG_UID | IMAP_CMD_FLAG_NO_EXPUNGE},
	{"COPY", imap_cmd_copy, SELECTED, IMAP_CMD_FLAG_UID},
	{"MOVE", imap_cmd_move, SELECTED, IMAP_CMD_FLAG_UID},
};

/* Finds a command by name. */
static const struct imap_command_def *command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(imap_commands) / sizeof(imap_commands[0]); i++) {
		if (strcasecmp(imap_commands[i].name, name) == 0)
			return &imap_commands[i];
	}
	return NULL;
}

/* Replies to a command that could not run and counts it; true when the
 * session ended (too many in a row). */
static bool session_bad(struct imap_session *s, const char *tag, const char *status,
			const char *text)
{
	imap_send(s, "%s %s %s", tag != NULL ? tag : "*", status, text);
	imap_parser_reset(s->parser);
	session_cmd_clear(s);
	s->input = IMAP_INPUT_COMMAND;
	return session_count_reply(s, status);
}

/* Runs a completely parsed command. */
static void session_dispatch(struct imap_session *s)
{
	size_t count;
	const struct imap_arg *args = imap_parser_args(s->parser, &count);
	if (count == 0) {
		session_bad(s, NULL, "BAD", "Empty command line");
		return;
	}
	const char *tag = imap_parser_tag(s->parser);
	if (tag == NULL) {
		session_bad(s, NULL, "BAD", "Invalid tag");
		return;
	}
	if (count < 2 || args[1].type != IMAP_ARG_ATOM) {
		session_bad(s, tag, "BAD", "Missing command");
		return;
	}
	size_t first = 2;
	bool uid = false;
	const char *name = args[1].data;
	if (strcasecmp(name, "UID") == 0) {
		if (count < 3 || args[2].type != IMAP_ARG_ATOM) {
			session_bad(s, tag, "BAD", "UID needs a command");
			return;
		}
		uid = true;
		name = args[2].data;
		first = 3;
	}
	const struct imap_command_def *def = command_find(name);
	if (def == NULL || (uid && !(def->flags & IMAP_CMD_FLAG_UID))) {
		session_bad(s, tag, "BAD", "Unknown command");
		return;
	}
	if (!(def->states & IMAP_STATE_BIT(s->state))) {
		session_bad(s, tag, "BAD",
			    s->state == IMAP_STATE_NOT_AUTHENTICATED ? "Authenticate first"
			    : def->states == NOT_AUTH		     ? "Already authenticated"
			    : s->state == IMAP_STATE_SELECTED ? "Command not valid in the selected state"
							      : "No mailbox selected");
		return;
	}
	s->cmd.tag = xstrdup(tag);
	s->cmd.name = xstrdup(def->name);
	s->cmd.args = args + first;
	s->cmd.count = count - first;
	s->cmd.uid = uid;
	s->cmd.def = def;
	s->cmd_active = true;
	s->input = IMAP_INPUT_BUSY;
	def->run(s, &s->cmd);
	/* Still running (a password check, a fetch waiting for the client to read):
	 * later input waits. Commands that want lines (AUTHENTICATE, IDLE) changed
	 * the input mode themselves. */
	if (s->cmd_active && s->input == IMAP_INPUT_BUSY)
		conn_pause(s->c);
}

/* A command failed to parse: BAD, and skip a non-synchronising literal that
 * the client will send anyway. */
static void session_parse_error(struct imap_session *s, const char *line, size_t len)
{
	const char *tag = imap_parser_tag(s->parser);
	char *tag_copy = tag != NULL ? xstrdup(tag) : NULL;
	enum imap_parse_error code = imap_parser_error_code(s->parser);
	bool literal_plus = false;
	uint64_t skip = 0;
	/* A line ending in {n+} announces n bytes that follow without waiting. */
	if (len >= 4 && line[len - 1] == '}' && line[len - 2] == '+') {
		size_t i = len - 2;
		while (i > 0 && isdigit((unsigned char)line[i - 1]))
			i--;
		if (i > 0 && line[i - 1] == '{' && i < len - 2 && len - 2 - i <= 19) {
			literal_plus = true;
			skip = strtoull(line + i, NULL, 10);
		}
	}
	char *text;
	if (code == IMAP_PERR_TOOBIG)
		text = xstrdup("[TOOBIG] Literal too large");
	else
		text = xasprintf("Error in IMAP command: %s", imap_parser_error(s->parser));
	bool closed = session_bad(s, tag_copy, "BAD", text);
	free(text);
	free(tag_copy);
	if (literal_plus && !closed) {
		if (skip > s->server->max_literal) {
			imap_send(s, "* BYE Literal too large");
			conn_close(s->c);
			return;
		}
		if (skip > 0) {
			s->discard_left = skip;
			s->input = IMAP_INPUT_DISCARD;
			conn_read_bytes(s->c, skip);
		} else {
			s->skip_line = true; /* the rest of the command line follows */
		}
	}
}

/* True when the literal about to be read is an argument of LOGIN, whose
 * password must never reach the transcript. */
static bool session_literal_is_secret(struct imap_session *s)
{
	size_t count = 0;
	const struct imap_arg *args = imap_parser_args(s->parser, &count);
	/* args[0] is the tag, args[1] the command name. */
	return count >= 2 && args[1].type == IMAP_ARG_ATOM && args[1].data != NULL &&
	       strcasecmp(args[1].data, "LOGIN") == 0;
}

/* A literal header was parsed: decide where its bytes go. */
static void session_literal(struct imap_session *s, const char *line, size_t len)
{
	uint64_t size = imap_parser_literal_size(s->parser);
	bool sync = imap_parser_literal_sync(s->parser);
	int taken = imap_append_literal(s, size, sync);
	if (taken < 0)
		return;
	if (taken > 0) {
		imap_parser_literal_external(s->parser);
		s->input = IMAP_INPUT_APPEND;
	} else if (imap_parser_literal_accept(s->parser) < 0) {
		session_parse_error(s, line, len);
		return;
	}
	if (size == 0) {
		if (taken > 0)
			imap_append_bytes(s, "", 0, true);
		return;
	}
	if (sync)
		imap_send(s, "+ Ready for literal data");
	if (session_literal_is_secret(s))
		conn_mask_next_line(s->c);
	conn_read_bytes(s->c, size);
}

/* Feeds one command line (and its line end) to the parser. */
static void session_command_line(struct imap_session *s, const char *line, size_t len)
{
	size_t used = 0;
	enum imap_parse_result r = imap_parser_feed(s->parser, line, len, &used);
	if (r == IMAP_PARSE_MORE)
		r = imap_parser_feed(s->parser, "\r\n", 2, &used);
	switch (r) {
	case IMAP_PARSE_DONE:
		session_dispatch(s);
		break;
	case IMAP_PARSE_LITERAL:
		session_literal(s, line, len);
		break;
	case IMAP_PARSE_ERROR:
		session_parse_error(s, line, len);
		break;
	case IMAP_PARSE_MORE:
		session_bad(s, NULL, "BAD", "Internal parser error");
		break;
	}
}

/* ---- connection callbacks ---- */

/* Sends the greeting with the capabilities. */
static void session_on_open(conn *c)
{
	struct imapd *server = net_server_data(conn_server(c));
	struct imap_session *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->id = conn_id(c);
	s->server = server;
	s->state = IMAP_STATE_NOT_AUTHENTICATED;
	struct imap_parser_limits limits = {
		.max_command = server->max_line * 2,
		.max_literal = UINT64_MAX, /* APPEND checks its own limit, other literals max_line */
		.max_literal_buffered = server->max_line,
		.max_depth = IMAP_PARSER_DEFAULT_MAX_DEPTH,
		.max_args = IMAP_PARSER_DEFAULT_MAX_ARGS,
	};
	s->parser = imap_parser_new(&limits);
	conn_set_data(c, s);
	conn_set_idle_timeout(c, server->idle_timeout_ms);
	buf_t b = BUF_INIT;
	imap_capabilities(s, &b);
	imap_send(s, "* OK [CAPABILITY %s] mailstack IMAP4rev1 ready", buf_cstr(&b));
	buf_free(&b);
}

/* One input line, routed by the input mode. */
static void session_on_line(conn *c, char *line, size_t len, bool crlf)
{
	struct imap_session *s = conn_data(c);
	if (s == NULL || s->state == IMAP_STATE_LOGOUT || conn_is_closing(c))
		return;
	switch (s->input) {
	case IMAP_INPUT_COMMAND:
		if (s->skip_line) {
			/* The rest of a refused command, after its dropped literal. */
			s->skip_line = false;
			break;
		}
		session_command_line(s, line, len);
		break;
	case IMAP_INPUT_SASL:
		imap_auth_line(s, line, len);
		break;
	case IMAP_INPUT_IDLE:
		imap_idle_line(s, line, len);
		break;
	default:
		break;
	}
}

/* A line over imap.max_line_length: refused, the command is forgotten. */
static void session_on_line_too_long(conn *c)
{
	struct imap_session *s = conn_data(c);
	if (s == NULL)
		return;
	if (s->input == IMAP_INPUT_COMMAND) {
		const char *tag = imap_parser_tag(s->parser);
		char *tag_copy = tag != NULL ? xstrdup(tag) : NULL;
		session_bad(s, tag_copy, "BAD", "[TOOBIG] Command line too long");
		free(tag_copy);
	} else if (s->input == IMAP_INPUT_SASL) {
		imap_auth_abort(s);
		imap_cmd_finish(s, &s->cmd, "BAD", "[TOOBIG] Response line too long");
	}
}

/* Literal bytes, routed by the input mode. */
static void session_on_bytes(conn *c, const char *data, size_t len, bool last)
{
	struct imap_session *s = conn_data(c);
	if (s == NULL)
		return;
	switch (s->input) {
	case IMAP_INPUT_COMMAND: {
		size_t used;
		(void)imap_parser_feed(s->parser, data, len, &used);
		break;
	}
	case IMAP_INPUT_APPEND:
		imap_append_bytes(s, data, len, last);
		break;
	case IMAP_INPUT_DISCARD:
		if (last) {
			s->input = IMAP_INPUT_COMMAND;
			s->skip_line = true;
		}
		break;
	default:
		break;
	}
}

/* After STARTTLS: everything learned before the handshake is forgotten. */
static void session_on_tls_ready(conn *c)
{
	struct imap_session *s = conn_data(c);
	if (s == NULL)
		return;
	imap_parser_reset(s->parser);
	s->input = IMAP_INPUT_COMMAND;
	conn_resume(c);
}

/* The client was silent too long. */
static void session_on_timeout(conn *c)
{
	struct imap_session *s = conn_data(c);
	if (s != NULL)
		imap_send(s, "* BYE Autologout; idle for too long");
	conn_close(c);
}

/* The connection is gone: free the session and everything it holds. */
static void session_on_close(conn *c)
{
	struct imap_session *s = conn_data(c);
	if (s == NULL)
		return;
	conn_set_data(c, NULL);
	imap_fetch_abort(s);
	imap_append_abort(s);
	imap_auth_abort(s);
	imap_view_free(&s->view);
	imap_mailstore_release(s);
	session_cmd_clear(s);
	imap_parser_free(&s->parser);
	free(s->user);
	free(s);
}

const struct conn_handlers imap_conn_handlers = {
	.on_open = session_on_open,
	.on_line = session_on_line,
	.on_line_too_long = session_on_line_too_long,
	.on_bytes = session_on_bytes,
	.on_tls_ready = session_on_tls_ready,
	.on_timeout = session_on_timeout,
	.on_close = session_on_close,
};
