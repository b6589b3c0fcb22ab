/* A signal handler that reaps the context its own thread is reaping (a
 * zero-timeout io_getevents, as libaio allows: it is a system call there).
 * The handler may interrupt the thread anywhere in its own user-space reap,
 * including while it takes or gives back the ring: the handler must never
 * wait for its own thread (it used to spin forever in those windows), and
 * every completion is delivered exactly once, to one of the two. */
#include "ctest.h"
#include <libaio.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/time.h>

static io_context_t ctx;
static _Atomic long handler_got, handler_calls;

static void on_alarm(int s)
{
	(void)s;
	int saved = errno;
	struct io_event ev[4];
	struct timespec zero = { 0, 0 };
	int r = io_getevents(ctx, 0, 4, ev, &zero);
	if (r > 0)
		atomic_fetch_add(&handler_got, r);
	atomic_fetch_add(&handler_calls, 1);
	errno = saved;
}

int main(void)
{
	int fd = open("signal_reap.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 1 << 20) != 0) {
		perror("signal_reap.dat");
		return 1;
	}
	int r = io_setup(64, &ctx);
	if (r != 0) {
		printf("io_setup(64) = %d\n", r);
		return 1;
	}
	ctest_watchdog_start(60, "FAIL signal_reap: hung (a handler waiting for its own thread)\n");
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval storm = { { 0, 20 }, { 0, 20 } };
	setitimer(ITIMER_REAL, &storm, NULL);

	char buf[512];
	struct iocb io, *p = &io;
	struct io_event ev[8];
	struct timespec zero = { 0, 0 };
	long submitted = 0, got = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		io_prep_pread(&io, fd, buf, 512, 0);
		int r;
		do
			r = io_submit(ctx, 1, &p);
		while (r == -EINTR);
		if (r != 1) {
			CHECK_EQ_MSG(r, 1, "io_submit");
			break;
		}
		submitted++;
		for (int i = 0; i < 100; i++) {
			r = io_getevents(ctx, 0, 8, ev, &zero);
			if (r > 0)
				got += r;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 3000000000L);
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	/* Whatever is left (the timer is off: no handler now). */
	while (got + atomic_load(&handler_got) < submitted) {
		struct timespec ts = { 5, 0 };
		int r = io_getevents(ctx, 1, 8, ev, &ts);
		if (r <= 0)
			break;
		got += r;
	}
	ctest_watchdog_stop();
	printf("# %ld reads, %ld reaped by the thread, %ld by %ld handler calls\n", submitted, got,
	       (long)atomic_load(&handler_got), (long)atomic_load(&handler_calls));
	CHECKF(atomic_load(&handler_calls) > 1000, "the handler ran often (%ld)", (long)atomic_load(&handler_calls));
	CHECK_EQ_MSG(got + atomic_load(&handler_got), submitted, "every completion delivered exactly once");
	struct timespec z2 = { 0, 0 };
	CHECK_EQ_MSG(io_getevents(ctx, 0, 8, ev, &z2), 0, "and no more");
	io_destroy(ctx);
	close(fd);
	unlink("signal_reap.dat");
	return ctest_finish();
}
