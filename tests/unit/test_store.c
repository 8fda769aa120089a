/* test_store.c: the mail store — opening and default folders, folder names,
 * create/rename/delete/subscribe, UID and UIDVALIDITY rules, MODSEQ and
 * UNCHANGEDSINCE, expunge history, copy and move, group commit, streaming
 * append and chunked reads, two handles on one file, the notify file, the
 * mapping of a held write lock to STORE_ERR_TEMP, and a timing of listing
 * 100,000 messages (printed, not asserted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "buffer.h"
#include "store.h"

#define ADDRESS "alice@example.test"

static char test_dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(test_dir, sizeof(test_dir), "/tmp/test_store.XXXXXX");
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

/* Opens alice's store in the test directory, failing the test if it cannot. */
static store *open_store(void)
{
	store *st = NULL;
	char *err = NULL;
	int rc = store_open(test_dir, ADDRESS, &st, &err);
	if (rc != 0)
		fail_msg("store_open: %s", err);
	assert_non_null(st);
	return st;
}

static const char sample[] = "From: Alice <alice@example.test>\r\n"
			     "To: bob@example.test\r\n"
			     "Cc: carol@example.test\r\n"
			     "Subject: =?UTF-8?Q?caf=C3=A9?= time\r\n"
			     "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
			     "Message-ID: <1@example.test>\r\n"
			     "In-Reply-To: <0@example.test>\r\n"
			     "References: <0@example.test>\r\n"
			     "\r\n"
			     "Hello Bob.\r\n";

/* Appends the sample message to folder and returns its UID. */
static uint32_t append_sample(store *st, const char *folder, uint32_t flags)
{
	uint32_t uid = 0, uidvalidity = 0;
	int rc = store_append(st, folder, sample, strlen(sample), flags, NULL, 0, "LC1", &uid,
			      &uidvalidity);
	if (rc != 0)
		fail_msg("store_append: %s", store_last_error(st));
	assert_true(uid > 0);
	assert_true(uidvalidity > 0);
	return uid;
}

/* Reads one folder, failing the test if it is missing. */
static struct store_folder get_folder(store *st, const char *name)
{
	struct store_folder f;
	int rc = store_folder_get(st, name, &f);
	if (rc != 0)
		fail_msg("store_folder_get %s: %s", name, store_last_error(st));
	return f;
}

/* Checks every folder's kept counters against a recount of its messages,
 * through a connection of our own. */
static void check_counters(store *st)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(store_db_path(st), &db), SQLITE_OK);
	sqlite3_stmt *stmt = NULL;
	assert_int_equal(sqlite3_prepare_v2(db,
		"SELECT f.name, f.messages, f.unseen, f.recent, f.size, "
		"(SELECT count(*) FROM messages m WHERE m.folder_id = f.id), "
		"(SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND (m.flags & 1) = 0), "
		"(SELECT count(*) FROM messages m WHERE m.folder_id = f.id "
		"  AND m.uid >= f.first_recent_uid), "
		"(SELECT coalesce(sum(size), 0) FROM messages m WHERE m.folder_id = f.id), "
		"f.highestmodseq >= (SELECT coalesce(max(modseq), 0) FROM messages m "
		"  WHERE m.folder_id = f.id) FROM folders f", -1, &stmt, NULL), SQLITE_OK);
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		for (int i = 1; i <= 4; i++)
			if (sqlite3_column_int64(stmt, i) != sqlite3_column_int64(stmt, i + 4))
				fail_msg("folder %s: counter %d is %lld, recount %lld",
					 sqlite3_column_text(stmt, 0), i,
					 (long long)sqlite3_column_int64(stmt, i),
					 (long long)sqlite3_column_int64(stmt, i + 4));
		assert_int_equal(sqlite3_column_int(stmt, 9), 1);
	}
	sqlite3_finalize(stmt);
	/* No body is left without a message, none is missing. */
	assert_int_equal(sqlite3_prepare_v2(db,
		"SELECT (SELECT count(*) FROM bodies b WHERE NOT EXISTS "
		"  (SELECT 1 FROM messages m WHERE m.body_id = b.id)), "
		"(SELECT count(*) FROM messages m WHERE NOT EXISTS "
		"  (SELECT 1 FROM bodies b WHERE b.id = m.body_id)), "
		"(SELECT user_version FROM pragma_user_version)", -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(stmt, 0), 0);
	assert_int_equal(sqlite3_column_int(stmt, 1), 0);
	assert_int_equal(sqlite3_column_int(stmt, 2), 2);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
}

/* A new mailbox has the file, the notify file and the six default folders
 * with their roles, all subscribed; INBOX comes first. */
static void test_open_defaults(void **state)
{
	(void)state;
	store *st = NULL;
	char *err = NULL;
	assert_int_equal(store_open(test_dir, "Alice@Example.TEST", &st, &err), 0);
	char *path = xasprintf("%s/mail/example.test/alice.sqlite", test_dir);
	assert_string_equal(store_db_path(st), path);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	free(path);
	path = xasprintf("%s/mail/example.test/alice.notify", test_dir);
	assert_string_equal(store_notify_path(st), path);
	assert_int_equal(stat(path, &sb), 0);
	free(path);

	struct store_folder *list = NULL;
	size_t count = 0;
	assert_int_equal(store_folder_list(st, &list, &count), 0);
	assert_int_equal(count, 6);
	static const struct {
		const char *name;
		enum store_special_use use;
	} want[] = {{"INBOX", STORE_SPECIAL_INBOX},    {"Archive", STORE_SPECIAL_ARCHIVE},
		    {"Drafts", STORE_SPECIAL_DRAFTS},  {"Junk", STORE_SPECIAL_JUNK},
		    {"Sent", STORE_SPECIAL_SENT},      {"Trash", STORE_SPECIAL_TRASH}};
	for (size_t i = 0; i < count; i++) {
		assert_string_equal(list[i].name, want[i].name);
		assert_int_equal(list[i].special_use, want[i].use);
		assert_true(list[i].subscribed);
		assert_false(list[i].noselect);
		assert_int_equal(list[i].uidnext, 1);
		assert_int_equal(list[i].messages, 0);
		assert_true(list[i].uidvalidity > 0);
		assert_true(list[i].highestmodseq > 0);
	}
	/* All UIDVALIDITYs differ. */
	for (size_t i = 0; i < count; i++)
		for (size_t j = i + 1; j < count; j++)
			assert_int_not_equal(list[i].uidvalidity, list[j].uidvalidity);
	store_folder_list_free(list, count);
	store_close(&st);
	assert_null(st);

	/* Opening again keeps what is there (no second set of folders). */
	st = open_store();
	assert_int_equal(store_folder_list(st, &list, &count), 0);
	assert_int_equal(count, 6);
	store_folder_list_free(list, count);
	store_close(&st);

	assert_string_equal(store_special_use_name(STORE_SPECIAL_DRAFTS), "\\Drafts");
	assert_string_equal(store_special_use_name(STORE_SPECIAL_SENT), "\\Sent");
	assert_string_equal(store_special_use_name(STORE_SPECIAL_TRASH), "\\Trash");
	assert_string_equal(store_special_use_name(STORE_SPECIAL_JUNK), "\\Junk");
	assert_string_equal(store_special_use_name(STORE_SPECIAL_ARCHIVE), "\\Archive");
	assert_null(store_special_use_name(STORE_SPECIAL_INBOX));
	assert_null(store_special_use_name(STORE_SPECIAL_NONE));
}

/* A user name is data, never a path. */
/* store_mailbox_file names the files store_open makes, and refuses what
 * store_open refuses. */
