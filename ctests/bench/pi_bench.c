/* PI throughput bench: a stream of 64 KiB O_DIRECT writes and reads,
 * alternately (A) plain pwritev/preadv and (B) pwritevm/preadvm with T10
 * PI (default format), at queue depth QD, same file, same buffers.
 *
 * Build and run (from the repository, after `cargo build --release`):
 *   ln -sf libaio.so target/release/libaio.so.1
 *   gcc -std=gnu11 -O2 -D_GNU_SOURCE -Iinclude -Ictests ctests/bench/pi_bench.c \
 *       -o target/pi_bench -Ltarget/release -laio -Wl,-rpath,$PWD/target/release
 *   cd target && ./pi_bench [rounds] [ops_per_round] [qd] [plain|pi|both|touch|spinN] [write|read]
 * It prints MiB/s of every round (A and B interleaved, to share the noise),
 * the medians and the ratio B/A.  With "touch", B is not PI but the plain
 * stream with the bench reading every 64 KiB buffer once (a write's before
 * it is submitted, a read's after it completes): the least any PI
 * implementation must do with the data, as a reference for the PI ratio.
 * With "spinN" (e.g. spin6), B is the plain stream with the bench busy for
 * N us of CPU at those same two points, touching no memory: what each
 * microsecond of work between a completion and the next submission costs
 * the stream on this disk (the curve any PI CPU cost is judged against).
 * With PI_BENCH_ONE_BUF=1 in the environment, each slot writes from and
 * reads into one buffer (as a simple program does), not two. */
#include "pi_common.h"
#include <sys/resource.h>
#include <time.h>

enum { BLK = 65536, PIB = BLK / 512 * 8, SLOTS = 1024 };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time (user + system) of this thread, in seconds. */
static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct slot {
	struct iocb io;
	/* The iovec array: `iov_in`, next to the iocb (in the page the kernel
	 * reads for it), or with PI_BENCH_IOV_APART=1 in the environment, a
	 * page of its own (as in a program that keeps its iovecs elsewhere:
	 * the library then has them proven readable separately). */
	struct iovec *iov;
	struct iovec iov_in[2];
	uint8_t *rbuf, *rpi;
	/* The slot's own copy of the write data: an application's writes come
	 * from distinct buffers, each of which the library must probe (one
	 * shared buffer would be probed once per io_submit). */
	uint8_t *wbuf;
};

static uint8_t *wbuf, *wpi_table;
/* Which operations the stream has: 'a' alternating writes and reads (the
 * default), 'w' writes only, 'r' reads only. */
static char mix = 'a';

/* What a round does: plain I/O, PI I/O, or plain I/O with the bench
 * reading each buffer once ("touch"). */
enum mode { PLAIN, PI, TOUCH };

static volatile uint64_t sink;
/* Busy time of the "spinN" mode, in seconds. */
static double spin_s;

/* Read every byte of a 64 KiB buffer once (as a CRC over it must); in
 * "spinN" mode, be busy for N us instead, touching nothing. */
static void touch(const uint8_t *p)
{
	if (spin_s > 0) {
		double until = now() + spin_s;
		while (now() < until)
			;
		return;
	}
	uint64_t sum = 0;
	for (size_t i = 0; i < BLK; i += sizeof sum) {
		uint64_t w;
		memcpy(&w, p + i, sizeof w);
		sum += w;
	}
	sink += sum;
}

static void prep(struct slot *s, int fd, long j, enum mode m)
{
	int pi = m == PI;
	long blk = j / 2 % SLOTS;
	long long off = (long long)blk * BLK;
	int write = mix == 'a' ? j % 2 == 0 : mix == 'w';
	if (write) {
		s->iov[0] = (struct iovec){ s->wbuf, BLK };
		s->iov[1] = (struct iovec){ wpi_table + blk * PIB, PIB };
		if (m == TOUCH)
			touch(s->wbuf);
		if (pi)
			io_prep_pwritevm(&s->io, fd, s->iov, 2, off);
		else
			io_prep_pwritev(&s->io, fd, s->iov, 1, off);
	} else {
		s->iov[0] = (struct iovec){ s->rbuf, BLK };
		s->iov[1] = (struct iovec){ s->rpi, PIB };
		if (pi)
			io_prep_preadvm(&s->io, fd, s->iov, 2, off);
		else
			io_prep_preadv(&s->io, fd, s->iov, 1, off);
	}
	s->io.data = s;
}

