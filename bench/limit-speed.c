/* Rate and duplicate limits: the fingerprint's speed (MB/s over a text
 * body, fed in 64 KiB pieces as the spool receives it) and the cost of one
 * submission transaction's calls (limit_mail, limit_rcpt, limit_end,
 * limit_delivered) with 4096 senders in the table (every call an LRU hit or
 * eviction). Not built by `make`; after `make`:
 *   cc -O2 -Isrc -o build/limit-speed bench/limit-speed.c build/libpostern.a \
 *      $(pkg-config --libs openssl sqlite3 libargon2 libcares zlib libxml-2.0) -lcrypt \
 *      -lpthread && ./build/limit-speed 2>/dev/null */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "filter/limit.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); /* CPU time: a busy machine */
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(void)
{
	size_t mb = 50, n = mb << 20;
	char *p = malloc(n);
	const char *line = "The quick brown fox jumps over the lazy dog 12345, again  and\tagain.\r\n";
	size_t ll = strlen(line);
	memcpy(p, "Subject: x\r\n\r\n", 14);
	for (size_t i = 14; i + ll <= n; i += ll)
		memcpy(p + i, line, ll);
	struct limit_fp f;
	double t = now();
	limit_fp_init(&f);
	for (size_t i = 0; i < n; i += 65536)
		limit_fp_feed(&f, p + i, n - i < 65536 ? n - i : 65536);
	uint64_t fp = limit_fp_final(&f);
	printf("fingerprint: %.0f MB/s (fp %016llx)\n", mb / (now() - t), (unsigned long long)fp);

	struct config cfg;
	config_defaults(&cfg);
	cfg.rate_user_messages = cfg.rate_user_recipients = 0; /* never refuse (no log */
	struct limit *l = limit_new(&cfg, NULL, NULL);         /* lines): fps unique */
	char user[64], rcpt[64];
	const char *rc[1] = {rcpt};
	struct limit_reply r;
	int tx = 2000000;
	t = now();
	for (int i = 0; i < tx; i++) {
		snprintf(user, sizeof user, "user%d@example.org", i % 5000);
		snprintf(rcpt, sizeof rcpt, "r%d@remote.test", i);
		struct limit_sender s = {user, "192.0.2.1", user};
		limit_mail(l, &s, 1800000000 + i / 1000, &r);
		limit_rcpt(l, &s, 0, 1800000000 + i / 1000, &r);
		limit_end(l, &s, (uint64_t)i + 1, rc, 1, 1800000000 + i / 1000, &r);
		limit_delivered(l, &s, (uint64_t)i + 1, rc, 1, 1800000000 + i / 1000);
	}
	double dt = now() - t;
	printf("limit calls: %.0f ns per transaction (mail+rcpt+end+delivered), %d senders "
	       "cycling through a table of 4096\n",
	       dt / tx * 1e9, 5000);
	limit_free(&l);
	config_free(&cfg);
	free(p);
	return 0;
}
