"""Delivery of queue entries: which entries, and when; retries, delay warnings, expiry, bounces.

``deliver()`` takes one entry under its flock, routes each recipient, hands the message to the
mailers, logs a to= line per outcome, bounces permanent failures (one DSN to the sender), and
either removes the entry or rewrites its qf with what is left and why.  Queue runs (which
entries, and when) are in mta.delivery.schedule.
"""

from __future__ import annotations

import os
import time

from mta import address, errors, log, notify, queue, router
from mta.context import Context
from mta.mailers import Outcome
from mta.message import Header, Message
from mta.queue import Entry, Recipient
from mta.record import record


@record
class Result:
    """What happened to one recipient."""

    rcpt: Recipient
    route: router.Route
    outcome: Outcome


# -- building what a mailer sends ----------------------------------------------------------------

def mailer_sender(cfg, mailer: str, sender: str) -> str:
    """$g as a mailer sees it: MAILER-DAEMON for <> locally, qualified for SMTP mailers."""
    bare = address.unbracket(sender)
    if cfg_is_smtp(cfg, mailer):
        return bare if not bare or "@" in bare else f"{bare}@{cfg.hostname}"
    return bare or "MAILER-DAEMON"


def render(entry: Entry, body: str, *, flags: str, sender: str) -> str:
    """Headers for a mailer with these flags, $g expanded, a blank line, the body."""
    msg = Message(entry.headers, body)
    head = msg.header_text(flags).replace(f"{queue.MACRO_BYTE}g", sender)
    return head + "\n" + body


def _qualify_headers(entry: Entry, host: str) -> list[Header]:
    """For SMTP mailers: bare local names in From/Sender/Reply-To/To/Cc get @$j (HdrFromSMTP)."""
    import re

    out = []
    for h in entry.headers:
        value = h.value
        if h.name.lower() in ("from", "sender", "reply-to", "to", "cc"):
            value = re.sub(r"(^|,\s*|<)([A-Za-z0-9._+-]+)(?=\s*(?:>|,|$))",
                           lambda m: f"{m.group(1)}{m.group(2)}@{host}", value)
        out.append(Header(h.name, value, h.cond))
    return out


# -- delivering one entry ------------------------------------------------------------------------

def _routes_for(ctx: Context, entry: Entry, rcpt: Recipient) -> list[router.Route]:
    # An alias expansion we stored ourselves is delivered as is (programs and files included),
    # but only from a trusted qf in the MTA queue: Sendmail's EF_UNSAFE rule.
    if "A" in rcpt.flags and not ctx.cfg.is_msp and not entry.unsafe:
        from mta import aliases

        # C line: ':alias', or 'user:uid:gid:alias' for a .forward's program or file
        user, _, rest = rcpt.ctladdr.partition(":")
        alias = rest.rsplit(":", 1)[-1] if user else rest
        target = aliases.Target(rcpt.addr, alias=alias or "(queue file)")
        return [router.run_as(router.local_target(ctx.cfg, target, ctx.maps), user)]
    table = None if ctx.cfg.is_msp else ctx.aliases
    return router.resolve(ctx.cfg, table, rcpt.addr, ctx.maps)


def _say_connect(ctx: Context, addrs: list[str], route: router.Route) -> None:
    if ctx.verbose:
        where = route.host or route.mailer
        ctx.verbose.write(f"{addrs[0]}... Connecting to {where} via {route.mailer}...\n")


def _deliver_route(ctx: Context, entry: Entry, body: str, route: router.Route) -> Outcome:
    cfg = ctx.cfg
    mailer = cfg.mailer("local" if route.mailer == "*file*" else route.mailer)
    sender = mailer_sender(cfg, route.mailer, entry.sender)
    text = render(entry, body, flags=mailer.flags, sender=sender)
    if ctx.traffic is not None:  # -X: what this mailer is given
        pid = f"{os.getpid():05d}"
        ctx.traffic.write(f"{pid} === DELIVER {route.mailer} {route.user}\n")
        ctx.traffic.write("".join(f"{pid} >>> {line}\n" for line in text.rstrip("\n").split("\n")))
    if route.mailer == "local":
        from mta.mailers import local

        owner = router.local_user(route.user)
        if cfg["PGPKeyMap"]:
            try:
                text = _encrypted(cfg, route.user, text, entry.qid)
            except errors.MTAError as exc:
                return Outcome.from_error(exc)
        return local.deliver(spool=cfg["MailSpoolDirectory"], fmt=cfg["MailboxFormat"], owner=owner,
                             sender=sender, text=text, when=time.time())
    if route.mailer == "prog":
        from mta.mailers import prog

        user = f"{route.run_as}:" if route.run_as else cfg["DefaultUser"]
        return prog.deliver(command=route.user[1:], text=text, sender=sender, default_user=user,
                            as_root=os.geteuid() == 0)
    from mta.mailers import file

    return file.deliver(path=route.user, text=text, sender=sender, when=time.time(),
                        safe_root=cfg["SafeFileEnvironment"], run_as=route.run_as)


