/*
 * A timeout pointer the kernel cannot read (unmapped, PROT_NONE), on an
 * empty ring of ours: -EFAULT, as from the kernel, never SIGSEGV.  (libaio
 * 0.3.113 reads *timeout for its zero-timeout peek and crashes; we read a
 * caller's timeout only after the kernel has read that pointer, see
 * src/proven.rs.)  Once a good zero timeout has been read by the kernel, the
 * peek uses it without a system call (checked in getevents_peek.c).
 */
#include "ctest.h"
#include <libaio.h>
#include <sys/mman.h>

extern int io_queue_wait(io_context_t ctx, struct timespec *timeout);

int main(void)
{
	io_context_t ctx = 0;
	struct io_event ev[1];
	void *unmapped, *none;

	REQUIRE(io_setup(8, &ctx) == 0);
	unmapped = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(unmapped != MAP_FAILED);
	munmap(unmapped, 4096);
	none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(none != MAP_FAILED);

	CHECK_RET(io_getevents(ctx, 1, 1, ev, (struct timespec *)unmapped), -EFAULT);
	CHECK_RET(io_getevents(ctx, 0, 1, ev, (struct timespec *)unmapped), -EFAULT);
	CHECK_RET(io_getevents(ctx, 0, 1, ev, (struct timespec *)none), -EFAULT);
	CHECK_RET(io_pgetevents(ctx, 0, 1, ev, (struct timespec *)none, NULL), -EFAULT);
	CHECK_RET(io_queue_wait(ctx, (struct timespec *)none), -EFAULT);

	/* With an event ready and an events buffer the kernel has already
	 * written (so the user-space reaper could take the event): a timeout
	 * the kernel cannot read still gets -EFAULT (the kernel reads it
	 * before it looks at the ring), and the event stays for the next
	 * call.  Regression: an independent tester's repro_badtimeout.c
	 * (returned 1, the event taken, the timeout never looked at). */
	int fd = ctest_file("data", 4096, 1, O_RDWR);
	REQUIRE(fd >= 0);
	char buf[64];
	struct iocb io, *l[1] = { &io };
	struct timespec ts = { 5, 0 };
	io_prep_pread(&io, fd, buf, sizeof buf, 0);
	REQUIRE(io_submit(ctx, 1, l) == 1);
	REQUIRE(io_getevents(ctx, 1, 1, ev, &ts) == 1); /* proves ev and &ts */
	for (int round = 0; round < 2; round++) {
		REQUIRE(io_submit(ctx, 1, l) == 1);
		/* Wait until the event is in the ring (its header: id, nr,
		 * head, tail), so that the reaper could take it. */
		volatile unsigned *ring = (volatile unsigned *)ctx;
		for (int i = 0; i < 5000 && ring[2] == ring[3]; i++)
			usleep(1000);
		CHECK(ring[2] != ring[3]);
		CHECK_RET(io_getevents(ctx, 1, 1, ev, (struct timespec *)unmapped), -EFAULT);
		CHECK_RET(io_getevents(ctx, 0, 1, ev, (struct timespec *)none), -EFAULT);
		CHECK_RET(io_pgetevents(ctx, 1, 1, ev, (struct timespec *)none, NULL), -EFAULT);
		CHECK_RET(io_getevents(ctx, 1, 1, ev, &ts), 1);
		CHECK(ev[0].obj == &io && ev[0].res == sizeof buf);
	}
	close(fd);
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
