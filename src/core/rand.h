/* Cheap random numbers for names that must not repeat (transaction ids,
 * spool file names, Message-IDs): a generator per thread (splitmix64),
 * seeded once from getrandom(2). A getrandom call per number was three
 * system calls per accepted message on the loop thread.
 *
 * Not for secrets: keys, salts and tokens come from getrandom(2) or
 * RAND_bytes directly. */
#ifndef POSTERN_CORE_RAND_H
#define POSTERN_CORE_RAND_H
#include <stdint.h>

uint64_t rand_u64(void);
uint32_t rand_u32(void);

#endif
