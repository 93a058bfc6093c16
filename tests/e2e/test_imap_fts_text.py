"""SEARCH BODY confirmed from the full-text index's text of each body
(store table fts_text, schema 12; searchcmd.c confirm_text): the answer is
the matcher's on the message file (test_imap_fts.py holds every key against
the scan), and these are the cases where the stored text alone could go
wrong: a needle that would span two text parts (the text joins them with a
line feed), a needle that is empty, a body whose stored text is damaged, a
body indexed before the text was kept."""

from test_imap_fts import multiappend, search, stats, wait_indexed

ALICE = "alice@example.test"

TWO_PARTS = (b"From: a@example.net\r\nSubject: two parts\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
             b"--b1\r\nContent-Type: text/plain\r\n\r\nfirst part ends here\r\n"
             b"--b1\r\nContent-Type: text/plain\r\n\r\nsecond part starts\r\n--b1--\r\n")
NO_TEXT = (b"From: a@example.net\r\nSubject: no text part\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/octet-stream\r\n\r\nbinary stuff here\r\n")


def plain(i):
    return ("From: p%d@example.net\r\nSubject: plain %d\r\n\r\nthe wombat number %d says hi\r\n"
            % (i, i, i)).encode()


def db_exec(srv, sql, *args):
    with srv.db_rw() as db:
        return db.execute(sql, args).fetchall()


def test_text_parts_are_not_joined(make_server):
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE box").ok
        multiappend(c, "box", [TWO_PARTS, NO_TEXT] + [plain(i) for i in range(20)])
        wait_indexed(srv)
        assert db_exec(srv, "SELECT count(*) FROM fts_text")[0][0] == 22
        assert c.cmd("EXAMINE box").ok
        L = lambda s: ("lit", s)  # noqa: E731
        assert search(c, ["BODY", L("ends here")]) == [1]
        assert search(c, ["BODY", L("part starts")]) == [1]
        # across the two parts: no part holds it (the stored text has the
        # parts joined by a line feed; such a needle reads the file)
        assert search(c, ["BODY", L("here\nsecond")]) == []
        assert search(c, ["BODY", L("here\r\nsecond")]) == []
        # a message without a text part: BODY never matches it, not even ""
        assert search(c, ["BODY", L("binary stuff")]) == []
        assert 2 not in search(c, ["BODY", L("")])
        assert search(c, ["BODY", L("")]) == [1] + list(range(3, 23))
        assert search(c, ["BODY", L("WOMBAT NUMBER 7 ")]) == [10]
        assert search(c, ["NOT", "BODY", L("wombat")]) == [1, 2]
        assert search(c, ["OR", "BODY", L("ends here"), "BODY", L("number 19 ")]) == [1, 22]


def test_damaged_or_missing_text_reads_the_file(make_server):
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE box").ok
        multiappend(c, "box", [plain(i) for i in range(30)])
        wait_indexed(srv)
        assert c.cmd("EXAMINE box").ok
        want = search(c, ["BODY", ("lit", "wombat")])
        assert want == list(range(1, 31))
    srv.stop()
    # one body's text damaged, another's gone (as indexed before schema 12)
    ids = [r[0] for r in db_exec(srv, "SELECT message_id FROM fts_text ORDER BY message_id")]
    db_exec(srv, "UPDATE fts_text SET body = x'789c0badbeef' WHERE message_id = ?", ids[3])
    db_exec(srv, "DELETE FROM fts_text WHERE message_id = ?", ids[7])
    srv.start()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("EXAMINE box").ok
        assert search(c, ["BODY", ("lit", "wombat")]) == want
        assert search(c, ["BODY", ("lit", "number 3 ")]) == [4]
        assert search(c, ["BODY", ("lit", "number 7 ")]) == [8]
    assert "is damaged; reading its file" in srv.log()
    assert stats(srv)["indexed"] == 30
