/* SORT (RFC 5256 3, RFC 5957) and the RETURN options of RFC 5267 / RFC 9394:
 * imap_sort_parse, the sort keys taken from a message's MIME cache, their
 * order with ties, and the sequence-set of a sorted result. */
#include <stdio.h>
#include <string.h>

#include "core/xmalloc.h"
#include "imap/parse.h"
#include "imap/sort.h"
#include "mime/mime.h"
#include "../test.h"
#include "../imap_fixture.h"

static void render(const struct imap_search *s, struct buf *b)
{
	static const char *const names[] = {"ARRIVAL", "CC",      "DATE",        "FROM",     "SIZE",
					    "SUBJECT", "TO",      "DISPLAYFROM", "DISPLAYTO"};
	for (size_t i = 0; i < s->n_sort; i++)
		buf_printf(b, "%s%s%s", i ? " " : "", s->sort[i].reverse ? "-" : "",
			   names[s->sort[i].kind]);
	buf_printf(b, "|%s|", s->charset != NULL ? s->charset : "");
	if (s->esearch)
		buf_printf(b, "ret%s%s%s%s%s%s", s->ret_min ? " min" : "", s->ret_max ? " max" : "",
			   s->ret_all ? " all" : "", s->ret_count ? " count" : "",
			   s->ret_update ? " update" : "", s->ret_context ? " context" : "");
	if (s->ret_partial)
		buf_printf(b, " partial %lld:%lld", (long long)s->partial_lo,
			   (long long)s->partial_hi);
}

