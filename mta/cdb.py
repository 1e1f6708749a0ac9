"""Constant databases (D. J. Bernstein's cdb format, as tinycdb and sendmail's cdb maps write it).

A cdb file is built beside its final name and renamed into place, so a reader sees the old
map or the new one, never half of one.  ``Reader.get`` returns the first value for a key.
Format: 256 (position, slots) pairs, the records (klen, vlen, key, value), then 256 hash tables.
"""

from __future__ import annotations

import mmap
import os
import struct

_PAIR = struct.Struct("<II")


def cdb_hash(key: bytes) -> int:
    h = 5381
    for b in key:
        h = ((h << 5) + h ^ b) & 0xFFFFFFFF
    return h


def write(path: str, items, mode: int = 0o644) -> None:
    """Write (key, value) byte pairs to path atomically (tmp file, fsync, rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    tables: list[list[tuple[int, int]]] = [[] for _ in range(256)]
    with open(tmp, "wb") as fh:
        fh.write(b"\0" * 2048)
        pos = 2048
        for key, value in items:
            fh.write(_PAIR.pack(len(key), len(value)) + key + value)
            h = cdb_hash(key)
            tables[h & 0xFF].append((h, pos))
            pos += 8 + len(key) + len(value)
        header = []
        for entries in tables:
            slots = len(entries) * 2
            table = [(0, 0)] * slots
            for h, rpos in entries:
                i = (h >> 8) % slots
                while table[i][1]:
                    i = (i + 1) % slots
                table[i] = (h, rpos)
            header.append(_PAIR.pack(pos, slots))
            fh.write(b"".join(_PAIR.pack(*slot) for slot in table))
            pos += 8 * slots
        fh.seek(0)
        fh.write(b"".join(header))
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.rename(tmp, path)


class Reader:
    def __init__(self, path: str):
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 2048:
                raise ValueError(f"{path}: not a cdb file (too short)")
            self._data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def get(self, key: bytes) -> bytes | None:
        data = self._data
        h = cdb_hash(key)
        tpos, slots = _PAIR.unpack_from(data, (h & 0xFF) * 8)
        if not slots:
            return None
        i = (h >> 8) % slots
        for _ in range(slots):
            sh, rpos = _PAIR.unpack_from(data, tpos + i * 8)
            if not rpos:
                return None
            if sh == h:
                klen, vlen = _PAIR.unpack_from(data, rpos)
                if data[rpos + 8:rpos + 8 + klen] == key:
                    return data[rpos + 8 + klen:rpos + 8 + klen + vlen]
            i = (i + 1) % slots
        return None

    def items(self):
        data = self._data
        end, _ = _PAIR.unpack_from(data, 0)
        pos = 2048
        while pos < end:
            klen, vlen = _PAIR.unpack_from(data, pos)
            yield data[pos + 8:pos + 8 + klen], data[pos + 8 + klen:pos + 8 + klen + vlen]
            pos += 8 + klen + vlen

    def close(self) -> None:
        self._data.close()
