"""Review of the day's changes (review19): STORE results interned and
replies yielded every 4,096 results (storecmd.c), the shutdown's wait for
spool jobs (store_spool_jobs), and SORT's stored orders merged with new mail
(searchcmd.c load_work), THREAD freeing its records on the worker,
POSTERN_LOOP_SLOW_MS. Real clients on loopback, bounded waits."""
import re
import socket
import threading
import time

import pytest

from test_imap_bigbox import fill_fast
from test_imap_sort_cache import big_box, merged_stored, same_as_uncached, stored
from waits import wait_until

ALICE = "alice@example.test"
KW = re.compile(r"\$[A-Za-z0-9_]+")


def announced_before_use(untagged, known):
    """RFC 9051 7.3.5: every keyword a FETCH line carries was in a FLAGS
    response before it (known: the SELECT's). Returns the first violation."""
    known = set(known)
    for line in untagged:
        if line.startswith("* FLAGS ("):
            known |= set(KW.findall(line))
        elif " FETCH (" in line:
            missing = set(KW.findall(line)) - known
            if missing:
                return line, sorted(missing)
    return None


def test_store_announces_many_new_keyword_sets(server):
    """A STORE on 6,000 messages (two loop steps and more) whose results
    carry 300 keyword sets A has not been told of (B set them after A's
    SELECT): each keyword is in a FLAGS response before the first FETCH line
    that carries it, every message gets one FETCH, with its own set."""
    n = 6000
    with server.imap_login(ALICE) as b:
        fill_fast(b, "kwsets", n)
        a = server.imap_login(ALICE)
        try:
            r = a.cmd("SELECT kwsets")
            assert r.ok and "* %d EXISTS" % n in r.untagged, r
            known = set()
            for l in r.untagged:
                if l.startswith("* FLAGS ("):
                    known |= set(KW.findall(l))
            assert b.cmd("SELECT kwsets").ok
            # message i gets $k<i % 300>; the ones past 4,096 get a second
            # keyword of their own run ($late<i % 7>): first seen late in
            # the reply
            # the same keyword for the others of its residue class, in one
            # STORE per class (sets of 20 UIDs)
            for k in range(300):
                uids = ",".join(str(u) for u in range(k + 1, n + 1, 300))
                assert b.cmd("UID STORE %s +FLAGS.SILENT ($k%d)" % (uids, k)).ok
            for k in range(7):
                uids = ",".join(str(u) for u in range(4097 + k, n + 1, 7))
                assert b.cmd("UID STORE %s +FLAGS.SILENT ($late%d)" % (uids, k)).ok
            r = a.cmd("STORE 1:* +FLAGS ($mine)")
            assert r.ok, r.tagged
            bad = announced_before_use(r.untagged, known)
            assert bad is None, bad
            mine = {}
            for l in r.untagged:
                m = re.match(r"\* (\d+) FETCH \(FLAGS \(([^)]*)\)\)$", l)
                if m and "$mine" in m.group(2):
                    assert int(m.group(1)) not in mine, l
                    mine[int(m.group(1))] = set(m.group(2).split())
            assert sorted(mine) == list(range(1, n + 1)), len(mine)
            for i in (1, 300, 301, 4096, 4097, 5000, n):
                want = {"\\Recent", "$mine", "$k%d" % ((i - 1) % 300)}
                if i >= 4097:
                    want.add("$late%d" % ((i - 4097) % 7))
                assert mine[i] - {"\\Recent"} == want - {"\\Recent"}, (i, mine[i])
        finally:
            a.close()


