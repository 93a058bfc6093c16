"""Durability: many concurrent senders, each message stored exactly once and
byte-exact; and SIGKILL under load: everything that got 250 survives, nothing
is visible half-written."""
import os
import random
import smtplib
import threading
import time

from conftest import crlf, split_prepended

USERS3 = ("alice@example.test", "bob@example.test", "carol@example.test")


def unique_message(sender_no, seq, rcpt, size):
    tag = "%d-%d-%016x" % (sender_no, seq, random.getrandbits(64))
    filler = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(70))
    lines = ["line %d %s %s" % (i, tag, filler) for i in range(max(1, size // 100))]
    if seq % 7 == 0:
        lines.append(".a line that needs dot-stuffing")
    return crlf("From: <sender%d@remote.test>\r\nTo: <%s>\r\nSubject: durability %s\r\n"
                "Message-ID: <%s@client.example.net>\r\n\r\n%s\r\n" % (sender_no, rcpt, tag, tag, "\r\n".join(lines)))


def stored_messages(srv, users=USERS3):
    """{user: [stored message bytes]}, every UID `mail list` shows, read in
    one IMAP session per user (the bytes `mail cat` prints: test_harness
    checks that; one CLI run per message took minutes under the sanitizers)."""
    out = {}
    for u in users:
        uids = [m[0] for m in srv.mail_list(u)]
        msgs = srv.fetch_messages(u)
        assert list(msgs) == uids, "IMAP and `mail list` see different UIDs for %s" % u
        out[u] = list(msgs.values())
    return out


def test_concurrent_senders_exactly_once(make_server):
    srv = make_server("concurrent")
    n_senders, per_sender = 50, 100
    sent = {}  # message bytes -> recipient
    lock = threading.Lock()
    errors = []

    def sender(no):
        try:
            with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=60) as s:
                s.ehlo("sender%d.remote.test" % no)
                for seq in range(per_sender):
                    rcpt = USERS3[(no + seq) % 3]
                    msg = unique_message(no, seq, rcpt, random.choice((300, 1000, 3000)))
                    refused = s.sendmail("sender%d@remote.test" % no, [rcpt], msg)
                    assert refused == {}, refused
                    with lock:
                        sent[msg] = rcpt
        except Exception as e:  # reported below with the sender number
            errors.append("sender %d: %r" % (no, e))

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(n_senders)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, 240 - (time.monotonic() - t0)))
    assert not any(t.is_alive() for t in threads), "senders still running after 240 s"
    elapsed = time.monotonic() - t0
    assert not errors, errors[:5]
    assert len(sent) == n_senders * per_sender
    print("%d messages in %.1f s (%.0f msg/s)" % (len(sent), elapsed, len(sent) / elapsed))

    stored = stored_messages(srv)
    seen = {}
    for user, msgs in stored.items():
        for m in msgs:
            rest = split_prepended(m)[2]
            assert rest in sent, "%s holds a message that was never sent (or differs): %r" % (user, rest[:300])
            assert sent[rest] == user, "message for %s stored for %s" % (sent[rest], user)
            seen[rest] = seen.get(rest, 0) + 1
    dups = [k for k, v in seen.items() if v > 1]
    assert not dups, "%d messages stored more than once" % len(dups)
    missing = len(sent) - len(seen)
    assert missing == 0, "%d accepted messages missing" % missing
    # uids in each mailbox are unique and increasing
    for u in USERS3:
        uids = [m[0] for m in srv.mail_list(u)]
        assert uids == sorted(set(uids)), "UIDs of %s not unique/increasing" % u


def test_sigkill_under_load(make_server):
    srv = make_server("crash")
    n_senders = 20
    attempted, acked = set(), set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(no):
        seq = 0
        while not stop.is_set() and seq < 100000:
            try:
                with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=10) as s:
                    while not stop.is_set() and seq < 100000:
                        rcpt = USERS3[(no + seq) % 3]
                        msg = unique_message(no, seq, rcpt, random.choice((500, 5000, 50000)))
                        seq += 1
                        with lock:
                            attempted.add(msg)
                        s.sendmail("sender%d@remote.test" % no, [rcpt], msg)
                        with lock:
                            acked.add(msg)
            except (OSError, smtplib.SMTPException):
                # the daemon is gone (or going): stop this sender
                return

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(n_senders)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    n_acked_at_kill = len(acked)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "senders did not stop"
    assert n_acked_at_kill > 0, "no message was accepted in 2 s of load"

    spool = os.path.join(srv.data_dir, "spool")
    leftovers = set(os.listdir(spool)) if os.path.isdir(spool) else set()
    srv.start()  # recovery at start-up: orphan blobs removed, database consistent
    stored = stored_messages(srv)
    seen = {}
    for user, msgs in stored.items():
        for m in msgs:
            rest = split_prepended(m)[2]
            assert rest in attempted, "half-written or unknown message for %s: %d bytes, begins %r" % (
                user, len(rest), rest[:200])
            seen[rest] = seen.get(rest, 0) + 1
    assert all(v == 1 for v in seen.values()), "a message is stored twice"
    lost = [m for m in acked if m not in seen]
    assert not lost, "%d of %d messages that got 250 are missing after SIGKILL" % (len(lost), len(acked))
    print("acked %d, attempted %d, stored %d" % (len(acked), len(attempted), len(seen)))
    # the daemon works after the crash
    with srv.client("mx") as c:
        c.ehlo()
        msg = unique_message(99, 0, USERS3[0], 100)
        assert c.mail("sender@remote.test", [USERS3[0]], msg).code == 250
    assert split_prepended(srv.messages(USERS3[0])[-1])[2] == msg
    # the spool files the crash left behind were removed at start-up
    still = leftovers & set(os.listdir(spool)) if os.path.isdir(spool) else set()
    assert not still, "spool files from before the crash survived the restart: %r" % sorted(still)[:5]
