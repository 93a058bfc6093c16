"""DMARC aggregate reports (RFC 7489 7.2, issue 10), end to end.

One postern instance (R, hostname mx.recv.test, local domain recv.test)
resolves through a private dnsmasq that publishes the policy domains'
_dmarc records, the MX of the remote report addresses (a scripted SMTP
sink, tests/e2e/smtpsink.py) and one external-destination authorization
(RFC 7489 7.1). The evaluations are rows of dmarc_rows.

How the rows get there: test_reports_from_real_deliveries delivers
messages over SMTP, and the daemon's policy (src/policy/policy.c) records
each DMARC evaluation (store_dmarc_record), rejected messages too. The
other tests need rows no SMTP client can produce (IPv6 sources, hostile
From domains, chosen policies and periods): they write them directly into
the store's database (sqlite3, WAL: beside the running daemon), with the
fields store_dmarc_record stores (src/store/store.h, struct
store_dmarc_row). Everything after the rows (the run, the XML, gzip, the
message, the 7.1 check, the queue, local delivery, `postern dmarc
reports`) is the real code.

`postern dmarc send-reports --since S --until U` runs one report run on a
private loop and exits; the daemon's queue delivers within queue_poll (1 s).
"""
import email
import gzip
import io
import os
import re
import sqlite3
import subprocess
import time
import zipfile

import pytest

from conftest import POSTERN, Client, Postern, make_message
from dnsmasq import Blackhole, Dnsmasq
from smtpsink import SmtpSink, wait_until

XSD = os.path.join(os.path.dirname(__file__), "data", "dmarc-rfc7489.xsd")
WAIT = 30.0
REPORTS = "dmarc@recv.test"
PW = "dmarc-Secret-1"


class Sink(SmtpSink):
    def ehlo(self, cmd):
        return "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES"

    def helo(self, cmd):
        return "250 sink.test"

    def mail_from(self, cmd):
        return cmd, "250 2.1.0 Ok"

    def rcpt(self, cmd):
        return re.search(r"<([^>]*)>", cmd).group(1), "250 2.1.5 Ok"


@pytest.fixture(scope="module")
def net(tmp_path_factory, tls_pair):
    sink = Sink("127.0.0.1", 0)
    dns = Dnsmasq(tmp_path_factory.mktemp("dns"), [
        # the policy domains' records (RFC 7489 6.1)
        ("TXT", "_dmarc.sender.test", "v=DMARC1; p=reject; rua=mailto:dmarc@sender.test"),
        ("TXT", "_dmarc.auth.test", "v=DMARC1; p=none; rua=mailto:agg@thirdparty.test"),
        ("TXT", "_dmarc.noauth.test", "v=DMARC1; p=none; rua=mailto:agg@thirdparty.test"),
        # RFC 7489 7.1: thirdparty.test accepts reports about auth.test only
        ("TXT", "auth.test._report._dmarc.thirdparty.test", "v=DMARC1"),
        ("MX", "sender.test", "mx.sink.test", 10),
        ("MX", "thirdparty.test", "mx.sink.test", 10),
        ("MX", "small.test", "mx.sink.test", 10),
        ("A", "mx.sink.test", "127.0.0.1"),
        # real deliveries (test_reports_from_real_deliveries)
        ("TXT", "_dmarc.real.test", "v=DMARC1; p=none; aspf=r; rua=mailto:agg@real.test"),
        ("TXT", "real.test", "v=spf1 ip4:127.0.0.1 -all"),
        ("MX", "real.test", "mx.sink.test", 10),
        ("TXT", "_dmarc.rejreal.test", "v=DMARC1; p=reject; rua=mailto:agg@rejreal.test"),
        ("MX", "rejreal.test", "mx.sink.test", 10),
    ]).start()
    r = Postern(tmp_path_factory.mktemp("r"), tls_pair, hostname="mx.recv.test",
                dns_resolver=dns.server, outbound_port=sink.port, queue_poll="1",
                queue_retry_min="1", queue_retry_max="2", dmarc_report_org="Recv Org",
                dmarc_report_from="dmarc-noreply@recv.test")
    r.cli("domain", "add", "recv.test")
    r.cli("user", "add", REPORTS, input=PW + "\n")
    r.start()
    n = type("Net", (), {})()
    n.r, n.sink, n.dns = r, sink, dns
    n.r_bin = POSTERN
    yield n
    try:
        r.stop()
    finally:
        sink.close()
        dns.stop()


