"""SENTBEFORE, SENTON, SENTSINCE (RFC 3501 6.4.4, RFC 9051 6.4.4: the date of
the Date: header "disregarding time and timezone", i.e. the day as written in
the header's own zone) answered from each body's sort keys (mime/sortinfo.h,
MSI_SENT) rather than from its file.

The days expected are computed here, independently: from the date as it is
written in the header (with RFC 5322 4.3's two- and three-digit years); a
message without a readable Date: is dated 1970-01-01 (as Dovecot). Each
answer is compared with them and with the same search made to read the
files (NOT BODY of a word no message has: the scan reads every message).
Old keys (made before the day was kept) and bodies without keys fall back
to the file and get keys with the day; a search of SENT* keys alone reads no
file at all (the files moved away, the answers stay). All through imaplib."""
import datetime
import os
import random
import re
import shutil
import struct
import time

from waits import wait_until

EPOCH = datetime.date(1970, 1, 1)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
# written zones: numeric far from UTC, obsolete names (RFC 5322 4.3; the
# military ones count as -0000), none at all
ZONES = ["+1400", "-1200", "-1100", "+0000", "-0000", "+0530", "-0930", "+1245", "EST", "EDT",
         "CST", "PDT", "GMT", "UT", "Z", "A", "M", "N", "Y", "", "+0100 (CET)"]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
# days the corpus crowds around, so that searches fall on boundaries
PIVOTS = [datetime.date(2026, 12, 2), datetime.date(2000, 2, 29), datetime.date(1999, 12, 31),
          datetime.date(2049, 6, 1), datetime.date(1950, 1, 1), datetime.date(2001, 3, 3)]
NOWHERE = 'NOT BODY "qqqnotinanymessageqqq"'  # reads every message's file


def written(d, hh, mm, zone, rnd):
    """A Date: value for day d at hh:mm, written in several styles."""
    year = str(d.year)
    style = rnd.randrange(4)
    if style == 1 and (1950 <= d.year <= 2049):
        year = "%02d" % (d.year % 100)  # RFC 5322 4.3: 2-digit years
    elif style == 2 and 1900 <= d.year <= 2899:
        year = "%03d" % (d.year - 1900)  # 3-digit: + 1900
    s = "%d %s %s %02d:%02d" % (d.day, MONTHS[d.month - 1], year, hh, mm)
    if rnd.random() < 0.7:
        s += ":%02d" % rnd.randrange(60)
    if rnd.random() < 0.6:
        s = "%s, %s" % (WEEKDAYS[d.weekday()], s)
    if zone:
        s += " " + zone
    return s


