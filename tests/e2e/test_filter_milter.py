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
    return raw.split(b"\r\n\r\n", 1)[0]


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
    assert b"\r\nX-Spam: Yes\r\n" in head + b"\r\n", head
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
