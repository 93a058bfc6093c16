/* `postern dkim ...`: DKIM signing keys per domain (keygen, list, rotate,
 * delete) and, for tests and admins, sign and verify a message on stdin with
 * the real streaming code (a private loop, a worker pool, the resolver the
 * daemon would use). Private keys stay in the store: nothing here prints
 * one. */
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
#include "policy/dkim.h"
#include "store/store.h"

#define CLI_DKIM_TXT_STRING 255 /* RFC 1035 3.3.14: one character-string */

static void dkim_usage(void)
{
	fprintf(stderr, "usage: postern dkim keygen DOMAIN\n"
			"       postern dkim list [DOMAIN]\n"
			"       postern dkim rotate DOMAIN\n"
			"       postern dkim delete DOMAIN SELECTOR\n"
			"       postern dkim sign DOMAIN < message > signed\n"
			"       postern dkim verify < message\n");
}

static void fmt_time(time_t t, char *out, size_t n)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The record as a zone file wants it: the name, then the value cut into
 * quoted strings of at most 255 octets. */
static void print_record(const char *domain, const char *selector, const char *alg,
			 const char *pub)
{
	char *rec = dkim_dns_record(alg, pub);
	printf("%s._domainkey.%s. IN TXT", selector, domain);
	for (size_t off = 0, n = strlen(rec); off < n; off += CLI_DKIM_TXT_STRING)
		printf(" \"%.*s\"", (int)(n - off < CLI_DKIM_TXT_STRING ? n - off : CLI_DKIM_TXT_STRING),
		       rec + off);
	printf("\n");
	free(rec);
}

/* ---- the keys of a domain ---- */

struct key_list {
	time_t now;
	size_t n, n_signing; /* all; signing now or later (not retired) */
	char **selectors;
};

static void collect(void *arg, const struct store_dkim_key *k)
{
	struct key_list *kl = arg;
	kl->selectors = xrealloc(kl->selectors, (kl->n + 1) * sizeof(char *));
	kl->selectors[kl->n++] = xstrdup(k->selector);
	if (k->retire_at == 0 || k->retire_at > kl->now)
		kl->n_signing++;
}

static void key_list_free(struct key_list *kl)
{
	for (size_t i = 0; i < kl->n; i++)
		free(kl->selectors[i]);
	free(kl->selectors);
}

static bool selector_taken(const struct key_list *kl, const char *sel)
{
	for (size_t i = 0; i < kl->n; i++)
		if (strcmp(kl->selectors[i], sel) == 0)
			return true;
	return false;
}

/* Generates and stores the pair (RSA-2048, Ed25519) signing from `grace`
 * seconds after they exist (*active_r); their ids into ids[2]. Prints the
 * records. */
static int add_pair(struct store *st, const char *domain, time_t now, time_t grace,
		    const struct key_list *kl, int64_t ids[2], time_t *active_r)
{
	static const struct {
		const char *type, *alg;
		char suffix;
	} kinds[] = {{"rsa", "rsa-sha256", 'r'}, {"ed25519", "ed25519-sha256", 'e'}};
	char day[16];
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	/* "<yyyymmdd>r" / "<yyyymmdd>e", then "...r2", "...e2" on the same day */
	char sel[2][32];
	for (int n = 1;; n++) {
		for (int i = 0; i < 2; i++) {
			if (n == 1)
				snprintf(sel[i], sizeof(sel[i]), "%s%c", day, kinds[i].suffix);
			else
				snprintf(sel[i], sizeof(sel[i]), "%s%c%d", day, kinds[i].suffix, n);
		}
		if (!selector_taken(kl, sel[0]) && !selector_taken(kl, sel[1]))
			break;
	}
	char *pem[2] = {NULL, NULL}, *pub[2] = {NULL, NULL}, *err = NULL;
	int r = 0;
	for (int i = 0; i < 2 && r == 0; i++)
		r = dkim_keygen(kinds[i].type, &pem[i], &pub[i], &err);
	/* counted from now that the keys exist (RSA generation takes a while) */
	time_t active_from = time(NULL) + grace;
	*active_r = active_from;
	ids[0] = ids[1] = -1;
	for (int i = 0; i < 2 && r == 0; i++) {
		struct store_dkim_key k = {
			.domain = domain,
			.selector = sel[i],
			.alg = kinds[i].alg,
			.private_key = pem[i],
			.public_key = pub[i],
			.created = now,
			.active_from = active_from,
		};
		ids[i] = store_dkim_key_add(st, &k, &err);
		if (ids[i] < 0)
			r = -1;
	}
	if (r < 0 && ids[0] > 0) { /* no half pair */
		char *e2 = NULL;
		store_dkim_key_del(st, domain, sel[0], &e2);
		free(e2);
	}
	if (r == 0) {
		printf("Publish these DNS records for %s:\n", domain);
		for (int i = 0; i < 2; i++)
			print_record(domain, sel[i], kinds[i].alg, pub[i]);
	}
	for (int i = 0; i < 2; i++) {
		free(pem[i]);
		free(pub[i]);
	}
	return cli_report(r, &err);
}

