/* The outbound SMTP client (src/smtp/client.c) on a real loop, against a
 * scripted SMTP server: a thread on a loopback TCP socket that plays a
 * script of steps (send, expect a line, read the data, STARTTLS, close,
 * stay silent) and records every byte the client sent. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../test.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/tls.h"
#include "smtp/client.h"
#include "smtp/reply.h"

/* ---- the scripted server ---- */

enum op {
	OP_END,
	OP_SEND,   /* send arg */
	OP_EXPECT, /* read one line, it must start with arg */
	OP_DATA,   /* read up to and including CRLF.CRLF into data */
	OP_TLS,    /* SSL_accept */
	OP_CLOSE,  /* close now */
	OP_SILENT, /* read until the client goes (never answer) */
	OP_BIG,    /* send arg repeated 10000 times */
	OP_PART,   /* read some data (at least 100 octets), then close */
	OP_ACCEPT, /* close this connection, accept the next one */
	OP_STALL,  /* read nothing for 3 s, then close */
};

struct step {
	enum op op;
	const char *arg;
};

struct server {
	int lfd, port;
	const struct step *script;
	SSL_CTX *tls;
	pthread_t th;
	/* results */
	struct buf seen; /* every line the client sent, and the data */
	struct buf data; /* the DATA payload as received, through the final dot */
	char err[256];
};

static SSL_CTX *srv_tls_ctx;
static const char *g_auth_user, *g_auth_pass;
static SSL_CTX *g_cctx;    /* a client context other than the default one */
static const char *g_host; /* the target's name, "localhost" when NULL */
static char g_cert[128];   /* the server's self-signed certificate */

struct sio {
	int fd;
	SSL *ssl;
	char buf[65536];
	size_t len;
};

static ssize_t sio_read(struct sio *s, char *p, size_t n)
{
	if (s->ssl) {
		int r = SSL_read(s->ssl, p, (int)n);
		return r > 0 ? r : 0;
	}
	ssize_t r;
	do
		r = read(s->fd, p, n);
	while (r < 0 && errno == EINTR);
	return r > 0 ? r : 0;
}

static void sio_write(struct sio *s, const char *p, size_t n)
{
	if (s->ssl) {
		SSL_write(s->ssl, p, (int)n);
		return;
	}
	while (n > 0) {
		ssize_t r = send(s->fd, p, n, MSG_NOSIGNAL);
		if (r <= 0)
			return;
		p += r;
		n -= (size_t)r;
	}
}

/* One line (with its CRLF) into out; false at EOF. */
static bool sio_line(struct sio *s, struct buf *out)
{
	for (;;) {
		char *nl = memchr(s->buf, '\n', s->len);
		if (nl) {
			size_t k = (size_t)(nl - s->buf) + 1;
			buf_append(out, s->buf, k);
			memmove(s->buf, s->buf + k, s->len - k);
			s->len -= k;
			return true;
		}
		if (s->len == sizeof s->buf)
			return false;
		ssize_t r = sio_read(s, s->buf + s->len, sizeof s->buf - s->len);
		if (r <= 0)
			return false;
		s->len += (size_t)r;
	}
}

static void *server_main(void *arg)
{
	struct server *sv = arg;
	struct sio s = {.fd = -1};
	s.fd = accept(sv->lfd, NULL, NULL);
	if (s.fd < 0) {
		snprintf(sv->err, sizeof sv->err, "accept: %s", strerror(errno));
		return NULL;
	}
	struct timeval tv = {5, 0};
	setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct buf line = BUF_INIT;
	for (const struct step *st = sv->script; st->op != OP_END && !sv->err[0]; st++) {
		switch (st->op) {
		case OP_SEND:
			sio_write(&s, st->arg, strlen(st->arg));
			break;
		case OP_BIG:
			for (int i = 0; i < 10000; i++)
				sio_write(&s, st->arg, strlen(st->arg));
			break;
		case OP_EXPECT:
			buf_reset(&line);
			if (!sio_line(&s, &line)) {
				snprintf(sv->err, sizeof sv->err, "EOF, expected \"%s\"", st->arg);
				break;
			}
			buf_append(&sv->seen, line.data, line.len);
			if (strncmp(line.data, st->arg, strlen(st->arg)) != 0)
				snprintf(sv->err, sizeof sv->err, "got \"%.100s\", expected \"%s\"",
				         line.data, st->arg);
			break;
		case OP_DATA:
			for (;;) {
				buf_reset(&line);
				if (!sio_line(&s, &line)) {
					snprintf(sv->err, sizeof sv->err, "EOF in DATA");
					break;
				}
				buf_append(&sv->data, line.data, line.len);
				if (strcmp(line.data, ".\r\n") == 0)
					break;
			}
			break;
		case OP_PART: {
			char tmp[512];
			size_t got = 0;
			while (got < 100) {
				ssize_t r = sio_read(&s, tmp, sizeof tmp);
				if (r <= 0)
					break;
				got += (size_t)r;
			}
			goto out;
		}
		case OP_TLS:
			s.ssl = SSL_new(srv_tls_ctx);
			SSL_set_fd(s.ssl, s.fd);
			if (s.len > 0) /* nothing may be pending before the handshake */
				s.len = 0;
			if (SSL_accept(s.ssl) != 1) {
				snprintf(sv->err, sizeof sv->err, "SSL_accept failed");
				ERR_clear_error();
			}
			break;
		case OP_CLOSE:
			goto out;
		case OP_ACCEPT:
			if (s.ssl) {
				SSL_free(s.ssl);
				s.ssl = NULL;
			}
			close(s.fd);
			s.len = 0;
			s.fd = accept(sv->lfd, NULL, NULL);
			setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
			break;
		case OP_STALL:
			sleep(3);
			goto out;
		case OP_SILENT: {
			char tmp[512];
			struct timeval tv2 = {4, 0};
			setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv2, sizeof tv2);
			while (read(s.fd, tmp, sizeof tmp) > 0)
				;
			goto out;
		}
		case OP_END:
			break;
		}
	}
	/* Whatever else the client says (QUIT, ...) until it goes. */
	buf_reset(&line);
	while (!sv->err[0] && sio_line(&s, &line))
		;
	buf_append(&sv->seen, line.data, line.len);
