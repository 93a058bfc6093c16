"""The filter's orchestration through the real daemon (src/filter/filter.c,
wired into src/smtp): the spam score from policy's signals (SPF fail, DMARC
fail not enforced: a dnsmasq serves the zones), the X-Spam-Status /
X-Spam-Report fields and their folding, junk and reject thresholds per
domain and user set with `postern spam threshold` deciding where mail lands
(Junk or INBOX) per recipient, the reject score (550 5.7.1, nothing stored);
and the waits: a RCPT waiting for the DNS blocklists (dnsbl_action =
enforce, one zone served by a server that never answers) with pipelined
RCPTs behind it, a client leaving while it waits, SIGTERM meanwhile."""

import re
import socket
import time

import pytest

from conftest import make_message, split_prepended, unfold
from dnsmasq import Dnsmasq

ALICE = "alice@example.test"
BOB = "bob@example.test"

RECORDS = [
    # the envelope's domain: SPF fail for every client
    ("TXT", "spffail.test", "v=spf1 -all"),
    # the From: domain: p=none, so policy does not enforce the DMARC fail
    ("TXT", "_dmarc.none.test", "v=DMARC1; p=none"),
    # a From: domain whose policy quarantines: policy sends the message to Junk
    ("TXT", "_dmarc.quar.test", "v=DMARC1; p=quarantine"),
    # a DNS blocklist listing the client 127.0.0.2
    ("A", "2.0.0.127.bl.test", "127.0.0.2"),
]

# SPF_FAIL 1.5 + DMARC_FAIL 2.0 (filter.c auth_rules)
SPAM_SCORE = 3.5


@pytest.fixture(scope="module")
def dns(tmp_path_factory, blackhole):
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"), RECORDS,
                extra=["server=/slow.test/%s#%d" % (blackhole.host, blackhole.port)])
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def mx(tmp_path_factory, tls_pair, dns):
    from conftest import _new_server
    srv = _new_server(tmp_path_factory, tls_pair, "filter", dns_resolver=dns.server,
                      dns_timeout_ms=400, dns_tries=1)
    yield srv
    srv.stop()


def send(srv, rcpts, subject, mail_from="bounce@spffail.test", frm="news@none.test"):
    """One message from a (forged) sender; returns the reply to the end of data."""
    msg = make_message(frm, ", ".join(rcpts), subject, "Cheap offers, today only.\r\n")
    with srv.client() as c:
        c.ehlo("client.spffail.test")
        return c.mail(mail_from, rcpts, msg)


def find(srv, user, subject):
    """(mailbox, stored bytes) of the message with that subject, or (None, None)."""
    for box in ("INBOX", "Junk"):
        try:
            msgs = srv.messages(user, None if box == "INBOX" else box)
        except AssertionError:
            continue  # no Junk mailbox yet
        for m in msgs:
            if ("Subject: " + subject).encode() in m:
                return box, m
    return None, None


def spam_fields(stored):
    """{name: raw field bytes (folded as stored)} of the X-Spam-* fields."""
    out = {}
    for m in re.finditer(rb"(?m)^(X-Spam-[A-Za-z]+):.*\r\n(?:[ \t].*\r\n)*", stored):
        out[m.group(1).decode()] = m.group(0)
    return out


def report_items(field):
    """[(score, rule)] of an X-Spam-Report field."""
    return [(float(s), r) for s, r in re.findall(rb"\r\n\t\* (-?\d+\.\d) ([A-Z0-9_]+)", field)]


def cli_threshold(srv, *args):
    return srv.cli_out("spam", "threshold", *args)


def clear_thresholds(srv):
    for line in cli_threshold(srv).splitlines()[1:]:
        cli_threshold(srv, line.split()[0], "clear")


# ---------------------------------------------------------------- score, fields


