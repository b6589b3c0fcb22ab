/*
 * valgrind_reap.c: reaping from the mapped ring in user space works under
 * valgrind (memcheck sees no error) and gives the right data.
 *
 * Re-executes itself under `valgrind --error-exitcode=1`; skips (77) when
 * valgrind is not installed.  Inside valgrind it reads a file through
 * io_submit + io_getevents (zero, NULL and finite timeouts) and io_queue_run,
 * with a second thread reaping concurrently (valgrind serialises threads, so
 * a reaper waiting for another must yield, not spin forever).  Then reads
 * into fresh heap memory, used by the program: memcheck must see them as
 * defined, as it does with the system libaio.
 */
// ctest-no-sanitize
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>

#include "ctest.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <valgrind/valgrind.h>


#define OPS 2000
static io_context_t ctx;
static int fd;
static struct iocb iocbs[OPS];
static char bufs[OPS][512];
static atomic_int got[OPS];
static atomic_int done;
static atomic_int bad;

static void take(struct io_event *e)
{
	long i = (struct iocb *)e->obj - iocbs;
	if (i < 0 || i >= OPS || e->res != 512 || bufs[i][0] != (char)(i % 251) ||
	    bufs[i][511] != (char)(i % 251)) {
		atomic_fetch_add(&bad, 1);
		return;
	}
	atomic_fetch_add(&got[i], 1);
	atomic_fetch_add(&done, 1);
}

static void cb(io_context_t c, struct iocb *io, long res, long res2)
{
	struct io_event e = { .obj = io, .res = (unsigned long)res, .res2 = (unsigned long)res2 };
	(void)c;
	take(&e);
}

static void *helper(void *arg)
{
	struct io_event ev[8];
	struct timespec zero = { 0, 0 };
	(void)arg;
	while (atomic_load(&done) < OPS) {
		int n = io_getevents(ctx, 0, 8, ev, &zero);
		for (int i = 0; i < n; i++)
			take(&ev[i]);
		if (n < 0)
			atomic_fetch_add(&bad, 1);
	}
	return NULL;
}

static int body(void)
{
	char path[] = "valgrind_reap.XXXXXX";
	static char data[OPS * 512];
	for (int i = 0; i < OPS; i++)
		memset(data + i * 512, i % 251, 512);
	fd = mkstemp(path);
	if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
		return 1;
	unlink(path);
	int r = io_queue_init(64, &ctx);
	CHECKF(r == 0, "io_queue_init = %d", r);
	pthread_t t;
	pthread_create(&t, NULL, helper, NULL);
	struct timespec zero = { 0, 0 }, ms = { 0, 1000000 };
	for (int i = 0; i < OPS; i += 4) {
		struct iocb *list[4];
		for (int k = 0; k < 4; k++) {
			io_prep_pread(&iocbs[i + k], fd, bufs[i + k], 512, (long long)(i + k) * 512);
			io_set_callback(&iocbs[i + k], cb);
			list[k] = &iocbs[i + k];
		}
		if (io_submit(ctx, 4, list) != 4)
			atomic_fetch_add(&bad, 1);
		struct io_event ev[4];
		int n;
		switch ((i / 4) % 4) {
		case 0:
			n = io_getevents(ctx, 0, 4, ev, &zero);
			break;
		case 1:
			n = io_getevents(ctx, 0, 2, ev, &ms);
			break;
		case 2:
			n = io_queue_run(ctx);
			n = n ? -1 : 0;
			break;
		default:
			n = io_getevents(ctx, 0, 4, ev, NULL);
			break;
		}
		for (int k = 0; k < n; k++)
			take(&ev[k]);
		if (n < 0)
			atomic_fetch_add(&bad, 1);
	}
	pthread_join(t, NULL);
	int once = 1;
	for (int i = 0; i < OPS; i++)
		once &= atomic_load(&got[i]) == 1;
	CHECKF(once && atomic_load(&done) == OPS, "%d reads reaped exactly once, right data", OPS);
	CHECKF(atomic_load(&bad) == 0, "no bad event (%d)", atomic_load(&bad));

	/* Regression: memcheck's model of io_getevents(2) marks the buffer of
	 * each read it returns as defined; a read reaped from the ring in user
	 * space never passed through it, so data read into fresh (undefined)
	 * heap memory was reported as uninitialised where the program used it
	 * (with the system libaio, which always makes the system call, it is
	 * not).  The events buffer is proven by the first reap, and a read of
	 * a regular file (not O_DIRECT) is in the ring when io_submit returns,
	 * so the later rounds are the ones the fast path would take. */
	for (int round = 0; round < 4; round++) {
		unsigned char *fresh = malloc(512);
		struct iocb *one = &iocbs[0];
		struct io_event ev1;
		REQUIRE(fresh != NULL);
		io_prep_pread(&iocbs[0], fd, fresh, 512, 7 * 512);
		CHECK_RET(io_submit(ctx, 1, &one), 1);
		CHECK_RET(io_getevents(ctx, 1, 1, &ev1, NULL), 1);
		CHECK(ev1.obj == &iocbs[0] && ev1.res == 512);
		int sum = 0;
		for (int k = 0; k < 512; k++)
			sum += fresh[k];
		/* A branch on the data: memcheck's error if it thinks it undefined. */
		CHECKF(sum == 7 * 512, "round %d: the data read (sum %d)", round, sum);
		free(fresh);
	}
	CHECKF(io_queue_release(ctx) == 0, "io_queue_release");
	return ctest_finish();
}

int main(int argc, char **argv)
{
	(void)argc;
	if (RUNNING_ON_VALGRIND)
		return body();
	return ctest_rerun_under_valgrind(argv[0], "--fair-sched=try", NULL);
}
