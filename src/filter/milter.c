/* The milter client (milter.h): one non-blocking connection per milter and
 * SMTP transaction on the loop, speaking the Sendmail milter protocol
 * version 6 as Postfix's milter8 does (packets in milter_proto.c).
 *
 * Each connection keeps an output buffer and a FIFO of "barriers": the
 * stream positions just past commands whose reply is awaited. Bytes are
 * written up to the first barrier not yet answered, so one command at a
 * time waits for its reply (libmilter handles one at a time); commands
 * answered by nobody (SMFIC_MACRO, steps the milter declined replies for
 * with SMFIP_NR_*) stream freely. The message is sent as it arrives:
 * header fields (SMFIC_HEADER, folded lines joined by LF as Sendmail and
 * Postfix send them), SMFIC_EOH, body chunks of at most 65535 bytes (the
 * stored bytes, CRLF line ends). Every connection's output above
 * MILTER_HIGH pauses the session's input until it falls below MILTER_LOW.
 * A connection with work outstanding (output to write, a reply awaited)
 * must make progress within milter_timeout or it fails; SMFIR_PROGRESS
 * restarts the clock. A failed milter (down, late, garbage) is handled per
 * milter_failure: tempfail fails the transaction (451 4.7.0), accept drops
 * that milter (logged) and goes on.
 *
 * Callbacks (a step's or the end's) never run inside a milter_* call: when
 * the answer is known at once, a zero timer delivers it. */
#include "filter/milter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/xmalloc.h"
#include "filter/milter_proto.h"

#define MILTER_HIGH (256 * 1024)     /* output that pauses the session's input */
#define MILTER_LOW (64 * 1024)       /* ... and resumes it */
#define MILTER_REPLY_MAX (1024 * 1024) /* a reply packet's data at most */
#define MILTER_FIELD_MAX 65536       /* a header field sent at most (longer: cut) */
/* Header fields of one message sent at most: each is a round trip on the
 * loop (a milter that did not negotiate SMFIP_NR_HDR answers every one, and
 * libmilter's rarely do), about 30 us of the loop's CPU, so a message of
 * 100,000 tiny fields cost 3 s of it. Past the cap the message is refused
 * (552 5.6.0, as Sendmail refuses a header section over MaxHeadersLength),
 * whatever milter_failure says: under "accept" a sender could otherwise
 * switch the milters off for its message by adding fields. */
#define MILTER_FIELDS_MAX 1000
#define MILTER_TEXT_MAX 512
/* One awaited reply may be kept alive by SMFIR_PROGRESS (or a trickle of
 * bytes) at most this many times milter_timeout in all: Postfix bounds a
 * message's content the same way (milter_content_timeout, 10 times its
 * command timeout). */
#define MILTER_PROGRESS_FACTOR 10
/* Header changes kept per milter and transaction: a milter flooding
 * SMFIR_ADDHEADER at the end of message fails instead of growing memory. */
#define MILTER_EDITS_MAX 1000
#define MILTER_EDIT_BYTES (1024 * 1024)
/* Bytes read per readiness event (the loop is level-triggered: the rest
 * comes at the next turn), so that a flooding milter neither grows the
 * input buffer nor holds the loop. */
#define MILTER_READ_MAX (64 * 1024)

struct milter_ep {
	char *name; /* as configured, for the log */
	struct sockaddr_storage ss;
	socklen_t len;
};

struct milter_set {
	struct loop *l;
	struct milter_ep *ep;
	size_t n;
	unsigned timeout_ms;
	bool fail_accept;
	char *hostname;
};

enum mc_state { MC_CONNECTING, MC_NEGOTIATING, MC_READY, MC_DONE, MC_FAILED };

struct barrier {
	uint64_t end; /* stream position just past the command */
	char cmd;
};

struct mc_reply {
	enum milter_action action;
	int code;
	char ecode[16];
	char text[MILTER_TEXT_MAX];
};

struct mconn {
	struct milter_tx *t;
	const struct milter_ep *ep;
	int fd;
	enum mc_state st;
	uint32_t events;  /* watched on the loop */
	struct buf out;   /* not yet written */
	uint64_t out_pos; /* stream position of out.data[0] */
	struct barrier *bar;
	size_t nbar, bar_head, bar_cap;
	struct buf in;
	struct timer *timer;
	uint64_t wait_start; /* loop_now when the clock last started for real progress */
	uint64_t progress;   /* bumped on real progress: bytes written, a reply answered */
	bool kept;           /* the clock was restarted without real progress */
	uint32_t version, actions, proto;
	bool steps_sent;  /* connect, helo, mail queued */
	bool body_skip;   /* SMFIR_SKIP: no more body chunks */
	bool eob_sent;
	struct mc_reply msg;  /* a message-level answer (sticky) */
	struct mc_reply rcpt; /* the current recipient's */
	struct milter_edit *edits;
	size_t n_edits, edit_bytes;
	bool quarantine;
	unsigned unsupported; /* modifications not supported, ignored (logged once) */
	bool undeclared;      /* a modification not asked for in SMFIC_OPTNEG was logged */
	char *qwhy;
};

enum tx_wait { W_NONE, W_MAIL, W_RCPT, W_END };
enum msg_state { MS_START, MS_HDR, MS_BODY };

struct milter_tx {
	struct milter_set *m;
	struct mconn *mc;
	size_t n;
	char *ip, *rdns, *helo, *txid, *auth, *from;
	unsigned port;
	bool mail_called;
	enum tx_wait wait;
	milter_cb *cb;
	milter_end_cb *end_cb;
	void *arg;
	struct timer *defer;
	bool discard;
	enum msg_state ms;
	struct buf line;  /* the header line being received */
	struct buf field; /* the header field being received */
	size_t n_fields;  /* header fields sent (MILTER_FIELDS_MAX) */
	bool fields_over; /* past it: refused */
	struct buf chunk; /* body bytes not yet sent */
	struct buf name, value, tmp;
	bool paused;
	void (*resume)(void *arg);
	void *resume_arg;
	/* the result handed to the end callback */
	struct milter_edit *edits;
	size_t n_edits;
};

