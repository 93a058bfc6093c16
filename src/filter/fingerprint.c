/* The body fingerprint of the duplicate check (limit.h): pure, streaming,
 * fuzzed (tests/fuzz/fuzz_fingerprint.c).
 *
 * The choice: one 64-bit hash of the body's normalised text, where what
 * commonly varies per recipient is masked or dropped before hashing, rather
 * than a similarity sketch (shingles, min-hash). A sketch compared by
 * similarity would also match two different short mails of one user that
 * share a long signature, and a user's own signature would get her blocked;
 * an exact hash of the masked text never matches two different texts, and
 * a flood is almost always one template with a few substituted fields.
 *
 * Normalisation (RFC 5322 2.1: the header section ends at the first empty
 * line; everything before it — Received, Message-ID, Date, To, which differ
 * per copy — is skipped):
 *   - the body is split into lines and whitespace-separated tokens; case is
 *     folded (ASCII), whitespace runs and empty lines vanish;
 *   - a token with an '@' (an address, "Dear alice@example.org") becomes one
 *     placeholder; inside a token, a run of 3 or more digits or of 8 or more
 *     hex digits with a digit among them (ids, UUIDs, unsubscribe tokens,
 *     dates, MIME boundaries of most MUAs) becomes one '#';
 *   - a salutation line (at most 6 tokens, the first one a greeting word:
 *     "Dear Alice,", "Hi Bob!", "Hallo Carol") is dropped entirely;
 *   - a body with less than LIMIT_FP_SHORT significant octets left ("ok",
 *     an empty body with an attachment-less note) has the normalised Subject
 *     mixed in, so that short different notes do not look alike; a message
 *     with no significant text at all has no fingerprint (0: not checked).
 * Limits (documented in README): a name or random words in the middle of the
 * text, per-copy base64 bodies (the encoding hides the substitution), random
 * alphabetic tokens (hash busting) defeat it; the recipient rates are the
 * backstop for those. Two copies only match exactly; the hash is not keyed
 * (it need not be: a collision only makes two different texts count as
 * one, which a sender cannot use to send more). */
#include "filter/limit.h"

#include <string.h>

#define LIMIT_FP_SHORT 64    /* significant body octets below which Subject joins */
#define LIMIT_FP_GREET_MAX 6 /* tokens of a salutation line */

static const char SUBJECT[] = "subject:";

/* Salutations that start a line which names the recipient. */
static const char *const greetings[] = {
	"dear", "hi",    "hello", "hey",  "hallo",  "hoi",   "bonjour", "salut",
	"hola", "ciao",  "liebe", "lieber", "sehr", "greetings", "querido", "querida",
	"cher", "chère", "beste", "geachte", "witaj", "olá",
};

static uint64_t fp_mix(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t fp_fnv(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static bool fp_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool fp_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool fp_is_greeting(const char *t, size_t n)
{
	while (n > 0 && strchr(",:;!.", t[n - 1]) != NULL)
		n--;
	for (size_t i = 0; i < sizeof(greetings) / sizeof(greetings[0]); i++)
		if (strlen(greetings[i]) == n && memcmp(greetings[i], t, n) == 0)
			return true;
	return false;
}

/* A token (or a LIMIT_FP_TOK piece of a longer one) is complete. */
static void fp_token(struct limit_fp_text *x)
{
	char out[LIMIT_FP_TOK];
	size_t o = 0, n = x->tok_len;
	const char *t = x->tok;

	if (n == 0)
		return;
	if (x->words == 0)
		x->greeting = fp_is_greeting(t, n);
	if (x->tok_at) {
		out[o++] = '\x01'; /* an address */
	} else if (!x->tok_digit) { /* nothing to mask (most words) */
		memcpy(out, t, n);
		o = n;
	} else {
		for (size_t i = 0; i < n;) {
			size_t j = i;
			bool digit = false;

			while (j < n && fp_hex(t[j]))
				digit |= fp_digit(t[j++]);
			if (j - i >= 8 && digit) {
				out[o++] = '#';
				i = j;
				continue;
			}
			for (j = i; j < n && fp_digit(t[j]);)
				j++;
			if (j - i >= 3) {
				out[o++] = '#';
				i = j;
				continue;
			}
			out[o++] = t[i++];
		}
	}
	x->line = fp_mix(x->line ^ fp_fnv(out, o)) + 0x9e3779b97f4a7c15ULL;
	x->line_sig += o;
	x->words++;
	x->tok_len = 0;
	x->tok_at = x->tok_digit = false;
}

static void fp_eol(struct limit_fp_text *x)
{
	fp_token(x);
	if (x->words > 0 && !(x->greeting && x->words <= LIMIT_FP_GREET_MAX)) {
		x->acc = fp_mix(x->acc ^ x->line) + 0x632be59bd9b4e019ULL;
		x->sig += x->line_sig;
	}
	x->line = 0;
	x->line_sig = 0;
	x->words = 0;
	x->greeting = false;
}

static void fp_char(struct limit_fp_text *x, char c)
{
	switch (c) {
	case '\n':
		fp_eol(x);
		return;
	case ' ':
	case '\t':
	case '\r':
	case '\f':
	case '\v':
		fp_token(x);
		return;
	}
	if (c >= 'A' && c <= 'Z')
		c = (char)(c - 'A' + 'a');
	if (x->tok_len == LIMIT_FP_TOK)
		fp_token(x);
	x->tok[x->tok_len++] = c;
	x->tok_at |= c == '@';
	x->tok_digit |= fp_digit(c);
}

void limit_fp_init(struct limit_fp *f)
{
	memset(f, 0, sizeof(*f));
}

/* One octet of the header section: find its end and the Subject field. */
static void fp_header(struct limit_fp *f, char c)
{
	if (c == '\r')
		return;
	if (c == '\n') {
		if (f->hdr_at == 0) { /* the empty line: RFC 5322 2.1 */
			if (f->in_subj)
				fp_eol(&f->subj);
			f->in_subj = false;
			f->phase = 1;
			return;
		}
		f->hdr_at = 0;
		f->subj_match = 0;
		return;
	}
	if (f->hdr_at == 0 && f->in_subj && c != ' ' && c != '\t') {
		fp_eol(&f->subj); /* a new field: the Subject ended (RFC 5322 2.2.3) */
		f->in_subj = false;
	}
	if (f->in_subj) {
		fp_char(&f->subj, c);
	} else if (f->hdr_at < sizeof(SUBJECT) - 1 && (size_t)f->subj_match == f->hdr_at) {
		char lc = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;

		if (lc == SUBJECT[f->hdr_at]) {
			f->subj_match++;
			if ((size_t)f->subj_match == sizeof(SUBJECT) - 1)
				f->in_subj = true;
		}
	}
	f->hdr_at++;
}

void limit_fp_feed(struct limit_fp *f, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (f->phase == 0) {
			fp_header(f, p[i]);
			continue;
		}
		f->body_bytes++;
		fp_char(&f->body, p[i]);
	}
}

uint64_t limit_fp_final(struct limit_fp *f)
{
	if (f->in_subj)
		fp_eol(&f->subj);
	f->in_subj = false;
	fp_eol(&f->body);
	if (f->body.sig == 0 && f->subj.sig == 0)
		return 0;
	uint64_t fp = fp_mix(f->body.acc ^ 0x5bd1e9955bd1e995ULL);
	if (f->body.sig < LIMIT_FP_SHORT)
		fp = fp_mix(fp ^ fp_mix(f->subj.acc + 0x27d4eb2f165667c5ULL));
	return fp != 0 ? fp : 1;
}
