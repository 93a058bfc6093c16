/* What the filter reads from and writes to the store besides its parts':
 * the postmaster's notices (a limit hit) and the spam thresholds per domain
 * and user. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/xmalloc.h"
#include "filter/filter_int.h"
#include "mime/header.h"
#include "store/store.h"

struct notice {
	char txid[32];
};

static void on_notice_commit(void *arg, int result)
{
	struct notice *n = arg;
	if (result != STORE_COMMIT_OK)
		log_warn("filter notice id=%s: not stored (%d)", n->txid, result);
	else
		log_info("filter notice id=%s: stored for the postmaster", n->txid);
	free(n);
}

/* A short plain-text message from MAILER-DAEMON to the postmaster target
 * (RFC 5321 4.5.1): its local account's INBOX, or the queue. */
void filter_notice(void *arg, const char *subject, const char *body)
{
	struct filter *f = arg;
	const struct config *cfg = f->cfg;
	if (!cfg->limit_notify)
		return;
	char *pm = store_postmaster(f->st);
	struct store_targets tg = {0, NULL};
	if (pm == NULL || store_resolve(f->st, "postmaster", &tg) <= 0 || tg.n == 0) {
		log_warn("filter notice not sent (no postmaster target): %s", subject);
		store_targets_free(&tg);
		free(pm);
		return;
	}
	struct notice *n = xcalloc(1, sizeof(*n));
	uint32_t r = rand_u32();
	snprintf(n->txid, sizeof(n->txid), "%08XN%07X", (unsigned)time(NULL), r & 0xFFFFFFFu);
	char date[64];
	header_date(time(NULL), date, sizeof(date));
	struct buf m = BUF_INIT;
	/* RFC 5322 3.6: From, Date (and an id); the subject is our own text */
	buf_printf(&m, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", cfg->hostname);
	buf_printf(&m, "To: <%s>\r\n", pm);
	buf_printf(&m, "Subject: postern: %s\r\n", subject);
	buf_printf(&m, "Date: %s\r\n", date);
	buf_printf(&m, "Message-ID: <%s@%s>\r\n", n->txid, cfg->hostname);
	buf_printf(&m, "Auto-Submitted: auto-generated\r\n"); /* RFC 3834 5 */
	buf_printf(&m, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
	/* the body's lines, CRLF-terminated */
	for (const char *p = body; *p != '\0';) {
		size_t k = strcspn(p, "\r\n");
		buf_append(&m, p, k);
		buf_append(&m, "\r\n", 2);
		p += k;
		if (*p == '\r')
			p++;
		if (*p == '\n')
			p++;
	}
	char *err = NULL;
	struct store_spool *sp = store_spool_new(f->st, &err);
	if (sp == NULL || store_spool_write(sp, m.data, m.len) < 0) {
		log_warn("filter notice: spool: %s", err ? err : "write failed");
		free(err);
		store_spool_discard(&sp);
		buf_free(&m);
		store_targets_free(&tg);
		free(pm);
		free(n);
		return;
	}
	int64_t *ids = xcalloc(tg.n, sizeof(*ids));
	struct store_remote_rcpt *rem = xcalloc(tg.n, sizeof(*rem));
	size_t n_ids = 0, n_rem = 0;
	for (size_t i = 0; i < tg.n; i++) {
		if (tg.v[i].user_id > 0)
			ids[n_ids++] = tg.v[i].user_id;
		else
			rem[n_rem++].addr = tg.v[i].addr;
	}
	struct store_delivery del = {
		.txid = n->txid,
		.mail_from = "", /* RFC 5321 4.5.5: a notice gets no bounce */
		.received = time(NULL),
		.user_ids = ids,
		.n_users = n_ids,
		.remote = rem,
		.n_remote = n_rem,
		.prefix = "Return-Path: <>\r\n",
		.prefix_len = strlen("Return-Path: <>\r\n"),
	};
	log_info("filter notice id=%s to=%s: %s", n->txid, pm, subject);
	store_commit(f->st, sp, &del, on_notice_commit, n); /* copies del's strings */
	free(ids);
	free(rem);
	buf_free(&m);
	store_targets_free(&tg);
	free(pm);
}

void filter_thresholds(struct filter *f, int64_t user_id, double *junk, double *reject)
{
	double j, r;
	if (store_spam_threshold_user(f->st, user_id, &j, &r) < 0)
		return;
	if (!isnan(j))
		*junk = j;
	if (!isnan(r))
		*reject = r;
}
