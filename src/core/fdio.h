/* Blocking writes to a file descriptor. Thread-safe (no state). */
#ifndef POSTERN_CORE_FDIO_H
#define POSTERN_CORE_FDIO_H
#include <stddef.h>
#include <sys/types.h>

/* Writes all n octets of p to fd, going on after a short write and after
 * EINTR. For blocking descriptors (files, memfds): EAGAIN is an error like
 * any other. 0, or -1 with errno set (some octets may have been written). */
int fdio_write_all(int fd, const void *p, size_t n);
/* The same at offset off (pwrite(2)): the file offset is left alone. */
int fdio_pwrite_all(int fd, const void *p, size_t n, off_t off);

#endif
