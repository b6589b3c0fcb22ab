/* A raw fork (syscall(SYS_fork)) of a process that loaded the library with
 * dlopen: the child's first calls (io_getevents on the parent's context:
 * with a zero timeout libaio's peek at the inherited, empty ring, 0; with
 * another, the kernel's -EINVAL) must not allocate, since malloc's lock may be held
 * by a parent thread that does not exist in the child.  With dlopen, a
 * thread's first use of the library's thread-locals makes glibc allocate
 * that thread's TLS block; the fork work used to mark itself in one (an
 * independent reviewer's t_dl2.c: malloc <- __tls_get_addr <- REINIT), and
 * hung 2 of 60 children whose parent had a thread doing malloc/free.  The
 * library here is a copy of the linked one, loaded RTLD_LOCAL, and its
 * io_setup runs in another thread, so the forking thread never touched
 * its thread-locals.
 */
// ctest-no-sanitize
#include "ctest.h"
#include <dlfcn.h>
#include <libaio.h>
#include <sys/syscall.h>

#include "ctest_nomalloc.h"

typedef int (*setup_fn)(int, io_context_t *);
typedef int (*getevents_fn)(io_context_t, long, long, struct io_event *, struct timespec *);
static setup_fn setup;
static io_context_t ctx;

static void *setup_thread(void *arg)
{
	(void)arg;
	if (setup(4, &ctx))
		ctx = 0;
	return NULL;
}

int main(void)
{
	Dl_info info;
	REQUIRE(dladdr((void *)io_setup, &info) && info.dli_fname);
	char path[PATH_MAX];
	REQUIRE(realpath(".", path));
	strcat(path, "/libaio-copy.so");
	REQUIRE(ctest_copy_file(info.dli_fname, path));
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	REQUIRE(h);
	setup = (setup_fn)dlsym(h, "io_setup");
	getevents_fn getevents = (getevents_fn)dlsym(h, "io_getevents");
	REQUIRE(setup && getevents && (void *)setup != (void *)io_setup);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, setup_thread, NULL) == 0);
	pthread_join(t, NULL);
	REQUIRE(ctx);
	fflush(stdout);
	pid_t pid = (pid_t)syscall(SYS_fork);
	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct io_event ev[4];
		struct timespec zero = { 0, 0 }, tiny = { 0, 1000 };
		alarm(10);
		no_malloc = 1;
		int r = getevents(ctx, 0, 4, ev, &zero);
		int q = getevents(ctx, 0, 4, ev, &tiny);
		no_malloc = 0;
		_exit(r == 0 && q == -EINVAL ? 0 : 1);
	}
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "raw-fork child of a dlopen'ed library: 0, then -EINVAL, without allocating (%s %d)",
	       WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	unlink(path);
	return ctest_finish();
}
