"""IMAP METADATA and METADATA-SERVER (RFC 5464) against the daemon, with the
exact responses: GETMETADATA with MAXSIZE (LONGENTRIES) and DEPTH 0/1/
infinity, SETMETADATA with strings, literals, literal8 with NUL and NIL,
entry name syntax (3.2: BAD) and case-insensitivity, the limits ([METADATA
MAXSIZE n], [METADATA TOOMANY], all or nothing), server entries (the
user's /private ones, the administrator's /shared ones through `postern
metadata`, /shared/admin), and entries following RENAME, going with DELETE
and with the user, kept across a restart. Unsolicited METADATA responses
(4.4) are optional and not sent."""
import imaplib

from conftest import imap_quote

ALICE = "alice@example.test"
BOB = "bob@example.test"


def login(server, user=ALICE):
    return server.imap_login(user)


def meta(c, line):
    """(untagged lines, tagged status + text without the tag)."""
    r = c.cmd(line)
    return r.untagged, r.status + " " + r.text


def setm(c, line):
    r = c.cmd("SETMETADATA " + line)
    return r.status + " " + r.text


def literal_cmd(c, head, chunks):
    """Sends `tag head` where head ends before the first literal; chunks is a
    list of (literal bytes, text after it, synchronising); returns the tagged
    line (and the untagged ones)."""
    tag = c.next_tag()
    c.send(tag.encode() + b" " + head)
    for data, after, sync in chunks:
        if sync:
            line = c.readline()
            assert line.startswith("+"), line
        c.send(data + after)
    return c.read_response(tag)


def test_capability(server):
    with login(server) as c:
        r = c.cmd("CAPABILITY")
        caps = r.untagged[0].split()
        assert "METADATA" in caps and "METADATA-SERVER" in caps, r


def test_set_get_mailbox_entries(server):
    with login(server) as c:
        assert setm(c, 'INBOX (/private/comment "My own comment" /shared/comment'
                       ' "Shared comment")') == "OK SETMETADATA completed"
        # RFC 5464 4.2 examples
        assert meta(c, "GETMETADATA INBOX /private/comment") == (
            ['* METADATA INBOX (/private/comment "My own comment")'],
            "OK GETMETADATA completed")
        assert meta(c, "GETMETADATA INBOX (/shared/comment /private/comment)") == (
            ['* METADATA INBOX (/shared/comment "Shared comment" /private/comment'
             ' "My own comment")'], "OK GETMETADATA completed")
        # 3.2: names are case-insensitive, answered lowercase; INBOX too
        assert meta(c, "GETMETADATA inbox (/PRIVATE/Comment)") == (
            ['* METADATA INBOX (/private/comment "My own comment")'],
            "OK GETMETADATA completed")
        assert setm(c, 'INBOX (/Private/COMMENT "Changed")') == "OK SETMETADATA completed"
        # several entries without parentheses (the example of 4.4.1)
        assert meta(c, "GETMETADATA INBOX /private/comment /shared/comment") == (
            ['* METADATA INBOX (/private/comment "Changed" /shared/comment "Shared comment")'],
            "OK GETMETADATA completed")
        # an entry that does not exist: NIL (as Dovecot); a repeated one once
        assert meta(c, "GETMETADATA INBOX (/private/comment /private/nothing"
                       " /private/comment /PRIVATE/comment /private/nothing)") == (
            ['* METADATA INBOX (/private/comment "Changed" /private/nothing NIL)'],
            "OK GETMETADATA completed")
        # NIL removes (4.3)
        assert setm(c, "INBOX (/private/comment NIL /shared/comment NIL)") == \
            "OK SETMETADATA completed"
        assert meta(c, "GETMETADATA INBOX (/private/comment /shared/comment)") == (
            ["* METADATA INBOX (/private/comment NIL /shared/comment NIL)"],
            "OK GETMETADATA completed")
        # removing what is not there is fine
        assert setm(c, "INBOX (/private/comment NIL)") == "OK SETMETADATA completed"
        # the selected state too, on an EXAMINEd mailbox (3.3: read access)
        assert c.cmd("EXAMINE INBOX").ok
        assert setm(c, 'INBOX (/private/x "1")') == "OK SETMETADATA completed"
        assert setm(c, "INBOX (/private/x NIL)") == "OK SETMETADATA completed"


