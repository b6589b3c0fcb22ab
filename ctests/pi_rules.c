/* IO_CMD_PREADVM / IO_CMD_PWRITEVM: every rule, single-threaded.
 * Works on any kernel: a DIX-passthrough kernel or the library's emulation
 * must give the same answers (on storage without integrity support). */
#include "pi_common.h"
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/fs.h>

static const struct fmt T1_512 = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

/* Write `len` bytes with PI at `off`; return the event's res (or the
 * io_submit error). */
static long write_pi(io_context_t ctx, int fd, uint8_t *data, size_t len, uint8_t *pi, size_t pilen, long long off)
{
	struct iovec iov[2] = { { data, len }, { pi, pilen } };
	struct iocb io, *l[1] = { &io };
	struct io_event ev;
	io_prep_pwritevm(&io, fd, iov, 2, off);
	io.data = (void *)0x5157;
	int r = io_submit(ctx, 1, l);
	if (r != 1)
		return r < 0 ? r : -9999;
	if (reap1(ctx, &ev) != 1)
		return -9998;
	if (ev.obj != &io || ev.data != (void *)0x5157)
		return -9997;
	return (long)ev.res;
}

static long read_pi(io_context_t ctx, int fd, uint8_t *data, size_t len, uint8_t *pi, size_t pilen, long long off)
{
	struct iovec iov[2] = { { data, len }, { pi, pilen } };
	struct iocb io, *l[1] = { &io };
	struct io_event ev;
	io_prep_preadvm(&io, fd, iov, 2, off);
	io.data = (void *)0x7EAD;
	int r = io_submit(ctx, 1, l);
	if (r != 1)
		return r < 0 ? r : -9999;
	if (reap1(ctx, &ev) != 1)
		return -9998;
	if (ev.obj != &io || ev.data != (void *)0x7EAD)
		return -9997;
	return (long)ev.res;
}

static int file_equals(int fd, const uint8_t *want, size_t len, long long off)
{
	uint8_t *got = xalloc(len);
	ssize_t n = pread(fd, got, len, off);
	int eq = n == (ssize_t)len && memcmp(got, want, len) == 0;
	free(got);
	return eq;
}

static void test_format(io_context_t ctx, int fd, struct fmt f, uint64_t *rng)
{
	char what[128];
	snprintf(what, sizeof what, "format %#x/%zu", f.code, f.interval);
	CHECK_EQ_MSG(io_set_pi_format(ctx, f.code, (unsigned)f.interval), 0, "io_set_pi_format");
	size_t n = 16, len = n * f.interval, ts = fmt_tuple(f);
	long long off = 8 * (long long)f.interval * 3;
	uint8_t *data = xalloc(len), *pi = xalloc(n * ts), *back = xalloc(len), *piback = xalloc(n * ts),
		*want = xalloc(n * ts);
	fill_random(data, len, rng);
	expected_pi(f, pi, data, len, off);
	/* Type 1: the ref tag is the interval number; Type 3 writes anything. */
	if (fmt_type1(f))
		for (size_t i = 0; i < n; i++)
			put_tuple(f, pi + i * ts, data + i * f.interval, (uint16_t)(0x100 + i),
				  (uint64_t)off / f.interval + i);
	else
		for (size_t i = 0; i < n; i++)
			put_tuple(f, pi + i * ts, data + i * f.interval, 0x42, 0xABCDEF);
	CHECK_EQ_MSG(write_pi(ctx, fd, data, len, pi, n * ts, off), len, what);
	CHECKF(file_equals(fd, data, len, off), "%s: file holds the data", what);
	memset(piback, 0xEE, n * ts);
	CHECK_EQ_MSG(read_pi(ctx, fd, back, len, piback, n * ts, off), len, what);
	CHECKF(memcmp(back, data, len) == 0, "%s: data read back", what);
	expected_pi(f, want, data, len, off);
	CHECKF(memcmp(piback, want, n * ts) == 0, "%s: PI read back = independent computation (app 0)", what);

	/* Bad guard in interval 5 -> EILSEQ, nothing written. */
	uint8_t *data2 = xalloc(len);
	fill_random(data2, len, rng);
	expected_pi(f, pi, data2, len, off);
	pi[5 * ts] ^= 0x01;
	CHECK_EQ_MSG(write_pi(ctx, fd, data2, len, pi, n * ts, off), -EILSEQ, "bad guard -> -EILSEQ");
	CHECKF(file_equals(fd, data, len, off), "%s: bad guard: file unchanged", what);
	/* Same interval escaped: app tag 0xFFFF (+ ref all ones for Type 3). */
	put_tuple(f, pi + 5 * ts, data, 0xFFFF, fmt_tuple(f) == 8 ? 0xFFFFFFFFULL : 0xFFFFFFFFFFFFULL);
	CHECK_EQ_MSG(write_pi(ctx, fd, data2, len, pi, n * ts, off), len, "escaped interval is not checked");
	CHECKF(file_equals(fd, data2, len, off), "%s: escaped write landed", what);
	if (!fmt_type1(f)) {
		/* Type 3: app 0xFFFF alone does not escape. */
		put_tuple(f, pi + 5 * ts, data, 0xFFFF, 7);
		CHECK_EQ_MSG(write_pi(ctx, fd, data, len, pi, n * ts, off), -EILSEQ, "type 3 needs both escapes");
		CHECKF(file_equals(fd, data2, len, off), "%s: file unchanged", what);
	}
	/* Wrong ref tag: EILSEQ for Type 1 only. */
	expected_pi(f, pi, data, len, off);
	put_tuple(f, pi + 3 * ts, data + 3 * f.interval, 0, 999999);
	long r = write_pi(ctx, fd, data, len, pi, n * ts, off);
	if (fmt_type1(f)) {
		CHECK_EQ_MSG(r, -EILSEQ, "bad ref tag -> -EILSEQ (type 1)");
		CHECKF(file_equals(fd, data2, len, off), "%s: bad ref: file unchanged", what);
	} else {
		CHECK_EQ_MSG(r, len, "ref tag not checked (type 3)");
	}
	free(data); free(data2); free(pi); free(back); free(piback); free(want);
	CHECK_EQ_MSG(io_set_pi_format(ctx, IO_PI_T10_DIF_TYPE1_CRC, 512), 0, "back to the default");
}

