/* queue_scheduler.c: delivers what is queued and records how it went.
 *
 * Two ways in. A message that has just been committed (a new one after its
 * 250, or a report made here) is handed over in memory by scheduler_submit,
 * body and all, so the hot path never reads queue.sqlite back. Everything
 * else (retries that come due, messages left over from before a restart,
 * `mailctl queue flush|release`, messages dropped from a full ready list) is
 * found by scanning queue.sqlite for due recipients: on the one-second tick,
 * and at once when a scan or an overflow left more behind (db_backlog).
 *
 * A message is READY (in memory, waiting for a delivery slot), IN FLIGHT
 * (its deliveries running, then its outcome being committed), or only in the
 * database. The `known` hash holds every READY and IN FLIGHT message by id,
 * so a scan never picks up one twice.
 *
 * A message in flight is split into deliveries: one over LMTP for the local
 * domains, one over SMTP per other domain. When all have answered, one
 * writer job records every recipient's outcome (delivered / failed /
 * deferred with its next try), the attempt rows, and a DSN when one is due
 * (failure, delay warning, success), and deletes the message when nobody is
 * left. Only after that commit does the message leave the in-flight set.
 *
 * Retry: the n-th temporary failure waits smtp.retry_schedule[n-1] seconds
 * (the last value repeats); after smtp.max_queue_lifetime the recipient
 * fails with 4.4.7; after smtp.delay_warning_time the sender is warned once.
 * All three are divided by smtp.queue_time_scale (labs). */
#include "mta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

/* Messages delivered at once; each holds its body in memory. */
#define SCHED_MAX_IN_FLIGHT 256
/* Committed messages waiting in memory for a slot; past this they are
 * dropped from memory and found again by a scan. */
#define SCHED_MAX_READY 2048
/* Buckets of the `known` hash (READY + IN FLIGHT, at most 2304 entries). */
#define SCHED_HASH_BUCKETS 4096
#define SCHED_TICK_MS 1000
#define SCHED_MAX_RETRY_STEPS 32
#define SCHED_MAX_DIAGNOSTIC 900

struct sched_msg {
	struct scheduler *s;
	struct queue_msg msg;
	struct delivery *deliveries;
	size_t delivery_count;
	size_t pending;
	struct sched_msg *next;      /* in the ready list or the in-flight list */
	struct sched_msg *hash_next; /* in its `known` bucket */
};

struct scheduler {
	struct mta *m;
	uv_timer_t timer;
	struct lmtp_pool *lmtp;
	struct smtp_clients *smtp;
	struct sched_msg *in_flight;
	size_t in_flight_count;
	struct sched_msg *ready_head, *ready_tail;
	size_t ready_count;
	struct sched_msg *known[SCHED_HASH_BUCKETS];
	bool db_backlog;         /* queue.sqlite may hold due messages we have not seen */
	int64_t retry_ms[SCHED_MAX_RETRY_STEPS];
	size_t retry_count;
	int64_t lifetime_ms;
	int64_t warning_ms;
	bool shutting_down;
};

static void scheduler_tick(uv_timer_t *timer);
static void scheduler_fill(struct scheduler *s);

/* Parses smtp.retry_schedule ("60,300,...") into milliseconds, scaled. */
static void scheduler_parse_retry(struct scheduler *s, const char *text, int64_t scale)
{
	s->retry_count = 0;
	char *copy = xstrdup(text);
	char *save = NULL;
	for (char *tok = strtok_r(copy, ", ", &save); tok != NULL && s->retry_count < SCHED_MAX_RETRY_STEPS;
	     tok = strtok_r(NULL, ", ", &save)) {
		long long v = atoll(tok);
		if (v <= 0)
			continue;
		s->retry_ms[s->retry_count++] = (int64_t)v * 1000 / scale;
	}
	free(copy);
	if (s->retry_count == 0)
		s->retry_ms[s->retry_count++] = 300 * 1000 / scale;
}

