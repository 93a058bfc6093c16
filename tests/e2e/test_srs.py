"""SRS (issue 10): forwarded mail leaves with an SRS0 envelope sender, and a
bounce to that SRS address comes home to the original sender; forged,
expired and malformed SRS addresses are refused at RCPT.

One postern instance serves fwd.test (the forwarding domain: alias
fwd@fwd.test -> someone@remote.test, account alice@fwd.test); a private
dnsmasq gives remote.test's MX to one scripted next hop (the "remote" sink)
and orig.test's to another (the original sender's server). The SRS secret is
configured (srs_secret), so that the test computes the addresses the way
srs.h documents them: SRS0=HHHH=TT=domain=local@fwd.test, HHHH the first 4
characters of base64(HMAC-SHA1(secret, "TT=domain=local" lowercased)), TT
the day number mod 1024 in base32. Every wait is bounded; every process is
stopped by PID.
"""
import base64
import hashlib
import hmac
import re
import time

import pytest

from conftest import Client, crlf
from dnsmasq import Dnsmasq
from smtpsink import wait_until
from test_outbound import Sink, _ips, make_instance

SECRET = "e2e-srs-secret"
OLD_SECRET = "retired-secret"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
WAIT = 30.0


def srs0(local, domain, day=None, secret=SECRET, our="fwd.test"):
    if day is None:
        day = int(time.time()) // 86400
    day %= 1024
    rest = "%s%s=%s=%s" % (B32[day >> 5], B32[day & 31], domain, local)
    h = base64.b64encode(hmac.new(secret.encode(), rest.lower().encode(),
                                  hashlib.sha1).digest()).decode()[:4]
    return "SRS0=%s=%s@%s" % (h, rest, our)


@pytest.fixture(scope="module")
def net(tmp_path_factory, tls_pair):
    (a_ip, remote_ip, orig_ip), port = _ips(3)
    dns = Dnsmasq(tmp_path_factory.mktemp("dns"), [
        ("MX", "fwd.test", "mx.fwd.test", 10), ("A", "mx.fwd.test", a_ip),
        ("MX", "remote.test", "mx.remote.test", 10), ("A", "mx.remote.test", remote_ip),
        ("MX", "orig.test", "mx.orig.test", 10), ("A", "mx.orig.test", orig_ip),
    ]).start()
    a = make_instance(tmp_path_factory.mktemp("a"), tls_pair, a_ip, port, "mx.fwd.test",
                      dns_resolver=dns.server, outbound_port=port, queue_retry_min="1",
                      queue_retry_max="2", queue_poll="1", outbound_connect_timeout="3",
                      queue_delay_warning="0", srs="yes",
                      srs_secret="%s,%s" % (SECRET, OLD_SECRET), srs_max_age="21d")
    a.cli("domain", "add", "fwd.test")
    a.cli("user", "add", "alice@fwd.test", input="alice-Secret-1\n")
    a.cli("alias", "add", "fwd@fwd.test", "someone@remote.test")
    a.cli("domain", "add", "other.test")
    a.cli("user", "add", "bob@other.test", input="bob-Secret-2\n")
    remote, orig = Sink(remote_ip, port), Sink(orig_ip, port)
    a.start()
    n = type("Net", (), {})()
    n.a, n.remote, n.orig, n.dns = a, remote, orig, dns
    yield n
    try:
        a.stop()
    finally:
        remote.close()
        orig.close()
        dns.stop()


@pytest.fixture(autouse=True)
def clean(net):
    net.remote.reset()
    net.orig.reset()


def mx(net):
    c = Client(net.a.host, net.a.ports["mx"])
    c.ehlo("client.orig.test")
    return c


def dsn_message(to):
    return crlf("From: MAILER-DAEMON@mx.remote.test\n"
                "To: %s\n"
                "Subject: Undelivered Mail Returned to Sender\n"
                "Message-ID: <dsn-1@mx.remote.test>\n"
                "Content-Type: text/plain\n"
                "\n"
                "The original DSN text: someone@remote.test is unknown.\n" % to)


