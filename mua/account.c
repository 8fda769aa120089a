/* account.c: the mua's accounts.
 *
 * From a config file (INI, one [account NAME] section per account, keys as in
 * the table below), or built from a mailstack data directory for the demo:
 * every "address password" line of D/demo-credentials becomes an account
 * reading over IMAP STARTTLS on port_base+143 and sending over submission
 * (port_base+587, STARTTLS, AUTH), verifying against D/tls/cert.pem.
 * Passwords live in memory only: from the demo file, password_command or a
 * prompt without echo. */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "mua.h"

#define MUA_PASSWORD_MAX 1024

struct account_parse {
	struct mua_accounts *accounts;
	struct mua_account *current;
	char *err;
	const char *path;
};

/* Replaces a string field. */
static void set_str(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

/* Parses "implicit", "starttls", "none". */
static int parse_tls_mode(const char *value, enum mua_tls_mode *mode_r)
{
	static const struct {
		const char *name;
		enum mua_tls_mode mode;
	} modes[] = {{"implicit", MUA_TLS_IMPLICIT}, {"tls", MUA_TLS_IMPLICIT},
		     {"ssl", MUA_TLS_IMPLICIT},      {"starttls", MUA_TLS_STARTTLS},
		     {"none", MUA_TLS_NONE},         {"plain", MUA_TLS_NONE}};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcasecmp(value, modes[i].name) == 0) {
			*mode_r = modes[i].mode;
			return 0;
		}
	return -1;
}

/* Parses yes/no. */
static int parse_bool(const char *value, bool *out)
{
	if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 ||
	    strcmp(value, "1") == 0 || strcasecmp(value, "on") == 0) {
		*out = true;
		return 0;
	}
	if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 ||
	    strcmp(value, "0") == 0 || strcasecmp(value, "off") == 0) {
		*out = false;
		return 0;
	}
	return -1;
}

