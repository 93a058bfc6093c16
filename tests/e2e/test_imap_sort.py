"""IMAP SORT and UID SORT (RFC 5256 3), SORT=DISPLAY (RFC 5957), ESORT and
CONTEXT=SEARCH/CONTEXT=SORT (RFC 5267), PARTIAL (RFC 9394): imaptest's
groups for them, and exact responses on a small corpus (encoded subjects,
Re:/Fwd: prefixes, a missing Date, equal keys)."""
import os

import pytest

from conftest import imap_quote
from test_imaptest import IMAPTEST, IMAPTEST_DIR, run_imaptest
from test_imaptest import srv as itsrv  # noqa: F401 (the fixture: imaptest's server)

GROUPS = ["sort-addresses", "sort-arrival", "sort-date", "sort-display-from",
          "sort-display-to", "sort-size", "sort-subject", "sort-partial", "esort",
          "search-partial", "search-context-update", "search-context-update2",
          "search-context-update3"]


@pytest.mark.parametrize("group", GROUPS)
def test_imaptest_group(itsrv, group):
    assert os.access(IMAPTEST, os.X_OK), "no %s" % IMAPTEST
    rc, out = run_imaptest(itsrv, os.path.join(IMAPTEST_DIR, "tests", group), timeout=120)
    lines = [l for l in out.splitlines() if "individual commands failed" in l]
    assert lines, out[-3000:]
    failed = total = 0
    for l in lines:
        n_failed, n_total = l.split(":")[1].split()[0].split("/")
        failed += int(n_failed)
        total += int(n_total)
    assert failed == 0 and total > 0, out[-3000:]
    assert "Error:" not in out, out[-3000:]


# (internal date, message): encoded subjects, Re:/Fwd: prefixes, a missing
# Date (sorts by INTERNALDATE, RFC 5256 2.2), equal keys (ties by sequence
# number, RFC 5256 3)
CORPUS = [
    ("05-Jan-2020 00:00:00 +0000",
     b"From: Zed Alpha <carl@example.test>\r\nTo: dave@example.test\r\n"
     b"Cc: Yann <yann@example.test>\r\nSubject: Re: Hello\r\n"
     b"Date: Wed, 01 Jan 2020 10:00:00 +0000\r\n\r\none\r\n"),
    ("03-Jan-2020 00:00:00 +0000",
     b"From: alice@example.test\r\nTo: Bob <bob@example.test>\r\n"
     b"Subject: =?UTF-8?B?w4RwZmVs?=\r\n\r\ntwo, no Date field\r\n"),
    ("01-Jan-2020 00:00:00 +0000",
     b"From: =?UTF-8?Q?=C3=89mile?= <emile@example.test>\r\nTo: carl@example.test\r\n"
     b"Subject: Fwd: hello\r\nDate: Thu, 02 Jan 2020 08:00:00 +0100\r\n\r\nthree three three\r\n"),
    ("05-Jan-2020 00:00:00 +0000",
     b"From: bob@example.test\r\nTo: Alice <alice@example.test>\r\nSubject: Zebra\r\n"
     b"Date: Wed, 01 Jan 2020 10:00:00 +0000\r\n\r\nfour\r\n"),
]


@pytest.fixture(scope="module")
def sbox(server):
    from test_imap_store import append
    c = server.imap_login()
    assert c.cmd("CREATE sortbox").ok
    for date, m in CORPUS:
        r = append(c, "sortbox", m, "", date)
        assert r.ok, r
    r = c.cmd("SELECT sortbox")
    assert r.ok, r
    yield c
    c.close()


def one(c, line, prefix):
    r = c.cmd(line)
    assert r.ok, r
    got = [l for l in r.untagged if l.startswith(prefix)]
    assert len(got) == 1, r
    return got[0], r.tag


