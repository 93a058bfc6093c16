"""Review of the kept SORT orders (imap/sortorder.c) and of SEARCH answered
from the view: cases beyond test_imap_sort_cache.py, each answer held to
the uncached path (SLOW: never cached; FLAGS: reads each row)."""
import os
import random
import sqlite3
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
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        with db:
            db.execute("UPDATE mailboxes SET uidvalidity = (SELECT min(uidvalidity)"
                       " FROM mailboxes WHERE name = 'INBOX') WHERE name = 'INBOX'")
    finally:
        db.close()
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
    rnd = random.Random(7)
    nxt = 200
    progs = ["ALL", "UID 1:*", "UID 20:150", "NOT UID 1:40", "OR UID 3 UID 100:*",
             "SEEN", "UNSEEN", "DELETED LARGER 100"]
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
            assert w.cmd("STORE %d:* FLAGS.SILENT (\\Seen)" % rnd.randrange(1, 50)).ok
        elif op == 4:
            assert a.cmd("NOOP").ok
        else:
            assert stale.cmd("NOOP").ok
        _settle(a, stale, ro)
        for c in (a, stale, ro):
            crit = rnd.choice(CRITERIA)
            prog = rnd.choice(progs)
            got = sort(c, crit, prog, uid=True)
            assert got == sort(c, crit, prog + " " + SLOW, uid=True), (step, crit, prog)
            assert got == sort(c, crit, prog + " " + FLAGS, uid=True), (step, crit, prog)
            assert got == sort(c, crit, prog, uid=True), (step, crit, prog)
            if prog in ("ALL", "UID 1:*", "UID 20:150", "NOT UID 1:40", "OR UID 3 UID 100:*"):
                assert search(c, prog, True) == search(c, prog + " " + FLAGS, True), (step, prog)
    kept, no_read, read = kept_used(srv, at)
    assert kept > 0 and no_read > 0 and read > 0
    for c in (w, a, stale, ro):
        c.close()
