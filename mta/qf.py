"""The qf file's format: Entry and Recipient, and the text queueup() writes and readqf() reads.

Holds the qf lines' grammar (sendmail 8, qf version 8): the fields an entry has, their order on
writing (``format_entry``), and reading them back (``parse_entry``, which refuses a torn or
foreign file with ``BadQueueFile``, the reason loseqfile() logs).  Every value written goes
through ``clean()`` (newline -> space), so no envelope text can start a qf line of its own
(sendmail's denlstring).  No files: mta.queue reads and writes them.
"""

from __future__ import annotations

from mta import errors
from mta.message import Header
from mta.record import factory, record


class BadQueueFile(errors.MTAError):
    """A qf that is torn, garbage or not ours; ``why`` is loseqfile()'s reason for the log."""

    exitcode = errors.EX_SOFTWARE

    def __init__(self, text: str, why: str = "bogus queue line"):
        super().__init__(text)
        self.why = why


@record
class Recipient:
    """One R line and the M/C/Q/r lines that precede it."""

    addr: str
    flags: str = "PFD"
    orcpt: str = ""
    final: str = ""
    status: str = ""  # per-recipient M line (deferral reason)
    ctladdr: str = ""  # C line

    @property
    def primary(self) -> bool:
        return "P" in self.flags


@record
class Entry:
    qid: str
    ctime: int = 0  # T
    last_try: int = 0  # K
    tries: int = 0  # N
    priority: int = 0  # P
    flags: str = ""  # F
    bodytype: str = ""  # B
    status: str = ""  # M (envelope)
    macros: dict[str, str] = factory(dict)  # $x and ${name}
    sender: str = ""  # S
    envid: str = ""  # Z
    recipients: list[Recipient] = factory(list)
    headers: list[Header] = factory(list)
    body_size: int = -1  # df size, filled in when read from a directory
    quarantine: str = ""  # q: the reason it is held (file hf<id>); empty for a normal entry
    unsafe: bool = False  # the qf is owned by someone else than us or root: no programs, no files
    qdir: str = ""  # the queue directory it was stored in or read from ('' when not known)
    lost: bool = False  # read from a Qf file by a -qL run: kept as Qf when rewritten

    def header(self, name: str) -> Header | None:
        lname = name.lower()
        return next((h for h in self.headers if h.name.lower() == lname), None)


def clean(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", " ")


def _clean_header(value: str) -> str:
    """Keep continuation lines (newline + SP/TAB); any other newline becomes newline + TAB."""
    value = value.replace("\r", "").replace("\x00", " ")
    lines = value.split("\n")
    return "\n".join([lines[0]] + [ln if ln[:1] in (" ", "\t") else "\t" + ln for ln in lines[1:]])


def format_entry(e: Entry) -> str:
    """The qf text, in the order queueup() writes it."""
    out = ["V8", f"T{e.ctime}", f"K{e.last_try}", f"N{e.tries}", f"P{e.priority}"]
    if e.bodytype:
        out.append(f"B{clean(e.bodytype)}")
    if e.quarantine:
        out.append(f"q{clean(e.quarantine)}")
    if e.status:
        out.append(f"M{clean(e.status)}")
    if e.flags:
        out.append(f"F{_flag_order(e.flags)}")
    for name, value in e.macros.items():
        key = name if len(name) == 1 else "{" + name + "}"
        out.append(f"${key}{clean(value)}")
    out.append(f"S{clean(e.sender)}")
    if e.envid:
        out.append(f"Z{clean(e.envid)}")
    for r in e.recipients:
        if r.status:
            out.append(f"M{clean(r.status)}")
        if r.ctladdr:
            out.append(f"C{clean(r.ctladdr)}")
        if r.orcpt:
            out.append(f"Q{clean(r.orcpt)}")
        if r.final:
            out.append(f"r{clean(r.final)}")
        out.append(f"R{r.flags}:{clean(r.addr)}")
    for h in e.headers:
        out.append(f"H?{h.cond}?{clean(h.name)}: {_clean_header(h.value)}")
    out.append(".")
    return "\n".join(out) + "\n"


def is_number(value: str) -> bool:
    """-?[0-9]{1,19}: a qf number line's value."""
    digits = value[1:] if value[:1] == "-" else value
    return 0 < len(digits) <= 19 and digits.isascii() and digits.isdigit()


_FLAG_ORDER = "wr8bdns"  # queueup() writes the F letters in this order


def _flag_order(flags: str) -> str:
    """The F line's letters in queueup()'s order (any others after them, as they came)."""
    return "".join(f for f in _FLAG_ORDER if f in flags) + "".join(f for f in flags if f not in _FLAG_ORDER)


_NUMBERS = {"T": "ctime", "K": "last_try", "N": "tries", "P": "priority"}


def unfold(text: str) -> list[str]:
    """qf text as its lines, each continuation line (space or tab first) joined to the one before."""
    lines: list[str] = []
    for raw in text.split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += "\n" + raw
        else:
            lines.append(raw)
    return lines


def parse_entry(qid: str, text: str) -> Entry:
    """Read qf text; raises BadQueueFile for a torn, unknown-version or bogus file."""
    lines = unfold(text)
    if not lines or not lines[0].startswith("V"):
        raise BadQueueFile(f"{qid}: not a version 8 queue file", "unsupported queue file version")
    e = Entry(qid)
    pending = Recipient("")
    ended = False
    for n, line in enumerate(lines, 1):
        if ended:
            if line:
                raise BadQueueFile(f"{qid}: extra or bogus data in queue file")
            continue
        kind, value = line[:1], line[1:]
        if kind == "V":
            if not value.isdigit() or int(value) > 8:
                raise BadQueueFile(f"{qid}: unsupported queue file version", "unsupported queue file version")
        elif kind in "TKNP" and kind:
            if value and not is_number(value):
                raise BadQueueFile(f"{qid}: line {n}: bad number \"{line[:40]}\"")
            setattr(e, _NUMBERS[kind], int(value or 0))
        elif kind == "F":
            e.flags = value
        elif kind == "B":
            e.bodytype = value
        elif kind == "q":
            e.quarantine = value
        elif kind == "M":
            if e.sender:
                pending.status = value
            else:
                e.status = value
        elif kind == "$":
            if value.startswith("{"):
                name, _, rest = value[1:].partition("}")
            else:
                name, rest = value[:1], value[1:]
            e.macros[name] = rest
        elif kind == "S":
            e.sender = value
        elif kind == "Z":
            e.envid = value
        elif kind == "C":
            pending.ctladdr = value
        elif kind == "Q":
            pending.orcpt = value
        elif kind == "r":
            pending.final = value
        elif kind == "R":
            flags, _, addr = value.partition(":")
            e.recipients.append(Recipient(addr, flags, pending.orcpt, pending.final, pending.status,
                                          pending.ctladdr))
            pending = Recipient("", ctladdr=pending.ctladdr)
        elif kind == "H":
            cond = ""
            if value.startswith("?"):
                cond, _, value = value[1:].partition("?")
            name, _, hval = value.partition(":")
            e.headers.append(Header(name, hval[1:] if hval.startswith(" ") else hval, cond))
        elif kind == ".":
            ended = True
        elif kind in "dIAD!EL" or line == "":
            continue
        else:
            raise BadQueueFile(f"{qid}: line {n}: bad line \"{line[:40]}\"", "unrecognized line")
    if not ended:
        raise BadQueueFile(f"{qid}: incomplete queue file read", "incomplete queue file read")
    return e
