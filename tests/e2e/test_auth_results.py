"""Sender authentication between two postern instances (the outbound tests'
set-up: two daemons on their own loopback addresses, dnsmasq serving MX, A
and TXT records). A (one.test) has DKIM keys from `postern dkim keygen`
(their records published), an SPF record authorizing the address its mail
leaves from and a DMARC record with p=reject. A user submits to bob@two.test
through A's submission port; B stores it with

  Authentication-Results: mx.two.test; ... spf=pass smtp.mailfrom=one.test;
      dkim=pass ... (RSA and Ed25519) ...; dmarc=pass ... header.from=one.test

and dkimpy verifies A's two signatures in the stored message. An
Authentication-Results field claiming B's authserv-id, sent by a client, is
removed (RFC 8601 5); one of another authserv-id is kept."""

import re

import dkim
import pytest

from conftest import client_tls_context, make_message  # noqa: F401
from conftest import header_fields, parse_dkim_list, resinfo, rewrite_conf, txt_line
from dnsmasq import Dnsmasq
from test_outbound import _ips, make_instance, wait_for

ALICE, ALICE_PW = "alice@one.test", "alice-Secret-1"
BOB, BOB_PW = "bob@two.test", "bob-Secret-2"
FWD = "fwd@two.test"


@pytest.fixture(scope="module")
def net(tmp_path_factory, tls_pair):
    (a_ip, b_ip), port = _ips(2)
    common = dict(outbound_port=port, queue_retry_min="1", queue_retry_max="2",
                  queue_poll="1", outbound_connect_timeout="3", dns_timeout_ms="500",
                  dns_tries="1")
    a = make_instance(tmp_path_factory.mktemp("a"), tls_pair, a_ip, port, "mx.one.test", **common)
    b = make_instance(tmp_path_factory.mktemp("b"), tls_pair, b_ip, port, "mx.two.test", **common)
    a.cli("domain", "add", "one.test")
    a.cli("user", "add", ALICE, input=ALICE_PW + "\n")
    a.cli("dkim", "keygen", "one.test")
    b.cli("domain", "add", "two.test")
    b.cli("user", "add", BOB, input=BOB_PW + "\n")
    # B forwards fwd@two.test to alice@one.test (SRS, ARC-sealed with two.test's key)
    b.cli("dkim", "keygen", "two.test")
    b.cli("alias", "add", FWD, ALICE)
    keys = parse_dkim_list(a.cli_out("dkim", "list", "one.test"))
    assert sorted(k[2] for k in keys) == ["ed25519-sha256", "rsa-sha256"], keys
    keys += parse_dkim_list(b.cli_out("dkim", "list", "two.test"))
    records = [
        ("MX", "one.test", "mx.one.test", 10), ("A", "mx.one.test", a_ip),
        ("MX", "two.test", "mx.two.test", 10), ("A", "mx.two.test", b_ip),
        # A's connections to B leave from the loopback's primary address
        # (the SMTP client binds no source address)
        ("TXT", "one.test", "v=spf1 ip4:127.0.0.1 -all"),
        ("TXT", "_dmarc.one.test", "v=DMARC1; p=reject"),
        ("TXT", "two.test", "v=spf1 ip4:127.0.0.1 -all"),
    ]
    for (d, sel, _alg, _state, rec) in keys:
        records.append(txt_line("%s._domainkey.%s" % (sel, d), rec))
    dns = Dnsmasq(tmp_path_factory.mktemp("dns"), records).start()
    for s in (a, b):
        s.opts["dns_resolver"] = dns.server
        rewrite_conf(s)
    a.start()
    b.start()
    n = type("Net", (), {})()
    n.a, n.b, n.dns, n.keys = a, b, dns, {"%s._domainkey.%s." % (k[1], k[0]): k[4].encode()
                                          for k in keys}
    yield n
    for s in (a, b):
        try:
            s.stop()
        except AssertionError as e:
            print(e)
    dns.stop()


