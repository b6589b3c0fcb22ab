/*
 * KNOWN BUG (src/reap.rs, is_zero_timeout): the zero-timeout peek reads
 * *timeout directly when the pointer merely looks like a user address, so
 * an unmapped (or PROT_NONE) timeout on an empty ring of ours kills the
 * process with SIGSEGV, where the kernel answers -EFAULT.  libaio 0.3.113
 * crashes the same way, but the project's rule is "never crash where the
 * kernel returns an error".  Run by `cargo test --release -- --ignored`
 * (tests/known_bugs.rs); move it to ctests/ once fixed.
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