def test_entries_are_per_user(server):
    with login(server) as a, login(server, BOB) as b:
        assert setm(a, 'INBOX (/shared/comment "alice\'s")') == "OK SETMETADATA completed"
        # no shared mailboxes: bob's INBOX is another mailbox
        assert meta(b, "GETMETADATA INBOX /shared/comment") == (
            ["* METADATA INBOX (/shared/comment NIL)"], "OK GETMETADATA completed")
        assert setm(a, "INBOX (/shared/comment NIL)") == "OK SETMETADATA completed"


def test_literals_and_literal8(server):
    with login(server) as c:
        # RFC 5464 4.3 example: a multi-line literal
        text = b"My new comment across\r\ntwo lines."
        assert len(text) == 33
        r = literal_cmd(c, b"SETMETADATA INBOX (/private/comment {33}\r\n",
                        [(text, b")\r\n", True)])
        assert r.tagged.endswith("OK SETMETADATA completed"), r
        tag = c.next_tag()
        c.send(tag + " GETMETADATA INBOX /private/comment\r\n")
        untagged, tagged = c.read_response_raw(tag)
        assert untagged == [(b"* METADATA INBOX (/private/comment {33})", [text])]
        assert tagged == tag + " OK GETMETADATA completed"
        # LITERAL+ and a binary value with NUL (literal8, value = nstring /
        # literal8): given back as literal8
        blob = b"a\x00b\xff\r\nc"
        r = literal_cmd(c, b"SETMETADATA INBOX (/private/vendor/vendor.test/bin ~{%d+}\r\n"
                        % len(blob), [(blob, b" /private/vendor/vendor.test/txt {3+}\r\n",
                                       False), (b"abc", b")\r\n", False)])
        assert r.tagged.endswith("OK SETMETADATA completed"), r
        tag = c.next_tag()
        c.send(tag + " GETMETADATA INBOX (/private/vendor/vendor.test/bin"
               " /private/vendor/vendor.test/txt)\r\n")
        untagged, tagged = c.read_response_raw(tag)
        assert untagged == [(b"* METADATA INBOX (/private/vendor/vendor.test/bin ~{%d}"
                             b' /private/vendor/vendor.test/txt "abc")' % len(blob), [blob])]
        assert tagged == tag + " OK GETMETADATA completed"
        # 8-bit text: a literal; an empty value is a value
        gruss = "Grüße".encode()
        r = literal_cmd(c, b"SETMETADATA INBOX (/private/comment {%d}\r\n" % len(gruss),
                        [(gruss, b' /private/empty "")\r\n', True)])
        assert r.tagged.endswith("OK SETMETADATA completed"), r
        tag = c.next_tag()
        c.send(tag + " GETMETADATA INBOX (/private/comment /private/empty)\r\n")
        untagged, tagged = c.read_response_raw(tag)
        assert untagged == [(b'* METADATA INBOX (/private/comment {7} /private/empty "")',
                             [gruss])]
        assert setm(c, "INBOX (/private/comment NIL /private/empty NIL"
                       " /private/vendor/vendor.test/bin NIL"
                       " /private/vendor/vendor.test/txt NIL)") == "OK SETMETADATA completed"


