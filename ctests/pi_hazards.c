/* PI iocbs when the process is short of resources or breaks the buffer
 * contract while an op is in flight:
 *  - a write whose tuples do not verify still completes with -EILSEQ, and
 *    the good writes around it are submitted and written, when the fd table
 *    is full (the library needs no file descriptor for it; an earlier
 *    version created an eventfd and failed the batch with -EMFILE);
 *  - a read whose PI buffer is made inaccessible, or read-only, while the
 *    read is in flight: no crash, the event reports -EFAULT, and a
 *    read-only buffer is left as it was;
 *  - a read whose data buffer (three pieces, the middle one the changed
 *    one) is unmapped or made inaccessible after io_submit, before the
 *    event is reaped: no crash (the library once computed the PI from the
 *    unmapped pages and faulted in io_getevents), the event reports
 *    -EFAULT and the PI buffer holds zeros; made read-only instead: the
 *    read completes with correct tuples;
 *  - PI iocbs in a page another thread write-protects and unprotects
 *    while they are being submitted: each io_submit returns a count (the
 *    kernel's -EFAULT for an iocb whose aio_key it cannot store), never a
 *    crash (the library once stored aio_key directly after one proof);
 *  - a plain iocb freed right after io_submit (legal: the kernel copied
 *    it) whose memory the library then uses for a PI record, so that the
 *    plain event's obj is the PI shadow's address: each event still goes
 *    to its own iocb. */
#include "pi_common.h"
#include <sys/mman.h>
#include <sys/resource.h>
#include <pthread.h>
#include <time.h>

static const struct fmt T1 = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

enum { LEN = 4096, N = LEN / 512, RLEN = 65536, RPI = RLEN / 512 * 8 };

/* Three writes, the middle one with a bad guard, submitted with no fd to
 * spare. */
static void writes_with_no_fd_to_spare(io_context_t ctx, int fd)
{
	uint8_t *d = xalloc(3 * LEN), *zero = xalloc(3 * LEN), *pi = xalloc(3 * N * 8), *back = xalloc(3 * LEN);
	uint64_t rng = 11;
	fill_random(d, 3 * LEN, &rng);
	CHECK_EQ_MSG(pwrite(fd, zero, 3 * LEN, 0), 3 * LEN, "file zeroed");
	struct iocb w[3], *wl[3];
	struct iovec wv[3][2];
	for (int i = 0; i < 3; i++) {
		expected_pi(T1, pi + i * N * 8, d + i * LEN, LEN, (long long)i * LEN);
		wv[i][0] = (struct iovec){ d + i * LEN, LEN };
		wv[i][1] = (struct iovec){ pi + i * N * 8, N * 8 };
		io_prep_pwritevm(&w[i], fd, wv[i], 2, (long long)i * LEN);
		w[i].data = (void *)(long)(i + 1);
		wl[i] = &w[i];
	}
	pi[N * 8 + 3 * 8] ^= 1; /* write 2, interval 3: guard off by one bit */

	struct rlimit old, low;
	if (getrlimit(RLIMIT_NOFILE, &old) != 0)
		return;
	low = (struct rlimit){ 64, old.rlim_max };
	if (setrlimit(RLIMIT_NOFILE, &low) != 0) {
		printf("skip: cannot lower RLIMIT_NOFILE\n");
		return;
	}
	int fds[64], nf = 0, full;
	for (;;) {
		int x = dup(fd);
		if (x < 0) {
			full = errno == EMFILE;
			break;
		}
		fds[nf++] = x;
	}
	int r = io_submit(ctx, 3, wl);
	struct io_event ev[3];
	int got = r > 0 ? reap_n(ctx, ev, r) : 0;
	for (int i = 0; i < nf; i++)
		close(fds[i]);
	setrlimit(RLIMIT_NOFILE, &old);

	CHECKF(full, "the fd table was full");
	CHECK_EQ_MSG(r, 3, "fd table full: all three writes accepted");
	CHECK_EQ_MSG(got, 3, "three events");
	for (int i = 0; i < got; i++) {
		long k = (long)ev[i].data;
		long want = k == 2 ? -EILSEQ : LEN;
		CHECKF(k >= 1 && k <= 3 && ev[i].obj == &w[k - 1] && (long)ev[i].res == want,
		       "write %ld: res %ld (want %ld)", k, (long)ev[i].res, want);
	}
	CHECK_EQ_MSG(pread(fd, back, 3 * LEN, 0), 3 * LEN, "read back");
	CHECKF(memcmp(back, d, LEN) == 0 && memcmp(back + 2 * LEN, d + 2 * LEN, LEN) == 0,
	       "the good writes were written");
	CHECKF(memcmp(back + LEN, zero, LEN) == 0, "the bad one was not");
	free(d);
	free(zero);
	free(pi);
	free(back);
}

