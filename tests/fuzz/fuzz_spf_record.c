/* libFuzzer harness for the SPF record parser and macro expander
 * (src/policy/spf_parse.c): the TXT records anyone can publish and the
 * local-parts and HELO names anyone can send. The first byte picks what the
 * rest is: a record, a macro-string (for a domain or an explanation), or a
 * name to prepare. Beyond "no crash": a parsed record's terms lie inside it
 * with sane CIDR lengths, an expansion is NUL-ended inside its buffer, a
 * prepared name obeys RFC 7208's limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "policy/spf_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t ip4[16] = {192, 0, 2, 3};
	static const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	char out[512], err[160];

	if (size < 1)
		return 0;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	switch (data[0] % 4) {
	case 0: {
		struct spf_record rec;
		if (spf_record_parse(s, n, &rec, err, sizeof(err)) < 0) {
			x_assert(memchr(err, '\0', sizeof(err)) != NULL);
			return 0;
		}
		x_assert(rec.len == n && rec.text[n] == '\0');
		for (size_t i = 0; i < rec.n; i++) {
			const struct spf_term *t = &rec.terms[i];
			x_assert(t->mech <= SPF_M_EXISTS);
			x_assert(t->off + t->len <= n && t->len > 0);
			x_assert(t->spec + t->spec_len <= n);
			x_assert(t->cidr4 <= 32 && t->cidr6 <= 128);
			if (t->spec_len > 0)
				x_assert(spf_domain_spec_check(rec.text + t->spec, t->spec_len) ==
				         0);
		}
		x_assert(rec.redirect + rec.redirect_len <= n && rec.exp + rec.exp_len <= n);
		spf_record_free(&rec);
		return 0;
	}
	case 1:
	case 2: {
		int flags = data[0] % 4 == 1 ? SPF_EXPAND_DOMAIN : SPF_EXPAND_EXP;
		struct spf_macro_env env = {
		    .s = "a.b-c+d@Ex.example.com",
		    .l = "a.b-c+d",
		    .o = "Ex.example.com",
		    .d = "sub.example.com",
		    .h = "helo.example.org",
		    .r = "receiver.example",
		    .p = (data[0] & 4) ? NULL : "mx.example.org",
		    .family = (data[0] & 8) ? 10 /* AF_INET6 */ : 2 /* AF_INET */,
		    .ip = (data[0] & 8) ? ip6 : ip4,
		    .t = 1700000000,
		};
		size_t cap = (data[0] & 16) ? 16 : sizeof(out);
		int syntax = spf_macro_expand(s, n, NULL, flags, NULL, 0, err, sizeof(err));
		int rc = spf_macro_expand(s, n, &env, flags, out, cap, err, sizeof(err));
		/* the syntax check and the expansion agree, unless it outgrew out */
		x_assert(rc == 0 ? syntax == 0 : 1);
		if (syntax < 0)
			x_assert(rc < 0);
		if (rc == 0) {
			x_assert(strnlen(out, cap) < cap);
			if (flags & SPF_EXPAND_DOMAIN) {
				for (const char *p = out; *p; p++)
					x_assert(!(*p >= 'A' && *p <= 'Z'));
				if (strlen(out) < sizeof(out)) {
					char name[sizeof(out)], esc[SPF_ESC_MAX];
					memcpy(name, out, strlen(out) + 1);
					if (spf_name_prepare(name) == 0) {
						x_assert(strlen(name) <= SPF_NAME_MAX);
						x_assert(spf_name_escape(name, esc, sizeof(esc)) ==
						         0);
					}
				}
			}
		}
		(void)spf_macro_uses_p(s, n);
		return 0;
	}
	default: {
		char name[1200];
		if (n >= sizeof(name))
			return 0;
		memcpy(name, s, n);
		name[n] = '\0';
		(void)spf_domain_spec_check(s, n);
		if (spf_name_prepare(name) == 0) {
			char esc[SPF_ESC_MAX];
			size_t l = strlen(name), label = 0;
			x_assert(l > 0 && l <= SPF_NAME_MAX && name[l - 1] != '.');
			for (size_t i = 0; i < l; i++) {
				label = name[i] == '.' ? 0 : label + 1;
				x_assert(label <= SPF_LABEL_MAX);
			}
			x_assert(spf_name_escape(name, esc, sizeof(esc)) == 0);
		}
		return 0;
	}
	}
}
