/* libFuzzer harness for the DMARC record parser and the organizational
 * domain (src/policy/dmarc.c, psl.c): the TXT records anyone can publish at
 * _dmarc.<domain>, and the From domains anyone can write. Beyond "no crash":
 * a record parses only if it starts with v=DMARC1; a parsed record's values
 * are in their ranges and its URIs are mailto: ones; an organizational
 * domain is a suffix (at a label boundary) of the lowercased name; the
 * evaluation of the record against the name is consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "policy/dmarc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_org(const struct psl *psl, const char *name)
{
	char out[256], low[300];
	size_t n = strlen(name);

	if (psl_org_domain(psl, name, out, sizeof(out)) < 0)
		return;
	if (n > 0 && name[n - 1] == '.')
		n--;
	x_assert(n < sizeof(low));
	for (size_t i = 0; i < n; i++)
		low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	low[n] = '\0';
	size_t k = strlen(out);
	x_assert(k > 0 && k <= n);
	x_assert(strcmp(low + n - k, out) == 0);
	x_assert(k == n || low[n - k - 1] == '.');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct psl *psl;
	static int loaded;
	struct dmarc_record r;

	if (!loaded) {
		char *err = NULL;
		log_set_level(LOG_ERR);
		psl = psl_load("/usr/share/publicsuffix/public_suffix_list.dat", &err);
		free(err);
		loaded = 1;
	}
	int rc = dmarc_record_parse((const char *)data, size, &r);
	x_assert(rc == 0 || rc == -1);
	if (!dmarc_record_is_dmarc((const char *)data, size))
		x_assert(rc == -1);
	if (rc == 0) {
		x_assert(r.pct >= 0 && r.pct <= 100);
		x_assert(r.p <= DMARC_P_REJECT && r.sp <= DMARC_P_REJECT);
		x_assert(r.n_rua <= DMARC_MAX_URIS && r.n_ruf <= DMARC_MAX_URIS);
		x_assert(memchr(r.fo, '\0', sizeof(r.fo)) != NULL && r.fo[0] != '\0');
		x_assert(memchr(r.rf, '\0', sizeof(r.rf)) != NULL);
		for (size_t i = 0; i < r.n_rua; i++)
			x_assert(strncmp(r.rua[i], "mailto:", 7) == 0 && strlen(r.rua[i]) > 7);
		for (size_t i = 0; i < r.n_ruf; i++)
			x_assert(strncmp(r.ruf[i], "mailto:", 7) == 0 && strlen(r.ruf[i]) > 7);
		if (r.p_fallback)
			x_assert(r.p == DMARC_P_NONE && r.sp == DMARC_P_NONE);
	} else {
		x_assert(r.n_rua == 0 && r.n_ruf == 0);
	}

	/* the same bytes as domain names: the first line as the From domain,
	 * the rest as the SPF domain */
	char name[300], other[300];
	size_t n = 0;
	while (n < size && n < sizeof(name) - 1 && data[n] != '\n' && data[n] != '\0')
		n++;
	memcpy(name, data, n);
	name[n] = '\0';
	size_t m = size > n + 1 ? size - n - 1 : 0;
	if (m > sizeof(other) - 1)
		m = sizeof(other) - 1;
	memcpy(other, data + size - m, m);
	other[m] = '\0';
	if (memchr(other, '\0', m) != NULL)
		other[0] = '\0';
	check_org(psl, name);
	check_org(NULL, name);

	struct dkim_sig_result sig = {.result = DKIM_PASS, .domain = other};
	struct dkim_results dk = {1, &sig};
	struct dmarc_input in = {name, SPF_PASS, other, &dk};
	struct dmarc_outcome o;
	dmarc_evaluate(psl, &in, rc == 0 ? &r : NULL, name, (int)(size % 100), &o);
	if (rc != 0 || r.adkim_strict == r.aspf_strict)
		x_assert(o.spf_aligned == o.dkim_aligned);
	if (rc != 0)
		x_assert(o.result == DMARC_NONE);
	else if (name[0] != '\0')
		x_assert(o.result == (o.spf_aligned ? DMARC_PASS : DMARC_FAIL));
	if (o.result != DMARC_FAIL)
		x_assert(o.disposition == DMARC_P_NONE && !o.sampled_out);
	else
		x_assert(o.disposition <= o.policy);
	dmarc_record_free(&r);
	return 0;
}
