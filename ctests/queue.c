/* io_queue_init, io_queue_run (callbacks get ctx, iocb, res, res2),
 * io_queue_wait, io_queue_release. */
#include "ctest.h"
#include <libaio.h>
#include <sys/mman.h>

/* Not declared by libaio.h (libaio comments it out) but exported. */
extern int io_queue_wait(io_context_t ctx, struct timespec *timeout);

struct call {
	io_context_t ctx;
	struct iocb *iocb;
	long res, res2;
};
static struct call calls[16];
static int ncalls;

static void record(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	if (ncalls < 16)
		calls[ncalls] = (struct call){ ctx, iocb, res, res2 };
	ncalls++;
}

static int nested;
static void resubmit(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	(void)res;
	(void)res2;
	/* A callback may submit more work on the same context. */
	if (nested++ == 0 && io_submit(ctx, 1, &iocb) != 1)
		nested = 100;
}

int main(void)
{
	io_context_t ctx = (io_context_t)0x77;
	struct iocb cb[4], *list[4];
	struct timespec zero = { 0, 0 }, ms20 = { 0, 20000000 };
	char buf[4][32];
	int fd, i, ok;

	CHECK_RET(io_queue_init(32, &ctx), 0);
	REQUIRE(ctx != 0 && ctx != (io_context_t)0x77);
	fd = ctest_file("data", 4096, 8, O_RDWR);
	REQUIRE(fd >= 0);

	/* Nothing to do. */
	CHECK_RET(io_queue_run(ctx), 0);
	CHECK_RET(io_queue_wait(ctx, &zero), 0);
	CHECK_RET(io_queue_wait(ctx, &ms20), 0);
	CHECK_RET(io_queue_wait(ctx, NULL), 0);
	CHECK_EQ(ncalls, 0);

	/* Four reads with callbacks; sizes differ so res identifies them. */
	for (i = 0; i < 4; i++) {
		io_prep_pread(&cb[i], fd, buf[i], 10 + i, 100 * i);
		io_set_callback(&cb[i], record);
		CHECK(cb[i].data == (void *)record);
		list[i] = &cb[i];
	}
	cb[3].u.c.offset = 4096 - 5; /* short read: res 5 */
	CHECK_RET(io_submit(ctx, 4, list), 4);
	usleep(20000);
	/* io_queue_wait takes no events (nr 0). */
	CHECK_RET(io_queue_wait(ctx, &zero), 0);
	CHECK_RET(io_queue_run(ctx), 0);
	CHECK_EQ(ncalls, 4);
	ok = 1;
	int seen = 0; /* bit idx: a callback for cb[idx] */
	for (i = 0; i < 4 && i < ncalls; i++) {
		int idx = (int)(calls[i].iocb - cb);
		if (calls[i].ctx != ctx || idx < 0 || idx > 3 || calls[i].res2 != 0 ||
		    calls[i].res != (idx == 3 ? 5 : 10 + idx) || (seen & (1 << idx)))
			ok = 0;
		else
			seen |= 1 << idx;
	}
	CHECK(ok && seen == 0xF); /* each iocb's callback exactly once */
	CHECK_EQ((unsigned char)buf[1][0], ctest_pattern(100, 8));
	/* Drained. */
	CHECK_RET(io_queue_run(ctx), 0);
	CHECK_EQ(ncalls, 4);

	/* Error results reach the callback as negative res: an unmapped user
	 * buffer passes the submit-time checks and faults during the read. */
	{
		void *hole = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		REQUIRE(hole != MAP_FAILED);
		munmap(hole, 4096);
		io_prep_pread(&cb[0], fd, hole, 16, 0);
	}
	io_set_callback(&cb[0], record);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	usleep(20000);
	CHECK_RET(io_queue_run(ctx), 0);
	CHECK_EQ(ncalls, 5);
	CHECK_EQ(calls[4].res, -EFAULT);

	/* A callback that resubmits: the new event is run in the same call or
	 * the next one. */
	io_prep_pread(&cb[0], fd, buf[0], 8, 0);
	io_set_callback(&cb[0], resubmit);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	{
		long long deadline = ctest_now_ns() + 5000000000LL;
		while (nested < 2 && ctest_now_ns() < deadline) {
			CHECK_RET(io_queue_run(ctx), 0);
			usleep(1000);
		}
	}
	CHECK_EQ(nested, 2);

	/* A NULL callback is skipped (libaio would call through NULL). */
	io_prep_pread(&cb[0], fd, buf[0], 8, 0);
	io_set_callback(&cb[0], NULL);
	CHECK(cb[0].data == NULL);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	usleep(20000);
	CHECK_RET(io_queue_run(ctx), 0);
	CHECK_RET(io_getevents(ctx, 0, 1, (struct io_event[1]){ { 0 } }, &zero), 0);

	/* Bad contexts. */
	CHECK_RET(io_queue_run(NULL), -EINVAL);
	CHECK_RET(io_queue_run((io_context_t)12345), -EINVAL);
	CHECK_RET(io_queue_wait(NULL, &zero), -EINVAL);
	CHECK_RET(io_queue_wait((io_context_t)12345, NULL), -EINVAL);
	CHECK_RET(io_queue_release((io_context_t)12345), -EINVAL);

	CHECK_RET(io_queue_release(ctx), 0);
	CHECK_RET(io_queue_run(ctx), -EINVAL);
	CHECK_RET(io_queue_wait(ctx, &zero), -EINVAL);
	close(fd);
	return ctest_finish();
}
