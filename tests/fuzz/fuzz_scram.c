/* fuzz_scram.c: the SCRAM-SHA-256 server fed arbitrary client messages.
 *
 * Input forms:
 *   "R" text            -> text is sent as the raw (base64) first response;
 *   first "\n" second   -> both parts are base64-encoded by the harness and
 *                          sent as client-first and client-final; "@N@" in
 *                          the second part is replaced by the server's nonce
 *                          so the fuzzer reaches the proof check.
 * The server is freed right after the final step (the failure delay would
 * only slow the fuzzer: parsing has happened by then) and the loop is run
 * until every handle is closed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "buffer.h"
#include "codec.h"
#include "sasl.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[] = "/tmp/fuzz_scram.XXXXXX";
static userdb *fuzz_db;

/* Removes the scratch user directory at exit. */
static void fuzz_cleanup(void)
{
	userdb_close(&fuzz_db);
	static const char *const files[] = {"users.sqlite", "users.sqlite-wal",
					    "users.sqlite-shm"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *path = xasprintf("%s/%s", fuzz_dir, files[i]);
		unlink(path);
		free(path);
	}
	rmdir(fuzz_dir);
}

/* Opens the user directory once, with one user. */
static userdb *fuzz_userdb(void)
{
	if (fuzz_db != NULL)
		return fuzz_db;
	char *err = NULL;
	if (mkdtemp(fuzz_dir) == NULL || userdb_open(fuzz_dir, &fuzz_db, &err) < 0 ||
	    userdb_user_add(fuzz_db, "user@example.test", "pencil", &err) < 0) {
		fprintf(stderr, "fuzz_scram: %s\n", err != NULL ? err : "cannot set up");
		abort();
	}
	atexit(fuzz_cleanup);
	return fuzz_db;
}

struct fuzz_step {
	int calls;
	enum sasl_result result;
	char *challenge;
};

static void fuzz_cb(void *arg, enum sasl_result result, const char *challenge_b64,
		    const char *username)
{
	struct fuzz_step *st = arg;
	st->calls++;
	st->result = result;
	free(st->challenge);
	st->challenge = challenge_b64 != NULL ? xstrdup(challenge_b64) : NULL;
}

/* The r= value of a decoded server-first message, or "" (caller frees). */
static char *fuzz_server_nonce(const char *challenge_b64)
{
	char *text = NULL;
	size_t len = 0;
	if (challenge_b64 == NULL ||
	    base64_decode(challenge_b64, strlen(challenge_b64), &text, &len) < 0)
		return xstrdup("");
	char *nonce = xstrdup("");
	if (strncmp(text, "r=", 2) == 0) {
		free(nonce);
		nonce = xstrndup(text + 2, strcspn(text + 2, ","));
	}
	free(text);
	return nonce;
}

/* Replaces every "@N@" in text with nonce (caller frees). */
static char *fuzz_substitute(const char *text, size_t len, const char *nonce)
{
	buf_t out = BUF_INIT;
	for (size_t i = 0; i < len; i++) {
		if (i + 3 <= len && memcmp(text + i, "@N@", 3) == 0) {
			buf_append_str(&out, nonce);
			i += 2;
		} else {
			buf_append_char(&out, text[i]);
		}
	}
	buf_append(&out, "", 0);
	return buf_steal(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	userdb *db = fuzz_userdb();
	uv_loop_t loop;
	uv_loop_init(&loop);
	sasl_server *server = sasl_server_new(&loop, db, "SCRAM-SHA-256", 0);
	struct fuzz_step st = {0, SASL_CONTINUE, NULL};
	const char *text = (const char *)data;

	char *first;
	const char *second = NULL;
	size_t second_len = 0;
	if (size > 0 && text[0] == 'R') {
		first = xstrndup(text + 1, size - 1);
	} else {
		const char *nl = memchr(text, '\n', size);
		size_t first_len = nl != NULL ? (size_t)(nl - text) : size;
		first = base64_encode(text, first_len);
		if (nl != NULL) {
			second = nl + 1;
			second_len = size - first_len - 1;
		}
	}
	sasl_server_step(server, first, fuzz_cb, &st);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (st.calls == 1 && st.result == SASL_CONTINUE && second != NULL) {
		char *nonce = fuzz_server_nonce(st.challenge);
		char *final = fuzz_substitute(second, second_len, nonce);
		char *final_b64 = base64_encode(final, strlen(final));
		sasl_server_step(server, final_b64, fuzz_cb, &st);
		free(final_b64);
		free(final);
		free(nonce);
	}
	sasl_server_free(&server);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	free(st.challenge);
	free(first);
	return 0;
}
