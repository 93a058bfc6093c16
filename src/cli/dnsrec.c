/* `postern dns records DOMAIN`: every DNS record a domain served by postern
 * should publish, ready to paste into a zone file (RFC 1035 5 master file
 * syntax), a comment per group saying why. `postern dns check DOMAIN`: the
 * same records looked up through the resolver the daemon uses (src/dns, on a
 * private loop, as `postern dns lookup` does), one line per record: ok,
 * missing, wrong (with what was found and the record to publish), tempfail.
 * Exit status: 0 all ok, 1 something missing or wrong (or usage/store error:
 * 2/1), 75 when a lookup failed temporarily. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/dkim.h"
#include "policy/dmarc.h"
#include "policy/spf.h"
#include "store/store.h"

#define TXT_CHUNK 255 /* RFC 1035 3.3: a <character-string> holds 255 octets */

/* ---- what to publish ---- */

/* The client services of RFC 6186 3.1 (submission: RFC 8314 5.1 for
 * implicit TLS), in the order printed; the option that configures each. */
struct svc {
	const char *name;  /* _NAME._tcp */
	unsigned port;     /* the well-known port clients are told */
	size_t opt_off;    /* the *_listen option */
};
#define OPT(f) offsetof(struct config, f)
static const struct svc services[] = {
	{"submissions", 465, OPT(submissions_listen)},
	{"submission", 587, OPT(submission_listen)},
	{"imaps", 993, OPT(imaps_listen)},
	{"imap", 143, OPT(imap_listen)},
	{"pop3s", 995, OPT(pop3s_listen)},
	{"pop3", 110, OPT(pop3_listen)},
};
#define N_SERVICES (sizeof services / sizeof services[0])

static const char *svc_listen(const struct config *cfg, const struct svc *s)
{
	const char *v = *(char *const *)((const char *)cfg + s->opt_off);
	return v != NULL && *v != '\0' ? v : NULL;
}

/* The port of the first address of a listen list ("ip:port,..."), or 0. */
static unsigned listen_port(const char *list)
{
	size_t n = strcspn(list, ", ");
	const char *colon = NULL;
	for (size_t i = 0; i < n; i++)
		if (list[i] == ':')
			colon = list + i;
	return colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
}

struct dkey {
	char *selector, *alg, *pub;
	time_t active_from, retire_at;
};

struct want {
	const struct config *cfg;
	const char *domain;
	const char *host;
	char *rua;
	struct dkey *keys;
	size_t n_keys;
	time_t now;
};

static void key_cb(void *arg, const struct store_dkim_key *k)
{
	struct want *w = arg;
	/* active or pending: published; retired: no longer */
	if (k->retire_at != 0 && k->retire_at <= w->now)
		return;
	w->keys = xrealloc(w->keys, (w->n_keys + 1) * sizeof *w->keys);
	w->keys[w->n_keys++] = (struct dkey){
		.selector = xstrdup(k->selector),
		.alg = xstrdup(k->alg),
		.pub = xstrdup(k->public_key),
		.active_from = k->active_from,
		.retire_at = k->retire_at,
	};
}

static void want_free(struct want *w)
{
	for (size_t i = 0; i < w->n_keys; i++) {
		free(w->keys[i].selector);
		free(w->keys[i].alg);
		free(w->keys[i].pub);
	}
	free(w->keys);
	free(w->rua);
}

/* Lowercase, no trailing dot; -1 when it is not a plausible domain name. */
static int domain_arg(const char *in, char *out, size_t outsz)
{
	size_t n = strlen(in);
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n >= outsz || n > 253)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_'))
			return -1;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	out[n] = '\0';
	return 0;
}

