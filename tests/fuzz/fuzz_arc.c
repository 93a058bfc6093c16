/* libFuzzer harness for ARC's parsing (src/policy/arc.c): the header section
 * of an untrusted message through the structural checks of RFC 8617 5.2
 * (instance parsing, grouping, tag checks), then, for a chain that is well
 * formed, the hash inputs the verifier builds (the newest AMS's selected
 * fields with b= emptied, each AS's sets). arc.c is compiled into this
 * harness and linked with the real DKIM primitives (src/policy/dkim_prim.c:
 * tag lists, canonicalization, body hashes, keys and RSA verification), with
 * stand-ins only for what the fuzz build does not link (c-ares, the pool):
 * DNS answered by the harness with a real key, a pool that runs a job at
 * once. Checked: no crash, no sanitizer report, the instance count within
 * 0..51, a reason on failure. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/policy/arc.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- stand-ins for what the fuzz build does not link ---- */
static int fz_dummy;
/* The public half of the key that sealed seeds/fuzz_arc/sealed1 (RSA-1024,
 * d=example.test s=ksel, made with dkimpy's arc_sign): a chain sealed with
 * it verifies for real, so the pass paths are reached, and every mutation
 * of it goes through the real failure paths. */
static const char fz_key[] =
	"v=DKIM1; k=rsa; p="
	"MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDAtNo0/AJt0QwFla2mGhZp60th"
	"Jq7795yFdYJIG7ex7GpaFcBXjvfQ6lGGwQXCySeOUMgK7IN/Sk40E48MuOzOySbJ"
	"6wmMce6qRxQHaer33J1wR+k9H9SNnVixHvVxzD34oHarrXPsNlQ68jbchbPkhL83"
	"YNXvYQH08CX3iJF5oQIDAQAB";
/* Lookups are answered by the harness after the feed (as the loop would):
 * fz_key for selectors starting with 'k', no record otherwise. */
#define FZ_MAX_Q 64
static struct {
	dns_cb *cb;
	void *arg;
	bool ok;
} fz_q[FZ_MAX_Q];
static size_t fz_nq;
struct dns_query *dns_lookup(struct dns *d, const char *name, enum dns_type type, dns_cb *cb,
			     void *arg)
{
	if (fz_nq == FZ_MAX_Q)
		return NULL;
	fz_q[fz_nq].cb = cb;
	fz_q[fz_nq].arg = arg;
	fz_q[fz_nq].ok = name[0] == 'k';
	fz_nq++;
	return (struct dns_query *)&fz_q[fz_nq - 1];
}
void dns_cancel(struct dns_query **qp)
{
	*qp = NULL;
}
static void fz_answer_all(void)
{
	for (size_t i = 0; i < fz_nq; i++) {
		struct dns_rr rr = {.type = DNS_TXT};
		rr.u.txt.text = (char *)fz_key;
		rr.u.txt.len = sizeof fz_key - 1;
		struct dns_answer a = {fz_q[i].ok ? DNS_OK : DNS_NXDOMAIN, false,
				       fz_q[i].ok ? 1 : 0, &rr};
		fz_q[i].cb(fz_q[i].arg, &a);
	}
	fz_nq = 0;
}
void pool_submit(struct pool *p, loop_cb *work, loop_cb *done, void *arg)
{
	work(arg);
	done(arg);
}

static void fz_cb(void *arg, const struct arc_outcome *o)
{
	if (o->instances < 0 || o->instances > ARC_MAX_INSTANCES + 1)
		abort();
	if (o->result == ARC_FAIL && o->reason == NULL)
		abort();
	*(int *)arg += 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int n = -1, calls = 0;
	const char *why = NULL;
	enum arc_result r = arc_check_structure((const char *)data, size, &n, &why);

	if (n < 0 || n > ARC_MAX_INSTANCES + 1 || (r == ARC_FAIL && why == NULL))
		abort();
	/* the whole verifier, in two pieces (pool_submit above runs the job
	 * and its completion at once: the hash inputs get built) */
	static const struct dkim_limits lim = {5, 1024, 8192, 4096, 200};
	struct arc_verify *v = arc_verify_new((struct dns *)&fz_dummy, NULL, &lim);
	fz_nq = 0;
	arc_verify_feed(v, (const char *)data, size / 2);
	arc_verify_feed(v, (const char *)data + size / 2, size - size / 2);
	/* size % 3 == 0: the lookups end before the message does (unless the
	 * header only ends with the message: they start in finish) */
	if (size % 3 == 0)
		fz_answer_all();
	arc_verify_finish(v, fz_cb, &calls);
	fz_answer_all();
	if (calls != 1)
		abort();
	arc_verify_free(&v);
	return 0;
}
