"""IMAP NOTIFY (RFC 5465) across sessions.

One session sets NOTIFY, another (or SMTP) changes mailboxes; the first
receives, without asking and between its commands, exactly the untagged
responses RFC 5465 prescribes: STATUS for mailboxes not selected (5.2),
LIST for mailboxes created, renamed, deleted (5.4) and subscriptions (5.5),
EXISTS / FETCH / EXPUNGE for the selected one (SELECTED; SELECTED-DELAYED
holds the expunges back, 6.1). NOTIFY NONE stops them; too many at once
give [NOTIFICATIONOVERFLOW] and stop them too (5.8); unsupported events are
refused with [BADEVENT] (5)."""
import re
import socket
import time

import pytest

from conftest import imap_append, imap_quote

MSG = (b"From: sender@example.net\r\nTo: alice@example.test\r\nSubject: n%s\r\n"
       b"Message-ID: <notify-%s@example.net>\r\n\r\nbody %s\r\n")
EVENTS = "(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)"


def msg(n):
    t = str(n).encode()
    return MSG % (t, t, t)


@pytest.fixture
def sessions(server):
    """sessions(*boxes, user=...): two sessions of user, closed when the
    test ends: a, which sets NOTIFY and receives, and b, which makes the
    changes, having created boxes."""
    opened = []

    def make(*boxes, user="alice@example.test"):
        a = server.imap_login(user)
        opened.append(a)
        b = server.imap_login(user)
        opened.append(b)
        for box in boxes:
            assert b.cmd("CREATE %s" % box).ok
        return a, b
    yield make
    for c in opened:
        c.close()


def read_within(c, timeout):
    """The next line from c, or None when none comes within timeout seconds."""
    old = c.timeout
    c.timeout = timeout
    try:
        return c.readline()
    except socket.timeout:
        return None
    finally:
        c.timeout = old


def unsolicited(c, n, timeout=5.0):
    """Reads exactly n unsolicited lines (bounded wait), then checks that
    nothing more comes within a short while."""
    deadline = time.monotonic() + timeout
    lines = []
    while len(lines) < n and time.monotonic() < deadline:
        line = read_within(c, max(0.1, deadline - time.monotonic()))
        if line is None:
            break
        lines.append(line)
    assert len(lines) == n, "wanted %d unsolicited lines, got %r" % (n, lines)
    assert quiet(c), lines
    return lines


def quiet(c, wait=0.6):
    """Nothing unsolicited arrives within wait seconds."""
    return c.pending(wait) == b""


def status_of(c, box, items):
    r = c.cmd("STATUS %s (%s)" % (imap_quote(box), items))
    assert r.ok, r
    m = re.search(r"\((.*)\)$", r.untagged[-1])
    f = m.group(1).split()
    return dict(zip(f[0::2], (int(x) for x in f[1::2])))


def test_status_for_other_mailboxes(sessions):
    a, b = sessions("nt1", "nt1/sub", "nt1x")
    r = a.cmd("NOTIFY SET (SUBTREE nt1 (MessageNew MessageExpunge FlagChange))")
    assert r.ok and r.untagged == [], r
    uv = status_of(b, "nt1", "UIDVALIDITY")["UIDVALIDITY"]
    uv_sub = status_of(b, "nt1/sub", "UIDVALIDITY")["UIDVALIDITY"]

    # RFC 5465 5.2: MessageNew for a mailbox not selected: STATUS
    assert imap_append(b, "nt1", msg(1)).ok
    assert unsolicited(a, 1) == ["* STATUS nt1 (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d)" % uv]
    assert imap_append(b, "nt1/sub", msg(2)).ok
    assert unsolicited(a, 1) == [
        "* STATUS nt1/sub (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d)" % uv_sub]
    # outside the subtree ("nt1x" is not under "nt1/"): nothing
    assert imap_append(b, "nt1x", msg(3)).ok
    assert quiet(a)

    # FlagChange: UIDVALIDITY and HIGHESTMODSEQ
    assert b.cmd("SELECT nt1").ok
    assert b.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    hm = status_of(b, "nt1", "HIGHESTMODSEQ")["HIGHESTMODSEQ"]
    assert unsolicited(a, 1) == ["* STATUS nt1 (UIDVALIDITY %d HIGHESTMODSEQ %d)" % (uv, hm)]
    # MessageExpunge: MESSAGES
    assert b.cmd("EXPUNGE").ok
    assert unsolicited(a, 1) == ["* STATUS nt1 (MESSAGES 0)"]

    # a command of A's own is answered as usual in between
    r = a.cmd("NOOP")
    assert r.ok and r.untagged == [], r
    # with CONDSTORE on, every STATUS carries HIGHESTMODSEQ (RFC 7162 3.1)
    assert a.cmd("ENABLE CONDSTORE").ok
    assert imap_append(b, "nt1", msg(4)).ok
    hm = status_of(b, "nt1", "HIGHESTMODSEQ")["HIGHESTMODSEQ"]
    assert unsolicited(a, 1) == [
        "* STATUS nt1 (MESSAGES 1 UIDNEXT 3 UIDVALIDITY %d HIGHESTMODSEQ %d)" % (uv, hm)]


