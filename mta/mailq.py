"""mailq: sendmail's queue listing (queue.c printqueue / print_single_queue), byte for byte,
and the same content as JSON (``--json``, ext).

Every queue directory of every queue group is listed, then one total.  Markers after the ID:
'*' locked (being delivered), '-' too young (MinQueueAge), 'X' the load average would queue it;
a quarantined entry (listed with -qQ) shows a "QUARANTINE: reason" line.  With MaxQueueRunSize
only that many entries per directory are printed ("only N printed"), as Sendmail does.
"""

from __future__ import annotations

import json
import time

from mta import errors, queue
from mta.delivery import load, schedule
from mta.queue import Entry

ALL = schedule.Selection()

HEADER = "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n"
HEADER_V = "-----Q-ID----- --Size-- -Priority- ---Q-Time--- --------Sender/Recipient--------\n"


def prtstr(text: str, limit: int) -> str:
    """sendmail's prtstr(): backslashes doubled, non-printables as \\ooo, cut at limit."""
    out = []
    for ch in text[:limit]:
        if ch == "\\":
            out.append("\\\\")
        elif " " <= ch <= "~" or ord(ch) >= 0xA0:
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):03o}")
    return "".join(out)


def _mark(qdir: str, e: Entry, min_age: int, now: float, cfg, la: int) -> str:
    if queue.is_locked(qdir, e.qid):
        return "*"
    if e.tries and min_age and now < e.last_try + min_age:
        return "-"
    if cfg is not None and load.should_queue(cfg, e.priority, la):
        return "X"
    return " "


def _entry(qdir: str, e: Entry, verbose: bool, mark: str) -> str:
    stamp = time.ctime(e.ctime)
    if verbose:
        out = (f"{e.qid:>13}{mark}{e.body_size:8d} {e.priority:10d}{'+' if 'w' in e.flags else ' '}"
               f"{stamp[4:16]} {prtstr(e.sender, 78)}")
    else:
        out = f"{e.qid:>13}{mark}{e.body_size:8d} {stamp[:16]} {prtstr(e.sender, 39)}"
    if e.quarantine:
        out += f"\n     QUARANTINE: {e.quarantine[:100 if verbose else 60]}"
    if e.status or e.bodytype:
        out += f"\n    {e.bodytype[:10]:>10}   ({e.status[:100 if verbose else 60]})"
    ctl = None
    for r in e.recipients:
        if verbose:
            if r.ctladdr != ctl and (r.ctladdr or ctl):
                out += f"\n\t\t\t\t\t\t(---{r.ctladdr[:64]}---)"
            ctl = r.ctladdr
            out += f"\n\t\t\t\t\t\t{prtstr(r.addr, 71)}"
            if r.status:
                out += f"\n\t\t ({r.status[:100]})"
        else:
            out += f"\n\t\t\t\t\t {prtstr(r.addr, 38)}"
    return out + "\n"


def listing(qdir: str, selection: schedule.Selection = ALL, *, verbose: bool = False,
            min_age: int = 0, cfg=None) -> tuple[str, int]:
    """The listing of one queue directory and its number of requests (with a cf: its
    QueueSortOrder, MaxQueueRunSize and load-average marks)."""
    limit = cfg["MaxQueueRunSize"] if cfg is not None else 0
    try:
        works, n = schedule.gather(cfg, qdir, selection, run=False, limit=limit)
    except errors.MTAError as exc:
        return f"{exc.text}\n", 0
    if not works:
        return f"{qdir} is empty\n", 0
    works = schedule.sort(works, cfg["QueueSortOrder"] if cfg is not None else "priority")
    now, la = time.time(), load.load_average()
    only = f", only {limit} printed" if limit and n > limit else ""
    text = f"\t\t{qdir} ({n} request{'s' if n != 1 else ''}{only})\n" + (HEADER_V if verbose else HEADER)
    text += "".join(_entry(qdir, w.entry, verbose, _mark(qdir, w.entry, min_age, now, cfg, la))
                    for w in works)
    return text, n


def show(qdirs: str | list[str], selection: schedule.Selection = ALL, *, verbose: bool = False,
         min_age: int = 0, cfg=None) -> str:
    """printqueue(): each directory's listing, then the total."""
    total, out = 0, ""
    for qdir in [qdirs] if isinstance(qdirs, str) else qdirs:
        text, n = listing(qdir, selection, verbose=verbose, min_age=min_age, cfg=cfg)
        out, total = out + text, total + n
    return out + f"\t\tTotal requests: {total}\n"


def as_json(queues: list[tuple[str, str]], selection: schedule.Selection = ALL) -> str:
    """[(label, qdir)] -> JSON: every queue with its entries, recipients and reasons."""
    # (each queue directory of a cf with queue groups is one item, labelled with its group)
    out = []
    for label, qdir in queues:
        try:
            entries = schedule.sorted_entries(qdir, selection)
        except errors.MTAError as exc:
            out.append({"queue": label, "path": qdir, "error": exc.text, "entries": []})
            continue
        out.append({"queue": label, "path": qdir, "entries": [{
            "id": e.qid, "size": e.body_size, "time": e.ctime, "priority": e.priority,
            "sender": e.sender, "status": e.status, "tries": e.tries, "last_try": e.last_try,
            "locked": queue.is_locked(qdir, e.qid), "warned": "w" in e.flags,
            "quarantine": e.quarantine,
            "recipients": [{"address": r.addr, "status": r.status} for r in e.recipients],
        } for e in entries]})
    return json.dumps(out, indent=2) + "\n"
