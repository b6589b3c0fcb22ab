/*
 * Differential scenarios: tests/differential.rs builds this program twice,
 * against /usr/include/libaio.h + the system libaio.so.1 and against
 * include/libaio.h + our libaio.so, runs both and requires identical output
 * (after the first line, which names the library in use).
 *
 * Output never contains pointers: events are named by the index of their
 * iocb.  Every call's line also says whether errno was left alone.
 *
 * `scenarios` runs the common scenarios; `scenarios <name>` runs one of the
 * cases where we deliberately differ from libaio (see differential.rs).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Exported by both libraries, declared by neither header. */
extern int io_queue_wait(io_context_t ctx, struct timespec *timeout);

#define NIOCB 8
static io_context_t ctx;
static struct iocb cbs[NIOCB];
static struct iocb *list[NIOCB];
static struct timespec zero = { 0, 0 }, tiny = { 0, 1000 }, five = { 5, 0 };

/* Print `label = result` and whether errno was left untouched. */
#define R(label, call)                                                               \
	do {                                                                         \
		long r_;                                                             \
		errno = 12345;                                                       \
		r_ = (long)(call);                                                   \
		printf("%-44s = %ld%s\n", label, r_, errno == 12345 ? "" : " (errno changed)"); \
		fflush(stdout);                                                      \
	} while (0)

static int index_of(struct iocb *p)
{
	int i;
	for (i = 0; i < NIOCB; i++)
		if (p == &cbs[i])
			return i;
	return -1;
}

/* Reap exactly n events (5 s limit) and print them sorted by iocb index. */
static void reap(const char *label, int n)
{
	struct io_event ev[NIOCB];
	int i, j, got;
	errno = 12345;
	got = io_getevents(ctx, n, NIOCB, ev, &five);
	printf("%s: reaped %d%s\n", label, got, errno == 12345 ? "" : " (errno changed)");
	for (i = 0; i < NIOCB && got > 0; i++)
		for (j = 0; j < got; j++)
			if (ev[j].obj == &cbs[i])
				printf("  event iocb %d data %ld res %ld res2 %ld\n", i,
				       (long)(intptr_t)ev[j].data, (long)ev[j].res, (long)ev[j].res2);
	fflush(stdout);
}

static unsigned sum(const unsigned char *p, size_t n)
{
	unsigned s = 0;
	while (n--)
		s = s * 31 + *p++;
	return s;
}

static int make_file(const char *name, size_t size, int flags)
{
	unsigned char *p = malloc(size);
	size_t i;
	int fd = open(name, O_CREAT | O_TRUNC | O_RDWR, 0644);
	for (i = 0; i < size; i++)
		p[i] = (unsigned char)(i * 13 + 1);
	if (fd < 0 || pwrite(fd, p, size, 0) != (ssize_t)size)
		abort();
	free(p);
	close(fd);
	return open(name, flags);
}

static void setup_scenarios(void)
{
	io_context_t c = 0, c2;
	printf("== setup\n");
	R("io_setup(0)", io_setup(0, &c));
	R("io_setup(-1)", io_setup(-1, &c));
	R("io_setup(INT_MAX)", io_setup(INT_MAX, &c));
	R("io_setup(INT_MIN)", io_setup(INT_MIN, &c));
	R("io_setup(1, NULL)", io_setup(1, NULL));
	R("io_setup(1, kernel address)", io_setup(1, (io_context_t *)0xffffffff81000000UL));
	R("io_setup(4)", io_setup(4, &c));
	c2 = c;
	R("io_setup(4) on an initialised ctx", io_setup(4, &c2));
	R("ctx unchanged", c2 == c);
	R("io_destroy(NULL)", io_destroy(NULL));
	R("io_destroy(12345)", io_destroy((io_context_t)12345));
	R("io_destroy(ctx)", io_destroy(c));
	R("io_destroy(ctx) again", io_destroy(c));
	R("io_queue_init(0)", io_queue_init(0, &c));
	R("io_queue_init(-3)", io_queue_init(-3, &c));
	c = (io_context_t)0x55;
	R("io_queue_init(4) with garbage in *ctxp", io_queue_init(4, &c));
	R("ctx set", c != 0 && c != (io_context_t)0x55);
	R("io_queue_release(ctx)", io_queue_release(c));
	R("io_queue_release(ctx) again", io_queue_release(c));
}

