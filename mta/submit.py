"""Submission: envelope + message -> a durable queue entry.  The one way mail gets in.

``enqueue()`` adds the headers sendmail adds, computes the priority, stores df and qf durably
and logs the from= line; only then may the caller acknowledge the message.
``command_line()`` is sendmail(8)'s submission from a pipe: -t, -i, -f, -F, -N, -R, -V, -B,
recipient checks at submission (so 'User unknown' is known before exit); it returns a
``Submitted`` that the delivery layer finishes (errors mailed back, delivery as DeliveryMode
says).  When nothing could be queued, the message goes to ~/dead.letter.
Imports nothing above it: notifications and delivery are the delivery layer's.
"""

from __future__ import annotations

import os
import time

from mta import address, errors, message, qgroups, queue, router
from mta.context import Context
from mta.message import Header, Message
from mta.qf import Entry, Recipient
from mta.record import factory, record


@record(frozen=True)
class Submission:
    """What the sendmail front asks for (argv already parsed)."""

    recipients: tuple[str, ...] = ()
    sender: str | None = None  # -f / -r
    full_name: str | None = None  # -F
    read_headers: bool = False  # -t
    notify: str = ""  # -N
    ret: str = ""  # -R
    envid: str = ""  # -V
    bodytype: str = ""  # -B


@record
class Submitted:
    """What the command line's submission did: the entry (queued, or only built when every
    recipient failed), its body, the recipients that failed at once and the exit code so far."""

    exitcode: int
    entry: Entry | None = None
    body: str = ""
    queued: bool = False
    failed: list = factory(list)  # (address, MTAError, owner-LIST or '')
    others: list = factory(list)  # the other entries it was split into (queue groups, r=)

    def failed_by_owner(self) -> dict[str, list]:
        """Failures grouped by who hears of them: a list's owner-LIST, or '' for the sender."""
        out: dict[str, list] = {}
        for addr, err, owner in self.failed:
            out.setdefault(owner, []).append((addr, err))
        return out


def sender_form(text: str) -> str:
    """The qf S / log from= form: '<>' for null, '<a@b>' when qualified, bare local names."""
    addr = address.parse(text)
    if addr.null:
        return "<>"
    return addr.bracketed if addr.domain else addr.local


def qualified(text: str, host: str) -> str:
    """An address with @host added when it has no domain (for RFC822; final recipients)."""
    try:
        addr = address.parse(text)
    except errors.AddressError:
        return text
    return str(addr) if addr.domain else f"{addr.local}@{host}"


def precedence_class(ctx: Context, msg: Message) -> int:
    h = msg.get("Precedence")
    return ctx.cfg.precedences.get(h.value.strip().lower(), 0) if h else 0


def notify_flags(notify: str) -> str:
    """-N / NOTIFY= -> R line flags: S F D, N alone for NEVER; default F and D."""
    if not notify:
        return "FD"
    words = {w.strip().lower() for w in notify.split(",")}
    if "never" in words:
        return "N"
    return "N" + "".join(f for f, w in (("S", "success"), ("F", "failure"), ("D", "delay")) if w in words)


def add_headers(ctx: Context, msg: Message, *, qid: str, when: float, sender: str, full_name: str,
                received: str, auth_warning: str = "") -> None:
    """Put in front what sendmail adds: Return-Path, Received, and any missing Date, From and
    Message-Id (proto.m4's H lines, in that order), then X-Authentication-Warning."""
    host = ctx.cfg.hostname
    added = [Header("Return-Path", f"<{queue.MACRO_BYTE}g>", "P"), Header("Received", received)]
    if not msg.get("Date"):
        added.append(Header("Date", message.arpadate(when), "D"))
    if not msg.get("From") and sender != "<>":
        added.append(Header("From", message.from_header(address.unbracket(sender), full_name), "F"))
    if not msg.get("Message-Id"):
        added.append(Header("Message-Id", message.message_id(qid, host, when), "M"))
    if auth_warning:
        added.append(Header("X-Authentication-Warning", auth_warning))
    msg.headers = [h for h in msg.headers if h.name.lower() != "return-path"]
    msg.headers[:0] = added


