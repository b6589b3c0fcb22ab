/* A context used in a forked child: the kernel does not know it there
 * (-EINVAL for io_submit, io_getevents, io_destroy, io_cancel,
 * io_queue_run), the ring is not mapped in the child, and the child never
 * sees the parent's events.  The parent's context keeps working.
 */
// ctest-no-sanitize
#include "ctest.h"
#include <libaio.h>
#include <poll.h>
#include <sys/wait.h>

int main(void)
{
	io_context_t ctx = 0;
	struct iocb wr, pl, *list[1];
	struct io_event ev[4];
	struct timespec zero = { 0, 0 }, ts = { 5, 0 };
	int fd, p[2], status;
	pid_t pid;

	REQUIRE(io_setup(8, &ctx) == 0);
	REQUIRE(pipe(p) == 0);
	fd = ctest_file("data", 4096, 1, O_RDWR);
	REQUIRE(fd >= 0);

	/* A completed-but-unreaped write and a pending poll in the parent. */
	io_prep_pwrite(&wr, fd, "parent", 6, 0);
	list[0] = &wr;
	REQUIRE(io_submit(ctx, 1, list) == 1);
	io_prep_poll(&pl, p[0], POLLIN);
	list[0] = &pl;
	REQUIRE(io_submit(ctx, 1, list) == 1);
	usleep(20000);
	fflush(stdout);

	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		io_context_t mine = 0;
		printf("child:\n");
		list[0] = &wr;
		CHECK_RET(io_submit(ctx, 1, list), -EINVAL);
		CHECK_RET(io_getevents(ctx, 0, 4, ev, &zero), -EINVAL);
		CHECK_RET(io_getevents(ctx, 1, 4, ev, &ts), -EINVAL);
		CHECK_RET(io_getevents(ctx, 1, 4, ev, NULL), -EINVAL);
		CHECK_RET(io_pgetevents(ctx, 1, 4, ev, &ts, NULL), -EINVAL);
		CHECK_RET(io_cancel(ctx, &pl, ev), -EINVAL);
		CHECK_RET(io_queue_run(ctx), -EINVAL);
		CHECK_RET(io_destroy(ctx), -EINVAL);
		/* The child can make and use its own context. */
		CHECK_RET(io_setup(4, &mine), 0);
		char got[8] = { 0 };
		io_prep_pread(&wr, fd, got, 6, 0);
		list[0] = &wr;
		CHECK_RET(io_submit(mine, 1, list), 1);
		CHECK_EQ(io_getevents(mine, 1, 4, ev, &ts), 1);
		CHECK_EQ(ev[0].res, 6);
		CHECK(memcmp(got, "parent", 6) == 0);
		CHECK_EQ(io_getevents(mine, 0, 4, ev, &zero), 0);
		CHECK_RET(io_destroy(mine), 0);
		/* The parent's context is still unknown after that. */
		CHECK_RET(io_getevents(ctx, 0, 4, ev, &zero), -EINVAL);
		fflush(stdout);
		_exit(ctest_finish());
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* The parent still has its write event, and its poll. */
	printf("parent:\n");
	CHECK_EQ(io_getevents(ctx, 1, 4, ev, &ts), 1);
	CHECK(ev[0].obj == &wr && ev[0].res == 6);
	CHECK(write(p[1], "x", 1) == 1);
	CHECK_EQ(io_getevents(ctx, 1, 4, ev, &ts), 1);
	CHECK(ev[0].obj == &pl && (ev[0].res & POLLIN));
	CHECK_RET(io_destroy(ctx), 0);
	close(fd);
	return ctest_finish();
}
