"""The milter client (src/filter/milter.c) through the daemon, with a real
rspamd (tests/e2e/rspamd.py: its proxy worker in milter mode, self_scan,
test Lua rules): a message matching the reject rule is refused with
rspamd's reply, a clean one is stored with rspamd's added field, the
add_header action's X-Spam field replaces a forged one; rspamd down and a
milter that never answers (a Python listener, fault injection) give 451
with milter_failure = tempfail and 250 with accept, within milter_timeout."""

import socket
import threading
import time

import pytest

from conftest import make_message
from rspamd import Rspamd

RCPT = "alice@example.test"
SENDER = "sender@client.example.net"


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory):
    r = Rspamd(tmp_path_factory.mktemp("rspamd")).start()
    print("rspamd started in %.1f s" % r.start_seconds)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def srv(rspamd, tmp_path_factory, tls_pair):
    from conftest import _new_server
    s = _new_server(tmp_path_factory, tls_pair, "postern", milters=rspamd.milter,
                    milter_timeout=30)
    yield s
    s.stop()


def header_block(raw):
    """The header section, its last line break included."""
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def send(s, subject, extra=(), body="Hello there.\r\n"):
    msg = make_message(SENDER, RCPT, subject, body, extra_headers=extra)
    with s.client("mx") as c:
        c.ehlo()
        return c.mail(SENDER, [RCPT], msg)


def test_reject_rule(srv):
    before = srv.count(RCPT)
    r = send(srv, "buy now REJECTME")
    assert r.code == 554, r
    assert "5.7.1 Spam message rejected" in r.lines[-1], r
    assert srv.count(RCPT) == before


def test_clean_accepted_with_added_field(srv):
    before = srv.count(RCPT)
    r = send(srv, "lunch tomorrow")
    assert r.code == 250, r
    msgs = srv.messages(RCPT)
    assert len(msgs) == before + 1
    head = header_block(msgs[-1])
    assert b"\r\nX-Rspamd-Test: scanned\r\n" in head, head
    assert b"X-Spam:" not in head, head
    assert msgs[-1].endswith(b"\r\n\r\nHello there.\r\n")


def test_add_header_action_replaces_forged_field(srv):
    # rspamd deletes every X-Spam field (SMFIR_CHGHEADER, empty value) and
    # sets "X-Spam: Yes" (a change of a field no longer there: added)
    r = send(srv, "SPAMMY offer", extra=["X-Spam: forged-by-sender", "X-Other: kept"])
    assert r.code == 250, r
    raw = srv.messages(RCPT)[-1]
    head = header_block(raw)
    assert b"forged-by-sender" not in raw
    assert head.count(b"X-Spam:") == 1, head
    assert b"\r\nX-Spam: Yes\r\n" in head, head
    assert b"\r\nX-Other: kept\r\n" in head, head
    assert b"\r\nSubject: SPAMMY offer\r\n" in head, head
    assert b"\r\nX-Rspamd-Test: scanned\r\n" in head, head
    assert raw.endswith(b"\r\n\r\nHello there.\r\n")


def test_large_message_streams(srv):
    # several 64 KiB body chunks and a paused input: the message arrives whole
    body = "".join("line %06d of a long message body\r\n" % i for i in range(30000))
    r = send(srv, "big one", body=body)
    assert r.code == 250, r
    raw = srv.messages(RCPT)[-1]
    assert raw.endswith(body.encode())
    assert b"\r\nX-Rspamd-Test: scanned\r\n" in header_block(raw)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("policy,code", [("tempfail", 451), ("accept", 250)])
