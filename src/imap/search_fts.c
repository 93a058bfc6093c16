/* The index query of a SEARCH program (search_fts.h). A key narrows when
 * every message it matches is among the index's answer: a text key (RFC
 * 9051 6.4.4 BODY, TEXT, SUBJECT, FROM, TO, CC, BCC, HEADER) with a needle
 * of at least three characters (trigrams); AND narrows if any of its keys
 * does, OR only if all do; NOT and the other keys never narrow (the index
 * can say "may contain", never "does not"), nor does HEADER naming a
 * signature field (mime_extract_unindexed: its values are not indexed). */
#include "imap/search_fts.h"

#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "mime/extract.h"

static void q_clear(struct store_fts_q *q)
{
	for (size_t i = 0; i < q->n_sub; i++)
		q_clear(&q->sub[i]);
	free(q->sub);
	free(q->needle);
}

static unsigned key_cols(const struct imap_search_key *k)
{
	static const struct {
		const char *name;
		int col;
	} fields[] = {{"FROM", STORE_FTS_FROM},
		      {"TO", STORE_FTS_TO},
		      {"CC", STORE_FTS_CC},
		      {"BCC", STORE_FTS_BCC}};
	switch (k->kind) {
	case IMAP_SK_BODY:
		return 1u << STORE_FTS_BODY;
	case IMAP_SK_TEXT:
		return 1u << STORE_FTS_BODY | 1u << STORE_FTS_HDR;
	case IMAP_SK_HEADER:
		if (k->str2 == NULL)
			return 0;
		if (k->flags & IMAP_SK_F_ADDRESS) {
			for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
				if (strcasecmp(k->str2, fields[i].name) == 0)
					return 1u << fields[i].col;
			return 0;
		}
		if (strcasecmp(k->str2, "Subject") == 0)
			return 1u << STORE_FTS_SUBJECT;
		if (mime_extract_unindexed(k->str2))
			return 0; /* not whole in the index: the scan answers */
		return 1u << STORE_FTS_HDR; /* "Name: value" of every field */
	default:
		return 0;
	}
}

/* Fills q for k: true if it narrows. */
static bool build(const struct imap_search_key *k, struct store_fts_q *q)
{
	memset(q, 0, sizeof *q);
	if (k->kind == IMAP_SK_AND || k->kind == IMAP_SK_OR) {
		bool and = k->kind == IMAP_SK_AND;
		q->op = and ? STORE_FTS_AND : STORE_FTS_OR;
		q->sub = xcalloc(k->n_sub ? k->n_sub : 1, sizeof *q->sub);
		for (size_t i = 0; i < k->n_sub; i++) {
			if (build(&k->sub[i], &q->sub[q->n_sub])) {
				q->n_sub++;
			} else if (!and) {
				q_clear(q);
				memset(q, 0, sizeof *q);
				return false;
			}
		}
		if (q->n_sub == 0) {
			q_clear(q);
			memset(q, 0, sizeof *q);
			return false;
		}
		return true;
	}
	unsigned cols = key_cols(k);
	struct buf folded = BUF_INIT;
	if (cols == 0 || k->str == NULL || !mime_extract_needle(k->str, &folded) ||
	    folded.len < STORE_FTS_MIN_NEEDLE) {
		buf_free(&folded);
		return false;
	}
	q->op = STORE_FTS_TERM;
	q->cols = cols;
	q->needle = xstrdup(folded.data);
	buf_free(&folded);
	return true;
}

struct store_fts_q *imap_search_fts_query(const struct imap_search *s)
{
	struct store_fts_q *q = xcalloc(1, sizeof *q);
	if (!build(&s->root, q)) {
		free(q);
		return NULL;
	}
	return q;
}

void imap_search_fts_free(struct store_fts_q **qp)
{
	if (*qp == NULL)
		return;
	q_clear(*qp);
	free(*qp);
	*qp = NULL;
}
