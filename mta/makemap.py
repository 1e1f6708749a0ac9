"""makemap: build a map database from text lines, or dump one (-u), as Sendmail's makemap.c.

Input rules: blank lines and lines starting with the comment character are skipped; without -t
a line starting with white space is a syntax error; the key runs to the first separator, the
value starts after the separators that follow.  Keys are folded to lower case unless -f.  A
repeated key keeps its first value and is an error (exit 65) unless -r (last wins) or -d
(btree keeps all).  The new database is built beside the old one and renamed into place.
Messages go to stderr in makemap's words; ``run`` returns the exit code.
"""

from __future__ import annotations

import os
import sys

from mta import errors, maps
from mta.record import factory, record

LINE_MAX = 1024  # makemap's ibuf


@record
class Request:
    type: str = ""
    path: str = ""
    cf: str = "/etc/mail/sendmail.cf"
    nul: bool = False  # -N
    dups: bool = False  # -d
    comment: str = "#"  # -D
    empty: bool = False  # -e
    fold: bool = True  # not -f
    fallback: str = ""  # -i
    append: bool = False  # -o
    replace: bool = False  # -r
    sep: str = ""  # -t
    dump: bool = False  # -u
    verbose: bool = False  # -v
    prog: str = "makemap"
    errors_: list = factory(list)


def available() -> list[str]:
    return ["hash", "btree", "dbm", "cdb", "implicit"]


def type_from_cf(cf_path: str, mapname: str) -> str:
    """-t cf/CF: the type of the K line whose file is mapname."""
    from mta import config

    try:
        cfg = config.load(cf_path)
    except errors.MTAError:
        return ""
    for decl in cfg.maps.values():
        if decl.path in (mapname, os.path.abspath(mapname)) or os.path.basename(decl.path) == mapname:
            return decl.type
    return ""


def _show(key: bytes) -> str:
    return key.rstrip(b"\0").decode("latin-1")


def _err(req: Request, text: str) -> None:
    sys.stderr.write(f"{req.prog}: {req.path}: {text}\n")


