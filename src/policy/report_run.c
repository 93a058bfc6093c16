/* A report run (RFC 7489 7.2): rows -> reports -> spools on a worker; the
 * authorizations of external destinations (RFC 7489 7.1) through src/dns
 * and the commits on the loop thread; and the daemon's timer. */
#include "policy/report.h"

#include <ctype.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/dmarc.h"

#define RUA_ADDR_MAX 320
#define RUA_MAX DMARC_RUA_MAX
#define DMARC_RUA_MAX 8 /* policy/dmarc.h DMARC_MAX_URIS */

struct report_one;

struct rua_dest {
	char addr[RUA_ADDR_MAX];
	uint64_t limit; /* "!size", 0 = none */
	bool ok;        /* authorized: internal, or the 7.1 record exists */
	struct dns_query *q;
	struct report_run *run;
	struct report_one *o;
};

struct report_one {
	char *domain;
	char *id;
	time_t begin, end; /* the report's period */
	struct buf msg; /* the MIME message (freed once in the spool) */
	size_t size;
	struct store_spool *sp;
	struct rua_dest dest[RUA_MAX];
	size_t n_dest;
};

struct report_run {
	struct loop *l;
	struct pool *p;
	struct store *st;
	struct dns *dns;
	const struct config *cfg;
	time_t since, until, now;
	/* > 0: one report per policy domain and period of this many seconds
	 * (aligned as report_period), for a run that catches up on several */
	unsigned split;
	time_t cur_begin, cur_end; /* the worker's: the period being gathered */
	char *org, *email;
	void (*kick)(void *);
	void *kick_arg;
	report_done_cb *done;
	void *arg;
	/* the worker's, then the loop's */
	struct report_agg *agg;
	struct report_one *v;
	size_t n;
	unsigned seq;
	uint32_t rnd;
	struct psl *psl; /* loaded on the worker; NULL: the last two labels */
	/* the loop's */
	enum { RUN_GATHER, RUN_SPOOLS, RUN_DNS, RUN_COMMIT } stage;
	size_t dns_pending, commits_pending;
	int sent;
	bool failed;
	/* report_run_cancel; read by the worker's steps too, which stop early */
	atomic_bool cancelled;
};

static const char *const stage_names[] = {"gather", "spools", "dns", "commit"};

/* RFC 7489 3.2: the organizational domain (lowercase), through the public
 * suffix list (NULL: the last two labels); the name itself when it is not
 * a domain name (it then matches nothing else). */
static void org_domain(const struct psl *psl, const char *d, char *out, size_t sz)
{
	if (psl_org_domain(psl, d, out, sz) < 0)
		snprintf(out, sz, "%s", d);
}

/* ---- worker: rows to messages ---- */

