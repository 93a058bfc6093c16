"""A second look at the IMAP server core as an attacker and a sloppy client
would see it (issue 7 review): literals at the edges, AUTHENTICATE edge
cases, clients that never read, connections that drop while a worker job is
in flight, mailbox-name and LIST-pattern attacks, RFC 9051 details."""
import base64
import os
import signal
import socket
import time

import pytest

from conftest import USERS, ClosedError, ImapClient, _new_server, imap_quote

ALICE = "alice@example.test"


def b64(s):
    return base64.b64encode(s.encode()).decode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "imaprev", auth_failure_delay_max=1,
                    imap_auth_plaintext_loopback="yes")
    yield s
    s.stop()


def login(srv, user=ALICE):
    c = srv.imap("imap")
    r = c.cmd("LOGIN %s %s" % (imap_quote(user), imap_quote(USERS[user])))
    assert r.ok, r
    return c


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def alive(srv):
    with srv.imap("imap") as c:
        assert c.cmd("NOOP").ok


# ---- LIST patterns: bounded work on a worker ----

def create_many(c, names):
    for i, n in enumerate(names):
        c.send(("m%d CREATE %s\r\n" % (i, imap_quote(n))).encode())
    for i in range(len(names)):
        r = c.read_response("m%d" % i)
        assert r.ok or "ALREADYEXISTS" in r.tagged, r


def list_literal(c, pattern):
    return c.cmd('LIST "" {%d+}\r\n%s' % (len(pattern), pattern))


def test_list_pathological_pattern_is_cheap(srv):
    """A pattern of alternating wildcards costs its length times each name's
    to match (every position stays alive): 240k octets against 200 names of
    250 octets was ~10^10 steps on a worker (two such commands wedge both
    workers for minutes). Runs of wildcards are one wildcard, and more other
    characters than a name can have match nothing: the reply is at once."""
    c = login(srv)
    create_many(c, ["p%03d%s" % (i, "a" * 246) for i in range(200)])
    r = list_literal(c, "*%" * 120000 + "b")   # answered within the client's timeout
    assert r.tagged.endswith("OK LIST completed") and r.untagged == [], r
    r = list_literal(c, "*%" * 120000 + "a")
    assert r.ok and len(r.untagged) == 200, r.tagged
    r = list_literal(c, "p000" + "a" * 246 + "*%" * 1000)
    assert r.ok and len(r.untagged) == 1, r
    r = list_literal(c, "p000" + "a" * 400 + "%")    # longer than any name can be
    assert r.ok and r.untagged == [], r
    c.close()


def test_list_wildcard_runs_match_as_before(srv):
    c = login(srv)
    create_many(c, ["w1", "w1/w2", "w1/w2/w3"])
    names = lambda r: sorted(l.rsplit(" ", 1)[1] for l in r.untagged)
    assert names(c.cmd('LIST "" "w1%%"')) == ["w1"]
    assert names(c.cmd('LIST "" "w1%*"')) == ["w1", "w1/w2", "w1/w2/w3"]
    assert names(c.cmd('LIST "" "w1/%%%"')) == ["w1/w2"]
    assert names(c.cmd('LIST "" "w1*%/w3"')) == ["w1/w2/w3"]
    assert names(c.cmd('LIST "w1/" "%"')) == ["w1/w2"]
    r = c.cmd('LIST "w1**" ""')    # the reference's root, as before
    assert r.untagged == ['* LIST (\\Noselect) "/" ""'], r
    c.close()


def test_list_pattern_budget(srv):
    """LIST-EXTENDED takes up to 64 patterns: their total (normalised) length
    is bounded, RFC 5530 LIMIT beyond."""
    c = login(srv)
    pats = " ".join('"%s%d"' % ("x%" * 120, i) for i in range(64))
    r = c.cmd("LIST () \"\" (%s)" % pats)
    assert r.tagged.endswith("NO [LIMIT] Too many or too long patterns"), r
    r = c.cmd('LIST () "" ("w1" "w1/%%" "nomatch*")')
    assert r.ok, r
    assert c.cmd("NOOP").ok
    c.close()
