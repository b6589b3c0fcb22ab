/*
 * ctest.h: a tiny check library for the C tests in ctests/ (see
 * tests/ctests.rs for how they are built and run).
 *
 * Each CHECK prints one line ("ok ..." or "FAIL ..."); ctest_finish()
 * prints "N passed, M failed" and returns the exit code for main().
 * Exit code 77 means "skipped" (ctest_skip()).
 */
#ifndef CTEST_H
#define CTEST_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int ctest_passed;
static int ctest_failed;

/* The errno value planted before a call that must not touch errno. */
#define CTEST_ERRNO_CANARY 12345

static inline void ctest_report(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void ctest_report(int ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	if (ok)
		ctest_passed++;
	else
		ctest_failed++;
	printf("%s %s:%d: ", ok ? "ok  " : "FAIL", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* CHECK(cond): cond must be true. */
#define CHECK(cond) ctest_report(!!(cond), __FILE__, __LINE__, "%s", #cond)

/* CHECKF(cond, fmt, ...): cond must be true; the line says what was checked. */
#define CHECKF(cond, ...) ctest_report(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* CHECK_EQ(a, b): both sides are compared as long long. */
#define CHECK_EQ(a, b)                                                              \
	do {                                                                        \
		long long ctest_a_ = (long long)(a), ctest_b_ = (long long)(b);     \
		ctest_report(ctest_a_ == ctest_b_, __FILE__, __LINE__,              \
			     "%s == %s (got %lld, expected %lld)", #a, #b, ctest_a_, \
			     ctest_b_);                                             \
	} while (0)

/* CHECK_EQ_MSG(a, b, what): as CHECK_EQ, the line saying `what`. */
#define CHECK_EQ_MSG(a, b, what)                                                    \
	do {                                                                        \
		long long ctest_a_ = (long long)(a), ctest_b_ = (long long)(b);     \
		ctest_report(ctest_a_ == ctest_b_, __FILE__, __LINE__,              \
			     "%s: got %lld, want %lld", what, ctest_a_, ctest_b_);  \
	} while (0)

/* CHECK_NE(a, b): both sides are compared as long long. */
#define CHECK_NE(a, b)                                                              \
	do {                                                                        \
		long long ctest_a_ = (long long)(a), ctest_b_ = (long long)(b);     \
		ctest_report(ctest_a_ != ctest_b_, __FILE__, __LINE__,              \
			     "%s != %s (both %lld)", #a, #b, ctest_a_);             \
	} while (0)

/*
 * CHECK_RET(call, expected): `call` returns `expected` AND leaves errno
 * untouched (libaio's convention: errors are returned as -errno).
 */
#define CHECK_RET(call, expected)                                                   \
	do {                                                                        \
		long long ctest_r_, ctest_x_ = (long long)(expected);               \
		int ctest_e_;                                                       \
		errno = CTEST_ERRNO_CANARY;                                         \
		ctest_r_ = (long long)(call);                                       \
		ctest_e_ = errno;                                                   \
		ctest_report(ctest_r_ == ctest_x_ && ctest_e_ == CTEST_ERRNO_CANARY, \
			     __FILE__, __LINE__,                                    \
			     "%s == %s (got %lld, expected %lld; errno %d%s)", #call, \
			     #expected, ctest_r_, ctest_x_, ctest_e_,               \
			     ctest_e_ == CTEST_ERRNO_CANARY ? " untouched" : " CHANGED"); \
	} while (0)

/* Abort the test (counts as a failure) when a precondition does not hold. */
#define REQUIRE(cond)                                                               \
	do {                                                                        \
		if (!(cond)) {                                                      \
			ctest_report(0, __FILE__, __LINE__, "required: %s (errno %d: %s)", \
				     #cond, errno, strerror(errno));                \
			return ctest_finish();                                      \
		}                                                                   \
	} while (0)

static inline int ctest_finish(void)
{
	printf("%d passed, %d failed\n", ctest_passed, ctest_failed);
	fflush(stdout);
	return ctest_failed == 0 && ctest_passed > 0 ? 0 : 1;
}

/* Skip the whole program (exit 77) with a reason. */
static inline void ctest_skip(const char *why)
{
	printf("SKIP: %s\n", why);
	fflush(stdout);
	exit(77);
}

/* Monotonic clock in nanoseconds. */
static inline long long ctest_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The fastest of `n` timed runs of `stmt`, in nanoseconds (a GNU statement
 * expression): for a check that a call does not wait, which one preemption
 * on a loaded machine must not fail. */
#define CTEST_FASTEST_NS(n, stmt)                                               \
	({                                                                      \
		long long ctest_best_ = LLONG_MAX;                              \
		for (int ctest_i_ = 0; ctest_i_ < (n); ctest_i_++) {            \
			long long ctest_t0_ = ctest_now_ns();                   \
			stmt;                                                   \
			long long ctest_d_ = ctest_now_ns() - ctest_t0_;        \
			if (ctest_d_ < ctest_best_)                             \
				ctest_best_ = ctest_d_;                         \
		}                                                               \
		ctest_best_;                                                    \
	})

/* A watchdog for a program that can hang: ctest_watchdog_start(seconds, msg)
 * starts a thread that writes `msg` and ends the program (exit 1) unless
 * ctest_watchdog_stop() is called within `seconds`.  The thread runs with
 * SIGALRM blocked, so a SIGALRM handler always interrupts the caller. */
struct ctest_watchdog {
	_Atomic int done;
	int tenths;
	const char *msg;
	pthread_t thread;
};

static inline struct ctest_watchdog *ctest_watchdog_state(void)
{
	static struct ctest_watchdog w;
	return &w;
}

static inline void *ctest_watchdog_run(void *arg)
{
	struct ctest_watchdog *w = arg;
	for (int i = 0; i < w->tenths && !atomic_load(&w->done); i++)
		usleep(100000);
	if (!atomic_load(&w->done)) {
		ssize_t r = write(1, w->msg, strlen(w->msg));
		(void)r;
		_exit(1);
	}
	return NULL;
}

static inline void ctest_watchdog_start(int seconds, const char *msg)
{
	struct ctest_watchdog *w = ctest_watchdog_state();
	w->tenths = seconds * 10;
	w->msg = msg;
	sigset_t alrm, before;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, &before);
	pthread_create(&w->thread, NULL, ctest_watchdog_run, w);
	pthread_sigmask(SIG_SETMASK, &before, NULL);
}

static inline void ctest_watchdog_stop(void)
{
	struct ctest_watchdog *w = ctest_watchdog_state();
	atomic_store(&w->done, 1);
	pthread_join(w->thread, NULL);
}

/* For a program that checks itself under valgrind: run this program
 * (`argv0`) again under `valgrind --quiet --error-exitcode=1` plus the
 * valgrind options that follow (a NULL-terminated list, at most 8), report
 * its exit status as one check and return ctest_finish(); the program's
 * main calls this when RUNNING_ON_VALGRIND is 0, and does its checks when
 * it is not.  Skips (77) when valgrind is not installed. */
__attribute__((sentinel)) static inline int ctest_rerun_under_valgrind(const char *argv0, ...)
{
	enum { MAX_OPTIONS = 8 };
	const char *args[3 + MAX_OPTIONS + 2] = { "valgrind", "--quiet", "--error-exitcode=1" };
	int n = 3;
	va_list ap;
	va_start(ap, argv0);
	for (const char *o; (o = va_arg(ap, const char *)) != NULL;) {
		if (n == 3 + MAX_OPTIONS) {
			printf("FAIL ctest_rerun_under_valgrind: more than %d options\n", MAX_OPTIONS);
			exit(1);
		}
		args[n++] = o;
	}
	va_end(ap);
	args[n++] = argv0;
	args[n] = NULL;
	if (system("valgrind --version >/dev/null 2>&1") != 0)
		ctest_skip("valgrind not found");
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		execvp("valgrind", (char *const *)args);
		_exit(127);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	CHECKF(ok, "under valgrind --error-exitcode=1: exit status %d%s",
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       WIFSIGNALED(status) ? " (killed by a signal)" : "");
	return ctest_finish();
}

/*
 * Create (truncate) a file `name` in the current directory (the runner's
 * fresh temp dir) holding `size` bytes of the pattern byte i*7+seed, and
 * open it with `flags`.  Returns the fd or -1.
 */
static inline int ctest_file(const char *name, size_t size, int seed, int flags)
{
	int fd = open(name, O_CREAT | O_TRUNC | O_RDWR, 0644);
	size_t i;
	if (fd < 0)
		return -1;
	if (size) {
		unsigned char *p = malloc(size);
		if (!p) {
			close(fd);
			return -1;
		}
		for (i = 0; i < size; i++)
			p[i] = (unsigned char)(i * 7 + (size_t)seed);
		if (pwrite(fd, p, size, 0) != (ssize_t)size) {
			free(p);
			close(fd);
			return -1;
		}
		free(p);
	}
	close(fd);
	return open(name, flags);
}

/* The pattern byte ctest_file() put at offset `off`. */
static inline unsigned char ctest_pattern(size_t off, int seed)
{
	return (unsigned char)(off * 7 + (size_t)seed);
}

/* A buffer of `size` bytes aligned to `align` (for O_DIRECT), or NULL. */
static inline void *ctest_aligned(size_t align, size_t size)
{
	void *p = NULL;
	if (posix_memalign(&p, align, size))
		return NULL;
	memset(p, 0, size);
	return p;
}

/*
 * Open `name` (created with `size` pattern bytes) with O_DIRECT.  Skips the
 * program if the file system refuses O_DIRECT.
 */
static inline int ctest_direct_file(const char *name, size_t size, int seed, int flags)
{
	int fd = ctest_file(name, size, seed, flags | O_DIRECT);
	if (fd < 0 && errno == EINVAL)
		ctest_skip("O_DIRECT not supported here");
	return fd;
}

/* Copy the file at `from` to `to` (created, mode 0755); 1 on success. */
static inline int ctest_copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	ssize_t n;
	int ok = in >= 0 && out >= 0;
	while (ok && (n = read(in, buf, sizeof buf)) > 0)
		ok = write(out, buf, (size_t)n) == n;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ok;
}

#endif /* CTEST_H */
