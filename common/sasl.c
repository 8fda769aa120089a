/* sasl.c: SASL (RFC 4422) for every protocol: PLAIN (RFC 4616), LOGIN and
 * SCRAM-SHA-256 (RFC 5802, RFC 7677), server and client side.
 *
 * Server states (one variable, changed only by sasl_server_enter, which logs):
 *
 *   START --NULL--> START (empty challenge: "send your initial response")
 *   START --PLAIN response-----------------------------------> DONE (check)
 *   START --LOGIN, no data--> LOGIN_USER --user--> LOGIN_PASSWORD --pw--> DONE (check)
 *   START --LOGIN, user as initial response----------^
 *   START --SCRAM client-first--> SCRAM_FINAL --client-final--> DONE
 *   any waiting state --"*"--> DONE (aborted); bad data --> DONE (malformed)
 *
 * Every result reaches the caller through a struct sasl_pending: password
 * checks run on libuv's thread pool (uv_queue_work) with copies of the hash
 * and password; every result then waits on a uv_timer (0 ms, or
 * auth_failure_delay_ms after a failure), so the callback never runs inside
 * sasl_server_step. The pending object owns the strings handed to the
 * callback and is freed in the timer's close callback. If the server is
 * freed while a result is pending, the pending object is detached from it
 * but still calls back, exactly once as sasl.h promises (callers hold a
 * reference on `arg` until then), and without the failure delay: nobody is
 * left to guess against.
 *
 * The user directory is read on the loop thread (an indexed lookup); only
 * the deliberately slow yescrypt check goes to a worker. Unknown users are
 * checked against a dummy hash (PLAIN, LOGIN) or given a salt derived from
 * the name with a per-process secret (SCRAM), so they take as long and look
 * the same as real users until the final answer. */
#include "sasl.h"

#include <assert.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "codec.h"
#include "log.h"
#include "password.h"

/* Longest client response accepted (base64 text), checked before decoding. */
#define SASL_MAX_RESPONSE 8192
/* RFC 4616 section 2: authzid, authcid and passwd are each at most 255 octets. */
#define SASL_PLAIN_MAX_FIELD 255
#define SASL_SCRAM_NONCE_BYTES 18
#define SASL_SCRAM_MAX_NONCE 256
#define SASL_SCRAM_SALT_BYTES 16
#define SASL_FAILURE_BASE_DELAY_MS 250
#define SASL_FAILURE_MAX_DELAY_MS 5000

/* "Username:" and "Password:" in base64: the LOGIN mechanism's challenges. */
#define SASL_LOGIN_USER_CHALLENGE "VXNlcm5hbWU6"
#define SASL_LOGIN_PASSWORD_CHALLENGE "UGFzc3dvcmQ6"

/* ---- shared helpers ---- */

/* Decodes a client response; "" and "=" are empty data (RFC 4954, RFC 5034).
 * -1 on invalid base64 or an over-long response. */
static int sasl_decode(const char *b64, char **data_r, size_t *len_r)
{
	size_t len = strlen(b64);
	if (len > SASL_MAX_RESPONSE)
		return -1;
	if (len == 0 || strcmp(b64, "=") == 0) {
		*data_r = xstrdup("");
		*len_r = 0;
		return 0;
	}
	return base64_decode(b64, len, data_r, len_r);
}

/* Decodes base64 that must carry text (no NUL bytes): NULL otherwise. */
static char *sasl_decode_text(const char *b64)
{
	char *data = NULL;
	size_t len = 0;
	if (sasl_decode(b64, &data, &len) < 0)
		return NULL;
	if (strlen(data) != len) {
		free(data);
		return NULL;
	}
	return data;
}

/* Frees a string that may hold a secret, wiping it first. */
static void sasl_secret_free(char **s)
{
	if (*s == NULL)
		return;
	OPENSSL_cleanse(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

/* Fills buf with random bytes; failure of the CSPRNG is fatal. */
static void sasl_random(unsigned char *buf, size_t len)
{
	if (RAND_bytes(buf, (int)len) != 1) {
		fprintf(stderr, "mailstack: RAND_bytes failed\n");
		abort();
	}
}

/* HMAC-SHA-256 (the SCRAM-SHA-256 HMAC). */
static void sasl_hmac(const unsigned char *key, size_t key_len, const void *data, size_t len,
		      unsigned char out[SCRAM_KEY_LEN])
{
	unsigned int out_len = 0;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) == NULL) {
		fprintf(stderr, "mailstack: HMAC-SHA-256 failed\n");
		abort();
	}
}

/* A fresh SCRAM nonce: base64 of random bytes (printable, never ','). */
static char *sasl_scram_nonce(void)
{
	unsigned char raw[SASL_SCRAM_NONCE_BYTES];
	sasl_random(raw, sizeof(raw));
	return base64_encode(raw, sizeof(raw));
}

