"""The local mailer: append a message to a user's mailbox, as mail.local and procmail do.

Formats (MailboxFormat, ext): ``mbox`` (default: MailSpoolDirectory/USER, a 'From ' line,
'>From ' quoting, a blank line after each message), ``mmdf`` (^A^A^A^A delimiters),
``maildir`` (MailSpoolDirectory/USER/{tmp,new,cur}) and ``mh`` (numbered files in
MailSpoolDirectory/USER/).  Locking for mbox and mmdf is what mutt and procmail use together:
a USER.lock dotlock beside the mailbox plus an fcntl lock on it.  A new mailbox is created 0600
and owned by the user.  A write error truncates the mailbox back and defers.
Trusts: the passwd entry given; never follows a symlink to the mailbox.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import time

from mta import errors
from mta.mailers import Outcome
from mta.message import ctime, to_bytes

DOTLOCK_TRIES = 60  # seconds
DOTLOCK_STALE = 300  # a lock older than this is broken, as procmail's default


def escape_from(body: str) -> str:
    """mbox quoting: a line starting with 'From ' gets a '>' in front."""
    if body.startswith("From "):
        body = ">" + body
    return body.replace("\nFrom ", "\n>From ")


def mbox_entry(sender: str, text: str, when: float) -> bytes:
    """One mbox message: the 'From ' line, the text with body quoting, a closing blank line."""
    head, sep, body = text.partition("\n\n")
    blob = f"From {sender or 'MAILER-DAEMON'} {ctime(when)}\n{head}{sep}{escape_from(body)}"
    if not blob.endswith("\n"):
        blob += "\n"
    return to_bytes(blob + "\n")


@contextlib.contextmanager
def dotlock(path: str):
    lock = path + ".lock"
    for _ in range(DOTLOCK_TRIES * 4):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.close(fd)
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - os.stat(lock).st_mtime > DOTLOCK_STALE:
                    os.unlink(lock)
                    continue
            time.sleep(0.25)
    else:
        raise errors.TempFail(f"Cannot lock {path}", status="4.2.0")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)


def _open_mailbox(path: str, owner) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        if os.geteuid() == 0:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        return fd
    except FileExistsError:
        pass
    fd = os.open(path, flags)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (os.geteuid() == 0 and st.st_uid != owner.pw_uid):
        os.close(fd)
        raise errors.CantCreate(f"{path}: unsafe mailbox (not a plain file owned by {owner.pw_name})")
    return fd


def append(path: str, owner, data: bytes) -> None:
    with dotlock(path):
        fd = _open_mailbox(path, owner)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


def _write_new(directory: str, name: str, owner, data: bytes, final: str) -> None:
    """Write a whole file in directory and rename it to final (Maildir's tmp -> new)."""
    tmp = os.path.join(directory, name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if os.geteuid() == 0:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)


def _ensure_dir(path: str, owner) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, 0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, owner.pw_uid, owner.pw_gid)


def _maildir(base: str, owner, text: str) -> None:
    for sub in ("", "tmp", "new", "cur"):
        _ensure_dir(os.path.join(base, sub), owner)
    name = f"{time.time():.6f}.P{os.getpid()}.{socket.gethostname()}"
    _write_new(os.path.join(base, "tmp"), name, owner, to_bytes(text), os.path.join(base, "new", name))


def _mh(base: str, owner, text: str) -> None:
    _ensure_dir(base, owner)
    with dotlock(os.path.join(base, ".mh_sequences")):
        numbers = [int(n) for n in os.listdir(base) if n.isdigit()]
        number = max(numbers, default=0) + 1
        _write_new(base, f",new{os.getpid()}", owner, to_bytes(text), os.path.join(base, str(number)))


def deliver(*, spool: str, fmt: str, owner, sender: str, text: str, when: float) -> Outcome:
    """Deliver message ``text`` (headers, blank line, body) to ``owner``'s mailbox."""
    path = os.path.join(spool, owner.pw_name)
    try:
        if fmt == "maildir":
            _maildir(path, owner, text)
        elif fmt == "mh":
            _mh(path, owner, text)
        elif fmt == "mmdf":
            append(path, owner, to_bytes(f"\x01\x01\x01\x01\n{text}\x01\x01\x01\x01\n"))
        else:
            append(path, owner, mbox_entry(sender, text, when))
    except errors.MTAError as exc:
        return Outcome.from_error(exc)
    except OSError as exc:
        temporary = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EIO)
        status = {errno.EDQUOT: "4.2.2", errno.ENOSPC: "4.3.1"}.get(exc.errno, "4.3.0")
        err = (errors.TempFail(f"{path}: {exc.strerror}", status=status) if temporary
               else errors.CantCreate(f"{path}: {exc.strerror}"))
        return Outcome.from_error(err)
    return Outcome.sent()
