/* Greylisting (RFC 6647) on the MX listener. A triplet (client network:
 * greylist_net4/6 prefix, envelope sender, recipient) seen for the first
 * time is deferred; a retry after greylist_delay and before greylist_expire
 * passes, and its network then skips greylisting for greylist_allow_time
 * (renewed by each message; RFC 6647 2.2 auto-allowlisting). A sender domain
 * with a good reputation (DMARC-aligned mail accepted before and not judged
 * spam) skips it too. State lives in memory on the loop thread, bounded, and
 * is kept across restarts in the store (table greylist, written by the
 * committer, lazily: a crash loses at most the last few seconds of it).
 * Owned by src/filter/grey.c and src/store/grey.c. */
#ifndef POSTERN_FILTER_GREY_H
#define POSTERN_FILTER_GREY_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct store;
struct config;
struct loop;

struct grey;
/* Loads the saved state (st->main, at start). NULL with *err_r. */
struct grey *grey_new(struct loop *l, struct store *st, const struct config *cfg, char **err_r);
/* Saves what is not saved yet (blocking: at shutdown, after the loop). */
void grey_free(struct grey **gp);

enum grey_result { GREY_PASS, GREY_DEFER };
/* Why grey_check passed or deferred a message: the decision, of which the
 * log's text is made (grey_why_text), not the other way round. */
enum grey_why {
	GREY_WHY_OFF,         /* pass: greylisting is off */
	GREY_WHY_ALLOWED_NET, /* pass: the client's network is allowed */
	GREY_WHY_REPUTATION,  /* pass: a DMARC-aligned domain of good reputation */
	GREY_WHY_RETRY,       /* pass: every triplet waited greylist_delay */
	GREY_WHY_NO_DELAY,    /* pass: greylist_delay = 0 (new triplets pass) */
	GREY_WHY_NO_DELAY_CAPPED, /* pass: the same, past the network budget */
	GREY_WHY_NEW,         /* defer: a new triplet (recorded) */
	GREY_WHY_TOO_EARLY,   /* defer: a triplet still inside its delay */
	GREY_WHY_BUDGET,      /* defer: new, not recorded (greylist_net_new reached) */
};
/* One message: every recipient's triplet is checked (and recorded when new).
 * aligned_domain: the From: domain when DMARC passed, else NULL. DEFER if
 * any triplet is still too young; *wait_r the seconds until the last of
 * them may pass; *why_r the reason. */
enum grey_result grey_check(struct grey *g, const char *ip, const char *mail_from,
			    const char *const *rcpts, size_t n, const char *aligned_domain,
			    time_t now, unsigned *wait_r, enum grey_why *why_r);
/* The reason for the log: "off", "allowed network", "reputation", "retry",
 * "no delay", "no delay (network budget: not recorded)", "new", "too early",
 * "network budget". A static string. */
const char *grey_why_text(enum grey_why why);
/* Whether a delivery that passed for this reason allows its network
 * (grey_delivered's allow_net): a real retry (RFC 6647 2.2), or an allowed
 * network, which is renewed. */
bool grey_why_allows_net(enum grey_why why);
/* The message was accepted: the aligned domain's reputation grows (spam: it
 * shrinks), and, when allow_net and not spam, its network is allowed
 * (auto-allowlisting after a retry, RFC 6647 2.2). The caller passes
 * allow_net only for a pass on a retry or an allowed network (renewed): not
 * for a message that skipped greylisting on its domain's reputation (the
 * domain's good name says nothing of the network it came from: a botnet
 * sending for a reputable domain it owns would get each of its networks
 * allowed), nor for one let through by greylist_delay = 0. */
void grey_delivered(struct grey *g, const char *ip, const char *aligned_domain, bool spam,
		    bool allow_net, time_t now);

/* Saves what changed now (a fire-and-forget job on the committer; the
 * loop's timer does it within a second of a change anyway). */
void grey_flush(struct grey *g);
/* Tests: the cap on entries per table (default 100000; the oldest entry is
 * forgotten when a table is full), and the entries held now. */
void grey_set_max(struct grey *g, size_t max);
void grey_counts(const struct grey *g, size_t *triplets_r, size_t *networks_r,
		 size_t *domains_r);

#endif
