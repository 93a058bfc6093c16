"""Limits and abuse handling: line length, message size, recipients, error
count, timeouts, connections per IP, AUTH throttling, and a full disk."""
import errno
import os
import subprocess
import time

import pytest

from conftest import USERS, crlf, make_message

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"

LIMITS = dict(smtp_max_message_size="1m", smtp_max_recipients=5, smtp_max_line=1000, smtp_max_errors=3,
              smtp_timeout=2, smtp_data_timeout=2)


@pytest.fixture(scope="module")
def limited(tmp_path_factory, tls_pair):
    from conftest import _new_server
    srv = _new_server(tmp_path_factory, tls_pair, "limits", **LIMITS)
    yield srv
    srv.stop()


def test_overlong_command_line(limited):
    with limited.client("mx") as c:
        c.ehlo()
        r = c.cmd("NOOP " + "x" * 5000)
        assert r.code == 500 and r.enh == "5.5.2", r
    with limited.client("mx") as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s@remote.test>" % ("a" * 2000))
        assert r.code == 500 and r.enh == "5.5.2", r


def test_size_param_too_big(limited):
    with limited.client("mx") as c:
        exts, r = c.ehlo()
        assert any(l.upper() == "SIZE 1048576" for l in r.lines), r.lines
        r = c.cmd("MAIL FROM:<sender@remote.test> SIZE=%d" % (2 * 1024 * 1024))
        assert r.code == 552 and r.enh == "5.3.4", r
        r = c.cmd("MAIL FROM:<sender@remote.test> SIZE=1000")
        assert r.code == 250, r


@pytest.mark.parametrize("mode", ["DATA", "BDAT"])
def test_streaming_over_max_size(limited, mode):
    before = limited.count(ALICE)
    body = ("x" * 998 + "\r\n") * 1600  # ~1.6 MB
    msg = crlf("Subject: too big\r\n\r\n") + body.encode()
    with limited.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        if mode == "DATA":
            r = c.data(msg)
        else:
            c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
            r = c.reply()
        assert r.code == 552 and r.enh == "5.3.4", r
        assert c.cmd("RSET").code == 250
        # a message under the limit still goes through on the same session
        small = make_message("sender@remote.test", ALICE, "small", "fits\r\n")
        assert c.mail("sender@remote.test", [ALICE], small).code == 250
    assert limited.count(ALICE) == before + 1


def test_too_many_recipients(limited):
    rcpts = [ALICE, BOB, CAROL, "alice+1@example.test", "bob+2@example.test"]
    with limited.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        for rc in rcpts:
            r = c.cmd("RCPT TO:<%s>" % rc)
            assert r.code == 250, (rc, r)
        r = c.cmd("RCPT TO:<carol+3@example.test>")
        assert r.code == 452, r
        assert r.enh in ("4.5.3", None), r
        r = c.data(make_message("sender@remote.test", ALICE, "five", "five rcpts\r\n"))
        assert r.code == 250, r


def test_too_many_errors(limited):
    with limited.client("mx") as c:
        c.ehlo()
        replies = []
        closed = False
        for i in range(10):
            try:
                r = c.cmd("BOGUS%d" % i)
            except Exception:
                closed = True
                break
            replies.append(r.code)
            if r.code == 421:
                closed = c.expect_closed(5)
                break
        assert 421 in replies, "no 421 after repeated errors: %r" % replies
        assert replies.index(421) <= 4, "421 should come after smtp_max_errors=3 errors: %r" % replies
        assert closed, "connection not closed after 421"


def test_idle_timeout(limited):
    with limited.client("mx") as c:
        c.ehlo()
        t0 = time.monotonic()
        r = c.reply()  # the client is silent; the server must speak first
        elapsed = time.monotonic() - t0
        assert r.code == 421, r
        assert 1.0 <= elapsed <= 8.0, "timeout after %.1fs with smtp_timeout=2" % elapsed
        assert c.expect_closed(5), "not closed after 421 timeout"


def test_data_timeout(limited):
    before = limited.count(ALICE)
    with limited.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: stalled\r\n\r\nhalf a mess")
        t0 = time.monotonic()
        r = c.reply()
        assert r.code == 421, r
        assert time.monotonic() - t0 <= 8.0
        assert c.expect_closed(5)
    assert limited.count(ALICE) == before