def parse_lines(req: Request, data: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """(items in input order, exit code) from makemap input."""
    sep = req.sep.encode()[:1] if req.sep else b""
    comment = req.comment.encode()[:1] or b"#"
    items: list[tuple[bytes, bytes]] = []
    seen: dict[bytes, int] = {}
    status = errors.EX_OK
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, line in enumerate(lines, 1):
        if len(line) >= LINE_MAX:
            _err(req, f"line {n}: line too long ({LINE_MAX} bytes max)")
            status = errors.EX_DATAERR
            continue
        if not line or line[:1] == comment:
            continue
        if not sep and line[:1].isspace():
            _err(req, f"line {n}: syntax error (leading space)")
            status = errors.EX_DATAERR
            continue
        if sep:
            key, _, rest = line.partition(sep)
            value = rest.lstrip(sep)
        else:
            parts = line.split(None, 1)
            key, value = parts[0], (parts[1].lstrip() if len(parts) > 1 else b"")
        if req.fold:
            key = key.lower()
        if not value and not req.empty:
            _err(req, f"line {n}: no RHS for LHS {key.decode('latin-1')}")
            status = errors.EX_DATAERR
            continue
        if req.nul:
            key, value = key + b"\0", value + b"\0"
        if req.verbose:
            sys.stdout.write(f"key=`{key.decode('latin-1')}', val=`{value.decode('latin-1')}'\n")
        if key in seen and not (req.dups and req.type == "btree"):
            if req.replace:
                items[seen[key]] = (key, value)
                continue
            _err(req, f"line {n}: key {_show(key)}: duplicate key")
            status = errors.EX_DATAERR
            continue
        seen.setdefault(key, len(items))
        items.append((key, value))
    return items, status


def run(req: Request, stdin: bytes | None = None) -> int:
    mtype = req.type
    if mtype.lower() == "cf":
        mtype = type_from_cf(req.cf, req.path) or req.fallback
        if not mtype:
            sys.stderr.write(f"{req.prog}: mapfile {req.path}: not found in {req.cf}\n")
            return errors.EX_DATAERR
    if mtype not in available():
        sys.stderr.write(f"{req.prog}: error opening type {mtype} map {req.path}: Unknown database type\n")
        return errors.EX_CANTCREAT
    req.type = maps.resolve_type(mtype, req.path)
    if req.dump:
        return _dump(req)
    data = stdin if stdin is not None else sys.stdin.buffer.read()
    items, status = parse_lines(req, data)
    if req.append:
        try:
            old = list(maps.open_reader(req.type, req.path).items())
        except (OSError, ValueError):
            old = []
        fresh = {k for k, _v in items}
        kept = []
        for k, v in old:
            if k in fresh and not req.replace and not (req.dups and req.type == "btree"):
                _err(req, f"key {_show(k)}: duplicate key")
                status = errors.EX_DATAERR
                items = [(ik, iv) for ik, iv in items if ik != k]
            if k not in fresh or not req.replace:
                kept.append((k, v))
        items = kept + items
    try:
        maps.write(req.type, req.path, items, dups=req.dups)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        sys.stderr.write(f"{req.prog}: error opening type {req.type} map {req.path}: {reason}\n")
        return errors.EX_CANTCREAT
    return status


def _dump(req: Request) -> int:
    try:
        reader = maps.open_reader(req.type, req.path)
        sep = (req.sep or "\t").encode()[:1]
        out = sys.stdout.buffer
        for k, v in reader.items():
            if req.nul:
                k, v = k.rstrip(b"\0"), v.rstrip(b"\0")
            out.write(k + sep + v + b"\n")
        out.flush()
    except FileNotFoundError:
        sys.stderr.write(f"{req.prog}: error opening type {req.type} map {req.path}: No such file or directory\n")
        return errors.EX_CANTCREAT
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{req.prog}: error opening type {req.type} map {req.path}: {exc}\n")
        return errors.EX_CANTCREAT
    return errors.EX_OK


def edit(req: Request, action: str, key: str, value: str) -> int:
    """editmap: -q prints key's value, -u sets it, -x deletes it; the map is rewritten whole
    beside itself and renamed into place, as makemap does."""
    mtype = maps.resolve_type(req.type, req.path)
    if mtype not in available():
        sys.stderr.write(f"{req.prog}: error opening type {req.type} map {req.path}: Unknown database type\n")
        return errors.EX_CANTCREAT
    k = (key.lower() if req.fold else key).encode("latin-1", "replace") + (b"\0" if req.nul else b"")
    try:
        items = list(maps.open_reader(mtype, req.path).items())
    except FileNotFoundError:
        if action != "u":
            sys.stderr.write(f"{req.prog}: error opening type {mtype} map {req.path}: No such file or directory\n")
            return errors.EX_CANTCREAT
        items = []
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{req.prog}: error opening type {mtype} map {req.path}: {exc}\n")
        return errors.EX_CANTCREAT
    found = [v for ik, v in items if ik == k]
    if action == "q":
        if not found:
            sys.stderr.write(f"{req.prog}: {key}: not found\n")
            return errors.EX_UNAVAILABLE
        sys.stdout.buffer.write(found[0].rstrip(b"\0") + b"\n")
        return errors.EX_OK
    if action == "x" and not found:
        sys.stderr.write(f"{req.prog}: {key}: not found\n")
        return errors.EX_UNAVAILABLE
    items = [(ik, v) for ik, v in items if ik != k]
    if action == "u":
        items.append((k, value.encode("latin-1", "replace") + (b"\0" if req.nul else b"")))
    try:
        maps.write(mtype, req.path, items)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        sys.stderr.write(f"{req.prog}: error opening type {mtype} map {req.path}: {reason}\n")
        return errors.EX_CANTCREAT
    return errors.EX_OK
