"""Bounded waits shared by the e2e tests."""
import time


def wait_until(pred, timeout, what):
    """Polls pred every 0.1 s until it returns something true (returned);
    fails after timeout seconds, naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("not within %.0f s: %s" % (timeout, what))
