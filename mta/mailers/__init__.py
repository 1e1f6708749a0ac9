"""Mailers: the table of M lines (table) and one module per kind (local, program, file, esmtp),
each reporting one Outcome per recipient.

The class of the enhanced status (2, 4 or 5) decides sent, deferred or bounced, in one place:
``Outcome.kind``.
"""

from __future__ import annotations

from mta import errors
from mta.record import record


@record(frozen=True)
class Outcome:
    status: str  # enhanced status, e.g. 2.0.0, 4.4.1, 5.1.1
    text: str  # the log's stat= text: 'Sent', 'Deferred: ...', 'User unknown'
    relay: str = ""  # relay= for the log
    reply: str = ""  # the remote SMTP reply, for DSNs ('550 5.1.1 User unknown')
    dsn_passed: bool = False  # NOTIFY went on to a DSN-aware next hop: it reports, not we
    output: str = ""  # what a program mailer said (stdout and stderr), for the DSN's transcript

    @property
    def kind(self) -> str:
        return {"2": "sent", "4": "deferred"}.get(self.status[:1], "bounced")

    @classmethod
    def sent(cls, text: str = "Sent", relay: str = "") -> Outcome:
        return cls("2.0.0", text, relay)

    @classmethod
    def from_error(cls, exc: errors.MTAError, relay: str = "") -> Outcome:
        if exc.temporary:
            text = exc.text if exc.text.startswith("Deferred") else f"Deferred: {exc.text}"
        else:
            text = exc.text
        return cls(exc.status, text, relay, f"{exc.code} {exc.status} {exc.text}")
