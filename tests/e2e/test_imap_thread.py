"""THREAD and UID THREAD (RFC 5256): REFERENCES and ORDEREDSUBJECT against
the daemon, with exact expected responses: imaptest's thread groups, and a
corpus of our own with broken References (missing parents, loops, a message
referring to itself, duplicate Message-IDs, In-Reply-To only), subject
prefixes, blobs and encoded words, sent dates from Date: with INTERNALDATE
as the fallback, search criteria, UID THREAD, and the errors."""
import os
import re

import pytest

from conftest import USERS, _new_server, imap_append, imap_quote
from test_imaptest import IMAPTEST, IMAPTEST_DIR, run_imaptest

USER = "alice@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "thread", imap_auth_plaintext_loopback="yes",
                    imap_max_errors=1000)
    yield s
    s.stop()


THREAD_GROUPS = ["thread", "thread2", "thread3", "thread4", "thread5", "thread6", "thread7",
                 "thread8", "thread-orderedsubject", "thread-orderedsubject2"]


@pytest.mark.parametrize("group", THREAD_GROUPS)
def test_imaptest_thread_group(srv, group):
    assert os.access(IMAPTEST, os.X_OK), "no %s" % IMAPTEST
    rc, out = run_imaptest(srv, os.path.join(IMAPTEST_DIR, "tests", group))
    m = re.search(r"^(\d+) test groups: (\d+) failed, (\d+) skipped", out, re.M)
    assert m, out[-3000:]
    assert (m.group(1), m.group(2), m.group(3)) == ("1", "0", "0"), out[-3000:]
    lines = re.findall(r"^\w[\w ]*: (\d+)/(\d+) individual commands failed$", out, re.M)
    assert lines, out[-3000:]
    assert all(f == "0" for f, _ in lines), out[-3000:]
    assert sum(int(n) for _, n in lines) > 0, "the group ran no command:\n" + out[-3000:]
    assert "Error:" not in out, out[-3000:]


# ---- our corpus ----------------------------------------------------------

def msg(subject=None, msgid=None, refs=None, irt=None, date=None, body="x"):
    h = []
    if msgid is not None:
        h.append("Message-ID: " + msgid)
    if refs is not None:
        h.append("References: " + refs)
    if irt is not None:
        h.append("In-Reply-To: " + irt)
    if subject is not None:
        h.append("Subject: " + subject)
    if date is not None:
        h.append("Date: Wed, 02 Dec 2026 " + date)
    h.append("From: a@example.test")
    return ("\r\n".join(h) + "\r\n\r\n" + body + "\r\n").encode()


