"""What a mailer is given: the envelope sender ($g), the headers for its F= flags, the DSN
parameters for the next hop.

Pure: takes a queue entry, the config and a mailer's flags, returns text; reads no files.
"""

from __future__ import annotations

import re

from mta import address, queue
from mta.message import Header, Message
from mta.queue import Entry, Recipient

SMTP_NAMES = ("smtp", "esmtp", "smtp8", "dsmtp", "relay")
_BARE_NAME = re.compile(r"(^|,\s*|<)([A-Za-z0-9._+-]+)(?=\s*(?:>|,|$))")
_QUALIFIED_HEADERS = ("from", "sender", "reply-to", "to", "cc")


def is_smtp(cfg, mailer: str) -> bool:
    """Is this an [IPC] mailer (smtp, esmtp, smtp8, dsmtp, relay, or one the cf defines)?"""
    m = cfg.mailers.get(mailer)
    return m.is_ipc if m else mailer in SMTP_NAMES


def mailer_sender(cfg, mailer: str, sender: str) -> str:
    """$g as a mailer sees it: MAILER-DAEMON for <> locally, qualified for SMTP mailers."""
    bare = address.unbracket(sender)
    if is_smtp(cfg, mailer):
        return bare if not bare or "@" in bare else f"{bare}@{cfg.hostname}"
    return bare or "MAILER-DAEMON"


def render(entry: Entry, body: str, *, flags: str, sender: str) -> str:
    """Headers for a mailer with these flags, $g expanded, a blank line, the body."""
    msg = Message(entry.headers, body)
    head = msg.header_text(flags).replace(f"{queue.MACRO_BYTE}g", sender)
    return head + "\n" + body


def qualify_headers(headers: list[Header], host: str) -> list[Header]:
    """For SMTP mailers: bare local names in From/Sender/Reply-To/To/Cc get @$j (HdrFromSMTP)."""
    out = []
    for h in headers:
        value = h.value
        if h.name.lower() in _QUALIFIED_HEADERS:
            value = _BARE_NAME.sub(lambda m: f"{m.group(1)}{m.group(2)}@{host}", value)
        out.append(Header(h.name, value, h.cond))
    return out


def _xtext_ok(value: str) -> bool:
    return all(33 <= ord(c) <= 126 and c != "=" for c in value)


def dsn_parameters(entry: Entry, rcpts: list[Recipient]) -> tuple[list[str], list[list[str]]]:
    """What the next hop needs to keep the DSN promises (RFC 3461): RET, ENVID, NOTIFY, ORCPT."""
    mail = (["RET=HDRS"] if "n" in entry.flags else []) + (
        [f"ENVID={entry.envid}"] if entry.envid and _xtext_ok(entry.envid) else [])
    per = []
    for r in rcpts:
        params = []
        if "N" in r.flags:
            words = [w for f, w in (("S", "SUCCESS"), ("F", "FAILURE"), ("D", "DELAY")) if f in r.flags]
            params.append("NOTIFY=" + (",".join(words) or "NEVER"))
        if r.orcpt and _xtext_ok(r.orcpt):
            params.append(f"ORCPT={r.orcpt}")
        per.append(params)
    return mail, per
