/* Several threads, each with its own contexts, creating, using and
 * destroying them concurrently (the context registry is shared and
 * lock-free), plus threads sharing one context for submit and reap. */
#include "ctest.h"
#include <libaio.h>
#include <pthread.h>

#define THREADS 4
#define ROUNDS 150

static int fd;
static io_context_t shared;

static void *own_contexts(void *arg)
{
	long id = (long)arg, bad = 0;
	struct timespec zero = { 0, 0 }, ts = { 5, 0 };
	int round, i;
	for (round = 0; round < ROUNDS; round++) {
		io_context_t ctx = 0;
		struct iocb cb[4], *list[4];
		struct io_event ev[4];
		unsigned char buf[4][64];
		int r = io_setup(4 + (int)id, &ctx);
		if (r != 0) {
			printf("thread %ld round %d: io_setup: %d\n", id, round, r);
			bad++;
			continue;
		}
		if ((r = io_getevents(ctx, 0, 4, ev, &zero)) != 0) {
			printf("thread %ld round %d: first peek: %d\n", id, round, r);
			bad++;
		}
		for (i = 0; i < 4; i++) {
			io_prep_pread(&cb[i], fd, buf[i], 64, 64 * (i + id));
			list[i] = &cb[i];
		}
		if ((r = io_submit(ctx, 4, list)) != 4) {
			printf("thread %ld round %d: io_submit: %d\n", id, round, r);
			bad++;
		} else if ((r = io_getevents(ctx, 4, 4, ev, &ts)) != 4) {
			printf("thread %ld round %d: io_getevents: %d\n", id, round, r);
			bad++;
		}
		for (i = 0; i < 4; i++)
			if (ev[i].res != 64 || buf[ev[i].obj - cb][0] != ctest_pattern(64 * ((ev[i].obj - cb) + id), 3)) {
				printf("thread %ld round %d: event %d res %ld\n", id, round, i, (long)ev[i].res);
				bad++;
			}
		if ((r = io_getevents(ctx, 0, 4, ev, &zero)) != 0) {
			printf("thread %ld round %d: second peek: %d\n", id, round, r);
			bad++;
		}
		if ((r = io_destroy(ctx)) != 0) {
			printf("thread %ld round %d: io_destroy: %d\n", id, round, r);
			bad++;
		}
	}
	return (void *)bad;
}

#define SHARED_OPS 2000
static void *submitter(void *arg)
{
	static struct iocb cb[SHARED_OPS];
	static char buf[SHARED_OPS][8];
	long bad = 0;
	int i;
	(void)arg;
	for (i = 0; i < SHARED_OPS; i++) {
		struct iocb *one = &cb[i];
		io_prep_pread(&cb[i], fd, buf[i], 8, 8 * (i % 100));
		while (1) {
			int r = io_submit(shared, 1, &one);
			if (r == 1)
				break;
			if (r != -EAGAIN) {
				printf("submitter: io_submit: %d\n", r);
				bad++;
				break;
			}
			usleep(100);
		}
	}
	return (void *)bad;
}

static void *reaper(void *arg)
{
	long got = 0, bad = 0;
	struct io_event ev[64];
	struct timespec ts = { 10, 0 };
	(void)arg;
	while (got < SHARED_OPS) {
		int n = io_getevents(shared, 1, 64, ev, &ts), i;
		if (n <= 0) {
			printf("reaper: io_getevents: %d after %ld events\n", n, got);
			bad++;
			break;
		}
		for (i = 0; i < n; i++)
			if (ev[i].res != 8)
				bad++;
		got += n;
	}
	return (void *)(bad + (got != SHARED_OPS));
}

int main(void)
{
	pthread_t t[THREADS + 2];
	void *ret;
	long i;

	fd = ctest_file("data", 65536, 3, O_RDONLY);
	REQUIRE(fd >= 0);
	for (i = 0; i < THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, own_contexts, (void *)i) == 0);
	for (i = 0; i < THREADS; i++) {
		pthread_join(t[i], &ret);
		CHECK_EQ((long)ret, 0);
	}

	REQUIRE(io_setup(128, &shared) == 0);
	REQUIRE(pthread_create(&t[0], NULL, reaper, NULL) == 0);
	REQUIRE(pthread_create(&t[1], NULL, submitter, NULL) == 0);
	pthread_join(t[1], &ret);
	CHECK_EQ((long)ret, 0);
	pthread_join(t[0], &ret);
	CHECK_EQ((long)ret, 0);
	CHECK_RET(io_destroy(shared), 0);
	close(fd);
	return ctest_finish();
}
