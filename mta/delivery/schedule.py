"""Queue runs: which entries, and when (``sendmail -q``, ``-qTIME``, ``-qp``, the daemon's runs).

As Sendmail's queue.c (gatherq, sortq, run_work_group, runner_work):
  * ``gather`` reads a queue directory in directory order, keeps what the Selection (-qI/-qR/-qS,
    -qQ, -qL) picks, drops entries that are too young (MinQueueAge, MaxQueueAge; not for a -qX subset)
    or that the load average queues, and stops at MaxQueueRunSize (a group's Jobs) entries.
  * ``sort`` orders them by QueueSortOrder: priority, host, filename, time, random,
    modification, none.
  * ``run_queue`` runs every queue group (or the -qG one): no run at all while the load
    average is above QueueLA for the RecipientFactor priority; a group with F=f and Runners=N
    (default MaxRunnersPerQueue, at most MaxQueueChildren) forks N runners that take every Nth
    entry.  Each entry is delivered by ``attempt.deliver`` under its flock, so a locked entry is
    skipped and no message is ever sent twice.
  * Every run ends with one summary (log, and the terminal with -v or on a tty), a live count on
    a terminal during -v runs, and the MetricsFile (ext) when one is set.
"""

from __future__ import annotations

import os
import sys
import time

from mta import config, errors, message, qf, qgroups, queue, queuesweep
from mta.context import Context
from mta.delivery import attempt, load
from mta.qf import Entry
from mta.record import factory, record

SORT_ORDERS = {"p": "priority", "h": "host", "f": "filename", "t": "time", "r": "random",
               "m": "modification", "n": "none"}


@record(frozen=True)
class Selection:
    """-qI / -qR / -qS / -qQ substrings ('!' negates; one letter or'ed, letters and'ed), as
    sendmail's queue run and mailq filter; ``quarantined`` (-qQ) works on hf entries only,
    ``lost`` (-qL) on Qf entries only, and ``group`` (-qG) on one queue group."""

    ids: tuple[tuple[str, bool], ...] = ()
    recipients: tuple[tuple[str, bool], ...] = ()
    senders: tuple[tuple[str, bool], ...] = ()
    reasons: tuple[tuple[str, bool], ...] = ()
    quarantined: bool = False
    group: str = ""
    lost: bool = False

    @property
    def letter(self) -> str:
        """The control files this selection works on: qf, hf (-qQ) or Qf (-qL)."""
        return "Q" if self.lost else "h" if self.quarantined else "q"

    @property
    def subset(self) -> bool:
        """A -q[!]X run: MinQueueAge and MaxQueueAge do not apply (op.me)."""
        return bool(self.ids or self.recipients or self.senders or self.reasons)

    @staticmethod
    def _match(rules, values: list[str]) -> bool:
        # gatherq: a value (one R line, the S line...) for which one rule holds (a match, or a
        # miss when negated) accepts the entry
        if not rules:
            return True
        return any((text.lower() in v.lower()) != negate for v in values for text, negate in rules)

    def matches(self, entry: Entry) -> bool:
        return (self._match(self.ids, [entry.qid])
                and self._match(self.recipients, [r.addr for r in entry.recipients])
                and self._match(self.senders, [entry.sender])
                and self._match(self.reasons, [entry.quarantine]))


@record
class Work:
    """One entry as a run sees it: where it is, and what gatherq notes about it."""

    entry: Entry
    qdir: str
    mtime: float = 0.0
    locked: bool = False
    too_young: bool = False
    ident: tuple = ()  # the qf as read (queue.Glance.ident): unchanged, delivery need not parse it again

    @property
    def host(self) -> str:
        """The first recipient's domain, reversed and lowercased (queue.c strrev), for host order."""
        for r in self.entry.recipients:
            if "@" in r.addr:
                return r.addr.rsplit("@", 1)[1].rstrip(">").lower()[::-1]
        return ""


