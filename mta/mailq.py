"""mailq: sendmail's queue listing (queue.c printqueue / print_single_queue), byte for byte,
and the same content as JSON (``--json``, ext).

Every queue directory of every queue group is listed, then one total.  Markers after the ID:
'*' locked (being delivered), '-' too young (MinQueueAge), 'X' the load average would queue it;
a quarantined entry (listed with -qQ) shows a "QUARANTINE: reason" line.  With MaxQueueRunSize
only that many entries per directory are printed ("only N printed"), as Sendmail does.
"""

from __future__ import annotations

import time

from mta import errors, message, qf, queue, queuescan
from mta.delivery import load, schedule

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

ALL = schedule.Selection()

HEADER = "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n"
HEADER_V = "-----Q-ID----- --Size-- -Priority- ---Q-Time--- --------Sender/Recipient--------\n"


def prtstr(text: str, limit: int) -> str:
    """sendmail's prtstr() (queue.c): printable ASCII as is, a backslash doubled, any other byte
    as \\ooo (char is signed: every byte over 0x7f too); at most limit columns, each escape
    counted, and one that would not fit left out.  text is latin-1: a character per byte."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text[:limit]
    out, room = [], limit
    for ch in text:
        if room <= 0 or ch == "\0":  # while (ml-- > 0 && (c = *s++) != '\0')
            break
        room -= 1
        if ch == "\\":
            if room > 0:
                out.append("\\\\")
            room -= 1
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            room -= 3
            if room > 0:
                out.append(f"\\{ord(ch) & 0xFF:03o}")
    return "".join(out)


class Marks:
    """The marks after an ID, besides '*' (locked): '?' lost (a -qL listing), '-' too young
    (MinQueueAge), 'X' the load average would queue it (shouldqueue, with one reading of the
    load for the whole listing)."""

    def __init__(self, min_age: int, cfg, lost: bool = False):
        self.min_age, self.now, self.lost = min_age, time.time(), lost
        self.queue_above = None  # the priority above which 'X', when the load is at QueueLA
        la = load.load_average() if cfg is not None else 0
        if cfg is not None and la >= cfg["QueueLA"]:
            self.queue_above = cfg["QueueFactor"] // (la - cfg["QueueLA"] + 1)

    def of(self, tries: int, last_try: int, priority: int) -> str:
        if self.lost:
            return "?"
        if tries and self.min_age and self.now < last_try + self.min_age:
            return "-"
        if self.queue_above is not None and priority > self.queue_above:
            return "X"
        return " "


class Stamps:
    """ctime()'s first 16 characters ("Wed Nov 25 23:52"), worked out once a minute of queue
    time: a minute whose local offset is whole minutes and does not change within it.  A time
    past what the C library converts is "(null)", as printf prints the NULL ctime() returns."""

    def __init__(self) -> None:
        self.minutes: dict[int, str] = {}

    def of(self, t: int) -> str:
        minute = t // 60
        stamp = self.minutes.get(minute)
        if stamp is None:
            try:
                start, end = time.localtime(minute * 60), time.localtime(minute * 60 + 59)
            except (OverflowError, OSError):
                return "(null)"
            if start.tm_gmtoff != end.tm_gmtoff or start.tm_gmtoff % 60:
                return time.ctime(t)[:16]
            if len(self.minutes) > 4096:
                self.minutes.clear()
            stamp = self.minutes[minute] = time.ctime(minute * 60)[:16]
        return stamp


_LISTED = frozenset("TKNPSMRCFBq")  # the qf lines print_single_queue looks at
_CONTINUED = (" ", "\t")


def _closing(lines: list[str]) -> int | None:
    """Where the closing '.' line is (one not continued by the next), or None: a torn file."""
    at = 0
    while True:
        try:
            at = lines.index(".", at + 1)
        except ValueError:
            return None
        if at + 1 == len(lines) or lines[at + 1][:1] not in _CONTINUED:
            return at


def entry_text(qid: str, text: str, size: int, verbose: bool, locked: bool, marks: Marks,
               stamps: Stamps) -> tuple[int, int, str] | None:
    """(priority, creation time, the entry's lines), printed straight from its control file's
    text as print_single_queue reads it (no Entry is built: mailq lists 100,000 of these).
    None for a torn file or one whose numbers are not numbers (parse_entry refuses those too;
    a queue run moves them aside)."""
    lines = text.split("\n")
    end = _closing(lines) if lines[0][:1] == "V" else None
    if end is None:
        return None
    t = k = n = p = 0
    flags = bodytype = quarantine = status = sender = ""
    rcpts: list[tuple[str, str, str]] = []  # (address, its status, controlling address)
    pending, ctl = "", ""
    folded = "\n\t" in text or "\n " in text
    for i in range(1, end):
        line = lines[i]
        kind = line[:1]
        if kind not in _LISTED:
            continue
        value = line[1:]
        if folded and lines[i + 1][:1] in _CONTINUED:  # a continued line, joined as queue.unfold joins it
            j = i + 1
            while lines[j][:1] in _CONTINUED:
                j += 1
            value = "\n".join(lines[i:j])[1:]
        if kind in "TKNP":
            if value and not qf.is_number(value):  # as parse_entry reads them
                return None
            number = int(value or 0)
            if kind == "T":
                t = number
            elif kind == "K":
                k = number
            elif kind == "N":
                n = number
            else:
                p = number
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
        else:
            quarantine = value
    mark = "*" if locked else marks.of(n, k, p)
    stamp = stamps.of(t)
    if verbose:
        short = stamp[4:] if len(stamp) == 16 else stamp  # "Nov 25 23:52", or "(null)"
        out = [f"{qid:>13}{mark}{size:8d} {p:10d}{'+' if 'w' in flags else ' '}{short} {prtstr(sender, 78)}"]
    else:
        out = [f"{qid:>13}{mark}{size:8d} {stamp} {prtstr(sender, 39)}"]
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
    return p, t, "\n".join(out) + "\n"


def listing(qdir: str, selection: schedule.Selection = ALL, *, verbose: bool = False,
            min_age: int = 0, cfg=None) -> tuple[int, Iterator[str]]:
    """The number of requests in one queue directory, and its listing piece by piece (with a
    cf: its QueueSortOrder, MaxQueueRunSize and load-average marks).

    One pass, as printqueue's gatherq (mta.queuescan): each control file is read once, and of
    each entry only its sort key and its listing are kept until they are printed in order."""
    limit = cfg["MaxQueueRunSize"] if cfg is not None else 0
    order = cfg["QueueSortOrder"] if cfg is not None else "priority"
    kind = schedule.SORT_ORDERS.get(order.strip()[:1].lower(), "priority")
    marks = Marks(min_age, cfg, selection.lost)
    try:
        if selection.subset or kind in ("host", "modification"):  # these need whole entries
            n, count, pieces = _gathered(cfg, qdir, selection, order, limit, verbose, marks)
        else:
            n, count, pieces = _scanned(qdir, selection, kind, limit, verbose, marks)
    except errors.MTAError as exc:
        return 0, (f"{exc.text}\n",)
    name = queue.print_name(qdir)
    if not count:
        return 0, (f"{name} is empty\n",)
    only = f", only {limit} printed" if limit and n > limit else ""
    head = f"\t\t{name} ({n} request{'s' if n != 1 else ''}{only})\n" + (HEADER_V if verbose else HEADER)
    return n, Pieces(head, pieces)


class Pieces:
    """A listing's header and its entries, piece by piece, as often as it is iterated."""

    def __init__(self, head: str, entries: Iterable[str]):
        self.head, self.entries = head, entries

    def __iter__(self) -> Iterator[str]:
        yield self.head
        yield from self.entries


def _scanned(qdir: str, selection, kind: str, limit: int, verbose: bool, marks: Marks):
    """(requests, entries kept, their listings in QueueSortOrder) from one pass over qdir."""
    stamps = Stamps()

    def entry(qid: str, data: bytes, size: int, locked: bool):
        found = entry_text(qid, message.from_bytes(data), size, verbose, locked, marks, stamps)
        if found is None:
            return None
        priority, created, text = found
        return priority if kind == "priority" else created if kind == "time" else qid, text

    letter = selection.letter
    kept = queuescan.collect(qdir, letter, entry, limit)
    return kept.requests, kept.kept, kept.listed(kept.in_order(kind))


def _gathered(cfg, qdir: str, selection, order: str, limit: int, verbose: bool, marks: Marks):
    """As _scanned, for a -q[!]I/R/S/Q selection or a sort order that needs whole entries."""
    works, n = schedule.gather(cfg, qdir, selection, run=False, limit=limit)
    letter, stamps = selection.letter, Stamps()
    texts: list[str] = []
    for work in schedule.sort(works, order):
        qid = work.entry.qid
        try:
            text, size, locked = queuescan.read_listed(qdir, qid, letter)
        except FileNotFoundError:
            texts.append(f"{qid:>13}  (job completed)\n")  # delivered since we counted it, as Sendmail says
            continue
        except OSError:
            continue
        found = entry_text(qid, text, size, verbose, locked, marks, stamps)
        if found is not None:  # a bad file: the next queue run moves it aside
            texts.append(found[2])
    return n, len(works), texts


def show(qdirs: str | list[str], selection: schedule.Selection = ALL, *, verbose: bool = False,
         min_age: int = 0, cfg=None) -> Iterator[str]:
    """printqueue(): each directory's listing, then the total; piece by piece, for writelines."""
    dirs = [qdirs] if isinstance(qdirs, str) else qdirs
    return with_total(listing(qdir, selection, verbose=verbose, min_age=min_age, cfg=cfg) for qdir in dirs)


def with_total(listings: Iterable[tuple[int, Iterable[str]]]) -> Iterator[str]:
    """Listings (each may be printed again: it is kept, not read again), then the total."""
    total = 0
    for n, text in listings:
        yield from text
        total += n
    yield f"\t\tTotal requests: {total}\n"


def as_json(queues: list[tuple[str, str]], selection: schedule.Selection = ALL) -> str:
    """[(label, qdir)] -> JSON: every queue with its entries, recipients and reasons."""
    # (each queue directory of a cf with queue groups is one item, labelled with its group)
    out = []
    for label, qdir in queues:
        try:
            works = schedule.sorted_works(qdir, selection)
        except errors.MTAError as exc:
            out.append({"queue": label, "path": qdir, "error": exc.text, "entries": []})
            continue
        out.append({"queue": label, "path": qdir, "entries": [_as_dict(w) for w in works]})
    import json  # only for --json: not in every mailq's start

    return json.dumps(out, indent=2) + "\n"


def _as_dict(work: schedule.Work) -> dict:
    e = work.entry
    return {"id": e.qid, "size": e.body_size, "time": e.ctime, "priority": e.priority,
            "sender": e.sender, "status": e.status, "tries": e.tries, "last_try": e.last_try,
            "locked": work.locked, "warned": "w" in e.flags, "quarantine": e.quarantine,
            "recipients": [{"address": r.addr, "status": r.status} for r in e.recipients]}
