"""DMARC (RFC 7489) enforced by the daemon, end to end: unsigned mail from
domains with p=none / quarantine / reject, pct=0, sp= for subdomains, strict
and relaxed alignment and no record, sent to one postern instance whose
resolver is a dnsmasq serving the zones. p=reject: 550 5.7.1 at the end of
data and nothing stored; p=quarantine: the recipient's Junk mailbox (created
when missing); none / pass: INBOX. The Authentication-Results field's dmarc=
result is checked exactly. spf_action = reject: 550 5.7.23 at MAIL for an
SPF fail; a DNS server that never answers (temperror) gives 451 4.7.24 at
MAIL, and with spf_action = record never any 5xx."""

import re

import pytest

from conftest import auth_results, dnsmasq_with_slow_zone, make_message, resinfo

ALICE = "alice@example.test"
AUTHSERV = "mx.example.test"  # the test daemon's hostname: the default authserv-id


def dmarc(name, text):
    return ("TXT", "_dmarc." + name, text)


def spf(name, text):
    return ("TXT", name, text)


RECORDS = [
    dmarc("none.test", "v=DMARC1; p=none"),
    dmarc("quar.test", "v=DMARC1; p=quarantine"),
    dmarc("reject.test", "v=DMARC1; p=reject"),
    dmarc("pct0.test", "v=DMARC1; p=quarantine; pct=0"),
    dmarc("pct0r.test", "v=DMARC1; p=reject; pct=0"),
    dmarc("org.test", "v=DMARC1; p=reject; sp=quarantine"),
    # SPF passes for the envelope's subdomain: aligned only when relaxed
    dmarc("strict.test", "v=DMARC1; p=reject; aspf=s"),
    spf("bounce.strict.test", "v=spf1 ip4:127.0.0.1 -all"),
    dmarc("relaxed.test", "v=DMARC1; p=reject"),
    spf("bounce.relaxed.test", "v=spf1 ip4:127.0.0.1 -all"),
    # aligned SPF pass on the From domain itself
    dmarc("pass.test", "v=DMARC1; p=reject"),
    spf("pass.test", "v=spf1 ip4:127.0.0.1 -all"),
    # SPF fail
    spf("spffail.test", "v=spf1 -all"),
    # no DMARC record at all
    ("A", "nodmarc.test", "192.0.2.1"),
]


@pytest.fixture(scope="module")
def dns(tmp_path_factory, blackhole):
    # slow.test goes to a server that never answers: every lookup times out
    d = dnsmasq_with_slow_zone(tmp_path_factory, RECORDS, blackhole)
    yield d
    d.stop()


def resolver(dns):
    return "%s:%d" % (dns.host, dns.port)


@pytest.fixture(scope="module")
def mx(tmp_path_factory, tls_pair, dns):
    from conftest import _new_server
    srv = _new_server(tmp_path_factory, tls_pair, "dmarc", dns_resolver=resolver(dns),
                      dns_timeout_ms=400, dns_tries=1)
    yield srv
    srv.stop()


def send(srv, mail_from, from_hdr, subject, rcpt=ALICE, helo="client.remote.test"):
    """(reply at the end of data, the message sent)"""
    hdrs = []
    msg = make_message(from_hdr or "x@x.test", rcpt, subject, "body of %s\r\n" % subject)
    if from_hdr is None:
        msg = re.sub(rb"(?m)^From: .*\r\n", b"", msg)
    with srv.client("mx") as c:
        c.ehlo(helo)
        r = c.mail(mail_from, [rcpt], msg, expect_ok=False)
    return r, msg


def stored_with(srv, subject, mailbox=None):
    got = [m for m in srv.messages(ALICE, mailbox) if ("Subject: %s\r\n" % subject).encode() in m]
    return got


