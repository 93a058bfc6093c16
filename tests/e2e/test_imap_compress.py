"""COMPRESS=DEFLATE (RFC 4978) against the real daemon: imaplib with a
compressing transport (raw deflate both ways, windowBits -15, a sync flush
after each command) on the plaintext port and over implicit TLS; large
FETCH responses through the compressor; a second COMPRESS; COMPRESS before
login; commands pipelined behind COMPRESS; a client that stops reading; a
decompression bomb; corrupt input."""
import imaplib
import os
import random
import re
import socket
import ssl
import time
import zlib

import pytest

from conftest import SOCK_TIMEOUT, USERS, client_tls_context, imap_append, rss_kb, sanitized

ALICE = "alice@example.test"
BOB = "bob@example.test"

# imaplib knows no COMPRESS: its command table says in which states it is sent.
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class ZTransport:
    """imaplib's transport with RFC 4978 compression once turned on: reads
    and writes go straight to the socket through zlib (raw deflate)."""

    zon = False

    def compress(self):
        typ, dat = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self.zon = True
            self.co = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.do = zlib.decompressobj(-15)
            self.zin = bytearray()
            self.raw_in = 0
            self.raw_out = 0
            self.plain_in = 0
        return typ, dat

    def _zfill(self):
        data = self.sock.recv(65536)
        if not data:
            raise imaplib.IMAP4.abort("socket closed")
        self.raw_in += len(data)
        out = self.do.decompress(data)
        self.plain_in += len(out)
        self.zin += out

    def read(self, size):
        if not self.zon:
            return super().read(size)
        while len(self.zin) < size:
            self._zfill()
        out = bytes(self.zin[:size])
        del self.zin[:size]
        return out

    def readline(self):
        if not self.zon:
            return super().readline()
        while b"\n" not in self.zin:
            self._zfill()
        i = self.zin.index(b"\n") + 1
        out = bytes(self.zin[:i])
        del self.zin[:i]
        return out

    def send(self, data):
        if not self.zon:
            return super().send(data)
        z = self.co.compress(data) + self.co.flush(zlib.Z_SYNC_FLUSH)
        self.raw_out += len(z)
        self.sock.sendall(z)


class ZIMAP(ZTransport, imaplib.IMAP4):
    pass


class ZIMAP_SSL(ZTransport, imaplib.IMAP4_SSL):
    pass


def zclient(srv, tls):
    if tls:
        return ZIMAP_SSL(srv.host, srv.ports["imaps"], ssl_context=client_tls_context(),
                         timeout=SOCK_TIMEOUT)
    return ZIMAP(srv.host, srv.ports["imap"], timeout=SOCK_TIMEOUT)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    from conftest import _new_server
    s = _new_server(tmp_path_factory, tls_pair, "compress", imap_auth_plaintext_loopback="yes",
                       imap_max_connections_per_ip=500)
    yield s
    s.stop()


