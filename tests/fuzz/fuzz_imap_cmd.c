/* libFuzzer harness for the IMAP command reader and parsers
 * (src/imap/parse*.c).
 * Build: make fuzz
 * Input: byte 0 = mode (bits 0-1: literal handling: accept, refuse every
 * {N}, events + inline, events + stream; bit 2: small limits; bit 3: with
 * events, refuse every literal at its event); bytes 1-2 =
 * seed of the split points; the rest is the client's byte stream.
 * Checks: the stream fed in one piece and in random pieces gives the same
 * transcript of events and parsed commands; r->cmd never exceeds the
 * command limit; every parsed tree is well formed; the typed parsers
 * (sequence sets, FETCH, SEARCH, flags, dates, astrings) run on every
 * command and their results keep their invariants; output quoting of every
 * string parses back to the same string. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tree(const struct imap_arg *a, unsigned depth)
{
	x_assert(depth <= IMAP_MAX_DEPTH);
	for (; a->type != IMAP_ARG_EOL; a++) {
		switch (a->type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
			x_assert(a->len > 0 && strlen(a->str) == a->len);
			break;
		case IMAP_ARG_QUOTED:
			x_assert(strlen(a->str) == a->len);
			break;
		case IMAP_ARG_LITERAL:
			x_assert(a->str != NULL && (a->external || a->str[a->len] == '\0'));
			break;
		case IMAP_ARG_LIST:
			check_tree(a->list, depth + 1);
			break;
		default:
			x_assert(0);
		}
	}
}

static void render(const struct imap_arg *a, struct buf *out)
{
	for (; a->type != IMAP_ARG_EOL; a++) {
		buf_printf(out, " %d:%zu:", (int)a->type, a->len);
		if (a->type == IMAP_ARG_LIST) {
			buf_appendc(out, '(');
			render(a->list, out);
			buf_appendc(out, ')');
		} else if (!a->external) {
			buf_append(out, a->str, a->len);
		}
	}
}

/* Quoting a string and parsing it back as an argument gives it again. */
static void check_quoting(const char *s, size_t n)
{
	struct buf line = BUF_INIT, in = BUF_INIT;
	struct imap_reader r;
	buf_appends(&line, "t X ");
	imap_append_astring(&line, s, n);
	buf_appends(&line, "\r\n");
	imap_reader_init(&r);
	buf_append(&in, line.data, line.len);
	enum imap_read_result res;
	while ((res = imap_reader_feed(&r, &in)) == IMAP_READ_CONTINUE)
		;
	x_assert(res == IMAP_READ_COMMAND);
	struct imap_args a;
	const char *err;
	x_assert(imap_parse_command(&r, &a, &err) == 0);
	const char *v;
	size_t vn;
	x_assert(imap_arg_astring(&a.args[0], &v, &vn) || a.args[0].type == IMAP_ARG_LITERAL);
	x_assert(a.args[0].len == n && memcmp(a.args[0].str, s, n) == 0);
	x_assert(a.args[1].type == IMAP_ARG_EOL);
	imap_args_free(&a);
	imap_reader_free(&r);
	buf_free(&in);
	buf_free(&line);
}

static void check_seqset(const char *s, size_t n)
{
	struct imap_seqset set;
	if (imap_seqset_parse(s, n, 16, &set) < 0)
		return;
	for (size_t i = 0; i < set.n; i++) {
		x_assert(set.v[i].lo >= 1 && set.v[i].lo <= set.v[i].hi);
		if (i > 0)
			x_assert(set.v[i - 1].hi != IMAP_STAR && set.v[i - 1].hi + 1 < set.v[i].lo);
	}
	/* "*" becomes 10; numbers above stay (the caller decides) */
	bool star = set.n > 0 && set.v[set.n - 1].hi == IMAP_STAR;
	imap_seqset_resolve(&set, 10);
	for (size_t i = 0; i < set.n; i++) {
		x_assert(set.v[i].lo <= set.v[i].hi && set.v[i].hi != IMAP_STAR);
		if (i > 0)
			x_assert(set.v[i - 1].hi + 1 < set.v[i].lo);
	}
	if (star)
		x_assert(imap_seqset_contains(&set, 10));
	uint32_t v[100];
	size_t k = 0;
	for (uint32_t x = 1; x <= 100; x++)
		if (imap_seqset_contains(&set, x))
			v[k++] = x;
	struct buf b = BUF_INIT;
	imap_seqset_format(&b, v, k);
	if (k > 0) {
		struct imap_seqset again;
		x_assert(imap_seqset_parse(b.data, b.len, 0, &again) == 0);
		for (uint32_t x = 1; x <= 100; x++)
			x_assert(imap_seqset_contains(&again, x) == imap_seqset_contains(&set, x));
		imap_seqset_free(&again);
	}
	buf_free(&b);
	imap_seqset_free(&set);
}

