"""Notifications: who is told what about a message (savemail.c, envelope.c), as messages.

``failure`` builds the failure DSN (to the sender, a list's owner, or the postmaster for mail
from <>), ``warning`` the delay warning, ``receipt`` the return receipt for NOTIFY=SUCCESS.
Each returns a ``Notice``: a message from <> with its one recipient and a queue id, ready to be
queued.  Pure: the texts come from ``mta.dsn``; the delivery layer (mta.delivery.attempt) queues
and delivers notices, so this module imports neither submission nor delivery.
"""

from __future__ import annotations

import time

from mta import address, dsn, errors, log, message, options, queue
from mta.message import Header
from mta.qf import Entry, Recipient
from mta.record import record


@record(frozen=True)
class Notice:
    """A notification ready for the queue: from <>, to ``rcpt``."""

    qid: str
    rcpt: Recipient
    msg: message.Message
    when: float
    reason: str  # for the origin's log line 'QID: DSN: reason'
    origin_qid: str = ""


def subject_of(kind: str) -> str:
    return {"warning-timeout": "Warning: could not send message", "postmaster-notify": "Postmaster notify"
            }.get(kind, "Return receipt")


def about_a_notice(entry: Entry) -> bool:
    """A notification of ours (from <>, queued by us) gets no notification back."""
    return entry.sender == "<>" and entry.macros.get("_") == "localhost"


def _notice(cfg, entry: Entry, *, kind: str, sender: str, body: str | None, failed: list[dsn.Failed],
            return_body: bool) -> Notice:
    bare = address.unbracket(sender)
    to, rcpt = (sender if sender.startswith("<") else bare), bare
    if not bare:  # a notification about a notification: to the postmaster, once
        kind, to, rcpt = "postmaster-notify", "postmaster", "postmaster"
    qid = queue.new_id()
    now = time.time()
    original = "".join(h.render() for h in entry.headers).replace(f"<{queue.MACRO_BYTE}g>", f"<{bare}>")
    text = dsn.build(kind=kind, qid=qid, host=cfg.hostname, version=f"{cfg.macros['v']}/{cfg.macros['Z']}",
                     to=to, arrival=entry.ctime, origin=entry.macros.get("_", "localhost"), failed=failed,
                     original_headers=original, original_body=body if return_body else None, now=now,
                     warn_after=timeouts(cfg, entry)[0], return_after=timeouts(cfg, entry)[1],
                     envid=entry.envid)
    msg = message.parse(text)
    msg.headers.insert(0, Header("Return-Path", f"<{queue.MACRO_BYTE}g>", "P"))
    reason = failed[0].reply.split(" ", 2)[-1] if failed and kind == "failure" else subject_of(kind)
    return Notice(qid, Recipient(rcpt, "PN" if not bare else "PFD"), msg, now, reason, entry.qid)


def timeouts(cfg, entry: Entry) -> tuple[int, int]:
    """Timeout.queuewarn and .queuereturn for this entry: by its Precedence: header (.urgent,
    .normal, .non-urgent) and, for a DSN of normal precedence, .dsn."""
    h = entry.header("Precedence")
    prec, is_dsn = (h.value if h else None), entry.sender == "<>"
    return cfg.queue_timeout("queuewarn", prec, is_dsn), cfg.queue_timeout("queuereturn", prec, is_dsn)


def returns_now(cfg, entry: Entry) -> bool:
    """Timeout.queuereturn=now for this entry: it is returned at once, without an attempt
    (deliver.c sendall) - unless it is a notification itself (EF_RESPONSE)."""
    return timeouts(cfg, entry)[1] == options.NOW and not about_a_notice(entry)


def return_text(seconds: int) -> str:
    """The age in 'Cannot send message for ...' (Sendmail's pintvl, not brief)."""
    if seconds == options.NOW:
        return "too long"
    return "zero seconds" if seconds == 0 else log.pintvl_long(seconds)


def _failed(addr: str, err: errors.MTAError, remote: bool) -> dsn.Failed:
    reply = f"{err.code} {err.status} {err.text}"
    transcript = reply if remote else f"{err.code} {err.status} {addr}... {err.text}"
    if err.transcript:  # what the mailer program said, before the error line (Sendmail's xfp)
        transcript = err.transcript.rstrip("\n") + "\n" + transcript
    return dsn.Failed(addr, addr, err.status, reply, transcript,
                      diagnostic=("SMTP; " if remote else "X-Unix; ") + reply)


def failure(cfg, entry: Entry, failed: list[tuple[str, errors.MTAError]], *, body: str, to: str = "") -> Notice:
    """One failure DSN for these recipients of entry, to its sender or to ``to`` (a list's owner)."""
    return_body = "n" not in entry.flags and "nobodyreturn" not in cfg["PrivacyOptions"]
    return _notice(cfg, entry, kind="failure", sender=to or entry.sender, body=body,
                   failed=[_failed(a, e, "@" in a and not cfg.is_msp) for a, e in failed],
                   return_body=return_body)


LOCAL_MAILERS = ("local", "prog", "*file*")


def receipt(cfg, entry: Entry, delivered: list[tuple[Recipient, str]]) -> Notice:
    """NOTIFY=SUCCESS: a 'Return receipt' for (recipient, mailer) pairs delivered or relayed."""
    done = []
    for rcpt, mailer in delivered:
        local = mailer in LOCAL_MAILERS
        said = "Successfully delivered" if local else "relayed; expect no further notifications"
        done.append(dsn.Failed(rcpt.addr, rcpt.addr.strip("<>"), "2.1.5" if local else "2.0.0", "",
                               f"{rcpt.addr}... {said}", action="delivered (to mailbox)" if local else "relayed",
                               orcpt=rcpt.orcpt))
    return _notice(cfg, entry, kind="return-receipt", sender=entry.sender, body=None, failed=done,
                   return_body=False)


def warning(cfg, entry: Entry, statuses: dict[str, str] | None = None) -> Notice | None:
    """The delay warning (Timeout.queuewarn), with each recipient's status from the last attempt;
    None when no recipient asked for one."""
    statuses = statuses or {}
    failed = [dsn.Failed(r.addr, r.addr, statuses.get(r.addr, "4.4.7"), r.status,
                         f"451 {r.status.removeprefix('Deferred: ')}") for r in entry.recipients
              if "N" not in r.flags or "D" in r.flags]
    if not failed:
        return None
    return _notice(cfg, entry, kind="warning-timeout", sender=entry.sender, body=None, failed=failed,
                   return_body=False)
