"""IMAP extensions of issue 9 with exact responses over raw sockets:
OBJECTID (RFC 8474: MAILBOXID, EMAILID, THREADID), SAVEDATE (RFC 8514),
PREVIEW (RFC 8970, cached per stored body, LAZY) and WITHIN (RFC 5032)."""
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import imap_quote

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def imap_date(t):
    """A datetime (UTC) as an IMAP date-time string."""
    return "%02d-%s-%04d %02d:%02d:%02d +0000" % (t.day, MONTHS[t.month - 1], t.year, t.hour,
                                                 t.minute, t.second)


def imap_day(t):
    return "%d-%s-%04d" % (t.day, MONTHS[t.month - 1], t.year)


def append(c, mailbox, data, flags="", date=None):
    tag = c.next_tag()
    extra = (flags + " " if flags else "") + ('"%s" ' % date if date else "")
    c.send(("%s APPEND %s %s{%d}\r\n" % (tag, imap_quote(mailbox), extra, len(data))).encode())
    line = c.readline()
    assert line.startswith("+"), line
    c.send(data + b"\r\n")
    r = c.read_response(tag)
    assert r.ok, r
    return r


def msg(subject, body, headers=b""):
    return (b"From: a@example.test\r\nTo: alice@example.test\r\nSubject: " + subject +
            b"\r\n" + headers + b"\r\n" + body)


def fetch1(c, q):
    """FETCH returning the untagged FETCH lines."""
    r = c.cmd(q)
    assert r.ok, r
    return [l for l in r.untagged if " FETCH " in l]


def search(c, q):
    r = c.cmd(q)
    assert r.ok, r
    lines = [l for l in r.untagged if l.startswith("* SEARCH")]
    assert len(lines) == 1, r
    return lines[0][len("* SEARCH"):].split()


@pytest.fixture
def c(server):
    cl = server.imap_login()
    yield cl
    cl.close()


def test_capabilities(c):
    r = c.cmd("CAPABILITY")
    caps = r.untagged[0].split()
    for name in ("OBJECTID", "SAVEDATE", "PREVIEW", "WITHIN"):
        assert name in caps, r


# ---- OBJECTID ----

MBID = re.compile(r"^M[0-9]+$")


def mailboxid_of_create(r):
    m = re.match(r"^a\d+ OK \[MAILBOXID \(([A-Za-z0-9_-]{1,255})\)\] CREATE completed$",
                 r.tagged)
    assert m, r
    return m.group(1)


def status_id(c, box):
    r = c.cmd("STATUS %s (MAILBOXID)" % box)
    assert r.ok, r
    m = re.match(r"^\* STATUS %s \(MAILBOXID \(([A-Za-z0-9_-]+)\)\)$" % re.escape(box),
                 r.untagged[-1])
    assert m, r
    return m.group(1)


def select_id(c, box, cmd="SELECT"):
    r = c.cmd("%s %s" % (cmd, box))
    assert r.ok, r
    ids = [re.match(r"^\* OK \[MAILBOXID \(([A-Za-z0-9_-]+)\)\] Ok$", l) for l in r.untagged]
    ids = [m.group(1) for m in ids if m]
    assert len(ids) == 1, r
    return ids[0]


def test_mailboxid_create_select_status_rename(c):
    a = mailboxid_of_create(c.cmd("CREATE oid-a"))
    b = mailboxid_of_create(c.cmd("CREATE oid-b"))
    assert MBID.match(a) and MBID.match(b) and a != b
    # RFC 8474 4.2, 4.3: the same id in STATUS, SELECT and EXAMINE
    assert status_id(c, "oid-a") == a
    assert select_id(c, "oid-a") == a
    assert select_id(c, "oid-b", "EXAMINE") == b
    assert c.cmd("UNSELECT").ok
    # 4.1: RENAME keeps the MAILBOXID
    assert c.cmd("RENAME oid-a oid-renamed").ok
    assert status_id(c, "oid-renamed") == a
    assert select_id(c, "oid-renamed") == a
    assert c.cmd("UNSELECT").ok
    # a mailbox deleted and created again under the same name: a new id,
    # never one used before
    assert c.cmd("DELETE oid-b").ok
    b2 = mailboxid_of_create(c.cmd("CREATE oid-b"))
    assert b2 not in (a, b)
    # INBOX has one too, distinct from the others
    inbox = status_id(c, "INBOX")
    assert MBID.match(inbox) and inbox not in (a, b, b2)


