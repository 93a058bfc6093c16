"""End-to-end test infrastructure: start the real daemon on free loopback ports
with a generated config and talk to it over sockets.

The Makefile builds ./postern before pytest runs; nothing is built here.
Override the binary with POSTERN_BIN=/path/to/postern.

Every socket operation has a timeout and every wait loop is bounded.
"""
import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSTERN = os.environ.get("POSTERN_BIN", os.path.join(ROOT, "postern"))
DOMAIN = "example.test"
USERS = {
    "alice@example.test": "alice-Secret-1",
    "bob@example.test": "bob-Secret-2",
    "carol@example.test": "carol-Secret-3",
}
SOCK_TIMEOUT = 15.0
READY_TIMEOUT = 15.0
CLI_TIMEOUT = 30.0

# Options every test server gets; tests override with **opts.
BASE_OPTS = {
    "hostname": "mx.example.test",
    "log_level": "info",
    "workers": "2",
    "smtp_max_message_size": "32m",
    "smtp_max_recipients": "100",
    "smtp_timeout": "30",
    "smtp_data_timeout": "30",
    "smtp_max_errors": "20",
    "smtp_max_connections": "500",
    "smtp_max_connections_per_ip": "500",
    "smtp_auth_plaintext_loopback": "no",
    "auth_max_failures": "1000",
    "auth_failure_window": "60",
    # Test daemons never ask the machine's resolver (not on loopback): a closed
    # loopback port refuses every query at once (reverse DNS: "unknown").
    # DNS tests point dns_resolver at their own dnsmasq (tests/e2e/dnsmasq.py).
    "dns_resolver": "127.0.0.1:9",
    # The daemon started as root refuses an empty `user`: name the user the suite
    # runs as (root in CI: `user = root` keeps root deliberately).
    "user": pwd.getpwuid(os.geteuid()).pw_name,
}


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------
def client_tls_context():
    """The test server's certificate is self-signed: do not verify it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory):
    """One self-signed certificate for all test servers (faster than letting
    every daemon generate its own; one test covers the daemon's generation)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=mx.example.test"],
        check=True, capture_output=True, timeout=60)
    return cert, key


# --------------------------------------------------------------------------
# A line-oriented SMTP client that does exactly what it is told
# --------------------------------------------------------------------------
class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", lines[-1] if lines else "")
        self.enh = m.group(1) if m else None
        self.text = "\n".join(lines)

    def __repr__(self):
        return "Reply(%d %r)" % (self.code, self.lines)


class ClosedError(Exception):
    pass


class LineClient:
    """What the SMTP and the IMAP client share: a connected socket (TLS at once
    if asked), bytes out, a receive buffer filled within a deadline, and the
    checks for a closed connection and for unsolicited bytes. Subclasses read
    the greeting in _greeting()."""

    def __init__(self, host, port, tls=False, timeout=SOCK_TIMEOUT, read_greeting=True, source=None):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(timeout)
        if tls:
            self.sock = client_tls_context().wrap_socket(self.sock)
        self.buf = b""
        self._init_state()
        self.greeting = self._greeting() if read_greeting else None

    def _init_state(self):
        pass

    def _greeting(self):
        raise NotImplementedError

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline):
        if time.monotonic() > deadline:
            raise socket.timeout("no complete line within %.0fs; have %r" % (self.timeout, self.buf[:200]))
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ClosedError("connection closed; pending %r" % self.buf[:200])
        self.buf += chunk

    def _starttls(self):
        """Wraps the socket after the server's go-ahead; no byte may follow it."""
        assert self.buf == b"", "server sent bytes after its reply to STARTTLS: %r" % self.buf
        self.sock = client_tls_context().wrap_socket(self.sock)

    def expect_closed(self, timeout=5.0):
        """True if the server closes the connection within timeout (any pending
        bytes are collected into self.buf)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                    return True
                if not chunk:
                    return True
                self.buf += chunk
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def pending(self, wait=0.5):
        """Bytes that arrive within wait seconds without being asked for."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
            self.buf += chunk
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        finally:
            self.sock.settimeout(self.timeout)
        return self.buf


