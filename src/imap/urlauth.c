/* URLAUTH (RFC 4467): GENURLAUTH, RESETKEY, URLFETCH; URLAUTH=BINARY
 * (RFC 5524): URLFETCH's (url BODY BINARY BODYPARTSTRUCTURE) form.
 *
 * Mechanism INTERNAL (RFC 4467 7): the token is HMAC-SHA1, keyed with the
 * mailbox access key, of the URL rump (the URL up to and including the
 * access identifier). Keys are the store's (urlauth_keys, store/urlauth.c):
 * GENURLAUTH gets (or makes) one on the committer, RESETKEY deletes them,
 * URLFETCH reads them in a snapshot on a worker.
 *
 * URLFETCH runs one URL at a time on a worker (store_read): it checks the
 * URL (syntax, EXPIRE, access identifier, key, token, UIDVALIDITY), reads
 * the message and formats the response (uf_format: the copy of the data is
 * the worker's, not the loop's); the loop writes it URLFETCH_STEP octets
 * at a time while the session has output room (the rest at the drained
 * event), and the next URL is read once the response is written. Memory is
 * one URL's response at a time (at most about a message's size, bounded by
 * imap_max_literal; FETCH's blob streaming is not used here). A URL that
 * does not verify, for whatever reason, is answered NIL (RFC 4467 6.3),
 * never an error telling which.
 *
 * The owner of a URL's mailbox is its iuserinfo, with "@host" added when
 * it has no "@" (logins here are addresses; imaptest writes
 * imap://user@domain/...). Access identifiers (RFC 4467 3): "anonymous"
 * and "authuser" let any session of this server fetch (every URLFETCH is
 * authenticated), "user+NAME" the user NAME only; "submit+NAME" is for a
 * submission server (BURL, RFC 4468, not built): URLFETCH gives NIL. */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "imap/fetch.h"
#include "imap/parse_url.h"
#include "imap/selcmd.h"
#include "imap/session.h"
#include "mime/mime.h"
#include "store/store.h"

#define URLAUTH_MAX_URLS 100      /* URLs per GENURLAUTH / URLFETCH */
#define URLFETCH_STEP (64 * 1024) /* octets written at a time */

static bool is_astr(const struct imap_arg *a)
{
	const char *p;
	size_t n;
	return imap_arg_astring(a, &p, &n) && !a->external;
}

/* The owner of the URL's mailbox (heap), or NULL. */
static char *url_owner(const struct imap_url *u)
{
	if (u->user == NULL || u->host == NULL || u->user[0] == '\0')
		return NULL;
	if (strchr(u->user, '@') != NULL)
		return xstrdup(u->user);
	size_t a = strlen(u->user), b = strlen(u->host);
	char *o = xmalloc(a + b + 2);
	memcpy(o, u->user, a);
	o[a] = '@';
	memcpy(o + a + 1, u->host, b + 1);
	return o;
}

/* RFC 4467 7: HMAC-SHA1 of the rump, as lowercase hex (41 octets). */
static void token_of(const unsigned char *key, const char *rump, size_t n, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	HMAC(EVP_sha1(), key, STORE_URLAUTH_KEY, (const unsigned char *)rump, n, md, &md_len);
	for (unsigned i = 0; i < md_len; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	hex[2 * md_len] = '\0';
}

/* ---- GENURLAUTH (RFC 4467 6.1) ---- */

struct gen_job {
	struct imap_session *s;
	char **urls; /* the rumps as given */
	char **mailboxes;
	size_t n, next;
	struct buf out; /* "* GENURLAUTH ..." */
};

static void gen_free(struct gen_job *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->urls[i]);
		free(j->mailboxes[i]);
	}
	free(j->urls);
	free(j->mailboxes);
	buf_free(&j->out);
	free(j);
}

static void gen_next(struct gen_job *j);

static void gen_key_done(void *arg, int result, const unsigned char *key)
{
	struct gen_job *j = arg;
	struct imap_session *s = j->s;

	if (!imap_step_done(s)) {
		gen_free(j);
		return;
	}
	if (result != STORE_OK) {
		if (result == STORE_NONEXISTENT)
			imap_tagged(s, "NO", "NONEXISTENT", "GENURLAUTH: no such mailbox");
		else
			imap_tagged(s, "NO", "UNAVAILABLE", "GENURLAUTH: temporary failure");
		gen_free(j);
		imap_cmd_done(s);
		return;
	}
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	const char *url = j->urls[j->next];
	token_of(key, url, strlen(url), hex);
	struct buf u = BUF_INIT;
	buf_appends(&u, url);
	buf_appends(&u, ":internal:");
	buf_appends(&u, hex);
	buf_appendc(&j->out, ' ');
	imap_append_astring(&j->out, u.data, u.len);
	buf_free(&u);
	j->next++;
	gen_next(j);
}