static void finish_domain(struct report_run *r)
{
	struct report_agg *a = r->agg;
	r->agg = NULL;
	if (a == NULL)
		return;
	if (report_agg_records(a) == 0) {
		report_agg_free(&a);
		return;
	}
	struct report_one o = {0};
	const char *rua = report_agg_rua(a);
	struct buf to = BUF_INIT;
	for (const char *u = rua; *u;) {
		size_t k = strcspn(u, " ");
		char uri[1024], addr[RUA_ADDR_MAX];
		uint64_t limit;
		snprintf(uri, sizeof uri, "%.*s", (int)(k < sizeof uri - 1 ? k : sizeof uri - 1), u);
		u += k;
		while (*u == ' ')
			u++;
		if (uri[0] == '\0')
			continue;
		if (report_rua_parse(uri, addr, sizeof addr, &limit) < 0 || o.n_dest >= RUA_MAX) {
			log_warn("dmarc report skipped rua domain=%s reason=unusable uri=%s",
				 report_agg_domain(a), uri);
			continue;
		}
		struct rua_dest *dd = &o.dest[o.n_dest++];
		snprintf(dd->addr, sizeof dd->addr, "%s", addr);
		dd->limit = limit;
		if (to.len)
			buf_appends(&to, ", ");
		buf_printf(&to, "<%s>", addr);
	}
	if (o.n_dest == 0) {
		buf_free(&to);
		report_agg_free(&a);
		return;
	}
	o.domain = xstrdup(report_agg_domain(a));
	o.begin = r->cur_begin;
	o.end = r->cur_end;
	o.id = xasprintf("%lld.%u.%08x", (long long)o.end, ++r->seq, r->rnd);
	struct buf xml = BUF_INIT, gz = BUF_INIT;
	/* RFC 7489 7.2.1.1: begin and end, inclusive seconds */
	struct report_meta m = {.org_name = r->org, .email = r->email, .report_id = o.id,
				.begin = o.begin, .end = o.end - 1};
	report_agg_xml(a, &m, &xml);
	if (report_gzip(xml.data, xml.len, &gz) == 0) {
		struct report_mail mail = {
			.from = r->email,
			.to = to.data,
			.hostname = r->cfg->hostname,
			.org_name = r->org,
			.policy_domain = o.domain,
			.report_id = o.id,
			.begin = o.begin,
			.end = o.end - 1,
			.now = r->now,
			.gz = gz.data,
			.gz_len = gz.len,
		};
		report_mail_build(&mail, &o.msg);
		o.size = o.msg.len;
		r->v = xrealloc(r->v, (r->n + 1) * sizeof *r->v);
		r->v[r->n++] = o;
	} else {
		log_err("dmarc report: compression failed domain=%s", o.domain);
		free(o.domain);
		free(o.id);
	}
	buf_free(&to);
	buf_free(&xml);
	buf_free(&gz);
	report_agg_free(&a);
}

/* The period of a row: [since, until), or with split the interval that
 * holds it (RFC 7489 7.2: reports of common, aligned periods), within
 * [since, until). */
static void row_period(const struct report_run *r, time_t t, time_t *begin_r, time_t *end_r)
{
	*begin_r = r->since;
	*end_r = r->until;
	if (r->split == 0)
		return;
	time_t b = t - t % (time_t)r->split, e = b + (time_t)r->split;
	if (b > *begin_r)
		*begin_r = b;
	if (e < *end_r)
		*end_r = e;
}

static int gather_row(void *arg, const struct store_dmarc_row *row)
{
	struct report_run *r = arg;
	if (atomic_load(&r->cancelled))
		return 1; /* shutting down: stop reading */
	time_t b, e;
	row_period(r, row->time, &b, &e);
	/* rows come ordered by policy domain, then time */
	if (r->agg != NULL && (strcasecmp(report_agg_domain(r->agg), row->policy_domain) != 0 ||
			       b != r->cur_begin))
		finish_domain(r);
	if (r->agg == NULL) {
		r->agg = report_agg_new(row->policy_domain);
		r->cur_begin = b;
		r->cur_end = e;
	}
	report_agg_add(r->agg, row);
	return 0;
}

static int gather(struct store_snap *sn, void *arg, char **err_r)
{
	struct report_run *r = arg;
	int rc = store_snap_dmarc_rows(sn, r->since, r->until, gather_row, r, err_r);
	if (!atomic_load(&r->cancelled))
		finish_domain(r);
	return rc;
}

/* ---- the end ---- */

static void run_free(struct report_run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct report_one *o = &r->v[i];
		free(o->domain);
		free(o->id);
		buf_free(&o->msg);
		store_spool_discard(&o->sp);
		for (size_t k = 0; k < o->n_dest; k++)
			dns_cancel(&o->dest[k].q);
	}
	free(r->v);
	psl_free(&r->psl);
	report_agg_free(&r->agg);
	free(r->org);
	free(r->email);
	free(r);
}

