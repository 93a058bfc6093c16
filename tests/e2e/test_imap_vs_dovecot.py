"""One session through the IMAP extensions, run against postern and against
Dovecot 2.3 (Debian dovecot-imapd, a private instance: tests/e2e/dovecot.py)
in the same test (issue 9, "a session driven through every extension against
postern and against Dovecot"). Both get the same messages with the same
flags and INTERNALDATEs, then the same commands; the responses are compared
after normalizing only what is each server's own (response texts after the
status and code, UIDVALIDITY, MODSEQ values, save dates, the order of FETCH
items). Every command of the script is compared; where the two servers may
rightly differ, the test says which part is compared and why.

Dovecot 2.3 offers neither OBJECTID, UTF8=ACCEPT, REPLACE nor
CREATE-SPECIAL-USE: those are checked against the RFCs in their own test
files (test_imap_ext, test_imap_utf8, test_imap_replace, test_imap_mailbox)."""
import re
import zlib

import pytest

import dovecot
from conftest import ImapClient, _free_ports, imap_append, imap_quote


USER = "alice@example.test"
PASSWORD = "alice-Secret-1"


def msg(n, subject, date, frm="Ann <ann@example.net>", refs=None, body="plain body",
        ctype="text/plain; charset=utf-8", cte="8bit", extra=""):
    h = ["From: %s" % frm, "To: alice@example.test", "Subject: %s" % subject,
         "Date: %s" % date, "Message-ID: <m%d@example.net>" % n,
         "MIME-Version: 1.0", "Content-Type: %s" % ctype, "Content-Transfer-Encoding: %s" % cte]
    if refs:
        h.append("In-Reply-To: %s" % refs.split()[-1])
        h.append("References: %s" % refs)
    if extra:
        h.append(extra)
    return ("\r\n".join(h) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()


HTML = ("<html><body><p>Hello <b>world</b></p><p>second paragraph</p></body></html>")
MULTI = ("--b1\nContent-Type: text/plain; charset=utf-8\n\nthe plain part with zebra\n"
         "--b1\nContent-Type: application/octet-stream; name=\"a.bin\"\n"
         "Content-Transfer-Encoding: base64\n\nAAECAwQFBgcICQ==\n--b1--")

CORPUS = [
    (msg(1, "Project kickoff", "Mon, 01 Jan 2024 10:00:00 +0000", body="Let us begin the zebra plan"),
     "(\\Seen)", "01-Jan-2024 10:00:05 +0000"),
    (msg(2, "Re: Project kickoff", "Mon, 01 Jan 2024 11:00:00 +0000",
         frm="Bob <bob@example.org>", refs="<m1@example.net>", body="agreed"),
     "()", "01-Jan-2024 11:00:05 +0000"),
    (msg(3, "RE: [team] Re: Project kickoff", "Tue, 02 Jan 2024 09:30:00 +0100",
         frm="carl@example.com", refs="<m1@example.net> <m2@example.net>", body="me too"),
     "(\\Flagged)", "02-Jan-2024 08:30:05 +0000"),
    (msg(4, "=?UTF-8?Q?=C3=84pfel_und_Birnen?=", "Wed, 03 Jan 2024 12:00:00 +0000",
         frm="=?UTF-8?Q?=C3=96mer?= <oemer@example.de>", body="Gr\u00fc\u00dfe aus Berlin"),
     "($Work)", "03-Jan-2024 12:00:05 +0000"),
    (msg(5, "apples and pears", "Thu, 04 Jan 2024 08:00:00 -0500", frm="dave@example.com",
         body=HTML, ctype="text/html; charset=us-ascii", cte="7bit"),
     "(\\Seen $Work)", "04-Jan-2024 13:00:05 +0000"),
    (msg(6, "Fwd: apples and pears", "Fri, 05 Jan 2024 08:00:00 +0000", frm="erin@example.com",
         refs="<m5@example.net>", body=MULTI, ctype="multipart/mixed; boundary=\"b1\"", cte="7bit"),
     "()", "05-Jan-2024 08:00:05 +0000"),
    # a broken References chain: a parent that was never seen
    (msg(7, "Re: lost thread", "Sat, 06 Jan 2024 08:00:00 +0000", frm="frank@example.com",
         refs="<gone@example.net>", body="where is it"),
     "(\\Answered)", "06-Jan-2024 08:00:05 +0000"),
    (msg(8, "Re: lost thread", "Sun, 07 Jan 2024 08:00:00 +0000", frm="gina@example.com",
         refs="<gone@example.net> <m7@example.net>", body="here"),
     "()", "07-Jan-2024 08:00:05 +0000"),
    (msg(9, "zz no date", "", frm="Hal <hal@example.com>", body="dateless"),
     "()", "08-Jan-2024 08:00:05 +0000"),
    (msg(10, "[list] weekly report", "Mon, 08 Jan 2024 08:00:00 +0000", frm="list@example.org",
         body="Quoted-printable caf=C3=A9 text", cte="quoted-printable"),
     "(\\Deleted)", "09-Jan-2024 08:00:05 +0000"),
]


# ---- normalizing -----------------------------------------------------------------

FETCH_RE = re.compile(r"^\* (\d+) FETCH \((.*)\)$", re.S)


def fetch_items(text):
    """The items of a FETCH response's list as {NAME: value text}, in any
    order (RFC 9051 7.5.2 does not fix their order)."""
    items, i, n = {}, 0, len(text)
    while i < n:
        m = re.match(r"\s*([A-Z0-9.\-]+(?:\[[^\]]*\](?:<\d+>)?)?)\s+", text[i:], re.I)
        assert m, text[i:]
        name = m.group(1).upper()
        i += m.end()
        start, depth, inq = i, 0, False
        while i < n:
            ch = text[i]
            if inq:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    inq = False
            elif ch == '"':
                inq = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == " " and depth == 0:
                break
            elif ch == "{" and depth == 0:
                m2 = re.match(r"\{(\d+)\}\r\n", text[i:])
                if m2:
                    i += m2.end() + int(m2.group(1))
                    continue
            i += 1
        items[name] = text[start:i]
    return items


def norm(r, drop_items=()):
    """(status, untagged) of an ImapResponse with server-own parts removed."""
    out = []
    for line in r.untagged:
        m = FETCH_RE.match(line)
        if m:
            items = fetch_items(m.group(2))
            for k in drop_items:
                items.pop(k, None)
            if "FLAGS" in items:
                items["FLAGS"] = " ".join(sorted(items["FLAGS"].strip("()").split()))
            out.append(("FETCH", int(m.group(1)), tuple(sorted(items.items()))))
            continue
        line = re.sub(r"\(TAG \"[^\"]*\"\) ?", "", line)
        if line.startswith("* ESEARCH "):
            # RFC 4731 3: the return data items in any order
            words = line.split()[2:]
            uid = words[:1] == ["UID"]
            words = words[1:] if uid else words
            line = ("* ESEARCH", uid, sorted(zip(words[0::2], words[1::2])))
        else:
            line = unliteral(line)
        out.append(line)
    return r.status, out


def unliteral(line):
    """A response line with each literal written as a quoted string (RFC
    9051 4.3: the same string either way; servers choose the form)."""
    out, i = "", 0
    while True:
        m = re.search(r"\{(\d+)\+?\}\r\n", line[i:])
        if not m:
            return out + line[i:]
        start = i + m.start()
        n = int(m.group(1))
        body = line[i + m.end():i + m.end() + n]
        if "\r" in body or "\n" in body or "\0" in body:
            out += line[i:i + m.end() + n]
        else:
            out += line[i:start] + '"' + body.replace("\\", "\\\\").replace('"', '\\"') + '"'
        i = i + m.end() + n


def sel_counts(r):
    """The numbers SELECT reports that both must agree on."""
    got = {}
    for line in r.untagged:
        m = re.match(r"^\* (\d+) (EXISTS|RECENT)$", line)
        if m:
            got[m.group(2)] = int(m.group(1))
        m = re.match(r"^\* OK \[(UNSEEN|UIDNEXT) (\d+)\]", line)
        if m:
            got[m.group(1)] = int(m.group(2))
    return got


# ---- the two servers ---------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(make_server_module):
    p = make_server_module
    assert dovecot.available(), "dovecot-imapd not installed (scripts/install-deps test)"
    d = dovecot.Dovecot(p.host, _free_ports(p.host, 1)[0], {USER: PASSWORD}).start()
    try:
        yield p, d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def make_server_module(tmp_path_factory, tls_pair):
    from conftest import _new_server
    s = _new_server(tmp_path_factory, tls_pair, "vsdovecot", imap_auth_plaintext_loopback="yes")
    yield s
    s.stop()


def login(host, port):
    c = ImapClient(host, port)
    r = c.cmd("LOGIN %s %s" % (imap_quote(USER), imap_quote(PASSWORD)))
    assert r.ok, r
    return c


def both(pair):
    p, d = pair
    return login(p.host, p.ports["imap"]), login(d.host, d.port)


def same(cp, cd, command, what=norm):
    rp, rd = cp.cmd(command), cd.cmd(command)
    assert what(rp) == what(rd), "%s\npostern: %r\ndovecot: %r" % (command, rp, rd)
    return rp


@pytest.fixture(scope="module")
def loaded(pair):
    cp, cd = both(pair)
    for c in (cp, cd):
        for data, flags, idate in CORPUS:
            r = imap_append(c, "INBOX", data, "%s \"%s\"" % (flags, idate))
            assert r.ok, r
    cp.close()
    cd.close()
    return pair


# ---- the session ---------------------------------------------------------------------

def test_capabilities_postern_offers_what_dovecot_offers(pair):
    """Every extension Dovecot 2.3 announces after login, postern announces
    too, except the ones named here with the reason."""
    not_in_postern = {
        "LOGIN-REFERRALS",  # RFC 2221: no referrals to give (one server)
        "I18NLEVEL=1",      # RFC 5255 comparators: i;unicode-casemap is used, not announced
        "THREAD=REFS",      # an expired draft (issue 9: optional)
        "SNIPPET=FUZZY",    # Dovecot's pre-RFC 8970 draft name
        "PREVIEW=FUZZY",    # the same draft's algorithm name
        "SASL-IR",          # RFC 4959: for AUTHENTICATE, announced before login only
    }
    cp, cd = both(pair)
    caps = []
    for c in (cp, cd):
        r = c.cmd("CAPABILITY")
        line = [l for l in r.untagged if l.startswith("* CAPABILITY ")][0]
        caps.append(set(line.split()[2:]))
    missing = caps[1] - caps[0]
    assert missing <= not_in_postern, " ".join(sorted(missing))
    cp.close()
    cd.close()


def test_select_sort_thread_search_same(loaded):
    cp, cd = both(loaded)
    rp, rd = cp.cmd("SELECT INBOX"), cd.cmd("SELECT INBOX")
    assert rp.ok and rd.ok
    assert sel_counts(rp) == sel_counts(rd), (rp, rd)
    for cmd in [
        # RFC 5256 SORT: every key, both collations' results
        "SORT (SUBJECT) UTF-8 ALL", "SORT (REVERSE SUBJECT) UTF-8 ALL", "SORT (DATE) UTF-8 ALL",
        "SORT (ARRIVAL) UTF-8 ALL", "SORT (REVERSE ARRIVAL) UTF-8 ALL", "SORT (FROM) UTF-8 ALL",
        "SORT (TO) UTF-8 ALL", "SORT (CC SUBJECT) UTF-8 ALL", "SORT (SIZE) UTF-8 ALL",
        "UID SORT (DATE) UTF-8 UNDELETED", "SORT (DISPLAYFROM) UTF-8 ALL",
        "SORT (REVERSE DATE) US-ASCII SEEN",
        # RFC 5256 THREAD
        "THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL",
        "UID THREAD REFERENCES UTF-8 NOT DELETED",
        # RFC 4731 ESEARCH, RFC 5267 ESORT
        "SEARCH RETURN (MIN MAX COUNT ALL) ALL", "SEARCH RETURN (COUNT) UNSEEN",
        "UID SEARCH RETURN (ALL) FLAGGED", "SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL",
        "SORT RETURN (ALL) (SUBJECT) UTF-8 NOT SEEN",
        # text searches: decoded headers, QP, HTML, attachments
        "SEARCH BODY zebra", "SEARCH TEXT kickoff", "SEARCH SUBJECT \"apfel\"",
        "SEARCH CHARSET UTF-8 SUBJECT \"\u00c4pfel\"".encode().decode(),
        "SEARCH FROM \u00f6mer".encode().decode(), "SEARCH BODY caf\u00e9",
        "SEARCH HEADER References gone", "SEARCH KEYWORD $Work", "SEARCH OR FLAGGED DELETED",
        "SEARCH SENTBEFORE 03-Jan-2024", "SEARCH SINCE 05-Jan-2024",
        # RFC 5032 WITHIN: all appended long ago
        "SEARCH OLDER 3600", "SEARCH YOUNGER 3600",
        # RFC 5182 SEARCHRES
        "SEARCH RETURN (SAVE) SUBJECT kickoff", "FETCH $ (FLAGS)",
    ]:
        same(cp, cd, cmd.encode("utf-8") if not cmd.isascii() else cmd)
    cp.close()
    cd.close()


def test_fetch_same(loaded):
    """FETCH of the structure and contents; MODSEQ, SAVEDATE and the
    internal ids are each server's own and left out."""
    cp, cd = both(loaded)
    assert cp.cmd("EXAMINE INBOX").ok and cd.cmd("EXAMINE INBOX").ok
    for cmd in ["FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)",
                "FETCH 1:* (BODYSTRUCTURE)", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])",
                "FETCH 6 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[1])",
                "FETCH 1:3,6:8 (PREVIEW)"]:
        same(cp, cd, cmd)
    # RFC 8514 SAVEDATE: a date-time for each, values are each server's
    for c in (cp, cd):
        r = c.cmd("FETCH 1:* (SAVEDATE)")
        assert r.ok and len(r.untagged) == len(CORPUS), r
        assert all(re.search(r'SAVEDATE "\d\d-[A-Z][a-z]{2}-\d{4} ', l) for l in r.untagged), r
    cp.close()
    cd.close()


