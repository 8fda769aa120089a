/* lab.c: `mailctl lab net up|down|status`, two mail hosts on one machine for
 * the two-host lab (labs/05-two-hosts.md). Root only.
 *
 * Two network namespaces joined by a veth pair, each a host with its own
 * address, data directory, domain and mailstack:
 *
 *   host    namespace   address        data directory     domain       user
 *   school  ms-school   10.77.0.1/24   DATADIR/lab/school  school.test  alice
 *   home    ms-home     10.77.0.2/24   DATADIR/lab/home    home.test    bob
 *
 * Routing is DNS-free: each host's [routes] sends the other domain to the
 * other host's SMTP port. The passwords are generated once and kept in
 * lab-credentials in each host's data directory (0600).
 *
 * States of the lab, as `status` reports them:
 *   DOWN  --up: namespaces, veth, addresses, data dirs, `mailctl up`--> UP
 *   UP    --down: stop both stacks, delete the namespaces--> DOWN
 * `up` is idempotent: it skips what already exists, so it also repairs a
 * half-built lab; `down` keeps the data directories. Every command run is
 * printed first ("+ ip netns add ms-school"), so students see how it is
 * built. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "ctl.h"
#include "password.h"

#define LAB_PORT_BASE 10000
#define LAB_SMTP_PORT (LAB_PORT_BASE + 25)
#define LAB_PASSWORD_LEN 16
#define LAB_START_TIMEOUT_MS 60000
#define LAB_STOP_TIMEOUT_MS 20000
#define LAB_POLL_MS 250
#define LAB_MAX_ARGS 16

struct lab_host {
	const char *name;
	const char *netns;
	const char *veth;
	const char *address;    /* without the prefix length */
	const char *domain;
	const char *user;       /* local part of the host's one user */
	int peer;               /* index of the other host */
};

static const struct lab_host lab_hosts[] = {
	{"school", "ms-school", "ms-school0", "10.77.0.1", "school.test", "alice", 1},
	{"home", "ms-home", "ms-home0", "10.77.0.2", "home.test", "bob", 0},
};
#define LAB_HOST_COUNT (sizeof(lab_hosts) / sizeof(lab_hosts[0]))

/* Runs argv (NULL-terminated) and waits; prints it first unless quiet.
 * Returns the exit status, or -1 when it could not run. input, when not
 * NULL, is written to its standard input. */