static void gen_next(struct gen_job *j)
{
	struct imap_session *s = j->s;

	if (j->next < j->n) {
		s->base.busy++;
		store_urlauth_key(s->srv->st, s->user, j->mailboxes[j->next], gen_key_done, j);
		return;
	}
	buf_appends(&j->out, "\r\n");
	imap_send(s, j->out.data, j->out.len);
	imap_tagged(s, "OK", NULL, "GENURLAUTH completed");
	gen_free(j);
	imap_cmd_done(s);
}

/* GENURLAUTH 1*(SP url-rump SP mechanism) */
void imap_cmd_genurlauth(struct imap_session *s, const struct imap_arg *args)
{
	size_t n = 0;
	while (args[n].type != IMAP_ARG_EOL)
		n++;
	if (n == 0 || n % 2 != 0 || n / 2 > URLAUTH_MAX_URLS) {
		imap_tagged(s, "BAD", NULL, "Syntax: GENURLAUTH url mechanism [url mechanism ...]");
		return;
	}
	struct gen_job *j = xcalloc(1, sizeof *j);
	j->s = s;
	j->urls = xcalloc(n / 2, sizeof *j->urls);
	j->mailboxes = xcalloc(n / 2, sizeof *j->mailboxes);
	for (size_t i = 0; i < n; i += 2) {
		const struct imap_arg *a = &args[i], *m = &args[i + 1];
		if (!is_astr(a) || m->type != IMAP_ARG_ATOM) {
			imap_tagged(s, "BAD", NULL, "Syntax: GENURLAUTH url mechanism");
			gen_free(j);
			return;
		}
		struct imap_url u;
		if (imap_url_parse(a->str, a->len, &u) < 0) {
			imap_tagged(s, "BAD", NULL, "GENURLAUTH: invalid URL");
			gen_free(j);
			return;
		}
		/* 6.1: an absolute URL with a rump (";URLAUTH=access", no
		 * mechanism or token yet) */
		bool ok = u.host != NULL && u.access != NULL && u.token == NULL;
		if (!ok) {
			imap_url_free(&u);
			imap_tagged(s, "BAD", NULL,
			            "GENURLAUTH: the URL must be an absolute URLAUTH rump");
			gen_free(j);
			return;
		}
		if (m->len != 8 || strncasecmp(m->str, "INTERNAL", 8) != 0) {
			imap_url_free(&u);
			imap_tagged(s, "BAD", NULL,
			            "GENURLAUTH: unknown mechanism (INTERNAL only)");
			gen_free(j);
			return;
		}
		/* 6.1: only the owner of the mailbox grants access to it */
		char *owner = url_owner(&u);
		bool mine = owner != NULL && strcasecmp(owner, s->user) == 0;
		free(owner);
		if (!mine) {
			imap_url_free(&u);
			imap_tagged(s, "NO", NULL,
			            "GENURLAUTH: the URL is not one of your mailboxes");
			gen_free(j);
			return;
		}
		j->urls[j->n] = xstrndup(a->str, a->len);
		j->mailboxes[j->n] = u.mailbox;
		u.mailbox = NULL;
		j->n++;
		imap_url_free(&u);
	}
	buf_appends(&j->out, "* GENURLAUTH");
	session_park(&s->base);
	gen_next(j);
}

/* ---- RESETKEY (RFC 4467 6.2) ---- */

struct reset_job {
	struct imap_session *s;
};

static void reset_done(void *arg, int result)
{
	struct reset_job *j = arg;
	struct imap_session *s = j->s;

	free(j);
	if (!imap_step_done(s))
		return;
	if (result == STORE_OK)
		imap_tagged(s, "OK", NULL, "RESETKEY completed");
	else if (result == STORE_NONEXISTENT)
		imap_tagged(s, "NO", "NONEXISTENT", "RESETKEY: no such mailbox");
	else
		imap_tagged(s, "NO", "UNAVAILABLE", "RESETKEY: temporary failure");
	imap_cmd_done(s);
}

