"""IMAP APPEND and the selected mailbox (issue 7): a literal8 (RFC 3516) of
several MB streamed with bounded memory and its binary part converted,
MULTIAPPEND (RFC 3502) beyond 64 messages and its cap (a tagged NO, never a
BYE), RENAME of the selected mailbox (RFC 9051 6.3.6: it stays selected),
and a selected mailbox deleted or renamed by the admin CLI (another process):
BYE at the session's next command, as Dovecot."""
import base64
import os
import re
import time

import pytest

from conftest import ClosedError, rss_kb, sanitized

ALICE = "alice@example.test"


def raw_response(c, tag, timeout=60):
    """Every octet up to and including the tagged line (binary-safe)."""
    deadline = time.monotonic() + timeout
    chunks, c.buf = [c.buf], b""
    end = re.compile(rb"(?:^|\r\n)" + re.escape(tag.encode()) + rb" [^\r\n]*\r\n")
    tail = chunks[0]
    while True:
        m = end.search(tail)
        if m:
            raw = b"".join(chunks)
            m = end.search(raw, len(raw) - len(tail))
            c.buf = raw[m.end():]
            return raw[:m.end()]
        c._fill(deadline)
        chunks.append(c.buf)
        tail, c.buf = tail[-300:] + c.buf, b""



def uidvalidity(c, mailbox):
    r = c.cmd("STATUS %s (UIDVALIDITY)" % mailbox)
    return re.search(r"UIDVALIDITY (\d+)", r.untagged[0]).group(1)


# ---- literal8 ----

