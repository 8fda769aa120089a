/* transcript.c: the client's own protocol transcript, for the transcript pane.
 *
 * A ring of the last MUA_TRANSCRIPT_LINES lines, each "IMAP C: a1 LOGIN ..."
 * with secrets masked by log_mask_line before they are stored (a password is
 * never kept here). Invariant: `count` <= MUA_TRANSCRIPT_LINES and the oldest
 * line is at (head - count) mod the ring size. */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "log.h"
#include "mua.h"

static char *ring[MUA_TRANSCRIPT_LINES];
static size_t head, count;
static bool echo;

/* Stores one finished line, dropping the oldest when full. */
static uint64_t generation;

static void transcript_store(char *line)
{
	generation++;
	free(ring[head]);
	ring[head] = line;
	head = (head + 1) % MUA_TRANSCRIPT_LINES;
	if (count < MUA_TRANSCRIPT_LINES)
		count++;
	if (echo)
		fprintf(stderr, "%s\n", line);
}

/* Lines recorded since the start (the pane redraws when it changes). */
uint64_t mua_transcript_generation(void)
{
	return generation;
}

/* Records a protocol line, masked and shortened. */
void mua_transcript_add(const char *proto, char dir, const char *line, size_t len, bool secret)
{
	char *masked = secret ? xstrdup("****") : log_mask_line(proto, line, len);
	size_t mlen = strcspn(masked, "\r\n");
	buf_t b = BUF_INIT;
	char tag[8];
	size_t i;
	for (i = 0; proto[i] != '\0' && i < sizeof(tag) - 1; i++)
		tag[i] = (char)toupper((unsigned char)proto[i]);
	tag[i] = '\0';
	buf_printf(&b, "%-4s %c: ", tag, dir);
	for (size_t k = 0; k < mlen && k < MUA_TRANSCRIPT_LINE_MAX; k++) {
		unsigned char c = (unsigned char)masked[k];
		buf_append_char(&b, c < 0x20 || c == 0x7f ? '.' : (char)c);
	}
	if (mlen > MUA_TRANSCRIPT_LINE_MAX)
		buf_append_str(&b, "...");
	free(masked);
	transcript_store(buf_steal(&b));
}

/* Records a note of the client's own. */
void mua_transcript_note(const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;
	buf_append_str(&b, "---- ");
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	transcript_store(buf_steal(&b));
}

size_t mua_transcript_count(void)
{
	return count;
}

/* Line i counted from the oldest. */
const char *mua_transcript_line(size_t i)
{
	if (i >= count)
		return "";
	size_t pos = (head + MUA_TRANSCRIPT_LINES - count + i) % MUA_TRANSCRIPT_LINES;
	return ring[pos];
}

void mua_transcript_echo(bool on)
{
	echo = on;
}

/* Frees every stored line. */
void mua_transcript_free(void)
{
	for (size_t i = 0; i < MUA_TRANSCRIPT_LINES; i++) {
		free(ring[i]);
		ring[i] = NULL;
	}
	head = count = 0;
}
