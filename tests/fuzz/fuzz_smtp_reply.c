/* fuzz_smtp_reply.c: feeds arbitrary bytes to the SMTP reply parser, whole and
 * in pieces whose size the first byte picks, and checks that both ways give
 * the same replies, that every byte is consumed, that the held partial line
 * stays within SMTP_REPLY_MAX_LINE + 1 (its CR) and that a complete reply
 * has a code and an enhanced status code of the form N.N.N. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses data in pieces of `step` bytes; the replies go to out. */
static void fuzz_parse(const char *data, size_t size, size_t step, buf_t *out)
{
	struct smtp_reply_parser p;
	smtp_reply_parser_init(&p);
	size_t off = 0;
	for (unsigned guard = 0; off < size && guard < 10000000; guard++) {
		size_t n = size - off < step ? size - off : step;
		size_t used = 0;
		int rc = smtp_reply_parser_feed(&p, data + off, n, &used);
		if (used > n || (rc == 0 && used != n))
			abort();
		if (p.partial.len > SMTP_REPLY_MAX_LINE + 1)
			abort();
		off += used;
		if (rc < 0) {
			buf_append_str(out, "ERR\n");
			break;
		}
		if (rc == 1) {
			const char *s = p.reply.status;
			if (p.reply.code < 200 || p.reply.code > 599 || p.reply.text == NULL ||
			    s[0] < '2' || s[0] > '5' || s[1] != '.')
				abort();
			buf_printf(out, "%d %s %s\n", p.reply.code, s, p.reply.text);
		}
	}
	smtp_reply_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)(data[0] % 16) + 1;
	buf_t whole = BUF_INIT, pieces = BUF_INIT;
	fuzz_parse((const char *)data + 1, size - 1, size, &whole);
	fuzz_parse((const char *)data + 1, size - 1, step, &pieces);
	if (whole.len != pieces.len || (whole.len > 0 && memcmp(whole.data, pieces.data, whole.len) != 0))
		abort();
	buf_free(&whole);
	buf_free(&pieces);
	return 0;
}
