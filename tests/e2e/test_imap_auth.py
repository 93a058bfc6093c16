"""IMAP server core (issue 7): greeting, CAPABILITY before and after TLS and
login, LOGINDISABLED and its loopback exception, STARTTLS (and plaintext
pipelined behind it being discarded), LOGIN and AUTHENTICATE (PLAIN, LOGIN,
SASL-IR, cancel) with imaplib and raw sockets, the login throttle shared with
POP3, the input limits (long lines, literals, LITERAL+ overflow, BAD
counting), timeouts, LOGOUT, state rules, ENABLE/ID/NAMESPACE/UNAUTHENTICATE,
connection limits, shutdown."""
import base64
import imaplib
import socket
import time

import pytest

from conftest import (USERS, ClosedError, ImapClient, _new_server, client_tls_context,
                      imap_quote)

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"

PRE_PLAIN = "IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED LITERAL+ ENABLE IDLE ID"
PRE_TLS = "IMAP4rev2 IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR LITERAL+ ENABLE IDLE ID"
PRE_LOOPBACK = "IMAP4rev2 IMAP4rev1 STARTTLS AUTH=PLAIN AUTH=LOGIN SASL-IR LITERAL+ ENABLE IDLE ID"


def wait_log(srv, needle, timeout=10):
    deadline = time.monotonic() + timeout
    while needle not in srv.log():
        assert time.monotonic() < deadline, "log never had %r" % needle
        time.sleep(0.05)


def b64(s):
    return base64.b64encode(s.encode()).decode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "imapauth", auth_failure_delay_max=1)
    yield s
    s.stop()


def login_line(user=ALICE, password=None):
    return "LOGIN %s %s" % (imap_quote(user), imap_quote(password or USERS[user]))


def caps_of(line):
    """The capability list of "* CAPABILITY ..." or of a [CAPABILITY ...] code."""
    if line.startswith("* CAPABILITY "):
        return line[len("* CAPABILITY "):]
    start = line.index("[CAPABILITY ") + len("[CAPABILITY ")
    return line[start:line.index("]", start)]


def check_post_login_caps(caps):
    words = caps.split()
    assert words[:2] == ["IMAP4rev2", "IMAP4rev1"], caps
    for w in ("LITERAL+", "ENABLE", "IDLE", "ID", "NAMESPACE", "CHILDREN", "LIST-EXTENDED",
              "LIST-STATUS", "SPECIAL-USE", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",
              "STATUS=SIZE", "UNAUTHENTICATE"):
        assert w in words, (w, caps)
    assert "APPENDLIMIT=%d" % (50 * 1024 * 1024) in words, caps
    for w in ("STARTTLS", "LOGINDISABLED", "AUTH=PLAIN", "AUTH=LOGIN"):
        assert w not in words, (w, caps)


# ---- greeting and CAPABILITY ----

def test_greeting_and_capability_before_tls(srv):
    with srv.imap() as c:
        assert c.greeting == "* OK [CAPABILITY %s] postern ready" % PRE_PLAIN
        r = c.cmd("CAPABILITY")
        assert r.untagged == ["* CAPABILITY " + PRE_PLAIN]
        assert r.tagged == "a001 OK CAPABILITY completed"
        r = c.cmd("CAPABILITY extra")
        assert r.status == "BAD", r


def test_imaps_greeting_offers_mechanisms(srv):
    with srv.imap("imaps") as c:
        assert c.greeting == "* OK [CAPABILITY %s] postern ready" % PRE_TLS
        r = c.cmd("STARTTLS")
        assert r.tagged == "a001 BAD [CLIENTBUG] TLS is already active"


def test_starttls_then_login_capabilities(srv):
    with srv.imap() as c:
        r = c.starttls()
        assert r.tagged == "a001 OK Begin TLS negotiation now"
        r = c.cmd("CAPABILITY")
        assert r.untagged == ["* CAPABILITY " + PRE_TLS]
        r = c.cmd("STARTTLS")
        assert r.tagged == "a003 BAD [CLIENTBUG] TLS is already active"
        r = c.cmd(login_line())
        assert r.status == "OK" and r.text.endswith("] Logged in"), r
        caps = caps_of(r.tagged)
        check_post_login_caps(caps)
        r = c.cmd("CAPABILITY")
        assert r.untagged == ["* CAPABILITY " + caps]
        assert c.cmd("LOGOUT").ok


