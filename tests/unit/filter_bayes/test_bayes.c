/* Unit tests of the statistical filter: the tokenizer (what becomes a
 * token, bounds) and the classifier's arithmetic (Robinson f(w), Fisher
 * chi-square, the BAYES_xx points, the untrained model). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "filter/bayes.h"
#include "../test.h"

static bool has(const struct bayes_tokens *t, const char *text)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].text, text) == 0)
			return true;
	return false;
}

/* Each case: a message, tokens it must give, tokens it must not. */
static const struct {
	const char *msg;
	const char *want[8];
	const char *not[4];
} tok_cases[] = {
	/* 0: Subject words prefixed, lowercased; From address and domain */
	{"From: \"Big Sale\" <Deals@Shop.Example>\r\nSubject: CHEAP Watches\r\n\r\nhello world\r\n",
	 {"subject:cheap", "subject:watches", "from:deals@shop.example", "from-domain:shop.example",
	  "from-name:big", "hello", "world"},
	 {"cheap", "Hello"}},
	/* 1: RFC 2047 B subject in Cyrillic (RFC 2047 4.1), lowercased */
	{"Subject: =?UTF-8?B?0JrQo9Cf0JjQotCV?=\r\n\r\nx\r\n", {"subject:купите"}, {NULL}},
	/* 2: quoted-printable Latin-1 body (RFC 2045 6.7) to UTF-8, lowercased */
	{"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
	 "quoted-printable\r\n\r\nGr=FC=DFe CAF=C9 soft=\r\nbreak\r\n",
	 {"grüße", "café", "softbreak", "charset:iso-8859-1", "cte:quoted-printable"},
	 {"soft", "break"}},
	/* 3: base64 body (RFC 2045 6.8; MIME-Version makes it MIME, RFC 2045 4) */
	{"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gYmFzZTY0IHdvcmxk\r\n",
	 {"hello", "base64", "world"},
	 {"agvsbg8gymfzzty0ihdvcmxk"}},
	/* 4: HTML: tags dropped, entities decoded, link hosts, script content dropped */
	{"Content-Type: text/html\r\n\r\n<html><script>var evil=1;</script><b>Fish</b>&amp;"
	 "chips &eacute;t&eacute; <a href=\"http://Click.Spam.Example/x\">here</a></html>\r\n",
	 {"fish", "chips", "été", "url:click.spam.example", "url:spam.example", "here", "ct:text/html"},
	 {"evil", "html", "href", "var"}},
	/* 5: CJK as bigrams, Greek lowercased */
	{"Content-Type: text/plain; charset=utf-8\r\n\r\n日本語 ΚΑΛΗΜΕΡΑ\r\n",
	 {"日本", "本語", "καλημερα"},
	 {"日本語"}},
	/* 6: attachments: name and extension, not content */
	{"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
	 "see attached\r\n--b\r\nContent-Type: application/octet-stream; name=\"Invoice.PDF.exe\"\r\n"
	 "Content-Disposition: attachment; filename=\"Invoice.PDF.exe\"\r\n\r\nsecretcontent\r\n--b--\r\n",
	 {"attach:invoice", "attach:pdf", "attach-ext:exe", "see", "attached"},
	 {"secretcontent"}},
	/* 7: long words summarised, one-letter words dropped, URL userinfo trick */
	{"\r\nx aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
	 "http://bank.example@evil.example/ ok\r\n",
	 {"skip:a:50", "url:evil.example", "ok"},
	 {"x", "url:bank.example"}},
	/* 8: Reply-To and Received: the first counted, the second not */
	{"Received: from relay.isp.example\r\nReply-To: claims@agent.example\r\n\r\nhi there\r\n",
	 {"reply-to:claims@agent.example", "reply-to-domain:agent.example", "hi", "there"},
	 {"relay", "isp"}},
	/* 9: Return-Path as the first field (delivery's, RFC 5321 4.4) counts */
	{"Return-Path: <list@news.example>\r\nSubject: hi\r\n\r\nbody text\r\n",
	 {"return-path:list@news.example", "return-path-domain:news.example"},
	 {NULL}},
	/* 10: a Return-Path further down came from the sender: not counted
	 * (else a spammer borrows the envelope senders learned as ham) */
	{"Received: from x\r\nReturn-Path: <list@news.example>\r\nSubject: hi\r\n\r\nbody\r\n",
	 {"subject:hi", "body"},
	 {"return-path:list@news.example", "return-path-domain:news.example"}},
	/* 11: a forged second Return-Path below delivery's: only the first */
	{"Return-Path: <bulk@spam.example>\r\nReturn-Path: <list@news.example>\r\n\r\nx\r\n",
	 {"return-path:bulk@spam.example"},
	 {"return-path:list@news.example"}},
};