def run_as(cfg) -> tuple[int, int] | None:
    """RunAsUser's (uid, gid): ``user``, ``user:group`` or numbers, as readcf reads it; None when
    it is not set or names nobody on this system."""
    import grp
    import pwd

    user, _, group = cfg["RunAsUser"].partition(":")
    if not user:
        return None
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        gid = (int(group) if group.isdigit() else grp.getgrnam(group).gr_gid) if group else pw.pw_gid
    except KeyError:
        return None
    return pw.pw_uid, gid


def as_run_as_user(cfg, write):
    """write(), as RunAsUser when root writes the MSP queue: Sendmail's MSP (set-group-id smmsp,
    RunAsUser=smmsp) runs as that user, and its own queue runs (Debian's cron-msp) must be able
    to take what root left there."""
    ids = run_as(cfg) if cfg.is_msp and os.geteuid() == 0 else None
    if ids is None:
        return write()
    egid = os.getegid()
    os.setegid(ids[1])
    os.seteuid(ids[0])
    try:
        return write()
    finally:
        os.seteuid(0)
        os.setegid(egid)


def enqueue(ctx: Context, *, qid: str, sender: str, recipients: list[Recipient], msg: Message,
            when: float, macros: dict[str, str], flags: str = "", bodytype: str = "", envid: str = "",
            proto: str = "", daemon: str = "", relay: str = "", quarantine: str = "") -> list[Entry]:
    """Store the message durably and log its from= line; returns its entries: the one with qid
    first, then one per other queue group and per group's recipients limit (qgroups.split)."""
    klass, size = precedence_class(ctx, msg), msg.size  # size: the headers rendered, once
    entry = Entry(qid, ctime=int(when), priority=size - klass * ctx.cfg["ClassFactor"]
                  + len(recipients) * ctx.cfg["RecipientFactor"], flags=flags, bodytype=bodytype,
                  macros=macros, sender=sender, envid=envid, recipients=recipients, headers=msg.headers,
                  quarantine=quarantine)
    pieces, splits = qgroups.split(ctx.cfg, entry, recipient_groups(ctx, recipients))
    entries = as_run_as_user(ctx.cfg, lambda: qgroups.store(ctx.cfg, pieces, msg.body, ctx.cfg["QueueFileMode"],
                                                            current=ctx.qdir))
    for e in entries:
        e.body_size = len(msg.body)  # latin-1 text: a character a byte
    _count_from(ctx, sender, size)
    msgid = msg.get("Message-Id")
    ctx.log.sender(qid, sender=sender, size=size, klass=klass, nrcpts=len(recipients),
                   msgid=msgid.value.strip() if msgid else "", bodytype=bodytype, proto=proto,
                   daemon=daemon, relay=relay)
    if ctx.cfg["LogLevel"] > 8:
        for split_qid, text in splits:
            ctx.log.line(text, split_qid)
    return entries


def recipient_groups(ctx: Context, recipients: list[Recipient]) -> list[str | None]:
    """Each recipient's queue group: the Q= of the mailer it routes to (None: no Q=, or no
    route now).  Routing is done only when some mailer names a queue group."""
    by_mailer = qgroups.mailer_groups(ctx.cfg)
    if not by_mailer:
        return [None] * len(recipients)
    table = None if ctx.cfg.is_msp else ctx.aliases
    out: list[str | None] = []
    for r in recipients:
        routes = router.resolve(ctx.cfg, table, r.addr, ctx.maps)
        good = next((route for route in routes if not route.error), None)
        out.append(by_mailer.get(good.mailer) if good else None)
    return out


def check_space(ctx: Context, qid: str, size: int) -> None:
    """Refuse a new message while the queue's file system is below MinFreeBlocks (pickqdir)."""
    blocks = ctx.cfg["MinFreeBlocks"]
    avail = queue.low_on_space(ctx.qdir, size, blocks)
    if avail is not None:
        ctx.log.line(f"low on space (SMTP-DAEMON needs {size} bytes + {blocks} blocks in {ctx.qdir}), "
                     f"max avail: {avail}", qid)
        raise errors.TempFail("Insufficient disk space; try again later", status="4.4.5", code=452)


