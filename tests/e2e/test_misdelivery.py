"""A recipient deleted between RCPT TO and the end of the data (issue 6.3).

Recipients are resolved to account ids at RCPT time. The account is deleted
(and maybe a new one created) with the CLI beside the running daemon while
the client holds DATA open; then the client ends the data. The message must
not land in the new account, nor be acknowledged and dropped: the daemon
answers 451 and stores nothing, and the sender's retry gets 550 5.1.1 at RCPT.
"""
import os
import subprocess

from conftest import DOMAIN, make_message

ALICE = "alice@example.test"
VICTIM = "victim@" + DOMAIN
NEWBIE = "newbie@" + DOMAIN


def stored_rows(server):
    """(messages, mailbox entries, queue entries) in the database file."""
    db = server.db()
    try:
        return tuple(db.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
                     for t in ("messages", "mailbox_messages", "queue"))
    finally:
        db.close()


def blob_files(server):
    root = os.path.join(server.data_dir, "blobs")
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def open_data(server, rcpts, subject):
    """An MX session left in the middle of DATA (body sent, no final dot)."""
    c = server.client("mx")
    c.ehlo()
    assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
    for rc in rcpts:
        r = c.cmd("RCPT TO:<%s>" % rc)
        assert r.code == 250, (rc, r)
    assert c.cmd("DATA").code == 354
    c.send(make_message("sender@remote.test", rcpts[0], subject, "for %s\r\n" % rcpts[0]))
    return c


def end_data(c):
    c.send(b".\r\n")
    return c.reply()


def rcpt_reply(server, rcpt):
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        return c.cmd("RCPT TO:<%s>" % rcpt)


def new_victim(make_server):
    srv = make_server("misdelivery")
    # the newest account: a reused id would go to the next account created
    srv.cli("user", "add", VICTIM, input="victim-Secret-9\n")
    assert rcpt_reply(srv, VICTIM).code == 250
    return srv


def test_deleted_and_recreated_during_data(make_server):
    srv = new_victim(make_server)
    with open_data(srv, [VICTIM], "for-victim") as c:
        srv.cli("user", "del", VICTIM)
        srv.cli("user", "add", NEWBIE, input="newbie-Secret-8\n")
        r = end_data(c)
        assert (r.code, r.enh) == (451, "4.3.0"), r
        assert c.cmd("NOOP").code == 250  # the session goes on
    assert srv.mail_list(NEWBIE) == []
    assert stored_rows(srv) == (0, 0, 0)
    assert blob_files(srv) == []
    assert "result=451" in srv.log()
    # the sender retries: the address is gone for good
    r = rcpt_reply(srv, VICTIM)
    assert (r.code, r.enh) == (550, "5.1.1"), r


def test_deleted_during_data(make_server):
    """Delete only, with a live recipient beside the deleted one: the whole
    message is refused for now (nothing half-delivered), no orphan row or blob;
    the retry reaches the live one."""
    srv = new_victim(make_server)
    with open_data(srv, [VICTIM, ALICE], "for-both") as c:
        srv.cli("user", "del", VICTIM)
        r = end_data(c)
        assert (r.code, r.enh) == (451, "4.3.0"), r
    assert stored_rows(srv) == (0, 0, 0)
    assert blob_files(srv) == []
    assert srv.mail_list(ALICE) == []
    assert "no INBOX" not in srv.log()
    # the retry: 550 for the deleted address, the other one is delivered
    msg = make_message("sender@remote.test", ALICE, "retry", "retry\r\n")
    with srv.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        r = c.cmd("RCPT TO:<%s>" % VICTIM)
        assert (r.code, r.enh) == (550, "5.1.1"), r
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.data(msg).code == 250
    assert len(srv.mail_list(ALICE)) == 1
    assert stored_rows(srv) == (1, 1, 0)
    assert len(blob_files(srv)) == 1


def test_recreated_mailbox_gets_new_uidvalidity(make_server):
    """RFC 3501 2.3.1.1: a mailbox deleted and re-created (here several times
    within a second or two) must not come back with the same UIDVALIDITY, or
    POP3 UIDLs and IMAP UIDs of the new messages would repeat the old ones."""
    srv = make_server("uidvalidity", start=False)
    # a pre-hashed password: no argon2 per `user add`, so the loop is quick
    h = subprocess.run(["openssl", "passwd", "-6", "victim-Secret-9"], capture_output=True,
                       check=True, timeout=30).stdout.decode().strip()
    seen = []
    for _ in range(5):
        srv.cli("user", "add", VICTIM, "--hash", "{SHA512-CRYPT}" + h)
        db = srv.db()
        try:
            seen.append(db.execute("SELECT uidvalidity FROM mailboxes b JOIN users u"
                                   " ON u.id = b.user_id WHERE u.localpart = 'victim'").fetchone()[0])
        finally:
            db.close()
        srv.cli("user", "del", VICTIM)
    assert seen == sorted(set(seen)), seen
    assert all(0 < v < 2 ** 32 for v in seen), seen
    # the CLI shows the same value
    srv.cli("user", "add", VICTIM, "--hash", "{SHA512-CRYPT}" + h)
    inbox = [l for l in srv.cli_out("mailbox", "list", VICTIM).splitlines()
             if l.split()[:1] == ["INBOX"]]
    fields = dict(kv.split("=", 1) for kv in inbox[0].split()[1:])
    assert int(fields["uidvalidity"]) > seen[-1], inbox


def test_pop3_session_across_account_recreated(make_server):
    """A POP3 session of an account that is deleted and re-created (same
    address) while the session is open: its RETR must not show the new
    account's messages, nor its DELE+QUIT remove them (they got 250 and were
    never in this maildrop). The maildrop's UIDVALIDITY tells the two INBOXes
    apart."""
    from test_pop3 import deliver, pop
    srv = new_victim(make_server)
    for subject in ("old1", "old2"):
        deliver(srv, VICTIM, make_message("sender@remote.test", VICTIM, subject, subject + "\r\n"))
    p = pop(srv, role="pop3s")
    try:
        assert p.cmd("USER " + VICTIM).startswith("+OK")
        assert p.cmd("PASS victim-Secret-9").startswith("+OK maildrop has 2 messages")
        assert p.cmd("DELE 1").startswith("+OK")
        srv.cli("user", "del", VICTIM)
        srv.cli("user", "add", VICTIM, input="another-Owner-7\n")
        for subject in ("new1", "new2"):
            deliver(srv, VICTIM, make_message("sender@remote.test", VICTIM, subject,
                                              subject + "\r\n"))
        assert len(srv.mail_list(VICTIM)) == 2
        first, body = p.multi("RETR 2")
        assert first.startswith("-ERR") and body is None, (first, body)
        r = p.cmd("QUIT")
        assert r.startswith("-ERR"), r  # RFC 1939 6: not removed
    finally:
        p.close()
    new = srv.mail_list(VICTIM)
    assert [m[0] for m in new] == [1, 2], new  # the acknowledged messages are all there
    assert b"new1\r\n" in srv.mail_cat(VICTIM, 1)
