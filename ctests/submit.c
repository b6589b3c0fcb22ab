/* io_submit: argument errors, bad iocbs, partial batches, fd access modes,
 * O_APPEND. */
#include "ctest.h"
#include <libaio.h>

#define KERNEL_PTR ((void *)0xffffffff81000000UL)
#define SIZE 65536

static io_context_t ctx;

/* Reap exactly n events (5 s limit); returns how many came. */
static int reap(int n, struct io_event *ev)
{
	struct timespec ts = { 5, 0 };
	return io_getevents(ctx, n, n, ev, &ts);
}

/* Nothing is left in the ring. */
static int ring_empty(void)
{
	struct io_event ev[4];
	struct timespec ts = { 0, 1000000 };
	return io_getevents(ctx, 1, 4, ev, &ts) == 0;
}

int main(void)
{
	static char buf[4][4096];
	struct iocb cb[4], *list[4];
	struct io_event ev[4];
	int fd, wfd, rfd, afd, i;
	struct stat st;
	char tail[16];

	REQUIRE(io_setup(64, &ctx) == 0);
	fd = ctest_file("data", SIZE, 1, O_RDWR);
	REQUIRE(fd >= 0);
	for (i = 0; i < 4; i++) {
		io_prep_pread(&cb[i], fd, buf[i], 4096, 4096 * i);
		cb[i].data = (void *)(long)(100 + i);
		list[i] = &cb[i];
	}

	/* Bad arrays and bad iocb pointers: -EFAULT. */
	CHECK_RET(io_submit(ctx, 1, NULL), -EFAULT);
	CHECK_RET(io_submit(ctx, 1, (struct iocb **)(void *)-1L), -EFAULT);
	CHECK_RET(io_submit(ctx, 1, (struct iocb **)KERNEL_PTR), -EFAULT);
	list[0] = NULL;
	CHECK_RET(io_submit(ctx, 1, list), -EFAULT);
	list[0] = (struct iocb *)KERNEL_PTR;
	CHECK_RET(io_submit(ctx, 1, list), -EFAULT);
	list[0] = &cb[0];

	/* nr == 0 submits nothing, even with a NULL array; nr < 0 is -EINVAL. */
	CHECK_RET(io_submit(ctx, 0, list), 0);
	CHECK_RET(io_submit(ctx, 0, NULL), 0);
	CHECK_RET(io_submit(ctx, -1, list), -EINVAL);
	CHECK_RET(io_submit(ctx, -1, NULL), -EINVAL);
	CHECK(ring_empty());

	/* Bad contexts. */
	CHECK_RET(io_submit(NULL, 1, list), -EINVAL);
	CHECK_RET(io_submit((io_context_t)12345, 1, list), -EINVAL);
	CHECK_RET(io_submit((io_context_t)KERNEL_PTR, 1, list), -EINVAL);

	/* Invalid opcodes. */
	cb[0].aio_lio_opcode = 4;
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	cb[0].aio_lio_opcode = IO_CMD_NOOP;
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	cb[0].aio_lio_opcode = 99;
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	cb[0].aio_lio_opcode = -1;
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	/* A reserved field set: -EINVAL. */
	io_prep_pread(&cb[0], fd, buf[0], 4096, 0);
	cb[0].u.c.__pad3 = 1;
	CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
	io_prep_pread(&cb[0], fd, buf[0], 4096, 0);
	cb[0].data = (void *)100L;

	/* Bad fds: -EBADF. */
	io_prep_pread(&cb[3], 9999, buf[3], 4096, 0);
	list[0] = &cb[3];
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);
	io_prep_pread(&cb[3], -1, buf[3], 4096, 0);
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);
	CHECK(ring_empty());
	list[0] = &cb[0];

	/* Partial batches: the count of iocbs accepted before the bad one. */
	io_prep_pread(&cb[2], 9999, buf[2], 4096, 0);
	CHECK_RET(io_submit(ctx, 4, list), 2);
	CHECK_EQ(reap(2, ev), 2);
	CHECK(ring_empty());
	io_prep_pread(&cb[2], fd, buf[2], 4096, 8192);
	list[1] = NULL;
	CHECK_RET(io_submit(ctx, 4, list), 1);
	CHECK_EQ(reap(1, ev), 1);
	CHECK(ev[0].obj == &cb[0]);
	list[1] = (struct iocb *)KERNEL_PTR;
	CHECK_RET(io_submit(ctx, 2, list), 1);
	CHECK_EQ(reap(1, ev), 1);
	list[1] = &cb[1];
	cb[3].aio_lio_opcode = 99;
	CHECK_RET(io_submit(ctx, 4, list), 3);
	CHECK_EQ(reap(3, ev), 3);
	CHECK(ring_empty());
	io_prep_pread(&cb[3], fd, buf[3], 4096, 3 * 4096);

	/* A full batch. */
	CHECK_RET(io_submit(ctx, 4, list), 4);
	CHECK_EQ(reap(4, ev), 4);
	for (i = 0; i < 4; i++) {
		int idx = (int)(ev[i].obj - cb);
		CHECK(idx >= 0 && idx < 4);
		CHECK_EQ(ev[i].res, 4096);
		CHECK_EQ(ev[i].res2, 0);
		CHECK(ev[i].data == cb[idx].data);
		CHECK_EQ((unsigned char)buf[idx][17], ctest_pattern(4096 * idx + 17, 1));
	}

	/* A read on a write-only fd and a write on a read-only fd: -EBADF. */
	wfd = open("data", O_WRONLY);
	rfd = open("data", O_RDONLY);
	REQUIRE(wfd >= 0 && rfd >= 0);
	io_prep_pread(&cb[0], wfd, buf[0], 4096, 0);
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);
	io_prep_pwrite(&cb[0], rfd, buf[0], 4096, 0);
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);
	io_prep_preadv(&cb[0], wfd, NULL, 0, 0);
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);
	io_prep_pwritev(&cb[0], rfd, NULL, 0, 0);
	CHECK_RET(io_submit(ctx, 1, list), -EBADF);
	CHECK(ring_empty());
	/* The right modes work. */
	io_prep_pread(&cb[0], rfd, buf[0], 100, 5);
	io_prep_pwrite(&cb[1], wfd, "hello", 5, SIZE);
	CHECK_RET(io_submit(ctx, 2, list), 2);
	CHECK_EQ(reap(2, ev), 2);
	CHECK_EQ(ev[0].res, ev[0].obj == &cb[0] ? 100 : 5);
	CHECK_EQ(ev[1].res, ev[1].obj == &cb[0] ? 100 : 5);
	CHECK(fstat(fd, &st) == 0 && st.st_size == SIZE + 5);

	/* O_APPEND: the offset is ignored, data goes to the end. */
	afd = ctest_file("append", 100, 3, O_WRONLY | O_APPEND);
	REQUIRE(afd >= 0);
	io_prep_pwrite(&cb[0], afd, "0123456789", 10, 0);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_EQ(reap(1, ev), 1);
	CHECK_EQ(ev[0].res, 10);
	CHECK(stat("append", &st) == 0 && st.st_size == 110);
	{
		int r = open("append", O_RDONLY);
		CHECK(pread(r, tail, 10, 100) == 10 && memcmp(tail, "0123456789", 10) == 0);
		CHECK(pread(r, tail, 1, 0) == 1 && (unsigned char)tail[0] == ctest_pattern(0, 3));
		close(r);
	}

	close(afd);
	close(wfd);
	close(rfd);
	close(fd);
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