/* RESETKEY [SP mailbox *(SP mechanism)] */
void imap_cmd_resetkey(struct imap_session *s, const struct imap_arg *args)
{
	char *mailbox = NULL;

	if (args[0].type != IMAP_ARG_EOL) {
		for (size_t i = 1; args[i].type != IMAP_ARG_EOL; i++) {
			if (args[i].type != IMAP_ARG_ATOM || args[i].len != 8 ||
			    strncasecmp(args[i].str, "INTERNAL", 8) != 0) {
				imap_tagged(s, "BAD", NULL,
				            "RESETKEY: unknown mechanism (INTERNAL only)");
				return;
			}
		}
		if (!is_astr(&args[0])) {
			imap_tagged(s, "BAD", NULL, "Syntax: RESETKEY [mailbox [mechanism ...]]");
			return;
		}
		mailbox = imap_mailbox_arg(s, &args[0]);
		if (mailbox == NULL)
			return;
	}
	struct reset_job *j = xcalloc(1, sizeof *j);
	j->s = s;
	s->base.busy++;
	session_park(&s->base);
	store_urlauth_reset(s->srv->st, s->user, mailbox, reset_done, j);
	free(mailbox);
}

/* ---- URLFETCH (RFC 4467 6.3, RFC 5524 4) ---- */

enum { UF_BODY = 1, UF_BINARY = 2, UF_BPS = 4 };

struct uf_url {
	char *url;
	unsigned what; /* 0: the plain form (data alone) */
};

struct uf_job {
	struct imap_session *s;
	char *user;
	size_t max_name;
	struct uf_url *v;
	size_t n, next;
	/* the worker's answer for v[next] */
	bool ok;
	struct buf body, binary, bps;
	/* the response being written (loop) */
	struct buf resp;
	size_t resp_pos;
};

static void uf_free(struct uf_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->v[i].url);
	free(j->v);
	free(j->user);
	buf_free(&j->body);
	buf_free(&j->binary);
	buf_free(&j->bps);
	buf_free(&j->resp);
	free(j);
}

struct uf_msg {
	bool found;
	char *blob;
	struct buf cache;
};

static int uf_msg_cb(void *arg, const struct store_msg *m)
{
	struct uf_msg *um = arg;
	um->found = true;
	um->blob = xstrdup(m->blob);
	if (m->cache != NULL)
		buf_append(&um->cache, m->cache, m->cache_len);
	return 1;
}

static void sink_buf(void *arg, const char *p, size_t n)
{
	buf_append(arg, p, n);
}

/* The decoded form of part data (a MIME header hdr/hl then the body bl):
 * a base64 / quoted-printable leaf decoded, a multipart or message part with
 * its leaves decoded (keep_cte: their headers as they are), appended to out
 * without the MIME header. */
static void binary_of(const char *hdr, size_t hl, const char *body, size_t bl,
                      enum mime_encoding enc, bool keep_cte, struct buf *out)
{
	if (enc == MIME_ENC_BASE64 || enc == MIME_ENC_QP) {
		mime_decode(enc, body, bl, out);
		return;
	}
	struct buf syn = BUF_INIT, conv = BUF_INIT;
	buf_append(&syn, hdr, hl);
	buf_append(&syn, body, bl);
	if (syn.len > 0 && mime_binary_decode(syn.data, syn.len, keep_cte, sink_buf, &conv) &&
	    conv.len >= hl)
		buf_append(out, conv.data + hl, conv.len - hl);
	else
		buf_append(out, body, bl);
	buf_free(&syn);
	buf_free(&conv);
}

/* BODYPARTSTRUCTURE (RFC 5524 3): the BODYSTRUCTURE of the part, as that of
 * a message made of its MIME header and its data (decoded as BINARY gives
 * it, the headers kept, when BINARY is asked too: Dovecot's sizes, which
 * imaptest's urlauth-binary expects). */
static void bps_of(const char *hdr, size_t hl, const char *data, size_t dl, struct buf *out)
{
	struct buf syn = BUF_INIT, cache = BUF_INIT;
	struct mime_cache mc;
	const char *p;
	size_t n;

	buf_append(&syn, hdr, hl);
	buf_append(&syn, data, dl);
	mime_cache_build(syn.data ? syn.data : "", syn.len, &cache);
	if (mime_cache_open(&mc, cache.data, cache.len)) {
		mime_cache_bodystructure(&mc, &p, &n);
		buf_append(out, p, n);
	}
	buf_free(&syn);
	buf_free(&cache);
}

