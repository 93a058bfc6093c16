"""Submission (587: STARTTLS then AUTH) and submissions (465: implicit TLS):
authentication, sender rights, header fix-ups, outbound queueing, STARTTLS
command injection, and swaks as a real client."""
import re
import smtplib
import ssl
import subprocess

import pytest

from conftest import USERS, Client, client_tls_context, make_message, split_prepended

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture(scope="module", autouse=True)
def aliases(server):
    server.cli("alias", "add", "sales@example.test", ALICE)
    yield


def test_587_offers_starttls_and_refuses_mail_before_it(server):
    with server.client("submission") as c:
        assert c.greeting.code == 220
        exts, r = c.ehlo()
        assert "STARTTLS" in exts, r
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530, r
        r = c.auth_plain(ALICE, USERS[ALICE])
        assert 500 <= r.code < 600, "AUTH must not work before STARTTLS on 587: %r" % r
        assert r.code != 235


def test_587_requires_auth_after_starttls(server):
    with server.client("submission") as c:
        c.ehlo()
        c.starttls()
        exts, r = c.ehlo()
        auth = [l for l in r.lines if l.upper().startswith("AUTH")]
        assert auth, "AUTH not advertised after STARTTLS: %r" % r.lines
        mechs = auth[0].upper().split()[1:]
        assert "PLAIN" in mechs and "LOGIN" in mechs, auth
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530 and r.enh == "5.7.0", r
        r = c.cmd("RCPT TO:<%s>" % BOB)
        assert r.code in (503, 530), r


def test_auth_plain_and_login(server):
    for mech in ("plain", "login"):
        with server.client("submission") as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            r = getattr(c, "auth_" + mech)(ALICE, USERS[ALICE])
            assert r.code == 235 and r.enh == "2.7.0", (mech, r)
            assert c.cmd("AUTH PLAIN AGFsaWNlAHg=").code == 503, "second AUTH must be refused"


def test_auth_wrong_password(server):
    with server.client("submission") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.auth_plain(ALICE, "wrong")
        assert r.code == 535 and r.enh == "5.7.8", r
        r = c.auth_login(BOB, "wrong")
        assert r.code == 535, r
        r = c.auth_plain("nobody@example.test", "x")
        assert r.code == 535, r
        r = c.cmd("AUTH PLAIN *")
        assert r.code in (501,), "AUTH PLAIN * cancels: %r" % r


def test_submission_delivers_and_adds_message_id_and_date(server):
    before = server.count(BOB)
    msg = make_message(ALICE, BOB, "submitted", "from alice\r\n", message_id=False, date=False)
    with server.authed(ALICE) as c:
        r = c.mail(ALICE, [BOB], msg)
        assert r.code == 250, r
    (stored,) = server.messages(BOB)[before:]
    rp, received, rest = split_prepended(stored)
    assert rp == b"<alice@example.test>"
    assert re.search(rb"ESMTPSA", received), "Received should say ESMTPSA (RFC 3848): %r" % received
    headers = rest.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"(?im)^message-id:\s*<[^>]+@[^>]+>", headers), headers
    assert re.search(rb"(?im)^date:\s*\S", headers), headers
    assert rest.endswith(b"\r\n\r\nfrom alice\r\n")
    assert len(re.findall(rb"(?im)^message-id:", rest)) == 1


def test_submission_keeps_existing_message_id(server):
    before = server.count(BOB)
    msg = make_message(ALICE, BOB, "has ids", "body\r\n")
    with server.authed(ALICE) as c:
        assert c.mail(ALICE, [BOB], msg).code == 250
    (stored,) = server.messages(BOB)[before:]
    assert split_prepended(stored)[2] == msg


def test_send_as_other_user_refused(server):
    with server.authed(ALICE) as c:
        r = c.cmd("MAIL FROM:<%s>" % BOB)
        assert r.code == 553 and r.enh == "5.7.1", r
        r = c.cmd("MAIL FROM:<someone@remote.test>")
        assert r.code == 553 and r.enh == "5.7.1", r


def test_send_as_alias_and_plus_address(server):
    before = server.count(BOB)
    with server.authed(ALICE) as c:
        for frm in ("sales@example.test", "alice+lists@example.test", "ALICE@example.test"):
            msg = make_message(frm, BOB, "as " + frm.split("@")[0], "x\r\n")
            r = c.mail(frm, [BOB], msg)
            assert r.code == 250, (frm, r)
    assert server.count(BOB) == before + 3


def test_mail_to_other_domain_is_queued(server):
    msg = make_message(ALICE, "friend@elsewhere.test", "outbound", "to the world\r\n")
    with server.authed(ALICE) as c:
        r = c.mail(ALICE, ["friend@elsewhere.test", BOB], msg)
        assert r.code == 250, r
    q = server.queue()
    assert any("alice@example.test" in l and "friend@elsewhere.test" in l for l in q), q
    assert not any("bob@example.test" in l.split()[2:3] for l in q if len(l.split()) > 2), \
        "local recipients are not queued: %r" % q


