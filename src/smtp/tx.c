/* The mail transaction's content path: spool, trace headers, DATA/BDAT end,
 * commit, and the per-transaction log line. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/rand.h"
#include "core/xmalloc.h"
#include "filter/filter.h"
#include "mime/header.h"
#include "policy/policy.h"
#include "smtp/session.h"

void smtp_tx_new(struct smtp_session *s)
{
	struct smtp_tx *tx = xcalloc(1, sizeof(*tx));
	struct smtp_server *srv = s->srv;

	/* Unique per process: seconds, a sequence within them, and noise so
	 * ids from a restarted daemon do not repeat. */
	snprintf(tx->txid, sizeof(tx->txid), "%08X%05X%03X", (unsigned)time(NULL),
		 (unsigned)(srv->txseq++ & 0xFFFFFu), (unsigned)(rand_u32() & 0xFFFu));
	tx->start_ms = loop_now(s->base.l);
	s->tx = tx;
}

void smtp_tx_log(struct smtp_session *s, int result)
{
	struct smtp_tx *tx = s->tx;
	struct buf r = BUF_INIT;

	if (tx == NULL || tx->result != 0)
		return;
	tx->result = result;
	for (size_t i = 0; i < tx->n_rcpts; i++)
		buf_printf(&r, "%s%s", i ? "," : "", tx->rcpts[i].addr);
	char res[24];
	if (result < 0)
		snprintf(res, sizeof(res), "aborted");
	else if (s->base.c == NULL || s->base.phase == SESSION_CLOSING)
		/* The reply was not sent (the client left, or the session was
		 * closed first): the log says what the client was told. */
		snprintf(res, sizeof(res), "unsent-%d", result);
	else
		snprintf(res, sizeof(res), "%d", result);
	log_info("smtp tx id=%s client=%s helo=%s auth=%s from=<%s> rcpts=%s size=%llu result=%s "
		 "time=%llums",
		 tx->txid, s->base.ip, s->helo ? s->helo : "-", s->auth_user ? s->auth_user : "-",
		 tx->from ? tx->from : "", r.len ? r.data : "-",
		 (unsigned long long)tx->dec.out_bytes, res,
		 (unsigned long long)(loop_now(s->base.l) - tx->start_ms));
	buf_free(&r);
}

/* Ends a wait for the spool (the transaction ends, or its data did): the
 * session goes back to OPEN unless a caller parks it again. Never frees s:
 * its conn is there (the data ended) or busy was already 0 (session_free). */
static void spool_wait_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	if (!tx->spool_wait && !tx->flt_pause)
		return;
	if (tx->spool_wait) {
		tx->spool_wait = false;
		bool freed = session_release(&s->base);
		x_assert(!freed);
	}
	/* the same for a pause of the filter (clamd or a milter behind) */
	if (tx->flt_pause) {
		tx->flt_pause = false;
		bool freed = session_release(&s->base);
		x_assert(!freed);
	}
	session_unpark(&s->base);
}

void smtp_pending_rcpt_free(struct smtp_tx *tx)
{
	struct smtp_pending_rcpt *p = tx->prcpt;
	if (p == NULL)
		return;
	smtp_rcpt_args_free(&p->r);
	store_targets_free(&p->t);
	free(p->relay);
	free(p->domain);
	free(p);
	tx->prcpt = NULL;
}