static void test_invalid(io_context_t ctx, int fd)
{
	uint8_t *data = xalloc(8192), *pi = xalloc(128);
	struct iovec iov[3] = { { data, 4096 }, { pi, 64 }, { pi, 64 } };
	struct iocb io;

	io_prep_pwritevm(&io, fd, iov, 2, 0);
	iov[1].iov_len = 63;
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "short PI buffer (write)");
	io_prep_preadvm(&io, fd, iov, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "short PI buffer (read)");
	iov[1].iov_len = 0;
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "empty PI iovec");
	/* The same with a NULL base, as an empty iovec is often written (the
	 * kernel's import accepts {NULL, 0}: -EINVAL is the PI rule's). */
	iov[1].iov_base = NULL;
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "empty PI iovec {NULL, 0} (read)");
	io_prep_pwritevm(&io, fd, iov, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "empty PI iovec {NULL, 0} (write)");
	iov[1].iov_base = pi;
	iov[1].iov_len = 64;
	io_prep_preadvm(&io, fd, iov, 1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "one iovec");
	io_prep_preadvm(&io, fd, iov, 0, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "no iovec");
	/* An iovec count set by hand beyond 32 bits: the kernel refuses one
	 * negative as ssize_t and imports (unsigned)count iovecs, as it does
	 * for the same plain preadv.  Regression: the library refused 2^32 + 2
	 * (-EINVAL) where the kernel reads 2 iovecs. */
	if (sizeof(unsigned long) == 8) {
		struct io_event ev;
		io_prep_preadv(&io, fd, iov, 1, 0);
		io.u.c.nbytes = (unsigned long)((1ull << 32) + 1);
		CHECK_EQ_MSG(submit1(ctx, &io), 1, "plain preadv, count 2^32 + 1: one iovec");
		CHECK_EQ_MSG(reap1(ctx, &ev), 1, "its event");
		io_prep_preadvm(&io, fd, iov, 2, 0);
		io.u.c.nbytes = (unsigned long)((1ull << 32) + 2);
		CHECK_EQ_MSG(submit1(ctx, &io), 1, "PI read, count 2^32 + 2: two iovecs");
		CHECK_EQ_MSG(reap1(ctx, &ev), 1, "its event");
		CHECK_EQ_MSG((long)ev.res, 4096, "its res");
		io.u.c.nbytes = (unsigned long)((1ull << 63) + 2);
		CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "PI read, count negative as ssize_t");
	}
	iov[0].iov_len = 4000;
	io_prep_pwritevm(&io, fd, iov, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "data length not a multiple of 512");
	iov[0].iov_len = 4096;
	io_prep_pwritevm(&io, fd, iov, 2, 100);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "offset not a multiple of 512");
	io_prep_pwritevm(&io, fd, iov, 2, -512);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "negative offset");

	/* 4096-byte interval: 512-aligned is not enough. */
	CHECK_EQ_MSG(io_set_pi_format(ctx, IO_PI_T10_DIF_TYPE1_CRC, 4096), 0, "4096 interval");
	io_prep_pwritevm(&io, fd, iov, 2, 512);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "offset not a multiple of 4096");
	CHECK_EQ_MSG(io_set_pi_format(ctx, IO_PI_T10_DIF_TYPE1_CRC, 512), 0, "512 interval");
	CHECK_EQ_MSG(io_set_pi_format(ctx, 2, 512), -EINVAL, "unknown format");
	CHECK_EQ_MSG(io_set_pi_format(ctx, IO_PI_NVME_TYPE1_CRC64, 1024), -EINVAL, "unknown interval");
	CHECK_EQ_MSG(io_set_pi_format((io_context_t)0x12345000, IO_PI_NVME_TYPE1_CRC64, 512), -EINVAL,
		 "unknown context");

	/* Not O_DIRECT. */
	int bfd = open("buffered.dat", O_RDWR | O_CREAT, 0644);
	io_prep_pwritevm(&io, bfd, iov, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "fd without O_DIRECT (write)");
	io_prep_preadvm(&io, bfd, iov, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "fd without O_DIRECT (read)");
	close(bfd);
	/* Wrong direction, bad fd. */
	int wfd = open("pi.dat", O_WRONLY | O_DIRECT);
	io_prep_preadvm(&io, wfd, iov, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EBADF, "read from a write-only fd");
	close(wfd);
	io_prep_preadvm(&io, 9999, iov, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EBADF, "closed fd");
	/* Reserved field set: the kernel's -EINVAL stands. */
	io_prep_preadvm(&io, fd, iov, 2, 0);
	io.u.c.__pad3 = 1;
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "aio_reserved2 != 0");
	free(data); free(pi);
}

/* The PI iovec gets the checks the kernel makes of every iovec it imports
 * (a DIX kernel imports it with the data ones): for each range, the PI
 * iocb's io_submit answer must be the plain preadv/pwritev's when the
 * kernel refuses that one at submit (here: a length negative as ssize_t,
 * -EINVAL; a range access_ok() refuses, -EFAULT), and an acceptance when
 * it accepts it (a PI iovec longer than the tuples need is fine; only its
 * first 64 bytes are used).  Regression: the library accepted a PI iov_len
 * of SIZE_MAX and a PI range reaching past user space; and one reaching
 * past this machine's user space but not past the largest any kernel has
 * (2^47 bytes from the heap, with 4-level page tables: the kernel's plain
 * preadv answers -EFAULT there, accepted with 5-level ones). */
static void test_pi_iovec_import(io_context_t ctx, int fd)
{
	uint8_t *data = xalloc(4096), *pi = xalloc(4096);
	uint64_t rng = 99;
	fill_random(data, 4096, &rng);
	CHECK_EQ_MSG(pwrite(fd, data, 4096, 1 << 20), 4096, "the data the reads below read");
	struct {
		const char *what;
		uintptr_t base;
		size_t len;
		long want; /* 1: accepted; 0: as the kernel's plain preadv; else the error */
	} cases[] = {
		{ "length SIZE_MAX", (uintptr_t)pi, SIZE_MAX, -EINVAL },
		{ "length 2^63", (uintptr_t)pi, (size_t)1 << 63, -EINVAL },
		{ "length 2^63 - 1 (reaches past user space)", (uintptr_t)pi, ((size_t)1 << 63) - 1, -EFAULT },
		{ "kernel address", (uintptr_t)0xffff888000000000ull, 64, -EFAULT },
		{ "length 2^40", (uintptr_t)pi, (size_t)1 << 40, 1 },
		{ "length 2^47 (past user space with 4-level page tables)", (uintptr_t)pi, (size_t)1 << 47, 0 },
		{ "longer than needed (4096 on a 64-byte need)", (uintptr_t)pi, 4096, 1 },
	};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		for (int write = 0; write < 2; write++) {
			struct iovec iov[2] = { { data, 4096 }, { (void *)cases[c].base, cases[c].len } };
			struct iocb io;
			struct io_event ev;
			/* The kernel's answer for the same two iovecs, plain (its
			 * import checks are the same for reads and writes): a read
			 * past the end of the file, which touches no memory. */
			io_prep_preadv(&io, fd, iov, 2, (long long)1 << 40);
			int plain = submit1(ctx, &io);
			if (plain == 1) {
				CHECK_EQ_MSG(reap1(ctx, &ev), 1, "plain event");
				CHECK_EQ_MSG((long)ev.res, 0, "plain read past the end: nothing read");
			}
			long want = cases[c].want ? cases[c].want : plain;
			CHECKF(plain == 1 ? want == 1 : plain == want,
			       "PI iovec %s: the kernel's plain preadv answers %d", cases[c].what, plain);
			if (write) {
				expected_pi(T1_512, pi, data, 4096, 1 << 20);
				io_prep_pwritevm(&io, fd, iov, 2, 1 << 20);
			} else {
				io_prep_preadvm(&io, fd, iov, 2, 1 << 20);
			}
			int r = submit1(ctx, &io);
			CHECKF(r == want, "PI iovec %s (%s): io_submit %d, want %ld", cases[c].what,
			       write ? "write" : "read", r, want);
			if (r == 1) {
				CHECK_EQ_MSG(reap1(ctx, &ev), 1, "PI event");
				CHECKF((long)ev.res == 4096, "PI iovec %s (%s): res %ld", cases[c].what,
				       write ? "write" : "read", (long)ev.res);
			}
		}
	}
	uint8_t want[64];
	expected_pi(T1_512, want, data, 4096, 1 << 20);
	CHECKF(memcmp(pi, want, 64) == 0, "PI read through a longer PI iovec: the tuples");
	free(data);
	free(pi);
}

/* Which error a PI iocb with two faults gets: the kernel's own, in the
 * kernel's order.  `io_submit_one` refuses a set `aio_reserved2` and an
 * `aio_nbytes` negative as ssize_t before it looks up the fd or eventfd;
 * a kernel with DIX passthrough imports the iovec array (-EFAULT for an
 * unreadable array, -EINVAL for a negative length in any iovec, then
 * -EFAULT for a range past user space) before its `nr_segs < 2` check and
 * before the PI lengths. */
static void test_error_order(io_context_t ctx, int fd)
{
	uint8_t *data = xalloc(8192), *pi = xalloc(4096);
	int ro = open("pi.dat", O_RDONLY | O_DIRECT);
	CHECKF(ro >= 0, "open read-only");
	struct iovec iov[2] = { { data, 8192 }, { pi, 128 } };
	struct iovec kernel_one[1] = { { (void *)0xffff800000000000ull, 4096 } };
	struct iovec neg_data[2] = { { data, (size_t)-1 }, { (void *)0xffff800000000000ull, 128 } };
	struct iovec bad_data_short_pi[2] = { { (void *)0xffff800000000000ull, 8192 }, { pi, 8 } };
	struct iocb io;

	io_prep_pwritevm(&io, -1, iov, 2, 0);
	io.u.c.__pad3 = 1;
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "aio_reserved2 set, fd -1: reserved field first");
	io_prep_pwritevm(&io, ro, iov, 2, 0);
	io.u.c.__pad3 = 1;
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "aio_reserved2 set, read-only fd");
	io_prep_pwritevm(&io, fd, iov, 2, 0);
	io.u.c.__pad3 = 1;
	io_set_eventfd(&io, 1000);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "aio_reserved2 set, closed eventfd");
	io_prep_pwritevm(&io, -1, iov, -1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "iovcnt -1 (aio_nbytes negative), fd -1");
	io_prep_pwritevm(&io, ro, iov, -1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "iovcnt -1, read-only fd");
	io_prep_preadvm(&io, fd, NULL, 1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EFAULT, "one iovec, array NULL: the import fails first");
	io_prep_preadvm(&io, fd, kernel_one, 1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EFAULT, "one iovec past user space: the import fails first");
	io_prep_preadvm(&io, fd, iov, 1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "one good iovec: nr_segs < 2");
	io_prep_preadvm(&io, fd, neg_data, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EINVAL, "negative data length before a PI iovec past user space");
	io_prep_preadvm(&io, fd, bad_data_short_pi, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EFAULT, "data past user space before a short PI iovec");
	close(ro);
	free(data);
	free(pi);
}

