/* Rate and duplicate limits: messages and recipients per hour per
 * authenticated user and per MX client IP, and the same content (a body
 * fingerprint) sent by one sender to many recipients in a short time (the
 * flood of a compromised account). Sliding hour windows in memory on the
 * loop thread, bounded (least recently used senders are forgotten first);
 * a restart starts them afresh. Answers are 451 4.7.1 with a text that says
 * which limit; every refusal is logged ("limit refused ... sender= limit=
 * count="), the first of a sender per hour is, with limit_notify, told to
 * the postmaster (notice callback, called inside limit_mail/rcpt/end). Senders in
 * dup_exempt (mailing lists) skip the duplicate check and recipient rates.
 * Owned by src/filter/limit.c (+ fingerprint.c as it sees fit). */
#ifndef POSTERN_FILTER_LIMIT_H
#define POSTERN_FILTER_LIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;

/* A notice for the postmaster (subject and body: plain text lines). */
typedef void limit_notice_fn(void *arg, const char *subject, const char *body);

struct limit;
struct limit *limit_new(const struct config *cfg, limit_notice_fn *notice, void *notice_arg);
void limit_free(struct limit **lp);

/* Who sends: the authenticated user (submission), else the client IP (MX;
 * trusted clients are never limited: the caller does not ask). */
struct limit_sender {
	const char *user;      /* or NULL */
	const char *ip;
	const char *mail_from; /* for dup_exempt */
	/* The envelope sender is known not to be authenticated (the end of
	 * data of an MX client whose SPF result is not pass): an address or
	 * @domain in dup_exempt does not exempt it, so that anybody writing a
	 * list's address in MAIL FROM does not skip the duplicate check.
	 * False before the SPF result is known (RCPT: limit_end decides) and
	 * when SPF is not checked at all (spf_action = off). */
	bool unverified;
};
struct limit_reply {
	int code; /* 0: go on */
	const char *ecode;
	char text[200];
};
/* At MAIL: one more message allowed this hour? */
void limit_mail(struct limit *l, const struct limit_sender *s, time_t now,
		struct limit_reply *r);
/* At RCPT: n_so_far recipients accepted in this transaction; one more? */
void limit_rcpt(struct limit *l, const struct limit_sender *s, size_t n_so_far, time_t now,
		struct limit_reply *r);

/* Body fingerprint (pure; fuzzed): a hash of the body's normalised text
 * (the header section skipped; whitespace runs and case folded; lines that
 * commonly vary per recipient — greetings with the address, unsubscribe
 * tokens — do not defeat it, see fingerprint.c), fed the stored bytes in
 * pieces; the result does not depend on how they are cut. 0: no significant
 * text (not checked). */
#define LIMIT_FP_TOK 64 /* a longer token is hashed in pieces of this size */
/* The normaliser of one text (the body, or the Subject field): tokens
 * (whitespace-separated, lower-cased, masked), lines, kept lines. */
struct limit_fp_text {
	uint64_t line;  /* hash of the current line's tokens */
	uint64_t acc;   /* hash of the lines kept so far */
	uint64_t sig;   /* significant octets kept (after masking) */
	uint64_t line_sig;
	uint32_t words; /* tokens on the current line */
	uint32_t tok_len;
	bool greeting;  /* the line's first token is a salutation word */
	bool tok_at, tok_digit; /* the token has an '@', a digit */
	char tok[LIMIT_FP_TOK];
};
struct limit_fp {
	uint64_t state[4]; /* reserved */
	int phase;     /* header, body */
	size_t hdr_at; /* octets of the current header line (CR not counted) */
	uint64_t body_bytes;
	/* added by limit.c: */
	int subj_match;  /* octets of "subject:" matched at the line's start */
	bool in_subj;    /* inside the Subject field (continuations included) */
	struct limit_fp_text body, subj;
};
void limit_fp_init(struct limit_fp *f);
void limit_fp_feed(struct limit_fp *f, const char *p, size_t n);
uint64_t limit_fp_final(struct limit_fp *f);

/* At the end of data: the message and recipient rates again, with what is
 * in flight counted, then: would this message (fingerprint fp, to the given
 * distinct recipients) take the sender over dup_recipients within
 * dup_window? Go on (code 0): the message, its recipients and its
 * fingerprint's recipients are RESERVED (counted as in flight by every
 * check of this sender), so that parallel sessions of one sender cannot all
 * pass before any is counted. Every go-on must be followed by exactly one
 * limit_delivered (stored) or limit_release (not stored), with the same
 * sender, fp and recipients. Refused: nothing reserved. */
void limit_end(struct limit *l, const struct limit_sender *s, uint64_t fp,
	       const char *const *rcpts, size_t n, time_t now, struct limit_reply *r);
/* A message deferred by greylisting (MX): it counts against the client's
 * message rate (rate_ip_messages) as a delivered one does, as Postfix's
 * smtpd_client_message_rate_limit counts every delivery request, so that a
 * client sending made-up triplets is stopped at MAIL FROM once past the
 * rate, instead of sending each message whole for another 451. Recipient
 * rates and duplicates do not count it: nothing was delivered. */
void limit_deferred(struct limit *l, const struct limit_sender *s, time_t now);
/* Accepted (250): counts the message, its recipients and its fingerprint
 * (confirming limit_end's reservation). */
void limit_delivered(struct limit *l, const struct limit_sender *s, uint64_t fp,
		     const char *const *rcpts, size_t n, time_t now);
/* Not stored after limit_end said go on (a later check refused it, the
 * store failed, the session was lost): drops the reservation, counts
 * nothing. A reservation neither confirmed nor released is dropped anyway
 * after 10 minutes (each on its own, however busy the sender). */
void limit_release(struct limit *l, const struct limit_sender *s, uint64_t fp,
		   const char *const *rcpts, size_t n, time_t now);

#endif
