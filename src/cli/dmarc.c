/* `postern dmarc check|reports|send-reports ...` ("check" is dmarc_check.c's).
 *   reports ADDRESS: the aggregate reports (RFC 7489 7.2) in every mailbox of
 *     the account ADDRESS resolves to, one block each.
 *   send-reports [--since EPOCH --until EPOCH]: one report run now (the
 *     period that ended last by default), on a private loop with the
 *     daemon's code; the daemon's queue delivers within queue_poll. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/report.h"
#include "store/store.h"

#define REPORTS_MAX_MESSAGE (64u << 20) /* larger messages are not looked at */

/* ---- reports ---- */

struct names {
	char **v;
	size_t n;
};

static void add_name(void *arg, const char *name, const char *detail)
{
	struct names *ns = arg;
	ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof *ns->v);
	ns->v[ns->n++] = xstrdup(name);
}

struct uids {
	uint32_t *v;
	size_t n;
};

static void add_uid(void *arg, const struct store_mail_info *m)
{
	struct uids *u = arg;
	if (m->size > REPORTS_MAX_MESSAGE)
		return;
	u->v = xrealloc(u->v, (u->n + 1) * sizeof *u->v);
	u->v[u->n++] = m->uid;
}

static int read_fd(int fd, struct buf *b)
{
	for (;;) {
		buf_reserve(b, 65536);
		ssize_t r = read(fd, b->data + b->len, 65536);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		b->len += (size_t)r;
		if (b->len > REPORTS_MAX_MESSAGE)
			return -1;
	}
}

static int cmd_reports(const struct config *cfg, const char *address)
{
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	int ret = 1, found = 0;
	char *user = NULL, *err = NULL;
	struct store_targets t = {0};
	if (store_resolve(st, address, &t) == 1)
		for (size_t i = 0; i < t.n && user == NULL; i++)
			if (t.v[i].user_id > 0)
				user = xstrdup(t.v[i].addr);
	store_targets_free(&t);
	if (user == NULL) {
		fprintf(stderr, "postern: %s is not a local account\n", address);
		store_close(&st);
		return 1;
	}
	struct names mbs = {0};
	if (store_mailbox_list(st, user, add_name, &mbs) < 0) {
		fprintf(stderr, "postern: cannot list the mailboxes of %s\n", user);
		goto out;
	}
	ret = 0;
	for (size_t i = 0; i < mbs.n; i++) {
		struct uids u = {0};
		if (store_mail_list(st, user, mbs.v[i], add_uid, &u, &err) < 0) {
			fprintf(stderr, "postern: %s: %s\n", mbs.v[i], err);
			free(err);
			err = NULL;
			ret = 1;
			continue;
		}
		for (size_t k = 0; k < u.n; k++) {
			int fd;
			if (store_mail_open(st, user, mbs.v[i], 0, u.v[k], &fd, &err) < 0) {
				free(err); /* expunged meanwhile */
				err = NULL;
				continue;
			}
			struct buf msg = BUF_INIT, xml = BUF_INIT, out = BUF_INIT;
			const char *why = NULL;
			int rc = read_fd(fd, &msg);
			close(fd);
			if (rc == 0)
				rc = report_extract(msg.data ? msg.data : "", msg.len, &xml, &why);
			else
				why = "cannot read the message";
			if (rc == 1 && report_describe(xml.data ? xml.data : "", xml.len, &out,
						       &why) < 0)
				rc = -1;
			if (rc == 1) {
				found++;
				printf("mailbox=%s uid=%u\n%s\n", mbs.v[i], u.v[k], out.data);
			} else if (rc < 0) {
				printf("mailbox=%s uid=%u malformed report: %s\n\n", mbs.v[i],
				       u.v[k], why ? why : "?");
			}
			buf_free(&msg);
			buf_free(&xml);
			buf_free(&out);
		}
		free(u.v);
	}
	printf("%d reports\n", found);
	if (fflush(stdout) != 0)
		ret = 1;
out:
	for (size_t i = 0; i < mbs.n; i++)
		free(mbs.v[i]);
	free(mbs.v);
	free(user);
	store_close(&st);
	return ret;
}

/* ---- send-reports ---- */

struct send_ctx {
	struct loop *l;
	int sent;
};

static void send_done(void *arg, int sent)
{
	struct send_ctx *c = arg;
	c->sent = sent;
	loop_stop(c->l);
}

static int parse_epoch(const char *s, time_t *t)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s || v < 0)
		return -1;
	*t = (time_t)v;
	return 0;
}

static int cmd_send_reports(const struct config *cfg, int argc, char **argv)
{
	time_t since, until;
	report_period(time(NULL), cfg->dmarc_report_interval, &since, &until);
	for (int i = 0; i < argc; i++) {
		if (i + 1 < argc && strcmp(argv[i], "--since") == 0 &&
		    parse_epoch(argv[i + 1], &since) == 0) {
			i++;
		} else if (i + 1 < argc && strcmp(argv[i], "--until") == 0 &&
			   parse_epoch(argv[i + 1], &until) == 0) {
			i++;
		} else {
			fprintf(stderr, "usage: postern dmarc send-reports [--since EPOCH]"
					" [--until EPOCH]\n");
			return 2;
		}
	}
	if (until <= since) {
		fprintf(stderr, "postern: --until must be after --since\n");
		return 2;
	}
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	struct send_ctx c = {.l = loop_new(), .sent = -1};
	struct pool *p = pool_new(c.l, 1);
	struct dns *dns = NULL;
	int ret = 1;
	if (store_start_admin(st, c.l) < 0) {
		fprintf(stderr, "postern: cannot start the store's committer\n");
		goto out;
	}
	if ((dns = cli_dns(c.l, cfg)) == NULL)
		goto out;
	report_run_start(c.l, p, st, dns, cfg, since, until, NULL, NULL, send_done, &c);
	loop_run(c.l);
	if (c.sent < 0) {
		fprintf(stderr, "postern: the report run failed (see the log)\n");
	} else {
		printf("%d reports sent (period %lld to %lld)\n", c.sent, (long long)since,
		       (long long)until);
		ret = fflush(stdout) != 0;
	}
out:
	store_wait_idle(st); /* the rows' prune */
	pool_free(&p);
	dns_free(&dns);
	store_close(&st);
	loop_free(&c.l);
	return ret;
}

int cli_dmarc(const struct config *cfg, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "check") == 0)
		return cli_dmarc_check(cfg, argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[0], "reports") == 0)
		return cmd_reports(cfg, argv[1]);
	if (argc >= 1 && strcmp(argv[0], "send-reports") == 0)
		return cmd_send_reports(cfg, argc - 1, argv + 1);
	fprintf(stderr, "usage: postern dmarc check ... | reports ADDRESS |"
			" send-reports [--since EPOCH --until EPOCH]\n");
	return 2;
}