static int cmd_keygen(struct store *st, const char *domain)
{
	struct key_list kl = {.now = time(NULL)};
	int r = store_dkim_keys(st, domain, collect, &kl);
	if (r == 0 && kl.n_signing > 0) {
		fprintf(stderr,
			"postern: %s has signing keys already; `postern dkim rotate %s` replaces "
			"them\n",
			domain, domain);
		key_list_free(&kl);
		return 1;
	}
	int64_t ids[2];
	time_t when;
	int ret = r < 0 ? 1 : add_pair(st, domain, kl.now, 0, &kl, ids, &when);
	if (ret == 0)
		printf("The keys sign from now on.\n");
	key_list_free(&kl);
	return ret;
}

static int cmd_rotate(const struct config *cfg, struct store *st, const char *domain)
{
	struct key_list kl = {.now = time(NULL)};
	if (store_dkim_keys(st, domain, collect, &kl) < 0) {
		key_list_free(&kl);
		return 1;
	}
	time_t when;
	int64_t ids[2];
	int ret = add_pair(st, domain, kl.now, (time_t)cfg->dkim_rotate_grace, &kl, ids, &when);
	if (ret == 0) {
		char *err = NULL;
		int n = store_dkim_keys_retire(st, domain, when, ids, 2, &err);
		ret = cli_report(n < 0 ? -1 : 0, &err);
		char ts[32];
		fmt_time(when, ts, sizeof(ts));
		if (ret == 0)
			printf("Publish them now: the new keys sign from %s; %d current key(s) "
			       "retire then.\n",
			       ts, n);
	}
	key_list_free(&kl);
	return ret;
}

static void print_key(void *arg, const struct store_dkim_key *k)
{
	time_t now = *(const time_t *)arg;
	char ts[32], state[64];
	if (k->retire_at != 0 && k->retire_at <= now) {
		snprintf(state, sizeof(state), "retired");
	} else if (k->active_from > now) {
		fmt_time(k->active_from, ts, sizeof(ts));
		snprintf(state, sizeof(state), "pending (from %s)", ts);
	} else if (k->retire_at != 0) {
		fmt_time(k->retire_at, ts, sizeof(ts));
		snprintf(state, sizeof(state), "retiring (until %s)", ts);
	} else {
		snprintf(state, sizeof(state), "active");
	}
	char *rec = dkim_dns_record(k->alg, k->public_key);
	printf("%s %s %s %s %s\n", k->domain, k->selector, k->alg, state, rec);
	free(rec);
}

/* ---- sign and verify a message on stdin ---- */

/* Fed in pieces, as the SMTP server would. */
#define CLI_DKIM_PIECE 4096

struct signing {
	struct loop *l;
	struct dkim_sign *s;
	struct buf out;
	int r;
};

static void sign_work(void *arg)
{
	struct signing *g = arg;
	g->r = dkim_sign_finish(g->s, &g->out);
}

static void sign_done(void *arg)
{
	struct signing *g = arg;
	loop_stop(g->l);
}

struct active_keys {
	time_t now;
	size_t n;
	struct dkim_signer_key *v;
	struct dkim_key **keys;
	int bad;
};

static void collect_active(void *arg, const struct store_dkim_key *k)
{
	struct active_keys *a = arg;
	if (k->active_from > a->now || (k->retire_at != 0 && k->retire_at <= a->now))
		return;
	char *err = NULL;
	struct dkim_key *key = dkim_key_load_private(k->private_key, &err);
	if (key == NULL) {
		fprintf(stderr, "postern: key %s of %s: %s\n", k->selector, k->domain, err);
		free(err);
		a->bad++;
		return;
	}
	a->v = xrealloc(a->v, (a->n + 1) * sizeof(*a->v));
	a->keys = xrealloc(a->keys, (a->n + 1) * sizeof(*a->keys));
	a->keys[a->n] = key;
	a->v[a->n] = (struct dkim_signer_key){key, xstrdup(k->domain), xstrdup(k->selector)};
	a->n++;
}

