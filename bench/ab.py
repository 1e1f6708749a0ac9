"""Our daemon from two checkouts, back to back: is a change faster, or is the VM drifting?

    bench/ab.py OLD_TREE NEW_TREE    (e.g. a `git worktree add --detach` of the old commit)

Each tree's daemon runs in the Debian root on the bench's file system exactly as
bench/accept.py runs ours, under 20 sessions (BENCH_SESSIONS), alternating the trees for
BENCH_ROUNDS (3) rounds; it prints each round and the medians.  Needs what bench/accept.py needs.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import accept

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))


def main() -> None:
    if os.geteuid() != 0 or len(sys.argv) != 3:
        sys.exit("usage (as root): bench/ab.py OLD_TREE NEW_TREE")
    trees = [Path(t).resolve() for t in sys.argv[1:]]
    root = accept.debian_root()
    accept.spool_fs()
    got: dict[Path, list[tuple[float, float]]] = {t: [] for t in trees}
    with accept.network_namespace():
        for rnd in range(ROUNDS):
            for tree in trees if rnd % 2 == 0 else trees[::-1]:
                accept.HERE = tree  # what start_ours binds into the root as /opt/sendmail-py
                server = accept.start_ours(root)
                try:
                    rate, cpu, _commits = accept.load(server, SESSIONS, accept.MESSAGES, "root@localhost")
                finally:
                    server.stop()
                got[tree].append((rate, cpu))
                print(f"round {rnd + 1} {tree}: {rate:.0f} msg/s, {cpu:.2f} ms CPU/msg", flush=True)
    for tree, runs in got.items():
        print(f"{tree}: c{SESSIONS} median {statistics.median(r for r, _ in runs):.0f} msg/s, "
              f"{statistics.median(c for _, c in runs):.2f} ms CPU/msg")


if __name__ == "__main__":
    main()