@record
class Tally:
    """What a run did, message by message."""

    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    skipped: int = 0
    latencies: list[float] = factory(list)  # seconds from queueing to delivery, per delivered message

    def add(self, other: Tally) -> None:
        for name in ("delivered", "deferred", "bounced", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies

    @property
    def done(self) -> int:
        return self.delivered + self.deferred + self.bounced + self.skipped


# -- queue groups (mta.qgroups) ----------------------------------------------------------------

def _runners(cfg, group: config.QueueGroup) -> int:
    n = group.runners if group.runners is not None else cfg["MaxRunnersPerQueue"]
    return max(n, 0)


def _jobs(cfg, group: config.QueueGroup) -> int:
    return group.jobs if group.jobs is not None else cfg["MaxQueueRunSize"]


# -- gathering and sorting (gatherq, sortq) ----------------------------------------------------------

def _too_young(cfg, entry: Entry, now: float) -> bool:
    if not entry.tries:
        return False
    if cfg["MaxQueueAge"] > 0:  # the retry interval doubles with each attempt, up to MaxQueueAge
        return now - entry.last_try < min(entry.last_try - entry.ctime, cfg["MaxQueueAge"])
    age = now - entry.last_try
    return 0 <= age < cfg["MinQueueAge"]


def gather(cfg, qdir: str, selection: Selection, *, limit: int = 0, run: bool = True,
           la: int | None = None, seen: dict[str, queue.Glance] | None = None) -> tuple[list[Work], int]:
    """The entries of qdir a run (or, with run=False, a listing) works on, in directory order,
    at most limit (MaxQueueRunSize) of them, and how many selected entries there are (a run
    stops counting at the limit).  A run leaves out entries that are too young or that the
    load average queues; seen is what the run's sweep already read.  Raises OSFailure for an
    unreadable directory."""
    now = time.time()
    if run:
        la = load.load_average() if la is None else la
    works: list[Work] = []
    count = 0
    for qid in queue.ids(qdir, selection.letter):
        if run and limit and len(works) >= limit:
            break
        seen_qf = seen.get(qid) if seen and selection.letter == "q" else None  # the sweep reads qf files only
        work = _read(cfg, qdir, qid, selection, now, seen_qf, sizes=not run)
        if work is None:
            continue
        if run and not selection.subset and (work.too_young or load.should_queue(cfg, work.entry.priority, la)):
            continue
        count += 1
        if not limit or len(works) < limit:
            works.append(work)
    return works, count


def _read(cfg, qdir: str, qid: str, selection: Selection, now: float, g: queue.Glance | None,
          sizes: bool) -> Work | None:
    """One entry as gatherq reads it, from what the sweep saw or one open of its own; sizes:
    the data file's size too (a listing shows it)."""
    g = g or queue.glance(queue.qf_path(qdir, qid, selection.letter))
    if g is None:
        return None
    try:
        entry = qf.parse_entry(qid, message.from_bytes(g.data))
    except errors.MTAError:
        return None
    entry.qdir, entry.lost = qdir, selection.lost
    if sizes:
        entry.body_size = queue.data_size(qdir, qid)
    held = bool(entry.quarantine) != selection.quarantined and not selection.lost
    if held or not selection.matches(entry):
        return None
    young = cfg is not None and not selection.subset and _too_young(cfg, entry, now)
    return Work(entry, qdir, g.mtime, g.locked, young, g.ident)


def _host_order(works: list[Work]) -> list[Work]:
    """sortq's host order: by host, lock and priority; every entry of a host one of whose
    entries is locked counts as locked, and locked hosts go last."""
    works = sorted(works, key=lambda w: (w.host, not w.locked, w.entry.priority))
    locked_hosts = {w.host for w in works if w.locked}
    return sorted(works, key=lambda w: (w.host in locked_hosts, w.host, w.entry.priority))


def sort(works: list[Work], order: str) -> list[Work]:
    """QueueSortOrder (only its first letter counts, as in Sendmail); unknown: priority."""
    kind = SORT_ORDERS.get(order.strip()[:1].lower(), "priority")
    if kind == "host":
        return _host_order(works)
    if kind == "random":
        import random  # here, as json below: mailq imports this module, and each costs its start

        works = list(works)
        random.shuffle(works)
        return works
    keys = {"priority": lambda w: w.entry.priority, "time": lambda w: w.entry.ctime,
            "filename": lambda w: w.entry.qid, "modification": lambda w: w.mtime}
    return sorted(works, key=keys[kind]) if kind in keys else list(works)


def sorted_works(qdir: str, selection: Selection, cfg=None) -> list[Work]:
    """Every selected entry of qdir in QueueSortOrder (priority without a cf)."""
    works, _n = gather(cfg, qdir, selection, run=False)
    return sort(works, cfg["QueueSortOrder"] if cfg else "priority")


# -- running --------------------------------------------------------------------------------------

ALL = Selection()


def run_queue(ctx: Context, selection: Selection = ALL, *, persistent: bool = False,
              periodic: bool = False) -> int:
    """sendmail -q: one run over every queue group (or the -qG one); returns 0 unless the
    queue is unreadable or the group unknown.  A periodic run (-qTIME, the daemon's) leaves out
    a group with its own Interval until that much time has passed since the group last ran."""
    started = time.monotonic()
    cfg = ctx.cfg
    if not persistent and load.should_queue(cfg, cfg["RecipientFactor"]):
        _say(ctx, "Skipping queue run -- load average too high")
        ctx.log.line("runqueue: Skipping queue run -- load average too high")
        return errors.EX_OK
    chosen = [g for g in qgroups.groups(cfg) if not selection.group or g.name == selection.group]
    if not chosen:
        print(f"Queue group {selection.group} unknown", flush=True)
        return errors.EX_USAGE
    tally = Tally()
    for group in chosen:
        if _runners(cfg, group) == 0 and not selection.group:
            continue  # Runners=0: never run, except when named with -qG
        if periodic and group.interval and not _due(group):
            continue
        tally.add(run_group(ctx, group, selection))
    from mta.mailers import esmtp

    esmtp.close_cache()  # QUIT cached sessions; the next run asks DNS and hosts afresh
    summarize(ctx, tally, time.monotonic() - started)
    return errors.EX_OK


def _due(group: config.QueueGroup) -> bool:
    """Has the group's Interval passed since its last periodic run?  The time is the mtime of
    .lastrun in its first directory (runs are separate processes; mailq and runs ignore it)."""
    stamp = os.path.join(qgroups.directories(group)[0], ".lastrun")
    try:
        if time.time() - os.stat(stamp).st_mtime < group.interval:
            return False
    except OSError:
        pass
    try:
        with open(stamp, "a"):
            os.utime(stamp)
    except OSError:
        pass
    return True


def run_group(ctx: Context, group: config.QueueGroup, selection: Selection) -> Tally:
    """Gather and sort a group's directories, then work through them with its runners."""
    cfg = ctx.cfg
    jobs = _jobs(cfg, group)
    works: list[Work] = []
    for qdir in qgroups.directories(group):
        seen = queuesweep.sweep(qdir, ctx.log)  # bad qf aside to Qf, old orphans removed (durable)
        try:
            found, _n = gather(cfg, qdir, selection, limit=max(jobs - len(works), 0) if jobs else 0, seen=seen)
        except errors.MTAError as exc:
            ctx.log.line(f"gatherq: cannot open \"{qdir}\": {exc.text}")
            continue
        works += found
        if jobs and len(works) >= jobs:
            ctx.log.line(f"WorkList for {qdir} maxed out at {jobs}")
            break
    works = sort(works, cfg["QueueSortOrder"])
    if jobs:
        works = works[:jobs]
    runners = min(max(_runners(cfg, group), 1), len(works) or 1)
    if cfg["MaxQueueChildren"] > 0:
        runners = min(runners, cfg["MaxQueueChildren"])
    if runners > 1 and "f" not in group.flags:
        ctx.log.line(f"Warning: Q={group.name}: R={runners}: multiple queue runners specified but flag 'f' is not set")
        runners = 1
    if runners > 1 and not ctx.verbose:
        return _fork_runners(ctx, group, works, runners, selection)
    return work_through(ctx, works, selection, start=0, step=1)


def _fork_runners(ctx: Context, group: config.QueueGroup, works: list[Work], runners: int,
                  selection: Selection) -> Tally:
    """N children, each taking every Nth entry (runner_work's skip); counts come back on a pipe."""
    import json

    children = []
    for i in range(runners):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # a runner: deliver its share, report, and leave without cleanup
            os.close(rfd)
            code = 0
            try:
                nice = group.nice if group.nice is not None else ctx.cfg["NiceQueueRun"]
                if nice > 0:
                    os.nice(nice)
                tally = work_through(ctx, works, selection, start=i, step=runners)
                from mta.mailers import esmtp

                esmtp.close_cache()
                os.write(wfd, json.dumps(_tally_dict(tally)).encode())
            except BaseException:  # noqa: BLE001 - a runner must never return into the parent's code
                code = 70
            finally:
                os._exit(code)
        os.close(wfd)
        children.append((pid, rfd))
    total = Tally()
    for pid, rfd in children:
        with os.fdopen(rfd, "rb") as fh:
            data = fh.read()
        os.waitpid(pid, 0)
        if data:
            total.add(Tally(**json.loads(data)))
    return total


def _tally_dict(t: Tally) -> dict:
    return {"delivered": t.delivered, "deferred": t.deferred, "bounced": t.bounced,
            "skipped": t.skipped, "latencies": t.latencies}


def work_through(ctx: Context, works: list[Work], selection: Selection, *, start: int, step: int) -> Tally:
    """runner_work: entries start, start+step, ... in order, each delivered under its lock."""
    tally = Tally()
    cfg = ctx.cfg
    progress = _Progress(ctx, len(works))
    order = SORT_ORDERS.get(cfg["QueueSortOrder"].strip()[:1].lower(), "priority")
    contexts: dict[str, Context] = {}  # one per queue directory: its maps and aliases opened once
    for n in range(start, len(works), step):
        work, seq = works[n], n + 1
        where = f"{queue.print_name(work.qdir)}/{work.entry.qid}"
        if load.should_queue(cfg, cfg["RecipientFactor"]):
            _say(ctx, "Aborting queue run: load average too high")
            ctx.log.line("runqueue: Aborting queue run: load average too high")
            break
        if load.should_queue(cfg, work.entry.priority):
            tally.skipped += 1
            if order == "priority":
                _say(ctx, f"\nSkipping {where} (sequence {seq} of {len(works)}) and flushing rest of queue")
                ctx.log.line(f"runqueue: Flushing queue from {where} (pri {work.entry.priority}, "
                             f"LA {load.load_average()}, {seq} of {len(works)})")
                break
            _say(ctx, f"\nSkipping {where} (sequence {seq} of {len(works)})")
            continue
        if work.locked:
            tally.skipped += 1
            continue
        progress.clear()
        if ctx.verbose:
            ctx.verbose.write(f"\nRunning {where} (sequence {seq} of {len(works)})\n")
        where_ctx = contexts.get(work.qdir)
        if where_ctx is None:
            where_ctx = contexts[work.qdir] = ctx.at(work.qdir)
            where_ctx.run_quarantined, where_ctx.run_lost = selection.quarantined, selection.lost
        _count(tally, work, attempt.deliver(where_ctx, work.entry.qid, known=(work.ident, work.entry)))
        progress.show(tally)
    progress.done()
    return tally


def _count(tally: Tally, work: Work, code: int) -> None:
    if code == errors.EX_OK:
        tally.delivered += 1
        tally.latencies.append(max(time.time() - work.entry.ctime, 0.0))
    elif code == errors.EX_TEMPFAIL:
        tally.deferred += 1
    else:
        tally.bounced += 1


class _Progress:
    """A live count on the terminal (stderr) during a -v run: ``[n/N] d delivered, ...``."""

    def __init__(self, ctx: Context, total: int):
        self.on = bool(ctx.verbose) and total > 1 and sys.stderr.isatty()
        self.total = total
        self.shown = False

    def show(self, t: Tally) -> None:
        if self.on:
            sys.stderr.write(f"\r\x1b[K[{t.done}/{self.total}] {t.delivered} delivered, "
                             f"{t.deferred} deferred, {t.bounced} bounced, {t.skipped} skipped")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False

    def done(self) -> None:
        self.clear()


def _say(ctx: Context, text: str) -> None:
    if ctx.verbose:
        ctx.verbose.write(text + "\n")


def summary_text(t: Tally, seconds: float) -> str:
    return (f"{t.delivered} delivered, {t.deferred} deferred, {t.bounced} bounced, "
            f"{t.skipped} skipped, {seconds:.1f} seconds")


def summarize(ctx: Context, tally: Tally, seconds: float) -> None:
    """One summary per run: always in the log; on the terminal with -v or when stdout is a tty
    (a cron job's `sendmail -q` stays silent, as Sendmail's)."""
    text = summary_text(tally, seconds)
    ctx.log.line(f"queue run: {ctx.qdir if len(qgroups.all_directories(ctx.cfg)) == 1 else 'all queues'}: {text}")
    if ctx.verbose or sys.stdout.isatty():
        print(f"Queue run: {text}", flush=True)
    if ctx.cfg["MetricsFile"]:
        from mta import metrics

        metrics.after_run(ctx.cfg, [d for _g, d in qgroups.all_directories(ctx.cfg)], tally, seconds)


# -- queue management: quarantine (hold), release, delete ---------------------------------------

def _selected(ctx: Context, selection: Selection):
    """(qdir, entry) for every selected entry of the chosen groups, in directory order."""
    for group in qgroups.groups(ctx.cfg):
        if selection.group and group.name != selection.group:
            continue
        for qdir in qgroups.directories(group):
            try:
                works, _n = gather(ctx.cfg, qdir, selection, run=False)
            except errors.MTAError as exc:
                print(exc.text, flush=True)
                continue
            if ctx.verbose:
                ctx.verbose.write(f"Processing {qdir}:\n" if works else f"{qdir}: no matches\n")
            for w in works:
                yield qdir, w.entry


def quarantine(ctx: Context, selection: Selection, reason: str | None) -> int:
    """sendmail -Qreason -q...: quarantine (hold) the selected entries; a bare -Q with -qQ
    releases them (quarantine_queue).  Locked entries are skipped and said so."""
    changed = 0
    for qdir, entry in _selected(ctx, selection):
        try:
            old = queue.set_quarantine(qdir, entry.qid, reason)
        except queue.Locked:
            print(f"Skipping {entry.qid}: Could not lock {queue.control_path(qdir, entry.qid)}", flush=True)
            continue
        except errors.MTAError:
            print(f"Skipping {entry.qid}", flush=True)
            continue
        if old is None:
            if reason:
                _say(ctx, f'{entry.qid}: Already quarantined with "{reason}"')
            continue
        changed += 1
        if reason is None:
            _say(ctx, f'{entry.qid}: Removed quarantine of "{old}"')
            ctx.log.line("unquarantine", entry.qid)
        else:
            _say(ctx, f'{entry.qid}: Quarantine changed from "{old}" to "{reason}"' if old
                 else f'{entry.qid}: Quarantined with "{reason}"')
            ctx.log.line(f"quarantine={reason}", entry.qid)
    _say(ctx, "No changes" if not changed else f"{changed} change{'s' if changed != 1 else ''}")
    return errors.EX_OK


def delete(ctx: Context, selection: Selection) -> int:
    """mailq --delete -q... (ext): remove the selected entries, each under its lock."""
    deleted = 0
    for qdir, entry in _selected(ctx, selection):
        try:
            queue.delete(qdir, entry.qid, selection.lost)
        except queue.Locked:
            print(f"Skipping {entry.qid}: locked", flush=True)
            continue
        except errors.MTAError as exc:
            print(f"Skipping {entry.qid}: {exc.text}", flush=True)
            continue
        deleted += 1
        print(f"{entry.qid}: deleted", flush=True)
        ctx.log.line(f"deleted from queue by {ctx.user.pw_name} (mailq --delete)", entry.qid)
    print(f"{deleted} entr{'ies' if deleted != 1 else 'y'} deleted", flush=True)
    return errors.EX_OK
