

def test_a_response_of_many_steps(make_server):
    """A THREAD response of ~150 KB (several THREAD_OUT_STEPs, sent from an
    offset), read slowly: exactly the threads, in date order; the same
    from the cache path."""
    s = make_server("rev18big", imap_auth_plaintext_loopback="yes")
    c = s.imap_login(USER)
    assert c.cmd('CREATE "g"').ok
    n = 15000
    # dates descending with k, so the order is the reverse of arrival
    msgs = [("Message-ID: <g%d@x>\r\nSubject: g%d\r\nFrom: a@example.test\r\n"
             "Date: %s\r\n\r\nx\r\n" % (k, k, time.strftime(
                 "%a, %d %b %Y %H:%M:%S +0000", time.gmtime(1800000000 - 60 * k)))).encode()
            for k in range(n)]
    for i in range(0, n, 1000):
        multiappend(c, "g", msgs[i:i + 1000])
    assert c.cmd('SELECT "g"').ok
    want = "* THREAD " + "".join("(%d)" % k for k in range(n, 0, -1))
    assert len(want) > 3 * 65536
    for rnd in range(2):
        tag = c.next_tag()
        c.send(("%s THREAD REFERENCES UTF-8 ALL\r\n" % tag).encode())
        time.sleep(1.0)  # the server waits on a full socket meanwhile
        r = c.read_response(tag)
        assert r.ok, r
        got = [u for u in r.untagged if u.startswith("* THREAD")]
        assert got == [want], (rnd, [g[:100] for g in got])
        s.db_exec("UPDATE sort_keys SET thread = NULL")
    c.close()