uint64_t auth_failure_delay_ms(unsigned failures)
{
	uint64_t delay = SASL_FAILURE_BASE_DELAY_MS;
	for (unsigned i = 0; i < failures && delay < SASL_FAILURE_MAX_DELAY_MS; i++)
		delay *= 2;
	return delay < SASL_FAILURE_MAX_DELAY_MS ? delay : SASL_FAILURE_MAX_DELAY_MS;
}

/* ---- mechanisms ---- */

enum sasl_mech_id { SASL_MECH_PLAIN, SASL_MECH_LOGIN, SASL_MECH_SCRAM_SHA_256 };

struct sasl_pending;
typedef void sasl_server_step_fn(sasl_server *s, struct sasl_pending *p, const char *response);

static sasl_server_step_fn sasl_plain_step, sasl_login_step, sasl_scram_step;

static const struct sasl_mech {
	const char *name;
	enum sasl_mech_id id;
	sasl_server_step_fn *server_step;
} sasl_mech_table[] = {
	{"PLAIN", SASL_MECH_PLAIN, sasl_plain_step},
	{"LOGIN", SASL_MECH_LOGIN, sasl_login_step},
	{"SCRAM-SHA-256", SASL_MECH_SCRAM_SHA_256, sasl_scram_step},
};

/* The table entry for a mechanism name (case-insensitive), or NULL. */
static const struct sasl_mech *sasl_mech_find(const char *name)
{
	for (size_t i = 0; name != NULL && i < sizeof(sasl_mech_table) / sizeof(sasl_mech_table[0]);
	     i++) {
		if (strcasecmp(sasl_mech_table[i].name, name) == 0)
			return &sasl_mech_table[i];
	}
	return NULL;
}

const char *sasl_mechanisms(void)
{
	return "PLAIN LOGIN SCRAM-SHA-256";
}

bool sasl_mechanism_known(const char *name)
{
	return sasl_mech_find(name) != NULL;
}

/* ---- the server object ---- */

enum sasl_server_state {
	SASL_STATE_START,
	SASL_STATE_LOGIN_USER,
	SASL_STATE_LOGIN_PASSWORD,
	SASL_STATE_SCRAM_FINAL,
	SASL_STATE_DONE,
};

static const char *const sasl_state_names[] = {"start", "login-user", "login-password",
					       "scram-final", "done"};

struct sasl_server {
	const struct sasl_mech *mech;
	enum sasl_server_state state;
	uv_loop_t *loop;
	userdb *db;
	unsigned failures;
	struct sasl_pending *pending;
	/* LOGIN */
	char *login_user;
	/* SCRAM-SHA-256 */
	char *gs2_header;
	char *client_first_bare;
	char *server_first;
	char *nonce;        /* client nonce + server nonce */
	char *scram_user;   /* canonical address, or NULL for an unknown user */
	bool authz_mismatch;
	struct scram_keys keys;
};

/* The one way the server's state changes. */
static void sasl_server_enter(sasl_server *s, enum sasl_server_state state)
{
	log_kv(LOG_DEBUG, 0, "sasl state", "mech", s->mech->name, "from",
	       sasl_state_names[s->state], "to", sasl_state_names[state], NULL);
	s->state = state;
}

/* ---- pending results: thread pool, delay timer, callback ---- */

enum sasl_pending_state {
	SASL_PENDING_NEW,     /* created, nothing started */
	SASL_PENDING_WORK,    /* password check on the thread pool */
	SASL_PENDING_TIMER,   /* waiting to deliver the result */
	SASL_PENDING_CLOSING, /* timer closing; freed in its close callback */
};

struct sasl_pending {
	enum sasl_pending_state state;
	uv_loop_t *loop;
	sasl_server *server; /* NULL when detached, or for sasl_check_password */
	bool detached;       /* the server was freed: deliver without delay */
	sasl_step_cb cb;
	void *arg;
	unsigned failures;
	uv_work_t work;
	uv_timer_t timer;
	/* Input of the password check (copies; hash NULL = unknown user). */
	char *hash;
	char *password;
	char *user_address;
	bool verified;
	/* The result. */
	enum sasl_result result;
	char *challenge;
	char *username;
};

static pthread_once_t sasl_dummy_once = PTHREAD_ONCE_INIT;
static char *sasl_dummy_hash;

/* Makes the hash unknown users are checked against (once, on a worker). */
static void sasl_dummy_init(void)
{
	sasl_dummy_hash = password_hash("mailstack: no such user");
}

static struct sasl_pending *sasl_pending_new(uv_loop_t *loop, sasl_server *server,
					     sasl_step_cb cb, void *arg, unsigned failures)
{
	struct sasl_pending *p = xcalloc(1, sizeof(*p));
	p->state = SASL_PENDING_NEW;
	p->loop = loop;
	p->server = server;
	p->cb = cb;
	p->arg = arg;
	p->failures = failures;
	p->work.data = p;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	return p;
}

