/* A fork() while another thread makes the process's first io_setup: the
 * child's own io_setup must work.  The library's one-time set-up (fork
 * handler, fork witness) ran inside a Once at the first io_setup; a child
 * forked while another thread was inside it inherited the Once "running"
 * and waited on it for ever (an independent tester's t8_fork_first_setup.c:
 * 43 hangs in 400).  It now runs when the library is loaded.
 *
 * Each try is a fresh process (this program run again with "try"), whose
 * first library call races a fork; the child has 3 s for its io_setup.
 */
// ctest-no-sanitize
#include "ctest.h"
#include <libaio.h>

enum { TRIES = 150 };

static void *first_setup(void *arg)
{
	io_context_t *ctx = arg;
	if (io_setup(4, ctx))
		*ctx = 0;
	return NULL;
}

static int one_try(void)
{
	io_context_t ctx = 0;
	pthread_t t;
	if (pthread_create(&t, NULL, first_setup, &ctx))
		return 2;
	pid_t pid = fork();
	if (pid == 0) {
		alarm(3);
		io_context_t mine = 0;
		int r = io_setup(4, &mine);
		_exit(r == 0 && io_destroy(mine) == 0 ? 0 : 1);
	}
	pthread_join(t, NULL);
	if (pid < 0)
		return 2;
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return 2;
	if (ctx)
		io_destroy(ctx);
	if (WIFSIGNALED(st))
		return 3; /* the child hung (SIGALRM) */
	return WIFEXITED(st) ? WEXITSTATUS(st) : 2;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "try"))
		return one_try();
	int hung = 0, failed = 0;
	for (int i = 0; i < TRIES; i++) {
		fflush(stdout);
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			execl("/proc/self/exe", argv[0], "try", (char *)NULL);
			_exit(127);
		}
		int st;
		REQUIRE(waitpid(pid, &st, 0) == pid);
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : 100;
		hung += code == 3;
		failed += code != 0 && code != 3;
	}
	CHECKF(hung == 0, "a child forked during the first io_setup hung %d times in %d", hung, TRIES);
	CHECKF(failed == 0, "other failures: %d", failed);
	return ctest_finish();
}
