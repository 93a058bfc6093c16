"""A private Dovecot IMAP server for tests that compare postern with it
(Debian dovecot-imapd: Dovecot 2.3). Its own configuration, base_dir,
state and log under a temporary directory; one mail user (uid nobody, a
maildir), plain LOGIN on loopback, the extensions Dovecot 2.3 can offer
switched on (METADATA, NOTIFY, COMPRESS, SPECIAL-USE, URLAUTH).
Started with `dovecot -F -c`, stopped by its PID. Needs root (Dovecot drops
privileges for its mail processes). Its directory is
/tmp/postern-dovecot-<pid of the test process>-*, removed by stop(); one
that a killed run left is removed by the next Dovecot() (sweep_stale)."""
import os
import pwd
import grp
import shutil
import socket
import subprocess
import tempfile
import time

READY_TIMEOUT = 30.0

CONF = """# private instance for a postern test
protocols = imap
listen = {host}
base_dir = {b}/run
state_dir = {b}/state
log_path = {b}/dovecot.log
info_log_path = {b}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
mail_location = maildir:~/Maildir:LAYOUT=fs
mail_plugins = $mail_plugins notify
mailbox_list_index = yes
imap_metadata = yes
mail_attribute_dict = file:%h/dovecot-attributes
imap_urlauth_host = *
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
protocol imap {{
  mail_plugins = $mail_plugins imap_zlib
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {b}/passwd
}}
userdb {{
  driver = passwd-file
  args = {b}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap-urlauth-login {{
  unix_listener imap-urlauth {{
    mode = 0666
  }}
}}
service imap-urlauth {{
  unix_listener token-login/imap-urlauth {{
    mode = 0666
  }}
}}
service imap-urlauth-worker {{
  unix_listener imap-urlauth-worker {{
    mode = 0666
  }}
}}
"""


def available():
    return shutil.which("dovecot") is not None and os.path.exists("/usr/lib/dovecot/imap")


TMP_PREFIX = "postern-dovecot-"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep_stale(tmp=None):
    """Removes the directories that earlier runs left in tmp
    (/tmp/postern-dovecot-<pid>-*: a run killed before its stop()) whose
    test process and Dovecot master are both gone. Returns what it removed."""
    tmp = tmp or tempfile.gettempdir()
    gone = []
    for name in os.listdir(tmp):
        if not name.startswith(TMP_PREFIX):
            continue
        pid = name[len(TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        path = os.path.join(tmp, name)
        try:
            with open(os.path.join(path, "run", "master.pid")) as f:
                master = int(f.read().strip() or 0)
        except (OSError, ValueError):
            master = 0
        if master > 0 and _alive(master):
            continue  # its Dovecot still runs there
        shutil.rmtree(path, ignore_errors=True)
        gone.append(path)
    return gone


class Dovecot:
    def __init__(self, host, port, users):
        """users: {name: password}. Each gets an empty maildir."""
        self.host, self.port = host, port
        # its unprivileged processes traverse the directory: not under
        # pytest's 0700 temporary root; named by our PID, so that a later
        # run can tell a directory left by a killed run from a live one
        sweep_stale()
        self.proc = None
        self.b = tempfile.mkdtemp(prefix="%s%d-" % (TMP_PREFIX, os.getpid()))
        try:
            self._setup(users)
        except BaseException:
            shutil.rmtree(self.b, ignore_errors=True)
            raise

    def _setup(self, users):
        os.chmod(self.b, 0o755)
        nobody = pwd.getpwnam("nobody")
        lines = []
        for u, pw in users.items():
            home = os.path.join(self.b, "home", u)
            os.makedirs(home)
            os.chown(home, nobody.pw_uid, nobody.pw_gid)
            lines.append("%s:{PLAIN}%s:%d:%d::%s::\n" % (u, pw, nobody.pw_uid, nobody.pw_gid, home))
        os.chmod(os.path.join(self.b, "home"), 0o755)
        passwd = os.path.join(self.b, "passwd")
        with open(passwd, "w") as f:
            f.writelines(lines)
        os.chmod(passwd, 0o640)
        os.chown(passwd, 0, grp.getgrnam("dovecot").gr_gid)
        self.conf = os.path.join(self.b, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(b=self.b, host=self.host, port=self.port))
        self.log = os.path.join(self.b, "dovecot.log")
        chk = subprocess.run(["doveconf", "-c", self.conf, "-n"], capture_output=True, text=True,
                             timeout=30)
        if chk.returncode != 0:
            raise RuntimeError("doveconf: " + chk.stderr.strip())

    def start(self):
        out = open(os.path.join(self.b, "stdout"), "ab")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = RuntimeError("dovecot exited (%s): %s" % (self.proc.returncode,
                                                                self.log_text()[-2000:]))
                self.stop()
                raise err
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("dovecot not ready in %ss" % READY_TIMEOUT)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.b, ignore_errors=True)
