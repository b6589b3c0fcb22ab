/*
 * valgrind_pi.c: a program using PI iocbs runs under valgrind (memcheck
 * sees no error) with the answers it gets natively, including a PI iocb
 * refused at submission.
 *
 * Regression: to learn the kernel's own error for a refused PI iocb, the
 * library submitted a twin of it with a NULL iovec array (the kernel answers
 * -EFAULT at submission).  Valgrind's model of io_submit reads every iovec
 * array itself, so valgrind crashed on the first refused PI iocb, where a
 * program using the system libaio runs on.
 *
 * Regression: PI reads into fresh heap memory, reaped once their events
 * were in the ring, were taken in user space, where memcheck's model of
 * io_getevents(2) never saw them: it reported their data as uninitialised
 * when the program used it (an independent tester; see valgrind_reap.c).
 *
 * Re-executes itself under `valgrind --error-exitcode=1`; skips (77) when
 * valgrind is not installed, or O_DIRECT is not supported.
 */
// ctest-no-sanitize
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>

#include "ctest.h"
#include "pi_common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

enum { LEN = 4096, TUPLES = LEN / 512 * 8 };

static const struct fmt T10 = { IO_PI_T10_DIF_TYPE1_CRC, 512 };

static int body(void)
{
	io_context_t ctx = 0;
	uint8_t *data, *pi = xalloc(TUPLES), *back = xalloc(LEN), *backpi = xalloc(TUPLES);
	int fd = random_direct_file("valgrind_pi.dat", 2 * LEN, 7, &data);
	int plain = open("valgrind_pi.dat", O_RDWR);
	REQUIRE(plain >= 0);
	pi_setup(8, &ctx);
	struct iocb io;
	struct io_event ev;
	struct iovec v[2] = { { data, LEN }, { pi, TUPLES } };
	expected_pi(T10, pi, data, LEN, LEN); /* written at offset LEN below */

	/* Refused at submission: each goes through the library's question to
	 * the kernel (the crash).  Not O_DIRECT: -EINVAL. */
	io_prep_pwritevm(&io, plain, v, 2, 0);
	CHECK_RET(submit1(ctx, &io), -EINVAL);
	io_prep_preadvm(&io, plain, v, 2, 0);
	CHECK_RET(submit1(ctx, &io), -EINVAL);
	/* An unknown RWF_ flag: the kernel's own error comes first. */
	io_prep_pwritevm(&io, plain, v, 2, 0);
	io.aio_rw_flags = 0x40000000;
	CHECK_RET(submit1(ctx, &io), -EOPNOTSUPP);
	/* A PI buffer on an unmapped page: accepted, -EFAULT in the event. */
	uint8_t *gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(gone != MAP_FAILED);
	munmap(gone, 4096);
	struct iovec bad[2] = { { back, LEN }, { gone, TUPLES } };
	io_prep_preadvm(&io, fd, bad, 2, 0);
	CHECK_RET(submit1(ctx, &io), 1);
	CHECK_RET(reap1(ctx, &ev), 1);
	CHECK(ev.obj == &io);
	CHECK_EQ((long)ev.res, -EFAULT);

	/* Accepted: a good write, a read of it with its PI, a bad guard. */
	io_prep_pwritevm(&io, fd, v, 2, LEN);
	io.data = (void *)0x5a;
	CHECK_RET(submit1(ctx, &io), 1);
	CHECK_RET(reap1(ctx, &ev), 1);
	CHECK(ev.obj == &io && ev.data == (void *)0x5a);
	CHECK_EQ((long)ev.res, LEN);
	struct iovec r[2] = { { back, LEN }, { backpi, TUPLES } };
	io_prep_preadvm(&io, fd, r, 2, LEN);
	CHECK_RET(submit1(ctx, &io), 1);
	CHECK_RET(reap1(ctx, &ev), 1);
	uint8_t want[TUPLES];
	expected_pi(T10, want, data, LEN, LEN);
	for (int i = 0; i < TUPLES; i += 8)
		want[i + 2] = want[i + 3] = 0; /* the app tags read back as 0 */
	CHECK_EQ((long)ev.res, LEN);
	CHECK(memcmp(back, data, LEN) == 0);
	CHECK(memcmp(backpi, want, TUPLES) == 0);
	pi[0] ^= 1;
	memset(data, 0xEE, LEN);
	io_prep_pwritevm(&io, fd, v, 2, LEN);
	CHECK_RET(submit1(ctx, &io), 1);
	CHECK_RET(reap1(ctx, &ev), 1);
	CHECK_EQ((long)ev.res, -EILSEQ);
	CHECK(pread(fd, data, LEN, LEN) == LEN && memcmp(data, back, LEN) == 0);

	/* Regression (see valgrind_reap.c): a PI read into fresh (undefined)
	 * heap memory, reaped once its event is surely in the ring (the events
	 * buffer is proven by the reaps above): memcheck sees its data and
	 * tuples as defined when the program uses them. */
	for (int round = 0; round < 3; round++) {
		uint8_t *fresh = NULL, *freshpi = malloc(TUPLES);
		REQUIRE(posix_memalign((void **)&fresh, 4096, LEN) == 0 && freshpi != NULL);
		struct iovec f[2] = { { fresh, LEN }, { freshpi, TUPLES } };
		io_prep_preadvm(&io, fd, f, 2, LEN);
		CHECK_RET(submit1(ctx, &io), 1);
		usleep(50000);
		CHECK_RET(reap1(ctx, &ev), 1);
		CHECK_EQ((long)ev.res, LEN);
		unsigned sum = 0;
		for (int k = 0; k < LEN; k++)
			sum += fresh[k] ^ back[k];
		for (int k = 0; k < TUPLES; k++)
			sum += freshpi[k] ^ want[k];
		/* A branch on data and tuples: memcheck's error if undefined. */
		CHECKF(sum == 0, "round %d: data and tuples read back", round);
		free(fresh);
		free(freshpi);
	}

	CHECK_RET(io_destroy(ctx), 0);
	close(plain);
	close(fd);
	unlink("valgrind_pi.dat");
	return ctest_finish();
}

int main(int argc, char **argv)
{
	(void)argc;
	if (RUNNING_ON_VALGRIND)
		return body();
	/* Skips here, outside valgrind, if the file system has no O_DIRECT. */
	pi_skip_without_direct("valgrind_pi.probe");
	return ctest_rerun_under_valgrind(argv[0], NULL);
}
