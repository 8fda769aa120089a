/* config.c: `mailctl config` and loading the config for every subcommand.
 *
 *   mailctl config            prints the effective config (INI, with help)
 *   mailctl config check      loads it, then the TLS certificate and key;
 *                             reports each problem as file:line or file
 *   mailctl config reference  every key with its default (Markdown, README)
 *
 * Loading goes through ctl_load_config, which first checks the data directory
 * itself so that a missing or unreadable directory gets its own message
 * instead of a puzzling one about the config file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "ctl.h"
#include "tls.h"

int ctl_load_config(const char *datadir, config **cfg_r)
{
	struct stat st;
	if (stat(datadir, &st) < 0) {
		if (errno == ENOENT)
			fprintf(stderr,
				"mailctl: data directory %s does not exist "
				"(create it with 'mailctl init --dir %s')\n",
				datadir, datadir);
		else
			fprintf(stderr, "mailctl: cannot read data directory %s: %s\n", datadir,
				strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "mailctl: %s is not a directory\n", datadir);
		return -1;
	}
	if (access(datadir, R_OK | X_OK) < 0) {
		fprintf(stderr, "mailctl: cannot read data directory %s: %s\n", datadir,
			strerror(errno));
		return -1;
	}
	char *path = xasprintf("%s/mailstack.conf", datadir);
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		fprintf(stderr, "mailctl: %s does not exist (create it with 'mailctl init --dir %s')\n",
			path, datadir);
		free(path);
		return -1;
	}
	char *err = NULL;
	int ret = config_load(path, false, cfg_r, &err);
	if (ret < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : path);
		free(err);
	} else {
		config_set_datadir(*cfg_r, datadir);
	}
	free(path);
	return ret;
}

void ctl_match_owner(const char *datadir, const char *path)
{
	struct stat dir_st, st;
	if (geteuid() != 0 || stat(datadir, &dir_st) < 0 || lstat(path, &st) < 0)
		return;
	if ((st.st_uid != dir_st.st_uid || st.st_gid != dir_st.st_gid) &&
	    lchown(path, dir_st.st_uid, dir_st.st_gid) < 0)
		fprintf(stderr, "mailctl: cannot give %s to the owner of %s: %s\n", path, datadir,
			strerror(errno));
}

/* Checks that the certificate and key the config names load together;
 * prints the problem (naming the file) and returns the number found. */
static int config_check_tls(const config *cfg)
{
	char *cert = config_path_in_datadir(cfg, "server.tls_cert");
	char *key = config_path_in_datadir(cfg, "server.tls_key");
	char *err = NULL;
	tls_ctx *ctx = tls_ctx_server_new(cert, key, &err);
	int problems = ctx == NULL ? 1 : 0;
	if (ctx == NULL)
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : cert);
	tls_ctx_free(&ctx);
	free(err);
	free(cert);
	free(key);
	return problems;
}

/* config check: validates the file and what it points at. */
static int config_check(const char *datadir)
{
	config *cfg = NULL;
	if (ctl_load_config(datadir, &cfg) < 0)
		return 1;
	int problems = config_check_tls(cfg);
	if (problems == 0)
		printf("%s: ok\n", config_path(cfg));
	config_free(&cfg);
	return problems == 0 ? 0 : 1;
}

int cmd_config(int argc, char **argv, const char *datadir)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		puts("usage: mailctl config [check|reference]\n"
		     "  (no argument)  print the effective config of the data directory\n"
		     "  check          validate the config and the TLS files; exit 1 on errors\n"
		     "  reference      every key with its default, as a Markdown table");
		return 0;
	}
	if (argc > 2) {
		fputs("mailctl: usage: mailctl config [check|reference]\n", stderr);
		return 1;
	}
	if (argc == 2 && strcmp(argv[1], "check") == 0)
		return config_check(datadir);
	if (argc == 2 && strcmp(argv[1], "reference") == 0) {
		config_print_reference(stdout);
		return 0;
	}
	if (argc == 2) {
		fprintf(stderr, "mailctl: unknown config command '%s' (check, reference)\n", argv[1]);
		return 1;
	}
	config *cfg = NULL;
	if (ctl_load_config(datadir, &cfg) < 0)
		return 1;
	config_print(cfg, stdout);
	config_free(&cfg);
	return 0;
}
