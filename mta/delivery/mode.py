"""DeliveryMode, decided here once: what happens to an entry right after it is queued.

Sendmail's modes (op.me, -odX / O DeliveryMode): ``i`` interactive (deliver now and wait),
``b`` background (deliver now, do not wait), ``q`` queue only and ``d`` deferred (leave it for
the next queue run).  Every caller asks ``plan()`` and gets one of NOW, BACKGROUND or QUEUE; how
to run it is the caller's (the command line forks for BACKGROUND, the daemon hands it to its pool
without waiting).  Reads only the config, and the load average when given a priority.
"""

from __future__ import annotations

from mta.delivery import load

NOW = "now"  # deliver in this process and wait for the outcome
BACKGROUND = "background"  # deliver now, without waiting (a child, or the daemon's pool)
QUEUE = "queue"  # leave it queued for the next queue run

_QUEUED_MODES = ("q", "d")


def plan(cfg, *, verbose: bool = False, notice: bool = False, priority: int | None = None) -> str:
    """How to deliver a fresh entry: q and d queue; b goes to the background unless -v watches
    (Sendmail runs -v deliveries in the foreground); i, and notifications, now.  Given the
    entry's priority, a load average over QueueLA queues it (shouldqueue)."""
    mode = cfg["DeliveryMode"]
    if mode in _QUEUED_MODES:
        return QUEUE
    if priority is not None and load.should_queue(cfg, priority):
        return QUEUE
    if mode == "b" and not verbose and not notice:
        return BACKGROUND
    return NOW


def queue_only(cfg) -> bool:
    """Deferred and queue-only modes: nothing is delivered until a queue run."""
    return cfg["DeliveryMode"] in _QUEUED_MODES
