/* users.c: `mailctl user` and `mailctl alias`, the user directory by hand.
 *
 *   mailctl user add ADDRESS         asks for a password, creates the mailbox
 *   mailctl user del ADDRESS [--purge]  removes the user (--purge: the mailbox too)
 *   mailctl user passwd ADDRESS      sets a new password
 *   mailctl user list                address, quota and usage of every user
 *   mailctl user quota ADDRESS BYTES [MESSAGES]   0 = unlimited; K/M/G suffixes
 *   mailctl alias add ALIAS TARGET | del ALIAS [TARGET] | list
 *
 * A password comes from a prompt without echo, asked twice, when standard
 * input is a terminal; otherwise it is the first line of standard input (so
 * scripts and tests can pipe it). Every change goes through users.h and
 * store.h: mailctl runs no SQL of its own. Each subcommand is a row in a
 * table with its argument counts, so the checks and the usage live in one
 * place. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "ctl.h"
#include "store.h"
#include "users.h"

/* Longest password accepted from a prompt or standard input. */
#define USERS_PASSWORD_MAX 1024

struct users_ctx {
	const char *datadir;
	config *cfg;
	userdb *db;
};

typedef int users_fn(struct users_ctx *ctx, int argc, char **argv);

struct users_subcommand {
	const char *name;
	int min_args; /* arguments after the subcommand's name */
	int max_args;
	const char *usage;
	users_fn *handler;
};

/* Reads one line from fd into out (without its line end); -1 on EOF before
 * anything was read, -2 when longer than USERS_PASSWORD_MAX. */
static int users_read_line(int fd, buf_t *out)
{
	bool any = false;
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return any ? 0 : -1;
		any = true;
		if (c == '\n')
			break;
		if (out->len >= USERS_PASSWORD_MAX)
			return -2;
		buf_append_char(out, c);
	}
	if (out->len > 0 && out->data[out->len - 1] == '\r')
		out->data[--out->len] = '\0';
	return 0;
}

/* Prompts on the terminal with echo off and reads one line. */
static int users_prompt_noecho(const char *prompt, buf_t *out)
{
	struct termios old, quiet;
	/* Echo goes off before the prompt shows, so nothing typed after it
	 * is ever echoed; TCSANOW keeps what was typed ahead. */
	bool have_termios = tcgetattr(STDIN_FILENO, &old) == 0;
	if (have_termios) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
	}
	fputs(prompt, stderr);
	fflush(stderr);
	int ret = users_read_line(STDIN_FILENO, out);
	if (have_termios)
		tcsetattr(STDIN_FILENO, TCSANOW, &old);
	return ret;
}

/* Gets a new password for address: asked twice on a terminal, else one line
 * of standard input. Returns it (caller frees) or NULL after printing why. */
static char *users_read_password(const char *address)
{
	buf_t first = BUF_INIT, second = BUF_INIT;
	char *password = NULL;
	int ret;
	if (isatty(STDIN_FILENO)) {
		char *prompt = xasprintf("Password for %s: ", address);
		ret = users_prompt_noecho(prompt, &first);
		free(prompt);
		if (ret == 0)
			ret = users_prompt_noecho("Repeat the password: ", &second);
		if (ret == 0 && strcmp(buf_cstr(&first), buf_cstr(&second)) != 0) {
			fputs("mailctl: the passwords do not match\n", stderr);
			goto out;
		}
	} else {
		ret = users_read_line(STDIN_FILENO, &first);
	}
	if (ret == -1) {
		fputs("mailctl: no password given (standard input ended)\n", stderr);
	} else if (ret == -2) {
		fprintf(stderr, "mailctl: the password is longer than %d characters\n",
			USERS_PASSWORD_MAX);
	} else if (first.len == 0) {
		fputs("mailctl: the password is empty\n", stderr);
	} else if (memchr(first.data, '\0', first.len) != NULL) {
		fputs("mailctl: the password contains a NUL character\n", stderr);
	} else {
		password = buf_steal(&first);
	}
out:
	/* Wipe the copies: they held the secret. */
	if (first.data != NULL)
		explicit_bzero(first.data, first.cap);
	if (second.data != NULL)
		explicit_bzero(second.data, second.cap);
	buf_free(&first);
	buf_free(&second);
	return password;
}

