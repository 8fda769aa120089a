/* dns.h: mail exchanger lookup for the mta's SMTP client, off the event loop.
 *
 * dns_mx_lookup asks the resolver (res_nquery, one resolver state per call)
 * for the domain's MX records on the libuv thread pool and calls back on the
 * loop with the exchangers sorted by preference. A domain with no MX records
 * but with an address gets itself as its one exchanger (RFC 5321 5.1, the
 * implicit MX); a "null MX" (RFC 7505, "0 .") and a domain that does not exist
 * are permanent failures; a resolver that does not answer is temporary. */
#ifndef MAILSTACK_DNS_H
#define MAILSTACK_DNS_H

#include <stddef.h>
#include <uv.h>

enum dns_status {
	DNS_OK = 0,
	DNS_TEMPFAIL = -1,  /* try again later */
	DNS_PERMFAIL = -2,  /* the domain does not exist or accepts no mail */
};

struct dns_mx {
	char *host;
	unsigned preference;
};

/* hosts: sorted by preference (count entries), valid only during the call.
 * err: a message when status != DNS_OK. */
typedef void (*dns_mx_cb)(void *arg, enum dns_status status, const struct dns_mx *hosts,
			  size_t count, const char *err);

/* Starts the lookup; cb is always called exactly once, from the loop, never
 * from inside this call. */
void dns_mx_lookup(uv_loop_t *loop, const char *domain, dns_mx_cb cb, void *arg);

/* Sorts exchangers by preference, keeping the order of equal ones (tests). */
void dns_mx_sort(struct dns_mx *hosts, size_t count);

#endif
