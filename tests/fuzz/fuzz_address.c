/* fuzz_address.c: address_list_parse on arbitrary bytes, then formatting and
 * re-checking every item it produced. */
#include <stdint.h>
#include <stdlib.h>

#include "address.h"
#include "buffer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The parser takes a C string's bytes: it stops at nothing, but a NUL
	 * is what callers could hand it at worst. */
	char *text = xstrndup((const char *)data, size);
	struct address_list list;
	address_list_parse((const char *)data, size, &list);
	for (size_t i = 0; i < list.count; i++) {
		const struct mail_address *a = &list.items[i];
		char *spec = mail_address_spec(a);
		char *formatted = mail_address_format(a->name, spec);
		(void)address_spec_valid(spec);
		free(formatted);
		free(spec);
	}
	address_list_free(&list);
	(void)address_spec_valid(text);
	free(text);
	return 0;
}
