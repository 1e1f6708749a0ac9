"""kill -9 at random moments under load: the daemon, `sendmail` and queue runs, delivering large messages.

Measured, not assumed: every message acknowledged (250 after DATA, exit 0) is in the mailbox
afterwards exactly once, nothing is delivered twice, every message in the mailbox is whole (size
and end marker as sent), and no queue file was torn (nothing moved aside to Qf).  A few dozen
kills, bounded to well under two minutes.  SEED=n in the environment replays a run.
"""

from __future__ import annotations

import mailbox
import os
import random
import signal
import smtplib
import subprocess
import threading
import time

from tests.conftest import BIN, wait_port

BIG = 1_500_000


def _message(token: str, size: int, crlf: bool = False) -> bytes:
    line = b"x" * 75 + b"\n"
    body = line * (size // len(line)) + f"END {token}\n".encode()
    text = f"Subject: {token}\nX-Token: {token} {len(body)}\n\n".encode() + body
    return text.replace(b"\n", b"\r\n") if crlf else text


def _size(rng: random.Random) -> int:
    return BIG if rng.random() < 0.5 else rng.randint(100, 20_000)


def _kill_after(proc: subprocess.Popen, seconds: float) -> None:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


class Load:
    """What was sent and which of it was acknowledged."""

    def __init__(self):
        self.sent: list[str] = []
        self.acked: set[str] = set()
        self.lock = threading.Lock()

    def add(self, token: str, acked: bool) -> None:
        with self.lock:
            self.sent.append(token)
            if acked:
                self.acked.add(token)


def _command_line_kills(inst, rng: random.Random, load: Load, kills: int) -> None:
    """`sendmail -odi` delivering at once, killed during submission or delivery."""
    for n in range(kills):
        token = f"cmd-{n}"
        data = _message(token, _size(rng))
        proc = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-odi", "-oi", "mtaalice"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        _kill_after(proc, rng.uniform(0.05, 0.7))
        load.add(token, proc.returncode == 0)


def _queue_run_kills(inst, rng: random.Random, load: Load, messages: int, kills: int) -> None:
    """Entries queued with -odq (acknowledged by exit 0), then `sendmail -q` killed again and again."""
    for n in range(messages):
        token = f"q-{n}"
        r = inst.run("-odq", "-oi", "mtaalice", stdin=_message(token, _size(rng)))
        load.add(token, r.returncode == 0)
    for _ in range(kills):
        proc = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_after(proc, rng.uniform(0.05, 0.6))


def _smtp_client(inst, rng: random.Random, load: Load, name: str, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        token = f"smtp-{name}-{n}"
        n += 1
        data = _message(token, _size(rng), crlf=True)
        acked = False
        try:
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as c:
                c.sendmail("load@example.org", ["mtabob@test.example"], data)
                acked = True
        except (OSError, smtplib.SMTPException):
            time.sleep(0.05)
        load.add(token, acked)


def _daemon_kills(inst, rng: random.Random, load: Load, kills: int) -> None:
    """Two SMTP clients sending all the time; the daemon (delivering in the background, running
    the queue every second) killed -9 at random moments and started again."""
    stop = threading.Event()
    clients = [threading.Thread(target=_smtp_client, args=(inst, random.Random(rng.random()), load, c, stop))
               for c in "ab"]
    started = False
    try:
        for _ in range(kills):
            proc = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-bD", "-q1s"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert wait_port(inst.port, seconds=15), "the daemon did not start"
            if not started:
                for t in clients:
                    t.start()
                started = True
            _kill_after(proc, rng.uniform(0.3, 1.5))
    finally:
        stop.set()
        for t in clients:
            if t.is_alive():
                t.join(30)


def _delivered(path) -> list[tuple[str, bool]]:
    """(token, whole) for every message in an mbox, read as a mail reader reads it."""
    if not os.path.exists(path):
        return []
    out = []
    for msg in mailbox.mbox(str(path), create=False):
        token, _, size = (msg["X-Token"] or " ").partition(" ")
        body = msg.get_payload(decode=False)
        body = body.encode("latin-1") if isinstance(body, str) else b""
        whole = size.isdigit() and len(body) == int(size) and body.endswith(f"END {token}\n".encode())
        out.append((token, whole))
    return out


def test_kill_9_under_load_loses_nothing_duplicates_nothing_tears_nothing(inst):
    seed = int(os.environ.get("SEED", str(time.time_ns() % 100000)))
    rng = random.Random(seed)
    # ForwardPath: the test users are shared with other tests, which may give them a .forward;
    # QueueLA/RefuseLA: a busy test machine must not turn the load into queue-only mode
    inst.write_cf(f"O PidFile={inst.root}/sendmail.pid\nO DeliveryMode=b\nO ForwardPath={inst.root}/no-forward\n"
                  "O QueueLA=100000\nO RefuseLA=100000")
    load = Load()
    started = time.monotonic()
    _command_line_kills(inst, rng, load, kills=10)
    _queue_run_kills(inst, rng, load, messages=12, kills=10)
    _daemon_kills(inst, rng, load, kills=8)
    for _ in range(3):  # afterwards, one clean queue run (or a few) finishes everything that was queued
        r = inst.run("-q", timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        if not inst.qfs():
            break
    elapsed = time.monotonic() - started

    got = _delivered(inst.mail / "mtaalice") + _delivered(inst.mail / "mtabob")
    tokens = [t for t, _w in got]
    report = (f"seed={seed} elapsed={elapsed:.0f}s sent={len(load.sent)} acked={len(load.acked)} "
              f"delivered={len(got)} left={inst.qfs()}")
    assert all(whole for _t, whole in got), f"a torn message in a mailbox: {report}"
    assert sorted(t for t in set(tokens) if tokens.count(t) > 1) == [], f"delivered twice: {report}"
    assert sorted(load.acked - set(tokens)) == [], f"acknowledged, not delivered: {report}"
    assert set(tokens) <= set(load.sent), report
    assert not inst.qfs(), report
    assert not [n for n in os.listdir(inst.mqueue) if n.startswith("Qf")], f"a torn qf: {report}"
    assert len(load.acked) >= 15, f"too little load to mean anything: {report}"
    print(report)
