#!/usr/bin/env python3
"""Evaluates the statistical spam filter on the synthetic corpus.

    bench/spam-eval.py [--postern ./postern] [--seed 11] [--out bench/spam-results.md]

Generates the corpus (tests/data/spam-corpus/gen.py, seeded), trains the
global model of a fresh data directory with `postern spam train` on two
thirds of it (messages whose number is not a multiple of 3), classifies the
other third with `postern spam classify FILE...`, and writes the false
positive and false negative rates (overall, per language, per verdict band)
as Markdown. Deterministic: the same seed gives the same figures.
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return p.stdout


def lang_of(path):
    with open(path, "rb") as f:
        m = re.search(rb"^X-Corpus-Lang: (\w+)", f.read(4096), re.M)
    return m.group(1).decode() if m else "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postern", default=os.path.join(ROOT, "postern"))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--ham", type=int, default=2400)
    ap.add_argument("--spam", type=int, default=1800)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="spam-eval.")
    try:
        corpus = os.path.join(tmp, "corpus")
        run([sys.executable, os.path.join(ROOT, "tests/data/spam-corpus/gen.py"), corpus,
             "--seed", str(a.seed), "--ham", str(a.ham), "--spam", str(a.spam)])
        split = {}
        for kind in ("ham", "spam"):
            for part in ("train", "test"):
                os.makedirs(os.path.join(tmp, part, kind))
            for name in sorted(os.listdir(os.path.join(corpus, kind))):
                part = "test" if int(name.split(".")[0]) % 3 == 0 else "train"
                os.symlink(os.path.join(corpus, kind, name), os.path.join(tmp, part, kind, name))
                split.setdefault((part, kind), []).append(os.path.join(tmp, part, kind, name))
        base = [a.postern, "-o", "data_dir=" + os.path.join(tmp, "data")]
        for kind in ("ham", "spam"):
            run(base + ["spam", "train", "--" + kind, "--global", os.path.join(tmp, "train", kind)])
        stats = run(base + ["spam", "stats"]).strip()
        results = []  # (kind, lang, prob, score, rule)
        for kind in ("ham", "spam"):
            files = split[("test", kind)]
            for i in range(0, len(files), 200):
                out = run(base + ["spam", "classify"] + files[i:i + 200])
                for line in out.splitlines():
                    path, prob, score, rule = line.rsplit(" ", 3)
                    results.append((kind, lang_of(path), float(prob.split("=")[1]),
                                    float(score.split("=")[1]), rule))
        report = render(a, results, stats, {k: len(v) for k, v in split.items()})
        if a.out:
            with open(a.out, "w") as f:
                f.write(report)
        print(report)
    finally:
        shutil.rmtree(tmp)


def pct(n, d):
    return "%.2f %%" % (100.0 * n / d) if d else "-"


def render(a, results, stats, sizes):
    ham = [r for r in results if r[0] == "ham"]
    spam = [r for r in results if r[0] == "spam"]
    lines = []
    w = lines.append
    w("| decision | false positives (ham called spam) | false negatives (spam missed) |")
    w("| --- | --- | --- |")
    for label, test in (
            ("junk: score >= 5.0 (BAYES_99, prob >= 0.99): what the filter does alone",
             lambda r: r[3] >= 5.0),
            ("prob >= 0.95 (BAYES_95 and up: 3.5 points, junk with 1.5 more from other rules)",
             lambda r: r[2] >= 0.95),
            ("prob >= 0.5", lambda r: r[2] >= 0.5)):
        fp = sum(1 for r in ham if test(r))
        fn = sum(1 for r in spam if not test(r))
        w("| %s | %d / %d = %s | %d / %d = %s |" % (label, fp, len(ham), pct(fp, len(ham)),
                                                    fn, len(spam), pct(fn, len(spam))))
    w("")
    w("Verdict bands (rule: test ham / test spam):")
    w("")
    w("| rule | ham | spam |")
    w("| --- | --- | --- |")
    bands = collections.OrderedDict()
    for rule in ("BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40", "BAYES_50", "BAYES_60",
                 "BAYES_80", "BAYES_95", "BAYES_99", "UNTRAINED"):
        bands[rule] = [0, 0]
    for r in results:
        bands.setdefault(r[4], [0, 0])[r[0] == "spam"] += 1
    for rule, (h, s) in bands.items():
        if h or s:
            w("| %s | %d | %d |" % (rule, h, s))
    w("")
    w("Per language (junk decision, score >= 5.0):")
    w("")
    w("| language | test ham | FP | test spam | FN |")
    w("| --- | --- | --- | --- | --- |")
    langs = sorted({r[1] for r in results})
    for lang in langs:
        hl = [r for r in ham if r[1] == lang]
        sl = [r for r in spam if r[1] == lang]
        fp = sum(1 for r in hl if r[3] >= 5.0)
        fn = sum(1 for r in sl if r[3] < 5.0)
        w("| %s | %d | %d (%s) | %d | %d (%s) |" % (lang, len(hl), fp, pct(fp, len(hl)),
                                                   len(sl), fn, pct(fn, len(sl))))
    head = ("Corpus: seed %d, %d ham + %d spam generated; trained on %d ham + %d spam (global "
            "model), tested on %d ham + %d spam.\n\nModel after training: `%s`\n\n"
            % (a.seed, a.ham, a.spam, sizes[("train", "ham")], sizes[("train", "spam")],
               sizes[("test", "ham")], sizes[("test", "spam")], stats))
    return PREAMBLE + head + "\n".join(lines) + "\n" + POSTSCRIPT


PREAMBLE = """# The statistical spam filter on a synthetic corpus