def test_mailboxid_rename_children_and_inbox(c):
    assert c.cmd("CREATE par/kid").ok
    par, kid = status_id(c, "par"), status_id(c, "par/kid")
    # RFC 8474 4.1: the children of a renamed mailbox keep theirs too
    assert c.cmd("RENAME par moved").ok
    assert status_id(c, "moved") == par and status_id(c, "moved/kid") == kid
    # renaming INBOX (RFC 9051 6.3.6) makes a new mailbox with the messages:
    # a new MAILBOXID for it, INBOX keeps its own (RFC 8474 4.1)
    inbox = status_id(c, "INBOX")
    append(c, "INBOX", msg(b"in", b"inbox msg\r\n"))
    assert c.cmd("EXAMINE INBOX").ok
    eid = re.search(r"EMAILID \((E[0-9]+)\)", fetch1(c, "FETCH * EMAILID")[0]).group(1)
    assert c.cmd("UNSELECT").ok
    assert c.cmd("RENAME INBOX old-inbox").ok
    new = status_id(c, "old-inbox")
    assert status_id(c, "INBOX") == inbox and new not in (inbox, par, kid)
    # the messages moved with it keep their EMAILID (RFC 8474 5.1)
    assert c.cmd("EXAMINE old-inbox").ok
    assert eid in fetch1(c, "FETCH * EMAILID")[0]
    assert c.cmd("UNSELECT").ok


def test_mailboxid_of_other_user_differs(server, c):
    mine = status_id(c, "INBOX")
    with server.imap_login("bob@example.test") as other:
        assert status_id(other, "INBOX") != mine


def test_emailid_copy_move_threadid_search(c):
    assert c.cmd("CREATE eid-src").ok
    assert c.cmd("CREATE eid-dst").ok
    append(c, "eid-src", msg(b"one", b"first\r\n"))
    append(c, "eid-src", msg(b"two", b"second\r\n"))
    assert c.cmd("SELECT eid-src").ok
    lines = fetch1(c, "FETCH 1:2 (EMAILID THREADID)")
    ids = []
    for n, l in enumerate(lines, 1):
        m = re.match(r"^\* %d FETCH \(EMAILID \((E[0-9]+)\) THREADID NIL\)$" % n, l)
        assert m, lines
        ids.append(m.group(1))
    assert ids[0] != ids[1]
    # RFC 8474 5.1: a copy keeps the EMAILID of the stored body; MOVE too
    assert c.cmd("COPY 1 eid-dst").ok
    assert c.cmd("MOVE 2 eid-dst").ok
    assert c.cmd("SELECT eid-dst").ok
    lines = fetch1(c, "UID FETCH 1:* (EMAILID)")
    assert lines == ["* 1 FETCH (UID 1 EMAILID (%s))" % ids[0],
                     "* 2 FETCH (UID 2 EMAILID (%s))" % ids[1]], lines
    # RFC 8474 6: SEARCH EMAILID / THREADID
    assert search(c, "SEARCH EMAILID %s" % ids[1]) == ["2"]
    assert search(c, "UID SEARCH EMAILID %s" % ids[0]) == ["1"]
    assert search(c, "SEARCH EMAILID E999999999") == []
    assert search(c, "SEARCH EMAILID Mxyz") == []
    assert search(c, "SEARCH NOT EMAILID %s" % ids[0]) == ["2"]
    assert search(c, "SEARCH THREADID T1") == []
    # objectid = 1*255(ALPHA / DIGIT / "_" / "-")
    assert c.cmd("SEARCH EMAILID E1.2").status == "BAD"
    assert c.cmd("SEARCH EMAILID " + "E" * 256).status == "BAD"
    assert c.cmd("SEARCH EMAILID").status == "BAD"
    # the THREADID NIL is said as such (RFC 8474 5.2)
    assert fetch1(c, "FETCH 1 THREADID") == ["* 1 FETCH (THREADID NIL)"]


# ---- SAVEDATE ----