static void submit_scenarios(int fd, int wfd, int rfd)
{
	static char buf[NIOCB][512];
	int i;
	printf("== submit\n");
	for (i = 0; i < NIOCB; i++) {
		io_prep_pread(&cbs[i], fd, buf[i], 512, 512 * i);
		cbs[i].data = (void *)(intptr_t)(1000 + i);
		list[i] = &cbs[i];
	}
	R("io_submit(NULL array)", io_submit(ctx, 1, NULL));
	R("io_submit((void*)-1 array)", io_submit(ctx, 1, (struct iocb **)(void *)-1L));
	list[0] = NULL;
	R("io_submit(NULL iocb)", io_submit(ctx, 1, list));
	list[0] = (struct iocb *)0xffffffff81000000UL;
	R("io_submit(kernel iocb)", io_submit(ctx, 1, list));
	list[0] = &cbs[0];
	R("io_submit(nr 0)", io_submit(ctx, 0, list));
	R("io_submit(nr 0, NULL)", io_submit(ctx, 0, NULL));
	R("io_submit(nr -1)", io_submit(ctx, -1, list));
	R("io_submit(NULL ctx)", io_submit(NULL, 1, list));
	R("io_submit(ctx 12345)", io_submit((io_context_t)12345, 1, list));
	cbs[0].aio_lio_opcode = 4;
	R("io_submit(opcode 4)", io_submit(ctx, 1, list));
	cbs[0].aio_lio_opcode = IO_CMD_NOOP;
	R("io_submit(IO_CMD_NOOP)", io_submit(ctx, 1, list));
	cbs[0].aio_lio_opcode = 9;
	R("io_submit(opcode 9)", io_submit(ctx, 1, list));
	cbs[0].aio_lio_opcode = IO_CMD_PREAD;
	cbs[0].aio_fildes = 9999;
	R("io_submit(bad fd)", io_submit(ctx, 1, list));
	cbs[0].aio_fildes = fd;
	cbs[2].aio_fildes = 9999;
	R("io_submit(4, third has a bad fd)", io_submit(ctx, 4, list));
	reap("after partial batch", 2);
	cbs[2].aio_fildes = fd;
	list[3] = NULL;
	R("io_submit(5, fourth NULL)", io_submit(ctx, 5, list));
	reap("after partial batch", 3);
	list[3] = &cbs[3];
	R("io_submit(8)", io_submit(ctx, 8, list));
	reap("full batch", 8);
	printf("checksum of buffers %u\n", sum((unsigned char *)buf, sizeof buf));

	io_prep_pread(&cbs[0], wfd, buf[0], 512, 0);
	R("read on a write-only fd", io_submit(ctx, 1, list));
	io_prep_pwrite(&cbs[0], rfd, buf[0], 512, 0);
	R("write on a read-only fd", io_submit(ctx, 1, list));
}

