/* libFuzzer harness for SMTP command line parsing (src/smtp/parse.c): the
 * verb split, MAIL and RCPT arguments with their ESMTP parameters, BDAT and
 * xtext.
 * Build: make fuzz (or clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *        -Isrc tests/fuzz/fuzz_smtp_cmd.c src/smtp/parse.c src/mime/addr.c
 *        src/core/{xmalloc,buf,log}.c)
 * The first byte picks the verb buffer size and the RCPT utf8 flag; the rest
 * is the command line (CRLF removed, as the session hands it over). Beyond
 * "no crash", every accepted MAIL, RCPT and BDAT is printed back in canonical
 * form and must parse again to the same values; a refused one must leave its
 * result empty and give a 5xx reply. Buffers are allocated to their exact
 * size so that ASan sees any overrun. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "mime/addr.h"
#include "smtp/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool streq_null(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static void check_perr(const struct smtp_perr *err)
{
	x_assert(err->code >= 500 && err->code <= 559);
	x_assert(err->ecode != NULL && err->ecode[0] == '5');
	x_assert(err->text != NULL && err->text[0] != '\0');
}

static void fuzz_verb(const char *line, size_t verbsz)
{
	char *verb = xmalloc(verbsz);
	const char *args = NULL;

	if (smtp_parse_verb(line, verb, verbsz, &args) == 0) {
		size_t n = strlen(verb);

		x_assert(n > 0 && n < verbsz);
		for (size_t i = 0; i < n; i++)
			x_assert(verb[i] >= 'A' && verb[i] <= 'Z');
		x_assert(args >= line + n && args <= line + strlen(line));
		x_assert(args[0] != ' ');
	}
	free(verb);
}

static void fuzz_mail(const char *args)
{
	struct smtp_mail_args m, again;
	struct smtp_perr err;
	struct buf b = BUF_INIT;

	if (smtp_parse_mail(args, &m, &err) < 0) {
		check_perr(&err);
		x_assert(m.addr == NULL && m.ret == NULL && m.envid == NULL && m.auth == NULL);
		return;
	}
	x_assert(m.addr != NULL);
	x_assert(m.smtputf8 || !addr_has_8bit(m.addr));
	x_assert(m.ret == NULL || strcmp(m.ret, "FULL") == 0 || strcmp(m.ret, "HDRS") == 0);
	x_assert(m.envid == NULL || smtp_xtext_valid(m.envid, strlen(m.envid)));
	/* Canonical form: it must parse to the same values. */
	buf_printf(&b, "FROM:<%s>", m.addr);
	if (m.has_size)
		buf_printf(&b, " SIZE=%" PRIu64, m.size);
	if (m.body != SMTP_BODY_NONE)
		buf_appends(&b, m.body == SMTP_BODY_7BIT ? " BODY=7BIT" : " BODY=8BITMIME");
	if (m.smtputf8)
		buf_appends(&b, " SMTPUTF8");
	if (m.ret != NULL)
		buf_printf(&b, " RET=%s", m.ret);
	if (m.envid != NULL)
		buf_printf(&b, " ENVID=%s", m.envid);
	if (m.auth != NULL)
		buf_printf(&b, " AUTH=%s", m.auth);
	x_assert(smtp_parse_mail(b.data, &again, &err) == 0);
	x_assert(strcmp(again.addr, m.addr) == 0);
	x_assert(again.has_size == m.has_size && again.size == m.size);
	x_assert(again.body == m.body && again.smtputf8 == m.smtputf8);
	x_assert(streq_null(again.ret, m.ret) && streq_null(again.envid, m.envid));
	x_assert(streq_null(again.auth, m.auth));
	smtp_mail_args_free(&again);
	smtp_mail_args_free(&m);
	x_assert(m.addr == NULL);
	buf_free(&b);
}

static void fuzz_rcpt(const char *args, bool utf8)
{
	struct smtp_rcpt_args r, again;
	struct smtp_perr err;
	struct buf b = BUF_INIT;

	/* No free on failure: the contract gives nothing to free, so LSan
	 * reports anything the parser forgot. */
	if (smtp_parse_rcpt(args, utf8, &r, &err) < 0) {
		check_perr(&err);
		return;
	}
	x_assert(r.addr != NULL && r.addr[0] != '\0');
	x_assert(utf8 || !addr_has_8bit(r.addr));
	buf_printf(&b, "TO:<%s>", r.addr);
	if (r.notify != NULL)
		buf_printf(&b, " NOTIFY=%s", r.notify);
	if (r.orcpt != NULL)
		buf_printf(&b, " ORCPT=%s", r.orcpt);
	x_assert(smtp_parse_rcpt(b.data, utf8, &again, &err) == 0);
	x_assert(strcmp(again.addr, r.addr) == 0);
	x_assert(streq_null(again.notify, r.notify) && streq_null(again.orcpt, r.orcpt));
	smtp_rcpt_args_free(&again);
	smtp_rcpt_args_free(&r);
	buf_free(&b);
}

static void fuzz_bdat(const char *args)
{
	uint64_t size, size2;
	bool last, last2;
	char canon[40];

	if (smtp_parse_bdat(args, &size, &last) < 0)
		return;
	x_assert(size < UINT64_C(1000000000000000000));
	snprintf(canon, sizeof canon, "%" PRIu64 "%s", size, last ? " LAST" : "");
	x_assert(smtp_parse_bdat(canon, &size2, &last2) == 0);
	x_assert(size2 == size && last2 == last);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	/* The line as the session sees it: a C string up to its first NUL,
	 * in a buffer of exactly that size. */
	char *line = xstrndup((const char *)data + 1, size - 1);
	const char *args = NULL;
	char verb[16];

	fuzz_verb(line, 1 + (data[0] & 0x0f));
	/* Every argument parser on the arguments after any verb, and on the
	 * whole line, so that the parsers see inputs a verb would hide. */
	if (smtp_parse_verb(line, verb, sizeof verb, &args) < 0)
		args = line;
	fuzz_mail(args);
	fuzz_rcpt(args, data[0] & 0x10);
	fuzz_bdat(args);
	if (args != line) {
		fuzz_mail(line);
		fuzz_rcpt(line, data[0] & 0x10);
		fuzz_bdat(line);
	}
	/* xtext over raw bytes, NULs included, in an exact-size copy. */
	if (size > 1) {
		char *raw = xmalloc(size - 1);
		memcpy(raw, data + 1, size - 1);
		(void)smtp_xtext_valid(raw, size - 1);
		free(raw);
	}
	free(line);
	return 0;
}
