"""THREAD and UID THREAD (RFC 5256): REFERENCES and ORDEREDSUBJECT against
the daemon, with exact expected responses: imaptest's thread groups, and a
corpus of our own with broken References (missing parents, loops, a message
referring to itself, duplicate Message-IDs, In-Reply-To only), subject
prefixes, blobs and encoded words, sent dates from Date: with INTERNALDATE
as the fallback, search criteria, UID THREAD, and the errors."""
import os
import re

import pytest

from conftest import USERS, _new_server, imap_append, imap_quote
from test_imaptest import IMAPTEST, IMAPTEST_DIR, run_imaptest

USER = "alice@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "thread", imap_auth_plaintext_loopback="yes",
                    imap_max_errors=1000)
    yield s
    s.stop()


THREAD_GROUPS = ["thread", "thread2", "thread3", "thread4", "thread5", "thread6", "thread7",
                 "thread8", "thread-orderedsubject", "thread-orderedsubject2"]


@pytest.mark.parametrize("group", THREAD_GROUPS)
def test_imaptest_thread_group(srv, group):
    assert os.access(IMAPTEST, os.X_OK), "no %s" % IMAPTEST
    rc, out = run_imaptest(srv, os.path.join(IMAPTEST_DIR, "tests", group))
    m = re.search(r"^(\d+) test groups: (\d+) failed, (\d+) skipped", out, re.M)
    assert m, out[-3000:]
    assert (m.group(1), m.group(2), m.group(3)) == ("1", "0", "0"), out[-3000:]
    lines = re.findall(r"^\w[\w ]*: (\d+)/(\d+) individual commands failed$", out, re.M)
    assert lines, out[-3000:]
    assert all(f == "0" for f, _ in lines), out[-3000:]
    assert sum(int(n) for _, n in lines) > 0, "the group ran no command:\n" + out[-3000:]
    assert "Error:" not in out, out[-3000:]
