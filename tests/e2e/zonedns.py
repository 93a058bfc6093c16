"""A small authoritative DNS server for the tests (Debian python3-dnslib): it
serves a dict of names to records on 127.0.0.1:<free port>, UDP and TCP, from
one thread, and can be told to never answer (a timeout) per name or per type.

    from zonedns import ZoneDNS

    zone = {
        "example.test": [("TXT", "v=spf1 mx -all"), ("MX", 10, "mx.example.test")],
        "mx.example.test": [("A", "192.0.2.1"), ("AAAA", "2001:db8::1")],
        "split.test": [("TXT", ["v=spf1 ip4:", "192.0.2.5 -all"])],  # one TXT, two strings
        "slow.test": ["TIMEOUT"],                  # every lookup of the name times out
        "half.test": [("A", "192.0.2.9"), ("TXT", "TIMEOUT")],  # only TXT times out
        "www.example.test": [("CNAME", "example.test")],
        "1.2.0.192.in-addr.arpa": [("PTR", "mx.example.test")],
    }
    with ZoneDNS(zone) as dns:            # or dns = ZoneDNS(zone).start(); ...; dns.stop()
        run("postern", "-o", "dns_resolver=" + dns.server, ...)
        dns.zone = other_zone             # swap the data at any time
        assert ("slow.test", "TXT") in dns.queries

A pytest fixture: `from zonedns import zonedns` in a test module, then a test
taking `zonedns` gets a started, empty server (set `zonedns.zone`), stopped after it.

Semantics (those of the openspf suite's reference driver):
- A name absent from the zone does not exist: NXDOMAIN (with error_timeout=True,
  names beginning "error." time out instead). A present name without records of
  the asked type: NOERROR with no answer (NODATA).
- Records: ("A", ip), ("AAAA", ip6), ("MX", pref, host) ("" or "." = null MX),
  ("TXT", text | bytes | [strings]) (a str over 255 octets is split into
  strings; a str is encoded as Latin-1 when it can be, so "\\xEF" is the byte
  0xEF, else UTF-8), ("SPF", ...) likewise as type 99, ("PTR", name),
  ("CNAME", target): followed inside the zone for other types, as an
  authoritative server does (a loop ends after 8 steps).
- "TIMEOUT" as an entry: a lookup of the name times out unless a record of the
  asked type comes before it in the list; ("TYPE", "TIMEOUT"): lookups of that
  type time out. A timeout is no answer at all, over UDP and over TCP.
- Answers in the order of the list; names compared without case; the answer
  echoes the question as asked. A UDP answer over 512 octets is sent truncated
  (TC), and the client retries over TCP.

Run alone: `python3 tests/e2e/zonedns.py ZONE.json` (JSON: name -> list
of lists, as above) serves until interrupted."""

import json
import selectors
import socket
import struct
import sys
import threading

from dnslib import AAAA, CNAME, DNSLabel, DNSRecord, MX, PTR, QTYPE, RCODE, RR, TXT, A

UDP_MAX = 512  # RFC 1035 4.2.1, no EDNS
CNAME_MAX = 8
TCP_MAX_CONN = 64


def _free_udp_tcp_port(host):
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                t.bind((host, port))
            except OSError:
                u.close()
                t.close()
                continue
            return u, t
        except BaseException:
            u.close()
            t.close()
            raise
    raise AssertionError("no free UDP+TCP port on %s" % host)


def _octets(s):
    if isinstance(s, (bytes, bytearray)):
        return bytes(s)
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def _txt_strings(v):
    """A TXT value as its list of <character-string>s."""
    if isinstance(v, (list, tuple)):
        return [_octets(x) for x in v]
    b = _octets(v)
    if len(b) <= 255:
        return [b]
    return [b[i:i + 255] for i in range(0, len(b), 255)]


def _key(name):
    """A name as a zone key: lowercase text, no trailing dot."""
    if isinstance(name, DNSLabel):
        name = b".".join(name.label).decode("latin-1")
    return name.rstrip(".").lower()


_TYPES = {"A": QTYPE.A, "AAAA": QTYPE.AAAA, "MX": QTYPE.MX, "TXT": QTYPE.TXT,
          "SPF": QTYPE.SPF, "PTR": QTYPE.PTR, "CNAME": QTYPE.CNAME}


def _rdata(rtype, args):
    if rtype == "A":
        return A(args[0])
    if rtype == "AAAA":
        return AAAA(args[0])
    if rtype == "MX":
        pref, host = args[0], args[1]
        return MX(DNSLabel(host if host not in ("", ".") else "."), int(pref))
    if rtype in ("TXT", "SPF"):
        return TXT(_txt_strings(args[0]))
    if rtype == "PTR":
        return PTR(DNSLabel(args[0]))
    if rtype == "CNAME":
        return CNAME(DNSLabel(args[0]))
    raise ValueError("zonedns: unknown record type %r" % (rtype,))


class _Timeout(Exception):
    pass


