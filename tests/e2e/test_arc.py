"""ARC (RFC 8617) against dkimpy (Debian python3-dkim): chains sealed by dkimpy
verify with `postern arc verify`; sets sealed by `postern arc seal` verify
with dkimpy's arc_verify, alone (i=1) and on top of dkimpy's set (i=2, cv=pass),
and dkimpy seals on top of postern's (i=3); a changed body, AMS, AS or signed
header fails; a chain missing an instance fails (5.2 step 3); a failed chain is
sealed with cv=fail over the new set only (5.1.2) and then never again (5.1
step 1). Keys are served by a private dnsmasq (tests/e2e/dnsmasq.py) to
postern and by a dict to dkimpy (its dnsfunc)."""

import base64
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import Postern, txt_line  # noqa: E402
from dnsmasq import Blackhole, Dnsmasq  # noqa: E402

dkim = pytest.importorskip("dkim")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

# dkimpy's arc_sign parses the AR header with python3-authres
# (scripts/debian-packages.txt): the real package, no stand-in
import authres  # noqa: E402,F401

FWD = "forwarder.test"   # dkimpy seals as this domain (selector s1)
RELAY = "relay.test"     # postern's domain and authserv-id (keys: postern dkim keygen)
THIRD = "third.test"     # dkimpy again, after postern


def make_key():
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    der = k.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def keys():
    """dkimpy's keys: (selector, PKCS#8 PEM, public key base64) per domain."""
    return {FWD: ("s1",) + make_key(), THIRD: ("s3",) + make_key()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A postern data directory (no daemon: the CLI only) with RELAY's keys
    from `postern dkim keygen` (RSA and Ed25519; seal takes the RSA one)."""
    p = Postern(tmp_path_factory.mktemp("arc"), dns_timeout_ms=500, dns_tries=2,
                authserv_id=RELAY)
    p.cli("domain", "add", RELAY)
    out = p.cli_out("dkim", "keygen", RELAY)
    p.relay_records = {}
    for m in re.finditer(r'(?m)^(\S+)\._domainkey\.%s\. IN TXT ((?:"[^"]*" ?)+)$'
                         % re.escape(RELAY), out):
        p.relay_records["%s._domainkey.%s" % (m.group(1), RELAY)] = "".join(
            re.findall(r'"([^"]*)"', m.group(2)))
    assert len(p.relay_records) == 2, out
    return p


@pytest.fixture(scope="module")
def records(keys, store):
    r = {"%s._domainkey.%s" % (sel, dom): "v=DKIM1; k=rsa; p=" + pub
         for dom, (sel, _pem, pub) in keys.items()}
    r.update(store.relay_records)
    return r


@pytest.fixture(scope="module")
def dns(tmp_path_factory, records):
    """The keys; names under slow.test are asked of a server that never
    answers (a DNS timeout)."""
    bh = Blackhole()
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"),
                [txt_line(n, t) for n, t in records.items()],
                extra=["server=/slow.test/%s#%d" % (bh.host, bh.port)])
    d.start()
    yield d
    d.stop()
    bh.close()


@pytest.fixture(scope="module")
def node(store, dns):
    store.resolver = dns.server
    return store


def dnsfunc_of(records):
    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        t = records.get(n.rstrip("."))
        return t.encode() if t else None
    return dnsfunc


MESSAGE = (b"From: Alice <alice@origin.test>\r\n"
           b"To: list@forwarder.test\r\n"
           b"Subject: ARC test\r\n"
           b"Date: Wed, 02 Dec 2026 07:00:00 +0000\r\n"
           b"Message-ID: <arc-test@origin.test>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain\r\n"
           b"\r\n"
           b"Hello,\r\n"
           b"  this message is forwarded.  \r\n"
           b"\r\n"
           b"\r\n")


def dkimpy_seal(keys, message, domain, ar):
    """dkimpy's ARC set for message (an Authentication-Results from domain
    carrying ar is added first, as dkimpy reads cv from it), prepended."""
    sel, pem, _pub = keys[domain]
    msg = b"Authentication-Results: " + domain.encode() + b"; " + ar.encode() + b"\r\n" + message
    lines = dkim.arc_sign(msg, sel.encode(), domain.encode(), pem, domain.encode())
    assert lines, "dkimpy added no ARC set"
    return b"".join(lines) + msg


def verify(node, message):
    out = node.cli_out("-o", "dns_resolver=" + node.resolver, "arc", "verify",
                       input=message).strip()
    m = re.fullmatch(r"arc=(\w+) i=(\d+)(?: domains=(\S+))?(?: oldest-pass=(\d+))? reason=(.*)",
                     out)
    assert m, out
    # oldest-pass (RFC 8617 5.2 step 5) comes with every pass, only then
    assert (m.group(1) == "pass") == (m.group(4) is not None), out
    verify.oldest_pass = int(m.group(4)) if m.group(4) else None
    return m.group(1), int(m.group(2)), m.group(3), m.group(5)


def seal(node, message, ar="spf=pass smtp.mailfrom=origin.test"):
    return node.cli("-o", "dns_resolver=" + node.resolver, "arc", "seal", RELAY, "--ar", ar,
                    input=message).stdout


def dkimpy_verify(records, message):
    cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc_of(records))
    return cv, results, reason


def fields(message, name):
    head = message.split(b"\r\n\r\n", 1)[0]
    out = []
    for f in re.split(rb"\r\n(?![ \t])", head):
        if f.lower().startswith(name.lower() + b":"):
            out.append(f)
    return out


# ---- verification of dkimpy's chains ----

def test_no_chain_is_none(node):
    assert verify(node, MESSAGE) == ("none", 0, None, "")


def test_dkimpy_chain_passes(node, keys):
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    assert verify(node, m) == ("pass", 1, FWD, "")


def test_dkimpy_chain_lf_line_ends(node, keys):
    """The CLI reads bare LF as CRLF (what SMTP would have delivered)."""
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    assert verify(node, m.replace(b"\r\n", b"\n")) == ("pass", 1, FWD, "")


def test_changed_body_fails(node, keys):
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    res, n, _d, reason = verify(node, m.replace(b"forwarded", b"FORWARDED"))
    assert (res, n) == ("fail", 1)
    assert reason == "ARC-Message-Signature i=1: body hash did not verify"


def test_changed_signed_header_fails(node, keys):
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    res, n, _d, reason = verify(node, m.replace(b"Subject: ARC test", b"Subject: ARC tast"))
    assert (res, n) == ("fail", 1)
    assert reason == "ARC-Message-Signature i=1: signature did not verify"


def test_changed_ams_fails(node, keys):
    """The AMS's own tags are signed (its t= changed): AMS invalid."""
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    ams = fields(m, b"ARC-Message-Signature")[0]
    bad = re.sub(rb"t=(\d+)", lambda x: b"t=" + str(int(x.group(1)) + 1).encode(), ams, 1)
    assert bad != ams
    res, n, _d, reason = verify(node, m.replace(ams, bad))
    assert (res, n) == ("fail", 1)
    assert reason == "ARC-Message-Signature i=1: signature did not verify"