static void test_mailbox_file(void **state)
{
	(void)state;
	char *path = store_mailbox_file("/d", "Bob.Smith@Example.TEST", ".vacation");
	assert_string_equal(path, "/d/mail/example.test/bob.smith.vacation");
	free(path);
	store *st = NULL;
	char *err = NULL;
	assert_int_equal(store_open(test_dir, "Carol@Example.Test", &st, &err), 0);
	path = store_mailbox_file(test_dir, "carol@example.test", ".sqlite");
	assert_string_equal(path, store_db_path(st));
	free(path);
	path = store_mailbox_file(test_dir, "CAROL@example.test", ".notify");
	assert_string_equal(path, store_notify_path(st));
	free(path);
	store_close(&st);
	static const char *const bad[] = {"noat", "../x@example.test", "x@..", "x@a/b",
					  "a\\b@c.test"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(store_mailbox_file("/d", bad[i], ".sqlite"));
	assert_null(store_mailbox_file("/d", NULL, ".sqlite"));
}

static void test_open_bad_addresses(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"noat",         "@example.test", "alice@",        "a/b@example.test",
		"../x@example.test", "x@..",     "x@a/b",         "x@.",
		".hidden@example.test", ("a\x01" "b@example.test"), "a\\b@example.test",
		"x@example\ttest",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		store *st = NULL;
		char *err = NULL;
		assert_int_equal(store_open(test_dir, bad[i], &st, &err), STORE_ERR_INVALID);
		assert_null(st);
		assert_non_null(err);
		free(err);
	}
	/* Split at the last '@'. */
	store *st = NULL;
	char *err = NULL;
	assert_int_equal(store_open(test_dir, "\"a@b\"@example.test", &st, &err), 0);
	assert_non_null(strstr(store_db_path(st), "/mail/example.test/\"a@b\".sqlite"));
	store_close(&st);
}

/* Folder names: table of accepted and refused names. */
static void test_folder_names(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		bool valid;
	} cases[] = {
		{"INBOX", true},          {"Work", true},           {"Work/Projects", true},
		{"caf\xc3\xa9", true},    {"a b", true},            {"50% off*", true},
		{"", false},              {"/Work", false},         {"Work/", false},
		{"Work//x", false},       {"..", false},            {"a/../b", false},
		{"a/..", false},          {".", false},             {"a/./b", false},
		{"a\tb", false},          {"a\nb", false},          {"a\x7f", false},
		{"a\xc2\x85", false},     {"\xff", false},          {"\xc3", false},
		{"\xc0\xaf", false},      {"\xed\xa0\x80", false},  {"...", true},
		{".hidden", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (store_folder_name_valid(cases[i].name) != cases[i].valid)
			fail_msg("name %zu \"%s\": expected %s", i, cases[i].name,
				 cases[i].valid ? "valid" : "invalid");
	}
	assert_false(store_folder_name_valid(NULL));
	/* 512 bytes is the limit. */
	char name[600];
	memset(name, 'a', sizeof(name));
	name[512] = '\0';
	assert_true(store_folder_name_valid(name));
	name[512] = 'a';
	name[513] = '\0';
	assert_false(store_folder_name_valid(name));

	store *st = open_store();
	assert_int_equal(store_folder_create(st, "a/../b", STORE_SPECIAL_NONE), STORE_ERR_INVALID);
	assert_int_equal(store_folder_create(st, "/etc", STORE_SPECIAL_NONE), STORE_ERR_INVALID);
	assert_true(strlen(store_last_error(st)) > 0);
	struct store_folder f;
	assert_int_equal(store_folder_get(st, "x//y", &f), STORE_ERR_INVALID);
	assert_int_equal(store_append(st, "\x01", "x", 1, 0, NULL, 0, NULL, NULL, NULL),
			 STORE_ERR_INVALID);
	store_close(&st);
}

/* Creating folders: parents appear, duplicates are refused, INBOX is
 * case-insensitive, roles are kept. */
static void test_folder_create(void **state)
{
	(void)state;
	store *st = open_store();
	assert_int_equal(store_folder_create(st, "Work/Projects/2024", STORE_SPECIAL_NONE), 0);
	struct store_folder f = get_folder(st, "Work");
	assert_false(f.noselect);
	store_folder_free(&f);
	assert_null(f.name);
	f = get_folder(st, "Work/Projects");
	store_folder_free(&f);
	f = get_folder(st, "Work/Projects/2024");
	assert_string_equal(f.name, "Work/Projects/2024");
	assert_false(f.subscribed);
	store_folder_free(&f);
	assert_int_equal(store_folder_create(st, "Work", STORE_SPECIAL_NONE), STORE_ERR_EXISTS);
	assert_int_equal(store_folder_create(st, "inbox", STORE_SPECIAL_NONE), STORE_ERR_EXISTS);
	f = get_folder(st, "iNbOx");
	assert_string_equal(f.name, "INBOX");
	store_folder_free(&f);
	/* Children of INBOX are spelt INBOX whatever the case given. */
	assert_int_equal(store_folder_create(st, "inbox/sub", STORE_SPECIAL_NONE), 0);
	f = get_folder(st, "INBOX/sub");
	assert_string_equal(f.name, "INBOX/sub");
	store_folder_free(&f);
	/* Other names are case-sensitive. */
	assert_int_equal(store_folder_create(st, "work", STORE_SPECIAL_NONE), 0);
	assert_int_equal(store_folder_get(st, "Nope", &f), STORE_ERR_NOTFOUND);
	assert_int_equal(store_folder_create(st, "Old Mail", STORE_SPECIAL_ARCHIVE), 0);
	f = get_folder(st, "Old Mail");
	assert_int_equal(f.special_use, STORE_SPECIAL_ARCHIVE);
	store_folder_free(&f);
	/* Only INBOX is INBOX. */
	assert_int_equal(store_folder_create(st, "Second", STORE_SPECIAL_INBOX),
			 STORE_ERR_INVALID);
	assert_int_equal(store_folder_create(st, "Third", (enum store_special_use)99),
			 STORE_ERR_INVALID);
	store_close(&st);
}

/* UIDs ascend and are never reused; a folder created again under an old
 * name gets a new, greater UIDVALIDITY. */
static void test_uid_rules(void **state)
{
	(void)state;
	store *st = open_store();
	assert_int_equal(store_folder_create(st, "Box", STORE_SPECIAL_NONE), 0);
	struct store_folder f = get_folder(st, "Box");
	uint32_t first_validity = f.uidvalidity;
	store_folder_free(&f);
	uint32_t a = append_sample(st, "Box", 0);
	uint32_t b = append_sample(st, "Box", 0);
	uint32_t c = append_sample(st, "Box", 0);
	assert_int_equal(a, 1);
	assert_int_equal(b, 2);
	assert_int_equal(c, 3);
	uint32_t *removed = NULL;
	size_t removed_count = 0;
	assert_int_equal(store_expunge(st, "Box", &c, 1, &removed, &removed_count), 0);
	assert_int_equal(removed_count, 1);
	assert_int_equal(removed[0], 3);
	free(removed);
	/* UID 3 is never handed out again. */
	assert_int_equal(append_sample(st, "Box", 0), 4);
	uint32_t *all = NULL;
	size_t all_count = 0;
	assert_int_equal(store_uid_list(st, "Box", &all, &all_count), 0);
	assert_int_equal(all_count, 3);
	assert_int_equal(all[0], 1);
	assert_int_equal(all[1], 2);
	assert_int_equal(all[2], 4);
	free(all);
	assert_int_equal(store_uid_list(st, "Nope", &all, &all_count), STORE_ERR_NOTFOUND);
	f = get_folder(st, "Box");
	assert_int_equal(f.uidnext, 5);
	assert_int_equal(f.messages, 3);
	store_folder_free(&f);

	/* Delete and create again: a different UIDVALIDITY, UIDs from 1. */
	assert_int_equal(store_folder_delete(st, "Box"), 0);
	assert_int_equal(store_folder_get(st, "Box", &f), STORE_ERR_NOTFOUND);
	assert_int_equal(store_folder_create(st, "Box", STORE_SPECIAL_NONE), 0);
	f = get_folder(st, "Box");
	assert_true(f.uidvalidity > first_validity);
	assert_int_equal(f.uidnext, 1);
	assert_int_equal(f.messages, 0);
	store_folder_free(&f);
	uint32_t uidvalidity = 0, uid = 0;
	assert_int_equal(store_append(st, "Box", "x\r\n", 3, 0, NULL, 0, NULL, &uid, &uidvalidity),
			 0);
	assert_int_equal(uid, 1);
	assert_true(uidvalidity > first_validity);
	/* Appending to a missing folder: NOTFOUND. */
	assert_int_equal(store_append(st, "Nope", "x", 1, 0, NULL, 0, NULL, NULL, NULL),
			 STORE_ERR_NOTFOUND);
	store_close(&st);
}

