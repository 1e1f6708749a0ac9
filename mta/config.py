"""Configuration: sendmail.cf / submit.cf parsing, options, macros, classes, maps and mailers.

Holds: ``load(path, overrides)`` -> ``Config``.  From a cf file we read O (options), D (macros),
C and F (classes), K (map declarations), M (mailers), P (precedences), Q (queue groups) and T
(trusted users).
Rule sets (S and R lines) are out of scope: they are counted and skipped, and reported once
(``Config.ignored_rules``).  Raises ``errors.ConfigError`` for an unreadable file and
``errors.SoftwareError`` for an unknown option given with -O, as sendmail does.
Every option has one default (mta.options ``OPTIONS``); values are converted once, when set.
"""

from __future__ import annotations

import os

from mta import VERSION, errors, options
from mta.record import factory, record

DEFAULT_CF = "/etc/mail/sendmail.cf"
DEFAULT_SUBMIT_CF = "/etc/mail/submit.cf"


PRECEDENCES = {"first-class": 0, "special-delivery": 100, "list": -30, "bulk": -60, "junk": -100}


@record
class MapDecl:
    """A K line: ``Kname type [flags] [path]``."""

    name: str
    type: str
    flags: list[str]
    path: str


@record
class Mailer:
    """An M line: ``Mname, P=path, F=flags, ..., A=argv``."""

    name: str
    path: str
    flags: str = ""
    argv: str = ""
    fields: dict[str, str] = factory(dict)


@record
class QueueGroup:
    """A Q line (op.me "Q -- Queue Group Declaration"); None where the line leaves a field to the
    options (Runners: MaxRunnersPerQueue, Jobs: MaxQueueRunSize, Nice: NiceQueueRun)."""

    name: str
    path: str
    flags: str = ""
    runners: int | None = None
    nice: int | None = None
    interval: int = 0
    jobs: int | None = None
    recipients: int = 0


def _parse_queue_group(body: str) -> QueueGroup:
    """``Qname, P=/path, F=f, R=2, N=5, I=10m, J=100, r=10``: only a field's first letter counts."""
    name, *fields = [f.strip() for f in body.split(",")]
    group = QueueGroup(name, "")
    for field in fields:
        key, _, value = field.partition("=")
        key, value = key.strip()[:1], value.strip()
        if key == "P":
            group.path = value
        elif key == "F":
            group.flags = value
        elif key == "R":
            group.runners = int(value or 0)
        elif key == "N":
            group.nice = int(value or 0)
        elif key == "I":
            group.interval = options.interval(value)
        elif key == "J":
            group.jobs = int(value or 0)
        elif key == "r":
            group.recipients = int(value or 0)
    if not group.path:
        raise errors.ConfigError(f"readcf: queue group {name}: no path specified")
    return group


@record
class Config:
    path: str
    options: dict[str, object] = factory(dict)
    macros: dict[str, str] = factory(dict)
    classes: dict[str, set[str]] = factory(dict)
    maps: dict[str, MapDecl] = factory(dict)
    mailers: dict[str, Mailer] = factory(dict)
    precedences: dict[str, int] = factory(lambda: dict(PRECEDENCES))
    queue_groups: dict[str, QueueGroup] = factory(dict)
    daemon_ports: list[str] = factory(list)
    ignored_rules: int = 0
    notices: list[str] = factory(list)
    features: set[str] = factory(set)  # FEATUREs the cf was built with (its "$Id: name.m4" lines)
    relay_msg: str = ""  # check_rcpt's "550 Relaying denied..." text, when the cf has that rule

    def __getitem__(self, name: str):
        """The typed value of option ``name`` (its default when unset)."""
        if name in self.options:
            return self.options[name]
        return options.OPTIONS[name][0] if name in options.OPTIONS else None

    def set_option(self, name: str, value: str, *, strict: bool = False) -> None:
        name = name.strip()
        if len(name) == 1 and name in options.SHORT_OPTIONS:
            name = options.SHORT_OPTIONS[name]
        if strict and name not in options.KNOWN_OPTIONS:
            raise errors.SoftwareError(f"readcf: unknown option name {name}")
        value = value.strip()
        if name == "DaemonPortOptions":
            self.daemon_ports.append(value)
            return
        if name in ("Timeout.queuewarn", "Timeout.queuereturn"):  # sets every precedence class
            for tag in ("normal", "urgent", "non-urgent", "dsn"):
                self.options.pop(f"{name}.{tag}", None)
        if name in options.OPTIONS:
            try:
                self.options[name] = options.OPTIONS[name][1](value)
            except ValueError as exc:
                raise errors.ConfigError(f"readcf: option {name}: bad value {value!r}") from exc
        else:
            self.options[name] = value

    def queue_timeout(self, which: str, precedence: int | str | None, dsn: bool = False) -> int:
        """Timeout.queuewarn or .queuereturn for a message of this precedence (a class, or a
        Precedence: header value): .urgent above 0, .non-urgent below, .normal (or .dsn for a
        DSN of normal precedence) at 0."""
        if not isinstance(precedence, int):
            precedence = self.precedence(precedence)
        tag = "urgent" if precedence > 0 else "non-urgent" if precedence < 0 else "dsn" if dsn else "normal"
        value = self[f"Timeout.{which}.{tag}"]
        if value is None and tag == "dsn":
            value = self[f"Timeout.{which}.normal"]
        return self[f"Timeout.{which}"] if value is None else value

    def precedence(self, header_value: str | None) -> int:
        """The class of a Precedence: header value (P lines; unknown or absent: 0)."""
        return self.precedences.get((header_value or "").strip().lower(), 0)

    def klass(self, name: str) -> set[str]:
        return self.classes.setdefault(name, set())

    @property
    def hostname(self) -> str:
        return self.macros["j"]

    @property
    def is_msp(self) -> bool:
        """A submit.cf: everything goes to the MTA named by ${MTAHost} (FEATURE(msp))."""
        return "MTAHost" in self.macros

    def has_feature(self, name: str) -> bool:
        """Was the cf generated with FEATURE(name)?  m4 leaves each feature's VERSIONID in it."""
        return name in self.features

    def is_local_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.klass("w") or (host.startswith("[") and host in local_literals())

    def expand(self, text: str, extra: dict[str, str] | None = None) -> str:
        return expand(text, {**self.macros, **(extra or {})})


