"""mta.writeback: a message's df, tf and qf name made durable by one journal commit, not three.

Counted on a real ext4 as Debian makes one (mkfs.ext4's defaults, a journal), loop-mounted:
/proc/fs/jbd2 tells how many commits the file system made."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from mta import errors, qf, queue, writeback


@pytest.fixture
def enabled():
    writeback.enable()
    yield
    writeback._call = None  # noqa: SLF001 - off again, as in any process but the daemon's


@pytest.fixture
def ext4(tmp_path):
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("needs root and e2fsprogs to mount an ext4 image")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        dev = os.path.basename(subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mnt)], check=True,
                                              capture_output=True, text=True).stdout.strip())
        yield mnt, f"/proc/fs/jbd2/{dev}-8/info"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _commits_per_store(mnt, info: str, tag: str, n: int = 40) -> float:
    def commits() -> int:
        with open(info) as fh:
            return int(fh.readline().split()[0])

    before = commits()
    for i in range(n):
        entry = qf.Entry(f"{tag}{i:011d}", ctime=0, sender="<a@b.example>",
                            recipients=[qf.Recipient("<c@d.example>", "P")])
        queue.store(str(mnt), entry, "x" * 2000 + "\n")
    return (commits() - before) / n


def test_one_commit_covers_df_and_tf(ext4, enabled):
    mnt, info = ext4
    assert _commits_per_store(mnt, info, "w") <= 1.2  # files and name together
    writeback._call = None  # noqa: SLF001
    assert _commits_per_store(mnt, info, "p") >= 2.8  # df, tf, directory: Sendmail's order
    assert len([n for n in os.listdir(mnt) if n.startswith("qf")]) == 80


def test_a_refused_writeback_fails_the_write(enabled, tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError):
        writeback.start([fd, fd])  # closed: EBADF, as an I/O error would be refused


def test_off_it_does_nothing(tmp_path):
    writeback.start([-1, -1])


def test_a_failed_fsync_after_the_rename_leaves_nothing(enabled, tmp_path, monkeypatch):
    """Named before its fsyncs, an entry whose fsync then fails is removed whole (its qf too),
    and the error names no path (it goes back to the SMTP client as 452)."""
    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    entry = qf.Entry("x00000000001", ctime=0, sender="<a@b.example>",
                        recipients=[qf.Recipient("<c@d.example>", "P")])
    with pytest.raises(errors.TempFail) as failed:
        queue.store(str(tmp_path), entry, "x\n")
    assert str(tmp_path) not in failed.value.text and failed.value.code == 452
    assert os.listdir(tmp_path) == []
