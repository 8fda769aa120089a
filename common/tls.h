/* tls.h: TLS contexts and TLS sessions over memory BIOs.
 *
 * Protocol code never calls OpenSSL: net.c drives a tls_session with the bytes
 * libuv reads and writes, so one event loop carries any number of TLS
 * connections. Only TLS 1.2 and later are allowed. */
#ifndef MAILSTACK_TLS_H
#define MAILSTACK_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tls_ctx tls_ctx;
typedef struct tls_session tls_session;

/* A server context from PEM files; NULL with *err_r naming the file on error. */
tls_ctx *tls_ctx_server_new(const char *cert_path, const char *key_path, char **err_r);
/* A client context; verify = check the peer's chain against the system CAs
 * (or ca_file when not NULL) and its name. */
tls_ctx *tls_ctx_client_new(bool verify, const char *ca_file, char **err_r);
void tls_ctx_free(tls_ctx **ctx);

/* Writes a new self-signed certificate and private key (EC P-256, 10 years)
 * for hostname, with SANs for hostname, localhost, 127.0.0.1 and ::1.
 * The key file is created with mode 0600. */
int tls_make_self_signed(const char *cert_path, const char *key_path, const char *hostname,
			 char **err_r);

/* ---- sessions (used by net.c; protocol code does not call these) ---- */

enum tls_status {
	TLS_OK = 0,        /* progress made */
	TLS_WANT_MORE = 1, /* needs more input from the peer */
	TLS_CLOSED = 2,    /* the peer sent close_notify */
	TLS_ERROR = -1,
};

/* server_name: SNI to send and name to verify (client side), NULL on servers. */
tls_session *tls_session_new(tls_ctx *ctx, bool server, const char *server_name);
void tls_session_free(tls_session **s);
/* Feeds bytes read from the socket. */
int tls_session_feed(tls_session *s, const char *data, size_t len);
/* Advances the handshake: TLS_OK when done, TLS_WANT_MORE, or TLS_ERROR. */
int tls_session_handshake(tls_session *s);
bool tls_session_established(const tls_session *s);
/* Reads decrypted application data into out (up to cap); returns the byte
 * count, 0 when nothing is available (call again after more input), or a
 * negative enum tls_status. Always drains what OpenSSL holds (SSL_pending). */
long tls_session_read(tls_session *s, char *out, size_t cap);
/* Encrypts application data; the ciphertext waits in the output BIO. */
int tls_session_write(tls_session *s, const char *data, size_t len);
/* Takes ciphertext to send to the socket: returns bytes copied into out. */
size_t tls_session_take_output(tls_session *s, char *out, size_t cap);
size_t tls_session_pending_output(const tls_session *s);
/* Queues a close_notify alert. */
void tls_session_shutdown(tls_session *s);
/* "TLSv1.3", "TLS_AES_256_GCM_SHA384"; valid after the handshake. */
const char *tls_session_version(const tls_session *s);
const char *tls_session_cipher(const tls_session *s);
/* The error from the last failure (certificate verification, protocol...). */
const char *tls_session_error(const tls_session *s);
/* SHA-256 fingerprint of the peer certificate as "AB:CD:..." (caller frees), or NULL. */
char *tls_session_peer_fingerprint(const tls_session *s);
/* Result of chain/name verification on the client side (true when verified). */
bool tls_session_peer_verified(const tls_session *s);

#endif
