/* imap_auth.c: LOGIN and AUTHENTICATE (RFC 3501 6.2.2, 6.2.3; SASL-IR, RFC 4959).
 *
 * The SASL exchange itself is common/sasl.c; here are the IMAP framing ("+ "
 * challenges, "*" to cancel, "=" for an empty initial response), the rule that
 * no password travels before TLS unless allow_plaintext_auth, and counting
 * failures: at server.max_auth_failures the client gets BYE. Password checks
 * are asynchronous: the connection is paused and referenced meanwhile, and the
 * callback finds the session through the connection (it may have closed). */
#include <stdlib.h>
#include <string.h>

#include "imapd.h"
#include "log.h"

/* Whether credentials may be sent on this connection now. */
static bool auth_allowed(struct imap_session *s)
{
	return conn_is_tls(s->c) || s->server->allow_plaintext_auth;
}

/* Authentication succeeded: open the user's mailbox store. */
static void auth_success(struct imap_session *s, const char *username)
{
	char *err = NULL;
	if (imap_mailstore_open(s, username, &err) < 0) {
		log_error(s->id, "cannot open the mailbox of %s: %s", username, err);
		free(err);
		imap_cmd_finish(s, &s->cmd, "NO", "[UNAVAILABLE] Mailbox store unavailable");
		return;
	}
	s->user = xstrdup(username);
	conn_set_user(s->c, username);
	imap_session_enter(s, IMAP_STATE_AUTHENTICATED);
	log_kv(LOG_INFO, s->id, "login", "user", username, "proto", "imap", NULL);
	buf_t caps = BUF_INIT;
	imap_capabilities(s, &caps);
	imap_cmd_finish(s, &s->cmd, "OK", "[CAPABILITY %s] Logged in", buf_cstr(&caps));
	buf_free(&caps);
}

/* Authentication failed: NO, and BYE once the failures reach the limit. */
static void auth_failure(struct imap_session *s, const char *text)
{
	s->auth_failures++;
	if (s->server->max_auth_failures > 0 && s->auth_failures >= s->server->max_auth_failures) {
		imap_send(s, "%s NO [AUTHENTICATIONFAILED] %s", s->cmd.tag, text);
		imap_send(s, "* BYE Too many authentication failures");
		imap_session_enter(s, IMAP_STATE_LOGOUT);
		conn_close(s->c);
		return;
	}
	imap_cmd_finish(s, &s->cmd, "NO", "[AUTHENTICATIONFAILED] %s", text);
}

/* The password check for LOGIN finished. */
static void login_checked(void *arg, enum sasl_result result, const char *challenge_b64,
			  const char *username)
{
	conn *c = arg;
	struct imap_session *s = conn_is_closing(c) ? NULL : conn_data(c);
	if (s != NULL) {
		if (result == SASL_OK && username != NULL)
			auth_success(s, username);
		else
			auth_failure(s, "Authentication failed");
	}
	conn_unref(c);
}

void imap_cmd_login(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count != 2 || imap_arg_string(&cmd->args[0]) == NULL ||
	    imap_arg_string(&cmd->args[1]) == NULL) {
		imap_cmd_finish(s, cmd, "BAD", "LOGIN takes a user name and a password");
		return;
	}
	if (!auth_allowed(s)) {
		imap_cmd_finish(s, cmd, "NO",
				"[PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS");
		return;
	}
	if (!imap_arg_string_clean(&cmd->args[0]) || !imap_arg_string_clean(&cmd->args[1])) {
		auth_failure(s, "Authentication failed");
		return;
	}
	conn_ref(s->c);
	sasl_check_password(conn_loop(s->c), s->server->d->users, imap_arg_string(&cmd->args[0]),
			    imap_arg_string(&cmd->args[1]), s->auth_failures, login_checked, s->c);
}

static void authenticate_step(struct imap_session *s, const char *response);

