"""Berkeley DB hash and btree files (format version 9, as libdb 4.6-5.3 writes them), in pure Python.

These are the ``.db`` files of Sendmail's ``hash`` and ``btree`` maps: we read the ones Debian's
makemap wrote, and write ones its sendmail, makemap and db_dump read.  Layouts follow libdb's
``dbinc/db_page.h``: a 512-byte metadata page, then pages of ``pagesize`` bytes, each with a
26-byte header and an index of item offsets growing down from the end of the page.
  * hash: bucket b lives at page ``b + spares[log2(b + 1)]``; a bucket's pages chain through
    next_pgno; pairs on a page are sorted by key; keys are hashed with FNV-1 (``__ham_func5``).
  * btree: the root page is named in the metadata; internal pages hold (key, child) entries,
    leaves hold key/data pairs in key order and are linked left to right.
Items longer than a quarter page (hash) or than the btree's overflow size go to overflow pages.
The writer builds the whole file at once (makemap's use); readers are mmap-based and can say
"corrupt" (``BadFile``) but never loop forever or read out of bounds.
"""

from __future__ import annotations

import mmap
import os
import struct

HASH_MAGIC = 0x061561
BTREE_MAGIC = 0x053162
VERSION = 9
PAGESIZE = 4096
P_IBTREE, P_LBTREE, P_OVERFLOW, P_HASHMETA, P_BTREEMETA, P_HASH = 3, 5, 7, 8, 9, 13
H_KEYDATA, H_DUPLICATE, H_OFFPAGE = 1, 2, 3
B_KEYDATA, B_DUPLICATE, B_OVERFLOW = 1, 2, 3
HEADER = 26
CHARKEY = b"%$sniglet^&\0"
LSN = (0, 1)  # what libdb stamps on pages of a database that is not logged


class BadFile(ValueError):
    """Not a Berkeley DB file we can read, or a damaged one."""


def fnv1(data: bytes) -> int:
    """libdb's __ham_func5."""
    h = 0
    for b in data:
        h = ((h * 16777619) & 0xFFFFFFFF) ^ b
    return h


def log2(n: int) -> int:
    """__db_log2: the smallest i with 2**i >= n (n >= 1)."""
    return (n - 1).bit_length()


def _hash_order(a: bytes, b: bytes) -> int:
    """libdb's order of keys on a sorted hash page: bytewise, and a longer key before its prefix
    (bytes' own order but for that last rule: a few C comparisons, no slices)."""
    if a == b:
        return 0
    if a.startswith(b):
        return -1
    if b.startswith(a):
        return 1
    return -1 if a < b else 1


def hash_page_key(key: bytes) -> str:
    """A sort key for _hash_order: the hex digits keep the bytes' order, and the end mark "g",
    above every digit, puts a longer key before its prefix."""
    return key.hex() + "g"


def _align4(n: int) -> int:
    return (n + 3) & ~3


# -- reading ---------------------------------------------------------------------------------------

