"""The delivery journal: a queue entry's jf file, one line a delivery made and not yet written
back to its qf.

A local, file or program delivery is noted here once its message is whole (for mbox and mmdf,
still under the mailbox's lock), so that a queue run killed before it rewrote the qf does not
deliver it again; the mailbox's lock records the Commit it is owed, so that a delivery killed
before its note is cut off by the next one (mta.mailers.local).  A key is "owed" while its qf
exists; once the entry is gone, nothing is.
"""

from __future__ import annotations

import os

from mta.record import record


@record(frozen=True)
class Commit:
    """How a delivery is noted as done once its message is whole in the mailbox: a key in a
    journal (the queue entry's jf), owed while ``pending`` (its qf) exists.  A delivery killed
    before the note is cut off by the next one; one killed after it is kept, and the queue run
    does not deliver it again; once its entry is gone, nothing is owed."""

    path: str
    key: str
    pending: str = ""

    def note(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, f"{one_line(self.key)}\n".encode("utf-8", "surrogateescape"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def done(self) -> bool:
        return one_line(self.key) in noted(self.path) or not (self.pending and os.path.exists(self.pending))


def noted(path: str) -> set[str]:
    """The keys in a commit journal (none when there is none)."""
    try:
        with open(path, "rb") as fh:
            return set(fh.read().decode("utf-8", "surrogateescape").split("\n")) - {""}
    except OSError:
        return set()


def one_line(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")
