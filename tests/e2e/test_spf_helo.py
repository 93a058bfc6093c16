"""The HELO identity's SPF check (RFC 7208 2.3) is made once per connection
and HELO name, not once per message: its result depends on the client's
address and the name only. A connection that sends several messages asks
DNS once; a new EHLO name, or a new connection, asks again; a temporary
error is not remembered. Each stored message still carries the result
(Authentication-Results spf=... smtp.helo=...).

ZoneDNS answers a missing name with NXDOMAIN and no SOA, which a resolver
must not cache (RFC 2308 5), so every check that is made reaches the server
and shows in its query log."""
from conftest import auth_results, make_message, resinfo
from zonedns import zonedns  # noqa: F401 (fixture)

RCPT = "alice@example.test"
SENDER = "ann@sender.test"


def helo_mx(make_server, zonedns, name, zone, **opts):  # noqa: F811
    """An MX daemon resolving through zonedns (serving zone), nothing trusted,
    no greylisting: every message gets the checks and is stored."""
    zonedns.zone = zone
    return make_server(name, dns_resolver=zonedns.server, trusted_networks="", greylist="no",
                       **opts)


def helo_results(srv, subjects):
    """The spf=... smtp.helo=... resinfo of each stored message by subject."""
    out = {}
    for m in srv.fetch_messages(RCPT).values():
        subj = [ln for ln in m.split(b"\r\n") if ln.startswith(b"Subject: ")]
        if not subj or subj[0][9:].decode() not in subjects:
            continue
        (ar,) = auth_results(m)
        out[subj[0][9:].decode()] = [s for s in resinfo(ar, b"spf") if "smtp.helo=" in s]
    return out


def send_many(c, subjects):
    for subject in subjects:
        r = c.mail(SENDER, [RCPT], make_message(SENDER, RCPT, subject, "helo memo\r\n"))
        assert r.code == 250, r


def helo_queries(dns, name):
    return sum(1 for q in dns.queries if q == (name, "TXT"))


def test_helo_checked_once_per_connection_and_name(make_server, zonedns):  # noqa: F811
    srv = helo_mx(make_server, zonedns, "spf-helo", {
        "sender.test": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
        # a name with other records but no TXT: NODATA, "none"
        "host.helo.test": [("A", "127.0.0.1")],
    })
    with srv.client("mx") as c:
        c.ehlo("nothing.helo.test")  # NXDOMAIN
        send_many(c, ["memo 1", "memo 2", "memo 3"])
        assert helo_queries(zonedns, "nothing.helo.test") == 1, zonedns.queries
        # a new EHLO name: checked again, once
        c.ehlo("host.helo.test")
        send_many(c, ["memo 4", "memo 5"])
        assert helo_queries(zonedns, "host.helo.test") == 1, zonedns.queries
        # the first name again: asked again (the result went with the name)
        c.ehlo("nothing.helo.test")
        send_many(c, ["memo 6"])
        assert helo_queries(zonedns, "nothing.helo.test") == 2, zonedns.queries
    # another connection: its own check
    with srv.client("mx") as c:
        c.ehlo("nothing.helo.test")
        send_many(c, ["memo 7", "memo 8"])
    assert helo_queries(zonedns, "nothing.helo.test") == 3, zonedns.queries
    got = helo_results(srv, ["memo %d" % i for i in range(1, 9)])
    assert len(got) == 8, got
    for i in (1, 2, 3, 6, 7, 8):
        assert got["memo %d" % i] == ["spf=none smtp.helo=nothing.helo.test"], got
    for i in (4, 5):
        assert got["memo %d" % i] == ["spf=none smtp.helo=host.helo.test"], got


def test_helo_temperror_not_remembered(make_server, zonedns):  # noqa: F811
    srv = helo_mx(make_server, zonedns, "spf-helo-temp", {
        "sender.test": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
        "slow.helo.test": [("TXT", "TIMEOUT")],
    }, dns_timeout_ms=300, dns_tries=1)
    with srv.client("mx") as c:
        c.ehlo("slow.helo.test")
        send_many(c, ["temp 1"])
        first = helo_queries(zonedns, "slow.helo.test")
        assert first >= 1, zonedns.queries
        send_many(c, ["temp 2"])
        assert helo_queries(zonedns, "slow.helo.test") > first, zonedns.queries
    got = helo_results(srv, ["temp 1", "temp 2"])
    assert got == {"temp 1": ["spf=temperror smtp.helo=slow.helo.test"],
                   "temp 2": ["spf=temperror smtp.helo=slow.helo.test"]}, got
