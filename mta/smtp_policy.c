/* smtp_policy.c: the mta's decisions about who may do what.
 *
 *  - relay: mail to a domain that is not local is accepted only from the
 *    local submit socket, an authenticated client or an address inside
 *    smtp.trusted_networks; anyone else gets 554 5.7.1 at RCPT.
 *  - submission (587, 465): MAIL needs AUTH first (RFC 6409 4.3); the
 *    envelope sender must be the user's own address or one of its aliases.
 *  - AUTH is offered only over TLS unless server.allow_plaintext_auth.
 *  - local recipients are resolved through aliases at RCPT time; an unknown
 *    local user is refused with 550 5.1.1. */
#include "smtp_session.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

char *policy_domain_of(const char *address)
{
	const char *at = strrchr(address, '@');
	char *domain = xstrdup(at != NULL ? at + 1 : "");
	for (char *p = domain; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return domain;
}

int policy_trusted_parse(const char *list, struct trusted_net **nets_r, size_t *count_r,
			 char **err_r)
{
	*nets_r = NULL;
	*count_r = 0;
	char *copy = xstrdup(list != NULL ? list : "");
	char *save = NULL;
	size_t count = 0;
	struct trusted_net *nets = NULL;
	for (char *tok = strtok_r(copy, ", \t", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t", &save)) {
		struct trusted_net n;
		memset(&n, 0, sizeof(n));
		char *slash = strchr(tok, '/');
		if (slash != NULL)
			*slash = '\0';
		if (inet_pton(AF_INET, tok, n.addr) == 1) {
			n.family = AF_INET;
			n.prefix = 32;
		} else if (inet_pton(AF_INET6, tok, n.addr) == 1) {
			n.family = AF_INET6;
			n.prefix = 128;
		} else {
			*err_r = xasprintf("smtp.trusted_networks: '%s' is not an address", tok);
			free(nets);
			free(copy);
			return -1;
		}
		if (slash != NULL) {
			char *end = NULL;
			long prefix = strtol(slash + 1, &end, 10);
			if (end == slash + 1 || *end != '\0' || prefix < 0 || (unsigned)prefix > n.prefix) {
				*err_r = xasprintf("smtp.trusted_networks: bad prefix length in '%s/%s'",
						   tok, slash + 1);
				free(nets);
				free(copy);
				return -1;
			}
			n.prefix = (unsigned)prefix;
		}
		nets = xrealloc(nets, (count + 1) * sizeof(*nets));
		nets[count++] = n;
	}
	free(copy);
	*nets_r = nets;
	*count_r = count;
	return 0;
}

/* True when the first prefix bits of a and b agree. */
static bool policy_prefix_match(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - bits));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool policy_address_trusted(const struct mta *m, const struct sockaddr *sa)
{
	if (sa == NULL)
		return false;
	unsigned char addr[16];
	int family = sa->sa_family;
	if (family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			family = AF_INET;
			memcpy(addr, &a6->s6_addr[12], 4);
		} else {
			memcpy(addr, a6, 16);
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < m->trusted_count; i++) {
		const struct trusted_net *n = &m->trusted[i];
		if (n->family == family && policy_prefix_match(n->addr, addr, n->prefix))
			return true;
	}
	return false;
}

bool policy_may_relay(const struct smtp_session *s)
{
	return s->local || s->auth_user != NULL || s->trusted;
}

bool policy_needs_auth(const struct smtp_session *s)
{
	return (s->port == MTA_PORT_SUBMISSION || s->port == MTA_PORT_SMTPS) &&
	       s->auth_user == NULL;
}

bool policy_auth_offered(const struct smtp_session *s)
{
	if (s->local || s->m->d->tls == NULL)
		return false;
	return conn_is_tls(s->c) || s->m->allow_plaintext_auth;
}

int policy_check_sender(struct smtp_session *s, const char *sender, const char **reply_r)
{
	/* The local channel is trusted: the sender is taken as given. */
	if (s->local || s->auth_user == NULL)
		return 0;
	if (sender[0] != '\0' && userdb_sender_allowed(s->m->users, s->auth_user, sender))
		return 0;
	*reply_r = "553 5.7.1 Error: sender address rejected: not owned by the authenticated user";
	return -1;
}

int policy_check_rcpt(struct smtp_session *s, const char *address, char ***targets_r,
		      char **reply_r)
{
	char *domain = policy_domain_of(address);
	bool local = user_cache_domain_is_local(s->m, domain);
	free(domain);
	if (local) {
		char **targets = user_cache_resolve(s->m, address);
		if (targets == NULL || targets[0] == NULL) {
			userdb_strv_free(targets);
			*reply_r = xasprintf("550 5.1.1 <%s>: Recipient address rejected: "
					     "user unknown", address);
			return -1;
		}
		*targets_r = targets;
		return 0;
	}
	if (!policy_may_relay(s)) {
		*reply_r = xasprintf("554 5.7.1 <%s>: Relay access denied", address);
		return -1;
	}
	char **targets = xcalloc(2, sizeof(*targets));
	targets[0] = xstrdup(address);
	*targets_r = targets;
	return 0;
}
