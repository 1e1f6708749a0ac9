"""A queue run's housekeeping, before it sorts the queue (queue.c readqf/loseqfile; stale
files): a bad control file is moved aside to Qf (logged once, as loseqfile), and so is one whose
df is gone; an empty qf and df/tf/xf/jf orphans are removed once they are old.  What it read
of the control files that look whole goes back to the run, so that it does not read them again.
"""

from __future__ import annotations

import os
import time

from mta import errors, message, qf, queue

ORPHAN_AGE = 86400  # df/tf/xf/jf files without their qf, older than this, are removed
EMPTY_QF_AGE = 600  # an empty qf older than this is removed with its df, as readqf() does


def sweep(qdir: str, log, now: float | None = None) -> dict[str, queue.Glance]:
    """Before a queue run: move bad qf files aside to Qf (logged once, as loseqfile), a qf whose
    df is gone too; remove empty qf files and df/tf/xf orphans that are old.  Locked files and
    files of held (hf) or lost (Qf) entries are left alone.  Returns what it read of the qf files
    that look whole, so the run does not read them again to sort them."""
    now = time.time() if now is None else now
    names: list[str] = []
    seen: dict[str, queue.Glance] = {}
    for where in dict.fromkeys(queue.file_dir(qdir, letter) for letter in "qdx"):  # qf/ df/ xf/ or qdir
        try:
            names += os.listdir(where)
        except OSError:
            return seen
    by_kind: dict[str, set[str]] = {}
    for name in names:
        if len(name) > 2 and name[1] == "f":
            by_kind.setdefault(name[0], set()).add(name[2:])
    has_df = by_kind.get("d", set())
    for qid in by_kind.get("q", ()):
        g = queue.glance(queue.qf_path(qdir, qid))
        if g is not None and qid in has_df and looks_whole(g.data):
            seen[qid] = g  # the common case: no lock taken, no full parse
        else:
            _check_qf(qdir, qid, qid in has_df, log, now)
    owned = by_kind.get("q", set()) | by_kind.get("h", set()) | by_kind.get("Q", set())
    for letter in "dtxj":
        for qid in by_kind.get(letter, set()) - (owned if letter != "t" else set()):
            _remove_if_old(queue.qf_path(qdir, qid, letter), now - ORPHAN_AGE, log)
    return seen


def _check_qf(qdir: str, qid: str, has_df: bool, log, now: float) -> None:
    """A suspect qf, looked at again under its lock."""
    try:
        with queue.lock(qdir, qid) as fd:
            st = os.fstat(fd)
            if st.st_size == 0:
                if st.st_ctime < now - EMPTY_QF_AGE:
                    queue.remove(qdir, qid)
                return
            try:
                qf.parse_entry(qid, message.from_bytes(os.pread(fd, st.st_size, 0)))
            except qf.BadQueueFile as exc:
                queue.lose(qdir, qid, exc.why, log)
                return
            if not os.path.exists(queue.qf_path(qdir, qid, "d")):
                queue.lose(qdir, qid, "data file missing", log)
    except errors.MTAError:
        return  # locked (being delivered or written) or gone


_SUSPECT_LINE = (rb"\n(?:[TKNP](?!-?[0-9]{0,19}\n)|[^TKNPFBM$SZCQrRH.dIqAD!EL \t\n])"
                 rb"|(?:^|\n)[VTKNP][^\n]*\n[ \t]|\n\n[ \t]")  # folded version, number, empty line
_SUSPECT: list = []  # the compiled _SUSPECT_LINE, once a sweep needs it (re is not imported to submit)


def looks_whole(data: bytes) -> bool:
    """A quick test that parse_entry() would accept data: a version line, one '.' line at the
    very end, number lines that are numbers, only letters it knows."""
    return (data[:1] == b"V" and data[1:2] in b"012345678" and data[2:3] == b"\n"
            and data.endswith(b"\n.\n") and data.count(b"\n.") == 1 and not _suspect(data))


def _suspect(data: bytes):
    if not _SUSPECT:
        import re

        _SUSPECT.append(re.compile(_SUSPECT_LINE))
    return _SUSPECT[0].search(data)


def _remove_if_old(path: str, before: float, log) -> None:
    try:
        if os.stat(path, follow_symlinks=False).st_mtime >= before:
            return
        os.unlink(path)
    except OSError:
        return
    log.line(f"removed stale {path}")
