"""A second look at the store side of IMAP through the real daemon:
SIGKILL under an APPEND/COPY/MOVE/STORE load (every acknowledged change
survives, nothing half-done: quota counters equal a recount, no orphan rows,
no row without its blob, the expunge log consistent with the mailboxes), and
quotas across several recipients of one SMTP delivery."""
import os
import re
import threading
import time

from conftest import make_message

PASSWORD = "Review-Store-9"


def new_user(server, addr):
    server.cli("user", "add", addr, input=PASSWORD + "\n")


def imap_login(server, user):
    m = server.imaplib("imaps")
    m.login(user, PASSWORD)
    return m


def quota_used(server, user):
    for line in server.cli_out("quota", "get", user).splitlines():
        what, used, _limit = line.split()
        if what == "storage":
            return int(used[5:])
    raise AssertionError("no storage line")


def test_several_recipients_one_over_quota(server):
    """RCPT refuses only an account at its limit already (452 4.2.2); one
    whose limit this message would cross must not make the whole delivery
    fail at end of data when it has other recipients: the retry would pass
    RCPT again and fail again, for ever, and the other recipients would
    never get their copy. That account takes this last message over its
    limit; the next delivery's RCPT refuses it alone."""
    a, b = "nearfull@example.test", "roomy@example.test"
    new_user(server, a)
    new_user(server, b)
    server.cli("quota", "set", a, "4k", "0")
    body = "y" * 6000 + "\r\n"
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % a).code == 250
        assert c.cmd("RCPT TO:<%s>" % b).code == 250
        d = c.data(make_message("sender@remote.test", a, "two", body))
        assert d.code == 250, d
    assert server.count(a) == 1 and server.count(b) == 1
    assert quota_used(server, a) > 4096

    # at its limit now: the next delivery's RCPT refuses that one alone
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        r = c.cmd("RCPT TO:<%s>" % a)
        assert r.code == 452 and r.enh == "4.2.2", r
        assert c.cmd("RCPT TO:<%s>" % b).code == 250
        d = c.data(make_message("sender@remote.test", b, "one", "hi\r\n"))
        assert d.code == 250, d
    assert server.count(a) == 1 and server.count(b) == 2

    # alone, a message that does not fit is still refused at end of data
    server.cli("quota", "set", a, str(quota_used(server, a) + 100), "0")
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % a).code == 250
        d = c.data(make_message("sender@remote.test", a, "alone", body))
        assert d.code == 452 and d.enh == "4.2.2", d
    assert server.count(a) == 1


# ---- SIGKILL under an IMAP write load ----

APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


def copyuid_dst(m):
    """The destination UID of the last COPYUID (RFC 4315) of one UID: imaplib
    files the response code under its name."""
    v = m.untagged_responses.pop("COPYUID")[-1].split()
    assert len(v) == 3 and v[1].isdigit() and v[2].isdigit(), v
    return int(v[2])


def worker(server, user, no, stop, killing, acked, errors):
    """APPEND (every tenth message ~500 KB: its cache is built off the
    committer), then UID STORE / UID COPY / UID MOVE on what it appended;
    records every change the server acknowledged with OK."""
    try:
        m = imap_login(server, user)
        m.select("INBOX")
    except Exception as e:  # noqa: BLE001 - the kill may come early
        if not killing.is_set():
            errors.append(repr(e))
        return
    seq = 0
    try:
        while not stop.is_set():
            seq += 1
            tag = "w%d-%d" % (no, seq)
            msg = ("From: <w@remote.test>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s\r\n"
                   % (user, tag, ("body %s\r\n" % tag) * (1 + seq % 40 if seq % 10 else 30000))).encode()
            typ, data = m.append("INBOX", None, None, msg)
            if typ != "OK":
                continue
            mm = APPENDUID.search(data[0])
            uid = int(mm.group(2))
            acked.append(("append", tag, "INBOX", uid))
            k = seq % 4
            if k == 1:
                typ, data = m.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
                if typ == "OK":
                    acked.append(("flag", tag, "INBOX", uid))
            elif k == 2:
                typ, data = m.uid("COPY", str(uid), "Sent")
                if typ == "OK":
                    acked.append(("copy", tag, "Sent", copyuid_dst(m)))
            elif k == 3:
                # applied but not acknowledged when the kill comes: either way
                acked.append(("move-tried", tag, "Archive", 0))
                typ, data = m.uid("MOVE", str(uid), "Archive")
                if typ == "OK":
                    acked.append(("move", tag, "Archive", copyuid_dst(m), uid))
    except Exception as e:  # noqa: BLE001 - the connection dies with the daemon
        if not killing.is_set():
            errors.append(repr(e))