def test_forward_rewrites_envelope_sender(net):
    """The alias sends the message on with SRS0=...=orig.test=sender@fwd.test."""
    with mx(net) as c:
        r = c.mail("sender@orig.test", ["fwd@fwd.test"],
                   crlf("From: sender@orig.test\nSubject: fwd\n\nforwarded\n"))
        assert r.code == 250, r
    tx = wait_until(lambda: net.remote.tx, WAIT, "the forwarded copy")
    mail, rcpts, data = tx[0]
    m = re.match(r"MAIL FROM:<([^>]*)>", mail, re.I)
    assert m, mail
    assert m.group(1) == srs0("sender", "orig.test"), mail
    assert rcpts == ["someone@remote.test"]
    assert b"forwarded" in data


def test_bounce_to_srs_address_reaches_original_sender(net):
    addr = srs0("sender", "orig.test")
    msg = dsn_message(addr)
    with mx(net) as c:
        r = c.cmd("MAIL FROM:<>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<%s>" % addr)
        assert r.code == 250, r
        r = c.data(msg)
        assert r.code == 250, r
    tx = wait_until(lambda: net.orig.tx, WAIT, "the bounce at orig.test")
    mail, rcpts, data = tx[0]
    assert re.match(r"MAIL FROM:<>", mail, re.I), mail
    assert rcpts == ["sender@orig.test"]
    # the original DSN content, as it was sent (after our trace fields)
    assert msg in data, data
    assert not net.remote.tx


def test_bounce_from_forward_returns_through_srs(net):
    """The forwarded copy is refused by the next hop: postern's own DSN to the
    SRS sender goes to the original sender (bounce.c decodes it)."""
    net.remote.rcpt_replies["someone@remote.test"] = ["550 5.1.1 no such user"]
    with mx(net) as c:
        r = c.mail("sender@orig.test", ["fwd@fwd.test"],
                   crlf("From: sender@orig.test\nSubject: doomed\n\nx\n"))
        assert r.code == 250, r
    tx = wait_until(lambda: net.orig.tx, WAIT, "the DSN at orig.test")
    mail, rcpts, data = tx[0]
    assert re.match(r"MAIL FROM:<>", mail, re.I), mail
    assert rcpts == ["sender@orig.test"]
    assert b"multipart/report" in data and b"someone@remote.test" in data
    # it went to the SRS sender and was decoded there
    assert re.search(r"queue dsn queue_id=\S+ srs=SRS0=\S+ to=sender@orig.test", net.a.log())


@pytest.mark.parametrize("case", ["case", "rotated"])
def test_valid_variants_accepted(net, case):
    if case == "case":   # a next hop may change the case of the address
        addr = srs0("sender", "orig.test").upper().replace("@FWD.TEST", "@fwd.test")
        want = "SENDER@ORIG.TEST"
    else:                # signed with the older secret: rotation
        addr = srs0("sender", "orig.test", secret=OLD_SECRET)
        want = "sender@orig.test"
    with mx(net) as c:
        assert c.cmd("MAIL FROM:<>").code == 250
        r = c.cmd("RCPT TO:<%s>" % addr)
        assert r.code == 250, r
        r = c.data(dsn_message(addr))
        assert r.code == 250, r
    tx = wait_until(lambda: net.orig.tx, WAIT, "the bounce at orig.test")
    assert [x.lower() for x in tx[0][1]] == [want.lower()]


