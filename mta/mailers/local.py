"""The local mailer: append a message to a user's mailbox, as mail.local and procmail do.

Formats (MailboxFormat, ext): ``mbox`` (default: MailSpoolDirectory/USER, a 'From ' line,
'>From ' quoting, a blank line after each message), ``mmdf`` (^A^A^A^A delimiters),
``maildir`` (MailSpoolDirectory/USER/{tmp,new,cur}) and ``mh`` (numbered files in
MailSpoolDirectory/USER/).  Locking for mbox and mmdf is what mutt and procmail use together:
a USER.lock dotlock (holding our pid) beside the mailbox plus an fcntl lock on it; a lock whose
holder is dead is taken over at once.  A new mbox or mmdf mailbox is created as procmail and
mail.local make it: 0660 USER:mail in a spool of group mail (Debian's /var/mail, 2775 root:mail),
else 0600 USER:USER; an existing one keeps its mode.  An MH delivery adds the message to the
folder's unseen sequence in .mh_sequences, as nmh's rcvstore does.
Crash safety: before appending, the mailbox's end is repaired (a message a killed delivery left
half-written is cut off) and the size we start from is recorded in the lock, so the next
delivery cuts back a write we were killed in.  A write error truncates back and defers.
Trusts: the passwd entry given; never follows a symlink to the mailbox.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import socket
import stat
import time

from mta import errors
from mta.journal import Commit, one_line
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


class Lock:
    """A USER.lock we hold: its fd (to record the mailbox size in it before an append) and what
    a dead holder's lock we took over said (its record, for repairing that holder's append)."""

    def __init__(self, path: str, fd: int, stale: str):
        self.path, self.fd, self.stale = path, fd, stale

    def record(self, size: int, st: os.stat_result, commit: Commit | None) -> None:
        text = f"{os.getpid()}\n{size} {st.st_dev} {st.st_ino}\n"
        if commit is not None:
            text += f"{one_line(commit.path)}\n{one_line(commit.key)}\n{one_line(commit.pending)}\n"
        os.pwrite(self.fd, text.encode("utf-8", "surrogateescape"), 0)

    def recorded_size(self, st: os.stat_result) -> int | None:
        """The size a dead holder recorded for this same mailbox, unless its delivery was done
        (noted, or no longer owed) before it died."""
        lines = self.stale.split("\n") + ["", "", ""]
        words = lines[0].split()
        if len(words) != 3 or not all(w.isdigit() for w in words):
            return None
        size, dev, ino = map(int, words)
        if lines[1] and Commit(lines[1], lines[2], lines[3]).done():
            return None
        return size if (dev, ino) == (st.st_dev, st.st_ino) else None


@contextlib.contextmanager
def dotlock(path: str):
    """Hold path.lock (pid inside, created whole); a lock whose holder is dead is taken over at
    once, any lock after DOTLOCK_STALE seconds (a pid may have been reused), as procmail does."""
    lockpath = path + ".lock"
    for _ in range(DOTLOCK_TRIES * 4):
        fd, stale = _create_lock(lockpath), ""
        if fd is None:
            fd, stale = _take_over(lockpath)
        if fd is not None:
            break
        time.sleep(0.25)
    else:
        raise errors.TempFail(f"Cannot lock {path}", status="4.2.0")
    try:
        yield Lock(lockpath, fd, stale)
    finally:
        with contextlib.suppress(OSError):
            if _is_file(lockpath, os.fstat(fd)):
                os.unlink(lockpath)
        os.close(fd)


def _create_lock(lockpath: str) -> int | None:
    """The lock file with our pid in it, or None if it exists.  Written in an unnamed file first
    and linked in (O_TMPFILE), so no lock is ever seen without its pid."""
    pid = f"{os.getpid()}\n".encode()
    try:
        fd = os.open(os.path.dirname(lockpath) or ".", os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            os.write(fd, pid)
            os.link(f"/proc/self/fd/{fd}", lockpath)
            return fd
        except FileExistsError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)  # no /proc or no linkat here: the plain way
    try:
        fd = os.open(lockpath, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return None
    os.write(fd, pid)
    return fd


def _take_over(lockpath: str) -> tuple[int | None, str]:
    """If the lock's holder is dead (or the lock is old), replace it by ours: (fd, what it said
    after the pid); else (None, '').  Takers take turns under a flock on the spool directory and
    create their lock before letting go, so a dead holder's record is used by one taker only,
    and only by the next holder (a record is stale once anyone else held the lock)."""
    try:
        dfd = os.open(os.path.dirname(lockpath) or ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None, ""
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)
        try:
            fd = os.open(lockpath, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return _create_lock(lockpath), ""
        try:
            st, text = os.fstat(fd), os.read(fd, 8192).decode("utf-8", "surrogateescape")
        finally:
            os.close(fd)
        first, _, rest = text.partition("\n")
        pid = int(first) if first.strip().isdigit() else 0
        if not ((pid and _dead(pid)) or time.time() - st.st_mtime > DOTLOCK_STALE):
            return None, ""  # a live holder (or a lock without a pid, for now): wait
        if _is_file(lockpath, st):
            os.unlink(lockpath)
        fd = _create_lock(lockpath)
        return (fd, rest) if fd is not None else (None, "")
    except OSError:
        return None, ""
    finally:
        os.close(dfd)


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _is_file(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _spool_mail_gid(path: str) -> int | None:
    """The mail group's id when the spool directory is Debian's kind (group mail, setgid or
    group-writable: /var/mail 2775 root:mail), so a new mailbox is USER:mail 0660 as procmail
    and mail.local make it there; None elsewhere (USER:USER 0600)."""
    try:
        gid = grp.getgrnam("mail").gr_gid
        st = os.stat(os.path.dirname(path) or ".")
    except (KeyError, OSError):
        return None
    return gid if st.st_gid == gid and st.st_mode & (stat.S_ISGID | stat.S_IWGRP) else None


def _open_mailbox(path: str, owner) -> int:
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        if os.geteuid() == 0:
            gid = _spool_mail_gid(path)
            os.fchown(fd, owner.pw_uid, owner.pw_gid if gid is None else gid)
            if gid is not None:
                os.fchmod(fd, 0o660)
        return fd
    except FileExistsError:
        pass
    fd = os.open(path, flags)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (os.geteuid() == 0 and st.st_uid != owner.pw_uid):
        os.close(fd)
        raise errors.CantCreate(f"{path}: unsafe mailbox (not a plain file owned by {owner.pw_name})")
    return fd


def append(path: str, owner, data: bytes, fmt: str = "mbox", commit: Commit | None = None) -> None:
    """Append one message under the dotlock and an fcntl lock.  First the mailbox's end is
    repaired (what a killed delivery left is cut off), then our starting size is recorded in
    the lock, so a delivery killed before its commit is noted is cut off by the next one; a
    write error truncates back at once, as mail.local does."""
    with dotlock(path) as held:
        fd = _open_mailbox(path, owner)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            start = repair(fd, fmt, st.st_size, held.recorded_size(st))
            held.record(start, st, commit)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                if commit is not None:
                    commit.note()
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


# -- what a killed delivery leaves -------------------------------------------------------------

REPAIR_SCAN = 64 * 1024 * 1024  # how far back from the end a torn message is looked for
_ENDS = {"mbox": (b"\n\n", b"\n\nFrom ", 2, b"From "),
         "mmdf": (b"\x01\x01\x01\x01\n", b"\x01\x01\x01\x01\n\x01\x01\x01\x01\n", 5, b"\x01\x01\x01\x01\n")}


def repair(fd: int, fmt: str, size: int, recorded: int | None) -> int:
    """Make the mailbox end with a whole message; returns its new size.  A size recorded by a
    killed holder of our lock is cut back to; else a tail that is no complete message (no blank
    line after the last one) is cut back to the end of the last complete one.  A file that is not
    in the format, or whose torn message starts too far back, is only closed with a blank line."""
    if recorded is not None and recorded < size:
        os.ftruncate(fd, recorded)
        return recorded
    end, between, keep, first = _ENDS.get(fmt, _ENDS["mbox"])
    if size == 0 or os.pread(fd, len(end), max(0, size - len(end))) == end:
        return size
    cut = _last_boundary(fd, size, between, keep)  # where the last message starts
    if cut is None and os.pread(fd, len(first), 0) == first and size <= REPAIR_SCAN:
        cut = 0
    short = _cut_start(fd, size, end, first)
    if short is not None and not (cut is not None and _separator_at(fd, cut, short, end)):
        cut = short  # a message cut in its first bytes ('Fro'), not the start of a torn body
    if cut is not None:
        os.ftruncate(fd, cut)
        return cut
    pad = end if fmt == "mmdf" else (b"\n" if os.pread(fd, 1, size - 1) == b"\n" else b"\n\n")
    os.write(fd, pad)
    return size + len(pad)


def _cut_start(fd: int, size: int, end: bytes, first: bytes) -> int | None:
    """Where a message starts that was cut inside its first few bytes ('Fro'), if one was."""
    tail = os.pread(fd, len(end) + len(first), max(0, size - len(end) - len(first)))
    for k in range(1, len(first)):
        if tail.endswith(end + first[:k]) or (size == k and tail == first[:k]):
            return size - k
    return None


def _separator_at(fd: int, start: int, pos: int, end: bytes) -> bool:
    """Is the blank line just before pos the header/body separator of the message at start?
    (A whole message never ends with it: even an empty body is followed by one more line.)"""
    if pos - start > REPAIR_SCAN:
        return False
    return os.pread(fd, pos - start, start).find(end) == pos - len(end) - start


def _last_boundary(fd: int, size: int, between: bytes, keep: int) -> int | None:
    """Offset just past the end of the last whole message: where `between` last occurs, + keep."""
    chunk, pos = 1 << 20, size
    while pos > 0 and size - pos < REPAIR_SCAN:
        lo = max(0, pos - chunk)
        block = os.pread(fd, pos - lo + len(between), lo)
        hit = block.rfind(between)
        if hit >= 0:
            return lo + hit + keep
        pos = lo
    return None


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
    sequences = os.path.join(base, ".mh_sequences")
    with dotlock(sequences):
        numbers = [int(n) for n in os.listdir(base) if n.isdigit()]
        number = max(numbers, default=0) + 1
        _write_new(base, f",new{os.getpid()}", owner, to_bytes(text), os.path.join(base, str(number)))
        _add_unseen(sequences, owner, number)


def _add_unseen(path: str, owner, number: int) -> None:
    """.mh_sequences: 'name: 1-3 5' lines; the new message joins 'unseen' (rcvstore's default)."""
    try:
        with open(path, encoding="latin-1") as fh:
            lines = [ln.rstrip("\n") for ln in fh if ln.strip()]
    except FileNotFoundError:
        lines = []
    seqs = [ln.partition(":") for ln in lines]
    unseen = next((_numbers(v) for k, _s, v in seqs if k.strip() == "unseen"), set()) | {number}
    out = [f"{k}:{v}" for k, _s, v in seqs if k.strip() != "unseen"] + [f"unseen: {_ranges(unseen)}"]
    directory = os.path.dirname(path)
    _write_new(directory, f",seq{os.getpid()}", owner, to_bytes("\n".join(out) + "\n"), path)


def _numbers(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split():
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            out.update(range(int(first), int(last or first) + 1))
    return out


def _ranges(numbers: set[int]) -> str:
    """{1, 2, 3, 5} -> '1-3 5'."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and n - 1 in numbers:
            first = out[-1].split("-")[0]
            out[-1] = f"{first}-{n}"
        else:
            out.append(str(n))
    return " ".join(out)


def deliver(*, spool: str, fmt: str, owner, sender: str, text: str, when: float,
            commit: Commit | None = None) -> Outcome:
    """Deliver message ``text`` (headers, blank line, body) to ``owner``'s mailbox; ``commit``
    is noted once the message is whole there (for mbox and mmdf, still under the lock)."""
    path = os.path.join(spool, owner.pw_name)
    try:
        if fmt == "maildir":
            _maildir(path, owner, text)
        elif fmt == "mh":
            _mh(path, owner, text)
        elif fmt == "mmdf":
            append(path, owner, to_bytes(f"\x01\x01\x01\x01\n{text}\x01\x01\x01\x01\n"), "mmdf", commit)
        else:
            append(path, owner, mbox_entry(sender, text, when), "mbox", commit)
        if commit is not None and fmt in ("maildir", "mh"):
            commit.note()
    except errors.MTAError as exc:
        return Outcome.from_error(exc)
    except OSError as exc:
        temporary = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EIO)
        status = {errno.EDQUOT: "4.2.2", errno.ENOSPC: "4.3.1"}.get(exc.errno, "4.3.0")
        err = (errors.TempFail(f"{path}: {exc.strerror}", status=status) if temporary
               else errors.CantCreate(f"{path}: {exc.strerror}"))
        return Outcome.from_error(err)
    return Outcome.sent()
