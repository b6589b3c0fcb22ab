/* Kernel first: on a kernel that accepts IO_CMD_PREADVM/PWRITEVM (DIX
 * passthrough), the library hands the iocbs over and does nothing else.
 *
 * No kernel here has DIX passthrough, so the parent plays one with ptrace:
 * at each io_submit(2) of the child inside a marked region it rewrites every
 * PI iocb (opcode 9/10) into the plain vectored read/write of its data
 * iovecs (opcode 7/8, one iovec fewer), lets the kernel take it, and puts
 * the caller's opcode and count back when the call returns.  The kernel
 * thus accepts the PI iocbs as they are, as a DIX kernel would (without
 * exchanging the PI with the device, which no device here can).
 *
 * The library must then make exactly one io_submit(2) per call (no
 * liveness check, no shadow), verify nothing (a write with wrong tuples is
 * the kernel's to judge: it is written), compute nothing (a read's PI
 * buffer is the kernel's to fill: left as it was), and hand back the
 * kernel's events with the caller's obj and data.
 *
 * The child runs the batches between raise(SIGSTOP) markers
 * (ctest_trace.h). */
#include "ctest_trace.h"
#include <libaio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/uio.h>

enum { REGIONS = 3, BLK = 8192, PIB = BLK / 512 * 8 };