def test_login_and_authenticate_refused_before_tls(srv):
    with srv.imap() as c:
        r = c.cmd(login_line())
        assert r.tagged == ("a001 NO [PRIVACYREQUIRED] Plaintext authentication disallowed "
                            "without TLS; use STARTTLS first")
        r = c.cmd("AUTHENTICATE PLAIN " + b64("\0%s\0%s" % (ALICE, USERS[ALICE])))
        assert r.status == "NO" and r.text.startswith("[PRIVACYREQUIRED]"), r
        # still not logged in
        assert c.cmd("CAPABILITY").untagged == ["* CAPABILITY " + PRE_PLAIN]


def test_plaintext_loopback_exception(make_server):
    s = make_server("imaploop", imap_auth_plaintext_loopback="yes")
    with s.imap() as c:
        assert c.greeting == "* OK [CAPABILITY %s] postern ready" % PRE_LOOPBACK
        r = c.cmd(login_line())
        assert r.ok, r
        assert c.cmd("LOGOUT").ok
    wait_log(s, "imap login client=127.0.0.1 user=%s tls=no" % ALICE)


def test_starttls_injection_discarded(srv):
    """RFC 9051 11.1: commands pipelined after STARTTLS in plaintext are not
    run inside the TLS session."""
    with srv.imap() as c:
        c.send("a STARTTLS\r\nb %s\r\nc NOOP\r\n" % login_line())
        assert c.readline() == "a OK Begin TLS negotiation now"
        assert c.buf == b""
        c.sock = client_tls_context().wrap_socket(c.sock)
        c.send("d CAPABILITY\r\n")
        assert c.readline() == "* CAPABILITY " + PRE_TLS  # not logged in
        assert c.readline() == "d OK CAPABILITY completed"
        assert c.pending(0.3) == b""


# ---- LOGIN and AUTHENTICATE ----

def test_imaplib_login_starttls_and_imaps(srv):
    m = srv.imaplib("imap")
    m.starttls(ssl_context=client_tls_context())
    typ, data = m.login(ALICE, USERS[ALICE])
    assert typ == "OK" and data[0].endswith(b"] Logged in"), (typ, data)
    assert "IMAP4REV2" in m.capabilities and "STARTTLS" not in m.capabilities
    assert m.noop()[0] == "OK"
    assert m.logout()[0] == "BYE"
    m = srv.imaplib("imaps")
    assert m.login(BOB, USERS[BOB])[0] == "OK"
    assert m.logout()[0] == "BYE"


def test_imaplib_authenticate_plain(srv):
    m = srv.imaplib("imaps")
    typ, _ = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (CAROL, USERS[CAROL])).encode())
    assert typ == "OK"
    assert m.logout()[0] == "BYE"


def test_login_wrong_password(srv):
    with srv.imap("imaps", source="127.0.9.2") as c:
        r = c.cmd(login_line(BOB, "wrong"))
        assert r.tagged == "a001 NO [AUTHENTICATIONFAILED] Authentication failed"
        assert c.cmd("NOOP").ok  # still connected, not logged in
        assert c.cmd('LIST "" "*"').status == "BAD"
    wait_log(srv, "imap auth failed client=127.0.9.2 user=%s" % BOB)


def test_login_literals(srv):
    """Synchronising literals: "+ OK" before each, then the command goes on."""
    with srv.imap("imaps") as c:
        pw = USERS[ALICE].encode()
        c.send("a LOGIN {%d}\r\n" % len(ALICE))
        assert c.readline() == "+ OK"
        c.send(ALICE + " {%d}\r\n" % len(pw))
        assert c.readline() == "+ OK"
        c.send(pw + b"\r\n")
        line = c.readline()
        assert line.startswith("a OK [CAPABILITY "), line
        # LITERAL+: no continuation
        c.send("b ID ({4+}\r\nname {3+}\r\nfoo)\r\n")
        assert c.readline() == '* ID ("name" "postern" "vendor" "postern")'
        assert c.readline() == "b OK ID completed"