/* A write whose data lies in a page the caller has just unmapped (a
 * dangling pointer), after enough other writes that the library proves the
 * batch's memory with the mapping table: it fails with -EFAULT in its
 * event and writes nothing, and the rest of the batch goes in (it was
 * refused at io_submit, ending the batch, until an independent tester's
 * r1_wfault_batch.c).  The library once mapped a page of its own at that
 * first query, which could land in the hole: the write was then verified
 * against the library's zeroed page (-EILSEQ) and the plain write after it
 * executed (an independent tester's repro_hole.c).  Run first, before any
 * other PI I/O of this process.  Not under ASan, whose allocator maps pages
 * of its own during any call that allocates, and so can fill the hole
 * itself. */
static void test_hole_in_caller_memory(io_context_t ctx, int fd)
{
#ifdef __SANITIZE_ADDRESS__
	(void)ctx;
	(void)fd;
	printf("skip test_hole_in_caller_memory: ASan's allocator maps pages during calls\n");
	return;
#endif
	enum { N = 40 };
	uint8_t *d = xalloc(4096), *pi = xalloc(4096), *p = xalloc(4096), *c = xalloc(4096);
	memset(d, 1, 4096);
	memset(c, 0xC1, 4096);
	memset(p, 0xAB, 64);
	expected_pi(T1_512, pi, d, 4096, 0);
	for (int t = 0; t < 8; t++)
		memset(pi + t * 8 + 2, 0xFF, 2); /* app tag 0xFFFF: valid at any offset */
	struct iovec good[2] = { { d, 4096 }, { pi, 64 } };
	static struct iocb ios[N + 2];
	struct iocb *l[N + 2];
	for (int i = 0; i < N; i++) {
		io_prep_pwritevm(&ios[i], fd, good, 2, (long long)i * 4096);
		l[i] = &ios[i];
	}
	char *three = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECKF(three != MAP_FAILED, "mmap");
	CHECKF(munmap(three + 4096, 4096) == 0, "munmap of the middle page");
	struct iovec bad[2] = { { three + 4096, 4096 }, { p, 64 } };
	io_prep_pwritevm(&ios[N], fd, bad, 2, 0);
	l[N] = &ios[N];
	io_prep_pwrite(&ios[N + 1], fd, c, 4096, 512 * 1024);
	l[N + 1] = &ios[N + 1];
	CHECK_EQ_MSG(io_submit(ctx, N + 2, l), N + 2, "the batch goes in whole, the write with unmapped data too");
	unsigned char v;
	CHECKF(mincore(three + 4096, 4096, &v) != 0, "the hole is still unmapped after io_submit");
	struct io_event ev[N + 2];
	int got = 0, seen_bad = 0, seen_plain = 0;
	while (got < N + 2) {
		int k = io_getevents(ctx, 1, N + 2, ev, NULL);
		CHECKF(k > 0, "reap");
		if (k <= 0)
			break;
		for (int j = 0; j < k; j++) {
			struct iocb *o = ev[j].obj;
			long res = (long)ev[j].res;
			if (o == &ios[N]) {
				seen_bad = 1;
				/* -EILSEQ here would mean the data was read from a page
				 * that is not the caller's. */
				CHECK_EQ_MSG(res, -EFAULT, "the write whose data is unmapped: res -EFAULT");
			} else if (o == &ios[N + 1]) {
				seen_plain = 1;
				CHECK_EQ_MSG(res, 4096, "the plain write after it");
			} else {
				CHECKF(o >= ios && o < ios + N && res == 4096, "a good PI write: res 4096 (%ld)", res);
			}
		}
		got += k;
	}
	CHECKF(seen_bad && seen_plain, "events for the bad write and the plain one");
	uint8_t *back = xalloc(4096);
	CHECK_EQ_MSG(pread(fd, back, 4096, 512 * 1024), 4096, "pread");
	CHECKF(back[0] == 0xC1, "the plain write after the bad one was executed");
	CHECK_EQ_MSG(pread(fd, back, 4096, 0), 4096, "pread");
	CHECKF(memcmp(back, d, 4096) == 0, "the bad write at offset 0 wrote nothing over the good one");
	munmap(three, 3 * 4096);
	free(back);
	free(d);
	free(pi);
	free(p);
	free(c);
}

static void test_bad_pointers(io_context_t ctx, int fd)
{
	uint8_t *data = xalloc(4096), *pi = xalloc(64);
	struct iovec iov[2] = { { data, 4096 }, { pi, 64 } };
	struct iocb io;
	/* An unmapped page, so bad addresses are really bad. */
	uint8_t *hole = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	io_prep_pwritevm(&io, fd, (struct iovec *)hole, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EFAULT, "iovec array unmapped");
	io_prep_pwritevm(&io, fd, (struct iovec *)8, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), -EFAULT, "iovec array at 8");
	/* Bad buffers: accepted, and the event fails with -EFAULT, as the
	 * kernel fails the same plain I/O (it refuses at io_submit only for
	 * the iocb and the iovec array); nothing is transferred.  (They were
	 * refused at io_submit until an independent tester's
	 * r1_wfault_batch.c.) */
	uint8_t *before = xalloc(4096), *after = xalloc(4096); /* O_DIRECT: aligned */
	CHECK_EQ_MSG(pread(fd, before, 4096, 0), 4096, "file before and after");
	iov[0].iov_base = hole;
	io_prep_pwritevm(&io, fd, iov, 2, 0);
	CHECK_EQ_MSG(submit_res1(ctx, &io), -EFAULT, "write data unmapped: res -EFAULT");
	iov[0].iov_base = data;
	iov[1].iov_base = hole;
	CHECK_EQ_MSG(submit_res1(ctx, &io), -EFAULT, "write PI unmapped: res -EFAULT");
	CHECK_EQ_MSG(pread(fd, after, 4096, 0), 4096, "file before and after");
	CHECKF(memcmp(before, after, 4096) == 0, "writes with bad buffers write nothing");
	memset(data, 0xC3, 4096);
	io_prep_preadvm(&io, fd, iov, 2, 0);
	CHECK_EQ_MSG(submit_res1(ctx, &io), -EFAULT, "read PI unmapped: res -EFAULT");
	uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* read-only PI */
	iov[1].iov_base = ro;
	CHECK_EQ_MSG(submit_res1(ctx, &io), -EFAULT, "read PI read-only: res -EFAULT");
	CHECKF(data[0] == 0xC3 && data[4095] == 0xC3, "reads with a bad PI buffer read nothing");
	/* Read into an unmapped data buffer: the kernel's answer (at submit or
	 * in the event); after an event, no interval was read, so the PI
	 * buffer holds no tuple: all zeros. */
	iov[0].iov_base = hole;
	iov[1].iov_base = pi;
	memset(pi, 0xAB, 64);
	io_prep_preadvm(&io, fd, iov, 2, 0);
	int r = submit1(ctx, &io);
	if (r == 1) {
		struct io_event ev;
		CHECK_EQ_MSG(reap1(ctx, &ev), 1, "event for the bad read");
		CHECK_EQ_MSG((long)ev.res, -EFAULT, "bad read data -> res -EFAULT");
		CHECKF(ev.obj == &io, "event names the caller's iocb");
		static const uint8_t zeros[64];
		CHECKF(memcmp(pi, zeros, 64) == 0, "no interval read -> PI buffer all zeros");
	} else {
		CHECK_EQ_MSG(r, -EFAULT, "bad read data -> -EFAULT");
	}
	/* A bad iocb pointer in the array: the kernel's -EFAULT. */
	struct iocb *l[1] = { (struct iocb *)hole };
	CHECK_EQ_MSG(io_submit(ctx, 1, l), -EFAULT, "iocb pointer unmapped");
	munmap(hole, 8192);
	munmap(ro, 4096);
	free(data); free(pi); free(before); free(after);
}

