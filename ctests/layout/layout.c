/*
 * Prints the layout of every type in libaio.h: sizeof/alignof of each
 * struct, offsetof/sizeof/signedness of each field, the IO_CMD_* values,
 * and checks every function's type at compile time.  tests/header.rs
 * builds it against include/libaio.h and against /usr/include/libaio.h and
 * requires identical output.  Not run by tests/ctests.rs (it lives in a
 * subdirectory).
 */
/* The signedness probe compares unsigned values with 0 on purpose. */
#pragma GCC diagnostic ignored "-Wtype-limits"

#include <libaio.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/uio.h>

#define TYPE(t) printf("%-26s size %2zu align %zu\n", #t, sizeof(t), _Alignof(t))
#define FIELD_(t, f, sign)                                                          \
	printf("%-26s %-16s offset %2zu size %zu %s\n", #t, #f, offsetof(t, f),        \
	       sizeof(((t *)0)->f), sign)
/* An integer field, with its signedness. */
#define INT(t, f) FIELD_(t, f, (__typeof__(((t *)0)->f))-1 < 0 ? "signed" : "unsigned")
/* A pointer (or aggregate) field. */
#define PTR(t, f) FIELD_(t, f, "-")

#define SAME_TYPE(fn, type)                                                         \
	_Static_assert(__builtin_types_compatible_p(__typeof__(fn), type), #fn " has type " #type)

SAME_TYPE(io_queue_init, int(int, io_context_t *));
SAME_TYPE(io_queue_release, int(io_context_t));
SAME_TYPE(io_queue_run, int(io_context_t));
SAME_TYPE(io_setup, int(int, io_context_t *));
SAME_TYPE(io_destroy, int(io_context_t));
SAME_TYPE(io_submit, int(io_context_t, long, struct iocb **));
SAME_TYPE(io_cancel, int(io_context_t, struct iocb *, struct io_event *));
SAME_TYPE(io_getevents, int(io_context_t, long, long, struct io_event *, struct timespec *));
SAME_TYPE(io_pgetevents,
	  int(io_context_t, long, long, struct io_event *, struct timespec *, sigset_t *));
SAME_TYPE(io_set_callback, void(struct iocb *, io_callback_t));
SAME_TYPE(io_prep_pread, void(struct iocb *, int, void *, size_t, long long));
SAME_TYPE(io_prep_pwrite, void(struct iocb *, int, void *, size_t, long long));
SAME_TYPE(io_prep_preadv, void(struct iocb *, int, const struct iovec *, int, long long));
SAME_TYPE(io_prep_pwritev, void(struct iocb *, int, const struct iovec *, int, long long));
SAME_TYPE(io_prep_preadv2, void(struct iocb *, int, const struct iovec *, int, long long, int));
SAME_TYPE(io_prep_pwritev2, void(struct iocb *, int, const struct iovec *, int, long long, int));
SAME_TYPE(io_prep_poll, void(struct iocb *, int, int));
SAME_TYPE(io_poll, int(io_context_t, struct iocb *, io_callback_t, int, int));
SAME_TYPE(io_prep_fsync, void(struct iocb *, int));
SAME_TYPE(io_fsync, int(io_context_t, struct iocb *, io_callback_t, int));
SAME_TYPE(io_prep_fdsync, void(struct iocb *, int));
SAME_TYPE(io_fdsync, int(io_context_t, struct iocb *, io_callback_t, int));
SAME_TYPE(io_set_eventfd, void(struct iocb *, int));
SAME_TYPE(io_callback_t, void (*)(io_context_t, struct iocb *, long, long));
SAME_TYPE(io_context_t, struct io_context *);
#ifdef LIBAIO_RS_OURS
SAME_TYPE(io_prep_preadvm, void(struct iocb *, int, const struct iovec *, int, long long));
SAME_TYPE(io_prep_pwritevm, void(struct iocb *, int, const struct iovec *, int, long long));
#endif

int main(void)
{
	TYPE(io_context_t);
	TYPE(io_callback_t);
	TYPE(io_iocb_cmd_t);
	printf("io_iocb_cmd_t is %s\n", (io_iocb_cmd_t)-1 < 0 ? "signed" : "unsigned");
	printf("IO_CMD_PREAD %d\n", IO_CMD_PREAD);
	printf("IO_CMD_PWRITE %d\n", IO_CMD_PWRITE);
	printf("IO_CMD_FSYNC %d\n", IO_CMD_FSYNC);
	printf("IO_CMD_FDSYNC %d\n", IO_CMD_FDSYNC);
	printf("IO_CMD_POLL %d\n", IO_CMD_POLL);
	printf("IO_CMD_NOOP %d\n", IO_CMD_NOOP);
	printf("IO_CMD_PREADV %d\n", IO_CMD_PREADV);
	printf("IO_CMD_PWRITEV %d\n", IO_CMD_PWRITEV);

	TYPE(struct io_iocb_poll);
	INT(struct io_iocb_poll, events);
	INT(struct io_iocb_poll, __pad1);

	TYPE(struct io_iocb_sockaddr);
	PTR(struct io_iocb_sockaddr, addr);
	INT(struct io_iocb_sockaddr, len);

	TYPE(struct io_iocb_common);
	PTR(struct io_iocb_common, buf);
	INT(struct io_iocb_common, nbytes);
	INT(struct io_iocb_common, offset);
	INT(struct io_iocb_common, __pad3);
	INT(struct io_iocb_common, flags);
	INT(struct io_iocb_common, resfd);

	TYPE(struct io_iocb_vector);
	PTR(struct io_iocb_vector, vec);
	INT(struct io_iocb_vector, nr);
	INT(struct io_iocb_vector, offset);

	TYPE(struct iocb);
	PTR(struct iocb, data);
	INT(struct iocb, key);
	INT(struct iocb, aio_rw_flags);
	INT(struct iocb, aio_lio_opcode);
	INT(struct iocb, aio_reqprio);
	INT(struct iocb, aio_fildes);
	PTR(struct iocb, u);
	printf("%-26s size %2zu align %zu\n", "iocb.u", sizeof(((struct iocb *)0)->u),
	       _Alignof(__typeof__(((struct iocb *)0)->u)));
	PTR(struct iocb, u.c);
	PTR(struct iocb, u.v);
	PTR(struct iocb, u.poll);
	PTR(struct iocb, u.saddr);
	PTR(struct iocb, u.c.buf);
	INT(struct iocb, u.c.nbytes);
	INT(struct iocb, u.c.offset);
	INT(struct iocb, u.c.__pad3);
	INT(struct iocb, u.c.flags);
	INT(struct iocb, u.c.resfd);
	PTR(struct iocb, u.v.vec);
	INT(struct iocb, u.v.nr);
	INT(struct iocb, u.v.offset);
	INT(struct iocb, u.poll.events);
	INT(struct iocb, u.poll.__pad1);
	PTR(struct iocb, u.saddr.addr);
	INT(struct iocb, u.saddr.len);

	TYPE(struct io_event);
	PTR(struct io_event, data);
	PTR(struct io_event, obj);
	INT(struct io_event, res);
	INT(struct io_event, res2);

	TYPE(struct io_sigset);
	INT(struct io_sigset, ss);
	INT(struct io_sigset, ss_len);

	TYPE(struct io_sigset_compat);
	INT(struct io_sigset_compat, ss);
	INT(struct io_sigset_compat, ss_len);

#ifdef LIBAIO_RS_OURS
	/* Only in our header: checked by the test, not compared. */
	printf("ours: IO_CMD_PREADVM %d\n", IO_CMD_PREADVM);
	printf("ours: IO_CMD_PWRITEVM %d\n", IO_CMD_PWRITEVM);
#endif
	return 0;
}
