"""URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH, RESETKEY,
URLFETCH with mechanism INTERNAL; every access identifier, tokens that do
not verify (altered, after RESETKEY, expired, another mailbox, a mailbox
re-created) answered NIL, sections, BINARY and BODYPARTSTRUCTURE, bad
syntax answered BAD. imaptest's three urlauth groups run in
test_imaptest.py."""
import re
import time

import pytest

from conftest import USERS, _new_server, imap_append, imap_quote

ALICE, BOB = "alice@example.test", "bob@example.test"

MSG = (b"From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
       b"--b1\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
       b"--b1\r\nContent-Type: application/octet-stream\r\n"
       b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8Ad29ybGQ=\r\n"
       b"--b1--\r\n")


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "urlauth", imap_auth_plaintext_loopback="yes")
    yield s
    s.stop()


def login(srv, user):
    c = srv.imap("imap")
    r = c.cmd("LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
    assert r.ok, r
    return c


def new_box(c, name):
    """A fresh mailbox holding MSG: its UID."""
    c.cmd("DELETE %s" % name)
    assert c.cmd("CREATE %s" % name).ok
    r = imap_append(c, name, MSG)
    assert r.ok, r
    return int(re.search(r"APPENDUID \d+ (\d+)", r.text).group(1))


def gen(c, rump):
    r = c.cmd("GENURLAUTH %s INTERNAL" % imap_quote(rump))
    assert r.ok, r
    assert len(r.untagged) == 1, r
    m = re.match(r"^\* GENURLAUTH (\S+)$", r.untagged[0])
    assert m, r
    url = m.group(1)
    assert url == astr(url.strip('"')), r
    url = url.strip('"')
    assert re.fullmatch(re.escape(rump) + r":internal:[0-9a-f]{40}", url), url
    return url


def astr(url):
    """The URL as the server writes it: an atom, quoted when it holds an
    atom-special (RFC 9051 9)."""
    return '"%s"' % url if re.search(r'[(){ %*"\\\]]', url) else url


def urlfetch_raw(c, args):
    """URLFETCH with its arguments as written: its untagged responses as
    (text, literals) pairs, once it completed OK."""
    tag = c.next_tag()
    c.send("%s URLFETCH %s\r\n" % (tag, args))
    untagged, tagged = c.read_response_raw(tag)
    assert tagged == tag + " OK URLFETCH completed", tagged
    return untagged


def fetch(c, url):
    """URLFETCH of one URL: its data (bytes) or None (NIL)."""
    untagged = urlfetch_raw(c, imap_quote(url))
    assert len(untagged) == 1, untagged
    text, lits = untagged[0]
    if text == ("* URLFETCH %s NIL" % astr(url)).encode():
        return None
    assert text == ("* URLFETCH %s {%d}" % (astr(url), len(lits[0]))).encode(), text
    return lits[0]


def test_capability(srv):
    c = login(srv, ALICE)
    r = c.cmd("CAPABILITY")
    caps = r.untagged[0].split()
    assert "URLAUTH" in caps and "URLAUTH=BINARY" in caps, r


def test_access_identifiers(srv):
    a, b = login(srv, ALICE), login(srv, BOB)
    uid = new_box(a, "ua1")
    base = "imap://alice@example.test/ua1/;uid=%d;urlauth=" % uid
    urls = {acc: gen(a, base + acc) for acc in
            ("anonymous", "authuser", "user+alice@example.test", "user+bob@example.test",
             "submit+alice@example.test")}
    # RFC 4467 3: anonymous and authuser: any session; user+NAME: NAME only;
    # submit+NAME: a submission server's (none here)
    want_a = {"anonymous": MSG, "authuser": MSG, "user+alice@example.test": MSG,
              "user+bob@example.test": None, "submit+alice@example.test": None}
    want_b = {"anonymous": MSG, "authuser": MSG, "user+alice@example.test": None,
              "user+bob@example.test": MSG, "submit+alice@example.test": None}
    for acc, url in urls.items():
        assert fetch(a, url) == want_a[acc], acc
        assert fetch(b, url) == want_b[acc], acc
    # the form "imap://user@host" and the full address in iuserinfo
    url = gen(a, "imap://alice%%40example.test@example.test/ua1/;uid=%d;urlauth=authuser" % uid)
    assert fetch(b, url) == MSG


def test_tokens_that_do_not_verify(srv):
    a, b = login(srv, ALICE), login(srv, BOB)
    uid = new_box(a, "ua2")
    url = gen(a, "imap://alice@example.test/ua2/;uid=%d;urlauth=authuser" % uid)
    assert fetch(b, url) == MSG
    # one character of the token altered
    last = url[-1]
    bad = url[:-1] + ("0" if last != "0" else "1")
    assert fetch(b, bad) is None
    # the URL altered (another UID) with the token kept
    assert fetch(b, url.replace(";uid=%d;" % uid, ";uid=%d;" % (uid + 1))) is None
    # a message that is gone
    assert a.cmd("SELECT ua2").ok
    assert a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    assert a.cmd("EXPUNGE").ok
    assert fetch(b, url) is None
    # RESETKEY: every URL of the old key stops verifying
    assert imap_append(a, "ua2", MSG).ok
    url2 = gen(a, "imap://alice@example.test/ua2/;uid=%d;urlauth=authuser" % (uid + 1))
    assert fetch(b, url2) == MSG
    r = a.cmd("RESETKEY ua2 INTERNAL")
    assert r.tagged == r.tag + " OK RESETKEY completed", r
    assert fetch(b, url2) is None
    url3 = gen(a, "imap://alice@example.test/ua2/;uid=%d;urlauth=authuser" % (uid + 1))
    assert url3 != url2 and fetch(b, url3) == MSG
    # RESETKEY without arguments: all mailboxes
    assert a.cmd("RESETKEY").ok
    assert fetch(b, url3) is None
    # a mailbox deleted and created again: its key went with it
    url4 = gen(a, "imap://alice@example.test/ua2/;uid=%d;urlauth=authuser" % (uid + 1))
    assert fetch(b, url4) == MSG
    new_box(a, "ua2")
    assert fetch(b, url4) is None
    # UIDVALIDITY in the URL that is not the mailbox's
    r = a.cmd("STATUS ua2 (UIDVALIDITY)")
    uv = int(re.search(r"UIDVALIDITY (\d+)", r.untagged[0]).group(1))
    good = gen(a, "imap://alice@example.test/ua2;uidvalidity=%d/;uid=1;urlauth=authuser" % uv)
    assert fetch(b, good) == MSG
    other = gen(a, "imap://alice@example.test/ua2;uidvalidity=%d/;uid=1;urlauth=authuser"
                % (uv + 1))
    assert fetch(b, other) is None
    r = a.cmd("RESETKEY nosuchbox")
    assert r.tagged == r.tag + " NO [NONEXISTENT] RESETKEY: no such mailbox", r


def test_expire(srv):
    a = login(srv, ALICE)
    uid = new_box(a, "ua3")
    past = gen(a, "imap://alice@example.test/ua3/;uid=%d;expire=2000-01-01T00:00:00Z"
               ";urlauth=authuser" % uid)
    assert fetch(a, past) is None
    future = gen(a, "imap://alice@example.test/ua3/;uid=%d;expire=2100-01-01T00:00:00+02:00"
                 ";urlauth=authuser" % uid)
    assert fetch(a, future) == MSG
    # the EXPIRE is signed: moved into the future, the token fails
    assert fetch(a, past.replace("2000-01-01", "2100-01-01")) is None


def test_other_users_mailboxes(srv):
    a, b = login(srv, ALICE), login(srv, BOB)
    uid = new_box(b, "ub1")
    # bob's authuser URL: alice may fetch it
    url = gen(b, "imap://bob@example.test/ub1/;uid=%d;urlauth=authuser" % uid)
    assert fetch(a, url) == MSG
    # alice cannot grant access to bob's mailbox
    r = a.cmd("GENURLAUTH %s INTERNAL"
              % imap_quote("imap://bob@example.test/ub1/;uid=%d;urlauth=anonymous" % uid))
    assert r.tagged == r.tag + " NO GENURLAUTH: the URL is not one of your mailboxes", r
    assert r.untagged == [], r
    # a URL into bob's mailbox with a made-up token, and into one that
    # does not exist: NIL, as for any URL that does not verify
    forged = ("imap://bob@example.test/ub1/;uid=%d;urlauth=anonymous:internal:" % uid) + "ab" * 20
    assert fetch(a, forged) is None
    nobox = "imap://bob@example.test/nosuch/;uid=1;urlauth=anonymous:internal:" + "ab" * 20
    assert fetch(a, nobox) is None
    r = a.cmd("GENURLAUTH %s INTERNAL"
              % imap_quote("imap://alice@example.test/nosuch/;uid=1;urlauth=anonymous"))
    assert r.tagged == r.tag + " NO [NONEXISTENT] GENURLAUTH: no such mailbox", r


def test_sections_and_binary(srv):
    a = login(srv, ALICE)
    uid = new_box(a, "ua4")
    base = "imap://alice@example.test/ua4/;uid=%d" % uid
    s1 = gen(a, base + "/;section=1;urlauth=authuser")
    assert fetch(a, s1) == b"first part"
    hdr = gen(a, base + "/;section=HEADER.FIELDS%20(SUBJECT);urlauth=authuser")
    assert fetch(a, hdr) == b"Subject: parts\r\n\r\n"
    part = gen(a, base + "/;section=2/;partial=0.8;urlauth=authuser")
    assert fetch(a, part) == b"aGVsbG8A"
    # ;PARTIAL= of the whole message, past the end, without a length, and
    # of HEADER.FIELDS (cut after the fields are picked)
    for rump, want in (("/;partial=6.4", MSG[6:10]), ("/;partial=%d" % (len(MSG) - 3), MSG[-3:]),
                       ("/;partial=%d.5" % len(MSG), b""), ("/;partial=99999.5", b""),
                       ("/;section=2/;partial=12", b"bGQ="),
                       ("/;section=HEADER.FIELDS%20(SUBJECT)/;partial=9.5", b"parts")):
        assert fetch(a, gen(a, base + rump + ";urlauth=authuser")) == want, rump
    s2 = gen(a, base + "/;section=2;urlauth=authuser")
    # RFC 5524: BODYPARTSTRUCTURE of the part, as stored
    untagged = urlfetch_raw(a, "(%s BODYPARTSTRUCTURE)" % s2)
    assert untagged == [(
        ("* URLFETCH %s (BODYPARTSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL "
         "\"base64\" 16 NIL NIL NIL NIL))" % s2).encode(), [])], untagged
    # BINARY (decoded, literal8 for the NUL), BODY (as stored), and with
    # BINARY the BODYPARTSTRUCTURE sizes of the decoded part (as Dovecot:
    # imaptest's urlauth-binary expects it)
    untagged = urlfetch_raw(a, "(%s BINARY BODY BODYPARTSTRUCTURE)" % s2)
    assert untagged == [(
        ("* URLFETCH %s (BODYPARTSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL "
         "\"base64\" 11 NIL NIL NIL NIL) BODY {16} BINARY ~{11})" % s2).encode(),
        [b"aGVsbG8Ad29ybGQ=", b"hello\x00world"])], untagged
    # BINARY of the whole message: the base64 part decoded, its field "binary"
    whole = gen(a, base + ";urlauth=authuser")
    untagged = urlfetch_raw(a, "(%s BINARY)" % whole)
    conv = MSG.replace(b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8Ad29ybGQ=",
                       b"Content-Transfer-Encoding: binary\r\n\r\nhello\x00world")
    assert untagged == [(("* URLFETCH %s (BINARY ~{%d})" % (whole, len(conv))).encode(),
                         [conv])], untagged
    # BINARY of a section that is not a part: NIL
    untagged = urlfetch_raw(a, "(%s BINARY)" % imap_quote(hdr))
    assert untagged == [(("* URLFETCH %s NIL" % astr(hdr)).encode(), [])], untagged
    # several URLs in one command, in order
    untagged = urlfetch_raw(a, "%s %s" % (s1, s1[:-1] + ("0" if s1[-1] != "0" else "1")))
    assert [t for t, _ in untagged] == [("* URLFETCH %s {10}" % s1).encode(),
                                        ("* URLFETCH %s0 NIL" % s1[:-1]).encode()
                                        if s1[-1] != "0" else
                                        ("* URLFETCH %s1 NIL" % s1[:-1]).encode()], untagged


def test_bad_syntax(srv):
    a = login(srv, ALICE)
    uid = new_box(a, "ua5")
    rump = "imap://alice@example.test/ua5/;uid=%d;urlauth=authuser" % uid
    url = gen(a, rump)
    cases = [
        ("URLFETCH", "Syntax: URLFETCH url [url ...]"),
        ("URLFETCH (%s FOO)" % url,
         "Syntax: URLFETCH url or (url [BODY] [BINARY] [BODYPARTSTRUCTURE])"),
        ("URLFETCH (%s)" % url,
         "Syntax: URLFETCH url or (url [BODY] [BINARY] [BODYPARTSTRUCTURE])"),
        ("GENURLAUTH %s" % imap_quote(rump),
         "Syntax: GENURLAUTH url mechanism [url mechanism ...]"),
        ("GENURLAUTH %s XYZ" % imap_quote(rump), "GENURLAUTH: unknown mechanism (INTERNAL only)"),
        ("GENURLAUTH %s INTERNAL" % imap_quote(url),
         "GENURLAUTH: the URL must be an absolute URLAUTH rump"),
        ("GENURLAUTH %s INTERNAL" % imap_quote("/ua5/;uid=1;urlauth=authuser"),
         "GENURLAUTH: the URL must be an absolute URLAUTH rump"),
        ("GENURLAUTH %s INTERNAL" % imap_quote(rump.replace("authuser", "nobody")),
         "GENURLAUTH: invalid URL"),
        ("RESETKEY ua5 FOO", "RESETKEY: unknown mechanism (INTERNAL only)"),
    ]
    for line, text in cases:
        r = a.cmd(line)
        assert r.tagged == "%s BAD %s" % (r.tag, text), (line, r)
        assert r.untagged == [], (line, r)
    # not before login
    c = srv.imap("imap")
    r = c.cmd("URLFETCH %s" % url)
    assert r.status == "BAD", r
    # a URL that does not parse is one that does not verify
    assert fetch(a, "imap://alice@example.test/ua5/;uid=x;urlauth=authuser:internal:" + "0" * 40) \
        is None


def test_keys_in_the_store(srv):
    """RFC 4467 7: one key per mailbox, 32 random octets, made on first
    use; it follows RENAME (the mailbox id is kept) and goes with DELETE."""
    a = login(srv, ALICE)
    uid = new_box(a, "ua6")

    def keys():
        db = srv.db()
        try:
            return db.execute("SELECT m.name, k.key FROM urlauth_keys k JOIN mailboxes m"
                              " ON m.id = k.mailbox_id JOIN users u ON u.id = k.user_id"
                              " WHERE u.localpart = 'alice' AND m.name LIKE 'ua6%'").fetchall()
        finally:
            db.close()

    assert keys() == []
    url = gen(a, "imap://alice@example.test/ua6/;uid=%d;urlauth=authuser" % uid)
    k = keys()
    assert len(k) == 1 and k[0][0] == "ua6" and len(k[0][1]) == 32, k
    gen(a, "imap://alice@example.test/ua6/;uid=%d;urlauth=anonymous" % uid)
    assert keys() == k  # the same key again
    assert a.cmd("RENAME ua6 ua6b").ok
    assert keys() == [("ua6b", k[0][1])]
    assert fetch(a, url) is None  # the URL names a mailbox that is gone
    url2 = gen(a, "imap://alice@example.test/ua6b/;uid=%d;urlauth=authuser" % uid)
    assert fetch(a, url2) == MSG and keys() == [("ua6b", k[0][1])]
    assert a.cmd("DELETE ua6b").ok
    assert keys() == []


def test_stalled_reader_bounded(srv):
    """A client that asks for 40 URLs of a 512 KB message and does not
    read: the daemon holds one response at a time (its RSS grows by far less
    than the 20 MB asked for), then gives every one of them once the client
    reads."""
    from conftest import rss_bound_kb, rss_kb
    from test_output_bounds import Reader, connect
    a = login(srv, ALICE)
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\r\n"
    big = b"From: a@example.test\r\nSubject: big\r\n\r\n" + line * (512 * 1024 // len(line))
    a.cmd("DELETE ua7")
    assert a.cmd("CREATE ua7").ok
    assert imap_append(a, "ua7", big).ok
    url = gen(a, "imap://alice@example.test/ua7/;uid=1;urlauth=authuser")
    s = connect(srv, "imap", small=False)  # the kernel's buffers: a few MB
    r = Reader(s)
    try:
        assert r.line().startswith("* OK")
        s.sendall(("x LOGIN %s %s\r\n" % (imap_quote(ALICE), imap_quote(USERS[ALICE]))).encode())
        r.until(b"x OK")
        r.line()
        pid = srv.proc.pid
        rss0 = rss_kb(pid)
        n = 40
        s.sendall(("y URLFETCH " + " ".join([url] * n) + "\r\n").encode())
        time.sleep(2)
        grown = rss_kb(pid) - rss0
        print("URLFETCH of %d x %d octets, stalled: RSS +%d KB" % (n, len(big), grown))
        assert grown < rss_bound_kb(pid), grown
        for _ in range(n):
            head = r.line()
            assert head == "* URLFETCH %s {%d}" % (url, len(big)), head[:200]
            while len(r.buf) < len(big) + 2:
                r.fill()
            assert r.buf[:len(big)] == big
            assert r.buf[len(big):len(big) + 2] == b"\r\n"
            r.buf = r.buf[len(big) + 2:]
        assert r.line() == "y OK URLFETCH completed"
    finally:
        s.close()


def test_rump_and_owner_tricks(srv):
    """Review probes: every part of the rump is signed as written; a token
    never carries over to another owner, mailbox spelling, access or
    section; the owner's case and "inbox" resolve to the same mailbox."""
    a, b = login(srv, ALICE), login(srv, BOB)
    uid = new_box(a, "ua7")
    new_box(b, "ua7")  # bob has a mailbox of the same name
    base = "imap://alice@example.test/ua7/;uid=%d;urlauth=" % uid
    url = gen(a, base + "user+alice@example.test")
    assert fetch(a, url) == MSG
    tok = url[url.index(":internal:"):]
    # the same token on another owner's mailbox of the same name
    assert fetch(b, "imap://bob@example.test/ua7/;uid=%d;urlauth=anonymous" % uid + tok) is None
    assert fetch(a, "imap://bob@example.test/ua7/;uid=%d;urlauth=user+alice@example.test"
                 % uid + tok) is None
    # access widened, section added, mailbox spelt otherwise, owner's case
    assert fetch(b, base + "anonymous" + tok) is None
    assert fetch(b, base + "user+bob@example.test" + tok) is None
    assert fetch(a, url.replace(";urlauth=", "/;section=1;urlauth=")) is None
    assert fetch(a, url.replace("/ua7/", "/UA7/")) is None
    assert fetch(a, url.replace("/ua7/", "/ua%37/")) is None
    assert fetch(a, url.replace("alice@", "ALICE@", 1)) is None
    # two ;urlauth= parts, ;expire= after ;urlauth=: not URLs, NIL
    for u in (base + "user+alice@example.test;urlauth=anonymous" + tok,
              base + "anonymous;expire=2100-01-01T00:00:00Z" + tok):
        assert fetch(a, u) is None, u
    # the token in upper case is the same token (HEXDIG)
    assert fetch(a, url[:-40] + url[-40:].upper()) == MSG
    # the owner in another case, and "inbox": the same mailbox (and key)
    r = a.cmd("SELECT INBOX")
    assert r.ok
    iuid = int(re.search(r"APPENDUID \d+ (\d+)", imap_append(a, "INBOX", MSG).text).group(1))
    for rump in ("imap://ALICE@Example.Test/inbox/;uid=%d;urlauth=authuser" % iuid,
                 "imap://alice@example.test/INBOX/;uid=%d;urlauth=authuser" % iuid):
        assert fetch(b, gen(a, rump)) == MSG, rump
    # bob cannot sign with an owner spelt in another case either
    r = b.cmd("GENURLAUTH %s INTERNAL" % imap_quote(
        "imap://Alice@example.test/ua7/;uid=%d;urlauth=anonymous" % uid))
    assert r.tagged == r.tag + " NO GENURLAUTH: the URL is not one of your mailboxes", r


def test_not_authenticated(srv):
    c = srv.imap("imap")
    for cmd in ("URLFETCH imap://alice@example.test/INBOX/;uid=1;urlauth=anonymous:internal:"
                + "ab" * 20, "GENURLAUTH imap://alice@example.test/INBOX/;uid=1;urlauth=anonymous"
                " INTERNAL", "RESETKEY"):
        r = c.cmd(cmd)
        assert r.tagged.startswith(r.tag + " BAD") or r.tagged.startswith(r.tag + " NO"), r
        assert r.untagged == [], r


def test_rename(srv):
    """The key follows the mailbox id (schema step 9): after RENAME the
    old URL names a mailbox that is gone (NIL), a mailbox created under the
    old name has no key of its own (NIL), and the renamed mailbox's URLs,
    signed with the key it kept, verify."""
    a, b = login(srv, ALICE), login(srv, BOB)
    a.cmd("DELETE ua8r")
    uid = new_box(a, "ua8")
    old = gen(a, "imap://alice@example.test/ua8/;uid=%d;urlauth=authuser" % uid)
    assert fetch(b, old) == MSG
    assert a.cmd("RENAME ua8 ua8r").ok
    assert fetch(b, old) is None
    assert new_box(a, "ua8") == uid  # the same UID in the new mailbox
    assert fetch(b, old) is None
    new = gen(a, "imap://alice@example.test/ua8r/;uid=%d;urlauth=authuser" % uid)
    assert fetch(b, new) == MSG
    assert fetch(b, old.replace("/ua8/", "/ua8r/")) is None  # the name is signed


def test_url_count_limit(srv):
    """URLAUTH_MAX_URLS (100) URLs per GENURLAUTH and per URLFETCH: 100 are
    answered (one response each, in order), 101 is BAD before any work."""
    a = login(srv, ALICE)
    uid = new_box(a, "ua9")
    rumps = ["imap://alice@example.test/ua9/;uid=%d/;section=%d;urlauth=authuser" % (uid, k % 2 + 1)
             for k in range(101)]
    r = a.cmd("GENURLAUTH " + " ".join("%s INTERNAL" % imap_quote(u) for u in rumps))
    assert r.tagged == r.tag + " BAD Syntax: GENURLAUTH url mechanism [url mechanism ...]", r
    assert r.untagged == [], r
    r = a.cmd("GENURLAUTH " + " ".join("%s INTERNAL" % imap_quote(u) for u in rumps[:100]))
    assert r.ok and len(r.untagged) == 1, r
    urls = [u.strip('"') for u in r.untagged[0].split()[2:]]
    assert len(urls) == 100 and all(u.startswith(rumps[k]) for k, u in enumerate(urls))
    untagged = urlfetch_raw(a, " ".join(imap_quote(u) for u in urls))
    assert len(untagged) == 100
    for k, (text, lits) in enumerate(untagged):
        assert text.startswith(("* URLFETCH %s {" % astr(urls[k])).encode()), text
        assert lits[0] == (b"first part" if k % 2 == 0 else b"aGVsbG8Ad29ybGQ="), (k, lits)
    r = a.cmd("URLFETCH " + " ".join(imap_quote(u) for u in urls + urls[:1]))
    assert r.tagged == r.tag + " BAD Syntax: URLFETCH url [url ...]", r
    assert r.untagged == [], r
