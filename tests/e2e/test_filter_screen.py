"""The connection stage (src/filter/screen.c) through the daemon: DNS
blocklists and allowlists served by a real DNS server (tests/e2e/zonedns.py,
or dnsmasq), their return-code filters and weights, dnsbl_action enforce and
drop, a list that never answers, the local lists managed with `postern
block|allow` on a running daemon, the per-IP connection rate, and
trusted_networks.

The daemon's test defaults trust 127.0.0.0/8; these tests set
trusted_networks empty (or to one address) and turn greylisting off (it
would defer the first message of every untrusted client). Clients bind a
chosen 127.0.0.x source address: the "listed" or "unlisted" client. The
RFC 5782 2.1 query name of 127.0.0.2 is 2.0.0.127.<zone>."""
import os
import subprocess
import time

import pytest

from conftest import make_message
from zonedns import ZoneDNS, zonedns  # noqa: F401 (the fixture)

ALICE = "alice@example.test"
# A listed client's answer 127.0.0.2 passes the filter; 127.0.0.9 does not.
BL_SITES = "bl.test=127.0.0.[2..4]*3"


def qname(ip, zone):
    return ".".join(reversed(ip.split("."))) + "." + zone


def screen_opts(dns, **kw):
    o = dict(trusted_networks="", greylist="no", dns_resolver=dns.server, dns_timeout_ms=400,
             dns_tries=1, spam_filter="no", conn_rate_limit=0)
    o.update(kw)
    return o


def deliver(srv, source, rcpt=ALICE, subject="screen test"):
    """One message from source: the replies to RCPT and to the final dot
    (None when RCPT was refused)."""
    with srv.client(source=source) as c:
        assert c.greeting.code == 220, c.greeting
        c.ehlo()
        r = c.cmd("MAIL FROM:<sender@client.example.net>")
        assert r.code == 250, r
        rr = c.cmd("RCPT TO:<%s>" % rcpt)
        if rr.code != 250:
            c.cmd("QUIT")
            return rr, None
        d = c.data(make_message("sender@client.example.net", rcpt, subject, "hello\r\n"))
        c.cmd("QUIT")
        return rr, d


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


# ---- DNS lists ----

def test_dnsbl_enforce_with_filter(make_server, zonedns):
    """enforce: a listed client's RCPT gets 550 5.7.1 naming the list; one
    whose answer the filter excludes, and one not listed, deliver."""
    zonedns.zone = {
        qname("127.0.0.2", "bl.test"): [("A", "127.0.0.2")],
        qname("127.0.0.3", "bl.test"): [("A", "127.0.0.9")],  # outside [2..4]
    }
    srv = make_server(**screen_opts(zonedns, dnsbl_sites=BL_SITES, dnsbl_threshold=3,
                                    dnsbl_action="enforce"))
    rr, d = deliver(srv, "127.0.0.2")
    assert rr.code == 550 and rr.lines[0].startswith("5.7.1"), rr
    assert "bl.test" in rr.lines[0] and "127.0.0.2" in rr.lines[0], rr
    assert d is None
    for ip in ("127.0.0.3", "127.0.0.4"):
        rr, d = deliver(srv, ip)
        assert rr.code == 250 and d.code == 250, (ip, rr, d)
    assert srv.count(ALICE) == 2
    assert (qname("127.0.0.3", "bl.test"), "A") in zonedns.queries
    assert "screen: client=127.0.0.2 dnsbl score=3 blocked" in srv.log()


