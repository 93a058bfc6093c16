"""Review of the full-text index merged into search_start (issue 9): SORT,
THREAD and ESEARCH (PARTIAL) with text keys answer exactly what the scan
(fts = no) answers on the same data directory, after EXPUNGE and COPY, and
for messages delivered after the index caught up (not indexed yet: a
candidate of every query)."""
import re

from test_imap_fts import ALICE, corpus, multiappend, scan_answers, wait_indexed

L = lambda s: ("lit", s)  # noqa: E731

KEYS = [
    ["BODY", L("invoice")],
    ["TEXT", L("quarterly report")],
    ["SUBJECT", L("budget")],
    ["FROM", L("müller")],
    ["OR", "BODY", L("tok00042"), "SUBJECT", L("lunch")],
    ["BODY", L("invoice"), "NOT", "SUBJECT", L("lunch")],
    ["TEXT", L("late-arrival")],
]
COMMANDS = ["UID SEARCH RETURN (ALL COUNT) CHARSET UTF-8",
            "UID SEARCH RETURN (PARTIAL 1:7 COUNT) CHARSET UTF-8",
            "SEARCH RETURN (PARTIAL -1:-5 MIN MAX) CHARSET UTF-8",
            "UID SORT (REVERSE SUBJECT DATE) UTF-8",
            "UID SORT RETURN (PARTIAL 2:9 COUNT) (FROM) UTF-8",
            "SORT (ARRIVAL) UTF-8",
            "UID THREAD REFERENCES UTF-8",
            "THREAD ORDEREDSUBJECT UTF-8"]


def run(c, cmd, program):
    tag = c.next_tag()
    out = ("%s %s" % (tag, cmd)).encode()
    for p in program:
        if isinstance(p, tuple):
            b = p[1].encode("utf-8")
            out += b" {%d+}\r\n" % len(b) + b
        else:
            out += b" " + p.encode()
    c.send(out + b"\r\n")
    r = c.read_response(tag)
    assert r.ok, (cmd, program, r)
    return [l.replace('"%s"' % tag, "T") for l in r.untagged
            if l.split()[1] in ("SEARCH", "ESEARCH", "SORT", "THREAD")]


def run_all(srv, box):
    with srv.imap_login(ALICE) as c:
        assert c.cmd("EXAMINE %s" % box).ok
        return [run(c, cmd, k) for cmd in COMMANDS for k in KEYS]


def test_sort_thread_index_equals_scan(make_server, tmp_path_factory, tls_pair):
    srv = make_server()
    msgs = corpus(400)
    late = [b"From: Late <late@example.net>\r\nSubject: Re: budget invoice\r\n"
            b"Message-ID: <late%d@x>\r\nReferences: <m%d@example.net>\r\n\r\n"
            b"late-arrival invoice %d\r\n" % (i, i, i) for i in range(40)]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE fts").ok and c.cmd("CREATE other").ok
        multiappend(c, "fts", msgs[:300])
        multiappend(c, "other", msgs[300:])
        wait_indexed(srv)
        assert c.cmd("SELECT fts").ok
        dele = ",".join(str(u) for u in range(1, 301, 7))
        assert c.cmd("UID STORE %s +FLAGS.SILENT (\\Deleted)" % dele).ok
        assert c.cmd("EXPUNGE").ok
        assert c.cmd("SELECT other").ok
        assert c.cmd("UID COPY 1:100 fts").ok
        # delivered after the index caught up: answered while pending
        multiappend(c, "fts", late)
        pending = run_all(srv, "fts")
    indexed_at = wait_indexed(srv)
    indexed = run_all(srv, "fts")
    without = scan_answers(srv, tmp_path_factory, tls_pair, lambda s: run_all(s, "fts"))
    labels = [(cmd, k) for cmd in COMMANDS for k in KEYS]
    diffs = [(l, a, b) for l, a, b in zip(labels, indexed, without) if a != b]
    assert not diffs, diffs[:3]
    diffs = [(l, a, b) for l, a, b in zip(labels, pending, without) if a != b]
    assert not diffs, diffs[:3]
    assert sum(1 for r in without if any(len(x) > 20 for x in r)) > len(labels) // 2
    print("index:", indexed_at)


def test_disconnect_mid_command(make_server):
    """SEARCH (narrowed by the index and not), SORT, THREAD and ESEARCH
    PARTIAL, the connection dropped at once or a little later while the
    command runs: the daemon goes on (no sanitizer report: conftest)."""
    import time
    srv = make_server()
    msgs = [b"From: a%d@example.net\r\nSubject: %s topic %d\r\nMessage-ID: <d%d@x>\r\n"
            b"References: %s\r\n\r\nbody wombat %d\r\n"
            % (i, b"Re:" * (i % 3), i % 50, i,
               b" ".join(b"<d%d@x>" % k for k in range(max(0, i - 300), i)), i)
            for i in range(1500)]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE big").ok
        for i in range(0, len(msgs), 250):
            multiappend(c, "big", msgs[i:i + 250])
    cmds = [b"UID SEARCH BODY wombat", b"SEARCH RETURN (PARTIAL -1:-10) TEXT topic",
            b"UID SORT (SUBJECT REVERSE DATE) UTF-8 BODY wombat",
            b"UID THREAD REFERENCES UTF-8 ALL", b"THREAD ORDEREDSUBJECT UTF-8 TEXT wombat",
            b"SEARCH RETURN (UPDATE) BODY wombat", b"UID FETCH 1:* (PREVIEW)"]
    for delay in (0, 0.02, 0.1):
        for cmd in cmds:
            c = srv.imap_login(ALICE)
            assert c.cmd("SELECT big").ok
            c.send(b"p1 " + cmd + b"\r\np2 " + cmd + b"\r\n")
            time.sleep(delay)
            c.close()
    wait_indexed(srv)
    with srv.imap_login(ALICE) as c:
        assert c.cmd("SELECT big").ok
        r = c.cmd("UID THREAD REFERENCES UTF-8 ALL")
        assert r.ok, r
        r = c.cmd("SEARCH RETURN (COUNT) BODY wombat")
        assert r.ok and "COUNT 1500" in r.untagged[-1], r