/* Mixed batch: plain and PI iocbs, all accepted, right events. */
static void test_mixed_batch(io_context_t ctx, int fd, uint64_t *rng)
{
	enum { N = 6 };
	uint8_t *buf[N], *pi[N];
	struct iovec iov[N][2];
	struct iocb io[N], *l[N];
	for (int i = 0; i < N; i++) {
		buf[i] = xalloc(4096);
		pi[i] = xalloc(64);
		iov[i][0] = (struct iovec){ buf[i], 4096 };
		iov[i][1] = (struct iovec){ pi[i], 64 };
		l[i] = &io[i];
	}
	fill_random(buf[0], 4096, rng);
	fill_random(buf[1], 4096, rng);
	expected_pi(T1_512, pi[1], buf[1], 4096, 65536 + 4096);
	io_prep_pwrite(&io[0], fd, buf[0], 4096, 65536);                /* plain write */
	io_prep_pwritevm(&io[1], fd, iov[1], 2, 65536 + 4096);          /* PI write */
	io_prep_pwritevm(&io[2], fd, iov[2], 2, 65536 + 8192);          /* PI write, bad PI */
	memset(pi[2], 0x11, 64);
	io_prep_pread(&io[3], fd, buf[3], 4096, 0);                     /* plain read */
	io_prep_preadvm(&io[4], fd, iov[4], 2, 0);                      /* PI read */
	io_prep_fsync(&io[5], fd);                                      /* plain */
	for (int i = 0; i < N; i++)
		io[i].data = (void *)(uintptr_t)(100 + i);
	CHECK_EQ_MSG(io_submit(ctx, N, l), N, "mixed batch: all accepted");
	struct io_event ev[N];
	int got = reap_n(ctx, ev, N);
	CHECK_EQ_MSG(got, N, "mixed batch: N events");
	int seen[N] = { 0 };
	for (int k = 0; k < got; k++) {
		int i = (int)((struct iocb *)ev[k].obj - io);
		if (i < 0 || i >= N) {
			CHECKF(0, "event obj %p is one of the batch's iocbs", (void *)ev[k].obj);
			continue;
		}
		seen[i]++;
		CHECK_EQ_MSG((uintptr_t)ev[k].data, 100 + i, "event data is the iocb's");
		long want = i == 2 ? -EILSEQ : i == 5 ? 0 : 4096;
		CHECK_EQ_MSG((long)ev[k].res, want, "event res");
	}
	for (int i = 0; i < N; i++)
		CHECK_EQ_MSG(seen[i], 1, "each iocb completes exactly once");
	uint8_t want[64];
	expected_pi(T1_512, want, buf[4], 4096, 0);
	CHECKF(memcmp(pi[4], want, 64) == 0, "PI read in a mixed batch");
	CHECKF(file_equals(fd, buf[1], 4096, 65536 + 4096), "PI write in a mixed batch landed");
	for (int i = 0; i < N; i++) {
		free(buf[i]);
		free(pi[i]);
	}
}

/* A PI write is refused at io_submit exactly like its plain twin (the same
 * pwritev without PI) whatever its tuples: a write whose tuples do not
 * verify must not skip the kernel's submit-time checks (RWF_* flags, I/O
 * priority, file position).  One that passes them completes with -EILSEQ
 * and changes nothing, not even the file's times. */
enum { TW = 4096 };
struct twin_case {
	const char *what;
	int rw_flags, iocb_flags, reqprio;
	long long off;
};
static int submit_twin(io_context_t ctx, struct iocb *io, const struct twin_case *c)
{
	io->aio_rw_flags = c->rw_flags;
	io->u.c.flags |= c->iocb_flags;
	io->aio_reqprio = (short)c->reqprio;
	int r = submit1(ctx, io);
	if (r == 1) {
		struct io_event ev;
		CHECK_EQ_MSG(reap1(ctx, &ev), 1, c->what);
	}
	return r;
}

/* good: the tuples of d (TW bytes at off); bad: the same with interval 2's
 * guard off by one bit. */
static void twin_tuples(uint8_t *good, uint8_t *bad, const uint8_t *d, long long off)
{
	expected_pi(T1_512, good, d, TW, off);
	memcpy(bad, good, TW / 512 * 8);
	bad[8 * 2] ^= 0x40;
}

static void test_refused_like_plain(io_context_t ctx, int fd)
{
	uint8_t *d = xalloc(TW), *good = xalloc(TW / 512 * 8), *bad = xalloc(TW / 512 * 8);
	const struct twin_case cases[] = {
		{ "unknown RWF_ flag bit", 1 << 30, 0, 0, 0 },
		{ "RWF_ATOMIC", 0x40, 0, 0, 0 },
		{ "IOCB_FLAG_IOPRIO, priority class 7", 0, 1 << 1, 7 << 13, 0 },
		{ "end of the write past the largest file position", 0, 0, 0, 0x7FFFFFFFFFFFFE00LL },
	};
	int refused = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct twin_case *c = &cases[i];
		twin_tuples(good, bad, d, c->off);
		struct iovec pv = { d, TW }, gv[2] = { { d, TW }, { good, TW / 512 * 8 } },
			     bv[2] = { { d, TW }, { bad, TW / 512 * 8 } };
		struct iocb plain, gio, bio;
		io_prep_pwritev(&plain, fd, &pv, 1, c->off);
		io_prep_pwritevm(&gio, fd, gv, 2, c->off);
		io_prep_pwritevm(&bio, fd, bv, 2, c->off);
		int rp = submit_twin(ctx, &plain, c);
		int rg = submit_twin(ctx, &gio, c);
		int rb = submit_twin(ctx, &bio, c);
		refused += rp < 0;
		CHECKF(rg == rp && rb == rp, "%s: plain %d, PI %d, PI that fails verification %d", c->what, rp, rg, rb);
	}
	CHECKF(refused >= 2, "the kernel refused the plain twin in %d cases (unknown flag, priority class 7 at least)", refused);

	/* The kernel checks flags and priority before anything PI-specific, so
	 * an iocb that breaks a PI rule too gets the flag's error. */
	{
		expected_pi(T1_512, good, d, TW, 0);
		struct iovec pv = { d, TW }, gv[2] = { { d, TW }, { good, TW / 512 * 8 } };
		struct iocb a, b;
		io_prep_pwritev(&a, fd, &pv, 1, 0x7FFFFFFFFFFFF000LL);
		io_prep_pwritevm(&b, fd, gv, 2, 0x7FFFFFFFFFFFF000LL);
		a.aio_rw_flags = b.aio_rw_flags = 1 << 30;
		int ra = submit1(ctx, &a), rb = submit1(ctx, &b);
		CHECKF(ra == -EOPNOTSUPP && rb == ra, "bad flag and position overflow: plain %d, PI %d (want -EOPNOTSUPP)", ra, rb);
		io_prep_preadvm(&b, fd, gv, 1, 0); /* one iovec: -EINVAL alone */
		b.aio_rw_flags = 1 << 30;
		CHECK_EQ_MSG(submit1(ctx, &b), -EOPNOTSUPP, "bad flag and one iovec");
		int ro = open("pi.dat", O_RDONLY | O_DIRECT);
		/* A bad priority class and a write on a read-only fd: the
		 * kernel checks the priority first (-EINVAL, not -EBADF). */
		io_prep_pwritev(&a, ro, &pv, 1, 0);
		io_prep_pwritevm(&b, ro, gv, 2, 0);
		a.u.c.flags |= 1 << 1; /* IOCB_FLAG_IOPRIO */
		b.u.c.flags |= 1 << 1;
		a.aio_reqprio = b.aio_reqprio = 7 << 13;
		ra = submit1(ctx, &a);
		rb = submit1(ctx, &b);
		CHECKF(ra == -EINVAL && rb == ra, "bad priority, write on a read-only fd: plain %d, PI %d (want -EINVAL)", ra, rb);
		io_prep_pwritevm(&b, ro, gv, 2, 0);
		b.aio_rw_flags = 1 << 30;
		CHECK_EQ_MSG(submit1(ctx, &b), -EOPNOTSUPP, "bad flag, write on a read-only fd");
		b.aio_rw_flags = 0;
		CHECK_EQ_MSG(submit1(ctx, &b), -EBADF, "write on a read-only fd");
		close(ro);
	}

	/* In a batch, such a write ends the batch where its plain twin would. */
	twin_tuples(good, bad, d, 0);
	struct iovec bv[2] = { { d, TW }, { bad, TW / 512 * 8 } };
	struct iocb io[3], *l[3] = { &io[0], &io[1], &io[2] };
	io_prep_pread(&io[0], fd, d, 512, 0);
	io_prep_pwritevm(&io[1], fd, bv, 2, 0);
	io[1].aio_rw_flags = 1 << 30;
	io_prep_pread(&io[2], fd, d, 512, 0);
	CHECK_EQ_MSG(io_submit(ctx, 3, l), 1, "batch [read, PI write failing verification with a bad flag, read]");
	struct io_event ev;
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "the read before it completes");

	/* Valid flags: -EILSEQ, the file and its times untouched. */
	uint8_t *before = xalloc(TW);
	CHECK_EQ_MSG(pread(fd, before, TW, 0), TW, "file before");
	struct stat st0, st1;
	fstat(fd, &st0);
	usleep(20000);
	struct iocb w;
	io_prep_pwritevm(&w, fd, bv, 2, 0);
	w.aio_rw_flags = RWF_DSYNC;
	CHECK_EQ_MSG(submit1(ctx, &w), 1, "PI write failing verification, RWF_DSYNC: accepted");
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "its event");
	CHECKF(ev.obj == &w && (long)ev.res == -EILSEQ, "res %ld (want -EILSEQ)", (long)ev.res);
	fstat(fd, &st1);
	CHECKF(file_equals(fd, before, TW, 0), "file unchanged");
	CHECKF(st0.st_mtim.tv_sec == st1.st_mtim.tv_sec && st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec &&
		       st0.st_size == st1.st_size,
	       "mtime and size unchanged");
	free(before);
	free(d); free(good); free(bad);
}