/* Parses a port number. */
static int parse_port(const char *value, int *out)
{
	char *end;
	long v = strtol(value, &end, 10);
	if (*value == '\0' || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*out = (int)v;
	return 0;
}

/* A new account with defaults. */
static struct mua_account *account_add(struct mua_accounts *accounts, const char *name)
{
	if (accounts->count >= MUA_MAX_ACCOUNTS)
		return NULL;
	struct mua_account *a = &accounts->items[accounts->count++];
	memset(a, 0, sizeof(*a));
	a->name = xstrdup(name);
	a->read_tls = MUA_TLS_STARTTLS;
	a->send_tls = MUA_TLS_STARTTLS;
	a->read_port = 0;
	a->send_port = 0;
	a->tls_verify = true;
	return a;
}

/* One key of an account section; returns 0 or -1 with a message. */
static int account_set_key(struct mua_account *a, const char *key, const char *value,
			   char **err_r)
{
	int rc = 0;
	if (strcmp(key, "name") == 0) {
		set_str(&a->real_name, value);
	} else if (strcmp(key, "address") == 0) {
		set_str(&a->address, value);
	} else if (strcmp(key, "read") == 0) {
		if (strcasecmp(value, "imap") == 0)
			a->read_pop3 = false;
		else if (strcasecmp(value, "pop3") == 0)
			a->read_pop3 = true;
		else
			rc = -1;
	} else if (strcmp(key, "read_host") == 0) {
		set_str(&a->read_host, value);
	} else if (strcmp(key, "read_port") == 0) {
		rc = parse_port(value, &a->read_port);
	} else if (strcmp(key, "read_tls") == 0) {
		rc = parse_tls_mode(value, &a->read_tls);
	} else if (strcmp(key, "send_host") == 0) {
		set_str(&a->send_host, value);
	} else if (strcmp(key, "send_port") == 0) {
		rc = parse_port(value, &a->send_port);
	} else if (strcmp(key, "send_tls") == 0) {
		rc = parse_tls_mode(value, &a->send_tls);
	} else if (strcmp(key, "login") == 0) {
		set_str(&a->login, value);
	} else if (strcmp(key, "password_command") == 0) {
		set_str(&a->password_command, value);
	} else if (strcmp(key, "password") == 0) {
		/* Allowed for labs, never required. */
		set_str(&a->password, value);
	} else if (strcmp(key, "tls_verify") == 0) {
		rc = parse_bool(value, &a->tls_verify);
	} else if (strcmp(key, "tls_ca_file") == 0) {
		set_str(&a->tls_ca_file, value);
	} else if (strcmp(key, "poll_interval") == 0) {
		char *end;
		long v = strtol(value, &end, 10);
		if (*value == '\0' || *end != '\0' || v < 1 || v > 86400)
			rc = -1;
		else
			a->poll_seconds = (int)v;
	} else {
		*err_r = xasprintf("unknown key '%s'", key);
		return -1;
	}
	if (rc < 0)
		*err_r = xasprintf("bad value '%s' for %s", value, key);
	return rc;
}

/* inih callback: sections "account NAME", keys inside them. */
static int account_ini_handler(void *user, const char *section, const char *name,
			       const char *value)
{
	struct account_parse *p = user;
	if (p->err != NULL)
		return 0;
	if (strncasecmp(section, "account", 7) != 0 ||
	    (section[7] != '\0' && section[7] != ' ')) {
		p->err = xasprintf("%s: unknown section [%s]", p->path, section);
		return 0;
	}
	const char *acct = section[7] == ' ' ? section + 8 : "default";
	while (*acct == ' ')
		acct++;
	if (p->current == NULL || strcmp(p->current->name, acct) != 0) {
		p->current = mua_accounts_find(p->accounts, acct);
		if (p->current == NULL || strcmp(p->current->name, acct) != 0)
			p->current = account_add(p->accounts, acct);
		if (p->current == NULL) {
			p->err = xasprintf("%s: more than %d accounts", p->path, MUA_MAX_ACCOUNTS);
			return 0;
		}
	}
	char *err = NULL;
	if (account_set_key(p->current, name, value, &err) < 0) {
		p->err = xasprintf("%s: [%s] %s", p->path, section, err);
		free(err);
		return 0;
	}
	return 1;
}

/* Fills defaults that depend on other keys and checks required ones. */
static int account_finish(struct mua_account *a, char **err_r)
{
	if (a->address == NULL) {
		*err_r = xasprintf("account %s: no address", a->name);
		return -1;
	}
	if (a->read_host == NULL) {
		*err_r = xasprintf("account %s: no read_host", a->name);
		return -1;
	}
	if (a->send_host == NULL)
		a->send_host = xstrdup(a->read_host);
	if (a->login == NULL)
		a->login = xstrdup(a->address);
	if (a->read_port == 0) {
		if (a->read_pop3)
			a->read_port = a->read_tls == MUA_TLS_IMPLICIT ? 995 : 110;
		else
			a->read_port = a->read_tls == MUA_TLS_IMPLICIT ? 993 : 143;
	}
	if (a->send_port == 0)
		a->send_port = a->send_tls == MUA_TLS_IMPLICIT ? 465 : 587;
	return 0;
}

/* Loads accounts from an INI file. */
int mua_accounts_load(const char *path, struct mua_accounts *accounts, char **err_r)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		*err_r = xasprintf("cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	struct account_parse p = {.accounts = accounts, .path = path};
	int rc = ini_parse_file(f, account_ini_handler, &p);
	fclose(f);
	if (p.err != NULL) {
		*err_r = p.err;
		return -1;
	}
	if (rc != 0) {
		*err_r = xasprintf("%s:%d: syntax error", path, rc);
		return -1;
	}
	if (accounts->count == 0) {
		*err_r = xasprintf("%s: no [account NAME] section", path);
		return -1;
	}
	for (size_t i = 0; i < accounts->count; i++)
		if (account_finish(&accounts->items[i], err_r) < 0)
			return -1;
	return 0;
}

/* Builds the demo accounts from a data directory. */
int mua_accounts_demo(const char *datadir, struct mua_accounts *accounts, char **err_r)
{
	char *conf_path = xasprintf("%s/mailstack.conf", datadir);
	config *cfg = NULL;
	if (config_load(conf_path, false, &cfg, err_r) < 0) {
		free(conf_path);
		return -1;
	}
	free(conf_path);
	int port_base = (int)config_int(cfg, "server.port_base");
	/* The first listen address is where the servers are. */
	char *host = xstrdup(config_str(cfg, "server.listen"));
	host[strcspn(host, ", ")] = '\0';
	if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
		free(host);
		host = xstrdup("127.0.0.1");
	}
	char *ca = config_path_in_datadir(cfg, "server.tls_cert");
	config_free(&cfg);
	char *cred_path = xasprintf("%s/demo-credentials", datadir);
	FILE *f = fopen(cred_path, "r");
	if (f == NULL) {
		*err_r = xasprintf("cannot read %s: %s", cred_path, strerror(errno));
		free(cred_path);
		free(host);
		free(ca);
		return -1;
	}
	char line[MUA_PASSWORD_MAX + 512];
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		char *sp = strchr(line, ' ');
		if (line[0] == '#' || sp == NULL)
			continue;
		*sp = '\0';
		struct mua_account *a = mua_accounts_find(accounts, line);
		if (a == NULL)
			a = account_add(accounts, line);
		if (a == NULL)
			break;
		set_str(&a->address, line);
		set_str(&a->login, line);
		set_str(&a->password, sp + 1);
		set_str(&a->read_host, host);
		set_str(&a->send_host, host);
		set_str(&a->tls_ca_file, ca);
		a->read_port = port_base + 143;
		a->read_tls = MUA_TLS_STARTTLS;
		a->send_port = port_base + 587;
		a->send_tls = MUA_TLS_STARTTLS;
		a->tls_verify = true;
	}
	fclose(f);
	free(cred_path);
	free(host);
	free(ca);
	if (accounts->count == 0) {
		*err_r = xasprintf("no users in %s/demo-credentials", datadir);
		return -1;
	}
	return 0;
}

