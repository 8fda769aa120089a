/* committer.c: group commit of deliveries, one queue per mailbox.
 *
 * A delivery ready to be filed joins its mailbox's queue. Once per loop turn
 * (an idle handle, so the loop does not sleep while work waits) every
 * mailbox that has waiting deliveries and no commit running takes up to
 * MDA_BATCH_MAX of them as a batch and files them on the thread pool in one
 * store_begin ... store_commit: one sync for the whole batch. Deliveries that
 * arrive while a mailbox commits wait for the next batch, so a burst to one
 * user costs one sync per batch, not one per message.
 *
 * Mailbox states: IDLE (no batch) -> COMMITTING (a batch on the pool) ->
 * IDLE; the waiting list may fill in either state. Invariants: at most one
 * batch per mailbox at a time, so a cached store handle is used by one thread
 * at a time; a batch is all-or-nothing for its temporary failures (the
 * transaction is rolled back and every delivery in it answers 4xx); each
 * delivery's done callback runs on the loop after the commit returned, so no
 * 250 precedes durability.
 *
 * Exactly once: a delivery whose lifecycle id the mailbox already holds (the
 * mta was killed after our 250 and before it recorded it, and now tries
 * again) is answered as delivered without a second copy. The check runs for
 * the whole batch before anything of it is filed, so two recipients of one
 * message that share a mailbox in the same batch still both get their copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buffer.h"
#include "log.h"
#include "mda.h"
#include "store.h"

struct mailbox_queue {
	struct delivery_committer *owner;
	char *address;
	store *st;
	struct mda_delivery *head, *tail; /* waiting */
	struct mda_delivery *batch;       /* being committed */
	bool committing;
	bool listed;                      /* on the ready list */
	uint64_t last_used;
	struct mailbox_queue *next_ready;
	uv_work_t work;
};

struct delivery_committer {
	struct mda *mda;
	struct mailbox_queue **boxes;
	size_t box_count;
	struct mailbox_queue *ready_head, *ready_tail;
	uv_idle_t idle;
	bool idle_active;
	size_t pending;
	uint64_t tick;
	bool closing; /* freed once the last pending delivery is done */
};

static void committer_close(struct delivery_committer *c);

/* ---- the worker: one batch into one mailbox ---- */

/* Marks every delivery of the batch that is not decided yet as failed. */
static void batch_fail(struct mda_delivery *batch, enum delivery_status status, const char *why)
{
	for (struct mda_delivery *dl = batch; dl != NULL; dl = dl->next) {
		if (dl->status != DELIVERY_PENDING && dl->status != DELIVERY_OK)
			continue;
		dl->status = status;
		free(dl->error);
		dl->error = xstrdup(why != NULL && why[0] != '\0' ? why : "mailbox error");
	}
}

/* Builds the stored form: Return-Path and Delivered-To, then the message. */
static char *delivery_stored_copy(const struct mda_delivery *dl, size_t *len_r)
{
	buf_t b = BUF_INIT;
	buf_reserve(&b, dl->msg->len + 256);
	buf_printf(&b, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", dl->msg->sender, dl->rcpt);
	buf_append(&b, dl->msg->data, dl->msg->len);
	*len_r = b.len;
	return buf_steal(&b);
}

/* Appends one copy into folder, creating the folder when it is missing. */
static int mailbox_append(store *st, struct delivery_target *t, const char *data, size_t len,
			  int64_t now, const char *lifecycle_id)
{
	int ret = store_append(st, t->folder, data, len, 0, NULL, now, lifecycle_id, &t->uid,
			       NULL);
	if (ret == STORE_ERR_NOTFOUND) {
		ret = store_folder_create(st, t->folder, STORE_SPECIAL_NONE);
		if (ret != STORE_OK && ret != STORE_ERR_EXISTS)
			return ret;
		ret = store_append(st, t->folder, data, len, 0, NULL, now, lifecycle_id, &t->uid,
				   NULL);
	}
	return ret;
}

/* Files one delivery inside the open transaction; -1 when the whole batch
 * must be rolled back (a failure that may pass). */
static int mailbox_file_one(store *st, struct mda_delivery *dl, uint64_t *bytes, uint64_t *messages)
{
	size_t len;
	char *copy = delivery_stored_copy(dl, &len);
	uint64_t want_bytes = (uint64_t)len * dl->target_count;
	const struct user_info *u = &dl->user;
	if ((u->quota_bytes > 0 && *bytes + want_bytes > (uint64_t)u->quota_bytes) ||
	    (u->quota_messages > 0 && *messages + dl->target_count > (uint64_t)u->quota_messages)) {
		dl->status = DELIVERY_QUOTA;
		dl->error = xasprintf("mailbox full: %llu of %lld bytes, %llu of %lld messages used",
				      (unsigned long long)*bytes, (long long)u->quota_bytes,
				      (unsigned long long)*messages, (long long)u->quota_messages);
		free(copy);
		return 0;
	}
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < dl->target_count; i++) {
		struct delivery_target *t = &dl->targets[i];
		int ret = mailbox_append(st, t, copy, len, now, dl->msg->lifecycle_id);
		if (ret == STORE_ERR_INVALID && strcasecmp(t->folder, "INBOX") != 0) {
			/* A folder the rules named cannot exist: the copy goes to INBOX. */
			log_kv(LOG_WARN, 0, "cannot file into folder, using INBOX", "user",
			       u->address, "folder", t->folder, "reason", store_last_error(st), NULL);
			free(t->folder);
			t->folder = xstrdup("INBOX");
			ret = mailbox_append(st, t, copy, len, now, dl->msg->lifecycle_id);
		}
		if (ret != STORE_OK) {
			free(copy);
			return -1;
		}
	}
	free(copy);
	*bytes += want_bytes;
	*messages += dl->target_count;
	dl->status = DELIVERY_OK;
	return 0;
}

