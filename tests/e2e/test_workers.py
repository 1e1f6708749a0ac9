"""The daemon's worker processes: every core used, limits kept for all workers together, signals
reaching every worker, a dead worker replaced without losing an acknowledged message."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.test_smtpd import Daemon, Raw, pipelined_burst, subjects


def children(pid: int) -> set[int]:
    """The live children of pid (not the killed ones it has not reaped yet)."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(name))
    return out


def workers_of(d: Daemon, n: int) -> set[int]:
    """The daemon's workers, once there are n: the set that was counted, not a second look."""
    seen = [set()]

    def counted() -> bool:
        seen[0] = children(d.proc.pid)
        return len(seen[0]) == n

    assert wait_for(counted), seen[0]
    return seen[0]


@contextlib.contextmanager
def no_free_descriptor(pid: int):
    """pid may open no more files (its soft limit just above its highest descriptor) in the with
    block; its soft limit is given back after it."""
    soft = Path(f"/proc/{pid}/limits").read_text().split("Max open files")[1].split()[0]
    room = max(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")) + 1
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={room}:"], check=True)
    try:
        yield
    finally:
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True)


def greeted(port: int) -> bool:
    c = Raw(port)
    c.close()
    return c.greeting.startswith("220 ")


def three_at_once(port: int) -> list[smtplib.SMTP]:
    """Three SMTP sessions open together, or none if one was refused (421)."""
    opened: list[smtplib.SMTP] = []
    try:
        for _ in range(3):
            opened.append(smtplib.SMTP("127.0.0.1", port, timeout=20))
        return opened
    except smtplib.SMTPConnectError:
        for c in opened:
            c.close()
        return []


def raw_three(port: int) -> list[Raw]:
    """Three raw connections open together, all greeted with 220, or none."""
    opened = [Raw(port) for _ in range(3)]
    if all(c.greeting.startswith("220 ") for c in opened):
        return opened
    for c in opened:
        with contextlib.suppress(OSError):  # a refused one may be gone already
            c.close()
    return []


def send(port: int, subject: str, rcpt: str = "mtabob@test.example") -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as c:
        c.ehlo("client.example")
        c.sendmail("a@example.test", [rcpt], f"Subject: {subject}\r\n\r\nbody\r\n")
    return subject


def test_connections_spread_over_workers_and_limits_are_global(inst, users):
    inst.write_cf("O DaemonWorkers=2\nO MaxDaemonChildren=3\nO DeliveryMode=queueonly")
    d = Daemon(inst)
    try:
        workers_of(d, 2)
        open_: list[Raw] = []  # once the start-up probe's close is counted, three are greeted
        assert wait_for(lambda: open_.extend(raw_three(inst.port)) or len(open_) == 3, 10)
        refused = Raw(inst.port)  # the fourth, whichever worker would have served it
        assert refused.greeting.startswith("421 4.3.2") and "Too many concurrent" in refused.greeting
        refused.close()
        open_.pop().close()  # a closed connection frees its place at once
        assert wait_for(lambda: greeted(inst.port), 10)
        for c in open_:
            c.close()
        # three open at once, all greeted: no connection was counted then, so the least busy
        # worker takes the first, the other the second (one after another, both could be idle)
        sessions: list[smtplib.SMTP] = []
        assert wait_for(lambda: sessions.extend(three_at_once(inst.port)) or len(sessions) == 3, 10)
        for i, c in enumerate(sessions):
            c.sendmail("a@example.test", ["mtabob@test.example"], f"Subject: spread {i}\r\n\r\nbody\r\n")
            c.quit()
        pids = set(re.findall(r"\[(\d+)\]: \w+: from=<a@example.test>", inst.log()))
        assert len(pids) == 2, inst.log()  # both workers took connections
    finally:
        d.stop()


def test_sighup_reaches_every_worker_and_keeps_connections(inst, users):
    inst.write_cf("O DaemonWorkers=2")
    d = Daemon(inst)
    try:
        workers_of(d, 2)
        ready = [Raw(inst.port) for _ in range(2)]  # one on each worker: both loops are up
        assert all(r.greeting.startswith("220 ") for r in ready)
        for r in ready:
            r.close()
        c = smtplib.SMTP("127.0.0.1", inst.port, timeout=20)
        c.ehlo("x.example")
        c.mail("a@example.test")
        c.rcpt("mtaalice@test.example")
        inst.write_cf("O DaemonWorkers=2\nO SmtpGreetingMessage=$j reloaded greeting")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: inst.log().count("configuration re-read") >= 3)  # the parent and both workers
        assert c.data(b"Subject: across the reload\r\n\r\nx\r\n")[0] == 250  # the session under way goes on
        c.quit()
        greetings = [Raw(inst.port) for _ in range(6)]
        assert all("reloaded greeting" in g.greeting for g in greetings), [g.greeting for g in greetings]
        for g in greetings:
            g.close()
        assert workers_of(d, 2)  # reloaded in place, not restarted
    finally:
        d.stop()


