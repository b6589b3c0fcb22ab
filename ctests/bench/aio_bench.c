/*
 * aio_bench.c: libaio-rs and the system libaio, side by side, in one run.
 *
 * Both libraries are loaded into this process with
 * dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND); this program does not link
 * against either and exports no io_* symbol (checked: dlsym(RTLD_DEFAULT,
 * "io_getevents") must be NULL), and dladdr() shows which file each function
 * pointer comes from.  Both libraries have the SONAME libaio.so.1; they are
 * opened by path, which glibc maps as two distinct objects.
 *
 * Workloads: 4 KiB random reads, buffered from the page cache ("cached") and
 * O_DIRECT ("direct"), at queue depth 1, 8 and 32: submit QD reads, then
 * loop io_getevents(ctx, 1, QD, ev, NULL) and resubmit what completed in one
 * io_submit.  Each (workload, library) pair runs R rounds; A and B alternate
 * (A first in even rounds, B first in odd rounds).  Reported: median IOPS,
 * median p50/p99 latency (submit to reap, per I/O), the A/B IOPS ratio
 * (median over rounds of the ratio within a round), and io_getevents system
 * calls per completed I/O.
 *
 * Counting system calls: each (workload, library) is run once more in a
 * child process under `perf stat -e syscalls:sys_enter_io_getevents` (a
 * kernel tracepoint: every kernel entry is counted, including raw `syscall`
 * instructions that LD_PRELOAD wrappers would not see), or, where the
 * tracepoint is not available, under `strace -f -c -e trace=io_getevents`.
 * These counting runs are not timed.
 *
 * Usage: aio_bench [--quick] [--rounds R] [--ops N] [--direct-ops N]
 *                  --lib-a PATH --lib-b PATH
 *        (internal) aio_bench --single LIB cached|direct QD OPS
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libaio.h> /* types and static inline io_prep_* only; not linked */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_NAME "aio_bench.dat"
#define FILE_SIZE (64L << 20)
#define BLOCK 4096

struct lib {
	const char *label; /* "A" / "B" */
	const char *path;
	void *handle;
	int (*setup)(int, io_context_t *);
	int (*destroy)(io_context_t);
	int (*submit)(io_context_t, long, struct iocb **);
	int (*getevents)(io_context_t, long, long, struct io_event *, struct timespec *);
};

static void *must_sym(struct lib *l, const char *name)
{
	void *p = dlsym(l->handle, name);
	if (!p) {
		fprintf(stderr, "%s: dlsym(%s): %s\n", l->path, name, dlerror());
		exit(2);
	}
	return p;
}

static void load(struct lib *l, int verbose)
{
	l->handle = dlopen(l->path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!l->handle) {
		fprintf(stderr, "dlopen(%s): %s\n", l->path, dlerror());
		exit(2);
	}
	l->setup = (int (*)(int, io_context_t *))must_sym(l, "io_setup");
	l->destroy = (int (*)(io_context_t))must_sym(l, "io_destroy");
	l->submit = (int (*)(io_context_t, long, struct iocb **))must_sym(l, "io_submit");
	l->getevents = (int (*)(io_context_t, long, long, struct io_event *,
				struct timespec *))must_sym(l, "io_getevents");
	if (verbose) {
		void *fns[] = { (void *)l->setup, (void *)l->submit, (void *)l->getevents };
		const char *names[] = { "io_setup", "io_submit", "io_getevents" };
		for (int i = 0; i < 3; i++) {
			Dl_info info;
			char real[4096];
			if (!dladdr(fns[i], &info) || !info.dli_fname) {
				fprintf(stderr, "dladdr failed\n");
				exit(2);
			}
			if (!realpath(info.dli_fname, real))
				snprintf(real, sizeof(real), "%s", info.dli_fname);
			printf("  %s: %-12s at %p from %s\n", l->label, names[i], fns[i], real);
		}
	}
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void make_file(void)
{
	struct stat st;
	if (stat(FILE_NAME, &st) == 0 && st.st_size == FILE_SIZE)
		return;
	int fd = open(FILE_NAME, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0) {
		perror(FILE_NAME);
		exit(2);
	}
	static char chunk[1 << 20];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (char)(i * 131);
	for (long off = 0; off < FILE_SIZE; off += sizeof(chunk))
		if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk)) {
			perror("write");
			exit(2);
		}
	fsync(fd);
	close(fd);
}

static void warm_cache(void)
{
	static char chunk[1 << 20];
	int fd = open(FILE_NAME, O_RDONLY);
	while (fd >= 0 && read(fd, chunk, sizeof(chunk)) > 0)
		;
	close(fd);
}