def test_status_indicator_and_smtp_delivery(server):
    a = server.imap_login("bob@example.test")
    st = status_of(a, "INBOX", "MESSAGES UIDNEXT UIDVALIDITY")
    # RFC 5465 3.1: STATUS sends the current state at once
    r = a.cmd("NOTIFY SET STATUS (INBOXES (MessageNew MessageExpunge))")
    assert r.ok, r
    assert r.untagged == ["* STATUS INBOX (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)" % (
        st["MESSAGES"], st["UIDNEXT"], st["UIDVALIDITY"])], r
    with server.client() as m:
        m.ehlo()
        m.mail("x@example.net", ["bob@example.test"], msg("smtp"))
    assert unsolicited(a, 1) == ["* STATUS INBOX (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)" % (
        st["MESSAGES"] + 1, st["UIDNEXT"] + 1, st["UIDVALIDITY"])]
    a.close()


def test_mailbox_name_and_subscription(sessions):
    a, b = sessions("nt2")
    r = a.cmd("NOTIFY SET (SUBTREE nt2 (MailboxName SubscriptionChange))")
    assert r.ok and r.untagged == [], r
    # RFC 5465 5.4: CREATE, RENAME (with OLDNAME, RFC 5258), DELETE
    assert b.cmd("CREATE nt2/new").ok
    assert unsolicited(a, 1) == ['* LIST () "/" nt2/new']
    # 5.5: subscription changes, with the mailbox's attributes
    assert b.cmd("SUBSCRIBE nt2/new").ok
    assert unsolicited(a, 1) == ['* LIST (\\Subscribed) "/" nt2/new']
    # RENAME carries the subscription (RFC 5258 OLDNAME)
    assert b.cmd("RENAME nt2/new nt2/renamed").ok
    assert unsolicited(a, 1) == ['* LIST (\\Subscribed) "/" nt2/renamed ("OLDNAME" (nt2/new))']
    assert b.cmd("UNSUBSCRIBE nt2/renamed").ok
    assert unsolicited(a, 1) == ['* LIST () "/" nt2/renamed']
    assert b.cmd("DELETE nt2/renamed").ok
    assert unsolicited(a, 1) == ['* LIST (\\NonExistent) "/" nt2/renamed']
    # elsewhere: nothing
    assert b.cmd("CREATE nt2x").ok
    assert quiet(a)


def test_selected_mailbox_between_commands(sessions):
    a, b = sessions("nt3", user="carol@example.test")
    assert b.cmd("ENABLE IMAP4rev2").ok  # no \Recent to claim
    assert a.cmd("ENABLE IMAP4rev2").ok
    assert a.cmd("SELECT nt3").ok
    r = a.cmd("NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange)) "
              "(PERSONAL (MessageNew MessageExpunge))")
    assert r.ok and r.untagged == [], r
    # no command running: the updates come at once (RFC 5465 3), and no
    # STATUS for the selected mailbox (5.2)
    assert imap_append(b, "nt3", msg(5)).ok
    assert unsolicited(a, 1) == ["* 1 EXISTS"]
    assert b.cmd("SELECT nt3").ok
    assert b.cmd("STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)").ok
    assert unsolicited(a, 1) == ["* 1 FETCH (FLAGS (\\Deleted \\Seen))"]
    assert b.cmd("EXPUNGE").ok
    assert unsolicited(a, 1) == ["* 1 EXPUNGE"]
    # another mailbox of the PERSONAL group: STATUS
    uv = status_of(b, "INBOX", "UIDVALIDITY")["UIDVALIDITY"]
    st = status_of(b, "INBOX", "MESSAGES UIDNEXT")
    assert imap_append(b, "INBOX", msg(6)).ok
    assert unsolicited(a, 1) == ["* STATUS INBOX (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)" % (
        st["MESSAGES"] + 1, st["UIDNEXT"] + 1, uv)]

    # SELECTED-DELAYED (RFC 5465 6.1): expunges wait for a command that
    # allows them; the rest comes at once
    r = a.cmd("NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge FlagChange))")
    assert r.ok and r.untagged == [], r
    assert imap_append(b, "nt3", msg(7)).ok
    assert unsolicited(a, 1) == ["* 1 EXISTS"]
    assert b.cmd("NOOP").ok
    assert b.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    assert unsolicited(a, 1) == ["* 1 FETCH (FLAGS (\\Deleted))"]
    assert b.cmd("EXPUNGE").ok
    assert quiet(a)
    r = a.cmd("FETCH 1 (UID)")  # no EXPUNGE during FETCH (RFC 9051 7.5.1)
    assert r.ok and not any("EXPUNGE" in l for l in r.untagged), r
    r = a.cmd("NOOP")
    assert r.untagged == ["* 1 EXPUNGE"], r