static int lab_run(bool quiet, const char *input, const char *const *argv)
{
	if (!quiet) {
		buf_t line = BUF_INIT;
		buf_append_str(&line, "+");
		for (size_t i = 0; argv[i] != NULL; i++)
			buf_printf(&line, " %s", argv[i]);
		puts(buf_cstr(&line));
		buf_free(&line);
		fflush(stdout);
	}
	int fds[2] = {-1, -1};
	if (input != NULL && pipe(fds) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		if (input != NULL) {
			close(fds[0]);
			close(fds[1]);
		}
		return -1;
	}
	if (pid == 0) {
		if (input != NULL) {
			dup2(fds[0], STDIN_FILENO);
			close(fds[0]);
			close(fds[1]);
		}
		if (quiet) {
			int null = open("/dev/null", O_WRONLY);
			if (null >= 0) {
				dup2(null, STDOUT_FILENO);
				dup2(null, STDERR_FILENO);
			}
		}
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "mailctl: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (input != NULL) {
		close(fds[0]);
		size_t len = strlen(input);
		if (write(fds[1], input, len) != (ssize_t)len)
			fprintf(stderr, "mailctl: cannot write to %s\n", argv[0]);
		close(fds[1]);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a command that must succeed; prints why not. */
static int lab_must(const char *const *argv)
{
	int rc = lab_run(false, NULL, argv);
	if (rc != 0) {
		fprintf(stderr, "mailctl: lab net: '%s' failed (exit status %d)\n", argv[0], rc);
		return -1;
	}
	return 0;
}

/* True when the host's network namespace exists. */
static bool lab_netns_exists(const struct lab_host *h)
{
	char *path = xasprintf("/run/netns/%s", h->netns);
	bool exists = access(path, F_OK) == 0;
	free(path);
	return exists;
}

/* The host's data directory under DATADIR/lab (caller frees). */
static char *lab_host_dir(const char *datadir, const struct lab_host *h)
{
	return xasprintf("%s/lab/%s", datadir, h->name);
}

/* True when the host's four daemons run (its `mailctl status` says so). */
static bool lab_stack_runs(const char *datadir, const struct lab_host *h)
{
	char *dir = lab_host_dir(datadir, h);
	char *mailctl = ctl_bin_path("mailctl");
	const char *argv[] = {"ip", "netns", "exec", h->netns, mailctl, "--dir", dir, "status", NULL};
	bool runs = lab_netns_exists(h) && lab_run(true, NULL, argv) == 0;
	free(mailctl);
	free(dir);
	return runs;
}

/* Namespaces, the veth pair between them, addresses, loopback. */
static int lab_network_up(void)
{
	for (size_t i = 0; i < LAB_HOST_COUNT; i++) {
		if (lab_netns_exists(&lab_hosts[i]))
			continue;
		const char *add[] = {"ip", "netns", "add", lab_hosts[i].netns, NULL};
		if (lab_must(add) < 0)
			return -1;
	}
	const struct lab_host *a = &lab_hosts[0], *b = &lab_hosts[1];
	const char *probe[] = {"ip", "-n", a->netns, "link", "show", a->veth, NULL};
	if (lab_run(true, NULL, probe) != 0) {
		/* Made in the root namespace, then each end moved into its host. */
		const char *veth[] = {"ip", "link", "add", a->veth, "type", "veth", "peer",
				      "name", b->veth, NULL};
		const char *move_a[] = {"ip", "link", "set", a->veth, "netns", a->netns, NULL};
		const char *move_b[] = {"ip", "link", "set", b->veth, "netns", b->netns, NULL};
		if (lab_must(veth) < 0 || lab_must(move_a) < 0 || lab_must(move_b) < 0)
			return -1;
	}
	for (size_t i = 0; i < LAB_HOST_COUNT; i++) {
		const struct lab_host *h = &lab_hosts[i];
		char *cidr = xasprintf("%s/24", h->address);
		const char *has[] = {"sh", "-c", "ip -n \"$0\" -o addr show dev \"$1\" | grep -q \"inet $2 \"",
				     h->netns, h->veth, cidr, NULL};
		const char *addr[] = {"ip", "-n", h->netns, "addr", "add", cidr, "dev", h->veth, NULL};
		const char *up[] = {"ip", "-n", h->netns, "link", "set", h->veth, "up", NULL};
		const char *lo[] = {"ip", "-n", h->netns, "link", "set", "lo", "up", NULL};
		int rc = lab_run(true, NULL, has) == 0 ? 0 : lab_must(addr);
		if (rc == 0)
			rc = lab_must(up);
		if (rc == 0)
			rc = lab_must(lo);
		free(cidr);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* Makes a host's data directory (once): init, its config, its user. */
static int lab_host_init(const char *datadir, const struct lab_host *h)
{
	char *dir = lab_host_dir(datadir, h);
	char *conf = xasprintf("%s/mailstack.conf", dir);
	int rc = 0;
	if (access(conf, F_OK) == 0)
		goto out;
	char *lab_dir = xasprintf("%s/lab", datadir);
	if (mkdir(lab_dir, 0755) == 0)
		ctl_match_owner(datadir, lab_dir);
	free(lab_dir);
	char *mailctl = ctl_bin_path("mailctl");
	char *hostname = xasprintf("mail.%s", h->domain);
	char port_base[16];
	snprintf(port_base, sizeof(port_base), "%d", LAB_PORT_BASE);
	const char *init[] = {mailctl, "init", "--dir", dir, "--domain", h->domain, "--port-base",
			      port_base, "--hostname", hostname, NULL};
	rc = lab_must(init);
	const struct lab_host *peer = &lab_hosts[h->peer];
	if (rc == 0) {
		FILE *f = fopen(conf, "a");
		if (f == NULL) {
			fprintf(stderr, "mailctl: cannot write %s: %s\n", conf, strerror(errno));
			rc = -1;
		} else {
			fprintf(f,
				"\n# mailctl lab net: this host listens on loopback and on its lab\n"
				"# address, and sends %s straight to the other host (no DNS).\n"
				"[server]\nlisten = 127.0.0.1, %s\n"
				"[routes]\n%s = %s:%d\n",
				peer->domain, h->address, peer->domain, peer->address, LAB_SMTP_PORT);
			if (fclose(f) != 0)
				rc = -1;
			printf("+ (appended listen and [routes] %s = %s:%d to %s)\n", peer->domain,
			       peer->address, LAB_SMTP_PORT, conf);
		}
	}
	if (rc == 0) {
		char *address = xasprintf("%s@%s", h->user, h->domain);
		char *password = password_generate(LAB_PASSWORD_LEN);
		char *input = xasprintf("%s\n", password);
		const char *add[] = {mailctl, "--dir", dir, "user", "add", address, NULL};
		rc = lab_run(false, input, add) == 0 ? 0 : -1;
		if (rc == 0) {
			char *path = xasprintf("%s/lab-credentials", dir);
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			char *line = xasprintf("%s %s\n", address, password);
			if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
				fprintf(stderr, "mailctl: cannot write %s\n", path);
				rc = -1;
			}
			if (fd >= 0)
				close(fd);
			ctl_match_owner(dir, path);
			free(line);
			free(path);
		}
		free(input);
		free(password);
		free(address);
	}
	free(hostname);
	free(mailctl);
out:
	free(conf);
	free(dir);
	return rc;
}

/* Starts `mailctl up` for a host inside its namespace, in the background,
 * and waits until its status says all four daemons run. */
static int lab_host_start(const char *datadir, const struct lab_host *h)
{
	if (lab_stack_runs(datadir, h))
		return 0;
	char *dir = lab_host_dir(datadir, h);
	char *mailctl = ctl_bin_path("mailctl");
	char *log_dir = xasprintf("%s/log", dir);
	if (mkdir(log_dir, 0755) == 0)
		ctl_match_owner(dir, log_dir);
	char *log_path = xasprintf("%s/up.log", log_dir);
	printf("+ ip netns exec %s %s --dir %s up > %s 2>&1 &\n", h->netns, mailctl, dir, log_path);
	fflush(stdout);
	const char *argv[] = {"ip", "netns", "exec", h->netns, mailctl, "--dir", dir, "up", NULL};
	pid_t pid = ctl_spawn_logged(log_path, argv);
	int rc = pid < 0 ? -1 : 1;
	for (long waited = 0; rc == 1 && waited < LAB_START_TIMEOUT_MS; waited += LAB_POLL_MS) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "mailctl: lab net: the %s stack stopped; see %s\n", h->name,
				log_path);
			rc = -1;
		} else if (lab_stack_runs(datadir, h)) {
			rc = 0;
		} else {
			ctl_sleep_ms(LAB_POLL_MS);
		}
	}
	if (rc == 1) {
		fprintf(stderr, "mailctl: lab net: the %s stack did not start within %d s; see %s\n",
			h->name, LAB_START_TIMEOUT_MS / 1000, log_path);
		rc = -1;
	}
	free(log_path);
	free(log_dir);
	free(mailctl);
	free(dir);
	return rc;
}

