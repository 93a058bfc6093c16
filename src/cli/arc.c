/* `postern arc verify < message` and `postern arc seal DOMAIN --ar TEXT <
 * message`: the ARC verifier and sealer (src/policy/arc.c) on one message
 * read from stdin, with the daemon's resolver (dns_resolver) and, for seal,
 * DOMAIN's active RSA DKIM key from the store. Bare LF line ends are read as
 * CRLF (the verifier sees what SMTP would have delivered). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/arc.h"
#include "store/store.h"

#define CLI_ARC_MAX_MESSAGE (64u << 20)

struct verify_wait {
	struct loop *l;
	bool done;
	struct arc_outcome out;
	char *reason;
	char **domains;
};

static void verify_done(void *arg, const struct arc_outcome *o)
{
	struct verify_wait *w = arg;

	w->out = *o;
	w->reason = o->reason ? xstrdup(o->reason) : NULL;
	w->out.reason = w->reason;
	w->domains = xcalloc(o->n_domains + 1, sizeof *w->domains);
	for (size_t i = 0; i < o->n_domains; i++)
		w->domains[i] = xstrdup(o->domains[i]);
	w->out.domains = w->domains;
	w->done = true;
	loop_stop(w->l);
}

static void verify_wait_free(struct verify_wait *w)
{
	for (size_t i = 0; w->domains && i < w->out.n_domains; i++)
		free(w->domains[i]);
	free(w->domains);
	free(w->reason);
}

/* Verifies msg's chain into w. 0, or -1 (no resolver). */
static int verify_chain(const struct config *cfg, const struct buf *msg, struct verify_wait *w)
{
	struct dkim_limits lim;
	struct cli_loop c;
	struct arc_verify *v;

	if (cli_loop_open(&c, cfg, CLI_LOOP_DNS | CLI_LOOP_POOL) < 0)
		return -1;
	cli_dkim_limits(cfg, &lim);
	memset(w, 0, sizeof *w);
	w->l = c.l;
	v = arc_verify_new(c.dns, c.pool, &lim);
	arc_verify_feed(v, msg->data, msg->len);
	arc_verify_finish(v, verify_done, w);
	loop_run(c.l);
	arc_verify_free(&v);
	cli_loop_close(&c);
	return w->done ? 0 : -1;
}

static void print_outcome(const struct verify_wait *w)
{
	printf("arc=%s i=%d", arc_result_name(w->out.result), w->out.instances);
	if (w->out.n_domains > 0) {
		printf(" domains=");
		for (size_t i = 0; i < w->out.n_domains; i++)
			printf("%s%s", i ? "," : "", w->out.domains[i]);
	}
	if (w->out.result == ARC_PASS && w->out.oldest_pass >= 0)
		printf(" oldest-pass=%d", w->out.oldest_pass);
	printf(" reason=%s\n", w->out.reason ? w->out.reason : "");
}

static int arc_verify_cmd(const struct config *cfg)
{
	struct buf msg = BUF_INIT;
	struct verify_wait w;
	int ret = 1;

	if (cli_read_message(&msg, CLI_ARC_MAX_MESSAGE) < 0) {
		fprintf(stderr, "postern: message too large\n");
	} else if (verify_chain(cfg, &msg, &w) < 0) {
		fprintf(stderr, "postern: arc verify: no resolver\n");
	} else {
		print_outcome(&w);
		verify_wait_free(&w);
		ret = 0;
	}
	buf_free(&msg);
	return ret;
}

struct key_pick {
	time_t now;
	char *selector, *pem;
};

/* The newest active rsa-sha256 key (store_dkim_keys orders by active_from). */
static void key_pick_cb(void *arg, const struct store_dkim_key *k)
{
	struct key_pick *p = arg;

	if (strcmp(k->alg, "rsa-sha256") != 0 || k->active_from > p->now ||
	    (k->retire_at != 0 && p->now >= k->retire_at))
		return;
	free(p->selector);
	free(p->pem);
	p->selector = xstrdup(k->selector);
	p->pem = xstrdup(k->private_key);
}

static int arc_seal_cmd(const struct config *cfg, const char *domain, const char *ar)
{
	struct key_pick pick = {.now = time(NULL)};
	struct store *st = cli_open_store(cfg);
	struct buf msg = BUF_INIT, out = BUF_INIT;
	struct verify_wait w;
	struct dkim_key *key = NULL;
	struct arc_seal *s = NULL;
	struct dkim_limits lim;
	char *err = NULL;
	int ret = 1;

	if (st == NULL)
		return 1;
	if (store_dkim_keys(st, domain, key_pick_cb, &pick) < 0) {
		fprintf(stderr, "postern: cannot read the DKIM keys\n");
		store_close(&st);
		return 1;
	}
	store_close(&st);
	/* RFC 8617 4.1.3: a= as in DKIM; postern seals with RSA only (arc.h) */
	if (pick.pem == NULL) {
		fprintf(stderr, "postern: %s has no active rsa-sha256 DKIM key\n", domain);
		goto out;
	}
	key = dkim_key_load_private(pick.pem, &err);
	if (key == NULL) {
		fprintf(stderr, "postern: %s: %s\n", pick.selector, err ? err : "bad key");
		free(err);
		goto out;
	}
	if (cli_read_message(&msg, CLI_ARC_MAX_MESSAGE) < 0) {
		fprintf(stderr, "postern: message too large\n");
		goto out;
	}
	if (verify_chain(cfg, &msg, &w) < 0) {
		fprintf(stderr, "postern: arc seal: no resolver\n");
		goto out;
	}
	cli_dkim_limits(cfg, &lim);
	struct dkim_signer_key sk = {key, domain, pick.selector};
	s = arc_seal_new(&sk, pick.now, &lim);
	arc_seal_feed(s, msg.data, msg.len);
	if (arc_seal_finish(s, cfg->authserv_id, ar, &w.out, &out) < 0) {
		fprintf(stderr, "postern: arc seal failed\n");
	} else {
		/* nothing added (a chain that ended): the message as it was */
		if (out.len > 0)
			fwrite(out.data, 1, out.len, stdout);
		if (msg.len > 0)
			fwrite(msg.data, 1, msg.len, stdout);
		fflush(stdout);
		ret = 0;
	}
	verify_wait_free(&w);
out:
	arc_seal_free(&s);
	dkim_key_free(&key);
	buf_free(&msg);
	buf_free(&out);
	free(pick.selector);
	free(pick.pem);
	return ret;
}

int cli_arc(const struct config *cfg, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "verify") == 0 && argc == 1)
		return arc_verify_cmd(cfg);
	if (argc >= 2 && strcmp(argv[0], "seal") == 0) {
		const char *domain = NULL, *ar = "";
		for (int i = 1; i < argc; i++) {
			if (strcmp(argv[i], "--ar") == 0 && i + 1 < argc)
				ar = argv[++i];
			else if (strncmp(argv[i], "--ar=", 5) == 0)
				ar = argv[i] + 5;
			else if (domain == NULL && argv[i][0] != '-')
				domain = argv[i];
			else
				domain = NULL, i = argc;
		}
		if (domain != NULL)
			return arc_seal_cmd(cfg, domain, ar);
	}
	fprintf(stderr, "usage: postern arc verify < message\n"
			"       postern arc seal DOMAIN [--ar \"spf=pass smtp.mailfrom=...\"] "
			"< message\n");
	return 2;
}
