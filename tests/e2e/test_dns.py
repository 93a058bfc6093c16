"""The DNS resolver (src/dns) against a real dnsmasq on loopback: record types,
NXDOMAIN vs NODATA vs a timeout, CNAME chains, MX per RFC 5321 5.1 (order,
shuffle, implicit MX, null MX of RFC 7505, hosts without addresses, a host
whose lookup fails while another resolves), forward-confirmed reverse DNS,
the cache, and the Received header of a real SMTP delivery naming the
client's verified reverse name (RFC 5321 4.4)."""

import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import (POSTERN, CLI_TIMEOUT, Client, _new_server, dnsmasq_with_slow_zone,  # noqa: E402
                      make_message)
from dnsmasq import Dnsmasq  # noqa: E402

RECORDS = [
    ("MX", "example.test", "mx1.example.test", 10),
    ("MX", "example.test", "mx2.example.test", 10),
    ("MX", "example.test", "mx0.example.test", 5),  # no address at all: skipped
    ("MX", "example.test", "mx3.example.test", 20),
    ("A", "mx1.example.test", "127.0.0.2"),
    ("A", "mx2.example.test", "127.0.0.3"),
    ("AAAA", "mx2.example.test", "::1"),
    ("AAAA", "mx3.example.test", "fd00::3"),
    ("NULLMX", "null.test"),
    ("TXT", "example.test", "v=spf1 -all"),
    ("A", "implicit.test", "127.0.0.9"),
    ("AAAA", "implicit.test", "fd00::9"),
    ("TXT", "noaddr.test", "exists"),
    ("MX", "onlydead.test", "gone.test", 10),
    ("CNAME", "alias.test", "mx1.example.test"),
    ("CNAME", "alias2.test", "alias.test"),
    ("RR", "_25._tcp.mx1.example.test", 52, "030101" + "ab" * 32),
    # MX hosts whose lookups time out (forwarded to a server that never answers)
    ("MX", "halfdead.test", "mx.slow.test", 5),
    ("MX", "halfdead.test", "mx1.example.test", 10),
    ("MX", "alldead.test", "mx.slow.test", 10),
    # reverse DNS: 127.0.0.1 -> verified.test -> 127.0.0.1 (confirmed)
    ("PTR", "1.0.0.127.in-addr.arpa", "verified.test"),
    ("A", "verified.test", "127.0.0.1"),
    # 127.0.0.5 -> liar.test, whose A is another address (not confirmed)
    ("PTR", "5.0.0.127.in-addr.arpa", "liar.test"),
    ("A", "liar.test", "127.0.0.77"),
    ("A", "short.test", "127.0.0.10", 1),  # TTL 1 s
]


@pytest.fixture(scope="module")
def dns(tmp_path_factory, blackhole):
    d = dnsmasq_with_slow_zone(tmp_path_factory, RECORDS, blackhole)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def rdns_server(dns, tmp_path_factory, tls_pair):
    """A daemon resolving through the module's dnsmasq."""
    srv = _new_server(tmp_path_factory, tls_pair, "postern-rdns", dns_resolver=dns.server,
                      dns_timeout_ms=300, dns_tries=1)
    yield srv
    srv.stop()


def run_dns(resolver, *args, timeout_ms=300, tries=1):
    """`postern dns ARGS` with dns_resolver=resolver: (exit status, stdout lines)."""
    cmd = [POSTERN, "-c", "/dev/null", "-o", "dns_resolver=" + resolver,
           "-o", "dns_timeout_ms=%d" % timeout_ms, "-o", "dns_tries=%d" % tries,
           "dns"] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode().splitlines()


# ---- lookups ----

