#include "core/fdio.h"

#include <errno.h>
#include <unistd.h>

/* off < 0: write(2) at the file offset; else pwrite(2) at off. */
static int write_all_at(int fd, const void *p, size_t n, off_t off)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = off < 0 ? write(fd, c, n) : pwrite(fd, c, n, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
		if (off >= 0)
			off += w;
	}
	return 0;
}

int fdio_write_all(int fd, const void *p, size_t n)
{
	return write_all_at(fd, p, n, -1);
}

int fdio_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
	return off < 0 ? (errno = EINVAL, -1) : write_all_at(fd, p, n, off);
}
