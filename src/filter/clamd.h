/* Virus scanning with clamd (Debian clamav-daemon) over its INSTREAM
 * protocol ("zINSTREAM\0", then 4-byte big-endian length + chunk, ..., a
 * zero length; the answer "stream: OK" or "stream: NAME FOUND"); up to
 * 256 KiB on a unix socket, FILDES at the end over a kept IDSESSION
 * connection (clamd.c). INSTREAM: one connection per message, opened at the
 * first content byte, non-blocking on the loop; the message streams to clamd as it is received (at most
 * clamd_max_size: beyond it the scan is abandoned, the result "unscanned").
 * Output is bounded: when clamd reads slower than the client sends and more
 * than a high-water mark is queued, clamd_scan_feed returns true and the
 * caller pauses its input until resume runs. Owned by src/filter/clamd.c. */
#ifndef POSTERN_FILTER_CLAMD_H
#define POSTERN_FILTER_CLAMD_H
#include <stdbool.h>
#include <stddef.h>

struct loop;
struct config;

struct clamd;
/* NULL when clamd_socket is empty (no scanning); with *err_r set when it
 * cannot be parsed. */
struct clamd *clamd_new(struct loop *l, const struct config *cfg, char **err_r);
void clamd_free(struct clamd **cp);
/* INSTREAM only from now on, as after a clamd refused FILDES (the unit
 * tests use it to speak INSTREAM to their fake clamd on a unix socket). */
void clamd_instream_only(struct clamd *c);

enum clamd_status {
	CLAMD_CLEAN,
	CLAMD_INFECTED,  /* name: the signature ("Eicar-Signature") */
	CLAMD_UNSCANNED, /* larger than clamd_max_size (logged) */
	CLAMD_ERROR,     /* down, timeout, protocol error: clamd_failure decides */
};
struct clamd_result {
	enum clamd_status status;
	const char *name; /* INFECTED: the signature; ERROR: what went wrong */
};
typedef void clamd_cb(void *arg, const struct clamd_result *r);

struct clamd_scan;
struct clamd_scan *clamd_scan_new(struct clamd *c);
/* The message's bytes in order. true: pause input until resume(arg) (once). */
bool clamd_scan_feed(struct clamd_scan *s, const char *p, size_t n, void (*resume)(void *arg),
		     void *arg);
/* The last byte was fed: cb once, later, on the loop (within clamd_timeout). */
void clamd_scan_end(struct clamd_scan *s, clamd_cb *cb, void *arg);
/* Cancels (no callback after this), closes, frees. */
void clamd_scan_free(struct clamd_scan **sp);

#endif
