"""POP3 (110 with STLS, 995 with implicit TLS): every command and state
transition over real sockets, byte-exact RETR against `postern mail cat`,
[IN-USE], deletion only at QUIT, UIDL stability across restarts, limits,
and real clients (Python poplib, fetchmail, curl)."""
import base64
import os
import poplib
import re
import shutil
import smtplib
import subprocess
import time

import pytest

from conftest import SOCK_TIMEOUT, USERS, LineClient, client_tls_context, crlf, make_message

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
poplib._MAXLINE = 1 << 20  # our test messages have long lines


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def deliver(srv, rcpt, msg, frm="sender@remote.example"):
    with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=SOCK_TIMEOUT) as s:
        s.ehlo("client.example.net")
        s.sendmail(frm, [rcpt], msg)


def simple(subject, body="hello\r\n"):
    return make_message("sender@remote.example", ALICE, subject, body)


class Pop(LineClient):
    """Raw POP3 client (conftest.LineClient): send lines, read single- and
    multi-line responses."""

    def _greeting(self):
        return self.line()

    def line(self):
        deadline = time.monotonic() + self.timeout
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "replace")

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.line()

    def body(self):
        """The rest of a multi-line response, unstuffed, as bytes with CRLF."""
        deadline = time.monotonic() + self.timeout
        while True:
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                raw, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                return re.sub(rb"(^|\r\n)\.", rb"\1", raw)
            self._fill(deadline)

    def multi(self, line):
        first = self.cmd(line)
        if not first.startswith("+OK"):
            return first, None
        return first, self.body()

    def stls(self):
        r = self.cmd("STLS")
        assert r.startswith("+OK"), r
        self._starttls()
        return r

    def login(self, user=ALICE, password=None):
        r = self.cmd("USER " + user)
        assert r.startswith("+OK"), r
        return self.cmd("PASS " + (password or USERS[user]))

    def closed(self, timeout=5.0):
        return self.expect_closed(timeout)


def pop(srv, tls=False, role="pop3"):
    return Pop(srv.host, srv.ports[role], tls=tls or role == "pop3s")


def logged_in(srv, user=ALICE, role="pop3s"):
    p = pop(srv, role=role)
    if role == "pop3":
        p.stls()
    r = p.login(user)
    assert r.startswith("+OK"), r
    return p


def poplib_client(srv, user=ALICE):
    c = poplib.POP3_SSL(srv.host, srv.ports["pop3s"], context=client_tls_context(), timeout=SOCK_TIMEOUT)
    c.user(user)
    c.pass_(USERS[user])
    return c


@pytest.fixture(scope="module")
def popsrv(make_server_module):
    return make_server_module


@pytest.fixture(scope="module")
def make_server_module(tmp_path_factory, tls_pair):
    from conftest import _new_server
    srv = _new_server(tmp_path_factory, tls_pair, "pop3")
    yield srv
    srv.stop()


# --------------------------------------------------------------------------
# AUTHORIZATION, STLS, CAPA
# --------------------------------------------------------------------------
def test_greeting_capa_and_plaintext_refused(popsrv):
    with pop(popsrv) as p:
        assert p.greeting.startswith("+OK"), p.greeting
        assert "<" not in p.greeting, "APOP timestamp offered: %r" % p.greeting
        first, body = p.multi("CAPA")
        caps = body.decode().split("\r\n")
        for cap in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "STLS", "UTF8",
                    "EXPIRE NEVER", "IMPLEMENTATION postern"):
            assert cap in caps, (cap, caps)
        assert "USER" not in caps and not any(c.startswith("SASL") for c in caps), caps
        for line in ("USER " + ALICE, "PASS x", "AUTH PLAIN " + base64.b64encode(b"\0a\0b").decode()):
            r = p.cmd(line)
            assert r.startswith("-ERR [AUTH]"), (line, r)
        r = p.cmd("APOP alice 0123456789abcdef0123456789abcdef")
        assert r.startswith("-ERR"), r
        assert p.cmd("STAT").startswith("-ERR")
        p.stls()
        first, body = p.multi("CAPA")
        caps = body.decode().split("\r\n")
        assert "USER" in caps and "SASL PLAIN LOGIN" in caps and "STLS" not in caps, caps
        assert p.cmd("STLS").startswith("-ERR")
        assert p.login().startswith("+OK")
        assert p.cmd("QUIT").startswith("+OK")