static void rw_scenarios(int fd)
{
	static unsigned char a[8192], b[8192];
	struct iovec iov[3];
	int afd;
	printf("== read/write\n");
	io_prep_pread(&cbs[0], fd, a, 4096, 100);
	io_prep_pread(&cbs[1], fd, a + 4096, 4096, 65536 - 1000);
	io_prep_pread(&cbs[2], fd, b, 100, 1 << 20);
	io_prep_pread(&cbs[3], fd, b, 0, 0);
	R("io_submit(4 reads)", io_submit(ctx, 4, list));
	reap("reads", 4);
	printf("checksum %u\n", sum(a, 5096));
	memset(b, 0x42, sizeof b);
	io_prep_pwrite(&cbs[0], fd, b, 3000, 70000);
	R("io_submit(pwrite past EOF)", io_submit(ctx, 1, list));
	reap("pwrite", 1);
	printf("size %ld\n", (long)lseek(fd, 0, SEEK_END));
	iov[0].iov_base = a;
	iov[0].iov_len = 10;
	iov[1].iov_base = a + 10;
	iov[1].iov_len = 0;
	iov[2].iov_base = a + 10;
	iov[2].iov_len = 1000;
	io_prep_preadv(&cbs[0], fd, iov, 3, 5);
	io_prep_pwritev(&cbs[1], fd, iov, 1, 80000);
	io_prep_preadv2(&cbs[2], fd, iov, 3, 5, 0);
	io_prep_pwritev2(&cbs[3], fd, iov, 1, 90000, RWF_DSYNC);
	R("io_submit(vectored)", io_submit(ctx, 4, list));
	reap("vectored", 4);
	printf("checksum %u\n", sum(a, 1010));
	io_prep_preadv2(&cbs[0], fd, iov, 1, 0, (int)0x80000000u);
	R("preadv2 with an unknown RWF flag", io_submit(ctx, 1, list));
	io_prep_preadv(&cbs[0], fd, iov, 1025, 0);
	R("preadv with 1025 segments", io_submit(ctx, 1, list));
	afd = make_file("append", 100, O_WRONLY | O_APPEND);
	io_prep_pwrite(&cbs[0], afd, b, 10, 0);
	R("O_APPEND write", io_submit(ctx, 1, list));
	reap("O_APPEND", 1);
	printf("append size %ld\n", (long)lseek(afd, 0, SEEK_END));
	close(afd);
}

/* Callbacks are recorded by iocb index (completion order is the kernel's
 * business) and printed by print_callbacks(). */
static int cb_calls;
static char cb_seen[NIOCB][96];
static void callback(io_context_t c, struct iocb *iocb, long res, long res2)
{
	int i = index_of(iocb);
	cb_calls++;
	if (i >= 0)
		snprintf(cb_seen[i], sizeof cb_seen[i], "  callback ctx %s iocb %d res %ld res2 %ld\n",
			 c == ctx ? "ok" : "WRONG", i, res, res2);
}

static void print_callbacks(void)
{
	int i;
	for (i = 0; i < NIOCB; i++)
		if (cb_seen[i][0]) {
			fputs(cb_seen[i], stdout);
			cb_seen[i][0] = 0;
		}
}