static int child(void)
{
	struct timespec ts = { 5, 0 };
	struct io_event ev[3];
	io_context_t ctx = 0;

	ctest_traced_child_start();
	REQUIRE(io_setup(8, &ctx) == 0);
	int fd = ctest_direct_file("direct", 4 * BLK, 3, O_RDWR);
	REQUIRE(fd >= 0);
	uint8_t *wdata = ctest_aligned(4096, BLK), *rdata = ctest_aligned(4096, BLK);
	uint8_t *pdata = ctest_aligned(4096, BLK), *check = ctest_aligned(4096, BLK);
	uint8_t wpi[PIB], rpi[PIB], rpi2[PIB];
	REQUIRE(wdata && rdata && pdata && check);
	for (int i = 0; i < BLK; i++)
		wdata[i] = (uint8_t)(i * 13 + 5);
	/* Tuples that verify nowhere: every guard and reference tag wrong. */
	memset(wpi, 0x5A, sizeof wpi);

	/* Region 0: a PI write whose tuples are all wrong, accepted by the
	 * kernel: written, res = its data bytes (no -EILSEQ from us). */
	struct iocb w, *lw[1] = { &w };
	struct iovec wv[2] = { { wdata, BLK }, { wpi, PIB } };
	io_prep_pwritevm(&w, fd, wv, 2, BLK);
	w.data = (void *)0x1111;
	errno = CTEST_ERRNO_CANARY;
	raise(SIGSTOP);
	int r0 = io_submit(ctx, 1, lw);
	raise(SIGSTOP);
	CHECK_EQ_MSG(r0, 1, "the PI write accepted by the kernel");
	CHECK_EQ_MSG(errno, CTEST_ERRNO_CANARY, "errno untouched");
	REQUIRE(io_getevents(ctx, 1, 1, ev, &ts) == 1);
	CHECK(ev[0].obj == &w && ev[0].data == (void *)0x1111);
	CHECK_EQ_MSG((long)ev[0].res, (long)BLK, "the kernel's res, not -EILSEQ");
	CHECK_EQ_MSG(pread(fd, check, BLK, BLK), (ssize_t)BLK, "read back");
	CHECK_EQ_MSG(memcmp(check, wdata, BLK), 0, "the kernel wrote the data");

	/* Region 1: a PI read accepted by the kernel: data read, PI buffer
	 * left to the kernel (as it was, here). */
	struct iocb r, *lr[1] = { &r };
	struct iovec rv[2] = { { rdata, BLK }, { rpi, PIB } };
	memset(rpi, 0xAA, sizeof rpi);
	io_prep_preadvm(&r, fd, rv, 2, BLK);
	r.data = (void *)0x2222;
	raise(SIGSTOP);
	int r1 = io_submit(ctx, 1, lr);
	raise(SIGSTOP);
	CHECK_EQ_MSG(r1, 1, "the PI read accepted by the kernel");
	REQUIRE(io_getevents(ctx, 1, 1, ev, &ts) == 1);
	CHECK(ev[0].obj == &r && ev[0].data == (void *)0x2222);
	CHECK_EQ_MSG((long)ev[0].res, (long)BLK, "the kernel's res");
	CHECK_EQ_MSG(memcmp(rdata, wdata, BLK), 0, "the data read");
	int untouched = 1;
	for (size_t i = 0; i < sizeof rpi; i++)
		untouched &= rpi[i] == 0xAA;
	CHECKF(untouched, "the PI buffer is the kernel's: the library wrote nothing into it");

	/* Region 2: a plain read, a PI read and a PI write in one batch, all
	 * taken by the kernel in one call; every event as the kernel gave it. */
	struct iocb p, r2, w2, *lb[3] = { &p, &r2, &w2 };
	struct iovec r2v[2] = { { rdata, BLK }, { rpi2, PIB } };
	struct iovec w2v[2] = { { wdata, BLK }, { wpi, PIB } };
	memset(rpi2, 0xAA, sizeof rpi2);
	io_prep_pread(&p, fd, pdata, BLK, 0);
	io_prep_preadvm(&r2, fd, r2v, 2, BLK);
	io_prep_pwritevm(&w2, fd, w2v, 2, 2 * BLK);
	p.data = (void *)0x3331;
	r2.data = (void *)0x3332;
	w2.data = (void *)0x3333;
	raise(SIGSTOP);
	int r2n = io_submit(ctx, 3, lb);
	raise(SIGSTOP);
	CHECK_EQ_MSG(r2n, 3, "the mixed batch accepted whole");
	int seen = 0;
	for (int got = 0; got < 3;) {
		int n = io_getevents(ctx, 1, 3, ev, &ts);
		REQUIRE(n > 0);
		for (int i = 0; i < n; i++) {
			CHECK_EQ_MSG((long)ev[i].res, (long)BLK, "every event: the kernel's res");
			if (ev[i].obj == &p && ev[i].data == (void *)0x3331)
				seen |= 1;
			else if (ev[i].obj == &r2 && ev[i].data == (void *)0x3332)
				seen |= 2;
			else if (ev[i].obj == &w2 && ev[i].data == (void *)0x3333)
				seen |= 4;
			else
				CHECKF(0, "an event nobody submitted: obj %p data %p", (void *)ev[i].obj, ev[i].data);
		}
		got += n;
	}
	CHECK_EQ_MSG(seen, 7, "one event for each iocb, with its obj and data");
	CHECK_EQ_MSG(memcmp(rdata, wdata, BLK), 0, "the batch's PI read");
	untouched = 1;
	for (size_t i = 0; i < sizeof rpi2; i++)
		untouched &= rpi2[i] == 0xAA;
	CHECKF(untouched, "the batch's PI buffer is the kernel's too");
	CHECK_EQ_MSG(pread(fd, check, BLK, 2 * BLK), (ssize_t)BLK, "read back");
	CHECK_EQ_MSG(memcmp(check, wdata, BLK), 0, "the batch's PI write written by the kernel");
	for (int i = 0; i < BLK; i++)
		if (pdata[i] != ctest_pattern((size_t)i, 3)) {
			CHECKF(0, "plain read byte %d", i);
			break;
		}

	io_destroy(ctx);
	free(wdata);
	free(rdata);
	free(pdata);
	free(check);
	close(fd);
	return ctest_finish();
}

/* The parent's stand-in for DIX passthrough: one rewritten 8-byte word of
 * the child's memory and the value to put back. */
struct patch {
	long addr, orig;
};

