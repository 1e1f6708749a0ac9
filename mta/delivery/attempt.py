"""One delivery attempt of one queue entry, under its flock, and what follows from it.

``deliver()`` locks the entry, routes each recipient, hands the message to the mailers, logs a
to= line per outcome, sends the notifications (one failure DSN per sender or list owner, return
receipts, the delay warning), and either removes the entry or rewrites its qf with what is left
and why (a fresh entry comes here through mta.delivery.fresh); ``send()`` queues a
notification and delivers it: notifications are messages like any other, queued here.
Raises nothing for a bad entry: it is logged and moved aside, or kept for the next run.
"""

from __future__ import annotations

import time

from mta import errors, journal, log, message, notify, qf, queue, router, submit
from mta.context import Context
from mta.delivery import handoff, mode
from mta.mailers import Outcome, table
from mta.qf import Entry, Recipient
from mta.record import record


@record
class Result:
    """What happened to one recipient."""

    rcpt: Recipient
    route: router.Route
    outcome: Outcome


# -- routing ----------------------------------------------------------------------------------------

def _routes_for(ctx: Context, entry: Entry, rcpt: Recipient) -> list[router.Route]:
    # An alias expansion we stored ourselves is delivered as is (programs and files included),
    # but only from a trusted qf in the MTA queue: Sendmail's EF_UNSAFE rule.
    if "A" in rcpt.flags and not ctx.cfg.is_msp and not entry.unsafe:
        from mta import aliases as alias_table

        # C line: ':alias', or 'user:uid:gid:alias' for a .forward's program or file
        user, _, rest = rcpt.ctladdr.partition(":")
        alias = rest.rsplit(":", 1)[-1] if user else rest
        target = alias_table.Target(rcpt.addr, alias=alias or "(queue file)")
        return [router.run_as(router.local_target(ctx.cfg, target, ctx.maps), user)]
    aliases = None if ctx.cfg.is_msp else ctx.aliases
    try:
        return router.resolve(ctx.cfg, aliases, rcpt.addr, ctx.maps)
    except errors.MTAError as exc:  # e.g. an :include: file that cannot be read now: try later
        return [router.Route("error", rcpt.addr, rcpt.addr, error=exc)]


def _attempt(ctx: Context, entry: Entry, body: str) -> list[Result]:
    done = journal.noted(queue.qf_path(ctx.qdir, entry.qid, "j"))
    results: list[Result] = []
    batches: dict[tuple, tuple[table.Agent, list[tuple[Recipient, router.Route]]]] = {}
    for rcpt in entry.recipients:
        for route in _routes_for(ctx, entry, rcpt):
            agent = table.agent(ctx.cfg, route.mailer)
            error = route.error or agent.error
            if error:
                results.append(Result(rcpt, route, Outcome.from_error(error)))
                continue
            key = handoff.batch_key(agent, route, len(batches))
            batches.setdefault(key, (agent, []))[1].append((rcpt, route))
    check = _Checkpoint(ctx, entry)
    todo = list(batches.values())
    for n, (agent, group) in enumerate(todo):
        outcomes = handoff.run_batch(ctx, entry, body, agent, group, done)
        results += [Result(rcpt, route, o) for (rcpt, route), o in zip(group, outcomes, strict=True)]
        check.after(results, [g for _a, g in todo[n + 1:]])
    return results