/* ---- configuration ---- */

static int ep_parse(const char *s, struct milter_ep *ep, char **err_r)
{
	memset(ep, 0, sizeof(*ep));
	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ep->ss;
		if (strlen(s + 5) == 0 || strlen(s + 5) >= sizeof(un->sun_path)) {
			*err_r = xasprintf("milters: bad unix socket path in \"%s\"", s);
			return -1;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, s + 5);
		ep->len = sizeof(*un);
		ep->name = xstrdup(s);
		return 0;
	}
	if (strncmp(s, "inet:", 5) != 0 && strncmp(s, "inet6:", 6) != 0) {
		*err_r = xasprintf("milters: \"%s\" is neither unix:/path nor inet:host:port", s);
		return -1;
	}
	const char *hp = strchr(s, ':') + 1;
	char host[128];
	const char *port;
	if (*hp == '[') {
		const char *close = strchr(hp, ']');
		if (close == NULL || close[1] != ':' || (size_t)(close - hp - 1) >= sizeof(host))
			goto bad;
		memcpy(host, hp + 1, (size_t)(close - hp - 1));
		host[close - hp - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(hp, ':');
		if (colon == NULL || (size_t)(colon - hp) >= sizeof(host))
			goto bad;
		memcpy(host, hp, (size_t)(colon - hp));
		host[colon - hp] = '\0';
		port = colon + 1;
	}
	char *endp;
	long pn = strtol(port, &endp, 10);
	if (*port == '\0' || *endp != '\0' || pn < 1 || pn > 65535)
		goto bad;
	/* numeric only: the loop never waits for a name lookup */
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ep->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ep->ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)pn);
		ep->len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)pn);
		ep->len = sizeof(*in6);
	} else {
		*err_r = xasprintf("milters: \"%s\": the host must be an IP address", s);
		return -1;
	}
	ep->name = xstrdup(s);
	return 0;
bad:
	*err_r = xasprintf("milters: cannot parse \"%s\" (inet:host:port or unix:/path)", s);
	return -1;
}

struct milter_set *milter_set_new(struct loop *l, const struct config *cfg, char **err_r)
{
	*err_r = NULL;
	if (cfg->milters == NULL || cfg->milters[0] == '\0')
		return NULL;
	struct milter_set *m = xcalloc(1, sizeof(*m));
	m->l = l;
	m->timeout_ms = (cfg->milter_timeout ? cfg->milter_timeout : 30) * 1000u;
	m->fail_accept = cfg->milter_failure != NULL && strcmp(cfg->milter_failure, "accept") == 0;
	m->hostname = xstrdup(cfg->hostname != NULL ? cfg->hostname : "localhost");
	char *list = xstrdup(cfg->milters);
	char *save = NULL;
	for (char *tok = strtok_r(list, ", \t", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t", &save)) {
		m->ep = xrealloc(m->ep, (m->n + 1) * sizeof(*m->ep));
		if (ep_parse(tok, &m->ep[m->n], err_r) < 0) {
			free(list);
			milter_set_free(&m);
			return NULL;
		}
		m->n++;
	}
	free(list);
	if (m->n == 0)
		milter_set_free(&m);
	return m;
}

void milter_set_free(struct milter_set **mp)
{
	struct milter_set *m = *mp;
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->ep[i].name);
	free(m->ep);
	free(m->hostname);
	free(m);
	*mp = NULL;
}

/* ---- one connection ---- */

static void mc_io(void *arg, uint32_t events);
static void tx_check(struct milter_tx *t);

static bool mc_live(const struct mconn *mc)
{
	return mc->st == MC_READY;
}

static size_t mc_pending(const struct mconn *mc)
{
	return mc->nbar - mc->bar_head;
}

/* Bytes that may be written now: up to the first unanswered barrier. */
static size_t mc_writable(const struct mconn *mc)
{
	if (mc_pending(mc) == 0)
		return mc->out.len;
	uint64_t end = mc->bar[mc->bar_head].end;
	return end > mc->out_pos ? (size_t)(end - mc->out_pos) : 0;
}

static void mc_timeout(void *arg);

/* The clock runs while something is outstanding: connecting, negotiating,
 * output to write, a reply awaited. Restarted on every progress. */
static bool mc_busy(const struct mconn *mc)
{
	return mc->st == MC_CONNECTING || mc->st == MC_NEGOTIATING ||
	       (mc->st == MC_READY && (mc->out.len > 0 || mc_pending(mc) > 0));
}

static void mc_arm(struct mconn *mc, bool progress)
{
	struct loop *l = mc->t->m->l;
	bool busy = mc_busy(mc);
	if (!busy || progress)
		loop_timer_cancel(l, &mc->timer);
	if (busy && mc->timer == NULL) {
		mc->wait_start = loop_now(l);
		mc->kept = false;
		mc->timer = loop_timer_add(l, mc->t->m->timeout_ms, mc_timeout, mc);
	}
}

/* Activity that answers nothing (SMFIR_PROGRESS, part of a reply, header
 * changes): the clock restarts, but never past MILTER_PROGRESS_FACTOR
 * times milter_timeout since the last real progress. */
static void mc_arm_soft(struct mconn *mc)
{
	struct loop *l = mc->t->m->l;
	if (mc->timer == NULL || !mc_busy(mc)) {
		mc_arm(mc, false);
		return;
	}
	mc->kept = true;
	uint64_t now = loop_now(l), to = mc->t->m->timeout_ms;
	uint64_t end = mc->wait_start + MILTER_PROGRESS_FACTOR * to;
	uint64_t left = end > now ? end - now : 0;
	loop_timer_cancel(l, &mc->timer);
	mc->timer = loop_timer_add(l, (unsigned)(left < to ? left : to), mc_timeout, mc);
}

