"""A second look at the IMAP server core as an attacker and a sloppy client
would see it (issue 7 review): literals at the edges, AUTHENTICATE edge
cases, clients that never read, connections that drop while a worker job is
in flight, mailbox-name and LIST-pattern attacks, RFC 9051 details."""
import base64
import os
import signal
import socket
import time

import pytest

from conftest import USERS, ClosedError, ImapClient, _new_server, imap_quote, rss_kb, sanitized

ALICE = "alice@example.test"


def b64(s):
    return base64.b64encode(s.encode()).decode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "imaprev", auth_failure_delay_max=1,
                    imap_auth_plaintext_loopback="yes")
    yield s
    s.stop()


def login(srv, user=ALICE):
    c = srv.imap("imap")
    r = c.cmd("LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
    assert r.ok, r
    return c



def alive(srv):
    with srv.imap("imap") as c:
        assert c.cmd("NOOP").ok


# ---- LIST patterns: bounded work on a worker ----

def create_many(c, names):
    for i, n in enumerate(names):
        c.send(("m%d CREATE %s\r\n" % (i, imap_quote(n))).encode())
    for i in range(len(names)):
        r = c.read_response("m%d" % i)
        assert r.ok or "ALREADYEXISTS" in r.tagged, r


def list_literal(c, pattern):
    return c.cmd('LIST "" {%d+}\r\n%s' % (len(pattern), pattern))


def test_list_pathological_pattern_is_cheap(srv):
    """A pattern of alternating wildcards costs its length times each name's
    to match (every position stays alive): 240k octets against 200 names of
    250 octets was ~10^10 steps on a worker (two such commands wedge both
    workers for minutes). Runs of wildcards are one wildcard, and more other
    characters than a name can have match nothing: the reply is at once."""
    c = login(srv)
    create_many(c, ["p%03d%s" % (i, "a" * 246) for i in range(200)])
    r = list_literal(c, "*%" * 120000 + "b")   # answered within the client's timeout
    assert r.tagged.endswith("OK LIST completed") and r.untagged == [], r
    r = list_literal(c, "*%" * 120000 + "a")
    assert r.ok and len(r.untagged) == 200, r.tagged
    r = list_literal(c, "p000" + "a" * 246 + "*%" * 1000)
    assert r.ok and len(r.untagged) == 1, r
    r = list_literal(c, "p000" + "a" * 400 + "%")    # longer than any name can be
    assert r.ok and r.untagged == [], r
    c.close()


def test_list_wildcard_runs_match_as_before(srv):
    c = login(srv)
    create_many(c, ["w1", "w1/w2", "w1/w2/w3"])
    names = lambda r: sorted(l.rsplit(" ", 1)[1] for l in r.untagged)
    assert names(c.cmd('LIST "" "w1%%"')) == ["w1"]
    assert names(c.cmd('LIST "" "w1%*"')) == ["w1", "w1/w2", "w1/w2/w3"]
    assert names(c.cmd('LIST "" "w1/%%%"')) == ["w1/w2"]
    assert names(c.cmd('LIST "" "w1*%/w3"')) == ["w1/w2/w3"]
    assert names(c.cmd('LIST "w1/" "%"')) == ["w1/w2"]
    r = c.cmd('LIST "w1**" ""')    # the reference's root, as before
    assert r.untagged == ['* LIST (\\Noselect) "/" ""'], r
    c.close()


def test_list_pattern_budget(srv):
    """LIST-EXTENDED takes up to 64 patterns: their total (normalised) length
    is bounded, RFC 5530 LIMIT beyond."""
    c = login(srv)
    pats = " ".join('"%s%d"' % ("x%" * 120, i) for i in range(64))
    r = c.cmd("LIST () \"\" (%s)" % pats)
    assert r.tagged.endswith("NO [LIMIT] Too many or too long patterns"), r
    r = c.cmd('LIST () "" ("w1" "w1/%%" "nomatch*")')
    assert r.ok, r
    assert c.cmd("NOOP").ok
    c.close()


# ---- input limits before login ----

def test_preauth_command_is_small(srv):
    """An anonymous connection could make the server hold imap_max_command
    (256 KiB) of command each (1,000 connections: 256 MB); before login a
    command is at most 32 KiB (LOGIN, SASL-IR and ID fit), after it the
    configured limits apply."""
    big = 40000
    with srv.imap("imap") as c:
        c.send(b'a1 ID ("x" {%d}\r\n' % big)
        assert c.readline() == "a1 NO [TOOBIG] Literal too big"   # before its octets
        assert c.cmd("NOOP").ok
        c.send(b'a2 ID ("x" {%d+}\r\n' % big + b"y" * 100)
        assert c.readline() == "* BYE [TOOBIG] Literal too big"
        c.expect_closed()
    with srv.imap("imap") as c:
        c.send(b"a1 NOOP " + b"x" * big + b"\r\n")
        assert c.readline().startswith("a1 BAD ")
        # a full-size ID (30 pairs of 30 and 1024 octets) still fits
        pairs = " ".join('"%s" "%s"' % ("f%029d" % i, "v" * 1024) for i in range(30))
        r = c.cmd("ID (%s)" % pairs)
        assert r.ok, r
        r = c.cmd("LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
        assert r.ok, r
        c.send(b'a9 ID ("x" {%d+}\r\n' % big + b"y" * big + b")\r\n")
        r = c.read_response("a9")
        assert r.ok, r
        assert c.cmd("UNAUTHENTICATE").ok
        c.send(b'b1 ID ("x" {%d}\r\n' % big)
        assert c.readline() == "b1 NO [TOOBIG] Literal too big"


def test_preauth_memory_bounded(srv):
    """60 anonymous connections from as many addresses, each in the middle of
    a 200 KiB command: the daemon held them all (12 MB, 256 MB at the
    connection limit); now each is refused at 32 KiB (RSS of the daemon)."""
    pid = srv.proc.pid
    if sanitized(pid):
        pytest.skip("RSS under AddressSanitizer measures its allocator")
    before = rss_kb(pid)
    socks = []
    try:
        for i in range(60):
            s = socket.create_connection((srv.host, srv.ports["imap"]), timeout=10,
                                         source_address=("127.9.%d.%d" % (i // 200, 2 + i % 200), 0))
            socks.append(s)
            try:
                s.sendall(b'a ID ("x" {200000+}\r\n' + b"x" * 199000)
            except OSError:
                pass  # refused and closed
        time.sleep(1.5)
        grown = rss_kb(pid) - before
        assert grown < 60 * 64, grown
    finally:
        for s in socks:
            s.close()
    alive(srv)


# ---- RFC conformance ----

def test_status_deleted_storage(srv):
    """QUOTA=RES-STORAGE is advertised: RFC 9208 5.1 makes STATUS
    DELETED-STORAGE part of it (4.1.4: what EXPUNGE would free; the sum of
    the RFC822.SIZEs of the \\Deleted messages is the value it allows). It
    was a BAD."""
    c = login(srv)
    assert "QUOTA=RES-STORAGE" in c.cmd("CAPABILITY").untagged[0].split()
    assert c.cmd("CREATE dstore").ok
    for body in (b"a" * 100, b"b" * 250, b"c" * 40):
        c.send(b"x APPEND dstore {%d+}\r\n%s\r\n" % (len(body), body))
        assert c.read_response("x").ok
    r = c.cmd("STATUS dstore (DELETED DELETED-STORAGE MESSAGES)")
    assert r.untagged == ["* STATUS dstore (DELETED 0 DELETED-STORAGE 0 MESSAGES 3)"], r
    assert c.cmd("SELECT dstore").ok
    assert c.cmd("STORE 1:2 +FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("UNSELECT").ok
    r = c.cmd("STATUS dstore (DELETED-STORAGE DELETED)")
    assert r.untagged == ["* STATUS dstore (DELETED-STORAGE 350 DELETED 2)"], r
    r = c.cmd('LIST "" dstore RETURN (STATUS (DELETED-STORAGE))')
    assert r.untagged == ['* LIST (\\HasNoChildren) "/" dstore',
                          "* STATUS dstore (DELETED-STORAGE 350)"], r
    c.close()


# ---- state: the session's own selected mailbox ----

def test_delete_own_selected_mailbox(srv):
    """DELETE of the mailbox the session has selected ended the session
    (the store's deletion notice: BYE and close): it is closed first, the
    session goes on in the authenticated state."""
    c = login(srv)
    assert c.cmd("CREATE ownsel").ok
    c.send(b"x APPEND ownsel {3+}\r\nabc\r\n")
    assert c.read_response("x").ok
    assert c.cmd("SELECT ownsel").ok
    r = c.cmd("DELETE ownsel")
    assert r.untagged == ["* OK [CLOSED] Previous mailbox is now closed"], r
    assert r.tagged.endswith("OK DELETE completed"), r
    r = c.cmd("NOOP")
    assert r.ok and r.untagged == [], r
    r = c.cmd("FETCH 1 FLAGS")
    assert r.tagged.endswith("BAD [CLIENTBUG] FETCH: no mailbox selected"), r
    r = c.cmd("SELECT INBOX")
    assert r.ok, r
    c.close()


def test_delete_selected_from_another_session_says_bye(srv):
    """Deleted from another session: BYE (RFC 9051 7.1.5), the daemon lives."""
    a, b = login(srv), login(srv)
    assert a.cmd("CREATE othersel").ok
    assert a.cmd("SELECT othersel").ok
    assert b.cmd("DELETE othersel").ok
    lines = []
    with pytest.raises(ClosedError):
        while True:   # the notice comes by itself
            lines.append(a.readline())
    assert "* BYE Selected mailbox was deleted, have to disconnect" in lines, lines
    a.close()
    b.close()
    alive(srv)


def test_rename_own_selected_mailbox(srv):
    """RENAME of the selected mailbox or of a parent of it, by the same
    session: it was renamed away under the session, which then ended
    (BYE); it stays selected under the new name instead (RFC 9051 6.3.6, as
    Dovecot; tests/e2e/test_imap_append.py checks what follows). Renaming
    INBOX (its messages move) leaves it selected."""
    c = login(srv)
    assert c.cmd("CREATE rsel/child").ok
    for sel, frm, to in (("rsel/child", "rsel", "rsel2"), ("rsel2/child", "rsel2/child", "rsel3")):
        assert c.cmd("SELECT %s" % sel).ok
        r = c.cmd("RENAME %s %s" % (frm, to))
        assert r.untagged == [], r
        assert r.tagged.endswith("OK RENAME completed"), r
        assert c.cmd("NOOP").ok
        assert c.cmd("UID FETCH 1:* FLAGS").ok   # still selected
    assert c.cmd("SELECT rsel3").ok
    r = c.cmd("RENAME rsel2 rsel4")     # not an ancestor of the selected one
    assert r.ok and r.untagged == [], r
    assert c.cmd("UID FETCH 1:* FLAGS").ok   # still selected
    assert c.cmd("SELECT INBOX").ok
    r = c.cmd("RENAME INBOX inboxold")
    assert r.ok and "[CLOSED]" not in " ".join(r.untagged), r
    assert c.cmd("UID FETCH 1:* FLAGS").ok
    c.close()


# ---- held: drops while a worker job or a password check is in flight ----

def test_drop_during_async_steps(srv):
    """Connections reset (RST) right after pipelining a command that parks
    the session on a worker or the login service (STATUS, LIST-STATUS,
    GETQUOTAROOT, SELECT, APPEND, a failing LOGIN, CREATE/RENAME/DELETE):
    the completions find the session gone (run under SAN=1: no
    use-after-free), and the daemon serves on."""
    login_line = b"a LOGIN alice@example.test alice-Secret-1\r\n"
    cmds = [b"s STATUS INBOX (MESSAGES UNSEEN DELETED-STORAGE)", b"q GETQUOTAROOT INBOX",
            b'l LIST "" * RETURN (STATUS (MESSAGES))', b"e SELECT INBOX",
            b"x APPEND INBOX {5+}\r\nhello", b"c CREATE dropz/q", b"r RENAME dropz/q dropz/r",
            b"d DELETE dropz/r"]
    for delay in (0, 0.005, 0.02):
        for cmd in cmds + [b"f LOGIN alice@example.test wrong"]:
            s = socket.create_connection((srv.host, srv.ports["imap"]), timeout=10)
            pre = b"" if cmd.startswith(b"f ") else login_line
            s.sendall(pre + cmd + b"\r\nz LOGOUT\r\n")
            time.sleep(delay)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    time.sleep(1)
    alive(srv)
    log = srv.log()
    assert "Sanitizer" not in log and "runtime error" not in log
