"""IMAP: several sessions on one mailbox (RFC 9051 5.2, 7.5.1; RFC 2177 IDLE).

Two sessions see each other's new mail (EXISTS), flag changes (FETCH FLAGS)
and expunges (EXPUNGE), each at the moments the RFC allows: never an
EXPUNGE during FETCH, STORE or SEARCH; at NOOP, at the end of other commands,
at once in IDLE. Mail delivered over SMTP and a POP3 DELE+QUIT reach a
session in IDLE. Sequence numbers stay consistent throughout."""
import poplib
import re
import socket
import time

import pytest

from conftest import USERS, client_tls_context, imap_append, imap_quote

MSG = (b"From: sender@example.net\r\nTo: alice@example.test\r\nSubject: %s\r\n"
       b"Message-ID: <%s@example.net>\r\n\r\nbody %s\r\n")


def msg(n):
    t = str(n).encode()
    return MSG % (t, t, t)


def wait_untagged(c, pattern, timeout=5.0):
    """Reads unsolicited lines until one matches pattern (bounded wait)."""
    deadline = time.monotonic() + timeout
    seen = []
    old = c.timeout
    try:
        while time.monotonic() < deadline:
            c.timeout = max(0.1, deadline - time.monotonic())
            try:
                line = c.readline()
            except socket.timeout:
                break
            seen.append(line)
            if re.search(pattern, line):
                return seen
    finally:
        c.timeout = old
    raise AssertionError("no %r within %.0fs; saw %r" % (pattern, timeout, seen))


def fresh_mailbox(c, name):
    r = c.cmd("CREATE %s" % imap_quote(name))
    assert r.ok, r
    return name


def settle(c, name):
    """SELECT once and leave: this session claims the mailbox's \\Recent
    messages (RFC 3501 2.3.2), so that later selections show none."""
    assert c.cmd("SELECT %s" % imap_quote(name)).ok
    assert c.cmd("UNSELECT").ok


def select(c, name):
    r = c.cmd("SELECT %s" % imap_quote(name))
    assert r.ok, r
    return r


def two_sessions(server, name, n, settled=False):
    """Sessions A and B logged in, a fresh mailbox with n messages that A
    selects first (claiming their \\Recent unless settled: none then), and
    B's SELECT response."""
    a = server.imap_login()
    b = server.imap_login()
    box = fresh_mailbox(a, name)
    for i in range(n):
        assert imap_append(a, box, msg(i)).ok
    if settled:
        settle(a, box)
    select(a, box)
    return a, b, box, select(b, box)