def expand(text: str, macros: dict[str, str]) -> str:
    """Expand $x, ${name} and the $?x ... $| ... $. conditional, as sendmail's expand()."""
    out: list[str] = []
    active: list[bool] = []  # one entry per open conditional: is its current branch taken?
    pos = 0
    for start, pos_after, cond, token in _macros(text):
        if all(active):
            out.append(text[pos:start])
        pos = pos_after
        name = token[1:-1] if token.startswith("{") else token
        if cond:
            active.append(bool(macros.get(name)))
        elif token == "|" and active:
            active[-1] = not active[-1]
        elif token == "." and active:
            active.pop()
        elif token == "&":
            continue
        elif all(active):
            out.append(macros.get(name, ""))
    if all(active):
        out.append(text[pos:])
    return "".join(out)


def _macros(text: str):
    """(start, end, '?' or '', token) of each $x, ${name}, $?x in text: what
    re.finditer(r"\\$(\\?)?(\\{[^}]*\\}|.)", text) finds, without re."""
    at = text.find("$")
    while at >= 0:
        if text[at + 1:at + 2] == "?":
            found = _macro_token(text, at + 2)
            if found is not None:
                yield at, found, "?", text[at + 2:found]
                at = text.find("$", found)
                continue
        found = _macro_token(text, at + 1)
        if found is None:
            at = text.find("$", at + 1)
            continue
        yield at, found, "", text[at + 1:found]
        at = text.find("$", found)


def _macro_token(text: str, at: int) -> int | None:
    """Where the token at ``at`` ends: ${name} through its brace, else one character (no newline)."""
    if text[at:at + 1] == "{":
        close = text.find("}", at + 1)
        if close >= 0:
            return close + 1
    return at + 1 if at < len(text) and text[at] != "\n" else None


def _host_macros(macros: dict[str, str]) -> None:
    """$j (canonical name, from the resolver unless the cf sets Dj), $w (short name), $m (domain)."""
    if not macros.get("j"):
        fqdn = _fqdn()
        macros["j"] = fqdn if "." in fqdn else _hostname()
    j = macros["j"]
    macros.setdefault("w", j.split(".")[0])
    macros.setdefault("m", j.partition(".")[2])
    macros.setdefault("k", os.uname().nodename)


def _hostname() -> str:
    import _socket  # the C module: socket.py would bring selectors and more into every command

    return _socket.gethostname()


def _fqdn() -> str:
    """socket.getfqdn() of this host: the first of its resolved name and aliases with a dot."""
    import _socket

    name = _hostname()
    try:  # as bytes: a str makes Python load the idna codec, even for an ASCII name
        hostname, aliases, _addrs = _socket.gethostbyaddr(name.encode() if name.isascii() else name)
    except OSError:
        return name
    return next((alias for alias in (hostname, *aliases) if "." in alias), hostname)


def _logical_lines(text: str):
    """Yield (lineno, line) with continuation lines (leading SP/TAB) joined, comments dropped."""
    current, start = None, 0
    for n, raw in enumerate(text.splitlines(), 1):
        if raw[:1] in (" ", "\t") and current is not None:
            current += " " + raw.strip()
            continue
        if current is not None:
            yield start, current
        current, start = (None if not raw or raw.startswith("#") else raw), n
    if current is not None:
        yield start, current