/* Worker: v[next] checked and read into body/binary/bps; j->ok false: NIL. */
static int uf_check(struct store_snap *sn, void *arg, char **err_r)
{
	struct uf_job *j = arg;
	struct uf_url *w = &j->v[j->next];
	struct imap_url u;
	struct imap_fetch f;
	struct uf_msg um = {0};
	struct imap_blob bl = {0};
	char *owner = NULL;
	int fd = -1, ret = 0;

	memset(&f, 0, sizeof f);
	j->ok = false;
	buf_reset(&j->body);
	buf_reset(&j->binary);
	buf_reset(&j->bps);
	if (imap_url_parse(w->url, strlen(w->url), &u) < 0)
		return 0;
	/* RFC 4467 6.3: a URLAUTH-authorised URL (mechanism and token) */
	if (u.token == NULL || u.host == NULL || strcasecmp(u.mech, "INTERNAL") != 0)
		goto out;
	/* 3: EXPIRE, then the access identifier */
	if (u.expire != 0 && u.expire <= (int64_t)time(NULL))
		goto out;
	if (strncmp(u.access, "user+", 5) == 0) {
		if (strcasecmp(u.access + 5, j->user) != 0)
			goto out;
	} else if (strncmp(u.access, "submit+", 7) == 0) {
		goto out; /* a submission server's (BURL): none here */
	}
	owner = url_owner(&u);
	if (owner == NULL || imap_mailbox_check(u.mailbox, j->max_name, 255) != NULL)
		goto out;
	unsigned char key[STORE_URLAUTH_KEY];
	uint32_t uidv = 0;
	int r = store_snap_urlauth_key(sn, owner, u.mailbox, &uidv, key, err_r);
	if (r < 0) {
		ret = -1;
		goto out;
	}
	if (r == 0)
		goto out;
	/* 7: the token over the rump */
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	token_of(key, w->url, u.rump_len, hex);
	memset(key, 0, sizeof key);
	if (strlen(u.token) != strlen(hex))
		goto out;
	for (char *x = u.token; *x; x++)
		if (*x >= 'A' && *x <= 'F')
			*x = (char)(*x - 'A' + 'a');
	if (CRYPTO_memcmp(u.token, hex, strlen(hex)) != 0)
		goto out;
	if (u.uidvalidity != 0 && u.uidvalidity != uidv)
		goto out;
	/* the message */
	struct store_uid_range rg = {u.uid, u.uid};
	r = store_snap_messages(sn, owner, u.mailbox, uidv, &rg, 1, 0, STORE_MSG_CACHE, uf_msg_cb,
				&um, err_r);
	if (r == STORE_NONEXISTENT || r == STORE_CHANGED) {
		free(*err_r);
		*err_r = NULL;
		goto out;
	}
	if (r < 0) {
		ret = -1;
		goto out;
	}
	if (!um.found)
		goto out;
	if (store_snap_blob_open(sn, um.blob, &fd, err_r) < 0) {
		free(*err_r); /* expunged meanwhile */
		*err_r = NULL;
		fd = -1;
		goto out;
	}
	const char *msg;
	size_t len;
	if (imap_blob_load(&bl, fd, &msg, &len) < 0)
		goto out;
	struct mime_cache mc;
	if (um.cache.len == 0 || !mime_cache_open(&mc, um.cache.data, um.cache.len)) {
		buf_reset(&um.cache);
		mime_cache_build(msg, len, &um.cache);
		if (!mime_cache_open(&mc, um.cache.data, um.cache.len))
			goto out;
	}
	if (imap_url_section(u.section, &f) < 0)
		goto out;
	const struct imap_fetch_item *it = &f.v[0];
	uint64_t off = 0, blen = len, hoff = 0, hlen = 0;
	enum mime_encoding enc = MIME_ENC_7BIT;
	if (it->depth > 0 || it->what != MIME_SECT_BODY) {
		if (mime_cache_section(&mc, it->path, it->depth, it->what, &off, &blen, &enc) < 0 ||
		    off > len || blen > len - off)
			goto out;
	}
	enum mime_encoding henc;
	if (it->depth > 0 && it->what == MIME_SECT_BODY &&
	    (mime_cache_section(&mc, it->path, it->depth, MIME_SECT_MIME, &hoff, &hlen, &henc) <
	         0 ||
	     hoff > len || hlen > len - hoff))
		goto out;
	bool part = it->what == MIME_SECT_BODY && !it->fields, body_cut = false;
	if ((w->what & (UF_BINARY | UF_BPS)) && !part)
		goto out; /* RFC 5524: BINARY and BODYPARTSTRUCTURE of a part */
	if (w->what == 0 || (w->what & UF_BODY)) {
		if (it->fields)
			mime_header_fields(msg + off, (size_t)blen, (const char *const *)it->names,
			                   it->n_names, it->fields_not, &j->body);
		else if (u.partial) {
			/* ;PARTIAL= (RFC 5092 3) cut before the copy: the
			 * worker holds the octets asked for, not the section */
			uint64_t o = u.partial_off < blen ? u.partial_off : blen, l = blen - o;
			if (u.partial_len != 0 && u.partial_len < l)
				l = u.partial_len;
			buf_append(&j->body, msg + off + o, (size_t)l);
			body_cut = true;
		} else {
			buf_append(&j->body, msg + off, (size_t)blen);
		}
	}
	if (w->what & UF_BINARY) {
		if (it->depth == 0)
			mime_binary_decode(msg, len, false, sink_buf, &j->binary);
		else
			binary_of(msg + hoff, (size_t)hlen, msg + off, (size_t)blen, enc, false,
			          &j->binary);
	}
	if (w->what & UF_BPS) {
		struct buf data = BUF_INIT;
		if (!(w->what & UF_BINARY))
			buf_append(&data, msg + off, (size_t)blen);
		else if (it->depth == 0)
			mime_binary_decode(msg, len, true, sink_buf, &data);
		else
			binary_of(msg + hoff, (size_t)hlen, msg + off, (size_t)blen, enc, true,
			          &data);
		bps_of(msg + hoff, it->depth > 0 ? (size_t)hlen : 0, data.data ? data.data : "",
		       data.len, &j->bps);
		buf_free(&data);
	}
	if (u.partial) {
		/* RFC 5092 3: ;PARTIAL=offset[.length] of the section */
		struct buf *bufs[2] = {&j->body, &j->binary};
		for (int k = body_cut ? 1 : 0; k < 2; k++) {
			struct buf *b = bufs[k];
			size_t o = u.partial_off < b->len ? (size_t)u.partial_off : b->len;
			size_t l = b->len - o;
			if (u.partial_len != 0 && u.partial_len < l)
				l = (size_t)u.partial_len;
			if (o > 0 && l > 0)
				memmove(b->data, b->data + o, l);
			b->len = l;
		}
	}
	j->ok = true;
out:
	if (fd >= 0)
		close(fd);
	imap_blob_free(&bl);
	free(owner);
	imap_url_free(&u);
	if (f.v != NULL)
		imap_fetch_free(&f);
	buf_free(&um.cache);
	free(um.blob);
	return ret;
}