/* One SASL step finished. */
static void authenticate_stepped(void *arg, enum sasl_result result, const char *challenge_b64,
				 const char *username)
{
	conn *c = arg;
	struct imap_session *s = conn_is_closing(c) ? NULL : conn_data(c);
	conn_unref(c);
	if (s == NULL || s->sasl == NULL)
		return;
	switch (result) {
	case SASL_CONTINUE:
		imap_send(s, "+ %s", challenge_b64 != NULL ? challenge_b64 : "");
		s->input = IMAP_INPUT_SASL;
		conn_mask_next_line(s->c);
		conn_resume(s->c);
		return;
	case SASL_OK:
		sasl_server_free(&s->sasl);
		if (challenge_b64 != NULL && challenge_b64[0] != '\0') {
			/* RFC 3501 has no success data in OK: send it as a challenge
			 * and expect an empty response. */
			free(s->user);
			s->user = xstrdup(username);
			imap_send(s, "+ %s", challenge_b64);
			s->input = IMAP_INPUT_SASL;
			conn_resume(s->c);
			return;
		}
		auth_success(s, username);
		return;
	case SASL_ABORTED:
		sasl_server_free(&s->sasl);
		imap_cmd_finish(s, &s->cmd, "BAD", "Authentication aborted");
		return;
	case SASL_MALFORMED:
		sasl_server_free(&s->sasl);
		imap_cmd_finish(s, &s->cmd, "BAD", "Invalid SASL response");
		return;
	case SASL_FAIL:
	default:
		sasl_server_free(&s->sasl);
		auth_failure(s, "Authentication failed");
		return;
	}
}

/* Passes one client response (NULL: none) to the SASL server. */
static void authenticate_step(struct imap_session *s, const char *response)
{
	s->input = IMAP_INPUT_BUSY;
	conn_pause(s->c);
	conn_ref(s->c);
	sasl_server_step(s->sasl, response, authenticate_stepped, s->c);
}

void imap_cmd_authenticate(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->count < 1 || cmd->count > 2 || cmd->args[0].type != IMAP_ARG_ATOM ||
	    (cmd->count == 2 && cmd->args[1].type != IMAP_ARG_ATOM)) {
		imap_cmd_finish(s, cmd, "BAD", "AUTHENTICATE takes a mechanism and an initial response");
		return;
	}
	if (!auth_allowed(s)) {
		imap_cmd_finish(s, cmd, "NO",
				"[PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS");
		return;
	}
	s->sasl = sasl_server_new(conn_loop(s->c), s->server->d->users, cmd->args[0].data,
				  s->auth_failures);
	if (s->sasl == NULL) {
		imap_cmd_finish(s, cmd, "NO", "Unsupported authentication mechanism");
		return;
	}
	free(s->user);
	s->user = NULL;
	const char *initial = NULL;
	if (cmd->count == 2)
		initial = strcmp(cmd->args[1].data, "=") == 0 ? "" : cmd->args[1].data;
	authenticate_step(s, initial);
}

void imap_auth_line(struct imap_session *s, const char *line, size_t len)
{
	if (strlen(line) != len) {
		imap_auth_abort(s);
		imap_cmd_finish(s, &s->cmd, "BAD", "Invalid SASL response");
		return;
	}
	if (s->sasl == NULL) {
		/* The empty response after SCRAM's server-final data. */
		char *user = s->user;
		s->user = NULL;
		if (len != 0) {
			free(user);
			imap_cmd_finish(s, &s->cmd, "BAD", "Expected an empty response");
			return;
		}
		auth_success(s, user);
		free(user);
		return;
	}
	if (len == 1 && line[0] == '*') {
		imap_auth_abort(s);
		imap_cmd_finish(s, &s->cmd, "BAD", "Authentication aborted");
		return;
	}
	authenticate_step(s, line);
}

void imap_auth_abort(struct imap_session *s)
{
	sasl_server_free(&s->sasl);
}
