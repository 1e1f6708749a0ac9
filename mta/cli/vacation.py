"""vacation (vacation.sendmail): answer mail once per interval per sender, as Sendmail's vacation(1).

``vacation [-a alias] [-f db] [-j] [-m msgfile] [-r days] [-s sender] [-z] login`` reads a message
on standard input and, unless it comes from a list or a daemon or is not addressed to login (or
an -a alias, unless -j), sends ~/.vacation.msg back through sendmail and notes the time in
~/.vacation.db (a Berkeley hash, as Sendmail's).  ``-i`` starts an empty database, ``-l`` lists it,
``-x`` reads addresses and @domains never to answer on standard input.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
import time

EX_USAGE, EX_NOUSER, EX_OSERR = 64, 67, 71
WEEK_DAYS = 7
NEVER = b"exclude"
LIST_SENDERS = re.compile(r"^(mailer-daemon|postmaster|uucp|majordomo|listserv|owner-.*|.*-request|.*-relay|"
                          r".*-owner)$", re.I)
SENDMAIL = "/usr/sbin/sendmail"


def _args(argv: list[str]) -> tuple[dict, list[str]]:
    opts, args = {"a": [], "r": str(WEEK_DAYS)}, list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        arg = args.pop(0)
        if arg == "--":
            break
        letter, value = arg[1:2], arg[2:]
        if letter in "afmrsC":
            value = value or (args.pop(0) if args else "")
            if not value:
                raise ValueError(f"option requires an argument -- {letter}")
            if letter == "a":
                opts["a"].append(value)
            else:
                opts[letter] = value
        elif letter in "iIjlxzdU":
            opts[letter] = True
        else:
            raise ValueError(f"illegal option -- {letter}")
    return opts, args


def _headers(data: bytes) -> tuple[str, dict[str, str]]:
    text = data.decode("latin-1").replace("\r\n", "\n").partition("\n\n")[0]
    envelope = ""
    if text.startswith("From "):
        first, _, text = text.partition("\n")
        envelope = first.split()[1] if len(first.split()) > 1 else ""
    fields: dict[str, str] = {}
    for name, value in re.findall(r"^([!-9;-~]+):[ \t]*(.*(?:\n[ \t].*)*)", text, re.M):
        fields.setdefault(name.lower(), " ".join(value.split()))
    return envelope, fields


def _bare(addr: str) -> str:
    m = re.search(r"<([^>]*)>", addr)
    return (m.group(1) if m else addr.split()[0] if addr.split() else "").strip()


def should_answer(sender: str, fields: dict[str, str], names: list[str], junk_ok: bool) -> bool:
    """Sendmail's rules: never lists, bulk or junk, daemons, and (without -j) only mail sent to us."""
    if not sender or sender == "<>":
        return False
    if fields.get("precedence", "").lower() in ("bulk", "junk", "list") or "list-id" in fields:
        return False
    if fields.get("auto-submitted", "no").lower() != "no":
        return False
    if LIST_SENDERS.match(sender.split("@")[0]):
        return False
    if junk_ok:
        return True
    to = (fields.get("to", "") + " " + fields.get("cc", "")).lower()
    return any(re.search(rf"(^|[^\w.-]){re.escape(n.lower())}([^\w.-]|$)", to) for n in names)


def _db(path: str) -> dict[bytes, bytes]:
    from mta import maps

    try:
        return dict(maps.open_reader("hash", path).items())
    except (OSError, ValueError):
        return {}


def _save(path: str, entries: dict[bytes, bytes]) -> None:
    from mta import maps

    maps.write("hash", path, sorted(entries.items()), mode=0o600)


def _excluded(sender: str, db: dict[bytes, bytes]) -> bool:
    s = sender.lower()
    return db.get(s.encode()) == NEVER or db.get(("@" + s.partition("@")[2]).encode()) == NEVER


def main() -> None:
    try:
        opts, args = _args(sys.argv[1:])
    except ValueError as exc:
        sys.stderr.write(f"vacation: {exc}\nusage: vacation [-i] [-a alias] [-r days] [-x] login\n")
        sys.exit(EX_USAGE)
    try:
        user = pwd.getpwnam(args[0]) if args else pwd.getpwuid(os.getuid())
    except KeyError:
        sys.stderr.write(f"vacation: {args[0]}: no such user\n")
        sys.exit(EX_NOUSER)
    db_path = opts.get("f", os.path.join(user.pw_dir, ".vacation"))
    db_path = db_path[:-3] if db_path.endswith(".db") else db_path
    if opts.get("i") or opts.get("I"):
        _save(db_path, {})
        return
    db = _db(db_path)
    if opts.get("l"):
        for key, value in sorted(db.items()):
            when = "never" if value == NEVER else time.ctime(int(value or 0))
            print(f"{key.decode(errors='replace'):<36} {when}")
        return
    if opts.get("x"):
        db.update({line.strip().lower().encode(): NEVER for line in sys.stdin if line.strip()})
        _save(db_path, db)
        return
    envelope, fields = _headers(sys.stdin.buffer.read())
    sender = opts.get("s") or _bare(envelope or fields.get("return-path", "") or fields.get("from", ""))
    if not should_answer(sender, fields, [user.pw_name, *opts["a"]], bool(opts.get("j"))) or _excluded(sender, db):
        return
    interval = int(opts["r"]) * 86400 if opts["r"].isdigit() else 0
    last = db.get(sender.lower().encode())
    if last and interval and time.time() - int(last) < interval:
        return
    _reply(user, opts.get("m", os.path.join(user.pw_dir, ".vacation.msg")), sender, bool(opts.get("z")))
    db[sender.lower().encode()] = str(int(time.time())).encode()
    _save(db_path, db)


def _reply(user, msgfile: str, sender: str, null_sender: bool) -> None:
    try:
        with open(msgfile, "rb") as fh:
            body = fh.read()
    except OSError as exc:
        sys.stderr.write(f"vacation: {msgfile}: {exc.strerror}\n")
        sys.exit(EX_OSERR)
    head = f"To: {sender}\nAuto-Submitted: auto-replied\nPrecedence: junk\n".encode()
    if re.match(rb"(?i)(?:[^\n]*\n)*?to:", body.partition(b"\n\n")[0] + b"\n"):
        head = b"Auto-Submitted: auto-replied\nPrecedence: junk\n"
    subprocess.run([SENDMAIL, "-oi", "-f", "<>" if null_sender else user.pw_name, "--", sender],
                   input=head + body, check=False, timeout=300)


if __name__ == "__main__":
    main()