static void mc_watch(struct mconn *mc)
{
	if (mc->fd < 0)
		return;
	uint32_t ev = LOOP_READ;
	if (mc->st == MC_CONNECTING || mc_writable(mc) > 0)
		ev |= LOOP_WRITE;
	if (ev != mc->events) {
		mc->events = ev;
		loop_mod(mc->t->m->l, mc->fd, ev);
	}
}

static void mc_close(struct mconn *mc)
{
	if (mc->fd >= 0) {
		loop_del(mc->t->m->l, mc->fd);
		close(mc->fd);
		mc->fd = -1;
	}
	loop_timer_cancel(mc->t->m->l, &mc->timer);
	buf_free(&mc->out);
	buf_free(&mc->in);
	mc->nbar = mc->bar_head = 0;
}

static void mc_fail(struct mconn *mc, const char *why)
{
	struct milter_tx *t = mc->t;
	log_warn("milter %s id=%s: %s (milter_failure=%s)", mc->ep->name,
		 t->txid != NULL ? t->txid : "-", why, t->m->fail_accept ? "accept" : "tempfail");
	mc_close(mc);
	mc->st = MC_FAILED;
}

static void mc_cmd(struct mconn *mc, char cmd, const void *data, size_t n, bool reply)
{
	milter_pkt_put(&mc->out, cmd, data, n);
	if (reply) {
		if (mc->nbar == mc->bar_cap) {
			if (mc->bar_head > 0) {
				memmove(mc->bar, mc->bar + mc->bar_head,
					mc_pending(mc) * sizeof(*mc->bar));
				mc->nbar -= mc->bar_head;
				mc->bar_head = 0;
			}
			if (mc->nbar == mc->bar_cap) {
				mc->bar_cap = mc->bar_cap ? mc->bar_cap * 2 : 16;
				mc->bar = xrealloc(mc->bar, mc->bar_cap * sizeof(*mc->bar));
			}
		}
		mc->bar[mc->nbar++] = (struct barrier){mc->out_pos + mc->out.len, cmd};
	}
}

/* SMFIC_MACRO for the step cmd: "name\0value\0" pairs, NULL values left out. */
static void mc_macros(struct mconn *mc, char cmd, const char *const *kv, size_t n)
{
	struct buf *d = &mc->t->tmp;
	buf_reset(d);
	buf_appendc(d, cmd);
	for (size_t i = 0; i + 1 < n; i += 2) {
		if (kv[i + 1] == NULL)
			continue;
		buf_append(d, kv[i], strlen(kv[i]) + 1);
		buf_append(d, kv[i + 1], strlen(kv[i + 1]) + 1);
	}
	mc_cmd(mc, SMFIC_MACRO, d->data, d->len, false);
}

static void addr_arg(struct buf *b, const char *a)
{
	buf_reset(b);
	if (a[0] == '<')
		buf_appends(b, a);
	else
		buf_printf(b, "<%s>", a);
	buf_appendc(b, '\0');
}

/* The connect, helo and mail steps (with their macros, as Postfix's
 * milter_connect_macros / milter_mail_macros). */
static void mc_steps(struct mconn *mc)
{
	struct milter_tx *t = mc->t;
	struct buf *d = &t->tmp;
	mc->steps_sent = true;
	if (!(mc->proto & SMFIP_NOCONNECT)) {
		char port[8], under[400];
		snprintf(port, sizeof(port), "%u", t->port);
		snprintf(under, sizeof(under), "%s [%s]", t->rdns != NULL ? t->rdns : "unknown",
			 t->ip != NULL ? t->ip : "");
		const char *kv[] = {"j", t->m->hostname, "{daemon_name}", "postern", "_", under,
				    "{client_addr}", t->ip, "{client_name}",
				    t->rdns != NULL ? t->rdns : "unknown", "{client_port}", port};
		mc_macros(mc, SMFIC_CONNECT, kv, sizeof(kv) / sizeof(kv[0]));
		struct buf c = BUF_INIT;
		if (t->rdns != NULL)
			buf_appends(&c, t->rdns);
		else
			buf_printf(&c, "[%s]", t->ip != NULL ? t->ip : "");
		buf_appendc(&c, '\0');
		struct in6_addr a6;
		if (t->ip != NULL && strchr(t->ip, ':') != NULL && inet_pton(AF_INET6, t->ip, &a6) == 1)
			buf_appendc(&c, '6');
		else if (t->ip != NULL && inet_pton(AF_INET, t->ip, &a6) == 1)
			buf_appendc(&c, '4');
		else
			buf_appendc(&c, 'U');
		if (c.data[c.len - 1] != 'U') {
			unsigned char pb[2] = {(unsigned char)(t->port >> 8), (unsigned char)t->port};
			buf_append(&c, pb, 2);
			buf_append(&c, t->ip, strlen(t->ip) + 1);
		}
		mc_cmd(mc, SMFIC_CONNECT, c.data, c.len, !(mc->proto & SMFIP_NR_CONN));
		buf_free(&c);
	}
	if (!(mc->proto & SMFIP_NOHELO) && t->helo != NULL)
		mc_cmd(mc, SMFIC_HELO, t->helo, strlen(t->helo) + 1, !(mc->proto & SMFIP_NR_HELO));
	if (!(mc->proto & SMFIP_NOMAIL)) {
		const char *kv[] = {"i", t->txid, "{auth_authen}", t->auth, "{mail_addr}", t->from};
		mc_macros(mc, SMFIC_MAIL, kv, sizeof(kv) / sizeof(kv[0]));
		struct buf a = BUF_INIT;
		addr_arg(&a, t->from);
		mc_cmd(mc, SMFIC_MAIL, a.data, a.len, !(mc->proto & SMFIP_NR_MAIL));
		buf_free(&a);
	}
	(void)d;
}

static void mc_reply_set(struct mc_reply *r, enum milter_action a, int code, const char *ecode,
			 const char *text)
{
	r->action = a;
	r->code = code;
	snprintf(r->ecode, sizeof(r->ecode), "%s", ecode);
	snprintf(r->text, sizeof(r->text), "%s", text);
}