def binary_message(n_octets):
    """A multipart with a text part and an octet-stream part of n_octets
    binary octets holding NULs (so it must be converted)."""
    body = bytes((i * 7 + (i >> 9)) & 0xff for i in range(256)) * (n_octets // 256)
    body = body[:n_octets]
    assert b"\0" in body
    head = (b"From: a@example.test\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
            b"--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--zz\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n")
    return head + body + b"\r\n--zz--\r\n", body


def test_literal8_large_streams_and_converts(make_server):
    """A literal8 of 8 MB whose binary part holds NULs: the daemon's
    anonymous memory does not grow by the message while it arrives (it
    streams to the spool; the conversion runs on a worker over the spool
    file), and the stored message gives the original octets back through
    BINARY[2], while BODY[2] is the base64 form (no NUL in BODY[])."""
    srv = make_server("lit8big", imap_max_literal="32m")
    pid = srv.proc.pid
    msg, body = binary_message(8 * 1024 * 1024)
    c = srv.imap_login(ALICE, role="imap")
    assert c.cmd("SELECT INBOX").ok
    before = rss_kb(pid, "RssAnon")
    tag = c.next_tag()
    c.send(("%s APPEND INBOX ~{%d}\r\n" % (tag, len(msg))).encode())
    assert c.readline().startswith("+")
    cut = len(msg) * 9 // 10
    for i in range(0, cut, 256 * 1024):
        c.send(msg[i:min(i + 256 * 1024, cut)])
    # 90% sent: the daemon has read it (bounded wait) and holds none of it
    deadline = time.monotonic() + 10
    peak = rss_kb(pid, "RssAnon")
    while time.monotonic() < deadline:
        time.sleep(0.2)
        peak = max(peak, rss_kb(pid, "RssAnon"))
    grow_mid = peak - before
    c.send(msg[cut:] + b"\r\n")
    r = c.read_response(tag)
    assert r.ok, r
    assert re.search(r"OK \[APPENDUID \d+ 1\] APPEND completed", r.tagged), r
    after = rss_kb(pid, "RssAnon")
    limit_kb = len(msg) // 1024 // 4   # a quarter of the message
    if sanitized(pid):  # its quarantine: RSS grows with all it freed
        limit_kb = 1 << 30
    assert grow_mid < limit_kb, "RssAnon grew %d KB while the literal arrived" % grow_mid
    assert after - before < limit_kb, "RssAnon grew %d KB after the APPEND" % (after - before)
    # the stored message: BINARY[2] gives the octets back, BODY[2] is base64
    tag = c.next_tag()
    c.send(("%s FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])\r\n" % tag).encode())
    raw = raw_response(c, tag)
    assert ("BINARY.SIZE[2] %d" % len(body)).encode() in raw, raw[:300]
    m = re.search(rb"BINARY\[2\] ~\{(\d+)\}\r\n", raw)
    assert m, raw[:300]
    n = int(m.group(1))
    assert n == len(body)
    assert raw[m.end():m.end() + n] == body
    tag = c.next_tag()
    c.send(("%s FETCH 1 (BODY.PEEK[2.MIME] BODY.PEEK[2]<0.76>)\r\n" % tag).encode())
    raw = raw_response(c, tag)
    assert b"Content-Transfer-Encoding: base64\r\n" in raw, raw[:400]
    assert base64.b64encode(body[:57]) in raw, raw[:400]
    tag = c.next_tag()
    c.send(("%s FETCH 1 BODY.PEEK[]\r\n" % tag).encode())
    raw = raw_response(c, tag)
    assert b"\0" not in raw
    c.close()


def test_literal8_small_forms_kept(make_server):
    """A small literal8 with a NUL is converted (imaptest append-binary);
    one without a NUL is stored as it came; MULTIAPPEND mixing both, with
    LITERAL+, gets one APPENDUID range."""
    srv = make_server("lit8small")
    c = srv.imap_login(ALICE, role="imap")
    assert c.cmd("CREATE b8").ok
    uv = uidvalidity(c, "b8")
    m1 = (b"Content-Type: application/octet-stream\r\n"
          b"Content-Transfer-Encoding: binary\r\n\r\n\0-\xe4\n\r\n\n")
    m2 = "Subject: b\r\nContent-Transfer-Encoding: binary\r\n\r\nGrüße\r\n".encode()
    tag = c.next_tag()
    c.send(("%s APPEND b8 ~{%d+}\r\n" % (tag, len(m1))).encode() + m1 +
           (" ~{%d+}\r\n" % len(m2)).encode() + m2 + b"\r\n")
    r = c.read_response(tag)
    assert r.tagged == "%s OK [APPENDUID %s 1:2] APPEND completed" % (tag, uv), r
    assert c.cmd("SELECT b8").ok
    tag = c.next_tag()
    c.send(("%s FETCH 1:2 (BODY.PEEK[] BINARY.PEEK[1])\r\n" % tag).encode())
    raw = raw_response(c, tag)
    want1 = (b"Content-Type: application/octet-stream\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\nAC3kCg0KCg==")
    assert want1 in raw, raw
    assert b"BINARY[1] ~{7}\r\n\0-\xe4\n\r\n\n" in raw, raw
    assert m2 in raw, raw
    c.close()


def test_literal8_connection_dropped_during_conversion(make_server):
    """The client goes away right after a large literal8 (the conversion
    still running on a worker): nothing is stored, the daemon lives."""
    srv = make_server("lit8drop", imap_max_literal="32m")
    msg, _ = binary_message(4 * 1024 * 1024)
    c = srv.imap_login(ALICE, role="imap")
    tag = c.next_tag()
    c.send(("%s APPEND INBOX ~{%d+}\r\n" % (tag, len(msg))).encode() + msg)
    c.close()
    c = srv.imap_login(ALICE, role="imap")
    r = c.cmd("STATUS INBOX (MESSAGES)")
    assert r.ok and r.untagged == ["* STATUS INBOX (MESSAGES 0)"], r
    c.close()


# ---- MULTIAPPEND ----

def test_multiappend_many_messages(make_server):
    """200 messages in one MULTIAPPEND (LITERAL+): all stored, one APPENDUID
    range (it was BYE past 64)."""
    srv = make_server("manyappend")
    c = srv.imap_login(ALICE, role="imap")
    assert c.cmd("CREATE many").ok
    uv = uidvalidity(c, "many")
    parts = [("%s APPEND many" % "x").encode()]
    for i in range(200):
        m = b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i)
        parts.append(b" (\\Seen) {%d+}\r\n" % len(m) + m)
    c.send(b"".join(parts) + b"\r\n")
    r = c.read_response("x")
    assert r.tagged == "x OK [APPENDUID %s 1:200] APPEND completed" % uv, r
    r = c.cmd("STATUS many (MESSAGES UNSEEN)")
    assert r.untagged == ["* STATUS many (MESSAGES 200 UNSEEN 0)"], r
    c.close()


def test_multiappend_over_cap_is_tagged_no(make_server):
    """Past 1000 messages: a synchronising literal gets a tagged NO [LIMIT]
    before its "+", a {N+} one is read and dropped and the command answered
    NO [LIMIT]; nothing is stored, the connection goes on."""
    srv = make_server("capappend")
    c = srv.imap_login(ALICE, role="imap")
    assert c.cmd("CREATE cap").ok
    m = b"Subject: c\r\n\r\nx\r\n"
    one = b" {%d+}\r\n" % len(m) + m
    c.send(b"y APPEND cap" + one * 1000 + (b" {%d}\r\n" % len(m)))
    r = c.read_response("y")
    assert r.tagged == "y NO [LIMIT] Too many messages in one APPEND (at most 1000)", r
    c.send(b"z APPEND cap" + one * 1001 + b"\r\n")
    r = c.read_response("z")
    assert r.tagged == "z NO [LIMIT] Too many messages in one APPEND (at most 1000)", r
    r = c.cmd("STATUS cap (MESSAGES)")
    assert r.untagged == ["* STATUS cap (MESSAGES 0)"], r
    c.close()