struct result {
	double iops, p50_us, p99_us, cpu_us; /* cpu_us: user+system CPU per I/O */
};

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* One run: `ops` random 4 KiB reads at queue depth `qd`. */
static struct result run(struct lib *l, int direct, int qd, long ops, uint64_t seed)
{
	struct result res = { 0, 0, 0, 0 };
	int fd = open(FILE_NAME, O_RDONLY | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		perror("open");
		exit(2);
	}
	io_context_t ctx = 0;
	int r = l->setup(qd, &ctx);
	if (r) {
		fprintf(stderr, "%s io_setup: %d\n", l->path, r);
		exit(2);
	}
	struct iocb *iocbs = calloc(qd, sizeof(*iocbs));
	struct iocb **list = calloc(qd, sizeof(*list));
	struct io_event *ev = calloc(qd, sizeof(*ev));
	uint64_t *t_submit = calloc(qd, sizeof(*t_submit));
	uint64_t *lat = calloc(ops + qd, sizeof(*lat));
	char *bufs;
	if (posix_memalign((void **)&bufs, BLOCK, (size_t)qd * BLOCK)) {
		fprintf(stderr, "posix_memalign\n");
		exit(2);
	}
	memset(bufs, 0, (size_t)qd * BLOCK);
	/* Every run reads its own offsets: a run must not find the blocks the
	 * previous run read in a cache below us (the host's, for a VM disk). */
	uint64_t rng = 0x9E3779B97F4A7C15ull * (seed + 1) ^ (uint64_t)qd ^ ((uint64_t)direct << 7);
	long blocks = FILE_SIZE / BLOCK, submitted = 0, done = 0;
#define NEXT_OFF() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17, (long long)(rng % (uint64_t)blocks) * BLOCK)

	double c0 = cpu_seconds();
	uint64_t t0 = now_ns();
	for (int i = 0; i < qd; i++) {
		io_prep_pread(&iocbs[i], fd, bufs + (size_t)i * BLOCK, BLOCK, NEXT_OFF());
		iocbs[i].data = (void *)(intptr_t)i;
		list[i] = &iocbs[i];
		t_submit[i] = t0;
	}
	if (l->submit(ctx, qd, list) != qd) {
		fprintf(stderr, "io_submit failed\n");
		exit(2);
	}
	submitted = qd;
	while (done < ops) {
		int n = l->getevents(ctx, 1, qd, ev, NULL);
		if (n <= 0) {
			fprintf(stderr, "io_getevents: %d\n", n);
			exit(2);
		}
		uint64_t t = now_ns();
		int resubmit = 0;
		for (int k = 0; k < n; k++) {
			int i = (int)(intptr_t)ev[k].data;
			if ((long)ev[k].res != BLOCK) {
				fprintf(stderr, "read failed: %ld\n", (long)ev[k].res);
				exit(2);
			}
			lat[done++] = t - t_submit[i];
			if (submitted < ops) {
				io_prep_pread(&iocbs[i], fd, bufs + (size_t)i * BLOCK, BLOCK, NEXT_OFF());
				iocbs[i].data = (void *)(intptr_t)i;
				list[resubmit++] = &iocbs[i];
				t_submit[i] = t;
				submitted++;
			}
		}
		if (resubmit && l->submit(ctx, resubmit, list) != resubmit) {
			fprintf(stderr, "io_submit failed\n");
			exit(2);
		}
	}
	uint64_t t1 = now_ns();
	res.cpu_us = (cpu_seconds() - c0) * 1e6 / (double)done;
	l->destroy(ctx);
	close(fd);
	qsort(lat, done, sizeof(*lat), cmp_u64);
	res.iops = (double)done * 1e9 / (double)(t1 - t0);
	res.p50_us = lat[done / 2] / 1000.0;
	res.p99_us = lat[(long)(done * 0.99)] / 1000.0;
	free(iocbs);
	free(list);
	free(ev);
	free(t_submit);
	free(lat);
	free(bufs);
	return res;
}

/* ---- counting io_getevents system calls in a child process ---- */

static int have_perf_tracepoint(void)
{
	return system("perf stat -x, -e syscalls:sys_enter_io_getevents true >/dev/null 2>&1") == 0;
}

static const char *self_exe;
static int use_perf;

