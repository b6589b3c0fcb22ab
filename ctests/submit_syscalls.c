/* io_submit's system calls, counted with ptrace (PTRACE_GET_SYSCALL_INFO).
 *
 * A batch the kernel accepts in part because it refused a plain iocb costs
 * exactly one io_submit(2), as with libaio: the PI emulation must not add a
 * second call to learn the refused iocb's error when it can see, from pages
 * the kernel has just read, that the iocb is not a PI iocb.  A PI iocb
 * refused after a plain one is emulated (and accepted) with one more call,
 * its shadow's, and a refused iocb on a page of its own still gets the
 * kernel's answer.
 *
 * The child runs the batches between raise(SIGSTOP) markers; the parent
 * counts the io_submit entries inside each region (ctest_trace.h). */
#include "ctest_trace.h"
#include <libaio.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

enum { REGIONS = 3 };

static int child(void)
{
	static char buf[3][4096] __attribute__((aligned(4096)));
	/* Three iocbs on one page (an array, as most programs have them). */
	static struct iocb cb[3] __attribute__((aligned(256)));
	/* The pointer array never straddles a page: the library reads the
	 * refused iocb's slot only where it shares a page with slots the
	 * kernel read.  On the stack it straddled one in about one run in
	 * 256 (stack placement is random), which then cost the second
	 * io_submit(2) this test forbids (a fresh-clone CI run of 27b695b). */
	static struct iocb *list[3] __attribute__((aligned(64)));
	struct io_event ev[3];
	struct timespec ts = { 5, 0 };
	io_context_t ctx = 0;

	ctest_traced_child_start();
	REQUIRE(io_setup(16, &ctx) == 0);
	int fd = ctest_file("data", 3 * 4096, 1, O_RDWR);
	REQUIRE(fd >= 0);
	int dfd = ctest_direct_file("direct", 2 * 4096, 1, O_RDWR); /* or skip */
	REQUIRE(dfd >= 0);
	for (int i = 0; i < 3; i++)
		list[i] = &cb[i];

	/* Region 0: two good reads, then one on a closed fd (-EBADF). */
	io_prep_pread(&cb[0], fd, buf[0], 4096, 0);
	io_prep_pread(&cb[1], fd, buf[1], 4096, 4096);
	io_prep_pread(&cb[2], -1, buf[2], 4096, 8192);
	raise(SIGSTOP);
	int r0 = io_submit(ctx, 3, list);
	raise(SIGSTOP);
	CHECK_EQ_MSG(r0, 2, "plain batch refused at its third iocb: 2 accepted");
	CHECK_EQ_MSG(io_getevents(ctx, 2, 2, ev, &ts), 2, "both reaped");

	/* Region 1: the same, with the refused iocb alone on another page. */
	struct iocb *lone = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(lone != MAP_FAILED);
	io_prep_pread(lone, -1, buf[2], 4096, 8192);
	list[2] = lone;
	raise(SIGSTOP);
	int r1 = io_submit(ctx, 3, list);
	raise(SIGSTOP);
	CHECK_EQ_MSG(r1, 2, "refused iocb on its own page: 2 accepted");
	CHECK_EQ_MSG(io_getevents(ctx, 2, 2, ev, &ts), 2, "both reaped");
	list[2] = &cb[2];

	/* Region 2: a PI read after a plain one, on the same page: emulated. */
	static uint8_t pi[8 * 8];
	struct iovec v[2] = { { buf[1], 4096 }, { pi, sizeof pi } };
	io_prep_pread(&cb[0], fd, buf[0], 4096, 0);
	io_prep_preadvm(&cb[1], dfd, v, 2, 4096);
	raise(SIGSTOP);
	int r2 = io_submit(ctx, 2, list);
	raise(SIGSTOP);
	CHECK_EQ_MSG(r2, 2, "plain + PI read: both accepted (the PI one emulated)");
	CHECK_EQ_MSG(io_getevents(ctx, 2, 2, ev, &ts), 2, "both reaped");
	io_destroy(ctx);
	return ctest_finish();
}

/* Counts the io_submit(2) entries of each region. */
static void count_submits(pid_t pid, int region, const struct __ptrace_syscall_info *info, void *arg)
{
	(void)pid;
	if (info->op == PTRACE_SYSCALL_INFO_ENTRY && info->entry.nr == SYS_io_submit)
		((int *)arg)[region]++;
}

int main(void)
{
	int counts[REGIONS] = { 0 }, stops;
	int st = ctest_run_traced(child, REGIONS, count_submits, counts, &stops);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		ctest_skip("the child skipped");
	CHECK_EQ_MSG(stops, 2 * REGIONS, "the child marked every region");
	CHECK_EQ_MSG(counts[0], 1, "a plain batch refused in part: exactly one io_submit(2)");
	CHECKF(counts[1] >= 1 && counts[1] <= 2, "refused iocb on a page of its own: %d io_submit(2)", counts[1]);
	CHECK_EQ_MSG(counts[2], 2, "a PI iocb after a plain one: the kernel's partial call, then the shadow's");
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's own checks passed (status %#x)", st);
	return ctest_finish();
}