/* Frees a password after wiping it. */
static void users_password_free(char **password)
{
	if (*password != NULL) {
		explicit_bzero(*password, strlen(*password));
		free(*password);
		*password = NULL;
	}
}

/* Checks the shape "local@domain"; prints why not. */
static bool users_address_valid(const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL || at == address || at[1] == '\0' || strchr(at + 1, '.') == NULL ||
	    strpbrk(address, " \t\r\n<>,;\"") != NULL) {
		fprintf(stderr, "mailctl: '%s' is not an address of the form user@domain\n",
			address);
		return false;
	}
	return true;
}

/* Looks up a user; prints "no such user" when unknown. */
static int users_lookup(struct users_ctx *ctx, const char *address, struct user_info *info_r)
{
	if (userdb_user_lookup(ctx->db, address, info_r) < 0) {
		fprintf(stderr, "mailctl: no such user %s\n", address);
		return -1;
	}
	return 0;
}

/* Parses a size or count: digits with an optional K, M or G (powers of 1024),
 * or "none"/"unlimited" for 0. */
static int users_parse_amount(const char *text, int64_t *value_r)
{
	if (strcmp(text, "none") == 0 || strcmp(text, "unlimited") == 0) {
		*value_r = 0;
		return 0;
	}
	char *end = NULL;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || v < 0)
		return -1;
	long long scale = 1;
	if (*end == 'K' || *end == 'k')
		scale = 1024;
	else if (*end == 'M' || *end == 'm')
		scale = 1024 * 1024;
	else if (*end == 'G' || *end == 'g')
		scale = 1024 * 1024 * 1024;
	if (scale != 1)
		end++;
	if (*end != '\0' || v > INT64_MAX / scale)
		return -1;
	*value_r = (int64_t)(v * scale);
	return 0;
}

/* Opens (creating when missing) a user's mailbox and its default folders;
 * new files get the data directory's owner (see ctl_match_owner). */
static int users_mailbox_open(struct users_ctx *ctx, const char *address, store **st_r)
{
	char *err = NULL;
	if (store_open(ctx->datadir, address, st_r, &err) < 0) {
		fprintf(stderr, "mailctl: mailbox of %s: %s\n", address,
			err != NULL ? err : "cannot open");
		free(err);
		return -1;
	}
	char *mail = xasprintf("%s/mail", ctx->datadir);
	char *domain_dir = xstrdup(store_db_path(*st_r));
	char *slash = strrchr(domain_dir, '/');
	if (slash != NULL)
		*slash = '\0';
	const char *paths[] = {mail, domain_dir, store_db_path(*st_r), store_notify_path(*st_r)};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		ctl_match_owner(ctx->datadir, paths[i]);
	free(domain_dir);
	free(mail);
	return 0;
}

