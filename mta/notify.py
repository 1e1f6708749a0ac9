"""Notifications: who is told what about a message (savemail.c, envelope.c).

``bounce`` sends one failure DSN (to the sender, a list's owner, or the postmaster for mail
from <>; the MSP writes ~/dead.letter instead), ``warn`` the delay warning, ``receipt`` the
return receipt for NOTIFY=SUCCESS.  The texts come from ``mta.dsn``; each notification is
queued from <> like any message and delivered at once unless DeliveryMode says otherwise.
"""

from __future__ import annotations

import time

from mta import address, dsn, errors, message, queue
from mta.context import Context
from mta.message import Header, Message
from mta.queue import Entry, Recipient


def subject_of(kind: str) -> str:
    return {"warning-timeout": "Warning: could not send message", "postmaster-notify": "Postmaster notify"
            }.get(kind, "Return receipt")


def _notify(ctx: Context, *, kind: str, sender: str, headers: list[Header], body: str | None,
            arrival: float, origin: str, failed: list[dsn.Failed], return_body: bool,
            origin_qid: str = "", envid: str = "") -> None:
    from mta import submit

    cfg = ctx.cfg
    bare = address.unbracket(sender)
    to, rcpt = (sender if sender.startswith("<") else bare), bare
    if not bare:  # a notification about a notification: to the postmaster, once
        kind, to, rcpt = "postmaster-notify", "postmaster", "postmaster"
    qid = queue.new_id()
    now = time.time()
    original = "".join(h.render() for h in headers).replace(f"<{queue.MACRO_BYTE}g>", f"<{bare}>")
    text = dsn.build(kind=kind, qid=qid, host=cfg.hostname, version=f"{cfg.macros['v']}/{cfg.macros['Z']}",
                     to=to, arrival=arrival, origin=origin, failed=failed, original_headers=original,
                     original_body=body if return_body else None, now=now,
                     warn_after=cfg["Timeout.queuewarn"], return_after=cfg["Timeout.queuereturn"],
                     envid=envid)
    msg = message.parse(text)
    msg.headers.insert(0, Header("Return-Path", f"<{queue.MACRO_BYTE}g>", "P"))
    rflags = "PN" if not bare else "PFD"
    reason = failed[0].reply.split(" ", 2)[-1] if failed and kind == "failure" else subject_of(kind)
    if origin_qid:
        ctx.log.line(f"{qid}: DSN: {reason}", origin_qid)
    entry = submit.enqueue(ctx, qid=qid, sender="<>", recipients=[Recipient(rcpt, rflags)], msg=msg,
                           when=now, macros={"_": "localhost"}, relay="[RESPONSE]")
    if cfg["DeliveryMode"] not in ("q", "d"):
        from mta import runner

        runner.deliver(ctx, entry.qid)


def _failed(addr: str, err: errors.MTAError, remote: bool) -> dsn.Failed:
    reply = f"{err.code} {err.status} {err.text}"
    transcript = reply if remote else f"{err.code} {err.status} {addr}... {err.text}"
    return dsn.Failed(addr, addr, err.status, reply, transcript,
                      diagnostic=("SMTP; " if remote else "X-Unix; ") + reply)


def bounce(ctx: Context, entry: Entry, failed: list[tuple[str, errors.MTAError]], *, body: str,
           to: str = "") -> None:
    """One failure DSN for these recipients of entry, to its sender (postmaster for <>), or to
    ``to`` (a list's owner)."""
    if entry.sender == "<>" and entry.macros.get("_") == "localhost":
        ctx.log.line("DSN to <> about a DSN: dropped", entry.qid)
        return
    if ctx.cfg.is_msp and _save_dead_letter(ctx, entry, body):
        return  # the MSP hands its errors back in ~/dead.letter, as Sendmail's does
    return_body = "n" not in entry.flags and "nobodyreturn" not in ctx.cfg["PrivacyOptions"]
    _notify(ctx, kind="failure", sender=to or entry.sender, headers=entry.headers, body=body,
            arrival=entry.ctime, origin=entry.macros.get("_", "localhost"),
            failed=[_failed(a, e, "@" in a and not ctx.cfg.is_msp) for a, e in failed],
            return_body=return_body, origin_qid=entry.qid, envid=entry.envid)


def _save_dead_letter(ctx: Context, entry: Entry, body: str) -> bool:
    from mta import submit

    saved = submit.dead_letter(ctx, entry.sender, Message(entry.headers, body), entry.ctime)
    if saved is None:
        return False
    ctx.log.line(f"Saved message in {saved}", entry.qid)
    if ctx.interactive:
        ctx.tell(f"{saved}... Saved message in {saved}")
    return True


def bounce_unqueued(ctx: Context, qid: str, sender: str, msg: Message, when: float,
                    failed: list[tuple[str, errors.MTAError]]) -> bool:
    """A DSN for a message that never got a queue entry (every recipient failed at submission)."""
    if ctx.cfg.is_msp:
        return False
    entry = Entry(qid, ctime=int(when), sender=sender, headers=msg.headers,
                  macros={"_": f"{ctx.user.pw_name}@localhost"})
    try:
        bounce(ctx, entry, failed, body=msg.body)
    except errors.MTAError:
        return False
    return True


def receipt(ctx: Context, entry: Entry, results: list) -> None:
    """NOTIFY=SUCCESS: a 'Return receipt' for recipients delivered or relayed."""
    done = []
    for r in results:
        local = r.route.mailer in ("local", "prog", "*file*")
        addr = r.rcpt.addr
        said = "Successfully delivered" if local else "relayed; expect no further notifications"
        done.append(dsn.Failed(addr, addr.strip("<>"), "2.1.5" if local else "2.0.0", "", f"{addr}... {said}",
                               action="delivered (to mailbox)" if local else "relayed", orcpt=r.rcpt.orcpt))
    _notify(ctx, kind="return-receipt", sender=entry.sender, headers=entry.headers, body=None,
            arrival=entry.ctime, origin=entry.macros.get("_", "localhost"), failed=done,
            return_body=False, origin_qid=entry.qid, envid=entry.envid)


def warn(ctx: Context, entry: Entry, body: str, statuses: dict[str, str] | None = None) -> None:
    """The delay warning (Timeout.queuewarn), with each recipient's status from the last attempt."""
    statuses = statuses or {}
    failed = [dsn.Failed(r.addr, r.addr, statuses.get(r.addr, "4.4.7"), r.status,
                         f"451 {r.status.removeprefix('Deferred: ')}") for r in entry.recipients
              if "N" not in r.flags or "D" in r.flags]
    if failed:
        _notify(ctx, kind="warning-timeout", sender=entry.sender, headers=entry.headers, body=None,
                arrival=entry.ctime, origin=entry.macros.get("_", "localhost"), failed=failed,
                return_body=False, origin_qid=entry.qid, envid=entry.envid)