class Reader:
    """Lookups and iteration over a hash or btree .db file."""

    def __init__(self, path: str):
        with open(path, "rb") as fh:
            try:
                self._m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as exc:
                raise BadFile(f"{path}: empty file") from exc
        m = self._m
        if len(m) < 512:
            raise BadFile(f"{path}: too short for a Berkeley DB file")
        for order in ("<", ">"):
            magic, version, pagesize = struct.unpack_from(order + "III", m, 12)
            if magic in (HASH_MAGIC, BTREE_MAGIC):
                break
        else:
            raise BadFile(f"{path}: not a Berkeley DB hash or btree file")
        if version < 8 or version > 10 or pagesize < 512 or pagesize > 65536 or pagesize & (pagesize - 1):
            raise BadFile(f"{path}: unsupported Berkeley DB version {version} or page size {pagesize}")
        if m[24] or m[26] & 1:
            raise BadFile(f"{path}: encrypted or checksummed databases are not supported")
        self.order, self.pagesize, self.path = order, pagesize, path
        self._cache: dict[int, tuple[int, ...]] = {}
        self.kind = "hash" if magic == HASH_MAGIC else "btree"
        self.npages = len(m) // pagesize
        self._u32 = struct.Struct(order + "I")
        self._u16 = struct.Struct(order + "H")
        if self.kind == "hash":
            (self.max_bucket, self.high_mask, self.low_mask) = struct.unpack_from(order + "III", m, 72)
            self.spares = struct.unpack_from(order + "32I", m, 96)
        else:
            self.root = self._u32.unpack_from(m, 88)[0]

    def close(self) -> None:
        self._m.close()

    # page access, bounds-checked
    def _page(self, pgno: int) -> int:
        if pgno <= 0 or pgno >= self.npages:
            raise BadFile(f"{self.path}: page {pgno} out of range")
        return pgno * self.pagesize

    def _header(self, base: int) -> tuple[int, int, int, int, int, int]:
        """(prev, next, entries, hf_offset, level, type) of the page at byte offset base."""
        prev, nxt = struct.unpack_from(self.order + "II", self._m, base + 12)
        entries, hoff = struct.unpack_from(self.order + "HH", self._m, base + 20)
        return prev, nxt, entries, hoff, self._m[base + 24], self._m[base + 25]

    def _offsets(self, base: int, entries: int) -> tuple[int, ...]:
        """A page's item offsets, checked once and kept (the file never changes under us)."""
        offs = self._cache.get(base)
        if offs is not None and len(offs) == entries:
            return offs
        if HEADER + 2 * entries > self.pagesize:
            raise BadFile(f"{self.path}: bad entry count")
        offs = struct.unpack_from(f"{self.order}{entries}H", self._m, base + HEADER)
        if offs and (min(offs) < HEADER or max(offs) >= self.pagesize):
            raise BadFile(f"{self.path}: item offset out of page")
        self._cache[base] = offs
        return offs

    def _overflow(self, pgno: int, total: int) -> bytes:
        out, seen = bytearray(), 0
        while pgno and len(out) < total:
            base = self._page(pgno)
            _prev, nxt, _ref, length, _lvl, ptype = self._header(base)
            if ptype != P_OVERFLOW or length > self.pagesize - HEADER:
                raise BadFile(f"{self.path}: bad overflow page {pgno}")
            out += self._m[base + HEADER:base + HEADER + length]
            pgno, seen = nxt, seen + 1
            if seen > self.npages:
                raise BadFile(f"{self.path}: overflow chain loops")
        if len(out) != total:
            raise BadFile(f"{self.path}: overflow item truncated")
        return bytes(out)

    # hash
    def _hash_items(self, base: int, entries: int) -> list[bytes]:
        offs = self._offsets(base, entries)
        items = []
        for i, off in enumerate(offs):
            end = self.pagesize if i == 0 else offs[i - 1]
            if end <= off:
                raise BadFile(f"{self.path}: overlapping items")
            kind = self._m[base + off]
            if kind == H_OFFPAGE:
                pgno, tlen = struct.unpack_from(self.order + "II", self._m, base + off + 4)
                items.append(self._overflow(pgno, tlen))
            elif kind == H_DUPLICATE:  # len-data-len triples: the first duplicate
                blob = self._m[base + off + 1:base + end]
                n = self._u16.unpack_from(blob, 0)[0]
                items.append(bytes(blob[2:2 + n]))
            else:
                items.append(bytes(self._m[base + off + 1:base + end]))
        return items

    def _bucket_pages(self, bucket: int):
        pgno = bucket + self.spares[log2(bucket + 1)]
        for _ in range(self.npages):
            if not pgno:
                return
            base = self._page(pgno)
            _prev, nxt, entries, _h, _l, ptype = self._header(base)
            if ptype not in (P_HASH, 2):
                raise BadFile(f"{self.path}: page {pgno} is not a hash page")
            yield base, entries, ptype
            pgno = nxt
        raise BadFile(f"{self.path}: bucket chain loops")

    # btree
    def _btree_items(self, base: int, entries: int, internal: bool) -> list[tuple[bytes, int]]:
        """(bytes, child pgno or 0) per entry."""
        out = []
        for off in self._offsets(base, entries):
            p = base + off
            length = self._u16.unpack_from(self._m, p)[0]
            kind = self._m[p + 2] & 0x7F
            if internal:
                child = self._u32.unpack_from(self._m, p + 4)[0]
                if kind == B_OVERFLOW:
                    pg, tlen = struct.unpack_from(self.order + "II", self._m, p + 12 + 4)
                    out.append((self._overflow(pg, tlen), child))
                else:
                    out.append((bytes(self._m[p + 12:p + 12 + length]), child))
            elif kind == B_OVERFLOW:
                pg, tlen = struct.unpack_from(self.order + "II", self._m, p + 4)
                out.append((self._overflow(pg, tlen), 0))
            else:
                if off + 3 + length > self.pagesize:
                    raise BadFile(f"{self.path}: item runs past its page")
                out.append((bytes(self._m[p + 3:p + 3 + length]), 0))
        return out

    def _leftmost_leaf(self) -> int:
        pgno = self.root
        for _ in range(64):
            base = self._page(pgno)
            _p, _n, entries, _h, _l, ptype = self._header(base)
            if ptype == P_LBTREE:
                return pgno
            if ptype != P_IBTREE or not entries:
                raise BadFile(f"{self.path}: bad btree page {pgno}")
            pgno = self._btree_items(base, 1, True)[0][1]
        raise BadFile(f"{self.path}: btree too deep")

    def items(self):
        """Every (key, value), bucket by bucket (hash) or in key order (btree)."""
        if self.kind == "hash":
            for bucket in range(self.max_bucket + 1):
                for base, entries, _t in self._bucket_pages(bucket):
                    it = self._hash_items(base, entries)
                    yield from zip(it[0::2], it[1::2], strict=False)
            return
        pgno, seen = self._leftmost_leaf(), 0
        while pgno:
            base = self._page(pgno)
            _prev, nxt, entries, _h, _l, ptype = self._header(base)
            if ptype != P_LBTREE:
                raise BadFile(f"{self.path}: bad leaf page {pgno}")
            it = [b for b, _c in self._btree_items(base, entries, False)]
            yield from zip(it[0::2], it[1::2], strict=False)
            pgno, seen = nxt, seen + 1
            if seen > self.npages:
                raise BadFile(f"{self.path}: leaf chain loops")

    def _hash_find(self, base: int, entries: int, ptype: int, key: bytes) -> bytes | None:
        """The value for key on one hash page: a binary search on sorted pages (as libdb's
        __ham_getindex_sorted), a scan on old unsorted ones or when keys live off-page."""
        m, pagesize = self._m, self.pagesize
        offs = self._offsets(base, entries)

        def item(i: int) -> bytes | None:
            off, end = offs[i], (pagesize if i == 0 else offs[i - 1])
            return bytes(m[base + off + 1:base + end]) if m[base + off] == H_KEYDATA else None

        def value(i: int) -> bytes:
            v = item(i + 1)
            return v if v is not None else self._hash_items(base, entries)[i + 1]

        if ptype == P_HASH:
            lo, hi = 0, entries // 2
            while lo < hi:
                mid = (lo + hi) // 2
                k = item(2 * mid)
                if k is None:
                    break  # an off-page key: fall back to the scan
                c = _hash_order(key, k)
                if c == 0:
                    return value(2 * mid)
                lo, hi = (lo, mid) if c < 0 else (mid + 1, hi)
            else:
                return None
        for i in range(0, entries - 1, 2):
            k = item(i)
            if k is None:
                k = self._hash_items(base, entries)[i]
            if k == key:
                return value(i)
        return None

    def get(self, key: bytes) -> bytes | None:
        if self.kind == "hash":
            h = fnv1(key)
            bucket = h & self.high_mask
            if bucket > self.max_bucket:
                bucket &= self.low_mask
            for base, entries, ptype in self._bucket_pages(bucket):
                value = self._hash_find(base, entries, ptype, key)
                if value is not None:
                    return value
            return None
        pgno = self.root
        for _ in range(64):
            base = self._page(pgno)
            _p, _n, entries, _h, _l, ptype = self._header(base)
            if ptype == P_LBTREE:
                it = [b for b, _c in self._btree_items(base, entries, False)]
                for k, v in zip(it[0::2], it[1::2], strict=False):
                    if k == key:
                        return v
                return None
            if ptype != P_IBTREE:
                raise BadFile(f"{self.path}: bad btree page {pgno}")
            children = self._btree_items(base, entries, True)
            lo, hi = 1, len(children)  # entry 0's key is ignored: it stands for -infinity
            while lo < hi:
                mid = (lo + hi) // 2
                if children[mid][0] <= key:
                    lo = mid + 1
                else:
                    hi = mid
            pgno = children[lo - 1][1]
        raise BadFile(f"{self.path}: btree too deep")


