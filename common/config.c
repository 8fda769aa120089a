/* config.c: mailstack.conf, parsed with libinih against the key table.
 *
 * The table of keys (config_keys.def) is expanded once into config_key_table:
 * name "section.key", type, default text and help. A config holds one parsed
 * value per table entry (always valid: the default until the file or
 * config_set overrides it) plus the pairs of free-form sections such as
 * [routes], kept in file order.
 *
 * Invariants: every value slot holds text that passed config_value_check for
 * its type; int_value/bool_value mirror the text. Errors are collected during
 * the parse and only the first one is reported, "FILE:LINE: what 'key'".
 *
 * Line numbers: Debian's libinih calls the handler without a line number, so
 * the file is fed through config_read_line, which counts the lines inih has
 * asked for; when the handler runs, the line it is looking at is the last one. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buffer.h"

enum config_type { CONFIG_STR, CONFIG_INT, CONFIG_BOOL };

struct config_key {
	const char *name;
	enum config_type type;
	const char *default_value;
	const char *help;
};

#define STR CONFIG_STR
#define INT CONFIG_INT
#define BOOL CONFIG_BOOL
#define CONFIG_KEY(name, type, def, help) {name, type, def, help},
static const struct config_key config_key_table[] = {
#include "config_keys.def"
};
#undef CONFIG_KEY
#undef STR
#undef INT
#undef BOOL

#define CONFIG_KEY_COUNT (sizeof(config_key_table) / sizeof(config_key_table[0]))

/* Sections whose names are free (not declared keys): read as ordered pairs. */
static const char *const config_free_sections[] = {"routes"};

/* Extra checks on some keys beyond their type: a range for numbers, a list
 * of words for strings. */
struct config_check {
	const char *key;
	int64_t min, max;            /* INT keys */
	const char *const *words;    /* STR keys: NULL-terminated choices */
	const char *words_text;
};

static const char *const config_log_levels[] = {"debug", "info", "warn", "error", NULL};

static const struct config_check config_checks[] = {
	/* The highest standard port is 995, and ports end at 65535. */
	{"server.port_base", 0, 65535 - 995, NULL, NULL},
	{"server.max_connections", 1, 1000000, NULL, NULL},
	{"server.max_connections_per_ip", 1, 1000000, NULL, NULL},
	{"server.max_auth_failures", 1, 1000, NULL, NULL},
	{"lmtp.tcp_port", 0, 65535, NULL, NULL},
	{"smtp.queue_time_scale", 1, 1000000, NULL, NULL},
	{"log.level", 0, 0, config_log_levels, "debug, info, warn, error"},
};

/* Longest key name or value accepted, checked before copying. */
#define CONFIG_MAX_VALUE_LEN 4096

struct config_value {
	char *text;
	int64_t int_value;
	bool bool_value;
};

struct config_pair {
	char *section;
	char *name;
	char *value;
};

struct config {
	struct config_value values[CONFIG_KEY_COUNT];
	struct config_pair *pairs;
	size_t pair_count;
	/* Per-section views handed out by config_section_pairs (rebuilt on demand). */
	const char **view_names;
	const char **view_values;
	char *path;
	char *datadir;
};

/* State of one parse: where we are in the file and the first error. */
struct config_parse {
	config *cfg;
	FILE *file;
	const char *path;
	int line;
	bool line_done; /* the previous chunk ended a line */
	char *error;
};

