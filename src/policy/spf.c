/* SPF check_host() (RFC 7208 4, 5, 6) on the loop: a small state machine
 * driven by src/dns answers. One query object per check holds everything
 * (frames for include/redirect, up to 10 parallel address lookups for the
 * names of an "mx" term or of the client's PTR records), so a check costs
 * one allocation plus one per parsed record. The record parser and the macro
 * expander are pure (spf_parse.c).
 *
 * The limits of RFC 7208 4.6.4: 10 DNS-querying terms (include, a, mx, ptr,
 * exists, redirect) per check, 2 void lookups, 10 MX names (more is a
 * permerror) and 10 PTR names (the rest ignored) per term. They also end
 * include/redirect loops. A whole check is cut at SPF_TIME_LIMIT_MS (4.6.4
 * suggests at least 20 s): temperror. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "policy/spf.h"
#include "policy/spf_int.h"

#define SPF_TIME_LIMIT_MS 20000
/* include nesting: every include is a DNS term, so at most 10 deep */
#define SPF_MAX_DEPTH (SPF_MAX_DNS_TERMS + 2)
#define SPF_DEFAULT_EXP "%{d} does not designate %{c} as a permitted sender"

static const char *const result_names[] = {"none",     "neutral",   "pass",     "fail",
                                           "softfail", "temperror", "permerror"};

const char *spf_result_name(enum spf_result r)
{
	return (unsigned)r < sizeof(result_names) / sizeof(result_names[0]) ? result_names[r]
	                                                                    : "none";
}

enum stage {
	ST_FETCH, /* the record of the top frame's domain */
	ST_TERM,  /* the top frame's next term (or its redirect/default) */
	ST_EXP,   /* a fail: exp= (RFC 7208 6.2) */
	ST_EXP_TEXT,
	ST_DEFAULT_EXP,
};

enum fetch { F_TOP, F_INCLUDE, F_REDIRECT };

enum wait { W_RECORD, W_A, W_MX, W_MX_ADDR, W_EXISTS, W_PTR, W_PTR_ADDR, W_EXP };

struct spf_frame {
	char domain[SPF_NAME_MAX + 1]; /* <domain> of this check_host() */
	struct spf_record rec;
	size_t next;  /* the term to evaluate next */
	bool include; /* an include's check_host(): its result goes to the parent */
};

struct spf_slot {
	struct spf_query *q;
	struct dns_query *dq;
	int verdict; /* -2 waiting, -1 DNS error, 0 no, 1 yes */
};

struct spf_query {
	struct dns *dns;
	struct loop *l;
	spf_cb *cb;
	void *arg;
	struct timer *later, *limit;
	bool starting, done;
	/* the request */
	int family;
	uint8_t ip[16];
	char ip_text[INET6_ADDRSTRLEN];
	char *sender, *local, *sdomain, *helo, *receiver, *default_exp;
	char top_domain[SPF_NAME_MAX + 1];
	long long now;
	/* the evaluation */
	enum stage stage;
	enum fetch fetch;
	enum wait wait;
	int dns_terms, voids;
	bool counted; /* the current term has been counted */
	struct spf_frame fr[SPF_MAX_DEPTH];
	int depth;
	struct dns_query *dq; /* the one lookup of a term */
	struct spf_slot slot[SPF_MAX_NAMES];
	int n_slots;
	int pending; /* lookups in flight */
	/* the client's validated names (RFC 7208 5.5, 7.3 %{p}) */
	enum { P_NONE, P_RUNNING, P_DONE } p_state;
	bool ptr_void; /* the PTR lookup found nothing */
	char *ptr_names[SPF_MAX_NAMES];
	bool ptr_valid[SPF_MAX_NAMES];
	int n_ptr;
	char *exp_text;
	/* the outcome */
	enum spf_result result;
	char mech[256];
	char *explanation;
	char problem[200];
};

/* ---- outcome ---- */

