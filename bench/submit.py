"""Submission time of `echo ... | sendmail -t` against `python3 -c pass`, measured in the same run.

Prints the medians and their ratio (target: at most 1.5).  The message is queued (-odq) in a
throw-away instance, so only submission is timed: argv, config, headers, durable queue files.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(os.environ.get("BENCH_RUNS", "30"))


def median_time(cmd: list[str], stdin: bytes = b"") -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import compileall

    import mta

    # an installed package has its bytecode compiled; a checkout run with PYTHONDONTWRITEBYTECODE may not
    compileall.compile_dir(os.path.dirname(mta.__file__), quiet=1)
    bindir = os.path.dirname(sys.executable)
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/mqueue")
        cf = f"{d}/sendmail.cf"
        with open(cf, "w") as fh:
            fh.write(f"Djbench.example\nO QueueDirectory={d}/mqueue\nO LogFile={d}/maillog\nO DeliveryMode=q\n")
        msg = b"To: someone@example.org\nSubject: bench\n\nhello\n"
        peer = median_time([sys.executable, "-c", "pass"])
        ours = median_time([f"{bindir}/sendmail", "-C", cf, "-t"], msg)
        queued = len([n for n in os.listdir(f"{d}/mqueue") if n.startswith("qf")])
    print(f"python3 -c pass      : {peer * 1000:7.1f} ms (median of {RUNS})")
    print(f"sendmail -t (queued) : {ours * 1000:7.1f} ms (median of {RUNS}, {queued} messages queued)")
    print(f"ratio                : {ours / peer:7.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
