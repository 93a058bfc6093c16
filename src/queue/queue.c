/* The outbound scheduler (queue.h).
 *
 * A message moves like this: store_commit wrote one queue row per remote
 * recipient, due at once, and the SMTP server kicks us. A tick leases a
 * bounded batch of due (message, domain) groups on the committer
 * (store_queue_lease: never on the loop); each group becomes a job on its
 * destination (the domain, or the relay host for domains it covers). A
 * destination opens connections within queue_max_per_destination and
 * queue_max_connections: it resolves the domain's MX (or the relay host),
 * tries the hosts in order and each host's addresses in turn (the next
 * address on a connect failure or a refused greeting: RFC 5321 5.1), and
 * once a connection is open carries one transaction per job, up to
 * queue_max_per_connection jobs, then QUIT. Each job's outcome is recorded
 * per recipient in one transaction (store_queue_record): delivered and
 * bounced rows go, temporary failures get attempts + 1 and their next try
 * (queue_retry_min doubling to queue_retry_max), until queue_lifetime, when
 * they bounce. DSNs (bounce.h) go before the rows they report on are
 * removed: a crash between the two sends a DSN twice, never none. */
#include "queue/queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <time.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "queue/bounce.h"
#include "queue/route.h"
#include "smtp/client.h"

/* Groups leased at a time, and the most kept in memory waiting for a
 * connection: a bound on what one node holds (the rest stays due in the
 * store for the next tick, or for another node). */
#define QUEUE_LEASE_BATCH 200
#define QUEUE_MAX_WAITING 2000

struct qdest;
struct qconn;

/* One leased message for one destination. */
struct qjob {
	struct qjob *next;
	struct qjob *live_prev, *live_next; /* queue.live: every job until freed */
	struct queue *q;
	struct qdest *dest;
	struct store_queue_msg m; /* moved out of the lease: ours to free */
	struct smtp_client_msg cm;
	struct smtp_client_rcpt *cr;
	struct store_queue_result *res;
	struct bounce_rcpt *br[3]; /* failed, delayed, success DSN recipients */
	size_t n_br[3];
	int dsn_pending;
	time_t now;
	char *mx, *ip, *tls; /* for the log and the DSN */
};

struct qdest {
	struct qdest *next;
	char *name; /* the domain, or the relay host */
	bool relay;
	struct qjob *head, *tail; /* waiting for a connection */
	size_t n_jobs;
	int n_conns, n_opening;
	/* 0, or the most connections the next hop took at once: a connection
	 * refused while others were open (a per-client limit, "421 too many
	 * connections") caps this destination there, one more being tried
	 * each time a connection opens at the cap (as Postfix's concurrency
	 * feedback). */
	int cap;
};

struct qaddr {
	char *host;
	struct sockaddr_storage addr;
	socklen_t len;
};

struct qconn {
	struct qconn *next;
	struct queue *q;
	struct qdest *dest;
	struct dns_query *dq;
	struct qaddr *addrs;
	size_t n_addrs, cur;
	struct smtp_client *c;
	bool opening;
	struct qjob *job; /* the transaction in flight */
	int sent;
	enum smtp_status fail_status;
	char *fail_diag; /* why the last address failed */
};

struct queue {
	struct loop *l;
	struct pool *p;
	struct store *st;
	struct dns *dns;
	const struct config *cfg;
	SSL_CTX *client_ctx;
	char *owner;
	char *relay_host;
	unsigned relay_port;
	struct timer *timer;
	uint64_t timer_at; /* when it fires (loop_now's milliseconds) */
	bool leasing, kicked, stopping;
	bool starved; /* a tick found no room: more may be due in the store */
	struct qdest *dests;
	struct qconn *conns;
	struct qjob *live; /* every job alive: waiting, in flight or recording */
	/* The queue entry ids of the live jobs (entry ids are unique row ids):
	 * entry_live is one lookup, not a walk over every live job. Chained,
	 * power-of-two buckets, grown at load 1. */
	struct qlive_node **live_ids;
	size_t live_cap, n_live_ids;
	int n_conns;
	size_t n_waiting;
	size_t max_waiting; /* QUEUE_MAX_WAITING, or less under a low fd limit */
	size_t lease_room;  /* groups asked for by the lease in progress */
	int n_records; /* jobs finishing (DSNs, store_queue_record) */
	loop_cb *stop_done;
	void *stop_arg;
};

static void tick(void *arg);
static void dispatch(struct queue *q);
static void conn_next(struct qconn *cn);
static void try_next_addr(struct qconn *cn);

/* ---- timers ---- */

/* Looks again at when (absolute, seconds), or sooner if already set so.
 * The comparison is in the loop's milliseconds: a timer set at 19.967 for
 * "second 20" fires at 20.967, and a kick at 20.003 ("now", second 20)
 * must not take it for as soon (it did: mail committed in that window
 * waited for the poll and was leased after the open connection it could
 * have gone on had quit). */