@pytest.mark.parametrize("crit,want", [
    ("SUBJECT", "2 1 3 4"),              # äpfel, hello (Re:), hello (Fwd:), zebra
    ("REVERSE SUBJECT", "4 1 3 2"),      # REVERSE leaves the tie-break alone
    ("ARRIVAL", "3 2 1 4"),
    ("REVERSE ARRIVAL", "1 4 2 3"),
    ("DATE", "1 4 3 2"),                 # 2 has no Date: its INTERNALDATE
    ("REVERSE DATE", "2 3 1 4"),
    ("FROM", "2 4 1 3"),                 # alice bob carl emile
    ("TO", "4 2 3 1"),                   # alice bob carl dave
    ("CC", "2 3 4 1"),                   # missing Cc is "" (first)
    ("DISPLAYFROM", "2 4 3 1"),          # alice@ bob@ Émile Zed Alpha
    ("DISPLAYTO", "4 2 3 1"),            # Alice Bob carl@ dave@
    ("SUBJECT REVERSE DATE", "2 3 1 4"),
    ("DATE SUBJECT", "1 4 3 2"),
])
def test_sort_keys(sbox, crit, want):
    line, _ = one(sbox, "SORT (%s) UTF-8 ALL" % crit, "* SORT")
    assert line == ("* SORT " + want).rstrip(), crit


def test_sort_size_and_search_keys(sbox):
    sizes = [len(m) for _, m in CORPUS]
    want = sorted(range(1, 5), key=lambda i: (sizes[i - 1], i))
    line, _ = one(sbox, "SORT (SIZE) US-ASCII ALL", "* SORT")
    assert line == "* SORT " + " ".join(map(str, want))
    line, _ = one(sbox, "SORT (SUBJECT) UTF-8 NOT 2 NOT BODY four", "* SORT")
    assert line == "* SORT 1 3"
    line, _ = one(sbox, "SORT (SUBJECT) UTF-8 BODY nothing-like-this", "* SORT")
    assert line == "* SORT"


def test_uid_sort_and_esort(sbox):
    r = sbox.cmd("UID FETCH 1:* (UID)")
    uids = [int(l.split("UID ")[1].rstrip(")")) for l in r.untagged if "FETCH" in l]
    order = [uids[i - 1] for i in (2, 1, 3, 4)]
    line, _ = one(sbox, "UID SORT (SUBJECT) UTF-8 ALL", "* SORT")
    assert line == "* SORT " + " ".join(map(str, order))
    # RFC 5267 3: MIN/MAX are the first/last in the sort order, ALL keeps it
    line, tag = one(sbox, "SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL", "* ESEARCH")
    assert line == '* ESEARCH (TAG "%s") MIN 2 MAX 4 COUNT 4 ALL 2,1,3:4' % tag
    line, tag = one(sbox, "SORT RETURN (COUNT) (SUBJECT) UTF-8 SUBJECT zzz", "* ESEARCH")
    assert line == '* ESEARCH (TAG "%s") COUNT 0' % tag
    line, tag = one(sbox, "SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL", "* ESEARCH")
    assert line == '* ESEARCH (TAG "%s") ALL 1,4,2:3' % tag


def test_partial(sbox):
    # RFC 9394 3.1 (RFC 5267 4.4): a range of the (sorted) result
    line, tag = one(sbox, "SORT RETURN (PARTIAL 2:3) (SUBJECT) UTF-8 ALL", "* ESEARCH")
    assert line == '* ESEARCH (TAG "%s") PARTIAL (2:3 1,3)' % tag
    line, tag = one(sbox, "SORT RETURN (PARTIAL -1:-2) (SUBJECT) UTF-8 ALL", "* ESEARCH")
    assert line == '* ESEARCH (TAG "%s") PARTIAL (-1:-2 3:4)' % tag
    line, tag = one(sbox, "SEARCH RETURN (PARTIAL 3:1 COUNT) ALL", "* ESEARCH")
    assert line == '* ESEARCH (TAG "%s") COUNT 4 PARTIAL (1:3 1:3)' % tag
    line, tag = one(sbox, "SEARCH RETURN (PARTIAL 5:9) ALL", "* ESEARCH")
    assert line == '* ESEARCH (TAG "%s") PARTIAL (5:9 NIL)' % tag


@pytest.mark.parametrize("line", [
    "SORT () UTF-8 ALL", "SORT (REVERSE) UTF-8 ALL", "SORT (SUBJECT FOO) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8", "SORT (SUBJECT)", "SORT SUBJECT UTF-8 ALL",
    "SORT RETURN (PARTIAL 1:*) (SUBJECT) UTF-8 ALL", "SORT RETURN (PARTIAL 0:3) (SUBJECT) UTF-8 ALL",
    "SEARCH RETURN (PARTIAL 1) ALL", "SEARCH RETURN (PARTIAL -1:3) ALL",
    "SEARCH RETURN (PARTIAL 1:2 ALL) ALL",
])
def test_sort_bad(sbox, line):
    r = sbox.cmd(line)
    assert r.status == "BAD", r