void smtp_tx_free(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	if (tx == NULL)
		return;
	spool_wait_end(s);
	/* no policy or filter callback comes after this (policy.h, filter.h) */
	filter_tx_free(&tx->flt);
	smtp_pending_rcpt_free(tx);
	if (tx->pol != NULL && policy_tx_helo_spf(tx->pol, &s->helo_spf))
		s->helo_spf_known = true;
	policy_tx_free(&tx->pol);
	if (tx->result == 0 && tx->from != NULL)
		smtp_tx_log(s, -1);
	if (tx->sp != NULL)
		store_spool_discard(&tx->sp);
	for (size_t i = 0; i < tx->n_rcpts; i++) {
		free(tx->rcpts[i].addr);
		free(tx->rcpts[i].notify);
		free(tx->rcpts[i].orcpt);
	}
	free(tx->rcpts);
	for (size_t i = 0; i < tx->n_remote; i++) {
		free((char *)tx->remote[i].addr);
		free((char *)tx->remote[i].orcpt);
		free((char *)tx->remote[i].notify);
	}
	free(tx->remote);
	free(tx->user_ids);
	free(tx->from);
	free(tx->ret);
	free(tx->envid);
	free(tx->ins_msgid);
	free(tx->ins_date);
	free(tx);
	s->tx = NULL;
}

/* ---- content ---- */

static void on_filter_resume(void *arg);

/* What is stored (after policy's filter): into the spool, and the same
 * bytes to the filter (clamd, milters, the duplicate fingerprint). */
static void spool_out(void *arg, const char *p, size_t n)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	if (tx->write_failed || n == 0)
		return;
	if (tx->flt != NULL && filter_content(tx->flt, p, n, on_filter_resume, s) &&
	    !tx->content_done) {
		/* a consumer of the filter reads slower than the client sends:
		 * stop reading until it catches up (as for the spool below) */
		x_assert(!tx->flt_pause);
		tx->flt_pause = true;
		s->base.busy++;
		session_park(&s->base);
	}
	if (store_spool_write(tx->sp, p, n) < 0) {
		log_err("smtp tx id=%s: spool write: %s", tx->txid, strerror(errno));
		tx->write_failed = true;
	} else if (!tx->spool_wait && !tx->content_done && store_spool_busy(tx->sp)) {
		/* The disk is slower than the client: stop reading until the
		 * worker's write ends (on_spool_ready). What the current read
		 * still holds is buffered meanwhile. */
		tx->spool_wait = true;
		s->base.busy++;
		session_park(&s->base);
	}
}

/* ---- forged X-Spam-* fields (MX) ----
 * X-Spam-Status and X-Spam-Report are postern's verdict (filter.c, in the
 * prefix): the same fields arriving in the message are removed from the
 * header section (RFC 5322 2.2: a field is its first line and the
 * continuation lines that start with WSP; the section ends at the first
 * empty line), so that users' rules and `postern mail explain` see only
 * postern's. Streaming: only the start of a field is held until its name
 * is known; everything else passes byte-exact. */
enum { STRIP_LSTART, STRIP_NAME, STRIP_PASS, STRIP_DROP, STRIP_BODY };

static bool strip_name_is_spam(const char *h, size_t n)
{
	while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t')) /* RFC 5322 4.5.8 */
		n--;
	return (n == 13 && strncasecmp(h, "X-Spam-Status", 13) == 0) ||
	       (n == 13 && strncasecmp(h, "X-Spam-Report", 13) == 0);
}

