"""A scripted SMTP next hop for the outbound tests (test_outbound.py,
test_bounce.py): a listener thread, one thread per session, RFC 5321
dot-unstuffing of DATA (section 4.5.2). Subclasses choose the replies."""
import socket
import threading
import time

from waits import wait_until  # noqa: F401 (imported from here by the outbound tests)


class SmtpSink:
    """Every completed transaction is kept in self.tx as (mail, [rcpts],
    data bytes); what mail is comes from mail_from(). data_mode: a list of
    behaviours, one per DATA (the last one repeats): "ok", "cut" (close after
    part of the data), "hold" (wait for release before the reply)."""

    greeting = "220 sink.test ESMTP"
    accept_timeout = 0.2
    session_timeout = 20
    encoding = ("latin-1", "strict")
    data_ok = "250 2.0.0 Ok: queued"
    rset_ok = "250 2.0.0 Ok"
    quit_ok = "221 2.0.0 Bye"

    def __init__(self, ip="127.0.0.1", port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.sock.settimeout(self.accept_timeout)
        self.port = self.sock.getsockname()[1]
        self.data_mode = ["ok"]
        self.tx = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self):
        self.stop_ev.set()
        self.release.set()
        self.thread.join(10)
        self.sock.close()

    # --- the replies (cmd: the command line without CRLF) ---
    def ehlo(self, cmd):
        raise NotImplementedError

    def helo(self, cmd):
        raise NotImplementedError

    def mail_from(self, cmd):
        """Returns (what to record as the sender, reply)."""
        raise NotImplementedError

    def rcpt(self, cmd):
        """Returns (address, reply); a 250 reply adds the address."""
        raise NotImplementedError

    def data_early(self):
        """A reply to DATA in place of 354 (no data is read), or None."""
        return None

    @staticmethod
    def _next(lst):
        return lst.pop(0) if len(lst) > 1 else lst[0]

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        c.settimeout(self.session_timeout)
        f = c.makefile("rb")

        def send(s):
            c.sendall(s.encode() + b"\r\n")
        try:
            send(self.greeting)
            mail, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(*self.encoding).rstrip("\r\n")
                u = cmd.upper()
                if u.startswith("EHLO"):
                    send(self.ehlo(cmd))
                elif u.startswith("HELO"):
                    send(self.helo(cmd))
                elif u.startswith("MAIL FROM:"):
                    mail, r = self.mail_from(cmd)
                    rcpts = []
                    send(r)
                elif u.startswith("RCPT TO:"):
                    addr, r = self.rcpt(cmd)
                    if r.startswith("250"):
                        rcpts.append(addr)
                    send(r)
                elif u == "DATA":
                    if not rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    early = self.data_early()
                    if early:
                        send(early)
                        continue
                    send("354 go ahead")
                    with self.lock:
                        mode = self._next(self.data_mode)
                    data = b""
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        data += l[1:] if l.startswith(b".") else l
                        if mode == "cut" and len(data) > 50:
                            c.shutdown(socket.SHUT_RDWR)
                            c.close()
                            return
                    if mode == "hold":
                        self.holding.set()
                        self.release.wait(30)
                    with self.lock:
                        self.tx.append((mail, list(rcpts), data))
                    send(self.data_ok)
                elif u == "RSET":
                    mail, rcpts = None, []
                    send(self.rset_ok)
                elif u == "QUIT":
                    send(self.quit_ok)
                    return
                else:
                    send("502 5.5.2 unknown")
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass
