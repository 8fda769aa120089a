/* tls.c: TLS contexts and sessions on OpenSSL 3 memory BIOs (see tls.h).
 *
 * A session is an SSL object between two memory BIOs: `in` holds ciphertext
 * read from the socket (tls_session_feed), `out` holds ciphertext to send
 * (tls_session_take_output). Nothing here touches a socket, so net.c can
 * drive any number of sessions from one libuv loop.
 *
 * Session states: HANDSHAKING -> ESTABLISHED (tls_session_handshake returns
 * TLS_OK) -> CLOSED (peer's close_notify seen by tls_session_read); any
 * failure -> FAILED with the reason kept in `error`.
 *
 * Policy: TLS 1.2 and later only, no compression, no renegotiation. A client
 * always checks the peer's chain and name (so tls_session_peer_verified is
 * meaningful), but fails the handshake on a bad certificate only when its
 * context was made with verify = true. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buffer.h"

/* Longest error text kept for a session. */
#define TLS_ERROR_MAX 256
/* Validity of a certificate made by tls_make_self_signed: 10 years. */
#define TLS_SELF_SIGNED_DAYS 3650

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	bool server;
	bool verify;
};

enum tls_session_state {
	TLS_STATE_HANDSHAKING,
	TLS_STATE_ESTABLISHED,
	TLS_STATE_CLOSED,
	TLS_STATE_FAILED,
};

struct tls_session {
	SSL *ssl;
	BIO *in;  /* ciphertext from the peer, owned by ssl */
	BIO *out; /* ciphertext to the peer, owned by ssl */
	bool server;
	enum tls_session_state state;
	char error[TLS_ERROR_MAX];
};

/* The text of OpenSSL's most recent queued error (and clears the queue). */
static void tls_last_error(char *out, size_t cap, const char *fallback)
{
	unsigned long code = ERR_get_error();
	unsigned long next;
	/* The first queued error is usually the root cause; drop the rest. */
	while ((next = ERR_get_error()) != 0)
		(void)next;
	if (code == 0) {
		snprintf(out, cap, "%s", fallback);
		return;
	}
	const char *reason = ERR_reason_error_string(code);
	snprintf(out, cap, "%s", reason != NULL ? reason : fallback);
}

/* Applies the settings shared by server and client contexts. */
static void tls_ctx_common(SSL_CTX *ssl_ctx)
{
	SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					     SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
					  SSL_MODE_ENABLE_PARTIAL_WRITE);
}

/* Fails with a message naming path when it cannot be read. */
static int tls_check_readable(const char *what, const char *path, char **err_r)
{
	if (access(path, R_OK) == 0)
		return 0;
	*err_r = xasprintf("cannot read %s %s: %s", what, path, strerror(errno));
	return -1;
}