static void sync_poll_eventfd_scenarios(int fd)
{
	int p[2], efd;
	uint64_t n = 0;
	char c = 'x';
	printf("== fsync, poll, eventfd\n");
	io_prep_fsync(&cbs[0], fd);
	io_prep_fdsync(&cbs[1], fd);
	R("io_submit(fsync, fdsync)", io_submit(ctx, 2, list));
	reap("fsync", 2);
	if (pipe(p))
		abort();
	io_prep_fsync(&cbs[0], p[0]);
	R("fsync on a pipe", io_submit(ctx, 1, list));
	io_prep_poll(&cbs[0], p[0], POLLIN);
	io_prep_poll(&cbs[1], p[1], POLLOUT);
	R("io_submit(2 polls)", io_submit(ctx, 2, list));
	reap("POLLOUT", 1);
	R("io_getevents(tiny timeout, poll pending)", io_getevents(ctx, 1, 1, (struct io_event[1]){ { 0 } }, &tiny));
	if (write(p[1], &c, 1) != 1)
		abort();
	reap("POLLIN", 1);
	if (read(p[0], &c, 1) != 1)
		abort();
	io_prep_poll(&cbs[0], 9999, POLLIN);
	R("poll on a bad fd", io_submit(ctx, 1, list));

	R("io_poll", io_poll(ctx, &cbs[0], callback, p[0], POLLIN));
	R("io_fsync", io_fsync(ctx, &cbs[1], callback, fd));
	R("io_fdsync", io_fdsync(ctx, &cbs[2], callback, fd));
	R("io_fdsync on a pipe", io_fdsync(ctx, &cbs[3], callback, p[0]));
	usleep(50000);
	R("io_queue_run (fsync, fdsync)", io_queue_run(ctx));
	print_callbacks();
	if (write(p[1], &c, 1) != 1)
		abort();
	usleep(20000);
	R("io_queue_run (poll)", io_queue_run(ctx));
	print_callbacks();
	if (read(p[0], &c, 1) != 1)
		abort();
	R("io_queue_run (nothing)", io_queue_run(ctx));
	printf("callbacks %d\n", cb_calls);
	R("io_queue_wait(zero)", io_queue_wait(ctx, &zero));
	R("io_queue_wait(tiny)", io_queue_wait(ctx, &tiny));
	R("io_queue_wait(NULL)", io_queue_wait(ctx, NULL));
	R("io_queue_run(NULL)", io_queue_run(NULL));

	efd = eventfd(0, 0);
	io_prep_pwrite(&cbs[0], fd, "abc", 3, 0);
	io_set_eventfd(&cbs[0], efd);
	io_prep_fsync(&cbs[1], fd);
	io_set_eventfd(&cbs[1], efd);
	printf("flags %u resfd==efd %d\n", cbs[0].u.c.flags, (int)cbs[0].u.c.resfd == efd);
	R("io_submit(2 with eventfd)", io_submit(ctx, 2, list));
	reap("eventfd", 2);
	R("read(eventfd)", read(efd, &n, 8));
	printf("eventfd count %lu\n", (unsigned long)n);
	io_set_eventfd(&cbs[0], 9999);
	R("bad eventfd", io_submit(ctx, 1, list));
	io_set_eventfd(&cbs[0], p[0]);
	R("pipe as eventfd", io_submit(ctx, 1, list));
	close(efd);

	printf("== cancel\n");
	io_prep_poll(&cbs[0], p[0], POLLIN);
	R("io_cancel(never submitted)", io_cancel(ctx, &cbs[0], (struct io_event[1]){ { 0 } }));
	R("io_cancel(NULL iocb)", io_cancel(ctx, NULL, (struct io_event[1]){ { 0 } }));
	R("io_cancel(NULL ctx)", io_cancel(NULL, &cbs[0], (struct io_event[1]){ { 0 } }));
	cbs[0].data = (void *)77;
	R("io_submit(poll)", io_submit(ctx, 1, list));
	R("io_cancel(pending poll)", io_cancel(ctx, &cbs[0], (struct io_event[1]){ { 0 } }));
	reap("cancelled poll", 1);
	R("io_cancel(cancelled)", io_cancel(ctx, &cbs[0], (struct io_event[1]){ { 0 } }));
	io_prep_pread(&cbs[1], fd, &n, 1, 0);
	list[0] = &cbs[1];
	R("io_submit(read)", io_submit(ctx, 1, list));
	reap("read", 1);
	R("io_cancel(completed read)", io_cancel(ctx, &cbs[1], (struct io_event[1]){ { 0 } }));
	list[0] = &cbs[0];
	close(p[0]);
	close(p[1]);
}

