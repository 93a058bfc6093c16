"""IMAP on big mailboxes (issue 7): SELECT reads only what it answers with
(the UIDs, the flags for UNSEEN and the keyword list), and a FETCH that
races an expunge by another session answers as RFC 9051 7.1 / RFC 2180 4.1
want: the vanished message is left out; a FETCH by sequence number of a
message expunged before it began ends OK [EXPUNGEISSUED] (a UID FETCH plain
OK), one expunged while it is read ends NO [EXPUNGEISSUED] (both as Dovecot
answers); nothing is logged."""
import glob
import os
import socket
import time

from conftest import imap_append, imap_quote, rss_bound_kb, rss_kb
from test_imap_fts import wait_indexed

ALICE = "alice@example.test"


def msg(n):
    t = str(n).encode()
    return (b"From: sender@example.net\r\nTo: alice@example.test\r\nSubject: m%s\r\n"
            b"Message-ID: <%s@example.net>\r\n\r\nbody %s\r\n" % (t, t, t))


def fill(c, box, flags):
    assert c.cmd("CREATE %s" % imap_quote(box)).ok
    for i, f in enumerate(flags, 1):
        assert imap_append(c, box, msg(i), f).ok


def test_select_exact_counts_keywords_unseen(server):
    """SELECT's untagged data (RFC 3501 7.1, RFC 9051 6.3.2) from the one
    pass over the mailbox's entries: EXISTS, RECENT, the first unseen
    message, the keywords in use (in UID order of first use, once each),
    UIDNEXT and HIGHESTMODSEQ."""
    with server.imap_login(ALICE) as c:
        fill(c, "sel1", ["(\\Seen)", "(\\Seen $Work)", "($work)", "(\\Seen \\Deleted $Later)",
                         "()", "(\\Seen $Work $Later)"])
        r = c.cmd("SELECT sel1")
        assert r.ok and r.text.startswith("[READ-WRITE]"), r
        u = r.untagged
        assert u[0] == "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Later)", u
        assert "* 6 EXISTS" in u, u
        assert "* 6 RECENT" in u, u
        assert "* OK [UNSEEN 3] First unseen" in u, u
        assert "* OK [UIDNEXT 7] Predicted next UID" in u, u
        assert [l for l in u if l.startswith("* OK [PERMANENTFLAGS")] == [
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Later \\*)]"
            " Flags permitted"], u
        hm = [l for l in u if l.startswith("* OK [HIGHESTMODSEQ ")]
        assert len(hm) == 1, u
        # the same again after the flags changed: the second SELECT sees them
        assert c.cmd("STORE 3 +FLAGS (\\Seen)").ok
        r = c.cmd("EXAMINE sel1")
        assert r.ok and r.text.startswith("[READ-ONLY]"), r
        assert "* OK [UNSEEN 5] First unseen" in r.untagged, r.untagged
        assert "* 0 RECENT" in r.untagged, r.untagged
        # every message seen: no UNSEEN at all
        assert c.cmd("SELECT sel1").ok
        assert c.cmd("STORE 1:* +FLAGS.SILENT (\\Seen)").ok
        r = c.cmd("SELECT sel1")
        assert r.ok and not [l for l in r.untagged if "UNSEEN" in l], r
        # an empty mailbox
        assert c.cmd("CREATE sel1e").ok
        r = c.cmd("SELECT sel1e")
        assert r.ok and "* 0 EXISTS" in r.untagged, r
        assert r.untagged[0] == "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)", r
        # a mailbox that does not exist
        r = c.cmd("SELECT nosuchbox")
        assert r.status == "NO" and r.text.startswith("[NONEXISTENT]"), r


