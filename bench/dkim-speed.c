/* DKIM primitive speeds: body hashing (simple, relaxed) and the public-key
 * operations (RSA-2048, Ed25519: sign, key record parse + verify, verify
 * alone). Not built by `make`; after `make`:
 *   cc -O2 -Isrc -o build/dkim-speed bench/dkim-speed.c build/libpostern.a \
 *      $(pkg-config --libs openssl) -lpthread && ./build/dkim-speed */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/dkim.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(void)
{
	size_t mb = 50, n = mb << 20;
	char *p = malloc(n);
	const char *line = "The quick brown fox jumps over the lazy dog, again  and\tagain.\r\n";
	size_t ll = strlen(line);
	for (size_t i = 0; i + ll <= n; i += ll)
		memcpy(p + i, line, ll);
	for (int c = 0; c < 2; c++) {
		double t = now();
		struct dkim_bodyhash *h = dkim_bodyhash_new(c, DKIM_ALG_RSA_SHA256, -1);
		for (size_t off = 0; off < n; off += 65536)
			dkim_bodyhash_feed(h, p + off, n - off < 65536 ? n - off : 65536);
		unsigned char d[64];
		dkim_bodyhash_final(h, d);
		dkim_bodyhash_free(&h);
		printf("body hash %s: %.0f MB/s\n", c ? "relaxed" : "simple", (double)mb / (now() - t));
	}
	free(p);
	const char *types[2] = {"rsa", "ed25519"}, *algs[2] = {"rsa-sha256", "ed25519-sha256"};
	const char data[] = "from:a@b\r\nto:c@d\r\nsubject:x\r\ndkim-signature:v=1; a=rsa-sha256; b=";
	for (int i = 0; i < 2; i++) {
		char *pem, *pub, *err;
		if (dkim_keygen(types[i], &pem, &pub, &err) < 0)
			return 1;
		struct dkim_key *k = dkim_key_load_private(pem, &err);
		char *rec = dkim_dns_record(algs[i], pub);
		enum dkim_alg a = i ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;
		int rounds = 500;
		struct buf sig = BUF_INIT;
		double t = now();
		for (int j = 0; j < rounds; j++) {
			buf_reset(&sig);
			dkim_key_sign(k, data, strlen(data), &sig);
		}
		double ts = (now() - t) / rounds;
		unsigned char *raw;
		size_t rl;
		dkim_b64_decode(sig.data, sig.len, &raw, &rl);
		t = now();
		for (int j = 0; j < rounds; j++) {
			struct dkim_pubkey *pk = dkim_pubkey_parse(rec, strlen(rec), &err);
			dkim_pubkey_verify(pk, a, data, strlen(data), raw, rl);
			dkim_pubkey_free(&pk);
		}
		double tpv = (now() - t) / rounds;
		struct dkim_pubkey *pk = dkim_pubkey_parse(rec, strlen(rec), &err);
		t = now();
		for (int j = 0; j < rounds; j++)
			dkim_pubkey_verify(pk, a, data, strlen(data), raw, rl);
		double tv = (now() - t) / rounds;
		printf("%s: sign %.0f us, record parse (cached) + verify %.0f us, verify %.0f us\n",
		       types[i], ts * 1e6, tpv * 1e6, tv * 1e6);
		dkim_pubkey_free(&pk);
		dkim_key_free(&k);
		buf_free(&sig);
		free(raw);
		free(rec);
		free(pem);
		free(pub);
	}
	return 0;
}