@pytest.mark.parametrize("rtype,name,records", [
    ("A", "mx1.example.test", ["300 A 127.0.0.2"]),
    ("AAAA", "mx2.example.test", ["300 AAAA ::1"]),
    ("TXT", "example.test", ['300 TXT "v=spf1 -all"']),
    ("PTR", "1.0.0.127.in-addr.arpa", ["300 PTR verified.test"]),
    ("TLSA", "_25._tcp.mx1.example.test", ["300 TLSA 3 1 1 " + "ab" * 32]),
    ("MX", "null.test", ["300 MX 0 ."]),
    # a CNAME chain is followed; the record is the target's
    ("A", "alias2.test", ["300 A 127.0.0.2"]),
    ("a", "MX1.Example.TEST.", ["300 A 127.0.0.2"]),
])
def test_lookup_records(dns, rtype, name, records):
    rc, out = run_dns(dns.server, "lookup", rtype, name)
    assert rc == 0, out
    assert out == records + ["status=ok authenticated=no"]


def test_lookup_mx_records(dns):
    rc, out = run_dns(dns.server, "lookup", "MX", "example.test")
    assert rc == 0
    assert sorted(out[:-1]) == sorted(["300 MX 10 mx1.example.test", "300 MX 10 mx2.example.test",
                                       "300 MX 5 mx0.example.test", "300 MX 20 mx3.example.test"])
    assert out[-1] == "status=ok authenticated=no"


def test_nxdomain_nodata_badname(dns):
    # the name does not exist at all
    assert run_dns(dns.server, "lookup", "A", "nope.test") == (1, ["status=nxdomain authenticated=no"])
    # the name exists (it has an A record), no MX: NODATA, not NXDOMAIN
    assert run_dns(dns.server, "lookup", "MX", "mx1.example.test") == (
        1, ["status=nodata authenticated=no"])
    assert run_dns(dns.server, "lookup", "AAAA", "mx1.example.test") == (
        1, ["status=nodata authenticated=no"])
    # not a domain name: no query at all
    assert run_dns(dns.server, "lookup", "A", "bad..name") == (1, ["status=badname authenticated=no"])
    assert run_dns(dns.server, "lookup", "A", "a" * 64 + ".test") == (
        1, ["status=badname authenticated=no"])


def test_timeout_is_tempfail(blackhole):
    # two tries (c-ares doubles the timeout per round: 200 + 400 ms), then given up
    rc, out = run_dns(blackhole.server, "lookup", "A", "mx1.example.test", timeout_ms=200, tries=2)
    assert (rc, out) == (75, ["status=tempfail authenticated=no"])
    rc, out = run_dns(blackhole.server, "mx", "example.test", timeout_ms=200)
    assert (rc, out) == (75, ["status=tempfail implicit=no"])


def test_nothing_listening_is_tempfail(dns):
    # a port where nothing listens: refused, then a temporary failure
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, out = run_dns("127.0.0.1:%d" % port, "lookup", "A", "mx1.example.test", timeout_ms=200)
    assert (rc, out) == (75, ["status=tempfail authenticated=no"])


# ---- MX (RFC 5321 5.1) ----

def mx_hosts(out):
    return [line.split() for line in out[:-1]]


def test_mx_order_and_shuffle(dns):
    firsts = set()
    for _ in range(16):
        rc, out = run_dns(dns.server, "mx", "example.test")
        assert rc == 0 and out[-1] == "status=ok implicit=no", out
        hosts = mx_hosts(out)
        # mx0 (pref 5) has no address: left out. 10s (in some order), then 20.
        assert [h[0] for h in hosts] == ["10", "10", "20"], out
        assert sorted(h[1] for h in hosts[:2]) == ["mx1.example.test", "mx2.example.test"]
        assert hosts[2] == ["20", "mx3.example.test", "fd00::3"]
        by_name = {h[1]: h[2:] for h in hosts}
        assert by_name["mx1.example.test"] == ["127.0.0.2"]
        # IPv6 before IPv4 for one host
        assert by_name["mx2.example.test"] == ["::1", "127.0.0.3"]
        firsts.add(hosts[0][1])
        if len(firsts) == 2:
            break
    # equal preferences are shuffled: both came first at least once
    assert firsts == {"mx1.example.test", "mx2.example.test"}


