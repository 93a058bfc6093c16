/* The built-in statistical spam filter: tokens (words of the decoded text,
 * header tokens, URL hosts, the sender's domains) with per-user and global
 * counts of ham and spam messages, combined with Robinson's chi-square
 * method (Fisher's inverse chi-square of the most significant tokens, as
 * SpamBayes and SpamAssassin's Bayes). Trained when a user moves mail into
 * Junk (spam) or out of it to anywhere but Trash (ham), or sets the $Junk /
 * $NotJunk keywords, over IMAP; and by `postern spam train`. Each user's
 * counts are their own (one user cannot poison another's model); the global
 * model (user id 0) is trained by the admin and serves users with too
 * little training of their own. Every verdict keeps its reasons (the
 * strongest tokens both ways). Owned by src/filter/bayes.c, tokenize.c
 * (pure, fuzzed), src/store/spam.c, src/cli/spam.c. */
#ifndef POSTERN_FILTER_BAYES_H
#define POSTERN_FILTER_BAYES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "filter/reasons.h"

struct store;
struct store_snap;
struct pool;
struct loop;
struct config;

/* ---- tokens (pure; fuzzed) ---- */
struct bayes_token {
	uint64_t hash; /* what the store keeps */
	char *text;    /* the token, for reasons ("url:example.com", "subject:viagra") */
};
struct bayes_tokens {
	struct bayes_token *v; /* distinct, sorted by hash */
	size_t n;
	char *texts; /* one block holding every v[i].text (bayes_tokens_free) */
};
/* Tokenizes a whole message (header and body; MIME decoded: transfer
 * encodings, RFC 2047 words, charsets to UTF-8, HTML reduced to text;
 * attachments' names, not their content). Bounded: at most the first
 * 512 KiB of text and 5,000 distinct tokens. */
void bayes_tokenize(const char *msg, size_t len, struct bayes_tokens *out);
void bayes_tokens_free(struct bayes_tokens *t);

/* ---- the daemon's filter ---- */
struct bayes;
struct bayes *bayes_new(struct loop *l, struct store *st, struct pool *pool,
			const struct config *cfg, char **err_r);
/* Shutdown: the trainer starts no new batch; 1 while a batch is still in
 * flight (its worker read and commit complete on the loop: the drain waits
 * for them, else their memory is lost with the loop), else 0. */
int bayes_stop(struct bayes *b);
/* Stops the trainer (the training queue stays in the store for next time). */
void bayes_free(struct bayes **bp);

struct bayes_verdict {
	double prob;   /* 0 (ham) .. 1 (spam); 0.5 when the model knows too little */
	double score;  /* its points in the message's score (BAYES_xx rule) */
	struct filter_reasons reasons; /* the rule, and the strongest tokens */
	bool untrained; /* neither the user's nor the global model has enough data */
};
/* Classifies in the caller's read snapshot sn, on a worker (the filter's
 * spool job, which tokenized the message, classifies it and reads the
 * thresholds in one snapshot). v[i] for user_ids[i] (0 = the global model
 * alone), filled (bayes_verdict_free each); a failed read is logged and
 * gives untrained verdicts (bayes_unclassified). */
void bayes_classify(struct store_snap *sn, const struct bayes_tokens *t, const int64_t *user_ids,
		    size_t n, struct bayes_verdict *v);

/* ---- the classifier itself (pure) and a synchronous use for the CLI ---- */
struct bayes_counts {
	int64_t ham, spam; /* messages trained as such (holding the token) */
};
/* The verdict for t given c[i] (the counts of t->v[i]) and the model's
 * totals; model names it in the reason ("the global model"). v->reasons is
 * filled (bayes_verdict_free). Robinson f(w), s = 1, x = 0.5, the 150
 * strongest tokens with |f - 0.5| > 0.1, Fisher chi-square (bayes.c). */
/* v[0..n) untrained, no reasons (the filter goes on without the verdict):
 * for a message whose read snapshot could not start. */
void bayes_unclassified(struct bayes_verdict *v, size_t n);
void bayes_combine(const struct bayes_tokens *t, const struct bayes_counts *c,
		   struct bayes_counts total, const char *model, struct bayes_verdict *v);
/* Classifies t for user_id (0: global) with st's own connection (the CLI's
 * `postern spam classify`; the daemon uses bayes_classify). 0 or -1. */
int bayes_classify_sync(struct store *st, const struct bayes_tokens *t, int64_t user_id,
			struct bayes_verdict *v, char **err_r);
void bayes_verdict_free(struct bayes_verdict *v);
/* Keeps the iconv modules of the common mail charsets loaded while held
 * (glibc unloads a module with its last descriptor: one dlopen per message
 * otherwise). bayes_new holds one; the CLI's train and classify too. */
struct bayes_pin;
struct bayes_pin *bayes_pin_charsets(void);
void bayes_unpin_charsets(struct bayes_pin **pp);

/* The training queue (IMAP moves into/out of Junk, $Junk/$NotJunk) is
 * processed by the daemon's trainer: soon after a change notice from the
 * store, on a worker (tokenizing the stored messages), its counts written
 * by the committer. */

#endif