static void run_end(struct report_run *r)
{
	/* Cancelled before its commits: nothing was sent (the timer reports
	 * the period at the next start). In the commit stage the reports
	 * handed to the store are stored all the same: a normal end. */
	bool cancelled = atomic_load(&r->cancelled) && r->stage != RUN_COMMIT;
	/* bounded: rows older than two intervals go (store.h) */
	time_t keep = (time_t)(2 * (uint64_t)r->cfg->dmarc_report_interval);
	if (!r->failed && !cancelled)
		store_dmarc_prune(r->st, r->until - keep);
	if (cancelled)
		log_info("dmarc report run cancelled since=%lld until=%lld stage=%s",
			 (long long)r->since, (long long)r->until, stage_names[r->stage]);
	else
		log_info("dmarc report run done since=%lld until=%lld reports=%zu sent=%d",
			 (long long)r->since, (long long)r->until, r->n, r->sent);
	r->done(r->arg, cancelled ? REPORT_RUN_CANCELLED : r->failed ? -1 : r->sent);
	run_free(r);
}

/* ---- loop: commits ---- */

struct commit_ctx {
	struct report_run *r;
	struct report_one *o;
	bool remote;
};

static void committed(void *arg, int result)
{
	struct commit_ctx *c = arg;
	struct report_run *r = c->r;
	if (result == STORE_COMMIT_OK) {
		r->sent++;
		log_info("dmarc report sent domain=%s report_id=%s size=%zu", c->o->domain, c->o->id,
			 c->o->size);
		if (c->remote && r->kick != NULL && !atomic_load(&r->cancelled))
			r->kick(r->kick_arg);
	} else {
		log_warn("dmarc report not stored domain=%s report_id=%s result=%d", c->o->domain,
			 c->o->id, result);
	}
	free(c);
	if (--r->commits_pending == 0)
		run_end(r);
}

static void add_user(int64_t **v, size_t *n, int64_t id)
{
	for (size_t i = 0; i < *n; i++)
		if ((*v)[i] == id)
			return;
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = id;
}

static void add_remote(struct store_remote_rcpt **v, size_t *n, const char *addr)
{
	for (size_t i = 0; i < *n; i++)
		if (strcasecmp((*v)[i].addr, addr) == 0)
			return;
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = (struct store_remote_rcpt){.addr = addr};
}

/* Every DNS check has answered: commit each report to its authorized
 * destinations. */
static void commit_all(struct report_run *r)
{
	r->stage = RUN_COMMIT;
	r->commits_pending = 1; /* held until the loop below is done */
	for (size_t i = 0; i < r->n; i++) {
		struct report_one *o = &r->v[i];
		int64_t *users = NULL;
		size_t n_users = 0, n_remote = 0;
		struct store_remote_rcpt *remote = NULL;
		struct store_targets t = {0};
		for (size_t k = 0; k < o->n_dest; k++) {
			struct rua_dest *dd = &o->dest[k];
			if (!dd->ok)
				continue;
			const char *at = strrchr(dd->addr, '@');
			if (!store_domain_is_local(r->st, at + 1)) {
				add_remote(&remote, &n_remote, dd->addr);
				continue;
			}
			size_t before = t.n;
			int rc = store_resolve(r->st, dd->addr, &t);
			if (rc != 1)
				log_warn("dmarc report skipped rua domain=%s rcpt=%s reason=%s",
					 o->domain, dd->addr, rc == 0 ? "no-such-local-address"
								     : "store-error");
			for (size_t m = before; m < t.n; m++) {
				if (t.v[m].user_id > 0)
					add_user(&users, &n_users, t.v[m].user_id);
				else
					add_remote(&remote, &n_remote, t.v[m].addr);
			}
		}
		if (o->sp != NULL && n_users + n_remote > 0) {
			struct store_delivery d = {
				.txid = o->id,
				.mail_from = r->email,
				.received = time(NULL),
				.user_ids = users,
				.n_users = n_users,
				.remote = remote,
				.n_remote = n_remote,
			};
			struct commit_ctx *c = xcalloc(1, sizeof *c);
			c->r = r;
			c->o = o;
			c->remote = n_remote > 0;
			r->commits_pending++;
			struct store_spool *sp = o->sp;
			o->sp = NULL;
			store_commit(r->st, sp, &d, committed, c);
		}
		free(users);
		free(remote); /* store_commit copied d */
		store_targets_free(&t);
	}
	if (--r->commits_pending == 0)
		run_end(r);
}

/* ---- loop: external destinations (RFC 7489 7.1) ---- */

