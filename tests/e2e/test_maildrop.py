"""Users without privileges submit through the drop directory (mta/maildrop.py): durable
before exit 0 with the MTA down, delivered when it returns, the sender from the file's owner,
other users' mail unreadable; mailq for users through the daemon, PrivacyOptions deciding."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import wait_for
from tests.e2e.test_smtpd import Daemon


@pytest.fixture
def locked(inst):
    """Queues only root may write, as Debian's (smmsp-owned) are for a user, and a drop directory."""
    os.chmod(inst.mqueue_client, 0o770)
    os.chmod(inst.mqueue, 0o750)
    drop = inst.root / "mqueue-drop"
    drop.mkdir()
    os.chmod(drop, 0o1733)
    inst.drop = drop
    return inst


def dropped(inst) -> list[str]:
    return sorted(n for n in os.listdir(inst.drop) if not n.startswith("."))


def test_user_mail_waits_for_the_daemon_then_is_delivered_as_that_user(locked, users):
    inst = locked
    r = inst.run("mtaalice", stdin=b"Subject: while down\n\nbody\n", cf=inst.submit, user="mtabob")
    assert r.returncode == 0, r.stdout + r.stderr
    names = dropped(inst)
    assert len(names) == 1 and names[0].startswith("d")
    st = os.stat(inst.drop / names[0])
    assert st.st_uid == users["mtabob"].pw_uid and st.st_mode & 0o777 == 0o600
    peek = subprocess.run(["runuser", "-u", "mtaalice", "--", "ls", str(inst.drop)], capture_output=True)
    assert peek.returncode != 0  # nobody lists the drop directory
    d = Daemon(inst)
    try:
        assert wait_for(lambda: b"Subject: while down" in inst.mbox("mtaalice"))
        box = inst.mbox("mtaalice").decode()
        assert "From mtabob " in box and "Return-Path: <mtabob>" in box and "From: mtabob" in box
        assert dropped(inst) == []
        # with the daemon up, the socket brings the next one at once
        r = inst.run("-i", "-f", "ceo@example.com", "mtaalice", stdin=b"Subject: forged\n\n.\nx\n", cf=inst.submit,
                     user="mtabob")
        assert r.returncode == 0
        assert wait_for(lambda: b"Subject: forged\n\n.\nx\n" in inst.mbox("mtaalice"), 10)  # -i kept the dot
        assert "X-Authentication-Warning: test.example: mtabob set sender to <ceo@example.com> using -f" in \
            inst.mbox("mtaalice").decode()
    finally:
        d.stop()


def test_a_bad_drop_file_is_set_aside_and_logged(locked, users):
    inst = locked
    bad = inst.drop / "dforged"
    bad.write_bytes(b"sendmail-py drop 1\n{\"recipients\": \"root\", \"size\": 14}\nSubject: x\n\nx\n")
    os.chown(bad, users["mtabob"].pw_uid, users["mtabob"].pw_gid)
    d = Daemon(inst)
    try:
        assert wait_for(lambda: dropped(inst) == ["Xforged"])
        assert "maildrop: " in inst.log() and "bad recipients; kept as Xforged" in inst.log()
    finally:
        d.stop()


def test_mailq_for_a_user_comes_from_the_daemon(locked, users):
    inst = locked
    assert inst.run("-Am", "-odq", "mtabob", stdin=b"Subject: q\n\nq\n").returncode == 0
    qid = inst.qfs()[0][2:]
    down = inst.run("-bp", user="mtabob")
    assert down.returncode == 77 and b"Permission denied" in down.stdout and b"Total requests: 0" not in down.stdout
    d = Daemon(inst)
    try:
        assert wait_for(lambda: (inst.drop / ".socket").exists())
        up = inst.run("-bp", user="mtabob")
        assert up.returncode == 0 and qid.encode() in up.stdout and b"Total requests: 1" in up.stdout, up.stdout
        both = inst.run(prog="mailq", user="mtabob")
        assert both.stdout.startswith(b"MSP Queue status...\n") and b"MTA Queue status...\n" in both.stdout
        assert qid.encode() in both.stdout
    finally:
        d.stop()
    inst.write_cf("O PrivacyOptions=restrictmailq")
    d = Daemon(inst)
    try:
        assert wait_for(lambda: (inst.drop / ".socket").exists())
        no = inst.run("-bp", user="mtabob")
        assert no.returncode == 77 and b"You are not permitted to see the queue" in no.stdout
    finally:
        d.stop()
