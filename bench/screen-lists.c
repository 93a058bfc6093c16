/* The connection stage's local lists at size: N /24 block entries (default
 * 10,000) loaded from the store, re-read (what `postern block add` costs the
 * loop), and matched per connection (a miss: the worst case), against the
 * same entries in an unsorted set (the linear scan). Not built by `make`;
 * after `make`:
 *   cc -O2 -std=gnu11 -D_GNU_SOURCE -Isrc -o build/screen-lists bench/screen-lists.c \
 *      build/libpostern.a $(pkg-config --libs openssl sqlite3 libargon2 libcares zlib \
 *      libxml-2.0) -lcrypt -lpthread && ./build/screen-lists [N] */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/loop.h"
#include "filter/screen.h"
#include "store/store.h"

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000, conns = 100000;
	char dir[] = "/tmp/screen-lists.XXXXXX", path[128], net[32];
	char *err = NULL;
	if (mkdtemp(dir) == NULL)
		return 1;
	struct store *st = store_open(dir, &err);
	if (st == NULL) {
		fprintf(stderr, "store: %s\n", err);
		return 1;
	}
	snprintf(path, sizeof path, "%s/postern.db", dir);
	sqlite3 *db;
	sqlite3_open(path, &db);
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	struct cidr_set *scan = cidr_set_new();
	for (int i = 0; i < n; i++) {
		snprintf(net, sizeof net, "10.%d.%d.0/24", (i >> 8) & 255, i & 255);
		char *sql = sqlite3_mprintf("INSERT INTO ip_lists VALUES(%Q, 'block', '', 0)", net);
		sqlite3_exec(db, sql, NULL, NULL, NULL);
		sqlite3_free(sql);
		cidr_set_add(scan, net);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);

	struct config cfg;
	config_defaults(&cfg);
	config_set(&cfg, "log_level", "warn", NULL);
	struct loop *l = loop_new();
	double t = now_ms();
	struct screen *s = screen_new(l, NULL, st, &cfg, &err);
	printf("entries %d: screen_new %.1f ms", n, now_ms() - t);
	for (int k = 0; k < 3; k++) {
		t = now_ms();
		screen_reload(s);
		printf(", reload %.1f ms", now_ms() - t);
	}
	printf("\n");
	int hits = 0;
	t = now_ms();
	for (int i = 0; i < conns; i++) {
		struct screen_conn *c = screen_conn_new(s, "198.51.100.1", 1000 + i);
		hits += screen_conn_result(c)->blocked;
		screen_conn_free(&c);
	}
	printf("screen_conn_new (a miss): %.2f us each\n", (now_ms() - t) * 1e3 / conns);
	t = now_ms();
	for (int i = 0; i < 1000; i++)
		hits += cidr_set_match(scan, "198.51.100.1");
	printf("linear scan of the same entries: %.2f us each\n", (now_ms() - t) * 1e3 / 1000);
	screen_free(&s);
	cidr_set_free(&scan);
	store_close(&st);
	loop_free(&l);
	config_free(&cfg);
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return hits == 0 ? 0 : 1;
}
