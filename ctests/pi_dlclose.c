/* Loading and unloading the library leaves no descriptor behind: a copy
 * of the library (a second instance, the linked one stays) is dlopen'ed,
 * used for a PI read (which opens the library's /proc/self/maps
 * descriptor for its memory proofs), and dlclose'd, many times; the number
 * of open descriptors must not grow.  (Two pages per load stay mapped: the
 * README says so.)
 *
 * Regression: an independent tester's t7b_fdleak.c; each cycle kept one
 * /proc/<pid>/maps descriptor (10 cycles: 6 -> 16 open fds).
 */
#include "ctest.h"
#include "pi_common.h"
#include <dirent.h>
#include <dlfcn.h>
#include <libaio.h>

enum { CYCLES = 40, BLK = 16384, PIB = BLK / 512 * 8 };

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

int main(void)
{
	Dl_info info;
	REQUIRE(dladdr((void *)io_setup, &info) && info.dli_fname);
	char path[PATH_MAX];
	REQUIRE(realpath(".", path));
	strcat(path, "/libaio-copy.so");
	REQUIRE(ctest_copy_file(info.dli_fname, path));

	int fd = ctest_direct_file("direct", 4 * BLK, 9, O_RDWR);
	REQUIRE(fd >= 0);
	uint8_t *data = ctest_aligned(4096, BLK), pi[PIB], want[PIB];
	REQUIRE(data);
	struct fmt f = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

	int before = -1, ok_io = 0, other = 0;
	for (int i = 0; i < CYCLES; i++) {
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		REQUIRE(h);
		int (*setup)(int, io_context_t *) = (int (*)(int, io_context_t *))dlsym(h, "io_setup");
		int (*destroy)(io_context_t) = (int (*)(io_context_t))dlsym(h, "io_destroy");
		int (*submit)(io_context_t, long, struct iocb **) =
			(int (*)(io_context_t, long, struct iocb **))dlsym(h, "io_submit");
		int (*getev)(io_context_t, long, long, struct io_event *, struct timespec *) =
			(int (*)(io_context_t, long, long, struct io_event *, struct timespec *))dlsym(h, "io_getevents");
		void (*prep)(struct iocb *, int, const struct iovec *, int, long long) =
			(void (*)(struct iocb *, int, const struct iovec *, int, long long))dlsym(h, "io_prep_preadvm");
		REQUIRE(setup && destroy && submit && getev && prep);
		/* The functions are the copy's, not the linked library's. */
		Dl_info where;
		other += dladdr((void *)submit, &where) && strcmp(where.dli_fname, path) == 0 &&
			 (void *)submit != (void *)io_submit;
		io_context_t c = 0;
		struct timespec ts = { 5, 0 };
		struct iovec v[2] = { { data, BLK }, { pi, PIB } };
		struct iocb io, *l[1] = { &io };
		struct io_event e;
		REQUIRE(setup(8, &c) == 0);
		prep(&io, fd, v, 2, (long long)(i % 4) * BLK);
		memset(pi, 0xEE, sizeof pi);
		if (submit(c, 1, l) == 1 && getev(c, 1, 1, &e, &ts) == 1 && e.obj == &io && (long)e.res == BLK) {
			expected_pi(f, want, data, BLK, (long long)(i % 4) * BLK);
			ok_io += memcmp(pi, want, PIB) == 0;
		}
		REQUIRE(destroy(c) == 0);
		REQUIRE(dlclose(h) == 0);
		/* Counted after the first cycle: the linked library (and libc)
		 * may keep one of their own from then on. */
		if (i == 0)
			before = open_fds();
	}
	int after = open_fds();
	CHECKF(other == CYCLES, "every cycle used the copy (%d of %d)", other, CYCLES);
	CHECKF(ok_io == CYCLES, "every cycle's PI read returned correct tuples (%d of %d)", ok_io, CYCLES);
	CHECKF(before > 0 && after == before, "open descriptors after 1 cycle %d, after %d: %d", before, CYCLES,
	       after);
	unlink(path);
	free(data);
	close(fd);
	return ctest_finish();
}
