"""The built-in statistical spam filter (issue 11; src/filter/bayes.c):
training through IMAP (MOVE into and out of Junk, STORE $Junk/$NotJunk)
changes later verdicts of the real daemon; `postern mail explain` names the
reasons; one user's training does not change another's verdicts; `postern
spam train|stats|classify` on the CLI."""
import os
import random
import re
import time

import pytest

from conftest import USERS, make_message

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"

SPAM_WORDS = ("viagra cialis pharmacy cheap pills discount lottery winner prize claim "
              "bitcoin profit guaranteed casino bonus replica rolex").split()
HAM_WORDS = ("meeting agenda project review draft schedule quarterly budget deadline "
             "report feedback kernel patch release branch").split()
FILLER = "the and to of in for on with you your we our is this that it at from".split()


def text(words, seed, n=40):
    r = random.Random(seed)
    return " ".join(r.choice(words) if r.random() < 0.6 else r.choice(FILLER) for _ in range(n))


def spam_msg(to, seed):
    r = random.Random(seed)
    subj = " ".join(r.sample(SPAM_WORDS, 3))
    body = text(SPAM_WORDS, seed) + "\r\nhttp://pills-%d.example.biz/buy\r\n" % (seed % 3)
    return make_message("promo@deals.example.biz", to, subj, body)


def ham_msg(to, seed):
    r = random.Random(seed)
    subj = "Re: " + " ".join(r.sample(HAM_WORDS, 3))
    body = text(HAM_WORDS, seed) + "\r\nhttps://git.example.org/review\r\n"
    return make_message("colleague@corp.example.org", to, subj, body)


def deliver(srv, rcpt, msg):
    with srv.client("mx") as c:
        c.ehlo()
        r = c.mail("sender@remote.example", [rcpt], msg)
        assert r.code == 250, r


def uids(srv, user, mailbox="INBOX"):
    return [m[0] for m in srv.mail_list(user, mailbox)]


def stats(srv, user):
    """(ham, spam) trained for user, or (0, 0)."""
    out = srv.cli_out("spam", "stats", user)
    m = re.search(r"ham (\d+) spam (\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def wait_stats(srv, user, want, timeout=15.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = stats(srv, user)
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError("training of %s: got %s, want %s; log:\n%s" % (user, got, want,
                                                                      srv.log()[-3000:]))


def header(raw, name):
    m = re.search(rb"(?im)^" + name.encode() + rb":([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", raw)
    return m.group(1).decode() if m else None


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls_pair):
    from conftest import _new_server
    s = _new_server(tmp_path_factory, tls_pair, "bayes")
    yield s
    s.stop()


