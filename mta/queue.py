"""The queue: sendmail 8 qf/df files, queue IDs, durable writes, flock locking and listing.

This is the only module that touches spool files (what a qf says - Entry, its format and its
parsing - is mta.qf's).  Promises:
  * ``store()`` writes df (fsync), then tf (fsync), renames tf -> qf and fsyncs the directory;
    only after it returns may a message be acknowledged.  (In the daemon, mta.writeback: both
    files written back and waited for, the rename, the directory's fsync, then theirs - one
    journal commit.)  A qf without its closing '.' line is no message (``read()`` raises
    ``BadQueueFile``) and a crash leaves either nothing or a whole qf (without a journal, an
    empty one may be left before the acknowledgment; sweep removes it when old).
  * ``lock()`` takes flock(LOCK_EX|LOCK_NB) on the qf, as sendmail does on Linux; mailq shows '*'.
    After the lock it checks the name still leads to the locked file (a rewrite renames a new qf
    over it), so two runners never hold one entry at once.
  * A quarantined entry (``Entry.quarantine``, qf line ``q<reason>``) is stored as ``hf<id>``
    instead of ``qf<id>``; normal runs and listings see only qf files (Sendmail's hold).
    A lost entry (``Qf<id>``, see ``lose``) is read, locked and rewritten only by a -qL run
    (``lost=True``; ``Entry.lost`` keeps it Qf).
  * A queue directory with ``qf/``, ``df/`` and ``xf/`` subdirectories keeps each kind of file
    there (control files of every letter in qf/), as Sendmail does.
  * An entry split from another (queue groups, mta.qgroups) shares its df: ``share_data`` makes a
    hard link (a durable copy across file systems), as dup_df does.
"""

from __future__ import annotations

import _thread
import errno
import fcntl
import os
import time

from mta import errors, groupcommit, qf, writeback
from mta.message import from_bytes, to_bytes
from mta.record import record

QID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MACRO_BYTE = "\x81"  # sendmail's internal macro character, as in H?P?Return-Path: <\x81g>


class Locked(errors.TempFail):
    pass


# -- queue IDs (queue.c assign_queueid) ------------------------------------------------------

class _IdState:
    lock = _thread.allocate_lock()  # the daemon assigns IDs from several threads
    pid = 0
    offset = 0
    count = 0
    second = -1


def new_id() -> str:
    """A 14-character sendmail queue ID: UTC date/time, a 2-char sequence and the pid."""
    with _IdState.lock:
        return _new_id(_IdState)


