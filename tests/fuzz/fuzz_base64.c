/* fuzz_base64.c: the strict and MIME base64 decoders against the stream
 * decoder fed in odd-sized chunks (they must agree), and encode/decode round
 * trips of the input itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	char *out;
	size_t n;
	if (base64_decode(text, size, &out, &n) == 0)
		free(out);
	int whole = base64_decode_mime(text, size, &out, &n);

	base64_state st;
	buf_t b = BUF_INIT;
	int r = 0;
	size_t chunk = size > 0 ? (size_t)data[0] % 7 + 1 : 1;
	base64_stream_init(&st);
	for (size_t i = 0; i < size && r == 0; i += chunk)
		r = base64_stream_decode(&st, text + i, size - i < chunk ? size - i : chunk, &b);
	if (r == 0)
		r = base64_stream_finish(&st);
	if (r != whole || (whole == 0 && (b.len != n || memcmp(buf_cstr(&b), out, n) != 0)))
		abort();
	if (whole == 0)
		free(out);
	buf_free(&b);

	char *enc = base64_encode(data, size);
	if (base64_decode(enc, strlen(enc), &out, &n) != 0 || n != size || memcmp(out, data, size) != 0)
		abort();
	free(out);
	free(enc);
	enc = base64_encode_lines(data, size);
	if (base64_decode_mime(enc, strlen(enc), &out, &n) != 0 || n != size ||
	    memcmp(out, data, size) != 0)
		abort();
	free(out);
	free(enc);
	return 0;
}