static void cancel_lookups(struct spf_query *q)
{
	dns_cancel(&q->dq);
	for (int i = 0; i < q->n_slots; i++)
		dns_cancel(&q->slot[i].dq);
	q->n_slots = 0;
	q->pending = 0;
}

static void finish(struct spf_query *q, enum spf_result r)
{
	cancel_lookups(q);
	q->result = r;
	q->done = true;
	if (r == SPF_TEMPERROR || r == SPF_PERMERROR)
		log_debug("spf %s ip=%s domain=%s problem=%s", spf_result_name(r), q->ip_text,
		          q->top_domain, q->problem);
}

static void fail_with(struct spf_query *q, enum spf_result r, const char *fmt, ...)
    PRINTF_LIKE(3, 4);
static void fail_with(struct spf_query *q, enum spf_result r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->problem, sizeof(q->problem), fmt, ap);
	va_end(ap);
	finish(q, r);
}

static void query_free(struct spf_query *q)
{
	cancel_lookups(q);
	loop_timer_cancel(q->l, &q->later);
	loop_timer_cancel(q->l, &q->limit);
	for (int i = 0; i <= q->depth && i < SPF_MAX_DEPTH; i++)
		spf_record_free(&q->fr[i].rec);
	for (int i = 0; i < q->n_ptr; i++)
		free(q->ptr_names[i]);
	free(q->exp_text);
	free(q->explanation);
	free(q->sender);
	free(q->local);
	free(q->sdomain);
	free(q->helo);
	free(q->receiver);
	free(q->default_exp);
	free(q);
}

static void deliver_now(struct spf_query *q)
{
	struct spf_outcome o = {
	    .result = q->result,
	    .domain = q->top_domain,
	    .mechanism = q->mech[0] && q->result != SPF_NONE && q->result != SPF_TEMPERROR &&
	                         q->result != SPF_PERMERROR
	                     ? q->mech
	                     : NULL,
	    .explanation = q->result == SPF_FAIL ? q->explanation : NULL,
	    .problem = (q->result == SPF_TEMPERROR || q->result == SPF_PERMERROR) && q->problem[0]
	                   ? q->problem
	                   : NULL,
	};
	q->cb(q->arg, &o);
	query_free(q);
}

static void on_later(void *arg)
{
	struct spf_query *q = arg;
	q->later = NULL;
	deliver_now(q);
}

static void step(struct spf_query *q);

/* Runs the machine until it waits for DNS or is done; the last thing every
 * callback does (q may be freed). */
static void run(struct spf_query *q)
{
	while (!q->done && q->pending == 0)
		step(q);
	if (!q->done)
		return;
	if (q->starting) {
		/* never inside spf_check: the next loop pass */
		if (q->later == NULL)
			q->later = loop_timer_add(q->l, 0, on_later, q);
		return;
	}
	deliver_now(q);
}

/* ---- helpers ---- */

static struct spf_frame *top(struct spf_query *q)
{
	return &q->fr[q->depth];
}

static void macro_env(struct spf_query *q, struct spf_macro_env *env, const char *p)
{
	memset(env, 0, sizeof(*env));
	env->s = q->sender;
	env->l = q->local;
	env->o = q->sdomain;
	env->d = top(q)->domain;
	env->h = q->helo;
	env->r = q->receiver;
	env->p = p;
	env->family = q->family;
	env->ip = q->ip;
	env->t = q->now;
}

static bool name_under(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);
	if (n == d)
		return strcasecmp(name, domain) == 0;
	return n > d && name[n - d - 1] == '.' && strcasecmp(name + n - d, domain) == 0;
}

/* RFC 7208 7.3 %{p}: the validated name equal to <domain>, else one under
 * it, else any; "unknown" when there is none. */
