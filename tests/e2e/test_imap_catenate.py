"""CATENATE (RFC 4469): APPEND of a message made of TEXT literals and IMAP
URLs (RFC 5092) of the user's own messages, alone and in MULTIAPPEND;
[BADURL url], [TOOBIG], [TRYCREATE] before [BADURL]; imaptest's catenate
groups (Dovecot's expected responses) run commands and pass."""
import os
import re

import pytest

from conftest import ROOT, USERS, _new_server, imap_append, imap_quote
from test_imaptest import IMAPTEST, IMAPTEST_DIR, run_imaptest

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "catenate", imap_auth_plaintext_loopback="yes",
                    imap_max_errors=1000, imap_max_literal="64k")
    yield s
    s.stop()


def login(srv, user=ALICE):
    c = srv.imap("imap")
    r = c.cmd("LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
    assert r.ok, r
    return c


def sync_append(c, head, parts, tail=""):
    """head: 'APPEND box (flags) CATENATE ('; parts: [('TEXT', bytes) or
    ('URL', str)]; sends synchronising literals and waits for each '+'."""
    tag = c.next_tag()
    line = tag + " " + head
    for i, (kind, val) in enumerate(parts):
        sep = "" if i == 0 else " "
        if kind == "URL":
            line += sep + "URL " + imap_quote(val)
        else:
            c.send((line + sep + "TEXT {%d}\r\n" % len(val)).encode())
            got = c.readline()
            if not got.startswith("+"):
                return c.read_response(tag) if not got.startswith(tag + " ") else \
                    type("R", (), {"tagged": got, "ok": False})()
            c.send(val)
            line = ""
    c.send((line + ")" + tail + "\r\n").encode())
    return c.read_response(tag)


def fetch_body(c, n):
    r = c.cmd("FETCH %d BODY.PEEK[]" % n)
    assert r.ok, r
    m = re.search(r"BODY\[\] \{(\d+)\}\r\n", r.untagged[0], re.S)
    assert m, r
    return r.untagged[0][m.end():m.end() + int(m.group(1))]


MSG = (b"From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
       b"--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
       b"--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n")


def setup_box(c, name):
    c.cmd("DELETE %s" % name)
    assert c.cmd("CREATE %s" % name).ok
    r = imap_append(c, name, MSG)
    assert r.ok, r
    uidv, uid = re.search(r"APPENDUID (\d+) (\d+)", r.tagged).groups()
    return int(uidv), int(uid)


def test_catenate_assembles_parts(srv):
    """TEXT + URL of a part + URL of HEADER + PARTIAL: the exact octets; the
    tagged OK carries APPENDUID (RFC 4315)."""
    c = login(srv)
    uidv, uid = setup_box(c, "src")
    assert c.cmd("CREATE dst").ok
    r = sync_append(c, "APPEND dst (\\Seen) CATENATE (", [
        ("URL", "/src;UIDVALIDITY=%d/;UID=%d/;SECTION=HEADER.FIELDS%%20(SUBJECT)" % (uidv, uid)),
        ("TEXT", b"X-New: 1\r\n\r\n"),
        ("URL", "/src/;UID=%d/;SECTION=2" % uid),
        ("TEXT", b"--\r\n"),
        ("URL", "imap://%s@localhost/src/;UID=%d/;PARTIAL=0.6" % (ALICE.replace("@", "%40"), uid)),
        ("URL", "/SRC/;uid=%d/;section=1.MIME" % uid),
    ])
    # /SRC: mailbox names other than INBOX are case-sensitive: BADURL
    assert r.status == "NO" and "[BADURL /SRC/;uid=" in r.tagged, r
    r = sync_append(c, "APPEND dst (\\Seen) CATENATE (", [
        ("URL", "/src;UIDVALIDITY=%d/;UID=%d/;SECTION=HEADER.FIELDS%%20(SUBJECT)" % (uidv, uid)),
        ("TEXT", b"X-New: 1\r\n\r\n"),
        ("URL", "/src/;UID=%d/;SECTION=2" % uid),
        ("TEXT", b"--\r\n"),
        ("URL", "imap://%s@localhost/src/;UID=%d/;PARTIAL=0.6" % (ALICE.replace("@", "%40"), uid)),
        ("URL", "/src/;uid=%d/;section=1.MIME" % uid),
    ])
    assert r.ok, r
    assert re.search(r"OK \[APPENDUID \d+ 1\] APPEND completed", r.tagged), r
    assert c.cmd("SELECT dst").ok
    assert fetch_body(c, 1) == ("Subject: parts\r\n\r\nX-New: 1\r\n\r\nsecond part--\r\n"
                                "From: Content-Type: text/plain\r\n\r\n")
    r = c.cmd("FETCH 1 FLAGS")
    assert "\\Seen" in r.untagged[0], r
    c.cmd("LOGOUT")


def test_catenate_urls_only_and_multiappend(srv):
    """A CATENATE without any literal (URLs only) and a MULTIAPPEND mixing a
    CATENATE and a plain literal: both stored in one transaction."""
    c = login(srv)
    uidv, uid = setup_box(c, "src2")
    tag = c.next_tag()
    c.send(('%s APPEND src2 CATENATE (URL "/src2/;UID=%d/;SECTION=TEXT") (\\Flagged) {5}\r\n'
            % (tag, uid)).encode())
    assert c.readline().startswith("+")
    c.send(b"a: b\n\r\n")
    r = c.read_response(tag)
    assert r.ok, r
    assert re.search(r"APPENDUID %d %d:%d" % (uidv, uid + 1, uid + 2), r.tagged), r
    assert c.cmd("SELECT src2").ok
    assert fetch_body(c, 2) == MSG.split(b"\r\n\r\n", 1)[1].decode()
    assert fetch_body(c, 3) == "a: b\n"
    c.cmd("LOGOUT")


def test_catenate_errors(srv):
    """BADURL with the URL as given (RFC 4469 6), nothing stored; TRYCREATE
    wins over a bad URL; the result over APPENDLIMIT is NO [TOOBIG];
    another user's URL is refused; a syntax error is BAD."""
    c = login(srv)
    uidv, uid = setup_box(c, "src3")
    bad = "/src3;UIDVALIDITY=%d/;UID=%d" % (uidv + 1, uid)
    r = sync_append(c, "APPEND src3 CATENATE (", [("TEXT", b"x: y\r\n"), ("URL", bad)])
    assert r.tagged.endswith("NO [BADURL %s] Invalid or unknown URL" % bad), r
    r = sync_append(c, "APPEND src3 CATENATE (", [("URL", "/src3/;UID=%d/;SECTION=9" % uid)])
    assert "NO [BADURL /src3/;UID=%d/;SECTION=9]" % uid in r.tagged, r
    r = sync_append(c, "APPEND nosuch CATENATE (", [("URL", bad), ("TEXT", b"x: y\r\n")])
    assert "NO [TRYCREATE]" in r.tagged, r
    r = sync_append(c, "APPEND src3 CATENATE (", [
        ("URL", "imap://bob%%40example.test@localhost/src3/;UID=%d" % uid)])
    assert "NO [BADURL " in r.tagged, r
    r = c.cmd("APPEND src3 CATENATE (URL)")
    assert r.status == "BAD", r
    r = c.cmd("APPEND src3 CATENATE ()")
    assert r.status == "BAD", r
    # 64 KiB limit: a 40 KiB TEXT and the same part twice more by URL
    big = b"x: y\r\n\r\n" + b"z" * 40000
    r = imap_append(c, "src3", big)
    assert r.ok, r
    buid = int(re.search(r"APPENDUID \d+ (\d+)", r.tagged).group(1))
    r = sync_append(c, "APPEND src3 CATENATE (", [
        ("URL", "/src3/;UID=%d" % buid), ("TEXT", b"\r\n"), ("URL", "/src3/;UID=%d" % buid)])
    assert "NO [TOOBIG]" in r.tagged, r
    r = c.cmd("STATUS src3 (MESSAGES)")
    assert "MESSAGES 2" in r.untagged[0], r
    c.cmd("LOGOUT")


@pytest.mark.parametrize("group", ["catenate", "catenate-multiappend"])
def test_imaptest_catenate_groups(srv, group):
    """imaptest's scripted groups: commands run (CATENATE is named) and none
    fails."""
    assert os.access(IMAPTEST, os.X_OK), "no %s" % IMAPTEST
    rc, out = run_imaptest(srv, os.path.join(IMAPTEST_DIR, "tests", group))
    lines = [l for l in out.splitlines() if "individual commands failed" in l]
    assert lines, out[-3000:]
    ran = 0
    for l in lines:
        m = re.search(r"(\d+)/(\d+) individual commands failed", l)
        assert m and m.group(1) == "0", out[-3000:]
        ran += int(m.group(2))
    assert ran > 0, out[-3000:]
    assert "Error:" not in out, out[-3000:]


def test_catenate_text_parts_bounded_and_url_literal(srv):
    """TEXT parts add up in the message's spool: the one that takes it past
    APPENDLIMIT (64 KiB here) is refused before its "+" (RFC 4469 6
    [TOOBIG], RFC 7888); a URL given as a literal is an astring like any
    other (held inline, not taken for a message)."""
    c = login(srv)
    uidv, uid = setup_box(c, "src4")
    tag = c.next_tag()
    c.send(("%s APPEND src4 CATENATE (TEXT {40000}\r\n" % tag).encode())
    assert c.readline().startswith("+")
    c.send(b"x" * 40000 + b" TEXT {40000}\r\n")
    line = c.readline()
    assert line.startswith(tag + " NO [TOOBIG]"), line
    url = "/src4/;UID=%d/;SECTION=1" % uid
    tag = c.next_tag()
    c.send(("%s APPEND src4 CATENATE (URL {%d}\r\n" % (tag, len(url))).encode())
    assert c.readline().startswith("+")
    c.send(url.encode() + b" TEXT {2}\r\n")
    assert c.readline().startswith("+")
    c.send(b"!\n)\r\n")
    r = c.read_response(tag)
    assert r.ok, r
    assert c.cmd("SELECT src4").ok
    # part 1's body: without its MIME header, and without the CRLF that
    # belongs to the boundary (RFC 2046 5.1.1)
    assert fetch_body(c, 2) == "first part!\n"
    c.cmd("LOGOUT")


def test_catenate_badurl_code_keeps_framing(srv):
    """A URL is an astring: as a literal it may hold CR LF or "]", which
    url-resp-text (RFC 4469 6) excludes. The [BADURL] code must stay one
    line and one response code: such octets go out percent-encoded (RFC
    3986 2.1), never as an injected response line."""
    c = login(srv)
    url = "/nosuch/;UID=1]\r\n* OK [ALERT] injected"
    tag = c.next_tag()
    c.send(("%s APPEND INBOX CATENATE (URL {%d}\r\n" % (tag, len(url))).encode())
    assert c.readline().startswith("+")
    c.send(url.encode() + b")\r\n")
    line = c.readline()
    assert line.rstrip("\r\n") == (
        "%s NO [BADURL /nosuch/;UID=1%%5D%%0D%%0A* OK [ALERT%%5D injected] "
        "Invalid or unknown URL" % tag), line
    assert c.cmd("NOOP").ok
    c.cmd("LOGOUT")


def test_catenate_urls_bounded_per_command(srv):
    """Every URL part holds its message's file open from the resolution
    until the command ends: 256 parts per message and 1000 messages per
    MULTIAPPEND let one command of 256 KiB hold some 12,000 descriptors, a
    few sessions the daemon's whole RLIMIT_NOFILE. The URLs of one command
    are bounded (CAT_MAX_URLS): beyond, NO [LIMIT] (RFC 5530 3), nothing
    stored; up to it, the messages are stored."""
    c = login(srv)
    uidv, uid = setup_box(c, "src5")
    url = 'URL "/src5/;UID=%d/;SECTION=1"' % uid
    one = " CATENATE (%s)" % " ".join([url] * 128)
    r = c.cmd("APPEND src5" + one * 2)
    assert r.ok, r
    r = c.cmd("APPEND src5" + one * 3)
    assert r.tagged.endswith("NO [LIMIT] Too many CATENATE URLs in one command"), r
    r = c.cmd("STATUS src5 (MESSAGES)")
    assert "MESSAGES 3" in r.untagged[0], r
    c.cmd("LOGOUT")