/* Finds a key in the table by its full name; -1 when undeclared. */
static int config_key_index(const char *name)
{
	for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
		if (strcasecmp(config_key_table[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

/* True for a free-form section name. */
static bool config_section_is_free(const char *section)
{
	for (size_t i = 0; i < sizeof(config_free_sections) / sizeof(config_free_sections[0]); i++) {
		if (strcasecmp(config_free_sections[i], section) == 0)
			return true;
	}
	return false;
}

/* Parses a boolean word; -1 when it is none of the accepted spellings. */
static int config_parse_bool(const char *text)
{
	static const struct {
		const char *word;
		bool value;
	} words[] = {
		{"yes", true}, {"no", false}, {"true", true}, {"false", false},
		{"on", true},  {"off", false}, {"1", true},   {"0", false},
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcasecmp(words[i].word, text) == 0)
			return words[i].value ? 1 : 0;
	}
	return -1;
}

/* Parses a whole decimal integer (optional sign); -1 when it is not one. */
static int config_parse_int(const char *text, int64_t *value_r)
{
	if (*text == '\0')
		return -1;
	errno = 0;
	char *end = NULL;
	long long v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || isspace((unsigned char)text[0]))
		return -1;
	*value_r = v;
	return 0;
}

/* Checks text against the key's type and stores it; -1 with a message
 * "bad value for KEY: ..." in *err_r. */
static int config_value_assign(config *cfg, size_t index, const char *text, char **err_r)
{
	const struct config_key *key = &config_key_table[index];
	struct config_value parsed = {NULL, 0, false};
	if (strlen(text) > CONFIG_MAX_VALUE_LEN) {
		*err_r = xasprintf("bad value for %s: longer than %d characters", key->name,
				   CONFIG_MAX_VALUE_LEN);
		return -1;
	}
	switch (key->type) {
	case CONFIG_STR:
		break;
	case CONFIG_INT:
		if (config_parse_int(text, &parsed.int_value) < 0) {
			*err_r = xasprintf("bad value for %s: '%s' is not a number", key->name, text);
			return -1;
		}
		break;
	case CONFIG_BOOL: {
		int b = config_parse_bool(text);
		if (b < 0) {
			*err_r = xasprintf("bad value for %s: '%s' is not a boolean "
					   "(yes/no/true/false/on/off/1/0)",
					   key->name, text);
			return -1;
		}
		parsed.bool_value = b == 1;
		break;
	}
	}
	for (size_t i = 0; i < sizeof(config_checks) / sizeof(config_checks[0]); i++) {
		const struct config_check *check = &config_checks[i];
		if (strcmp(check->key, key->name) != 0)
			continue;
		if (key->type == CONFIG_INT &&
		    (parsed.int_value < check->min || parsed.int_value > check->max)) {
			*err_r = xasprintf("bad value for %s: '%s' is out of range (%lld to %lld)",
					   key->name, text, (long long)check->min,
					   (long long)check->max);
			return -1;
		}
		bool listed = check->words == NULL;
		for (size_t w = 0; check->words != NULL && check->words[w] != NULL; w++)
			listed = listed || strcasecmp(check->words[w], text) == 0;
		if (!listed) {
			*err_r = xasprintf("bad value for %s: '%s' is not one of %s", key->name,
					   text, check->words_text);
			return -1;
		}
	}
	parsed.text = xstrdup(text);
	free(cfg->values[index].text);
	cfg->values[index] = parsed;
	return 0;
}

/* Appends a free-form pair (a repeated name keeps its first place, new value). */
static void config_pair_add(config *cfg, const char *section, const char *name, const char *value)
{
	for (size_t i = 0; i < cfg->pair_count; i++) {
		struct config_pair *p = &cfg->pairs[i];
		if (strcasecmp(p->section, section) == 0 && strcasecmp(p->name, name) == 0) {
			free(p->value);
			p->value = xstrdup(value);
			return;
		}
	}
	cfg->pairs = xrealloc(cfg->pairs, (cfg->pair_count + 1) * sizeof(*cfg->pairs));
	cfg->pairs[cfg->pair_count++] = (struct config_pair){
		xstrdup(section), xstrdup(name), xstrdup(value)};
}

config *config_defaults(void)
{
	config *cfg = xcalloc(1, sizeof(*cfg));
	for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
		char *err = NULL;
		if (config_value_assign(cfg, i, config_key_table[i].default_value, &err) < 0) {
			/* A default that does not parse is a bug in config_keys.def. */
			fprintf(stderr, "config_keys.def: %s\n", err);
			abort();
		}
	}
	cfg->path = xstrdup("");
	cfg->datadir = xstrdup("");
	return cfg;
}

void config_free(config **cfgp)
{
	config *cfg = *cfgp;
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < CONFIG_KEY_COUNT; i++)
		free(cfg->values[i].text);
	for (size_t i = 0; i < cfg->pair_count; i++) {
		free(cfg->pairs[i].section);
		free(cfg->pairs[i].name);
		free(cfg->pairs[i].value);
	}
	free(cfg->pairs);
	free(cfg->view_names);
	free(cfg->view_values);
	free(cfg->path);
	free(cfg->datadir);
	free(cfg);
	*cfgp = NULL;
}