static int want_load(struct want *w, const struct config *cfg, const char *arg, char *dom,
		     size_t domsz)
{
	*w = (struct want){.cfg = cfg, .host = cfg->hostname, .now = time(NULL)};
	if (domain_arg(arg, dom, domsz) < 0) {
		fprintf(stderr, "postern: \"%s\" is not a domain name\n", arg);
		return 2;
	}
	w->domain = dom;
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	int r = 0;
	if (!store_domain_is_local(st, dom)) {
		fprintf(stderr, "postern: %s is not a local domain (postern domain add %s)\n", dom,
			dom);
		r = 1;
	} else if (store_dkim_keys(st, dom, key_cb, w) < 0) {
		fprintf(stderr, "postern: cannot read the DKIM keys of %s\n", dom);
		r = 1;
	}
	store_close(&st);
	w->rua = xasprintf("mailto:postmaster@%s", dom);
	return r;
}

/* The record texts, shared by records and check. */
static char *spf_text(void)
{
	return xstrdup("v=spf1 mx -all");
}

static char *dmarc_text(const struct want *w)
{
	return xasprintf("v=DMARC1; p=quarantine; rua=%s", w->rua);
}

/* A TXT record's text as master-file strings of <= 255 octets:
 * "a" or ( "a" "b" ), '"' and '\' escaped (RFC 1035 5.1). */
static void txt_rdata(struct buf *b, const char *text)
{
	size_t n = strlen(text);
	bool multi = n > TXT_CHUNK;
	if (multi)
		buf_appends(b, "( ");
	for (size_t off = 0; off < n || off == 0; off += TXT_CHUNK) {
		if (off > 0)
			buf_appends(b, "\n\t");
		buf_appendc(b, '"');
		for (size_t i = off; i < n && i < off + TXT_CHUNK; i++) {
			if (text[i] == '"' || text[i] == '\\')
				buf_appendc(b, '\\');
			buf_appendc(b, text[i]);
		}
		buf_appendc(b, '"');
		if (n == 0)
			break;
	}
	if (multi)
		buf_appends(b, " )");
}

static char *txt_record(const char *name, const char *text)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s. IN TXT ", name);
	txt_rdata(&b, text);
	return b.data;
}

static char *dkim_name(const struct want *w, const struct dkey *k)
{
	return xasprintf("%s._domainkey.%s", k->selector, w->domain);
}

static void print_time(const char *what, time_t t)
{
	char ts[32];
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%d %H:%M UTC", &tm);
	printf("%s %s", what, ts);
}

