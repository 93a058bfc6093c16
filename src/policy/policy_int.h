/* Private to src/policy/policy.c and authres.c: the pure parts of policy,
 * unit tested in tests/unit/authres. */
#ifndef POSTERN_POLICY_POLICY_INT_H
#define POSTERN_POLICY_POLICY_INT_H
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* ---- the forged Authentication-Results filter (RFC 8601 5) ----
 * Fed the message in pieces; hands on every byte but those of header fields
 * named Authentication-Results whose authserv-id (the first token of the
 * value, after CFWS; a quoted-string counts too) equals id, ASCII
 * case-insensitively. Only the header section is looked at; the body passes
 * as is. A field is held back only until that is decided (at most
 * AR_HOLD_MAX octets: a field whose authserv-id is not known by then
 * passes); everything else passes byte-exact. */
#define AR_HOLD_MAX 1024
typedef void ar_out_fn(void *arg, const char *p, size_t n);
struct ar_filter {
	char *id;
	int state;
	bool dropping; /* the current field is dropped (continuations too) */
	size_t hlen;
	size_t pos; /* where the held field's scan got to (authres.c decide_from) */
	int depth;  /* the comment nesting there */
	char hold[AR_HOLD_MAX];
	size_t dropped; /* fields dropped so far */
};
void ar_filter_init(struct ar_filter *f, const char *id);
void ar_filter_feed(struct ar_filter *f, const char *p, size_t n, ar_out_fn *out, void *arg);
/* The end of the message: what is held is handed on. */
void ar_filter_end(struct ar_filter *f, ar_out_fn *out, void *arg);
void ar_filter_free(struct ar_filter *f);
/* Pure: the decision on a held field start. 1 drop, 0 pass, -1 need more. */
int ar_filter_decide(const char *h, size_t n, const char *id);

/* ---- RFC 5322 From: ----
 * The domains of the addresses in a From field's value (lowercase, distinct,
 * at most max), skipping comments, quoted strings and display names. Returns
 * how many were found (up to max) into v (heap strings). */
size_t authres_from_domains(const char *value, size_t len, char **v, size_t max);

/* ---- Authentication-Results (RFC 8601) ---- */
/* Appends a pvalue (RFC 8601 2.2): as is when it is a token or a
 * domain/address of atext and dots, else a quoted-string. */
void authres_value(struct buf *b, const char *v);
/* Appends " (text)": a comment with ( ) \ escaped and controls dropped. */
void authres_comment(struct buf *b, const char *text);
/* The field from authserv_id and the resinfo strings (each "method=result
 * ..."), folded one resinfo a line; "none" when n is 0. CRLF ended. */
void authres_field(struct buf *out, const char *authserv_id, const char *const *res, size_t n);

#endif