# -- writing ---------------------------------------------------------------------------------------

class _Pages:
    """Pages being built; page 0 is reserved for the metadata."""

    def __init__(self, pagesize: int, order: str = "<"):
        self.pagesize, self.order = pagesize, order
        self.pages: list[bytearray] = [bytearray(pagesize)]

    def new(self) -> int:
        self.pages.append(bytearray(self.pagesize))
        return len(self.pages) - 1

    def header(self, pgno: int, *, prev: int = 0, nxt: int = 0, entries: int = 0, hoff: int = 0,
               level: int = 0, ptype: int = 0) -> None:
        struct.pack_into(self.order + "IIIIIHHBB", self.pages[pgno], 0, *LSN, pgno, prev, nxt, entries,
                         hoff, level, ptype)

    def overflow(self, data: bytes) -> int:
        """Write data to a chain of overflow pages; returns the first page number."""
        room = self.pagesize - HEADER
        chunks = [data[i:i + room] for i in range(0, len(data), room)] or [b""]
        pgnos = [self.new() for _ in chunks]
        for i, (pg, chunk) in enumerate(zip(pgnos, chunks, strict=True)):
            self.header(pg, prev=pgnos[i - 1] if i else 0, nxt=pgnos[i + 1] if i + 1 < len(pgnos) else 0,
                        entries=1, hoff=len(chunk), ptype=P_OVERFLOW)
            self.pages[pg][HEADER:HEADER + len(chunk)] = chunk
        return pgnos[0]

    def fill(self, pgno: int, items: list[bytes], offsets: list[int] | None = None) -> int:
        """Lay items down from the end of the page, index after the header; returns hf_offset.
        ``offsets`` may repeat an earlier item's offset (btree on-page duplicates)."""
        page, top, offs = self.pages[pgno], self.pagesize, []
        for item in items:
            top -= len(item)
            page[top:top + len(item)] = item
            offs.append(top)
        index = offsets(offs) if callable(offsets) else offs
        struct.pack_into(f"{self.order}{len(index)}H", page, HEADER, *index)
        return top

    def meta(self, magic: int, ptype: int, flags: int = 0) -> None:
        struct.pack_into(self.order + "IIIIIIBBBBIIIIII", self.pages[0], 0, *LSN, 0, magic, VERSION,
                         self.pagesize, 0, ptype, 0, 0, 0, len(self.pages) - 1, 0, 0, 0, flags)
        self.pages[0][52:72] = os.urandom(20)

    def save(self, path: str, mode: int) -> None:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(b"".join(self.pages))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)


