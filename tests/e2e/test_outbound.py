"""Outbound delivery (issue 8): the durable queue, the scheduler, the SMTP
client and the DSNs, end to end.

Two postern instances serve two domains: A (one.test: alice) and B
(two.test: bob; backup.test: bob). Each listens for SMTP on its own
loopback address at the same port P (A's outbound_port), and both resolve
through a private dnsmasq that publishes their MX and A records. A third
address hosts a small scripted SMTP server (Sink) for the faults a real
postern does not produce: 4xx or 5xx for chosen recipients, a connection
cut mid-DATA, a server that holds its reply to the final dot, a next hop
without 8BITMIME. Retry timers are short (queue_retry_min = 1s,
queue_poll = 1s). Every wait is bounded; every process is stopped by PID.
"""
import email
import quopri
import random
import re
import socket
import time

import pytest

from conftest import (BASE_OPTS, Postern, client_tls_context, crlf, make_message, skip_policy_fields,
                      _free_ports)
from dnsmasq import Dnsmasq
from smtpsink import SmtpSink, wait_until

ALICE, ALICE_PW = "alice@one.test", "alice-Secret-1"
BOB, BOB_PW = "bob@two.test", "bob-Secret-2"
BOB_BACKUP = "bob@backup.test"
WAIT = 30.0


def wait_for(pred, timeout=WAIT, what="condition"):
    return wait_until(pred, timeout, what)


def _ips(n):
    """n distinct random loopback addresses sharing one free TCP port."""
    for _ in range(50):
        ips = ["127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                                 random.randint(2, 254)) for _ in range(n)]
        if len(set(ips)) < n:
            continue
        port = _free_ports(ips[0], 1)[0]
        socks = []
        try:
            for ip in ips:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ip, port))
                socks.append(s)
            return ips, port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no common free port")


def make_instance(workdir, tls_pair, ip, port, hostname, **opts):
    """A Postern whose every listener is on ip, SMTP at port."""
    srv = Postern(workdir, tls_pair, hostname=hostname, **opts)
    srv.host = ip
    others = _free_ports(ip, 6)
    srv.ports = dict(zip(("submission", "submissions", "pop3", "pop3s", "imap", "imaps"), others))
    srv.ports["mx"] = port
    for role, key in (("mx", "smtp_listen"), ("submission", "submission_listen"),
                      ("submissions", "submissions_listen"), ("pop3", "pop3_listen"),
                      ("pop3s", "pop3s_listen"), ("imap", "imap_listen"),
                      ("imaps", "imaps_listen")):
        srv.opts[key] = "%s:%d" % (ip, srv.ports[role])
    with open(srv.conf, "w") as f:
        for k, v in srv.opts.items():
            f.write("%s = %s\n" % (k, v))
    return srv


class Sink(SmtpSink):
    """A scripted SMTP server. rcpt_replies[addr]: a list of replies given to
    RCPT for addr, one per attempt (the last one repeats); default 250.
    data_mode: a list of behaviours, one per DATA (the last one repeats):
    "ok", "cut" (close after part of the data), "hold" (wait for release
    before the reply). eightbit: offer 8BITMIME. Records every completed
    transaction as (mail_from_line, [rcpt], data bytes, replied)."""

    def __init__(self, ip, port):
        self.rcpt_replies = {}
        self.eightbit = True
        super().__init__(ip, port)

    def reset(self):
        with self.lock:
            self.rcpt_replies = {}
            self.data_mode = ["ok"]
            self.eightbit = True
            self.tx = []
            self.holding.clear()
            self.release.clear()

    def ehlo(self, cmd):
        ext = ["250-sink.test", "250-PIPELINING", "250-SIZE 10000000"]
        if self.eightbit:
            ext.append("250-8BITMIME")
        ext.append("250 ENHANCEDSTATUSCODES")
        return "\r\n".join(ext)

    def helo(self, cmd):
        return "250 sink.test"

    def mail_from(self, cmd):
        return cmd, "250 2.1.0 Ok"

    def rcpt(self, cmd):
        addr = re.search(r"<([^>]*)>", cmd).group(1)
        with self.lock:
            lst = self.rcpt_replies.get(addr)
            return addr, self._next(lst) if lst else "250 2.1.5 Ok"


