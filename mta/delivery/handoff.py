"""Handing a message to the mailers: which mailer module runs, with what, for which recipients.

``batch_key`` says which recipients share one run (one SMTP connection per host, one program run
for F=m), ``run_batch`` runs one: SMTP (mta.mailers.esmtp), a program (mta.mailers.program, or
mta.mailers.lmtp when it is spoken to), our local agent or the file mailer, each given what
``render`` makes for its flags.  Local, file and program deliveries are noted in the entry's
journal, so a run killed before it rewrote the qf does not deliver them again.
"""

from __future__ import annotations

import os
import time

from mta import errors, journal, queue, router
from mta.context import Context
from mta.delivery import render
from mta.mailers import Outcome, table
from mta.qf import Entry, Recipient


def _say_connect(ctx: Context, addrs: list[str], route: router.Route) -> None:
    if ctx.verbose:
        where = route.host or route.mailer
        ctx.verbose.write(f"{addrs[0]}... Connecting to {where} via {route.mailer}...\n")


def _traffic(ctx: Context, route: router.Route, text: str) -> None:
    """-X: what a mailer other than SMTP is given (SMTP's dialog is logged by esmtp)."""
    if ctx.traffic is not None:
        pid = f"{os.getpid():05d}"
        ctx.traffic.write(f"{pid} === DELIVER {route.mailer} {route.user}\n")
        ctx.traffic.write("".join(f"{pid} >>> {line}\n" for line in text.rstrip("\n").split("\n")))


def _encrypted(cfg, user: str, text: str, seed: str) -> str:
    """PGP/MIME for recipients that have a key in PGPKeyMap (ext); others get text as it is."""
    from mta import pgp

    key = pgp.key_for(cfg["PGPKeyMap"], user)
    return pgp.encrypt_message(text, key, seed) if key else text


def _local_text(ctx: Context, entry: Entry, body: str, agent: table.Agent, route: router.Route,
                sender: str) -> str:
    """What a local mailer (ours or the cf's program) is given, encrypted when PGPKeyMap says so."""
    text = render.render(entry, body, flags=agent.mailer.flags, sender=sender)
    if ctx.cfg["PGPKeyMap"] and route.mailer == "local":
        text = _encrypted(ctx.cfg, route.user, text, entry.qid)
    return text


def _deliver_one(ctx: Context, entry: Entry, body: str, agent: table.Agent, route: router.Route,
                 commit=None) -> Outcome:
    """A delivery by our own local or file mailer."""
    cfg = ctx.cfg
    sender = render.mailer_sender(cfg, route.mailer, entry.sender)
    try:
        text = _local_text(ctx, entry, body, agent, route, sender)
    except errors.MTAError as exc:
        return Outcome.from_error(exc)
    _traffic(ctx, route, text)
    if agent.kind == table.LOCAL:
        from mta.mailers import local

        return local.deliver(spool=cfg["MailSpoolDirectory"], fmt=cfg["MailboxFormat"],
                             owner=router.local_user(route.user), sender=sender, text=text, when=time.time(),
                             commit=commit)
    from mta.mailers import file

    return file.deliver(path=route.user, text=text, sender=sender, when=time.time(),
                        safe_root=cfg["SafeFileEnvironment"], run_as=route.run_as)


def _program_owner(route: router.Route):
    """The controlling user of a program delivery: the local recipient, a .forward's owner."""
    if route.mailer == "local":
        return router.local_user(route.user)
    return router.local_user(route.run_as) if route.run_as else None


def _program_user(route: router.Route) -> str:
    """$u: the local user, the |command of an alias or .forward, or the address."""
    return route.user[1:] if route.mailer == "prog" else route.user


def _deliver_program(ctx: Context, entry: Entry, body: str, agent: table.Agent,
                     group: list[tuple[Recipient, router.Route]]) -> list[Outcome]:
    """One run of a program mailer (P=/path) for a recipient, or for several with F=m; spoken to
    in LMTP (or SMTP) when the table says so."""
    from mta.mailers import program

    cfg, mailer, route = ctx.cfg, agent.mailer, group[0][1]
    sender = render.mailer_sender(cfg, route.mailer, entry.sender)
    try:
        text = _local_text(ctx, entry, body, agent, route, sender)
    except errors.MTAError as exc:
        return [Outcome.from_error(exc)] * len(group)
    _traffic(ctx, route, text)
    owner = _program_owner(route)
    macros = {"g": sender, "f": entry.sender.strip("<>"), "h": route.host or _detail(route.addr),
              "z": owner.pw_dir if owner else "", "client_addr": _client_addr(entry)}
    users = [_program_user(r) for _rc, r in group]
    argv = render.program_argv(cfg, mailer, users=users, macros=macros)
    dirs = [cfg.expand(d, macros) for d in mailer.fields.get("D", "").split(":")]
    creds, cwd = program.credentials(mailer, owner, cfg["DefaultUser"]), program.workdir(dirs)
    if agent.kind == table.LMTP:
        from mta.mailers import lmtp

        return lmtp.deliver(mailer, argv, sender=sender, recipients=users, text=text, creds=creds, cwd=cwd,
                            env={"SENDER": sender})
    outcome = program.deliver(mailer, argv, render.program_input(cfg, text, mailer=mailer, sender=sender,
                                                                  when=time.time()),
                              creds=creds, cwd=cwd, env={"SENDER": sender})
    return [outcome] * len(group)


