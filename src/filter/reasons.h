/* The reasons behind a filter verdict: every check that contributes to a
 * message's spam score (or refuses it) adds one reason with its rule name,
 * its weight and words a user understands. The list becomes the
 * X-Spam-Status / X-Spam-Report fields and what `postern mail explain`
 * shows. Shared by every part of src/filter (reasons.c). */
#ifndef POSTERN_FILTER_REASONS_H
#define POSTERN_FILTER_REASONS_H
#include <stdbool.h>
#include <stddef.h>
#include "core/buf.h"
#include "core/log.h" /* PRINTF_LIKE */

struct filter_reason {
	char *rule;  /* upper-case rule name: "DNSBL_ZEN_SPAMHAUS_ORG", "BAYES_99", "SPF_FAIL" */
	double score; /* its weight in the message's score (may be 0 or negative) */
	char *text;  /* one line of plain words: "client 192.0.2.1 is listed in zen.spamhaus.org" */
};

struct filter_reasons {
	struct filter_reason *v;
	size_t n, cap;
	double score; /* the sum of v[].score */
};
#define FILTER_REASONS_INIT {NULL, 0, 0, 0.0}

/* Adds one reason (rule and text copied; text is printf-formatted, its
 * control characters replaced by spaces, cut at 200 octets). */
void filter_reasons_add(struct filter_reasons *r, const char *rule, double score,
			const char *fmt, ...) PRINTF_LIKE(4, 5);
/* Appends every reason of from (copies). */
void filter_reasons_merge(struct filter_reasons *r, const struct filter_reasons *from);
void filter_reasons_free(struct filter_reasons *r);

/* Parses a score option ("5.0", "-1.5"; config.c checked it). */
double filter_score_parse(const char *s);

/* Appends the two header fields, CRLF-terminated and folded below 78
 * columns (RFC 5322 2.2.3), as SpamAssassin writes them:
 *   X-Spam-Status: Yes, score=7.3 required=5.0
 *   X-Spam-Report: score=7.3 required=5.0
 *   \t* 3.5 BAYES_99 the words of this message are typical of spam (99.9 %)
 *   \t* 2.0 DNSBL_ZEN_SPAMHAUS_ORG client 192.0.2.1 is listed in zen.spamhaus.org
 * reasons in the order of their weight, largest first. */
void filter_reasons_header(const struct filter_reasons *r, bool spam, double required,
			   struct buf *out);
/* Parses an X-Spam-Report field's value back into reasons (for `postern mail
 * explain`): 0, or -1 if it is not one. */
int filter_reasons_parse(const char *value, size_t len, struct filter_reasons *r);

#endif