static void strip_feed(struct smtp_session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = s->tx;
	size_t run = 0; /* start of the bytes to pass */

	if (!tx->strip.on || tx->strip.state == STRIP_BODY) {
		spool_out(s, p, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		switch (tx->strip.state) {
		case STRIP_LSTART:
			if (c == ' ' || c == '\t') {
				tx->strip.state = tx->strip.dropping ? STRIP_DROP : STRIP_PASS;
				if (tx->strip.dropping) {
					spool_out(s, p + run, i - run);
					run = i + 1;
				}
			} else if (c == '\r' || c == '\n') {
				/* the empty line: the body follows, passed as is */
				tx->strip.state = STRIP_BODY;
				spool_out(s, p + run, n - run);
				return;
			} else {
				tx->strip.dropping = false;
				spool_out(s, p + run, i - run);
				run = i + 1;
				tx->strip.hlen = 0;
				tx->strip.hold[tx->strip.hlen++] = c;
				tx->strip.state = STRIP_NAME;
			}
			break;
		case STRIP_NAME:
			run = i + 1;
			if (c == ':' && strip_name_is_spam(tx->strip.hold, tx->strip.hlen)) {
				tx->strip.dropping = true;
				tx->strip.dropped++;
				tx->strip.state = STRIP_DROP;
			} else if (c == ':' || c == '\r' || c == '\n' ||
				   tx->strip.hlen == sizeof(tx->strip.hold)) {
				/* not ours: what was held, then this byte, pass */
				spool_out(s, tx->strip.hold, tx->strip.hlen);
				tx->strip.hlen = 0;
				run = i;
				tx->strip.state = c == '\n' ? STRIP_LSTART : STRIP_PASS;
			} else {
				tx->strip.hold[tx->strip.hlen++] = c;
			}
			break;
		case STRIP_PASS:
			if (c == '\n')
				tx->strip.state = STRIP_LSTART;
			break;
		case STRIP_DROP:
			run = i + 1;
			if (c == '\n')
				tx->strip.state = STRIP_LSTART;
			break;
		}
	}
	if (tx->strip.state != STRIP_NAME && tx->strip.state != STRIP_DROP)
		spool_out(s, p + run, n - run);
}

/* The end of the data: a field start still held passes. */
static void strip_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	if (!tx->strip.on)
		return;
	if (tx->strip.state == STRIP_NAME && tx->strip.hlen > 0)
		spool_out(s, tx->strip.hold, tx->strip.hlen);
	tx->strip.hlen = 0;
	tx->strip.state = STRIP_BODY;
	if (tx->strip.dropped > 0)
		log_info("smtp tx id=%s: %zu forged X-Spam-Status/X-Spam-Report field(s) removed",
			 tx->txid, tx->strip.dropped);
}

static void strip_out(void *arg, const char *p, size_t n)
{
	strip_feed(arg, p, n);
}

static void on_content(void *arg, const char *p, size_t n)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	if (tx->too_big || tx->write_failed)
		return;
	/* RFC 1870 6: past the limit, keep reading but store nothing. */
	if (tx->dec.out_bytes + n > s->srv->cfg->smtp_max_message_size) {
		tx->too_big = true;
		return;
	}
	if (!tx->has8bit) /* RFC 6152: the queue downgrades 8-bit bodies when needed */
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] >= 0x80) {
				tx->has8bit = true;
				break;
			}
	/* Every byte through policy: DKIM/ARC see them as sent, forged
	 * Authentication-Results fields do not reach the spool. */
	if (tx->pol != NULL)
		policy_content(tx->pol, p, n, strip_out, s);
	else
		strip_feed(s, p, n);
}

/* A worker finished writing a full buffer of the spool (loop thread). */
static void on_spool_ready(void *arg)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	if (!tx->spool_wait || store_spool_busy(tx->sp))
		return;
	tx->spool_wait = false;
	if (session_release(&s->base))
		return; /* the conn went away meanwhile */
	if (!tx->flt_pause)
		session_unpark(&s->base);
}

/* The filter's consumers caught up (filter_content's resume, loop thread). */
static void on_filter_resume(void *arg)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	if (tx == NULL || !tx->flt_pause)
		return;
	tx->flt_pause = false;
	if (session_release(&s->base))
		return; /* the conn went away meanwhile */
	if (!tx->spool_wait)
		session_unpark(&s->base);
}

/* RFC 3848 / RFC 6531 3.7.3: the "with" protocol of the Received field. */
static const char *with_proto(const struct smtp_session *s)
{
	static const char *const esmtp[] = {"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA"};
	static const char *const utf8[] = {"UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA"};
	int k = (s->base.tls ? 2 : 0) + (s->auth_user != NULL ? 1 : 0);

	if (!s->esmtp)
		return "SMTP";
	return s->tx->smtputf8 ? utf8[k] : esmtp[k];
}

