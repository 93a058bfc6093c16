"""Delivery status notifications (RFC 3464, RFC 3461).

test_builder_output_parses: every DSN the builder's unit test makes
(tests/unit/dsn, written out with DSN_SAMPLE_DIR) read back with Python's
email package: multipart/report; report-type=delivery-status, the three
parts in order, the delivery-status fields, no parser defects, lines of at
most 998 octets, CRLF only.
"""
import email
import email.utils
import os
import subprocess

import pytest

from conftest import POSTERN, ROOT

ACTIONS = {"failed", "delayed", "delivered", "relayed"}
SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}


def _test_dsn_bin():
    for c in (os.path.join(os.path.dirname(POSTERN), "test_dsn"),
              os.path.join(ROOT, "build", "test_dsn")):
        if os.path.exists(c):
            return c
    pytest.fail("test_dsn binary missing: run `make unit` first")


def _all_defects(msg):
    out = list(msg.defects)
    if msg.is_multipart():
        for part in msg.get_payload():
            out += _all_defects(part)
    return out


def check_dsn(raw, name):
    """Checks the structure of one DSN; returns the parsed message."""
    assert raw.endswith(b"\r\n"), name
    body = raw[:-2]
    assert b"\n" not in body.replace(b"\r\n", b""), f"{name}: bare LF"
    assert b"\r" not in body.replace(b"\r\n", b""), f"{name}: bare CR"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998, f"{name}: line of {len(line)} octets"

    msg = email.message_from_bytes(raw)
    assert _all_defects(msg) == [], name
    assert msg.get_content_type() == "multipart/report", name
    assert msg.get_param("report-type") == "delivery-status", name
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == "auto-replied"  # RFC 3834 5
    assert email.utils.parseaddr(msg["From"])[1].startswith("MAILER-DAEMON@")
    assert email.utils.parsedate_to_datetime(msg["Date"]) is not None
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith(">")
    boundary = msg.get_boundary()
    assert boundary and len(boundary) <= 70  # RFC 2046 5.1.1

    parts = msg.get_payload()
    assert len(parts) == 3, name
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() in ("text/rfc822-headers", "message/rfc822")
    text = parts[0].get_payload()
    assert "This is the mail system at host" in text

    # RFC 3464 2.1: per-message fields, then one group per recipient
    groups = parts[1].get_payload()
    assert len(groups) >= 2, name
    per_msg = groups[0]
    assert per_msg["Reporting-MTA"].startswith("dns; ")
    actions = []
    for g in groups[1:]:
        assert g["Final-Recipient"].startswith("rfc822; "), name
        assert g["Action"] in ACTIONS, name
        status = g["Status"]
        assert status[0] in "245" and status.count(".") == 2, name
        assert {"failed": "5", "delayed": "4"}.get(g["Action"], "2") == status[0] or \
            g["Action"] in ("failed", "delayed")
        if g["Action"] == "delayed" and g["Will-Retry-Until"]:
            assert email.utils.parsedate_to_datetime(g["Will-Retry-Until"]) is not None
        if g["Last-Attempt-Date"]:
            assert email.utils.parsedate_to_datetime(g["Last-Attempt-Date"]) is not None
        if g["Diagnostic-Code"]:
            assert g["Diagnostic-Code"].split(";")[0] in ("smtp", "X-Postern")
        # the recipient is named in the words too
        assert "<" + g["Final-Recipient"][len("rfc822; "):].replace("\r\n", "") \
            .split()[0] in text.replace("\r\n", " ") or len(g["Final-Recipient"]) > 70
        actions.append(g["Action"])
    kind = "failed" if "failed" in actions else "delayed" if "delayed" in actions \
        else "delivered"
    assert msg["Subject"] == SUBJECTS[kind], name

    if parts[2].get_content_type() == "message/rfc822":
        inner = parts[2].get_payload()
        assert len(inner) == 1 and isinstance(inner[0], email.message.Message)
    return msg


def test_builder_output_parses(tmp_path):
    bin_ = _test_dsn_bin()
    r = subprocess.run([bin_], env=dict(os.environ, DSN_SAMPLE_DIR=str(tmp_path)),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    files = sorted(tmp_path.glob("case-*.eml"))
    assert len(files) >= 15
    seen_types = set()
    for f in files:
        msg = check_dsn(f.read_bytes(), f.name)
        seen_types.add(msg.get_payload()[2].get_content_type())
    assert seen_types == {"text/rfc822-headers", "message/rfc822"}

    # the exact case (case-0): ORCPT and ENVID decoded from xtext
    msg = email.message_from_bytes((tmp_path / "case-0.eml").read_bytes())
    groups = msg.get_payload()[1].get_payload()
    assert groups[0]["Original-Envelope-Id"] == "ENV+1"
    assert groups[2]["Original-Recipient"] == "rfc822;Carol+x@example.net"
    assert [g["Action"] for g in groups[1:]] == ["failed", "delayed"]
    assert groups[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: no such user"
