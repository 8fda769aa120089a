/* pop3_maildrop.c: the INBOX as a POP3 session sees it, and RETR/TOP streaming.
 *
 * RFC 1939 fixes message numbers for a session: the snapshot taken at login
 * keeps them (and the sizes) stable, whatever is delivered or expunged
 * meanwhile. Deletions are only marks until QUIT commits them in one
 * transaction.
 *
 * Streaming never holds a whole message: it reads POP3_STREAM_CHUNK bytes at a
 * time from the store, dot-stuffs lines that start with '.', turns any bare LF
 * into CRLF, and waits for the output to drain below the low-water mark
 * before reading the next chunk. A stream's states:
 *
 *   HEADER --blank line--> BODY --body_lines reached (TOP)--> DONE
 *      \__________________ end of message _________________/
 */
#include "pop3.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "log.h"

int pop3_maildrop_open(const char *datadir, const char *user, struct pop3_maildrop *drop_r,
		       bool *temporary_r, char **err_r)
{
	memset(drop_r, 0, sizeof(*drop_r));
	*temporary_r = true;
	if (store_open(datadir, user, &drop_r->st, err_r) < 0)
		return -1;

	struct store_folder inbox;
	int rc = store_folder_get(drop_r->st, "INBOX", &inbox);
	if (rc < 0) {
		*temporary_r = rc == STORE_ERR_TEMP;
		*err_r = xasprintf("cannot open INBOX: %s", store_last_error(drop_r->st));
		store_close(&drop_r->st);
		return -1;
	}
	drop_r->uidvalidity = inbox.uidvalidity;
	store_folder_free(&inbox);

	struct store_msg *list = NULL;
	size_t count = 0;
	rc = store_msg_list(drop_r->st, "INBOX", &list, &count);
	if (rc < 0) {
		*temporary_r = rc == STORE_ERR_TEMP;
		*err_r = xasprintf("cannot list INBOX: %s", store_last_error(drop_r->st));
		store_close(&drop_r->st);
		return -1;
	}
	drop_r->messages = xcalloc(count, sizeof(*drop_r->messages));
	for (size_t i = 0; i < count; i++) {
		drop_r->messages[i].uid = list[i].uid;
		drop_r->messages[i].size = list[i].size;
		if (list[i].lifecycle_id != NULL)
			drop_r->messages[i].lifecycle_id = xstrdup(list[i].lifecycle_id);
	}
	drop_r->count = count;
	store_msg_list_free(list, count);
	return 0;
}

void pop3_maildrop_close(struct pop3_maildrop *drop)
{
	for (size_t i = 0; i < drop->count; i++)
		free(drop->messages[i].lifecycle_id);
	free(drop->messages);
	drop->messages = NULL;
	drop->count = 0;
	store_close(&drop->st);
}

void pop3_maildrop_stat(const struct pop3_maildrop *drop, size_t *count_r, uint64_t *octets_r)
{
	size_t count = 0;
	uint64_t octets = 0;
	for (size_t i = 0; i < drop->count; i++) {
		if (drop->messages[i].deleted)
			continue;
		count++;
		octets += drop->messages[i].size;
	}
	*count_r = count;
	*octets_r = octets;
}

void pop3_maildrop_uidl(const struct pop3_maildrop *drop, const struct pop3_message *m,
			char *out, size_t cap)
{
	/* RFC 1939 7: 1 to 70 characters from 0x21 to 0x7E, unique and permanent.
	 * UIDVALIDITY changes only when the folder is recreated, and UIDs are never
	 * reused within one UIDVALIDITY, so the pair never repeats. */
	snprintf(out, cap, "%08" PRIx32 "%08" PRIx32, drop->uidvalidity, m->uid);
}

int pop3_maildrop_commit_deletions(struct pop3_maildrop *drop, size_t *removed_r, char **err_r)
{
	size_t marked = 0;
	uint32_t *uids = xcalloc(drop->count, sizeof(*uids));
	for (size_t i = 0; i < drop->count; i++) {
		if (drop->messages[i].deleted)
			uids[marked++] = drop->messages[i].uid;
	}
	*removed_r = 0;
	if (marked == 0) {
		free(uids);
		return 0;
	}
	uint32_t *removed = NULL;
	size_t removed_count = 0;
	int rc = store_expunge(drop->st, "INBOX", uids, marked, &removed, &removed_count);
	free(uids);
	if (rc < 0) {
		*err_r = xasprintf("%s", store_last_error(drop->st));
		return -1;
	}
	free(removed);
	*removed_r = removed_count;
	return 0;
}

/* ---- streaming ---- */

enum stream_part { STREAM_HEADER, STREAM_BODY, STREAM_DONE };

struct pop3_stream {
	conn *c;
	store_reader *reader;
	uint64_t offset;
	uint64_t size;
	long body_lines;        /* < 0: the whole message */
	long lines_sent;        /* body lines sent so far (TOP) */
	enum stream_part part;
	bool at_line_start;
	bool header_line_empty; /* the current header line has no content yet */
	char prev;              /* last byte read, to recognise CRLF across chunks */
	pop3_stream_done_cb done;
	void *arg;
	char chunk[POP3_STREAM_CHUNK];
	buf_t out;
};