class Client(LineClient):
    """Raw SMTP client: send bytes, read replies. No hidden retries."""

    def _greeting(self):
        return self.reply()

    def readline(self):
        deadline = time.monotonic() + self.timeout
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        lines = []
        for _ in range(1000):
            line = self.readline()
            if not re.match(r"^\d{3}[ -]", line) and not re.match(r"^\d{3}$", line):
                raise AssertionError("malformed reply line %r (so far %r)" % (line, lines))
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(int(line[:3]), lines)
        raise AssertionError("reply too long")

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def ehlo(self, name="client.example.net"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, r
        return [l.split(" ", 1)[0].upper() for l in r.lines[1:]], r

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.code == 220, r
        self._starttls()
        return r

    def auth_plain(self, user, password):
        import base64
        tok = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        return self.cmd("AUTH PLAIN " + tok)

    def auth_login(self, user, password):
        import base64
        r = self.cmd("AUTH LOGIN")
        if r.code != 334:
            return r
        r = self.cmd(base64.b64encode(user.encode()).decode())
        if r.code != 334:
            return r
        return self.cmd(base64.b64encode(password.encode()).decode())

    def data(self, message):
        """DATA with dot-stuffing; message is bytes with CRLF line ends.
        Returns the reply to the final dot (or to DATA if it was not 354)."""
        r = self.cmd("DATA")
        if r.code != 354:
            return r
        self.send(dot_stuff(message) + b".\r\n")
        return self.reply()

    def mail(self, mail_from, rcpts, message, mail_params="", expect_ok=True):
        r = self.cmd("MAIL FROM:<%s>%s" % (mail_from, (" " + mail_params) if mail_params else ""))
        if expect_ok:
            assert r.code == 250, r
        for rc in rcpts:
            rr = self.cmd("RCPT TO:<%s>" % rc)
            if expect_ok:
                assert rr.code == 250, (rc, rr)
        return self.data(message)


# --------------------------------------------------------------------------
# A raw IMAP client: tagged commands, responses as lines (literals inline)
# --------------------------------------------------------------------------
def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapResponse:
    def __init__(self, tag, untagged, tagged):
        self.tag = tag
        self.untagged = untagged  # ["* ..."] (literals joined in, as bytes decoded)
        self.tagged = tagged      # "tag OK ..." line
        parts = tagged.split(" ", 2)
        self.status = parts[1] if len(parts) > 1 else ""
        self.text = parts[2] if len(parts) > 2 else ""
        self.ok = self.status == "OK"

    def __repr__(self):
        return "ImapResponse(%r, %r)" % (self.untagged, self.tagged)


class ImapClient(LineClient):
    """Raw IMAP client: send lines, read responses. No hidden retries."""

    def _init_state(self):
        self.n = 0

    def _greeting(self):
        return self.readline()

    def _response_line(self):
        """One response line as bytes, literals kept apart: ([the line's
        pieces, each but the last ending in {N}], [the N-byte literals])."""
        deadline = time.monotonic() + self.timeout
        pieces, lits = [], []
        while True:
            while b"\r\n" not in self.buf:
                self._fill(deadline)
            line, self.buf = self.buf.split(b"\r\n", 1)
            pieces.append(line)
            m = re.search(rb"\{(\d+)\}$", line)
            if not m:
                return pieces, lits
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill(deadline)
            lits.append(self.buf[:n])
            self.buf = self.buf[n:]

    def readline(self):
        """One response line; a literal {N} at its end is read and joined in."""
        pieces, lits = self._response_line()
        out = pieces[0]
        for lit, piece in zip(lits, pieces[1:]):
            out += b"\r\n" + lit + piece
        return out.decode("utf-8", "replace")

    def next_tag(self):
        self.n += 1
        return "a%03d" % self.n

    def read_response(self, tag):
        untagged = []
        for _ in range(1000000):
            line = self.readline()
            if line.startswith(tag + " "):
                return ImapResponse(tag, untagged, line)
            untagged.append(line)
        raise AssertionError("response too long")

    def cmd(self, line):
        tag = self.next_tag()
        self.send(tag + " " + line + "\r\n" if isinstance(line, str) else tag.encode() + b" " + line + b"\r\n")
        return self.read_response(tag)

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.ok, r
        self._starttls()
        return r

    def read_response_raw(self, tag):
        """Like read_response, with the bytes kept exact: (untagged, tagged
        line), each untagged response a (text, [literal bytes]) pair whose
        text holds {N} where each literal stood."""
        untagged = []
        while True:
            pieces, lits = self._response_line()
            text = b"".join(pieces)
            if text.startswith(tag.encode() + b" "):
                return untagged, text.decode("utf-8", "replace")
            untagged.append((text, lits))


def dot_stuff(message):
    if isinstance(message, str):
        message = message.encode("utf-8")
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", message)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def crlf(text):
    """Normalize any line ends to CRLF; returns bytes."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return re.sub(rb"\r?\n", b"\r\n", text)


def make_message(frm, to, subject, body, extra_headers=(), message_id=True, date=True):
    h = ["From: <%s>" % frm, "To: <%s>" % to, "Subject: %s" % subject]
    if date:
        h.append("Date: Mon, 01 Jan 2024 00:00:00 +0000")
    if message_id:
        h.append("Message-ID: <%s.%d@client.example.net>" % (subject.replace(" ", "-"), random.getrandbits(48)))
    h.extend(extra_headers)
    return crlf("\r\n".join(h) + "\r\n\r\n" + body)


POLICY_FIELDS = (b"authentication-results:", b"arc-seal:", b"arc-message-signature:",
                 b"arc-authentication-results:", b"dkim-signature:",
                 # src/filter (issue 11): the spam score and its reasons
                 b"x-spam-status:", b"x-spam-report:")


def skip_policy_fields(raw):
    """raw without the fields sender authentication (src/policy) and the filter
    (src/filter) put between Return-Path and Received: Authentication-Results,
    an ARC set, DKIM-Signature, X-Spam-Status/Report."""
    while raw[:40].lower().startswith(POLICY_FIELDS):
        pos = raw.index(b"\r\n") + 2
        while raw[pos:pos + 1] in (b" ", b"\t"):
            pos = raw.index(b"\r\n", pos) + 2
        raw = raw[pos:]
    return raw


def unfold(field):
    """A header field on one line: each CRLF and the white space after it
    become one space (RFC 5322 2.2.3)."""
    return re.sub(rb"\r\n[ \t]+", b" ", field)


def header_fields(stored, name):
    """The fields called name (bytes, b"DKIM-Signature") in the header section
    of a stored message, whole ("Name: value") and unfolded, in order."""
    head = stored.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return [unfold(m) for m in
            re.findall(rb"(?im)^" + re.escape(name) + rb":.*\r\n(?:[ \t].*\r\n)*", head)]


def auth_results(stored):
    """The Authentication-Results fields of a stored message, unfolded."""
    return header_fields(stored, b"Authentication-Results")


def resinfo(ar, method=None):
    """The resinfo strings (after the authserv-id) of one unfolded
    Authentication-Results field (RFC 8601 2.2); with method (b"dmarc" ...),
    only that method's."""
    body = ar.split(b":", 1)[1]
    parts = [p.strip() for p in body.split(b";")[1:]]
    return [p.decode() for p in parts if method is None or p.startswith(method + b"=")]


def split_prepended(stored):
    """Splits a stored message into (Return-Path value, [Received header bytes], rest).
    postern prepends exactly "Return-Path: <...>\\r\\n" then one Received header
    (possibly folded). Raises AssertionError if the stored message does not
    start that way."""
    assert stored.startswith(b"Return-Path: <"), "stored message does not begin with Return-Path: %r" % stored[:200]
    eol = stored.index(b"\r\n")
    rp = stored[len(b"Return-Path: "):eol]
    rest = skip_policy_fields(stored[eol + 2:])
    assert rest.startswith(b"Received:"), "no Received header after Return-Path: %r" % rest[:200]
    # The Received header: its first line plus continuation lines (start with WSP).
    pos = rest.index(b"\r\n") + 2
    for _ in range(100):
        if rest[pos:pos + 1] in (b" ", b"\t"):
            pos = rest.index(b"\r\n", pos) + 2
        else:
            break
    return rp, rest[:pos], rest[pos:]


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------
def _random_loopback():
    return "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255), random.randint(2, 254))


def _free_ports(host, n):
    """n distinct free TCP ports on host (bind port 0; the small race until the
    daemon binds is made unlikely by the random 127.x.y.z address)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


ALL_SERVERS = []

# --------------------------------------------------------------------------
# Sanitizer reports
# --------------------------------------------------------------------------
# Under `make SAN=1` (ASan + UBSan, see the Makefile) the daemon writes its
# reports to stderr, which is its log file here, unless ASAN_OPTIONS /
# UBSAN_OPTIONS / LSAN_OPTIONS name a log_path (then to LOG_PATH.PID). ASan
# errors halt the daemon (halt_on_error=1 is ASan's default); UBSan's
# "runtime error" is printed and the daemon goes on (the default, as the
# Makefile does not pass -fno-sanitize-recover), and LeakSanitizer reports at
# exit. Neither is a crash, so without this check a test would pass over them.
# The check reads what each daemon wrote since the last check: after every
# test (so the report fails the test that ran when it was written), when a
# daemon is stopped or killed, and in the fixtures' teardown. A CLI run that
# printed a report fails too. POSTERN_SAN_LEAKS=0 leaves LeakSanitizer reports
# out of the check (they are still in the log).
SAN_REPORT = re.compile(
    r"^(?:==\d+==\s*ERROR: (?:AddressSanitizer|LeakSanitizer)\b"
    r"|\S+:\d+:\d+: runtime error: "
    r"|SUMMARY: (?:AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer)\b)", re.M)
SAN_LEAKS = os.environ.get("POSTERN_SAN_LEAKS", "1") != "0"
SAN_REPORT_MAX = 12000


# AddressSanitizer keeps freed blocks in a quarantine before it reuses them
# (256 MB by default), so a sanitized daemon's resident memory grows with what
# it freed, not only with what it holds: a test that bounds RSS failed when a
# busy module had freed 74 MB since its baseline. Test daemons run with a
# quarantine of ASAN_QUARANTINE_MB (still thousands of freed blocks between a
# free and their reuse), and rss_bound_kb allows for it.
ASAN_QUARANTINE_MB = 16


def rss_kb(pid, field="VmRSS"):
    """A field of /proc/PID/status in KB (VmRSS, RssAnon)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


def sanitized(pid):
    """Whether the daemon PID runs under AddressSanitizer."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def rss_bound_kb(pid, kb=8 * 1024):
    """What a bounded session may add to RSS: kb; under AddressSanitizer twice
    that (its redzones) plus its quarantine. Unbounded output was hundreds of
    MB either way."""
    return 2 * kb + ASAN_QUARANTINE_MB * 1024 if sanitized(pid) else kb


class SanitizerReport(Exception):
    """A sanitizer report in a daemon's output. Not an AssertionError, so that
    code which tolerates a failed stop (make_server's teardown) passes it on."""


def sanitizer_reports(text, leaks=None):
    """The sanitizer reports in text, each from its first line to its SUMMARY
    line (or a bounded excerpt), [] if none."""
    if leaks is None:
        leaks = SAN_LEAKS
    out = []
    pos = 0
    while True:
        m = SAN_REPORT.search(text, pos)
        if not m:
            return out
        start = m.start()
        summary = text.find("SUMMARY: ", start)
        end = text.find("\n", summary) if summary >= 0 else -1
        end = len(text) if end < 0 else end
        report = text[start:end]
        pos = max(end, m.end())
        if not leaks and "LeakSanitizer" in report.splitlines()[0] + report.splitlines()[-1]:
            continue
        out.append(report[:SAN_REPORT_MAX] + ("\n[... report cut]" if len(report) > SAN_REPORT_MAX else ""))


def _san_log_paths(env, cwd):
    """log_path values from the sanitizer option variables of env."""
    paths = set()
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        for opt in re.split(r"[:,\s]+", env.get(var, "")):
            if opt.startswith("log_path="):
                v = opt[len("log_path="):].strip("'\"")
                if v and v not in ("stderr", "stdout"):
                    paths.add(os.path.join(cwd, v))
    return paths


class Postern:
    def __init__(self, workdir, tls_pair=None, data_dir=None, **opts):
        self.dir = str(workdir)
        self.host = _random_loopback()
        self.ports = dict(zip(("mx", "submission", "submissions", "pop3", "pop3s", "imap", "imaps"),
                              _free_ports(self.host, 7)))
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.conf = os.path.join(self.dir, "postern.conf")
        self.log_path = os.path.join(self.dir, "postern.log")
        self.proc = None
        self.env = None  # the daemon's environment (None: ours)
        self.starts = 0
        self.pids = []          # every daemon process started (sanitizer log_path files)
        self._san_offset = 0    # log bytes already checked for sanitizer reports
        self._san_files = {}    # log_path file -> bytes already checked
        o = dict(BASE_OPTS)
        o["data_dir"] = self.data_dir
        o["smtp_listen"] = "%s:%d" % (self.host, self.ports["mx"])
        o["submission_listen"] = "%s:%d" % (self.host, self.ports["submission"])
        o["submissions_listen"] = "%s:%d" % (self.host, self.ports["submissions"])
        o["pop3_listen"] = "%s:%d" % (self.host, self.ports["pop3"])
        o["pop3s_listen"] = "%s:%d" % (self.host, self.ports["pop3s"])
        o["imap_listen"] = "%s:%d" % (self.host, self.ports["imap"])
        o["imaps_listen"] = "%s:%d" % (self.host, self.ports["imaps"])
        if tls_pair:
            o["tls_cert"], o["tls_key"] = tls_pair
        o.update({k: str(v) for k, v in opts.items() if v is not None})
        for k in [k for k, v in opts.items() if v is None]:
            o.pop(k, None)
        self.opts = o
        with open(self.conf, "w") as f:
            f.write("# generated by tests/e2e/conftest.py\n")
            for k, v in o.items():
                f.write("%s = %s\n" % (k, v))
        ALL_SERVERS.append(self)

    # ---- CLI ----
    def cli(self, *args, input=None, check=True, timeout=CLI_TIMEOUT):
        """Runs `postern -c CONF ARGS...`; returns CompletedProcess with bytes."""
        if isinstance(input, str):
            input = input.encode("utf-8")
        cmd = [POSTERN, "-c", self.conf] + [str(a) for a in args]
        p = subprocess.run(cmd, input=input if input is not None else b"", capture_output=True,
                           timeout=timeout)
        reports = sanitizer_reports(p.stderr.decode("utf-8", "replace"))
        if reports:
            raise SanitizerReport("sanitizer report from `%s` (exit %d):\n%s" % (
                " ".join(cmd), p.returncode, "\n\n".join(reports)))
        if check and p.returncode != 0:
            raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s" % (
                " ".join(cmd), p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace")))
        return p

    def cli_out(self, *args, **kw):
        return self.cli(*args, **kw).stdout.decode("utf-8", "replace")

    def setup_accounts(self, users=USERS):
        self.cli("domain", "add", DOMAIN)
        for addr, pw in users.items():
            self.cli("user", "add", addr, input=pw + "\n")

    def mail_list(self, user, mailbox=None):
        """[(uid, size, internaldate, flags)]"""
        args = ["mail", "list", user] + ([mailbox] if mailbox else [])
        out = []
        for line in self.cli_out(*args).splitlines():
            if not line.strip():
                continue
            parts = line.split(None, 3)
            assert len(parts) >= 3 and parts[0].isdigit(), "bad `mail list` line %r" % line
            out.append((int(parts[0]), int(parts[1]), int(parts[2]), parts[3] if len(parts) > 3 else ""))
        return out

    def mail_cat(self, user, uid, mailbox=None):
        args = ["mail", "cat", user, str(uid)] + ([mailbox] if mailbox else [])
        return self.cli(*args).stdout

    def messages(self, user, mailbox=None):
        """All stored messages of user's mailbox as bytes, in UID order."""
        return [self.mail_cat(user, m[0], mailbox) for m in self.mail_list(user, mailbox)]

    def fetch_messages(self, user, mailbox="INBOX", password=None):
        """{uid: stored message bytes} of user's mailbox, all in one IMAP
        session (EXAMINE, UID FETCH 1:* BODY.PEEK[]): the bytes `mail cat`
        prints, without one CLI process per message (a few hundred ms each
        under the sanitizers). The CLI's timeout per response: a daemon busy
        with thousands of fresh messages may take long to log in."""
        with self.imap_login(user, password, timeout=CLI_TIMEOUT) as c:
            r = c.cmd("EXAMINE " + imap_quote(mailbox))
            assert r.ok, r
            tag = c.next_tag()
            c.send(tag + " UID FETCH 1:* (UID BODY.PEEK[])\r\n")
            untagged, tagged = c.read_response_raw(tag)
            assert tagged.split(" ", 2)[1] == "OK", tagged
            c.cmd("LOGOUT")
        out = {}
        for text, lits in untagged:
            m = re.search(rb"\bUID (\d+)", text)
            if not re.match(rb"^\* \d+ FETCH ", text) or not m:
                continue
            assert len(lits) == 1 and b"BODY[] {" in text, "unexpected FETCH response %r" % text[:200]
            out[int(m.group(1))] = lits[0]
        return dict(sorted(out.items()))

    def count(self, user):
        return len(self.mail_list(user))

    def queue(self):
        return [l for l in self.cli_out("queue", "list").splitlines() if l.strip()]

    def db(self):
        import sqlite3
        return sqlite3.connect("file:%s?mode=ro" % os.path.join(self.data_dir, "postern.db"), uri=True,
                               timeout=10)

    @contextlib.contextmanager
    def db_rw(self):
        """A writable connection in one transaction, closed after (to damage
        or age rows: the daemon stopped, or not minding)."""
        import sqlite3
        db = sqlite3.connect(os.path.join(self.data_dir, "postern.db"), timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def db_exec(self, *sqls):
        """Runs sqls in one transaction (db_rw)."""
        with self.db_rw() as db:
            for sql in sqls:
                db.execute(sql)

    # ---- process ----
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self):
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        logf = open(self.log_path, "ab")
        logf.write(b"---- start %d ----\n" % self.starts)
        logf.flush()
        env = dict(self.env if self.env is not None else os.environ)
        # UBSan prints one line per error by default; the stack says who called.
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        asan = env.get("ASAN_OPTIONS", "")
        if "quarantine_size_mb" not in asan:
            env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + \
                "quarantine_size_mb=%d" % ASAN_QUARANTINE_MB
        self.proc = subprocess.Popen([POSTERN, "-c", self.conf, "serve"], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf, cwd=self.dir, env=env)
        self.pids.append(self.proc.pid)
        logf.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        marker = "---- start %d ----" % self.starts
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("postern serve exited with %s before ready; log:\n%s" % (
                    self.proc.returncode, self.log()))
            log = self.log()
            if "ready" in log[log.rfind(marker):] and self._ports_accept():
                return
            time.sleep(0.05)
        raise AssertionError("postern not ready within %.0fs; log:\n%s" % (timeout, self.log()))

    def _ports_accept(self):
        for port in self.ports.values():
            try:
                socket.create_connection((self.host, port), timeout=1).close()
            except OSError:
                return False
        return True

    def check_sanitizers(self):
        """Raises SanitizerReport if the daemon wrote a sanitizer report (to its
        log, or to log_path files) since the last check."""
        reports = []
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._san_offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        # Only whole lines: a report being written is checked next time.
        cut = data.rfind(b"\n") + 1 if self.proc is not None and self.proc.poll() is None else len(data)
        self._san_offset += cut
        reports += sanitizer_reports(data[:cut].decode("utf-8", "replace"))
        env = self.env if self.env is not None else os.environ
        for base in _san_log_paths(env, self.dir):
            for pid in self.pids:
                fn = "%s.%d" % (base, pid)
                try:
                    with open(fn, "rb") as f:
                        f.seek(self._san_files.get(fn, 0))
                        more = f.read()
                except FileNotFoundError:
                    continue
                self._san_files[fn] = self._san_files.get(fn, 0) + len(more)
                reports += ["(%s)\n%s" % (fn, r) for r in sanitizer_reports(more.decode("utf-8", "replace"))]
        if reports:
            raise SanitizerReport("postern (%s, log %s) wrote %d sanitizer report(s):\n%s" % (
                self.host, self.log_path, len(reports), "\n\n".join(reports)))

    def stop(self, timeout=10.0):
        """SIGTERM by PID, SIGKILL after timeout. Returns the exit status.
        Raises SanitizerReport if the daemon wrote one (see check_sanitizers)."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.check_sanitizers()
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.check_sanitizers()
            raise AssertionError("postern did not exit within %.0fs of SIGTERM" % timeout)
        self.check_sanitizers()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            self.check_sanitizers()

    def restart(self):
        self.stop()
        return self.start()

    # ---- clients ----
    def client(self, role="mx", tls=None, **kw):
        if tls is None:
            tls = role == "submissions"
        return Client(self.host, self.ports[role], tls=tls, **kw)

    def imap(self, role="imap", tls=None, **kw):
        """A raw IMAP client (ImapClient) on the imap (STARTTLS) or imaps role."""
        if tls is None:
            tls = role == "imaps"
        return ImapClient(self.host, self.ports[role], tls=tls, **kw)

    def imap_login(self, user="alice@example.test", password=None, role="imaps", **kw):
        """A raw IMAP client logged in (over implicit TLS by default)."""
        c = self.imap(role, **kw)
        if role == "imap":
            c.starttls()
        r = c.cmd("LOGIN %s %s" % (imap_quote(user), imap_quote(password or USERS[user])))
        assert r.ok, r
        return c

    def imaplib(self, role="imaps"):
        """A Python imaplib client (not logged in)."""
        import imaplib
        if role == "imaps":
            return imaplib.IMAP4_SSL(self.host, self.ports[role], ssl_context=client_tls_context(),
                                     timeout=SOCK_TIMEOUT)
        return imaplib.IMAP4(self.host, self.ports[role], timeout=SOCK_TIMEOUT)

    def authed(self, user="alice@example.test", password=None, role="submission"):
        """A submission session after EHLO, STARTTLS (587), EHLO, AUTH PLAIN."""
        c = self.client(role)
        c.ehlo()
        if role == "submission":
            c.starttls()
            c.ehlo()
        r = c.auth_plain(user, password or USERS[user])
        assert r.code == 235, r
        return c


def _new_server(tmp_path_factory, tls_pair, name, accounts=True, start=True, **opts):
    d = tmp_path_factory.mktemp(name)
    srv = Postern(d, tls_pair, **opts)
    if accounts:
        srv.setup_accounts()
    if start:
        srv.start()
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory, tls_pair):
    """A running daemon shared by a test module, with example.test and alice,
    bob, carol."""
    srv = _new_server(tmp_path_factory, tls_pair, "postern")
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path_factory, tls_pair):
    """Factory for a private daemon with option overrides:
    make_server(smtp_timeout=2, start=True, accounts=True)."""
    made = []

    def make(name="postern", accounts=True, start=True, **opts):
        srv = _new_server(tmp_path_factory, tls_pair, name, accounts=accounts, start=start, **opts)
        made.append(srv)
        return srv

    yield make
    reports = []
    for srv in made:
        try:
            srv.stop()
        except AssertionError as e:
            print(e)
        except SanitizerReport as e:
            reports.append(str(e))
    if reports:
        raise SanitizerReport("\n\n".join(reports))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach what each daemon logged during the test to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when not in ("setup", "call") or not rep.failed:
        return
    offsets = getattr(item, "_postern_offsets", {})
    for s in ALL_SERVERS:
        text = s.log()[offsets.get(id(s), 0):]
        if text:
            rep.sections.append(("postern log %s (%s)" % (s.dir, s.host), text[-20000:]))


@pytest.fixture(autouse=True)
def _log_offsets(request):
    request.node._postern_offsets = {id(s): len(s.log()) for s in ALL_SERVERS}
    yield
    # Whatever a daemon wrote during this test, whether it still runs, was
    # stopped by the test itself (signals by PID) or is stopped by a fixture.
    reports = []
    for s in ALL_SERVERS:
        try:
            s.check_sanitizers()
        except SanitizerReport as e:
            reports.append(str(e))
    if reports:
        raise SanitizerReport("\n\n".join(reports))


@pytest.fixture(autouse=True, scope="session")
def _check_binary():
    if not os.access(POSTERN, os.X_OK):
        pytest.exit("no executable %s: run `make` first" % POSTERN, returncode=2)
    yield


# ---- shared test helpers (added by the review of issue 8; keep in one block) ----

def imap_append(c, mailbox, data, flags=""):
    """APPEND data (bytes) to mailbox over an ImapClient c with a
    synchronizing literal (RFC 3501 7.5: waits for the continuation); returns
    the tagged response."""
    tag = c.next_tag()
    c.send(("%s APPEND %s %s{%d}\r\n" % (tag, imap_quote(mailbox), flags + " " if flags else "",
                                          len(data))).encode())
    line = c.readline()
    assert line.startswith("+"), line
    c.send(data + b"\r\n")
    return c.read_response(tag)


# ---- shared by the sender-authentication tests (issue 10) ----

def txt_line(name, text):
    """A dnsmasq txt-record line (tests/e2e/dnsmasq.py), the text cut into
    255-octet character-strings (RFC 1035 3.3.14)."""
    parts = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return "txt-record=%s,%s" % (name, ",".join('"%s"' % p for p in parts))


def parse_dkim_list(out):
    """`postern dkim list` lines: [(domain, selector, alg, state, record)]"""
    keys = []
    for line in out.splitlines():
        m = re.match(r"^(\S+) (\S+) (\S+) (.*?) (v=DKIM1; .*)$", line)
        assert m, "bad `dkim list` line %r" % line
        keys.append(m.groups())
    return keys


def rewrite_conf(srv):
    """srv's configuration file written again from srv.opts (before start)."""
    with open(srv.conf, "w") as f:
        for k, v in srv.opts.items():
            f.write("%s = %s\n" % (k, v))


@pytest.fixture(scope="module")
def blackhole():
    """A UDP/TCP address that never answers (dnsmasq.Blackhole): DNS timeouts."""
    from dnsmasq import Blackhole
    b = Blackhole()
    yield b
    b.close()


SLOW_ZONE = "slow.test"


def dnsmasq_with_slow_zone(tmp_path_factory, records, blackhole):
    """A started dnsmasq (tests/e2e/dnsmasq.py) serving records, with every
    name under slow.test sent to blackhole: lookups there time out. The
    module's `dns` fixture of the DNS and sender-authentication tests
    (yield it, then .stop())."""
    from dnsmasq import Dnsmasq
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"), records,
                extra=["server=/%s/%s#%d" % (SLOW_ZONE, blackhole.host, blackhole.port)])
    d.start()
    return d
