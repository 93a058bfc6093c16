"""`postern dns records DOMAIN` and `postern dns check DOMAIN` (issue 10).

records: the exact records for a domain with DKIM keys (an RSA key, whose
record is split into 255-octet strings, and a pending Ed25519 key), the
RFC 6186 SRV records of the configured listeners ("0 0 0 ." for the others),
the commented placeholders; after `postern dkim keygen`, both new keys'
records. check: against a private dnsmasq serving a zone
built from the printed records (everything ok, exit 0); then a zone without
the SPF record, with a wrong DKIM p= and without DMARC (each reported, exit
1); a DMARC record at the organizational domain only (ok); a resolver that
never answers (exit 75). The CLI runs against a data directory; no daemon.
"""
import os
import re
import sqlite3
import subprocess
import time

import pytest

from conftest import Postern
from dnsmasq import Blackhole, Dnsmasq

DOMAIN = "example.test"
HOST = "mx.example.test"
HOST_IP = "127.0.0.77"
RSA_PUB = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 348 + "IDAQAB"
ED_PUB = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Postern(tmp_path_factory.mktemp("dnsrec"), hostname=HOST, imap_listen="",
                pop3_listen="")
    s.cli("domain", "add", DOMAIN)
    now = int(time.time())
    db = sqlite3.connect(os.path.join(s.data_dir, "postern.db"))
    # the keys as `postern dkim keygen` stores them (a row of dkim_keys): the
    # RSA key signs, the Ed25519 one is pending (signs tomorrow), a retired
    # one is no longer published
    rows = [("rsa1", "rsa-sha256", RSA_PUB, now - 10, 0),
            ("ed1", "ed25519-sha256", ED_PUB, now + 86400, 0),
            ("old", "rsa-sha256", "T0xE", now - 1000, now - 100)]
    for sel, alg, pub, since, retire in rows:
        db.execute("INSERT INTO dkim_keys(domain, selector, alg, private_key, public_key,"
                   " created, active_from, retire_at) VALUES(?, ?, ?, 'x', ?, ?, ?, ?)",
                   (DOMAIN, sel, alg, pub, now - 1000, since, retire))
    db.commit()
    db.close()
    return s


