/* PI I/O with buffers in every kind of mapping, and the library's
 * /proc/self/maps descriptor (src/vma.rs: one PROCMAP_QUERY proves a whole
 * plain anonymous mapping) under the ways a program can disturb it:
 *  - data and tuples on the heap, in an anonymous mapping, a named one, on
 *    the stack, in shared anonymous memory, and in MAP_SHARED and
 *    MAP_PRIVATE file mappings and a memfd: each good write completes with its length,
 *    one with a bad guard with -EILSEQ, and each read returns its data and
 *    correct tuples (the first four are proven by the mapping table, the
 *    rest one page at a time);
 *  - a write whose data is a file mapping past the end of its truncated
 *    file (an access would raise SIGBUS; the mapping is readable): -EFAULT in its event,
 *    not a crash, and nothing written;
 *  - a forked child, which inherits the descriptor (for its parent's
 *    mappings): a write from a buffer the child unmapped, still mapped in
 *    the parent, gets -EFAULT in the child (no crash), and good PI I/O
 *    works there;
 *  - the descriptor closed by the program and its number reused for a
 *    regular file (dup2): PI I/O stays correct, bad buffers still get
 *    -EFAULT, and that file is never written to. */
#include "pi_common.h"
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* REQUIRE for helper functions: report and exit. */
#define NEED(cond)                                                                  \
	do {                                                                        \
		if (!(cond)) {                                                      \
			ctest_report(0, __FILE__, __LINE__, "required: %s (errno %d: %s)", \
				     #cond, errno, strerror(errno));                \
			exit(ctest_finish() ? 1 : 1);                               \
		}                                                                   \
	} while (0)

static const struct fmt T1 = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

enum { LEN = 65536, N = LEN / 512, PIL = N * 8 };

/* Submit the prepared `io` alone and reap its event: the event's res, or
 * io_submit's error (then *reaped = 0), or -1000 if its event did not come. */
static long run1(io_context_t ctx, struct iocb *io, int *reaped)
{
	struct io_event ev;
	int r = submit1(ctx, io);
	*reaped = 0;
	if (r != 1)
		return r;
	if (reap1(ctx, &ev) != 1 || ev.obj != io)
		return -1000;
	*reaped = 1;
	return (long)ev.res;
}

/* A PI write of `d` (with correct tuples, or one guard bit off) at `off`
 * from tuples at `pi`: the event's res (or io_submit's error). */
static long pi_write(io_context_t ctx, int fd, uint8_t *d, uint8_t *pi, long long off, int bad)
{
	struct iocb io;
	struct iovec v[2] = { { d, LEN }, { pi, PIL } };
	int reaped;
	expected_pi(T1, pi, d, LEN, off);
	if (bad)
		pi[5 * 8] ^= 0x10;
	io_prep_pwritevm(&io, fd, v, 2, off);
	return run1(ctx, &io, &reaped);
}

/* A PI read into `d` and `pi` from `off`: the event's res, and whether the
 * data equals `want` and the tuples are correct. */
static long pi_read(io_context_t ctx, int fd, uint8_t *d, uint8_t *pi, long long off, const uint8_t *want, int *ok)
{
	struct iocb io;
	struct iovec v[2] = { { d, LEN }, { pi, PIL } };
	uint8_t expect[PIL];
	int reaped;
	memset(d, 0x5a, LEN);
	memset(pi, 0x5a, PIL);
	io_prep_preadvm(&io, fd, v, 2, off);
	long res = run1(ctx, &io, &reaped);
	expected_pi(T1, expect, want, LEN, off);
	*ok = reaped && memcmp(d, want, LEN) == 0 && memcmp(pi, expect, PIL) == 0;
	return res;
}

/* One round trip with data and tuples in `d`/`pi` (LEN and PIL bytes of
 * some mapping kind): good write, bad write (file unchanged), read. */
static void round_trip(const char *kind, io_context_t ctx, int fd, uint8_t *d, uint8_t *pi, uint64_t seed)
{
	static uint8_t copy[LEN];
	int ok;
	fill_random(d, LEN, &seed);
	memcpy(copy, d, LEN);
	CHECKF(pi_write(ctx, fd, d, pi, LEN, 0) == LEN, "%s: good write", kind);
	fill_random(d, LEN, &seed);
	CHECKF(pi_write(ctx, fd, d, pi, LEN, 1) == -EILSEQ, "%s: bad guard gives -EILSEQ", kind);
	CHECKF(pi_read(ctx, fd, d, pi, LEN, copy, &ok) == LEN && ok, "%s: read returns the good write and its tuples",
	       kind);
}

static uint8_t *map(int prot, int flags, int fd)
{
	void *p = mmap(NULL, LEN + PIL, prot, flags, fd, 0);
	NEED(p != MAP_FAILED);
	return p;
}

static void every_kind_of_mapping(io_context_t ctx, int fd)
{
	uint8_t *d = xalloc(LEN), *pi = xalloc(PIL);
	round_trip("heap", ctx, fd, d, pi, 1);

	uint8_t *a = map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	round_trip("anonymous mapping", ctx, fd, a, a + LEN, 2);
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
	if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)a, LEN + PIL, "pi buffers") == 0)
		round_trip("named anonymous mapping", ctx, fd, a, a + LEN, 3);
	else
		printf("note: no anonymous VMA names here (%s)\n", strerror(errno));

	{
		uint8_t sd[LEN] __attribute__((aligned(4096)));
		uint8_t spi[PIL];
		round_trip("stack", ctx, fd, sd, spi, 4);
	}

	uint8_t *s = map(PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
	round_trip("shared anonymous", ctx, fd, s, s + LEN, 5);

	int bf = open("backing", O_RDWR | O_CREAT | O_TRUNC, 0644);
	NEED(bf >= 0 && ftruncate(bf, LEN + PIL) == 0);
	uint8_t *fs = map(PROT_READ | PROT_WRITE, MAP_SHARED, bf);
	round_trip("shared file mapping", ctx, fd, fs, fs + LEN, 6);
	uint8_t *fp = map(PROT_READ | PROT_WRITE, MAP_PRIVATE, bf);
	round_trip("private file mapping", ctx, fd, fp, fp + LEN, 7);

	/* A memfd: a file whose name is short enough for the mapping
	 * table's answer to carry it ("/memfd:pi (deleted)"). */
	int mf = memfd_create("pi", 0);
	NEED(mf >= 0 && ftruncate(mf, LEN + PIL) == 0);
	uint8_t *ms = map(PROT_READ | PROT_WRITE, MAP_SHARED, mf);
	round_trip("memfd mapping", ctx, fd, ms, ms + LEN, 8);

	/* Past the end of the file: readable mapping, SIGBUS on access. */
	uint8_t before[LEN], after[LEN];
	NEED(ftruncate(bf, 0) == 0 && ftruncate(mf, 0) == 0);
	struct iocb io;
	struct iovec v[2] = { { ms, LEN }, { pi, PIL } };
	io_prep_pwritevm(&io, fd, v, 2, 0);
	int direct = open("pi.dat", O_RDONLY);
	NEED(direct >= 0);
	NEED(pread(direct, before, LEN, 0) == LEN);
	CHECK_EQ_MSG(submit_res1(ctx, &io), -EFAULT, "data past the end of its file (memfd): res -EFAULT");
	v[0].iov_base = fs;
	CHECK_EQ_MSG(submit_res1(ctx, &io), -EFAULT, "data past the end of its file: res -EFAULT");
	NEED(pread(direct, after, LEN, 0) == LEN);
	CHECK_EQ_MSG(memcmp(before, after, LEN), 0, "and nothing was written");
	close(direct);
	munmap(ms, LEN + PIL);
	close(mf);
	munmap(fs, LEN + PIL);
	munmap(fp, LEN + PIL);
	munmap(s, LEN + PIL);
	munmap(a, LEN + PIL);
	close(bf);
	free(d);
	free(pi);
}