class _Checkpoint:
    """CheckpointInterval: after every N recipients sent, the qf is rewritten without them, so a
    crash in the middle of a long list resends at most the last N (deliver.c)."""

    def __init__(self, ctx: Context, entry: Entry):
        self.ctx, self.entry, self.every = ctx, entry, ctx.cfg["CheckpointInterval"]
        self.written = 0

    def after(self, results: list[Result], pending: list[list[tuple[Recipient, router.Route]]]) -> None:
        if self.every <= 0:
            return
        waiting = {id(rc) for group in pending for rc, _r in group}
        unsent = {id(r.rcpt) for r in results if r.outcome.kind != "sent"}
        sent = [rc for rc in self.entry.recipients
                if id(rc) not in waiting and id(rc) not in unsent and any(r.rcpt is rc for r in results)]
        if len(sent) - self.written < self.every:
            return
        self.written = len(sent)
        left = Entry(**{n: getattr(self.entry, n) for n in Entry.__record_fields__})
        left.recipients = [rc for rc in self.entry.recipients if all(rc is not s for s in sent)]
        if not left.recipients:
            return
        try:
            queue.checkpoint(self.ctx.qdir, left, self.ctx.cfg["QueueFileMode"])
        except OSError as exc:
            self.ctx.log.line(f"checkpoint: cannot rewrite queue file: {exc.strerror}", self.entry.qid)


# -- logging and counting ---------------------------------------------------------------------------

def ctladdr(entry: Entry) -> str:
    """ctladdr= for the log: the local user who submitted, with uid/gid, as sendmail logs it."""
    relay = entry.macros.get("_", "")
    if not relay.endswith("@localhost"):
        return ""
    pw = router.local_user(relay[:-len("@localhost")])
    return f"{entry.sender} ({pw.pw_uid}/{pw.pw_gid})" if pw else ""


def _count_sent(ctx: Context, entry: Entry, results: list[Result]) -> None:
    """mailstats: one message to each mailer that delivered something of it."""
    if not ctx.cfg["StatusFile"]:
        return
    from mta import stats

    numbers = stats.mailer_numbers(ctx.cfg)
    size = stats.kbytes(entry.body_size + sum(len(h.render()) for h in entry.headers))
    used = {numbers.get(r.route.mailer) for r in results if r.outcome.kind == "sent"} - {None}
    if used:
        stats.record(ctx.cfg["StatusFile"], nt={n: 1 for n in used}, bt={n: size for n in used})


def _log_results(ctx: Context, entry: Entry, results: list[Result], started: float) -> None:
    now = time.time()
    ctl = ctladdr(entry)
    _count_sent(ctx, entry, results)
    groups: dict[tuple, list[str]] = {}
    for res in results:
        key = (res.route.mailer, res.outcome.status, res.outcome.text, res.outcome.relay)
        groups.setdefault(key, []).append(res.route.addr)
    for (mailer, status, text, relay), addrs in groups.items():
        ctx.log.delivery(entry.qid, to=",".join(addrs), ctladdr=ctl, delay=now - entry.ctime,
                         xdelay=now - started,
                         mailer=mailer if mailer != "error" else "local", pri=entry.priority,
                         relay=relay, dsn=status, stat=text)
        for addr in addrs:
            if ctx.verbose:
                ctx.verbose.write(f"{addr}... {text}\n")
            elif ctx.interactive and not status.startswith("2") and not ctx.cfg.is_msp:
                ctx.tell(f"{addr}... {text}")


# -- one attempt ------------------------------------------------------------------------------------

def deliver(ctx: Context, qid: str, known: tuple[tuple, Entry] | None = None) -> int:
    """Try to deliver queue entry qid now; returns a sysexits code for the worst outcome.
    known: what the run read of it (queue.read)."""
    try:
        with queue.lock(ctx.qdir, qid, ctx.run_lost) as fd:
            try:
                entry = queue.read(ctx.qdir, qid, ctx.run_lost, fd=fd, known=known)
                body = queue.read_body(ctx.qdir, qid)
            except qf.BadQueueFile as exc:
                queue.lose(ctx.qdir, qid, exc.why, ctx.log)
                return errors.EX_SOFTWARE
            except FileNotFoundError:
                queue.lose(ctx.qdir, qid, "data file missing", ctx.log)
                return errors.EX_SOFTWARE
            except OSError as exc:
                ctx.log.line(f"cannot open df: {exc.strerror}", qid)
                return errors.EX_TEMPFAIL
            if entry.quarantine and not ctx.run_quarantined:
                return errors.EX_TEMPFAIL  # held: only a -qQ run delivers it (Sendmail's QueueMode)
            return _deliver_locked(ctx, entry, body)
    except queue.Locked:
        return errors.EX_TEMPFAIL
    except errors.MTAError:
        return errors.EX_TEMPFAIL