static void literal(struct buf *b, const struct buf *v, bool binary)
{
	bool nul = binary && v->len > 0 && memchr(v->data, '\0', v->len) != NULL;
	buf_printf(b, "%s{%zu}\r\n", nul ? "~" : "", v->len);
	if (v->len > 0)
		buf_append(b, v->data, v->len);
}

/* Worker: the response of v[next] into resp, made here rather than on the
 * loop (a copy of up to a message's size: nothing on the loop grows with
 * the data, docs/design.md). */
static void uf_format(struct uf_job *j)
{
	struct uf_url *w = &j->v[j->next];
	struct buf *b = &j->resp;
	buf_reset(b);
	buf_appends(b, "* URLFETCH ");
	imap_append_astring(b, w->url, strlen(w->url));
	buf_appendc(b, ' ');
	if (!j->ok) {
		buf_appends(b, "NIL");
	} else if (w->what == 0) {
		literal(b, &j->body, false);
	} else {
		/* RFC 5524 4: the data items asked for */
		const char *sp = "";
		buf_appendc(b, '(');
		if (w->what & UF_BPS) {
			buf_appends(b, "BODYPARTSTRUCTURE ");
			buf_append(b, j->bps.data ? j->bps.data : "NIL",
			           j->bps.data ? j->bps.len : 3);
			sp = " ";
		}
		if (w->what & UF_BODY) {
			buf_printf(b, "%sBODY ", sp);
			literal(b, &j->body, false);
			sp = " ";
		}
		if (w->what & UF_BINARY) {
			buf_printf(b, "%sBINARY ", sp);
			literal(b, &j->binary, true);
		}
		buf_appendc(b, ')');
	}
	buf_appends(b, "\r\n");
	buf_free(&j->body);
	buf_free(&j->binary);
	buf_free(&j->bps);
}

static int uf_work(struct store_snap *sn, void *arg, char **err_r)
{
	struct uf_job *j = arg;
	int r = uf_check(sn, arg, err_r);
	if (r == 0)
		uf_format(j);
	return r;
}