/* Loads a server context from a PEM chain and key. */
tls_ctx *tls_ctx_server_new(const char *cert_path, const char *key_path, char **err_r)
{
	if (tls_check_readable("certificate", cert_path, err_r) < 0 ||
	    tls_check_readable("private key", key_path, err_r) < 0)
		return NULL;
	SSL_CTX *ssl_ctx = SSL_CTX_new(TLS_server_method());
	if (ssl_ctx == NULL) {
		*err_r = xstrdup("cannot create a TLS context");
		return NULL;
	}
	tls_ctx_common(ssl_ctx);
	char reason[TLS_ERROR_MAX];
	if (SSL_CTX_use_certificate_chain_file(ssl_ctx, cert_path) != 1) {
		tls_last_error(reason, sizeof(reason), "bad certificate");
		*err_r = xasprintf("cannot load certificate %s: %s", cert_path, reason);
		SSL_CTX_free(ssl_ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ssl_ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		tls_last_error(reason, sizeof(reason), "bad key");
		*err_r = xasprintf("cannot load private key %s: %s", key_path, reason);
		SSL_CTX_free(ssl_ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ssl_ctx) != 1) {
		tls_last_error(reason, sizeof(reason), "key does not match");
		*err_r = xasprintf("private key %s does not match certificate %s: %s", key_path,
				   cert_path, reason);
		SSL_CTX_free(ssl_ctx);
		return NULL;
	}
	tls_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->ssl_ctx = ssl_ctx;
	ctx->server = true;
	return ctx;
}

/* Makes a client context, trusting ca_file or the system store. */
tls_ctx *tls_ctx_client_new(bool verify, const char *ca_file, char **err_r)
{
	SSL_CTX *ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (ssl_ctx == NULL) {
		*err_r = xstrdup("cannot create a TLS context");
		return NULL;
	}
	tls_ctx_common(ssl_ctx);
	char reason[TLS_ERROR_MAX];
	if (ca_file != NULL) {
		if (tls_check_readable("CA file", ca_file, err_r) < 0) {
			SSL_CTX_free(ssl_ctx);
			return NULL;
		}
		if (SSL_CTX_load_verify_locations(ssl_ctx, ca_file, NULL) != 1) {
			tls_last_error(reason, sizeof(reason), "bad CA file");
			*err_r = xasprintf("cannot load CA file %s: %s", ca_file, reason);
			SSL_CTX_free(ssl_ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ssl_ctx) != 1) {
		/* No system store is not fatal: verification will simply fail. */
		ERR_clear_error();
	}
	SSL_CTX_set_verify(ssl_ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	tls_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->ssl_ctx = ssl_ctx;
	ctx->verify = verify;
	return ctx;
}

/* Frees a context (sessions hold their own reference) and sets *ctx NULL. */
void tls_ctx_free(tls_ctx **ctx)
{
	if (*ctx == NULL)
		return;
	SSL_CTX_free((*ctx)->ssl_ctx);
	free(*ctx);
	*ctx = NULL;
}

/* Adds one X509v3 extension from its configuration text. */
static int tls_add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	int ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* Writes the key to key_path, created with mode 0600. */
static int tls_write_key(EVP_PKEY *key, const char *key_path, char **err_r)
{
	int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		*err_r = xasprintf("cannot create %s: %s", key_path, strerror(errno));
		return -1;
	}
	/* An existing file keeps its old mode through O_CREAT: force it. */
	if (fchmod(fd, 0600) < 0) {
		*err_r = xasprintf("cannot chmod %s: %s", key_path, strerror(errno));
		close(fd);
		return -1;
	}
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		*err_r = xasprintf("cannot open %s: %s", key_path, strerror(errno));
		close(fd);
		return -1;
	}
	int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	if (fclose(f) != 0 || ok != 1) {
		*err_r = xasprintf("cannot write %s", key_path);
		return -1;
	}
	return 0;
}

/* Writes the certificate to cert_path (mode 0644). */
static int tls_write_cert(X509 *cert, const char *cert_path, char **err_r)
{
	FILE *f = fopen(cert_path, "we");
	if (f == NULL) {
		*err_r = xasprintf("cannot create %s: %s", cert_path, strerror(errno));
		return -1;
	}
	int ok = PEM_write_X509(f, cert);
	if (fclose(f) != 0 || ok != 1) {
		*err_r = xasprintf("cannot write %s", cert_path);
		return -1;
	}
	return 0;
}

/* Builds the certificate for key: subject CN=hostname, SANs, 10 years. */
static X509 *tls_build_cert(EVP_PKEY *key, const char *hostname)
{
	X509 *cert = X509_new();
	if (cert == NULL)
		return NULL;
	unsigned char serial[16];
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f; /* a positive serial number */
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL)
		goto fail;
	ASN1_INTEGER *sn = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
	BN_free(bn);
	if (sn == NULL || X509_set_version(cert, X509_VERSION_3) != 1)
		goto fail;
	if (X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), TLS_SELF_SIGNED_DAYS, 0, NULL) == NULL)
		goto fail;
	X509_NAME *name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname,
				       -1, -1, 0) != 1 ||
	    X509_set_issuer_name(cert, name) != 1 || X509_set_pubkey(cert, key) != 1)
		goto fail;

	char *san = strcmp(hostname, "localhost") == 0
			    ? xstrdup("DNS:localhost,IP:127.0.0.1,IP:::1")
			    : xasprintf("DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", hostname);
	int bad = tls_add_ext(cert, NID_subject_alt_name, san);
	free(san);
	if (bad != 0 || tls_add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    tls_add_ext(cert, NID_ext_key_usage, "serverAuth") != 0 ||
	    tls_add_ext(cert, NID_subject_key_identifier, "hash") != 0 ||
	    tls_add_ext(cert, NID_authority_key_identifier, "keyid:always") != 0)
		goto fail;
	if (X509_sign(cert, key, EVP_sha256()) == 0)
		goto fail;
	return cert;
fail:
	X509_free(cert);
	return NULL;
}