static void mc_drop_output(struct mconn *mc)
{
	buf_reset(&mc->out);
	mc->nbar = mc->bar_head = 0;
	mc->progress++;
}

static int mc_edit(struct mconn *mc, enum milter_edit_kind kind, uint32_t index,
		   const char *name, const char *value)
{
	struct milter_tx *t = mc->t;
	mc->edit_bytes += strlen(name) + strlen(value) + 4;
	if (mc->n_edits >= MILTER_EDITS_MAX || mc->edit_bytes > MILTER_EDIT_BYTES) {
		mc_fail(mc, "too many header changes");
		return -1;
	}
	mc->edits = xrealloc(mc->edits, (mc->n_edits + 1) * sizeof(*mc->edits));
	milter_value_clean(value, &t->tmp);
	mc->edits[mc->n_edits++] = (struct milter_edit){
		kind, index, xstrdup(name), xstrdup(t->tmp.data != NULL ? t->tmp.data : "")};
	return 0;
}

/* A modification whose SMFIF_* flag the milter did not ask for: logged once
 * per milter and message, then taken. */
static void mc_undeclared(struct mconn *mc, uint32_t flag, char cmd)
{
	if ((mc->actions & flag) || mc->undeclared)
		return;
	mc->undeclared = true;
	log_warn("milter %s id=%s: modification '%c' without having asked for it (action flag"
		 " 0x%x) in the option negotiation; taken all the same",
		 mc->ep->name, mc->t->txid != NULL ? mc->t->txid : "-", cmd, (unsigned)flag);
}

/* One packet from the milter. -1: the connection failed (mc_fail done). */
static int mc_packet(struct mconn *mc, char cmd, const char *d, size_t n)
{
	struct milter_tx *t = mc->t;
	if (mc->st == MC_NEGOTIATING) {
		uint32_t ver, act, proto;
		if (cmd != SMFIC_OPTNEG || milter_optneg_parse(d, n, &ver, &act, &proto) < 0) {
			mc_fail(mc, "bad reply to option negotiation");
			return -1;
		}
		uint32_t ours;
		if (milter_negotiate(ver, act, proto, &mc->actions, &ours) < 0) {
			mc_fail(mc, "unsupported protocol version");
			return -1;
		}
		if ((act & ~MILTER_OUR_ACTIONS) != 0)
			log_debug("milter %s: actions 0x%x not offered (ignored if asked)",
				  mc->ep->name, act & ~MILTER_OUR_ACTIONS);
		mc->version = ver;
		mc->proto = ours;
		mc->st = MC_READY;
		mc->progress++;
		if (t->mail_called)
			mc_steps(mc);
		return 0;
	}
	if (cmd == SMFIR_PROGRESS)
		return 0;
	if (mc->st != MC_READY || mc_pending(mc) == 0 ||
	    mc->bar[mc->bar_head].end > mc->out_pos) {
		mc_fail(mc, "reply to nothing asked");
		return -1;
	}
	char asked = mc->bar[mc->bar_head].cmd;
	uint32_t index = 0;
	const char *name, *value;
	switch (cmd) {
	case SMFIR_ADDHEADER:
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		if (asked != SMFIC_BODYEOB) {
			mc_fail(mc, "header change outside the end of message");
			return -1;
		}
		/* a change it did not ask for in SMFIC_OPTNEG (libmilter's
		 * smfi_addheader and smfi_insheader need SMFIF_ADDHDRS,
		 * smfi_chgheader SMFIF_CHGHDRS): taken all the same, as
		 * Sendmail ("lied about ..., honoring request anyway") and
		 * Postfix do, and said once per milter and message; failing
		 * the milter would drop its verdict with it */
		mc_undeclared(mc, cmd == SMFIR_CHGHEADER ? SMFIF_CHGHDRS : SMFIF_ADDHDRS, cmd);
		if (milter_hdr_parse(d, n, cmd != SMFIR_ADDHEADER, &index, &name, &value) < 0) {
			mc_fail(mc, "bad header change");
			return -1;
		}
		/* Deletion is a change to no value at all, as Sendmail reads it:
		 * under SMFIP_HDR_LEADSPC a value of one space is an empty
		 * value, not a deletion (the cleaning drops that space) */
		return mc_edit(mc,
			       cmd == SMFIR_ADDHEADER	? MILTER_ADD
			       : cmd == SMFIR_INSHEADER ? MILTER_INSERT
			       : value[0] == '\0'	? MILTER_DELETE
							: MILTER_CHANGE,
			       index, name, value);
	case SMFIR_QUARANTINE:
		if (asked != SMFIC_BODYEOB) {
			mc_fail(mc, "quarantine outside the end of message");
			return -1;
		}
		mc_undeclared(mc, SMFIF_QUARANTINE, cmd);
		mc->quarantine = true;
		free(mc->qwhy);
		mc->qwhy = xstrndup(d, strnlen(d, n));
		milter_value_clean(mc->qwhy, &t->tmp);
		free(mc->qwhy);
		mc->qwhy = xstrdup(t->tmp.data != NULL ? t->tmp.data : "");
		return 0;
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
	case SMFIR_ADDRCPT_PAR:
	case SMFIR_CHGFROM:
	case SMFIR_REPLBODY:
	case SMFIR_SETSYMLIST:
		if (asked != SMFIC_BODYEOB) {
			mc_fail(mc, "modification outside the end of message");
			return -1;
		}
		/* not offered in SMFIC_OPTNEG: the message goes on unchanged;
		 * logged once per milter and message (a milter sending them by
		 * the thousand would fill the log) */
		mc->unsupported++;
		if (mc->unsupported == 1)
			log_warn("milter %s id=%s: modification '%c' not supported, ignored (and"
				 " any more of them from this milter for this message)",
				 mc->ep->name, t->txid != NULL ? t->txid : "-", cmd);
		return 0;
	case SMFIR_CONTINUE:
		mc->bar_head++;
		mc->progress++;
		if (asked == SMFIC_BODYEOB)
			mc->st = MC_DONE;
		return 0;
	case SMFIR_SKIP:
		if (asked != SMFIC_BODY) {
			mc_fail(mc, "skip outside the body");
			return -1;
		}
		mc->bar_head++;
		mc->progress++;
		mc->body_skip = true;
		return 0;
	case SMFIR_ACCEPT:
		/* done with this milter for the transaction */
		mc_drop_output(mc);
		mc->st = MC_DONE;
		return 0;
	case SMFIR_DISCARD:
		mc_drop_output(mc);
		mc->st = MC_DONE;
		t->discard = true;
		mc_reply_set(&mc->msg, MILTER_DISCARD, 0, "", "");
		return 0;
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_REPLYCODE:
	case SMFIR_SHUTDOWN:
	case SMFIR_CONN_FAIL: {
		struct mc_reply r;
		if (cmd == SMFIR_REPLYCODE) {
			if (milter_replycode_parse(d, n, &r.code, r.ecode, sizeof(r.ecode), r.text,
						   sizeof(r.text)) < 0) {
				mc_fail(mc, "bad reply code");
				return -1;
			}
			r.action = r.code >= 500 ? MILTER_REJECT : MILTER_TEMPFAIL;
			if (r.ecode[0] == '\0')
				snprintf(r.ecode, sizeof(r.ecode), "%c.7.1", r.code >= 500 ? '5' : '4');
			if (r.text[0] == '\0')
				snprintf(r.text, sizeof(r.text), "%s",
					 r.code >= 500 ? "Command rejected" : "Try again later");
		} else if (cmd == SMFIR_REJECT) {
			mc_reply_set(&r, MILTER_REJECT, 550, "5.7.1", "Command rejected");
		} else {
			mc_reply_set(&r, MILTER_TEMPFAIL, 451, "4.7.1",
				     "Service unavailable - try again later");
		}
		mc->bar_head++;
		mc->progress++;
		if (asked == SMFIC_RCPT) {
			mc->rcpt = r; /* this recipient only; the milter goes on */
		} else {
			mc->msg = r;
			mc_drop_output(mc);
			mc->st = MC_DONE;
		}
		return 0;
	}
	default:
		mc_fail(mc, "unknown reply");
		return -1;
	}
}

