"""Issue 9's commands with the client gone in the middle, or never reading:
GETMETADATA of big values parked on the output bound, NOTIFY with
MessageNew fetch-att while deliveries pour in, COMPRESS with a FETCH
half-read, CATENATE of URLs and SETMETADATA in flight. The daemon must
neither crash nor report anything under the sanitizer (conftest fails a
test whose daemon printed a report), and must keep serving the user."""
import re
import socket
import time

from conftest import imap_append

ALICE = "alice@example.test"


def literal(c, head, data, tail=b")\r\n"):
    c.send(head + b"{%d}\r\n" % len(data))
    line = c.readline()
    assert line.startswith("+"), line
    c.send(data + tail)


def alive(srv):
    with srv.imap_login(ALICE) as c:
        assert c.cmd("NOOP").ok


def test_getmetadata_hangup_while_parked(make_server):
    """Values far past the output bound: the client reads nothing, the
    response parks on the bound (and between slices), the client hangs up."""
    srv = make_server(imap_metadata_max_size="64k", imap_metadata_max_entries="100")
    with srv.imap_login(ALICE) as c:
        for i in range(40):
            v = (b"%02d" % i) * (32 * 1024)
            tag = c.next_tag()
            literal(c, tag.encode() + b" SETMETADATA INBOX (/private/big/%02d " % i, v)
            assert c.read_response(tag).ok
    for rnd in range(4):
        c = srv.imap_login(ALICE)
        c.send(b"x GETMETADATA (DEPTH infinity) INBOX /private\r\n"
               b"y GETMETADATA \"\" /shared/admin\r\n")
        time.sleep(0.2 * rnd)
        c.close()
    alive(srv)


def test_setmetadata_and_catenate_hangup_in_flight(make_server):
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE cat").ok
        r = imap_append(c, "cat", b"Subject: s\r\n\r\nbody\r\n")
        uid = int(re.search(r"APPENDUID \d+ (\d+)", r.tagged).group(1))
    for rnd in range(4):
        c = srv.imap_login(ALICE)
        c.send(b"a SETMETADATA cat (/private/x \"v\")\r\n"
               b"b APPEND cat CATENATE (URL \"/cat/;UID=%d\" URL \"/cat/;UID=%d/;SECTION=TEXT\")\r\n"
               b"c GETMETADATA cat /private/x\r\n" % (uid, uid))
        time.sleep(0.05 * rnd)
        c.close()
    alive(srv)


def test_notify_fetch_hangup_with_deliveries(make_server):
    """NOTIFY with MessageNew (BODY.PEEK[]) on the selected mailbox; another
    session appends while the first never reads, then the first hangs up."""
    srv = make_server()
    with srv.imap_login(ALICE) as w:
        assert w.cmd("CREATE nbox").ok
        c = srv.imap_login(ALICE)
        assert c.cmd("SELECT nbox").ok
        r = c.cmd("NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge "
                  "FlagChange)) (PERSONAL (MessageNew MessageExpunge MailboxName))")
        assert r.ok, r
        body = b"Subject: n\r\n\r\n" + b"z" * 100000 + b"\r\n"
        for i in range(30):
            assert imap_append(w, "nbox", body).ok
            if i == 10:
                assert w.cmd("CREATE nbox2").ok
            if i == 20:
                assert w.cmd("STORE 1:* +FLAGS (\\Seen)").status in ("OK", "BAD")
        c.close()
        for i in range(5):
            assert imap_append(w, "nbox", body).ok
        assert w.cmd("NOOP").ok
    alive(srv)


def test_compress_hangup_mid_fetch(make_server):
    """COMPRESS DEFLATE, a FETCH of every body, the client reads a little
    and hangs up."""
    import zlib
    srv = make_server()
    with srv.imap_login(ALICE) as w:
        assert w.cmd("CREATE zbox").ok
        for i in range(20):
            assert imap_append(w, "zbox", b"Subject: z\r\n\r\n" + bytes(range(256)) * 800).ok
    for rnd in range(3):
        c = srv.imap_login(ALICE)
        r = c.cmd("COMPRESS DEFLATE")
        assert r.tagged.endswith("OK DEFLATE active"), r
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        c.send(comp.compress(b"s SELECT zbox\r\nf FETCH 1:* BODY[]\r\nn NOOP\r\n")
               + comp.flush(zlib.Z_SYNC_FLUSH))
        if rnd > 0:
            c.sock.settimeout(2)
            try:
                c.sock.recv(1000 * rnd)
            except socket.timeout:
                pass
        c.close()
    alive(srv)


