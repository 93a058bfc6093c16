/* RFC 3464 delivery status notifications (see dsn.h). */
#include "mime/dsn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "mime/header.h"

#define DSN_BLOCK 65536
#define DSN_BOUNDARY_TRIES 64

enum dsn_action dsn_kind(const struct dsn_rcpt *rcpt, size_t n)
{
	bool delayed = false;
	for (size_t i = 0; i < n; i++) {
		if (rcpt[i].action == DSN_FAILED)
			return DSN_FAILED;
		if (rcpt[i].action == DSN_DELAYED)
			delayed = true;
	}
	return delayed ? DSN_DELAYED : DSN_DELIVERED;
}

const char *dsn_subject(enum dsn_action kind)
{
	switch (kind) {
	case DSN_FAILED:
		return "Undelivered Mail Returned to Sender";
	case DSN_DELAYED:
		return "Delayed Mail (still being retried)";
	default:
		return "Successful Mail Delivery Report";
	}
}

/* RFC 3464 2.3.3 action-value */
static const char *action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "failed";
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	default:
		return "relayed";
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* RFC 3461 4: hexchar is upper case only */
}

/* RFC 3461 4: xtext = *( xchar / hexchar ), hexchar = "+" 2HEX */
char *dsn_xtext_decode(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(n + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			int a = i + 1 < n ? hexval(s[i + 1]) : -1;
			int b = i + 2 < n ? hexval(s[i + 2]) : -1;
			int h = a < 0 || b < 0 ? -1 : a * 16 + b;
			if (h < 0x21 || h > 0x7e)
				goto bad;
			*o++ = (char)h;
			i += 2;
		} else if (c < 0x21 || c > 0x7e || c == '=') {
			goto bad;
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* Text that goes into a header or a report field: control octets (a CR or
 * LF in a next hop's reply would start a field of its own) and non-ASCII
 * become '?', white space runs become one space, at most max octets. */
static char *clean(const char *s, size_t max)
{
	struct buf b = BUF_INIT;
	bool space = false;
	buf_appends(&b, "");
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = b.len > 0;
			continue;
		}
		if (space)
			buf_appendc(&b, ' ');
		space = false;
		buf_appendc(&b, c < 0x20 || c >= 0x7f ? '?' : (char)c);
		if (b.len >= max) {
			buf_appends(&b, "...");
			break;
		}
	}
	return b.data;
}

/* Appends first + text, breaking lines at spaces past DSN_FOLD_WIDTH (the
 * space becomes CRLF + cont: for a field, cont " " is RFC 5322 2.2.3
 * folding), and cutting a run without spaces at DSN_HARD_LINE octets, so
 * that no line exceeds RFC 5322 2.1.1's 998. Ends with CRLF. text must be
 * clean(). */
static void fold(struct buf *b, const char *first, const char *text, const char *cont)
{
	size_t col = strlen(first), clen = strlen(cont);
	buf_appends(b, first);
	const char *p = text;
	bool line_has_word = false;
	while (*p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t wlen = sp ? (size_t)(sp - p) : strlen(p);
		if (line_has_word && col + 1 + wlen > DSN_FOLD_WIDTH) {
			buf_appends(b, "\r\n");
			buf_appends(b, cont);
			col = clen;
			line_has_word = false;
		} else if (line_has_word) {
			buf_appendc(b, ' ');
			col++;
		}
		while (col + wlen > DSN_HARD_LINE) {
			size_t take = DSN_HARD_LINE - col;
			buf_append(b, p, take);
			p += take;
			wlen -= take;
			buf_appends(b, "\r\n");
			buf_appends(b, cont);
			col = clen;
		}
		buf_append(b, p, wlen);
		col += wlen;
		line_has_word = true;
		p += wlen;
		if (*p == ' ')
			p++;
	}
	buf_appends(b, "\r\n");
}

/* A field "Name: value" with the value cleaned and folded. */
static void field(struct buf *b, const char *name, const char *value)
{
	char *v = clean(value, DSN_DIAG_MAX);
	char *first = xasprintf("%s: ", name);
	fold(b, first, v, " ");
	free(first);
	free(v);
}

static void field_date(struct buf *b, const char *name, time_t t)
{
	char d[64];
	header_date(t, d, sizeof d);
	buf_printf(b, "%s: %s\r\n", name, d);
}

/* RFC 3463 2: status-code = class "." subject "." detail, class 2/4/5,
 * subject and detail 1 to 3 digits. */
static bool status_ok(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;
		while (s[n] >= '0' && s[n] <= '9')
			n++;
		if (n < 1 || n > 3)
			return false;
		s += n;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static const char *status_of(const struct dsn_rcpt *rc)
{
	if (status_ok(rc->status))
		return rc->status;
	switch (rc->action) {
	case DSN_FAILED:
		return "5.0.0";
	case DSN_DELAYED:
		return "4.0.0";
	default:
		return "2.0.0";
	}
}

/* Part 1: the words. One paragraph for the report, one per recipient. */
static void text_part(struct buf *b, const struct dsn_report *r, enum dsn_action kind)
{
	char *host = clean(r->hostname, 255);
	char *intro;
	time_t until = 0;
	for (size_t i = 0; i < r->n_rcpt; i++)
		if (r->rcpt[i].action == DSN_DELAYED && r->rcpt[i].will_retry_until > until)
			until = r->rcpt[i].will_retry_until;
	char udate[64] = "";
	if (until != 0)
		header_date(until, udate, sizeof udate);

	intro = xasprintf("This is the mail system at host %s.", host);
	fold(b, "", intro, "");
	free(intro);
	buf_appends(b, "\r\n");
	switch (kind) {
	case DSN_FAILED:
		fold(b, "",
		     "Your message could not be delivered to one or more of its recipients, "
		     "and the mail system has given up on them. The reasons are listed below; "
		     "the message, or its header, is attached.",
		     "");
		buf_appends(b, "\r\n");
		intro = xasprintf("If you need help, write to the postmaster of %s and include "
		                  "this report.",
		                  host);
		fold(b, "", intro, "");
		free(intro);
		break;
	case DSN_DELAYED:
		if (until != 0)
			intro = xasprintf("Your message has not been delivered yet to the "
			                  "recipients below. The mail system keeps trying until "
			                  "%s; you do not need to send it again, and you will be "
			                  "told if it fails for good.",
			                  udate);
		else
			intro = xstrdup("Your message has not been delivered yet to the "
			                "recipients below. The mail system keeps trying; you do "
			                "not need to send it again, and you will be told if it "
			                "fails for good.");
		fold(b, "", intro, "");
		free(intro);
		break;
	default:
		fold(b, "",
		     "Your message was delivered to the recipients below, as its delivery "
		     "notification request asked.",
		     "");
		break;
	}
	for (size_t i = 0; i < r->n_rcpt; i++) {
		const struct dsn_rcpt *rc = &r->rcpt[i];
		char *rcpt = clean(rc->rcpt, DSN_DIAG_MAX);
		char *mta = rc->remote_mta ? clean(rc->remote_mta, 255) : NULL;
		char *diag = rc->diag ? clean(rc->diag, DSN_DIAG_MAX) : NULL;
		const char *what;
		switch (rc->action) {
		case DSN_FAILED:
			what = "delivery failed";
			break;
		case DSN_DELAYED:
			what = "delivery delayed";
			break;
		case DSN_DELIVERED:
			what = "delivered";
			break;
		default:
			what = "passed on to a system that sends no delivery notifications";
			break;
		}
		struct buf line = BUF_INIT;
		buf_printf(&line, "<%s>: %s (status %s)", rcpt, what, status_of(rc));
		if (mta != NULL && diag != NULL && rc->diag_remote)
			buf_printf(&line, "; host %s said: %s", mta, diag);
		else if (mta != NULL && diag != NULL)
			buf_printf(&line, "; while talking to host %s: %s", mta, diag);
		else if (mta != NULL)
			buf_printf(&line, "; host %s", mta);
		else if (diag != NULL)
			buf_printf(&line, ": %s", diag);
		buf_appends(b, "\r\n");
		fold(b, "", line.data, "    ");
		buf_free(&line);
		free(rcpt);
		free(mta);
		free(diag);
	}
	if (r->no_original) {
		buf_appends(b, "\r\n");
		fold(b, "",
		     "The original message could not be read any more and is not "
		     "included.",
		     "");
	}
	free(host);
}

/* Part 2: RFC 3464 2.2 per-message fields, then 2.3 per-recipient fields,
 * each recipient's group after an empty line. */
static void status_part(struct buf *b, const struct dsn_report *r)
{
	char *v = xasprintf("dns; %s", r->hostname);
	field(b, "Reporting-MTA", v); /* RFC 3464 2.2.2 */
	free(v);
	if (r->queue_id != NULL)
		field(b, "X-Postern-Queue-ID", r->queue_id); /* 2.2: extension-field */
	if (r->to != NULL && r->to[0] != '\0') {
		v = xasprintf("rfc822; %s", r->to);
		field(b, "X-Postern-Sender", v);
		free(v);
	}
	if (r->envid != NULL) {
		/* RFC 3464 2.2.1: the ENVID, decoded from xtext (RFC 3461 4.4) */
		char *d = dsn_xtext_decode(r->envid);
		field(b, "Original-Envelope-Id", d ? d : r->envid);
		free(d);
	}
	if (r->arrival != 0)
		field_date(b, "Arrival-Date", r->arrival); /* 2.2.5 */
	for (size_t i = 0; i < r->n_rcpt; i++) {
		const struct dsn_rcpt *rc = &r->rcpt[i];
		buf_appends(b, "\r\n");
		const char *semi = rc->orcpt ? strchr(rc->orcpt, ';') : NULL;
		if (semi != NULL && semi > rc->orcpt) {
			/* RFC 3464 2.3.1: address-type ";" the ORCPT address,
			 * decoded from xtext (RFC 3461 4.2) */
			char *d = dsn_xtext_decode(semi + 1);
			v = xasprintf("%.*s;%s", (int)(semi - rc->orcpt), rc->orcpt,
			              d ? d : semi + 1);
			field(b, "Original-Recipient", v);
			free(v);
			free(d);
		}
		v = xasprintf("rfc822; %s", rc->rcpt); /* 2.3.2 */
		field(b, "Final-Recipient", v);
		free(v);
		buf_printf(b, "Action: %s\r\n", action_name(rc->action)); /* 2.3.3 */
		buf_printf(b, "Status: %s\r\n", status_of(rc));           /* 2.3.4 */
		if (rc->remote_mta != NULL) {
			v = xasprintf("dns; %s", rc->remote_mta); /* 2.3.5 */
			field(b, "Remote-MTA", v);
			free(v);
		}
		if (rc->diag != NULL) {
			/* 2.3.6: "smtp" only for the next hop's actual reply; our
			 * own verdict (even after connecting) gets our own type (X-
			 * types are allowed, as Postfix's "X-Postfix") */
			v = xasprintf("%s; %s", rc->remote_mta && rc->diag_remote ? "smtp" : "X-Postern",
			              rc->diag);
			field(b, "Diagnostic-Code", v);
			free(v);
		}
		if (rc->last_attempt != 0)
			field_date(b, "Last-Attempt-Date", rc->last_attempt); /* 2.3.7 */
		if (rc->action == DSN_DELAYED && rc->will_retry_until != 0)
			field_date(b, "Will-Retry-Until", rc->will_retry_until); /* 2.3.9 */
	}
}

/* Streams [0, len) of the original through rd; per block, fn(arg, p, n). */
typedef int dsn_block_fn(void *arg, const char *p, size_t n);
static int each_block(dsn_read_fn *rd, void *rd_arg, uint64_t len, char *blk, dsn_block_fn *fn,
                      void *arg)
{
	uint64_t off = 0;
	while (off < len) {
		size_t want = len - off < DSN_BLOCK ? (size_t)(len - off) : DSN_BLOCK;
		ssize_t n = rd(rd_arg, blk, want, off);
		if (n < 0)
			return -1;
		if (n == 0)
			break; /* shorter than said: what there is */
		if (fn(arg, blk, (size_t)n) < 0)
			return -1;
		off += (uint64_t)n;
	}
	return 0;
}

/* The end of the header section: the offset of the empty line (RFC 5322
 * 2.1), or the whole length when there is none. */
struct hdr_scan {
	uint64_t off, end;
	bool bol, cr, done;
};
static int hdr_block(void *arg, const char *p, size_t n)
{
	struct hdr_scan *h = arg;
	for (size_t i = 0; i < n && !h->done; i++, h->off++) {
		char c = p[i];
		if (h->bol && c == '\n') {
			h->end = h->off - (h->cr ? 1 : 0);
			h->done = true;
		} else if (h->bol && c == '\r' && !h->cr) {
			h->cr = true;
		} else {
			h->bol = c == '\n';
			h->cr = false;
		}
	}
	return h->done ? -2 : 0;
}

/* Looks for needle across blocks (the last len-1 octets are carried over),
 * and notes 8-bit octets. */
struct find_scan {
	const char *needle;
	size_t nlen;
	char carry[256 + 16];
	size_t clen;
	bool found, eight;
	char last;
};
static int find_block(void *arg, const char *p, size_t n)
{
	struct find_scan *f = arg;
	for (size_t i = 0; i < n && !f->eight; i++)
		if ((unsigned char)p[i] >= 0x80)
			f->eight = true;
	if (n > 0)
		f->last = p[n - 1];
	if (f->found)
		return 0;
	/* the boundary across the block edge */
	size_t head = n < f->nlen - 1 ? n : f->nlen - 1;
	char edge[2 * sizeof f->carry];
	memcpy(edge, f->carry, f->clen);
	memcpy(edge + f->clen, p, head);
	if (memmem(edge, f->clen + head, f->needle, f->nlen) != NULL ||
	    memmem(p, n, f->needle, f->nlen) != NULL) {
		f->found = true;
		return 0;
	}
	size_t keep = f->nlen - 1;
	if (n >= keep) {
		memcpy(f->carry, p + n - keep, keep);
		f->clen = keep;
	} else {
		size_t total = f->clen + n;
		size_t drop = total > keep ? total - keep : 0;
		memmove(f->carry, f->carry + drop, f->clen - drop);
		memcpy(f->carry + f->clen - drop, p, n);
		f->clen = total - drop;
	}
	return 0;
}

/* The copy of the original: a bare LF becomes CRLF, so that the DSN has
 * CRLF line ends only (RFC 5322 2.3) whatever the stored message has. */
struct copy_out {
	dsn_write_fn *wr;
	void *arg;
	char prev;
};
static int copy_block(void *arg, const char *p, size_t n)
{
	struct copy_out *c = arg;
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		char prev = i > 0 ? p[i - 1] : c->prev;
		if (p[i] != '\n' || prev == '\r')
			continue;
		if (c->wr(c->arg, p + start, i - start) < 0 || c->wr(c->arg, "\r\n", 2) < 0)
			return -1;
		start = i + 1;
	}
	if (n > 0)
		c->prev = p[n - 1];
	return start < n ? c->wr(c->arg, p + start, n - start) : 0;
}

int dsn_write(const struct dsn_report *r, dsn_read_fn *rd, void *rd_arg, uint64_t size,
              dsn_write_fn *wr, void *wr_arg, char **err_r)
{
	enum dsn_action kind = dsn_kind(r->rcpt, r->n_rcpt);
	if (r->no_original)
		size = 0; /* rd is not called */
	struct buf p1 = BUF_INIT, p2 = BUF_INIT, out = BUF_INIT;
	char *blk = xmalloc(DSN_BLOCK), *boundary = NULL, *bclean = NULL;
	uint64_t full_max = r->full_max ? r->full_max : DSN_FULL_MAX;
	int ret = -1;

	text_part(&p1, r, kind);
	status_part(&p2, r);

	/* what of the original goes in: RFC 3461 4.3 RET=FULL, capped */
	struct hdr_scan hs = {.end = size, .bol = true};
	if (each_block(rd, rd_arg, size, blk, hdr_block, &hs) < 0 && !hs.done) {
		*err_r = xasprintf("read original: %s", strerror(errno));
		goto out;
	}
	bool whole = r->full && size <= full_max;
	uint64_t inc = whole ? size : hs.end;
	/* Headers only are capped too: an original without an empty line is
	 * all header (RFC 5322 2.1), and a DSN must not carry a huge message
	 * back whatever its RET (Postfix: bounce_size_limit). Cut at the last
	 * line end before the cap when there is one. */
	if (!whole && inc > full_max) {
		inc = full_max;
		if (inc > 0 && rd(rd_arg, blk, inc < DSN_BLOCK ? inc : DSN_BLOCK,
				  inc - (inc < DSN_BLOCK ? inc : DSN_BLOCK)) > 0) {
			size_t got = inc < DSN_BLOCK ? inc : DSN_BLOCK;
			const char *nl = memrchr(blk, '\n', got);
			if (nl != NULL)
				inc -= got - (size_t)(nl - blk + 1);
		}
	}

	/* RFC 2046 5.1.1: the boundary must not occur in any encapsulated part */
	bclean = clean(r->boundary && r->boundary[0] ? r->boundary : "dsn", 60);
	for (char *q = bclean; *q; q++)
		if (*q == ' ' || *q == '"' || *q == '\\')
			*q = '_';
	struct find_scan fs = {0};
	for (int n = 0;; n++) {
		free(boundary);
		boundary = n == 0 ? xstrdup(bclean) : xasprintf("%s=%d", bclean, n);
		if (n >= DSN_BOUNDARY_TRIES) {
			*err_r = xasprintf("no boundary free of the content");
			goto out;
		}
		if (memmem(p1.data, p1.len, boundary, strlen(boundary)) != NULL ||
		    memmem(p2.data, p2.len, boundary, strlen(boundary)) != NULL)
			continue;
		memset(&fs, 0, sizeof fs);
		fs.needle = boundary;
		fs.nlen = strlen(boundary);
		fs.last = '\n';
		if (each_block(rd, rd_arg, inc, blk, find_block, &fs) < 0) {
			*err_r = xasprintf("read original: %s", strerror(errno));
			goto out;
		}
		if (!fs.found)
			break;
	}

	/* the header of the DSN (RFC 3464 2, RFC 6522 3) */
	char date[64];
	header_date(r->now, date, sizeof date);
	char *host = clean(r->hostname, 255), *to = clean(r->to ? r->to : "", 512);
	buf_printf(&out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host);
	buf_printf(&out, "To: <%s>\r\n", to);
	buf_printf(&out, "Subject: %s\r\n", dsn_subject(kind));
	buf_printf(&out, "Date: %s\r\n", date);
	char *mid = clean(r->msgid ? r->msgid : "dsn@localhost", 255);
	buf_printf(&out, "Message-ID: <%s>\r\n", mid);
	free(mid);
	buf_appends(&out, "Auto-Submitted: auto-replied\r\n"); /* RFC 3834 5 */
	if (r->queue_id != NULL)
		field(&out, "X-Postern-Queue-ID", r->queue_id);
	buf_appends(&out, "MIME-Version: 1.0\r\n");
	buf_printf(&out,
	           "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	           "\tboundary=\"%s\"\r\n",
	           boundary);
	/* RFC 2045 6.4: a multipart holding 8-bit octets says so */
	if (fs.eight)
		buf_appends(&out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_appends(&out, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");
	free(host);
	free(to);

	buf_printf(&out, "--%s\r\n", boundary);
	buf_appends(&out, "Content-Description: Notification\r\n"
	                  "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	buf_append(&out, p1.data, p1.len);
	buf_printf(&out, "\r\n--%s\r\n", boundary);
	buf_appends(&out, "Content-Description: Delivery report\r\n"
	                  "Content-Type: message/delivery-status\r\n\r\n");
	buf_append(&out, p2.data, p2.len);
	if (r->no_original) {
		/* RFC 6522 3: the third part is optional */
		buf_printf(&out, "\r\n--%s--\r\n", boundary);
		if (wr(wr_arg, out.data, out.len) < 0) {
			*err_r = xasprintf("write: %s", strerror(errno));
			goto out;
		}
		ret = 0;
		goto out;
	}
	buf_printf(&out, "\r\n--%s\r\n", boundary);
	const char *what = kind == DSN_FAILED    ? "Undelivered"
	                   : kind == DSN_DELAYED ? "Delayed"
	                                         : "Delivered";
	if (whole)
		buf_printf(&out,
		           "Content-Description: %s Message\r\n"
		           "Content-Type: message/rfc822\r\n",
		           what);
	else
		buf_printf(&out,
		           "Content-Description: %s Message Headers\r\n"
		           "Content-Type: text/rfc822-headers\r\n",
		           what);
	if (fs.eight)
		buf_appends(&out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_appends(&out, "\r\n");
	if (wr(wr_arg, out.data, out.len) < 0) {
		*err_r = xasprintf("write: %s", strerror(errno));
		goto out;
	}
	struct copy_out co = {wr, wr_arg, '\n'};
	if (each_block(rd, rd_arg, inc, blk, copy_block, &co) < 0) {
		*err_r = xasprintf("copy original: %s", strerror(errno));
		goto out;
	}
	buf_reset(&out);
	if (inc > 0 && fs.last != '\n')
		buf_appends(&out, "\r\n");
	buf_printf(&out, "\r\n--%s--\r\n", boundary);
	if (wr(wr_arg, out.data, out.len) < 0) {
		*err_r = xasprintf("write: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	buf_free(&p1);
	buf_free(&p2);
	buf_free(&out);
	free(blk);
	free(boundary);
	free(bclean);
	return ret;
}
