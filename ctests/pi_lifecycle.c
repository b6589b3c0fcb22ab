/* PI iocbs across context and process lifecycles:
 *  - io_destroy with PI reads in flight while another thread creates a new
 *    context, which the kernel often puts at the destroyed ring's address
 *    (it unmaps the ring first, then waits for the I/O): the new context's
 *    PI read must come back with its own obj/data/res and tuples, and
 *    io_set_pi_format must still know the new context;
 *  - fork() while another thread submits and reaps PI iocbs: the child's
 *    own PI read on its own context must complete (it used to hang on a
 *    lock held by a parent thread at the fork);
 *  - io_destroy while another thread's io_getevents has taken PI events
 *    from the kernel but not yet returned them (a signal handler runs in
 *    between): that thread must still get the caller's events, as the
 *    kernel gives plain ones (the destroy used to free their records
 *    first, and the reaper got the library's shadow events);
 *  - threads that keep reaping the current handle (zero-timeout
 *    io_getevents, io_queue_run) while the main thread creates a context,
 *    submits PI reads and destroys it, again and again (new contexts often
 *    reuse the destroyed ring's address): every event any of them gets
 *    must be one of the caller's, once.  A reaper that looked a destroyed
 *    handle up before the new context at its address was registered used
 *    to reap that context's ring alongside a user-space reaper: the same
 *    completion came back twice, once untranslated (a stress test: it
 *    caught that in some runs only; context::tests covers the rule). */
#include "pi_common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/wait.h>

static const struct fmt T1 = { IO_PI_T10_DIF_TYPE1_CRC, 512 };
enum { BIG = 1 << 20, NSLOW = 16, FILE_MB = 32 };

static int fd;
static uint8_t *file_data; /* the file's first 4 KiB */
static io_context_t ctx1;
static _Atomic int phase;

static void *destroyer(void *a)
{
	(void)a;
	while (atomic_load(&phase) != 1)
		;
	atomic_store(&phase, 2);
	int r = io_destroy(ctx1);
	atomic_store(&phase, r == 0 ? 3 : -1);
	return NULL;
}

/* One PI read of 4 KiB at 0, submitted by pi_read_submit and reaped and
 * checked by pi_read_done (apart, so that other things can happen while
 * it is in flight). */
struct pi_read {
	uint8_t *buf, pi[64];
	struct iovec iov[2];
	struct iocb io;
	long tag;
	int submitted;
};

static void pi_read_submit(io_context_t ctx, struct pi_read *r, long tag)
{
	struct iocb *l[1] = { &r->io };
	r->buf = xalloc(4096);
	r->iov[0] = (struct iovec){ r->buf, 4096 };
	r->iov[1] = (struct iovec){ r->pi, 64 };
	r->tag = tag;
	io_prep_preadvm(&r->io, fd, r->iov, 2, 0);
	r->io.data = (void *)tag;
	r->submitted = io_submit(ctx, 1, l) == 1;
}

/* 1 if the read was submitted and its event, data and tuples are right. */
static int pi_read_done(io_context_t ctx, struct pi_read *r)
{
	uint8_t want[64];
	struct io_event ev;
	struct timespec ts = { 10, 0 };
	int ok = r->submitted && io_getevents(ctx, 1, 1, &ev, &ts) == 1 && ev.obj == &r->io &&
		 ev.data == (void *)r->tag && (long)ev.res == 4096;
	expected_pi(T1, want, file_data, 4096, 0);
	ok = ok && memcmp(r->pi, want, 64) == 0 && memcmp(r->buf, file_data, 4096) == 0;
	free(r->buf);
	return ok;
}

/* One PI read on ctx, start to end; 1 if it is right. */
static int pi_read_ok(io_context_t ctx, long tag)
{
	struct pi_read r;
	pi_read_submit(ctx, &r, tag);
	return pi_read_done(ctx, &r);
}