static int cmd_sign(const struct config *cfg, const char *domain)
{
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	struct active_keys a = {.now = time(NULL)};
	int r = store_dkim_keys(st, domain, collect_active, &a);
	store_close(&st);
	if (r < 0 || a.bad)
		return 1;
	if (a.n == 0) {
		fprintf(stderr, "postern: %s has no active DKIM key\n", domain);
		return 1;
	}
	struct dkim_limits lim;
	cli_dkim_limits(cfg, &lim);
	/* signed in its CRLF form (RFC 6376 3.4: canonicalization is over
	 * CRLF line ends, as SMTP carries the message) */
	struct buf msg = BUF_INIT;
	bool lf = false;
	cli_read_message_ends(&msg, 0, &lf);
	struct cli_loop c;
	cli_loop_open(&c, cfg, CLI_LOOP_POOL); /* no resolver: cannot fail */
	struct signing g = {.l = c.l};
	g.s = dkim_sign_new(a.v, a.n, a.now, &lim);
	for (size_t off = 0; off < msg.len; off += CLI_DKIM_PIECE)
		dkim_sign_feed(g.s, msg.data + off,
			       msg.len - off < CLI_DKIM_PIECE ? msg.len - off : CLI_DKIM_PIECE);
	pool_submit(c.pool, sign_work, sign_done, &g);
	loop_run(c.l);
	cli_loop_close(&c);
	if (g.r == 0 && lf) {
		/* a file with bare LF line ends is given back as it came, the
		 * signature fields with LF too */
		cli_write_lf(stdout, g.out.data, g.out.len);
		cli_write_lf(stdout, msg.data, msg.len);
	} else if (g.r == 0) {
		fwrite(g.out.data, 1, g.out.len, stdout);
		fwrite(msg.data, 1, msg.len, stdout);
	} else {
		fprintf(stderr, "postern: signing failed\n");
	}
	dkim_sign_free(&g.s);
	buf_free(&g.out);
	buf_free(&msg);
	for (size_t i = 0; i < a.n; i++) {
		dkim_key_free(&a.keys[i]);
		free((char *)a.v[i].domain);
		free((char *)a.v[i].selector);
	}
	free(a.keys);
	free(a.v);
	return g.r == 0 ? 0 : 1;
}

struct verifying {
	struct loop *l;
	bool done;
};

static void verify_done(void *arg, const struct dkim_results *r)
{
	struct verifying *w = arg;
	if (r->n == 0)
		printf("dkim=none\n");
	for (size_t i = 0; i < r->n; i++) {
		const struct dkim_sig_result *s = &r->v[i];
		printf("dkim=%s d=%s s=%s a=%s reason=%s\n", dkim_result_name(s->result),
		       s->domain ? s->domain : "-", s->selector ? s->selector : "-",
		       s->algorithm ? s->algorithm : "-", s->reason ? s->reason : "-");
	}
	w->done = true;
	loop_stop(w->l);
}

static int cmd_verify(const struct config *cfg)
{
	struct cli_loop c;
	if (cli_loop_open(&c, cfg, CLI_LOOP_DNS | CLI_LOOP_POOL) < 0)
		return 1;
	struct verifying w = {.l = c.l};
	struct dkim_limits lim;
	cli_dkim_limits(cfg, &lim);
	struct buf msg = BUF_INIT;
	cli_read_message(&msg, 0);
	struct dkim_verify *v = dkim_verify_new(c.dns, c.pool, &lim);
	for (size_t off = 0; off < msg.len; off += CLI_DKIM_PIECE)
		dkim_verify_feed(v, msg.data + off,
				 msg.len - off < CLI_DKIM_PIECE ? msg.len - off : CLI_DKIM_PIECE);
	dkim_verify_finish(v, verify_done, &w);
	loop_run(c.l);
	dkim_verify_free(&v);
	cli_loop_close(&c);
	buf_free(&msg);
	return w.done ? 0 : 1;
}

int cli_dkim(const struct config *cfg, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[0], "sign") == 0)
		return cmd_sign(cfg, argv[1]);
	if (argc == 1 && strcmp(argv[0], "verify") == 0)
		return cmd_verify(cfg);
	bool ok = (argc == 2 && (strcmp(argv[0], "keygen") == 0 || strcmp(argv[0], "rotate") == 0)) ||
		  ((argc == 1 || argc == 2) && strcmp(argv[0], "list") == 0) ||
		  (argc == 3 && strcmp(argv[0], "delete") == 0);
	if (!ok) {
		dkim_usage();
		return 2;
	}
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	int ret;
	if (strcmp(argv[0], "keygen") == 0) {
		ret = cmd_keygen(st, argv[1]);
	} else if (strcmp(argv[0], "rotate") == 0) {
		ret = cmd_rotate(cfg, st, argv[1]);
	} else if (strcmp(argv[0], "list") == 0) {
		time_t now = time(NULL);
		ret = store_dkim_keys(st, argc == 2 ? argv[1] : NULL, print_key, &now) < 0;
	} else {
		char *err = NULL;
		int r = store_dkim_key_del(st, argv[1], argv[2], &err);
		if (r == 0)
			fprintf(stderr, "postern: no key %s for %s\n", argv[2], argv[1]);
		ret = r == 0 ? 1 : cli_report(r, &err);
	}
	store_close(&st);
	return ret;
}