def test_uid_store_unchangedsince_silent_over_steps(server):
    """UID STORE (UNCHANGEDSINCE) +FLAGS.SILENT on 9,000 messages, with
    CONDSTORE on: the refused UIDs, spread over three loop steps, are named
    exactly in [MODIFIED] (RFC 7162 3.1.3), every other message has exactly
    one untagged FETCH (UID u MODSEQ (m)) with the command's one new MODSEQ,
    and none carries FLAGS (.SILENT)."""
    n = 9000
    with server.imap_login(ALICE) as b:
        fill_fast(b, "condbig", n)
        a = server.imap_login(ALICE)
        try:
            assert a.cmd("ENABLE CONDSTORE").ok
            r = a.cmd("SELECT condbig (CONDSTORE)")
            assert r.ok, r
            hm = [l for l in r.untagged if "HIGHESTMODSEQ" in l]
            base = int(re.search(r"HIGHESTMODSEQ (\d+)", hm[0]).group(1))
            assert b.cmd("SELECT condbig").ok
            refused = [2, 4096, 4097, 8191, 8192, 8999]
            assert b.cmd("UID STORE %s +FLAGS.SILENT ($x)" %
                         ",".join(map(str, refused))).ok
            r = a.cmd("UID STORE 1:* (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Answered)" % base)
            assert r.ok, r.tagged
            assert r.text.startswith("[MODIFIED 2,4096:4097,8191:8192,8999] "), r.tagged
            mods, seen = set(), {}
            for l in r.untagged:
                m = re.match(r"\* (\d+) FETCH \(UID (\d+) MODSEQ \((\d+)\)\)$", l)
                if m is None:
                    continue  # B's change told to A (RFC 9051 7.5.1)
                u = int(m.group(2))
                assert u not in seen, l
                seen[u] = int(m.group(3))
                mods.add(int(m.group(3)))
            assert sorted(seen) == [u for u in range(1, n + 1) if u not in refused], \
                (len(seen), [l for l in r.untagged if "FLAGS" in l][:3])
            assert len(mods) == 1 and mods.pop() > base
            r = a.cmd("UID SEARCH UNANSWERED")
            assert r.ok and r.untagged[-1] == "* SEARCH " + " ".join(map(str, refused)), \
                r.untagged[-1:]
        finally:
            a.close()


def test_session_gone_mid_store_reply(make_server):
    """Sessions that go away while a STORE 1:* reply is made in steps (a
    client that reads nothing, a .SILENT one between its yields, one gone
    before the store answered): the daemon serves the others, the changes
    are all made, and it stops cleanly (sanitizers: no use after free, no
    leak)."""
    srv = make_server()
    n = 9000
    with srv.imap_login(ALICE) as b:
        fill_fast(b, "gone", n)
    b = srv.imap_login(ALICE)
    assert b.cmd("EXAMINE gone").ok

    def count(prog):
        r = b.cmd("SEARCH " + prog)
        assert r.ok, r
        return len([l for l in r.untagged if l.startswith("* SEARCH")][-1].split()) - 2

    # (command, what B sees once the store has answered: the reply is then
    # being made, in steps, for a client that reads nothing)
    steps = (("STORE 1:* +FLAGS ($one)", "KEYWORD $one", n),
             ("STORE 1:* +FLAGS.SILENT ($two)", "KEYWORD $two", n),
             ("STORE 1:* (UNCHANGEDSINCE 1) +FLAGS ($three)", None, None),
             ("STORE 1:* -FLAGS.SILENT ($one)", "KEYWORD $one", 0))
    for cmd, prog, want in steps:
        a = srv.imap_login(ALICE)
        a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert a.cmd("SELECT gone").ok
        a.send(a.next_tag() + " " + cmd + "\r\n")
        if prog is not None:
            wait_until(lambda: count(prog) == want, 15, "%s on %d messages" % (prog, want))
        else:
            time.sleep(0.2)
        # a reset, not a FIN: the daemon's next write fails at once
        a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        a.close()
    assert count("KEYWORD $three") == 0
    assert b.cmd("NOOP").ok
    b.close()
    assert srv.stop() == 0


def test_sigterm_during_big_append_literal(make_server):
    """SIGTERM while a 40 MB APPEND literal streams in (spool writes on
    workers in flight): the daemon stops within its grace, exit 0, and the
    sanitizers report nothing (the spool freed by the write's completion,
    store_spool_jobs)."""
    srv = make_server()
    a = srv.imap_login(ALICE)
    size = 40 * 1024 * 1024
    tag = a.next_tag()
    a.send("%s APPEND INBOX {%d}\r\n" % (tag, size))
    line = a.readline()
    assert line.startswith("+"), line
    chunk = (b"x" * 998 + b"\r\n") * 1024
    sent = [0]

    def stream():
        # still sending while the daemon shuts down (writes in flight)
        try:
            while sent[0] < size - len(chunk):
                a.sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass
    th = threading.Thread(target=stream, daemon=True)
    th.start()
    wait_until(lambda: sent[0] >= 8 * 1024 * 1024, 15, "8 MB of the literal sent")
    t0 = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - t0 < 20
    a.close()
    th.join(10)


