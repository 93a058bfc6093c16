"""IMAP SORT and UID SORT (RFC 5256 3), SORT=DISPLAY (RFC 5957), ESORT and
CONTEXT=SEARCH/CONTEXT=SORT (RFC 5267), PARTIAL (RFC 9394): imaptest's
groups for them, and exact responses on a small corpus (encoded subjects,
Re:/Fwd: prefixes, a missing Date, equal keys)."""
import os

import pytest

from conftest import imap_quote
from test_imaptest import IMAPTEST, IMAPTEST_DIR, run_imaptest

GROUPS = ["sort-addresses", "sort-arrival", "sort-date", "sort-display-from",
          "sort-display-to", "sort-size", "sort-subject", "sort-partial", "esort",
          "search-partial", "search-context-update", "search-context-update2",
          "search-context-update3"]


@pytest.fixture(scope="module")
def itsrv(tmp_path_factory, tls_pair):
    from conftest import _new_server
    s = _new_server(tmp_path_factory, tls_pair, "imaptest-sort", imap_auth_plaintext_loopback="yes",
                    imap_max_errors=1000)
    yield s
    s.stop()


@pytest.mark.parametrize("group", GROUPS)
def test_imaptest_group(itsrv, group):
    assert os.access(IMAPTEST, os.X_OK), "no %s" % IMAPTEST
    rc, out = run_imaptest(itsrv, os.path.join(IMAPTEST_DIR, "tests", group), timeout=120)
    lines = [l for l in out.splitlines() if "individual commands failed" in l]
    assert lines, out[-3000:]
    failed = total = 0
    for l in lines:
        n_failed, n_total = l.split(":")[1].split()[0].split("/")
        failed += int(n_failed)
        total += int(n_total)
    assert failed == 0 and total > 0, out[-3000:]
    assert "Error:" not in out, out[-3000:]