static void schedule(struct queue *q, time_t when)
{
	if (q->stopping)
		return;
	time_t now = time(NULL);
	if (when < now)
		when = now;
	uint64_t at = loop_now(q->l) + (uint64_t)(when - now) * 1000;
	if (q->timer != NULL && q->timer_at <= at)
		return;
	loop_timer_cancel(q->l, &q->timer);
	q->timer_at = at;
	q->timer = loop_timer_add(q->l, (uint64_t)(when - now) * 1000, tick, q);
}

static void stop_check(struct queue *q)
{
	if (!q->stopping || q->stop_done == NULL || q->leasing || q->n_conns > 0 ||
	    q->n_records > 0 || q->n_waiting > 0)
		return;
	loop_cb *done = q->stop_done;
	q->stop_done = NULL;
	done(q->stop_arg);
}

/* ---- destinations ---- */

static struct qdest *dest_get(struct queue *q, const char *domain)
{
	bool relay = queue_relay_applies(q->relay_host, q->cfg->relayhost_domains, domain);
	const char *name = relay ? q->relay_host : domain;
	struct qdest **pp = &q->dests;
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->relay == relay && strcmp((*pp)->name, name) == 0)
			return *pp;
	/* a new destination joins the end of the round (dispatch) */
	struct qdest *d = xcalloc(1, sizeof *d);
	d->name = xstrdup(name);
	d->relay = relay;
	*pp = d;
	return d;
}

