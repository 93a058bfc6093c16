"""A private dnsmasq (Debian dnsmasq-base) on 127.0.0.1:<free port> for the DNS
and outbound-delivery tests, with its own config: no system resolv.conf, no
/etc/hosts, no DHCP, no upstream. Every name under the `local` domains that has
no record is NXDOMAIN; a name with records of other types only is NODATA.

    from dnsmasq import Dnsmasq, Blackhole

    with Dnsmasq(tmp_path, [("MX", "example.test", "mx.example.test", 10),
                            ("A", "mx.example.test", "127.0.0.2")]) as dns:
        server = make_server(dns_resolver=dns.server)   # "127.0.0.1:PORT"
        ...
    # or: dns = Dnsmasq(...).start(); ...; dns.stop()

Records are tuples (or raw dnsmasq option lines, passed as they are):
    ("A", name, ipv4[, ttl])        --host-record (dnsmasq adds the PTR too)
    ("AAAA", name, ipv6[, ttl])     --host-record (idem)
    ("MX", name, host, pref)        --mx-host
    ("NULLMX", name)                RFC 7505 "0 ." as a raw record (--dns-rr)
    ("TXT", name, text)             --txt-record
    ("PTR", name, target)           --ptr-record (name: "1.0.0.127.in-addr.arpa")
    ("CNAME", alias, target[, ttl]) --cname (the target must be a local name)
    ("RR", name, rrtype, hexdata)   --dns-rr (TLSA and anything else)
A record's TTL is `ttl` (default 300 s, --local-ttl).

Blackhole() is a UDP+TCP socket pair on 127.0.0.1 that never answers: a
resolver pointed at it times out (DNS TEMPFAIL).

The process is stopped by its PID. The log (with --log-queries) is dns.log()."""

import os
import signal
import socket
import struct
import subprocess
import time

DNSMASQ = "/usr/sbin/dnsmasq"
READY_TIMEOUT = 10.0


def _free_udp_tcp_port(host):
    """A port free for both UDP and TCP on host (dnsmasq listens on both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                t.bind((host, port))
            except OSError:
                continue
            return port
        finally:
            u.close()
            t.close()
    raise AssertionError("no free UDP+TCP port on %s" % host)


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
          "TLSA": 52}


def query(host, port, name, qtype="A", timeout=2.0):
    """One UDP query; returns (rcode, ancount, flags) or None on timeout."""
    qid = os.getpid() & 0xFFFF
    qt = QTYPES[qtype] if isinstance(qtype, str) else qtype
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack(
        ">HH", qt, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (host, port))
        data, _ = s.recvfrom(65535)
    except (socket.timeout, ConnectionRefusedError):
        return None
    finally:
        s.close()
    if len(data) < 12:
        return None
    _, flags, _, ancount, _, _ = struct.unpack(">HHHHHH", data[:12])
    return flags & 0xF, ancount, flags


def _record_lines(records):
    lines = []
    for r in records:
        if isinstance(r, str):
            lines.append(r.lstrip("-"))
            continue
        kind = r[0].upper()
        if kind in ("A", "AAAA"):
            lines.append("host-record=%s,%s%s" % (r[1], r[2], ",%d" % r[3] if len(r) > 3 else ""))
        elif kind == "MX":
            lines.append("mx-host=%s,%s,%d" % (r[1], r[2], r[3]))
        elif kind == "NULLMX":
            lines.append("dns-rr=%s,15,000000" % r[1])
        elif kind == "TXT":
            lines.append('txt-record=%s,"%s"' % (r[1], r[2].replace('"', '\\"')))
        elif kind == "PTR":
            lines.append("ptr-record=%s,%s" % (r[1], r[2]))
        elif kind == "CNAME":
            lines.append("cname=%s,%s%s" % (r[1], r[2], ",%d" % r[3] if len(r) > 3 else ""))
        elif kind == "RR":
            lines.append("dns-rr=%s,%d,%s" % (r[1], r[2], r[3]))
        else:
            raise ValueError("unknown record kind %r" % (r,))
    return lines


class Dnsmasq:
    def __init__(self, workdir, records=(), local=("test", "arpa", "example", "invalid"),
                 ttl=300, host="127.0.0.1", extra=()):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.host = host
        self.port = None
        self.records = list(records)
        self.local = list(local)
        self.ttl = ttl
        self.extra = list(extra)
        self.proc = None
        self.conf = os.path.join(self.dir, "dnsmasq.conf")
        self.log_path = os.path.join(self.dir, "dnsmasq.log")

    @property
    def server(self):
        """The dns_resolver value for postern: "127.0.0.1:PORT"."""
        return "%s:%d" % (self.host, self.port)

    def _write_conf(self):
        lines = [
            "# generated by tests/e2e/dnsmasq.py",
            "port=%d" % self.port,
            "listen-address=%s" % self.host,
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "no-poll",
            "no-negcache",
            "local-ttl=%d" % self.ttl,
            "log-queries",
            "log-facility=%s" % self.log_path,
        ]
        lines += ["local=/%s/" % d for d in self.local]
        lines += _record_lines(self.records)
        lines += [e.lstrip("-") for e in self.extra]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, port=None):
        """Starts on a free port (or on `port`, first: a restart keeps its
        address so that a running postern's dns_resolver still points at it)."""
        assert self.proc is None or self.proc.poll() is not None
        last = None
        for attempt in range(5):
            self.port = port if port and attempt == 0 else _free_udp_tcp_port(self.host)
            self._write_conf()
            user = "root" if os.geteuid() == 0 else None
            cmd = [DNSMASQ, "--keep-in-foreground", "--conf-file=" + self.conf,
                   "--pid-file=" + os.path.join(self.dir, "dnsmasq.pid")]
            if user:
                cmd.append("--user=" + user)
            errf = open(os.path.join(self.dir, "dnsmasq.err"), "ab")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
            errf.close()
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if query(self.host, self.port, "ready.invalid", "A", timeout=0.3) is not None:
                    return self
                time.sleep(0.05)
            last = self._errors()
            self.stop()
        raise AssertionError("dnsmasq did not start: %s" % last)

    def _errors(self):
        try:
            with open(os.path.join(self.dir, "dnsmasq.err"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-2000:]
        except FileNotFoundError:
            return ""

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout=10.0):
        """SIGTERM by PID, SIGKILL after timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, records=None):
        """Stops and starts again on the same port if it is still free (check
        .port), with new records if given."""
        self.stop()
        if records is not None:
            self.records = list(records)
        return self.start(port=self.port)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *a):
        self.stop()


class Blackhole:
    """A UDP and a TCP socket on 127.0.0.1:<port> that never answer: queries
    time out. `.server` is "127.0.0.1:PORT"; close() releases the port."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        for _ in range(50):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((host, 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind((host, self.port))
                self.tcp.listen(16)
                return
            except OSError:
                self.udp.close()
                self.tcp.close()
        raise AssertionError("no free port for the blackhole")

    @property
    def server(self):
        return "%s:%d" % (self.host, self.port)

    def close(self):
        self.udp.close()
        self.tcp.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