def _new_id(st) -> str:
    pid = os.getpid()
    if st.pid != pid:
        st.pid, st.offset, st.count, st.second = pid, int.from_bytes(os.urandom(2), "big") % 3600, 0, -1
    now = int(time.time())
    if st.count >= 3600:
        while int(time.time()) == st.second:
            time.sleep(0.05)
        now, st.count = int(time.time()), 0
    st.second = now
    tm = time.gmtime(now)
    seq = (st.count + st.offset) % 3600
    st.count += 1
    c = QID_CHARS
    return (c[(tm.tm_year - 1900) % 60] + c[tm.tm_mon - 1] + c[tm.tm_mday] + c[tm.tm_hour]
            + c[tm.tm_min % 62] + c[tm.tm_sec % 62] + c[seq // 60] + c[seq % 60] + f"{pid % 1000000:06d}")


# -- files -------------------------------------------------------------------------------------

_SUBDIRS: dict[str, frozenset[str]] = {}


def _subdirs(qdir: str) -> frozenset[str]:
    """Which of qf/, df/, xf/ this queue directory has (looked up once: op.me says the layout
    must not change while sendmail runs)."""
    found = _SUBDIRS.get(qdir)
    if found is None:
        found = frozenset(d for d in ("qf", "df", "xf") if os.path.isdir(os.path.join(qdir, d)))
        _SUBDIRS[qdir] = found
    return found


def file_dir(qdir: str, letter: str = "q") -> str:
    """The directory that holds files of this letter: df in df/, xf in xf/, control files
    (q, h, t, Q) in qf/, when the queue directory has those subdirectories."""
    sub = {"d": "df", "x": "xf"}.get(letter, "qf")
    return os.path.join(qdir, sub) if sub in _subdirs(qdir) else qdir


def print_name(qdir: str) -> str:
    """How Sendmail names a queue directory in mailq and -v runs (qid_printqueue): with "/df"
    added when it has a df/ subdirectory."""
    return qdir + "/df" if "df" in _subdirs(qdir) else qdir


def qf_path(qdir: str, qid: str, letter: str = "q") -> str:
    return os.path.join(file_dir(qdir, letter), f"{letter}f{qid}")


def _create(path: str, data: bytes, mode: int) -> int:
    """A new file holding data, still open (for its fsync)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        raise
    return fd


def _write_file(path: str, data: bytes, mode: int) -> None:
    fd = _create(path, data, mode)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store(qdir: str, entry: qf.Entry, body: str | None = None, mode: int = 0o600) -> None:
    """Durably write entry (and its body, if given) into qdir: df and tf written, each fsynced,
    the tf renamed to qf and the directory fsynced; only then may anyone acknowledge it.  In the
    daemon (mta.writeback) both files are first written back and waited for, which lets the
    rename come before their fsyncs: one journal commit then makes the files and the name
    durable together, and the fsyncs find them done.

    On failure nothing of a new entry is left behind (no df, tf or qf) and the error names no
    path, for it goes back to an SMTP client; a rewrite (body None) keeps the qf it had."""
    stage = "data"
    entry.qdir = qdir
    files: list[tuple[str, int]] = []  # (the stage an error names, the open file)

    def sync_files() -> None:
        nonlocal stage
        for name, fd in files:
            stage = name  # what the error below names
            os.fsync(fd)

    try:
        if body is not None:
            files.append(("data", _create(qf_path(qdir, entry.qid, "d"), to_bytes(body), mode)))
        stage = "control"
        tf = qf_path(qdir, entry.qid, "t")
        files.append(("control", _create(tf, to_bytes(qf.format_entry(entry)), mode)))
        written = writeback.start([fd for _stage, fd in files])  # data on disk: may be named first
        if not written:
            sync_files()
        final = _control_letter(entry)
        other = "Q" if entry.lost and final == "h" else "q" if final == "h" else "h"
        os.rename(tf, qf_path(qdir, entry.qid, final))
        if body is None:  # a rewrite, quarantined or released: one name only (a new entry has one)
            _unlink(qf_path(qdir, entry.qid, other), FileNotFoundError)
        groupcommit.sync_dir(file_dir(qdir, "q"))  # shared with the other sessions committing now
        if body is not None and file_dir(qdir, "d") != file_dir(qdir, "q"):
            groupcommit.sync_dir(file_dir(qdir, "d"))
        if written:
            sync_files()
    except OSError as exc:
        for letter in ("tqd" if body is not None else "t"):
            _unlink(qf_path(qdir, entry.qid, letter))
        raise _write_error(stage, exc) from exc
    finally:
        for _stage, fd in files:
            os.close(fd)


def _control_letter(entry: qf.Entry) -> str:
    """queue_letter(): hf for a quarantined entry, Qf for a lost one in a -qL run, else qf."""
    return "h" if entry.quarantine else "Q" if entry.lost else "q"


def _write_error(stage: str, exc: OSError) -> errors.MTAError:
    """What a failed write of a new entry tells the submitter (no paths: it may go over SMTP)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.TempFail(f"Error writing {stage} file: {exc.strerror}", status="4.3.1", code=452)
    return errors.CantCreate(f"queueup: cannot create {stage} file: {exc.strerror}")


def share_data(src_qdir: str, src_qid: str, qdir: str, qid: str, mode: int = 0o600) -> None:
    """The df of an entry split from another (dup_df): a hard link to its df, or a durable copy
    when the two directories are on different file systems; the directory is fsynced."""
    src, dst = qf_path(src_qdir, src_qid, "d"), qf_path(qdir, qid, "d")
    try:
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with open(src, "rb") as fh:
                _write_file(dst, fh.read(), mode)
        groupcommit.sync_dir(file_dir(qdir, "d"))
    except OSError as exc:
        _unlink(dst)
        raise _write_error("data", exc) from exc


def low_on_space(qdir: str, size: int, min_blocks: int) -> int | None:
    """None when qdir's file system has room for size bytes plus min_blocks free blocks
    (MinFreeBlocks, as pickqdir() counts), else the blocks available."""
    if min_blocks <= 0 and size <= 0:
        return None
    try:
        vfs = os.statvfs(qdir)
    except OSError:
        return None  # the write itself will tell
    block = vfs.f_frsize or vfs.f_bsize or 1024
    needed = -(-max(size, 0) // block) + max(min_blocks, 0)
    return None if needed <= vfs.f_bavail else vfs.f_bavail


def _open_control(qdir: str, qid: str, flags: int = os.O_RDONLY, lost: bool = False) -> int:
    """An fd on qf<id>, else on hf<id> (the entry is quarantined); on Qf<id> only when lost."""
    if lost:
        return os.open(qf_path(qdir, qid, "Q"), flags | os.O_NOFOLLOW)
    try:
        return os.open(qf_path(qdir, qid), flags | os.O_NOFOLLOW)
    except FileNotFoundError:
        return os.open(qf_path(qdir, qid, "h"), flags | os.O_NOFOLLOW)


def control_path(qdir: str, qid: str) -> str:
    """qf<id>, or hf<id> when only that exists."""
    path = qf_path(qdir, qid)
    return path if os.path.exists(path) else qf_path(qdir, qid, "h")


def _ident(st: os.stat_result) -> tuple:
    return st.st_ino, st.st_mtime_ns, st.st_size


def read(qdir: str, qid: str, lost: bool = False, *, fd: int = -1,
         known: tuple[tuple, qf.Entry] | None = None) -> qf.Entry:
    """The entry qid (its qf or hf; its Qf when lost, for a -qL run); fd: the control file,
    already open (under lock()); known: (Glance.ident, the entry parsed from that glance), taken
    as it is when the file is still that one (a rewrite is always a new file, renamed into place)."""
    try:
        own = fd < 0
        fd = _open_control(qdir, qid, lost=lost) if own else fd
        try:
            st = os.fstat(fd)
            if known and known[0] == _ident(st):
                entry = known[1]
            else:
                entry = qf.parse_entry(qid, from_bytes(os.pread(fd, st.st_size + 1, 0)))
        finally:
            if own:
                os.close(fd)
        entry.unsafe = st.st_uid not in (0, os.geteuid())
        entry.qdir, entry.lost = qdir, lost
    except OSError as exc:
        raise errors.IOFailure(f"{qid}: cannot open: {exc.strerror}") from exc
    entry.body_size = data_size(qdir, qid)
    return entry


def data_size(qdir: str, qid: str) -> int:
    """The df's size, -1 when there is none."""
    try:
        return os.stat(qf_path(qdir, qid, "d")).st_size
    except OSError:
        return -1


READ = os.O_RDONLY | os.O_NOFOLLOW  # a queue file, never through a symlink
_MAX_READ = 0x7FFFF000  # Linux returns at most this much from one read()
HEAD = 4096  # most control files are shorter: one read() holds the whole file


def read_tried(fd: int) -> tuple[bytes, bool]:
    """A control file's bytes and whether a delivery holds it: the lock only tried (shared,
    never waited for), on the same open, as printqueue does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        locked = False
    except BlockingIOError:
        locked = True
    data = os.read(fd, HEAD)
    if len(data) == HEAD:
        data += os.pread(fd, os.fstat(fd).st_size + 1, HEAD)
    return data, locked


def read_body(qdir: str, qid: str) -> str:
    fd = os.open(qf_path(qdir, qid, "d"), os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, size + 1)]  # one read for the whole file, the usual case
        if len(chunks[0]) > size or len(chunks[0]) >= _MAX_READ:  # it grew, or is huge: on to the end
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        return from_bytes(b"".join(chunks))
    finally:
        os.close(fd)


def remove(qdir: str, qid: str) -> None:
    """Delete an entry: the qf first, so a crash can leave only an orphan df, never a qf alone.
    No fsync of the directory, as neither Sendmail nor Postfix does one: a removal acknowledges
    nothing, and a crash that undoes it can only deliver the message again, never lose it."""
    for letter in ("q", "h", "Q", "d", "x", "j"):
        _unlink(qf_path(qdir, qid, letter), FileNotFoundError)


def lose(qdir: str, qid: str, why: str = "", log=None) -> None:
    """Rename a bad qf to Qf so queue runs leave it alone; log ``Losing PATH: why`` (loseqfile)."""
    path = qf_path(qdir, qid)
    try:
        os.rename(path, qf_path(qdir, qid, "Q"))
    except OSError:
        return
    if log is not None:
        log.line(f"Losing {path}: {why}", qid)


class lock:  # a context manager, called as a function: with queue.lock(qdir, qid) as fd
    """Hold flock(LOCK_EX) on the qf (or hf; the Qf when lost); raises Locked if another process
    holds it, or if the file was replaced or removed while we were opening it (readqf's race
    check: we would hold an old copy and deliver its recipients again)."""

    def __init__(self, qdir: str, qid: str, lost: bool = False):
        self.qdir, self.qid, self.lost, self.fd = qdir, qid, lost, -1

    def __enter__(self) -> int:
        try:
            fd = _open_control(self.qdir, self.qid, os.O_RDWR, self.lost)
        except OSError as exc:
            raise errors.TempFail(f"{self.qid}: cannot open: {exc.strerror}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise Locked(f"{self.qid}: locked") from exc
            if not _still_named(self.qdir, self.qid, fd):
                raise Locked(f"{self.qid}: changed")
        except BaseException:
            self._release(fd)
            raise
        self.fd = fd
        return fd

    def __exit__(self, *_exc) -> None:
        self._release(self.fd)

    def _release(self, fd: int) -> None:
        os.close(fd)
        for held in _CHECKPOINTS.pop((self.qdir, self.qid), ()):
            os.close(held)


def _unlink(path: str, ignore: type[OSError] = OSError) -> None:
    try:
        os.unlink(path)
    except ignore:
        pass


_CHECKPOINTS: dict[tuple[str, str], list[int]] = {}  # locks on qf files written mid-delivery


def checkpoint(qdir: str, entry: qf.Entry, mode: int = 0o600) -> None:
    """Rewrite a locked entry's control file during its delivery (CheckpointInterval): the new
    file is locked before it is renamed into place, as queueup() locks its tf, so no other
    runner can take the entry until the lock() around this delivery ends."""
    tf = qf_path(qdir, entry.qid, "t")
    fd = os.open(tf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        view = memoryview(to_bytes(qf.format_entry(entry)))
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.rename(tf, qf_path(qdir, entry.qid, _control_letter(entry)))
        groupcommit.sync_dir(file_dir(qdir, "q"))
    except OSError:
        os.close(fd)
        _unlink(tf)
        raise
    _CHECKPOINTS.setdefault((qdir, entry.qid), []).append(fd)


def _still_named(qdir: str, qid: str, fd: int) -> bool:
    """Does qf<id> (or hf<id>) still name the file fd has open? (readqf's re-stat)"""
    st = os.fstat(fd)
    if st.st_nlink == 0:
        return False
    for letter in ("q", "h", "Q"):
        try:
            now = os.stat(qf_path(qdir, qid, letter), follow_symlinks=False)
        except FileNotFoundError:
            continue
        if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def set_quarantine(qdir: str, qid: str, reason: str | None) -> str | None:
    """Quarantine (reason) or release (None) an entry under its lock, as queue.c's
    quarantine_queue_item: qf<id> becomes hf<id> with a q line, or back.  Returns the old
    reason ("" if none), or None when nothing changed; raises Locked or MTAError."""
    with lock(qdir, qid):
        entry = read(qdir, qid)
        new = qf.clean(reason) if reason else ""
        if entry.quarantine == new:
            return None
        old, entry.quarantine = entry.quarantine, new
        store(qdir, entry, None, stat_mode(qdir, qid))
        return old


def delete(qdir: str, qid: str, lost: bool = False) -> None:
    """Remove an entry (a lost one: its Qf) under its lock (mailq --delete, ext); raises Locked
    or MTAError."""
    with lock(qdir, qid, lost):
        remove(qdir, qid)


def stat_mode(qdir: str, qid: str) -> int:
    """The permission bits of an entry's control file (kept when it is rewritten)."""
    try:
        return os.stat(control_path(qdir, qid)).st_mode & 0o777
    except OSError:
        return 0o600


# -- a first look at a control file (gatherq) ---------------------------------------------------

@record(frozen=True)
class Glance:
    """A control file as a queue run first sees it (gatherq): its bytes, when it last changed,
    and whether a delivery holds it - without taking the entry."""

    data: bytes
    mtime: float
    locked: bool
    ident: tuple  # (inode, mtime in ns, size): the same file, unchanged, while these are equal


def glance(path: str) -> Glance | None:
    """One open: the bytes, the mtime and a shared lock only tried (never waited for, released
    at once), as printqueue and gatherq look; None when it cannot be read."""
    try:
        fd = os.open(path, READ)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        data, locked = read_tried(fd)
        return Glance(data, st.st_mtime, locked, _ident(st))
    except OSError:
        return None
    finally:
        os.close(fd)


def ids(qdir: str, letter: str = "q") -> list[str]:
    """Queue IDs with a qf (or, for letter 'h', an hf) in qdir, in directory order."""
    prefix = letter + "f"
    try:  # scandir: never all of a big directory's names (df files too) in memory at once
        with os.scandir(file_dir(qdir, letter)) as names:
            return [n.name[2:] for n in names if n.name.startswith(prefix) and len(n.name) > 2]
    except OSError as exc:
        raise errors.OSFailure(f"cannot chdir({qdir}/): {exc.strerror}") from exc