def test_metadata_same(pair):
    """RFC 5464: set, get with DEPTH and MAXSIZE, remove."""
    cp, cd = both(pair)
    for cmd in ["SETMETADATA INBOX (/private/comment \"my inbox\" /private/vendor/x/y \"deep\")",
                "GETMETADATA INBOX /private/comment",
                "GETMETADATA (DEPTH infinity) INBOX /private/vendor",
                "GETMETADATA (MAXSIZE 3) INBOX (/private/comment /private/vendor/x/y)",
                "GETMETADATA INBOX /private/nothing",
                "SETMETADATA INBOX (/private/comment NIL)",
                "GETMETADATA INBOX /private/comment",
                "SETMETADATA \"\" (/private/comment \"server-wide\")",
                "GETMETADATA \"\" /private/comment",
                "SETMETADATA INBOX (/shared/comment \"s\")",
                "GETMETADATA INBOX /shared/comment"]:
        same(cp, cd, cmd, what=lambda r: (r.status, [unliteral(l) for l in r.untagged]))
    cp.close()
    cd.close()


def test_catenate_same(loaded):
    """RFC 4469: a message made of a text literal and a part of another
    message by URL, then read back."""
    cp, cd = both(loaded)
    for c in (cp, cd):
        assert c.cmd("CREATE cat1").ok
        tag = c.next_tag()
        head = b"From: x@example.net\r\nSubject: cat\r\n\r\n"
        c.send(("%s APPEND cat1 (\\Seen) \"10-Jan-2024 10:00:00 +0000\" CATENATE (TEXT {%d+}\r\n"
                % (tag, len(head))).encode() + head +
               b" URL \"/INBOX;UIDVALIDITY=%s/;UID=1/;SECTION=TEXT\")\r\n" % uidvalidity(c))
        r = c.read_response(tag)
        assert r.ok, r
    assert cp.cmd("EXAMINE cat1").ok and cd.cmd("EXAMINE cat1").ok
    same(cp, cd, "FETCH 1 (BODY.PEEK[] RFC822.SIZE FLAGS INTERNALDATE)")
    cp.close()
    cd.close()