def test_depth_and_maxsize(server):
    with login(server) as c:
        assert c.cmd("CREATE Filters").ok
        assert setm(c, 'Filters (/private/filters/values/small "SMALLER 5000"'
                       ' /private/filters/values/boss "FROM \\"boss@example.com\\""'
                       ' /private/filters/values/a/deep "x" /private/filters/values-other "y"'
                       ' /shared/comment "0123456789abcdef")') == "OK SETMETADATA completed"
        # RFC 5464 4.2.2 example: DEPTH 1, children only (name order)
        assert meta(c, "GETMETADATA (DEPTH 1) Filters (/private/filters/values)") == (
            ['* METADATA Filters (/private/filters/values/boss "FROM \\"boss@example.com\\""'
             ' /private/filters/values/small "SMALLER 5000")'], "OK GETMETADATA completed")
        assert meta(c, "GETMETADATA (DEPTH infinity) Filters /private/filters/values") == (
            ['* METADATA Filters (/private/filters/values/a/deep "x"'
             ' /private/filters/values/boss "FROM \\"boss@example.com\\""'
             ' /private/filters/values/small "SMALLER 5000")'], "OK GETMETADATA completed")
        # DEPTH 0 (the default): the entry alone, NIL here
        assert meta(c, "GETMETADATA (DEPTH 0) Filters (/private/filters/values)") == (
            ["* METADATA Filters (/private/filters/values NIL)"], "OK GETMETADATA completed")
        # the prefix alone lists a whole tree; both option orders (the
        # examples of 4.2.1 put them after the mailbox)
        everything = ('* METADATA Filters (/private/filters/values-other "y"'
                      ' /private/filters/values/a/deep "x"'
                      ' /private/filters/values/boss "FROM \\"boss@example.com\\""'
                      ' /private/filters/values/small "SMALLER 5000"'
                      ' /shared/comment "0123456789abcdef")')
        assert meta(c, "GETMETADATA (DEPTH INFINITY) Filters (/private /shared)") == (
            [everything], "OK GETMETADATA completed")
        assert meta(c, "GETMETADATA Filters (DEPTH infinity) (/private /shared)") == (
            [everything], "OK GETMETADATA completed")
        # 4.2.1: MAXSIZE keeps larger values out, LONGENTRIES the largest
        assert meta(c, "GETMETADATA (MAXSIZE 12 DEPTH infinity) Filters (/shared"
                       " /private/filters/values)") == (
            ['* METADATA Filters (/private/filters/values/a/deep "x"'
             ' /private/filters/values/small "SMALLER 5000")'],
            "OK [METADATA LONGENTRIES 23] GETMETADATA completed")
        # nothing small enough: no METADATA response, the code still
        assert meta(c, "GETMETADATA (MAXSIZE 0) Filters /shared/comment") == (
            [], "OK [METADATA LONGENTRIES 16] GETMETADATA completed")
        # bad options
        for opts in ("(DEPTH 2)", "(MAXSIZE -1)", "(MAXSIZE)", "(FOO 1)", "()"):
            untagged, status = meta(c, "GETMETADATA %s Filters /shared/comment" % opts)
            assert untagged == [] and status.startswith("BAD "), (opts, status)
        assert c.cmd("DELETE Filters").ok


def test_entry_name_syntax(server):
    with login(server) as c:
        # RFC 5464 3.2: invalid entry names get BAD
        for name in ("comment", "/private/", "/private//x", "/other/x", "/private/a*b",
                     "/private/a%", '"/private/\x01"', "/privatex/y", '"/private/caf\xc3\xa9"',
                     "NIL", '""'):
            untagged, status = meta(c, "GETMETADATA INBOX %s" % name)
            assert status.startswith("BAD ") and untagged == [], (name, status)
            assert setm(c, 'INBOX (%s "v")' % name).startswith("BAD "), name
            assert c.cmd("NOOP").ok  # BADs in a row end a session (imap_max_errors)
        # the prefix alone names a tree to read, not an entry to set
        assert setm(c, 'INBOX (/private "v")').startswith("BAD ")
        assert meta(c, "GETMETADATA INBOX /private") == (
            ["* METADATA INBOX (/private NIL)"], "OK GETMETADATA completed")
        # value = nstring / literal8: no atoms, no lists; pairs
        assert setm(c, "INBOX (/private/x value)").startswith("BAD ")
        assert setm(c, "INBOX (/private/x (a))").startswith("BAD ")
        assert setm(c, "INBOX (/private/x)").startswith("BAD ")
        assert setm(c, "INBOX ()").startswith("BAD ")
        assert setm(c, 'INBOX /private/x "v"').startswith("BAD ")
        assert meta(c, "GETMETADATA INBOX")[1].startswith("BAD ")
        assert meta(c, "GETMETADATA INBOX ()")[1].startswith("BAD ")
        assert c.cmd("NOOP").ok


def test_nonexistent_mailbox(server):
    with login(server) as c:
        assert meta(c, "GETMETADATA Nowhere /private/comment") == (
            [], "NO [NONEXISTENT] GETMETADATA: no such mailbox")
        assert setm(c, 'Nowhere (/private/comment "x")') == \
            "NO [NONEXISTENT] SETMETADATA: no such mailbox"