class ZoneDNS:
    def __init__(self, zone=None, host="127.0.0.1", ttl=300, error_timeout=False):
        self.zone = zone or {}
        self.host = host
        self.ttl = ttl
        self.error_timeout = error_timeout
        self.queries = []  # (name, type name) as asked, lowercase
        self.port = None
        self._thread = None
        self._stop_r = self._stop_w = None
        self._udp = self._tcp = None

    @property
    def server(self):
        """The dns_resolver option's value: "127.0.0.1:PORT"."""
        return "%s:%d" % (self.host, self.port)

    # ---- the data ----
    def _entries(self, key):
        for k, v in self.zone.items():
            if _key(k) == key:
                return v
        return None

    def _lookup(self, qname, qtype):
        """(rcode, [(owner label, type, rdata)]); raises _Timeout. The first
        owner is the name as asked (same case), later ones the CNAME targets
        as the zone spells them."""
        answers = []
        seen = set()
        label = qname
        for _ in range(CNAME_MAX):
            owner = _key(label)
            entries = self._entries(owner)
            if entries is None:
                if self.error_timeout and owner.startswith("error."):
                    raise _Timeout()
                return RCODE.NXDOMAIN, answers
            found = []
            cname = None
            for e in entries:
                if e == "TIMEOUT" or (isinstance(e, (list, tuple)) and len(e) == 1
                                      and e[0] == "TIMEOUT"):
                    if not found:
                        raise _Timeout()
                    break
                rtype, args = e[0].upper(), list(e[1:])
                t = _TYPES.get(rtype)
                if args and args[0] == "TIMEOUT":
                    if t == qtype:
                        raise _Timeout()
                    continue
                if t == qtype:
                    found.append((label, t, _rdata(rtype, args)))
                elif t == QTYPE.CNAME and cname is None:
                    cname = (label, t, _rdata(rtype, args))
            if found or cname is None or qtype == QTYPE.CNAME:
                return RCODE.NOERROR, answers + found
            # RFC 1034 4.3.2: the CNAME, then the target's records.
            answers.append(cname)
            seen.add(owner)
            label = cname[2].label
            if _key(label) in seen:
                return RCODE.NOERROR, answers
        return RCODE.NOERROR, answers

    def _answer(self, data, tcp):
        """The reply's bytes, or None (no answer: a timeout or garbage)."""
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        if req.header.qr or not req.questions:
            return None
        q = req.q
        self.queries.append((_key(q.qname), QTYPE.get(q.qtype, str(q.qtype))))
        reply = req.reply(ra=0, aa=1)
        reply.header.ad = 0  # an authoritative server vouches for nothing (RFC 4035 3.1.6)
        try:
            rcode, answers = self._lookup(q.qname, q.qtype)
        except _Timeout:
            return None
        reply.header.rcode = rcode
        for owner, t, rd in answers:
            reply.add_answer(RR(owner, t, rdata=rd, ttl=self.ttl))
        out = reply.pack()
        if not tcp and len(out) > UDP_MAX:
            trunc = req.reply(ra=0, aa=1)
            trunc.header.ad = 0
            trunc.header.tc = 1
            trunc.header.rcode = rcode
            out = trunc.pack()
        return bytes(out)

    # ---- the server ----
    def start(self):
        self._udp, self._tcp = _free_udp_tcp_port(self.host)
        self.port = self._udp.getsockname()[1]
        self._tcp.listen(16)
        self._udp.setblocking(False)
        self._tcp.setblocking(False)
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="zonedns", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is None:
            return
        try:
            self._stop_w.send(b"x")
        except OSError:
            pass
        self._thread.join(10)
        self._thread = None
        for s in (self._udp, self._tcp, self._stop_r, self._stop_w):
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ, "udp")
        sel.register(self._tcp, selectors.EVENT_READ, "listen")
        sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        conns = {}  # socket -> bytearray of input
        try:
            while True:
                for key, _ in sel.select():
                    what = key.data
                    if what == "stop":
                        return
                    if what == "udp":
                        self._on_udp()
                    elif what == "listen":
                        try:
                            c, _ = self._tcp.accept()
                        except OSError:
                            continue
                        if len(conns) >= TCP_MAX_CONN:
                            c.close()
                            continue
                        c.setblocking(False)
                        conns[c] = bytearray()
                        sel.register(c, selectors.EVENT_READ, "tcp")
                    else:
                        self._on_tcp(key.fileobj, conns, sel)
        finally:
            for c in conns:
                sel.unregister(c)
                c.close()
            sel.close()

    def _on_udp(self):
        while True:
            try:
                data, addr = self._udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            out = self._answer(data, tcp=False)
            if out is not None:
                try:
                    self._udp.sendto(out, addr)
                except OSError:
                    pass

    def _on_tcp(self, c, conns, sel):
        try:
            data = c.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            sel.unregister(c)
            c.close()
            del conns[c]
            return
        buf = conns[c]
        buf += data
        while len(buf) >= 2:
            n = struct.unpack(">H", buf[:2])[0]
            if len(buf) < 2 + n:
                break
            msg = bytes(buf[2:2 + n])
            del buf[:2 + n]
            out = self._answer(msg, tcp=True)
            if out is not None:
                try:
                    c.setblocking(True)
                    c.settimeout(5)
                    c.sendall(struct.pack(">H", len(out)) + out)
                    c.setblocking(False)
                except OSError:
                    pass


try:
    import pytest

    @pytest.fixture
    def zonedns():
        """A started ZoneDNS with an empty zone; stopped after the test."""
        z = ZoneDNS().start()
        try:
            yield z
        finally:
            z.stop()
except ImportError:  # run alone, without pytest
    pass


def main(argv):
    if len(argv) < 2:
        print("usage: zonedns.py ZONE.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        zone = json.load(f)
    z = ZoneDNS(zone)
    z.start()
    print(z.server, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    z.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