def test_dnsbl_every_rcpt_refused_and_reason(make_server, zonedns):
    """enforce refuses each recipient; a listing below the threshold only
    adds its weight to the message's score, named in X-Spam-Report."""
    zonedns.zone = {
        qname("127.0.0.2", "bl.test"): [("A", "127.0.0.2")],
        qname("127.0.0.5", "low.test"): [("A", "127.0.0.2")],
    }
    srv = make_server(**screen_opts(zonedns, dnsbl_sites=BL_SITES + ", low.test*1",
                                    dnsbl_threshold=3, spam_filter="yes"))
    with srv.client(source="127.0.0.2") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@client.example.net>").code == 250
        for rcpt in (ALICE, "bob@example.test"):
            r = c.cmd("RCPT TO:<%s>" % rcpt)
            assert r.code == 550 and "bl.test" in r.lines[0], r
        assert c.cmd("DATA").code == 554  # no valid recipients (RFC 5321 3.3)
        c.cmd("QUIT")
    rr, d = deliver(srv, "127.0.0.5")
    assert rr.code == 250 and d.code == 250, (rr, d)
    stored = srv.messages(ALICE)[-1]
    assert b"DNSBL_LOW_TEST" in stored, stored[:600]
    assert b"127.0.0.5 is listed in low.test" in stored, stored[:600]


def test_dnsbl_allowlist_negative_weight(make_server, zonedns):
    """A client in a blocklist (3) and in an allowlist whose filter matches
    (-5): score -2, at or below dnsbl_allowlist_threshold, not blocked. The
    same client without the allowlist's matching answer is blocked."""
    zonedns.zone = {
        qname("127.0.0.2", "bl.test"): [("A", "127.0.0.2")],
        qname("127.0.0.2", "wl.test"): [("A", "127.0.10.2")],
        qname("127.0.0.3", "bl.test"): [("A", "127.0.0.2")],
        qname("127.0.0.3", "wl.test"): [("A", "127.0.10.7")],  # filter: last octet 1..3
    }
    sites = BL_SITES + ", wl.test=127.0.[0..255].[1..3]*-5"
    srv = make_server(**screen_opts(zonedns, dnsbl_sites=sites, dnsbl_threshold=3,
                                    dnsbl_allowlist_threshold=-1, dnsbl_action="enforce"))
    rr, d = deliver(srv, "127.0.0.2")
    assert rr.code == 250 and d.code == 250, (rr, d)
    assert "screen: client=127.0.0.2 dnsbl score=-2 allowlisted" in srv.log()
    rr, d = deliver(srv, "127.0.0.3")
    assert rr.code == 550 and "bl.test" in rr.lines[0], rr


def test_dnsbl_drop(make_server, zonedns):
    """drop: a listed client is greeted 554 5.7.1 naming the list; after
    that only QUIT (RFC 5321 3.1: 503 to anything else, 221 to QUIT). An
    unlisted client is greeted 220."""
    zonedns.zone = {qname("127.0.0.2", "bl.test"): [("A", "127.0.0.3")]}
    srv = make_server(**screen_opts(zonedns, dnsbl_sites=BL_SITES, dnsbl_threshold=3,
                                    dnsbl_action="drop", smtp_pregreet_delay_ms=1000))
    with srv.client(source="127.0.0.2") as c:
        g = c.greeting
        assert g.code == 554 and g.lines[0].startswith("5.7.1"), g
        assert "bl.test" in g.lines[0], g
        r = c.cmd("EHLO client.example.net")
        assert r.code == 503, r
        r = c.cmd("MAIL FROM:<s@client.example.net>")
        assert r.code == 503, r
        r = c.cmd("QUIT")
        assert r.code == 221, r
        assert c.expect_closed()
    with srv.client(source="127.0.0.4") as c:
        assert c.greeting.code == 220, c.greeting
        c.cmd("QUIT")
    # the dropped client earned no pregreet pass: it is dropped again, not
    # greeted 220 without the wait that gives the lists time to answer
    with srv.client(source="127.0.0.2") as c:
        g = c.greeting
        assert g.code == 554 and "bl.test" in g.lines[0], g
        c.cmd("QUIT")
    assert srv.count(ALICE) == 0