/* Marks the deliveries whose message the mailbox already holds (see the top). */
static int batch_mark_already_filed(store *st, struct mda_delivery *batch)
{
	for (struct mda_delivery *dl = batch; dl != NULL; dl = dl->next) {
		if (dl->msg->lifecycle_id == NULL || dl->msg->lifecycle_id[0] == '\0')
			continue;
		char **folders = NULL;
		uint32_t *uids = NULL;
		size_t count = 0;
		if (store_find_lifecycle(st, dl->msg->lifecycle_id, &folders, &uids, &count) != 0)
			return -1;
		dl->already_filed = count > 0;
		store_strv_free(folders);
		free(uids);
	}
	return 0;
}

/* Thread pool: opens the mailbox if needed and commits the batch. */
static void mailbox_work(uv_work_t *work)
{
	struct mailbox_queue *box = work->data;
	struct mda *mda = box->owner->mda;
	if (box->st == NULL) {
		char *err = NULL;
		if (store_open(mda->datadir, box->address, &box->st, &err) < 0) {
			batch_fail(box->batch, DELIVERY_TEMP, err);
			free(err);
			return;
		}
	}
	bool need_usage = false;
	for (struct mda_delivery *dl = box->batch; dl != NULL; dl = dl->next)
		if (dl->user.quota_bytes > 0 || dl->user.quota_messages > 0)
			need_usage = true;
	uint64_t bytes = 0, messages = 0;
	if ((need_usage && store_usage(box->st, &bytes, &messages) != STORE_OK) ||
	    store_begin(box->st) != STORE_OK) {
		batch_fail(box->batch, DELIVERY_TEMP, store_last_error(box->st));
		store_close(&box->st);
		return;
	}
	if (batch_mark_already_filed(box->st, box->batch) < 0) {
		batch_fail(box->batch, DELIVERY_TEMP, store_last_error(box->st));
		store_rollback(box->st);
		store_close(&box->st);
		return;
	}
	for (struct mda_delivery *dl = box->batch; dl != NULL; dl = dl->next) {
		if (dl->already_filed) {
			dl->status = DELIVERY_OK;
			continue;
		}
		if (mailbox_file_one(box->st, dl, &bytes, &messages) < 0) {
			batch_fail(box->batch, DELIVERY_TEMP, store_last_error(box->st));
			store_rollback(box->st);
			store_close(&box->st);
			return;
		}
	}
	if (store_commit(box->st) != STORE_OK) {
		batch_fail(box->batch, DELIVERY_TEMP, store_last_error(box->st));
		store_rollback(box->st);
		store_close(&box->st);
	}
}

static void committer_schedule(struct delivery_committer *c, struct mailbox_queue *box);
static void mailbox_dispatch(struct delivery_committer *c, struct mailbox_queue *box);

/* Loop: the batch is decided; tell each delivery, then look for more. */
static void mailbox_work_done(uv_work_t *work, int status)
{
	struct mailbox_queue *box = work->data;
	struct delivery_committer *c = box->owner;
	struct mda_delivery *batch = box->batch;
	box->batch = NULL;
	box->committing = false;
	if (status != 0) /* cancelled: cannot happen for running work, but stay safe */
		batch_fail(batch, DELIVERY_TEMP, "delivery cancelled");
	while (batch != NULL) {
		struct mda_delivery *dl = batch;
		batch = dl->next;
		dl->next = NULL;
		c->pending--;
		delivery_committed(dl);
	}
	if (box->head != NULL)
		committer_schedule(c, box);
	if (c->closing && c->pending == 0)
		committer_close(c);
}