def test_mx_inet_filter(dns):
    rc, out = run_dns(dns.server, "mx", "example.test", "ipv4")
    assert rc == 0
    assert sorted(mx_hosts(out)) == [["10", "mx1.example.test", "127.0.0.2"],
                                     ["10", "mx2.example.test", "127.0.0.3"]]
    rc, out = run_dns(dns.server, "mx", "example.test", "ipv6")
    assert rc == 0
    assert mx_hosts(out) == [["10", "mx2.example.test", "::1"], ["20", "mx3.example.test", "fd00::3"]]


def test_mx_null_implicit_nxdomain(dns):
    # RFC 7505: null MX, permanent
    assert run_dns(dns.server, "mx", "null.test") == (1, ["status=null implicit=no"])
    # no MX, the name has addresses: the implicit MX (RFC 5321 5.1)
    assert run_dns(dns.server, "mx", "implicit.test") == (
        0, ["0 implicit.test fd00::9 127.0.0.9", "status=ok implicit=yes"])
    # no MX and no address: permanent
    assert run_dns(dns.server, "mx", "noaddr.test") == (1, ["status=nxdomain implicit=yes"])
    # no records at all: NXDOMAIN, no implicit MX tried
    assert run_dns(dns.server, "mx", "nope.test") == (1, ["status=nxdomain implicit=no"])
    # an MX naming only a host that does not exist: permanent
    assert run_dns(dns.server, "mx", "onlydead.test") == (1, ["status=nxdomain implicit=no"])


def test_mx_one_host_tempfails(dns):
    # mx.slow.test (pref 5) times out; mx1 still resolves: usable hosts given
    rc, out = run_dns(dns.server, "mx", "halfdead.test", timeout_ms=200)
    assert (rc, out) == (0, ["10 mx1.example.test 127.0.0.2", "status=ok implicit=no"])
    # the only host times out: temporary, not permanent
    rc, out = run_dns(dns.server, "mx", "alldead.test", timeout_ms=200)
    assert (rc, out) == (75, ["status=tempfail implicit=no"])


def test_resolve_host(dns):
    assert run_dns(dns.server, "host", "mx2.example.test") == (
        0, ["0 mx2.example.test ::1 127.0.0.3", "status=ok implicit=no"])
    assert run_dns(dns.server, "host", "nope.test") == (1, ["status=nxdomain implicit=no"])
    # address literals need no query (nothing answers at port 9 here)
    assert run_dns("127.0.0.1:9", "host", "192.0.2.7") == (
        0, ["0 192.0.2.7 192.0.2.7", "status=ok implicit=no"])
    assert run_dns("127.0.0.1:9", "host", "[::1]") == (0, ["0 [::1] ::1", "status=ok implicit=no"])


def test_verify_ptr(dns):
    assert run_dns(dns.server, "ptr", "127.0.0.1") == (0, ["verified.test"])
    # the PTR's name does not point back: not verified
    assert run_dns(dns.server, "ptr", "127.0.0.5") == (1, ["unknown"])
    # no PTR at all
    assert run_dns(dns.server, "ptr", "127.0.0.99") == (1, ["unknown"])
    assert run_dns(dns.server, "ptr", "not-an-ip") == (1, ["unknown"])


# ---- inbound: the Received header (RFC 5321 4.4) ----

def received_of(srv, user="alice@example.test"):
    msg = srv.messages(user)[-1]
    head = msg.split(b"\r\n\r\n", 1)[0].decode()
    rec = [l for l in head.split("\r\n") if l.startswith("Received:")]
    assert rec, head
    return rec[0]


def deliver(srv, source, subject):
    with srv.client("mx", source=source) as c:
        assert c.greeting.code == 220
        c.ehlo("client.example.net")
        r = c.mail("sender@remote.test", ["alice@example.test"],
                   make_message("sender@remote.test", "alice@example.test", subject, "hello"))
        assert r.code == 250, r


