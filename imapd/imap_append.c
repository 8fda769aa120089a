/* imap_append.c: APPEND (RFC 3501 6.3.11) with MULTIAPPEND (RFC 3502), UIDPLUS
 * (RFC 4315 APPENDUID), LITERAL+ (7888) and APPENDLIMIT (7889).
 *
 * A message literal is never held in memory: when the parser meets the
 * literal header of an APPEND, imap_append_literal checks the mailbox, flags,
 * date and size first (so a refused message is refused before the client
 * sends it), opens a streaming appender in the store (which stages the bytes),
 * and the literal's bytes go straight to it. MULTIAPPEND repeats this for each
 * message of the command. When the command line ends, imap_cmd_append
 * inserts every message in one transaction (all or none, RFC 3502 6.3.11;
 * durable before the reply) and answers with the new UIDs.
 *
 * States of s->append: NULL -> STREAMING (message k's bytes arriving) ->
 * BETWEEN (message k complete; more arguments or the line end follow) ->
 * STREAMING (message k + 1) ... -> NULL at the reply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mutf7.h"
#include "imapd.h"
#include "log.h"

/* Messages in one MULTIAPPEND command. */
#define IMAP_APPEND_MAX_MESSAGES 1000

/* One message of the command. */
struct imap_append_msg {
	store_appender *appender;
	char *lifecycle_id;
	bool has_zone;        /* the client gave a date-time: INTERNALDATE keeps its zone */
	int zone;
	uint32_t uid;         /* after the insert */
};

struct imap_append_ctx {
	char *folder;
	struct imap_append_msg *msgs;
	size_t count;
	uint64_t size, received; /* of the message being streamed */
	bool complete;           /* its last byte arrived */
	int error;               /* a store error while streaming, or 0 */
};

/* Frees the append context, aborting unfinished appenders. */
static void append_free(struct imap_append_ctx **ap)
{
	struct imap_append_ctx *a = *ap;
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->count; i++) {
		if (a->msgs[i].appender != NULL)
			store_append_abort(&a->msgs[i].appender);
		free(a->msgs[i].lifecycle_id);
	}
	free(a->msgs);
	free(a->folder);
	free(a);
	*ap = NULL;
}

void imap_append_abort(struct imap_session *s)
{
	append_free(&s->append);
}

/* Parses an IMAP date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (RFC 3501 9) into
 * the instant and its zone (minutes east of UTC). */
static int append_parse_date(const char *text, int64_t *time_r, int *tz_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4];
	int day, year, hh, mm, ss, zone;
	char sign;
	if (strlen(text) > 26 ||
	    sscanf(text, "%2d-%3c-%4d %2d:%2d:%2d %c%4d", &day, mon, &year, &hh, &mm, &ss, &sign,
		   &zone) != 8)
		return -1;
	mon[3] = '\0';
	const char *m = strcasestr(months, mon);
	if (m == NULL || (m - months) % 3 != 0 || day < 1 || day > 31 || year < 1900 ||
	    year > 9999 || hh > 23 || mm > 59 || ss > 60 || (sign != '+' && sign != '-') ||
	    zone > 2359 || zone % 100 > 59 || hh < 0 || mm < 0 || ss < 0 || zone < 0)
		return -1;
	/* The zone is exactly four digits (date-time is fixed width: 26 characters). */
	if (strlen(text) != 26 || strspn(text + 22, "0123456789") != 4)
		return -1;
	int month = (int)(m - months) / 3;
	/* Days from 1970-01-01 to the date (proleptic Gregorian). */
	int y = year - (month < 2);
	int era = (y >= 0 ? y : y - 399) / 400;
	int yoe = y - era * 400;
	int mp = (month + 10) % 12; /* month is 0-based: March = 0 */
	int doy = (153 * mp + 2) / 5 + day - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = (int64_t)era * 146097 + doe - 719468;
	int offset = (zone / 100) * 60 + zone % 100;
	if (sign == '-')
		offset = -offset;
	*time_r = days * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)offset * 60;
	*tz_r = offset;
	return 0;
}

/* Refuses an APPEND at a literal header: the reply (the whole command, with
 * any message already received, is dropped), then the parser reset. */
