/* io_pgetevents: the signal mask is installed only for the wait.  SIGUSR1 is
 * blocked in the thread; a mask that unblocks it lets a SIGUSR1 sent by
 * another thread interrupt the wait (-EINTR, handler ran); a mask that
 * keeps it blocked does not. */
#include "ctest.h"
#include <libaio.h>
#include <pthread.h>
#include <signal.h>

#define KERNEL_PTR ((void *)0xffffffff81000000UL)

static volatile sig_atomic_t handled;
static pthread_t waiter;

static void on_usr1(int sig)
{
	(void)sig;
	handled++;
}

static void *send_later(void *arg)
{
	(void)arg;
	usleep(100000);
	pthread_kill(waiter, SIGUSR1);
	return NULL;
}

int main(void)
{
	io_context_t ctx = 0;
	struct io_event ev[2];
	struct timespec ts = { 5, 0 }, zero = { 0, 0 }, ms300 = { 0, 300000000 },
			ms20 = { 0, 20000000 };
	struct sigaction sa;
	sigset_t block, open_mask, pending;
	pthread_t t;
	struct iocb cb, *list[1] = { &cb };
	char buf[8];
	long long t0;
	int fd;

	REQUIRE(io_setup(8, &ctx) == 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	REQUIRE(pthread_sigmask(SIG_BLOCK, &block, NULL) == 0);
	REQUIRE(pthread_sigmask(SIG_BLOCK, NULL, &open_mask) == 0);
	sigdelset(&open_mask, SIGUSR1);
	waiter = pthread_self();

	/* Unblocked only during the wait: interrupted, handler ran. */
	REQUIRE(pthread_create(&t, NULL, send_later, NULL) == 0);
	t0 = ctest_now_ns();
	CHECK_RET(io_pgetevents(ctx, 1, 2, ev, &ts, &open_mask), -EINTR);
	CHECK(ctest_now_ns() - t0 < 4000000000LL);
	CHECK_EQ(handled, 1);
	pthread_join(t, NULL);
	/* And blocked again afterwards. */
	{
		sigset_t now;
		CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, SIGUSR1));
	}

	/* The blocked mask: the signal stays pending, the wait times out. */
	REQUIRE(pthread_create(&t, NULL, send_later, NULL) == 0);
	CHECK_RET(io_pgetevents(ctx, 1, 2, ev, &ms300, &block), 0);
	pthread_join(t, NULL);
	CHECK_EQ(handled, 1);
	CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1));
	/* A NULL mask is io_getevents: still blocked, still pending. */
	CHECK_RET(io_pgetevents(ctx, 1, 2, ev, &ms20, NULL), 0);
	CHECK_EQ(handled, 1);
	/* The pending signal is delivered as soon as a wait unblocks it. */
	CHECK_RET(io_pgetevents(ctx, 1, 2, ev, &ts, &open_mask), -EINTR);
	CHECK_EQ(handled, 2);

	/* Errors. */
	CHECK_RET(io_pgetevents(ctx, 1, 2, ev, &ms20, (sigset_t *)KERNEL_PTR), -EFAULT);
	/* Argument errors: libaio's peek answers 0 on an empty ring with a
	 * zero timeout before looking at them; with a timeout, the kernel's. */
	CHECK_RET(io_pgetevents(ctx, 3, 2, ev, &zero, &open_mask), 0);
	CHECK_RET(io_pgetevents(ctx, 0, -1, ev, &zero, NULL), 0);
	CHECK_RET(io_pgetevents(ctx, 3, 2, ev, &ms20, &open_mask), -EINVAL);
	CHECK_RET(io_pgetevents(ctx, 0, -1, ev, &ms20, NULL), -EINVAL);
	CHECK_RET(io_pgetevents(NULL, 0, 1, ev, &zero, NULL), -EINVAL);
	CHECK_RET(io_pgetevents(ctx, 0, 2, ev, &zero, &open_mask), 0);

	/* Events come back as from io_getevents. */
	fd = ctest_file("data", 64, 2, O_RDONLY);
	REQUIRE(fd >= 0);
	io_prep_pread(&cb, fd, buf, 8, 8);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(io_pgetevents(ctx, 1, 2, ev, &ts, &block), 1);
	CHECK(ev[0].obj == &cb && ev[0].res == 8);
	CHECK_EQ((unsigned char)buf[0], ctest_pattern(8, 2));
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(io_pgetevents(ctx, 1, 2, NULL, &ts, &block), -EFAULT);
	CHECK_RET(io_pgetevents(ctx, 1, 2, ev, &ts, NULL), 1);

	close(fd);
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