static void getevents_scenarios(int fd)
{
	struct io_event ev[4];
	char buf[4];
	sigset_t mask;
	printf("== getevents\n");
	/* libaio peeks at the ring only for a zero timeout; these go to the kernel. */
	R("io_getevents(min 2 > nr 1, tiny)", io_getevents(ctx, 2, 1, ev, &tiny));
	R("io_getevents(nr -1, tiny)", io_getevents(ctx, 0, -1, ev, &tiny));
	R("io_getevents(min -1, tiny)", io_getevents(ctx, -1, 1, ev, &tiny));
	R("io_getevents(NULL ctx, zero)", io_getevents(NULL, 0, 1, ev, &zero));
	R("io_getevents(NULL ctx, NULL)", io_getevents(NULL, 0, 1, ev, NULL));
	R("io_getevents(empty, zero)", io_getevents(ctx, 1, 4, ev, &zero));
	R("io_getevents(empty, tiny)", io_getevents(ctx, 1, 4, ev, &tiny));
	R("io_getevents(empty, min 0, NULL)", io_getevents(ctx, 0, 4, ev, NULL));
	io_prep_pread(&cbs[0], fd, buf, 4, 0);
	io_prep_pread(&cbs[1], fd, buf, 4, 4);
	R("io_submit(2)", io_submit(ctx, 2, list));
	usleep(20000);
	R("io_getevents(NULL events, pending)", io_getevents(ctx, 1, 4, NULL, &zero));
	{
		/* Unwritable events buffers with events pending: -EFAULT, and
		 * the events stay in the ring. */
		void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ro == MAP_FAILED || gone == MAP_FAILED)
			abort();
		munmap(gone, 4096);
		R("io_getevents(read-only events, pending)", io_getevents(ctx, 1, 4, ro, &five));
		R("io_getevents(read-only events, zero)", io_getevents(ctx, 0, 4, ro, &zero));
		R("io_getevents(unmapped events, pending)", io_getevents(ctx, 1, 4, gone, &five));
		R("io_pgetevents(unmapped events, zero)", io_pgetevents(ctx, 0, 4, gone, &zero, NULL));
		munmap(ro, 4096);
	}
	R("io_getevents(min 3 > nr 2, pending)", io_getevents(ctx, 3, 2, ev, &zero));
	R("io_getevents(nr 0, pending)", io_getevents(ctx, 0, 0, ev, &zero));
	R("io_getevents(1 of 2)", io_getevents(ctx, 1, 1, ev, &zero));
	R("io_pgetevents(NULL mask)", io_pgetevents(ctx, 1, 4, ev, &five, NULL));
	sigemptyset(&mask);
	R("io_pgetevents(empty, tiny, mask)", io_pgetevents(ctx, 1, 4, ev, &tiny, &mask));
	R("io_pgetevents(bad mask)", io_pgetevents(ctx, 1, 4, ev, &tiny, (sigset_t *)0xffffffff81000000UL));
	R("io_pgetevents(min 2 > nr 1, tiny)", io_pgetevents(ctx, 2, 1, ev, &tiny, &mask));
	{
		/* An events buffer with room for one event before an unmapped
		 * page, first used for one event (the kernel writes that slot),
		 * then passed with nr 4 while three are ready: libaio gets the
		 * kernel's -EFAULT with all three left in the ring (libaio-rs
		 * once took the one that fitted and returned 1). */
		char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct io_event *edge;
		if (two == MAP_FAILED)
			abort();
		munmap(two + 4096, 4096);
		edge = (struct io_event *)(two + 4096) - 1;
		io_prep_pread(&cbs[0], fd, buf, 4, 0);
		R("io_submit(1)", io_submit(ctx, 1, list));
		R("io_getevents(1 into the one slot)", io_getevents(ctx, 1, 1, edge, &five));
		printf("  event iocb %d res %ld\n", index_of(edge->obj), (long)edge->res);
		io_prep_pread(&cbs[1], fd, buf, 4, 4);
		io_prep_pread(&cbs[2], fd, buf, 4, 8);
		io_prep_pread(&cbs[3], fd, buf, 4, 12);
		R("io_submit(3)", io_submit(ctx, 3, list + 1));
		usleep(20000);
		R("io_getevents(3 ready, room for 1)", io_getevents(ctx, 1, 4, edge, &five));
		R("io_getevents(3 ready, room for 1, zero)", io_getevents(ctx, 0, 4, edge, &zero));
		reap("after the short buffer", 3);
		munmap(two, 4096);
	}
}

static volatile sig_atomic_t usr1_seen;
static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen++;
}

/* libaio's peek (aio_ring_is_empty): with a zero timeout and ring memory
 * at ctx that has the ring's magic and head == tail, io_getevents and
 * io_pgetevents return 0 before looking at any other argument, and
 * io_pgetevents installs no signal mask.  (Each case an independent
 * tester's differential found libaio-rs answering -EINVAL, from the
 * kernel.)  Called with the context's ring empty. */
