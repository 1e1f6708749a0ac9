"""ndbm-style ``.dir``/``.pag`` files in the sdbm layout (Ozan Yigit's public-domain sdbm), for
Sendmail's ``dbm`` map type.

``.pag`` holds 1024-byte pages; each page starts with a count n and n offsets (16-bit), and the
key/value items grow down from the page end (item i ends where item i-1 starts).  ``.dir`` is
the split bitmap: starting at bit 0, while bit d is set, descend to 2d+1 or 2d+2 by the next
hash bit; the page is hash & mask.  Our writer splits every page to the same depth.
"""

from __future__ import annotations

import os
import struct

PBLKSIZ = 1024
PAIRMAX = 1008


class BadFile(ValueError):
    pass


def sdbm_hash(data: bytes) -> int:
    n = 0
    for c in data:
        n = (c + (n << 6) + (n << 16) - n) & 0xFFFFFFFF
    return n


def _page_of(bitmap: bytes, h: int) -> int:
    dbit, mask, hbit = 0, 0, 0
    maxbit = len(bitmap) * 8
    while dbit < maxbit and bitmap[dbit // 8] & (1 << (dbit % 8)):
        dbit = 2 * dbit + (2 if h & (1 << hbit) else 1)
        hbit += 1
        mask = (mask << 1) + 1
    return h & mask


def _page_items(page: bytes) -> list[bytes]:
    n = struct.unpack_from("<H", page, 0)[0]
    if n % 2 or 2 + 2 * n > PBLKSIZ:
        raise BadFile("bad sdbm page")
    offs = struct.unpack_from(f"<{n}H", page, 2)
    items, end = [], PBLKSIZ
    for off in offs:
        if not 2 + 2 * n <= off <= end:
            raise BadFile("bad sdbm item offset")
        items.append(page[off:end])
        end = off
    return items


class Reader:
    def __init__(self, base: str):
        with open(base + ".dir", "rb") as fh:
            self._dir = fh.read()
        with open(base + ".pag", "rb") as fh:
            self._pag = fh.read()
        if len(self._pag) % PBLKSIZ:
            raise BadFile(f"{base}.pag: not a whole number of pages")
        # Our writer splits every page to one depth: the .pag alone then says where a key is,
        # so a reader between the two renames of a rebuild never looks in the wrong page.
        npages = len(self._pag) // PBLKSIZ
        bits = int.from_bytes(self._dir, "little")
        self._mask = npages - 1 if npages and not npages & (npages - 1) and not bits & (bits + 1) else None

    def _page(self, n: int) -> bytes:
        page = self._pag[n * PBLKSIZ:(n + 1) * PBLKSIZ]
        return page if len(page) == PBLKSIZ else b"\0" * PBLKSIZ

    def get(self, key: bytes) -> bytes | None:
        h = sdbm_hash(key)
        page = h & self._mask if self._mask is not None else _page_of(self._dir, h)
        items = _page_items(self._page(page))
        for k, v in zip(items[0::2], items[1::2], strict=False):
            if k == key:
                return bytes(v)
        return None

    def items(self):
        for n in range(len(self._pag) // PBLKSIZ):
            items = _page_items(self._page(n))
            yield from ((bytes(k), bytes(v)) for k, v in zip(items[0::2], items[1::2], strict=False))


def write(base: str, items, mode: int = 0o640) -> None:
    """Write base.dir and base.pag (later duplicates win); each file replaced by rename."""
    table = dict(items)
    for k, v in table.items():
        if len(k) + len(v) + 4 > PAIRMAX:
            raise ValueError(f"key/value pair too long for a dbm map ({len(k) + len(v)} bytes)")
    depth = 0
    while True:
        pages: list[list[tuple[bytes, bytes]]] = [[] for _ in range(1 << depth)]
        for k, v in table.items():
            pages[sdbm_hash(k) & ((1 << depth) - 1)].append((k, v))
        if all(2 + sum(len(k) + len(v) + 4 for k, v in p) <= PBLKSIZ for p in pages):
            break
        depth += 1
    nbits = (1 << depth) - 1  # every node of a complete tree of this depth is split
    bitmap = bytearray((nbits + 7) // 8)
    for bit in range(nbits):
        bitmap[bit // 8] |= 1 << (bit % 8)
    blob = bytearray()
    for pairs in pages:
        page = bytearray(PBLKSIZ)
        top, offs = PBLKSIZ, []
        for k, v in pairs:
            for data in (k, v):
                top -= len(data)
                page[top:top + len(data)] = data
                offs.append(top)
        struct.pack_into(f"<H{len(offs)}H", page, 0, len(offs), *offs)
        blob += page
    for suffix, data in ((".pag", bytes(blob)), (".dir", bytes(bitmap))):
        tmp = f"{base}{suffix}.tmp{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, base + suffix)
