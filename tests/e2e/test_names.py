"""The suite's names as Debian installs them: runq, sendmail-mta, sendmail-msp dispatch on argv[0]."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import BIN


def _as(name: str, inst, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """Run our sendmail under another name, as Debian's alternatives and symlinks call it."""
    link = inst.root / name
    if not link.exists():
        os.symlink(BIN / "sendmail", link)
    return subprocess.run([str(link), "-C", str(inst.cf), *args], input=stdin, capture_output=True, timeout=60)


def test_runq_runs_the_queue(inst):
    assert inst.run("-Am", "-odq", "mtabob", stdin=b"Subject: for runq\n\nq\n").returncode == 0
    assert len(inst.qfs()) == 1
    r = _as("runq", inst)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"Recipient names" not in r.stdout
    assert b"Subject: for runq" in inst.mbox("mtabob") and not inst.qfs()


def test_sendmail_mta_and_msp_names_submit(inst):
    for name in ("sendmail-mta", "sendmail-msp"):
        r = _as(name, inst, "-odq", "mtabob", stdin=f"Subject: via {name}\n\nx\n".encode())
        assert r.returncode == 0, r.stdout + r.stderr
    assert len(inst.qfs()) == 2
