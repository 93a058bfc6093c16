"""IMAP: SEARCH (RFC 9051 6.4.4) with ESEARCH (RFC 4731) and SEARCHRES (RFC
5182), STORE (6.4.6), COPY/MOVE (6.4.7, RFC 6851) with COPYUID (RFC 4315),
EXPUNGE and UID EXPUNGE, APPEND and MULTIAPPEND (RFC 3502) with APPENDUID,
CONDSTORE and QRESYNC (RFC 7162): exact responses over raw sockets."""
import re
import time

import pytest

from conftest import imap_quote

# A corpus with known flags, dates, sizes and text (CRLF line ends).
CORPUS = [
    # (flags, internal date, message)
    ("(\\Seen)", "01-Jan-2020 10:00:00 +0000",
     b"From: Alice <alice@example.test>\r\nTo: dave@example.net\r\n"
     b"Subject: Hello world\r\nDate: Wed, 01 Jan 2020 09:00:00 +0000\r\n"
     b"Message-ID: <m1@example.test>\r\n\r\nplain text apple\r\n"),
    ("()", "15-Feb-2021 12:00:00 +0100",
     b"From: Erin <erin@example.net>\r\nTo: alice@example.test\r\n"
     b"Subject: =?UTF-8?B?w4RwZmVs?= und Birnen\r\nDate: Mon, 15 Feb 2021 11:00:00 +0100\r\n"
     b"Message-ID: <m2@example.net>\r\nMIME-Version: 1.0\r\n"
     b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
     b"\r\ncaf=C3=A9 banana\r\n"),
    ("(\\Flagged \\Answered $Work)", "20-Mar-2022 08:30:00 +0000",
     b"From: Frank <frank@example.net>\r\nTo: alice@example.test\r\nSubject: Big one\r\n"
     b"Date: Sun, 20 Mar 2022 08:00:00 +0000\r\nMessage-ID: <m3@example.net>\r\n\r\n"
     + b"x" * 5000 + b"\r\n"),
    ("(\\Deleted \\Draft)", "01-Apr-2023 00:00:00 +0000",
     b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nCc: carol@example.test\r\n"
     b"Subject: Re: Hello\r\nDate: Sat, 01 Apr 2023 00:00:00 +0000\r\n"
     b"Message-ID: <m4@example.test>\r\n\r\nsee you\r\n"),
]


def append(c, mailbox, data, flags="", date=None):
    tag = c.next_tag()
    extra = ""
    if flags:
        extra += flags + " "
    if date:
        extra += '"%s" ' % date
    c.send(("%s APPEND %s %s{%d}\r\n" % (tag, imap_quote(mailbox), extra, len(data))).encode())
    line = c.readline()
    if not line.startswith("+"):
        return c.read_response(tag) if not line.startswith(tag) else _resp(tag, line)
    c.send(data + b"\r\n")
    return c.read_response(tag)


def _resp(tag, line):
    from conftest import ImapResponse
    return ImapResponse(tag, [], line)


def settle(c, box):
    """SELECT once and leave: the \\Recent messages are claimed by this
    selection (RFC 3501 2.3.2), so that later FLAGS show none."""
    assert c.cmd("SELECT %s" % box).ok
    assert c.cmd("UNSELECT").ok


def load_corpus(c, box):
    assert c.cmd("CREATE %s" % box).ok
    for flags, date, m in CORPUS:
        r = append(c, box, m, flags, date)
        assert r.ok, r


@pytest.fixture(scope="module")
def srch(server):
    c = server.imap_login()
    load_corpus(c, "srch")
    settle(c, "srch")
    r = c.cmd("SELECT srch")
    assert r.ok, r
    yield c
    c.close()


def search(c, q):
    r = c.cmd("SEARCH " + q)
    assert r.ok, r
    lines = [l for l in r.untagged if l.startswith("* SEARCH")]
    assert len(lines) == 1, r
    return lines[0][len("* SEARCH"):].split()


