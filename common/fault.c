/* fault.c: reading and writing DATADIR/run/faults (see fault.h). */
#include "fault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"

#define FAULT_MAX_FILE 4096

static const struct fault_spec fault_table[] = {
	{"mda", "tempfail", false, "the mda answers 451 4.3.0 to every recipient"},
	{"mda", "permfail", false, "the mda answers 554 5.3.0 to every recipient"},
	{"mda", "slow", true, "the mda waits SECONDS before answering the data"},
	{"route", "refuse", false, "outgoing SMTP connections are refused"},
	{"route", "timeout", false, "outgoing SMTP connections never answer"},
	{"route", "drop", false, "outgoing SMTP connections drop after the greeting"},
	{"queue", "disk-full", false, "the mta answers 452 4.3.1 at DATA: the queue is full"},
	{NULL, NULL, false, NULL},
};

const struct fault_spec *fault_known(void)
{
	return fault_table;
}

const struct fault_spec *fault_lookup(const char *component, const char *fault)
{
	for (const struct fault_spec *f = fault_table; f->component != NULL; f++) {
		if (strcmp(f->component, component) == 0 && strcmp(f->fault, fault) == 0)
			return f;
	}
	return NULL;
}

/* The file that holds the injected faults (caller frees). */
static char *fault_path(const char *datadir)
{
	return xasprintf("%s/run/faults", datadir);
}

/* Reads the whole file (bounded); "" when it does not exist. */
static char *fault_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return xstrdup("");
	char *data = xmalloc(FAULT_MAX_FILE + 1);
	size_t n = fread(data, 1, FAULT_MAX_FILE, f);
	data[n] = '\0';
	fclose(f);
	return data;
}

/* The cache of the last file read, for fault_get. */
static struct {
	char *path;
	struct timespec mtime;
	off_t size;
	bool exists;
	char *text;
	char value[64];
} fault_cache;

const char *fault_get(const char *datadir, const char *component, const char *fault)
{
	char *path = fault_path(datadir);
	struct stat st;
	bool exists = stat(path, &st) == 0;
	bool fresh = fault_cache.path != NULL && strcmp(fault_cache.path, path) == 0 &&
		     fault_cache.exists == exists &&
		     (!exists || (st.st_mtim.tv_sec == fault_cache.mtime.tv_sec &&
				  st.st_mtim.tv_nsec == fault_cache.mtime.tv_nsec &&
				  st.st_size == fault_cache.size));
	if (!fresh) {
		free(fault_cache.path);
		free(fault_cache.text);
		fault_cache.path = path;
		path = NULL;
		fault_cache.exists = exists;
		if (exists) {
			fault_cache.mtime = st.st_mtim;
			fault_cache.size = st.st_size;
		}
		fault_cache.text = exists ? fault_read_file(fault_cache.path) : xstrdup("");
	}
	free(path);

	size_t clen = strlen(component), flen = strlen(fault);
	for (const char *line = fault_cache.text; *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
		if (len >= clen + 1 + flen && strncmp(line, component, clen) == 0 &&
		    line[clen] == ' ' && strncmp(line + clen + 1, fault, flen) == 0 &&
		    (len == clen + 1 + flen || line[clen + 1 + flen] == ' ')) {
			const char *arg = line + clen + 1 + flen;
			size_t arg_len = len - clen - 1 - flen;
			if (arg_len > 0) {
				arg++;
				arg_len--;
			}
			if (arg_len >= sizeof(fault_cache.value))
				arg_len = sizeof(fault_cache.value) - 1;
			memcpy(fault_cache.value, arg, arg_len);
			fault_cache.value[arg_len] = '\0';
			return fault_cache.value;
		}
		line = end != NULL ? end + 1 : line + len;
	}
	return NULL;
}

/* Rewrites the file without the lines matching (component, fault), plus
 * `add` when not NULL; atomically through a temporary file and rename. */
static int fault_rewrite(const char *datadir, const char *component, const char *fault,
			 const char *add, char **err_r)
{
	char *path = fault_path(datadir);
	char *old = fault_read_file(path);
	buf_t out = BUF_INIT;
	for (char *line = strtok(old, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char comp[32] = "", name[32] = "";
		if (sscanf(line, "%31s %31s", comp, name) < 2)
			continue;
		bool match = component == NULL ||
			     (strcmp(comp, component) == 0 && (fault == NULL || strcmp(name, fault) == 0));
		if (!match)
			buf_printf(&out, "%s\n", line);
	}
	if (add != NULL)
		buf_printf(&out, "%s\n", add);
	free(old);
	char *tmp = xasprintf("%s.tmp", path);
	int rc = -1;
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		*err_r = xasprintf("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fwrite(out.data != NULL ? out.data : "", 1, out.len, f);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		*err_r = xasprintf("cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	free(path);
	buf_free(&out);
	return rc;
}

int fault_set(const char *datadir, const char *component, const char *fault, const char *arg,
	      char **err_r)
{
	const struct fault_spec *spec = fault_lookup(component, fault);
	if (spec == NULL) {
		*err_r = xasprintf("unknown fault '%s %s'", component, fault);
		return -1;
	}
	if (spec->takes_argument && (arg == NULL || *arg == '\0')) {
		*err_r = xasprintf("fault '%s %s' needs an argument", component, fault);
		return -1;
	}
	if (!spec->takes_argument && arg != NULL) {
		*err_r = xasprintf("fault '%s %s' takes no argument", component, fault);
		return -1;
	}
	if (arg != NULL) {
		for (const char *p = arg; *p != '\0'; p++) {
			if (*p < '0' || *p > '9') {
				*err_r = xasprintf("the argument of '%s %s' must be a number of seconds",
						   component, fault);
				return -1;
			}
		}
	}
	char *line = arg != NULL ? xasprintf("%s %s %s", component, fault, arg)
				 : xasprintf("%s %s", component, fault);
	int rc = fault_rewrite(datadir, component, fault, line, err_r);
	free(line);
	return rc;
}

int fault_clear(const char *datadir, const char *component, const char *fault, char **err_r)
{
	return fault_rewrite(datadir, component, fault, NULL, err_r);
}

char *fault_list(const char *datadir)
{
	char *path = fault_path(datadir);
	char *text = fault_read_file(path);
	free(path);
	return text;
}
