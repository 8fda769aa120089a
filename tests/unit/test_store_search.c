/* test_store_search.c: the query connection beside a store — messages by
 * UID range (flags, keywords, dates, \Recent as store_msg_list gives them),
 * the \Deleted rows alone, the first unseen UID, the zone of an internal
 * date, missing folders, and reads that see the store handle's commits at
 * once but never its open transaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buffer.h"
#include "store.h"
#include "store_search.h"

#define ADDRESS "alice@example.test"

static char test_dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(test_dir, sizeof(test_dir), "/tmp/test_store_search.XXXXXX");
	return mkdtemp(test_dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", test_dir);
	int rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

static const char sample[] = "From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n";

/* A store with `count` messages in INBOX (UIDs 1..count) and its query. */
static void open_both(size_t count, store **st_r, store_query **q_r)
{
	char *err = NULL;
	if (store_open(test_dir, ADDRESS, st_r, &err) != 0)
		fail_msg("store_open: %s", err);
	for (size_t i = 0; i < count; i++) {
		uint32_t flags = i % 3 == 0 ? STORE_FLAG_SEEN : 0;
		if (i % 4 == 1)
			flags |= STORE_FLAG_DELETED;
		assert_int_equal(store_append(*st_r, "INBOX", sample, strlen(sample), flags,
					      i == 2 ? "$Work Later" : NULL, 1000000 + (int64_t)i,
					      "lc-id", NULL, NULL),
				 0);
	}
	if (store_query_open(*st_r, q_r, &err) != 0)
		fail_msg("store_query_open: %s", err);
}

/* Rows by UID range match store_msg_list field by field. */
static void test_msgs_by_range(void **state)
{
	(void)state;
	store *st;
	store_query *q;
	open_both(10, &st, &q);
	struct store_msg *all = NULL, *part = NULL;
	size_t all_count = 0, part_count = 0;
	assert_int_equal(store_msg_list(st, "INBOX", &all, &all_count), 0);
	assert_int_equal(store_query_msgs(q, "INBOX", 3, 7, &part, &part_count), 0);
	assert_int_equal(part_count, 5);
	for (size_t i = 0; i < part_count; i++) {
		const struct store_msg *a = &all[i + 2], *b = &part[i];
		assert_int_equal(b->uid, i + 3);
		assert_int_equal(a->id, b->id);
		assert_int_equal(a->flags, b->flags);
		assert_int_equal(a->internal_date, b->internal_date);
		assert_int_equal(a->internal_tz, b->internal_tz);
		assert_int_equal(a->size, b->size);
		assert_int_equal(a->modseq, b->modseq);
		assert_int_equal(a->recent, b->recent);
		assert_true(b->recent);
		assert_string_equal(b->lifecycle_id, "lc-id");
		if (a->keywords == NULL)
			assert_null(b->keywords);
		else
			assert_string_equal(a->keywords, b->keywords);
	}
	store_msg_list_free(part, part_count);
	/* An empty range of an existing folder; a range past the end. */
	assert_int_equal(store_query_msgs(q, "INBOX", 50, 60, &part, &part_count), 0);
	assert_int_equal(part_count, 0);
	assert_null(part);
	assert_int_equal(store_query_msgs(q, "Trash", 1, 100, &part, &part_count), 0);
	assert_int_equal(part_count, 0);
	/* \Recent follows the store: cleared, the rows say so. */
	assert_int_equal(store_folder_clear_recent(st, "INBOX"), 0);
	assert_int_equal(store_query_msgs(q, "INBOX", 1, 10, &part, &part_count), 0);
	for (size_t i = 0; i < part_count; i++)
		assert_false(part[i].recent);
	store_msg_list_free(part, part_count);
	store_msg_list_free(all, all_count);
	store_query_close(&q);
	assert_null(q);
	store_close(&st);
}

