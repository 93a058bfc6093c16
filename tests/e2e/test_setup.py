"""Starting as root: the daemon refuses to run as root by omission (`user`
empty), drops to a configured system user, and scripts/setup-run (the
quickstart) run as root creates the user `postern` and runs the daemon as it."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, Postern

ALICE = "alice@example.test"
SETUP_RUN_PORTS = (2525, 2587, 2465, 2110, 2995, 2143, 2993)  # setup-run's defaults, 127.0.0.1

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="starting the daemon as root needs root (the suite runs as uid %d)"
                                % os.geteuid())


def _system_user(name):
    """The system user NAME, created as setup-run does if missing (another test
    run may create it at the same moment: an existing user is fine)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       capture_output=True, timeout=30)
        return pwd.getpwnam(name)


def _uids(pid):
    with open("/proc/%d/status" % pid) as f:
        return [l.split()[1:] for l in f if l.startswith("Uid:")][0]


def _deliver(srv, rcpt, text):
    with socket.create_connection((srv.host, srv.ports["mx"]), timeout=15) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        for cmd in (b"EHLO client.test", b"MAIL FROM:<s@remote.test>", b"RCPT TO:<%s>" % rcpt.encode(),
                    b"DATA"):
            s.sendall(cmd + b"\r\n")
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
            assert line[:1] in (b"2", b"3"), (cmd, line)
        s.sendall(b"Subject: t\r\n\r\n" + text.encode() + b"\r\n.\r\n")
        assert f.readline().startswith(b"250")
        s.sendall(b"QUIT\r\n")


@needs_root
def test_root_with_empty_user_refuses_to_start(tmp_path, tls_pair):
    """Started as root with `user` empty, the daemon does not run as root: it
    exits non-zero before serving, saying why and what to set."""
    srv = Postern(tmp_path, tls_pair, user=None)  # no `user` line at all
    assert "user" not in srv.opts
    srv.setup_accounts()  # admin commands as root with `user` empty still work
    with pytest.raises(AssertionError, match="exited"):
        srv.start()
    assert srv.proc.returncode != 0
    log = srv.log()
    assert "refusing to run as root" in log, log
    assert "user = postern" in log and "user = root" in log, "the message says what to set:\n" + log
    assert "ready" not in log
    for port in srv.ports.values():
        with pytest.raises(OSError):
            socket.create_connection((srv.host, port), timeout=1).close()


@needs_root
def test_root_with_user_root_stays_root_and_says_so(tmp_path, tls_pair):
    """`user = root` is the deliberate way to run as root: it starts, with a warning."""
    srv = Postern(tmp_path, tls_pair, user="root")
    srv.setup_accounts()
    srv.start()
    try:
        assert _uids(srv.proc.pid) == ["0"] * 4
        assert "warn running as root (`user = root`)" in srv.log()
    finally:
        assert srv.stop() == 0


@needs_root
def test_root_drops_to_configured_system_user(tmp_path, tls_pair):
    """Started as root with `user` naming a system user, the daemon runs as
    that user (all four uids) and the data directory belongs to it."""
    pw = _system_user("postern-test")
    top = tempfile.mkdtemp(prefix="postern-setup-")
    srv = None
    try:
        os.chmod(top, 0o755)  # the data dir must be reachable by that user
        data = os.path.join(top, "data")
        srv = Postern(tmp_path, tls_pair, data_dir=data, user="postern-test")
        srv.setup_accounts()
        srv.start()
        assert _uids(srv.proc.pid) == [str(pw.pw_uid)] * 4
        _deliver(srv, ALICE, "delivered by an unprivileged daemon")
        assert srv.count(ALICE) == 1
        assert os.stat(os.path.join(data, "postern.db")).st_uid == pw.pw_uid
        assert srv.stop() == 0
    finally:
        if srv is not None:
            srv.kill()
        shutil.rmtree(top, ignore_errors=True)


@needs_root
def test_data_dir_out_of_the_users_reach_is_named(tmp_path, tls_pair):
    """A data directory under a directory the configured user cannot search:
    the admin command and the daemon both say which directory and why, instead
    of SQLite's "unable to open database file"."""
    _system_user("postern-test")
    top = tempfile.mkdtemp(prefix="postern-setup-")  # 0700, root's
    try:
        data = os.path.join(top, "data")
        srv = Postern(tmp_path, tls_pair, data_dir=data, user="postern-test")
        p = srv.cli("domain", "add", "example.test", check=False)
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode != 0 and "cannot use the data directory %s" % data in err, err
        with pytest.raises(AssertionError, match="exited"):
            srv.start()
        assert "cannot use the data directory %s" % data in srv.log(), srv.log()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _ports_free():
    for port in SETUP_RUN_PORTS:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


@needs_root
def test_setup_run_as_root_runs_daemon_as_postern():
    """scripts/setup-run as root, in a scratch copy of the tree (the build is
    copied so make has nothing to do): it creates the system user postern if
    missing, refuses (naming the directory) when postern cannot reach ./data,
    else writes `user = postern` into the postern.conf it generates, and the
    daemon it execs runs as postern and owns ./data. Stopped by PID."""
    if not _ports_free():
        pytest.skip("setup-run's fixed ports 127.0.0.1:%s are in use" % ",".join(map(str, SETUP_RUN_PORTS)))
    top = tempfile.mkdtemp(prefix="postern-setup-run-")
    copy = os.path.join(top, "postern")
    proc = None
    try:
        shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", "data", "postern.conf", "postern.conf.tmp", "build-san", "build-fuzz", "__pycache__",
            ".pytest_cache"))
        os.chmod(copy, 0o755)
        out_path = os.path.join(top, "out")
        # mkdtemp made TOP root-only: postern cannot reach ./data, and setup-run says so
        p = subprocess.run([os.path.join(copy, "scripts", "setup-run")], cwd=copy, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=600)
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode != 0 and "cannot reach %s" % copy in err, err
        assert not os.path.exists(os.path.join(copy, "postern.conf"))
        os.chmod(top, 0o755)
        with open(out_path, "wb") as out:
            proc = subprocess.Popen([os.path.join(copy, "scripts", "setup-run")], cwd=copy,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600  # make has nothing to do unless the build is stale
        while True:
            text = open(out_path, "rb").read().decode("utf-8", "replace")
            if "postern ready" in text:
                break
            assert proc.poll() is None, "setup-run exited %s:\n%s" % (proc.returncode, text)
            assert time.monotonic() < deadline, "setup-run not ready:\n" + text
            time.sleep(0.2)
        pw = pwd.getpwnam("postern")
        conf = open(os.path.join(copy, "postern.conf")).read()
        assert "\nuser = postern\n" in conf
        assert "password:" in text and "running as root" not in text, text
        # setup-run execs the daemon: its PID is the daemon's
        assert _uids(proc.pid) == [str(pw.pw_uid)] * 4, text
        for root, dirs, files in os.walk(os.path.join(copy, "data")):
            for n in dirs + files:
                assert os.lstat(os.path.join(root, n)).st_uid == pw.pw_uid, os.path.join(root, n)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(top, ignore_errors=True)
