/* Rate and duplicate limits (limit.h). Loop thread only; no I/O.
 *
 * Windows: every counter is a sliding hour of 60 one-minute buckets with a
 * running sum. Chosen over a token bucket because the options promise "N per
 * hour": a bucket of capacity N refilled at N/hour lets a sender do N at once
 * and N more during the hour (2N in the first hour), while 60 buckets count
 * exactly what was sent in the last 59-60 minutes; the cost is 240 octets a
 * counter and at most 60 bucket clears per call (O(1)).
 *
 * Senders: two fixed tables of LIMIT_SENDERS entries (users "u:name" for
 * submission, clients "i:ip" for MX), each a chained hash on a random seed
 * and an LRU list: a new sender takes a free entry or the least recently used
 * one. Memory is bounded: the tables, plus per entry LIMIT_FPS fingerprints
 * each with at most LIMIT_DUP_TRACK recipients of 16 octets (worst case
 * 2 * 4096 * 4 * 128 * 16 = 64 MiB with dup_recipients >= 127; 16 MiB with
 * the default 25).
 *
 * Duplicates: per sender the LIMIT_FPS most recent body fingerprints, each
 * with the recipients it went to (a 64-bit hash and the time each was last
 * sent) inside dup_window; a message that would take a fingerprint over
 * dup_recipients distinct recipients is refused at the end of data.
 *
 * Reservations: limit_end, when it lets a message go on, holds its message,
 * its recipients and its fingerprint's recipients as in flight (pend_*, and
 * a per-recipient pend count), and every check (limit_mail, limit_rcpt,
 * limit_end) counts what is in flight: N parallel sessions of one
 * compromised account cannot all pass before any is counted.
 * limit_delivered turns the reservation into counts; limit_release drops it.
 * Holds are kept per minute (LIMIT_HOLD_MIN buckets, like the hour windows)
 * and a confirm or release takes the oldest: a hold nobody confirms or
 * releases (a caller's bug, a lost session) is dropped after LIMIT_HOLD_MIN
 * minutes, so that a leak never limits a busy sender for good.
 *
 * Tables: authenticated users and MX client IPs live in separate tables, so
 * that a flood of distinct client IPs (IPv6 gives an attacker billions)
 * cannot evict a flooding user's counters. An IPv6 client is keyed by its
 * /64 (one site's network, as greylisting does), an IPv4-mapped one by its
 * IPv4 address: rotating addresses inside a /64 does not escape the per-IP
 * limits. */
#include "filter/limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "core/config.h"
#include "core/log.h"
#include "core/siphash.h"
#include "core/xmalloc.h"

#define LIMIT_SENDERS 4096    /* users and client IPs remembered */
#define LIMIT_BUCKETS 8192    /* hash chains (a power of two) */
#define LIMIT_MINUTES 60      /* one-minute buckets of an hour window */
#define LIMIT_FPS 4           /* fingerprints remembered per sender */
#define LIMIT_DUP_TRACK 128   /* recipients tracked per fingerprint */
#define LIMIT_NOTICE_EVERY 3600 /* one notice per sender and hour */
#define LIMIT_KEY_MAX 320     /* "u:" + an address (RFC 5321 4.5.3.1.3: 256) */
#define LIMIT_NONE UINT32_MAX
#define LIMIT_HOLD_MIN 10     /* minutes an unconfirmed reservation is kept */

struct limit_window {
	uint32_t b[LIMIT_MINUTES];
	uint64_t sum;
	int64_t minute; /* the minute of the newest bucket */
};

struct limit_seen {
	uint64_t h;    /* keyed hash of the lower-cased recipient */
	uint32_t t;    /* when it was last sent this content (Unix time, good
			* until 2106; 16 octets an entry); 0: not yet (in flight) */
	uint16_t pend; /* reservations in flight that hold it, */
	uint16_t hold_min; /* the last made in this minute (mod 2^16) */
};