def test_stls_discards_pipelined_plaintext(popsrv):
    with pop(popsrv) as p:
        p.send("STLS\r\nUSER %s\r\nPASS %s\r\n" % (ALICE, USERS[ALICE]))
        assert p.line().startswith("+OK")
        p.sock = client_tls_context().wrap_socket(p.sock)
        # The injected USER/PASS must not have been run: STAT is refused.
        r = p.cmd("STAT")
        assert r.startswith("-ERR"), r


def test_loopback_plaintext_when_configured(make_server):
    srv = make_server("pop3lo", pop3_auth_plaintext_loopback="yes")
    deliver(srv, ALICE, simple("lo"))
    with pop(srv) as p:
        _, body = p.multi("CAPA")
        assert b"USER\r\n" in body
        assert p.login().startswith("+OK maildrop has 1 messages")
        assert p.cmd("QUIT").startswith("+OK")


def test_sasl_plain_login_and_cancel(popsrv):
    with pop(popsrv, role="pop3s") as p:
        tok = base64.b64encode(("\0%s\0%s" % (ALICE, USERS[ALICE])).encode()).decode()
        r = p.cmd("AUTH PLAIN")
        assert r.startswith("+ "), r
        assert p.cmd("*").startswith("-ERR"), "cancel"
        r = p.cmd("AUTH PLAIN " + tok)
        assert r.startswith("+OK"), r
        assert p.cmd("QUIT").startswith("+OK")
    with pop(popsrv, role="pop3s") as p:
        assert p.cmd("AUTH LOGIN").startswith("+ ")
        assert p.cmd(base64.b64encode(BOB.encode()).decode()).startswith("+ ")
        r = p.cmd(base64.b64encode(USERS[BOB].encode()).decode())
        assert r.startswith("+OK"), r
        assert p.cmd("QUIT").startswith("+OK")
    with pop(popsrv, role="pop3s") as p:
        r = p.cmd("AUTH LOGIN " + base64.b64encode(BOB.encode()).decode())
        assert r.startswith("+ "), r
        assert p.cmd(base64.b64encode(USERS[BOB].encode()).decode()).startswith("+OK")
        p.cmd("QUIT")
    with pop(popsrv, role="pop3s") as p:
        assert p.cmd("AUTH CRAM-MD5").startswith("-ERR")
        assert p.cmd("UTF8").startswith("+OK")
        assert p.login(CAROL).startswith("+OK")
        assert p.cmd("UTF8").startswith("-ERR"), "UTF8 is an AUTHORIZATION command"
        p.cmd("QUIT")


# --------------------------------------------------------------------------
# TRANSACTION commands with poplib and raw sockets
# --------------------------------------------------------------------------
def test_every_command_poplib(popsrv):
    for i in range(3):
        deliver(popsrv, BOB, make_message("s@remote.example", BOB, "m%d" % i,
                                          "line1\r\nline2\r\nline3\r\n"))
    stored = popsrv.mail_list(BOB)
    assert len(stored) == 3
    c = poplib.POP3(popsrv.host, popsrv.ports["pop3"], timeout=SOCK_TIMEOUT)
    try:
        c.stls(context=client_tls_context())
        caps = c.capa()
        assert "TOP" in caps and "UIDL" in caps and "USER" in caps
        c.user(BOB)
        c.pass_(USERS[BOB])
        n, size = c.stat()
        assert n == 3 and size == sum(m[1] for m in stored)
        resp, lines, _ = c.list()
        assert [int(l.split()[1]) for l in lines] == [m[1] for m in stored]
        assert c.list(2).split()[2] == str(stored[1][1]).encode()
        resp, lines, _ = c.uidl()
        ids = [l.split()[1] for l in lines]
        assert len(set(ids)) == 3 and all(re.fullmatch(rb"[0-9a-f]{16}", i) for i in ids)
        assert c.uidl(3).split()[2] == ids[2]
        resp, lines, octets = c.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == popsrv.mail_cat(BOB, stored[0][0])
        resp, lines, _ = c.top(2, 1)
        assert lines[-2:] == [b"", b"line1"], lines[-3:]
        resp, lines, _ = c.top(2, 0)
        assert lines[-1] == b"" and b"line1" not in lines
        assert c.noop().startswith(b"+OK")
        assert c.dele(1).startswith(b"+OK")
        with pytest.raises(poplib.error_proto) as e:
            c.retr(1)
        assert b"message 1 already deleted" in e.value.args[0]
        with pytest.raises(poplib.error_proto):
            c.dele(1)
        assert c.stat()[0] == 2
        assert c.rset().startswith(b"+OK")
        assert c.stat()[0] == 3
        c.dele(3)
        assert c.quit().startswith(b"+OK")
    finally:
        c.close()
    assert [m[0] for m in popsrv.mail_list(BOB)] == [stored[0][0], stored[1][0]]


