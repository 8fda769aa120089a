/* delivery.c: one recipient's delivery of one message.
 *
 * States, in order (each step may be skipped):
 *   RULES     run the user's Sieve script: folders, redirects, vacation
 *   REDIRECT  re-submit the message to each redirect address through the
 *             mta (a redirect that fails falls back to a copy in INBOX, so
 *             nothing is lost)
 *   COMMIT    file the copies with the group committer (committer.c)
 *   DONE      log the lifecycle events, consider the vacation reply, and
 *             call the caller's done callback
 * A script that cannot be parsed or fails at run time delivers to INBOX and
 * the reason is logged (RFC 5228 2.10.6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buffer.h"
#include "log.h"
#include "mda.h"
#include "sieve.h"
#include "sieve_run.h"

struct mda_delivery *delivery_new(struct mda *mda, struct mda_message *msg,
				  struct user_info *info, const char *rcpt)
{
	struct mda_delivery *dl = xcalloc(1, sizeof(*dl));
	dl->mda = mda;
	dl->msg = mda_message_ref(msg);
	dl->user = *info;
	memset(info, 0, sizeof(*info));
	dl->rcpt = xstrdup(rcpt);
	dl->status = DELIVERY_PENDING;
	return dl;
}

void delivery_free(struct mda_delivery **dlp)
{
	struct mda_delivery *dl = *dlp;
	if (dl == NULL)
		return;
	*dlp = NULL;
	mda_message_unref(&dl->msg);
	user_info_free(&dl->user);
	free(dl->rcpt);
	free(dl->forced_folder);
	free(dl->rule);
	for (size_t i = 0; i < dl->target_count; i++)
		free(dl->targets[i].folder);
	free(dl->targets);
	for (size_t i = 0; i < dl->redirect_count; i++)
		free(dl->redirects[i]);
	free(dl->redirects);
	sieve_script_free(&dl->script);
	free(dl->error);
	free(dl);
}

/* Adds a copy to folder unless one is already planned there. */
static void delivery_add_target(struct mda_delivery *dl, const char *folder, bool create)
{
	for (size_t i = 0; i < dl->target_count; i++)
		if (strcmp(dl->targets[i].folder, folder) == 0)
			return;
	dl->targets = xrealloc(dl->targets, (dl->target_count + 1) * sizeof(*dl->targets));
	struct delivery_target *t = &dl->targets[dl->target_count++];
	t->folder = xstrdup(folder);
	t->create = create;
	t->uid = 0;
}

/* The folder "keep" means: INBOX, or the LDA's -m folder. */
static const char *delivery_keep_folder(const struct mda_delivery *dl)
{
	return dl->forced_folder != NULL ? dl->forced_folder : "INBOX";
}

/* Turns the script's actions into targets, redirects and the rule text. */
static void delivery_apply_result(struct mda_delivery *dl, const struct sieve_result *r)
{
	buf_t rule = BUF_INIT;
	for (size_t i = 0; i < r->count; i++) {
		const struct sieve_action *a = &r->actions[i];
		if (rule.len > 0)
			buf_append_str(&rule, ", ");
		buf_printf(&rule, "line %u %s", a->line, sieve_action_name(a->kind));
		switch (a->kind) {
		case SIEVE_ACTION_KEEP:
			delivery_add_target(dl, delivery_keep_folder(dl), false);
			break;
		case SIEVE_ACTION_FILEINTO:
			buf_printf(&rule, " %s", a->folder);
			delivery_add_target(dl, a->folder, a->create);
			break;
		case SIEVE_ACTION_REDIRECT:
			buf_printf(&rule, " %s", a->address);
			dl->redirects = xrealloc(dl->redirects,
						 (dl->redirect_count + 1) * sizeof(*dl->redirects));
			dl->redirects[dl->redirect_count++] = xstrdup(a->address);
			break;
		case SIEVE_ACTION_VACATION:
			dl->vacation = a->vacation;
			break;
		case SIEVE_ACTION_DISCARD:
			break;
		}
	}
	if (r->implicit_keep) {
		if (rule.len > 0)
			buf_append_str(&rule, ", ");
		buf_append_str(&rule, "implicit keep");
		delivery_add_target(dl, delivery_keep_folder(dl), false);
	}
	free(dl->rule);
	dl->rule = buf_steal(&rule);
}

/* RULES: runs the user's script, if any. */
static void delivery_run_rules(struct mda_delivery *dl)
{
	const char *id = dl->msg->lifecycle_id;
	char *text = userdb_sieve_get(dl->mda->users, dl->user.address);
	if (text == NULL) {
		dl->rule = xstrdup(dl->forced_folder != NULL ? "-m folder" : "no rules");
		delivery_add_target(dl, delivery_keep_folder(dl), dl->forced_folder != NULL);
		return;
	}
	char *err = NULL;
	if (sieve_parse(text, strlen(text), &dl->script, &err) < 0) {
		log_kv(LOG_WARN, 0, "sieve script does not parse, delivering to INBOX", "id", id,
		       "user", dl->user.address, "error", err, NULL);
		dl->rule = xasprintf("script error: %s", err);
		delivery_add_target(dl, delivery_keep_folder(dl), false);
		free(err);
		free(text);
		return;
	}
	free(text);
	struct sieve_input in = {
		.header = &dl->msg->header,
		.envelope_from = dl->msg->sender,
		.envelope_to = dl->rcpt,
		.size = dl->msg->len,
	};
	struct sieve_result r;
	if (sieve_run(dl->script, &in, &r) < 0) {
		log_kv(LOG_WARN, 0, "sieve script failed, delivering to INBOX", "id", id, "user",
		       dl->user.address, "error", r.error, NULL);
		dl->rule = xasprintf("script error: %s", r.error);
		delivery_add_target(dl, delivery_keep_folder(dl), false);
		sieve_result_free(&r);
		return;
	}
	delivery_apply_result(dl, &r);
	if (r.count > 0)
		log_event(id, "filtered", "rcpt", dl->rcpt, "user", dl->user.address, "rule",
			  dl->rule, NULL);
	sieve_result_free(&r);
}