/* user add ADDRESS */
static int user_add(struct users_ctx *ctx, int argc, char **argv)
{
	const char *address = argv[1];
	struct user_info info;
	if (!users_address_valid(address))
		return 1;
	if (userdb_user_lookup(ctx->db, address, &info) == 0) {
		fprintf(stderr, "mailctl: user %s already exists\n", info.address);
		user_info_free(&info);
		return 1;
	}
	char *password = users_read_password(address);
	if (password == NULL)
		return 1;
	char *err = NULL;
	int ret = userdb_user_add(ctx->db, address, password, &err);
	users_password_free(&password);
	if (ret < 0) {
		fprintf(stderr, "mailctl: cannot add %s: %s\n", address, err != NULL ? err : "failed");
		free(err);
		return 1;
	}
	if (userdb_user_lookup(ctx->db, address, &info) < 0) {
		fprintf(stderr, "mailctl: %s was added but cannot be found\n", address);
		return 1;
	}
	int64_t quota_bytes = config_int(ctx->cfg, "mda.default_quota_bytes");
	int64_t quota_messages = config_int(ctx->cfg, "mda.default_quota_messages");
	if ((quota_bytes != 0 || quota_messages != 0) &&
	    userdb_user_set_quota(ctx->db, info.address, quota_bytes, quota_messages, &err) < 0) {
		fprintf(stderr, "mailctl: quota of %s: %s\n", info.address, err != NULL ? err : "");
		free(err);
		ret = -1;
	}
	store *st = NULL;
	if (ret == 0)
		ret = users_mailbox_open(ctx, info.address, &st);
	if (ret == 0) {
		printf("added %s (mailbox %s)\n", info.address, store_db_path(st));
	} else if (userdb_user_del(ctx->db, info.address, &err) == 0) {
		/* An account that cannot have a mailbox is not kept. */
		fprintf(stderr, "mailctl: %s was not added\n", info.address);
	} else {
		fprintf(stderr, "mailctl: cannot remove the half-made %s: %s\n", info.address,
			err != NULL ? err : "failed");
		free(err);
	}
	store_close(&st);
	user_info_free(&info);
	return ret == 0 ? 0 : 1;
}

/* user del ADDRESS [--purge] */
static int user_del(struct users_ctx *ctx, int argc, char **argv)
{
	bool purge = argc == 3 && strcmp(argv[2], "--purge") == 0;
	if (argc == 3 && !purge) {
		fprintf(stderr, "mailctl: user del: unknown argument '%s'\n", argv[2]);
		return 1;
	}
	struct user_info info;
	if (users_lookup(ctx, argv[1], &info) < 0)
		return 1;
	char *mailbox = store_mailbox_file(ctx->datadir, info.address, ".sqlite");
	char *err = NULL;
	int ret = userdb_user_del(ctx->db, info.address, &err);
	if (ret < 0) {
		fprintf(stderr, "mailctl: cannot delete %s: %s\n", info.address,
			err != NULL ? err : "failed");
		free(err);
	} else if (purge) {
		/* Every file store_open and the mda's vacation record make. */
		static const char *const suffixes[] = {".sqlite",	  ".sqlite-wal", ".sqlite-shm",
							".sqlite-journal", ".notify",     ".vacation"};
		for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
			char *path = store_mailbox_file(ctx->datadir, info.address, suffixes[i]);
			if (path == NULL)
				break;
			if (unlink(path) < 0 && errno != ENOENT)
				fprintf(stderr, "mailctl: cannot remove %s: %s\n", path,
					strerror(errno));
			free(path);
		}
		printf("deleted %s and its mailbox\n", info.address);
	} else if (mailbox != NULL && access(mailbox, F_OK) == 0) {
		printf("deleted %s (mailbox kept at %s)\n", info.address, mailbox);
	} else {
		printf("deleted %s\n", info.address);
	}
	free(mailbox);
	user_info_free(&info);
	return ret == 0 ? 0 : 1;
}

/* user passwd ADDRESS */
static int user_passwd(struct users_ctx *ctx, int argc, char **argv)
{
	struct user_info info;
	if (users_lookup(ctx, argv[1], &info) < 0)
		return 1;
	char *password = users_read_password(info.address);
	int ret = 1;
	if (password != NULL) {
		char *err = NULL;
		if (userdb_user_passwd(ctx->db, info.address, password, &err) < 0) {
			fprintf(stderr, "mailctl: cannot change the password of %s: %s\n",
				info.address, err != NULL ? err : "failed");
			free(err);
		} else {
			printf("changed the password of %s\n", info.address);
			ret = 0;
		}
		users_password_free(&password);
	}
	user_info_free(&info);
	return ret;
}

/* A quota for display: "unlimited" or the number. */
static void users_format_limit(char *out, size_t cap, int64_t value)
{
	if (value == 0)
		snprintf(out, cap, "unlimited");
	else
		snprintf(out, cap, "%lld", (long long)value);
}

