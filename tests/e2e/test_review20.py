"""Review of 81f4738..32354dd (rev20): the edges the change's own tests leave.

HELO SPF memory (policy_tx_helo_spf, smtp_tx_free): STARTTLS forgets it
(RFC 3207 4.2: the session starts over, the same name is asked again);
RSET and a MAIL refused by SPF keep it; a remembered pass/fail is what each
later message's Authentication-Results says; a null-sender transaction (its
HELO is the MAIL identity, checked as such) does not disturb it.

FTS passes (fts.c docs_insert, docs_remove, reindex_user): after the
indexer, a user's rebuild and an unindex, the rows are where they must be:
one fts_text row per indexed body with the same bytes after the rebuild,
the FTS5 entries match each body's own words (body and head), none of the
expunged ones, and the FTS5 index passes its integrity check."""
from conftest import make_message
from test_imap_fts import multiappend, stats, wait_indexed
from test_spf_helo import helo_mx
from test_spf_helo import helo_queries as nq
from test_spf_helo import helo_results
from test_imap_fts_expunge import head_hits, hits, q, wait_unindexed
from zonedns import zonedns  # noqa: F401 (fixture)

RCPT = "alice@example.test"
ALICE = "alice@example.test"
SENDER = "ann@sender.test"


def send(c, subject, sender=SENDER):
    r = c.mail(sender, [RCPT], make_message(sender or "x@y.test", RCPT, subject, "helo memo\r\n"))
    assert r.code == 250, r


def test_helo_memory_starttls_rset_and_results(make_server, zonedns):  # noqa: F811
    zonedns.ttl = 0  # answers not cached by the resolver: every check is seen
    srv = helo_mx(make_server, zonedns, "rev20-helo", {
        "sender.test": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
        "bad.test": [("TXT", "v=spf1 -all")],
        "pass.helo.test": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
        "fail.helo.test": [("TXT", "v=spf1 -all")],
    }, spf_action="reject")
    with srv.client("mx") as c:
        c.ehlo("pass.helo.test")
        send(c, "r1")
        assert nq(zonedns, "pass.helo.test") == 1, zonedns.queries
        # RSET keeps the name, and so its result
        assert c.cmd("RSET").code == 250
        send(c, "r2")
        # a MAIL refused by SPF (spf_action = reject): the name is the same
        r = c.cmd("MAIL FROM:<x@bad.test>")
        assert r.code == 550, r
        send(c, "r3")
        assert nq(zonedns, "pass.helo.test") == 1, zonedns.queries
        before = nq(zonedns, "pass.helo.test")
        # STARTTLS: the session starts over; the same name is asked again
        c.starttls()
        c.ehlo("pass.helo.test")
        send(c, "r4")
        assert nq(zonedns, "pass.helo.test") == before + 1, zonedns.queries
        send(c, "r5")
        assert nq(zonedns, "pass.helo.test") == before + 1, zonedns.queries
    with srv.client("mx") as c:
        c.ehlo("fail.helo.test")
        send(c, "f1")
        send(c, "f2")
        assert nq(zonedns, "fail.helo.test") == 1, zonedns.queries
    got = helo_results(srv, ["r1", "r2", "r3", "r4", "r5", "f1", "f2"])
    for s in ("r1", "r2", "r3", "r4", "r5"):
        assert got[s] == ["spf=pass smtp.helo=pass.helo.test"], got
    for s in ("f1", "f2"):
        assert got[s] == ["spf=fail smtp.helo=fail.helo.test"], got


def test_helo_memory_null_sender_between(make_server, zonedns):  # noqa: F811
    """MAIL FROM:<> checks the HELO as the MAIL identity; the messages
    around it still carry the HELO result, and it comes from one check."""
    srv = helo_mx(make_server, zonedns, "rev20-null", {
        "sender.test": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
        "n.helo.test": [("TXT", "v=spf1 ip4:127.0.0.0/8 ~all")],
    })
    with srv.client("mx") as c:
        c.ehlo("n.helo.test")
        send(c, "n1")
        send(c, "n2", sender="")
        send(c, "n3")
    got = helo_results(srv, ["n1", "n3"])
    assert got == {"n1": ["spf=pass smtp.helo=n.helo.test"],
                   "n3": ["spf=pass smtp.helo=n.helo.test"]}, got


def body(word, i):
    return ("From: x@example.net\r\nSubject: hd%s\r\n\r\nsome text bd%s more text %s\r\n" % (
        word, word, "filler %d " % i * 20)).encode()


def words(n):
    return ["w%04dq%s" % (i, "xyzk"[i % 4]) for i in range(n)]


def integrity(srv):
    # FTS5's own check (it raises when the index is corrupt): it needs a
    # writable connection
    with srv.db_rw() as db:
        db.execute("INSERT INTO fts_body(fts_body) VALUES ('integrity-check')")
        db.execute("INSERT INTO fts_head(fts_head) VALUES ('integrity-check')")


def test_fts_rows_after_index_rebuild_unindex(make_server):
    srv = make_server()
    ws = words(120)
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE r20").ok
        multiappend(c, "r20", [body(w, i) for i, w in enumerate(ws)])
    wait_indexed(srv)
    ids = {}
    for w in ws:
        h = hits(srv, "bd" + w)
        assert len(h) == 1, (w, h)
        assert head_hits(srv, "hd" + w) == h, w
        ids[w] = h[0]
    assert len(set(ids.values())) == len(ws)
    text0 = dict(q(srv, "SELECT message_id, body FROM fts_text"))
    assert sorted(text0) == sorted(ids.values()), (len(text0), len(ids))
    integrity(srv)

    # a user's rebuild: every body deleted and inserted again, in passes
    srv.cli_out("index", "rebuild", ALICE)
    text1 = dict(q(srv, "SELECT message_id, body FROM fts_text"))
    assert text1 == text0
    for w in ws:
        assert hits(srv, "bd" + w) == [ids[w]], w
        assert head_hits(srv, "hd" + w) == [ids[w]], w
    integrity(srv)

    # expunge half: their entries and fts_text rows go; the others stay
    gone = ws[::2]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("SELECT r20").ok
        uids = ",".join(str(i * 2 + 1) for i in range(len(gone)))
        assert c.cmd("UID STORE %s +FLAGS.SILENT (\\Deleted)" % uids).ok
        assert c.cmd("EXPUNGE").ok
    s = wait_unindexed(srv)
    assert s["unindexing"] == 0, s
    for w in ws:
        want = [] if w in gone else [ids[w]]
        assert hits(srv, "bd" + w) == want, (w, hits(srv, "bd" + w))
        assert head_hits(srv, "hd" + w) == want, w
    text2 = dict(q(srv, "SELECT message_id, body FROM fts_text"))
    assert sorted(text2) == sorted(ids[w] for w in ws if w not in gone)
    integrity(srv)

    # a second rebuild after the unindex: still one row per body
    srv.cli_out("index", "rebuild", ALICE)
    assert dict(q(srv, "SELECT message_id, body FROM fts_text")) == text2
    for w in ws:
        want = [] if w in gone else [ids[w]]
        assert hits(srv, "bd" + w) == want, w
    integrity(srv)
    st = stats(srv)
    assert st["pending"] == 0, st
