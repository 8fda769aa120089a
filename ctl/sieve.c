/* sieve.c: `mailctl sieve`, a user's filter script by hand.
 *
 *   mailctl sieve put USER FILE   check the script, then store it ("-" = stdin)
 *   mailctl sieve get USER        print the stored script
 *   mailctl sieve del USER        remove it
 *   mailctl sieve check FILE      only check a script
 *
 * A script is checked with the same parser the mda runs (common/sieve.c)
 * before it is stored, so a syntax error or an unsupported extension is
 * refused here with its line and column, never discovered at delivery.
 * Scripts live in users.sqlite (users.h). Exit status: 0, 1 on an error,
 * 2 on a usage error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "ctl.h"
#include "sieve.h"
#include "users.h"

struct sieve_ctx {
	const char *datadir;
	userdb *db;
};

typedef int sieve_fn(struct sieve_ctx *ctx, char **args);

/* Reads a script file (or stdin for "-"), bounded by SIEVE_MAX_SCRIPT_SIZE. */
static int sieve_read_file(const char *path, buf_t *out)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "mailctl: cannot read %s: %s\n", path, strerror(errno));
		return -1;
	}
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (out->len + n > SIEVE_MAX_SCRIPT_SIZE) {
			fprintf(stderr, "mailctl: %s: script larger than %d bytes\n", path,
				SIEVE_MAX_SCRIPT_SIZE);
			if (f != stdin)
				fclose(f);
			return -1;
		}
		buf_append(out, chunk, n);
	}
	bool failed = ferror(f) != 0;
	if (f != stdin)
		fclose(f);
	if (failed) {
		fprintf(stderr, "mailctl: cannot read %s\n", path);
		return -1;
	}
	return 0;
}

/* Reads and checks a script; prints "FILE: line L, column C: ..." on error. */
static int sieve_load_checked(const char *path, buf_t *text)
{
	if (sieve_read_file(path, text) < 0)
		return -1;
	struct sieve_script *script = NULL;
	char *err = NULL;
	if (sieve_parse(buf_cstr(text), text->len, &script, &err) < 0) {
		fprintf(stderr, "mailctl: %s: %s\n", path, err);
		free(err);
		return -1;
	}
	sieve_script_free(&script);
	return 0;
}

/* The canonical address of an existing user (caller frees), or NULL. */
static char *sieve_user(struct sieve_ctx *ctx, const char *name)
{
	struct user_info info;
	if (userdb_user_lookup(ctx->db, name, &info) < 0) {
		fprintf(stderr, "mailctl: no such user %s\n", name);
		return NULL;
	}
	char *address = xstrdup(info.address);
	user_info_free(&info);
	return address;
}

/* sieve put USER [FILE]: checks the script, then stores it as the user's. */
static int sieve_put(struct sieve_ctx *ctx, char **args)
{
	buf_t text = BUF_INIT;
	char *user = NULL, *err = NULL;
	int status = 1;
	if (sieve_load_checked(args[1], &text) < 0)
		goto out;
	if ((user = sieve_user(ctx, args[0])) == NULL)
		goto out;
	if (userdb_sieve_put(ctx->db, user, buf_cstr(&text), &err) < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot store the script");
		goto out;
	}
	printf("stored the script of %s (%zu bytes)\n", user, text.len);
	status = 0;
out:
	free(err);
	free(user);
	buf_free(&text);
	return status;
}

/* sieve get USER: prints the user's script. */
static int sieve_get(struct sieve_ctx *ctx, char **args)
{
	char *user = sieve_user(ctx, args[0]);
	if (user == NULL)
		return 1;
	char *script = userdb_sieve_get(ctx->db, user);
	if (script == NULL) {
		fprintf(stderr, "mailctl: %s has no script\n", user);
		free(user);
		return 1;
	}
	fputs(script, stdout);
	free(script);
	free(user);
	return 0;
}

/* sieve del USER: removes the user's script. */
static int sieve_del(struct sieve_ctx *ctx, char **args)
{
	char *user = sieve_user(ctx, args[0]);
	if (user == NULL)
		return 1;
	char *err = NULL;
	int status = 0;
	if (userdb_sieve_del(ctx->db, user, &err) < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot delete the script");
		status = 1;
	} else {
		printf("deleted the script of %s\n", user);
	}
	free(err);
	free(user);
	return status;
}

/* sieve check FILE: parses a script and reports what is wrong, storing nothing. */
static int sieve_check(struct sieve_ctx *ctx, char **args)
{
	buf_t text = BUF_INIT;
	int status = sieve_load_checked(args[0], &text) < 0 ? 1 : 0;
	if (status == 0)
		printf("%s: OK\n", args[0]);
	buf_free(&text);
	return status;
}

static const struct sieve_subcommand {
	const char *name;
	int args;
	bool needs_db;
	const char *usage;
	sieve_fn *handler;
} sieve_subcommands[] = {
	{"put", 2, true, "sieve put USER FILE   check and store a script (FILE - = stdin)", sieve_put},
	{"get", 1, true, "sieve get USER        print the stored script", sieve_get},
	{"del", 1, true, "sieve del USER        remove the script", sieve_del},
	{"check", 1, false, "sieve check FILE      check a script without storing it", sieve_check},
};

static void sieve_usage(FILE *out)
{
	fputs("usage:\n", out);
	for (size_t i = 0; i < sizeof(sieve_subcommands) / sizeof(sieve_subcommands[0]); i++)
		fprintf(out, "  mailctl %s\n", sieve_subcommands[i].usage);
	fprintf(out, "supported extensions: %s\n", sieve_supported_extensions());
}

int cmd_sieve(int argc, char **argv, const char *datadir)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
		sieve_usage(stdout);
		return 0;
	}
	const struct sieve_subcommand *sub = NULL;
	for (size_t i = 0; argc >= 2 && i < sizeof(sieve_subcommands) / sizeof(sieve_subcommands[0]);
	     i++)
		if (strcmp(sieve_subcommands[i].name, argv[1]) == 0)
			sub = &sieve_subcommands[i];
	if (sub == NULL || argc - 2 != sub->args) {
		sieve_usage(stderr);
		return 2;
	}
	struct sieve_ctx ctx = {datadir, NULL};
	if (sub->needs_db) {
		char *err = NULL;
		if (userdb_open(datadir, &ctx.db, &err) < 0) {
			fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot open users.sqlite");
			free(err);
			return 1;
		}
	}
	int status = sub->handler(&ctx, argv + 2);
	userdb_close(&ctx.db);
	return status;
}
