/* Sending DSNs for queued mail (see bounce.h): filter by NOTIFY, find where
 * the sender lives (loop thread), build the report into a spool on a worker
 * (src/mime/dsn.h reads the original with pread, block by block), commit
 * on the loop thread. */
#include "queue/bounce.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/xmalloc.h"
#include "mime/dsn.h"
#include "policy/srs.h"

struct bounce_job {
	struct store *st;
	struct pool *p;
	char *hostname, *queue_id, *mail_from, *envid, *txid, *msgid, *boundary;
	bool full;
	time_t received;
	int fd; /* our dup of the original's */
	uint64_t size;
	struct dsn_rcpt *rcpt;
	size_t n_rcpt;
	int64_t *user_ids;
	size_t n_users;
	struct store_remote_rcpt *remote;
	size_t n_remote;
	void (*kick)(void *kick_arg);
	void *kick_arg;
	bounce_cb *cb;
	void *arg;
	struct store_spool *sp; /* built by the worker */
	char *err;
	int result;
};

static char *dup_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* RFC 3461 4.1: NOTIFY=NEVER, or a list of SUCCESS, FAILURE, DELAY; absent
 * means FAILURE,DELAY (the default of RFC 3461 4.1 as Postfix and most MTAs
 * read it). */
static bool notify_wants(const char *notify, enum bounce_action a)
{
	const char *want = a == BOUNCE_FAILED    ? "FAILURE"
	                   : a == BOUNCE_DELAYED ? "DELAY"
	                                         : "SUCCESS";
	if (notify == NULL || notify[0] == '\0')
		return a == BOUNCE_FAILED || a == BOUNCE_DELAYED;
	size_t wl = strlen(want);
	for (const char *p = notify; *p != '\0';) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == wl && strncasecmp(p, want, n) == 0)
			return true;
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

static const char *kind_name(enum dsn_action k)
{
	return k == DSN_FAILED ? "failed" : k == DSN_DELAYED ? "delayed" : "success";
}

static void job_free(struct bounce_job *j)
{
	free(j->hostname);
	free(j->queue_id);
	free(j->mail_from);
	free(j->envid);
	free(j->txid);
	free(j->msgid);
	free(j->boundary);
	for (size_t i = 0; i < j->n_rcpt; i++) {
		free((char *)j->rcpt[i].rcpt);
		free((char *)j->rcpt[i].orcpt);
		free((char *)j->rcpt[i].status);
		free((char *)j->rcpt[i].remote_mta);
		free((char *)j->rcpt[i].diag);
	}
	free(j->rcpt);
	free(j->user_ids);
	for (size_t i = 0; i < j->n_remote; i++)
		free((char *)j->remote[i].addr);
	free(j->remote);
	if (j->sp != NULL)
		store_spool_discard(&j->sp);
	if (j->fd >= 0)
		close(j->fd);
	free(j->err);
	free(j);
}

static void finish(struct bounce_job *j, int result)
{
	j->cb(j->arg, result);
	job_free(j);
}

static void noop_work(void *arg)
{
	(void)arg;
}

static void later_done(void *arg)
{
	struct bounce_job *j = arg;
	finish(j, j->result);
}

/* cb always runs later on the loop, never from inside bounce_send. */
static void finish_later(struct bounce_job *j, int result)
{
	j->result = result;
	pool_submit(j->p, noop_work, later_done, j);
}

static ssize_t read_orig(void *arg, void *p, size_t n, uint64_t off)
{
	struct bounce_job *j = arg;
	for (;;) {
		ssize_t r = pread(j->fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		return r;
	}
}

static int write_spool(void *arg, const void *p, size_t n)
{
	return store_spool_write(arg, p, n);
}

/* Worker: the whole DSN into a new spool. */
static void build_work(void *arg)
{
	struct bounce_job *j = arg;
	struct dsn_report r = {
	    .hostname = j->hostname,
	    .to = j->mail_from,
	    .queue_id = j->queue_id,
	    .envid = j->envid,
	    .arrival = j->received,
	    .now = time(NULL),
	    .msgid = j->msgid,
	    .boundary = j->boundary,
	    .full = j->full,
	    .rcpt = j->rcpt,
	    .n_rcpt = j->n_rcpt,
	    .no_original = j->fd < 0,
	};
	j->sp = store_spool_new(j->st, &j->err);
	if (j->sp == NULL) {
		j->result = -1;
		return;
	}
	/* RFC 5321 4.4: the final delivery's Return-Path; the DSN's sender is
	 * the null path (RFC 3461 6.2), as tx.c writes it for SMTP. */
	static const char rp[] = "Return-Path: <>\r\n";
	if (store_spool_write(j->sp, rp, sizeof rp - 1) < 0) {
		j->err = xasprintf("spool: %s", strerror(errno));
		j->result = -1;
	} else if (dsn_write(&r, read_orig, j, j->size, write_spool, j->sp, &j->err) < 0) {
		j->result = -1;
	}
	if (j->result < 0)
		store_spool_discard(&j->sp);
}

static void log_sent(struct bounce_job *j)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < j->n_rcpt; i++) {
		if (i > 0)
			buf_appendc(&b, ',');
		buf_appends(&b, j->rcpt[i].rcpt);
	}
	log_info("queue dsn sent queue_id=%s kind=%s local=%zu remote=%zu to=%s rcpts=%s",
	         j->queue_id, kind_name(dsn_kind(j->rcpt, j->n_rcpt)), j->n_users, j->n_remote,
	         j->mail_from, b.data);
	buf_free(&b);
}