/* An iocb the kernel cannot store its aio_key into (a read-only page) is
 * refused with -EFAULT wherever it is in a batch, PI or not; every iocb
 * accepted gets aio_key = 0, as the kernel stores for its own. */
static void test_iocb_key(io_context_t ctx, int fd)
{
	uint8_t *d = xalloc(2 * 4096), *pi = xalloc(2 * 64);
	struct iovec v0[2] = { { d, 4096 }, { pi, 64 } }, v1[2] = { { d + 4096, 4096 }, { pi + 64, 64 } };
	struct iocb *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iocb first, plain, *l[2];
	io_prep_preadvm(&first, fd, v0, 2, 0);
	io_prep_preadvm(&page[0], fd, v1, 2, 4096);
	io_prep_pread(&page[1], fd, d + 4096, 512, 0);
	io_prep_pread(&plain, fd, d, 512, 0);
	mprotect(page, 4096, PROT_READ);
	struct io_event ev[2];

	l[0] = &page[1];
	CHECK_EQ_MSG(io_submit(ctx, 1, l), -EFAULT, "plain iocb in a read-only page, alone");
	l[0] = &plain; l[1] = &page[1];
	CHECK_EQ_MSG(io_submit(ctx, 2, l), 1, "[plain, plain read-only]: the kernel stops at 1");
	CHECK_EQ_MSG(reap_n(ctx, ev, 1), 1, "its event");
	l[0] = &page[0];
	CHECK_EQ_MSG(io_submit(ctx, 1, l), -EFAULT, "PI iocb in a read-only page, alone");
	l[0] = &first; l[1] = &page[0];
	CHECK_EQ_MSG(io_submit(ctx, 2, l), 1, "[PI, PI read-only]");
	CHECK_EQ_MSG(reap_n(ctx, ev, 1), 1, "one event");
	CHECKF(ev[0].obj == &first && (long)ev[0].res == 4096, "the first PI read's");

	/* aio_key: 0 after io_submit for plain and PI iocbs alike (a PI iocb
	 * after the first of a batch is not seen by the kernel at all). */
	mprotect(page, 4096, PROT_READ | PROT_WRITE);
	for (int pi_batch = 0; pi_batch < 2; pi_batch++) {
		if (pi_batch) {
			io_prep_preadvm(&page[0], fd, v1, 2, 4096);
			l[1] = &page[0];
		} else {
			io_prep_pread(&page[1], fd, d + 4096, 512, 0);
			l[1] = &page[1];
		}
		l[0] = pi_batch ? &first : &plain;
		l[0]->key = 0x5EED;
		l[1]->key = 0x5EED;
		CHECK_EQ_MSG(io_submit(ctx, 2, l), 2, pi_batch ? "two PI reads" : "two plain reads");
		CHECK_EQ_MSG(reap_n(ctx, ev, 2), 2, "their events");
		CHECKF(l[0]->key == 0 && l[1]->key == 0, "%s: aio_key %#x %#x (want 0 0)",
		       pi_batch ? "PI" : "plain", l[0]->key, l[1]->key);
	}

	/* The kernel stops at the first iocb it refuses: keys of the iocbs
	 * after it are left alone (here the third of six PI writes has a
	 * length that is not a multiple of the interval). */
	{
		struct iocb w[6], *wl[6];
		uint8_t *pw = xalloc(6 * 64);
		struct iovec wv[6][2];
		for (int i = 0; i < 6; i++) {
			expected_pi(T1_512, pw + i * 64, d, 4096, (long long)i * 4096);
			wv[i][0] = (struct iovec){ d, i == 2 ? 4000 : 4096 };
			wv[i][1] = (struct iovec){ pw + i * 64, 64 };
			io_prep_pwritevm(&w[i], fd, wv[i], 2, (long long)i * 4096);
			w[i].key = 0x77777777;
			wl[i] = &w[i];
		}
		CHECK_EQ_MSG(io_submit(ctx, 6, wl), 2, "six PI writes, the third invalid");
		CHECK_EQ_MSG(reap_n(ctx, ev, 2), 2, "two events");
		CHECKF(w[0].key == 0 && w[1].key == 0, "accepted: aio_key %#x %#x (want 0 0)", w[0].key, w[1].key);
		CHECKF(w[3].key == 0x77777777 && w[4].key == 0x77777777 && w[5].key == 0x77777777,
		       "after the refused one: aio_key %#x %#x %#x (want untouched)", w[3].key, w[4].key, w[5].key);
		free(pw);
	}
	munmap(page, 4096);
	free(d); free(pi);
}