def fetch_subjects(m, box):
    """{uid: (subject, flags)} of a mailbox."""
    typ, _ = m.select(box)
    assert typ == "OK"
    typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        uid = int(re.search(rb"UID (\d+)", head).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode()
        subj = body.decode().split(":", 1)[1].strip() if b":" in body else ""
        out[uid] = (subj, flags)
    return out


INVARIANTS = {
    # quota counters equal a recount
    "quota != recount":
        "SELECT count(*) FROM quotas q WHERE storage_used <>"
        " (SELECT coalesce(sum(m.size), 0) FROM mailboxes b JOIN mailbox_messages mm"
        " ON mm.mailbox_id = b.id JOIN messages m ON m.id = mm.message_id"
        " WHERE b.user_id = q.user_id) OR message_used <>"
        " (SELECT count(*) FROM mailboxes b JOIN mailbox_messages mm ON mm.mailbox_id = b.id"
        " WHERE b.user_id = q.user_id)",
    "entry without message":
        "SELECT count(*) FROM mailbox_messages mm WHERE NOT EXISTS"
        " (SELECT 1 FROM messages m WHERE m.id = mm.message_id)",
    # fts = 2: expunged, waiting for the indexer to delete its entries
    # (store/fts.c), row and blob kept until then
    "message without reference":
        "SELECT count(*) FROM messages m WHERE m.fts <> 2 AND NOT EXISTS"
        " (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = m.id)"
        " AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id)",
    "message waiting to be unindexed with a reference":
        "SELECT count(*) FROM messages m WHERE m.fts = 2 AND (EXISTS"
        " (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = m.id)"
        " OR EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id))",
    "uid >= uidnext":
        "SELECT count(*) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id"
        " WHERE mm.uid >= b.uidnext",
    "modseq > highestmodseq":
        "SELECT count(*) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id"
        " WHERE mm.modseq > b.highestmodseq",
    "expunged uid still present":
        "SELECT count(*) FROM expunged e JOIN mailbox_messages mm"
        " ON mm.mailbox_id = e.mailbox_id AND mm.uid = e.uid",
    "expunged beyond uidnext or highestmodseq":
        "SELECT count(*) FROM expunged e JOIN mailboxes b ON b.id = e.mailbox_id"
        " WHERE e.uid >= b.uidnext OR e.modseq > b.highestmodseq",
}


def check_store(srv):
    db = srv.db()
    try:
        bad = {k: db.execute(q).fetchone()[0] for k, q in INVARIANTS.items()}
        blobs = [r[0] for r in db.execute("SELECT blob FROM messages")]
    finally:
        db.close()
    assert all(v == 0 for v in bad.values()), bad
    root = os.path.join(srv.data_dir, "blobs")
    on_disk = {}
    for d in os.listdir(root):
        for f in os.listdir(os.path.join(root, d)):
            on_disk[f] = d
    missing = [b for b in blobs if b not in on_disk]
    assert missing == [], missing[:5]
    return len(blobs), len(on_disk)


def test_sigkill_under_imap_writes(make_server):
    srv = make_server("killimap")
    users = ["k1@example.test", "k2@example.test"]
    for u in users:
        new_user(srv, u)
    for round_no in range(2):
        stop, killing = threading.Event(), threading.Event()
        acked, errors = [], []
        threads = [threading.Thread(target=worker, args=(srv, users[i % 2], i + 10 * round_no,
                                                         stop, killing, acked, errors))
                   for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acked) < 60 * (round_no + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        killing.set()
        srv.kill()  # SIGKILL in the middle of the load
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        assert len(acked) >= 20 and not errors, (len(acked), errors[:3])
        srv.start()
        n_rows, n_files = check_store(srv)
        # the startup removed the blobs that a commit in flight left
        assert n_rows == n_files, (n_rows, n_files)

        # every acknowledged change is there
        state = {}
        for u in users:
            m = imap_login(srv, u)
            state[u] = {box: fetch_subjects(m, box) for box in ("INBOX", "Sent", "Archive")}
            m.logout()
        by_tag = {}
        for u in users:
            for box, msgs in state[u].items():
                for uid, (subj, flags) in msgs.items():
                    by_tag.setdefault(subj, []).append((box, uid, flags))
        moved = {a[1] for a in acked if a[0] in ("move", "move-tried")}
        for a in acked:
            kind, tag, box, uid = a[:4]
            where = by_tag.get(tag, [])
            if kind == "append" and tag not in moved:
                assert ("INBOX", uid) in [(b, x) for b, x, _ in where], (a, where)
            elif kind == "append":
                assert any(b in ("INBOX", "Archive") for b, _, _ in where), (a, where)
            elif kind == "copy":
                assert ("Sent", uid) in [(b, x) for b, x, _ in where], (a, where)
            elif kind == "move":
                assert ("INBOX", a[4]) not in [(b, x) for b, x, _ in where], (a, where)
                assert [w for w in where if w[0] == "Archive" and (w[1] == uid)], \
                    (a, where)
            elif kind == "flag":
                assert any("\\Flagged" in f for _, _, f in where), (a, where)
        # a message is in INBOX or Archive, never both (MOVE is all or nothing)
        for tag, where in by_tag.items():
            assert len([w for w in where if w[0] in ("INBOX", "Archive")]) <= 1, (tag, where)


# ---- the CLI beside IMAP sessions and SMTP deliveries ----

def test_user_deleted_during_append(make_server):
    """`user del` while an APPEND's literal is on the wire: the APPEND fails
    (NO; the account is gone), and nothing of it is left: no message row, no
    blob."""
    srv = make_server("delappend")
    user = "gone@example.test"
    new_user(srv, user)
    c = srv.imap_login(user, PASSWORD)
    body = b"Subject: half\r\n\r\n" + b"z" * 200000 + b"\r\n"
    tag = c.next_tag()
    c.send(b"%s APPEND INBOX {%d}\r\n" % (tag.encode(), len(body)))
    assert c.readline().startswith("+"), "no continuation"
    c.send(body[:100000])
    srv.cli("user", "del", user)
    c.send(body[100000:] + b"\r\n")
    r = c.read_response(tag)
    assert r.status == "NO", r
    c.close()
    # before a restart (whose cleanup would hide leftovers) and after
    assert check_store(srv) == (0, 0)
    srv.stop()
    srv.start()
    assert check_store(srv) == (0, 0)


def test_cli_rename_delete_under_imap_and_smtp(make_server):
    """CLI mailbox create/rename/delete in a loop while IMAP sessions APPEND
    to and MOVE out of the same mailboxes and SMTP delivers to the INBOX:
    every IMAP answer is a tagged OK or NO (never BAD, never a dropped
    connection), every SMTP delivery 250, and the store stays consistent."""
    srv = make_server("clirace")
    user = "race@example.test"
    new_user(srv, user)
    srv.cli("mailbox", "create", user, "Work")
    stop = threading.Event()
    problems, counts = [], {"ok": 0, "no": 0, "smtp": 0}

    def imap_loop(no):
        try:
            c = srv.imap_login(user, PASSWORD)
            seq = 0
            while not stop.is_set():
                seq += 1
                msg = b"Subject: r%d-%d\r\n\r\nbody\r\n" % (no, seq)
                tag = c.next_tag()
                c.send(b"%s APPEND Work {%d+}\r\n" % (tag.encode(), len(msg)) + msg + b"\r\n")
                r = c.read_response(tag)
                for r2 in (r, c.cmd("SELECT INBOX"), c.cmd("UID MOVE 1:* Work")):
                    if r2.status == "OK":
                        counts["ok"] += 1
                    elif r2.status == "NO":
                        counts["no"] += 1
                    else:
                        problems.append(repr(r2))
            c.cmd("LOGOUT")
            c.close()
        except Exception as e:  # noqa: BLE001
            problems.append("imap %d: %r" % (no, e))

    def smtp_loop():
        try:
            while not stop.is_set():
                with srv.client("mx") as c:
                    c.ehlo()
                    assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
                    assert c.cmd("RCPT TO:<%s>" % user).code == 250
                    d = c.data(make_message("s@remote.test", user, "smtp", "hello\r\n"))
                    if d.code != 250:
                        problems.append("smtp %r" % d)
                    counts["smtp"] += 1
        except Exception as e:  # noqa: BLE001
            problems.append("smtp: %r" % e)

    threads = [threading.Thread(target=imap_loop, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=smtp_loop))
    for t in threads:
        t.start()
    try:
        for i in range(12):
            srv.cli("mailbox", "rename", user, "Work", "Old%d" % i, check=False)
            srv.cli("mailbox", "create", user, "Work", check=False)
            if i % 2:
                srv.cli("mailbox", "delete", user, "Old%d" % i, check=False)
            srv.cli("mailbox", "rename", user, "INBOX", "In%d" % i, check=False)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert problems == [], problems[:5]
    assert counts["ok"] > 0 and counts["smtp"] > 0, counts
    # the bodies the deletes left to the indexer (store/fts.c) go first:
    # the restart below must change nothing
    deadline = time.monotonic() + 60
    while "unindexing 0" not in srv.cli_out("index", "stats") and time.monotonic() < deadline:
        time.sleep(0.1)
    n_rows, n_files = check_store(srv)
    srv.stop()
    srv.start()
    assert check_store(srv) == (n_rows, n_files)


def test_large_messages_get_their_cache(make_server):
    """Messages above the inline limit (256 KiB) get their MIME cache on the
    builder thread before the commit: over SMTP and over APPEND, each stored
    with its cache, and BODYSTRUCTURE answers from it; small ones in between
    are stored as well."""
    srv = make_server("bigcache")
    user = "big@example.test"
    new_user(srv, user)
    part = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
    body = ("--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + part * 40000 + "--b--\r\n")
    msg = make_message("s@remote.test", user, "big", body,
                       extra_headers=("MIME-Version: 1.0",
                                      'Content-Type: multipart/mixed; boundary="b"'))
    with srv.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % user).code == 250
        assert c.data(msg).code == 250
        assert c.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % user).code == 250
        assert c.data(make_message("s@remote.test", user, "small", "hi\r\n")).code == 250
    m = imap_login(srv, user)
    raw = msg.encode() if isinstance(msg, str) else msg
    typ, _ = m.append("INBOX", None, None, raw)
    assert typ == "OK"
    m.select("INBOX")
    typ, data = m.uid("FETCH", "1:*", "(RFC822.SIZE BODYSTRUCTURE)")
    assert typ == "OK"
    lines = [d if isinstance(d, bytes) else d[0] for d in data]
    assert len(lines) == 3, lines
    for i in (0, 2):
        assert b'("application" "octet-stream" NIL NIL NIL "base64" 2959998 ' in lines[i], lines[i][:300]
    m.logout()
    db = srv.db()
    try:
        sizes = [r for r in db.execute("SELECT size, cache IS NOT NULL AND length(cache) > 0"
                                       " FROM messages ORDER BY id")]
    finally:
        db.close()
    assert [s > 256 * 1024 for s, _ in sizes] == [True, False, True], sizes
    assert all(ok for _, ok in sizes), sizes


def test_declared_size_refused_at_rcpt(server):
    """RFC 1870 6.2: with SIZE= at MAIL, a recipient whose quota the message
    cannot fit is refused at RCPT (452 4.2.2), alone; the other recipients
    get the message and the quota holds."""
    a, b = "sized@example.test", "sized2@example.test"
    new_user(server, a)
    new_user(server, b)
    server.cli("quota", "set", a, "4k", "0")
    body = "s" * 6000 + "\r\n"
    msg = make_message("sender@remote.test", b, "sized", body)
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test> SIZE=%d" % len(msg)).code == 250
        r = c.cmd("RCPT TO:<%s>" % a)
        assert r.code == 452 and r.enh == "4.2.2" and "Mailbox full" in r.text, r
        assert c.cmd("RCPT TO:<%s>" % b).code == 250
        assert c.data(msg).code == 250
        # a declared size that fits is accepted
        assert c.cmd("MAIL FROM:<sender@remote.test> SIZE=100").code == 250
        assert c.cmd("RCPT TO:<%s>" % a).code == 250
        assert c.data(make_message("sender@remote.test", a, "fits", "ok\r\n")).code == 250
    assert server.count(a) == 1 and server.count(b) == 1
    assert quota_used(server, a) <= 4096


def test_highestmodseq_and_vanished(server):
    """RFC 7162: every change to a mailbox (APPEND, STORE, COPY into it, MOVE
    out of it, EXPUNGE, a delivery) raises HIGHESTMODSEQ; UIDs are never
    reused; SELECT (QRESYNC) from the first state reports exactly the UIDs
    that went (VANISHED (EARLIER))."""
    user = "modseq@example.test"
    new_user(server, user)
    a = server.imap_login(user, PASSWORD)
    b = server.imap_login(user, PASSWORD)
    assert a.cmd("ENABLE QRESYNC").ok

    def status():
        r = b.cmd("STATUS INBOX (HIGHESTMODSEQ UIDNEXT UIDVALIDITY)")
        assert r.ok, r
        m = re.search(r"HIGHESTMODSEQ (\d+) UIDNEXT (\d+) UIDVALIDITY (\d+)", " ".join(r.untagged))
        assert m, r
        return tuple(int(x) for x in m.groups())

    def append(subject):
        msg = "Subject: %s\r\n\r\nx\r\n" % subject
        r = a.cmd("APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))
        assert r.ok, r
        return int(re.search(r"APPENDUID \d+ (\d+)", r.text).group(1))

    first = status()
    uids = [append("m%d" % i) for i in range(6)]
    assert uids == sorted(uids) and uids[0] >= first[1]
    r = a.cmd("SELECT INBOX")
    assert r.ok, r
    seen = [status()]
    steps = [
        "UID STORE %d +FLAGS (\\Flagged)" % uids[0],
        "UID STORE %d +FLAGS (\\Deleted)" % uids[1],
        "UID EXPUNGE %d" % uids[1],
        "UID MOVE %d Archive" % uids[2],
        "UID COPY %d INBOX" % uids[3],
        "UID MOVE %d,%d Trash" % (uids[4], uids[5]),
    ]
    for step in steps:
        r = a.cmd(step)
        assert r.ok, (step, r)
        seen.append(status())
        assert seen[-1][0] > seen[-2][0], (step, seen)   # HIGHESTMODSEQ up
        assert seen[-1][1] >= seen[-2][1]                # UIDNEXT never down
    # a delivery too
    d_before = status()
    with server.client("mx") as c:
        c.ehlo()
        d = c.mail("s@remote.test", [user], make_message("s@remote.test", user, "d", "x\r\n"))
        assert d.code == 250, d
    d_after = status()
    assert d_after[0] > d_before[0] and d_after[1] > d_before[1]
    a.cmd("CLOSE")
    uv, modseq0 = first[2], seen[0][0]
    r = a.cmd("SELECT INBOX (QRESYNC (%d %d))" % (uv, modseq0))
    assert r.ok, r
    van = [l for l in r.untagged if l.startswith("* VANISHED (EARLIER)")]
    assert uids == list(range(uids[0], uids[0] + 6))
    assert van == ["* VANISHED (EARLIER) %d:%d,%d:%d" % (uids[1], uids[2], uids[4], uids[5])], van
    # the copy got a new UID, above every one before
    r = a.cmd("UID SEARCH ALL")
    left = [int(x) for x in " ".join(l for l in r.untagged if l.startswith("* SEARCH")).split()[2:]]
    assert left[:2] == [uids[0], uids[3]] and len(left) == 4 and left[2] > uids[5], left
    a.close()
    b.close()