def _too_many_hops(ctx: Context, entry: Entry) -> list[Result] | None:
    """A mail loop: more Received: headers than MaxHopCount fails every recipient (5.4.6)."""
    hops = sum(1 for h in entry.headers if h.name.lower() == "received")
    limit = ctx.cfg["MaxHopCount"]
    if hops <= limit:
        return None
    ctx.log.line(f"Too many hops {hops} ({limit} max): from {entry.sender}", entry.qid)
    err = errors.MTAError(f"Too many hops {hops} ({limit} max)", status="5.4.6", code=554)
    return [Result(r, router.Route("error", r.addr, r.addr, error=err), Outcome.from_error(err))
            for r in entry.recipients]


def _deliver_locked(ctx: Context, entry: Entry, body: str) -> int:
    if notify.returns_now(ctx.cfg, entry):  # Timeout.queuereturn=now: returned, never tried
        _return(ctx, entry, body, notify.timeouts(ctx.cfg, entry)[1])
        return errors.EX_UNAVAILABLE
    started = time.time()
    results = _too_many_hops(ctx, entry) or _attempt(ctx, entry, body)
    _log_results(ctx, entry, results, started)
    failed = [r for r in results if r.outcome.kind == "bounced"]
    deferred = [r for r in results if r.outcome.kind == "deferred"]
    by_owner: dict[str, list[tuple[str, errors.MTAError]]] = {}
    for r in failed:  # errors for a list's members go to owner-LIST when it exists
        by_owner.setdefault(r.route.owner, []).append((r.route.addr, _error_of(r.outcome)))
    for owner, errs in by_owner.items():
        bounce(ctx, entry, errs, body=body, to=owner)
    receipts = [r for r in results if r.outcome.kind == "sent" and "S" in r.rcpt.flags and not r.outcome.dsn_passed]
    if receipts and entry.sender != "<>":
        send(ctx, notify.receipt(ctx.cfg, entry, [(r.rcpt, r.route.mailer) for r in receipts]))
    exitcode = errors.EX_OK
    for r in failed + deferred:
        if exitcode == errors.EX_OK:
            exitcode = _exitcode_of(r.outcome)
    if not deferred:
        queue.remove(ctx.qdir, entry.qid)
        return exitcode
    _keep(ctx, entry, body, deferred, started)
    return exitcode


def _return(ctx: Context, entry: Entry, body: str, return_after: int) -> None:
    """Timeout.queuereturn: every recipient left is returned to the sender, the entry removed."""
    text = f"Cannot send message for {notify.return_text(return_after)}"
    bounce(ctx, entry, [(r.addr, errors.MTAError(f"{text}: {r.status}" if r.status else text,
                                                 status="4.4.7", code=451)) for r in entry.recipients], body=body)
    queue.remove(ctx.qdir, entry.qid)


def _error_of(outcome: Outcome) -> errors.MTAError:
    code = int(outcome.reply.split()[0]) if outcome.reply[:3].isdigit() else 550
    err = errors.MTAError(outcome.text, status=outcome.status, code=code)
    err.transcript = outcome.output
    return err


def _exitcode_of(outcome: Outcome) -> int:
    if outcome.kind == "deferred":
        return errors.EX_TEMPFAIL
    if outcome.status.startswith("5.1.1"):
        return errors.EX_NOUSER
    if outcome.status.startswith("5.1.2"):
        return errors.EX_NOHOST
    return errors.EX_UNAVAILABLE