@pytest.fixture(scope="module")
def net(tmp_path_factory, tls_pair):
    (a_ip, b_ip, sink_ip, dead_ip, r_ip), port = _ips(5)
    dns = Dnsmasq(tmp_path_factory.mktemp("dns"), [
        ("MX", "one.test", "mx.one.test", 10), ("A", "mx.one.test", a_ip),
        ("MX", "two.test", "mx.two.test", 10), ("A", "mx.two.test", b_ip),
        # the first exchanger is dead (nothing listens), the second is B
        ("MX", "backup.test", "dead.backup.test", 10), ("A", "dead.backup.test", dead_ip),
        ("MX", "backup.test", "mx.two.test", 20),
        ("MX", "sink.test", "mx.sink.test", 10), ("A", "mx.sink.test", sink_ip),
        ("NULLMX", "nullmx.test"),
        ("A", "relay.three.test", r_ip),
    ]).start()
    common = dict(dns_resolver=dns.server, outbound_port=port, queue_retry_min="1",
                  queue_retry_max="2", queue_poll="1", queue_lease="20",
                  outbound_connect_timeout="3", outbound_command_timeout="10",
                  outbound_data_timeout="10", queue_delay_warning="0")
    a = make_instance(tmp_path_factory.mktemp("a"), tls_pair, a_ip, port, "mx.one.test", **common)
    b = make_instance(tmp_path_factory.mktemp("b"), tls_pair, b_ip, port, "mx.two.test", **common)
    a.cli("domain", "add", "one.test")
    a.cli("user", "add", ALICE, input=ALICE_PW + "\n")
    b.cli("domain", "add", "two.test")
    b.cli("user", "add", BOB, input=BOB_PW + "\n")
    b.cli("domain", "add", "backup.test")
    b.cli("user", "add", BOB_BACKUP, input=BOB_PW + "\n")
    sink = Sink(sink_ip, port)
    a.start()
    b.start()
    n = type("Net", (), {})()
    n.a, n.b, n.sink, n.dns, n.port, n.ips = a, b, sink, dns, port, (a_ip, b_ip, sink_ip, r_ip)
    yield n
    for s in (a, b):
        try:
            s.stop()
        except AssertionError as e:
            print(e)
    sink.close()
    dns.stop()


def submit(srv, rcpts, msg, frm=ALICE, pw=ALICE_PW, params=""):
    with srv.authed(frm, pw) as c:
        r = c.mail(frm, rcpts, msg, mail_params=params)
        assert r.code == 250, r


def strip_trace(raw):
    """(Return-Path value, [Received fields], the rest) of a stored message."""
    rp = None
    if raw.startswith(b"Return-Path:"):
        eol = raw.index(b"\r\n")
        rp, raw = raw[len(b"Return-Path: "):eol], raw[eol + 2:]
    received = []
    # the fields sender authentication adds (Authentication-Results, ARC,
    # DKIM-Signature) sit among the trace fields
    raw = skip_policy_fields(raw)
    while raw.startswith(b"Received:"):
        pos = raw.index(b"\r\n") + 2
        while raw[pos:pos + 1] in (b" ", b"\t"):
            pos = raw.index(b"\r\n", pos) + 2
        received.append(raw[:pos])
        raw = skip_policy_fields(raw[pos:])
    return rp, received, raw


def queue_ids(srv):
    return sorted({int(l.split()[0]) for l in srv.queue()})


def delivery_lines(srv, rcpt):
    return [l for l in srv.log().splitlines() if "queue delivery" in l and "rcpt=%s" % rcpt in l]


def inbox(srv, user):
    return srv.messages(user)


def wait_queue_empty(srv, timeout=WAIT):
    wait_for(lambda: not srv.queue(), timeout, "the queue of %s to empty" % srv.host)