def test_authenticate_plain_sasl_ir_and_continuation(srv):
    with srv.imap("imaps") as c:
        r = c.cmd("AUTHENTICATE PLAIN " + b64("\0%s\0%s" % (ALICE, USERS[ALICE])))
        assert r.status == "OK" and r.text.startswith("[CAPABILITY IMAP4rev2 "), r
        assert r.text.endswith("] Logged in")
        r = c.cmd("AUTHENTICATE PLAIN")
        assert r.tagged == "a002 BAD [CLIENTBUG] AUTHENTICATE: already logged in"
    with srv.imap("imaps") as c:
        c.send("a AUTHENTICATE PLAIN\r\n")
        assert c.readline() == "+ "
        c.send(b64("\0%s\0%s" % (BOB, USERS[BOB])) + "\r\n")
        assert c.read_response("a").ok


def test_authenticate_login(srv):
    with srv.imap("imaps") as c:
        c.send("a AUTHENTICATE LOGIN\r\n")
        assert c.readline() == "+ " + b64("Username:")
        c.send(b64(CAROL) + "\r\n")
        assert c.readline() == "+ " + b64("Password:")
        c.send(b64(USERS[CAROL]) + "\r\n")
        r = c.read_response("a")
        assert r.ok, r


def test_authenticate_cancel_unknown_and_malformed(srv):
    with srv.imap("imaps") as c:
        c.send("a AUTHENTICATE PLAIN\r\n")
        assert c.readline() == "+ "
        c.send("*\r\n")
        assert c.read_response("a").tagged == "a BAD Authentication cancelled"
        r = c.cmd("AUTHENTICATE CRAM-MD5")
        assert r.tagged == "a001 NO Unsupported authentication mechanism"
        r = c.cmd("AUTHENTICATE PLAIN !!!notbase64")
        assert r.status == "BAD", r
        r = c.cmd("AUTHENTICATE")
        assert r.status == "BAD", r
        # the session goes on, not logged in
        assert c.cmd("CAPABILITY").untagged == ["* CAPABILITY " + PRE_TLS]
        assert c.cmd(login_line()).ok


def test_throttle_shared_with_pop3(make_server):
    """One login service for every protocol: failures over POP3 block the
    address for IMAP too, and IMAP failures count for POP3."""
    s = make_server("imapthrottle", auth_max_failures=3, auth_failure_window=300,
                    auth_failure_delay_max=1)
    src = "127.0.11.2"

    def pop3_fail(user):
        sock = socket.create_connection((s.host, s.ports["pop3s"]), timeout=15,
                                        source_address=(src, 0))
        sock = client_tls_context().wrap_socket(sock)
        f = sock.makefile("rb")
        try:
            assert f.readline().startswith(b"+OK")
            sock.sendall(("USER %s\r\n" % user).encode())
            assert f.readline().startswith(b"+OK")
            sock.sendall(b"PASS wrong\r\n")
            return f.readline().decode()
        finally:
            sock.close()

    # one failure for each account: no account delay, only the address counts
    assert pop3_fail(ALICE).startswith("-ERR [AUTH]")
    with s.imap("imaps", source=src) as c:
        r = c.cmd(login_line(BOB, "wrong"))
        assert r.tagged == "a001 NO [AUTHENTICATIONFAILED] Authentication failed"
    assert pop3_fail(CAROL).startswith("-ERR [AUTH] too many failed logins")
    # the address is blocked now, the right password or not
    with s.imap("imaps", source=src) as c:
        r = c.cmd(login_line())
        assert r.tagged == "a001 NO [UNAVAILABLE] Too many failed logins, try again later"
    # another network is not
    with s.imap("imaps", source="127.0.12.2") as c:
        assert c.cmd(login_line()).ok
    wait_log(s, "imap auth failed client=%s user=%s" % (src, BOB))