def _class_name(rest: str) -> tuple[str, str]:
    if rest.startswith("{"):
        end = rest.find("}")
        return rest[1:end], rest[end + 1:]
    return rest[:1], rest[1:]


def _read_class_file(cfg: Config, name: str, spec: str) -> None:
    parts = spec.split()
    optional = bool(parts) and parts[0] == "-o"
    if optional:
        parts = parts[1:]
    if not parts or parts[0].startswith("|"):
        return
    path = parts[0]
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.split("#", 1)[0]
                cfg.klass(name).update(w.lower() for w in line.split())
    except OSError as exc:
        if not optional:
            cfg.notices.append(f"fileclass: cannot open '{path}': {exc.strerror}")


CASED_EQUATES = "rm"  # makemailer: r= (recipients per envelope), m= (messages per connection)


def _parse_mailer(body: str) -> Mailer:
    name, _, rest = body.partition(",")
    fields = {}
    for part in _mailer_fields(rest.strip()):
        key, eq, value = part.partition("=")
        if eq:
            letter = key.strip()[:1]
            fields[letter if letter in CASED_EQUATES else letter.upper()] = value.strip()
    return Mailer(name.strip(), fields.get("P", ""), fields.get("F", ""), fields.get("A", ""), fields)


def _mailer_fields(rest: str) -> list[str]:
    """re.split(r",\\s*(?=[A-Za-z]=)", rest): the fields of an M line, split at each comma
    that a letter and '=' follow (spaces between), without re."""
    parts, start, at, n = [], 0, rest.find(","), len(rest)
    while at >= 0:
        j = at + 1
        while j < n and rest[j].isspace():
            j += 1
        if j + 1 < n and rest[j].isascii() and rest[j].isalpha() and rest[j + 1] == "=":
            parts.append(rest[start:at])
            start = j
        at = rest.find(",", at + 1)
    parts.append(rest[start:])
    return parts


def _features(text: str) -> list[str]:
    """The m4 file names of the cf's "#####  $Id: name.m4,v ..." lines: what
    re.findall(r"^#####\\s+\\$Id: ([\\w-]+)\\.m4,", text, re.M) finds, without re."""
    found, n = [], len(text)
    start = 0 if text.startswith("#####") else text.find("\n#####") + 1 or -1
    while start >= 0:
        j = start + 5
        while j < n and text[j].isspace():
            j += 1
        if j > start + 5 and text.startswith("$Id: ", j):
            k = j + 5
            while k < n and (text[k].isalnum() or text[k] in "_-"):
                k += 1
            if k > j + 5 and text.startswith(".m4,", k):
                found.append(text[j + 5:k])
        start = text.find("\n#####", start) + 1 or -1
    return found


def _parse_map(body: str) -> MapDecl:
    parts = body.split()
    name, mtype = parts[0], (parts[1] if len(parts) > 1 else "")
    args = parts[2:]
    flags = [a for a in args if a.startswith("-")]
    rest = [a for a in args if not a.startswith("-")]
    return MapDecl(name, mtype, flags, rest[-1] if rest else "")


def parse(text: str, cfg: Config) -> Config:
    cfg.features.update(_features(text))
    for lineno, line in _logical_lines(text):
        try:
            _parse_line(cfg, line)
        except (ValueError, IndexError) as exc:  # readcf's syserr for a line it cannot read
            raise errors.ConfigError(f"{cfg.path}: line {lineno}: bad {line[0]} line") from exc
    return cfg


def _parse_line(cfg: Config, line: str) -> None:
    """One logical cf line into cfg."""
    kind, body = line[0], line[1:]
    if kind == "O":
        if body.startswith(" "):
            name, _, value = body.strip().partition("=")
            cfg.set_option(name, value)
        elif body:
            cfg.set_option(body[0], body[1:])
    elif kind == "D":
        name, value = _class_name(body)
        cfg.macros[name] = value.strip()
    elif kind == "C":
        name, value = _class_name(body)
        cfg.klass(name).update(w.lower() for w in value.split())
    elif kind == "F":
        name, value = _class_name(body)
        _read_class_file(cfg, name, value.strip())
    elif kind == "K":
        decl = _parse_map(body)
        cfg.maps[decl.name] = decl
    elif kind == "M":
        mailer = _parse_mailer(body)
        cfg.mailers[mailer.name] = mailer
    elif kind == "P":
        name, _, value = body.partition("=")
        cfg.precedences[name.strip().lower()] = int(value or 0)
    elif kind == "T":
        cfg.klass("t").update(body.split())
    elif kind == "Q":
        group = _parse_queue_group(body)
        cfg.queue_groups[group.name] = group
    elif kind in "SR":
        cfg.ignored_rules += 1
        relay = _relay_msg(line)
        if relay is not None:  # check_rcpt's last rule: the reply for a relay attempt (confRELAY_MSG)
            cfg.relay_msg = relay


