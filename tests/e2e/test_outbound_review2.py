"""Second review of the outbound path (issue 8): the scheduler must keep
mail moving when a next hop limits its connections or when the backlog is
larger than what one node holds in memory, and must not wait for its poll
to carry what is already due.

One postern instance (A, one.test) relays to a scripted SMTP server (Hop:
test_outbound_review's, a smtpsink.SmtpSink) published as the MX of hop.test
by a private dnsmasq.
Every wait is bounded; every process is stopped by PID.
"""
import test_outbound_review as review
from conftest import make_message
from smtpsink import wait_until
from test_outbound import ALICE, ALICE_PW, delivery_lines, strip_trace, submit
from test_outbound_review import stop_net

WAIT = 30.0


class Hop(review.Hop):
    """test_outbound_review's next hop; max_sessions: more sessions at once
    than that get "421 too many connections" as their greeting (as
    Postfix's smtpd_client_connection_count_limit does)."""

    def __init__(self, ip, port, max_sessions=0):
        self.max_sessions = max_sessions
        self.active = 0
        self.refused = 0
        super().__init__(ip, port)

    def _session(self, c):
        with self.lock:
            over = self.max_sessions and self.active >= self.max_sessions
            if over:
                self.refused += 1
            else:
                self.active += 1
        if over:
            try:
                c.sendall(b"421 4.7.0 hop.test Error: too many connections\r\n")
            except OSError:
                pass
            c.close()
            return
        try:
            super()._session(c)
        finally:
            with self.lock:
                self.active -= 1


def make_net(tmp_path_factory, tls_pair, hop_sessions=0, **extra):
    """test_outbound_review's set-up with this file's Hop; a lease longer
    than any attempt here, and a wait for the reply to the final dot longer
    than the tests hold it (they submit more mail meanwhile: on a loaded
    machine that can take more than test_outbound_review's 10 s, and a
    timed-out first delivery would be deferred)."""
    extra.setdefault("queue_lease", "60")
    extra.setdefault("outbound_data_timeout", "60")
    return review.make_net(tmp_path_factory, tls_pair,
                           hop=lambda ip, port: Hop(ip, port, hop_sessions), **extra)


def held_first_delivery(hop):
    """The next hop's first transaction waits at the final dot until the
    returned Event is set (smtpsink's "hold" mode)."""
    hop.data_mode = ["hold", "ok"]
    return hop.release


def test_a_refused_extra_connection_defers_nothing_an_open_one_can_carry(tmp_path_factory,
                                                                         tls_pair):
    """The next hop takes one session at a time and answers a second one
    with 421 (a per-client connection limit, common on real MXs). While
    the first session carries a message, the queue opens more connections
    for the messages that arrive and each is refused. RFC 5321 4.5.4.1: a
    sender should not hammer, and mail that the open session can carry must
    not be deferred for a retry interval because a parallel connection was
    refused: it waits for that session. queue_retry_min = 60 s: a deferral
    would show as a delay past the test's bound and as result=deferred."""
    n = make_net(tmp_path_factory, tls_pair, hop_sessions=1, queue_retry_min="60",
                 queue_retry_max="60")
    try:
        a, hop = n.a, n.hop
        release = held_first_delivery(hop)
        first = make_message(ALICE, "first@hop.test", "first", "b\r\n")
        submit(a, ["first@hop.test"], first)
        assert hop.holding.wait(WAIT), "the first delivery did not reach the final dot"
        msgs = []
        for i in range(3):
            m = make_message(ALICE, "r%d@hop.test" % i, "more %d" % i, "b%d\r\n" % i)
            submit(a, ["r%d@hop.test" % i], m)
            msgs.append(m)
        # the extra connections are tried (and refused) while the first holds
        wait_until(lambda: hop.refused >= 1, WAIT, "a refused extra connection")
        release.set()
        wait_until(lambda: len(hop.tx) == 4, WAIT, "every message to be delivered")
        wait_until(lambda: not a.queue(), WAIT, "the queue to empty")
        got = sorted(strip_trace(d)[2] for _, _, d in hop.tx)
        assert got == sorted([first] + msgs)
        for i in range(3):
            lines = delivery_lines(a, "r%d@hop.test" % i)
            assert len(lines) == 1 and "result=sent" in lines[0], lines
        assert "result=deferred" not in a.log()
    finally:
        stop_net(n)


