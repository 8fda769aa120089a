/* fuzz_header.c: header_parse on arbitrary bytes, checked against the
 * resumable scanner fed in two pieces at a split taken from the input; then
 * every field value through the RFC 2047 decoder, the date parser and the
 * Content-Type parser, and encoded words round-tripped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	struct header h;
	header_parse(msg, size, &h);
	if (h.header_len > size)
		abort();

	struct header_scanner sc;
	size_t split = size > 0 ? data[0] % (size + 1) : 0, end = size;
	header_scanner_init(&sc);
	if (header_scanner_feed(&sc, msg, split, &end) == 0 &&
	    header_scanner_feed(&sc, msg + split, size - split, &end) == 0)
		end = size;
	if (end != h.header_len)
		abort();

	for (size_t i = 0; i < h.count; i++) {
		const struct header_field *f = &h.fields[i];
		if (f->raw_offset + f->raw_len > h.header_len)
			abort();
		char *decoded = header_decode_words(f->value);
		if (strchr(decoded, '\n') != NULL && strchr(f->value, '\n') == NULL)
			abort(); /* decoding must never create a line break */
		char *encoded = header_encode_words(decoded, strlen(f->name));
		free(encoded);
		free(decoded);
		int64_t t;
		int tz;
		if (header_parse_date(f->value, &t, &tz) == 0) {
			char out[64];
			header_format_date(t, tz, out, sizeof(out));
		}
		struct content_type ct;
		content_type_parse(f->value, (i & 1) != 0, &ct);
		content_type_free(&ct);
	}
	header_free(&h);
	return 0;
}