out:
	buf_free(&line);
	if (s.ssl) {
		SSL_shutdown(s.ssl);
		SSL_free(s.ssl);
	}
	close(s.fd);
	return NULL;
}

static void server_start(struct server *sv, const struct step *script)
{
	memset(sv, 0, sizeof *sv);
	buf_init(&sv->seen);
	buf_init(&sv->data);
	sv->script = script;
	sv->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bind(sv->lfd, (struct sockaddr *)&a, sizeof a);
	socklen_t al = sizeof a;
	getsockname(sv->lfd, (struct sockaddr *)&a, &al);
	sv->port = ntohs(a.sin_port);
	listen(sv->lfd, 4);
	pthread_create(&sv->th, NULL, server_main, sv);
}

static void server_stop(struct server *sv)
{
	pthread_join(sv->th, NULL);
	close(sv->lfd);
}

static void server_free(struct server *sv)
{
	buf_free(&sv->seen);
	buf_free(&sv->data);
}

/* ---- the client side ---- */

struct run {
	struct loop *l;
	struct smtp_client *c;
	struct smtp_client_msg *m;
	bool opened, open_ok, done, conn_ok;
	enum smtp_status open_status;
	char diag[512];
	char tls[128];
	bool esmtp, verified;
	int n_msgs; /* how many times to send m */
	int sent;
};

static void on_done(void *arg, struct smtp_client *c, struct smtp_client_msg *m, bool conn_ok)
{
	struct run *r = arg;
	r->done = true;
	r->conn_ok = conn_ok;
	if (++r->sent < r->n_msgs && conn_ok) {
		/* keep the first run's results in a copy for the test */
		smtp_client_send(c, m + 1, on_done, r);
		return;
	}
	smtp_client_close(&r->c);
	loop_stop(r->l);
}

static void on_open(void *arg, struct smtp_client *c, bool ok, enum smtp_status st,
                    const char *diag)
{
	struct run *r = arg;
	r->opened = true;
	r->open_ok = ok;
	r->open_status = st;
	snprintf(r->diag, sizeof r->diag, "%s", diag ? diag : "");
	if (!ok) {
		smtp_client_close(&r->c);
		loop_stop(r->l);
		return;
	}
	const struct smtp_client_info *in = smtp_client_info(c);
	snprintf(r->tls, sizeof r->tls, "%s", in->tls);
	r->esmtp = in->esmtp;
	r->verified = in->tls_verified;
	if (r->m == NULL) {
		smtp_client_close(&r->c);
		loop_stop(r->l);
		return;
	}
	smtp_client_send(c, r->m, on_done, r);
}

static void on_guard(void *arg)
{
	struct run *r = arg;
	smtp_client_close(&r->c);
	loop_stop(r->l);
}

static void stop_cb(void *arg)
{
	loop_stop(arg);
}

static int blob(const char *s, size_t n)
{
	int fd = memfd_create("msg", 0);
	if (write(fd, s, n) != (ssize_t)n)
		abort();
	return fd;
}

/* Runs one session of the client against the script. */
static void run_session(struct run *r, struct server *sv, const struct step *script,
                        enum smtp_client_tls tls, struct smtp_client_msg *m, int n_msgs)
{
	char *err = NULL;
	static SSL_CTX *cctx;
	if (cctx == NULL)
		cctx = tls_client_ctx_new(NULL, &err);
	free(err);
	server_start(sv, script);
	memset(r, 0, sizeof *r);
	r->l = loop_new();
	r->m = m;
	r->n_msgs = n_msgs ? n_msgs : 1;
	struct smtp_client_config cfg = {
	    .helo = "client.test",
	    .connect_timeout = 2,
	    .command_timeout = 1,
	    .data_timeout = 1,
	    .max_reply = 4096,
	    .tls_ctx = g_cctx ? g_cctx : cctx,
	};
	struct smtp_client_target t = {.host = g_host ? g_host : "localhost",
	                               .tls = tls,
	                               .auth_user = g_auth_user,
	                               .auth_pass = g_auth_pass};
	struct sockaddr_in *a = (struct sockaddr_in *)&t.addr;
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->sin_port = htons((uint16_t)sv->port);
	t.addrlen = sizeof *a;
	r->c = smtp_client_open(r->l, &cfg, &t, on_open, r);
	struct timer *guard = loop_timer_add(r->l, 15000, on_guard, r);
	loop_run(r->l);
	loop_timer_cancel(r->l, &guard);
	server_stop(sv);
	/* let the conn's deferred close run: the loop's clock is stale after
	 * the join, so a few short runs */
	for (int i = 0; i < 5; i++) {
		loop_timer_add(r->l, 20, stop_cb, r->l);
		loop_run(r->l);
	}
	loop_free(&r->l);
}

#define EHLO_PIPE                                                                                  \
	"250-server.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n"                 \
	"250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"

static const char MSG1[] = "Subject: t\r\n\r\nhello\r\n.dot\r\n";

