"""REPLACE and UID REPLACE (RFC 8508): the new message is appended to the
target mailbox, then the replaced one expunged from the selected mailbox;
the client sees "* OK [APPENDUID ...] Replacement Message ready", the
EXPUNGE (VANISHED with QRESYNC) and the tagged OK, as for MOVE (RFC 6851).
A refused REPLACE (no such message, read-only, no target) changes nothing."""
import re

import pytest

from conftest import USERS, imap_append, imap_quote

ALICE = "alice@example.test"


def login(server):
    c = server.imap("imap")
    c.starttls()
    r = c.cmd("LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
    assert r.ok, r
    return c


def literal_cmd(c, line, data):
    """tag line{N} + data (synchronising literal); the response."""
    tag = c.next_tag()
    c.send(("%s %s{%d}\r\n" % (tag, line, len(data))).encode())
    got = c.readline()
    assert got.startswith("+"), got
    c.send(data + b"\r\n")
    return c.read_response(tag)


def body(c, seq):
    r = c.cmd("FETCH %d BODY.PEEK[]" % seq)
    assert r.ok, r
    m = re.search(r"BODY\[\] \{(\d+)\}\r\n", r.untagged[0])
    return r.untagged[0][m.end():m.end() + int(m.group(1))]


def fresh(c, name, n=2):
    c.cmd("UNSELECT")
    c.cmd("DELETE %s" % name)
    assert c.cmd("CREATE %s" % name).ok
    uids = []
    for i in range(n):
        r = imap_append(c, name, b"Subject: draft %d\r\n\r\nv1\r\n" % i, "(\\Draft)")
        assert r.ok, r
        uids.append(int(re.search(r"APPENDUID \d+ (\d+)", r.tagged).group(1)))
    return uids


def test_replace_in_selected_mailbox(server):
    c = login(server)
    uids = fresh(c, "Drafts1")
    r = c.cmd("SELECT Drafts1")
    uidv = int(re.search(r"UIDVALIDITY (\d+)", " ".join(r.untagged)).group(1))
    new = b"Subject: draft 0\r\n\r\nv2\r\n"
    r = literal_cmd(c, "REPLACE 1 Drafts1 (\\Seen \\Draft) ", new)
    assert r.tagged.endswith("OK REPLACE completed"), r
    assert r.untagged[0] == "* OK [APPENDUID %d %d] Replacement Message ready" % (uidv, uids[1] + 1), r
    assert sorted(r.untagged[1:]) == ["* 1 EXPUNGE", "* 2 EXISTS"], r
    r = c.cmd("UID FETCH 1:* (UID FLAGS)")
    assert [re.search(r"UID (\d+)", l).group(1) for l in r.untagged] == [str(uids[1]), str(uids[1] + 1)]
    assert "\\Seen" in r.untagged[1] and "\\Draft" in r.untagged[1], r
    assert body(c, 2) == new.decode()
    c.cmd("LOGOUT")


def test_uid_replace_into_other_mailbox_qresync(server):
    """UID REPLACE of a draft into Sent: VANISHED (QRESYNC) for the old one,
    no EXISTS (another mailbox); Sent holds the new message."""
    c = login(server)
    uids = fresh(c, "Drafts2")
    fresh(c, "Sent2", 0)
    assert c.cmd("ENABLE QRESYNC").ok
    assert c.cmd("SELECT Drafts2").ok
    r = literal_cmd(c, "UID REPLACE %d Sent2 " % uids[0], b"Subject: sent\r\n\r\nfinal\r\n")
    assert r.tagged.endswith("OK REPLACE completed"), r
    assert re.fullmatch(r"\* OK \[APPENDUID \d+ 1\] Replacement Message ready", r.untagged[0]), r
    assert r.untagged[1:] == ["* VANISHED %d" % uids[0]], r
    r = c.cmd("STATUS Sent2 (MESSAGES)")
    assert "MESSAGES 1" in r.untagged[0]
    r = c.cmd("UID SEARCH ALL")
    assert r.untagged == ["* SEARCH %d" % uids[1]], r
    c.cmd("LOGOUT")


def test_replace_with_catenate_of_the_old_message(server):
    """A draft updated from its own parts: the URL is resolved before the
    old message is expunged."""
    c = login(server)
    uids = fresh(c, "Drafts3", 1)
    assert c.cmd("SELECT Drafts3").ok
    tag = c.next_tag()
    c.send(('%s UID REPLACE %d Drafts3 CATENATE (URL "/Drafts3/;UID=%d/;SECTION=HEADER" '
            'TEXT {4}\r\n' % (tag, uids[0], uids[0])).encode())
    assert c.readline().startswith("+")
    c.send(b"v3\r\n)\r\n")
    r = c.read_response(tag)
    assert r.tagged.endswith("OK REPLACE completed"), r
    assert "* 1 EXPUNGE" in r.untagged, r
    assert body(c, 1) == "Subject: draft 0\r\n\r\nv3\r\n"
    c.cmd("LOGOUT")


def test_replace_refused_changes_nothing(server):
    c = login(server)
    uids = fresh(c, "Drafts4")
    assert c.cmd("SELECT Drafts4").ok
    msg = b"Subject: x\r\n\r\ny\r\n"
    r = literal_cmd(c, "UID REPLACE %d Drafts4 " % (uids[1] + 10), msg)
    assert r.tagged.split(" ", 1)[1] == "NO No such message to replace", r
    r = literal_cmd(c, "REPLACE 3 Drafts4 ", msg)
    assert r.tagged.split(" ", 1)[1].startswith("BAD"), r
    r = literal_cmd(c, "REPLACE 1 Nosuch4 ", msg)
    assert r.tagged.split(" ", 1)[1] == "NO [TRYCREATE] Mailbox does not exist", r
    assert c.cmd("EXAMINE Drafts4").ok
    r = literal_cmd(c, "REPLACE 1 Drafts4 ", msg)
    assert r.tagged.split(" ", 1)[1] == "NO [READ-ONLY] Mailbox is read-only", r
    r = c.cmd("STATUS Drafts4 (MESSAGES)")
    assert "MESSAGES 2" in r.untagged[0], r
    r = c.cmd("UID SEARCH ALL")
    assert r.untagged == ["* SEARCH %d %d" % tuple(uids)], r
    # not selected: REPLACE is a selected-state command
    c.cmd("UNSELECT")
    r = c.cmd("REPLACE 1 Drafts4 {1+}\r\nx")
    assert r.status == "BAD", r
    c.cmd("LOGOUT")


def test_message_literal_spooled_only_when_the_command_can_run(server):
    """Before login an APPEND's literal is not streamed into the spool (it
    was: up to APPENDLIMIT on disk for anyone who connects); it falls under
    the pre-login command limit and is refused before its "+". Likewise a
    REPLACE's literal while no mailbox is selected (inline limit)."""
    c = server.imap("imap")
    c.starttls()
    tag = c.next_tag()
    c.send(("%s APPEND INBOX {1000000}\r\n" % tag).encode())
    line = c.readline()
    assert line.startswith(tag + " NO [TOOBIG]"), line
    c.cmd("LOGOUT")
    c = login(server)
    tag = c.next_tag()
    c.send(("%s REPLACE 1 INBOX {1000000}\r\n" % tag).encode())
    line = c.readline()
    assert line.startswith(tag + " NO [TOOBIG]"), line
    assert c.cmd("NOOP").ok
    c.cmd("LOGOUT")


def test_replace_completes_when_the_client_hangs_up(server):
    """The client sends a whole REPLACE and hangs up at once: the command
    was received, so it completes as a unit (RFC 8508 3.4): the new message
    appended AND the old one expunged, never both kept (a duplicate the
    client will not clean up). A few rounds, so that the hang-up lands
    between the append and the expunge."""
    import time
    w = login(server)
    for rnd in range(6):
        name = "DraftsHup%d" % rnd
        fresh(w, name, n=1)
        r = w.cmd("STATUS %s (UIDNEXT)" % name)
        uidnext = int(re.search(r"UIDNEXT (\d+)", r.untagged[0]).group(1))
        c = login(server)
        assert c.cmd("SELECT %s" % name).ok
        new = b"Subject: draft\r\n\r\n" + b"v2 " * (20000 * rnd + 1) + b"\r\n"
        tag = c.next_tag()
        c.send(("%s REPLACE 1 %s {%d+}\r\n" % (tag, name, len(new))).encode() + new + b"\r\n")
        c.close()
        deadline = time.monotonic() + 10
        while True:
            r = w.cmd("STATUS %s (MESSAGES UIDNEXT)" % name)
            m = re.search(r"MESSAGES (\d+) UIDNEXT (\d+)", r.untagged[0])
            messages, nxt = int(m.group(1)), int(m.group(2))
            if (messages == 1 and nxt > uidnext) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (messages, nxt) == (1, uidnext + 1), (rnd, messages, nxt)
    w.cmd("LOGOUT")
