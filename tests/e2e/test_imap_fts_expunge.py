"""The full-text index follows expunge (issue 9, src/store/fts.c): an
indexed body that loses its last reference (EXPUNGE, DELETE of a mailbox,
`postern user del`) waits, with its blob, for the indexer, which deletes its
entries given the same text again, then the row and the blob. A body still
referenced elsewhere (a COPY) keeps its entries; the quota drops at the
expunge; a restart between expunge and unindex finishes the work; with
`fts = no` the waiting bodies go at start (entries left to a rebuild); a
body whose text cannot be had again is dropped with a log line, its entries
left to `postern index rebuild --all`; an index made by another extractor is
re-made at start."""
import glob
import os
import sqlite3
import time

from conftest import Postern
from test_imap_fts import corpus, multiappend, search, stats, wait_indexed

ALICE = "alice@example.test"
BOB = "bob@example.test"
WAIT = 60  # seconds: every wait below is bounded by it


def wait_unindexed(srv, blobs=(), timeout=WAIT):
    """Until no body waits to be unindexed and none of blobs is left: the
    rows go at the indexer's COMMIT, their blobs just after it is durable
    (fts.c job_tail), so a blob may outlive the count by a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = stats(srv)
        if s["unindexing"] == 0 and not any(os.path.exists(b) for b in blobs):
            return s
        time.sleep(0.1)
    raise AssertionError("not unindexed in time: %r, blobs left %r" % (
        stats(srv), [b for b in blobs if os.path.exists(b)]))


def q(srv, sql, *args):
    db = srv.db()
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def trigrams(word):
    """The FTS5 query of word as fts.c makes it: the AND of its trigrams
    (detail=none: no phrases)."""
    return " AND ".join('"%s"' % word[i:i + 3] for i in range(len(word) - 2))


def hits(srv, word):
    """The rowids (message ids) whose body entries hold word's trigrams."""
    return sorted(r[0] for r in q(srv, "SELECT rowid FROM fts_body WHERE fts_body MATCH ?",
                                  trigrams(word)))


def head_hits(srv, word):
    return sorted(r[0] for r in q(srv, "SELECT rowid FROM fts_head WHERE fts_head MATCH ?",
                                  trigrams(word)))


def blob_of(srv, msg_id):
    rows = q(srv, "SELECT blob FROM messages WHERE id = ?", msg_id)
    assert len(rows) == 1, rows
    paths = glob.glob(os.path.join(srv.data_dir, "blobs", "*", rows[0][0]))
    assert len(paths) == 1, paths
    return paths[0]


def docs(srv):
    return q(srv, "SELECT v FROM fts_state WHERE k = 'docs'")[0][0]


def quota_used(srv, user):
    out = srv.cli_out("quota", "get", user)
    return out


def body(word, subject="s"):
    return ("From: x@example.net\r\nSubject: %s %s\r\n\r\nsome text %s more text\r\n" % (
        subject, word, word)).encode()


def test_expunge_unindexes(make_server):
    """EXPUNGE: the entries go, then the blob; the copy in another mailbox
    keeps its entries and its blob; the quota drops at the expunge; the
    other searches answer as before, less the expunged UIDs."""
    srv = make_server()
    msgs = corpus(40) + [body("wombatzebra"), body("keepmequagga")]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE a").ok and c.cmd("CREATE b").ok
        multiappend(c, "a", msgs)
        assert c.cmd("SELECT a").ok
        assert c.cmd("UID COPY 42 b").ok
        s0 = wait_indexed(srv)
        assert s0["unindexing"] == 0 and s0["expunged-entries"] == 0, s0
        gone, = hits(srv, "wombatzebra")
        kept, = hits(srv, "keepmequagga")
        assert head_hits(srv, "wombatzebra") == [gone]
        gone_blob, kept_blob = blob_of(srv, gone), blob_of(srv, kept)
        progs = [["TEXT", ("lit", "invoice")], ["BODY", ("lit", "alpha")],
                 ["SUBJECT", ("lit", "budget")], ["FROM", ("lit", "anna")]]
        before = [search(c, p) for p in progs]
        assert any(before), before
        used0 = quota_used(srv, ALICE)
        expunged = [41, 42, 5, 17]
        assert c.cmd("UID STORE %s +FLAGS.SILENT (\\Deleted)" %
                     ",".join(map(str, expunged))).ok
        assert c.cmd("EXPUNGE").ok
        # the quota drops at the expunge, whether unindexed yet or not
        used1 = quota_used(srv, ALICE)
        assert used1 != used0, (used0, used1)
        assert search(c, ["BODY", ("lit", "wombatzebra")]) == []
        s = wait_unindexed(srv, [gone_blob])
        # the entries of the three bodies with no reference left are gone
        assert hits(srv, "wombatzebra") == [] and head_hits(srv, "wombatzebra") == []
        assert not os.path.exists(gone_blob)
        assert q(srv, "SELECT count(*) FROM messages WHERE id = ?", gone) == [(0,)]
        # the copy in b keeps its body, its entries and its blob
        assert hits(srv, "keepmequagga") == [kept] and os.path.exists(kept_blob)
        assert search(c, ["BODY", ("lit", "keepmequagga")]) == []
        assert c.cmd("SELECT b").ok
        assert search(c, ["BODY", ("lit", "keepmequagga")]) == [1]
        assert c.cmd("SELECT a").ok
        after = [search(c, p) for p in progs]
        assert after == [[u for u in b if u not in expunged] for b in before], (before, after)
        assert quota_used(srv, ALICE) == used1
    assert s["indexed"] == s0["indexed"] - 3, (s0, s)
    assert s["messages"] == s0["messages"] - 3, (s0, s)
    assert s["expunged-entries"] == 0 and s["pending"] == 0, s
    assert docs(srv) == s["indexed"]
    assert "not unindexed" not in srv.log()
    # printed, not asserted (FTS5 deletes are merged into the segments later)
    print("index-bytes before %d after the expunge of 3 of %d bodies %d" % (
        s0["index-bytes"], s0["indexed"], s["index-bytes"]))


