"""DMARC evaluation (RFC 7489) end to end: `postern dmarc check` looks the
policy up through a real dnsmasq serving _dmarc TXT records, and evaluates it:
p=none/quarantine/reject, pct=0/100 (RFC 7489 6.6.4: the policy one step
down when a message is sampled out), sp= for subdomains and the fallback to
the organizational domain (6.6.3 step 3), no record, several records (6.6.3
step 5: no DMARC processing), non-DMARC TXT records ignored (step 2), an
invalid record (permerror) and the p=none reading of 6.6.3 step 6, a DNS
timeout (temperror, exit 75), strict and relaxed alignment (3.1), and the
organizational domain from the public suffix list (3.2)."""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import POSTERN, CLI_TIMEOUT, sanitizer_reports  # noqa: E402
from dnsmasq import Dnsmasq  # noqa: E402


def dmarc(name, text):
    return ("TXT", "_dmarc." + name, text)


RECORDS = [
    dmarc("none.test", "v=DMARC1; p=none; rua=mailto:dmarc@none.test"),
    dmarc("quar.test", "v=DMARC1; p=quarantine"),
    dmarc("reject.test", "v=DMARC1; p=reject; rua=mailto:a@reject.test,mailto:b@reject.test!10m"),
    dmarc("pct0.test", "v=DMARC1; p=reject; pct=0"),
    dmarc("pct0q.test", "v=DMARC1; p=quarantine; pct=0"),
    dmarc("pct100.test", "v=DMARC1; p=reject; pct=100"),
    # sp= for subdomains; a subdomain with a record of its own
    dmarc("org.test", "v=DMARC1; p=reject; sp=quarantine"),
    dmarc("own.org.test", "v=DMARC1; p=none"),
    dmarc("nosp.test", "v=DMARC1; p=reject"),
    # step 2: TXT records other than v=DMARC1 are discarded
    dmarc("other.test", "v=spf1 -all"),
    ("TXT", "_dmarc.other.test", "some verification token"),
    dmarc("mixed.test", "hello"),
    dmarc("mixed.test", "v=DMARC1; p=quarantine"),
    dmarc("sub.orgx.test", "v=spf1 -all"),
    dmarc("orgx.test", "v=DMARC1; p=reject; sp=none"),
    # step 5: several records
    dmarc("multi.test", "v=DMARC1; p=reject"),
    dmarc("multi.test", "v=DMARC1; p=none"),
    # invalid records
    dmarc("invalid.test", "v=DMARC1; p=bogus"),
    dmarc("badpct.test", "v=DMARC1; p=reject; pct=200"),
    dmarc("fallback.test", "v=DMARC1; p=bogus; rua=mailto:r@fallback.test"),
    # alignment modes
    dmarc("strict.test", "v=DMARC1; p=reject; adkim=s; aspf=s"),
    dmarc("relaxed.test", "v=DMARC1; p=reject"),
    # a record in several strings (concatenated, RFC 7208 3.3 / RFC 7489 6.1)
    'txt-record=_dmarc.split.test,"v=DMARC1; p=rej","ect; pct=1","00"',
    # an internationalized domain, published as A-labels
    dmarc("xn--bcher-kva.test", "v=DMARC1; p=quarantine; adkim=s"),
    # something under the organizational domain's name, nothing at the From domain
    ("A", "sub.slowo.test", "127.0.0.1"),
]


@pytest.fixture(scope="module")
def dns(tmp_path_factory, blackhole):
    # _dmarc.slowo.test is forwarded to a server that never answers: the
    # organizational-domain lookup times out
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"), RECORDS,
                extra=["server=/_dmarc.slowo.test/%s#%d" % (blackhole.host, blackhole.port)])
    d.start()
    yield d
    d.stop()


def run(resolver, *args, timeout_ms=300, tries=1, extra=()):
    """`postern dmarc check ARGS`: (exit status, stdout lines)."""
    cmd = [POSTERN, "-c", "/dev/null", "-o", "dns_resolver=" + resolver,
           "-o", "dns_timeout_ms=%d" % timeout_ms, "-o", "dns_tries=%d" % tries]
    for e in extra:
        cmd += ["-o", e]
    cmd += ["dmarc", "check"] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    reports = sanitizer_reports(p.stderr.decode("utf-8", "replace"))
    assert not reports, "\n".join(reports)
    return p.returncode, p.stdout.decode().splitlines()


