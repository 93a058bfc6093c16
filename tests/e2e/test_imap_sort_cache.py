"""The server's kept SORT orders (imap/sortorder.c, imap_sort_cache_size) and
SEARCH answered from the view alone: a SORT repeated while no message has
arrived takes every message's order from the first one; a search whose keys
need only sequence numbers and UIDs reads nothing.

Each answer is held to the same command forced through the uncached path:
a tautology that reads each message's flags (OR SEEN UNSEEN: the slices
match, the kept order is used), or one that reads the message itself
(SLOW: never cached, sorted from the caches). The debug log says when a kept
order was made and used, so the tests know which path answered."""
import re
import time

from test_imap_sort_keys import CRITERIA, SLOW, corpus, esort, fill, sort
from test_imap_store import append
from waits import wait_until

FLAGS = "OR SEEN UNSEEN"  # true for every message, but reads its row


def kept_used(srv, since):
    log = srv.log()[since:]
    return (len(re.findall(r"sort: order of \d+ messages kept", log)),
            len(re.findall(r"sort: a kept order of \d+ messages \(no read\)", log)),
            len(re.findall(r"sort: a kept order of \d+ messages \(matches read\)", log)))


def search(c, prog, uid=False):
    r = c.cmd("%sSEARCH %s" % ("UID " if uid else "", prog))
    assert r.ok, r
    got = [l for l in r.untagged if l.startswith("* SEARCH")]
    assert len(got) == 1, r
    return got[0][len("* SEARCH"):].split()


def same_as_uncached(c, crit, prog="ALL"):
    for uid in (False, True):
        a = sort(c, crit, prog, uid=uid)
        assert a == sort(c, crit, "%s %s" % (prog, SLOW), uid=uid), (crit, prog, uid)
        assert a == sort(c, crit, "%s %s" % (prog, FLAGS), uid=uid), (crit, prog, uid)
    return a