static void dest_gc(struct queue *q, struct qdest *d)
{
	if (d->n_jobs > 0 || d->n_conns > 0)
		return;
	for (struct qdest **pp = &q->dests; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	free(d->name);
	free(d);
}

static struct qjob *dest_pop(struct qdest *d)
{
	struct qjob *j = d->head;
	if (j == NULL)
		return NULL;
	d->head = j->next;
	if (d->head == NULL)
		d->tail = NULL;
	j->next = NULL;
	d->n_jobs--;
	struct queue *q = j->q;
	q->n_waiting--;
	/* Room again (half the cap, not one job at a time): lease the rest of
	 * what is due now, not at the next queue_poll. */
	if (q->starved && q->n_waiting <= q->max_waiting / 2) {
		q->starved = false;
		schedule(q, time(NULL));
	}
	return j;
}

/* ---- the live entry index ---- */

struct qlive_node {
	int64_t id;
	struct qlive_node *next;
};

static size_t live_slot(int64_t id, size_t cap)
{
	uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull; /* Fibonacci hashing */
	return (size_t)(h >> 32) & (cap - 1);
}

static void live_ids_add(struct queue *q, int64_t id)
{
	if (q->n_live_ids + 1 > q->live_cap) {
		size_t cap = q->live_cap ? q->live_cap * 2 : 64;
		struct qlive_node **v = xcalloc(cap, sizeof *v);
		for (size_t b = 0; b < q->live_cap; b++)
			for (struct qlive_node *n = q->live_ids[b], *next; n; n = next) {
				next = n->next;
				size_t k = live_slot(n->id, cap);
				n->next = v[k];
				v[k] = n;
			}
		free(q->live_ids);
		q->live_ids = v;
		q->live_cap = cap;
	}
	struct qlive_node *n = xmalloc(sizeof *n);
	size_t k = live_slot(id, q->live_cap);
	n->id = id;
	n->next = q->live_ids[k];
	q->live_ids[k] = n;
	q->n_live_ids++;
}

static void live_ids_del(struct queue *q, int64_t id)
{
	if (q->live_cap == 0)
		return;
	for (struct qlive_node **pp = &q->live_ids[live_slot(id, q->live_cap)]; *pp;
	     pp = &(*pp)->next)
		if ((*pp)->id == id) {
			struct qlive_node *n = *pp;
			*pp = n->next;
			free(n);
			q->n_live_ids--;
			return;
		}
}

static bool live_ids_has(const struct queue *q, int64_t id)
{
	if (q->live_cap == 0)
		return false;
	for (const struct qlive_node *n = q->live_ids[live_slot(id, q->live_cap)]; n; n = n->next)
		if (n->id == id)
			return true;
	return false;
}

/* ---- finishing a job: log, DSNs, record ---- */

static void job_free(struct qjob *j)
{
	for (size_t i = 0; i < j->m.n_rcpt; i++)
		live_ids_del(j->q, j->m.rcpt[i].id);
	if (j->live_prev)
		j->live_prev->live_next = j->live_next;
	else
		j->q->live = j->live_next;
	if (j->live_next)
		j->live_next->live_prev = j->live_prev;
	smtp_client_msg_reset(&j->cm);
	store_queue_msg_free(&j->m);
	free(j->cr);
	free(j->res);
	for (int k = 0; k < 3; k++)
		free(j->br[k]);
	free(j->mx);
	free(j->ip);
	free(j->tls);
	free(j);
}

static void on_recorded(void *arg, int result)
{
	struct qjob *j = arg;
	struct queue *q = j->q;
	if (result != 0)
		log_err("queue id=%lld: results not recorded (retried when the lease expires)",
		        (long long)j->m.message_id);
	job_free(j);
	q->n_records--;
	stop_check(q);
}

static void job_record(struct qjob *j)
{
	struct queue *q = j->q;
	time_t next = 0;
	for (size_t i = 0; i < j->m.n_rcpt; i++)
		if (j->res[i].outcome == STORE_QUEUE_RETRY &&
		    (next == 0 || j->res[i].next_try < next))
			next = j->res[i].next_try;
	if (next != 0)
		schedule(q, next);
	store_queue_record(q->st, q->owner, j->now, j->res, j->m.n_rcpt, on_recorded, j);
}

static void on_dsn(void *arg, int result);

struct dsn_ctx {
	struct qjob *j;
	int kind;
};

static void on_dsn(void *arg, int result)
{
	struct dsn_ctx *c = arg;
	struct qjob *j = c->j;
	struct queue *q = j->q;
	if (result != 0) {
		/* Not stored: a failed DSN's recipients stay queued (the bounce is
		 * tried again with them); a delayed one is sent at the next try. */
		for (size_t i = 0; i < j->n_br[c->kind]; i++) {
			const char *rcpt = j->br[c->kind][i].rcpt;
			for (size_t k = 0; k < j->m.n_rcpt; k++) {
				if (strcmp(j->m.rcpt[k].rcpt, rcpt) != 0)
					continue;
				if (c->kind == 0) {
					j->res[k].outcome = STORE_QUEUE_RETRY;
					j->res[k].next_try =
					    j->now + (time_t)q->cfg->queue_retry_min;
				} else if (c->kind == 1) {
					j->res[k].delay_notified = false;
				}
			}
		}
		log_warn("queue id=%lld: DSN not stored; tried again later",
		         (long long)j->m.message_id);
	}
	free(c);
	if (--j->dsn_pending == 0)
		job_record(j);
}

static void kick_cb(void *arg)
{
	queue_kick(arg);
}

static void job_dsns(struct qjob *j)
{
	struct queue *q = j->q;
	j->dsn_pending = 1;
	for (int k = 0; k < 3; k++) {
		if (j->n_br[k] == 0)
			continue;
		struct bounce_msg bm = {
		    .queue_id = NULL,
		    .mail_from = j->m.mail_from,
		    .envid = j->m.envid,
		    .ret = j->m.ret,
		    .received = j->m.received,
		    .fd = j->m.fd,
		    .size = j->m.size,
		    .rcpt = j->br[k],
		    .n_rcpt = j->n_br[k],
		};
		char qid[32];
		snprintf(qid, sizeof qid, "%lld", (long long)j->m.message_id);
		bm.queue_id = qid;
		struct dsn_ctx *c = xcalloc(1, sizeof *c);
		c->j = j;
		c->kind = k;
		j->dsn_pending++;
		bounce_send(q->st, q->p, q->cfg->hostname, &bm, kick_cb, q, on_dsn, c);
	}
	if (--j->dsn_pending == 0)
		job_record(j);
}

static void br_add(struct qjob *j, int kind, size_t i, enum bounce_action action,
                   const char *status, const char *diag)
{
	if (j->br[kind] == NULL)
		j->br[kind] = xcalloc(j->m.n_rcpt, sizeof *j->br[kind]);
	struct store_queue_rcpt *r = &j->m.rcpt[i];
	j->br[kind][j->n_br[kind]++] = (struct bounce_rcpt){
	    .rcpt = r->rcpt,
	    .orcpt = r->orcpt,
	    .notify = r->notify,
	    .action = action,
	    .status = status,
	    .remote_mta = j->mx,
	    .diag = diag,
	    /* a reply code: the next hop's words; 0: our own verdict */
	    .diag_remote = j->cr != NULL && j->cr[i].code != 0,
	    .last_attempt = j->now,
	    .will_retry_until = r->created + (time_t)j->q->cfg->queue_lifetime,
	};
}

/* Every recipient of j has its result in j->cr (or the uniform one given by
 * job_fail): decide, log one line each, send the DSNs, record. */
static void job_finish(struct qjob *j, bool dsn_relayed)
{
	struct queue *q = j->q;
	const struct config *cfg = q->cfg;
	j->now = time(NULL);
	j->res = xcalloc(j->m.n_rcpt ? j->m.n_rcpt : 1, sizeof *j->res);
	for (size_t i = 0; i < j->m.n_rcpt; i++) {
		struct store_queue_rcpt *r = &j->m.rcpt[i];
		struct smtp_client_rcpt *c = &j->cr[i];
		int st = c->status == SMTP_ST_OK ? 1 : c->status == SMTP_ST_PERM ? -1 : 0;
		time_t next = 0;
		enum queue_verdict v =
		    queue_verdict(st, j->now, r->created, r->attempts, cfg->queue_retry_min,
		                  cfg->queue_retry_max, cfg->queue_lifetime, &next);
		if (c->enh[0] == '\0')
			snprintf(c->enh, sizeof c->enh, "%s",
			         st > 0   ? "2.0.0"
			         : st < 0 ? "5.0.0"
			                  : "4.0.0");
		const char *reply = c->reply ? c->reply : "";
		struct store_queue_result *res = &j->res[i];
		res->id = r->id;
		res->outcome = v == QUEUE_V_RETRY ? STORE_QUEUE_RETRY : STORE_QUEUE_DONE;
		res->next_try = next;
		res->last_error = c->reply;
		static const char *const words[] = {[QUEUE_V_SENT] = "sent",
		                                    [QUEUE_V_BOUNCE] = "bounced",
		                                    [QUEUE_V_EXPIRED] = "expired",
		                                    [QUEUE_V_RETRY] = "deferred"};
		log_info("queue delivery id=%lld result=%s rcpt=%s mx=%s ip=%s tls=%s status=%s "
		         "delay=%llds attempts=%d reply=%s",
		         (long long)j->m.message_id, words[v], r->rcpt, j->mx ? j->mx : "-",
		         j->ip ? j->ip : "-", j->tls && j->tls[0] ? j->tls : "-", c->enh,
		         (long long)(j->now - j->m.received), r->attempts + 1, reply);
		switch (v) {
		case QUEUE_V_SENT:
			/* RFC 3461 4.1: SUCCESS asked, and the next hop will not say */
			if (!dsn_relayed && queue_notify_has(r->notify, "SUCCESS"))
				br_add(j, 2, i, BOUNCE_RELAYED, c->enh, reply);
			break;
		case QUEUE_V_BOUNCE:
			br_add(j, 0, i, BOUNCE_FAILED, c->enh, reply);
			break;
		case QUEUE_V_EXPIRED:
			/* RFC 3463 X.4.7: delivery time expired */
			snprintf(c->enh, sizeof c->enh, "4.4.7");
			br_add(j, 0, i, BOUNCE_FAILED, c->enh, reply);
			break;
		case QUEUE_V_RETRY:
			if (queue_delay_due(j->now, r->created, cfg->queue_delay_warning,
			                    r->delay_notified)) {
				res->delay_notified = true;
				br_add(j, 1, i, BOUNCE_DELAYED, c->enh, reply);
			}
			break;
		}
	}
	q->n_records++;
	job_dsns(j);
}

static void job_prepare(struct qjob *j)
{
	if (j->cr != NULL)
		return;
	j->cr = xcalloc(j->m.n_rcpt ? j->m.n_rcpt : 1, sizeof *j->cr);
	for (size_t i = 0; i < j->m.n_rcpt; i++) {
		j->cr[i].addr = j->m.rcpt[i].rcpt;
		j->cr[i].orcpt = j->m.rcpt[i].orcpt;
		j->cr[i].notify = j->m.rcpt[i].notify;
	}
	j->cm = (struct smtp_client_msg){
	    .mail_from = j->m.mail_from,
	    .envid = j->m.envid,
	    .ret = j->m.ret,
	    .fd = j->m.fd,
	    .offset = j->m.return_path_len,
	    .size = j->m.size - j->m.return_path_len,
	    .body_8bit = j->m.body_8bit,
	    .smtputf8 = j->m.smtputf8,
	    .mime_cache = j->m.cache,
	    .mime_cache_len = j->m.cache_len,
	    .rcpt = j->cr,
	    .n_rcpt = j->m.n_rcpt,
	};
}

/* Every recipient of j gets the same result (no connection, DNS...). */
static void job_fail(struct qjob *j, enum smtp_status status, const char *enh, const char *diag)
{
	job_prepare(j);
	for (size_t i = 0; i < j->m.n_rcpt; i++) {
		free(j->cr[i].reply);
		j->cr[i].status = status;
		j->cr[i].code = 0;
		snprintf(j->cr[i].enh, sizeof j->cr[i].enh, "%s", enh);
		j->cr[i].reply = xstrdup(diag);
	}
	job_finish(j, false);
}

/* Every job waiting for d gets the same result. */
static void dest_fail(struct qdest *d, enum smtp_status status, const char *enh, const char *diag)
{
	struct qjob *j;
	while ((j = dest_pop(d)) != NULL)
		job_fail(j, status, enh, diag);
}

/* ---- connections ---- */

static void conn_end(struct qconn *cn)
{
	struct queue *q = cn->q;
	struct qdest *d = cn->dest;
	dns_cancel(&cn->dq);
	smtp_client_close(&cn->c);
	if (cn->opening)
		d->n_opening--;
	for (struct qconn **pp = &q->conns; *pp; pp = &(*pp)->next)
		if (*pp == cn) {
			*pp = cn->next;
			break;
		}
	for (size_t i = 0; i < cn->n_addrs; i++)
		free(cn->addrs[i].host);
	free(cn->addrs);
	free(cn->fail_diag);
	free(cn);
	q->n_conns--;
	d->n_conns--;
	dest_gc(q, d);
	if (q->stopping)
		stop_check(q);
	else
		dispatch(q);
}

static void addr_text(const struct sockaddr_storage *a, char *out, size_t n)
{
	if (a->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, out,
		          (socklen_t)n);
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, out, (socklen_t)n);
}

