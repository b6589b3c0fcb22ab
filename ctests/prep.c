/* io_prep_* and io_set_*: every byte of the iocb they produce equals a
 * hand-built expected iocb (zeroed, then the documented fields set), whatever
 * the iocb held before.  Field offsets are checked against the kernel ABI. */
#include "ctest.h"
#include <libaio.h>
#include <poll.h>
#include <stddef.h>
#include <sys/uio.h>

/* The kernel's struct iocb on a 64-bit little-endian machine. */
struct kernel_iocb {
	unsigned long long aio_data;
	unsigned int aio_key, aio_rw_flags;
	unsigned short aio_lio_opcode;
	short aio_reqprio;
	unsigned int aio_fildes;
	unsigned long long aio_buf, aio_nbytes;
	long long aio_offset;
	unsigned long long aio_reserved2;
	unsigned int aio_flags, aio_resfd;
};

static void dirty(struct iocb *io)
{
	memset(io, 0xa5, sizeof *io);
}

static struct kernel_iocb expect_rw(int op, int fd, const void *buf, unsigned long long n,
				    long long off, unsigned rwflags)
{
	struct kernel_iocb k;
	memset(&k, 0, sizeof k);
	k.aio_lio_opcode = (unsigned short)op;
	k.aio_fildes = (unsigned)fd;
	k.aio_buf = (unsigned long long)(unsigned long)buf;
	k.aio_nbytes = n;
	k.aio_offset = off;
	k.aio_rw_flags = rwflags;
	return k;
}

#define CHECK_IOCB(io, k)                                                            \
	do {                                                                         \
		CHECK(sizeof(io) == sizeof(k) && memcmp(&(io), &(k), sizeof(k)) == 0); \
		CHECK_EQ((io).aio_lio_opcode, (k).aio_lio_opcode);                   \
		CHECK_EQ((io).aio_fildes, (int)(k).aio_fildes);                      \
		CHECK_EQ((unsigned long)(io).u.c.buf, (k).aio_buf);                  \
		CHECK_EQ((io).u.c.nbytes, (k).aio_nbytes);                           \
		CHECK_EQ((io).u.c.offset, (k).aio_offset);                           \
		CHECK_EQ((io).aio_rw_flags, (k).aio_rw_flags);                       \
		CHECK_EQ((io).key, 0);                                               \
		CHECK_EQ((io).aio_reqprio, 0);                                       \
		CHECK((io).data == NULL);                                            \
		CHECK_EQ((io).u.c.flags, 0);                                         \
		CHECK_EQ((io).u.c.resfd, 0);                                         \
		CHECK_EQ((io).u.c.__pad3, 0);                                        \
	} while (0)

static void cb_fn(io_context_t c, struct iocb *i, long r, long r2)
{
	(void)c;
	(void)i;
	(void)r;
	(void)r2;
}