# (message, INTERNALDATE). The internal dates run backwards, so that only the
# Date: fields order the messages that have one (RFC 5256 2.2); message 15
# has none and falls back to its INTERNALDATE (the earliest of all).
CORPUS = [
    (msg("Project plan", "<a@x>", date="10:01:00 +0000"), "01-Dec-2026 23:59:00 +0000"),
    (msg("Re: Project plan", "<b@x>", refs="<a@x>", date="10:02:00 +0000"),
     "01-Dec-2026 23:58:00 +0000"),
    (msg("Re: Project plan", "<c@x>", refs="<a@x>\r\n <b@x>", date="10:03:00 +0000"),
     "01-Dec-2026 23:57:00 +0000"),
    # In-Reply-To only; its Date in another zone (10:04 UTC)
    (msg("Re: Project plan", "<d@x>", irt="<a@x>", date="11:04:00 +0100"),
     "01-Dec-2026 23:56:00 +0000"),
    # the parent is not in the mailbox (a dummy)
    (msg("Lunch", "<e@x>", refs="<missing@x>", date="10:05:00 +0000"),
     "01-Dec-2026 23:55:00 +0000"),
    (msg("Re: Lunch", "<f@x>", refs="<missing@x>", date="10:06:00 +0000"),
     "01-Dec-2026 23:54:00 +0000"),
    # a loop: g refers to h, h to g
    (msg("Loop", "<g@x>", refs="<h@x>", date="10:07:00 +0000"), "01-Dec-2026 23:53:00 +0000"),
    (msg("Re: Loop", "<h@x>", refs="<g@x>", date="10:08:00 +0000"),
     "01-Dec-2026 23:52:00 +0000"),
    # refers to itself
    (msg("Self", "<i@x>", refs="<i@x>", date="10:09:00 +0000"), "01-Dec-2026 23:51:00 +0000"),
    # a duplicate Message-ID: it gets a unique one
    (msg("Project plan", "<a@x>", date="10:10:00 +0000"), "01-Dec-2026 23:50:00 +0000"),
    # comments and junk in References
    (msg("Re: Project plan", "<k@x>", refs="(see <zz@x>) <b@x> junk <c@x>",
         date="10:11:00 +0000"), "01-Dec-2026 23:49:00 +0000"),
    # References in the wrong order: linking a under b would make a loop
    (msg("Re: Project plan", "<l@x>", refs="<b@x> <a@x>", date="10:12:00 +0000"),
     "01-Dec-2026 23:48:00 +0000"),
    # encoded words (RFC 2047), decoded before the base subject is taken
    (msg("=?utf-8?q?Re=3A_Caf=C3=A9?=", "<m@x>", date="10:14:00 +0000"),
     "01-Dec-2026 23:47:00 +0000"),
    (msg("=?iso-8859-1?q?CAF=C9?=", "<n@x>", date="10:13:00 +0000"),
     "01-Dec-2026 23:46:00 +0000"),
    # no Message-ID, no Date: INTERNALDATE; a blob before the "Re:"
    (msg("[list] Re: Lunch"), "02-Dec-2026 09:00:00 +0000"),
    (msg("Fwd: Loop (fwd)", date="10:16:00 +0000"), "01-Dec-2026 23:45:00 +0000"),
]

REFERENCES_ALL = ("* THREAD ((15)(5)(6))((1 (2 3 11)(4)(12))(10))((8 7)(16))(9)(14 13)")
ORDEREDSUBJECT_ALL = ("* THREAD (15 (5)(6))(1 (2)(3)(4)(10)(11)(12))(7 (8)(16))(9)(14 13)")


@pytest.fixture(scope="module")
def corpus(srv):
    c = srv.imap_login(USER)
    assert c.cmd('CREATE "thr"').ok
    # one message first, expunged: UIDs are sequence numbers + 1
    assert imap_append(c, "thr", msg("gone")).ok
    for data, date in CORPUS:
        r = imap_append(c, "thr", data, flags='"%s"' % date)
        assert r.ok, r
    assert c.cmd('SELECT "thr"').ok
    assert c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("EXPUNGE").ok
    yield c
    c.close()


def thread(c, line):
    r = c.cmd(line)
    assert r.ok, r
    lines = [u for u in r.untagged if u.startswith("* THREAD")]
    assert len(lines) == 1, r
    return lines[0]


