/* A child made without glibc's fork() (so without pthread_atfork
 * handlers): _Fork(), syscall(SYS_fork), clone(SIGCHLD).  The parent's ring
 * is a shared mapping the child inherits, and the parent has reaped in user
 * space before (so the library knows its ring and event buffer): the child
 * must still get the kernel's -EINVAL for the parent's context, and the
 * parent's completions must stay in the ring for the parent.  The child can
 * then do plain and PI I/O on a context of its own.
 *
 * Regression: an independent tester's t3d_forkseq.c; before the fork
 * witness, the child's io_getevents took the parent's 32 events (ring head
 * moved, parent's reap got 0), and io_set_pi_format on the inherited
 * context answered 0.
 */
// ctest-no-sanitize
#include "ctest.h"
#include "pi_common.h"
#include <libaio.h>
#include <sched.h>
#include <sys/syscall.h>

/* malloc and friends, refused while `no_malloc` is set. */
#include "ctest_nomalloc.h"

enum { N = 32, BLK = 4096, PIB = BLK / 512 * 8 };

/* The kernel's ring header, at the address of the context. */
struct ring_head {
	unsigned id, nr, head, tail;
};

static unsigned ready(io_context_t ctx)
{
	volatile struct ring_head *r = (volatile struct ring_head *)ctx;
	return (r->tail + r->nr - r->head) % r->nr;
}

/* Wait (at most 5 s) until `n` events are in the ring. */
static int wait_ready(io_context_t ctx, unsigned n)
{
	for (int i = 0; i < 5000 && ready(ctx) < n; i++)
		usleep(1000);
	return ready(ctx) >= n;
}

static pid_t raw_child(int how)
{
	switch (how) {
	case 0:
		return _Fork();
	case 1:
		return (pid_t)syscall(SYS_fork);
	default:
		return (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	}
}

/* In the child: nothing of the parent's context, own I/O works. */
static int child(io_context_t ctx, int dfd)
{
	struct io_event ev[N];
	struct timespec zero = { 0, 0 }, ts = { 5, 0 };
	unsigned before = ready(ctx);
	/* The child's first calls: no allocation allowed (see `no_malloc`). */
	no_malloc = 1;
	int r0 = io_getevents(ctx, 0, N, ev, &zero);
	int r1 = io_getevents(ctx, 1, N, ev, &ts);
	int r2 = io_set_pi_format(ctx, IO_PI_T10_DIF_TYPE1_CRC, 512);
	int r3 = io_queue_run(ctx);
	no_malloc = 0;
	CHECK_EQ(r0, -EINVAL);
	CHECK_EQ(r1, -EINVAL);
	CHECK_EQ(r2, -EINVAL);
	CHECK_EQ(r3, -EINVAL);
	CHECK_EQ(ready(ctx), before);

	io_context_t mine = 0;
	CHECK_RET(io_setup(8, &mine), 0);
	uint8_t *data = ctest_aligned(4096, BLK), *back = ctest_aligned(4096, BLK);
	uint8_t pi[PIB], rpi[PIB], want[PIB];
	REQUIRE(data && back);
	for (int i = 0; i < BLK; i++)
		data[i] = (uint8_t)(i * 31 + 7);
	struct fmt f = { IO_PI_T10_DIF_TYPE1_CRC, 512 };
	expected_pi(f, pi, data, BLK, 8 * BLK);
	struct iovec wv[2] = { { data, BLK }, { pi, PIB } }, rv[2] = { { back, BLK }, { rpi, PIB } };
	struct iocb w, r, *l[1];
	io_prep_pwritevm(&w, dfd, wv, 2, 8 * BLK);
	l[0] = &w;
	CHECK_RET(io_submit(mine, 1, l), 1);
	CHECK_EQ(io_getevents(mine, 1, 1, ev, &ts), 1);
	CHECK(ev[0].obj == &w && ev[0].res == BLK);
	io_prep_preadvm(&r, dfd, rv, 2, 8 * BLK);
	l[0] = &r;
	CHECK_RET(io_submit(mine, 1, l), 1);
	CHECK_EQ(io_getevents(mine, 1, 1, ev, &ts), 1);
	CHECK(ev[0].obj == &r && ev[0].res == BLK);
	expected_pi(f, want, back, BLK, 8 * BLK);
	CHECK(memcmp(back, data, BLK) == 0 && memcmp(rpi, want, PIB) == 0);
	CHECK_RET(io_destroy(mine), 0);
	/* Still nothing of the parent's. */
	CHECK_RET(io_getevents(ctx, 0, N, ev, &zero), -EINVAL);
	CHECK_EQ(ready(ctx), before);
	fflush(stdout);
	return ctest_finish();
}

int main(void)
{
	static const char *names[] = { "_Fork()", "syscall(SYS_fork)", "clone(SIGCHLD)" };
	io_context_t ctx = 0;
	struct io_event ev[N];
	struct timespec ts = { 5, 0 };
	struct iocb io[N], *l[N];
	char buf[N][64];

	REQUIRE(io_setup(64, &ctx) == 0);
	int fd = ctest_file("data", N * 64, 3, O_RDWR);
	int dfd = ctest_direct_file("direct", 16 * BLK, 5, O_RDWR);
	REQUIRE(fd >= 0 && dfd >= 0);
	for (int i = 0; i < N; i++) {
		io_prep_pread(&io[i], fd, buf[i], 64, i * 64);
		l[i] = &io[i];
	}
	/* Reap once in the parent first (through the kernel, then from the
	 * ring in user space), so that the library knows this ring and event
	 * buffer. */
	for (int round = 0; round < 2; round++) {
		REQUIRE(io_submit(ctx, N, l) == N);
		REQUIRE(io_getevents(ctx, N, N, ev, &ts) == N);
	}

	for (int how = 0; how < 3; how++) {
		printf("child made with %s:\n", names[how]);
		memset(buf, 0, sizeof buf);
		REQUIRE(io_submit(ctx, N, l) == N);
		REQUIRE(wait_ready(ctx, N));
		fflush(stdout);
		pid_t pid = raw_child(how);
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(child(ctx, dfd));
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the %s child passed", names[how]);
		/* The parent's events are all still there, for the parent. */
		CHECK_EQ(ready(ctx), N);
		CHECK_EQ(io_getevents(ctx, N, N, ev, &ts), N);
		int mine = 0;
		for (int i = 0; i < N; i++)
			mine += ev[i].obj >= &io[0] && ev[i].obj < &io[N] && ev[i].res == 64;
		CHECK_EQ(mine, N);
		CHECK(buf[N - 1][0] == (char)ctest_pattern((N - 1) * 64, 3));
	}
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
