/* Shared helpers of the ctests/pi_*.c programs: ctest.h's checks and an
 * independent, bit-at-a-time implementation of the PI formats, to compare
 * the library against. */
#ifndef PI_COMMON_H
#define PI_COMMON_H
#include "ctest.h"
#include <libaio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static inline uint16_t ref_crc16(const uint8_t *p, size_t n)
{
	uint16_t crc = 0;
	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x8BB7) : (uint16_t)(crc << 1);
	}
	return crc;
}

static inline uint64_t ref_crc64(const uint8_t *p, size_t n)
{
	uint64_t crc = ~0ULL;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x9A6C9329AC4BC9B5ULL : crc >> 1;
	}
	return ~crc;
}

struct fmt {
	int code;        /* IO_PI_* */
	size_t interval; /* 512 or 4096 */
};
static inline size_t fmt_tuple(struct fmt f)
{
	return (f.code == IO_PI_NVME_TYPE1_CRC64 || f.code == IO_PI_NVME_TYPE3_CRC64) ? 16 : 8;
}
static inline int fmt_type1(struct fmt f)
{
	return f.code == IO_PI_T10_DIF_TYPE1_CRC || f.code == IO_PI_NVME_TYPE1_CRC64;
}

/* One tuple: guard over `data`, app tag, ref tag (big-endian fields). */
static inline void put_tuple(struct fmt f, uint8_t *t, const uint8_t *data, uint16_t app, uint64_t ref)
{
	if (fmt_tuple(f) == 8) {
		uint16_t g = ref_crc16(data, f.interval);
		t[0] = g >> 8; t[1] = g;
		t[2] = app >> 8; t[3] = app;
		for (int i = 0; i < 4; i++)
			t[4 + i] = (uint8_t)(ref >> (24 - 8 * i));
	} else {
		uint64_t g = ref_crc64(data, f.interval);
		for (int i = 0; i < 8; i++)
			t[i] = (uint8_t)(g >> (56 - 8 * i));
		t[8] = app >> 8; t[9] = app;
		for (int i = 0; i < 6; i++)
			t[10 + i] = (uint8_t)(ref >> (40 - 8 * i));
	}
}

/* Tuples a correct implementation returns for a read (app 0; Type 3 ref 0). */
static inline void expected_pi(struct fmt f, uint8_t *pi, const uint8_t *data, size_t len, long long off)
{
	size_t n = len / f.interval, ts = fmt_tuple(f);
	uint64_t seed = (uint64_t)off / f.interval;
	for (size_t i = 0; i < n; i++)
		put_tuple(f, pi + i * ts, data + i * f.interval, 0, fmt_type1(f) ? seed + i : 0);
}

static inline void *xalloc(size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, n ? n : 1)) {
		perror("posix_memalign");
		exit(2);
	}
	memset(p, 0, n);
	return p;
}

static inline void fill_random(uint8_t *p, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++) {
		*s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
		p[i] = (uint8_t)*s;
	}
}

/* Open (create) `name` read-write with O_DIRECT and `extra` flags.  Only a
 * file system without O_DIRECT (EINVAL) skips the program; any other
 * failure fails it. */
static inline int pi_open_direct(const char *name, int extra)
{
	int fd = open(name, O_RDWR | O_CREAT | O_DIRECT | extra, 0644);
	if (fd < 0 && errno == EINVAL)
		ctest_skip("O_DIRECT not supported here");
	if (fd < 0) {
		perror("open O_DIRECT");
		exit(1);
	}
	return fd;
}

/* Skip the program (77) unless files here can be opened with O_DIRECT:
 * the probe file `name` is created and removed.  For programs that must
 * decide before doing anything else (re-running under valgrind). */
static inline void pi_skip_without_direct(const char *name)
{
	close(pi_open_direct(name, 0));
	unlink(name);
}

/* A fresh O_DIRECT test file `name` holding `len` random bytes (seeded by
 * `seed`), also left in a new aligned buffer at *data; returns the fd
 * (skips or fails the program as pi_open_direct does). */
static inline int random_direct_file(const char *name, size_t len, uint64_t seed, uint8_t **data)
{
	int fd = pi_open_direct(name, O_TRUNC);
	*data = xalloc(len);
	fill_random(*data, len, &seed);
	if (pwrite(fd, *data, len, 0) != (ssize_t)len) {
		perror("pwrite of the test file");
		exit(1);
	}
	return fd;
}

/* io_setup(nr) into *ctx, or fail the program: the library under test
 * refusing it is a failure, not a reason to skip. */
static inline void pi_setup(unsigned nr, io_context_t *ctx)
{
	int r = io_setup(nr, ctx);
	if (r != 0) {
		printf("io_setup(%u) = %d\n", nr, r);
		exit(1);
	}
}

/* Submit one iocb, return io_submit's result. */
static inline int submit1(io_context_t ctx, struct iocb *io)
{
	struct iocb *l[1] = { io };
	return io_submit(ctx, 1, l);
}

/* Reap exactly one event (blocking). */
static inline int reap1(io_context_t ctx, struct io_event *ev)
{
	return io_getevents(ctx, 1, 1, ev, NULL);
}

/* What refusing one iocb at io_submit with error r looks like to
 * submit_res1: far from any res. */
#define REFUSED(r) (-1000000L + (r))

/* Submit one iocb and return its event's res: REFUSED(r) if io_submit
 * answered r instead of 1, REFUSED(0) if the event was not its own. */
static inline long submit_res1(io_context_t ctx, struct iocb *io)
{
	struct io_event ev;
	int r = submit1(ctx, io);
	if (r != 1)
		return REFUSED(r);
	if (reap1(ctx, &ev) != 1 || ev.obj != io)
		return REFUSED(0);
	return (long)ev.res;
}

/* Reap n events into ev[0 .. n) (blocking); returns how many were reaped:
 * fewer than n only if io_getevents fails. */
static inline int reap_n(io_context_t ctx, struct io_event *ev, int n)
{
	int got = 0;
	while (got < n) {
		int k = io_getevents(ctx, 1, n - got, ev + got, NULL);
		if (k <= 0)
			break;
		got += k;
	}
	return got;
}
#endif