def test_server_entries(server):
    with login(server) as a, login(server, BOB) as b:
        # RFC 5464 3.2.1.1 /shared/admin: postmaster@ the first domain
        assert meta(a, 'GETMETADATA "" /shared/admin') == (
            ['* METADATA "" (/shared/admin "mailto:postmaster@example.test")'],
            "OK GETMETADATA completed")
        # a user's server /private entries are the user's
        assert setm(a, '"" (/private/vendor/vendor.test/motd "hi alice")') == \
            "OK SETMETADATA completed"
        assert meta(a, 'GETMETADATA "" /private/vendor/vendor.test/motd') == (
            ['* METADATA "" (/private/vendor/vendor.test/motd "hi alice")'],
            "OK GETMETADATA completed")
        assert meta(b, 'GETMETADATA "" /private/vendor/vendor.test/motd') == (
            ['* METADATA "" (/private/vendor/vendor.test/motd NIL)'],
            "OK GETMETADATA completed")
        # server /shared entries are the administrator's (3.3 lets the server
        # restrict them): NO [NOPERM], nothing changed
        for entry in ("/shared/comment", "/shared/admin", "/shared/vendor/vendor.test/x"):
            assert setm(a, '"" (/private/vendor/vendor.test/motd NIL %s "mine")' % entry) == \
                "NO [NOPERM] SETMETADATA: server /shared entries are set by the administrator"
        assert meta(a, 'GETMETADATA "" (/private/vendor/vendor.test/motd /shared/comment)') == (
            ['* METADATA "" (/private/vendor/vendor.test/motd "hi alice" /shared/comment NIL)'],
            "OK GETMETADATA completed")
        # the administrator sets them; every user reads them
        server.cli("metadata", "set", "/shared/comment", "Maintenance at 22:00 UTC")
        server.cli("metadata", "set", "/SHARED/Vendor/vendor.test/multi",
                   input="line 1\r\nline 2")
        for c in (a, b):
            assert meta(c, 'GETMETADATA "" /shared/comment') == (
                ['* METADATA "" (/shared/comment "Maintenance at 22:00 UTC")'],
                "OK GETMETADATA completed")
        assert meta(b, 'GETMETADATA (DEPTH infinity) "" /shared') == (
            ['* METADATA "" (/shared/admin "mailto:postmaster@example.test"'
             ' /shared/comment "Maintenance at 22:00 UTC"'
             ' /shared/vendor/vendor.test/multi {14}\r\nline 1\r\nline 2)'],
            "OK GETMETADATA completed")
        assert meta(a, 'GETMETADATA (DEPTH infinity) "" (/private /shared/comment)') == (
            ['* METADATA "" (/private/vendor/vendor.test/motd "hi alice"'
             ' /shared/comment "Maintenance at 22:00 UTC")'], "OK GETMETADATA completed")
        # the CLI: get, list, del, refusals
        assert server.cli_out("metadata", "get", "/shared/comment") == \
            "Maintenance at 22:00 UTC\n"
        assert server.cli_out("metadata", "get", "/shared/admin") == \
            "mailto:postmaster@example.test\n"
        assert server.cli_out("metadata", "get") == (
            "/shared/comment Maintenance at 22:00 UTC\n"
            "/shared/vendor/vendor.test/multi (14 octets)\n"
            "/shared/admin mailto:postmaster@example.test\n")
        assert server.cli_out("metadata", "del", "/shared/vendor/vendor.test/multi") == \
            "/shared/vendor/vendor.test/multi deleted\n"
        p = server.cli("metadata", "del", "/shared/vendor/vendor.test/multi", check=False)
        assert p.returncode == 1 and b"no server entry" in p.stderr
        for args in (("set", "/shared/admin", "x"), ("set", "/private/x", "y"),
                     ("set", "/shared/a*", "y"), ("set",), ("frob",)):
            p = server.cli("metadata", *args, check=False)
            assert p.returncode == 2, (args, p)
        server.cli("metadata", "del", "/shared/comment")
        assert meta(b, 'GETMETADATA "" /shared/comment') == (
            ['* METADATA "" (/shared/comment NIL)'], "OK GETMETADATA completed")
        assert setm(a, '"" (/private/vendor/vendor.test/motd NIL)') == \
            "OK SETMETADATA completed"


def test_admin_option(make_server):
    srv = make_server(imap_metadata_admin="tel:+1-555-0100")
    with srv.imap_login(ALICE) as c:
        assert meta(c, 'GETMETADATA "" /shared/admin') == (
            ['* METADATA "" (/shared/admin "tel:+1-555-0100")'], "OK GETMETADATA completed")
    p = srv.cli("-o", "imap_metadata_admin=not a uri", "check-config", check=False)
    assert p.returncode != 0