/* The pending step's timer is closed: wipes the secrets and frees it. */
static void sasl_pending_closed(uv_handle_t *handle)
{
	struct sasl_pending *p = handle->data;
	sasl_secret_free(&p->hash);
	sasl_secret_free(&p->password);
	free(p->user_address);
	free(p->challenge);
	free(p->username);
	free(p);
}

/* Closes the timer; the pending object is freed in the close callback. */
static void sasl_pending_close(struct sasl_pending *p)
{
	p->state = SASL_PENDING_CLOSING;
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, sasl_pending_closed);
}

/* Delivers the result: detaches from the server, closes the timer, calls
 * back last (the callback may free the server or start the next step). */
static void sasl_pending_fire(uv_timer_t *timer)
{
	struct sasl_pending *p = timer->data;
	if (p->server != NULL)
		p->server->pending = NULL;
	p->server = NULL;
	sasl_pending_close(p);
	p->cb(p->arg, p->result, p->challenge, p->username);
}

/* Records the result and schedules its delivery (delayed after a failure). */
static void sasl_pending_finish(struct sasl_pending *p, enum sasl_result result,
				const char *challenge, const char *username)
{
	p->result = result;
	p->challenge = challenge != NULL ? xstrdup(challenge) : NULL;
	p->username = username != NULL ? xstrdup(username) : NULL;
	p->state = SASL_PENDING_TIMER;
	uint64_t delay =
		result == SASL_FAIL && !p->detached ? auth_failure_delay_ms(p->failures) : 0;
	uv_timer_start(&p->timer, sasl_pending_fire, delay, 0);
}

/* On a worker: the slow hash comparison. */
static void sasl_pending_work(uv_work_t *work)
{
	struct sasl_pending *p = work->data;
	if (p->hash != NULL) {
		p->verified = password_verify(p->hash, p->password);
	} else {
		/* Same cost for a user that does not exist. */
		pthread_once(&sasl_dummy_once, sasl_dummy_init);
		(void)password_verify(sasl_dummy_hash, p->password);
		p->verified = false;
	}
}

/* Back on the loop after the check. */
static void sasl_pending_work_done(uv_work_t *work, int status)
{
	struct sasl_pending *p = work->data;
	bool ok = status == 0 && p->verified;
	sasl_secret_free(&p->password);
	sasl_pending_finish(p, ok ? SASL_OK : SASL_FAIL, NULL, ok ? p->user_address : NULL);
}

/* Looks the user up (on the loop) and checks the password on a worker. */
static void sasl_pending_check(struct sasl_pending *p, userdb *db, const char *user,
			       const char *password)
{
	struct user_info info;
	if (userdb_user_lookup(db, user, &info) == 0) {
		p->hash = xstrdup(info.password_hash);
		p->user_address = xstrdup(info.address);
		user_info_free(&info);
	}
	p->password = xstrdup(password);
	p->state = SASL_PENDING_WORK;
	if (uv_queue_work(p->loop, &p->work, sasl_pending_work, sasl_pending_work_done) != 0)
		sasl_pending_finish(p, SASL_FAIL, NULL, NULL);
}

sasl_server *sasl_server_new(uv_loop_t *loop, userdb *db, const char *mech, unsigned failures)
{
	const struct sasl_mech *m = sasl_mech_find(mech);
	if (m == NULL)
		return NULL;
	sasl_server *s = xcalloc(1, sizeof(*s));
	s->mech = m;
	s->state = SASL_STATE_START;
	s->loop = loop;
	s->db = db;
	s->failures = failures;
	return s;
}

void sasl_server_free(sasl_server **sp)
{
	sasl_server *s = *sp;
	if (s == NULL)
		return;
	struct sasl_pending *p = s->pending;
	if (p != NULL) {
		/* Detach: the result still reaches the callback, now without delay. */
		p->server = NULL;
		p->detached = true;
		if (p->state == SASL_PENDING_TIMER)
			uv_timer_start(&p->timer, sasl_pending_fire, 0, 0);
	}
	sasl_secret_free(&s->login_user);
	free(s->gs2_header);
	free(s->client_first_bare);
	free(s->server_first);
	free(s->nonce);
	free(s->scram_user);
	OPENSSL_cleanse(&s->keys, sizeof(s->keys));
	free(s);
	*sp = NULL;
}