static int cmd_records(const struct want *w)
{
	const char *d = w->domain, *h = w->host;
	printf("; DNS records for %s, served by %s (postern dns records).\n", d, h);
	printf("; %s itself needs A (and AAAA) records with this server's public\n"
	       "; addresses, and a PTR record naming it for each (RFC 5321 4.1.4).\n\n",
	       h);

	printf("; MX (RFC 5321 5.1): mail for %s goes to this server.\n", d);
	printf("%s. IN MX 10 %s.\n\n", d, h);

	char *t = spf_text(), *rec = txt_record(d, t);
	printf("; SPF (RFC 7208): the hosts named by the MX records send %s's mail.\n"
	       "; \"-all\": every other server fails SPF, as mox and Stalwart advise for a\n"
	       "; domain whose mail leaves only through this server; while other senders\n"
	       "; (a newsletter service, an old server) still send for it, name them or\n"
	       "; use \"~all\" (softfail) until they are gone.\n%s\n\n",
	       d, rec);
	free(t);
	free(rec);

	printf("; DKIM (RFC 6376 3.6.2; Ed25519: RFC 8463): the public key of every\n"
	       "; signing key, active or about to be (rotation publishes the new\n"
	       "; selector before it signs).\n");
	if (w->n_keys == 0)
		printf("; none yet: postern dkim keygen %s\n", d);
	for (size_t i = 0; i < w->n_keys; i++) {
		const struct dkey *k = &w->keys[i];
		printf("; selector %s, %s, ", k->selector, k->alg);
		if (k->active_from > w->now)
			print_time("signs from", k->active_from);
		else
			print_time("signing since", k->active_from);
		if (k->retire_at != 0)
			print_time(", retired", k->retire_at);
		printf("\n");
		char *name = dkim_name(w, k), *txt = dkim_dns_record(k->alg, k->pub);
		rec = txt_record(name, txt);
		printf("%s\n", rec);
		free(rec);
		free(name);
		free(txt);
	}
	printf("\n");

	t = dmarc_text(w);
	char *dn = xasprintf("_dmarc.%s", d);
	rec = txt_record(dn, t);
	printf("; DMARC (RFC 7489 6.3): receivers quarantine mail that fails both SPF and\n"
	       "; DKIM alignment, and send daily aggregate reports to the postmaster.\n"
	       "; Migrating a domain that already sends mail from elsewhere: start with\n"
	       "; p=none, read the reports (postern dmarc reports) until every legitimate\n"
	       "; source passes, then p=quarantine, later p=reject.\n%s\n\n",
	       rec);
	free(t);
	free(dn);
	free(rec);

	printf("; Mail client configuration (RFC 6186 3.1, RFC 8314 5.1): the services\n"
	       "; this server offers; \"0 0 0 .\" says one is not offered (RFC 6186 4,\n"
	       "; RFC 2782: target \".\").\n");
	for (size_t i = 0; i < N_SERVICES; i++) {
		const struct svc *s = &services[i];
		const char *l = svc_listen(w->cfg, s);
		if (l == NULL) {
			printf("_%s._tcp.%s. IN SRV 0 0 0 .\n", s->name, d);
			continue;
		}
		unsigned p = listen_port(l);
		if (p != 0 && p != s->port)
			printf("; note: %s_listen is on port %u; clients are told %u: forward\n"
			       "; that port to it, or publish %u instead\n",
			       s->name, p, s->port, p);
		printf("_%s._tcp.%s. IN SRV 0 1 %u %s.\n", s->name, d, s->port, h);
	}
	printf("\n");

	printf("; Autoconfiguration (Thunderbird: autoconfig.%s; Outlook:\n"
	       "; autodiscover.%s): postern does not serve them yet; once it does:\n"
	       "; autoconfig.%s. IN CNAME %s.\n"
	       "; autodiscover.%s. IN CNAME %s.\n\n",
	       d, d, d, h, d, h);

	printf("; MTA-STS (RFC 8461) and TLS reporting (RFC 8460): once postern serves them:\n"
	       "; mta-sts.%s. IN CNAME %s.\n"
	       "; _mta-sts.%s. IN TXT \"v=STSv1; id=<policy id>\"\n"
	       "; _smtp._tls.%s. IN TXT \"v=TLSRPTv1; rua=%s\"\n",
	       d, h, d, d, w->rua);
	return 0;
}

/* ---- check ---- */

/* One lookup's answer, copied (valid after the callback). */
struct item {
	char *s;            /* TXT text, MX host, SRV target, address text */
	size_t len;         /* TXT */
	unsigned a, b, c;   /* MX pref; SRV prio, weight, port */
};
struct ans {
	enum dns_status status;
	size_t n;
	struct item *v;
};

struct sync {
	struct loop *l;
	struct ans *out;
	bool done;
};

static void ans_free(struct ans *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i].s);
	free(a->v);
	*a = (struct ans){0};
}

static void on_answer(void *arg, const struct dns_answer *a)
{
	struct sync *s = arg;
	struct ans *o = s->out;
	o->status = a->status;
	o->v = a->n ? xcalloc(a->n, sizeof *o->v) : NULL;
	for (size_t i = 0; i < a->n; i++) {
		const struct dns_rr *rr = &a->rr[i];
		struct item *it = &o->v[o->n];
		char addr[INET6_ADDRSTRLEN];
		switch (rr->type) {
		case DNS_TXT:
			it->s = xmalloc(rr->u.txt.len + 1);
			memcpy(it->s, rr->u.txt.text, rr->u.txt.len + 1);
			it->len = rr->u.txt.len;
			break;
		case DNS_MX:
			it->s = xstrdup(rr->u.mx.host);
			it->a = rr->u.mx.pref;
			break;
		case DNS_SRV:
			it->s = xstrdup(rr->u.srv.target);
			it->a = rr->u.srv.prio;
			it->b = rr->u.srv.weight;
			it->c = rr->u.srv.port;
			break;
		case DNS_A:
			it->s = xstrdup(inet_ntop(AF_INET, &rr->u.a, addr, sizeof addr));
			break;
		case DNS_AAAA:
			it->s = xstrdup(inet_ntop(AF_INET6, &rr->u.aaaa, addr, sizeof addr));
			break;
		default:
			continue;
		}
		o->n++;
	}
	s->done = true;
	loop_stop(s->l);
}