# ---- RENAME of the selected mailbox ----

def test_rename_selected_keeps_it_selected(make_server):
    """RFC 9051 6.3.6: the session that renames its selected mailbox (or a
    parent of it) stays selected, under the new name: no [CLOSED], FETCH
    works, and new mail to the new name shows as EXISTS."""
    srv = make_server("renamesel")
    c = srv.imap_login(ALICE, role="imap")
    other = srv.imap_login(ALICE, role="imap")
    assert c.cmd("CREATE top/sel").ok
    c.send(b"x APPEND top/sel {12+}\r\nSubject:\r\n\r\n\r\n")
    assert c.read_response("x").ok
    assert c.cmd("SELECT top/sel").ok
    r = c.cmd("RENAME top/sel moved")
    assert r.tagged.endswith("OK RENAME completed") and r.untagged == [], r
    r = c.cmd("FETCH 1 (UID FLAGS)")
    assert r.ok and r.untagged == ["* 1 FETCH (UID 1 FLAGS (\\Recent))"], r
    r = c.cmd("RENAME moved top2/deep")
    assert r.ok and r.untagged == [], r
    assert c.cmd("RENAME top2 top3").ok   # a parent of the selected one
    other.send(b"y APPEND top3/deep {12+}\r\nSubject:\r\n\r\n\r\n")
    assert other.read_response("y").ok
    r = c.cmd("NOOP")
    assert r.ok and "* 2 EXISTS" in r.untagged, r
    r = c.cmd("STORE 2 +FLAGS (\\Seen)")
    assert r.ok, r
    r = other.cmd("STATUS top3/deep (MESSAGES UNSEEN)")
    assert r.untagged == ["* STATUS top3/deep (MESSAGES 2 UNSEEN 1)"], r
    # a failed RENAME leaves the selection as it was
    assert c.cmd("CREATE taken").ok
    r = c.cmd("RENAME top3/deep taken")
    assert r.tagged.split(" ", 1)[1].startswith("NO [ALREADYEXISTS]"), r
    r = c.cmd("FETCH 2 FLAGS")
    assert r.ok and len(r.untagged) == 1 and "\\Seen" in r.untagged[0], r
    c.close()
    other.close()


# ---- the admin CLI under a selected mailbox ----

@pytest.mark.parametrize("how", ["delete", "rename", "replace"])
def test_cli_change_of_selected_mailbox_says_bye(make_server, how):
    """`postern mailbox delete|rename` (another process) of a mailbox IMAP
    sessions have selected: they were told NO at their next command; now
    each gets "* BYE Selected mailbox was deleted, have to disconnect"
    (Dovecot's words) by itself, idle or in IDLE, and the connection
    closes; a session on another mailbox goes on. "replace": deleted and
    created again under the same name (a new UIDVALIDITY): the same."""
    srv = make_server("cli" + how)
    c = srv.imap_login(ALICE, role="imap")
    idle = srv.imap_login(ALICE, role="imap")
    other = srv.imap_login(ALICE, role="imap")
    assert c.cmd("CREATE gone").ok
    c.send(b"x APPEND gone {12+}\r\nSubject:\r\n\r\n\r\n")
    assert c.read_response("x").ok
    assert c.cmd("SELECT gone").ok
    assert idle.cmd("SELECT gone").ok
    assert other.cmd("SELECT INBOX").ok
    idle.send(b"i IDLE\r\n")
    assert idle.readline().startswith("+")
    if how == "delete":
        srv.cli("mailbox", "delete", ALICE, "gone")
    elif how == "replace":
        srv.cli("mailbox", "delete", ALICE, "gone")
        srv.cli("mailbox", "create", ALICE, "gone")
    else:
        srv.cli("mailbox", "rename", ALICE, "gone", "elsewhere")
    for sess in (c, idle):
        lines = []
        with pytest.raises(ClosedError):
            for _ in range(10):
                lines.append(sess.readline())
        assert lines == ["* BYE Selected mailbox was deleted, have to disconnect"], lines
    assert other.cmd("NOOP").ok
    r = other.cmd("LIST \"\" *")
    assert r.ok and any(u.endswith('"/" elsewhere') for u in r.untagged) == (how == "rename"), r
    c.close()
    idle.close()
    other.close()