static void dns_done(struct report_run *r)
{
	if (--r->dns_pending == 0)
		commit_all(r);
}

static void auth_answer(void *arg, const struct dns_answer *a)
{
	struct rua_dest *dd = arg;
	dd->q = NULL;
	if (a->status == DNS_OK) {
		/* RFC 7489 7.1: a record that begins "v=DMARC1" authorizes */
		for (size_t i = 0; i < a->n && !dd->ok; i++)
			dd->ok = a->rr[i].type == DNS_TXT && a->rr[i].u.txt.len >= 8 &&
				 strncmp(a->rr[i].u.txt.text, "v=DMARC1", 8) == 0;
	}
	if (!dd->ok)
		log_info("dmarc report skipped rua domain=%s rcpt=%s reason=%s", dd->o->domain,
			 dd->addr,
			 a->status == DNS_TEMPFAIL ? "authorization-lookup-tempfail"
						   : "external-destination-not-authorized");
	dns_done(dd->run);
}

static void check_dests(struct report_run *r)
{
	r->stage = RUN_DNS;
	r->dns_pending = 1; /* held until every query has started */
	for (size_t i = 0; i < r->n; i++) {
		struct report_one *o = &r->v[i];
		char org_p[256], org_a[256];
		org_domain(r->psl, o->domain, org_p, sizeof org_p);
		for (size_t k = 0; k < o->n_dest; k++) {
			struct rua_dest *dd = &o->dest[k];
			dd->run = r;
			dd->o = o;
			if (dd->limit != 0 && o->size > dd->limit) {
				/* RFC 7489 6.2: never more than the URI allows */
				log_info("dmarc report skipped rua domain=%s rcpt=%s reason=size"
					 " size=%zu limit=%llu",
					 o->domain, dd->addr, o->size, (unsigned long long)dd->limit);
				continue;
			}
			const char *ad = strrchr(dd->addr, '@') + 1;
			org_domain(r->psl, ad, org_a, sizeof org_a);
			if (strcmp(org_a, org_p) == 0) {
				dd->ok = true;
				continue;
			}
			char *name = xasprintf("%s._report._dmarc.%s", o->domain, ad);
			r->dns_pending++;
			dd->q = dns_lookup(r->dns, name, DNS_TXT, auth_answer, dd);
			if (dd->q == NULL) {
				log_info("dmarc report skipped rua domain=%s rcpt=%s reason=bad-name",
					 o->domain, dd->addr);
				r->dns_pending--;
			}
			free(name);
		}
	}
	log_info("dmarc report run checking destinations since=%lld until=%lld reports=%zu"
		 " lookups=%zu",
		 (long long)r->since, (long long)r->until, r->n, r->dns_pending - 1);
	dns_done(r);
}

/* ---- worker: the spools ---- */

static void spools_work(void *arg)
{
	struct report_run *r = arg;
	/* the list is read here, off the loop: a run is rare, the file large */
	char *err = NULL;
	if (r->cfg->dmarc_psl_file != NULL && r->cfg->dmarc_psl_file[0] &&
	    (r->psl = psl_load(r->cfg->dmarc_psl_file, &err)) == NULL) {
		log_warn("dmarc report: public suffix list: %s; organizational domains are the"
			 " last two labels", err ? err : "?");
		free(err);
	}
	for (size_t i = 0; i < r->n && !atomic_load(&r->cancelled); i++) {
		struct report_one *o = &r->v[i];
		char *serr = NULL;
		o->sp = store_spool_new(r->st, &serr);
		if (o->sp == NULL) {
			log_err("dmarc report: %s", serr);
			free(serr);
		} else if (store_spool_write(o->sp, o->msg.data, o->msg.len) < 0) {
			log_err("dmarc report: spool: %s", strerror(errno));
			store_spool_discard(&o->sp);
		}
		buf_free(&o->msg);
	}
}

static void spools_written(void *arg)
{
	struct report_run *r = arg;
	if (atomic_load(&r->cancelled))
		run_end(r);
	else
		check_dests(r);
}

