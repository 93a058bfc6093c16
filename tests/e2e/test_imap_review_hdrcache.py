"""Review of the header-only confirm (src/imap/searchcmd.c): the octets
read for a header key come from the MIME cache (mime_cache_header_end);
a cache that opens but does not describe the message file (corrupted; its
part table is checked against the cache only, up to 4 GiB) must not make
the worker reserve gigabytes for a file of a few hundred octets."""
import os
import resource
import sqlite3
import struct

from test_imap_fts import multiappend, search, wait_indexed

ALICE = "alice@example.test"
MC_HDR = 52  # mime.c: the part table's offset in a version 3 cache


def vsz(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_corrupt_header_end_reads_the_file(make_server):
    srv = make_server(workers=1)
    msgs = [("From: a%d@example.net\r\nSubject: note %d\r\n\r\nbody %d\r\n" % (i, i, i)).encode()
            for i in range(12)]
    with srv.imap_login(ALICE) as c:
        assert c.cmd("CREATE box").ok
        multiappend(c, "box", msgs)
        wait_indexed(srv)
        assert c.cmd("EXAMINE box").ok
        assert search(c, ["SUBJECT", ("lit", "note")]) == list(range(1, 13))
        # message 5's part 0: header length 3 GiB, the body after it
        db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
        with db:
            mid, cache = db.execute(
                "SELECT m.id, m.cache FROM messages m JOIN mailbox_messages mm"
                " ON mm.message_id = m.id WHERE mm.uid = 5 AND m.cache IS NOT NULL"
                " ORDER BY m.id DESC LIMIT 1").fetchone()
            cache = bytearray(cache)
            assert cache[:4] == b"PMC\x03" and struct.unpack_from("<I", cache, 8)[0] == 1
            big = 3 << 30
            struct.pack_into("<QQQQ", cache, MC_HDR, 0, big, big, 0)
            db.execute("UPDATE messages SET cache = ? WHERE id = ?", (bytes(cache), mid))
        db.close()
        # the address space the daemon has now, and 1 GiB more
        pid = srv.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
        resource.prlimit(pid, resource.RLIMIT_AS, (vsz(pid) + (1 << 30), hard))
        try:
            r = c.cmd('UID SEARCH SUBJECT "note"')
            assert r.ok, r
        finally:
            if srv.proc.poll() is None:
                resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))
        assert srv.proc.poll() is None, srv.log()[-2000:]
        got = [l for l in r.untagged if l.startswith("* SEARCH")]
        # the corrupted cache's message may or may not match; the others do
        assert set(range(1, 13)) - {5} <= {int(x) for x in got[0].split()[2:]}, r