/* io_getevents calls made by a --single run of `ops` I/Os, or -1. */
static long count_getevents(const char *libpath, int direct, int qd, long ops)
{
	char out[] = "/tmp/aio_bench_count.XXXXXX";
	int ofd = mkstemp(out);
	if (ofd < 0)
		return -1;
	close(ofd);
	char qds[16], opss[32];
	snprintf(qds, sizeof(qds), "%d", qd);
	snprintf(opss, sizeof(opss), "%ld", ops);
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		dup2(devnull, 2);
		if (use_perf)
			execlp("perf", "perf", "stat", "-x,", "-o", out, "-e",
			       "syscalls:sys_enter_io_getevents", "--", self_exe, "--single",
			       libpath, direct ? "direct" : "cached", qds, opss, (char *)NULL);
		else
			execlp("strace", "strace", "-f", "-c", "-e", "trace=io_getevents", "-o", out,
			       self_exe, "--single", libpath, direct ? "direct" : "cached", qds, opss,
			       (char *)NULL);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	long calls = -1;
	FILE *f = fopen(out, "r");
	if (f && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		char line[512];
		calls = use_perf ? -1 : 0; /* strace omits syscalls never made */
		while (fgets(line, sizeof(line), f)) {
			if (use_perf) {
				if (strstr(line, "syscalls:sys_enter_io_getevents"))
					calls = atol(line);
			} else if (strstr(line, " io_getevents")) {
				double pct, secs;
				long usecs, n;
				if (sscanf(line, "%lf %lf %ld %ld", &pct, &secs, &usecs, &n) == 4)
					calls = n;
			}
		}
	}
	if (f)
		fclose(f);
	unlink(out);
	return calls;
}

/* ---- main ---- */

struct workload {
	int direct, qd;
};