def test_backlog_past_the_waiting_cap_drains_without_waiting_for_the_poll(tmp_path_factory,
                                                                           tls_pair,
                                                                           monkeypatch):
    """Under a soft limit of 400 descriptors (256 go to the blob
    directories) the queue holds about 30 leased jobs at once (each keeps its
    blob open). A backlog of 120 due messages is leased in turns: each turn
    must follow as soon as room is made, not at the next queue_poll (60 s
    here, more than the whole test's bound)."""
    review.low_fd_postern(tmp_path_factory, monkeypatch)
    n = make_net(tmp_path_factory, tls_pair, queue_max_per_destination="1", queue_poll="60")
    try:
        a, hop = n.a, n.hop
        release = held_first_delivery(hop)
        n_msgs = 120
        with a.authed(ALICE, ALICE_PW) as c:
            for i in range(n_msgs):
                msg = make_message(ALICE, "m%d@hop.test" % i, "backlog %d" % i, "b\r\n")
                assert c.mail(ALICE, ["m%d@hop.test" % i], msg).code == 250
        assert hop.holding.wait(WAIT)
        release.set()
        wait_until(lambda: len(hop.tx) == n_msgs, 45, "the backlog to drain before the poll")
        wait_until(lambda: not a.queue(), WAIT, "the queue to empty")
        log = a.log()
        assert "Too many open files" not in log
        assert "result=deferred" not in log
    finally:
        stop_net(n)


def test_sigterm_with_a_delivery_in_flight_frees_its_connection(tmp_path_factory, tls_pair):
    """SIGTERM while the next hop holds its reply to the final dot: the
    transaction is cut (not marked delivered) and the daemon exits at once,
    freeing the client connection it cut (under ASan, LeakSanitizer reports
    what is left: conftest fails the stop). After the restart the message is
    sent again and delivered."""
    n = make_net(tmp_path_factory, tls_pair)
    try:
        a, hop = n.a, n.hop
        release = held_first_delivery(hop)
        msg = make_message(ALICE, "cut@hop.test", "cut by shutdown", "b\r\n")
        submit(a, ["cut@hop.test"], msg)
        assert hop.holding.wait(WAIT), "the delivery did not reach the final dot"
        assert a.stop() == 0
        release.set()
        assert "delivery cut by shutdown" in a.log()
        assert not delivery_lines(a, "cut@hop.test")
        a.start()
        wait_until(lambda: not a.queue(), WAIT, "the queue to empty after the restart")
        lines = delivery_lines(a, "cut@hop.test")
        assert len(lines) == 1 and "result=sent" in lines[0], lines
        assert msg in [strip_trace(d)[2] for _, _, d in hop.tx]
    finally:
        stop_net(n)


def test_a_waiting_destination_is_not_passed_over_by_a_newer_one(tmp_path_factory, tls_pair):
    """One connection in all (queue_max_connections = 1), one message per
    connection. While it is busy, one message for hop.test and then three
    for hop2.test wait. Each time the connection is free the next one goes
    to a destination in turn: hop.test, which waited first, must not wait
    behind every message of hop2.test (a destination that keeps getting
    mail would starve the others until their queue_lifetime)."""
    n = make_net(tmp_path_factory, tls_pair, queue_max_connections="1",
                 queue_max_per_connection="1")
    try:
        a, hop = n.a, n.hop
        release = held_first_delivery(hop)
        submit(a, ["first@hop.test"], make_message(ALICE, "first@hop.test", "first", "b\r\n"))
        assert hop.holding.wait(WAIT), "the first delivery did not reach the final dot"
        submit(a, ["old@hop.test"], make_message(ALICE, "old@hop.test", "old", "b\r\n"))
        for i in range(3):
            r = "new%d@hop2.test" % i
            submit(a, [r], make_message(ALICE, r, "new %d" % i, "b\r\n"))
        # every job is leased and waiting before the connection is freed
        wait_until(lambda: len([l for l in a.queue() if " leased" in l]) == 5,
                   WAIT, "the jobs to be leased")
        release.set()
        wait_until(lambda: len(hop.tx) == 5, WAIT, "every message to be delivered")
        order = [rcpts[0] for _, rcpts, _ in hop.tx]
        assert order[0] == "first@hop.test", order
        assert order.index("old@hop.test") < order.index("new1@hop2.test"), order
    finally:
        stop_net(n)