def test_repeated_sorts_use_the_kept_order(make_server):
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    fill(c, "box", corpus(150, 31))
    assert c.cmd("STORE 1:40 +FLAGS.SILENT (\\Seen)").ok
    assert c.cmd("STORE 30:60 +FLAGS.SILENT (\\Deleted)").ok
    at = len(srv.log())
    for crit in CRITERIA:
        same_as_uncached(c, crit)
    kept, no_read, read = kept_used(srv, at)
    # one order made per criteria list; the ALL and the FLAGS forms after
    # it (plain and UID) use it
    assert kept == len(CRITERIA), srv.log()[at:]
    assert no_read == len(CRITERIA)
    assert read == len(CRITERIA) * 2
    # programs of sets, "$", negations, flags and sizes on the kept orders
    assert c.cmd("SEARCH RETURN (SAVE) 10:20,77,140:*").ok
    for prog in ("1:50", "UID 10:*", "NOT 5:100", "OR 1:3 UID 147", "$", "NOT $",
                 "UNSEEN", "DELETED", "UNDELETED", "LARGER 200 2:*", "SEEN NOT 1:10"):
        for crit in ("SUBJECT", "REVERSE DATE", "SIZE", "DISPLAYFROM"):
            same_as_uncached(c, crit, prog)
    # flags change, the order stays; the matches follow the flags
    assert c.cmd("STORE 1:* -FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("STORE 100:120 +FLAGS.SILENT (\\Deleted)").ok
    at = len(srv.log())
    same_as_uncached(c, "SUBJECT", "DELETED")
    assert kept_used(srv, at)[0] == 0
    # ESORT and PARTIAL on the kept order
    for ret in ("MIN MAX COUNT", "ALL", "PARTIAL 1:10", "PARTIAL -1:-20", "COUNT"):
        for prog in ("ALL", "UNDELETED", "20:90"):
            assert esort(c, ret, "SUBJECT", prog) == esort(c, ret, "SUBJECT", prog + " " + SLOW), (ret, prog)
    c.close()


def test_new_and_expunged_messages(make_server):
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    msgs = corpus(120, 32)
    fill(c, "box", msgs[:80])
    d = srv.imap_login()
    assert d.cmd("SELECT box").ok
    first = same_as_uncached(c, "SUBJECT")
    same_as_uncached(d, "SUBJECT")
    # new messages: the next SORT of a view that has them merges them into
    # the kept order (imap/sortmerge.c)
    for date, m in msgs[80:]:
        assert append(d, "box", m, "", date).ok
    assert d.cmd("NOOP").ok
    at = len(srv.log())
    after = same_as_uncached(d, "SUBJECT")
    assert len(after) == 120 and kept_used(srv, at)[0] == 0
    assert "40 new messages merged into a kept order" in srv.log()[at:]
    # a view that has not seen them yet still uses the newer order
    at = len(srv.log())
    assert sort(c, "SUBJECT") == first
    assert kept_used(srv, at) == (0, 1, 0)
    assert c.cmd("NOOP").ok
    assert sort(c, "SUBJECT") == after
    # expunged by another session: once told, gone from the answers, and the
    # order is still used
    assert d.cmd("STORE 5:25,90 +FLAGS.SILENT (\\Deleted)").ok
    assert d.cmd("EXPUNGE").ok
    # before c is told (its view still has them, FETCH and SEARCH leave them
    # out: test_imap_sync.py), the kept order leaves them out too
    time.sleep(0.3)
    for crit in ("SUBJECT", "DATE"):
        for uid in (False, True):
            a = sort(c, crit, uid=uid)
            assert len(a) == 98 and a == sort(c, crit, FLAGS, uid=uid), (crit, uid)
    assert search(c, "ALL") == search(c, "ALL " + FLAGS)
    assert search(c, "UID 1:*", True) == search(c, "UID 1:* " + FLAGS, True)
    assert len(search(c, "ALL")) == 98
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    for crit in ("SUBJECT", "REVERSE SIZE", "FROM DATE"):
        assert len(same_as_uncached(c, crit)) == 98
    assert same_as_uncached(c, "SUBJECT", "UID 1:60") == same_as_uncached(d, "SUBJECT", "UID 1:60")
    # own expunge
    assert c.cmd("STORE 1:3 +FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("EXPUNGE").ok
    assert len(same_as_uncached(c, "SUBJECT")) == 95
    c.close()
    d.close()


def test_mailboxes_do_not_share_orders(make_server):
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    fill(c, "a", corpus(60, 1))
    a = same_as_uncached(c, "SUBJECT", "ALL")
    fill(c, "b", corpus(90, 2))
    b = same_as_uncached(c, "SUBJECT", "ALL")
    assert a != b
    # renamed: the same mailbox (UIDVALIDITY), the same order
    assert c.cmd("RENAME b b2").ok
    assert c.cmd("SELECT b2").ok
    assert same_as_uncached(c, "SUBJECT") == b
    # deleted and made again under the old name with other messages
    assert c.cmd("SELECT a").ok
    assert c.cmd("CLOSE").ok
    assert c.cmd("DELETE a").ok
    fill(c, "a", corpus(60, 3))
    again = same_as_uncached(c, "SUBJECT")
    assert len(again) == 60
    # another account
    e = srv.imap_login("bob@example.test")
    fill(e, "a", corpus(60, 4))
    same_as_uncached(e, "SUBJECT")
    e.close()
    c.close()


def test_small_and_no_cache(make_server):
    # 2 KB: an order of more than ~500 messages is never kept; the small
    # ones push each other out
    for size, big_kept in (("2k", False), ("0", False)):
        srv = make_server(log_level="debug", imap_sort_cache_size=size)
        c = srv.imap_login()
        fill(c, "big", corpus(700, 5))
        at = len(srv.log())
        for crit in CRITERIA:
            same_as_uncached(c, crit)
        assert kept_used(srv, at) == (0, 0, 0)
        fill(c, "small", corpus(100, 6))
        at = len(srv.log())
        for crit in CRITERIA:
            same_as_uncached(c, crit)
        kept, no_read, read = kept_used(srv, at)
        if size == "0":
            assert (kept, no_read, read) == (0, 0, 0)
        else:
            # 100 messages: ~450 octets each order, four fit at once
            assert kept >= len(CRITERIA)
        c.close()


def test_search_from_the_view(make_server):
    srv = make_server()
    c = srv.imap_login()
    fill(c, "box", corpus(300, 7))
    assert c.cmd("STORE 1:100 +FLAGS.SILENT (\\Seen)").ok
    assert c.cmd("SEARCH RETURN (SAVE) 50:60").ok
    for prog in ("ALL", "1:*", "UID 1:*", "2,4,8:16", "NOT 1:299", "UID 5:7 OR 1 300",
                 "$", "NOT $", "OR $ 1:5", "*", "UID *"):
        for uid in (False, True):
            assert search(c, prog, uid) == search(c, prog + " " + FLAGS, uid), (prog, uid)
        r = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) %s" % prog)
        r2 = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) %s %s" % (prog, FLAGS))
        assert r.ok and r2.ok
        strip = lambda r: [l.split(")", 1)[1] for l in r.untagged if l.startswith("* ESEARCH")]
        assert strip(r) == strip(r2), prog
    # expunged ones go
    assert c.cmd("STORE 10:20 +FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("EXPUNGE").ok
    assert search(c, "ALL") == [str(i) for i in range(1, 290)]
    assert search(c, "UID 1:*", True) == search(c, "UID 1:* " + FLAGS, True)
    # an empty mailbox
    assert c.cmd("CREATE empty").ok
    assert c.cmd("SELECT empty").ok
    assert search(c, "ALL") == []
    assert sort(c, "SUBJECT") == []
    c.close()


def stored(srv):
    db = srv.db()
    try:
        return db.execute("SELECT o.max_uid, length(o.uids) / 4 FROM sort_orders o"
                          " ORDER BY o.written").fetchall()
    finally:
        db.close()


def big_box(srv, c, box, n, seed):
    from test_imap_fts import multiappend
    msgs = [m for _, m in corpus(n, seed)]
    assert c.cmd("CREATE %s" % box).ok
    for i in range(0, n, 300):
        multiappend(c, box, msgs[i:i + 300])
    assert c.cmd("SELECT %s" % box).ok


def wait_rows(srv, n, limit=15.0):
    wait_until(lambda: len(stored(srv)) == n, limit, "%d stored orders (%r)" % (n, stored(srv)))
    return stored(srv)


def test_stored_orders_serve_a_new_process(make_server):
    # 1,000 messages or more (IMAP_SORT_STORED_MIN): the order is also kept
    # in the store (sort_orders), and the first SORT after a restart reads
    # it instead of every message's keys
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    big_box(srv, c, "big", 1200, 41)
    small = corpus(50, 42)
    fill(c, "small", small)
    assert c.cmd("SELECT big").ok
    want = {crit: same_as_uncached(c, crit) for crit in ("SUBJECT", "REVERSE DATE", "FROM SIZE")}
    assert c.cmd("SELECT small").ok
    same_as_uncached(c, "SUBJECT")  # under the minimum: not stored
    assert wait_rows(srv, 3) == [(1200, 1200)] * 3
    c.close()
    srv.restart()
    at = len(srv.log())
    c = srv.imap_login()
    assert c.cmd("SELECT big").ok
    for crit, order in want.items():
        assert sort(c, crit) == order
        assert same_as_uncached(c, crit) == order
    log = srv.log()[at:]
    assert log.count("sort: a stored order of 1200 messages (no read)") == 3, log
    assert "sort: order of" not in log  # nothing sorted again
    # new mail: the stored order is older than the view; sorted again, and
    # the newer order replaces the row
    for date, m in corpus(30, 43):
        assert append(c, "big", m, "", date).ok
    assert c.cmd("NOOP").ok
    same_as_uncached(c, "SUBJECT")
    end = time.monotonic() + 15
    while (1230, 1230) not in stored(srv):
        assert time.monotonic() < end, stored(srv)
        time.sleep(0.05)
    assert len(stored(srv)) == 3
    # expunged, then a restart: the stored order has them, the answers not
    assert c.cmd("STORE 1:100 +FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("EXPUNGE").ok
    c.close()
    srv.restart()
    c = srv.imap_login()
    assert c.cmd("SELECT big").ok
    at = len(srv.log())
    assert len(same_as_uncached(c, "SUBJECT")) == 1130
    assert "sort: a stored order of 1230 messages" in srv.log()[at:]
    # the mailbox deleted: its orders go
    assert c.cmd("SELECT small").ok
    assert c.cmd("DELETE big").ok
    assert stored(srv) == []
    c.close()


def test_stored_orders_bounded_and_checked(make_server):
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    big_box(srv, c, "big", 1000, 44)
    lists = ["SUBJECT", "DATE", "FROM", "TO", "CC", "SIZE", "ARRIVAL", "DISPLAYFROM",
             "DISPLAYTO", "REVERSE SUBJECT", "SUBJECT DATE"]
    for crit in lists:
        sort(c, crit)
    # at most 8 per mailbox: the most recently made stay
    rows = wait_rows(srv, 8)
    assert len(rows) == 8
    db = srv.db()
    try:
        crits = db.execute("SELECT crit FROM sort_orders").fetchall()
    finally:
        db.close()
    assert len(crits) == 8
    # a damaged row is left unused (logged); the answer is the uncached one
    c.close()
    srv.stop()
    srv.db_exec("UPDATE sort_orders SET uids = x'0102030405'")
    srv.start()
    c = srv.imap_login()
    assert c.cmd("SELECT big").ok
    at = len(srv.log())
    same_as_uncached(c, "SUBJECT DATE")
    log = srv.log()[at:]
    assert "damaged sort order" in log and "sort: a stored order" not in log, log
    c.close()
    # none kept at all with imap_sort_cache_size = 0
    srv2 = make_server(imap_sort_cache_size="0")
    d = srv2.imap_login()
    big_box(srv2, d, "big", 1000, 45)
    same_as_uncached(d, "SUBJECT")
    time.sleep(0.3)
    assert stored(srv2) == []
    d.close()


def test_narrow_sorts_sort_their_matches_only(make_server):
    # a set at the top that leaves out most of the view: no order is made
    # (that would sort every message); the answers are the uncached ones
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    fill(c, "box", corpus(200, 51))
    at = len(srv.log())
    for prog in ("1:50", "UID 190:*", "150:*", "NOT DELETED 1:20,30:40"):
        same_as_uncached(c, "SUBJECT", prog)
    assert kept_used(srv, at) == (0, 0, 0), srv.log()[at:]
    # half or more of the view: made and kept
    same_as_uncached(c, "SUBJECT", "1:150")
    assert kept_used(srv, at)[0] == 1
    same_as_uncached(c, "SUBJECT", "UID 1:10")  # uses it
    c.close()


def merged(srv, since):
    return re.findall(r"sort: (\d+) new messages merged into a kept order", srv.log()[since:])


def test_new_mail_is_merged_into_kept_orders(make_server):
    """A kept order older than the view gets the new messages by binary
    search (imap/sortmerge.c) instead of a sort of every message: for every
    list of criteria, with ties between old and new messages, probes that
    land on expunged messages (runs of them), new messages expunged again,
    the answer equals the uncached path's. Too many new messages are sorted
    with the rest; the merged order is kept, and stored from 1,000 on."""
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    msgs = corpus(420, 77)
    fill(c, "box", msgs[:300])
    d = srv.imap_login()
    assert d.cmd("SELECT box").ok
    for crit in CRITERIA:
        same_as_uncached(c, crit)
    # runs of expunged messages across the order, some new mail (copies of
    # old messages too: equal keys, so ties by sequence number)
    assert d.cmd("STORE 20:90,150,200:260 +FLAGS.SILENT (\\Deleted)").ok
    assert d.cmd("EXPUNGE").ok
    batch = msgs[300:330] + msgs[:5]
    for date, m in batch:
        assert append(d, "box", m, "", date).ok
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    for crit in CRITERIA:
        assert len(same_as_uncached(c, crit)) == 300 - 71 - 1 - 61 + len(batch), crit
    assert merged(srv, at) == [str(len(batch))] * len(CRITERIA), srv.log()[at:][-3000:]
    # again, with one of the new ones expunged before the next batch
    assert d.cmd("UID STORE %d +FLAGS.SILENT (\\Deleted)" % (300 + 3)).ok
    assert d.cmd("EXPUNGE").ok
    for date, m in msgs[330:340]:
        assert append(d, "box", m, "", date).ok
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    for crit in ("SUBJECT", "REVERSE DATE", "FROM REVERSE SUBJECT", "SIZE"):
        same_as_uncached(c, crit)
        assert sort(c, crit, "UID 1:*") == sort(c, crit, "UID 1:* " + SLOW)
    assert merged(srv, at) == ["10"] * 4
    # more new messages than a merge takes (64 here): every message sorted
    for date, m in msgs[340:420]:
        assert append(d, "box", m, "", date).ok
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    same_as_uncached(c, "SUBJECT")
    assert merged(srv, at) == [] and kept_used(srv, at)[0] == 1
    c.close()
    d.close()


def test_merged_orders_are_stored(make_server):
    srv = make_server(log_level="debug")
    c = srv.imap_login()
    big_box(srv, c, "big", 1100, 78)
    same_as_uncached(c, "SUBJECT")
    rows = wait_rows(srv, 1)
    assert rows[0][1] == 1100
    for date, m in corpus(5, 79):
        assert append(c, "big", m, "", date).ok
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    same_as_uncached(c, "SUBJECT")
    assert merged(srv, at) == ["5"]
    end = time.monotonic() + 15
    while stored(srv)[0][1] != 1105:
        assert time.monotonic() < end, stored(srv)
        time.sleep(0.05)
    c.close()
    # a new process starts from the stored, merged order
    srv.stop()
    srv.start()
    c = srv.imap_login()
    assert c.cmd("SELECT big").ok
    at = len(srv.log())
    a = same_as_uncached(c, "SUBJECT")
    assert len(a) == 1105 and "sort: a stored order" in srv.log()[at:]
    c.close()


def merged_stored(srv, since):
    return re.findall(r"sort: (\d+) new messages merged into a stored order", srv.log()[since:])


def test_new_mail_is_merged_into_stored_orders(make_server):
    """A stored order older than the view (a new process, or one evicted
    from the memory a process keeps) gets the new messages merged in as a
    kept one does, instead of a sort of every message; the merged order is
    answered, kept and stored again. More new messages than a merge takes
    are sorted with the rest. The memory here holds one order at a time."""
    srv = make_server(log_level="debug", imap_sort_cache_size="6k")
    c = srv.imap_login()
    big_box(srv, c, "big", 1100, 81)
    lists = ["SUBJECT DATE", "FROM REVERSE SUBJECT", "TO", "REVERSE DATE", "ARRIVAL",
             "REVERSE SIZE", "DISPLAYFROM", "CC REVERSE ARRIVAL"]  # 8: all stored
    for crit in lists:
        sort(c, crit)
    assert wait_rows(srv, 8) == [(1100, 1100)] * 8
    c.close()
    # a new process: runs of old messages expunged, new mail (copies of old
    # messages too: equal keys, ties by sequence number)
    srv.restart()
    c = srv.imap_login()
    assert c.cmd("SELECT big").ok
    assert c.cmd("STORE 20:90,150,200:260 +FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("EXPUNGE").ok
    batch = corpus(30, 82) + corpus(1100, 81)[:5]
    for date, m in batch:
        assert append(c, "big", m, "", date).ok
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    for crit in lists:
        assert len(same_as_uncached(c, crit)) == 1100 - 133 + len(batch), crit
    log = srv.log()[at:]
    assert merged_stored(srv, at) == [str(len(batch))] * len(lists), log[-3000:]
    assert kept_used(srv, at)[0] == 0 and merged(srv, at) == [], log[-3000:]
    # stored again (with the expunged UIDs, which the answers skip)
    end = time.monotonic() + 15
    while stored(srv) != [(1135, 1135)] * 8:
        assert time.monotonic() < end, stored(srv)
        time.sleep(0.05)
    # evicted from memory (only the last list is kept): the stored order is
    # merged; that one, kept now, takes the next new mail from memory
    for date, m in corpus(3, 83):
        assert append(c, "big", m, "", date).ok
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    same_as_uncached(c, lists[0])
    assert merged_stored(srv, at) == ["3"] and merged(srv, at) == []
    for date, m in corpus(2, 85):
        assert append(c, "big", m, "", date).ok
    assert c.cmd("NOOP").ok
    at = len(srv.log())
    want = same_as_uncached(c, lists[0])
    assert merged_stored(srv, at) == [] and merged(srv, at) == ["2"]
    end = time.monotonic() + 15
    while stored(srv).count((1140, 1140)) != 1:
        assert time.monotonic() < end, stored(srv)
        time.sleep(0.05)
    c.close()
    # a new process takes the merged, stored order as it is
    srv.restart()
    c = srv.imap_login()
    assert c.cmd("SELECT big").ok
    at = len(srv.log())
    assert same_as_uncached(c, lists[0]) == want
    log = srv.log()[at:]
    assert "sort: a stored order of 1140 messages (no read)" in log, log[-3000:]
    assert kept_used(srv, at)[0] == 0 and merged_stored(srv, at) == []
    # more new messages than a merge takes (64 for ~1,000): every message
    # sorted, and that order (of the view's messages only) stored
    for date, m in corpus(70, 84):
        assert append(c, "big", m, "", date).ok
    c.close()
    srv.restart()
    c = srv.imap_login()
    assert c.cmd("SELECT big").ok
    at = len(srv.log())
    assert len(same_as_uncached(c, lists[1])) == 1140 - 133 + 70
    assert merged_stored(srv, at) == [] and merged(srv, at) == []
    assert kept_used(srv, at)[0] == 1
    end = time.monotonic() + 15
    while (1210, 1140 - 133 + 70) not in stored(srv):
        assert time.monotonic() < end, stored(srv)
        time.sleep(0.05)
    c.close()
