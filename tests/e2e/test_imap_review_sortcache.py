"""Review of the kept SORT orders (imap/sortorder.c) and of SEARCH answered
from the view: cases beyond test_imap_sort_cache.py, each answer held to
the uncached path (SLOW: never cached; FLAGS: reads each row)."""
import os
import random
import time

from test_imap_sort_cache import FLAGS, kept_used, search
from test_imap_sort_keys import CRITERIA, SLOW, corpus, fill, sort
from test_imap_store import append


def test_mailboxes_of_one_uidvalidity_in_two_accounts(make_server):
    # Before schema step 2 a user's INBOX took its creation time as its
    # UIDVALIDITY: two accounts made in the same second share it, and the
    # migration keeps it (a client's cache depends on it). A kept order is
    # one mailbox's; another's with the same UIDVALIDITY must not use it.
    srv = make_server(log_level="debug")
    a = srv.imap_login()
    b = srv.imap_login("bob@example.test")
    for c, seed in ((a, 41), (b, 42)):
        for date, m in corpus(60 if c is a else 90, seed):
            assert append(c, "INBOX", m, "", date).ok
    a.close()
    b.close()
    srv.stop()
    srv.db_exec("UPDATE mailboxes SET uidvalidity = (SELECT min(uidvalidity)"
                " FROM mailboxes WHERE name = 'INBOX') WHERE name = 'INBOX'")
    srv.start()
    a = srv.imap_login()
    b = srv.imap_login("bob@example.test")
    assert a.cmd("SELECT INBOX").ok and b.cmd("SELECT INBOX").ok
    for crit in ("SUBJECT", "REVERSE DATE"):
        for uid in (False, True):
            want_a = sort(a, crit, SLOW, uid=uid)
            want_b = sort(b, crit, SLOW, uid=uid)
            assert len(want_a) == 60 and len(want_b) == 90
            assert sort(a, crit, uid=uid) == want_a, (crit, uid)
            assert sort(b, crit, uid=uid) == want_b, (crit, uid)
            assert sort(a, crit, FLAGS, uid=uid) == want_a, (crit, uid)
            assert sort(b, crit, FLAGS, uid=uid) == want_b, (crit, uid)
    a.close()
    b.close()


def _uids(c):
    return search(c, "UID 1:*", True)


def _settle(*sessions):
    # new messages announced by the next command that may (a FETCH: never
    # an EXPUNGE, so a stale view stays stale)
    time.sleep(0.2)
    for c in sessions:
        assert c.cmd("UID FETCH * (UID)").ok