def test_exists_flags_expunge_between_sessions(server):
    a, b, box, r = two_sessions(server, "sync1", 3, settled=True)
    assert "* 3 EXISTS" in r.untagged

    # new mail: A's own APPEND shows its EXISTS before the tagged OK; the
    # session that learns of it first (A or B: both read it at once) has it
    # as \Recent
    r = imap_append(a, box, msg(3))
    assert r.ok and "[APPENDUID" in r.tagged, r
    assert r.untagged[0] == "* 4 EXISTS" and r.untagged[1:] in ([], ["* 1 RECENT"]), r
    a_recent = len(r.untagged) == 2
    # B learns of it at NOOP
    r = b.cmd("NOOP")
    assert r.untagged == ["* 4 EXISTS"] + ([] if a_recent else ["* 1 RECENT"]), r

    # a flag change by A is a FETCH (FLAGS) for B
    r = a.cmd("STORE 2 +FLAGS (\\Flagged)")
    assert r.untagged == ["* 2 FETCH (FLAGS (\\Flagged))"], r
    r = b.cmd("NOOP")
    assert r.untagged == ["* 2 FETCH (FLAGS (\\Flagged))"], r
    # ... and A is not told again of its own change
    r = a.cmd("NOOP")
    assert r.untagged == [], r

    # A expunges message 1; B is not told during FETCH (RFC 9051 7.5.1).
    # B polls between A's STORE and EXPUNGE, so that it knows of the
    # \Deleted before the message goes (a flag change of a message already
    # expunged cannot be read: without the NOOP, whether B is told depends
    # on whether its read of the change ran before the EXPUNGE; the flag
    # change during FETCH is test_flag_change_comes_during_fetch)
    r = a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert r.ok and r.untagged == [], r
    r = b.cmd("NOOP")
    assert r.untagged == ["* 1 FETCH (FLAGS (\\Deleted))"], r
    r = a.cmd("EXPUNGE")
    assert r.untagged == ["* 1 EXPUNGE"], r
    time.sleep(0.3)
    r = b.cmd("FETCH 1:4 (UID)")
    assert r.ok, r
    assert not any("EXPUNGE" in l for l in r.untagged), r
    # message 1 is gone from the store: the others keep B's numbers
    assert [l for l in r.untagged if "UID" in l] == [
        "* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)", "* 4 FETCH (UID 4)"], r
    assert [l for l in r.untagged if "UID" not in l] == [], r
    r = b.cmd("STORE 2 -FLAGS (\\Flagged)")
    assert not any("EXPUNGE" in l for l in r.untagged), r
    assert "* 2 FETCH (FLAGS ())" in r.untagged, r
    r = b.cmd("SEARCH ALL")
    assert not any("EXPUNGE" in l for l in r.untagged), r
    assert "* SEARCH 2 3 4" in r.untagged, r
    # at NOOP the EXPUNGE comes, and the numbers shift
    r = b.cmd("NOOP")
    assert r.untagged[0] == "* 1 EXPUNGE", r
    r = b.cmd("FETCH 1:* (UID)")
    assert r.untagged == ["* 1 FETCH (UID 2)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)"], r
    # A sees B's flag change
    r = a.cmd("NOOP")
    assert r.untagged == ["* 1 FETCH (FLAGS ())"], r
    a.close()
    b.close()


def test_flag_change_comes_during_fetch(server):
    """A flag change may be told during FETCH (RFC 9051 7.5.1 holds back
    only EXPUNGE): with an expunge by A pending for B, A's flag change on
    another message reaches B in a FETCH response, the EXPUNGE not; B's
    numbers stay as B knows them until its NOOP. B learns of the change
    after a read of its own (on a worker): B fetches until it comes
    (bounded), and every one of those responses is checked."""
    a, b, box, _ = two_sessions(server, "sync1f", 3, settled=True)
    r = a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert r.ok and r.untagged == [], r
    r = b.cmd("NOOP")  # B knows of the \Deleted before the message goes
    assert r.untagged == ["* 1 FETCH (FLAGS (\\Deleted))"], r
    r = a.cmd("EXPUNGE")
    assert r.untagged == ["* 1 EXPUNGE"], r
    r = a.cmd("STORE 1 +FLAGS (\\Flagged)")  # UID 2: A's message 1 now
    assert r.untagged == ["* 1 FETCH (FLAGS (\\Flagged))"], r
    flags = []
    deadline = time.monotonic() + 5
    while not flags and time.monotonic() < deadline:
        r = b.cmd("FETCH 3 (UID)")
        assert r.ok, r
        assert not any("EXPUNGE" in l for l in r.untagged), r
        assert "* 3 FETCH (UID 3)" in r.untagged, r
        flags = [l for l in r.untagged if "UID" not in l]
        if not flags:
            time.sleep(0.05)
    # UID 2 is still B's message 2
    assert flags == ["* 2 FETCH (FLAGS (\\Flagged))"], r
    r = b.cmd("NOOP")
    assert r.untagged == ["* 1 EXPUNGE"], r
    r = b.cmd("FETCH 1:* (UID FLAGS)")
    assert r.untagged == ["* 1 FETCH (UID 2 FLAGS (\\Flagged))", "* 2 FETCH (UID 3 FLAGS ())"], r
    a.close()
    b.close()


def test_uid_commands_may_carry_expunges(server):
    """UID FETCH may carry EXPUNGE (RFC 9051 7.5.1 names FETCH, STORE and
    SEARCH without UID only)."""
    a, b, box, _ = two_sessions(server, "sync2", 2)
    assert a.cmd("UID STORE 1 +FLAGS (\\Deleted)").ok
    assert a.cmd("EXPUNGE").ok
    time.sleep(0.3)
    r = b.cmd("UID FETCH 1:* (FLAGS)")
    assert "* 1 EXPUNGE" in r.untagged, r
    r = b.cmd("FETCH 1 (UID)")
    assert r.untagged == ["* 1 FETCH (UID 2)"], r
    a.close()
    b.close()


