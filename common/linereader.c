/* linereader.c: the resumable, bounded line splitter (see linereader.h).
 *
 * States, one at a time:
 *   LINES    - looking for LF; bytes without one go to `partial`
 *              (never more than max_line + 1 of them);
 *   SKIPPING - an over-long line was reported; drop bytes up to its LF
 *              (linereader_next sets it, the LF clears it);
 *   BYTES    - exact-byte mode; `bytes_left` counts down to 0, then LINES
 *              (linereader_read_bytes enters it, the last chunk leaves it).
 * A line that arrives whole in one input chunk is returned in place (no
 * copy); only the start of a line split across chunks is copied, into
 * `partial`, and handed out through `scratch`. */
#include "linereader.h"

#include <string.h>

/* The empty chunk returned for linereader_read_bytes(lr, 0). */
static char linereader_empty[1];

/* Sets up an empty reader. */
void linereader_init(struct linereader *lr, size_t max_line)
{
	memset(lr, 0, sizeof(*lr));
	buf_init(&lr->partial);
	buf_init(&lr->scratch);
	linereader_set_max_line(lr, max_line);
}

/* Releases the reader's buffers. */
void linereader_free(struct linereader *lr)
{
	buf_free(&lr->partial);
	buf_free(&lr->scratch);
}

/* Forgets everything held between calls. */
void linereader_reset(struct linereader *lr)
{
	buf_reset(&lr->partial);
	buf_reset(&lr->scratch);
	lr->skipping = false;
	lr->bytes_mode = false;
	lr->bytes_left = 0;
}

/* Changes the longest accepted line (0 = the default). */
void linereader_set_max_line(struct linereader *lr, size_t max_line)
{
	lr->max_line = max_line == 0 ? LINEREADER_DEFAULT_MAX_LINE : max_line;
}

/* Switches to exact-byte mode for count bytes. */
void linereader_read_bytes(struct linereader *lr, uint64_t count)
{
	lr->bytes_mode = true;
	lr->bytes_left = count;
}

/* Bytes of a partial line held now. */
size_t linereader_buffered(const struct linereader *lr)
{
	return lr->partial.len;
}

/* Hands the completed partial line out through scratch and empties partial. */
static void linereader_take_partial(struct linereader *lr, struct linereader_item *item)
{
	buf_t tmp = lr->scratch;
	lr->scratch = lr->partial;
	lr->partial = tmp;
	buf_reset(&lr->partial);
	item->data = lr->scratch.data;
	item->len = lr->scratch.len;
}

/* One exact-byte chunk: first from a held partial line, then from the input. */
static enum linereader_event linereader_next_bytes(struct linereader *lr, char *data, size_t len,
						   size_t *used_r, struct linereader_item *item)
{
	if (lr->bytes_left == 0) {
		item->data = linereader_empty;
		item->len = 0;
	} else if (lr->partial.len > 0) {
		size_t n = lr->partial.len;
		if (n > lr->bytes_left)
			n = (size_t)lr->bytes_left;
		buf_reset(&lr->scratch);
		buf_append(&lr->scratch, lr->partial.data, n);
		buf_consume(&lr->partial, n);
		item->data = lr->scratch.data;
		item->len = n;
	} else {
		if (len == 0)
			return LINEREADER_NEED_MORE;
		size_t n = len;
		if (n > lr->bytes_left)
			n = (size_t)lr->bytes_left;
		item->data = data;
		item->len = n;
		*used_r = n;
	}
	lr->bytes_left -= item->len;
	if (lr->bytes_left == 0) {
		item->last = true;
		lr->bytes_mode = false;
	}
	return LINEREADER_BYTES;
}

/* Returns the next event from the input (see linereader.h). */
enum linereader_event linereader_next(struct linereader *lr, char *data, size_t len,
				      size_t *used_r, struct linereader_item *item)
{
	memset(item, 0, sizeof(*item));
	*used_r = 0;
	if (lr->bytes_mode)
		return linereader_next_bytes(lr, data, len, used_r, item);

	size_t off = 0;
	if (lr->skipping) {
		char *lf = memchr(data, '\n', len);
		if (lf == NULL) {
			*used_r = len;
			return LINEREADER_NEED_MORE;
		}
		lr->skipping = false;
		off = (size_t)(lf - data) + 1;
	}
	*used_r = off;
	if (off == len)
		return LINEREADER_NEED_MORE;

	char *start = data + off;
	size_t avail = len - off;
	char *lf = memchr(start, '\n', avail);
	if (lf == NULL) {
		/* No end yet: keep the start, unless it is already too long.
		 * max_line + 1 bytes are allowed when the last is a CR. */
		size_t total = lr->partial.len + avail;
		if (total > lr->max_line + 1 ||
		    (total == lr->max_line + 1 && start[avail - 1] != '\r')) {
			buf_reset(&lr->partial);
			lr->skipping = true;
			*used_r = len;
			return LINEREADER_TOO_LONG;
		}
		buf_append(&lr->partial, start, avail);
		*used_r = len;
		return LINEREADER_NEED_MORE;
	}

	size_t n = (size_t)(lf - start);
	*used_r = off + n + 1;
	if (lr->partial.len == 0) {
		size_t line_len = n;
		bool crlf = line_len > 0 && start[line_len - 1] == '\r';
		if (crlf)
			line_len--;
		if (line_len > lr->max_line)
			return LINEREADER_TOO_LONG;
		start[line_len] = '\0';
		item->data = start;
		item->len = line_len;
		item->crlf = crlf;
		return LINEREADER_LINE;
	}

	/* The line began in an earlier chunk. */
	size_t total = lr->partial.len + n;
	char before_lf = n > 0 ? start[n - 1] : lr->partial.data[lr->partial.len - 1];
	bool crlf = before_lf == '\r';
	size_t line_len = crlf ? total - 1 : total;
	if (line_len > lr->max_line) {
		buf_reset(&lr->partial);
		return LINEREADER_TOO_LONG;
	}
	buf_append(&lr->partial, start, n);
	if (crlf) {
		lr->partial.len--;
		lr->partial.data[lr->partial.len] = '\0';
	}
	linereader_take_partial(lr, item);
	item->crlf = crlf;
	return LINEREADER_LINE;
}
