"""A session's output is bounded (session_output_limit): a client that pipelines
commands and does not read the replies cannot make the daemon allocate, the
commands wait (and run, in order, once it reads), long responses (RETR, LIST,
UIDL) stream as the client reads, and a stalled reader costs no CPU (no
polling) and is closed after the idle timeout while a slow reader is not.

The non-reading clients here shrink their receive buffer and their MSS
before connecting, so that the kernel holds ~100 KB of what the daemon sends
instead of ~3 MB (on loopback, the daemon's send buffer grows with the MSS):
what the client does not read then stays in the daemon, where the limit
applies."""
import os
import smtplib
import socket
import threading
import time

import pytest

from conftest import SOCK_TIMEOUT, USERS, crlf, make_message, rss_bound_kb, rss_kb

ALICE = "alice@example.test"
SMALL_RCVBUF = 4096
SMALL_MSS = 536
POP3_OPTS = dict(pop3_auth_plaintext_loopback="yes", pop3_max_connections_per_ip=100)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def cpu_seconds(pid):
    """utime + stime of the whole process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_wakeups(pid):
    """Voluntary context switches of the main thread, which runs the event
    loop: each return from a blocking epoll_wait is one."""
    with open("/proc/%d/task/%d/status" % (pid, pid)) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def connect(srv, role, small=True, rcvbuf=SMALL_RCVBUF):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small:  # before connect: the window and the daemon's segment size
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SMALL_MSS)
    s.settimeout(SOCK_TIMEOUT)
    s.connect((srv.host, srv.ports[role]))
    return s


class Reader:
    """Reads CRLF lines and exact byte counts from a raw socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("closed; pending %r" % self.buf[:200])
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "replace")

    def until(self, end):
        """Everything up to and including end."""
        while end not in self.buf:
            self.fill()
        i = self.buf.index(end) + len(end)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def expect_stream(self, pattern, total):
        """The next total bytes must be pattern repeated (compared as they
        come, never held whole)."""
        rep = pattern * ((1 << 21) // len(pattern) + 2)
        pos = 0
        while pos < total:
            if not self.buf:
                self.fill()
            take = min(len(self.buf), total - pos, 1 << 20)
            off = pos % len(pattern)
            assert self.buf[:take] == rep[off:off + take], \
                "stream differs at byte %d of %d (offset %d in the pattern)" % (pos, total, off)
            self.buf = self.buf[take:]
            pos += take


def pop3_login(srv, user=ALICE, small=True, rcvbuf=SMALL_RCVBUF):
    s = connect(srv, "pop3", small, rcvbuf)
    r = Reader(s)
    assert r.line().startswith("+OK")
    s.sendall(("USER %s\r\nPASS %s\r\n" % (user, USERS.get(user, "pw-" + user))).encode())
    assert r.line().startswith("+OK")
    l = r.line()
    assert l.startswith("+OK"), l
    return s, r


def deliver_many(srv, rcpt, n, threads=8):
    """n small messages to rcpt over several SMTP sessions at once (the group
    commit batches their fsyncs)."""
    errors = []

    def worker(k):
        try:
            with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=60) as c:
                c.ehlo("client.example.net")
                for i in range(k, n, threads):
                    c.sendmail("sender@remote.example", [rcpt],
                               make_message("sender@remote.example", rcpt, "m%d" % i, "body %d\r\n" % i))
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, errors
    assert srv.count(rcpt) == n


def sender(sock, data):
    """sendall from a thread: the daemon stops reading while it waits for us."""
    err = []

    def run():
        try:
            sock.sendall(data)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, err