static void gathered(void *arg, int result, const char *err)
{
	struct report_run *r = arg;
	if (atomic_load(&r->cancelled)) {
		run_end(r);
		return;
	}
	if (result < 0) {
		log_err("dmarc report run: reading the rows failed: %s", err ? err : "?");
		r->failed = true;
		run_end(r);
		return;
	}
	if (r->n == 0) {
		run_end(r);
		return;
	}
	r->stage = RUN_SPOOLS;
	pool_submit(r->p, spools_work, spools_written, r);
}

void report_run_cancel(struct report_run *r)
{
	if (atomic_load(&r->cancelled))
		return;
	atomic_store(&r->cancelled, true);
	if (r->stage != RUN_DNS)
		return; /* the worker's step or the store's commits end it */
	/* Only DNS queries are in flight: cancelled (their callbacks never
	 * run), and the run ends here. */
	for (size_t i = 0; i < r->n; i++)
		for (size_t k = 0; k < r->v[i].n_dest; k++)
			dns_cancel(&r->v[i].dest[k].q);
	r->dns_pending = 0;
	run_end(r);
}

static struct report_run *run_start(struct loop *l, struct pool *p, struct store *st,
				    struct dns *dns, const struct config *cfg, time_t since,
				    time_t until, unsigned split, void (*kick)(void *),
				    void *kick_arg, report_done_cb *done, void *arg)
{
	struct report_run *r = xcalloc(1, sizeof *r);
	r->split = split;
	r->stage = RUN_GATHER;
	atomic_init(&r->cancelled, false);
	r->l = l;
	r->p = p;
	r->st = st;
	r->dns = dns;
	r->cfg = cfg;
	r->since = since;
	r->until = until;
	r->now = time(NULL);
	r->kick = kick;
	r->kick_arg = kick_arg;
	r->done = done;
	r->arg = arg;
	if (getrandom(&r->rnd, sizeof r->rnd, GRND_NONBLOCK) != (ssize_t)sizeof r->rnd)
		r->rnd = (uint32_t)r->now * 2654435761u ^ (uint32_t)getpid();
	r->org = xstrdup(cfg->dmarc_report_org && cfg->dmarc_report_org[0] ? cfg->dmarc_report_org
									  : cfg->hostname);
	if (cfg->dmarc_report_from && cfg->dmarc_report_from[0])
		r->email = xstrdup(cfg->dmarc_report_from);
	else if ((r->email = store_postmaster(st)) == NULL)
		r->email = xasprintf("postmaster@%s", cfg->hostname);
	store_read(st, p, gather, gathered, r);
	return r;
}

struct report_run *report_run_start(struct loop *l, struct pool *p, struct store *st,
				    struct dns *dns, const struct config *cfg, time_t since,
				    time_t until, void (*kick)(void *), void *kick_arg,
				    report_done_cb *done, void *arg)
{
	return run_start(l, p, st, dns, cfg, since, until, 0, kick, kick_arg, done, arg);
}

/* ---- the timer ---- */

void report_period(time_t now, unsigned interval, time_t *begin_r, time_t *end_r)
{
	if (interval == 0)
		interval = 86400;
	time_t end = now - now % (time_t)interval;
	*end_r = end;
	*begin_r = end - (time_t)interval;
}

/* The end of the last period reported (settings; RFC 7489 7.2: a period
 * that ended while the daemon was down is reported at the next start). */
#define LAST_END_SETTING "dmarc_report_end"

struct report_timer {
	struct loop *l;
	struct pool *p;
	struct store *st;
	struct dns *dns;
	const struct config *cfg;
	void (*kick)(void *);
	void *kick_arg;
	struct timer *t;
	struct report_run *run; /* in flight */
	time_t last_end;        /* periods before it are reported */
	time_t run_until;       /* the run's */
	bool stopping, freed;
};

static void timer_arm(struct report_timer *rt);

static void save_last_end(struct report_timer *rt)
{
	char v[32], *err = NULL;
	snprintf(v, sizeof v, "%lld", (long long)rt->last_end);
	if (store_setting_set(rt->st, LAST_END_SETTING, v, &err) < 0) {
		log_err("dmarc report: cannot save the end of the last period: %s",
			err ? err : "?");
		free(err);
	}
}