def test_idle_sees_smtp_delivery_and_pop3_expunge(server):
    c = server.imap_login("bob@example.test")
    r = select(c, "INBOX")
    n = int(next(l.split()[1] for l in r.untagged if l.endswith(" EXISTS")))
    tag = c.next_tag()
    c.send(tag + " IDLE\r\n")
    assert c.readline().startswith("+ "), "no continuation for IDLE"

    # SMTP delivery: EXISTS pushed (the store announces the commit; the
    # server reads the new UIDs on a worker and sends at once)
    with server.client("mx") as m:
        m.ehlo()
        r = m.mail("x@example.net", ["bob@example.test"], msg("smtp"))
        assert r.code == 250, r
    wait_untagged(c, r"^\* %d EXISTS$" % (n + 1))

    # POP3 DELE + QUIT: EXPUNGE pushed
    p = poplib.POP3_SSL(server.host, server.ports["pop3s"], context=client_tls_context(),
                        timeout=15)
    p.user("bob@example.test")
    p.pass_(USERS["bob@example.test"])
    count, _ = p.stat()
    assert count == n + 1
    p.dele(count)
    p.quit()
    wait_untagged(c, r"^\* %d EXPUNGE$" % (n + 1))

    c.send("DONE\r\n")
    r = c.read_response(tag)
    assert r.ok, r
    r = c.cmd("NOOP")
    assert r.ok and r.untagged == [], r
    c.close()


def test_idle_sees_other_imap_session(server):
    a, b, box, _ = two_sessions(server, "sync3", 3)
    tag = b.next_tag()
    b.send(tag + " IDLE\r\n")
    assert b.readline().startswith("+ ")

    assert a.cmd("STORE 3 +FLAGS (\\Seen)").ok
    wait_untagged(b, r"^\* 3 FETCH \(FLAGS \(\\Seen\)\)$")
    assert imap_append(a, box, msg(9)).ok
    wait_untagged(b, r"^\* 4 EXISTS$")
    assert a.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)").ok
    wait_untagged(b, r"^\* 2 FETCH \(FLAGS \(\\Deleted\)\)$")
    assert a.cmd("EXPUNGE").ok
    wait_untagged(b, r"^\* 2 EXPUNGE$")

    b.send("DONE\r\n")
    r = b.read_response(tag)
    assert r.ok, r
    r = b.cmd("FETCH 1:* (UID FLAGS)")
    # UID 4 is \\Recent in whichever of A and B read it first
    assert r.untagged[:2] == ["* 1 FETCH (UID 1 FLAGS ())", "* 2 FETCH (UID 3 FLAGS (\\Seen))"], r
    assert r.untagged[2:] in (["* 3 FETCH (UID 4 FLAGS ())"],
                              ["* 3 FETCH (UID 4 FLAGS (\\Recent))"]), r
    a.close()
    b.close()


def test_idle_done_and_bad(server):
    c = server.imap_login()
    select(c, "INBOX")
    tag = c.next_tag()
    c.send(tag + " IDLE\r\n")
    assert c.readline() == "+ idling"
    c.send("done\r\n")  # case-insensitive (RFC 2177)
    assert c.read_response(tag).tagged == tag + " OK IDLE terminated"
    tag = c.next_tag()
    c.send(tag + " IDLE\r\n")
    assert c.readline() == "+ idling"
    c.send("NOOP\r\n")
    r = c.read_response(tag)
    assert r.status == "BAD", r
    assert c.cmd("NOOP").ok
    c.close()


def test_deleted_mailbox_says_bye(server):
    a = server.imap_login()
    b = server.imap_login()
    box = fresh_mailbox(a, "sync4")
    select(b, box)
    assert a.cmd("DELETE %s" % box).ok
    lines = wait_untagged(b, r"^\* BYE")
    assert lines
    assert b.expect_closed()
    a.close()