def test_sort_badcharset(sbox):
    r = sbox.cmd("SORT (SUBJECT) KOI8-R ALL")
    assert r.status == "NO" and r.text.startswith("[BADCHARSET (US-ASCII UTF-8)]"), r


def test_context_update(server):
    # RFC 5267 4: SEARCH RETURN (UPDATE) follows our STOREs, another
    # session's STORE, a new message (its body checked on a worker) and
    # expunges, until CANCELUPDATE
    from test_imap_store import append
    c = server.imap_login()
    o = server.imap_login()
    assert c.cmd("CREATE ctxbox").ok
    for i in range(4):
        body = b"apple" if i != 2 else b"pear"
        assert append(c, "ctxbox", b"Subject: m%d\r\n\r\n%s\r\n" % (i, body)).ok
    assert c.cmd("SELECT ctxbox").ok
    assert o.cmd("SELECT ctxbox").ok
    r = c.cmd("SEARCH RETURN (UPDATE COUNT) BODY apple SEEN")
    tag = r.tag
    assert r.ok and r.untagged == ['* ESEARCH (TAG "%s") COUNT 0' % tag], r
    r = c.cmd("STORE 1:3 +FLAGS.SILENT (\\Seen)")
    assert r.ok and r.untagged == ['* ESEARCH (TAG "%s") ADDTO (1 1:2)' % tag], r
    # another session's change arrives with the next command's updates
    assert o.cmd("STORE 4 +FLAGS.SILENT (\\Seen)").ok
    assert o.cmd("STORE 1 -FLAGS.SILENT (\\Seen)").ok
    r = c.cmd("NOOP")
    want = ['* ESEARCH (TAG "%s") REMOVEFROM (1 1)' % tag,
            '* ESEARCH (TAG "%s") ADDTO (2 4)' % tag]
    assert r.ok and [l for l in r.untagged if "ESEARCH" in l] == want, r
    # a new message from elsewhere: matched by its content
    assert append(o, "ctxbox", b"Subject: m4\r\n\r\napple pie\r\n", "(\\Seen)").ok
    assert append(o, "ctxbox", b"Subject: m5\r\n\r\nno fruit\r\n", "(\\Seen)").ok
    r = c.cmd("NOOP")
    assert r.ok and "* 6 EXISTS" in r.untagged, r
    assert [l for l in r.untagged if "ESEARCH" in l] == ['* ESEARCH (TAG "%s") ADDTO (3 5)' % tag], r
    # expunge: REMOVEFROM with the numbers before the EXPUNGE responses
    assert c.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)").ok
    r = c.cmd("EXPUNGE")
    assert r.ok and r.untagged[:2] == ['* ESEARCH (TAG "%s") REMOVEFROM (1 2)' % tag,
                                       "* 2 EXPUNGE"], r
    r = c.cmd('CANCELUPDATE "%s"' % tag)
    assert r.ok, r
    r = c.cmd("STORE 1 +FLAGS.SILENT (\\Seen)")
    assert r.ok and not [l for l in r.untagged if "ESEARCH" in l], r
    # SORT results are not kept up to date: answered with NOUPDATE (RFC 5267 4.2)
    r = c.cmd("SORT RETURN (UPDATE COUNT) (SUBJECT) UTF-8 ALL")
    assert r.ok and r.untagged == ['* NO [NOUPDATE "%s"] Result not kept up to date' % r.tag,
                                   '* ESEARCH (TAG "%s") COUNT 5' % r.tag], r
    # at most 8 updating results per session
    tags = [c.cmd("SEARCH RETURN (UPDATE) SEEN") for _ in range(9)]
    assert all(t.ok for t in tags)
    assert not any("NOUPDATE" in l for t in tags[:8] for l in t.untagged), tags
    assert tags[8].untagged[0] == '* NO [NOUPDATE "%s"] Result not kept up to date' % tags[8].tag
    r = c.cmd("STORE 1 -FLAGS.SILENT (\\Seen)")
    assert r.ok and len([l for l in r.untagged if "REMOVEFROM" in l]) == 8, r
    c.close()
    o.close()
