"""Login abuse against the one login service (src/auth/login.c) that SMTP AUTH
and POP3 share: the two-address lockout attack of issue 6 section 5 must not
lock the real user out (POP3 and submission), failures count across protocols,
guesses from one network against one account are serialised by a growing
delay while a fresh address is still checked at once, and `AUTH LOGIN =`
(an empty initial response, RFC 4954 4) is a LOGIN exchange, not a 501.

The attackers use their own loopback source addresses (127.0.0.2, 127.0.0.3,
... are all local on Linux), so the daemon sees distinct clients."""
import base64
import re
import socket
import time

import pytest

from conftest import SOCK_TIMEOUT, USERS, client_tls_context

ALICE, BOB = "alice@example.test", "bob@example.test"
WAIT_RE = re.compile(r"try again in (\d+) seconds")


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Pop:
    """Minimal POP3S client bound to a source address."""

    def __init__(self, srv, source):
        raw = socket.create_connection((srv.host, srv.ports["pop3s"]), timeout=SOCK_TIMEOUT,
                                       source_address=(source, 0))
        self.sock = client_tls_context().wrap_socket(raw)
        self.buf = b""
        self.greeting = self.line()
        assert self.greeting.startswith("+OK"), self.greeting

    def __enter__(self):
        return self

    def __exit__(self, *a):
        try:
            self.sock.close()
        except OSError:
            pass

    def line(self):
        deadline = time.monotonic() + SOCK_TIMEOUT
        while b"\r\n" not in self.buf:
            assert time.monotonic() < deadline, "no line; have %r" % self.buf
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed; pending %r" % self.buf)
            self.buf += chunk
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "replace")

    def cmd(self, line):
        self.sock.sendall((line + "\r\n").encode())
        return self.line()

    def login(self, user, password):
        r = self.cmd("USER " + user)
        assert r.startswith("+OK"), r
        return self.cmd("PASS " + password)


def wait_of(text):
    """Seconds from an "account delay" refusal, or None."""
    m = WAIT_RE.search(text)
    return int(m.group(1)) if m else None


def pop3_attack(srv, source, user, n):
    """n failed logins from source (one per connection; a refusal for the
    account's delay is waited out and not counted). Returns the last reply."""
    failures, r = 0, None
    deadline = time.monotonic() + 120
    while failures < n:
        assert time.monotonic() < deadline, "attack did not finish; last %r" % r
        with Pop(srv, source) as p:
            r = p.login(user, "wrong-guess-%d" % failures)
        w = wait_of(r)
        if w is not None:
            assert r.startswith("-ERR [SYS/TEMP]"), r
            time.sleep(w)
            continue
        assert r.startswith("-ERR [AUTH]"), r
        failures += 1
    return r


def smtp_attack(srv, source, user, n):
    """As pop3_attack, over submissions (465) with AUTH PLAIN."""
    failures, r = 0, None
    deadline = time.monotonic() + 120
    while failures < n:
        assert time.monotonic() < deadline, "attack did not finish; last %r" % r
        with srv.client("submissions", source=source) as c:
            c.ehlo()
            r = c.auth_plain(user, "wrong-guess-%d" % failures)
        w = wait_of(r.text)
        if w is not None:
            assert r.code == 454, r
            time.sleep(w)
            continue
        assert r.code in (535, 421), r
        failures += 1
    return r


def log_count(srv, needle):
    return srv.log().count(needle)


def wait_log(srv, needle, n, timeout=15):
    deadline = time.monotonic() + timeout
    while log_count(srv, needle) < n:
        assert time.monotonic() < deadline, "log never had %d x %r" % (n, needle)
        time.sleep(0.05)


@pytest.fixture
def abuse_srv(make_server):
    # the default limits of a real deployment, with the delay cap kept short
    return make_server("abuse", auth_max_failures=5, auth_failure_window=300,
                       auth_failure_delay_max=1, pop3_max_errors=50)


def test_pop3_two_address_lockout_does_not_lock_out_the_user(abuse_srv):
    srv = abuse_srv
    r = pop3_attack(srv, "127.0.0.2", ALICE, 5)
    assert r.startswith("-ERR [AUTH] too many failed logins"), r
    r = pop3_attack(srv, "127.0.0.3", ALICE, 5)
    assert r.startswith("-ERR [AUTH] too many failed logins"), r
    # the real user, from a third address in the attackers' /24: in
    with Pop(srv, "127.0.0.4") as p:
        r = p.login(ALICE, USERS[ALICE])
        assert r.startswith("+OK"), "the real user was locked out: %r" % r
        assert p.cmd("QUIT").startswith("+OK")
    # and from another network, with SASL PLAIN
    with Pop(srv, "127.0.1.5") as p:
        r = p.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE, USERS[ALICE])))
        assert r.startswith("+OK"), "the real user was locked out: %r" % r
        assert p.cmd("QUIT").startswith("+OK")
    # the per-address limit still holds for the attackers, right password or not
    with Pop(srv, "127.0.0.2") as p:
        r = p.login(ALICE, USERS[ALICE])
        assert r.startswith("-ERR [AUTH] too many failed logins"), r
    log = srv.log()
    assert log.count("pop3 auth failed client=127.0.0.2 user=%s" % ALICE) == 5
    assert log.count("pop3 auth failed client=127.0.0.3 user=%s" % ALICE) == 5