def test_expunge_numbers_many_sessions(server):
    """Three sessions, interleaved expunges from two of them: each session's
    numbers stay consistent with what it was told."""
    s = [server.imap_login() for _ in range(3)]
    box = fresh_mailbox(s[0], "sync5")
    data = b"".join([])
    tag = s[0].next_tag()
    # MULTIAPPEND (RFC 3502) of 10 messages
    s[0].send(("%s APPEND %s" % (tag, box)).encode())
    for i in range(10):
        m = msg(i)
        s[0].send((" {%d+}\r\n" % len(m)).encode() + m)
    s[0].send(b"\r\n")
    r = s[0].read_response(tag)
    assert r.ok and "[APPENDUID" in r.tagged and ":" in r.tagged, r
    for c in s:
        select(c, box)
    assert s[0].cmd("STORE 2,4 +FLAGS (\\Deleted)").ok
    assert s[0].cmd("EXPUNGE").untagged == ["* 4 EXPUNGE", "* 2 EXPUNGE"]
    r1 = s[1].cmd("UID STORE 7 +FLAGS (\\Deleted)")
    assert r1.ok
    r = s[1].cmd("EXPUNGE")
    # s[1] learns of s[0]'s expunges (at the UID STORE: a UID command may
    # carry them) and of its own, in a consistent order
    exp = [l for l in r1.untagged + r.untagged if l.endswith("EXPUNGE")]
    assert exp == ["* 4 EXPUNGE", "* 2 EXPUNGE", "* 5 EXPUNGE"], (r1, r)
    r = s[2].cmd("NOOP")
    exp = [l for l in r.untagged if l.endswith("EXPUNGE")]
    assert len(exp) == 3, r
    for c in s:
        assert c.cmd("NOOP").ok  # the last expunges, where not yet told
        r = c.cmd("FETCH 1:* (UID)")
        uids = [int(re.search(r"UID (\d+)", l).group(1)) for l in r.untagged if "UID" in l]
        seqs = [int(l.split()[1]) for l in r.untagged if "UID" in l]
        assert uids == [1, 3, 5, 6, 8, 9, 10], r
        assert seqs == list(range(1, 8)), r
    for c in s:
        c.close()


def test_recent(server):
    """\\Recent (RFC 3501 2.3.2): the first session told of a message has it
    as recent; EXAMINE shows it without claiming it."""
    a = server.imap_login()
    b = server.imap_login()
    c = server.imap_login()
    box = fresh_mailbox(a, "recent1")
    for i in range(2):
        assert imap_append(a, box, msg(i)).ok
    r = b.cmd("EXAMINE %s" % box)
    assert r.untagged[1:3] == ["* 2 EXISTS", "* 2 RECENT"], r
    r = b.cmd("FETCH 1:2 (FLAGS)")
    assert r.untagged == ["* 1 FETCH (FLAGS (\\Recent))", "* 2 FETCH (FLAGS (\\Recent))"], r
    assert b.cmd("SEARCH RECENT").untagged == ["* SEARCH 1 2"]
    r = a.cmd("SELECT %s" % box)
    assert "* 2 RECENT" in r.untagged, r
    assert a.cmd("SEARCH NEW").untagged == ["* SEARCH 1 2"]
    r = c.cmd("SELECT %s" % box)
    assert "* 0 RECENT" in r.untagged, r
    assert c.cmd("SEARCH NEW").untagged == ["* SEARCH"]
    assert c.cmd("SEARCH OLD").untagged == ["* SEARCH 1 2"]
    assert c.cmd("CLOSE").ok
    # a new message: A, the session that has it selected, is told first
    assert imap_append(b, box, msg(2)).ok
    r = a.cmd("NOOP")
    assert r.untagged == ["* 3 EXISTS", "* 3 RECENT"], r
    r = a.cmd("FETCH 3 (FLAGS)")
    assert r.untagged == ["* 3 FETCH (FLAGS (\\Recent))"], r
    r = c.cmd("SELECT %s" % box)
    assert "* 0 RECENT" in r.untagged, r
    for x in (a, b, c):
        x.close()