static void msg_init(struct smtp_client_msg *m, struct smtp_client_rcpt *rc, size_t n,
                     const char *body, size_t len)
{
	memset(m, 0, sizeof *m);
	m->mail_from = "s@a.test";
	m->fd = blob(body, len);
	m->size = len;
	m->rcpt = rc;
	m->n_rcpt = n;
}

/* MSG1 from s@a.test to r1@b.test alone. */
static void msg_one(struct smtp_client_msg *m, struct smtp_client_rcpt rc[1])
{
	rc[0] = (struct smtp_client_rcpt){.addr = "r1@b.test"};
	msg_init(m, rc, 1, MSG1, sizeof MSG1 - 1);
}

/* The script of one transaction without PIPELINING, one recipient, every
 * reply positive; mail: what MAIL FROM is expected to start with. */
#define TX_ONE_OK(mail)                                                                            \
	{OP_EXPECT, mail}, {OP_SEND, "250 ok\r\n"}, {OP_EXPECT, "RCPT TO:"}, {OP_SEND, "250 ok\r\n"}, \
	    {OP_EXPECT, "DATA"}, {OP_SEND, "354 go\r\n"}, {OP_DATA, NULL}, {OP_SEND, "250 ok\r\n"}

static void msg_done(struct smtp_client_msg *m)
{
	smtp_client_msg_reset(m);
	close(m->fd);
}

static void t_pipelined(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 server.test ESMTP\r\n"},
	    {OP_EXPECT, "EHLO client.test\r\n"},
	    {OP_SEND, EHLO_PIPE},
	    {OP_EXPECT, "MAIL FROM:<s@a.test> SIZE=27 RET=HDRS ENVID=e1\r\n"},
	    {OP_EXPECT, "RCPT TO:<r1@b.test> NOTIFY=FAILURE ORCPT=rfc822;r1@b.test\r\n"},
	    {OP_EXPECT, "RCPT TO:<r2@b.test>\r\n"},
	    {OP_EXPECT, "DATA\r\n"},
	    {OP_SEND, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n"},
	    {OP_DATA, NULL},
	    {OP_SEND, "250 2.0.0 queued as X\r\n"},
	    {OP_EXPECT, "QUIT\r\n"},
	    {OP_SEND, "221 bye\r\n"},
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[2] = {
	    {.addr = "r1@b.test", .notify = "FAILURE", .orcpt = "rfc822;r1@b.test"},
	    {.addr = "r2@b.test"}};
	struct smtp_client_msg m;
	msg_init(&m, rc, 2, MSG1, sizeof MSG1 - 1);
	m.ret = "HDRS";
	m.envid = "e1";
	run_session(&r, &sv, sc, SMTP_TLS_MAY, &m, 1);
	CHECK_STR(1, sv.err, "");
	CHECK(r.open_ok && r.done && r.conn_ok && r.esmtp);
	CHECK_INT(2, rc[0].status, SMTP_ST_OK);
	CHECK_INT(3, rc[1].status, SMTP_ST_OK);
	CHECK_INT(4, rc[0].code, 250);
	CHECK_STR(5, rc[0].enh, "2.0.0");
	CHECK_STR(6, rc[0].reply, "250 2.0.0 queued as X");
	CHECK(m.dsn_relayed);
	/* RFC 5321 4.5.2: the leading dot doubled */
	CHECK_STR(7, sv.data.data, "Subject: t\r\n\r\nhello\r\n..dot\r\n.\r\n");
	msg_done(&m);
	server_free(&sv);
}

static void t_helo_fallback(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 old.test\r\n"}, {OP_EXPECT, "EHLO client.test\r\n"},
	    {OP_SEND, "502 what\r\n"},     {OP_EXPECT, "HELO client.test\r\n"},
	    {OP_SEND, "250 old.test\r\n"}, {OP_EXPECT, "MAIL FROM:<s@a.test>\r\n"},
	    {OP_SEND, "250 ok\r\n"},       {OP_EXPECT, "RCPT TO:<r1@b.test>\r\n"},
	    {OP_SEND, "250 ok\r\n"},       {OP_EXPECT, "DATA\r\n"},
	    {OP_SEND, "354 go\r\n"},       {OP_DATA, NULL},
	    {OP_SEND, "250 ok\r\n"},       {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[1] = {{.addr = "r1@b.test", .notify = "NEVER"}};
	struct smtp_client_msg m;
	msg_init(&m, rc, 1, MSG1, sizeof MSG1 - 1);
	m.envid = "x"; /* not passed on: no DSN */
	run_session(&r, &sv, sc, SMTP_TLS_MAY, &m, 1);
	CHECK_STR(1, sv.err, "");
	CHECK(r.open_ok && !r.esmtp);
	CHECK_INT(2, rc[0].status, SMTP_ST_OK);
	CHECK_STR(3, rc[0].enh, "2.0.0");
	CHECK(!m.dsn_relayed);
	msg_done(&m);
	server_free(&sv);
}

static void t_per_rcpt(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, EHLO_PIPE},
	    {OP_EXPECT, "MAIL FROM:"},
	    {OP_EXPECT, "RCPT TO:<r1@b.test>"},
	    {OP_EXPECT, "RCPT TO:<r2@b.test>"},
	    {OP_EXPECT, "RCPT TO:<r3@b.test>"},
	    {OP_EXPECT, "DATA"},
	    {OP_SEND, "250 ok\r\n250 ok\r\n450 4.2.1 try later\r\n550-5.1.1 no such\r\n"
	              "550 5.1.1 user\r\n354 go\r\n"},
	    {OP_DATA, NULL},
	    {OP_SEND, "250 ok\r\n"},
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[3] = {
	    {.addr = "r1@b.test"}, {.addr = "r2@b.test"}, {.addr = "r3@b.test"}};
	struct smtp_client_msg m;
	msg_init(&m, rc, 3, MSG1, sizeof MSG1 - 1);
	run_session(&r, &sv, sc, SMTP_TLS_NONE, &m, 1);
	CHECK_STR(1, sv.err, "");
	CHECK_INT(2, rc[0].status, SMTP_ST_OK);
	CHECK_INT(3, rc[1].status, SMTP_ST_TEMP);
	CHECK_INT(4, rc[1].code, 450);
	CHECK_STR(5, rc[1].enh, "4.2.1");
	CHECK_INT(6, rc[2].status, SMTP_ST_PERM);
	CHECK_STR(7, rc[2].enh, "5.1.1");
	CHECK_STR(8, rc[2].reply, "550-5.1.1 no such / 550 5.1.1 user");
	msg_done(&m);
	server_free(&sv);
}

static void t_mail_refused(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, EHLO_PIPE},
	    {OP_EXPECT, "MAIL FROM:"},
	    {OP_EXPECT, "RCPT TO:"},
	    {OP_EXPECT, "DATA"},
	    {OP_SEND, "550 5.7.1 go away\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no RCPT\r\n"},
	    {OP_EXPECT, "QUIT"},
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[1];
	struct smtp_client_msg m;
	msg_one(&m, rc);
	run_session(&r, &sv, sc, SMTP_TLS_NONE, &m, 1);
	CHECK_STR(1, sv.err, "");
	CHECK_INT(2, rc[0].status, SMTP_ST_PERM);
	CHECK_INT(3, rc[0].code, 550);
	CHECK_STR(4, rc[0].enh, "5.7.1");
	CHECK(r.conn_ok);
	msg_done(&m);
	server_free(&sv);
}

