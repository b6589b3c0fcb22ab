/* PI iocbs through every delivery path and flag: io_pgetevents, an
 * IOCB_FLAG_RESFD eventfd (signalled for emulated completions, -EILSEQ
 * included), a zero-timeout peek, io_queue_wait, and a batch of only PI
 * iocbs larger than the ring.  Also: the standards' CRC vectors through the
 * public API (a PI read of known data returns the standard guard). */
#include "pi_common.h"
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

static const struct fmt T1 = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

int main(void)
{
	io_context_t ctx = 0;
	pi_setup(16, &ctx);
	uint8_t *d, *p = xalloc(16384);
	int fd = random_direct_file("paths.dat", 2 << 20, 7, &d);

	/* io_pgetevents delivers translated events. */
	struct iovec iov[2] = { { d, 4096 }, { p, 64 } };
	struct iocb io, *l[1] = { &io };
	struct io_event ev[64];
	sigset_t mask;
	sigemptyset(&mask);
	io_prep_preadvm(&io, fd, iov, 2, 8192);
	io.data = (void *)0xD0;
	CHECK_EQ_MSG(io_submit(ctx, 1, l), 1, "submitted");
	CHECK_EQ_MSG(io_pgetevents(ctx, 1, 1, ev, NULL, &mask), 1, "io_pgetevents reaps it");
	CHECKF(ev[0].obj == &io && ev[0].data == (void *)0xD0 && (long)ev[0].res == 4096,
	      "io_pgetevents: translated event");
	uint8_t want[1024];
	expected_pi(T1, want, d, 4096, 8192);
	CHECKF(memcmp(p, want, 64) == 0, "io_pgetevents: PI");

	/* An events buffer at an odd address (C allows it; the kernel fills
	 * it): the PI event is still translated and its PI filled. */
	{
		static _Alignas(16) char raw[2 * sizeof(struct io_event) + 8];
		struct io_event *odd = (struct io_event *)(raw + 4), got;
		memset(p, 0, 64);
		io_prep_preadvm(&io, fd, iov, 2, 8192);
		io.data = (void *)0xD1;
		CHECK_EQ_MSG(io_submit(ctx, 1, l), 1, "submitted (odd events buffer)");
		CHECK_EQ_MSG(io_getevents(ctx, 1, 1, odd, NULL), 1, "reaped into an odd events buffer");
		memcpy(&got, odd, sizeof got);
		CHECKF(got.obj == &io && got.data == (void *)0xD1 && (long)got.res == 4096,
		       "odd events buffer: translated event");
		CHECKF(memcmp(p, want, 64) == 0, "odd events buffer: PI");
	}

	/* IOCB_FLAG_RESFD: the caller's eventfd counts emulated completions. */
	int efd = eventfd(0, EFD_CLOEXEC);
	uint8_t *bad = xalloc(64);
	memset(bad, 0x5A, 64);
	struct iovec iov2[2] = { { d, 4096 }, { bad, 64 } };
	struct iocb io2[2], *l2[2] = { &io2[0], &io2[1] };
	io_prep_preadvm(&io2[0], fd, iov, 2, 0);
	io_set_eventfd(&io2[0], efd);
	io_prep_pwritevm(&io2[1], fd, iov2, 2, 0); /* bad PI: -EILSEQ */
	io_set_eventfd(&io2[1], efd);
	CHECK_EQ_MSG(io_submit(ctx, 2, l2), 2, "two PI iocbs with RESFD");
	uint64_t cnt = 0, total = 0;
	for (int i = 0; i < 100 && total < 2; i++) {
		if (read(efd, &cnt, 8) == 8)
			total += cnt;
	}
	CHECK_EQ_MSG(total, 2, "eventfd signalled for both");
	int got = reap_n(ctx, ev, 2);
	CHECK_EQ_MSG(got, 2, "both reaped");
	CHECKF(got == 2 && ev[0].obj != ev[1].obj, "one event for each iocb");
	for (int i = 0; i < got; i++) {
		if (ev[i].obj == &io2[0])
			CHECK_EQ_MSG((long)ev[i].res, 4096, "RESFD read res");
		else
			CHECKF(ev[i].obj == &io2[1] && (long)ev[i].res == -EILSEQ, "RESFD bad write -> -EILSEQ");
	}
	/* A bad resfd is the kernel's -EBADF (for the shadow). */
	io_prep_preadvm(&io, fd, iov, 2, 0);
	io_set_eventfd(&io, fd); /* not an eventfd */
	CHECK_EQ_MSG(io_submit(ctx, 1, l), -EINVAL, "resfd that is not an eventfd -> kernel's -EINVAL");

	/* Zero-timeout peek and io_queue_wait see the emulated op complete. */
	io_prep_preadvm(&io, fd, iov, 2, 4096);
	CHECK_EQ_MSG(io_submit(ctx, 1, l), 1, "submitted");
	struct timespec zero = { 0, 0 };
	int n = 0;
	for (int i = 0; i < 50000 && n == 0; i++) { /* up to ~5 s */
		n = io_getevents(ctx, 0, 1, ev, &zero);
		if (n == 0)
			usleep(100);
	}
	CHECK_EQ_MSG(n, 1, "zero-timeout polling reaps the PI read");
	CHECKF(ev[0].obj == &io && (long)ev[0].res == 4096, "polled event translated");
	expected_pi(T1, want, d + 4096, 4096, 4096);
	CHECKF(memcmp(p, want, 64) == 0, "polled PI");

	/* A batch of only PI iocbs, more than the context holds: the kernel's
	 * limit applies (some accepted, the rest -EAGAIN or clamped) as for a
	 * plain batch of the same size, and every accepted one completes. */
	enum { M = 400 };
	static struct iocb big[M], *lb[M];
	uint8_t *pis = xalloc(M * 64), *dd = xalloc((size_t)M * 4096);
	static struct iovec biov[M][2];
	for (int i = 0; i < M; i++) {
		biov[i][0] = (struct iovec){ dd + (size_t)i * 4096, 4096 };
		biov[i][1] = (struct iovec){ pis + i * 64, 64 };
		io_prep_preadvm(&big[i], fd, biov[i], 2, (long long)i * 4096);
		lb[i] = &big[i];
	}
	int plain_acc;
	{
		io_context_t c2 = 0;
		static struct iocb pl[M], *lp[M];
		io_setup(16, &c2);
		for (int i = 0; i < M; i++) {
			io_prep_preadv(&pl[i], fd, biov[i], 1, (long long)i * 4096);
			lp[i] = &pl[i];
		}
		plain_acc = io_submit(c2, M, lp);
		io_destroy(c2);
	}
	int acc = io_submit(ctx, M, lb);
	/* The kernel's per-CPU slot caching makes the exact count vary a little
	 * from run to run; it must be partial and not above the plain count. */
	CHECKF(acc > 0 && acc < M && acc <= plain_acc, "oversized PI batch: %d of %d accepted (plain: %d)", acc, M,
	      plain_acc);
	got = 0;
	while (got < acc) {
		int r = io_getevents(ctx, 1, 64, ev, NULL);
		if (r <= 0)
			break;
		for (int i = 0; i < r; i++)
			if ((long)ev[i].res != 4096 || ev[i].obj < big || ev[i].obj >= big + acc)
				CHECKF(0, "oversized batch: event %ld", (long)ev[i].res);
		got += r;
	}
	CHECK_EQ_MSG(got, acc, "every accepted PI iocb completes");
	int pis_ok = 1;
	for (int i = 0; i < acc; i++) {
		expected_pi(T1, want, dd + (size_t)i * 4096, 4096, (long long)i * 4096);
		pis_ok &= memcmp(pis + i * 64, want, 64) == 0;
	}
	CHECKF(pis_ok, "their PI is correct");

	/* Reaping many ready emulated reads: like the kernel, a call returns
	 * every ready event up to nr, whatever its min_nr (none is left in the
	 * ring for later while the caller asked for more); every event
	 * arrives once, with its PI. */
	{
		enum { N = 8, LEN = 65536 };
		uint8_t *rb = xalloc((size_t)N * LEN), *rp = xalloc(N * 1024);
		struct iocb rio[N], *rl[N];
		struct iovec rv[N][2];
		for (int i = 0; i < N; i++) {
			rv[i][0] = (struct iovec){ rb + (size_t)i * LEN, LEN };
			rv[i][1] = (struct iovec){ rp + i * 1024, 1024 };
			rl[i] = &rio[i];
		}
		/* The library copies events in user space only into memory the
		 * kernel has written before (see src/proven.rs), and io_destroy
		 * forgets those proofs: first have it write all N slots of ev. */
		for (int i = 0; i < N; i++)
			io_prep_preadv(&rio[i], fd, rv[i], 1, (long long)i * LEN);
		CHECK_EQ_MSG(io_submit(ctx, N, rl), N, "8 plain reads");
		CHECK_EQ_MSG(io_getevents(ctx, N, N, ev, NULL), N, "8 plain reads reaped at once");
		for (int i = 0; i < N; i++) {
			io_prep_preadvm(&rio[i], fd, rv[i], 2, (long long)i * LEN);
			rio[i].data = (void *)(long)(i + 1);
		}
		CHECK_EQ_MSG(io_submit(ctx, N, rl), N, "8 PI reads of 64 KiB");
		/* Wait until the kernel has posted all eight in its ring. */
		volatile unsigned *hdr = (volatile unsigned *)ctx; /* id nr head tail */
		for (int t = 0; t < 5000 && (hdr[3] + hdr[1] - hdr[2]) % hdr[1] < N; t++)
			usleep(1000);
		CHECKF((hdr[3] + hdr[1] - hdr[2]) % hdr[1] == N, "all 8 completions are in the ring");
		struct timespec zero = { 0, 0 };
		int seen[N + 1] = { 0 }, got = 0, per_call[3] = { 0 };
		/* (min_nr, nr) of each call, and what the kernel returns: all
		 * that is ready, up to nr. */
		const int asks[3][2] = { { 1, 3 }, { 1, N }, { 0, N } }, expect[3] = { 3, N - 3, 0 };
		for (int c = 0; c < 3; c++) {
			int n = io_getevents(ctx, asks[c][0], asks[c][1], ev, &zero);
			per_call[c] = n;
			for (int i = 0; i < n; i++) {
				long k = (long)ev[i].data;
				if (k >= 1 && k <= N && ev[i].obj == &rio[k - 1] && (long)ev[i].res == LEN)
					seen[k]++;
			}
			got += n > 0 ? n : 0;
		}
		for (int c = 0; c < 3; c++)
			CHECKF(per_call[c] == expect[c], "io_getevents(ctx, %d, %d): %d events (want %d)", asks[c][0],
			       asks[c][1], per_call[c], expect[c]);
		CHECKF(got == N, "all %d delivered", got);
		int once = 1, pis_right = 1;
		uint8_t want_pi[1024], *file = xalloc((size_t)N * LEN);
		CHECKF(pread(fd, file, (size_t)N * LEN, 0) == (ssize_t)N * LEN, "the file, read plainly");
		for (int k = 1; k <= N; k++) {
			const uint8_t *want = file + (size_t)(k - 1) * LEN;
			once &= seen[k] == 1;
			expected_pi(T1, want_pi, want, LEN, (long long)(k - 1) * LEN);
			pis_right &= memcmp(rp + (k - 1) * 1024, want_pi, 1024) == 0 &&
				     memcmp(rb + (size_t)(k - 1) * LEN, want, LEN) == 0;
		}
		CHECKF(once, "every read delivered exactly once");
		CHECKF(pis_right, "every read's data and PI are right");

		/* The same with reads that signal an eventfd: a program woken by
		 * it may drain until a call returns fewer than asked. */
		int rfd = eventfd(0, EFD_CLOEXEC);
		for (int i = 0; i < N; i++) {
			io_prep_preadvm(&rio[i], fd, rv[i], 2, (long long)i * LEN);
			io_set_eventfd(&rio[i], rfd);
		}
		CHECK_EQ_MSG(io_submit(ctx, N, rl), N, "8 PI reads with an eventfd");
		uint64_t signalled = 0, c8 = 0;
		while (signalled < N && read(rfd, &c8, 8) == 8)
			signalled += c8;
		CHECK_EQ_MSG(signalled, N, "the eventfd counted 8");
		CHECK_EQ_MSG(io_getevents(ctx, 0, 2 * N, ev, &zero), N, "one zero-timeout call returns all 8");
		close(rfd);
		free(rb);
		free(rp);
		free(file);
	}

	/* Standards' vectors end to end: 4 KiB of zeros, 0xFF and an
	 * incrementing pattern read with NVMe CRC64 PI (NVM Command Set spec
	 * test cases), and 512 bytes of zeros with T10 DIF (guard 0). */
	CHECK_EQ_MSG(io_set_pi_format(ctx, IO_PI_NVME_TYPE1_CRC64, 4096), 0, "NVMe format");
	static const uint64_t nvme_guard[3] = { 0x6482D367EB22B64EULL, 0xC0DDBA7302ECA3ACULL, 0x3E729F5F6750449CULL };
	for (int k = 0; k < 3; k++) {
		for (int i = 0; i < 4096; i++)
			d[i] = k == 0 ? 0 : k == 1 ? 0xFF : (uint8_t)i;
		if (pwrite(fd, d, 4096, 0) != 4096)
			return 1;
		memset(d, 0xCC, 4096);
		struct iovec v[2] = { { d, 4096 }, { p, 16 } };
		io_prep_preadvm(&io, fd, v, 2, 0);
		CHECK_EQ_MSG(submit1(ctx, &io), 1, "NVMe read");
		CHECK_EQ_MSG(reap1(ctx, ev), 1, "NVMe read reaped");
		uint64_t g = 0;
		for (int i = 0; i < 8; i++)
			g = g << 8 | p[i];
		CHECKF(g == nvme_guard[k], "NVMe spec vector %d: guard %016llx", k, (unsigned long long)g);
	}
	CHECK_EQ_MSG(io_set_pi_format(ctx, IO_PI_T10_DIF_TYPE1_CRC, 512), 0, "T10 format");
	memset(d, 0, 512);
	if (pwrite(fd, d, 512, 512 * 5) != 512)
		return 1;
	struct iovec v1[2] = { { d, 512 }, { p, 8 } };
	io_prep_preadvm(&io, fd, v1, 2, 512 * 5);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, "T10 read");
	CHECK_EQ_MSG(reap1(ctx, ev), 1, "T10 read reaped");
	static const uint8_t t10_zero[8] = { 0, 0, 0, 0, 0, 0, 0, 5 };
	CHECKF(memcmp(p, t10_zero, 8) == 0, "T10: zeros -> guard 0000, app 0, ref 5");

	CHECK_EQ_MSG(io_destroy(ctx), 0, "io_destroy");

	/* A context from a raw io_setup(2) (not this library's): PI iocbs are
	 * emulated with the default format once the kernel vouches for the
	 * context; a bad context gets the kernel's -EINVAL, and nothing of the
	 * batch is read (the kernel read nothing: the array is not mapped). */
	{
		unsigned long raw = 0; /* the kernel's aio_context_t */
		CHECK_EQ_MSG(syscall(SYS_io_setup, 8, &raw), 0, "raw io_setup(2)");
		io_context_t rc = (io_context_t)raw;
		uint8_t *wd = xalloc(4096), *wp = xalloc(64), *rd = xalloc(4096), *rp = xalloc(64);
		uint64_t rng = 8;
		fill_random(wd, 4096, &rng);
		expected_pi(T1, wp, wd, 4096, 8192);
		struct iovec wv[2] = { { wd, 4096 }, { wp, 64 } }, rv[2] = { { rd, 4096 }, { rp, 64 } };
		struct iocb w, r;
		io_prep_pwritevm(&w, fd, wv, 2, 8192);
		CHECK_EQ_MSG(submit1(rc, &w), 1, "raw context: PI write accepted");
		CHECK_EQ_MSG(reap1(rc, ev), 1, "raw context: reaped");
		CHECKF(ev[0].obj == &w && (long)ev[0].res == 4096, "raw context: write event");
		io_prep_preadvm(&r, fd, rv, 2, 8192);
		r.data = (void *)0xAB;
		CHECK_EQ_MSG(submit1(rc, &r), 1, "raw context: PI read accepted");
		CHECK_EQ_MSG(reap1(rc, ev), 1, "raw context: reaped");
		CHECKF(ev[0].obj == &r && ev[0].data == (void *)0xAB && (long)ev[0].res == 4096,
		       "raw context: read event");
		CHECKF(memcmp(rd, wd, 4096) == 0 && memcmp(rp, wp, 64) == 0, "raw context: data and PI");
		wp[9] ^= 1;
		CHECK_EQ_MSG(submit1(rc, &w), 1, "raw context: bad PI write accepted");
		CHECK_EQ_MSG(reap1(rc, ev), 1, "raw context: reaped");
		CHECKF(ev[0].obj == &w && (long)ev[0].res == -EILSEQ, "raw context: -EILSEQ");
		wv[1].iov_len = 8;
		CHECK_EQ_MSG(submit1(rc, &w), -EINVAL, "raw context: short PI buffer -> -EINVAL");
		CHECK_EQ_MSG(io_set_pi_format(rc, IO_PI_NVME_TYPE1_CRC64, 4096), -EINVAL,
			     "raw context: io_set_pi_format -> -EINVAL");
		CHECK_EQ_MSG(io_destroy(rc), 0, "raw context destroyed");
		CHECK_EQ_MSG(io_submit(rc, 1, (struct iocb **)0x7f0000000000ULL), -EINVAL,
			     "destroyed context, unmapped iocb array: the kernel's -EINVAL, no crash");
		free(wd); free(wp); free(rd); free(rp);
	}

	/* A context of this library destroyed behind its back (a raw
	 * io_destroy(2)): the kernel refuses io_submit with -EINVAL without
	 * reading the batch, and so must the library, although it still knows
	 * the context (regression: it read the iocb array and crashed). */
	{
		io_context_t gone = 0;
		pi_setup(4, &gone);
		CHECK_EQ_MSG(syscall(SYS_io_destroy, (unsigned long)gone), 0, "raw io_destroy(2) of our context");
		CHECK_EQ_MSG(io_submit(gone, 1, (struct iocb **)0x7f0000000000ULL), -EINVAL,
			     "registered but destroyed context, unmapped iocb array: the kernel's -EINVAL, no crash");
	}
	close(efd);
	close(fd);
	free(d); free(p); free(bad); free(pis); free(dd);
	return ctest_finish();
}