# --------------------------------------------------------------------------
# POP3: pipelined listings without reading
# --------------------------------------------------------------------------
def test_pop3_pipelined_listings_bounded(make_server):
    srv = make_server("pop3big", **POP3_OPTS)
    deliver_many(srv, ALICE, 2000)
    # A normal socket: the kernel may hold a few MB; the ~370 MB due cannot
    # hide there, and reading it back is fast.
    s, r = pop3_login(srv, small=False)
    try:
        # The reference listings, read normally.
        s.sendall(b"UIDL\r\nLIST\r\n")
        uidl = r.until(b"\r\n.\r\n")
        lst = r.until(b"\r\n.\r\n")
        assert uidl.startswith(b"+OK") and uidl.count(b"\r\n") == 2002, uidl[:200]
        assert lst.startswith(b"+OK 2000 messages") and lst.count(b"\r\n") == 2002, lst[:200]
        assert len(set(l.split()[1] for l in uidl.split(b"\r\n")[1:-2])) == 2000

        before = rss_kb(srv.proc.pid)
        pairs = 65536 // len(b"UIDL\r\nLIST\r\n")
        t, err = sender(s, b"UIDL\r\nLIST\r\n" * pairs + b"NOOP\r\n")
        time.sleep(3)
        grown = rss_kb(srv.proc.pid) - before
        print("64 KiB of pipelined UIDL+LIST unread: RSS +%d KB" % grown)
        # Unbounded, this was ~370 MB of listings (221 MB RSS measured).
        assert grown < rss_bound_kb(srv.proc.pid), \
            "RSS grew by %d KB while the client did not read" % grown

        # Everything arrives, complete and in order.
        r.expect_stream(uidl + lst, pairs * (len(uidl) + len(lst)))
        assert r.line() == "+OK done"
        t.join(30)
        assert not err, err
        s.sendall(b"QUIT\r\n")
        assert r.line().startswith("+OK")
    finally:
        s.close()
    assert srv.count(ALICE) == 2000
    assert srv.proc.poll() is None


@pytest.mark.parametrize("limit", [None, "4k", "4m"])
def test_pop3_commands_wait_for_reader(make_server, limit):
    """DELE and QUIT pipelined behind ~1.3 MB of listings the client does not
    read do not run (nothing is expunged) until it reads, then run in order;
    unless session_output_limit is larger than the listings (4m)."""
    srv = make_server("pop3wait", session_output_limit=limit, **POP3_OPTS)
    deliver_many(srv, ALICE, 200, threads=4)
    s, r = pop3_login(srv)
    runs_at_once = limit == "4m"
    try:
        t, err = sender(s, b"UIDL\r\n" * 300 + b"DELE 1\r\nQUIT\r\n")
        deadline = time.monotonic() + (10 if runs_at_once else 2)
        while srv.count(ALICE) == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        if runs_at_once:
            assert srv.count(ALICE) == 199, "the pipeline did not run although its output fit the limit"
        else:
            assert srv.count(ALICE) == 200, "DELE/QUIT ran while the client was not reading"
        for _ in range(300):
            assert r.line().startswith("+OK")
            body = r.until(b"\r\n.\r\n")
            assert body.count(b"\r\n") == 201
        assert r.line().startswith("+OK message 1 deleted")
        assert r.line().startswith("+OK")
        t.join(30)
        assert not err, err
    finally:
        s.close()
    deadline = time.monotonic() + 10
    while srv.count(ALICE) != 199 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert srv.count(ALICE) == 199


# --------------------------------------------------------------------------
# SMTP: pipelined commands without reading
# --------------------------------------------------------------------------
def _smtp_pipeline(srv, noops):
    """EHLO, then noops NOOPs and a whole transaction pipelined, unread.
    Returns (socket, reader, sender thread, its errors, the message)."""
    s = connect(srv, "mx")
    r = Reader(s)
    assert r.line().startswith("220 ")
    s.sendall(b"EHLO client.example.net\r\n")
    while not r.line().startswith("250 "):
        pass
    msg = make_message("sender@remote.example", ALICE, "after noops", "pipelined\r\n")
    data = (b"NOOP\r\n" * noops + b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<%s>\r\nDATA\r\n"
            % ALICE.encode() + msg + b".\r\nQUIT\r\n")
    t, err = sender(s, data)
    return s, r, t, err


def _smtp_read_all(r, noops):
    first = r.line()
    assert first.startswith("250 2.0.0"), first
    for i in range(noops - 1):
        l = r.line()
        assert l == first, "NOOP reply %d: %r" % (i + 2, l)
    assert r.line().startswith("250 2.1.0")
    assert r.line().startswith("250 2.1.5")
    assert r.line().startswith("354 ")
    assert r.line().startswith("250 2.0.0")
    assert r.line().startswith("221 ")