/* Finds an account by name or address (NULL key = the first). */
struct mua_account *mua_accounts_find(struct mua_accounts *accounts, const char *key)
{
	if (key == NULL)
		return accounts->count > 0 ? &accounts->items[0] : NULL;
	for (size_t i = 0; i < accounts->count; i++) {
		struct mua_account *a = &accounts->items[i];
		if ((a->name != NULL && strcasecmp(a->name, key) == 0) ||
		    (a->address != NULL && strcasecmp(a->address, key) == 0))
			return a;
	}
	return NULL;
}

/* Frees a string after overwriting it (passwords). */
static void free_secret(char **s)
{
	if (*s == NULL)
		return;
	explicit_bzero(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

/* Frees every account. */
void mua_accounts_free(struct mua_accounts *accounts)
{
	for (size_t i = 0; i < accounts->count; i++) {
		struct mua_account *a = &accounts->items[i];
		free(a->name);
		free(a->address);
		free(a->real_name);
		free(a->read_host);
		free(a->send_host);
		free(a->login);
		free_secret(&a->password);
		free(a->password_command);
		free(a->tls_ca_file);
	}
	accounts->count = 0;
}

/* Runs password_command and takes its first line. */
static int password_from_command(struct mua_account *a, char **err_r)
{
	FILE *p = popen(a->password_command, "r");
	if (p == NULL) {
		*err_r = xasprintf("cannot run password_command: %s", strerror(errno));
		return -1;
	}
	char line[MUA_PASSWORD_MAX];
	bool got = fgets(line, sizeof(line), p) != NULL;
	int status = pclose(p);
	if (!got || status != 0) {
		*err_r = xasprintf("password_command for %s failed", a->name);
		explicit_bzero(line, sizeof(line));
		return -1;
	}
	line[strcspn(line, "\r\n")] = '\0';
	a->password = xstrdup(line);
	explicit_bzero(line, sizeof(line));
	return 0;
}

/* Prompts on the terminal with echo off. */
static int password_prompt(struct mua_account *a, char **err_r)
{
	FILE *tty = fopen("/dev/tty", "r+");
	if (tty == NULL) {
		*err_r = xasprintf("no password for %s (no terminal to ask on)", a->name);
		return -1;
	}
	struct termios old, quiet;
	int fd = fileno(tty);
	bool restore = tcgetattr(fd, &old) == 0;
	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	fprintf(tty, "Password for %s: ", a->login);
	fflush(tty);
	char line[MUA_PASSWORD_MAX];
	bool got = fgets(line, sizeof(line), tty) != NULL;
	if (restore)
		tcsetattr(fd, TCSAFLUSH, &old);
	fputc('\n', tty);
	fclose(tty);
	if (!got) {
		*err_r = xstrdup("no password given");
		return -1;
	}
	line[strcspn(line, "\r\n")] = '\0';
	a->password = xstrdup(line);
	explicit_bzero(line, sizeof(line));
	return 0;
}

/* Makes sure the account has a password. */
int mua_account_password(struct mua_account *a, bool interactive, char **err_r)
{
	if (a->password != NULL)
		return 0;
	if (a->password_command != NULL)
		return password_from_command(a, err_r);
	if (interactive || isatty(STDIN_FILENO))
		return password_prompt(a, err_r);
	*err_r = xasprintf("no password for %s: set password_command", a->name);
	return -1;
}

/* "Name <addr>". */
char *mua_account_from(const struct mua_account *a)
{
	if (a->real_name == NULL || a->real_name[0] == '\0')
		return xstrdup(a->address);
	/* The builder parses and re-encodes this, so quote the name. */
	buf_t b = BUF_INIT;
	buf_append_char(&b, '"');
	for (const char *p = a->real_name; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			buf_append_char(&b, '\\');
		buf_append_char(&b, *p);
	}
	buf_printf(&b, "\" <%s>", a->address);
	return buf_steal(&b);
}

/* ~/.config/mailstack/mua.conf. */
char *mua_default_config_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	if (xdg != NULL && xdg[0] != '\0')
		return xasprintf("%s/mailstack/mua.conf", xdg);
	const char *home = getenv("HOME");
	return xasprintf("%s/.config/mailstack/mua.conf", home != NULL ? home : ".");
}