def test_imap_training_changes_verdicts(srv):
    # 6 spam-like and 6 ham-like messages, all in INBOX (nothing is trained)
    for i in range(6):
        deliver(srv, ALICE, spam_msg(ALICE, 100 + i))
        deliver(srv, ALICE, ham_msg(ALICE, 200 + i))
    assert len(uids(srv, ALICE)) == 12
    # untrained: a spam-like message is not junk
    deliver(srv, ALICE, spam_msg(ALICE, 150))
    assert uids(srv, ALICE, "Junk") == []
    raw = srv.mail_cat(ALICE, uids(srv, ALICE)[-1])
    assert "BAYES_" not in (header(raw, "X-Spam-Report") or "")

    c = srv.imaplib()
    c.login(ALICE, USERS[ALICE])
    assert c.select("INBOX")[0] == "OK"
    spam_uids = [str(u) for u in uids(srv, ALICE)[0:12:2]]  # delivered first in each pair
    ham_uids = [str(u) for u in uids(srv, ALICE)[1:12:2]]
    # spam: 4 moved into Junk, 2 flagged $Junk where they are
    typ, _ = c.uid("MOVE", ",".join(spam_uids[:4]), "Junk")
    assert typ == "OK"
    typ, _ = c.uid("STORE", ",".join(spam_uids[4:]), "+FLAGS", "($Junk)")
    assert typ == "OK"
    # ham: 5 flagged $NotJunk; one moved into Junk by mistake, then back out
    typ, _ = c.uid("STORE", ",".join(ham_uids[:5]), "+FLAGS", "($NotJunk)")
    assert typ == "OK"
    typ, _ = c.uid("MOVE", ham_uids[5], "Junk")
    assert typ == "OK"
    wait_stats(srv, ALICE, (5, 7))  # the mistake counts as spam for now
    assert c.select("Junk")[0] == "OK"
    typ, data = c.uid("SEARCH", None, "ALL")
    junk = data[0].split()
    assert len(junk) == 5
    typ, _ = c.uid("MOVE", junk[-1].decode(), "INBOX")
    assert typ == "OK"
    c.logout()
    # untrained as spam, trained as ham (spam_trained)
    wait_stats(srv, ALICE, (6, 6))

    # now a new spam-like message goes to Junk, a ham-like one to INBOX
    junk_before = len(uids(srv, ALICE, "Junk"))
    deliver(srv, ALICE, spam_msg(ALICE, 300))
    assert len(uids(srv, ALICE, "Junk")) == junk_before + 1
    raw = srv.mail_cat(ALICE, uids(srv, ALICE, "Junk")[-1], "Junk")
    assert header(raw, "X-Spam-Status").strip().startswith("Yes"), raw[:600]
    assert "BAYES_99" in header(raw, "X-Spam-Report"), raw[:800]

    inbox_before = len(uids(srv, ALICE))
    deliver(srv, ALICE, ham_msg(ALICE, 301))
    assert len(uids(srv, ALICE)) == inbox_before + 1
    assert len(uids(srv, ALICE, "Junk")) == junk_before + 1
    raw = srv.mail_cat(ALICE, uids(srv, ALICE)[-1])
    assert header(raw, "X-Spam-Status").strip().startswith("No"), raw[:600]
    assert "BAYES_00" in header(raw, "X-Spam-Report"), raw[:800]

    # `postern mail explain` names the reasons in plain words
    out = srv.cli_out("mail", "explain", ALICE, uids(srv, ALICE, "Junk")[-1], "Junk")
    assert "verdict: spam" in out, out
    assert re.search(r"\+5\.0\s+BAYES_99\s+the words of this message are typical of spam", out), out
    assert "BAYES_SPAM_WORDS" in out and "spam-like:" in out, out
    assert re.search(r'"(viagra|cialis|pharmacy|cheap|pills|discount|lottery|winner|prize|claim|'
                     r'bitcoin|profit|guaranteed|casino|bonus|replica|rolex|url:[^"]+|'
                     r'subject:[a-z]+|from[^"]*)"', out), out
    out = srv.cli_out("mail", "explain", ALICE, uids(srv, ALICE)[-1])
    assert "verdict: not spam" in out and "BAYES_00" in out, out
    assert "authentication" in out, out

    # bob's verdicts do not change: his model and the global one are empty
    deliver(srv, BOB, spam_msg(BOB, 300))
    assert uids(srv, BOB, "Junk") == []
    assert len(uids(srv, BOB)) == 1
    raw = srv.mail_cat(BOB, uids(srv, BOB)[-1])
    assert "BAYES_" not in (header(raw, "X-Spam-Report") or ""), raw[:800]
    assert stats(srv, BOB) == (0, 0)


def test_user_training_stays_with_the_user(srv):
    """carol trains the opposite of alice (spam words as ham): her verdicts
    follow her training, alice's do not move."""
    for i in range(6):
        deliver(srv, CAROL, spam_msg(CAROL, 400 + i))
        deliver(srv, CAROL, ham_msg(CAROL, 500 + i))
    c = srv.imaplib()
    c.login(CAROL, USERS[CAROL])
    assert c.select("INBOX")[0] == "OK"
    all_uids = [str(u) for u in uids(srv, CAROL)]
    assert c.uid("STORE", ",".join(all_uids[0::2]), "+FLAGS", "($NotJunk)")[0] == "OK"
    assert c.uid("STORE", ",".join(all_uids[1::2]), "+FLAGS", "($Junk)")[0] == "OK"
    c.logout()
    wait_stats(srv, CAROL, (6, 6))
    deliver(srv, CAROL, ham_msg(CAROL, 600))
    junk = uids(srv, CAROL, "Junk")
    assert len(junk) == 1, junk
    deliver(srv, CAROL, spam_msg(CAROL, 600))
    assert len(uids(srv, CAROL, "Junk")) == 1
    # alice still sees spam-like as spam
    before = len(uids(srv, ALICE, "Junk"))
    deliver(srv, ALICE, spam_msg(ALICE, 601))
    assert len(uids(srv, ALICE, "Junk")) == before + 1
    assert stats(srv, ALICE) == (6, 6)