/* One round: `ops` operations at depth `qd`; returns MiB/s. */
static double round_(io_context_t ctx, int fd, struct slot *slots, int qd, long ops, enum mode m)
{
	struct iocb *l[256];
	struct io_event ev[256];
	long next = 0, done = 0;
	double t0 = now();
	for (int i = 0; i < qd; i++) {
		prep(&slots[i], fd, next++, m);
		l[i] = &slots[i].io;
	}
	if (io_submit(ctx, qd, l) != qd) {
		fprintf(stderr, "submit failed\n");
		exit(1);
	}
	while (done < ops) {
		int n = io_getevents(ctx, 1, qd, ev, NULL);
		if (n <= 0) {
			fprintf(stderr, "getevents %d\n", n);
			exit(1);
		}
		int k = 0;
		for (int i = 0; i < n; i++) {
			if ((long)ev[i].res != BLK) {
				fprintf(stderr, "res %ld\n", (long)ev[i].res);
				exit(1);
			}
			done++;
			struct slot *s = ev[i].data;
			if (m == TOUCH && s->io.aio_lio_opcode == IO_CMD_PREADV)
				touch(s->rbuf);
			if (next < ops + 0 && next - done < qd) {
				prep(s, fd, next++, m);
				l[k++] = &s->io;
			}
		}
		if (k && io_submit(ctx, k, l) != k) {
			fprintf(stderr, "resubmit failed\n");
			exit(1);
		}
	}
	return ops * (double)BLK / (1 << 20) / (now() - t0);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 7;
	long ops = argc > 2 ? atol(argv[2]) : 4096;
	int qd = argc > 3 ? atoi(argv[3]) : 8;
	/* Optional 4th argument "plain" or "pi": run only that mode (for
	 * `perf stat` CPU-per-operation comparisons); "touch": B rounds are the
	 * plain stream reading every buffer once, "spinN": busy N us there
	 * instead (see the top); anything else: both.
	 * Optional 5th: "write" or "read" for a stream of that operation only. */
	const char *only = argc > 4 ? argv[4] : "";
	if (argc > 5)
		mix = argv[5][0] == 'w' ? 'w' : argv[5][0] == 'r' ? 'r' : 'a';
	if (qd < 1 || qd > 256)
		qd = 8;
	int fd = open("pi_bench.dat", O_RDWR | O_CREAT | O_DIRECT, 0644);
	if (fd < 0) {
		perror("open");
		return 77;
	}
	wbuf = xalloc(BLK);
	uint64_t rng = 42;
	fill_random(wbuf, BLK, &rng);
	wpi_table = xalloc((size_t)SLOTS * PIB);
	for (long b = 0; b < SLOTS; b++) {
		expected_pi((struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 512 }, wpi_table + b * PIB, wbuf, BLK,
			    b * (long long)BLK);
		if (pwrite(fd, wbuf, BLK, b * (long long)BLK) != BLK) {
			perror("pwrite");
			return 1;
		}
	}
	fsync(fd);
	io_context_t ctx = 0;
	if (io_setup(qd, &ctx))
		return 1;
	struct slot *slots = calloc(qd, sizeof *slots);
	const char *apart_env = getenv("PI_BENCH_IOV_APART");
	int iov_apart = apart_env && atoi(apart_env);
	const char *one_buf_env = getenv("PI_BENCH_ONE_BUF");
	int one_buf = one_buf_env && atoi(one_buf_env);
	for (int i = 0; i < qd; i++) {
		slots[i].rbuf = xalloc(BLK);
		slots[i].rpi = xalloc(PIB);
		slots[i].wbuf = one_buf ? slots[i].rbuf : xalloc(BLK);
		slots[i].iov = iov_apart ? xalloc(4096) : slots[i].iov_in;
		memcpy(slots[i].wbuf, wbuf, BLK);
	}
	double a[64], b[64], ca[64], cb[64], pr[64];
	if (rounds > 64)
		rounds = 64;
	enum mode bmode = strcmp(only, "touch") ? PI : TOUCH;
	if (!strncmp(only, "spin", 4) && atof(only + 4) > 0) {
		bmode = TOUCH;
		spin_s = atof(only + 4) * 1e-6;
	}
	const char *bname = bmode == PI ? "pi" : spin_s > 0 ? "spin" : "touch";
	round_(ctx, fd, slots, qd, ops / 4, PLAIN); /* warm-up */
	round_(ctx, fd, slots, qd, ops / 4, bmode);
	for (int r = 0; r < rounds; r++) {
		double c0 = cpu();
		a[r] = strcmp(only, "pi") ? round_(ctx, fd, slots, qd, ops, PLAIN) : 1;
		double c1 = cpu();
		b[r] = strcmp(only, "plain") ? round_(ctx, fd, slots, qd, ops, bmode) : 1;
		double c2 = cpu();
		ca[r] = (c1 - c0) / ops * 1e6;
		cb[r] = (c2 - c1) / ops * 1e6;
		printf("round %d: plain %.0f MiB/s %.1f us cpu/op  %s %.0f MiB/s %.1f us cpu/op  (%.3f)\n", r, a[r],
		       ca[r], bname, b[r], cb[r], b[r] / a[r]);
	}
	/* Sanity (not timed): a PI read of every block returns correct PI. */
	uint8_t want[PIB];
	int okpi = 1, checked = 0;
	mix = 'a'; /* odd j: a read */
	for (long blk = 0; blk < SLOTS; blk += 37) {
		struct io_event ev;
		prep(&slots[0], fd, 2 * blk + 1, PI);
		struct iocb *one = &slots[0].io;
		if (io_submit(ctx, 1, &one) != 1 || io_getevents(ctx, 1, 1, &ev, NULL) != 1 ||
		    (long)ev.res != BLK) {
			okpi = 0;
			break;
		}
		expected_pi((struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 512 }, want, slots[0].rbuf, BLK, blk * (long long)BLK);
		okpi &= memcmp(want, slots[0].rpi, PIB) == 0 && memcmp(slots[0].rbuf, wbuf, BLK) == 0;
		checked++;
	}
	/* Ratio of each round's pair (B right after A: shares the device's
	 * slow drifts), then its median: more robust than the ratio of the
	 * two medians on a noisy virtual disk. */
	for (int r = 0; r < rounds; r++)
		pr[r] = b[r] / a[r];
	qsort(pr, rounds, sizeof *pr, cmp);
	qsort(a, rounds, sizeof *a, cmp);
	qsort(b, rounds, sizeof *b, cmp);
	qsort(ca, rounds, sizeof *ca, cmp);
	qsort(cb, rounds, sizeof *cb, cmp);
	printf("qd %d, %ld ops of 64 KiB per round, %d rounds\n", qd, ops, rounds);
	printf("median cpu/op: plain %.1f us, %s %.1f us\n", ca[rounds / 2], bname, cb[rounds / 2]);
	printf("median of pairwise ratios %.3f\n", pr[rounds / 2]);
	printf("median plain %.0f MiB/s, median %s %.0f MiB/s, ratio %.3f, pi check %s\n", a[rounds / 2], bname,
	       b[rounds / 2], b[rounds / 2] / a[rounds / 2], okpi && checked ? "ok" : "WRONG");
	io_destroy(ctx);
	close(fd);
	unlink("pi_bench.dat");
	return okpi && checked ? 0 : 1;
}
