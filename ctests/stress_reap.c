/*
 * stress_reap.c: every completion is delivered exactly once when many
 * threads share one context and mix blocking, timed and zero-timeout
 * io_getevents with io_queue_run (user-space ring reaping and system-call
 * reaping racing each other).
 *
 * Each phase submits T reads from several submitter threads; each iocb has
 * its own slot in a delivery counter array.  Reapers count every event they
 * get (by its iocb pointer) with an atomic add.  At the end of a phase every
 * counter must be exactly 1: 0 = lost, 2+ = delivered twice.
 *
 * Phases:
 *   mixed:   3 submitters; reapers: blocking (NULL timeout), timed (1 ms,
 *            min_nr 1..4), zero-timeout, io_queue_run.
 *   blocked: a thread sits in io_getevents(timeout = NULL) the whole time
 *            while others reap with zero timeouts.
 *   fast:    no blocking reaper (user-space reaping almost always).
 *
 * Blocking reapers are released at the end of a phase with extra "wake-up"
 * reads, counted apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>

#include "ctest.h"
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


/* PGET: io_pgetevents with a signal mask and a zero timeout, which always
 * takes the system call: the kernel reaps while others reap in user space. */
enum mode { BLOCKING, TIMED, ZERO, QUEUE_RUN, PGET };
static const char *mode_name[] = { "blocking", "timed", "zero", "queue_run", "pgetevents" };

#define MAX_OPS 400000
#define WAKERS 4096

static io_context_t ctx;
static int fd;
static struct iocb *iocbs;        /* MAX_OPS ops, then WAKERS wake-ups */
static atomic_int *deliveries;    /* per iocb */
static atomic_long delivered;     /* ops (not wake-ups) delivered */
static atomic_long bad_events;    /* wrong res, unknown obj, bad return */
static atomic_long calls[5];
static atomic_int stop_reapers;
static atomic_int blocking_running;
static long total;                /* ops in this phase */
static int nsubmitters;
static char scratch[8][512];      /* read targets: contents are not checked */

static void count(struct iocb *io, long res)
{
	long i = io - iocbs;
	if (i < 0 || i >= MAX_OPS + WAKERS) {
		atomic_fetch_add(&bad_events, 1);
		return;
	}
	if (res != 512)
		atomic_fetch_add(&bad_events, 1);
	atomic_fetch_add(&deliveries[i], 1);
	if (i < MAX_OPS)
		atomic_fetch_add(&delivered, 1);
}

static void callback(io_context_t c, struct iocb *io, long res, long res2)
{
	(void)c;
	(void)res2;
	count(io, res);
}

static void submit_one(struct iocb *io, int buf)
{
	struct iocb *list[1] = { io };
	for (;;) {
		int r = io_submit(ctx, 1, list);
		if (r == 1)
			return;
		if (r != -EAGAIN) {
			fprintf(stderr, "io_submit: %d\n", r);
			atomic_fetch_add(&bad_events, 1);
			return;
		}
		sched_yield();
	}
	(void)buf;
}

struct submitter { int id; long first, n; };

static void *submitter(void *arg)
{
	struct submitter *s = arg;
	struct iocb *batch[8];
	long i = s->first, end = s->first + s->n;
	while (i < end) {
		int b = 1 + (int)(i % 8);
		if (b > end - i)
			b = (int)(end - i);
		for (int k = 0; k < b; k++) {
			struct iocb *io = &iocbs[i + k];
			io_prep_pread(io, fd, scratch[s->id], 512, ((i + k) % 2048) * 512);
			io_set_callback(io, callback);
			batch[k] = io;
		}
		int done = 0;
		while (done < b) {
			int r = io_submit(ctx, b - done, batch + done);
			if (r > 0)
				done += r;
			else if (r == -EAGAIN)
				sched_yield();
			else {
				fprintf(stderr, "io_submit: %d\n", r);
				atomic_fetch_add(&bad_events, 1);
				return NULL;
			}
		}
		i += b;
	}
	return NULL;
}

struct reaper { enum mode mode; int seed; };