/* Reservations in flight, per minute of their making. */
struct limit_holds {
	uint32_t m[LIMIT_HOLD_MIN]; /* messages */
	uint32_t r[LIMIT_HOLD_MIN]; /* their recipients */
	int64_t minute;             /* the newest bucket's */
};

struct limit_fpslot {
	uint64_t fp; /* 0: free */
	time_t last;
	uint32_t n, cap;
	struct limit_seen *r;
};

struct limit_entry {
	char *key; /* NULL: free */
	uint64_t hash;
	uint32_t next, prev_lru, next_lru;
	struct limit_window msgs, rcpts;
	time_t notified; /* last notice; 0: never */
	struct limit_holds holds; /* reserved by limit_end, not yet confirmed/released */
	struct limit_fpslot fps[LIMIT_FPS];
};

struct limit_table {
	uint32_t heads[LIMIT_BUCKETS];
	uint32_t lru_first, lru_last, used;
	struct limit_entry e[LIMIT_SENDERS];
};

struct limit {
	const struct config *cfg;
	limit_notice_fn *notice;
	void *notice_arg;
	uint64_t seed, seed2; /* the hash key */
	int dup_max; /* dup_recipients, clamped to LIMIT_DUP_TRACK - 1 */
	struct limit_table users, ips; /* separate: IPs cannot evict users */
};

/* Keyed (SipHash): the keys are the clients' choice. Case-insensitive;
 * keys are addresses and user names, which the SMTP layer bounds far below
 * LIMIT_HASH_MAX (longer ones would share the hash of their start). */
#define LIMIT_HASH_MAX 1024
static uint64_t limit_hash(const struct limit *l, const char *s)
{
	char low[LIMIT_HASH_MAX];
	size_t n = 0;

	for (; *s != '\0' && n < sizeof low; s++, n++) {
		unsigned char c = (unsigned char)*s;
		low[n] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
	}
	return siphash24(l->seed, l->seed2, low, n);
}

struct limit *limit_new(const struct config *cfg, limit_notice_fn *notice, void *notice_arg)
{
	struct limit *l = xcalloc(1, sizeof(*l));

	l->cfg = cfg;
	l->notice = notice;
	l->notice_arg = notice_arg;
	siphash_key(&l->seed, &l->seed2);
	l->dup_max = cfg->dup_recipients;
	if (l->dup_max > LIMIT_DUP_TRACK - 1) {
		log_warn("limit: dup_recipients=%d is more than the %d recipients tracked per "
			 "message; using %d",
			 l->dup_max, LIMIT_DUP_TRACK - 1, LIMIT_DUP_TRACK - 1);
		l->dup_max = LIMIT_DUP_TRACK - 1;
	}
	struct limit_table *tabs[2] = {&l->users, &l->ips};
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < LIMIT_BUCKETS; i++)
			tabs[k]->heads[i] = LIMIT_NONE;
		tabs[k]->lru_first = tabs[k]->lru_last = LIMIT_NONE;
	}
	return l;
}

static void limit_entry_clear(struct limit_entry *e)
{
	free(e->key);
	for (int i = 0; i < LIMIT_FPS; i++)
		free(e->fps[i].r);
	memset(e, 0, sizeof(*e));
}

void limit_free(struct limit **lp)
{
	struct limit *l = *lp;

	if (l == NULL)
		return;
	for (uint32_t i = 0; i < l->users.used; i++)
		limit_entry_clear(&l->users.e[i]);
	for (uint32_t i = 0; i < l->ips.used; i++)
		limit_entry_clear(&l->ips.e[i]);
	free(l);
	*lp = NULL;
}

/* ---- the sender table ---- */

static void lru_unlink(struct limit_table *l, uint32_t i)
{
	struct limit_entry *e = &l->e[i];

	if (e->prev_lru != LIMIT_NONE)
		l->e[e->prev_lru].next_lru = e->next_lru;
	else
		l->lru_first = e->next_lru;
	if (e->next_lru != LIMIT_NONE)
		l->e[e->next_lru].prev_lru = e->prev_lru;
	else
		l->lru_last = e->prev_lru;
}