def corpus_files(tmp_path, spam_seed, ham_seed):
    """8 spam messages in an mbox and 8 ham in a directory of files, for
    `postern spam train`: (mbox path, directory path)."""
    mbox = tmp_path / "spam.mbox"
    with open(mbox, "wb") as f:
        for i in range(8):
            f.write(b"From promo@deals.example.biz Mon Jan  1 00:00:00 2024\n")
            f.write(spam_msg("x@example.test", spam_seed + i).replace(b"\r\n", b"\n") + b"\n")
    hamdir = tmp_path / "ham"
    hamdir.mkdir()
    for i in range(8):
        (hamdir / ("%02d.eml" % i)).write_bytes(ham_msg("x@example.test", ham_seed + i))
    return mbox, hamdir


def test_cli_train_global_and_classify(srv, tmp_path):
    """`postern spam train --global` from an mbox and a directory; the
    global model serves a user without training of their own (dave has
    none), and `spam classify` prints the verdict and its reasons."""
    mbox, hamdir = corpus_files(tmp_path, 700, 800)
    out = srv.cli_out("spam", "train", "--spam", "--global", mbox)
    assert out.strip() == "trained 8 messages as spam for the global model", out
    out = srv.cli_out("spam", "train", "--ham", hamdir)
    assert out.strip() == "trained 8 messages as ham for the global model", out
    out = srv.cli_out("spam", "stats")
    assert re.search(r"\(global\)\s+ham 8 spam 8 tokens \d+", out), out
    p = srv.cli("spam", "classify", input=spam_msg("x@example.test", 900))
    out = p.stdout.decode()
    assert re.match(r"prob=(0\.99\d\d|1\.0000) score=5\.0\n\* 5\.0 BAYES_99 ", out), out
    assert "the global model" in out, out
    p = srv.cli("spam", "classify", "--user", BOB, input=ham_msg("x@example.test", 900))
    out = p.stdout.decode()
    assert re.match(r"prob=0\.00\d\d score=-1\.5\n\* -1\.5 BAYES_00 ", out), out
    # bob (no training of his own) now gets the global verdict through SMTP
    deliver(srv, BOB, spam_msg(BOB, 901))
    assert len(uids(srv, BOB, "Junk")) == 1
    # bad usage
    p = srv.cli("spam", "train", "--spam", check=False)
    assert p.returncode == 2 and b"usage:" in p.stderr
    p = srv.cli("spam", "stats", "nobody@example.test", check=False)
    assert p.returncode == 1 and b"no such user" in p.stderr
    p = srv.cli("mail", "explain", ALICE, "999999", check=False)
    assert p.returncode == 1 and b"no message with UID 999999" in p.stderr


