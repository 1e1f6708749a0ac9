"""What an SMTP session hands its transport and gets back: requests, envelopes, replies.

``Action`` is a request (its kinds below); ``Check`` and ``Queue`` are what the checks and the
queue need; ``Envelope`` and ``Recipient`` one transaction as the client gave it.  Plain data
only, so a request can be answered in a thread or another process.  ``reply`` formats one reply
(multi-line with ``\n``); ``params`` splits MAIL/RCPT arguments into the address and ESMTP
parameters.
"""

from __future__ import annotations

from mta.policy import Client, Refusal
from mta.record import factory, record


@record
class Recipient:
    addr: str  # as the client wrote it, between the brackets
    notify: str = ""
    orcpt: str = ""


@record
class Envelope:
    sender: str = ""  # '' for <>
    recipients: list = factory(list)
    body_type: str = ""
    size: int = 0
    ret: str = ""
    envid: str = ""
    data: bytes = b""
    discard: bool = False  # an access DISCARD: accepted, logged, dropped
    quarantine: str = ""  # an access QUARANTINE: reason: queued and held (Entry.quarantine)


@record(frozen=True)
class Action:
    """A request: 'mail' (Check), 'rcpt' (Check), 'vrfy' (Check), 'auth' ((user, password)) and
    'queue' (Queue) are answered by mta.smtp.answer; 'starttls', 'etrn' (node) and 'delay'
    (seconds) by the transport.  ``arg`` holds plain data only, so it can cross to a worker."""

    kind: str
    arg: object = None


@record(frozen=True)
class Check:
    """What a MAIL, RCPT or VRFY check needs: the client and the parsed address as typed."""

    client: Client
    addr: object  # address.Address
    text: str = ""
    size: int = 0  # MAIL's SIZE=, for the free space check
    sid: str = ""  # the session's ID, for log lines
    sender: str | None = None  # RCPT: the envelope's sender, for FEATURE(delay_checks)


@record(frozen=True)
class Queue:
    client: Client
    envelope: Envelope
    proto: str


NO_SPACE = Refusal(452, "4.4.5", "Insufficient disk space; try again later", with_addr=False)


def reply(code: int, status: str, text: str) -> bytes:
    """One reply; a multi-line text gives continuation lines."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        sep = "-" if i < len(lines) - 1 else " "
        out.append(f"{code}{sep}{status + ' ' if status else ''}{line}\r\n")
    return "".join(out).encode("utf-8", "replace")


def params(text: str) -> tuple[str, dict[str, str] | str]:
    """'<addr> KEY=VAL KEY' -> (addr text, params) or (addr, error text)."""
    text = text.strip()
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            return text, {}
        # keep '>>' and the like with the address: the parser reports them
        while end + 1 < len(text) and text[end + 1] == ">":
            end += 1
        addr, rest = text[:end + 1], text[end + 1:]
    else:
        addr, _, rest = text.partition(" ")
    params = {}
    for word in rest.split():
        key, _, value = word.partition("=")
        params[key.upper()] = value
    return addr, params