/* One query, waited for on the private loop (the resolver's own timeout
 * and tries bound it). */
static void lookup(struct loop *l, struct dns *dns, const char *name, enum dns_type type,
		   struct ans *out)
{
	*out = (struct ans){.status = DNS_TEMPFAIL};
	struct sync s = {.l = l, .out = out};
	struct dns_query *q = dns_lookup(dns, name, type, on_answer, &s);
	if (q == NULL)
		return;
	while (!s.done)
		loop_run(l);
}

struct checker {
	struct loop *l;
	struct dns *dns;
	const struct want *w;
	int n_bad, n_temp;
};

/* One result line: "ok|missing|wrong|tempfail KIND NAME: detail[; publish: fix]" */
static void report(struct checker *c, const char *status, const char *kind, const char *name,
		   const char *detail, const char *fix)
{
	if (strcmp(status, "tempfail") == 0)
		c->n_temp++;
	else if (strcmp(status, "ok") != 0)
		c->n_bad++;
	printf("%-8s %-5s %s: %s", status, kind, name, detail);
	if (fix != NULL) {
		/* one line: the fix's continuation strings joined by a space */
		printf("; publish: ");
		for (const char *p = fix; *p; p++)
			if (*p != '\n')
				putchar(*p == '\t' ? ' ' : *p);
	}
	printf("\n");
}

/* DNS_NODATA / DNS_NXDOMAIN / BADNAME: nothing there; TEMPFAIL: reported. */
static bool temp(struct checker *c, const struct ans *a, const char *kind, const char *name)
{
	if (a->status != DNS_TEMPFAIL)
		return false;
	report(c, "tempfail", kind, name, "DNS temporary failure (try again later)", NULL);
	return true;
}

static bool host_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

static void check_mx(struct checker *c)
{
	const struct want *w = c->w;
	struct ans a;
	lookup(c->l, c->dns, w->domain, DNS_MX, &a);
	char *fix = xasprintf("%s. IN MX 10 %s.", w->domain, w->host);
	bool ours = false;
	if (!temp(c, &a, "MX", w->domain)) {
		struct buf found = BUF_INIT;
		for (size_t i = 0; i < a.n; i++) {
			ours |= host_eq(a.v[i].s, w->host);
			buf_printf(&found, "%s%u %s", i ? ", " : "", a.v[i].a,
				   a.v[i].s[0] ? a.v[i].s : ".");
		}
		if (a.n == 0)
			report(c, "missing", "MX", w->domain, "no MX record", fix);
		else if (ours) {
			char *det = xasprintf("%s", found.data);
			report(c, "ok", "MX", w->domain, det, NULL);
			free(det);
		} else {
			char *det = xasprintf("found %s, not %s", found.data, w->host);
			report(c, "wrong", "MX", w->domain, det, fix);
			free(det);
		}
		buf_free(&found);
	}
	ans_free(&a);
	free(fix);
}

/* Our host name's addresses (for the SPF check), reported as a record. */
static void check_host(struct checker *c, struct ans *v4, struct ans *v6)
{
	const struct want *w = c->w;
	lookup(c->l, c->dns, w->host, DNS_A, v4);
	lookup(c->l, c->dns, w->host, DNS_AAAA, v6);
	if (v4->status == DNS_TEMPFAIL && v6->status == DNS_TEMPFAIL) {
		temp(c, v4, "A", w->host);
		return;
	}
	if (v4->n + v6->n == 0) {
		char *fix = xasprintf("%s. IN A <this server's public IPv4 address>", w->host);
		report(c, "missing", "A", w->host, "no A or AAAA record for the MX host", fix);
		free(fix);
		return;
	}
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < v4->n; i++)
		buf_printf(&b, "%s%s", b.len ? ", " : "", v4->v[i].s);
	for (size_t i = 0; i < v6->n; i++)
		buf_printf(&b, "%s%s", b.len ? ", " : "", v6->v[i].s);
	report(c, "ok", "A", w->host, b.data, NULL);
	buf_free(&b);
}