static void lru_push(struct limit_table *l, uint32_t i)
{
	struct limit_entry *e = &l->e[i];

	e->prev_lru = LIMIT_NONE;
	e->next_lru = l->lru_first;
	if (l->lru_first != LIMIT_NONE)
		l->e[l->lru_first].prev_lru = i;
	l->lru_first = i;
	if (l->lru_last == LIMIT_NONE)
		l->lru_last = i;
}

static void chain_unlink(struct limit_table *l, uint32_t i)
{
	uint32_t *pp = &l->heads[l->e[i].hash & (LIMIT_BUCKETS - 1)];

	while (*pp != i) {
		x_assert(*pp != LIMIT_NONE);
		pp = &l->e[*pp].next;
	}
	*pp = l->e[i].next;
}

/* The sender's key: "u:user" (submission) or "i:ip" (MX): an IPv6 client
 * by its /64 (RFC 4291 2.5.4: the interface identifier is the host's own to
 * pick, so one site rotates through 2^64 addresses), an IPv4-mapped one
 * (RFC 4291 2.5.5.2) by its IPv4 address. */
static void limit_key(const struct limit_sender *s, char *buf, size_t cap)
{
	const char *ip = s->ip != NULL ? s->ip : "";
	struct in6_addr a6;

	if (s->user != NULL) {
		snprintf(buf, cap, "u:%s", s->user);
		return;
	}
	if (strchr(ip, ':') != NULL && inet_pton(AF_INET6, ip, &a6) == 1) {
		char txt[INET6_ADDRSTRLEN];

		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			inet_ntop(AF_INET, &a6.s6_addr[12], txt, sizeof txt);
		} else {
			memset(&a6.s6_addr[8], 0, 8);
			inet_ntop(AF_INET6, &a6, txt, sizeof txt);
		}
		snprintf(buf, cap, "i:%s", txt);
		return;
	}
	snprintf(buf, cap, "i:%s", ip);
}

static struct limit_entry *limit_find(struct limit *l, const struct limit_sender *s,
				      bool create)
{
	char key[LIMIT_KEY_MAX];

	limit_key(s, key, sizeof key);
	uint64_t h = limit_hash(l, key);
	struct limit_table *tb = s->user != NULL ? &l->users : &l->ips;
	uint32_t *head = &tb->heads[h & (LIMIT_BUCKETS - 1)];

	for (uint32_t i = *head; i != LIMIT_NONE; i = tb->e[i].next) {
		if (tb->e[i].hash == h && strcasecmp(tb->e[i].key, key) == 0) {
			lru_unlink(tb, i);
			lru_push(tb, i);
			return &tb->e[i];
		}
	}
	if (!create)
		return NULL;
	uint32_t i;
	if (tb->used < LIMIT_SENDERS) {
		i = tb->used++;
	} else { /* the least recently used sender is forgotten */
		i = tb->lru_last;
		lru_unlink(tb, i);
		chain_unlink(tb, i);
		limit_entry_clear(&tb->e[i]);
	}
	struct limit_entry *e = &tb->e[i];
	e->key = xstrdup(key);
	e->hash = h;
	e->next = *head;
	*head = i;
	lru_push(tb, i);
	return e;
}

static struct limit_entry *entry_get(struct limit *l, const struct limit_sender *s,
				     bool create, time_t now)
{
	return limit_find(l, s, create);
}

/* ---- reservations ---- */

/* Holds older than LIMIT_HOLD_MIN minutes are dropped (never confirmed nor
 * released); a clock that goes back drops nothing. */
