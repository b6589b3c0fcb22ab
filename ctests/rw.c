/* Reads and writes: pread/pwrite, preadv/pwritev, preadv2/pwritev2 with
 * RWF_* flags (RWF_NOWAIT, RWF_DSYNC, an unknown flag), short reads at EOF,
 * O_DIRECT. */
#include "ctest.h"
#include <libaio.h>
#include <sys/uio.h>

#define SIZE 65536

static io_context_t ctx;

/* Submit one iocb and reap its event; returns the event's res (or a submit error). */
static long run1(struct iocb *cb, struct io_event *ev)
{
	struct timespec ts = { 5, 0 };
	int r = io_submit(ctx, 1, &cb);
	if (r != 1)
		return r == 0 ? -99999 : r;
	if (io_getevents(ctx, 1, 1, ev, &ts) != 1)
		return -99998;
	if (ev->obj != cb)
		return -99997;
	return (long)ev->res;
}

static int pattern_ok(const unsigned char *p, size_t n, size_t off, int seed)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (p[i] != ctest_pattern(off + i, seed))
			return 0;
	return 1;
}

int main(void)
{
	static unsigned char a[8192], b[8192], c[8192];
	struct iocb cb;
	struct io_event ev;
	struct iovec iov[3];
	int fd, dfd;
	long r;
	unsigned char *dbuf;

	REQUIRE(io_setup(16, &ctx) == 0);
	fd = ctest_file("data", SIZE, 5, O_RDWR);
	REQUIRE(fd >= 0);

	/* pread */
	io_prep_pread(&cb, fd, a, 4096, 1000);
	cb.data = (void *)0x1234;
	CHECK_EQ(run1(&cb, &ev), 4096);
	CHECK(ev.data == (void *)0x1234);
	CHECK_EQ(ev.res2, 0);
	CHECK(pattern_ok(a, 4096, 1000, 5));
	/* Short read at EOF, and a read past EOF. */
	io_prep_pread(&cb, fd, a, 8192, SIZE - 100);
	CHECK_EQ(run1(&cb, &ev), 100);
	CHECK(pattern_ok(a, 100, SIZE - 100, 5));
	io_prep_pread(&cb, fd, a, 8192, SIZE + 4096);
	CHECK_EQ(run1(&cb, &ev), 0);
	/* Zero-length read. */
	io_prep_pread(&cb, fd, a, 0, 0);
	CHECK_EQ(run1(&cb, &ev), 0);
	/* A bad buffer is the kernel's -EFAULT, in the event. */
	io_prep_pread(&cb, fd, (void *)0xffffffff81000000UL, 4096, 0);
	r = run1(&cb, &ev);
	CHECK(r == -EFAULT);
	/* Negative offset: -EINVAL (at submit or in the event). */
	io_prep_pread(&cb, fd, a, 4096, -4096);
	r = run1(&cb, &ev);
	CHECK_EQ(r, -EINVAL);

	/* pwrite then read back with pread(2). */
	memset(b, 0xab, sizeof b);
	io_prep_pwrite(&cb, fd, b, 3000, 200);
	CHECK_EQ(run1(&cb, &ev), 3000);
	CHECK(pread(fd, c, 3000, 200) == 3000 && memcmp(b, c, 3000) == 0);
	CHECK(pread(fd, c, 1, 199) == 1 && c[0] == ctest_pattern(199, 5));
	/* Writing past EOF extends the file. */
	io_prep_pwrite(&cb, fd, b, 10, SIZE + 10);
	CHECK_EQ(run1(&cb, &ev), 10);
	{
		struct stat st;
		CHECK(fstat(fd, &st) == 0 && st.st_size == SIZE + 20);
	}

	/* preadv: three segments. */
	memset(a, 0, sizeof a);
	iov[0].iov_base = a;
	iov[0].iov_len = 10;
	iov[1].iov_base = a + 100;
	iov[1].iov_len = 0;
	iov[2].iov_base = a + 200;
	iov[2].iov_len = 4000;
	io_prep_preadv(&cb, fd, iov, 3, 8192);
	CHECK_EQ(run1(&cb, &ev), 4010);
	CHECK(pattern_ok(a, 10, 8192, 5));
	CHECK(pattern_ok(a + 200, 4000, 8192 + 10, 5));
	CHECK_EQ(a[100], 0);
	/* pwritev, read back. */
	memset(b, 0x11, 100);
	memset(b + 100, 0x22, 100);
	iov[0].iov_base = b;
	iov[0].iov_len = 100;
	iov[1].iov_base = b + 100;
	iov[1].iov_len = 100;
	io_prep_pwritev(&cb, fd, iov, 2, 16384);
	CHECK_EQ(run1(&cb, &ev), 200);
	CHECK(pread(fd, c, 200, 16384) == 200 && memcmp(b, c, 200) == 0);
	/* Zero segments, and a bad iovec pointer. */
	io_prep_preadv(&cb, fd, iov, 0, 0);
	CHECK_EQ(run1(&cb, &ev), 0);
	io_prep_preadv(&cb, fd, (const struct iovec *)0xffffffff81000000UL, 1, 0);
	CHECK_EQ(run1(&cb, &ev), -EFAULT);
	/* More segments than UIO_MAXIOV: -EINVAL. */
	io_prep_preadv(&cb, fd, iov, 1025, 0);
	CHECK_EQ(run1(&cb, &ev), -EINVAL);

	/* pwritev2 with RWF_DSYNC, preadv2 with flags 0. */
	memset(b, 0x33, 512);
	iov[0].iov_base = b;
	iov[0].iov_len = 512;
	io_prep_pwritev2(&cb, fd, iov, 1, 0, RWF_DSYNC);
	CHECK_EQ(cb.aio_rw_flags, RWF_DSYNC);
	CHECK_EQ(run1(&cb, &ev), 512);
	iov[0].iov_base = a;
	io_prep_preadv2(&cb, fd, iov, 1, 0, 0);
	CHECK_EQ(run1(&cb, &ev), 512);
	CHECK(memcmp(a, b, 512) == 0);
	/* RWF_NOWAIT on a regular file: the data (cached), or the kernel may
	 * refuse with -EAGAIN / -EOPNOTSUPP; nothing else. */
	io_prep_preadv2(&cb, fd, iov, 1, 4096, RWF_NOWAIT);
	CHECK_EQ(cb.aio_rw_flags, RWF_NOWAIT);
	r = run1(&cb, &ev);
	printf("preadv2(RWF_NOWAIT) on a cached file: %ld\n", r);
	CHECK(r == 512 || r == -EAGAIN || r == -EOPNOTSUPP);
	if (r == 512)
		CHECK(pattern_ok(a, 512, 4096, 5));
	/* An unknown RWF_ flag is refused at submission. */
	io_prep_preadv2(&cb, fd, iov, 1, 0, (int)0x80000000u);
	CHECK_RET(io_submit(ctx, 1, (struct iocb *[]){ &cb }), -EOPNOTSUPP);
	/* RWF_APPEND on pwritev2: written at the end. */
	{
		struct stat st1, st2;
		REQUIRE(fstat(fd, &st1) == 0);
		io_prep_pwritev2(&cb, fd, iov, 1, 0, RWF_APPEND);
		CHECK_EQ(run1(&cb, &ev), 512);
		CHECK(fstat(fd, &st2) == 0 && st2.st_size == st1.st_size + 512);
	}

	/* O_DIRECT: aligned read and write round trip. */
	dfd = ctest_direct_file("direct", SIZE, 9, O_RDWR);
	REQUIRE(dfd >= 0);
	dbuf = ctest_aligned(4096, 8192);
	REQUIRE(dbuf);
	io_prep_pread(&cb, dfd, dbuf, 8192, 4096);
	CHECK_EQ(run1(&cb, &ev), 8192);
	CHECK(pattern_ok(dbuf, 8192, 4096, 9));
	memset(dbuf, 0x5a, 4096);
	io_prep_pwrite(&cb, dfd, dbuf, 4096, 0);
	CHECK_EQ(run1(&cb, &ev), 4096);
	memset(dbuf, 0, 4096);
	io_prep_pread(&cb, dfd, dbuf, 4096, 0);
	CHECK_EQ(run1(&cb, &ev), 4096);
	CHECK(dbuf[0] == 0x5a && dbuf[4095] == 0x5a);
	/* Misaligned O_DIRECT: -EINVAL. */
	io_prep_pread(&cb, dfd, dbuf + 1, 4096, 0);
	CHECK_EQ(run1(&cb, &ev), -EINVAL);
	free(dbuf);
	close(dfd);

	close(fd);
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
