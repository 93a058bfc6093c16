"""Real IMAP clients from Debian packages against the real daemon: mbsync (isync)
two-way sync of a 1,000-message account, fetchmail over IMAP, curl imap:// URLs
and mutt reading over IMAP on a pseudo-terminal."""
import os
import pty
import re
import select
import shutil
import smtplib
import subprocess
import threading
import time
import imaplib

import pytest

from conftest import SOCK_TIMEOUT, USERS, client_tls_context, make_message

ALICE = "alice@example.test"
BOB = "bob@example.test"


def deliver_many(srv, rcpt, n, subject="sync", threads=4):
    """n messages to rcpt over the MX port, in parallel sessions."""
    errors = []

    def run(k):
        try:
            with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=60) as s:
                s.ehlo("client.example.net")
                for i in range(k, n, threads):
                    s.sendmail("sender@remote.example", [rcpt],
                               make_message("sender@remote.example", rcpt, "%s %d" % (subject, i),
                                            "body of message %d\r\n" % i))
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, errors
    assert not any(t.is_alive() for t in ts)


def imap_login(srv, user=ALICE):
    m = imaplib.IMAP4_SSL(srv.host, srv.ports["imaps"], ssl_context=client_tls_context(),
                          timeout=SOCK_TIMEOUT)
    m.login(user, USERS[user])
    return m


def server_flags(srv, user, uid, mailbox=None):
    for u, _size, _date, flags in srv.mail_list(user, mailbox):
        if u == uid:
            return flags
    return None


# --------------------------------------------------------------------------
# mbsync
# --------------------------------------------------------------------------
def _mbsync_rc(srv, tmp_path, ssl_type):
    local = tmp_path / "mail"
    local.mkdir(exist_ok=True)
    rc = tmp_path / "mbsyncrc"
    port = srv.ports["imaps" if ssl_type == "IMAPS" else "imap"]
    rc.write_text(
        "IMAPAccount t\nHost %s\nPort %d\nUser %s\nPass %s\nSSLType %s\nCertificateFile %s\n"
        "Timeout 60\n\n"
        "IMAPStore remote\nAccount t\n\n"
        "MaildirStore local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
        "Channel c\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\n"
        "SyncState *\n" % (srv.host, port, ALICE, USERS[ALICE], ssl_type, srv.opts["tls_cert"],
                          local, local))
    return rc, local


def _mbsync(rc):
    p = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, timeout=300)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == 0, out
    return out


def _maildir_files(folder):
    """{uid: path} of the messages in a maildir folder (mbsync names them ...,U=N:2,FLAGS)."""
    out = {}
    for sub in ("cur", "new"):
        d = folder / sub
        if not d.is_dir():
            continue
        for name in os.listdir(d):
            m = re.search(r",U=(\d+)", name)
            out[int(m.group(1)) if m else name] = d / name
    return out


def _maildir_flags(path):
    name = path.name
    return name.split(":2,", 1)[1] if ":2," in name else ""


def _own_cert(srv, tmp_path):
    """mbsync checks the certificate's host name even for a certificate it is
    told to trust: give the server one for its loopback address."""
    cert, key = str(tmp_path / "ipcert.pem"), str(tmp_path / "ipkey.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=%s" % srv.host,
         "-addext", "subjectAltName=IP:%s" % srv.host], check=True, capture_output=True, timeout=60)
    with open(srv.conf) as f:
        lines = [l for l in f if not l.startswith(("tls_cert ", "tls_key "))]
    lines += ["tls_cert = %s\n" % cert, "tls_key = %s\n" % key]
    with open(srv.conf, "w") as f:
        f.writelines(lines)
    srv.opts["tls_cert"], srv.opts["tls_key"] = cert, key