def test_savedate_fetch_search_copy(c):
    assert c.cmd("CREATE sd-a").ok
    assert c.cmd("CREATE sd-b").ok
    old = "01-Jan-2001 10:00:00 +0000"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    append(c, "sd-a", msg(b"old", b"x\r\n"), date=old)
    after = datetime.now(timezone.utc).replace(microsecond=0)
    assert c.cmd("SELECT sd-a").ok
    lines = fetch1(c, "FETCH 1 (INTERNALDATE SAVEDATE)")
    m = re.match(r'^\* 1 FETCH \(INTERNALDATE "01-Jan-2001 10:00:00 \+0000" '
                 r'SAVEDATE "([^"]+)"\)$', lines[0])
    assert m, lines
    saved = datetime.strptime(m.group(1), "%d-%b-%Y %H:%M:%S %z")
    assert before <= saved <= after + timedelta(seconds=1), (saved, before, after)
    # RFC 8514 5: the save date's day, not the INTERNALDATE's
    today = imap_day(saved)
    tomorrow = imap_day(saved + timedelta(days=1))
    assert search(c, "SEARCH SAVEDON %s" % today) == ["1"]
    assert search(c, "SEARCH SAVEDSINCE %s" % today) == ["1"]
    assert search(c, "SEARCH SAVEDBEFORE %s" % today) == []
    assert search(c, "SEARCH SAVEDBEFORE %s" % tomorrow) == ["1"]
    assert search(c, "SEARCH SAVEDSINCE %s" % tomorrow) == []
    assert search(c, "SEARCH SAVEDON 1-Jan-2001") == []
    assert search(c, "SEARCH ON 1-Jan-2001") == ["1"]
    assert search(c, "SEARCH SAVEDATESUPPORTED") == ["1"]
    assert c.cmd("SEARCH SAVEDON notadate").status == "BAD"
    # a COPY is saved anew in its mailbox (RFC 8514 2): a later save date
    time.sleep(1.1)
    assert c.cmd("COPY 1 sd-b").ok
    assert c.cmd("SELECT sd-b").ok
    lines = fetch1(c, "FETCH 1 (SAVEDATE)")
    m = re.match(r'^\* 1 FETCH \(SAVEDATE "([^"]+)"\)$', lines[0])
    assert m, lines
    copied = datetime.strptime(m.group(1), "%d-%b-%Y %H:%M:%S %z")
    assert copied > saved, (copied, saved)


# ---- PREVIEW ----

