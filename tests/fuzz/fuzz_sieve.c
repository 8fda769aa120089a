/* fuzz_sieve.c: feeds arbitrary bytes to the Sieve parser (common/sieve.c);
 * whatever it accepts must free cleanly, whatever it refuses must say where. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sieve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sieve_script *script = NULL;
	char *err = NULL;
	if (sieve_parse((const char *)data, size, &script, &err) == 0) {
		sieve_script_free(&script);
	} else {
		if (err == NULL || strncmp(err, "line ", 5) != 0)
			abort();
		free(err);
	}
	return 0;
}
