"""Mail statistics in Sendmail's own StatusFile format (mailstats.h, version 4), and mailstats.

As Sendmail, we count only when the StatusFile exists (an administrator creates it with
``touch``).  The file is Sendmail's ``struct statistics`` for this machine's ABI (magic
0x1B1DE, version 4, MAXMAILERS 25), so Debian's mailstats reads ours and ours reads its.
Mailer numbers are Sendmail's: prog 0, *file* 1, *include* 2, then the cf's M lines in order.
Updates hold an fcntl lock on the file, so concurrent deliveries never lose a count.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time

MAGIC, VERSION, MAXMAILERS = 0x1B1DE, 4, 25
# int magic, int version, time_t itime, short size (+pad), long cf, ct, cr, then 7 arrays of longs
_HEAD = struct.Struct("=iiqh6xqqq")
_LAYOUT = struct.Struct("=iiqh6xqqq" + "q" * (7 * MAXMAILERS))
FIELDS = ("nf", "bf", "nt", "bt", "nr", "nd", "nq")


def mailer_numbers(cfg) -> dict[str, int]:
    numbers = {"prog": 0, "*file*": 1, "*include*": 2}
    names = list(cfg.mailers) or ["local", "prog", "smtp", "esmtp", "relay"]
    for name in names:
        numbers.setdefault(name, len(numbers))
    return numbers


def kbytes(size: int) -> int:
    return (size + 1023) // 1024


def _empty() -> dict:
    return {"itime": int(time.time()), "cf": 0, "ct": 0, "cr": 0,
            **{f: [0] * MAXMAILERS for f in FIELDS}}


def decode(data: bytes) -> dict | None:
    if len(data) != _LAYOUT.size:
        return None
    values = _LAYOUT.unpack(data)
    magic, version, itime, size, cf, ct, cr = values[:7]
    if magic != MAGIC or version != VERSION or size != _LAYOUT.size:
        return None
    arrays = values[7:]
    out = {"itime": itime, "cf": cf, "ct": ct, "cr": cr}
    for i, f in enumerate(FIELDS):
        out[f] = list(arrays[i * MAXMAILERS:(i + 1) * MAXMAILERS])
    return out


def encode(st: dict) -> bytes:
    arrays = [v for f in FIELDS for v in st[f]]
    return _LAYOUT.pack(MAGIC, VERSION, st["itime"], _LAYOUT.size, st["cf"], st["ct"], st["cr"], *arrays)


def record(path: str, **counts) -> None:
    """Add counts, e.g. record(p, nf={3: 1}, bf={3: 2}, cf=1).  Silent when there is no file."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        st = decode(os.pread(fd, _LAYOUT.size + 1, 0)) or _empty()
        for key, value in counts.items():
            if isinstance(value, dict):
                for index, n in value.items():
                    if 0 <= index < MAXMAILERS:
                        st[key][index] += n
            else:
                st[key] += value
        data = encode(st)
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError:
        pass
    finally:
        os.close(fd)


def report(path: str, names: dict[int, str], *, program: bool = False, show_names: bool = True,
           clear: bool = False) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of mailstats for the file at path."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return "", f"mailstats: {path}: {exc.strerror}\n", 66
    st = decode(data) if data else _empty()
    if st is None:
        return "", f"mailstats: file {path} is not a statistics file\n", 71
    out = []
    if program:
        out.append(f"{st['itime']} {int(time.time())}\n")
    else:
        out.append(f"Statistics from {time.ctime(st['itime'])}\n")
        out.append(" M   msgsfr  bytes_from   msgsto    bytes_to  msgsrej msgsdis msgsqur"
                   + ("  Mailer" if show_names else "") + "\n")
    totals = [0] * 7
    unit = "" if program else "K"
    for i in range(MAXMAILERS):
        row = [st[f][i] for f in FIELDS]
        if not (row[0] or row[2] or row[6] or row[4] or row[5]):
            continue
        totals = [t + v for t, v in zip(totals, row, strict=True)]
        line = f"{i:2d} {row[0]:8d} {row[1]:10d}{unit} {row[2]:8d} {row[3]:10d}{unit}   {row[4]:6d}  {row[5]:6d}"
        line += f"  {row[6]:6d}" + (f"  {names.get(i, '')}" if show_names else "")
        out.append(line + "\n")
    if program:
        out.append(f" T {totals[0]:8d} {totals[1]:10d} {totals[2]:8d} {totals[3]:10d}   {totals[4]:6d}  "
                   f"{totals[5]:6d}  {totals[6]:6d}\n C {st['cf']:8d} {st['ct']:8d} {st['cr']:6d}\n")
    else:
        out.append("=" * 69 + "\n")
        out.append(f" T {totals[0]:8d} {totals[1]:10d}K {totals[2]:8d} {totals[3]:10d}K   {totals[4]:6d}  "
                   f"{totals[5]:6d}  {totals[6]:6d}\n")
        out.append(f" C {st['cf']:8d} {'':10s}  {st['ct']:8d} {'':10s}    {st['cr']:6d}\n")
    if clear:
        with open(path, "wb"):
            pass
    return "".join(out), "", 0


def mailstats(configs: list[tuple[str, str]], *, stats_file: str = "", program: bool = False,
              show_names: bool = True, clear: bool = False) -> int:
    """mailstats over [(title, cf path)]: each config's StatusFile, under its title if any."""
    import sys

    from mta import config, errors

    code = errors.EX_OK
    for title, cf in configs:
        if title:
            print(title, flush=True)
        try:
            cfg = config.load(cf)
        except errors.MTAError as exc:
            sys.stderr.write(f"mailstats: {exc.text}\n")
            code = code or exc.exitcode
            continue
        path = stats_file or cfg["StatusFile"]
        if not path:
            sys.stderr.write(f"mailstats: {cf}: no StatusFile option\n")
            code = code or errors.EX_CONFIG
            continue
        names = {n: name for name, n in mailer_numbers(cfg).items()}
        out, err, rc = report(path, names, program=program, show_names=show_names, clear=clear)
        sys.stdout.write(out)
        sys.stderr.write(err)
        sys.stdout.flush()
        code = code or rc
    return code if len(configs) == 1 else errors.EX_OK
