/* vacation.c: the Sieve vacation action (RFC 5230) and its safeguards.
 *
 * After a delivery whose script ran `vacation`, vacation_consider decides
 * whether to answer, in this order (the first "no" wins and is logged):
 *   - never the null sender, nor an address that is the user's own;
 *   - never mailing lists and robots: List-* fields, Precedence bulk/list/
 *     junk, Auto-Submitted other than "no" (RFC 3834), and senders named
 *     MAILER-DAEMON, LISTSERV, majordomo, owner-* or *-request (RFC 5230 4.6);
 *   - only when one of the user's addresses is in To/Cc/Bcc/Resent-* (4.5);
 *   - at most once per sender and handle per :days period (4.2), remembered
 *     in D/mail/<domain>/<local>.vacation, a small text file of
 *     "expiry handle sender" lines rewritten under flock, on the thread
 *     pool so that waiting for the lock never stalls the loop.
 * The reply goes out through the mta's submission socket with the null
 * sender, Auto-Submitted: auto-replied and In-Reply-To/References. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "buffer.h"
#include "log.h"
#include "mda.h"
#include "sieve.h"
#include "store.h"

#define VACATION_MAX_RECORDS 10000
#define VACATION_MAX_FILE (2 * 1024 * 1024)

/* Lower-cased address with any +detail removed from the local part (caller frees). */
static char *vacation_normalize(const char *address)
{
	const char *at = strrchr(address, '@');
	size_t local_len = at != NULL ? (size_t)(at - address) : strlen(address);
	const char *plus = memchr(address, '+', local_len);
	buf_t b = BUF_INIT;
	buf_append(&b, address, plus != NULL ? (size_t)(plus - address) : local_len);
	if (at != NULL)
		buf_append_str(&b, at);
	for (size_t i = 0; i < b.len; i++)
		if (b.data[i] >= 'A' && b.data[i] <= 'Z')
			b.data[i] = (char)(b.data[i] - 'A' + 'a');
	return buf_steal(&b);
}

/* True when address is one of the recipient's own. */
static bool vacation_is_own_address(const struct mda_delivery *dl, const char *address)
{
	char *norm = vacation_normalize(address);
	const struct sieve_command *v = dl->vacation;
	const char *own[] = {dl->user.address, dl->rcpt};
	bool found = false;
	for (size_t i = 0; i < 2 && !found; i++) {
		char *o = vacation_normalize(own[i]);
		found = strcmp(o, norm) == 0;
		free(o);
	}
	for (size_t i = 0; i < v->addresses.count && !found; i++) {
		char *o = vacation_normalize(v->addresses.items[i]);
		found = strcmp(o, norm) == 0;
		free(o);
	}
	free(norm);
	return found;
}