def run_plain(*args):
    """`postern -c /dev/null ARGS` without a resolver: the CompletedProcess."""
    p = subprocess.run([POSTERN, "-c", "/dev/null"] + list(args), capture_output=True,
                       timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    reports = sanitizer_reports(p.stderr.decode("utf-8", "replace"))
    assert not reports, "\n".join(reports)
    return p


def result_line(result, policy, disposition, domain, spf, dkim, sampled="no"):
    return ("dmarc=%s policy=%s disposition=%s policy_domain=%s spf_aligned=%s dkim_aligned=%s "
            "sampled_out=%s" % (result, policy, disposition, domain, spf, dkim, sampled))


def record_line(p="none", sp=None, adkim="r", aspf="r", pct=100, rua=None):
    s = "record: v=DMARC1; p=%s; sp=%s; adkim=%s; aspf=%s; pct=%d; fo=0; rf=afrf; ri=86400" % (
        p, sp or p, adkim, aspf, pct)
    return s + ("; rua=" + rua if rua else "")


# ---- p=none / quarantine / reject ----

@pytest.mark.parametrize("domain,p,rua", [
    ("none.test", "none", "mailto:dmarc@none.test"),
    ("quar.test", "quarantine", None),
    ("reject.test", "reject", "mailto:a@reject.test,mailto:b@reject.test!10m"),
])
def test_policies(dns, domain, p, rua):
    # nothing aligned (SPF passed for another domain, DKIM failed): fail, the policy applies
    rc, out = run(dns.server, domain, "pass", "elsewhere.example", domain + "=fail")
    assert rc == 0, out
    assert out == [result_line("fail", p, p, domain, "no", "no"), record_line(p, rua=rua)]
    # aligned SPF: pass, nothing to do
    rc, out = run(dns.server, domain, "pass", "bounce." + domain)
    assert (rc, out[0]) == (0, result_line("pass", p, "none", domain, "yes", "no"))
    # aligned DKIM: pass
    rc, out = run(dns.server, domain, "fail", domain, domain + "=pass")
    assert (rc, out[0]) == (0, result_line("pass", p, "none", domain, "no", "yes"))


# ---- pct (RFC 7489 6.6.4) ----

def test_pct(dns):
    # pct=0: never selected; reject becomes quarantine, quarantine none
    rc, out = run(dns.server, "pct0.test", "fail", "pct0.test")
    assert (rc, out) == (0, [result_line("fail", "reject", "quarantine", "pct0.test", "no", "no",
                                         "yes"), record_line("reject", pct=0)])
    rc, out = run(dns.server, "pct0q.test", "fail", "pct0q.test")
    assert (rc, out[0]) == (0, result_line("fail", "quarantine", "none", "pct0q.test", "no", "no",
                                           "yes"))
    # pct=100: always applied
    for _ in range(3):
        rc, out = run(dns.server, "pct100.test", "softfail", "pct100.test")
        assert (rc, out[0]) == (0, result_line("fail", "reject", "reject", "pct100.test", "no",
                                               "no"))
    # a pass is never sampled
    rc, out = run(dns.server, "pct0.test", "pass", "pct0.test")
    assert (rc, out[0]) == (0, result_line("pass", "reject", "none", "pct0.test", "yes", "no"))


# ---- sp and the organizational domain (RFC 7489 6.6.3 step 3) ----

def test_subdomain_uses_sp(dns):
    rc, out = run(dns.server, "sub.org.test", "fail", "sub.org.test")
    assert (rc, out) == (0, [result_line("fail", "quarantine", "quarantine", "org.test", "no", "no"),
                             record_line("reject", "quarantine")])
    # deeper: still the organizational domain's record, still sp
    rc, out = run(dns.server, "a.b.org.test", "fail", "a.b.org.test")
    assert (rc, out[0]) == (0, result_line("fail", "quarantine", "quarantine", "org.test", "no",
                                           "no"))
    # the organizational domain itself: p
    rc, out = run(dns.server, "org.test", "fail", "org.test")
    assert (rc, out[0]) == (0, result_line("fail", "reject", "reject", "org.test", "no", "no"))
    # relaxed alignment across the organization: SPF of bounce.org.test aligns with sub.org.test
    rc, out = run(dns.server, "sub.org.test", "pass", "bounce.org.test")
    assert (rc, out[0]) == (0, result_line("pass", "quarantine", "none", "org.test", "yes", "no"))


def test_subdomain_with_its_own_record(dns):
    # a record at the From domain wins, and its p applies (not the org's sp)
    rc, out = run(dns.server, "own.org.test", "fail", "own.org.test")
    assert (rc, out) == (0, [result_line("fail", "none", "none", "own.org.test", "no", "no"),
                             record_line("none")])


def test_subdomain_without_sp_gets_p(dns):
    rc, out = run(dns.server, "mail.nosp.test", "fail", "mail.nosp.test")
    assert (rc, out[0]) == (0, result_line("fail", "reject", "reject", "nosp.test", "no", "no"))


def test_non_dmarc_records_ignored(dns):
    # only non-DMARC TXT records at _dmarc.other.test, none at other.test's org (itself)
    rc, out = run(dns.server, "other.test", "fail", "other.test")
    assert (rc, out) == (0, [result_line("none", "none", "none", "-", "no", "no")])
    # one DMARC record among others: used
    rc, out = run(dns.server, "mixed.test", "fail", "mixed.test")
    assert (rc, out[0]) == (0, result_line("fail", "quarantine", "quarantine", "mixed.test", "no",
                                           "no"))
    # only a non-DMARC record at the From domain: on to the organizational domain
    rc, out = run(dns.server, "sub.orgx.test", "fail", "sub.orgx.test")
    assert (rc, out[0]) == (0, result_line("fail", "none", "none", "orgx.test", "no", "no"))


# ---- no record, several records, invalid records ----

def test_no_record(dns):
    for domain in ("norecord.test", "sub.norecord.test"):
        rc, out = run(dns.server, domain, "fail", domain, domain + "=fail")
        assert (rc, out) == (0, [result_line("none", "none", "none", "-", "no", "no")])
    # no record, alignment still computed (relaxed), result none
    rc, out = run(dns.server, "norecord.test", "pass", "norecord.test", "norecord.test=pass")
    assert (rc, out) == (0, [result_line("none", "none", "none", "-", "yes", "yes")])


def test_multiple_records(dns):
    # RFC 7489 6.6.3 step 5: no DMARC processing, not even the org's
    for domain in ("multi.test", "sub.multi.test"):
        rc, out = run(dns.server, domain, "fail", domain)
        assert (rc, out) == (0, [result_line("none", "none", "none", "-", "no", "no"),
                                 "problem: several DMARC records"])


def test_invalid_records(dns):
    rc, out = run(dns.server, "invalid.test", "fail", "invalid.test")
    assert (rc, out) == (0, [result_line("permerror", "none", "none", "invalid.test", "no", "no"),
                             "problem: invalid DMARC record: p= is not none, quarantine or reject"])
    rc, out = run(dns.server, "badpct.test", "fail", "badpct.test")
    assert (rc, out) == (0, [result_line("permerror", "none", "none", "badpct.test", "no", "no"),
                             "problem: invalid DMARC record: pct= is not 0..100"])
    # RFC 7489 6.6.3 step 6.1: no valid p= but a valid rua: as if p=none
    rc, out = run(dns.server, "fallback.test", "fail", "fallback.test")
    assert (rc, out) == (0, [result_line("fail", "none", "none", "fallback.test", "no", "no"),
                             record_line("none", rua="mailto:r@fallback.test"),
                             "problem: no valid p= (read as p=none, RFC 7489 6.6.3)"])


def test_split_record(dns):
    rc, out = run(dns.server, "split.test", "fail", "split.test")
    assert (rc, out) == (0, [result_line("fail", "reject", "reject", "split.test", "no", "no"),
                             record_line("reject")])


def test_internationalized_from_domain(dns):
    # RFC 8616 6: the From domain's U-labels are looked up, and aligned, as A-labels
    rc, out = run(dns.server, "b\u00fccher.test", "fail", "b\u00fccher.test",
                  "xn--bcher-kva.test=pass")
    assert (rc, out[0]) == (0, result_line("pass", "quarantine", "none", "xn--bcher-kva.test",
                                           "no", "yes"))
    rc, out = run(dns.server, "Mail.B\u00fccher.test", "fail", "-")
    assert (rc, out[0]) == (0, result_line("fail", "quarantine", "quarantine",
                                           "xn--bcher-kva.test", "no", "no"))


# ---- DNS failures: temperror ----

def test_timeout_is_temperror(blackhole):
    rc, out = run(blackhole.server, "reject.test", "pass", "reject.test", "reject.test=pass",
                  timeout_ms=200, tries=2)
    assert (rc, out) == (75, [result_line("temperror", "none", "none", "reject.test", "yes", "yes"),
                              "problem: DNS lookup failed temporarily"])


def test_org_lookup_timeout_is_temperror(dns):
    # _dmarc.sub.slowo.test: NXDOMAIN; _dmarc.slowo.test: no answer
    rc, out = run(dns.server, "sub.slowo.test", "fail", "sub.slowo.test", timeout_ms=200)
    assert (rc, out) == (75, [result_line("temperror", "none", "none", "slowo.test", "no", "no"),
                              "problem: DNS lookup failed temporarily"])


# ---- strict vs relaxed alignment (RFC 7489 3.1) ----

@pytest.mark.parametrize("domain,spf_domain,dkim,spf_al,dkim_al,result", [
    ("strict.test", "strict.test", None, "yes", "no", "pass"),
    ("strict.test", "bounce.strict.test", None, "no", "no", "fail"),
    ("strict.test", "-", "mail.strict.test=pass", "no", "no", "fail"),
    ("strict.test", "-", "STRICT.test=pass", "no", "yes", "pass"),
    ("relaxed.test", "bounce.relaxed.test", None, "yes", "no", "pass"),
    ("relaxed.test", "-", "mail.relaxed.test=pass", "no", "yes", "pass"),
    ("relaxed.test", "relaxed.example", "relaxed.example=pass", "no", "no", "fail"),
])
def test_alignment_modes(dns, domain, spf_domain, dkim, spf_al, dkim_al, result):
    args = [domain, "pass", spf_domain] + ([dkim] if dkim else [])
    rc, out = run(dns.server, *args)
    disp = "reject" if result == "fail" else "none"
    assert (rc, out[0]) == (0, result_line(result, "reject", disp, domain, spf_al, dkim_al))


# ---- the organizational domain and the usage ----

@pytest.mark.parametrize("domain,org", [
    ("a.b.example.co.uk", "example.co.uk"),
    ("www.alice.github.io", "alice.github.io"),
    ("a.www.ck", "www.ck"),
    ("x.foo.bar.ck", "foo.bar.ck"),
    ("Mail.Example.COM.", "example.com"),
    ("localhost", "localhost"),
])
def test_org(domain, org):
    p = run_plain("dmarc", "check", "--org", domain)
    assert (p.returncode, p.stdout.decode()) == (0, org + "\n")


def test_org_without_list(tmp_path):
    # no list: the last two labels, with a warning
    p = run_plain("-o", "dmarc_psl_file=%s" % (tmp_path / "missing.dat"), "dmarc", "check",
                  "--org", "a.b.example.co.uk")
    assert (p.returncode, p.stdout.decode()) == (0, "co.uk\n")
    assert b"missing.dat" in p.stderr


def test_usage_and_bad_names(dns):
    assert run(dns.server, "example.test")[0] == 2
    assert run(dns.server, "example.test", "maybe", "example.test")[0] == 2
    assert run(dns.server, "example.test", "pass", "example.test", "nodkimresult")[0] == 2
    assert run(dns.server, "example.test", "pass", "example.test", "d.test=great")[0] == 2
    # a From domain that is not a domain name: none
    rc, out = run(dns.server, "bad..test", "pass", "bad..test")
    assert (rc, out) == (0, [result_line("none", "none", "none", "-", "no", "no"),
                             "problem: the From domain is not a domain name"])
    p = run_plain("dmarc", "check", "--org", "bad..test")
    assert p.returncode == 1