def test_spam_fields_folded_and_placed(mx):
    clear_thresholds(mx)
    r = send(mx, [ALICE], "fields one")
    assert r.code == 250, r
    box, stored = find(mx, ALICE, "fields one")
    assert box == "INBOX"  # 3.5 < 5.0 (spam_junk_score)
    # after Return-Path and the policy's fields, before Received
    split_prepended(stored)
    head = stored.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    f = spam_fields(head)
    assert set(f) == {"X-Spam-Status", "X-Spam-Report"}, f
    assert f["X-Spam-Status"] == b"X-Spam-Status: No, score=3.5 required=5.0\r\n"
    rep = f["X-Spam-Report"]
    assert rep.startswith(b"X-Spam-Report: score=3.5 required=5.0\r\n\t* "), rep
    items = report_items(rep)
    assert (2.0, b"DMARC_FAIL") in items and (1.5, b"SPF_FAIL") in items, items
    # largest weight first; the status's score is their sum
    weights = [abs(s) for s, _ in items]
    assert weights == sorted(weights, reverse=True), items
    assert abs(sum(s for s, _ in items) - SPAM_SCORE) < 0.05, items
    # RFC 5322 2.2.3 folding: every line within 78 columns, continuation
    # lines begin with WSP, no empty line inside the field
    lines = rep[:-2].split(b"\r\n")
    for i, line in enumerate(lines):
        assert len(line.expandtabs(8)) <= 78, line
        assert line.strip() != b""
        if i > 0:
            assert line[:1] in (b" ", b"\t"), line
    # the words of each reason are there, whole
    flat = unfold(rep)
    assert b"SPF_FAIL the sender's domain does not allow this client to send its mail" in flat
    # one log line per message
    log = mx.log()
    assert re.search(r"filter id=\w+ score=3\.5 action=accept reasons=[A-Z_,]*SPF_FAIL", log), log[-3000:]


def test_clean_mail_score_zero(mx):
    clear_thresholds(mx)
    msg = make_message("friend@other.test", ALICE, "clean one", "Hello.\r\n")
    with mx.client() as c:
        c.ehlo()
        r = c.mail("friend@other.test", [ALICE], msg)
    assert r.code == 250, r
    box, stored = find(mx, ALICE, "clean one")
    assert box == "INBOX"
    f = spam_fields(stored)
    assert f["X-Spam-Status"].startswith(b"X-Spam-Status: No, score="), f


# ------------------------------------------------------------------ thresholds


def test_threshold_cli(mx):
    clear_thresholds(mx)
    out = cli_threshold(mx)
    assert out.splitlines() == ["(options) junk=5.0 reject=15.0"], out
    assert cli_threshold(mx, "example.test", "junk=3").strip() == "example.test junk=3.0 reject=-"
    assert cli_threshold(mx, "example.test", "reject=20.5").strip() == \
        "example.test junk=3.0 reject=20.5"
    assert cli_threshold(mx, "Alice@Example.test", "junk=9").strip() == \
        "Alice@Example.test junk=9.0 reject=-"
    out = cli_threshold(mx).splitlines()
    assert out[1:] == ["Alice@Example.test junk=9.0 reject=-",
                       "example.test junk=3.0 reject=20.5"], out
    assert cli_threshold(mx, "example.test", "junk=default").strip() == \
        "example.test junk=- reject=20.5"
    assert "cleared" in cli_threshold(mx, "example.test", "clear")
    assert cli_threshold(mx, "example.test").strip() == "example.test junk=- reject=- (inherited)"
    # bad input: usage (exit 2), nothing written
    for bad in (["example.test", "junk=abc"], ["example.test", "spam=3"],
                ["example.test", "junk=1", "junk=2"]):
        p = mx.cli("spam", "threshold", *bad, check=False)
        assert p.returncode == 2, (bad, p)
    clear_thresholds(mx)
    assert cli_threshold(mx).splitlines()[1:] == []


def test_threshold_domain_then_user_decides_junk(mx):
    clear_thresholds(mx)
    # the domain's junk score below the message's: Junk
    cli_threshold(mx, "example.test", "junk=3")
    assert send(mx, [ALICE], "domain junk").code == 250
    box, stored = find(mx, ALICE, "domain junk")
    assert box == "Junk"
    assert spam_fields(stored)["X-Spam-Status"] == \
        b"X-Spam-Status: Yes, score=3.5 required=3.0\r\n"
    # the user's own overrides the domain's: INBOX again
    cli_threshold(mx, ALICE, "junk=4")
    assert send(mx, [ALICE], "user inbox").code == 250
    assert find(mx, ALICE, "user inbox")[0] == "INBOX"
    # cleared: the options (5.0) decide
    clear_thresholds(mx)
    assert send(mx, [ALICE], "options inbox").code == 250
    assert find(mx, ALICE, "options inbox")[0] == "INBOX"
    assert re.search(r"filter id=\w+ score=3\.5 action=junk ", mx.log())


