/* test_log.c: logfmt lines, quoting round trips, secret masking for every
 * protocol, transcripts, lifecycle events and lifecycle ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "buffer.h"
#include "log.h"

static char test_dir[] = "/tmp/test_log.XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(test_dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	log_close();
	char *cmd = xasprintf("rm -rf '%s'", test_dir);
	int rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

/* Reads a whole file (caller frees); "" when missing. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return xstrdup("");
	buf_t b = BUF_INIT;
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	return buf_steal(&b);
}

struct mask_case {
	const char *proto;
	const char *line;
	const char *masked;
};

/* Every secret-bearing command of every protocol, and lines left alone. */
static void test_mask(void **state)
{
	(void)state;
	static const struct mask_case cases[] = {
		{"smtp", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ****"},
		{"smtp", "auth plain AGFsaWNlAHNlY3JldA==\r\n", "auth plain ****\r\n"},
		{"smtp", "AUTH LOGIN YWxpY2U=", "AUTH LOGIN ****"},
		{"smtp", "AUTH SCRAM-SHA-256 biwsbj11c2Vy", "AUTH SCRAM-SHA-256 ****"},
		{"smtp", "AUTH PLAIN", "AUTH PLAIN"},
		{"smtp", "AUTH LOGIN\r\n", "AUTH LOGIN\r\n"},
		{"smtp", "AUTH PLAIN   ", "AUTH PLAIN   "},
		{"smtp", "MAIL FROM:<a@b>", "MAIL FROM:<a@b>"},
		{"smtp", "EHLO client.test\r\n", "EHLO client.test\r\n"},
		{"smtp", "AUTHX PLAIN abc", "AUTHX PLAIN abc"},
		{"lmtp", "AUTH PLAIN abc", "AUTH PLAIN ****"},
		{"lmtp", "LHLO x", "LHLO x"},
		{"pop3", "PASS secret", "PASS ****"},
		{"pop3", "pass two words\r\n", "pass ****\r\n"},
		{"pop3", "PASS", "PASS"},
		{"pop3", "USER alice", "USER alice"},
		{"pop3", "AUTH PLAIN AGFsaWNl", "AUTH PLAIN ****"},
		{"pop3", "AUTH PLAIN", "AUTH PLAIN"},
		{"pop3", "PASSWORD x", "PASSWORD x"},
		{"imap", "a1 LOGIN alice secret", "a1 LOGIN alice ****"},
		{"imap", "a1 login alice secret\r\n", "a1 login alice ****\r\n"},
		{"imap", "a1 LOGIN \"alice\" \"pass word\"", "a1 LOGIN \"alice\" ****"},
		{"imap", "a1 LOGIN \"al ice\" secret", "a1 LOGIN \"al ice\" ****"},
		{"imap", "a1 LOGIN \"al\\\"ice\" secret", "a1 LOGIN \"al\\\"ice\" ****"},
		{"imap", "a1 LOGIN alice {6}", "a1 LOGIN alice ****"},
		{"imap", "a1 LOGIN {5}", "a1 LOGIN {5}"},
		{"imap", "a1 LOGIN {5+}", "a1 LOGIN {5+}"},
		{"imap", "a1 LOGIN alice", "a1 LOGIN alice"},
		{"imap", "a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
		 "a1 AUTHENTICATE PLAIN ****"},
		{"imap", "x authenticate plain =", "x authenticate plain ****"},
		{"imap", "a1 AUTHENTICATE PLAIN", "a1 AUTHENTICATE PLAIN"},
		{"imap", "a1 SELECT INBOX", "a1 SELECT INBOX"},
		{"imap", "LOGIN alice secret", "LOGIN alice secret"},
		{"imap", "", ""},
		{"unknown", "PASS x", "PASS x"},
		{"smtp", "", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *masked = log_mask_line(cases[i].proto, cases[i].line, strlen(cases[i].line));
		if (strcmp(masked, cases[i].masked) != 0)
			fail_msg("%s '%s' -> '%s', want '%s'", cases[i].proto, cases[i].line, masked,
				 cases[i].masked);
		free(masked);
	}
}

/* Values that need quoting survive log_append_value + log_parse_line. */
static void test_value_round_trip(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		const char *written;
	} cases[] = {
		{"plain", "plain"},
		{"127.0.0.1", "127.0.0.1"},
		{"", "\"\""},
		{"two words", "\"two words\""},
		{"a=b", "\"a=b\""},
		{"say \"hi\"", "\"say \\\"hi\\\"\""},
		{"back\\slash", "\"back\\\\slash\""},
		{"line\nbreak\r\ttab", "\"line\\nbreak\\r\\ttab\""},
		{"bell\a del\x7f", "\"bell\\x07 del\\x7F\""},
		{"caf\xc3\xa9", "caf\xc3\xa9"},
		{"\x01", "\"\\x01\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_t line = BUF_INIT;
		buf_append_str(&line, "k=");
		log_append_value(&line, cases[i].value);
		assert_string_equal(buf_cstr(&line) + 2, cases[i].written);
		buf_append_str(&line, " next=1");
		char **keys, **values;
		size_t n = log_parse_line(buf_cstr(&line), &keys, &values);
		assert_int_equal(n, 2);
		assert_string_equal(keys[0], "k");
		assert_string_equal(values[0], cases[i].value);
		assert_string_equal(keys[1], "next");
		assert_string_equal(values[1], "1");
		for (size_t j = 0; j < n; j++) {
			free(keys[j]);
			free(values[j]);
		}
		free(keys);
		free(values);
		buf_free(&line);
	}
}

/* Odd lines parse without crashing and give sensible pairs. */
static void test_parse_odd(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		size_t count;
		const char *last_key;
		const char *last_value;
	} cases[] = {
		{"", 0, NULL, NULL},
		{"   ", 0, NULL, NULL},
		{"flag", 1, "flag", ""},
		{"a=1 b", 2, "b", ""},
		{"a=\"unterminated", 1, "a", "unterminated"},
		{"a=\"x\\q\"", 1, "a", "xq"},
		{"a=\"\\xZZ\"", 1, "a", "\\xZZ"},
		{"=x a=2", 1, "a", "2"},
		{"a=1\n", 1, "a", "1"},
		{"a=1  b=2   c=\"3 4\"", 3, "c", "3 4"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char **keys, **values;
		size_t n = log_parse_line(cases[i].line, &keys, &values);
		assert_int_equal(n, cases[i].count);
		if (n > 0) {
			assert_string_equal(keys[n - 1], cases[i].last_key);
			assert_string_equal(values[n - 1], cases[i].last_value);
		}
		log_pairs_free(n, &keys, &values);
		assert_null(keys);
		assert_null(values);
	}
}

/* lifecycle_id_valid accepts what lifecycle_id_new makes and nothing else. */
static void test_lifecycle_id_valid(void **state)
{
	(void)state;
	for (int i = 0; i < 100; i++) {
		char *id = lifecycle_id_new();
		assert_int_equal(strlen(id), LIFECYCLE_ID_LEN);
		assert_true(lifecycle_id_valid(id));
		free(id);
	}
	static const char *const bad[] = {"", "0KX3F2A9Q4M7ZB1", "0KX3F2A9Q4M7ZB1CD",
					  "0kx3f2a9q4m7zb1c", "0KX3F2A9Q4M7ZB1-", "<m1@example.org>"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(lifecycle_id_valid(bad[i]));
	assert_true(lifecycle_id_valid("0KX3F2A9Q4M7ZB1C"));
}

/* log_pairs_get finds a key's value (empty for a bare flag) and NULL for a missing one. */
static void test_pairs_get(void **state)
{
	(void)state;
	char **keys, **values;
	size_t n = log_parse_line("a=1 flag b=\"x y\"", &keys, &values);
	assert_int_equal(n, 3);
	assert_string_equal(log_pairs_get(n, keys, values, "a"), "1");
	assert_string_equal(log_pairs_get(n, keys, values, "flag"), "");
	assert_string_equal(log_pairs_get(n, keys, values, "b"), "x y");
	assert_null(log_pairs_get(n, keys, values, "c"));
	log_pairs_free(n, &keys, &values);
	assert_null(keys);
	n = log_parse_line("", &keys, &values);
	assert_null(log_pairs_get(n, keys, values, "a"));
	log_pairs_free(n, &keys, &values);
}

/* The main log: level filter, layout, conn omitted when 0, NULL values skipped. */
static void test_log_lines(void **state)
{
	(void)state;
	char *path = xasprintf("%s/main.log", test_dir);
	char *err = NULL;
	assert_int_equal(log_init("mta", path, LOG_INFO, &err), 0);
	log_kv(LOG_DEBUG, 3, "hidden", NULL);
	log_kv(LOG_INFO, 17, "session start", "remote", "127.0.0.1", "skipped", NULL, "tls", "no",
	       NULL);
	log_fmt(LOG_WARN, 0, "count %d of %s", 2, "x y");
	log_init("mta", NULL, LOG_INFO, &err);
	char *text = slurp(path);
	char *second = strchr(text, '\n');
	assert_non_null(second);
	*second++ = '\0';
	/* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
	assert_int_equal(strncmp(text, "ts=", 3), 0);
	assert_int_equal(strlen("ts=2026-11-26T10:00:00.123Z"), (size_t)(strchr(text, ' ') - text));
	assert_int_equal(text[26], 'Z');
	assert_int_equal(text[22], '.');
	assert_string_equal(strchr(text, ' '),
			    " level=info comp=mta conn=17 msg=\"session start\" remote=127.0.0.1 "
			    "tls=no");
	char **keys, **values;
	size_t n = log_parse_line(second, &keys, &values);
	assert_int_equal(n, 4);
	assert_string_equal(log_pairs_get(n, keys, values, "level"), "warn");
	assert_null(log_pairs_get(n, keys, values, "conn"));
	assert_string_equal(log_pairs_get(n, keys, values, "msg"), "count 2 of x y");
	log_pairs_free(n, &keys, &values);
	assert_null(strstr(second, "hidden"));
	free(text);
	free(path);

	assert_int_equal(log_init("mta", "/nonexistent/dir/x.log", LOG_INFO, &err), -1);
	assert_string_equal(err, "cannot open log file /nonexistent/dir/x.log: No such file or "
				 "directory");
	free(err);
	assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
	assert_int_equal(log_level_parse("INFO"), LOG_INFO);
	assert_int_equal(log_level_parse("warn"), LOG_WARN);
	assert_int_equal(log_level_parse("error"), LOG_ERROR);
	assert_int_equal(log_level_parse("loud"), -1);
}

/* Transcripts land in LOGDIR/transcript.log with secrets masked; events in
 * events.log, one parseable line each. */
static void test_transcript_and_events(void **state)
{
	(void)state;
	char *err = NULL;
	char *mainlog = xasprintf("%s/main2.log", test_dir);
	assert_int_equal(log_init("imapd", mainlog, LOG_INFO, &err), 0);
	char *dir = xasprintf("%s/log", test_dir);
	log_set_dirs(dir, true);
	const char *l1 = "a1 LOGIN alice secret\r\n";
	log_transcript("imap", 5, 'C', false, NULL, l1, strlen(l1), false);
	const char *l2 = "a1 OK LOGIN completed\r\n";
	log_transcript("imap", 5, 'S', true, "alice@example.test", l2, strlen(l2), false);
	const char *l3 = "c2VjcmV0";
	log_transcript("imap", 5, 'C', true, NULL, l3, strlen(l3), true);
	log_event("0KX3F2A9Q4M7ZB1C", "fetched", "user", "alice@example.test", "uid", "4", NULL);
	log_set_dirs(NULL, false);
	log_transcript("imap", 5, 'C', false, NULL, "x", 1, false); /* off: not written */

	char *path = xasprintf("%s/transcript.log", dir);
	char *text = slurp(path);
	assert_null(strstr(text, "secret"));
	assert_null(strstr(text, "c2VjcmV0"));
	char *line = text;
	static const char *const want_lines[] = {"a1 LOGIN alice ****", "a1 OK LOGIN completed",
						 "****"};
	static const char *const want_dir[] = {"C", "S", "C"};
	for (size_t i = 0; i < 3; i++) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		char **keys, **values;
		size_t n = log_parse_line(line, &keys, &values);
		assert_string_equal(log_pairs_get(n, keys, values, "line"), want_lines[i]);
		assert_string_equal(log_pairs_get(n, keys, values, "dir"), want_dir[i]);
		assert_string_equal(log_pairs_get(n, keys, values, "conn"), "5");
		assert_string_equal(log_pairs_get(n, keys, values, "proto"), "imap");
		if (i == 1)
			assert_string_equal(log_pairs_get(n, keys, values, "user"), "alice@example.test");
		else
			assert_null(log_pairs_get(n, keys, values, "user"));
		assert_string_equal(log_pairs_get(n, keys, values, "tls"), i == 0 ? "no" : "yes");
		log_pairs_free(n, &keys, &values);
		line = nl + 1;
	}
	assert_string_equal(line, "");
	free(text);
	free(path);

	path = xasprintf("%s/events.log", dir);
	text = slurp(path);
	char **keys, **values;
	size_t n = log_parse_line(text, &keys, &values);
	assert_string_equal(log_pairs_get(n, keys, values, "id"), "0KX3F2A9Q4M7ZB1C");
	assert_string_equal(log_pairs_get(n, keys, values, "event"), "fetched");
	assert_string_equal(log_pairs_get(n, keys, values, "comp"), "imapd");
	assert_string_equal(log_pairs_get(n, keys, values, "uid"), "4");
	log_pairs_free(n, &keys, &values);
	free(text);
	free(path);

	/* echoed to the normal log */
	text = slurp(mainlog);
	assert_non_null(strstr(text, "msg=lifecycle id=0KX3F2A9Q4M7ZB1C event=fetched "
				     "user=alice@example.test uid=4"));
	free(text);
	log_init("imapd", NULL, LOG_INFO, &err);
	free(mainlog);
	free(dir);
}

/* Over-long values are cut so that a line stays bounded and parseable. */
static void test_long_values(void **state)
{
	(void)state;
	char *path = xasprintf("%s/long.log", test_dir);
	char *err = NULL;
	assert_int_equal(log_init("mta", path, LOG_INFO, &err), 0);
	char *huge = xmalloc(100001);
	memset(huge, 'y', 100000);
	huge[100000] = '\0';
	log_kv(LOG_INFO, 1, "big", "a", huge, "b", huge, "c", huge, NULL);
	log_init("mta", NULL, LOG_INFO, &err);
	char *text = slurp(path);
	assert_true(strlen(text) <= 16384 + 1);
	assert_int_equal(text[strlen(text) - 1], '\n');
	assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
	char **keys, **values;
	size_t n = log_parse_line(text, &keys, &values);
	assert_string_equal(log_pairs_get(n, keys, values, "msg"), "big");
	const char *a = log_pairs_get(n, keys, values, "a");
	assert_int_equal(strlen(a), 8192 + 3);
	assert_string_equal(a + 8192, "...");
	log_pairs_free(n, &keys, &values);
	free(text);
	free(huge);
	free(path);
}

/* Several processes appending events to one file never tear a line. */
static void test_events_concurrent(void **state)
{
	(void)state;
	char *dir = xasprintf("%s/concurrent", test_dir);
	char *err = NULL;
	assert_int_equal(log_init("mta", "/dev/null", LOG_INFO, &err), 0);
	char *filler = xmalloc(3001);
	memset(filler, 'x', 3000);
	filler[3000] = '\0';
	for (int c = 0; c < 4; c++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			log_set_dirs(dir, false);
			char proc[8];
			snprintf(proc, sizeof(proc), "%d", c);
			for (int i = 0; i < 200; i++)
				log_event("0KX3F2A9Q4M7ZB1C", "attempt", "proc", proc, "data", filler,
					  NULL);
			log_close();
			_exit(0);
		}
	}
	for (int c = 0; c < 4; c++) {
		int status;
		assert_true(wait(&status) > 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	log_init("mta", NULL, LOG_INFO, &err);
	char *path = xasprintf("%s/events.log", dir);
	char *text = slurp(path);
	int lines = 0, per_proc[4] = {0, 0, 0, 0};
	for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		*nl = '\0';
		char **keys, **values;
		size_t n = log_parse_line(line, &keys, &values);
		const char *proc = log_pairs_get(n, keys, values, "proc");
		assert_non_null(proc);
		assert_string_equal(log_pairs_get(n, keys, values, "data"), filler);
		assert_string_equal(log_pairs_get(n, keys, values, "event"), "attempt");
		per_proc[proc[0] - '0']++;
		log_pairs_free(n, &keys, &values);
		lines++;
	}
	assert_int_equal(lines, 800);
	for (int c = 0; c < 4; c++)
		assert_int_equal(per_proc[c], 200);
	free(text);
	free(path);
	free(filler);
	free(dir);
}

/* qsort comparator for NUL-terminated fixed-size records. */
static int compare_records(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Ids: 16 characters of Crockford base32, increasing, distinct, also across
 * processes started at the same moment. */
static void test_lifecycle_ids(void **state)
{
	(void)state;
	char *prev = NULL;
	for (int i = 0; i < 2000; i++) {
		char *id = lifecycle_id_new();
		assert_int_equal(strlen(id), 16);
		assert_int_equal(strspn(id, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), 16);
		if (prev != NULL) {
			assert_true(strcmp(prev, id) < 0);
			free(prev);
		}
		prev = id;
	}
	free(prev);

	/* Four children each write 500 ids into one pipe; all 2000 must differ. */
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	for (int c = 0; c < 4; c++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			for (int i = 0; i < 500; i++) {
				char *id = lifecycle_id_new();
				char line[17];
				memcpy(line, id, 16);
				line[16] = '\n';
				if (write(fds[1], line, 17) != 17)
					_exit(1);
				free(id);
			}
			_exit(0);
		}
	}
	close(fds[1]);
	char *all = xmalloc(2000 * 17 + 1);
	size_t got = 0;
	ssize_t n;
	while (got < 2000 * 17 && (n = read(fds[0], all + got, 2000 * 17 - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	for (int c = 0; c < 4; c++) {
		int status;
		assert_true(wait(&status) > 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(got, 2000 * 17);
	/* Terminate each 17-byte record so it compares as a string. */
	for (size_t i = 0; i < 2000; i++)
		all[i * 17 + 16] = '\0';
	qsort(all, 2000, 17, compare_records);
	for (size_t i = 1; i < 2000; i++)
		assert_true(strcmp(all + (i - 1) * 17, all + i * 17) < 0);
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_value_round_trip),
		cmocka_unit_test(test_parse_odd),
		cmocka_unit_test(test_log_lines),
		cmocka_unit_test(test_transcript_and_events),
		cmocka_unit_test(test_lifecycle_ids),
		cmocka_unit_test(test_events_concurrent),
		cmocka_unit_test(test_long_values),
		cmocka_unit_test(test_pairs_get),
		cmocka_unit_test(test_lifecycle_id_valid),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
