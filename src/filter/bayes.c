/* The built-in statistical spam filter (bayes.h): classification on a
 * worker's read snapshot, and the trainer that turns the store's training
 * queue (IMAP moves into and out of Junk, $Junk/$NotJunk) into counts.
 *
 * Classifier (Gary Robinson's method, as SpamBayes combines it):
 *   for a token seen in h ham and s spam messages of a model trained with
 *   H ham and S spam messages:
 *     p(w) = (s/S) / (h/H + s/S)
 *     f(w) = (BAYES_S * BAYES_X + n * p(w)) / (BAYES_S + n),  n = h + s
 *   (Robinson's degree of belief: s = 1, x = 0.5); the BAYES_MAX_CLUES
 *   tokens with the largest |f(w) - 0.5|, at least BAYES_MIN_DEV, combined
 *   with Fisher's inverse chi-square:
 *     S = 1 - chi2Q(-2 sum ln(1 - f), 2N),  H = 1 - chi2Q(-2 sum ln f, 2N)
 *     prob = (1 + S - H) / 2
 *   0 is ham, 1 spam; a message with only weak tokens comes out near 0.5.
 *
 * Which counts (per user, the global model behind it): a user with at least
 * BAYES_OWN_MIN ham and BAYES_OWN_MIN spam messages trained of their own is
 * judged by their own counts alone; a user with less is judged by the sum
 * of the global model's counts and their own (a blend: a new user gets the
 * global verdicts, and each message they train counts at once for them and
 * only for them). A model (after the blend) with fewer than BAYES_MIN_TRAINED
 * ham or spam messages knows too little: prob 0.5, untrained, no points.
 *
 * Points (the rule names SpamAssassin uses; BAYES_99 alone reaches the
 * default spam_junk_score of 5.0, nothing here reaches spam_reject_score):
 *   prob <  0.01  BAYES_00  -1.5      0.60 .. 0.80  BAYES_60  +1.5
 *   0.01 .. 0.05  BAYES_05  -0.5      0.80 .. 0.95  BAYES_80  +2.5
 *   0.05 .. 0.20  BAYES_20  -0.2      0.95 .. 0.99  BAYES_95  +3.5
 *   0.20 .. 0.40  BAYES_40   0.0      >= 0.99       BAYES_99  +5.0
 *   0.40 .. 0.60  BAYES_50   0.0
 * Besides the rule, two reasons of weight 0 name the strongest tokens each
 * way with their counts ("spam-like: viagra 12/0, ..."), so that a user sees
 * which words decided.
 *
 * Trainer: the queue is filled by this process's IMAP changes, which move
 * a counter once committed (store_spam_queue_gen). Every BAYES_TRAIN_POLL_MS
 * the loop looks at the counter (no system call); when it moved, at start,
 * after a failure, and every BAYES_TRAIN_IDLE_MS anyway (rows another
 * process queued), it asks a worker for the oldest BAYES_TRAIN_BATCH rows
 * of the queue. (It read the queue every 500 ms before: a read transaction
 * twice a second on an idle server, and a second read connection opened
 * when one met a command's.)
 * the worker reads each message's blob (at most BAYES_TRAIN_READ octets),
 * tokenizes it, and the committer applies the batch in one transaction
 * (store_spam_train_async: untraining first what the message was trained
 * as the other way, spam_trained). A full batch polls again at once. */
#include <errno.h>
#include <iconv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "filter/bayes.h"
#include "store/store.h"

#define BAYES_S 1.0
#define BAYES_X 0.5
#define BAYES_MAX_CLUES 150
#define BAYES_MIN_DEV 0.1
#define BAYES_OWN_MIN 20
#define BAYES_MIN_TRAINED 5
#define BAYES_TRAIN_POLL_MS 500
#define BAYES_MARK_POLL_MS 1000 /* the CLI's mark, should its watch miss a change */
#define BAYES_TRAIN_IDLE_MS (5 * 60 * 1000)
#define BAYES_TRAIN_BATCH 64
#define BAYES_TRAIN_READ (4 * 1024 * 1024)
#define BAYES_REASON_TOKENS 5