def corpus(n, seed):
    """[(message bytes, expected day as a date)]"""
    rnd = random.Random(seed)
    out = []
    fixed = [
        # late on day D far west: day D, though UTC is D+1
        ("Date: Wed, 2 Dec 2026 23:30:00 -1100", datetime.date(2026, 12, 2)),
        ("Date: Thu, 3 Dec 2026 00:30:00 +1400", datetime.date(2026, 12, 3)),
        ("Date: Tue, 1 Dec 2026 23:59:59 -1200", datetime.date(2026, 12, 1)),
        ("Date: 2 Dec 26 23:00 EST", datetime.date(2026, 12, 2)),
        ("Date: 1 Jan 99 00:00 GMT", datetime.date(1999, 1, 1)),
        ("Date: 31 Dec 49 23:59 Z", datetime.date(2049, 12, 31)),
        ("Date: 1 Jan 50 00:00 A", datetime.date(1950, 1, 1)),
        ("Date: 3 Mar 101 12:00 +0000", datetime.date(2001, 3, 3)),
        ("Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)", datetime.date(1994, 2, 7)),
        ("Date: 31 Dec 1969 23:00:00 +0000", datetime.date(1969, 12, 31)),
        ("Date: 1 Jan 1970 00:00:00 -0100", datetime.date(1970, 1, 1)),
        ("Date: Wed, 2 Dec 2026\r\n 23:30:00 -1100", datetime.date(2026, 12, 2)),  # folded
        ("date: 2 Dec 2026 10:00 +0000", datetime.date(2026, 12, 2)),  # any case
        # the first Date: counts
        ("Date: 5 May 2005 05:05 +0500\r\nDate: 6 Jun 2006 06:06 +0000", datetime.date(2005, 5, 5)),
        # no readable Date: 1970-01-01
        (None, EPOCH),
        ("Date: yesterday", EPOCH),
        ("Date: 32 Jan 2020 00:00 +0000", EPOCH),
        ("Date: 1 Foo 2020 00:00 +0000", EPOCH),
        ("Date:", EPOCH),
        ("Date: 1 Jan 2020 10:00 +99", EPOCH),
    ]
    for i, (hdr, day) in enumerate(fixed):
        h = ["From: f%d@example.test" % i, "Subject: fixed %d" % i]
        if hdr is not None:
            h.append(hdr)
        out.append(("\r\n".join(h) + "\r\n\r\nbody %d\r\n" % i, day))
    # a Date: in the body only is no Date:
    out.append(("Subject: in body\r\n\r\nDate: 2 Dec 2026 10:00 +0000\r\n", EPOCH))
    for i in range(n):
        d = rnd.choice(PIVOTS) + datetime.timedelta(days=rnd.choice([-1, 0, 0, 1]))
        hh = rnd.choice([0, 0, 1, 11, 12, 22, 23, 23])
        zone = rnd.choice(ZONES)
        word = "zebrafish" if i % 3 == 0 else "okapi"
        h = ["From: r%d@example.test" % i, "Subject: %s %d" % ("invoice" if i % 4 == 0 else "note", i),
             "Date: " + written(d, hh, rnd.randrange(60), zone, rnd)]
        rnd.shuffle(h)
        out.append(("\r\n".join(h) + "\r\n\r\n%s text %d\r\n" % (word, i), d))
    return [(m.encode(), d) for m, d in out]


def imap_day(d):
    return "%d-%s-%d" % (d.day, MONTHS[d.month - 1], d.year)


def login(srv):
    from conftest import USERS
    m = srv.imaplib()
    m.login("alice@example.test", USERS["alice@example.test"])
    return m


def fill(m, box, msgs):
    assert m.create(box)[0] == "OK"
    for i, (msg, _) in enumerate(msgs):
        flags = "(\\Flagged)" if i % 5 == 0 else None
        typ, data = m.append(box, flags, '"01-Feb-2021 12:00:00 +0000"', msg)
        assert typ == "OK", data
    typ, data = m.select(box)
    assert typ == "OK", data


def uids(m, *keys):
    typ, data = m.uid("SEARCH", *keys)
    assert typ == "OK", (keys, data)
    return [int(x) for x in data[0].split()] if data and data[0] else []


def expected(msgs, pred):
    return [i + 1 for i, (_, d) in enumerate(msgs) if pred(i, d)]


def boundary_days(msgs):
    days = set()
    for _, d in msgs:
        for k in (-1, 0, 1):
            days.add(d + datetime.timedelta(days=k))
    return sorted(days)


def check_all_days(m, msgs, slow=True):
    """Every SENT* key on every day around the corpus's: the expected days,
    and (slow) the same as a search that reads the files."""
    for d in boundary_days(msgs):
        for key, pred in (("SENTON", lambda i, x: x == d), ("SENTSINCE", lambda i, x: x >= d),
                          ("SENTBEFORE", lambda i, x: x < d)):
            want = expected(msgs, pred)
            got = uids(m, key, imap_day(d))
            assert got == want, (key, d, got, want)
            if slow:
                assert uids(m, key, imap_day(d), NOWHERE) == want, (key, d, "file path")


def test_sent_days_from_keys_equal_the_files(make_server):
    srv = make_server()
    m = login(srv)
    msgs = corpus(160, 1)
    fill(m, "sent", msgs)
    # every body's keys hold the day (flag MSI_SENT = 2)
    assert all(k[0] & 2 for k in keys_rows(srv)), "keys without the sent day"
    check_all_days(m, msgs)
    m.logout()