static void commit_done(void *arg, int result)
{
	struct bounce_job *j = arg;
	if (result != STORE_COMMIT_OK) {
		log_warn("queue dsn not stored queue_id=%s result=%d to=%s (tried again later)",
		         j->queue_id, result, j->mail_from);
		finish(j, -1);
		return;
	}
	log_sent(j);
	if (j->n_remote > 0 && j->kick != NULL)
		j->kick(j->kick_arg);
	finish(j, 0);
}

static void build_done(void *arg)
{
	struct bounce_job *j = arg;
	if (j->result < 0) {
		log_err("queue dsn not built queue_id=%s: %s", j->queue_id, j->err ? j->err : "?");
		finish(j, -1);
		return;
	}
	struct store_delivery d = {
	    .txid = j->txid,
	    .mail_from = "", /* RFC 3461 6.2, RFC 5321 4.5.5: from the null path */
	    .received = time(NULL),
	    .user_ids = j->user_ids,
	    .n_users = j->n_users,
	    .remote = j->remote,
	    .n_remote = j->n_remote,
	};
	struct store_spool *sp = j->sp;
	j->sp = NULL;
	store_commit(j->st, sp, &d, commit_done, j);
}

static void add_remote(struct bounce_job *j, const char *addr)
{
	for (size_t i = 0; i < j->n_remote; i++)
		if (strcasecmp(j->remote[i].addr, addr) == 0)
			return;
	j->remote = xrealloc(j->remote, (j->n_remote + 1) * sizeof *j->remote);
	/* RFC 3461 4.1: NEVER, so that no next hop answers a DSN with a DSN */
	j->remote[j->n_remote++] =
	    (struct store_remote_rcpt){.addr = xstrdup(addr), .orcpt = NULL, .notify = "NEVER"};
}

static void add_user(struct bounce_job *j, int64_t id)
{
	for (size_t i = 0; i < j->n_users; i++)
		if (j->user_ids[i] == id)
			return;
	j->user_ids = xrealloc(j->user_ids, (j->n_users + 1) * sizeof *j->user_ids);
	j->user_ids[j->n_users++] = id;
}

static struct {
	char **secrets;
	size_t n;
	unsigned max_age;
} srs_cfg;

void bounce_set_srs(char **secrets, size_t n, unsigned max_age)
{
	srs_cfg.secrets = secrets;
	srs_cfg.n = secrets != NULL ? n : 0;
	srs_cfg.max_age = max_age;
}

/* The sender of forwarded mail was rewritten (SRS): the DSN goes to the
 * original sender the SRS address of ours decodes to, as our own RCPT path
 * (cmd.c) would send a bounce arriving at that address. Otherwise the local
 * part would be looked up as an account and the DSN dropped. 1 rewritten,
 * 0 not ours or not SRS, -1 forged or expired (logged; dropped). */
static int srs_decode(struct bounce_job *j, const char *domain)
{
	if (srs_cfg.n == 0 || !store_domain_is_local(j->st, domain))
		return 0;
	char *orig = NULL;
	const char *why = NULL;
	int r = srs_reverse((const char *const *)srs_cfg.secrets, srs_cfg.n, j->mail_from,
			    time(NULL), srs_cfg.max_age, &orig, &why);
	if (r < 0) {
		log_warn("queue dsn dropped queue_id=%s reason=invalid-srs (%s) to=%s",
		         j->queue_id, why, j->mail_from);
		return -1;
	}
	if (r == 1) {
		log_info("queue dsn queue_id=%s srs=%s to=%s", j->queue_id, j->mail_from, orig);
		free(j->mail_from);
		j->mail_from = orig;
	}
	return r;
}

