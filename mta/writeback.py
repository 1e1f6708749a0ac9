"""Starting the writeback of files about to be fsynced, so that one journal commit covers them.

On ext4 (and the other journaled file systems with delayed allocation) a new file's blocks are
allocated when its pages are written back (as unwritten extents, made written when the write
completes: a change of metadata), and fsync() writes them back, waits and commits the journal:
fsyncs of a new df and tf, one after the other, make two commits.  sync_file_range(2) writes
both back first (SYNC_FILE_RANGE_WRITE) and waits for both (SYNC_FILE_RANGE_WAIT_AFTER), so the
first fsync's commit covers both files and the second finds its file committed already: a
message's queue files cost two commits (files, then the directory after the rename) instead of
three (tests/test_writeback.py counts them).  Durability is unchanged: each file is still
fsynced before the rename and before anything relies on it; only when its writes start changes.

Off until ``enable()`` (the daemon's workers): ctypes costs a one-shot command more to import
than the commit it saves.  Where libc has no sync_file_range it stays off.
Raises OSError when the kernel refuses (the write fails, as a failed fsync would make it).
"""

from __future__ import annotations

import os

SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 2, 4  # <fcntl.h>
_call = None


def enable() -> None:
    global _call
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    _call = fn


def start(fds: list[int]) -> None:
    """Write back every file in fds (whole) and wait for those writes; a no-op unless enabled."""
    if _call is None or len(fds) < 2:
        return
    import ctypes

    for flags in (SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER):
        for fd in fds:
            if _call(fd, 0, 0, flags) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
