"""Review of the sender-authentication path (issue 10, round 2) against the
real daemon: the forged Authentication-Results filter (RFC 8601 5) cannot be
bypassed, and everything but the forgery is stored byte-exact after the
prefix (Return-Path, policy fields, Received), over DATA and BDAT (RFC 3030)
with chunks cutting the header anywhere, for messages around and far above
the spool's 64 KiB buffer. The daemon's authserv-id is its hostname
(mx.example.test, conftest BASE_OPTS); DNS is a closed port (every lookup
fails at once: spf/dkim/dmarc temperror or none, never a refusal)."""
import pytest

from conftest import make_message, split_prepended

BOB = "bob@example.test"
OURS = "mx.example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    from conftest import _new_server
    s = _new_server(tmp_path_factory, tls_pair, "postern", dns_timeout_ms="300", dns_tries="1")
    yield s
    s.stop()


def deliver_data(srv, msg):
    before = len(srv.mail_list(BOB))
    with srv.client("mx") as c:
        c.ehlo("client.example.net")
        r = c.mail("x@sender.test", [BOB], msg)
        assert r.code == 250, r
    lst = srv.mail_list(BOB)
    assert len(lst) == before + 1
    return srv.mail_cat(BOB, lst[-1][0]), lst[-1][1]


def deliver_bdat(srv, msg, cuts):
    before = len(srv.mail_list(BOB))
    with srv.client("mx") as c:
        c.ehlo("client.example.net")
        assert c.cmd("MAIL FROM:<x@sender.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % BOB).code == 250
        pos = 0
        cuts = list(cuts) + [len(msg)]
        for k, cut in enumerate(cuts):
            chunk = msg[pos:cut]
            last = k == len(cuts) - 1
            c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
            r = c.reply()
            assert r.code == 250, r
            pos = cut
    lst = srv.mail_list(BOB)
    assert len(lst) == before + 1
    return srv.mail_cat(BOB, lst[-1][0]), lst[-1][1]


def body_after_prefix(stored):
    rp, received, rest = split_prepended(stored)
    assert rp == b"<x@sender.test>", rp
    return rest


def ours(stored):
    """The Authentication-Results fields claiming our authserv-id (any case)."""
    out = []
    for line in stored.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"authentication-results:") and OURS.encode() in line.lower():
            out.append(line)
    return out


@pytest.mark.parametrize("pad", [b"(c)", b" ", b"\r\n ", b"(x\r\n y)"])
def test_forged_ar_behind_long_cfws_removed(srv, pad):
    # 1 KiB of CFWS before our authserv-id used to pass the forged field whole
    # (src/policy/authres.c: a field undecided after AR_HOLD_MAX passed).
    forged = b"Authentication-Results: " + pad * 1500 + b" " + OURS.upper().encode() + \
        b";\r\n\tdkim=pass header.d=bank.test;\r\n\tdmarc=pass header.from=bank.test"
    msg = make_message("ceo@bank.test", BOB, "pay now", "wire it\r\n",
                       extra_headers=[forged.decode()])
    stored, _ = deliver_data(srv, msg)
    assert b"dkim=pass header.d=bank.test" not in stored
    assert body_after_prefix(stored) == msg.replace(forged + b"\r\n", b"")
    assert len(ours(stored)) == 0 or all(b"bank.test" not in f for f in ours(stored))


CASES = [
    # our id in other case, on a continuation line, after a comment, at the
    # very end of the header with no body, beside a kept foreign one
    (b"Authentication-Results: (x) Mx.Example.Test; spf=pass\r\n", True),
    (b"Authentication-Results:\r\n\tmx.example.test;\r\n spf=pass\r\n", True),
    (b"Authentication-Results: \"mx.example.test\"; spf=pass\r\n", True),
    (b"Authentication-Results: mx.example.test.evil; spf=pass\r\n", False),
    (b"Authentication-Results: other.test; spf=pass\r\n", False),
]


