/* dns.c: MX lookup on the libuv thread pool (see dns.h).
 *
 * A lookup is one heap job: dns_mx_work runs res_nquery with its own resolver
 * state on a worker thread and fills the result fields; dns_mx_done runs on
 * the loop, calls back and frees the job. Nothing is shared between the two
 * sides except the job, and the worker touches it only before done runs.
 * Without MX records the domain is its own exchanger only when an A or AAAA
 * query finds an address; with neither the lookup fails permanently. */
#include "dns.h"

#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

/* The largest answer we read; MX answers are small (RFC 1035 over TCP is 64 KiB). */
#define DNS_ANSWER_MAX 65536
#define DNS_MX_MAX 32

struct dns_job {
	uv_work_t work;
	char *domain;
	dns_mx_cb cb;
	void *arg;
	enum dns_status status;
	char *err;
	struct dns_mx hosts[DNS_MX_MAX];
	size_t count;
};

void dns_mx_sort(struct dns_mx *hosts, size_t count)
{
	/* Insertion sort: stable and the lists are short. */
	for (size_t i = 1; i < count; i++) {
		struct dns_mx cur = hosts[i];
		size_t j = i;
		while (j > 0 && hosts[j - 1].preference > cur.preference) {
			hosts[j] = hosts[j - 1];
			j--;
		}
		hosts[j] = cur;
	}
}

/* Parses the answer section into job->hosts. */
static void dns_parse_mx(struct dns_job *job, const unsigned char *answer, int len)
{
	ns_msg msg;
	if (ns_initparse(answer, len, &msg) < 0) {
		job->status = DNS_TEMPFAIL;
		job->err = xasprintf("%s: malformed DNS answer", job->domain);
		return;
	}
	int n = ns_msg_count(msg, ns_s_an);
	for (int i = 0; i < n && job->count < DNS_MX_MAX; i++) {
		ns_rr rr;
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
			continue;
		if (ns_rr_type(rr) != ns_t_mx || ns_rr_rdlen(rr) < 3)
			continue;
		const unsigned char *rdata = ns_rr_rdata(rr);
		char name[NS_MAXDNAME];
		if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rdata + 2, name, sizeof(name)) < 0)
			continue;
		unsigned pref = ns_get16(rdata);
		if (name[0] == '\0' || strcmp(name, ".") == 0) {
			/* RFC 7505: the domain declares that it accepts no mail. */
			job->status = DNS_PERMFAIL;
			job->err = xasprintf("%s: the domain accepts no mail (null MX)", job->domain);
			return;
		}
		job->hosts[job->count].host = xstrdup(name);
		job->hosts[job->count].preference = pref;
		job->count++;
	}
	dns_mx_sort(job->hosts, job->count);
}

/* Asks whether the domain has an address record of this type: 1 yes, 0 no
 * (the name or the record does not exist), -1 the resolver failed. */
static int dns_has_address(res_state state, const char *domain, int type, unsigned char *answer)
{
	int len = res_nquery(state, domain, ns_c_in, type, answer, DNS_ANSWER_MAX);
	if (len >= 0) {
		ns_msg msg;
		if (ns_initparse(answer, len, &msg) < 0)
			return -1;
		return ns_msg_count(msg, ns_s_an) > 0 ? 1 : 0;
	}
	return state->res_h_errno == HOST_NOT_FOUND || state->res_h_errno == NO_DATA ? 0 : -1;
}

/* No MX records: the domain is its own exchanger (RFC 5321 5.1) if it has an
 * address; with neither, no mail can reach it. */
static void dns_implicit_mx(struct dns_job *job, res_state state, unsigned char *answer)
{
	int v4 = dns_has_address(state, job->domain, ns_t_a, answer);
	int v6 = v4 == 1 ? 1 : dns_has_address(state, job->domain, ns_t_aaaa, answer);
	if (v4 == 1 || v6 == 1) {
		job->hosts[0].host = xstrdup(job->domain);
		job->hosts[0].preference = 0;
		job->count = 1;
	} else if (v4 < 0 || v6 < 0) {
		job->status = DNS_TEMPFAIL;
		job->err = xasprintf("%s: DNS lookup failed, will retry", job->domain);
	} else {
		job->status = DNS_PERMFAIL;
		job->err = xasprintf("%s: no MX and no address records", job->domain);
	}
}

/* Worker thread: query and parse. */
static void dns_mx_work(uv_work_t *work)
{
	struct dns_job *job = work->data;
	struct __res_state state;
	memset(&state, 0, sizeof(state));
	if (res_ninit(&state) < 0) {
		job->status = DNS_TEMPFAIL;
		job->err = xasprintf("%s: cannot initialise the resolver", job->domain);
		return;
	}
	unsigned char *answer = xmalloc(DNS_ANSWER_MAX);
	int len = res_nquery(&state, job->domain, ns_c_in, ns_t_mx, answer, DNS_ANSWER_MAX);
	if (len < 0) {
		switch (state.res_h_errno) {
		case HOST_NOT_FOUND:
			job->status = DNS_PERMFAIL;
			job->err = xasprintf("%s: no such domain", job->domain);
			break;
		case NO_DATA:
			dns_implicit_mx(job, &state, answer);
			break;
		default:
			job->status = DNS_TEMPFAIL;
			job->err = xasprintf("%s: DNS lookup failed, will retry", job->domain);
			break;
		}
	} else {
		dns_parse_mx(job, answer, len);
		if (job->status == DNS_OK && job->count == 0)
			dns_implicit_mx(job, &state, answer);
	}
	free(answer);
	res_nclose(&state);
}

/* Loop thread: report and free. */
static void dns_mx_done(uv_work_t *work, int status)
{
	struct dns_job *job = work->data;
	if (status == UV_ECANCELED && job->err == NULL) {
		job->status = DNS_TEMPFAIL;
		job->err = xasprintf("%s: lookup cancelled", job->domain);
	}
	job->cb(job->arg, job->status, job->count > 0 ? job->hosts : NULL, job->count, job->err);
	for (size_t i = 0; i < job->count; i++)
		free(job->hosts[i].host);
	free(job->err);
	free(job->domain);
	free(job);
}

void dns_mx_lookup(uv_loop_t *loop, const char *domain, dns_mx_cb cb, void *arg)
{
	struct dns_job *job = xcalloc(1, sizeof(*job));
	job->work.data = job;
	job->domain = xstrdup(domain);
	job->cb = cb;
	job->arg = arg;
	job->status = DNS_OK;
	if (uv_queue_work(loop, &job->work, dns_mx_work, dns_mx_done) != 0) {
		/* Cannot happen with a live loop; answer temporary from the loop anyway. */
		job->status = DNS_TEMPFAIL;
		job->err = xasprintf("%s: cannot start the lookup", domain);
		dns_mx_done(&job->work, 0);
	}
}