def test_byte_exact_retr(popsrv):
    body = (".leading dot\r\n..two dots\r\n.\r\nnot the end\r\n"
            "8bit: gr\u00fc\u00dfe \u65e5\u672c\r\n" + "x" * 5000 + "\r\n" + "." * 900 + "\r\n"
            "last line without dot\r\n")
    msg = make_message("s@remote.example", CAROL, "exact", body,
                       extra_headers=("Content-Type: text/plain; charset=utf-8",
                                      "Content-Transfer-Encoding: 8bit"))
    deliver(popsrv, CAROL, msg)
    big = make_message("s@remote.example", CAROL, "big",
                       "".join(".%06d %s\r\n" % (i, "y" * 70) for i in range(30000)))
    deliver(popsrv, CAROL, big)
    stored = popsrv.mail_list(CAROL)
    with logged_in(popsrv, CAROL) as p:
        for i, m in enumerate(stored, 1):
            first, got = p.multi("RETR %d" % i)
            assert first == "+OK %d octets" % m[1], first
            want = popsrv.mail_cat(CAROL, m[0])
            assert got == want, "RETR %d differs from mail cat" % i
            assert len(got) == m[1]
        # TOP n 2 of the first: header, blank line, two body lines
        first, got = p.multi("TOP 1 2")
        want = popsrv.mail_cat(CAROL, stored[0][0])
        head, _, rest = want.partition(b"\r\n\r\n")
        assert got == head + b"\r\n\r\n" + b"\r\n".join(rest.split(b"\r\n")[:2]) + b"\r\n"
        first, got = p.multi("TOP 1 100000")
        assert got == want
        p.cmd("QUIT")


def test_pipelining(popsrv):
    deliver(popsrv, ALICE, simple("pipe"))
    with logged_in(popsrv, ALICE) as p:
        p.send("STAT\r\nLIST\r\nRETR 1\r\nUIDL 1\r\nNOOP\r\n")
        assert p.line().startswith("+OK")
        assert p.line().startswith("+OK")
        p.body()
        assert p.line().startswith("+OK")
        p.body()
        assert p.line().startswith("+OK 1 ")
        assert p.line().startswith("+OK")
        p.cmd("QUIT")


def test_in_use_and_release(popsrv):
    deliver(popsrv, ALICE, simple("lock"))
    with logged_in(popsrv, ALICE) as p1:
        with pop(popsrv, role="pop3s") as p2:
            r = p2.login(ALICE)
            assert r.startswith("-ERR [IN-USE]"), r
            # still in AUTHORIZATION: other accounts work
            assert p2.login(BOB).startswith("+OK")
            p2.cmd("QUIT")
        # case-insensitively the same maildrop
        with pop(popsrv, role="pop3s") as p3:
            r = p3.login(ALICE.upper(), USERS[ALICE])
            assert r.startswith("-ERR [IN-USE]"), r
        assert p1.cmd("QUIT").startswith("+OK")
    with logged_in(popsrv, ALICE) as p4:
        p4.cmd("QUIT")