static const char *p_value(struct spf_query *q)
{
	const char *d = top(q)->domain, *any = NULL, *under = NULL;
	for (int i = 0; i < q->n_ptr; i++) {
		if (!q->ptr_valid[i])
			continue;
		const char *n = q->ptr_names[i];
		if (strcasecmp(n, d) == 0)
			return n;
		if (under == NULL && name_under(n, d))
			under = n;
		if (any == NULL)
			any = n;
	}
	return under ? under : any ? any : "unknown";
}

static void start_p(struct spf_query *q);

enum { X_OK, X_WAIT, X_BAD };

/* Expands a domain-spec of the top frame's record into a name to look up
 * (out, SPF_EXPAND_MAX): X_OK; X_WAIT: %{p} is being resolved first; X_BAD:
 * the name cannot be queried (RFC 7208 4.3, 4.8: as if it did not exist). */
static int expand_name(struct spf_query *q, const char *spec, size_t len, char *out)
{
	struct spf_macro_env env;

	if (len == 0) {
		snprintf(out, SPF_EXPAND_MAX, "%s", top(q)->domain);
		return X_OK;
	}
	if (spf_macro_uses_p(spec, len) && q->p_state != P_DONE) {
		start_p(q);
		return X_WAIT;
	}
	macro_env(q, &env, q->p_state == P_DONE ? p_value(q) : NULL);
	if (spf_macro_expand(spec, len, &env, SPF_EXPAND_DOMAIN, out, SPF_EXPAND_MAX, NULL, 0) < 0)
		return X_BAD;
	return spf_name_prepare(out) < 0 ? X_BAD : X_OK;
}

/* name: prepared, so at most SPF_NAME_MAX octets */
static void set_domain(char *dst, const char *name)
{
	size_t n = strnlen(name, SPF_NAME_MAX);
	memcpy(dst, name, n);
	dst[n] = '\0';
}

static void on_answer(void *arg, const struct dns_answer *a);
static void on_slot(void *arg, const struct dns_answer *a);

static void lookup(struct spf_query *q, const char *name, enum dns_type type, enum wait w)
{
	char esc[SPF_ESC_MAX];
	q->wait = w;
	if (spf_name_escape(name, esc, sizeof(esc)) < 0)
		esc[0] = '\0'; /* answered BADNAME: as if it did not exist */
	q->dq = dns_lookup(q->dns, esc, type, on_answer, q);
	if (q->dq != NULL)
		q->pending++;
	else
		fail_with(q, SPF_TEMPERROR, "DNS lookup of %s could not start", name);
}

/* A lookup of a name read from DNS (already in dns_lookup's form). */
static void slot_lookup(struct spf_query *q, const char *name, enum dns_type type)
{
	struct spf_slot *s = &q->slot[q->n_slots++];
	s->q = q;
	s->verdict = -2;
	s->dq = dns_lookup(q->dns, name, type, on_slot, s);
	if (s->dq != NULL)
		q->pending++;
	else
		s->verdict = -1;
}

static enum dns_type addr_type(const struct spf_query *q)
{
	return q->family == AF_INET6 ? DNS_AAAA : DNS_A;
}

static bool addr_match(const struct spf_query *q, const struct dns_rr *rr, unsigned cidr4,
                       unsigned cidr6)
{
	if (q->family == AF_INET && rr->type == DNS_A)
		return spf_cidr_match(AF_INET, q->ip, (const uint8_t *)&rr->u.a, cidr4);
	if (q->family == AF_INET6 && rr->type == DNS_AAAA)
		return spf_cidr_match(AF_INET6, q->ip, rr->u.aaaa.s6_addr, cidr6);
	return false;
}

static const struct spf_term *cur_term(struct spf_query *q)
{
	struct spf_frame *f = top(q);
	return &f->rec.terms[f->next];
}

static void term_text(struct spf_query *q, const struct spf_term *t)
{
	struct spf_frame *f = top(q);
	snprintf(q->mech, sizeof(q->mech), "%.*s", (int)t->len, f->rec.text + t->off);
}

