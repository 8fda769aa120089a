/* fuzz_imap_parser.c: feeds arbitrary bytes to the IMAP command parser, whole
 * and in small pieces, accepting every literal, then reads the arguments. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walks an argument tree so that every byte the parser produced is read. */
static size_t fuzz_walk(const struct imap_arg *args, size_t count)
{
	size_t total = 0;
	for (size_t i = 0; i < count; i++) {
		const char *s = imap_arg_string(&args[i]);
		if (s != NULL)
			total += strlen(s) + (imap_arg_is_nil(&args[i]) ? 1 : 0);
		if (args[i].type == IMAP_ARG_LIST)
			total += fuzz_walk(args[i].children, args[i].count);
	}
	return total;
}

/* Parses commands from the input with the given piece size until it runs out. */
static void fuzz_run(const uint8_t *data, size_t size, size_t step)
{
	struct imap_parser_limits limits = {4096, 100000, 8192, 16, 1000};
	imap_parser *p = imap_parser_new(&limits);
	size_t pos = 0;
	while (pos < size) {
		size_t n = size - pos < step ? size - pos : step;
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(p, (const char *)data + pos, n, &used);
		pos += used;
		if (r == IMAP_PARSE_LITERAL) {
			if (imap_parser_literal_size(p) > 4096)
				imap_parser_literal_external(p);
			else
				(void)imap_parser_literal_accept(p);
		} else if (r == IMAP_PARSE_DONE || r == IMAP_PARSE_ERROR) {
			size_t count;
			const struct imap_arg *args = imap_parser_args(p, &count);
			(void)fuzz_walk(args, count);
			(void)imap_parser_tag(p);
			(void)imap_parser_error(p);
			imap_parser_reset(p);
			if (r == IMAP_PARSE_ERROR && used == 0)
				pos++; /* skip the byte that failed */
		}
	}
	imap_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run(data, size, size == 0 ? 1 : size);
	fuzz_run(data, size, 1);
	fuzz_run(data, size, 7);
	return 0;
}
