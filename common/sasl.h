/* sasl.h: one SASL implementation (RFC 4422) of PLAIN (4616), LOGIN and
 * SCRAM-SHA-256 (5802/7677) for SMTP, IMAP and POP3, server and client side.
 *
 * The protocol layer moves base64 text: it passes each client response (or
 * NULL when an AUTH command carried no initial response) to sasl_server_step
 * and sends back the challenge it gets, in its own syntax ("334 x", "+ x").
 * Password checks run on the libuv thread pool; the callback comes on the loop.
 * After a failure the callback is delayed (auth_failure_delay_ms) so that
 * guessing is slow; the protocol counts failures and disconnects at
 * server.max_auth_failures. */
#ifndef MAILSTACK_SASL_H
#define MAILSTACK_SASL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "users.h"

enum sasl_result {
	SASL_CONTINUE,  /* send challenge, wait for the next response */
	SASL_OK,        /* authenticated as username (final_b64 may carry server-final data) */
	SASL_FAIL,      /* wrong credentials or unknown user */
	SASL_MALFORMED, /* a response that is not valid base64 or not valid for the mechanism */
	SASL_ABORTED,   /* the client sent "*" */
};

typedef struct sasl_server sasl_server;

/* "PLAIN LOGIN SCRAM-SHA-256" */
const char *sasl_mechanisms(void);
bool sasl_mechanism_known(const char *name);

/* NULL if mech is not supported (case-insensitive). failures = failed attempts
 * so far on this connection (for the delay). */
sasl_server *sasl_server_new(uv_loop_t *loop, userdb *db, const char *mech, unsigned failures);
/* Frees the server; a step still pending will call back all the same (soon,
 * without the failure delay), so references held for it are released. */
void sasl_server_free(sasl_server **s);

/* challenge_b64: to send (may be "" for an empty challenge) on SASL_CONTINUE,
 * or the additional data with success (SCRAM server-final) on SASL_OK, else NULL.
 * username: the canonical address on SASL_OK, else NULL. */
typedef void (*sasl_step_cb)(void *arg, enum sasl_result result, const char *challenge_b64,
			     const char *username);
/* Processes one client response. The callback is always called exactly once
 * per step, never from inside this call. The caller must keep `arg` valid
 * (conn_ref) until it is called. */
void sasl_server_step(sasl_server *s, const char *response_b64, sasl_step_cb cb, void *arg);

/* Checks a plain user name and password (POP3 USER/PASS, IMAP LOGIN) on the
 * thread pool, with the same delay after failure; cb as above. */
void sasl_check_password(uv_loop_t *loop, userdb *db, const char *user, const char *password,
			 unsigned failures, sasl_step_cb cb, void *arg);

/* The delay before answering the n-th failure (grows, capped at 5 s). */
uint64_t auth_failure_delay_ms(unsigned failures);

/* ---- client side (mua, mta relay AUTH, tests) ---- */
typedef struct sasl_client sasl_client;
sasl_client *sasl_client_new(const char *mech, const char *user, const char *password);
void sasl_client_free(sasl_client **c);
/* The initial response (base64, caller frees), or NULL when the mechanism has none. */
char *sasl_client_initial(sasl_client *c);
/* Answers a server challenge: 0 and *response_r (caller frees), or -1 when the
 * server's data is invalid (e.g. a SCRAM server signature that does not verify). */
int sasl_client_step(sasl_client *c, const char *challenge_b64, char **response_r);
/* True once the server's final message was verified (SCRAM). */
bool sasl_client_server_verified(const sasl_client *c);

#endif
