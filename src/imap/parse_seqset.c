/* Sequence sets (RFC 9051 9: sequence-set, seq-range; RFC 5182 "$"). */
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "imap/parse.h"
#include "imap/parse_int.h"

static int range_cmp(const void *a, const void *b)
{
	const struct imap_range *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* Sorts and merges overlapping or adjacent ranges. */
static void normalise(struct imap_seqset *set)
{
	if (set->n < 2)
		return;
	qsort(set->v, set->n, sizeof *set->v, range_cmp);
	size_t o = 0;
	for (size_t i = 1; i < set->n; i++) {
		struct imap_range *last = &set->v[o];
		if (last->hi == UINT32_MAX || set->v[i].lo <= last->hi + 1) {
			if (set->v[i].hi > last->hi)
				last->hi = set->v[i].hi;
		} else {
			set->v[++o] = set->v[i];
		}
	}
	set->n = o + 1;
}

/* seq-number = nz-number / "*" */
static bool seq_number(const char *s, size_t len, uint32_t *n_r)
{
	uint64_t v;
	if (len == 1 && s[0] == '*') {
		*n_r = IMAP_STAR;
		return true;
	}
	/* nz-number: no leading zero (RFC 9051 9: nz-number = digit-nz *DIGIT) */
	if (len == 0 || s[0] == '0' || !imap_parse_u64(s, len, UINT32_MAX, &v))
		return false;
	/* 4294967295 is a valid number but our "*": no UID ever gets that
	 * high (store UIDs stay far below), so it stands for the one below. */
	*n_r = v == UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)v;
	return true;
}

int imap_seqset_parse(const char *s, size_t len, size_t max_ranges, struct imap_seqset *set)
{
	memset(set, 0, sizeof *set);
	if (len == 1 && s[0] == '$') {
		set->dollar = true;
		return 0;
	}
	size_t n = 1;
	for (size_t i = 0; i < len; i++)
		if (s[i] == ',')
			n++;
	if (len == 0 || (max_ranges > 0 && n > max_ranges))
		return -1;
	set->v = xmalloc(n * sizeof *set->v);
	size_t i = 0;
	while (i <= len) {
		size_t e = i;
		while (e < len && s[e] != ',')
			e++;
		const char *colon = memchr(s + i, ':', e - i);
		uint32_t lo, hi;
		if (colon == NULL) {
			if (!seq_number(s + i, e - i, &lo))
				goto fail;
			hi = lo;
		} else {
			size_t c = (size_t)(colon - s);
			if (!seq_number(s + i, c - i, &lo) ||
			    !seq_number(s + c + 1, e - c - 1, &hi))
				goto fail;
		}
		/* "5:3" is "3:5" (RFC 9051 9, seq-range) */
		set->v[set->n].lo = lo < hi ? lo : hi;
		set->v[set->n].hi = lo < hi ? hi : lo;
		set->n++;
		if (e == len)
			break;
		i = e + 1;
	}
	normalise(set);
	return 0;
fail:
	imap_seqset_free(set);
	return -1;
}

void imap_seqset_resolve(struct imap_seqset *set, uint32_t max)
{
	size_t o = 0;
	for (size_t i = 0; i < set->n; i++) {
		struct imap_range r = set->v[i];
		if (r.hi == IMAP_STAR) {
			/* "*" is the largest number in use; "5:*" with max 3 is
			 * "3:5" (RFC 9051 6.4.8). Nothing is in use when max 0. */
			if (max == 0)
				continue;
			r.hi = max;
			if (r.lo == IMAP_STAR)
				r.lo = max;
			if (r.lo > r.hi) {
				uint32_t t = r.lo;
				r.lo = r.hi;
				r.hi = t;
			}
		}
		set->v[o++] = r;
	}
	set->n = o;
	normalise(set);
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n)
{
	size_t lo = 0, hi = set->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (set->v[mid].hi < n)
			lo = mid + 1;
		else if (set->v[mid].lo > n)
			hi = mid;
		else
			return true;
	}
	return false;
}

void imap_seqset_free(struct imap_seqset *set)
{
	x_free(&set->v);
	set->n = 0;
	set->dollar = false;
}

void imap_seqset_format(struct buf *out, const uint32_t *v, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		if (i > 0)
			buf_appendc(out, ',');
		buf_append_u64(out, v[i]);
		if (j > i) {
			buf_appendc(out, ':');
			buf_append_u64(out, v[j]);
		}
		i = j + 1;
	}
}
