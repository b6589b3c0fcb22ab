/* Linked against target/release/libaio.a by tests/static_link.rs: a write
 * and read-back round trip, plus proof that io_submit lives in this
 * executable rather than in some libaio.so. */
#include "ctest.h"
#include <dlfcn.h>
#include <libaio.h>
#include <sys/uio.h>

int main(int argc, char **argv)
{
	io_context_t ctx = 0;
	struct iocb cb[2], *list[2] = { &cb[0], &cb[1] };
	struct io_event ev[2];
	struct timespec ts = { 5, 0 };
	char out[4096], in[4096];
	struct iovec iov = { in, sizeof in };
	Dl_info info;
	int fd, i;

	(void)argc;
	CHECK(dladdr((void *)io_submit, &info) && info.dli_fname);
	printf("io_submit is in %s (argv[0] %s)\n", info.dli_fname, argv[0]);
	CHECK(strstr(info.dli_fname, "libaio") == NULL);

	CHECK_RET(io_queue_init(4, &ctx), 0);
	fd = ctest_file("data", 0, 0, O_RDWR);
	REQUIRE(fd >= 0);
	for (i = 0; i < (int)sizeof out; i++)
		out[i] = (char)(i * 3 + 1);
	io_prep_pwrite(&cb[0], fd, out, sizeof out, 0);
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(io_getevents(ctx, 1, 2, ev, &ts), 1);
	CHECK(ev[0].obj == &cb[0] && ev[0].res == sizeof out && ev[0].res2 == 0);
	io_prep_preadv(&cb[1], fd, &iov, 1, 0);
	list[0] = &cb[1];
	CHECK_RET(io_submit(ctx, 1, list), 1);
	CHECK_RET(io_getevents(ctx, 1, 2, ev, &ts), 1);
	CHECK(ev[0].obj == &cb[1] && ev[0].res == sizeof in);
	CHECK(memcmp(in, out, sizeof in) == 0);
	/* Errors as from the shared library. */
	CHECK_RET(io_submit(ctx, 1, NULL), -EFAULT);
	CHECK_RET(io_getevents(ctx, 2, 1, ev, &ts), -EINVAL);
	CHECK_RET(io_queue_release(ctx), 0);
	CHECK_RET(io_destroy(ctx), -EINVAL);
	close(fd);
	return ctest_finish();
}
