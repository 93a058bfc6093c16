"""IMAP FETCH and UID FETCH (RFC 9051 6.4.5, 6.4.9; RFC 3516 BINARY): every
item with exact responses, on the MIME corpus (tests/data/mime/*.eml, whose
.expected files hold Dovecot 2.3's answers) appended over APPEND, partials,
BINARY, implicit \\Seen, and a big FETCH 1:* streamed to a slow reader
with the daemon's memory bounded."""
import base64
import glob
import os
import re
import socket
import time

import pytest

from conftest import ImapResponse, imap_quote, rss_kb, sanitized

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(HERE), "data", "mime")


def append(c, mailbox, data, flags="", date=None):
    tag = c.next_tag()
    extra = (flags + " " if flags else "") + ('"%s" ' % date if date else "")
    c.send(("%s APPEND %s %s{%d}\r\n" % (tag, imap_quote(mailbox), extra, len(data))).encode())
    line = c.readline()
    assert line.startswith("+"), line
    c.send(data + b"\r\n")
    return c.read_response(tag)


def raw_response(c, line, timeout=30.0):
    """Sends a tagged command and returns (raw bytes of the untagged part,
    tagged line): the bytes exactly as the server sent them."""
    tag = c.next_tag()
    c.send(tag + " " + line + "\r\n")
    end = re.compile((r"(^|\r\n)" + tag + r" [^\r\n]*\r\n").encode())
    deadline = time.monotonic() + timeout
    while True:
        m = end.search(c.buf)
        # a tag inside a literal cannot fool this: literals are parsed below
        if m:
            raw = c.buf[:m.start() + (2 if m.group(1) else 0)]
            if _complete(raw):
                tagged = c.buf[m.start() + len(m.group(1)):m.end() - 2].decode()
                c.buf = c.buf[m.end():]
                return raw, tagged
        c._fill(deadline)


def _complete(raw):
    """True if raw ends at a line boundary outside any literal."""
    i = 0
    while i < len(raw):
        j = raw.find(b"\r\n", i)
        if j < 0:
            return False
        m = re.search(rb"~?\{(\d+)\}$", raw[i:j])
        i = j + 2
        if m:
            i += int(m.group(1))
    return i == len(raw)


def unescape(v):
    out = bytearray()
    i = 0
    while i < len(v):
        ch = v[i]
        if ch == "\\":
            n = v[i + 1]
            if n == "r":
                out += b"\r"
            elif n == "n":
                out += b"\n"
            elif n == "x":
                out.append(int(v[i + 2:i + 4], 16))
                i += 2
            else:
                out += n.encode()
            i += 2
        else:
            out += ch.encode("latin-1")
            i += 1
    return bytes(out)


def expected(name):
    """{item: value} from NAME.expected, with OURS lines replacing Dovecot's."""
    want, ours = {}, {}
    with open(os.path.join(CORPUS, name + ".expected"), encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or line.startswith("DIFF"):
                continue
            if line.startswith("OURS "):
                line = line[5:]
                target = ours
            else:
                target = want
            if line.startswith("SECTION "):
                _, sect, val = line.split(" ", 2)
                target["SECTION " + sect] = val
            else:
                item, val = line.split(" ", 1)
                target[item] = val
    want.update(ours)
    return want


def section_value(raw, label):
    """The value of BODY[label] in a raw FETCH response: bytes or None (NIL)."""
    key = ("BODY[%s] " % label).encode()
    i = raw.index(key) + len(key)
    if raw[i:i + 3] == b"NIL":
        return None
    if raw[i:i + 1] == b'"':
        j = i + 1
        out = bytearray()
        while raw[j:j + 1] != b'"':
            if raw[j:j + 1] == b"\\":
                j += 1
            out += raw[j:j + 1]
            j += 1
        return bytes(out)
    m = re.match(rb"~?\{(\d+)\}\r\n", raw[i:])
    assert m, raw[i:i + 40]
    start = i + m.end()
    return raw[start:start + int(m.group(1))]


NAMES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(CORPUS, "*.eml"))
               if os.path.exists(p[:-4] + ".expected"))