COLS = ("time", "source_ip", "header_from", "envelope_from", "envelope_to", "policy_domain",
        "p", "sp", "pct", "adkim", "aspf", "fo", "rua", "disposition", "dkim", "spf", "reason",
        "reason_comment", "dkim_results", "spf_domain", "spf_scope", "spf_result")


def add_rows(srv, rows):
    """The test-only path (see the module's docstring)."""
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        for r in rows:
            v = dict(time=int(time.time()) - 100, source_ip="192.0.2.10",
                     header_from=r["policy_domain"], envelope_from=r["policy_domain"],
                     envelope_to="recv.test", p="none", sp="none", pct=100, adkim="r",
                     aspf="r", fo="0", disposition="none", dkim="pass", spf="pass", reason="",
                     reason_comment="", dkim_results="%s s1 pass" % r["policy_domain"],
                     spf_domain=r["policy_domain"], spf_scope="mfrom", spf_result="pass")
            v.update(r)
            db.execute("INSERT INTO dmarc_rows (%s) VALUES (%s)" % (
                ", ".join(COLS), ", ".join("?" * len(COLS))), [v[c] for c in COLS])
        db.commit()
    finally:
        db.close()


def row_count(srv):
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        return db.execute("SELECT count(*) FROM dmarc_rows").fetchone()[0]
    finally:
        db.close()


def report_xml(data):
    """(message, xml bytes, attachment filename) of a report message."""
    msg = email.message_from_bytes(data)
    parts = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
    assert len(parts) == 1, data[:2000]
    gz = parts[0].get_payload(decode=True)
    assert gz[:2] == b"\x1f\x8b"
    return msg, gzip.decompress(gz), parts[0].get_filename()