/* The descriptor the library opened on /proc/self/maps, or -1. */
static int maps_descriptor(void)
{
	char want[64], link[128], path[64];
	snprintf(want, sizeof want, "/proc/%d/maps", (int)getpid());
	DIR *dir = opendir("/proc/self/fd");
	NEED(dir != NULL);
	int found = -1;
	for (struct dirent *e; (e = readdir(dir)) != NULL;) {
		int n = atoi(e->d_name);
		if (e->d_name[0] == '.' || n == dirfd(dir))
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%d", n);
		ssize_t k = readlink(path, link, sizeof link - 1);
		if (k > 0) {
			link[k] = 0;
			if (strcmp(link, want) == 0)
				found = n;
		}
	}
	closedir(dir);
	return found;
}

/* A 64 KiB mapping, written, then unmapped in the caller's process. */
static uint8_t *unmapped_buffer(void)
{
	uint8_t *p = map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	memset(p, 1, LEN);
	return p;
}

static void on_hang(int sig)
{
	(void)sig;
	static const char m[] = "FAIL pi_mappings.c: PI I/O with small ranges in two mappings hung\n";
	if (write(1, m, sizeof m - 1) < 0)
		_exit(2);
	_exit(1);
}

/* Data iovecs of one page each, alternating between two anonymous
 * mappings (`na` in A, `nb` in B), so that every range is too small for a
 * query of its own but together they are worth one per mapping: the
 * library once queried A and B in turn forever (its prover kept only the
 * mapping last described), hanging io_submit for a write of 3 + 3 and
 * io_getevents for a read of 4 + 4 (an independent tester's r_pingpong.c).
 * Each must complete, the write with its data in the file, the read with
 * the file's data and correct tuples. */
