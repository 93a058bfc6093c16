"""IMAP mailbox commands (issue 7): CREATE (with special use), DELETE, RENAME
(INBOX and children), the hierarchy, names in modified UTF-7 and UTF-8,
invalid names, SUBSCRIBE/UNSUBSCRIBE/LSUB, LIST and its LIST-EXTENDED,
SPECIAL-USE, CHILDREN and LIST-STATUS forms with exact lines, STATUS items,
QUOTA, and a LIST of many mailboxes sent within the output bound."""
import re
import time

import pytest

from conftest import USERS, _new_server, make_message

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"

DEFAULT_LIST = [
    '* LIST (\\HasNoChildren \\Archive) "/" Archive',
    '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
    '* LIST (\\HasNoChildren) "/" INBOX',
    '* LIST (\\HasNoChildren \\Junk) "/" Junk',
    '* LIST (\\HasNoChildren \\Sent) "/" Sent',
    '* LIST (\\HasNoChildren \\Trash) "/" Trash',
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    s = _new_server(tmp_path_factory, tls_pair, "imapmbox", imap_max_mailbox_name=64)
    yield s
    s.stop()


def ok(c, line):
    r = c.cmd(line)
    assert r.ok, (line, r)
    return r


def deliver(srv, user, subject="hello", body="Hello there.\r\n"):
    with srv.client("mx") as c:
        c.ehlo()
        r = c.mail("sender@example.net", [user], make_message("sender@example.net", user, subject, body))
        assert r.code == 250, r


def test_default_mailboxes_and_delimiter(srv):
    with srv.imap_login(BOB) as c:
        r = ok(c, 'LIST "" "*"')
        assert r.untagged == DEFAULT_LIST
        assert r.tagged.split(" ", 1)[1] == "OK LIST completed"
        r = ok(c, 'LIST "" ""')
        assert r.untagged == ['* LIST (\\Noselect) "/" ""']
        r = ok(c, 'LIST "foo/bar" ""')
        assert r.untagged == ['* LIST (\\Noselect) "/" foo/']
        # INBOX matches in any case, and is always INBOX
        assert ok(c, 'LIST "" inbox').untagged == ['* LIST (\\HasNoChildren) "/" INBOX']
        assert ok(c, 'LIST "" "In%"').untagged == ['* LIST (\\HasNoChildren) "/" INBOX']
        assert ok(c, 'LIST "" "T*"').untagged == ['* LIST (\\HasNoChildren \\Trash) "/" Trash']
        # NIL is an atom as a pattern (imaptest's nil group)
        assert ok(c, 'LIST "" NIL').untagged == []


def test_create_hierarchy_and_delete(srv):
    with srv.imap_login() as c:
        ok(c, "CREATE work/2024/q1")
        ok(c, "CREATE todo/")  # trailing separator: the name without it
        r = ok(c, 'LIST "" "work*"')
        assert r.untagged == ['* LIST (\\HasChildren) "/" work',
                              '* LIST (\\HasChildren) "/" work/2024',
                              '* LIST (\\HasNoChildren) "/" work/2024/q1']
        assert ok(c, 'LIST "" "work/%"').untagged == ['* LIST (\\HasChildren) "/" work/2024']
        assert ok(c, 'LIST "work/" "%"').untagged == ['* LIST (\\HasChildren) "/" work/2024']
        assert ok(c, 'LIST "" "%/%/%"').untagged == ['* LIST (\\HasNoChildren) "/" work/2024/q1']
        assert ok(c, 'LIST "" todo').untagged == ['* LIST (\\HasNoChildren) "/" todo']
        r = c.cmd("CREATE work/2024")
        assert r.tagged.split(" ", 1)[1] == "NO [ALREADYEXISTS] CREATE: mailbox already exists"
        assert c.cmd("CREATE INBOX").tagged.split(" ", 1)[1] == "NO [ALREADYEXISTS] INBOX always exists"
        assert c.cmd("CREATE inbox").status == "NO"
        ok(c, "CREATE INBOX/sub")  # children of INBOX are allowed
        assert ok(c, 'LIST "" "inbox*"').untagged == ['* LIST (\\HasChildren) "/" INBOX',
                                                      '* LIST (\\HasNoChildren) "/" INBOX/sub']
        # DELETE
        r = c.cmd("DELETE work")
        assert r.tagged.split(" ", 1)[1].startswith("NO [HASCHILDREN] "), r
        assert c.cmd("DELETE nothere").tagged.split(" ", 1)[1] == "NO [NONEXISTENT] DELETE: no such mailbox"
        assert c.cmd("DELETE INBOX").tagged.split(" ", 1)[1] == "NO [CANNOT] INBOX cannot be deleted"
        ok(c, "DELETE work/2024/q1")
        ok(c, "DELETE work/2024")
        ok(c, "DELETE work")
        ok(c, "DELETE INBOX/sub")
        ok(c, "DELETE todo")
        assert ok(c, 'LIST "" "*"').untagged == DEFAULT_LIST


def test_invalid_names(srv):
    with srv.imap_login() as c:
        for name in ('"a//b"', '"/a"', '"a*b"', '"a%b"', '""'):
            r = c.cmd("CREATE " + name)
            assert r.status == "NO" and r.text.startswith("[CANNOT] Invalid mailbox name"), (name, r)
        r = c.cmd("CREATE " + "x" * 65)
        assert r.status == "NO" and r.text.startswith("[LIMIT] "), r
        # 8-bit octets are not modified UTF-7 for an IMAP4rev1 client
        r = c.cmd('CREATE "caf\u00e9"')
        assert r.status == "NO" and r.text.startswith("[CANNOT] "), r
        r = c.cmd("CREATE &Jjo")  # unterminated base64
        assert r.status == "NO" and r.text.startswith("[CANNOT] "), r
        assert c.cmd("CREATE").status == "BAD"
        assert c.cmd("CREATE a (USE (\\Flagged))").tagged.split(" ", 1)[1].startswith("NO [USEATTR] ")
        assert c.cmd("CREATE a (FOO)").status == "BAD"
        assert ok(c, 'LIST "" "*"').untagged == DEFAULT_LIST


def test_create_special_use(srv):
    with srv.imap_login(CAROL) as c:
        ok(c, "CREATE Outbox (USE (\\Sent))")
        r = ok(c, 'LIST (SPECIAL-USE) "" "*"')
        assert r.untagged == DEFAULT_LIST[0:2] + [
            DEFAULT_LIST[3], '* LIST (\\HasNoChildren \\Sent) "/" Outbox'] + DEFAULT_LIST[4:]
        r = ok(c, 'LIST "" "*" RETURN (SPECIAL-USE)')
        assert '* LIST (\\HasNoChildren \\Sent) "/" Outbox' in r.untagged
        ok(c, "DELETE Outbox")


def test_mutf7_and_utf8_names(srv):
    with srv.imap_login() as c:
        ok(c, 'CREATE "p&AOQA5A-"')  # "pää"
        ok(c, 'CREATE "&ZeVnLIqe-"')  # Japanese "日本語"
        assert ok(c, 'LIST "" "p*"').untagged == ['* LIST (\\HasNoChildren) "/" p&AOQA5A-']
        r = ok(c, 'STATUS "p&AOQA5A-" (MESSAGES)')
        assert r.untagged == ["* STATUS p&AOQA5A- (MESSAGES 0)"]
        with srv.imap_login() as u:
            r = ok(u, "ENABLE IMAP4rev2")
            # IMAP4rev2: names are UTF-8
            assert ok(u, 'LIST "" "p*"').untagged == ['* LIST (\\HasNoChildren) "/" "p\u00e4\u00e4"']
            assert ok(u, 'LIST "" "\u65e5*"').untagged == [
                '* LIST (\\HasNoChildren) "/" "\u65e5\u672c\u8a9e"']
            ok(u, 'CREATE "Caf\u00e9/Cr\u00e8me"')
        assert ok(c, 'LIST "" "Caf*"').untagged == ['* LIST (\\HasChildren) "/" Caf&AOk-',
                                                    '* LIST (\\HasNoChildren) "/" Caf&AOk-/Cr&AOg-me']
        for name in ("Caf&AOk-/Cr&AOg-me", "Caf&AOk-", "p&AOQA5A-", "&ZeVnLIqe-"):
            ok(c, 'DELETE "%s"' % name)


def test_rename(srv):
    with srv.imap_login() as c:
        ok(c, "CREATE proj/a")
        ok(c, "CREATE other")
        ok(c, "SUBSCRIBE proj/a")
        ok(c, "RENAME proj done")
        assert ok(c, 'LIST "" "proj*"').untagged == []
        assert ok(c, 'LIST "" "done*"').untagged == ['* LIST (\\HasChildren) "/" done',
                                                     '* LIST (\\HasNoChildren) "/" done/a']
        assert ok(c, 'LSUB "" "done*"').untagged == ['* LSUB () "/" done/a']
        assert c.cmd("RENAME done other").tagged.split(" ", 1)[1].startswith("NO [ALREADYEXISTS] ")
        assert c.cmd("RENAME nothere x").tagged.split(" ", 1)[1].startswith("NO [NONEXISTENT] ")
        assert c.cmd("RENAME done done/a/b").tagged.split(" ", 1)[1].startswith("NO [")
        assert c.cmd("RENAME done INBOX").tagged.split(" ", 1)[1].startswith("NO [ALREADYEXISTS] ")
        ok(c, "RENAME done/a deep/er/a")  # missing parents are created
        assert ok(c, 'LIST "" "deep*"').untagged == ['* LIST (\\HasChildren) "/" deep',
                                                     '* LIST (\\HasChildren) "/" deep/er',
                                                     '* LIST (\\HasNoChildren) "/" deep/er/a']
        for name in ("deep/er/a", "deep/er", "deep", "done", "other"):
            ok(c, "DELETE " + name)
        ok(c, "UNSUBSCRIBE deep/er/a")


def test_rename_inbox_moves_its_messages(make_server):
    s = make_server("imaprenameinbox")
    deliver(s, BOB, "one")
    deliver(s, BOB, "two")
    with s.imap_login(BOB) as c:
        r = ok(c, "STATUS INBOX (MESSAGES)")
        assert r.untagged == ["* STATUS INBOX (MESSAGES 2)"]
        ok(c, "RENAME INBOX Old")
        assert ok(c, "STATUS INBOX (MESSAGES)").untagged == ["* STATUS INBOX (MESSAGES 0)"]
        assert ok(c, "STATUS Old (MESSAGES UIDNEXT)").untagged == \
            ["* STATUS Old (MESSAGES 2 UIDNEXT 3)"]
        assert '* LIST (\\HasNoChildren) "/" INBOX' in ok(c, 'LIST "" "*"').untagged
    # new mail goes to the (new, empty) INBOX
    deliver(s, BOB, "three")
    with s.imap_login(BOB) as c:
        assert ok(c, "STATUS INBOX (MESSAGES)").untagged == ["* STATUS INBOX (MESSAGES 1)"]


def test_subscribe_lsub_and_list_subscribed(srv):
    with srv.imap_login(CAROL) as c:
        ok(c, "CREATE lists/a")
        ok(c, "CREATE lists/b/c")
        ok(c, "SUBSCRIBE lists/a")
        ok(c, "SUBSCRIBE lists/b/c")
        ok(c, "SUBSCRIBE gone")  # need not exist
        ok(c, "SUBSCRIBE gone")  # idempotent
        r = ok(c, 'LSUB "" "lists/*"')
        assert r.untagged == ['* LSUB () "/" lists/a', '* LSUB () "/" lists/b/c']
        # "%" lists an unsubscribed level with subscribed children as \Noselect
        r = ok(c, 'LSUB "" "lists/%"')
        assert r.untagged == ['* LSUB () "/" lists/a', '* LSUB (\\Noselect) "/" lists/b']
        r = ok(c, 'LSUB "" "*"')
        assert '* LSUB () "/" gone' in r.untagged and '* LSUB () "/" INBOX' in r.untagged
        r = ok(c, 'LIST (SUBSCRIBED) "" "*"')
        assert '* LIST (\\NonExistent \\Subscribed) "/" gone' in r.untagged
        assert '* LIST (\\HasNoChildren \\Subscribed) "/" lists/a' in r.untagged
        assert '* LIST (\\HasNoChildren \\Subscribed \\Sent) "/" Sent' in r.untagged
        assert not any(" lists/b" == l[-8:] for l in r.untagged), r.untagged
        r = ok(c, 'LIST "" "lists/*" RETURN (SUBSCRIBED CHILDREN)')
        assert r.untagged == ['* LIST (\\HasNoChildren \\Subscribed) "/" lists/a',
                              '* LIST (\\HasChildren) "/" lists/b',
                              '* LIST (\\HasNoChildren \\Subscribed) "/" lists/b/c']
        # RECURSIVEMATCH: lists/b is not subscribed, its child is (RFC 5258 3.5)
        r = ok(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "lists/%"')
        assert r.untagged == ['* LIST (\\HasNoChildren \\Subscribed) "/" lists/a',
                              '* LIST (\\HasChildren) "/" lists/b ("CHILDINFO" ("SUBSCRIBED"))']
        ok(c, "UNSUBSCRIBE gone")
        ok(c, "UNSUBSCRIBE lists/a")
        r = ok(c, 'LSUB "" "lists/*"')
        assert r.untagged == ['* LSUB () "/" lists/b/c']
        ok(c, "UNSUBSCRIBE lists/b/c")
        for name in ("lists/b/c", "lists/b", "lists/a", "lists"):
            ok(c, "DELETE " + name)


def test_list_extended_syntax(srv):
    with srv.imap_login() as c:
        r = ok(c, 'LIST "" (INBOX Sent "Dra*")')
        assert r.untagged == [DEFAULT_LIST[1], DEFAULT_LIST[2], DEFAULT_LIST[4]]
        ok(c, 'LIST (REMOTE) "" "%"')
        for bad in ('LIST (FOO) "" "*"', 'LIST (RECURSIVEMATCH) "" "*"',
                    'LIST (RECURSIVEMATCH REMOTE) "" "*"', 'LIST "" "*" RETURN (FOO)',
                    'LIST "" "*" RETURN (STATUS (BOGUS))', 'LIST "" ()', 'LIST ""',
                    'LSUB (SUBSCRIBED) "" "*"'):
            assert c.cmd(bad).status == "BAD", bad


def test_status_and_list_status(make_server):
    s = make_server("imapstatus")
    deliver(s, ALICE, "first")
    size = s.mail_list(ALICE)[0][1]
    with s.imap_login() as c:
        # RECENT (RFC 3501): no session has selected INBOX yet, so it is recent
        r = ok(c, "STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE RECENT)")
        assert r.untagged == ["* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1 DELETED 0 SIZE %d "
                              "RECENT 1)" % size]
        r = ok(c, "STATUS inbox (UIDVALIDITY HIGHESTMODSEQ)")
        line = r.untagged[0]
        assert line.startswith("* STATUS INBOX (UIDVALIDITY ") and " HIGHESTMODSEQ " in line, line
        assert c.cmd("STATUS nothere (MESSAGES)").tagged.split(" ", 1)[1] == \
            "NO [NONEXISTENT] STATUS: no such mailbox"
        assert c.cmd("STATUS INBOX (BOGUS)").status == "BAD"
        assert c.cmd("STATUS INBOX ()").status == "BAD"
        assert c.cmd("STATUS INBOX").status == "BAD"
        r = ok(c, 'LIST "" "%" RETURN (STATUS (MESSAGES UNSEEN SIZE))')
        assert r.untagged[4:6] == ['* LIST (\\HasNoChildren) "/" INBOX',
                                   "* STATUS INBOX (MESSAGES 1 UNSEEN 1 SIZE %d)" % size]
        assert r.untagged[0:2] == [DEFAULT_LIST[0], "* STATUS Archive (MESSAGES 0 UNSEEN 0 SIZE 0)"]
        assert len(r.untagged) == 12


def test_quota_commands(make_server):
    s = make_server("imapquota")
    with s.imap_login() as c:
        # no limits: no quota root (RFC 9208 4.3)
        assert ok(c, "GETQUOTAROOT INBOX").untagged == ["* QUOTAROOT INBOX"]
        assert c.cmd('GETQUOTA ""').tagged.split(" ", 1)[1].startswith("NO [NONEXISTENT] ")
        assert c.cmd('SETQUOTA "" (STORAGE 10)').tagged.split(" ", 1)[1] == \
            "NO [NOPERM] Quotas are set by the administrator"
        assert c.cmd("GETQUOTAROOT nothere").tagged.split(" ", 1)[1].startswith("NO [NONEXISTENT] ")
        assert c.cmd("GETQUOTA other").tagged.split(" ", 1)[1].startswith("NO [NONEXISTENT] ")
    deliver(s, ALICE, "q")
    size = s.mail_list(ALICE)[0][1]
    s.cli("quota", "set", ALICE, "10m", "100")
    with s.imap_login() as c:
        r = ok(c, "GETQUOTAROOT INBOX")
        assert r.untagged == ['* QUOTAROOT INBOX ""',
                              '* QUOTA "" (STORAGE %d 10240 MESSAGE 1 100)' % ((size + 1023) // 1024)]
        r = ok(c, 'GETQUOTA ""')
        assert r.untagged == ['* QUOTA "" (STORAGE %d 10240 MESSAGE 1 100)' % ((size + 1023) // 1024)]
    s.cli("quota", "set", ALICE, "0", "5")
    with s.imap_login() as c:
        assert ok(c, 'GETQUOTA ""').untagged == ['* QUOTA "" (MESSAGE 1 5)']


def test_list_of_many_mailboxes_is_bounded(make_server):
    """3,000 mailboxes with long names and a 16 KiB output limit: the LIST
    output (about 1 MB with LIST-STATUS) cannot go out in one step; it waits
    for the client, which reads nothing for a second, and then arrives
    whole and in order; the session stays usable."""
    s = make_server("imapmany", session_output_limit="16k")
    n = 3000
    prefix = "many/" + "x" * 150
    with s.imap_login() as c:
        # pipelined CREATEs (each one commit)
        c.send("".join("c%d CREATE %s%04d\r\n" % (i, prefix, i) for i in range(n)))
        for i in range(n):
            line = c.readline()
            while line.startswith("*"):
                line = c.readline()
            # RFC 8474 4.1: CREATE names the new mailbox's MAILBOXID
            assert re.match(r"^c%d OK \[MAILBOXID \(M[0-9]+\)\] CREATE completed$" % i,
                            line), line
        c.send('l LIST "" "many/*" RETURN (STATUS (MESSAGES UIDNEXT SIZE))\r\n')
        time.sleep(1.0)  # not reading: the server must stop at its limit
        lines = []
        while True:
            line = c.readline()
            if line.startswith("l "):
                break
            lines.append(line)
        assert line == "l OK LIST completed"
        assert len(lines) == 2 * n
        assert lines[0] == '* LIST (\\HasNoChildren) "/" %s0000' % prefix
        assert lines[1] == '* STATUS %s0000 (MESSAGES 0 UIDNEXT 1 SIZE 0)' % prefix
        assert lines[-2] == '* LIST (\\HasNoChildren) "/" %s%04d' % (prefix, n - 1)
        assert ok(c, "NOOP").tagged.endswith("OK NOOP completed")


def test_mailbox_count_limit(make_server):
    s = make_server("imaplimit", imap_max_mailboxes=8)  # INBOX and 5 special-use ones
    with s.imap_login() as c:
        ok(c, "CREATE one")
        ok(c, "CREATE two")
        r = c.cmd("CREATE three")
        assert r.status == "NO" and r.text.startswith("[LIMIT] "), r
        r = c.cmd("CREATE a/b")  # its missing parent counts too
        assert r.status == "NO" and r.text.startswith("[LIMIT] "), r
        ok(c, "DELETE two")
        ok(c, "CREATE three")
