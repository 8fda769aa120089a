/* fuzz_mime.c: mime_parse on arbitrary bytes; checks the tree's invariants
 * (offsets inside the message, depth and part limits, non-empty containers),
 * looks up sections and decodes every part. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walks the tree checking invariants and decoding bodies; the number of parts. */
static size_t visit(const char *msg, size_t len, const struct mime_part *p, int depth)
{
	size_t parts = 1;
	if (depth >= MIME_MAX_DEPTH || p->body_offset + p->body_len > len ||
	    p->header_offset + p->header_len != p->body_offset)
		abort();
	if (strcmp(p->type.type, "multipart") == 0 && p->child_count == 0)
		abort();
	char *out;
	size_t n;
	mime_decode_body(msg, p, true, &out, &n);
	free(out);
	for (size_t i = 0; i < p->child_count; i++)
		parts += visit(msg, len, &p->children[i], depth + 1);
	return parts;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	struct mime_part root;
	mime_parse(msg, size, &root);
	if (visit(msg, size, &root, 0) > MIME_MAX_PARTS)
		abort();
	static const char *const sections[] = {"1", "2", "1.1", "1.2", "2.1", "1.1.1", "3.2.1"};
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		(void)mime_find_part(&root, sections[i]);
	mime_part_free(&root);
	return 0;
}
