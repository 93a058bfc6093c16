"""Dovecot's imaptest (tests/imaptest, see its README) against the daemon:
every scripted compliance group of tests/imaptest/tests (the whole
directory, with the tester's own expected responses). The run must end
with all 71 groups passed, none skipped for a missing capability, 0 failed
commands and no "Error:" line."""
import os
import re
import subprocess

import pytest

from conftest import ROOT, USERS, _new_server

IMAPTEST_DIR = os.path.join(ROOT, "tests", "imaptest")
IMAPTEST = os.path.join(IMAPTEST_DIR, "imaptest")
# every group of tests/imaptest/tests (72 scripts; imaptest counts 71 groups)
N_GROUPS = 71
USER = "carol@example.test"  # a throwaway account: imaptest deletes imaptest* mailboxes
# the second user of the groups that need one (urlauth2: "user 2: $user2");
# imaptest logs it in with the same password
USER2 = "carol2@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    # imaptest logs in without TLS: the loopback exception
    s = _new_server(tmp_path_factory, tls_pair, "imaptest", imap_auth_plaintext_loopback="yes",
                    imap_max_errors=1000)
    s.cli("user", "add", USER2, input=USERS[USER] + "\n")
    yield s
    s.stop()


def run_imaptest(srv, tests_dir, timeout=300, user2=False):
    """user2: the server has USER2 (this module's srv): given to imaptest,
    with its test mailbox (user 2's connections select the mailbox of their
    own account, which imaptest creates for user 1 only)."""
    args = []
    if user2:
        with srv.imap_login(USER2, USERS[USER]) as c:
            r = c.cmd("CREATE imaptest")
            assert r.ok or "ALREADYEXISTS" in str(r), r
        args = ["user2=" + USER2]
    p = subprocess.run([IMAPTEST, "host=" + srv.host, "port=%d" % srv.ports["imap"],
                        "user=" + USER] + args + ["pass=" + USERS[USER], "test=" + tests_dir],
                       cwd=IMAPTEST_DIR, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def test_imaptest_scripted_groups(srv):
    assert os.access(IMAPTEST, os.X_OK), "no %s" % IMAPTEST
    ldd = subprocess.run(["ldd", IMAPTEST], capture_output=True, timeout=30).stdout.decode()
    assert "not found" not in ldd, "imaptest cannot run (apt-get install dovecot-core):\n" + ldd
    rc, out = run_imaptest(srv, os.path.join(IMAPTEST_DIR, "tests"), user2=True)
    summary = [l for l in out.splitlines()
               if re.match(r"^\d+ test groups:|^base protocol:|^extensions:", l)]
    print("imaptest (all groups):\n%s" % "\n".join(summary))
    assert len(summary) == 3, out[-5000:]
    m = re.match(r"^(\d+) test groups: (\d+) failed, (\d+) skipped", summary[0])
    assert m and int(m.group(1)) == N_GROUPS, out[-5000:]
    assert (m.group(2), m.group(3)) == ("0", "0"), out[-5000:]
    for line in summary[1:]:
        assert re.match(r"^\w[\w ]*: 0/\d+ individual commands failed$", line), out[-5000:]
    assert "Error:" not in out, out[-5000:]


# Every group must run commands of its own: a group skipped for a missing
# capability (or for a missing user2) counts as "passed" in the summary
# above, which alone would hide it.


def group_counts(out):
    m = re.search(r"^base protocol: (\d+)/(\d+) individual commands failed$", out, re.M)
    e = re.search(r"^extensions: (\d+)/(\d+) individual commands failed$", out, re.M)
    assert m and e, out[-3000:]
    return int(m.group(1)) + int(e.group(1)), int(m.group(2)) + int(e.group(2))


def test_imaptest_every_group_runs_commands(srv):
    tests = os.path.join(IMAPTEST_DIR, "tests")
    # the scripts of the directory itself (its "broken" subdirectory holds
    # tests upstream marks as broken; the whole-directory run skips it too)
    groups = sorted(f for f in os.listdir(tests)
                    if not f.endswith(".mbox") and os.path.isfile(os.path.join(tests, f)))
    assert len(groups) == N_GROUPS, groups
    empty, failed = [], []
    for g in groups:
        rc, out = run_imaptest(srv, os.path.join(tests, g), timeout=120, user2=True)
        n_failed, n_run = group_counts(out)
        if n_failed or "Error:" in out:
            failed.append((g, out[-2000:]))
        if n_run == 0:
            empty.append(g)
    assert failed == [], failed
    assert empty == [], empty