def test_a_killed_worker_is_replaced_and_nothing_acknowledged_is_lost(inst, users):
    inst.write_cf("O DaemonWorkers=2\nO DeliveryMode=queueonly")
    d = Daemon(inst)
    try:
        before = workers_of(d, 2)
        f = pipelined_burst(inst.port, 60)
        acked: set[str] = set()
        try:
            while True:
                line = f.readline()
                if not line:
                    break
                if line.startswith(b"250 2.0.0"):
                    acked.add(line.split()[2].decode())
                    if len(acked) == 20:  # kill whichever worker serves us, mid-burst
                        for pid in children(d.proc.pid):
                            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        assert 20 <= len(acked) < 60
        after = workers_of(d, 2)
        assert not after & before  # both replaced
        assert "died (signal 9); starting another" in inst.log()
        queued = {n[2:] for n in os.listdir(inst.mqueue) if n.startswith("qf")}
        assert acked <= queued, acked - queued
        send(inst.port, "after the replacement")
        assert inst.run("-q").returncode == 0
        assert len(subjects(inst, "mtabob")) >= len(acked) + 1
    finally:
        d.stop()


def test_a_worker_that_keeps_dying_is_restarted_after_growing_pauses(inst):
    """A worker killed as soon as it starts (as by a broken install or an OOM killer) is replaced at
    once the first time, then after 1 s, then 2 s: not in a loop of forks and log lines.  The
    parent never sleeps meanwhile: a client it has no worker for gets a 421 at once."""
    inst.write_cf("O DaemonWorkers=1")
    d = Daemon(inst)
    try:
        seen: list[tuple[float, int]] = []  # (when it appeared, pid)
        end = time.monotonic() + 4.5
        while time.monotonic() < end:
            for pid in children(d.proc.pid) - {p for _t, p in seen}:
                seen.append((time.monotonic(), pid))
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        starts = [t for t, _p in seen]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert len(seen) == 4 and gaps[0] < 0.5 and 0.8 < gaps[1] < 1.6 and 1.8 < gaps[2] < 2.6, gaps
        log = inst.log()
        assert "died (signal 9); starting another\n" in log
        assert "died (signal 9); starting another in 1 s" in log and "starting another in 2 s" in log
        t0 = time.monotonic()
        c = Raw(inst.port)  # the fourth worker is dead and the fifth due in 4 s
        assert c.greeting.startswith("421 4.3.2 ") and time.monotonic() - t0 < 0.5, c.greeting
        c.close()
        assert wait_for(lambda: len(children(d.proc.pid)) == 1, 8) and greeted(inst.port)
    finally:
        d.stop()


def test_a_connection_a_worker_has_no_room_for_is_not_counted_forever(inst):
    """A worker out of descriptors receives the parent's message without the socket (the kernel
    drops it: MSG_CTRUNC).  That connection is gone; the parent must not go on counting it, or
    MaxDaemonChildren fills with ghosts and the daemon refuses everybody."""
    inst.write_cf("O DaemonWorkers=1\nO MaxDaemonChildren=3")
    d = Daemon(inst)
    try:
        (worker,) = workers_of(d, 1)
        assert wait_for(lambda: "did not issue MAIL" in inst.log())  # the readiness probe has gone
        held = Raw(inst.port)  # one served
        with no_free_descriptor(worker):
            for _ in range(2):  # no room for these two: their sockets are dropped on the way
                s = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
                assert s.recv(100) == b""
                s.close()

        def two_more() -> bool:  # 3 with held: the limit, not past it
            more = [Raw(inst.port), Raw(inst.port)]
            for c in more:
                c.close()
            return all(c.greeting.startswith("220 ") for c in more)

        assert wait_for(two_more, 5)
        held.close()
    finally:
        d.stop()


def test_a_parent_out_of_descriptors_pauses_instead_of_spinning(inst):
    """accept() failing with EMFILE leaves the connection waiting, so the listener stays readable:
    the parent must stop listening for a moment (as Sendmail's getrequests does), not call
    accept() again and again at full CPU; once it has descriptors again the clients are served.
    Two listeners with a client each: the pause ends while descriptors still lack, and both are
    found readable at once."""
    inst.write_cf(f"O DaemonWorkers=1\nO DaemonPortOptions=Port={inst.port + 1},Addr=127.0.0.1,Name=MSA")
    d = Daemon(inst)
    try:
        workers_of(d, 1)
        parent = d.proc.pid
        with no_free_descriptor(parent):
            waiting = [socket.create_connection(("127.0.0.1", port), timeout=20) for port in (inst.port, inst.port + 1)]
            time.sleep(0.3)
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                fields = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks

            before, t0 = cpu(), time.monotonic()
            time.sleep(2.5)  # past the first pause: both listeners are tried again
            busy = (cpu() - before) / (time.monotonic() - t0)
        assert busy < 0.2, f"the parent used {busy:.0%} of a CPU while out of descriptors"
        assert d.proc.poll() is None
        for c in waiting:  # (their "accept:" lines: no descriptor to open a LogFile with)
            assert c.recv(200).startswith(b"220 ")
            c.close()
    finally:
        d.stop()


