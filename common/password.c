/* password.c: yescrypt password hashes (libcrypt) and SCRAM-SHA-256 keys
 * (RFC 5802 section 3, RFC 7677) with OpenSSL.
 *
 * A stored user carries two things derived from the password, never the
 * password itself: the yescrypt hash "$y$..." used by PLAIN, LOGIN, POP3 PASS
 * and IMAP LOGIN, and the SCRAM keys (salt, iteration count, StoredKey,
 * ServerKey) used by SCRAM-SHA-256, from which the password cannot be
 * recovered.
 *
 * SASLprep (RFC 4013): passwords are used as their UTF-8 bytes, unchanged.
 * ASCII passwords are already in SASLprep form except for control characters,
 * which we keep rather than reject; non-ASCII passwords are passed through
 * without NFKC normalisation, so a client that normalises differently will
 * fail SCRAM for such a password (PLAIN still works, as it hashes the bytes
 * it receives). This is a deliberate, documented simplification. */
#include "password.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "codec.h"

#define SCRAM_SALT_LEN 16
/* Iteration counts accepted from storage or a server (RFC 7677 asks >= 4096
 * of servers; we accept lower for tests but bound the work a peer can ask). */
#define SCRAM_MIN_ITERATIONS 1
#define SCRAM_MAX_ITERATIONS 1000000

char *password_hash(const char *password)
{
	char *setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
	if (setting == NULL)
		return NULL;
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	char *result = crypt_r(password, setting, data);
	char *hash = NULL;
	if (result != NULL && result[0] == '$')
		hash = xstrdup(result);
	explicit_bzero(data, sizeof(*data));
	free(data);
	free(setting);
	return hash;
}

bool password_verify(const char *hash, const char *password)
{
	if (hash == NULL || password == NULL || hash[0] != '$')
		return false;
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	const char *result = crypt_r(password, hash, data);
	bool ok = false;
	if (result != NULL && result[0] == '$') {
		size_t len = strlen(hash);
		ok = strlen(result) == len && CRYPTO_memcmp(result, hash, len) == 0;
	}
	explicit_bzero(data, sizeof(*data));
	free(data);
	return ok;
}

/* HMAC-SHA-256 of data under key into out (32 bytes). */
static int scram_hmac(const unsigned char *key, size_t key_len, const void *data, size_t len,
		      unsigned char out[SCRAM_KEY_LEN])
{
	unsigned int out_len = 0;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) == NULL ||
	    out_len != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

int scram_keys_derive_client(const char *password, const char *salt_b64, uint32_t iterations,
			     struct scram_keys *keys_r, unsigned char client_key_r[SCRAM_KEY_LEN])
{
	if (iterations < SCRAM_MIN_ITERATIONS || iterations > SCRAM_MAX_ITERATIONS ||
	    strlen(salt_b64) >= sizeof(keys_r->salt_b64))
		return -1;
	char *salt = NULL;
	size_t salt_len = 0;
	if (base64_decode(salt_b64, strlen(salt_b64), &salt, &salt_len) < 0)
		return -1;
	unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	int ret = -1;
	/* SaltedPassword := Hi(Normalize(password), salt, i): Hi is PBKDF2 with
	 * HMAC as the PRF and one block of output (RFC 5802 section 2.2). */
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const unsigned char *)salt,
			      (int)salt_len, (int)iterations, EVP_sha256(), SCRAM_KEY_LEN,
			      salted) != 1)
		goto out;
	if (scram_hmac(salted, sizeof(salted), "Client Key", 10, client_key) < 0 ||
	    scram_hmac(salted, sizeof(salted), "Server Key", 10, keys_r->server_key) < 0)
		goto out;
	SHA256(client_key, sizeof(client_key), keys_r->stored_key);
	if (client_key_r != NULL)
		memcpy(client_key_r, client_key, SCRAM_KEY_LEN);
	snprintf(keys_r->salt_b64, sizeof(keys_r->salt_b64), "%s", salt_b64);
	keys_r->iterations = iterations;
	ret = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	free(salt);
	return ret;
}

