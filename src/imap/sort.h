/* SORT (RFC 5256 3, RFC 5957, RFC 5267 ESORT/CONTEXT=SORT): the sort keys
 * of a message and their order (sort.c). The search engine (searchcmd.c)
 * reads the view in slices on workers and, for SORT, asks
 * imap_sort_row_fill for each matching message's keys there; the rows are
 * sorted on a worker (imap_sort_rows) before the response is written. */
#ifndef POSTERN_IMAP_SORT_H
#define POSTERN_IMAP_SORT_H
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "imap/fetch.h"
#include "imap/parse.h"

struct imap_session;

/* string keys, each the i;unicode-casemap key (RFC 5051) of the value */
enum { SORTS_SUBJECT, SORTS_FROM, SORTS_TO, SORTS_CC, SORTS_DFROM, SORTS_DTO, SORTS_N };

struct imap_sort_row {
	uint32_t uid, seq;
	uint64_t size, modseq;
	int64_t arrival, date;
	char *str[SORTS_N]; /* only those the criteria use, else NULL */
};

/* true if the criteria need the message's MIME cache (header keys) */
bool imap_sort_needs_cache(const struct imap_search *q);
/* The keys of m (on a worker; m->mc set when imap_sort_needs_cache). */
void imap_sort_row_fill(const struct imap_search *q, const struct imap_msg *m,
			struct imap_sort_row *r);
/* Sorts rows by the criteria, ties by sequence number (RFC 5256 3). */
void imap_sort_rows(const struct imap_search *q, struct imap_sort_row *rows, size_t n);
void imap_sort_row_free(struct imap_sort_row *r);
/* A sequence-set of numbers in the given order (RFC 5267 3: the sorted
 * result), ascending runs written as a:b ("5,3:4,2,1"). */
void imap_sort_format_set(struct buf *out, const uint32_t *v, size_t n);

/* SEARCH / SORT (searchcmd.c): parses args and runs the search. */
void imap_search_cmd(struct imap_session *s, const struct imap_arg *args, bool sort);

#endif
