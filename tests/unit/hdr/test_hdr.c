/* src/policy/hdr.c: fields and body are the same however the input is cut. */
#include <stdlib.h>

#include "core/buf.h"
#include "policy/hdr.h"
#include "../test.h"

struct got {
	struct buf out; /* "[name_len|flags]raw" per field, then "BODY:" + body */
	bool body_seen;
	int stop_after; /* 0: never */
	int n;
};

static bool on_field(void *arg, const struct hdr_field *f)
{
	struct got *g = arg;
	buf_printf(&g->out, "[%zu%s%s]", f->name_len, f->truncated ? "T" : "",
		   f->over_limit ? "O" : "");
	buf_append(&g->out, f->raw, f->len);
	return g->stop_after == 0 || ++g->n < g->stop_after;
}

static void on_body(void *arg, const char *p, size_t n)
{
	struct got *g = arg;
	if (!g->body_seen)
		buf_appends(&g->out, "BODY:");
	g->body_seen = true;
	buf_append(&g->out, p, n);
}

/* Runs msg through a reader fed in pieces of step octets (0: whole). */
static char *run(const char *msg, size_t step, size_t max_field, size_t max_fields, int stop)
{
	struct got g = {.stop_after = stop};
	struct hdr_reader r;
	size_t len = strlen(msg);

	buf_init(&g.out);
	hdr_reader_init(&r, max_field, max_fields, on_field, on_body, &g);
	if (step == 0)
		step = len ? len : 1;
	for (size_t i = 0; i < len; i += step)
		hdr_reader_feed(&r, msg + i, i + step > len ? len - i : step);
	hdr_reader_end(&r);
	hdr_reader_free(&r);
	buf_appendc(&g.out, '\0');
	return g.out.data;
}

static const struct {
	const char *msg;
	size_t max_field, max_fields;
	int stop;
	const char *want;
} cases[] = {
	{"From: a\r\nTo: b\r\n\r\nbody\r\n", 1000, 100, 0,
	 "[4]From: a\r\n[2]To: b\r\nBODY:body\r\n"},
	/* folding stays in the field, byte-exact */
	{"Subject: x\r\n y\r\n\tz\r\nA : 1\r\n\r\n", 1000, 100, 0,
	 "[7]Subject: x\r\n y\r\n\tz\r\n[1]A : 1\r\n"},
	/* no empty line: all header */
	{"From: a\r\nTo: b\r\n", 1000, 100, 0, "[4]From: a\r\n[2]To: b\r\n"},
	/* the empty line at once: all body */
	{"\r\nbody", 1000, 100, 0, "BODY:body"},
	/* malformed lines: no colon, a continuation first */
	{" lead\r\nnocolon\r\nX: y\r\n\r\n", 1000, 100, 0,
	 "[0] lead\r\n[0]nocolon\r\n[1]X: y\r\n"},
	/* a field over max_field is cut and flagged */
	{"Subject: 0123456789\r\n abc\r\nX: 1\r\n\r\nb", 12, 100, 0,
	 "[7T]Subject: 012[1]X: 1\r\nBODY:b"},
	/* fields past max_fields are flagged */
	{"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", 100, 2, 0, "[1]A: 1\r\n[1]B: 2\r\n[1O]C: 3\r\n"},
	/* the callback stops the reader: the body still comes */
	{"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 100, 100, 1, "[1]A: 1\r\nBODY:body"},
	/* a lone CR at a line's start is not the end of the header */
	{"A: 1\r\n\rX\r\n\r\nb", 100, 100, 0, "[1]A: 1\r\n[0]\rX\r\nBODY:b"},
	/* a bare LF empty line ends the header (lenient) */
	{"A: 1\n\nb", 100, 100, 0, "[1]A: 1\nBODY:b"},
	/* empty message */
	{"", 100, 100, 0, ""},
};

static void test_cases(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t step = 0; step <= 7; step++) {
			char *got = run(cases[i].msg, step, cases[i].max_field, cases[i].max_fields,
					cases[i].stop);
			CHECK_STR((int)(i * 10 + step), got, cases[i].want);
			free(got);
		}
	}
}

static bool check_value(void *arg, const struct hdr_field *f)
{
	size_t n;
	const char *v = hdr_value(f, &n);
	int *ok = arg;
	if (hdr_is(f, "subject") && n == 8 && memcmp(v, " x\r\n y\r\n", 8) == 0)
		(*ok)++;
	if (hdr_is(f, "SUBJ"))
		(*ok) += 100;
	return true;
}

static void test_value(void)
{
	struct hdr_reader r;
	int ok = 0;
	const char *m = "Subject: x\r\n y\r\n\r\n";
	hdr_reader_init(&r, 100, 100, check_value, NULL, &ok);
	hdr_reader_feed(&r, m, strlen(m));
	hdr_reader_end(&r);
	hdr_reader_free(&r);
	CHECK_INT(0, ok, 1);
}

int main(void)
{
	test_run("cases", test_cases);
	test_run("value", test_value);
	return test_done("test_hdr");
}