int main(int argc, char **argv)
{
	struct lib libs[2] = { { .label = "A" }, { .label = "B" } };
	int rounds = 6, quick = 0; /* even: A and B go first equally often */
	long ops = 200000, direct_ops = 40000;
	/* The counting children exec perf/strace, which then run this file:
	 * name it by its real path (not /proc/self/exe, which would be perf). */
	static char exe[4096];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (el <= 0)
		return 2;
	exe[el] = 0;
	self_exe = exe;

	if (argc == 6 && strcmp(argv[1], "--single") == 0) {
		struct lib l = { .label = "X", .path = argv[2] };
		load(&l, 0);
		make_file();
		int direct = strcmp(argv[3], "direct") == 0;
		if (!direct)
			warm_cache();
		run(&l, direct, atoi(argv[4]), atol(argv[5]), 12345);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = 1;
			rounds = 4;
			ops = 20000;
			direct_ops = 4000;
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
			ops = atol(argv[++i]);
		else if (!strcmp(argv[i], "--direct-ops") && i + 1 < argc)
			direct_ops = atol(argv[++i]);
		else if (!strcmp(argv[i], "--lib-a") && i + 1 < argc)
			libs[0].path = argv[++i];
		else if (!strcmp(argv[i], "--lib-b") && i + 1 < argc)
			libs[1].path = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--quick] [--rounds R] [--ops N] [--direct-ops N] --lib-a PATH --lib-b PATH\n",
				argv[0]);
			return 2;
		}
	}
	if (!libs[0].path || !libs[1].path) {
		fprintf(stderr, "need --lib-a and --lib-b\n");
		return 2;
	}
	if (rounds < 1)
		rounds = 1;

	printf("aio_bench: A = %s\n           B = %s\n", libs[0].path, libs[1].path);
	printf("Who is who (dladdr of each function pointer):\n");
	load(&libs[0], 1);
	load(&libs[1], 1);
	Dl_info ia, ib;
	dladdr((void *)libs[0].getevents, &ia);
	dladdr((void *)libs[1].getevents, &ib);
	char ra[4096], rb[4096];
	if (!realpath(ia.dli_fname, ra) || !realpath(ib.dli_fname, rb) || strcmp(ra, rb) == 0 ||
	    ia.dli_fbase == ib.dli_fbase) {
		fprintf(stderr, "A and B resolve to the same object: not a side-by-side run\n");
		return 1;
	}
	void *global = dlsym(RTLD_DEFAULT, "io_getevents");
	printf("  dlsym(RTLD_DEFAULT, \"io_getevents\") = %p (this program exports no io_* symbol)\n",
	       global);
	if (global) {
		fprintf(stderr, "io_getevents is visible globally: the libraries could bind to each other\n");
		return 1;
	}

	make_file();
	warm_cache();
	use_perf = have_perf_tracepoint();

	struct workload wl[] = { { 0, 1 }, { 0, 8 }, { 0, 32 }, { 1, 1 }, { 1, 8 }, { 1, 32 } };
	int nwl = sizeof(wl) / sizeof(wl[0]);
	double iops[6][2][64], p50[6][2][64], p99[6][2][64], cpu[6][2][64];
	if (rounds > 64)
		rounds = 64;
	int total_runs = nwl * rounds * 2, runs = 0;

	printf("\nRunning %d timed runs (%s mode: %d rounds, %ld cached / %ld direct ops per run)...\n",
	       total_runs, quick ? "quick" : "default", rounds, ops, direct_ops);
	fflush(stdout);
	for (int w = 0; w < nwl; w++) {
		long n = wl[w].direct ? direct_ops : ops;
		/* A short untimed warm-up of each library. */
		for (int k = 0; k < 2; k++)
			run(&libs[k], wl[w].direct, wl[w].qd, n / 10 + 1, 1000 + k);
		for (int r = 0; r < rounds; r++) {
			for (int j = 0; j < 2; j++) {
				int k = (r % 2 == 0) ? j : 1 - j; /* alternate who goes first */
				struct result res =
					run(&libs[k], wl[w].direct, wl[w].qd, n, (uint64_t)(w * 1000 + r * 2 + j));
				iops[w][k][r] = res.iops;
				p50[w][k][r] = res.p50_us;
				p99[w][k][r] = res.p99_us;
				cpu[w][k][r] = res.cpu_us;
				runs++;
				fprintf(stderr, "\r  [%3d/%3d] %-6s QD%-2d round %d/%d  %s: %9.0f IOPS   ", runs,
					total_runs, wl[w].direct ? "direct" : "cached", wl[w].qd, r + 1, rounds,
					libs[k].label, res.iops);
			}
		}
	}
	fprintf(stderr, "\n");

	long calls[6][2];
	long count_ops = quick ? 2000 : 10000;
	printf("Counting io_getevents system calls (%s, %ld ops per count)...\n",
	       use_perf ? "perf stat -e syscalls:sys_enter_io_getevents" : "strace -f -c -e trace=io_getevents",
	       count_ops);
	fflush(stdout);
	for (int w = 0; w < nwl; w++)
		for (int k = 0; k < 2; k++) {
			calls[w][k] = count_getevents(libs[k].path, wl[w].direct, wl[w].qd, count_ops);
			fprintf(stderr, "\r  [%2d/%2d] counted", w * 2 + k + 1, nwl * 2);
		}
	fprintf(stderr, "\n");

	printf("\nResults (medians of %d rounds; A = libaio-rs, B = system libaio)\n", rounds);
	printf("%-8s %-3s | %10s %10s %6s | %8s %8s | %8s %8s | %9s %9s | %8s %8s\n", "workload", "QD",
	       "A IOPS", "B IOPS", "A/B", "A p50us", "B p50us", "A p99us", "B p99us", "A getev/op",
	       "B getev/op", "A cpuus", "B cpuus");
	printf("---------------------------------------------------------------------------------------------------------------------------------\n");
	for (int w = 0; w < nwl; w++) {
		double m[2][4], ratio[64];
		/* A/B per round (the two runs of a round ran back to back), then
		 * the median: steadier than a ratio of medians on a noisy machine. */
		for (int r = 0; r < rounds; r++)
			ratio[r] = iops[w][0][r] / iops[w][1][r];
		qsort(ratio, rounds, sizeof(double), cmp_double);
		for (int k = 0; k < 2; k++) {
			qsort(iops[w][k], rounds, sizeof(double), cmp_double);
			qsort(p50[w][k], rounds, sizeof(double), cmp_double);
			qsort(p99[w][k], rounds, sizeof(double), cmp_double);
			qsort(cpu[w][k], rounds, sizeof(double), cmp_double);
			m[k][3] = cpu[w][k][rounds / 2];
			m[k][0] = iops[w][k][rounds / 2];
			m[k][1] = p50[w][k][rounds / 2];
			m[k][2] = p99[w][k][rounds / 2];
		}
		double per[2];
		for (int k = 0; k < 2; k++)
			per[k] = calls[w][k] < 0 ? -1 : (double)calls[w][k] / (double)count_ops;
		printf("%-8s %-3d | %10.0f %10.0f %6.2f | %8.2f %8.2f | %8.2f %8.2f | %9.3f %9.3f | %8.3f %8.3f\n",
		       wl[w].direct ? "direct" : "cached", wl[w].qd, m[0][0], m[1][0], ratio[rounds / 2],
		       m[0][1], m[1][1], m[0][2], m[1][2], per[0], per[1], m[0][3], m[1][3]);
	}
	printf("(A/B: median over rounds of the IOPS ratio of the round's two back-to-back runs;\n"
	       " getev/op: io_getevents system calls per completed I/O; -1 = could not count;\n"
	       " cpuus: user+system CPU time of this process per I/O, in microseconds)\n");
	return 0;
}
