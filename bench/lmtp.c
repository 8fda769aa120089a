/* bench_lmtp: how fast the mda files mail, against what the machine allows.
 *
 *   bench_lmtp [--messages N] [--dir D]
 *
 * Makes a data directory (mailctl init, 100 users), then for each scenario
 * starts a fresh mda and delivers N messages of 4 KiB (default 20,000) over
 * 1, 4 and 16 LMTP sessions, first all to one user, then spread over 100
 * users. Each session is a thread with a blocking client that pipelines
 * MAIL, RCPT and DATA (RFC 2920) and waits for the final reply; a delivery's
 * latency runs from sending MAIL to reading its 250. Prints deliveries per
 * second, p50/p99 latency and the mda's peak memory (VmHWM).
 *
 * The ceiling, measured in the same run: a bare loop appending the same
 * 4 KiB rows to a SQLite database (WAL, synchronous=FULL, as db_open sets
 * up) with one durable commit each. Our ratio to it is printed per scenario:
 * group commit should put one user above 1.0 and 100 users at 0.6 or more.
 * Not a test: it prints figures and never fails on them. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "buffer.h"
#include "db.h"

#define BENCH_MESSAGE_SIZE 4096
#define BENCH_USERS 100
#define BENCH_DEFAULT_MESSAGES 20000
#define BENCH_CEILING_SECONDS 3.0
#define BENCH_CEILING_MAX 20000
#define BENCH_CEILING_WARMUP 1200 /* commits: more than one WAL wrap-around */

static char bench_bin[PATH_MAX];
static char bench_dir[PATH_MAX];
static char bench_message[BENCH_MESSAGE_SIZE + 1];
static struct sockaddr_un bench_socket; /* D/run/lmtp.sock */

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs a program from the build's bin directory with optional stdin text. */
static int run_tool(const char *input, char *const argv[])
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[0], STDIN_FILENO);
		close(fds[0]);
		close(fds[1]);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, STDOUT_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[0]);
	if (input != NULL && write(fds[1], input, strlen(input)) < 0)
		perror("write");
	close(fds[1]);
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* mailctl init plus BENCH_USERS users (and run_as = us, so a root run can write). */
static int bench_setup(void)
{
	char mailctl[PATH_MAX + 16];
	snprintf(mailctl, sizeof(mailctl), "%s/mailctl", bench_bin);
	char *init[] = {mailctl, "init", "--dir", bench_dir, "--domain", "bench.test",
			"--port-base", "41000", NULL};
	if (run_tool(NULL, init) != 0) {
		fprintf(stderr, "bench_lmtp: mailctl init failed\n");
		return -1;
	}
	char *conf = xasprintf("%s/mailstack.conf", bench_dir);
	FILE *f = fopen(conf, "a");
	free(conf);
	if (f == NULL)
		return -1;
	const char *user = getenv("USER");
	fprintf(f, "\n[server]\nrun_as = %s\n[log]\ntranscript = no\nlevel = warn\n",
		user != NULL && user[0] != '\0' ? user : "root");
	fclose(f);
	fprintf(stderr, "adding %d users...\n", BENCH_USERS);
	for (int i = 0; i < BENCH_USERS; i++) {
		char address[64];
		snprintf(address, sizeof(address), "u%d@bench.test", i);
		char *argv[] = {mailctl, "--dir", bench_dir, "user", "add", address, NULL};
		if (run_tool("bench-password-1\n", argv) != 0) {
			fprintf(stderr, "bench_lmtp: cannot add %s\n", address);
			return -1;
		}
	}
	return 0;
}

/* Starts the mda and waits for its socket. */
static pid_t mda_start(void)
{
	char *sock = xasprintf("%s/run/lmtp.sock", bench_dir);
	unlink(sock);
	pid_t pid = fork();
	if (pid == 0) {
		char mda[PATH_MAX + 8];
		snprintf(mda, sizeof(mda), "%s/mda", bench_bin);
		execl(mda, mda, "--dir", bench_dir, (char *)NULL);
		_exit(127);
	}
	struct stat st;
	for (int i = 0; i < 500 && stat(sock, &st) != 0; i++)
		usleep(10000);
	free(sock);
	return pid;
}

/* The mda's peak resident memory in KiB (VmHWM). */
static long mda_peak_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	if (f != NULL)
		fclose(f);
	return kib;
}

static void mda_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

struct session_job {
	int index, sessions, users;
	size_t messages;      /* this session's share */
	double *latencies;    /* one per message */
	size_t failures;
};

