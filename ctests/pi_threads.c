/* PI iocbs with several threads: submitters and reapers racing, every event
 * translated exactly once with correct PI; io_destroy with PI operations in
 * flight (no leak under ASan, no use after free). */
#include "pi_common.h"
#include <pthread.h>

// ctest-ldflags: -lpthread

enum { THREADS = 4, PER_THREAD = 64, BLK = 16384, NPI = BLK / 512 * 8 };

struct op {
	struct iocb io;
	struct iovec iov[2];
	uint8_t *data, *pi;
	long long off;
	int is_write, bad;
	int completions; /* atomically incremented */
	long res;
};

static io_context_t ctx;
static struct op ops[THREADS * PER_THREAD];
static int reaped_total; /* atomic */

static void *reaper(void *arg)
{
	(void)arg;
	struct io_event ev[8];
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	for (;;) {
		if (__atomic_load_n(&reaped_total, __ATOMIC_SEQ_CST) >= THREADS * PER_THREAD)
			return NULL;
		int r = io_getevents(ctx, 1, 8, ev, &ts);
		if (r < 0)
			return NULL;
		for (int i = 0; i < r; i++) {
			struct op *o = (struct op *)ev[i].data;
			if (o < ops || o >= ops + THREADS * PER_THREAD || ev[i].obj != &o->io) {
				printf("FAIL bad event data=%p obj=%p\n", ev[i].data, (void *)ev[i].obj);
				exit(1);
			}
			o->res = (long)ev[i].res;
			__atomic_add_fetch(&o->completions, 1, __ATOMIC_SEQ_CST);
		}
		__atomic_add_fetch(&reaped_total, r, __ATOMIC_SEQ_CST);
	}
}

static void *submitter(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (int k = 0; k < PER_THREAD; k++) {
		struct op *o = &ops[t * PER_THREAD + k];
		struct iocb *l[1] = { &o->io };
		int r;
		while ((r = io_submit(ctx, 1, l)) == -EAGAIN)
			usleep(100);
		if (r != 1) {
			printf("FAIL submit %d: %d\n", t * PER_THREAD + k, r);
			exit(1);
		}
	}
	return NULL;
}

static void test_threads(int fd)
{
	const struct fmt f = { IO_PI_T10_DIF_TYPE1_CRC, 512 };
	uint64_t rng = 12345;
	/* Each thread owns a region: op k of thread t writes (or reads) block k. */
	for (int i = 0; i < THREADS * PER_THREAD; i++) {
		struct op *o = &ops[i];
		o->data = xalloc(BLK);
		o->pi = xalloc(NPI);
		o->off = (long long)i * BLK;
		o->is_write = i % 2 == 0;
		o->bad = i % 7 == 3 && o->is_write;
		o->iov[0] = (struct iovec){ o->data, BLK };
		o->iov[1] = (struct iovec){ o->pi, NPI };
		if (o->is_write) {
			fill_random(o->data, BLK, &rng);
			expected_pi(f, o->pi, o->data, BLK, o->off);
			if (o->bad)
				o->pi[8 * 3 + 1] ^= 0x40;
			io_prep_pwritevm(&o->io, fd, o->iov, 2, o->off);
		} else {
			io_prep_preadvm(&o->io, fd, o->iov, 2, o->off);
		}
		o->io.data = o;
	}
	pthread_t s[THREADS], r[THREADS];
	for (int t = 0; t < THREADS; t++)
		pthread_create(&r[t], NULL, reaper, NULL);
	for (int t = 0; t < THREADS; t++)
		pthread_create(&s[t], NULL, submitter, (void *)(intptr_t)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(s[t], NULL);
	for (int t = 0; t < THREADS; t++)
		pthread_join(r[t], NULL);
	CHECK_EQ_MSG(reaped_total, THREADS * PER_THREAD, "every event reaped");
	int once = 1, res_ok = 1, pi_ok = 1;
	uint8_t want[NPI], *filebuf = xalloc(BLK);
	for (int i = 0; i < THREADS * PER_THREAD; i++) {
		struct op *o = &ops[i];
		once &= o->completions == 1;
		long w = o->bad ? -EILSEQ : BLK;
		if (o->res != w) {
			res_ok = 0;
			printf("op %d: res %ld want %ld\n", i, o->res, w);
		}
		if (!o->is_write) {
			/* The file region held whatever was there before (zeros, as
			 * reads are at odd blocks never written): PI matches data. */
			expected_pi(f, want, o->data, BLK, o->off);
			pi_ok &= memcmp(want, o->pi, NPI) == 0;
		} else {
			pread(fd, filebuf, BLK, o->off);
			if (o->bad) {
				static const uint8_t zero[BLK];
				pi_ok &= memcmp(filebuf, zero, BLK) == 0;
			} else {
				pi_ok &= memcmp(filebuf, o->data, BLK) == 0;
			}
		}
	}
	CHECKF(once, "each iocb delivered exactly once across %d reaper threads", THREADS);
	CHECKF(res_ok, "every res as specified (bytes, or -EILSEQ for bad PI)");
	CHECKF(pi_ok, "PI of every read correct; good writes landed, bad ones did not");
	free(filebuf);
	for (int i = 0; i < THREADS * PER_THREAD; i++) {
		free(ops[i].data);
		free(ops[i].pi);
	}
}

/* io_destroy with PI ops in flight: the kernel waits for them; the library
 * frees its records (ASan's leak check) without touching freed memory. */
static void test_destroy_in_flight(int fd)
{
	enum { N = 32 };
	io_context_t c2 = 0;
	CHECK_EQ_MSG(io_setup(N, &c2), 0, "io_setup");
	uint8_t *d[N], *p[N];
	struct iovec iov[N][2];
	struct iocb io[N], *l[N];
	for (int i = 0; i < N; i++) {
		d[i] = xalloc(65536);
		p[i] = xalloc(1024);
		iov[i][0] = (struct iovec){ d[i], 65536 };
		iov[i][1] = (struct iovec){ p[i], 1024 };
		if (i % 3 == 0) {
			expected_pi((struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 512 }, p[i], d[i], 65536, (long long)i * 65536);
			io_prep_pwritevm(&io[i], fd, iov[i], 2, (long long)i * 65536);
		} else if (i % 3 == 1) {
			io_prep_preadvm(&io[i], fd, iov[i], 2, (long long)i * 65536);
		} else {
			memset(p[i], 1, 1024);
			io_prep_pwritevm(&io[i], fd, iov[i], 2, (long long)i * 65536); /* -EILSEQ */
		}
		l[i] = &io[i];
	}
	CHECK_EQ_MSG(io_submit(c2, N, l), N, "PI batch submitted");
	CHECK_EQ_MSG(io_destroy(c2), 0, "io_destroy with PI ops in flight");
	/* A fresh context works and sees none of the old events. */
	io_context_t c3 = 0;
	CHECK_EQ_MSG(io_setup(N, &c3), 0, "io_setup again");
	struct io_event ev[N];
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	CHECK_EQ_MSG(io_getevents(c3, 0, N, ev, &ts), 0, "no stale events");
	CHECK_EQ_MSG(submit1(c3, &io[1]), 1, "PI read on the new context");
	CHECK_EQ_MSG(reap1(c3, ev), 1, "reaped");
	CHECKF(ev[0].obj == &io[1] && (long)ev[0].res == 65536, "translated on the new context");
	CHECK_EQ_MSG(io_destroy(c3), 0, "io_destroy");
	for (int i = 0; i < N; i++) {
		free(d[i]);
		free(p[i]);
	}
}

#ifdef __SANITIZE_ADDRESS__
size_t __sanitizer_get_current_allocated_bytes(void);
/* ASan keeps freed memory in quarantine: count live heap bytes instead. */
static long rss_kib(void)
{
	return (long)(__sanitizer_get_current_allocated_bytes() / 1024);
}
#else
static long rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	if (f)
		fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}