def test_a_client_no_worker_can_take_gets_a_421_not_a_silent_close(inst):
    """A worker that has stopped reading (stuck, or stopped) fills its control socket; the parent's
    hand-off then fails.  The client must be told 421, as when there is no worker at all, not
    have its connection closed without a word."""
    inst.write_cf("O DaemonWorkers=1")
    d = Daemon(inst)
    opened: list[socket.socket] = []
    first: bytes | None = None  # what the first client answered at once got: b"" is a silent close
    try:
        (worker,) = workers_of(d, 1)
        assert wait_for(lambda: "did not issue MAIL" in inst.log())  # the readiness probe has gone
        os.kill(worker, signal.SIGSTOP)
        try:
            while first is None and len(opened) < 1000:  # about 300 fill a control socket here
                batch = [socket.create_connection(("127.0.0.1", inst.port), timeout=10) for _ in range(50)]
                opened += batch
                poll = select.poll()
                for c in batch:
                    poll.register(c, select.POLLIN)
                ready = {fd for fd, _ev in poll.poll(300)}
                answered = [c for c in batch if c.fileno() in ready]
                if answered:
                    first = answered[0].recv(200)
        finally:
            os.kill(worker, signal.SIGCONT)
            for c in opened:
                c.close()
        assert first is not None and first.startswith(b"421 4.3.2 test.example Service not available"), \
            (len(opened), first)
        assert "cannot hand a connection to worker" in inst.log()
        assert wait_for(lambda: greeted(inst.port))
    finally:
        d.stop()


def test_a_fork_that_fails_is_tried_again_and_the_daemon_lives(inst):
    """fork() can fail for a while (EAGAIN: a process limit, a cgroup's pids.max).  The parent
    must log it and try again later, not die with every connection it was keeping."""
    group = Path(f"/sys/fs/cgroup/pids/smpy-test-{inst.port}")
    if not Path("/sys/fs/cgroup/pids/cgroup.procs").exists() or os.geteuid() != 0:
        pytest.skip("needs root and the pids cgroup controller (v1)")
    inst.write_cf("O DaemonWorkers=1")
    group.mkdir()
    d = Daemon(inst)
    try:
        (worker,) = workers_of(d, 1)
        (group / "cgroup.procs").write_text(str(d.proc.pid))  # the parent alone: it may not fork
        (group / "pids.max").write_text("1")
        os.kill(worker, signal.SIGKILL)
        said = "cannot start a worker: Resource temporarily unavailable"
        assert wait_for(lambda: said in inst.log(), 10), inst.log()[-1500:]
        time.sleep(0.5)
        assert d.proc.poll() is None
        c = Raw(inst.port)  # no worker: told so, at once
        assert c.greeting.startswith("421 4.3.2 "), c.greeting
        c.close()
        (group / "pids.max").write_text("max")
        assert wait_for(lambda: greeted(inst.port), 10)
    finally:
        with contextlib.suppress(OSError):
            Path("/sys/fs/cgroup/pids/cgroup.procs").write_text(str(d.proc.pid))
        d.stop()
        group.rmdir()


def test_sigterm_drains_every_worker(inst, users):
    inst.write_cf(f"O DaemonWorkers=2\nO PidFile={inst.root}/sendmail.pid")
    d = Daemon(inst)
    try:
        workers = workers_of(d, 2)
        clients = []
        for _ in range(4):  # spread over both workers
            c = smtplib.SMTP("127.0.0.1", inst.port, timeout=20)
            c.ehlo("x.example")
            c.mail("a@example.test")
            c.rcpt("mtaalice@test.example")
            clients.append(c)
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        for i, c in enumerate(clients):
            assert c.data(f"Subject: drained {i}\r\n\r\nx\r\n".encode())[0] == 250
            c.close()
        assert d.proc.wait(30) == 0
        assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)
        assert not (inst.root / "sendmail.pid").exists()
        assert "stopping daemon, reason=signal" in inst.log()
    finally:
        d.stop(signal.SIGKILL)


def test_sigterm_does_not_wait_for_a_delivery_that_hangs(inst):
    """A delivery that never ends (a program that sleeps) holds the stop only a few seconds past
    the sessions; the message stays queued for the next run."""
    with open(inst.etc / "aliases", "a") as fh:
        fh.write('hang: "|/bin/sleep 45"\n')
    assert inst.run(prog="newaliases").returncode == 0
    inst.write_cf("O DaemonWorkers=1")
    d = Daemon(inst)
    try:
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as c:
            c.sendmail("a@example.test", ["hang@test.example"], b"Subject: hangs\r\n\r\nx\r\n")
        assert wait_for(lambda: "/bin/sleep 45" in "".join(_cmdlines(d.proc.pid)), 10)
        started = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(40) == 0
        assert time.monotonic() - started < 30
        assert len(inst.qfs()) == 1 and "Traceback" not in inst.log()
    finally:
        d.stop(signal.SIGKILL)


def _cmdlines(pid: int) -> list[str]:
    """The command lines of pid's descendants."""
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            todo.append(child)
            with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as fh:
                out.append(fh.read().replace(b"\0", b" ").decode())
    return out