def test_three_failures_close_the_session(make_server):
    s = make_server("imapfails", auth_failure_delay_max=1)
    with s.imap("imaps", source="127.0.13.2") as c:
        for i, user in enumerate((ALICE, BOB)):
            r = c.cmd(login_line(user, "wrong"))
            assert r.tagged == "a%03d NO [AUTHENTICATIONFAILED] Authentication failed" % (i + 1)
        c.send("x %s\r\n" % login_line(CAROL, "wrong"))
        assert c.readline() == "x NO [AUTHENTICATIONFAILED] Authentication failed"
        assert c.readline() == "* BYE Too many failed logins"
        assert c.expect_closed()


# ---- limits ----

@pytest.fixture(scope="module")
def small(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "imapsmall", imap_max_line=1024,
                    imap_max_command=4096, imap_max_errors=3)
    yield s
    s.stop()


def test_long_line_bad_and_session_goes_on(small):
    with small.imap("imaps") as c:
        c.send("a NOOP " + "x" * 5000 + "\r\n")
        assert c.readline() == "a BAD Line too long"
        assert c.cmd("NOOP").tagged == "a001 OK NOOP completed"


def test_literal_too_big_refused_before_its_octets(small):
    with small.imap("imaps") as c:
        c.send("a LOGIN {100000}\r\n")
        line = c.readline()
        assert line.startswith("a NO [TOOBIG] "), line
        # no continuation was sent: the client sends none of the octets
        assert c.pending(0.3) == b""
        assert c.cmd("NOOP").ok
        # within the limit: "+ OK"
        c.send("b ID ({4}\r\n")
        assert c.readline() == "+ OK"
        c.send("name NIL)\r\n")
        assert c.readline().startswith("* ID ")
        assert c.readline() == "b OK ID completed"


def test_nonsync_literal_too_big_says_bye(small):
    with small.imap("imaps") as c:
        c.send("a LOGIN {100000+}\r\n")
        line = c.readline()
        assert line.startswith("* BYE [TOOBIG] "), line
        assert c.expect_closed()
    wait_log(small, "result=command too big")


def test_too_many_bad_commands_close(small):
    with small.imap("imaps") as c:
        c.send("a FOO\r\nb BAR\r\nc BAZ\r\nd NOOP\r\n")
        assert c.readline() == "a BAD Unknown command"
        assert c.readline() == "b BAD Unknown command"
        assert c.readline() == "c BAD Unknown command"
        assert c.readline() == "* BYE Too many invalid commands"
        assert c.expect_closed()
        assert b"d OK" not in c.buf


def test_good_command_resets_the_bad_count(small):
    with small.imap("imaps") as c:
        for _ in range(3):
            assert c.cmd("FOO").status == "BAD"
            assert c.cmd("NOOP").ok
        assert c.cmd("NOOP").ok


def test_preauth_idle_timeout(make_server):
    s = make_server("imapidle", accounts=False, imap_preauth_timeout=2)
    with s.imap("imaps") as c:
        t0 = time.monotonic()
        c.sock.settimeout(15)
        assert c.readline() == "* BYE Autologout; idle for too long"
        assert c.expect_closed()
        assert time.monotonic() - t0 < 14
    wait_log(s, "result=timeout")


def test_authenticated_idle_timeout(make_server):
    """RFC 9051 5.4: 30 minutes by default once logged in (the pre-auth
    limit no longer applies); a small configured value for the test."""
    s = make_server("imapidle2", imap_preauth_timeout=2, imap_idle_timeout=4)
    with s.imap_login() as c:
        time.sleep(2.5)  # past the pre-auth limit: still open
        assert c.cmd("NOOP").ok
        c.sock.settimeout(15)
        assert c.readline() == "* BYE Autologout; idle for too long"
        assert c.expect_closed()
    out = s.cli_out("config", "defaults")
    assert "#imap_idle_timeout = 30m" in out and "#imap_preauth_timeout = 60" in out


def test_connection_limit_per_ip(make_server):
    s = make_server("imapconn", accounts=False, imap_max_connections_per_ip=2)
    src = "127.0.14.2"
    a, b = s.imap(source=src), s.imap(source=src)
    try:
        with s.imap(source=src, read_greeting=False) as c:
            assert c.readline() == "* BYE [UNAVAILABLE] Too many connections, try again later"
            assert c.expect_closed()
        with s.imap(source="127.0.14.3") as c:
            assert c.greeting.startswith("* OK ")
    finally:
        a.close()
        b.close()