/* user list */
static int user_list(struct users_ctx *ctx, int argc, char **argv)
{
	struct user_info *list = NULL;
	size_t count = userdb_user_list(ctx->db, &list);
	printf("%-32s %12s %12s %12s %10s\n", "ADDRESS", "QUOTA-BYTES", "QUOTA-MSGS", "USED-BYTES",
	       "USED-MSGS");
	int ret = 0;
	for (size_t i = 0; i < count; i++) {
		char qb[32], qm[32], ub[32] = "?", um[32] = "?";
		users_format_limit(qb, sizeof(qb), list[i].quota_bytes);
		users_format_limit(qm, sizeof(qm), list[i].quota_messages);
		store *st = NULL;
		if (users_mailbox_open(ctx, list[i].address, &st) == 0) {
			uint64_t bytes = 0, messages = 0;
			if (store_usage(st, &bytes, &messages) == 0) {
				snprintf(ub, sizeof(ub), "%llu", (unsigned long long)bytes);
				snprintf(um, sizeof(um), "%llu", (unsigned long long)messages);
			}
			store_close(&st);
		} else {
			ret = 1;
		}
		printf("%-32s %12s %12s %12s %10s\n", list[i].address, qb, qm, ub, um);
		user_info_free(&list[i]);
	}
	free(list);
	return ret;
}

/* user quota ADDRESS BYTES [MESSAGES] */
static int user_quota(struct users_ctx *ctx, int argc, char **argv)
{
	struct user_info info;
	if (users_lookup(ctx, argv[1], &info) < 0)
		return 1;
	int64_t bytes = 0, messages = info.quota_messages;
	int ret = 1;
	if (users_parse_amount(argv[2], &bytes) < 0) {
		fprintf(stderr, "mailctl: bad quota '%s' (bytes, e.g. 100M; 0 = unlimited)\n",
			argv[2]);
	} else if (argc == 4 && users_parse_amount(argv[3], &messages) < 0) {
		fprintf(stderr, "mailctl: bad message quota '%s' (a count; 0 = unlimited)\n",
			argv[3]);
	} else {
		char *err = NULL;
		if (userdb_user_set_quota(ctx->db, info.address, bytes, messages, &err) < 0) {
			fprintf(stderr, "mailctl: quota of %s: %s\n", info.address,
				err != NULL ? err : "failed");
			free(err);
		} else {
			char qb[32], qm[32];
			users_format_limit(qb, sizeof(qb), bytes);
			users_format_limit(qm, sizeof(qm), messages);
			printf("quota of %s: %s bytes, %s messages\n", info.address, qb, qm);
			ret = 0;
		}
	}
	user_info_free(&info);
	return ret;
}

/* alias add ALIAS TARGET */
static int alias_add(struct users_ctx *ctx, int argc, char **argv)
{
	if (!users_address_valid(argv[1]) || !users_address_valid(argv[2]))
		return 1;
	char *err = NULL;
	if (userdb_alias_add(ctx->db, argv[1], argv[2], &err) < 0) {
		fprintf(stderr, "mailctl: cannot add alias %s: %s\n", argv[1],
			err != NULL ? err : "failed");
		free(err);
		return 1;
	}
	printf("added alias %s -> %s\n", argv[1], argv[2]);
	return 0;
}

/* True when alias (and target, if given) is in the alias list. */
static bool alias_exists(struct users_ctx *ctx, const char *alias, const char *target)
{
	char **pairs = userdb_alias_list(ctx->db);
	bool found = false;
	for (size_t i = 0; pairs != NULL && pairs[i] != NULL && pairs[i + 1] != NULL; i += 2) {
		if (strcasecmp(pairs[i], alias) == 0 &&
		    (target == NULL || strcasecmp(pairs[i + 1], target) == 0))
			found = true;
	}
	userdb_strv_free(pairs);
	return found;
}

