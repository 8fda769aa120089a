/* password.h: password hashes and SCRAM-SHA-256 keys.
 *
 * Passwords are stored only as yescrypt hashes (libcrypt, "$y$...": salted and
 * deliberately slow) plus the SCRAM-SHA-256 keys of RFC 5802/7677 (salt,
 * iteration count, StoredKey, ServerKey), from which the password cannot be
 * recovered. Verifying a hash takes tens of milliseconds: daemons call it on
 * the libuv thread pool (sasl.c does), never on the loop. */
#ifndef MAILSTACK_PASSWORD_H
#define MAILSTACK_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_DEFAULT_ITERATIONS 4096

struct scram_keys {
	char salt_b64[64];     /* base64 of 16 random bytes */
	uint32_t iterations;
	unsigned char stored_key[SCRAM_KEY_LEN];
	unsigned char server_key[SCRAM_KEY_LEN];
};

/* A new yescrypt hash of password (caller frees); NULL only if libcrypt fails. */
char *password_hash(const char *password);
/* True when password matches hash (constant-time comparison). */
bool password_verify(const char *hash, const char *password);
/* Derives SCRAM-SHA-256 keys with a fresh random salt. */
int scram_keys_make(const char *password, uint32_t iterations, struct scram_keys *keys_r);
/* Derives the keys for a given salt (client side and tests). */
int scram_keys_derive(const char *password, const char *salt_b64, uint32_t iterations,
		      struct scram_keys *keys_r);
/* As scram_keys_derive, also giving ClientKey (the SCRAM client needs it to
 * compute ClientProof; it is never stored). */
int scram_keys_derive_client(const char *password, const char *salt_b64, uint32_t iterations,
			     struct scram_keys *keys_r, unsigned char client_key_r[SCRAM_KEY_LEN]);
/* Encodes keys as "iterations:salt:storedkey_b64:serverkey_b64" and back. */
char *scram_keys_encode(const struct scram_keys *keys);
int scram_keys_decode(const char *text, struct scram_keys *keys_r);

/* A random password of len characters from an unambiguous alphabet (demo users). */
char *password_generate(size_t len);

#endif
