"""Review of the THREAD narrow rows (schema 14, sort_keys.thread), the bulk
pool and the kept SORT orders' per-mailbox counter: THREAD answers with the
rows equal the cache path's (thread NULL, and no cache at all) on random
corpora (missing and duplicate Message-IDs, References loops, empty
subjects, identical dates: ties by sequence number, expunged messages,
criteria, UID THREAD, 2,500 messages, a delivery meanwhile); a v13 database
upgrades; damaged rows of every shape never crash (run it on the SAN build);
FETCH of 500 / 501 messages; kept orders of several mailboxes; SIGTERM with
bulk jobs in flight."""
import random
import time

from conftest import ClosedError, imap_append
from test_imap_fts import multiappend
from test_imap_thread import thread
from waits import wait_until

USER = "alice@example.test"

SUBJECTS = [None, "", "   ", "x", "Re: x", "RE: re: x", "Fwd: x", "x (fwd)", "[list] Re: x",
            "y", "Re: y", "[y]", "Re:", "z"]
DATES = [None, "Wed, 02 Dec 2026 10:00:00 +0000", "Wed, 02 Dec 2026 11:00:00 +0100",
         "Wed, 02 Dec 2026 10:05:00 +0000", "junk date"]
IDATES = ["01-Dec-2026 10:00:00 +0000", "01-Dec-2026 10:00:00 +0000",
          "02-Dec-2026 10:00:00 +0000"]


def rand_msg(rnd, k, ids):
    h = []
    mid = None
    if rnd.random() < 0.85:
        mid = rnd.choice(ids) if rnd.random() < 0.2 else "<m%d@x>" % k
        h.append("Message-ID: " + mid)
    pick = rnd.random()
    if pick < 0.5:
        refs = [rnd.choice(ids) for _ in range(rnd.randint(1, 5))]
        if rnd.random() < 0.1 and mid:
            refs.append(mid)  # itself
        h.append("References: " + " ".join(refs))
    elif pick < 0.7:
        h.append("In-Reply-To: " + rnd.choice(ids))
    elif pick < 0.75:
        h.append("References: junk (no ids)")
    s = rnd.choice(SUBJECTS)
    if s is not None:
        h.append("Subject: " + s)
    d = rnd.choice(DATES)
    if d is not None:
        h.append("Date: " + d)
    h.append("From: a@example.test")
    return ("\r\n".join(h) + "\r\n\r\nzzbody %d\r\n" % k).encode(), rnd.choice(IDATES)