static void destroy_during_setup(void)
{
	static uint8_t *slow[NSLOW], *slowpi[NSLOW];
	static struct iocb sio[NSLOW];
	static struct iovec siov[NSLOW][2];
	int same = 0, bad = 0, fmt_bad = 0;
	for (int i = 0; i < NSLOW; i++) {
		slow[i] = xalloc(BIG);
		slowpi[i] = xalloc(BIG / 512 * 8);
	}
	for (int it = 0; it < 20; it++) {
		ctx1 = 0;
		if (io_setup(64, &ctx1) != 0) {
			CHECKF(0, "io_setup");
			return;
		}
		struct iocb *l[NSLOW];
		for (int i = 0; i < NSLOW; i++) {
			siov[i][0] = (struct iovec){ slow[i], BIG };
			siov[i][1] = (struct iovec){ slowpi[i], BIG / 512 * 8 };
			io_prep_preadvm(&sio[i], fd, siov[i], 2, (long long)((it + i) % FILE_MB) * BIG);
			l[i] = &sio[i];
		}
		CHECK_EQ_MSG(io_submit(ctx1, NSLOW, l), NSLOW, "16 slow PI reads in flight");
		pthread_t th;
		pthread_create(&th, NULL, destroyer, NULL);
		atomic_store(&phase, 1);
		while (atomic_load(&phase) < 2)
			;
		usleep(50);
		io_context_t ctx2 = 0;
		CHECK_EQ_MSG(io_setup(64, &ctx2), 0, "a new context while the old one is destroyed");
		same += ctx2 == ctx1;
		/* Submitted before the destroy returns, reaped after. */
		struct pi_read r;
		pi_read_submit(ctx2, &r, 0x1234);
		pthread_join(th, NULL);
		CHECK_EQ_MSG(atomic_load(&phase), 3, "the old context destroyed");
		fmt_bad += io_set_pi_format(ctx2, IO_PI_T10_DIF_TYPE1_CRC, 512) != 0;
		bad += !pi_read_done(ctx2, &r);
		CHECK_EQ_MSG(io_destroy(ctx2), 0, "new context destroyed");
	}
	printf("# new context at the destroyed ring's address: %d of 20\n", same);
	CHECKF(bad == 0, "the new context's PI reads: %d of 20 wrong", bad);
	CHECKF(fmt_bad == 0, "io_set_pi_format on the new context: %d of 20 failed", fmt_bad);
	for (int i = 0; i < NSLOW; i++) {
		free(slow[i]);
		free(slowpi[i]);
	}
}

static _Atomic int stop;

/* Keeps PI reads going on its own context (the record map busy). */
static void *pi_churn(void *a)
{
	(void)a;
	io_context_t c = 0;
	if (io_setup(32, &c) != 0)
		return NULL;
	while (!atomic_load(&stop))
		pi_read_ok(c, 7);
	io_destroy(c);
	return NULL;
}