@pytest.mark.parametrize("q,want", [
    ("ALL", "1 2 3 4"),
    ("SEEN", "1"), ("UNSEEN", "2 3 4"), ("FLAGGED", "3"), ("UNFLAGGED", "1 2 4"),
    ("ANSWERED", "3"), ("UNANSWERED", "1 2 4"), ("DELETED", "4"), ("UNDELETED", "1 2 3"),
    ("DRAFT", "4"), ("UNDRAFT", "1 2 3"), ("KEYWORD $Work", "3"), ("UNKEYWORD $Work", "1 2 4"),
    ("NEW", ""), ("OLD", "1 2 3 4"), ("RECENT", ""),
    ("BEFORE 15-Feb-2021", "1"), ("ON 15-Feb-2021", "2"), ("SINCE 20-Mar-2022", "3 4"),
    ("SENTBEFORE 1-Jun-2020", "1"), ("SENTON 15-Feb-2021", "2"), ("SENTSINCE 1-Jan-2022", "3 4"),
    ("LARGER 4000", "3"), ("SMALLER 4000", "1 2 4"),
    ("SUBJECT hello", "1 4"), ("FROM alice", "1 4"), ("TO bob", "4"), ("CC carol", "4"),
    ("BCC carol", ""), ("HEADER Message-ID <m2@", "2"), ("HEADER Cc \"\"", "4"),
    ("SUBJECT birnen", "2"), ("BODY banana", "2"), ("BODY hello", ""), ("TEXT hello", "1 4"),
    ("TEXT apple", "1"), ("BODY xxxxxxxxxx", "3"),
    ("OR SEEN FLAGGED", "1 3"), ("NOT SEEN", "2 3 4"), ("NOT (OR SEEN FLAGGED)", "2 4"),
    ("(SEEN) UNDELETED", "1"), ("OR (SEEN DELETED) DRAFT", "4"), ("2:3", "2 3"), ("3:*", "3 4"),
    ("*", "4"), ("UID 2,4", "2 4"), ("UID 3:*", "3 4"), ("1:2 SEEN", "1"),
    ("NOT 1:3", "4"),
])
def test_search_keys(srch, q, want):
    assert search(srch, q) == want.split(), q


def test_search_charset_and_encoded_words(srch):
    # RFC 2047 encoded word "Äpfel" found by its decoded, case-folded text
    c = srch
    word = "äpfel".encode()
    tag = c.next_tag()
    c.send(("%s SEARCH CHARSET UTF-8 SUBJECT {%d}\r\n" % (tag, len(word))).encode())
    assert c.readline().startswith("+")
    c.send(word + b"\r\n")
    r = c.read_response(tag)
    assert r.ok and "* SEARCH 2" in r.untagged, r
    # quoted-printable body decoded before matching
    word = "café".encode()
    tag = c.next_tag()
    c.send(("%s SEARCH CHARSET UTF-8 BODY {%d}\r\n" % (tag, len(word))).encode())
    assert c.readline().startswith("+")
    c.send(word + b"\r\n")
    r = c.read_response(tag)
    assert r.ok and "* SEARCH 2" in r.untagged, r
    r = c.cmd("SEARCH CHARSET KOI8-R SUBJECT x")
    assert r.tagged.endswith("NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset"), r
    r = c.cmd("SEARCH FOO")
    assert r.status == "BAD", r


def test_uid_search_and_esearch(srch):
    c = srch
    r = c.cmd("UID SEARCH UNSEEN")
    assert "* SEARCH 2 3 4" in r.untagged, r
    tag = c.next_tag()
    c.send(tag + " SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN\r\n")
    r = c.read_response(tag)
    assert r.untagged == ['* ESEARCH (TAG "%s") MIN 2 MAX 4 COUNT 3 ALL 2:4' % tag], r
    tag = c.next_tag()
    c.send(tag + " UID SEARCH RETURN () OR SEEN DELETED\r\n")
    r = c.read_response(tag)
    assert r.untagged == ['* ESEARCH (TAG "%s") UID ALL 1,4' % tag], r
    tag = c.next_tag()
    c.send(tag + " SEARCH RETURN (COUNT MIN) KEYWORD nothere\r\n")
    r = c.read_response(tag)
    # RFC 4731 3.1: no MIN/MAX/ALL for an empty result; COUNT 0
    assert r.untagged == ['* ESEARCH (TAG "%s") COUNT 0' % tag], r


