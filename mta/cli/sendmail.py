"""The sendmail, mailq and newaliases fronts: argv -> Request -> one core call -> exit code.

sendmail's flags are getopt-style (attached values, optional ones for -q and -Q, -oXvalue), so
they are parsed here from a small table rather than with click.  Only the standard library is
imported until the mode is known, to keep ``echo ... | sendmail -t`` fast.
"""

from __future__ import annotations

import os
import sys

from mta.record import factory, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

EX_USAGE = 64
EX_SOFTWARE = 70

# letters that take an argument (attached or next word), that take an optional attached one,
# and that take none: sendmail 8.18 main.c OPTIONS.
WITH_ARG = set("ABCDFLMNORVXbdefhoprL")
OPTIONAL_ARG = set("qQ")
NO_ARG = set("GIimnstvcTU8")


@record
class Request:
    prog: str = "sendmail"
    mode: str = "m"  # the -b letter
    cf: str | None = None
    submit_cf: bool | None = None  # -Ac (True) / -Am (False)
    overrides: list[tuple[str, str]] = factory(list)
    recipients: list[str] = factory(list)
    sender: str | None = None
    full_name: str | None = None
    read_headers: bool = False
    verbose: bool = False
    notify: str = ""
    ret: str = ""
    envid: str = ""
    bodytype: str = ""
    log_ident: str | None = None
    queue_run: bool = False
    queue_interval: str = ""
    queue_select: list[tuple[str, str, bool]] = factory(list)  # (kind, text, negate)
    queue_quarantined: bool = False  # -qQ: work on quarantined (hf) entries
    queue_group: str = ""  # -qGname
    queue_lost: bool = False  # -qL: work on lost (Qf) entries
    queue_persistent: bool = False  # -qp
    quarantining: str | None = None  # -Qreason; "" (a bare -Q) releases
    json: bool = False
    delete: bool = False  # mailq --delete (ext)
    debug: list[str] = factory(list)
    traffic_log: str = ""  # -X


class UsageError(Exception):
    pass


def _queue_flag(req: Request, value: str) -> None:
    """-q[!]I/R/S/Qsubstr, -qGgroup, -qf, -qp[time], -qtime (minutes when no unit): main.c."""
    req.queue_run = True
    negate = value.startswith("!")
    body = value[1:] if negate else value
    letter, rest = body[:1], body[1:]
    if letter == "G":
        if negate:
            raise UsageError("Can not use -q!G")
        if req.queue_group:
            raise UsageError("Can not use multiple -qG options")
        req.queue_group = rest
    elif letter == "Q":
        req.queue_quarantined = True
        if rest:
            req.queue_select.append(("Q", rest, negate))
    elif letter in ("I", "R", "S"):
        req.queue_select.append((letter, rest, negate))
    elif letter == "L":  # lost items: the Qf files a run set aside
        req.queue_lost = True
    elif letter == "f":
        req.queue_interval = ""
    elif letter == "p":
        req.queue_persistent = True
        req.queue_interval = _minutes(rest) if rest else "1s"
    elif body:
        req.queue_interval = _minutes(body)


def _minutes(text: str) -> str:
    """-q30 is thirty minutes (convtime with 'm' as the default unit)."""
    return text + "m" if text.isdigit() else text


def _apply(req: Request, letter: str, value: str | None) -> None:
    if letter == "b":
        req.mode = value[:1] if value else "m"
    elif letter == "C":
        req.cf = value
    elif letter == "A":
        if value not in ("c", "m"):
            raise UsageError(f"Invalid submission mode {value}")
        req.submit_cf = value == "c"
    elif letter == "O":
        name, _, val = value.partition("=")
        req.overrides.append((name, val))
    elif letter == "o":
        req.overrides.append((value[:1], value[1:]))
    elif letter in "fr":
        req.sender = value
    elif letter == "F":
        req.full_name = value
    elif letter == "t":
        req.read_headers = True
    elif letter == "i":
        req.overrides.append(("IgnoreDots", "True"))
    elif letter == "m":
        req.overrides.append(("MeToo", "True"))
    elif letter == "v":
        req.verbose = True
    elif letter == "N":
        req.notify = value
    elif letter == "R":
        req.ret = value
    elif letter == "V":
        req.envid = value
    elif letter == "B":
        req.bodytype = value.upper()
    elif letter == "L":
        req.log_ident = value
    elif letter == "q":
        _queue_flag(req, value or "")
    elif letter == "Q":
        if req.mode not in ("m",):
            raise UsageError(f"Can not use -Q with -b{req.mode}")
        req.queue_run = True
        req.quarantining = value or ""
    elif letter == "d":
        req.debug.append(value)
    elif letter == "I":
        req.mode = "i"
    elif letter == "X":
        req.traffic_log = value
    # G, n, s, T, U, c, h, p, D, M, e, 8: accepted as sendmail accepts them


