"""Group commit: concurrent commits share directory fsyncs, and none returns before its own is covered."""

from __future__ import annotations

import os
import threading
import time

from mta import groupcommit


def test_one_caller_one_fsync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(groupcommit, "fsync_dir", lambda p: calls.append(p))
    groupcommit.sync_dir(str(tmp_path))
    groupcommit.sync_dir(str(tmp_path))
    assert calls == [str(tmp_path)] * 2  # nobody to share with: each waits for its own


def test_concurrent_callers_share_and_each_is_covered(tmp_path, monkeypatch):
    real = groupcommit.fsync_dir
    starts: list[float] = []
    ends: list[float] = []

    def slow(path):  # a slow disk, so that callers pile up behind a running fsync
        starts.append(time.monotonic())
        time.sleep(0.05)
        real(path)
        ends.append(time.monotonic())

    monkeypatch.setattr(groupcommit, "fsync_dir", slow)
    covered = []

    def commit():
        called = time.monotonic()
        groupcommit.sync_dir(str(tmp_path))
        # some fsync started at or after our call and ended before we returned
        covered.append(any(s >= called and e <= time.monotonic() for s, e in zip(starts, ends, strict=False)))

    threads = [threading.Thread(target=commit) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(covered) and len(covered) == 32
    assert len(starts) <= 4, f"{len(starts)} fsyncs for 32 concurrent commits"


def test_a_failed_fsync_reaches_its_caller_and_others_retry(tmp_path, monkeypatch):
    failures = iter([OSError(5, "Input/output error")])

    def flaky(path):
        exc = next(failures, None)
        if exc:
            raise exc

    monkeypatch.setattr(groupcommit, "fsync_dir", flaky)
    try:
        groupcommit.sync_dir(str(tmp_path))
        raise AssertionError("the error was swallowed")
    except OSError as exc:
        assert exc.errno == 5
    groupcommit.sync_dir(str(tmp_path))  # the next caller starts its own


def test_real_directory(tmp_path):
    (tmp_path / "qfX").write_text("x")
    groupcommit.sync_dir(str(tmp_path))
    assert os.path.exists(tmp_path / "qfX")