def test_random_sessions_against_the_uncached_path(make_server):
    # Three sessions on one mailbox (one of them never told of expunges
    # until it asks, one EXAMINE), a writer appending, expunging, moving
    # and copying in; each UID SORT and UID SEARCH held to the uncached
    # forms. Bounded: a fixed number of steps.
    srv = make_server(log_level="debug", imap_sort_cache_size="64k")
    w = srv.imap_login()
    msgs = corpus(400, 51)
    fill(w, "other", msgs[300:])
    fill(w, "box", msgs[:200])
    a = srv.imap_login()
    assert a.cmd("SELECT box").ok
    stale = srv.imap_login()
    assert stale.cmd("SELECT box").ok
    ro = srv.imap_login()
    assert ro.cmd("EXAMINE box").ok
    rnd = random.Random(12)
    nxt = 200
    progs = ["ALL", "UID 1:*", "UID 20:150", "NOT UID 1:40", "OR UID 3 UID 100:*",
             "SEEN", "UNSEEN", "DELETED LARGER 100", "1:50", "NOT 10:*", "*", "2,4,6:9 UID 1:*"]
    seq_only = [p for p in progs if p.split()[0] not in ("SEEN", "UNSEEN", "DELETED")]
    at = len(srv.log())
    for step in range(25):
        op = rnd.randrange(6)
        if op == 0 and nxt < 300:
            for date, m in msgs[nxt:nxt + 5]:
                assert append(w, "box", m, "", date).ok
            nxt += 5
        elif op == 1:
            assert w.cmd("UID STORE %d:%d +FLAGS.SILENT (\\Deleted)"
                         % (rnd.randrange(1, 300), rnd.randrange(1, 300))).ok
            assert w.cmd("EXPUNGE").ok
        elif op == 2:
            assert w.cmd("SELECT other").ok
            assert w.cmd("UID %s %d box" % (rnd.choice(["COPY", "MOVE"]),
                                            rnd.randrange(1, 120))).ok
            assert w.cmd("SELECT box").ok
        elif op == 3:
            assert w.cmd("UID STORE %d:* FLAGS.SILENT (\\Seen)" % rnd.randrange(1, 250)).ok
        elif op == 4:
            assert a.cmd("NOOP").ok
        else:
            assert stale.cmd("NOOP").ok
        _settle(a, stale, ro)
        for c in (a, stale, ro):
            crit = rnd.choice(CRITERIA)
            prog = rnd.choice(progs)
            uid = rnd.random() < 0.7
            got = sort(c, crit, prog, uid=uid)
            assert got == sort(c, crit, prog + " " + SLOW, uid=uid), (step, crit, prog, uid)
            assert got == sort(c, crit, prog + " " + FLAGS, uid=uid), (step, crit, prog, uid)
            assert got == sort(c, crit, prog, uid=uid), (step, crit, prog, uid)
            if prog in seq_only:
                assert search(c, prog, uid) == search(c, prog + " " + FLAGS, uid), (step, prog)
    kept, no_read, read = kept_used(srv, at)
    assert kept > 0 and no_read > 0 and read > 0
    for c in (w, a, stale, ro):
        c.close()


def _big(srv, box, n, seed):
    from test_imap_fts import multiappend
    c = srv.imap_login()
    msgs = [m for _, m in corpus(n, seed)]
    assert c.cmd("CREATE %s" % box).ok
    for i in range(0, len(msgs), 500):
        multiappend(c, box, msgs[i:i + 500])
    assert c.cmd("SELECT %s" % box).ok
    return c


def test_tiny_cache_many_sessions_pipelined(make_server):
    # 2,500 messages (two slices); a cache that holds one order of them:
    # every SORT makes or pushes out another's order while sessions
    # pipeline SORTs on several criteria at once (orders evicted while a
    # job reads them); each answer is the uncached one.
    srv = make_server(log_level="debug", imap_sort_cache_size="12k")
    c = _big(srv, "big", 2500, 61)
    crits = ["SUBJECT", "REVERSE DATE", "SIZE", "FROM", "DISPLAYTO SIZE"]
    want = {cr: sort(c, cr, SLOW, uid=True) for cr in crits}
    others = []
    for _ in range(3):
        o = srv.imap_login()
        assert o.cmd("SELECT big").ok
        others.append(o)
    lines = ["UID SORT (%s) UTF-8 %s" % (cr, p) for p in ("ALL", FLAGS, "UID 1:*")
             for cr in crits]
    for rnd in range(2):
        for o in others:
            o.send(("".join("%s%d %s\r\n" % ("p", i, l) for i, l in enumerate(lines))).encode())
        for o in others:
            for i, l in enumerate(lines):
                r = o.read_response("p%d" % i)
                assert r.ok, r
                got = [x for x in r.untagged if x.startswith("* SORT")][0].split()[2:]
                assert got == want[l.split("(")[1].split(")")[0]], (rnd, l)
    for o in others:
        o.close()
    c.close()