def test_message_new_fetch_att(sessions):
    a, b = sessions("nt8", user="carol@example.test")
    assert a.cmd("ENABLE IMAP4rev2").ok
    assert a.cmd("SELECT nt8").ok
    r = a.cmd("NOTIFY SET (SELECTED (MessageNew (UID FLAGS BODY.PEEK[HEADER.FIELDS (Subject)]) "
              "MessageExpunge))")
    assert r.ok and r.untagged == [], r
    # RFC 5465 5.2: the EXISTS, then a FETCH of the items asked for
    assert imap_append(b, "nt8", msg(13), flags="(\\Flagged)").ok
    hdr = "Subject: n13\r\n\r\n"
    assert unsolicited(a, 2) == [
        "* 1 EXISTS",
        "* 1 FETCH (UID 1 FLAGS (\\Flagged) BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n%s)" % (
            len(hdr), hdr)]
    # a message of the session's own: the same, around its command
    r = imap_append(a, "nt8", msg(14))
    assert r.ok and r.untagged[:1] == ["* 2 EXISTS"], r
    rest = r.untagged[1:] or unsolicited(a, 1)
    hdr = "Subject: n14\r\n\r\n"
    assert rest == ["* 2 FETCH (UID 2 FLAGS () BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n%s)" % (
        len(hdr), hdr)], r


def test_notify_during_idle(sessions):
    a, b = sessions("nt6")
    uv = status_of(b, "nt6", "UIDVALIDITY")["UIDVALIDITY"]
    assert a.cmd("NOTIFY SET (MAILBOXES nt6 (MessageNew MessageExpunge))").ok
    a.send("i1 IDLE\r\n")
    assert a.readline().startswith("+")
    assert imap_append(b, "nt6", msg(12)).ok
    assert unsolicited(a, 1) == ["* STATUS nt6 (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d)" % uv]
    a.send("DONE\r\n")
    r = a.read_response("i1")
    assert r.ok and r.untagged == [], r


def test_admin_cli_delete(server, sessions):
    a, b = sessions("nt7")
    assert a.cmd("NOTIFY SET (SUBTREE nt7 (MailboxName))").ok
    server.cli("mailbox", "delete", "alice@example.test", "nt7")
    assert unsolicited(a, 1) == ['* LIST (\\NonExistent) "/" nt7']


def test_notify_none(sessions):
    a, b = sessions("nt4")
    assert a.cmd("NOTIFY SET (MAILBOXES nt4 (MessageNew MessageExpunge))").ok
    assert imap_append(b, "nt4", msg(8)).ok
    assert len(unsolicited(a, 1)) == 1
    r = a.cmd("NOTIFY NONE")
    assert r.ok and r.untagged == [], r
    assert imap_append(b, "nt4", msg(9)).ok
    assert quiet(a, 1.0)
    # a NOTIFY SET replaces the previous one (RFC 5465 3.1)
    assert a.cmd("NOTIFY SET (MAILBOXES nt4 (MessageNew MessageExpunge))").ok
    assert a.cmd("NOTIFY SET (MAILBOXES nt4x (MessageNew MessageExpunge))").ok
    assert imap_append(b, "nt4", msg(10)).ok
    assert quiet(a, 1.0)


