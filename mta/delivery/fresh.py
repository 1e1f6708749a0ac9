"""A fresh entry, just queued: what happens to it now, as DeliveryMode says (mode.plan): nothing
yet (logged as queued), a delivery in a child, or one here and now; and for the command line,
the errors of recipients that failed at once, mailed back first.

Apart from mta.delivery.attempt, which delivers and bounces: it is loaded only when something
is delivered or bounced, so that `sendmail -odq` never loads the delivery stack (its mailers,
notifications and DSNs).
"""

from __future__ import annotations

import os

from mta import errors, message, submit
from mta.context import Context
from mta.delivery import mode
from mta.qf import Entry


def announce_queued(ctx: Context, entry: Entry) -> None:
    """Queue-only modes log each recipient as queued (Sendmail's QUP_ANNOUNCE at LogLevel > 8)."""
    if ctx.cfg["LogLevel"] <= 8:
        return
    for r in entry.recipients:
        ctx.log.delivery(entry.qid, to=r.addr, delay=0, mailer="relay" if ctx.cfg.is_msp else "local",
                         pri=entry.priority, stat="queued")


def after_queue(ctx: Context, entry: Entry) -> int:
    """Deliver a fresh entry in this process as mode.plan() says: now, in a child, or not at all.
    A deferral is no error for the submitter: the entry is safely queued."""
    if entry.qdir and entry.qdir != ctx.qdir:  # split into another queue group's directory
        ctx = ctx.at(entry.qdir)
    how = mode.plan(ctx.cfg, verbose=bool(ctx.verbose), priority=entry.priority)
    if how == mode.QUEUE:
        announce_queued(ctx, entry)
        return errors.EX_OK
    if how == mode.BACKGROUND:
        _deliver_in_child(ctx, entry.qid)
        return errors.EX_OK
    from mta.delivery import attempt

    code = attempt.deliver(ctx, entry.qid)
    return errors.EX_OK if code == errors.EX_TEMPFAIL else code


def _deliver_in_child(ctx: Context, qid: str) -> None:
    if os.fork():
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        ctx.interactive = False
        from mta.delivery import attempt

        attempt.deliver(ctx, qid)
    finally:
        os._exit(0)


def after_submit(ctx: Context, done: submit.Submitted) -> int:
    """The command line's submission, finished: errors for the recipients that failed at once go
    to the sender (or a list's owner), then the good ones are delivered as DeliveryMode says."""
    if done.entry is None:
        return done.exitcode
    if not done.queued:  # nothing could be queued: mail the errors back if we can, else keep it
        if ctx.cfg.is_msp or not _bounce_unqueued(ctx, done):
            saved = submit.dead_letter(ctx, done.entry.sender, message.Message(done.entry.headers, done.body),
                                       done.entry.ctime)
            if saved:
                ctx.tell(f"{saved}... Saved message in {saved}")
        return done.exitcode
    bounce_failed(ctx, done)
    delivered = after_queue(ctx, done.entry)  # the good recipients go out now, whatever failed
    for other in done.others:  # the entries of other queue groups, each in its own directory
        delivered = after_queue(ctx, other) or delivered
    return done.exitcode or delivered


def bounce_failed(ctx: Context, done: submit.Submitted) -> None:
    """Errors for the recipients of a queued submission that failed at once: one message to
    each owner (the sender, or a list's owner)."""
    failed = done.failed_by_owner()
    if failed:
        from mta.delivery import attempt

        for owner, errs in failed.items():
            attempt.bounce(ctx, done.entry, errs, body=done.body, to=owner)


def _bounce_unqueued(ctx: Context, done: submit.Submitted) -> bool:
    from mta.delivery import attempt

    try:
        attempt.bounce(ctx, done.entry, [(a, e) for a, e, _o in done.failed], body=done.body)
    except errors.MTAError:
        return False
    return True