/* RFC 7208 4.6.4: a void lookup (NXDOMAIN, or no answer). false: over the
 * limit, the check ended with permerror. */
static bool count_void(struct spf_query *q, const char *name)
{
	if (++q->voids <= SPF_MAX_VOID)
		return true;
	fail_with(q, SPF_PERMERROR, "more than %d void lookups (the last: %s)", SPF_MAX_VOID, name);
	return false;
}

static void frame_result(struct spf_query *q, enum spf_result r);

/* The current term matched (true) or not. */
static void term_done(struct spf_query *q, bool match)
{
	const struct spf_term *t = cur_term(q);
	q->counted = false;
	if (match) {
		term_text(q, t);
		frame_result(q, (enum spf_result)t->result);
		return;
	}
	top(q)->next++;
	q->stage = ST_TERM;
}

/* check_host() of the top frame returned r (RFC 7208 4.7, 5.2, 6.1). */
static void frame_result(struct spf_query *q, enum spf_result r)
{
	if (r == SPF_TEMPERROR || r == SPF_PERMERROR) {
		finish(q, r);
		return;
	}
	struct spf_frame *f = top(q);
	if (q->depth > 0 && f->include) {
		char domain[SPF_NAME_MAX + 1];
		snprintf(domain, sizeof(domain), "%s", f->domain);
		spf_record_free(&f->rec);
		q->depth--;
		/* RFC 7208 5.2: pass matches; fail, softfail and neutral do
		 * not; none is a permerror. */
		if (r == SPF_NONE) {
			fail_with(q, SPF_PERMERROR, "include:%s has no SPF record", domain);
			return;
		}
		term_done(q, r == SPF_PASS);
		return;
	}
	q->result = r;
	if (r == SPF_FAIL) {
		q->stage = ST_EXP;
		return;
	}
	finish(q, r);
}

/* ---- the record (RFC 7208 4.4, 4.5) ---- */

static void record_answer(struct spf_query *q, const struct dns_answer *a)
{
	struct spf_frame *f = top(q);
	const char *what = q->fetch == F_INCLUDE    ? "include:"
	                   : q->fetch == F_REDIRECT ? "redirect="
	                                            : "";

	if (a->status == DNS_TEMPFAIL) {
		fail_with(q, SPF_TEMPERROR, "%s%s: TXT lookup failed", what, f->domain);
		return;
	}
	size_t found = 0, which = 0;
	for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
		if (spf_is_spf1(a->rr[i].u.txt.text, a->rr[i].u.txt.len)) {
			found++;
			which = i;
		}
	}
	if (found == 0) {
		if (q->fetch == F_REDIRECT) {
			/* RFC 7208 6.1 */
			fail_with(q, SPF_PERMERROR, "redirect=%s has no SPF record", f->domain);
			return;
		}
		frame_result(q, SPF_NONE);
		return;
	}
	if (found > 1) {
		fail_with(q, SPF_PERMERROR, "%s%s: more than one SPF record", what, f->domain);
		return;
	}
	char err[160];
	if (spf_record_parse(a->rr[which].u.txt.text, a->rr[which].u.txt.len, &f->rec, err,
	                     sizeof(err)) < 0) {
		fail_with(q, SPF_PERMERROR, "%s%s: %s", what, f->domain, err);
		return;
	}
	f->next = 0;
	q->stage = ST_TERM;
}

/* ---- the terms (RFC 7208 5) ---- */

