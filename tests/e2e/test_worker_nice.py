"""worker_nice (core/pool.h): the threads of work that grows with a mailbox
("bulk": IMAP SEARCH, SORT, THREAD, FETCH ranges) and the full-text indexer
run at the configured nice value; the event loop, the committer and the
other workers (logins, SMTP's checks) at 0, so that bulk work yields the CPU
to the loop. Read from the kernel's own view of each thread
(/proc/PID/task/TID/stat)."""
import os


def threads(pid):
    """{comm: [nice, ...]} of the process's threads."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            stat = f.read()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out.setdefault(comm, []).append(int(fields[16]))  # field 19: nice
    return out


def test_workers_run_below_the_loop(make_server):
    srv = make_server()
    c = srv.imap_login()  # a login hashes on a worker: the pool is up
    c.close()
    t = threads(srv.proc.pid)
    assert len(t.get("bulk", [])) == 2 and set(t["bulk"]) == {10}, t  # workers = 2
    assert t.get("fts-indexer") == [10], t
    assert len(t.get("worker", [])) == 2 and set(t["worker"]) == {0}, t
    assert t.get("committer") == [0], t
    rest = [v for comm, v in t.items() if comm not in ("bulk", "fts-indexer")]
    assert rest and all(n == 0 for v in rest for n in v), t


def test_worker_nice_zero_leaves_them_alike(make_server):
    srv = make_server(worker_nice="0")
    t = threads(srv.proc.pid)
    assert all(n == 0 for v in t.values() for n in v), t


def test_worker_nice_is_bounded(make_server):
    srv = make_server(start=False, accounts=False, worker_nice="20")
    p = srv.cli("check-config", check=False)
    assert p.returncode != 0 and b"worker_nice" in p.stderr, p
