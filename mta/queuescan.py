"""One pass over a queue directory, for mailq: each control file is read once (open, the lock
tried, read, close, and a stat of its df: scan_listed), and of each entry only its sort
key and its listing bytes are kept, compactly, until they are printed in order.

A big queue is read by two processes.  The directory's names are cut into chunks, and each
process takes the next chunk not yet taken (a byte read from a shared pipe of chunk numbers),
so that neither waits for the other when one is slower; the child sends what it kept through a
second pipe.  Each entry keeps its place in the directory, so the listing is the same, byte for
byte; it only comes sooner when the machine has a second core.
"""

from __future__ import annotations

import marshal
import os
from array import array

from mta import message, queue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    Entry = Callable[[str, bytes, int, bool], tuple[object, str | None] | None]

PARALLEL_AT = 4000  # control files from which a second process shares the reading
CHUNK = 1000  # names in a chunk, at least; a queue has at most 255 chunks (one byte each)


class Kept:
    """What a pass kept: the requests counted, the entries kept (the first MaxQueueRunSize of
    them), and of each kept entry that can be listed its key and its listing (latin-1 bytes,
    one after another in ``text``; entry i ends at ``ends[i]``)."""

    def __init__(self) -> None:
        self.requests = self.kept = 0
        self.keys: list = []
        self.text = bytearray()
        self.ends = array("Q")
        self.places = array("Q")  # each entry's place in the directory, when read in chunks

    def add(self, key, listing: str | None, place: int = 0) -> None:
        self.kept += 1
        if listing is not None:  # a bad file: the next queue run moves it aside
            self.keys.append(key)
            self.text += listing.encode("latin-1")
            self.ends.append(len(self.text))
            self.places.append(place)

    def in_order(self, kind: str) -> list[int]:
        """The entries' numbers in QueueSortOrder; equal keys keep directory order."""
        order = list(range(len(self.keys)))
        if kind == "random":
            import random  # only for this order: not in every mailq's start

            random.shuffle(order)
            return order
        if any(self.places):  # read in chunks: back to directory order first
            order.sort(key=self.places.__getitem__)
        if kind != "none":
            order.sort(key=self.keys.__getitem__)
        return order

    def listed(self, order: list[int]) -> Iterable[str]:
        """The listings in this order, as often as they are iterated."""
        return _Listed(self, order)

    def pieces(self, order: list[int], chunk: int = 256) -> Iterator[str]:
        """The listings in this order, chunk entries a piece (one write each)."""
        view, ends = memoryview(self.text), self.ends
        for start in range(0, len(order), chunk):
            parts = [view[ends[i - 1] if i else 0:ends[i]] for i in order[start:start + chunk]]
            yield b"".join(parts).decode("latin-1")


class _Listed:
    def __init__(self, kept: Kept, order: list[int]):
        self.kept, self.order = kept, order

    def __iter__(self) -> Iterator[str]:
        return self.kept.pieces(self.order)


# -- reading control files for a listing --------------------------------------------------------

def read_listed(qdir: str, qid: str, letter: str = "q") -> tuple[str, int, bool]:
    """For mailq: the control file's text, the data file's size (-1: none) and whether a
    delivery holds the entry.  Raises OSError."""
    fd = os.open(queue.qf_path(qdir, qid, letter), queue.READ)
    try:
        data, locked = queue.read_tried(fd)
    finally:
        os.close(fd)
    return message.from_bytes(data), queue.data_size(qdir, qid), locked


def scan_listed(qdir: str, qids: list[str], letter: str = "q") -> Iterator[tuple[str, bytes, int, bool]]:
    """For mailq over a whole queue: (qid, control file bytes, data file size or -1, locked)
    of each entry that can be read, in the order given.  Each file is opened once, relative to
    its directory (no path walk), and its df only stat-ed: a few system calls per entry."""
    qfd = os.open(queue.file_dir(qdir, letter), os.O_RDONLY | os.O_DIRECTORY)
    dfd = os.open(queue.file_dir(qdir, "d"), os.O_RDONLY | os.O_DIRECTORY)
    prefix, open_, close, stat = letter + "f", os.open, os.close, os.stat
    try:
        for qid in qids:
            try:
                fd = open_(prefix + qid, queue.READ, dir_fd=qfd)
            except OSError:
                continue
            try:
                data, locked = queue.read_tried(fd)
            except OSError:
                continue
            finally:
                close(fd)
            try:
                size = stat("df" + qid, dir_fd=dfd).st_size
            except OSError:
                size = -1
            yield qid, data, size, locked
    finally:
        os.close(qfd)
        os.close(dfd)