def test_limits(make_server):
    srv = make_server(imap_metadata_max_size="1k", imap_metadata_max_entries="10",
                      imap_metadata_max_user_entries="15")
    with srv.imap_login(ALICE) as c:
        big = b"x" * 1025
        r = literal_cmd(c, b"SETMETADATA INBOX (/private/ok \"fine\" /private/big {1025}\r\n",
                        [(big, b")\r\n", True)])
        assert r.tagged.split(" ", 1)[1] == "NO [METADATA MAXSIZE 1024] SETMETADATA: value too large"
        # all or nothing (4.3): /private/ok was not set either
        assert meta(c, "GETMETADATA INBOX /private/ok") == (
            ["* METADATA INBOX (/private/ok NIL)"], "OK GETMETADATA completed")
        r = literal_cmd(c, b"SETMETADATA INBOX (/private/big {1024}\r\n",
                        [(big[:1024], b")\r\n", True)])
        assert r.ok, r
        # 10 entries per mailbox (the one above and 9 more)
        entries = " ".join('/private/e%d "%d"' % (i, i) for i in range(9))
        assert setm(c, "INBOX (%s)" % entries) == "OK SETMETADATA completed"
        assert setm(c, 'INBOX (/private/e9 "new")') == \
            "NO [METADATA TOOMANY] SETMETADATA: too many entries"
        # replacing one is not a new one; removing one makes room, in order
        assert setm(c, 'INBOX (/private/e0 "again")') == "OK SETMETADATA completed"
        assert setm(c, 'INBOX (/private/e9 "new" /private/e0 NIL)') == \
            "NO [METADATA TOOMANY] SETMETADATA: too many entries"
        assert setm(c, 'INBOX (/private/e0 NIL /private/e9 "new")') == \
            "OK SETMETADATA completed"
        # 15 per account over its mailboxes and the server
        assert setm(c, '"" (/private/s0 "1" /private/s1 "2" /private/s2 "3" /private/s3 "4")') == \
            "OK SETMETADATA completed"
        assert setm(c, 'Sent (/private/t0 "1" /private/t1 "2")') == \
            "NO [METADATA TOOMANY] SETMETADATA: too many entries"
        assert setm(c, 'Sent (/private/t0 "1")') == "OK SETMETADATA completed"
        assert meta(c, "GETMETADATA Sent (/private/t0 /private/t1)") == (
            ['* METADATA Sent (/private/t0 "1" /private/t1 NIL)'], "OK GETMETADATA completed")
    # the server /shared entries: imap_metadata_max_entries too
    for i in range(10):
        srv.cli("metadata", "set", "/shared/n%d" % i, str(i))
    p = srv.cli("metadata", "set", "/shared/n10", "x", check=False)
    assert p.returncode == 1 and b"too many server entries" in p.stderr, p
    p = srv.cli("metadata", "set", "/shared/n0", input=b"y" * 1025, check=False)
    assert p.returncode == 2 and b"imap_metadata_max_size" in p.stderr, p