/* The \Deleted rows alone, and the first unseen UID as flags change. */
static void test_flagged_and_first_unseen(void **state)
{
	(void)state;
	store *st;
	store_query *q;
	open_both(9, &st, &q);
	struct store_msg *list = NULL;
	size_t count = 0;
	assert_int_equal(store_query_msgs_flagged(q, "INBOX", STORE_FLAG_DELETED, &list, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(list[0].uid, 2);
	assert_int_equal(list[1].uid, 6);
	store_msg_list_free(list, count);
	assert_int_equal(store_query_msgs_flagged(q, "INBOX", STORE_FLAG_DELETED | STORE_FLAG_SEEN,
						  &list, &count),
			 0);
	assert_int_equal(count, 0);
	uint32_t uid = 99;
	assert_int_equal(store_query_first_unseen(q, "INBOX", &uid), 0);
	assert_int_equal(uid, 2);
	for (uint32_t u = 1; u <= 9; u++)
		assert_int_equal(store_msg_set_flags(st, "INBOX", u, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
						     NULL, 0, NULL),
				 0);
	assert_int_equal(store_query_first_unseen(q, "INBOX", &uid), 0);
	assert_int_equal(uid, 0);
	assert_int_equal(store_msg_set_flags(st, "INBOX", 7, STORE_FLAGS_REMOVE, STORE_FLAG_SEEN,
					     NULL, 0, NULL),
			 0);
	assert_int_equal(store_query_first_unseen(q, "INBOX", &uid), 0);
	assert_int_equal(uid, 7);
	store_query_close(&q);
	store_close(&st);
}

/* A folder that does not exist (or is only a \Noselect placeholder). */
static void test_missing_folder(void **state)
{
	(void)state;
	store *st;
	store_query *q;
	open_both(1, &st, &q);
	struct store_msg *list = NULL;
	size_t count = 0;
	uint32_t uid = 0;
	assert_int_equal(store_query_msgs(q, "Nope", 1, 10, &list, &count), STORE_ERR_NOTFOUND);
	assert_int_equal(store_query_msgs_flagged(q, "Nope", STORE_FLAG_SEEN, &list, &count),
			 STORE_ERR_NOTFOUND);
	assert_int_equal(store_query_first_unseen(q, "Nope", &uid), STORE_ERR_NOTFOUND);
	assert_non_null(strstr(store_query_last_error(q), "Nope"));
	assert_int_equal(store_folder_create(st, "A/B", STORE_SPECIAL_NONE), 0);
	assert_int_equal(store_folder_delete(st, "A"), 0); /* A stays as \Noselect */
	assert_int_equal(store_query_msgs(q, "A", 1, 10, &list, &count), STORE_ERR_NOTFOUND);
	assert_int_equal(store_query_set_internal_tz(q, "INBOX", 42, 60), STORE_ERR_NOTFOUND);
	store_query_close(&q);
	store_close(&st);
}

/* The zone of INTERNALDATE is set beside the instant, within bounds. */
static void test_internal_tz(void **state)
{
	(void)state;
	store *st;
	store_query *q;
	open_both(2, &st, &q);
	assert_int_equal(store_query_set_internal_tz(q, "INBOX", 2, -300), 0);
	struct store_msg m;
	assert_int_equal(store_msg_get(st, "INBOX", 2, &m), 0);
	assert_int_equal(m.internal_tz, -300);
	assert_int_equal(m.internal_date, 1000001);
	store_msg_free(&m);
	assert_int_equal(store_query_set_internal_tz(q, "INBOX", 2, 24 * 60 + 1), STORE_ERR_INVALID);
	store_query_close(&q);
	store_close(&st);
}

/* Reads see the store's commits at once, never its open transaction. */
static void test_snapshots(void **state)
{
	(void)state;
	store *st;
	store_query *q;
	open_both(1, &st, &q);
	struct store_msg *list = NULL;
	size_t count = 0;
	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_append(st, "INBOX", sample, strlen(sample), 0, NULL, 5, NULL, NULL,
				      NULL),
			 0);
	assert_int_equal(store_query_msgs(q, "INBOX", 1, 100, &list, &count), 0);
	assert_int_equal(count, 1);
	store_msg_list_free(list, count);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_query_msgs(q, "INBOX", 1, 100, &list, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(list[1].uid, 2);
	store_msg_list_free(list, count);
	store_query_close(&q);
	store_query_close(&q); /* twice is harmless */
	store_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_msgs_by_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flagged_and_first_unseen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_folder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_internal_tz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
