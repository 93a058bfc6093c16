"""SEARCH BODY from the index's stored text (fts_text, searchcmd.c
confirm_text) against the scan (fts = no) on the same data directory, on
bodies built to tell them apart: NUL octets, invalid UTF-8, CR-only and bare
LF lines, legacy and stateful charsets, UTF-16, HTML entities, nested
message/rfc822, an unknown charset, a text part inside an attachment; and
needles with CR, U+FFFD, case folding beyond ASCII, in OR/NOT programs."""
import base64

from test_imap_fts import index_and_scan, multiappend, scan_answers, wait_indexed

ALICE = "alice@example.test"


def msg(ct, body, cte=None, extra=b""):
    h = b"From: e@example.net\r\nSubject: edge\r\nMIME-Version: 1.0\r\nContent-Type: " + ct
    if cte:
        h += b"\r\nContent-Transfer-Encoding: " + cte
    return h + b"\r\n" + extra + b"\r\n" + body


CORPUS = [
    msg(b"text/plain", b"alpha\x00omega nulcase here\r\n"),
    msg(b"text/plain; charset=utf-8", b"caf\xe9 latte invalidutf\xff\xfe end\r\n"),
    msg(b"text/plain; charset=iso-8859-1", b"Stra\xdfe und Gr\xfc\xdfe latin\r\n"),
    msg(b"text/plain; charset=utf-16", base64.b64encode("utf sixteen Ωmega text".encode("utf-16")) + b"\r\n",
        b"base64"),
    msg(b"text/plain; charset=iso-2022-jp", "日本語のテキスト jis text".encode("iso-2022-jp") + b"\r\n"),
    msg(b"text/html; charset=utf-8", b"<p>caf&eacute; &amp; cr&egrave;me <b>bold</b>text &#x212A;elvin</p>\r\n"),
    msg(b"text/plain", b"cr only line\rsecond crline\rthird\r\n"),
    msg(b"text/plain", b"bare lf line\nsecond lfline\n"),
    msg(b"multipart/mixed; boundary=x",
        b"--x\r\nContent-Type: text/plain\r\n\r\nouter text part\r\n"
        b"--x\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode("inner nested Ünïcode body".encode()) +
        b"\r\n--x\r\nContent-Type: text/plain; name=att.txt\r\nContent-Disposition: attachment\r\n\r\n"
        b"attached text file\r\n--x--\r\n"),
    msg(b"text/plain; charset=x-unknown-charset", b"unknown charset words \xe4\xf6\xfc\r\n"),
    msg(b"text/plain; charset=utf-8", "KELVIN sign \u212a and \u1e9e capital sharp and ΣΊΣΥΦΟΣ\r\n".encode()),
    msg(b"text/plain; charset=utf-8", b"quoted =C3=A9t=C3=A9 soft=\r\nbreak=E2=\r\n=82=AC euro\r\n", b"quoted-printable"),
    msg(b"multipart/alternative; boundary=y",
        b"--y\r\nContent-Type: text/plain\r\n\r\nplain alternative\r\n"
        b"--y\r\nContent-Type: text/html\r\n\r\n<div>html alternative</div>\r\n--y--\r\n"),
    msg(b"multipart/mixed; boundary=z",
        b"--z\r\nContent-Type: text/plain\r\n\r\ntruncated multipart body"),
    msg(b"text/plain", b"\x00\x00leading nuls then text\x00"),
]

NEEDLES = [b"nulcase", b"alpha", b"omega nul", b"caf\xef\xbf\xbd latte", b"invalidutf\xef\xbf\xbd\xef\xbf\xbd",
           b"latte", b"stra\xc3\x9fe", b"GR\xc3\x9c\xc3\x9fE", b"sixteen", b"\xce\xa9MEGA",
           "日本語".encode(), b"jis text", b"caf\xc3\xa9 &", b"cr\xc3\xa8me", b"boldtext",
           "\u212aelvin".encode(), b"kelvin", b"only line\rsecond", b"line\rsecond crl",
           b"lf line", b"outer text", b"inner nested", "ünïcode".encode(), b"attached text",
           b"unknown charset", b"words \xef\xbf\xbd", "kelvin sign k".encode(), "\u212a and".encode(),
           "ß capital".encode(), "ẞ capital".encode(), "σίσυφος".encode(), "ΣΊΣΥΦΟΣ".encode(),
           "été soft".encode(), "break€".encode(), b"breakeuro", b"plain alternative",
           b"html alternative", b"truncated multipart", b"leading nuls", b"then text", b"edge",
           b"line\r", b"\r\nsecond", b"crline\rthird", b"Subject: inner"]


def progs():
    out = []
    for n in NEEDLES:
        out.append([b"BODY", n])
        out.append([b"NOT", b"BODY", n])
        out.append([b"OR", b"BODY", n, b"BODY", b"outer text"])
        out.append([b"BODY", n, b"LARGER", b"200"])
    return out