static void on_sent(void *arg, struct smtp_client *c, struct smtp_client_msg *m, bool conn_ok)
{
	struct qconn *cn = arg;
	struct qjob *j = cn->job;
	cn->job = NULL;
	cn->sent++;
	const struct smtp_client_info *info = smtp_client_info(c);
	j->tls = xstrdup(info && info->tls ? info->tls : "");
	job_finish(j, m->dsn_relayed);
	if (!conn_ok) {
		conn_end(cn);
		return;
	}
	conn_next(cn);
}

/* The next job on an open connection, or QUIT. */
static void conn_next(struct qconn *cn)
{
	struct queue *q = cn->q;
	struct qjob *j = NULL;
	if (!q->stopping && cn->sent < q->cfg->queue_max_per_connection)
		j = dest_pop(cn->dest);
	if (j == NULL) {
		conn_end(cn); /* QUIT: smtp_client_close */
		return;
	}
	cn->job = j;
	job_prepare(j);
	struct qaddr *a = &cn->addrs[cn->cur - 1];
	char ip[INET6_ADDRSTRLEN];
	addr_text(&a->addr, ip, sizeof ip);
	free(j->mx);
	free(j->ip);
	j->mx = xstrdup(a->host);
	j->ip = xstrdup(ip);
	if (j->m.fd < 0) {
		/* the blob is gone (cannot happen unless the data directory was
		 * damaged): retried, and logged with the reason */
		cn->job = NULL;
		job_fail(j, SMTP_ST_TEMP, "4.3.0", j->m.err ? j->m.err : "message unreadable");
		conn_next(cn);
		return;
	}
	smtp_client_send(cn->c, &j->cm, on_sent, cn);
}