struct scheduler *scheduler_new(struct mta *m)
{
	struct scheduler *s = xcalloc(1, sizeof(*s));
	s->m = m;
	int64_t scale = config_int(m->cfg, "smtp.queue_time_scale");
	if (scale < 1)
		scale = 1;
	scheduler_parse_retry(s, config_str(m->cfg, "smtp.retry_schedule"), scale);
	s->lifetime_ms = config_int(m->cfg, "smtp.max_queue_lifetime") * 1000 / scale;
	s->warning_ms = config_int(m->cfg, "smtp.delay_warning_time") * 1000 / scale;
	s->db_backlog = true; /* whatever a previous run left */
	s->lmtp = lmtp_pool_new(m);
	s->smtp = smtp_clients_new(m);
	uv_timer_init(m->loop, &s->timer);
	s->timer.data = s;
	uv_timer_start(&s->timer, scheduler_tick, 0, SCHED_TICK_MS);
	return s;
}

void scheduler_kick(struct scheduler *s)
{
	if (s->shutting_down)
		return;
	uv_timer_start(&s->timer, scheduler_tick, 0, SCHED_TICK_MS);
}

/* The bucket of a lifecycle id in `known` (FNV-1a). */
static size_t scheduler_bucket(const char *id)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h % SCHED_HASH_BUCKETS;
}

/* True when the message is READY or IN FLIGHT. */
static bool scheduler_known(const struct scheduler *s, const char *id)
{
	for (const struct sched_msg *sm = s->known[scheduler_bucket(id)]; sm != NULL;
	     sm = sm->hash_next)
		if (strcmp(sm->msg.id, id) == 0)
			return true;
	return false;
}

static void scheduler_know(struct scheduler *s, struct sched_msg *sm)
{
	size_t b = scheduler_bucket(sm->msg.id);
	sm->hash_next = s->known[b];
	s->known[b] = sm;
}

static void scheduler_forget(struct scheduler *s, struct sched_msg *sm)
{
	for (struct sched_msg **pp = &s->known[scheduler_bucket(sm->msg.id)]; *pp != NULL;
	     pp = &(*pp)->hash_next) {
		if (*pp == sm) {
			*pp = sm->hash_next;
			return;
		}
	}
}

/* Formats unix ms as an ISO 8601 UTC time for logs. */
static void scheduler_iso_time(int64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void sched_msg_free(struct sched_msg *sm)
{
	for (size_t i = 0; i < sm->delivery_count; i++) {
		struct delivery *dl = &sm->deliveries[i];
		for (size_t j = 0; j < dl->count; j++)
			free(dl->rcpts[j].reply);
		free(dl->rcpts);
		free(dl->domain);
		free(dl->hop);
	}
	free(sm->deliveries);
	queue_msg_free(&sm->msg);
	free(sm);
}

/* The outcome is on disk: the message leaves the in-flight set. */
static void scheduler_results_done(struct queue_job *job, void *arg)
{
	struct sched_msg *sm = arg;
	struct scheduler *s = sm->s;
	if (job->status < 0)
		log_kv(LOG_ERROR, 0, "cannot record delivery results", "id", sm->msg.id, "error",
		       job->err, NULL);
	if (job->status == 0 && job->dsn != NULL) {
		char rcpts[32];
		snprintf(rcpts, sizeof(rcpts), "%zu", job->dsn->rcpt_count);
		log_event(job->dsn->id, "received", "from", "mta (delivery status notification)",
			  "sender", "", "for", sm->msg.id, "proto", "local", NULL);
		log_event(job->dsn->id, "queued", "rcpts", rcpts, NULL);
	}
	if (job->status == 0 && job->deleted)
		log_event(sm->msg.id, "removed", NULL);
	for (struct sched_msg **pp = &s->in_flight; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == sm) {
			*pp = sm->next;
			break;
		}
	}
	s->in_flight_count--;
	scheduler_forget(s, sm);
	sched_msg_free(sm);
	struct queue_msg *dsn = job->status == 0 ? job->dsn : NULL;
	job->dsn = NULL;
	queue_job_free(&job);
	if (dsn != NULL)
		scheduler_submit(s, dsn);
	if (s->shutting_down)
		return;
	scheduler_fill(s);
	/* A failed record leaves the message queued: the database has it again. */
	if (s->db_backlog && s->ready_count == 0 && s->in_flight_count < SCHED_MAX_IN_FLIGHT)
		scheduler_kick(s);
}

