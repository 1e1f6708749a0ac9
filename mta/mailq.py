"""mailq: sendmail's queue listing (queue.c printqueue / print_single_queue), byte for byte,
and the same content as JSON (``--json``, ext).

Every queue directory of every queue group is listed, then one total.  Markers after the ID:
'*' locked (being delivered), '-' too young (MinQueueAge), 'X' the load average would queue it;
a quarantined entry (listed with -qQ) shows a "QUARANTINE: reason" line.  With MaxQueueRunSize
only that many entries per directory are printed ("only N printed"), as Sendmail does.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

from mta import errors, queue
from mta.delivery import load, schedule

ALL = schedule.Selection()

HEADER = "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n"
HEADER_V = "-----Q-ID----- --Size-- -Priority- ---Q-Time--- --------Sender/Recipient--------\n"


def prtstr(text: str, limit: int) -> str:
    """sendmail's prtstr(): backslashes doubled, non-printables as \\ooo, cut at limit."""
    text = text[:limit]
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif " " <= ch <= "~" or ord(ch) >= 0xA0:
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):03o}")
    return "".join(out)


class Marks:
    """The marks after an ID, besides '*' (locked): '?' lost (a -qL listing), '-' too young
    (MinQueueAge), 'X' the load average would queue it."""

    def __init__(self, min_age: int, cfg, lost: bool = False):
        self.min_age, self.cfg, self.now, self.lost = min_age, cfg, time.time(), lost
        self.la = load.load_average() if cfg is not None else 0

    def of(self, tries: int, last_try: int, priority: int) -> str:
        if self.lost:
            return "?"
        if tries and self.min_age and self.now < last_try + self.min_age:
            return "-"
        if self.cfg is not None and load.should_queue(self.cfg, priority, self.la):
            return "X"
        return " "


def entry_text(qid: str, qf: str, size: int, verbose: bool, locked: bool, marks: Marks) -> str | None:
    """One entry's lines, printed straight from its qf text as print_single_queue reads it (no
    Entry is built: mailq lists 100,000 of these).  None for a torn file or one whose numbers
    are not numbers (parse_entry refuses those too; a queue run moves them aside)."""
    lines = queue.unfold(qf)
    if not lines or lines[0][:1] != "V" or "." not in lines:
        return None
    numbers = {"T": 0, "K": 0, "N": 0, "P": 0}
    flags = bodytype = quarantine = status = sender = ""
    rcpts: list[tuple[str, str, str]] = []  # (address, its status, controlling address)
    pending, ctl = "", ""
    for line in lines[1:lines.index(".")]:
        kind, value = line[:1], line[1:]
        if kind in numbers:
            try:
                numbers[kind] = int(value or 0)
            except ValueError:
                return None
        elif kind == "S":
            sender = value
        elif kind == "M":
            if sender:
                pending = value
            else:
                status = value
        elif kind == "R":
            rcpts.append((value.partition(":")[2], pending, ctl))
            pending = ""
        elif kind == "C":
            ctl = value
        elif kind == "F":
            flags = value
        elif kind == "B":
            bodytype = value
        elif kind == "q":
            quarantine = value
    mark = "*" if locked else marks.of(numbers["N"], numbers["K"], numbers["P"])
    stamp = time.ctime(numbers["T"])
    if verbose:
        out = [f"{qid:>13}{mark}{size:8d} {numbers['P']:10d}{'+' if 'w' in flags else ' '}{stamp[4:16]} "
               f"{prtstr(sender, 78)}"]
    else:
        out = [f"{qid:>13}{mark}{size:8d} {stamp[:16]} {prtstr(sender, 39)}"]
    if quarantine:
        out.append(f"     QUARANTINE: {quarantine[:100 if verbose else 60]}")
    if status or bodytype:
        out.append(f"    {bodytype[:10]:>10}   ({status[:100 if verbose else 60]})")
    last_ctl = None
    for addr, why, ctladdr in rcpts:
        if not verbose:
            out.append(f"\t\t\t\t\t {prtstr(addr, 38)}")
            continue
        if ctladdr != last_ctl and (ctladdr or last_ctl):
            out.append(f"\t\t\t\t\t\t(---{ctladdr[:64]}---)")
        last_ctl = ctladdr
        out.append(f"\t\t\t\t\t\t{prtstr(addr, 71)}")
        if why:
            out.append(f"\t\t ({why[:100]})")
    return "\n".join(out) + "\n"


