/* Pure decisions of the outbound scheduler (route.h). */
#include "queue/route.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"

unsigned queue_backoff(unsigned min, unsigned max, int attempts)
{
	if (min == 0)
		min = 1;
	if (max < min)
		max = min;
	unsigned long long d = min;
	for (int i = 1; i < attempts && d < max; i++)
		d *= 2;
	return d > max ? max : (unsigned)d;
}

bool queue_relay_applies(const char *relayhost, const char *domains, const char *domain)
{
	if (relayhost == NULL || relayhost[0] == '\0')
		return false;
	if (domains == NULL)
		return true;
	bool any = false;
	size_t dl = strlen(domain);
	for (const char *p = domains; *p;) {
		p += strspn(p, ", \t");
		size_t n = strcspn(p, ", \t");
		if (n == 0)
			break;
		any = true;
		if (n == dl && strncasecmp(p, domain, n) == 0)
			return true;
		p += n;
	}
	return !any;
}

int queue_parse_hostport(const char *s, unsigned def_port, char **host_r, unsigned *port_r,
                         char **err_r)
{
	const char *host = s, *port = NULL;
	size_t hl;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (e == NULL || (e[1] != '\0' && e[1] != ':'))
			goto bad;
		host = s + 1;
		hl = (size_t)(e - host);
		if (e[1] == ':')
			port = e + 2;
	} else {
		const char *c = strrchr(s, ':');
		if (c != NULL && strchr(s, ':') != c)
			goto bad; /* a bare IPv6 address: brackets needed */
		hl = c ? (size_t)(c - s) : strlen(s);
		if (c)
			port = c + 1;
	}
	if (hl == 0)
		goto bad;
	unsigned p = def_port;
	if (port != NULL) {
		char *end;
		unsigned long v = strtoul(port, &end, 10);
		if (*port == '\0' || *end != '\0' || v == 0 || v > 65535)
			goto bad;
		p = (unsigned)v;
	}
	*host_r = xstrndup(host, hl);
	*port_r = p;
	return 0;
bad:
	*err_r = xasprintf("\"%s\" is not host:port or [address]:port", s);
	return -1;
}

enum queue_verdict queue_verdict(int status, time_t now, time_t created, int attempts,
                                 unsigned retry_min, unsigned retry_max, unsigned lifetime,
                                 time_t *next_try_r)
{
	if (status > 0)
		return QUEUE_V_SENT;
	if (status < 0)
		return QUEUE_V_BOUNCE;
	/* RFC 5321 4.5.4.1: give up after the lifetime, with a bounce */
	if (now - created >= (time_t)lifetime)
		return QUEUE_V_EXPIRED;
	*next_try_r = now + (time_t)queue_backoff(retry_min, retry_max, attempts + 1);
	return QUEUE_V_RETRY;
}

bool queue_delay_due(time_t now, time_t created, unsigned warning, bool notified)
{
	return warning > 0 && !notified && now - created >= (time_t)warning;
}

bool queue_notify_has(const char *notify, const char *keyword)
{
	if (notify == NULL)
		return false;
	size_t kl = strlen(keyword);
	for (const char *p = notify; *p;) {
		size_t n = strcspn(p, ",");
		if (n == kl && strncasecmp(p, keyword, n) == 0)
			return true;
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}
