"""The openspf RFC 7208 test suite (tests/data/spf/rfc7208-tests.yml, a copy of ../shared/conformance/spf/)
against postern's SPF evaluator: every case of every document, none skipped.

Each YAML document's zonedata is served by its own zonedns.ZoneDNS (as the
suite's reference driver, pyspf's test/testspf.py, reads it: SPF records are
also TXT records unless the name has a TXT entry, NONE entries are left out,
TIMEOUT times out, names beginning "error." time out), and the document's
cases go through one `postern spf check --batch` against it: all documents
at once, each case printed as result=, mechanism=, explanation=, problem=.
A case passes when the result is one of those it allows and, where it gives
an explanation, the explanation is exactly that (the default explanation is
set to "DEFAULT", as the driver does)."""

import os
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import POSTERN, ROOT, sanitizer_reports  # noqa: E402
from zonedns import ZoneDNS  # noqa: E402

SUITE = os.path.join(ROOT, "tests", "data", "spf", "rfc7208-tests.yml")
# A TIMEOUT entry is waited for once per lookup: short, but far above what a
# local answer takes, even under the sanitizers.
DNS_TIMEOUT_MS = 500
RUN_TIMEOUT = 60


def _zone(zonedata):
    """The suite's zonedata as a ZoneDNS zone (pyspf testspf.getrdata)."""
    zone = {}
    for name, entries in zonedata.items():
        recs, generated, has_txt = [], [], False
        for e in entries:
            if not isinstance(e, dict):
                recs.append(str(e))  # "TIMEOUT"
                continue
            for t, v in e.items():
                if t == "TXT":
                    has_txt = True
                elif t == "SPF":
                    generated.append(("TXT", v))
                if v == "NONE":
                    continue
                if t == "MX":
                    recs.append(("MX", v[0], v[1]))
                else:
                    recs.append((t, v))
        zone[name] = recs + ([] if has_txt else generated)
    return zone


def _load():
    with open(SUITE, "rb") as f:
        docs = list(yaml.safe_load_all(f))
    cases = []
    for i, doc in enumerate(docs):
        for name, t in doc["tests"].items():
            cases.append((i, name, t))
    return docs, cases


DOCS, CASES = _load()


def _parse_blocks(text):
    blocks, cur = [], {}
    for line in text.split("\n"):
        if line == "":
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        k, _, v = line.partition("=")
        cur[k] = v
    if cur:
        blocks.append(cur)
    return blocks


