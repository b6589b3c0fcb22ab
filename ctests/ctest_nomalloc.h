/*
 * ctest_nomalloc.h: malloc, calloc, realloc and free of a test program,
 * refused (abort()) while `no_malloc` is set.  After a raw fork of a
 * multi-threaded parent, malloc's lock may be held by a thread that does
 * not exist in the child, so the library's work there must not allocate
 * (an independent tester's t2_malloc_fork.c: 12 of 150 children hung in
 * malloc, called by the library's re-init).  Include from one test
 * program only (it defines the functions); the program's definitions
 * interpose on libc's, for the library too.
 */
#ifndef CTEST_NOMALLOC_H
#define CTEST_NOMALLOC_H

#include <stdlib.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static volatile int no_malloc;
void *malloc(size_t n)
{
	if (no_malloc)
		abort();
	return __libc_malloc(n);
}
void *calloc(size_t n, size_t m)
{
	if (no_malloc)
		abort();
	return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n)
{
	if (no_malloc)
		abort();
	return __libc_realloc(p, n);
}
void free(void *p)
{
	if (no_malloc)
		abort();
	__libc_free(p);
}

#endif /* CTEST_NOMALLOC_H */
