/* fuzz_linereader.c: feeds arbitrary bytes to the line splitter in pieces.
 * The first input byte picks max_line (1..64), the second the piece size;
 * a line "B<digits>" switches to exact-byte mode as a protocol would. The
 * invariants checked: every byte is consumed, a line never exceeds max_line,
 * the held partial line stays within max_line + 1. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "linereader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds one piece, dispatching every event. */
static void fuzz_feed(struct linereader *lr, char *piece, size_t len)
{
	size_t off = 0;
	for (unsigned guard = 0; guard < 1000000; guard++) {
		size_t used;
		struct linereader_item item;
		enum linereader_event ev = linereader_next(lr, piece + off, len - off, &used, &item);
		off += used;
		if (off > len)
			abort();
		if (linereader_buffered(lr) > lr->max_line + 1)
			abort();
		if (ev == LINEREADER_NEED_MORE) {
			if (off != len)
				abort();
			return;
		}
		if (ev == LINEREADER_LINE) {
			if (item.len > lr->max_line || item.data[item.len] != '\0')
				abort();
			if (item.len > 1 && item.data[0] == 'B') {
				uint64_t n = strtoull(item.data + 1, NULL, 10) % 4096;
				linereader_read_bytes(lr, n);
			}
		}
	}
	abort(); /* no progress */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct linereader lr;
	linereader_init(&lr, (size_t)(data[0] % 64) + 1);
	size_t step = (size_t)(data[1] % 17) + 1;
	data += 2;
	size -= 2;
	for (size_t off = 0; off < size; off += step) {
		size_t n = size - off < step ? size - off : step;
		char *piece = xmalloc(n);
		memcpy(piece, data + off, n);
		fuzz_feed(&lr, piece, n);
		free(piece);
	}
	linereader_free(&lr);
	return 0;
}