def parse(argv: list[str], prog: str = "sendmail") -> Request:
    """getopt(3) over sendmail's option table; raises UsageError with sendmail's wording."""
    req = Request(prog=prog)
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if arg == "--json" and prog == "mailq":
            req.json = True
            continue
        if arg == "--delete" and prog == "mailq":
            req.delete = True
            continue
        if not arg.startswith("-") or arg == "-":
            args.insert(0, arg)
            break
        i = 1
        while i < len(arg):
            letter = arg[i]
            if letter in WITH_ARG:
                value = arg[i + 1:]
                if not value:
                    if not args:
                        raise UsageError(f"{prog}: option requires an argument -- {letter}")
                    value = args.pop(0)
                _apply(req, letter, value)
                break
            if letter in OPTIONAL_ARG:
                _apply(req, letter, arg[i + 1:])
                break
            if letter in NO_ARG:
                _apply(req, letter, None)
                i += 1
                continue
            if letter == "-":  # '--help' and friends: getopt stops at an unknown long form
                break
            raise UsageError(f"{prog}: illegal option -- {letter}")
    req.recipients = args
    return req


def run(req: Request) -> int:
    from mta import modes

    return modes.run(req)


def _main(argv: list[str], prog: str, preset: dict) -> int:
    try:
        req = parse(argv, prog)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EX_USAGE
    for key, value in preset.items():
        setattr(req, key, value)
    try:
        return run(req)
    except KeyboardInterrupt:
        return 75
    except BrokenPipeError:
        return 74
    except Exception as exc:  # the edge: no traceback reaches the user
        from mta import errors

        if isinstance(exc, errors.MTAError):
            print(exc.text, flush=True)
            return exc.exitcode
        print(f"{prog}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_SOFTWARE


# what each name Debian installs does (sendmail-mta, sendmail-msp, smtpd: plain sendmail)
PRESETS = {"mailq": {"mode": "p"}, "newaliases": {"mode": "i"}, "hoststat": {"mode": "h"},
           "purgestat": {"mode": "H"}, "runq": {"queue_run": True}}


def _exit(code: int) -> NoReturn:
    """Exit with code, without the interpreter's teardown (freeing every module and object one
    by one is a tenth of a short command's time).  What must happen at exit still does: the
    atexit functions (a queue run's cached SMTP sessions get their QUIT), then stdout and stderr
    are flushed.  A process with threads still running exits the usual way, waiting for them."""
    import atexit

    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with the descriptor closed
                stream.flush()
        except OSError:  # a reader gone (mailq | head): as a broken pipe during the run
            code = code or 74
    os._exit(code)


def main() -> None:
    """The one program behind every name: what it does comes from argv[0], as Sendmail's."""
    prog = os.path.basename(sys.argv[0])
    _exit(_main(sys.argv[1:], prog if prog in PRESETS else "sendmail", PRESETS.get(prog, {})))


def mailq_main() -> None:
    _exit(_main(sys.argv[1:], "mailq", {"mode": "p", "prog": "mailq"}))


def newaliases_main() -> None:
    _exit(_main(sys.argv[1:], "newaliases", {"mode": "i", "prog": "newaliases"}))


def hoststat_main() -> None:
    _exit(_main(sys.argv[1:], "hoststat", {"mode": "h", "prog": "hoststat"}))


def runq_main() -> None:
    _exit(_main(sys.argv[1:], "runq", {"queue_run": True}))


def purgestat_main() -> None:
    _exit(_main(sys.argv[1:], "purgestat", {"mode": "H", "prog": "purgestat"}))
