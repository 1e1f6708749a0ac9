"""The *file* mailer: append the message in mbox format to ``/path`` from an alias or .forward.

Only regular files are written (no symlinks, devices or FIFOs); a new file is created 0600.
With SafeFileEnvironment set, the path must lie below it.
"""

from __future__ import annotations

import os
import pwd

from mta import errors
from mta.mailers import Outcome, local


def deliver(*, path: str, text: str, sender: str, when: float, safe_root: str = "", run_as: str = "") -> Outcome:
    """Append to path; for a .forward's file (run_as), only a file, or a new file in a directory,
    that the user owns."""
    real = os.path.realpath(path)
    if safe_root and safe_root != "/" and not real.startswith(os.path.realpath(safe_root) + os.sep):
        return Outcome.from_error(errors.CantCreate(f"{path}: not in SafeFileEnvironment"))
    owner = pwd.getpwuid(os.geteuid())
    if os.path.exists(path):
        owner = pwd.getpwuid(os.stat(path).st_uid)
    if run_as:
        user = pwd.getpwnam(run_as)
        where = path if os.path.exists(path) else os.path.dirname(path) or "."
        try:
            if os.stat(where).st_uid != user.pw_uid:
                return Outcome.from_error(errors.NoPermission(f"{path}: not owned by {run_as}"))
        except OSError as exc:
            return Outcome.from_error(errors.CantCreate(f"{path}: {exc.strerror}"))
        owner = user
    try:
        local.append(path, owner, local.mbox_entry(sender, text, when))
    except errors.MTAError as exc:
        return Outcome.from_error(exc)
    except OSError as exc:
        return Outcome.from_error(errors.CantCreate(f"{path}: {exc.strerror}"))
    return Outcome.sent()
