"""A private clamd (Debian clamav-daemon, /usr/sbin/clamd) for the virus
tests: its own config, a unix socket in a temporary directory, and a signature
database written here (clamd cannot download one in the test environment):

  test.ndb     EICAR's test string (an extended signature, hex, any offset)
  custom.hdb   a custom signature: the MD5 and size of CUSTOM_PAYLOAD
               (what `sigtool --md5` prints)

clamd reports signatures of a database that is not ClamAV's own with the
suffix ".UNOFFICIAL": EICAR_NAME and CUSTOM_NAME are the names as clamd
answers them ("stream: Eicar-Signature.UNOFFICIAL FOUND").

    from clamd import Clamd, clamd_fixture  # noqa: F401 (the fixture "clamd")
    def test_x(clamd): ...                  # one clamd for the module (clamd_fixture)
    with Clamd(tmp_path) as clamd:          # or clamd = Clamd(d).start(); clamd.stop()
        server = make_server(clamd_socket=clamd.socket)
        clamd.scan(b"...")                  # "stream: OK" (a direct INSTREAM scan)

clamd runs in the foreground and is stopped by its PID (SIGTERM, then SIGKILL).
With this tiny database it starts in well under a second (clamd.started_in
says how long it took); tests keep one per module all the same."""

import hashlib
import os
import signal
import socket
import struct
import subprocess
import time

import pytest

CLAMD = "/usr/sbin/clamd"
READY_TIMEOUT = 60.0

EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
EICAR_NAME = "Eicar-Signature.UNOFFICIAL"
CUSTOM_PAYLOAD = b"postern custom virus test payload: not a virus, a signature test\n"
CUSTOM_NAME = "Postern-Custom-Test.UNOFFICIAL"


class Clamd:
    def __init__(self, workdir, stream_max="50M", extra_conf=()):
        self.dir = os.path.join(str(workdir), "clamd")
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "db")
        os.makedirs(self.db, exist_ok=True)
        self.socket = os.path.join(self.dir, "clamd.sock")
        self.conf = os.path.join(self.dir, "clamd.conf")
        self.log_path = os.path.join(self.dir, "clamd.log")
        self.proc = None
        self.started_in = None
        with open(os.path.join(self.db, "test.ndb"), "w") as f:
            # name:target type (0 any):offset (* anywhere):hex
            f.write("Eicar-Signature:0:*:%s\n" % EICAR.hex())
        with open(os.path.join(self.db, "custom.hdb"), "w") as f:
            f.write("%s:%d:Postern-Custom-Test\n" % (hashlib.md5(CUSTOM_PAYLOAD).hexdigest(),
                                                    len(CUSTOM_PAYLOAD)))
        lines = [
            "Foreground yes",
            "LocalSocket %s" % self.socket,
            "DatabaseDirectory %s" % self.db,
            "StreamMaxLength %s" % stream_max,
            "LogFile %s" % self.log_path,
            "LogTime yes",
            "MaxThreads 4",
            "SelfCheck 0",
            "OfficialDatabaseOnly no",
        ]
        lines += list(extra_conf)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        assert self.proc is None
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        t0 = time.monotonic()
        self.out = open(os.path.join(self.dir, "clamd.out"), "ab")
        self.proc = subprocess.Popen([CLAMD, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.out)
        deadline = t0 + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("clamd exited with %s; log:\n%s" % (
                    self.proc.returncode, self.log()))
            if os.path.exists(self.socket):
                try:
                    if self.ping():
                        self.started_in = time.monotonic() - t0
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError("clamd not ready within %.0fs; log:\n%s" % (READY_TIMEOUT, self.log()))

    def stop(self, timeout=10.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        self.out.close()
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _command(self, payload, timeout=30.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.socket)
            s.sendall(payload)
            out = b""
            while not out.endswith(b"\0"):
                d = s.recv(4096)
                if not d:
                    break
                out += d
            return out.rstrip(b"\0").decode("utf-8", "replace")
        finally:
            s.close()

    def ping(self):
        return self._command(b"zPING\0", timeout=2.0) == "PONG"

    def scan(self, data):
        """A direct INSTREAM scan: clamd's answer ("stream: OK", ...)."""
        chunks = b"".join(struct.pack(">I", len(data[i:i + 65536])) + data[i:i + 65536]
                          for i in range(0, len(data), 65536))
        return self._command(b"zINSTREAM\0" + chunks + struct.pack(">I", 0))


@pytest.fixture(scope="module", name="clamd")
def clamd_fixture(tmp_path_factory):
    """A started Clamd for the whole test module (a test may stop and start
    it again: it is stopped at the module's end). Imported by the modules that
    use it, so only they start one."""
    c = Clamd(tmp_path_factory.mktemp("clamd")).start()
    yield c
    c.stop()