static void holds_advance(struct limit_holds *h, time_t now)
{
	int64_t m = (int64_t)now / 60;

	if (m <= h->minute)
		return;
	if (m - h->minute >= LIMIT_HOLD_MIN) {
		memset(h->m, 0, sizeof(h->m));
		memset(h->r, 0, sizeof(h->r));
	} else {
		for (int64_t k = h->minute + 1; k <= m; k++)
			h->m[k % LIMIT_HOLD_MIN] = h->r[k % LIMIT_HOLD_MIN] = 0;
	}
	h->minute = m;
}

static uint64_t holds_msgs(struct limit_holds *h, time_t now)
{
	uint64_t n = 0;

	holds_advance(h, now);
	for (int i = 0; i < LIMIT_HOLD_MIN; i++)
		n += h->m[i];
	return n;
}

static uint64_t holds_rcpts(struct limit_holds *h, time_t now)
{
	uint64_t n = 0;

	holds_advance(h, now);
	for (int i = 0; i < LIMIT_HOLD_MIN; i++)
		n += h->r[i];
	return n;
}

static void holds_add(struct limit_holds *h, time_t now, size_t n)
{
	holds_advance(h, now);
	h->m[h->minute % LIMIT_HOLD_MIN]++;
	h->r[h->minute % LIMIT_HOLD_MIN] += (uint32_t)n;
}

/* One hold of n recipients ends (the oldest). false: none was held. */
static bool holds_take(struct limit_holds *h, time_t now, size_t n)
{
	holds_advance(h, now);
	for (int64_t k = h->minute - LIMIT_HOLD_MIN + 1; k <= h->minute; k++) {
		int i = (int)(((k % LIMIT_HOLD_MIN) + LIMIT_HOLD_MIN) % LIMIT_HOLD_MIN);

		if (h->m[i] == 0)
			continue;
		h->m[i]--;
		h->r[i] -= n < h->r[i] ? (uint32_t)n : h->r[i];
		return true;
	}
	return false;
}

/* A recipient's holds still alive (made within LIMIT_HOLD_MIN minutes). */
static unsigned seen_pend(const struct limit_seen *v, time_t now)
{
	uint16_t age = (uint16_t)((uint16_t)(now / 60) - v->hold_min);

	return age < LIMIT_HOLD_MIN ? v->pend : 0;
}

/* ---- hour windows ---- */

static uint64_t window_count(struct limit_window *w, time_t now)
{
	int64_t m = (int64_t)now / 60;

	if (m <= w->minute)
		return w->sum; /* the same minute, or the clock went back */
	if (m - w->minute >= LIMIT_MINUTES) {
		memset(w->b, 0, sizeof(w->b));
		w->sum = 0;
	} else {
		for (int64_t k = w->minute + 1; k <= m; k++) {
			w->sum -= w->b[k % LIMIT_MINUTES];
			w->b[k % LIMIT_MINUTES] = 0;
		}
	}
	w->minute = m;
	return w->sum;
}

static void window_add(struct limit_window *w, time_t now, uint32_t n)
{
	window_count(w, now);
	w->b[w->minute % LIMIT_MINUTES] += n;
	w->sum += n;
}

/* ---- dup_exempt ---- */

static const char *addr_domain(const char *a)
{
	const char *at = a != NULL ? strrchr(a, '@') : NULL;

	return at != NULL ? at + 1 : NULL;
}

static bool exempt_item(const char *p, size_t n, const char *v)
{
	return v != NULL && strlen(v) == n && strncasecmp(p, v, n) == 0;
}

/* dup_exempt: user names, envelope senders, @domain (of either); an
 * envelope sender only when it is not known to be unverified. */
static bool limit_exempt(const struct limit *l, const struct limit_sender *s)
{
	const char *list = l->cfg->dup_exempt;
	const char *from = s->unverified ? NULL : s->mail_from;

	if (list == NULL)
		return false;
	for (const char *p = list; *p != '\0';) {
		p += strspn(p, ", \t");
		size_t n = strcspn(p, ", \t");

		if (n == 0)
			break;
		if (p[0] == '@') {
			if (exempt_item(p + 1, n - 1, addr_domain(from)) ||
			    exempt_item(p + 1, n - 1, addr_domain(s->user)))
				return true;
		} else if (exempt_item(p, n, s->user) ||
			   (from != NULL && from[0] != '\0' && exempt_item(p, n, from))) {
			return true;
		}
		p += n;
	}
	return false;
}

