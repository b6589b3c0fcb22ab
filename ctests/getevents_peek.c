/* The zero-timeout peek on an empty ring makes no system call (as in
 * libaio): checked without strace by a seccomp filter that makes the
 * io_getevents/io_pgetevents system calls fail with ENOTTY.  Runs in a
 * forked child so the filter does not leak out.
 */
// ctest-no-sanitize
#include "ctest.h"
#include <libaio.h>
#include <linux/filter.h>
#include <pthread.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define CHURN 1100
static io_context_t churn[CHURN];
static volatile int churn_failures;

static void *destroy_some(void *arg)
{
	long k = (long)arg, i;
	for (i = k; i < CHURN; i += 16)
		if (io_destroy(churn[i]) != 0)
			__atomic_add_fetch(&churn_failures, 1, __ATOMIC_RELAXED);
	return NULL;
}

static int deny_getevents(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_getevents, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_pgetevents, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTTY),
	};
	struct sock_fprog prog = { sizeof f / sizeof f[0], f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int callbacks;

static void count_callback(io_context_t c, struct iocb *io, long res, long res2)
{
	(void)c;
	(void)io;
	(void)res2;
	if (res == 8)
		callbacks++;
}

int main(void)
{
	io_context_t ctx = 0;
	struct io_event ev[4];
	struct timespec zero = { 0, 0 }, ms1 = { 0, 1000000 };
	struct iocb cb, *list[1] = { &cb };
	char buf[8];
	int status, fd;
	pid_t pid;

	REQUIRE(io_setup(8, &ctx) == 0);
	fd = ctest_file("data", 64, 1, O_RDONLY);
	REQUIRE(fd >= 0);
	fflush(stdout);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* Churn first: more contexts than the registry's 1024 slots
		 * created, then destroyed (which leaves every slot a tombstone),
		 * must not stop a new context from getting the syscall-free
		 * peek.  io_destroy takes ~30 ms (an RCU grace period), so the
		 * destroys run on 16 threads. */
		{
			pthread_t th[16];
			int i, churn_ok = 1;
			for (i = 0; i < CHURN; i++) {
				churn[i] = 0;
				if (io_setup(1, &churn[i]) != 0 ||
				    io_getevents(churn[i], 0, 1, ev, &zero) != 0)
					churn_ok = 0;
			}
			for (i = 0; i < 16; i++)
				REQUIRE(pthread_create(&th[i], NULL, destroy_some, (void *)(long)i) == 0);
			for (i = 0; i < 16; i++)
				pthread_join(th[i], NULL);
			CHECK(churn_ok);
			CHECK_EQ(churn_failures, 0);
		}
		/* New context in the child (the parent's is unknown here). */
		ctx = 0;
		REQUIRE(io_setup(8, &ctx) == 0);
		/* A caller's timeout is read in user space only once the kernel
		 * has read that pointer (src/proven.rs): this call does it. */
		CHECK_RET(io_getevents(ctx, 0, 4, ev, &zero), 0);
		REQUIRE(deny_getevents() == 0);
		/* The filter works: a call that must reach the kernel fails. */
		CHECK_RET(io_getevents(ctx, 1, 4, ev, &ms1), -ENOTTY);
		CHECK_RET(io_pgetevents(ctx, 1, 4, ev, &ms1, NULL), -ENOTTY);
		/* Argument errors do not, on an empty ring with a zero
		 * timeout: libaio peeks before it looks at them (an
		 * independent tester's differential; they went to the kernel
		 * before); with a timeout, they do. */
		CHECK_RET(io_getevents(ctx, 5, 4, ev, &zero), 0);
		CHECK_RET(io_getevents(ctx, 5, 4, ev, &ms1), -ENOTTY);
		/* The peek does not (with the timeout the kernel read above). */
		CHECK_RET(io_getevents(ctx, 0, 4, ev, &zero), 0);
		CHECK_RET(io_getevents(ctx, 1, 4, ev, &zero), 0);
		CHECK_RET(io_pgetevents(ctx, 1, 4, ev, &zero, NULL), 0);
		CHECK_RET(io_queue_run(ctx), 0);
		/* A timeout the kernel never read is read by the peek only
		 * after a small system call (not io_getevents) shows its page
		 * readable: 0, as with libaio; an unreadable one goes to the
		 * kernel. */
		{
			struct timespec zero2 = { 0, 0 };
			CHECK_RET(io_getevents(ctx, 0, 4, ev, &zero2), 0);
			CHECK_RET(io_getevents(ctx, 0, 4, ev, (struct timespec *)8), -ENOTTY);
		}
		/* A non-empty ring: the event is either taken from the ring in
		 * user space (1) or the kernel is asked (blocked here: -ENOTTY);
		 * both are fine, anything else is not. */
		io_prep_pread(&cb, fd, buf, 8, 0);
		CHECK_RET(io_submit(ctx, 1, list), 1);
		usleep(20000);
		{
			int r = io_getevents(ctx, 0, 4, ev, &zero);
			printf("non-empty ring, zero timeout, system call blocked: %d\n", r);
			CHECK(r == 1 || r == -ENOTTY);
			if (r == 1)
				CHECK(ev[0].obj == &cb && ev[0].res == 8);
		}
		/* io_queue_run drains a non-empty ring with its own memory: no
		 * system call (one would fail with -ENOTTY). */
		io_prep_pread(&cb, fd, buf, 8, 0);
		io_set_callback(&cb, count_callback);
		CHECK_RET(io_submit(ctx, 1, list), 1);
		usleep(20000);
		CHECK_RET(io_queue_run(ctx), 0);
		CHECK_EQ(callbacks, 1);
		fflush(stdout);
		_exit(ctest_finish());
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_RET(io_destroy(ctx), 0);
	return ctest_finish();
}