/* A 64 KiB PI read whose PI buffer gets protection `prot` right after
 * io_submit (before the event is reaped). */
static void pi_buffer_changed_in_flight(io_context_t ctx, int fd, int prot, const char *what)
{
	uint8_t *data = xalloc(RLEN);
	uint8_t *pi = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pi == MAP_FAILED) {
		CHECKF(0, "mmap");
		return;
	}
	memset(pi, 0x77, 4096);
	struct iovec v[2] = { { data, RLEN }, { pi, RPI } };
	struct iocb io;
	io_prep_preadvm(&io, fd, v, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, what);
	CHECK_EQ_MSG(mprotect(pi, 4096, prot), 0, "mprotect");
	struct io_event ev;
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "reaped, no crash");
	CHECKF(ev.obj == &io && (long)ev.res == -EFAULT, "%s: res %ld (want -EFAULT)", what, (long)ev.res);
	if (prot & PROT_READ) {
		int same = 1;
		for (int i = 0; i < 4096; i++)
			same &= pi[i] == 0x77;
		CHECKF(same, "%s: the PI buffer is unchanged", what);
	}
	munmap(pi, 4096);
	free(data);
}

/* A 64 KiB PI read into three data pieces (16 KiB of ours, 32 KiB of a
 * mapping whose protection becomes `prot` after io_submit, or which is
 * unmapped if `prot` < 0, then 16 KiB of ours); `file` is the file's
 * first 64 KiB. */
static void data_changed_in_flight(io_context_t ctx, int fd, const uint8_t *file, int prot, const char *what)
{
	enum { Q = RLEN / 4 };
	uint8_t *a = xalloc(Q), *c = xalloc(Q), *pi = xalloc(RPI), want[RPI], zeros[RPI];
	uint8_t *m = mmap(NULL, 2 * Q, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		CHECKF(0, "mmap");
		return;
	}
	CHECK_EQ_MSG(pwrite(fd, file, RLEN, 0), RLEN, "file rewritten");
	memset(pi, 0x55, RPI);
	memset(zeros, 0, RPI);
	struct iovec v[4] = { { a, Q }, { m, 2 * Q }, { c, Q }, { pi, RPI } };
	struct iocb io;
	io_prep_preadvm(&io, fd, v, 4, 0);
	io.data = (void *)0x5A;
	CHECK_EQ_MSG(submit1(ctx, &io), 1, what);
	CHECK_EQ_MSG(prot < 0 ? munmap(m, 2 * Q) : mprotect(m, 2 * Q, prot), 0, "munmap/mprotect");
	struct io_event ev;
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "reaped, no crash");
	CHECKF(ev.obj == &io && ev.data == (void *)0x5A, "%s: the caller's obj and data", what);
	if (prot >= 0 && (prot & PROT_READ)) {
		expected_pi(T1, want, file, RLEN, 0);
		CHECKF((long)ev.res == RLEN && memcmp(pi, want, RPI) == 0 && memcmp(m, file + Q, 2 * Q) == 0,
		       "%s: res %ld (want %d) and correct tuples", what, (long)ev.res, RLEN);
		munmap(m, 2 * Q);
	} else {
		CHECKF((long)ev.res == -EFAULT && memcmp(pi, zeros, RPI) == 0,
		       "%s: res %ld (want -EFAULT) and a zeroed PI buffer", what, (long)ev.res);
		if (prot == PROT_NONE)
			munmap(m, 2 * Q);
	}
	free(a);
	free(c);
	free(pi);
}