/* ---- answers ---- */

static void fmt_duration(char *buf, size_t cap, unsigned secs)
{
	if (secs % 3600 == 0)
		snprintf(buf, cap, "%uh", secs / 3600);
	else if (secs % 60 == 0)
		snprintf(buf, cap, "%um", secs / 60);
	else
		snprintf(buf, cap, "%us", secs);
}

static const char *sender_name(const struct limit_sender *s)
{
	return s->user != NULL ? s->user : (s->ip != NULL ? s->ip : "?");
}

/* A limit is hit: the reply, a log line always, a notice at most once per
 * sender and hour. */
static void limit_hit(struct limit *l, const struct limit_sender *s, time_t now,
		      const char *limit, uint64_t count, uint64_t max, const char *what,
		      struct limit_reply *r)
{
	char window[32];
	struct limit_entry *e = limit_find(l, s, true);
	/* in dup_exempt, but SPF did not vouch for it: say so */
	struct limit_sender v = *s;
	v.unverified = false;
	bool spf_note = s->unverified && limit_exempt(l, &v);
	bool notify = e->notified == 0 || now - e->notified >= LIMIT_NOTICE_EVERY ||
		      now < e->notified;

	fmt_duration(window, sizeof window,
		     strcmp(limit, "duplicate") == 0 ? l->cfg->dup_window : 3600);
	r->code = 451;
	r->ecode = "4.7.1";
	if (strcmp(limit, "duplicate") == 0)
		snprintf(r->text, sizeof r->text,
			 "too many recipients for the same message within %s (%llu, limit %llu); "
			 "try again later",
			 window, (unsigned long long)count, (unsigned long long)max);
	else
		snprintf(r->text, sizeof r->text,
			 "too many %s within %s (%llu, limit %llu); try again later", what, window,
			 (unsigned long long)count, (unsigned long long)max);
	log_warn("limit refused client=%s sender=%s limit=%s count=%llu max=%llu window=%s "
		 "notice=%s from=<%s>%s",
		 s->ip != NULL ? s->ip : "", sender_name(s), limit, (unsigned long long)count,
		 (unsigned long long)max, window,
		 notify ? (l->cfg->limit_notify && l->notice != NULL ? "sent" : "off") : "already",
		 s->mail_from != NULL ? s->mail_from : "",
		 spf_note ? " dup_exempt=unverified (SPF did not pass)" : "");
	if (!notify)
		return;
	e->notified = now;
	if (!l->cfg->limit_notify || l->notice == NULL)
		return;
	char *subject = xasprintf("%s hit the %s limit", sender_name(s), limit);
	char *body = xasprintf(
		"The sender %s %s (client %s, envelope sender <%s>) hit the %s limit:\n"
		"%llu %s within %s, the limit is %llu.\n"
		"\n"
		"Its mail is refused with 451 4.7.1 (a temporary failure: nothing is lost, the\n"
		"sender's software may retry) for as long as it stays over the limit.\n"
		"Further hits by this sender within the hour are logged (\"limit refused\")\n"
		"but not told again.\n"
		"\n"
		"If the account is compromised: change its password. If this is a mailing\n"
		"list or another legitimate bulk sender: add it to dup_exempt (user name,\n"
		"envelope sender or @domain) or raise the limit (%s).\n%s",
		s->user != NULL ? "(authenticated user)" : "(client IP)", sender_name(s),
		s->ip != NULL ? s->ip : "?", s->mail_from != NULL ? s->mail_from : "", limit,
		(unsigned long long)count, what, window, (unsigned long long)max,
		strcmp(limit, "duplicate") == 0 ? "dup_recipients, dup_window" : "rate_*",
		spf_note ? "\nIts envelope sender is in dup_exempt, but SPF did not pass for it from\n"
			   "this client, so it is not exempt: anybody can write a list's address in\n"
			   "MAIL FROM. If the list sends from here, its SPF record should say so.\n"
			 : "");
	l->notice(l->notice_arg, subject, body);
	free(subject);
	free(body);
}

