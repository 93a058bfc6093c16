/* libFuzzer harness for DKIM parsing (src/policy/dkim_sig.c, dkim_prim.c).
 * Byte 0 selects what the rest is: 0 a DKIM-Signature value (parsed; when
 * usable, the header-hash input over a fixed header section is built), 1 a
 * key record (dkim_pubkey_parse), 2 a body (both canonicalizations, with l=
 * from byte 1; the digest must not depend on where the input is cut, byte 2),
 * 3 a header field (both canonicalizations; relaxed output is one line).
 * Everything also goes through dkim_tags_parse. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "policy/dkim.h"
#include "policy/dkim_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fields[] = {
	"From: a@b.test\r\n", "To: c@d.test\r\n", "Subject: x\r\n\ty\r\n", "From: e@f.test\r\n",
};

static void sig(const char *p, size_t n)
{
	struct buf raw = BUF_INIT;
	buf_appends(&raw, "DKIM-Signature:");
	buf_append(&raw, p, n);
	buf_appends(&raw, "\r\n");
	struct vsig s;
	memset(&s, 0, sizeof(s));
	dkim_sig_parse(&s, raw.data, raw.len, false, 1700000000);
	if (s.result == DKIM_NONE) {
		if (s.domain == NULL || s.selector == NULL || s.auid == NULL || s.h == NULL)
			abort();
		struct kfields kf = {0};
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			const char *c = strchr(fields[i], ':');
			struct hdr_field f = {fields[i], strlen(fields[i]), (size_t)(c - fields[i]),
					      false, false};
			dkim_kfields_add(&kf, &f);
		}
		struct buf out = BUF_INIT;
		dkim_header_data(&kf, s.h, s.nh, s.hc, &out);
		if (s.b_off + s.b_len > s.raw_len)
			abort();
		dkim_sig_field_data(s.raw, s.raw_len, s.b_off, s.b_len, s.hc, &out);
		buf_free(&out);
		dkim_kfields_free(&kf);
	} else if (s.reason == NULL) {
		abort();
	}
	dkim_vsig_clear(&s);
	buf_free(&raw);
}

static void body(const char *p, size_t n)
{
	if (n < 2)
		return;
	int64_t l = p[0] & 0x80 ? -1 : p[0];
	size_t split = (unsigned char)p[1];
	p += 2;
	n -= 2;
	if (split > n)
		split = n;
	for (int c = 0; c < 2; c++) {
		unsigned char d1[64], d2[64];
		struct dkim_bodyhash *b = dkim_bodyhash_new(c, DKIM_ALG_RSA_SHA256, l);
		dkim_bodyhash_feed(b, p, n);
		size_t n1 = dkim_bodyhash_final(b, d1);
		dkim_bodyhash_free(&b);
		b = dkim_bodyhash_new(c, DKIM_ALG_RSA_SHA256, l);
		dkim_bodyhash_feed(b, p, split);
		dkim_bodyhash_feed(b, p + split, n - split);
		size_t n2 = dkim_bodyhash_final(b, d2);
		dkim_bodyhash_free(&b);
		if (n1 != 32 || n2 != 32 || memcmp(d1, d2, 32) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	struct dkim_tag t[32];
	dkim_tags_parse(p, n, t, 32);
	switch (data[0] & 3) {
	case 0:
		sig(p, n);
		break;
	case 1: {
		char *err = NULL;
		struct dkim_pubkey *k = dkim_pubkey_parse(p, n, &err);
		if ((k == NULL) == (err == NULL))
			abort();
		dkim_pubkey_free(&k);
		free(err);
		break;
	}
	case 2:
		body(p, n);
		break;
	case 3: {
		struct buf out = BUF_INIT;
		dkim_canon_header(DKIM_CANON_SIMPLE, p, n, &out);
		if (out.len != n)
			abort();
		buf_reset(&out);
		dkim_canon_header(DKIM_CANON_RELAXED, p, n, &out);
		if (out.len < 3 || memchr(out.data, '\n', out.len - 1) != NULL)
			abort();
		buf_free(&out);
		break;
	}
	}
	return 0;
}
