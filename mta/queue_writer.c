/* queue_writer.c: group commit into queue.sqlite.
 *
 * Everything the mta writes to its queue goes through here: new messages
 * (before their 250), delivery results, reports. Jobs arriving while a commit
 * runs wait in `pending`; when that commit returns, all of them go into the
 * next transaction together, so one fsync (synchronous=FULL) covers many
 * messages under load and a lone message still commits at once.
 *
 * States: IDLE (nothing running) -> RUNNING (one uv_queue_work owns `batch`
 * and the writer's SQLite connection) -> IDLE, or straight into the next
 * RUNNING when jobs are pending. Invariant: the connection is touched only by
 * the worker of the running batch; `pending` only on the loop. */
#include "mta.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct queue_writer {
	uv_loop_t *loop;
	queue *q;
	uv_work_t work;
	bool running;
	struct queue_job *pending, **pending_tail;
	struct queue_job *batch;
	size_t batch_size;
	uint64_t commits;
};

struct queue_writer *queue_writer_new(uv_loop_t *loop, queue *q)
{
	struct queue_writer *w = xcalloc(1, sizeof(*w));
	w->loop = loop;
	w->q = q;
	w->pending_tail = &w->pending;
	w->work.data = w;
	return w;
}

void queue_msg_destroy(struct queue_msg **m)
{
	if (*m == NULL)
		return;
	queue_msg_free(*m);
	free(*m);
	*m = NULL;
}

void queue_job_free(struct queue_job **job)
{
	struct queue_job *j = *job;
	if (j == NULL)
		return;
	queue_msg_destroy(&j->new_msg);
	queue_msg_destroy(&j->dsn);
	for (size_t i = 0; i < j->update_count; i++) {
		struct queue_update *u = &j->updates[i];
		free(u->last_error);
		free(u->proto);
		free(u->hop);
		free(u->status);
		free(u->reply);
	}
	free(j->updates);
	free(j->msg_id);
	free(j->err);
	free(j);
	*job = NULL;
}

/* Applies one job inside the open transaction. */
static int queue_writer_apply(queue *q, struct queue_job *j, char **err_r)
{
	if (j->new_msg != NULL && queue_insert_message(q, j->new_msg, err_r) < 0)
		return -1;
	for (size_t i = 0; i < j->update_count; i++) {
		struct queue_update *u = &j->updates[i];
		if (queue_rcpt_update(q, u->rcpt_id, u->state, u->attempts, u->last_error,
				      u->next_try, err_r) < 0)
			return -1;
		if (u->proto != NULL &&
		    queue_attempt_add(q, j->msg_id, u->rcpt_id, u->when, u->proto, u->hop, u->status,
				      u->reply, err_r) < 0)
			return -1;
	}
	if (j->set_warned && queue_msg_set_warned(q, j->msg_id, err_r) < 0)
		return -1;
	if (j->dsn != NULL && queue_insert_message(q, j->dsn, err_r) < 0)
		return -1;
	if (j->delete_if_done && queue_msg_delete_if_done(q, j->msg_id, &j->deleted, err_r) < 0)
		return -1;
	return 0;
}

/* Worker thread: one transaction, one sync, for the whole batch. */
static void queue_writer_work(uv_work_t *work)
{
	struct queue_writer *w = work->data;
	char *err = NULL;
	int rc = queue_begin(w->q, &err);
	for (struct queue_job *j = w->batch; rc == 0 && j != NULL; j = j->next)
		rc = queue_writer_apply(w->q, j, &err);
	if (rc == 0)
		rc = queue_commit(w->q, &err);
	else
		queue_rollback(w->q);
	bool temporary = rc < 0 && queue_error_is_temporary(w->q);
	for (struct queue_job *j = w->batch; j != NULL; j = j->next) {
		j->status = rc;
		j->temporary = temporary;
		if (rc < 0)
			j->err = xstrdup(err != NULL ? err : "queue write failed");
	}
	free(err);
}

static void queue_writer_start(struct queue_writer *w);

/* Loop: hand every job its result, then start the next batch. */
static void queue_writer_after(uv_work_t *work, int status)
{
	struct queue_writer *w = work->data;
	struct queue_job *batch = w->batch;
	w->batch = NULL;
	w->running = false;
	w->commits++;
	log_kv(LOG_DEBUG, 0, "queue commit", NULL);
	/* Start the next commit first so new arrivals can join it while we answer. */
	if (w->pending != NULL)
		queue_writer_start(w);
	while (batch != NULL) {
		struct queue_job *next = batch->next;
		batch->next = NULL;
		if (status == UV_ECANCELED && batch->status == 0) {
			batch->status = -1;
			batch->err = xstrdup("queue write cancelled");
		}
		batch->done(batch, batch->arg);
		batch = next;
	}
}

static void queue_writer_start(struct queue_writer *w)
{
	w->batch = w->pending;
	w->pending = NULL;
	w->pending_tail = &w->pending;
	w->running = true;
	if (uv_queue_work(w->loop, &w->work, queue_writer_work, queue_writer_after) != 0) {
		/* Only fails on a programming error. */
		abort();
	}
}

void queue_writer_submit(struct queue_writer *w, struct queue_job *job)
{
	job->next = NULL;
	*w->pending_tail = job;
	w->pending_tail = &job->next;
	if (!w->running)
		queue_writer_start(w);
}

bool queue_writer_busy(const struct queue_writer *w)
{
	return w->running || w->pending != NULL;
}

void queue_writer_free(struct queue_writer **w)
{
	if (*w == NULL)
		return;
	queue_close(&(*w)->q);
	free(*w);
	*w = NULL;
}
