/* A signal handler that submits and reaps plain I/O on another context
 * while its own thread is doing PI I/O.  While any PI iocb is in flight
 * every reap looks for PI events under the library's record lock; a handler
 * that interrupted its thread while it held that lock used to deadlock
 * there.  It now gets -EINTR from the reap instead, takes no event, and the
 * events wait in the ring for the next call; anywhere else in the PI code
 * it reaps normally.  Every completion is still delivered exactly once, the
 * PI reads return correct PI, an iocb the kernel refuses gets the kernel's
 * error (never -EINTR), and nothing hangs. */
#include "pi_common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/time.h>

// ctest-ldflags: -lpthread

enum { BLK = 4096, NPI = BLK / 512 * 8, OPS = 20000 };

static io_context_t plain_ctx;
static int plain_fd;
static char plain_buf[512];
static struct iocb plain_io;
static _Atomic long submitted, reaped, interrupted, errors, calls;

static void on_alarm(int s)
{
	(void)s;
	int saved = errno;
	struct iocb *l[1] = { &plain_io };
	struct io_event ev[8];
	/* Every 8th call: an iocb the kernel refuses (bad fd) keeps its error. */
	if (atomic_fetch_add(&calls, 1) % 8 == 0) {
		struct iocb badfd, *lb[1] = { &badfd };
		io_prep_pread(&badfd, -1, plain_buf, sizeof plain_buf, 0);
		if (io_submit(plain_ctx, 1, lb) != -EBADF)
			atomic_fetch_add(&errors, 1);
	}
	/* One plain read in flight at a time (its iocb is reused). */
	if (atomic_load(&submitted) == atomic_load(&reaped)) {
		io_prep_pread(&plain_io, plain_fd, plain_buf, sizeof plain_buf, 0);
		if (io_submit(plain_ctx, 1, l) == 1)
			atomic_fetch_add(&submitted, 1);
		else
			atomic_fetch_add(&errors, 1);
	}
	struct timespec zero = { 0, 0 };
	int r = io_getevents(plain_ctx, 0, 8, ev, &zero);
	if (r > 0)
		atomic_fetch_add(&reaped, r);
	else if (r == -EINTR)
		atomic_fetch_add(&interrupted, 1);
	else if (r < 0)
		atomic_fetch_add(&errors, 1);
	errno = saved;
}

int main(void)
{
	io_context_t ctx = 0;
	pi_setup(8, &ctx);
	pi_setup(64, &plain_ctx);
	uint8_t *d;
	int fd = random_direct_file("pi_signal.dat", 64 * BLK, 21, &d);
	plain_fd = open("pi_signal.dat", O_RDONLY);
	if (plain_fd < 0) {
		perror("open");
		return 1;
	}
	ctest_watchdog_start(90, "FAIL pi_signal_reap: hung (a handler deadlocked in the PI code)\n");
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm; /* no SA_RESTART: waits may end with -EINTR */
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 50 }, { 0, 50 } };
	setitimer(ITIMER_REAL, &it, NULL);

	uint8_t *buf = xalloc(BLK), *pi = xalloc(NPI), want[NPI];
	struct iovec v[2] = { { buf, BLK }, { pi, NPI } };
	long bad = 0, wait_eintr = 0;
	for (int i = 0; i < OPS; i++) {
		long long off = (long long)(i % 64) * BLK;
		struct iocb io, *l[1] = { &io };
		struct io_event ev;
		io_prep_preadvm(&io, fd, v, 2, off);
		int r;
		while ((r = io_submit(ctx, 1, l)) == -EINTR || r == -EAGAIN)
			;
		if (r != 1) {
			printf("FAIL io_submit %d at %d\n", r, i);
			return 1;
		}
		while ((r = io_getevents(ctx, 1, 1, &ev, NULL)) == -EINTR)
			wait_eintr++;
		if (r != 1 || ev.obj != &io || (long)ev.res != BLK) {
			printf("FAIL reap %d at %d (res %ld)\n", r, i, (long)ev.res);
			return 1;
		}
		expected_pi((struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 512 }, want, d + (i % 64) * BLK, BLK, off);
		bad += memcmp(pi, want, NPI) != 0;
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	/* Drain the handler's last read. */
	struct io_event ev[8];
	struct timespec second = { 1, 0 };
	while (atomic_load(&reaped) < atomic_load(&submitted)) {
		int r = io_getevents(plain_ctx, 1, 8, ev, &second);
		if (r <= 0)
			break;
		atomic_fetch_add(&reaped, r);
	}
	ctest_watchdog_stop();

	CHECKF(bad == 0, "%d PI reads under a reaping signal handler: %ld with wrong PI", OPS, bad);
	CHECKF(atomic_load(&submitted) > 100, "the handler submitted %ld plain reads", atomic_load(&submitted));
	CHECKF(atomic_load(&reaped) == atomic_load(&submitted), "every plain read reaped exactly once: %ld of %ld",
	       atomic_load(&reaped), atomic_load(&submitted));
	CHECKF(atomic_load(&errors) == 0, "no other error in the handler (a bad fd gets -EBADF): %ld",
	       atomic_load(&errors));
	CHECKF(atomic_load(&interrupted) > 0,
	       "some handler reaps interrupted their thread while it held the PI record lock (%ld of %ld calls)",
	       atomic_load(&interrupted), atomic_load(&calls));
	printf("(main waits interrupted by the kernel: %ld)\n", wait_eintr);
	free(d);
	free(buf);
	free(pi);
	io_destroy(ctx);
	io_destroy(plain_ctx);
	close(fd);
	close(plain_fd);
	unlink("pi_signal.dat");
	return ctest_finish();
}
