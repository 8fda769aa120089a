/* fault.h: injected faults for classroom labs (`mailctl fault`).
 *
 * Faults live in DATADIR/run/faults, one per line: "COMPONENT FAULT [ARG]",
 * written only by `mailctl fault set|clear`. They are off unless set. The
 * daemons ask fault_get at the points where the fault applies; the file is
 * re-read only when its modification time changes, so asking is cheap.
 *
 * Known faults (fault_known lists them for mailctl):
 *   mda tempfail          the mda answers 451 4.3.0 to every recipient
 *   mda permfail          the mda answers 554 5.3.0 to every recipient
 *   mda slow SECONDS      the mda waits before answering the data
 *   route refuse          outgoing SMTP connections are refused
 *   route timeout         outgoing SMTP connections never answer (time out)
 *   route drop            outgoing SMTP connections drop after the greeting
 *   queue disk-full       the mta answers 452 4.3.1 at DATA (queue "full") */
#ifndef MAILSTACK_FAULT_H
#define MAILSTACK_FAULT_H

#include <stdbool.h>
#include <stddef.h>

struct fault_spec {
	const char *component;
	const char *fault;
	bool takes_argument;
	const char *help;
};

/* The table of known faults, terminated by a NULL component. */
const struct fault_spec *fault_known(void);
const struct fault_spec *fault_lookup(const char *component, const char *fault);

/* The fault's argument ("" when it has none) when set, else NULL. The string
 * stays valid until the next call. */
const char *fault_get(const char *datadir, const char *component, const char *fault);

/* For mailctl: set (replacing the same fault), clear one (fault NULL: all of
 * the component; component NULL: everything), and read all ("" when none;
 * caller frees). -1 with *err_r on error. */
int fault_set(const char *datadir, const char *component, const char *fault, const char *arg,
	      char **err_r);
int fault_clear(const char *datadir, const char *component, const char *fault, char **err_r);
char *fault_list(const char *datadir);

#endif