def test_fetch_of_message_expunged_elsewhere(server):
    """Session B expunges message 2 while A has it in its view (A is told
    at its next NOOP; a FETCH may not carry the EXPUNGE, RFC 9051 7.5.1).
    A's FETCH 1:3 sends 1 and 3 and ends OK [EXPUNGEISSUED]; a UID FETCH of
    the same UIDs leaves it out and ends OK; nothing is logged."""
    with server.imap_login(ALICE) as a, server.imap_login(ALICE) as b:
        fill(a, "race1", ["()", "()", "()"])
        assert a.cmd("SELECT race1").ok
        assert b.cmd("SELECT race1").ok
        assert b.cmd("UID STORE 2 +FLAGS.SILENT (\\Deleted)").ok
        assert b.cmd("UID EXPUNGE 2").ok
        log0 = len(server.log())
        for items in ("FLAGS", "(UID BODY.PEEK[])", "(ENVELOPE BODYSTRUCTURE)"):
            r = a.cmd("FETCH 1:3 %s" % items)
            assert r.status == "OK", r
            assert r.text == "[EXPUNGEISSUED] Some messages were already expunged", r
            # B's \\Deleted may come along (a FETCH may carry flag updates)
            heads = [l.split(" (")[0] for l in r.untagged
                     if l != "* 2 FETCH (FLAGS (\\Deleted \\Recent))"]
            assert heads == ["* 1 FETCH", "* 3 FETCH"], r.untagged
        # messages that all exist: OK as ever
        r = a.cmd("FETCH 3 FLAGS")
        assert r.ok and r.untagged == ["* 3 FETCH (FLAGS (\\Recent))"], r
        # UID FETCH ignores UIDs that no longer exist (RFC 9051 6.4.9);
        # it may carry the EXPUNGE (RFC 9051 7.5.1)
        r = a.cmd("UID FETCH 1:3 FLAGS")
        assert r.ok, r
        f1 = "* 1 FETCH (UID 1 FLAGS (\\Recent))"
        assert r.untagged in ([f1, "* 3 FETCH (UID 3 FLAGS (\\Recent))", "* 2 EXPUNGE"],
                              ["* 2 EXPUNGE", f1, "* 2 FETCH (UID 3 FLAGS (\\Recent))"]), r.untagged
        r = a.cmd("NOOP")
        assert r.ok, r
        assert server.log()[log0:].count("blob") == 0, server.log()[log0:]


def test_fetch_blob_gone_after_snapshot(server):
    """The race's other window: the snapshot still has the message row but
    the expunge's COMMIT unlinked its blob before the worker opened it
    (simulated by removing the blob file). The message is left out, the
    FETCH ends NO [EXPUNGEISSUED], and no warning about the blob is logged."""
    with server.imap_login(ALICE) as a:
        fill(a, "race2", ["()", "()"])
        assert a.cmd("SELECT race2").ok
        with server.db() as db:
            (blob,) = db.execute(
                "SELECT m.blob FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id"
                " JOIN mailboxes b ON b.id = mm.mailbox_id WHERE b.name = 'race2' AND mm.uid = 2"
            ).fetchone()
        paths = glob.glob(os.path.join(server.data_dir, "blobs", "*", blob))
        assert len(paths) == 1, paths
        os.unlink(paths[0])
        log0 = len(server.log())
        r = a.cmd("FETCH 1:2 BODY.PEEK[]")
        assert r.status == "NO" and r.text.startswith("[EXPUNGEISSUED] "), r
        assert len(r.untagged) == 1 and r.untagged[0].startswith("* 1 FETCH ("), r.untagged
        r = a.cmd("UID FETCH 2 BODY.PEEK[]")
        assert r.status == "NO" and r.text.startswith("[EXPUNGEISSUED] "), r
        assert r.untagged == [], r
        assert "open blob" not in server.log()[log0:], server.log()[log0:]



def test_big_flag_change_elsewhere_reaches_noop_bounded(server):
    """Session B sets \\Flagged on 20,000 messages (one STORE); A, selected,
    gets every change at its next NOOP: one FETCH FLAGS per message, each
    sequence number once, before the tagged OK. The changes are read and
    sent in UID windows as A reads (select.c SYNC_WINDOW): while A does not
    read, the daemon holds a bounded amount for it (growth of its anonymous
    memory under 8 MB, once the 20,000 APPENDs are indexed: the mapped
    database file's pages are the kernel's page cache, not held for A;
    conftest.rss_bound_kb under AddressSanitizer)."""
    n = 20000
    with server.imap_login(ALICE) as b:
        a = selected_twice(server, b, "big4", n)
        try:
            rss0 = rss_kb(server.proc.pid, "RssAnon")
            # A polls with a small receive window and does not read yet
            a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            r = b.cmd("STORE 1:* +FLAGS.SILENT (\\Flagged)")
            assert r.ok and r.untagged == [], r
            r = noop_not_read(server, a, rss0, 1.5)
            want = ["* %d FETCH (FLAGS (\\Flagged))" % i for i in range(1, n + 1)]
            assert sorted(r.untagged) == sorted(want), (len(r.untagged), r.untagged[:3])
            # nothing is sent twice, nothing left for the next NOOP
            assert len(r.untagged) == n
            r = a.cmd("NOOP")
            assert r.ok and r.untagged == [], r.untagged[:5]
            # and a change after the pass is seen as ever
            assert b.cmd("STORE 7 -FLAGS.SILENT (\\Flagged)").ok
            r = a.cmd("NOOP")
            assert r.ok and r.untagged == ["* 7 FETCH (FLAGS ())"], r.untagged
        finally:
            a.close()