struct spf_sync {
	struct loop *l;
	enum spf_result result;
	char *mechanism;
	bool done;
};

static void on_spf(void *arg, const struct spf_outcome *o)
{
	struct spf_sync *s = arg;
	s->result = o->result;
	s->mechanism = o->mechanism ? xstrdup(o->mechanism)
		       : o->problem ? xstrdup(o->problem)
				    : NULL;
	s->done = true;
	loop_stop(s->l);
}

/* RFC 7208 check_host() through the spf module, as a receiver would run it
 * for mail from postmaster@domain sent by our host from ip. */
static enum spf_result spf_eval(struct checker *c, const char *ip, char **why_r)
{
	const struct want *w = c->w;
	char *sender = xasprintf("postmaster@%s", w->domain);
	struct spf_request r = {
		.ip = ip, .domain = w->domain, .sender = sender, .helo = w->host,
		.receiver = w->host,
	};
	struct spf_sync s = {.l = c->l, .result = SPF_TEMPERROR};
	struct spf_query *q = spf_check(c->dns, &r, on_spf, &s);
	free(sender);
	if (q == NULL)
		return SPF_TEMPERROR;
	while (!s.done)
		loop_run(c->l);
	*why_r = s.mechanism;
	return s.result;
}

static bool is_spf(const struct item *it)
{
	return it->len >= 6 && strncasecmp(it->s, "v=spf1", 6) == 0 &&
	       (it->s[6] == '\0' || it->s[6] == ' ');
}

/* A single v=spf1 record (RFC 7208 4.5), which the evaluator passes for
 * every address of our host. */
static void check_spf(struct checker *c, const struct ans *v4, const struct ans *v6)
{
	const struct want *w = c->w;
	struct ans a;
	lookup(c->l, c->dns, w->domain, DNS_TXT, &a);
	char *t = spf_text(), *fix = txt_record(w->domain, t);
	free(t);
	if (!temp(c, &a, "SPF", w->domain)) {
		size_t n = 0;
		const struct item *one = NULL;
		for (size_t i = 0; i < a.n; i++)
			if (is_spf(&a.v[i])) {
				n++;
				one = &a.v[i];
			}
		if (n == 0) {
			report(c, "missing", "SPF", w->domain, "no v=spf1 record", fix);
		} else if (n > 1) {
			report(c, "wrong", "SPF", w->domain,
			       "more than one v=spf1 record (RFC 7208 4.5: permerror)", fix);
		} else if (v4->n + v6->n == 0) {
			char *det = xasprintf("\"%s\": cannot tell, %s has no address", one->s,
					      w->host);
			report(c, "wrong", "SPF", w->domain, det, NULL);
			free(det);
		} else {
			struct buf res = BUF_INIT;
			bool all_pass = true, tempfail = false;
			for (size_t i = 0; i < v4->n + v6->n; i++) {
				const char *ip = i < v4->n ? v4->v[i].s : v6->v[i - v4->n].s;
				char *why = NULL;
				enum spf_result r = spf_eval(c, ip, &why);
				all_pass &= r == SPF_PASS;
				tempfail |= r == SPF_TEMPERROR;
				buf_printf(&res, "%s%s %s%s%s%s", i ? ", " : "", ip,
					   spf_result_name(r), why ? " (" : "", why ? why : "",
					   why ? ")" : "");
				free(why);
			}
			char *det = xasprintf("\"%s\": %s", one->s, res.data ? res.data : "");
			report(c, all_pass ? "ok" : tempfail ? "tempfail" : "wrong", "SPF", w->domain,
			       det, all_pass || tempfail ? NULL : fix);
			free(det);
			buf_free(&res);
		}
	}
	ans_free(&a);
	free(fix);
}