# -- one pass over a directory ---------------------------------------------------------------------

def collect(qdir: str, letter: str, entry: Entry, limit: int = 0) -> Kept:
    """Read every control file of this letter in qdir once: ``entry(qid, data, df size,
    locked)`` gives (sort key, listing or None) for a request, None for a file that is not one.
    With MaxQueueRunSize (limit) the first limit requests found are kept, as gatherq keeps them."""
    names = queue.ids(qdir, letter)
    if limit or len(names) < PARALLEL_AT:
        return _scan(qdir, letter, names, entry, limit)
    size = max(CHUNK, -(-len(names) // 255))
    chunks = [names[at:at + size] for at in range(0, len(names), size)]
    del names
    child = _spawn(qdir, letter, chunks, entry)
    if child is None:
        return _scan(qdir, letter, [qid for chunk in chunks for qid in chunk], entry)
    pid, tokens, results = child
    kept = Kept()
    _scan_chunks(qdir, letter, chunks, tokens, entry, kept)
    os.close(tokens)
    if not _receive(kept, pid, results):
        return _scan(qdir, letter, queue.ids(qdir, letter), entry)  # the helper failed: all of it here
    return kept


def _scan(qdir: str, letter: str, qids: list[str], entry: Entry, limit: int = 0, kept: Kept | None = None,
          first: int = 0) -> Kept:
    """Read qids into kept (a new one unless given): the first limit requests found are kept (0:
    all), each with its place in the directory when first is qids[0]'s (1 upwards; 0: the
    directory is read whole, in order)."""
    kept = Kept() if kept is None else kept
    places = {qid: first + at for at, qid in enumerate(qids)} if first else None
    for qid, data, size, locked in scan_listed(qdir, qids, letter):
        found = entry(qid, data, size, locked)
        if found is None:
            continue
        kept.requests += 1
        if not limit or kept.kept < limit:
            kept.add(*found, places[qid] if places else 0)
    return kept


def _scan_chunks(qdir: str, letter: str, chunks: list[list[str]], tokens: int, entry: Entry,
                 kept: Kept) -> None:
    """Take chunk after chunk from the shared pipe of chunk numbers until it is empty."""
    size = len(chunks[0])
    while number := os.read(tokens, 1):
        _scan(qdir, letter, chunks[number[0]], entry, kept=kept, first=number[0] * size + 1)


def _spawn(qdir: str, letter: str, chunks: list[list[str]], entry: Entry) -> tuple[int, int, int] | None:
    """A child that reads chunks as they come and writes what it kept to a pipe: (pid, the
    read end of the chunk numbers, the read end of the results), or None."""
    opened: list[int] = []
    try:
        opened += os.pipe()
        os.write(opened[1], bytes(range(len(chunks))))  # at most 255 bytes: the pipe holds them all
        os.close(opened.pop())
        opened += os.pipe()
        pid = os.fork()
    except OSError:
        for fd in opened:
            os.close(fd)
        return None
    tokens, r, w = opened
    if pid:
        os.close(w)
        return pid, tokens, r
    status = 1
    try:  # the child: never back into the caller's code, never its atexit or buffers
        os.close(r)
        kept = Kept()
        _scan_chunks(qdir, letter, chunks, tokens, entry, kept)
        head = marshal.dumps((kept.requests, kept.kept, kept.keys, kept.ends.tobytes(), kept.places.tobytes(),
                              len(kept.text)))
        _write_all(w, len(head).to_bytes(8, "big") + head)
        _write_all(w, kept.text)
        status = 0
    finally:
        os._exit(status)


def _receive(kept: Kept, pid: int, r: int) -> bool:
    """Append the child's entries to ours (their places say where they belong)."""
    try:
        size = int.from_bytes(_read_exactly(r, 8), "big")
        requests, count, keys, ends, places, length = marshal.loads(_read_exactly(r, size))
        base = len(kept.text)
        kept.text.extend(bytes(length))
        with memoryview(kept.text) as whole:
            view, got = whole[base:], 0
            while got < length:  # a pipe gives what it holds: read on until all is there
                n = os.readv(r, [view[got:]])
                if not n:
                    raise EOFError
                got += n
            view.release()
    except (OSError, EOFError, ValueError, TypeError):
        return False
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if status:
        return False
    kept.requests += requests
    kept.kept += count
    kept.keys += keys
    kept.ends.extend(base + end for end in array("Q", ends))
    kept.places.extend(array("Q", places))
    return True


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        part = os.read(fd, min(n - got, 1 << 20))
        if not part:
            raise EOFError
        parts.append(part)
        got += len(part)
    return b"".join(parts)