def test_smtp_pipelined_commands_wait_for_reader(make_server):
    srv = make_server("smtpwait", smtp_pregreet_delay_ms=0)
    before = rss_kb(srv.proc.pid)
    noops = 40000
    s, r, t, err = _smtp_pipeline(srv, noops)
    try:
        time.sleep(2)
        # 560 KB of replies are due; the session stopped near 256 KiB of them.
        assert srv.count(ALICE) == 0, "the pipelined transaction ran while the client did not read"
        grown = rss_kb(srv.proc.pid) - before
        assert grown < rss_bound_kb(srv.proc.pid), "RSS grew by %d KB" % grown
        _smtp_read_all(r, noops)
        t.join(30)
        assert not err, err
    finally:
        s.close()
    assert srv.count(ALICE) == 1


@pytest.mark.parametrize("limit", ["4k", "1m"])
def test_smtp_output_limit_honored(make_server, limit):
    """210 KB of NOOP replies: above a 4 KiB limit the pipelined transaction
    waits for the reader; under a 1 MiB limit it runs at once."""
    srv = make_server("smtplimit", smtp_pregreet_delay_ms=0, session_output_limit=limit,
                      log_level="debug")
    noops = 15000
    s, r, t, err = _smtp_pipeline(srv, noops)
    try:
        deadline = time.monotonic() + (10 if limit == "1m" else 2)
        while srv.count(ALICE) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        if limit == "1m":
            assert srv.count(ALICE) == 1, "the transaction did not run although its replies fit"
        else:
            assert srv.count(ALICE) == 0, "the transaction ran above the output limit"
            assert "output above 4096 octets: input waits" in srv.log()
        _smtp_read_all(r, noops)
        t.join(30)
        assert not err, err
    finally:
        s.close()
    deadline = time.monotonic() + 10
    while srv.count(ALICE) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert srv.count(ALICE) == 1


# --------------------------------------------------------------------------
# RETR: stalled and slow readers
# --------------------------------------------------------------------------
BIG = 2 * 1024 * 1024  # far above what the kernel holds for these clients