static const struct {
	double below; /* prob under this */
	const char *rule;
	double score;
} bayes_rules[] = {
	{0.01, "BAYES_00", -1.5}, {0.05, "BAYES_05", -0.5}, {0.20, "BAYES_20", -0.2},
	{0.40, "BAYES_40", 0.0},  {0.60, "BAYES_50", 0.0},  {0.80, "BAYES_60", 1.5},
	{0.95, "BAYES_80", 2.5},  {0.99, "BAYES_95", 3.5},  {2.00, "BAYES_99", 5.0},
};

/* ---- the pure classifier ---- */

/* Probability that chi2 with v (even) degrees of freedom is >= x2. */
static double chi2q(double x2, int v)
{
	double m = x2 / 2.0, sum, term;
	sum = term = exp(-m);
	for (int i = 1; i < v / 2; i++) {
		term *= m / i;
		sum += term;
	}
	return sum < 1.0 ? sum : 1.0;
}

struct clue {
	double f;
	size_t i;
};

static int clue_cmp(const void *a, const void *b)
{
	double x = fabs(((const struct clue *)a)->f - 0.5), y = fabs(((const struct clue *)b)->f - 0.5);
	if (x != y)
		return x > y ? -1 : 1;
	/* equal strength: by index, so the choice is deterministic */
	size_t i = ((const struct clue *)a)->i, j = ((const struct clue *)b)->i;
	return i < j ? -1 : i > j;
}

static void tokens_reason(struct filter_reasons *r, const char *rule, const char *what,
			  const struct bayes_tokens *t, const struct bayes_counts *c,
			  const struct clue *cl, size_t n, bool spam)
{
	char line[400];
	size_t len = (size_t)snprintf(line, sizeof line, "%s:", what);
	size_t k = 0;
	for (size_t i = 0; i < n && k < BAYES_REASON_TOKENS; i++) {
		if ((cl[i].f > 0.5) != spam)
			continue;
		const struct bayes_token *tk = &t->v[cl[i].i];
		int w = snprintf(line + len, sizeof line - len, "%s \"%.40s\" %lld/%lld",
				 k ? "," : "", tk->text ? tk->text : "?",
				 (long long)c[cl[i].i].spam, (long long)c[cl[i].i].ham);
		if (w < 0 || (size_t)w >= sizeof line - len)
			break;
		len += (size_t)w;
		k++;
	}
	if (k > 0)
		filter_reasons_add(r, rule, 0.0, "%s (spam/ham messages)", line);
}

void bayes_combine(const struct bayes_tokens *t, const struct bayes_counts *c,
		   struct bayes_counts total, const char *model, struct bayes_verdict *v)
{
	memset(v, 0, sizeof *v);
	v->prob = 0.5;
	if (total.ham < BAYES_MIN_TRAINED || total.spam < BAYES_MIN_TRAINED) {
		v->untrained = true;
		return;
	}
	struct clue *cl = xcalloc(t->n ? t->n : 1, sizeof *cl);
	size_t n = 0;
	for (size_t i = 0; i < t->n; i++) {
		double h = (double)c[i].ham, s = (double)c[i].spam, cnt = h + s;
		if (cnt <= 0)
			continue;
		double hr = h / (double)total.ham, sr = s / (double)total.spam;
		if (hr > 1.0)
			hr = 1.0; /* counts above their totals (a CLI race): clamp */
		if (sr > 1.0)
			sr = 1.0;
		double p = sr / (hr + sr);
		double f = (BAYES_S * BAYES_X + cnt * p) / (BAYES_S + cnt);
		if (fabs(f - 0.5) > BAYES_MIN_DEV)
			cl[n++] = (struct clue){f, i};
	}
	qsort(cl, n, sizeof *cl, clue_cmp);
	size_t use = n < BAYES_MAX_CLUES ? n : BAYES_MAX_CLUES;
	if (use > 0) {
		double ls = 0, lh = 0;
		for (size_t i = 0; i < use; i++) {
			ls += log(1.0 - cl[i].f);
			lh += log(cl[i].f);
		}
		double S = 1.0 - chi2q(-2.0 * ls, 2 * (int)use);
		double H = 1.0 - chi2q(-2.0 * lh, 2 * (int)use);
		v->prob = (S - H + 1.0) / 2.0;
	}
	size_t k = 0;
	while (v->prob >= bayes_rules[k].below)
		k++;
	v->score = bayes_rules[k].score;
	const char *kind = v->prob >= 0.6 ? "typical of spam"
			   : v->prob < 0.4 ? "typical of wanted mail (ham)"
					   : "neither typical of spam nor of ham";
	filter_reasons_add(&v->reasons, bayes_rules[k].rule, v->score,
			   "the words of this message are %s (%.1f %%, %s; %zu clues)", kind,
			   v->prob * 100.0, model, use);
	tokens_reason(&v->reasons, "BAYES_SPAM_WORDS", "spam-like", t, c, cl, use, true);
	tokens_reason(&v->reasons, "BAYES_HAM_WORDS", "ham-like", t, c, cl, use, false);
	free(cl);
}

