"""`sendmail -t` and `mailq`, ours against Debian's sendmail 8.17, in one Debian root, one run.

Both read Debian's unmodified /etc/mail in the root of scripts/debian-root (bench/accept.py
unpacks it).  Ours runs as the package installs it: `python3 -IS` with the source tree on the
path (packaging/deb/bin/sendmail), its bytecode compiled first as an installed package's is.
Each command runs chrooted in fresh PID and mount namespaces, in a network namespace of its
own (nothing listens there); `true` through the same wrapper is measured too, the cost of
entering the root, the same for both.

- `python3 -IS -c pass`: the interpreter's start and exit alone, the floor of our front.
- `sendmail -t -odq`: queued only; and `sendmail -t` with submit.cf's own DeliveryMode
  (Debian's is interactive: it connects to the MTA at 127.0.0.1, finds none, and queues -
  a host whose MTA is down).  Wall time and CPU (user + system of every process waited for,
  from getrusage: the submitting process, not a background delivery it leaves), medians.
- `mailq -Ac` (the MSP queue, listed twice by Debian's wrapper) on 10,000 and 100,000 entries,
  and `sendmail -bp` (one listing) on 100,000: wall time (median) and peak RSS (the largest
  process, /usr/bin/time).

Needs root and scripts/debian-root.  Environment: BENCH_RUNS (20), BENCH_MAILQ_RUNS (3).
"""

from __future__ import annotations

import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import accept

HERE = accept.HERE
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
MAILQ_RUNS = int(os.environ.get("BENCH_MAILQ_RUNS", "3"))
NS = "smpy-bench-submit"
WRAPPER = """#!/usr/bin/python3 -IS
import sys

sys.path[:0] = ["/opt/sendmail-py"]
sys.path.append("/usr/lib/python3/dist-packages")
from mta.cli import sendmail

sendmail.main()
"""


def install_ours(root: Path) -> str:
    """/usr/local/lib/smpy/{sendmail,mailq} in the root: packaging/deb/bin/sendmail on our tree."""
    where = root / "usr" / "local" / "lib" / "smpy"
    where.mkdir(parents=True, exist_ok=True)
    for name in ("sendmail", "mailq"):
        (where / name).write_text(WRAPPER)
        (where / name).chmod(0o755)
    compileall.compile_dir(str(HERE / "mta"), quiet=1)
    return "/usr/local/lib/smpy"


def command(root: Path, script: str, binds: tuple[tuple[Path, str], ...] = ()) -> list[str]:
    return ["ip", "netns", "exec", NS, *accept.chroot_cmd(root, script, binds)]


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(argv: list[str], stdin: bytes = b"") -> tuple[float, float]:
    """Wall s and CPU s (user + system of the processes waited for) of one command."""
    cpu, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0, _children_cpu() - cpu


def medians(argv: list[str], stdin: bytes = b"", runs: int = RUNS) -> tuple[float, float]:
    got = [timed(argv, stdin) for _ in range(runs)]
    return statistics.median(w for w, _c in got), statistics.median(c for _w, c in got)


