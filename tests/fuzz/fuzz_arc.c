/* libFuzzer harness for ARC's parsing (src/policy/arc.c): the header section
 * of an untrusted message through the structural checks of RFC 8617 5.2
 * (instance parsing, grouping, tag checks), then, for a chain that is well
 * formed, the hash inputs the verifier builds (the newest AMS's selected
 * fields with b= emptied, each AS's sets). arc.c is compiled into this
 * harness with stand-ins for what the fuzz build does not link (OpenSSL,
 * c-ares, the pool): a copy of RFC 6376 3.2's tag-list rules, a relaxed
 * canonicalization, DNS answered by the harness, a pool that runs a job at
 * once, and crypto that accepts every signature. Checked: no crash, no
 * sanitizer report, the instance count within 0..51, a reason on failure. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/policy/arc.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- stand-ins ---- */
static bool fz_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *v, size_t max)
{
	size_t i = 0;
	int n = 0;
	for (;;) {
		while (i < len && fz_fws(s[i]))
			i++;
		if (i == len)
			return n;
		size_t ns = i;
		if (!isalpha((unsigned char)s[i]))
			return -1;
		while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_'))
			i++;
		size_t nl = i - ns;
		while (i < len && fz_fws(s[i]))
			i++;
		if (i == len || s[i] != '=')
			return -1;
		i++;
		while (i < len && fz_fws(s[i]))
			i++;
		size_t vs = i;
		while (i < len && s[i] != ';')
			i++;
		size_t ve = i;
		while (ve > vs && fz_fws(s[ve - 1]))
			ve--;
		if (nl < sizeof(v[0].name)) {
			for (int j = 0; j < n; j++)
				if (strlen(v[j].name) == nl && memcmp(v[j].name, s + ns, nl) == 0)
					return -1;
			if ((size_t)n == max)
				return -1;
			memcpy(v[n].name, s + ns, nl);
			v[n].name[nl] = '\0';
			v[n].value = s + vs;
			v[n].len = ve - vs;
			n++;
		}
		if (i == len)
			return n;
		i++;
	}
}

const char *dkim_tag_get(const struct dkim_tag *v, int n, const char *name, size_t *len_r)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0) {
			if (len_r)
				*len_r = v[i].len;
			return v[i].value;
		}
	return NULL;
}

void dkim_canon_header(enum dkim_canon c, const char *raw, size_t len, struct buf *out)
{
	if (c == DKIM_CANON_SIMPLE) {
		buf_append(out, raw, len);
		return;
	}
	for (size_t i = 0; i < len; i++)
		if (raw[i] != '\r' && raw[i] != '\n')
			buf_appendc(out, raw[i]);
	buf_append(out, "\r\n", 2);
}

struct dkim_bodyhash {
	int unused;
};
struct dkim_bodyhash *dkim_bodyhash_new(enum dkim_canon c, enum dkim_alg a, int64_t limit)
{
	return xcalloc(1, sizeof(struct dkim_bodyhash));
}
void dkim_bodyhash_feed(struct dkim_bodyhash *b, const char *p, size_t n)
{
}
size_t dkim_bodyhash_final(struct dkim_bodyhash *b, unsigned char out[64])
{
	memset(out, 0, 32);
	return 32;
}
void dkim_bodyhash_free(struct dkim_bodyhash **bp)
{
	free(*bp);
	*bp = NULL;
}
static int fz_dummy;
struct dkim_pubkey *dkim_pubkey_parse(const char *txt, size_t len, char **err_r)
{
	*err_r = NULL;
	return len > 0 && txt[0] == 'k' ? (struct dkim_pubkey *)&fz_dummy : NULL;
}
unsigned dkim_pubkey_bits(const struct dkim_pubkey *k)
{
	return 2048;
}
void dkim_pubkey_free(struct dkim_pubkey **kp)
{
	*kp = NULL;
}
/* every signature is valid: the verifier goes on to every AS's input */
int dkim_pubkey_verify(const struct dkim_pubkey *k, enum dkim_alg a, const void *d, size_t len,
		       const unsigned char *sig, size_t sig_len)
{
	return 1;
}
int dkim_key_sign(const struct dkim_key *k, const void *d, size_t len, struct buf *out)
{
	return -1;
}
const char *dkim_key_alg(const struct dkim_key *k)
{
	return NULL;
}
/* Lookups are answered by the harness after the feed (as the loop would):
 * "k..." for selectors starting with 'k', no record otherwise. */
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
		char txt[] = "k=rsa; p=AAAA";
		struct dns_rr rr = {.type = DNS_TXT};
		rr.u.txt.text = txt;
		rr.u.txt.len = strlen(txt);
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
