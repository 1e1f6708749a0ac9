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


def test_daemon_named_and_titled_as_sendmail(inst):
    """Started as Debian starts it (sendmail-mta -bd), the daemon is what ps, pgrep and
    start-stop-daemon --name look for, and its pid file is Sendmail's two lines."""
    from tests.conftest import wait_for, wait_port

    pidfile = inst.root / "sendmail.pid"
    inst.write_cf(f"O PidFile={pidfile}\nO ProcessTitlePrefix=MTA\nO XyzzyOption=3")
    r = _as("sendmail-mta", inst, "-bd", "-q30m")
    assert r.returncode == 0, r.stdout + r.stderr
    assert wait_for(pidfile.exists) and wait_port(inst.port)
    pid, command = pidfile.read_text().splitlines()
    try:
        assert command == f"{inst.root}/sendmail-mta -C {inst.cf} -bd -q30m"
        ps = subprocess.run(["ps", "-o", "comm=,args=", "-p", pid], capture_output=True, text=True).stdout
        assert ps.split(None, 1) == ["sendmail-mta", "sendmail: MTA: accepting connections\n"]
        pgrep = subprocess.run(["pgrep", "-x", "sendmail-mta"], capture_output=True, text=True).stdout
        assert pid in pgrep.split()
        test = subprocess.run(["start-stop-daemon", "--stop", "--test", "--pidfile", str(pidfile),
                               "--name", "sendmail-mta"], capture_output=True, text=True)
        assert test.returncode == 0 and pid in test.stdout, test.stdout
    finally:
        os.kill(int(pid), 15)
    assert wait_for(lambda: not pidfile.exists())
    assert inst.log().count("option XyzzyOption is not implemented; ignored") == 1


def test_d0_1_prints_the_identity_then_does_the_work(inst):
    r = inst.run("-d0.1", "-bv", "mtabob")
    out = r.stdout.decode()
    assert r.returncode == 0 and out.startswith("Version 8.")
    assert "  (canonical domain name) $j = test.example\n" in out
    banner, sep, rest = out.partition("========================================================\n\n")
    assert sep and rest == "mtabob... deliverable: mailer local, user mtabob\n", rest
