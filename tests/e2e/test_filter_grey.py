"""Greylisting (RFC 6647) through the daemon: the MX listener defers an unknown
(client network, sender, recipient) triplet at the end of data with 451 4.7.1
and the wait, passes a retry after greylist_delay, then allows the client's
network (auto-allowlisting); a DMARC-aligned domain with a good reputation
skips it from any network (without allowing that network); submission never sees it; greylist=no turns it
off; a restart (SIGTERM, and SIGKILL after the lazy save) keeps the state.

The daemons set trusted_networks= (empty: the test defaults trust loopback)
and greylist_delay=2s. Clients connect from chosen 127.a.b.c addresses (any
loopback address is local on Linux), one /24 per case, so cases are
independent."""
import re
import time

import pytest

from conftest import make_message
from zonedns import zonedns  # noqa: F401 (fixture)

DELAY = 2
GREY_OPTS = {"trusted_networks": "", "greylist_delay": "%ds" % DELAY}
RCPT = "alice@example.test"
WAIT_RE = re.compile(r"^4\.7\.1 Greylisted, please try again in (\d+) seconds$")


def send(srv, source, frm, rcpt=RCPT, role="mx", subject="grey"):
    """One message from source; the reply to the end of data."""
    with srv.client(role, source=source) as c:
        c.ehlo()
        return c.mail(frm, [rcpt], make_message(frm, rcpt, subject, "greylisting test\r\n"))


def assert_deferred(r, wait=None):
    assert r.code == 451, r
    m = WAIT_RE.match(r.lines[-1])
    assert m, r
    w = int(m.group(1))
    if wait is not None:
        assert w == wait, r
    assert 0 < w <= DELAY, r
    return w


def wait_retry(w):
    """Sleeps until a triplet deferred with wait w may pass (bounded)."""
    time.sleep(w + 0.3)


@pytest.fixture(scope="module")
def grey(tmp_path_factory, tls_pair):
    from conftest import _new_server
    srv = _new_server(tmp_path_factory, tls_pair, "grey", **GREY_OPTS)
    yield srv
    srv.stop()


def test_first_attempt_retry_and_auto_allowlist(grey):
    before = grey.count(RCPT)
    # the first attempt: the whole delay
    assert_deferred(send(grey, "127.10.0.1", "ann@remote.example"), wait=DELAY)
    # an early retry: still deferred, with the time left
    w = assert_deferred(send(grey, "127.10.0.1", "ann@remote.example"))
    assert grey.count(RCPT) == before
    wait_retry(w)
    # the retry after the delay, from another host of the same /24
    r = send(grey, "127.10.0.2", "ANN@remote.example", rcpt="Alice@example.test")
    assert r.code == 250, r
    assert grey.count(RCPT) == before + 1
    # the network is allowed now: another sender and recipient pass at once
    r = send(grey, "127.10.0.99", "zed@elsewhere.example", rcpt="bob@example.test")
    assert r.code == 250, r
    # another network is not: a new triplet there is deferred
    assert_deferred(send(grey, "127.11.0.1", "zed@elsewhere.example", rcpt="bob@example.test"),
                    wait=DELAY)
    assert_deferred(send(grey, "127.11.0.1", "ann@remote.example"), wait=DELAY)
    log = grey.log()
    assert "greylist=new" in log, log[-3000:]
    # passes are logged with their reason too
    assert "action=accept reasons=" in log and "greylist=retry" in log, log[-3000:]
    assert "greylist=allowed network" in log, log[-3000:]


def test_different_sender_or_recipient_deferred(grey):
    assert_deferred(send(grey, "127.12.0.1", "bea@remote.example"), wait=DELAY)
    wait_retry(DELAY)
    # same network, but another sender, or another recipient: new triplets
    assert_deferred(send(grey, "127.12.0.1", "cid@remote.example"), wait=DELAY)
    assert_deferred(send(grey, "127.12.0.1", "bea@remote.example", rcpt="bob@example.test"),
                    wait=DELAY)
    # the retried triplet passes
    assert send(grey, "127.12.0.1", "bea@remote.example").code == 250


def test_null_sender(grey):
    assert_deferred(send(grey, "127.13.0.1", ""), wait=DELAY)
    wait_retry(DELAY)
    assert send(grey, "127.13.0.1", "").code == 250


def test_submission_never_greylisted(grey):
    before = grey.count("bob@example.test")
    c = grey.authed("alice@example.test")
    r = c.mail("alice@example.test", ["bob@example.test"],
               make_message("alice@example.test", "bob@example.test", "sub", "hello\r\n"))
    c.close()
    assert r.code == 250, r
    assert grey.count("bob@example.test") == before + 1


def test_off_switch(make_server):
    srv = make_server("grey-off", greylist="no", **GREY_OPTS)
    r = send(srv, "127.14.0.1", "dan@remote.example")
    assert r.code == 250, r
    assert srv.count(RCPT) == 1


def test_trusted_network_not_greylisted(make_server):
    srv = make_server("grey-trusted", greylist_delay="%ds" % DELAY,
                      trusted_networks="127.15.0.0/16")
    assert send(srv, "127.15.3.1", "eve@remote.example").code == 250
    assert_deferred(send(srv, "127.16.0.1", "eve@remote.example"), wait=DELAY)