/* ---- reading a model: a snapshot (daemon) or st->main (CLI) ---- */

struct model_src {
	struct store_snap *sn; /* or: */
	struct store *st;
};

static int src_totals(const struct model_src *m, int64_t uid, struct bayes_counts *c, char **err_r)
{
	struct store_spam_counts sc;
	int r = m->sn ? store_snap_spam_totals(m->sn, uid, &sc, err_r)
		      : store_spam_totals(m->st, uid, &sc, err_r);
	c->ham = sc.ham;
	c->spam = sc.spam;
	return r;
}

static int src_tokens(const struct model_src *m, int64_t uid, const uint64_t *h, size_t n,
		      struct bayes_counts *c, char **err_r)
{
	struct store_spam_counts *sc = xcalloc(n ? n : 1, sizeof *sc);
	int r = m->sn ? store_snap_spam_tokens(m->sn, uid, h, n, sc, err_r)
		      : store_spam_tokens(m->st, uid, h, n, sc, err_r);
	for (size_t i = 0; i < n; i++) {
		c[i].ham = sc[i].ham;
		c[i].spam = sc[i].spam;
	}
	free(sc);
	return r;
}

/* Classifies t for each of uids[0..n) into v (global counts read once). */
static int model_classify(const struct model_src *m, const struct bayes_tokens *t,
			  const int64_t *uids, size_t n, struct bayes_verdict *v, char **err_r)
{
	uint64_t *h = xcalloc(t->n ? t->n : 1, sizeof *h);
	for (size_t i = 0; i < t->n; i++)
		h[i] = t->v[i].hash;
	struct bayes_counts *gc = NULL, *uc = xcalloc(t->n ? t->n : 1, sizeof *uc);
	struct bayes_counts gt = {0, 0};
	int r = 0;
	for (size_t u = 0; u < n && r == 0; u++) {
		struct bayes_counts ut = {0, 0};
		if (uids[u] != 0 && (r = src_totals(m, uids[u], &ut, err_r)) < 0)
			break;
		bool own = uids[u] != 0 && ut.ham >= BAYES_OWN_MIN && ut.spam >= BAYES_OWN_MIN;
		if (!own && gc == NULL) {
			gc = xcalloc(t->n ? t->n : 1, sizeof *gc);
			if ((r = src_totals(m, 0, &gt, err_r)) < 0 ||
			    (r = src_tokens(m, 0, h, t->n, gc, err_r)) < 0)
				break;
		}
		const char *model;
		struct bayes_counts tot;
		if (own) {
			if ((r = src_tokens(m, uids[u], h, t->n, uc, err_r)) < 0)
				break;
			tot = ut;
			model = "your own training";
		} else if (uids[u] != 0 && (ut.ham > 0 || ut.spam > 0)) {
			if ((r = src_tokens(m, uids[u], h, t->n, uc, err_r)) < 0)
				break;
			for (size_t i = 0; i < t->n; i++) {
				uc[i].ham += gc[i].ham;
				uc[i].spam += gc[i].spam;
			}
			tot = (struct bayes_counts){gt.ham + ut.ham, gt.spam + ut.spam};
			model = "the global model with your training";
		} else {
			memcpy(uc, gc, t->n * sizeof *uc);
			tot = gt;
			model = "the global model";
		}
		bayes_combine(t, uc, tot, model, &v[u]);
	}
	free(h);
	free(gc);
	free(uc);
	return r;
}