/* Makes an EC P-256 key and a self-signed certificate for hostname. */
int tls_make_self_signed(const char *cert_path, const char *key_path, const char *hostname,
			 char **err_r)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	if (key == NULL) {
		*err_r = xstrdup("cannot generate an EC P-256 key");
		return -1;
	}
	X509 *cert = tls_build_cert(key, hostname);
	if (cert == NULL) {
		char reason[TLS_ERROR_MAX];
		tls_last_error(reason, sizeof(reason), "unknown error");
		*err_r = xasprintf("cannot build a certificate for %s: %s", hostname, reason);
		EVP_PKEY_free(key);
		return -1;
	}
	int ret = 0;
	if (tls_write_key(key, key_path, err_r) < 0 || tls_write_cert(cert, cert_path, err_r) < 0)
		ret = -1;
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

/* ---- sessions ---- */

/* Records why the session failed and enters FAILED. */
static void tls_session_fail(tls_session *s, const char *fallback)
{
	char reason[TLS_ERROR_MAX / 2];
	tls_last_error(reason, sizeof(reason), fallback);
	long verify = s->server ? X509_V_OK : SSL_get_verify_result(s->ssl);
	if (verify != X509_V_OK)
		snprintf(s->error, sizeof(s->error), "%s: %.100s", reason,
			 X509_verify_cert_error_string(verify));
	else
		snprintf(s->error, sizeof(s->error), "%s", reason);
	s->state = TLS_STATE_FAILED;
}

/* Sets the name a client sends (SNI) and checks in the peer's certificate. */
static void tls_session_set_peer_name(tls_session *s, const char *server_name)
{
	unsigned char ip[16];
	X509_VERIFY_PARAM *param = SSL_get0_param(s->ssl);
	if (inet_pton(AF_INET, server_name, ip) == 1 || inet_pton(AF_INET6, server_name, ip) == 1) {
		/* RFC 6066, section 3: no IP literals in SNI. */
		X509_VERIFY_PARAM_set1_ip_asc(param, server_name);
		return;
	}
	SSL_set_tlsext_host_name(s->ssl, server_name);
	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	SSL_set1_host(s->ssl, server_name);
}

/* A new session over memory BIOs. */
tls_session *tls_session_new(tls_ctx *ctx, bool server, const char *server_name)
{
	tls_session *s = xcalloc(1, sizeof(*s));
	s->ssl = SSL_new(ctx->ssl_ctx);
	s->in = BIO_new(BIO_s_mem());
	s->out = BIO_new(BIO_s_mem());
	if (s->ssl == NULL || s->in == NULL || s->out == NULL) {
		fprintf(stderr, "fatal: out of memory in OpenSSL\n");
		abort();
	}
	/* An empty memory BIO means "retry later", not end of file. */
	BIO_set_mem_eof_return(s->in, -1);
	BIO_set_mem_eof_return(s->out, -1);
	SSL_set_bio(s->ssl, s->in, s->out);
	s->server = server;
	s->state = TLS_STATE_HANDSHAKING;
	if (server) {
		SSL_set_accept_state(s->ssl);
	} else {
		SSL_set_connect_state(s->ssl);
		if (server_name != NULL && server_name[0] != '\0')
			tls_session_set_peer_name(s, server_name);
	}
	return s;
}

/* Frees a session and sets *s NULL. */
void tls_session_free(tls_session **s)
{
	if (*s == NULL)
		return;
	SSL_free((*s)->ssl); /* frees both BIOs */
	free(*s);
	*s = NULL;
}

/* Queues ciphertext from the socket for OpenSSL. */
int tls_session_feed(tls_session *s, const char *data, size_t len)
{
	while (len > 0) {
		int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
		int n = BIO_write(s->in, data, chunk);
		if (n <= 0) {
			snprintf(s->error, sizeof(s->error), "cannot buffer TLS input");
			s->state = TLS_STATE_FAILED;
			return TLS_ERROR;
		}
		data += n;
		len -= (size_t)n;
	}
	return TLS_OK;
}

/* Advances the handshake as far as the input allows. */
int tls_session_handshake(tls_session *s)
{
	if (s->state == TLS_STATE_ESTABLISHED)
		return TLS_OK;
	if (s->state != TLS_STATE_HANDSHAKING)
		return TLS_ERROR;
	ERR_clear_error();
	int r = SSL_do_handshake(s->ssl);
	if (r == 1) {
		s->state = TLS_STATE_ESTABLISHED;
		return TLS_OK;
	}
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return TLS_WANT_MORE;
	tls_session_fail(s, e == SSL_ERROR_SYSCALL ? "connection closed during handshake"
						   : "handshake failed");
	return TLS_ERROR;
}

/* True once the handshake has completed. */
bool tls_session_established(const tls_session *s)
{
	return s->state == TLS_STATE_ESTABLISHED;
}