def _wait_row(srv, sql, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db = srv.db()
        try:
            n = db.execute(sql).fetchone()[0]
        finally:
            db.close()
        if n:
            return
        time.sleep(0.1)
    raise AssertionError("no row for %s within %.0fs" % (sql, timeout))


def test_restart_keeps_triplets_and_networks(make_server):
    srv = make_server("grey-restart", **GREY_OPTS)
    # deferred, then the daemon stops (SIGTERM: what is not saved yet is
    # saved at shutdown) and starts again before the retry
    assert_deferred(send(srv, "127.20.0.1", "fay@remote.example"), wait=DELAY)
    srv.restart()
    log = srv.log()
    assert "grey: loaded triplets=1 networks=0 domains=0" in log[log.rfind("---- start 2"):], log
    wait_retry(DELAY)
    r = send(srv, "127.20.0.1", "fay@remote.example")
    assert r.code == 250, r  # not "new" again
    # the allowed network survives a restart too
    srv.restart()
    r = send(srv, "127.20.0.5", "gus@other.example", rcpt="bob@example.test")
    assert r.code == 250, r
    # the lazy save (within a second, through the committer) survives a
    # crash: SIGKILL once the row is in the database
    assert_deferred(send(srv, "127.21.0.1", "hal@remote.example"), wait=DELAY)
    _wait_row(srv, "SELECT count(*) FROM greylist WHERE net = '127.21.0.0/24'")
    srv.kill()
    srv.start()
    wait_retry(DELAY)
    r = send(srv, "127.21.0.1", "hal@remote.example")
    assert r.code == 250, r
    db = srv.db()
    try:
        rows = db.execute("SELECT net, sender, rcpt FROM greylist ORDER BY net").fetchall()
    finally:
        db.close()
    assert ("127.20.0.0/24", "fay@remote.example", "alice@example.test") in rows, rows


def test_network_budget(make_server):
    """greylist_net_new: one client network records at most that many new
    triplets an hour. A flood of made-up senders and recipients past it is
    deferred like any new triplet but not recorded (not kept, not stored), and
    a real sender of another network still passes at its retry."""
    srv = make_server("grey-budget", greylist_net_new=3, **GREY_OPTS)
    assert_deferred(send(srv, "127.22.0.1", "ivy@remote.example"), wait=DELAY)
    # 40 transactions of 5 new triplets each from 127.23.0.0/24
    with srv.client("mx", source="127.23.0.9") as c:
        c.ehlo()
        for i in range(40):
            rcpts = ["alice+%d@example.test" % (5 * i + k) for k in range(5)]
            frm = "x%d@spam.example" % i
            assert_deferred(c.mail(frm, rcpts, make_message(frm, rcpts[0], "flood", "x\r\n")),
                            wait=DELAY)
    log = srv.log()
    # a message's triplets are recorded together: the first message's five
    # (the budget was open when it came), none of the 39 after it
    assert log.count("greylist=network budget") == 39, log[-3000:]
    assert log.count("grey: network 127.23.0.0/24 recorded 3 new triplets within 3600s") == 1, \
        log[-3000:]
    srv.restart()
    log = srv.log()
    assert "grey: loaded triplets=6 networks=0 domains=0" in log[log.rfind("---- start 2"):], log
    db = srv.db()
    try:
        n = db.execute("SELECT count(*) FROM greylist WHERE net = '127.23.0.0/24'").fetchone()[0]
    finally:
        db.close()
    assert n == 5, n
    wait_retry(DELAY)
    r = send(srv, "127.22.0.1", "ivy@remote.example")
    assert r.code == 250, r


def test_reputation_skips_greylisting(make_server, zonedns):  # noqa: F811
    """A domain whose DMARC-aligned mail (SPF pass, aligned) was accepted
    skips greylisting from another network."""
    zonedns.zone = {
        "rep.example": [("TXT", "v=spf1 ip4:127.30.0.0/16 -all")],
        "_dmarc.rep.example": [("TXT", "v=DMARC1; p=none")],
    }
    srv = make_server("grey-rep", dns_resolver=zonedns.server, **GREY_OPTS)
    assert_deferred(send(srv, "127.30.1.1", "ivy@rep.example"), wait=DELAY)
    wait_retry(DELAY)
    assert send(srv, "127.30.1.1", "ivy@rep.example").code == 250
    # another network (another /24), another sender of the domain: it passes
    r = send(srv, "127.30.2.1", "joe@rep.example", rcpt="bob@example.test")
    assert r.code == 250, r
    # a domain that is not aligned (no SPF, no DKIM) is still greylisted
    # from a network that has not passed
    assert_deferred(send(srv, "127.30.3.1", "kim@unknown.example", rcpt="bob@example.test"),
                    wait=DELAY)
    # a pass on the domain's reputation does not allow the network it came
    # from (the domain's good name says nothing of that network): another
    # sender from it is greylisted
    assert_deferred(send(srv, "127.30.2.9", "kim@unknown.example"), wait=DELAY)
    # the network of the real retry is allowed
    assert send(srv, "127.30.1.9", "kim@unknown.example").code == 250
    assert "greylist=reputation" in srv.log()


def test_deferred_attempts_count_against_ip_rate(make_server):
    """A greylisted message counts against the client's message rate
    (rate_ip_messages), as Postfix counts every delivery request: a client
    sending made-up triplets is stopped at MAIL FROM past the rate, not
    deferred again after sending each message whole."""
    srv = make_server("grey-rate", rate_ip_messages=3, **GREY_OPTS)
    with srv.client("mx", source="127.40.0.1") as c:
        c.ehlo()
        for i in range(3):
            frm = "made-up-%d@remote.example" % i
            assert_deferred(c.mail(frm, [RCPT], make_message(frm, RCPT, "g%d" % i, "x\r\n")),
                            wait=DELAY)
        r = c.cmd("MAIL FROM:<made-up-9@remote.example>")
        assert r.code == 451, r
        assert r.lines == ["4.7.1 too many messages within 1h (4, limit 3); try again later"], r
    # another client is not touched; recipient rates do not count deferrals
    assert_deferred(send(srv, "127.40.1.1", "other@remote.example"), wait=DELAY)
    assert "limit=ip_messages count=4 max=3" in srv.log()