/* Sets one entry named by section and name (the parser and config_set share it). */
static int config_set_in_section(config *cfg, const char *section, const char *name,
				 const char *value, char **err_r)
{
	if (config_section_is_free(section)) {
		if (strlen(name) > CONFIG_MAX_VALUE_LEN || strlen(value) > CONFIG_MAX_VALUE_LEN) {
			*err_r = xasprintf("bad value for %s.%s: too long", section, name);
			return -1;
		}
		config_pair_add(cfg, section, name, value);
		return 0;
	}
	char *full = *section != '\0' ? xasprintf("%s.%s", section, name) : xstrdup(name);
	int index = config_key_index(full);
	if (index < 0) {
		*err_r = xasprintf("unknown key '%s'", full);
		free(full);
		return -1;
	}
	free(full);
	return config_value_assign(cfg, (size_t)index, value, err_r);
}

int config_set(config *cfg, const char *key, const char *value, char **err_r)
{
	const char *dot = strchr(key, '.');
	if (dot == NULL) {
		*err_r = xasprintf("unknown key '%s'", key);
		return -1;
	}
	char *section = xstrndup(key, (size_t)(dot - key));
	int ret = config_set_in_section(cfg, section, dot + 1, value, err_r);
	free(section);
	return ret;
}

/* fgets-style reader for ini_parse_stream that counts lines. inih reads into
 * a fixed buffer (INI_MAX_LINE in the library's build); a longer line would
 * be split and misparsed, so it ends the parse with a clear error instead. */
static char *config_read_line(char *str, int num, void *stream)
{
	struct config_parse *p = stream;
	if (p->error != NULL)
		return NULL;
	char *got = fgets(str, num, p->file);
	if (got == NULL)
		return NULL;
	if (p->line_done)
		p->line++;
	size_t len = strlen(got);
	p->line_done = len > 0 && got[len - 1] == '\n';
	if (!p->line_done && !feof(p->file)) {
		p->error = xasprintf("%s:%d: line too long (more than %d characters)", p->path,
				     p->line, num - 2);
		return NULL;
	}
	return got;
}

/* inih handler: one name=value in a section; records the first error. */
static int config_ini_handler(void *user, const char *section, const char *name,
			      const char *value)
{
	struct config_parse *p = user;
	char *err = NULL;
	if (config_set_in_section(p->cfg, section, name, value != NULL ? value : "", &err) < 0) {
		if (p->error == NULL)
			p->error = xasprintf("%s:%d: %s", p->path, p->line, err);
		free(err);
		return 0;
	}
	return 1;
}

/* The absolute directory part of path, resolved when it exists. */
static char *config_absolute_dir(const char *path)
{
	char *dir;
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, (size_t)(slash - path));
	char *resolved = realpath(dir, NULL);
	if (resolved != NULL) {
		char *copy = xstrdup(resolved);
		free(resolved);
		free(dir);
		return copy;
	}
	if (dir[0] == '/')
		return dir;
	char cwd[PATH_MAX];
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return dir;
	char *joined = xasprintf("%s/%s", cwd, dir);
	free(dir);
	return joined;
}

int config_load(const char *path, bool missing_ok, config **cfg_r, char **err_r)
{
	*cfg_r = NULL;
	config *cfg = config_defaults();
	free(cfg->path);
	cfg->path = xstrdup(path);
	free(cfg->datadir);
	cfg->datadir = config_absolute_dir(path);

	FILE *file = fopen(path, "r");
	if (file == NULL) {
		if (errno == ENOENT && missing_ok) {
			*cfg_r = cfg;
			return 0;
		}
		*err_r = xasprintf("%s: cannot open: %s", path, strerror(errno));
		config_free(&cfg);
		return -1;
	}
	struct config_parse parse = {cfg, file, path, 1, false, NULL};
	int rc = ini_parse_stream(config_read_line, &parse, config_ini_handler, &parse);
	fclose(file);
	if (parse.error != NULL) {
		*err_r = parse.error;
		config_free(&cfg);
		return -1;
	}
	if (rc != 0) {
		if (rc > 0)
			*err_r = xasprintf("%s:%d: syntax error (expected [section] or key = value)",
					   path, rc);
		else
			*err_r = xasprintf("%s: cannot read", path);
		config_free(&cfg);
		return -1;
	}
	*cfg_r = cfg;
	return 0;
}

/* The value slot of a declared key of the given type; aborts otherwise (a bug). */
static const struct config_value *config_lookup(const config *cfg, const char *key,
						enum config_type type)
{
	int index = config_key_index(key);
	if (index < 0 || config_key_table[index].type != type) {
		fprintf(stderr, "config: key '%s' is %s\n", key,
			index < 0 ? "not declared in config_keys.def" : "of another type");
		abort();
	}
	return &cfg->values[index];
}

const char *config_str(const config *cfg, const char *key)
{
	return config_lookup(cfg, key, CONFIG_STR)->text;
}