def _encrypted(cfg, user: str, text: str, seed: str) -> str:
    """PGP/MIME for recipients that have a key in PGPKeyMap (ext); others get text as it is."""
    from mta import pgp

    key = pgp.key_for(cfg["PGPKeyMap"], user)
    return pgp.encrypt_message(text, key, seed) if key else text


def _deliver_smtp(ctx: Context, entry: Entry, body: str, route: router.Route,
                  group: list[tuple[Recipient, router.Route]]) -> list[Outcome]:
    from mta.mailers import esmtp

    cfg = ctx.cfg
    mailer = cfg.mailer(route.mailer)
    argv = cfg.expand(mailer.argv, {"h": route.host}).split()
    port = int(argv[2]) if len(argv) > 2 and argv[2].isdigit() else 25
    sender = mailer_sender(cfg, route.mailer, entry.sender)
    qualified = Entry(entry.qid, headers=_qualify_headers(entry, cfg.hostname))
    text = render(qualified, body, flags=mailer.flags, sender=sender)
    rcpts = [r.user if "@" in r.user else f"{r.user}@{cfg.hostname}" for _rc, r in group]
    settings = esmtp.settings(cfg, ctx.maps, ctx.verbose, ctx.traffic, mailer.flags)
    outcomes = esmtp.deliver(host=route.host, port=port, sender=sender, recipients=rcpts, text=text, s=settings,
                             dsn=dsn_parameters(entry, [rc for rc, _r in group]))
    return outcomes


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


def cfg_is_smtp(cfg, mailer: str) -> bool:
    """Is this an [IPC] mailer (smtp, esmtp, smtp8, dsmtp, relay, or one the cf defines)?"""
    m = cfg.mailers.get(mailer)
    return m.is_ipc if m else mailer in ("smtp", "esmtp", "smtp8", "dsmtp", "relay")


def _attempt(ctx: Context, entry: Entry, body: str) -> list[Result]:
    results: list[Result] = []
    smtp_groups: dict[tuple[str, str], list[tuple[Recipient, router.Route]]] = {}
    for rcpt in entry.recipients:
        for route in _routes_for(ctx, entry, rcpt):
            if route.error:
                results.append(Result(rcpt, route, Outcome.from_error(route.error)))
            elif cfg_is_smtp(ctx.cfg, route.mailer):
                smtp_groups.setdefault((route.mailer, route.host.lower()), []).append((rcpt, route))
            else:
                _say_connect(ctx, [route.addr], route)
                results.append(Result(rcpt, route, _deliver_route(ctx, entry, body, route)))
    for group in smtp_groups.values():
        first = group[0][1]
        _say_connect(ctx, [r.addr for _rc, r in group], first)
        for (rcpt, route), outcome in zip(group, _deliver_smtp(ctx, entry, body, first, group), strict=True):
            results.append(Result(rcpt, route, outcome))
    return results


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


def deliver(ctx: Context, qid: str, *, force: bool = True) -> int:
    """Try to deliver queue entry qid now; returns a sysexits code for the worst outcome."""
    try:
        with queue.lock(ctx.qdir, qid):
            try:
                entry = queue.read(ctx.qdir, qid)
                body = queue.read_body(ctx.qdir, qid)
            except queue.BadQueueFile as exc:
                ctx.log.line(f"Losing {queue.qf_path(ctx.qdir, qid)}: {exc.text}", qid)
                queue.lose(ctx.qdir, qid)
                return errors.EX_SOFTWARE
            except OSError as exc:
                ctx.log.line(f"cannot open df: {exc.strerror}", qid)
                return errors.EX_TEMPFAIL
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
    started = time.time()
    results = _too_many_hops(ctx, entry) or _attempt(ctx, entry, body)
    _log_results(ctx, entry, results, started)
    failed = [r for r in results if r.outcome.kind == "bounced"]
    deferred = [r for r in results if r.outcome.kind == "deferred"]
    by_owner: dict[str, list[tuple[str, errors.MTAError]]] = {}
    for r in failed:  # errors for a list's members go to owner-LIST when it exists
        by_owner.setdefault(r.route.owner, []).append((r.route.addr, _error_of(r.outcome)))
    for owner, errs in by_owner.items():
        notify.bounce(ctx, entry, errs, body=body, to=owner)
    receipts = [r for r in results if r.outcome.kind == "sent" and "S" in r.rcpt.flags and not r.outcome.dsn_passed]
    if receipts and entry.sender != "<>":
        notify.receipt(ctx, entry, receipts)
    exitcode = errors.EX_OK
    for r in failed + deferred:
        if exitcode == errors.EX_OK:
            exitcode = _exitcode_of(r.outcome)
    if not deferred:
        queue.remove(ctx.qdir, entry.qid)
        return exitcode
    _keep(ctx, entry, body, deferred, started)
    return exitcode


