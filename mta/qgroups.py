"""Queue groups: which group and directory a new message goes to, and its split into one queue
entry per group and per ``recipients=`` limit (queue.c setnewqueue, split_by_recipient).

  * The groups are the default ``mqueue`` (QueueDirectory, unless a Q line redefines it) and the
    Q lines, in their order; a group's directories are its path, or every q* its '*' matches.
  * A recipient's group is its mailer's ``Q=`` (M line).  Sendmail would ask the queuegroup rule
    set first; we run no rule sets (check names the rule set lines we ignore).
  * The envelope stays in the group of its first recipient (setnewqueue); a recipient whose
    mailer names no group goes with it; every other group gets an entry of its own with a new
    queue ID (split_across_queue_groups).  A group with ``r=N`` (recipients) cuts an entry with
    more recipients into entries of N (split_within_queue); the first N keep the entry's ID.
    A quarantined message is not split (srvrsmtp.c): it stays whole in its first recipient's group.
    Every piece of a split is marked so (EF_SPLIT: 's' in the qf F line, as Debian's qf files have).
  * ``store`` writes each piece as a whole qf/df pair in a directory of its group: the first with
    the body, the others with a hard link to its df (a durable copy across file systems), each
    fsynced as ``queue.store`` does; on failure nothing of any piece is left.
"""

from __future__ import annotations

from mta import config, errors, queue
from mta.qf import Entry
from mta.record import record

DEFAULT = "mqueue"


def groups(cfg: config.Config) -> list[config.QueueGroup]:
    """The default group mqueue and the Q lines, in that order."""
    out = {DEFAULT: config.QueueGroup(DEFAULT, cfg["QueueDirectory"])}
    out.update(cfg.queue_groups)
    return list(out.values())


def directories(group: config.QueueGroup) -> list[str]:
    """A group's queue directories: its path, or every q* directory its path's '*' matches."""
    return config.queue_directories(group.path)


def all_directories(cfg: config.Config) -> list[tuple[config.QueueGroup, str]]:
    return [(g, d) for g in groups(cfg) for d in directories(g)]


def mailer_groups(cfg: config.Config) -> dict[str, str]:
    """Mailer name -> the queue group its Q= names (only groups that exist)."""
    known = {g.name for g in groups(cfg)}
    return {m.name: m.fields["Q"] for m in cfg.mailers.values() if m.fields.get("Q") in known}


def notices(cfg: config.Config) -> list[str]:
    """readcf's complaints about Q= on M lines, for check and the daemon's start."""
    known = {g.name for g in groups(cfg)}
    return [f"mailer {m.name}: unknown queue {m.fields['Q']}" for m in cfg.mailers.values()
            if "Q" in m.fields and m.fields["Q"] not in known]


def pick_dir(cfg: config.Config, group: config.QueueGroup, current: str = "") -> str:
    """The directory of group to queue in: current when it is one of them (the context's
    directory, a run's) - for the default group also when no other group has it - else one of
    them at random, as pickqdir spreads entries."""
    dirs = directories(group)
    if current in dirs or (current and group.name == DEFAULT
                           and all(current not in directories(g) for g in groups(cfg)[1:])):
        return current
    import random  # only with several directories: not on every command's start

    return random.choice(dirs)


@record
class Piece:
    """One queue entry an envelope becomes, and the group it goes to."""

    group: config.QueueGroup
    entry: Entry


def split(cfg: config.Config, entry: Entry, rcpt_groups: list[str | None]) -> tuple[list[Piece], list[tuple[str, str]]]:
    """The entries entry becomes (itself first, with its ID), given each recipient's group
    (None: its mailer names none); and the log lines (qid, text) Sendmail writes for a split."""
    table = {g.name: g for g in groups(cfg)}
    home = rcpt_groups[0] if rcpt_groups and rcpt_groups[0] in table else DEFAULT
    if entry.quarantine:  # srvrsmtp.c: a quarantined message is kept whole, in its group
        return [Piece(table[home], entry)], []
    if "s" not in entry.flags:
        entry.flags += "s"  # EF_SPLIT: it went through split_by_recipient (qf F line 's')
    by_group: dict[str, list] = {}
    for rcpt, name in zip(entry.recipients, rcpt_groups, strict=True):
        by_group.setdefault(name if name in table else home, []).append(rcpt)
    order = [name for name in table if name in by_group and name != home]
    first = _copy(entry, entry.qid, by_group.get(home, [])) if order else entry  # all of it stays home
    across = [_copy(entry, queue.new_id(), by_group[name]) for name in order]
    pieces: list[Piece] = []
    lines: list[tuple[str, str]] = []
    for name, sibling in zip(order, across, strict=True):
        pieces += _within(table[name], sibling, lines)
    if across:
        ids = "; ".join(e.qid for e in across)
        lines.append((entry.qid, f"split: count={len(across)}, id{'s' if len(across) > 1 else ''}={ids}"))
    return _within(table[home], first, lines) + pieces, lines


def _within(group: config.QueueGroup, entry: Entry, lines: list[tuple[str, str]]) -> list[Piece]:
    """split_within_queue: entries of at most group.recipients recipients; the first keeps the ID."""
    limit, rcpts = group.recipients, entry.recipients
    if limit <= 0 or len(rcpts) <= limit:
        return [Piece(group, entry)]
    entry.recipients = rcpts[:limit]
    more = [_copy(entry, queue.new_id(), rcpts[i:i + limit]) for i in range(limit, len(rcpts), limit)]
    ids = "; ".join(e.qid for e in more)
    lines.append((entry.qid, f"split: maxrcpts={limit}, rcpts={len(rcpts)}, count={len(more)}, "
                             f"id{'s' if len(more) > 1 else ''}={ids}"))
    return [Piece(group, e) for e in [entry, *more]]


def _copy(entry: Entry, qid: str, recipients: list) -> Entry:
    fields = {n: getattr(entry, n) for n in Entry.__record_fields__}
    fields.update(qid=qid, recipients=list(recipients), macros=dict(entry.macros), headers=list(entry.headers))
    return Entry(**fields)


def store(cfg: config.Config, pieces: list[Piece], body: str, mode: int, current: str = "") -> list[Entry]:
    """Write every piece durably (see the module's promise); returns their entries, each with
    its qdir.  Raises what queue.store raises, after removing what was written."""
    done: list[Entry] = []
    for piece in pieces:
        qdir = pick_dir(cfg, piece.group, current)
        try:
            if not done:
                queue.store(qdir, piece.entry, body, mode)
            else:
                queue.share_data(done[0].qdir, done[0].qid, qdir, piece.entry.qid, mode)
                queue.store(qdir, piece.entry, None, mode)
        except errors.MTAError:
            for written in [*done, Entry(piece.entry.qid, qdir=qdir)]:
                queue.remove(written.qdir, written.qid)
            raise
        done.append(piece.entry)
    return done