def test_milter_down(make_server, policy, code):
    s = make_server(milters="inet:127.0.0.1:%d" % closed_port(), milter_failure=policy)
    msg = make_message(SENDER, RCPT, "hello", "body\r\n")
    with s.client("mx") as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % SENDER)
        if policy == "tempfail":
            assert r.code == 451, r
            assert "4.7.0" in r.lines[-1], r
            assert s.count(RCPT) == 0
        else:
            assert r.code == 250, r
            assert c.cmd("RCPT TO:<%s>" % RCPT).code == 250
            assert c.data(msg).code == 250
            assert s.count(RCPT) == 1
    assert "milter inet:127.0.0.1:" in s.log()


class Silent:
    """A listener that accepts and never answers (reads and drops)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "inet:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                continue

    def close(self):
        self.stop = True
        self.t.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("policy,code", [("tempfail", 451), ("accept", 250)])
def test_milter_stalls(make_server, policy, code):
    sil = Silent()
    try:
        s = make_server(milters=sil.addr, milter_failure=policy, milter_timeout=2)
        with s.client("mx") as c:
            c.ehlo()
            t0 = time.monotonic()
            r = c.cmd("MAIL FROM:<%s>" % SENDER)
            took = time.monotonic() - t0
            assert r.code == code, r
            assert took >= 1.9, took  # not before milter_timeout
            assert took < 15, took    # bounded
        assert "timed out" in s.log()
    finally:
        sil.close()


# ---------------------------------------------------------------------------
# A scripted milter (fault injection and the paths rspamd does not take:
# rspamd asks for no reply before the end of message, SMFIP_NR_*): it
# negotiates with the protocol flags given, answers every step with
# SMFIR_CONTINUE, and at the end of message does what `eob` says.
# ---------------------------------------------------------------------------
import struct


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


class Scripted:
    def __init__(self, eob, proto=0, reject_rcpt=None, actions=0x31):
        self.eob = eob
        self.proto = proto
        self.actions = actions  # SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE
        self.reject_rcpt = reject_rcpt
        self.cmds = []  # (cmd, data) received, every connection
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.addr = "inet:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = False
        self.threads = []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self.serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def read(self, c):
        h = b""
        while len(h) < 4:
            x = c.recv(4 - len(h))
            if not x:
                return None
            h += x
        n = struct.unpack(">I", h)[0]
        d = b""
        while len(d) < n:
            x = c.recv(n - len(d))
            if not x:
                return None
            d += x
        return d[:1], d[1:]

    def serve(self, c):
        c.settimeout(30)
        try:
            while not self.stop:
                p = self.read(c)
                if p is None:
                    return
                self.cmds.append(p)
                if p[0] == b"O":
                    c.sendall(pkt(b"O", struct.pack(">III", 6, self.actions, self.proto)))
                elif not self.answer(c, *p):
                    return
        except OSError:
            return
        finally:
            c.close()

    def answer(self, c, cmd, data):
        """Answers one command after the negotiation; False ends the
        connection. Subclasses script other answers."""
        if cmd in (b"D", b"A"):
            pass
        elif cmd == b"Q":
            return False
        elif cmd == b"R" and self.reject_rcpt and self.reject_rcpt.encode() in data:
            c.sendall(pkt(b"y", b"550 5.7.1 No thanks for this one\0"))
        elif cmd == b"E":
            self.eob(c)
        elif cmd == b"L" and self.proto & 0x80:
            pass  # SMFIP_NR_HDR
        else:
            c.sendall(pkt(b"c"))
        return True

    def close(self):
        self.stop = True
        self.t.join(5)
        for t in self.threads:
            t.join(5)
        self.sock.close()


def eob_edits(c):
    c.sendall(pkt(b"i", struct.pack(">I", 0) + b"X-First\0inserted\0") +
              pkt(b"h", b"X-Folded\0a\n\tb\0") +
              pkt(b"m", struct.pack(">I", 1) + b"X-Drop\0\0") +
              pkt(b"q", b"held for review\0") + pkt(b"c"))


def test_scripted_every_step_answered(make_server):
    m = Scripted(eob_edits, reject_rcpt="bob@")
    try:
        s = make_server(milters=m.addr, milter_timeout=10)
        msg = make_message(SENDER, RCPT, "steps", "body line\r\n",
                           extra_headers=["X-Fold: folded\r\n value", "X-Drop: me",
                                          "X-Keep: me"])
        with s.client("mx") as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<%s>" % SENDER).code == 250
            assert c.cmd("RCPT TO:<%s>" % RCPT).code == 250
            r = c.cmd("RCPT TO:<bob@example.test>")
            assert r.code == 550 and r.lines[-1].startswith("5.7.1 "), r
            assert "No thanks for this one" in r.lines[-1], r
            assert c.data(msg).code == 250
        # SMFIR_QUARANTINE: kept, in the recipient's Junk
        assert s.count(RCPT) == 0
        raw = s.messages(RCPT, "Junk")[-1]
        head = header_block(raw)
        assert b"X-Drop" not in head, head
        assert b"\r\nX-Keep: me\r\n" in head, head
        assert b"\r\nX-Folded: a\r\n\tb\r\n" in head, head
        # SMFIR_INSHEADER at 0: the first field the milter saw (the message
        # as stored: its Received field first), under the prefix
        assert b"\r\nX-First: inserted\r\nReceived: " in head, head
        assert raw.endswith(b"\r\n\r\nbody line\r\n")
        cmds = [c for c, _ in m.cmds if c != b"D"]
        # the order of the steps, one connection
        assert cmds[:8] == [b"O", b"C", b"H", b"M", b"R", b"R", b"T", b"L"], cmds
        assert cmds[-3:-1] == [b"B", b"E"], cmds
        hdrs = [d for c, d in m.cmds if c == b"L"]
        # folded as Sendmail/Postfix send it: LF inside, one space eaten
        assert b"X-Fold\0folded\n value\0" in hdrs, hdrs
        assert b"X-Drop\0me\0" in hdrs, hdrs
        body = b"".join(d for c, d in m.cmds if c == b"B")
        assert body == b"body line\r\n", body
        conn = [d for c, d in m.cmds if c == b"C"][0]
        assert conn.split(b"\0")[1][:1] == b"4" and conn.endswith(b"\0"), conn
        assert [d for c, d in m.cmds if c == b"M"][0] == b"<%s>\0" % SENDER.encode()
        assert "MILTER_QUARANTINE" in s.log()
    finally:
        m.close()


def test_scripted_declined_steps_not_sent(make_server):
    # SMFIP_NOCONNECT|NOHELO|NOHDRS|NOEOH (0x1|0x2|0x20|0x40): not sent
    m = Scripted(lambda c: c.sendall(pkt(b"a")), proto=0x63)
    try:
        s = make_server(milters=m.addr, milter_timeout=10)
        assert send(s, "hi").code == 250
        cmds = set(c for c, _ in m.cmds)
        assert not cmds & {b"C", b"H", b"L", b"N"}, cmds
        assert {b"M", b"R", b"T", b"B", b"E"} <= cmds, cmds
    finally:
        m.close()


def send_timed(s, **kw):
    """One message through MAIL, RCPT and DATA: (the reply at the end of
    data, the seconds from the DATA command to it). kw goes to the client
    (its socket timeout)."""
    msg = make_message(SENDER, RCPT, "x", "body\r\n")
    with s.client("mx", **kw) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % SENDER).code == 250
        assert c.cmd("RCPT TO:<%s>" % RCPT).code == 250
        t0 = time.monotonic()
        r = c.data(msg)
        return r, time.monotonic() - t0


def stall(c):
    pass


def garbage(c):
    c.sendall(pkt(b"Z", b"what"))


def progress(c):
    for _ in range(6):  # 3 s of SMFIR_PROGRESS, with milter_timeout = 2
        time.sleep(0.5)
        c.sendall(pkt(b"p"))
    c.sendall(pkt(b"c"))


@pytest.mark.parametrize("eob,code,at_least", [
    (stall, 451, 1.9),       # no answer at the end of message: milter_timeout
    (garbage, 451, 0),       # a reply that is not in the protocol
    (progress, 250, 2.9),    # SMFIR_PROGRESS restarts the clock
])
def test_scripted_end_of_message_faults(make_server, eob, code, at_least):
    m = Scripted(eob)
    try:
        s = make_server(milters=m.addr, milter_timeout=2)
        r, took = send_timed(s)
        assert r.code == code, r
        if code == 451:
            assert "4.7.0" in r.lines[-1], r
        assert at_least <= took < 20, took
        assert s.count(RCPT) == (1 if code == 250 else 0)
    finally:
        m.close()


@pytest.mark.parametrize("failure", ["tempfail", "accept"])
def test_header_fields_bounded(make_server, failure):
    # each header field is a round trip on the loop (this milter answers
    # every one, as libmilter's do without SMFIP_NR_HDR): a message of more
    # than 1000 is refused, whatever milter_failure says (under "accept" a
    # sender could otherwise switch the milters off by adding fields)
    m = Scripted(lambda c: c.sendall(pkt(b"a")))
    try:
        s = make_server(milters=m.addr, milter_timeout=10, milter_failure=failure)

        def fields_seen():
            return sum(1 for cmd, _ in list(m.cmds) if cmd == b"L")
        assert send(s, "base").code == 250
        base = fields_seen()  # the message's own and postern's Received
        extra = ["X-F%d: v" % i for i in range(1000 - base)]
        n0 = fields_seen()
        assert send(s, "at the cap", extra).code == 250
        assert fields_seen() - n0 == 1000
        for more in (1, 20000):
            n0 = fields_seen()
            r = send(s, "past the cap", extra + ["X-G: v"] * more)
            assert r.code == 552, r
            assert r.lines[-1].startswith("5.6.0 "), r
            # queued fields wait for the answer to the one before: the
            # milters are let go when the 1001st arrives, before most were sent
            assert fields_seen() - n0 <= 1000
        assert s.log().count("the message has more than 1000 header fields: refused") == 2, \
            s.log()[-2000:]
        assert s.count(RCPT) == 2
    finally:
        m.close()


def test_header_fields_not_bounded_when_declined(make_server):
    # a milter that declined header fields (SMFIP_NOHDRS) is sent none, so
    # the cap, which bounds those round trips, does not apply
    m = Scripted(lambda c: c.sendall(pkt(b"a")), proto=0x20)  # SMFIP_NOHDRS
    try:
        s = make_server(milters=m.addr, milter_timeout=10)
        extra = ["X-F%d: v" % i for i in range(3000)]
        assert send(s, "many fields, none wanted", extra).code == 250
        assert not any(cmd == b"L" for cmd, _ in list(m.cmds))
        assert any(cmd == b"E" for cmd, _ in list(m.cmds))
        assert "header fields: refused" not in s.log()
        assert s.count(RCPT) == 1
    finally:
        m.close()


def test_unsupported_changes_logged_once(make_server):
    # SMFIR_REPLBODY (not offered) by the thousand: ignored, one log line
    m = Scripted(lambda c: c.sendall(pkt(b"b", b"new body\r\n") * 2000 + pkt(b"c")))
    try:
        s = make_server(milters=m.addr, milter_timeout=10)
        assert send(s, "replbody", body="original body\r\n").code == 250
        assert s.log().count("not supported, ignored") == 1, s.log()[-2000:]
        assert b"original body" in s.messages(RCPT)[-1]
    finally:
        m.close()


def test_nul_in_header_field_sent_as_space(make_server):
    # the packet separates name and value with NULs: a NUL inside a field
    # must not make the milter see another field than the stored one
    m = Scripted(lambda c: c.sendall(pkt(b"c")))
    try:
        s = make_server(milters=m.addr, milter_timeout=10)
        msg = make_message(SENDER, RCPT, "nul", "x\r\n",
                           extra_headers=["X-Hide: hidden\0VIAGRA",
                                          "From\0<ceo@bank.example>\0: x"])
        with s.client("mx") as c:
            c.ehlo()
            assert c.mail(SENDER, [RCPT], msg).code == 250
        fields = [d for cmd, d in list(m.cmds) if cmd == b"L"]
        assert b"X-Hide\0hidden VIAGRA\0" in fields, fields
        assert b"From <ceo@bank.example> \0x\0" in fields, fields
        assert not any(f.startswith(b"From\0<ceo") for f in fields), fields
    finally:
        m.close()


def progress_flood(c):
    # SMFIR_PROGRESS every 0.2 s, never an answer: the clock restarts each
    # time, but the wait for one reply is bounded (10 x milter_timeout).
    # With milter_timeout = 3 this thread may be starved for up to 2.8 s (a
    # loaded sanitizer run starved it for over 1 s) and still keep the clock
    # going until the overall bound (30 s) is what runs out.
    while True:
        time.sleep(0.2)
        c.sendall(pkt(b"p"))


def header_flood(c):
    # far more SMFIR_ADDHEADER than any filter needs (memory must stay bounded)
    one = pkt(b"h", b"X-Flood\0" + b"v" * 200 + b"\0")
    for _ in range(50):
        c.sendall(one * 100)
    c.sendall(pkt(b"c"))


@pytest.mark.parametrize("eob,why", [
    (progress_flood, "overall bound"),
    (header_flood, "too many header changes"),
])
def test_scripted_end_of_message_floods(make_server, eob, why):
    m = Scripted(eob)
    try:
        s = make_server(milters=m.addr, milter_timeout=3)
        r, took = send_timed(s, timeout=60)
        assert r.code == 451, r
        assert "4.7.0" in r.lines[-1], r
        assert took < 50, took
        if eob is progress_flood:
            assert took >= 29, took
        assert s.count(RCPT) == 0
        assert why in s.log()
    finally:
        m.close()


def die(c):
    c.shutdown(socket.SHUT_RDWR)  # gone in the middle of the end of message


def add_one(c):
    c.sendall(pkt(b"h", b"X-Second\0yes\0") + pkt(b"c"))


def test_two_milters_first_dies_accept(make_server):
    # milter_failure = accept: the dead one is dropped (its changes too),
    # the second's answer and changes count
    m1, m2 = Scripted(die), Scripted(add_one)
    try:
        s = make_server(milters="%s,%s" % (m1.addr, m2.addr), milter_timeout=5,
                        milter_failure="accept")
        assert send(s, "two").code == 250
        raw = s.messages(RCPT)[-1]
        assert b"\r\nX-Second: yes\r\n" in header_block(raw), raw
        assert "closed the connection" in s.log()
    finally:
        m1.close()
        m2.close()


def test_two_milters_first_rejects_mail(make_server):
    # the first milter refuses MAIL: the transaction ends there, the second
    # is told nothing more (no RCPT, DATA or end of message)
    class RejectMail(Scripted):
        def answer(self, c, cmd, data):
            if cmd == b"M":
                c.sendall(pkt(b"y", b"550 5.7.1 Not from you\0"))
            elif cmd in (b"C", b"H"):
                c.sendall(pkt(b"c"))
            return cmd != b"Q"

    m1, m2 = RejectMail(stall), Scripted(add_one)
    try:
        s = make_server(milters="%s,%s" % (m1.addr, m2.addr), milter_timeout=5)
        with s.client("mx") as c:
            c.ehlo()
            r = c.cmd("MAIL FROM:<%s>" % SENDER)
            assert r.code == 550 and "5.7.1 Not from you" in r.lines[-1], r
            assert c.cmd("RSET").code == 250
        time.sleep(0.5)
        cmds = [x for x, _ in m2.cmds]
        assert not set(cmds) & {b"R", b"T", b"L", b"B", b"E"}, cmds
    finally:
        m1.close()
        m2.close()


class DiesInBody(Scripted):
    """Answers every step, then closes at the first body chunk."""

    def answer(self, c, cmd, data):
        if cmd == b"B":
            return False
        if cmd not in (b"D", b"A", b"Q"):
            c.sendall(pkt(b"c"))
        return True


@pytest.mark.parametrize("policy,code", [("tempfail", 451), ("accept", 250)])
def test_milter_closes_mid_body(make_server, policy, code):
    # a 2 MB body: the input pauses on the milter's output, which must
    # resume (accept) or end (tempfail) when the milter goes away
    m = DiesInBody(stall)
    try:
        s = make_server(milters=m.addr, milter_timeout=5, milter_failure=policy)
        body = "".join("line %07d of a body the milter never finishes\r\n" % i
                       for i in range(40000))
        r = send(s, "mid body", body=body)
        assert r.code == code, r
        if code == 250:
            assert s.messages(RCPT)[-1].endswith(body.encode())
        else:
            assert "4.7.0" in r.lines[-1], r
            assert s.count(RCPT) == 0
        assert "closed the connection" in s.log() or "Connection reset" in s.log() \
            or "Broken pipe" in s.log()
    finally:
        m.close()


def answer_16k_and_close(c):
    # The end-of-message answer fills postern's 16 KiB read exactly, and the
    # connection closes right behind it: the close comes with the next read.
    # The answer read before the close still counts.
    pad = [pkt(b"h", b"X-Pad\0" + b"p" * 1000 + b"\0") for _ in range(16)]
    pad.append(pkt(b"h", b"X-Pad\0" + b"q" * 175 + b"\0"))
    out = b"".join(pad) + pkt(b"c")
    assert len(out) == 16384
    c.sendall(out)
    c.shutdown(socket.SHUT_RDWR)


def test_answer_then_close_at_read_size(make_server):
    m = Scripted(answer_16k_and_close)
    try:
        s = make_server(milters=m.addr, milter_timeout=5, milter_failure="tempfail")
        for i in range(3):
            r = send(s, "exact read %d" % i)
            assert r.code == 250, r
            head = header_block(s.messages(RCPT)[-1])
            assert head.count(b"\r\nX-Pad: ") == 17, head[:300]
            assert b"\r\nX-Pad: " + b"q" * 175 + b"\r\n" in head
        assert "closed the connection" not in s.log()
    finally:
        m.close()


def change_header(c):
    c.sendall(pkt(b"m", struct.pack(">I", 1) + b"Subject\0changed\0") + pkt(b"c"))


def add_header(c):
    c.sendall(pkt(b"h", b"X-Added\0yes\0") + pkt(b"c"))


def quarantine(c):
    c.sendall(pkt(b"q", b"held\0") + pkt(b"c"))


def add_then_reject(c):
    c.sendall(pkt(b"h", b"X-Added\0yes\0") + pkt(b"y", b"550 5.7.1 virus found\0"))


@pytest.mark.parametrize("eob,actions,declared", [
    (change_header, 0x01, False),  # SMFIF_ADDHDRS only: SMFIR_CHGHEADER not asked for
    (add_header, 0x10, False),     # SMFIF_CHGHDRS only: SMFIR_ADDHEADER not asked for
    (quarantine, 0x11, False),     # no SMFIF_QUARANTINE
    (change_header, 0x10, True),
    (add_header, 0x01, True),
    (quarantine, 0x20, True),
])
def test_changes_not_asked_for_taken(make_server, eob, actions, declared):
    # A change the milter did not ask for in SMFIC_OPTNEG is taken all the
    # same, as Sendmail and Postfix do, and logged once: failing the milter
    # would drop its verdict with it.
    m = Scripted(eob, actions=actions)
    try:
        s = make_server(milters=m.addr, milter_timeout=5, milter_failure="accept")
        r = send(s, "negotiated")
        assert r.code == 250, r
        if eob is quarantine:
            head = header_block(s.messages(RCPT, "Junk")[-1])
        else:
            head = header_block(s.messages(RCPT)[-1])
        if eob is change_header:
            assert b"\r\nSubject: changed\r\n" in head, head
        if eob is add_header:
            assert b"\r\nX-Added: yes\r\n" in head, head
        assert ("without having asked for it" in s.log()) == (not declared), s.log()[-2000:]
    finally:
        m.close()


@pytest.mark.parametrize("failure", ["accept", "tempfail"])
def test_undeclared_change_keeps_the_verdict(make_server, failure):
    # a milter that asked for no action adds a field, then rejects: its
    # rejection stands, whatever milter_failure says
    m = Scripted(add_then_reject, actions=0)
    try:
        s = make_server(milters=m.addr, milter_timeout=5, milter_failure=failure)
        r = send(s, "undeclared then reject")
        assert r.code == 550 and "virus found" in r.lines[-1], r
        assert s.count(RCPT) == 0
    finally:
        m.close()


def change_to_empty_and_delete(c):
    # under SMFIP_HDR_LEADSPC values carry their leading space: " " is an
    # empty value; no value at all deletes (Sendmail reads it so)
    c.sendall(pkt(b"m", struct.pack(">I", 1) + b"Subject\0 \0") +
              pkt(b"m", struct.pack(">I", 1) + b"X-Drop\0\0") + pkt(b"c"))


def test_change_to_empty_value_is_not_deletion(make_server):
    m = Scripted(change_to_empty_and_delete, proto=0x100000)  # SMFIP_HDR_LEADSPC
    try:
        s = make_server(milters=m.addr, milter_timeout=5)
        msg = make_message(SENDER, RCPT, "to be emptied", "body\r\n",
                           extra_headers=["X-Drop: me"])
        with s.client("mx") as c:
            c.ehlo()
            assert c.mail(SENDER, [RCPT], msg).code == 250
        head = header_block(s.messages(RCPT)[-1])
        assert b"\r\nSubject: \r\n" in head, head
        assert b"to be emptied" not in head and b"X-Drop" not in head, head
    finally:
        m.close()


def test_quarantine_on_submission_junk_and_held(make_server):
    # A milter's quarantine on a user's own mail (milter_submission = yes):
    # the local recipient gets it in Junk, the remote one's queue entry
    # starts held (Postfix puts a quarantined message on hold): it is not
    # sent until the administrator releases it.
    m = Scripted(quarantine, actions=0x20)
    try:
        s = make_server(milters=m.addr, milter_timeout=5, milter_submission="yes")
        c = s.authed(RCPT)
        try:
            msg = make_message(RCPT, "bob@example.test", "held for review",
                               "Quarterly figures attached.\r\n")
            r = c.mail(RCPT, ["bob@example.test", "carol@remote.example"], msg)
            assert r.code == 250, r
        finally:
            c.close()
        assert s.count("bob@example.test") == 0
        assert len(s.messages("bob@example.test", "Junk")) == 1
        q = s.queue()
        assert len(q) == 1 and "carol@remote.example" in q[0] and " held" in q[0], q
        assert "action=quarantine" in s.log()
        # a message the milter lets through is queued as usual, not held
        m.eob = lambda c: c.sendall(pkt(b"c"))
        c = s.authed(RCPT)
        try:
            msg = make_message(RCPT, "dave@remote.example", "not held", "Hi.\r\n")
            assert c.mail(RCPT, ["dave@remote.example"], msg).code == 250
        finally:
            c.close()
        q = [l for l in s.queue() if "dave@remote.example" in l]
        assert len(q) == 1 and " held" not in q[0], s.queue()
    finally:
        m.close()
