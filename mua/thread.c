/* thread.c: threading the index by References and In-Reply-To, with the
 * base subject as a fallback (in the spirit of RFC 5256's REFERENCES).
 *
 * Each message gets at most one parent: the last id of its References that
 * names a message present here, else its In-Reply-To, else (when its subject
 * had a Re:/Fwd: prefix) the earliest message with the same base subject.
 * A parent link that would close a cycle is dropped. Rows are then written
 * depth-first: roots by date, children by date. Ids are matched through a
 * sorted array (n log n), so 100,000 messages thread quickly.
 *
 * "By date" everywhere here means the Date header, else INTERNALDATE (a
 * message with neither counts as the oldest), ties broken by UID and then by
 * position, so that the order is total and stable. thread_date_order is the
 * index's flat date order (mutt's sort=date: oldest first). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "header.h"
#include "mua.h"

#define THREAD_MAX_DEPTH 1000

struct id_entry {
	const char *id;
	size_t len;
	size_t index;
};

/* Orders id entries by bytes. */
static int id_compare(const void *a, const void *b)
{
	const struct id_entry *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->id, y->id, n);
	if (c != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* Finds an id ("<...>") among the sorted entries; SIZE_MAX when absent. */
static size_t id_find(const struct id_entry *ids, size_t n, const char *id, size_t len)
{
	struct id_entry key = {id, len, 0};
	const struct id_entry *hit = bsearch(&key, ids, n, sizeof(*ids), id_compare);
	return hit != NULL ? hit->index : SIZE_MAX;
}

/* The base subject: prefixes like "Re:", "Fwd:", "Fw:", "[list]" removed. */
char *thread_base_subject(const char *subject)
{
	const char *p = subject != NULL ? subject : "";
	bool changed = true;
	while (changed) {
		changed = false;
		while (*p == ' ' || *p == '\t')
			p++;
		static const char *const prefixes[] = {"re:", "fwd:", "fw:", "aw:", "sv:"};
		for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
			if (strncasecmp(p, prefixes[i], strlen(prefixes[i])) == 0) {
				p += strlen(prefixes[i]);
				changed = true;
			}
		if (*p == '[') {
			const char *end = strchr(p, ']');
			if (end != NULL && end[1] != '\0') {
				p = end + 1;
				changed = true;
			}
		}
	}
	char *out = xstrdup(p);
	size_t n = strlen(out);
	while (n > 0 && isspace((unsigned char)out[n - 1]))
		out[--n] = '\0';
	return out;
}

/* True when the subject carried a reply or forward prefix. */
static bool subject_is_reply(const char *subject)
{
	const char *p = subject != NULL ? subject : "";
	while (*p == ' ')
		p++;
	return strncasecmp(p, "re:", 3) == 0 || strncasecmp(p, "fwd:", 4) == 0 ||
	       strncasecmp(p, "fw:", 3) == 0 || strncasecmp(p, "aw:", 3) == 0;
}

/* Finds the last "<...>" id in text that is present; SIZE_MAX when none. */
static size_t last_known_id(const struct id_entry *ids, size_t n, const char *text, size_t self)
{
	size_t found = SIZE_MAX;
	const char *p = text != NULL ? text : "";
	while ((p = strchr(p, '<')) != NULL) {
		const char *end = strchr(p, '>');
		if (end == NULL)
			break;
		size_t idx = id_find(ids, n, p, (size_t)(end - p + 1));
		if (idx != SIZE_MAX && idx != self)
			found = idx;
		p = end + 1;
	}
	return found;
}

/* qsort has no context argument: the input being threaded. */
static const struct thread_input *sort_input;

/* The time a message sorts by: its Date header, else its INTERNALDATE. */
static int64_t sort_time(const struct thread_input *m)
{
	return m->date != 0 ? m->date : m->internal_date;
}

/* Orders indexes by date, then by UID, then by position. */
static int index_by_date(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int64_t tx = sort_time(&sort_input[x]), ty = sort_time(&sort_input[y]);
	if (tx != ty)
		return tx < ty ? -1 : 1;
	if (sort_input[x].uid != sort_input[y].uid)
		return sort_input[x].uid < sort_input[y].uid ? -1 : 1;
	return x < y ? -1 : x > y;
}

/* Orders n messages by date (see mua.h). */
void thread_date_order(const struct thread_input *in, size_t n, size_t **order_r)
{
	size_t *order = xmalloc((n + 1) * sizeof(*order));
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	sort_input = in;
	qsort(order, n, sizeof(*order), index_by_date);
	*order_r = order;
}

/* A Date field's value as unix seconds; 0 when missing or garbled. */
int64_t thread_date_value(const char *date)
{
	int64_t t;
	int tz;
	if (date == NULL || header_parse_date(date, &t, &tz) < 0)
		return 0;
	return t;
}

#define THREAD_INTERNALDATE_MAX 64

/* An INTERNALDATE as unix seconds: "dd-Mon-yyyy" read as a Date field's
 * "dd Mon yyyy" (RFC 3501 date-time); 0 when missing or garbled. */
int64_t thread_internaldate_value(const char *internaldate)
{
	if (internaldate == NULL || strlen(internaldate) >= THREAD_INTERNALDATE_MAX)
		return 0;
	char text[THREAD_INTERNALDATE_MAX];
	strcpy(text, internaldate);
	/* Only the two dashes of the date part; the zone's sign stays. */
	char *p = text;
	for (int dashes = 0; dashes < 2; dashes++) {
		p = strchr(p, '-');
		if (p == NULL || p - text > 11)
			return 0;
		*p++ = ' ';
	}
	return thread_date_value(text);
}

/* The name of an order for the status line. */
const char *mua_sort_name(enum mua_sort sort)
{
	static const char *const names[MUA_SORT_COUNT] = {
		[MUA_SORT_THREADS] = "threads",
		[MUA_SORT_DATE] = "date",
		[MUA_SORT_ARRIVAL] = "arrival",
	};
	return sort < MUA_SORT_COUNT ? names[sort] : "?";
}

struct base_entry {
	char *base;
	size_t index;
};

/* Orders base subjects, then dates (the earliest first). */
static int base_compare(const void *a, const void *b)
{
	const struct base_entry *x = a, *y = b;
	int c = strcmp(x->base, y->base);
	if (c != 0)
		return c;
	return index_by_date(&x->index, &y->index);
}

/* Threads n messages (see mua.h). */
void thread_order(const struct thread_input *in, size_t n, size_t **order_r, unsigned **depth_r)
{
	size_t *parent = xmalloc((n + 1) * sizeof(*parent));
	struct id_entry *ids = xmalloc((n + 1) * sizeof(*ids));
	size_t id_count = 0;
	for (size_t i = 0; i < n; i++) {
		parent[i] = SIZE_MAX;
		const char *id = in[i].message_id;
		if (id != NULL && id[0] != '\0') {
			ids[id_count].id = id;
			ids[id_count].len = strlen(id);
			ids[id_count].index = i;
			id_count++;
		}
	}
	qsort(ids, id_count, sizeof(*ids), id_compare);
	sort_input = in;
	/* The base-subject table for the fallback. */
	struct base_entry *bases = xmalloc((n + 1) * sizeof(*bases));
	for (size_t i = 0; i < n; i++) {
		bases[i].base = thread_base_subject(in[i].subject);
		bases[i].index = i;
	}
	qsort(bases, n, sizeof(*bases), base_compare);
	for (size_t i = 0; i < n; i++) {
		size_t p = last_known_id(ids, id_count, in[i].references, i);
		if (p == SIZE_MAX)
			p = last_known_id(ids, id_count, in[i].in_reply_to, i);
		if (p == SIZE_MAX && subject_is_reply(in[i].subject)) {
			char *base = thread_base_subject(in[i].subject);
			struct base_entry key = {base, 0};
			/* The first entry with this base subject is the earliest. */
			size_t lo = 0, hi = n;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (strcmp(bases[mid].base, key.base) < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < n && strcmp(bases[lo].base, base) == 0 && bases[lo].index != i &&
			    base[0] != '\0')
				p = bases[lo].index;
			free(base);
		}
		/* Refuse a parent that has i among its ancestors (a cycle). */
		for (size_t a = p, steps = 0; a != SIZE_MAX && steps <= n; a = parent[a], steps++)
			if (a == i) {
				p = SIZE_MAX;
				break;
			}
		parent[i] = p;
	}
	for (size_t i = 0; i < n; i++)
		free(bases[i].base);
	free(bases);
	free(ids);
	/* Children lists: counting sort by parent, each group by date. */
	size_t *child_start = xcalloc(n + 2, sizeof(*child_start));
	for (size_t i = 0; i < n; i++)
		child_start[(parent[i] == SIZE_MAX ? n : parent[i]) + 1]++;
	for (size_t i = 0; i < n + 1; i++)
		child_start[i + 1] += child_start[i];
	size_t *children = xmalloc((n + 1) * sizeof(*children));
	size_t *fill = xmalloc((n + 2) * sizeof(*fill));
	memcpy(fill, child_start, (n + 2) * sizeof(*fill));
	for (size_t i = 0; i < n; i++)
		children[fill[parent[i] == SIZE_MAX ? n : parent[i]]++] = i;
	for (size_t g = 0; g < n + 1; g++)
		qsort(children + child_start[g], child_start[g + 1] - child_start[g],
		      sizeof(*children), index_by_date);
	/* Depth-first walk with an explicit stack (no recursion limit). */
	size_t *order = xmalloc((n + 1) * sizeof(*order));
	unsigned *depth = xmalloc((n + 1) * sizeof(*depth));
	size_t *stack = xmalloc((n + 1) * sizeof(*stack));
	unsigned *stack_depth = xmalloc((n + 1) * sizeof(*stack_depth));
	size_t rows = 0;
	for (size_t r = child_start[n]; r < child_start[n + 1]; r++) {
		size_t top = 0;
		stack[top] = children[r];
		stack_depth[top++] = 0;
		while (top > 0) {
			size_t m = stack[--top];
			unsigned d = stack_depth[top];
			order[rows] = m;
			depth[rows++] = d > THREAD_MAX_DEPTH ? THREAD_MAX_DEPTH : d;
			for (size_t c = child_start[m + 1]; c-- > child_start[m];) {
				stack[top] = children[c];
				stack_depth[top++] = d + 1;
			}
		}
	}
	free(stack);
	free(stack_depth);
	free(children);
	free(fill);
	free(child_start);
	free(parent);
	*order_r = order;
	*depth_r = depth;
}
