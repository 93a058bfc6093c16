"""The harness's own checks: the sanitizer reports a daemon writes are found
(conftest.sanitizer_reports, Postern.check_sanitizers), so that under
`make SAN=1` a report fails the test even when the daemon did not crash.

The report formats come from real programs built here with gcc's
-fsanitize=address/undefined (what `make SAN=1` uses), not from copies."""
import os
import subprocess

import pytest

from conftest import Postern, SanitizerReport, sanitizer_reports

BAD_C = r"""
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv)
{
	char *p = malloc(8);
	if (argc > 1 && strcmp(argv[1], "overflow") == 0)
		p[8] = 1;                       /* ASan: heap-buffer-overflow */
	if (argc > 1 && strcmp(argv[1], "shift") == 0) {
		int n = 40 + argc;
		return (1 << n) != 0;           /* UBSan: shift exponent too large */
	}
	if (argc > 1 && strcmp(argv[1], "leak") == 0) {
		p = NULL;                       /* LeakSanitizer at exit */
		return 0;
	}
	free(p);
	return 0;
}
"""


@pytest.fixture(scope="module")
def bad_prog(tmp_path_factory):
    d = tmp_path_factory.mktemp("san")
    src, prog = d / "bad.c", d / "bad"
    src.write_text(BAD_C)
    subprocess.run(["gcc", "-g", "-O0", "-fsanitize=address,undefined", "-o", str(prog), str(src)],
                   check=True, capture_output=True, timeout=120)
    return str(prog)


def run_bad(prog, what, **env):
    p = subprocess.run([prog, what], capture_output=True, timeout=60,
                       env=dict(os.environ, **env))
    return p.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("what,first", [
    ("overflow", "ERROR: AddressSanitizer: heap-buffer-overflow"),
    ("shift", "runtime error: shift exponent"),
    ("leak", "ERROR: LeakSanitizer: detected memory leaks"),
])
def test_real_reports_are_found(bad_prog, what, first):
    reports = sanitizer_reports(run_bad(bad_prog, what), leaks=True)
    assert len(reports) == 1, reports
    assert first in reports[0].splitlines()[0], reports[0]
    assert "SUMMARY: " in reports[0].splitlines()[-1], reports[0]
    assert "bad.c" in reports[0], "the report names the source line: %r" % reports[0]


def test_clean_run_and_daemon_lines_are_not_reports(bad_prog):
    assert sanitizer_reports(run_bad(bad_prog, "none"), leaks=True) == []
    # What a client can make the daemon log is not a report.
    log = ("---- start 1 ----\n"
           "2026-01-01T00:00:00.000Z info smtp: bad command \"x.c:1:2: runtime error: no\"\n"
           "2026-01-01T00:00:00.000Z info imap: \"==1==ERROR: AddressSanitizer: no\"\n")
    assert sanitizer_reports(log, leaks=True) == []


def test_leaks_can_be_left_out(bad_prog):
    err = run_bad(bad_prog, "leak")
    assert sanitizer_reports(err, leaks=False) == []
    assert len(sanitizer_reports(run_bad(bad_prog, "overflow"), leaks=False)) == 1


def test_daemon_log_report_fails_once(tmp_path, bad_prog):
    """A report in the daemon's log raises SanitizerReport with its text; the
    next check covers only what came after it."""
    srv = Postern(tmp_path)
    with open(srv.log_path, "w") as f:
        f.write("---- start 1 ----\nready\n" + run_bad(bad_prog, "shift"))
    with pytest.raises(SanitizerReport) as e:
        srv.check_sanitizers()
    assert "runtime error: shift exponent" in str(e.value)
    assert srv.log_path in str(e.value)
    srv.check_sanitizers()  # already reported
    with open(srv.log_path, "a") as f:
        f.write(run_bad(bad_prog, "overflow"))
    with pytest.raises(SanitizerReport, match="heap-buffer-overflow"):
        srv.check_sanitizers()


def test_log_path_files_are_read(tmp_path, bad_prog):
    """With ASAN_OPTIONS=log_path=P the report goes to P.PID, not to stderr."""
    srv = Postern(tmp_path)
    srv.env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:log_path=asan")
    p = subprocess.Popen([bad_prog, "overflow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=srv.dir, env=srv.env)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert sanitizer_reports(err.decode("utf-8", "replace")) == []
    srv.pids.append(p.pid)
    assert os.path.exists(os.path.join(srv.dir, "asan.%d" % p.pid))
    with pytest.raises(SanitizerReport, match="heap-buffer-overflow"):
        srv.check_sanitizers()
    srv.check_sanitizers()


def test_fetch_messages_equals_mail_cat(server):
    """Postern.fetch_messages (one IMAP session) returns, per UID, exactly the
    bytes `mail cat` prints: it stands in for one CLI run per message."""
    from conftest import make_message
    user = "bob@example.test"
    bodies = ["plain text\r\n", ".leading dot\r\n..two\r\n", "8-bit: \u00e9t\u00e9 \u2603\r\n",
              "no final newline", ("y" * 900 + "\r\n") * 80]
    with server.client("mx") as c:
        c.ehlo()
        for i, b in enumerate(bodies):
            r = c.mail("s@remote.test", [user], make_message("s@remote.test", user, "harness %d" % i, b))
            assert r.code == 250, r
    got = server.fetch_messages(user)
    want = {m[0]: server.mail_cat(user, m[0]) for m in server.mail_list(user)}
    assert len(want) == len(bodies)
    assert got == want
