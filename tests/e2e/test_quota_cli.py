"""Mailbox administration and quotas from the CLI while the daemon runs
(`postern mailbox create|delete|rename`, `postern quota set|get`), and SMTP
delivery to an account over quota: 452 4.2.2 (RFC 3463 X.2.2, temporary as
Postfix and Dovecot's LMTP answer by default) at RCPT when the account is
already at a limit, and at the end of data when the message itself would
take it over; nothing is stored then."""
from conftest import make_message

DEFAULT_BOXES = ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]


def boxes(server, user):
    """{name: {field: int}} from `mailbox list`."""
    out = {}
    for line in server.cli_out("mailbox", "list", user).splitlines():
        if not line.strip():
            continue
        name, *kv = line.split()
        out[name] = {k: int(v) for k, v in (f.split("=", 1) for f in kv)}
    return out


def quota(server, user):
    """{"storage": (used, limit), "messages": (used, limit)} from `quota get`."""
    out = {}
    for line in server.cli_out("quota", "get", user).splitlines():
        what, used, limit = line.split()
        assert used.startswith("used=") and limit.startswith("limit="), line
        out[what] = (int(used[5:]), int(limit[6:]))
    return out


def new_user(server, addr):
    server.cli("user", "add", addr, input="Quota-Secret-9\n")


def deliver(server, rcpt, body):
    """One message over the MX role: (RCPT reply, final reply or None)."""
    msg = make_message("sender@remote.test", rcpt, "quota", body)
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        if r.code != 250:
            return r, None
        return r, c.data(msg)


def test_mailbox_create_rename_delete(server):
    user = "boxes@example.test"
    new_user(server, user)
    b = boxes(server, user)
    assert sorted(b) == DEFAULT_BOXES, "a new user gets INBOX and the special-use mailboxes"

    server.cli("mailbox", "create", user, "Projects/2026")
    b = boxes(server, user)
    assert "Projects" in b and "Projects/2026" in b, "missing parents are created"
    p = server.cli("mailbox", "create", user, "Projects", check=False)
    assert p.returncode == 1 and "already exists" in p.stderr.decode(), p.stderr.decode()
    p = server.cli("mailbox", "create", "nobody@example.test", "X", check=False)
    assert p.returncode == 1 and "no such user" in p.stderr.decode(), p.stderr.decode()
    p = server.cli("mailbox", "create", user, "bad//name", check=False)
    assert p.returncode == 1

    uidvalidity = b["Projects/2026"]["uidvalidity"]
    server.cli("mailbox", "rename", user, "Projects", "Work")
    b = boxes(server, user)
    assert "Projects" not in b and "Projects/2026" not in b
    assert b["Work/2026"]["uidvalidity"] == uidvalidity, "RENAME keeps UIDVALIDITY"
    p = server.cli("mailbox", "rename", user, "Work", "Work/sub", check=False)
    assert p.returncode == 1, "a mailbox cannot move into its own child"
    p = server.cli("mailbox", "rename", user, "Nosuch", "Other", check=False)
    assert p.returncode == 1 and "no such mailbox" in p.stderr.decode()

    p = server.cli("mailbox", "delete", user, "Work", check=False)
    assert p.returncode == 1 and "children" in p.stderr.decode(), p.stderr.decode()
    p = server.cli("mailbox", "delete", user, "INBOX", check=False)
    assert p.returncode == 1
    server.cli("mailbox", "delete", user, "Work/2026")
    server.cli("mailbox", "delete", user, "Work")
    assert sorted(boxes(server, user)) == DEFAULT_BOXES

    # RENAME INBOX (RFC 9051 6.3.6): its messages move, INBOX stays, empty
    for i in range(2):
        r, d = deliver(server, user, "message %d\r\n" % i)
        assert d is not None and d.code == 250, (r, d)
    inbox = boxes(server, user)["INBOX"]
    stored = [server.mail_cat(user, uid) for uid, *_ in server.mail_list(user)]
    server.cli("mailbox", "rename", user, "INBOX", "Old")
    b = boxes(server, user)
    assert b["INBOX"]["messages"] == 0 and b["INBOX"]["uidvalidity"] == inbox["uidvalidity"]
    assert b["Old"]["messages"] == 2
    moved = [server.mail_cat(user, uid, "Old") for uid, *_ in server.mail_list(user, "Old")]
    assert moved == stored
    # the quota counts the account, whichever mailbox holds the messages
    assert quota(server, user)["messages"] == (2, 0)
    # and the daemon still delivers to INBOX
    r, d = deliver(server, user, "after rename\r\n")
    assert d is not None and d.code == 250
    assert boxes(server, user)["INBOX"]["messages"] == 1
    server.cli("user", "del", user)


def test_quota_set_get(server):
    user = "limits@example.test"
    new_user(server, user)
    assert quota(server, user) == {"storage": (0, 0), "messages": (0, 0)}
    server.cli("quota", "set", user, "10m", "500")
    assert quota(server, user) == {"storage": (0, 10 * 1024 * 1024), "messages": (0, 500)}
    server.cli("quota", "set", user, "64k", "0")
    assert quota(server, user)["storage"] == (0, 64 * 1024)
    for bad in (["x", "1"], ["1q", "1"], ["1", "1k"], ["-1", "1"]):
        p = server.cli("quota", "set", user, *bad, check=False)
        assert p.returncode == 2, bad
    p = server.cli("quota", "get", "nobody@example.test", check=False)
    assert p.returncode == 1
    r, d = deliver(server, user, "counted\r\n")
    assert d.code == 250
    stored = server.mail_list(user)
    assert quota(server, user)["storage"] == (stored[0][1], 64 * 1024)
    assert quota(server, user)["messages"] == (1, 0)
    server.cli("user", "del", user)


def test_smtp_over_quota(server):
    user = "full@example.test"
    new_user(server, user)
    server.cli("quota", "set", user, "4k", "0")

    # under the limit at RCPT, but this message would take it over: refused
    # at the end of data, nothing stored
    r, d = deliver(server, user, "x" * 6000 + "\r\n")
    assert r.code == 250, r
    assert d.code == 452 and d.enh == "4.2.2" and "Mailbox full" in d.text, d
    assert server.mail_list(user) == []
    assert quota(server, user)["storage"] == (0, 4096)

    # a small one fits
    r, d = deliver(server, user, "small\r\n")
    assert d is not None and d.code == 250, (r, d)
    used = quota(server, user)["storage"][0]
    assert 0 < used < 4096

    # at the limit: refused at RCPT already
    server.cli("quota", "set", user, str(used), "0")
    r, d = deliver(server, user, "more\r\n")
    assert r.code == 452 and r.enh == "4.2.2" and "Mailbox full" in r.text, r
    assert len(server.mail_list(user)) == 1

    # the message count limit too
    server.cli("quota", "set", user, "0", "1")
    r, d = deliver(server, user, "more\r\n")
    assert r.code == 452 and r.enh == "4.2.2", r

    # other recipients of the same transaction are not refused by it
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % user).code == 452
        assert c.cmd("RCPT TO:<carol@example.test>").code == 250
        before = server.count("carol@example.test")
        d = c.data(make_message("sender@remote.test", "carol@example.test", "q", "ok\r\n"))
        assert d.code == 250, d
    assert server.count("carol@example.test") == before + 1

    # limits lifted: delivered again
    server.cli("quota", "set", user, "0", "0")
    r, d = deliver(server, user, "welcome back\r\n")
    assert d is not None and d.code == 250, (r, d)
    assert len(server.mail_list(user)) == 2
    server.cli("user", "del", user)
