/* test_tls.c: TLS sessions pumped against each other in memory (no sockets),
 * the self-signed certificate maker, and context errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buffer.h"
#include "tls.h"

static char tmpdir[] = "/tmp/test_tls_XXXXXX";
static char cert_path[256], key_path[256];

static int group_setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	char *err = NULL;
	assert_int_equal(tls_make_self_signed(cert_path, key_path, "mx.example.test", &err), 0);
	return 0;
}

static int group_teardown(void **state)
{
	unlink(cert_path);
	unlink(key_path);
	rmdir(tmpdir);
	return 0;
}

/* Moves ciphertext from one session to the other; returns bytes moved. */
static size_t pump(tls_session *from, tls_session *to)
{
	char buf[65536];
	size_t total = 0, n;
	while ((n = tls_session_take_output(from, buf, sizeof(buf))) > 0) {
		assert_int_equal(tls_session_feed(to, buf, n), TLS_OK);
		total += n;
	}
	return total;
}

/* Runs both handshakes to the end; returns false if either fails. */
static bool handshake(tls_session *client, tls_session *server)
{
	for (int round = 0; round < 20; round++) {
		int rc = tls_session_handshake(client);
		if (rc == TLS_ERROR)
			return false;
		pump(client, server);
		int rs = tls_session_handshake(server);
		if (rs == TLS_ERROR) {
			pump(server, client);
			return false;
		}
		pump(server, client);
		if (rc == TLS_OK && rs == TLS_OK)
			return true;
	}
	return false;
}