def imap_fetch_all(srv, user, pw):
    import imaplib
    m = imaplib.IMAP4_SSL(srv.host, srv.ports["imaps"], ssl_context=client_tls_context(),
                          timeout=15)
    try:
        m.login(user, pw)
        m.select("INBOX", readonly=True)
        typ, data = m.uid("SEARCH", None, "ALL")
        out = []
        for uid in data[0].split():
            typ, d = m.uid("FETCH", uid, "(BODY.PEEK[])")
            out.append(d[0][1])
        return out
    finally:
        m.logout()


# ---------------------------------------------------------------------------

def test_delivered_byte_exact_over_imap(net):
    a, b = net.a, net.b
    before = len(inbox(b, BOB))
    body = "Hello from one.test.\r\n.leading dot\r\n..two dots\r\n" + "x" * 900 + "\r\n"
    msg = make_message(ALICE, BOB, "byte exact", body)
    submit(a, [BOB], msg)
    wait_for(lambda: len(inbox(b, BOB)) == before + 1, what="delivery to B")
    got = imap_fetch_all(b, BOB, BOB_PW)[-1]
    rp, received, rest = strip_trace(got)
    assert rp == b"<alice@one.test>"
    # B's Received, then A's (A's own Return-Path is not sent on: RFC 5321 4.4)
    assert len(received) == 2, received
    assert b"by mx.two.test" in received[0] and b"by mx.one.test" in received[1]
    assert rest == msg
    wait_queue_empty(a)
    lines = delivery_lines(a, BOB)
    assert lines and "result=sent" in lines[-1], lines
    assert "mx=mx.two.test" in lines[-1] and "ip=%s" % net.ips[1] in lines[-1]
    assert "tls=TLS" in lines[-1], lines[-1]  # STARTTLS with outbound_tls = may


def test_local_and_remote_recipients_one_message(net):
    a, b = net.a, net.b
    before_b, before_a = len(inbox(b, BOB)), len(inbox(a, ALICE))
    msg = make_message(ALICE, BOB, "local and remote", "both\r\n")
    submit(a, [ALICE, BOB], msg)
    assert len(inbox(a, ALICE)) == before_a + 1  # local at once
    wait_for(lambda: len(inbox(b, BOB)) == before_b + 1, what="remote delivery")
    assert strip_trace(inbox(b, BOB)[-1])[2] == msg
    assert strip_trace(inbox(a, ALICE)[-1])[2] == msg
    wait_queue_empty(a)


def test_receiver_down_then_started(net):
    a, b = net.a, net.b
    b.stop()
    try:
        msg = make_message(ALICE, BOB, "while down", "queued\r\n")
        n0 = len(delivery_lines(a, BOB))
        submit(a, [BOB], msg)
        wait_for(lambda: any("result=deferred" in l for l in delivery_lines(a, BOB)[n0:]),
                 what="a deferred attempt")
        assert any(BOB in l for l in a.queue())
    finally:
        b.start()
    wait_for(lambda: any(strip_trace(m)[2] == msg for m in inbox(b, BOB)),
             what="delivery after B started")
    wait_queue_empty(a)


def test_4xx_for_one_recipient_only_that_one_retried(net):
    a, sink = net.a, net.sink
    sink.reset()
    sink.rcpt_replies["later@sink.test"] = ["451 4.3.0 try later", "250 2.1.5 Ok"]
    msg = make_message(ALICE, "now@sink.test", "one temp", "partial\r\n")
    submit(a, ["now@sink.test", "later@sink.test"], msg)
    wait_for(lambda: len(sink.tx) >= 2, what="the retry")
    wait_queue_empty(a)
    assert sink.tx[0][1] == ["now@sink.test"]
    assert sink.tx[1][1] == ["later@sink.test"], sink.tx
    assert len(sink.tx) == 2
    assert "result=deferred" in delivery_lines(a, "later@sink.test")[0]
    assert len(delivery_lines(a, "now@sink.test")) == 1