static void reply_ok(struct limit_reply *r)
{
	r->code = 0;
	r->ecode = NULL;
	r->text[0] = '\0';
}

void limit_mail(struct limit *l, const struct limit_sender *s, time_t now,
		struct limit_reply *r)
{
	int max = s->user != NULL ? l->cfg->rate_user_messages : l->cfg->rate_ip_messages;

	reply_ok(r);
	if (max <= 0)
		return;
	struct limit_entry *e = entry_get(l, s, false, now);
	uint64_t have =
	    e != NULL ? window_count(&e->msgs, now) + holds_msgs(&e->holds, now) : 0;
	if (have + 1 > (uint64_t)max)
		limit_hit(l, s, now, s->user != NULL ? "user_messages" : "ip_messages", have + 1,
			  (uint64_t)max, "messages", r);
}

void limit_rcpt(struct limit *l, const struct limit_sender *s, size_t n_so_far, time_t now,
		struct limit_reply *r)
{
	int max = s->user != NULL ? l->cfg->rate_user_recipients : l->cfg->rate_ip_recipients;

	reply_ok(r);
	if (max <= 0 || limit_exempt(l, s))
		return;
	struct limit_entry *e = entry_get(l, s, false, now);
	uint64_t have =
	    (e != NULL ? window_count(&e->rcpts, now) + holds_rcpts(&e->holds, now) : 0) +
	    n_so_far;
	if (have + 1 > (uint64_t)max)
		limit_hit(l, s, now, s->user != NULL ? "user_recipients" : "ip_recipients",
			  have + 1, (uint64_t)max, "recipients", r);
}

/* ---- duplicates ---- */

static uint64_t rcpt_hash(const struct limit *l, const char *rcpt)
{
	return limit_hash(l, rcpt != NULL ? rcpt : "");
}

/* Forgets the recipients older than the window; a slot left empty is free. */
static void slot_prune(struct limit *l, struct limit_fpslot *sl, time_t now)
{
	time_t w = (time_t)l->cfg->dup_window;
	uint32_t k = 0;

	if (sl->fp == 0)
		return;
	for (uint32_t i = 0; i < sl->n; i++)
		if (seen_pend(&sl->r[i], now) > 0 ||
		    (sl->r[i].t != 0 && (time_t)sl->r[i].t > now - w &&
		     (time_t)sl->r[i].t <= now + w))
			sl->r[k++] = sl->r[i];
	sl->n = k;
	if (k == 0)
		sl->fp = 0;
}

static struct limit_fpslot *slot_find(struct limit *l, struct limit_entry *e, uint64_t fp,
				      time_t now)
{
	for (int i = 0; i < LIMIT_FPS; i++) {
		slot_prune(l, &e->fps[i], now);
		if (e->fps[i].fp == fp)
			return &e->fps[i];
	}
	return NULL;
}

static bool slot_has(const struct limit_fpslot *sl, uint64_t h)
{
	for (uint32_t i = 0; sl != NULL && i < sl->n; i++)
		if (sl->r[i].h == h)
			return true;
	return false;
}

static bool seen_before(const struct limit *l, const char *const *rcpts, size_t i, uint64_t h)
{
	for (size_t j = 0; j < i; j++)
		if (rcpt_hash(l, rcpts[j]) == h)
			return true;
	return false;
}

static void limit_hold(struct limit *l, struct limit_entry *e, uint64_t fp,
		       const char *const *rcpts, size_t n, bool exempt, time_t now);

