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
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
