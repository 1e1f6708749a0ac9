"""Writing a new queue entry's files back before it is named, so that one journal commit covers it.

On ext4 (and the other journaled file systems with delayed allocation) a new file's blocks are
allocated when its pages are written back, as unwritten extents made written when the write
completes (a change of metadata); fsync() writes back, waits and commits the journal.  So fsync
df, fsync tf, rename, fsync the directory: three commits a message.  Here sync_file_range(2)
writes both files back (SYNC_FILE_RANGE_WRITE) and waits for both (SYNC_FILE_RANGE_WAIT_AFTER:
ext4 ends a page's writeback only after that conversion), so their data is on the disk and their
metadata is in the journal's running transaction.  queue.store then renames tf to qf and fsyncs
the directory, which commits the files and the name together, and fsyncs df and tf, which find
them committed: one commit a message (tests/test_writeback.py counts them).

Still durable, and still acknowledged only after every fsync.  With a journal, the name cannot
be on disk without the data and sizes (one atomic commit, after the data, with a cache flush
before it).  Without one (ext2, ext4 -O ^has_journal) a power cut after the rename and before
the fsyncs - before the 250, so the client sends again - may leave an empty qf, which the queue
removes with its df once it is old, as Sendmail does (queuesweep.sweep), and never delivers.

Off until ``enable()`` (the daemon's workers): ctypes costs a one-shot command more to import
than the commit it saves, and commands keep Sendmail's order (fsync, then rename).  Where libc
has no sync_file_range it stays off.  Raises OSError when the kernel refuses.
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


def start(fds: list[int]) -> bool:
    """Write back every file in fds (whole) and wait for those writes: True once done, False
    (nothing done) unless enabled."""
    if _call is None or len(fds) < 2:
        return False
    import ctypes

    for flags in (SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER):
        for fd in fds:
            if _call(fd, 0, 0, flags) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
    return True