/* Reads decrypted data, draining what OpenSSL already holds. */
long tls_session_read(tls_session *s, char *out, size_t cap)
{
	/* tls.h: statuses come back negated so they never look like counts. */
	if (s->state == TLS_STATE_CLOSED)
		return -TLS_CLOSED;
	if (s->state != TLS_STATE_ESTABLISHED)
		return TLS_ERROR;
	size_t got = 0;
	while (got < cap) {
		size_t want = cap - got;
		int chunk = want > INT32_MAX ? INT32_MAX : (int)want;
		ERR_clear_error();
		int n = SSL_read(s->ssl, out + got, chunk);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		int e = SSL_get_error(s->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			s->state = TLS_STATE_CLOSED;
			if (got > 0)
				break;
			return -TLS_CLOSED;
		}
		tls_session_fail(s, "read failed");
		return got > 0 ? (long)got : TLS_ERROR;
	}
	return (long)got;
}

/* Encrypts application data into the output BIO. */
int tls_session_write(tls_session *s, const char *data, size_t len)
{
	/* After the peer's close_notify we may still answer (half-close). */
	if (s->state != TLS_STATE_ESTABLISHED && s->state != TLS_STATE_CLOSED)
		return TLS_ERROR;
	while (len > 0) {
		int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
		ERR_clear_error();
		int n = SSL_write(s->ssl, data, chunk);
		if (n <= 0) {
			/* Memory BIOs grow, so any failure here is final. */
			tls_session_fail(s, "write failed");
			return TLS_ERROR;
		}
		data += n;
		len -= (size_t)n;
	}
	return TLS_OK;
}

/* Moves up to cap bytes of ciphertext to out. */
size_t tls_session_take_output(tls_session *s, char *out, size_t cap)
{
	size_t got = 0;
	while (got < cap && BIO_ctrl_pending(s->out) > 0) {
		size_t want = cap - got;
		int chunk = want > INT32_MAX ? INT32_MAX : (int)want;
		int n = BIO_read(s->out, out + got, chunk);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Ciphertext waiting to be taken. */
size_t tls_session_pending_output(const tls_session *s)
{
	return BIO_ctrl_pending(s->out);
}

/* Queues close_notify (only meaningful once established). */
void tls_session_shutdown(tls_session *s)
{
	if (s->state != TLS_STATE_ESTABLISHED && s->state != TLS_STATE_CLOSED)
		return;
	ERR_clear_error();
	(void)SSL_shutdown(s->ssl);
	ERR_clear_error();
}

/* The negotiated protocol version, e.g. "TLSv1.3". */
const char *tls_session_version(const tls_session *s)
{
	return SSL_get_version(s->ssl);
}

/* The negotiated cipher suite name. */
const char *tls_session_cipher(const tls_session *s)
{
	const char *name = SSL_get_cipher_name(s->ssl);
	return name != NULL ? name : "";
}

/* Why the session failed ("" when it has not). */
const char *tls_session_error(const tls_session *s)
{
	return s->error;
}

/* SHA-256 fingerprint of the peer certificate, "AB:CD:...". When a client's
 * verification failed, OpenSSL never installs the peer certificate, but the
 * chain the server sent is kept: its first entry is the server's own
 * certificate, so the fingerprint can still be shown to the user. */
char *tls_session_peer_fingerprint(const tls_session *s)
{
	X509 *peer = SSL_get0_peer_certificate(s->ssl);
	if (peer == NULL && !s->server) {
		STACK_OF(X509) *chain = SSL_get_peer_cert_chain(s->ssl);
		if (chain != NULL && sk_X509_num(chain) > 0)
			peer = sk_X509_value(chain, 0);
	}
	if (peer == NULL)
		return NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	if (X509_digest(peer, EVP_sha256(), md, &md_len) != 1)
		return NULL;
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc((size_t)md_len * 3 + 1);
	for (unsigned int i = 0; i < md_len; i++) {
		out[i * 3] = hex[md[i] >> 4];
		out[i * 3 + 1] = hex[md[i] & 15];
		out[i * 3 + 2] = ':';
	}
	out[md_len > 0 ? md_len * 3 - 1 : 0] = '\0';
	return out;
}

/* True when the peer's chain and name checked out (client side). */
bool tls_session_peer_verified(const tls_session *s)
{
	if (s->state != TLS_STATE_ESTABLISHED && s->state != TLS_STATE_CLOSED)
		return false;
	return SSL_get0_peer_certificate(s->ssl) != NULL &&
	       SSL_get_verify_result(s->ssl) == X509_V_OK;
}