/* Decides each recipient's new state and writes it, with any DSN, in one job. */
static void scheduler_record(struct sched_msg *sm)
{
	struct scheduler *s = sm->s;
	struct queue_msg *msg = &sm->msg;
	int64_t now = queue_now_ms();
	size_t total = 0;
	for (size_t i = 0; i < sm->delivery_count; i++)
		total += sm->deliveries[i].count;
	struct queue_job *job = xcalloc(1, sizeof(*job));
	job->msg_id = xstrdup(msg->id);
	job->updates = xcalloc(total > 0 ? total : 1, sizeof(*job->updates));
	job->delete_if_done = true;
	struct dsn_rcpt *reports = xcalloc(total > 0 ? total : 1, sizeof(*reports));
	size_t report_count = 0;
	bool warn = false;
	char **event_kinds = xcalloc(total > 0 ? total : 1, sizeof(*event_kinds));
	struct dsn_rcpt *bounced = xcalloc(total > 0 ? total : 1, sizeof(*bounced));
	size_t bounced_count = 0;
	for (size_t i = 0; i < sm->delivery_count; i++) {
		struct delivery *dl = &sm->deliveries[i];
		for (size_t j = 0; j < dl->count; j++) {
			struct delivery_rcpt *dr = &dl->rcpts[j];
			struct queue_rcpt *r = dr->rcpt;
			if (dr->code == 0)
				delivery_set(dr, 451, "4.3.0", "451 4.3.0 No result from the delivery");
			if (strlen(dr->reply) > SCHED_MAX_DIAGNOSTIC)
				dr->reply[SCHED_MAX_DIAGNOSTIC] = '\0';
			bool shutdown_fail = s->shutting_down && dr->code / 100 == 4;
			char code[8];
			snprintf(code, sizeof(code), "%d", dr->code);
			log_event(msg->id, "attempt", "rcpt", r->address, "proto", dl->proto, "hop",
				  dl->hop, "code", code, "status", dr->status, "reply", dr->reply, NULL);
			if (shutdown_fail)
				continue; /* not the recipient's fault: try again after restart */
			struct queue_update *u = &job->updates[job->update_count++];
			u->rcpt_id = r->id;
			u->attempts = r->attempts + 1;
			u->last_error = xstrdup(dr->reply);
			u->when = now;
			u->proto = xstrdup(dl->proto);
			u->hop = xstrdup(dl->hop != NULL ? dl->hop : "");
			u->status = xstrdup(dr->status);
			u->reply = xstrdup(dr->reply);
			struct dsn_rcpt *rep = &reports[report_count];
			rep->rcpt = r;
			rep->status = dr->status;
			rep->diagnostic = dr->reply;
			rep->remote_mta = dl->domain != NULL ? dl->hop : NULL;
			if (dr->code / 100 == 2) {
				u->state = QUEUE_RCPT_DELIVERED;
				u->next_try = 0;
				log_event(msg->id, "delivered", "rcpt", r->address, "proto", dl->proto,
					  "hop", dl->hop, "status", dr->status, "reply", dr->reply, NULL);
				rep->action = dl->domain != NULL && !dl->remote_dsn ? DSN_RELAYED
										    : DSN_DELIVERED;
				/* A next hop that took NOTIFY reports success itself. */
				if (!(dl->domain != NULL && dl->remote_dsn) &&
				    dsn_wanted(msg, r, rep->action))
					event_kinds[report_count++] = "delivered";
				continue;
			}
			bool expired = now - msg->created >= s->lifetime_ms;
			if (dr->code / 100 == 5 || expired) {
				u->state = QUEUE_RCPT_FAILED;
				u->next_try = 0;
				if (dr->code / 100 != 5) {
					rep->status = "4.4.7";
					char *text = xasprintf("%s (delivery time expired)", dr->reply);
					free(dr->reply);
					dr->reply = text;
					rep->diagnostic = dr->reply;
				}
				rep->action = DSN_FAILED;
				/* logged below, once the report (and its id) exists */
				bounced[bounced_count++] = (struct dsn_rcpt){
					.rcpt = r, .action = DSN_FAILED, .status = rep->status,
					.diagnostic = dr->reply};
				if (dsn_wanted(msg, r, DSN_FAILED))
					event_kinds[report_count++] = "bounced";
				continue;
			}
			size_t step = (size_t)r->attempts < s->retry_count ? (size_t)r->attempts
									 : s->retry_count - 1;
			u->state = QUEUE_RCPT_QUEUED;
			u->next_try = now + s->retry_ms[step];
			char next[40], attempts[16];
			scheduler_iso_time(u->next_try, next, sizeof(next));
			snprintf(attempts, sizeof(attempts), "%d", u->attempts);
			log_event(msg->id, "deferred", "rcpt", r->address, "status", dr->status, "reply",
				  dr->reply, "attempts", attempts, "next_try", next, NULL);
			if (!msg->warned && s->warning_ms > 0 && now - msg->created >= s->warning_ms &&
			    dsn_wanted(msg, r, DSN_DELAYED)) {
				rep->action = DSN_DELAYED;
				event_kinds[report_count++] = "delayed";
				warn = true;
			}
		}
	}
	if (report_count > 0 && msg->body != NULL)
		job->dsn = dsn_build(s->m, msg, reports, report_count, msg->created + s->lifetime_ms);
	const char *dsn_id = job->dsn != NULL ? job->dsn->id : NULL;
	/* dsn_id is absent when no report goes out (NOTIFY=NEVER, null sender). */
	for (size_t i = 0; i < bounced_count; i++) {
		const struct queue_rcpt *r = bounced[i].rcpt;
		bool reported = dsn_id != NULL && dsn_wanted(msg, r, DSN_FAILED);
		log_event(msg->id, "bounced", "rcpt", r->address, "status", bounced[i].status,
			  "reply", bounced[i].diagnostic, "dsn_id", reported ? dsn_id : NULL, NULL);
	}
	for (size_t i = 0; dsn_id != NULL && i < report_count; i++) {
		if (strcmp(event_kinds[i], "delayed") == 0)
			log_event(msg->id, "delayed", "rcpt", reports[i].rcpt->address, "dsn",
				  dsn_id, "dsn_id", dsn_id, NULL);
		else
			log_event(msg->id, "dsn", "rcpt", reports[i].rcpt->address, "kind",
				  event_kinds[i], "dsn", dsn_id, "dsn_id", dsn_id, NULL);
	}
	job->set_warned = warn;
	free(reports);
	free(event_kinds);
	free(bounced);
	job->done = scheduler_results_done;
	job->arg = sm;
	queue_writer_submit(s->m->writer, job);
}

