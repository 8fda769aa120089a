/* test_config.c: mailstack.conf parsing, typed getters, errors naming file,
 * line and key, free-form sections, printing and the data directory. */
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
#include "config.h"

static char test_dir[] = "/tmp/test_config.XXXXXX";

/* Writes text to DIR/name and returns the path (caller frees). */
static char *write_conf(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", test_dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int setup(void **state)
{
	(void)state;
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

/* Defaults come from config_keys.def with their types. */
static void test_defaults(void **state)
{
	(void)state;
	config *cfg = config_defaults();
	assert_string_equal(config_str(cfg, "server.hostname"), "localhost");
	assert_int_equal(config_int(cfg, "server.port_base"), 10000);
	assert_false(config_bool(cfg, "server.allow_plaintext_auth"));
	assert_true(config_bool(cfg, "log.transcript"));
	assert_string_equal(config_str(cfg, "log.file"), "");
	assert_string_equal(config_path(cfg), "");
	config_free(&cfg);
	assert_null(cfg);
}

/* A valid file overrides defaults and keeps the rest. */
static void test_load_values(void **state)
{
	(void)state;
	char *path = write_conf("ok.conf",
				"; a comment\n"
				"[server]\n"
				"hostname = mail.example.test\n"
				"port_base = 0\n"
				"allow_plaintext_auth = on\n"
				"\n"
				"[smtp]\n"
				"max_recipients = -1\n"
				"[log]\n"
				"transcript = 0\n"
				"[routes]\n"
				"example.org = 127.0.0.1:2525\n"
				"Example.NET = [::1]:25\n"
				"a.test = b:1\n");
	config *cfg = NULL;
	char *err = NULL;
	assert_int_equal(config_load(path, false, &cfg, &err), 0);
	assert_null(err);
	assert_string_equal(config_str(cfg, "server.hostname"), "mail.example.test");
	assert_int_equal(config_int(cfg, "server.port_base"), 0);
	assert_true(config_bool(cfg, "server.allow_plaintext_auth"));
	assert_int_equal(config_int(cfg, "smtp.max_recipients"), -1);
	assert_false(config_bool(cfg, "log.transcript"));
	assert_int_equal(config_int(cfg, "smtp.max_errors"), 10);
	assert_string_equal(config_path(cfg), path);

	const char *const *names, *const *values;
	size_t n = config_section_pairs(cfg, "routes", &names, &values);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "example.org");
	assert_string_equal(values[0], "127.0.0.1:2525");
	assert_string_equal(names[1], "Example.NET");
	assert_string_equal(values[1], "[::1]:25");
	assert_string_equal(names[2], "a.test");
	assert_string_equal(config_section_get(cfg, "routes", "example.net"), "[::1]:25");
	assert_null(config_section_get(cfg, "routes", "nowhere.test"));
	assert_int_equal(config_section_pairs(cfg, "nothing", &names, &values), 0);

	assert_string_equal(config_datadir(cfg), test_dir);
	char *cert = config_path_in_datadir(cfg, "server.tls_cert");
	char *want = xasprintf("%s/tls/cert.pem", test_dir);
	assert_string_equal(cert, want);
	free(cert);
	free(want);
	char *logfile = config_path_in_datadir(cfg, "log.file");
	assert_string_equal(logfile, "");
	free(logfile);
	config_free(&cfg);
	free(path);
}

struct bad_case {
	const char *text;
	const char *error; /* after "DIR/mailstack.conf" */
};

/* Every kind of error names the file, the line and the key. */
static void test_load_errors(void **state)
{
	(void)state;
	static const struct bad_case cases[] = {
		{"[smtp]\nmax_sise = 10\n", ":2: unknown key 'smtp.max_sise'"},
		{"[server]\nhostname = x\nport_base = abc\n",
		 ":3: bad value for server.port_base: 'abc' is not a number"},
		{"[server]\nport_base = 12x\n",
		 ":2: bad value for server.port_base: '12x' is not a number"},
		{"[server]\nport_base =\n", ":2: bad value for server.port_base: '' is not a number"},
		{"[server]\nport_base = 99999999999999999999999\n",
		 ":2: bad value for server.port_base: '99999999999999999999999' is not a number"},
		{"\n\n[log]\ntranscript = maybe\n",
		 ":4: bad value for log.transcript: 'maybe' is not a boolean "
		 "(yes/no/true/false/on/off/1/0)"},
		{"toplevel = 1\n", ":1: unknown key 'toplevel'"},
		{"[nosuch]\nkey = 1\n", ":2: unknown key 'nosuch.key'"},
		{"[server]\nport_base = 64541\n",
		 ":2: bad value for server.port_base: '64541' is out of range (0 to 64540)"},
		{"[server]\nport_base = -1\n",
		 ":2: bad value for server.port_base: '-1' is out of range (0 to 64540)"},
		{"[log]\nlevel = loud\n",
		 ":2: bad value for log.level: 'loud' is not one of debug, info, warn, error"},
		{"[smtp]\nqueue_time_scale = 0\n",
		 ":2: bad value for smtp.queue_time_scale: '0' is out of range (1 to 1000000)"},
		{"[server]\nthis line has no equals sign\n",
		 ":2: syntax error (expected [section] or key = value)"},
		{"[server]\nhostname = a\n[smtp]\nmax_errors = 1\nbogus = 2\nalso_bad = 3\n",
		 ":5: unknown key 'smtp.bogus'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = write_conf("mailstack.conf", cases[i].text);
		config *cfg = NULL;
		char *err = NULL;
		assert_int_equal(config_load(path, false, &cfg, &err), -1);
		assert_null(cfg);
		char *want = xasprintf("%s%s", path, cases[i].error);
		assert_string_equal(err, want);
		free(want);
		free(err);
		free(path);
	}
}

/* A line longer than inih's buffer is refused, not split; comments and
 * inline comments are ignored. */
static void test_long_lines_and_comments(void **state)
{
	(void)state;
	buf_t text = BUF_INIT;
	buf_append_str(&text, "[server]\nhostname = ");
	for (int i = 0; i < 5000; i++)
		buf_append_char(&text, 'a');
	buf_append_str(&text, "\nport_base = 7\n");
	char *path = write_conf("long.conf", buf_cstr(&text));
	buf_free(&text);
	config *cfg = NULL;
	char *err = NULL;
	assert_int_equal(config_load(path, false, &cfg, &err), -1);
	char *want = xasprintf("%s:2: line too long (more than ", path);
	assert_int_equal(strncmp(err, want, strlen(want)), 0);
	free(want);
	free(err);
	free(path);

	path = write_conf("comments.conf", "# a comment\n; another\n[server]\n"
					   "port_base = 20000 ; inline\n  # indented\n"
					   "hostname = mx.example.test\n");
	assert_int_equal(config_load(path, false, &cfg, &err), 0);
	assert_int_equal(config_int(cfg, "server.port_base"), 20000);
	assert_string_equal(config_str(cfg, "server.hostname"), "mx.example.test");
	config_free(&cfg);
	free(path);
}

/* A missing file is an error unless missing_ok. */
static void test_missing_file(void **state)
{
	(void)state;
	char *path = xasprintf("%s/absent.conf", test_dir);
	config *cfg = NULL;
	char *err = NULL;
	assert_int_equal(config_load(path, false, &cfg, &err), -1);
	char *want = xasprintf("%s: cannot open: No such file or directory", path);
	assert_string_equal(err, want);
	free(want);
	free(err);
	err = NULL;
	assert_int_equal(config_load(path, true, &cfg, &err), 0);
	assert_non_null(cfg);
	assert_string_equal(config_datadir(cfg), test_dir);
	assert_int_equal(config_int(cfg, "server.port_base"), 10000);
	config_free(&cfg);
	free(path);
}

struct set_case {
	const char *key;
	const char *value;
	const char *error; /* NULL = accepted */
};

/* config_set checks values the way the parser does. */
static void test_set(void **state)
{
	(void)state;
	static const struct set_case cases[] = {
		{"server.port_base", "2000", NULL},
		{"server.port_base", "x", "bad value for server.port_base: 'x' is not a number"},
		{"log.transcript", "OFF", NULL},
		{"log.transcript", "nah",
		 "bad value for log.transcript: 'nah' is not a boolean (yes/no/true/false/on/off/1/0)"},
		{"server.hostnam", "x", "unknown key 'server.hostnam'"},
		{"hostname", "x", "unknown key 'hostname'"},
		{"routes.example.org", "10.0.0.1:25", NULL},
		{"log.level", "DEBUG", NULL},
		{"log.level", "verbose",
		 "bad value for log.level: 'verbose' is not one of debug, info, warn, error"},
		{"server.port_base", "64540", NULL},
	};
	config *cfg = config_defaults();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL;
		int rc = config_set(cfg, cases[i].key, cases[i].value, &err);
		if (cases[i].error == NULL) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, -1);
			assert_string_equal(err, cases[i].error);
			free(err);
		}
	}
	assert_int_equal(config_int(cfg, "server.port_base"), 64540);
	assert_false(config_bool(cfg, "log.transcript"));
	assert_string_equal(config_section_get(cfg, "routes", "example.org"), "10.0.0.1:25");
	config_set_datadir(cfg, "/srv/mail");
	char *p = config_path_in_datadir(cfg, "lmtp.socket");
	assert_string_equal(p, "/srv/mail/run/lmtp.sock");
	free(p);
	assert_int_equal(config_set(cfg, "lmtp.socket", "/abs/lmtp.sock", NULL), 0);
	p = config_path_in_datadir(cfg, "lmtp.socket");
	assert_string_equal(p, "/abs/lmtp.sock");
	free(p);
	config_free(&cfg);
}

