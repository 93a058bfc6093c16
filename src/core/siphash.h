/* SipHash-2-4 (Aumasson, Bernstein 2012): a keyed hash for the in-memory
 * tables that clients fill (throttles, greylisting), so that a client who
 * does not know the key cannot aim its keys at one bucket. The input is
 * read as little-endian words as the reference does (host order here: the
 * hash never leaves the process; x86 and arm64 hosts give the reference's
 * values). */
#ifndef POSTERN_CORE_SIPHASH_H
#define POSTERN_CORE_SIPHASH_H
#include <stddef.h>
#include <stdint.h>

uint64_t siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len);
/* A random key (getrandom; fatal if the kernel cannot give one). */
void siphash_key(uint64_t *k0, uint64_t *k1);

#endif