/* The p= value of a DKIM key record (RFC 6376 3.6.1), whitespace removed. */
static char *dkim_p(const char *rec)
{
	const char *p = rec;
	while (*p) {
		p += strspn(p, " \t;");
		if (strncmp(p, "p", 1) == 0) {
			const char *q = p + 1;
			q += strspn(q, " \t");
			if (*q == '=') {
				q++;
				struct buf b = BUF_INIT;
				for (; *q && *q != ';'; q++)
					if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
						buf_appendc(&b, *q);
				if (b.data == NULL)
					buf_appends(&b, "");
				return b.data;
			}
		}
		p += strcspn(p, ";");
	}
	return NULL;
}

static void check_dkim(struct checker *c)
{
	const struct want *w = c->w;
	if (w->n_keys == 0) {
		char *det = xasprintf("no signing key (postern dkim keygen %s)", w->domain);
		report(c, "missing", "DKIM", w->domain, det, NULL);
		free(det);
		return;
	}
	for (size_t i = 0; i < w->n_keys; i++) {
		const struct dkey *k = &w->keys[i];
		char *name = dkim_name(w, k), *txt = dkim_dns_record(k->alg, k->pub);
		char *fix = txt_record(name, txt);
		struct ans a;
		lookup(c->l, c->dns, name, DNS_TXT, &a);
		if (!temp(c, &a, "DKIM", name)) {
			char *found = NULL;
			bool ok = false;
			for (size_t j = 0; j < a.n && !ok; j++) {
				char *p = dkim_p(a.v[j].s);
				if (p == NULL)
					continue;
				ok = strcmp(p, k->pub) == 0;
				free(found);
				found = p;
			}
			const char *state = k->active_from > w->now ? "pending" : "active";
			if (ok) {
				char *det = xasprintf("%s %s key published", state, k->alg);
				report(c, "ok", "DKIM", name, det, NULL);
				free(det);
			} else if (found == NULL) {
				char *det = xasprintf("no key record for the %s %s key", state,
						      k->alg);
				report(c, "missing", "DKIM", name, det, fix);
				free(det);
			} else {
				char *det = xasprintf("p= differs from the %s %s key (found "
						      "p=%.24s...)",
						      state, k->alg, found);
				report(c, "wrong", "DKIM", name, det, fix);
				free(det);
			}
			free(found);
		}
		ans_free(&a);
		free(fix);
		free(name);
		free(txt);
	}
}

/* RFC 7489 6.6.3: the v=DMARC1 records at name; 1 valid (one record,
 * parsed, with p=), 0 none, -1 invalid (*why_r), -2 tempfail. */
static int dmarc_at(struct checker *c, const char *name, char **found_r, const char **why_r)
{
	struct ans a;
	lookup(c->l, c->dns, name, DNS_TXT, &a);
	int r = 0;
	if (a.status == DNS_TEMPFAIL) {
		ans_free(&a);
		return -2;
	}
	size_t n = 0;
	const struct item *one = NULL;
	for (size_t i = 0; i < a.n; i++)
		if (dmarc_record_is_dmarc(a.v[i].s, a.v[i].len)) {
			n++;
			one = &a.v[i];
		}
	if (n > 1) {
		*why_r = "more than one v=DMARC1 record (RFC 7489 6.6.3: none applies)";
		r = -1;
	} else if (n == 1) {
		*found_r = xstrdup(one->s);
		struct dmarc_record rec;
		const char *err = NULL;
		if (dmarc_record_parse_err(one->s, one->len, &rec, &err) < 0) {
			*why_r = err ? err : "invalid record";
			r = -1;
		} else if (rec.p_fallback) {
			*why_r = "no valid p= tag";
			r = -1;
		} else {
			r = 1;
		}
		dmarc_record_free(&rec);
	}
	ans_free(&a);
	return r;
}