/* One delivery of a message answered. */
static void scheduler_delivery_done(struct delivery *dl)
{
	struct sched_msg *sm = dl->owner;
	if (--sm->pending == 0)
		scheduler_record(sm);
}

/* Splits a loaded message into deliveries (local, then one per domain) and starts them. */
static void scheduler_dispatch(struct scheduler *s, struct sched_msg *sm)
{
	struct queue_msg *msg = &sm->msg;
	sm->deliveries = xcalloc(msg->rcpt_count + 1, sizeof(*sm->deliveries));
	/* A local recipient that already got the message before a crash (the
	 * mda answered, we were killed before recording it) is recognised by
	 * the mda from the lifecycle id and not filed twice. */
	for (size_t i = 0; i < msg->rcpt_count; i++) {
		struct queue_rcpt *r = &msg->rcpts[i];
		char *domain = policy_domain_of(r->address);
		bool local = user_cache_domain_is_local(s->m, domain);
		struct delivery *dl = NULL;
		for (size_t j = 0; j < sm->delivery_count && dl == NULL; j++) {
			struct delivery *d = &sm->deliveries[j];
			if (local ? d->domain == NULL : (d->domain != NULL && strcmp(d->domain, domain) == 0))
				dl = d;
		}
		if (dl == NULL) {
			dl = &sm->deliveries[sm->delivery_count++];
			dl->msg = msg;
			dl->domain = local ? NULL : xstrdup(domain);
			dl->rcpts = xcalloc(msg->rcpt_count, sizeof(*dl->rcpts));
			dl->done = scheduler_delivery_done;
			dl->owner = sm;
		}
		dl->rcpts[dl->count++].rcpt = r;
		free(domain);
	}
	sm->pending = sm->delivery_count;
	if (sm->pending == 0) {
		scheduler_record(sm);
		return;
	}
	/* Starting a delivery may finish it at once; count first, then start. */
	size_t n = sm->delivery_count;
	for (size_t j = 0; j < n; j++) {
		struct delivery *dl = &sm->deliveries[j];
		if (dl->domain == NULL)
			lmtp_deliver(s->lmtp, dl);
		else
			smtp_deliver(s->smtp, dl);
	}
}