def test_dnsbl_dead_list(make_server, zonedns):
    """A list whose server never answers: each lookup ends at the resolver's
    timeout, the client counts as not listed and its mail flows; the failure
    is logged once, not per client."""
    zonedns.zone = {
        qname("127.0.0.2", "dead.test"): ["TIMEOUT"],
        qname("127.0.0.3", "dead.test"): ["TIMEOUT"],
    }
    srv = make_server(**screen_opts(zonedns, dnsbl_sites="dead.test*5", dnsbl_threshold=3,
                                    dnsbl_action="enforce", dns_timeout_ms=300))
    for ip in ("127.0.0.2", "127.0.0.3"):
        rr, d = deliver(srv, ip)
        assert rr.code == 250 and d.code == 250, (ip, rr, d)
    assert srv.count(ALICE) == 2
    assert (qname("127.0.0.2", "dead.test"), "A") in zonedns.queries
    log = srv.log()
    assert log.count("dnsbl zone=dead.test lookup failed") == 1, log
    # once it answers again, that is logged, and a listing counts again
    zonedns.zone = {qname("127.0.0.4", "dead.test"): [("A", "127.0.0.2")]}
    rr, d = deliver(srv, "127.0.0.4")
    assert rr.code == 550 and "dead.test" in rr.lines[0], rr
    assert "dnsbl zone=dead.test answers again" in srv.log()


def test_dnsbl_dnsmasq(make_server, tmp_path):
    """The same with dnsmasq serving the list."""
    from dnsmasq import DNSMASQ, Dnsmasq
    if not os.path.exists(DNSMASQ):
        pytest.skip("dnsmasq not installed")
    records = [("A", qname("127.0.0.2", "bl.test"), "127.0.0.2"),
               ("A", qname("127.0.0.3", "bl.test"), "127.0.0.10")]  # filtered out
    with Dnsmasq(tmp_path, records) as dm:
        srv = make_server(**screen_opts(dm, dnsbl_sites=BL_SITES, dnsbl_threshold=3))
        rr, d = deliver(srv, "127.0.0.2")
        assert rr.code == 550 and "bl.test" in rr.lines[0], rr
        for ip in ("127.0.0.3", "127.0.0.4"):
            rr, d = deliver(srv, ip)
            assert rr.code == 250 and d.code == 250, (ip, rr, d)


# ---- local lists ----

def test_block_cli_on_running_daemon(make_server, zonedns):
    """`postern block add 127.0.0.0/8` refuses the next connection's mail on
    a running daemon; `block del` lets it through again; `allow add` beats
    a DNSBL listing."""
    zonedns.zone = {qname("127.0.0.7", "bl.test"): [("A", "127.0.0.2")]}
    srv = make_server(**screen_opts(zonedns, dnsbl_sites=BL_SITES, dnsbl_threshold=3))
    rr, d = deliver(srv, "127.0.0.6")
    assert rr.code == 250 and d.code == 250, (rr, d)

    out = srv.cli_out("block", "add", "127.0.0.9/8", "--comment", "loopback test")
    assert out.strip() == "127.0.0.0/8 added to the block list", out
    listed = srv.cli_out("block", "list").splitlines()
    assert len(listed) == 1 and listed[0].startswith("127.0.0.0/8 ") and \
        listed[0].endswith(" loopback test"), listed

    def refused():
        rr, _ = deliver(srv, "127.0.0.6")
        return rr.code == 550 and rr
    rr = wait_for(refused)
    assert rr and rr.lines[0].startswith("5.7.1") and "blocked" in rr.lines[0], rr
    assert "screen: client=127.0.0.6 blocked by the local block list" in srv.log()

    srv.cli("block", "del", "127.0.0.0/8")
    assert srv.cli_out("block", "list").strip() == ""

    def accepted():
        rr, d = deliver(srv, "127.0.0.6")
        return rr.code == 250 and d.code == 250
    assert wait_for(accepted)

    # a DNSBL-listed client, allowed locally: no lookup, mail flows
    rr, _ = deliver(srv, "127.0.0.7")
    assert rr.code == 550, rr
    srv.cli("allow", "add", "127.0.0.7")
    assert srv.cli_out("allow", "list").startswith("127.0.0.7/32 ")

    def allowed():
        rr, d = deliver(srv, "127.0.0.7")
        return rr.code == 250 and d.code == 250
    assert wait_for(allowed)