def test_searchres(srch):
    c = srch
    # RFC 5182: SAVE alone gives no ESEARCH; "$" is then usable anywhere
    r = c.cmd("SEARCH RETURN (SAVE) FLAGGED")
    assert r.ok and r.untagged == [], r
    r = c.cmd("FETCH $ (UID)")
    assert r.untagged == ["* 3 FETCH (UID 3)"], r
    r = c.cmd("SEARCH $")
    assert "* SEARCH 3" in r.untagged, r
    r = c.cmd("UID SEARCH UID $")
    assert "* SEARCH 3" in r.untagged, r
    # SAVE with MIN: only the minimum is saved (RFC 5182 2.4)
    tag = c.next_tag()
    c.send(tag + " SEARCH RETURN (SAVE MIN) UNSEEN\r\n")
    r = c.read_response(tag)
    assert r.untagged == ['* ESEARCH (TAG "%s") MIN 2' % tag], r
    r = c.cmd("FETCH $ (UID)")
    assert r.untagged == ["* 2 FETCH (UID 2)"], r
    r = c.cmd("SEARCH OR $ 4")
    assert "* SEARCH 2 4" in r.untagged, r


def test_store_variants(server):
    c = server.imap_login()
    box = "st1"
    assert c.cmd("CREATE %s" % box).ok
    for i in range(3):
        assert append(c, box, b"Subject: %d\r\n\r\nx\r\n" % i).ok
    settle(c, box)
    assert c.cmd("SELECT %s" % box).ok
    r = c.cmd("STORE 1 FLAGS (\\Seen $Kw)")
    # a keyword new to the client is announced first (RFC 9051 7.3.5)
    assert r.untagged == [
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Kw)",
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Kw \\*)] "
        "Flags permitted",
        "* 1 FETCH (FLAGS (\\Seen $Kw))"], r
    r = c.cmd("STORE 1 -FLAGS ($Kw)")
    assert r.untagged == ["* 1 FETCH (FLAGS (\\Seen))"], r
    r = c.cmd("STORE 1:2 +FLAGS.SILENT (\\Flagged)")
    assert r.ok and r.untagged == [], r
    r = c.cmd("UID STORE 2 +FLAGS (\\Answered)")
    assert r.untagged == ["* 2 FETCH (FLAGS (\\Answered \\Flagged) UID 2)"], r
    r = c.cmd("STORE 3 +FLAGS \\Deleted")
    assert r.untagged == ["* 3 FETCH (FLAGS (\\Deleted))"], r
    r = c.cmd("STORE 2:3 FLAGS ()")
    assert r.untagged == ["* 2 FETCH (FLAGS ())", "* 3 FETCH (FLAGS ())"], r
    assert c.cmd("STORE 1 +FLAGS (\\Recent)").status == "BAD"
    assert c.cmd("STORE 1 +FLAGZ (\\Seen)").status == "BAD"
    assert c.cmd("STORE 9 +FLAGS (\\Seen)").status == "BAD"  # beyond the view
    r = c.cmd("UID STORE 99 +FLAGS (\\Seen)")  # UIDs that do not exist: ignored
    assert r.ok and r.untagged == [], r
    r = c.cmd("FETCH 1:3 (FLAGS)")
    assert r.untagged == ["* 1 FETCH (FLAGS (\\Flagged \\Seen))", "* 2 FETCH (FLAGS ())",
                          "* 3 FETCH (FLAGS ())"], r
    # EXAMINE: read-only
    assert c.cmd("EXAMINE %s" % box).ok
    r = c.cmd("STORE 1 +FLAGS (\\Deleted)")
    assert r.status == "NO" and "[READ-ONLY]" in r.tagged, r
    c.close()