#endif

/* Records of ops in flight at io_destroy are freed: the library's records
 * stay reachable from its globals, so a leak checker would not see them;
 * measure memory instead.  Writes are not copied, so a record's size is
 * mostly its copy of the iovec array: each op has 1023 data iovecs (one of
 * 4 KiB, the rest empty) and the PI iovec, i.e. 16 KiB per record.  Each
 * round leaves 8 records in flight; 400 leaking rounds would grow RSS by
 * ~50 MiB. */
static void test_destroy_frees(int fd)
{
	enum { N = 8, LEN = 4096, IOVS = 1024 };
	uint8_t *d = xalloc(LEN), *p = xalloc(LEN / 512 * 8);
	static struct iovec iov[IOVS];
	iov[0] = (struct iovec){ d, LEN };
	for (int i = 1; i < IOVS - 1; i++)
		iov[i] = (struct iovec){ d, 0 };
	iov[IOVS - 1] = (struct iovec){ p, LEN / 512 * 8 };
	struct iocb io[N], *l[N];
	expected_pi((struct fmt){ IO_PI_T10_DIF_TYPE1_CRC, 512 }, p, d, LEN, 0);
	for (int i = 0; i < N; i++) {
		io_prep_pwritevm(&io[i], fd, iov, IOVS, 0);
		l[i] = &io[i];
	}
	long before = 0;
	int ok = 1;
	for (int round = 0; round < 400; round++) {
		io_context_t c = 0;
		int a = io_setup(N, &c), b = a ? -1 : io_submit(c, N, l), d = a ? -1 : io_destroy(c);
		/* The kernel may accept fewer than N (-EAGAIN when its per-CPU
		 * slot caches are momentarily short): that is its answer, not a
		 * leak; only failures of the calls themselves count. */
		if (a != 0 || b < 1 || b > N || d != 0) {
			if (ok)
				printf("round %d: io_setup %d, io_submit %d, io_destroy %d\n", round, a, b, d);
			ok = 0;
		}
		if (round == 10)
			before = rss_kib();
	}
	long growth = rss_kib() - before;
	CHECKF(ok, "400 rounds of submit + io_destroy with PI writes in flight");
	CHECKF(growth < 16 * 1024, "no leak of in-flight records: RSS grew %ld KiB", growth);
	free(d);
	free(p);
}

int main(void)
{
	pi_setup(128, &ctx);
	int fd = pi_open_direct("threads.dat", O_TRUNC);
	if (ftruncate(fd, (off_t)THREADS * PER_THREAD * BLK) != 0) {
		perror("ftruncate");
		return 1;
	}
	test_threads(fd);
	CHECK_EQ_MSG(io_destroy(ctx), 0, "io_destroy");
	test_destroy_in_flight(fd);
	test_destroy_frees(fd);
	close(fd);
	return ctest_finish();
}