int64_t config_int(const config *cfg, const char *key)
{
	return config_lookup(cfg, key, CONFIG_INT)->int_value;
}

bool config_bool(const config *cfg, const char *key)
{
	return config_lookup(cfg, key, CONFIG_BOOL)->bool_value;
}

size_t config_section_pairs(const config *cfg, const char *section,
			    const char *const **names_r, const char *const **values_r)
{
	/* The views are cached scratch arrays: cast away const only for them. */
	config *mut = (config *)cfg;
	free(mut->view_names);
	free(mut->view_values);
	mut->view_names = xcalloc(cfg->pair_count + 1, sizeof(char *));
	mut->view_values = xcalloc(cfg->pair_count + 1, sizeof(char *));
	size_t n = 0;
	for (size_t i = 0; i < cfg->pair_count; i++) {
		if (strcasecmp(cfg->pairs[i].section, section) != 0)
			continue;
		mut->view_names[n] = cfg->pairs[i].name;
		mut->view_values[n] = cfg->pairs[i].value;
		n++;
	}
	*names_r = mut->view_names;
	*values_r = mut->view_values;
	return n;
}

const char *config_section_get(const config *cfg, const char *section, const char *name)
{
	for (size_t i = 0; i < cfg->pair_count; i++) {
		if (strcasecmp(cfg->pairs[i].section, section) == 0 &&
		    strcasecmp(cfg->pairs[i].name, name) == 0)
			return cfg->pairs[i].value;
	}
	return NULL;
}

/* Length of the section part of a key name ("server" in "server.hostname"). */
static size_t config_section_len(const char *name)
{
	const char *dot = strchr(name, '.');
	return dot != NULL ? (size_t)(dot - name) : 0;
}

void config_print(const config *cfg, FILE *out)
{
	if (cfg->path[0] != '\0')
		fprintf(out, "# effective configuration (file: %s)\n", cfg->path);
	else
		fprintf(out, "# effective configuration (defaults)\n");
	const char *section = NULL;
	size_t section_len = 0;
	for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
		const struct config_key *key = &config_key_table[i];
		size_t len = config_section_len(key->name);
		if (section == NULL || len != section_len || strncmp(section, key->name, len) != 0) {
			section = key->name;
			section_len = len;
			fprintf(out, "\n[%.*s]\n", (int)len, key->name);
		}
		fprintf(out, "# %s (default: %s)\n", key->help,
			key->default_value[0] != '\0' ? key->default_value : "empty");
		fprintf(out, "%s = %s\n", key->name + len + 1, cfg->values[i].text);
	}
	for (size_t s = 0; s < sizeof(config_free_sections) / sizeof(config_free_sections[0]); s++) {
		fprintf(out, "\n[%s]\n", config_free_sections[s]);
		for (size_t i = 0; i < cfg->pair_count; i++) {
			if (strcasecmp(cfg->pairs[i].section, config_free_sections[s]) == 0)
				fprintf(out, "%s = %s\n", cfg->pairs[i].name, cfg->pairs[i].value);
		}
	}
}

/* Writes text for a Markdown table cell, escaping the column separator. */
static void config_print_cell(FILE *out, const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '|')
			fputs("\\|", out);
		else
			fputc(*p, out);
	}
}

void config_print_reference(FILE *out)
{
	fputs("| key | default | meaning |\n|---|---|---|\n", out);
	for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
		const struct config_key *key = &config_key_table[i];
		fprintf(out, "| `%s` | ", key->name);
		if (key->default_value[0] != '\0') {
			fputc('`', out);
			config_print_cell(out, key->default_value);
			fputc('`', out);
		} else {
			fputs("(empty)", out);
		}
		fputs(" | ", out);
		config_print_cell(out, key->help);
		fputs(" |\n", out);
	}
	fputs("| `[routes]` *domain* | (none) | `domain = host:port`: send mail for that domain "
	      "to that host instead of its MX |\n",
	      out);
}

const char *config_path(const config *cfg)
{
	return cfg->path;
}

char *config_path_in_datadir(const config *cfg, const char *key)
{
	const char *value = config_str(cfg, key);
	if (value[0] == '\0' || value[0] == '/' || cfg->datadir[0] == '\0')
		return xstrdup(value);
	return xasprintf("%s/%s", cfg->datadir, value);
}

const char *config_datadir(const config *cfg)
{
	return cfg->datadir;
}

void config_set_datadir(config *cfg, const char *dir)
{
	free(cfg->datadir);
	cfg->datadir = xstrdup(dir);
}