def _count_from(ctx: Context, sender: str, size: int) -> None:
    """mailstats: a message from the local mailer, or from esmtp for a remote sender."""
    if not ctx.cfg["StatusFile"]:
        return
    from mta import stats

    _, at, domain = address.unbracket(sender).rpartition("@")
    name = "local" if not at or ctx.cfg.is_local_host(domain) else "esmtp"
    n = stats.mailer_numbers(ctx.cfg).get(name, 3)
    stats.record(ctx.cfg["StatusFile"], nf={n: 1}, bf={n: stats.kbytes(size)})


def header_recipients(msg: Message) -> list[str]:
    """-t: the addresses in To, Cc and Bcc (Resent-* when present, as sendmail does)."""
    names = ("resent-to", "resent-cc", "resent-bcc")
    if not any(msg.get(n) for n in names):
        names = ("to", "cc", "bcc")
    out = []
    for h in msg.headers:
        if h.name.lower() in names:
            out.extend(address.split_list(h.value.replace("\n", " ")))
    return out


def dead_letter(ctx: Context, sender: str, msg: Message, when: float) -> str | None:
    """Save a message we could not queue in ~/dead.letter (or DeadLetterDrop); returns the path."""
    text = "".join(h.render() for h in msg.headers).replace(f"<{queue.MACRO_BYTE}g>", f"<{address.unbracket(sender)}>")
    blob = f"From {address.unbracket(sender) or 'MAILER-DAEMON'} {message.ctime(when)}\n{text}\n{msg.body}"
    blob += "" if blob.endswith("\n") else "\n"
    for path in (os.path.join(ctx.user.pw_dir, "dead.letter"), ctx.cfg["DeadLetterDrop"]):
        if not path:
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, message.to_bytes(blob + "\n"))
                os.fsync(fd)
            finally:
                os.close(fd)
            return path
        except OSError:
            continue
    return None


def smtp(ctx: Context, client, envelope, proto: str) -> list[Entry]:
    """A message received over SMTP (daemon or -bs): queue it durably; returns its entries
    (the one whose ID the reply names first).

    The data is the unstuffed DATA with CRLF line ends; the queue keeps LF, as Sendmail does."""
    when = time.time()
    qid = queue.new_id()
    msg = message.parse(message.from_bytes(envelope.data).replace("\r\n", "\n"))
    rcpts = envelope.recipients
    version = f"{ctx.cfg.macros['v']}/{ctx.cfg.macros['Z']}"
    received = message.received(
        host=ctx.cfg.hostname, version=version, qid=qid, when=when, helo=client.helo,
        relay=client.relay_text, proto=proto, for_rcpt=f"<{rcpts[0].addr}>" if len(rcpts) == 1 else "",
        tls=client.tls_info if getattr(client, "tls_info", "") else "", auth=client.auth)
    sender = "<>" if not envelope.sender else sender_form(envelope.sender)
    add_headers(ctx, msg, qid=qid, when=when, sender=sender, full_name="", received=received)
    recipients = [Recipient(f"<{r.addr}>", "P" + notify_flags(r.notify), r.orcpt,
                            f"RFC822; {qualified(r.addr, ctx.cfg.hostname)}") for r in rcpts]
    macros = {"_": client.relay_text, "r": proto, "s": client.helo, "daemon_flags": ""}
    if client.addr:
        macros["if_addr"] = getattr(client, "local_addr", "")
    flags = "n" if envelope.ret == "HDRS" else ""
    check_space(ctx, qid, msg.size)
    return enqueue(ctx, qid=qid, sender=sender, recipients=recipients, msg=msg, when=when, macros=macros,
                   flags=flags, bodytype=envelope.body_type, envid=envelope.envid, proto=proto,
                   daemon=client.daemon if client.addr else "", relay=client.relay_text,
                   quarantine=envelope.quarantine)