def test_received_names_verified_rdns(rdns_server):
    srv = rdns_server
    n0 = srv.count("alice@example.test")
    deliver(srv, "127.0.0.1", "verified")
    assert received_of(srv) == "Received: from client.example.net (verified.test [127.0.0.1])"
    # PTR without a matching A: unknown
    deliver(srv, "127.0.0.5", "liar")
    assert received_of(srv) == "Received: from client.example.net (unknown [127.0.0.5])"
    # no PTR at all
    deliver(srv, "127.0.0.99", "none")
    assert received_of(srv) == "Received: from client.example.net (unknown [127.0.0.99])"
    assert srv.count("alice@example.test") == n0 + 3


def test_received_unknown_when_dns_times_out(blackhole, make_server):
    # the resolver never answers: the greeting waits a short bound only, and
    # the Received header says unknown
    srv = make_server(dns_resolver=blackhole.server, dns_timeout_ms=5000, dns_tries=1)
    t0 = time.monotonic()
    deliver(srv, "127.0.0.1", "timeout")
    assert time.monotonic() - t0 < 4.0  # far below the 5 s DNS timeout
    assert received_of(srv) == "Received: from client.example.net (unknown [127.0.0.1])"


def test_input_during_the_reverse_dns_wait_is_answered(blackhole, make_server):
    """A client that passed the pregreet test and talks while the greeting
    waits for its reverse name (a resolver that never answers) is greeted at
    once and answered, not refused as a pregreet talker (554)."""
    import random
    srv = make_server(dns_resolver=blackhole.server, dns_timeout_ms=5000, dns_tries=1,
                      smtp_pregreet_delay_ms=300)
    src = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(1, 254), random.randint(2, 254))
    with Client(srv.host, srv.ports["mx"], source=src) as c:  # waits: pregreet passed
        assert c.greeting.code == 220
        c.cmd("QUIT")
    with Client(srv.host, srv.ports["mx"], read_greeting=False, source=src) as c:
        c.send("NOOP\r\n")  # at once: inside the reverse-DNS wait
        assert c.reply().code == 220
        assert c.reply().code == 250


def test_cache_honours_ttl(dns, rdns_server):
    """The daemon's cache: a second session from a fresh address asks dnsmasq
    once; the next session from it is answered from the cache."""
    srv = rdns_server

    def queries():
        log = dns.log()
        return log.count("query[PTR] 2.0.0.127.in-addr.arpa"), log.count("query[A] mx1.example.test")

    before = queries()
    deliver(srv, "127.0.0.2", "one")  # PTR (from mx1's host record) -> mx1 -> 127.0.0.2
    assert received_of(srv) == "Received: from client.example.net (mx1.example.test [127.0.0.2])"
    after = queries()
    assert after == (before[0] + 1, before[1] + 1)
    deliver(srv, "127.0.0.2", "two")
    assert queries() == after  # both answered from the cache
    assert received_of(srv) == "Received: from client.example.net (mx1.example.test [127.0.0.2])"


def test_cache_expires(make_server, tmp_path):
    """An answer is kept no longer than its TTL: short.test's A has 1 s."""
    d2 = Dnsmasq(tmp_path / "d2", [("PTR", "10.0.0.127.in-addr.arpa", "short.test"),
                                  ("A", "short.test", "127.0.0.10", 1)], ttl=1)
    d2.start()
    try:
        srv = make_server(dns_resolver=d2.server, dns_timeout_ms=300, dns_tries=1)
        deliver(srv, "127.0.0.10", "first")
        assert received_of(srv) == "Received: from client.example.net (short.test [127.0.0.10])"
        assert d2.log().count("query[A] short.test") == 1
        time.sleep(2.2)
        deliver(srv, "127.0.0.10", "second")
        assert d2.log().count("query[A] short.test") == 2  # expired, asked again
        assert received_of(srv) == "Received: from client.example.net (short.test [127.0.0.10])"
    finally:
        d2.stop()