def test_references_corpus(corpus):
    assert thread(corpus, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL


def test_orderedsubject_corpus(corpus):
    assert thread(corpus, "THREAD ORDEREDSUBJECT US-ASCII ALL") == ORDEREDSUBJECT_ALL


def to_uids(line):
    return re.sub(r"\d+", lambda m: str(int(m.group(0)) + 1), line)


def test_uid_thread(corpus):
    assert thread(corpus, "UID THREAD REFERENCES UTF-8 ALL") == to_uids(REFERENCES_ALL)
    assert thread(corpus, "UID THREAD ORDEREDSUBJECT UTF-8 ALL") == to_uids(ORDEREDSUBJECT_ALL)


def test_search_criteria(corpus):
    # without the messages of <a@x> its replies hang under a dummy that
    # stays (three children at the top level, RFC 5256 4 (4)(B))
    assert (thread(corpus, 'THREAD REFERENCES UTF-8 NOT HEADER Message-ID "<a@x>"') ==
            "* THREAD ((15)(5)(6))((2 3 11)(4)(12))((8 7)(16))(9)(14 13)")
    # SUBJECT searches the decoded subject; a single message per thread
    assert thread(corpus, b"THREAD REFERENCES UTF-8 SUBJECT {5+}\r\ncaf\xc3\xa9") == \
        "* THREAD (14 13)"
    assert thread(corpus, "THREAD ORDEREDSUBJECT UTF-8 SUBJECT loop") == "* THREAD (7 (8)(16))"
    assert thread(corpus, "THREAD REFERENCES UTF-8 1:3") == "* THREAD (1 2 3)"
    assert thread(corpus, "UID THREAD REFERENCES UTF-8 UID 3:4") == "* THREAD (3 4)"
    # nothing matches: "THREAD" alone (RFC 5256 5)
    assert thread(corpus, "THREAD REFERENCES UTF-8 SUBJECT nothing-like-it") == "* THREAD"
    assert thread(corpus, "THREAD ORDEREDSUBJECT UTF-8 SUBJECT nothing-like-it") == "* THREAD"


def test_errors(corpus):
    r = corpus.cmd("THREAD NOSUCH UTF-8 ALL")
    assert r.status == "BAD", r
    r = corpus.cmd("THREAD REFERENCES KOI8-R ALL")
    assert r.status == "NO" and "[BADCHARSET" in r.text, r
    r = corpus.cmd("THREAD REFERENCES UTF-8")
    assert r.status == "BAD", r
    r = corpus.cmd("THREAD REFERENCES")
    assert r.status == "BAD", r
    r = corpus.cmd("THREAD REFERENCES UTF-8 NOSUCHKEY")
    assert r.status == "BAD", r
    # the session goes on
    assert thread(corpus, "THREAD REFERENCES UTF-8 1") == "* THREAD (1)"


def test_not_selected(srv):
    c = srv.imap_login(USER)
    r = c.cmd("THREAD REFERENCES UTF-8 ALL")
    assert r.status == "BAD", r
    c.close()


def test_capability(srv):
    c = srv.imap_login(USER)
    r = c.cmd("CAPABILITY")
    caps = r.untagged[0].split()
    assert "THREAD=REFERENCES" in caps and "THREAD=ORDEREDSUBJECT" in caps, r
    c.close()


def test_long_chain_and_wide_dummy(srv):
    """A References chain 1500 deep (each message refers to all the
    earlier ones' last 20 and its parent) and 300 replies to one missing
    parent: no recursion, exact answers."""
    c = srv.imap_login(USER)
    assert c.cmd('CREATE "chain"').ok
    n = 1500
    for i in range(1, n + 1):
        refs = " ".join("<c%d@x>" % k for k in range(max(1, i - 20), i)) or None
        data = msg("Chain" if i == 1 else "Re: Chain", "<c%d@x>" % i, refs=refs,
                   date="%02d:%02d:%02d +0000" % (i // 3600, i // 60 % 60, i % 60))
        assert imap_append(c, "chain", data).ok
    for i in range(300):
        data = msg("Wide %d" % i, "<w%d@x>" % i, refs="<nobody@x>",
                   date="23:%02d:%02d +0000" % (i // 60, i % 60))
        assert imap_append(c, "chain", data).ok
    assert c.cmd('SELECT "chain"').ok
    want = "* THREAD (" + " ".join(str(i) for i in range(1, n + 1)) + ")(" + \
        "".join("(%d)" % (n + 1 + i) for i in range(300)) + ")"
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == want
    c.close()


def test_long_references_keep_the_parent(srv):
    """A References field of 1201 IDs: the parent (the last one) counts
    even though only the last IDs of a long field are kept."""
    c = srv.imap_login(USER)
    assert c.cmd('CREATE "longrefs"').ok
    assert imap_append(c, "longrefs", msg("Topic", "<p@x>", date="10:00:00 +0000")).ok
    ids = ["<j%d@x>" % i for i in range(1200)] + ["<p@x>"]
    refs = "\r\n ".join(" ".join(ids[i:i + 10]) for i in range(0, len(ids), 10))
    assert imap_append(c, "longrefs", msg("Other", "<q@x>", refs=refs,
                                          date="10:01:00 +0000")).ok
    assert c.cmd('SELECT "longrefs"').ok
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == "* THREAD (1 2)"
    c.close()


def test_client_gone_mid_thread(srv):
    """Clients that leave while THREAD runs (searching, building, writing):
    the daemon frees the command's state and serves the next one."""
    c = srv.imap_login(USER)
    assert c.cmd('CREATE "gone"').ok
    for i in range(400):
        assert imap_append(c, "gone", msg("Gone %d" % (i % 7), "<gone%d@x>" % i,
                                          refs="<gone%d@x>" % (i // 2) if i else None)).ok
    c.close()
    for i in range(6):
        c = srv.imap_login(USER)
        assert c.cmd('SELECT "gone"').ok
        c.send(b"t1 THREAD REFERENCES UTF-8 ALL\r\nt2 UID THREAD ORDEREDSUBJECT UTF-8 ALL\r\n")
        if i % 2:
            c.readline()  # a little of the answer first
        c.close()
    c = srv.imap_login(USER)
    assert c.cmd('SELECT "gone"').ok
    line = thread(c, "THREAD REFERENCES UTF-8 ALL")
    assert line.startswith("* THREAD (1 ") and len(re.findall(r"\d+", line)) == 400, line
    c.close()


# ---- the thread fields come from the MIME cache (mime/threadinfo.h) ----------

def corpus_server(make_server):
    s = make_server("threadcache", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    assert c.cmd('CREATE "thr"').ok
    assert imap_append(c, "thr", msg("gone")).ok
    for data, date in CORPUS:
        assert imap_append(c, "thr", data, flags='"%s"' % date).ok
    assert c.cmd('SELECT "thr"').ok
    assert c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok
    assert c.cmd("EXPUNGE").ok
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == ORDEREDSUBJECT_ALL
    c.close()
    return s


def caches(s):
    db = s.db()
    try:
        return db.execute("SELECT m.id, m.blob, m.cache FROM messages m JOIN mailbox_messages mm"
                          " ON mm.message_id = m.id ORDER BY m.id").fetchall()
    finally:
        db.close()


def test_old_or_missing_cache_threads_identically(make_server):
    """Messages stored before the cache had its thread section (a cache of
    version 1) or its sort section (version 2), or with none at all, thread
    exactly as before: the cache is rebuilt from the message file and saved
    in the current version."""
    import sqlite3
    import time
    s = corpus_server(make_server)
    s.stop()
    db = sqlite3.connect(os.path.join(s.data_dir, "postern.db"), timeout=10)
    rows = db.execute("SELECT id, cache FROM messages WHERE cache IS NOT NULL ORDER BY id").fetchall()
    assert len(rows) >= len(CORPUS)
    for k, (mid, cache) in enumerate(rows):
        assert bytes(cache[:4]) == b"PMC\x03"
        if k % 2:  # no cache (stored before caches existed)
            db.execute("UPDATE messages SET cache = NULL WHERE id = ?", (mid,))
        else:  # an older version of the format (1: no thread section, 2: no sort section)
            db.execute("UPDATE messages SET cache = ? WHERE id = ?",
                       ((b"PMC\x01" if k % 4 else b"PMC\x02") + bytes(cache[4:]), mid))
    # such bodies had no narrow keys row either (sort_keys rows are only
    # written from a current cache)
    db.execute("DELETE FROM sort_keys")
    db.commit()
    db.close()
    s.start()
    c = s.imap_login(USER)
    assert c.cmd('SELECT "thr"').ok
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == ORDEREDSUBJECT_ALL
    # rebuilt and saved (by the committer, soon after the command)
    deadline = time.monotonic() + 10
    while True:
        rows = caches(s)
        if all(r[2] is not None and bytes(r[2][:4]) == b"PMC\x03" for r in rows):
            break
        assert time.monotonic() < deadline, [bytes(r[2][:4]) if r[2] else None for r in rows]
        time.sleep(0.1)
    assert len(rows) == len(CORPUS)
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    c.close()


def test_thread_reads_no_message_file(make_server):
    """With their caches current, THREAD (REFERENCES and ORDEREDSUBJECT,
    sequence numbers and UIDs) answers the same with every message file of
    the mailbox gone: it reads none."""
    s = corpus_server(make_server)
    rows = caches(s)
    assert len(rows) == len(CORPUS)
    aside = os.path.join(s.dir, "aside")
    os.makedirs(aside)
    for _, blob, cache in rows:
        assert bytes(cache[:4]) == b"PMC\x03"
        path = os.path.join(s.data_dir, "blobs", blob[:2], blob)
        os.rename(path, os.path.join(aside, blob))
        assert not os.path.exists(path)
    c = s.imap_login(USER)
    assert c.cmd('SELECT "thr"').ok
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == ORDEREDSUBJECT_ALL
    assert thread(c, "UID THREAD REFERENCES UTF-8 ALL") == to_uids(REFERENCES_ALL)
    # a key that needs the message itself does read the files: none left,
    # so nothing matches (the files really are gone)
    assert thread(c, "THREAD REFERENCES UTF-8 BODY x") == "* THREAD"
    c.close()


# ---- the thread fields come from the narrow rows (sort_keys.thread) ---------

def thread_rows(s):
    db = s.db()
    try:
        return db.execute("SELECT k.message_id, k.thread FROM sort_keys k JOIN mailbox_messages mm"
                          " ON mm.message_id = k.message_id ORDER BY k.message_id").fetchall()
    finally:
        db.close()


def test_thread_reads_the_narrow_rows(make_server):
    """THREAD takes each message's fields from its narrow keys row (schema
    14): with every cache and every message file gone, it answers the same.
    Rows written before that step (thread NULL) are read from the cache
    instead, identically, and filled; a damaged row is logged and the
    message threads as one without those fields."""
    import time
    s = corpus_server(make_server)
    rows = thread_rows(s)
    assert len(rows) == len(CORPUS) and all(t is not None for _, t in rows)
    files = caches(s)
    s.stop()
    s.db_exec("UPDATE messages SET cache = NULL")
    aside = os.path.join(s.dir, "aside")
    os.makedirs(aside)
    for _, blob, _ in files:
        os.rename(os.path.join(s.data_dir, "blobs", blob[:2], blob), os.path.join(aside, blob))
    s.start()
    c = s.imap_login(USER)
    assert c.cmd('SELECT "thr"').ok
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == ORDEREDSUBJECT_ALL
    assert thread(c, "UID THREAD REFERENCES UTF-8 SEEN") == "* THREAD"
    c.close()
    # rows of before step 14: the cache is read (files back, caches
    # rebuilt) and the rows are filled again
    s.stop()
    for _, blob, _ in files:
        os.rename(os.path.join(aside, blob), os.path.join(s.data_dir, "blobs", blob[:2], blob))
    s.db_exec("UPDATE sort_keys SET thread = NULL")
    s.start()
    c = s.imap_login(USER)
    assert c.cmd('SELECT "thr"').ok
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    deadline = time.monotonic() + 10
    while not all(t is not None for _, t in thread_rows(s)):
        assert time.monotonic() < deadline, thread_rows(s)
        time.sleep(0.1)
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == ORDEREDSUBJECT_ALL
    # a damaged row: logged, the command completes
    at = len(s.log())
    s.db_exec("UPDATE sort_keys SET thread = x'ff00' WHERE message_id = %d" % rows[0][0])
    r = c.cmd("THREAD REFERENCES UTF-8 ALL")
    assert r.ok and len([u for u in r.untagged if u.startswith("* THREAD")]) == 1, r
    assert "bad thread keys" in s.log()[at:]
    c.close()
