"""Where the daemon's time goes: py-spy samples one worker under a 20-session smtp-source load and
the samples are summed by stage (parse, policy and maps, routing, queue write, fsync, logging, the
event loop).  Two views: the samples holding the GIL (what costs CPU in Python, which the worker's
CPU per message is divided by) and all busy samples (also the threads waiting in fsync).

Writes docs/performance-flame.svg (the flame graph) and prints the table docs/performance.md
shows.  As root its spool is on bench/accept.py's journaled file system.  Needs py-spy (pip)
and smtp-source (scripts/install-bench-deps).
Environment: BENCH_MESSAGES (6000).
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "bench"))
import accept  # noqa: E402 - bench/accept.py: the spool's file system

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "6000"))
BIN = Path(sys.executable).parent

# (stage, what marks a sample as that stage: a function or module in its stack), first match wins
STAGES = [
    ("fsync", ("fsync_dir", "posix.fsync", "_write_file", "mta/writeback.py")),
    ("queue write", ("mta/queue.py", "mta/submit.py", "mta/message.py")),
    ("logging", ("mta/log.py",)),
    ("routing and aliases", ("mta/router.py", "mta/aliases.py")),
    ("policy and maps", ("mta/policy.py", "mta/access.py", "mta/maps.py", "mta/bdb.py", "mta/smtp/answer.py")),
    ("SMTP parse and replies", ("mta/smtp/session.py", "mta/smtp/wire.py", "mta/address.py")),
    ("event loop and connection", ("asyncio/", "selectors.py", "mta/smtpd.py", "mta/connection.py")),
    ("thread hand-offs", ("concurrent/futures", "threading.py", "mta/offload.py")),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_of(parent: int) -> int:
    for _ in range(100):
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    stat = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == parent:
                    return int(name)
        time.sleep(0.1)
    sys.exit("no worker process")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def stage_of(stack: str) -> str:
    for stage, marks in STAGES:
        if any(m in stack for m in marks):
            return stage
    return "other"


def main() -> None:
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not os.path.exists(spy) or not shutil.which("smtp-source"):
        sys.exit("needs py-spy (pip install py-spy) and smtp-source (scripts/install-bench-deps)")
    port = free_port()
    # as root, on the bench's journaled file system (bench/accept.py spool_fs explains why)
    with tempfile.TemporaryDirectory(dir=accept.spool_fs() if os.geteuid() == 0 else None) as tmp:
        t = Path(tmp)
        for sub in ("mqueue", "mail"):
            (t / sub).mkdir()
        (t / "aliases").write_text("postmaster: root\n")
        (t / "access").write_text("Connect:127.0.0.1 RELAY\nFrom:spammer.example REJECT\nTo:blocked.example REJECT\n")
        cf = t / "sendmail.cf"
        cf.write_text(f"Djbench.example.test\nCwlocalhost bench.example.test\nO QueueDirectory={t}/mqueue\n"
                      f"O MailSpoolDirectory={t}/mail\nO LogFile={t}/maillog\nO AliasFile={t}/aliases\n"
                      f"O DeliveryMode=queueonly\nO DaemonWorkers=1\n"
                      f"O DaemonPortOptions=Port={port},Addr=127.0.0.1,Name=MTA\n"
                      f"Kaccess hash -T<TMPF> -o {t}/access\n")
        subprocess.run([BIN / "newaliases", "-C", cf], check=True, capture_output=True)
        with open(t / "access", "rb") as src:
            subprocess.run([BIN / "makemap", "hash", t / "access"], stdin=src, check=True)
        daemon = subprocess.Popen([BIN / "sendmail", "-C", cf, "-bD"])
        try:
            worker = worker_of(daemon.pid)
            gil, busy, svg = t / "gil.txt", t / "busy.txt", HERE / "docs" / "performance-flame.svg"
            spies = [subprocess.Popen([spy, "record", "-p", str(worker), "-r", "200", "-f", fmt, "-o", str(out),
                                       "--nonblocking", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for fmt, out, extra in (("raw", gil, ["--gil"]), ("raw", busy, []),
                                             ("flamegraph", svg, ["--gil"]))]
            time.sleep(1)
            cpu0, t0 = cpu_seconds(worker), time.perf_counter()
            subprocess.run(["smtp-source", "-d", "-s", "20", "-m", str(MESSAGES), "-l", "2000",
                            "-f", "sender@bench.example.test", "-t", "root@localhost", "-M", "client.example",
                            f"127.0.0.1:{port}"], check=True)
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds(worker) - cpu0
            for s in spies:
                s.send_signal(signal.SIGINT)
                s.wait(60)
        finally:
            daemon.terminate()
            daemon.wait(60)
        on_cpu, waiting = stages(gil), stages(busy)
    per_msg = cpu / MESSAGES * 1000
    print(f"{MESSAGES} messages, 20 sessions: {MESSAGES / elapsed:.0f} msg/s, worker CPU {per_msg:.2f} ms per message")
    total, busy_total = sum(on_cpu.values()), sum(waiting.values())
    print("\n| stage | CPU ms per message | share of the CPU (GIL held) | share of busy time (GIL or not) |\n"
          "|---|---|---|---|")
    for stage, n in sorted(waiting.items(), key=lambda kv: -on_cpu.get(kv[0], 0)):
        cpu_n = on_cpu.get(stage, 0)
        print(f"| {stage} | {per_msg * cpu_n / total:.2f} | {cpu_n / total * 100:.0f}% | {n / busy_total * 100:.0f}% |")


def stages(raw: Path) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        out[stage_of(stack)] += int(count)
    return out


if __name__ == "__main__":
    main()
