"""What a daemon process does for itself, the SMTP daemon and a queue runner alike: detaching
from its terminal as Sendmail does (daemonize), its PidFile in Sendmail's two-line format, and
its config read again on SIGHUP (reloaded).
"""

from __future__ import annotations

import os

from mta import config, errors
from mta.context import Context


def daemonize() -> None:
    """Detach as Sendmail's -bd does: fork, new session, standard files on /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.chdir("/")


def write_pidfile(ctx: Context, argv: list[str]) -> None:
    """Sendmail's two lines: the pid, then the command line (the daemon writes it before it listens)."""
    path = ctx.cfg["PidFile"]
    if not path:
        return
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".tmp", "w") as fh:
            fh.write(f"{os.getpid()}\n{' '.join(argv)}\n")
        os.rename(path + ".tmp", path)
    except OSError as exc:
        ctx.log.line(f"unable to write pid to {path}: {exc.strerror}")


def remove_pidfile(ctx: Context) -> None:
    path = ctx.cfg["PidFile"]
    try:
        with open(path) as fh:
            if fh.readline().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass


def reloaded(ctx: Context, overrides) -> Context | None:
    """SIGHUP: a context on the config read again, or None (logged) when it cannot be read."""
    try:
        cfg = config.load(ctx.cfg.path, overrides)
    except errors.MTAError as exc:
        ctx.log.line(f"SIGHUP: config not reloaded: {exc.text}")
        return None
    return Context.create(cfg, ctx.log.ident)
