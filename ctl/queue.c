/* queue.c: `mailctl queue` — look at and act on the mta's queue.
 *
 *   mailctl queue [list]        every message: id, age, sender, size, held,
 *                               and each recipient with its state, attempts,
 *                               next try and last error
 *   mailctl queue flush [ID]    try now (one message, or all)
 *   mailctl queue hold ID       stop delivering it until released
 *   mailctl queue release ID
 *   mailctl queue delete ID     remove it without a bounce
 *
 * The running mta notices within a second: its scheduler reads queue.sqlite
 * on every tick. All SQL is in common/queue.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "queue.h"

static const char *const queue_state_names[] = {"queued", "delivered", "failed"};

static void queue_usage(FILE *out)
{
	fputs("usage: mailctl queue [list]\n"
	      "       mailctl queue flush [ID]\n"
	      "       mailctl queue hold|release|delete ID\n", out);
}

/* Formats unix ms as local "YYYY-MM-DD HH:MM:SS". */
static void queue_format_time(int64_t ms, char *out, size_t cap)
{
	if (ms <= 0) {
		snprintf(out, cap, "now");
		return;
	}
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Prints the queue, oldest first. */
static int queue_print(queue *q)
{
	struct queue_msg *list = NULL;
	size_t count = queue_list(q, &list);
	if (count == 0)
		printf("The queue is empty.\n");
	for (size_t i = 0; i < count; i++) {
		struct queue_msg *m = &list[i];
		char created[32];
		queue_format_time(m->created, created, sizeof(created));
		printf("%s  %s  %lld bytes%s%s\n  from <%s>%s%s\n", m->id, created, (long long)m->size,
		       m->held ? "  HELD" : "", m->is_dsn ? "  (report)" : "", m->sender,
		       m->auth_user != NULL ? "  auth " : "", m->auth_user != NULL ? m->auth_user : "");
		for (size_t j = 0; j < m->rcpt_count; j++) {
			struct queue_rcpt *r = &m->rcpts[j];
			char next[32];
			queue_format_time(r->next_try, next, sizeof(next));
			printf("  to <%s>  %s  attempts %d", r->address,
			       queue_state_names[r->state <= QUEUE_RCPT_FAILED ? r->state : 0],
			       r->attempts);
			if (r->state == QUEUE_RCPT_QUEUED)
				printf("  next try %s", next);
			printf("\n");
			if (r->last_error != NULL)
				printf("    last error: %s\n", r->last_error);
		}
		queue_msg_free(m);
	}
	free(list);
	return 0;
}

int cmd_queue(int argc, char **argv, const char *datadir)
{
	const char *action = argc > 1 ? argv[1] : "list";
	if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0 || strcmp(action, "help") == 0) {
		queue_usage(stdout);
		return 0;
	}
	queue *q = NULL;
	char *err = NULL;
	if (queue_open(datadir, &q, &err) < 0) {
		fprintf(stderr, "mailctl queue: %s\n", err);
		free(err);
		return 1;
	}
	int rc = 0;
	const char *id = argc > 2 ? argv[2] : NULL;
	if (strcmp(action, "list") == 0 && argc <= 2) {
		rc = queue_print(q);
	} else if (strcmp(action, "flush") == 0 && argc <= 3) {
		rc = id != NULL ? queue_msg_flush(q, id, &err) : queue_flush_all(q, &err);
		if (rc == 0)
			printf("%s: will be tried now\n", id != NULL ? id : "every message");
	} else if (strcmp(action, "hold") == 0 && argc == 3) {
		rc = queue_msg_hold(q, id, true, &err);
		if (rc == 0)
			printf("%s: held\n", id);
	} else if (strcmp(action, "release") == 0 && argc == 3) {
		rc = queue_msg_hold(q, id, false, &err);
		if (rc == 0)
			printf("%s: released\n", id);
	} else if (strcmp(action, "delete") == 0 && argc == 3) {
		rc = queue_msg_delete(q, id, &err);
		if (rc == 0)
			printf("%s: deleted\n", id);
	} else {
		queue_usage(stderr);
		queue_close(&q);
		return 2;
	}
	queue_close(&q);
	if (rc < 0) {
		fprintf(stderr, "mailctl queue: %s\n", err != NULL ? err : "failed");
		free(err);
		return 1;
	}
	return 0;
}
