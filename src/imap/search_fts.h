/* SEARCH and the full-text index (store.h, "the full-text index"): the
 * query that narrows a SEARCH program to candidate messages. Pure. */
#ifndef POSTERN_IMAP_SEARCH_FTS_H
#define POSTERN_IMAP_SEARCH_FTS_H
#include "imap/parse.h"
#include "store/store.h"

/* The index query implied by s (every message s matches also matches the
 * query), or NULL if the index cannot narrow it (no text key of at least
 * STORE_FTS_MIN_NEEDLE characters in a position that narrows, such as
 * under NOT). Free with imap_search_fts_free. */
struct store_fts_q *imap_search_fts_query(const struct imap_search *s);
void imap_search_fts_free(struct store_fts_q **qp);

#endif