@pytest.mark.parametrize("ssl_type", ["IMAPS", "STARTTLS"])
def test_mbsync_two_way(make_server, tmp_path, ssl_type):
    srv = make_server("mbsync", start=False)
    _own_cert(srv, tmp_path)
    srv.start()
    n = 1000 if ssl_type == "IMAPS" else 50
    deliver_many(srv, ALICE, n)
    rc, local = _mbsync_rc(srv, tmp_path, ssl_type)

    # 1. first sync: everything arrives, byte-exact (mbsync stores LF line ends)
    _mbsync(rc)
    inbox = local / "INBOX"
    files = _maildir_files(inbox)
    stored = srv.mail_list(ALICE)
    assert sorted(files) == [m[0] for m in stored]
    for uid in (stored[0][0], stored[-1][0]):
        want = srv.mail_cat(ALICE, uid).replace(b"\r\n", b"\n")
        # mbsync adds its own tracking header (X-TUID) to what it stores
        got = b"".join(l for l in files[uid].read_bytes().splitlines(True)
                       if not l.startswith(b"X-TUID: "))
        assert got == want
    # the special-use mailboxes come down too
    for box in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert (local / box).is_dir(), sorted(os.listdir(local))

    # 2. a flag change and a new message on the near side go up
    uid_f = stored[5][0]
    p = files[uid_f]
    flagged = p.with_name(p.name.split(":2,")[0] + ":2," + "".join(sorted(_maildir_flags(p) + "F")))
    p.rename(flagged)
    newmsg = make_message("alice@example.test", "x@remote.example", "written locally",
                          "local body\r\n").replace(b"\r\n", b"\n")
    (inbox / "new" / "1700000000.local.test").write_bytes(newmsg)
    _mbsync(rc)
    assert "\\Flagged" in server_flags(srv, ALICE, uid_f)
    after = srv.mail_list(ALICE)
    assert len(after) == n + 1
    assert b"Subject: written locally" in srv.mail_cat(ALICE, after[-1][0])

    # 3. a flag change, a new message and an expunge on the server come down
    uid_s, uid_x = stored[0][0], stored[1][0]
    m = imap_login(srv)
    try:
        assert m.select("INBOX")[0] == "OK"
        assert m.uid("STORE", str(uid_s), "+FLAGS", "(\\Seen)")[0] == "OK"
        assert m.uid("STORE", str(uid_x), "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert m.expunge()[0] == "OK"
    finally:
        m.logout()
    deliver_many(srv, ALICE, 1, subject="server side", threads=1)
    _mbsync(rc)
    files = _maildir_files(inbox)
    assert uid_x not in files
    assert "S" in _maildir_flags(files[uid_s])
    assert sorted(files) == [x[0] for x in srv.mail_list(ALICE)]
    assert len(files) == n + 1  # +1 local, +1 server side, -1 expunged

    # 4. a message trashed on the near side is expunged on the server
    uid_t = stored[10][0]
    p = files[uid_t]
    p.rename(p.with_name(p.name.split(":2,")[0] + ":2," + "".join(sorted(_maildir_flags(p) + "T"))))
    _mbsync(rc)
    assert uid_t not in [x[0] for x in srv.mail_list(ALICE)]
    assert sorted(_maildir_files(inbox)) == [x[0] for x in srv.mail_list(ALICE)]

    # 5. nothing changed: a resync is a no-op on both sides
    before = sorted(_maildir_files(inbox))
    _mbsync(rc)
    assert sorted(_maildir_files(inbox)) == before == [x[0] for x in srv.mail_list(ALICE)]


# --------------------------------------------------------------------------
# fetchmail
# --------------------------------------------------------------------------
def _fetchmail(srv, tmp_path, ssl_mode, keep):
    out = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    port = srv.ports["imaps" if ssl_mode == "implicit" else "imap"]
    rc.write_text(
        "set no syslog\n"
        "poll %s protocol imap port %d auth password timeout 20\n"
        "  user \"%s\" there with password \"%s\" is root here\n"
        "  options fetchall %s %s sslproto TLS1.2+ no sslcertck\n"
        "  mda \"/bin/sh -c 'cat >> %s'\"\n" % (
            srv.host, port, BOB, USERS[BOB], "keep" if keep else "nokeep",
            "ssl" if ssl_mode == "implicit" else "", out))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    p = subprocess.run(["fetchmail", "-f", str(rc), "-v", "--nodetach"],
                       capture_output=True, timeout=120, env=env)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace"), out


@pytest.mark.parametrize("ssl_mode", ["starttls", "implicit"])
def test_fetchmail_imap(make_server, tmp_path, ssl_mode):
    srv = make_server("imapfm")
    deliver_many(srv, BOB, 3, subject="fm", threads=1)
    stored = srv.messages(BOB)
    code, log, out = _fetchmail(srv, tmp_path, ssl_mode, keep=True)
    assert code == 0, log
    if ssl_mode == "starttls":
        assert "STARTTLS" in log, log
    data = out.read_bytes()
    for s in stored:
        body = s.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        assert body in data
    assert srv.count(BOB) == 3, "keep must not delete"
    out.unlink()
    code, log, out = _fetchmail(srv, tmp_path, ssl_mode, keep=False)
    assert code == 0, log
    assert srv.count(BOB) == 0, "without keep fetchmail deletes (STORE \\Deleted, EXPUNGE)\n" + log
    assert out.read_bytes().count(b"Subject: fm") == 3


# --------------------------------------------------------------------------
# curl
# --------------------------------------------------------------------------
def test_curl_imap(make_server):
    srv = make_server("imapcurl")
    deliver_many(srv, BOB, 2, subject="curl", threads=1)
    stored = srv.mail_list(BOB)
    base = ["curl", "-sS", "-k", "--max-time", "30", "-u", "%s:%s" % (BOB, USERS[BOB])]
    for url, extra in [("imap://%s:%d/" % (srv.host, srv.ports["imap"]), ["--ssl-reqd"]),
                       ("imaps://%s:%d/" % (srv.host, srv.ports["imaps"]), [])]:
        # LIST
        p = subprocess.run(base + extra + [url], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        listing = p.stdout.decode()
        for box in ("INBOX", "Sent", "Trash"):
            assert re.search(r'^\* LIST \([^)]*\) "/" "?%s"?\r?$' % box, listing, re.M), listing
        # FETCH one message by UID: the body is the stored message, byte-exact
        uid = stored[-1][0]
        p = subprocess.run(base + extra + [url + "INBOX;UID=%d" % uid], capture_output=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout == srv.mail_cat(BOB, uid)
        # a custom command: SEARCH
        p = subprocess.run(base + extra + [url + "INBOX", "-X", "UID SEARCH SUBJECT \"curl 1\""],
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode().strip() == "* SEARCH %d" % uid


# --------------------------------------------------------------------------
# mutt on a pty
# --------------------------------------------------------------------------
class Pty:
    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.out = b""

    def expect(self, pattern, timeout=30):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.out)
            if m:
                return m
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                self.out += data
        raise AssertionError("no %r within %ds; screen output:\n%s" % (
            pattern, timeout, self.out[-3000:].decode(errors="replace")))

    def send(self, data):
        os.write(self.fd, data)

    def close(self):
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.fd)


@pytest.mark.parametrize("scheme", ["imaps", "imap"])
def test_mutt_reads_over_imap(make_server, tmp_path, scheme):
    srv = make_server("imapmutt")
    with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=60) as s:
        s.sendmail("sender@remote.example", [ALICE],
                   make_message("sender@remote.example", ALICE, "hello from mutt test",
                                "the body mutt shows\r\n"))
    port = srv.ports[scheme]
    rc = tmp_path / "muttrc"
    rc.write_text(
        'set folder="%s://%s@%s:%d/"\n'
        'set spoolfile="+INBOX"\nset imap_pass="%s"\nset ssl_starttls=yes\nset ssl_force_tls=yes\n'
        'set certificate_file="%s"\nset ssl_verify_host=no\nset header_cache=""\n'
        'set message_cachedir=""\nset imap_check_subscribed=no\nset mail_check=5\n'
        'set timeout=5\nset move=no\nset quit=yes\nset sort=date\nset pager_stop=yes\n'
        'set mbox_type=mbox\nset record=""\nset postponed=""\n' % (
            scheme, ALICE.replace("@", "%40"), srv.host, port, USERS[ALICE],
            tmp_path / "certs"))
    env = dict(os.environ, HOME=str(tmp_path), TERM="vt100", LINES="24", COLUMNS="100",
               LANG="C.UTF-8")
    t = Pty(["mutt", "-n", "-F", str(rc)], env)
    try:
        # the self-signed certificate: accept once
        t.expect(rb"\(r\)eject, accept \(o\)nce", timeout=30)
        t.send(b"o")
        t.expect(rb"hello from mutt test", timeout=30)
        t.send(b"\r")  # open the message in the pager
        t.expect(rb"the body mutt shows", timeout=30)
        t.send(b"q")
        t.send(b"q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(t.pid, os.WNOHANG)
            if pid:
                break
            try:
                r, _, _ = select.select([t.fd], [], [], 0.2)
                if r:
                    os.read(t.fd, 65536)
            except OSError:
                pass
        else:
            raise AssertionError("mutt did not quit")
    finally:
        t.close()
    # mutt read it without PEEK: the server now has \Seen on it
    assert "\\Seen" in srv.mail_list(ALICE)[0][3]
    assert re.search(r"imap session client=\S+ user=%s" % re.escape(ALICE), srv.log()), srv.log()