def test_sent_keys_combined(make_server):
    srv = make_server()
    m = login(srv)
    msgs = corpus(120, 2)
    fill(m, "mix", msgs)
    flagged = lambda i: i % 5 == 0
    # body words: "zebrafish" in every third random message, "okapi" in the others
    zebra = lambda i: b"zebrafish" in msgs[i][0].split(b"\r\n\r\n", 1)[1]
    invoice = lambda i: b"Subject: invoice" in msgs[i][0]
    for d in PIVOTS + [EPOCH, datetime.date(2026, 12, 3)]:
        d1 = d + datetime.timedelta(days=1)
        D, D1 = imap_day(d), imap_day(d1)
        cases = [
            (["OR", "SENTON", D, "SENTON", D1], lambda i, x: x in (d, d1)),
            (["NOT", "SENTBEFORE", D], lambda i, x: x >= d),
            (["NOT", "SENTON", D], lambda i, x: x != d),
            (["SENTSINCE", D, "SENTBEFORE", D1], lambda i, x: x == d),
            (["OR", "SENTSINCE", D1, "FLAGGED"], lambda i, x: x >= d1 or flagged(i)),
            (["SENTON", D, "UNFLAGGED"], lambda i, x: x == d and not flagged(i)),
            (["UID", "10:80", "SENTSINCE", D], lambda i, x: 10 <= i + 1 <= 80 and x >= d),
            (["SINCE", "1-Feb-2021", "SENTBEFORE", D], lambda i, x: x < d),
            # with keys that read the message: the file path
            (["SENTSINCE", D, "BODY", "zebrafish"], lambda i, x: x >= d and zebra(i)),
            (["OR", "SENTON", D, "BODY", "zebrafish"], lambda i, x: x == d or zebra(i)),
            (["NOT", "SENTON", D, "NOT", "BODY", "zebrafish"], lambda i, x: x != d and not zebra(i)),
            (["SUBJECT", "invoice", "SENTSINCE", D], lambda i, x: x >= d and invoice(i)),
            (["OR", "SUBJECT", "invoice", "SENTBEFORE", D], lambda i, x: x < d or invoice(i)),
            (["TEXT", "okapi", "SENTON", D], lambda i, x: x == d and b"okapi" in msgs[i][0]),
        ]
        for keys, pred in cases:
            want = expected(msgs, pred)
            assert uids(m, *keys) == want, (keys, uids(m, *keys), want)
            assert uids(m, *(keys + [NOWHERE])) == want, (keys, "file path")
        # ESEARCH, SORT, THREAD with SENT* keys: as with the files read
        a = esearch(m, "SENTSINCE", D)
        assert a == esearch(m, "SENTSINCE", D, NOWHERE), a
        want = expected(msgs, lambda i, x: x >= d)
        if want:
            assert a == ("MIN %d MAX %d COUNT %d" % (want[0], want[-1], len(want))).encode(), a
        for crit in ("(DATE)", "(REVERSE SUBJECT)", "(ARRIVAL)"):
            typ, a = m.uid("SORT", crit, "UTF-8", "SENTSINCE", D)
            typ2, b = m.uid("SORT", crit, "UTF-8", "SENTSINCE", D, NOWHERE)
            assert typ == typ2 == "OK" and a == b, (crit, a, b)
            assert sorted(int(x) for x in a[0].split()) == expected(msgs, lambda i, x: x >= d)
        typ, a = m.uid("THREAD", "REFERENCES", "UTF-8", "SENTBEFORE", D)
        typ2, b = m.uid("THREAD", "REFERENCES", "UTF-8", "SENTBEFORE", D, NOWHERE)
        assert typ == typ2 == "OK" and a == b, (a, b)
    m.logout()


def esearch(m, *keys):
    """UID SEARCH RETURN (MIN MAX COUNT) keys: the ESEARCH data after UID"""
    m.untagged_responses.pop("ESEARCH", None)
    typ, data = m.uid("SEARCH", "RETURN", "(MIN MAX COUNT)", *keys)
    assert typ == "OK", data
    got = m.untagged_responses.pop("ESEARCH", [b""])
    assert len(got) == 1, got
    return re.sub(rb'^\(TAG "[^"]*"\) UID ?', b"", got[0])


# ---- what the store holds ----------------------------------------------------------