def _big_users(srv, n):
    users = ["dl%d@example.test" % i for i in range(n)]
    for u in users:
        srv.cli("user", "add", u, input="pw-%s\n" % u)
    line = "x" * 1000 + "\r\n"
    msg = crlf("From: <sender@remote.example>\r\nSubject: big\r\n\r\n") + (line * (BIG // len(line))).encode()
    with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=120) as c:
        c.ehlo("client.example.net")
        c.sendmail("sender@remote.example", users, msg)
    stored = srv.mail_cat(users[0], srv.mail_list(users[0])[0][0])
    return users, stored


def _retr_expected(stored):
    # RFC 1939 3: dot-stuffed (our lines never start with "."), then ".".
    return stored + (b"" if stored.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def test_stalled_retr_readers_cost_nothing(make_server):
    srv = make_server("retrstall", smtp_max_recipients=100, **POP3_OPTS)
    users, stored = _big_users(srv, 10)
    conns = []
    try:
        for u in users:
            s, r = pop3_login(srv, u)
            s.sendall(b"RETR 1\r\n")
            conns.append((s, r))
        time.sleep(1)  # all of them stalled, the daemon's and the kernel's buffers full
        pid = srv.proc.pid
        cpu0, wake0 = cpu_seconds(pid), loop_wakeups(pid)
        time.sleep(3)
        cpu, wakeups = cpu_seconds(pid) - cpu0, loop_wakeups(pid) - wake0
        print("10 stalled RETR readers, 3 s: %d loop wakeups, %.2f s CPU" % (wakeups, cpu))
        # Polling every 1 ms per download woke the loop thousands of times
        # (and cost a few % CPU); waiting for the drained event, nothing runs.
        assert wakeups < 300, "the event loop woke %d times in 3 s for stalled readers" % wakeups
        assert cpu < 0.3, "%.2f s of CPU in 3 s for stalled readers" % cpu
        # Then each reads its message, whole.
        want = _retr_expected(stored)
        for s, r in conns:
            first = r.line()
            assert first == "+OK %d octets" % len(stored), first
            r.expect_stream(want, len(want))
            s.sendall(b"QUIT\r\n")
            assert r.line().startswith("+OK")
    finally:
        for s, _ in conns:
            s.close()


def test_stalled_reader_closed_slow_reader_not(make_server):
    """pop3_timeout applies to the reader's progress: a RETR nobody reads is
    closed (without a -ERR inside the message); one read slowly, for longer
    than the timeout in all, completes."""
    srv = make_server("retrslow", pop3_timeout=2, smtp_max_recipients=100, **POP3_OPTS)
    users, stored = _big_users(srv, 2)
    stalled, sr = pop3_login(srv, users[0])
    slow, lr = pop3_login(srv, users[1])
    try:
        stalled.sendall(b"RETR 1\r\n")
        slow.sendall(b"RETR 1\r\n")
        want = _retr_expected(stored)
        t0 = time.monotonic()
        assert lr.line() == "+OK %d octets" % len(stored)
        got = 0
        # At most 8 KB (the window) every 20 ms: about 5 s for the message,
        # the kernel holding ~100 KB of it, so the daemon streams it for as
        # long (a reader that fills its kernel buffers and then idles for
        # pop3_timeout is idle to the daemon, whatever it reads after).
        while got < len(want):
            time.sleep(0.02)
            if not lr.buf:
                lr.buf = lr.sock.recv(32 * 1024)
                assert lr.buf, "closed in the middle of a slow download"
            take = min(len(lr.buf), len(want) - got)
            assert lr.buf[:take] == want[got:got + take]
            lr.buf = lr.buf[take:]
            got += take
        assert time.monotonic() - t0 > 3, "read too fast to show anything"
        slow.sendall(b"QUIT\r\n")
        assert lr.line().startswith("+OK")
        # The stalled one is gone by now or soon (timeout, then the close's
        # flush deadline), and its log line says why.
        deadline = time.monotonic() + 30
        while "result=send timeout" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "user=%s" % users[0] in srv.log() and "result=send timeout" in srv.log()
        data = b""
        stalled.settimeout(5)
        try:
            while True:
                chunk = stalled.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"-ERR" not in data[-200:], "an -ERR inside a multi-line response"
    finally:
        stalled.close()
        slow.close()


def test_smtp_blocked_session_idle_timeout(make_server):
    """A session waiting for its client to read: one that reads nothing is
    closed after smtp_timeout; one that reads slowly, for longer than the
    timeout in all, keeps going to the end of its pipeline."""
    srv = make_server("smtpidle", smtp_pregreet_delay_ms=0, smtp_timeout=2,
                      session_output_limit="4k")
    noops = 40000
    stalled, sr, st, serr = _smtp_pipeline(srv, noops)
    slow, lr, lt, lerr = _smtp_pipeline(srv, noops)
    try:
        t0 = time.monotonic()
        first = lr.line()
        assert first.startswith("250 2.0.0"), first
        got, want = 0, (len(first) + 2) * (noops - 1)
        while got < want:  # at most 8 KB every 50 ms: ~3.5 s for 560 KB
            time.sleep(0.05)
            if not lr.buf:
                lr.buf = lr.sock.recv(32 * 1024)
                assert lr.buf, "closed in the middle of its replies"
            take = min(len(lr.buf), want - got)
            assert lr.buf[:take] == ((first + "\r\n").encode() * (take // (len(first) + 2) + 2))[
                got % (len(first) + 2):got % (len(first) + 2) + take]
            lr.buf = lr.buf[take:]
            got += take
        assert time.monotonic() - t0 > 3, "read too fast to show anything"
        assert lr.line().startswith("250 2.1.0")
        assert lr.line().startswith("250 2.1.5")
        assert lr.line().startswith("354 ")
        assert lr.line().startswith("250 2.0.0")
        assert lr.line().startswith("221 ")
        lt.join(30)
        assert not lerr, lerr
        # The stalled one: 421 queued behind its unread replies, closed once
        # the close's flush deadline passes; its transaction never ran.
        deadline = time.monotonic() + 30
        while "reason=timeout" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "reason=timeout" in srv.log()
        assert srv.count(ALICE) == 1
    finally:
        stalled.close()
        slow.close()
