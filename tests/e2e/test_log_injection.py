"""Log injection (issue 6, section 4): a client-supplied string that reaches
a log line (an AUTH user name, a HELO name, an address, a command) must not
be able to start a line of its own. The logger escapes control characters in
one place, so a forged "auth failed" line for another address (which fail2ban
would act on) never appears."""
import base64
import re

import pytest

from conftest import SOCK_TIMEOUT, client_tls_context
from test_pop3 import pop

FORGED_IP = "203.0.113.7"
FORGED = "\n2026-12-01T10:00:00.000Z info smtp auth failed client=%s user=forged" % FORGED_IP
FORGED_POP = FORGED.replace("smtp", "pop3")
# A log line of ours that names the forged address at its start.
FORGED_LINE = re.compile(r"^\S+ \w+ (smtp|pop3) auth failed client=" + re.escape(FORGED_IP), re.M)


def plain(user, password):
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def assert_clean(srv, since):
    log = srv.log()[since:]
    assert not FORGED_LINE.search(log), "forged log line written:\n" + log[-3000:]
    # Only whole lines: no CR, no other control character except the newlines
    # that end lines, and every line starts with a timestamp.
    for line in log.splitlines():
        if line.startswith("---- start"):
            continue
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) ", line), line
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line), repr(line)
    return log


def test_smtp_auth_user_cannot_forge_a_line(server):
    since = len(server.log())
    with server.client("submissions") as c:
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + plain("mallory" + FORGED, "wrong"))
        assert r.code == 535, r
        r = c.cmd("EHLO evil\rhost.example")  # a bare CR inside a command line
        r = c.cmd("MAIL FROM:<\"a\x01b\"@remote.example>")
    log = assert_clean(server, since)
    # The name did reach the log, escaped (else this test proved nothing).
    assert "mallory\\x0a2026-12-01T10:00:00.000Z info smtp auth failed client=" + FORGED_IP in log, log[-3000:]


def test_pop3_auth_user_cannot_forge_a_line(server):
    since = len(server.log())
    with pop(server, role="pop3s") as p:
        r = p.cmd("AUTH PLAIN " + plain("mallory" + FORGED_POP, "wrong"))
        assert r.startswith("-ERR"), r
    log = assert_clean(server, since)
    assert "mallory\\x0a2026-12-01T10:00:00.000Z info pop3 auth failed client=" + FORGED_IP in log, log[-3000:]