static volatile int stop_toggling;
static void *toggle_protection(void *page)
{
	for (long n = 0; !stop_toggling; n++) {
		mprotect(page, 4096, PROT_READ);
		for (volatile long i = 0; i < n % 50; i++)
			;
		mprotect(page, 4096, PROT_READ | PROT_WRITE);
	}
	return NULL;
}

static void iocb_page_protected_meanwhile(io_context_t ctx, int fd)
{
	enum { NI = 48 };
	uint8_t *d = xalloc(4096), *pi = xalloc(64 * NI), *area;
	area = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* The first 8 iocbs end page 0, the rest are in page 1 (toggled). */
	struct iocb *io = (struct iocb *)(area + 4096 - 8 * sizeof(struct iocb)), *l[NI];
	struct iovec v[NI][2];
	for (int i = 0; i < NI; i++) {
		v[i][0] = (struct iovec){ d, 4096 };
		v[i][1] = (struct iovec){ pi + 64 * i, 64 };
		l[i] = &io[i];
	}
	pthread_t t;
	stop_toggling = 0;
	pthread_create(&t, NULL, toggle_protection, area + 4096);
	long rounds = 0, accepted = 0, refused = 0, bad = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		/* Prepare on page 1 while it is writable (retry if it was not). */
		for (int i = 0; i < NI; i++) {
			struct iocb tmp;
			io_prep_preadvm(&tmp, fd, v[i], 2, 0);
			tmp.data = (void *)(long)(i + 1);
			struct iovec lo = { &tmp, sizeof tmp }, re = { &io[i], sizeof tmp };
			while (process_vm_writev(getpid(), &lo, 1, &re, 1, 0) != (ssize_t)sizeof tmp)
				;
		}
		int r = io_submit(ctx, NI, l);
		rounds++;
		if (r < 0) {
			refused++;
			continue;
		}
		accepted += r;
		struct io_event ev[NI];
		int got = reap_n(ctx, ev, r);
		bad += got != r;
		for (int e = 0; e < got; e++) {
			long k = (long)ev[e].data;
			bad += !(k >= 1 && k <= r && ev[e].obj == &io[k - 1] && (long)ev[e].res == 4096);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - t0.tv_sec < 3);
	stop_toggling = 1;
	pthread_join(t, NULL);
	CHECKF(bad == 0 && accepted > 0, "iocb page write-protected meanwhile: %ld rounds, %ld accepted, %ld refused, %ld wrong events",
	       rounds, accepted, refused, bad);
	munmap(area, 2 * 4096);
	free(d);
	free(pi);
}

/* The aio ring header, to see the shadow's address (the raw obj). */
struct ring_hdr {
	unsigned id, nr, head, tail, magic, compat, incompat, header_length;
	struct io_event ev[];
};