static void on_open(void *arg, struct smtp_client *c, bool ok, enum smtp_status status,
                    const char *diag)
{
	struct qconn *cn = arg;
	if (!ok) {
		/* RFC 5321 5.1: on to the next address */
		struct qaddr *a = &cn->addrs[cn->cur - 1];
		char ip[INET6_ADDRSTRLEN];
		addr_text(&a->addr, ip, sizeof ip);
		free(cn->fail_diag);
		cn->fail_diag = xasprintf("%s[%s]: %s", a->host, ip, diag ? diag : "failed");
		cn->fail_status = status;
		log_info("queue connect dest=%s mx=%s ip=%s failed: %s", cn->dest->name, a->host,
		         ip, diag ? diag : "-");
		smtp_client_close(&cn->c);
		try_next_addr(cn);
		return;
	}
	cn->opening = false;
	struct qdest *d = cn->dest;
	d->n_opening--;
	if (d->cap > 0 && d->n_conns - d->n_opening >= d->cap)
		d->cap = d->n_conns - d->n_opening + 1; /* it took this many: try one more */
	conn_next(cn);
}

static void try_next_addr(struct qconn *cn)
{
	struct queue *q = cn->q;
	if (q->stopping || cn->cur == cn->n_addrs) {
		struct qdest *d = cn->dest;
		int open = d->n_conns - d->n_opening; /* cn is still opening */
		if (!q->stopping && open > 0) {
			/* Other connections to it are open: the next hop limits
			 * how many it takes at once. Its waiting jobs go on those
			 * (deferring them would delay mail it is taking, RFC 5321
			 * 4.5.4.1), and no more than that are opened. */
			d->cap = open;
			log_info("queue dest=%s: connection refused while %d open; at most %d now: %s",
			         d->name, open, open, cn->fail_diag ? cn->fail_diag : "-");
			conn_end(cn);
			return;
		}
		/* every address failed: the destination's waiting jobs are
		 * deferred (a refused greeting too: another host may be back) */
		if (!q->stopping)
			dest_fail(cn->dest, SMTP_ST_TEMP, "4.4.1",
			          cn->fail_diag ? cn->fail_diag : "no address to try");
		conn_end(cn);
		return;
	}
	struct qaddr *a = &cn->addrs[cn->cur++];
	const struct config *cfg = q->cfg;
	struct smtp_client_config cc = {
	    .helo = cfg->hostname,
	    .connect_timeout = cfg->outbound_connect_timeout,
	    .command_timeout = cfg->outbound_command_timeout,
	    .data_timeout = cfg->outbound_data_timeout,
	    .max_reply = cfg->outbound_max_reply,
	    .tls_ctx = q->client_ctx,
	};
	struct smtp_client_target t = {
	    .host = a->host,
	    .addr = a->addr,
	    .addrlen = a->len,
	};
	if (cn->dest->relay) {
		const char *m = cfg->relayhost_tls;
		t.tls = strcmp(m, "none") == 0       ? SMTP_TLS_NONE
		        : strcmp(m, "implicit") == 0 ? SMTP_TLS_IMPLICIT
		        : cfg->relayhost_tls_verify  ? SMTP_TLS_VERIFY
		                                     : SMTP_TLS_ENCRYPT;
		t.verify = cfg->relayhost_tls_verify;
		t.auth_user = cfg->relayhost_user;
		t.auth_pass = cfg->relayhost_password;
	} else {
		const char *m = cfg->outbound_tls;
		t.tls = strcmp(m, "none") == 0      ? SMTP_TLS_NONE
		        : strcmp(m, "encrypt") == 0 ? SMTP_TLS_ENCRYPT
		        : strcmp(m, "verify") == 0  ? SMTP_TLS_VERIFY
		                                    : SMTP_TLS_MAY;
	}
	cn->c = smtp_client_open(q->l, &cc, &t, on_open, cn);
}

