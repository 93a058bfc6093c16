/* `postern spam train|stats|classify`, `postern mail explain`: the
 * statistical filter's admin side (src/filter/bayes.h). Runs on the CLI's
 * own store connection (SQLite serialises it with a running daemon's
 * committer).
 *
 *   spam train --spam|--ham [--user USER|--global] FILE|DIR...
 *       each FILE an mbox ("From " lines) or one message; a DIR is read
 *       recursively (a maildir's cur/ and new/ included), names sorted;
 *       the global model by default.
 *   spam stats [USER]
 *   spam classify [--user USER] < message
 *       the verdict the daemon would give (prob, points, reasons).
 *   mail explain USER UID [MAILBOX]
 *       the stored message's X-Spam-Status and X-Spam-Report reasons and
 *       its Authentication-Results, in plain words: only those postern
 *       wrote (above its Received field), never the sender's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "filter/bayes.h"
#include "filter/reasons.h"
#include "store/store.h"

#define SPAM_TRAIN_BATCH 200       /* messages per transaction */
#define SPAM_MAX_MESSAGE (64 << 20) /* larger files are cut (the tokenizer reads 512 KiB of text) */
#define SPAM_MAX_DEPTH 8            /* directory recursion */

static int spam_usage(void)
{
	fprintf(stderr, "usage: postern spam train --spam|--ham [--user USER|--global] FILE|DIR...\n"
			"       postern spam stats [USER]\n"
			"       postern spam classify [--user USER] [FILE...] (stdin: one message)\n"
			"       postern mail explain USER UID [MAILBOX]\n");
	return 2;
}

/* ---- train ---- */

struct trainer {
	struct store *st;
	int64_t user_id;
	bool spam;
	struct store_spam_train *v;
	size_t n;
	long total;
	int failed;
};

static int flush(struct trainer *t)
{
	char *err = NULL;
	int r = t->n > 0 ? store_spam_train(t->st, t->v, t->n, &err) : 0;
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].hashes);
	t->n = 0;
	if (r < 0) {
		fprintf(stderr, "postern: spam train: %s\n", err ? err : "failed");
		free(err);
		t->failed = 1;
	}
	return r;
}

/* One message (LF or CRLF line ends; made CRLF as stored mail is). */
static void train_message(struct trainer *t, const char *p, size_t n)
{
	struct buf m = {0};
	buf_reserve(&m, n + n / 16 + 2);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			buf_appendc(&m, '\r');
		buf_appendc(&m, p[i]);
	}
	struct bayes_tokens tk;
	bayes_tokenize(m.data ? m.data : "", m.len, &tk);
	buf_free(&m);
	struct store_spam_train *it = &t->v[t->n++];
	memset(it, 0, sizeof *it);
	it->user_id = t->user_id;
	it->spam = t->spam;
	it->hashes = xcalloc(tk.n ? tk.n : 1, sizeof *it->hashes);
	for (size_t i = 0; i < tk.n; i++)
		it->hashes[i] = tk.v[i].hash;
	it->n = tk.n;
	bayes_tokens_free(&tk);
	t->total++;
	if (t->n == SPAM_TRAIN_BATCH)
		flush(t);
}

/* mbox (RFC 4155): messages begin with a "From " line; ">From " quoting
 * (mboxrd) is taken back one level. */
static void train_mbox(struct trainer *t, const char *p, size_t n)
{
	size_t i = 0;
	struct buf m = {0};
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - p) + 1 : n;
		const char *line = p + i;
		size_t ll = e - i;
		if (ll >= 5 && memcmp(line, "From ", 5) == 0) {
			if (m.len > 0)
				train_message(t, m.data, m.len);
			buf_reset(&m);
		} else {
			size_t k = 0;
			while (k < ll && line[k] == '>')
				k++;
			if (k > 0 && ll - k >= 5 && memcmp(line + k, "From ", 5) == 0)
				buf_append(&m, line + 1, ll - 1);
			else
				buf_append(&m, line, ll);
		}
		i = e;
	}
	if (m.len > 0)
		train_message(t, m.data, m.len);
	buf_free(&m);
}

