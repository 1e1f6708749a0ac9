"""Persistent host status (HostStatusDirectory), hoststat and purgestat, as Sendmail keeps them.

After each SMTP connection attempt the result is written to a file named by the host's labels
in reverse, as Sendmail does (``mx.example.com`` -> ``com./example./mx``), holding Sendmail's
lines: V0, E errno, H h_errno, S exit status, D enhanced status, R reply, U last use, '.'.
``hoststat`` lists them; ``purgestat`` removes those older than Timeout.hoststatus.
"""

from __future__ import annotations

import os
import time

from mta import errors, log
from mta import record as records


def path_for(root: str, host: str) -> str:
    host = host.lower().strip().rstrip(".")
    if host.startswith("["):
        return os.path.join(root, host)
    labels = host.split(".")
    return os.path.join(root, *[label + "." for label in reversed(labels[1:])], labels[0])


def record(root: str, host: str, *, exitstat: int, status: str = "", reply: str = "", errno: int = 0) -> None:
    """Write the status of our last talk with host (never raises)."""
    if not root or not host:
        return
    path = path_for(root, host)
    text = (f"V0\nE{errno}\nH0\nS{exitstat}\n" + (f"D{status}\n" if status else "")
            + (f"R{reply[:100]}\n" if reply else "") + f"U{int(time.time())}\n.\n")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.rename(tmp, path)
    except OSError:
        pass


def _read(path: str) -> dict[str, str]:
    out = {}
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line == ".":
                break
            if line:
                out[line[0]] = line[1:]
    return out


def _entries(root: str):
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        parents = [] if rel == "." else [p.rstrip(".") for p in rel.split(os.sep)]
        for name in sorted(files):
            if ".tmp" in name:
                continue
            host = name if name.startswith("[") else ".".join([name] + list(reversed(parents)))
            yield host, os.path.join(dirpath, name)


def report(root: str, verbose: bool = False) -> str:
    if not root or not os.path.isdir(root):
        return ""
    width = 78 if verbose else 25
    lines = []
    now = time.time()
    for host, path in _entries(root):
        try:
            st = _read(path)
        except OSError:
            continue
        ago = log.pintvl(now - int(st.get("U", "0") or 0))
        exitstat = int(st.get("S", "0") or 0)
        if st.get("R"):
            result = st["R"][:width]
        elif exitstat:
            result = errors.SYSEXITS.get(exitstat, (0, "", f"Unknown mailer error {exitstat}"))[2][:width]
        else:
            result = "OK"
        lines.append(f" {host:<39} {ago:>12} {result}\n")
    if not lines:
        return ""
    return " -------------- Hostname --------------- How long ago ---------Results---------\n" + "".join(lines)


def purge(root: str, max_age: int) -> int:
    """Remove the statuses older than max_age seconds (all of them when max_age is 0)."""
    removed = 0
    now = time.time()
    for _host, path in list(_entries(root)) if root and os.path.isdir(root) else []:
        try:
            if not max_age or now - int(_read(path).get("U", "0") or 0) > max_age:
                os.unlink(path)
                removed += 1
        except (OSError, ValueError):
            continue
    return removed


@records.record(frozen=True)
class Status:
    exitstat: int
    status: str
    reply: str
    when: int


def status(root: str, host: str) -> Status | None:
    """What the status file says of host, or None when there is none."""
    try:
        st = _read(path_for(root, host))
        return Status(int(st.get("S", "0") or 0), st.get("D", ""), st.get("R", ""), int(st.get("U", "0") or 0))
    except (OSError, ValueError):
        return None


def lock(root: str, host: str):
    """SingleThreadDelivery: an open file holding host's lock, or None while another process has it.
    The lock file sits beside the status file (its name has '.tmp', so listings skip it)."""
    import fcntl

    path = path_for(root, host) + ".tmp-lock"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fh = open(path, "a")  # noqa: SIM115 - held open as the lock, closed by the caller
    except OSError:
        return None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh
