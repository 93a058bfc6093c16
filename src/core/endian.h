/* Integers in a fixed byte order, for the formats postern writes (the MIME
 * cache, sort and thread keys, kept SORT orders: little-endian) and the
 * protocols it speaks (DNS, milter: network order). Octet by octet, so the
 * pointer needs no alignment and the host's order does not matter. */
#ifndef POSTERN_CORE_ENDIAN_H
#define POSTERN_CORE_ENDIAN_H

#include <stdint.h>

static inline uint16_t le16_get(const void *v)
{
	const unsigned char *p = v;
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t le32_get(const void *v)
{
	const unsigned char *p = v;
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le64_get(const void *v)
{
	const unsigned char *p = v;
	return (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
}

static inline void le32_put(void *v, uint32_t x)
{
	unsigned char *p = v;
	p[0] = (unsigned char)x;
	p[1] = (unsigned char)(x >> 8);
	p[2] = (unsigned char)(x >> 16);
	p[3] = (unsigned char)(x >> 24);
}

static inline void le64_put(void *v, uint64_t x)
{
	unsigned char *p = v;
	le32_put(p, (uint32_t)x);
	le32_put(p + 4, (uint32_t)(x >> 32));
}

static inline uint16_t be16_get(const void *v)
{
	const unsigned char *p = v;
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be32_get(const void *v)
{
	const unsigned char *p = v;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void be32_put(void *v, uint32_t x)
{
	unsigned char *p = v;
	p[0] = (unsigned char)(x >> 24);
	p[1] = (unsigned char)(x >> 16);
	p[2] = (unsigned char)(x >> 8);
	p[3] = (unsigned char)x;
}

#endif
