/* smtp_commands.c: the handlers of the SMTP command table (smtp_session.c
 * checks the state and the presence of arguments before calling them).
 *
 * Each handler either replies at once or starts async work with
 * smtp_async_begin (AUTH's password check). Every reply carries an enhanced
 * status code (RFC 2034/3463) except the greeting, EHLO/HELO, 334 and 354.
 * Errors go through smtp_error so that they count towards smtp.max_errors. */
#include "smtp_session.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "smtp_path.h"

/* The longest ENVID we keep (RFC 3461 4.4: 100 characters). */
#define SMTP_MAX_ENVID 100
/* The longest ORCPT (RFC 3461 4.2: 500 characters). */
#define SMTP_MAX_ORCPT 500
#define SMTP_MAX_HELO 255

/* A HELO/EHLO argument we are willing to copy into a Received field. */
static bool smtp_helo_valid(const char *arg)
{
	size_t len = strlen(arg);
	if (len == 0 || len > SMTP_MAX_HELO)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)arg[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("<>()\"';\\`$|&{}", ch) != NULL)
			return false;
	}
	return true;
}

/* HELO and EHLO: greet, forget any transaction (RFC 5321 4.1.4). */
static void smtp_greet(struct smtp_session *s, char *args, bool esmtp)
{
	if (!smtp_helo_valid(args)) {
		smtp_error(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	smtp_txn_free(&s->txn);
	free(s->helo);
	s->helo = xstrdup(args);
	s->esmtp = esmtp;
	smtp_enter(s, SMTP_STATE_READY);
	struct mta *m = s->m;
	if (!esmtp) {
		smtp_reply(s, "250 %s", m->hostname);
		return;
	}
	smtp_reply(s, "250-%s Hello %s [%s]", m->hostname, s->helo, conn_peer_addr(s->c));
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %lld", (long long)m->max_message_size);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-SMTPUTF8");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	if (!s->local && !conn_is_tls(s->c) && m->d->tls != NULL)
		smtp_reply(s, "250-STARTTLS");
	if (policy_auth_offered(s))
		smtp_reply(s, "250-AUTH %s", sasl_mechanisms());
	smtp_reply(s, "250-CHUNKING");
	smtp_reply(s, "250 DSN");
}

void smtp_cmd_ehlo(struct smtp_session *s, char *args)
{
	smtp_greet(s, args, true);
}

void smtp_cmd_helo(struct smtp_session *s, char *args)
{
	smtp_greet(s, args, false);
}

/* Parses a decimal size with overflow checks; -1 when not a number. */
static int64_t smtp_parse_size(const char *text)
{
	if (text == NULL || *text == '\0' || strlen(text) > 18)
		return -1;
	int64_t v = 0;
	for (const char *p = text; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

/* Checks the MAIL parameters into the new transaction; 0 or -1 after replying. */
static int smtp_mail_params(struct smtp_session *s, const struct smtp_path *p, struct smtp_txn *t)
{
	for (size_t i = 0; i < p->param_count; i++) {
		const char *key = p->params[i].keyword;
		const char *val = p->params[i].value;
		if (strcmp(key, "SIZE") == 0) {
			int64_t size = smtp_parse_size(val);
			if (size < 0) {
				smtp_error(s, "501 5.5.4 Error: bad SIZE parameter");
				return -1;
			}
			if (size > s->m->max_message_size) {
				smtp_error(s, "552 5.3.4 Message size exceeds fixed maximum message size");
				return -1;
			}
		} else if (strcmp(key, "BODY") == 0) {
			if (val != NULL && strcasecmp(val, "8BITMIME") == 0) {
				t->body_8bit = true;
			} else if (val == NULL || strcasecmp(val, "7BIT") != 0) {
				smtp_error(s, "501 5.5.4 Error: unsupported BODY type");
				return -1;
			}
		} else if (strcmp(key, "SMTPUTF8") == 0) {
			if (val != NULL) {
				smtp_error(s, "501 5.5.4 Error: SMTPUTF8 takes no value");
				return -1;
			}
			t->smtputf8 = true;
		} else if (strcmp(key, "RET") == 0) {
			if (val == NULL || (strcasecmp(val, "FULL") != 0 && strcasecmp(val, "HDRS") != 0)) {
				smtp_error(s, "501 5.5.4 Error: bad RET parameter");
				return -1;
			}
			free(t->ret);
			t->ret = xstrdup(strcasecmp(val, "FULL") == 0 ? "FULL" : "HDRS");
		} else if (strcmp(key, "ENVID") == 0) {
			char *decoded = NULL;
			if (val == NULL || xtext_decode(val, &decoded) < 0 ||
			    strlen(decoded) > SMTP_MAX_ENVID) {
				free(decoded);
				smtp_error(s, "501 5.5.4 Error: bad ENVID parameter");
				return -1;
			}
			for (const char *c = decoded; *c != '\0'; c++) {
				if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) {
					free(decoded);
					smtp_error(s, "501 5.5.4 Error: bad ENVID parameter");
					return -1;
				}
			}
			free(t->envid);
			t->envid = decoded;
		} else if (strcmp(key, "AUTH") == 0) {
			/* RFC 4954 5: accepted; we do not pass it on. */
		} else {
			smtp_error(s, "555 5.5.4 Error: unsupported parameter %s", key);
			return -1;
		}
	}
	return 0;
}

void smtp_cmd_mail(struct smtp_session *s, char *args)
{
	if (strncasecmp(args, "FROM:", 5) != 0) {
		smtp_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (policy_needs_auth(s)) {
		smtp_error(s, "530 5.7.0 Authentication required");
		return;
	}
	struct smtp_path path;
	memset(&path, 0, sizeof(path));
	const char *reason = NULL;
	const char *text = args + 5;
	if (smtp_path_parse(text, strlen(text),
			    SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_UTF8 | SMTP_PATH_LENIENT_SPACE, &path,
			    &reason) < 0) {
		smtp_error(s, "553 5.1.7 Error: bad sender address syntax: %s", reason);
		return;
	}
	struct smtp_txn *t = xcalloc(1, sizeof(*t));
	if (smtp_mail_params(s, &path, t) < 0) {
		smtp_txn_free(&t);
		smtp_path_free(&path);
		return;
	}
	if (path.has_utf8 && !t->smtputf8) {
		smtp_txn_free(&t);
		smtp_path_free(&path);
		smtp_error(s, "553 5.6.7 Error: a non-ASCII address needs the SMTPUTF8 parameter");
		return;
	}
	const char *reply = NULL;
	if (policy_check_sender(s, path.address, &reply) < 0) {
		smtp_txn_free(&t);
		smtp_path_free(&path);
		smtp_error(s, "%s", reply);
		return;
	}
	t->sender = xstrdup(path.address);
	smtp_path_free(&path);
	smtp_txn_free(&s->txn);
	s->txn = t;
	smtp_enter(s, SMTP_STATE_MAIL);
	smtp_reply(s, "250 2.1.0 Ok");
}

/* Parses NOTIFY (RFC 3461 4.1) into bits; -1 when malformed. */
static int smtp_parse_notify(const char *val, unsigned *notify_r)
{
	if (val == NULL || *val == '\0')
		return -1;
	unsigned bits = 0;
	char *copy = xstrdup(val);
	char *save = NULL;
	int rc = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (strcasecmp(tok, "NEVER") == 0)
			bits |= QUEUE_NOTIFY_NEVER;
		else if (strcasecmp(tok, "SUCCESS") == 0)
			bits |= QUEUE_NOTIFY_SUCCESS;
		else if (strcasecmp(tok, "FAILURE") == 0)
			bits |= QUEUE_NOTIFY_FAILURE;
		else if (strcasecmp(tok, "DELAY") == 0)
			bits |= QUEUE_NOTIFY_DELAY;
		else
			rc = -1;
	}
	free(copy);
	if ((bits & QUEUE_NOTIFY_NEVER) && bits != QUEUE_NOTIFY_NEVER)
		rc = -1;
	*notify_r = bits;
	return rc;
}

/* Parses ORCPT "addr-type;xtext" (RFC 3461 4.2) into "type;decoded". */
static int smtp_parse_orcpt(const char *val, char **orcpt_r)
{
	if (val == NULL || strlen(val) > SMTP_MAX_ORCPT)
		return -1;
	const char *semi = strchr(val, ';');
	if (semi == NULL || semi == val)
		return -1;
	for (const char *p = val; p < semi; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return -1;
	char *decoded = NULL;
	if (xtext_decode(semi + 1, &decoded) < 0 || decoded[0] == '\0') {
		free(decoded);
		return -1;
	}
	for (const char *p = decoded; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			free(decoded);
			return -1;
		}
	}
	*orcpt_r = xasprintf("%.*s;%s", (int)(semi - val), val, decoded);
	free(decoded);
	return 0;
}

void smtp_cmd_rcpt(struct smtp_session *s, char *args)
{
	struct smtp_txn *t = s->txn;
	if (strncasecmp(args, "TO:", 3) != 0) {
		smtp_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	struct smtp_path path;
	memset(&path, 0, sizeof(path));
	const char *reason = NULL;
	const char *text = args + 3;
	if (smtp_path_parse(text, strlen(text),
			    SMTP_PATH_ALLOW_POSTMASTER | SMTP_PATH_ALLOW_UTF8 | SMTP_PATH_LENIENT_SPACE,
			    &path, &reason) < 0) {
		smtp_error(s, "553 5.1.3 Error: bad recipient address syntax: %s", reason);
		return;
	}
	if (path.has_utf8 && !t->smtputf8) {
		smtp_path_free(&path);
		smtp_error(s, "553 5.6.7 Error: a non-ASCII address needs SMTPUTF8 in MAIL FROM");
		return;
	}
	unsigned notify = 0;
	char *orcpt = NULL;
	for (size_t i = 0; i < path.param_count; i++) {
		const char *key = path.params[i].keyword;
		const char *val = path.params[i].value;
		int bad = 0;
		if (strcmp(key, "NOTIFY") == 0) {
			bad = smtp_parse_notify(val, &notify);
		} else if (strcmp(key, "ORCPT") == 0) {
			free(orcpt);
			orcpt = NULL;
			bad = smtp_parse_orcpt(val, &orcpt);
		} else {
			smtp_error(s, "555 5.5.4 Error: unsupported parameter %s", key);
			free(orcpt);
			smtp_path_free(&path);
			return;
		}
		if (bad < 0) {
			smtp_error(s, "501 5.5.4 Error: bad %s parameter", key);
			free(orcpt);
			smtp_path_free(&path);
			return;
		}
	}
	if (s->m->max_recipients > 0 && t->rcpt_count >= (size_t)s->m->max_recipients) {
		free(orcpt);
		smtp_path_free(&path);
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	char *address;
	if (path.domain[0] == '\0') {
		/* RFC 5321 4.5.1: bare <Postmaster> is the postmaster of our first domain. */
		char **domains = userdb_domain_list(s->m->users);
		address = xasprintf("postmaster@%s", domains != NULL && domains[0] != NULL ?
				    domains[0] : s->m->hostname);
		userdb_strv_free(domains);
	} else {
		address = xstrdup(path.address);
	}
	smtp_path_free(&path);
	char **targets = NULL;
	char *reply = NULL;
	if (policy_check_rcpt(s, address, &targets, &reply) < 0) {
		free(orcpt);
		free(address);
		smtp_error(s, "%s", reply);
		free(reply);
		return;
	}
	if (t->rcpt_count == t->rcpt_cap) {
		t->rcpt_cap = t->rcpt_cap == 0 ? 4 : t->rcpt_cap * 2;
		t->rcpts = xrealloc(t->rcpts, t->rcpt_cap * sizeof(*t->rcpts));
	}
	struct smtp_txn_rcpt *r = &t->rcpts[t->rcpt_count++];
	r->orig = address;
	r->orcpt = orcpt;
	r->notify = notify;
	r->targets = targets;
	smtp_enter(s, SMTP_STATE_RCPT);
	smtp_reply(s, "250 2.1.5 Ok");
}

void smtp_cmd_data(struct smtp_session *s, char *args)
{
	if (s->state == SMTP_STATE_MAIL) {
		smtp_error(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	struct smtp_txn *t = s->txn;
	if (t->chunking) {
		smtp_error(s, "503 5.5.1 Error: DATA cannot follow BDAT");
		return;
	}

	smtp_enter(s, SMTP_STATE_DATA);
	conn_set_max_line(s->c, SMTP_MAX_TEXT_LINE);
	conn_set_transcript_quiet(s->c, true);
	conn_set_command_timeout(s->c, (uint64_t)config_int(s->m->cfg, "smtp.data_timeout") * 1000);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

void smtp_bdat_discard(struct smtp_session *s, uint64_t size, const char *reply)
{
	s->bdat_discard = true;
	s->bdat_discard_reply = reply;
	conn_set_transcript_quiet(s->c, true);
	conn_set_command_timeout(s->c, (uint64_t)config_int(s->m->cfg, "smtp.data_timeout") * 1000);
	conn_read_bytes(s->c, size);
}

void smtp_cmd_bdat(struct smtp_session *s, char *args)
{
	char *space = strchr(args, ' ');
	bool last = false;
	if (space != NULL) {
		*space = '\0';
		char *rest = space + 1;
		while (*rest == ' ')
			rest++;
		if (strcasecmp(rest, "LAST") != 0) {
			smtp_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
			return;
		}
		last = true;
	}
	int64_t size = smtp_parse_size(args);
	if (size < 0) {
		smtp_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	/* RFC 3030 2: the chunk follows the command, so even a refused BDAT
	 * has its bytes read (and dropped) before the reply. */
	if (s->state == SMTP_STATE_MAIL) {
		smtp_bdat_discard(s, (uint64_t)size, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->state != SMTP_STATE_RCPT && s->state != SMTP_STATE_BDAT) {
		smtp_bdat_discard(s, (uint64_t)size, "503 5.5.1 Error: need MAIL and RCPT commands");
		return;
	}
	struct smtp_txn *t = s->txn;
	t->chunking = true;
	t->bdat_last = last;
	if ((uint64_t)size > (uint64_t)s->m->max_message_size)
		t->too_big = true;
	smtp_enter(s, SMTP_STATE_BDAT_READ);
	conn_set_transcript_quiet(s->c, true);
	conn_set_command_timeout(s->c, (uint64_t)config_int(s->m->cfg, "smtp.data_timeout") * 1000);
	conn_read_bytes(s->c, (uint64_t)size);
}

void smtp_cmd_rset(struct smtp_session *s, char *args)
{
	smtp_reset(s);
	smtp_reply(s, "250 2.0.0 Ok");
}

void smtp_cmd_noop(struct smtp_session *s, char *args)
{
	smtp_reply(s, "250 2.0.0 Ok");
}

void smtp_cmd_quit(struct smtp_session *s, char *args)
{
	smtp_close(s, "221 2.0.0 Bye");
}

void smtp_cmd_vrfy(struct smtp_session *s, char *args)
{
	/* Never confirm who exists (RFC 5321 3.5.3, 7.3). */
	smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

void smtp_cmd_expn(struct smtp_session *s, char *args)
{
	smtp_error(s, "502 5.5.1 Error: EXPN is not available");
}

void smtp_cmd_help(struct smtp_session *s, char *args)
{
	smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP "
		      "STARTTLS AUTH");
}

void smtp_cmd_starttls(struct smtp_session *s, char *args)
{
	if (s->local || s->m->d->tls == NULL) {
		smtp_error(s, "502 5.5.1 Error: STARTTLS is not available here");
		return;
	}
	if (conn_is_tls(s->c)) {
		smtp_error(s, "503 5.5.1 Error: TLS is already active");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_enter(s, SMTP_STATE_TLS);
	if (conn_start_tls(s->c) < 0)
		smtp_close(s, "454 4.7.0 TLS not available due to temporary reason");
}

/* Authentication succeeded: remember who. */
static void smtp_auth_success(struct smtp_session *s, const char *username)
{
	sasl_server_free(&s->sasl);
	s->auth_final = false;
	free(s->auth_user);
	s->auth_user = xstrdup(username);
	conn_set_user(s->c, username);
	log_kv(LOG_INFO, s->id, "authenticated", "user", username, NULL);
	smtp_enter(s, SMTP_STATE_READY);
	smtp_reply(s, "235 2.7.0 Authentication successful");
}

/* The result of one SASL step, on the loop. */
static void smtp_auth_step_done(void *arg, enum sasl_result result, const char *challenge_b64,
				const char *username)
{
	struct smtp_session *s = arg;
	if (!smtp_async_end(s))
		return;
	switch (result) {
	case SASL_CONTINUE:
		smtp_enter(s, SMTP_STATE_AUTH);
		smtp_reply(s, "334 %s", challenge_b64 != NULL ? challenge_b64 : "");
		conn_mask_next_line(s->c);
		return;
	case SASL_OK:
		if (challenge_b64 != NULL && challenge_b64[0] != '\0') {
			/* RFC 4954 4: additional data with success goes in a 334. */
			s->auth_final = true;
			free(s->auth_pending);
			s->auth_pending = xstrdup(username);
			smtp_enter(s, SMTP_STATE_AUTH);
			smtp_reply(s, "334 %s", challenge_b64);
			return;
		}
		smtp_auth_success(s, username);
		return;
	case SASL_FAIL:
		sasl_server_free(&s->sasl);
		smtp_enter(s, SMTP_STATE_READY);
		s->auth_failures++;
		log_kv(LOG_WARN, s->id, "authentication failed", "remote", conn_peer_addr(s->c), NULL);
		if (s->auth_failures >= s->m->max_auth_failures) {
			smtp_reply(s, "535 5.7.8 Error: authentication failed");
			smtp_close(s, "421 4.7.0 Error: too many authentication failures, closing");
			return;
		}
		smtp_reply(s, "535 5.7.8 Error: authentication failed");
		return;
	case SASL_MALFORMED:
		sasl_server_free(&s->sasl);
		smtp_enter(s, SMTP_STATE_READY);
		smtp_error(s, "501 5.5.2 Error: malformed authentication data");
		return;
	case SASL_ABORTED:
		sasl_server_free(&s->sasl);
		smtp_enter(s, SMTP_STATE_READY);
		smtp_error(s, "501 5.0.0 Error: authentication aborted");
		return;
	}
}

void smtp_auth_response(struct smtp_session *s, char *line, size_t len)
{
	if (s->auth_final) {
		s->auth_final = false;
		char *user = s->auth_pending;
		s->auth_pending = NULL;
		if (len == 0) {
			smtp_auth_success(s, user);
		} else {
			sasl_server_free(&s->sasl);
			smtp_enter(s, SMTP_STATE_READY);
			smtp_error(s, "501 5.0.0 Error: authentication aborted");
		}
		free(user);
		return;
	}
	smtp_async_begin(s);
	sasl_server_step(s->sasl, line, smtp_auth_step_done, s);
}

void smtp_cmd_auth(struct smtp_session *s, char *args)
{
	if (s->local) {
		smtp_error(s, "503 5.5.1 Error: authentication is not needed on the local channel");
		return;
	}
	if (s->auth_user != NULL) {
		smtp_error(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (!policy_auth_offered(s)) {
		smtp_error(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	char *initial = strchr(args, ' ');
	if (initial != NULL) {
		*initial++ = '\0';
		while (*initial == ' ')
			initial++;
		if (*initial == '\0' || strchr(initial, ' ') != NULL) {
			smtp_error(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
			return;
		}
		if (strcmp(initial, "=") == 0)
			initial = ""; /* RFC 4954 4: an empty initial response */
	}
	if (!sasl_mechanism_known(args)) {
		smtp_error(s, "504 5.5.4 Error: unrecognized authentication type");
		return;
	}
	s->sasl = sasl_server_new(s->m->loop, s->m->users, args, s->auth_failures);
	if (s->sasl == NULL) {
		smtp_error(s, "504 5.5.4 Error: unrecognized authentication type");
		return;
	}
	smtp_async_begin(s);
	sasl_server_step(s->sasl, initial, smtp_auth_step_done, s);
}