def test_changed_aar_fails_the_seal(node, keys):
    """The AAR is covered by the AS only: the AMS still verifies, the AS not."""
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    res, n, _d, reason = verify(node, m.replace(b"spf=pass", b"spf=fail", 1))
    assert (res, n) == ("fail", 1)
    assert reason == "ARC-Seal i=1: signature did not verify"


def test_changed_seal_fails(node, keys):
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    a_s = fields(m, b"ARC-Seal")[0]
    bad = re.sub(rb"t=(\d+)", lambda x: b"t=" + str(int(x.group(1)) + 1).encode(), a_s, 1)
    assert bad != a_s
    res, n, _d, reason = verify(node, m.replace(a_s, bad))
    assert (res, n) == ("fail", 1)
    assert reason == "ARC-Seal i=1: signature did not verify"


def test_unknown_key_fails(node, keys):
    sel, pem, _ = keys[FWD]
    msg = b"Authentication-Results: nokey.test; spf=pass\r\n" + MESSAGE
    lines = dkim.arc_sign(msg, b"s1", b"nokey.test", pem, b"nokey.test")
    res, n, _d, reason = verify(node, b"".join(lines) + msg)
    assert (res, n) == ("fail", 1)
    assert reason == "ARC-Message-Signature i=1: no key"


def test_key_timeout_fails_temporarily_and_is_not_sealed(node, keys):
    """A key lookup that times out: fail, said to be temporary; the sealer
    adds nothing (a DNS outage must not end the chain for good: cv=fail would
    be final for every later hop)."""
    sel, pem, _ = keys[FWD]
    msg = b"Authentication-Results: slow.test; spf=pass\r\n" + MESSAGE
    m = b"".join(dkim.arc_sign(msg, b"s1", b"slow.test", pem, b"slow.test")) + msg
    res, n, _d, reason = verify(node, m)
    assert (res, n) == ("fail", 1)
    assert reason == "ARC-Message-Signature i=1: key lookup failed (temporary)"
    assert seal(node, m) == m


# ---- sealing, checked by dkimpy ----

def test_postern_seals_first_instance(node, records):
    m = seal(node, MESSAGE)
    aar = fields(m, b"ARC-Authentication-Results")
    # longer than 78 octets: folded after the authserv-id (RFC 5322 2.1.1)
    assert aar == [b"ARC-Authentication-Results: i=1; relay.test;\r\n\tspf=pass "
                   b"smtp.mailfrom=origin.test"]
    a_s = fields(m, b"ARC-Seal")[0]
    assert re.search(rb"\bcv=none;", a_s) and re.search(rb"\ba=rsa-sha256;", a_s)
    assert m.endswith(MESSAGE)
    cv, results, reason = dkimpy_verify(records, m)
    assert cv == b"pass", reason
    assert [r["instance"] for r in results] == [1]
    assert verify(node, m) == ("pass", 1, RELAY, "")


