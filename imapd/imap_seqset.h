/* imap_seqset.h: IMAP sequence sets ("1,3:5,9:*", RFC 3501 section 9,
 * sequence-set) for message sequence numbers and UIDs.
 *
 * A set is kept as written, as ranges whose ends may be '*' (the largest
 * number in use, known only when the set is applied). Parsing is bounded:
 * at most IMAP_SEQSET_MAX_RANGES ranges, numbers 1..4294967295. */
#ifndef MAILSTACK_IMAP_SEQSET_H
#define MAILSTACK_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_SEQSET_MAX_RANGES 10000
#define IMAP_SEQSET_STAR 0 /* an end written as '*' */

struct imap_seqrange {
	uint32_t first, last; /* as written; IMAP_SEQSET_STAR for '*'; first may exceed last */
};

struct imap_seqset {
	struct imap_seqrange *ranges;
	size_t count;
};

/* Parses text; 0, or -1 with *err_r (caller frees). */
int imap_seqset_parse(const char *text, struct imap_seqset *set_r, char **err_r);
void imap_seqset_free(struct imap_seqset *set);
/* Whether n is in the set when '*' stands for star. */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star);
/* A range with '*' replaced by star and its ends ordered. */
void imap_seqrange_resolve(const struct imap_seqrange *r, uint32_t star, uint32_t *lo_r,
			   uint32_t *hi_r);
/* Appends the numbers as a compact set ("1:3,7") to out; nums ascending. */
struct buf;
void imap_seqset_format(struct buf *out, const uint32_t *nums, size_t count);

#endif
