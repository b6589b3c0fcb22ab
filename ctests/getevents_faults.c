/*
 * io_getevents with pending events and an events buffer the kernel cannot
 * write: the kernel answers -EFAULT and leaves the events in the ring.
 * (A user-space reaper must do the same: check the buffer, never crash,
 * never lose events.)  Also: a user-corrupted ring header must not crash
 * the library; the kernel clamps head/tail itself.
 */
#include "ctest.h"
#include <libaio.h>
#include <sys/mman.h>

static io_context_t ctx;
static struct iocb cb[4];
static char buf[4][16];
static int fd;

/* Submit n reads and wait until they have completed (without reaping). */
static int submit_and_settle(int n)
{
	struct iocb *list[4];
	int i;
	for (i = 0; i < n; i++) {
		io_prep_pread(&cb[i], fd, buf[i], 16, 16 * i);
		list[i] = &cb[i];
	}
	if (io_submit(ctx, n, list) != n)
		return -1;
	usleep(30000);
	return 0;
}

/* Reap exactly `n` events and check they are ours, each once. */
static int reap_all(int n)
{
	struct io_event ev[8];
	struct timespec ts = { 5, 0 }, zero = { 0, 0 };
	int got = io_getevents(ctx, n, 8, ev, &ts), i, seen = 0;
	if (got != n)
		return 0;
	for (i = 0; i < got; i++) {
		int idx = (int)(ev[i].obj - cb);
		if (idx < 0 || idx >= n || (seen & (1 << idx)) || ev[i].res != 16)
			return 0;
		seen |= 1 << idx;
	}
	return io_getevents(ctx, 0, 8, ev, &zero) == 0;
}

/* With the ring header corrupted as `what` says: a zero-timeout reap of up
 * to 8 events neither crashes nor answers out of range.  The events go to
 * `out` (8 of room) if not NULL.  Returns the answer. */
static int reap_corrupted(const char *what, struct io_event *out)
{
	struct timespec zero = { 0, 0 };
	struct io_event ev[8];
	int r = io_getevents(ctx, 0, 8, out ? out : ev, &zero);
	printf("io_getevents with %s: %d\n", what, r);
	CHECKF(r >= -EINVAL && r <= 8, "corrupted %s: %d in [-EINVAL, 8]", what, r);
	return r;
}

struct aio_ring_header {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};

int main(void)
{
	struct timespec ts = { 5, 0 }, zero = { 0, 0 };
	struct io_event *ro, *gone, *edge;
	char *two;
	struct aio_ring_header *ring, saved;

	REQUIRE(io_setup(16, &ctx) == 0);
	fd = ctest_file("data", 4096, 7, O_RDONLY);
	REQUIRE(fd >= 0);
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(ro != MAP_FAILED && gone != MAP_FAILED && two != MAP_FAILED);
	/* Room for exactly one event before the unmapped page. */
	edge = (struct io_event *)(two + 4096 - sizeof(struct io_event));

	/* Read-only buffer. */
	REQUIRE(submit_and_settle(2) == 0);
	CHECK_RET(io_getevents(ctx, 1, 4, ro, &ts), -EFAULT);
	CHECK_RET(io_getevents(ctx, 0, 4, ro, &zero), -EFAULT);
	CHECK(reap_all(2));
	/* Unmapped buffer.  Unmapped only now: under ASan, the fake stack
	 * frames of the calls above may be mmap'ed into a hole made earlier
	 * (and then the page is writable, for the kernel too). */
	REQUIRE(submit_and_settle(2) == 0);
	munmap(gone, 4096);
	CHECK(msync(gone, 4096, MS_ASYNC) == -1 && errno == ENOMEM);
	CHECK_RET(io_getevents(ctx, 1, 4, gone, &ts), -EFAULT);
	CHECK_RET(io_getevents(ctx, 0, 4, gone, &zero), -EFAULT);
	CHECK_RET(io_pgetevents(ctx, 0, 4, gone, &zero, NULL), -EFAULT);
	CHECK(reap_all(2));
	/* Room for one event only, two pending: the kernel copies both in one
	 * go, fails, and keeps both. */
	REQUIRE(submit_and_settle(2) == 0);
	munmap(two + 4096, 4096); /* only now: see "Unmapped buffer" */
	CHECK(msync(two + 4096, 4096, MS_ASYNC) == -1 && errno == ENOMEM);
	CHECK_RET(io_getevents(ctx, 1, 4, edge, &ts), -EFAULT);
	CHECK(reap_all(2));
	/* But asking for one event into the one slot works. */
	REQUIRE(submit_and_settle(1) == 0);
	CHECK_RET(io_getevents(ctx, 1, 1, edge, &ts), 1);
	CHECK(edge->obj == &cb[0] && edge->res == 16);
	/* The kernel has now written that one slot.  Three pending, room for
	 * one: -EFAULT with all three kept, as libaio gets from the kernel
	 * (the library once took the one that fitted in user space and
	 * returned 1). */
	REQUIRE(submit_and_settle(3) == 0);
	{
		struct io_event ev[8];
		int r = io_getevents(ctx, 1, 4, edge, &ts), left, i, seen = 0;
		printf("three pending, room for one: %d\n", r);
		CHECK_EQ(r, -EFAULT);
		left = io_getevents(ctx, 1, 8, ev, &ts);
		CHECK_EQ(left, 3);
		for (i = 0; i < left && i < 8; i++)
			seen |= 1 << (int)(ev[i].obj - cb);
		CHECK_EQ(seen, 7);
	}

	/* A corrupted ring header (the ring is writable user memory): no
	 * crash, and a result in range.  (The kernel reduces head/tail modulo
	 * nr itself and may hand back stale slots, so no more is asserted.) */
	ring = (struct aio_ring_header *)ctx;
	CHECK_EQ(ring->magic, 0xa10a10a1);
	saved = *ring;
	REQUIRE(submit_and_settle(2) == 0);
	ring->head = 0xfffffff0u;
	{
		struct io_event ev[8];
		int r = reap_corrupted("head 0xfffffff0", ev), i, ok = 1;
		for (i = 0; i < r; i++)
			if (ev[i].obj < cb || ev[i].obj > cb + 3)
				ok = 0;
		CHECK(ok);
	}
	ring->head = saved.head;
	ring->tail = 0xfffffff0u;
	reap_corrupted("tail 0xfffffff0", NULL);
	ring->magic = 0;
	reap_corrupted("magic 0", NULL);
	ring->magic = saved.magic;
	ring->nr = 0xffffffffu;
	reap_corrupted("nr 0xffffffff", NULL);
	/* io_destroy still works on a corrupted ring. */
	CHECK_RET(io_destroy(ctx), 0);
	close(fd);
	return ctest_finish();
}