def test_stop_and_close_with_sorts_in_flight(make_server):
    # SIGTERM while sessions have SORTs (making orders, using them) in
    # flight, and a session that goes away in the middle of its SORT: no
    # leak, nothing used after it was freed (conftest fails on an ASan
    # report), and the daemon stops.
    srv = make_server(log_level="debug", imap_sort_cache_size="12k")
    c = _big(srv, "big", 2500, 62)
    sort(c, "SUBJECT")  # kept
    for rnd in range(2):
        sessions = []
        for k in range(3):
            o = srv.imap_login()
            assert o.cmd("SELECT big").ok
            o.send(b"".join(b"q%d UID SORT (%s) UTF-8 ALL\r\n" % (i, cr.encode())
                            for i, cr in enumerate(["SUBJECT", "DATE", "SIZE", "FROM", "SUBJECT"])))
            sessions.append(o)
        sessions[0].close()  # gone mid-command
        time.sleep(0.05 * rnd)
        srv.stop()
        for o in sessions[1:]:
            o.close()
        srv.start()
        c = srv.imap_login()
        assert c.cmd("SELECT big").ok
        assert sort(c, "SUBJECT", uid=True) == sort(c, "SUBJECT", SLOW, uid=True)
    c.close()


def _esearch(r):
    return [l.split(")", 1)[1] for l in r.untagged if l.startswith("* ESEARCH")]


def test_modseq_recent_save_charset_on_kept_orders(make_server):
    srv = make_server(log_level="debug")
    w = srv.imap_login()
    fill(w, "box", corpus(120, 71))
    assert w.cmd("UNSELECT").ok
    c = srv.imap_login()
    assert c.cmd("ENABLE CONDSTORE").ok
    assert c.cmd("SELECT box").ok
    for date, m in corpus(10, 72):  # \Recent for c's view (NEW, OLD, RECENT)
        assert append(w, "box", m, "", date).ok
    assert c.cmd("NOOP").ok
    assert c.cmd("STORE 5:30 +FLAGS.SILENT (\\Seen)").ok
    at = len(srv.log())
    for crit in ("SUBJECT", "REVERSE DATE", "SIZE SUBJECT SIZE", "DATE DATE REVERSE DATE"):
        sort(c, crit)  # kept
        for prog in ("MODSEQ 1", "UID 50:* MODSEQ 2", "NEW", "OLD", "RECENT", "NOT RECENT 1:20",
                     "CHARSET US-ASCII ALL"):
            if prog.startswith("CHARSET"):
                a = c.cmd("SORT (%s) US-ASCII ALL" % crit)
                b = c.cmd("SORT (%s) US-ASCII ALL %s" % (crit, SLOW))
                assert a.ok and b.ok and a.untagged == b.untagged, crit
                continue
            for uid in (False, True):
                want = sort(c, crit, prog + " " + SLOW, uid=uid)
                assert sort(c, crit, prog, uid=uid) == want, (crit, prog, uid)
            for ret in ("ALL", "MIN MAX", "COUNT", "PARTIAL 2:9", "MIN MAX COUNT ALL"):
                a = c.cmd("UID SORT RETURN (%s) (%s) UTF-8 %s" % (ret, crit, prog))
                b = c.cmd("UID SORT RETURN (%s) (%s) UTF-8 %s %s" % (ret, crit, prog, SLOW))
                assert a.ok and b.ok and _esearch(a) == _esearch(b), (ret, crit, prog)
    assert kept_used(srv, at)[1] > 0 and kept_used(srv, at)[2] > 0
    # SORT RETURN (SAVE): "$" then used by SEARCH and SORT from the view
    for crit in ("SUBJECT", "REVERSE SIZE"):
        assert c.cmd("UID SORT RETURN (SAVE) (%s) UTF-8 UID 10:60" % crit).ok
        s1 = search(c, "$", True)
        assert c.cmd("UID SORT RETURN (SAVE) (%s) UTF-8 UID 10:60 %s" % (crit, SLOW)).ok
        assert search(c, "$", True) == s1 and len(s1) == 51
        assert sort(c, crit, "$") == sort(c, crit, "$ " + SLOW)
        assert sort(c, crit, "NOT $", uid=True) == sort(c, crit, "NOT $ " + SLOW, uid=True)
        assert c.cmd("UID SORT RETURN (SAVE MIN MAX) (%s) UTF-8 ALL" % crit).ok
        s2 = search(c, "$", True)
        assert c.cmd("UID SORT RETURN (SAVE MIN MAX) (%s) UTF-8 ALL %s" % (crit, SLOW)).ok
        assert search(c, "$", True) == s2
    c.close()
    w.close()