def uidvalidity(c):
    r = c.cmd("STATUS INBOX (UIDVALIDITY)")
    return re.search(r"UIDVALIDITY (\d+)", r.untagged[0]).group(1).encode()


def test_notify_same(loaded):
    """RFC 5465: NOTIFY SET for the selected mailbox and personal ones; a
    message appended by another session to another mailbox comes as STATUS
    (the MESSAGES and UIDNEXT items are compared: RFC 5465 5.2 lets a
    server add more), one to the selected mailbox as EXISTS + FETCH."""
    p, d = loaded
    cp, cd = both(loaded)
    ops = [login(p.host, p.ports["imap"]), login(d.host, d.port)]
    for c in (cp, cd):
        assert c.cmd("CREATE nbox").ok
        assert c.cmd("SELECT INBOX").ok
        r = c.cmd("NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
                  "(PERSONAL (MessageNew MessageExpunge))")
        assert r.ok, r
    for o in ops:
        assert imap_append(o, "nbox", msg(50, "to nbox", "Mon, 15 Jan 2024 08:00:00 +0000"),
                           "() \"15-Jan-2024 08:00:00 +0000\"").ok
        assert imap_append(o, "INBOX", msg(51, "to inbox", "Mon, 15 Jan 2024 09:00:00 +0000"),
                           "(\\Seen) \"15-Jan-2024 09:00:00 +0000\"").ok
    got = []
    for c in (cp, cd):
        seen = []
        for _ in range(50):
            r = c.cmd("NOOP")
            seen += r.untagged
            if any("FETCH" in l for l in seen) and any(l.startswith("* STATUS") for l in seen):
                break
        st = [l for l in seen if l.startswith("* STATUS")]
        assert st, seen
        m = re.match(r"^\* STATUS (\S+) \((.*)\)$", st[-1])
        items = dict(zip(m.group(2).split()[0::2], m.group(2).split()[1::2]))
        fetch = [norm(type("R", (), {"untagged": [l], "status": "OK"}))[1][0]
                 for l in seen if " FETCH " in l]
        exists = [l for l in seen if l.endswith(" EXISTS")]
        got.append((m.group(1), items.get("MESSAGES"), items.get("UIDNEXT"), exists[-1:], fetch))
    assert got[0] == got[1], got
    for c in ops + [cp, cd]:
        c.close()