Reproduce with one command (about half a minute): `make && bench/spam-eval.py --out
bench/spam-results.md`. The figures below are its output; the same seed gives the same figures.

**What this measures, honestly.** The corpus is *synthetic*: `tests/data/spam-corpus/gen.py`
(seeded) writes ham and spam from templates and small word lists in nine languages (English,
German, French, Spanish, Russian, Japanese, Chinese, Greek, Arabic) and their legacy charsets
(ISO-8859-1/7/15, KOI8-R, windows-1251/1256, Shift_JIS, ISO-2022-JP, GB2312, Big5, UTF-8),
with quoted-printable, base64 and 8bit bodies, RFC 2047 subjects and names, HTML-only
messages, multipart/alternative, and attachments. It is built not to be trivially separable:
every message mixes in words of the other class (up to 45 %) and neutral words; ham includes
newsletters with unsubscribe footers, invoices and password resets; spam includes phishing that
imitates them, free-mail senders shared with ham, look-alike domains, hidden "hash buster"
paragraphs of ham words, links to legitimate sites, and very short messages. It shows that the
tokenizer decodes every format and script into useful tokens and that the classifier's
arithmetic and thresholds behave as designed. It does **not** predict the rates on a real
mailbox: real vocabularies are far larger, real ham is more varied, and real spam adapts;
per-language samples here are small (20-90 test messages for the rarer languages), so those
rows are noisy. The global model is trained with `postern spam train` (mbox/directory input),
and each test message classified with `postern spam classify FILE...` - the same code
(`bayes_tokenize`, `bayes_combine`) the daemon runs on a worker for each local recipient.

"""

POSTSCRIPT = """
Reading the table: the filter alone files a message into Junk only at BAYES_99 (5.0 points =
the default `spam_junk_score`), so on its own it is tuned against false positives: no
legitimate message of the test set was filed as junk, at the cost of the spam it is unsure
about (BAYES_60..BAYES_95) staying in the inbox unless other rules (DNSBL, SPF/DMARC failures)
add the missing points. The languages whose word lists in gen.py are shortest (Arabic, Greek,
Spanish: about 20 words per class) miss the most spam: with so few words and up to 45 % of
the other class's words mixed into every message, each word turns up in many messages of both
classes, so the body says little and the verdict rests on headers (mailer, sender, URLs).
That is an artefact of the generator, not of the script (the Japanese and Chinese rows, with
CJK bigrams, do as well as English). Per-user training through IMAP (moving mail into and out
of Junk) is what adapts the model to a real mailbox.
"""


if __name__ == "__main__":
    main()