static int append_refuse(struct imap_session *s, const char *tag, bool sync, uint64_t size,
			 const char *status, const char *text)
{
	imap_send(s, "%s %s %s", tag, status, text);
	append_free(&s->append);
	imap_parser_reset(s->parser);
	if (!sync) {
		/* The client sends the bytes anyway: drop them, or hang up if huge. */
		if (size > s->server->max_literal) {
			imap_send(s, "* BYE Literal too large");
			conn_close(s->c);
		} else if (size > 0) {
			s->discard_left = size;
			s->input = IMAP_INPUT_DISCARD;
			conn_read_bytes(s->c, size);
		} else {
			s->skip_line = true; /* the rest of the command line follows */
		}
	}
	return -1;
}

/* The folder of an APPEND, checked as imap_arg_mailbox does; NULL with *why_r. */
static char *append_folder(const struct imap_arg *mailbox, const char **status_r,
			   const char **why_r)
{
	const char *wire = imap_arg_string(mailbox);
	char *folder = NULL;
	if (wire == NULL || !imap_arg_string_clean(mailbox) || mutf7_decode(wire, &folder) < 0) {
		*status_r = "BAD";
		*why_r = "Invalid mailbox name";
		return NULL;
	}
	if (strncasecmp(folder, "INBOX", 5) == 0 && (folder[5] == '\0' || folder[5] == '/'))
		memcpy(folder, "INBOX", 5);
	if (!store_folder_name_valid(folder)) {
		free(folder);
		*status_r = "NO";
		*why_r = "[CANNOT] Invalid mailbox name";
		return NULL;
	}
	return folder;
}

int imap_append_literal(struct imap_session *s, uint64_t size, bool sync)
{
	size_t count;
	const struct imap_arg *args = imap_parser_args(s->parser, &count);
	const char *tag = imap_parser_tag(s->parser);
	if (tag == NULL || count < 3 || !imap_arg_atom_is(&args[1], "APPEND") ||
	    imap_parser_depth(s->parser) != 0)
		return 0;
	/* Refused before the client sends the message it announced. */
	if (s->state == IMAP_STATE_NOT_AUTHENTICATED)
		return append_refuse(s, tag, sync, size, "BAD", "Authenticate first");
	struct imap_append_ctx *a = s->append;
	/* This message's flags and date follow the mailbox, or the last message. */
	size_t i = 3;
	if (a != NULL) {
		for (size_t k = i; k < count; k++) {
			if (args[k].type == IMAP_ARG_LITERAL_EXTERNAL)
				i = k + 1;
		}
		if (a->count >= IMAP_APPEND_MAX_MESSAGES)
			return append_refuse(s, tag, sync, size, "NO",
					     "[LIMIT] Too many messages in one APPEND");
	}
	uint32_t flags = 0;
	char *keywords = NULL;
	int64_t date = 0;
	int zone = 0;
	bool has_zone = false;
	if (i < count && args[i].type == IMAP_ARG_LIST) {
		if (imap_parse_flags(&args[i], &flags, &keywords) < 0)
			return append_refuse(s, tag, sync, size, "BAD", "Invalid flags");
		i++;
	}
	if (i < count) {
		const char *d = imap_arg_string(&args[i]);
		if (args[i].type != IMAP_ARG_QUOTED || d == NULL ||
		    append_parse_date(d, &date, &zone) < 0) {
			free(keywords);
			return append_refuse(s, tag, sync, size, "BAD", "Invalid date-time");
		}
		has_zone = true;
		i++;
	}
	if (i != count) {
		free(keywords);
		return append_refuse(s, tag, sync, size, "BAD", "Invalid APPEND arguments");
	}
	if (size > s->server->max_literal) {
		free(keywords);
		return append_refuse(s, tag, sync, size, "NO", "[TOOBIG] Message too large");
	}
	if (size == 0) {
		free(keywords);
		return append_refuse(s, tag, sync, size, "NO", "Empty message");
	}
	if (a == NULL) {
		const char *status = NULL, *why = NULL;
		char *folder = append_folder(&args[2], &status, &why);
		if (folder == NULL) {
			free(keywords);
			return append_refuse(s, tag, sync, size, status, why);
		}
		a = s->append = xcalloc(1, sizeof(*a));
		a->folder = folder;
	}
	if (date == 0)
		date = (int64_t)time(NULL);
	a->msgs = xrealloc(a->msgs, (a->count + 1) * sizeof(*a->msgs));
	struct imap_append_msg *m = &a->msgs[a->count++];
	memset(m, 0, sizeof(*m));
	m->has_zone = has_zone;
	m->zone = zone;
	m->lifecycle_id = lifecycle_id_new();
	a->size = size;
	a->received = 0;
	a->complete = false;
	int ret = store_append_start(s->ms->st, a->folder, size, flags, keywords, date,
				     m->lifecycle_id, &m->appender);
	free(keywords);
	if (ret < 0) {
		if (ret == STORE_ERR_NOTFOUND)
			return append_refuse(s, tag, sync, size, "NO",
					     "[TRYCREATE] Mailbox does not exist");
		return append_refuse(s, tag, sync, size, "NO",
				     "[UNAVAILABLE] Cannot append now, try again");
	}
	return 1;
}

