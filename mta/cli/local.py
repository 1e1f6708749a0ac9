"""mail.local and smrsh, the two helper programs sendmail-bin installs in /usr/libexec/sendmail.

``mail.local [-l] [-f sender] -d user...`` appends standard input to each user's mailbox with
the core's local agent (mta.mailers.local): exit 0, 75 when a mailbox cannot be written now, 67
for an unknown user.  ``smrsh -c command`` runs the command only when each of its programs is
in /etc/mail/smrsh (by base name), refusing shell metacharacters, as Sendmail's smrsh.
"""

from __future__ import annotations

import os
import re
import sys
import time

EX_USAGE, EX_NOUSER, EX_UNAVAILABLE, EX_OSERR, EX_TEMPFAIL = 64, 67, 69, 71, 75
SMRSH_DIR = "/etc/mail/smrsh"
SMRSH_SPECIALS = "<>;$(){}`^\r\n"  # '|', '&&' and '||' join commands; each is checked
MAX_COMMAND = 4096


def _mail_local_args(argv: list[str]) -> tuple[str, list[str]]:
    sender, users, args = "", [], list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        flag = args.pop(0)
        if flag in ("-f", "-r"):
            if not args:
                raise ValueError("option requires an argument")
            sender = args.pop(0)
        elif flag[:2] in ("-f", "-r"):
            sender = flag[2:]
        elif flag == "--":
            break
        elif flag[1:] and set(flag[1:]) <= set("7bdlH"):
            continue
        else:
            raise ValueError(f"illegal option -- {flag[1:2]}")
    users = args
    return sender, users


def mail_local_main() -> None:
    import pwd

    from mta.mailers import local

    try:
        sender, users = _mail_local_args(sys.argv[1:])
    except ValueError as exc:
        sys.stderr.write(f"mail.local: {exc}\nusage: mail.local [-7] [-b] [-d] [-l] [-f from] user ...\n")
        sys.exit(EX_USAGE)
    if not users:
        sys.stderr.write("usage: mail.local [-7] [-b] [-d] [-l] [-f from] user ...\n")
        sys.exit(EX_USAGE)
    data = sys.stdin.buffer.read()
    if data.startswith(b"From "):  # an envelope line from the caller: ours replaces it
        data = data.partition(b"\n")[2]
    text = data.decode("latin-1").replace("\r\n", "\n")
    status = 0
    for user in users:
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            sys.stderr.write(f"mail.local: unknown user: {user}\n")
            status = status or EX_NOUSER
            continue
        outcome = local.deliver(spool="/var/mail", fmt="mbox", owner=owner, sender=sender or "MAILER-DAEMON",
                                text=text, when=time.time())
        if outcome.kind != "sent":
            sys.stderr.write(f"mail.local: {user}: {outcome.text}\n")
            status = EX_TEMPFAIL if outcome.kind == "deferred" else (status or EX_UNAVAILABLE)
    sys.exit(status)


def smrsh_command(command: str, directory: str = SMRSH_DIR) -> str:
    """The command with each program replaced by its path in ``directory``; ValueError says
    why it is refused, in smrsh's words."""
    if len(command) > MAX_COMMAND:
        raise ValueError(f"command too long: {command[:40]}")
    for ch in command:
        if ch in SMRSH_SPECIALS:
            raise ValueError(f"cannot use {ch} in command")
    if re.search(r"(?<!&)&(?!&)", command):
        raise ValueError("cannot use & in command")
    parts = re.split(r"(\|\||&&|\|)", command)
    out = []
    for part in parts:
        if part in ("||", "&&", "|"):
            out.append(part)
            continue
        words = part.split()
        lead = ""
        if words and words[0] == "exec":
            lead, words = "exec ", words[1:]
        if not words:
            raise ValueError("missing command")
        name = os.path.basename(words[0])
        path = os.path.join(directory, name)
        if not name or not os.access(path, os.X_OK):
            raise ValueError(f"{name} not available for sendmail programs (stat failed)")
        out.append(" ".join([lead + path, *words[1:]]))
    return " ".join(out)


def smrsh_main() -> None:
    prog = os.path.basename(sys.argv[0]) or "smrsh"
    if len(sys.argv) != 3 or sys.argv[1] != "-c":
        sys.stderr.write(f"Usage: {prog} -c command\n")
        sys.exit(EX_USAGE)
    try:
        command = smrsh_command(sys.argv[2])
    except ValueError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        sys.exit(EX_UNAVAILABLE)
    os.chdir(os.path.expanduser("~") if os.path.isdir(os.path.expanduser("~")) else "/")
    try:
        os.execve("/bin/sh", ["/bin/sh", "-c", command], {"PATH": "/bin:/usr/bin", "SHELL": "/bin/sh"})
    except OSError as exc:
        sys.stderr.write(f"/bin/sh: {exc.strerror}\n")
        sys.exit(EX_OSERR)