def test_sorts_while_another_session_writes(make_server):
    # A writer appends, expunges and moves in while two sessions pipeline
    # SORTs (orders made, replaced, used, evicted: a small cache). Every
    # answer is in the order of the keys: its UIDs still there at the end
    # come in the order the uncached SORT gives them then.
    import threading
    srv = make_server(log_level="debug", imap_sort_cache_size="8k")
    w = srv.imap_login()
    msgs = corpus(500, 81)
    fill(w, "other", msgs[400:])
    fill(w, "box", msgs[:300])
    readers = []
    for k in range(2):
        r = srv.imap_login()
        assert r.cmd("SELECT box").ok
        readers.append(r)
    crits = ["SUBJECT", "REVERSE DATE", "SIZE", "FROM DATE"]
    answers = []
    stop = threading.Event()
    errors = []

    def write():
        try:
            rnd = random.Random(3)
            k = 300
            while not stop.is_set() and k < 400:
                for date, m in msgs[k:k + 4]:
                    assert append(w, "box", m, "", date).ok
                k += 4
                lo = rnd.randrange(1, 300)
                assert w.cmd("UID STORE %d:%d +FLAGS.SILENT (\\Deleted)" % (lo, lo + 6)).ok
                assert w.cmd("EXPUNGE").ok
                assert w.cmd("SELECT other").ok
                assert w.cmd("UID MOVE %d box" % rnd.randrange(1, 100)).ok
                assert w.cmd("SELECT box").ok
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    try:
        for rnd in range(6):
            for r in readers:
                lines = ["UID SORT (%s) UTF-8 %s" % (cr, p) for cr in crits
                         for p in ("ALL", FLAGS)]
                r.send("".join("s%d %s\r\n" % (i, l) for i, l in enumerate(lines)).encode())
                for i, l in enumerate(lines):
                    resp = r.read_response("s%d" % i)
                    assert resp.ok, resp
                    got = [x for x in resp.untagged if x.startswith("* SORT")][0].split()[2:]
                    answers.append((l.split("(")[1].split(")")[0], got))
                assert r.cmd("NOOP").ok
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors
    for r in readers:
        assert r.cmd("NOOP").ok
    final = {cr: sort(readers[0], cr, SLOW, uid=True) for cr in crits}
    for r in readers:
        for cr in crits:
            assert sort(r, cr, uid=True) == final[cr]
    for cr, got in answers:
        there = set(final[cr])
        mine = set(got)
        assert [u for u in got if u in there] == [u for u in final[cr] if u in mine], cr
    for r in readers + [w]:
        r.close()


