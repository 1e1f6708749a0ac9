"""Full file systems, for real: small tmpfs mounts under the queue and the mail spool."""

from __future__ import annotations

import contextlib
import os
import smtplib
import subprocess

import pytest

from tests.e2e.test_smtpd import Daemon


@contextlib.contextmanager
def tmpfs(path, size: str):
    path.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(path)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(path, leave_blocks: int) -> None:
    """Fill a file system until about leave_blocks 4 KiB blocks are free."""
    vfs = os.statvfs(path)
    with open(path / "filler", "wb") as fh:
        fh.write(b"f" * max(0, (vfs.f_bavail - leave_blocks) * vfs.f_frsize))


def _files(qdir) -> list[str]:
    return sorted(n for n in os.listdir(qdir) if n[1:2] == "f" and n != "filler")


@pytest.mark.parametrize("features", ["", "#####  $Id: delay_checks.m4,v 8.9 2013-11-22 20:51:11 ca Exp $  #####\n"],
                         ids=["plain", "delay_checks"])  # with delay_checks the daemon answers MAIL on its loop
def test_min_free_blocks_refuses_at_mail_and_cmdline_keeps_dead_letter(inst, users, features):
    with tmpfs(inst.root / "q", "2m") as q:
        inst.write_cf(f"{features}O QueueDirectory={q}\nO MinFreeBlocks=100")
        _fill(q, 50)
        d = Daemon(inst)
        try:
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as c:
                c.ehlo("client.example")
                assert c.mail("a@example.org") == (452, b"4.4.5 Insufficient disk space; try again later")
                assert c.mail("a@example.org", ["SIZE=10"])[0] == 452
        finally:
            assert d.stop() == 0
        assert "low on space (localhost needs 0 bytes + 100 blocks in " in inst.log()
        dead = os.path.join(users["mtabob"].pw_dir, "dead.letter")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dead)
        r = inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: keep me\n\nbody\n", user="mtabob")
        assert r.returncode == 75, r.stdout
        assert b"Insufficient disk space; try again later" in r.stdout
        with open(dead, "rb") as fh:
            assert b"Subject: keep me\n\nbody\n" in fh.read()
        assert _files(q) == []


def test_size_checked_at_mail_and_a_full_disk_at_data_leaves_nothing(inst):
    with tmpfs(inst.root / "q", "1m") as q:
        inst.write_cf(f"O QueueDirectory={q}\nO MinFreeBlocks=0")
        body = (b"z" * 998 + b"\r\n") * 50  # 49900 bytes in the df: 13 blocks, and the headers fit in the 13th
        _fill(q, 13)  # so the size check passes, and the qf finds no block left
        d = Daemon(inst)
        try:
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as c:
                c.ehlo("client.example")
                assert c.mail("a@example.org", ["SIZE=5000000"])[0] == 452  # more than the disk holds
                c.rset()
                assert c.mail("a@example.org", ["SIZE=1000"])[0] == 250
                c.rcpt("mtaalice@test.example")
                code, text = c.data(b"Subject: big\r\n\r\n" + body)
                assert (code, text[:5]) == (452, b"4.3.1"), text
                assert b"/" not in text, text
        finally:
            assert d.stop() == 0
        assert _files(q) == []


def test_full_mailbox_fs_truncates_back_and_defers(inst):
    with tmpfs(inst.mail, "1m") as mail:
        r = inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: first\n\nsmall\n")
        assert r.returncode == 0, r.stdout
        before = (mail / "mtaalice").read_bytes()
        big = b"Subject: big\n\n" + (b"b" * 70 + b"\n") * 30000  # 2 MiB: more than the spool holds
        r = inst.run("-Am", "-odi", "mtaalice", stdin=big)
        assert r.returncode == 0, r.stdout  # queued; the delivery is deferred
        assert (mail / "mtaalice").read_bytes() == before
        assert not (mail / "mtaalice.lock").exists()
        qfs = inst.qfs()
        assert len(qfs) == 1
        assert "dsn=4.3.1, stat=Deferred: " in inst.log()
        r = inst.run("-bp")
        assert b"No space left on" in r.stdout