/* The checks at the end of data, with what is in flight counted: the
 * message and recipient rates again (parallel sessions of one sender all
 * passed MAIL and RCPT before any of them ended), then the duplicates. Go
 * on: the message is reserved (limit_delivered confirms, limit_release
 * drops). */
void limit_end(struct limit *l, const struct limit_sender *s, uint64_t fp,
	       const char *const *rcpts, size_t n, time_t now, struct limit_reply *r)
{
	bool exempt = limit_exempt(l, s);
	int mmax = s->user != NULL ? l->cfg->rate_user_messages : l->cfg->rate_ip_messages;
	int rmax = s->user != NULL ? l->cfg->rate_user_recipients : l->cfg->rate_ip_recipients;

	reply_ok(r);
	struct limit_entry *e = entry_get(l, s, false, now);
	if (mmax > 0 && e != NULL) {
		uint64_t have = window_count(&e->msgs, now) + holds_msgs(&e->holds, now);

		if (have + 1 > (uint64_t)mmax) {
			limit_hit(l, s, now, s->user != NULL ? "user_messages" : "ip_messages",
				  have + 1, (uint64_t)mmax, "messages", r);
			return;
		}
	}
	if (rmax > 0 && !exempt && e != NULL) {
		uint64_t have = window_count(&e->rcpts, now) + holds_rcpts(&e->holds, now) + n;

		if (have > (uint64_t)rmax) {
			limit_hit(l, s, now, s->user != NULL ? "user_recipients" : "ip_recipients",
				  have, (uint64_t)rmax, "recipients", r);
			return;
		}
	}
	if (l->dup_max > 0 && fp != 0 && !exempt) {
		struct limit_fpslot *sl = e != NULL ? slot_find(l, e, fp, now) : NULL;
		uint64_t count = sl != NULL ? sl->n : 0;

		/* stops at the first recipient over the limit: the work is bounded
		 * by dup_recipients, whatever n is */
		for (size_t i = 0; i < n && count <= (uint64_t)l->dup_max; i++) {
			uint64_t h = rcpt_hash(l, rcpts[i]);

			if (!slot_has(sl, h) && !seen_before(l, rcpts, i, h))
				count++;
		}
		if (count > (uint64_t)l->dup_max) {
			limit_hit(l, s, now, "duplicate", count, (uint64_t)l->dup_max,
				  "distinct recipients of the same message", r);
			return;
		}
	}
	limit_hold(l, entry_get(l, s, true, now), fp, rcpts, n, exempt, now);
}

enum { SEEN_HOLD, SEEN_CONFIRM, SEEN_RELEASE };

/* One recipient of a fingerprint: held (in flight), confirmed (sent now;
 * held: one hold of it ends), or released (one hold ends). */
static void slot_seen(struct limit_fpslot *sl, uint64_t h, time_t now, int how, bool held)
{
	for (uint32_t i = 0; i < sl->n; i++) {
		struct limit_seen *v = &sl->r[i];

		if (v->h != h)
			continue;
		unsigned pend = seen_pend(v, now);

		if (how == SEEN_HOLD) {
			v->pend = (uint16_t)(pend < UINT16_MAX ? pend + 1 : pend);
			v->hold_min = (uint16_t)(now / 60);
		} else {
			v->pend = (uint16_t)(held && pend > 0 ? pend - 1 : pend);
		}
		if (how == SEEN_CONFIRM)
			v->t = (uint32_t)now;
		return;
	}
	if (how == SEEN_RELEASE)
		return;
	struct limit_seen nv = {h, how == SEEN_CONFIRM ? (uint32_t)now : 0,
				how == SEEN_HOLD ? 1 : 0, (uint16_t)(now / 60)};
	if (sl->n == LIMIT_DUP_TRACK) { /* full: the oldest not in flight is forgotten */
		uint32_t old = LIMIT_NONE;

		for (uint32_t i = 0; i < sl->n; i++)
			if (seen_pend(&sl->r[i], now) == 0 &&
			    (old == LIMIT_NONE || sl->r[i].t < sl->r[old].t))
				old = i;
		if (old != LIMIT_NONE)
			sl->r[old] = nv;
		return;
	}
	if (sl->n == sl->cap) {
		sl->cap = sl->cap != 0 ? sl->cap * 2 : 8;
		if (sl->cap > LIMIT_DUP_TRACK)
			sl->cap = LIMIT_DUP_TRACK;
		sl->r = xrealloc(sl->r, sl->cap * sizeof(*sl->r));
	}
	sl->r[sl->n++] = nv;
}