/* Every boolean spelling. */
static void test_booleans(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		bool value;
	} cases[] = {{"yes", true}, {"no", false}, {"true", true}, {"false", false},
		     {"on", true},  {"off", false}, {"1", true},   {"0", false},
		     {"YES", true}, {"False", false}};
	config *cfg = config_defaults();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL;
		assert_int_equal(config_set(cfg, "mda.quota_tempfail", cases[i].text, &err), 0);
		assert_int_equal(config_bool(cfg, "mda.quota_tempfail"), cases[i].value);
	}
	config_free(&cfg);
}

/* Reads a FILE* written by a print function back into a string. */
static char *capture(void (*print)(const config *, FILE *), const config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	print(cfg, f);
	fclose(f);
	return text;
}

static void print_reference(const config *cfg, FILE *out)
{
	(void)cfg;
	config_print_reference(out);
}

/* config_print writes help comments, sections and effective values, and its
 * output loads back to the same values. */
static void test_print(void **state)
{
	(void)state;
	config *cfg = config_defaults();
	assert_int_equal(config_set(cfg, "server.port_base", "0", NULL), 0);
	assert_int_equal(config_set(cfg, "routes.example.org", "h:25", NULL), 0);
	char *text = capture(config_print, cfg);
	assert_non_null(strstr(text, "\n[server]\n# host name used in greetings, Received fields and "
				     "the certificate (default: localhost)\nhostname = localhost\n"));
	assert_non_null(strstr(text, "\nport_base = 0\n"));
	assert_non_null(strstr(text, "\n[smtp]\n"));
	assert_non_null(strstr(text, "\n[routes]\nexample.org = h:25\n"));
	/* each section appears once */
	const char *first = strstr(text, "[server]");
	assert_null(strstr(first + 1, "[server]"));

	char *path = write_conf("printed.conf", text);
	config *back = NULL;
	char *err = NULL;
	assert_int_equal(config_load(path, false, &back, &err), 0);
	assert_int_equal(config_int(back, "server.port_base"), 0);
	assert_string_equal(config_str(back, "server.listen"), "127.0.0.1");
	assert_string_equal(config_section_get(back, "routes", "example.org"), "h:25");
	config_free(&back);
	free(path);
	free(text);

	text = capture(print_reference, cfg);
	assert_true(strncmp(text, "| key | default | meaning |\n|---|---|---|\n", 41) == 0);
	assert_non_null(strstr(text, "| `server.port_base` | `10000` | added to each standard port"));
	assert_non_null(strstr(text, "| `log.file` | (empty) | "));
	free(text);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),     cmocka_unit_test(test_load_values),
		cmocka_unit_test(test_load_errors),  cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_long_lines_and_comments),
		cmocka_unit_test(test_set),          cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_print),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