/* alias del ALIAS [TARGET] */
static int alias_del(struct users_ctx *ctx, int argc, char **argv)
{
	const char *target = argc == 3 ? argv[2] : NULL;
	if (!alias_exists(ctx, argv[1], target)) {
		if (target != NULL)
			fprintf(stderr, "mailctl: no such alias %s -> %s\n", argv[1], target);
		else
			fprintf(stderr, "mailctl: no such alias %s\n", argv[1]);
		return 1;
	}
	char *err = NULL;
	if (userdb_alias_del(ctx->db, argv[1], target, &err) < 0) {
		fprintf(stderr, "mailctl: cannot delete alias %s: %s\n", argv[1],
			err != NULL ? err : "failed");
		free(err);
		return 1;
	}
	if (target != NULL)
		printf("deleted alias %s -> %s\n", argv[1], target);
	else
		printf("deleted alias %s\n", argv[1]);
	return 0;
}

/* alias list */
static int alias_list(struct users_ctx *ctx, int argc, char **argv)
{
	char **pairs = userdb_alias_list(ctx->db);
	for (size_t i = 0; pairs != NULL && pairs[i] != NULL && pairs[i + 1] != NULL; i += 2)
		printf("%s -> %s\n", pairs[i], pairs[i + 1]);
	userdb_strv_free(pairs);
	return 0;
}

static const struct users_subcommand user_subcommands[] = {
	{"add", 1, 1, "user add ADDRESS", user_add},
	{"del", 1, 2, "user del ADDRESS [--purge]", user_del},
	{"passwd", 1, 1, "user passwd ADDRESS", user_passwd},
	{"list", 0, 0, "user list", user_list},
	{"quota", 2, 3, "user quota ADDRESS BYTES [MESSAGES]", user_quota},
	{NULL, 0, 0, NULL, NULL},
};

static const struct users_subcommand alias_subcommands[] = {
	{"add", 2, 2, "alias add ALIAS TARGET", alias_add},
	{"del", 1, 2, "alias del ALIAS [TARGET]", alias_del},
	{"list", 0, 0, "alias list", alias_list},
	{NULL, 0, 0, NULL, NULL},
};

/* Prints the usage lines of a table. */
static void users_usage(FILE *out, const struct users_subcommand *table)
{
	fputs("usage:\n", out);
	for (size_t i = 0; table[i].name != NULL; i++)
		fprintf(out, "  mailctl %s\n", table[i].usage);
	if (table == user_subcommands)
		fputs("A password is asked twice without echo on a terminal, else read as one\n"
		      "line from standard input. Quotas: 0 = unlimited; sizes take K, M, G.\n",
		      out);
}

/* Finds the subcommand, checks its arguments, opens the directory, runs it. */
static int users_dispatch(const struct users_subcommand *table, const char *group, int argc,
			  char **argv, const char *datadir)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		users_usage(argc < 2 ? stderr : stdout, table);
		return argc < 2 ? 1 : 0;
	}
	const struct users_subcommand *sub = NULL;
	for (size_t i = 0; table[i].name != NULL; i++) {
		if (strcmp(table[i].name, argv[1]) == 0)
			sub = &table[i];
	}
	if (sub == NULL) {
		fprintf(stderr, "mailctl: unknown %s command '%s'\n", group, argv[1]);
		users_usage(stderr, table);
		return 1;
	}
	int nargs = argc - 2;
	if (nargs < sub->min_args || nargs > sub->max_args) {
		fprintf(stderr, "mailctl: usage: mailctl %s\n", sub->usage);
		return 1;
	}
	struct users_ctx ctx = {.datadir = datadir};
	if (ctl_load_config(datadir, &ctx.cfg) < 0)
		return 1;
	char *err = NULL;
	if (userdb_open(datadir, &ctx.db, &err) < 0) {
		fprintf(stderr, "mailctl: %s\n", err != NULL ? err : "cannot open users.sqlite");
		free(err);
		config_free(&ctx.cfg);
		return 1;
	}
	int ret = sub->handler(&ctx, argc - 1, argv + 1);
	userdb_close(&ctx.db);
	config_free(&ctx.cfg);
	return ret;
}

int cmd_user(int argc, char **argv, const char *datadir)
{
	return users_dispatch(user_subcommands, "user", argc, argv, datadir);
}

int cmd_alias(int argc, char **argv, const char *datadir)
{
	return users_dispatch(alias_subcommands, "alias", argc, argv, datadir);
}