def _detail(addr: str) -> str:
    """$h for a local mailer: the +detail of user+detail@host, as Sendmail's local rules give it."""
    local = addr.strip("<>").rpartition("@")[0] or addr.strip("<>")
    return local.partition("+")[2]


def _client_addr(entry: Entry) -> str:
    """${client_addr}: the address in the $_ relay text ('host [192.0.2.1]'), '' for local mail."""
    relay = entry.macros.get("_", "")
    return relay[relay.rfind("[") + 1:-1] if relay.endswith("]") and "[" in relay else ""


def _deliver_smtp(ctx: Context, entry: Entry, body: str, agent: table.Agent,
                  group: list[tuple[Recipient, router.Route]]) -> list[Outcome]:
    from mta.mailers import esmtp

    cfg, mailer, route = ctx.cfg, agent.mailer, group[0][1]
    argv = cfg.expand(mailer.argv, {"h": route.host}).split()
    port = int(argv[2]) if len(argv) > 2 and argv[2].isdigit() else 25
    sender = render.mailer_sender(cfg, route.mailer, entry.sender)
    qualified = Entry(entry.qid, headers=render.qualify_headers(entry.headers, cfg.hostname))
    text = render.render(qualified, body, flags=mailer.flags, sender=sender)
    rcpts = [r.user if "@" in r.user else f"{r.user}@{cfg.hostname}" for _rc, r in group]
    settings = esmtp.settings(cfg, ctx.maps, ctx.verbose, ctx.traffic, mailer.flags)
    return esmtp.deliver(host=route.host, port=port, sender=sender, recipients=rcpts, text=text, s=settings,
                         dsn=render.dsn_parameters(entry, [rc for rc, _r in group]))


def batch_key(agent: table.Agent, route: router.Route, n: int) -> tuple:
    """Which recipients share one mailer run: per host for SMTP, per host and controlling user
    for a program with F=m, else each on its own."""
    if agent.kind == table.SMTP:
        return (agent.name, route.host.lower())
    if agent.kind in (table.PROGRAM, table.LMTP) and "m" in agent.mailer.flags:  # one controlling user per run
        user = route.user if route.mailer == "local" and "S" not in agent.mailer.flags else route.run_as
        return (agent.name, route.host.lower(), route.mailer, user)
    return (agent.name, n)


def run_batch(ctx: Context, entry: Entry, body: str, agent: table.Agent,
               group: list[tuple[Recipient, router.Route]], done: set[str]) -> list[Outcome]:
    _say_connect(ctx, [r.addr for _rc, r in group], group[0][1])
    if agent.kind == table.SMTP:
        return _deliver_smtp(ctx, entry, body, agent, group)
    commits = [_commit(ctx, entry, rc, r) for rc, r in group]
    if all(c.key in done for c in commits):  # delivered by a run killed before it rewrote the qf
        return [Outcome.sent()] * len(group)
    if agent.kind in (table.PROGRAM, table.LMTP):
        outcomes = _deliver_program(ctx, entry, body, agent, group)
    else:
        outcomes = [Outcome.sent() if c.key in done else _deliver_one(ctx, entry, body, agent, r, c)
                    for (_rc, r), c in zip(group, commits, strict=True)]
    for outcome, commit in zip(outcomes, commits, strict=True):
        if outcome.kind == "sent" and agent.kind != table.LOCAL:  # our local mailer notes it under its lock
            _note(ctx, entry, commit)
    return outcomes


def _commit(ctx: Context, entry: Entry, rcpt: Recipient, route: router.Route):
    """How a local, file or program delivery is noted as done in the entry's journal (jf), so a
    run killed before it rewrote the qf does not deliver it again, and a mailbox append killed
    before the note is cut off by the next delivery (mailers/local.py)."""
    return journal.Commit(queue.qf_path(ctx.qdir, entry.qid, "j"), f"{rcpt.addr} {route.mailer} {route.user}",
                        queue.qf_path(ctx.qdir, entry.qid))


def _note(ctx: Context, entry: Entry, commit) -> None:
    try:
        commit.note()
    except OSError as exc:
        ctx.log.line(f"cannot note delivery in {commit.path}: {exc.strerror}", entry.qid)