def test_sigterm_during_smtp_data(make_server):
    """SIGTERM while an SMTP DATA of 20 MB streams in: the daemon stops
    (bounded), exit 0, sanitizers clean."""
    srv = make_server()
    c = srv.client("mx")
    c.ehlo()
    assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
    assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: big\r\n\r\n")
    line = (b"y" * 998 + b"\r\n") * 1024
    for _ in range(8):
        c.sock.sendall(line)
    t0 = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - t0 < 20
    c.close()


def test_stored_merge_with_expunges_untold_and_examine(make_server):
    """A stored order merged with new mail (load_work) for a session that
    has not been told of B's expunges, in EXAMINE, with several sessions on
    the mailbox: the answer is the uncached sort's (over the same view), and
    a session that goes away during the load costs nothing (sanitizers)."""
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    big_box(srv, c, "big", 1100, 91)
    assert c.cmd("SELECT big").ok
    from test_imap_sort_keys import sort
    sort(c, "SUBJECT")
    wait_until(lambda: len(stored(srv)) == 1, 15, "a stored order")
    c.close()
    srv.restart()
    from test_imap_sort_keys import corpus
    from test_imap_store import append
    b = srv.imap_login()
    for date, m in corpus(20, 92):
        assert append(b, "big", m, "", date).ok
    a = srv.imap_login()
    r = a.cmd("EXAMINE big")
    assert r.ok and "* 1120 EXISTS" in r.untagged, r
    # B expunges old and new messages; A is not told (no command of A's
    # between)
    assert b.cmd("SELECT big").ok
    assert b.cmd("STORE 5:40,1105:1110 +FLAGS.SILENT (\\Deleted)").ok
    assert b.cmd("EXPUNGE").ok
    at = len(srv.log())
    from test_imap_sort_cache import FLAGS
    from test_imap_sort_keys import sort
    for uid in (False, True):
        got = sort(a, "SUBJECT", uid=uid)
        # the same as a sort that reads every row of the same snapshot
        assert got == sort(a, "SUBJECT", "ALL " + FLAGS, uid=uid), uid
        assert len(got) == len(set(got)) and len(got) in (1120, 1120 - 42), len(got)
    # the 20 new ones less the 6 B expunged (the snapshot has them no more)
    assert merged_stored(srv, at) == ["14"], srv.log()[at:][-3000:]
    assert a.cmd("NOOP").ok
    assert len(same_as_uncached(a, "SUBJECT")) == 1120 - 42
    a.close()
    b.close()
    # a new process, new mail again: sessions that leave during the load of
    # the stored order (and its merge)
    srv.restart()
    b = srv.imap_login()
    for date, m in corpus(10, 93):
        assert append(b, "big", m, "", date).ok
    for _ in range(4):
        d = srv.imap_login()
        assert d.cmd("EXAMINE big").ok
        d.send(d.next_tag() + " SORT (SUBJECT) UTF-8 ALL\r\n")
        d.close()
    assert b.cmd("SELECT big").ok
    assert len(same_as_uncached(b, "SUBJECT")) == 1120 - 42 + 10
    b.close()
    assert srv.stop() == 0


def test_sigterm_during_literal8_conversion(make_server):
    """SIGTERM right after a 16 MB literal8 holding NULs (its conversion
    runs on a worker, store_spool_filter): the daemon stops within its
    grace, exit 0, sanitizers clean; nothing half-stored after a restart."""
    from test_imap_append import binary_message
    srv = make_server(imap_max_literal="32m")
    msg, _ = binary_message(16 * 1024 * 1024)
    c = srv.imap_login(ALICE, role="imap")
    tag = c.next_tag()
    c.send(("%s APPEND INBOX ~{%d+}\r\n" % (tag, len(msg))).encode() + msg)
    t0 = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - t0 < 20
    c.close()
    srv.start()
    c = srv.imap_login(ALICE, role="imap")
    r = c.cmd("STATUS INBOX (MESSAGES)")
    assert r.ok and r.untagged[0] in ("* STATUS INBOX (MESSAGES 0)",
                                      "* STATUS INBOX (MESSAGES 1)"), r
    c.close()