static void check_typed(const struct imap_args *a, struct buf *out)
{
	const struct imap_arg *args = a->args;
	for (size_t i = 0; args[i].type != IMAP_ARG_EOL; i++) {
		const char *s;
		size_t n;
		if (args[i].type == IMAP_ARG_ATOM)
			check_seqset(args[i].str, args[i].len);
		if (imap_arg_string(&args[i], &s, &n) || imap_arg_astring(&args[i], &s, &n)) {
			check_quoting(s, n);
			int32_t day;
			time_t t;
			int tz;
			if (imap_parse_date(s, n, &day))
				buf_printf(out, " date=%d", (int)day);
			if (imap_parse_datetime(s, n, &t, &tz)) {
				struct buf d = BUF_INIT;
				imap_format_datetime(&d, t, tz);
				time_t t2;
				int tz2;
				x_assert(imap_parse_datetime(d.data, d.len, &t2, &tz2) && t2 == t &&
				         tz2 == tz);
				buf_free(&d);
			}
		}
		struct imap_fetch f;
		const char *err;
		if (imap_fetch_parse(&args[i], &f, &err) == 0) {
			for (size_t k = 0; k < f.n; k++) {
				x_assert(f.v[k].label != NULL && f.v[k].depth <= 16);
				buf_printf(out, " F%s", f.v[k].label);
			}
			imap_fetch_free(&f);
		} else {
			x_assert(err != NULL);
		}
		struct imap_search sr;
		bool bc;
		if (imap_search_parse(&args[i], 50, &sr, &bc, &err) == 0)
			imap_search_free(&sr);
		else
			x_assert(err != NULL);
		unsigned sys;
		struct buf kw = BUF_INIT;
		if (imap_parse_flag_args(&args[i], &sys, &kw) == 0)
			x_assert((sys & ~31u) == 0);
		buf_free(&kw);
	}
}

struct rng {
	uint32_t s;
};

static uint32_t next(struct rng *g)
{
	g->s = g->s * 1103515245u + 12345u;
	return g->s >> 16;
}

static void run(const uint8_t *in, size_t n, unsigned mode, struct rng *g, bool split,
                struct buf *out)
{
	struct imap_reader r;
	struct buf ib = BUF_INIT;
	size_t pos = 0;
	int lit = mode & 3;

	imap_reader_init(&r);
	if (mode & 4) {
		r.max_line = 40;
		r.max_command = 100;
		r.max_literal = 30;
		r.max_nonsync = 10;
	}
	r.want_literal_events = lit >= 2;
	for (;;) {
		if (pos < n) {
			size_t k = split ? 1 + next(g) % 16 : n - pos;
			if (k > n - pos)
				k = n - pos;
			buf_append(&ib, in + pos, k);
			pos += k;
		}
		enum imap_read_result res;
		while ((res = imap_reader_feed(&r, &ib)) != IMAP_READ_MORE) {
			x_assert(r.cmd.len <= r.max_command);
			if (res == IMAP_READ_COMMAND) {
				struct imap_args a;
				const char *err;
				if (imap_parse_command(&r, &a, &err) == 0) {
					x_assert(a.tag[0] != '\0' && a.name[0] != '\0');
					check_tree(a.args, 0);
					buf_printf(out, "C %s %s", a.tag, a.name);
					render(a.args, out);
					check_typed(&a, out);
				} else {
					x_assert(err != NULL);
					buf_printf(out, "E %s %s", a.tag ? a.tag : "-", err);
				}
				buf_appendc(out, '\n');
				imap_args_free(&a);
				imap_reader_next(&r);
			} else if (res == IMAP_READ_CONTINUE) {
				buf_appends(out, "+\n");
				if (lit == 1)
					imap_reader_refuse(&r);
			} else if (res == IMAP_READ_LITERAL) {
				buf_printf(out, "L %" PRIu64 " %d\n", r.lit_len, r.lit_sync);
				if (mode & 8) {
					imap_reader_refuse(&r);
					continue;
				}
				if (lit == 2 || r.lit_len > 1000) {
					imap_reader_inline(&r);
					continue;
				}
				uint64_t left = r.lit_len;
				while (left > 0) {
					if (ib.len == 0) {
						if (pos == n)
							goto end;
						buf_append(&ib, in + pos, 1);
						pos++;
					}
					size_t k = ib.len < left ? ib.len : (size_t)left;
					buf_consume(&ib, k);
					left -= k;
				}
				imap_reader_external_done(&r);
			} else if (res == IMAP_READ_BAD) {
				size_t tl;
				const char *tag = imap_reader_tag(&r, &tl);
				x_assert(r.error != NULL);
				buf_printf(out, "B %.*s %s\n", tag ? (int)tl : 1, tag ? tag : "-",
				           r.error);
			} else {
				x_assert(res == IMAP_READ_FATAL && r.error != NULL);
				buf_printf(out, "F %s\n", r.error);
				goto end;
			}
		}
		if (pos == n)
			break;
	}
end:
	imap_reader_free(&r);
	buf_free(&ib);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3 || size > 4096)
		return 0;
	struct rng g = {(uint32_t)data[1] << 8 | data[2]};
	struct buf a = BUF_INIT, b = BUF_INIT;
	run(data + 3, size - 3, data[0], &g, false, &a);
	run(data + 3, size - 3, data[0], &g, true, &b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len) != 0)) {
		fprintf(stderr, "whole:\n%.*s\nsplit:\n%.*s\n", (int)a.len, a.data, (int)b.len,
		        b.data);
		x_assert(!"same transcript whole and split");
	}
	buf_free(&a);
	buf_free(&b);
	return 0;
}
