"""The prog mailer: pipe the message to ``|program`` from an alias or .forward.

The program runs as ``/bin/sh -c PROGRAM`` (sendmail's Mprog A=sh -c $u): the command text is
the administrator's, never envelope text.  It gets a fixed environment, the message on stdin,
and runs as DefaultUser when we are root.  Exit status maps through sysexits: 0 sent,
EX_TEMPFAIL (75) deferred, anything else bounced with sendmail's text for that code.
"""

from __future__ import annotations

import grp
import pwd
import subprocess

from mta import errors
from mta.mailers import Outcome
from mta.message import to_bytes

ENV = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": "/"}
TIMEOUT = 3600


def _ids(default_user: str) -> tuple[int | None, int | None]:
    """'user:group' (DefaultUser) or 'user:' (a .forward's owner, with the user's own group)."""
    user, _, group = default_user.partition(":")
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        gid = int(group) if group.isdigit() else (grp.getgrnam(group).gr_gid if group else pw.pw_gid)
        return pw.pw_uid, gid
    except (KeyError, ValueError):
        return None, None


def deliver(*, command: str, text: str, sender: str, default_user: str, as_root: bool) -> Outcome:
    uid, gid = _ids(default_user) if as_root else (None, None)
    env = dict(ENV, SENDER=sender)
    try:
        proc = subprocess.run(["/bin/sh", "-c", command], input=to_bytes(text), env=env, cwd="/",
                              user=uid, group=gid, extra_groups=[] if uid is not None else None,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return Outcome.from_error(errors.TempFail("Deferred: timeout"))
    except OSError as exc:
        return Outcome.from_error(errors.TempFail(f"Deferred: {exc.strerror}"))
    if proc.returncode == 0:
        return Outcome.sent()
    code = proc.returncode
    if code in errors.SYSEXITS:
        return Outcome.from_error(errors.for_exitcode(code))
    return Outcome.from_error(errors.SoftwareError(f"unknown mailer error {code}"))
