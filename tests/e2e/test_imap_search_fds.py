"""SEARCH under descriptor pressure (review of the parallel confirm,
src/imap/searchcmd.c): a message file that cannot be opened for a reason
other than an expunge (EMFILE) is never answered as if the message did not
match. The files opened ahead of the one being matched (posix_fadvise) are
a hint: when there is no descriptor for them, the search still reads every
candidate, one at a time, and gives the whole answer."""
import os
import resource
import time

from test_imap_fts import multiappend, search, wait_indexed

ALICE = "alice@example.test"
N = 120


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def limit_leaving(pid, free):
    """The descriptor limit under which pid has free descriptors left (the
    limit bounds their numbers, and an open one may be numbered above it)."""
    fds_settled(pid)
    used = {int(f) for f in os.listdir("/proc/%d/fd" % pid)}
    n = 0
    while free > 0 or n in used:
        if n not in used:
            free -= 1
        n += 1
    return n


def fds_settled(pid, timeout=10):
    """The daemon's open descriptors once their number stays the same for
    half a second (the stocker refills its spool files after an APPEND)."""
    deadline = time.monotonic() + timeout
    n, since = fds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        m = fds(pid)
        if m != n:
            n, since = m, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            return n
    raise AssertionError("descriptors never settled")


def test_search_with_few_descriptors_left(make_server):
    srv = make_server(workers=1)
    msgs = [("From: a%d@example.net\r\nSubject: note %d\r\n\r\nthe quokka says %d\r\n"
             % (i, i, i)).encode() for i in range(N)]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE box").ok
        multiappend(c, "box", msgs)
        wait_indexed(srv)
        assert c.cmd("EXAMINE box").ok
        want = list(range(1, N + 1))
        assert search(c, ["BODY", ("lit", "quokka")]) == want
        assert search(c, ["TEXT", ("lit", "quokka")]) == want
        assert search(c, ["SUBJECT", ("lit", "note")]) == want
        # a few descriptors left beyond those open now: enough for a
        # message file per thread (the worker and its helper), not for the
        # 32 held ahead: the whole answer; one: the whole answer or NO (the
        # helper may find none while the worker holds it); none: NO. Never
        # a part of the answer with OK.
        pid = srv.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        try:
            for free in (8, 2, 1, 0):
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit_leaving(pid, free), hard))
                # BODY is confirmed from the index's text of each body
                # (fts_text): no file, no descriptor, the whole answer even
                # with none left
                r = c.cmd('UID SEARCH BODY "quokka"')
                got = [l for l in r.untagged if l.startswith("* SEARCH")]
                assert r.ok and len(got) == 1, (free, r)
                assert [int(x) for x in got[0].split()[2:]] == want, (free, r)
                # TEXT and SUBJECT read the message files
                for key, needle in (("TEXT", "quokka"), ("SUBJECT", "note")):
                    tag = c.next_tag()
                    c.send(('%s UID SEARCH %s "%s"\r\n' % (tag, key, needle)).encode())
                    r = c.read_response(tag)
                    got = [l for l in r.untagged if l.startswith("* SEARCH")]
                    if free == 1 and r.status == "NO":
                        assert got == [], (free, key, r)
                    elif free > 0:
                        assert r.ok and len(got) == 1, (free, key, r)
                        assert [int(x) for x in got[0].split()[2:]] == want, (free, key, r)
                    else:
                        assert r.status == "NO" and got == [], (free, key, r)
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert search(c, ["BODY", ("lit", "quokka")]) == want


def test_scan_with_no_descriptor_left(make_server):
    """The scan (fts = no: every message read in turn) under the same
    pressure: one descriptor left is enough; none is NO, not an answer
    without the messages it could not read (before: OK and no match)."""
    srv = make_server(workers=1, fts="no")
    msgs = [("Subject: note %d\r\n\r\nthe quokka says %d\r\n" % (i, i)).encode()
            for i in range(N)]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE box").ok
        multiappend(c, "box", msgs)
        assert c.cmd("EXAMINE box").ok
        want = list(range(1, N + 1))
        assert search(c, ["BODY", ("lit", "quokka")]) == want
        pid = srv.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        try:
            for free in (1, 0):
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit_leaving(pid, free), hard))
                r = c.cmd("UID SEARCH BODY quokka")
                got = [l for l in r.untagged if l.startswith("* SEARCH")]
                if free > 0:
                    assert r.ok and len(got) == 1, r
                    assert [int(x) for x in got[0].split()[2:]] == want, r
                else:
                    assert r.status == "NO" and got == [], r
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert search(c, ["BODY", ("lit", "quokka")]) == want
    assert "Too many open files" in srv.log()