def submit_times(root: Path, runs: int = RUNS) -> dict[tuple[str, str], tuple[float, float]]:
    """(who, how) -> (wall s, CPU s), who in ours/debian/true/python, how in -odq/default."""
    bindir = install_ours(root)
    msg = b"To: root\nSubject: bench\n\n" + b"x" * 2000 + b"\n"
    progs = {"debian": "/usr/sbin/sendmail", "ours": f"{bindir}/sendmail"}
    out = {("true", ""): medians(command(root, "exec true"), runs=runs),
           ("python", ""): medians(command(root, "exec /usr/bin/python3 -IS -c pass"), runs=runs)}
    for how, flags in (("-odq", "-t -odq"), ("default", "-t")):
        for _ in range(2):  # alternate, so that neither always runs on a warmer cache
            for who, prog in progs.items():
                w, c = medians(command(root, f"exec {prog} {flags}"), msg, runs // 2)
                old = out.get((who, how))
                out[(who, how)] = (w, c) if old is None else ((old[0] + w) / 2, (old[1] + c) / 2)
    for spool in ("mqueue", "mqueue-client"):  # what the runs queued
        for name in os.listdir(root / "var" / "spool" / spool):
            if name[:2] in ("qf", "df", "xf", "tf"):
                os.unlink(root / "var" / "spool" / spool / name)
    return out


def _peak_rss(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", "/tmp/smpy-bench-rss", *argv],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0, int(Path("/tmp/smpy-bench-rss").read_text().split()[-1])


def mailq_times(root: Path, runs: int = MAILQ_RUNS) -> dict[tuple[str, str, int], tuple[float, int]]:
    """(who, how, entries) -> (wall s, peak RSS KB); how is 'mailq -Ac' or 'sendmail -bp'."""
    bindir = install_ours(root)
    progs = {"debian": ("/usr/bin/mailq", "/usr/sbin/sendmail-mta"), "ours": (f"{bindir}/mailq", f"{bindir}/sendmail")}
    out = {}
    for count, hows in ((10_000, ("mailq -Ac",)), (100_000, ("mailq -Ac", "sendmail -bp"))):
        qdir = accept.CACHE / f"bench-queue-{count}"
        accept.fill_queue(qdir, count)
        for how in hows:
            for who, (mailq, sendmail) in progs.items():
                script = (f"exec {mailq} -Ac -O QueueDirectory=/queue" if how == "mailq -Ac"
                          else f"exec {sendmail} -bp -Am -O QueueDirectory=/queue")
                got = [_peak_rss(command(root, script, ((qdir, "/queue"),))) for _ in range(runs)]
                out[(who, how, count)] = (statistics.median(w for w, _r in got), max(r for _w, r in got))
    return out


def rows(sub: dict, mq: dict) -> list[str]:
    """The lines of docs/performance.md's table for these measures."""
    lines = []
    for how, label in (("-odq", "`sendmail -t -odq`"), ("default", "`sendmail -t` (submit.cf's DeliveryMode)")):
        d, o = sub[("debian", how)], sub[("ours", how)]
        ratio = f"{o[0] / d[0]:.2f} / {o[1] / max(d[1], 1e-4):.2f}"
        lines.append(f"| {label} wall / CPU | {d[0] * 1000:.0f} / {d[1] * 1000:.0f} ms | "
                     f"{o[0] * 1000:.0f} / {o[1] * 1000:.0f} ms | | {ratio} | |")
    for (who, how, count), (wall, rss) in sorted(mq.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if who == "ours":
            d = mq[("debian", how, count)]
            lines.append(f"| `{how}`, {count:,} queued | {d[0]:.2f} s, {d[1] // 1024} MB | "
                         f"{wall:.2f} s, {rss // 1024} MB | | {wall / d[0]:.2f} | |")
    return lines


def measure(root: Path) -> list[str]:
    """Every measure here, in its own network namespace; the table's lines, after notes."""
    with accept.network_namespace(NS):
        sub = submit_times(root)
        mq = mailq_times(root)
    t, py = sub[("true", "")], sub[("python", "")]
    return [f"entering the root (true): {t[0] * 1000:.0f} ms wall, {t[1] * 1000:.0f} ms CPU (in every figure); "
            f"python3 -IS -c pass: {py[0] * 1000:.0f} ms wall, {py[1] * 1000:.0f} ms CPU (the floor of any "
            f"Python front); load average {os.getloadavg()[0]:.1f}", *rows(sub, mq)]


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: the commands run in namespaces and a Debian root")
    if not shutil.which("mmdebstrap"):
        sys.exit("mmdebstrap is missing: run scripts/install-bench-deps")
    print("\n".join(measure(accept.debian_root())))


if __name__ == "__main__":
    main()