def test_errors(server):
    a = server.imap_login()
    # RFC 5465 5: events we do not support: [BADEVENT (what we do)]
    r = a.cmd("NOTIFY SET (SELECTED (MessageNew MessageExpunge AnnotationChange))")
    assert r.tagged.endswith("NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
                             "SubscriptionChange)] Unsupported event"), r
    r = a.cmd("NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))")
    assert r.status == "BAD", r  # fetch-att only for SELECTED (5.2)
    r = a.cmd("NOTIFY SET (SELECTED (MailboxName))")
    assert r.status == "BAD", r  # 6: no mailbox events for SELECTED
    r = a.cmd("NOTIFY SET (NOSUCHGROUP (MessageNew))")
    assert r.status == "BAD", r
    r = a.cmd("NOTIFY SET")
    assert r.status == "BAD", r
    r = a.cmd("NOTIFY")
    assert r.status == "BAD", r
    r = a.cmd("NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge))")
    assert r.ok, r
    # NOTIFY is named in the capabilities
    r = a.cmd("CAPABILITY")
    assert " NOTIFY" in r.untagged[0], r
    a.close()


def test_overflow(sessions):
    a, b = sessions("nt5")
    assert a.cmd("NOTIFY SET (SUBTREE nt5 (MailboxName))").ok
    # A is inside a command (an APPEND's literal): notifications wait
    tag = a.next_tag()
    a.send("%s APPEND nt5 {%d}\r\n" % (tag, len(msg(11))))
    assert a.readline().startswith("+")
    for i in range(201):  # NOTIFY_MAX_BATCH + 1 mailboxes at once
        assert b.cmd("CREATE nt5/%d" % i).ok
    assert quiet(a)
    a.send(msg(11) + b"\r\n")
    r = a.read_response(tag)
    assert r.ok, r
    # RFC 5465 5.8: too many: NOTIFICATIONOVERFLOW, then nothing more
    line = unsolicited(a, 1)[0]
    assert line.startswith("* OK [NOTIFICATIONOVERFLOW]"), line
    assert b.cmd("CREATE nt5/more").ok
    assert quiet(a, 1.0)
    # a new NOTIFY SET starts again
    assert a.cmd("NOTIFY SET (SUBTREE nt5 (MailboxName))").ok
    assert b.cmd("DELETE nt5/more").ok
    assert unsolicited(a, 1) == ['* LIST (\\NonExistent) "/" nt5/more']


def test_message_new_fetch_att_bounded_per_announcement(sessions):
    """One announcement of many big new messages (a MULTIAPPEND of 40 of
    100 KB) with MessageNew (BODY.PEEK[]): the FETCH responses it carries
    are at most 1 MiB together (each message's were bounded, their sum was
    not: 100 messages x 256 KiB, held four times over for a client that does
    not read); the others are left to the client's own FETCH (RFC 5465 5.2
    lets the client fetch what it needs)."""
    a, b = sessions("nt9", user="carol@example.test")
    assert a.cmd("SELECT nt9").ok
    r = a.cmd("NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))")
    assert r.ok, r
    body = b"Subject: big\r\n\r\n" + b"y" * 100000 + b"\r\n"
    tag = b.next_tag()
    b.send(("%s APPEND nt9 {%d}\r\n" % (tag, len(body))).encode())
    for i in range(40):
        assert b.readline().startswith("+")
        b.send(body + (b" {%d}\r\n" % len(body) if i < 39 else b"\r\n"))
    assert b.read_response(tag).ok
    first = a.readline()
    assert first == "* 40 EXISTS", first
    got = 0
    while True:
        line = read_within(a, 3)
        if line is None:
            break
        if line == "* 40 RECENT":
            continue
        assert re.match(r"\* \d+ FETCH \(UID \d+ BODY\[\] \{%d\}" % len(body), line), line[:80]
        got += 1
    assert 1 <= got <= (1 << 20) // len(body), got
    r = a.cmd("FETCH 40 (UID)")
    assert r.ok and r.untagged == ["* 40 FETCH (UID 40)"], r


def test_message_new_fetch_att_emailid_savedate(sessions):
    """MessageNew's FETCH carries the same EMAILID and SAVEDATE as the
    client's own FETCH (RFC 5465 5.2, RFC 8474 5.1, RFC 8514 4)."""
    a, b = sessions("nt10", user="carol@example.test")
    assert a.cmd("ENABLE IMAP4rev2").ok
    assert a.cmd("SELECT nt10").ok
    r = a.cmd("NOTIFY SET (SELECTED (MessageNew (UID EMAILID SAVEDATE) MessageExpunge))")
    assert r.ok and r.untagged == [], r
    assert imap_append(b, "nt10", msg(15)).ok
    got = unsolicited(a, 2)
    assert got[0] == "* 1 EXISTS", got
    r = a.cmd("FETCH 1 (UID EMAILID SAVEDATE)")
    assert r.ok and len(r.untagged) == 1, r
    assert re.search(r"EMAILID \(E[0-9]+\)", got[1]), got
    assert got[1] == r.untagged[0], (got, r)