def validate(tmp_path, xml):
    path = tmp_path / "report.xml"
    path.write_bytes(xml)
    p = subprocess.run(["xmllint", "--noout", "--schema", XSD, str(path)],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, (p.stderr.decode(), xml.decode())


def send_reports(srv, since, until):
    """(reports sent, the run's log: the CLI's stderr)"""
    p = srv.cli("dmarc", "send-reports", "--since", since, "--until", until)
    out, err = p.stdout.decode(), p.stderr.decode()
    m = re.match(r"(\d+) reports sent", out)
    assert m, (out, err)
    return int(m.group(1)), err


def sink_reports(sink, domain):
    with sink.lock:
        return [t for t in sink.tx if b"Report Domain: %s " % domain.encode() in t[2]]


def test_reports_sent_validated_and_counted(net, tmp_path):
    now = int(time.time())
    since, until = now - 3600, now + 60
    add_rows(net.r, [
        # sender.test: 3 identical + 1 other (IPv6, quarantined) in the period
        *[dict(policy_domain="sender.test", p="reject", sp="quarantine", pct=50, adkim="s",
               rua="mailto:dmarc@sender.test") for _ in range(3)],
        dict(policy_domain="sender.test", p="reject", sp="quarantine", pct=50, adkim="s",
             rua="mailto:dmarc@sender.test", source_ip="2001:db8::5",
             disposition="quarantine", dkim="fail", spf="fail", reason="sampled_out",
             dkim_results="sender.test s1 fail\nevil.test - permerror", spf_result="softfail",
             header_from="sender.test"),
        # outside the period: not in the report
        dict(policy_domain="sender.test", rua="mailto:dmarc@sender.test", time=since - 10,
             source_ip="192.0.2.99"),
        # older than two intervals before until: pruned by the run
        dict(policy_domain="sender.test", rua="mailto:dmarc@sender.test",
             time=until - 3 * 86400, source_ip="192.0.2.98"),
        # a hostile From domain (From fields are the sender's): escaped
        dict(policy_domain="sender.test", p="reject", sp="quarantine", pct=50, adkim="s",
             rua="mailto:dmarc@sender.test", header_from="x</header_from><evil/>&.test"),
        # our own domain, its rua a local account
        dict(policy_domain="recv.test", rua="mailto:%s" % REPORTS, source_ip="198.51.100.7"),
        # external destinations (RFC 7489 7.1)
        dict(policy_domain="auth.test", rua="mailto:agg@thirdparty.test"),
        dict(policy_domain="noauth.test", rua="mailto:agg@thirdparty.test"),
        # "!size": a.small.test's limit is 10 octets: skipped; b has none
        dict(policy_domain="small.test", rua="mailto:a@small.test!10 mailto:b@small.test"),
        # no rua: no report
        dict(policy_domain="norua.test", rua=""),
    ])
    before = row_count(net.r)
    n, log = send_reports(net.r, since, until)
    # sender, recv (local), auth, small; noauth has no authorized address
    assert n == 4, log
    assert "rcpt=agg@thirdparty.test reason=external-destination-not-authorized" in log, log
    assert "rcpt=a@small.test reason=size" in log, log

    # remote reports arrive at the sink through the queue
    wait_until(lambda: sink_reports(net.sink, "sender.test") and
               sink_reports(net.sink, "auth.test") and sink_reports(net.sink, "small.test"),
               WAIT, "the reports at the sink")
    (mail, rcpts, data), = [t[:3] for t in sink_reports(net.sink, "sender.test")]
    assert rcpts == ["dmarc@sender.test"]
    assert "dmarc-noreply@recv.test" in mail
    msg, xml, fname = report_xml(data)
    validate(tmp_path, xml)
    # RFC 7489 7.2.1.1: Subject, filename, From
    rid = re.search(r"<report_id>([^<]+)</report_id>", xml.decode()).group(1)
    assert msg["Subject"] == "Report Domain: sender.test Submitter: Recv Org Report-ID: <%s>" % rid
    assert fname == "mx.recv.test!sender.test!%d!%d!%s.xml.gz" % (since, until - 1, rid)
    assert msg["From"] == "<dmarc-noreply@recv.test>"
    assert msg["Message-ID"] and msg["Date"]
    x = xml.decode()
    assert "<org_name>Recv Org</org_name>" in x
    assert "<email>dmarc-noreply@recv.test</email>" in x
    assert "<date_range><begin>%d</begin><end>%d</end></date_range>" % (since, until - 1) in x
    assert ("<domain>sender.test</domain>\n    <adkim>s</adkim><aspf>r</aspf><p>reject</p>"
            "<sp>quarantine</sp><pct>50</pct><fo>0</fo>") in x
    assert "<source_ip>192.0.2.10</source_ip><count>3</count>" in x
    assert ("<source_ip>2001:db8:0:0:0:0:0:5</source_ip><count>1</count><policy_evaluated>"
            "<disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf>"
            "<reason><type>sampled_out</type></reason>") in x
    assert ("<dkim><domain>sender.test</domain><selector>s1</selector><result>fail</result>"
            "</dkim><dkim><domain>evil.test</domain><result>permerror</result></dkim>"
            "<spf><domain>sender.test</domain><scope>mfrom</scope><result>softfail</result>"
            "</spf>") in x
    assert "<header_from>x&lt;/header_from&gt;&lt;evil/&gt;&amp;.test</header_from>" in x
    assert "192.0.2.99" not in x and "192.0.2.98" not in x
    assert x.count("<record>") == 3

    # external destination authorized by its record: sent; the other not
    (_, rcpts, data), = [t[:3] for t in sink_reports(net.sink, "auth.test")]
    assert rcpts == ["agg@thirdparty.test"]
    validate(tmp_path, report_xml(data)[1])
    assert not sink_reports(net.sink, "noauth.test")
    # the size limit: only the address without one
    (_, rcpts, _), = [t[:3] for t in sink_reports(net.sink, "small.test")]
    assert rcpts == ["b@small.test"]

    # the local rua: delivered to the account; `dmarc reports` reads it
    out = net.r.cli_out("dmarc", "reports", REPORTS)
    assert "report org=Recv_Org report_id=" in out, out
    assert " domain=recv.test begin=%d end=%d" % (since, until - 1) in out, out
    assert "record source_ip=198.51.100.7 count=1 disposition=none dkim=pass spf=pass " \
           "header_from=recv.test" in out, out
    local = net.r.messages(REPORTS)
    validate(tmp_path, report_xml(local[-1])[1])

    # bounded: the row older than two intervals is gone, the others stay
    assert row_count(net.r) == before - 1


def smtp_deliver(srv, rcpt, message):
    with Client(srv.host, srv.ports["mx"]) as c:
        c.ehlo()
        r = c.mail("reporter@other.test", [rcpt], message)
        assert r.code == 250, r


def mime_with(attachment, ctype, filename):
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    m = MIMEMultipart()
    m["From"] = "noreply-dmarc@other.test"
    m["To"] = REPORTS
    m["Subject"] = "Report Domain: recv.test Submitter: other.test Report-ID: <z1>"
    m.attach(MIMEText("report attached"))
    maintype, subtype = ctype.split("/")
    part = MIMEApplication(attachment, _subtype=subtype)
    part.replace_header("Content-Type", ctype)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    m.attach(part)
    return m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


ZIP_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<feedback>
  <report_metadata><org_name>Other Org</org_name><email>dmarc@other.test</email>
    <report_id>zip-77</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range>
  </report_metadata>
  <policy_published><domain>recv.test</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p>
    <sp>none</sp><pct>100</pct></policy_published>
  <record><row><source_ip>203.0.113.9</source_ip><count>12</count><policy_evaluated>
    <disposition>quarantine</disposition><dkim>fail</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>recv.test</header_from></identifiers>
    <auth_results><spf><domain>recv.test</domain><result>pass</result></spf></auth_results></record>
</feedback>
"""


def test_reports_received_zip_and_malformed(net):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("other.test!recv.test!1700000000!1700086399.xml", ZIP_XML)
    smtp_deliver(net.r, REPORTS, mime_with(buf.getvalue(), "application/zip",
                                           "other.test!recv.test!1700000000!1700086399.zip"))
    # a report that cannot be decoded, and a message that is no report
    smtp_deliver(net.r, REPORTS, mime_with(b"this is not gzip", "application/gzip",
                                           "x!recv.test!1!2.xml.gz"))
    smtp_deliver(net.r, REPORTS, make_message("a@other.test", REPORTS, "hello", "just mail"))
    wait_until(lambda: len(net.r.mail_list(REPORTS)) >= 3, WAIT, "the deliveries")
    out = net.r.cli_out("dmarc", "reports", REPORTS)
    assert ("report org=Other_Org report_id=zip-77 domain=recv.test begin=1700000000"
            " end=1700086399\npolicy p=quarantine sp=none pct=100 adkim=r aspf=r\n"
            "record source_ip=203.0.113.9 count=12 disposition=quarantine dkim=fail spf=pass"
            " header_from=recv.test\n") in out, out
    assert "malformed report: not gzip data" in out, out
    # the plain message is skipped: only reports are listed
    assert out.count("report org=") + out.count("malformed report") == \
        int(re.search(r"(\d+) reports\n", out).group(1)) + 1, out


def test_reports_unknown_address(net):
    p = net.r.cli("dmarc", "reports", "nobody@elsewhere.test", check=False)
    assert p.returncode == 1
    assert b"not a local account" in p.stderr


def test_authorization_tempfail_skips_this_run(net, tmp_path):
    """RFC 7489 7.1 through a resolver that never answers: the external
    address is skipped for this run (temporary failure), the internal one
    gets its report."""
    now = int(time.time())
    since, until = now - 7200, now - 3600  # a period of its own
    add_rows(net.r, [
        dict(policy_domain="auth.test", rua="mailto:agg@thirdparty.test", time=since + 5),
        dict(policy_domain="sender.test", rua="mailto:dmarc@sender.test", time=since + 5,
             source_ip="192.0.2.77"),
    ])
    with Blackhole() as bh:
        conf = tmp_path / "blackhole.conf"
        text = open(net.r.conf).read()
        text = re.sub(r"(?m)^dns_resolver = .*$", "dns_resolver = %s" % bh.server, text)
        conf.write_text(text + "dns_timeout_ms = 200\ndns_tries = 1\n")
        with net.sink.lock:
            net.sink.tx = []
        p = subprocess.run([net.r_bin, "-c", str(conf), "dmarc", "send-reports", "--since",
                            str(since), "--until", str(until)], capture_output=True, timeout=60)
        out, err = p.stdout.decode(), p.stderr.decode()
        assert p.returncode == 0, (out, err)
        assert out.startswith("1 reports sent"), (out, err)
        assert "rcpt=agg@thirdparty.test reason=authorization-lookup-tempfail" in err, err
    wait_until(lambda: sink_reports(net.sink, "sender.test"), WAIT, "the internal report")
    (_, _, data), = [t[:3] for t in sink_reports(net.sink, "sender.test")]
    assert b"192.0.2.77" in report_xml(data)[1]
    assert not sink_reports(net.sink, "auth.test")


def test_daemon_timer(tmp_path, tls_pair):
    """The daemon's own timer: with dmarc_report_interval = 60 s the period
    that contains now ends within a minute, and its report goes out a few
    seconds after (at most ~65 s from now)."""
    sink = Sink("127.0.0.1", 0)
    (tmp_path / "dns").mkdir()
    (tmp_path / "t").mkdir()
    dns = Dnsmasq(tmp_path / "dns", [("MX", "timer.test", "mx.sink.test", 10),
                                     ("A", "mx.sink.test", "127.0.0.1")]).start()
    srv = Postern(tmp_path / "t", tls_pair, hostname="mx.timer-recv.test",
                  dns_resolver=dns.server, outbound_port=sink.port, queue_poll="1",
                  dmarc_report_interval="60")
    try:
        srv.start()
        now = int(time.time())
        add_rows(srv, [dict(policy_domain="timer.test", rua="mailto:dmarc@timer.test",
                            time=now, source_ip="192.0.2.200")])
        end = now - now % 60 + 60
        wait_until(lambda: sink_reports(sink, "timer.test"), 90, "the timer's report")
        (_, rcpts, data), = [t[:3] for t in sink_reports(sink, "timer.test")]
        assert rcpts == ["dmarc@timer.test"]
        xml = report_xml(data)[1].decode()
        assert "<date_range><begin>%d</begin><end>%d</end></date_range>" % (end - 60, end - 1) \
            in xml, xml
        assert "<source_ip>192.0.2.200</source_ip><count>1</count>" in xml
        assert "dmarc report run done since=%d until=%d reports=1 sent=1" % (end - 60, end) \
            in srv.log()
    finally:
        try:
            srv.stop()
        finally:
            sink.close()
            dns.stop()


def dmarc_rows(srv, domain):
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        return db.execute("SELECT count(*) FROM dmarc_rows WHERE policy_domain = ?",
                          (domain,)).fetchone()[0]
    finally:
        db.close()


def test_reports_from_real_deliveries(net, tmp_path):
    """Messages delivered end to end are evaluated and recorded by the
    daemon; the report counts them as they were: three aligned SPF passes
    sent from real.test (p=none), one p=reject failure from rejreal.test (550,
    nothing stored, still recorded)."""
    t0 = int(time.time())
    for i in range(3):
        msg = make_message("a@real.test", REPORTS, "real %d" % i, "body %d" % i)
        with net.r.client("mx") as c:
            c.ehlo("client.real.test")
            r = c.mail("bounce@real.test", [REPORTS], msg)
            assert r.code == 250, r
    msg = make_message("a@rejreal.test", REPORTS, "rejected", "body")
    with net.r.client("mx") as c:
        c.ehlo("client.real.test")
        r = c.mail("x@rejreal.test", [REPORTS], msg, expect_ok=False)
        assert r.code == 550, r
    wait_until(lambda: dmarc_rows(net.r, "real.test") == 3 and
               dmarc_rows(net.r, "rejreal.test") == 1, WAIT, "the evaluations recorded")
    n, log = send_reports(net.r, t0, int(time.time()) + 1)
    assert n == 2, log
    wait_until(lambda: sink_reports(net.sink, "real.test") and
               sink_reports(net.sink, "rejreal.test"), WAIT, "the reports at the sink")

    (_, rcpts, data), = [t[:3] for t in sink_reports(net.sink, "real.test")]
    assert rcpts == ["agg@real.test"]
    xml = report_xml(data)[1]
    validate(tmp_path, xml)
    x = xml.decode()
    assert x.count("<record>") == 1, x
    assert ("<row><source_ip>127.0.0.1</source_ip><count>3</count><policy_evaluated>"
            "<disposition>none</disposition><dkim>fail</dkim><spf>pass</spf>"
            "</policy_evaluated></row>") in x, x
    assert ("<identifiers><envelope_to>recv.test</envelope_to><envelope_from>real.test"
            "</envelope_from><header_from>real.test</header_from></identifiers>") in x, x
    assert ("<auth_results><spf><domain>real.test</domain><scope>mfrom</scope>"
            "<result>pass</result></spf></auth_results>") in x, x
    assert "<p>none</p><sp>none</sp><pct>100</pct>" in x, x

    (_, rcpts, data), = [t[:3] for t in sink_reports(net.sink, "rejreal.test")]
    assert rcpts == ["agg@rejreal.test"]
    xml = report_xml(data)[1]
    validate(tmp_path, xml)
    x = xml.decode()
    assert ("<count>1</count><policy_evaluated><disposition>reject</disposition>"
            "<dkim>fail</dkim><spf>fail</spf></policy_evaluated>") in x, x
    assert "<header_from>rejreal.test</header_from>" in x, x


def setting(srv, name="dmarc_report_end"):
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        row = db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


def set_setting(srv, value, name="dmarc_report_end"):
    db = sqlite3.connect(os.path.join(srv.data_dir, "postern.db"), timeout=10)
    try:
        db.execute("INSERT INTO settings(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE"
                   " SET value = excluded.value", (name, str(value)))
        db.commit()
    finally:
        db.close()


def test_periods_missed_while_down_are_reported_at_start(tmp_path, tls_pair):
    """RFC 7489 7.2 after a restart: the daemon keeps the end of the last
    period it reported (setting dmarc_report_end); periods that ended while
    it was down are reported at the next start, each period its own report
    (aligned periods, as the daemon's own runs), and never twice."""
    sink = Sink("127.0.0.1", 0)
    (tmp_path / "dns").mkdir()
    (tmp_path / "t").mkdir()
    dns = Dnsmasq(tmp_path / "dns", [("MX", "catch.test", "mx.sink.test", 10),
                                     ("A", "mx.sink.test", "127.0.0.1")]).start()
    srv = Postern(tmp_path / "t", tls_pair, hostname="mx.catch-recv.test",
                  dns_resolver=dns.server, outbound_port=sink.port, queue_poll="1",
                  dmarc_report_interval="60")
    try:
        t0 = int(time.time())
        srv.start()
        # a first start reports nothing earlier; it records where it starts
        first = int(setting(srv))
        assert first in (t0 - t0 % 60, t0 - t0 % 60 + 60), (first, t0)
        srv.stop()
        # as if the daemon had last reported three periods before the one
        # that has just ended, and had been down since
        now = int(time.time())
        e = now - now % 60
        set_setting(srv, e - 180)
        add_rows(srv, [
            # reported before the restart (before dmarc_report_end): not again
            dict(policy_domain="catch.test", rua="mailto:dmarc@catch.test", time=e - 200,
                 source_ip="192.0.2.1"),
            # two missed periods with rows, one without
            dict(policy_domain="catch.test", rua="mailto:dmarc@catch.test", time=e - 170,
                 source_ip="192.0.2.2"),
            dict(policy_domain="catch.test", rua="mailto:dmarc@catch.test", time=e - 125,
                 source_ip="192.0.2.2"),
            dict(policy_domain="catch.test", rua="mailto:dmarc@catch.test", time=e - 50,
                 source_ip="192.0.2.3"),
        ])
        srv.start()
        wait_until(lambda: len(sink_reports(sink, "catch.test")) >= 2, 30,
                   "the missed periods' reports")
        wait_until(lambda: "dmarc report run done since=%d" % (e - 180) in srv.log(), 30,
                   "the catch-up run's end")
        time.sleep(1.5)  # a third report would be in the queue by now
        got = {}
        for (_, rcpts, data) in [t[:3] for t in sink_reports(sink, "catch.test")]:
            assert rcpts == ["dmarc@catch.test"]
            xml = report_xml(data)[1].decode()
            validate(tmp_path, xml.encode())
            m = re.search(r"<date_range><begin>(\d+)</begin><end>(\d+)</end>", xml)
            got[(int(m.group(1)), int(m.group(2)))] = re.findall(
                r"<source_ip>([^<]+)</source_ip><count>(\d+)</count>", xml)
        assert got == {(e - 180, e - 121): [("192.0.2.2", "2")],
                       (e - 60, e - 1): [("192.0.2.3", "1")]}, got
        log = srv.log()
        assert "dmarc report catching up since=%d" % (e - 180) in log, log
        until = int(setting(srv))
        assert until >= e, (until, e)
        assert "dmarc report run done since=%d until=%d reports=2 sent=2" % (e - 180, until) \
            in log, log
        # a restart sends nothing again
        srv.stop()
        srv.start()
        time.sleep(2)
        assert len(sink_reports(sink, "catch.test")) == 2
        assert "catching up" not in srv.log().rsplit("---- start 3 ----", 1)[1]
    finally:
        try:
            srv.stop()
        finally:
            sink.close()
            dns.stop()


def test_sigterm_during_a_report_run(tmp_path, tls_pair):
    """A report run in flight at shutdown is cancelled: its DNS queries (the
    RFC 7489 7.1 check, here through a resolver that never answers) and
    every callback end with the daemon, which exits at once, leaks nothing
    (run it under the sanitizer build: POSTERN_BIN=build-san/postern) and
    has not advanced dmarc_report_end: the next start reports the period."""
    (tmp_path / "t").mkdir()
    with Blackhole() as bh:
        srv = Postern(tmp_path / "t", tls_pair, hostname="mx.cancel-recv.test",
                      dns_resolver=bh.server, dns_timeout_ms="30000", dns_tries="1",
                      dmarc_report_interval="60")
        try:
            srv.start()
            srv.stop()
            now = int(time.time())
            e = now - now % 60
            set_setting(srv, e - 120)
            add_rows(srv, [dict(policy_domain="cancel.test", rua="mailto:agg@elsewhere.test",
                                time=e - 100)])
            srv.start()
            wait_until(lambda: "dmarc report run checking destinations since=%d" % (e - 120)
                       in srv.log(), 30, "the run waiting for its 7.1 lookup")
            t = time.monotonic()
            assert srv.stop() == 0  # raises on a sanitizer report
            assert time.monotonic() - t < 8
            log = srv.log()
            assert "dmarc report run cancelled since=%d" % (e - 120) in log, log
            assert "stage=dns" in log, log
            assert int(setting(srv)) == e - 120
        finally:
            srv.kill()