def test_compress_same(loaded):
    """RFC 4978: after COMPRESS DEFLATE both talk raw deflate; the same
    commands answer the same through it."""
    p, d = loaded
    outs = []
    for host, port in ((p.host, p.ports["imap"]), (d.host, d.port)):
        c = login(host, port)
        r = c.cmd("COMPRESS DEFLATE")
        assert r.ok, r
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        dec = zlib.decompressobj(-15)
        sock = c.sock
        out = b""
        for i, cmd in enumerate(["EXAMINE INBOX", "SEARCH BODY zebra", "THREAD REFERENCES UTF-8 ALL",
                                 "LOGOUT"]):
            sock.sendall(comp.compress(("z%d %s\r\n" % (i, cmd)).encode()) +
                         comp.flush(zlib.Z_SYNC_FLUSH))
        sock.settimeout(15)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            out += dec.decompress(data)
        lines = [l for l in out.decode().split("\r\n")
                 if re.match(r"^\* (SEARCH|THREAD|\d+ EXISTS)|^z\d (OK|NO|BAD)", l)]
        # Dovecot runs pipelined commands side by side: its untagged
        # responses may come before an earlier command's tagged one
        outs.append(sorted(re.sub(r"^(z\d \w+) .*", r"\1", l) for l in lines))
        c.close()
    assert outs[0] == outs[1], outs
    assert "z3 OK" in outs[0], outs
