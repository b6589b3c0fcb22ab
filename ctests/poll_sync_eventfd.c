/* IO_CMD_POLL (io_prep_poll, io_poll), IO_CMD_FSYNC/FDSYNC (io_prep_fsync,
 * io_prep_fdsync, io_fsync, io_fdsync with callbacks) and completion
 * notification through an eventfd (io_set_eventfd / IOCB_FLAG_RESFD). */
#include "ctest.h"
#include <libaio.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>

static io_context_t ctx;

static int reap(int min, int max, struct io_event *ev, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	return io_getevents(ctx, min, max, ev, &ts);
}

static int cb_calls;
static io_context_t cb_ctx;
static struct iocb *cb_iocb;
static long cb_res, cb_res2;

static void callback(io_context_t c, struct iocb *io, long res, long res2)
{
	cb_calls++;
	cb_ctx = c;
	cb_iocb = io;
	cb_res = res;
	cb_res2 = res2;
}

int main(void)
{
	struct iocb cb[2], *list[2] = { &cb[0], &cb[1] };
	struct io_event ev[2];
	int p[2], fd, efd;
	uint64_t count;
	char c = 'x';

	REQUIRE(io_setup(16, &ctx) == 0);
	REQUIRE(pipe(p) == 0);

	/* Poll: pending until the pipe is readable. */
	io_prep_poll(&cb[0], p[0], POLLIN);
	cb[0].data = (void *)7L;
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_EQ(reap(1, 1, ev, 50), 0);
	CHECK(write(p[1], &c, 1) == 1);
	CHECK_EQ(reap(1, 1, ev, 5000), 1);
	CHECK(ev[0].obj == &cb[0] && ev[0].data == (void *)7L);
	CHECK_EQ(ev[0].res & POLLIN, POLLIN);
	CHECK_EQ(ev[0].res2, 0);
	/* Already readable: completes at once. */
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_EQ(reap(1, 1, ev, 5000), 1);
	CHECK_EQ(ev[0].res & POLLIN, POLLIN);
	CHECK(read(p[0], &c, 1) == 1);
	/* POLLOUT on the write end. */
	io_prep_poll(&cb[1], p[1], POLLOUT);
	list[0] = &cb[1];
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_EQ(reap(1, 1, ev, 5000), 1);
	CHECK_EQ(ev[0].res, POLLOUT);
	list[0] = &cb[0];
	/* Poll on a bad fd. */
	io_prep_poll(&cb[0], 9999, POLLIN);
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);

	/* io_poll: prep + callback + submit, then io_queue_run calls the callback. */
	CHECK_RET(io_poll(ctx, &cb[0], callback, p[0], POLLIN), 1);
	CHECK(cb[0].aio_lio_opcode == IO_CMD_POLL && cb[0].u.poll.events == POLLIN);
	CHECK(cb[0].data == (void *)callback);
	CHECK_RET(io_queue_run(ctx), 0);
	CHECK_EQ(cb_calls, 0);
	CHECK(write(p[1], &c, 1) == 1);
	usleep(20000);
	CHECK_RET(io_queue_run(ctx), 0);
	CHECK_EQ(cb_calls, 1);
	CHECK(cb_ctx == ctx && cb_iocb == &cb[0]);
	CHECK_EQ(cb_res & POLLIN, POLLIN);
	CHECK_EQ(cb_res2, 0);
	CHECK(read(p[0], &c, 1) == 1);
	/* io_poll with a bad fd: the submit error. */
	CHECK_RET(io_poll(ctx, &cb[0], callback, 9999, POLLIN), -EBADF);
	/* NULL iocb: libaio crashes; we return the kernel's answer to a NULL iocb. */
	CHECK_RET(io_poll(ctx, NULL, callback, p[0], POLLIN), -EFAULT);
	CHECK_RET(io_fsync(ctx, NULL, callback, p[0]), -EFAULT);
	CHECK_RET(io_fdsync(ctx, NULL, callback, p[0]), -EFAULT);

	/* fsync / fdatasync on a file. */
	fd = ctest_file("data", 4096, 2, O_RDWR);
	REQUIRE(fd >= 0);
	io_prep_fsync(&cb[0], fd);
	io_prep_fdsync(&cb[1], fd);
	list[1] = &cb[1];
	CHECK_RET(io_submit(ctx, 2, list), 2);
	CHECK_EQ(reap(2, 2, ev, 5000), 2);
	CHECK_EQ(ev[0].res, 0);
	CHECK_EQ(ev[1].res, 0);
	CHECK(ev[0].obj != ev[1].obj);
	/* On a pipe: no fsync method, refused at submission. */
	io_prep_fsync(&cb[0], p[0]);
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	io_prep_fdsync(&cb[0], p[0]);
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	/* io_fsync / io_fdsync with callbacks. */
	cb_calls = 0;
	CHECK_RET(io_fsync(ctx, &cb[0], callback, fd), 1);
	CHECK(cb[0].aio_lio_opcode == IO_CMD_FSYNC && cb[0].data == (void *)callback);
	CHECK_RET(io_fdsync(ctx, &cb[1], callback, fd), 1);
	CHECK(cb[1].aio_lio_opcode == IO_CMD_FDSYNC && cb[1].data == (void *)callback);
	{
		long long deadline = ctest_now_ns() + 5000000000LL;
		while (cb_calls < 2 && ctest_now_ns() < deadline) {
			CHECK_RET(io_queue_run(ctx), 0);
			if (cb_calls < 2)
				usleep(1000);
		}
	}
	CHECK_EQ(cb_calls, 2);
	CHECK_EQ(cb_res, 0);
	CHECK_RET(io_fsync(ctx, &cb[0], callback, 9999), -EBADF);
	CHECK_RET(io_fdsync(ctx, &cb[0], callback, p[0]), -EINVAL);

	/* eventfd: IOCB_FLAG_RESFD is ORed in, resfd set, other fields kept. */
	efd = eventfd(0, 0);
	REQUIRE(efd >= 0);
	io_prep_pwrite(&cb[0], fd, "abcd", 4, 0);
	io_prep_pread(&cb[1], fd, &count, 4, 0);
	io_set_eventfd(&cb[0], efd);
	io_set_eventfd(&cb[1], efd);
	CHECK_EQ(cb[0].u.c.flags, 1);
	CHECK_EQ(cb[0].u.c.resfd, efd);
	CHECK_EQ(cb[0].u.c.nbytes, 4);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	count = 0;
	CHECK(read(efd, &count, 8) == 8);
	CHECK_EQ(count, 1);
	CHECK_EQ(reap(1, 1, ev, 5000), 1);
	CHECK_EQ(ev[0].res, 4);
	/* Two completions add up on the eventfd. */
	list[0] = &cb[1];
	io_prep_pwrite(&cb[0], fd, "efgh", 4, 4);
	io_set_eventfd(&cb[0], efd);
	list[1] = &cb[0];
	CHECK_RET(io_submit(ctx, 2, list), 2);
	CHECK_EQ(reap(2, 2, ev, 5000), 2);
	count = 0;
	CHECK(read(efd, &count, 8) == 8);
	CHECK_EQ(count, 2);
	/* A bad eventfd: -EBADF; a descriptor that is not an eventfd: -EINVAL. */
	list[0] = &cb[0];
	io_set_eventfd(&cb[0], 9999);
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);
	io_set_eventfd(&cb[0], p[0]);
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	CHECK_EQ(reap(1, 2, ev, 10), 0);

	close(efd);
	close(fd);
	close(p[0]);
	close(p[1]);
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