# (From domain, envelope sender, where it goes, the exact dmarc= resinfo)
CASES = [
    ("none.test", "x@none.test", "INBOX",
     "dmarc=fail (p=none sp=none dis=none) header.from=none.test"),
    ("quar.test", "x@quar.test", "Junk",
     "dmarc=fail (p=quarantine sp=quarantine dis=quarantine) header.from=quar.test"),
    # pct=0 (RFC 7489 6.6.4): sampled out, the policy one step down
    ("pct0.test", "x@pct0.test", "INBOX",
     "dmarc=fail (p=quarantine sp=quarantine dis=none pct) header.from=pct0.test"),
    ("pct0r.test", "x@pct0r.test", "Junk",
     "dmarc=fail (p=reject sp=reject dis=quarantine pct) header.from=pct0r.test"),
    # sp= for a subdomain without a record of its own (6.6.3: the org domain's)
    ("sub.org.test", "x@sub.org.test", "Junk",
     "dmarc=fail (p=reject sp=quarantine dis=quarantine) header.from=sub.org.test"),
    # relaxed alignment: SPF pass for bounce.relaxed.test aligns with relaxed.test
    ("relaxed.test", "x@bounce.relaxed.test", "INBOX",
     "dmarc=pass (p=reject sp=reject dis=none) header.from=relaxed.test"),
    ("pass.test", "x@pass.test", "INBOX",
     "dmarc=pass (p=reject sp=reject dis=none) header.from=pass.test"),
    ("nodmarc.test", "x@nodmarc.test", "INBOX", "dmarc=none header.from=nodmarc.test"),
]


@pytest.mark.parametrize("from_domain,mail_from,where,want", CASES)
def test_dmarc_disposition(mx, from_domain, mail_from, where, want):
    subject = "dmarc %s %s" % (from_domain, mail_from)
    r, msg = send(mx, mail_from, "someone@" + from_domain, subject)
    assert r.code == 250, r
    box = None if where == "INBOX" else where
    got = stored_with(mx, subject, box)
    assert len(got) == 1, "not in %s" % where
    other = stored_with(mx, subject, "Junk" if where == "INBOX" else None)
    assert other == [], "stored twice"
    ars = auth_results(got[0])
    assert len(ars) == 1, ars
    assert ars[0].startswith(b"Authentication-Results: " + AUTHSERV.encode() + b";"), ars[0]
    assert resinfo(ars[0], b"dmarc") == [want], ars[0]
    # the message itself is stored as sent, after the trace fields
    assert got[0].endswith(msg)


def test_reject_at_end_of_data(mx):
    subject = "dmarc reject"
    r, _ = send(mx, "x@reject.test", "someone@reject.test", subject)
    assert r.code == 550 and r.enh == "5.7.1", r
    assert "reject.test" in r.text, r
    assert stored_with(mx, subject) == [] and stored_with(mx, subject, "Junk") == []


def test_strict_alignment_rejects(mx):
    # SPF passes for bounce.strict.test, but aspf=s wants strict.test exactly
    subject = "dmarc strict"
    r, _ = send(mx, "x@bounce.strict.test", "someone@strict.test", subject)
    assert r.code == 550 and r.enh == "5.7.1", r
    assert stored_with(mx, subject) == []


def test_junk_created_when_missing(mx):
    # alice has no Junk mailbox: quarantine creates it (RFC 6154 \Junk)
    mx.cli("mailbox", "delete", ALICE, "Junk", check=False)
    names = mx.cli_out("mailbox", "list", ALICE)
    if "Junk" in names:
        pytest.skip("mailbox delete not available to remove Junk")
    subject = "dmarc junk created"
    r, _ = send(mx, "x@quar.test", "someone@quar.test", subject)
    assert r.code == 250, r
    assert len(stored_with(mx, subject, "Junk")) == 1
    assert stored_with(mx, subject) == []


@pytest.mark.parametrize("from_hdr,want", [
    (None, "dmarc=none (no From: domain)"),
    ("a@quar.test, b@reject.test", "dmarc=permerror (several From: domains)"),
])
def test_from_unusable_never_rejected(mx, from_hdr, want):
    # RFC 7489 6.6.1: no single From domain: not evaluated, never refused for it
    subject = "dmarc from %s" % from_hdr
    r, _ = send(mx, "x@reject.test", from_hdr, subject)
    assert r.code == 250, r
    (got,) = stored_with(mx, subject)
    (ar,) = auth_results(got)
    assert resinfo(ar, b"dmarc") == [want], ar


def test_temperror_never_5xx(mx):
    # every lookup for slow.test times out: spf=temperror, dmarc=temperror, accepted
    subject = "dmarc slow"
    r, _ = send(mx, "x@slow.test", "someone@slow.test", subject)
    assert r.code == 250, r
    (got,) = stored_with(mx, subject)
    (ar,) = auth_results(got)
    mailfrom = [s.split()[0] for s in resinfo(ar, b"spf") if "smtp.mailfrom=" in s]
    assert mailfrom == ["spf=temperror"], ar
    assert [s.split()[0] for s in resinfo(ar, b"dmarc")] == ["dmarc=temperror"], ar


