"""Store reads and blob writes off the event loop (issue 6, section 7): a POP3
login loads its maildrop on a worker; the SMTP spool hands full buffers to a
worker and pauses the session's input meanwhile.

Big mailboxes are filled fast by writing rows straight into a stopped
daemon's database: a few blob files, and many mailbox entries pointing at
them (the schema allows one message in many entries). How long the loop
stalls is measured by bench/loop-stall, not asserted here (no timing
assertions in tests)."""
import os
import smtplib
import socket
import sqlite3
import struct
import time

import pytest

from conftest import SOCK_TIMEOUT, USERS, make_message, split_prepended

ALICE, BOB = "alice@example.test", "bob@example.test"
# Distinct sizes: LIST must give each message its own.
BLOB_SIZES = (1000, 1537, 2222, 3001, 4711, 777, 12345)


def blob_bytes(k, size):
    """A message of exactly size octets (CRLF lines, no leading dots)."""
    head = b"From: filler@example.test\r\nTo: %s\r\nSubject: filler %d\r\n\r\n" % (ALICE.encode(), k)
    line = b"x" * 70 + b"\r\n"
    body = (line * (size // len(line) + 1))[: size - len(head) - 2] + b"\r\n"
    out = head + body
    assert len(out) == size
    return out


def fill_mailbox(data_dir, user, n, sizes=BLOB_SIZES):
    """Adds n messages to user's INBOX (daemon stopped). Message i (1-based
    among the new ones) has size sizes[i % len(sizes)]. Returns
    (uidvalidity, [(uid, size)])."""
    db = sqlite3.connect(os.path.join(data_dir, "postern.db"), timeout=30)
    local, domain = user.split("@")
    (user_id,) = db.execute("SELECT u.id FROM users u JOIN domains d ON d.id = u.domain_id"
                            " WHERE d.name = ? AND u.localpart = ?", (domain, local)).fetchone()
    mbid, uidvalidity, uidnext, modseq = db.execute(
        "SELECT id, uidvalidity, uidnext, highestmodseq FROM mailboxes"
        " WHERE user_id = ? AND name = 'INBOX'", (user_id,)).fetchone()
    now = int(time.time())
    msg_ids = []
    for k, size in enumerate(sizes):
        # 16 hex (time) + 8 hex counter + 8 hex random; the counter picks the
        # blobs/ subdirectory ((counter >> 6) & 0xff)
        counter = 0x7000000 + k + (user_id << 8)
        name = "%016x%08x%08x" % (now * 1000000 + user_id, counter, 0x5eed)
        sub = os.path.join(data_dir, "blobs", "%02x" % ((counter >> 6) & 0xff))
        with open(os.path.join(sub, name), "wb") as f:
            f.write(blob_bytes(k, size))
        cur = db.execute("INSERT INTO messages(blob, size, received, mail_from) VALUES(?, ?, ?, ?)",
                         (name, size, now, "filler@example.test"))
        msg_ids.append(cur.lastrowid)
    rows = []
    for i in range(1, n + 1):
        uid = uidnext + i - 1
        rows.append((mbid, uid, msg_ids[i % len(sizes)], modseq + i, now))
    db.executemany("INSERT INTO mailbox_messages(mailbox_id, uid, message_id, flags, modseq,"
                   " internaldate) VALUES(?, ?, ?, '', ?, ?)", rows)
    db.execute("UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
               (uidnext + n, modseq + n, mbid))
    db.commit()
    db.close()
    return uidvalidity, [(uidnext + i - 1, sizes[i % len(sizes)]) for i in range(1, n + 1)]


class Pop:
    def __init__(self, srv, timeout=SOCK_TIMEOUT):
        self.sock = socket.create_connection((srv.host, srv.ports["pop3"]), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.greeting = self.line()

    def close(self):
        self.sock.close()

    def reset(self):
        """Closes with a RST (SO_LINGER 0): the daemon sees it even while
        it is not reading from this session."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def _more(self, deadline):
        if time.monotonic() > deadline:
            raise socket.timeout("no answer; have %r" % self.buf[-200:])
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("closed; have %r" % self.buf[-200:])
        self.buf += chunk

    def line(self):
        deadline = time.monotonic() + self.timeout
        while b"\r\n" not in self.buf:
            self._more(deadline)
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode()

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.line()

    def multi(self, line):
        first = self.cmd(line)
        assert first.startswith("+OK"), (line, first)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                raw, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                return raw
            self._more(deadline)

    def login(self, user=ALICE):
        assert self.cmd("USER " + user).startswith("+OK")
        return self.cmd("PASS " + USERS[user])


@pytest.fixture
def popsrv(make_server):
    def make(n, **opts):
        srv = make_server("loopio", start=False, pop3_auth_plaintext_loopback="yes", **opts)
        filled = fill_mailbox(srv.data_dir, ALICE, n) if n else None
        srv.start()
        return srv, filled
    return make


def test_pop3_login_big_maildrop(popsrv):
    """20,000 messages: STAT, LIST, UIDL and RETR from the snapshot the worker
    loaded, the same as the store holds."""
    n = 20000
    srv, (uidvalidity, msgs) = popsrv(n)
    p = Pop(srv)
    try:
        total = sum(size for _, size in msgs)
        r = p.login()
        assert r == "+OK maildrop has %d messages (%d octets)" % (n, total), r
        assert p.cmd("STAT") == "+OK %d %d" % (n, total)
        want_uidl = b"".join(b"%d %08x%08x\r\n" % (i + 1, uidvalidity, uid) for i, (uid, _) in enumerate(msgs))
        assert p.multi("UIDL") == want_uidl
        want_list = b"".join(b"%d %d\r\n" % (i + 1, size) for i, (_, size) in enumerate(msgs))
        assert p.multi("LIST") == want_list
        for k in (1, n // 2, n):
            size = msgs[k - 1][1]
            assert len(p.multi("RETR %d" % k)) == size
        assert p.cmd("QUIT").startswith("+OK")
    finally:
        p.close()
    assert "user=%s messages=%d" % (ALICE, n) in srv.log()


def test_pop3_unknown_mailbox_fails_cleanly(popsrv):
    """The load fails on the worker (INBOX gone): -ERR [SYS/TEMP], the lock is
    released, and the session stays usable in the AUTHORIZATION state."""
    srv, _ = popsrv(0)
    srv.stop()
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"))
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("DELETE FROM mailboxes WHERE name = 'INBOX' AND user_id = (SELECT u.id FROM users u"
               " WHERE u.localpart = 'alice')")
    db.commit()
    db.close()
    srv.start()
    p = Pop(srv)
    try:
        r = p.login()
        assert r.startswith("-ERR [SYS/TEMP]"), r
        assert p.cmd("STAT").startswith("-ERR")  # still AUTHORIZATION
        r = p.login()
        assert r.startswith("-ERR [SYS/TEMP]"), r  # not [IN-USE]: the lock was released
    finally:
        p.close()
    assert srv.proc.poll() is None


def test_pop3_close_during_load(popsrv):
    """The client resets the connection right after PASS, while the password
    check or the maildrop load runs: no crash, no leak (the sanitizer build
    exits non-zero on a leak), and the maildrop lock is released."""
    n = 100000
    srv, _ = popsrv(n)
    # A first login fills the password cache: later checks take microseconds,
    # so the resets below land during the load.
    p = Pop(srv)
    assert p.login().startswith("+OK maildrop has %d" % n)
    assert p.cmd("QUIT").startswith("+OK")
    p.close()
    for _ in range(5):
        p = Pop(srv)
        assert p.cmd("USER " + ALICE).startswith("+OK")
        p.sock.sendall(b"PASS " + USERS[ALICE].encode() + b"\r\n")
        p.reset()
    # The lock is released once each load has ended: a login succeeds.
    deadline = time.monotonic() + 20
    while True:
        p = Pop(srv)
        r = p.login()
        if r.startswith("+OK") or time.monotonic() > deadline:
            break
        assert "[IN-USE]" in r, r
        p.close()
        time.sleep(0.2)
    assert r.startswith("+OK maildrop has %d" % n), r
    assert p.cmd("QUIT").startswith("+OK")
    p.close()
    # A reset during the load ends the session without a login line.
    log = srv.log()
    print("logins: %d, sessions: %d" % (log.count("pop3 login client="), log.count("pop3 session client=")))
    assert srv.proc.poll() is None
    assert srv.stop() == 0, "postern exited non-zero (a sanitizer report?)\n" + srv.log()[-5000:]


def big_message(n_lines):
    """A message with varied line content (every byte value that is legal in
    8BITMIME data, dots at line starts), n_lines lines of ~200 octets."""
    lines = []
    for i in range(n_lines):
        fill = bytes((32 + (i * 7 + j) % 95) for j in range(190))
        if i % 17 == 0:
            fill = b"." + fill  # dot-stuffing on the wire
        if i % 29 == 0:
            fill = fill + bytes(range(0x80, 0x90))
        lines.append(b"%08d " % i + fill)
    head = ("From: sender@remote.test\r\nTo: %s\r\nSubject: big\r\n"
            "Message-ID: <big@remote.test>\r\nDate: Mon, 1 Dec 2026 10:00:00 +0000\r\n\r\n" % ALICE).encode()
    return head + b"\r\n".join(lines) + b"\r\n"


@pytest.mark.parametrize("mode", ["data", "bdat"])
def test_smtp_large_message_byte_exact(make_server, mode):
    """Several MB through the spool's worker writes (DATA and BDAT, in
    chunks that do not line up with the spool's buffer): stored byte-exact."""
    srv = make_server("loopio-big")
    msg = big_message(30000)  # ~6 MB
    assert len(msg) > 5 * 1024 * 1024
    if mode == "data":
        with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=SOCK_TIMEOUT) as s:
            s.ehlo("client.example.net")
            s.sendmail("sender@remote.test", [ALICE, BOB], msg)
    else:
        c = srv.client("mx")
        try:
            c.ehlo()
            assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
            assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
            assert c.cmd("RCPT TO:<%s>" % BOB).code == 250
            off, chunk = 0, 100003
            while off < len(msg):
                part = msg[off:off + chunk]
                off += len(part)
                last = " LAST" if off >= len(msg) else ""
                c.send(b"BDAT %d%s\r\n" % (len(part), last.encode()) + part)
                r = c.reply()
                assert r.code == 250, r
                chunk = chunk * 3 // 2
        finally:
            c.close()
    for user in (ALICE, BOB):
        stored = srv.messages(user)
        assert len(stored) == 1
        assert split_prepended(stored[0])[2] == msg, "%s: stored message differs" % user
    spool = os.listdir(os.path.join(srv.data_dir, "spool"))
    assert all(os.path.getsize(os.path.join(srv.data_dir, "spool", f)) == 0 for f in spool)


def test_smtp_session_closed_during_spool_write(make_server):
    """A client that sends 3 MB of DATA and resets the connection: the spool's
    writes in flight end without a crash, nothing is stored, the spool file is
    removed, and the daemon goes on accepting mail."""
    srv = make_server("loopio-reset")
    for _ in range(3):
        s = socket.create_connection((srv.host, srv.ports["mx"]), timeout=SOCK_TIMEOUT)
        f = s.makefile("rb")
        f.readline()
        for line in (b"EHLO client.example.net", b"MAIL FROM:<sender@remote.test>",
                     b"RCPT TO:<%s>" % ALICE.encode(), b"DATA"):
            s.sendall(line + b"\r\n")
            while True:
                l = f.readline()
                if l[3:4] != b"-":
                    break
        s.sendall(big_message(15000))  # no terminator
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        f.close()
        s.close()
    ok = make_message("sender@remote.test", ALICE, "after resets", "fine\r\n")
    with srv.client("mx") as c:
        c.ehlo()
        assert c.mail("sender@remote.test", [ALICE], ok).code == 250
    assert [split_prepended(m)[2] for m in srv.messages(ALICE)] == [ok]
    deadline = time.monotonic() + 10
    spool = os.path.join(srv.data_dir, "spool")
    while any(os.path.getsize(os.path.join(spool, f)) for f in os.listdir(spool)):
        assert time.monotonic() < deadline, "spool files left: %r" % os.listdir(spool)
        time.sleep(0.1)
    assert srv.stop() == 0, "postern exited non-zero (a sanitizer report?)\n" + srv.log()[-5000:]


@pytest.fixture
def tmpfs_server(make_server):
    """A daemon whose data_dir is a small tmpfs (root only: mount), as in
    test_limits.py."""
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("the disk-full test needs root to mount a tmpfs")
    srv = make_server("loopio-full", accounts=False, start=False)
    os.makedirs(srv.data_dir, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", srv.data_dir],
                   check=True, timeout=30)
    try:
        srv.setup_accounts()
        srv.start()
        yield srv
    finally:
        try:
            srv.stop()
        finally:
            srv.kill()
            subprocess.run(["umount", "-l", srv.data_dir], timeout=30)


def test_spool_write_disk_full(tmpfs_server):
    """ENOSPC in a worker's spool write (a 12 MB message on an 8 MB file
    system): a 452 (or 451) reply, nothing stored, the spool file gone, and
    the session and the daemon go on."""
    srv = tmpfs_server
    msg = big_message(60000)  # ~12 MB
    with srv.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        r = c.data(msg)
        assert r.code in (451, 452), r
        # the session goes on: a small message fits
        ok = make_message("sender@remote.test", ALICE, "after full", "fits\r\n")
        assert c.mail("sender@remote.test", [ALICE], ok).code == 250
    assert [split_prepended(m)[2] for m in srv.messages(ALICE)] == [ok]
    assert "No space left on device" in srv.log()
    spool = os.path.join(srv.data_dir, "spool")
    assert all(os.path.getsize(os.path.join(spool, f)) == 0 for f in os.listdir(spool))
    assert srv.proc.poll() is None