def test_per_recipient_junk(mx):
    clear_thresholds(mx)
    cli_threshold(mx, BOB, "junk=2")
    r = send(mx, [ALICE, BOB], "two recipients")
    assert r.code == 250, r
    assert find(mx, ALICE, "two recipients")[0] == "INBOX"
    assert find(mx, BOB, "two recipients")[0] == "Junk"
    # the other way round: the first recipient's verdict is in the fields
    clear_thresholds(mx)
    cli_threshold(mx, ALICE, "junk=2")
    assert send(mx, [ALICE, BOB], "two recipients b").code == 250
    box, stored = find(mx, ALICE, "two recipients b")
    assert box == "Junk"
    assert spam_fields(stored)["X-Spam-Status"].startswith(b"X-Spam-Status: Yes, score=3.5 ")
    assert find(mx, BOB, "two recipients b")[0] == "INBOX"
    clear_thresholds(mx)


def test_reject_score(mx):
    clear_thresholds(mx)
    # every recipient's reject score reached: refused, nothing stored
    cli_threshold(mx, "example.test", "reject=3")
    before = (len(mx.mail_list(ALICE)), len(mx.mail_list(BOB)))
    r = send(mx, [ALICE, BOB], "rejected")
    assert r.code == 550 and r.lines[0].startswith("5.7.1 "), r
    assert "spam" in r.lines[0]
    assert (len(mx.mail_list(ALICE)), len(mx.mail_list(BOB))) == before
    assert find(mx, ALICE, "rejected") == (None, None)
    assert re.search(r"filter id=\w+ score=3\.5 action=reject ", mx.log())
    # one recipient would take it: accepted; the other's copy goes to Junk
    cli_threshold(mx, BOB, "reject=50")
    r = send(mx, [ALICE, BOB], "half rejected")
    assert r.code == 250, r
    assert find(mx, ALICE, "half rejected")[0] == "Junk"
    assert find(mx, BOB, "half rejected")[0] == "INBOX"
    clear_thresholds(mx)


def test_dmarc_quarantine_not_counted_twice(mx):
    # The From: domain's p=quarantine already sent the message to Junk: its
    # DMARC fail is named in the report but not scored again, so it cannot
    # tip the message over the reject score (SPF_FAIL 1.5 alone stays under
    # 3; with DMARC_FAIL's 2.0 it would be 3.5 and refused).
    clear_thresholds(mx)
    cli_threshold(mx, "example.test", "reject=3")
    try:
        r = send(mx, [ALICE], "quarantined by policy", frm="news@quar.test")
        assert r.code == 250, r
        box, stored = find(mx, ALICE, "quarantined by policy")
        assert box == "Junk"
        items = report_items(spam_fields(stored)["X-Spam-Report"])
        assert (0.0, b"DMARC_FAIL") in items and (1.5, b"SPF_FAIL") in items, items
        # in Junk, so the fields and the log say spam, whatever the score
        assert spam_fields(stored)["X-Spam-Status"] == \
            b"X-Spam-Status: Yes, score=1.5 required=5.0\r\n"
        assert re.search(r"filter id=\w+ score=1\.5 action=junk reasons=", mx.log())
        assert b"dmarc=fail" in stored.split(b"\r\n\r\n", 1)[0]
        # p=none: the policy did not decide, the fail counts (3.5: refused)
        r = send(mx, [ALICE], "not quarantined", frm="news@none.test")
        assert r.code == 550, r
    finally:
        clear_thresholds(mx)


def test_submission_not_scored(mx):
    clear_thresholds(mx)
    cli_threshold(mx, "example.test", "junk=-10", "reject=-5")
    try:
        c = mx.authed(ALICE)
        msg = make_message(ALICE, BOB, "from a user", "Hi Bob.\r\n")
        r = c.mail(ALICE, [BOB], msg)
        c.close()
        assert r.code == 250, r
        box, stored = find(mx, BOB, "from a user")
        assert box == "INBOX"
        assert b"X-Spam-" not in stored.split(b"\r\n\r\n", 1)[0]
    finally:
        clear_thresholds(mx)


FORGED = [
    "X-Spam-Status: No, score=-20.0 required=5.0",
    "X-Spam-Report: score=-20.0 required=5.0\r\n\t* -20.0 FORGED_TRUST the sender vouches for itself",
    "x-spam-status : No",   # RFC 5322 4.5.8: WSP before the colon, any case
    "X-Spam-Statusbar: kept",  # another field
    "X-Spam-Level: kept",
]