static void eval_term(struct spf_query *q)
{
	struct spf_frame *f = top(q);
	char name[SPF_EXPAND_MAX];

	if (f->next >= f->rec.n) {
		if (f->rec.redirect_len == 0) {
			/* RFC 7208 4.7: no match, no redirect: neutral */
			snprintf(q->mech, sizeof(q->mech), "default");
			frame_result(q, SPF_NEUTRAL);
			return;
		}
		/* RFC 7208 6.1 */
		if (!q->counted && ++q->dns_terms > SPF_MAX_DNS_TERMS) {
			fail_with(q, SPF_PERMERROR, "more than %d DNS-querying terms",
			          SPF_MAX_DNS_TERMS);
			return;
		}
		q->counted = true;
		int x = expand_name(q, f->rec.text + f->rec.redirect, f->rec.redirect_len, name);
		if (x == X_WAIT)
			return;
		if (x == X_BAD) {
			fail_with(q, SPF_PERMERROR, "redirect= to a name that cannot exist");
			return;
		}
		q->counted = false;
		spf_record_free(&f->rec);
		set_domain(f->domain, name);
		q->fetch = F_REDIRECT;
		q->stage = ST_FETCH;
		return;
	}
	const struct spf_term *t = &f->rec.terms[f->next];
	switch ((enum spf_mech)t->mech) {
	case SPF_M_ALL:
		term_done(q, true);
		return;
	case SPF_M_IP4:
		term_done(q, q->family == AF_INET &&
		                 spf_cidr_match(AF_INET, q->ip, t->addr, t->cidr4));
		return;
	case SPF_M_IP6:
		term_done(q, q->family == AF_INET6 &&
		                 spf_cidr_match(AF_INET6, q->ip, t->addr, t->cidr6));
		return;
	default:
		break;
	}
	/* RFC 7208 4.6.4: a term that queries DNS */
	if (!q->counted && ++q->dns_terms > SPF_MAX_DNS_TERMS) {
		fail_with(q, SPF_PERMERROR, "more than %d DNS-querying terms", SPF_MAX_DNS_TERMS);
		return;
	}
	q->counted = true;
	int x = expand_name(q, f->rec.text + t->spec, t->spec_len, name);
	if (x == X_WAIT)
		return;
	switch ((enum spf_mech)t->mech) {
	case SPF_M_INCLUDE:
		if (x == X_BAD) {
			fail_with(q, SPF_PERMERROR, "include: of a name that cannot exist");
			return;
		}
		if (q->depth + 1 >= SPF_MAX_DEPTH) {
			fail_with(q, SPF_PERMERROR, "includes nested too deep");
			return;
		}
		q->depth++;
		memset(&q->fr[q->depth], 0, sizeof(q->fr[q->depth]));
		set_domain(q->fr[q->depth].domain, name);
		q->fr[q->depth].include = true;
		q->counted = false; /* the included record's terms count on their own */
		q->fetch = F_INCLUDE;
		q->stage = ST_FETCH;
		return;
	case SPF_M_A:
		if (x == X_BAD)
			term_done(q, false);
		else
			lookup(q, name, addr_type(q), W_A);
		return;
	case SPF_M_MX:
		if (x == X_BAD)
			term_done(q, false);
		else
			lookup(q, name, DNS_MX, W_MX);
		return;
	case SPF_M_EXISTS:
		/* RFC 7208 5.7: an A lookup, whatever the connection */
		if (x == X_BAD)
			term_done(q, false);
		else
			lookup(q, name, DNS_A, W_EXISTS);
		return;
	case SPF_M_PTR: {
		if (x == X_BAD) {
			term_done(q, false);
			return;
		}
		if (q->p_state != P_DONE) {
			start_p(q);
			return;
		}
		/* RFC 7208 5.5: a validated name equal to or under the target */
		if (q->ptr_void && !count_void(q, "PTR"))
			return;
		bool match = false;
		for (int i = 0; i < q->n_ptr && !match; i++)
			match = q->ptr_valid[i] && name_under(q->ptr_names[i], name);
		term_done(q, match);
		return;
	}
	default:
		term_done(q, false);
	}
}

/* The address lookups of an "mx" term, decided in the order of the names as
 * soon as it can be: the first name that matches, unless an earlier one
 * failed (temperror, RFC 7208 5). */
