/* mua_launch.c: `mailctl mua`, running the terminal mail client.
 *
 * Replaces mailctl with the `mua` program installed next to it, passing
 * `--dir D` (the mua finds the accounts, ports and certificate there, and the
 * demo account in D/demo-credentials) and every remaining argument. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "ctl.h"

int cmd_mua(int argc, char **argv, const char *datadir)
{
	char *path = ctl_bin_path("mua");
	/* mua --dir D ARGS... NULL */
	char **args = xcalloc((size_t)argc + 3, sizeof(*args));
	size_t n = 0;
	args[n++] = path;
	args[n++] = (char *)"--dir";
	args[n++] = (char *)datadir;
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	fflush(NULL);
	execv(path, args);
	fprintf(stderr, "mailctl: cannot run %s: %s\n", path, strerror(errno));
	free(args);
	free(path);
	return 1;
}