@pytest.mark.parametrize("field,dropped", CASES)
@pytest.mark.parametrize("mode", ["data", "bdat"])
def test_ar_filter_byte_exact(srv, field, dropped, mode):
    head = b"From: <a@sender.test>\r\nTo: <bob@example.test>\r\nSubject: s\r\n"
    body = b"line1\r\n.dot\r\n..two\r\n8bit \x80\xff\r\n"
    msg = head + field + b"X-After: 1\r\n\r\n" + body
    want = msg.replace(field, b"") if dropped else msg
    if mode == "data":
        stored, size = deliver_data(srv, msg)
    else:
        # every chunk boundary inside the AR field, and an empty last chunk
        cuts = [len(head) + k for k in range(1, len(field), 3)] + [len(msg)]
        stored, size = deliver_bdat(srv, msg, cuts)
    assert size == len(stored)
    assert body_after_prefix(stored) == want


def test_ar_field_last_without_body(srv):
    msg = b"From: <a@sender.test>\r\nSubject: s\r\nAuthentication-Results: mx.example.test; spf=pass\r\n"
    stored, _ = deliver_data(srv, msg)
    assert body_after_prefix(stored) == b"From: <a@sender.test>\r\nSubject: s\r\n"


@pytest.mark.parametrize("size", [65536 - 300, 65536 + 300, 3 * 1024 * 1024 + 7])
def test_large_messages_byte_exact(srv, size):
    head = (b"From: <a@sender.test>\r\nTo: <bob@example.test>\r\nSubject: big\r\n"
            b"Authentication-Results: mx.example.test; dkim=pass\r\n"
            b"Authentication-Results: other.test; dkim=pass\r\n\r\n")
    line = b"0123456789abcdefghijklmnopqrstuvwxyz.\r\n"
    body = (line * (size // len(line) + 1))[:size - len(head) - 2] + b"\r\n"
    msg = head + body
    want = msg.replace(b"Authentication-Results: mx.example.test; dkim=pass\r\n", b"")
    stored, sz = deliver_data(srv, msg)
    assert sz == len(stored)
    assert body_after_prefix(stored) == want
    stored, sz = deliver_bdat(srv, msg, [len(head) - 30, len(head) + 65536])
    assert sz == len(stored)
    assert body_after_prefix(stored) == want


# ---- From: with CFWS after the "@" (RFC 5322 3.2.2, 4.4 obs-domain) ----

@pytest.fixture(scope="module")
def dmarc_mx(tmp_path_factory, tls_pair):
    from conftest import _new_server
    from dnsmasq import Dnsmasq
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"),
                [("TXT", "_dmarc.bank.test", "v=DMARC1; p=reject"),
                 ("TXT", "_dmarc.quar.test", "v=DMARC1; p=quarantine")])
    d.start()
    s = _new_server(tmp_path_factory, tls_pair, "dmarc", dns_resolver="%s:%d" % (d.host, d.port),
                    dns_timeout_ms=400, dns_tries=1)
    yield s
    s.stop()
    d.stop()


@pytest.mark.parametrize("from_value", ["ceo@ bank.test", "<ceo@\r\n bank.test>",
                                        "CEO <ceo@(the bank) bank.test>"])
def test_from_domain_after_cfws_gets_its_dmarc_policy(dmarc_mx, from_value):
    # The domain after "@ " was skipped: no From domain, dmarc=none, stored in
    # INBOX although bank.test publishes p=reject (RFC 7489 6.6.1).
    msg = (b"From: " + from_value.encode() + b"\r\nTo: <bob@example.test>\r\n"
           b"Subject: pay\r\nMessage-ID: <p@bank.test>\r\n\r\nwire it\r\n")
    before = len(dmarc_mx.mail_list(BOB))
    with dmarc_mx.client("mx") as c:
        c.ehlo("client.remote.test")
        r = c.mail("x@other.test", [BOB], msg, expect_ok=False)
    assert r.code == 550 and r.enh == "5.7.1", r
    assert len(dmarc_mx.mail_list(BOB)) == before


@pytest.mark.parametrize("size", [200, 65536 + 100, 2 * 1024 * 1024 + 3])
def test_quarantine_to_several_recipients_byte_exact(dmarc_mx, size):
    # DMARC quarantine: every local recipient's Junk, the content byte-exact
    # after the prefix, the sizes (mail list, IMAP RFC822.SIZE) the stored bytes
    head = (b"From: <x@quar.test>\r\nTo: <bob@example.test>\r\nSubject: q%d\r\n"
            b"Authentication-Results: MX.example.test; dmarc=pass\r\n\r\n" % size)
    line = b"quarantined content line .......................................\r\n"
    body = (line * (size // len(line) + 1))[:max(size - len(head) - 2, 0)] + b"\r\n"
    msg = head + body
    want = msg.replace(b"Authentication-Results: MX.example.test; dmarc=pass\r\n", b"")
    users = ["alice@example.test", "bob@example.test", "carol@example.test"]
    with dmarc_mx.client("mx") as c:
        c.ehlo("client.remote.test")
        r = c.mail("x@quar.test", users, msg)
        assert r.code == 250, r
    for u in users:
        lst = dmarc_mx.mail_list(u, "Junk")
        assert lst, u
        uid, sz = lst[-1][0], lst[-1][1]
        stored = dmarc_mx.mail_cat(u, uid, "Junk")
        assert sz == len(stored)
        rp, _, rest = split_prepended(stored)
        assert rp == b"<x@quar.test>"
        assert rest == want, u
        assert b"dmarc=fail" in stored.split(b"\r\n\r\n", 1)[0]
        assert all(b"subject: q%d" % size not in m.lower() for m in dmarc_mx.messages(u))


def test_quarantined_mail_reaches_idle_on_junk(dmarc_mx):
    # A delivery into Junk used to notify the INBOX's sessions only: an IDLE
    # on Junk (RFC 2177) never heard of the quarantined message.
    from test_imap_sync import select, wait_untagged
    user = "carol@example.test"

    def quarantine(subject):
        m = (b"From: <x@quar.test>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nq\r\n"
             % (user.encode(), subject.encode()))
        with dmarc_mx.client("mx") as c:
            c.ehlo("client.remote.test")
            r = c.mail("x@quar.test", [user], m)
            assert r.code == 250, r

    quarantine("first")  # Junk exists from here on
    c = dmarc_mx.imap_login(user)
    r = select(c, "Junk")
    n = int(next(l.split()[1] for l in r.untagged if l.endswith(" EXISTS")))
    tag = c.next_tag()
    c.send(tag + " IDLE\r\n")
    assert c.readline().startswith("+ "), "no continuation for IDLE"
    quarantine("second")
    wait_untagged(c, r"^\* %d EXISTS$" % (n + 1))
    c.send("DONE\r\n")
    c.close()


def test_long_from_display_name_keeps_dmarc_policy(dmarc_mx):
    # 9000 octets of display name, folded, then <ceo@bank.test> (p=reject):
    # the header reader used to keep 8 KiB of a field, cutting the domain off,
    # and the message was evaluated as "no From: domain" (dmarc=none) and stored.
    name = "\r\n ".join(["Chief Executive Officer of the Bank"] * 250)
    msg = ("From: \"%s\" <ceo@bank.test>\r\nTo: <bob@example.test>\r\nSubject: long from\r\n"
           "\r\nwire it\r\n" % name).encode()
    with dmarc_mx.client("mx") as c:
        c.ehlo("client.remote.test")
        r = c.mail("x@other.test", [BOB], msg, expect_ok=False)
    assert r.code == 550 and r.enh == "5.7.1", r


def test_from_over_the_field_limit_refused(dmarc_mx):
    # A From: over 64 KiB (RFC 5322 2.1.1 allows 998-octet lines) cannot be
    # read to its address: refused, so a long display name is no way around
    # a domain's p=reject, and nothing is stored.
    name = "\r\n ".join(["Chief Executive Officer of the Bank"] * 2000)
    msg = ("From: \"%s\" <ceo@bank.test>\r\nTo: <bob@example.test>\r\nSubject: longer\r\n"
           "\r\nwire it\r\n" % name).encode()
    with dmarc_mx.client("mx") as c:
        c.ehlo("client.remote.test")
        r = c.mail("x@other.test", [BOB], msg, expect_ok=False)
    assert r.code == 550 and r.enh == "5.7.1", r
    assert "From: header field over 65536 octets" in r.text, r
