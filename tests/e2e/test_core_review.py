"""Review of the group commit (src/store/commit.c): each durable write is
answered only after the round's sync of the database's log, so a SIGKILL
right after the answer keeps it: POP3 DELE+QUIT, IMAP APPEND, IMAP
EXPUNGE. (A SIGKILL keeps the page cache, so these check the order of
commit and answer, and that blobs and rows agree after recovery; the
failed-sync paths are in tests/unit/store_sync.)"""
import os
import poplib
import time

from conftest import USERS, client_tls_context, crlf, split_prepended

ALICE = "alice@example.test"


def blob_count(srv):
    # an indexed body expunged keeps its blob until the indexer has deleted
    # its entries (store/fts.c): counted once that is done (bounded wait)
    deadline = time.monotonic() + 60
    while "unindexing 0" not in srv.cli_out("index", "stats") and time.monotonic() < deadline:
        time.sleep(0.1)
    n = 0
    for root, _dirs, files in os.walk(os.path.join(srv.data_dir, "blobs")):
        n += len(files)
    return n


def deliver(srv, n):
    msgs = []
    with srv.client("mx") as c:
        c.ehlo()
        for i in range(n):
            m = crlf("From: <x@remote.test>\r\nSubject: review %d\r\n\r\nbody %d\r\n" % (i, i))
            assert c.mail("x@remote.test", [ALICE], m).code == 250
            msgs.append(m)
    return msgs


def test_pop3_dele_quit_then_sigkill(make_server):
    srv = make_server("popkill")
    msgs = deliver(srv, 3)
    p = poplib.POP3_SSL(srv.host, srv.ports["pop3s"], context=client_tls_context(), timeout=30)
    p.user(ALICE)
    p.pass_(USERS[ALICE])
    assert p.dele(1).startswith(b"+OK")
    assert p.dele(3).startswith(b"+OK")
    assert p.quit().startswith(b"+OK")
    srv.kill()
    srv.start()
    assert [split_prepended(m)[2] for m in srv.messages(ALICE)] == [msgs[1]]
    assert blob_count(srv) == 1  # the deleted ones' blobs went, the kept one stays


def test_imap_append_and_expunge_then_sigkill(make_server):
    srv = make_server("imapkill")
    msgs = deliver(srv, 2)
    c = srv.imap_login(ALICE)
    appended = crlf("Subject: appended\r\n\r\nhello\r\n")
    tag = c.next_tag()
    c.send(("%s APPEND INBOX {%d}\r\n" % (tag, len(appended))).encode())
    assert c.readline().startswith("+")
    c.send(appended + b"\r\n")
    r = c.read_response(tag)
    assert r.ok, r
    assert c.cmd("SELECT INBOX").ok
    assert c.cmd("UID STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    r = c.cmd("EXPUNGE")
    assert r.ok, r
    srv.kill()
    srv.start()
    assert srv.messages(ALICE)[-1] == appended
    assert [split_prepended(m)[2] for m in srv.messages(ALICE)[:-1]] == [msgs[1]]
    assert blob_count(srv) == 2
