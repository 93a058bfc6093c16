"""Delivery status notifications (RFC 3464, RFC 3461).

Through the real daemon (the queue relays to a scripted next hop given as
relayhost, which answers 550 / 451 / 250 per recipient):
  a 5xx bounces into the local sender's INBOX (ORCPT, ENVID, headers only);
  RET=FULL returns the whole message; NOTIFY=NEVER sends nothing;
  NOTIFY=SUCCESS to a next hop without DSN gives "relayed"; a remote sender's
  DSN is queued back out from <>; a 4xx past queue_delay_warning gives a
  "delayed" notice.

test_builder_output_parses: every DSN the builder's unit test makes
(tests/unit/dsn, written out with DSN_SAMPLE_DIR) read back with Python's
email package: multipart/report; report-type=delivery-status, the three
parts in order, the delivery-status fields, no parser defects, lines of at
most 998 octets, CRLF only.
"""
import email
import email.utils
import os
import subprocess

import pytest

from conftest import POSTERN, ROOT, _new_server, make_message
from smtpsink import SmtpSink, wait_until

ACTIONS = {"failed", "delayed", "delivered", "relayed"}
SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}


def _test_dsn_bin():
    for c in (os.path.join(os.path.dirname(POSTERN), "test_dsn"),
              os.path.join(ROOT, "build", "test_dsn")):
        if os.path.exists(c):
            return c
    pytest.fail("test_dsn binary missing: run `make unit` first")


def _all_defects(msg):
    out = list(msg.defects)
    if msg.is_multipart():
        for part in msg.get_payload():
            out += _all_defects(part)
    return out


def check_dsn(raw, name):
    """Checks the structure of one DSN; returns the parsed message."""
    assert raw.endswith(b"\r\n"), name
    body = raw[:-2]
    assert b"\n" not in body.replace(b"\r\n", b""), f"{name}: bare LF"
    assert b"\r" not in body.replace(b"\r\n", b""), f"{name}: bare CR"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998, f"{name}: line of {len(line)} octets"

    msg = email.message_from_bytes(raw)
    assert _all_defects(msg) == [], name
    assert msg.get_content_type() == "multipart/report", name
    assert msg.get_param("report-type") == "delivery-status", name
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == "auto-replied"  # RFC 3834 5
    assert email.utils.parseaddr(msg["From"])[1].startswith("MAILER-DAEMON@")
    assert email.utils.parsedate_to_datetime(msg["Date"]) is not None
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith(">")
    boundary = msg.get_boundary()
    assert boundary and len(boundary) <= 70  # RFC 2046 5.1.1

    parts = msg.get_payload()
    assert len(parts) == 3, name
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() in ("text/rfc822-headers", "message/rfc822")
    text = parts[0].get_payload()
    assert "This is the mail system at host" in text

    # RFC 3464 2.1: per-message fields, then one group per recipient
    groups = parts[1].get_payload()
    assert len(groups) >= 2, name
    per_msg = groups[0]
    assert per_msg["Reporting-MTA"].startswith("dns; ")
    actions = []
    for g in groups[1:]:
        assert g["Final-Recipient"].startswith("rfc822; "), name
        assert g["Action"] in ACTIONS, name
        status = g["Status"]
        assert status[0] in "245" and status.count(".") == 2, name
        assert {"failed": "5", "delayed": "4"}.get(g["Action"], "2") == status[0] or \
            g["Action"] in ("failed", "delayed")
        if g["Action"] == "delayed" and g["Will-Retry-Until"]:
            assert email.utils.parsedate_to_datetime(g["Will-Retry-Until"]) is not None
        if g["Last-Attempt-Date"]:
            assert email.utils.parsedate_to_datetime(g["Last-Attempt-Date"]) is not None
        if g["Diagnostic-Code"]:
            assert g["Diagnostic-Code"].split(";")[0] in ("smtp", "X-Postern")
        # the recipient is named in the words too
        assert "<" + g["Final-Recipient"][len("rfc822; "):].replace("\r\n", "") \
            .split()[0] in text.replace("\r\n", " ") or len(g["Final-Recipient"]) > 70
        actions.append(g["Action"])
    kind = "failed" if "failed" in actions else "delayed" if "delayed" in actions \
        else "delivered"
    assert msg["Subject"] == SUBJECTS[kind], name

    if parts[2].get_content_type() == "message/rfc822":
        inner = parts[2].get_payload()
        assert len(inner) == 1 and isinstance(inner[0], email.message.Message)
    return msg