static void test_parse(void)
{
	static const struct {
		bool sort;
		const char *args;
		const char *want; /* NULL: BAD; "!cs": BADCHARSET */
	} cases[] = {
	    {true, "(SUBJECT) UTF-8 ALL", "SUBJECT|UTF-8|"},
	    {true, "(reverse date from Size) us-ascii ALL", "-DATE FROM SIZE|us-ascii|"},
	    {true, "(ARRIVAL CC TO DISPLAYFROM REVERSE DISPLAYTO) UTF-8 ALL",
	     "ARRIVAL CC TO DISPLAYFROM -DISPLAYTO|UTF-8|"},
	    {true, "RETURN (MIN MAX) (ARRIVAL) UTF-8 1:5", "ARRIVAL|UTF-8|ret min max"},
	    {true, "RETURN (PARTIAL 4:2) (ARRIVAL) UTF-8 ALL", "ARRIVAL|UTF-8|ret partial 2:4"},
	    {true, "RETURN (PARTIAL -1:-10 COUNT) (ARRIVAL) UTF-8 ALL",
	     "ARRIVAL|UTF-8|ret count partial -10:-1"},
	    {true, "(SUBJECT) KOI8-R ALL", "!cs"},
	    {true, "() UTF-8 ALL", NULL},
	    {true, "(REVERSE) UTF-8 ALL", NULL},
	    {true, "(REVERSE REVERSE DATE) UTF-8 ALL", NULL},
	    {true, "(THREAD) UTF-8 ALL", NULL},
	    {true, "SUBJECT UTF-8 ALL", NULL},
	    {true, "(SUBJECT) UTF-8", NULL},
	    {true, "(SUBJECT)", NULL},
	    {true, "RETURN (PARTIAL 1:*) (DATE) UTF-8 ALL", NULL},
	    {true, "RETURN (PARTIAL 0:1) (DATE) UTF-8 ALL", NULL},
	    {true, "RETURN (PARTIAL 1:2 PARTIAL 3:4) (DATE) UTF-8 ALL", NULL},
	    {false, "RETURN (UPDATE CONTEXT COUNT) SEEN", "||ret count update context"},
	    {false, "RETURN (PARTIAL 1:5) SEEN", "||ret partial 1:5"},
	    {false, "RETURN (PARTIAL 1:5 ALL) SEEN", NULL},
	    {false, "RETURN (PARTIAL -1:5) SEEN", NULL},
	    {false, "RETURN (PARTIAL 1) SEEN", NULL},
	    {false, "RETURN (PARTIAL *:1) SEEN", NULL},
	    {false, "RETURN (PARTIAL 1:4294967296) SEEN", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[512];
		struct imap_args a;
		struct imap_search sr;
		const char *err = NULL;
		bool badcs = false;
		int r;
		snprintf(line, sizeof line, "a %s %s", cases[i].sort ? "SORT" : "SEARCH",
			 cases[i].args);
		if (parse_line(line, &a, &err) != 0) {
			CHECK_INT((int)i, -1, 0);
			continue;
		}
		r = cases[i].sort ? imap_sort_parse(a.args, 100, &sr, &badcs, &err)
				  : imap_search_parse(a.args, 100, &sr, &badcs, &err);
		const char *want = cases[i].want;
		bool want_cs = want != NULL && strcmp(want, "!cs") == 0;
		CHECK_INT((int)i, r, want != NULL && !want_cs ? 0 : -1);
		CHECK_INT((int)i, badcs, want_cs);
		if (r == 0) {
			struct buf b = BUF_INIT;
			render(&sr, &b);
			CHECK_STR((int)i, b.data, want);
			buf_free(&b);
			imap_search_free(&sr);
		} else {
			CHECK(err != NULL);
		}
		imap_args_free(&a);
	}
}

static void test_format_set(void)
{
	static const uint32_t v1[] = {5, 3, 4, 2, 1};
	static const uint32_t v2[] = {1, 2, 3, 7, 9, 10};
	struct buf b = BUF_INIT;
	imap_seqset_format(&b, v1, 5);
	CHECK_STR(0, b.data, "5,3:4,2,1");
	buf_reset(&b);
	imap_seqset_format(&b, v2, 6);
	CHECK_STR(1, b.data, "1:3,7,9:10");
	buf_free(&b);
}

/* keys from the ENVELOPE of the cache, ordered, ties by sequence number */
static void test_keys(void)
{
	static const char *const msgs[] = {
	    "From: \"Zed\" <zed@example.test>\r\nTo: group: a@b.c;\r\n"
	    "Subject: Re: [list] Hello\r\nDate: Wed, 01 Jan 2020 10:00:00 +0000\r\n\r\nx\r\n",
	    "From: amy@example.test\r\nTo: =?UTF-8?Q?=C3=89mile?= <e@x.test>\r\n"
	    "Subject: hello (fwd)\r\n\r\nno date\r\n",
	    "From: Bob <bob@example.test>\r\nCc: cc@example.test\r\n"
	    "Subject: =?UTF-8?B?QWJj?=\r\nDate: Thu, 02 Jan 2020 00:00:00 +0100\r\n\r\nx\r\n",
	};
	struct imap_search q;
	struct imap_sort_row rows[3];
	memset(&q, 0, sizeof q);
	q.n_sort = 1;
	for (size_t i = 0; i < 3; i++) {
		struct buf cache = BUF_INIT;
		struct mime_cache mc;
		struct imap_msg m;
		memset(&m, 0, sizeof m);
		m.seq = (uint32_t)i + 1;
		m.uid = (uint32_t)i + 10;
		m.internaldate = 1600000000;
		m.msg = msgs[i];
		m.len = strlen(msgs[i]);
		mime_cache_build(m.msg, m.len, &cache);
		CHECK(mime_cache_open(&mc, cache.data, cache.len));
		m.mc = &mc;
		/* every key at once */
		struct imap_search all;
		memset(&all, 0, sizeof all);
		for (uint8_t k = 0; k <= IMAP_SORT_DISPLAYTO; k++)
			all.sort[all.n_sort++].kind = k;
		imap_sort_row_fill(&all, &m, mime_cache_sort(&mc), &rows[i]);
		buf_free(&cache);
	}
	/* Date: 2 has none: INTERNALDATE (RFC 5256 2.2); 3 is 2019-01-01 23:00Z */
	CHECK(rows[0].date == 1577872800);
	CHECK(rows[1].date == 1600000000);
	CHECK(rows[2].date == 1577919600);
	/* base subjects: "hello", "hello", "abc" */
	CHECK(strcmp(rows[0].str[SORTS_SUBJECT], rows[1].str[SORTS_SUBJECT]) == 0);
	CHECK(strcmp(rows[2].str[SORTS_SUBJECT], rows[0].str[SORTS_SUBJECT]) < 0);
	/* FROM: the local part; TO of a group: the group's name; missing: "" */
	CHECK(strcmp(rows[1].str[SORTS_FROM], rows[2].str[SORTS_FROM]) < 0);
	CHECK(strcmp(rows[2].str[SORTS_FROM], rows[0].str[SORTS_FROM]) < 0);
	CHECK(strcmp(rows[2].str[SORTS_TO], "") == 0);
	CHECK(strcmp(rows[0].str[SORTS_CC], "") == 0);
	/* DISPLAYFROM: the name, else the addr-spec; DISPLAYTO decoded */
	CHECK(strcmp(rows[1].str[SORTS_DFROM], rows[2].str[SORTS_DFROM]) < 0); /* amy@ < Bob */
	CHECK(strcmp(rows[2].str[SORTS_DFROM], rows[0].str[SORTS_DFROM]) < 0); /* Bob < Zed */
	CHECK(strcmp(rows[1].str[SORTS_DTO], rows[0].str[SORTS_DTO]) < 0); /* Émile < group */

	q.sort[0].kind = IMAP_SORT_SUBJECT;
	q.sort[0].reverse = true;
	imap_sort_rows(&q, rows, 3);
	/* REVERSE SUBJECT: hello (1), hello (2) tie kept in sequence order, abc */
	CHECK(rows[0].seq == 1 && rows[1].seq == 2 && rows[2].seq == 3);
	q.sort[0].kind = IMAP_SORT_DATE;
	q.sort[0].reverse = false;
	imap_sort_rows(&q, rows, 3);
	CHECK(rows[0].seq == 1 && rows[1].seq == 3 && rows[2].seq == 2);
	for (size_t i = 0; i < 3; i++)
		imap_sort_row_free(&rows[i]);
}

/* imap_sort_rows on thousands of rows with many ties (a few distinct keys,
 * sequence numbers shuffled): the result is a permutation of the rows, in
 * the order a plain comparison of the criteria gives (REVERSE per
 * criterion, ties by sequence number), each row whole (its strings with
 * it). Covers the in-place permutation after the sort of the compact keys. */
static const struct imap_search *ref_q;

static int ref_cmp(const void *a, const void *b)
{
	const struct imap_sort_row *x = a, *y = b;
	for (size_t i = 0; i < ref_q->n_sort; i++) {
		int c;
		if (ref_q->sort[i].kind == IMAP_SORT_DATE)
			c = x->date < y->date ? -1 : x->date > y->date;
		else if (ref_q->sort[i].kind == IMAP_SORT_SIZE)
			c = x->size < y->size ? -1 : x->size > y->size;
		else
			c = strcmp(x->str[SORTS_SUBJECT], y->str[SORTS_SUBJECT]);
		if (c != 0)
			return ref_q->sort[i].reverse ? -c : c;
	}
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void test_many_rows(void)
{
	enum { N = 5000 };
	static const char *const subj[] = {"", "a", "ab", "abcdefgh", "abcdefghi", "abcdefghj", "b"};
	static const struct {
		uint8_t kind[3];
		bool rev[3];
		size_t n;
	} lists[] = {
	    {{IMAP_SORT_SUBJECT}, {false}, 1},
	    {{IMAP_SORT_SUBJECT, IMAP_SORT_DATE}, {true, false}, 2},
	    {{IMAP_SORT_DATE}, {false}, 1},
	    {{IMAP_SORT_SIZE, IMAP_SORT_SUBJECT}, {true, true}, 2},
	    {{IMAP_SORT_DATE, IMAP_SORT_SIZE, IMAP_SORT_SUBJECT}, {false, true, false}, 3},
	};
	struct imap_sort_row *rows = xcalloc(N, sizeof *rows);
	struct imap_sort_row *want = xcalloc(N, sizeof *want);
	uint32_t *seqs = xmalloc(N * sizeof *seqs);
	unsigned seed = 12345;
	for (size_t i = 0; i < N; i++)
		seqs[i] = (uint32_t)i + 1;
	for (size_t i = N - 1; i > 0; i--) {
		seed = seed * 1103515245u + 12345u;
		size_t k = (seed >> 8) % (i + 1);
		uint32_t t = seqs[i];
		seqs[i] = seqs[k];
		seqs[k] = t;
	}
	for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
		struct imap_search q;
		memset(&q, 0, sizeof q);
		q.n_sort = lists[l].n;
		for (size_t i = 0; i < q.n_sort; i++) {
			q.sort[i].kind = lists[l].kind[i];
			q.sort[i].reverse = lists[l].rev[i];
		}
		for (size_t i = 0; i < N; i++) {
			struct imap_msg m;
			struct mime_sortinfo si;
			memset(&m, 0, sizeof m);
			memset(&si, 0, sizeof si);
			seed = seed * 1103515245u + 12345u;
			m.seq = seqs[i];
			m.uid = seqs[i] + 100;
			m.size = (seed >> 4) % 5;
			si.flags = MSI_DATE;
			si.date = 1600000000 + (int64_t)((seed >> 12) % 7) * 86400;
			const char *sj = subj[(seed >> 20) % 7];
			for (int k = 0; k < MIME_SORT_N; k++)
				si.key[k] = "";
			si.key[MIME_SORT_SUBJECT] = sj;
			si.len[MIME_SORT_SUBJECT] = (uint32_t)strlen(sj);
			imap_sort_row_fill(&q, &m, &si, &rows[i]);
			want[i] = rows[i];
		}
		size_t with_subject = 0;
		for (size_t i = 0; i < N; i++)
			with_subject += rows[i].str[SORTS_SUBJECT] != NULL &&
					rows[i].str[SORTS_SUBJECT][0] != '\0';
		if (lists[l].kind[0] == IMAP_SORT_SUBJECT || lists[l].kind[1] == IMAP_SORT_SUBJECT ||
		    lists[l].kind[2] == IMAP_SORT_SUBJECT)
			CHECK(with_subject > N / 2); /* the keys are there to sort by */
		ref_q = &q;
		qsort(want, N, sizeof *want, ref_cmp);
		imap_sort_rows(&q, rows, N);
		size_t bad = 0;
		for (size_t i = 0; i < N; i++)
			if (rows[i].seq != want[i].seq || rows[i].size != want[i].size ||
			    rows[i].date != want[i].date || rows[i].keys != want[i].keys)
				bad++;
		CHECK_INT((int)l, (int)bad, 0);
		for (size_t i = 0; i < N; i++)
			imap_sort_row_free(&rows[i]);
	}
	free(rows);
	free(want);
	free(seqs);
}

static uint32_t *uids_of(size_t n, uint32_t first)
{
	uint32_t *v = xmalloc((n + 1) * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = first + (uint32_t)i;
	return v;
}

/* The kept orders (sortorder.c): keyed by account, UIDVALIDITY and
 * criteria; valid up to their highest UID; the least recently used out;
 * a reference outlives eviction; thousands of entries found by hash. */
static void test_orders(void)
{
	struct imap_search q, r;
	memset(&q, 0, sizeof q);
	memset(&r, 0, sizeof r);
	q.n_sort = 1;
	q.sort[0].kind = IMAP_SORT_SUBJECT;
	r.n_sort = 1;
	r.sort[0].kind = IMAP_SORT_SUBJECT;
	r.sort[0].reverse = true;
	struct imap_sort_orders *c = imap_sort_orders_new(64 * 1024 * 1024);
	struct imap_sort_order *o;

	imap_sort_order_put(c, "alice@x", 7, &q, 10, uids_of(10, 1), 10);
	CHECK(imap_sort_order_get(c, "bob@x", 7, &q, 10) == NULL); /* one UIDVALIDITY, two accounts */
	CHECK(imap_sort_order_get(c, "alice@x", 8, &q, 10) == NULL);
	CHECK(imap_sort_order_get(c, "alice@x", 7, &r, 10) == NULL);
	o = imap_sort_order_get(c, "ALICE@x", 7, &q, 9);
	CHECK(o != NULL && o->n == 10 && o->refs == 2);
	/* a newer view: dropped from the cache, the reference still reads it */
	CHECK(imap_sort_order_get(c, "alice@x", 7, &q, 11) == NULL);
	CHECK(o->refs == 1 && !o->cached && o->uids[9] == 10);
	imap_sort_order_forget(c, o); /* not in the cache: nothing */
	imap_sort_order_unref(&o);
	CHECK(o == NULL && imap_sort_order_get(c, "alice@x", 7, &q, 1) == NULL);

	/* many entries, every one found; an older put does not replace */
	char user[32];
	for (uint32_t i = 0; i < 5000; i++) {
		snprintf(user, sizeof user, "u%u@x", i % 50);
		imap_sort_order_put(c, user, 100 + i / 50, i % 2 ? &q : &r, 20, uids_of(2, i), 2);
	}
	imap_sort_order_put(c, "u3@x", 100, &r, 19, uids_of(1, 0), 1);
	for (uint32_t i = 0; i < 5000; i++) {
		snprintf(user, sizeof user, "u%u@x", i % 50);
		o = imap_sort_order_get(c, user, 100 + i / 50, i % 2 ? &q : &r, 20);
		CHECK(o != NULL && o->uids[0] == i);
		imap_sort_order_forget(c, o); /* out, freed with the reference */
		imap_sort_order_unref(&o);
	}
	imap_sort_orders_free(&c);

	/* room for two orders of 100: the least recently used goes */
	c = imap_sort_orders_new(2 * (sizeof(struct imap_sort_order) + 16 + 400));
	imap_sort_order_put(c, "a@x", 1, &q, 100, uids_of(100, 1), 100);
	imap_sort_order_put(c, "a@x", 2, &q, 100, uids_of(100, 1), 100);
	o = imap_sort_order_get(c, "a@x", 1, &q, 100); /* 1 used last */
	CHECK(o != NULL);
	imap_sort_order_put(c, "a@x", 3, &q, 100, uids_of(100, 1), 100);
	CHECK(imap_sort_order_get(c, "a@x", 2, &q, 100) == NULL);
	struct imap_sort_order *p = imap_sort_order_get(c, "a@x", 3, &q, 100);
	CHECK(p != NULL);
	imap_sort_order_unref(&p);
	imap_sort_order_put(c, "a@x", 4, &q, 100, uids_of(100, 1), 100);
	imap_sort_order_put(c, "a@x", 5, &q, 100, uids_of(100, 1), 100);
	CHECK(!o->cached && o->refs == 1 && o->uids[99] == 100); /* evicted, still read */
	imap_sort_order_unref(&o);
	CHECK(!imap_sort_orders_fit(c, 1000));
	imap_sort_order_put(c, "a@x", 6, &q, 1000, uids_of(1000, 1), 1000); /* never kept */
	CHECK(imap_sort_order_get(c, "a@x", 6, &q, 1) == NULL);
	imap_sort_orders_free(&c);
	c = imap_sort_orders_new(0);
	imap_sort_order_put(c, "a@x", 1, &q, 100, uids_of(100, 1), 100);
	CHECK(imap_sort_order_get(c, "a@x", 1, &q, 1) == NULL);
	imap_sort_orders_free(&c);
}

int main(void)
{
	test_run("parse", test_parse);
	test_run("format_set", test_format_set);
	test_run("keys", test_keys);
	test_run("orders", test_orders);
	test_run("many rows", test_many_rows);
	return test_done("test_imap_sort");
}