/* Where the DSN goes: 1 found, 0 nowhere (logged), -1 error. */
static int route(struct bounce_job *j)
{
	const char *at = strrchr(j->mail_from, '@');
	if (at != NULL) {
		int k = srs_decode(j, at + 1);
		if (k < 0)
			return 0;
		if (k > 0)
			at = strrchr(j->mail_from, '@');
	}
	if (at == NULL || !store_domain_is_local(j->st, at + 1)) {
		if (at == NULL) {
			log_warn("queue dsn dropped queue_id=%s reason=sender-without-domain to=%s",
			         j->queue_id, j->mail_from);
			return 0;
		}
		add_remote(j, j->mail_from);
		return 1;
	}
	struct store_targets t = {0};
	int rc = store_resolve(j->st, j->mail_from, &t);
	if (rc == 1) {
		for (size_t i = 0; i < t.n; i++) {
			if (t.v[i].user_id > 0)
				add_user(j, t.v[i].user_id);
			else
				add_remote(j, t.v[i].addr);
		}
	}
	store_targets_free(&t);
	if (rc == 0 || (rc == 1 && j->n_users + j->n_remote == 0)) {
		log_warn("queue dsn dropped queue_id=%s reason=no-such-local-sender to=%s",
		         j->queue_id, j->mail_from);
		return 0;
	}
	return rc;
}

void bounce_send(struct store *st, struct pool *p, const char *hostname, const struct bounce_msg *m,
                 void (*kick)(void *kick_arg), void *kick_arg, bounce_cb *cb, void *arg)
{
	struct bounce_job *j = xcalloc(1, sizeof *j);
	j->st = st;
	j->p = p;
	j->fd = -1;
	j->hostname = xstrdup(hostname);
	j->queue_id = xstrdup(m->queue_id ? m->queue_id : "-");
	j->mail_from = xstrdup(m->mail_from ? m->mail_from : "");
	j->envid = dup_null(m->envid);
	j->full = m->ret != NULL && strcasecmp(m->ret, "FULL") == 0; /* RFC 3461 4.3 */
	j->received = m->received;
	j->size = m->size;
	j->kick = kick;
	j->kick_arg = kick_arg;
	j->cb = cb;
	j->arg = arg;
	j->rcpt = xcalloc(m->n_rcpt ? m->n_rcpt : 1, sizeof *j->rcpt);
	for (size_t i = 0; i < m->n_rcpt; i++) {
		const struct bounce_rcpt *br = &m->rcpt[i];
		if (!notify_wants(br->notify, br->action))
			continue;
		struct dsn_rcpt *dr = &j->rcpt[j->n_rcpt++];
		dr->rcpt = xstrdup(br->rcpt ? br->rcpt : "");
		dr->orcpt = dup_null(br->orcpt);
		dr->action = br->action == BOUNCE_FAILED      ? DSN_FAILED
		             : br->action == BOUNCE_DELAYED   ? DSN_DELAYED
		             : br->action == BOUNCE_DELIVERED ? DSN_DELIVERED
		                                              : DSN_RELAYED;
		dr->status = dup_null(br->status);
		dr->remote_mta = dup_null(br->remote_mta);
		dr->diag_remote = br->diag_remote;
		dr->diag = dup_null(br->diag);
		dr->last_attempt = br->last_attempt;
		dr->will_retry_until = br->will_retry_until;
	}
	if (j->n_rcpt == 0) {
		finish_later(j, 0);
		return;
	}
	/* RFC 3461 6.2, RFC 5321 6.1: a DSN about a message from the null
	 * sender (itself a DSN) goes nowhere. */
	if (j->mail_from[0] == '\0') {
		log_info("queue dsn dropped queue_id=%s kind=%s reason=null-sender", j->queue_id,
		         kind_name(dsn_kind(j->rcpt, j->n_rcpt)));
		finish_later(j, 0);
		return;
	}
	int rc = route(j);
	if (rc <= 0) {
		if (rc < 0)
			log_err("queue dsn queue_id=%s: cannot resolve the sender", j->queue_id);
		finish_later(j, rc < 0 ? -1 : 0);
		return;
	}
	/* The caller may close its fd once we return: the worker reads ours.
	 * No original (its blob is gone: a damaged data directory): the DSN
	 * goes without it rather than failing, and being retried, for ever. */
	if (m->fd < 0)
		log_warn("queue dsn queue_id=%s: the original is unreadable; the DSN goes "
		         "without it",
		         j->queue_id);
	else
		j->fd = dup(m->fd);
	if (m->fd >= 0 && j->fd < 0) {
		log_err("queue dsn queue_id=%s: dup: %s", j->queue_id, strerror(errno));
		finish_later(j, -1);
		return;
	}
	uint32_t r = rand_u32();
	j->txid = xasprintf("%s-dsn", j->queue_id);
	j->msgid = xasprintf("%s.dsn.%08X@%s", j->queue_id, r, hostname);
	/* RFC 2046 5.1.1: hard to guess (arc4random, not rand_u32's
	 * predictable stream; a bounce is rare); dsn_write checks it
	 * against the content */
	j->boundary = xasprintf("%s.%08X.%lld/%s", j->queue_id, arc4random(),
				(long long)time(NULL), hostname);
	pool_submit(p, build_work, build_done, j);
}
