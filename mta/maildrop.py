"""Submission without privileges: a write-only drop directory the root daemon empties.

Debian's sendmail is setgid smmsp so that any user can write the MSP queue; a Python script
cannot be.  So a user who cannot write the queue leaves the message in the drop directory
(MaildropDirectory (ext), default ``mqueue-drop`` beside the queue: Debian's package makes it
/var/spool/mqueue-drop, smmsp:smmsp 1733, as Postfix's maildrop): a file written, fsynced and
renamed into place before ``sendmail`` exits 0, so it survives a stopped MTA.  The directory
cannot be listed by users and each file is 0600, so nobody reads another's mail.

The daemon (root) picks the files up at start, when kicked through the directory's socket
(``.socket``, which ``sendmail`` touches after a drop) and at each queue interval; so does a
queue run made by root.  The sender is the file's owner, which the kernel set: never what the
file says.  A file that is not a plain, single-link file of bounded size, or whose envelope
does not parse, is renamed ``X...`` and logged, never lost.

The same socket lists the queues for users who cannot read them (``mailq``), with the
daemon's own configuration; SO_PEERCRED tells who asks, and PrivacyOptions=restrictmailq
decides, as Sendmail's setgid mailq.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import sys
import time

from mta import config, errors, groupcommit, submit
from mta.context import Context
from mta.delivery import fresh, mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

MAGIC = b"sendmail-py drop 1\n"
HEADER_MAX = 256 * 1024
MESSAGE_MAX = 512 * 1024 * 1024  # without MaxMessageSize
RECIPIENTS_MAX = 10000
FIELD_MAX = 4096
SOCKET = ".socket"
REQUEST_MAX = 8192
ABANDONED = 3600  # seconds: a drop file still incomplete after this was given up by its writer
FIELDS = ("sender", "full_name", "notify", "ret", "envid", "bodytype")


def directory(cfg: config.Config) -> str:
    """The drop directory of this configuration: MaildropDirectory, else beside the queue."""
    return cfg["MaildropDirectory"] or os.path.join(os.path.dirname(cfg["QueueDirectory"].rstrip("/")),
                                                    "mqueue-drop")


def wanted(ctx: Context) -> bool:
    """Submit through the drop directory: we may not write the queue, and the directory is there."""
    return (os.geteuid() != 0 and not os.access(ctx.qdir, os.W_OK | os.X_OK)
            and os.path.isdir(directory(ctx.cfg)))


# -- the user's side --------------------------------------------------------------------------


def envelope(sub: submit.Submission, ignore_dots: bool, size: int) -> bytes:
    import json  # lazily, as socket and struct: `sendmail -t` imports this module

    head = {"recipients": list(sub.recipients), "read_headers": sub.read_headers, "ignore_dots": ignore_dots,
            "size": size}
    head.update({f: getattr(sub, f) for f in FIELDS})
    return json.dumps(head, separators=(",", ":")).encode() + b"\n"


def drop(ctx: Context, sub: submit.Submission, data: bytes) -> int:
    """Leave the message in the drop directory, durably, then kick the daemon; an exit code.

    The user cannot open the directory (it is not readable), so there is no rename and no
    fsync of it: the file is created under its final name and locked while written, its
    envelope says how long the message is (a shorter file is still being written), and the
    fsync of a newly created file makes its directory entry durable too (ext4's
    ext4_sync_parent, XFS and btrfs do so)."""
    where = directory(ctx.cfg)
    path = os.path.join(where, "d" + os.urandom(12).hex())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(MAGIC + envelope(sub, bool(ctx.cfg["IgnoreDots"]), len(data)) + data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        ctx.tell(f"queueup: cannot create queue file {where}: {exc.strerror}")
        return errors.EX_CANTCREAT
    kick(where)
    return errors.EX_OK


def _connect(where: str, timeout: float = 5) -> socket.socket | None:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.path.join(where, SOCKET))
        return sock
    except OSError:
        sock.close()
        return None


def kick(where: str) -> None:
    """Tell a running daemon to look now (nothing happens when none runs: it looks at start)."""
    sock = _connect(where, 2)
    if sock:
        with sock:
            try:
                sock.sendall(b"kick\n")
            except OSError:
                pass


def ask_listing(where: str, args: list[str]) -> tuple[int, str] | None:
    """The queue listing from the daemon, for a user who cannot read the queue; None when no
    daemon answers."""
    import json

    sock = _connect(where, 60)
    if sock is None:
        return None
    with sock:
        try:
            sock.sendall(b"list " + json.dumps(args).encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            return None
    status, _, text = data.partition(b"\n")
    if not status.startswith(b"status "):
        return None
    return int(status.split()[1]), text.decode("latin-1")  # the listing's bytes, as they are


# -- the daemon's side ------------------------------------------------------------------------


def _open_locked(path: str) -> int:
    """The drop file, locked against another runner (BlockingIOError: one has it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _read(fd: int, limit: int) -> tuple[os.stat_result, bytes]:
    st = os.fstat(fd)
    if st.st_nlink == 0:
        raise FileNotFoundError("taken by another runner")
    if not (st.st_mode & 0o170000 == 0o100000) or st.st_nlink != 1:
        raise ValueError("not a plain file with one link")
    if st.st_size > limit:
        raise ValueError(f"{st.st_size} bytes is over the limit of {limit}")
    chunks, left = [], limit + 1
    while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
        chunks.append(chunk)
        left -= len(chunk)
    return st, b"".join(chunks)


class Incomplete(ValueError):
    """A drop file still being written (or abandoned half way, once old)."""


def parse(data: bytes, limit: int) -> tuple[submit.Submission, bool, bytes]:
    """A drop file -> (submission, ignore_dots, message); ValueError says what is wrong."""
    if not data.startswith(MAGIC):
        raise ValueError("not a drop file")
    line, nl, message = data[len(MAGIC):].partition(b"\n")
    if not nl:
        raise Incomplete("no envelope yet")
    if len(line) > HEADER_MAX:
        raise ValueError("envelope line too long")
    if len(message) > limit:
        raise ValueError("message too large")
    import json

    head = json.loads(line)
    if not isinstance(head, dict) or not isinstance(head.get("size"), int):
        raise ValueError("bad envelope")
    if len(message) != head["size"]:
        raise Incomplete(f"{len(message)} of {head['size']} bytes")
    rcpts = head.get("recipients")
    if not isinstance(head, dict) or not isinstance(rcpts, list) or len(rcpts) > RECIPIENTS_MAX or not all(
            isinstance(r, str) and 0 < len(r) <= FIELD_MAX and "\n" not in r for r in rcpts):
        raise ValueError("bad recipients")
    values = {}
    for f in FIELDS:
        v = head.get(f)
        if v is not None and (not isinstance(v, str) or len(v) > FIELD_MAX or "\n" in v or "\r" in v):
            raise ValueError(f"bad {f}")
        values[f] = v if v is not None or f in ("sender", "full_name") else ""
    sub = submit.Submission(tuple(rcpts), read_headers=bool(head.get("read_headers")), **values)
    return sub, bool(head.get("ignore_dots")), message


def _set_aside(where: str, name: str, ctx: Context, why: str) -> None:
    ctx.log.line(f"maildrop: {where}/{name}: {why}; kept as X{name[1:]}")
    try:
        os.rename(os.path.join(where, name), os.path.join(where, "X" + name[1:]))
    except OSError:
        pass


def finish(ctx: Context, done: submit.Submitted) -> None:
    """A picked-up message, queued: errors go back by mail, then it is delivered here and now
    (DeliveryMode q or d leave it to the queue run)."""
    if done.entry is None or not done.queued:
        fresh.after_submit(ctx, done)  # only bounces or dead.letter on this path
        return
    fresh.bounce_failed(ctx, done)
    if not mode.queue_only(ctx.cfg):
        from mta.delivery import attempt  # the daemon's pickup: never a user's submission

        for entry in [done.entry, *done.others]:  # split by queue group: each in its directory
            attempt.deliver(ctx.at(entry.qdir) if entry.qdir else ctx, entry.qid)


def pickup(cfg: config.Config, deliver=finish) -> int:
    """Submit every dropped message as its owner; ``deliver(ctx, submitted)`` then delivers it.
    Returns how many were taken.  Only root may do this (the files are their owners' alone)."""
    where = directory(cfg)
    if os.geteuid() != 0 or not os.path.isdir(where):
        return 0
    limit = cfg["MaxMessageSize"] or MESSAGE_MAX
    taken = 0
    try:
        names = sorted(n for n in os.listdir(where) if n.startswith("d"))
    except OSError:
        return 0
    for name in names:
        try:
            fd = _open_locked(os.path.join(where, name))
        except OSError:
            continue  # gone, or another runner has it
        try:
            taken += _take(cfg, where, name, fd, limit, deliver)
        finally:
            os.close(fd)
    return taken


def _take(cfg: config.Config, where: str, name: str, fd: int, limit: int, deliver) -> int:
    ctx = Context.create(cfg, "sendmail")
    try:
        st, data = _read(fd, limit + HEADER_MAX + len(MAGIC))
        sub, ignore_dots, message = parse(data, limit)
        ctx.user = pwd.getpwuid(st.st_uid)
    except FileNotFoundError:
        return 0
    except Incomplete as exc:
        if time.time() - os.fstat(fd).st_mtime > ABANDONED:
            _set_aside(where, name, ctx, f"abandoned: {exc}")
        return 0
    except (OSError, ValueError, KeyError) as exc:
        _set_aside(where, name, ctx, str(exc) or type(exc).__name__)
        return 0
    if ignore_dots:
        ctx.cfg = _with_option(cfg, "IgnoreDots", "True")
    done = submit.command_line(ctx, sub, message)
    if not done.queued and done.entry is None:
        _set_aside(where, name, ctx, f"not queued (exit {done.exitcode})")
        return 0
    os.unlink(os.path.join(where, name))  # the queue has it (fsynced): at least once, never lost
    groupcommit.fsync_dir(where)
    deliver(ctx, done)
    return 1


def _with_option(cfg: config.Config, name: str, value: str) -> config.Config:
    import copy

    other = copy.copy(cfg)
    other.options = dict(cfg.options)
    other.set_option(name, value)
    return other


def peer_uid(sock: socket.socket) -> int:
    import socket
    import struct

    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def listing_args(cfg: config.Config, asked: list) -> list[str] | None:
    """The -bp command the daemon runs for a user: its own config files, and of the user's
    words only -v, -Ac/-Am and queue selections; None when anything else is asked."""
    if not isinstance(asked, list) or len(asked) > 32:
        return None
    args, msp = ["-bp"], False
    for a in asked:
        if not isinstance(a, str) or len(a) > 512 or "\0" in a:
            return None
        if a in ("-v", "-bp"):
            args += [] if a == "-bp" else [a]
        elif a in ("-Ac", "-Am"):
            msp = a == "-Ac"
        elif a.startswith("-q") and a[2:3].lstrip("!")[:1] in ("I", "R", "S", "Q", "G", "L") or a[2:4] in (
                "!I", "!R", "!S", "!Q", "!G"):
            args.append(a)
        else:
            return None
    return ["-C", config.submit_path_for(cfg.path) if msp else cfg.path, *args]


def may_list(cfg: config.Config, uid: int, qdir: str) -> bool:
    """restrictmailq: only root and the queue directory's group may list it, as Sendmail."""
    if uid == 0 or "restrictmailq" not in cfg["PrivacyOptions"]:
        return True
    try:
        gid = os.stat(qdir).st_gid
        user = pwd.getpwuid(uid)
    except (OSError, KeyError):
        return False
    import grp

    return user.pw_gid == gid or user.pw_name in grp.getgrgid(gid).gr_mem


def listing(cfg: config.Config, uid: int, asked: list) -> tuple[int, str]:
    """Answer a user's list request: run our own -bp with the daemon's configuration."""
    args = listing_args(cfg, asked)
    if args is None:
        return errors.EX_USAGE, "Bad queue listing request\n"
    if not may_list(cfg, uid, cfg["QueueDirectory"]):
        return errors.EX_NOPERM, "You are not permitted to see the queue\n"
    import subprocess  # lazily: `sendmail -t` imports this module

    program = [sys.executable, "-s", os.path.abspath(sys.argv[0])]
    out = subprocess.run([*program, *args], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    return out.returncode, out.stdout.decode("latin-1") + out.stderr.decode("latin-1")


async def serve(get_cfg, pool) -> None:
    """The daemon's side, for its lifetime (cancel to stop): pick up at start, when kicked and
    every minute; answer list requests.  ``get_cfg()`` is the daemon's current config."""
    import asyncio  # lazily: `sendmail -t` imports this module
    import contextlib
    import json
    import subprocess

    where = directory(get_cfg())
    if os.geteuid() != 0 or not os.path.isdir(where):
        return
    path = os.path.join(where, SOCKET)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line.startswith(b"kick"):
                wake.set()
            elif line.startswith(b"list "):
                uid = peer_uid(writer.get_extra_info("socket"))
                code, text = await loop.run_in_executor(pool, listing, get_cfg(), uid, json.loads(line[5:]))
                writer.write(f"status {code}\n".encode() + text.encode("latin-1"))
                await writer.drain()
        except (TimeoutError, ValueError, OSError, subprocess.SubprocessError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(client, path, limit=REQUEST_MAX)
    os.chmod(path, 0o666)
    try:
        while True:
            wake.clear()
            try:
                await loop.run_in_executor(pool, pickup, get_cfg())
            except Exception as exc:  # a pickup that fails is logged; the files stay for the next
                Context.create(get_cfg(), "sm-mta").log.line(f"maildrop: pickup failed: {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), 60)
    finally:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
