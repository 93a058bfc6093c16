"""clamd over FILDES (src/filter/clamd.c): with clamd on a unix socket, a
message of up to 256 KiB is passed to clamd as a file descriptor (a
memfd, SCM_RIGHTS), so clamd scans it without writing a temporary copy; a
larger message goes over INSTREAM, and so does every message to a clamd on
TCP. A clamd that refuses FILDES is asked again over INSTREAM, and FILDES is
off from then on (logged once) if that scan works; a message clamd cannot
scan either way leaves FILDES on. A real clamd (tests/e2e/clamd.py): its log
names the way each scan came ("/memfd:postern-clamd (deleted): NAME FOUND"
for FILDES, "stream(...): NAME FOUND" for INSTREAM)."""
import base64
import os
import re
import socket
import struct
import threading
import time

import pytest

from clamd import Clamd, EICAR, EICAR_NAME, CUSTOM_PAYLOAD, CUSTOM_NAME, clamd_fixture  # noqa: F401 (the fixture "clamd")
from conftest import make_message, _free_ports

RCPT = "alice@example.test"
FROM = "sender@client.example.net"
FILDES_MAX = 256 * 1024  # CLAMD_FILDES_MAX
# clamd names a passed descriptor by its /proc/self/fd link: our memfd
FD_FOUND = re.compile(r"/memfd:postern-clamd \(deleted\): (\S+) FOUND")
STREAM_FOUND = re.compile(r"stream\([^)]*\): (\S+) FOUND")


def attachment_message(subject, payload, filler_lines=0):
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n").decode()
    text = "".join("filler line %06d of plain words before the attachment\r\n" % i
                   for i in range(filler_lines))
    body = ("This is a MIME message.\r\n--B\r\nContent-Type: text/plain\r\n\r\n" + text +
            "--B\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + b64 + "--B--\r\n")
    return make_message(FROM, RCPT, subject, body,
                        extra_headers=["MIME-Version: 1.0",
                                       'Content-Type: multipart/mixed; boundary="B"'])


def send(srv, msg):
    c = srv.client("mx")
    try:
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % FROM).code == 250
        assert c.cmd("RCPT TO:<%s>" % RCPT).code == 250
        return c.data(msg)
    finally:
        c.close()


def stored(srv, subject):
    msgs = srv.fetch_messages(RCPT, "INBOX")
    return sum(1 for m in msgs.values()
               if re.search(rb"(?m)^Subject: %s\r$" % re.escape(subject.encode()), m))