static void mx_decide(struct spf_query *q)
{
	for (int i = 0; i < q->n_slots; i++) {
		int v = q->slot[i].verdict;
		if (v == -2)
			return;
		if (v == -1) {
			fail_with(q, SPF_TEMPERROR, "address lookup of an MX host failed");
			return;
		}
		if (v == 1) {
			cancel_lookups(q);
			term_done(q, true);
			return;
		}
	}
	q->n_slots = 0;
	term_done(q, false);
}

/* ---- %{p} and ptr: the client's validated names (RFC 7208 5.5) ---- */

static void p_done(struct spf_query *q);

static void start_p(struct spf_query *q)
{
	char rev[SPF_ESC_MAX];
	if (q->p_state != P_NONE) {
		/* running with nothing in flight would wait forever */
		if (q->p_state == P_RUNNING && q->pending == 0)
			p_done(q);
		return;
	}
	q->p_state = P_RUNNING;
	if (dns_reverse_name(q->ip_text, rev, sizeof(rev)) < 0) {
		q->p_state = P_DONE;
		return;
	}
	q->wait = W_PTR;
	q->dq = dns_lookup(q->dns, rev, DNS_PTR, on_answer, q);
	if (q->dq != NULL)
		q->pending++;
	else
		q->p_state = P_DONE;
}

static void p_done(struct spf_query *q)
{
	for (int i = 0; i < q->n_ptr; i++)
		q->ptr_valid[i] = q->slot[i].verdict == 1;
	q->n_slots = 0;
	q->p_state = P_DONE;
}

static void ptr_answer(struct spf_query *q, const struct dns_answer *a)
{
	q->ptr_void = a->status == DNS_NXDOMAIN || a->status == DNS_NODATA;
	/* RFC 7208 4.6.4: only the first 10 names; a DNS error: no names (5.5) */
	for (size_t i = 0; a->status == DNS_OK && i < a->n && q->n_ptr < SPF_MAX_NAMES; i++)
		q->ptr_names[q->n_ptr++] = xstrdup(a->rr[i].u.ptr);
	q->n_slots = 0;
	for (int i = 0; i < q->n_ptr; i++)
		slot_lookup(q, q->ptr_names[i], addr_type(q));
	q->wait = W_PTR_ADDR;
	if (q->pending == 0)
		p_done(q);
}

/* ---- answers ---- */

static void on_answer(void *arg, const struct dns_answer *a)
{
	struct spf_query *q = arg;
	const struct spf_term *t;

	q->dq = NULL;
	q->pending--;
	switch (q->wait) {
	case W_RECORD:
		record_answer(q, a);
		break;
	case W_A:
		t = cur_term(q);
		if (a->status == DNS_TEMPFAIL) {
			fail_with(q, SPF_TEMPERROR, "address lookup for \"%.*s\" failed",
			          (int)t->len, top(q)->rec.text + t->off);
		} else if (a->status == DNS_OK) {
			bool match = false;
			for (size_t i = 0; i < a->n && !match; i++)
				match = addr_match(q, &a->rr[i], t->cidr4, t->cidr6);
			term_done(q, match);
		} else if (a->status == DNS_BADNAME || count_void(q, "a")) {
			term_done(q, false);
		}
		break;
	case W_EXISTS:
		if (a->status == DNS_TEMPFAIL)
			fail_with(q, SPF_TEMPERROR, "exists: lookup failed");
		else if (a->status == DNS_OK)
			term_done(q, true);
		else if (a->status == DNS_BADNAME || count_void(q, "exists"))
			term_done(q, false);
		break;
	case W_MX:
		if (a->status == DNS_TEMPFAIL) {
			fail_with(q, SPF_TEMPERROR, "MX lookup failed");
		} else if (a->status != DNS_OK) {
			if (a->status == DNS_BADNAME || count_void(q, "mx"))
				term_done(q, false);
		} else if (a->n > SPF_MAX_NAMES) {
			/* RFC 7208 4.6.4 */
			fail_with(q, SPF_PERMERROR, "more than %d MX records", SPF_MAX_NAMES);
		} else {
			q->n_slots = 0;
			for (size_t i = 0; i < a->n; i++)
				if (a->rr[i].u.mx.host[0] != '\0') /* a null MX names nobody */
					slot_lookup(q, a->rr[i].u.mx.host, addr_type(q));
			q->wait = W_MX_ADDR;
			mx_decide(q);
		}
		break;
	case W_PTR:
		ptr_answer(q, a);
		break;
	case W_EXP:
		q->stage = ST_DEFAULT_EXP;
		/* RFC 7208 6.2: one record exactly, else as if there were no exp= */
		if (a->status == DNS_OK && a->n == 1) {
			q->exp_text = xmalloc(a->rr[0].u.txt.len + 1);
			memcpy(q->exp_text, a->rr[0].u.txt.text, a->rr[0].u.txt.len + 1);
			q->stage = ST_EXP_TEXT;
		}
		break;
	default:
		break;
	}
	run(q);
}