/* Reads what the milter sent, then takes its packets. An end of the
 * connection (or an error) is looked at only after the packets read before
 * it: a milter may send its last answer and close at once, and that answer
 * may fill a read exactly, so that the close comes with the next one. */
static void mc_read(struct mconn *mc)
{
	char tmp[16384];
	size_t got = 0;
	bool ended = false;
	int err = 0;
	while (got < MILTER_READ_MAX) {
		ssize_t r = read(mc->fd, tmp, sizeof(tmp));
		if (r > 0) {
			buf_append(&mc->in, tmp, (size_t)r);
			got += (size_t)r;
			if ((size_t)r < sizeof(tmp))
				break;
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		ended = true;
		err = r < 0 ? errno : 0;
		break;
	}
	size_t off = 0;
	while (mc->fd >= 0 && off < mc->in.len) {
		char cmd;
		const char *d;
		size_t n, used;
		int g = milter_pkt_get(mc->in.data + off, mc->in.len - off, MILTER_REPLY_MAX, &cmd,
				       &d, &n, &used);
		if (g == 0)
			break;
		if (g < 0) {
			mc_fail(mc, "bad packet length");
			return;
		}
		off += used;
		if (mc->st == MC_DONE)
			continue; /* after ACCEPT/REJECT: nothing more matters */
		if (mc_packet(mc, cmd, d, n) < 0)
			return;
	}
	if (mc->fd < 0)
		return;
	buf_consume(&mc->in, off);
	if (!ended)
		return;
	if (mc->st == MC_DONE) { /* answered everything: a quiet close */
		mc_close(mc);
		return;
	}
	mc_fail(mc, err == 0 ? "closed the connection" : strerror(err));
}

static void mc_write(struct mconn *mc)
{
	size_t w = mc_writable(mc);
	while (w > 0) {
		ssize_t r = send(mc->fd, mc->out.data, w, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			mc_fail(mc, strerror(errno));
			return;
		}
		buf_consume(&mc->out, (size_t)r);
		mc->out_pos += (uint64_t)r;
		mc->progress++;
		w -= (size_t)r;
	}
}

static void mc_connected(struct mconn *mc)
{
	int err = 0;
	socklen_t el = sizeof(err);
	if (getsockopt(mc->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err != 0) {
		mc_fail(mc, strerror(err));
		return;
	}
	mc->st = MC_NEGOTIATING;
	mc->progress++;
	milter_optneg_put(&mc->out, MILTER_VERSION, MILTER_OUR_ACTIONS, MILTER_OUR_PROTO);
}

static void tx_after_io(struct milter_tx *t);

static void mc_io(void *arg, uint32_t events)
{
	struct mconn *mc = arg;
	struct milter_tx *t = mc->t;
	uint64_t p0 = mc->progress;
	if (mc->st == MC_CONNECTING) {
		if (events & (LOOP_WRITE | LOOP_ERROR))
			mc_connected(mc);
	}
	if (mc->fd >= 0 && (events & (LOOP_READ | LOOP_ERROR)))
		mc_read(mc);
	if (mc->fd >= 0 && mc->st != MC_CONNECTING)
		mc_write(mc);
	if (mc->fd >= 0) {
		mc_watch(mc);
		if (mc->progress != p0)
			mc_arm(mc, true);
		else
			mc_arm_soft(mc);
	}
	tx_after_io(t); /* last: may run a callback */
}

static void mc_timeout(void *arg)
{
	struct mconn *mc = arg;
	struct milter_tx *t = mc->t;
	mc->timer = NULL;
	/* the overall bound only if it is what ran out: a milter whose
	 * SMFIR_PROGRESS stops for milter_timeout has simply timed out */
	bool bound = mc->kept && loop_now(t->m->l) >= mc->wait_start +
							  MILTER_PROGRESS_FACTOR * t->m->timeout_ms;
	mc_fail(mc, mc->st == MC_CONNECTING ? "connect timed out"
		    : bound		       ? "no answer within the overall bound (SMFIR_PROGRESS)"
					       : "timed out");
	tx_after_io(t);
}

static void mc_start(struct mconn *mc)
{
	const struct milter_ep *ep = mc->ep;
	mc->fd = socket(ep->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (mc->fd < 0) {
		mc_fail(mc, strerror(errno));
		return;
	}
	if (connect(mc->fd, (const struct sockaddr *)&ep->ss, ep->len) < 0 &&
	    errno != EINPROGRESS && errno != EAGAIN) {
		mc_fail(mc, strerror(errno));
		return;
	}
	/* connected or not: the first writable event tells (SO_ERROR) */
	mc->st = MC_CONNECTING;
	mc->events = LOOP_READ | LOOP_WRITE;
	if (loop_add(mc->t->m->l, mc->fd, mc->events, mc_io, mc) < 0) {
		mc_fail(mc, strerror(errno));
		return;
	}
	mc_arm(mc, true);
}

/* ---- the transaction ---- */

static char *dup0(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct milter_tx *milter_tx_new(struct milter_set *m, const struct milter_conn_info *i)
{
	if (m == NULL)
		return NULL;
	struct milter_tx *t = xcalloc(1, sizeof(*t));
	t->m = m;
	t->ip = dup0(i->ip);
	t->port = i->port;
	t->rdns = dup0(i->rdns);
	t->helo = dup0(i->helo);
	t->txid = dup0(i->txid);
	t->auth = dup0(i->auth_user);
	t->n = m->n;
	t->mc = xcalloc(m->n, sizeof(*t->mc));
	for (size_t k = 0; k < m->n; k++) {
		struct mconn *mc = &t->mc[k];
		mc->t = t;
		mc->ep = &m->ep[k];
		mc->fd = -1;
		mc_start(mc);
	}
	return t;
}

/* Every milter has answered what the current step needs. */
static bool tx_settled(const struct milter_tx *t)
{
	for (size_t k = 0; k < t->n; k++) {
		const struct mconn *mc = &t->mc[k];
		if (mc->st == MC_DONE || mc->st == MC_FAILED)
			continue;
		if (mc->st != MC_READY || mc_pending(mc) > 0)
			return false;
		if (t->wait == W_MAIL && !mc->steps_sent)
			return false;
		if (t->wait == W_END)
			return false; /* READY at the end: EOB not answered yet */
	}
	return true;
}

static const struct milter_reply failed_reply = {MILTER_TEMPFAIL, 451, "4.7.0",
						 "Content filter unavailable, try again later"};
static const struct milter_reply fields_reply = {MILTER_REJECT, 552, "5.6.0",
						 "Too many header fields"};

/* The step's answer: the first milter in order that refused (or failed
 * under milter_failure = tempfail) decides. */
static void tx_verdict(const struct milter_tx *t, bool with_rcpt, struct milter_reply *r)
{
	*r = (struct milter_reply){MILTER_CONTINUE, 0, NULL, NULL};
	if (t->fields_over) {
		*r = fields_reply;
		return;
	}
	for (size_t k = 0; k < t->n; k++) {
		const struct mconn *mc = &t->mc[k];
		if (mc->st == MC_FAILED && !t->m->fail_accept) {
			*r = failed_reply;
			return;
		}
		const struct mc_reply *x = NULL;
		if (mc->msg.action == MILTER_REJECT || mc->msg.action == MILTER_TEMPFAIL)
			x = &mc->msg;
		else if (with_rcpt &&
			 (mc->rcpt.action == MILTER_REJECT || mc->rcpt.action == MILTER_TEMPFAIL))
			x = &mc->rcpt;
		if (x != NULL) {
			*r = (struct milter_reply){x->action, x->code, x->ecode, x->text};
			return;
		}
	}
	if (t->discard)
		r->action = MILTER_DISCARD;
}

static void tx_end_result(struct milter_tx *t, struct milter_result *res)
{
	memset(res, 0, sizeof(*res));
	tx_verdict(t, false, &res->reply);
	size_t n = 0;
	for (size_t k = 0; k < t->n; k++)
		if (t->mc[k].st != MC_FAILED)
			n += t->mc[k].n_edits;
	t->edits = xcalloc(n ? n : 1, sizeof(*t->edits));
	t->n_edits = 0;
	for (size_t k = 0; k < t->n; k++) {
		struct mconn *mc = &t->mc[k];
		if (mc->st == MC_FAILED)
			continue; /* a milter that did not finish: its changes go */
		for (size_t j = 0; j < mc->n_edits; j++)
			t->edits[t->n_edits++] = mc->edits[j];
		if (mc->quarantine && !res->quarantine) {
			res->quarantine = true;
			res->quarantine_why = mc->qwhy;
		}
	}
	res->edits = t->edits;
	res->n_edits = t->n_edits;
}

static void tx_check(struct milter_tx *t)
{
	if (t->wait == W_NONE || !tx_settled(t))
		return;
	loop_timer_cancel(t->m->l, &t->defer);
	enum tx_wait w = t->wait;
	t->wait = W_NONE;
	void *arg = t->arg;
	if (w == W_END) {
		struct milter_result res;
		tx_end_result(t, &res);
		milter_end_cb *cb = t->end_cb;
		t->end_cb = NULL;
		cb(arg, &res); /* last */
		return;
	}
	struct milter_reply r;
	tx_verdict(t, w == W_RCPT, &r);
	milter_cb *cb = t->cb;
	t->cb = NULL;
	cb(arg, &r); /* last */
}

static bool tx_below_low(const struct milter_tx *t)
{
	for (size_t k = 0; k < t->n; k++)
		if (t->mc[k].st == MC_READY && t->mc[k].out.len > MILTER_LOW)
			return false;
	return true;
}

static void tx_after_io(struct milter_tx *t)
{
	if (t->wait != W_NONE) {
		tx_check(t);
		return;
	}
	if (t->paused && tx_below_low(t)) {
		t->paused = false;
		void (*resume)(void *) = t->resume;
		t->resume = NULL;
		if (resume != NULL)
			resume(t->resume_arg); /* last */
	}
}

static void tx_defer_fire(void *arg)
{
	struct milter_tx *t = arg;
	t->defer = NULL;
	tx_check(t);
}

/* After a step was queued: answered now (deliver later, never inside the
 * call) or wait for the milters. */
static void tx_wait_for(struct milter_tx *t, enum tx_wait w)
{
	t->wait = w;
	for (size_t k = 0; k < t->n; k++)
		if (t->mc[k].fd >= 0)
			mc_watch(&t->mc[k]), mc_arm(&t->mc[k], false);
	if (tx_settled(t) && t->defer == NULL)
		t->defer = loop_timer_add(t->m->l, 0, tx_defer_fire, t);
}

bool milter_mail(struct milter_tx *t, const char *from, milter_cb *cb, void *arg)
{
	if (t == NULL)
		return false;
	free(t->from);
	t->from = xstrdup(from != NULL ? from : "");
	t->mail_called = true;
	for (size_t k = 0; k < t->n; k++)
		if (t->mc[k].st == MC_READY && !t->mc[k].steps_sent)
			mc_steps(&t->mc[k]);
	t->cb = cb;
	t->arg = arg;
	/* always waits: the connections and the negotiation finish first, so
	 * a milter that is down answers MAIL (per milter_failure) */
	tx_wait_for(t, W_MAIL);
	return true;
}

bool milter_rcpt(struct milter_tx *t, const char *rcpt, milter_cb *cb, void *arg)
{
	if (t == NULL)
		return false;
	bool ask = false;
	for (size_t k = 0; k < t->n; k++) {
		struct mconn *mc = &t->mc[k];
		mc->rcpt.action = MILTER_CONTINUE;
		if (!mc_live(mc) || (mc->proto & SMFIP_NORCPT))
			continue;
		const char *kv[] = {"{rcpt_addr}", rcpt};
		mc_macros(mc, SMFIC_RCPT, kv, 2);
		addr_arg(&t->tmp, rcpt);
		struct buf a = BUF_INIT;
		buf_append(&a, t->tmp.data, t->tmp.len);
		mc_cmd(mc, SMFIC_RCPT, a.data, a.len, !(mc->proto & SMFIP_NR_RCPT));
		buf_free(&a);
		if (!(mc->proto & SMFIP_NR_RCPT))
			ask = true;
	}
	struct milter_reply r;
	tx_verdict(t, true, &r);
	if (!ask && r.action == MILTER_CONTINUE && tx_settled(t)) {
		for (size_t k = 0; k < t->n; k++)
			if (t->mc[k].fd >= 0)
				mc_watch(&t->mc[k]), mc_arm(&t->mc[k], false);
		return false;
	}
	t->cb = cb;
	t->arg = arg;
	tx_wait_for(t, W_RCPT);
	return true;
}

/* ---- the message ---- */

static void tx_send_all(struct milter_tx *t, char cmd, uint32_t no, uint32_t nr, const void *d,
			size_t n)
{
	for (size_t k = 0; k < t->n; k++) {
		struct mconn *mc = &t->mc[k];
		if (!mc_live(mc) || (mc->proto & no))
			continue;
		if (cmd == SMFIC_BODY && mc->body_skip)
			continue;
		mc_cmd(mc, cmd, d, n, !(mc->proto & nr));
	}
}

static void tx_data(struct milter_tx *t)
{
	t->ms = MS_HDR;
	tx_send_all(t, SMFIC_DATA, SMFIP_NODATA, SMFIP_NR_DATA, NULL, 0);
}

/* Some milter takes the header fields, or may once it has negotiated. */
static bool tx_wants_fields(const struct milter_tx *t)
{
	for (size_t k = 0; k < t->n; k++) {
		const struct mconn *mc = &t->mc[k];
		if (mc_live(mc) ? !(mc->proto & SMFIP_NOHDRS)
				: mc->st == MC_CONNECTING || mc->st == MC_NEGOTIATING)
			return true;
	}
	return false;
}

static void tx_field(struct milter_tx *t)
{
	if (t->field.len == 0)
		return;
	/* the cap bounds the loop's round trips: none when no milter takes
	 * fields (every one declined them with SMFIP_NOHDRS, or failed) */
	if (!t->fields_over && !tx_wants_fields(t)) {
		buf_reset(&t->field);
		return;
	}
	if (t->fields_over || ++t->n_fields > MILTER_FIELDS_MAX) {
		if (!t->fields_over) {
			t->fields_over = true;
			log_warn("milter id=%s: the message has more than %d header fields: refused",
				 t->txid != NULL ? t->txid : "-", MILTER_FIELDS_MAX);
			/* nothing more to send them: the verdict is made */
			for (size_t k = 0; k < t->n; k++)
				if (t->mc[k].fd >= 0) {
					mc_close(&t->mc[k]);
					t->mc[k].st = MC_FAILED;
				}
		}
		buf_reset(&t->field);
		return;
	}
	for (size_t k = 0; k < t->n; k++) {
		struct mconn *mc = &t->mc[k];
		if (!mc_live(mc) || (mc->proto & SMFIP_NOHDRS))
			continue;
		if (milter_field_split(t->field.data, t->field.len,
				       (mc->proto & SMFIP_HDR_LEADSPC) != 0, &t->name,
				       &t->value) < 0)
			break;
		buf_reset(&t->tmp);
		buf_append(&t->tmp, t->name.data, t->name.len);
		buf_appendc(&t->tmp, '\0');
		buf_append(&t->tmp, t->value.data, t->value.len);
		buf_appendc(&t->tmp, '\0');
		mc_cmd(mc, SMFIC_HEADER, t->tmp.data, t->tmp.len, !(mc->proto & SMFIP_NR_HDR));
	}
	buf_reset(&t->field);
}

static void tx_eoh(struct milter_tx *t)
{
	tx_field(t);
	tx_send_all(t, SMFIC_EOH, SMFIP_NOEOH, SMFIP_NR_EOH, NULL, 0);
	t->ms = MS_BODY;
}

static void tx_body(struct milter_tx *t, const char *p, size_t n)
{
	while (n > 0) {
		size_t k = MILTER_CHUNK - t->chunk.len;
		if (k > n)
			k = n;
		buf_append(&t->chunk, p, k);
		p += k;
		n -= k;
		if (t->chunk.len == MILTER_CHUNK) {
			tx_send_all(t, SMFIC_BODY, SMFIP_NOBODY, SMFIP_NR_BODY, t->chunk.data,
				    t->chunk.len);
			buf_reset(&t->chunk);
		}
	}
}

/* One complete line of the header section (its line break included). */
static void tx_hdr_line(struct milter_tx *t, const char *p, size_t n)
{
	if (n == 0)
		return;
	if ((n == 2 && p[0] == '\r') || n == 1) {
		tx_eoh(t); /* RFC 5322 2.1: the empty line ends the header section */
		return;
	}
	if ((p[0] == ' ' || p[0] == '\t') && t->field.len > 0) {
		size_t room = MILTER_FIELD_MAX - t->field.len;
		buf_append(&t->field, p, n < room ? n : room);
		return;
	}
	tx_field(t);
	if (p[0] == ' ' || p[0] == '\t' || memchr(p, ':', n) == NULL) {
		/* not a field: the body starts here (as Postfix's mime_state) */
		tx_eoh(t);
		tx_body(t, p, n);
		return;
	}
	buf_append(&t->field, p, n < MILTER_FIELD_MAX ? n : MILTER_FIELD_MAX);
}

static void tx_feed(struct milter_tx *t, const char *p, size_t n)
{
	if (t->ms == MS_START)
		tx_data(t);
	while (n > 0 && t->ms == MS_HDR) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl != NULL ? (size_t)(nl - p) + 1 : n;
		if (t->line.len + k <= MILTER_FIELD_MAX + 2)
			buf_append(&t->line, p, k);
		p += k;
		n -= k;
		if (nl != NULL) {
			tx_hdr_line(t, t->line.data, t->line.len);
			buf_reset(&t->line);
		}
	}
	if (n > 0 && t->ms == MS_BODY)
		tx_body(t, p, n);
}

bool milter_feed(struct milter_tx *t, const char *p, size_t n, void (*resume)(void *arg),
		 void *arg)
{
	if (t == NULL || n == 0)
		return false;
	tx_feed(t, p, n);
	for (size_t k = 0; k < t->n; k++)
		if (t->mc[k].fd >= 0)
			mc_watch(&t->mc[k]), mc_arm(&t->mc[k], false);
	if (t->paused)
		return true; /* told already: one resume */
	for (size_t k = 0; k < t->n; k++) {
		if (t->mc[k].st == MC_READY && t->mc[k].out.len > MILTER_HIGH) {
			t->paused = true;
			t->resume = resume;
			t->resume_arg = arg;
			return true;
		}
	}
	return false;
}

void milter_end(struct milter_tx *t, milter_end_cb *cb, void *arg)
{
	t->paused = false;
	t->resume = NULL;
	if (t->ms == MS_START)
		tx_data(t);
	if (t->ms == MS_HDR) {
		if (t->line.len > 0) {
			tx_hdr_line(t, t->line.data, t->line.len);
			buf_reset(&t->line);
		}
		if (t->ms == MS_HDR)
			tx_eoh(t);
	}
	if (t->chunk.len > 0) {
		tx_send_all(t, SMFIC_BODY, SMFIP_NOBODY, SMFIP_NR_BODY, t->chunk.data, t->chunk.len);
		buf_reset(&t->chunk);
	}
	for (size_t k = 0; k < t->n; k++) {
		struct mconn *mc = &t->mc[k];
		if (!mc_live(mc))
			continue;
		const char *kv[] = {"i", t->txid};
		mc_macros(mc, SMFIC_BODYEOB, kv, 2);
		mc_cmd(mc, SMFIC_BODYEOB, NULL, 0, true);
		mc->eob_sent = true;
	}
	t->end_cb = cb;
	t->arg = arg;
	tx_wait_for(t, W_END);
}

void milter_tx_free(struct milter_tx **tp)
{
	struct milter_tx *t = *tp;
	if (t == NULL)
		return;
	for (size_t k = 0; k < t->n; k++) {
		struct mconn *mc = &t->mc[k];
		if (mc->fd >= 0 && (mc->st == MC_READY || mc->st == MC_DONE) && mc->out.len == 0) {
			/* best effort, never waited for: the milter forgets the
			 * transaction and the connection */
			struct buf b = BUF_INIT;
			if (!(mc->st == MC_DONE && mc->eob_sent))
				milter_pkt_put(&b, SMFIC_ABORT, NULL, 0);
			milter_pkt_put(&b, SMFIC_QUIT, NULL, 0);
			ssize_t r = send(mc->fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)r;
			buf_free(&b);
		}
		mc_close(mc);
		free(mc->bar);
		for (size_t j = 0; j < mc->n_edits; j++) {
			free(mc->edits[j].name);
			free(mc->edits[j].value);
		}
		free(mc->edits);
		free(mc->qwhy);
	}
	loop_timer_cancel(t->m->l, &t->defer);
	free(t->mc);
	free(t->edits);
	free(t->ip);
	free(t->rdns);
	free(t->helo);
	free(t->txid);
	free(t->auth);
	free(t->from);
	buf_free(&t->line);
	buf_free(&t->field);
	buf_free(&t->chunk);
	buf_free(&t->name);
	buf_free(&t->value);
	buf_free(&t->tmp);
	free(t);
	*tp = NULL;
}
