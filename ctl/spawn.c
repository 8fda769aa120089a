/* spawn.c: starting a long-running program in the background for mailctl
 * (`mailctl demo` and `mailctl lab net` both start `mailctl up` this way),
 * and the short sleeps of their bounded polling loops.
 *
 * The child leaves mailctl's session (so a Ctrl-C of the caller does not stop
 * the stack it started), reads nothing (stdin is /dev/null) and appends both
 * its outputs to one log file the caller names in its messages. */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

/* Starts argv in the background with its output in log_path (see ctl.h). */
pid_t ctl_spawn_logged(const char *log_path, const char *const argv[])
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	setsid();
	int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	int null = open("/dev/null", O_RDONLY);
	if (out >= 0) {
		dup2(out, STDOUT_FILENO);
		dup2(out, STDERR_FILENO);
	}
	if (null >= 0)
		dup2(null, STDIN_FILENO);
	/* exec never writes to argv: the cast only meets its historical type. */
	execvp(argv[0], (char *const *)argv);
	_exit(127);
}

/* Sleeps ms milliseconds, resuming after signals. */
void ctl_sleep_ms(long ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}
