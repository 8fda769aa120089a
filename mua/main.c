/* main.c: the mua's command line.
 *
 *   mua [--dir D | --config F] [--account A] [--verbose] [ADDRESS]
 *   mua [...] send --to A [--cc B] [--bcc C] --subject S [--attach FILE]... < body
 *   mua [...] list [--folder F]
 *   mua [...] read N [--folder F]
 *
 * --dir D builds the demo accounts from a mailstack data directory (what
 * `mailctl mua` passes); otherwise accounts come from --config or
 * ~/.config/mailstack/mua.conf. A bare ADDRESS (or --account) picks the
 * account. Without a subcommand the screen starts. Exit codes: sysexits.h. */
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "log.h"
#include "mua.h"

static const struct {
	const char *name;
	int (*run)(uv_loop_t *loop, struct mua_account *a, int argc, char **argv);
} mua_commands[] = {
	{"send", mua_script_send},
	{"list", mua_script_list},
	{"read", mua_script_read},
};

/* Prints the usage text. */
static void mua_usage(FILE *out)
{
	fputs("usage: mua [--dir D | --config F] [--account A] [--verbose] [--log FILE] [ADDRESS]\n"
	      "       mua [options] send --to A [--cc B] [--bcc C] --subject S [--attach FILE]... "
	      "< body\n"
	      "       mua [options] list [--folder F]\n"
	      "       mua [options] read N [--folder F]\n"
	      "Without a command the full-screen client starts (press ? for keys).\n", out);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *config_file = NULL, *account_key = NULL, *log_file = NULL;
	bool verbose = false;
	int i = 1;
	setlocale(LC_ALL, "");
	signal(SIGPIPE, SIG_IGN);
	for (; i < argc; i++) {
		const char *opt = argv[i];
		bool has_value = i + 1 < argc;
		if (strcmp(opt, "--dir") == 0 && has_value) {
			dir = argv[++i];
		} else if (strcmp(opt, "--config") == 0 && has_value) {
			config_file = argv[++i];
		} else if (strcmp(opt, "--account") == 0 && has_value) {
			account_key = argv[++i];
		} else if (strcmp(opt, "--log") == 0 && has_value) {
			log_file = argv[++i];
		} else if (strcmp(opt, "--verbose") == 0 || strcmp(opt, "-v") == 0) {
			verbose = true;
		} else if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
			mua_usage(stdout);
			return EX_OK;
		} else if (opt[0] == '-') {
			fprintf(stderr, "mua: unknown option %s\n", opt);
			mua_usage(stderr);
			return EX_USAGE;
		} else {
			break;
		}
	}
	int cmd = -1;
	if (i < argc) {
		for (size_t k = 0; k < sizeof(mua_commands) / sizeof(mua_commands[0]); k++)
			if (strcmp(argv[i], mua_commands[k].name) == 0)
				cmd = (int)k;
		if (cmd < 0) {
			if (strchr(argv[i], '@') == NULL || i + 1 != argc) {
				fprintf(stderr, "mua: unknown command %s\n", argv[i]);
				mua_usage(stderr);
				return EX_USAGE;
			}
			account_key = argv[i];
		}
	}
	char *err = NULL;
	/* Logs never go to the terminal the screen owns. */
	if (log_init("mua", log_file != NULL ? log_file : "/dev/null",
		     log_file != NULL ? LOG_DEBUG : LOG_ERROR, &err) < 0) {
		fprintf(stderr, "mua: %s\n", err);
		free(err);
		return EX_CANTCREAT;
	}
	struct mua_accounts accounts = {0};
	int rc;
	if (dir != NULL) {
		rc = mua_accounts_demo(dir, &accounts, &err);
	} else {
		char *path = config_file != NULL ? xstrdup(config_file) : mua_default_config_path();
		rc = mua_accounts_load(path, &accounts, &err);
		free(path);
	}
	if (rc < 0) {
		fprintf(stderr, "mua: %s\n", err);
		free(err);
		mua_accounts_free(&accounts);
		log_close();
		return EX_CONFIG;
	}
	struct mua_account *account = mua_accounts_find(&accounts, account_key);
	if (account == NULL) {
		fprintf(stderr, "mua: no account %s\n", account_key);
		mua_accounts_free(&accounts);
		log_close();
		return EX_CONFIG;
	}
	uv_loop_t loop;
	uv_loop_init(&loop);
	if (cmd >= 0) {
		mua_transcript_echo(verbose);
		rc = mua_commands[cmd].run(&loop, account, argc - i, argv + i);
	} else {
		rc = mua_ui_run(&loop, &accounts, account);
	}
	/* Let every close callback run before the loop goes. */
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		log_warn(0, "mua: loop still had handles at exit");
	mua_accounts_free(&accounts);
	mua_transcript_free();
	log_close();
	return rc;
}