def test_builder_output_parses(tmp_path):
    bin_ = _test_dsn_bin()
    r = subprocess.run([bin_], env=dict(os.environ, DSN_SAMPLE_DIR=str(tmp_path)),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    files = sorted(tmp_path.glob("case-*.eml"))
    assert len(files) >= 15
    seen_types = set()
    for f in files:
        msg = check_dsn(f.read_bytes(), f.name)
        seen_types.add(msg.get_payload()[2].get_content_type())
    assert seen_types == {"text/rfc822-headers", "message/rfc822"}

    # the exact case (case-0): ORCPT and ENVID decoded from xtext
    msg = email.message_from_bytes((tmp_path / "case-0.eml").read_bytes())
    groups = msg.get_payload()[1].get_payload()
    assert groups[0]["Original-Envelope-Id"] == "ENV+1"
    assert groups[2]["Original-Recipient"] == "rfc822;Carol+x@example.net"
    assert [g["Action"] for g in groups[1:]] == ["failed", "delayed"]
    assert groups[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: no such user"


# ---------------------------------------------------------------------------
# Through the daemon
# ---------------------------------------------------------------------------
WAIT = 40.0  # bounded waits: a few queue polls and retries


class NextHop(SmtpSink):
    """A scripted SMTP server on 127.0.0.1 (no DSN extension): RCPT bad* gets
    550 5.1.1, slow* gets 451 4.3.0, anything else 250. Every accepted
    transaction is kept in self.tx as (mail_from, [rcpts], data bytes)."""

    greeting = "220 nexthop.test ESMTP"
    accept_timeout = 0.5
    session_timeout = 30
    encoding = ("utf-8", "replace")
    data_ok = "250 2.0.0 queued as X"
    rset_ok = "250 2.0.0 ok"
    quit_ok = "221 2.0.0 bye"

    def ehlo(self, cmd):
        return "250-nexthop.test\r\n250 8BITMIME"

    helo = ehlo

    def mail_from(self, cmd):
        return cmd[10:].split(">")[0].lstrip(" <"), "250 2.1.0 ok"

    def rcpt(self, cmd):
        addr = cmd[8:].split(">")[0].lstrip(" <")
        local = addr.split("@")[0]
        if local.startswith("bad"):
            return addr, "550 5.1.1 <%s>: Recipient address rejected: no such user" % addr
        if local.startswith("slow"):
            return addr, "451 4.3.0 <%s>: try again later" % addr
        return addr, "250 2.1.5 ok"

    def received(self):
        with self.lock:
            return list(self.tx)


@pytest.fixture(scope="module")
def next_hop():
    h = NextHop()
    yield h
    h.close()


def _relay_opts(next_hop, **opts):
    o = dict(relayhost="127.0.0.1:%d" % next_hop.port, relayhost_tls="none",
             relayhost_tls_verify="no", queue_retry_min=1, queue_poll=1)
    o.update(opts)
    return o


@pytest.fixture(scope="module")
def relay(tmp_path_factory, tls_pair, next_hop):
    """One daemon for the tests that need no option of their own."""
    srv = _new_server(tmp_path_factory, tls_pair, "relay", **_relay_opts(next_hop))
    srv.cli("alias", "add", "fwd@example.test", "badfwd@remote.example")
    yield srv
    srv.stop()


def _submit(srv, rcpts, subject, mail_params="", body="Hello there.\r\n"):
    """alice submits one message; rcpts: [(addr, rcpt params)]."""
    msg = make_message("alice@example.test", ", ".join(a for a, _ in rcpts), subject, body)
    with srv.authed() as c:
        r = c.cmd("MAIL FROM:<alice@example.test>" + (" " + mail_params if mail_params else ""))
        assert r.code == 250, r
        for addr, params in rcpts:
            r = c.cmd("RCPT TO:<%s>%s" % (addr, (" " + params) if params else ""))
            assert r.code == 250, (addr, r)
        r = c.data(msg)
        assert r.code == 250, r
    return msg


def _wait(cond, what, timeout=WAIT):
    return wait_until(cond, timeout, what)


def _inbox_dsn(srv, n):
    """Waits until alice has n messages; returns the n-th, parsed, and raw
    (after checking that it is a DSN stored with Return-Path: <>)."""
    _wait(lambda: srv.count("alice@example.test") >= n, "DSN number %d in alice's INBOX" % n)
    raw = srv.messages("alice@example.test")[n - 1]
    assert raw.startswith(b"Return-Path: <>\r\n")
    return check_dsn(raw[len(b"Return-Path: <>\r\n"):], "inbox dsn %d" % n), raw


def _groups(msg):
    return msg.get_payload()[1].get_payload()


def test_bounce_to_local_sender(relay, next_hop):
    srv = relay
    n = srv.count("alice@example.test") + 1
    _submit(srv, [("bad1@remote.example", "NOTIFY=FAILURE ORCPT=rfc822;bad1+2Bx@remote.example"),
                  ("good1@remote.example", "")],
            "first", mail_params="ENVID=env+2B42 RET=HDRS")
    msg, raw = _inbox_dsn(srv, n)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["To"] == "<alice@example.test>"
    assert email.utils.parseaddr(msg["From"])[1] == "MAILER-DAEMON@mx.example.test"
    g = _groups(msg)
    assert g[0]["Reporting-MTA"] == "dns; mx.example.test"
    assert g[0]["Original-Envelope-Id"] == "env+42"  # RFC 3461 4.4: xtext decoded
    assert len(g) == 2  # only the failed recipient
    assert g[1]["Original-Recipient"] == "rfc822;bad1+x@remote.example"
    assert g[1]["Final-Recipient"] == "rfc822; bad1@remote.example"
    assert g[1]["Action"] == "failed"
    assert g[1]["Status"] == "5.1.1"
    assert g[1]["Remote-MTA"].startswith("dns; ")
    diag = g[1]["Diagnostic-Code"].replace("\r\n", "")
    assert diag == "smtp; 550 5.1.1 <bad1@remote.example>: Recipient address rejected: no such user"
    part3 = msg.get_payload()[2]
    assert part3.get_content_type() == "text/rfc822-headers"
    assert b"Subject: first\r\n" in raw and b"Hello there." not in raw
    assert b"good1@remote.example>: " not in raw  # the delivered one is not listed
    # the good recipient got the message from the queue
    assert any(r == ["good1@remote.example"] for _, r, _ in next_hop.received())
    assert "queue dsn sent" in srv.log() and "kind=failed" in srv.log()
    assert srv.count("alice@example.test") == n


def test_ret_full_and_notify_never(relay, next_hop):
    srv = relay
    n = srv.count("alice@example.test") + 1
    # NOTIFY=NEVER: no DSN for this one (RFC 3461 4.1)
    _submit(srv, [("bad2@remote.example", "NOTIFY=NEVER")], "never")
    _wait(lambda: "rcpt=bad2@remote.example" in srv.log(), "the bad2 attempt")
    _wait(lambda: srv.queue() == [], "an empty queue")
    # RET=FULL: the whole message comes back as message/rfc822
    body = "Line one.\r\n.starts with a dot\r\n" + "x" * 500 + "\r\n"
    sent = _submit(srv, [("bad3@remote.example", "")], "full", mail_params="RET=FULL", body=body)
    msg, raw = _inbox_dsn(srv, n)
    assert srv.count("alice@example.test") == n  # nothing for bad2
    part3 = msg.get_payload()[2]
    assert part3.get_content_type() == "message/rfc822"
    inner = part3.get_payload()[0]
    assert inner["Subject"] == "full"
    assert sent.split(b"\r\n\r\n", 1)[1] in raw  # the body, byte for byte
    assert [g["Final-Recipient"] for g in _groups(msg)[1:]] == ["rfc822; bad3@remote.example"]


def test_success_relayed(relay, next_hop):
    srv = relay
    n = srv.count("alice@example.test") + 1
    _submit(srv, [("good2@remote.example", "NOTIFY=SUCCESS,FAILURE")], "success")
    msg, _ = _inbox_dsn(srv, n)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    g = _groups(msg)
    # RFC 3461 4.1 / RFC 3464 2.3.3: the next hop offers no DSN: "relayed"
    assert g[1]["Action"] == "relayed"
    assert g[1]["Status"].startswith("2.")


def test_remote_sender_dsn_goes_out_from_null(relay, next_hop):
    srv = relay
    msg = make_message("ext@far.example", "fwd@example.test", "via alias", "Hi.\r\n")
    with srv.client("mx") as c:
        c.ehlo()
        r = c.mail("ext@far.example", ["fwd@example.test"], msg)
        assert r.code == 250, r

    def dsn_out():
        return [t for t in next_hop.received() if t[0] == "" and t[1] == ["ext@far.example"]]
    got = _wait(dsn_out, "the DSN at the next hop")
    dsn = check_dsn(got[0][2], "outbound dsn")
    g = _groups(dsn)
    assert g[1]["Final-Recipient"] == "rfc822; badfwd@remote.example"
    assert g[1]["Action"] == "failed"
    assert dsn["To"] == "<ext@far.example>"
    # stored with Return-Path: <>, which is not sent on (RFC 5321 4.4)
    assert not got[0][2].startswith(b"Return-Path:")


def test_delayed_notice(make_server, next_hop):
    srv = make_server(**_relay_opts(next_hop, queue_delay_warning=1))
    _submit(srv, [("slow1@remote.example", "")], "slow")
    msg, _ = _inbox_dsn(srv, 1)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    g = _groups(msg)
    assert g[1]["Action"] == "delayed"
    assert g[1]["Status"] == "4.3.0"
    assert email.utils.parsedate_to_datetime(g[1]["Will-Retry-Until"]) is not None
    assert "slow1@remote.example" in "".join(srv.queue())  # still queued
    # once only (queue_delay_warning): a few more retries, still one notice
    _wait(lambda: srv.log().count("rcpt=slow1@remote.example") >= 3, "more attempts")
    assert srv.count("alice@example.test") == 1


class SmallHop(NextHop):
    """A next hop that announces SIZE 2000 (RFC 1870): a bigger message is
    refused by our client before MAIL FROM, a verdict of ours, not its reply."""

    def ehlo(self, cmd):
        return "250-nexthop.test\r\n250-8BITMIME\r\n250 SIZE 2000"

    helo = ehlo


def test_local_verdict_not_smtp_diagnostic(make_server):
    """RFC 3464 2.3.6: Diagnostic-Code "smtp;" carries what the remote MTA
    said; our own 5.3.4 (over the next hop's SIZE) after connecting names
    the Remote-MTA but its text goes under our own type, X-Postern."""
    hop = SmallHop()
    try:
        srv = make_server(**_relay_opts(hop))
        _submit(srv, [("big1@remote.example", "")], "big", body="x" * 70 + "\r\n" * 1 + ("y" * 70 + "\r\n") * 60)
        msg, raw = _inbox_dsn(srv, 1)
        g = _groups(msg)
        assert g[1]["Action"] == "failed"
        assert g[1]["Status"] == "5.3.4"
        assert g[1]["Remote-MTA"].startswith("dns; ")
        assert g[1]["Diagnostic-Code"].startswith("X-Postern; ")
        assert b"smtp;" not in raw
        assert hop.received() == []
    finally:
        hop.close()
