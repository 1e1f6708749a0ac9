"""Maps: every database type behind one interface, and K-line maps with their flags.

Types and files, as Sendmail names them:
    hash, btree   PATH.db          Berkeley DB (``mta.bdb``, pure Python, libdb 4.6-5.3 format)
    dbm           PATH.dir/.pag    ndbm-style, sdbm layout (``mta.sdbm``)
    cdb           PATH.cdb         constant database (``mta.cdb``)
    implicit      the first of PATH.db, PATH.dir/.pag, PATH.cdb that exists
    text          PATH itself      a flat file, key in column -k, value in column -v, split by -z
A lookup answers the value, None (not found), or raises ``MapTempFail`` when the map cannot be
read now (missing without -o, corrupt, wrong type): the caller defers, never "User unknown".
Files are reopened when they change on disk, so a rebuilt map (built beside, then renamed) is
seen whole, old or new.  The daemon asks the same keys over and over (every RCPT looks up
To:domain, the client's address...): answers are kept per open generation of the files, and
whether the files changed is looked at no more than once a second (RECHECK), so a `makemap` is
seen within a second, as Sendmail's next connection would see it.
"""

from __future__ import annotations

import os
import time

from mta import errors
from mta.config import MapDecl

TYPES = ("hash", "btree", "dbm", "cdb", "implicit", "text")
RECHECK = 1.0  # seconds between looks at whether a map's files were rebuilt
CACHE_SIZE = 8192  # answers kept per map (found or not); the lot is dropped when full or rebuilt
_ABSENT = object()


class MapTempFail(errors.TempFail):
    """The map cannot answer now."""

    def __init__(self, text: str):
        super().__init__(text, status="4.3.0")


def db_files(mtype: str, path: str) -> list[str]:
    """The files a map of this type keeps for PATH (makemap's names)."""
    if path.endswith(".db") and mtype in ("hash", "btree"):
        path = path[:-3]
    return {"hash": [path + ".db"], "btree": [path + ".db"], "dbm": [path + ".dir", path + ".pag"],
            "cdb": [path + ".cdb"], "text": [path]}.get(mtype, [])


def resolve_type(mtype: str, path: str) -> str:
    """'implicit' -> the type whose files exist (hash, then dbm, then cdb)."""
    if mtype != "implicit":
        return mtype
    for candidate in ("hash", "dbm", "cdb"):
        if all(os.path.exists(f) for f in db_files(candidate, path)):
            return candidate
    return "hash"


def open_reader(mtype: str, path: str):
    """A reader with get(bytes) and items() for the database of this type at PATH."""
    mtype = resolve_type(mtype, path)
    files = db_files(mtype, path)
    if mtype in ("hash", "btree"):
        from mta import bdb

        reader = bdb.Reader(files[0])
        if reader.kind != mtype:
            raise bdb.BadFile(f"{files[0]}: a {reader.kind} database, not {mtype}")
        return reader
    if mtype == "dbm":
        from mta import sdbm

        return sdbm.Reader(path)
    if mtype == "cdb":
        from mta import cdb

        return cdb.Reader(files[0])
    raise ValueError(f"Unknown database type {mtype}")


def write(mtype: str, path: str, items: list[tuple[bytes, bytes]], *, dups: bool = False, mode: int = 0o640) -> None:
    """Build the database beside its final name and rename it into place."""
    mtype = resolve_type(mtype, path)
    files = db_files(mtype, path)
    if mtype == "hash":
        from mta import bdb

        bdb.write_hash(files[0], items, mode=mode)
    elif mtype == "btree":
        from mta import bdb

        bdb.write_btree(files[0], items, mode=mode, dups=dups)
    elif mtype == "dbm":
        from mta import sdbm

        sdbm.write(path, items, mode=mode)
    elif mtype == "cdb":
        from mta import cdb

        cdb.write(files[0], items, mode=mode)
    else:
        raise ValueError(f"Unknown database type {mtype}")


class TextReader:
    """Sendmail's text map: a flat file, columns split by -z (default white space)."""

    def __init__(self, path: str, keycol: int = 0, valcol: int | None = None, delim: str | None = None):
        self.table: dict[bytes, bytes] = {}
        with open(path, "rb") as fh:
            for line in fh:
                line = line.rstrip(b"\r\n")
                if not line.strip() or line.startswith(b"#"):
                    continue
                cols = line.split(delim.encode()) if delim else line.split()
                if keycol >= len(cols):
                    continue
                if valcol is None:
                    rest = line.split(delim.encode() if delim else None, keycol + 1)
                    value = rest[keycol + 1].strip() if len(rest) > keycol + 1 else b""
                else:
                    value = cols[valcol] if valcol < len(cols) else b""
                self.table.setdefault(cols[keycol].lower(), value)

    def get(self, key: bytes) -> bytes | None:
        return self.table.get(key.lower())

    def items(self):
        return self.table.items()