static void uf_next(struct uf_job *j);
static void uf_pump(struct uf_job *j);

static void uf_abort(struct imap_session *s)
{
	uf_free(s->job);
	s->job = NULL;
}

static void uf_drained(struct imap_session *s)
{
	struct uf_job *j = s->job;

	s->job = NULL;
	s->job_abort = NULL;
	s->job_drained = NULL;
	uf_pump(j);
}

/* Writes the response of v[next] while the client reads (at most
 * URLFETCH_STEP octets at a time, none beyond the session's output limit),
 * then reads the next URL. */
static void uf_pump(struct uf_job *j)
{
	struct imap_session *s = j->s;

	while (j->resp_pos < j->resp.len) {
		if (!session_output_room(&s->base)) {
			/* the client reads what was sent first (drained) */
			s->job = j;
			s->job_abort = uf_abort;
			s->job_drained = uf_drained;
			session_output_wait(&s->base);
			return;
		}
		size_t n = j->resp.len - j->resp_pos;
		if (n > URLFETCH_STEP)
			n = URLFETCH_STEP;
		imap_send(s, j->resp.data + j->resp_pos, n);
		j->resp_pos += n;
	}
	buf_free(&j->resp);
	j->resp_pos = 0;
	j->next++;
	if (j->next >= j->n) {
		imap_tagged(s, "OK", NULL, "URLFETCH completed");
		uf_free(j);
		imap_cmd_done(s);
		return;
	}
	uf_next(j);
}

static void uf_done(void *arg, int result, const char *err)
{
	struct uf_job *j = arg;
	struct imap_session *s = j->s;

	if (!imap_step_done(s)) {
		uf_free(j);
		return;
	}
	if (result < 0) {
		log_err("imap urlfetch client=%s user=%s: %s", s->base.ip, j->user,
		        err ? err : "store error");
		imap_tagged(s, "NO", "UNAVAILABLE", "URLFETCH: temporary failure, try again later");
		uf_free(j);
		imap_cmd_done(s);
		return;
	}
	j->resp_pos = 0;
	uf_pump(j);
}

static void uf_next(struct uf_job *j)
{
	j->s->base.busy++;
	store_read(j->s->srv->st, j->s->srv->workers, uf_work, uf_done, j);
}

/* URLFETCH 1*(SP (url / "(" url *(SP param) ")")), param: BODY / BINARY /
 * BODYPARTSTRUCTURE (RFC 5524 4) */
void imap_cmd_urlfetch(struct imap_session *s, const struct imap_arg *args)
{
	size_t n = 0;
	while (args[n].type != IMAP_ARG_EOL)
		n++;
	if (n == 0 || n > URLAUTH_MAX_URLS) {
		imap_tagged(s, "BAD", NULL, "Syntax: URLFETCH url [url ...]");
		return;
	}
	struct uf_job *j = xcalloc(1, sizeof *j);
	j->v = xcalloc(n, sizeof *j->v);
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		unsigned what = 0;
		if (a->type == IMAP_ARG_LIST) {
			const struct imap_arg *l = a->list;
			if (!is_astr(&l[0]) || l[1].type == IMAP_ARG_EOL)
				goto bad;
			for (size_t k = 1; l[k].type != IMAP_ARG_EOL; k++) {
				if (l[k].type != IMAP_ARG_ATOM)
					goto bad;
				if (l[k].len == 4 && strncasecmp(l[k].str, "BODY", 4) == 0)
					what |= UF_BODY;
				else if (l[k].len == 6 && strncasecmp(l[k].str, "BINARY", 6) == 0)
					what |= UF_BINARY;
				else if (l[k].len == 17 &&
				         strncasecmp(l[k].str, "BODYPARTSTRUCTURE", 17) == 0)
					what |= UF_BPS;
				else
					goto bad;
			}
			a = &l[0];
		} else if (!is_astr(a)) {
			goto bad;
		}
		j->v[i].url = xstrndup(a->str ? a->str : "", a->len);
		j->v[i].what = what;
		j->n++;
	}
	j->s = s;
	j->user = xstrdup(s->user);
	j->max_name = (size_t)s->srv->cfg->imap_max_mailbox_name;
	session_park(&s->base);
	uf_next(j);
	return;
bad:
	imap_tagged(s, "BAD", NULL,
	            "Syntax: URLFETCH url or (url [BODY] [BINARY] [BODYPARTSTRUCTURE])");
	uf_free(j);
}