/* Stops a host's `mailctl up` (its pid file) and waits until it is gone. */
static void lab_host_stop(const char *datadir, const struct lab_host *h)
{
	char *path = xasprintf("%s/lab/%s/run/mailctl.pid", datadir, h->name);
	FILE *f = fopen(path, "r");
	int pid = 0;
	if (f != NULL) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	free(path);
	if (pid <= 0 || kill(pid, 0) < 0)
		return;
	printf("+ kill %d   (mailctl up of %s)\n", pid, h->name);
	kill(pid, SIGTERM);
	for (long waited = 0; waited < LAB_STOP_TIMEOUT_MS; waited += LAB_POLL_MS) {
		if (kill(pid, 0) < 0)
			return;
		ctl_sleep_ms(LAB_POLL_MS);
	}
	fprintf(stderr, "mailctl: lab net: mailctl up of %s (pid %d) did not stop\n", h->name, pid);
}

/* lab net up: the network, then each host configured and started. */
static int lab_net_up(const char *datadir)
{
	if (lab_network_up() < 0)
		return 1;
	for (size_t i = 0; i < LAB_HOST_COUNT; i++) {
		if (lab_host_init(datadir, &lab_hosts[i]) < 0)
			return 1;
	}
	for (size_t i = 0; i < LAB_HOST_COUNT; i++) {
		if (lab_host_start(datadir, &lab_hosts[i]) < 0)
			return 1;
	}
	printf("lab net is up:\n");
	for (size_t i = 0; i < LAB_HOST_COUNT; i++) {
		const struct lab_host *h = &lab_hosts[i];
		printf("  %-6s %s in namespace %s, %s@%s, data %s/lab/%s\n", h->name, h->address,
		       h->netns, h->user, h->domain, datadir, h->name);
	}
	return 0;
}