/* A batch stops at an invalid PI iocb: io_submit returns the count before. */
static void test_batch_stops(io_context_t ctx, int fd)
{
	uint8_t *a = xalloc(4096), *b = xalloc(4096), *pa = xalloc(64), *pb = xalloc(64);
	struct iovec va[2] = { { a, 4096 }, { pa, 64 } }, vb[2] = { { b, 4096 }, { pb, 8 } };
	struct iocb io[4], *l[4] = { &io[0], &io[1], &io[2], &io[3] };
	io_prep_pread(&io[0], fd, a + 0, 512, 0);
	io_prep_preadvm(&io[1], fd, va, 2, 0);
	io_prep_preadvm(&io[2], fd, vb, 2, 0); /* PI buffer too short */
	io_prep_pread(&io[3], fd, b, 512, 0);
	CHECK_EQ_MSG(io_submit(ctx, 4, l), 2, "batch stops before the invalid PI iocb");
	struct io_event ev[4];
	struct timespec ts = { 0, 200 * 1000 * 1000 };
	int got = 0, r;
	while ((r = io_getevents(ctx, 1, 4, ev + got, &ts)) > 0)
		got += r;
	CHECK_EQ_MSG(got, 2, "only the accepted iocbs complete");
	/* The invalid one first: -EINVAL, nothing accepted. */
	CHECK_EQ_MSG(io_submit(ctx, 2, l + 2), -EINVAL, "invalid PI iocb first -> -EINVAL");
	/* A plain invalid iocb after a PI one. */
	io_prep_pread(&io[3], fd, b, 512, 0);
	io[3].aio_lio_opcode = 77;
	CHECK_EQ_MSG(io_submit(ctx, 2, l + 1), 1, "PI iocb then a bad plain iocb -> 1");
	CHECK_EQ_MSG(reap1(ctx, ev), 1, "its event");
	CHECKF(ev[0].obj == &io[1] && (long)ev[0].res == 4096, "the PI read completed");

	/* Runs of PI iocbs (submitted by the library as one batch of shadows):
	 * good reads, a good write, a bad-PI write, then an invalid one. */
	enum { R = 8 };
	struct iocb run[R], *lr[R];
	struct iovec rv[R][2];
	uint8_t *rd = xalloc(R * 4096), *rp = xalloc(R * 64), *rwant = xalloc(64);
	for (int i = 0; i < R; i++) {
		rv[i][0] = (struct iovec){ rd + i * 4096, 4096 };
		rv[i][1] = (struct iovec){ rp + i * 64, 64 };
		io_prep_preadvm(&run[i], fd, rv[i], 2, (long long)i * 4096);
		run[i].data = (void *)(uintptr_t)i;
		lr[i] = &run[i];
	}
	memset(rd + 5 * 4096, 0x3C, 4096);
	expected_pi(T1_512, rp + 5 * 64, rd + 5 * 4096, 4096, 5 * 4096);
	io_prep_pwritevm(&run[5], fd, rv[5], 2, 5 * 4096);            /* good write */
	run[5].data = (void *)5;
	io_prep_pwritevm(&run[6], fd, rv[6], 2, 6 * 4096);            /* bad PI (zeros) */
	run[6].data = (void *)6;
	memset(rp + 6 * 64, 0x77, 64);
	rv[7][1].iov_len = 8;                                          /* invalid: short PI */
	CHECK_EQ_MSG(io_submit(ctx, R, lr), 7, "run of PI iocbs stops before the invalid one");
	got = 0;
	int res_ok = 1, seen[R] = { 0 };
	struct io_event rev[R];
	while (got < 7 && (r = io_getevents(ctx, 1, R, rev, NULL)) > 0) {
		for (int k = 0; k < r; k++) {
			int i = (int)(uintptr_t)rev[k].data;
			if (i < 0 || i >= 7 || rev[k].obj != &run[i]) {
				res_ok = 0;
				continue;
			}
			seen[i]++;
			res_ok &= (long)rev[k].res == (i == 6 ? -EILSEQ : 4096);
		}
		got += r;
	}
	CHECK_EQ_MSG(got, 7, "run: 7 events");
	CHECKF(res_ok, "run: every event names its iocb with the right res");
	int once = 1;
	for (int i = 0; i < 7; i++)
		once &= seen[i] == 1;
	CHECKF(once, "run: each exactly once");
	int pis = 1;
	for (int i = 0; i < 5; i++) {
		expected_pi(T1_512, rwant, rd + i * 4096, 4096, (long long)i * 4096);
		pis &= memcmp(rwant, rp + i * 64, 64) == 0;
	}
	CHECKF(pis, "run: PI of the reads");
	CHECKF(file_equals(fd, rd + 5 * 4096, 4096, 5 * 4096), "run: the good write landed");
	free(rd); free(rp); free(rwant);
	free(a); free(b); free(pa); free(pb);
}

/* Reap the n events of io[0 .. n) and check that io[i]'s res is want[i]. */
static void reap_each(io_context_t ctx, struct iocb *io, int n, const long *want, const char *what)
{
	struct io_event ev[8];
	struct timespec ts = { 1, 0 };
	int got = 0, r, ok = 1, seen = 0;
	while (got < n && (r = io_getevents(ctx, 1, 8, ev, &ts)) > 0) {
		for (int k = 0; k < r; k++) {
			long i = (struct iocb *)ev[k].obj - io;
			if (i < 0 || i >= n || (seen & (1 << i))) {
				ok = 0;
				continue;
			}
			seen |= 1 << i;
			if ((long)ev[k].res != want[i]) {
				printf("  %s: iocb %ld res %ld, want %ld\n", what, i, (long)ev[k].res, want[i]);
				ok = 0;
			}
		}
		got += r;
	}
	CHECK_EQ_MSG(got, n, what);
	CHECKF(ok && seen == (1 << n) - 1, "%s", what);
}

/* Reap exactly `n` (at most 8) events (1 s limit), one of each of
 * io[0 .. n), every res = `res` (a data length). */
static void reap_run(io_context_t ctx, struct iocb *io, int n, long res, const char *what)
{
	long want[8];
	CHECKF(n <= 8, "%s: at most 8 events", what);
	for (int i = 0; i < n && i < 8; i++)
		want[i] = res;
	reap_each(ctx, io, n < 8 ? n : 8, want, what);
}

/* A run of PI iocbs is validated as a whole (one kernel-checked copy per
 * kind of caller memory); an iocb failing a check ends the run before it:
 * io_submit returns the count before it, nothing after it is touched, and
 * alone it gets its own error.  Every kind of check, failing in the middle
 * of a run, with the run's iocbs, iovecs and buffers on different pages;
 * and bad data or PI buffers, which end nothing (the iocb fails in its
 * event, as the kernel fails the same plain I/O). */