static int train_file(struct trainer *t, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "postern: spam train: %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct buf b = {0};
	char chunk[65536];
	ssize_t k;
	while (b.len < SPAM_MAX_MESSAGE && (k = read(fd, chunk, sizeof chunk)) > 0)
		buf_append(&b, chunk, (size_t)k);
	close(fd);
	if (b.len >= 5 && memcmp(b.data, "From ", 5) == 0)
		train_mbox(t, b.data, b.len);
	else if (b.len > 0)
		train_message(t, b.data, b.len);
	buf_free(&b);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int train_path(struct trainer *t, const char *path, int depth)
{
	struct stat sb;
	if (stat(path, &sb) < 0) {
		fprintf(stderr, "postern: spam train: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode))
		return train_file(t, path);
	if (depth >= SPAM_MAX_DEPTH)
		return 0;
	DIR *d = opendir(path);
	if (d == NULL) {
		fprintf(stderr, "postern: spam train: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n++] = xasprintf("%s/%s", path, de->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof *names, name_cmp);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (train_path(t, names[i], depth + 1) < 0)
			r = -1;
		free(names[i]);
	}
	free(names);
	return r;
}

static int64_t user_arg(struct store *st, const char *user)
{
	char *err = NULL;
	int64_t id = store_spam_user_id(st, user, &err);
	if (id < 0) {
		fprintf(stderr, "postern: %s\n", err ? err : "no such user");
		free(err);
	}
	return id;
}

static int cmd_train(const struct config *cfg, int argc, char **argv)
{
	int spam = -1;
	const char *user = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--spam") == 0)
			spam = 1;
		else if (strcmp(argv[i], "--ham") == 0)
			spam = 0;
		else if (strcmp(argv[i], "--global") == 0)
			user = NULL;
		else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else
			return spam_usage();
	}
	if (spam < 0 || i >= argc)
		return spam_usage();
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	struct trainer t = {st, 0, spam == 1, NULL, 0, 0, 0};
	if (user != NULL && (t.user_id = user_arg(st, user)) < 0) {
		store_close(&st);
		return 1;
	}
	t.v = xcalloc(SPAM_TRAIN_BATCH, sizeof *t.v);
	struct bayes_pin *pin = bayes_pin_charsets();
	int r = 0;
	for (; i < argc; i++)
		if (train_path(&t, argv[i], 0) < 0)
			r = 1;
	flush(&t);
	bayes_unpin_charsets(&pin);
	free(t.v);
	printf("trained %ld message%s as %s for %s\n", t.total, t.total == 1 ? "" : "s",
	       t.spam ? "spam" : "ham", user ? user : "the global model");
	store_close(&st);
	return r || t.failed ? 1 : 0;
}

/* ---- stats ---- */

struct stats_arg {
	int64_t only; /* -1: all */
	int shown;
};

static void stats_one(void *arg, int64_t user_id, const char *user,
		      const struct store_spam_counts *c, int64_t tokens)
{
	struct stats_arg *a = arg;
	if (a->only >= 0 && user_id != a->only)
		return;
	a->shown++;
	printf("%-32s ham %lld spam %lld tokens %lld%s\n", user_id == 0 ? "(global)" : user,
	       (long long)c->ham, (long long)c->spam, (long long)tokens,
	       user_id != 0 && (c->ham < 20 || c->spam < 20)
		       ? "  (fewer than 20 of each: blended with the global model)"
		       : "");
}

static int cmd_stats(const struct config *cfg, int argc, char **argv)
{
	if (argc > 2)
		return spam_usage();
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	struct stats_arg a = {-1, 0};
	if (argc == 2 && (a.only = user_arg(st, argv[1])) < 0) {
		store_close(&st);
		return 1;
	}
	char *err = NULL;
	int r = store_spam_users(st, stats_one, &a, &err);
	if (r == 0 && a.shown == 0)
		printf("%s: nothing trained\n", argc == 2 ? argv[1] : "spam filter");
	store_close(&st);
	return cli_report(r, &err) < 0 ? 1 : 0;
}

/* ---- classify ---- */

static void verdict_print(const struct bayes_verdict *v)
{
	printf("prob=%.4f score=%.1f%s\n", v->prob, v->score, v->untrained ? " untrained" : "");
	for (size_t i = 0; i < v->reasons.n; i++)
		printf("* %.1f %s %s\n", v->reasons.v[i].score, v->reasons.v[i].rule,
		       v->reasons.v[i].text);
}

/* `spam classify [--user USER] FILE...`: one line per file (the
 * evaluation in bench/spam-eval.py): "FILE prob=P score=S RULE". */
static int classify_files(struct store *st, int64_t uid, char **files, int n)
{
	int r = 0;
	struct bayes_pin *pin = bayes_pin_charsets();
	for (int i = 0; i < n; i++) {
		struct buf m = {0};
		int fd = open(files[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "postern: spam classify: %s: %s\n", files[i], strerror(errno));
			r = -1;
			continue;
		}
		char chunk[65536];
		ssize_t k;
		while (m.len < SPAM_MAX_MESSAGE && (k = read(fd, chunk, sizeof chunk)) > 0)
			buf_append(&m, chunk, (size_t)k);
		close(fd);
		struct bayes_tokens tk;
		bayes_tokenize(m.data ? m.data : "", m.len, &tk);
		buf_free(&m);
		struct bayes_verdict v;
		char *err = NULL;
		if (bayes_classify_sync(st, &tk, uid, &v, &err) == 0)
			printf("%s prob=%.6f score=%.1f %s\n", files[i], v.prob, v.score,
			       v.reasons.n > 0 ? v.reasons.v[0].rule : "UNTRAINED");
		else
			r = cli_report(-1, &err);
		bayes_verdict_free(&v);
		bayes_tokens_free(&tk);
	}
	bayes_unpin_charsets(&pin);
	return r;
}

static int cmd_classify(const struct config *cfg, int argc, char **argv)
{
	const char *user = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else
			return spam_usage();
	}
	if (i < argc) {
		struct store *st = cli_open_store(cfg);
		if (st == NULL)
			return 1;
		int64_t id = 0;
		int r = user != NULL && (id = user_arg(st, user)) < 0 ? -1
									  : classify_files(st, id, argv + i, argc - i);
		store_close(&st);
		return r < 0 ? 1 : 0;
	}
	struct buf m = {0};
	if (cli_read_message(&m, SPAM_MAX_MESSAGE) < 0) {
		fprintf(stderr, "postern: spam classify: message too large\n");
		buf_free(&m);
		return 1;
	}
	struct store *st = cli_open_store(cfg);
	if (st == NULL) {
		buf_free(&m);
		return 1;
	}
	int64_t uid = 0;
	if (user != NULL && (uid = user_arg(st, user)) < 0) {
		store_close(&st);
		buf_free(&m);
		return 1;
	}
	struct bayes_tokens tk;
	bayes_tokenize(m.data ? m.data : "", m.len, &tk);
	buf_free(&m);
	struct bayes_verdict v;
	char *err = NULL;
	int r = bayes_classify_sync(st, &tk, uid, &v, &err);
	if (r == 0)
		verdict_print(&v);
	bayes_verdict_free(&v);
	bayes_tokens_free(&tk);
	store_close(&st);
	return cli_report(r, &err) < 0 ? 1 : 0;
}

int cli_spam(const struct config *cfg, int argc, char **argv)
{
	if (argc < 1)
		return spam_usage();
	if (strcmp(argv[0], "train") == 0)
		return cmd_train(cfg, argc, argv);
	if (strcmp(argv[0], "stats") == 0)
		return cmd_stats(cfg, argc, argv);
	if (strcmp(argv[0], "classify") == 0)
		return cmd_classify(cfg, argc, argv);
	return spam_usage();
}

/* ---- mail explain ---- */

/* The value of each field named name in the header block, unfolded
 * (RFC 5322 2.2.3), given to fn. */
static void fields(const char *h, size_t n, const char *name,
		   void (*fn)(void *arg, const char *v, size_t len), void *arg)
{
	size_t nl = strlen(name), i = 0;
	while (i < n) {
		const char *e = memchr(h + i, '\n', n - i);
		size_t end = e ? (size_t)(e - h) + 1 : n;
		if (end - i > nl && strncasecmp(h + i, name, nl) == 0 && h[i + nl] == ':') {
			/* the field with its continuation lines */
			size_t f = end;
			while (f < n && (h[f] == ' ' || h[f] == '\t')) {
				const char *e2 = memchr(h + f, '\n', n - f);
				f = e2 ? (size_t)(e2 - h) + 1 : n;
			}
			fn(arg, h + i + nl + 1, f - i - nl - 1);
			end = f;
		}
		i = end;
	}
}

static void count_field(void *arg, const char *v, size_t len)
{
	(*(int *)arg)++;
}

/* The length of the block postern prepended to a delivered message: the
 * fields above the first Received field, which SMTP writes first in every
 * message it receives (RFC 5321 4.4; src/smtp/tx.c); Return-Path,
 * policy's Authentication-Results and the filter's X-Spam-* fields come
 * before it (the delivery's prefix). Fields below it came from the sender
 * or earlier hops: never postern's verdict (RFC 8601 5: a receiver does
 * not believe Authentication-Results it did not write). 0: no Received
 * field, nothing of postern's. */
static size_t own_block(const char *h, size_t n)
{
	size_t i = 0;
	while (i < n) {
		if (n - i >= 9 && strncasecmp(h + i, "Received:", 9) == 0)
			return i;
		const char *e = memchr(h + i, '\n', n - i);
		i = e ? (size_t)(e - h) + 1 : n;
	}
	return 0;
}

static void print_status(void *arg, const char *v, size_t len)
{
	int *seen = arg;
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n'))
		len--;
	bool spam = len >= 3 && strncasecmp(v, "Yes", 3) == 0;
	printf("verdict: %s (X-Spam-Status: %.*s)\n",
	       spam ? "spam: filed as junk or refused above the reject score" : "not spam",
	       (int)len, v);
	(*seen)++;
}

static void print_report(void *arg, const char *v, size_t len)
{
	int *seen = arg;
	struct filter_reasons r = FILTER_REASONS_INIT;
	if (filter_reasons_parse(v, len, &r) < 0) {
		printf("an X-Spam-Report field that is not postern's was ignored\n");
		return;
	}
	printf("reasons (points, rule, why):\n");
	for (size_t i = 0; i < r.n; i++)
		printf("  %+5.1f  %-24s %s\n", r.v[i].score, r.v[i].rule, r.v[i].text);
	if (r.n == 0)
		printf("  (none: nothing in this message counted for or against it)\n");
	filter_reasons_free(&r);
	(*seen)++;
}

static const struct {
	const char *method, *result, *words;
} ar_words[] = {
	{"spf", "pass", "the sending server is allowed to send for the envelope sender's domain"},
	{"spf", "fail", "the sender's domain says this server may NOT send its mail"},
	{"spf", "softfail", "the sender's domain says this server is probably not one of its own"},
	{"spf", "neutral", "the sender's domain says nothing about this server"},
	{"spf", "none", "the sender's domain publishes no SPF record"},
	{"dkim", "pass", "a valid signature proves the signing domain sent it unchanged"},
	{"dkim", "fail", "a signature does not verify: the message was altered or forged"},
	{"dkim", "none", "the message is not signed"},
	{"dmarc", "pass", "the From: domain is authenticated (aligned SPF or DKIM)"},
	{"dmarc", "fail", "the From: domain is NOT authenticated: it may be forged"},
	{"dmarc", "none", "the From: domain publishes no DMARC policy"},
	{"arc", "pass", "the forwarding chain (ARC) is intact"},
	{"arc", "fail", "the forwarding chain (ARC) is broken"},
	{"arc", "none", "no forwarding chain (ARC)"},
	{NULL, "temperror", "could not be checked (a temporary DNS error)"},
	{NULL, "permerror", "could not be checked (the sender's record is broken)"},
	{NULL, "policy", "refused by local policy"},
};

/* RFC 8601 2.2: authserv-id; then "method=result ptype.prop=value ..."
 * separated by ';'. Comments (RFC 5322 CFWS) dropped. */
static void print_ar(void *arg, const char *v, size_t len)
{
	int *seen = arg;
	char *s = xstrndup(v, len);
	/* unfold, drop comments */
	size_t k = 0;
	int depth = 0;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0)
			s[k++] = (c == '\r' || c == '\n' || c == '\t') ? ' ' : c;
	}
	s[k] = '\0';
	char *save = NULL;
	char *part = strtok_r(s, ";", &save);
	printf("authentication (Authentication-Results by%s):\n", part ? part : " ?");
	while ((part = strtok_r(NULL, ";", &save)) != NULL) {
		while (*part == ' ')
			part++;
		char *eq = strchr(part, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		char *res = eq + 1, *rest = strchr(res, ' ');
		if (rest != NULL)
			*rest++ = '\0';
		const char *words = "";
		for (size_t i = 0; i < sizeof ar_words / sizeof *ar_words; i++)
			if ((ar_words[i].method == NULL || strcasecmp(ar_words[i].method, part) == 0) &&
			    strcasecmp(ar_words[i].result, res) == 0) {
				words = ar_words[i].words;
				break;
			}
		while (rest != NULL && *rest == ' ')
			rest++;
		printf("  %-6s %-9s %s%s%s%s\n", part, res, words, rest && *rest ? " [" : "",
		       rest && *rest ? rest : "", rest && *rest ? "]" : "");
	}
	free(s);
	(*seen)++;
}

int cli_mail_explain(const struct config *cfg, int argc, char **argv)
{
	if (argc < 3 || argc > 4)
		return spam_usage();
	char *end;
	unsigned long uid = strtoul(argv[2], &end, 10);
	if (*end != '\0' || uid == 0 || uid > 0xffffffffUL)
		return spam_usage();
	const char *mailbox = argc == 4 ? argv[3] : "INBOX";
	struct store *st = cli_open_store(cfg);
	if (st == NULL)
		return 1;
	int fd;
	char *err = NULL;
	if (store_spam_message_open(st, argv[1], mailbox, (uint32_t)uid, &fd, &err) < 0) {
		store_close(&st);
		return cli_report(-1, &err) < 0 ? 1 : 1;
	}
	/* the header block: up to the first empty line (at most 1 MiB) */
	struct buf h = {0};
	char chunk[65536];
	ssize_t k;
	while (h.len < (1 << 20) && (k = read(fd, chunk, sizeof chunk)) > 0) {
		buf_append(&h, chunk, (size_t)k);
		if (memmem(h.data, h.len, "\r\n\r\n", 4) || memmem(h.data, h.len, "\n\n", 2))
			break;
	}
	close(fd);
	size_t n = h.len;
	const char *e = h.data ? memmem(h.data, h.len, "\r\n\r\n", 4) : NULL;
	const char *lf = h.data ? memmem(h.data, h.len, "\n\n", 2) : NULL;
	if (e != NULL && (lf == NULL || e < lf))
		n = (size_t)(e - h.data) + 2;
	else if (lf != NULL)
		n = (size_t)(lf - h.data) + 1; /* a bare-LF header (RFC 5322 2.2 wants CRLF) */
	const char *hd = h.data ? h.data : "";
	size_t own = own_block(hd, n);
	printf("message UID %lu in %s of %s\n", uid, mailbox, argv[1]);
	int status = 0, report = 0, ar = 0, foreign = 0;
	fields(hd, own, "X-Spam-Status", print_status, &status);
	fields(hd, own, "X-Spam-Report", print_report, &report);
	if (status == 0 && report == 0)
		printf("no spam verdict is stored with this message (not filtered: submitted by a "
		       "user, added over IMAP, or spam_header is off)\n");
	fields(hd, own, "Authentication-Results", print_ar, &ar);
	if (ar == 0)
		printf("no Authentication-Results: the sender was not checked (authenticated "
		       "submission, or mail added over IMAP)\n");
	fields(hd + own, n - own, "X-Spam-Status", count_field, &foreign);
	fields(hd + own, n - own, "X-Spam-Report", count_field, &foreign);
	fields(hd + own, n - own, "Authentication-Results", count_field, &foreign);
	if (foreign > 0)
		printf("%d X-Spam-* or Authentication-Results field(s) below postern's Received "
		       "field came with the message (the sender or an earlier server): ignored\n",
		       foreign);
	buf_free(&h);
	store_close(&st);
	return 0;
}
