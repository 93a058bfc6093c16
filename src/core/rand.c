#include "core/rand.h"

#include <stdbool.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static __thread uint64_t rand_state;
static __thread bool rand_seeded;

uint64_t rand_u64(void)
{
	if (!rand_seeded) {
		if (getrandom(&rand_state, sizeof rand_state, GRND_NONBLOCK) !=
		    (ssize_t)sizeof rand_state) {
			/* no entropy yet (early boot): distinct per thread
			 * and per start, which is all these names need */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			rand_state = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
			rand_state ^= (uint64_t)gettid() << 32 ^ (uint64_t)getpid();
		}
		rand_seeded = true;
	}
	/* splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom
	 * number generators", 2014) */
	uint64_t z = (rand_state += 0x9E3779B97F4A7C15u);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
	return z ^ (z >> 31);
}

uint32_t rand_u32(void)
{
	return (uint32_t)(rand_u64() >> 32);
}