def keys_rows(srv):
    db = srv.db()
    try:
        return [r[0] for r in db.execute("SELECT keys FROM sort_keys")]
    finally:
        db.close()


def make_old(srv, without_rows=""):
    """As a store written before the sent day was kept: every sort section
    (sort_keys rows and the sort section at the end of each MIME cache)
    without MSI_SENT and its 4 octets. without_rows: SQL condition on
    message_id of the rows deleted too (bodies stored before sort_keys)."""
    with srv.db_rw() as db:
        for mid, k in db.execute("SELECT message_id, keys FROM sort_keys").fetchall():
            assert k[0] & 2, "a row without the day already"
            db.execute("UPDATE sort_keys SET keys = ? WHERE message_id = ?",
                       (bytes([k[0] & ~2]) + k[1:-4], mid))
        for mid, c in db.execute("SELECT id, cache FROM messages WHERE cache IS NOT NULL").fetchall():
            c = bytearray(c)
            assert c[:4] == b"PMC\x03", c[:4]
            total, = struct.unpack_from("<I", c, 4)
            so_off, so_len = struct.unpack_from("<II", c, 44)
            assert total == len(c) and so_off + so_len == total and c[so_off] & 2
            c[so_off] &= ~2
            del c[-4:]
            struct.pack_into("<I", c, 4, total - 4)
            struct.pack_into("<I", c, 48, so_len - 4)
            db.execute("UPDATE messages SET cache = ? WHERE id = ?", (bytes(c), mid))
        if without_rows:
            db.execute("DELETE FROM sort_keys WHERE " + without_rows)


class BlobsAway:
    """Every message file moved out of the data directory (and back): a
    search that reads a file misses its message."""

    def __init__(self, srv):
        self.root = os.path.join(srv.data_dir, "blobs")
        self.away = os.path.join(srv.dir, "blobs-away")
        self.moved = []

    def __enter__(self):
        os.makedirs(self.away, exist_ok=True)
        for d in sorted(os.listdir(self.root)):
            for f in sorted(os.listdir(os.path.join(self.root, d))):
                src = os.path.join(self.root, d, f)
                dst = os.path.join(self.away, d + "-" + f)
                os.rename(src, dst)
                self.moved.append((src, dst))
        assert self.moved
        return self

    def __exit__(self, *exc):
        for src, dst in self.moved:
            os.rename(dst, src)
        shutil.rmtree(self.away, ignore_errors=True)


def test_sent_keys_alone_read_no_file(make_server):
    srv = make_server(fts="no")
    m = login(srv)
    msgs = corpus(60, 3)
    fill(m, "nofile", msgs)
    with BlobsAway(srv):
        check_all_days(m, msgs, slow=False)
        d = PIVOTS[0]
        assert uids(m, "OR", "SENTON", imap_day(d), "FLAGGED") == \
            expected(msgs, lambda i, x: x == d or i % 5 == 0)
        # reading the files now misses every message: the search above did not
        assert uids(m, "SENTON", imap_day(d), NOWHERE) == []
    m.logout()


def test_old_keys_read_the_files_then_keep_the_day(make_server):
    srv = make_server(fts="no")
    m = login(srv)
    msgs = corpus(90, 4)
    fill(m, "old", msgs)
    m.logout()
    srv.stop()
    # old keys everywhere; a third of the bodies without any row
    make_old(srv, "message_id % 3 = 0")
    n_rows = len(keys_rows(srv))
    assert 0 < n_rows < len(msgs) and not any(k[0] & 2 for k in keys_rows(srv))
    srv.start()
    m = login(srv)
    assert m.select("old")[0] == "OK"
    # from the files, right
    d = PIVOTS[0]
    assert uids(m, "SENTON", imap_day(d)) == expected(msgs, lambda i, x: x == d)
    # ... and each cache built again and saved: every body has keys with
    # the day now
    wait_until(lambda: len(keys_rows(srv)) == len(msgs) and all(k[0] & 2 for k in keys_rows(srv)),
               20, "keys with the day for every body")
    check_all_days(m, msgs)
    with BlobsAway(srv):  # no file read any more
        check_all_days(m, msgs, slow=False)
    m.logout()
