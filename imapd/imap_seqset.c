/* imap_seqset.c: parsing and applying IMAP sequence sets (see imap_seqset.h).
 * Invariant: a parsed set has 1..IMAP_SEQSET_MAX_RANGES ranges and every
 * number in it is 1..UINT32_MAX or IMAP_SEQSET_STAR. */
#include "imap_seqset.h"

#include <stdlib.h>
#include <string.h>

#include "buffer.h"

/* Reads one seq-number ("*" or 1..4294967295) at *s; advances *s. */
static int seqset_number(const char **s, uint32_t *n_r)
{
	const char *p = *s;
	if (*p == '*') {
		*n_r = IMAP_SEQSET_STAR;
		*s = p + 1;
		return 0;
	}
	if (*p < '1' || *p > '9')
		return -1;
	uint64_t n = 0;
	while (*p >= '0' && *p <= '9') {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > UINT32_MAX)
			return -1;
		p++;
	}
	*n_r = (uint32_t)n;
	*s = p;
	return 0;
}

int imap_seqset_parse(const char *text, struct imap_seqset *set_r, char **err_r)
{
	memset(set_r, 0, sizeof(*set_r));
	size_t cap = 0;
	const char *s = text;
	for (;;) {
		struct imap_seqrange r;
		if (seqset_number(&s, &r.first) < 0)
			goto invalid;
		r.last = r.first;
		if (*s == ':') {
			s++;
			if (seqset_number(&s, &r.last) < 0)
				goto invalid;
		}
		if (set_r->count >= IMAP_SEQSET_MAX_RANGES) {
			imap_seqset_free(set_r);
			*err_r = xstrdup("Sequence set has too many ranges");
			return -1;
		}
		if (set_r->count == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			set_r->ranges = xrealloc(set_r->ranges, cap * sizeof(*set_r->ranges));
		}
		set_r->ranges[set_r->count++] = r;
		if (*s == '\0')
			return 0;
		if (*s != ',')
			goto invalid;
		s++;
	}
invalid:
	imap_seqset_free(set_r);
	*err_r = xstrdup("Invalid sequence set");
	return -1;
}

void imap_seqset_free(struct imap_seqset *set)
{
	free(set->ranges);
	set->ranges = NULL;
	set->count = 0;
}

void imap_seqrange_resolve(const struct imap_seqrange *r, uint32_t star, uint32_t *lo_r,
			   uint32_t *hi_r)
{
	uint32_t a = r->first == IMAP_SEQSET_STAR ? star : r->first;
	uint32_t b = r->last == IMAP_SEQSET_STAR ? star : r->last;
	*lo_r = a < b ? a : b;
	*hi_r = a < b ? b : a;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star)
{
	for (size_t i = 0; i < set->count; i++) {
		uint32_t lo, hi;
		imap_seqrange_resolve(&set->ranges[i], star, &lo, &hi);
		if (n >= lo && n <= hi)
			return true;
	}
	return false;
}

void imap_seqset_format(struct buf *out, const uint32_t *nums, size_t count)
{
	size_t i = 0;
	bool first = true;
	while (i < count) {
		size_t j = i;
		while (j + 1 < count && nums[j + 1] == nums[j] + 1)
			j++;
		if (!first)
			buf_append_char(out, ',');
		first = false;
		if (j == i)
			buf_printf(out, "%u", nums[i]);
		else
			buf_printf(out, "%u:%u", nums[i], nums[j]);
		i = j + 1;
	}
}