def test_restart_between_expunge_and_unindex(make_server):
    """A DELETE of a whole mailbox with the daemon stopped (the CLI's
    committer) leaves its bodies waiting, blobs kept, quota already down;
    the daemon started finishes the work. And a daemon killed right after an
    EXPUNGE finishes it at its restart."""
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE doomed").ok and c.cmd("CREATE other").ok
        multiappend(c, "doomed", [body("numbat%02d" % i) for i in range(20)])
        multiappend(c, "other", [body("dingo%02d" % i) for i in range(5)])
    s0 = wait_indexed(srv)
    ids = [hits(srv, "numbat%02d" % i)[0] for i in range(20)]
    blobs = [blob_of(srv, i) for i in ids]
    used0 = quota_used(srv, ALICE)
    srv.stop()
    srv.cli("mailbox", "delete", ALICE, "doomed")
    s = stats(srv)
    assert s["unindexing"] == 20 and s["messages"] == s0["messages"] - 20, s
    assert s["expunged-entries"] == 0, s
    assert all(os.path.exists(b) for b in blobs)
    assert quota_used(srv, ALICE) != used0
    srv.start()
    s = wait_unindexed(srv, blobs)
    assert s["expunged-entries"] == 0 and s["indexed"] == s0["indexed"] - 20, s
    assert not any(os.path.exists(b) for b in blobs)
    assert all(hits(srv, "numbat%02d" % i) == [] for i in range(20))
    assert hits(srv, "dingo03") != []
    # killed (SIGKILL) right after the EXPUNGE's answer: whatever was done
    # or not, the restart finishes it
    with srv.imap_login(ALICE) as c:
        assert c.cmd("SELECT other").ok
        blob3 = blob_of(srv, hits(srv, "dingo03")[0])
        assert c.cmd("UID STORE 1:5 +FLAGS.SILENT (\\Deleted)").ok
        assert c.cmd("EXPUNGE").ok
        srv.kill()
    srv.start()
    s = wait_unindexed(srv, [blob3])
    assert all(hits(srv, "dingo%02d" % i) == [] for i in range(5))
    assert not os.path.exists(blob3)
    assert s["expunged-entries"] == 0 and s["indexed"] == s0["indexed"] - 25, s
    assert docs(srv) == s["indexed"]


def test_user_del_unindexes(make_server):
    """`postern user del` beside the running daemon: the user's bodies are
    unindexed by the daemon's indexer; one shared with another user stays."""
    srv = make_server()
    with srv.client() as c:
        c.ehlo()
        msg = body("sharedokapi").decode()
        c.mail("x@example.net", [BOB, ALICE], msg)
        c.mail("x@example.net", [BOB], body("onlybobtapir").decode())
    with srv.imap_login(BOB) as c:
        multiappend(c, "INBOX", [body("bobappendedkudu")])
    s0 = wait_indexed(srv)
    own = hits(srv, "onlybobtapir") + hits(srv, "bobappendedkudu")
    assert len(own) == 2, own
    blobs = [blob_of(srv, i) for i in own]
    shared, = hits(srv, "sharedokapi")
    srv.cli("user", "del", BOB)
    s = wait_unindexed(srv, blobs)
    assert hits(srv, "onlybobtapir") == [] and hits(srv, "bobappendedkudu") == []
    assert not any(os.path.exists(b) for b in blobs)
    assert hits(srv, "sharedokapi") == [shared]
    assert s["indexed"] == s0["indexed"] - 2 and s["expunged-entries"] == 0, (s0, s)
    with srv.imap_login(ALICE) as c:
        assert c.cmd("SELECT INBOX").ok
        assert search(c, ["BODY", ("lit", "sharedokapi")]) == [1]