/* RFC 5230 4.6: senders that are robots. */
static bool vacation_sender_is_robot(const char *sender)
{
	const char *at = strrchr(sender, '@');
	size_t len = at != NULL ? (size_t)(at - sender) : strlen(sender);
	static const char *const names[] = {"mailer-daemon", "listserv", "majordomo"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (len == strlen(names[i]) && strncasecmp(sender, names[i], len) == 0)
			return true;
	if (len >= 6 && strncasecmp(sender, "owner-", 6) == 0)
		return true;
	if (len >= 8 && strncasecmp(sender + len - 8, "-request", 8) == 0)
		return true;
	return false;
}

/* Why the message must not be answered, or NULL when it may. */
static const char *vacation_refusal(const struct mda_delivery *dl)
{
	const struct header *h = &dl->msg->header;
	const char *sender = dl->msg->sender;
	if (sender[0] == '\0')
		return "null sender";
	if (vacation_is_own_address(dl, sender))
		return "sender is the user";
	if (vacation_sender_is_robot(sender))
		return "sender is a robot or list";
	const char *auto_submitted = header_get(h, "Auto-Submitted");
	if (auto_submitted != NULL && strncasecmp(auto_submitted, "no", 2) != 0)
		return "Auto-Submitted";
	static const char *const list_fields[] = {"List-Id", "List-Post", "List-Help",
						  "List-Subscribe", "List-Unsubscribe",
						  "List-Owner", "List-Archive"};
	for (size_t i = 0; i < sizeof(list_fields) / sizeof(list_fields[0]); i++)
		if (header_get(h, list_fields[i]) != NULL)
			return "mailing list";
	const char *precedence = header_get(h, "Precedence");
	if (precedence != NULL &&
	    (strncasecmp(precedence, "bulk", 4) == 0 || strncasecmp(precedence, "list", 4) == 0 ||
	     strncasecmp(precedence, "junk", 4) == 0))
		return "bulk mail";
	static const char *const rcpt_fields[] = {"To", "Cc", "Bcc", "Resent-To", "Resent-Cc",
						  "Resent-Bcc"};
	for (size_t i = 0; i < h->count; i++) {
		bool is_rcpt_field = false;
		for (size_t k = 0; k < sizeof(rcpt_fields) / sizeof(rcpt_fields[0]); k++)
			if (strcasecmp(h->fields[i].name, rcpt_fields[k]) == 0)
				is_rcpt_field = true;
		if (!is_rcpt_field)
			continue;
		struct address_list list = {NULL, 0};
		address_list_parse(h->fields[i].value, strlen(h->fields[i].value), &list);
		bool found = false;
		for (size_t a = 0; a < list.count && !found; a++) {
			if (list.items[a].local == NULL)
				continue;
			char *spec = mail_address_spec(&list.items[a]);
			found = vacation_is_own_address(dl, spec);
			free(spec);
		}
		address_list_free(&list);
		if (found)
			return NULL;
	}
	return "user not in To/Cc";
}

/* The handle (RFC 5230 4.2): :handle, else a digest of the parameters. */
static char *vacation_handle(const struct sieve_command *v)
{
	if (v->handle != NULL)
		return xstrdup(v->handle);
	uint64_t hash = 1469598103934665603ULL; /* FNV-1a: a name, not a secret */
	const char *parts[] = {v->argument, v->subject ? v->subject : "", v->from ? v->from : "",
			       v->mime ? "mime" : ""};
	for (size_t i = 0; i < 4; i++) {
		for (const char *s = parts[i]; *s != '\0'; s++) {
			hash ^= (unsigned char)*s;
			hash *= 1099511628211ULL;
		}
		hash ^= 0xff;
		hash *= 1099511628211ULL;
	}
	return xasprintf("%016llx", (unsigned long long)hash);
}

/* Checks and records the reply in the user's vacation file: 1 when a reply
 * may go now (and is recorded), 0 when one went within the period, -1 on
 * error. Runs on the thread pool (it may wait for the lock and rewrite a file
 * of up to VACATION_MAX_FILE), so it takes copies, not the delivery. */
static int vacation_record(const char *datadir, const char *address, const char *from,
			   const char *handle, int64_t days)
{
	char *path = store_mailbox_file(datadir, address, ".vacation");
	if (path == NULL)
		return -1;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(path);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX) < 0) {
		close(fd);
		return -1;
	}
	buf_t old = BUF_INIT;
	char chunk[8192];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0 && old.len < VACATION_MAX_FILE)
		buf_append(&old, chunk, (size_t)n);
	int64_t now = (int64_t)time(NULL);
	char *sender = vacation_normalize(from);
	buf_t kept = BUF_INIT;
	size_t records = 0;
	int result = 1;
	/* Newest records are last; keep at most VACATION_MAX_RECORDS - 1 old ones. */
	size_t total = 0;
	for (const char *p = buf_cstr(&old); *p != '\0'; p++)
		total += *p == '\n';
	size_t skip = total >= VACATION_MAX_RECORDS ? total - (VACATION_MAX_RECORDS - 1) : 0;
	char *save = NULL;
	for (char *line = strtok_r(old.data != NULL ? old.data : (char[]){""}, "\n", &save);
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		long long expiry;
		char rec_handle[128], rec_sender[512];
		if (sscanf(line, "%lld %127s %511s", &expiry, rec_handle, rec_sender) != 3)
			continue;
		if (expiry <= now)
			continue;
		if (strcmp(rec_handle, handle) == 0 && strcmp(rec_sender, sender) == 0)
			result = 0;
		if (skip > 0) {
			skip--;
			continue;
		}
		buf_printf(&kept, "%lld %s %s\n", expiry, rec_handle, rec_sender);
		records++;
	}
	if (result == 1)
		buf_printf(&kept, "%lld %s %s\n", (long long)(now + days * 86400), handle, sender);
	if (lseek(fd, 0, SEEK_SET) < 0 || ftruncate(fd, 0) < 0 ||
	    (kept.len > 0 && write(fd, kept.data, kept.len) != (ssize_t)kept.len))
		result = -1;
	close(fd);
	free(sender);
	buf_free(&old);
	buf_free(&kept);
	return result;
}

/* Appends text with every line ending made CRLF. */
static void append_crlf(buf_t *b, const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\n' && (p == text || p[-1] != '\r'))
			buf_append_char(b, '\r');
		buf_append_char(b, *p);
	}
	if (b->len < 2 || b->data[b->len - 2] != '\r' || b->data[b->len - 1] != '\n')
		buf_append_str(b, "\r\n");
}