/* Starts the spool: the Received field first (RFC 5321 4.4), then the
 * decoder. Return-Path (RFC 5321 4.4) and policy's fields come before it,
 * in the delivery's prefix (commit_tx). */
int smtp_content_start(struct smtp_session *s, enum smtp_data_mode mode)
{
	struct smtp_tx *tx = s->tx;
	const struct config *cfg = s->srv->cfg;
	char *err = NULL, date[64];
	struct buf h = BUF_INIT;
	time_t now = time(NULL);

	tx->sp = store_spool_new(s->srv->st, &err);
	if (tx->sp == NULL) {
		log_err("smtp tx id=%s: spool: %s", tx->txid, err ? err : "?");
		free(err);
		return -1;
	}
	/* Only messages above the spool's buffer (64 KiB) reach a worker;
	 * smaller ones are written once, by the committer. */
	store_spool_async(tx->sp, s->srv->workers, on_spool_ready, s);
	header_date(now, date, sizeof(date));
	buf_printf(&h, "Received: from %s (%s [%s])\r\n", s->helo ? s->helo : "unknown",
		   s->rdns ? s->rdns : "unknown", s->base.ip);
	if (s->base.tls)
		buf_printf(&h, "\t(using %s)\r\n", conn_tls_info(s->base.c));
	buf_printf(&h, "\tby %s (postern) with %s id %s", cfg->hostname, with_proto(s), tx->txid);
	if (tx->n_rcpts == 1)
		buf_printf(&h, "\r\n\tfor <%s>", tx->rcpts[0].addr);
	buf_printf(&h, ";\r\n\t%s\r\n", date);
	spool_out(s, h.data, h.len); /* the filter sees what is stored */
	buf_free(&h);

	tx->strip.on = s->role == SMTP_ROLE_MX;
	tx->strip.state = STRIP_LSTART;
	smtp_data_init(&tx->dec, mode, cfg->smtp_max_data_line, on_content, s);
	/* RFC 6409 8.2, 8.3: a submission server may add Message-ID and Date. */
	if (s->role != SMTP_ROLE_MX) {
		tx->ins_msgid = xasprintf("Message-ID: <%s.%08X@%s>\r\n", tx->txid, rand_u32(),
					  cfg->hostname);
		tx->ins_date = xasprintf("Date: %s\r\n", date);
		smtp_data_set_insert(&tx->dec, tx->ins_msgid, tx->ins_date);
	}
	return 0;
}

/* ---- the end of the data ---- */

static void end_tx(struct smtp_session *s, int code)
{
	smtp_tx_log(s, code);
	smtp_tx_free(s);
}

static void on_commit(void *arg, int result);

/* Stores the message (busy held, parked): the prefix is Return-Path, then
 * policy's fields, then the filter's (fv may be NULL: no filter). */
static void commit_tx(struct smtp_session *s, const struct filter_end_verdict *fv)
{
	struct smtp_tx *tx = s->tx;
	struct buf pre = BUF_INIT;

	buf_printf(&pre, "Return-Path: <%s>\r\n", tx->from);
	if (tx->pol_done && tx->pol_prefix_len > 0)
		buf_append(&pre, tx->pol_prefix, tx->pol_prefix_len);
	if (fv != NULL && fv->prefix_len > 0)
		buf_append(&pre, fv->prefix, fv->prefix_len);
	struct store_delivery del = {
		.txid = tx->txid,
		.mail_from = tx->from,
		.envid = tx->envid,
		.ret = tx->ret,
		.auth_user = s->auth_user,
		.received = time(NULL),
		.user_ids = tx->user_ids,
		.n_users = tx->n_users,
		.remote = tx->remote,
		.n_remote = tx->n_remote,
		.body_8bit = tx->has8bit,
		.smtputf8 = tx->smtputf8,
		.prefix = pre.data,
		.prefix_len = pre.len,
		/* DMARC's or a milter's quarantine: everyone's Junk; else the
		 * filter's per user */
		.junk = (tx->pol_done && tx->pol_junk) || (fv != NULL && fv->quarantine),
		.junk_users = fv != NULL ? fv->junk : NULL,
		/* a milter's quarantine: remote recipients held in the queue */
		.hold = fv != NULL && fv->quarantine,
		.queue_from = tx->pol_done ? tx->pol_queue_from : NULL,
	};
	struct store_spool *sp = tx->sp;
	tx->sp = NULL; /* store_commit owns it now (and copied del's strings) */
	store_commit(s->srv->st, sp, &del, on_commit, s);
	buf_free(&pre);
}

