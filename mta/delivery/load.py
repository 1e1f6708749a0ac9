"""The load average and what Sendmail does with it (conf.c getla, shouldqueue,
refuseconnections; srvrsmtp.c DelayLA): QueueLA queues instead of delivering, RefuseLA refuses
SMTP connections, DelayLA sleeps.  ``la`` may be given (tests, one reading for many entries);
otherwise os.getloadavg() is read, rounded as Sendmail's getla() rounds it on Linux.
"""

from __future__ import annotations

import os


def load_average() -> int:
    """The 1-minute load average rounded to an integer, as Sendmail's getla() on Linux."""
    try:
        return int(os.getloadavg()[0] + 0.5)
    except OSError:
        return 0


def should_queue(cfg, priority: int, la: int | None = None) -> bool:
    """shouldqueue(): above QueueLA, queue a message whose priority is over
    QueueFactor / (LA - QueueLA + 1)."""
    la = load_average() if la is None else la
    if la < cfg["QueueLA"]:
        return False
    return priority > cfg["QueueFactor"] // (la - cfg["QueueLA"] + 1)


def refuse_connections(cfg, la: int | None = None) -> bool:
    """RefuseLA: the daemon refuses new SMTP connections at or above it (0: never)."""
    la = load_average() if la is None else la
    return cfg["RefuseLA"] > 0 and la >= cfg["RefuseLA"]


def delay_seconds(cfg, la: int | None = None) -> int:
    """DelayLA: the daemon sleeps this long on most SMTP commands and before accepting (0: none)."""
    la = load_average() if la is None else la
    return 1 if cfg["DelayLA"] > 0 and la >= cfg["DelayLA"] else 0
