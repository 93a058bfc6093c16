"""Dovecot's imaptest (tests/imaptest, see its README) against the daemon: its
scripted compliance groups, with the tester's own expected responses.

GROUPS are the scripted groups the commands built so far cover (the
not-authenticated and authenticated states: LIST, LSUB, SUBSCRIBE,
LIST-EXTENDED, modified UTF-7, ID, LOGOUT, atoms, pipelining); the groups
of the selected state join once SELECT/FETCH/SEARCH/STORE/APPEND do. The
run must end with 0 failed groups, none skipped, and 0 failed commands."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, USERS, _new_server

IMAPTEST_DIR = os.path.join(ROOT, "tests", "imaptest")
IMAPTEST = os.path.join(IMAPTEST_DIR, "imaptest")
GROUPS = ["atoms", "id", "list", "listext", "logout", "mutf7", "pipeline", "subscribe"]
USER = "carol@example.test"  # a throwaway account: imaptest deletes imaptest* mailboxes


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    # imaptest logs in without TLS: the loopback exception
    s = _new_server(tmp_path_factory, tls_pair, "imaptest", imap_auth_plaintext_loopback="yes",
                    imap_max_errors=1000)
    yield s
    s.stop()


def run_imaptest(srv, tests_dir, timeout=300):
    p = subprocess.run([IMAPTEST, "host=" + srv.host, "port=%d" % srv.ports["imap"],
                        "user=" + USER, "pass=" + USERS[USER], "test=" + tests_dir],
                       cwd=IMAPTEST_DIR, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def test_imaptest_scripted_groups(srv, tmp_path):
    assert os.access(IMAPTEST, os.X_OK), "no %s" % IMAPTEST
    ldd = subprocess.run(["ldd", IMAPTEST], capture_output=True, timeout=30).stdout.decode()
    assert "not found" not in ldd, "imaptest cannot run (apt-get install dovecot-core):\n" + ldd
    tests = tmp_path / "tests"
    tests.mkdir()
    for g in GROUPS:
        shutil.copy(os.path.join(IMAPTEST_DIR, "tests", g), str(tests / g))
    rc, out = run_imaptest(srv, str(tests))
    summary = [l for l in out.splitlines()
               if re.match(r"^\d+ test groups:|^base protocol:|^extensions:", l)]
    print("imaptest (%s):\n%s" % (" ".join(GROUPS), "\n".join(summary)))
    assert len(summary) == 3, out[-5000:]
    m = re.match(r"^(\d+) test groups: (\d+) failed, (\d+) skipped", summary[0])
    assert m and int(m.group(1)) == len(GROUPS), out[-5000:]
    assert (m.group(2), m.group(3)) == ("0", "0"), out[-5000:]
    for line in summary[1:]:
        assert re.match(r"^\w[\w ]*: 0/\d+ individual commands failed$", line), out[-5000:]
    assert "Error:" not in out, out[-5000:]