static long peek(pid_t pid, long addr, int *ok)
{
	errno = 0;
	long v = ptrace(PTRACE_PEEKDATA, pid, (void *)addr, 0);
	if (errno)
		*ok = 0;
	return v;
}

/* At the entry of io_submit(ctx, nr, iocbpp): rewrite each PI iocb into its
 * plain twin (opcode and iovec count), recording what to put back. */
static int take_pi(pid_t pid, long nr, long iocbpp, struct patch *out, int max)
{
	const long op_word = offsetof(struct iocb, aio_lio_opcode) & ~7L;
	const int op_shift = (int)(offsetof(struct iocb, aio_lio_opcode) - op_word) * 8;
	const long nbytes = offsetof(struct iocb, u.c.nbytes);
	int n = 0;
	for (long i = 0; i < nr && n + 2 <= max; i++) {
		int ok = 1;
		long io = peek(pid, iocbpp + i * (long)sizeof(void *), &ok);
		long word = peek(pid, io + op_word, &ok);
		long count = peek(pid, io + nbytes, &ok);
		if (!ok)
			continue;
		int op = (int)((word >> op_shift) & 0xFFFF);
		if (op != IO_CMD_PREADVM && op != IO_CMD_PWRITEVM)
			continue;
		long plain = op == IO_CMD_PREADVM ? IO_CMD_PREADV : IO_CMD_PWRITEV;
		long twin = (word & ~(0xFFFFL << op_shift)) | (plain << op_shift);
		REQUIRE_OR_EXIT(ptrace(PTRACE_POKEDATA, pid, (void *)(io + op_word), (void *)twin) == 0);
		REQUIRE_OR_EXIT(ptrace(PTRACE_POKEDATA, pid, (void *)(io + nbytes), (void *)(count - 1)) == 0);
		out[n++] = (struct patch){ io + op_word, word };
		out[n++] = (struct patch){ io + nbytes, count };
	}
	return n;
}

/* The stand-in's state: the words rewritten by the current io_submit(2),
 * and per region the io_submit entries and the PI iocbs rewritten. */
struct dix {
	struct patch patches[16];
	int npatches, counts[REGIONS], taken[REGIONS];
};

static void play_dix(pid_t pid, int region, const struct __ptrace_syscall_info *info, void *arg)
{
	struct dix *d = arg;
	if (info->op == PTRACE_SYSCALL_INFO_ENTRY && info->entry.nr == SYS_io_submit) {
		d->counts[region]++;
		d->npatches = take_pi(pid, (long)info->entry.args[1], (long)info->entry.args[2], d->patches,
				     (int)(sizeof d->patches / sizeof d->patches[0]));
		d->taken[region] += d->npatches / 2;
	} else if (info->op == PTRACE_SYSCALL_INFO_EXIT && d->npatches) {
		/* The kernel has copied the iocbs: the caller's own back. */
		for (int i = 0; i < d->npatches; i++) {
			struct patch *p = &d->patches[i];
			REQUIRE_OR_EXIT(ptrace(PTRACE_POKEDATA, pid, (void *)p->addr, (void *)p->orig) == 0);
		}
		d->npatches = 0;
	}
}

int main(void)
{
	struct dix d = { .npatches = 0 };
	int stops;
	int st = ctest_run_traced(child, REGIONS, play_dix, &d, &stops);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		ctest_skip("the child skipped");
	CHECK_EQ_MSG(stops, 2 * REGIONS, "the child marked every region");
	for (int i = 0; i < REGIONS; i++) {
		CHECKF(d.counts[i] == 1, "region %d: exactly one io_submit(2) (%d)", i, d.counts[i]);
		CHECKF(d.taken[i] == (i == 2 ? 2 : 1), "region %d: the PI iocbs reached the kernel as PI iocbs (%d)", i,
		       d.taken[i]);
	}
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's own checks passed (status %#x)", st);
	return ctest_finish();
}
