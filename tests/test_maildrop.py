"""mta/maildrop.py: what a drop file may say, and what a user may ask the daemon to list."""

from __future__ import annotations

import pytest

from mta import config, maildrop, submit


def _file(head: bytes, message: bytes = b"Subject: x\n\nx\n") -> bytes:
    return maildrop.MAGIC + head + b"\n" + message


def test_round_trip():
    sub = submit.Submission(("alice", "bob@example.com"), "me@example.com", "Me", True, "success", "hdrs", "id1")
    data = maildrop.MAGIC + maildrop.envelope(sub, True, 14) + b"Subject: x\n\nx\n"
    back, dots, message = maildrop.parse(data, 1000)
    assert back == sub and dots is True and message == b"Subject: x\n\nx\n"


@pytest.mark.parametrize("head", [
    b'{"recipients": "root", "size": 14}',
    b'{"recipients": ["a\\nb"], "size": 14}',
    b'{"recipients": [""], "size": 14}',
    b'{"recipients": ["a"], "sender": "x\\r\\nRCPT TO:<b>", "size": 14}',
    b'{"recipients": ["a"], "sender": 5, "size": 14}',
    b'{"recipients": ["a"]}',
    b'[1, 2]',
])
def test_hostile_envelopes_are_refused(head):
    with pytest.raises(ValueError):
        maildrop.parse(_file(head), 1000)


def test_incomplete_and_oversized():
    with pytest.raises(maildrop.Incomplete):
        maildrop.parse(_file(b'{"recipients": ["a"], "size": 99}'), 1000)
    with pytest.raises(maildrop.Incomplete):
        maildrop.parse(maildrop.MAGIC + b'{"recipients"', 1000)
    with pytest.raises(ValueError, match="too large"):
        maildrop.parse(_file(b'{"recipients": ["a"], "size": 14}'), 10)
    with pytest.raises(ValueError, match="not a drop file"):
        maildrop.parse(b"From evil\n", 1000)


def test_listing_args_keep_the_daemons_config_and_only_safe_words(tmp_path):
    cf = tmp_path / "sendmail.cf"
    cf.write_text("O QueueDirectory=/q\n")
    cfg = config.load(str(cf))
    assert maildrop.listing_args(cfg, ["-Am", "-v", "-qRbob", "-q!Sroot"]) == ["-C", str(cf), "-bp", "-v",
                                                                                "-qRbob", "-q!Sroot"]
    assert maildrop.listing_args(cfg, ["-qL"]) == ["-C", str(cf), "-bp", "-qL"]  # mailq -qL, lost items
    for bad in (["-C/etc/shadow"], ["-X/tmp/log"], ["-O", "QueueDirectory=/etc"], ["-d0.1"], "x", [1]):
        assert maildrop.listing_args(cfg, bad) is None, bad


def test_directory_is_beside_the_queue_unless_named(tmp_path):
    cf = tmp_path / "submit.cf"
    cf.write_text("O QueueDirectory=/var/spool/mqueue-client\n")
    assert maildrop.directory(config.load(str(cf))) == "/var/spool/mqueue-drop"
    cf.write_text("O QueueDirectory=/var/spool/mqueue/\nO MaildropDirectory=/srv/drop\n")
    assert maildrop.directory(config.load(str(cf))) == "/srv/drop"