static void on_slot(void *arg, const struct dns_answer *a)
{
	struct spf_slot *s = arg;
	struct spf_query *q = s->q;

	s->dq = NULL;
	q->pending--;
	if (q->wait == W_MX_ADDR) {
		const struct spf_term *t = cur_term(q);
		if (a->status == DNS_TEMPFAIL) {
			s->verdict = -1;
		} else {
			s->verdict = 0;
			for (size_t i = 0; a->status == DNS_OK && i < a->n && !s->verdict; i++)
				s->verdict = addr_match(q, &a->rr[i], t->cidr4, t->cidr6);
		}
		mx_decide(q);
	} else {
		/* W_PTR_ADDR: validated when an address is the client's own;
		 * a DNS error skips the name (RFC 7208 5.5) */
		s->verdict = 0;
		for (size_t i = 0; a->status == DNS_OK && i < a->n && !s->verdict; i++)
			s->verdict = addr_match(q, &a->rr[i], 128, 128);
		if (q->pending == 0)
			p_done(q);
	}
	run(q);
}

/* ---- explanations (RFC 7208 6.2) ---- */

/* Expands an explanation-string; 0, X_WAIT (%{p} first) or -1. */
static int explain(struct spf_query *q, const char *text, size_t len)
{
	char out[SPF_EXPAND_MAX];
	struct spf_macro_env env;

	if (spf_macro_uses_p(text, len) && q->p_state != P_DONE) {
		start_p(q);
		return X_WAIT;
	}
	macro_env(q, &env, q->p_state == P_DONE ? p_value(q) : NULL);
	if (spf_macro_expand(text, len, &env, SPF_EXPAND_EXP, out, sizeof(out), NULL, 0) < 0)
		return -1;
	/* It goes into an SMTP reply: a control or 8-bit byte that a macro
	 * brought in (a UTF-8 local-part) becomes '?' (RFC 5321 4.2: replies
	 * are ASCII text). */
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	free(q->explanation);
	q->explanation = xstrdup(out);
	return 0;
}

static void step(struct spf_query *q)
{
	struct spf_frame *f = top(q);
	char name[SPF_EXPAND_MAX];
	int x;

	switch (q->stage) {
	case ST_FETCH:
		lookup(q, f->domain, DNS_TXT, W_RECORD);
		return;
	case ST_TERM:
		eval_term(q);
		return;
	case ST_EXP:
		if (f->rec.exp_len == 0) {
			q->stage = ST_DEFAULT_EXP;
			return;
		}
		x = expand_name(q, f->rec.text + f->rec.exp, f->rec.exp_len, name);
		if (x == X_WAIT)
			return;
		if (x == X_BAD) {
			q->stage = ST_DEFAULT_EXP;
			return;
		}
		/* not counted against the limits (RFC 7208 4.6.4) */
		lookup(q, name, DNS_TXT, W_EXP);
		return;
	case ST_EXP_TEXT:
		x = explain(q, q->exp_text, strlen(q->exp_text));
		if (x == X_WAIT)
			return;
		if (x == 0) {
			finish(q, SPF_FAIL);
			return;
		}
		q->stage = ST_DEFAULT_EXP;
		return;
	case ST_DEFAULT_EXP: {
		const char *d = q->default_exp ? q->default_exp : SPF_DEFAULT_EXP;
		x = explain(q, d, strlen(d));
		if (x == X_WAIT)
			return;
		if (x < 0) {
			free(q->explanation);
			q->explanation = xstrdup(d);
		}
		finish(q, SPF_FAIL);
		return;
	}
	}
}