static void small_ranges_in_two_mappings(io_context_t ctx, int fd)
{
	static const int shapes[][3] = { { 3, 3, 0 }, { 4, 3, 0 }, { 8, 8, 0 }, { 4, 4, 1 }, { 5, 4, 1 }, { 8, 8, 1 } };
	uint8_t *m = mmap(NULL, 40 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	NEED(m != MAP_FAILED);
	/* A PROT_NONE page splits the mapping in two. */
	NEED(mprotect(m + 20 * 4096, 4096, PROT_NONE) == 0);
	uint8_t *a = m, *b = m + 21 * 4096, *lin = xalloc(16 * 4096), *back = xalloc(16 * 4096), *pi = xalloc(4096);
	uint8_t want[16 * 8 * 8];
	uint64_t seed = 77;
	signal(SIGALRM, on_hang);
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int na = shapes[s][0], nb = shapes[s][1], rd = shapes[s][2];
		struct iovec iov[17];
		int k = 0;
		for (int ia = 0, ib = 0; ia < na || ib < nb;) {
			if (ia < na)
				iov[k++] = (struct iovec){ a + 4096 * ia++, 4096 };
			if (ib < nb)
				iov[k++] = (struct iovec){ b + 4096 * ib++, 4096 };
		}
		size_t len = (size_t)k * 4096;
		fill_random(lin, len, &seed);
		expected_pi(T1, want, lin, len, 0);
		iov[k] = (struct iovec){ pi, len / 512 * 8 };
		struct iocb io;
		int reaped;
		alarm(10);
		if (rd) {
			NEED(pwrite(fd, lin, len, 0) == (ssize_t)len);
			memset(pi, 0x5a, len / 512 * 8);
			io_prep_preadvm(&io, fd, iov, k + 1, 0);
			CHECKF(run1(ctx, &io, &reaped) == (long)len, "read of %d + %d pages in two mappings", na, nb);
			for (int j = 0; j < k; j++)
				memcpy(back + 4096 * j, iov[j].iov_base, 4096);
			CHECKF(memcmp(back, lin, len) == 0 && memcmp(pi, want, len / 512 * 8) == 0,
			       "read of %d + %d pages: the data and its tuples", na, nb);
		} else {
			for (int j = 0; j < k; j++)
				memcpy(iov[j].iov_base, lin + 4096 * j, 4096);
			memcpy(pi, want, len / 512 * 8);
			io_prep_pwritevm(&io, fd, iov, k + 1, 0);
			CHECKF(run1(ctx, &io, &reaped) == (long)len, "write of %d + %d pages in two mappings", na, nb);
			CHECKF(pread(fd, back, len, 0) == (ssize_t)len && memcmp(back, lin, len) == 0,
			       "write of %d + %d pages: the file holds the data", na, nb);
		}
		alarm(0);
	}
	signal(SIGALRM, SIG_DFL);
	munmap(m, 40 * 4096);
	free(lin);
	free(back);
	free(pi);
}

