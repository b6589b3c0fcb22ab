/* PI I/O when memory runs out (RLIMIT_AS reached, the heap filled): the
 * library must answer, never abort.  In a child each time:
 *
 * 0. PI reads submitted: accepted (the library's reserve serves its few
 *    blocks) or refused with -EAGAIN, as the kernel refuses a request it
 *    cannot allocate; those accepted complete with correct tuples;
 * 1. a PI write: the same;
 * 2. PI reads submitted before memory ran out, reaped after: every event,
 *    with correct tuples;
 * 3. plain reads: unaffected (plain I/O never allocates);
 * 4. a PI write of 8 MiB (128 KiB of tuples, more than the reserve's
 *    largest block) after a small one in the same batch: the small one
 *    accepted and completed, the large one refused with -EAGAIN (alone too);
 * 5. a PI write, then a PI read, of 1023 data iovecs of 4 KiB (16 KiB
 *    iovec arrays, 64 KiB less 64 bytes of tuples: blocks of several of
 *    the reserve's slots): both accepted, the read's tuples correct.
 *
 * Regression: an independent tester's t9_limits.c (cases 0-2 died with
 * "memory allocation of 64 bytes failed", SIGABRT); cases 4 and 5 died
 * with "memory allocation of 131072 bytes failed" and "... of 16384 bytes
 * failed" while the reserve served blocks of one 4 KiB slot only.
 */
/* Not under the sanitizers: their allocator and shadow memory need more
 * address space than this leaves. */
// ctest-no-sanitize
#include "ctest.h"
#include "pi_common.h"
#include <libaio.h>
#include <sys/resource.h>

enum { BLK = 4096, PIB = BLK / 512 * 8, N = 16 };

static long vm_size_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmSize:", 7))
			kib = atol(line + 7);
	fclose(f);
	return kib;
}

/* Leave the process almost no address space and fill its heap. */
static void exhaust(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_AS, &rl);
	rl.rlim_cur = (rlim_t)(vm_size_kib() + 1024) * 1024;
	setrlimit(RLIMIT_AS, &rl);
	for (size_t chunk = 1 << 16; chunk >= 16;)
		if (!malloc(chunk))
			chunk /= 2;
}

static uint8_t *data, *wdata, pis[N][PIB], want[PIB];
static struct fmt f = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

/* The events of `k` PI reads of block i at offset i * BLK: 0 if all are
 * right (obj, res, tuples). */
static int check_reads(struct io_event *ev, int k, struct iocb *ios)
{
	int bad = 0;
	for (int j = 0; j < k; j++) {
		int i = (int)((struct iocb *)ev[j].obj - ios);
		if (i < 0 || i >= N || (long)ev[j].res != BLK) {
			bad++;
			continue;
		}
		expected_pi(f, want, data + (size_t)i * BLK, BLK, (long long)i * BLK);
		bad += memcmp(pis[i], want, PIB) != 0;
	}
	return bad;
}

enum { BIG = 8 << 20, BIG_PIB = BIG / 512 * 8, MANY = 1023, MANY_PIB = MANY * BLK / 512 * 8 };

/* Variants 4 and 5: PI I/O with blocks larger than one reserve slot. */
static int child_large(int variant, int fd)
{
	io_context_t ctx = 0;
	struct iocb small, big, *l[2] = { &small, &big };
	struct io_event ev[2];
	struct timespec ts = { 10, 0 };
	alarm(60);
	if (io_setup(8, &ctx))
		return 3;
	uint8_t *buf = ctest_aligned(4096, variant == 4 ? BIG : (size_t)MANY * BLK);
	uint8_t *pi = ctest_aligned(4096, variant == 4 ? BIG_PIB : MANY_PIB);
	uint8_t *want = ctest_aligned(4096, MANY_PIB);
	struct iovec *v = calloc(MANY + 1, sizeof *v);
	if (!buf || !pi || !want || !v)
		return 4;
	for (size_t i = 0; i < (variant == 4 ? (size_t)BIG : (size_t)MANY * BLK); i++)
		buf[i] = (uint8_t)(i * 13 + i / 4099);
	/* Warm the PI path up (its one-time state) before memory runs out. */
	struct iovec sv[2] = { { wdata, BLK }, { pis[0], PIB } };
	expected_pi(f, pis[0], wdata, BLK, 0);
	io_prep_pwritevm(&small, fd, sv, 2, 0);
	if (io_submit(ctx, 1, l) != 1 || io_getevents(ctx, 1, 1, ev, &ts) != 1 || (long)ev[0].res != BLK)
		return 5;
	int r1, r2, g = 0, bad = 0;
	if (variant == 4) {
		expected_pi(f, pi, buf, BIG, 1 << 20);
		struct iovec bv[2] = { { buf, BIG }, { pi, BIG_PIB } };
		io_prep_pwritevm(&small, fd, sv, 2, 0);
		io_prep_pwritevm(&big, fd, bv, 2, 1 << 20);
		exhaust();
		r1 = io_submit(ctx, 2, l);
		if (r1 == 1) {
			g = io_getevents(ctx, 1, 2, ev, &ts);
			bad = g != 1 || ev[0].obj != &small || (long)ev[0].res != BLK;
		}
		r2 = io_submit(ctx, 1, &l[1]);
		printf("variant 4: io_submit of both %d, io_getevents %d, wrong events %d, of the large one %d\n",
		       r1, g, bad, r2);
		fflush(stdout);
		return r1 != 1 ? 6 : r2 != -EAGAIN ? 7 : bad ? 8 : 0;
	}
	for (int i = 0; i < MANY; i++)
		v[i] = (struct iovec){ buf + (size_t)i * BLK, BLK };
	v[MANY] = (struct iovec){ pi, MANY_PIB };
	expected_pi(f, pi, buf, (size_t)MANY * BLK, 0);
	expected_pi(f, want, buf, (size_t)MANY * BLK, 0);
	io_prep_pwritevm(&small, fd, v, MANY + 1, 0);
	exhaust();
	r1 = io_submit(ctx, 1, l);
	if (r1 == 1) {
		g = io_getevents(ctx, 1, 1, ev, &ts);
		bad = g != 1 || (long)ev[0].res != MANY * BLK;
	}
	memset(pi, 0xEE, MANY_PIB);
	memset(buf, 0, (size_t)MANY * BLK);
	io_prep_preadvm(&small, fd, v, MANY + 1, 0);
	r2 = io_submit(ctx, 1, l);
	if (r2 == 1) {
		int g2 = io_getevents(ctx, 1, 1, ev, &ts);
		bad += g2 != 1 || (long)ev[0].res != MANY * BLK || memcmp(pi, want, MANY_PIB) != 0;
	}
	printf("variant 5: io_submit of the write %d, of the read %d, wrong events %d\n", r1, r2, bad);
	fflush(stdout);
	return r1 != 1 || r2 != 1 ? 6 : bad ? 8 : 0;
}

