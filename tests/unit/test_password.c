/* test_password.c: yescrypt hashes, SCRAM-SHA-256 keys against the RFC 7677
 * test vector, the key encoding and generated passwords. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "buffer.h"
#include "codec.h"
#include "password.h"

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST_BARE "n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_FIRST \
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL_NO_PROOF "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_SIGNATURE "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* Decodes base64 into exactly SCRAM_KEY_LEN bytes. */
static void decode_key(const char *b64, unsigned char out[SCRAM_KEY_LEN])
{
	char *raw = NULL;
	size_t len = 0;
	assert_int_equal(base64_decode(b64, strlen(b64), &raw, &len), 0);
	assert_int_equal(len, SCRAM_KEY_LEN);
	memcpy(out, raw, SCRAM_KEY_LEN);
	free(raw);
}

/* The derived keys verify the RFC's ClientProof and produce its ServerSignature. */
static void test_scram_rfc7677_vector(void **state)
{
	(void)state;
	struct scram_keys keys;
	assert_int_equal(scram_keys_derive("pencil", RFC_SALT, 4096, &keys), 0);
	assert_string_equal(keys.salt_b64, RFC_SALT);
	assert_int_equal(keys.iterations, 4096);

	const char *auth_message =
		RFC_CLIENT_FIRST_BARE "," RFC_SERVER_FIRST "," RFC_CLIENT_FINAL_NO_PROOF;
	unsigned char signature[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	unsigned int len = 0;
	/* Server side of RFC 5802 section 3: ClientKey = ClientProof XOR
	 * HMAC(StoredKey, AuthMessage) and H(ClientKey) must equal StoredKey. */
	assert_non_null(HMAC(EVP_sha256(), keys.stored_key, SCRAM_KEY_LEN,
			     (const unsigned char *)auth_message, strlen(auth_message), signature,
			     &len));
	decode_key(RFC_PROOF, proof);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ signature[i];
	unsigned char stored[SCRAM_KEY_LEN];
	SHA256(client_key, SCRAM_KEY_LEN, stored);
	assert_memory_equal(stored, keys.stored_key, SCRAM_KEY_LEN);

	unsigned char server_signature[SCRAM_KEY_LEN], want[SCRAM_KEY_LEN];
	assert_non_null(HMAC(EVP_sha256(), keys.server_key, SCRAM_KEY_LEN,
			     (const unsigned char *)auth_message, strlen(auth_message),
			     server_signature, &len));
	decode_key(RFC_SERVER_SIGNATURE, want);
	assert_memory_equal(server_signature, want, SCRAM_KEY_LEN);

	/* The stored keys themselves (computed independently with Python's hashlib). */
	decode_key("WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=", want);
	assert_memory_equal(keys.stored_key, want, SCRAM_KEY_LEN);
	decode_key("wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", want);
	assert_memory_equal(keys.server_key, want, SCRAM_KEY_LEN);

	/* A different password gives different keys. */
	struct scram_keys other;
	assert_int_equal(scram_keys_derive("pencil2", RFC_SALT, 4096, &other), 0);
	assert_memory_not_equal(other.stored_key, keys.stored_key, SCRAM_KEY_LEN);
}

/* Encoding round trip and rejection of damaged text. */
static void test_scram_encode_decode(void **state)
{
	(void)state;
	struct scram_keys keys, back;
	assert_int_equal(scram_keys_make("secret", 4096, &keys), 0);
	char raw_salt[64];
	char *salt = NULL;
	size_t salt_len = 0;
	assert_int_equal(base64_decode(keys.salt_b64, strlen(keys.salt_b64), &salt, &salt_len), 0);
	assert_int_equal(salt_len, 16);
	memcpy(raw_salt, salt, salt_len);
	free(salt);

	char *text = scram_keys_encode(&keys);
	assert_int_equal(strncmp(text, "4096:", 5), 0);
	assert_int_equal(scram_keys_decode(text, &back), 0);
	assert_int_equal(back.iterations, 4096);
	assert_string_equal(back.salt_b64, keys.salt_b64);
	assert_memory_equal(back.stored_key, keys.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(back.server_key, keys.server_key, SCRAM_KEY_LEN);

	/* Fresh salts differ. */
	struct scram_keys again;
	assert_int_equal(scram_keys_make("secret", 4096, &again), 0);
	assert_string_not_equal(again.salt_b64, keys.salt_b64);

	static const char *const bad[] = {
		"",
		"x:AAAA:AAAA:AAAA",
		"0:W22ZaJ0SNY7soEsUEjb6gQ==:WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"4096:W22ZaJ0SNY7soEsUEjb6gQ==:WG5d8oPm:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"4096:W22ZaJ0SNY7soEsUEjb6gQ==:WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
		"4096::WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"4096:!!!:WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"4096:W22ZaJ0SNY7soEsUEjb6gQ==:WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=:extra",
		"99999999999:W22ZaJ0SNY7soEsUEjb6gQ==:WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scram_keys_decode(bad[i], &back) == 0)
			fail_msg("decoded bad text '%s'", bad[i]);
	}
	assert_int_equal(scram_keys_decode("4096:W22ZaJ0SNY7soEsUEjb6gQ==:"
					   "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
					   "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
					   &back),
			 0);
	assert_string_equal(back.salt_b64, RFC_SALT);
	free(text);

	assert_int_equal(scram_keys_derive("x", "not base64!", 4096, &back), -1);
	assert_int_equal(scram_keys_derive("x", RFC_SALT, 0, &back), -1);
}

/* yescrypt hashes: salted, verify the right password only. */
static void test_hash_verify(void **state)
{
	(void)state;
	static const char *const passwords[] = {"secret", "", "p\xc3\xa4ssw\xc3\xb6rd",
						"with spaces and : colons"};
	for (size_t i = 0; i < sizeof(passwords) / sizeof(passwords[0]); i++) {
		char *hash = password_hash(passwords[i]);
		assert_non_null(hash);
		assert_int_equal(strncmp(hash, "$y$", 3), 0);
		assert_null(strstr(hash, passwords[i][0] != '\0' ? passwords[i] : "\x01"));
		assert_true(password_verify(hash, passwords[i]));
		assert_false(password_verify(hash, "wrong"));
		char *again = password_hash(passwords[i]);
		assert_string_not_equal(hash, again);
		assert_true(password_verify(again, passwords[i]));
		free(again);
		free(hash);
	}
	assert_false(password_verify(NULL, "x"));
	assert_false(password_verify("", "x"));
	assert_false(password_verify("*0", "x"));
	assert_false(password_verify("$y$garbage", "x"));
}

/* Generated passwords: requested length, unambiguous alphabet, not repeated. */
static void test_generate(void **state)
{
	(void)state;
	char *a = password_generate(16);
	char *b = password_generate(16);
	assert_int_equal(strlen(a), 16);
	assert_int_equal(strspn(a, "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"), 16);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	char *empty = password_generate(0);
	assert_string_equal(empty, "");
	free(empty);
	char *longer = password_generate(200);
	assert_int_equal(strlen(longer), 200);
	free(longer);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scram_rfc7677_vector),
		cmocka_unit_test(test_scram_encode_decode),
		cmocka_unit_test(test_hash_verify),
		cmocka_unit_test(test_generate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
