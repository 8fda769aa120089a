/* test_linereader.c: the line splitter, table-driven; every case is fed
 * whole and again one byte at a time, and both must give the same events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "linereader.h"

struct lr_case {
	const char *name;
	const char *input;
	size_t input_len; /* 0 = strlen(input) */
	size_t max_line;
	const char *expect; /* events, one per line: L+text (CRLF), L-text (LF), T, Btext */
};

/* Escapes CR and NUL so expectations stay readable. */
static void append_escaped(buf_t *out, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r')
			buf_append_str(out, "\\r");
		else if (data[i] == '\0')
			buf_append_str(out, "\\0");
		else if (data[i] == '\n')
			buf_append_str(out, "\\n");
		else
			buf_append_char(out, data[i]);
	}
}

struct driver {
	struct linereader lr;
	buf_t events;
	buf_t bytes; /* exact-byte chunks gathered until the last one */
};

/* Feeds one chunk and records every event; a line "BYTES n" asks for n bytes
 * the way a protocol handler would. */
static void driver_feed(struct driver *d, char *data, size_t len)
{
	size_t off = 0;
	for (;;) {
		size_t used;
		struct linereader_item item;
		enum linereader_event ev = linereader_next(&d->lr, data + off, len - off, &used, &item);
		off += used;
		assert_true(off <= len);
		if (ev == LINEREADER_NEED_MORE) {
			assert_int_equal(off, len);
			return;
		}
		switch (ev) {
		case LINEREADER_LINE:
			assert_int_equal(item.data[item.len], '\0');
			buf_append_str(&d->events, item.crlf ? "L+" : "L-");
			append_escaped(&d->events, item.data, item.len);
			buf_append_char(&d->events, '\n');
			if (item.len > 6 && memcmp(item.data, "BYTES ", 6) == 0)
				linereader_read_bytes(&d->lr, strtoull(item.data + 6, NULL, 10));
			break;
		case LINEREADER_TOO_LONG:
			buf_append_str(&d->events, "T\n");
			break;
		case LINEREADER_BYTES:
			buf_append(&d->bytes, item.data, item.len);
			if (item.last) {
				buf_append_char(&d->events, 'B');
				append_escaped(&d->events, d->bytes.data != NULL ? d->bytes.data : "",
					       d->bytes.len);
				buf_append_char(&d->events, '\n');
				buf_reset(&d->bytes);
			}
			break;
		case LINEREADER_NEED_MORE:
			break;
		}
		/* The held partial line never exceeds its bound. */
		assert_true(linereader_buffered(&d->lr) <= d->lr.max_line + 1);
	}
}

/* Runs one case with the input cut into pieces of `step` bytes (0 = whole). */
static char *run_case(const struct lr_case *tc, size_t step)
{
	size_t len = tc->input_len != 0 ? tc->input_len : strlen(tc->input);
	struct driver d;
	linereader_init(&d.lr, tc->max_line);
	buf_init(&d.events);
	buf_init(&d.bytes);
	if (step == 0)
		step = len > 0 ? len : 1;
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;
		/* A private copy: the reader writes into its input, and the
		 * sanitizer catches any read past the piece it was given. */
		char *piece = xmalloc(n);
		memcpy(piece, tc->input + off, n);
		driver_feed(&d, piece, n);
		free(piece);
	}
	linereader_free(&d.lr);
	buf_free(&d.bytes);
	return buf_steal(&d.events);
}

static const struct lr_case cases[] = {
	{"crlf lines", "a\r\nbc\r\n", 0, 100, "L+a\nL+bc\n"},
	{"bare lf", "a\nb\r\n", 0, 100, "L-a\nL+b\n"},
	{"empty lines", "\r\n\n", 0, 100, "L+\nL-\n"},
	{"bare cr inside", "a\rb\r\n", 0, 100, "L+a\\rb\n"},
	{"cr cr lf", "a\r\r\n", 0, 100, "L+a\\r\n"},
	{"nul inside", "a\0b\r\n", 5, 100, "L+a\\0b\n"},
	{"no end yet", "abc", 0, 100, ""},
	{"exact fit", "12345\r\n", 0, 5, "L+12345\n"},
	{"exact fit lf", "12345\n", 0, 5, "L-12345\n"},
	{"one over", "123456\r\n", 0, 5, "T\n"},
	{"one over lf", "123456\n", 0, 5, "T\n"},
	{"cr then data over", "12345\rx\n", 0, 5, "T\n"},
	{"too long then good", "123456789\r\nok\r\n", 0, 5, "T\nL+ok\n"},
	{"too long reported once", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nxy\n", 0, 4, "T\nL-xy\n"},
	{"two too long", "aaaaaaaaaa\nbbbbbbbbbb\r\nc\r\n", 0, 4, "T\nT\nL+c\n"},
	{"bytes then lines", "BYTES 7\r\nhello\r\nnext\r\n", 0, 100, "L+BYTES 7\nBhello\\r\\n\nL+next\n"},
	{"bytes zero", "BYTES 0\r\nx\r\n", 0, 100, "L+BYTES 0\nB\nL+x\n"},
	{"bytes ignore limit", "BYTES 12\r\n0123456789ab\r\n", 0, 9, "L+BYTES 12\nB0123456789ab\nL+\n"},
	{"bytes with lf inside", "BYTES 4\na\nb\nc\n", 0, 100, "L-BYTES 4\nBa\\nb\\n\nL-c\n"},
	{"bytes not complete", "BYTES 10\r\nabc", 0, 100, "L+BYTES 10\n"},
};

/* Every case, whole. */
static void test_cases_whole(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = run_case(&cases[i], 0);
		if (strcmp(got, cases[i].expect) != 0)
			fail_msg("case '%s': got\n%s\nexpected\n%s", cases[i].name, got,
				 cases[i].expect);
		free(got);
	}
}

/* Every case, one byte at a time and in pieces of 2 and 3. */
static void test_cases_split(void **state)
{
	static const size_t steps[] = {1, 2, 3};
	for (size_t s = 0; s < 3; s++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char *got = run_case(&cases[i], steps[s]);
			if (strcmp(got, cases[i].expect) != 0)
				fail_msg("case '%s' in steps of %zu: got\n%s\nexpected\n%s",
					 cases[i].name, steps[s], got, cases[i].expect);
			free(got);
		}
	}
}

/* Reset forgets a partial line and a pending skip (STARTTLS). */
static void test_reset(void **state)
{
	struct linereader lr;
	linereader_init(&lr, 4);
	char in1[] = "abc";
	size_t used;
	struct linereader_item item;
	assert_int_equal(linereader_next(&lr, in1, 3, &used, &item), LINEREADER_NEED_MORE);
	assert_int_equal(linereader_buffered(&lr), 3);
	linereader_reset(&lr);
	assert_int_equal(linereader_buffered(&lr), 0);
	char in2[] = "xy\r\n";
	assert_int_equal(linereader_next(&lr, in2, 4, &used, &item), LINEREADER_LINE);
	assert_int_equal(item.len, 2);
	assert_memory_equal(item.data, "xy", 2);
	linereader_free(&lr);
}

/* max_line 0 takes the default limit. */
static void test_default_limit(void **state)
{
	struct linereader lr;
	linereader_init(&lr, 0);
	assert_int_equal(lr.max_line, LINEREADER_DEFAULT_MAX_LINE);
	linereader_free(&lr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases_whole),
		cmocka_unit_test(test_cases_split),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_default_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