static void test_run_cuts(io_context_t ctx, int fd)
{
	enum { PG = 4096 };
	/* Page 0-1: fine; page 2: unmapped; page 3: read-only. */
	uint8_t *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *hole = m + 2 * PG, *ro = m + 3 * PG;
	munmap(hole, PG);
	mprotect(ro, PG, PROT_READ);
	/* iocbs on one page, iovec arrays on another, data and PI elsewhere. */
	struct iocb *io = (struct iocb *)m, *l[4];
	struct iovec *v = (struct iovec *)(m + PG);
	uint8_t *data = xalloc(4 * 4096), *pi = xalloc(4 * 64), *good = xalloc(4096);
	for (int i = 0; i < 4; i++) {
		v[2 * i] = (struct iovec){ data + i * 4096, 4096 };
		v[2 * i + 1] = (struct iovec){ pi + i * 64, 64 };
		l[i] = &io[i];
	}
	memset(good, 0x5A, 4096);

	/* 1. A write's tuples unmapped, after two good reads; a good read
	 *    after: not a cut (the kernel fails a plain write from a bad
	 *    buffer in its event): all four accepted, the write fails with
	 *    -EFAULT and writes nothing, the reads complete (the last one's
	 *    PI buffer gets its tuples). */
	io_prep_preadvm(&io[0], fd, &v[0], 2, 0);
	io_prep_preadvm(&io[1], fd, &v[2], 2, 4096);
	io_prep_pwritevm(&io[2], fd, &v[4], 2, 8192);
	v[5].iov_base = hole;
	io_prep_preadvm(&io[3], fd, &v[6], 2, 0);
	memset(pi + 3 * 64, 0xAB, 64);
	uint8_t *before = xalloc(4096);
	CHECK_EQ_MSG(pread(fd, before, 4096, 8192), 4096, "file before and after");
	CHECK_EQ_MSG(io_submit(ctx, 4, l), 4, "a write with unmapped tuples in a run: all accepted");
	reap_each(ctx, io, 4, (const long[]){ 4096, 4096, -EFAULT, 4096 }, "unmapped tuples in a run");
	CHECKF(file_equals(fd, before, 4096, 8192), "the write with unmapped tuples wrote nothing");
	CHECKF(pi[3 * 64] != 0xAB || pi[3 * 64 + 1] != 0xAB, "the read after it got its tuples");
	v[5].iov_base = pi + 2 * 64;

	/* 2. A read's PI buffer read-only in the middle: all three accepted,
	 *    that one fails with -EFAULT and reads nothing. */
	io_prep_preadvm(&io[0], fd, &v[0], 2, 0);
	io_prep_preadvm(&io[1], fd, &v[2], 2, 4096);
	v[3].iov_base = ro;
	io_prep_preadvm(&io[2], fd, &v[4], 2, 8192);
	memset(data + 4096, 0xC3, 4096);
	CHECK_EQ_MSG(io_submit(ctx, 3, l), 3, "a read with a read-only PI buffer in a run: all accepted");
	reap_each(ctx, io, 3, (const long[]){ 4096, -EFAULT, 4096 }, "read-only PI buffer in a run");
	CHECKF(data[4096] == 0xC3 && data[2 * 4096 - 1] == 0xC3, "the read with a read-only PI buffer read nothing");
	v[3].iov_base = pi + 64;

	/* 3. A write's data unmapped after a good write (sharing nothing):
	 *    both accepted, the good one lands, the bad one writes nothing. */
	v[2] = (struct iovec){ good, 4096 };
	expected_pi(T1_512, pi + 64, good, 4096, 2 * 4096);
	io_prep_pwritevm(&io[0], fd, &v[2], 2, 2 * 4096);
	io_prep_pwritevm(&io[1], fd, &v[4], 2, 3 * 4096);
	v[4].iov_base = hole;
	CHECK_EQ_MSG(pread(fd, before, 4096, 3 * 4096), 4096, "file before and after");
	CHECK_EQ_MSG(io_submit(ctx, 2, l), 2, "a write with unmapped data after a good one: both accepted");
	reap_each(ctx, io, 2, (const long[]){ 4096, -EFAULT }, "unmapped write data in a run");
	CHECKF(file_equals(fd, good, 4096, 2 * 4096), "the good write landed");
	CHECKF(file_equals(fd, before, 4096, 3 * 4096), "the write with unmapped data wrote nothing");
	v[4].iov_base = data + 2 * 4096;
	v[2] = (struct iovec){ data + 4096, 4096 };
	free(before);

	/* 4. An iovec array unmapped in the middle. */
	io_prep_preadvm(&io[0], fd, &v[0], 2, 0);
	io_prep_preadvm(&io[1], fd, (struct iovec *)hole, 2, 0);
	io_prep_preadvm(&io[2], fd, &v[4], 2, 0);
	CHECK_EQ_MSG(io_submit(ctx, 3, l), 1, "run cut at an unmapped iovec array");
	reap_run(ctx, io, 1, 4096, "run cut at an iovec array: the first read completes");

	/* 5. An invalid length in the middle (not a memory check). */
	io_prep_preadvm(&io[0], fd, &v[0], 2, 0);
	io_prep_preadvm(&io[1], fd, &v[2], 2, 0);
	v[3].iov_len = 8;
	io_prep_preadvm(&io[2], fd, &v[4], 2, 0);
	memset(pi + 2 * 64, 0xAB, 64);
	CHECK_EQ_MSG(io_submit(ctx, 3, l), 1, "run cut at a short PI buffer");
	reap_run(ctx, io, 1, 4096, "run cut at a short PI buffer: the first read completes");
	CHECKF(pi[2 * 64] == 0xAB, "iocb after the cut: PI buffer untouched (5)");
	v[3].iov_len = 64;

	/* 6. An unmapped iocb pointer after a PI iocb: the kernel's -EFAULT
	 *    for it, so 1 accepted. */
	struct iocb *lb[2] = { &io[0], (struct iocb *)hole };
	io_prep_preadvm(&io[0], fd, &v[0], 2, 0);
	CHECK_EQ_MSG(io_submit(ctx, 2, lb), 1, "PI iocb then an unmapped iocb pointer");
	reap_run(ctx, io, 1, 4096, "the PI read before the bad pointer completes");

	/* 8. The kernel refuses a shadow (unknown aio_rw_flags: it checks
	 *    them, we do not): the run ends there, in the first group or a
	 *    later one (shadows go out in order, in groups split before each
	 *    write's verification). */
	for (int bad = 1; bad < 4; bad++) {
		for (int i = 0; i < 4; i++) {
			if (i % 2)
				io_prep_pwritevm(&io[i], fd, &v[2 * i], 2, (long long)i * 4096);
			else
				io_prep_preadvm(&io[i], fd, &v[2 * i], 2, (long long)i * 4096);
			if (i % 2)
				expected_pi(T1_512, pi + i * 64, data + i * 4096, 4096, (long long)i * 4096);
		}
		io[bad].aio_rw_flags = 0x40000000;
		CHECK_EQ_MSG(io_submit(ctx, 4, l), bad, "run ends at the shadow the kernel refuses");
		reap_run(ctx, io, bad, 4096, "the iocbs before the refused shadow complete");
		CHECK_EQ_MSG(io_submit(ctx, 1, l + bad), -EOPNOTSUPP, "the refused one alone: the kernel's error");
	}

	/* 7. The whole run good, PI checked. */
	for (int i = 0; i < 4; i++)
		io_prep_preadvm(&io[i], fd, &v[2 * i], 2, (long long)i * 4096);
	CHECK_EQ_MSG(io_submit(ctx, 4, l), 4, "a good run across pages");
	reap_run(ctx, io, 4, 4096, "a good run across pages completes");
	int pis = 1;
	uint8_t want[64];
	for (int i = 0; i < 4; i++) {
		expected_pi(T1_512, want, data + i * 4096, 4096, (long long)i * 4096);
		pis &= memcmp(want, pi + i * 64, 64) == 0;
	}
	CHECKF(pis, "a good run across pages: PI of every read");
	munmap(m, 2 * PG);
	munmap(ro, PG);
	free(data); free(pi); free(good);
}

static int cb_calls;
static struct iocb *cb_iocb[4];
static long cb_res[4];
static void cb(io_context_t ctx, struct iocb *io, long res, long res2)
{
	(void)ctx;
	(void)res2;
	if (cb_calls < 4) {
		cb_iocb[cb_calls] = io;
		cb_res[cb_calls] = res;
	}
	cb_calls++;
}

static void test_queue_run(io_context_t ctx, int fd)
{
	uint8_t *a = xalloc(4096), *pa = xalloc(64), *b = xalloc(4096), *pb = xalloc(64);
	struct iovec va[2] = { { a, 4096 }, { pa, 64 } }, vb[2] = { { b, 4096 }, { pb, 64 } };
	struct iocb io[2], *l[2] = { &io[0], &io[1] };
	io_prep_preadvm(&io[0], fd, va, 2, 0);
	io_set_callback(&io[0], cb);
	memset(pb, 0x33, 64);
	io_prep_pwritevm(&io[1], fd, vb, 2, 0); /* bad PI: -EILSEQ */
	io_set_callback(&io[1], cb);
	CHECK_EQ_MSG(io_submit(ctx, 2, l), 2, "queue_run: submitted");
	for (int tries = 0; cb_calls < 2 && tries < 1000; tries++) {
		if (io_queue_run(ctx) != 0)
			break;
		usleep(1000);
	}
	CHECK_EQ_MSG(cb_calls, 2, "io_queue_run called both callbacks");
	CHECKF(cb_calls == 2 && cb_iocb[0] != cb_iocb[1], "one callback for each iocb");
	for (int i = 0; i < 2 && i < cb_calls; i++) {
		if (cb_iocb[i] == &io[0])
			CHECK_EQ_MSG(cb_res[i], 4096, "callback of the PI read");
		else if (cb_iocb[i] == &io[1])
			CHECK_EQ_MSG(cb_res[i], -EILSEQ, "callback of the bad PI write");
		else
			CHECKF(0, "callback got the caller's iocb");
	}
	uint8_t want[64];
	expected_pi(T1_512, want, a, 4096, 0);
	CHECKF(memcmp(pa, want, 64) == 0, "PI delivered through io_queue_run");
	free(a); free(b); free(pa); free(pb);
}

static void test_cancel(io_context_t ctx, int fd)
{
	uint8_t *a = xalloc(65536), *pa = xalloc(1024);
	struct iovec va[2] = { { a, 65536 }, { pa, 1024 } };
	struct iocb io, plain;
	struct io_event ev;
	io_prep_pread(&plain, fd, a, 4096, 0);
	CHECK_EQ_MSG(submit1(ctx, &plain), 1, "plain read submitted");
	int want = io_cancel(ctx, &plain, &ev);
	reap1(ctx, &ev);
	io_prep_preadvm(&io, fd, va, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, "PI read submitted");
	int r = io_cancel(ctx, &io, &ev);
	CHECK_EQ_MSG(r, want, "io_cancel of a PI read answers as for a plain read");
	CHECK_EQ_MSG(r, -EINVAL, "... which is -EINVAL");
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "the PI read still completes");
	CHECKF(ev.obj == &io, "with the caller's iocb");
	free(a); free(pa);
}

