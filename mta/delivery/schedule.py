"""Queue runs: which entries, and when (``sendmail -q``, ``-qTIME``, the daemon's runs).

``Selection`` is -qI/-qR/-qS (substrings, '!' negates), shared with mailq; ``sorted_entries``
reads a queue directory in run order; ``run_queue`` tries each selected entry once through
``attempt.deliver`` (under its flock, so a locked entry is skipped, never sent twice).
"""

from __future__ import annotations

import time

from mta import errors, queue
from mta.context import Context
from mta.delivery import attempt
from mta.queue import Entry
from mta.record import record


@record(frozen=True)
class Selection:
    """-qI / -qR / -qS substrings ('!' negates), as sendmail's queue run and mailq filter."""

    ids: tuple[tuple[str, bool], ...] = ()
    recipients: tuple[tuple[str, bool], ...] = ()
    senders: tuple[tuple[str, bool], ...] = ()

    @staticmethod
    def _match(rules, values: list[str]) -> bool:
        for text, negate in rules:
            hit = any(text.lower() in v.lower() for v in values)
            if hit == negate:
                return False
        return True

    def matches(self, entry: Entry) -> bool:
        return (self._match(self.ids, [entry.qid])
                and self._match(self.recipients, [r.addr for r in entry.recipients])
                and self._match(self.senders, [entry.sender]))


def sorted_entries(qdir: str, selection: Selection) -> list[Entry]:
    entries = []
    for qid in queue.ids(qdir):
        try:
            entry = queue.read(qdir, qid)
        except errors.MTAError:
            continue
        if selection.matches(entry):
            entries.append(entry)
    entries.sort(key=lambda e: (e.priority, e.ctime, e.qid))
    return entries


def run_queue(ctx: Context, selection: Selection) -> int:
    """sendmail -q: try every selected entry once; returns 0 unless the queue is unreadable."""
    queue.sweep(ctx.qdir, ctx.log)
    entries = sorted_entries(ctx.qdir, selection)
    now = time.time()
    min_age = ctx.cfg["MinQueueAge"]
    for n, entry in enumerate(entries, 1):
        if entry.tries and min_age and now < entry.last_try + min_age:
            continue
        if ctx.verbose:
            path = queue.qf_path(ctx.qdir, entry.qid)
            ctx.verbose.write(f"\nRunning {path} (sequence {n} of {len(entries)})\n")
        attempt.deliver(ctx, entry.qid)
    return errors.EX_OK
