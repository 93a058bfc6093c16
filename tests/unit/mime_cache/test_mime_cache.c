/* Unit tests: the MIME cache (src/mime/mime.c) against Dovecot's answers in
 * tests/data/mime/NAME.expected, sections, truncated and corrupt caches, every
 * prefix of the corpus; decoding, encoded words, charsets, dates, search. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "mime/mime.h"
#include "../test.h"

#define CORPUS "tests/data/mime"

static char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b = BUF_INIT;
	char tmp[65536];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	*len_r = b.len;
	if (b.data == NULL)
		buf_reserve(&b, 1);
	return b.data;
}

/* the escapes of make-expected: \r \n \\ \" \xHH */
static void unescape(const char *s, size_t n, struct buf *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			buf_appendc(out, s[i]);
			continue;
		}
		i++;
		switch (s[i]) {
		case 'r':
			buf_appendc(out, '\r');
			break;
		case 'n':
			buf_appendc(out, '\n');
			break;
		case 'x': {
			char hex[3] = {s[i + 1], s[i + 2], 0};
			buf_appendc(out, (char)strtol(hex, NULL, 16));
			i += 2;
			break;
		}
		default:
			buf_appendc(out, s[i]);
		}
	}
}

static void to_crlf(const char *p, size_t n, struct buf *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			buf_appendc(out, '\r');
		buf_appendc(out, p[i]);
	}
}

static void show_diff(const char *what, const char *name, const char *got, size_t gn,
		      const char *want, size_t wn)
{
	size_t i = 0;

	while (i < gn && i < wn && got[i] == want[i])
		i++;
	printf("  %s %s differs at byte %zu:\n    got  %.*s\n    want %.*s\n", name, what, i,
	       (int)(gn - i < 200 ? gn - i : 200), got + i, (int)(wn - i < 200 ? wn - i : 200),
	       want + i);
}

/* "2.1.MIME" -> path {2,1}, MIME */
static size_t parse_section(const char *s, uint32_t *path, enum mime_section *what)
{
	size_t depth = 0;

	*what = MIME_SECT_BODY;
	while (*s) {
		if (*s >= '0' && *s <= '9') {
			path[depth++] = (uint32_t)strtoul(s, (char **)&s, 10);
		} else {
			if (strcmp(s, "MIME") == 0)
				*what = MIME_SECT_MIME;
			else if (strcmp(s, "HEADER") == 0)
				*what = MIME_SECT_HEADER;
			else if (strcmp(s, "TEXT") == 0)
				*what = MIME_SECT_TEXT;
			break;
		}
		if (*s == '.')
			s++;
	}
	return depth;
}

static int corpus_checked;

/* "SECTION 2.MIME ..." -> "SECTION 2.MIME", "BODY (..." -> "BODY" (static) */
static const char *item_key(const char *l)
{
	static char keys[64][80];
	static int next;
	char *k = keys[next++ % 64];
	const char *sp = strchr(l, ' ');

	if (sp && strncmp(l, "SECTION ", 8) == 0)
		sp = strchr(sp + 1, ' ');
	snprintf(k, 80, "%.*s", sp ? (int)(sp - l) : (int)strlen(l), l);
	return k;
}