static void set_port(struct sockaddr_storage *a, unsigned port)
{
	if (a->ss_family == AF_INET6)
		((struct sockaddr_in6 *)a)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)a)->sin_port = htons((uint16_t)port);
}

static void on_mx(void *arg, const struct dns_mx_result *r)
{
	struct qconn *cn = arg;
	struct qdest *d = cn->dest;
	cn->dq = NULL;
	switch (r->status) {
	case DNS_MX_NULL:
		/* RFC 7505 3: 556 5.1.10 */
		dest_fail(d, SMTP_ST_PERM, "5.1.10",
		          "Recipient address has null MX (RFC 7505): the domain accepts no mail");
		conn_end(cn);
		return;
	case DNS_MX_NXDOMAIN:
		/* RFC 3463 X.1.2: bad destination system address */
		if (d->relay)
			dest_fail(d, SMTP_ST_TEMP, "4.4.3", "relay host not found in DNS");
		else
			dest_fail(
			    d, SMTP_ST_PERM, "5.1.2",
			    "Host or domain name not found (NXDOMAIN, or no MX and no address)");
		conn_end(cn);
		return;
	case DNS_MX_TEMPFAIL:
		dest_fail(d, SMTP_ST_TEMP, "4.4.3", "DNS lookup failed temporarily");
		conn_end(cn);
		return;
	case DNS_MX_OK:
		break;
	}
	unsigned port = d->relay ? cn->q->relay_port : (unsigned)cn->q->cfg->outbound_port;
	size_t n = 0;
	for (size_t i = 0; i < r->n; i++)
		n += r->hosts[i].n_addr;
	cn->addrs = xcalloc(n ? n : 1, sizeof *cn->addrs);
	for (size_t i = 0; i < r->n; i++)
		for (size_t k = 0; k < r->hosts[i].n_addr; k++) {
			struct qaddr *a = &cn->addrs[cn->n_addrs++];
			a->host = xstrdup(r->hosts[i].name);
			a->addr = r->hosts[i].addr[k];
			a->len = a->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
			                                       : sizeof(struct sockaddr_in);
			set_port(&a->addr, port);
		}
	try_next_addr(cn);
}

static void conn_start(struct queue *q, struct qdest *d)
{
	struct qconn *cn = xcalloc(1, sizeof *cn);
	cn->q = q;
	cn->dest = d;
	cn->opening = true;
	cn->next = q->conns;
	q->conns = cn;
	q->n_conns++;
	d->n_conns++;
	d->n_opening++;
	const char *inet = q->cfg->outbound_inet;
	cn->dq = d->relay ? dns_resolve_host(q->dns, q->relay_host, inet, on_mx, cn)
	                  : dns_resolve_mx(q->dns, d->name, inet, on_mx, cn);
	if (cn->dq == NULL) {
		dest_fail(d, SMTP_ST_TEMP, "4.4.3", "DNS lookup could not start");
		conn_end(cn);
	}
}

/* Moves d to the end of q->dests. */
static void dest_to_tail(struct queue *q, struct qdest *d)
{
	struct qdest **pp = &q->dests;
	while (*pp != d)
		pp = &(*pp)->next;
	*pp = d->next;
	while (*pp)
		pp = &(*pp)->next;
	*pp = d;
	d->next = NULL;
}

