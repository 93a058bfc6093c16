"""The admin CLI: domains, users, aliases, password hashes, check-config,
config defaults; plus start-up behaviour (self-signed certificate, SIGTERM)."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import POSTERN, USERS, Client, make_message, split_prepended

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


def lines(server, *args):
    return [l for l in server.cli_out(*args).splitlines() if l.strip()]


def names(server, *args):
    """First field of each line of a `list` command ("NAME [details]")."""
    return [l.split()[0] for l in lines(server, *args)]


def deliver(server, rcpt, subject="cli"):
    msg = make_message("sender@remote.test", rcpt, subject, "body %s\r\n" % subject)
    with server.client("mx") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        if r.code != 250:
            return r, msg
        return c.data(msg), msg


def can_auth(server, user, password):
    with server.client("submissions") as c:
        c.ehlo()
        return c.auth_plain(user, password).code == 235


def test_domain_commands(server):
    assert "example.test" in names(server, "domain", "list")
    server.cli("domain", "add", "Second.Test")
    assert "second.test" in names(server, "domain", "list"), "domains are stored lowercase"
    dup = server.cli("domain", "add", "second.test", check=False)
    assert dup.returncode != 0, "adding an existing domain must fail"
    server.cli("user", "add", "u@second.test", input="u-Secret-1\n")
    p = server.cli("domain", "del", "second.test", check=False)
    assert p.returncode != 0, "deleting a domain with users must fail"
    # the running daemon sees the new domain and user at once
    r, _ = deliver(server, "u@second.test", "new domain")
    assert r.code == 250, r
    server.cli("user", "del", "u@second.test")
    server.cli("domain", "del", "second.test")
    assert "second.test" not in names(server, "domain", "list")
    with server.client("mx") as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@remote.test>")
        r = c.cmd("RCPT TO:<u@second.test>")
        assert r.code == 554 and r.enh == "5.7.1", "removed domain is not local anymore: %r" % r


def test_user_commands(server):
    assert {ALICE, BOB, CAROL} <= set(names(server, "user", "list"))
    p = server.cli("user", "add", "x@unknown-domain.test", input="pw-123456\n", check=False)
    assert p.returncode != 0, "user in a domain that does not exist"
    p = server.cli("user", "add", ALICE, input="pw-123456\n", check=False)
    assert p.returncode != 0, "existing user"
    server.cli("user", "add", "dave@example.test", input="dave-Secret-4\n")
    assert "dave@example.test" in names(server, "user", "list", "example.test")
    assert can_auth(server, "dave@example.test", "dave-Secret-4")
    server.cli("user", "passwd", "dave@example.test", input="dave-New-5\n")
    assert not can_auth(server, "dave@example.test", "dave-Secret-4")
    assert can_auth(server, "dave@example.test", "dave-New-5")
    r, _ = deliver(server, "dave@example.test")
    assert r.code == 250
    assert server.count("dave@example.test") == 1
    server.cli("user", "del", "dave@example.test")
    assert "dave@example.test" not in names(server, "user", "list")
    r, _ = deliver(server, "dave@example.test")
    assert r.code == 550 and r.enh == "5.1.1", r
    p = server.cli("user", "del", "dave@example.test", check=False)
    assert p.returncode != 0


def test_mailbox_and_mail_inspection(server):
    r, msg = deliver(server, CAROL, "inspect")
    assert r.code == 250
    mboxes = lines(server, "mailbox", "list", CAROL)
    inbox = [l for l in mboxes if l.split()[0] == "INBOX"]
    assert inbox, mboxes
    fields = dict(kv.split("=", 1) for kv in inbox[0].split()[1:])
    assert set(fields) >= {"uidvalidity", "uidnext", "highestmodseq", "messages"}, inbox
    ml = server.mail_list(CAROL)
    assert int(fields["messages"]) == len(ml)
    assert int(fields["uidnext"]) > ml[-1][0]
    stored = server.mail_cat(CAROL, ml[-1][0])
    assert len(stored) == ml[-1][1]
    assert split_prepended(stored)[2] == msg
    assert b"\r\n" in stored and b"\n" not in stored.replace(b"\r\n", b"")
    assert server.cli("mail", "cat", CAROL, "999999", check=False).returncode != 0
    assert server.cli("mail", "list", "nobody@example.test", check=False).returncode != 0


def test_aliases(server):
    server.cli("alias", "add", "team@example.test", ALICE, BOB)
    try:
        al = lines(server, "alias", "list")
        assert any("team@example.test" in l and ALICE in l for l in al), al
        assert any("team@example.test" in l and BOB in l for l in al), al
        before = {u: server.count(u) for u in (ALICE, BOB)}
        r, msg = deliver(server, "team@example.test", "to team")
        assert r.code == 250, r
        for u in (ALICE, BOB):
            assert server.count(u) == before[u] + 1, u
            assert split_prepended(server.messages(u)[-1])[2] == msg
        server.cli("alias", "del", "team@example.test", BOB)
        before = {u: server.count(u) for u in (ALICE, BOB)}
        r, _ = deliver(server, "team@example.test", "to team 2")
        assert r.code == 250
        assert server.count(ALICE) == before[ALICE] + 1
        assert server.count(BOB) == before[BOB]
    finally:
        server.cli("alias", "del", "team@example.test", check=False)
    r, _ = deliver(server, "team@example.test")
    assert r.code == 550, r


def test_catch_all(server):
    r, _ = deliver(server, "whoever@example.test")
    assert r.code == 550
    server.cli("alias", "add", "@example.test", CAROL)
    try:
        assert any("@example.test" in l for l in lines(server, "alias", "list", "example.test"))
        before = server.count(CAROL)
        r, msg = deliver(server, "whoever@example.test", "catch all")
        assert r.code == 250, r
        assert server.count(CAROL) == before + 1
        # an existing user still gets their own mail
        before_a = server.count(ALICE)
        deliver(server, ALICE, "not caught")
        assert server.count(ALICE) == before_a + 1 and server.count(CAROL) == before + 1
    finally:
        server.cli("alias", "del", "@example.test")
    r, _ = deliver(server, "whoever@example.test")
    assert r.code == 550 and r.enh == "5.1.1", r


def test_import_sha512_crypt_hash(server):
    h = subprocess.run(["openssl", "passwd", "-6", "imported-Secret-6"], capture_output=True, check=True,
                       timeout=30).stdout.decode().strip()
    assert h.startswith("$6$")
    server.cli("user", "add", "erin@example.test", "--hash", "{SHA512-CRYPT}" + h)
    try:
        assert can_auth(server, "erin@example.test", "imported-Secret-6")
        assert not can_auth(server, "erin@example.test", "imported-Secret-7")
    finally:
        server.cli("user", "del", "erin@example.test")


def test_import_blf_crypt_hash(server):
    mk = shutil.which("mkpasswd")
    assert mk, "mkpasswd (Debian package whois) is needed to make a bcrypt hash"
    h = subprocess.run([mk, "-m", "bcrypt", "-R", "5", "-s"], input=b"bcrypt-Secret-8\n", capture_output=True,
                       check=True, timeout=30).stdout.decode().strip()
    assert h.startswith("$2b$"), h
    h = "$2y$" + h[4:]  # Dovecot's {BLF-CRYPT} exports use $2y$; same algorithm
    server.cli("user", "add", "frank@example.test", "--hash", "{BLF-CRYPT}" + h)
    try:
        assert can_auth(server, "frank@example.test", "bcrypt-Secret-8")
        assert not can_auth(server, "frank@example.test", "bcrypt-Secret-9")
    finally:
        server.cli("user", "del", "frank@example.test")


def test_bad_hash_refused(server):
    p = server.cli("user", "add", "gina@example.test", "--hash", "{NOPE}abc", check=False)
    assert p.returncode != 0


# ---- configuration ----------------------------------------------------------
def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def run(*args, input=b""):
    return subprocess.run([POSTERN] + list(args), capture_output=True, input=input, timeout=30)


def test_check_config_ok(server):
    p = server.cli("check-config")
    assert p.returncode == 0


def test_check_config_errors_have_file_line_option(tmp_path):
    cases = [
        ("# comment\nhostname = mx.example.test\nbogus_option = 1\n", 3, "bogus_option"),
        ("smtp_max_recipients = lots\n", 1, "smtp_max_recipients"),
        ("\n\nsmtp_max_message_size = 10q\n", 3, "smtp_max_message_size"),
        ("smtp_timeout = -5\n", 1, "smtp_timeout"),
        ("smtp_auth_plaintext_loopback = maybe\n", 1, "smtp_auth_plaintext_loopback"),
        ("log_level = loud\n", 1, "log_level"),
        ("workers = 1\nsmtp_listen = no-port-here\n", 2, "smtp_listen"),
    ]
    for i, (text, line, option) in enumerate(cases):
        path = write(tmp_path, "bad%d.conf" % i, "data_dir = %s\n" % (tmp_path / "d") + text)
        p = run("-c", path, "check-config")
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        assert p.returncode == 1, "case %d: exit %d, want 1: %s" % (i, p.returncode, out)
        want = "%s:%d: %s:" % (path, line + 1, option)
        assert want in out, "case %d: want %r in %r" % (i, want, out)


def test_check_config_warns_of_a_trailing_comment(tmp_path):
    # A comment is a line of its own (as in Postfix's main.cf): a '#' after
    # the value is part of it, so "clamd_socket = /path  # note" would name
    # a socket that does not exist. The value is kept, with a warning naming
    # the line; a '#' inside a value (a password) is not warned of.
    path = write(tmp_path, "c.conf", "data_dir = %s\n" % (tmp_path / "d") +
                 "# a comment line\n"
                 "relayhost_password = pa#ss\n"
                 "clamd_socket = /var/run/clamav/clamd.ctl   # Debian's socket\n"
                 "relayhost_user = # fill in later\n")
    p = run("-c", path, "check-config")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, err
    assert err.count(" warn ") == 2, err
    want = "the value has a '#' at its start or after white space"
    assert "%s:4: clamd_socket: %s" % (path, want) in err, err
    assert "%s:5: relayhost_user: %s" % (path, want) in err, err


def test_check_config_missing_file(tmp_path):
    p = run("-c", str(tmp_path / "nope.conf"), "check-config")
    assert p.returncode == 1


def test_override_option(tmp_path):
    path = write(tmp_path, "ok.conf", "data_dir = %s\n" % (tmp_path / "d"))
    assert run("-c", path, "check-config").returncode == 0
    p = run("-c", path, "-o", "smtp_max_recipients=abc", "check-config")
    assert p.returncode == 1
    assert b"smtp_max_recipients" in p.stdout + p.stderr
    assert run("-c", path, "-o", "smtp_max_recipients=50", "check-config").returncode == 0


def test_config_defaults(tmp_path):
    p = run("config", "defaults")
    assert p.returncode == 0
    text = p.stdout.decode()
    for key in ("hostname", "data_dir", "log_level", "workers", "tls_cert", "tls_key", "smtp_listen",
                "submission_listen", "submissions_listen", "smtp_max_message_size", "smtp_max_recipients",
                "smtp_max_line", "smtp_max_data_line", "smtp_max_errors", "smtp_timeout", "smtp_data_timeout",
                "smtp_max_connections", "smtp_max_connections_per_ip", "smtp_auth_plaintext_loopback",
                "auth_max_failures", "auth_failure_window", "commit_delay_us"):
        assert re.search(r"(?m)^#?\s*%s\s*=" % key, text), "config defaults lacks %s" % key
    assert "127.0.0.1:2525" in text
    # the printed file is itself a valid config
    path = write(tmp_path, "defaults.conf", text)
    p = run("-c", path, "check-config")
    assert p.returncode == 0, (p.stdout + p.stderr).decode()
    # and with every commented default that has a value uncommented, still valid
    uncommented = re.sub(r"(?m)^#[ \t]*([a-z_0-9]+[ \t]*=[ \t]*\S)", r"\1", text)
    path = write(tmp_path, "uncommented.conf", uncommented)
    p = run("-c", path, "check-config")
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


def test_self_signed_certificate_and_sigterm(make_server):
    srv = make_server("selfsigned", tls_cert=None, tls_key=None)
    cert = os.path.join(srv.data_dir, "tls", "cert.pem")
    key = os.path.join(srv.data_dir, "tls", "key.pem")
    assert os.path.exists(cert) and os.path.exists(key)
    assert os.stat(key).st_mode & 0o077 == 0, "the private key must not be readable by others"
    with srv.client("submissions") as c:
        der = c.sock.getpeercert(binary_form=True)
        assert der
    first = open(cert, "rb").read()
    assert srv.stop() == 0, "postern must exit 0 on SIGTERM"
    srv.start()
    assert open(cert, "rb").read() == first, "the certificate must be kept across restarts"
    assert srv.stop() == 0


def test_privilege_drop_to_configured_user(make_server):
    """Started as root with `user` set, the daemon and the admin commands run as
    that user, and every file of the data directory belongs to it."""
    import pwd
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to create a system user and switch to it")
    name = "postern-test"
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        name], check=True, timeout=30)
        pw = pwd.getpwnam(name)
    top = tempfile.mkdtemp(prefix="postern-priv-")
    try:
        os.chmod(top, 0o755)  # pytest's own tmp dirs are root-only
        data = os.path.join(top, "data")
        srv = make_server("priv", data_dir=data, user=name)
        with open("/proc/%d/status" % srv.proc.pid) as f:
            uids = [l.split()[1:] for l in f if l.startswith("Uid:")][0]
        assert uids == [str(pw.pw_uid)] * 4, "daemon uids %r, want %d" % (uids, pw.pw_uid)
        deliver(srv, ALICE, "as an unprivileged user")
        assert srv.count(ALICE) == 1
        srv.cli("user", "add", "dave@example.test", input="pw-dave\n")  # admin command as root
        deliver(srv, "dave@example.test", "after an admin command")
        assert srv.count("dave@example.test") == 1
        for root, dirs, files in os.walk(data):
            for n in dirs + files:
                st = os.lstat(os.path.join(root, n))
                assert st.st_uid == pw.pw_uid, "%s belongs to uid %d" % (os.path.join(root, n), st.st_uid)
        srv.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_config_docs_current(tmp_path):
    """docs/config.md is `postern config reference` verbatim (regenerate it with
    `./postern config reference > docs/config.md`), and `config defaults`, as
    printed and with its defaults uncommented, is a configuration check-config
    accepts."""
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "config.md")
    p = run("config", "reference")
    assert p.returncode == 0
    with open(doc, "rb") as f:
        assert p.stdout == f.read(), "docs/config.md is stale: ./postern config reference > docs/config.md"
    p = run("config", "defaults")
    assert p.returncode == 0
    text = p.stdout.decode()
    uncommented = re.sub(r"(?m)^#([a-z_0-9]+ = \S)", r"\1", text)
    assert uncommented != text
    for name, body in (("defaults.conf", text), ("uncommented.conf", uncommented)):
        p = run("-c", write(tmp_path, name, body), "check-config")
        assert p.returncode == 0, (name, (p.stdout + p.stderr).decode())


def test_failed_command_prints_its_reason(server):
    """A refused admin command names its reason on stderr, not just "failed"
    (report() read the error text before the store call had set it)."""
    server.cli("domain", "add", "reason.test")
    server.cli("user", "add", "u@reason.test", input="u-Secret-1\n")
    p = server.cli("domain", "del", "reason.test", check=False)
    assert p.returncode == 1
    assert p.stderr == b"postern: domain reason.test has 1 user; delete them first\n", p.stderr
    p = server.cli("mail", "list", "nobody@reason.test", check=False)
    assert p.returncode == 1
    assert p.stderr == b"postern: no such user nobody@reason.test\n", p.stderr
    p = server.cli("user", "del", "nobody@reason.test", check=False)
    assert p.returncode == 1
    assert p.stderr == b"postern: no such user nobody@reason.test\n", p.stderr