class Map:
    """A map declared by a K line, with Sendmail's flags (map.c map_parseargs):
    -o optional, -f keep key case, -N/-O NUL-terminated keys (-O: try both), -m match only,
    -a<text> append to a found value, -T<text> (tempfail marker), -k/-v/-z columns for text."""

    def __init__(self, decl: MapDecl, log=None):
        self.decl, self.log = decl, log
        self.name, self.type, self.path = decl.name, decl.type, decl.path
        f = self._flags(decl.flags)
        self.optional, self.fold = "o" in f, "f" not in f
        self.nul_only, self.nul_both = "N" in f and "O" not in f, "O" in f
        self.match_only, self.append = "m" in f, f.get("a", "")
        self.keycol = int(f["k"]) if f.get("k", "").isdigit() else 0
        self.valcol = int(f["v"]) if f.get("v", "").isdigit() else None
        self.delim = f.get("z") or None
        self._reader = None
        self._stamp = None
        self._checked = -RECHECK
        self._answers: dict[str, object] = {}
        self._warned = False

    @staticmethod
    def _flags(args: list[str]) -> dict[str, str]:
        out = {}
        for a in args:
            if len(a) >= 2 and a[0] == "-":
                out[a[1]] = a[2:]
        return out

    def _files(self) -> list[str]:
        return db_files(resolve_type(self.type, self.path), self.path)

    def _open(self):
        now = time.monotonic()
        if self._reader is not None and now - self._checked < RECHECK:
            return self._reader
        files = self._files()
        try:
            stamp = tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in map(os.stat, files))
        except OSError as exc:
            if self.optional and exc.errno == 2:
                return None
            raise MapTempFail(f"map {self.name}: cannot open {files[0] if files else self.path}: "
                              f"{exc.strerror}") from exc
        if self._reader is not None and stamp == self._stamp:
            self._checked = now
            return self._reader
        try:
            if self.type == "text":
                self._reader = TextReader(self.path, self.keycol, self.valcol, self.delim)
            else:
                self._reader = open_reader(self.type, self.path)
        except (OSError, ValueError) as exc:
            raise MapTempFail(f"map {self.name}: {exc}") from exc
        self._stamp, self._checked, self._answers = stamp, now, {}
        self._check_age(files)
        return self._reader

    def _check_age(self, files: list[str]) -> None:
        if self._warned or self.type == "text" or self.log is None:
            return
        try:
            if os.stat(self.path).st_mtime > os.stat(files[0]).st_mtime:
                self.log.line(f"{self.name} database {self.path} out of date")
                self._warned = True
        except OSError:
            pass

    def lookup(self, key: str) -> str | None:
        reader = self._open()
        if reader is None:
            return None
        answer = self._answers.get(key, _ABSENT)
        if answer is _ABSENT:
            answer = self._lookup(reader, key)
            if len(self._answers) >= CACHE_SIZE:
                self._answers = {}
            self._answers[key] = answer
        return answer  # type: ignore[return-value]

    def _lookup(self, reader, key: str) -> str | None:
        k = key.lower() if self.fold else key
        raw = k.encode("utf-8", "surrogateescape")
        tries = [raw + b"\0"] if self.nul_only else ([raw, raw + b"\0"] if self.nul_both else [raw])
        try:
            for candidate in tries:
                value = reader.get(candidate)
                if value is not None:
                    text = value.rstrip(b"\0").decode("utf-8", "replace")
                    return (key if self.match_only else text) + self.append
        except (ValueError, OSError, IndexError) as exc:
            raise MapTempFail(f"map {self.name}: {exc}") from exc
        return None


class Maps:
    """The maps a config declares, opened on first use."""

    def __init__(self, cfg, log=None):
        self.cfg, self.log = cfg, log
        self._maps: dict[str, Map] = {}

    def get(self, name: str) -> Map | None:
        if name not in self._maps:
            decl = self.cfg.maps.get(name)
            if decl is None or decl.type not in TYPES or not decl.path:
                return None
            self._maps[name] = Map(decl, self.log)
        return self._maps[name]

    def lookup(self, name: str, key: str) -> str | None:
        m = self.get(name)
        return m.lookup(key) if m else None
