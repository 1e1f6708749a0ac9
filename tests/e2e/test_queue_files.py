"""Bad, torn and lonely queue files through the real `sendmail -q`, `mailq` and the daemon's runner."""

from __future__ import annotations

import os
import re

from tests.conftest import wait_for
from tests.e2e.test_smtpd import Daemon


def _queue_one(inst, user: str, subject: str) -> str:
    r = inst.run("-Am", "-odq", user, stdin=f"Subject: {subject}\n\nbody\n".encode())
    assert r.returncode == 0, r.stdout + r.stderr
    return re.search(rb"id ([0-9A-Za-z]{14})", (inst.mqueue / max(inst.qfs(), key=lambda n: os.stat(
        inst.mqueue / n).st_mtime_ns)).read_bytes()).group(1).decode()


def _spoil(inst, qids: list[str]) -> None:
    """One qf with a non-numeric T line, one cut in the middle, one whose df is gone."""
    qf = inst.mqueue / f"qf{qids[0]}"
    qf.write_bytes(qf.read_bytes().replace(b"\nT", b"\nTsoon", 1))
    qf = inst.mqueue / f"qf{qids[1]}"
    qf.write_bytes(qf.read_bytes()[:40])
    os.unlink(inst.mqueue / f"df{qids[2]}")


def test_bad_queue_files_never_stop_mailq_or_the_run(inst):
    qids = [_queue_one(inst, "mtaalice", f"s{n}") for n in range(4)]
    _spoil(inst, qids)
    r = inst.run("-bp")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.decode()  # the bad ones are skipped; the one without df is listed with -1, as Sendmail
    assert qids[3] in out and f"{qids[2]}       -1 " in out and "Total requests: 2" in out, out
    for _ in range(2):
        r = inst.run("-q")
        assert r.returncode == 0, r.stdout + r.stderr
    assert b"Subject: s3" in inst.mbox("mtaalice")
    names = sorted(os.listdir(inst.mqueue))
    assert [n for n in names if n.startswith(("qf", "Qf"))] == sorted(f"Qf{q}" for q in qids[:3])
    log = inst.log()
    for qid, why in zip(qids, ("bogus queue line", "incomplete queue file read", "data file missing"), strict=False):
        assert len(re.findall(rf"{qid}: Losing {inst.mqueue}/qf{qid}: {why}\n", log)) == 1, log


def test_daemon_runner_survives_a_bad_queue_file(inst):
    qids = [_queue_one(inst, "mtabob", f"d{n}") for n in range(4)]
    _spoil(inst, qids)
    d = Daemon(inst, "-q1s")
    try:
        assert wait_for(lambda: b"Subject: d3" in inst.mbox("mtabob"), 30), inst.log()
        # and it keeps running: a message queued later goes out on a later pass
        late = _queue_one(inst, "mtabob", "later")
        assert wait_for(lambda: b"Subject: later" in inst.mbox("mtabob"), 30), inst.log()
        assert wait_for(lambda: late not in " ".join(inst.qfs()), 10)  # removed just after the append
    finally:
        assert d.stop() == 0
    assert sorted(n for n in os.listdir(inst.mqueue) if n.startswith("Qf")) == sorted(f"Qf{q}" for q in qids[:3])
