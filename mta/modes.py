"""Operation modes: what `sendmail -bX` (and mailq, newaliases, -q) does with a parsed request.

``run(request)`` picks the configuration as sendmail does (-C, else -Ac/-Am, else submit.cf
for plain submission and sendmail.cf for everything else), builds the Context and calls the
one core function for the mode.  Errors are MTAError; the front prints them.
"""

from __future__ import annotations

import os
import sys
import time

from mta import config, errors, log, options
from mta.context import Context


def choose_cf(req) -> str:
    """-C wins; else -Ac/-Am; else submit.cf for plain submission and -bs, sendmail.cf otherwise."""
    if req.cf:
        if req.submit_cf and os.path.basename(req.cf) != "submit.cf":
            return config.submit_path_for(req.cf)
        return req.cf
    if req.submit_cf is True:
        return config.DEFAULT_SUBMIT_CF
    if req.submit_cf is False or req.mode not in ("m", "s") or req.queue_run:
        return config.DEFAULT_CF
    return config.DEFAULT_SUBMIT_CF  # plain submission and -bs go through the MSP, as Debian's


def _context(req, ident: str | None = "sendmail") -> Context:
    """The config and context for a mode; log lines go under -L's ident, else the mode's own
    (Debian's: sendmail for commands, sm-mta for the daemon, sm-msp-queue for MSP queue runs)."""
    cfg = config.load(choose_cf(req), req.overrides)
    ctx = Context.create(cfg, req.log_ident or ident, verbose=req.verbose)
    if req.traffic_log:  # -X: append, line-buffered, as Sendmail's TrafficLogFile
        try:
            ctx.traffic = open(req.traffic_log, "a", buffering=1, encoding="latin-1", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise errors.CantCreate(f"cannot open {req.traffic_log}: {exc.strerror}") from exc
    if req.verbose and cfg.ignored_rules:
        print(f"Notice: {cfg.path}: {cfg.ignored_rules} rule set lines (S/R) ignored; "
              "routing comes from maps and mailers", flush=True)
    return ctx


def _selection(req):
    from mta.delivery import schedule

    picks = {"I": [], "R": [], "S": [], "Q": []}
    for kind, text, negate in req.queue_select:
        if kind in picks:
            picks[kind].append((text, negate))
    return schedule.Selection(tuple(picks["I"]), tuple(picks["R"]), tuple(picks["S"]), tuple(picks["Q"]),
                              quarantined=req.queue_quarantined, group=req.queue_group, lost=req.queue_lost)


def run(req) -> int:
    if req.debug:
        from mta import identity

        level = identity.debug_level(req.debug)
        if level:
            sys.stdout.write(identity.banner(config.load(choose_cf(req), req.overrides), level))
            sys.stdout.flush()
            if req.mode == "m" and not req.recipients and not req.queue_run:
                return errors.EX_OK
    handler = {"m": submit, "p": print_queue, "i": rebuild_aliases, "v": verify, "d": daemon, "D": daemon,
               "s": smtp_stdio, "h": host_status, "H": purge_status, "P": queue_stats, "z": frozen,
               "t": address_test}.get(req.mode)
    if req.queue_run and req.mode == "m":
        handler = run_queue
    if handler is None:
        print(f"Invalid operation mode {req.mode}", flush=True)
        return errors.EX_USAGE
    return handler(req)


def submit(req) -> int:
    if not req.recipients and not req.read_headers:
        print("Recipient names must be specified", flush=True)
        return errors.EX_USAGE
    from mta import submit as submission
    from mta.delivery import fresh

    ctx = _context(req)
    ctx.interactive = True
    data = sys.stdin.buffer.read()
    sub = submission.Submission(tuple(req.recipients), req.sender, req.full_name, req.read_headers,
                                req.notify, req.ret, req.envid, req.bodytype)
    from mta import maildrop

    if maildrop.wanted(ctx):  # a user who may not write the queue: the daemon takes it from here
        return maildrop.drop(ctx, sub, data)
    return fresh.after_submit(ctx, submission.command_line(ctx, sub, data))


def print_queue(req) -> int:
    from mta import mailq, qgroups

    ctx = _context(req)
    sel = _selection(req)
    if req.delete:
        return _manage(req, ctx, sel, None)
    cfg = ctx.cfg
    dirs = [d for g, d in qgroups.all_directories(cfg) if not sel.group or g.name == sel.group]
    show = {"selection": sel, "verbose": req.verbose, "min_age": cfg["MinQueueAge"]}
    msp_dir = ctx.qdir if cfg.is_msp else config.msp_queue_dir(cfg)
    if os.geteuid() != 0 and not req.json and not all(
            os.access(d, os.R_OK | os.X_OK) for d in ([msp_dir, *dirs] if req.prog == "mailq" else dirs)):
        return _listing_from_daemon(req, ctx, msp_dir)
    if req.prog == "mailq":
        if req.json:
            mta = [("MTA", d) for d in dirs]
            sys.stdout.write(mailq.as_json([("MSP", msp_dir), *mta], sel))
            return errors.EX_OK
        msp = [mailq.listing(msp_dir, **show)]  # with -Ac both sections list it: read once, printed twice
        _write_raw(["MSP Queue status...\n"])
        _write_raw(mailq.with_total(msp))
        _write_raw(["MTA Queue status...\n"])
        _write_raw(mailq.with_total(msp) if req.submit_cf else mailq.show(dirs, **show, cfg=cfg))
        return errors.EX_OK
    _write_raw(mailq.show(dirs, **show, cfg=cfg))
    return errors.EX_OK


def _write_raw(pieces) -> None:
    """A queue listing as Sendmail prints it: the bytes of the control files as they are (our
    text of them is latin-1, a character per byte), not encoded again for the terminal."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    for piece in pieces:
        out.write(piece.encode("latin-1", "replace"))


def _listing_from_daemon(req, ctx: Context, msp_dir: str) -> int:
    """A user who cannot read the queues (Debian's are smmsp's) gets the daemon's listing, as
    from Sendmail's setgid mailq; PrivacyOptions=restrictmailq decides there.  Never an empty
    list for a queue we could not read."""
    from mta import maildrop

    args = (["-v"] if req.verbose else []) + [f"-q{'!' if neg else ''}{kind}{text}"
                                              for kind, text, neg in req.queue_select]
    parts = [("MSP", True, msp_dir), ("MTA", bool(req.submit_cf), ctx.qdir)] if req.prog == "mailq" else [
        ("", ctx.cfg.is_msp, ctx.qdir)]
    status = errors.EX_OK
    for title, msp, qdir in parts:
        got = maildrop.ask_listing(maildrop.directory(ctx.cfg), ["-Ac" if msp else "-Am", *args])
        if got is None:
            got = (errors.EX_NOPERM, f"{qdir}: Permission denied (the daemon that lists it for users does "
                                     "not answer)\n")
        _write_raw([f"{title} Queue status...\n" if title else "", got[1]])
        status = status or got[0]
    sys.stdout.flush()
    return status


def _manage(req, ctx: Context, sel, reason: str | None) -> int:
    """-Qreason / -Q (quarantine, release) and mailq --delete (ext): trusted users only, and
    only with a selection (-qI/-qR/-qS/-qQ), so a stray flag never touches the whole queue."""
    from mta.delivery import schedule

    if not ctx.trusted():
        action = "delete jobs" if req.delete else "quarantine jobs"
        ctx.log.line(f"user {os.getuid()} attempted to {action}")
        print("Permission denied (real uid not trusted)", flush=True)
        return errors.EX_USAGE
    if req.delete:
        if not sel.subset:
            print("mailq --delete needs -qI, -qR, -qS or -qQ to say which entries", flush=True)
            return errors.EX_USAGE
        return schedule.delete(ctx, sel)
    return schedule.quarantine(ctx, sel, reason)


def rebuild_aliases(req) -> int:
    from mta import aliases

    ctx = _context(req)
    if not ctx.trusted():
        print("Permission denied (real uid not trusted)", flush=True)
        return errors.EX_USAGE
    path = ctx.cfg["AliasFile"]
    count, longest, total = aliases.build(path)
    ctx.log.line(f"alias database {path} rebuilt by {ctx.user.pw_name}")
    summary = f"{path}: {count} aliases, longest {longest} bytes, {total} bytes total"
    ctx.log.line(summary)
    print(summary, flush=True)
    return errors.EX_OK


def verify(req) -> int:
    """-bv: route each address and say where it would go; 67 if any is unknown."""
    from mta import router

    if not req.recipients:
        print("Recipient names must be specified", flush=True)
        return errors.EX_USAGE
    ctx = _context(req)
    table = None if ctx.cfg.is_msp else ctx.aliases
    exitcode = errors.EX_OK
    good, bad = [], []
    for text in req.recipients:
        for route in router.resolve(ctx.cfg, table, text, ctx.maps):
            (bad if route.error else good).append(route)
    for route in bad:
        print(f"{route.addr}... {route.describe(req.verbose)}")
        if exitcode == errors.EX_OK:
            exitcode = route.error.exitcode
    for route in good:
        name = route.user if route.mailer in ("prog", "*file*") else route.addr
        print(f"{name}... {route.describe(req.verbose)}")
    return exitcode


def daemon(req) -> int:
    """-bd (detached) and -bD (foreground): the SMTP daemon, with -qTIME a queue runner too."""
    from mta import proctitle, workers

    ctx = _context(req, "sm-mta")
    if not ctx.trusted():
        print("550 Permission denied (real uid not trusted)", flush=True)
        return errors.EX_USAGE
    interval = options.interval(req.queue_interval) if req.queue_interval else 0
    proctitle.sendmail(ctx.cfg, "accepting connections")
    from mta import check

    for name in check.unimplemented_options(ctx.cfg):  # no silent gaps: each named once
        ctx.log.line(f"{ctx.cfg.path}: option {name} is not implemented; ignored")
    return workers.serve(ctx, queue_interval=interval, foreground=req.mode == "D", overrides=req.overrides)


def smtp_stdio(req) -> int:
    """-bs: SMTP on standard input/output, as the local user."""
    from mta import smtpd

    ctx = _context(req)
    return smtpd.stdio(ctx, ctx.user.pw_name)


def run_queue(req) -> int:
    from mta.delivery import schedule

    ctx = _context(req, None)  # sm-mta, or sm-msp-queue for the MSP queue
    if req.quarantining is not None:
        return _manage(req, ctx, _selection(req), req.quarantining or None)
    if os.getuid() != 0 and "restrictqrun" in ctx.cfg["PrivacyOptions"] and not ctx.trusted():
        print("You do not have permission to process the queue", flush=True)
        return errors.EX_NOPERM
    if not os.path.isdir(ctx.qdir):
        print(f"cannot chdir({ctx.qdir}/): No such file or directory", flush=True)
        return errors.EX_CONFIG
    selection = _selection(req)
    interval = options.interval(req.queue_interval) if req.queue_interval else 0
    from mta import maildrop

    maildrop.pickup(ctx.cfg)  # root's runs also take what users dropped (mta.maildrop)
    if interval <= 0:
        return schedule.run_queue(ctx, selection)
    from mta import process, proctitle

    process.daemonize()  # sendmail -q15m / -qp: a queue-runner daemon in the background
    proctitle.sendmail(ctx.cfg, f"Queue runner@{log.pintvl(interval)} for {ctx.qdir}")
    kind = "persistent queueing" if req.queue_persistent else "queueing"
    ctx.log.line(f"starting daemon ({config.VERSION}): {kind}@{log.pintvl(interval)}")
    return _runner(req, ctx, selection, interval)


def _runner(req, ctx: Context, selection, interval: int) -> int:
    """A queue runner daemon's life: run, wait, run again, for ever.  Its PidFile is written, as
    Sendmail's main() does.  SIGHUP (Debian's init script's reload) ends the wait (one that comes
    during a run is kept until the run is over): the config is read again and the next run
    starts.  -qp waits at least 5 s after a run that found nothing to do."""
    import select
    import signal

    from mta import maildrop, process
    from mta.delivery import schedule

    process.write_pidfile(ctx, sys.argv)
    woken, wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake)  # a SIGHUP writes a byte here, whenever it comes
    signal.signal(signal.SIGHUP, lambda _sig, _frame: None)  # handled: not the end of us
    while True:
        started = time.monotonic()
        if not req.queue_persistent:
            maildrop.pickup(ctx.cfg)
        schedule.run_queue(ctx, selection, persistent=req.queue_persistent, periodic=True)
        wait = interval
        if req.queue_persistent:
            wait = max(interval, 5 if time.monotonic() - started < 0.5 else 1)
        if select.select([woken], [], [], wait)[0]:
            os.read(woken, 4096)  # a byte for each SIGHUP since the last wait
            fresh = process.reloaded(ctx, req.overrides)  # None (logged): the old config stays
            if fresh is not None:
                ctx = fresh
                ctx.log.line("restarting on SIGHUP: configuration re-read")


def host_status(req) -> int:
    """hoststat (-bh): the persistent host status."""
    from mta import hoststat

    sys.stdout.write(hoststat.report(_context(req).cfg["HostStatusDirectory"], req.verbose))
    return errors.EX_OK


def purge_status(req) -> int:
    """purgestat (-bH): drop host statuses older than Timeout.hoststatus."""
    from mta import hoststat

    cfg = _context(req).cfg
    hoststat.purge(cfg["HostStatusDirectory"], cfg["Timeout.hoststatus"])
    return errors.EX_OK


def queue_stats(req) -> int:
    print("Data unavailable without shared memory support", flush=True)
    return errors.EX_OK


def frozen(req) -> int:
    print("Frozen configurations unsupported", flush=True)
    return errors.EX_USAGE


def address_test(req) -> int:
    print("Address test mode (-bt) needs rule sets, which sendmail-py does not run; "
          "use sendmail -bv ADDRESS", flush=True)
    return errors.EX_CONFIG
