/* fuzz_smtp_path.c: smtp_path_parse under every flag combination (the first
 * byte picks the flags), xtext decoding of the same bytes, and the invariant
 * that an accepted path re-parses to the same address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "smtp_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned flags = data[0] & 15;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	struct smtp_path path;
	const char *why;
	if (smtp_path_parse(text, len, flags, &path, &why) == 0) {
		if (!path.is_null && path.domain[0] != '\0') {
			char *again = xasprintf("<%s>", path.address);
			struct smtp_path second;
			if (smtp_path_parse(again, strlen(again), flags, &second, &why) != 0 ||
			    strcmp(second.address, path.address) != 0)
				abort();
			smtp_path_free(&second);
			free(again);
		}
		for (size_t i = 0; i < path.param_count; i++)
			(void)smtp_path_param(&path, path.params[i].keyword, NULL);
		smtp_path_free(&path);
	} else if (why == NULL) {
		abort();
	}
	char *copy = xstrndup(text, len);
	char *decoded;
	if (xtext_decode(copy, &decoded) == 0) {
		char *encoded = xtext_encode(decoded);
		free(encoded);
		free(decoded);
	}
	free(copy);
	return 0;
}