int bayes_classify_sync(struct store *st, const struct bayes_tokens *t, int64_t user_id,
			struct bayes_verdict *v, char **err_r)
{
	struct model_src m = {NULL, st};
	memset(v, 0, sizeof *v);
	return model_classify(&m, t, &user_id, 1, v, err_r);
}

void bayes_verdict_free(struct bayes_verdict *v)
{
	filter_reasons_free(&v->reasons);
}

/* ---- iconv modules kept loaded ---- */

/* glibc loads a charset's gconv module at iconv_open and unloads it when
 * the last descriptor closes: tokenizing one message per call then costs a
 * dlopen and a munmap (a TLB shootdown on every CPU) per legacy-charset
 * part, which measured as half the tokenizer's time. Descriptors held open
 * for the process's common mail charsets keep their modules loaded. */
static const char *const pinned_charsets[] = {
	"ISO-8859-1", "ISO-8859-2", "ISO-8859-5", "ISO-8859-7", "ISO-8859-15", "WINDOWS-1250",
	"WINDOWS-1251", "WINDOWS-1252", "WINDOWS-1256", "KOI8-R", "KOI8-U", "SHIFT_JIS",
	"EUC-JP", "ISO-2022-JP", "GB2312", "GBK", "GB18030", "BIG5", "EUC-KR",
};
#define N_PINNED (sizeof pinned_charsets / sizeof *pinned_charsets)

struct bayes_pin {
	iconv_t cd[N_PINNED];
};

struct bayes_pin *bayes_pin_charsets(void)
{
	struct bayes_pin *p = xcalloc(1, sizeof *p);
	for (size_t i = 0; i < N_PINNED; i++)
		p->cd[i] = iconv_open("UTF-8", pinned_charsets[i]);
	return p;
}

void bayes_unpin_charsets(struct bayes_pin **pp)
{
	if (*pp == NULL)
		return;
	for (size_t i = 0; i < N_PINNED; i++)
		if ((*pp)->cd[i] != (iconv_t)-1)
			iconv_close((*pp)->cd[i]);
	x_free(pp);
}

/* ---- the daemon's filter ---- */

struct trainer;

struct bayes {
	struct loop *loop;
	struct store *st;
	struct pool *pool;
	struct timer *timer;
	struct trainer *busy; /* a batch in flight */
	bool stopping;        /* bayes_stop: no new batch */
	bool read_now;        /* at start, a full batch, a failure: read at the next tick */
	uint64_t gen_seen;    /* store_spam_queue_gen at the last read */
	uint64_t read_at;     /* loop_now of the last read */
	struct bayes_pin *pin;
	int watchfd;          /* store_spam_watch: the CLI trained */
	struct timer *mark_timer;   /* a look at the mark every BAYES_MARK_POLL_MS */
	struct store_stamp mark;    /* as last seen */
};

void bayes_classify(struct store_snap *sn, const struct bayes_tokens *t, const int64_t *user_ids,
		    size_t n, struct bayes_verdict *v)
{
	struct model_src m = {sn, NULL};
	char *err = NULL;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct bayes_verdict){.prob = 0.5};
	if (model_classify(&m, t, user_ids, n, v, &err) < 0) {
		log_warn("bayes: classification failed: %s", err ? err : "?");
		for (size_t i = 0; i < n; i++)
			bayes_verdict_free(&v[i]);
		bayes_unclassified(v, n);
	}
	free(err);
}