_RELAY_RULE = '$#error $@ 5.7.1 $: "550 '


def _relay_msg(line: str) -> str | None:
    """The text of a rule 'R$*  $#error $@ 5.7.1 $: "550 Relaying denied..."', else None: what
    re.match(r'R\\$\\*\\s+\\$#error \\$@ 5\\.7\\.1 \\$: "550 (Relaying denied[^"]*)"\\s*$', line)
    captures, without re."""
    if not line.startswith("R$*"):
        return None
    j = 3
    while j < len(line) and line[j].isspace():
        j += 1
    start = j + len(_RELAY_RULE)
    if j == 3 or not line.startswith(_RELAY_RULE, j) or not line.startswith("Relaying denied", start):
        return None
    end = line.find('"', start)
    return line[start:end] if end >= 0 and not line[end + 1:].strip() else None


_LOCAL_LITERALS: set[str] | None = None


def local_literals() -> set[str]:
    """This host's addresses as address literals ([127.0.0.1], [ipv6:::1]): those of its name and
    of every interface, as Sendmail's load_if_names() puts them in class w; computed once."""
    global _LOCAL_LITERALS
    if _LOCAL_LITERALS is None:
        import socket

        addrs = {"127.0.0.1", "::1"} | _interface_addresses()
        try:
            addrs |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
        _LOCAL_LITERALS = {f"[ipv6:{a.split('%')[0]}]" if ":" in a else f"[{a}]" for a in addrs}
    return _LOCAL_LITERALS


def _interface_addresses() -> set[str]:
    """IPv4 addresses from SIOCGIFCONF, IPv6 from /proc/net/if_inet6 (Linux); none on failure."""
    import array
    import fcntl
    import ipaddress
    import socket
    import struct

    found: set[str] = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            buf = array.array("B", bytes(40 * 64))
            size = struct.unpack("iL", fcntl.ioctl(s.fileno(), 0x8912,  # SIOCGIFCONF
                                                   struct.pack("iL", len(buf), buf.buffer_info()[0])))[0]
            data = buf.tobytes()[:size]
            found |= {socket.inet_ntoa(data[i + 20:i + 24]) for i in range(0, size, 40)}
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            found |= {ipaddress.IPv6Address(int(line.split()[0], 16)).compressed for line in fh if line.strip()}
    except (OSError, ValueError, IndexError):
        pass
    return found


def load(path: str, overrides: list[tuple[str, str]] | None = None) -> Config:
    """Read ``path`` and apply -O/-o ``overrides`` (name, value) in order."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise errors.ConfigError(f"{path}: line 0: cannot open: {exc.strerror}") from exc
    cfg = Config(path=path, macros={"v": VERSION, "Z": VERSION, "n": "MAILER-DAEMON"})
    parse(text, cfg)
    _host_macros(cfg.macros)
    for name, value in overrides or ():
        cfg.set_option(name, value, strict=True)
    cfg.klass("w").update({cfg.macros["j"].lower(), cfg.macros["w"].lower()} - {""})
    return cfg


def queue_directories(spec: str) -> list[str]:
    """QueueDirectory=/var/spool/mqueue/q* -> every directory (or link to one) starting with q
    there, sorted; a plain path -> [path]; a pattern that matches nothing -> [its parent]."""
    if not spec.endswith("*"):
        return [spec]
    base, prefix = os.path.split(spec[:-1])
    try:
        names = sorted(n for n in os.listdir(base or ".") if n.startswith(prefix))
    except OSError:
        return [base]
    found = [os.path.join(base, n) for n in names if os.path.isdir(os.path.join(base, n))]
    return found or [base]


def submit_path_for(cf_path: str) -> str:
    """Where the MSP config lives for an MTA config: submit.cf beside it, else the default."""
    beside = os.path.join(os.path.dirname(os.path.abspath(cf_path)), "submit.cf")
    return beside if os.path.exists(beside) else DEFAULT_SUBMIT_CF


def msp_queue_dir(cfg: Config) -> str:
    """The MSP queue directory as seen from an MTA config (MSPQueueDirectory, or submit.cf's)."""
    if cfg["MSPQueueDirectory"]:
        return cfg["MSPQueueDirectory"]
    try:
        return load(submit_path_for(cfg.path))["QueueDirectory"]
    except errors.MTAError:
        return "/var/spool/mqueue-client"
