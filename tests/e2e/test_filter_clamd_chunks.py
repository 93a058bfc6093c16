"""How the content goes to clamd (src/filter/clamd.c): small feeds wait in a
stage until they fill a 64 KB INSTREAM chunk or the message ends, so that a
message goes in a few chunks rather than one (and one send) per line. The
tests show the scan still sees every octet, across chunks, and that a
client pausing with a partial chunk staged is not taken for a stalled
clamd. A real clamd (tests/e2e/clamd.py)."""
import base64
import re
import time

from clamd import EICAR, EICAR_NAME, clamd_fixture  # noqa: F401 (the fixture "clamd")
from conftest import make_message

RCPT = "alice@example.test"
FROM = "sender@client.example.net"


def eicar_message(subject, filler_lines):
    """filler text lines, then EICAR as a base64 attachment."""
    b64 = base64.encodebytes(EICAR).replace(b"\n", b"\r\n").decode()
    text = "".join("filler line %06d of plain words before the attachment\r\n" % i
                   for i in range(filler_lines))
    body = ("This is a MIME message.\r\n--B\r\nContent-Type: text/plain\r\n\r\n" + text +
            "--B\r\nContent-Type: application/octet-stream; name=\"e.com\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + b64 + "--B--\r\n")
    return make_message(FROM, RCPT, subject, body,
                        extra_headers=["MIME-Version: 1.0",
                                       'Content-Type: multipart/mixed; boundary="B"'])


def start_tx(srv):
    c = srv.client("mx")
    c.ehlo()
    assert c.cmd("MAIL FROM:<%s>" % FROM).code == 250
    assert c.cmd("RCPT TO:<%s>" % RCPT).code == 250
    return c


def stored(srv, subject):
    msgs = srv.fetch_messages(RCPT, "INBOX")
    return sum(1 for m in msgs.values()
               if re.search(rb"(?m)^Subject: %s\r$" % re.escape(subject.encode()), m))


def test_virus_after_several_chunks(make_server, clamd):
    """EICAR behind ~250 KB of text: four full chunks, then the last one and
    the end in one send; clamd still finds it (554 5.7.0, named)."""
    srv = make_server("postern-chunks", clamd_socket=clamd.socket, clamd_timeout=10,
                      spam_filter="no")
    msg = eicar_message("chunked-eicar", 4800)
    assert len(msg) > 4 * 64 * 1024
    c = start_tx(srv)
    r = c.data(msg)
    c.close()
    assert r.code == 554 and r.enh == "5.7.0" and EICAR_NAME in r.text, r
    clean = make_message(FROM, RCPT, "chunked-clean", "a clean line of text\r\n" * 12000)
    c = start_tx(srv)
    r = c.data(clean)
    c.close()
    assert r.code == 250, r
    assert stored(srv, "chunked-clean") == 1


def test_client_pause_with_partial_chunk_is_not_a_stall(make_server, clamd):
    """A client that stops for longer than clamd_timeout in the middle of a
    small message (its first lines staged, less than a chunk): clamd waits
    for us, not we for it, so this is no stall; the scan completes and finds
    the virus at the end."""
    srv = make_server("postern-pause", clamd_socket=clamd.socket, clamd_timeout=1,
                      spam_filter="no")
    msg = eicar_message("paused-eicar", 20)
    head, tail = msg[:300], msg[300:]
    c = start_tx(srv)
    assert c.cmd("DATA").code == 354
    c.send(head)
    time.sleep(2.5)
    c.send(tail + b".\r\n")
    r = c.reply()
    c.close()
    assert r.code == 554 and r.enh == "5.7.0" and EICAR_NAME in r.text, r
    assert "stalled" not in srv.log()
