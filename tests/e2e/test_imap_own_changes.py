"""A session's own flag changes and what it is told later (RFC 9051 7.5,
RFC 7162 3.1): its own STORE is not reported back to it, and changes made
by other sessions before or after it are, each once. The select sync skips
reading back a STORE that came right after what it had read (src/imap/
select.c, imap_sel_own_change); these check that the skip loses nothing.
Every wait is bounded by the client's timeout."""
from conftest import imap_append, imap_quote

MSG = b"From: a@example.net\r\nSubject: %d\r\nMessage-ID: <%d@example.net>\r\n\r\nbody\r\n"
N = 30


def filled(server, name, n=N):
    a = server.imap_login()
    assert a.cmd("CREATE %s" % imap_quote(name)).ok
    for i in range(n):
        assert imap_append(a, name, MSG % (i, i)).ok
    # claim \Recent, so that the selections below show none
    assert a.cmd("SELECT %s" % imap_quote(name)).ok
    assert a.cmd("UNSELECT").ok
    return a


def test_own_store_then_another_sessions_change_and_new_mail(server):
    a = filled(server, "own1")
    b = server.imap_login()
    assert a.cmd("ENABLE CONDSTORE").ok
    r = a.cmd("SELECT own1")
    assert r.ok, r
    assert b.cmd("SELECT own1").ok
    r = a.cmd("STORE 1:* +FLAGS.SILENT (\\Seen)")
    # RFC 7162 3.1.3: .SILENT with CONDSTORE still gives each MODSEQ
    assert r.ok and len(r.untagged) == N, r
    assert all("FLAGS" not in l and "MODSEQ (" in l for l in r.untagged), r
    # A's own change: nothing to tell A
    r = a.cmd("NOOP")
    assert r.untagged == [], r
    # B's change after A's, and new mail: A is told of both, once
    r = b.cmd("STORE 7 +FLAGS (\\Flagged)")
    assert r.ok, r
    modseq = int(r.untagged[0].split("MODSEQ (")[1].split(")")[0]) if "MODSEQ" in r.untagged[0] \
        else None
    assert imap_append(b, "own1", MSG % (N, N)).ok
    r = a.cmd("NOOP")
    fetches = [l for l in r.untagged if "FETCH" in l]
    assert len(fetches) == 1 and fetches[0].startswith("* 7 FETCH ("), r
    assert "\\Flagged" in fetches[0] and "\\Seen" in fetches[0], r
    assert "MODSEQ (" in fetches[0], r  # CONDSTORE enabled: RFC 7162 3.2.4
    if modseq is not None:
        assert "MODSEQ (%d)" % modseq in fetches[0], r
    assert "* %d EXISTS" % (N + 1) in r.untagged, r
    r = a.cmd("NOOP")
    assert r.untagged == [], r
    # every message has A's \Seen, message 7 B's \Flagged too
    r = a.cmd("FETCH 1:%d (FLAGS)" % N)
    assert len(r.untagged) == N, r
    for line in r.untagged:
        assert "\\Seen" in line, line
        assert ("\\Flagged" in line) == line.startswith("* 7 "), line
    a.close()
    b.close()


def test_another_sessions_change_before_own_store_is_not_skipped(server):
    a = filled(server, "own2")
    b = server.imap_login()
    assert a.cmd("SELECT own2").ok
    assert b.cmd("SELECT own2").ok
    # B's change first (A has not read it), then A's STORE on other
    # messages: B's change must still reach A
    r = b.cmd("STORE 3 +FLAGS (\\Answered)")
    assert r.ok, r
    r = a.cmd("STORE 10:20 +FLAGS.SILENT (\\Seen)")
    assert r.ok, r
    got = [l for l in r.untagged if "FETCH" in l]
    r = a.cmd("NOOP")
    got += [l for l in r.untagged if "FETCH" in l]
    assert got == ["* 3 FETCH (FLAGS (\\Answered))"], got
    # then new mail from B: EXISTS alone
    assert imap_append(b, "own2", MSG % (N, N)).ok
    r = a.cmd("NOOP")
    assert [l for l in r.untagged if "FETCH" in l] == [], r
    assert "* %d EXISTS" % (N + 1) in r.untagged, r
    a.close()
    b.close()


def test_many_own_stores_in_a_row(server):
    """Each STORE comes right after the previous one: every one skipped,
    and a change by B after them all still arrives. Before the skip, the
    session remembered its own STOREs' MODSEQs once per message, 16 at
    most: here messages 1-14 were reported back to it."""
    a = filled(server, "own3")
    b = server.imap_login()
    assert a.cmd("SELECT own3").ok
    assert b.cmd("SELECT own3").ok
    for i in range(1, N + 1):
        assert a.cmd("STORE %d +FLAGS.SILENT (\\Seen)" % i).ok
    r = a.cmd("NOOP")
    assert r.untagged == [], r
    assert b.cmd("STORE %d -FLAGS (\\Seen)" % N).ok
    r = a.cmd("NOOP")
    assert r.untagged == ["* %d FETCH (FLAGS ())" % N], r
    a.close()
    b.close()


def test_own_stores_of_many_messages_are_all_remembered(server):
    """Another session's change made before two STOREs on many messages
    (each one MODSEQ) reaches the session once; none of its own does."""
    a = filled(server, "own4", n=45)
    b = server.imap_login()
    assert a.cmd("SELECT own4").ok
    assert b.cmd("SELECT own4").ok
    # B's change first: A's STOREs then cannot skip the read
    assert b.cmd("STORE 1 +FLAGS (\\Answered)").ok
    got = []
    for cmd in ("STORE 2:21 +FLAGS.SILENT (\\Seen)", "STORE 22:41 +FLAGS.SILENT (\\Seen)",
                "NOOP"):
        r = a.cmd(cmd)
        assert r.ok, r
        got += r.untagged
    # B's change once (at a STORE's end or at NOOP), none of A's own
    assert got == ["* 1 FETCH (FLAGS (\\Answered))"], got
    a.close()
    b.close()
