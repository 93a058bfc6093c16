/* The reasons behind a filter verdict, and the X-Spam-* fields that carry
 * them (reasons.h). */
#include "filter/reasons.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

#define REASON_TEXT_MAX 200

static void reasons_push(struct filter_reasons *r, const char *rule, double score, char *text)
{
	if (r->n == r->cap) {
		r->cap = r->cap != 0 ? r->cap * 2 : 8;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n].rule = xstrdup(rule);
	r->v[r->n].score = score;
	r->v[r->n].text = text;
	r->n++;
	r->score += score;
}

void filter_reasons_add(struct filter_reasons *r, const char *rule, double score,
			const char *fmt, ...)
{
	char text[REASON_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	/* one header line each: no control characters may reach the field */
	for (char *c = text; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	reasons_push(r, rule, score, xstrdup(text));
}

void filter_reasons_merge(struct filter_reasons *r, const struct filter_reasons *from)
{
	for (size_t i = 0; i < from->n; i++)
		reasons_push(r, from->v[i].rule, from->v[i].score, xstrdup(from->v[i].text));
}

void filter_reasons_free(struct filter_reasons *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].rule);
		free(r->v[i].text);
	}
	free(r->v);
	*r = (struct filter_reasons)FILTER_REASONS_INIT;
}

double filter_score_parse(const char *s)
{
	return strtod(s, NULL);
}

static int by_weight(const void *a, const void *b)
{
	const struct filter_reason *x = *(const struct filter_reason *const *)a;
	const struct filter_reason *y = *(const struct filter_reason *const *)b;
	double dx = x->score < 0 ? -x->score : x->score;
	double dy = y->score < 0 ? -y->score : y->score;
	if (dx != dy)
		return dx > dy ? -1 : 1;
	return strcmp(x->rule, y->rule);
}

/* Appends text to a header field, folding (RFC 5322 2.2.3) before a word
 * that would take the line past 78 columns; *col is the current column. */
static void fold_append(struct buf *out, size_t *col, const char *word)
{
	size_t n = strlen(word);
	if (*col + 1 + n > 78 && *col > 1) {
		buf_append(out, "\r\n\t", 3);
		*col = 8;
	} else {
		buf_append(out, " ", 1);
		(*col)++;
	}
	buf_append(out, word, n);
	*col += n;
}

void filter_reasons_header(const struct filter_reasons *r, bool spam, double required,
			   struct buf *out)
{
	buf_printf(out, "X-Spam-Status: %s, score=%.1f required=%.1f\r\n", spam ? "Yes" : "No",
		   r->score, required);
	buf_printf(out, "X-Spam-Report: score=%.1f required=%.1f", r->score, required);
	const struct filter_reason **order = xmalloc((r->n + 1) * sizeof(*order));
	for (size_t i = 0; i < r->n; i++)
		order[i] = &r->v[i];
	qsort(order, r->n, sizeof(*order), by_weight);
	for (size_t i = 0; i < r->n; i++) {
		/* one reason per line: "\t* 3.5 RULE words ..." */
		char head[96];
		snprintf(head, sizeof head, "\r\n\t* %.1f %s", order[i]->score, order[i]->rule);
		buf_append(out, head, strlen(head));
		size_t col = strlen(head) - 2 + 7; /* the tab counts as 8 columns */
		char *words = xstrdup(order[i]->text);
		char *save = NULL;
		for (char *w = strtok_r(words, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
			fold_append(out, &col, w);
		free(words);
	}
	buf_append(out, "\r\n", 2);
	free(order);
}

/* Unfolds a field value: CRLF/LF followed by WSP becomes the WSP. */
static char *unfold(const char *v, size_t len)
{
	char *o = xmalloc(len + 1);
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\r' || v[i] == '\n')
			continue;
		o[k++] = v[i] == '\t' ? ' ' : v[i];
	}
	o[k] = '\0';
	return o;
}

int filter_reasons_parse(const char *value, size_t len, struct filter_reasons *r)
{
	char *s = unfold(value, len);
	char *p = s;
	while (*p == ' ')
		p++;
	if (strncmp(p, "score=", 6) != 0) {
		free(s);
		return -1;
	}
	/* each reason begins with " * " */
	char *item = strstr(p, " * ");
	while (item != NULL) {
		char *next = strstr(item + 3, " * ");
		if (next != NULL)
			*next = '\0';
		char *q = item + 3;
		char *end;
		double score = strtod(q, &end);
		if (end == q) {
			item = next;
			continue;
		}
		while (*end == ' ')
			end++;
		char *rule = end;
		char *sp = strchr(rule, ' ');
		const char *text = "";
		if (sp != NULL) {
			*sp = '\0';
			text = sp + 1;
			while (*text == ' ')
				text++;
		}
		/* words re-joined by single spaces (folding added line breaks) */
		char *t = xstrdup(text);
		size_t tl = strlen(t);
		while (tl > 0 && t[tl - 1] == ' ')
			t[--tl] = '\0';
		reasons_push(r, rule, score, t);
		item = next;
	}
	free(s);
	return 0;
}