def test_inbox_renamed_under_a_session(make_server):
    # RENAME INBOX moves every message to a new mailbox (new UIDVALIDITY)
    # and leaves INBOX empty with its UIDVALIDITY: the kept orders of both
    # answer as the uncached path, before and after the session is told.
    srv = make_server(log_level="debug")
    a = srv.imap_login()
    for date, m in corpus(80, 91):
        assert append(a, "INBOX", m, "", date).ok
    assert a.cmd("SELECT INBOX").ok
    before = {cr: sort(a, cr, uid=True) for cr in ("SUBJECT", "DATE")}
    b = srv.imap_login()
    assert b.cmd("RENAME INBOX moved").ok
    time.sleep(0.2)
    for cr in before:
        assert sort(a, cr, uid=True) == sort(a, cr, FLAGS, uid=True) == []
    assert search(a, "ALL") == search(a, "ALL " + FLAGS) == []
    assert a.cmd("NOOP").ok
    for date, m in corpus(20, 92):
        assert append(b, "INBOX", m, "", date).ok
    assert a.cmd("NOOP").ok
    for cr in before:
        got = sort(a, cr, uid=True)
        assert len(got) == 20 and got == sort(a, cr, SLOW, uid=True)
        assert got == sort(a, cr, uid=True)
    assert b.cmd("SELECT moved").ok
    for cr in before:
        got = sort(b, cr, uid=True)
        assert len(got) == 80 and got == sort(b, cr, SLOW, uid=True) == sort(b, cr, uid=True)
    # copied into INBOX: new UIDs, sorted again
    assert b.cmd("COPY 1:30 INBOX").ok
    assert a.cmd("NOOP").ok
    for cr in before:
        got = sort(a, cr, uid=True)
        assert len(got) == 50 and got == sort(a, cr, SLOW, uid=True) == sort(a, cr, uid=True)
    a.close()
    b.close()


def test_an_order_lacking_a_match_is_sorted_again(make_server):
    # A body without sort keys or cache whose file is missing is left out
    # of the order made (as an expunge under the SORT would be) while its
    # row still matches flags: the SORT that reads the rows finds the order
    # short and sorts again without it (sort_again); the answers stay the
    # uncached ones.
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    fill(c, "box", corpus(50, 95))
    c.close()
    srv.stop()
    with srv.db_rw() as db:
        mid, blob = db.execute("SELECT m.id, m.blob FROM messages m JOIN mailbox_messages mm"
                               " ON mm.message_id = m.id WHERE mm.uid = 7").fetchone()
        db.execute("DELETE FROM sort_keys WHERE message_id = ?", (mid,))
        db.execute("UPDATE messages SET cache = NULL WHERE id = ?", (mid,))
    gone = [os.path.join(d, blob) for d, _, fs in os.walk(srv.data_dir) if blob in fs]
    assert len(gone) == 1
    os.unlink(gone[0])
    srv.start()
    c = srv.imap_login()
    assert c.cmd("SELECT box").ok
    at = len(srv.log())
    for crit in ("SUBJECT", "REVERSE DATE"):  # keys from the cache (SIZE: from the row)
        a = sort(c, crit, uid=True)
        assert "7" not in a and len(a) == 49
        b = sort(c, crit, FLAGS, uid=True)
        assert b == a, crit
        assert sort(c, crit, SLOW, uid=True) == a
        assert sort(c, crit, uid=True) == a
    assert srv.log()[at:].count("lacks a message; sorting again") == 2
    c.close()


def test_sessions_gone_mid_sort_and_search(make_server):
    # Sessions that send SORTs and view SEARCHes (orders made, used and
    # pushed out of a small cache) and go at once, again and again: nothing
    # leaks or is used after it was freed (ASan), and the server answers on.
    srv = make_server(imap_sort_cache_size="16k")
    c = _big(srv, "big", 2100, 97)
    want = sort(c, "SUBJECT", SLOW, uid=True)
    for rnd in range(12):
        o = srv.imap_login()
        assert o.cmd("SELECT big").ok
        o.send(b"".join(b"x%d UID SORT (%s) UTF-8 ALL\r\nx%dS UID SEARCH 1:* NOT %d\r\n"
                        % (i, cr.encode(), i, i)
                        for i, cr in enumerate(["SUBJECT", "DATE", "SIZE", "REVERSE SUBJECT",
                                                "SUBJECT"][rnd % 3:])))
        if rnd % 2:
            time.sleep(0.01 * (rnd % 4))
        o.close()
    assert sort(c, "SUBJECT", uid=True) == want
    assert sort(c, "SUBJECT", FLAGS, uid=True) == want
    c.close()