def run(srv, *args, **opts):
    """postern -c CONF ARGS with extra options appended to the configuration."""
    conf = srv.conf + ".%d" % len(opts)
    with open(srv.conf) as f, open(conf, "w") as g:
        g.write(f.read())
        for k, v in opts.items():
            g.write("%s = %s\n" % (k, v))
    p = subprocess.run([os.environ.get("POSTERN_BIN", "./postern"), "-c", conf] + list(args),
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def records(srv):
    rc, out, err = run(srv, "dns", "records", DOMAIN)
    assert rc == 0, err
    return out


def parse_zone(text):
    """The printed records: [(name, type, rdata)], continuation lines joined."""
    recs = []
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        if line.startswith("\t"):
            n, t, r = recs.pop()
            recs.append((n, t, r + " " + line.strip()))
            continue
        name, cls, typ, rdata = line.split(None, 3)
        assert cls == "IN", line
        recs.append((name, typ, rdata))
    return recs


def txt_strings(rdata):
    return [re.sub(r"\\(.)", r"\1", s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', rdata)]


def zone(text, drop=(), replace=None):
    """dnsmasq records for the printed zone (+ the host's A record)."""
    out = [("A", HOST, HOST_IP)]
    for name, typ, rdata in parse_zone(text):
        name = name.rstrip(".")
        if name in drop:
            continue
        if typ == "MX":
            pref, host = rdata.split()
            out.append(("MX", name, host.rstrip("."), int(pref)))
        elif typ == "TXT":
            strings = txt_strings(rdata)
            if replace and name in replace:
                strings = [replace[name]]
            out.append("txt-record=%s,%s" % (name, ",".join('"%s"' % s for s in strings)))
        elif typ == "SRV":
            prio, weight, port, target = rdata.split()
            if target == ".":
                out.append("srv-host=%s" % name)   # "service not available"
            else:
                out.append("srv-host=%s,%s,%s,%s,%s" % (name, target.rstrip("."), port,
                                                       prio, weight))
        else:
            raise AssertionError("unexpected record " + typ)
    return out


def test_records(srv):
    out = records(srv)
    recs = parse_zone(out)
    assert ("example.test.", "MX", "10 mx.example.test.") in recs
    assert ("example.test.", "TXT", '"v=spf1 mx -all"') in recs
    assert ("_dmarc.example.test.", "TXT",
            '"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"') in recs
    # DKIM: the active RSA key, split into strings of at most 255 octets; the
    # pending Ed25519 key; not the retired one
    rsa_text = "v=DKIM1; k=rsa; p=" + RSA_PUB
    dk = {n: r for n, t, r in recs if n.endswith("._domainkey.example.test.")}
    assert set(dk) == {"rsa1._domainkey.example.test.", "ed1._domainkey.example.test."}
    parts = txt_strings(dk["rsa1._domainkey.example.test."])
    assert "".join(parts) == rsa_text and len(parts) == 2
    assert [len(p) for p in parts] == [255, len(rsa_text) - 255]
    assert dk["rsa1._domainkey.example.test."].startswith("( ")
    assert txt_strings(dk["ed1._domainkey.example.test."]) == ["v=DKIM1; k=ed25519; p=" + ED_PUB]
    assert "signs from" in out and "signing since" in out
    # RFC 6186: the configured listeners at their well-known ports, the
    # others not offered
    srv_recs = {n: r for n, t, r in recs if t == "SRV"}
    assert srv_recs == {
        "_submissions._tcp.example.test.": "0 1 465 mx.example.test.",
        "_submission._tcp.example.test.": "0 1 587 mx.example.test.",
        "_imaps._tcp.example.test.": "0 1 993 mx.example.test.",
        "_imap._tcp.example.test.": "0 0 0 .",
        "_pop3s._tcp.example.test.": "0 1 995 mx.example.test.",
        "_pop3._tcp.example.test.": "0 0 0 .",
    }
    # placeholders, commented out
    for line in ("; autoconfig.example.test. IN CNAME mx.example.test.",
                 "; autodiscover.example.test. IN CNAME mx.example.test.",
                 '; _smtp._tls.example.test. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.test"'):
        assert line in out.splitlines(), line
    assert "p=none" in out   # the migration advice
    assert {t for n, t, r in recs} == {"MX", "TXT", "SRV"}


def test_records_not_local(srv):
    rc, out, err = run(srv, "dns", "records", "other.test")
    assert rc == 1 and "not a local domain" in err


def check(srv, recs):
    with Dnsmasq(srv.dir, recs) as dns:
        rc, out, err = run(srv, "dns", "check", DOMAIN, dns_resolver=dns.server)
    lines = out.splitlines()
    return rc, {tuple(l.split()[1:3]): l for l in lines}, out


def test_check_all_ok(srv):
    rc, by, out = check(srv, zone(records(srv)))
    assert rc == 0, out
    want = {("MX", "example.test:"), ("A", "mx.example.test:"), ("SPF", "example.test:"),
            ("DKIM", "rsa1._domainkey.example.test:"), ("DKIM", "ed1._domainkey.example.test:"),
            ("DMARC", "_dmarc.example.test:"), ("SRV", "_submissions._tcp.example.test:"),
            ("SRV", "_submission._tcp.example.test:"), ("SRV", "_imaps._tcp.example.test:"),
            ("SRV", "_pop3s._tcp.example.test:")}
    assert set(by) == want, out
    for l in by.values():
        assert l.startswith("ok "), l
    assert HOST_IP in by[("A", "mx.example.test:")]
    # the SPF evaluator (RFC 7208 check_host) passes our host by "mx"
    assert '"v=spf1 mx -all": 127.0.0.77 pass (mx)' in by[("SPF", "example.test:")], out


def test_check_missing_and_wrong(srv):
    text = records(srv)
    recs = zone(text, drop=("_dmarc.example.test",),
                replace={"example.test": "v=DKIM1; p=x",   # TXT at the domain: no SPF
                         "rsa1._domainkey.example.test": "v=DKIM1; k=rsa; p=AAAAwrong"})
    rc, by, out = check(srv, recs)
    assert rc == 1, out
    assert by[("SPF", "example.test:")].startswith("missing "), out
    assert 'publish: example.test. IN TXT "v=spf1 mx -all"' in by[("SPF", "example.test:")]
    dk = by[("DKIM", "rsa1._domainkey.example.test:")]
    assert dk.startswith("wrong ") and "p=AAAAwrong" in dk, out
    assert "publish: rsa1._domainkey.example.test. IN TXT" in dk and RSA_PUB[-40:] in dk
    dm = by[("DMARC", "_dmarc.example.test:")]
    assert dm.startswith("missing ") and "v=DMARC1; p=quarantine" in dm, out
    for k in (("MX", "example.test:"), ("DKIM", "ed1._domainkey.example.test:"),
              ("SRV", "_imaps._tcp.example.test:")):
        assert by[k].startswith("ok "), by[k]


def test_check_wrong_mx_spf_srv(srv):
    text = records(srv)
    recs = [r for r in zone(text, replace={"example.test": "v=spf1 ip4:192.0.2.0/24 -all"})
            if not (isinstance(r, tuple) and r[0] == "MX")
            and not (isinstance(r, str) and "_imaps" in r)]
    recs += [("MX", DOMAIN, "mail.elsewhere.test", 10), ("A", "mail.elsewhere.test", "127.0.0.78"),
             "srv-host=_imaps._tcp.example.test,imap.elsewhere.test,993,0,1"]
    rc, by, out = check(srv, recs)
    assert rc == 1, out
    assert by[("MX", "example.test:")].startswith("wrong ") and "mail.elsewhere.test" in out
    assert by[("SPF", "example.test:")].startswith("wrong "), out
    assert by[("SRV", "_imaps._tcp.example.test:")].startswith("wrong "), out


def test_check_two_spf_records(srv):
    recs = zone(records(srv)) + [("TXT", DOMAIN, "v=spf1 -all")]
    rc, by, out = check(srv, recs)
    assert rc == 1, out
    assert by[("SPF", "example.test:")].startswith("wrong "), out
    assert "RFC 7208 4.5" in by[("SPF", "example.test:")]


def test_check_spf_by_address_and_org_dmarc(srv, tmp_path):
    """ip4: naming the MX host's address authorizes it; a DMARC record at the
    organizational domain (RFC 7489 6.6.3) serves a subdomain."""
    s = Postern(tmp_path, hostname=HOST, imap_listen="", pop3_listen="",
                submission_listen="", submissions_listen="", pop3s_listen="", imaps_listen="")
    s.cli("domain", "add", "sub.example.test")
    recs = [("A", HOST, HOST_IP), ("MX", "sub.example.test", HOST, 10),
            ("TXT", "sub.example.test", "v=spf1 ip4:127.0.0.0/24 -all"),
            ("TXT", "_dmarc.example.test", "v=DMARC1; p=reject")]
    with Dnsmasq(s.dir, recs) as dns:
        rc, out, err = run(s, "dns", "check", "sub.example.test", dns_resolver=dns.server,
                           dmarc_psl_file="/usr/share/publicsuffix/public_suffix_list.dat")
    lines = {tuple(l.split()[1:3]): l for l in out.splitlines()}
    assert lines[("SPF", "sub.example.test:")].startswith("ok "), out
    assert "127.0.0.77 pass (ip4:127.0.0.0/24)" in lines[("SPF", "sub.example.test:")]
    dm = lines[("DMARC", "_dmarc.sub.example.test:")]
    assert dm.startswith("ok ") and "organizational domain example.test" in dm, out
    # no DKIM key yet: said so; nothing else is wrong
    assert lines[("DKIM", "sub.example.test:")].startswith("missing ")
    assert rc == 1


def test_keygen_records_and_check(tmp_path):
    """After `postern dkim keygen`, records prints both keys' records (RSA
    and Ed25519, the public keys the store holds), and check finds them."""
    s = Postern(tmp_path, hostname=HOST, imap_listen="", pop3_listen="")
    s.cli("domain", "add", "kg.test")
    s.cli("dkim", "keygen", "kg.test")
    db = sqlite3.connect(os.path.join(s.data_dir, "postern.db"))
    keys = db.execute("SELECT selector, alg, public_key FROM dkim_keys"
                      " WHERE domain = 'kg.test'").fetchall()
    db.close()
    assert sorted(k[1] for k in keys) == ["ed25519-sha256", "rsa-sha256"]
    rc, out, err = run(s, "dns", "records", "kg.test")
    assert rc == 0, err
    recs = {n: r for n, t, r in parse_zone(out) if t == "TXT"}
    for sel, alg, pub in keys:
        kind = "ed25519" if alg.startswith("ed25519") else "rsa"
        got = "".join(txt_strings(recs["%s._domainkey.kg.test." % sel]))
        assert got == "v=DKIM1; k=%s; p=%s" % (kind, pub)
    with Dnsmasq(s.dir, zone(out)) as dns:
        rc, out, err = run(s, "dns", "check", "kg.test", dns_resolver=dns.server)
    assert rc == 0, out
    assert sum(1 for l in out.splitlines() if l.split()[:2] == ["ok", "DKIM"]) == 2, out


def test_check_tempfail(srv):
    bh = Blackhole()
    try:
        rc, out, err = run(srv, "dns", "check", DOMAIN, dns_resolver=bh.server,
                           dns_timeout_ms="100", dns_tries="1")
    finally:
        bh.close()
    assert rc == 75, (out, err)
    assert out.splitlines()[0].split()[:3] == ["tempfail", "MX", "example.test:"], out