def clamd_log_since(clamd, mark, pattern, n):
    """clamd's log from mark once pattern matched n times there (it writes
    the line around its answer: waited for, at most 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        log = clamd.log()[mark:]
        if len(pattern.findall(log)) >= n or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_eicar_and_custom_signature_through_fildes(make_server, clamd):
    srv = make_server("postern-fildes", clamd_socket=clamd.socket, clamd_timeout=10,
                      spam_filter="no")
    mark = len(clamd.log())
    r = send(srv, attachment_message("fildes-eicar", EICAR))
    assert r.code == 554 and r.enh == "5.7.0" and EICAR_NAME in r.text, r
    r = send(srv, attachment_message("fildes-custom", CUSTOM_PAYLOAD))
    assert r.code == 554 and r.enh == "5.7.0" and CUSTOM_NAME in r.text, r
    r = send(srv, make_message(FROM, RCPT, "fildes-clean", "Nothing to see.\r\n"))
    assert r.code == 250, r
    assert stored(srv, "fildes-clean") == 1
    assert stored(srv, "fildes-eicar") == 0 and stored(srv, "fildes-custom") == 0
    log = clamd_log_since(clamd, mark, FD_FOUND, 2)
    # both found over FILDES, none over INSTREAM
    assert FD_FOUND.findall(log) == [EICAR_NAME, CUSTOM_NAME], log
    assert STREAM_FOUND.findall(log) == [], log
    assert "INSTREAM from now on" not in srv.log()


def test_kept_memfd_cut_with_the_real_clamd(make_server, clamd):
    """Straight to the real clamd (no proxy between): the command, its
    extra octet and the descriptor in one message, on a new connection and
    on the kept one; a long message with EICAR at its end, then a short
    clean one in the same (cut) memfd."""
    srv = make_server("postern-fildes-cut", clamd_socket=clamd.socket, clamd_timeout=10,
                      spam_filter="no")
    mark = len(clamd.log())
    tail = "".join("line %03d of words before the test string\r\n" % i for i in range(60))
    for i in range(2):
        r = send(srv, make_message(FROM, RCPT, "cut-long-%d" % i, tail + EICAR.decode() + "\r\n"))
        assert r.code == 554 and EICAR_NAME in r.text, r
        r = send(srv, make_message(FROM, RCPT, "cut-short-%d" % i, "Nothing.\r\n"))
        assert r.code == 250, r
        assert stored(srv, "cut-short-%d" % i) == 1
    log = clamd_log_since(clamd, mark, FD_FOUND, 2)
    assert FD_FOUND.findall(log) == [EICAR_NAME] * 2 and STREAM_FOUND.findall(log) == [], log
    assert memfds(srv) == 1  # one session, kept
    assert "INSTREAM from now on" not in srv.log() and "clamd scan failed" not in srv.log()


def test_message_at_the_fildes_bound(make_server, clamd):
    """EICAR at the end of a message just under 256 KiB: FILDES; just over:
    INSTREAM (streamed while received); found either way."""
    srv = make_server("postern-fildes-bound", clamd_socket=clamd.socket, clamd_timeout=10,
                      spam_filter="no")
    base = len(attachment_message("fildes-under", EICAR, 0))
    line = len("filler line 000000 of plain words before the attachment\r\n")
    n = (FILDES_MAX - base - 200) // line
    under = attachment_message("fildes-under", EICAR, n)
    over = attachment_message("fildes-over", EICAR, n + 10)
    # the size counted is the content after dot-unstuffing, without the final dot
    assert len(under) <= FILDES_MAX < len(over)
    mark = len(clamd.log())
    r = send(srv, under)
    assert r.code == 554 and EICAR_NAME in r.text, r
    log = clamd_log_since(clamd, mark, FD_FOUND, 1)
    assert FD_FOUND.findall(log) == [EICAR_NAME] and STREAM_FOUND.findall(log) == [], log
    mark = len(clamd.log())
    r = send(srv, over)
    assert r.code == 554 and EICAR_NAME in r.text, r
    log = clamd_log_since(clamd, mark, STREAM_FOUND, 1)
    assert STREAM_FOUND.findall(log) == [EICAR_NAME] and FD_FOUND.findall(log) == [], log


def test_large_message_over_instream(make_server, clamd):
    """3 MB with EICAR at its end: INSTREAM in many chunks; a clean 3 MB one
    is stored whole."""
    srv = make_server("postern-fildes-large", clamd_socket=clamd.socket, clamd_timeout=20,
                      spam_filter="no")
    mark = len(clamd.log())
    r = send(srv, attachment_message("large-eicar", EICAR, 52000))
    assert r.code == 554 and EICAR_NAME in r.text, r
    assert STREAM_FOUND.findall(clamd_log_since(clamd, mark, STREAM_FOUND, 1)) == [EICAR_NAME]
    r = send(srv, make_message(FROM, RCPT, "large-clean", "a clean line of text\r\n" * 140000))
    assert r.code == 250, r
    assert stored(srv, "large-clean") == 1


def test_tcp_clamd_uses_instream(make_server, tmp_path):
    """clamd_socket = host:port: no descriptor can cross TCP: INSTREAM."""
    host = "127.0.0.1"
    port = _free_ports(host, 1)[0]
    with Clamd(tmp_path, extra_conf=["TCPSocket %d" % port, "TCPAddr %s" % host]) as tcp:
        srv = make_server("postern-tcp-clamd", clamd_socket="%s:%d" % (host, port),
                          clamd_timeout=10, spam_filter="no")
        r = send(srv, attachment_message("tcp-eicar", EICAR))
        assert r.code == 554 and EICAR_NAME in r.text, r
        log = clamd_log_since(tcp, 0, STREAM_FOUND, 1)
        assert STREAM_FOUND.findall(log) == [EICAR_NAME] and FD_FOUND.findall(log) == [], log
        r = send(srv, make_message(FROM, RCPT, "tcp-clean", "Nothing to see.\r\n"))
        assert r.code == 250, r


class OldClamd:
    """Fault injection: a clamd without FILDES on a unix socket. It answers
    "zFILDES" with "UNKNOWN COMMAND" and closes (as clamd does with a
    command it does not know); an INSTREAM scan it reads whole and hands to
    the real clamd, whose answer it returns. It counts the commands. With
    session, it knows "zIDSESSION" (every clamd since 0.95: postern starts a
    FILDES connection with it) and answers the command after it with "1: "
    before the answer; without, "zIDSESSION" is unknown too."""

    def __init__(self, path, real, session=True):
        self.path, self.real, self.session = path, real, session
        self.commands = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _read(self, c, n):
        out = b""
        while len(out) < n:
            d = c.recv(n - len(out))
            if not d:
                raise EOFError
            out += d
        return out

    def _serve(self, c):
        c.settimeout(10)
        try:
            prefix = b""
            while True:
                cmd = b""
                while not cmd.endswith(b"\0"):
                    cmd += self._read(c, 1)
                self.commands.append(cmd.rstrip(b"\0").decode())
                if cmd != b"zIDSESSION\0" or not self.session or prefix:
                    break
                prefix = b"1: "
            if cmd == b"zINSTREAM\0":
                data = b""
                while True:
                    (n,) = struct.unpack(">I", self._read(c, 4))
                    if n == 0:
                        break
                    data += self._read(c, n)
                c.sendall(prefix + self.real.scan(data).encode() + b"\0")
            else:
                c.sendall(prefix + b"UNKNOWN COMMAND\0")
        except (OSError, EOFError):
            pass
        finally:
            c.close()

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self._serve(c)

    def close(self):
        self.stopping = True
        self.t.join(5)
        self.sock.close()
        os.unlink(self.path)


@pytest.mark.parametrize("session", [True, False], ids=["idsession", "no-idsession"])
def test_clamd_refusing_fildes_falls_back_to_instream(make_server, clamd, tmp_path, session):
    old = OldClamd(str(tmp_path / "old.sock"), clamd, session)
    try:
        srv = make_server("postern-old-clamd", clamd_socket=old.path, clamd_timeout=10,
                          spam_filter="no")
        r = send(srv, attachment_message("old-eicar", EICAR))
        assert r.code == 554 and EICAR_NAME in r.text, r
        r = send(srv, attachment_message("old-custom", CUSTOM_PAYLOAD))
        assert r.code == 554 and CUSTOM_NAME in r.text, r
        r = send(srv, make_message(FROM, RCPT, "old-clean", "Nothing to see.\r\n"))
        assert r.code == 250, r
        # FILDES (in a session) once, refused; every scan then over INSTREAM
        first = ["zIDSESSION", "zFILDES"] if session else ["zIDSESSION"]
        assert old.commands == first + ["zINSTREAM"] * 3, old.commands
        assert srv.log().count("INSTREAM from now on") == 1
        assert "UNKNOWN COMMAND" in srv.log()
        assert "clamd scan failed" not in srv.log()
    finally:
        old.close()


class ContentErrorClamd(OldClamd):
    """Fault injection: a clamd that knows FILDES (in a session) and scans
    with the real clamd, but answers ERROR, over FILDES and over INSTREAM
    alike, for a message holding MARKER (as clamd does for some content it
    cannot parse). It counts the commands."""
    MARKER = b"CLAMD-CANNOT-PARSE-THIS"

    def __init__(self, path, real):
        self.fds = []
        super().__init__(path, real, True)

    def _read(self, c, n):
        out = b""
        while len(out) < n:
            d, fds, _, _ = socket.recv_fds(c, n - len(out), 4)
            self.fds.extend(fds)
            if not d:
                raise EOFError
            out += d
        return out

    def _answer(self, data):
        if self.MARKER in data:
            return "Can't parse data ERROR"
        return self.real.scan(data).split(": ", 1)[1]

    def _serve(self, c):
        c.settimeout(10)
        try:
            n = 0
            while True:
                cmd = b""
                while not cmd.endswith(b"\0"):
                    cmd += self._read(c, 1)
                self.commands.append(cmd.rstrip(b"\0").decode())
                if cmd == b"zIDSESSION\0":
                    continue
                n += 1
                if cmd == b"zFILDES\0":
                    self._read(c, 1)  # the octet the descriptor came with
                    fd = self.fds.pop()
                    try:
                        data = os.pread(fd, 1 << 20, 0)
                    finally:
                        os.close(fd)
                    c.sendall(b"%d: fd[%d]: %s\0" % (n, fd, self._answer(data).encode()))
                elif cmd == b"zINSTREAM\0":
                    data = b""
                    while True:
                        (k,) = struct.unpack(">I", self._read(c, 4))
                        if k == 0:
                            break
                        data += self._read(c, k)
                    c.sendall(b"stream: %s\0" % self._answer(data).encode())
                    return  # not in a session: clamd closes after it
                else:
                    c.sendall(b"UNKNOWN COMMAND\0")
                    return
        except (OSError, EOFError):
            pass
        finally:
            c.close()


def test_content_error_keeps_fildes(make_server, clamd, tmp_path):
    # clamd's ERROR over FILDES is asked again over INSTREAM; when that
    # fails too, the message was the trouble, not FILDES: FILDES stays on
    fake = ContentErrorClamd(str(tmp_path / "err.sock"), clamd)
    try:
        srv = make_server("postern-content-error", clamd_socket=fake.path, clamd_timeout=10,
                          spam_filter="no")
        bad = make_message(FROM, RCPT, "unparsable", "x %s y\r\n" % fake.MARKER.decode())
        r = send(srv, bad)
        assert r.code == 451 and "4.7.0" in r.text, r
        r = send(srv, attachment_message("after-error-eicar", EICAR))
        assert r.code == 554 and EICAR_NAME in r.text, r
        r = send(srv, make_message(FROM, RCPT, "after-error-clean", "Nothing to see.\r\n"))
        assert r.code == 250, r
        # FILDES, then INSTREAM for the unparsable one; FILDES again after
        assert fake.commands.count("zINSTREAM") == 1, fake.commands
        assert fake.commands.count("zFILDES") == 3, fake.commands
        assert fake.commands[-1] == "zFILDES", fake.commands
        assert "INSTREAM from now on" not in srv.log()
        assert "Can't parse data ERROR" in srv.log()
    finally:
        fake.close()


class SessionProxy:
    """Between postern and the real clamd on unix sockets: forwards both
    ways, passed descriptors included (each with the one octet it came
    with), and counts the connections and each one's commands. Fault
    injection: close_idle() closes every connection (as clamd's IdleTimeout
    does); drop_next makes the next command that arrives on a connection
    that already answered close it unanswered (clamd closing a session as
    postern reuses it); fake_answer, answered instead (and closed)."""

    def __init__(self, path, real):
        self.path, self.real = path, real
        self.conns = []  # [client socket, upstream socket, commands seen]
        self.drop_next = False
        self.fake_answer = None
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _up(self, c, u, rec):
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(c, 4096, 4)
                if not data:
                    break
                with self.lock:
                    if (self.drop_next or self.fake_answer) and rec["answers"] > 0:
                        if self.fake_answer:
                            c.sendall(self.fake_answer)
                        self.drop_next = False
                        self.fake_answer = None
                        rec["dropped"] = True
                        break
                rec["commands"] += data.count(b"\0") - (1 if fds else 0)
                if fds:
                    if len(data) > 1:
                        u.sendall(data[:-1])
                    socket.send_fds(u, [data[-1:]], fds)
                    for fd in fds:
                        os.close(fd)
                else:
                    u.sendall(data)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _down(self, c, u, rec):
        try:
            while True:
                data = u.recv(4096)
                if not data:
                    break
                rec["answers"] += data.count(b"\0")
                c.sendall(data)
        except OSError:
            pass
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(self.real.socket)
            rec = {"commands": 0, "answers": 0, "dropped": False, "sockets": (c, u)}
            with self.lock:
                self.conns.append(rec)
            for fn in (self._up, self._down):
                threading.Thread(target=fn, args=(c, u, rec), daemon=True).start()

    def close_idle(self):
        with self.lock:
            for rec in self.conns:
                for s in rec["sockets"]:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self):
        self.stopping = True
        self.close_idle()
        self.t.join(5)
        self.sock.close()
        os.unlink(self.path)


def memfds(srv):
    """postern's open memfds for clamd."""
    d = "/proc/%d/fd" % srv.proc.pid
    n = 0
    for fd in os.listdir(d):
        try:
            n += os.readlink(os.path.join(d, fd)).startswith("/memfd:postern-clamd")
        except OSError:
            pass
    return n