@pytest.fixture(scope="module")
def corpus(server):
    c = server.imap_login("carol@example.test")
    assert c.cmd("CREATE corpus").ok
    for name in NAMES:
        with open(os.path.join(CORPUS, name + ".eml"), "rb") as f:
            r = append(c, "corpus", f.read())
        assert r.ok, (name, r)
    r = c.cmd("EXAMINE corpus")
    assert r.ok, r
    yield c
    c.close()


@pytest.mark.skipif(not NAMES, reason="no MIME corpus")
@pytest.mark.parametrize("name", NAMES)
def test_corpus_structure_and_sections(corpus, name):
    c = corpus
    seq = NAMES.index(name) + 1
    want = expected(name)
    lf_only = name == "lf-only"
    for item in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
        if item not in want:
            continue
        raw, tagged = raw_response(c, "FETCH %d (%s)" % (seq, item))
        assert tagged.split(" ", 2)[1] == "OK", tagged
        value = unescape(want[item])
        assert raw == b"* %d FETCH (%s %s)\r\n" % (seq, item.encode(), value), (name, item)
    for key, val in want.items():
        if not key.startswith("SECTION "):
            continue
        sect = key[len("SECTION "):]
        raw, tagged = raw_response(c, "FETCH %d (BODY.PEEK[%s])" % (seq, sect))
        assert tagged.split(" ", 2)[1] == "OK", (name, sect, tagged)
        got = section_value(raw, sect)
        exp = None if val == "NIL" else unescape(val[1:-1])
        if got == b"":
            got = None if exp is None else got
        if lf_only and got is not None and exp is not None:
            got = re.sub(rb"(?<!\r)\n", b"\r\n", got)
            exp = re.sub(rb"(?<!\r)\n", b"\r\n", exp)
        assert got == (exp if exp != b"" or got == b"" else exp), (name, sect, got, exp)


MSG = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
       b"Subject: items\r\nDate: Thu, 02 Dec 2021 10:00:00 +0000\r\n"
       b"Message-ID: <items@example.test>\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
       b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello there\r\n"
       b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
       + base64.encodebytes(bytes(range(256))).replace(b"\n", b"\r\n") +
       b"--b1--\r\n")
HDR = MSG[:MSG.index(b"\r\n\r\n") + 4]
TEXT = MSG[len(HDR):]


@pytest.fixture
def items_box(server):
    c = server.imap_login("bob@example.test")
    box = "items%d" % int(time.monotonic() * 1000)
    assert c.cmd("CREATE %s" % box).ok
    r = append(c, box, MSG, "($Work)", "02-Dec-2021 11:00:00 +0100")
    assert r.ok, r
    # claim the \\Recent message in a first selection (RFC 3501 2.3.2)
    assert c.cmd("SELECT %s" % box).ok and c.cmd("UNSELECT").ok
    assert c.cmd("SELECT %s" % box).ok
    c.box = box
    yield c
    c.close()


def lit(b):
    return b"{%d}\r\n" % len(b) + b


