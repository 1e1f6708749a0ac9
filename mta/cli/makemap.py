"""The makemap, praliases and mailstats fronts: argv -> request -> one core call -> exit code."""

from __future__ import annotations

import os
import sys

EX_USAGE = 64

USAGE = """Usage: {p} [-C cffile] [-N] [-c cachesize] [-D commentchar]
       {s} [-d] [-e] [-f] [-i type] [-l] [-o] [-r] [-s] [-t delimiter]
       {s} [-u] [-v] type mapname
"""


def _getopt(argv: list[str], with_arg: str, flags: str, prog: str):
    """getopt(3): yields (letter, value) then returns the operands; raises ValueError(message)."""
    opts, args = [], list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        arg = args.pop(0)
        if arg == "--":
            break
        i = 1
        while i < len(arg):
            c = arg[i]
            if c in with_arg:
                value = arg[i + 1:] or (args.pop(0) if args else None)
                if value is None:
                    raise ValueError(f"{prog}: option requires an argument -- '{c}'")
                opts.append((c, value))
                break
            if c not in flags:
                raise ValueError(f"{prog}: invalid option -- '{c}'")
            opts.append((c, ""))
            i += 1
    return opts, args


def makemap_main() -> None:
    from mta import makemap

    prog = os.path.basename(sys.argv[0]) or "makemap"
    usage = USAGE.format(p=prog, s=" " * len(prog))
    try:
        opts, args = _getopt(sys.argv[1:], "CDcit", "NdefLlorsuvx", prog)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n{usage}")
        sys.exit(EX_USAGE)
    req = makemap.Request(prog=prog)
    for c, v in opts:
        if c == "l":
            print("\n".join(makemap.available()))
            sys.exit(0)
        if c == "L":
            print("\n".join(makemap.available() + ["cf", "CF"]))
            sys.exit(0)
        if c == "x":
            print("hash:db\nbtree:db\ndbm:dir\ncdb:cdb\nimplicit:")
            sys.exit(0)
        if c == "t" and not v:
            sys.stderr.write("Invalid separator\n")
            continue
        setattr_map = {"C": ("cf", v), "N": ("nul", True), "d": ("dups", True), "D": ("comment", v[:1]),
                       "e": ("empty", True), "f": ("fold", False), "i": ("fallback", v), "o": ("append", True),
                       "r": ("replace", True), "t": ("sep", v[:1]), "u": ("dump", True), "v": ("verbose", True)}
        if c in setattr_map:
            setattr(req, *setattr_map[c])
    if len(args) != 2:
        sys.stderr.write(usage)
        sys.exit(EX_USAGE)
    req.type, req.path = args
    try:
        sys.exit(makemap.run(req))
    except KeyboardInterrupt:
        sys.exit(75)
    except Exception as exc:  # the edge: no traceback reaches the user
        sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {exc}\n")
        sys.exit(70)


def praliases_main() -> None:
    """praliases [-C file] [-f file] [key ...]: the alias database as key:value lines."""
    from mta import aliases, config, errors

    prog = "praliases"
    try:
        opts, keys = _getopt(sys.argv[1:], "Cf", "", prog)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\nusage: praliases [-C cffile] [-f aliasfile] [key ...]\n")
        sys.exit(EX_USAGE)
    cf, alias_file = config.DEFAULT_CF, ""
    for c, v in opts:
        if c == "C":
            cf = v
        elif c == "f":
            alias_file = v
    try:
        if not alias_file:
            alias_file = config.load(cf)["AliasFile"]
        table = aliases.Aliases(alias_file)
        if not keys:
            for k, v in table.items():
                print(f"{k}:{v}")
            sys.exit(0)
        status = 0
        for key in keys:
            value = table.lookup(key.lower())
            if value is None:
                sys.stderr.write(f"{key}: No such key\n")
                status = errors.EX_NOUSER
            else:
                print(f"{key.lower()}:{value}")
        sys.exit(status)
    except errors.MTAError as exc:
        sys.stderr.write(f"{prog}: {exc.text}\n")
        sys.exit(exc.exitcode)


def mailstats_main() -> None:
    """mailstats [-C cffile] [-c] [-P] [-f stfile] [-o] [-p]"""
    from mta import config, stats

    try:
        opts, args = _getopt(sys.argv[1:], "Cf", "cPop", "mailstats")
    except ValueError as exc:
        args = [str(exc)]
    if args:
        sys.stderr.write("usage: mailstats [-C cffile] [-c] [-P] [-f stfile] [-o] [-p]\n")
        sys.exit(EX_USAGE)
    o = dict(opts)
    if "C" in o:
        configs = [("", o["C"])]
    elif "c" in o:
        configs = [("", config.DEFAULT_SUBMIT_CF)]
    else:  # as Debian's wrapper: both
        configs = [("MSP statistics...", config.DEFAULT_SUBMIT_CF), ("MTA statistics...", config.DEFAULT_CF)]
    sys.exit(stats.mailstats(configs, stats_file=o.get("f", ""), program="P" in o or "p" in o,
                             show_names="o" not in o, clear="p" in o))


EDITMAP_USAGE = "Usage: {p} [-C cffile] [-N] [-f] [-q|-u|-x] type mapname key [ \"value ...\" ]\n"


def editmap_main() -> None:
    from mta import makemap

    prog = os.path.basename(sys.argv[0]) or "editmap"
    try:
        opts, args = _getopt(sys.argv[1:], "C", "Nfqux", prog)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n{EDITMAP_USAGE.format(p=prog)}")
        sys.exit(EX_USAGE)
    req = makemap.Request(prog=prog)
    actions = [c for c, _v in opts if c in "qux"]
    for c, v in opts:
        if c == "C":
            req.cf = v
        elif c == "N":
            req.nul = True
        elif c == "f":
            req.fold = False
    wanted = 4 if actions[-1:] == ["u"] else 3
    if len(set(actions)) != 1 or len(args) < 3 or (wanted == 3 and len(args) != 3):
        sys.stderr.write(EDITMAP_USAGE.format(p=prog))
        sys.exit(EX_USAGE)
    req.type, req.path, key = args[:3]
    sys.exit(makemap.edit(req, actions[0], key, " ".join(args[3:])))