def test_fildes_scans_share_a_kept_session(make_server, clamd, tmp_path):
    """Scans one after the other go over one kept IDSESSION connection,
    found or clean; after clamd closes it (IdleTimeout) a new one is made;
    a kept session closed as it is reused costs a new connection, not a
    failure nor the fallback to INSTREAM."""
    px = SessionProxy(str(tmp_path / "px.sock"), clamd)
    try:
        srv = make_server("postern-clamd-session", clamd_socket=px.path, clamd_timeout=10,
                          spam_filter="no")
        mark = len(clamd.log())
        for i in range(4):
            r = send(srv, make_message(FROM, RCPT, "session-clean-%d" % i, "Nothing.\r\n"))
            assert r.code == 250, r
        r = send(srv, attachment_message("session-eicar", EICAR))
        assert r.code == 554 and EICAR_NAME in r.text, r
        r = send(srv, make_message(FROM, RCPT, "session-clean-after", "Nothing.\r\n"))
        assert r.code == 250, r
        # the kept memfd is cut to the next, shorter message: a virus at
        # the end of a long one is not scanned again with the short one
        tail = "".join("line %03d of words before the test string\r\n" % i for i in range(60))
        r = send(srv, make_message(FROM, RCPT, "session-long-eicar",
                                   tail + EICAR.decode() + "\r\n"))
        assert r.code == 554 and EICAR_NAME in r.text, r
        r = send(srv, make_message(FROM, RCPT, "session-short-after", "Nothing.\r\n"))
        assert r.code == 250, r
        log = clamd_log_since(clamd, mark, FD_FOUND, 2)
        assert FD_FOUND.findall(log) == [EICAR_NAME] * 2 and STREAM_FOUND.findall(log) == [], log
        # IDSESSION and eight FILDES on one connection
        assert [c["commands"] for c in px.conns] == [9], px.conns
        # and one memfd, written again for each message, kept with it
        assert memfds(srv) == 1

        px.close_idle()
        time.sleep(0.3)  # postern sees the close of its idle session
        r = send(srv, make_message(FROM, RCPT, "session-new", "Nothing.\r\n"))
        assert r.code == 250, r
        assert [c["commands"] for c in px.conns] == [9, 2], px.conns

        px.drop_next = True
        r = send(srv, attachment_message("session-dropped-eicar", EICAR))
        assert r.code == 554 and EICAR_NAME in r.text, r
        assert [c["dropped"] for c in px.conns] == [False, True, False], px.conns
        assert px.conns[2]["commands"] == 2, px.conns
        r = send(srv, make_message(FROM, RCPT, "session-last", "Nothing.\r\n"))
        assert r.code == 250, r
        assert px.conns[2]["commands"] == 3 and len(px.conns) == 3, px.conns

        # a kept session answering something else (clamd's word on the
        # session, not on FILDES): asked again on a new connection
        px.fake_answer = b"3: COMMAND READ TIMED OUT\0"
        r = send(srv, attachment_message("session-odd-eicar", EICAR))
        assert r.code == 554 and EICAR_NAME in r.text, r
        assert [c["dropped"] for c in px.conns] == [False, True, True, False], px.conns
        assert px.conns[3]["commands"] == 2, px.conns
        for s in ("session-clean-0", "session-clean-3", "session-clean-after",
                  "session-short-after", "session-new", "session-last"):
            assert stored(srv, s) == 1, s
        assert stored(srv, "session-eicar") == 0 and stored(srv, "session-dropped-eicar") == 0
        assert stored(srv, "session-long-eicar") == 0
        assert "INSTREAM from now on" not in srv.log()
        assert "clamd scan failed" not in srv.log()
        assert memfds(srv) == 1
        px.close_idle()
        time.sleep(0.3)
        assert memfds(srv) == 0  # gone with the session
    finally:
        px.close()
