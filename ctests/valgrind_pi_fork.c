/*
 * valgrind_pi_fork.c: a program that forks after PI I/O loses no memory in
 * the child, by valgrind's leak check (`--leak-check=full`, definite and
 * possible leaks are errors), as with plain I/O.
 *
 * Regression: the child starts with an empty PI record map, written over
 * the parent's (a parent thread may have been changing it).  The parent's
 * map still held its root node even when idle (a `BTreeMap` keeps it when
 * its last entry goes), so every child of a program that had once done PI
 * I/O reported "192 bytes definitely lost" (found by an independent
 * tester).  Now an idle map holds no node, and the map a child inherits is
 * kept reachable (PI iocbs in flight at the fork).
 *
 * Cases, each a child that exits at once with valgrind's verdict as its
 * status: a child after a reaped PI write; a grandchild (a child of that
 * child, after PI I/O in the child); a child forked with a PI read in
 * flight in the parent; and generations: that child puts a read of its own
 * in flight and forks, and its child forks once more, each keeping every
 * map it inherited (with one slot for a kept map, the grandchild lost its
 * grandparent's: "definitely lost").
 *
 * Re-executes itself under valgrind; skips (77) when valgrind is not
 * installed, or O_DIRECT is not supported.
 */
// ctest-no-sanitize
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>

#include "ctest.h"
#include "pi_common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

enum { LEN = 4096, TUPLES = LEN / 512 * 8 };

static const struct fmt T10 = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

/* Global, so that everything the test itself allocates stays reachable:
 * only the library's memory is judged. */
static uint8_t *data, *pi, *back, *backpi;

/* Fork a child that exits at once; returns its exit status (valgrind's
 * leak verdict: 1 = leaks), or -1 if it did not exit normally. */
static int child_status(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		exit(0);
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* A PI write of the block at `off`, then a PI read of it, both reaped. */
static void pi_round(io_context_t ctx, int fd, long long off)
{
	struct iocb io;
	struct iovec v[2] = { { data, LEN }, { pi, TUPLES } };
	struct iovec r[2] = { { back, LEN }, { backpi, TUPLES } };
	expected_pi(T10, pi, data, LEN, off);
	io_prep_pwritevm(&io, fd, v, 2, off);
	CHECK_EQ(submit_res1(ctx, &io), LEN);
	io_prep_preadvm(&io, fd, r, 2, off);
	CHECK_EQ(submit_res1(ctx, &io), LEN);
	CHECK(memcmp(back, data, LEN) == 0);
}

static int body(void)
{
	io_context_t ctx = 0;
	pi = xalloc(TUPLES);
	back = xalloc(LEN);
	backpi = xalloc(TUPLES);
	int fd = random_direct_file("valgrind_pi_fork.dat", 4 * LEN, 11, &data);
	pi_setup(8, &ctx);

	pi_round(ctx, fd, 0);
	CHECKF(child_status() == 0, "a child after PI I/O loses nothing");

	/* A child that does PI I/O of its own, then forks. */
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		io_context_t c2 = 0;
		pi_setup(8, &c2);
		pi_round(c2, fd, LEN);
		int g = child_status();
		io_destroy(c2);
		exit(g == 0 && ctest_failed == 0 ? 0 : 2);
	}
	int st = 0;
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "a grandchild after PI I/O in its parent loses nothing (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	/* A PI read in flight while the parent forks: its record is the
	 * child's to keep, not to lose. */
	struct iocb io;
	struct io_event ev;
	struct iovec r[2] = { { back, LEN }, { backpi, TUPLES } };
	io_prep_preadvm(&io, fd, r, 2, 0);
	CHECK_RET(submit1(ctx, &io), 1);
	CHECKF(child_status() == 0, "a child forked with a PI read in flight loses nothing");

	/* Generations: that child, with the parent's in-flight map kept, puts
	 * a PI read of its own in flight and forks; then the grandchild forks
	 * once more.  Each keeps every map it inherited. */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		io_context_t c2 = 0;
		struct iocb io2;
		struct io_event ev2;
		static uint8_t *back2, *backpi2;
		back2 = xalloc(LEN);
		backpi2 = xalloc(TUPLES);
		struct iovec r2[2] = { { back2, LEN }, { backpi2, TUPLES } };
		pi_setup(8, &c2);
		io_prep_preadvm(&io2, fd, r2, 2, LEN);
		int ok = submit1(c2, &io2) == 1;
		/* The grandchild: two kept maps, and it forks again itself. */
		fflush(stdout);
		pid_t g = fork();
		if (g == 0)
			exit(child_status() == 0 ? 0 : 3);
		int gst = 0;
		ok &= g > 0 && waitpid(g, &gst, 0) == g && WIFEXITED(gst) && WEXITSTATUS(gst) == 0;
		ok &= reap1(c2, &ev2) == 1 && ev2.obj == &io2 && (long)ev2.res == LEN;
		io_destroy(c2);
		exit(ok ? 0 : 2);
	}
	st = 0;
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "descendants of a fork with PI reads in flight lose nothing (status %d)",
	       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	CHECK_RET(reap1(ctx, &ev), 1);
	CHECK(ev.obj == &io && (long)ev.res == LEN);

	CHECK_RET(io_destroy(ctx), 0);
	close(fd);
	unlink("valgrind_pi_fork.dat");
	return ctest_finish();
}

int main(int argc, char **argv)
{
	(void)argc;
	if (RUNNING_ON_VALGRIND)
		return body();
	/* Skips here, outside valgrind, if the file system has no O_DIRECT. */
	pi_skip_without_direct("valgrind_pi_fork.probe");
	return ctest_rerun_under_valgrind(argv[0], "--leak-check=full", "--errors-for-leak-kinds=definite,possible",
					  NULL);
}
