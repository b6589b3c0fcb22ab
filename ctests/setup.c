/* io_setup, io_destroy, io_queue_init, io_queue_release: successes and every
 * argument error, with errno left untouched. */
#include "ctest.h"
#include <libaio.h>
#include <limits.h>
#include <sys/mman.h>

#define KERNEL_PTR ((void *)0xffffffff81000000UL)

static long aio_max_nr(void)
{
	long v = 65536;
	FILE *f = fopen("/proc/sys/fs/aio-max-nr", "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 65536;
		fclose(f);
	}
	return v;
}

int main(void)
{
	io_context_t ctx = 0, ctx2, many[64];
	void *ro;
	int i, ok;

	/* Bad ctxp: the kernel's -EFAULT. */
	CHECK_RET(io_setup(1, NULL), -EFAULT);
	CHECK_RET(io_setup(1, (io_context_t *)KERNEL_PTR), -EFAULT);
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(ro != MAP_FAILED);
	CHECK_RET(io_setup(1, (io_context_t *)ro), -EFAULT);
	munmap(ro, 4096);

	/* Bad maxevents. */
	CHECK_RET(io_setup(0, &ctx), -EINVAL);
	CHECK_RET(io_setup(-1, &ctx), -EINVAL);
	/* The kernel doubles the unsigned count: 0x80000000 wraps to 0 -> -EAGAIN. */
	CHECK_RET(io_setup(INT_MIN, &ctx), -EAGAIN);
	CHECK_RET(io_setup(INT_MAX, &ctx), -EINVAL);
	/* Above /proc/sys/fs/aio-max-nr but small enough not to overflow. */
	if (aio_max_nr() < (1 << 22))
		CHECK_RET(io_setup((int)aio_max_nr() + 1, &ctx), -EAGAIN);
	CHECK_EQ(ctx, 0);

	/* Success, then an already-initialised *ctxp: -EINVAL, untouched. */
	CHECK_RET(io_setup(8, &ctx), 0);
	CHECK(ctx != 0);
	ctx2 = ctx;
	CHECK_RET(io_setup(8, &ctx2), -EINVAL);
	CHECK(ctx2 == ctx);
	ctx2 = (io_context_t)1;
	CHECK_RET(io_setup(8, &ctx2), -EINVAL);
	CHECK(ctx2 == (io_context_t)1);

	/* io_destroy: bad contexts, then the real one, then it again. */
	CHECK_RET(io_destroy(NULL), -EINVAL);
	CHECK_RET(io_destroy((io_context_t)KERNEL_PTR), -EINVAL);
	CHECK_RET(io_destroy((io_context_t)12345), -EINVAL);
	CHECK_RET(io_destroy((io_context_t)(void *)-1L), -EINVAL);
	CHECK_RET(io_destroy(ctx), 0);
	CHECK_RET(io_destroy(ctx), -EINVAL);
	/* A destroyed context is unknown to every call. */
	CHECK_RET(io_submit(ctx, 0, NULL), -EINVAL);
	{
		struct io_event ev[1];
		struct timespec zero = { 0, 0 };
		CHECK_RET(io_getevents(ctx, 0, 1, ev, &zero), -EINVAL);
		CHECK_RET(io_getevents(ctx, 1, 1, ev, NULL), -EINVAL);
	}

	/* Many contexts at once, all distinct, all destroyable. */
	ok = 1;
	for (i = 0; i < 64; i++) {
		many[i] = 0;
		if (io_setup(4, &many[i]) != 0)
			ok = 0;
	}
	CHECK(ok);
	ok = 1;
	for (i = 1; i < 64; i++)
		if (many[i] == many[i - 1] || many[i] == 0)
			ok = 0;
	CHECK(ok);
	ok = 1;
	for (i = 63; i >= 0; i--)
		if (io_destroy(many[i]) != 0)
			ok = 0;
	CHECK(ok);

	/* io_queue_init: maxevents <= 0 is -EINVAL before *ctxp is looked at. */
	ctx = (io_context_t)0x1234;
	CHECK_RET(io_queue_init(0, &ctx), -EINVAL);
	CHECK_RET(io_queue_init(-5, &ctx), -EINVAL);
	CHECK_RET(io_queue_init(0, NULL), -EINVAL);
	CHECK(ctx == (io_context_t)0x1234);
	/* It clears *ctxp itself (io_setup would refuse a non-zero one). */
	CHECK_RET(io_queue_init(16, &ctx), 0);
	CHECK(ctx != 0 && ctx != (io_context_t)0x1234);
	/* libaio would crash storing through these; we return the kernel's -EFAULT. */
	CHECK_RET(io_queue_init(16, NULL), -EFAULT);
	CHECK_RET(io_queue_init(16, (io_context_t *)KERNEL_PTR), -EFAULT);
	CHECK_RET(io_queue_release(ctx), 0);
	CHECK_RET(io_queue_release(ctx), -EINVAL);
	CHECK_RET(io_queue_release(NULL), -EINVAL);
	return ctest_finish();
}