static void freed_plain_iocb_at_a_shadow_address(int fd)
{
	io_context_t ctx = 0;
	pi_setup(16, &ctx);
	volatile struct ring_hdr *rg = (volatile struct ring_hdr *)ctx;
	uint8_t *b = xalloc(4096), *b2 = xalloc(4096), pi[64];
	struct iovec v[2] = { { b, 4096 }, { pi, 64 } };
	struct iocb r1, r2, *p = &r1;
	struct io_event ev[4];
	io_prep_preadvm(&r1, fd, v, 2, 0);
	CHECK_EQ_MSG(io_submit(ctx, 1, &p), 1, "a PI read");
	for (int t = 0; t < 10000 && rg->tail == rg->head; t++)
		usleep(100);
	uintptr_t shadow = (uintptr_t)rg->ev[rg->head].obj;
	CHECK_EQ_MSG(io_getevents(ctx, 1, 4, ev, NULL), 1, "reaped");
	/* Its record is free now: find the malloc size that gives its memory
	 * back (glibc reuses the chunk; other allocators may not: then skip). */
	char *blk = NULL, *held[128];
	int nh = 0;
	for (size_t sz = 64; sz <= 1024 && !blk && nh < 128; sz += 8) {
		char *q = malloc(sz);
		if ((uintptr_t)q <= shadow && shadow + 64 <= (uintptr_t)q + sz)
			blk = q;
		else
			held[nh++] = q;
	}
	if (blk) {
		struct iocb *user = (struct iocb *)shadow;
		io_prep_pread(user, fd, b2, 512, 0);
		user->data = (void *)0xAAAA;
		p = user;
		CHECK_EQ_MSG(io_submit(ctx, 1, &p), 1, "a plain read from an iocb at the old shadow address");
		free(blk); /* done with it: the next record may be allocated there */
		io_prep_preadvm(&r2, fd, v, 2, 0);
		r2.data = (void *)0xBBBB;
		p = &r2;
		CHECK_EQ_MSG(io_submit(ctx, 1, &p), 1, "a second PI read");
		int got = reap_n(ctx, ev, 2);
		CHECK_EQ_MSG(got, 2, "two events");
		for (int i = 0; i < got; i++) {
			if (ev[i].data == (void *)0xAAAA)
				CHECKF(ev[i].obj == (void *)shadow && (long)ev[i].res == 512, "the plain event is the plain read's");
			else
				CHECKF(ev[i].data == (void *)0xBBBB && ev[i].obj == &r2 && (long)ev[i].res == 4096,
				       "the PI event is the PI read's (obj %p data %p res %ld)", (void *)ev[i].obj, ev[i].data,
				       (long)ev[i].res);
		}
	} else {
		printf("# skip: the allocator did not give the record's memory back\n");
	}
	while (nh > 0)
		free(held[--nh]);
	io_destroy(ctx);
	free(b);
	free(b2);
}

int main(void)
{
	io_context_t ctx = 0;
	pi_setup(16, &ctx);
	uint8_t *d;
	int fd = random_direct_file("hazards.dat", RLEN, 5, &d);

	writes_with_no_fd_to_spare(ctx, fd);
	pi_buffer_changed_in_flight(ctx, fd, PROT_NONE, "PI buffer made inaccessible in flight");
	pi_buffer_changed_in_flight(ctx, fd, PROT_READ, "PI buffer made read-only in flight");
	data_changed_in_flight(ctx, fd, d, -1, "data unmapped in flight");
	data_changed_in_flight(ctx, fd, d, PROT_NONE, "data made inaccessible in flight");
	data_changed_in_flight(ctx, fd, d, PROT_READ, "data made read-only in flight");
	freed_plain_iocb_at_a_shadow_address(fd);
	iocb_page_protected_meanwhile(ctx, fd);

	/* And the usual case still stores correct tuples. */
	uint8_t *data = xalloc(RLEN), *pi = xalloc(RPI), want[RPI];
	struct iovec v[2] = { { data, RLEN }, { pi, RPI } };
	struct iocb io;
	struct io_event ev;
	CHECK_EQ_MSG(pwrite(fd, d, RLEN, 0), RLEN, "file rewritten");
	io_prep_preadvm(&io, fd, v, 2, 0);
	CHECK_EQ_MSG(submit1(ctx, &io), 1, "a good read");
	CHECK_EQ_MSG(reap1(ctx, &ev), 1, "reaped");
	CHECK_EQ_MSG((long)ev.res, RLEN, "good read res");
	expected_pi(T1, want, d, RLEN, 0);
	CHECKF(memcmp(pi, want, RPI) == 0 && memcmp(data, d, RLEN) == 0, "good read: data and PI");

	free(d);
	free(data);
	free(pi);
	io_destroy(ctx);
	close(fd);
	unlink("hazards.dat");
	return ctest_finish();
}
