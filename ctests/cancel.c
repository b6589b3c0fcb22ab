/* io_cancel: unknown and completed iocbs, bad arguments, and a pending poll
 * (kernel 6.x answers -EINPROGRESS and delivers the event through the ring). */
#include "ctest.h"
#include <libaio.h>
#include <poll.h>

#define KERNEL_PTR ((void *)0xffffffff81000000UL)

int main(void)
{
	io_context_t ctx = 0;
	struct iocb cb, rd, *list[1];
	struct io_event ev, out[2];
	struct timespec ts = { 5, 0 };
	int p[2], fd;
	char buf[64];

	REQUIRE(io_setup(8, &ctx) == 0);
	REQUIRE(pipe(p) == 0);
	fd = ctest_file("data", 4096, 4, O_RDONLY);
	REQUIRE(fd >= 0);

	/* Never submitted. */
	io_prep_poll(&cb, p[0], POLLIN);
	CHECK_RET(io_cancel(ctx, &cb, &ev), -EINVAL);
	/* Bad pointers: the kernel reads iocb->aio_key first. */
	CHECK_RET(io_cancel(ctx, NULL, &ev), -EFAULT);
	CHECK_RET(io_cancel(ctx, (struct iocb *)KERNEL_PTR, &ev), -EFAULT);
	/* Bad contexts. */
	CHECK_RET(io_cancel(NULL, &cb, &ev), -EINVAL);
	CHECK_RET(io_cancel((io_context_t)12345, &cb, &ev), -EINVAL);

	/* Completed (and reaped) read: -EINVAL. */
	io_prep_pread(&rd, fd, buf, sizeof buf, 0);
	list[0] = &rd;
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_EQ(io_getevents(ctx, 1, 1, out, &ts), 1);
	CHECK_RET(io_cancel(ctx, &rd, &ev), -EINVAL);

	/* Pending poll: -EINPROGRESS; the event comes through io_getevents. */
	cb.data = (void *)42L;
	list[0] = &cb;
	CHECK_RET(io_submit(ctx, 1, list), 1);
	memset(&ev, 0xee, sizeof ev);
	CHECK_RET(io_cancel(ctx, &cb, &ev), -EINPROGRESS);
	CHECK_EQ(io_getevents(ctx, 1, 2, out, &ts), 1);
	CHECK(out[0].obj == &cb && out[0].data == (void *)42L);
	printf("cancelled poll event: res %ld res2 %ld\n", (long)out[0].res, (long)out[0].res2);
	CHECK_EQ(out[0].res, 0);
	CHECK_EQ(out[0].res2, 0);
	/* Already cancelled and reaped: -EINVAL. */
	CHECK_RET(io_cancel(ctx, &cb, &ev), -EINVAL);

	/* The result pointer is not used by the kernel any more: NULL is fine. */
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(io_cancel(ctx, &cb, NULL), -EINPROGRESS);
	CHECK_EQ(io_getevents(ctx, 1, 2, out, &ts), 1);
	/* Wrong key in the iocb: -EINVAL (and the request stays pending). */
	CHECK_RET(io_submit(ctx, 1, list), 1);
	cb.key = 1;
	CHECK_RET(io_cancel(ctx, &cb, &ev), -EINVAL);
	cb.key = 0;
	CHECK_RET(io_cancel(ctx, &cb, &ev), -EINPROGRESS);
	CHECK_EQ(io_getevents(ctx, 1, 2, out, &ts), 1);

	/* io_destroy with a pending poll cancels it and returns 0. */
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(io_destroy(ctx), 0);

	close(fd);
	close(p[0]);
	close(p[1]);
	return ctest_finish();
}