def test_dele_quit_removes_drop_keeps(popsrv):
    for i in range(3):
        deliver(popsrv, ALICE, simple("del%d" % i))
    before = popsrv.mail_list(ALICE)
    n = len(before)
    # DELE, then the connection drops: nothing removed
    p = logged_in(popsrv, ALICE)
    assert p.cmd("DELE 1").startswith("+OK")
    assert p.cmd("DELE %d" % n).startswith("+OK")
    p.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the lock goes with the session
        with pop(popsrv, role="pop3s") as q:
            r = q.login(ALICE)
            if r.startswith("+OK"):
                assert r.startswith("+OK maildrop has %d messages" % n), r
                q.cmd("QUIT")
                break
        time.sleep(0.1)
    assert popsrv.mail_list(ALICE) == before
    # DELE + QUIT removes, and `mail list` agrees
    with logged_in(popsrv, ALICE) as p:
        assert p.cmd("DELE 1").startswith("+OK")
        assert p.cmd("DELE 2").startswith("+OK")
        r = p.cmd("QUIT")
        assert r.startswith("+OK") and "2 messages deleted" in r, r
    after = popsrv.mail_list(ALICE)
    assert [m[0] for m in after] == [m[0] for m in before[2:]]
    with popsrv.db() as db:
        blobs = {r[0] for r in db.execute("SELECT blob FROM messages")}
    for d in os.listdir(os.path.join(popsrv.data_dir, "blobs")):
        for f in os.listdir(os.path.join(popsrv.data_dir, "blobs", d)):
            assert f in blobs, "blob %s left after expunge" % f


# --------------------------------------------------------------------------
# Bad input and limits
# --------------------------------------------------------------------------
def test_bad_input(make_server):
    popsrv = make_server("pop3bad", pop3_max_errors=100)
    deliver(popsrv, BOB, make_message("s@remote.example", BOB, "bad", "x\r\n"))
    with logged_in(popsrv, BOB) as p:
        n = int(p.cmd("STAT").split()[1])
        for line, want in [
            ("RETR", "-ERR"), ("RETR x", "-ERR"), ("RETR 0", "-ERR no such message"),
            ("RETR %d" % (n + 1), "-ERR no such message"), ("RETR 99999999999", "-ERR"),
            ("RETR -1", "-ERR"), ("RETR 1 2", "-ERR"), ("TOP 1", "-ERR"), ("TOP 1 x", "-ERR"),
            ("LIST a", "-ERR"), ("UIDL 1 2", "-ERR"), ("DELE", "-ERR"), ("STAT 1", "-ERR"),
            ("USER bob", "-ERR"), ("PASS x", "-ERR"), ("STLS", "-ERR"), ("FOO", "-ERR unknown"),
            ("", "-ERR"),
        ]:
            r = p.cmd(line)
            assert r.startswith(want), (line, r)
        # over-long line: -ERR, discarded, session continues
        r = p.cmd("NOOP " + "a" * 300)
        assert r.startswith("-ERR line too long"), r
        p.send("LIST " + "9" * 100000 + "\r\n")
        assert p.line().startswith("-ERR line too long")
        assert p.cmd("STAT").startswith("+OK %d " % n)
        assert p.cmd("NOOP").startswith("+OK")


def test_too_many_errors_closes(make_server):
    srv = make_server("pop3err", pop3_max_errors=3)
    with pop(srv) as p:
        for _ in range(2):
            assert p.cmd("BOGUS").startswith("-ERR")
        assert p.cmd("BOGUS").startswith("-ERR")
        assert p.line().startswith("-ERR too many errors")
        assert p.closed()


def test_failed_login_delay_and_throttle(make_server):
    srv = make_server("pop3fail", auth_max_failures=3, pop3_max_errors=50)
    with pop(srv, role="pop3s") as p:
        t = time.monotonic()
        r = p.login(ALICE, "wrong")
        assert r.startswith("-ERR [AUTH]"), r
        assert time.monotonic() - t >= 0.9, "failed login answered without delay"
        r = p.login("nobody@example.test", "wrong")
        assert r.startswith("-ERR [AUTH]"), r
        r = p.login(ALICE, "wrong")
        assert r.startswith("-ERR [AUTH] too many failed logins"), r
        assert p.closed()
    with pop(srv, role="pop3s") as p:
        r = p.login(ALICE)  # right password, but this IP is blocked now
        assert r.startswith("-ERR [AUTH]"), r
    assert "pop3 auth failed" in srv.log()


def test_idle_timeout(make_server):
    srv = make_server("pop3idle", pop3_timeout=2)
    deliver(srv, ALICE, simple("idle"))
    with logged_in(srv, ALICE, role="pop3") as p:
        assert p.cmd("DELE 1").startswith("+OK")
        t = time.monotonic()
        assert p.closed(timeout=10)
        assert 1.5 <= time.monotonic() - t <= 8
        assert b"-ERR" in p.buf
    assert srv.count(ALICE) == 1, "a timed-out session must not delete"