def test_block_drop_at_connect(make_server, zonedns):
    """dnsbl_action=drop and the local block list: the 554 greeting comes at
    once (no DNS needed), then 503 to everything but QUIT; commands
    pipelined behind the greeting get their 503 too."""
    srv = make_server(start=False, **screen_opts(zonedns, dnsbl_action="drop"))
    srv.cli("block", "add", "127.0.0.20")  # loaded at start
    srv.start()
    with srv.client(source="127.0.0.20", read_greeting=False) as c:
        g = c.reply()
        assert g.code == 554 and g.lines[0].startswith("5.7.1"), g
        assert "blocked by local policy" in g.lines[0], g
        c.send(b"HELO x\r\nNOOP\r\nRSET\r\n")
        for _ in range(3):
            r = c.reply()
            assert r.code == 503 and r.lines[0].startswith("5.5.1"), r
        assert c.cmd("QUIT").code == 221
        assert c.expect_closed()
    with srv.client(source="127.0.0.21") as c:
        assert c.greeting.code == 220, c.greeting
        c.cmd("QUIT")


def test_ignore_still_enforces_the_local_block_list(make_server, zonedns):
    """dnsbl_action=ignore is for trying DNS lists out: a DNSBL-listed
    client's mail flows (the listing logged and scored), but a client in the
    administrator's own block list is still refused at RCPT."""
    zonedns.zone = {qname("127.0.0.31", "bl.test"): [("A", "127.0.0.2")]}
    srv = make_server(start=False, **screen_opts(zonedns, dnsbl_sites=BL_SITES,
                                                 dnsbl_threshold=3, dnsbl_action="ignore"))
    srv.cli("block", "add", "127.0.0.30")
    srv.start()
    rr, d = deliver(srv, "127.0.0.31")
    assert rr.code == 250 and d.code == 250, (rr, d)
    assert "screen: client=127.0.0.31 dnsbl score=3 blocked" in srv.log()
    rr, d = deliver(srv, "127.0.0.30")
    assert rr.code == 550 and rr.lines[0].startswith("5.7.1") and d is None, (rr, d)
    assert "blocked by local policy" in rr.lines[0], rr


def test_block_cli_errors(make_server):
    srv = make_server(start=False)
    p = srv.cli("block", "add", "not-a-network", check=False)
    assert p.returncode == 2 and b"not an address or network" in p.stderr, p
    p = srv.cli("block", "del", "192.0.2.0/24", check=False)
    assert p.returncode == 1 and b"not in the block list" in p.stderr, p
    p = srv.cli("block", "frob", check=False)
    assert p.returncode == 2 and b"usage" in p.stderr, p
    # canonical forms: one entry for every spelling of a network
    srv.cli("block", "add", "192.0.2.77/24")
    srv.cli("block", "add", "192.0.2.0/24", "--comment", "again")
    srv.cli("block", "add", "2001:DB8:0:0::/32")
    out = srv.cli_out("block", "list").splitlines()
    assert [l.split()[0] for l in out] == ["192.0.2.0/24", "2001:db8::/32"], out
    assert out[0].endswith(" again"), out
    # moving a network to the other list
    srv.cli("allow", "add", "192.0.2.0/24")
    assert [l.split()[0] for l in srv.cli_out("block", "list").splitlines()] == ["2001:db8::/32"]
    assert srv.cli_out("allow", "list").startswith("192.0.2.0/24 ")
    srv.cli("block", "del", "[2001:db8::]/32")
    assert srv.cli_out("block", "list").strip() == ""


