"""The openspf RFC 7208 test suite (../shared/conformance/spf/rfc7208-tests.yml)
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

SUITE = os.path.join(ROOT, "..", "shared", "conformance", "spf", "rfc7208-tests.yml")
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