def test_fts_off_and_unreadable_blobs(make_server, tmp_path_factory, tls_pair):
    """Bodies waiting to be unindexed: with `fts = no` the daemon drops
    them at start (their entries stay, counted as expunged-entries, until
    `index rebuild --all`); with the index on, a blob gone or changed (its
    text not the one indexed) is dropped with a log line, its entries kept,
    never deleted with another text."""
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE x").ok and c.cmd("CREATE y").ok
        multiappend(c, "x", [body("offaardvark"), body("offbadger")])
        multiappend(c, "y", [body("lostcoati"), body("bentcoypu"), body("finedugong")])
    wait_indexed(srv)
    x_blobs = [blob_of(srv, hits(srv, w)[0]) for w in ("offaardvark", "offbadger")]
    lost, bent, fine = (hits(srv, w)[0] for w in ("lostcoati", "bentcoypu", "finedugong"))
    lost_blob, bent_blob, fine_blob = blob_of(srv, lost), blob_of(srv, bent), blob_of(srv, fine)
    srv.stop()
    srv.cli("mailbox", "delete", ALICE, "x")
    assert stats(srv)["unindexing"] == 2
    off = Postern(tmp_path_factory.mktemp("off"), tls_pair, data_dir=srv.data_dir, fts="no")
    try:
        off.start()
        assert "2 expunged bodies not unindexed" in off.log()
    finally:
        off.stop()
    s = stats(srv)
    assert s["unindexing"] == 0 and s["expunged-entries"] == 2, s
    assert not any(os.path.exists(b) for b in x_blobs)
    assert hits(srv, "offaardvark") != []  # left to a rebuild
    # y: one blob gone, one changed (same size, other text), one fine
    srv.cli("mailbox", "delete", ALICE, "y")
    os.unlink(lost_blob)
    os.chmod(bent_blob, 0o600)
    with open(bent_blob, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b"bentcoypu", b"bentcoypx"))
    srv.start()
    s = wait_unindexed(srv, [fine_blob, bent_blob])
    log = srv.log()
    assert "not unindexed: its blob is gone" in log, log
    assert "not unindexed: its text is not the one indexed" in log, log
    assert hits(srv, "finedugong") == [] and not os.path.exists(fine_blob)
    assert hits(srv, "lostcoati") == [lost] and hits(srv, "bentcoypu") == [bent]
    assert not os.path.exists(bent_blob)
    assert q(srv, "SELECT count(*) FROM messages WHERE id IN (?, ?, ?)", lost, bent, fine) == [(0,)]
    assert s["expunged-entries"] == 4, s
    # the index is sound after the deletes (FTS5's own check)
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        for t in ("fts_body", "fts_head"):
            db.execute("INSERT INTO %s(%s) VALUES ('integrity-check')" % (t, t))
    finally:
        db.close()
    out = srv.cli_out("index", "rebuild", "--all")
    s = stats(srv)
    assert s["expunged-entries"] == 0 and s["unindexing"] == 0, (out, s)
    assert hits(srv, "lostcoati") == [] and hits(srv, "offaardvark") == []


def test_other_extractor_remakes_the_index(make_server):
    """An index recorded as made by another extractor (as after an upgrade
    that changed the text) is emptied at start and made again in the
    background; a user's rebuild is refused meanwhile (its deletes could
    not be exact), `--all` is not."""
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        multiappend(c, "INBOX", [body("oldextractoremu%d" % i) for i in range(10)])
    s0 = wait_indexed(srv)
    srv.stop()
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        with db:
            db.execute("UPDATE fts_state SET v = v + 1 WHERE k = 'extractor'")
    finally:
        db.close()
    p = srv.cli("index", "rebuild", ALICE, check=False)
    assert p.returncode == 1 and b"another extractor" in p.stderr, p
    srv.start()
    assert "made by another extractor" in srv.log()
    s = wait_indexed(srv)
    assert s["indexed"] == s0["indexed"] and s["expunged-entries"] == 0, (s0, s)
    assert len(hits(srv, "oldextractoremu3")) == 1
    out = srv.cli_out("index", "rebuild", ALICE)
    assert out.strip() == "indexed %d" % s["indexed"], out
    with srv.imap_login(ALICE) as c:
        assert c.cmd("SELECT INBOX").ok
        assert search(c, ["BODY", ("lit", "oldextractoremu3")]) == [4]