def load_corpus(c, box, n, seed, chain=0):
    rnd = random.Random(seed)
    ids = ["<m%d@x>" % rnd.randrange(n + 5) for _ in range(max(4, n // 3))]
    assert c.cmd('CREATE "%s"' % box).ok
    for k in range(n):
        data, idate = rand_msg(rnd, k, ids)
        assert imap_append(c, box, data, flags='"%s"' % idate).ok
    # a long chain, each referring to all before (the last 256 kept)
    prev = []
    for k in range(chain):
        refs = " ".join(prev[-300:])
        h = "Message-ID: <c%d@x>\r\n%sSubject: chain\r\nFrom: a@example.test\r\n\r\nzzbody\r\n" % (
            k, ("References: %s\r\n" % refs) if refs else "")
        prev.append("<c%d@x>" % k)
        assert imap_append(c, box, h.encode()).ok
    assert c.cmd('SELECT "%s"' % box).ok
    total = n + chain
    for k in range(1, total + 1, 7):
        assert c.cmd("STORE %d +FLAGS.SILENT (\\Seen)" % k).ok
    for k in range(3, total + 1, 11):
        assert c.cmd("STORE %d +FLAGS.SILENT (\\Deleted)" % k).ok
    assert c.cmd("EXPUNGE").ok


QUERIES = ["%s%s %s UTF-8 %s" % (u, "THREAD", alg, crit)
           for u in ("", "UID ")
           for alg in ("REFERENCES", "ORDEREDSUBJECT")
           for crit in ("ALL", "SEEN", "UNSEEN", "3:20", "NOT 5:9", "OR SEEN 1:4", "UID 1:30",
                        "LARGER 120", "NOT DELETED")]


def rows_filled(s, box=None):
    """No body of a mailbox lacks its thread keys (rows of bodies in no
    mailbox are not read, so not filled)."""
    db = s.db()
    try:
        return db.execute("SELECT count(*) FROM sort_keys k JOIN mailbox_messages mm"
                          " ON mm.message_id = k.message_id JOIN mailboxes b ON b.id = mm.mailbox_id"
                          " WHERE k.thread IS NULL AND (?1 IS NULL OR b.name = ?1)",
                          (box,)).fetchone()[0] == 0
    finally:
        db.close()


def wait_filled(s, box=None):
    wait_until(lambda: rows_filled(s, box), 15, "thread rows filled again")


def test_rows_vs_cache_random_corpora(make_server):
    s = make_server("rev18thr", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    boxes = [("r%d" % seed, n, seed, chain) for seed, n, chain in
             ((1, 40, 0), (2, 90, 0), (3, 150, 0), (4, 60, 300))]
    for box, n, seed, chain in boxes:
        load_corpus(c, box, n, seed, chain)
    for box, *_ in boxes:
        assert c.cmd('SELECT "%s"' % box).ok
        thread(c, "THREAD REFERENCES UTF-8 ALL")  # fills the rows the last box's test emptied
        wait_filled(s, box)
        want = {q: thread(c, q) for q in QUERIES}
        # BODY reads each message (needs_blob: the cache path): every
        # message has the word, so it answers as ALL
        for alg in ("REFERENCES", "ORDEREDSUBJECT"):
            assert thread(c, "THREAD %s UTF-8 BODY zzbody" % alg) == want[
                "THREAD %s UTF-8 ALL" % alg], (box, alg)
        for q in QUERIES:
            # the cache path: rows of before step 14
            wait_filled(s, box)
            s.db_exec("UPDATE sort_keys SET thread = NULL")
            assert thread(c, q) == want[q], (box, q, "thread NULL")
        wait_filled(s, box)
        for q in QUERIES[:4]:
            assert thread(c, q) == want[q], (box, q, "filled again")
        # no cache at all: built from the message files
        s.db_exec("UPDATE sort_keys SET thread = NULL", "UPDATE messages SET cache = NULL")
        for q in QUERIES[:2]:
            assert thread(c, q) == want[q], (box, q, "no cache")
    c.close()


DAMAGED = [
    b"",                                        # empty (not NULL)
    b"\x00",                                    # truncated header
    b"\x00" * 12,                               # no strings
    b"\x08" + b"\x00" * 12 + b"s\x00",          # unknown flag
    b"\x02" + b"\x00" * 8 + b"\x00\x00\x00\x00" + b"s\x00",   # THI_MSGID without the id
    b"\x00" + b"\x00" * 8 + b"\xff\xff\xff\xff" + b"s\x00",   # huge n_refs
    b"\x00" + b"\x00" * 8 + b"\x00\x01\x00\x00" + b"s\x00" + b"r\x00" * 3,  # 256 refs, 3 there
    b"\x00" + b"\x00" * 8 + b"\x01\x00\x00\x00" + b"s\x00r",  # unterminated
    b"\x00" + b"\x00" * 8 + b"\x00\x00\x00\x00" + b"s\x00extra\x00",  # trailing string
    b"\x01" + b"\xff" * 8 + b"\x00\x00\x00\x00" + b"s\x00",   # date -1
    b"\x01" + b"\x00" * 7 + b"\x80" + b"\x00\x00\x00\x00" + b"\x00",  # INT64_MIN date
    b"\x07" + b"\xff" * 7 + b"\x7f" + b"\x01\x00\x00\x00" + b"\x00<a@x>\x00<a@x>\x00",  # max date
]


def test_damaged_rows_never_crash(make_server):
    s = make_server("rev18dmg", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    load_corpus(c, "d", 30, 7)
    db = s.db()
    mids = [r[0] for r in db.execute(
        "SELECT mm.message_id FROM mailbox_messages mm ORDER BY mm.uid").fetchall()]
    db.close()
    want = thread(c, "THREAD REFERENCES UTF-8 ALL")
    for k, blob in enumerate(DAMAGED):
        wait_filled(s)
        s.db_exec("UPDATE sort_keys SET thread = x'%s' WHERE message_id IN (%d, %d)" % (
            blob.hex(), mids[k % len(mids)], mids[(k * 7 + 3) % len(mids)]))
        for q in ("THREAD REFERENCES UTF-8 ALL", "UID THREAD ORDEREDSUBJECT UTF-8 ALL"):
            try:
                r = c.cmd(q)
            except ClosedError:
                raise AssertionError("daemon gone on damaged row %d %r (status %r)" % (
                    k, blob, s.proc.poll()))
            assert r.ok, (k, blob, r)
            assert len([u for u in r.untagged if u.startswith("* THREAD")]) == 1, (k, r)
    # an empty row (x'', not NULL: no pointer from SQLite) reads as a
    # missing one: the cache's fields, the same answer, and the row is
    # written again
    s.db_exec("UPDATE sort_keys SET thread = x''")
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == want
    deadline = time.monotonic() + 15
    while True:
        db = s.db()
        empty = db.execute("SELECT count(*) FROM sort_keys k JOIN mailbox_messages mm"
                           " ON mm.message_id = k.message_id WHERE length(k.thread) = 0").fetchone()[0]
        db.close()
        if empty == 0:
            break
        assert time.monotonic() < deadline, "%d empty rows not written again" % empty
        time.sleep(0.05)
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == want
    c.close()


def test_empty_sort_keys_row(make_server):
    """SORT's keys row empty (x''): as a missing row, not a crash."""
    s = make_server("rev18dmgs", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    load_corpus(c, "d", 30, 8)
    r = c.cmd("SEARCH ALL")
    assert r.ok, r
    s.db_exec("UPDATE sort_keys SET keys = x''")
    # a criterion not sorted before (no kept order answers it)
    try:
        r2 = c.cmd("SORT (REVERSE SUBJECT) UTF-8 ALL")
    except ClosedError:
        raise AssertionError("daemon gone on an empty sort keys row")
    assert r2.ok, r2
    assert sorted(r2.untagged[0].split()[2:], key=int) == r.untagged[0].split()[2:], (r, r2)
    c.close()


def test_v13_database_upgrades(make_server):
    """A v13 database (no sort_keys.thread; some caches old or missing,
    bodies shared by COPY): step 14 runs, THREAD answers as the cache path,
    and fills the rows."""
    s = make_server("rev18v13", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    load_corpus(c, "u", 80, 11)
    assert c.cmd('CREATE "u2"').ok
    assert c.cmd('COPY 1:30 "u2"').ok
    assert c.cmd('MOVE 31:40 "u2"').ok
    want = {}
    for box in ("u", "u2"):
        assert c.cmd('SELECT "%s"' % box).ok
        want[box] = {q: thread(c, q) for q in QUERIES[:6]}
    c.close()
    s.stop()
    with s.db_rw() as db:
        db.execute("ALTER TABLE sort_keys DROP COLUMN thread")
        rows = db.execute("SELECT id, cache FROM messages WHERE cache IS NOT NULL ORDER BY id")
        for k, (mid, cache) in enumerate(rows.fetchall()):
            if k % 3 == 0:
                db.execute("UPDATE messages SET cache = NULL WHERE id = ?", (mid,))
                db.execute("DELETE FROM sort_keys WHERE message_id = ?", (mid,))
            elif k % 3 == 1:
                db.execute("UPDATE messages SET cache = ? WHERE id = ?",
                           (b"PMC\x01" + bytes(cache[4:]), mid))
                db.execute("DELETE FROM sort_keys WHERE message_id = ?", (mid,))
        db.execute("PRAGMA user_version = 13")
    s.start()
    c = s.imap_login(USER)
    for box in ("u", "u2"):
        assert c.cmd('SELECT "%s"' % box).ok
        for q, a in want[box].items():
            assert thread(c, q) == a, (box, q)
    wait_filled(s)
    db = s.db()
    assert db.execute("PRAGMA user_version").fetchone()[0] == 14
    n = db.execute("SELECT count(*) FROM mailbox_messages mm LEFT JOIN sort_keys k"
                   " ON k.message_id = mm.message_id WHERE k.thread IS NULL").fetchone()[0]
    db.close()
    assert n == 0
    for box in ("u", "u2"):
        assert c.cmd('SELECT "%s"' % box).ok
        for q, a in want[box].items():
            assert thread(c, q) == a, (box, q, "rows")
    c.close()


def big(s, box, n):
    c = s.imap_login(USER)
    assert c.cmd('CREATE "%s"' % box).ok
    msgs = [("Message-ID: <b%d@x>\r\n%sSubject: s%d\r\nFrom: a@example.test\r\n"
             "Date: Wed, 02 Dec 2026 10:%02d:00 +0000\r\n\r\nbody %d\r\n" % (
                 k, ("References: <b%d@x>\r\n" % (k // 3)) if k % 3 else "", k % 97, k % 60,
                 k)).encode() for k in range(n)]
    for i in range(0, n, 500):
        multiappend(c, box, msgs[i:i + 500])
    assert c.cmd('SELECT "%s"' % box).ok
    return c


def test_fetch_500_and_501(make_server):
    s = make_server("rev18fetch", imap_auth_plaintext_loopback="yes")
    c = big(s, "f", 1001)
    for lo, hi in ((1, 500), (1, 501), (2, 502), (1, 1001), (500, 500)):
        r = c.cmd("FETCH %d:%d (UID FLAGS)" % (lo, hi))
        assert r.ok, r
        got = [int(u.split()[1]) for u in r.untagged if " FETCH " in u]
        assert got == list(range(lo, hi + 1)), (lo, hi, len(got))
        r = c.cmd("UID FETCH %d:%d (RFC822.SIZE)" % (lo, hi))
        assert r.ok and len([u for u in r.untagged if " FETCH " in u]) == hi - lo + 1
    # bodies streamed in chunks (a 3 MB one among them) on the bulk pool
    large = b"Subject: large\r\nFrom: a@example.test\r\n\r\n" + b"".join(
        b"line %07d of the large message\r\n" % i for i in range(90000))
    assert imap_append(c, "f", large).ok
    assert c.cmd("NOOP").ok
    tag = c.next_tag()
    c.send(("%s FETCH 500:1002 (BODY.PEEK[])\r\n" % tag).encode())
    untagged, done = c.read_response_raw(tag)
    assert done.split()[1] == "OK", done
    bodies = [lits[0] for text, lits in untagged if b" FETCH " in text]
    assert len(bodies) == 503 and bodies[-1] == large, len(bodies)
    assert all(b.startswith(b"Message-ID: <b%d@x>" % (k + 499)) for k, b in enumerate(bodies[:-1]))


def test_sort_orders_of_several_mailboxes(make_server):
    """The kept orders' written counter per mailbox: the 8 most recently
    written orders of each mailbox stay, whatever the other mailboxes do."""
    s = make_server("rev18ord", imap_auth_plaintext_loopback="yes")
    crits = ["SUBJECT", "DATE", "SIZE", "FROM", "ARRIVAL", "TO", "CC", "REVERSE SUBJECT",
             "REVERSE DATE", "REVERSE SIZE", "REVERSE FROM", "SUBJECT DATE"]
    a = big(s, "oa", 1000)
    b = big(s, "ob", 1000)
    # interleaved: a gets all 12, b gets the first 4 then (later) 5 more
    for k, cr in enumerate(crits):
        assert a.cmd("SORT (%s) UTF-8 ALL" % cr).ok
        if k < 4:
            assert b.cmd("SORT (%s) UTF-8 ALL" % cr).ok
    for cr in crits[4:9]:
        assert b.cmd("SORT (%s) UTF-8 ALL" % cr).ok
    deadline = time.monotonic() + 10
    while True:
        db = s.db()
        per = dict(db.execute("SELECT b.name, count(*) FROM sort_orders o JOIN mailboxes b"
                              " ON b.id = o.mailbox_id GROUP BY b.name").fetchall())
        rows = db.execute("SELECT b.name, o.written FROM sort_orders o JOIN mailboxes b"
                          " ON b.id = o.mailbox_id ORDER BY b.name, o.written").fetchall()
        db.close()
        # every save landed: 8 rows each and the last write of each (the
        # counts reach 8 one save before b's last one lands)
        top = {}
        for n, w in rows:
            top[n] = max(top.get(n, 0), w)
        if per.get("oa") == 8 and per.get("ob") == 8 and top == {"oa": 12, "ob": 9}:
            break
        assert time.monotonic() < deadline, (per, rows)
        time.sleep(0.1)
    # the most recent ones stay: the first of each is out, the last in
    # (a sort of a kept criterion is answered from the cache, so the
    # store sees each criterion once)
    wa = [w for n, w in rows if n == "oa"]
    wb = [w for n, w in rows if n == "ob"]
    assert wa == sorted(set(wa)) and wb == sorted(set(wb)), rows
    assert max(wa) == 12 and max(wb) == 9, rows


def test_sigterm_with_bulk_jobs_in_flight(make_server):
    s = make_server("rev18term", imap_auth_plaintext_loopback="yes")
    c = big(s, "t", 4000)
    c.close()
    for rnd in range(3):
        sessions = []
        for k in range(4):
            o = s.imap_login(USER)
            assert o.cmd('SELECT "t"').ok
            o.send(b"a1 THREAD REFERENCES UTF-8 ALL\r\nb1 SORT (SUBJECT) UTF-8 ALL\r\n"
                   b"c1 SEARCH BODY nothere\r\nd1 FETCH 1:* (ENVELOPE)\r\n"
                   b"e1 THREAD ORDEREDSUBJECT UTF-8 BODY body\r\n")
            sessions.append(o)
        time.sleep(0.05 * rnd)
        s.stop()
        for o in sessions:
            try:
                o.close()
            except Exception:
                pass
        s.start()
    c = s.imap_login(USER)
    assert c.cmd('SELECT "t"').ok
    assert thread(c, "THREAD REFERENCES UTF-8 ALL").startswith("* THREAD (")
    c.close()


def test_many_slices_and_a_delivery_meanwhile(make_server):
    """2,500 messages: the rows path reads 2 slices, the cache path 3; both
    answer alike. A message appended by another session while THREADs run
    is in the answer or not, never half (the answer is one of the two)."""
    s = make_server("rev18slices", imap_auth_plaintext_loopback="yes")
    c = big(s, "s", 2500)
    wait_filled(s, "s")
    want = {q: thread(c, q) for q in QUERIES[:4] + ["UID THREAD REFERENCES UTF-8 ALL",
                                                  "UID THREAD REFERENCES UTF-8 1000:2100"]}
    s.db_exec("UPDATE sort_keys SET thread = NULL")
    for q, a in want.items():
        assert thread(c, q) == a, q
        wait_filled(s, "s")
        s.db_exec("UPDATE sort_keys SET thread = NULL")
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == want["THREAD REFERENCES UTF-8 ALL"]
    wait_filled(s, "s")
    w = s.imap_login(USER)
    extra = b"Message-ID: <new@x>\r\nReferences: <b7@x>\r\nSubject: s7\r\nFrom: a@example.test\r\n" \
            b"Date: Wed, 02 Dec 2026 10:07:00 +0000\r\n\r\nnew\r\n"
    c.send(b"".join(b"t%d UID THREAD REFERENCES UTF-8 ALL\r\n" % i for i in range(4)))
    assert imap_append(w, "s", extra).ok
    answers = []
    for i in range(4):
        r = c.read_response("t%d" % i)
        assert r.ok, r
        answers.append([u for u in r.untagged if u.startswith("* THREAD")][0])
    before = want["UID THREAD REFERENCES UTF-8 ALL"]
    assert c.cmd("NOOP").ok
    after = thread(c, "UID THREAD REFERENCES UTF-8 ALL")
    assert after != before and "2501" in after
    for a in answers:
        assert a in (before, after), a[:300]
    w.close()
    c.close()


def test_a_response_of_many_steps(make_server):
    """A THREAD response of ~100 KB (several THREAD_OUT_STEPs, sent from an
    offset), read slowly: exactly the threads, in date order; the same
    from the cache path."""
    s = make_server("rev18big", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    assert c.cmd('CREATE "g"').ok
    n = 15000
    # dates descending with k, so the order is the reverse of arrival
    msgs = [("Message-ID: <g%d@x>\r\nSubject: g%d\r\nFrom: a@example.test\r\n"
             "Date: %s\r\n\r\nx\r\n" % (k, k, time.strftime(
                 "%a, %d %b %Y %H:%M:%S +0000", time.gmtime(1800000000 - 60 * k)))).encode()
            for k in range(n)]
    for i in range(0, n, 1000):
        multiappend(c, "g", msgs[i:i + 1000])
    assert c.cmd('SELECT "g"').ok
    want = "* THREAD " + "".join("(%d)" % k for k in range(n, 0, -1))
    assert len(want) > 65536
    for rnd in range(2):
        tag = c.next_tag()
        c.send(("%s THREAD REFERENCES UTF-8 ALL\r\n" % tag).encode())
        time.sleep(1.0)  # the server waits on a full socket meanwhile
        r = c.read_response(tag)
        assert r.ok, r
        got = [u for u in r.untagged if u.startswith("* THREAD")]
        assert got == [want], (rnd, [g[:100] for g in got])
        s.db_exec("UPDATE sort_keys SET thread = NULL")
    c.close()


def test_ties_and_dummies_by_hand(make_server):
    """RFC 5256 4 (4)-(6) by hand: siblings by sent date, equal dates by
    sequence number; a dummy sorts as its first child once its children
    are sorted; a dummy of one child at the top is replaced by it. The same
    from the rows and from the cache path."""
    s = make_server("rev18ties", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    D, LATER = "Wed, 02 Dec 2026 10:00:00 +0000", "Wed, 02 Dec 2026 11:00:00 +0000"

    def m(k, refs=None, date=D, mid=True):
        return (("Message-ID: <p%d@x>\r\n" % k if mid else "") +
                ("References: %s\r\n" % refs if refs else "") +
                "Subject: s%d\r\nFrom: a@example.test\r\nDate: %s\r\n\r\nx\r\n" % (k, date)).encode()

    cases = {
        "same": ([m(1, "<gone1@x>"), m(2), m(3, "<gone1@x>"), m(4, "<gone2@x>"), m(5, mid=False)],
                 "* THREAD ((1)(3))(2)(4)(5)"),
        "later": ([m(1, "<gone1@x>", LATER), m(2), m(3, "<gone1@x>"), m(4, "<gone2@x>"),
                   m(5, mid=False)],
                  "* THREAD (2)((3)(1))(4)(5)"),
    }
    for box, (msgs, want) in cases.items():
        assert c.cmd('CREATE "%s"' % box).ok
        for data in msgs:
            assert imap_append(c, box, data).ok
        assert c.cmd('SELECT "%s"' % box).ok
        assert thread(c, "THREAD REFERENCES UTF-8 ALL") == want, box
        s.db_exec("UPDATE sort_keys SET thread = NULL")
        assert thread(c, "THREAD REFERENCES UTF-8 ALL") == want, (box, "cache path")
    c.close()