/* The key file is 0600; the certificate names host, localhost and both loopbacks. */
static void test_self_signed(void **state)
{
	struct stat st;
	assert_int_equal(stat(key_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	FILE *f = fopen(cert_path, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	assert_int_equal(X509_check_host(x, "mx.example.test", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "other.example.test", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
	EVP_PKEY *key = X509_get0_pubkey(x);
	assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
	char group[64];
	size_t glen;
	assert_int_equal(EVP_PKEY_get_group_name(key, group, sizeof(group), &glen), 1);
	assert_string_equal(group, "prime256v1");
	/* Valid for about ten years. */
	int days, secs;
	assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
			 1);
	assert_true(days >= 3649 && days <= 3651);
	X509_free(x);
}

/* A full handshake, data both ways, fingerprint and verification. */
static void test_session_roundtrip(void **state)
{
	char *err = NULL;
	tls_ctx *sctx = tls_ctx_server_new(cert_path, key_path, &err);
	assert_non_null(sctx);
	tls_ctx *cctx = tls_ctx_client_new(true, cert_path, &err);
	assert_non_null(cctx);
	tls_session *server = tls_session_new(sctx, true, NULL);
	tls_session *client = tls_session_new(cctx, false, "mx.example.test");
	assert_false(tls_session_established(client));
	assert_true(handshake(client, server));
	assert_true(tls_session_established(server));
	assert_true(tls_session_peer_verified(client));
	assert_string_equal(tls_session_version(client), "TLSv1.3");
	assert_true(strlen(tls_session_cipher(client)) > 0);
	char *fp = tls_session_peer_fingerprint(client);
	assert_non_null(fp);
	assert_int_equal(strlen(fp), 32 * 3 - 1);
	assert_int_equal(fp[2], ':');
	free(fp);
	assert_null(tls_session_peer_fingerprint(server)); /* no client certificate */

	assert_int_equal(tls_session_write(client, "EHLO x\r\n", 8), TLS_OK);
	pump(client, server);
	char out[64];
	long n = tls_session_read(server, out, sizeof(out));
	assert_int_equal(n, 8);
	assert_memory_equal(out, "EHLO x\r\n", 8);
	assert_int_equal(tls_session_read(server, out, sizeof(out)), 0);

	/* close_notify reaches the other side as TLS_CLOSED. */
	tls_session_shutdown(server);
	pump(server, client);
	n = tls_session_read(client, out, sizeof(out));
	if (n == 0) /* TLS 1.3 session tickets may come first */
		n = tls_session_read(client, out, sizeof(out));
	assert_int_equal(n, -TLS_CLOSED);
	/* Half-close: a reply queued with the peer's close_notify still goes out
	 * (net.c drains it before closing). */
	assert_int_equal(tls_session_write(client, "+OK\r\n", 5), TLS_OK);
	assert_true(tls_session_pending_output(client) > 0);

	tls_session_free(&client);
	tls_session_free(&server);
	assert_null(client);
	tls_ctx_free(&cctx);
	tls_ctx_free(&sctx);
	assert_null(sctx);
}

/* Many records fed at once are all drained, in small and large reads. */
static void test_drain_pending(void **state)
{
	char *err = NULL;
	tls_ctx *sctx = tls_ctx_server_new(cert_path, key_path, &err);
	tls_ctx *cctx = tls_ctx_client_new(false, NULL, &err);
	tls_session *server = tls_session_new(sctx, true, NULL);
	tls_session *client = tls_session_new(cctx, false, "localhost");
	assert_true(handshake(client, server));
	assert_false(tls_session_peer_verified(client)); /* not trusted, not required */

	enum { SIZE = 100000 };
	char *data = xmalloc(SIZE);
	for (int i = 0; i < SIZE; i++)
		data[i] = (char)('a' + i % 26);
	assert_int_equal(tls_session_write(server, data, SIZE), TLS_OK);
	assert_true(tls_session_pending_output(server) > SIZE);
	pump(server, client);
	char *got = xmalloc(SIZE);
	size_t total = 0;
	/* Odd-sized reads: OpenSSL holds the rest of a record between them. */
	for (int i = 0; i < 10000 && total < SIZE; i++) {
		long n = tls_session_read(client, got + total, 777 < SIZE - total ? 777 : SIZE - total);
		assert_true(n >= 0);
		total += (size_t)n;
		if (n == 0)
			break;
	}
	assert_int_equal(total, SIZE);
	assert_memory_equal(got, data, SIZE);

	/* And in one read larger than everything: a single call drains it. */
	assert_int_equal(tls_session_write(server, data, SIZE), TLS_OK);
	pump(server, client);
	char *big = xmalloc(SIZE * 2);
	long n = tls_session_read(client, big, SIZE * 2);
	assert_int_equal(n, SIZE);
	free(big);
	free(got);
	free(data);
	tls_session_free(&client);
	tls_session_free(&server);
	tls_ctx_free(&cctx);
	tls_ctx_free(&sctx);
}

/* Verification failures: untrusted chain, wrong name. */
static void test_verify_failures(void **state)
{
	char *err = NULL;
	tls_ctx *sctx = tls_ctx_server_new(cert_path, key_path, &err);
	tls_ctx *system = tls_ctx_client_new(true, NULL, &err);
	tls_session *server = tls_session_new(sctx, true, NULL);
	tls_session *client = tls_session_new(system, false, "localhost");
	assert_false(handshake(client, server));
	assert_non_null(strstr(tls_session_error(client), "certificate verify failed"));
	assert_non_null(strstr(tls_session_error(client), "self-signed"));
	tls_session_free(&client);
	tls_session_free(&server);

	tls_ctx *trusting = tls_ctx_client_new(true, cert_path, &err);
	server = tls_session_new(sctx, true, NULL);
	client = tls_session_new(trusting, false, "wrong.example.org");
	assert_false(handshake(client, server));
	assert_non_null(strstr(tls_session_error(client), "hostname mismatch"));
	tls_session_free(&client);
	tls_session_free(&server);

	/* An IP address is checked against the IP SANs. */
	server = tls_session_new(sctx, true, NULL);
	client = tls_session_new(trusting, false, "127.0.0.1");
	assert_true(handshake(client, server));
	assert_true(tls_session_peer_verified(client));
	tls_session_free(&client);
	tls_session_free(&server);

	tls_ctx_free(&trusting);
	tls_ctx_free(&system);
	tls_ctx_free(&sctx);
}

/* A client limited to TLS 1.1 gets no session. */
static void test_old_protocol_refused(void **state)
{
	char *err = NULL;
	tls_ctx *sctx = tls_ctx_server_new(cert_path, key_path, &err);
	tls_session *server = tls_session_new(sctx, true, NULL);
	SSL_CTX *old = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_security_level(old, 0);
	SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
	SSL *ssl = SSL_new(old);
	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, in, out);
	SSL_set_connect_state(ssl);
	bool failed = false;
	char buf[16384];
	for (int round = 0; round < 10 && !failed; round++) {
		SSL_do_handshake(ssl);
		int n;
		while ((n = BIO_read(out, buf, sizeof(buf))) > 0)
			tls_session_feed(server, buf, (size_t)n);
		if (tls_session_handshake(server) == TLS_ERROR)
			failed = true;
		size_t m;
		while ((m = tls_session_take_output(server, buf, sizeof(buf))) > 0)
			BIO_write(in, buf, (int)m);
	}
	assert_true(failed);
	assert_false(tls_session_established(server));
	assert_true(strlen(tls_session_error(server)) > 0);
	SSL_free(ssl);
	SSL_CTX_free(old);
	tls_session_free(&server);
	tls_ctx_free(&sctx);
}

/* Missing files are errors that name the file. */
static void test_ctx_errors(void **state)
{
	char *err = NULL;
	assert_null(tls_ctx_server_new("/nonexistent/cert.pem", key_path, &err));
	assert_string_equal(err,
			    "cannot read certificate /nonexistent/cert.pem: No such file or directory");
	free(err);
	err = NULL;
	assert_null(tls_ctx_server_new(cert_path, "/nonexistent/key.pem", &err));
	assert_string_equal(err,
			    "cannot read private key /nonexistent/key.pem: No such file or directory");
	free(err);
	err = NULL;
	/* A certificate file that holds a key. */
	assert_null(tls_ctx_server_new(key_path, key_path, &err));
	assert_non_null(strstr(err, "cannot load certificate"));
	free(err);
	err = NULL;
	assert_null(tls_ctx_client_new(true, "/nonexistent/ca.pem", &err));
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	free(err);
	err = NULL;
	assert_int_equal(tls_make_self_signed("/nonexistent/c.pem", "/nonexistent/k.pem", "x", &err),
			 -1);
	assert_non_null(strstr(err, "/nonexistent/k.pem"));
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_signed),
		cmocka_unit_test(test_session_roundtrip),
		cmocka_unit_test(test_drain_pending),
		cmocka_unit_test(test_verify_failures),
		cmocka_unit_test(test_old_protocol_refused),
		cmocka_unit_test(test_ctx_errors),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