def command_line(ctx: Context, sub: Submission, data: bytes) -> Submitted:
    """sendmail [flags] [recipients] < message: check the recipients and queue the message."""
    cfg = ctx.cfg
    when = time.time()
    msg = message.parse(message.collect(data, cfg["IgnoreDots"]))
    rcpts = list(sub.recipients)
    flags = ""
    if sub.read_headers:
        try:
            rcpts += header_recipients(msg)
        except errors.AddressError as exc:
            ctx.say(f"{exc.text}")
        if any(h.name.lower() in ("bcc", "resent-bcc") for h in msg.headers):
            flags += "b"
        msg.remove("Bcc")
        msg.remove("Resent-Bcc")
    if not rcpts:
        if sub.read_headers:
            ctx.tell("No recipient addresses found in header")
            dead_letter(ctx, sub.sender or ctx.user.pw_name, msg, time.time())  # kept, not lost
            return Submitted(errors.EX_OK)
        ctx.tell("Recipient names must be specified")
        return Submitted(errors.EX_USAGE)

    login = ctx.user.pw_name
    sender = sender_form(sub.sender) if sub.sender is not None else login
    auth_warning = ""
    if sub.sender is not None and not ctx.trusted() and address.unbracket(sender) != login and (
            "authwarnings" in cfg["PrivacyOptions"] or not cfg["PrivacyOptions"]):
        auth_warning = f"{cfg.hostname}: {login} set sender to {sender} using -f"
    full_name = sub.full_name if sub.full_name is not None else (
        ctx.user.pw_gecos.split(",")[0] if sub.sender is None or address.unbracket(sender) == login else "")

    qid = queue.new_id()
    unique = list(dict.fromkeys(rcpts))
    version = f"{cfg.macros['v']}/{cfg.macros['Z']}"
    received = message.received(host=cfg.hostname, version=version, qid=qid, when=when,
                                local_user=login, for_rcpt=unique[0] if len(unique) == 1 else "")
    add_headers(ctx, msg, qid=qid, when=when, sender=sender, full_name=full_name,
                received=received, auth_warning=auth_warning)

    good, failed, exitcode = _check_recipients(ctx, unique)
    if not good:  # an entry that is never stored, so that its errors can be mailed back
        entry = Entry(qid, ctime=int(when), sender=sender, headers=msg.headers, macros={"_": f"{login}@localhost"})
        return Submitted(exitcode, entry, msg.body, queued=False, failed=failed)
    nflags = "P" + notify_flags(sub.notify)
    if sub.ret.lower().startswith("hdrs"):
        flags += "n"
    recipients = [Recipient(r, nflags, final=f"RFC822; {qualified(r, cfg.hostname)}") for r in good]
    macros = {"_": f"{login}@localhost", "daemon_flags": ""}
    try:
        check_space(ctx, qid, msg.size)
        entry, *others = enqueue(ctx, qid=qid, sender=sender, recipients=recipients, msg=msg, when=when,
                                 macros=macros, flags=flags, bodytype=sub.bodytype, envid=sub.envid,
                                 relay=f"{login}@localhost")
    except errors.MTAError as exc:
        ctx.tell(exc.text)
        saved = dead_letter(ctx, sender, msg, when)
        if saved:
            ctx.tell(f"{saved}... Saved message in {saved}")
        return Submitted(exc.exitcode)
    return Submitted(exitcode, entry, msg.body, queued=True, failed=failed, others=others)


def _check_recipients(ctx: Context, rcpts: list[str]) -> tuple[list[str], list, int]:
    """Route every recipient now, so an unknown user or a bad address is told before exit."""
    good, failed, exitcode = [], [], errors.EX_OK
    for text in rcpts:
        routes = router.resolve(ctx.cfg, None if ctx.cfg.is_msp else ctx.aliases, text, ctx.maps)
        bad = [r for r in routes if r.error and not r.error.temporary]  # 4xx: queue, retry later
        for r in bad:
            ctx.tell(f"{r.addr}... {r.error.text}")
            exitcode = exitcode or r.error.exitcode
            failed.append((r.addr, r.error, r.owner))
        if len(bad) < len(routes):
            good.append(text)
    return good, failed, exitcode