int main(void)
{
	struct iocb io;
	struct kernel_iocb k;
	struct iovec iov[2];
	char buf[16];

	/* Layout: each field at the kernel's offset. */
	CHECK_EQ(sizeof(struct iocb), sizeof(struct kernel_iocb));
	CHECK_EQ(offsetof(struct iocb, data), offsetof(struct kernel_iocb, aio_data));
	CHECK_EQ(offsetof(struct iocb, key), offsetof(struct kernel_iocb, aio_key));
	CHECK_EQ(offsetof(struct iocb, aio_rw_flags), offsetof(struct kernel_iocb, aio_rw_flags));
	CHECK_EQ(offsetof(struct iocb, aio_lio_opcode), offsetof(struct kernel_iocb, aio_lio_opcode));
	CHECK_EQ(offsetof(struct iocb, aio_reqprio), offsetof(struct kernel_iocb, aio_reqprio));
	CHECK_EQ(offsetof(struct iocb, aio_fildes), offsetof(struct kernel_iocb, aio_fildes));
	CHECK_EQ(offsetof(struct iocb, u.c.buf), offsetof(struct kernel_iocb, aio_buf));
	CHECK_EQ(offsetof(struct iocb, u.c.nbytes), offsetof(struct kernel_iocb, aio_nbytes));
	CHECK_EQ(offsetof(struct iocb, u.c.offset), offsetof(struct kernel_iocb, aio_offset));
	CHECK_EQ(offsetof(struct iocb, u.c.__pad3), offsetof(struct kernel_iocb, aio_reserved2));
	CHECK_EQ(offsetof(struct iocb, u.c.flags), offsetof(struct kernel_iocb, aio_flags));
	CHECK_EQ(offsetof(struct iocb, u.c.resfd), offsetof(struct kernel_iocb, aio_resfd));
	CHECK_EQ(offsetof(struct iocb, u.v.vec), offsetof(struct kernel_iocb, aio_buf));
	CHECK_EQ(offsetof(struct iocb, u.v.nr), offsetof(struct kernel_iocb, aio_nbytes));
	CHECK_EQ(offsetof(struct iocb, u.v.offset), offsetof(struct kernel_iocb, aio_offset));
	CHECK_EQ(offsetof(struct iocb, u.poll.events), offsetof(struct kernel_iocb, aio_buf));
	CHECK_EQ(sizeof(struct io_event), 32);
	CHECK_EQ(offsetof(struct io_event, obj), 8);
	CHECK_EQ(offsetof(struct io_event, res), 16);
	CHECK_EQ(offsetof(struct io_event, res2), 24);

	dirty(&io);
	io_prep_pread(&io, 3, buf, 16, 4096);
	k = expect_rw(IO_CMD_PREAD, 3, buf, 16, 4096, 0);
	CHECK_IOCB(io, k);

	dirty(&io);
	io_prep_pwrite(&io, 4, buf, (size_t)1 << 40, -1);
	k = expect_rw(IO_CMD_PWRITE, 4, buf, (size_t)1 << 40, -1, 0);
	CHECK_IOCB(io, k);

	dirty(&io);
	io_prep_preadv(&io, 5, iov, 2, 512);
	k = expect_rw(IO_CMD_PREADV, 5, iov, 2, 512, 0);
	CHECK_IOCB(io, k);
	CHECK(io.u.v.vec == iov && io.u.v.nr == 2);

	dirty(&io);
	io_prep_pwritev(&io, 6, iov, 1, 0);
	k = expect_rw(IO_CMD_PWRITEV, 6, iov, 1, 0, 0);
	CHECK_IOCB(io, k);

	/* A negative iovcnt is sign-extended into nbytes, as libaio's inline does. */
	dirty(&io);
	io_prep_preadv(&io, 5, iov, -1, 0);
	k = expect_rw(IO_CMD_PREADV, 5, iov, (unsigned long long)-1LL, 0, 0);
	CHECK_IOCB(io, k);

	dirty(&io);
	io_prep_preadv2(&io, 7, iov, 2, 8, RWF_NOWAIT | RWF_HIPRI);
	k = expect_rw(IO_CMD_PREADV, 7, iov, 2, 8, RWF_NOWAIT | RWF_HIPRI);
	CHECK_IOCB(io, k);

	dirty(&io);
	io_prep_pwritev2(&io, 8, iov, 2, 8, RWF_DSYNC);
	k = expect_rw(IO_CMD_PWRITEV, 8, iov, 2, 8, RWF_DSYNC);
	CHECK_IOCB(io, k);
	dirty(&io);
	io_prep_pwritev2(&io, 8, iov, 2, 8, -1);
	k = expect_rw(IO_CMD_PWRITEV, 8, iov, 2, 8, 0xffffffffu);
	CHECK_IOCB(io, k);

	/* The PI commands of this library. */
	CHECK_EQ(IO_CMD_PREADVM, 9);
	CHECK_EQ(IO_CMD_PWRITEVM, 10);
	dirty(&io);
	io_prep_preadvm(&io, 9, iov, 2, 4096);
	k = expect_rw(IO_CMD_PREADVM, 9, iov, 2, 4096, 0);
	CHECK_IOCB(io, k);
	dirty(&io);
	io_prep_pwritevm(&io, 10, iov, 2, 4096);
	k = expect_rw(IO_CMD_PWRITEVM, 10, iov, 2, 4096, 0);
	CHECK_IOCB(io, k);

	dirty(&io);
	io_prep_fsync(&io, 11);
	k = expect_rw(IO_CMD_FSYNC, 11, NULL, 0, 0, 0);
	CHECK_IOCB(io, k);
	dirty(&io);
	io_prep_fdsync(&io, 12);
	k = expect_rw(IO_CMD_FDSYNC, 12, NULL, 0, 0, 0);
	CHECK_IOCB(io, k);

	/* Poll: events in the low half of aio_buf (little endian). */
	dirty(&io);
	io_prep_poll(&io, 13, POLLIN | POLLPRI);
	k = expect_rw(IO_CMD_POLL, 13, NULL, 0, 0, 0);
	k.aio_buf = POLLIN | POLLPRI;
	CHECK_IOCB(io, k);
	CHECK_EQ(io.u.poll.events, POLLIN | POLLPRI);

	/* io_set_callback: only data changes. */
	io_prep_pread(&io, 3, buf, 16, 4096);
	io_set_callback(&io, cb_fn);
	k = expect_rw(IO_CMD_PREAD, 3, buf, 16, 4096, 0);
	k.aio_data = (unsigned long long)(unsigned long)(void *)cb_fn;
	CHECK(memcmp(&io, &k, sizeof k) == 0);
	io_set_callback(&io, NULL);
	k.aio_data = 0;
	CHECK(memcmp(&io, &k, sizeof k) == 0);

	/* io_set_eventfd: ORs IOCB_FLAG_RESFD (keeps other flag bits) and sets resfd. */
	io.u.c.flags = 2;
	io_set_eventfd(&io, 99);
	k.aio_flags = 3;
	k.aio_resfd = 99;
	CHECK(memcmp(&io, &k, sizeof k) == 0);
	CHECK_EQ(io.u.c.flags, 3);
	CHECK_EQ(io.u.c.resfd, 99);
	io_set_eventfd(&io, 5);
	CHECK_EQ(io.u.c.flags, 3);
	CHECK_EQ(io.u.c.resfd, 5);

	/* A NULL iocb is ignored (libaio's inlines would crash). */
	io_prep_pread(NULL, 1, buf, 1, 0);
	io_prep_pwrite(NULL, 1, buf, 1, 0);
	io_prep_preadv(NULL, 1, iov, 1, 0);
	io_prep_pwritev(NULL, 1, iov, 1, 0);
	io_prep_preadv2(NULL, 1, iov, 1, 0, 0);
	io_prep_pwritev2(NULL, 1, iov, 1, 0, 0);
	io_prep_preadvm(NULL, 1, iov, 1, 0);
	io_prep_pwritevm(NULL, 1, iov, 1, 0);
	io_prep_fsync(NULL, 1);
	io_prep_fdsync(NULL, 1);
	io_prep_poll(NULL, 1, POLLIN);
	io_set_callback(NULL, cb_fn);
	io_set_eventfd(NULL, 1);
	printf("NULL iocbs ignored by every io_prep_*/io_set_* helper\n");
	return ctest_finish();
}
