/* config.h: the one config file, mailstack.conf (INI, parsed with libinih).
 *
 * Every key is declared once, with its type, default and one line of help, in
 * config_keys.def; config.c turns that table into the parser, the defaults,
 * `mailctl config` and the README's key list. Keys are named "section.key".
 * An unknown key or a bad value is an error naming the file, line and key.
 * Free-form sections (`[routes]`: domain = host:port) are read as pairs. */
#ifndef MAILSTACK_CONFIG_H
#define MAILSTACK_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct config config;

/* Loads path over the defaults. A missing file is an error unless
 * missing_ok. On error returns -1 and sets *err_r (caller frees) to a message
 * such as "mailstack.conf:12: unknown key 'smtp.max_sise'". */
int config_load(const char *path, bool missing_ok, config **cfg_r, char **err_r);
/* A config holding only the defaults. */
config *config_defaults(void);
void config_free(config **cfg);

/* Typed getters; asking for an undeclared key or the wrong type is a bug (abort). */
const char *config_str(const config *cfg, const char *key);
int64_t config_int(const config *cfg, const char *key);
bool config_bool(const config *cfg, const char *key);
/* Sets a key from text, checking it as the parser does (for tests and --set). */
int config_set(config *cfg, const char *key, const char *value, char **err_r);

/* Pairs of a free-form section, in file order: returns the count, *names_r
 * and *values_r point into cfg (do not free). */
size_t config_section_pairs(const config *cfg, const char *section,
			    const char *const **names_r, const char *const **values_r);
/* The value for name in a free-form section (case-insensitive), or NULL. */
const char *config_section_get(const config *cfg, const char *section, const char *name);

/* Prints the effective config as INI, with each key's help as a comment. */
void config_print(const config *cfg, FILE *out);
/* Prints every key with default and help as a Markdown table (README). */
void config_print_reference(FILE *out);
/* The path of the file that was loaded, or "" for defaults. */
const char *config_path(const config *cfg);

/* The data directory: the directory holding the loaded config file. Paths in the
 * config that are relative are relative to it; this joins them (caller frees). */
char *config_path_in_datadir(const config *cfg, const char *key);
const char *config_datadir(const config *cfg);
void config_set_datadir(config *cfg, const char *dir);

#endif