def find_dsn(srv, rcpt, before):
    def look():
        for m in inbox(srv, ALICE)[before:]:
            if b"multipart/report" in m and rcpt.encode() in m:
                return m
        return None
    return wait_for(look, what="a DSN about %s" % rcpt)


def dsn_status(raw):
    msg = email.message_from_bytes(strip_trace(raw)[2])
    assert msg.get_content_type() == "multipart/report"
    text = raw.decode("utf-8", "replace")
    return re.findall(r"Status: (\d\.\d+\.\d+)", text), re.findall(r"Action: (\w+)", text)


def test_5xx_bounces_to_the_sender(net):
    a, sink = net.a, net.sink
    sink.reset()
    sink.rcpt_replies["nobody@sink.test"] = ["550 5.1.1 no such user"]
    before = len(inbox(a, ALICE))
    submit(a, ["nobody@sink.test"], make_message(ALICE, "nobody@sink.test", "bounce me", "x\r\n"))
    dsn = find_dsn(a, "nobody@sink.test", before)
    status, action = dsn_status(dsn)
    assert status == ["5.1.1"] and action == ["failed"], (status, action)
    assert b"no such user" in dsn
    wait_queue_empty(a)
    assert "result=bounced" in delivery_lines(a, "nobody@sink.test")[-1]
    assert sink.tx == []


def test_connection_cut_mid_data_retried_delivered_once(net):
    a, sink = net.a, net.sink
    sink.reset()
    sink.data_mode = ["cut", "ok"]
    msg = make_message(ALICE, "cut@sink.test", "cut", "y" * 500 + "\r\n")
    submit(a, ["cut@sink.test"], msg)
    wait_for(lambda: len(sink.tx) >= 1, what="the retry after the cut")
    wait_queue_empty(a)
    time.sleep(1.5)
    assert len(sink.tx) == 1
    rest = strip_trace(sink.tx[0][2])[2]
    assert rest == msg
    lines = delivery_lines(a, "cut@sink.test")
    assert "result=deferred" in lines[0] and "result=sent" in lines[-1], lines


@pytest.mark.parametrize("rcpt,status", [("x@nowhere.test", "5.1.2"),
                                         ("x@nullmx.test", "5.1.10")])
def test_nxdomain_and_null_mx_bounce(net, rcpt, status):
    a = net.a
    before = len(inbox(a, ALICE))
    submit(a, [rcpt], make_message(ALICE, rcpt, "no such place", "z\r\n"))
    dsn = find_dsn(a, rcpt, before)
    st, action = dsn_status(dsn)
    assert st == [status] and action == ["failed"], (st, action)
    wait_queue_empty(a)
    lines = delivery_lines(a, rcpt)
    assert len(lines) == 1 and "result=bounced" in lines[0], lines


def test_first_mx_dead_second_used(net):
    a, b = net.a, net.b
    before = len(inbox(b, BOB_BACKUP))
    msg = make_message(ALICE, BOB_BACKUP, "backup mx", "via the second\r\n")
    submit(a, [BOB_BACKUP], msg)
    wait_for(lambda: len(inbox(b, BOB_BACKUP)) == before + 1, what="delivery via the 2nd MX")
    assert strip_trace(inbox(b, BOB_BACKUP)[-1])[2] == msg
    lines = delivery_lines(a, BOB_BACKUP)
    assert "result=sent" in lines[-1] and "mx=mx.two.test" in lines[-1], lines
    assert "dead.backup.test" in a.log()


def test_sigkill_during_delivery_delivered_after_restart(net):
    a, sink = net.a, net.sink
    sink.reset()
    sink.data_mode = ["hold", "ok"]
    msg = make_message(ALICE, "kill@sink.test", "killed", "survive\r\n")
    submit(a, ["kill@sink.test"], msg)
    assert sink.holding.wait(WAIT), "the delivery never reached the final dot"
    a.kill()
    sink.release.set()
    a.start()
    # leases of this node are released at start: tried again at once
    wait_for(lambda: any(strip_trace(t[2])[2] == msg for t in sink.tx[1:]) or
             (len(sink.tx) >= 1 and not a.queue()), what="delivery after the restart")
    wait_queue_empty(a)
    assert any(strip_trace(t[2])[2] == msg for t in sink.tx)