/* DONE: logs the outcome, answers the vacation, tells the caller. */
static void delivery_finish(struct mda_delivery *dl)
{
	const char *id = dl->msg->lifecycle_id;
	if (dl->status == DELIVERY_OK && dl->already_filed) {
		log_event(id, "duplicate", "rcpt", dl->rcpt, "user", dl->user.address, "reason",
			  "already in the mailbox: a retry after the mta lost our reply", NULL);
	} else if (dl->status == DELIVERY_OK) {
		for (size_t i = 0; i < dl->target_count; i++) {
			char uid[16];
			snprintf(uid, sizeof(uid), "%u", dl->targets[i].uid);
			log_event(id, "delivered", "rcpt", dl->rcpt, "user", dl->user.address,
				  "folder", dl->targets[i].folder, "uid", uid, "rule", dl->rule,
				  NULL);
		}
		if (dl->target_count == 0 && dl->redirect_count == 0)
			log_event(id, "discarded", "rcpt", dl->rcpt, "user", dl->user.address,
				  "rule", dl->rule, NULL);
		if (dl->vacation != NULL)
			vacation_consider(dl->mda, dl);
	} else {
		log_event(id, "failed", "rcpt", dl->rcpt, "user", dl->user.address, "status",
			  dl->status == DELIVERY_QUOTA ? "quota" : "temporary", "reason",
			  dl->error, NULL);
	}
	dl->done(dl, dl->done_arg);
}

void delivery_committed(struct mda_delivery *dl)
{
	delivery_finish(dl);
}

/* COMMIT (or straight to DONE when there is nothing to file). */
static void delivery_file(struct mda_delivery *dl)
{
	if (dl->redirect_failed && dl->target_count == 0) {
		char *rule = xasprintf("%s, redirect failed: kept", dl->rule);
		free(dl->rule);
		dl->rule = rule;
		delivery_add_target(dl, delivery_keep_folder(dl), false);
	}
	if (dl->target_count == 0) {
		dl->status = DELIVERY_OK;
		delivery_finish(dl);
		return;
	}
	delivery_committer_submit(dl->mda->committer, dl);
}

struct redirect_job {
	struct mda_delivery *dl;
	char *address;
	char *data;
};

/* One redirect's submission ended. */
static void delivery_redirect_done(int status, bool permanent, const char *reason, void *arg)
{
	struct redirect_job *job = arg;
	struct mda_delivery *dl = job->dl;
	if (status == 0) {
		log_event(dl->msg->lifecycle_id, "redirected", "rcpt", dl->rcpt, "user",
			  dl->user.address, "to", job->address, "rule", dl->rule, NULL);
	} else {
		dl->redirect_failed = true;
		log_kv(LOG_WARN, 0, "redirect failed, keeping a copy", "id", dl->msg->lifecycle_id,
		       "user", dl->user.address, "to", job->address, "reason", reason,
		       "permanent", permanent ? "yes" : "no", NULL);
	}
	free(job->address);
	free(job->data);
	free(job);
	if (--dl->redirects_pending == 0)
		delivery_file(dl);
}

/* True when the message already passed through this recipient
 * (a Delivered-To naming it): redirecting again would loop. */
static bool delivery_is_loop(const struct mda_delivery *dl)
{
	const struct header *h = &dl->msg->header;
	for (size_t i = 0; i < h->count; i++) {
		if (strcasecmp(h->fields[i].name, "Delivered-To") != 0)
			continue;
		if (strcasecmp(h->fields[i].value, dl->rcpt) == 0 ||
		    strcasecmp(h->fields[i].value, dl->user.address) == 0)
			return true;
	}
	return false;
}

/* REDIRECT: re-submits to every redirect address at once. */
static void delivery_redirect(struct mda_delivery *dl)
{
	if (delivery_is_loop(dl)) {
		log_kv(LOG_WARN, 0, "redirect refused: mail loop (Delivered-To), keeping a copy",
		       "id", dl->msg->lifecycle_id, "user", dl->user.address, NULL);
		dl->redirect_failed = true;
		delivery_file(dl);
		return;
	}
	dl->redirects_pending = dl->redirect_count;
	for (size_t i = 0; i < dl->redirect_count; i++) {
		struct redirect_job *job = xcalloc(1, sizeof(*job));
		job->dl = dl;
		job->address = xstrdup(dl->redirects[i]);
		buf_t b = BUF_INIT;
		buf_printf(&b, "Delivered-To: %s\r\n", dl->rcpt);
		buf_append(&b, dl->msg->data, dl->msg->len);
		size_t len = b.len;
		job->data = buf_steal(&b);
		submit_message(dl->mda->loop, dl->mda->submit_socket, dl->mda->hostname,
			       dl->msg->sender, job->address, job->data, len, delivery_redirect_done,
			       job);
	}
}

void delivery_start(struct mda_delivery *dl, delivery_done_fn *done, void *arg)
{
	dl->done = done;
	dl->done_arg = arg;
	delivery_run_rules(dl);
	if (dl->redirect_count > 0)
		delivery_redirect(dl);
	else
		delivery_file(dl);
}