def test_two_instance_chain(node, keys, records):
    """dkimpy seals i=1, postern i=2 with cv=pass: dkimpy validates the chain."""
    m1 = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    m2 = seal(node, m1)
    assert m2.endswith(m1)
    new_as = [f for f in fields(m2, b"ARC-Seal") if re.search(rb"\bi=2;", f)]
    assert len(new_as) == 1 and re.search(rb"\bcv=pass;", new_as[0])
    cv, results, reason = dkimpy_verify(records, m2)
    assert cv == b"pass", reason
    assert sorted(r["instance"] for r in results) == [1, 2]
    assert all(r["as-valid"] for r in results)
    assert verify(node, m2) == ("pass", 2, FWD + "," + RELAY, "")


def test_three_instance_chain(node, keys, records):
    """dkimpy seals on top of postern's set (i=3): postern's AS and AMS are
    valid inputs to another sealer; both sides validate the chain."""
    m1 = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    m2 = seal(node, m1)
    m3 = dkimpy_seal(keys, m2, THIRD, "arc=pass")
    cv, results, reason = dkimpy_verify(records, m3)
    assert cv == b"pass", reason
    assert verify(node, m3) == ("pass", 3, ",".join([FWD, RELAY, THIRD]), "")
    assert verify.oldest_pass == 0  # every AMS still validates


def test_oldest_pass(node, keys, records):
    """RFC 8617 5.2 step 5: a hop that changes the body (a list footer) and
    seals: the chain passes, the AMS of the earlier hops no longer validate,
    oldest-pass names the oldest instance whose AMS still does."""
    m2 = seal(node, dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test"))
    assert verify(node, m2)[0] == "pass" and verify.oldest_pass == 0
    footed = m2 + b"-- \r\nThe list's footer\r\n"
    m3 = dkimpy_seal(keys, footed, THIRD, "arc=pass")
    assert verify(node, m3) == ("pass", 3, ",".join([FWD, RELAY, THIRD]), "")
    assert verify.oldest_pass == 3


def test_postern_chain_tampered_fails_in_dkimpy(node, keys, records):
    m2 = seal(node, dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test"))
    cv, _r, _reason = dkimpy_verify(records, m2.replace(b"forwarded", b"FORWARDED"))
    assert cv == b"fail"
    changed = m2.replace(b"i=2; relay.test;\r\n\tspf=pass", b"i=2; relay.test;\r\n\tspf=fail")
    assert changed != m2
    cv, _r, _reason = dkimpy_verify(records, changed)
    assert cv == b"fail"


# ---- broken chains ----

def without_instance(message, i):
    head, body = message.split(b"\r\n\r\n", 1)
    kept = [f for f in re.split(rb"\r\n(?![ \t])", head)
            if not (f.lower().startswith(b"arc-") and re.search(rb"\bi=%d;" % i, f))]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


def test_missing_instance_fails(node, keys):
    """RFC 8617 5.2 step 3.2: instances 1..N without a gap."""
    m2 = seal(node, dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test"))
    assert verify(node, without_instance(m2, 1)) == ("fail", 2, None, "ARC instance missing")


def test_duplicate_seal_fails(node, keys):
    m = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    a_s = fields(m, b"ARC-Seal")[0]
    assert verify(node, a_s + b"\r\n" + m) == ("fail", 1, None,
                                                "duplicate ARC field for one instance")


def test_failed_chain_is_sealed_with_cv_fail_once(node, keys, records):
    """RFC 8617 5.1.2: the set added to a failed chain says cv=fail and its AS
    covers only itself; 5.1 step 1: a chain ending in cv=fail gets no more."""
    m1 = dkimpy_seal(keys, MESSAGE, FWD, "spf=pass smtp.mailfrom=origin.test")
    tampered = m1.replace(b"forwarded", b"FORWARDED")
    m2 = seal(node, tampered)
    new_as = [f for f in fields(m2, b"ARC-Seal") if re.search(rb"\bi=2;", f)]
    assert len(new_as) == 1 and re.search(rb"\bcv=fail;", new_as[0])
    res, n, _d, reason = verify(node, m2)
    assert (res, n, reason) == ("fail", 2, "the newest ARC-Seal says cv=fail")
    # the new AS covers the new set alone: with set 1 taken away (dkimpy picks
    # the fields an AS covers by name, bottom up, so it would take set 1's),
    # dkimpy finds postern's AS and AMS of instance 2 valid
    d = dkim.ARC(without_instance(m2, 1))
    _max, hdrs = d.sorted_arc_headers()
    r = d.verify_instance(hdrs, 2, dnsfunc=dnsfunc_of(records))
    assert (r["cv"], r["as-valid"], r["ams-valid"]) == (b"fail", True, True)
    # nothing more is added to it
    assert seal(node, m2) == m2