def test_copy_move_expunge(server):
    c = server.imap_login()
    for b in ("cm1", "cm2"):
        assert c.cmd("CREATE %s" % b).ok
    for i in range(4):
        assert append(c, "cm1", b"Subject: %d\r\n\r\nbody\r\n" % i).ok
    r = c.cmd("STATUS cm2 (UIDVALIDITY UIDNEXT)")
    uv = re.search(r"UIDVALIDITY (\d+)", r.untagged[0]).group(1)
    assert c.cmd("SELECT cm1").ok
    r = c.cmd("COPY 1:2 cm2")
    assert r.tagged.endswith("OK [COPYUID %s 1:2 1:2] COPY completed" % uv), r
    r = c.cmd("UID COPY 4 cm2")
    assert r.tagged.endswith("OK [COPYUID %s 4 3] UID COPY completed" % uv), r
    r = c.cmd("COPY 1 nosuchbox")
    assert r.status == "NO" and "[TRYCREATE]" in r.tagged, r
    # MOVE (RFC 6851 4.3): COPYUID untagged, then the EXPUNGE
    r = c.cmd("MOVE 2 cm2")
    assert r.untagged == ["* OK [COPYUID %s 2 4] Moved UIDs." % uv, "* 2 EXPUNGE"], r
    assert r.ok
    r = c.cmd("UID MOVE 3:4 cm2")
    assert r.untagged == ["* OK [COPYUID %s 3:4 5:6] Moved UIDs." % uv, "* 3 EXPUNGE",
                          "* 2 EXPUNGE"], r
    r = c.cmd("FETCH 1:* (UID)")
    assert r.untagged == ["* 1 FETCH (UID 1)"], r
    # EXPUNGE and UID EXPUNGE (RFC 4315 2.1)
    assert c.cmd("SELECT cm2").ok
    r = c.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)")
    assert r.ok
    r = c.cmd("UID EXPUNGE 2,5")
    assert r.untagged == ["* 5 EXPUNGE", "* 2 EXPUNGE"], r
    r = c.cmd("FETCH 1:* (UID)")
    assert r.untagged == ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)",
                          "* 4 FETCH (UID 6)"], r
    assert c.cmd("STORE 2 -FLAGS.SILENT (\\Deleted)").ok
    r = c.cmd("EXPUNGE")
    assert r.untagged == ["* 4 EXPUNGE", "* 3 EXPUNGE", "* 1 EXPUNGE"], r
    r = c.cmd("FETCH 1:* (UID)")
    assert r.untagged == ["* 1 FETCH (UID 3)"], r
    # CLOSE expunges silently (RFC 9051 6.4.1)
    assert c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    r = c.cmd("CLOSE")
    assert r.ok and r.untagged == [], r
    r = c.cmd("STATUS cm2 (MESSAGES)")
    assert r.untagged == ["* STATUS cm2 (MESSAGES 0)"], r
    c.close()


def test_append_flags_date_appenduid(server):
    c = server.imap_login()
    assert c.cmd("CREATE ap1").ok
    r = c.cmd("STATUS ap1 (UIDVALIDITY)")
    uv = re.search(r"UIDVALIDITY (\d+)", r.untagged[0]).group(1)
    m = b"Subject: a\r\n\r\nhello\r\n"
    r = append(c, "ap1", m, "(\\Seen $Label1)", "17-Jul-1996 02:44:25 -0700")
    assert r.tagged.endswith("OK [APPENDUID %s 1] APPEND completed" % uv), r
    settle(c, "ap1")
    assert c.cmd("EXAMINE ap1").ok
    r = c.cmd("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert r.untagged == [
        '* 1 FETCH (FLAGS (\\Seen $Label1) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        'RFC822.SIZE %d BODY[] {%d}\r\n%s)' % (len(m), len(m), m.decode())], r
    # to a mailbox that does not exist: TRYCREATE (RFC 9051 6.3.12)
    r = append(c, "nosuchbox", m)
    assert r.status == "NO" and "[TRYCREATE]" in r.tagged, r
    # the selected mailbox sees its own append before the OK
    assert c.cmd("SELECT ap1").ok
    r = append(c, "ap1", m)
    assert r.untagged == ["* 2 EXISTS", "* 1 RECENT"], r
    assert r.tagged.endswith("OK [APPENDUID %s 2] APPEND completed" % uv), r
    # BINARY literal8 (RFC 3516 4.4): stored as is
    m8 = "Subject: b\r\nContent-Transfer-Encoding: binary\r\n\r\nGrüße\r\n".encode()
    tag = c.next_tag()
    c.send(("%s APPEND ap1 ~{%d}\r\n" % (tag, len(m8))).encode())
    assert c.readline().startswith("+")
    c.send(m8 + b"\r\n")
    r = c.read_response(tag)
    assert r.ok, r
    tag = c.next_tag()
    c.send(tag + " FETCH 3 BODY.PEEK[]\r\n")
    raw = b""
    while (tag + " OK").encode() not in raw:
        c._fill(time.monotonic() + 10)
        raw, c.buf = raw + c.buf, b""
    assert m8 in raw, raw
    c.close()