int scram_keys_derive(const char *password, const char *salt_b64, uint32_t iterations,
		      struct scram_keys *keys_r)
{
	return scram_keys_derive_client(password, salt_b64, iterations, keys_r, NULL);
}

int scram_keys_make(const char *password, uint32_t iterations, struct scram_keys *keys_r)
{
	unsigned char salt[SCRAM_SALT_LEN];
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return -1;
	char *salt_b64 = base64_encode(salt, sizeof(salt));
	int ret = scram_keys_derive(password, salt_b64, iterations, keys_r);
	free(salt_b64);
	return ret;
}

char *scram_keys_encode(const struct scram_keys *keys)
{
	char *stored = base64_encode(keys->stored_key, SCRAM_KEY_LEN);
	char *server = base64_encode(keys->server_key, SCRAM_KEY_LEN);
	char *text = xasprintf("%u:%s:%s:%s", keys->iterations, keys->salt_b64, stored, server);
	free(stored);
	free(server);
	return text;
}

/* Decodes one base64 field that must hold exactly SCRAM_KEY_LEN bytes. */
static int scram_decode_key(const char *text, size_t len, unsigned char out[SCRAM_KEY_LEN])
{
	char *raw = NULL;
	size_t raw_len = 0;
	if (base64_decode(text, len, &raw, &raw_len) < 0)
		return -1;
	int ret = raw_len == SCRAM_KEY_LEN ? 0 : -1;
	if (ret == 0)
		memcpy(out, raw, SCRAM_KEY_LEN);
	free(raw);
	return ret;
}

int scram_keys_decode(const char *text, struct scram_keys *keys_r)
{
	struct scram_keys keys;
	memset(&keys, 0, sizeof(keys));
	const char *p = text;
	char *end = NULL;
	if (*p < '0' || *p > '9')
		return -1;
	unsigned long iterations = strtoul(p, &end, 10);
	if (*end != ':' || iterations < SCRAM_MIN_ITERATIONS || iterations > SCRAM_MAX_ITERATIONS)
		return -1;
	keys.iterations = (uint32_t)iterations;
	const char *salt = end + 1;
	const char *salt_end = strchr(salt, ':');
	if (salt_end == NULL || salt_end == salt ||
	    (size_t)(salt_end - salt) >= sizeof(keys.salt_b64))
		return -1;
	memcpy(keys.salt_b64, salt, (size_t)(salt_end - salt));
	char *salt_raw = NULL;
	size_t salt_raw_len = 0;
	if (base64_decode(keys.salt_b64, strlen(keys.salt_b64), &salt_raw, &salt_raw_len) < 0)
		return -1;
	free(salt_raw);
	const char *stored = salt_end + 1;
	const char *stored_end = strchr(stored, ':');
	if (stored_end == NULL ||
	    scram_decode_key(stored, (size_t)(stored_end - stored), keys.stored_key) < 0)
		return -1;
	const char *server = stored_end + 1;
	if (strchr(server, ':') != NULL ||
	    scram_decode_key(server, strlen(server), keys.server_key) < 0)
		return -1;
	*keys_r = keys;
	return 0;
}

char *password_generate(size_t len)
{
	/* No 0/O, 1/l/I: readable when printed once for a demo user. */
	static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	const size_t n = sizeof(alphabet) - 1;
	/* Largest multiple of n below 256: bytes above it are redrawn (no bias). */
	const unsigned limit = 256 - 256 % n;
	char *out = xmalloc(len + 1);
	size_t filled = 0;
	while (filled < len) {
		unsigned char bytes[64];
		if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
			fprintf(stderr, "mailstack: RAND_bytes failed\n");
			abort();
		}
		for (size_t i = 0; i < sizeof(bytes) && filled < len; i++) {
			if (bytes[i] < limit)
				out[filled++] = alphabet[bytes[i] % n];
		}
	}
	out[len] = '\0';
	return out;
}