def test_submission_two_address_lockout_does_not_lock_out_the_user(abuse_srv):
    srv = abuse_srv
    r = smtp_attack(srv, "127.0.0.2", ALICE, 5)
    assert r.code == 421, r
    r = smtp_attack(srv, "127.0.0.3", ALICE, 5)
    assert r.code == 421, r
    for source in ("127.0.0.4", "127.0.1.5"):
        with srv.client("submissions", source=source) as c:
            c.ehlo()
            r = c.auth_plain(ALICE, USERS[ALICE])
            assert r.code == 235, "the real user was locked out from %s: %r" % (source, r)
    with srv.client("submission", source="127.0.0.6") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.auth_login(ALICE, USERS[ALICE])
        assert r.code == 235, r
    with srv.client("submissions", source="127.0.0.3") as c:
        c.ehlo()
        r = c.auth_plain(ALICE, USERS[ALICE])
        assert r.code == 454, "a blocked address must stay blocked: %r" % r


def test_failures_count_across_protocols(abuse_srv):
    """One login service: five failures over POP3 block the address for SMTP
    AUTH too (each protocol used to keep its own count)."""
    srv = abuse_srv
    pop3_attack(srv, "127.0.2.2", BOB, 5)
    with srv.client("submissions", source="127.0.2.2") as c:
        c.ehlo()
        r = c.auth_plain(BOB, USERS[BOB])
        assert r.code == 454, r
    with srv.client("submissions", source="127.0.2.3") as c:
        c.ehlo()
        assert c.auth_plain(BOB, USERS[BOB]).code == 235


def test_guesses_from_one_network_wait_but_a_fresh_address_gets_in(make_server):
    """While the (account, network) delay runs, an address that just failed
    is refused for that account without a check, even with the right
    password; a fresh address in the same /24 is checked at once; after the
    delay the first address gets in too. The failure reply waits for the
    same growing delay (1 s, then 2 s)."""
    srv = make_server("abusedelay", auth_max_failures=10, auth_failure_delay_max=30)
    fail_line = "smtp auth failed client=127.0.3.2 user=%s" % ALICE
    with srv.client("submissions", source="127.0.3.2") as a:
        a.ehlo()
        t = time.monotonic()
        assert a.auth_plain(ALICE, "wrong-1").code == 535
        assert time.monotonic() - t >= 0.9
        a.send("AUTH PLAIN %s\r\n" % b64("\0%s\0wrong-2" % ALICE))
        t = time.monotonic()
        wait_log(srv, fail_line, 2)  # counted; its 535 waits 2 s
        with srv.client("submissions", source="127.0.3.2") as b:
            b.ehlo()
            r = b.auth_plain(ALICE, USERS[ALICE])
            assert r.code == 454 and r.enh == "4.7.0" and wait_of(r.text) in (1, 2), r
        with srv.client("submissions", source="127.0.3.3") as c:
            c.ehlo()
            assert c.auth_plain(ALICE, USERS[ALICE]).code == 235, "fresh address refused"
        r = a.reply()
        assert r.code == 535, r
        assert time.monotonic() - t >= 1.9, "second failure answered without the longer delay"
    # the delay has passed (the 535 came after it): the right password gets in
    with srv.client("submissions", source="127.0.3.2") as b:
        b.ehlo()
        assert b.auth_plain(ALICE, USERS[ALICE]).code == 235
    assert "smtp auth refused client=127.0.3.2 user=%s reason=account-delay" % ALICE in srv.log()


def test_smtp_auth_login_empty_initial_response(server):
    """RFC 4954 4: "=" is an empty initial response. For LOGIN it carries no
    user name, so the server asks for it (as Dovecot and Cyrus SASL do)
    instead of answering 501."""
    with server.client("submissions") as c:
        c.ehlo()
        r = c.cmd("AUTH LOGIN =")
        assert r.code == 334 and r.text == "VXNlcm5hbWU6", r
        r = c.cmd(b64(ALICE))
        assert r.code == 334 and r.text == "UGFzc3dvcmQ6", r
        r = c.cmd(b64(USERS[ALICE]))
        assert r.code == 235, r
    with server.client("submissions") as c:
        c.ehlo()
        assert c.cmd("AUTH LOGIN =").code == 334
        r = c.cmd("*")
        assert r.code == 501, "cancel: %r" % r
        # an empty user name is an ordinary failed login, not a syntax error
        assert c.cmd("AUTH LOGIN =").code == 334
        assert c.cmd("").code == 334
        r = c.cmd(b64("x"))
        assert r.code == 535 and r.enh == "5.7.8", r
        # PLAIN cannot be empty (RFC 4616 2): a malformed response
        r = c.cmd("AUTH PLAIN =")
        assert r.code == 501, r
        r = c.auth_plain(BOB, USERS[BOB])
        assert r.code == 235, r


