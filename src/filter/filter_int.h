/* Private to filter.c and notice.c: the daemon's filter, a connection, a
 * transaction. */
#ifndef POSTERN_FILTER_FILTER_INT_H
#define POSTERN_FILTER_FILTER_INT_H
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "filter/attach.h"
#include "filter/bayes.h"
#include "filter/clamd.h"
#include "filter/filter.h"
#include "filter/limit.h"
#include "filter/milter.h"
#include "filter/reasons.h"

struct filter {
	struct loop *l;
	struct dns *dns;
	struct pool *pool;
	struct store *st;
	const struct config *cfg;
	struct screen *screen;
	struct grey *grey;     /* NULL: greylist off */
	struct limit *limit;
	struct clamd *clamd;   /* NULL: no clamd_socket */
	struct attach_rules *attach; /* NULL: attach_check off */
	struct milter_set *milters; /* NULL: none */
	struct bayes *bayes;   /* NULL: spam_filter off */
	double junk_score, reject_score;
	bool dnsbl_enforce, dnsbl_drop, clamd_accept;
	/* spool jobs in flight, orphaned ones included (their transaction
	 * went while the worker read): filter_stop counts them, so that the
	 * drain lets them end before filter_free */
	int jobs;
};

struct filter_conn {
	struct filter *f;
	char ip[64];
	bool mx, trusted;
	struct screen_conn *sc; /* MX, untrusted */
	struct filter_tx *wait_tx; /* waiting on screen_conn_wait */
	char why[300];
};

/* The worker's share of the end of data (it may outlive its transaction:
 * t NULL then). */
struct spool_job {
	struct filter *f;
	struct filter_tx *t;
	const struct attach_rules *attach;
	bool tokenize;
	/* classify the tokens in the same hop (bayes_classify) for these
	 * users (own copy): bayes non-NULL (the filter's, as a flag) */
	struct bayes *bayes;
	struct store *st; /* for spool_read */
	int64_t *users;
	size_t n_users;
	struct milter_edit *edits; /* own copies */
	size_t n_edits;
	/* results */
	struct attach_result ar;
	struct bayes_tokens tokens;
	struct bayes_verdict *verdicts; /* n_users of them, when classified */
	bool classified;                /* spool_read ran bayes_classify */
	/* when classified: each user's thresholds (NAN: not set), read on
	 * the worker, not by the loop's own lookup per message */
	double *thr_junk, *thr_reject;
	bool rewrote, write_failed;
};

struct filter_tx {
	struct filter *f;
	struct filter_conn *c;
	char *txid, *helo, *rdns, *auth_user, *mail_from;
	bool tls;
	bool sub;     /* authenticated submission */
	bool trusted; /* a client in trusted_networks */
	bool limited; /* rates and duplicates apply (submission, untrusted MX) */
	/* a step's answer (MAIL, RCPT) */
	filter_cb *cb;
	void *cb_arg;
	char ecode[16];
	char text[400];
	char *pending_rcpt, *accept_rcpt;
	bool pending_accept;
	bool milter_wait, dnsbl_wait, clamd_wait;
	/* accepted recipients and the local accounts */
	char **rcpts;
	size_t n_rcpts;
	int64_t *users;
	size_t n_users;
	/* content */
	uint64_t size;
	struct limit_fp fp;
	uint64_t fp_value;
	bool fp_final;
	bool clamd_started;
	struct clamd_scan *cs;
	struct milter_tx *mt;
	bool clamd_paused, milter_paused, paused;
	void (*resume)(void *arg);
	void *resume_arg;
	/* the end */
	filter_end_cb *end_cb;
	void *end_arg;
	struct timer *end_timer;
	struct store_spool *sp;
	char *a_spf, *a_dkim, *a_dmarc, *aligned_domain;
	bool a_dmarc_enforced; /* filter_auth.dmarc_enforced */
	enum clamd_status clamd_status;
	char *clamd_name;
	bool milter_done;
	enum milter_action m_action;
	int m_code;
	char *m_ecode, *m_text;
	bool m_quarantine;
	char *m_quarantine_why;
	struct milter_edit *edits;
	size_t n_edits;
	bool discard;
	struct spool_job *job;
	int job_result;
	struct attach_result job_ar;
	/* the end's steps that overlap (filter.c, end_after_parts): the spool
	 * job started with clamd when no milter can edit, the statistical
	 * filter as soon as its tokens are in */
	bool early, spool_started, spool_done, bayes_done;
	bool limit_held; /* limit_end reserved it: delivered or released later */
	bool grey_allow; /* greylisting passed it on a retry or an allowed network */
	bool clamd_ended; /* clamd_scan_end ran (filter_data_end or filter_end) */
	bool end_started; /* filter_end ran */
	struct filter_reasons common;
	struct filter_reasons *bayes; /* per user, or NULL */
	double *thr_junk, *thr_reject; /* per user from the spool job, or NULL */
	bool *junk;                   /* per user */
	bool rewritten;
	int end_code;
	bool ended;
	double score;
	const char *action;
	const char *grey_why;
	struct buf prefix, spam_fields, rules;
};

/* notice.c: limit's notice to the postmaster (limit_notice_fn), committed
 * as a message from MAILER-DAEMON. */
void filter_notice(void *arg, const char *subject, const char *body);
/* notice.c: the junk/reject thresholds of a local account (its own, else
 * its domain's, else left as they are). */
void filter_thresholds(struct filter *f, int64_t user_id, double *junk, double *reject);

#endif
