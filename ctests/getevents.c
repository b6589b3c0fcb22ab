/* io_getevents: argument errors (the kernel's, past libaio's peek),
 * timeouts, ordering, and the zero-timeout peek on an empty ring. */
#include "ctest.h"
#include <libaio.h>

#define KERNEL_PTR ((void *)0xffffffff81000000UL)

int main(void)
{
	io_context_t ctx = 0;
	struct iocb cb[8], *list[8];
	struct io_event ev[8];
	struct timespec zero = { 0, 0 }, ts = { 5, 0 }, ms50 = { 0, 50000000 };
	char buf[8][16];
	long long t0, dt;
	int fd, i, n, ok;

	REQUIRE(io_setup(16, &ctx) == 0);
	fd = ctest_file("data", 4096, 6, O_RDONLY);
	REQUIRE(fd >= 0);
	for (i = 0; i < 8; i++) {
		io_prep_pread(&cb[i], fd, buf[i], 16, 16 * i);
		cb[i].data = (void *)(long)i;
		list[i] = &cb[i];
	}

	/* Empty ring, zero timeout: 0 at once, also with nr == 0 or NULL events. */
	CHECK_RET(io_getevents(ctx, 0, 8, ev, &zero), 0);
	CHECK_RET(io_getevents(ctx, 1, 8, ev, &zero), 0);
	CHECK_RET(io_getevents(ctx, 8, 8, ev, &zero), 0);
	CHECK_RET(io_getevents(ctx, 0, 0, NULL, &zero), 0);
	CHECK_RET(io_getevents(ctx, 1, 1, NULL, &zero), 0);
	t0 = ctest_now_ns();
	ok = 1;
	for (i = 0; i < 100000; i++)
		if (io_getevents(ctx, 0, 8, ev, &zero) != 0)
			ok = 0;
	dt = ctest_now_ns() - t0;
	printf("100000 empty zero-timeout io_getevents: %lld ns each\n", dt / 100000);
	CHECK(ok);
	CHECK(dt < 1000000000LL);

	/* Argument errors: the kernel's answers, except on an empty ring with
	 * a zero timeout, where libaio's peek answers 0 before looking at them
	 * (an independent tester's differential; the kernel's -EINVAL until
	 * then). */
	CHECK_RET(io_getevents(ctx, 2, 1, ev, &zero), 0);
	CHECK_RET(io_getevents(ctx, 2, 1, ev, &ts), -EINVAL);
	CHECK_RET(io_getevents(ctx, 0, -1, ev, &zero), 0);
	CHECK_RET(io_getevents(ctx, -1, 1, ev, &zero), 0);
	CHECK_RET(io_getevents(ctx, -1, -1, ev, &ts), -EINVAL);
	CHECK_RET(io_getevents(NULL, 0, 1, ev, &zero), -EINVAL);
	CHECK_RET(io_getevents((io_context_t)12345, 0, 1, ev, &zero), -EINVAL);
	CHECK_RET(io_getevents((io_context_t)KERNEL_PTR, 0, 1, ev, &zero), -EINVAL);
	CHECK_RET(io_getevents((io_context_t)(void *)-1L, 0, 1, ev, &zero), -EINVAL);
	/* A bad timeout pointer.  (The kernel does not validate the timespec
	 * itself: {0, 1000000000} is a 1 s wait and {-1, 0} never expires, so
	 * those are not tested.) */
	CHECK_RET(io_getevents(ctx, 1, 1, ev, (struct timespec *)KERNEL_PTR), -EFAULT);
	CHECK_RET(io_getevents(ctx, 0, 1, ev, (struct timespec *)KERNEL_PTR), -EFAULT);

	/* A real wait: min_nr 1 on an empty ring waits for the timeout. */
	t0 = ctest_now_ns();
	CHECK_RET(io_getevents(ctx, 1, 1, ev, &ms50), 0);
	dt = ctest_now_ns() - t0;
	CHECK(dt >= 45000000LL);
	/* min_nr 0 with a timeout: nothing to wait for (the fastest of three
	 * tries, so that one preemption on a loaded machine is not a wait). */
	dt = CTEST_FASTEST_NS(3, CHECK_RET(io_getevents(ctx, 0, 1, ev, &ms50), 0));
	CHECK(dt < 40000000LL);

	/* With events pending. */
	CHECK_RET(io_submit(ctx, 8, list), 8);
	usleep(20000);
	/* NULL or kernel events pointer: -EFAULT, events stay in the ring. */
	CHECK_RET(io_getevents(ctx, 1, 8, NULL, &ts), -EFAULT);
	CHECK_RET(io_getevents(ctx, 1, 8, (struct io_event *)KERNEL_PTR, &ts), -EFAULT);
	CHECK_RET(io_getevents(ctx, 1, 8, NULL, &zero), -EFAULT);
	/* nr 0: nothing taken. */
	CHECK_RET(io_getevents(ctx, 0, 0, ev, &zero), 0);
	/* Still errors for bad counts. */
	CHECK_RET(io_getevents(ctx, 3, 2, ev, &zero), -EINVAL);
	/* Take them in two goes; all 8 come back, each once. */
	n = io_getevents(ctx, 3, 3, ev, &ts);
	CHECK_EQ(n, 3);
	n += io_getevents(ctx, 5, 8, ev + 3, &ts);
	CHECK_EQ(n, 8);
	ok = 1;
	{
		int seen[8] = { 0 };
		for (i = 0; i < 8; i++) {
			long idx = (long)ev[i].data;
			if (idx < 0 || idx > 7 || ev[i].obj != &cb[idx] || seen[idx]++ ||
			    ev[i].res != 16 || ev[i].res2 != 0)
				ok = 0;
		}
	}
	CHECK(ok);
	CHECK_RET(io_getevents(ctx, 0, 8, ev, &zero), 0);

	/* NULL timeout with min_nr 0 returns at once. */
	CHECK_RET(io_getevents(ctx, 0, 8, ev, NULL), 0);
	/* NULL timeout waits for min_nr. */
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(io_getevents(ctx, 1, 8, ev, NULL), 1);

	CHECK_RET(io_destroy(ctx), 0);
	close(fd);
	return ctest_finish();
}
