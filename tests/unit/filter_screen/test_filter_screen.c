/* The connection stage (src/filter/screen.c, cidr.c, dnsbl.c): CIDR entries
 * and their canonical forms, matching, dnsbl_sites syntax and filters, the
 * query names of RFC 5782 2.1/2.4, the rule names; the screen with a real
 * store: trusted networks, local lists and their reload (on the caller's
 * thread and on a worker), the connection rate and its window, and a dead
 * DNSBL server (the lookup fails: not listed, the waiter is called). */
#define STORE_FIXTURE_NAME "test_filter_screen"
#include "../test.h"
#include "../store_fixture.h"

#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "dns/dns.h"
#include "filter/screen.h"

static void test_cidr_canonical(void)
{
	static const struct {
		const char *in, *want; /* want NULL: refused */
	} cases[] = {
	    {"192.0.2.7", "192.0.2.7/32"},
	    {"192.0.2.7/24", "192.0.2.0/24"},
	    {"192.0.2.255/25", "192.0.2.128/25"},
	    {"10.1.2.3/0", "0.0.0.0/0"},
	    {"10.1.2.3/8", "10.0.0.0/8"},
	    {"10.1.2.3/9", "10.0.0.0/9"},
	    {"10.255.2.3/9", "10.128.0.0/9"},
	    {"127.0.0.1/32", "127.0.0.1/32"},
	    {"2001:DB8:0::1", "2001:db8::1/128"},
	    {"2001:db8:ffff::1/32", "2001:db8::/32"},
	    {"2001:db8::1/65", "2001:db8::/65"},
	    {"2001:db8:0:0:8000::/65", "2001:db8:0:0:8000::/65"},
	    {"[2001:db8::]/48", "2001:db8::/48"},
	    {"[2001:db8::1]", "2001:db8::1/128"},
	    {"::/0", "::/0"},
	    {"::1", "::1/128"},
	    /* IPv4-mapped IPv6 (RFC 4291 2.5.5.2): IPv4, prefix less 96 */
	    {"::ffff:192.0.2.1", "192.0.2.1/32"},
	    {"::ffff:192.0.2.1/120", "192.0.2.0/24"},
	    {"::ffff:192.0.2.1/64", NULL},
	    /* refused */
	    {"", NULL},
	    {"/24", NULL},
	    {"192.0.2.0/", NULL},
	    {"192.0.2.0/33", NULL},
	    {"2001:db8::/129", NULL},
	    {"192.0.2.0/-1", NULL},
	    {"192.0.2.0/2x", NULL},
	    {"192.0.2.0/0024", NULL},
	    {"192.0.2", NULL},
	    {"192.0.2.256", NULL},
	    {"[192.0.2.1]", NULL},
	    {"example.com", NULL},
	    {"192.0.2.0/24/8", NULL},
	    {"2001:db8::1%eth0", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[CIDR_TEXT_MAX];
		int r = cidr_canonical(cases[i].in, out, sizeof out);
		CHECK_INT((int)i, r, cases[i].want ? 0 : -1);
		if (r == 0 && cases[i].want)
			CHECK_STR((int)i, out, cases[i].want);
	}
	/* the longest form fits CIDR_TEXT_MAX */
	char out[CIDR_TEXT_MAX];
	CHECK(cidr_canonical("1111:2222:3333:4444:5555:6666:7777:8888/128", out, sizeof out) == 0);
	CHECK(cidr_canonical("192.0.2.1", out, 8) == -1); /* too small: refused, not cut */
}

static void test_cidr_match(void)
{
	char *err = NULL;
	struct cidr_set *s = cidr_set_parse(" 192.0.2.0/24,198.51.100.7\t2001:db8::/32 ,, "
					    "10.0.0.0/9\n::ffff:203.0.113.0/120",
					    &err);
	CHECK(s != NULL && err == NULL);
	CHECK_INT(0, cidr_set_count(s), 5);
	static const struct {
		const char *ip;
		bool want;
	} cases[] = {
	    {"192.0.2.0", true},         {"192.0.2.255", true},
	    {"192.0.3.0", false},        {"198.51.100.7", true},
	    {"198.51.100.8", false},     {"2001:db8::1", true},
	    {"2001:db8:ffff::1", true},  {"2001:db9::1", false},
	    {"10.127.255.255", true},    {"10.128.0.0", false},
	    {"::ffff:192.0.2.9", true}, /* a dual-stack listener's IPv4 client */
	    {"203.0.113.77", true},      {"[2001:db8::2]", true},
	    {"not an ip", false},        {"", false},
	    {"::", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT((int)i, cidr_set_match(s, cases[i].ip), cases[i].want);
	CHECK(cidr_set_add(s, "203.0.114.0/23") == 0);
	CHECK(cidr_set_match(s, "203.0.115.1"));
	CHECK(cidr_set_add(s, "nope") == -1);
	CHECK_INT(1, cidr_set_count(s), 6);
	cidr_set_free(&s);
	CHECK(s == NULL);

	/* the bad entry is named */
	s = cidr_set_parse("192.0.2.0/24, 300.1.1.1", &err);
	CHECK(s == NULL && err != NULL && strstr(err, "300.1.1.1") != NULL);
	free(err);
	err = NULL;
	/* empty: a set that matches nothing */
	s = cidr_set_parse("", &err);
	CHECK(s != NULL && !cidr_set_match(s, "127.0.0.1"));
	cidr_set_free(&s);
	/* everything */
	s = cidr_set_parse("0.0.0.0/0 ::/0", &err);
	CHECK(cidr_set_match(s, "8.8.8.8") && cidr_set_match(s, "2001:db8::1"));
	cidr_set_free(&s);
	CHECK(!cidr_set_match(NULL, "127.0.0.1"));
}

static unsigned rnd16(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 8) & 0xffff;
}

/* A parsed set (sorted, searched per prefix length) and the same entries
 * added one by one (scanned) agree on random addresses and networks. */
static void test_cidr_sorted_vs_scan(void)
{
	struct buf list = BUF_INIT;
	struct cidr_set *scan = cidr_set_new();
	unsigned seed = 12345;
#define RND() rnd16(&seed)
	for (int i = 0; i < 3000; i++) {
		char e[64];
		if (i % 3 == 0)
			snprintf(e, sizeof e, "2001:db8:%x:%x::/%u", RND() % 16, RND(), 44 + RND() % 85);
		else
			snprintf(e, sizeof e, "%u.%u.%u.%u/%u", 10 + RND() % 4, RND() % 256,
				 RND() % 256, RND() % 256, 14 + RND() % 19);
		buf_append(&list, e, strlen(e));
		buf_append(&list, ",", 1);
		CHECK(cidr_set_add(scan, e) == 0);
	}
	buf_append(&list, "", 1);
	char *err = NULL;
	struct cidr_set *sorted = cidr_set_parse(list.data, &err);
	CHECK(sorted != NULL && cidr_set_count(sorted) <= 3000);
	int hits = 0, bad = 0;
	for (int i = 0; i < 20000; i++) {
		char ip[64];
		if (i % 3 == 0)
			snprintf(ip, sizeof ip, "2001:db8:%x:%x::%x", RND() % 16, RND(), RND());
		else
			snprintf(ip, sizeof ip, "%u.%u.%u.%u", 10 + RND() % 4, RND() % 256,
				 RND() % 256, RND() % 256);
		bool a = cidr_set_match(sorted, ip), b = cidr_set_match(scan, ip);
		hits += a;
		bad += a != b;
	}
#undef RND
	CHECK_INT(0, bad, 0);
	if (hits < 100 || hits > 19900) /* both outcomes must be tried */
		printf("  hits %d\n", hits);
	CHECK(hits >= 100 && hits <= 19900);
	/* duplicates: one entry per network */
	cidr_set_free(&sorted);
	sorted = cidr_set_parse("192.0.2.1/24 192.0.2.0/24 192.0.2.9/24 ::1 ::1/128", &err);
	CHECK_INT(1, cidr_set_count(sorted), 2);
	cidr_set_free(&sorted);
	cidr_set_free(&scan);
	buf_free(&list);
}

static void test_cidr_network(void)
{
	static const struct {
		const char *ip;
		int n4, n6;
		const char *want;
	} cases[] = {
	    {"192.0.2.77", 24, 64, "192.0.2.0/24"},
	    {"192.0.2.77", 32, 64, "192.0.2.77/32"},
	    {"2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::/64"},
	    {"2001:db8:1:2:3:4:5:6", 24, 48, "2001:db8:1::/48"},
	    {"::ffff:192.0.2.77", 24, 64, "192.0.2.0/24"},
	    {"192.0.2.77", 33, 64, NULL},
	    {"x", 24, 64, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[CIDR_TEXT_MAX];
		int r = cidr_network(cases[i].ip, cases[i].n4, cases[i].n6, out, sizeof out);
		CHECK_INT((int)i, r, cases[i].want ? 0 : -1);
		if (r == 0)
			CHECK_STR((int)i, out, cases[i].want);
	}
}

static void test_dnsbl_parse(void)
{
	static const struct {
		const char *list;
		int n; /* -1: refused */
	} cases[] = {
	    {"", 0},
	    {"zen.spamhaus.org", 1},
	    {"zen.spamhaus.org*3, bl.spamcop.net*2 list.dnswl.org=127.0.[0..255].[1..3]*-2", 3},
	    {"ZEN.Spamhaus.ORG.", 1},
	    {"b.example=127.0.0.[2;4;10..11]", 1},
	    {"b.example=127.0.0.[1..5;9]*+4", 1},
	    {"b.example*0", 1},
	    {"b.example=", -1},
	    {"b.example=127.0.0", -1},
	    {"b.example=127.0.0.2.1", -1},
	    {"b.example=127.0.0.256", -1},
	    {"b.example=127.0.0.[5..2]", -1},
	    {"b.example=127.0.0.[2", -1},
	    {"b.example=127.0.0.[]", -1},
	    {"b.example=127.0.0.[2;]", -1},
	    {"b.example=127.0.0.0002", -1},
	    {"b.example*", -1},
	    {"b.example*x", -1},
	    {"b.example*1000000", -1},
	    {"*3", -1},
	    {"=127.0.0.2", -1},
	    {"b..example", -1},
	    {".example", -1},
	    {"b.exa mple", 2}, /* white space separates entries */
	    {"b.ex@mple", -1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = 99;
		char *err = NULL;
		struct dnsbl_site *v = dnsbl_sites_parse(cases[i].list, &n, &err);
		if (cases[i].n < 0) {
			CHECK_INT((int)i, v == NULL, 1);
			CHECK_INT((int)i, err != NULL, 1);
		} else {
			CHECK_INT((int)i, v != NULL, 1);
			CHECK_INT((int)i, n, cases[i].n);
		}
		free(err);
		dnsbl_sites_free(v, n);
	}
	/* a zone too long for an IPv6 query name */
	char big[300];
	memset(big, 'a', sizeof big);
	for (int i = 50; i < 290; i += 51)
		big[i] = '.';
	big[290] = '\0';
	size_t n;
	char *err = NULL;
	CHECK(dnsbl_sites_parse(big, &n, &err) == NULL);
	free(err);
	/* a label of 64 octets */
	memset(big, 'a', 64);
	strcpy(big + 64, ".example");
	err = NULL;
	CHECK(dnsbl_sites_parse(big, &n, &err) == NULL);
	free(err);
}

static void test_dnsbl_filter(void)
{
	size_t n = 0;
	char *err = NULL;
	struct dnsbl_site *v = dnsbl_sites_parse(
	    "ZEN.spamhaus.org.*3 list.dnswl.org=127.0.[0..255].[1..3]*-2 "
	    "b.example=127.0.0.[2;4;10..11] c.example=127.0.0.2",
	    &n, &err);
	CHECK(v != NULL && n == 4);
	if (v == NULL)
		return;
	CHECK_STR(0, dnsbl_site_zone(v, 0), "zen.spamhaus.org");
	CHECK_INT(0, dnsbl_site_weight(v, 0), 3);
	CHECK_INT(1, dnsbl_site_weight(v, 1), -2);
	CHECK_INT(2, dnsbl_site_weight(v, 2), 1);
	static const struct {
		size_t site;
		uint8_t a[4];
		bool want;
	} cases[] = {
	    /* no filter: 127/8, but not the "refused" 127.255.255/24 */
	    {0, {127, 0, 0, 2}, true},
	    {0, {127, 0, 0, 11}, true},
	    {0, {127, 0, 1, 0}, true},
	    {0, {127, 255, 255, 254}, false},
	    {0, {127, 255, 255, 252}, false},
	    {0, {10, 0, 0, 2}, false},
	    {0, {192, 0, 2, 1}, false},
	    {1, {127, 0, 10, 1}, true},
	    {1, {127, 0, 255, 3}, true},
	    {1, {127, 0, 10, 0}, false},
	    {1, {127, 0, 10, 4}, false},
	    {1, {127, 1, 10, 2}, false},
	    {2, {127, 0, 0, 2}, true},
	    {2, {127, 0, 0, 3}, false},
	    {2, {127, 0, 0, 4}, true},
	    {2, {127, 0, 0, 9}, false},
	    {2, {127, 0, 0, 10}, true},
	    {2, {127, 0, 0, 11}, true},
	    {2, {127, 0, 0, 12}, false},
	    {3, {127, 0, 0, 2}, true},
	    {3, {127, 0, 0, 3}, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT((int)i, dnsbl_site_match(v, cases[i].site, cases[i].a), cases[i].want);
	dnsbl_sites_free(v, n);
}

static void test_dnsbl_names(void)
{
	static const struct {
		const char *zone, *ip, *want;
	} cases[] = {
	    /* RFC 5782 2.1 */
	    {"bad.example.com", "192.0.2.99", "99.2.0.192.bad.example.com"},
	    {"zen.spamhaus.org.", "127.0.0.2", "2.0.0.127.zen.spamhaus.org"},
	    {"zen.spamhaus.org", "::ffff:127.0.0.2", "2.0.0.127.zen.spamhaus.org"},
	    /* RFC 5782 2.4's example */
	    {"bad.example.com", "2001:db8:1:2:3:4:567:89ab",
	     "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bad.example.com"},
	    {"z.example", "::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.z.example"},
	    {"z.example", "bogus", NULL},
	    {"", "192.0.2.1", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[256];
		int r = dnsbl_query_name(cases[i].zone, cases[i].ip, out, sizeof out);
		CHECK_INT((int)i, r, cases[i].want ? 0 : -1);
		if (r == 0)
			CHECK_STR((int)i, out, cases[i].want);
	}
	char small[20];
	CHECK(dnsbl_query_name("zen.spamhaus.org", "192.0.2.1", small, sizeof small) == -1);

	static const struct {
		const char *zone, *want;
	} rules[] = {
	    {"zen.spamhaus.org", "DNSBL_ZEN_SPAMHAUS_ORG"},
	    {"list.dnswl.org", "DNSBL_LIST_DNSWL_ORG"},
	    {"b-l.Example_1", "DNSBL_B_L_EXAMPLE_1"},
	};
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
		char out[64];
		dnsbl_rule_name(rules[i].zone, out, sizeof out);
		CHECK_STR((int)i, out, rules[i].want);
	}
	char cut[10];
	dnsbl_rule_name("zen.spamhaus.org", cut, sizeof cut);
	CHECK_STR(0, cut, "DNSBL_ZEN");
}

/* ---- the screen ---- */

static void cfg_make(struct config *cfg, const char *trusted, int rate, const char *sites)
{
	char *err = NULL;
	char num[16];
	config_defaults(cfg);
	snprintf(num, sizeof num, "%d", rate);
	if (config_set(cfg, "trusted_networks", trusted, &err) < 0 ||
	    config_set(cfg, "conn_rate_limit", num, &err) < 0 ||
	    config_set(cfg, "dnsbl_sites", sites, &err) < 0) {
		printf("  config: %s\n", err);
		free(err);
	}
}

/* one connection's result flags as a string: "t", "a", "b", "r", "" */
static const char *verdict(struct screen *s, const char *ip, time_t now)
{
	static char out[8];
	struct screen_conn *c = screen_conn_new(s, ip, now);
	const struct screen_result *r = screen_conn_result(c);
	snprintf(out, sizeof out, "%s%s%s%s", r->trusted ? "t" : "", r->allowed ? "a" : "",
		 r->blocked ? "b" : "", r->rate_exceeded ? "r" : "");
	if (!r->done)
		strcat(out, "?");
	screen_conn_free(&c);
	return out;
}

static void test_screen_lists(void)
{
	struct env e;
	struct config cfg;
	char *err = NULL;

	CHECK(env_new(&e));
	CHECK(store_ip_list_add(e.st, "192.0.2.0/24", "block", "spam source", &err) == 0);
	CHECK(store_ip_list_add(e.st, "192.0.2.8/32", "allow", "", &err) == 0);
	CHECK(store_ip_list_add(e.st, "2001:db8::/32", "block", "", &err) == 0);
	cfg_make(&cfg, "127.0.0.0/8, ::1", 0, "");
	struct screen *s = screen_new(e.l, NULL, e.st, &cfg, &err);
	CHECK(s != NULL);
	if (s == NULL)
		goto out;
	CHECK(screen_trusted(s, "127.0.0.1") && screen_trusted(s, "::1"));
	CHECK(!screen_trusted(s, "192.0.2.1"));
	CHECK_STR(0, verdict(s, "127.0.0.1", 1000), "t");
	CHECK_STR(1, verdict(s, "192.0.2.1", 1000), "b");
	CHECK_STR(2, verdict(s, "192.0.2.8", 1000), "a"); /* the allow list wins */
	CHECK_STR(3, verdict(s, "198.51.100.1", 1000), "");
	CHECK_STR(4, verdict(s, "2001:db8::25", 1000), "b");
	CHECK_STR(5, verdict(s, "socketpair", 1000), "");
	struct screen_conn *c = screen_conn_new(s, "192.0.2.1", 1000);
	CHECK_STR(6, screen_conn_result(c)->why, "client [192.0.2.1] blocked by local policy");
	CHECK(!screen_conn_wait(c, NULL, NULL)); /* decided at once */
	screen_conn_free(&c);

	/* a change, then the reload on the caller's thread (no pool) */
	CHECK(store_ip_list_del(e.st, "192.0.2.0/24", "block", &err) == 1);
	CHECK(store_ip_list_del(e.st, "192.0.2.0/24", "block", &err) == 0);
	CHECK(store_ip_list_add(e.st, "198.51.100.0/24", "block", "", &err) == 0);
	CHECK_STR(7, verdict(s, "192.0.2.1", 1000), "b"); /* not re-read yet */
	screen_reload(s);
	CHECK_STR(8, verdict(s, "192.0.2.1", 1000), "");
	CHECK_STR(9, verdict(s, "198.51.100.1", 1000), "b");

	/* the once-a-minute check re-reads only when the notice's time moved */
	CHECK(store_ip_list_add(e.st, "198.51.100.0/24", "allow", "moved", &err) == 0);
	screen_free(&s);
	CHECK(s == NULL);

	/* the CLI's notice reaches a screen through the loop */
	s = screen_new(e.l, NULL, e.st, &cfg, &err);
	CHECK(s != NULL);
	CHECK_STR(11, verdict(s, "203.0.113.5", 1000), "");
	CHECK(store_ip_list_add(e.st, "203.0.113.0/24", "block", "", &err) == 0);
	store_ip_lists_changed(e.st);
	for (int i = 0; i < 2000 && strcmp(verdict(s, "203.0.113.5", 1000), "b") != 0; i++)
		run_a_bit(e.l);
	CHECK_STR(12, verdict(s, "203.0.113.5", 1000), "b");
	screen_free(&s);
out:
	config_free(&cfg);
	free(err);
	env_free(&e);
}

static void test_screen_bad_config(void)
{
	struct config cfg;
	char *err = NULL;
	cfg_make(&cfg, "127.0.0.0/8, 10.0.0.0/40", 0, "");
	CHECK(screen_new(NULL, NULL, NULL, &cfg, &err) == NULL);
	CHECK(err != NULL && strstr(err, "trusted_networks") && strstr(err, "10.0.0.0/40"));
	free(err);
	err = NULL;
	config_free(&cfg);
	cfg_make(&cfg, "", 0, "zen.spamhaus.org=127.0.0");
	CHECK(screen_new(NULL, NULL, NULL, &cfg, &err) == NULL);
	CHECK(err != NULL && strstr(err, "127.0.0"));
	free(err);
	config_free(&cfg);
}

static void test_screen_rate(void)
{
	struct config cfg;
	char *err = NULL;
	cfg_make(&cfg, "", 3, "");
	struct screen *s = screen_new(NULL, NULL, NULL, &cfg, &err);
	CHECK(s != NULL);
	if (s == NULL)
		return;
	CHECK_STR(0, verdict(s, "192.0.2.1", 1000), "");
	CHECK_STR(1, verdict(s, "192.0.2.1", 1010), "");
	CHECK_STR(2, verdict(s, "192.0.2.1", 1020), "");
	CHECK_STR(3, verdict(s, "192.0.2.1", 1030), "r");
	CHECK_STR(4, verdict(s, "192.0.2.2", 1030), ""); /* another client */
	CHECK_STR(5, verdict(s, "::ffff:192.0.2.1", 1059), "r"); /* the same, mapped */
	CHECK_STR(6, verdict(s, "192.0.2.1", 1060), "");  /* a new window */
	/* IPv6: per /64 */
	for (int i = 0; i < 3; i++) {
		char ip[64];
		snprintf(ip, sizeof ip, "2001:db8:1:2::%d", i + 1);
		CHECK_STR(10 + i, verdict(s, ip, 2000), "");
	}
	CHECK_STR(13, verdict(s, "2001:db8:1:2:ffff::1", 2000), "r");
	CHECK_STR(14, verdict(s, "2001:db8:1:3::1", 2000), "");
	/* a flood of new addresses (far more than the table holds): memory
	 * stays fixed, and the ones that come back are counted again */
	for (uint32_t i = 0; i < 200000; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		struct screen_conn *c = screen_conn_new(s, ip, 3000);
		screen_conn_free(&c);
	}
	CHECK_STR(15, verdict(s, "198.51.100.1", 3001), "");
	CHECK_STR(16, verdict(s, "198.51.100.1", 3001), "");
	CHECK_STR(17, verdict(s, "198.51.100.1", 3001), "");
	CHECK_STR(18, verdict(s, "198.51.100.1", 3001), "r");
	screen_free(&s);
	config_free(&cfg);
}

static bool waited;
static void on_wait(void *arg)
{
	waited = true;
}

/* A DNSBL server that does not answer: each lookup fails within the
 * resolver's timeout, the client counts as not listed, the waiter hears. */
static void test_screen_dead_dnsbl(void)
{
	struct config cfg;
	char *err = NULL;
	struct loop *l = loop_new();
	/* a UDP port nobody reads: bound, never answered */
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	socklen_t len = sizeof sin;
	CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	char servers[64];
	snprintf(servers, sizeof servers, "127.0.0.1:%u", ntohs(sin.sin_port));
	struct dns_config dc = {.servers = servers, .timeout_ms = 200, .tries = 1};
	struct dns *dns = dns_new(l, &dc, &err);
	CHECK(dns != NULL);
	cfg_make(&cfg, "", 0, "zen.spamhaus.org*3, list.dnswl.org*-2");
	struct screen *s = screen_new(l, dns, NULL, &cfg, &err);
	CHECK(s != NULL);
	if (s == NULL || dns == NULL)
		goto out;
	struct screen_conn *c = screen_conn_new(s, "192.0.2.1", 1000);
	const struct screen_result *r = screen_conn_result(c);
	CHECK(!r->done && !r->blocked && !r->allowed);
	waited = false;
	CHECK(screen_conn_wait(c, on_wait, NULL));
	run_until(l, &waited);
	CHECK(r->done && !r->blocked && !r->allowed && r->score == 0 && r->reasons.n == 0);
	screen_conn_free(&c);
	/* a waiter that went away cancels its wait: no callback */
	c = screen_conn_new(s, "192.0.2.3", 1000);
	r = screen_conn_result(c);
	waited = false;
	CHECK(screen_conn_wait(c, on_wait, NULL));
	CHECK(screen_conn_wait(c, NULL, NULL));
	for (int i = 0; i < 5000 && !r->done; i++)
		run_a_bit(l);
	CHECK(r->done && !waited);
	screen_conn_free(&c);
	/* freed with its lookups pending: they are cancelled */
	c = screen_conn_new(s, "192.0.2.2", 1000);
	screen_conn_free(&c);
	run_a_bit(l);
	screen_free(&s);
out:
	dns_free(&dns);
	close(fd);
	loop_free(&l);
	config_free(&cfg);
	free(err);
}

int main(void)
{
	test_run("cidr_canonical", test_cidr_canonical);
	test_run("cidr_match", test_cidr_match);
	test_run("cidr_sorted_vs_scan", test_cidr_sorted_vs_scan);
	test_run("cidr_network", test_cidr_network);
	test_run("dnsbl_parse", test_dnsbl_parse);
	test_run("dnsbl_filter", test_dnsbl_filter);
	test_run("dnsbl_names", test_dnsbl_names);
	test_run("screen_lists", test_screen_lists);
	test_run("screen_bad_config", test_screen_bad_config);
	test_run("screen_rate", test_screen_rate);
	test_run("screen_dead_dnsbl", test_screen_dead_dnsbl);
	return test_done("test_filter_screen");
}
