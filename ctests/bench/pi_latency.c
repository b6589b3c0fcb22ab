/* Where a QD1 PI operation's time goes, from the application's side: the
 * median time inside io_submit and inside io_getevents (the device, the
 * wake-up, and for a read the PI computed at reap), for plain
 * pwritev/preadv and for pwritevm/preadvm, 64 KiB O_DIRECT, alternating in
 * blocks of 10% of the operations so both share the disk's drift.
 *
 * Build and run (from the repository, after `cargo build --release`):
 *   ln -sf libaio.so target/release/libaio.so.1
 *   gcc -std=gnu11 -O2 -D_GNU_SOURCE -Iinclude -Ictests ctests/bench/pi_latency.c \
 *       -o target/pi_latency -Ltarget/release -laio -Wl,-rpath,$PWD/target/release
 *   cd target && ./pi_latency [ops] [write|read]
 */
#include "pi_common.h"
#include <time.h>

enum { BLK = 65536, PIB = BLK / 512 * 8, BLOCKS = 1024 };

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int ops = argc > 1 ? atoi(argv[1]) : 4000;
	int write = !(argc > 2 && argv[2][0] == 'r');
	if (ops < 10)
		ops = 10;
	int fd = pi_open_direct("pi_latency.dat", O_TRUNC);
	uint8_t *w = xalloc(BLK), *r = xalloc(BLK), *rpi = xalloc(PIB), *table = xalloc((size_t)BLOCKS * PIB);
	uint64_t seed = 1;
	fill_random(w, BLK, &seed);
	for (long b = 0; b < BLOCKS; b++) {
		expected_pi((struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 512 }, table + b * PIB, w, BLK, b * (long long)BLK);
		if (pwrite(fd, w, BLK, b * (long long)BLK) != BLK) {
			perror("pwrite");
			return 1;
		}
	}
	fsync(fd);
	io_context_t ctx = 0;
	pi_setup(4, &ctx);
	double *sub[2], *wait[2];
	int n[2] = { 0, 0 };
	for (int m = 0; m < 2; m++) {
		sub[m] = calloc(ops, sizeof(double));
		wait[m] = calloc(ops, sizeof(double));
	}
	for (int round = 0; round < 10; round++) {
		for (int pi = 0; pi < 2; pi++) {
			for (int j = 0; j < ops / 10; j++) {
				long blk = (long)j * 7 % BLOCKS;
				long long off = blk * (long long)BLK;
				struct iocb io, *l[1] = { &io };
				struct iovec v[2];
				struct io_event ev;
				if (write) {
					v[0] = (struct iovec){ w, BLK };
					v[1] = (struct iovec){ table + blk * PIB, PIB };
					if (pi)
						io_prep_pwritevm(&io, fd, v, 2, off);
					else
						io_prep_pwritev(&io, fd, v, 1, off);
				} else {
					v[0] = (struct iovec){ r, BLK };
					v[1] = (struct iovec){ rpi, PIB };
					if (pi)
						io_prep_preadvm(&io, fd, v, 2, off);
					else
						io_prep_preadv(&io, fd, v, 1, off);
				}
				double t0 = now_us();
				if (io_submit(ctx, 1, l) != 1) {
					fprintf(stderr, "io_submit failed\n");
					return 1;
				}
				double t1 = now_us();
				if (io_getevents(ctx, 1, 1, &ev, NULL) != 1 || (long)ev.res != BLK) {
					fprintf(stderr, "io_getevents failed\n");
					return 1;
				}
				double t2 = now_us();
				sub[pi][n[pi]] = t1 - t0;
				wait[pi][n[pi]] = t2 - t1;
				n[pi]++;
			}
		}
	}
	const char *name[2] = { write ? "pwritev  " : "preadv   ", write ? "pwritevm " : "preadvm  " };
	for (int m = 0; m < 2; m++) {
		qsort(sub[m], n[m], sizeof(double), cmp);
		qsort(wait[m], n[m], sizeof(double), cmp);
		printf("%s io_submit p50 %5.1f us   io_getevents p10 %5.1f p50 %5.1f p90 %5.1f us\n", name[m],
		       sub[m][n[m] / 2], wait[m][n[m] / 10], wait[m][n[m] / 2], wait[m][n[m] * 9 / 10]);
	}
	io_destroy(ctx);
	close(fd);
	unlink("pi_latency.dat");
	return 0;
}