static void *reaper(void *arg)
{
	struct reaper *r = arg;
	struct io_event ev[16];
	struct timespec zero = { 0, 0 }, ms = { 0, 1000000 };
	unsigned seed = (unsigned)r->seed;
	sigset_t mask;
	sigemptyset(&mask);
	while (!atomic_load(&stop_reapers)) {
		int n = 0;
		long want;
		switch (r->mode) {
		case BLOCKING:
			n = io_getevents(ctx, 1, 1 + rand_r(&seed) % 16, ev, NULL);
			break;
		case TIMED:
			want = 1 + rand_r(&seed) % 4;
			n = io_getevents(ctx, want, 16, ev, &ms);
			break;
		case ZERO:
			n = io_getevents(ctx, rand_r(&seed) % 2, 1 + rand_r(&seed) % 16, ev, &zero);
			break;
		case PGET:
			n = io_pgetevents(ctx, 0, 1 + rand_r(&seed) % 16, ev, &zero, &mask);
			break;
		case QUEUE_RUN:
			n = io_queue_run(ctx);
			atomic_fetch_add(&calls[r->mode], 1);
			if (n != 0)
				atomic_fetch_add(&bad_events, 1);
			continue;
		}
		atomic_fetch_add(&calls[r->mode], 1);
		if (n < 0 || n > 16) {
			fprintf(stderr, "%s reaper: io_getevents returned %d\n",
				mode_name[r->mode], n);
			atomic_fetch_add(&bad_events, 1);
			continue;
		}
		for (int i = 0; i < n; i++)
			count(ev[i].obj, (long)ev[i].res);
	}
	if (r->mode == BLOCKING)
		atomic_fetch_sub(&blocking_running, 1);
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void phase(const char *name, int nsub, long per_sub, const enum mode *modes, int nreap)
{
	pthread_t st[8], rt[8];
	struct submitter subs[8];
	struct reaper reps[8];
	double t0 = now();

	total = nsub * per_sub;
	nsubmitters = nsub;
	memset(deliveries, 0, sizeof(atomic_int) * (MAX_OPS + WAKERS));
	atomic_store(&delivered, 0);
	atomic_store(&bad_events, 0);
	atomic_store(&stop_reapers, 0);
	atomic_store(&blocking_running, 0);
	for (int i = 0; i < 5; i++)
		atomic_store(&calls[i], 0);
	for (int i = 0; i < nreap; i++)
		if (modes[i] == BLOCKING)
			atomic_fetch_add(&blocking_running, 1);

	for (int i = 0; i < nreap; i++) {
		reps[i].mode = modes[i];
		reps[i].seed = i * 7919 + 1;
		pthread_create(&rt[i], NULL, reaper, &reps[i]);
	}
	for (int i = 0; i < nsub; i++) {
		subs[i] = (struct submitter){ i, i * per_sub, per_sub };
		pthread_create(&st[i], NULL, submitter, &subs[i]);
	}
	for (int i = 0; i < nsub; i++)
		pthread_join(st[i], NULL);
	/* Wait until everything is delivered (or clearly stuck). */
	double deadline = now() + 60;
	while (atomic_load(&delivered) < total && now() < deadline)
		usleep(1000);
	atomic_store(&stop_reapers, 1);
	/* Release reapers blocked in io_getevents(NULL) with wake-up reads. */
	long w = 0;
	while (atomic_load(&blocking_running) > 0 && w < WAKERS) {
		struct iocb *io = &iocbs[MAX_OPS + w++];
		io_prep_pread(io, fd, scratch[7], 512, 0);
		io_set_callback(io, callback);
		submit_one(io, 7);
		usleep(200);
	}
	for (int i = 0; i < nreap; i++)
		pthread_join(rt[i], NULL);
	/* Wake-ups nobody took are still in the ring: drain them. */
	struct timespec zero = { 0, 0 };
	struct io_event ev[16];
	int n;
	while ((n = io_getevents(ctx, 0, 16, ev, &zero)) > 0)
		for (int i = 0; i < n; i++)
			count(ev[i].obj, (long)ev[i].res);

	long lost = 0, dup = 0, wake_dup = 0, wake_lost = 0;
	for (long i = 0; i < total; i++) {
		int d = atomic_load(&deliveries[i]);
		lost += d == 0;
		dup += d > 1;
	}
	for (long i = total; i < MAX_OPS; i++)
		dup += atomic_load(&deliveries[i]) != 0;
	for (long i = 0; i < w; i++) {
		int d = atomic_load(&deliveries[MAX_OPS + i]);
		wake_lost += d == 0;
		wake_dup += d > 1;
	}
	double dt = now() - t0;
	printf("# %s: %ld ops in %.2f s; calls: blocking %ld, timed %ld, zero %ld, queue_run %ld, pgetevents %ld; %ld wake-ups\n",
	       name, total, dt, atomic_load(&calls[0]), atomic_load(&calls[1]),
	       atomic_load(&calls[2]), atomic_load(&calls[3]), atomic_load(&calls[4]), w);
	CHECKF(lost == 0 && dup == 0, "%s: %ld completions each delivered exactly once (lost %ld, duplicated %ld)",
	      name, total, lost, dup);
	CHECKF(wake_lost == 0 && wake_dup == 0, "%s: %ld wake-up completions each delivered once", name, w);
	CHECKF(atomic_load(&bad_events) == 0, "%s: no bad event or return value (%ld)", name,
	      atomic_load(&bad_events));
	CHECKF(atomic_load(&blocking_running) == 0, "%s: every blocked reaper returned", name);
}

int main(void)
{
	char path[] = "stress_reap.XXXXXX";
	static char block[512 * 2048];
	long scale = getenv("STRESS_REAP_SCALE") ? atol(getenv("STRESS_REAP_SCALE")) : 200;

	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	unlink(path);
	memset(block, 'x', sizeof(block));
	if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block)) {
		perror("write");
		return 1;
	}
	iocbs = calloc(MAX_OPS + WAKERS, sizeof(*iocbs));
	deliveries = calloc(MAX_OPS + WAKERS, sizeof(*deliveries));
	if (!iocbs || !deliveries)
		return 1;
	int r = io_queue_init(256, &ctx);
	CHECKF(r == 0, "io_queue_init(256) = %d", r);
	if (r)
		return 1;

	long per = 600 * scale; /* default scale 200: 120000 per submitter */
	if (per * 3 > MAX_OPS)
		per = MAX_OPS / 3;

	enum mode mixed[] = { BLOCKING, TIMED, ZERO, QUEUE_RUN, PGET, ZERO, TIMED };
	phase("mixed", 3, per, mixed, 7);

	enum mode blocked[] = { BLOCKING, ZERO, ZERO, QUEUE_RUN };
	phase("blocked", 2, per, blocked, 4);

	enum mode fast[] = { ZERO, ZERO, QUEUE_RUN, TIMED };
	phase("fast", 3, per, fast, 4);

	enum mode kernel_vs_user[] = { PGET, ZERO, PGET, QUEUE_RUN };
	phase("kernel-vs-user", 3, per, kernel_vs_user, 4);

	r = io_queue_release(ctx);
	CHECKF(r == 0, "io_queue_release = %d", r);
	return ctest_finish();
}