def test_forged_spam_fields_removed(mx):
    """A sender's own X-Spam-Status / X-Spam-Report fields are removed on the
    MX listener: the stored message carries postern's verdict only, and
    `postern mail explain` shows no reason the sender wrote. The body and
    other fields pass byte-exact."""
    clear_thresholds(mx)
    body = "X-Spam-Status: No (a body line, kept)\r\nCheap offers.\r\n"
    msg = make_message("news@none.test", ALICE, "forged verdict", body, extra_headers=FORGED)
    with mx.client() as c:
        c.ehlo("client.spffail.test")
        r = c.mail("bounce@spffail.test", [ALICE], msg)
    assert r.code == 250, r
    box, stored = find(mx, ALICE, "forged verdict")
    assert box == "INBOX"
    head, rest = stored.split(b"\r\n\r\n", 1)
    head += b"\r\n"
    statuses = re.findall(rb"(?mi)^x-spam-status[ \t]*:.*$", head)
    assert statuses == [b"X-Spam-Status: No, score=3.5 required=5.0\r"], statuses
    assert len(re.findall(rb"(?mi)^x-spam-report[ \t]*:", head)) == 1, head
    assert b"FORGED_TRUST" not in stored and b"vouches" not in stored, stored
    assert b"X-Spam-Statusbar: kept\r\nX-Spam-Level: kept\r\n" in head, head
    assert rest == body.encode(), rest  # byte-exact
    out = mx.cli_out("mail", "explain", ALICE, [m[0] for m in mx.mail_list(ALICE, "INBOX")][-1])
    assert "FORGED_TRUST" not in out and "-20.0" not in out, out
    assert out.count("verdict:") == 1, out
    assert "SPF_FAIL" in out, out


def test_forged_spam_fields_removed_across_bdat_chunks(mx):
    """RFC 3030 BDAT: a forged field split across chunks, a chunk ending in
    the middle of its name and of its continuation line, is still removed;
    a field whose name only starts the same is kept whole."""
    clear_thresholds(mx)
    msg = make_message("news@none.test", ALICE, "forged bdat", "Body.\r\n",
                       extra_headers=FORGED)
    cuts = [msg.index(b"X-Spam-Sta") + 7,   # inside "X-Spam-Status"
            msg.index(b"\t* -20.0") + 3,     # inside the continuation line
            msg.index(b"X-Spam-Statusbar") + 14]
    chunks = [msg[a:b] for a, b in zip([0] + cuts, cuts + [len(msg)])]
    with mx.client() as c:
        c.ehlo("client.spffail.test")
        c.send("MAIL FROM:<bounce@spffail.test>\r\nRCPT TO:<%s>\r\n" % ALICE)
        assert c.reply().code == 250 and c.reply().code == 250
        for i, ch in enumerate(chunks):
            last = " LAST" if i == len(chunks) - 1 else ""
            c.send(b"BDAT %d%s\r\n" % (len(ch), last.encode()) + ch)
            r = c.reply()
            assert r.code == 250, r
    box, stored = find(mx, ALICE, "forged bdat")
    head = stored.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert re.findall(rb"(?mi)^x-spam-status[ \t]*:.*$", head) == \
        [b"X-Spam-Status: No, score=3.5 required=5.0\r"], head
    assert b"FORGED_TRUST" not in stored, stored
    assert b"X-Spam-Statusbar: kept\r\nX-Spam-Level: kept\r\n" in head, head


def test_forged_spam_fields_removed_with_spam_header_off(make_server):
    """With spam_header = no postern adds no verdict, and a forged one is
    still removed (explain then says no verdict is stored)."""
    srv = make_server("noheader", spam_header="no")
    msg = make_message("news@none.test", ALICE, "forged two", "Hello.\r\n", extra_headers=FORGED)
    with srv.client() as c:
        c.ehlo("client.example.net")
        r = c.mail("someone@example.net", [ALICE], msg)
    assert r.code == 250, r
    box, stored = find(srv, ALICE, "forged two")
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?mi)^x-spam-(status|report)[ \t]*:", head), head
    out = srv.cli_out("mail", "explain", ALICE, [m[0] for m in srv.mail_list(ALICE, "INBOX")][-1])
    assert "no spam verdict is stored" in out, out


# ------------------------------------------------------------------- the waits


def dnsbl_server(make_server, dns, **kw):
    """A daemon that treats loopback as untrusted, with a listing zone and a
    zone that never answers: every RCPT waits for it (dns_timeout_ms)."""
    opts = dict(trusted_networks="", dnsbl_sites="bl.test*2, slow.test", dnsbl_action="enforce",
                dns_resolver=dns.server, dns_timeout_ms=1500, dns_tries=1,
                smtp_pregreet_delay_ms=0, greylist="no", conn_rate_limit=0)
    opts.update(kw)
    return make_server("dnsbl", **opts)