static void forked_child(int fd)
{
	uint8_t *gone = map(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	uint8_t *pi = xalloc(PIL);
	memset(gone, 7, LEN);
	fflush(stdout);
	pid_t pid = fork();
	NEED(pid >= 0);
	if (pid == 0) {
		/* The child: its own context, the buffer gone here only. */
		io_context_t c = 0;
		int bad = 0;
		if (io_setup(4, &c) != 0)
			_exit(10);
		if (munmap(gone, LEN + PIL) != 0)
			_exit(11);
		struct iocb io;
		struct iovec v[2] = { { gone, LEN }, { pi, PIL } };
		io_prep_pwritevm(&io, fd, v, 2, 0);
		long r = submit_res1(c, &io);
		if (r != -EFAULT) {
			printf("child: write from an unmapped buffer: %ld\n", r);
			bad = 1;
		}
		uint8_t *d = xalloc(LEN), *want = xalloc(LEN);
		uint64_t seed = 9;
		int ok;
		fill_random(d, LEN, &seed);
		memcpy(want, d, LEN);
		if (pi_write(c, fd, d, pi, 2 * LEN, 0) != LEN || pi_read(c, fd, d, pi, 2 * LEN, want, &ok) != LEN || !ok) {
			printf("child: PI round trip failed\n");
			bad = 1;
		}
		io_destroy(c);
		_exit(bad ? 12 : 0);
	}
	int status = 0;
	NEED(waitpid(pid, &status, 0) == pid);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "forked child: -EFAULT for a buffer it unmapped, PI works (status %#x)", status);
	/* Still mapped here. */
	CHECK(gone[LEN - 1] == 7);
	munmap(gone, LEN + PIL);
	free(pi);
}

static void descriptor_taken_over(io_context_t ctx, int fd)
{
	int m = maps_descriptor();
	if (m < 0) {
		printf("note: the library holds no /proc/self/maps descriptor here (kernel < 6.11?)\n");
		return;
	}
	/* The program closes it and opens a regular file under its number. */
	int f = open("taken", O_RDWR | O_CREAT | O_TRUNC, 0644);
	NEED(f >= 0);
	NEED(dup2(f, m) == m);
	close(f);
	uint8_t *d = xalloc(LEN), *pi = xalloc(PIL);
	round_trip("after the descriptor was taken over", ctx, fd, d, pi, 10);
	uint8_t *gone = unmapped_buffer();
	munmap(gone, LEN + PIL);
	struct iocb io;
	struct iovec v[2] = { { gone, LEN }, { pi, PIL } };
	io_prep_pwritevm(&io, fd, v, 2, 0);
	CHECK_EQ_MSG(submit_res1(ctx, &io), -EFAULT, "unmapped data after the takeover: res -EFAULT");
	struct stat st;
	NEED(fstat(m, &st) == 0);
	CHECK_EQ_MSG((long)st.st_size, 0L, "the file now under that number is never written");
	close(m);
	free(d);
	free(pi);
}

int main(void)
{
	io_context_t ctx = 0;
	int fd = pi_open_direct("pi.dat", O_TRUNC);
	REQUIRE(ftruncate(fd, 4 * LEN) == 0);
	pi_setup(8, &ctx);
	every_kind_of_mapping(ctx, fd);
	small_ranges_in_two_mappings(ctx, fd);
	forked_child(fd);
	descriptor_taken_over(ctx, fd);
	io_destroy(ctx);
	close(fd);
	return ctest_finish();
}