# ---- states and the other commands ----

def test_logout_and_session_log(srv):
    with srv.imap("imaps", source="127.0.15.2") as c:
        assert c.cmd(login_line()).ok
        c.send("z LOGOUT\r\n")
        assert c.readline() == "* BYE Logging out"
        assert c.readline() == "z OK LOGOUT completed"
        assert c.expect_closed()
    deadline = time.monotonic() + 5
    while "imap session client=127.0.15.2 user=%s cmds=2 " % ALICE not in srv.log():
        assert time.monotonic() < deadline, srv.log()[-2000:]
        time.sleep(0.05)
    line = [l for l in srv.log().splitlines() if "imap session client=127.0.15.2" in l][0]
    assert "result=logout" in line, line


def test_commands_in_the_wrong_state(srv):
    with srv.imap("imaps") as c:
        assert c.cmd("SELECT INBOX").tagged == "a001 BAD [CLIENTBUG] SELECT: log in first"
        assert c.cmd("FETCH 1 FLAGS").tagged == "a002 BAD [CLIENTBUG] FETCH: log in first"
        assert c.cmd("UID FETCH 1 FLAGS").tagged == \
            "a003 BAD [CLIENTBUG] UID FETCH: log in first"
        assert c.cmd("FOO").tagged == "a004 BAD Unknown command"
        assert c.cmd("UID FOO 1").status == "BAD"
        assert c.cmd(login_line()).ok
        assert c.cmd(login_line()).tagged == "a007 BAD [CLIENTBUG] LOGIN: already logged in"
        assert c.cmd("FETCH 1 FLAGS").tagged == \
            "a008 BAD [CLIENTBUG] FETCH: no mailbox selected"
        assert c.cmd("CLOSE").tagged == "a009 BAD [CLIENTBUG] CLOSE: no mailbox selected"
        assert c.cmd("NOOP").tagged == "a010 OK NOOP completed"


def test_enable_id_namespace(srv):
    with srv.imap_login() as c:
        r = c.cmd("ENABLE CONDSTORE")
        assert r.untagged == ["* ENABLED CONDSTORE"] and r.ok
        r = c.cmd("ENABLE CONDSTORE X-UNKNOWN")
        assert r.untagged == ["* ENABLED"] and r.ok
        r = c.cmd("ENABLE QRESYNC IMAP4rev2")
        assert r.untagged == ["* ENABLED QRESYNC IMAP4rev2"] and r.ok
        assert c.cmd("ENABLE").status == "BAD"
        r = c.cmd('ID ("name" "pytest" "version" NIL)')
        assert r.untagged == ['* ID ("name" "postern" "vendor" "postern")'] and r.ok
        assert c.cmd("ID NIL").ok
        assert c.cmd('ID ("name")').status == "BAD"
        r = c.cmd("NAMESPACE")
        assert r.untagged == ['* NAMESPACE (("" "/")) NIL NIL'] and r.ok
    with srv.imap("imaps") as c:
        # ENABLE needs a login; ID does not (RFC 2971 3.1)
        assert c.cmd("ENABLE CONDSTORE").status == "BAD"
        assert c.cmd("ID NIL").ok


def test_unauthenticate(srv):
    with srv.imap_login() as c:
        r = c.cmd("UNAUTHENTICATE")
        assert r.tagged == "a002 OK UNAUTHENTICATE completed"
        assert c.cmd("CAPABILITY").untagged == ["* CAPABILITY " + PRE_TLS]
        assert c.cmd('LIST "" "*"').status == "BAD"
        assert c.cmd(login_line(BOB)).ok


def test_shutdown_says_bye(make_server):
    s = make_server("imapstop")
    c = s.imap_login()
    try:
        s.stop()
        assert c.readline() == "* BYE [UNAVAILABLE] Server shutting down"
        assert c.expect_closed()
    finally:
        c.close()
