/*
 * raw_reaper.c: a program that reaps one context both through the library
 * and with the raw io_getevents(2) system call (as InnoDB makes it) gets
 * every completion exactly once.
 *
 * The kernel moves the ring's head under its own lock, with no
 * compare-and-swap, so a user-space reap and a raw system call that
 * overlap copy the same events.  The library cannot exclude a reaper it
 * does not know; it notices one instead: once head has moved behind its
 * back, that context is reaped only by the system call (as with libaio).
 * Here the raw call takes an event first, alone; the next library reap
 * notices; then two threads mix the two ways of reaping while the main
 * thread submits TOTAL reads, each iocb used once, so a completion
 * delivered twice is unambiguous.  Before the library noticed foreign
 * reapers, an independent tester saw duplicates in 7 of 8 runs of this mix
 * (300,000 reads).
 */
#include <libaio.h>

#include "ctest.h"
#include <sched.h>
#include <sys/syscall.h>

#define TOTAL 300000

static io_context_t ctx;
static struct iocb *cbs;
static atomic_int *deliveries;
static atomic_long got, outstanding, foreign_events;
static atomic_int stop;

static void take(const struct io_event *ev, long n)
{
	for (long i = 0; i < n; i++) {
		long k = ev[i].obj - cbs;
		if (k < 0 || k >= TOTAL || (long)ev[i].res != 512) {
			atomic_fetch_add(&foreign_events, 1);
			continue;
		}
		atomic_fetch_add(&deliveries[k], 1);
		atomic_fetch_add(&got, 1);
		atomic_fetch_sub(&outstanding, 1);
	}
}

static void *library_reaper(void *arg)
{
	(void)arg;
	struct io_event ev[32];
	struct timespec zero = { 0, 0 };
	while (!atomic_load(&stop)) {
		int n = io_getevents(ctx, 0, 32, ev, &zero);
		if (n > 0)
			take(ev, n);
		else
			sched_yield();
	}
	return NULL;
}

static void *raw_reaper(void *arg)
{
	(void)arg;
	struct io_event ev[32];
	struct timespec zero = { 0, 0 };
	while (!atomic_load(&stop)) {
		long n = syscall(SYS_io_getevents, ctx, 0L, 32L, ev, &zero);
		if (n > 0)
			take(ev, n);
		else
			sched_yield();
	}
	return NULL;
}

int main(void)
{
	char path[] = "raw_reaper.XXXXXX";
	static char block[4096], buf[512];
	int fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	unlink(path);
	memset(block, 'r', sizeof block);
	if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
		return 1;
	cbs = calloc(TOTAL, sizeof *cbs);
	deliveries = calloc(TOTAL, sizeof *deliveries);
	if (!cbs || !deliveries)
		return 1;
	CHECK_EQ(io_setup(256, &ctx), 0);

	/* The library reaps in user space (the first reap into `ev` is the
	 * system call, which proves it writable; the second is in user space);
	 * then the raw call reaps alone; the library's next reap notices. */
	struct iocb first[4], *fp[4] = { &first[0], &first[1], &first[2], &first[3] };
	struct io_event ev[4];
	struct timespec zero = { 0, 0 };
	for (int i = 0; i < 4; i++)
		io_prep_pread(&first[i], fd, buf, 512, i * 512);
	CHECK_EQ(io_submit(ctx, 4, fp), 4);
	CHECK_EQ(io_getevents(ctx, 4, 4, ev, &zero), 4);
	CHECK_EQ(io_submit(ctx, 1, fp), 1);
	CHECK_EQ(io_getevents(ctx, 1, 4, ev, &zero), 1);
	CHECKF(ev[0].obj == &first[0], "the library took the read");
	CHECK_EQ(io_submit(ctx, 2, fp), 2);
	CHECK_EQ(syscall(SYS_io_getevents, ctx, 1L, 1L, ev, NULL), 1);
	CHECKF(ev[0].obj == &first[0], "the raw call took the first read");
	CHECK_EQ(io_getevents(ctx, 1, 4, ev, &zero), 1);
	CHECKF(ev[0].obj == &first[1], "the library took the second, once");
	CHECK_EQ(io_getevents(ctx, 0, 4, ev, &zero), 0);

	pthread_t a, b;
	pthread_create(&a, NULL, library_reaper, NULL);
	pthread_create(&b, NULL, raw_reaper, NULL);
	for (long i = 0; i < TOTAL;) {
		if (atomic_load(&outstanding) > 128) {
			sched_yield();
			continue;
		}
		struct iocb *p[8];
		int n = 0;
		for (; n < 8 && i < TOTAL; n++, i++) {
			io_prep_pread(&cbs[i], fd, buf, 512, (i % 8) * 512);
			p[n] = &cbs[i];
		}
		atomic_fetch_add(&outstanding, n);
		int r = io_submit(ctx, n, p);
		if (r != n) {
			CHECKF(0, "io_submit of %d returned %d", n, r);
			return ctest_finish();
		}
	}
	for (int w = 0; w < 20000 && atomic_load(&got) < TOTAL; w++)
		usleep(1000);
	usleep(50000);
	atomic_store(&stop, 1);
	pthread_join(a, NULL);
	pthread_join(b, NULL);

	long twice = 0, never = 0;
	for (long i = 0; i < TOTAL; i++) {
		if (deliveries[i] > 1)
			twice++;
		if (deliveries[i] == 0)
			never++;
	}
	printf("%d reads: %ld events delivered, %ld reads more than once, %ld never, %ld stray\n", TOTAL,
	       atomic_load(&got), twice, never, atomic_load(&foreign_events));
	CHECK_EQ_MSG(twice, 0, "reads delivered more than once");
	CHECK_EQ_MSG(never, 0, "reads never delivered");
	CHECK_EQ_MSG(atomic_load(&foreign_events), 0, "events of no read of ours, or a wrong res");
	CHECK_EQ(io_destroy(ctx), 0);
	close(fd);
	free(cbs);
	free(deliveries);
	return ctest_finish();
}
