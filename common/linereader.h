/* linereader.h: a resumable, bounded line splitter (bytes in, lines out).
 *
 * The pure part of reading a protocol connection, so it can be unit-tested
 * and fuzzed without sockets: net.c hands it every byte it receives and
 * dispatches the events it returns.
 *
 * Lines end at LF. A line is returned without its LF, and without the CR
 * before the LF when there is one (crlf = true); a bare CR or a NUL inside a
 * line is kept as data. A line longer than max_line (terminator excluded) is
 * never buffered whole: LINEREADER_TOO_LONG is returned once and every byte
 * up to and including the next LF is dropped.
 *
 * Exact-byte mode (linereader_read_bytes): the next `count` bytes are
 * returned as LINEREADER_BYTES chunks, the last one flagged; then the reader
 * returns to lines in the middle of the same input.
 *
 * Invariant: the partial line held between calls never exceeds max_line + 1
 * bytes (the +1 is a CR that may turn out to start the CRLF). */
#ifndef MAILSTACK_LINEREADER_H
#define MAILSTACK_LINEREADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

/* Used when a caller passes max_line 0. */
#define LINEREADER_DEFAULT_MAX_LINE 65536

enum linereader_event {
	LINEREADER_NEED_MORE = 0, /* all input consumed; give more bytes */
	LINEREADER_LINE = 1,      /* a whole line */
	LINEREADER_TOO_LONG = 2,  /* a line passed max_line; it is being skipped */
	LINEREADER_BYTES = 3,     /* a chunk of exact-byte data */
};

struct linereader_item {
	char *data;     /* the line (NUL after it) or the byte chunk */
	size_t len;
	bool crlf;      /* LINE: ended in CRLF (false = bare LF) */
	bool last;      /* BYTES: this chunk completes the count */
};

struct linereader {
	size_t max_line;
	buf_t partial;        /* the start of a line not yet ended */
	buf_t scratch;        /* a finished line or chunk handed out from partial */
	bool skipping;        /* dropping an over-long line up to its LF */
	bool bytes_mode;      /* returning exact bytes */
	uint64_t bytes_left;  /* in bytes mode: how many are still owed */
};

void linereader_init(struct linereader *lr, size_t max_line);
void linereader_free(struct linereader *lr);
/* Forgets any partial line, skip state and exact-byte request (STARTTLS). */
void linereader_reset(struct linereader *lr);
void linereader_set_max_line(struct linereader *lr, size_t max_line);
/* The next `count` bytes are returned as LINEREADER_BYTES (count 0 gives one
 * empty last chunk). */
void linereader_read_bytes(struct linereader *lr, uint64_t count);
/* Bytes of a partial line held between calls. */
size_t linereader_buffered(const struct linereader *lr);

/* Takes bytes from data[0..len) and returns the next event; *used_r says how
 * many input bytes were consumed (the caller advances by that and calls
 * again). data is modified: a NUL is written over a line's terminator. The
 * item points into data or into the reader and is valid until the next call. */
enum linereader_event linereader_next(struct linereader *lr, char *data, size_t len,
				      size_t *used_r, struct linereader_item *item);

#endif
