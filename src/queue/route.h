/* Pure decisions of the outbound scheduler, apart so that unit tests can
 * check them (tests/unit/queue): the retry schedule, whether a domain goes
 * through the relay host, the relay host's address, and how an attempt's
 * result for one recipient turns into what the queue does with it. */
#ifndef POSTERN_QUEUE_ROUTE_H
#define POSTERN_QUEUE_ROUTE_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Seconds to wait after the attempts-th failed attempt (1 = the first):
 * min, doubled each time, never above max (RFC 5321 4.5.4.1: at least 30
 * minutes between retries by default; configurable down to seconds). */
unsigned queue_backoff(unsigned min, unsigned max, int attempts);

/* Whether mail for domain goes through the relay host: relayhost set, and
 * domains (a comma/space-separated list, case-insensitive) empty or naming
 * domain. */
bool queue_relay_applies(const char *relayhost, const char *domains, const char *domain);

/* "host:port", "[v6]:port", "host" (port def_port): 0 with the host (heap,
 * without brackets) and port, or -1 with *err_r (heap). */
int queue_parse_hostport(const char *s, unsigned def_port, char **host_r, unsigned *port_r,
                         char **err_r);

/* What to do with a recipient after an attempt. */
enum queue_verdict {
	QUEUE_V_SENT,    /* accepted by the next hop: row removed */
	QUEUE_V_BOUNCE,  /* permanent failure: bounce, row removed */
	QUEUE_V_EXPIRED, /* temporary failure past queue_lifetime: bounce, row removed */
	QUEUE_V_RETRY,   /* temporary failure: retry at *next_try_r */
};
/* status: 1 ok, 0 temporary, -1 permanent. created: when the entry was
 * queued; attempts: before this one. */
enum queue_verdict queue_verdict(int status, time_t now, time_t created, int attempts,
                                 unsigned retry_min, unsigned retry_max, unsigned lifetime,
                                 time_t *next_try_r);
/* Whether the "delayed" DSN is due now: warning > 0, not sent yet, the
 * entry older than warning. */
bool queue_delay_due(time_t now, time_t created, unsigned warning, bool notified);
/* Whether a NOTIFY= value (NULL = absent) lists keyword ("SUCCESS",
 * "FAILURE", "DELAY"; RFC 3461 4.1), case-insensitively. */
bool queue_notify_has(const char *notify, const char *keyword);

#endif