/* Puts a message in flight and starts its deliveries. */
static void scheduler_start(struct scheduler *s, struct sched_msg *sm)
{
	sm->next = s->in_flight;
	s->in_flight = sm;
	s->in_flight_count++;
	scheduler_dispatch(s, sm);
}

/* Moves READY messages into flight while there are free slots. */
static void scheduler_fill(struct scheduler *s)
{
	while (!s->shutting_down && s->ready_head != NULL &&
	       s->in_flight_count < SCHED_MAX_IN_FLIGHT) {
		struct sched_msg *sm = s->ready_head;
		s->ready_head = sm->next;
		if (s->ready_head == NULL)
			s->ready_tail = NULL;
		s->ready_count--;
		sm->next = NULL;
		scheduler_start(s, sm);
	}
}

void scheduler_submit(struct scheduler *s, struct queue_msg *msg)
{
	if (s->shutting_down || msg->rcpt_count == 0 || scheduler_known(s, msg->id)) {
		queue_msg_destroy(&msg);
		return;
	}
	if (s->ready_count >= SCHED_MAX_READY) {
		/* Committed, so nothing is lost: a scan finds it when there is room. */
		s->db_backlog = true;
		queue_msg_destroy(&msg);
		return;
	}
	struct sched_msg *sm = xcalloc(1, sizeof(*sm));
	sm->s = s;
	sm->msg = *msg;
	free(msg);
	scheduler_know(s, sm);
	if (s->ready_tail != NULL)
		s->ready_tail->next = sm;
	else
		s->ready_head = sm;
	s->ready_tail = sm;
	s->ready_count++;
	scheduler_fill(s);
}

/* Looks in queue.sqlite for due messages not yet known, while slots are free. */
static void scheduler_scan(struct scheduler *s)
{
	int64_t now = queue_now_ms();
	char **ids = NULL;
	size_t limit = SCHED_MAX_IN_FLIGHT * 2;
	size_t count = queue_due_messages(s->m->reader, now, limit, &ids);
	/* Every known message may be among them: a full answer leaves more behind. */
	s->db_backlog = count == limit;
	for (size_t i = 0; i < count; i++) {
		if (s->in_flight_count >= SCHED_MAX_IN_FLIGHT) {
			s->db_backlog = true;
			break;
		}
		if (scheduler_known(s, ids[i]))
			continue;
		struct sched_msg *sm = xcalloc(1, sizeof(*sm));
		sm->s = s;
		char *err = NULL;
		if (queue_msg_load(s->m->reader, ids[i], true, now, &sm->msg, &err) < 0) {
			log_kv(LOG_WARN, 0, "cannot load queued message", "id", ids[i], "error", err,
			       NULL);
			free(err);
			free(sm);
			continue;
		}
		if (sm->msg.rcpt_count == 0) {
			sched_msg_free(sm);
			continue;
		}
		scheduler_know(s, sm);
		scheduler_start(s, sm);
	}
	for (size_t i = 0; i < count; i++)
		free(ids[i]);
	free(ids);
}

static void scheduler_tick(uv_timer_t *timer)
{
	struct scheduler *s = timer->data;
	if (s->shutting_down)
		return;
	scheduler_fill(s);
	/* Scan only with room to spare and nothing waiting in memory: under load
	 * the ready list keeps every slot busy without touching the database. */
	if (s->ready_count == 0 && s->in_flight_count < SCHED_MAX_IN_FLIGHT)
		scheduler_scan(s);
}

void scheduler_shutdown(struct scheduler *s)
{
	s->shutting_down = true;
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, NULL);
	lmtp_pool_shutdown(s->lmtp);
	smtp_clients_shutdown(s->smtp);
}

void scheduler_free(struct scheduler **s)
{
	if (*s == NULL)
		return;
	while ((*s)->in_flight != NULL) {
		struct sched_msg *sm = (*s)->in_flight;
		(*s)->in_flight = sm->next;
		sched_msg_free(sm);
	}
	while ((*s)->ready_head != NULL) {
		struct sched_msg *sm = (*s)->ready_head;
		(*s)->ready_head = sm->next;
		sched_msg_free(sm);
	}
	lmtp_pool_free(&(*s)->lmtp);
	smtp_clients_free(&(*s)->smtp);
	free(*s);
	*s = NULL;
}