def test_big_flag_change_read_between_commands_reaches_one_noop(server):
    """As above, but A's NOOP comes well after B's STORE 1:* on 20,000
    messages: A's session read the first window of the change between
    commands (it holds it for A), and the NOOP still answers with every
    change before its OK, not only that window (before: FETCH 1 to 1000,
    then OK, the rest a window per later command). Bounded as above."""
    n = 20000
    with server.imap_login(ALICE) as b:
        a = selected_twice(server, b, "big4b", n)
        try:
            bound = rss_bound_kb(server.proc.pid)
            rss0 = rss_kb(server.proc.pid, "RssAnon")
            r = b.cmd("STORE 1:* +FLAGS.SILENT (\\Flagged)")
            assert r.ok and r.untagged == [], r
            # the change reaches A's session at once; its first window
            # is read while A says nothing
            time.sleep(1.5)
            grown = rss_kb(server.proc.pid, "RssAnon") - rss0
            assert grown < bound, "RssAnon grew %d KB while A was silent" % grown
            r = a.cmd("NOOP")
            assert r.ok, r.tagged
            want = ["* %d FETCH (FLAGS (\\Flagged))" % i for i in range(1, n + 1)]
            assert len(r.untagged) == n, (len(r.untagged), r.untagged[-1:])
            assert sorted(r.untagged) == sorted(want), r.untagged[:3]
            r = a.cmd("NOOP")
            assert r.ok and r.untagged == [], r.untagged[:5]
            # CHECK, the same
            assert b.cmd("STORE 1:* -FLAGS.SILENT (\\Flagged)").ok
            time.sleep(1.5)
            r = a.cmd("CHECK")
            assert r.ok and len(r.untagged) == n, (len(r.untagged), r.untagged[-1:])
            assert set(r.untagged) == {"* %d FETCH (FLAGS ())" % i for i in range(1, n + 1)}
        finally:
            a.close()


def test_big_flag_change_held_a_window_at_a_time(server):
    """A client that does not read its NOOP's answer to a big change
    elsewhere (B: 32 long keywords on 20,000 messages, FETCH lines of about
    2.3 KB: 46 MB in all) holds the daemon to about a window (1,000 lines)
    and the output limit, not the whole change: each window is read once
    the one before it was written to the socket (select.c windows_next;
    before: at once, whatever the client read). Then every line arrives.
    The socket buffers are the kernel's defaults (a few MB each way, not in
    the daemon's RssAnon): a tiny receive window would make the reading
    afterwards crawl (zero-window probes)."""
    n = 20000
    kws = ["$kw%02d_%s" % (i, "x" * 64) for i in range(32)]
    with server.imap_login(ALICE) as b:
        a = selected_twice(server, b, "big4c", n)
        try:
            r = b.cmd("STORE 1:* +FLAGS.SILENT (%s)" % " ".join(kws))
            assert r.ok and r.untagged == [], r
            time.sleep(1.5)  # A's session reads the first window meanwhile
            rss0 = rss_kb(server.proc.pid, "RssAnon")
            r = noop_not_read(server, a, rss0, 3)
            # the new keywords first (RFC 9051 7.3.5: FLAGS, PERMANENTFLAGS)
            fetches = [l for l in r.untagged if " FETCH " in l]
            assert len(fetches) == n, (len(fetches), r.untagged[:2], fetches[-1:])
            seqs = sorted(int(l.split()[1]) for l in fetches)
            assert seqs == list(range(1, n + 1))
            assert all(l.endswith("FLAGS (%s))" % " ".join(kws)) for l in fetches), fetches[:1]
            r = a.cmd("NOOP")
            assert r.ok and r.untagged == [], r.untagged[:5]
        finally:
            a.close()


def noop_not_read(server, a, rss0, secs):
    """A's NOOP, its answer not read for secs: meanwhile the daemon's
    anonymous memory grows by less than conftest.rss_bound_kb from rss0;
    then the answer, read."""
    tag = a.next_tag()
    a.send(tag + " NOOP\r\n")
    time.sleep(secs)
    grown = rss_kb(server.proc.pid, "RssAnon") - rss0
    assert grown < rss_bound_kb(server.proc.pid), "RssAnon grew %d KB while A did not read" % grown
    r = a.read_response(tag)
    assert r.ok, r.tagged
    return r


def selected_twice(server, b, box, n):
    """box made with n messages, indexed, selected by b; returned: a second
    session of ALICE with box selected (the caller closes it)."""
    fill_fast(b, box, n)
    wait_indexed(server)
    assert b.cmd("SELECT %s" % box).ok
    a = server.imap_login(ALICE)
    r = a.cmd("SELECT %s" % box)
    assert r.ok and "* %d EXISTS" % n in r.untagged, r
    return a


def fill_fast(c, box, n):
    """n small messages in box, 50 per MULTIAPPEND (one commit each)."""
    m = b"Subject: x\r\n\r\nx\r\n"
    assert c.cmd("CREATE %s" % box).ok
    for start in range(0, n, 50):
        tag = c.next_tag()
        c.send(("%s APPEND %s" % (tag, box)).encode() +
               b"".join(b" {%d+}\r\n" % len(m) + m for _ in range(min(50, n - start))) + b"\r\n")
        assert c.read_response(tag).ok


def test_big_store_reply_in_slices(server):
    """STORE 1:* +FLAGS on 8,000 messages (issue 9, bench/bigbox): the
    reply's 8,000 FETCH lines (~330 KB, above the output limit) are made in slices (storecmd.c STORE_STEP),
    none while the client leaves more than the output limit unread. While
    A does not read, another session is served and the daemon holds a
    bounded amount for A (RSS growth under 8 MB; conftest.rss_bound_kb
    under AddressSanitizer); then A gets every line once, the tagged OK, and the
    command pipelined behind it. UNCHANGEDSINCE on the same set names the
    refused messages exactly ([MODIFIED], RFC 7162 3.1.3)."""
    n = 8000
    with server.imap_login(ALICE) as b:
        fill_fast(b, "big5", n)
        a = server.imap_login(ALICE)
        try:
            a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            r = a.cmd("SELECT big5")
            assert r.ok and "* %d EXISTS" % n in r.untagged, r
            bound = rss_bound_kb(server.proc.pid)
            rss0 = rss_kb(server.proc.pid)
            tag = a.next_tag()
            a.send(tag + " STORE 1:* +FLAGS (\\Seen $Big)\r\n")
            tag2 = a.next_tag()
            a.send(tag2 + " NOOP\r\n")
            # B is served while A's reply waits for A to read
            for _ in range(3):
                r = b.cmd("NOOP")
                assert r.ok, r
                time.sleep(0.5)
            grown = rss_kb(server.proc.pid) - rss0
            assert grown < bound, "RSS grew %d KB while A did not read" % grown
            r = a.read_response(tag)
            assert r.ok, r.tagged
            fetch = [l for l in r.untagged if " FETCH " in l]
            assert fetch == ["* %d FETCH (FLAGS (\\Seen \\Recent $Big))" % i
                             for i in range(1, n + 1)], (len(fetch), fetch[:3])
            # the keyword was announced before its first FETCH (RFC 9051 7.3.5)
            first = r.untagged.index(fetch[0])
            assert any(l.startswith("* FLAGS (") and "$Big" in l
                       for l in r.untagged[:first]), r.untagged[:first + 1]
            assert a.read_response(tag2).ok
            # CONDSTORE: change 3 messages elsewhere, then a conditional
            # STORE on every message refuses exactly those (RFC 7162 3.1.3)
            r = a.cmd("FETCH 1 (MODSEQ)")
            assert r.ok, r
            line = [l for l in r.untagged if l.startswith("* 1 FETCH ") and "MODSEQ (" in l]
            assert len(line) == 1, r.untagged
            mod = int(line[0].split("MODSEQ (")[1].split(")")[0])
            assert b.cmd("SELECT big5").ok
            assert b.cmd("STORE 7,5555,7999 +FLAGS.SILENT ($Other)").ok
            r = a.cmd("STORE 1:* (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Flagged)" % mod)
            assert r.ok and r.text.startswith("[MODIFIED 7,5555,7999] "), r.tagged
            # every other message changed, with the new MODSEQ (B's change may
            # come along as a FETCH of its own: RFC 9051 7.5.1)
            changed = sorted(int(l.split()[1]) for l in r.untagged
                             if " FETCH " in l and "$Other" not in l)
            assert changed == [i for i in range(1, n + 1) if i not in (7, 5555, 7999)], \
                (len(changed), [l for l in r.untagged if "$Other" in l])
            r = a.cmd("SEARCH NOT FLAGGED")
            assert r.ok and r.untagged[-1] == "* SEARCH 7 5555 7999", r.untagged[-1:]
        finally:
            a.close()