/* Reads one reply (all lines); returns its code or -1. */
static int read_reply(int fd, buf_t *in)
{
	for (;;) {
		char *eol;
		while ((eol = memchr(buf_cstr(in), '\n', in->len)) != NULL) {
			size_t n = (size_t)(eol - in->data) + 1;
			int code = atoi(in->data);
			bool more = n > 4 && in->data[3] == '-';
			buf_consume(in, n);
			if (!more)
				return code;
		}
		char chunk[4096];
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r <= 0)
			return -1;
		buf_append(in, chunk, (size_t)r);
	}
}

/* One LMTP session delivering its share. */
static void *session_run(void *arg)
{
	struct session_job *job = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	buf_t in = BUF_INIT, out = BUF_INIT;
	if (connect(fd, (struct sockaddr *)&bench_socket, sizeof(bench_socket)) != 0 || read_reply(fd, &in) != 220 ||
	    write(fd, "LHLO bench\r\n", 12) != 12 || read_reply(fd, &in) != 250) {
		job->failures = job->messages;
		close(fd);
		buf_free(&in);
		return NULL;
	}
	for (size_t i = 0; i < job->messages; i++) {
		int user = job->users == 1 ? 0 : (int)((i * (size_t)job->sessions + (size_t)job->index) %
						       (size_t)job->users);
		buf_reset(&out);
		buf_printf(&out, "MAIL FROM:<bench@other.test>\r\nRCPT TO:<u%d@bench.test>\r\nDATA\r\n",
			   user);
		double start = now_seconds();
		if (write(fd, out.data, out.len) != (ssize_t)out.len || read_reply(fd, &in) != 250 ||
		    read_reply(fd, &in) != 250 || read_reply(fd, &in) != 354 ||
		    write(fd, bench_message, BENCH_MESSAGE_SIZE) != BENCH_MESSAGE_SIZE ||
		    write(fd, ".\r\n", 3) != 3 || read_reply(fd, &in) != 250) {
			job->failures++;
			break;
		}
		job->latencies[i] = now_seconds() - start;
	}
	if (write(fd, "QUIT\r\n", 6) == 6)
		read_reply(fd, &in);
	close(fd);
	buf_free(&in);
	buf_free(&out);
	return NULL;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One scenario; prints its line. */
static void bench_scenario(size_t messages, int sessions, int users, double ceiling)
{
	pid_t pid = mda_start();
	struct session_job *jobs = xcalloc((size_t)sessions, sizeof(*jobs));
	double *latencies = xcalloc(messages, sizeof(double));
	pthread_t *threads = xcalloc((size_t)sessions, sizeof(*threads));
	size_t offset = 0;
	for (int s = 0; s < sessions; s++) {
		jobs[s].index = s;
		jobs[s].sessions = sessions;
		jobs[s].users = users;
		jobs[s].messages = messages / (size_t)sessions + ((size_t)s < messages % (size_t)sessions);
		jobs[s].latencies = latencies + offset;
		offset += jobs[s].messages;
	}
	double start = now_seconds();
	for (int s = 0; s < sessions; s++)
		pthread_create(&threads[s], NULL, session_run, &jobs[s]);
	size_t failures = 0;
	for (int s = 0; s < sessions; s++) {
		pthread_join(threads[s], NULL);
		failures += jobs[s].failures;
	}
	double elapsed = now_seconds() - start;
	long peak = mda_peak_kib(pid);
	mda_stop(pid);
	size_t done = messages - failures;
	qsort(latencies, messages, sizeof(double), compare_double);
	/* Failed slots are 0 and sort first: take percentiles over the tail. */
	size_t first = messages - done;
	double p50 = done ? latencies[first + done / 2] * 1000 : 0;
	double p99 = done ? latencies[first + (done * 99) / 100 - (done >= 100 ? 1 : 0)] * 1000 : 0;
	double rate = done / elapsed;
	printf("%-9s %8d %8zu %12.0f %9.2f %9.2f %10.1f %7.2f%s\n",
	       users == 1 ? "1 user" : "100 users", sessions, done, rate, p50, p99,
	       peak / 1024.0, rate / ceiling, failures ? "  (failures!)" : "");
	fflush(stdout);
	free(jobs);
	free(latencies);
	free(threads);
}

/* The machine's ceiling: durable single-row commits per second. */
static double bench_ceiling(void)
{
	char *path = xasprintf("%s/ceiling.sqlite", bench_dir);
	unlink(path);
	static const char *const migrations[] = {
		"CREATE TABLE rows (id INTEGER PRIMARY KEY, data BLOB NOT NULL);"};
	sqlite3 *db = NULL;
	char *err = NULL;
	if (db_open(path, true, migrations, 1, &db, &err) < 0) {
		fprintf(stderr, "bench_lmtp: %s\n", err);
		exit(1);
	}
	sqlite3_stmt *insert = db_prepare(db, "INSERT INTO rows (data) VALUES (?)");
	/* Warm up first, as the mda's mailboxes are: once the WAL has wrapped
	 * around, commits overwrite it in place instead of growing the file. */
	double start = now_seconds(), elapsed = 0;
	int count = 0;
	for (int warm = 0; warm < BENCH_CEILING_WARMUP && now_seconds() - start < BENCH_CEILING_SECONDS;
	     warm++) {
		sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
		sqlite3_bind_blob(insert, 1, bench_message, BENCH_MESSAGE_SIZE, SQLITE_STATIC);
		sqlite3_step(insert);
		sqlite3_reset(insert);
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	start = now_seconds();
	while (count < BENCH_CEILING_MAX && (elapsed = now_seconds() - start) < BENCH_CEILING_SECONDS) {
		sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
		sqlite3_bind_blob(insert, 1, bench_message, BENCH_MESSAGE_SIZE, SQLITE_STATIC);
		sqlite3_step(insert);
		sqlite3_reset(insert);
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		count++;
	}
	elapsed = now_seconds() - start;
	sqlite3_finalize(insert);
	db_close(&db);
	free(path);
	return count / elapsed;
}

int main(int argc, char **argv)
{
	size_t messages = BENCH_DEFAULT_MESSAGES;
	const char *dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
			messages = (size_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else {
			fprintf(stderr, "usage: bench_lmtp [--messages N] [--dir D]\n");
			return 2;
		}
	}
	if (messages < 16)
		messages = 16;
	ssize_t n = readlink("/proc/self/exe", bench_bin, sizeof(bench_bin) - 1);
	if (n <= 0)
		return 1;
	bench_bin[n] = '\0';
	*strrchr(bench_bin, '/') = '\0';
	if (dir != NULL)
		snprintf(bench_dir, sizeof(bench_dir), "%s", dir);
	else
		snprintf(bench_dir, sizeof(bench_dir), "/tmp/bench_lmtp.%d", (int)getpid());
	char *sock = xasprintf("%s/run/lmtp.sock", bench_dir);
	if (strlen(sock) >= sizeof(bench_socket.sun_path)) {
		fprintf(stderr, "bench_lmtp: socket path too long: %s\n", sock);
		return 1;
	}
	bench_socket.sun_family = AF_UNIX;
	memcpy(bench_socket.sun_path, sock, strlen(sock) + 1);
	free(sock);
	/* A 4 KiB message: header, then 76-column lines, CRLF, exactly the size. */
	size_t pos = (size_t)snprintf(bench_message, sizeof(bench_message),
				      "From: bench@other.test\r\nTo: u@bench.test\r\n"
				      "Subject: bench\r\n\r\n");
	while (pos < BENCH_MESSAGE_SIZE) {
		bench_message[pos] = (pos + 2) % 78 == 0 ? '\r' : (pos + 1) % 78 == 0 ? '\n' : 'x';
		pos++;
	}
	bench_message[BENCH_MESSAGE_SIZE - 2] = '\r';
	bench_message[BENCH_MESSAGE_SIZE - 1] = '\n';
	if (bench_setup() < 0)
		return 1;
	double ceiling = bench_ceiling();
	printf("ceiling: %.0f durable single-row SQLite commits/s (4 KiB rows, WAL, synchronous=FULL)\n",
	       ceiling);
	printf("%zu messages of %d bytes per scenario, data in %s\n\n", messages,
	       BENCH_MESSAGE_SIZE, bench_dir);
	printf("%-9s %8s %8s %12s %9s %9s %10s %7s\n", "mailboxes", "sessions", "delivered",
	       "deliveries/s", "p50 ms", "p99 ms", "peak MiB", "ratio");
	static const int users[] = {1, BENCH_USERS};
	static const int sessions[] = {1, 4, 16};
	for (size_t u = 0; u < 2; u++)
		for (size_t s = 0; s < 3; s++)
			bench_scenario(messages, sessions[s], users[u], ceiling);
	printf("\ntargets: 1 user above the ceiling (ratio > 1), 100 users at least 0.6\n");
	return 0;
}
