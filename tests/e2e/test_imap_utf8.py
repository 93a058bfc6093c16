"""UTF8=ACCEPT (RFC 6855): ENABLE UTF8=ACCEPT, then mailbox names in UTF-8
both ways (a session that did not enable it keeps modified UTF-7, RFC 3501
5.1.3), APPEND's UTF8 data item (literal8, RFC 6855 4), 8-bit header text
sent as is, and SEARCH with CHARSET refused (RFC 6855 3, erratum 4029)."""
import re

from conftest import USERS, imap_quote

ALICE = "alice@example.test"
NAME = "Entw\u00fcrfe \u8349\u7a3f"           # UTF-8
MUTF7 = "Entw&APw-rfe &g0l6Pw-"               # the same name, modified UTF-7


def login(server):
    c = server.imap("imap")
    c.starttls()
    r = c.cmd("LOGIN %s %s" % (imap_quote(ALICE), imap_quote(USERS[ALICE])))
    assert r.ok, r
    return c


def utf8_cmd(c, line):
    tag = c.next_tag()
    c.send((tag + " " + line + "\r\n").encode("utf-8"))
    return c.read_response(tag)


def test_enable_and_utf8_names(server):
    c = login(server)
    r = c.cmd("CAPABILITY")
    assert " UTF8=ACCEPT" in r.untagged[0], r
    # before ENABLE: modified UTF-7 in and out
    c.cmd("DELETE %s" % imap_quote(MUTF7))
    assert c.cmd("CREATE %s" % imap_quote(MUTF7)).ok
    r = c.cmd('LIST "" "Entw*"')
    assert r.untagged == ['* LIST (\\HasNoChildren) "/" "%s"' % MUTF7], r
    r = c.cmd("ENABLE UTF8=ACCEPT")
    assert r.ok and r.untagged == ["* ENABLED UTF8=ACCEPT"], r
    r = c.cmd("ENABLE UTF8=ACCEPT")
    assert r.ok and r.untagged == ["* ENABLED"], r
    # after: UTF-8 both ways
    r = utf8_cmd(c, 'LIST "" "Entw*"')
    assert r.untagged == ['* LIST (\\HasNoChildren) "/" "%s"' % NAME], r
    r = utf8_cmd(c, "STATUS %s (MESSAGES)" % imap_quote(NAME))
    assert r.ok and r.untagged == ['* STATUS "%s" (MESSAGES 0)' % NAME], r
    r = utf8_cmd(c, "CREATE %s" % imap_quote(NAME + "/\u00e4"))
    assert r.ok, r
    # another session that did not enable it sees modified UTF-7
    d = login(server)
    r = d.cmd('LIST "" "Entw*"')
    assert sorted(r.untagged) == ['* LIST (\\HasChildren) "/" "%s"' % MUTF7,
                                  '* LIST (\\HasNoChildren) "/" "%s/&AOQ-"' % MUTF7], r
    d.cmd("LOGOUT")
    assert utf8_cmd(c, "DELETE %s" % imap_quote(NAME + "/\u00e4")).ok
    c.cmd("LOGOUT")


def test_append_utf8_item_and_search(server):
    c = login(server)
    assert c.cmd("ENABLE UTF8=ACCEPT").ok
    box = "utf8box"
    c.cmd("DELETE %s" % box)
    assert c.cmd("CREATE %s" % box).ok
    msg = ("From: J\u00f6rg <j\u00f6rg@b\u00fccher.example>\r\nSubject: Gr\u00fc\u00dfe\r\n"
           "\r\nHallo\r\n").encode("utf-8")
    tag = c.next_tag()
    c.send(("%s APPEND %s UTF8 (~{%d}\r\n" % (tag, box, len(msg))).encode())
    assert c.readline().startswith("+")
    c.send(msg + b")\r\n")
    r = c.read_response(tag)
    assert r.ok and "APPENDUID" in r.tagged, r
    # a UTF8 item that is not a literal8 is a syntax error
    r = c.cmd("APPEND %s UTF8 ({5+}\r\na: b\n)" % box)
    assert r.status == "BAD", r
    assert c.cmd("SELECT %s" % box).ok
    r = c.cmd("FETCH 1 BODY.PEEK[]")
    assert r.untagged[0].encode("utf-8").endswith(msg + b")"), r
    r = utf8_cmd(c, "FETCH 1 ENVELOPE")
    # 8-bit header text as is (here as literals, valid for any string)
    assert "{7}\r\nGr\u00fc\u00dfe ((" in r.untagged[0], r
    r = utf8_cmd(c, 'SEARCH SUBJECT "gr\u00fc\u00dfe"')
    assert r.untagged == ["* SEARCH 1"], r
    # RFC 6855 3: CHARSET once UTF8=ACCEPT is enabled is a BAD
    r = c.cmd("SEARCH CHARSET UTF-8 SUBJECT x")
    assert r.status == "BAD", r
    d = login(server)
    assert d.cmd("SELECT %s" % box).ok
    r = d.cmd("SEARCH CHARSET UTF-8 ALL")
    assert r.ok and r.untagged == ["* SEARCH 1"], r
    d.cmd("LOGOUT")
    c.cmd("LOGOUT")