void sasl_server_step(sasl_server *s, const char *response_b64, sasl_step_cb cb, void *arg)
{
	/* One step at a time: a second step before the callback is a caller bug. */
	assert(s->pending == NULL);
	struct sasl_pending *p = sasl_pending_new(s->loop, s, cb, arg, s->failures);
	s->pending = p;
	if (s->state == SASL_STATE_DONE) {
		sasl_pending_finish(p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	if (response_b64 != NULL && strcmp(response_b64, "*") == 0) {
		/* RFC 4422 3.5: the client aborts the exchange. */
		sasl_server_enter(s, SASL_STATE_DONE);
		sasl_pending_finish(p, SASL_ABORTED, NULL, NULL);
		return;
	}
	s->mech->server_step(s, p, response_b64);
}

/* Ends the exchange with a result (no check needed). */
static void sasl_server_end(sasl_server *s, struct sasl_pending *p, enum sasl_result result,
			    const char *data, const char *username)
{
	sasl_server_enter(s, SASL_STATE_DONE);
	sasl_pending_finish(p, result, data, username);
}

void sasl_check_password(uv_loop_t *loop, userdb *db, const char *user, const char *password,
			 unsigned failures, sasl_step_cb cb, void *arg)
{
	struct sasl_pending *p = sasl_pending_new(loop, NULL, cb, arg, failures);
	sasl_pending_check(p, db, user, password);
}

/* ---- PLAIN (RFC 4616) ---- */

/* message = [authzid] NUL authcid NUL passwd */
static void sasl_plain_step(sasl_server *s, struct sasl_pending *p, const char *response)
{
	if (response == NULL) {
		/* No initial response: an empty challenge asks for it. */
		sasl_pending_finish(p, SASL_CONTINUE, "", NULL);
		return;
	}
	char *data = NULL;
	size_t len = 0;
	if (sasl_decode(response, &data, &len) < 0) {
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	const char *authzid = data;
	const char *nul1 = memchr(data, '\0', len);
	const char *authcid = nul1 != NULL ? nul1 + 1 : NULL;
	const char *nul2 = authcid != NULL ? memchr(authcid, '\0', len - (size_t)(authcid - data))
					   : NULL;
	const char *passwd = nul2 != NULL ? nul2 + 1 : NULL;
	if (passwd == NULL || memchr(passwd, '\0', len - (size_t)(passwd - data)) != NULL ||
	    *authcid == '\0' || strlen(authzid) > SASL_PLAIN_MAX_FIELD ||
	    strlen(authcid) > SASL_PLAIN_MAX_FIELD ||
	    len - (size_t)(passwd - data) > SASL_PLAIN_MAX_FIELD) {
		OPENSSL_cleanse(data, len);
		free(data);
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	/* We authorise only as oneself: an authzid must name the same user. */
	bool authz_ok = *authzid == '\0' || strcasecmp(authzid, authcid) == 0;
	if (!authz_ok) {
		struct user_info a, b;
		if (userdb_user_lookup(s->db, authzid, &a) == 0) {
			if (userdb_user_lookup(s->db, authcid, &b) == 0) {
				authz_ok = strcmp(a.address, b.address) == 0;
				user_info_free(&b);
			}
			user_info_free(&a);
		}
	}
	sasl_server_enter(s, SASL_STATE_DONE);
	if (!authz_ok)
		/* Still spend the hashing time: the answer must not come sooner. */
		sasl_pending_check(p, s->db, "", passwd);
	else
		sasl_pending_check(p, s->db, authcid, passwd);
	OPENSSL_cleanse(data, len);
	free(data);
}

/* ---- LOGIN (draft-murchison-sasl-login) ---- */

/* LOGIN: asks for the user name, then the password, then checks them. */
static void sasl_login_step(sasl_server *s, struct sasl_pending *p, const char *response)
{
	if (s->state == SASL_STATE_START && response == NULL) {
		sasl_server_enter(s, SASL_STATE_LOGIN_USER);
		sasl_pending_finish(p, SASL_CONTINUE, SASL_LOGIN_USER_CHALLENGE, NULL);
		return;
	}
	if (response == NULL) {
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	char *text = sasl_decode_text(response);
	if (text == NULL ||
	    (s->state != SASL_STATE_LOGIN_PASSWORD && (*text == '\0' ||
						       strlen(text) > SASL_PLAIN_MAX_FIELD))) {
		sasl_secret_free(&text);
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	if (s->state == SASL_STATE_START || s->state == SASL_STATE_LOGIN_USER) {
		/* The user name, possibly as an initial response. */
		s->login_user = text;
		sasl_server_enter(s, SASL_STATE_LOGIN_PASSWORD);
		sasl_pending_finish(p, SASL_CONTINUE, SASL_LOGIN_PASSWORD_CHALLENGE, NULL);
		return;
	}
	sasl_server_enter(s, SASL_STATE_DONE);
	sasl_pending_check(p, s->db, s->login_user, text);
	sasl_secret_free(&text);
}

/* ---- SCRAM-SHA-256 (RFC 5802 section 7, RFC 7677) ---- */

static pthread_once_t sasl_fake_secret_once = PTHREAD_ONCE_INIT;
static unsigned char sasl_fake_secret[32];

/* The random key unknown users' SCRAM salts are derived from (stable in this process). */
static void sasl_fake_secret_init(void)
{
	sasl_random(sasl_fake_secret, sizeof(sasl_fake_secret));
}

/* Keys for a user that does not exist: a salt that is the same each time the
 * name is asked for (in this process) and keys that match no proof. */
static void sasl_scram_fake_keys(const char *name, struct scram_keys *keys_r)
{
	pthread_once(&sasl_fake_secret_once, sasl_fake_secret_init);
	unsigned char mac[SCRAM_KEY_LEN];
	char *lower = xstrdup(name);
	for (char *c = lower; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	sasl_hmac(sasl_fake_secret, sizeof(sasl_fake_secret), lower, strlen(lower), mac);
	free(lower);
	char *salt = base64_encode(mac, SASL_SCRAM_SALT_BYTES);
	memset(keys_r, 0, sizeof(*keys_r));
	snprintf(keys_r->salt_b64, sizeof(keys_r->salt_b64), "%s", salt);
	free(salt);
	keys_r->iterations = SCRAM_DEFAULT_ITERATIONS;
	sasl_random(keys_r->stored_key, SCRAM_KEY_LEN);
	sasl_random(keys_r->server_key, SCRAM_KEY_LEN);
}

/* Decodes a saslname ("=2C" is ',', "=3D" is '='); NULL when malformed. */
static char *sasl_scram_name_decode(const char *s, size_t len)
{
	buf_t out = BUF_INIT;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0' || s[i] == ',')
			goto bad;
		if (s[i] != '=') {
			buf_append_char(&out, s[i]);
		} else if (i + 2 < len && s[i + 1] == '2' && s[i + 2] == 'C') {
			buf_append_char(&out, ',');
			i += 2;
		} else if (i + 2 < len && s[i + 1] == '3' && s[i + 2] == 'D') {
			buf_append_char(&out, '=');
			i += 2;
		} else {
			goto bad;
		}
	}
	if (out.len == 0)
		goto bad;
	return buf_steal(&out);
bad:
	buf_free(&out);
	return NULL;
}

/* Encodes a user name as a saslname (caller frees). */
static char *sasl_scram_name_encode(const char *name)
{
	buf_t out = BUF_INIT;
	for (const char *c = name; *c != '\0'; c++) {
		if (*c == ',')
			buf_append_str(&out, "=2C");
		else if (*c == '=')
			buf_append_str(&out, "=3D");
		else
			buf_append_char(&out, *c);
	}
	return buf_steal(&out);
}

/* True for a valid nonce: printable ASCII except ',' (RFC 5802 section 7). */
static bool sasl_scram_nonce_valid(const char *s, size_t len)
{
	if (len == 0 || len > SASL_SCRAM_MAX_NONCE)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	}
	return true;
}

/* Length of the attribute value starting at s (up to ',' or the end). */
static size_t sasl_scram_value_len(const char *s)
{
	const char *comma = strchr(s, ',');
	return comma != NULL ? (size_t)(comma - s) : strlen(s);
}

/* True when s is "" or a list of ",attr=value" extensions (RFC 5802 7). */
static bool sasl_scram_extensions_valid(const char *s)
{
	while (*s != '\0') {
		if (s[0] != ',' || !isalpha((unsigned char)s[1]) || s[2] != '=')
			return false;
		s += 3;
		s += sasl_scram_value_len(s);
	}
	return true;
}

/* Parses client-first-message: gs2-header client-first-message-bare.
 * Fills the server's gs2_header and client_first_bare; returns the user
 * name and client nonce (caller frees), or -1 when malformed. */
static int sasl_scram_parse_client_first(sasl_server *s, const char *msg, char **user_r,
					 char **nonce_r)
{
	/* gs2-cbind-flag: "n" (no channel binding) or "y" (client could, but
	 * we do not offer -PLUS). "p=" asks for binding we do not support. */
	if ((msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
		return -1;
	const char *authzid = msg + 2;
	const char *authzid_end = strchr(authzid, ',');
	if (authzid_end == NULL)
		return -1;
	char *authz_name = NULL;
	if (authzid_end != authzid) {
		if (strncmp(authzid, "a=", 2) != 0)
			return -1;
		authz_name = sasl_scram_name_decode(authzid + 2, (size_t)(authzid_end - authzid - 2));
		if (authz_name == NULL)
			return -1;
	}
	const char *bare = authzid_end + 1;
	/* client-first-message-bare = [reserved-mext ","] username "," nonce [...] */
	if (strncmp(bare, "n=", 2) != 0) {
		free(authz_name);
		return -1;
	}
	size_t name_len = sasl_scram_value_len(bare + 2);
	char *user = sasl_scram_name_decode(bare + 2, name_len);
	const char *r = bare + 2 + name_len;
	if (user == NULL || strncmp(r, ",r=", 3) != 0) {
		free(user);
		free(authz_name);
		return -1;
	}
	size_t nonce_len = sasl_scram_value_len(r + 3);
	if (!sasl_scram_nonce_valid(r + 3, nonce_len) ||
	    !sasl_scram_extensions_valid(r + 3 + nonce_len)) {
		free(user);
		free(authz_name);
		return -1;
	}
	s->authz_mismatch = authz_name != NULL && strcasecmp(authz_name, user) != 0;
	free(authz_name);
	s->gs2_header = xstrndup(msg, (size_t)(bare - msg));
	s->client_first_bare = xstrdup(bare);
	*user_r = user;
	*nonce_r = xstrndup(r + 3, nonce_len);
	return 0;
}

/* client-first-message -> server-first-message. */
static void sasl_scram_first(sasl_server *s, struct sasl_pending *p, const char *msg)
{
	char *user = NULL, *client_nonce = NULL;
	if (sasl_scram_parse_client_first(s, msg, &user, &client_nonce) < 0) {
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	struct user_info info;
	if (userdb_user_lookup(s->db, user, &info) == 0 && info.scram.iterations > 0) {
		s->keys = info.scram;
		s->scram_user = xstrdup(info.address);
		user_info_free(&info);
	} else {
		sasl_scram_fake_keys(user, &s->keys);
	}
	char *server_nonce = sasl_scram_nonce();
	s->nonce = xasprintf("%s%s", client_nonce, server_nonce);
	s->server_first = xasprintf("r=%s,s=%s,i=%u", s->nonce, s->keys.salt_b64,
				    s->keys.iterations);
	char *challenge = base64_encode(s->server_first, strlen(s->server_first));
	sasl_server_enter(s, SASL_STATE_SCRAM_FINAL);
	sasl_pending_finish(p, SASL_CONTINUE, challenge, NULL);
	free(challenge);
	free(server_nonce);
	free(client_nonce);
	free(user);
}

/* client-final-message -> server-final-message (or failure). */
static void sasl_scram_final(sasl_server *s, struct sasl_pending *p, const char *msg)
{
	/* client-final-message = client-final-message-without-proof "," proof */
	const char *proof_at = strstr(msg, ",p=");
	while (proof_at != NULL && strstr(proof_at + 1, ",p=") != NULL)
		proof_at = strstr(proof_at + 1, ",p=");
	if (proof_at == NULL || strncmp(msg, "c=", 2) != 0) {
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	size_t without_len = (size_t)(proof_at - msg);
	/* channel-binding: base64 of the gs2 header (no binding data). */
	size_t cb_len = sasl_scram_value_len(msg + 2);
	char *cbind = NULL;
	size_t cbind_len = 0;
	int bad = msg + 2 + cb_len > proof_at ||
		  base64_decode(msg + 2, cb_len, &cbind, &cbind_len) < 0;
	if (!bad)
		bad = cbind_len != strlen(s->gs2_header) ||
		      memcmp(cbind, s->gs2_header, cbind_len) != 0;
	free(cbind);
	const char *r = msg + 2 + cb_len;
	if (!bad)
		bad = strncmp(r, ",r=", 3) != 0 || sasl_scram_value_len(r + 3) != strlen(s->nonce) ||
		      strncmp(r + 3, s->nonce, strlen(s->nonce)) != 0;
	if (!bad) {
		char *extensions = xstrndup(r + 3 + strlen(s->nonce),
					    (size_t)(proof_at - (r + 3 + strlen(s->nonce))));
		bad = !sasl_scram_extensions_valid(extensions);
		free(extensions);
	}
	char *proof = NULL;
	size_t proof_len = 0;
	if (!bad)
		bad = base64_decode(proof_at + 3, strlen(proof_at + 3), &proof, &proof_len) < 0 ||
		      proof_len != SCRAM_KEY_LEN;
	if (bad) {
		free(proof);
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	/* AuthMessage = client-first-message-bare "," server-first-message ","
	 *               client-final-message-without-proof */
	char *auth_message = xasprintf("%s,%s,%.*s", s->client_first_bare, s->server_first,
				       (int)without_len, msg);
	unsigned char signature[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	unsigned char stored[SCRAM_KEY_LEN], server_signature[SCRAM_KEY_LEN];
	sasl_hmac(s->keys.stored_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message), signature);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = (unsigned char)proof[i] ^ signature[i];
	SHA256(client_key, SCRAM_KEY_LEN, stored);
	bool ok = CRYPTO_memcmp(stored, s->keys.stored_key, SCRAM_KEY_LEN) == 0 &&
		  s->scram_user != NULL && !s->authz_mismatch;
	free(proof);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (!ok) {
		free(auth_message);
		sasl_server_end(s, p, SASL_FAIL, NULL, NULL);
		return;
	}
	sasl_hmac(s->keys.server_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message),
		  server_signature);
	free(auth_message);
	char *v = base64_encode(server_signature, SCRAM_KEY_LEN);
	char *final = xasprintf("v=%s", v);
	char *final_b64 = base64_encode(final, strlen(final));
	sasl_server_end(s, p, SASL_OK, final_b64, s->scram_user);
	free(final_b64);
	free(final);
	free(v);
}

/* SCRAM-SHA-256: client-first gets server-first, client-final gets server-final. */
static void sasl_scram_step(sasl_server *s, struct sasl_pending *p, const char *response)
{
	if (response == NULL) {
		if (s->state == SASL_STATE_START)
			sasl_pending_finish(p, SASL_CONTINUE, "", NULL);
		else
			sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	char *msg = sasl_decode_text(response);
	if (msg == NULL) {
		sasl_server_end(s, p, SASL_MALFORMED, NULL, NULL);
		return;
	}
	if (s->state == SASL_STATE_START)
		sasl_scram_first(s, p, msg);
	else
		sasl_scram_final(s, p, msg);
	free(msg);
}

/* ---- client side ---- */

enum sasl_client_state {
	SASL_CLIENT_START,
	SASL_CLIENT_SENT,        /* PLAIN sent / LOGIN user sent / SCRAM first sent */
	SASL_CLIENT_SENT_SECOND, /* LOGIN password sent / SCRAM final sent */
	SASL_CLIENT_DONE,
};

struct sasl_client {
	const struct sasl_mech *mech;
	enum sasl_client_state state;
	char *user;
	char *password;
	char *client_first_bare;
	char *client_nonce;
	unsigned char server_signature[SCRAM_KEY_LEN];
	bool server_verified;
};

sasl_client *sasl_client_new(const char *mech, const char *user, const char *password)
{
	const struct sasl_mech *m = sasl_mech_find(mech);
	if (m == NULL)
		return NULL;
	sasl_client *c = xcalloc(1, sizeof(*c));
	c->mech = m;
	c->state = SASL_CLIENT_START;
	c->user = xstrdup(user);
	c->password = xstrdup(password);
	return c;
}

void sasl_client_free(sasl_client **cp)
{
	sasl_client *c = *cp;
	if (c == NULL)
		return;
	free(c->user);
	sasl_secret_free(&c->password);
	free(c->client_first_bare);
	free(c->client_nonce);
	free(c);
	*cp = NULL;
}

/* The PLAIN message "\0user\0password" in base64. */
static char *sasl_client_plain_message(const sasl_client *c)
{
	size_t ulen = strlen(c->user), plen = strlen(c->password);
	char *raw = xmalloc(ulen + plen + 2);
	raw[0] = '\0';
	memcpy(raw + 1, c->user, ulen);
	raw[1 + ulen] = '\0';
	memcpy(raw + 2 + ulen, c->password, plen);
	char *b64 = base64_encode(raw, ulen + plen + 2);
	OPENSSL_cleanse(raw, ulen + plen + 2);
	free(raw);
	return b64;
}

/* The SCRAM client-first-message "n,,n=user,r=nonce" in base64. */
static char *sasl_client_scram_first(sasl_client *c)
{
	char *name = sasl_scram_name_encode(c->user);
	free(c->client_nonce);
	free(c->client_first_bare);
	c->client_nonce = sasl_scram_nonce();
	c->client_first_bare = xasprintf("n=%s,r=%s", name, c->client_nonce);
	char *msg = xasprintf("n,,%s", c->client_first_bare);
	char *b64 = base64_encode(msg, strlen(msg));
	free(msg);
	free(name);
	return b64;
}

char *sasl_client_initial(sasl_client *c)
{
	switch (c->mech->id) {
	case SASL_MECH_PLAIN:
		c->state = SASL_CLIENT_SENT;
		return sasl_client_plain_message(c);
	case SASL_MECH_SCRAM_SHA_256:
		c->state = SASL_CLIENT_SENT;
		return sasl_client_scram_first(c);
	case SASL_MECH_LOGIN:
		return NULL;
	}
	return NULL;
}

/* Answers a SCRAM server-first-message with the client-final-message. */
static int sasl_client_scram_final(sasl_client *c, const char *server_first, char **response_r)
{
	if (strncmp(server_first, "r=", 2) != 0)
		return -1;
	size_t nonce_len = sasl_scram_value_len(server_first + 2);
	size_t cn_len = strlen(c->client_nonce);
	if (nonce_len <= cn_len || strncmp(server_first + 2, c->client_nonce, cn_len) != 0 ||
	    !sasl_scram_nonce_valid(server_first + 2, nonce_len))
		return -1;
	const char *s = server_first + 2 + nonce_len;
	if (strncmp(s, ",s=", 3) != 0)
		return -1;
	size_t salt_len = sasl_scram_value_len(s + 3);
	const char *i = s + 3 + salt_len;
	if (strncmp(i, ",i=", 3) != 0 || i[3] < '1' || i[3] > '9')
		return -1;
	char *end = NULL;
	unsigned long iterations = strtoul(i + 3, &end, 10);
	if ((*end != '\0' && *end != ',') || iterations > UINT32_MAX)
		return -1;
	char *salt = xstrndup(s + 3, salt_len);
	struct scram_keys keys;
	unsigned char client_key[SCRAM_KEY_LEN];
	int rc = scram_keys_derive_client(c->password, salt, (uint32_t)iterations, &keys,
					  client_key);
	free(salt);
	if (rc < 0)
		return -1;
	char *without_proof = xasprintf("c=biws,r=%.*s", (int)nonce_len, server_first + 2);
	char *auth_message = xasprintf("%s,%s,%s", c->client_first_bare, server_first,
				       without_proof);
	unsigned char signature[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	sasl_hmac(keys.stored_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message), signature);
	for (size_t k = 0; k < SCRAM_KEY_LEN; k++)
		proof[k] = client_key[k] ^ signature[k];
	sasl_hmac(keys.server_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message),
		  c->server_signature);
	char *proof_b64 = base64_encode(proof, SCRAM_KEY_LEN);
	char *final = xasprintf("%s,p=%s", without_proof, proof_b64);
	*response_r = base64_encode(final, strlen(final));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&keys, sizeof(keys));
	free(final);
	free(proof_b64);
	free(auth_message);
	free(without_proof);
	return 0;
}

/* Checks the SCRAM server-final-message "v=signature". */
static int sasl_client_scram_verify(sasl_client *c, const char *server_final)
{
	if (strncmp(server_final, "v=", 2) != 0)
		return -1;
	char *sig = NULL;
	size_t sig_len = 0;
	size_t len = sasl_scram_value_len(server_final + 2);
	if (base64_decode(server_final + 2, len, &sig, &sig_len) < 0)
		return -1;
	bool ok = sig_len == SCRAM_KEY_LEN &&
		  CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) == 0;
	free(sig);
	if (!ok)
		return -1;
	c->server_verified = true;
	return 0;
}

int sasl_client_step(sasl_client *c, const char *challenge_b64, char **response_r)
{
	*response_r = NULL;
	char *challenge = sasl_decode_text(challenge_b64 != NULL ? challenge_b64 : "");
	if (challenge == NULL)
		return -1;
	int ret = -1;
	switch (c->mech->id) {
	case SASL_MECH_PLAIN:
		/* An empty challenge asks for the message not sent as initial response. */
		if (*challenge == '\0' && c->state != SASL_CLIENT_DONE) {
			*response_r = sasl_client_plain_message(c);
			c->state = SASL_CLIENT_DONE;
			ret = 0;
		}
		break;
	case SASL_MECH_LOGIN: {
		/* The prompts are informal: go by their text, else by their order. */
		bool asks_user = strncasecmp(challenge, "user", 4) == 0;
		bool asks_password = strncasecmp(challenge, "pass", 4) == 0;
		if (!asks_user && !asks_password) {
			asks_user = c->state == SASL_CLIENT_START;
			asks_password = c->state == SASL_CLIENT_SENT;
		}
		if (asks_user && c->state != SASL_CLIENT_DONE) {
			*response_r = base64_encode(c->user, strlen(c->user));
			c->state = SASL_CLIENT_SENT;
			ret = 0;
		} else if (asks_password && c->state != SASL_CLIENT_DONE) {
			*response_r = base64_encode(c->password, strlen(c->password));
			c->state = SASL_CLIENT_DONE;
			ret = 0;
		}
		break;
	}
	case SASL_MECH_SCRAM_SHA_256:
		if (c->state == SASL_CLIENT_START && *challenge == '\0') {
			*response_r = sasl_client_scram_first(c);
			c->state = SASL_CLIENT_SENT;
			ret = 0;
		} else if (c->state == SASL_CLIENT_SENT) {
			ret = sasl_client_scram_final(c, challenge, response_r);
			c->state = ret == 0 ? SASL_CLIENT_SENT_SECOND : SASL_CLIENT_DONE;
		} else if (c->state == SASL_CLIENT_SENT_SECOND) {
			ret = sasl_client_scram_verify(c, challenge);
			c->state = SASL_CLIENT_DONE;
			if (ret == 0)
				*response_r = xstrdup("");
		}
		break;
	}
	free(challenge);
	return ret;
}

bool sasl_client_server_verified(const sasl_client *c)
{
	return c->server_verified;
}