void bayes_unclassified(struct bayes_verdict *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (struct bayes_verdict){.prob = 0.5, .untrained = true};
}

/* ---- the trainer ---- */

struct trainer {
	struct bayes *b; /* NULL once bayes_free ran */
	struct store_spam_train *v;
	size_t n;
	bool full;
};

/* The first BAYES_TRAIN_READ octets of blob into out: 0, or -1 with errno
 * (ENOENT: expunged meanwhile). */
static int blob_read(struct store_snap *sn, const char *blob, struct buf *out)
{
	int fd, r = 0;
	char *err = NULL;
	if (store_snap_blob_open(sn, blob, &fd, &err) < 0) {
		int e = errno;
		free(err);
		errno = e;
		return -1;
	}
	buf_reserve(out, 64 * 1024);
	while (out->len < BAYES_TRAIN_READ) {
		size_t want = BAYES_TRAIN_READ - out->len;
		if (want > 64 * 1024)
			want = 64 * 1024;
		buf_reserve(out, want);
		ssize_t k = read(fd, out->data + out->len, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			r = -1;
		if (k <= 0)
			break;
		out->len += (size_t)k;
	}
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

static int train_fetch_fn(struct store_snap *sn, void *arg, char **err_r)
{
	struct trainer *tr = arg;
	struct store_spam_queued *q;
	size_t n;
	if (store_snap_spam_queue(sn, BAYES_TRAIN_BATCH, &q, &n, err_r) < 0)
		return -1;
	tr->v = xcalloc(n ? n : 1, sizeof *tr->v);
	tr->n = n;
	tr->full = n == BAYES_TRAIN_BATCH;
	struct buf msg = {0};
	for (size_t i = 0; i < n; i++) {
		struct store_spam_train *it = &tr->v[i];
		it->queue_id = q[i].id;
		it->user_id = q[i].user_id;
		it->message_id = q[i].message_id;
		it->spam = q[i].spam;
		buf_reset(&msg);
		int rd = q[i].blob != NULL ? blob_read(sn, q[i].blob, &msg) : -1;
		bool gone = q[i].blob == NULL || (rd < 0 && errno == ENOENT);
		if (rd < 0 && !gone) {
			/* no descriptor, an I/O error: the batch is read again
			 * later, rather than its rows deleted untrained */
			*err_r = xasprintf("blob %s: %s", q[i].blob, strerror(errno));
			buf_free(&msg);
			store_spam_queued_free(q, n);
			return -1;
		}
		if (gone) {
			it->skip = true; /* expunged meanwhile: nothing to learn */
			continue;
		}
		struct bayes_tokens t;
		bayes_tokenize(msg.data ? msg.data : "", msg.len, &t);
		it->hashes = xcalloc(t.n ? t.n : 1, sizeof *it->hashes);
		for (size_t k = 0; k < t.n; k++)
			it->hashes[k] = t.v[k].hash;
		it->n = t.n;
		bayes_tokens_free(&t);
	}
	buf_free(&msg);
	store_spam_queued_free(q, n);
	return 0;
}

static void train_tick(void *arg);

static void train_applied(void *arg, int result)
{
	struct trainer *tr = arg;
	struct bayes *b = tr->b;
	bool again = tr->full && result == 0;
	free(tr);
	if (b == NULL)
		return;
	b->busy = NULL;
	b->read_now = again || result < 0;
	if (!b->stopping)
		b->timer = loop_timer_add(b->loop, again ? 0 : BAYES_TRAIN_POLL_MS, train_tick,
					  b);
}

static void train_fetched(void *arg, int result, const char *err)
{
	struct trainer *tr = arg;
	if (result < 0)
		log_warn("bayes: reading the training queue failed: %s", err ? err : "?");
	if (tr->b == NULL || result < 0 || tr->n == 0) {
		store_spam_train_free(tr->v, tr->n);
		tr->v = NULL;
		tr->full = false;
		train_applied(tr, result);
		return;
	}
	log_info("bayes: training messages=%zu", tr->n);
	store_spam_train_async(tr->b->st, tr->v, tr->n, train_applied, tr);
	tr->v = NULL;
}

static void train_tick(void *arg)
{
	struct bayes *b = arg;
	b->timer = NULL;
	uint64_t gen = store_spam_queue_gen(b->st), now = loop_now(b->loop);
	if (!b->read_now && gen == b->gen_seen && now - b->read_at < BAYES_TRAIN_IDLE_MS) {
		b->timer = loop_timer_add(b->loop, BAYES_TRAIN_POLL_MS, train_tick, b);
		return;
	}
	/* the counter moves once a change is committed: this read sees its rows */
	b->gen_seen = gen;
	b->read_at = now;
	b->read_now = false;
	struct trainer *tr = xcalloc(1, sizeof *tr);
	tr->b = b;
	b->busy = tr;
	store_read(b->st, b->pool, train_fetch_fn, train_fetched, tr);
}

/* The CLI trained or set thresholds (its mark changed): what the model
 * cache keeps goes. */
static void mark_changed(struct bayes *b)
{
	store_spam_stamp(b->st, &b->mark);
	store_spam_model_changed(b->st);
}

static void on_model_mark(void *arg, uint32_t events)
{
	struct bayes *b = arg;
	(void)events;
	store_mark_drain(b->watchfd);
	mark_changed(b);
}

/* The watch's fallback: a failed inotify, or a mark file removed or
 * replaced (its watch then ends), would leave the cache stale. */
static void mark_tick(void *arg)
{
	struct bayes *b = arg;
	struct store_stamp now;
	store_spam_stamp(b->st, &now);
	if (now.ino != b->mark.ino || now.mtime.tv_sec != b->mark.mtime.tv_sec ||
	    now.mtime.tv_nsec != b->mark.mtime.tv_nsec)
		mark_changed(b);
	b->mark_timer = loop_timer_add(b->loop, BAYES_MARK_POLL_MS, mark_tick, b);
}

struct bayes *bayes_new(struct loop *l, struct store *st, struct pool *pool,
			const struct config *cfg, char **err_r)
{
	struct bayes *b = xcalloc(1, sizeof *b);
	b->loop = l;
	b->st = st;
	store_readers_init(st); /* bayes_classify runs on workers */
	b->pool = pool;
	b->pin = bayes_pin_charsets();
	b->read_now = true; /* rows left by the last run */
	b->timer = loop_timer_add(l, BAYES_TRAIN_POLL_MS, train_tick, b);
	/* the counts read are kept in memory until they change: here (the
	 * trainer, through the committer) or by the CLI (its mark) */
	store_spam_cache_on(st);
	b->watchfd = store_spam_watch(st); /* creates the mark: stamped after */
	store_spam_stamp(st, &b->mark);
	b->mark_timer = loop_timer_add(l, BAYES_MARK_POLL_MS, mark_tick, b);
	if (b->watchfd >= 0 && loop_add(l, b->watchfd, LOOP_READ, on_model_mark, b) < 0) {
		log_warn("bayes: not watching the CLI's training: %s", strerror(errno));
		close(b->watchfd);
		b->watchfd = -1;
	}
	return b;
}

int bayes_stop(struct bayes *b)
{
	if (b == NULL)
		return 0;
	b->stopping = true;
	loop_timer_cancel(b->loop, &b->timer);
	loop_timer_cancel(b->loop, &b->mark_timer);
	return b->busy != NULL;
}

void bayes_free(struct bayes **bp)
{
	struct bayes *b = *bp;
	if (b == NULL)
		return;
	loop_timer_cancel(b->loop, &b->timer);
	loop_timer_cancel(b->loop, &b->mark_timer);
	if (b->watchfd >= 0) {
		loop_del(b->loop, b->watchfd);
		close(b->watchfd);
	}
	if (b->busy != NULL)
		b->busy->b = NULL; /* its completion frees it */
	bayes_unpin_charsets(&b->pin);
	x_free(bp);
}