/* Opens connections for waiting jobs, within the limits. The destinations
 * take turns: one that got a connection goes to the end of the list, so a
 * destination that keeps getting mail cannot starve one that waited
 * longer while the connections are all in use. */
static void dispatch(struct queue *q)
{
	if (q->stopping)
		return;
	bool again = true;
	while (again) {
		again = false;
		for (struct qdest *d = q->dests; d; d = d->next) {
			if (q->n_conns >= q->cfg->queue_max_connections)
				return;
			/* a connection being opened will take a job; more jobs
			 * than that warrant another connection */
			int limit = q->cfg->queue_max_per_destination;
			if (d->cap > 0 && d->cap < limit)
				limit = d->cap;
			if (d->n_jobs > (size_t)d->n_opening && d->n_conns < limit) {
				dest_to_tail(q, d);
				conn_start(q, d); /* may fail at once and change the list */
				again = true;
				break;
			}
		}
	}
}

/* ---- leasing ---- */

/* Shutdown: jobs still waiting for a connection are given back untried
 * (their leases cleared: due again at once, here or on another node). */
static void give_back(struct queue *q)
{
	for (struct qdest *d = q->dests, *next; d; d = next) {
		next = d->next;
		struct qjob *j;
		while ((j = dest_pop(d)) != NULL) {
			j->res = xcalloc(j->m.n_rcpt ? j->m.n_rcpt : 1, sizeof *j->res);
			for (size_t i = 0; i < j->m.n_rcpt; i++)
				j->res[i] = (struct store_queue_result){
				    .id = j->m.rcpt[i].id, .outcome = STORE_QUEUE_UNLEASE};
			j->now = time(NULL);
			q->n_records++;
			store_queue_record(q->st, q->owner, j->now, j->res, j->m.n_rcpt,
			                   on_recorded, j);
		}
		dest_gc(q, d);
	}
}

/* Whether queue entry id of message mid is already some live job's. */
static bool entry_live(struct queue *q, int64_t mid, int64_t id)
{
	(void)mid; /* entry ids are unique across messages */
	return live_ids_has(q, id);
}

/* A lease that outlives queue_lease (a job waiting behind slow ones, a long
 * transfer) expires while its job still runs; the next lease of this node
 * takes the same entries again (refreshing the lease, which is right). They
 * must not become a second job: two attempts for one entry deliver twice,
 * or deliver and bounce. Drops them from m; false if none is left. */
static bool lease_filter(struct queue *q, struct store_queue_msg *m)
{
	size_t k = 0;
	for (size_t i = 0; i < m->n_rcpt; i++) {
		if (entry_live(q, m->message_id, m->rcpt[i].id)) {
			free(m->rcpt[i].rcpt);
			free(m->rcpt[i].orcpt);
			free(m->rcpt[i].notify);
			free(m->rcpt[i].last_error);
			continue;
		}
		m->rcpt[k++] = m->rcpt[i];
	}
	m->n_rcpt = k;
	return k > 0;
}

static void on_lease(void *arg, int result, struct store_queue_lease *l)
{
	struct queue *q = arg;
	q->leasing = false;
	time_t now = time(NULL);
	time_t next = now + (time_t)q->cfg->queue_poll;
	if (result == 0) {
		for (size_t i = 0; i < l->n_msg; i++) {
			if (!lease_filter(q, &l->msg[i])) {
				store_queue_msg_free(&l->msg[i]);
				continue;
			}
			struct qjob *j = xcalloc(1, sizeof *j);
			j->q = q;
			j->m = l->msg[i];
			j->live_next = q->live;
			if (q->live)
				q->live->live_prev = j;
			q->live = j;
			for (size_t k = 0; k < j->m.n_rcpt; k++)
				live_ids_add(q, j->m.rcpt[k].id);
			j->dest = dest_get(q, j->m.domain);
			if (j->dest->tail)
				j->dest->tail->next = j;
			else
				j->dest->head = j;
			j->dest->tail = j;
			j->dest->n_jobs++;
			q->n_waiting++;
		}
		bool full = l->n_msg == q->lease_room;
		if (l->next_due != 0 && l->next_due < next)
			next = l->next_due;
		l->n_msg = 0; /* the jobs own them now */
		store_queue_lease_free(&l);
		if (q->stopping)
			give_back(q); /* leased while stopping: untried */
		dispatch(q);
		if (full || q->kicked)
			next = now;
	}
	q->kicked = false;
	schedule(q, next);
	stop_check(q);
}