def test_submitted_mail_arrives_authenticated(net):
    a, b = net.a, net.b
    before = len(b.messages(BOB))
    msg = make_message(ALICE, BOB, "authenticated", "Signed by one.test.\r\n")
    with a.authed(ALICE, ALICE_PW) as c:
        r = c.mail(ALICE, [BOB], msg)
        assert r.code == 250, r
    wait_for(lambda: len(b.messages(BOB)) == before + 1, what="delivery to B")
    stored = b.messages(BOB)[-1]
    assert stored.endswith(msg)
    ars = header_fields(stored, b"Authentication-Results")
    assert len(ars) == 1, ars
    assert ars[0].startswith(b"Authentication-Results: mx.two.test;"), ars[0]
    res = resinfo(ars[0])
    spf = [r for r in res if r.startswith("spf=") and "smtp.mailfrom=" in r]
    assert len(spf) == 1 and spf[0].startswith("spf=pass") and spf[0].endswith(
        "smtp.mailfrom=one.test"), res
    dk = [r for r in res if r.startswith("dkim=")]
    assert len(dk) == 2, res
    algs = set()
    for r in dk:
        assert r.startswith("dkim=pass"), r
        assert " header.d=one.test" in r, r
        algs.add(re.search(r" header\.a=(\S+)", r).group(1))
        # RFC 6008: header.b, the first 8 characters of the signature
        assert re.search(r' header\.b="?[A-Za-z0-9+/=]{8}"?', r), r
    assert algs == {"rsa-sha256", "ed25519-sha256"}, dk
    dm = [r for r in res if r.startswith("dmarc=")]
    assert len(dm) == 1 and dm[0].startswith("dmarc=pass") and dm[0].endswith(
        "header.from=one.test"), res
    # dkimpy verifies A's signatures in the stored message (both)
    sigs = header_fields(stored, b"DKIM-Signature")
    assert len(sigs) == 2, sigs

    def dnsfunc(name, timeout=5):
        return net.keys.get(name.decode())
    d = dkim.DKIM(stored)
    for i in range(2):
        assert d.verify(idx=i, dnsfunc=dnsfunc), "signature %d did not verify" % i


def test_forged_authentication_results_removed(net):
    b = net.b
    before = len(b.messages(BOB))
    forged = "Authentication-Results: MX.TWO.TEST;\r\n\tspf=pass smtp.mailfrom=bank.test"
    kept = "Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=bank.test"
    msg = make_message("x@bank.test", BOB, "forged ar", "pay now\r\n",
                       extra_headers=[forged, kept])
    with b.client("mx") as c:
        c.ehlo("client.bank.test")
        r = c.mail("x@bank.test", [BOB], msg)
        assert r.code == 250, r
    stored = b.messages(BOB)[before]
    ars = header_fields(stored, b"Authentication-Results")
    assert len(ars) == 2, ars
    # ours (added by B) first, the other hop's kept; the forgery gone
    assert ars[0].startswith(b"Authentication-Results: mx.two.test;"), ars
    assert ars[1] == kept.encode() + b"\r\n", ars
    assert b"MX.TWO.TEST" not in stored
    # everything else byte-exact
    assert stored.endswith(msg.replace(forged.encode() + b"\r\n", b""))


def test_forwarded_mail_sealed_and_rewritten(net):
    """Issue 10: B forwards (alias to a remote address): the envelope sender
    is SRS-rewritten to B's domain, an ARC set (i=1, cv=none, d=two.test)
    sealed with two.test's key from `postern dkim keygen` sits above B's
    Authentication-Results, and A finds arc=pass; dkimpy's ARC verification
    of the message stored at A passes. (The one two-instance ARC test;
    test_arc.py tests the sealer and verifier through the CLI.)"""
    a, b = net.a, net.b
    before = len(a.messages(ALICE))
    msg = make_message("someone@orig.test", FWD, "forwarded", "Through two.test.\r\n")
    with b.client("mx") as c:
        c.ehlo("client.orig.test")
        r = c.mail("someone@orig.test", [FWD], msg)
        assert r.code == 250, r
    wait_for(lambda: len(a.messages(ALICE)) == before + 1, what="forwarded delivery to A")
    stored = a.messages(ALICE)[-1]
    assert stored.endswith(msg)
    assert all(len(line) <= 998 for line in stored.split(b"\r\n"))  # RFC 5322 2.1.1
    # SRS (the envelope A saw): SRS0=HHHH=TT=orig.test=someone@two.test
    rp = stored.split(b"\r\n", 1)[0]
    assert re.match(rb"^Return-Path: <SRS0=[^=]{4}=[^=]{2}=orig\.test=someone@two\.test>$", rp,
                    re.I), rp
    ars = [f for f in header_fields(stored, b"Authentication-Results") if b"mx.one.test" in f]
    assert len(ars) == 1 and ars[0].startswith(b"Authentication-Results: mx.one.test;"), ars
    res = resinfo(ars[0])
    assert any(r.startswith("spf=pass") and r.endswith("smtp.mailfrom=two.test") for r in res), res
    assert any(re.match(r"arc=pass\b", r) for r in res), res
    # B's ARC set (RFC 8617 4.1): instance 1, cv=none, d=two.test
    seal = header_fields(stored, b"ARC-Seal")
    assert len(seal) == 1 and re.search(rb"\bi=1;", seal[0]) and re.search(
        rb"\bcv=none;", seal[0]) and b"d=two.test;" in seal[0], seal
    aar = header_fields(stored, b"ARC-Authentication-Results")
    assert len(aar) == 1 and aar[0].startswith(
        b"ARC-Authentication-Results: i=1; mx.two.test;"), aar

    def dnsfunc(name, timeout=5):
        return net.keys.get(name.decode())
    cv, results, reason = dkim.arc_verify(stored, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, (cv, results, reason)
    assert [(r["instance"], r["as-domain"]) for r in results] == [(1, b"two.test")], results