/* Short read at EOF: tuples only for the intervals read. */
static void test_short_read(io_context_t ctx, uint64_t *rng)
{
	int fd = pi_open_direct("short.dat", O_TRUNC);
	uint8_t *d = xalloc(8192), *pi = xalloc(128), *back = xalloc(8192), *want = xalloc(128);
	fill_random(d, 4096, rng);
	CHECK_EQ_MSG(pwrite(fd, d, 4096, 0), 4096, "4 KiB file");
	memset(pi, 0xEE, 128);
	CHECK_EQ_MSG(read_pi(ctx, fd, back, 8192, pi, 128, 0), 4096, "short read at EOF");
	expected_pi(T1_512, want, d, 4096, 0);
	CHECKF(memcmp(pi, want, 64) == 0, "tuples for the 8 intervals read");
	uint8_t zero[64] = { 0 };
	CHECKF(memcmp(pi + 64, zero, 64) == 0, "intervals not read have zero tuples");
	/* Scattered iovecs (512-multiples, as O_DIRECT needs), out of order in
	 * memory: tuples computed across iovec boundaries. */
	struct iovec iov[4] = {
		{ back, 1536 }, { back + 4096, 1024 }, { back + 2048, 1536 }, { pi, 64 }
	};
	struct iocb io;
	struct io_event ev;
	io_prep_preadvm(&io, fd, iov, 4, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, "scattered PI read submitted");
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "scattered PI read reaped");
	CHECK_EQ_MSG((long)ev.res, 4096, "scattered read res");
	static uint8_t flat[4096];
	memcpy(flat, back, 1536);
	memcpy(flat + 1536, back + 4096, 1024);
	memcpy(flat + 2560, back + 2048, 1536);
	CHECKF(memcmp(flat, d, 4096) == 0, "scattered data");
	CHECKF(memcmp(pi, want, 64) == 0, "scattered PI");

	/* An end of file inside an interval (1000 more bytes, written without
	 * O_DIRECT): res = 5096 as for a plain read; the 10th interval, read
	 * in part, gets the tuple of its 488 bytes padded with zeros (what a
	 * device with PI holds for that sector, its tail past the end of file
	 * zeroed), the 11th and later zero tuples. */
	int bfd = open("short.dat", O_WRONLY);
	fill_random(d + 4096, 1000, rng);
	CHECKF(bfd >= 0 && pwrite(bfd, d + 4096, 1000, 4096) == 1000 && fsync(bfd) == 0, "1000 bytes appended");
	close(bfd);
	memset(pi, 0xEE, 128);
	CHECK_EQ_MSG(read_pi(ctx, fd, back, 8192, pi, 128, 0), 5096, "read ending inside an interval");
	uint8_t last[512] = { 0 };
	memcpy(last, d + 4608, 488);
	expected_pi(T1_512, want, d, 4608, 0);
	expected_pi(T1_512, want + 72, last, 512, 4608);
	CHECKF(memcmp(pi, want, 80) == 0, "tuples for 10 intervals, the 10th over its bytes and zeros");
	CHECKF(memcmp(pi + 80, zero, 48) == 0, "zero tuples after them");
	CHECKF(memcmp(back, d, 5096) == 0, "the data read");
	close(fd);
	unlink("short.dat");
	free(d); free(pi); free(back); free(want);
}

/* More data than the kernel's MAX_RW_COUNT (0x7FFFF000 bytes) in one PI
 * iocb: cut short as the kernel cuts the same plain preadv (res =
 * 0x7FFFF000), tuples for what was read, the PI iovec's tuples past them
 * left as they were; a write whose tuples fail inside the part it would
 * transfer completes with -EILSEQ.  33 iovecs of one 64 MiB buffer over a
 * sparse file (holes read as zeros, no device I/O).  Regression: refused
 * with -EINVAL. */
static void test_max_rw_count(io_context_t ctx)
{
	enum { SEG = 64 << 20, NSEG = 33 };
	const size_t max_rw = 0x7FFFF000, total = (size_t)SEG * NSEG;
	const size_t tuples = total / 512, read_tuples = max_rw / 512;
	int fd = pi_open_direct("maxrw.dat", O_TRUNC);
	uint8_t *buf = xalloc(SEG), *pi = xalloc(tuples * 8);
	struct iovec iov[NSEG + 1];
	for (int i = 0; i < NSEG; i++)
		iov[i] = (struct iovec){ buf, SEG };
	iov[NSEG] = (struct iovec){ pi, tuples * 8 };
	CHECK_EQ_MSG(ftruncate(fd, (off_t)total + SEG), 0, "a sparse file larger than the data");
	struct iocb io;
	struct io_event ev;
	io_prep_preadv(&io, fd, iov, NSEG, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, "plain preadv of 2112 MiB");
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "its event");
	CHECK_EQ_MSG((long)ev.res, (long)max_rw, "the kernel cuts it to MAX_RW_COUNT");

	memset(pi, 0xEE, tuples * 8);
	io_prep_preadvm(&io, fd, iov, NSEG + 1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, "PI read of 2112 MiB");
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "its event");
	CHECK_EQ_MSG((long)ev.res, (long)max_rw, "cut to MAX_RW_COUNT, as the plain read");
	uint8_t want[8];
	static const uint8_t zeros[512];
	expected_pi(T1_512, want, zeros, 512, 0);
	size_t bad = 0, untouched = 0;
	for (size_t i = 0; i < read_tuples; i++) {
		want[4] = (uint8_t)(i >> 24);
		want[5] = (uint8_t)(i >> 16);
		want[6] = (uint8_t)(i >> 8);
		want[7] = (uint8_t)i;
		bad += memcmp(pi + i * 8, want, 8) != 0;
	}
	for (size_t i = read_tuples * 8; i < tuples * 8; i++)
		untouched += pi[i] == 0xEE;
	CHECKF(bad == 0, "tuples of the %zu intervals read: %zu wrong", read_tuples, bad);
	CHECKF(untouched == (tuples - read_tuples) * 8, "the PI iovec past them untouched");

	/* The same data as a write, the tuples right (the zeros' tuples)
	 * except one inside the part the kernel would write: -EILSEQ, the
	 * file unchanged (still a hole there). */
	pi[5 * 8] ^= 1;
	io_prep_pwritevm(&io, fd, iov, NSEG + 1, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, "PI write of 2112 MiB with one bad tuple");
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "its event");
	CHECK_EQ_MSG((long)ev.res, -EILSEQ, "-EILSEQ");
	struct stat st = { 0 };
	int stat_r = fstat(fd, &st);
	CHECKF(stat_r == 0 && st.st_blocks == 0, "nothing written (%lld blocks)", (long long)st.st_blocks);
	close(fd);
	unlink("maxrw.dat");
	free(buf);
	free(pi);
}

int main(void)
{
	io_context_t ctx = 0;
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	pi_setup(64, &ctx);
	int fd = pi_open_direct("pi.dat", 0);
	uint8_t *zero = xalloc(1 << 20);
	if (pwrite(fd, zero, 1 << 20, 0) != 1 << 20) {
		perror("pwrite");
		return 1;
	}
	free(zero);
	test_hole_in_caller_memory(ctx, fd);
	test_format(ctx, fd, (struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 512 }, &rng);
	test_format(ctx, fd, (struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 4096 }, &rng);
	test_format(ctx, fd, (struct fmt){ IO_PI_T10_DIF_TYPE3_CRC, 512 }, &rng);
	test_format(ctx, fd, (struct fmt){ IO_PI_NVME_TYPE1_CRC64, 4096 }, &rng);
	test_format(ctx, fd, (struct fmt){ IO_PI_NVME_TYPE1_CRC64, 512 }, &rng);
	test_format(ctx, fd, (struct fmt){ IO_PI_NVME_TYPE3_CRC64, 4096 }, &rng);
	test_invalid(ctx, fd);
	test_bad_pointers(ctx, fd);
	test_error_order(ctx, fd);
	test_pi_iovec_import(ctx, fd);
	test_mixed_batch(ctx, fd, &rng);
	test_batch_stops(ctx, fd);
	test_refused_like_plain(ctx, fd);
	test_iocb_key(ctx, fd);
	test_run_cuts(ctx, fd);
	test_queue_run(ctx, fd);
	test_cancel(ctx, fd);
	test_short_read(ctx, &rng);
	test_max_rw_count(ctx);
	CHECK_EQ_MSG(io_destroy(ctx), 0, "io_destroy");
	close(fd);
	return ctest_finish();
}