static void fork_during_pi(void)
{
	pthread_t th;
	pthread_create(&th, NULL, pi_churn, NULL);
	int hung = 0, failed = 0;
	for (int i = 0; i < 60; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			alarm(10); /* a hang ends in SIGALRM */
			io_context_t c = 0;
			int ok = io_setup(8, &c) == 0 && pi_read_ok(c, 9) && io_destroy(c) == 0;
			_exit(ok ? 0 : 1);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		hung += WIFSIGNALED(st);
		failed += WIFEXITED(st) && WEXITSTATUS(st) != 0;
		usleep(1000);
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	CHECKF(hung == 0, "fork with PI I/O in another thread: %d of 60 children hung", hung);
	CHECKF(failed == 0, "children whose own PI read failed: %d of 60", failed);
}

static io_context_t held_ctx;
static struct pi_read held[4];
static _Atomic int held_got, handler_done;

static void slow_handler(int sig)
{
	(void)sig;
	usleep(100 * 1000); /* the destroy runs meanwhile */
	atomic_store(&handler_done, 1);
}

/* Waits for 8 events, of which only 4 ever come: the signal ends the wait
 * with those 4 (the kernel returns what it copied), then the handler runs
 * before the library has translated them. */
static void *held_reaper(void *a)
{
	struct io_event ev[8];
	int n = io_getevents(held_ctx, 8, 8, ev, NULL);
	int good = 0;
	for (int i = 0; i < n; i++) {
		struct pi_read *r = (struct pi_read *)((char *)ev[i].obj - offsetof(struct pi_read, io));
		uint8_t want[64];
		expected_pi(T1, want, file_data, 4096, 0);
		good += ev[i].obj >= &held[0].io && ev[i].obj <= &held[3].io &&
			ev[i].data == (void *)r->tag && (long)ev[i].res == 4096 &&
			memcmp(r->pi, want, 64) == 0;
	}
	atomic_store(&held_got, n == 4 && good == 4 ? 1 : -n - 100 * good);
	return a;
}

static void destroy_while_events_held(void)
{
	struct sigaction sa = { .sa_handler = slow_handler }, old;
	sigaction(SIGUSR1, &sa, &old);
	held_ctx = 0;
	if (io_setup(16, &held_ctx) != 0) {
		CHECKF(0, "io_setup");
		return;
	}
	pthread_t th;
	pthread_create(&th, NULL, held_reaper, NULL);
	usleep(10 * 1000);
	for (int i = 0; i < 4; i++)
		pi_read_submit(held_ctx, &held[i], 0x500 + i);
	usleep(100 * 1000); /* the reads complete: the reaper holds their events */
	pthread_kill(th, SIGUSR1);
	usleep(10 * 1000); /* the handler is running */
	CHECK_EQ_MSG(io_destroy(held_ctx), 0, "io_destroy while a reaper holds PI events");
	pthread_join(th, NULL);
	CHECKF(atomic_load(&handler_done), "the handler ran");
	CHECKF(atomic_load(&held_got) == 1,
	       "the reaper got its 4 PI events with the caller's obj/data/res and tuples (%d)",
	       atomic_load(&held_got));
	for (int i = 0; i < 4; i++)
		free(held[i].buf);
	sigaction(SIGUSR1, &old, NULL);
}

enum { SPIN_OPS = 8, SPIN_ITERS = 400 };
static io_context_t volatile spin_ctx;
static struct iocb spin_io[SPIN_OPS];
static _Atomic int spin_stop;
static _Atomic long spin_good, spin_bad;

/* Count one event a spinning reaper got: one of spin_io, whole. */
static void spin_count(const struct iocb *i, long res)
{
	if (i < spin_io || i >= spin_io + SPIN_OPS || res != 4096)
		atomic_fetch_add(&spin_bad, 1);
	else
		atomic_fetch_add(&spin_good, 1);
}

static void spin_cb(io_context_t c, struct iocb *i, long res, long res2)
{
	(void)c;
	(void)res2;
	spin_count(i, res);
}

static void *spin_reaper(void *a)
{
	int queue = a != NULL;
	struct io_event e[SPIN_OPS];
	struct timespec zero = { 0, 0 };
	while (!atomic_load(&spin_stop)) {
		io_context_t c = spin_ctx;
		if (queue) {
			io_queue_run(c);
			continue;
		}
		int r = io_getevents(c, 0, SPIN_OPS, e, &zero);
		for (int i = 0; i < r; i++)
			spin_count(e[i].obj, (long)e[i].res);
	}
	return NULL;
}

static void reap_destroyed_handles(void)
{
	uint8_t *d = xalloc(SPIN_OPS * 4096), pi[SPIN_OPS][64];
	struct iovec v[SPIN_OPS][2];
	struct iocb *l[SPIN_OPS];
	io_context_t first = 0;
	if (io_setup(16, &first) != 0) {
		CHECKF(0, "io_setup");
		return;
	}
	spin_ctx = first;
	pthread_t t[2];
	pthread_create(&t[0], NULL, spin_reaper, NULL);
	pthread_create(&t[1], NULL, spin_reaper, (void *)1);
	int failed = 0;
	for (int it = 0; it < SPIN_ITERS && !failed; it++) {
		io_context_t c = 0;
		failed |= io_setup(16, &c) != 0;
		for (int i = 0; i < SPIN_OPS; i++) {
			v[i][0] = (struct iovec){ d + i * 4096, 4096 };
			v[i][1] = (struct iovec){ pi[i], 64 };
			io_prep_preadvm(&spin_io[i], fd, v[i], 2, i * 4096);
			io_set_callback(&spin_io[i], spin_cb);
			l[i] = &spin_io[i];
		}
		spin_ctx = c;
		failed |= io_submit(c, SPIN_OPS, l) != SPIN_OPS;
		usleep(it % 5 * 200);
		failed |= io_destroy(c) != 0;
		if (it == 0)
			io_destroy(first);
	}
	atomic_store(&spin_stop, 1);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	CHECKF(!failed, "io_setup/io_submit/io_destroy of %d contexts", SPIN_ITERS);
	printf("# events taken by the spinning reapers: %ld\n", atomic_load(&spin_good));
	CHECKF(atomic_load(&spin_bad) == 0, "events not the caller's (or a wrong res): %ld",
	       atomic_load(&spin_bad));
	free(d);
}

int main(void)
{
	fd = pi_open_direct("lifecycle.dat", O_TRUNC);
	uint8_t *w = xalloc(BIG);
	uint64_t rng = 3;
	fill_random(w, BIG, &rng);
	for (int i = 0; i < FILE_MB; i++)
		if (pwrite(fd, w, BIG, (long long)i * BIG) != BIG) {
			perror("pwrite of the test file");
			return 1;
		}
	file_data = w;
	destroy_during_setup();
	fork_during_pi();
	destroy_while_events_held();
	reap_destroyed_handles();
	close(fd);
	unlink("lifecycle.dat");
	free(w);
	return ctest_finish();
}
