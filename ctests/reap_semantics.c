/*
 * reap_semantics.c: what user-space reaping must not change.
 *
 *  - events that are ready are returned without a system call (observable:
 *    a timeout pointer into an unreadable page makes the kernel answer
 *    -EFAULT, so a call that returns the events did not enter the kernel),
 *    once the kernel has written into that events buffer (src/proven.rs):
 *    before that, the system call (here: -EFAULT, events kept);
 *  - LIBAIO_RS_NO_USER_REAP=1 turns that off (the same call gets -EFAULT);
 *  - a wait interrupted by a signal returns -EINTR;
 *  - io_pgetevents with a mask that unblocks a pending signal delivers it
 *    even when events are ready, and returns the events;
 *  - after fork() the child gets -EINVAL and never the parent's events.
 */
// ctest-no-sanitize
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>

#include "ctest.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>


static io_context_t ctx;
static int fd;
static char buf[8][512];
static struct iocb iocbs[8];
static volatile sig_atomic_t handled;

static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

/* Submit n reads and wait until all n are in the ring (without reaping). */
static void submit_ready(int n)
{
	struct iocb *list[8];
	for (int i = 0; i < n; i++) {
		io_prep_pread(&iocbs[i], fd, buf[i], 512, 0);
		list[i] = &iocbs[i];
	}
	if (io_submit(ctx, n, list) != n) {
		printf("io_submit failed\n");
		exit(1);
	}
	/* Buffered reads of a cached file complete inside io_submit; wait a
	 * little anyway. */
	usleep(2000);
}

static struct timespec *unreadable_timeout(void)
{
	void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static atomic_int reaper_returned;

static void *blocked_reaper(void *arg)
{
	struct io_event ev;
	*(int *)arg = io_getevents(ctx, 1, 1, &ev, NULL);
	atomic_store(&reaper_returned, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	char path[] = "reap_semantics.XXXXXX";
	char data[4096];
	struct io_event ev[8];
	int no_user_reap = argc > 1 && strcmp(argv[1], "--no-user-reap") == 0;

	memset(data, 'a', sizeof(data));
	fd = mkstemp(path);
	if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
		return 1;
	unlink(path);
	int r = io_setup(16, &ctx);
	CHECKF(r == 0, "io_setup = %d", r);
	struct timespec *bad = unreadable_timeout();

	submit_ready(3);
	r = io_getevents(ctx, 1, 8, ev, bad);
	CHECKF(r == -EFAULT, "a buffer the kernel never wrote: the system call (-EFAULT for the timeout): %d", r);
	r = io_getevents(ctx, 3, 8, ev, NULL);
	CHECKF(r == 3, "the events were kept; the kernel writes them to ev: %d", r);
	submit_ready(3);
	r = io_getevents(ctx, 1, 8, ev, bad);
	if (no_user_reap) {
		CHECKF(r == -EFAULT, "LIBAIO_RS_NO_USER_REAP=1: the kernel answers (-EFAULT for the timeout): %d", r);
		struct timespec zero = { 0, 0 };
		r = io_getevents(ctx, 3, 8, ev, &zero);
		CHECKF(r == 3, "LIBAIO_RS_NO_USER_REAP=1: then the kernel returns the 3 events: %d", r);
		return ctest_finish();
	}
	/* The kernel reads the timeout before it looks at the ring, so an
	 * unreadable one gets -EFAULT even with events ready and a proven
	 * buffer (the library used to take the events: 3); the events stay.
	 * (The unit tests count the system calls of the fast path.) */
	CHECKF(r == -EFAULT, "3 events ready, an unreadable timeout: the kernel's -EFAULT: %d", r);
	struct timespec wait = { 5, 0 };
	r = io_getevents(ctx, 3, 8, ev, &wait);
	CHECKF(r == 3, "then the 3 ready events: %d", r);
	CHECKF(r == 3 && ev[0].obj == &iocbs[0] && ev[2].obj == &iocbs[2] && ev[1].res == 512,
	      "in submission order, with their results");

	/* A misaligned events buffer (C allows it, the kernel copes) is left to
	 * the kernel even once the kernel has written it: the user-space copy
	 * writes typed events, which must be aligned.  (The call with the
	 * unreadable timeout gets the kernel's -EFAULT; it would for that
	 * timeout alone too, since c621e94.) */
	{
		static _Alignas(16) char raw[8 * sizeof(struct io_event) + 8];
		struct io_event *odd = (struct io_event *)(raw + 4);
		submit_ready(2);
		r = io_getevents(ctx, 2, 2, odd, NULL);
		struct io_event first;
		memcpy(&first, odd, sizeof first);
		CHECKF(r == 2 && first.obj == &iocbs[0], "misaligned events buffer: the kernel fills it: %d", r);
		submit_ready(2);
		r = io_getevents(ctx, 1, 2, odd, bad);
		CHECKF(r == -EFAULT, "misaligned events buffer: always the system call (-EFAULT for the timeout): %d", r);
		r = io_getevents(ctx, 2, 2, odd, NULL);
		CHECKF(r == 2, "misaligned events buffer: then the kernel returns the 2 events: %d", r);
	}

	/* The switch, in a fresh process. */
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("LIBAIO_RS_NO_USER_REAP", "1", 1);
		execl("/proc/self/exe", argv[0], "--no-user-reap", (char *)NULL);
		_exit(127);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "LIBAIO_RS_NO_USER_REAP=1 child passed");

	/* -EINTR from a blocked wait. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t t;
	int res = 1;
	pthread_create(&t, NULL, blocked_reaper, &res);
	/* A signal that lands before the thread is in the wait only runs the
	 * handler; so signal it until the wait returns (no event ever comes:
	 * only a signal ends it), at most ~20 s on a loaded machine. */
	for (int i = 0; i < 400 && !atomic_load(&reaper_returned); i++) {
		usleep(50000);
		pthread_kill(t, SIGUSR1);
	}
	pthread_join(t, NULL);
	CHECKF(res == -EINTR, "a wait interrupted by a signal returns -EINTR: %d", res);

	/* io_pgetevents: the mask unblocks a pending signal; events are ready. */
	sigset_t block, unblock;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	handled = 0;
	raise(SIGUSR1);
	CHECKF(handled == 0, "SIGUSR1 pending and blocked");
	submit_ready(2);
	sigemptyset(&unblock);
	struct timespec zero = { 0, 0 };
	r = io_pgetevents(ctx, 1, 8, ev, &zero, &unblock);
	CHECKF(r == 2 && handled == 1,
	      "io_pgetevents with an unblocking mask: 2 events and the signal delivered (r=%d, handled=%d)",
	      r, (int)handled);
	sigset_t now;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	CHECKF(sigismember(&now, SIGUSR1), "the caller's mask is back after io_pgetevents");
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);

	/* fork: the child must not see the parent's context. */
	submit_ready(1);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct io_event e;
		int a = io_getevents(ctx, 0, 1, &e, &zero);
		int b = io_getevents(ctx, 1, 1, &e, NULL);
		int c = io_queue_run(ctx);
		_exit(a == -EINVAL && b == -EINVAL && c == -EINVAL ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "after fork() the child gets -EINVAL from io_getevents and io_queue_run");
	r = io_getevents(ctx, 1, 1, ev, NULL);
	CHECKF(r == 1 && ev[0].obj == &iocbs[0], "the parent still gets its event");

	CHECKF(io_destroy(ctx) == 0, "io_destroy");
	return ctest_finish();
}