def _kept_recipient(r: Result) -> Recipient:
    """A deferred recipient as the qf keeps it: an alias's expansion stays expanded, so the
    members already done are not sent again."""
    rc = r.rcpt
    if not (r.route.alias or "A" in rc.flags):
        return rc
    ctl = f":{r.route.alias}" if r.route.alias else rc.ctladdr
    if r.route.run_as:
        pw = router.local_user(r.route.run_as)
        ctl = f"{pw.pw_name}:{pw.pw_uid}:{pw.pw_gid}:{r.route.alias}"
    return Recipient(r.route.user if r.route.mailer in ("prog", "*file*", "local") else r.route.addr,
                     rc.flags.replace("A", "") + "A", rc.orcpt, rc.final, ctladdr=ctl)


def _keep(ctx: Context, entry: Entry, body: str, deferred: list[Result], started: float) -> None:
    """Rewrite the qf with the deferred recipients, their reasons and the retry bookkeeping."""
    kept: dict[str, Recipient] = {}
    statuses: dict[str, str] = {}  # enhanced status of this attempt, for a delay warning
    for r in deferred:
        rc = _kept_recipient(r)
        kept.setdefault(rc.addr, Recipient(rc.addr, rc.flags, rc.orcpt, rc.final, r.outcome.text, rc.ctladdr))
        statuses.setdefault(rc.addr, r.outcome.status)
    entry.recipients = list(kept.values())
    entry.status = deferred[0].outcome.text
    if entry.tries:  # sendmail adds RetryFactor once per retry, not for the first attempt
        entry.priority += ctx.cfg["RetryFactor"]
    entry.tries += 1
    entry.last_try = int(started)
    age = time.time() - entry.ctime
    warn_after, return_after = notify.timeouts(ctx.cfg, entry)
    if age >= return_after:  # Timeout.queuereturn (0: at the first deferral; now: for a DSN too)
        _return(ctx, entry, body, return_after)
        return
    if age >= warn_after > 0 and "w" not in entry.flags and entry.sender != "<>":
        send(ctx, notify.warning(ctx.cfg, entry, statuses))
        entry.flags += "w"
        entry.status = f"Warning: could not send message for past {log.pintvl_long(warn_after)}"
    submit.as_run_as_user(ctx.cfg, lambda: queue.store(ctx.qdir, entry, None, ctx.cfg["QueueFileMode"]))


# -- notifications ----------------------------------------------------------------------------------

def send(ctx: Context, notice: notify.Notice | None) -> None:
    """Queue a notification from <> and deliver it now, unless DeliveryMode queues everything."""
    if notice is None:
        return
    if notice.origin_qid:
        ctx.log.line(f"{notice.qid}: DSN: {notice.reason}", notice.origin_qid)
    entries = submit.enqueue(ctx, qid=notice.qid, sender="<>", recipients=[notice.rcpt], msg=notice.msg,
                             when=notice.when, macros={"_": "localhost"}, relay="[RESPONSE]")
    if mode.plan(ctx.cfg, notice=True) == mode.NOW:
        for entry in entries:
            deliver(ctx.at(entry.qdir), entry.qid)


def bounce(ctx: Context, entry: Entry, failed: list[tuple[str, errors.MTAError]], *, body: str,
           to: str = "") -> None:
    """One failure DSN for these recipients of entry, to its sender (postmaster for <>), or to
    ``to`` (a list's owner); the MSP hands its errors back in ~/dead.letter, as Sendmail's does."""
    if notify.about_a_notice(entry):
        ctx.log.line("DSN to <> about a DSN: dropped", entry.qid)
        return
    if ctx.cfg.is_msp and _save_dead_letter(ctx, entry, body):
        return
    send(ctx, notify.failure(ctx.cfg, entry, failed, body=body, to=to))


def _save_dead_letter(ctx: Context, entry: Entry, body: str) -> bool:
    saved = submit.dead_letter(ctx, entry.sender, message.Message(entry.headers, body), entry.ctime)
    if saved is None:
        return False
    ctx.log.line(f"Saved message in {saved}", entry.qid)
    if ctx.interactive:
        ctx.tell(f"{saved}... Saved message in {saved}")
    return True