def test_pipelined_rcpts_wait_for_the_dnsbl(make_server, dns):
    srv = dnsbl_server(make_server, dns)
    with srv.client(source="127.0.0.2") as c:
        c.ehlo()
        t0 = time.monotonic()
        # RFC 2920: the RCPTs and DATA in one write, while the lists answer
        c.send("MAIL FROM:<x@other.test>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (ALICE, BOB))
        replies = [c.reply() for _ in range(4)]
        waited = time.monotonic() - t0
    assert replies[0].code == 250, replies
    for r in replies[1:3]:
        assert r.code == 550 and r.lines[0].startswith("5.7.1 "), replies
        assert "blocked using bl.test" in r.lines[0], r
    assert replies[3].code == 554, replies  # no valid recipients (RFC 5321 3.3)
    assert waited >= 0.5, waited  # the slow zone was waited for (bounded by its timeout)
    assert srv.count(ALICE) == 0 and srv.count(BOB) == 0
    # an unlisted client: the same wait, then accepted
    with srv.client(source="127.0.0.3") as c:
        c.ehlo()
        r = c.mail("x@other.test", [ALICE, BOB], make_message("x@other.test", ALICE, "ok", "Hi\r\n"))
        assert r.code == 250, r
    assert srv.count(ALICE) == 1 and srv.count(BOB) == 1


def test_client_leaves_while_rcpt_waits(make_server, dns):
    srv = dnsbl_server(make_server, dns)
    c = srv.client(source="127.0.0.3")
    c.ehlo()
    assert c.cmd("MAIL FROM:<x@other.test>").code == 250
    c.send("RCPT TO:<%s>\r\n" % ALICE)
    time.sleep(0.2)  # in the wait
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    # the session ends when the answer comes; the daemon serves on
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "result=unsent" not in srv.log() and \
            "result=aborted" not in srv.log():
        time.sleep(0.1)
    log = srv.log()
    assert re.search(r"smtp tx id=\w+ .*result=(unsent-\d+|aborted)", log), log[-3000:]
    with srv.client(source="127.0.0.3") as c:
        c.ehlo()
        r = c.mail("x@other.test", [ALICE], make_message("x@other.test", ALICE, "after", "Hi\r\n"))
        assert r.code == 250, r
    assert srv.count(ALICE) == 1
    assert srv.stop() == 0  # sanitizer reports fail here


def test_sigterm_while_rcpt_waits(make_server, dns):
    # the lists' timeout longer than the shutdown's wait: the wait is cancelled
    srv = dnsbl_server(make_server, dns, dns_timeout_ms=20000)
    c = srv.client(source="127.0.0.3")
    c.ehlo()
    assert c.cmd("MAIL FROM:<x@other.test>").code == 250
    c.send("RCPT TO:<%s>\r\n" % ALICE)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert srv.stop(timeout=15) == 0  # exits, no leak reported (build-san)
    assert time.monotonic() - t0 < 15
    # the client is told 421 and the connection closed
    assert c.expect_closed(5)
    assert b"421 4.3.2" in c.buf, c.buf
    c.close()


def test_greylisting_at_end_of_data(make_server, dns):
    # untrusted loopback, no DNS lists: greylisting alone decides
    srv = make_server("grey", trusted_networks="", greylist="yes", greylist_delay="2s",
                      dns_resolver=dns.server, dns_timeout_ms=400, dns_tries=1,
                      smtp_pregreet_delay_ms=0, conn_rate_limit=0)
    msg = make_message("x@other.test", ALICE, "greylisted", "Hi\r\n")

    def attempt():
        with srv.client(source="127.0.0.4") as c:
            c.ehlo()
            return c.mail("x@other.test", [ALICE], msg)

    r = attempt()
    assert r.code == 451 and r.lines[0].startswith("4.7.1 Greylisted, please try again in "), r
    assert re.fullmatch(r"4\.7\.1 Greylisted, please try again in [0-9]+ seconds", r.lines[0]), r
    assert srv.count(ALICE) == 0
    assert re.search(r"filter id=\w+ score=[-0-9.]+ action=greylist ", srv.log())
    time.sleep(2.5)
    r = attempt()  # the retry after the delay passes (RFC 6647 2.1)
    assert r.code == 250, r
    assert srv.count(ALICE) == 1
    # submission is never greylisted
    c = srv.authed(BOB)
    r = c.mail(BOB, [ALICE], make_message(BOB, ALICE, "from bob", "Hi\r\n"))
    c.close()
    assert r.code == 250, r