def test_sigterm_after_smtp_data_end(make_server):
    """SIGTERM just after the end of a 12 MB DATA (the filter chain's
    spool step on a worker, then the commit): the daemon stops, exit 0,
    sanitizers clean; the message is stored whole or not at all (a 250 was
    sent only for a stored one)."""
    srv = make_server()
    c = srv.client("mx")
    c.ehlo()
    assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
    assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"From: s@remote.test\r\nTo: alice@example.test\r\nSubject: big\r\n\r\n")
    line = (b"word " * 199 + b"y\r\n") * 1024
    for _ in range(12):
        c.sock.sendall(line)
    c.sock.sendall(b".\r\n")
    t0 = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - t0 < 20
    try:
        reply = c.reply()
        code = reply.code
    except Exception:
        code = None
    c.close()
    srv.start()
    n = srv.count(ALICE)
    assert n in (0, 1) and (code != 250 or n == 1), (code, n)


def thread_msg(i):
    # chains of 5: each message replies to the one before in its chain
    t = b"Subject: %s topic %d\r\nMessage-ID: <m%d@x.test>\r\n" % (
        b"Re:" if i % 5 else b"", i // 5, i)
    if i % 5:
        t += b"In-Reply-To: <m%d@x.test>\r\nReferences: <m%d@x.test>\r\n" % (i - 1, i - 1)
    return b"From: a@x.test\r\nDate: Mon, 1 Jan 2024 00:%02d:%02d +0000\r\n" % (
        (i // 60) % 60, i % 60) + t + b"\r\nbody\r\n"


def test_thread_records_freed_on_worker(make_server):
    """THREAD frees its message records on the worker (thread.c
    build_work): REFERENCES and ORDEREDSUBJECT, UID THREAD, with a search
    key, answer as before; sessions gone while THREAD runs or while its
    reply waits for the client cost nothing (sanitizers); the daemon stops
    cleanly."""
    from test_imap_fts import multiappend
    srv = make_server()
    n = 3000
    c = srv.imap_login(ALICE)
    assert c.cmd("CREATE thr").ok
    for i in range(0, n, 300):
        multiappend(c, "thr", [thread_msg(k) for k in range(i, i + 300)])
    assert c.cmd("SELECT thr").ok
    want = "* THREAD " + "".join("(%d %d %d %d %d)" % tuple(range(k + 1, k + 6))
                                 for k in range(0, n, 5))
    for cmd in ("THREAD REFERENCES UTF-8 ALL", "UID THREAD REFERENCES UTF-8 ALL",
                "THREAD ORDEREDSUBJECT UTF-8 ALL"):
        r = c.cmd(cmd)
        assert r.ok and len(r.untagged) == 1, r.tagged
        if "ORDEREDSUBJECT" in cmd:
            # RFC 5256 3: by base subject, then date: the same five each
            assert r.untagged[0] == "* THREAD " + "".join(
                "(%d (%d)(%d)(%d)(%d))" % tuple(range(k + 1, k + 6)) for k in range(0, n, 5)), \
                r.untagged[0][:200]
        else:
            assert r.untagged[0] == want, r.untagged[0][:200]
    r = c.cmd("THREAD REFERENCES UTF-8 UID 1:10")
    assert r.ok and r.untagged == ["* THREAD (1 2 3 4 5)(6 7 8 9 10)"], r.untagged
    for cmd in ("THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL"):
        for wait in (0, 0.3):
            a = srv.imap_login(ALICE)
            a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            assert a.cmd("EXAMINE thr").ok
            a.send(a.next_tag() + " " + cmd + "\r\n")
            time.sleep(wait)
            a.close()
    r = c.cmd("THREAD REFERENCES UTF-8 ALL")
    assert r.ok and r.untagged[0] == want
    c.close()
    assert srv.stop() == 0


def test_loop_slow_steps_off_unless_set(make_server):
    """POSTERN_LOOP_SLOW_MS (core/loop.c): unset, empty, not a number or 0,
    nothing is measured nor logged; set, slow callbacks are logged with
    their CPU time and offset."""
    import os
    srv = make_server(start=False)
    for value in (None, "", "x", "0"):
        env = dict(os.environ)
        env.pop("POSTERN_LOOP_SLOW_MS", None)
        if value is not None:
            env["POSTERN_LOOP_SLOW_MS"] = value
        srv.env = env
        srv.start()
        with srv.imap_login(ALICE) as c:
            fill_fast(c, "slow%d" % srv.starts, 2000)
            assert c.cmd("SELECT slow%d" % srv.starts).ok
            assert c.cmd("STORE 1:* +FLAGS (\\Seen)").ok
        assert srv.stop() == 0
        assert "slow step" not in srv.log(), value
    # 0.001 ms: every callback that held the loop 1 us or more is logged
    # (with "1", whether any step of this small mailbox takes 1 ms depends
    # on the machine: on a quiet one none did)
    srv.env = dict(os.environ, POSTERN_LOOP_SLOW_MS="0.001")
    srv.start()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("SELECT slow1").ok
        assert c.cmd("STORE 1:* -FLAGS (\\Seen)").ok
        assert c.cmd("SEARCH TEXT nothing-here").ok
    assert srv.stop() == 0
    assert re.search(r"loop: slow step: \d+\.\d{3} ms \(CPU \d+\.\d{3} ms\) in a "
                     r"(timer|posted|I/O) callback at \S+\+0x[0-9a-f]+", srv.log()), \
        srv.log()[-2000:]


def test_store_racing_delete_hands_uids_over_once(make_server):
    """STORE 1:* on 5,000 messages racing B's DELETE of the mailbox (the
    session is then closed, "mailbox deleted", or the store refuses): the
    UID list handed over by store_flags_take is freed once whichever comes
    first (sanitizers); other sessions are served; a FETCH with implicit
    \\Seen (seen_done) works; the daemon stops cleanly."""
    from conftest import ClosedError
    srv = make_server()
    with srv.imap_login(ALICE) as b:
        fill_fast(b, "other", 300)
        for k in range(3):
            fill_fast(b, "doomed%d" % k, 5000)
            a = srv.imap_login(ALICE)
            assert a.cmd("SELECT doomed%d" % k).ok
            tb, ta = b.next_tag(), a.next_tag()
            if k == 1:
                a.send(ta + " STORE 1:* +FLAGS ($gone)\r\n")
                b.send(tb + " DELETE doomed%d\r\n" % k)
            else:
                b.send(tb + " DELETE doomed%d\r\n" % k)
                if k == 2:
                    time.sleep(0.01)
                a.send(ta + " STORE 1:* +FLAGS ($gone)\r\n")
            assert b.read_response(tb).ok
            try:
                r = a.read_response(ta)
                assert r.tagged.split()[1] in ("OK", "NO"), r.tagged
            except ClosedError:
                pass
            a.close()
        assert b.cmd("SELECT other").ok
        r = b.cmd("FETCH 1:* (BODY[TEXT])")
        assert r.ok, r.tagged
        assert len([l for l in r.untagged if " FETCH " in l and "\\Seen" in l]) == 300
        r = b.cmd("SEARCH UNSEEN")
        assert r.ok and r.untagged[-1] == "* SEARCH", r.untagged[-1:]
    assert srv.stop() == 0


@pytest.mark.parametrize("delay", [0, 0.02, 0.1])
def test_sigterm_during_catenate_write(make_server, delay):
    """SIGTERM just after a CATENATE of four URLs of an 8 MB message (the
    spool written on a worker through store_spool_filter, cat_write): the
    daemon stops within its grace, exit 0, sanitizers clean; after a
    restart the new message is there whole or not at all."""
    from conftest import imap_append
    srv = make_server(imap_max_literal="32m")
    c = srv.imap_login(ALICE, role="imap")
    big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 8192
    assert c.cmd("CREATE src").ok and c.cmd("CREATE dst").ok
    r = imap_append(c, "src", big)
    assert r.ok, r
    tag = c.next_tag()
    url = '"/src/;UID=1"'
    c.send(("%s APPEND dst CATENATE (URL %s TEXT {4+}\r\n\r\n\r\n URL %s URL %s URL %s)\r\n"
            % (tag, url, url, url, url)).encode())
    time.sleep(delay)
    t0 = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - t0 < 20
    c.close()
    srv.start()
    c = srv.imap_login(ALICE, role="imap")
    r = c.cmd("STATUS dst (MESSAGES SIZE)")
    assert r.ok, r
    assert r.untagged[0] in ("* STATUS dst (MESSAGES 0 SIZE 0)",
                             "* STATUS dst (MESSAGES 1 SIZE %d)" % (4 * len(big) + 4)), r.untagged
    c.close()