def search_raw(c, program):
    tag = c.next_tag()
    out = ("%s UID SEARCH CHARSET UTF-8" % tag).encode()
    for p in program:
        if p[:1].isupper() and p.isalnum() or p.isdigit():
            out += b" " + p
        else:
            out += b" {%d+}\r\n" % len(p) + p
    c.send(out + b"\r\n")
    r = c.read_response(tag)
    res = [l for l in r.untagged if l.startswith("* SEARCH")]
    return (r.tagged.split(" ", 2)[1], sorted(int(x) for x in res[0].split()[2:]) if res else None)


def run(srv):
    with srv.imap_login(ALICE) as c:
        assert c.cmd("EXAMINE edges").ok
        return [search_raw(c, p) for p in progs()]


def test_stored_text_equals_scan_on_edges(make_server, tmp_path_factory, tls_pair):
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE edges").ok
        multiappend(c, "edges", CORPUS * 3)
    wait_indexed(srv)
    idx = run(srv)
    # re-made by a user's rebuild, then the whole index's: the same text
    srv.cli_out("index", "rebuild", ALICE)
    assert run(srv) == idx
    srv.cli_out("index", "rebuild", "--all")
    wait_indexed(srv)
    assert run(srv) == idx
    without = scan_answers(srv, tmp_path_factory, tls_pair, run)
    diffs = [(p, a, b) for p, a, b in zip(progs(), idx, without) if a != b]
    assert not diffs, diffs[:8]
    assert sum(1 for r in without if r[1]) > len(progs()) // 3


def random_corpus(n, seed):
    import random
    rng = random.Random(seed)
    alphabet = ["a", "b", "Z", " ", "\r\n", "\r", "\n", "\x00", "é", "ß", "Σ", "ς", "K", "İ", "ı",
                "&amp;", "<b>", "</b>", "&#xE9;", "\ufffd", "日", "=", "?", "\t"]
    charsets = ["utf-8", "iso-8859-1", "windows-1252", "utf-16", "koi8-r", "x-bogus", None]
    encs = [None, "quoted-printable", "base64", "8bit"]
    msgs, texts = [], []
    for i in range(n):
        parts = []
        for k in range(rng.randrange(1, 4)):
            t = "".join(rng.choice(alphabet) for _ in range(rng.randrange(5, 60)))
            texts.append(t)
            cs = rng.choice(charsets)
            raw = t.encode(cs or "utf-8", "replace") if cs not in (None, "x-bogus") else t.encode()
            if rng.random() < 0.2:
                raw += bytes([rng.randrange(128, 256)])  # a stray octet
            enc = rng.choice(encs)
            if cs == "utf-16":
                enc = "base64"
            if enc == "base64":
                body = base64.b64encode(raw)
            elif enc == "quoted-printable":
                import quopri
                body = quopri.encodestring(raw)
            else:
                body = raw.replace(b"--", b"-")
            ct = rng.choice([b"text/plain", b"text/html"]) + (b"; charset=" + cs.encode() if cs else b"")
            h = b"Content-Type: " + ct + (b"\r\nContent-Transfer-Encoding: " + enc.encode() if enc else b"")
            parts.append(h + b"\r\n\r\n" + body)
        if len(parts) == 1:
            msgs.append(b"Subject: r%d\r\nMIME-Version: 1.0\r\n" % i + parts[0] + b"\r\n")
        else:
            msgs.append(b"Subject: r%d\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=QQ\r\n\r\n" % i
                        + b"".join(b"--QQ\r\n" + p + b"\r\n" for p in parts) + b"--QQ--\r\n")
    needles = set()
    while len(needles) < 150:
        t = rng.choice(texts)
        a = rng.randrange(len(t))
        s = t[a:a + rng.randrange(3, 8)].replace("\n", "").replace("\x00", "")
        if len(s.encode()) >= 3:
            needles.add(s.encode())
    return msgs, sorted(needles)


def test_stored_text_equals_scan_random(make_server, tmp_path_factory, tls_pair):
    msgs, needles = random_corpus(300, 16)
    srv = make_server()
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE edges").ok
        multiappend(c, "edges", msgs)
    wait_indexed(srv)

    def go(s):
        with s.imap_login(ALICE) as c:
            assert c.cmd("EXAMINE edges").ok
            return [search_raw(c, [b"BODY", n]) for n in needles]
    idx, without = index_and_scan(srv, tmp_path_factory, tls_pair, go)
    diffs = [(n, a, b) for n, a, b in zip(needles, idx, without) if a != b]
    assert not diffs, diffs[:8]
    assert sum(1 for r in without if r[1]) > len(needles) // 2