def listing(qdir: str, selection: schedule.Selection = ALL, *, verbose: bool = False,
            min_age: int = 0, cfg=None) -> tuple[int, Iterator[str]]:
    """The number of requests in one queue directory, and its listing piece by piece (with a
    cf: its QueueSortOrder, MaxQueueRunSize and load-average marks).

    Streams, as printqueue does: first only the sort keys of every entry, then each entry read
    again, printed and forgotten, so memory stays flat however long the queue is."""
    limit = cfg["MaxQueueRunSize"] if cfg is not None else 0
    order = cfg["QueueSortOrder"] if cfg is not None else "priority"
    try:
        qids, n = _sorted_ids(cfg, qdir, selection, order, limit)
    except errors.MTAError as exc:
        return 0, iter([f"{exc.text}\n"])
    if not qids:
        return 0, iter([f"{queue.print_name(qdir)} is empty\n"])
    only = f", only {limit} printed" if limit and n > limit else ""
    name = queue.print_name(qdir)
    head = f"\t\t{name} ({n} request{'s' if n != 1 else ''}{only})\n" + (HEADER_V if verbose else HEADER)
    return n, _entries(qdir, qids, head, selection, verbose, min_age, cfg)


def _entries(qdir: str, qids: list[str], head: str, selection, verbose: bool, min_age: int, cfg) -> Iterator[str]:
    yield head
    marks = Marks(min_age, cfg, selection.lost)
    letter = selection.letter
    for qid in qids:
        try:
            qf, size, locked = queue.read_listed(qdir, qid, letter)
        except FileNotFoundError:
            yield f"{qid:>13}  (job completed)\n"  # delivered since we counted it, as Sendmail says
            continue
        except OSError:
            continue
        text = entry_text(qid, qf, size, verbose, locked, marks)
        if text is not None:  # a bad file: the next queue run moves it aside
            yield text


def _sorted_ids(cfg, qdir: str, selection, order: str, limit: int) -> tuple[list[str], int]:
    """The IDs to list, in QueueSortOrder, and how many were selected.  Unless a selection or
    the host order needs whole entries, only the numbers at the top of each qf are read."""
    kind = schedule.SORT_ORDERS.get(order.strip()[:1].lower(), "priority")
    if selection.subset or kind in ("host", "modification"):
        works, n = schedule.gather(cfg, qdir, selection, run=False, limit=limit)
        return [w.entry.qid for w in schedule.sort(works, order)], n
    letter = selection.letter
    keys, n = [], 0
    for qid in queue.ids(qdir, letter):
        numbers = queue.read_numbers(qdir, qid, letter)
        if numbers is None:
            continue
        n += 1
        if not limit or len(keys) < limit:  # as gatherq: the first MaxQueueRunSize, then sorted
            keys.append((numbers[0] if kind == "priority" else numbers[1] if kind == "time" else 0, qid))
    if kind == "random":
        random.shuffle(keys)
    elif kind != "none":
        keys.sort() if kind == "filename" else keys.sort(key=lambda k: k[0])
    return [qid for _k, qid in keys], n


def show(qdirs: str | list[str], selection: schedule.Selection = ALL, *, verbose: bool = False,
         min_age: int = 0, cfg=None) -> Iterator[str]:
    """printqueue(): each directory's listing, then the total; piece by piece, for writelines."""
    total = 0
    for qdir in [qdirs] if isinstance(qdirs, str) else qdirs:
        n, text = listing(qdir, selection, verbose=verbose, min_age=min_age, cfg=cfg)
        yield from text
        total += n
    yield f"\t\tTotal requests: {total}\n"


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