def test_uidl_stable_across_restart(make_server):
    srv = make_server("pop3uidl")
    for i in range(3):
        deliver(srv, ALICE, simple("u%d" % i))
    c = poplib_client(srv)
    ids1 = c.uidl()[1]
    c.quit()
    srv.restart()
    c = poplib_client(srv)
    ids2 = c.uidl()[1]
    c.dele(1)
    c.quit()
    assert ids1 == ids2
    c = poplib_client(srv)
    ids3 = c.uidl()[1]
    c.quit()
    assert [l.split()[1] for l in ids3] == [l.split()[1] for l in ids1[1:]]


def test_session_log_line(popsrv):
    deliver(popsrv, CAROL, simple("log"))
    with logged_in(popsrv, CAROL) as p:
        p.multi("RETR 1")
        p.cmd("QUIT")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if re.search(r"pop3 session client=\S+ user=carol@example.test retr=1 .*result=quit",
                     popsrv.log()):
            return
        time.sleep(0.1)
    raise AssertionError("no session log line")


# --------------------------------------------------------------------------
# Real clients: fetchmail and curl
# --------------------------------------------------------------------------
def _fetchmail(srv, tmp_path, ssl_mode, keep):
    """Runs fetchmail once as a real client; returns (exit code, log, mbox path).
    stls: port 110 role, `sslproto TLS1.2+` makes STLS mandatory; implicit:
    port 995 role with `ssl`. The certificate is self-signed: no sslcertck."""
    out = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    port = srv.ports["pop3s" if ssl_mode == "implicit" else "pop3"]
    rc.write_text(
        "set no syslog\n"
        "poll %s protocol pop3 port %d auth password timeout 20\n"
        "  user \"%s\" there with password \"%s\" is root here\n"
        "  options fetchall %s %s sslproto TLS1.2+ no sslcertck\n"
        "  mda \"/bin/sh -c 'cat >> %s'\"\n" % (
            srv.host, port, ALICE, USERS[ALICE], "keep" if keep else "nokeep",
            "ssl" if ssl_mode == "implicit" else "", out))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    p = subprocess.run(["fetchmail", "-f", str(rc), "-v", "--nodetach"],
                       capture_output=True, timeout=60, env=env)
    log = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    return p.returncode, log, out


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
@pytest.mark.parametrize("ssl_mode", ["stls", "implicit"])
def test_fetchmail(make_server, tmp_path, ssl_mode):
    srv = make_server("pop3fm")
    msgs = [simple("fm%d" % i, ".dot line\r\nbody %d\r\n" % i) for i in range(3)]
    for m in msgs:
        deliver(srv, ALICE, m)
    stored = srv.messages(ALICE)
    code, log, out = _fetchmail(srv, tmp_path, ssl_mode, keep=True)
    assert code == 0, log
    if ssl_mode == "stls":
        assert "STLS" in log, log
    data = out.read_bytes()
    for s in stored:
        body = s.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        assert body in data, (body, data[-500:])
    assert srv.count(ALICE) == 3, "keep must not delete"
    out.unlink()
    code, log, out = _fetchmail(srv, tmp_path, ssl_mode, keep=False)
    assert code == 0, log
    assert srv.count(ALICE) == 0, "without keep fetchmail deletes\n" + log
    assert out.read_bytes().count(b"Subject: fm") == 3


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl(popsrv):
    deliver(popsrv, BOB, make_message("s@remote.example", BOB, "curl", "curl body\r\n"))
    stored = popsrv.mail_list(BOB)
    n = len(stored)
    for url, extra in [("pop3://%s:%d/" % (popsrv.host, popsrv.ports["pop3"]), ["--ssl-reqd"]),
                       ("pop3s://%s:%d/" % (popsrv.host, popsrv.ports["pop3s"]), [])]:
        base = ["curl", "-sS", "-k", "--max-time", "30", "-u", "%s:%s" % (BOB, USERS[BOB])] + extra
        p = subprocess.run(base + [url], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.decode().split("\r\n")
        assert len([l for l in lines if l.strip()]) == n, p.stdout
        p = subprocess.run(base + [url + str(n)], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout == popsrv.mail_cat(BOB, stored[-1][0])