static void tick(void *arg)
{
	struct queue *q = arg;
	q->timer = NULL;
	if (q->stopping)
		return;
	if (q->leasing) {
		q->kicked = true;
		return;
	}
	size_t room = q->n_waiting >= q->max_waiting ? 0 : q->max_waiting - q->n_waiting;
	if (room > QUEUE_LEASE_BATCH)
		room = QUEUE_LEASE_BATCH;
	if (room == 0) {
		/* dest_pop looks again once room is made */
		q->starved = true;
		schedule(q, time(NULL) + (time_t)q->cfg->queue_poll);
		return;
	}
	q->leasing = true;
	q->lease_room = room;
	store_queue_lease(q->st, q->owner, time(NULL), q->cfg->queue_lease, room, on_lease, q);
}

/* ---- the interface ---- */

struct queue *queue_new(struct loop *l, struct pool *p, struct store *st, struct dns *dns,
                        const struct config *cfg, SSL_CTX *client_ctx, char **err_r)
{
	char *host = NULL;
	unsigned port = 0;
	if (cfg->relayhost[0] != '\0') {
		unsigned def = strcmp(cfg->relayhost_tls, "implicit") == 0 ? 465 : 587;
		if (queue_parse_hostport(cfg->relayhost, def, &host, &port, err_r) < 0) {
			char *e = *err_r;
			*err_r = xasprintf("relayhost: %s", e);
			free(e);
			return NULL;
		}
	}
	struct queue *q = xcalloc(1, sizeof *q);
	q->l = l;
	q->p = p;
	q->st = st;
	q->dns = dns;
	q->cfg = cfg;
	q->client_ctx = client_ctx;
	q->relay_host = host;
	q->relay_port = port;
	/* Every leased job holds its blob open until it is done: under the
	 * common soft limit of 1024 descriptors, 2000 waiting jobs would starve
	 * the listeners, the connections and SQLite (EMFILE). A quarter of the
	 * descriptors still free at most. */
	q->max_waiting = QUEUE_MAX_WAITING;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		size_t used = 0;
		DIR *dir = opendir("/proc/self/fd");
		if (dir != NULL) {
			while (readdir(dir) != NULL)
				used++;
			closedir(dir);
		}
		size_t free_fds = rl.rlim_cur > used ? (size_t)rl.rlim_cur - used : 0;
		if (free_fds / 4 < q->max_waiting)
			q->max_waiting = free_fds / 4 > 0 ? free_fds / 4 : 1;
	}
	/* The lease owner: this node. Leases it held before a crash are free
	 * again at once (nothing of it is in flight now). */
	q->owner = xstrdup(cfg->hostname);
	int n = store_queue_unlease_owner(st, q->owner);
	if (n > 0)
		log_info("queue: %d entries leased before a restart are due again", n);
	schedule(q, time(NULL));
	return q;
}

void queue_kick(struct queue *q)
{
	if (q == NULL || q->stopping)
		return;
	if (q->leasing) {
		q->kicked = true;
		return;
	}
	schedule(q, time(NULL));
}

void queue_stop(struct queue *q, loop_cb *done, void *arg)
{
	q->stopping = true;
	q->stop_done = done;
	q->stop_arg = arg;
	loop_timer_cancel(q->l, &q->timer);
	give_back(q);
	/* Connections: idle or opening ones end now (QUIT); one in a
	 * transaction is cut, and its entries keep their lease (released at
	 * the next start: store_queue_unlease_owner): nothing is marked
	 * delivered that was not. */
	while (q->conns != NULL) {
		struct qconn *cn = q->conns;
		if (cn->job != NULL) {
			log_info("queue id=%lld: delivery cut by shutdown; retried after restart",
			         (long long)cn->job->m.message_id);
			smtp_client_close(&cn->c); /* before the message it reads goes */
			job_free(cn->job);
			cn->job = NULL;
		}
		conn_end(cn);
	}
	stop_check(q);
}

void queue_free(struct queue **qp)
{
	struct queue *q = *qp;
	if (q == NULL)
		return;
	loop_timer_cancel(q->l, &q->timer);
	while (q->conns != NULL) {
		struct qconn *cn = q->conns;
		if (cn->job != NULL) {
			smtp_client_close(&cn->c);
			job_free(cn->job);
			cn->job = NULL;
		}
		q->stopping = true;
		conn_end(cn);
	}
	for (struct qdest *d = q->dests, *next; d; d = next) {
		next = d->next;
		struct qjob *j;
		while ((j = dest_pop(d)) != NULL)
			job_free(j);
		free(d->name);
		free(d);
	}
	/* jobs still recording (their DSN or store_queue_record in flight)
	 * are not freed here; their index nodes go with the table */
	for (size_t b = 0; b < q->live_cap; b++)
		for (struct qlive_node *n = q->live_ids[b], *next; n; n = next) {
			next = n->next;
			free(n);
		}
	free(q->live_ids);
	free(q->owner);
	free(q->relay_host);
	x_free(qp);
}
