/* Running a test's child under ptrace, region by region.
 *
 * The child calls ptrace(PTRACE_TRACEME) (exiting 77 if refused), raises
 * SIGSTOP once to sync, then marks each region with a SIGSTOP before and
 * one after.  The parent sees every system-call entry and exit of the child
 * inside a region, through `hook`, and detaches after the last region (so
 * that LeakSanitizer, which ptraces at exit, works in the ASan build). */
#ifndef CTEST_TRACE_H
#define CTEST_TRACE_H

#include "ctest.h"
#include <sys/ptrace.h>
#include <sys/wait.h>

/* REQUIRE for functions that cannot return the test's result: ends the
 * program with it. */
#define REQUIRE_OR_EXIT(cond)                                                       \
	do {                                                                        \
		if (!(cond)) {                                                      \
			ctest_report(0, __FILE__, __LINE__, "required: %s (errno %d: %s)", \
				     #cond, errno, strerror(errno));                \
			exit(ctest_finish());                                       \
		}                                                                   \
	} while (0)

/* Called at each system-call stop of the child inside region `region`
 * (0-based), with the stop's PTRACE_GET_SYSCALL_INFO. */
typedef void (*ctest_syscall_hook)(pid_t pid, int region, const struct __ptrace_syscall_info *info, void *arg);

/* The child's side of the protocol, first thing in `child`: ask to be
 * traced (exit 77, a skip, where that is refused), then stop once so that
 * the parent can set its options. */
static inline void ctest_traced_child_start(void)
{
	if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) {
		printf("SKIP: ptrace(PTRACE_TRACEME) refused here\n");
		fflush(stdout);
		_exit(77);
	}
	raise(SIGSTOP); /* sync with the parent */
}

/* Fork, run `child` in the child, trace it through `regions` regions.
 * Returns the child's wait status; `*stops` = the SIGSTOP markers seen
 * (2 * regions when the child marked them all).  A child that exits before
 * its first stop (a skip) is returned as is. */
static inline int ctest_run_traced(int (*child)(void), int regions, ctest_syscall_hook hook, void *arg,
				   int *stops)
{
	*stops = 0;
	fflush(stdout);
	pid_t pid = fork();
	REQUIRE_OR_EXIT(pid >= 0);
	if (pid == 0)
		_exit(child());

	int st, inside = 0, region = -1;
	REQUIRE_OR_EXIT(waitpid(pid, &st, 0) == pid);
	if (WIFEXITED(st))
		return st;
	REQUIRE_OR_EXIT(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP);
	REQUIRE_OR_EXIT(ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL) == 0);
	REQUIRE_OR_EXIT(ptrace(PTRACE_SYSCALL, pid, 0, 0) == 0);
	for (;;) {
		REQUIRE_OR_EXIT(waitpid(pid, &st, 0) == pid);
		if (WIFEXITED(st) || WIFSIGNALED(st))
			return st;
		int sig = WSTOPSIG(st);
		if (sig == (SIGTRAP | 0x80)) {
			struct __ptrace_syscall_info info;
			long n = ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info);
			if (n > 0 && inside)
				hook(pid, region, &info, arg);
			sig = 0;
		} else if (sig == SIGSTOP) {
			++*stops;
			inside = !inside;
			if (inside)
				region++;
			sig = 0;
			if (*stops == 2 * regions) {
				/* The last region is over: let the child finish alone. */
				REQUIRE_OR_EXIT(ptrace(PTRACE_DETACH, pid, 0, 0) == 0);
				continue;
			}
		}
		REQUIRE_OR_EXIT(ptrace(PTRACE_SYSCALL, pid, 0, sig) == 0);
	}
}

#endif /* CTEST_TRACE_H */