void imap_append_bytes(struct imap_session *s, const char *data, size_t len, bool last)
{
	struct imap_append_ctx *a = s->append;
	if (a == NULL || a->count == 0)
		return;
	store_appender *appender = a->msgs[a->count - 1].appender;
	if (a->error == 0 && len > 0 && store_append_write(appender, data, len) < 0)
		a->error = STORE_ERR_TEMP;
	a->received += len;
	if (last) {
		a->complete = true;
		s->input = IMAP_INPUT_COMMAND; /* the rest of the command line follows */
	}
}

/* Inserts every staged message: one alone is durable by itself; several go
 * in one transaction, so a failure leaves none of them (RFC 3502). */
static int append_insert_all(struct imap_session *s, struct imap_append_ctx *a,
			     uint32_t *uidvalidity_r)
{
	store *st = s->ms->st;
	if (a->count == 1)
		return store_append_finish(&a->msgs[0].appender, &a->msgs[0].uid, uidvalidity_r);
	int ret = store_begin(st);
	for (size_t i = 0; i < a->count && ret == 0; i++)
		ret = store_append_finish(&a->msgs[i].appender, &a->msgs[i].uid, uidvalidity_r);
	if (ret == 0)
		return store_commit(st);
	store_rollback(st);
	return ret;
}

void imap_cmd_append(struct imap_session *s, struct imap_cmd *cmd)
{
	struct imap_append_ctx *a = s->append;
	size_t literals = 0;
	for (size_t i = 0; i < cmd->count; i++)
		literals += cmd->args[i].type == IMAP_ARG_LITERAL_EXTERNAL;
	if (a == NULL || !a->complete || cmd->count < 2 || literals != a->count ||
	    cmd->args[cmd->count - 1].type != IMAP_ARG_LITERAL_EXTERNAL) {
		append_free(&s->append);
		imap_cmd_finish(s, cmd, "BAD", "APPEND takes a mailbox, flags, a date and a literal");
		return;
	}
	if (a->error != 0) {
		append_free(&s->append);
		imap_cmd_finish(s, cmd, "NO", "[UNAVAILABLE] Cannot append now, try again");
		return;
	}
	uint32_t uidvalidity = 0;
	int ret = append_insert_all(s, a, &uidvalidity);
	if (ret < 0) {
		append_free(&s->append);
		imap_cmd_store_error(s, cmd, ret, "Cannot append");
		return;
	}
	buf_t uids = BUF_INIT;
	uint32_t *list = xmalloc(a->count * sizeof(*list));
	for (size_t i = 0; i < a->count; i++) {
		struct imap_append_msg *m = &a->msgs[i];
		/* The store keeps the instant; the zone the client gave is set beside
		 * it (best effort: a failure only changes how INTERNALDATE is shown). */
		if (m->has_zone)
			(void)store_query_set_internal_tz(s->ms->query, a->folder, m->uid, m->zone);
		log_event(m->lifecycle_id, "appended", "user", s->user, "proto", "imap", "folder",
			  a->folder, NULL);
		list[i] = m->uid;
	}
	imap_seqset_format(&uids, list, a->count);
	free(list);
	append_free(&s->append);
	imap_cmd_finish(s, cmd, "OK", "[APPENDUID %u %s] APPEND completed", uidvalidity,
			buf_cstr(&uids));
	buf_free(&uids);
}