static void check_corpus_file(const char *name)
{
	char path[512];
	size_t mlen, elen;
	char *msg, *exp, *line, *save = NULL;
	struct buf cache = BUF_INIT, want = BUF_INIT, mine = BUF_INIT;
	struct mime_cache mc;
	char *ours[32];
	size_t n_ours = 0;
	static const char *const items[3] = {"ENVELOPE ", "BODY ", "BODYSTRUCTURE "};
	int i;

	snprintf(path, sizeof(path), CORPUS "/%s.eml", name);
	msg = read_file(path, &mlen);
	snprintf(path, sizeof(path), CORPUS "/%s.expected", name);
	exp = read_file(path, &elen);
	if (msg == NULL || exp == NULL) {
		printf("  %s: missing .eml or .expected\n", name);
		test_cur_failed = 1;
		free(msg);
		free(exp);
		return;
	}
	mime_cache_build(msg, mlen, &cache);
	if (!mime_cache_open(&mc, cache.data, cache.len)) {
		printf("  %s: cache does not open\n", name);
		test_cur_failed = 1;
		goto out;
	}
	/* OURS lines (a deliberate difference, see NAME.diff) replace Dovecot's
	 * line for the same item */
	for (line = strtok_r(exp, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "OURS ", 5) == 0 && n_ours < 32)
			ours[n_ours++] = xstrdup(item_key(line + 5));
	free(exp);
	exp = read_file(path, &elen);
	save = NULL;
	for (line = strtok_r(exp, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *p;
		size_t n, k;
		bool ours_line = strncmp(line, "OURS ", 5) == 0, skip = false;
		const char *l = ours_line ? line + 5 : line;

		if (*line == '#')
			continue;
		for (k = 0; k < n_ours && !ours_line; k++)
			if (strcmp(ours[k], item_key(l)) == 0)
				skip = true;
		if (skip)
			continue;
		for (i = 0; i < 3; i++) {
			if (strncmp(l, items[i], strlen(items[i])) != 0)
				continue;
			if (i == 0)
				mime_cache_envelope(&mc, &p, &n);
			else if (i == 1)
				mime_cache_body(&mc, &p, &n);
			else
				mime_cache_bodystructure(&mc, &p, &n);
			buf_reset(&want);
			unescape(l + strlen(items[i]), strlen(l + strlen(items[i])), &want);
			if (n != want.len || memcmp(p, want.data, n) != 0) {
				show_diff(items[i], name, p, n, want.data, want.len);
				test_cur_failed = 1;
			}
		}
		if (strncmp(l, "SECTION ", 8) == 0) {
			char sect[64];
			uint32_t spath[16];
			enum mime_section what;
			enum mime_encoding enc;
			uint64_t off, len;
			const char *sp = l + 8, *q = strchr(sp, ' ');
			size_t depth;
			int rc;

			if (q == NULL || (size_t)(q - sp) >= sizeof(sect))
				continue;
			memcpy(sect, sp, (size_t)(q - sp));
			sect[q - sp] = '\0';
			buf_reset(&want);
			if (q[1] == '"')
				unescape(q + 2, strlen(q + 2) - 1, &want);
			depth = parse_section(sect, spath, &what);
			rc = mime_cache_section(&mc, spath, depth, what, &off, &len, &enc);
			buf_reset(&mine);
			if (rc == 0) {
				if (off > mlen || len > mlen - off) {
					printf("  %s: section %s outside the message\n", name, sect);
					test_cur_failed = 1;
					continue;
				}
				/* Dovecot answers with CRLF line ends (lf-only.eml) */
				to_crlf(msg + off, (size_t)len, &mine);
			}
			if (mine.len != want.len || memcmp(mine.data, want.data, mine.len) != 0) {
				show_diff(sect, name, mine.data ? mine.data : "", mine.len,
					  want.data ? want.data : "", want.len);
				test_cur_failed = 1;
			}
		}
	}
	corpus_checked++;
out:
	while (n_ours > 0)
		free(ours[--n_ours]);
	free(msg);
	free(exp);
	buf_free(&cache);
	buf_free(&want);
	buf_free(&mine);
}

static char **corpus_names(size_t *n_r)
{
	DIR *d = opendir(CORPUS);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	while (d && (de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (l > 4 && strcmp(de->d_name + l - 4, ".eml") == 0) {
			names = xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = xasprintf("%.*s", (int)(l - 4), de->d_name);
		}
	}
	if (d)
		closedir(d);
	*n_r = n;
	return names;
}

static void test_corpus(void)
{
	size_t n, i;
	char **names = corpus_names(&n);

	CHECK(n >= 15);
	for (i = 0; i < n; i++) {
		check_corpus_file(names[i]);
		free(names[i]);
	}
	free(names);
	CHECK_INT(0, corpus_checked, (int)n);
}

int main(void)
{
	test_run("corpus", test_corpus);
	return test_done("test_mime_cache");
}