static void test_tokenize_cases(void)
{
	for (size_t c = 0; c < sizeof tok_cases / sizeof *tok_cases; c++) {
		struct bayes_tokens t;
		bayes_tokenize(tok_cases[c].msg, strlen(tok_cases[c].msg), &t);
		for (size_t i = 0; i < 8 && tok_cases[c].want[i]; i++)
			if (!has(&t, tok_cases[c].want[i])) {
				printf("  case %zu: no token \"%s\"\n", c, tok_cases[c].want[i]);
				test_cur_failed = 1;
			}
		for (size_t i = 0; i < 4 && tok_cases[c].not[i]; i++)
			if (has(&t, tok_cases[c].not[i])) {
				printf("  case %zu: unexpected token \"%s\"\n", c, tok_cases[c].not[i]);
				test_cur_failed = 1;
			}
		for (size_t i = 1; i < t.n; i++)
			CHECK(t.v[i - 1].hash < t.v[i].hash); /* distinct, sorted */
		bayes_tokens_free(&t);
	}
}

/* Bounds: 20,000 distinct words give at most 5,000 tokens; the same input
 * gives the same tokens (the trainer untrains by re-tokenizing). */
static void test_tokenize_bounds(void)
{
	struct buf b = {0};
	buf_appends(&b, "Subject: many\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		buf_printf(&b, "w%dq ", i);
	struct bayes_tokens t, u;
	bayes_tokenize(b.data, b.len, &t);
	bayes_tokenize(b.data, b.len, &u);
	CHECK_INT(0, t.n, 5000);
	CHECK_INT(1, u.n, t.n);
	for (size_t i = 0; i < t.n && i < u.n; i++)
		CHECK(t.v[i].hash == u.v[i].hash);
	/* the hash set grew from 512 entries past 5,000 tokens: still
	 * distinct, sorted, and each text is its own (one block) */
	for (size_t i = 1; i < t.n; i++)
		CHECK(t.v[i - 1].hash < t.v[i].hash);
	CHECK(has(&t, "subject:many") && has(&t, "w0q") && has(&t, "w4000q"));
	CHECK(!has(&t, "w19999q"));
	bayes_tokens_free(&t);
	bayes_tokens_free(&u);
	/* empty and header-only messages */
	bayes_tokenize("", 0, &t);
	CHECK_INT(2, t.n, 0);
	bayes_tokens_free(&t);
	buf_free(&b);
}

/* Header fields are bounded too: a folded Subject or From of megabytes is
 * read up to its first 64 KiB only (a word after that is no token), and an
 * address run of '@' is looked at once (it was quadratic: a 200 KB From of
 * '@' took 268 s of a worker before this bound, 50 KB 19 s). */
static void test_tokenize_header_bounds(void)
{
	struct buf b = {0};
	buf_appends(&b, "Subject: first");
	for (int i = 0; i < 20000; i++)
		buf_appends(&b, "\r\n pad pad");
	buf_appends(&b, " farword\r\nFrom: <near@ok.example> ");
	for (int i = 0; i < 70000; i++)
		buf_appendc(&b, '@');
	buf_appends(&b, " far@away.example\r\n\r\nbody\r\n");
	struct bayes_tokens t;
	bayes_tokenize(b.data, b.len, &t);
	CHECK(has(&t, "subject:first"));
	CHECK(has(&t, "subject:pad"));
	CHECK(!has(&t, "subject:farword"));
	CHECK(has(&t, "from:near@ok.example"));
	CHECK(!has(&t, "from:far@away.example"));
	CHECK(has(&t, "body"));
	bayes_tokens_free(&t);
	/* a From of 1 MB of '@' (under the cap: one run of a few KiB each) */
	buf_reset(&b);
	buf_appends(&b, "From: ");
	for (int i = 0; i < 1000000; i++)
		buf_appendc(&b, (i % 4000) ? '@' : ' ');
	buf_appends(&b, "\r\n\r\nx\r\n");
	bayes_tokenize(b.data, b.len, &t);
	CHECK_INT(0, t.n, 0);
	bayes_tokens_free(&t);
	buf_free(&b);
}

/* A model of 100 ham and 100 spam; tokens with the given counts. */
static double verdict(const struct bayes_counts *c, size_t n, struct bayes_counts total,
		      double *score_r, const char **rule_r, bool *untrained_r)
{
	struct bayes_tokens t = {xcalloc(n ? n : 1, sizeof(struct bayes_token)), n, NULL};
	for (size_t i = 0; i < n; i++) {
		t.v[i].hash = i + 1;
		t.v[i].text = xasprintf("tok%zu", i);
	}
	struct bayes_verdict v;
	bayes_combine(&t, c, total, "test", &v);
	*score_r = v.score;
	*rule_r = v.reasons.n ? v.reasons.v[0].rule : "";
	static char rule[32];
	snprintf(rule, sizeof rule, "%s", *rule_r);
	*rule_r = rule;
	*untrained_r = v.untrained;
	double p = v.prob;
	bayes_verdict_free(&v);
	for (size_t i = 0; i < n; i++) /* made here, not in one block */
		free(t.v[i].text);
	free(t.v);
	return p;
}

static void test_combine(void)
{
	struct bayes_counts total = {100, 100};
	double score;
	const char *rule;
	bool untrained;
	/* 0: no known token: 0.5, BAYES_50, no points */
	struct bayes_counts none[3] = {{0, 0}, {0, 0}, {0, 0}};
	double p = verdict(none, 3, total, &score, &rule, &untrained);
	CHECK(fabs(p - 0.5) < 1e-9);
	CHECK_STR(0, rule, "BAYES_50");
	CHECK(!untrained && score == 0.0);
	/* 1: ten tokens seen only in spam: BAYES_99 with 5.0 points (reaches
	 * spam_junk_score alone) */
	struct bayes_counts spam[10];
	for (int i = 0; i < 10; i++)
		spam[i] = (struct bayes_counts){0, 20};
	p = verdict(spam, 10, total, &score, &rule, &untrained);
	CHECK(p > 0.99);
	CHECK_STR(1, rule, "BAYES_99");
	CHECK(score >= 5.0);
	/* 2: the mirror image: BAYES_00, negative points */
	struct bayes_counts ham[10];
	for (int i = 0; i < 10; i++)
		ham[i] = (struct bayes_counts){20, 0};
	p = verdict(ham, 10, total, &score, &rule, &untrained);
	CHECK(p < 0.01);
	CHECK_STR(2, rule, "BAYES_00");
	CHECK(score < 0);
	/* 3: symmetric evidence: exactly 0.5 (Fisher's S and H equal) */
	struct bayes_counts both[2] = {{0, 20}, {20, 0}};
	p = verdict(both, 2, total, &score, &rule, &untrained);
	CHECK(fabs(p - 0.5) < 1e-9);
	/* 4: a token seen once in spam: Robinson f = (0.5 + 1 * 1) / 2 = 0.75,
	 * alone: S = 1 - chi2Q(-2 ln 0.25, 2) = 0.75, H = 1 - chi2Q(-2 ln 0.75, 2)
	 * = 0.25, prob = (1 + 0.75 - 0.25) / 2 = 0.75 */
	struct bayes_counts once[1] = {{0, 1}};
	p = verdict(once, 1, total, &score, &rule, &untrained);
	CHECK(fabs(p - 0.75) < 1e-9);
	CHECK_STR(4, rule, "BAYES_60");
	/* 5: a token as frequent in both classes: f = 0.5, ignored
	 * (|f - 0.5| <= 0.1) */
	struct bayes_counts even[1] = {{50, 50}};
	p = verdict(even, 1, total, &score, &rule, &untrained);
	CHECK(fabs(p - 0.5) < 1e-9);
	/* 6: the classes' sizes are normalised: 10 of 1000 ham vs 1 of 100 spam
	 * is the same rate: f = 0.5 */
	struct bayes_counts norm[1] = {{10, 1}};
	p = verdict(norm, 1, (struct bayes_counts){1000, 100}, &score, &rule, &untrained);
	CHECK(fabs(p - 0.5) < 1e-9);
	/* 7: too little training: untrained, 0.5, no reasons */
	p = verdict(spam, 10, (struct bayes_counts){4, 100}, &score, &rule, &untrained);
	CHECK(untrained && fabs(p - 0.5) < 1e-9 && score == 0.0);
	CHECK_STR(7, rule, "");
}

/* Only the strongest 150 count: 150 spam tokens outvote nothing else, but
 * 200 weak ham tokens cannot drown 150 strong spam ones. */
static void test_combine_clues(void)
{
	struct bayes_counts c[400];
	for (int i = 0; i < 150; i++)
		c[i] = (struct bayes_counts){0, 50};
	for (int i = 150; i < 400; i++)
		c[i] = (struct bayes_counts){2, 0};
	double score;
	const char *rule;
	bool untrained;
	double p = verdict(c, 400, (struct bayes_counts){100, 100}, &score, &rule, &untrained);
	CHECK(p > 0.99);
	CHECK_STR(0, rule, "BAYES_99");
}

int main(void)
{
	test_run("tokenize_cases", test_tokenize_cases);
	test_run("tokenize_bounds", test_tokenize_bounds);
	test_run("tokenize_header_bounds", test_tokenize_header_bounds);
	test_run("combine", test_combine);
	test_run("combine_clues", test_combine_clues);
	return test_done("test_filter_bayes");
}