static void check_dmarc(struct checker *c)
{
	const struct want *w = c->w;
	char *name = xasprintf("_dmarc.%s", w->domain);
	char *t = dmarc_text(w), *fix = txt_record(name, t);
	free(t);
	char *found = NULL;
	const char *why = NULL;
	int r = dmarc_at(c, name, &found, &why);
	char org[256] = "";
	if (r == 0) {
		/* RFC 7489 6.6.3 step 3: the organizational domain's record */
		char *err = NULL;
		struct psl *psl = psl_load(w->cfg->dmarc_psl_file, &err);
		free(err);
		if (psl_org_domain(psl, w->domain, org, sizeof org) == 0 &&
		    strcmp(org, w->domain) != 0) {
			char *oname = xasprintf("_dmarc.%s", org);
			r = dmarc_at(c, oname, &found, &why);
			free(oname);
		} else {
			org[0] = '\0';
		}
		psl_free(&psl);
	}
	if (r == -2) {
		report(c, "tempfail", "DMARC", name, "DNS temporary failure (try again later)",
		       NULL);
	} else if (r == 0) {
		report(c, "missing", "DMARC", name, "no v=DMARC1 record", fix);
	} else if (r < 0) {
		char *det = found ? xasprintf("\"%s\": %s", found, why) : xstrdup(why);
		report(c, "wrong", "DMARC", name, det, fix);
		free(det);
	} else {
		char *det = org[0] ? xasprintf("\"%s\" (at the organizational domain %s)", found,
					       org)
				   : xasprintf("\"%s\"", found);
		report(c, "ok", "DMARC", name, det, NULL);
		free(det);
	}
	free(found);
	free(fix);
	free(name);
}

static void check_srv(struct checker *c)
{
	const struct want *w = c->w;
	for (size_t i = 0; i < N_SERVICES; i++) {
		const struct svc *s = &services[i];
		if (svc_listen(w->cfg, s) == NULL)
			continue; /* not offered: "0 0 0 ." or nothing, either is right */
		char *name = xasprintf("_%s._tcp.%s", s->name, w->domain);
		char *fix = xasprintf("%s. IN SRV 0 1 %u %s.", name, s->port, w->host);
		struct ans a;
		lookup(c->l, c->dns, name, DNS_SRV, &a);
		if (!temp(c, &a, "SRV", name)) {
			bool ok = false;
			struct buf found = BUF_INIT;
			for (size_t j = 0; j < a.n; j++) {
				ok |= host_eq(a.v[j].s, w->host) && a.v[j].c == s->port;
				buf_printf(&found, "%s%u %u %u %s", j ? ", " : "", a.v[j].a,
					   a.v[j].b, a.v[j].c, a.v[j].s[0] ? a.v[j].s : ".");
			}
			if (a.n == 0) {
				report(c, "missing", "SRV", name, "no SRV record", fix);
			} else {
				char *det = ok ? xstrdup(found.data)
					       : xasprintf("found %s, not port %u at %s", found.data,
							   s->port, w->host);
				report(c, ok ? "ok" : "wrong", "SRV", name, det, ok ? NULL : fix);
				free(det);
			}
			buf_free(&found);
		}
		ans_free(&a);
		free(fix);
		free(name);
	}
}

static int cmd_check(const struct want *w)
{
	struct cli_loop lp;
	if (cli_loop_open(&lp, w->cfg, CLI_LOOP_DNS) < 0)
		return 1;
	struct checker c = {.l = lp.l, .dns = lp.dns, .w = w};
	check_mx(&c);
	struct ans v4, v6;
	check_host(&c, &v4, &v6);
	check_spf(&c, &v4, &v6);
	ans_free(&v4);
	ans_free(&v6);
	check_dkim(&c);
	check_dmarc(&c);
	check_srv(&c);
	cli_loop_close(&lp);
	if (c.n_temp > 0)
		return 75;
	return c.n_bad > 0 ? 1 : 0;
}

int cli_dns_records(const struct config *cfg, int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[0], "records") != 0 && strcmp(argv[0], "check") != 0)) {
		fprintf(stderr, "usage: postern dns records DOMAIN\n"
				"       postern dns check DOMAIN\n");
		return 2;
	}
	char dom[256];
	struct want w;
	int r = want_load(&w, cfg, argv[1], dom, sizeof dom);
	if (r == 0)
		r = strcmp(argv[0], "records") == 0 ? cmd_records(&w) : cmd_check(&w);
	want_free(&w);
	return r;
}
