"""Group commit of directory fsyncs: one fsync of a queue directory covers every rename before it.

A queue file is durable once its data and the directory entry that names it are on disk: the df
and tf are fsynced by their writer, then the tf is renamed to qf and the directory fsynced.  When
many sessions commit at once, each would fsync the same directory; but an fsync of a directory
makes durable every rename done in it before that fsync started.  So a caller that finds an fsync
of its directory already running waits for the next one (which starts after its rename), and
whoever starts that next one covers everybody who arrived while the last was running.
``sync_dir`` returns only after an fsync that began after the call has finished: never earlier.

Holds per directory: how many fsyncs have started, how many completed, whether one runs now.
Raises OSError from the fsync (to the caller whose fsync failed; the others try their own).
Threads only: processes each keep their own table (the daemon's workers each commit their own).
"""

from __future__ import annotations

import _thread
import os
import sys

_making = _thread.allocate_lock()
_done = None  # the threading.Condition the callers share, made when a second thread may exist
_started: dict[str, int] = {}
_completed: dict[str, int] = {}
_running: set[str] = set()


def fsync_dir(path: str) -> None:
    """One plain fsync of a directory."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _condition():
    global _done
    with _making:
        if _done is None:
            import threading

            _done = threading.Condition(threading.Lock())
    return _done


def sync_dir(path: str) -> None:
    """Make every rename done in path before this call durable, sharing the fsync with others.

    A process that has not imported threading (a command such as `sendmail -t`) has one thread
    and nobody to share with: it fsyncs, and threading (with functools and collections) is
    never loaded for it."""
    if "threading" not in sys.modules:
        fsync_dir(path)
        return
    done = _condition()
    with done:
        target = _started.get(path, 0) + 1  # the first fsync to start from now on covers us
        while _completed.get(path, 0) < target:
            if path in _running:
                done.wait()
                continue
            _running.add(path)
            seq = _started[path] = _started.get(path, 0) + 1
            done.release()
            try:
                fsync_dir(path)
            except OSError:
                done.acquire()
                _running.discard(path)
                done.notify_all()
                raise
            done.acquire()
            _running.discard(path)
            _completed[path] = max(_completed.get(path, 0), seq)
            done.notify_all()
