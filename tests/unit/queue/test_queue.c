/* Unit tests for the outbound scheduler's pure decisions (queue/route.h):
 * the retry schedule, relay routing, the relay host's address, the verdict
 * per recipient, the delay notice, NOTIFY keywords. */
#include <stdlib.h>

#include "../test.h"
#include "queue/route.h"

static void test_backoff(void)
{
	static const struct {
		unsigned min, max;
		int attempts;
		unsigned want;
	} cases[] = {
	    {300, 14400, 1, 300}, /* first retry: queue_retry_min */
	    {300, 14400, 2, 600}, /* doubled */
	    {300, 14400, 3, 1200},
	    {300, 14400, 6, 9600},
	    {300, 14400, 7, 14400}, /* capped at queue_retry_max */
	    {300, 14400, 1000, 14400},
	    {1, 8, 0, 1}, /* 0 attempts: as the first */
	    {1, 8, 4, 8},
	    {1, 8, 5, 8},
	    {10, 5, 3, 10}, /* max below min: min */
	    {0, 0, 1, 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i, queue_backoff(cases[i].min, cases[i].max, cases[i].attempts),
		          cases[i].want);
}

static void test_relay_applies(void)
{
	static const struct {
		const char *relay, *domains, *domain;
		bool want;
	} cases[] = {
	    {"", "", "example.org", false},
	    {NULL, NULL, "example.org", false},
	    {"smtp.isp.example:587", "", "example.org", true},
	    {"smtp.isp.example:587", "example.org", "example.org", true},
	    {"smtp.isp.example:587", "EXAMPLE.org", "example.ORG", true},
	    {"smtp.isp.example:587", "a.example, example.org", "example.org", true},
	    {"smtp.isp.example:587", "a.example,b.example", "example.org", false},
	    {"smtp.isp.example:587", "sub.example.org", "example.org", false},
	    {"smtp.isp.example:587", "example.org", "sub.example.org", false},
	    {"smtp.isp.example:587", " , ", "example.org", true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i, queue_relay_applies(cases[i].relay, cases[i].domains, cases[i].domain),
		          cases[i].want);
}

static void test_hostport(void)
{
	static const struct {
		const char *in;
		int ret;
		const char *host;
		unsigned port;
	} cases[] = {
	    {"smtp.example:587", 0, "smtp.example", 587},
	    {"smtp.example", 0, "smtp.example", 25},
	    {"127.0.0.3:2525", 0, "127.0.0.3", 2525},
	    {"[::1]:465", 0, "::1", 465},
	    {"[::1]", 0, "::1", 25},
	    {"::1", -1, NULL, 0},
	    {"smtp.example:0", -1, NULL, 0},
	    {"smtp.example:65536", -1, NULL, 0},
	    {"smtp.example:", -1, NULL, 0},
	    {":25", -1, NULL, 0},
	    {"[::1]x", -1, NULL, 0},
	    {"smtp.example:25x", -1, NULL, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *host = NULL, *err = NULL;
		unsigned port = 0;
		int r = queue_parse_hostport(cases[i].in, 25, &host, &port, &err);
		CHECK_INT(i, r, cases[i].ret);
		if (r == 0) {
			CHECK_STR(i, host, cases[i].host);
			CHECK_INT(i, port, cases[i].port);
		} else {
			CHECK(err != NULL);
		}
		free(host);
		free(err);
	}
}

static void test_verdict(void)
{
	/* retry 60 s doubling to 600 s, lifetime 1000 s */
	static const struct {
		int status;
		time_t now, created;
		int attempts;
		enum queue_verdict want;
		time_t next;
	} cases[] = {
	    {1, 100, 0, 0, QUEUE_V_SENT, 0},
	    {1, 5000, 0, 9, QUEUE_V_SENT, 0}, /* delivered late is still delivered */
	    {-1, 100, 0, 0, QUEUE_V_BOUNCE, 0},
	    {0, 100, 0, 0, QUEUE_V_RETRY, 160},  /* first failure: +60 */
	    {0, 200, 0, 1, QUEUE_V_RETRY, 320},  /* second: +120 */
	    {0, 900, 0, 5, QUEUE_V_RETRY, 1500}, /* capped at 600 */
	    {0, 999, 0, 5, QUEUE_V_RETRY, 1599},
	    {0, 1000, 0, 5, QUEUE_V_EXPIRED, 0}, /* lifetime reached: bounce */
	    {0, 3000, 0, 0, QUEUE_V_EXPIRED, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		time_t next = 0;
		enum queue_verdict v =
		    queue_verdict(cases[i].status, cases[i].now, cases[i].created,
		                  cases[i].attempts, 60, 600, 1000, &next);
		CHECK_INT(i, v, cases[i].want);
		if (v == QUEUE_V_RETRY)
			CHECK_INT(i, next, cases[i].next);
	}
}

static void test_delay_due(void)
{
	static const struct {
		time_t now, created;
		unsigned warning;
		bool notified, want;
	} cases[] = {
	    {100, 0, 0, false, false},   /* 0: never */
	    {100, 0, 200, false, false}, /* not yet */
	    {200, 0, 200, false, true},  {5000, 0, 200, false, true},
	    {5000, 0, 200, true, false}, /* once */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i,
		          queue_delay_due(cases[i].now, cases[i].created, cases[i].warning,
		                          cases[i].notified),
		          cases[i].want);
}

static void test_notify(void)
{
	static const struct {
		const char *notify, *kw;
		bool want;
	} cases[] = {
	    {NULL, "SUCCESS", false},
	    {"SUCCESS", "SUCCESS", true},
	    {"success,failure", "SUCCESS", true},
	    {"FAILURE,DELAY", "SUCCESS", false},
	    {"FAILURE,SUCCESS", "SUCCESS", true},
	    {"NEVER", "FAILURE", false},
	    {"SUCCESSX", "SUCCESS", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK_INT(i, queue_notify_has(cases[i].notify, cases[i].kw), cases[i].want);
}

int main(void)
{
	test_run("backoff", test_backoff);
	test_run("relay_applies", test_relay_applies);
	test_run("hostport", test_hostport);
	test_run("verdict", test_verdict);
	test_run("delay_due", test_delay_due);
	test_run("notify", test_notify);
	return test_done("test_queue");
}
