"""Program mailers (an M line with P=/path): run P= with the A= argv, the message on stdin.

The argv is a list (``mta.delivery.render.program_argv``): no shell of ours ever reads it; the
environment is fixed (AGENT=sendmail, PATH, SHELL, HOME=/); the output is discarded.  The program
runs as Sendmail's openmailer() would pick, when we are root: with F=S as root (or U=), else as
the controlling user (a .forward's owner, or the local recipient), else U=, else DefaultUser;
in the first D= directory that exists.  Its exit code decides the outcome for every recipient of
that run, as deliver.c's endmailer()/giveresponse(): 0 sent; EX_TEMPFAIL (75), EX_OSERR and
EX_IOERR, a signal or a timeout defer; any other sysexits code bounces with Sendmail's text for
it, anything else is 'unknown mailer error N' (5.3.0).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import tempfile

from mta import errors
from mta.config import Mailer
from mta.mailers import Outcome
from mta.record import record

ENV = {"AGENT": "sendmail", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": "/"}
TIMEOUT = 3600
OUTPUT_LIMIT = 4096
_DEFERRING = (errors.EX_TEMPFAIL, errors.EX_OSERR, errors.EX_IOERR)  # markfailure(): queue up


@record(frozen=True)
class Credentials:
    uid: int | None = None  # None: keep ours
    gid: int | None = None
    groups: tuple[int, ...] | None = None


def _user_group(spec: str) -> tuple[pwd.struct_passwd | None, int | None]:
    """'user:group', 'uid:gid' or 'user' (DefaultUser, U=) -> (passwd entry, gid)."""
    user, _, group = spec.partition(":")
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        gid = int(group) if group.isdigit() else (grp.getgrnam(group).gr_gid if group else pw.pw_gid)
    except (KeyError, ValueError):
        return None, None
    return pw, gid


def _as(pw: pwd.struct_passwd | None, gid: int | None) -> Credentials:
    if pw is None:
        return Credentials(*_as_nobody())
    return Credentials(pw.pw_uid, gid, tuple(os.getgrouplist(pw.pw_name, gid)))


def _as_nobody() -> tuple[int, int, tuple[int, ...]]:
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid, ()


def credentials(mailer: Mailer, owner: pwd.struct_passwd | None, default_user: str) -> Credentials:
    """Who runs the program (deliver.c openmailer): keep root with F=S (U= if given); else the
    controlling user when not root; else U=; else DefaultUser.  Only root can choose."""
    if os.geteuid() != 0:
        return Credentials()
    spec = mailer.fields.get("U", "")
    if "S" in mailer.flags:
        return _as(*_user_group(spec)) if spec else Credentials()
    if owner is not None and owner.pw_uid != 0:
        return _as(owner, owner.pw_gid)
    return _as(*_user_group(spec or default_user))


def workdir(dirs: list[str]) -> str:
    """The first D= directory that exists (Mprog's D=$z:/), else /."""
    return next((d for d in dirs if d and os.path.isdir(d)), "/")


def outcome_for(code: int, mailer: Mailer) -> Outcome:
    """giveresponse(): the outcome of a program mailer's exit code."""
    if code == 0:
        return Outcome.sent()
    if code == errors.EX_TEMPFAIL:
        text = f"Deferred: {mailer.name} mailer ({mailer.path}) exited with EX_TEMPFAIL"
        return Outcome("4.0.0", text, reply=f"450 4.0.0 {text}")
    if code not in errors.SYSEXITS:
        return Outcome("5.3.0", f"unknown mailer error {code}", reply=f"554 5.3.0 unknown mailer error {code}")
    reply, status, text = errors.SYSEXITS[code]
    return Outcome(status, text, reply=f"{reply} {status} {text}")


def _deferred(text: str, status: str = "4.3.0") -> Outcome:
    return Outcome(status, f"Deferred: {text}", reply=f"451 {status} {text}")


def deliver(mailer: Mailer, argv: list[str], data: bytes, *, creds: Credentials, cwd: str = "/",
            env: dict[str, str] | None = None) -> Outcome:
    """Run the mailer once with argv, data on its stdin; one outcome for all its recipients."""
    with tempfile.TemporaryFile() as out:
        outcome = _run(mailer, argv, data, creds, cwd, dict(ENV, **(env or {})), out)
        if outcome.kind == "sent":
            return outcome
        out.seek(0)
        said = out.read(OUTPUT_LIMIT).decode("utf-8", "replace").strip()
    return Outcome(outcome.status, outcome.text, outcome.relay, outcome.reply, output=said)


def _run(mailer: Mailer, argv: list[str], data: bytes, creds: Credentials, cwd: str, env: dict[str, str],
         out) -> Outcome:
    try:
        proc = subprocess.run(argv, executable=mailer.path, input=data, env=env, cwd=cwd,
                              user=creds.uid, group=creds.gid, extra_groups=creds.groups,
                              stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT, start_new_session=True)
    except subprocess.TimeoutExpired:
        return _deferred(f"mailer {mailer.name} timed out")
    except OSError as exc:  # could not exec: EX_OSERR for a local mailer, else EX_UNAVAILABLE
        code = errors.EX_OSERR if "l" in mailer.flags or exc.errno in (11, 12, 23, 24) else errors.EX_UNAVAILABLE
        return outcome_for(code, mailer)
    if proc.returncode < 0:  # died of a signal: endmailer() defers
        return _deferred(f"mailer {mailer.name} died with signal {-proc.returncode}")
    return outcome_for(proc.returncode, mailer)