def test_next_hop_without_8bitmime_gets_quoted_printable(net):
    a, sink = net.a, net.sink
    sink.reset()
    sink.eightbit = False
    body = "Grüße aus Köln — naïve café\r\n"
    msg = ("From: <%s>\r\nTo: <eight@sink.test>\r\nSubject: 8bit\r\n"
           "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <8bit.%d@one.test>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n%s" % (ALICE, random.getrandbits(40), body))
    with a.authed(ALICE, ALICE_PW) as c:
        r = c.cmd("MAIL FROM:<%s> BODY=8BITMIME" % ALICE)
        assert r.code == 250, r
        assert c.cmd("RCPT TO:<eight@sink.test>").code == 250
        r = c.data(msg.encode("utf-8"))
        assert r.code == 250, r
    wait_for(lambda: sink.tx, what="delivery to the 7-bit hop")
    wait_queue_empty(a)
    mail, rcpts, data = sink.tx[0]
    assert "BODY=8BITMIME" not in mail.upper()
    assert all(b < 0x80 for b in data), "8-bit octets sent raw"
    parsed = email.message_from_bytes(strip_trace(data)[2])
    assert parsed["Content-Transfer-Encoding"].lower() == "quoted-printable"
    assert quopri.decodestring(parsed.get_payload().encode()) == body.encode("utf-8")


def test_queue_cli(net):
    a, b = net.a, net.b
    b.stop()
    try:
        before = set(queue_ids(a))
        submit(a, [BOB], make_message(ALICE, BOB, "cli", "held\r\n"))
        new = wait_for(lambda: set(queue_ids(a)) - before, what="the queue entry")
        qid = str(new.pop())
        assert a.cli("queue", "hold", qid).stdout == b"1 entries held\n"
        show = a.cli_out("queue", "show", qid)
        assert BOB in show and " held" in show and "size=" in show, show
        r = a.cli("queue", "show", "999999", check=False)
        assert r.returncode == 1 and b"no queue entry" in r.stderr
        assert a.cli("queue", "show", "abc", check=False).returncode == 2
        lines_before = len(delivery_lines(a, BOB))
        time.sleep(3)  # held: not tried although due (queue_poll = 1)
        assert len(delivery_lines(a, BOB)) == lines_before
        assert a.cli("queue", "release", qid).stdout == b"1 entries released\n"
        wait_for(lambda: len(delivery_lines(a, BOB)) > lines_before, what="an attempt")
        assert a.cli("queue", "retry", qid).returncode == 0
        assert a.cli("queue", "flush").returncode == 0
        assert a.cli("queue", "delete", qid).stdout == b"1 entries deleted\n"
        assert qid not in [str(i) for i in queue_ids(a)]
        r = a.cli("queue", "delete", qid, check=False)
        assert r.returncode == 1
    finally:
        b.start()