/* The fingerprint's slot of a sender, made when there is none (a free
 * slot, else the one used least recently). */
static struct limit_fpslot *slot_get(struct limit *l, struct limit_entry *e, uint64_t fp,
				     time_t now)
{
	struct limit_fpslot *sl = slot_find(l, e, fp, now);

	if (sl == NULL) {
		sl = &e->fps[0];
		for (int i = 0; i < LIMIT_FPS && sl->fp != 0; i++)
			if (e->fps[i].fp == 0 || e->fps[i].last < sl->last)
				sl = &e->fps[i];
		sl->fp = fp;
		sl->n = 0;
	}
	sl->last = now;
	return sl;
}

/* The distinct recipients of a message, each once, to the fingerprint's
 * slot (new ones only while the slot is within dup_max + 1: beyond, the
 * limit is hit and more change nothing). */
static void slot_each(struct limit *l, struct limit_fpslot *sl, const char *const *rcpts,
		      size_t n, time_t now, int how, bool held)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t h = rcpt_hash(l, rcpts[i]);

		if (seen_before(l, rcpts, i, h))
			continue;
		if (how != SEEN_RELEASE && sl->n > (uint32_t)l->dup_max && !slot_has(sl, h))
			continue;
		slot_seen(sl, h, now, how, held);
	}
}

static void limit_hold(struct limit *l, struct limit_entry *e, uint64_t fp,
		       const char *const *rcpts, size_t n, bool exempt, time_t now)
{
	holds_add(&e->holds, now, exempt ? 0 : n);
	if (exempt)
		return;
	if (l->dup_max > 0 && fp != 0)
		slot_each(l, slot_get(l, e, fp, now), rcpts, n, now, SEEN_HOLD, true);
}

void limit_delivered(struct limit *l, const struct limit_sender *s, uint64_t fp,
		     const char *const *rcpts, size_t n, time_t now)
{
	bool exempt = limit_exempt(l, s);
	struct limit_entry *e = entry_get(l, s, true, now);
	bool held = holds_take(&e->holds, now, exempt ? 0 : n); /* limit_end reserved it */

	window_add(&e->msgs, now, 1);
	if (exempt)
		return; /* recipient rates and duplicates do not apply */
	window_add(&e->rcpts, now, (uint32_t)n);
	if (l->dup_max <= 0 || fp == 0)
		return;
	slot_each(l, slot_get(l, e, fp, now), rcpts, n, now, SEEN_CONFIRM, held);
}

void limit_deferred(struct limit *l, const struct limit_sender *s, time_t now)
{
	struct limit_entry *e = entry_get(l, s, true, now);
	window_add(&e->msgs, now, 1);
}

void limit_release(struct limit *l, const struct limit_sender *s, uint64_t fp,
		   const char *const *rcpts, size_t n, time_t now)
{
	struct limit_entry *e = entry_get(l, s, false, now);

	bool exempt = limit_exempt(l, s);

	if (e == NULL || !holds_take(&e->holds, now, exempt ? 0 : n))
		return; /* nothing held (or forgotten meanwhile) */
	if (exempt)
		return;
	if (l->dup_max <= 0 || fp == 0)
		return;
	struct limit_fpslot *sl = slot_find(l, e, fp, now);
	if (sl == NULL)
		return;
	slot_each(l, sl, rcpts, n, now, SEEN_RELEASE, true);
	slot_prune(l, sl, now);
}