/* Ends a stream: queues the terminating line when ok, tells the caller, frees it. */
static void stream_finish(struct pop3_stream *s, bool ok)
{
	conn *c = s->c;
	if (ok) {
		if (!s->at_line_start)
			conn_write_quiet(c, "\r\n", 2);
		conn_write_str(c, ".\r\n");
	}
	store_reader_close(&s->reader);
	buf_free(&s->out);
	pop3_stream_done_cb done = s->done;
	void *arg = s->arg;
	free(s);
	if (!ok && !conn_is_closing(c))
		conn_abort(c);
	done(c, ok, arg);
	conn_unref(c);
}

/* Appends one input byte to s->out with dot-stuffing and CRLF line ends,
 * and moves between the header, body and end states. */
static void stream_byte(struct pop3_stream *s, char ch)
{
	if (s->part == STREAM_DONE)
		return;
	if (ch == '\r') {
		/* Held back to be written with the LF that follows; a CR held
		 * already was not followed by one, so it is data (as below). */
		if (s->prev == '\r') {
			buf_append_char(&s->out, '\r');
			s->at_line_start = false;
			if (s->part == STREAM_HEADER)
				s->header_line_empty = false;
		}
		s->prev = ch;
		return;
	}
	if (ch == '\n') {
		buf_append(&s->out, "\r\n", 2);
		s->prev = ch;
		if (s->part == STREAM_HEADER) {
			if (s->header_line_empty)
				s->part = STREAM_BODY;
			s->header_line_empty = true;
		} else if (s->body_lines >= 0) {
			s->lines_sent++;
		}
		s->at_line_start = true;
		if (s->part == STREAM_BODY && s->body_lines >= 0 && s->lines_sent >= s->body_lines)
			s->part = STREAM_DONE;
		return;
	}
	if (s->prev == '\r') {
		buf_append_char(&s->out, '\r'); /* a bare CR is data */
		s->at_line_start = false;
	}
	s->prev = ch;
	if (s->at_line_start && ch == '.')
		buf_append_char(&s->out, '.');
	s->at_line_start = false;
	if (s->part == STREAM_HEADER)
		s->header_line_empty = false;
	buf_append_char(&s->out, ch);
}

/* Appends a chunk: ordinary bytes in the middle of a line are copied as runs,
 * line ends and line starts go through stream_byte. */
static void stream_chunk(struct pop3_stream *s, const char *data, size_t len)
{
	size_t i = 0;
	while (i < len && s->part != STREAM_DONE) {
		char ch = data[i];
		if (ch == '\r' || ch == '\n' || s->at_line_start || s->prev == '\r') {
			stream_byte(s, ch);
			i++;
			continue;
		}
		size_t end = i;
		while (end < len && data[end] != '\r' && data[end] != '\n')
			end++;
		buf_append(&s->out, data + i, end - i);
		if (s->part == STREAM_HEADER)
			s->header_line_empty = false;
		s->prev = data[end - 1];
		i = end;
	}
}

static void stream_continue(conn *c, void *arg);

/* Sends chunks until the message ends or the output passes the high-water
 * mark, in which case it waits for the drain callback. */
static void stream_pump(struct pop3_stream *s)
{
	if (conn_is_closing(s->c)) {
		stream_finish(s, false);
		return;
	}
	while (s->part != STREAM_DONE && s->offset < s->size) {
		long n = store_reader_read(s->reader, s->offset, s->chunk, sizeof(s->chunk));
		if (n < 0) {
			log_warn(conn_id(s->c), "reading a message failed during RETR");
			stream_finish(s, false);
			return;
		}
		if (n == 0)
			break;
		s->offset += (uint64_t)n;
		buf_reset(&s->out);
		stream_chunk(s, s->chunk, (size_t)n);
		conn_write_quiet(s->c, s->out.data, s->out.len);
		if (conn_output_pending(s->c) >= NET_OUTPUT_HIGH_WATER) {
			conn_on_drain(s->c, stream_continue, s);
			return;
		}
	}
	if (s->prev == '\r' && s->part != STREAM_DONE) {
		/* A message ending in a bare CR: keep the byte as data. */
		conn_write_quiet(s->c, "\r", 1);
		s->at_line_start = false;
	}
	stream_finish(s, true);
}

/* The output drained below the low-water mark: reads and sends the next chunk. */
static void stream_continue(conn *c, void *arg)
{
	stream_pump(arg);
}

int pop3_stream_message(conn *c, struct pop3_maildrop *drop, const struct pop3_message *m,
			long body_lines, const char *ok_line, pop3_stream_done_cb done, void *arg)
{
	store_reader *reader = NULL;
	if (store_msg_open(drop->st, "INBOX", m->uid, &reader) < 0) {
		log_warn(conn_id(c), "cannot open message uid %" PRIu32 ": %s", m->uid,
			 store_last_error(drop->st));
		return -1;
	}
	struct pop3_stream *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->reader = reader;
	s->size = store_reader_size(reader);
	s->body_lines = body_lines;
	s->part = STREAM_HEADER;
	s->at_line_start = true;
	s->header_line_empty = true;
	s->done = done;
	s->arg = arg;
	buf_init(&s->out);
	conn_ref(c);
	conn_write_str(c, ok_line);
	stream_pump(s);
	return 0;
}