def test_rename_delete_user_restart(make_server):
    srv = make_server()
    user = "dave@example.test"
    srv.cli("user", "add", user, input="dave-Secret-4\n")
    with srv.imap_login(user, "dave-Secret-4") as c:
        assert c.cmd("CREATE Work/Sub").ok
        assert setm(c, 'Work (/private/comment "work")') == "OK SETMETADATA completed"
        assert setm(c, 'Work/Sub (/shared/comment "sub")') == "OK SETMETADATA completed"
        assert setm(c, 'INBOX (/private/comment "inbox")') == "OK SETMETADATA completed"
        assert setm(c, '"" (/private/vendor/vendor.test/x "srv")') == "OK SETMETADATA completed"
        # RFC 5464 4.1: entries follow RENAME, children included
        assert c.cmd("RENAME Work Job").ok
        assert meta(c, "GETMETADATA Job /private/comment") == (
            ['* METADATA Job (/private/comment "work")'], "OK GETMETADATA completed")
        assert meta(c, "GETMETADATA Job/Sub /shared/comment") == (
            ['* METADATA Job/Sub (/shared/comment "sub")'], "OK GETMETADATA completed")
        # a new mailbox of the old name starts without them
        assert c.cmd("CREATE Work").ok
        assert meta(c, "GETMETADATA Work /private/comment") == (
            ["* METADATA Work (/private/comment NIL)"], "OK GETMETADATA completed")
        # RENAME INBOX: copied to the new mailbox, kept on INBOX
        assert c.cmd("RENAME INBOX Old").ok
        for box in ("INBOX", "Old"):
            assert meta(c, "GETMETADATA %s /private/comment" % box) == (
                ['* METADATA %s (/private/comment "inbox")' % box], "OK GETMETADATA completed")
        # DELETE removes them: a mailbox created again has none
        assert c.cmd("DELETE Job/Sub").ok
        assert c.cmd("CREATE Job/Sub").ok
        assert meta(c, "GETMETADATA Job/Sub /shared/comment") == (
            ["* METADATA Job/Sub (/shared/comment NIL)"], "OK GETMETADATA completed")
        # the admin CLI's mailbox commands follow the same rules
        assert setm(c, 'Job (/private/y "1")') == "OK SETMETADATA completed"
    srv.cli("mailbox", "rename", user, "Job", "Task")
    srv.cli("mailbox", "delete", user, "Old")
    # persistence across a restart
    srv.restart()
    with srv.imap_login(user, "dave-Secret-4") as c:
        assert meta(c, "GETMETADATA Task (/private/comment /private/y)") == (
            ['* METADATA Task (/private/comment "work" /private/y "1")'],
            "OK GETMETADATA completed")
        assert meta(c, 'GETMETADATA "" /private/vendor/vendor.test/x') == (
            ['* METADATA "" (/private/vendor/vendor.test/x "srv")'], "OK GETMETADATA completed")
    db = srv.db()
    (uid,) = db.execute("SELECT u.id FROM users u JOIN domains d ON d.id = u.domain_id"
                        " WHERE u.localpart = 'dave'").fetchone()
    # Old's rows went with it; INBOX, Task (and its child's none), server: 4
    (n,) = db.execute("SELECT count(*) FROM metadata WHERE user_id = ?", (uid,)).fetchone()
    assert n == 4, n
    db.close()
    # with the user
    srv.cli("user", "del", user)
    db = srv.db()
    (n,) = db.execute("SELECT count(*) FROM metadata WHERE user_id = ?", (uid,)).fetchone()
    db.close()
    assert n == 0


def test_imaplib(server):
    """A stock client: imaplib has no METADATA commands; xatom sends them."""
    m = server.imaplib()
    try:
        m.login(ALICE, server_password(ALICE))
        typ, dat = m.xatom("SETMETADATA", 'INBOX (/private/comment "via imaplib")')
        assert typ == "OK", dat
        typ, dat = m.xatom("GETMETADATA", "INBOX /private/comment")
        assert typ == "OK" and dat == [b"GETMETADATA completed"], dat
        assert m.untagged_responses.pop("METADATA") == [
            b'INBOX (/private/comment "via imaplib")']
        imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
        typ, dat = m._simple_command("GETMETADATA", '(DEPTH 1)', "INBOX", "/private")
        assert typ == "OK", dat
        typ, dat = m._untagged_response(typ, dat, "METADATA")
        assert dat == [b'INBOX (/private/comment "via imaplib")'], dat
        typ, dat = m.xatom("SETMETADATA", "INBOX (/private/comment NIL)")
        assert typ == "OK", dat
    finally:
        m.logout()


def server_password(user):
    from conftest import USERS
    return USERS[user]


def test_output_bounded_by_slices(make_server):
    """Big values (64 entries of 64 KiB) come in slices while the client
    reads: every octet arrives, in order."""
    srv = make_server(imap_metadata_max_size="64k", imap_metadata_max_entries="100")
    with srv.imap_login(ALICE) as c:
        vals = {}
        for i in range(64):
            v = (b"%02d" % i) * (32 * 1024)
            vals["/private/big/%02d" % i] = v
            r = literal_cmd(c, b"SETMETADATA INBOX (/private/big/%02d {%d}\r\n" % (i, len(v)),
                            [(v, b")\r\n", True)])
            assert r.ok, r
        tag = c.next_tag()
        c.send(tag + " GETMETADATA (DEPTH 1) INBOX /private/big\r\n")
        untagged, tagged = c.read_response_raw(tag)
        assert tagged == tag + " OK GETMETADATA completed"
        assert len(untagged) == 1
        text, lits = untagged[0]
        names = sorted(vals)
        assert text == (b"* METADATA INBOX (" + b" ".join(
            n.encode() + b" {65536}" for n in names) + b")")
        assert lits == [vals[n] for n in names]