def test_relayhost_with_auth_over_starttls(net, tmp_path_factory, tls_pair):
    """A sender whose relayhost is R's submission port (STARTTLS + AUTH): mail
    for three.test goes through R, not through DNS (three.test has no MX)."""
    r_ip = net.ips[3]
    r = make_instance(tmp_path_factory.mktemp("relay"), tls_pair, r_ip, net.port,
                      "relay.three.test", dns_resolver=net.dns.server,
                      outbound_port=net.port)
    r.cli("domain", "add", "three.test")
    r.cli("user", "add", "carol@three.test", input="carol-Secret-3\n")
    r.cli("domain", "add", "one.test")
    r.cli("user", "add", ALICE, input=ALICE_PW + "\n")
    r.start()
    s_ip = _ips(1)[0][0]
    s = make_instance(tmp_path_factory.mktemp("sender"), tls_pair, s_ip,
                      _free_ports(s_ip, 1)[0], "mx2.one.test", dns_resolver=net.dns.server,
                      queue_retry_min="1", queue_poll="1",
                      relayhost="%s:%d" % (r_ip, r.ports["submission"]),
                      relayhost_tls="starttls", relayhost_tls_verify="no",
                      relayhost_user=ALICE, relayhost_password=ALICE_PW)
    s.cli("domain", "add", "one.test")
    s.cli("user", "add", ALICE, input=ALICE_PW + "\n")
    s.start()
    try:
        msg = make_message(ALICE, "carol@three.test", "via relay", "smarthost\r\n")
        submit(s, ["carol@three.test"], msg)
        wait_for(lambda: r.messages("carol@three.test"), what="delivery through the relay")
        got = r.messages("carol@three.test")[-1]
        assert strip_trace(got)[2] == msg
        assert b"with ESMTPSA" in got  # authenticated, over TLS
        wait_queue_empty(s)
        line = delivery_lines(s, "carol@three.test")[-1]
        assert "result=sent" in line and "ip=%s" % r_ip in line, line
        assert ALICE_PW not in s.log()
    finally:
        s.stop()
        r.stop()


def test_delay_notice_then_expiry_bounce(net, tmp_path_factory, tls_pair):
    """A recipient that keeps getting 4xx: one "delayed" DSN after
    queue_delay_warning, then, past queue_lifetime, a failed DSN (4.4.7)."""
    sink = net.sink
    sink.reset()
    sink.rcpt_replies["slow@sink.test"] = ["451 4.7.1 greylisted"]
    ip = _ips(1)[0][0]
    s = make_instance(tmp_path_factory.mktemp("expiry"), tls_pair, ip, _free_ports(ip, 1)[0],
                      "mx3.one.test", dns_resolver=net.dns.server, outbound_port=net.port,
                      queue_retry_min="1", queue_retry_max="1", queue_poll="1",
                      queue_delay_warning="2", queue_lifetime="6")
    s.cli("domain", "add", "one.test")
    s.cli("user", "add", ALICE, input=ALICE_PW + "\n")
    s.start()
    try:
        submit(s, ["slow@sink.test"], make_message(ALICE, "slow@sink.test", "slow", "w\r\n"))
        wait_queue_empty(s, timeout=40)
        dsns = [m for m in inbox(s, ALICE) if b"multipart/report" in m]
        actions = sorted(a for m in dsns for a in dsn_status(m)[1])
        assert actions == ["delayed", "failed"], actions
        failed = [m for m in dsns if b"Action: failed" in m][0]
        assert dsn_status(failed)[0] == ["4.4.7"]
        lines = delivery_lines(s, "slow@sink.test")
        assert "result=expired" in lines[-1] and all("result=deferred" in l for l in lines[:-1])
        assert sink.tx == []
    finally:
        s.stop()


def test_notify_success_to_a_hop_without_dsn(net):
    """RFC 3461 4.1: NOTIFY=SUCCESS, and the next hop (the sink offers no DSN)
    cannot report it: the sender gets a success DSN saying "relayed"."""
    a, sink = net.a, net.sink
    sink.reset()
    before = len(inbox(a, ALICE))
    msg = make_message(ALICE, "notify@sink.test", "notify success", "tell me\r\n")
    with a.authed(ALICE, ALICE_PW) as c:
        assert c.cmd("MAIL FROM:<%s> ENVID=env42" % ALICE).code == 250
        assert c.cmd("RCPT TO:<notify@sink.test> NOTIFY=SUCCESS").code == 250
        assert c.data(msg).code == 250
    dsn = find_dsn(a, "notify@sink.test", before)
    status, action = dsn_status(dsn)
    assert action == ["relayed"], action
    wait_queue_empty(a)
    assert len(sink.tx) == 1 and "NOTIFY" not in sink.tx[0][0]