def text_message(i, size):
    line = b"line %d of a compressible message body, the same words again and again\r\n" % i
    body = line * (size // len(line) + 1)
    return b"Subject: big %d\r\nFrom: a@example.test\r\n\r\n" % i + body[:size]


def random_message(seed, size):
    rnd = random.Random(seed)
    data = bytes(rnd.getrandbits(8) for _ in range(size * 3 // 4))
    import base64
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return b"Subject: random %d\r\nContent-Transfer-Encoding: base64\r\n\r\n" % seed + b64


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_compress_session(srv, tls):
    """Capability named once logged in (not before); COMPRESS DEFLATE gets
    exactly "OK DEFLATE active" in clear; then a whole session through
    compression, large FETCH responses byte for byte, a second COMPRESS
    refused with NO [COMPRESSIONACTIVE] (compressed too), LOGOUT."""
    box = "ztls" if tls else "zplain"
    with srv.imap_login(BOB) as c:
        assert c.cmd("CREATE %s" % box).ok
        msgs = [text_message(1, 3 << 20), random_message(2, 600 << 10), text_message(3, 200)]
        for m in msgs:
            imap_append(c, box, m)
    m = zclient(srv, tls)
    try:
        typ, caps = m.capability()
        assert typ == "OK" and b"COMPRESS=DEFLATE" not in caps[0], caps
        m.login(BOB, USERS[BOB])
        typ, caps = m.capability()
        assert b" COMPRESS=DEFLATE" in caps[0], caps
        tag = m._new_tag().decode()
        # the reply to COMPRESS itself is not compressed (RFC 4978 3)
        m.send(("%s COMPRESS DEFLATE\r\n" % tag).encode())
        assert m.readline() == ("%s OK DEFLATE active\r\n" % tag).encode()
        m.zon = True
        m.co = zlib.compressobj(6, zlib.DEFLATED, -15)
        m.do = zlib.decompressobj(-15)
        m.zin = bytearray()
        m.raw_in = m.raw_out = m.plain_in = 0
        typ, dat = m.select(box)
        assert typ == "OK" and dat == [b"3"], dat
        typ, dat = m.fetch("1:3", "(UID BODY.PEEK[])")
        assert typ == "OK", dat
        got = [d[1] for d in dat if isinstance(d, tuple)]
        assert got == msgs
        # the big text compresses well: far fewer octets on the wire
        assert m.raw_in < m.plain_in // 4, (m.raw_in, m.plain_in)
        # COMPRESS twice: RFC 4978 3, RFC 5530 COMPRESSIONACTIVE
        typ, dat = m._simple_command("COMPRESS", "DEFLATE")
        assert typ == "NO" and dat == [b"[COMPRESSIONACTIVE] DEFLATE is active already"], dat
        typ, dat = m.noop()
        assert typ == "OK"
        typ, dat = m.logout()
        assert typ == "BYE", (typ, dat)
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def test_compress_before_login(srv):
    """Valid once authenticated (RFC 4978 3, cmd.c AUTH|SEL): before login a
    tagged BAD, and the session goes on uncompressed."""
    c = srv.imap("imap")
    r = c.cmd("COMPRESS DEFLATE")
    assert r.tagged.endswith("BAD [CLIENTBUG] COMPRESS: log in first"), r
    r = c.cmd("NOOP")
    assert r.ok
    c.close()


def test_compress_bad_arguments(srv):
    c = srv.imap_login(BOB)
    r = c.cmd("COMPRESS GZIP")
    assert r.tagged.endswith("BAD Unknown compression mechanism"), r
    r = c.cmd("COMPRESS")
    assert r.tagged.endswith("BAD COMPRESS takes one argument: DEFLATE"), r
    assert c.cmd("NOOP").ok  # still plaintext
    c.close()


def raw_login(srv, tls):
    """A raw socket logged in (plaintext on the imap port or implicit TLS)."""
    s = socket.create_connection((srv.host, srv.ports["imaps" if tls else "imap"]),
                                 timeout=SOCK_TIMEOUT)
    if tls:
        s = client_tls_context().wrap_socket(s, server_hostname="mx.example.test")
    f = b""
    while b"\r\n" not in f:
        f += s.recv(4096)
    s.sendall(b"l LOGIN %s %s\r\n" % (BOB.encode(), USERS[BOB].encode()))
    got = b""
    while b"l OK" not in got:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    return s


class Z:
    def __init__(self, sock):
        self.s = sock
        self.co = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.do = zlib.decompressobj(-15)
        self.buf = bytearray()

    def z(self, data):
        return self.co.compress(data) + self.co.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data):
        self.s.sendall(self.z(data))

    def until(self, end, timeout=SOCK_TIMEOUT):
        """Decoded bytes up to and including the first `end`."""
        deadline = time.monotonic() + timeout
        start = 0
        while True:
            i = self.buf.find(end, start)
            if i >= 0:
                break
            start = max(0, len(self.buf) - len(end))
            assert time.monotonic() < deadline, bytes(self.buf[-300:])
            chunk = self.s.recv(1 << 20)
            assert chunk, ("closed", bytes(self.buf[-300:]))
            self.buf += self.do.decompress(chunk)
        i += len(end)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out


def read_plain_line(s):
    line = b""
    while not line.endswith(b"\r\n"):
        ch = s.recv(1)
        assert ch, line
        line += ch
    return line


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_pipelined_after_compress(srv, tls):
    """Commands the client sent behind COMPRESS in the same packet are
    compressed (RFC 4978 3: it compresses from its first command after
    COMPRESS): they are decoded, not read as plaintext, and answered
    compressed, in order."""
    s = raw_login(srv, tls)
    z = Z(s)
    s.sendall(b"c COMPRESS DEFLATE\r\n" + z.z(b"n1 NOOP\r\nn2 CAPABILITY\r\n"))
    assert read_plain_line(s) == b"c OK DEFLATE active\r\n"
    out = z.until(b"\r\nn2 OK CAPABILITY completed\r\n")
    assert out.startswith(b"n1 OK"), out
    assert b"* CAPABILITY IMAP4rev2" in out and b"COMPRESS=DEFLATE" in out, out
    z.send(b"n3 LOGOUT\r\n")
    out = z.until(b"n3 OK LOGOUT completed\r\n")
    assert out.startswith(b"* BYE"), out
    s.close()


def test_corrupt_stream_closes(srv):
    """Input that is not a deflate stream ends the connection (nothing can be
    framed in it); the daemon lives on."""
    s = raw_login(srv, False)
    s.sendall(b"c COMPRESS DEFLATE\r\n")
    assert read_plain_line(s) == b"c OK DEFLATE active\r\n"
    s.sendall(b"\xff" * 64)  # reserved block type 3
    s.settimeout(SOCK_TIMEOUT)
    rest = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    assert rest == b"", rest
    s.close()
    c = srv.imap_login(BOB)
    assert c.cmd("NOOP").ok
    c.close()




def test_decompression_bomb_bounded(srv):
    """64 MiB of one byte without a line end, compressed to ~64 KiB: the
    decoded bytes count against imap_max_line like plaintext (a tagged BAD
    once its LF comes), the daemon decodes in bounded slices (its memory does
    not follow the expansion), and the session goes on."""
    s = raw_login(srv, False)
    z = Z(s)
    s.sendall(b"c COMPRESS DEFLATE\r\n")
    assert read_plain_line(s) == b"c OK DEFLATE active\r\n"
    pid = srv.proc.pid
    before = rss_kb(pid)
    z.send(b"b1 NOOP ")
    chunk = b"a" * (1 << 20)
    for _ in range(64):
        s.sendall(z.co.compress(chunk))
    z.send(b"\r\nb2 NOOP\r\n")
    out = z.until(b"b2 OK NOOP completed\r\n", timeout=120)
    assert re.match(rb"b1 BAD Line too long\r\n", out), out[:200]
    if not sanitized(pid):
        assert rss_kb(pid) - before < 16 * 1024, (before, rss_kb(pid))
    s.close()


def test_client_that_stops_reading(srv):
    """A compressed FETCH of ~40 MiB to a client that reads nothing: the
    session's output limit counts compressed bytes and the daemon's memory
    stays bounded; then everything arrives intact."""
    box = "zslow"
    with srv.imap_login(BOB) as c:
        assert c.cmd("CREATE %s" % box).ok
        msgs = []
        for i in range(40):
            # incompressible enough that the output limit is reached
            m = random_message(100 + i, 700 << 10) if i % 2 else text_message(i, 1 << 20)
            msgs.append(m)
            imap_append(c, box, m)
    s = raw_login(srv, True)
    z = Z(s)
    s.sendall(b"c COMPRESS DEFLATE\r\n")
    assert read_plain_line(s) == b"c OK DEFLATE active\r\n"
    z.send(b"s SELECT %s\r\n" % box.encode())
    assert z.until(b"s OK [READ-WRITE] SELECT completed\r\n")
    pid = srv.proc.pid
    before = rss_kb(pid)
    z.send(b"f FETCH 1:* (BODY.PEEK[])\r\n")
    time.sleep(2.0)  # reading nothing
    during = rss_kb(pid)
    if not sanitized(pid):
        assert during - before < 12 * 1024, (before, during)
    out = z.until(b"f OK FETCH completed\r\n", timeout=120)
    k = 0
    for i, m in enumerate(msgs):
        head = b"* %d FETCH (BODY[] {%d}\r\n" % (i + 1, len(m))
        assert out.startswith(head, k), (i, out[k:k + 80])
        k += len(head)
        assert out[k:k + len(m)] == m, i
        k += len(m) + 3
    z.send(b"n NOOP\r\n")
    assert z.until(b"n OK NOOP completed\r\n").endswith(b"n OK NOOP completed\r\n")
    s.close()


def test_idle_memory_per_compressed_session(srv):
    """What an idle compressed session costs: informative (printed), with a
    generous bound so a regression to an always-held 256 KiB compressor
    shows."""
    pid = srv.proc.pid
    if sanitized(pid):
        pytest.skip("RSS says nothing under ASan")
    n = 100
    socks = []
    try:
        base = []
        for _ in range(n):
            base.append(raw_login(srv, False))
        time.sleep(0.3)
        before = rss_kb(pid)
        for s in base:
            z = Z(s)
            s.sendall(b"c COMPRESS DEFLATE\r\n")
            assert read_plain_line(s) == b"c OK DEFLATE active\r\n"
            z.send(b"n NOOP\r\n")
            z.until(b"n OK NOOP completed\r\n")
            socks.append(z)
        time.sleep(0.3)
        after = rss_kb(pid)
        per = (after - before) / n
        print("idle compressed session: %.1f KiB each over an idle plain one" % per)
        assert per < 96, per
    finally:
        for s in base:
            s.close()


def test_idle_push_is_flushed(srv):
    """Output that no command asked for (IDLE's EXISTS after another
    session's APPEND) leaves the compressor at once: the sync flush ends
    every burst, not only replies to input (RFC 4978 4)."""
    with srv.imap_login(BOB) as c:
        assert c.cmd("CREATE zidle").ok
    s = raw_login(srv, True)
    z = Z(s)
    s.sendall(b"c COMPRESS DEFLATE\r\n")
    assert read_plain_line(s) == b"c OK DEFLATE active\r\n"
    z.send(b"s SELECT zidle\r\ni IDLE\r\n")
    out = z.until(b"+ idling\r\n")
    assert b"* 0 EXISTS\r\n" in out and b"s OK [READ-WRITE] SELECT completed\r\n" in out, out
    with srv.imap_login(BOB) as c:
        r = imap_append(c, "zidle", text_message(5, 1000))
        assert r.ok, r
    assert z.until(b"* 1 EXISTS\r\n", timeout=10).endswith(b"* 1 EXISTS\r\n")
    z.send(b"DONE\r\n")
    out = z.until(b"i OK IDLE terminated\r\n")
    assert re.match(rb"(\* 1 RECENT\r\n)?i OK IDLE terminated\r\n$", out), out
    s.close()