/* True when s has a byte outside ASCII. */
static bool has_8bit(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* The reply message (RFC 5230 5, RFC 3834 3). */
static char *vacation_build(const struct mda *mda, const struct mda_delivery *dl, size_t *len_r)
{
	const struct sieve_command *v = dl->vacation;
	const struct header *h = &dl->msg->header;
	buf_t b = BUF_INIT;
	char date[64];
	header_format_date((int64_t)time(NULL), 0, date, sizeof(date));
	char *id = lifecycle_id_new();
	buf_printf(&b, "From: %s\r\n", v->from != NULL ? v->from : dl->user.address);
	buf_printf(&b, "To: %s\r\n", dl->msg->sender);
	char *subject;
	if (v->subject != NULL) {
		subject = xstrdup(v->subject);
	} else {
		const char *orig = header_get(h, "Subject");
		char *decoded = header_decode_words(orig != NULL ? orig : "");
		subject = xasprintf("Auto: %s", decoded);
		free(decoded);
	}
	char *encoded = header_encode_words(subject, strlen("Subject"));
	buf_printf(&b, "Subject: %s\r\n", encoded);
	free(encoded);
	free(subject);
	buf_printf(&b, "Date: %s\r\n", date);
	buf_printf(&b, "Message-ID: <vacation.%s@%s>\r\n", id, mda->hostname);
	free(id);
	const char *msgid = header_get(h, "Message-ID");
	if (msgid != NULL) {
		const char *refs = header_get(h, "References");
		buf_printf(&b, "In-Reply-To: %s\r\n", msgid);
		if (refs != NULL)
			buf_printf(&b, "References: %s %s\r\n", refs, msgid);
		else
			buf_printf(&b, "References: %s\r\n", msgid);
	}
	buf_append_str(&b, "Auto-Submitted: auto-replied (vacation)\r\n");
	buf_append_str(&b, "MIME-Version: 1.0\r\n");
	if (v->mime) {
		/* The reason is a MIME entity: its own header, then its body. */
		append_crlf(&b, v->argument);
	} else {
		buf_printf(&b, "Content-Type: text/plain; charset=utf-8\r\n"
			       "Content-Transfer-Encoding: %s\r\n\r\n",
			   has_8bit(v->argument) ? "8bit" : "7bit");
		append_crlf(&b, v->argument);
	}
	*len_r = b.len;
	return buf_steal(&b);
}

/* One reply under way: recorded on the thread pool, then submitted from the
 * loop. Holds copies, so the delivery may be gone by then. */
struct vacation_job {
	uv_work_t work;
	struct mda *mda;
	char *id, *rcpt, *to;
	char *datadir, *address, *handle;
	int64_t days;
	char *reply;
	size_t reply_len;
	int recorded;
};

/* Frees a job and sets *jobp NULL. */
static void vacation_job_free(struct vacation_job **jobp)
{
	struct vacation_job *job = *jobp;
	if (job == NULL)
		return;
	*jobp = NULL;
	free(job->id);
	free(job->rcpt);
	free(job->to);
	free(job->datadir);
	free(job->address);
	free(job->handle);
	free(job->reply);
	free(job);
}

/* The reply's submission ended. */
static void vacation_sent(int status, bool permanent, const char *reason, void *arg)
{
	struct vacation_job *job = arg;
	log_event(job->id, "vacation", "rcpt", job->rcpt, "to", job->to, "result",
		  status == 0 ? "sent" : "failed", "reason", reason, NULL);
	vacation_job_free(&job);
}

/* On a pool thread: the once-per-period check and record. */
static void vacation_record_work(uv_work_t *work)
{
	struct vacation_job *job = work->data;
	job->recorded =
		vacation_record(job->datadir, job->address, job->to, job->handle, job->days);
}

/* Back on the loop: submits the reply, or logs why not. */
static void vacation_record_done(uv_work_t *work, int status)
{
	struct vacation_job *job = work->data;
	if (status != 0)
		job->recorded = -1;
	if (job->recorded <= 0) {
		log_event(job->id, "vacation", "rcpt", job->rcpt, "result", "not sent", "reason",
			  job->recorded == 0 ? "already answered in this period"
					     : "cannot record the reply",
			  NULL);
		vacation_job_free(&job);
		return;
	}
	struct mda *mda = job->mda;
	submit_message(mda->loop, mda->submit_socket, mda->hostname, "", job->to, job->reply,
		       job->reply_len, vacation_sent, job);
}

void vacation_consider(struct mda *mda, const struct mda_delivery *dl)
{
	const char *id = dl->msg->lifecycle_id;
	const char *why = vacation_refusal(dl);
	if (why != NULL) {
		log_event(id, "vacation", "rcpt", dl->rcpt, "result", "not sent", "reason", why,
			  NULL);
		return;
	}
	struct vacation_job *job = xcalloc(1, sizeof(*job));
	job->work.data = job;
	job->mda = mda;
	job->id = xstrdup(id);
	job->rcpt = xstrdup(dl->rcpt);
	job->to = xstrdup(dl->msg->sender);
	job->datadir = xstrdup(mda->datadir);
	job->address = xstrdup(dl->user.address);
	job->handle = vacation_handle(dl->vacation);
	job->days = dl->vacation->days;
	job->reply = vacation_build(mda, dl, &job->reply_len);
	if (uv_queue_work(mda->loop, &job->work, vacation_record_work, vacation_record_done) != 0) {
		vacation_record_work(&job->work);
		vacation_record_done(&job->work, 0);
	}
}