@pytest.fixture(scope="module")
def outcomes():
    """{(doc index, case name): {"result": ..., ...}}: every document's batch
    run at once, each against its own DNS server."""
    servers, procs = [], []
    try:
        for i, doc in enumerate(DOCS):
            z = ZoneDNS(_zone(doc.get("zonedata") or {}), error_timeout=True).start()
            servers.append(z)
            names = list(doc["tests"].keys())
            lines = "".join("%s\t%s\t%s\n" % (doc["tests"][n]["host"], doc["tests"][n]["helo"],
                                              doc["tests"][n]["mailfrom"]) for n in names)
            p = subprocess.Popen(
                [POSTERN, "-o", "dns_resolver=" + z.server,
                 "-o", "dns_timeout_ms=%d" % DNS_TIMEOUT_MS, "-o", "dns_tries=1",
                 "-o", "log_level=debug",
                 "spf", "check", "--batch", "--explanation", "DEFAULT"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append((i, names, p, lines.encode("latin-1")))
        out = {}
        for i, names, p, data in procs:
            stdout, stderr = p.communicate(data, timeout=RUN_TIMEOUT)
            err = stderr.decode("utf-8", "replace")
            reports = sanitizer_reports(err)
            assert not reports, "sanitizer report:\n" + "\n\n".join(reports)
            assert p.returncode == 0, "exit %d: %s" % (p.returncode, err[-2000:])
            blocks = _parse_blocks(stdout.decode("latin-1"))
            assert len(blocks) == len(names), (len(blocks), len(names), stdout[-500:])
            for n, b in zip(names, blocks):
                b["_log"] = err
                out[(i, n)] = b
        yield out
    finally:
        for _, _, p, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for z in servers:
            z.stop()


@pytest.mark.parametrize("doc,name,case", CASES,
                         ids=["%d-%s" % (d, n) for d, n, _ in CASES])
def test_case(outcomes, doc, name, case):
    got = outcomes[(doc, name)]
    want = case["result"]
    want = want if isinstance(want, list) else [want]
    assert got.get("result") in want, (
        "%s (spec %s): got %s, want %s\nhost=%s helo=%s mailfrom=%s\n%s" % (
            name, case.get("spec"), got, want, case["host"], case["helo"], case["mailfrom"],
            DOCS[doc].get("description", "")))
    if "explanation" in case:
        assert got.get("explanation") == case["explanation"], (name, got)


def test_every_case_runs():
    """Every case of the suite is one test above: nothing skipped."""
    with open(SUITE) as f:
        text = f.read()
    assert len(CASES) == text.count("\n    result:"), len(CASES)
    assert len(CASES) > 150


# ---- the CLI beyond the suite ----

CLI_ZONE = {
    "example.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "mx.example.test": [("TXT", "v=spf1 a -all"), ("A", "198.51.100.7")],
    "long.test": [("TXT", "v=spf1 a:%{l}.long.test -all")],
}


def _check(dns, *args):
    p = subprocess.run([POSTERN, "-o", "dns_resolver=" + dns.server, "-o", "dns_tries=1",
                        "-o", "dns_timeout_ms=%d" % DNS_TIMEOUT_MS, "spf", "check"] + list(args),
                       capture_output=True, timeout=RUN_TIMEOUT)
    assert not sanitizer_reports(p.stderr.decode("utf-8", "replace")), p.stderr
    return p.returncode, p.stdout.decode("utf-8", "replace")


def test_cli_identities():
    with ZoneDNS(CLI_ZONE) as dns:
        # MAIL FROM
        assert _check(dns, "192.0.2.9", "mx.example.test", "ann@example.test") == (
            0, "result=pass\nmechanism=ip4:192.0.2.0/24\n")
        rc, out = _check(dns, "203.0.113.1", "mx.example.test", "ann@example.test")
        assert rc == 0 and out.startswith("result=fail\nmechanism=-all\nexplanation="), out
        # <>: postmaster@HELO (RFC 7208 2.4); --helo: the HELO identity (2.3)
        assert _check(dns, "198.51.100.7", "mx.example.test", "") == (
            0, "result=pass\nmechanism=a\n")
        assert _check(dns, "198.51.100.7", "--helo", "mx.example.test", "x@example.test")[0] == 2
        assert _check(dns, "--helo", "198.51.100.7", "mx.example.test", "x@example.test") == (
            0, "result=pass\nmechanism=a\n")
        assert _check(dns, "--explanation", "no %{i} for %{d}", "203.0.113.1", "h.test",
                      "a@example.test") == (
            0, "result=fail\nmechanism=-all\nexplanation=no 203.0.113.1 for example.test\n")
        # no such domain: none; not an address: a usage error
        assert _check(dns, "192.0.2.9", "h.test", "a@nowhere.test") == (0, "result=none\n")
        rc, out = _check(dns, "not-an-ip", "h.test", "a@example.test")
        assert rc == 2 and out.startswith("error="), out


def test_long_label_never_queried():
    """RFC 7208 4.3/4.8: a name with a label over 63 octets is never asked
    for; the mechanism does not match."""
    with ZoneDNS(CLI_ZONE) as dns:
        rc, out = _check(dns, "192.0.2.9", "h.test", "%s@long.test" % ("x" * 64))
        assert (rc, out.split("\n")[0]) == (0, "result=fail"), out
        assert [q for q in dns.queries if q[0].startswith("xxx")] == []
        rc, out = _check(dns, "192.0.2.9", "h.test", "%s@long.test" % ("x" * 63))
        assert (rc, out.split("\n")[0]) == (0, "result=fail"), out
        assert [q for q in dns.queries if q[0].startswith("xxx")] == [("x" * 63 + ".long.test", "A")]


def test_explanation_stays_ascii():
    """An explanation goes into an SMTP reply: 8-bit bytes a macro brings in
    (a UTF-8 local-part) become '?'."""
    zone = {"example.test": [("TXT", "v=spf1 -all exp=e.example.test")],
            "e.example.test": [("TXT", "no %{l} from %{i}")]}
    with ZoneDNS(zone) as dns:
        assert _check(dns, "192.0.2.1", "h.test", "j\u00f6rg@example.test") == (
            0, "result=fail\nmechanism=-all\nexplanation=no j??rg from 192.0.2.1\n")