def test_context_update_with_index(make_server):
    """CONTEXT=SEARCH (RFC 5267 4) with the index on: a result kept up to
    date gains a new matching message (ADDTO) and loses an expunged one
    (REMOVEFROM), whether the new one is indexed yet or not."""
    srv = make_server()
    with srv.imap_login(ALICE) as c, srv.imap_login(ALICE) as d:
        assert c.cmd("CREATE ctx").ok
        multiappend(c, "ctx", [b"Subject: a\r\n\r\nnumbat one\r\n", b"Subject: b\r\n\r\nother\r\n"])
        wait_indexed(srv)
        assert c.cmd("SELECT ctx").ok
        r = c.cmd("UID SEARCH RETURN (UPDATE ALL) BODY numbat")
        assert r.ok and any("ALL 1" in l for l in r.untagged), r
        multiappend(d, "ctx", [b"Subject: c\r\n\r\nNUMBAT three\r\n", b"Subject: d\r\n\r\nno\r\n"])
        r = c.cmd("NOOP")
        assert r.ok
        assert any(re.search(r"UID ADDTO \(\d+ 3\)$", l) for l in r.untagged), r
        assert d.cmd("SELECT ctx").ok
        assert d.cmd("UID STORE 1 +FLAGS.SILENT (\\Deleted)").ok and d.cmd("EXPUNGE").ok
        r = c.cmd("NOOP")
        assert any(re.search(r"UID REMOVEFROM \(\d+ 1\)$", l) for l in r.untagged), r
        wait_indexed(srv)
        r = c.cmd("UID SEARCH BODY numbat")
        assert r.untagged[-1] == "* SEARCH 3", r


def test_thread_long_references(make_server):
    """RFC 5256 4 (1): a References field of many thousand IDs: the parent
    is its last ID, the chain before it (as far as kept) links the earlier
    ones; IDs far back are not kept (no link made from them)."""
    srv = make_server()
    many = b" ".join(b"<r%d@x>" % k for k in range(20000))
    msgs = [b"Subject: root\r\nMessage-ID: <r19999@x>\r\n\r\nx\r\n",
            b"Subject: old\r\nMessage-ID: <r0@x>\r\n\r\nx\r\n",
            b"Subject: re: root\r\nMessage-ID: <kid@x>\r\nReferences: " + many + b"\r\n\r\nx\r\n",
            b"Subject: mid\r\nMessage-ID: <r19990@x>\r\n\r\nx\r\n"]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE t").ok
        multiappend(c, "t", msgs)
        assert c.cmd("SELECT t").ok
        r = c.cmd("THREAD REFERENCES UTF-8 ALL")
        assert r.ok, r
        # 4 (r19990) is an ancestor of 1 (r19999) through the kept chain,
        # 3 the child of 1; 2 (r0, 19999 IDs back) stands alone
        assert r.untagged == ["* THREAD (2)(4 1 3)"], r


def test_unreadable_body_is_not_indexed_empty(make_server):
    """A body the indexer cannot open for a moment (the daemon out of file
    descriptors: EMFILE) stays to be indexed, not indexed empty: once it is
    readable again, SEARCH with the index finds what the scan finds."""
    import os
    import resource
    import sqlite3
    import time
    srv = make_server()
    pid = srv.proc.pid
    msgs = [b"Subject: s%d\r\n\r\nbody kw%05dz\r\n" % (i, i) for i in range(1000)]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE e").ok
        assert c.cmd("SELECT e").ok
        tag = c.next_tag()
        c.send(b"".join([("%s APPEND e" % tag).encode()] +
                        [b" {%d+}\r\n" % len(m) + m for m in msgs]) + b"\r\n")
        r = c.read_response(tag)
        assert r.ok, r
        # no descriptor free in the daemon while the indexer works
        fds = {int(x) for x in os.listdir("/proc/%d/fd" % pid)}
        nfd = min(set(range(max(fds) + 2)) - fds)  # the lowest free one
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (nfd, hard))
        try:
            # the indexer polls every 500 ms: 3 s for it to try them all
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                # the indexer's progress, read from the database file
                db = sqlite3.connect("file:%s/postern.db?mode=ro" % srv.data_dir, uri=True)
                pending = db.execute("SELECT count(*) FROM messages WHERE fts = 0").fetchone()[0]
                db.close()
                if pending == 0:
                    break
                time.sleep(0.3)
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        wait_indexed(srv)
        missing = []
        for i in (0, 500, 999):
            r = c.cmd("SEARCH BODY kw%05dz" % i)
            if r.untagged != ["* SEARCH %d" % (i + 1)]:
                missing.append((i, r.untagged))
        assert not missing, missing