def _error_of(outcome: Outcome) -> errors.MTAError:
    code = int(outcome.reply.split()[0]) if outcome.reply[:3].isdigit() else 550
    return errors.MTAError(outcome.text, status=outcome.status, code=code)


def _exitcode_of(outcome: Outcome) -> int:
    if outcome.kind == "deferred":
        return errors.EX_TEMPFAIL
    if outcome.status.startswith("5.1.1"):
        return errors.EX_NOUSER
    if outcome.status.startswith("5.1.2"):
        return errors.EX_NOHOST
    return errors.EX_UNAVAILABLE


def _keep(ctx: Context, entry: Entry, body: str, deferred: list[Result], started: float) -> None:
    """Rewrite the qf with the deferred recipients, their reasons and the retry bookkeeping."""
    kept: dict[str, Recipient] = {}
    statuses: dict[str, str] = {}  # enhanced status of this attempt, for a delay warning
    for r in deferred:
        rc = r.rcpt
        if r.route.alias or "A" in rc.flags:  # keep the expansion, so done members are not resent
            ctl = f":{r.route.alias}" if r.route.alias else rc.ctladdr
            if r.route.run_as:
                pw = router.local_user(r.route.run_as)
                ctl = f"{pw.pw_name}:{pw.pw_uid}:{pw.pw_gid}:{r.route.alias}"
            rc = Recipient(r.route.user if r.route.mailer in ("prog", "*file*", "local") else r.route.addr,
                           rc.flags.replace("A", "") + "A", rc.orcpt, rc.final, ctladdr=ctl)
        kept.setdefault(rc.addr, Recipient(rc.addr, rc.flags, rc.orcpt, rc.final, r.outcome.text, rc.ctladdr))
        statuses.setdefault(rc.addr, r.outcome.status)
    entry.recipients = list(kept.values())
    entry.status = deferred[0].outcome.text
    if entry.tries:  # sendmail adds RetryFactor once per retry, not for the first attempt
        entry.priority += ctx.cfg["RetryFactor"]
    entry.tries += 1
    entry.last_try = int(started)
    now = time.time()
    age = now - entry.ctime
    if age >= ctx.cfg["Timeout.queuereturn"] > 0:
        text = f"Cannot send message for {log.pintvl_long(ctx.cfg['Timeout.queuereturn'])}"
        notify.bounce(ctx, entry, [(r.addr, errors.MTAError(f"{text}: {r.status}", status="4.4.7", code=451))
                                   for r in entry.recipients], body=body)
        queue.remove(ctx.qdir, entry.qid)
        return
    if age >= ctx.cfg["Timeout.queuewarn"] > 0 and "w" not in entry.flags and entry.sender != "<>":
        notify.warn(ctx, entry, body, statuses)
        entry.flags += "w"
        entry.status = f"Warning: could not send message for past {log.pintvl_long(ctx.cfg['Timeout.queuewarn'])}"
    queue.store(ctx.qdir, entry, None, ctx.cfg["QueueFileMode"])


# -- after submission and queue runs ----------------------------------------------------------------

def after_submit(ctx: Context, entry: Entry) -> int:
    """Deliver a fresh entry as DeliveryMode says: i now, b in a child, q and d not at all."""
    mode = ctx.cfg["DeliveryMode"]
    if mode in ("q", "d"):
        for r in entry.recipients:
            ctx.log.delivery(entry.qid, to=r.addr, delay=0, mailer="relay" if ctx.cfg.is_msp else "local",
                             pri=entry.priority, stat="queued")
        return errors.EX_OK
    if mode == "b" and not ctx.verbose:
        pid = os.fork()
        if pid:
            return errors.EX_OK
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            ctx.interactive = False
            deliver(ctx, entry.qid)
        finally:
            os._exit(0)
    code = deliver(ctx, entry.qid)
    return errors.EX_OK if code == errors.EX_TEMPFAIL else code