MALFORMED = [
    # (command, expected status) -- syntax errors are BAD (RFC 9051 7.1.5)
    ("GETMETADATA", "BAD"),
    ("GETMETADATA INBOX", "BAD"),
    ("GETMETADATA INBOX ()", "BAD"),
    ("GETMETADATA (MAXSIZE) INBOX /private/a", "BAD"),
    ("GETMETADATA (DEPTH 2) INBOX /private/a", "BAD"),
    ("GETMETADATA () INBOX /private/a", "BAD"),
    ("GETMETADATA (MAXSIZE 99999999999) INBOX /private/a", "BAD"),
    ("GETMETADATA INBOX (/private/a) (/private/b)", "BAD"),
    ("GETMETADATA INBOX /private//a", "BAD"),
    ("GETMETADATA INBOX /private/a*", "BAD"),
    ("GETMETADATA INBOX NIL", "BAD"),
    ("GETMETADATA INBOX /other", "BAD"),
    ("GETMETADATA nosuchbox /private/a", "NO"),
    ("SETMETADATA INBOX", "BAD"),
    ("SETMETADATA INBOX ()", "BAD"),
    ("SETMETADATA INBOX (/private/a)", "BAD"),
    ("SETMETADATA INBOX (/private/a atom)", "BAD"),
    ("SETMETADATA INBOX (/private/a \"v\") extra", "BAD"),
    ("SETMETADATA INBOX (/private \"v\")", "BAD"),
    ("SETMETADATA \"\" (/shared/x \"v\")", "NO"),
    ("SETMETADATA nosuchbox (/private/a \"v\")", "NO"),
    ("NOTIFY", "BAD"),
    ("NOTIFY SET", "BAD"),
    ("NOTIFY SET STATUS", "BAD"),
    ("NOTIFY SET ()", "BAD"),
    ("NOTIFY SET (SELECTED)", "BAD"),
    ("NOTIFY SET (SUBTREE)", "BAD"),
    ("NOTIFY SET (MAILBOXES () (MessageNew MessageExpunge))", "BAD"),
    ("NOTIFY SET (PERSONAL ())", "BAD"),
    ("NOTIFY SET (PERSONAL (MessageNew (UID)))", "BAD"),
    ("NOTIFY SET (SELECTED (MessageNew (NOSUCHATT) MessageExpunge))", "BAD"),
    ("NOTIFY SET (SELECTED (MailboxName))", "BAD"),
    ("NOTIFY SET (PERSONAL (AnnotationChange))", "NO"),
    ("NOTIFY SET (BOGUS (MessageNew))", "BAD"),
    ("NOTIFY NONE extra", "BAD"),
    ("COMPRESS", "BAD"),
    ("COMPRESS GZIP", "BAD"),
    ("COMPRESS DEFLATE extra", "BAD"),
    ("APPEND INBOX CATENATE", "BAD"),
    ("APPEND INBOX CATENATE ()", "BAD"),
    ("APPEND INBOX CATENATE (URL)", "BAD"),
    ("APPEND INBOX CATENATE (TEXT \"x\")", "BAD"),
    ("APPEND INBOX CATENATE (FOO \"x\")", "BAD"),
    ("APPEND INBOX CATENATE (URL \"\")", "NO"),
    ("APPEND INBOX CATENATE (URL \"/INBOX/;UID=0\")", "NO"),
    ("APPEND INBOX CATENATE (URL \"/INBOX/;UID=99999999999\")", "NO"),
    ("APPEND INBOX CATENATE (URL \"/INBOX/;UID=1/;PARTIAL=\")", "NO"),
    ("APPEND INBOX CATENATE (URL \"/INBOX/;UID=1/;SECTION=\")", "NO"),
    ("APPEND INBOX CATENATE (URL \"imap://@/INBOX/;UID=1\")", "NO"),
    ("APPEND INBOX CATENATE (URL \"/%ZZ/;UID=1\")", "NO"),
    ("APPEND INBOX CATENATE (URL \"/%00/;UID=1\")", "NO"),
    ("APPEND INBOX UTF8 (\"x\")", "BAD"),
    ("APPEND INBOX UTF8", "BAD"),
    ("REPLACE", "BAD"),
    ("UID REPLACE", "BAD"),
]


def test_malformed_arguments(make_server):
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        r = imap_append(c, "INBOX", b"Subject: s\r\n\r\nbody\r\n")
        assert r.ok, r
        for cmd, want in MALFORMED:
            r = c.cmd(cmd)
            assert r.status == want, (cmd, r)
        assert c.cmd("SELECT INBOX").ok
        for cmd, want in [("REPLACE 0 INBOX", "BAD"), ("REPLACE 5 INBOX", "BAD"),
                          ("UID REPLACE 99 INBOX", "NO"), ("REPLACE 1", "BAD"),
                          ("REPLACE x INBOX", "BAD")]:
            r = c.cmd(cmd)
            assert r.status == want, (cmd, r)
        assert c.cmd("NOOP").ok


def test_pipelined_commands_answer_in_order(make_server):
    """Issue 9's commands sent in one write: each answered once, in order,
    the parked ones (store reads and writes) holding back the next."""
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        c.send(b"p1 SETMETADATA INBOX (/private/a \"1\" /private/b {1+}\r\n2)\r\n"
               b"p2 GETMETADATA (DEPTH 1) INBOX /private\r\n"
               b"p3 NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))\r\n"
               b"p4 SETMETADATA INBOX (/private/a NIL)\r\n"
               b"p5 GETMETADATA INBOX (/private/a /private/b)\r\n"
               b"p6 NOTIFY NONE\r\n"
               b"p7 CREATE pipebox\r\n"
               b"p8 APPEND pipebox CATENATE (TEXT {12+}\r\nSubject: p\r\n TEXT {6+}\r\n\r\nhi\r\n)\r\n"
               b"p9 NOOP\r\n")
        tags = []
        lines = []
        while len(tags) < 9:
            line = c.readline()
            lines.append(line)
            m = re.match(r"(p\d) ", line)
            if m:
                tags.append(m.group(1))
                assert " OK " in line, lines
        assert tags == ["p%d" % i for i in range(1, 10)], lines
        assert '* METADATA INBOX (/private/a "1" /private/b "2")' in lines, lines
        assert '* METADATA INBOX (/private/a NIL /private/b "2")' in lines, lines