@pytest.fixture(scope="module")
def mx_spf_reject(tmp_path_factory, tls_pair, dns):
    from conftest import _new_server
    srv = _new_server(tmp_path_factory, tls_pair, "spfreject", dns_resolver=resolver(dns),
                      dns_timeout_ms=400, dns_tries=1, spf_action="reject")
    yield srv
    srv.stop()


def test_spf_reject_at_mail(mx_spf_reject):
    with mx_spf_reject.client("mx") as c:
        c.ehlo("client.remote.test")
        r = c.cmd("MAIL FROM:<x@spffail.test>")
        assert r.code == 550 and r.enh == "5.7.23", r
        # the session goes on: another sender is fine
        r = c.cmd("MAIL FROM:<x@pass.test>")
        assert r.code == 250, r
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("RSET").code == 250
        # temperror (RFC 7208 8.6): 451 4.7.24, never a 5xx
        r = c.cmd("MAIL FROM:<x@slow.test>")
        assert r.code == 451 and r.enh == "4.7.24", r
        assert c.cmd("QUIT").code == 221


def test_spf_reject_pipelined(mx_spf_reject):
    # RFC 2920: MAIL parked on SPF, RCPT and DATA pipelined behind it
    with mx_spf_reject.client("mx") as c:
        c.ehlo("client.remote.test")
        c.send(b"MAIL FROM:<x@spffail.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % ALICE.encode())
        r1, r2, r3 = c.reply(), c.reply(), c.reply()
        assert (r1.code, r1.enh) == (550, "5.7.23"), r1
        assert r2.code == 503 and r3.code in (503, 554), (r2, r3)
        assert c.cmd("QUIT").code == 221


# ---- the policy transaction's lifetime (no callback after it is freed:
# these run under ASan with build-san/postern) ----

def test_lifetime_every_path(mx_spf_reject, mx):
    import socket
    import time
    # disconnect while MAIL is parked on a lookup that times out
    c = mx_spf_reject.client("mx")
    c.ehlo("client.remote.test")
    c.send(b"MAIL FROM:<x@slow.test>\r\n")
    c.close()
    # RSET, EHLO and QUIT with a transaction holding pending lookups
    for end in (b"RSET", b"EHLO again.test", b"QUIT"):
        with mx.client("mx") as c:
            c.ehlo("client.remote.test")
            assert c.cmd("MAIL FROM:<x@slow.test>").code == 250
            assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
            r = c.cmd(end.decode())
            assert r.code in (250, 221), r
    # disconnect in the middle of DATA (the content half through policy)
    c = mx.client("mx")
    c.ehlo("client.remote.test")
    assert c.cmd("MAIL FROM:<x@slow.test>").code == 250
    assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"From: a@slow.test\r\nAuthentication-Res")
    c.close()
    # disconnect right after the end of data, while policy_end waits for DNS
    c = mx.client("mx")
    c.ehlo("client.remote.test")
    assert c.cmd("MAIL FROM:<x@slow.test>").code == 250
    assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"From: a@slow.test\r\nSubject: gone early\r\n\r\nx\r\n.\r\n")
    c.close()
    time.sleep(1.5)
    # the daemons are still fine
    for srv in (mx, mx_spf_reject):
        with srv.client("mx") as c:
            c.ehlo("client.remote.test")
            assert c.cmd("NOOP").code == 250
    # the message whose sender left is stored all the same (its data had ended)
    assert any(b"Subject: gone early\r\n" in m for m in mx.messages(ALICE))


def test_shutdown_with_policy_pending(tmp_path_factory, tls_pair, dns):
    from conftest import _new_server
    srv = _new_server(tmp_path_factory, tls_pair, "shutdown", dns_resolver=resolver(dns),
                      dns_timeout_ms=2000, dns_tries=1, spf_action="reject")
    c = srv.client("mx")
    c.ehlo("client.remote.test")
    c.send(b"MAIL FROM:<x@slow.test>\r\n")
    c2 = srv.client("mx")
    c2.ehlo("client.remote.test")
    assert c2.cmd("MAIL FROM:<x@pass.test>").code == 250
    assert c2.cmd("RCPT TO:<%s>" % ALICE).code == 250
    assert c2.cmd("DATA").code == 354
    c2.send(b"From: a@slow.test\r\nSubject: at shutdown\r\n\r\nx\r\n.\r\n")
    import time
    time.sleep(0.2)
    srv.stop()  # SIGTERM: the parked sessions get their answer, then 421
    r = c.reply()
    assert r.code == 451 and r.enh == "4.7.24", r
    c.close()
    c2.close()
