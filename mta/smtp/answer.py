"""The work behind an SMTP session's requests: access maps, routing, aliases, PBKDF2.

All of it may block (files, maps, DNS, CPU), so the daemon calls these in a thread pool, off
its event loop (but for MAIL under FEATURE(delay_checks): only a statvfs is left of it then),
and ``sendmail -bs`` calls them inline; a worker process could call them as
well, since a request holds plain data only.  ``answer(ctx, action)`` gives what the session's
``resume`` takes: a ``Refusal`` or None for MAIL and RCPT, the routes for VRFY, True or False
for AUTH.  A typed error (a map or :include: file that cannot be read now) is returned, not
raised, and the session answers it with a 4xx; any other exception is a bug and propagates.
"""

from __future__ import annotations

from mta import errors, queue, submit
from mta.policy import Client, Policy, Refusal, Verdict
from mta.smtp import requests


def connect(ctx, client: Client) -> tuple[Verdict, int]:
    """At connection: the Connect: verdict for every command, and GreetPause in milliseconds."""
    policy = Policy(ctx)
    return policy.connect(client), policy.greet_pause(client)


def mail(ctx, check) -> Verdict:
    """check_mail, then MinFreeBlocks and SIZE= against the queue's file system (enoughdiskspace)."""
    refusal = Policy(ctx).mail(check.client, check.addr)
    if isinstance(refusal, Refusal):
        return refusal
    qdir, blocks = ctx.qdir, ctx.cfg["MinFreeBlocks"]
    avail = queue.low_on_space(qdir, check.size, blocks)
    if avail is None:
        return refusal
    ctx.log.line(f"low on space ({check.client.name or 'SMTP-DAEMON'} needs {check.size} bytes + {blocks} "
                 f"blocks in {qdir}), max avail: {avail}", check.sid)
    return requests.NO_SPACE


def rcpt(ctx, check) -> Verdict:
    return Policy(ctx).rcpt(check.client, check.addr, str(check.addr), sender=check.sender)


def vrfy(ctx, check) -> list:
    from mta import router

    return router.resolve(ctx.cfg, ctx.aliases, str(check.addr), ctx.maps)


def auth(ctx, credentials: tuple[str, str]) -> bool:
    from mta import authdb

    path = ctx.cfg["AuthPasswordFile"]
    return bool(path) and authdb.check(path, *credentials)


HANDLERS = {"mail": mail, "rcpt": rcpt, "vrfy": vrfy, "auth": auth}


def store(ctx, q: requests.Queue) -> list | errors.MTAError:
    """The queue request: the message stored (its entries, one per queue group and recipients
    limit it was split into), or the error to answer DATA with."""
    try:
        return submit.smtp(ctx, q.client, q.envelope, q.proto)
    except errors.MTAError as exc:
        return exc
    except OSError as exc:
        return errors.TempFail(f"Insufficient disk space; try again later ({exc.strerror})",
                               status="4.3.1", code=452)


def answer(ctx, action):
    """The result for one of the session's check requests (kinds in HANDLERS)."""
    try:
        return HANDLERS[action.kind](ctx, action.arg)
    except errors.MTAError as exc:
        return exc
