"""Process names and titles as Sendmail's, so ps, pgrep and start-stop-daemon see a sendmail.

``set_name`` sets the kernel's short name (comm: what ``ps -C``, ``pgrep sendmail`` and
``start-stop-daemon --name`` match) with prctl(PR_SET_NAME).  ``set_title`` writes the command
line ``ps -ef`` shows ("sendmail: MTA: accepting connections") over the process's own argument
area, whose bounds the kernel gives in /proc/self/stat; the title is cut to that area's length
and the environment beyond it is left alone.  Linux only: elsewhere both do nothing.
"""

from __future__ import annotations

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
COMM_LEN = 16  # TASK_COMM_LEN, with its NUL
ARG_START = 48  # field of /proc/PID/stat (from 1) holding arg_start; arg_end follows


def _libc():
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def set_name(name: str) -> bool:
    try:
        return _libc().prctl(PR_SET_NAME, name.encode()[:COMM_LEN - 1], 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent: int, sig: int = 15) -> None:
    """This child gets ``sig`` (SIGTERM) when its parent ends, so no worker outlives the daemon
    (an orphan would go on serving after `/etc/init.d/sendmail stop`)."""
    import os

    try:
        _libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before we asked
        os.kill(os.getpid(), sig)


def _arg_area() -> tuple[int, int] | None:
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()  # after "(comm)", which may hold spaces
    except OSError:
        return None
    start, end = int(fields[ARG_START - 3]), int(fields[ARG_START - 2])  # fields[0] is field 3
    return (start, end) if 0 < start < end else None


def set_title(title: str) -> bool:
    """Make /proc/self/cmdline read ``title``; False when the kernel gives no argument area."""
    area = _arg_area()
    if area is None:
        return False
    import ctypes

    start, end = area
    data = title.encode()[:end - start - 1]
    ctypes.memmove(start, data + b"\0" * (end - start - len(data)), end - start)
    return True


def sendmail(cfg, text: str) -> None:
    """Sendmail's title, "sendmail: PREFIX: text" (ProcessTitlePrefix), and a name starting
    with sendmail when ours is another (python3 -m, a renamed script)."""
    prefix = cfg["ProcessTitlePrefix"] or ""
    set_title(f"sendmail: {prefix}: {text}" if prefix else f"sendmail: {text}")
    try:
        with open("/proc/self/comm") as fh:
            if fh.read().startswith("sendmail"):
                return
    except OSError:
        return
    set_name("sendmail")


def title() -> str:
    """What ps shows for this process (the command line, NULs as spaces)."""
    with open("/proc/self/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode(errors="replace").rstrip()