def test_multiappend_atomic(make_server):
    srv = make_server(name="multiappend", imap_max_literal="2k")
    c = srv.imap_login()
    assert c.cmd("CREATE ma").ok
    r = c.cmd("STATUS ma (UIDVALIDITY)")
    uv = re.search(r"UIDVALIDITY (\d+)", r.untagged[0]).group(1)
    m = b"Subject: m\r\n\r\nx\r\n"
    # RFC 3502: all or none. Two LITERAL+ messages: APPENDUID for both
    tag = c.next_tag()
    c.send(("%s APPEND ma (\\Seen) {%d+}\r\n" % (tag, len(m))).encode() + m +
           (" {%d+}\r\n" % len(m)).encode() + m + b"\r\n")
    r = c.read_response(tag)
    assert r.tagged == "%s OK [APPENDUID %s 1:2] APPEND completed" % (tag, uv), r
    # the second message is over APPENDLIMIT: refused before its "+",
    # and the first one is not stored either
    big = b"Subject: big\r\n\r\n" + b"y" * 3000 + b"\r\n"
    tag = c.next_tag()
    c.send(("%s APPEND ma {%d}\r\n" % (tag, len(m))).encode())
    assert c.readline().startswith("+")
    c.send(m + (" {%d}\r\n" % len(big)).encode())
    r = c.read_response(tag)
    assert r.status == "NO" and "[TOOBIG]" in r.tagged, r
    r = c.cmd("STATUS ma (MESSAGES)")
    assert r.untagged == ["* STATUS ma (MESSAGES 2)"], r
    # a MULTIAPPEND into a missing mailbox stores nothing anywhere
    tag = c.next_tag()
    c.send(("%s APPEND nosuch {%d+}\r\n" % (tag, len(m))).encode() + m +
           (" {%d+}\r\n" % len(m)).encode() + m + b"\r\n")
    r = c.read_response(tag)
    assert r.status == "NO" and "[TRYCREATE]" in r.tagged, r
    # a LITERAL+ over the limit cannot be refused before its octets: they
    # are read and dropped, the command fails
    tag = c.next_tag()
    c.send(("%s APPEND ma {%d+}\r\n" % (tag, len(big))).encode() + big + b"\r\n")
    r = c.read_response(tag)
    assert r.status == "NO" and "[TOOBIG]" in r.tagged, r
    assert c.cmd("NOOP").ok
    r = c.cmd("STATUS ma (MESSAGES)")
    assert r.untagged == ["* STATUS ma (MESSAGES 2)"], r
    c.close()