/* An end-of-data step refused the message (busy held, parked): its reply,
 * nothing stored. */
static void end_refused(struct smtp_session *s, int code, const char *ecode, const char *text)
{
	smtp_reply(s, code, ecode, "%s", text);
	end_tx(s, code); /* frees policy's and the filter's transactions: text is gone */
	if (session_release(&s->base))
		return;
	smtp_session_resume(s);
}

/* filter_end's verdict (busy held, parked). */
static void on_filter_end(void *arg, const struct filter_end_verdict *v)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	tx->flt_wait = false;
	if (v->code != 0) {
		end_refused(s, v->code, v->ecode, v->text);
	} else if (s->srv == NULL) {
		end_refused(s, 421, "4.3.2", "Service shutting down");
	} else if (v->discard) {
		/* a milter said DISCARD: accepted, and dropped */
		log_info("smtp tx id=%s discarded by a milter", tx->txid);
		char text[64];
		snprintf(text, sizeof(text), "Ok: queued as %s", tx->txid);
		end_refused(s, 250, "2.0.0", text);
	} else {
		commit_tx(s, v);
	}
}

/* The filter's end of data, after policy's verdict (busy held, parked). */
static void filter_end_start(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct filter_auth a = {0};
	struct policy_results pr;

	if (tx->pol != NULL) {
		policy_results(tx->pol, &pr);
		a.spf = pr.spf;
		a.dkim = pr.dkim;
		a.dmarc = pr.dmarc;
		a.from_domain = pr.from_domain;
		a.dmarc_aligned = pr.dmarc_pass;
		a.dmarc_enforced = tx->pol_junk; /* policy's quarantine */
	}
	filter_tx_users(tx->flt, tx->user_ids, tx->n_users);
	tx->flt_wait = true;
	filter_end(tx->flt, &a, tx->sp, on_filter_end, s);
}

/* policy_end's verdict (busy held, parked). */
static void on_policy_end(void *arg, const struct policy_verdict *v)
{
	struct smtp_session *s = arg;
	struct smtp_tx *tx = s->tx;

	tx->pol_wait = false;
	if (v->code != 0) {
		/* RFC 7489 10.3: refused at the end of data, nothing stored */
		end_refused(s, v->code, v->ecode, v->text);
		return;
	}
	if (s->srv == NULL) {
		end_refused(s, 421, "4.3.2", "Service shutting down");
		return;
	}
	/* its strings live until policy_tx_free (the end of the transaction) */
	tx->pol_done = true;
	tx->pol_junk = v->junk;
	tx->pol_prefix = v->prefix;
	tx->pol_prefix_len = v->prefix_len;
	tx->pol_queue_from = v->queue_from;
	if (tx->flt != NULL)
		filter_end_start(s);
	else
		commit_tx(s, NULL);
}

