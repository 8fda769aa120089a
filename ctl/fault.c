/* fault.c: `mailctl fault`, injected faults for labs (common/fault.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "fault.h"

static void fault_usage(FILE *out)
{
	fputs("usage: mailctl fault set COMPONENT FAULT [ARG]\n"
	      "       mailctl fault clear [COMPONENT [FAULT]]\n"
	      "       mailctl fault list\n"
	      "faults:\n",
	      out);
	for (const struct fault_spec *f = fault_known(); f->component != NULL; f++) {
		char name[48];
		snprintf(name, sizeof(name), "%s %s%s", f->component, f->fault,
			 f->takes_argument ? " SECONDS" : "");
		fprintf(out, "  %-22s %s\n", name, f->help);
	}
}

int cmd_fault(int argc, char **argv, const char *datadir)
{
	char *err = NULL;
	if (argc >= 2 && strcmp(argv[1], "list") == 0 && argc == 2) {
		char *text = fault_list(datadir);
		fputs(*text != '\0' ? text : "no faults set\n", stdout);
		free(text);
		return 0;
	}
	if (argc >= 4 && argc <= 5 && strcmp(argv[1], "set") == 0) {
		if (fault_set(datadir, argv[2], argv[3], argc == 5 ? argv[4] : NULL, &err) < 0) {
			fprintf(stderr, "mailctl: %s\n", err);
			free(err);
			return 1;
		}
		printf("fault set: %s %s%s%s\n", argv[2], argv[3], argc == 5 ? " " : "",
		       argc == 5 ? argv[4] : "");
		return 0;
	}
	if (argc >= 2 && argc <= 4 && strcmp(argv[1], "clear") == 0) {
		if (argc >= 3) {
			bool known = false;
			for (const struct fault_spec *f = fault_known(); f->component != NULL; f++)
				known = known || (strcmp(f->component, argv[2]) == 0 &&
						  (argc == 3 || strcmp(f->fault, argv[3]) == 0));
			if (!known) {
				fprintf(stderr, "mailctl: unknown fault '%s%s%s'\n", argv[2],
					argc == 4 ? " " : "", argc == 4 ? argv[3] : "");
				return 1;
			}
		}
		if (fault_clear(datadir, argc >= 3 ? argv[2] : NULL, argc == 4 ? argv[3] : NULL,
				&err) < 0) {
			fprintf(stderr, "mailctl: %s\n", err);
			free(err);
			return 1;
		}
		puts("faults cleared");
		return 0;
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
		fault_usage(stdout);
		return 0;
	}
	fault_usage(stderr);
	return 1;
}