/* Starts a batch for a mailbox that has waiting deliveries and no commit. */
static void mailbox_dispatch(struct delivery_committer *c, struct mailbox_queue *box)
{
	if (box->committing || box->head == NULL)
		return;
	struct mda_delivery *last = box->head;
	for (size_t n = 1; n < MDA_BATCH_MAX && last->next != NULL; n++)
		last = last->next;
	box->batch = box->head;
	box->head = last->next;
	if (box->head == NULL)
		box->tail = NULL;
	last->next = NULL;
	box->committing = true;
	box->last_used = ++c->tick;
	box->work.data = box;
	uv_queue_work(c->mda->loop, &box->work, mailbox_work, mailbox_work_done);
}

/* Idle handle: dispatches every ready mailbox once per loop turn. */
static void committer_on_idle(uv_idle_t *idle)
{
	struct delivery_committer *c = idle->data;
	struct mailbox_queue *box = c->ready_head;
	c->ready_head = c->ready_tail = NULL;
	while (box != NULL) {
		struct mailbox_queue *next = box->next_ready;
		box->next_ready = NULL;
		box->listed = false;
		mailbox_dispatch(c, box);
		box = next;
	}
	uv_idle_stop(&c->idle);
	c->idle_active = false;
}

/* Puts a mailbox on the ready list for this loop turn. */
static void committer_schedule(struct delivery_committer *c, struct mailbox_queue *box)
{
	if (c->closing) {
		mailbox_dispatch(c, box);
		return;
	}
	if (box->listed)
		return;
	box->listed = true;
	if (c->ready_tail != NULL)
		c->ready_tail->next_ready = box;
	else
		c->ready_head = box;
	c->ready_tail = box;
	if (!c->idle_active) {
		uv_idle_start(&c->idle, committer_on_idle);
		c->idle_active = true;
	}
}

/* Closes the least recently used idle mailbox when the cache is full. */
static void committer_evict(struct delivery_committer *c)
{
	if (c->box_count < MDA_STORE_CACHE_MAX)
		return;
	size_t victim = c->box_count;
	for (size_t i = 0; i < c->box_count; i++) {
		struct mailbox_queue *box = c->boxes[i];
		if (box->committing || box->head != NULL || box->listed)
			continue;
		if (victim == c->box_count || box->last_used < c->boxes[victim]->last_used)
			victim = i;
	}
	if (victim == c->box_count)
		return;
	struct mailbox_queue *box = c->boxes[victim];
	store_close(&box->st);
	free(box->address);
	free(box);
	c->boxes[victim] = c->boxes[--c->box_count];
}

/* The queue of a mailbox, made on first use. */
static struct mailbox_queue *committer_box(struct delivery_committer *c, const char *address)
{
	for (size_t i = 0; i < c->box_count; i++)
		if (strcmp(c->boxes[i]->address, address) == 0)
			return c->boxes[i];
	committer_evict(c);
	struct mailbox_queue *box = xcalloc(1, sizeof(*box));
	box->owner = c;
	box->address = xstrdup(address);
	c->boxes = xrealloc(c->boxes, (c->box_count + 1) * sizeof(*c->boxes));
	c->boxes[c->box_count++] = box;
	return box;
}

void delivery_committer_submit(struct delivery_committer *c, struct mda_delivery *dl)
{
	struct mailbox_queue *box = committer_box(c, dl->user.address);
	dl->next = NULL;
	if (box->tail != NULL)
		box->tail->next = dl;
	else
		box->head = dl;
	box->tail = dl;
	c->pending++;
	if (!box->committing)
		committer_schedule(c, box);
}

size_t delivery_committer_pending(const struct delivery_committer *c)
{
	return c->pending;
}

struct delivery_committer *delivery_committer_new(struct mda *mda)
{
	struct delivery_committer *c = xcalloc(1, sizeof(*c));
	c->mda = mda;
	uv_idle_init(mda->loop, &c->idle);
	c->idle.data = c;
	return c;
}

/* Frees the committer after its idle handle is closed. */
static void committer_on_close(uv_handle_t *handle)
{
	struct delivery_committer *c = handle->data;
	for (size_t i = 0; i < c->box_count; i++) {
		store_close(&c->boxes[i]->st);
		free(c->boxes[i]->address);
		free(c->boxes[i]);
	}
	free(c->boxes);
	free(c);
}

/* Closes the idle handle; the committer is freed in its close callback. */
static void committer_close(struct delivery_committer *c)
{
	uv_close((uv_handle_t *)&c->idle, committer_on_close);
}

void delivery_committer_free(struct delivery_committer **cp)
{
	struct delivery_committer *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->closing = true;
	/* Mailboxes already on the ready list go now: the idle handle is going away. */
	struct mailbox_queue *box = c->ready_head;
	c->ready_head = c->ready_tail = NULL;
	for (; box != NULL; box = box->next_ready) {
		box->listed = false;
		mailbox_dispatch(c, box);
	}
	if (c->pending == 0)
		committer_close(c);
}
