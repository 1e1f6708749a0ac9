"""Aliases: the AliasFile text format, its database, and expansion of a local name.

Text format (aliases(5)): ``name: value, value`` with continuation lines that start with
white space and ``#`` comments.  A value is a local name, ``user@domain``, ``|program``,
``/file``, ``:include:/path`` or ``\\user`` (no further aliasing).  The database is what
Sendmail's newaliases writes: ``AliasFile.db`` (Berkeley DB hash; ``O AliasFile=cdb:/path``
and the other map types work too) with lower-cased keys, keys and values NUL-terminated, and
the ``@``/``@`` completeness mark.  When it is missing we read the text itself.
"""

from __future__ import annotations

import os

from mta import address, errors, maps
from mta.record import record

MAX_RECURSION = 10


def parse_file(path: str) -> list[tuple[str, str, int]]:
    """(name, value, lineno) for each alias in path; raises ConfigError if unreadable."""
    try:
        with open(path, encoding="latin-1") as fh:
            lines = fh.read().split("\n")
    except OSError as exc:
        raise errors.ConfigError(f"{path}: {exc.strerror}") from exc
    entries: list[list] = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line[:1] in (" ", "\t"):
            if entries:
                entries[-1][1] += line.rstrip("\n")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            continue
        entries.append([name.strip().lower(), value.strip(), n])
    return [(e[0], e[1].strip(), e[2]) for e in entries]


def spec(alias_file: str) -> tuple[str, str]:
    """AliasFile '[type:]path' -> (map type, path); the type defaults to hash, as Sendmail's."""
    first = alias_file.split(",")[0].strip()
    mtype, colon, path = first.partition(":")
    if colon and mtype in maps.TYPES and not mtype.startswith("/"):
        return mtype, path
    return "hash", first


def db_path(alias_file: str) -> str:
    mtype, path = spec(alias_file)
    return maps.db_files(maps.resolve_type(mtype, path), path)[0]


def build(alias_file: str) -> tuple[int, int, int]:
    """newaliases: rebuild the database; returns (count, longest value, total bytes)."""
    mtype, path = spec(alias_file)
    entries = parse_file(path)
    seen: dict[str, str] = {}
    for name, value, _n in entries:
        seen[name] = value  # a later duplicate wins, as sendmail's hash map insert does
    items = [(k.encode("latin-1") + b"\0", v.encode("latin-1") + b"\0") for k, v in seen.items()]
    items.append((b"@\0", b"@\0"))
    try:
        maps.write(mtype, path, items)
    except OSError as exc:
        raise errors.CantCreate(f"{db_path(alias_file)}: {exc.strerror}") from exc
    longest = max((len(v) for _k, v, _n in entries), default=0)
    total = sum(len(k) + len(v) for k, v, _n in entries)
    return len(entries), longest, total


class Aliases:
    """Lookups in one AliasFile: the database when present and whole, else the text."""

    def __init__(self, alias_file: str):
        mtype, self.path = spec(alias_file)
        self._table: dict[str, str] | None = None
        self._db = None
        self.stale = False
        try:
            self._db = maps.open_reader(mtype, self.path)
            if self._get(b"@") is None:
                self._db = None
            else:
                self.stale = os.stat(self.path).st_mtime > os.stat(db_path(alias_file)).st_mtime
        except (OSError, ValueError):
            self._db = None

    def _get(self, key: bytes) -> bytes | None:
        value = self._db.get(key + b"\0")
        if value is None:
            value = self._db.get(key)
        return None if value is None else value.rstrip(b"\0")

    def lookup(self, name: str) -> str | None:
        key = name.lower()
        if self._db is not None:
            value = self._get(key.encode("latin-1"))
            return None if value is None else value.decode("latin-1")
        if self._table is None:
            try:
                self._table = {k: v for k, v, _n in parse_file(self.path)}
            except errors.ConfigError:
                self._table = {}
        return self._table.get(key)

    def items(self):
        if self._db is not None:
            return [(k.rstrip(b"\0").decode("latin-1"), v.rstrip(b"\0").decode("latin-1"))
                    for k, v in self._db.items()]
        return [(k, v) for k, v, _n in parse_file(self.path)]


@record(frozen=True)
class Target:
    """One result of expansion: what to deliver to and the alias that led there."""

    value: str  # a local user, user@domain, |program, /file
    alias: str = ""  # the alias it came from ('' if none)
    owner: str = ""  # owner-LIST for errors, when defined
    no_alias: bool = False  # came as \\user


def values(text: str) -> list[str]:
    return [v.strip() for v in address.split_list(text, groups=False) if v.strip()]


def _read_include(path: str) -> list[str]:
    """The addresses in an :include: file; one anybody may write is refused, as sendmail does."""
    try:
        if os.stat(path).st_mode & 0o002:
            raise errors.NoPermission(f"{path}: world writable :include: file refused")
        with open(path, encoding="latin-1") as fh:
            out = []
            for line in fh:
                if line.strip() and not line.startswith("#"):
                    out.extend(values(line))
            return out
    except OSError as exc:
        # recipient.c: an :include: that cannot be read now queues the address (451 4.2.4)
        raise errors.TempFail(f"Cannot open {path}: {exc.strerror}", status="4.2.4", code=451) from exc


def _key(value: str) -> str:
    """The alias key of a local value: its local part, unquoted, lower-cased."""
    try:
        return address.parse(value).user.lower()
    except errors.AddressError:
        return value.split("@")[0].lower()


def expand(aliases: Aliases | None, name: str, *, is_local=lambda v: "@" not in v) -> list[Target]:
    """Expand a local name through aliases and :include: files, with loop detection.

    A name that reaches itself again is delivered as the user of that name; a loop through
    others is cut at the repeat.  ``is_local(value)`` says which values are local names.
    """
    out: list[Target] = []
    seen: set[str] = set()

    def walk(value: str, alias: str, owner: str, depth: int) -> None:
        if value.startswith("\\"):
            out.append(Target(value[1:], alias, owner, no_alias=True))
            return
        if value.lower().startswith(":include:"):
            for v in _read_include(value[9:].strip()):
                walk(v, alias, owner, depth + 1)
            return
        if value.startswith(('"|', '"/')):  # a quoted program or file; no other quotes go
            value = value.strip('"')
        if value.startswith(("|", "/")) or not is_local(value) or aliases is None:
            out.append(Target(value, alias, owner))
            return
        key = _key(value)
        expansion = aliases.lookup(key)
        if expansion is None or key in seen or depth > MAX_RECURSION:
            out.append(Target(value, alias, owner, no_alias=key in seen))
            return
        seen.add(key)
        list_owner = f"owner-{key}" if aliases.lookup(f"owner-{key}") is not None else owner
        for v in values(expansion):
            walk(v, key, list_owner, depth + 1)

    walk(name, "", "", 0)
    unique: dict[str, Target] = {}
    for t in out:
        unique.setdefault(t.value.lower(), t)
    return list(unique.values())