LONG = ("é" * 300).encode()
PREVIEW_CASES = [
    # (message, expected preview)
    (msg(b"plain", b"  Hello,\r\n\r\n   world\tof  mail.  \r\n"), "Hello, world of mail."),
    (msg(b"qp", b"caf=C3=A9 =\r\nsoft break\r\n",
         b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Transfer-Encoding: quoted-printable\r\n"), "café soft break"),
    (msg(b"latin1", b"bWFuZ2VyIGVuIGb0cmV0\r\n",
         b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
         b"Content-Transfer-Encoding: base64\r\n"), "manger en fôret"),
    (msg(b"html", b"<html><head><title>T</title><style>p {color: red}</style></head>"
         b"<body><p>Tom &amp; Jerry&#33;</p><!-- hidden --><script>x()</script>"
         b"<div>caf&#xE9;&nbsp;ok</div></body></html>\r\n",
         b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"),
     "Tom & Jerry! café ok"),
    (msg(b"alt", b"--b\r\nContent-Type: text/html\r\n\r\n<b>html part</b>\r\n"
         b"--b\r\nContent-Type: text/plain\r\n\r\nthe plain part\r\n--b--\r\n",
         b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n"),
     "the plain part"),
    (msg(b"attach", b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment;"
         b" filename=a.txt\r\n\r\nattached text\r\n--b\r\nContent-Type: image/png\r\n\r\n"
         b"PNG\r\n--b--\r\n",
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"), ""),
    (msg(b"long", LONG + b"\r\n",
         b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"), "é" * 256),
]


def preview_item(text):
    """The PREVIEW nstring as sent: quoted when ASCII, else a literal (8-bit
    text is not allowed in a quoted string before UTF8=ACCEPT), joined in by
    the client's readline as "{N}\\r\\n<text>"."""
    b = text.encode()
    if all(0x20 <= ch < 0x7f for ch in b):
        return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
    return "{%d}\r\n%s" % (len(b), text)


def test_preview_exact_and_cached(server, c):
    assert c.cmd("CREATE pv").ok
    for m, _ in PREVIEW_CASES:
        append(c, "pv", m)
    assert c.cmd("EXAMINE pv").ok
    lines = fetch1(c, "FETCH 1:* (PREVIEW)")
    assert lines == ["* %d FETCH (PREVIEW %s)" % (i + 1, preview_item(p))
                     for i, (_, p) in enumerate(PREVIEW_CASES)], lines
    # computed once and kept with the stored body (the committer writes it)
    db = server.db()
    deadline = time.monotonic() + 10
    while True:
        rows = db.execute("SELECT preview FROM messages WHERE preview IS NOT NULL").fetchall()
        kept = {r[0] for r in rows}
        if all(p in kept for _, p in PREVIEW_CASES) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    db.close()
    assert all(p in kept for _, p in PREVIEW_CASES), kept
    # cached now: LAZY answers it too, with other items around it
    lines = fetch1(c, "FETCH 1 (UID PREVIEW (LAZY) FLAGS)")
    # (EXAMINE claims no \Recent, RFC 3501 6.3.2)
    assert lines == ['* 1 FETCH (UID 1 PREVIEW "Hello, world of mail." FLAGS (\\Recent))'], lines
    # the same body copied shares the preview
    assert c.cmd("CREATE pv2").ok
    assert c.cmd("COPY 4 pv2").ok
    assert c.cmd("EXAMINE pv2").ok
    assert fetch1(c, "FETCH 1 PREVIEW (LAZY)") == [
        "* 1 FETCH (PREVIEW %s)" % preview_item("Tom & Jerry! café ok")]


def test_preview_utf8_quoted_once_enabled(server):
    # IMAP4rev2 (and UTF8=ACCEPT) allow UTF-8 in quoted strings (RFC 9051
    # 4.3, RFC 6855 3): the preview is no literal then
    with server.imap_login() as c:
        assert c.cmd("CREATE pvu").ok
        append(c, "pvu", PREVIEW_CASES[1][0])
        r = c.cmd("ENABLE IMAP4rev2")
        assert r.ok, r
        assert c.cmd("EXAMINE pvu").ok
        assert fetch1(c, "FETCH 1 PREVIEW") == ['* 1 FETCH (PREVIEW "café soft break")']


def test_preview_lazy_then_background(c):
    assert c.cmd("CREATE pvl").ok
    append(c, "pvl", msg(b"lazy", b"computed later\r\n"))
    assert c.cmd("EXAMINE pvl").ok
    # RFC 8970 3.1: LAZY does not wait: NIL when not computed yet
    assert fetch1(c, "FETCH 1 (PREVIEW (LAZY))") == ["* 1 FETCH (PREVIEW NIL)"]
    # ... and the server computes it in the background for a later FETCH
    deadline = time.monotonic() + 10
    while True:
        lines = fetch1(c, "FETCH 1 (PREVIEW (LAZY))")
        if lines != ["* 1 FETCH (PREVIEW NIL)"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines == ['* 1 FETCH (PREVIEW "computed later")'], lines


def test_preview_syntax(c):
    assert c.cmd("CREATE pvs").ok
    append(c, "pvs", msg(b"s", b"x\r\n"))
    assert c.cmd("EXAMINE pvs").ok
    assert c.cmd("FETCH 1 (PREVIEW (FUZZY))").status == "BAD"
    assert c.cmd("FETCH 1 (PREVIEW (LAZY FOO))").status == "BAD"
    assert c.cmd("FETCH 1 (PREVIEW ())").status == "BAD"
    assert fetch1(c, "FETCH 1 PREVIEW") == ['* 1 FETCH (PREVIEW "x")']
    # computed from the blob the other items read already
    append(c, "pvs", msg(b"t", b"body  text\r\n"))
    assert c.cmd("NOOP").ok
    assert fetch1(c, "FETCH 2 (BODY.PEEK[TEXT] PREVIEW)") == [
        '* 2 FETCH (BODY[TEXT] {12}\r\nbody  text\r\n PREVIEW "body text")']
    # PREVIEW does not set \Seen (RFC 8970 3.1)
    assert c.cmd("SELECT pvs").ok
    assert fetch1(c, "FETCH 1 (PREVIEW FLAGS)") == ['* 1 FETCH (PREVIEW "x" FLAGS (\\Recent))']


# ---- WITHIN ----

def test_within_older_younger(c):
    assert c.cmd("CREATE wi").ok
    now = datetime.now(timezone.utc).replace(microsecond=0)
    append(c, "wi", msg(b"a", b"a\r\n"), date=imap_date(now - timedelta(days=3)))
    append(c, "wi", msg(b"b", b"b\r\n"), date=imap_date(now - timedelta(hours=2)))
    append(c, "wi", msg(b"c", b"c\r\n"), date=imap_date(now - timedelta(seconds=60)))
    # a zone other than UTC: the instant counts (RFC 5032 "disregarding timezone")
    t = now - timedelta(hours=5)
    local = t + timedelta(hours=9)
    append(c, "wi", msg(b"d", b"d\r\n"),
           date=imap_date(local)[:-5] + "+0900")
    assert c.cmd("EXAMINE wi").ok
    # RFC 5032 3: intervals in seconds from now, on the INTERNALDATE
    assert search(c, "SEARCH YOUNGER 3600") == ["3"]
    assert search(c, "SEARCH YOUNGER 10800") == ["2", "3"]
    assert search(c, "SEARCH YOUNGER 21600") == ["2", "3", "4"]
    assert search(c, "SEARCH OLDER 3600") == ["1", "2", "4"]
    assert search(c, "SEARCH OLDER 86400") == ["1"]
    assert search(c, "SEARCH OLDER 3600 YOUNGER 86400") == ["2", "4"]
    assert search(c, "UID SEARCH NOT YOUNGER 10800") == ["1", "4"]
    for bad in ("YOUNGER 0", "OLDER -5", "OLDER abc", "YOUNGER", "OLDER 99999999999"):
        assert c.cmd("SEARCH " + bad).status == "BAD", bad
