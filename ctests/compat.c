/* The old-ABI symbols of libaio 0.1 (io_getevents@LIBAIO_0.1 without
 * min_nr = min_nr 1, io_cancel@LIBAIO_0.1 without a result pointer,
 * io_queue_wait@LIBAIO_0.1), found with dlvsym, and the version nodes of
 * the default symbols. */
// ctest-ldflags: -ldl
#include "ctest.h"
#include <dlfcn.h>
#include <libaio.h>
#include <poll.h>

typedef int (*getevents01_t)(io_context_t, long, struct io_event *, struct timespec *);
typedef int (*cancel01_t)(io_context_t, struct iocb *);
typedef int (*queue_wait_t)(io_context_t, struct timespec *);

extern int io_queue_wait(io_context_t ctx, struct timespec *timeout);

static int in_our_library(void *sym)
{
	Dl_info info;
	return sym && dladdr(sym, &info) && info.dli_fname &&
	       strstr(info.dli_fname, "/usr/lib") == NULL && strstr(info.dli_fname, "/lib/x86_64") == NULL;
}

int main(void)
{
	io_context_t ctx = 0;
	getevents01_t getevents01;
	cancel01_t cancel01;
	queue_wait_t queue_wait01;
	void *handle;
	struct io_event ev[4];
	struct timespec zero = { 0, 0 }, ms50 = { 0, 50000000 }, ts = { 5, 0 };
	struct iocb cb, *list[1] = { &cb };
	long long t0, dt;
	int p[2];
	Dl_info info;

	/* Which library is this? */
	CHECK(dladdr((void *)io_submit, &info) && info.dli_fname);
	printf("io_submit comes from %s\n", info.dli_fname);
	CHECK(in_our_library((void *)io_submit));

	getevents01 = (getevents01_t)dlvsym(RTLD_DEFAULT, "io_getevents", "LIBAIO_0.1");
	cancel01 = (cancel01_t)dlvsym(RTLD_DEFAULT, "io_cancel", "LIBAIO_0.1");
	queue_wait01 = (queue_wait_t)dlvsym(RTLD_DEFAULT, "io_queue_wait", "LIBAIO_0.1");
	REQUIRE(getevents01 && cancel01 && queue_wait01);
	CHECK(in_our_library((void *)getevents01));
	CHECK((void *)getevents01 != (void *)io_getevents);
	CHECK((void *)cancel01 != (void *)io_cancel);
	CHECK((void *)queue_wait01 != (void *)io_queue_wait);

	/* Default versions, as in libaio 0.3.113. */
	CHECK(dlvsym(RTLD_DEFAULT, "io_getevents", "LIBAIO_0.4") == (void *)io_getevents);
	CHECK(dlvsym(RTLD_DEFAULT, "io_cancel", "LIBAIO_0.4") == (void *)io_cancel);
	CHECK(dlvsym(RTLD_DEFAULT, "io_queue_wait", "LIBAIO_0.4") == (void *)io_queue_wait);
	CHECK(dlvsym(RTLD_DEFAULT, "io_setup", "LIBAIO_0.4") == (void *)io_setup);
	CHECK(dlvsym(RTLD_DEFAULT, "io_destroy", "LIBAIO_0.4") == (void *)io_destroy);
	CHECK(dlvsym(RTLD_DEFAULT, "io_submit", "LIBAIO_0.1") == (void *)io_submit);
	CHECK(dlvsym(RTLD_DEFAULT, "io_queue_init", "LIBAIO_0.1") == (void *)io_queue_init);
	CHECK(dlvsym(RTLD_DEFAULT, "io_queue_run", "LIBAIO_0.1") == (void *)io_queue_run);
	CHECK(dlvsym(RTLD_DEFAULT, "io_queue_release", "LIBAIO_0.1") == (void *)io_queue_release);
	CHECK(dlvsym(RTLD_DEFAULT, "io_pgetevents", "LIBAIO_0.5") == (void *)io_pgetevents);
	CHECK(dlvsym(RTLD_DEFAULT, "io_prep_pread", "LIBAIO_RS_1.0") == (void *)io_prep_pread);
	/* Symbols are not in versions they never had. */
	CHECK(dlvsym(RTLD_DEFAULT, "io_setup", "LIBAIO_0.1") == NULL);
	CHECK(dlvsym(RTLD_DEFAULT, "io_pgetevents", "LIBAIO_0.4") == NULL);
	/* No internal name leaks out. */
	CHECK(dlsym(RTLD_DEFAULT, "__libaio_rs_compat_io_getevents_0_1") == NULL);

	/* The same through a handle on the library itself. */
	handle = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
	CHECK(handle != NULL);
	if (handle) {
		CHECK(dlvsym(handle, "io_getevents", "LIBAIO_0.1") == (void *)getevents01);
		CHECK(dlvsym(handle, "io_cancel", "LIBAIO_0.1") == (void *)cancel01);
		CHECK(dlvsym(handle, "io_queue_wait", "LIBAIO_0.1") == (void *)queue_wait01);
		dlclose(handle);
	}

	REQUIRE(io_setup(8, &ctx) == 0);
	REQUIRE(pipe(p) == 0);

	/* io_getevents@0.1 waits for at least one event (min_nr 1) ... */
	t0 = ctest_now_ns();
	CHECK_RET(getevents01(ctx, 4, ev, &ms50), 0);
	dt = ctest_now_ns() - t0;
	CHECK(dt >= 45000000LL);
	/* ... where the new one with min_nr 0 does not (the fastest of three
	 * tries, so that one preemption on a loaded machine is not a wait). */
	dt = CTEST_FASTEST_NS(3, CHECK_RET(io_getevents(ctx, 0, 4, ev, &ms50), 0));
	CHECK(dt < 40000000LL);
	CHECK_RET(getevents01(ctx, 4, ev, &zero), 0);
	/* Argument errors on an empty ring with a zero timeout: libaio's peek
	 * answers 0 before looking at them; with a timeout, the kernel's. */
	CHECK_RET(getevents01(ctx, -1, ev, &zero), 0);
	CHECK_RET(getevents01(ctx, 0, ev, &zero), 0); /* min_nr 1 > nr 0 */
	CHECK_RET(getevents01(ctx, -1, ev, &ms50), -EINVAL);
	CHECK_RET(getevents01(ctx, 0, ev, &ms50), -EINVAL);
	CHECK_RET(getevents01(NULL, 4, ev, &zero), -EINVAL);
	/* A poll that completes: returned by the old entry point. */
	io_prep_poll(&cb, p[1], POLLOUT);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(getevents01(ctx, 4, ev, &ts), 1);
	CHECK(ev[0].obj == &cb && ev[0].res == POLLOUT);
	CHECK_RET(getevents01(ctx, 4, NULL, &zero), 0);

	/* io_cancel@0.1: no result pointer; a pending poll is -EINPROGRESS and
	 * its event arrives in the ring. */
	io_prep_poll(&cb, p[0], POLLIN);
	CHECK_RET(cancel01(ctx, &cb), -EINVAL);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(cancel01(ctx, &cb), -EINPROGRESS);
	CHECK_RET(getevents01(ctx, 4, ev, &ts), 1);
	CHECK(ev[0].obj == &cb);
	CHECK_RET(cancel01(ctx, &cb), -EINVAL);
	CHECK_RET(cancel01(ctx, NULL), -EFAULT);
	CHECK_RET(cancel01(NULL, &cb), -EINVAL);

	/* io_queue_wait@0.1: io_getevents(ctx, 0, 0, NULL, timeout). */
	CHECK_RET(queue_wait01(ctx, &zero), 0);
	CHECK_RET(queue_wait01(ctx, NULL), 0);
	CHECK_RET(queue_wait01(ctx, &ms50), 0);
	CHECK_RET(queue_wait01(NULL, &zero), -EINVAL);
	CHECK_RET(queue_wait01((io_context_t)12345, NULL), -EINVAL);
	CHECK_RET(io_queue_wait(ctx, &zero), 0);

	CHECK_RET(io_destroy(ctx), 0);
	CHECK_RET(getevents01(ctx, 4, ev, &zero), -EINVAL);
	CHECK_RET(queue_wait01(ctx, &zero), -EINVAL);
	close(p[0]);
	close(p[1]);
	return ctest_finish();
}