def write_hash(path: str, items, *, pagesize: int = PAGESIZE, mode: int = 0o640) -> None:
    """Write (key, value) pairs as a Berkeley DB hash file (later duplicates of a key win)."""
    table = dict(items)
    pages = _Pages(pagesize)
    big = pagesize // 4

    def item(data: bytes) -> bytes:
        if len(data) > big:
            return struct.pack("<BxxxII", H_OFFPAGE, pages.overflow(data), len(data))
        return bytes([H_KEYDATA]) + data

    room = pagesize - HEADER
    need = sum(min(len(k), 12) + min(len(v), 12) + 6 for k, v in table.items())
    l2 = max(1, log2(max(2, -(-need * 10 // (room * 7)))))  # about 70 % full
    nbuckets = 1 << l2
    buckets: list[list[tuple[bytes, bytes]]] = [[] for _ in range(nbuckets)]
    for k, v in table.items():
        buckets[fnv1(k) & (nbuckets - 1)].append((k, v))
    for _ in range(nbuckets):
        pages.new()  # bucket b is page b + 1: spares[0..l2] = 1
    for b, pairs in enumerate(buckets):
        pgno, chunk, used = b + 1, [], 0
        for k, v in sorted(pairs, key=lambda kv: hash_page_key(kv[0])):
            pair = [item(k), item(v)]
            size = len(pair[0]) + len(pair[1]) + 4
            if chunk and used + size > room:
                _close_hash_page(pages, pgno, chunk, nxt := pages.new())
                pages.header(nxt, prev=pgno, ptype=P_HASH)
                pgno, chunk, used = nxt, [], 0
            chunk += pair
            used += size
        _close_hash_page(pages, pgno, chunk, 0)
    pages.meta(HASH_MAGIC, P_HASHMETA)
    spares = [1] * (l2 + 1) + [0] * (32 - l2 - 1)
    struct.pack_into("<IIIIII32I", pages.pages[0], 72, nbuckets - 1, nbuckets - 1, nbuckets // 2 - 1, 0,
                     len(table), fnv1(CHARKEY), *spares)
    pages.save(path, mode)


def _close_hash_page(pages: _Pages, pgno: int, items: list[bytes], nxt: int) -> None:
    prev = struct.unpack_from("<I", pages.pages[pgno], 12)[0]
    hoff = pages.fill(pgno, items)
    pages.header(pgno, prev=prev, nxt=nxt, entries=len(items), hoff=hoff, ptype=P_HASH)


def _bkeydata(data: bytes) -> bytes:
    raw = struct.pack("<HB", len(data), B_KEYDATA) + data
    return raw + b"\0" * (_align4(len(raw)) - len(raw))


def write_btree(path: str, items, *, pagesize: int = PAGESIZE, mode: int = 0o640, dups: bool = False) -> None:
    """Write (key, value) pairs as a Berkeley DB btree file, in key order.  With dups, a key may
    repeat (its values kept in input order); else a later duplicate wins."""
    pairs = sorted(items, key=lambda kv: kv[0]) if dups else sorted(dict(items).items())
    pages = _Pages(pagesize)
    root = pages.new()  # page 1 is the root, as libdb makes it
    ovfl_size = (pagesize - HEADER) // 4 - 10  # B_MINKEY_TO_OVFLSIZE with minkey 2

    def item(data: bytes) -> bytes:
        if len(data) > ovfl_size:
            return struct.pack("<HBxII", 0, B_OVERFLOW, pages.overflow(data), len(data))
        return _bkeydata(data)

    room = pagesize - HEADER
    leaves: list[list[tuple[bytes, bytes, bytes]]] = [[]]  # (key, key item, data item)
    used = 0
    for k, v in pairs:
        ki, vi = item(k), item(v)
        same = dups and leaves[-1] and leaves[-1][-1][0] == k
        size = (0 if same else len(ki)) + len(vi) + 4
        if leaves[-1] and used + size > room and not same:
            leaves.append([])
            used = 0
        leaves[-1].append((k, ki, vi))
        used += size
    level_pages = [root] if len(leaves) == 1 else [pages.new() for _ in leaves]
    for i, (pgno, leaf) in enumerate(zip(level_pages, leaves, strict=True)):
        hoff = _fill_leaf(pages, pgno, leaf)
        pages.header(pgno, prev=level_pages[i - 1] if i else 0,
                     nxt=level_pages[i + 1] if i + 1 < len(level_pages) else 0,
                     entries=2 * len(leaf), hoff=hoff, level=1, ptype=P_LBTREE)
    firsts = [leaf[0][0] for leaf in leaves if leaf]  # an empty map is one empty leaf
    level = 1
    while len(level_pages) > 1:
        level += 1
        groups, group, used = [[]], None, 0
        for key, child in zip(firsts, level_pages, strict=True):
            entry = (key, child)
            size = _align4(12 + len(key)) + 2
            if groups[-1] and used + size > room:
                groups.append([])
                used = 0
            groups[-1].append(entry)
            used += size
        parents = [root] if len(groups) == 1 else [pages.new() for _ in groups]
        for pgno, group in zip(parents, groups, strict=True):
            raw = []
            for n, (key, child) in enumerate(group):
                kbytes = b"" if n == 0 else key
                entry = struct.pack("<HBxII", len(kbytes), B_KEYDATA, child, 0) + kbytes
                raw.append(entry + b"\0" * (_align4(len(entry)) - len(entry)))
            hoff = pages.fill(pgno, raw)
            pages.header(pgno, entries=len(raw), hoff=hoff, level=level, ptype=P_IBTREE)
        firsts = [g[0][0] for g in groups]
        level_pages = parents
    pages.meta(BTREE_MAGIC, P_BTREEMETA, flags=1 if dups else 0)
    struct.pack_into("<IIIII", pages.pages[0], 72, 0, 2, 0, 0x20, root)
    pages.save(path, mode)


def _fill_leaf(pages: _Pages, pgno: int, leaf: list[tuple[bytes, bytes, bytes]]) -> int:
    """Lay key/data items on a leaf; a repeated key (duplicate) shares its key item."""
    items, slots, key_slot = [], [], {}
    for k, ki, vi in leaf:
        if k not in key_slot:
            key_slot[k] = len(items)
            items.append(ki)
        slots.append(key_slot[k])
        slots.append(len(items))
        items.append(vi)
    return pages.fill(pgno, items, lambda offs: [offs[s] for s in slots])