def test_condstore(server):
    c = server.imap_login()
    assert c.cmd("CREATE cs1").ok
    for i in range(3):
        assert append(c, "cs1", b"Subject: %d\r\n\r\nx\r\n" % i).ok
    settle(c, "cs1")
    r = c.cmd("ENABLE CONDSTORE")
    assert r.untagged == ["* ENABLED CONDSTORE"], r
    r = c.cmd("SELECT cs1")
    hms = int(re.search(r"HIGHESTMODSEQ (\d+)", " ".join(r.untagged)).group(1))
    r = c.cmd("FETCH 1:3 (MODSEQ)")
    mods = [int(re.search(r"MODSEQ \((\d+)\)", l).group(1)) for l in r.untagged]
    assert len(mods) == 3 and max(mods) <= hms, r
    r = c.cmd("STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % mods[0])
    m1 = int(re.search(r"MODSEQ \((\d+)\)", r.untagged[0]).group(1))
    assert m1 > hms, r
    assert r.untagged == ["* 1 FETCH (FLAGS (\\Seen) MODSEQ (%d))" % m1], r
    # the same test again fails: [MODIFIED 1] (RFC 7162 3.1.3)
    r = c.cmd("STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % mods[0])
    assert r.tagged.endswith("OK [MODIFIED 1] Conditional STORE failed"), r
    r = c.cmd("STORE 2 +FLAGS.SILENT (\\Answered)")
    assert len(r.untagged) == 1 and re.match(r"^\* 2 FETCH \(MODSEQ \(\d+\)\)$", r.untagged[0]), r
    r = c.cmd("FETCH 1:3 (FLAGS) (CHANGEDSINCE %d)" % hms)
    assert [l.split(" (FLAGS")[0] for l in r.untagged] == ["* 1 FETCH", "* 2 FETCH"], r
    r = c.cmd("SEARCH MODSEQ %d" % (hms + 1))
    assert re.match(r"^\* SEARCH 1 2 \(MODSEQ \d+\)$", r.untagged[0]), r
    c.close()


def test_qresync(server):
    c = server.imap_login()
    assert c.cmd("CREATE qr1").ok
    for i in range(5):
        assert append(c, "qr1", b"Subject: %d\r\n\r\nx\r\n" % i).ok
    r = c.cmd("ENABLE QRESYNC")
    assert r.untagged == ["* ENABLED QRESYNC"], r
    r = c.cmd("SELECT qr1")
    text = " ".join(r.untagged)
    uv = int(re.search(r"UIDVALIDITY (\d+)", text).group(1))
    hms = int(re.search(r"HIGHESTMODSEQ (\d+)", text).group(1))
    # changes while "offline": an expunge of UIDs 2 and 4, a flag change on 5
    d = server.imap_login()
    assert d.cmd("SELECT qr1").ok
    assert d.cmd("UID STORE 2,4 +FLAGS.SILENT (\\Deleted)").ok
    assert d.cmd("EXPUNGE").ok
    assert d.cmd("UID STORE 5 +FLAGS (\\Seen)").ok
    d.close()
    assert c.cmd("UNSELECT").ok
    # RFC 7162 3.2.5: SELECT (QRESYNC (uidvalidity modseq known-uids))
    r = c.cmd("SELECT qr1 (QRESYNC (%d %d 1:5))" % (uv, hms))
    assert r.ok, r
    assert "* VANISHED (EARLIER) 2,4" in r.untagged, r
    fetches = [l for l in r.untagged if " FETCH " in l]
    assert len(fetches) == 1 and re.match(
        r"^\* 3 FETCH \(UID 5 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)$", fetches[0]), r
    assert r.untagged.index("* VANISHED (EARLIER) 2,4") < r.untagged.index(fetches[0])
    # UID FETCH ... (CHANGEDSINCE m VANISHED) (RFC 7162 3.2.6)
    r = c.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hms)
    assert r.untagged[0] == "* VANISHED (EARLIER) 2,4", r
    assert len(r.untagged) == 2 and "UID 5" in r.untagged[1], r
    # expunges in QRESYNC mode are VANISHED, not EXPUNGE (3.2.10)
    assert c.cmd("UID STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    r = c.cmd("EXPUNGE")
    assert r.untagged == ["* VANISHED 1"], r
    # CLOSED when a mailbox was selected (RFC 7162 3.2.11)
    r = c.cmd("SELECT INBOX")
    assert r.untagged[0] == "* OK [CLOSED] Previous mailbox closed", r
    # VANISHED without QRESYNC'd UID FETCH and CHANGEDSINCE is BAD
    assert c.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)").status == "BAD"
    c.close()


def test_append_over_quota(make_server):
    """RFC 9208 / RFC 9051 7.1: an APPEND over the account's quota is refused
    before the literal's "+" (NO [OVERQUOTA]), and nothing is stored."""
    srv = make_server(name="appendquota")
    user = "carol@example.test"
    srv.cli("quota", "set", user, "0", "2")  # at most 2 messages
    c = srv.imap_login(user)
    m = b"Subject: q\r\n\r\nx\r\n"
    for _ in range(2):
        assert append(c, "INBOX", m).ok
    tag = c.next_tag()
    c.send(("%s APPEND INBOX {%d}\r\n" % (tag, len(m))).encode())
    r = c.read_response(tag)  # no "+": the answer comes at once
    assert r.status == "NO" and "[OVERQUOTA]" in r.tagged, r
    r = c.cmd("STATUS INBOX (MESSAGES)")
    assert r.untagged == ["* STATUS INBOX (MESSAGES 2)"], r
    srv.cli("quota", "set", user, "1k", "0")  # now by size
    big = b"Subject: big\r\n\r\n" + b"z" * 2000 + b"\r\n"
    tag = c.next_tag()
    c.send(("%s APPEND INBOX {%d}\r\n" % (tag, len(big))).encode())
    r = c.read_response(tag)
    assert r.status == "NO" and "[OVERQUOTA]" in r.tagged, r
    c.close()