def test_465_implicit_tls(server):
    before = server.count(BOB)
    msg = make_message(BOB, BOB, "implicit tls", "via 465\r\n")
    with server.client("submissions") as c:
        assert c.greeting.code == 220
        exts, r = c.ehlo()
        assert "STARTTLS" not in exts, "STARTTLS must not be offered inside TLS"
        r = c.cmd("MAIL FROM:<%s>" % BOB)
        assert r.code == 530, r
        r = c.auth_login(BOB, USERS[BOB])
        assert r.code == 235, r
        assert c.mail(BOB, [BOB], msg).code == 250
    (stored,) = server.messages(BOB)[before:]
    assert split_prepended(stored)[2] == msg


def test_465_smtplib(server):
    before = server.count(ALICE)
    msg = make_message(BOB, ALICE, "smtplib ssl", "hello\r\n")
    with smtplib.SMTP_SSL(server.host, server.ports["submissions"], timeout=15,
                          context=client_tls_context()) as s:
        s.login(BOB, USERS[BOB])
        assert s.sendmail(BOB, [ALICE], msg) == {}
    assert server.count(ALICE) == before + 1


def test_587_smtplib_starttls(server):
    before = server.count(ALICE)
    msg = make_message(BOB, ALICE, "smtplib starttls", "hello\r\n")
    with smtplib.SMTP(server.host, server.ports["submission"], timeout=15) as s:
        s.starttls(context=client_tls_context())
        s.login(BOB, USERS[BOB])
        assert s.sendmail(BOB, [ALICE], msg) == {}
    assert server.count(ALICE) == before + 1


def test_starttls_discards_pipelined_plaintext(server):
    """RFC 3207 5: bytes after STARTTLS in the same packet must be thrown away
    (CVE-2011-0411 style command injection)."""
    for role in ("submission", "mx"):
        with server.client(role) as c:
            c.ehlo()
            c.send(b"STARTTLS\r\nNOOP\r\n")
            r = c.reply()
            assert r.code == 220, r
            assert c.buf == b"", "%s: plaintext answer after 220: %r" % (role, c.buf)
            c.sock = client_tls_context().wrap_socket(c.sock)
            # If the injected NOOP were executed, its 250 would arrive before
            # the EHLO reply inside TLS.
            r = c.cmd("EHLO after.example.net")
            assert r.code == 250 and len(r.lines) > 1, "%s: first reply in TLS is not EHLO's: %r" % (role, r)
            assert c.pending(0.5) == b"", "%s: unexpected extra reply %r" % (role, c.buf)


def test_starttls_twice_refused(server):
    with server.client("submission") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("STARTTLS")
        assert r.code in (503, 554), r


def _swaks(*args):
    p = subprocess.run(["swaks", "--timeout", "15"] + list(args), capture_output=True, timeout=90)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def test_swaks_submission_starttls_auth(server):
    before = server.count(BOB)
    rc, out = _swaks("--server", server.host, "--port", str(server.ports["submission"]), "--tls",
                     "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", USERS[ALICE],
                     "--from", ALICE, "--to", BOB, "--h-Subject", "swaks starttls", "--body", "swaks body 587")
    assert rc == 0, out
    rc, out = _swaks("--server", server.host, "--port", str(server.ports["submission"]), "--tls",
                     "--auth", "LOGIN", "--auth-user", ALICE, "--auth-password", USERS[ALICE],
                     "--from", ALICE, "--to", BOB, "--h-Subject", "swaks login", "--body", "swaks body login")
    assert rc == 0, out
    got = server.messages(BOB)[before:]
    assert len(got) == 2
    assert b"swaks body 587" in got[0] and b"swaks body login" in got[1]


def test_swaks_implicit_tls(server):
    before = server.count(ALICE)
    rc, out = _swaks("--server", server.host, "--port", str(server.ports["submissions"]), "--tlsc",
                     "--auth", "PLAIN", "--auth-user", BOB, "--auth-password", USERS[BOB],
                     "--from", BOB, "--to", ALICE, "--h-Subject", "swaks tlsc", "--body", "swaks body 465",
                     "--pipeline")
    assert rc == 0, out
    (stored,) = server.messages(ALICE)[before:]
    assert b"swaks body 465" in stored


def test_swaks_wrong_password_fails(server):
    rc, out = _swaks("--server", server.host, "--port", str(server.ports["submission"]), "--tls",
                     "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", "nope",
                     "--from", ALICE, "--to", BOB)
    assert rc != 0 and "535" in out, out