static void on_commit(void *arg, int result)
{
	struct smtp_session *s = arg;

	if (result == STORE_COMMIT_OK) {
		/* rates, duplicates, greylisting, reputation count it */
		if (s->tx->flt != NULL)
			filter_delivered(s->tx->flt);
		if (s->tx->n_remote > 0 && s->srv != NULL && s->srv->kick != NULL)
			s->srv->kick(s->srv->kick_arg);
		smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", s->tx->txid);
		end_tx(s, 250);
	} else if (result == STORE_COMMIT_RCPT_GONE) {
		/* A recipient was deleted during the transaction: the retry's RCPT
		 * TO decides (550 5.1.1 if it stays gone). */
		smtp_reply(s, 451, "4.3.0", "Error: a recipient changed during delivery, try again");
		end_tx(s, 451);
	} else if (result == STORE_COMMIT_OVERQUOTA) {
		/* RFC 3463 X.2.2: this message would take an account over its
		 * quota; nothing was stored for anyone. */
		smtp_reply(s, 452, "4.2.2", "Mailbox full");
		end_tx(s, 452);
	} else {
		smtp_reply(s, 451, "4.3.0", "Error: queue file write error");
		end_tx(s, 451);
	}
	if (session_release(&s->base))
		return;
	smtp_session_resume(s);
}

void smtp_data_done(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct smtp_data *d = &tx->dec;

	spool_wait_end(s); /* the write in flight is store_commit's to wait for */
	smtp_set_state(s, SMTP_S_CMD);
	/* RFC 5321 2.3.8, 4.1.1.4: only CRLF ends a line. Refusing every bare CR
	 * or LF, for DATA and BDAT alike, closes the SMTP smuggling hole. */
	if (smtp_data_bad_eol(d)) {
		smtp_reply(s, 550, "5.6.11", "bare CR or LF in message (SMTP smuggling protection)");
		end_tx(s, 550);
	} else if (tx->too_big) {
		smtp_reply(s, 552, "5.3.4", "Error: message file too big");
		end_tx(s, 552);
	} else if (tx->write_failed) {
		smtp_reply(s, 452, "4.3.1", "Error: insufficient system storage");
		end_tx(s, 452);
	} else if (d->long_line) {
		/* RFC 5321 4.5.3.1.6 */
		smtp_reply(s, 550, "5.6.0", "Error: message line longer than %zu octets",
			   s->srv->cfg->smtp_max_data_line);
		end_tx(s, 550);
	} else {
		tx->content_done = true;
		if (tx->pol != NULL) /* the bytes policy still held */
			policy_content_end(tx->pol, strip_out, s);
		strip_end(s);
		if (tx->write_failed) {
			smtp_reply(s, 452, "4.3.1", "Error: insufficient system storage");
			end_tx(s, 452);
			return;
		}
		/* clamd's scan ends and the filter's worker step starts now,
		 * while policy verifies (filter.h) */
		if (tx->flt != NULL) {
			filter_tx_users(tx->flt, tx->user_ids, tx->n_users);
			filter_data_end(tx->flt, tx->sp);
		}
		/* Durability contract: 250 only from the commit completion. */
		s->base.busy++;
		session_park(&s->base);
		if (tx->pol != NULL) {
			tx->pol_wait = true;
			policy_end(tx->pol, on_policy_end, s);
		} else if (tx->flt != NULL) {
			filter_end_start(s);
		} else {
			commit_tx(s, NULL);
		}
	}
}

void smtp_bdat_chunk_done(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	smtp_set_state(s, SMTP_S_CMD);
	if (s->bdat_discard) {
		/* RFC 3030 2: a refused chunk is still read whole before the reply. */
		s->bdat_discard = false;
		smtp_reply(s, s->bdat_code, s->bdat_ecode, "%s", s->bdat_text);
		if (s->bdat_abort && tx != NULL)
			end_tx(s, s->bdat_code);
		s->bdat_abort = false;
		return;
	}
	if (s->bdat_last) {
		smtp_data_finish(&tx->dec);
		smtp_data_done(s);
		return;
	}
	if (tx->too_big) {
		smtp_reply(s, 552, "5.3.4", "Error: message file too big");
		end_tx(s, 552);
	} else if (tx->write_failed) {
		smtp_reply(s, 452, "4.3.1", "Error: insufficient system storage");
		end_tx(s, 452);
	} else {
		smtp_reply(s, 250, "2.0.0", "%llu octets received",
			   (unsigned long long)s->bdat_size);
	}
}