static void t_cut_mid_data(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250-PIPELINING\r\n250 SIZE\r\n"},
	    {OP_EXPECT, "MAIL FROM:"},
	    {OP_EXPECT, "RCPT TO:"},
	    {OP_EXPECT, "RCPT TO:"},
	    {OP_EXPECT, "DATA"},
	    {OP_SEND, "250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n"},
	    {OP_PART, NULL},
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[2] = {{.addr = "r1@b.test"}, {.addr = "r2@b.test"}};
	struct smtp_client_msg m;
	/* large enough not to fit in the socket buffers at once */
	size_t n = 4 << 20;
	char *big = malloc(n);
	memset(big, 'x', n);
	for (size_t i = 80; i < n; i += 80)
		big[i] = '\n';
	msg_init(&m, rc, 2, big, n);
	free(big);
	run_session(&r, &sv, sc, SMTP_TLS_NONE, &m, 1);
	CHECK_STR(1, sv.err, "");
	CHECK(r.done && !r.conn_ok);
	CHECK_INT(2, rc[0].status, SMTP_ST_TEMP);
	CHECK_INT(3, rc[1].status, SMTP_ST_PERM); /* its RCPT answer stays */
	msg_done(&m);
	server_free(&sv);
}

/* A hostile or dead next hop: bounded, TEMP. */
static void t_hostile(void)
{
	static const struct step endless[] = {
	    {OP_BIG, "220-more and more and more\r\n"},
	    {OP_END, NULL},
	};
	static const struct step noend[] = {
	    {OP_BIG, "220 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	    {OP_END, NULL},
	};
	static const struct step silent[] = {
	    {OP_SILENT, NULL},
	    {OP_END, NULL},
	};
	static const struct step greet5[] = {
	    {OP_SEND, "554 5.7.1 not you\r\n"},
	    {OP_EXPECT, "QUIT"},
	    {OP_END, NULL},
	};
	static const struct step greet4[] = {
	    {OP_SEND, "421 4.3.2 busy\r\n"},
	    {OP_END, NULL},
	};
	static const struct step bad[] = {
	    {OP_SEND, "220 ok\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-x\r\n251 y\r\n"}, /* the code changes */
	    {OP_END, NULL},
	};
	static const struct step silent_dot[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, EHLO_PIPE},
	    {OP_EXPECT, "MAIL FROM:"},
	    {OP_EXPECT, "RCPT TO:"},
	    {OP_EXPECT, "DATA"},
	    {OP_SEND, "250 ok\r\n250 ok\r\n354 go\r\n"},
	    {OP_DATA, NULL},
	    {OP_SILENT, NULL},
	    {OP_END, NULL},
	};
	struct {
		const struct step *sc;
		enum smtp_status st;
		const char *diag;
	} cases[] = {
	    {endless, SMTP_ST_TEMP, "bad reply from the next hop: reply too long"},
	    {noend, SMTP_ST_TEMP, "bad reply from the next hop: reply line too long"},
	    {silent, SMTP_ST_TEMP, "timeout waiting for the greeting"},
	    {greet5, SMTP_ST_PERM, "greeting: 554 5.7.1 not you"},
	    {greet4, SMTP_ST_TEMP, "greeting: 421 4.3.2 busy"},
	    {bad, SMTP_ST_TEMP,
	     "bad reply from the next hop: reply code changes inside a multi-line reply"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct server sv;
		struct run r;
		run_session(&r, &sv, cases[i].sc, SMTP_TLS_NONE, NULL, 1);
		CHECK(r.opened && !r.open_ok);
		CHECK_INT((int)i, r.open_status, cases[i].st);
		CHECK_STR((int)i, r.diag, cases[i].diag);
		server_free(&sv);
	}
	/* silence after the final dot: TEMP, nothing OK */
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[1];
	struct smtp_client_msg m;
	msg_one(&m, rc);
	run_session(&r, &sv, silent_dot, SMTP_TLS_NONE, &m, 1);
	CHECK(r.done && !r.conn_ok);
	CHECK_INT(10, rc[0].status, SMTP_ST_TEMP);
	CHECK_STR(11, rc[0].reply, "timeout waiting for the reply to the end of data");
	msg_done(&m);
	server_free(&sv);
}

static void t_starttls(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO client.test"},
	    {OP_SEND, "250-s\r\n250-STARTTLS\r\n250 PIPELINING\r\n"},
	    {OP_EXPECT, "STARTTLS"},
	    /* RFC 3207 4.2 / the injection attack: a reply sent in plaintext
	     * after 220 must not be read as the answer to the next EHLO */
	    {OP_SEND, "220 go ahead\r\n550 5.0.0 injected\r\n"},
	    {OP_TLS, NULL},
	    {OP_EXPECT, "EHLO client.test"},
	    {OP_SEND, "250-s\r\n250 8BITMIME\r\n"},
	    TX_ONE_OK("MAIL FROM:<s@a.test>"),
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[1];
	struct smtp_client_msg m;
	msg_one(&m, rc);
	run_session(&r, &sv, sc, SMTP_TLS_ENCRYPT, &m, 1);
	CHECK_STR(1, sv.err, "");
	CHECK(r.open_ok);
	CHECK(strncmp(r.tls, "TLSv1.", 6) == 0);
	CHECK_INT(2, rc[0].status, SMTP_ST_OK);
	msg_done(&m);
	server_free(&sv);

	/* ENCRYPT without STARTTLS offered: TEMP */
	static const struct step sc2[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250 s\r\n"},
	    {OP_END, NULL},
	};
	run_session(&r, &sv, sc2, SMTP_TLS_ENCRYPT, NULL, 1);
	CHECK(!r.open_ok);
	CHECK_INT(3, r.open_status, SMTP_ST_TEMP);
	CHECK_STR(4, r.diag, "TLS required but STARTTLS is not offered");
	server_free(&sv);

	/* VERIFY against a self-signed certificate: the handshake fails, TEMP */
	static const struct step sc3[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250 STARTTLS\r\n"},
	    {OP_EXPECT, "STARTTLS"},
	    {OP_SEND, "220 go\r\n"},
	    {OP_TLS, NULL},
	    {OP_END, NULL},
	};
	run_session(&r, &sv, sc3, SMTP_TLS_VERIFY, NULL, 1);
	CHECK(!r.open_ok);
	CHECK_INT(5, r.open_status, SMTP_ST_TEMP);
	CHECK(strncmp(r.diag, "certificate verify failed", 25) == 0);
	server_free(&sv);
}

static void t_size_utf8(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250-PIPELINING\r\n250 SIZE 10\r\n"},
	    {OP_EXPECT, "QUIT"}, /* nothing sent of either message */
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[2][1] = {{{.addr = "r1@b.test"}}, {{.addr = "r2@b.test"}}};
	struct smtp_client_msg m[2];
	msg_init(&m[0], rc[0], 1, MSG1, sizeof MSG1 - 1);
	msg_init(&m[1], rc[1], 1, "x\r\n", 3);
	m[1].smtputf8 = true;
	run_session(&r, &sv, sc, SMTP_TLS_NONE, m, 2);
	CHECK_STR(1, sv.err, "");
	CHECK_INT(2, rc[0][0].status, SMTP_ST_PERM);
	CHECK_STR(3, rc[0][0].enh, "5.3.4");
	CHECK_INT(4, rc[1][0].status, SMTP_ST_PERM);
	CHECK_STR(5, rc[1][0].enh, "5.6.7");
	CHECK(r.conn_ok);
	msg_done(&m[0]);
	msg_done(&m[1]);
	server_free(&sv);
}

/* No 8BITMIME: quoted-printable on the wire; lone LF -> CRLF; RSET before
 * a second transaction after a failed one. */
static void t_downgrade_rset(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250 PIPELINING\r\n"},
	    {OP_EXPECT, "MAIL FROM:<s@a.test>\r\n"}, /* no BODY=8BITMIME */
	    {OP_EXPECT, "RCPT TO:"},
	    {OP_EXPECT, "DATA"},
	    {OP_SEND, "250 ok\r\n250 ok\r\n354 go\r\n"},
	    {OP_DATA, NULL},
	    {OP_SEND, "451 4.3.0 later\r\n"},
	    {OP_EXPECT, "MAIL FROM:"},
	    {OP_EXPECT, "RCPT TO:"},
	    {OP_EXPECT, "DATA"},
	    {OP_SEND, "250 ok\r\n452 4.2.2 full\r\n554 5.5.1 no valid recipients\r\n"},
	    {OP_EXPECT, "RSET"},
	    {OP_EXPECT, "MAIL FROM:"},
	    {OP_EXPECT, "RCPT TO:"},
	    {OP_EXPECT, "DATA"},
	    {OP_SEND, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"},
	    {OP_DATA, NULL},
	    {OP_SEND, "250 ok\r\n"},
	    {OP_END, NULL},
	};
	static const char body[] = "Subject: x\n\ncaf\xc3\xa9 = ok\n.\n";
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[3][1] = {
	    {{.addr = "a@b"}}, {{.addr = "b@b"}}, {{.addr = "c@b"}}};
	struct smtp_client_msg m[3];
	for (int i = 0; i < 3; i++) {
		msg_init(&m[i], rc[i], 1, body, sizeof body - 1);
		m[i].body_8bit = true;
	}
	run_session(&r, &sv, sc, SMTP_TLS_NONE, m, 3);
	CHECK_STR(1, sv.err, "");
	CHECK_INT(2, rc[0][0].status, SMTP_ST_TEMP);
	CHECK_INT(3, rc[1][0].status, SMTP_ST_TEMP);
	CHECK_INT(4, rc[1][0].code, 452);
	CHECK_INT(5, rc[2][0].status, SMTP_ST_OK);
	/* both DATA payloads, the same */
	static const char want[] = "Subject: x\r\nMIME-Version: 1.0\r\n"
	                           "Content-Type: text/plain; charset=unknown-8bit\r\n"
	                           "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
	                           "caf=C3=A9 =3D ok\r\n..\r\n.\r\n";
	char both[512];
	snprintf(both, sizeof both, "%s%s", want, want);
	CHECK_STR(6, sv.data.data, both);
	for (int i = 0; i < 3; i++)
		msg_done(&m[i]);
	server_free(&sv);
}

/* MAY: a handshake that fails is retried at once without TLS. */
static void t_may_retry(void)
{
	static const struct step sc[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250 STARTTLS\r\n"},
	    {OP_EXPECT, "STARTTLS"},
	    {OP_SEND, "220 go\r\nthis is not TLS at all\r\n"},
	    {OP_ACCEPT, NULL},
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250 STARTTLS\r\n"},
	    TX_ONE_OK("MAIL FROM:"),
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[1];
	struct smtp_client_msg m;
	msg_one(&m, rc);
	run_session(&r, &sv, sc, SMTP_TLS_MAY, &m, 1);
	CHECK_STR(1, sv.err, "");
	CHECK(r.open_ok);
	CHECK_STR(2, r.tls, "");
	CHECK_INT(3, rc[0].status, SMTP_ST_OK);
	msg_done(&m);
	server_free(&sv);
}

/* Implicit TLS (RFC 8314) with AUTH PLAIN, then AUTH LOGIN; AUTH never in
 * the clear. */
static void t_auth(void)
{
	static const struct step plain[] = {
	    {OP_TLS, NULL},
	    {OP_SEND, "220 relay\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-relay\r\n250 AUTH LOGIN PLAIN\r\n"},
	    /* RFC 4616: NUL user NUL pass */
	    {OP_EXPECT, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n"},
	    {OP_SEND, "235 2.7.0 ok\r\n"},
	    {OP_EXPECT, "QUIT"},
	    {OP_END, NULL},
	};
	static const struct step login[] = {
	    {OP_TLS, NULL},
	    {OP_SEND, "220 relay\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-relay\r\n250 AUTH LOGIN\r\n"},
	    {OP_EXPECT, "AUTH LOGIN\r\n"},
	    {OP_SEND, "334 VXNlcm5hbWU6\r\n"},
	    {OP_EXPECT, "dXNlcg==\r\n"},
	    {OP_SEND, "334 UGFzc3dvcmQ6\r\n"},
	    {OP_EXPECT, "cGFzcw==\r\n"},
	    {OP_SEND, "235 2.7.0 ok\r\n"},
	    {OP_EXPECT, "QUIT"},
	    {OP_END, NULL},
	};
	static const struct step bad[] = {
	    {OP_TLS, NULL},
	    {OP_SEND, "220 relay\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-relay\r\n250 AUTH PLAIN\r\n"},
	    {OP_EXPECT, "AUTH PLAIN"},
	    {OP_SEND, "535 5.7.8 no\r\n"},
	    {OP_END, NULL},
	};
	static const struct step clear[] = {
	    {OP_SEND, "220 relay\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-relay\r\n250 AUTH PLAIN\r\n"},
	    {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	g_auth_user = "user";
	g_auth_pass = "pass";
	run_session(&r, &sv, plain, SMTP_TLS_IMPLICIT, NULL, 1);
	CHECK_STR(1, sv.err, "");
	CHECK(r.open_ok && strncmp(r.tls, "TLSv1.", 6) == 0);
	server_free(&sv);
	run_session(&r, &sv, login, SMTP_TLS_IMPLICIT, NULL, 1);
	CHECK_STR(2, sv.err, "");
	CHECK(r.open_ok);
	server_free(&sv);
	run_session(&r, &sv, bad, SMTP_TLS_IMPLICIT, NULL, 1);
	CHECK(!r.open_ok);
	CHECK_INT(3, r.open_status, SMTP_ST_TEMP);
	CHECK_STR(4, r.diag, "AUTH: 535 5.7.8 no");
	server_free(&sv);
	run_session(&r, &sv, clear, SMTP_TLS_NONE, NULL, 1);
	CHECK(!r.open_ok);
	CHECK_STR(5, r.diag, "AUTH refused: the connection is not encrypted");
	CHECK(strstr(sv.seen.data, "AUTH") == NULL);
	server_free(&sv);
	g_auth_user = g_auth_pass = NULL;
}

/* A next hop that stops reading mid-DATA: data_timeout per block, TEMP.
 * Lines over 998 octets are broken (RFC 5321 4.5.3.1.6). */
static void t_stall_long_lines(void)
{
	static const struct step stall[] = {
	    {OP_SEND, "220 s\r\n"},    {OP_EXPECT, "EHLO"},     {OP_SEND, "250 s\r\n"},
	    {OP_EXPECT, "MAIL FROM:"}, {OP_SEND, "250 ok\r\n"}, {OP_EXPECT, "RCPT TO:"},
	    {OP_SEND, "250 ok\r\n"},   {OP_EXPECT, "DATA"},     {OP_SEND, "354 go\r\n"},
	    {OP_STALL, NULL},          {OP_END, NULL},
	};
	struct server sv;
	struct run r;
	struct smtp_client_rcpt rc[1] = {{.addr = "r1@b.test"}};
	struct smtp_client_msg m;
	size_t n = 32 << 20;
	char *big = malloc(n);
	memset(big, 'y', n);
	msg_init(&m, rc, 1, big, n);
	free(big);
	run_session(&r, &sv, stall, SMTP_TLS_NONE, &m, 1);
	CHECK(r.done && !r.conn_ok);
	CHECK_INT(1, rc[0].status, SMTP_ST_TEMP);
	CHECK_STR(2, rc[0].reply, "timeout waiting for the message data to be sent");
	msg_done(&m);
	server_free(&sv);

	static const struct step longl[] = {
	    {OP_SEND, "220 s\r\n"},    {OP_EXPECT, "EHLO"},     {OP_SEND, "250 s\r\n"},
	    TX_ONE_OK("MAIL FROM:"), {OP_END, NULL},
	};
	char line[2100];
	memset(line, 'z', sizeof line);
	line[0] = '.';
	msg_init(&m, rc, 1, line, sizeof line);
	run_session(&r, &sv, longl, SMTP_TLS_NONE, &m, 1);
	CHECK_STR(3, sv.err, "");
	CHECK_INT(4, rc[0].status, SMTP_ST_OK);
	/* ".." + 997 z (RFC 5321 4.5.3.1.6: the doubled dot is not counted),
	 * then 998 z, then the last 104 z */
	CHECK_INT(5, sv.data.len, 998 + 2 + 998 + 2 + 105 + 2 + 3);
	size_t len = 0, maxlen = 0;
	for (size_t i = 0; i < sv.data.len; i++) {
		if (sv.data.data[i] == '\n') {
			maxlen = len > maxlen ? len : maxlen;
			len = 0;
		} else {
			len++;
		}
	}
	CHECK_INT(6, maxlen, 1000); /* the doubled dot + 998 + CR */
	msg_done(&m);
	server_free(&sv);
}

/* VERIFY: the chain against the CA file and the name (RFC 6125 via
 * X509_VERIFY_PARAM_set1_host): the right name passes, another fails. */
static void t_verify(void)
{
	static const struct step ok[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250 STARTTLS\r\n"},
	    {OP_EXPECT, "STARTTLS"},
	    {OP_SEND, "220 go\r\n"},
	    {OP_TLS, NULL},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250 s\r\n"},
	    {OP_EXPECT, "QUIT"},
	    {OP_END, NULL},
	};
	static const struct step bad[] = {
	    {OP_SEND, "220 s\r\n"},
	    {OP_EXPECT, "EHLO"},
	    {OP_SEND, "250-s\r\n250 STARTTLS\r\n"},
	    {OP_EXPECT, "STARTTLS"},
	    {OP_SEND, "220 go\r\n"},
	    {OP_TLS, NULL},
	    {OP_END, NULL},
	};
	char *err = NULL;
	g_cctx = tls_client_ctx_new(g_cert, &err);
	CHECK(g_cctx != NULL);
	if (g_cctx == NULL)
		return;
	struct server sv;
	struct run r;
	run_session(&r, &sv, ok, SMTP_TLS_VERIFY, NULL, 1);
	CHECK_STR(1, sv.err, "");
	CHECK(r.open_ok);
	CHECK(r.verified);
	server_free(&sv);
	g_host = "other.test";
	run_session(&r, &sv, bad, SMTP_TLS_VERIFY, NULL, 1);
	CHECK(!r.open_ok);
	CHECK_STR(2, r.diag, "certificate verify failed: hostname mismatch");
	server_free(&sv);
	/* ENCRYPT does not check: the same server is fine */
	run_session(&r, &sv, ok, SMTP_TLS_ENCRYPT, NULL, 1);
	CHECK(r.open_ok && !r.verified);
	server_free(&sv);
	g_host = NULL;
	SSL_CTX_free(g_cctx);
	g_cctx = NULL;
}

/* ---- the reply parser (src/smtp/reply.c) ---- */

static void test_reply(void)
{
	static const struct {
		const char *in;
		size_t max;
		int ret; /* >0: octets; 0 incomplete; -1 error */
		int code;
		const char *enh;
		const char *full;
		const char *err;
	} cases[] = {
	    {"250 ok\r\n", 512, 8, 250, "", "250 ok", NULL},
	    {"250 2.1.0 ok\r\n", 512, 14, 250, "2.1.0", "250 2.1.0 ok", NULL},
	    {"250\r\n", 512, 5, 250, "", "250", NULL},
	    {"250 ok\n", 512, 7, 250, "", "250 ok", NULL}, /* bare LF tolerated */
	    {"550-5.1.1 a\r\n550 5.1.1 b\r\n", 512, 26, 550, "5.1.1", "550-5.1.1 a / 550 5.1.1 b",
	     NULL},
	    {"250 ok\r\n220 next\r\n", 512, 8, 250, "", "250 ok", NULL},
	    /* the class of the enhanced code must be the reply's */
	    {"550 4.1.1 x\r\n", 512, 13, 550, "", "550 4.1.1 x", NULL},
	    {"450 4.1234.1 x\r\n", 512, 16, 450, "", "450 4.1234.1 x", NULL},
	    {"450 4.7.12x\r\n", 512, 13, 450, "", "450 4.7.12x", NULL},
	    {"250-a\r\n", 512, 0, 0, "", "", NULL},
	    {"25", 512, 0, 0, "", "", NULL},
	    {"", 512, 0, 0, "", "", NULL},
	    {"2x", 512, -1, 0, "", "", "malformed reply code"},
	    {"250-a\r\n251 b\r\n", 512, -1, 0, "", "",
	     "reply code changes inside a multi-line reply"},
	    {"150 x\r\n", 512, -1, 0, "", "", "malformed reply code"},
	    {"260 x\r\n", 512, -1, 0, "", "", "malformed reply code"},
	    {"25 x\r\n", 512, -1, 0, "", "", "malformed reply code"},
	    {"250x\r\n", 512, -1, 0, "", "", "malformed reply line"},
	    {"250 a\rb\r\n", 512, -1, 0, "", "", "CR or NUL inside a reply line"},
	    {"250-aaaa\r\n250-aaaa\r\n250 a\r\n", 16, -1, 0, "", "", "reply too long"},
	    {"250-aaaa\r\n250-", 16, 0, 0, "", "", NULL},
	    {"250-aaaa\r\n250-aaaa", 16, -1, 0, "", "", "reply too long"},
	};
	struct smtp_reply r;
	smtp_reply_init(&r);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *err = NULL;
		ssize_t n =
		    smtp_reply_parse(cases[i].in, strlen(cases[i].in), cases[i].max, &r, &err);
		CHECK_INT((int)i, n, cases[i].ret);
		CHECK_STR((int)i, err, cases[i].err);
		if (n > 0) {
			CHECK_INT((int)i, r.code, cases[i].code);
			CHECK_STR((int)i, r.enh, cases[i].enh);
			CHECK_STR((int)i, r.full.data, cases[i].full);
		}
	}
	/* a line without end: an error once it passes the line limit */
	char big[SMTP_REPLY_LINE_MAX + 10];
	memset(big, 'a', sizeof big);
	memcpy(big, "250 ", 4);
	const char *err = NULL;
	CHECK_INT(100, smtp_reply_parse(big, SMTP_REPLY_LINE_MAX, 1 << 20, &r, &err), 0);
	CHECK_INT(101, smtp_reply_parse(big, sizeof big, 1 << 20, &r, &err), -1);
	CHECK_STR(102, err, "reply line too long");
	/* too many lines */
	struct buf b = BUF_INIT;
	for (int i = 0; i < SMTP_REPLY_MAX_LINES; i++)
		buf_appends(&b, "250-x\r\n");
	buf_appends(&b, "250 x\r\n");
	CHECK_INT(103, smtp_reply_parse(b.data, b.len, 1 << 20, &r, &err), -1);
	CHECK_STR(104, err, "too many reply lines");
	buf_free(&b);
	smtp_reply_free(&r);
}

static void test_ehlo(void)
{
	static const char in[] = "250-mx.example Hello\r\n250-PIPELINING\r\n250-size 35882577\r\n"
	                         "250-8BITMIME\r\n250-AUTH=LOGIN\r\n250-AUTH CRAM-MD5 PLAIN\r\n"
	                         "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-DSN\r\n"
	                         "250-SMTPUTF8\r\n250 CHUNKING\r\n";
	struct smtp_reply r;
	struct smtp_ehlo e;
	const char *err;
	smtp_reply_init(&r);
	CHECK_INT(1, smtp_reply_parse(in, sizeof in - 1, 4096, &r, &err), (int)(sizeof in - 1));
	smtp_ehlo_parse(&r, &e);
	CHECK(e.pipelining && e.size && e.eightbitmime && e.auth_login && e.auth_plain &&
	      e.starttls && e.dsn && e.smtputf8 && e.chunking);
	CHECK_INT(2, e.size_max, 35882577);
	/* the greeting line is not a keyword; SIZE without a number: no limit */
	static const char in2[] = "250-PIPELINING\r\n250 SIZE\r\n";
	CHECK_INT(3, smtp_reply_parse(in2, sizeof in2 - 1, 4096, &r, &err), (int)(sizeof in2 - 1));
	smtp_ehlo_parse(&r, &e);
	CHECK(!e.pipelining && e.size && e.size_max == 0 && !e.auth_plain);
	smtp_reply_free(&r);
}

int main(void)
{
	char dir[] = "/tmp/smtp_client_XXXXXX", cert[128], key[128], *err = NULL;
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(cert, sizeof cert, "%s/c.pem", dir);
	snprintf(g_cert, sizeof g_cert, "%s", cert);
	snprintf(key, sizeof key, "%s/k.pem", dir);
	if (tls_selfsigned_ensure(cert, key, "localhost", &err) < 0 ||
	    (srv_tls_ctx = tls_server_ctx_new(cert, key, &err)) == NULL) {
		printf("TLS setup: %s\n", err);
		return 1;
	}
	if (getenv("TEST_DEBUG"))
		log_set_level(LOG_DEBUG);
	test_run("reply", test_reply);
	test_run("ehlo", test_ehlo);
	test_run("pipelined", t_pipelined);
	test_run("helo_fallback", t_helo_fallback);
	test_run("per_rcpt", t_per_rcpt);
	test_run("mail_refused", t_mail_refused);
	test_run("cut_mid_data", t_cut_mid_data);
	test_run("hostile", t_hostile);
	test_run("starttls", t_starttls);
	test_run("size_utf8", t_size_utf8);
	test_run("downgrade_rset", t_downgrade_rset);
	test_run("may_retry", t_may_retry);
	test_run("auth", t_auth);
	test_run("verify", t_verify);
	test_run("stall_long_lines", t_stall_long_lines);
	unlink(cert);
	unlink(key);
	rmdir(dir);
	SSL_CTX_free(srv_tls_ctx);
	return test_done("test_smtp_client");
}