def test_pop3_auth_login_empty_initial_response(server):
    """RFC 5034 4: the same over POP3."""
    with Pop(server, "127.0.0.1") as p:
        assert p.cmd("AUTH LOGIN =") == "+ VXNlcm5hbWU6"
        assert p.cmd(b64(BOB)) == "+ UGFzc3dvcmQ6"
        r = p.cmd(b64(USERS[BOB]))
        assert r.startswith("+OK"), r
        assert p.cmd("QUIT").startswith("+OK")


def test_concurrent_guesses_from_one_address_respect_the_limit(abuse_srv):
    """The per-address limit must hold for guesses sent at the same time on
    many connections: a check in flight counts against the address before
    its answer, or else a fresh address gets one guess per connection
    (50 POP3 + 50 SMTP by default) instead of auth_max_failures."""
    srv = abuse_srv
    n = 20
    conns = [Pop(srv, "127.0.4.2") for _ in range(n)]
    try:
        for i, p in enumerate(conns):
            p.sock.sendall(("AUTH PLAIN %s\r\n" % b64("\0%s\0wrong-%d" % (ALICE, i))).encode())
        replies = [p.line() for p in conns]
    finally:
        for p in conns:
            p.__exit__()
    checked = log_count(srv, "pop3 auth failed client=127.0.4.2 ")
    assert checked <= 5, "%d guesses checked from one address (limit 5): %r" % (checked, replies)
    assert sum("too many failed logins" in r for r in replies) >= n - 5, replies


def test_concurrent_right_logins_from_one_address_all_get_in(abuse_srv):
    """Past the budget, concurrent attempts wait for a check in flight to end
    rather than being refused: a user's many clients behind one address,
    logging in at the same moment, all get in."""
    srv = abuse_srv
    clients = [srv.client("submissions", source="127.0.4.3") for _ in range(8)]
    try:
        for c in clients:
            c.ehlo()
        for c in clients:
            c.send("AUTH PLAIN %s\r\n" % b64("\0%s\0%s" % (BOB, USERS[BOB])))
        codes = [c.reply().code for c in clients]
    finally:
        for c in clients:
            c.close()
    assert codes == [235] * 8, codes


def test_nul_in_a_sasl_response_ends_the_exchange(server):
    """A SASL response holding a NUL byte is refused, and that refusal ends
    the exchange: the client's next line is a command again, not taken as
    the password (where "NOOP" is valid base64 and became a failed login)."""
    failed = log_count(server, "auth failed")
    with server.client("submissions") as c:
        c.ehlo()
        assert c.cmd("AUTH LOGIN %s" % b64(ALICE)).code == 334
        c.send("YW\0Jj\r\n")
        assert c.reply().code == 500
        r = c.cmd("NOOP")
        assert r.code == 250, r
        assert c.auth_plain(ALICE, USERS[ALICE]).code == 235
    with Pop(server, "127.0.0.1") as p:
        assert p.cmd("AUTH LOGIN %s" % b64(BOB)) == "+ UGFzc3dvcmQ6"
        p.sock.sendall(b"YW\0Jj\r\n")
        assert p.line().startswith("-ERR")
        r = p.cmd("NOOP")
        assert r.startswith("-ERR") and "AUTH" not in r, r  # NOOP before login
        r = p.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (BOB, USERS[BOB])))
        assert r.startswith("+OK"), r
    assert log_count(server, "auth failed") == failed


def test_refused_auth_repeated_in_one_session_is_bounded(make_server):
    """A refusal for the account's delay (454) writes a log line; a client
    repeating AUTH in one session is closed after smtp_max_errors of them,
    as for 5yz replies, instead of writing one line per command for ever."""
    srv = make_server("abuserepeat", auth_max_failures=10, auth_failure_delay_max=30,
                      smtp_max_errors=10)
    with srv.client("submissions", source="127.0.5.2") as a:
        a.ehlo()
        assert a.auth_plain(ALICE, "wrong-1").code == 535
        a.send("AUTH PLAIN %s\r\n" % b64("\0%s\0wrong-2" % ALICE))
        wait_log(srv, "smtp auth failed client=127.0.5.2", 2)  # its 535 waits 2 s
        with srv.client("submissions", source="127.0.5.2") as b:
            b.ehlo()
            b.send("AUTH PLAIN %s\r\n" % b64("\0%s\0guess" % ALICE) * 200)
            codes = []
            try:
                while True:
                    codes.append(b.reply().code)
            except Exception:  # closed (conftest.ClosedError) after the 421
                pass
        assert codes[-1] == 421, codes
        assert len(codes) <= 12, codes
    assert log_count(srv, "smtp auth refused client=127.0.5.2") <= 10