/* lab net down: stops the hosts, then removes the network. */
static int lab_net_down(const char *datadir)
{
	for (size_t i = 0; i < LAB_HOST_COUNT; i++)
		lab_host_stop(datadir, &lab_hosts[i]);
	int rc = 0;
	for (size_t i = 0; i < LAB_HOST_COUNT; i++) {
		if (!lab_netns_exists(&lab_hosts[i]))
			continue;
		const char *del[] = {"ip", "netns", "del", lab_hosts[i].netns, NULL};
		if (lab_must(del) < 0)
			rc = 1;
	}
	if (rc == 0)
		printf("lab net is down (the data directories under %s/lab are kept)\n", datadir);
	return rc;
}

/* lab net status: which hosts run. */
static int lab_net_status(const char *datadir)
{
	int running = 0;
	for (size_t i = 0; i < LAB_HOST_COUNT; i++) {
		const struct lab_host *h = &lab_hosts[i];
		char *dir = lab_host_dir(datadir, h);
		bool ns = lab_netns_exists(h);
		printf("== %s: %s@%s, %s/24 in namespace %s (%s)\n", h->name, h->user, h->domain,
		       h->address, h->netns, ns ? "present" : "absent");
		if (ns) {
			char *mailctl = ctl_bin_path("mailctl");
			const char *argv[] = {"ip", "netns", "exec", h->netns, mailctl, "--dir", dir,
					      "status", NULL};
			if (lab_run(true, NULL, argv) == 0 && lab_run(false, NULL, argv) == 0)
				running++;
			free(mailctl);
		}
		free(dir);
	}
	printf("lab net: %d of %zu hosts running\n", running, LAB_HOST_COUNT);
	return running == (int)LAB_HOST_COUNT ? 0 : 3;
}

static void lab_usage(FILE *out)
{
	fputs("usage: mailctl lab net up|down|status   (root only)\n"
	      "  two hosts in network namespaces joined by a veth pair:\n"
	      "    school  ms-school  10.77.0.1  alice@school.test  DATADIR/lab/school\n"
	      "    home    ms-home    10.77.0.2  bob@home.test      DATADIR/lab/home\n"
	      "  each with its own mailstack, routing the other domain to the other host.\n"
	      "  Passwords: DATADIR/lab/HOST/lab-credentials. See labs/05-two-hosts.md.\n",
	      out);
}

int cmd_lab(int argc, char **argv, const char *datadir)
{
	static const struct {
		const char *name;
		int (*run)(const char *datadir);
	} actions[] = {{"up", lab_net_up}, {"down", lab_net_down}, {"status", lab_net_status}};
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
		lab_usage(stdout);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "net") != 0) {
		lab_usage(stderr);
		return 1;
	}
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
		if (strcmp(argv[2], actions[i].name) != 0)
			continue;
		if (geteuid() != 0) {
			fputs("mailctl: lab net needs root: it creates network namespaces "
			      "(run it with sudo)\n",
			      stderr);
			return 1;
		}
		setvbuf(stdout, NULL, _IOLBF, 0);
		return actions[i].run(datadir);
	}
	lab_usage(stderr);
	return 1;
}