def test_bounce_to_srs_of_our_other_domain_stays_local(net):
    """The original sender is an account of another of our domains: the
    bounce is delivered to its mailbox, not sent out to ourselves."""
    addr = srs0("bob", "other.test")
    before = len(net.a.messages("bob@other.test"))
    with mx(net) as c:
        assert c.cmd("MAIL FROM:<>").code == 250
        r = c.cmd("RCPT TO:<%s>" % addr)
        assert r.code == 250, r
        r = c.data(dsn_message(addr))
        assert r.code == 250, r
    wait_until(lambda: len(net.a.messages("bob@other.test")) == before + 1, WAIT, "local bounce")
    assert not net.a.queue()
    assert not net.orig.tx and not net.remote.tx


def _forged():
    a = srs0("sender", "orig.test")
    h = a[5:9]
    bad = ("b" if h[0] in "aA" else "a") + h[1:]
    return a.replace(h, bad, 1)


@pytest.mark.parametrize("addr", [
    # the hash changed
    pytest.param(_forged(), id="forged-hash"),
    # a valid hash for orig.test, the domain changed
    pytest.param(srs0("sender", "orig.test").replace("=orig.test=", "=evil.test="), id="forged-domain"),
    # an unknown secret
    pytest.param(srs0("sender", "orig.test", secret="not-ours"), id="unknown-secret"),
    # 30 days old (srs_max_age = 21d)
    pytest.param(srs0("sender", "orig.test", day=int(time.time()) // 86400 - 30), id="expired"),
    # malformed
    pytest.param("SRS0=abc@fwd.test", id="malformed-short"),
    pytest.param("SRS0=abcd=A!=orig.test=sender@fwd.test", id="malformed-stamp"),
    pytest.param("srs1=abcd=orig.test@fwd.test", id="malformed-srs1"),
])
def test_invalid_srs_refused(net, addr):
    with mx(net) as c:
        assert c.cmd("MAIL FROM:<>").code == 250
        r = c.cmd("RCPT TO:<%s>" % addr)
        assert r.code == 550, r
        assert r.lines == ["5.7.1 <%s>: invalid SRS address" % addr], r
    assert "smtp srs refused" in net.a.log()


def test_local_delivery_unaffected(net):
    before = len(net.a.messages("alice@fwd.test"))
    with mx(net) as c:
        r = c.mail("sender@orig.test", ["alice@fwd.test"],
                   crlf("From: sender@orig.test\nSubject: local\n\nhi\n"))
        assert r.code == 250, r
        # an ordinary unknown local part is still "User unknown", not SRS
        assert c.cmd("MAIL FROM:<x@orig.test>").code in (250, 503)
    wait_until(lambda: len(net.a.messages("alice@fwd.test")) == before + 1, WAIT, "local")
    with mx(net) as c:
        assert c.cmd("MAIL FROM:<x@orig.test>").code == 250
        r = c.cmd("RCPT TO:<nobody@fwd.test>")
        assert r.code == 550 and r.lines[0].startswith("5.1.1"), r
        # an SRS-looking address of a domain not ours: relay denied as before
        r = c.cmd("RCPT TO:<%s>" % srs0("sender", "orig.test", our="remote.test"))
        assert r.code == 554, r
    assert not net.remote.tx and not net.orig.tx


def test_srs_off_resolves_normally(tmp_path, tls_pair):
    """srs = no: an SRS-looking local part is an ordinary (unknown) user."""
    from conftest import Postern
    s = Postern(tmp_path, tls_pair, srs="no")
    s.cli("domain", "add", "fwd.test")
    s.start()
    try:
        with Client(s.host, s.ports["mx"]) as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<>").code == 250
            r = c.cmd("RCPT TO:<%s>" % srs0("sender", "orig.test"))
            assert r.code == 550 and r.lines[0].startswith("5.1.1"), r
    finally:
        s.stop()


def test_generated_secret_kept(tmp_path, tls_pair):
    """No srs_secret: one is generated at the first start and kept."""
    from conftest import Postern
    s = Postern(tmp_path, tls_pair, srs="yes")
    s.cli("domain", "add", "fwd.test")
    s.start()
    s.stop()
    s.start()
    s.stop()
    assert s.log().count("srs: generated a secret") == 1
