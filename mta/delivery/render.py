"""What a mailer is given: the envelope sender ($g), the headers for its F= flags, the DSN
parameters for the next hop.

Pure: takes a queue entry, the config and a mailer's flags, returns text; reads no files.
"""

from __future__ import annotations

from mta import address, message, queue
from mta.mailers import table
from mta.message import Header, Message
from mta.qf import Entry, Recipient

_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-")
_QUALIFIED_HEADERS = ("from", "sender", "reply-to", "to", "cc")


def is_smtp(cfg, mailer: str) -> bool:
    """Is this an SMTP mailer (P=[IPC] A=TCP: smtp, esmtp, relay, or one the cf defines)?"""
    return table.agent(cfg, mailer).kind == table.SMTP


def mailer_sender(cfg, mailer: str, sender: str) -> str:
    """$g as a mailer sees it: MAILER-DAEMON for <> locally, qualified for SMTP mailers."""
    bare = address.unbracket(sender)
    if is_smtp(cfg, mailer):
        return bare if not bare or "@" in bare else f"{bare}@{cfg.hostname}"
    return bare or "MAILER-DAEMON"


def render(entry: Entry, body: str, *, flags: str, sender: str) -> str:
    """Headers for a mailer with these flags, $g expanded, a blank line, the body."""
    msg = Message(entry.headers, body)
    head = msg.header_text(flags).replace(f"{queue.MACRO_BYTE}g", sender)
    return head + "\n" + body


def qualify_headers(headers: list[Header], host: str) -> list[Header]:
    """For SMTP mailers: bare local names in From/Sender/Reply-To/To/Cc get @$j (HdrFromSMTP)."""
    return [Header(h.name, qualify(h.value, host), h.cond) if h.name.lower() in _QUALIFIED_HEADERS else h
            for h in headers]


def qualify(value: str, host: str) -> str:
    """@host after each bare name (letters, digits, ``._+-``) that starts the value, follows
    a comma (and white space) or a ``<``, and is followed (after white space) by ``>``, a
    comma or the end."""
    out, done, pos, end = [], 0, 0, len(value)
    while pos < end:
        starts = [0] if pos == 0 else []
        if value[pos] == "<":
            starts.append(pos + 1)
        elif value[pos] == ",":
            start = pos + 1
            while start < end and value[start].isspace():
                start += 1
            starts.append(start)
        for start in starts:
            stop = start
            while stop < end and value[stop] in _NAME:
                stop += 1
            after = stop
            while after < end and value[after].isspace():
                after += 1
            if stop > start and (after == end or value[after] in ">,"):
                out += (value[done:stop], "@", host)
                done = pos = stop
                break
        else:
            pos += 1
    return "".join(out) + value[done:]


def _xtext_ok(value: str) -> bool:
    return all(33 <= ord(c) <= 126 and c != "=" for c in value)


def dsn_parameters(entry: Entry, rcpts: list[Recipient]) -> tuple[list[str], list[list[str]]]:
    """What the next hop needs to keep the DSN promises (RFC 3461): RET, ENVID, NOTIFY, ORCPT."""
    mail = (["RET=HDRS"] if "n" in entry.flags else []) + (
        [f"ENVID={entry.envid}"] if entry.envid and _xtext_ok(entry.envid) else [])
    per = []
    for r in rcpts:
        params = []
        if "N" in r.flags:
            words = [w for f, w in (("S", "SUCCESS"), ("F", "FAILURE"), ("D", "DELAY")) if f in r.flags]
            params.append("NOTIFY=" + (",".join(words) or "NEVER"))
        if r.orcpt and _xtext_ok(r.orcpt):
            params.append(f"ORCPT={r.orcpt}")
        per.append(params)
    return mail, per


# -- what a program mailer (P=/path) is given ---------------------------------------------------

def _eol(mailer) -> str:
    """E= (end of line) with its escapes decoded; a newline when unset."""
    raw = mailer.fields.get("E", "")
    return raw.replace("\\r", "\r").replace("\\n", "\n") or "\n"


def from_line(cfg, mailer, sender: str, when: float) -> str:
    """The Unix From_ line (UnixFromLine, 'From $g $d'); none with F=n; F=U adds 'remote from'."""
    if "n" in mailer.flags:
        return ""
    line = cfg.expand(cfg["UnixFromLine"], {"g": sender, "d": message.ctime(when)})
    if "U" in mailer.flags:
        line += f" remote from {cfg.macros.get('k') or cfg.hostname.split('.')[0]}"
    return line + "\n"


def program_input(cfg, text: str, *, mailer, sender: str, when: float) -> bytes:
    """The bytes on a program mailer's stdin, from the rendered text (headers, blank line, body):
    From_ line (unless F=n), the body with '>From ' (F=E), doubled leading dots (F=X), 7 bits
    (F=7), lines ended by E=."""
    flags = mailer.flags
    head, sep, body = text.partition("\n\n")
    if "E" in flags:
        from mta.mailers import local

        body = local.escape_from(body)
    if "X" in flags:
        body = "\n".join("." + ln if ln.startswith(".") else ln for ln in body.split("\n"))
    text = from_line(cfg, mailer, sender, when) + head + sep + body
    eol = _eol(mailer)
    if eol != "\n":
        text = text.replace("\n", eol)
    data = message.to_bytes(text)
    return bytes(b & 0x7F for b in data) if "7" in flags else data


def recipient_user(mailer, user: str) -> str:
    """$u as the mailer gets it: quotes stripped with F=s, lower case unless F=u."""
    if "s" in mailer.flags:
        user = user.replace('"', "")
    return user if "u" in mailer.flags else user.lower()


def program_argv(cfg, mailer, *, users: list[str], macros: dict[str, str]) -> list[str]:
    """A= as an argv list, each word expanded on its own (no shell ever splits it again); a word
    with $u is repeated for each recipient (several only with F=m)."""
    argv = []
    for word in mailer.argv.split():
        if "$u" in word:
            argv += [cfg.expand(word, {**macros, "u": recipient_user(mailer, u)}) for u in users]
        else:
            argv.append(cfg.expand(word, macros))
    if ("f" in mailer.flags or "r" in mailer.flags) and argv:
        argv[1:1] = ["-f" if "f" in mailer.flags else "-r", macros.get("g", "")]
    return argv