/* Appended messages: list, get, load, header, parsed headers, counters,
 * usage, lifecycle lookup. */
static void test_append_and_read(void **state)
{
	(void)state;
	store *st = open_store();
	uint32_t uid = 0;
	assert_int_equal(store_append(st, "INBOX", sample, strlen(sample), STORE_FLAG_FLAGGED,
				      "$Label1 Work", 1000000000, "LC42", &uid, NULL),
			 0);
	append_sample(st, "INBOX", STORE_FLAG_SEEN);
	struct store_msg *list = NULL;
	size_t count = 0;
	assert_int_equal(store_msg_list(st, "INBOX", &list, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(list[0].uid, uid);
	assert_int_equal(list[0].flags, STORE_FLAG_FLAGGED);
	assert_string_equal(list[0].keywords, "$Label1 Work");
	assert_int_equal(list[0].internal_date, 1000000000);
	assert_int_equal(list[0].size, strlen(sample));
	assert_string_equal(list[0].lifecycle_id, "LC42");
	assert_true(list[0].recent);
	assert_null(list[1].keywords);
	assert_true(list[1].modseq > list[0].modseq);
	/* internal_date 0 means now. */
	assert_true(list[1].internal_date >= time(NULL) - 60);
	store_msg_list_free(list, count);

	struct store_folder f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 2);
	assert_int_equal(f.unseen, 1);
	assert_int_equal(f.recent, 2);
	assert_int_equal(f.size, 2 * strlen(sample));
	assert_int_equal(f.uidnext, 3);
	store_folder_free(&f);

	struct store_msg m;
	assert_int_equal(store_msg_get(st, "INBOX", uid, &m), 0);
	assert_int_equal(m.uid, uid);
	assert_string_equal(m.lifecycle_id, "LC42");
	store_msg_free(&m);
	assert_null(m.keywords);
	assert_int_equal(store_msg_get(st, "INBOX", 99, &m), STORE_ERR_NOTFOUND);

	char *data = NULL;
	size_t len = 0;
	assert_int_equal(store_msg_load(st, "INBOX", uid, &data, &len), 0);
	assert_int_equal(len, strlen(sample));
	assert_memory_equal(data, sample, len);
	free(data);
	assert_int_equal(store_msg_load_header(st, "INBOX", uid, &data, &len), 0);
	const char *body = strstr(sample, "\r\n\r\n") + 4;
	assert_int_equal(len, (size_t)(body - sample));
	assert_memory_equal(data, sample, len);
	free(data);
	assert_int_equal(store_msg_load(st, "INBOX", 77, &data, &len), STORE_ERR_NOTFOUND);

	struct store_msg_headers h;
	assert_int_equal(store_msg_headers_get(st, "INBOX", uid, &h), 0);
	assert_int_equal(h.uid, uid);
	assert_string_equal(h.subject, "=?UTF-8?Q?caf=C3=A9?= time");
	assert_string_equal(h.subject_utf8, "caf\xc3\xa9 time");
	assert_string_equal(h.from, "Alice <alice@example.test>");
	assert_string_equal(h.to, "bob@example.test");
	assert_string_equal(h.cc, "carol@example.test");
	assert_null(h.bcc);
	assert_null(h.sender);
	assert_string_equal(h.message_id, "<1@example.test>");
	assert_string_equal(h.in_reply_to, "<0@example.test>");
	assert_string_equal(h.references, "<0@example.test>");
	assert_string_equal(h.date, "Tue, 1 Jul 2003 10:52:37 +0200");
	assert_int_equal(h.date_time, 1057049557);
	assert_int_equal(h.date_tz, 120);
	assert_int_equal(h.header_size, (size_t)(body - sample));
	store_msg_headers_free(&h);
	assert_null(h.subject);
	struct store_msg_headers *hl = NULL;
	assert_int_equal(store_msg_headers_list(st, "INBOX", &hl, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(hl[1].uid, uid + 1);
	store_msg_headers_list_free(hl, count);

	/* A message without a header section still gets a row. */
	uint32_t bare = 0;
	assert_int_equal(store_append(st, "Drafts", "no header here", 14, 0, NULL, 0, NULL,
				      &bare, NULL), 0);
	assert_int_equal(store_msg_headers_get(st, "Drafts", bare, &h), 0);
	assert_null(h.subject);
	store_msg_headers_free(&h);

	uint64_t bytes = 0, messages = 0;
	assert_int_equal(store_usage(st, &bytes, &messages), 0);
	assert_int_equal(messages, 3);
	assert_int_equal(bytes, 2 * strlen(sample) + 14);

	char **folders = NULL;
	uint32_t *uids = NULL;
	assert_int_equal(store_find_lifecycle(st, "LC42", &folders, &uids, &count), 0);
	assert_int_equal(count, 1);
	assert_string_equal(folders[0], "INBOX");
	assert_null(folders[1]);
	assert_int_equal(uids[0], uid);
	store_strv_free(folders);
	free(uids);
	assert_int_equal(store_find_lifecycle(st, "nothing", &folders, &uids, &count), 0);
	assert_int_equal(count, 0);
	store_strv_free(folders);
	free(uids);

	/* Bad keywords are refused. */
	assert_int_equal(store_append(st, "INBOX", "x", 1, 0, "bad\r\nword", 0, NULL, NULL, NULL),
			 STORE_ERR_INVALID);

	/* \Recent clears once. */
	assert_int_equal(store_folder_clear_recent(st, "INBOX"), 0);
	f = get_folder(st, "INBOX");
	assert_int_equal(f.recent, 0);
	store_folder_free(&f);
	assert_int_equal(store_msg_get(st, "INBOX", uid, &m), 0);
	assert_false(m.recent);
	store_msg_free(&m);
	check_counters(st);
	store_close(&st);
}

/* Flags: set, add, remove, keywords case-insensitively, MODSEQ bumps only
 * on change, UNCHANGEDSINCE, and list_changed. */
static void test_flags_modseq(void **state)
{
	(void)state;
	store *st = open_store();
	uint32_t a = append_sample(st, "INBOX", 0);
	uint32_t b = append_sample(st, "INBOX", 0);
	struct store_msg m;
	assert_int_equal(store_msg_get(st, "INBOX", a, &m), 0);
	uint64_t start = m.modseq;
	store_msg_free(&m);
	struct store_folder f = get_folder(st, "INBOX");
	uint64_t highest = f.highestmodseq;
	assert_int_equal(f.unseen, 2);
	store_folder_free(&f);

	uint64_t modseq = 0;
	assert_int_equal(store_msg_set_flags(st, "INBOX", a, STORE_FLAGS_ADD,
					     STORE_FLAG_SEEN | STORE_FLAG_FLAGGED, "Work", 0,
					     &modseq), 0);
	assert_true(modseq > start);
	assert_true(modseq > highest);
	f = get_folder(st, "INBOX");
	assert_int_equal(f.highestmodseq, modseq);
	assert_int_equal(f.unseen, 1);
	store_folder_free(&f);

	/* Nothing changes: the MODSEQ stays. */
	uint64_t again = 0;
	assert_int_equal(store_msg_set_flags(st, "INBOX", a, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					     "work", 0, &again), 0);
	assert_int_equal(again, modseq);

	assert_int_equal(store_msg_set_flags(st, "INBOX", a, STORE_FLAGS_ADD, 0, "Home work", 0,
					     &again), 0);
	assert_true(again > modseq);
	assert_int_equal(store_msg_get(st, "INBOX", a, &m), 0);
	assert_int_equal(m.flags, STORE_FLAG_SEEN | STORE_FLAG_FLAGGED);
	assert_string_equal(m.keywords, "Work Home");
	store_msg_free(&m);

	assert_int_equal(store_msg_set_flags(st, "INBOX", a, STORE_FLAGS_REMOVE,
					     STORE_FLAG_FLAGGED, "WORK", 0, &modseq), 0);
	assert_int_equal(store_msg_get(st, "INBOX", a, &m), 0);
	assert_int_equal(m.flags, STORE_FLAG_SEEN);
	assert_string_equal(m.keywords, "Home");
	assert_int_equal(m.modseq, modseq);
	store_msg_free(&m);

	assert_int_equal(store_msg_set_flags(st, "INBOX", a, STORE_FLAGS_SET, STORE_FLAG_DRAFT,
					     NULL, 0, &modseq), 0);
	assert_int_equal(store_msg_get(st, "INBOX", a, &m), 0);
	assert_int_equal(m.flags, STORE_FLAG_DRAFT);
	assert_null(m.keywords);
	store_msg_free(&m);

	/* UNCHANGEDSINCE (RFC 7162 3.2). */
	uint64_t old = modseq - 1;
	assert_int_equal(store_msg_set_flags(st, "INBOX", a, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					     NULL, old, NULL), STORE_ERR_MODIFIED);
	assert_int_equal(store_msg_get(st, "INBOX", a, &m), 0);
	assert_int_equal(m.flags, STORE_FLAG_DRAFT);
	store_msg_free(&m);
	assert_int_equal(store_msg_set_flags(st, "INBOX", a, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					     NULL, modseq, &again), 0);
	assert_true(again > modseq);

	/* Only a changed since modseq. */
	struct store_msg *list = NULL;
	size_t count = 0;
	assert_int_equal(store_msg_list_changed(st, "INBOX", modseq, &list, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(list[0].uid, a);
	store_msg_list_free(list, count);
	assert_int_equal(store_msg_list_changed(st, "INBOX", 0, &list, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(list[0].uid, a);
	assert_int_equal(list[1].uid, b);
	store_msg_list_free(list, count);
	assert_int_equal(store_msg_set_flags(st, "INBOX", 99, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					     NULL, 0, NULL), STORE_ERR_NOTFOUND);
	check_counters(st);
	store_close(&st);
}

/* Expunge: of \Deleted messages or given UIDs; the history answers
 * "what went since MODSEQ n". */
static void test_expunge(void **state)
{
	(void)state;
	store *st = open_store();
	uint32_t uids[5];
	for (size_t i = 0; i < 5; i++)
		uids[i] = append_sample(st, "INBOX", i % 2 == 0 ? STORE_FLAG_DELETED : 0);
	struct store_folder f = get_folder(st, "INBOX");
	uint64_t before = f.highestmodseq;
	store_folder_free(&f);

	uint32_t *removed = NULL;
	size_t count = 0;
	assert_int_equal(store_expunge(st, "INBOX", NULL, 0, &removed, &count), 0);
	assert_int_equal(count, 3);
	assert_int_equal(removed[0], uids[0]);
	assert_int_equal(removed[1], uids[2]);
	assert_int_equal(removed[2], uids[4]);
	free(removed);
	f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 2);
	assert_int_equal(f.size, 2 * strlen(sample));
	assert_true(f.highestmodseq > before);
	uint64_t after_first = f.highestmodseq;
	store_folder_free(&f);

	/* Given UIDs, in any order, with one unknown and one twice. */
	uint32_t which[] = {uids[3], 999, uids[1], uids[3]};
	assert_int_equal(store_expunge(st, "INBOX", which, 4, &removed, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(removed[0], uids[1]);
	assert_int_equal(removed[1], uids[3]);
	free(removed);
	/* Nothing left to do. */
	assert_int_equal(store_expunge(st, "INBOX", NULL, 0, &removed, &count), 0);
	assert_int_equal(count, 0);
	free(removed);

	uint32_t *gone = NULL;
	assert_int_equal(store_expunged_since(st, "INBOX", before, &gone, &count), 0);
	assert_int_equal(count, 5);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(gone[i], uids[i]);
	free(gone);
	assert_int_equal(store_expunged_since(st, "INBOX", after_first, &gone, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(gone[0], uids[1]);
	assert_int_equal(gone[1], uids[3]);
	free(gone);
	f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 0);
	assert_int_equal(f.unseen, 0);
	assert_int_equal(f.size, 0);
	check_counters(st);
	assert_int_equal(store_expunged_since(st, "INBOX", f.highestmodseq, &gone, &count), 0);
	assert_int_equal(count, 0);
	free(gone);
	store_folder_free(&f);
	store_close(&st);
}

/* Copy keeps flags and shares bodies; move is one step that records the
 * source UIDs as expunged. */
static void test_copy_move(void **state)
{
	(void)state;
	store *st = open_store();
	uint32_t a = append_sample(st, "INBOX", STORE_FLAG_SEEN);
	uint32_t b = append_sample(st, "INBOX", STORE_FLAG_FLAGGED);
	assert_int_equal(store_cache_put(st, "INBOX", a, "envelope", "(\"x\")"), 0);
	assert_int_equal(store_folder_create(st, "Saved", STORE_SPECIAL_NONE), 0);
	struct store_folder saved = get_folder(st, "Saved");

	uint32_t src[] = {b, 12345, a};
	uint32_t *dest = NULL, validity = 0;
	assert_int_equal(store_copy(st, "INBOX", src, 3, "Saved", false, &dest, &validity), 0);
	assert_int_equal(validity, saved.uidvalidity);
	assert_int_equal(dest[0], 1);
	assert_int_equal(dest[1], 0);
	assert_int_equal(dest[2], 2);
	free(dest);
	struct store_msg m;
	assert_int_equal(store_msg_get(st, "Saved", 1, &m), 0);
	assert_int_equal(m.flags, STORE_FLAG_FLAGGED);
	assert_true(m.recent);
	store_msg_free(&m);
	char *value = NULL;
	assert_int_equal(store_cache_get(st, "Saved", 2, "envelope", &value), 0);
	assert_string_equal(value, "(\"x\")");
	free(value);
	struct store_msg_headers h;
	assert_int_equal(store_msg_headers_get(st, "Saved", 2, &h), 0);
	assert_string_equal(h.message_id, "<1@example.test>");
	store_msg_headers_free(&h);

	/* The original goes; the copy stays readable. */
	assert_int_equal(store_expunge(st, "INBOX", &a, 1, NULL, NULL), 0);
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(store_msg_load(st, "Saved", 2, &data, &len), 0);
	assert_memory_equal(data, sample, len);
	free(data);

	/* Move (after \Recent was cleared at the source: it is set again). */
	assert_int_equal(store_folder_clear_recent(st, "INBOX"), 0);
	assert_int_equal(store_folder_clear_recent(st, "Saved"), 0);
	check_counters(st);
	struct store_folder inbox = get_folder(st, "INBOX");
	uint64_t before = inbox.highestmodseq;
	store_folder_free(&inbox);
	assert_int_equal(store_copy(st, "INBOX", &b, 1, "Saved", true, &dest, &validity), 0);
	assert_int_equal(dest[0], 3);
	free(dest);
	assert_int_equal(store_msg_get(st, "INBOX", b, &m), STORE_ERR_NOTFOUND);
	assert_int_equal(store_msg_get(st, "Saved", 3, &m), 0);
	assert_int_equal(m.flags, STORE_FLAG_FLAGGED);
	store_msg_free(&m);
	uint32_t *gone = NULL;
	size_t count = 0;
	assert_int_equal(store_expunged_since(st, "INBOX", before, &gone, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(gone[0], b);
	free(gone);
	inbox = get_folder(st, "INBOX");
	assert_int_equal(inbox.messages, 0);
	store_folder_free(&inbox);
	store_folder_free(&saved);
	saved = get_folder(st, "Saved");
	assert_int_equal(saved.messages, 3);
	assert_int_equal(saved.recent, 1);
	assert_int_equal(saved.uidnext, 4);
	store_folder_free(&saved);
	/* Errors. */
	assert_int_equal(store_copy(st, "INBOX", &b, 1, "Nope", false, NULL, NULL),
			 STORE_ERR_NOTFOUND);
	assert_int_equal(store_cache_get(st, "Saved", 1, "nokey", &value), STORE_ERR_NOTFOUND);
	check_counters(st);
	store_close(&st);
}

/* RENAME: children follow, subscriptions follow; INBOX is emptied into the
 * new folder; names that exist or nest into themselves are refused. */
static void test_rename(void **state)
{
	(void)state;
	store *st = open_store();
	assert_int_equal(store_folder_create(st, "Work/Old", STORE_SPECIAL_NONE), 0);
	assert_int_equal(store_folder_subscribe(st, "Work/Old", true), 0);
	append_sample(st, "Work/Old", 0);
	struct store_folder f = get_folder(st, "Work/Old");
	uint32_t validity = f.uidvalidity;
	store_folder_free(&f);

	assert_int_equal(store_folder_rename(st, "Work", "Job"), 0);
	assert_int_equal(store_folder_get(st, "Work", &f), STORE_ERR_NOTFOUND);
	assert_int_equal(store_folder_get(st, "Work/Old", &f), STORE_ERR_NOTFOUND);
	f = get_folder(st, "Job/Old");
	assert_int_equal(f.messages, 1);
	assert_int_equal(f.uidvalidity, validity);
	assert_true(f.subscribed);
	store_folder_free(&f);
	/* Into a new hierarchy: parents are made. */
	assert_int_equal(store_folder_rename(st, "Job/Old", "Archive/2023/Old"), 0);
	f = get_folder(st, "Archive/2023");
	store_folder_free(&f);
	f = get_folder(st, "Archive");
	assert_int_equal(f.special_use, STORE_SPECIAL_ARCHIVE);
	store_folder_free(&f);

	assert_int_equal(store_folder_rename(st, "Job", "Sent"), STORE_ERR_EXISTS);
	assert_int_equal(store_folder_rename(st, "Job", "Job/Sub"), STORE_ERR_INVALID);
	assert_int_equal(store_folder_rename(st, "Nope", "Other"), STORE_ERR_NOTFOUND);
	assert_int_equal(store_folder_rename(st, "Job", "inbox"), STORE_ERR_EXISTS);
	assert_int_equal(store_folder_rename(st, "Job", "a/../b"), STORE_ERR_INVALID);
	/* "Jobs" is not a child of "Job". */
	assert_int_equal(store_folder_create(st, "Jobs", STORE_SPECIAL_NONE), 0);
	assert_int_equal(store_folder_rename(st, "Job", "Task"), 0);
	f = get_folder(st, "Jobs");
	store_folder_free(&f);

	/* RENAME INBOX (RFC 3501 6.3.5). */
	uint32_t a = append_sample(st, "INBOX", STORE_FLAG_SEEN);
	uint32_t b = append_sample(st, "INBOX", 0);
	assert_int_equal(store_folder_create(st, "INBOX/Child", STORE_SPECIAL_NONE), 0);
	struct store_folder inbox = get_folder(st, "INBOX");
	assert_int_equal(store_folder_rename(st, "inbox", "Old Inbox"), 0);
	f = get_folder(st, "Old Inbox");
	assert_int_equal(f.messages, 2);
	assert_int_not_equal(f.uidvalidity, inbox.uidvalidity);
	assert_int_equal(f.special_use, STORE_SPECIAL_NONE);
	store_folder_free(&f);
	struct store_msg *list = NULL;
	size_t count = 0;
	assert_int_equal(store_msg_list(st, "Old Inbox", &list, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(list[0].uid, 1);
	assert_int_equal(list[0].flags, STORE_FLAG_SEEN);
	assert_int_equal(list[1].uid, 2);
	store_msg_list_free(list, count);
	f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 0);
	assert_int_equal(f.uidvalidity, inbox.uidvalidity);
	assert_int_equal(f.uidnext, inbox.uidnext);
	assert_true(f.highestmodseq > inbox.highestmodseq);
	store_folder_free(&f);
	uint32_t *gone = NULL;
	assert_int_equal(store_expunged_since(st, "INBOX", inbox.highestmodseq, &gone, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(gone[0], a);
	assert_int_equal(gone[1], b);
	free(gone);
	store_folder_free(&inbox);
	/* INBOX's children stay where they are. */
	f = get_folder(st, "INBOX/Child");
	store_folder_free(&f);
	/* New mail still goes to INBOX, with UIDs never reused. */
	assert_int_equal(append_sample(st, "INBOX", 0), b + 1);
	/* INBOX may move its messages to a child of its own. */
	assert_int_equal(store_folder_rename(st, "INBOX", "INBOX/2024"), 0);
	f = get_folder(st, "INBOX/2024");
	assert_int_equal(f.messages, 1);
	store_folder_free(&f);
	assert_int_equal(store_folder_rename(st, "INBOX", "INBOX"), STORE_ERR_INVALID);
	check_counters(st);
	store_close(&st);
}

/* DELETE: a folder with children becomes a \Noselect placeholder
 * (RFC 3501 6.3.4); INBOX cannot go. */
static void test_delete(void **state)
{
	(void)state;
	store *st = open_store();
	assert_int_equal(store_folder_delete(st, "INBOX"), STORE_ERR_INVALID);
	assert_int_equal(store_folder_delete(st, "inbox"), STORE_ERR_INVALID);
	assert_int_equal(store_folder_delete(st, "Nope"), STORE_ERR_NOTFOUND);
	assert_int_equal(store_folder_create(st, "Parent/Child", STORE_SPECIAL_NONE), 0);
	append_sample(st, "Parent", 0);
	append_sample(st, "Parent/Child", 0);
	struct store_folder f = get_folder(st, "Parent");
	uint32_t old_validity = f.uidvalidity;
	store_folder_free(&f);

	assert_int_equal(store_folder_delete(st, "Parent"), 0);
	f = get_folder(st, "Parent");
	assert_true(f.noselect);
	assert_int_equal(f.messages, 0);
	store_folder_free(&f);
	struct store_msg *list = NULL;
	size_t count = 0;
	assert_int_equal(store_msg_list(st, "Parent", &list, &count), STORE_ERR_INVALID);
	assert_int_equal(store_append(st, "Parent", "x", 1, 0, NULL, 0, NULL, NULL, NULL),
			 STORE_ERR_INVALID);
	/* A placeholder with children cannot be deleted again. */
	assert_int_equal(store_folder_delete(st, "Parent"), STORE_ERR_INVALID);
	f = get_folder(st, "Parent/Child");
	assert_int_equal(f.messages, 1);
	store_folder_free(&f);
	/* Creating it again makes a real folder with a new UIDVALIDITY. */
	assert_int_equal(store_folder_create(st, "Parent", STORE_SPECIAL_NONE), 0);
	f = get_folder(st, "Parent");
	assert_false(f.noselect);
	assert_true(f.uidvalidity > old_validity);
	assert_int_equal(f.uidnext, 1);
	store_folder_free(&f);
	assert_int_equal(store_folder_create(st, "Parent", STORE_SPECIAL_NONE), STORE_ERR_EXISTS);

	/* Without children it goes entirely, and its messages with it. */
	assert_int_equal(store_folder_delete(st, "Parent/Child"), 0);
	assert_int_equal(store_folder_get(st, "Parent/Child", &f), STORE_ERR_NOTFOUND);
	uint64_t bytes = 0, messages = 0;
	assert_int_equal(store_usage(st, &bytes, &messages), 0);
	assert_int_equal(messages, 0);
	assert_int_equal(bytes, 0);
	assert_int_equal(store_folder_delete(st, "Parent"), 0);
	assert_int_equal(store_folder_get(st, "Parent", &f), STORE_ERR_NOTFOUND);
	check_counters(st);
	store_close(&st);
}

/* Subscriptions may name folders that do not exist and outlive deletion. */
static void test_subscriptions(void **state)
{
	(void)state;
	store *st = open_store();
	assert_int_equal(store_folder_subscribe(st, "Ghost", true), 0);
	assert_int_equal(store_folder_subscribe(st, "Ghost", true), 0);
	assert_int_equal(store_folder_subscribe(st, "Trash", false), 0);
	assert_int_equal(store_folder_subscribe(st, "a//b", true), STORE_ERR_INVALID);
	char **subs = store_subscriptions(st);
	static const char *const want[] = {"INBOX", "Archive", "Drafts", "Ghost", "Junk", "Sent"};
	size_t n = 0;
	for (; subs[n] != NULL; n++) {
		assert_true(n < 6);
		assert_string_equal(subs[n], want[n]);
	}
	assert_int_equal(n, 6);
	store_strv_free(subs);
	struct store_folder f = get_folder(st, "Trash");
	assert_false(f.subscribed);
	store_folder_free(&f);
	assert_int_equal(store_folder_delete(st, "Sent"), 0);
	subs = store_subscriptions(st);
	assert_string_equal(subs[5], "Sent");
	store_strv_free(subs);
	store_close(&st);
}

/* Group commit: 1000 appends in one transaction; a rollback leaves none;
 * a failing call inside a transaction undoes only itself. */
static void test_group_commit(void **state)
{
	(void)state;
	store *st = open_store();
	assert_int_equal(store_commit(st), STORE_ERR_INVALID);
	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_begin(st), STORE_ERR_INVALID);
	uint32_t last = 0;
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t uid = 0;
		assert_int_equal(store_append(st, "INBOX", sample, strlen(sample), 0, NULL, 0,
					      NULL, &uid, NULL), 0);
		assert_true(uid > last);
		last = uid;
	}
	/* A failure inside does not spoil the rest. */
	assert_int_equal(store_append(st, "Nope", "x", 1, 0, NULL, 0, NULL, NULL, NULL),
			 STORE_ERR_NOTFOUND);
	assert_int_equal(store_commit(st), 0);
	struct store_folder f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 1000);
	assert_int_equal(f.uidnext, 1001);
	store_folder_free(&f);

	assert_int_equal(store_begin(st), 0);
	append_sample(st, "INBOX", 0);
	assert_int_equal(store_folder_create(st, "Temp", STORE_SPECIAL_NONE), 0);
	store_rollback(st);
	f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 1000);
	store_folder_free(&f);
	assert_int_equal(store_folder_get(st, "Temp", &f), STORE_ERR_NOTFOUND);
	store_rollback(st); /* harmless outside a transaction */
	/* Closing with a transaction open rolls it back. */
	assert_int_equal(store_begin(st), 0);
	append_sample(st, "INBOX", 0);
	store_close(&st);
	st = open_store();
	f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 1000);
	store_folder_free(&f);
	store_close(&st);
}

/* Fills buf with a deterministic pattern that has line ends. */
static void fill_pattern(char *buf, size_t len)
{
	static const char head[] = "Subject: big\r\n\r\n";
	for (size_t i = 0; i < len; i++)
		buf[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (char)('A' + (i * 7) % 26);
	memcpy(buf, head, sizeof(head) - 1);
}

/* Streaming append of a 5 MB message in odd-sized pieces, read back in
 * chunks byte for byte; and the appender's size checks. */
static void test_streaming(void **state)
{
	(void)state;
	store *st = open_store();
	const size_t size = 5 * 1024 * 1024 + 3;
	char *data = xmalloc(size);
	fill_pattern(data, size);

	store_appender *a = NULL;
	assert_int_equal(store_append_start(st, "INBOX", size, STORE_FLAG_SEEN, "Big", 0, "LCBIG",
					    &a), 0);
	for (size_t off = 0; off < size;) {
		size_t n = 65521;
		if (n > size - off)
			n = size - off;
		assert_int_equal(store_append_write(a, data + off, n), 0);
		off += n;
	}
	uint32_t uid = 0, validity = 0;
	assert_int_equal(store_append_finish(&a, &uid, &validity), 0);
	assert_null(a);
	assert_int_equal(uid, 1);
	assert_true(validity > 0);

	store_reader *r = NULL;
	assert_int_equal(store_msg_open(st, "INBOX", uid, &r), 0);
	assert_int_equal(store_reader_size(r), size);
	char *back = xmalloc(size);
	uint64_t off = 0;
	for (;;) {
		long n = store_reader_read(r, off, back + off, 40000);
		assert_true(n >= 0);
		if (n == 0)
			break;
		off += (uint64_t)n;
		/* The main connection stays free to write while a reader is open. */
		if (off == 40000)
			assert_int_equal(store_msg_set_flags(st, "INBOX", uid, STORE_FLAGS_ADD,
							     STORE_FLAG_FLAGGED, NULL, 0, NULL), 0);
	}
	assert_int_equal(off, size);
	assert_memory_equal(back, data, size);
	/* Reads at an offset. */
	char piece[100];
	assert_int_equal(store_reader_read(r, size - 10, piece, sizeof(piece)), 10);
	assert_memory_equal(piece, data + size - 10, 10);
	assert_int_equal(store_reader_read(r, size + 5, piece, sizeof(piece)), 0);
	store_reader_close(&r);
	assert_null(r);

	struct store_msg_headers h;
	assert_int_equal(store_msg_headers_get(st, "INBOX", uid, &h), 0);
	assert_string_equal(h.subject, "big");
	store_msg_headers_free(&h);
	struct store_msg m;
	assert_int_equal(store_msg_get(st, "INBOX", uid, &m), 0);
	assert_int_equal(m.size, size);
	assert_string_equal(m.keywords, "Big");
	assert_string_equal(m.lifecycle_id, "LCBIG");
	store_msg_free(&m);

	/* A small streamed message, read through a reader too. */
	assert_int_equal(store_append_start(st, "INBOX", strlen(sample), 0, NULL, 0, NULL, &a), 0);
	for (size_t i = 0; i < strlen(sample); i++)
		assert_int_equal(store_append_write(a, sample + i, 1), 0);
	assert_int_equal(store_append_finish(&a, &uid, NULL), 0);
	assert_int_equal(store_msg_open(st, "INBOX", uid, &r), 0);
	assert_int_equal(store_reader_read(r, 0, back, size), (long)strlen(sample));
	assert_memory_equal(back, sample, strlen(sample));
	store_reader_close(&r);

	/* More than announced, less than announced, aborted: nothing stored. */
	assert_int_equal(store_append_start(st, "INBOX", 4, 0, NULL, 0, NULL, &a), 0);
	assert_int_equal(store_append_write(a, "12345", 5), STORE_ERR_INVALID);
	assert_int_equal(store_append_finish(&a, NULL, NULL), STORE_ERR_INVALID);
	assert_null(a);
	assert_int_equal(store_append_start(st, "INBOX", size, 0, NULL, 0, NULL, &a), 0);
	assert_int_equal(store_append_write(a, data, 100), 0);
	assert_int_equal(store_append_finish(&a, NULL, NULL), STORE_ERR_INVALID);
	assert_int_equal(store_append_start(st, "INBOX", 10, 0, NULL, 0, NULL, &a), 0);
	store_append_abort(&a);
	assert_null(a);
	store_append_abort(&a);
	assert_int_equal(store_append_start(st, "Nope", 10, 0, NULL, 0, NULL, &a),
			 STORE_ERR_NOTFOUND);
	struct store_folder f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 2);
	store_folder_free(&f);
	assert_int_equal(store_msg_open(st, "INBOX", 99, &r), STORE_ERR_NOTFOUND);

	/* store_msg_load reads a large message whole. */
	char *loaded = NULL;
	size_t len = 0;
	assert_int_equal(store_msg_load(st, "INBOX", 1, &loaded, &len), 0);
	assert_int_equal(len, size);
	assert_memory_equal(loaded, data, size);
	free(loaded);
	free(back);
	free(data);
	store_close(&st);
}

/* Two handles on one file (as two processes would have) see each other's
 * commits; a transaction is invisible to the other until committed. */
static void test_two_handles(void **state)
{
	(void)state;
	store *one = open_store();
	store *two = open_store();
	uint32_t uid = append_sample(one, "INBOX", 0);
	struct store_folder f = get_folder(two, "INBOX");
	assert_int_equal(f.messages, 1);
	store_folder_free(&f);
	assert_int_equal(store_msg_set_flags(two, "INBOX", uid, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					     NULL, 0, NULL), 0);
	struct store_msg m;
	assert_int_equal(store_msg_get(one, "INBOX", uid, &m), 0);
	assert_int_equal(m.flags, STORE_FLAG_SEEN);
	store_msg_free(&m);

	assert_int_equal(store_begin(one), 0);
	append_sample(one, "INBOX", 0);
	f = get_folder(two, "INBOX");
	assert_int_equal(f.messages, 1);
	store_folder_free(&f);
	assert_int_equal(store_commit(one), 0);
	f = get_folder(two, "INBOX");
	assert_int_equal(f.messages, 2);
	store_folder_free(&f);
	assert_int_equal(store_folder_create(two, "Shared", STORE_SPECIAL_NONE), 0);
	f = get_folder(one, "Shared");
	store_folder_free(&f);

	/* A reader of a large message keeps its snapshot: the other handle
	 * expunging the message does not cut the stream short. */
	const size_t size = 1024 * 1024 + 17;
	char *data = xmalloc(size);
	fill_pattern(data, size);
	uint32_t big = 0;
	assert_int_equal(store_append(one, "INBOX", data, size, 0, NULL, 0, NULL, &big, NULL), 0);
	store_reader *r = NULL;
	assert_int_equal(store_msg_open(one, "INBOX", big, &r), 0);
	char *back = xmalloc(size);
	assert_int_equal(store_reader_read(r, 0, back, 1000), 1000);
	assert_int_equal(store_expunge(two, "INBOX", &big, 1, NULL, NULL), 0);
	assert_int_equal(store_msg_get(one, "INBOX", big, &m), STORE_ERR_NOTFOUND);
	uint64_t off = 1000;
	long n;
	while ((n = store_reader_read(r, off, back + off, 300000)) > 0)
		off += (uint64_t)n;
	assert_int_equal(n, 0);
	assert_int_equal(off, size);
	assert_memory_equal(back, data, size);
	store_reader_close(&r);
	free(back);
	free(data);
	check_counters(one);
	store_close(&one);
	store_close(&two);
}

/* Reads pending inotify events; true if any arrived. */
static bool notify_fired(int fd)
{
	char buf[4096] __attribute__((aligned(8)));
	bool any = false;
	for (int i = 0; i < 16; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		any = true;
	}
	return any;
}

/* Commits that change the mailbox write the notify file (IN_MODIFY), once
 * per transaction, after the commit; reads do not. */
static void test_notify(void **state)
{
	(void)state;
	store *st = open_store();
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(inotify_add_watch(fd, store_notify_path(st), IN_MODIFY) >= 0);
	assert_false(notify_fired(fd));

	uint32_t uid = append_sample(st, "INBOX", 0);
	assert_true(notify_fired(fd));
	struct store_msg *list = NULL;
	size_t count = 0;
	assert_int_equal(store_msg_list(st, "INBOX", &list, &count), 0);
	store_msg_list_free(list, count);
	assert_false(notify_fired(fd));
	assert_int_equal(store_msg_set_flags(st, "INBOX", uid, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					     NULL, 0, NULL), 0);
	assert_true(notify_fired(fd));
	/* No change, no wake-up. */
	assert_int_equal(store_msg_set_flags(st, "INBOX", uid, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					     NULL, 0, NULL), 0);
	assert_false(notify_fired(fd));

	assert_int_equal(store_begin(st), 0);
	append_sample(st, "INBOX", 0);
	append_sample(st, "INBOX", 0);
	assert_false(notify_fired(fd));
	assert_int_equal(store_commit(st), 0);
	assert_true(notify_fired(fd));
	assert_int_equal(store_expunge(st, "INBOX", &uid, 1, NULL, NULL), 0);
	assert_true(notify_fired(fd));
	/* The file does not grow. */
	struct stat sb;
	assert_int_equal(stat(store_notify_path(st), &sb), 0);
	assert_true(sb.st_size <= 1);
	close(fd);
	store_close(&st);
}

/* Another connection holding the write lock past the busy timeout is a
 * temporary failure with a message; once it lets go, writes work again. */
static void test_temp_failure(void **state)
{
	(void)state;
	store *st = open_store();
	sqlite3 *other = NULL;
	assert_int_equal(sqlite3_open(store_db_path(st), &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_set_busy_timeout(st, 50), 0);
	assert_int_equal(store_append(st, "INBOX", sample, strlen(sample), 0, NULL, 0, NULL, NULL,
				      NULL), STORE_ERR_TEMP);
	assert_non_null(strstr(store_last_error(st), "locked"));
	assert_int_equal(store_begin(st), STORE_ERR_TEMP);
	assert_int_equal(store_folder_create(st, "X", STORE_SPECIAL_NONE), STORE_ERR_TEMP);
	store_appender *a = NULL;
	assert_int_equal(store_append_start(st, "INBOX", 3, 0, NULL, 0, NULL, &a), 0);
	assert_int_equal(store_append_write(a, "abc", 3), 0);
	assert_int_equal(store_append_finish(&a, NULL, NULL), STORE_ERR_TEMP);
	/* Reads go on meanwhile (WAL). */
	struct store_folder f = get_folder(st, "INBOX");
	store_folder_free(&f);
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	append_sample(st, "INBOX", 0);
	f = get_folder(st, "INBOX");
	assert_int_equal(f.messages, 1);
	store_folder_free(&f);
	store_close(&st);
}

/* The cache: put, replace, get; entries go with their message. */
static void test_cache(void **state)
{
	(void)state;
	store *st = open_store();
	uint32_t uid = append_sample(st, "INBOX", 0);
	char *value = NULL;
	assert_int_equal(store_cache_get(st, "INBOX", uid, "bodystructure", &value),
			 STORE_ERR_NOTFOUND);
	assert_int_equal(store_cache_put(st, "INBOX", uid, "bodystructure", "one"), 0);
	assert_int_equal(store_cache_put(st, "INBOX", uid, "bodystructure", "two"), 0);
	assert_int_equal(store_cache_get(st, "INBOX", uid, "bodystructure", &value), 0);
	assert_string_equal(value, "two");
	free(value);
	assert_int_equal(store_cache_put(st, "INBOX", 555, "k", "v"), STORE_ERR_NOTFOUND);
	assert_int_equal(store_expunge(st, "INBOX", &uid, 1, NULL, NULL), 0);
	assert_int_equal(store_cache_get(st, "INBOX", uid, "bodystructure", &value),
			 STORE_ERR_NOTFOUND);
	store_close(&st);
}

/* SEARCH on parsed header columns: raw and decoded, ASCII case ignored,
 * LIKE wildcards taken literally. */
static void test_search_header(void **state)
{
	(void)state;
	store *st = open_store();
	uint32_t a = append_sample(st, "INBOX", 0);
	static const char other[] = "From: Bob <bob@example.test>\r\n"
				    "To: alice@example.test\r\n"
				    "Subject: 100% off_sale\r\n\r\nbody\r\n";
	uint32_t b = 0;
	assert_int_equal(store_append(st, "INBOX", other, strlen(other), 0, NULL, 0, NULL, &b,
				      NULL), 0);
	static const struct {
		enum store_search_field field;
		const char *needle;
		size_t count;
		uint32_t first;
	} cases[] = {
		{STORE_SEARCH_SUBJECT, "CAF\xc3\x89", 0, 0}, /* \xc3\x89 is not \xc3\xa9 */
		{STORE_SEARCH_SUBJECT, "CAF\xc3\xa9", 1, 1}, /* ASCII letters fold */
		{STORE_SEARCH_SUBJECT, "caf\xc3\xa9", 1, 1},
		{STORE_SEARCH_SUBJECT, "TIME", 1, 1},
		{STORE_SEARCH_SUBJECT, "=?utf-8?q?", 1, 1},   /* the raw value counts too */
		{STORE_SEARCH_SUBJECT, "100%", 1, 2},
		{STORE_SEARCH_SUBJECT, "0%_o", 0, 0},
		{STORE_SEARCH_SUBJECT, "f_s", 1, 2},
		{STORE_SEARCH_SUBJECT, "_", 1, 2},
		{STORE_SEARCH_SUBJECT, "", 2, 1},
		{STORE_SEARCH_FROM, "alice", 1, 1},
		{STORE_SEARCH_TO, "alice", 1, 2},
		{STORE_SEARCH_CC, "carol", 1, 1},
		{STORE_SEARCH_BCC, "x", 0, 0},
		{STORE_SEARCH_FROM, "' OR 1=1 --", 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t *uids = NULL;
		size_t count = 0;
		assert_int_equal(store_search_header(st, "INBOX", cases[i].field, cases[i].needle,
						     &uids, &count), 0);
		if (count != cases[i].count)
			fail_msg("case %zu: %zu hits, expected %zu", i, count, cases[i].count);
		if (count > 0)
			assert_int_equal(uids[0], cases[i].first == 1 ? a : b);
		free(uids);
	}
	char long_needle[2000];
	memset(long_needle, 'x', sizeof(long_needle) - 1);
	long_needle[sizeof(long_needle) - 1] = '\0';
	uint32_t *uids = NULL;
	size_t count = 0;
	assert_int_equal(store_search_header(st, "INBOX", STORE_SEARCH_TO, long_needle, &uids,
					     &count), STORE_ERR_INVALID);
	assert_int_equal(store_search_header(st, "Nope", STORE_SEARCH_TO, "x", &uids, &count),
			 STORE_ERR_NOTFOUND);
	store_close(&st);
}

/* Seconds on the monotonic clock. */
static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 100,000 messages: the time to read the folder's counters (SELECT) and
 * to list every UID and flags (FETCH 1:* FLAGS). Printed, not asserted. */
static void test_large_folder_timing(void **state)
{
	(void)state;
	store *st = open_store();
	const uint32_t count = 100000;
	static const char small[] = "Subject: s\r\n\r\nx\r\n";
	double t0 = now_seconds();
	assert_int_equal(store_begin(st), 0);
	for (uint32_t i = 0; i < count; i++)
		assert_int_equal(store_append(st, "INBOX", small, sizeof(small) - 1,
					      i % 3 == 0 ? STORE_FLAG_SEEN : 0, NULL, 0, NULL,
					      NULL, NULL), 0);
	assert_int_equal(store_commit(st), 0);
	double t1 = now_seconds();
	store_close(&st);
	st = open_store();
	double t2 = now_seconds();
	struct store_folder f = get_folder(st, "INBOX");
	double select_ms = (now_seconds() - t2) * 1e3;
	assert_int_equal(f.messages, count);
	store_folder_free(&f);

	double t = now_seconds();
	struct store_msg *list = NULL;
	size_t n = 0;
	assert_int_equal(store_msg_list(st, "INBOX", &list, &n), 0);
	double list_ms = (now_seconds() - t) * 1e3;
	assert_int_equal(n, count);
	assert_int_equal(list[count - 1].uid, count);
	store_msg_list_free(list, n);

	t = now_seconds();
	uint32_t *uids = NULL;
	assert_int_equal(store_uid_list(st, "INBOX", &uids, &n), 0);
	double uids_ms = (now_seconds() - t) * 1e3;
	assert_int_equal(n, count);
	assert_int_equal(uids[0], 1);
	assert_int_equal(uids[count - 1], count);
	free(uids);

	t = now_seconds();
	assert_int_equal(store_search_header(st, "INBOX", STORE_SEARCH_SUBJECT, "nothing", &uids,
					     &n), 0);
	double search_ms = (now_seconds() - t) * 1e3;
	assert_int_equal(n, 0);
	free(uids);
	printf("# store (%u messages): appends in one transaction %.0f ms; folder_get %.3f ms; "
	       "msg_list (UID+flags) %.0f ms; uid_list %.0f ms; search subject %.0f ms\n",
	       count, (t1 - t0) * 1e3, select_ms, list_ms, uids_ms, search_ms);
	store_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_bad_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_folder_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_folder_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uid_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_and_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags_modseq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscriptions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_temp_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_folder_timing, setup, teardown),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