def test_connections_per_ip(make_server):
    srv = make_server("perip", smtp_max_connections_per_ip=3)
    time.sleep(0.5)  # let the daemon see the readiness probes' connections close
    clients = [srv.client("mx") for _ in range(3)]
    try:
        for c in clients:
            assert c.greeting.code == 220
        from conftest import Client
        extra = Client(srv.host, srv.ports["mx"], read_greeting=False)
        try:
            r = extra.reply()
            assert r.code == 421, "4th connection from one IP: %r" % r
            assert extra.expect_closed(5)
        finally:
            extra.close()
    finally:
        for c in clients:
            c.close()
    # once they are gone, a new connection is served again (bounded wait)
    deadline = time.monotonic() + 5
    while True:
        with srv.client("mx") as c:
            if c.greeting.code == 220:
                break
        assert time.monotonic() < deadline, "connection slots not released"
        time.sleep(0.2)


def test_auth_failures_throttled(make_server):
    srv = make_server("throttle", auth_max_failures=3, auth_failure_window=60)
    for i in range(3):
        with srv.client("submissions") as c:
            c.ehlo()
            r = c.auth_plain(ALICE, "wrong-%d" % i)
            # the failure that reaches the limit may already be answered 421
            assert r.code == 535 or (i == 2 and r.code in (421, 454)), (i, r)
    with srv.client("submissions", read_greeting=False) as c:
        g = c.reply()
        if g.code == 220:
            c.ehlo()
            r = c.auth_plain(ALICE, USERS[ALICE])
            assert r.code in (421, 454), "AUTH after %d failures must be throttled, got %r" % (3, r)
        else:
            assert g.code in (421, 454), g
    # another attempt, on 587 after STARTTLS: still throttled
    with srv.client("submission") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.auth_login(ALICE, USERS[ALICE])
        assert r.code in (421, 454), r
    assert "alice" in srv.log() or "auth" in srv.log().lower()


# ---- a full disk: 451/452, never 250 ----------------------------------------
def _fill(path):
    """Writes path until the filesystem is full; returns its size."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 4096, 512):
            block = b"\0" * chunk
            for _ in range(100000):
                try:
                    f.write(block)
                except OSError as e:
                    assert e.errno in (errno.ENOSPC, errno.EFBIG), e
                    break
    return os.path.getsize(path)


def _try_send(c, frm, rcpt, msg):
    """MAIL/RCPT/DATA; returns the list of reply codes up to the first non-2xx/3xx
    or the final reply."""
    codes = []
    for line in ("MAIL FROM:<%s>" % frm, "RCPT TO:<%s>" % rcpt):
        r = c.cmd(line)
        codes.append(r)
        if r.code != 250:
            return codes
    codes.append(c.data(msg))
    return codes


@pytest.fixture
def tmpfs_server(make_server):
    """A daemon whose data_dir is a small tmpfs (root only: mount)."""
    if os.geteuid() != 0:
        pytest.skip("the disk-full test needs root to mount a tmpfs")
    srv = make_server("diskfull", accounts=False, start=False)
    os.makedirs(srv.data_dir, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", srv.data_dir], check=True,
                   timeout=30)
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


def test_disk_full(tmpfs_server):
    srv = tmpfs_server
    filler = os.path.join(srv.data_dir, "filler")
    ok = make_message("sender@remote.test", ALICE, "before full", "fits\r\n")
    with srv.client("mx") as c:
        c.ehlo()
        assert c.mail("sender@remote.test", [ALICE], ok).code == 250
    assert srv.count(ALICE) == 1

    # 1) the disk is completely full: even a 1 KB message must get 451/452
    size = _fill(filler)
    small = make_message("sender@remote.test", ALICE, "disk full small", "y" * 1000 + "\r\n")
    with srv.client("mx") as c:
        c.ehlo()
        codes = _try_send(c, "sender@remote.test", ALICE, small)
        print("disk full, 1 KB message:", codes)
        assert codes[-1].code in (451, 452), "disk full, small message: %r" % codes
        assert all(r.code != 250 for r in codes[2:]), codes

    # 2) 256 KB free, a 900 KB message: the spool fills up mid-stream
    os.truncate(filler, size - 256 * 1024)
    big = make_message("sender@remote.test", ALICE, "disk full big", ("z" * 998 + "\r\n") * 900)
    with srv.client("mx") as c:
        c.ehlo()
        codes = _try_send(c, "sender@remote.test", ALICE, big)
        print("256 KB free, 900 KB message:", codes)
        assert codes[-1].code in (451, 452), "disk full, large message: %r" % codes

    # the daemon is alive and, with space again, accepts mail
    assert srv.proc.poll() is None, "postern died on a full disk"
    os.unlink(filler)
    after = make_message("sender@remote.test", ALICE, "after full", "space again\r\n")
    with srv.client("mx") as c:
        c.ehlo()
        r = c.mail("sender@remote.test", [ALICE], after)
        assert r.code == 250, r
    from conftest import split_prepended
    stored = [split_prepended(m)[2] for m in srv.messages(ALICE)]
    assert stored == [ok, after], "only the two accepted messages may be stored"
