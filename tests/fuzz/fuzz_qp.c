/* fuzz_qp.c: quoted-printable decoding whole against the stream decoder fed
 * in odd-sized chunks (they must agree), and encode/decode round trips for
 * text whose line ends are already CRLF. */
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
	qp_decode(text, size, &out, &n);

	qp_state st;
	buf_t b = BUF_INIT;
	size_t chunk = size > 0 ? (size_t)data[0] % 5 + 1 : 1;
	qp_stream_init(&st);
	for (size_t i = 0; i < size; i += chunk)
		qp_stream_decode(&st, text + i, size - i < chunk ? size - i : chunk, &b);
	qp_stream_finish(&st, &b);
	if (b.len != n || memcmp(buf_cstr(&b), out, n) != 0)
		abort();
	free(out);
	buf_free(&b);

	/* Round trip: bytes without LF survive encoding exactly. */
	if (memchr(data, '\n', size) == NULL) {
		char *enc = qp_encode(data, size);
		for (const char *line = enc; *line != '\0';) {
			const char *crlf = strstr(line, "\r\n");
			size_t len = crlf != NULL ? (size_t)(crlf - line) : strlen(line);
			if (len > 76)
				abort();
			line += len + (crlf != NULL ? 2 : 0);
		}
		qp_decode(enc, strlen(enc), &out, &n);
		if (n != size || memcmp(out, data, size) != 0)
			abort();
		free(out);
		free(enc);
	}
	return 0;
}