def test_cli_training_reaches_the_running_daemon(make_server, tmp_path):
    """The daemon keeps the counts it read in memory (src/store/spam.c, the
    model cache) until they change. The CLI trains in another process: the
    mark file it touches tells the running daemon, so the same message,
    delivered before and after `postern spam train`, is judged anew."""
    s = make_server("bayes-cache")
    spam, hamdir = corpus_files(tmp_path, 1700, 1800)
    s.cli_out("spam", "train", "--spam", "--global", spam)
    s.cli_out("spam", "train", "--ham", "--global", hamdir)
    msg = ham_msg(ALICE, 1900)
    for _ in range(2):  # the second from the counts kept in memory
        deliver(s, ALICE, msg)
    assert len(uids(s, ALICE)) == 2 and uids(s, ALICE, "Junk") == [], s.log()[-2000:]
    # the daemon runs on; the CLI trains this very message as spam, often
    again = tmp_path / "again.mbox"
    with open(again, "wb") as f:
        for i in range(40):
            f.write(b"From colleague@corp.example.org Mon Jan  1 00:00:00 2024\n")
            f.write(msg.replace(b"\r\n", b"\n") + b"\n")
    out = s.cli_out("spam", "train", "--spam", "--global", again)
    assert out.strip() == "trained 40 messages as spam for the global model", out
    deliver(s, ALICE, msg)
    # the three verdicts, in order: ham twice, then spam-like
    raw = s.fetch_messages(ALICE)
    reports = [header(raw[u], "X-Spam-Report") for u in sorted(raw)]
    scores = [float(re.search(r"score=(-?[\d.]+)", r).group(1)) for r in reports]
    assert len(scores) == 3 and scores[0] == scores[1] < 0, reports
    assert "BAYES_00" in reports[0] and "BAYES_00" not in reports[2], reports
    assert scores[2] > 0 and "BAYES_SPAM_WORDS" in reports[2], reports


def test_cli_change_seen_without_the_watch(make_server):
    """The mark's watch ends when its file goes (removed, or replaced by a
    restore); the daemon also looks at the file every second, so a change
    of the CLI still reaches the cache: here a threshold set after the
    cache learnt that there are none."""
    s = make_server("bayes-nowatch")
    os.unlink(os.path.join(s.data_dir, "spam.changed"))
    deliver(s, ALICE, ham_msg(ALICE, 2000))  # no thresholds: kept so
    assert uids(s, ALICE, "Junk") == []
    s.cli_out("spam", "threshold", "example.test", "junk=-100")
    deadline = time.monotonic() + 10
    n = 1
    while not uids(s, ALICE, "Junk") and time.monotonic() < deadline:
        time.sleep(0.3)
        deliver(s, ALICE, ham_msg(ALICE, 2000 + n))
        n += 1
    assert len(uids(s, ALICE, "Junk")) == 1, s.log()[-2000:]


def test_explain_ignores_the_senders_spam_fields(srv):
    """A sender's own X-Spam-Status/X-Spam-Report/Authentication-Results
    fields (forged: "No, score=-20", dmarc=pass) are not postern's verdict:
    `mail explain` shows only the fields above postern's Received field
    (the delivery's prefix) and says that the others were ignored."""
    forged = ("X-Spam-Status: No, score=-20.0 required=5.0",
              "X-Spam-Report: score=-20.0 required=5.0\r\n\t* -20.0 FORGED_WHITELIST sender "
              "says it is fine",
              "Authentication-Results: example.test; spf=pass smtp.mailfrom=bank.example;"
              " dmarc=pass header.from=bank.example")
    msg = make_message("promo@deals.example.biz", BOB, "hello there", "see you soon\r\n",
                       extra_headers=forged)
    before = {mb: len(uids(srv, BOB, mb)) for mb in ("INBOX", "Junk")}
    deliver(srv, BOB, msg)
    grew = [mb for mb in ("INBOX", "Junk") if len(uids(srv, BOB, mb)) == before[mb] + 1]
    assert len(grew) == 1, grew
    mb = grew[0]
    uid = uids(srv, BOB, mb)[-1]
    raw = srv.mail_cat(BOB, uid, mb)
    # the MX listener removes a sender's X-Spam-Status/X-Spam-Report (src/smtp/tx.c);
    # an Authentication-Results field of another authserv-id stays below ours
    assert b"FORGED_WHITELIST" not in raw and b"score=-20.0" not in raw, raw
    assert b"smtp.mailfrom=bank.example" in raw, raw
    out = srv.cli_out("mail", "explain", BOB, uid, mb)
    assert "FORGED_WHITELIST" not in out, out
    assert "-20.0" not in out and "bank.example" not in out, out
    assert out.count("verdict:") == 1, out
    assert out.count("authentication (Authentication-Results") == 1, out
    assert ("1 X-Spam-* or Authentication-Results field(s) below postern's Received field came "
            "with the message (the sender or an earlier server): ignored") in out, out