static void peek_scenarios(int fd)
{
	struct io_event ev[2];
	sigset_t usr1, empty;
	printf("== peek\n");
	R("io_getevents(empty, zero, min 2 > nr 1)", io_getevents(ctx, 2, 1, ev, &zero));
	R("io_getevents(empty, zero, nr -1)", io_getevents(ctx, 0, -1, ev, &zero));
	R("io_getevents(empty, zero, NULL events)", io_getevents(ctx, 1, 2, NULL, &zero));
	/* A blocked, pending SIGUSR1 and an empty mask: no system call, so
	 * the signal stays pending until it is unblocked here. */
	signal(SIGUSR1, on_usr1);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigemptyset(&empty);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	usr1_seen = 0;
	raise(SIGUSR1);
	R("io_pgetevents(empty, zero, min 2 > nr 1, mask)", io_pgetevents(ctx, 2, 1, ev, &zero, &empty));
	printf("  handler ran %d\n", (int)usr1_seen);
	sigprocmask(SIG_UNBLOCK, &usr1, NULL);
	printf("  after unblocking, handler ran %d\n", (int)usr1_seen);
	signal(SIGUSR1, SIG_DFL);
	{
		/* A ring header with incompat_features set (which libaio-rs
		 * will not reap from in user space): libaio only looks at the
		 * magic and head == tail. */
		unsigned *hdr = (unsigned *)ctx, saved = hdr[6];
		hdr[6] = 1;
		R("io_getevents(empty, zero, incompat_features 1)", io_getevents(ctx, 0, 2, ev, &zero));
		R("io_getevents(empty, zero, incompat_features 1, min 2 > nr 1)", io_getevents(ctx, 2, 1, ev, &zero));
		hdr[6] = saved;
	}
	{
		/* A ring moved with mremap, and ring-like bytes (another id)
		 * mapped at its old address: the old address names no context
		 * (the kernel's -EINVAL with a timeout; libaio's peek, 0, with
		 * a zero one), and nothing is taken from those bytes (libaio-rs
		 * once returned their "events"). */
		io_context_t moved = 0;
		unsigned *old, *hdr;
		size_t len;
		void *dst, *at;
		char buf[4];
		struct iocb *one = &cbs[0];
		if (io_setup(1, &moved))
			abort();
		/* One event reaped into ev first: the kernel writes ev[0], so
		 * libaio-rs may copy an event there in user space later. */
		io_prep_pread(&cbs[0], fd, buf, 4, 0);
		R("io_submit(1) before the move", io_submit(moved, 1, &one));
		R("io_getevents(1) before the move", io_getevents(moved, 1, 1, ev, &five));
		old = (unsigned *)moved;
		len = (32 + (size_t)old[1] * 32 + 4095) & ~(size_t)4095;
		dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (dst == MAP_FAILED)
			abort();
		at = mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		if (at != dst)
			abort();
		hdr = mmap(old, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if ((void *)hdr != (void *)old)
			abort();
		memcpy(hdr, at, 32);
		hdr[0] = 0xfffffff0; /* id */
		hdr[3] = (hdr[2] + 1) % hdr[1]; /* one "event" */
		R("io_getevents(old address of a moved ring, tiny)", io_getevents(moved, 0, 1, ev, &tiny));
		hdr[3] = hdr[2];
		R("io_queue_run(old address of a moved ring, empty)", io_queue_run(moved));
		R("io_destroy(moved ring, new address)", io_destroy((io_context_t)at));
		munmap(hdr, len);
	}
	{
		/* Ring-like bytes at an address that names no context. */
		unsigned *fake = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (fake == MAP_FAILED)
			abort();
		fake[2] = fake[3] = 3; /* head, tail */
		fake[4] = 0xa10a10a1;  /* magic */
		R("io_getevents(ring-like bytes, zero)", io_getevents((io_context_t)fake, 0, 1, ev, &zero));
		R("io_queue_run(ring-like bytes)", io_queue_run((io_context_t)fake));
		R("io_getevents(ring-like bytes, tiny)", io_getevents((io_context_t)fake, 0, 1, ev, &tiny));
		fake[3] = 4;
		R("io_getevents(ring-like bytes, head != tail, zero)", io_getevents((io_context_t)fake, 0, 1, ev, &zero));
		munmap(fake, 4096);
	}
	{
		/* A forked child peeking at its parent's (empty) ring. */
		pid_t pid;
		int status = 0;
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			int r = io_getevents(ctx, 0, 2, ev, &zero);
			int q = io_getevents(ctx, 0, 2, ev, &tiny);
			_exit((r == 0 ? 1 : 0) | (q == -EINVAL ? 2 : 0));
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			abort();
		printf("forked child on the parent's empty ring: zero timeout %s, tiny timeout %s\n",
		       WEXITSTATUS(status) & 1 ? "0" : "not 0", WEXITSTATUS(status) & 2 ? "-EINVAL" : "not -EINVAL");
	}
}

typedef int (*getevents01_t)(io_context_t, long, struct io_event *, struct timespec *);
typedef int (*cancel01_t)(io_context_t, struct iocb *);
typedef int (*queue_wait_t)(io_context_t, struct timespec *);

static void compat_scenarios(void)
{
	getevents01_t getevents01 = (getevents01_t)dlvsym(RTLD_DEFAULT, "io_getevents", "LIBAIO_0.1");
	cancel01_t cancel01 = (cancel01_t)dlvsym(RTLD_DEFAULT, "io_cancel", "LIBAIO_0.1");
	queue_wait_t queue_wait01 = (queue_wait_t)dlvsym(RTLD_DEFAULT, "io_queue_wait", "LIBAIO_0.1");
	struct io_event ev[4];
	int p[2];
	printf("== LIBAIO_0.1 symbols\n");
	printf("found %d %d %d\n", getevents01 != NULL, cancel01 != NULL, queue_wait01 != NULL);
	printf("io_setup@LIBAIO_0.1 %d, io_setup@LIBAIO_0.4 %d, io_pgetevents@LIBAIO_0.5 %d\n",
	       dlvsym(RTLD_DEFAULT, "io_setup", "LIBAIO_0.1") != NULL,
	       dlvsym(RTLD_DEFAULT, "io_setup", "LIBAIO_0.4") != NULL,
	       dlvsym(RTLD_DEFAULT, "io_pgetevents", "LIBAIO_0.5") != NULL);
	if (!getevents01 || !cancel01 || !queue_wait01)
		return;
	if (pipe(p))
		abort();
	R("io_getevents@0.1(empty, tiny)", getevents01(ctx, 4, ev, &tiny));
	R("io_getevents@0.1(nr 0, tiny)", getevents01(ctx, 0, ev, &tiny));
	R("io_getevents@0.1(nr -1, tiny)", getevents01(ctx, -1, ev, &tiny));
	io_prep_poll(&cbs[0], p[1], POLLOUT);
	R("io_submit(POLLOUT)", io_submit(ctx, 1, list));
	errno = 12345;
	R("io_getevents@0.1(pending)", getevents01(ctx, 4, ev, &five));
	printf("  event iocb %d res %ld\n", index_of(ev[0].obj), (long)ev[0].res);
	io_prep_poll(&cbs[0], p[0], POLLIN);
	R("io_cancel@0.1(never submitted)", cancel01(ctx, &cbs[0]));
	R("io_submit(POLLIN)", io_submit(ctx, 1, list));
	R("io_cancel@0.1(pending poll)", cancel01(ctx, &cbs[0]));
	R("io_getevents@0.1(cancelled)", getevents01(ctx, 4, ev, &five));
	R("io_cancel@0.1(NULL)", cancel01(ctx, NULL));
	R("io_queue_wait@0.1(zero)", queue_wait01(ctx, &zero));
	R("io_queue_wait@0.1(tiny)", queue_wait01(ctx, &tiny));
	R("io_queue_wait@0.1(NULL)", queue_wait01(ctx, NULL));
	R("io_queue_wait@0.1(NULL ctx)", queue_wait01(NULL, &tiny));
	close(p[0]);
	close(p[1]);
}

/* Print the 64 bytes of an iocb. */
static void dump(const char *label, const struct iocb *io)
{
	const unsigned char *b = (const unsigned char *)io;
	size_t i;
	printf("%-28s", label);
	for (i = 0; i < sizeof *io; i++)
		printf("%s%02x", i % 8 ? "" : " ", b[i]);
	printf("\n");
}

static void fake_cb(io_context_t c, struct iocb *io, long r, long r2)
{
	(void)c;
	(void)io;
	(void)r;
	(void)r2;
}

/* The io_prep_* helpers (libaio: static inlines; ours: exported functions)
 * must produce the same bytes, whatever the iocb held before.  Pointers are
 * constants, not addresses of anything. */
static void prep_scenarios(void)
{
	struct iocb io;
	void *buf = (void *)0x123456789a0UL;
	const struct iovec *iov = (const struct iovec *)0xfedcba98760UL;
	printf("== prep\n");
#define DIRTY() memset(&io, 0xa5, sizeof io)
	DIRTY();
	io_prep_pread(&io, 3, buf, 4096, 1LL << 40);
	dump("pread", &io);
	DIRTY();
	io_prep_pwrite(&io, -1, buf, (size_t)-1, -5);
	dump("pwrite", &io);
	DIRTY();
	io_prep_preadv(&io, 4, iov, 3, 512);
	dump("preadv", &io);
	DIRTY();
	io_prep_pwritev(&io, 5, iov, -2, 0);
	dump("pwritev (iovcnt -2)", &io);
	DIRTY();
	io_prep_preadv2(&io, 6, iov, 1, 8, RWF_NOWAIT | RWF_HIPRI);
	dump("preadv2", &io);
	DIRTY();
	io_prep_pwritev2(&io, 7, iov, 1, 8, -1);
	dump("pwritev2 (flags -1)", &io);
	DIRTY();
	io_prep_fsync(&io, 8);
	dump("fsync", &io);
	DIRTY();
	io_prep_fdsync(&io, 9);
	dump("fdsync", &io);
	DIRTY();
	io_prep_poll(&io, 10, POLLIN | POLLOUT | POLLPRI);
	dump("poll", &io);
	io_set_eventfd(&io, 11);
	dump("poll + set_eventfd", &io);
	io_prep_pread(&io, 3, buf, 1, 0);
	io.u.c.flags = 6;
	io_set_eventfd(&io, -1);
	dump("set_eventfd keeps flags", &io);
	io_set_callback(&io, fake_cb);
	printf("set_callback stores the function: %d\n", io.data == (void *)fake_cb);
	io.data = NULL;
	dump("after set_callback", &io);
#undef DIRTY
}

/* The cases where we differ from libaio on purpose; one per process. */
static int differing(const char *name)
{
	struct io_event ev[2];
	if (io_setup(4, &ctx))
		abort();
	if (!strcmp(name, "getevents-bad-ctx"))
		R(name, io_getevents((io_context_t)12345, 0, 1, ev, &zero));
	else if (!strcmp(name, "getevents-destroyed-ctx")) {
		io_destroy(ctx);
		R(name, io_getevents(ctx, 0, 1, ev, &zero));
	} else if (!strcmp(name, "getevents-kernel-timeout"))
		R(name, io_getevents(ctx, 1, 1, ev, (struct timespec *)0xffffffff81000000UL));
	else if (!strcmp(name, "queue-init-null"))
		R(name, io_queue_init(4, NULL));
	else
		return 2;
	return 0;
}

int main(int argc, char **argv)
{
	Dl_info info;
	int fd, wfd, rfd;
	if (!dladdr((void *)io_submit, &info) || !info.dli_fname)
		return 3;
	printf("LIB %s\n", info.dli_fname);
	fflush(stdout);
	if (argc > 1)
		return differing(argv[1]);

	prep_scenarios();
	setup_scenarios();
	if (io_setup(NIOCB * 2, &ctx))
		abort();
	fd = make_file("data", 65536, O_RDWR);
	wfd = open("data", O_WRONLY);
	rfd = open("data", O_RDONLY);
	submit_scenarios(fd, wfd, rfd);
	rw_scenarios(fd);
	sync_poll_eventfd_scenarios(fd);
	getevents_scenarios(fd);
	peek_scenarios(fd);
	compat_scenarios();
	R("io_destroy", io_destroy(ctx));
	printf("done\n");
	return 0;
}