/* ---- the interface ---- */

static void on_limit(void *arg)
{
	struct spf_query *q = arg;
	q->limit = NULL;
	fail_with(q, SPF_TEMPERROR, "no result within %d s", SPF_TIME_LIMIT_MS / 1000);
	run(q);
}

/* RFC 7208 4.3: a <domain> that is no multi-label domain name gives none. */
static bool domain_ok(const char *d)
{
	size_t n = strlen(d), label = 0, labels = 0;
	if (n == 0 || n > SPF_NAME_MAX || d[0] == '[')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (c <= 0x20 || c >= 0x7f || ++label > SPF_LABEL_MAX) {
			return false;
		} else if (label == 1) {
			labels++;
		}
	}
	return label > 0 && labels >= 2;
}

struct spf_query *spf_check(struct dns *dns, const struct spf_request *r, spf_cb *cb, void *arg)
{
	int family;
	uint8_t ip[16];

	if (dns == NULL || r->ip == NULL || spf_ip_parse(r->ip, &family, ip) < 0)
		return NULL;
	struct spf_query *q = xcalloc(1, sizeof(*q));
	q->dns = dns;
	q->l = dns_loop(dns);
	q->cb = cb;
	q->arg = arg;
	q->family = family;
	memcpy(q->ip, ip, sizeof(ip));
	inet_ntop(family, ip, q->ip_text, sizeof(q->ip_text));
	q->now = (long long)time(NULL);

	const char *domain = r->domain ? r->domain : "";
	size_t dl = strlen(domain);
	if (dl > 0 && domain[dl - 1] == '.')
		dl--;
	snprintf(q->top_domain, sizeof(q->top_domain), "%.*s", (int)dl, domain);
	/* RFC 7208 4.3: no local-part: "postmaster" */
	const char *sender = r->sender && r->sender[0] ? r->sender : "";
	const char *at = strrchr(sender, '@');
	if (at != NULL && at > sender)
		q->local = xstrndup(sender, (size_t)(at - sender));
	else
		q->local = xstrdup("postmaster");
	q->sdomain = xstrdup(at ? at + 1 : sender[0] ? sender : q->top_domain);
	q->sender = at && at > sender ? xstrdup(sender) : xasprintf("postmaster@%s", q->sdomain);
	q->helo = xstrdup(r->helo ? r->helo : "unknown");
	q->receiver = xstrdup(r->receiver && r->receiver[0] ? r->receiver : "unknown");
	q->default_exp = r->default_exp ? xstrdup(r->default_exp) : NULL;

	q->starting = true;
	if (dl > SPF_NAME_MAX || !domain_ok(q->top_domain)) {
		finish(q, SPF_NONE);
	} else {
		snprintf(q->fr[0].domain, sizeof(q->fr[0].domain), "%s", q->top_domain);
		q->fetch = F_TOP;
		q->stage = ST_FETCH;
		q->limit = loop_timer_add(q->l, SPF_TIME_LIMIT_MS, on_limit, q);
	}
	run(q);
	q->starting = false;
	return q;
}

void spf_cancel(struct spf_query **qp)
{
	struct spf_query *q = *qp;
	if (q == NULL)
		return;
	*qp = NULL;
	query_free(q);
}
