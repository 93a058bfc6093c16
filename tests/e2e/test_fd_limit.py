"""The daemon's descriptor budget (src/cli/main.c raise_fd_limit): a soft
RLIMIT_NOFILE below what the connection limits need (smtp_, pop3_, imap_ and
queue_max_connections plus 1024 for the store's own descriptors) is raised
toward the hard limit at start, and a hard limit too low for them is said in
the log at start, not found as EMFILE under load."""
import os

import conftest


def limited_postern(tmp_path_factory, monkeypatch, soft, hard):
    """conftest.POSTERN becomes a wrapper that runs postern under these
    RLIMIT_NOFILE limits (the soft one set first: it must not exceed the hard)."""
    wrapper = str(tmp_path_factory.mktemp("wrapfd") / "postern")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nulimit -S -n %d\nulimit -H -n %d\nexec %s \"$@\"\n"
                % (soft, hard, conftest.POSTERN))
    os.chmod(wrapper, 0o755)
    monkeypatch.setattr(conftest, "POSTERN", wrapper)


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


# the connection limits of these daemons: 10 + 20 + 30 + 40 + 1024 = 1124
LIMITS = dict(smtp_max_connections=10, pop3_max_connections=20, imap_max_connections=30,
              queue_max_connections=40)
NEED = 1124


def test_a_low_soft_limit_is_raised_to_what_the_limits_need(tmp_path_factory, monkeypatch,
                                                            make_server):
    limited_postern(tmp_path_factory, monkeypatch, 256, 4096)
    srv = make_server(**LIMITS)
    assert nofile(srv.proc.pid) == (NEED, 4096)
    assert "descriptor limit raised from 256 to %d" % NEED in srv.log()
    assert "descriptor limit" not in srv.log().replace(
        "descriptor limit raised from 256 to %d" % NEED, "")
    # it serves: a session works under the new limit
    c = srv.client()
    assert c.greeting.code == 220, c.greeting
    c.ehlo()
    c.close()


def test_a_hard_limit_below_the_need_is_used_whole_and_said(tmp_path_factory, monkeypatch,
                                                            make_server):
    limited_postern(tmp_path_factory, monkeypatch, 256, 1000)
    srv = make_server(**LIMITS)
    assert nofile(srv.proc.pid) == (1000, 1000)
    log = srv.log()
    assert "descriptor limit raised from 256 to 1000" in log
    assert ("descriptor limit 1000 is below the %d the connection limits need" % NEED) in log


def test_enough_descriptors_are_left_alone(tmp_path_factory, monkeypatch, make_server):
    limited_postern(tmp_path_factory, monkeypatch, 2000, 4096)
    srv = make_server(**LIMITS)
    assert nofile(srv.proc.pid) == (2000, 4096)
    assert "descriptor limit" not in srv.log()
