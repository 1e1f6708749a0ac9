"""The local mailer's formats and locking, on real files."""

import os
import pwd

import pytest

from mta.mailers import local

TEXT = "Return-Path: <a@b>\nSubject: s\n\nFrom here\nbody\n"


@pytest.fixture
def me():
    return pwd.getpwuid(os.geteuid())


def test_mbox_append(tmp_path, me):
    for _ in range(2):
        out = local.deliver(spool=str(tmp_path), fmt="mbox", owner=me, sender="a@b", text=TEXT, when=0)
        assert out.kind == "sent"
    data = (tmp_path / me.pw_name).read_bytes()
    assert data.count(b"\nFrom a@b ") + data.startswith(b"From a@b ") == 2
    assert b"\n>From here\nbody\n\n" in data
    assert oct(os.stat(tmp_path / me.pw_name).st_mode & 0o777) == "0o600"  # a spool not of group mail
    assert not (tmp_path / f"{me.pw_name}.lock").exists()


def test_mmdf(tmp_path, me):
    local.deliver(spool=str(tmp_path), fmt="mmdf", owner=me, sender="a@b", text=TEXT, when=0)
    assert (tmp_path / me.pw_name).read_bytes() == b"\x01\x01\x01\x01\n" + TEXT.encode() + b"\x01\x01\x01\x01\n"


def test_maildir(tmp_path, me):
    local.deliver(spool=str(tmp_path), fmt="maildir", owner=me, sender="a@b", text=TEXT, when=0)
    new = os.listdir(tmp_path / me.pw_name / "new")
    assert len(new) == 1 and (tmp_path / me.pw_name / "new" / new[0]).read_text() == TEXT
    assert os.listdir(tmp_path / me.pw_name / "tmp") == []


def test_mh(tmp_path, me):
    for _ in range(2):
        local.deliver(spool=str(tmp_path), fmt="mh", owner=me, sender="a@b", text=TEXT, when=0)
    assert sorted(n for n in os.listdir(tmp_path / me.pw_name) if n.isdigit()) == ["1", "2"]


def test_symlinked_mailbox_refused(tmp_path, me):
    (tmp_path / "target").write_text("")
    os.symlink(tmp_path / "target", tmp_path / me.pw_name)
    out = local.deliver(spool=str(tmp_path), fmt="mbox", owner=me, sender="a@b", text=TEXT, when=0)
    assert out.kind != "sent" and (tmp_path / "target").read_text() == ""


def test_held_dotlock_waits_then_defers(tmp_path, me, monkeypatch):
    monkeypatch.setattr(local, "DOTLOCK_TRIES", 1)
    (tmp_path / f"{me.pw_name}.lock").write_text("1\n")
    out = local.deliver(spool=str(tmp_path), fmt="mbox", owner=me, sender="a@b", text=TEXT, when=0)
    assert out.kind == "deferred"


def test_escape_from():
    assert local.escape_from("From x\nFrom y\n>From z\nfrom w\n") == ">From x\n>From y\n>From z\nfrom w\n"