def test_items_exact(items_box):
    c = items_box
    cases = [
        ("FLAGS", b"FLAGS ($Work)"),
        ("INTERNALDATE", b'INTERNALDATE "02-Dec-2021 11:00:00 +0100"'),
        ("RFC822.SIZE", b"RFC822.SIZE %d" % len(MSG)),
        ("UID", b"UID 1"),
        ("RFC822.HEADER", b"RFC822.HEADER " + lit(HDR)),
        ("BODY.PEEK[HEADER]", b"BODY[HEADER] " + lit(HDR)),
        ("BODY.PEEK[TEXT]", b"BODY[TEXT] " + lit(TEXT)),
        ("BODY.PEEK[1]", b'BODY[1] ' + lit(b"Hello there")),
        ("BODY.PEEK[1]<0.5>", b'BODY[1]<0> ' + lit(b"Hello")),
        ("BODY.PEEK[1]<6.100>", b'BODY[1]<6> ' + lit(b"there")),
        ("BODY.PEEK[]<0.4>", b"BODY[]<0> " + lit(MSG[:4])),
        ("BODY.PEEK[HEADER.FIELDS (Subject To)]",
         b"BODY[HEADER.FIELDS (SUBJECT TO)] " +
         lit(b"To: bob@example.test\r\nSubject: items\r\n\r\n")),
        ("BODY.PEEK[HEADER.FIELDS.NOT (From To Subject Date Message-ID MIME-Version)]",
         b"BODY[HEADER.FIELDS.NOT (FROM TO SUBJECT DATE MESSAGE-ID MIME-VERSION)] " +
         lit(b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n')),
        ("BINARY.PEEK[2]", b"BINARY[2] ~{256}\r\n" + bytes(range(256))),
        ("BINARY.PEEK[2]<250.10>", b"BINARY[2]<250> {6}\r\n" + bytes(range(250, 256))),
        ("BINARY.SIZE[2]", b"BINARY.SIZE[2] 256"),
        ("BINARY.PEEK[1]", b"BINARY[1] " + lit(b"Hello there")),
    ]
    for item, want in cases:
        raw, tagged = raw_response(c, "FETCH 1 (%s)" % item)
        assert tagged.endswith("OK FETCH completed"), (item, tagged)
        assert raw == b"* 1 FETCH (" + want + b")\r\n", (item, raw[:300])
    # UID FETCH always carries UID (RFC 9051 6.4.9)
    raw, _ = raw_response(c, "UID FETCH 1 (FLAGS)")
    assert raw == b"* 1 FETCH (UID 1 FLAGS ($Work))\r\n", raw
    # a part that does not exist: empty (as Dovecot)
    raw, tagged = raw_response(c, "FETCH 1 (BODY.PEEK[9])")
    assert tagged.endswith("OK FETCH completed"), tagged
    # PEEK did not set \Seen
    raw, _ = raw_response(c, "FETCH 1 (FLAGS)")
    assert raw == b"* 1 FETCH (FLAGS ($Work))\r\n", raw
    # macros
    r = c.cmd("FETCH 1 FAST")
    assert r.untagged == ['* 1 FETCH (FLAGS ($Work) INTERNALDATE "02-Dec-2021 11:00:00 +0100" '
                          'RFC822.SIZE %d)' % len(MSG)], r
    r = c.cmd("FETCH 1 ALL")
    assert r.ok and "ENVELOPE (" in r.untagged[0], r
    r = c.cmd("FETCH 1 FULL")
    assert r.ok and "BODY (" in r.untagged[0], r
    assert c.cmd("FETCH 1 (NOSUCHITEM)").status == "BAD"
    assert c.cmd("FETCH 2 (FLAGS)").status == "BAD"  # beyond the view
    r = c.cmd("UID FETCH 2:9 (FLAGS)")  # no such UIDs: nothing, OK
    assert r.ok and r.untagged == [], r


def test_implicit_seen(items_box, server):
    c = items_box
    # EXAMINE: read-only, BODY[] does not set \Seen
    box = c.box
    assert c.cmd("EXAMINE %s" % box).ok
    raw, _ = raw_response(c, "FETCH 1 (BODY[1])")
    assert raw == b"* 1 FETCH (BODY[1] " + lit(b"Hello there") + b")\r\n", raw
    raw, _ = raw_response(c, "FETCH 1 (FLAGS)")
    assert raw == b"* 1 FETCH (FLAGS ($Work))\r\n", raw
    # SELECT: BODY[1] sets \Seen and the response carries the new FLAGS
    assert c.cmd("SELECT %s" % box).ok
    raw, _ = raw_response(c, "FETCH 1 (BODY[1])")
    assert b"FLAGS (\\Seen $Work)" in raw and lit(b"Hello there") in raw, raw
    raw, _ = raw_response(c, "FETCH 1 (FLAGS)")
    assert raw == b"* 1 FETCH (FLAGS (\\Seen $Work))\r\n", raw
    # already seen: no FLAGS added
    raw, _ = raw_response(c, "FETCH 1 (RFC822.TEXT)")
    assert raw == b"* 1 FETCH (RFC822.TEXT " + lit(TEXT) + b")\r\n", raw




def test_big_fetch_streamed_to_slow_reader(make_server):
    """A FETCH 1:* of 300 messages of 64 KiB (19 MiB of output) to a client
    that reads nothing for a while: the daemon holds its output limit plus a
    slice or two, never the response; then every message arrives intact."""
    srv = make_server(name="bigfetch")
    c = srv.imap_login()
    assert c.cmd("CREATE big").ok
    body = (b"0123456789abcdef" * 64 + b"\r\n") * 63
    n, batch = 300, 50
    for start in range(0, n, batch):
        tag = c.next_tag()
        parts = [("%s APPEND big" % tag).encode()]
        for i in range(start, start + batch):
            m = b"Subject: %d\r\n\r\n" % i + body
            parts.append(b" {%d+}\r\n" % len(m) + m)
        c.send(b"".join(parts) + b"\r\n")
        r = c.read_response(tag)
        assert r.ok, r
    assert c.cmd("SELECT big").ok
    before = rss_kb(srv.proc.pid)
    tag = c.next_tag()
    c.send(tag + " FETCH 1:* (UID BODY.PEEK[])\r\n")
    time.sleep(2.0)  # reading nothing
    during = rss_kb(srv.proc.pid)
    total = n * (len(body) + 16)
    if not sanitized(srv.proc.pid):
        # (under ASan freed memory sits in quarantine: RSS says nothing)
        assert during - before < 12 * 1024, (before, during, total)
    # now read slowly at first, then all of it
    got = bytearray()
    deadline = time.monotonic() + 120
    c.sock.settimeout(10)
    for _ in range(20):
        got += c.sock.recv(16384)
        time.sleep(0.02)
    end = ("\r\n%s OK" % tag).encode()
    while end not in got[-200:] or not got.endswith(b"\r\n"):
        assert time.monotonic() < deadline
        chunk = c.sock.recv(1 << 20)
        assert chunk, "closed"
        got += chunk
    c.buf = b""
    got = bytes(got)
    k = 0
    for i in range(n):
        m = b"Subject: %d\r\n\r\n" % i + body
        head = b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (i + 1, i + 1, len(m))
        assert got.startswith(head, k), (i, got[k:k + 80])
        k += len(head)
        assert got[k:k + len(m)] == m, i
        k += len(m)
        assert got.startswith(b")\r\n", k), (i, got[k:k + 80])
        k += 3
    assert got[k:] == ("%s OK FETCH completed\r\n" % tag).encode(), got[k:]
    assert c.cmd("NOOP").ok
    c.close()


def test_fetch_changed_and_flags_many(server):
    """FETCH 1:* FLAGS over more than one slice gives every message once, in order."""
    c = server.imap_login("bob@example.test")
    assert c.cmd("CREATE many").ok
    n = 1200
    m = b"Subject: x\r\n\r\nx\r\n"
    for start in range(0, n, 50):
        tag = c.next_tag()
        c.send(("%s APPEND many" % tag).encode() +
               b"".join(b" (\\Flagged) {%d+}\r\n" % len(m) + m for _ in range(50)) + b"\r\n")
        assert c.read_response(tag).ok
    assert c.cmd("SELECT many").ok and c.cmd("UNSELECT").ok
    assert c.cmd("SELECT many").ok
    r = c.cmd("FETCH 1:* (UID FLAGS)")
    assert r.untagged == ["* %d FETCH (UID %d FLAGS (\\Flagged))" % (i, i) for i in range(1, n + 1)]
    r = c.cmd("UID FETCH 1000:* (FLAGS)")
    assert r.untagged == ["* %d FETCH (UID %d FLAGS (\\Flagged))" % (i, i)
                          for i in range(1000, n + 1)]
    c.close()


def test_implicit_seen_flags_across_slices(server):
    """BODY[] of messages large enough that one worker slice stops early:
    every response still carries the \\Seen its fetch set."""
    c = server.imap_login("bob@example.test")
    assert c.cmd("CREATE seenbig").ok
    body = b"y" * 60000 + b"\r\n"  # inline (under 64 KiB): 5 fill a slice
    for i in range(6):
        assert append(c, "seenbig", b"Subject: %d\r\n\r\n" % i + body).ok
    assert c.cmd("SELECT seenbig").ok and c.cmd("UNSELECT").ok
    assert c.cmd("SELECT seenbig").ok
    raw, tagged = raw_response(c, "FETCH 1:6 (BODY[])")
    assert tagged.endswith("OK FETCH completed"), tagged
    heads = re.findall(rb"\* (\d+) FETCH \(([^{]*)\{", raw)
    assert [int(n) for n, _ in heads] == [1, 2, 3, 4, 5, 6], heads
    for n, items in heads:
        assert b"FLAGS (\\Seen)" in items, (n, items)
    r = c.cmd("SEARCH UNSEEN")
    assert r.untagged == ["* SEARCH"], r
    c.close()