# ---- connection rate, trusted networks ----

def test_conn_rate_limit(make_server, zonedns):
    """conn_rate_limit=3: the 4th connection from one address within the
    minute gets 421 4.7.0 and is closed; another address is not affected."""
    srv = make_server(**screen_opts(zonedns, conn_rate_limit=3, smtp_pregreet_delay_ms=0))
    for i in range(3):
        with srv.client(source="127.0.0.10") as c:
            assert c.greeting.code == 220, (i, c.greeting)
            c.cmd("QUIT")
    with srv.client(source="127.0.0.10") as c:
        g = c.greeting
        assert g.code == 421 and g.lines[0].startswith("4.7.0"), g
        assert c.expect_closed()
    with srv.client(source="127.0.0.11") as c:
        assert c.greeting.code == 220, c.greeting
        c.cmd("QUIT")
    assert "screen: client=127.0.0.10 over conn_rate_limit=3 per minute" in srv.log()


def test_trusted_networks_skip_the_screen(make_server, zonedns):
    """A trusted client is neither rate-limited nor looked up in the
    DNSBLs, nor refused by the local block list."""
    zonedns.zone = {qname("127.0.0.12", "bl.test"): [("A", "127.0.0.2")]}
    srv = make_server(**screen_opts(zonedns, trusted_networks="127.0.0.12/32",
                                    conn_rate_limit=2, dnsbl_sites=BL_SITES,
                                    dnsbl_threshold=3, smtp_pregreet_delay_ms=0),
                      start=False)
    srv.cli("block", "add", "127.0.0.0/8")
    srv.start()
    for i in range(4):
        rr, d = deliver(srv, "127.0.0.12", subject="trusted %d" % i)
        assert rr.code == 250 and d.code == 250, (i, rr, d)
    assert srv.count(ALICE) == 4
    assert (qname("127.0.0.12", "bl.test"), "A") not in zonedns.queries
    # an untrusted neighbour is blocked
    rr, _ = deliver(srv, "127.0.0.13")
    assert rr.code == 550, rr


def test_bad_dnsbl_sites_refused_at_start(make_server):
    srv = make_server(start=False, trusted_networks="", dnsbl_sites="bl.test=127.0.0")
    p = subprocess.run([srv_bin(), "-c", srv.conf, "serve"], capture_output=True, timeout=30)
    assert p.returncode != 0
    assert b"bl.test=127.0.0" in p.stdout + p.stderr


def srv_bin():
    from conftest import POSTERN
    return POSTERN


def test_shutdown_with_lookups_pending(make_server, zonedns):
    """SIGTERM while a client's DNSBL lookups and its RCPT wait for a list
    that never answers: the daemon exits in time, nothing is called back
    into freed memory (the sanitizer build checks), and no mail is lost."""
    zonedns.zone = {qname("127.0.0.30", "dead.test"): ["TIMEOUT"],
                    qname("127.0.0.31", "dead.test"): ["TIMEOUT"]}
    srv = make_server(**screen_opts(zonedns, dnsbl_sites="dead.test*5", dnsbl_threshold=3,
                                    dns_timeout_ms=5000, dns_tries=2,
                                    smtp_pregreet_delay_ms=0))
    waiting = srv.client(source="127.0.0.30")
    waiting.ehlo()
    assert waiting.cmd("MAIL FROM:<s@client.example.net>").code == 250
    waiting.send(b"RCPT TO:<%s>\r\n" % ALICE.encode())  # waits for the list
    greeted = srv.client(source="127.0.0.31")  # lookups started, nothing sent
    assert greeted.greeting.code == 220
    assert wait_for(lambda: (qname("127.0.0.30", "dead.test"), "A") in zonedns.queries)
    rc = srv.stop(timeout=20)  # raises if the daemon did not exit by then
    assert rc == 0, srv.log()
    for c in (waiting, greeted):
        c.close()
    assert srv.count(ALICE) == 0