static int child(int variant, int fd)
{
	io_context_t ctx = 0;
	struct iocb ios[N], *l[N];
	struct iovec v[N][2];
	struct io_event ev[N];
	struct timespec ts = { 10, 0 };
	alarm(60);
	if (io_setup(64, &ctx))
		return 3;
	for (int i = 0; i < N; i++) {
		v[i][0] = (struct iovec){ data + (size_t)i * BLK, BLK };
		v[i][1] = (struct iovec){ pis[i], PIB };
		if (variant == 3)
			io_prep_preadv(&ios[i], fd, v[i], 1, (long long)i * BLK);
		else
			io_prep_preadvm(&ios[i], fd, v[i], 2, (long long)i * BLK);
		l[i] = &ios[i];
	}
	/* Warm the PI path up (its one-time state) before memory runs out. */
	if (io_submit(ctx, 1, l) != 1 || io_getevents(ctx, 1, 1, ev, &ts) != 1)
		return 4;
	int pre = 0;
	if (variant == 2)
		pre = io_submit(ctx, N, l);
	exhaust();
	int r, g = 0, bad = 0;
	if (variant == 2) {
		r = pre;
		g = io_getevents(ctx, pre, N, ev, &ts);
		bad = g == pre ? check_reads(ev, g, ios) : 1;
	} else if (variant == 1) {
		expected_pi(f, pis[0], wdata, BLK, 0);
		struct iovec wv[2] = { { wdata, BLK }, { pis[0], PIB } };
		io_prep_pwritevm(&ios[0], fd, wv, 2, 0);
		r = io_submit(ctx, 1, l);
		if (r == 1) {
			g = io_getevents(ctx, 1, 1, ev, &ts);
			bad = g != 1 || ev[0].obj != &ios[0] || (long)ev[0].res != BLK;
		}
	} else {
		r = io_submit(ctx, N, l);
		if (r > 0) {
			g = io_getevents(ctx, r, N, ev, &ts);
			bad = g != r || (variant == 0 && check_reads(ev, g, ios));
		}
	}
	printf("variant %d: io_submit %d, io_getevents %d, wrong events %d\n", variant, r, g, bad);
	fflush(stdout);
	if (r < 0 && r != -EAGAIN)
		return 5;
	if (variant == 2 && r != N)
		return 6;
	if (variant == 3 && r != N)
		return 7;
	return bad ? 8 : 0;
}

int main(void)
{
	static const char *what[] = { "PI reads submitted", "a PI write submitted", "PI reads reaped",
				      "plain reads", "an 8 MiB PI write", "PI I/O of 1023 iovecs" };
	int fd = ctest_direct_file("direct", (size_t)N * BLK, 4, O_RDWR);
	REQUIRE(fd >= 0);
	data = ctest_aligned(4096, (size_t)N * BLK);
	wdata = ctest_aligned(4096, BLK);
	REQUIRE(data && wdata);
	for (int i = 0; i < BLK; i++)
		wdata[i] = (uint8_t)(i * 5 + 1);
	for (int variant = 0; variant < 6; variant++) {
		fflush(stdout);
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(variant < 4 ? child(variant, fd) : child_large(variant, fd));
		int st;
		REQUIRE(waitpid(pid, &st, 0) == pid);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "out of memory, %s: child %s %d", what[variant],
		       WIFEXITED(st) ? "exited" : "killed by signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	}
	free(data);
	free(wdata);
	close(fd);
	return ctest_finish();
}