static void timer_run_done(void *arg, int sent)
{
	struct report_timer *rt = arg;
	rt->run = NULL;
	if (rt->freed) {
		free(rt);
		return;
	}
	/* A run that could not read its rows or was cancelled is tried again
	 * over the same periods (at the next period's end, or start). */
	if (sent >= 0) {
		rt->last_end = rt->run_until;
		save_last_end(rt);
	}
	if (!rt->stopping)
		timer_arm(rt);
}

/* One run over every period since the last one reported, up to the one
 * that ended last: usually one period; after the daemon was down, each
 * missed period gets its own report (one run, one pass over the rows). */
static void timer_fire(void *arg)
{
	struct report_timer *rt = arg;
	rt->t = NULL;
	unsigned iv = rt->cfg->dmarc_report_interval;
	time_t begin, end;
	report_period(time(NULL), iv, &begin, &end);
	time_t since = rt->last_end;
	if (since >= end) { /* reported already (the clock went back) */
		timer_arm(rt);
		return;
	}
	if (since < begin)
		log_info("dmarc report catching up since=%lld until=%lld periods=%lld",
			 (long long)since, (long long)end, (long long)((end - since + iv - 1) / iv));
	rt->run_until = end;
	rt->run = run_start(rt->l, rt->p, rt->st, rt->dns, rt->cfg, since, end, iv, rt->kick,
			    rt->kick_arg, timer_run_done, rt);
}

/* At the end of the current period (plus a few seconds, for the rows of its
 * last second still on their way to the committer). */
static void timer_arm(struct report_timer *rt)
{
	time_t now = time(NULL), begin, end;
	unsigned iv = rt->cfg->dmarc_report_interval;
	report_period(now, iv, &begin, &end);
	time_t next = end + (time_t)iv + 5;
	rt->t = loop_timer_add(rt->l, (uint64_t)(next - now) * 1000, timer_fire, rt);
}

struct report_timer *report_timer_new(struct loop *l, struct pool *p, struct store *st,
				      struct dns *dns, const struct config *cfg,
				      void (*kick)(void *), void *kick_arg)
{
	struct report_timer *rt = xcalloc(1, sizeof *rt);
	*rt = (struct report_timer){.l = l, .p = p, .st = st, .dns = dns, .cfg = cfg,
				    .kick = kick, .kick_arg = kick_arg};
	time_t begin, end;
	report_period(time(NULL), cfg->dmarc_report_interval, &begin, &end);
	char *v = NULL, *e = NULL;
	long long last = 0;
	int rc = store_setting_get(st, LAST_END_SETTING, &v);
	if (rc == 1) {
		errno = 0;
		last = strtoll(v, &e, 10);
		if (errno || e == v || *e || last <= 0)
			rc = 0;
	}
	free(v);
	if (rc != 1) {
		/* First start (or an unreadable value): the periods before are
		 * not ours to report; a report sent twice would count every
		 * message twice at the domain owner. */
		rt->last_end = end;
		save_last_end(rt);
		timer_arm(rt);
	} else if ((rt->last_end = (time_t)last) < end) {
		rt->t = loop_timer_add(l, 0, timer_fire, rt); /* missed periods: now */
	} else {
		timer_arm(rt);
	}
	return rt;
}

int report_timer_stop(struct report_timer *rt)
{
	if (rt == NULL)
		return 0;
	rt->stopping = true;
	loop_timer_cancel(rt->l, &rt->t);
	if (rt->run != NULL)
		report_run_cancel(rt->run); /* may end it (timer_run_done) */
	return rt->run != NULL;
}

void report_timer_free(struct report_timer **tp)
{
	struct report_timer *rt = *tp;
	if (rt == NULL)
		return;
	*tp = NULL;
	report_timer_stop(rt);
	if (rt->run != NULL)
		rt->freed = true; /* the run's end frees it */
	else
		free(rt);
}
