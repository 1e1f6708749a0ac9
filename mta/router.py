"""Routing: a recipient address -> the deliveries it stands for (mailer, host, user).

Pure given the config, the aliases and the password database.  Rules, in order:
  1. An MSP config (submit.cf, ${MTAHost} set) sends everything to its relay mailer.
  2. ``|program`` and ``/file`` targets (only as alias or .forward results) go to prog / *file*.
  3. A local address (no domain, a domain in class w, one of our address literals) is expanded
     through aliases by its local part, unquoted - which is never read again as an address, so
     "a@b"@here and a%b@here stay here (u%here@here is u@here, as in Sendmail);
     what remains local must be a user in passwd (``user+detail`` tries ``user``), else
     "User unknown".  ``postmaster`` without an alias reaches root (RFC 5321 4.5.1).
  4. A local or virtual domain's address found in the virtusertable is replaced by its value
     (``user@domain``, ``user+*@domain``, ``user@domain``, then ``@domain``; %1 %2 %3).
  5. A remote domain found in the mailertable (exact host, then ``.parent`` domains, then ``.``)
     goes where it says: ``mailer:host``, ``[host]`` (no MX), ``local:user``, ``error:...``.
  6. Anything else goes to the smart host (``DS``) over relay, or to its domain over esmtp.
Every route can say why it was chosen (``Route.why``), for ``sendmail -bv -v``.
An error is returned as a ``Route`` with mailer ``error`` and the error; it is never raised,
so one bad recipient does not hide the others.
"""

from __future__ import annotations

import pwd
import time

from mta import address, aliases, errors
from mta.config import Config
from mta.mailers import table
from mta.record import record


@record(frozen=True)
class Route:
    mailer: str  # local, prog, *file*, esmtp, relay, error
    user: str  # mailbox owner, program, path, or the remote address
    addr: str  # the recipient as it is logged (to=)
    host: str = ""
    error: errors.MTAError | None = None
    owner: str = ""  # owner-LIST that gets errors, if any
    alias: str = ""
    why: str = ""  # which map entry decided, e.g. 'mailertable: example.com'
    run_as: str = ""  # programs and files from a user's .forward run as that user

    def describe(self, explain: bool = False) -> str:
        """sendmail -bv wording: 'deliverable: mailer local, user alice' (+ why, with -v)."""
        if self.error:
            text = self.error.text
        else:
            host = f", host {self.host}" if self.host else ""
            text = f"deliverable: mailer {self.mailer}{host}, user {self.user}"
        return f"{text} ({self.why})" if explain and self.why else text


MAX_DEPTH = 10


def map_error(value: str, key: str) -> errors.MTAError:
    """error:[D.S.N:]CODE text  or  error:NAME CODE text (nouser, unavailable...) from a map."""
    from mta import access

    body = value.split(":", 1)[1].strip() if ":" in value else ""
    name, _, rest = body.partition(" ")
    if name.isalpha():  # a sysexits name: error:nouser 550 No such user here
        body = rest
    d = access.parse_value("ERROR:" + body, key)
    return errors.MTAError(d.text or "Service unavailable", status=d.status or "5.0.0", code=d.code or 550,
                           exitcode=errors.EX_NOUSER if name == "nouser" else errors.EX_UNAVAILABLE)


def virtuser_keys(addr: address.Address) -> list[tuple[str, dict[str, str]]]:
    """(key, %-substitutions) in Sendmail's order for a virtual address."""
    user, plus, detail = addr.local.partition("+")
    subs = {"1": user, "2": detail, "3": plus + detail}
    d = addr.domain.lower()
    keys = [(f"{addr.local}@{d}", subs)]
    if plus:
        if detail:
            keys.append((f"{user}++@{d}", subs))
        keys += [(f"{user}+*@{d}", subs), (f"{user}@{d}", subs)]
        if detail:
            keys.append((f"++@{d}", subs))
        keys.append((f"+*@{d}", subs))
    keys.append((f"@{d}", subs))
    return keys


def substitute(value: str, subs: dict[str, str]) -> str:
    import re

    return re.sub(r"%([0-9%])", lambda m: "%" if m.group(1) == "%" else subs.get(m.group(1), ""), value)


def mailertable_keys(domain: str) -> list[tuple[str, str]]:
    """(key, %1) for host.sub.example: itself, .sub.example, .example, then '.'."""
    labels = domain.lower().rstrip(".").split(".")
    keys = [(".".join(labels), "")]
    for i in range(1, len(labels)):
        keys.append(("." + ".".join(labels[i:]), ".".join(labels[:i])))
    keys.append((".", domain.lower()))
    return keys


KNOWN_FOR = 1.0  # seconds a passwd entry found is used again; a name not found is asked each time
_KNOWN: dict[str, tuple[float, pwd.struct_passwd]] = {}


def local_user(name: str) -> pwd.struct_passwd | None:
    """The passwd entry for a local name: exact, lower-cased, then without +detail.  An entry
    found is kept for KNOWN_FOR seconds: routing one recipient asks for it twice (the mailbox,
    then ~/.forward), and a daemon's next message asks again; each ask reads /etc/passwd (five
    system calls) or goes to NSS (LDAP, perhaps)."""
    now = time.monotonic()
    hit = _KNOWN.get(name)
    if hit is not None and now - hit[0] < KNOWN_FOR:
        return hit[1]
    base = name.split("+", 1)[0]
    for candidate in dict.fromkeys((name, name.lower(), base, base.lower())):  # each asked once
        try:
            entry = pwd.getpwnam(candidate)
        except (KeyError, ValueError):
            continue
        if len(_KNOWN) >= 1024:
            _KNOWN.clear()
        _KNOWN[name] = (now, entry)
        return entry
    return None


def is_local(cfg: Config, addr: address.Address) -> bool:
    return not addr.domain or cfg.is_local_host(address.ascii_domain(addr.domain))


def _remote(cfg: Config, addr: address.Address, text: str) -> Route:
    smart = cfg.macros.get("S", "")
    if smart:
        return Route("relay", str(addr), text, host=smart)
    return Route("esmtp", str(addr), text, host=addr.domain)


def local_target(cfg: Config, target: aliases.Target, maps=None, original: address.Address | None = None) -> Route:
    """Where one result of alias expansion goes.  ``original`` is the recipient itself when the
    target is its own local part (no alias matched): that is never parsed again as an address."""
    value = target.value
    info = dict(owner=target.owner, alias=target.alias)
    if value.startswith(("|", "/")) and not target.alias:  # only an alias or .forward may name these
        return Route("error", value, value, error=errors.NoUser(), **info)
    if value.startswith("|"):
        return Route("prog", value, value, **info)
    if value.startswith("/"):
        return Route("*file*", value, value, **info)
    if original is not None:
        addr = original
    else:
        try:
            addr = address.parse(value)
        except errors.AddressError as exc:
            return Route("error", value, value, error=exc, **info)
        if not is_local(cfg, addr):
            return _mailertable(cfg, maps, addr, value) or _remote(cfg, addr, value)
    entry = local_user(addr.user)
    if entry is None and addr.user.lower() == "postmaster":
        entry = local_user("root")
    if entry is None:
        return Route("error", addr.local, value, error=errors.NoUser(), **info)
    return Route("local", entry.pw_name, value, **info)


def _local_text(cfg: Config, value: str) -> bool:
    """Is an alias value a local name (one parse, the same parser as everywhere)?"""
    try:
        return is_local(cfg, address.parse(value))
    except errors.AddressError:
        return False


def _ours(cfg: Config, addr: address.Address) -> address.Address:
    """u%here@here is u@here (proto.m4 Parse0 strips a local host from a routed local part) -
    but only when what it names is local too: a local domain's address stays local."""
    for _ in range(MAX_DEPTH):
        inner = address.routed(addr) if is_local(cfg, addr) else None
        if inner is None or not is_local(cfg, inner):
            return addr
        addr = inner
    return addr


def _virtual(cfg: Config, maps, addr: address.Address, text: str, table, depth: int) -> list[Route] | None:
    if maps is None or not addr.domain or depth >= MAX_DEPTH:
        return None
    domain = addr.domain.lower()
    if not (cfg.is_local_host(domain) or domain in cfg.klass("VirtHost")):
        return None
    for key, subs in virtuser_keys(addr):
        value = maps.lookup("virtuser", key)
        if value is None:
            continue
        why = f"virtusertable: {key}"
        if value.lower().startswith("error:"):
            return [Route("error", text, text, error=map_error(value, key), why=why)]
        routes = resolve(cfg, table, substitute(value, subs), maps, depth + 1)
        return [Route(r.mailer, r.user, text if r.addr == r.user or len(routes) == 1 else r.addr, r.host,
                      r.error, r.owner, r.alias, r.why or why) for r in routes]
    return None


def _mailertable(cfg: Config, maps, addr: address.Address, text: str) -> Route | None:
    if maps is None or not addr.domain or addr.domain.startswith("["):
        return None
    for key, wild in mailertable_keys(addr.domain):
        value = maps.lookup("mailertable", key)
        if value is None:
            continue
        why = f"mailertable: {key}"
        value = substitute(value.strip(), {"1": wild})
        mailer, _, host = value.partition(":")
        mailer = mailer.strip().lower()
        if mailer == "error":
            return Route("error", text, text, error=map_error(value, key), why=why)
        if mailer == "local":
            user = host.strip() or addr.local
            entry = local_user(user)
            if entry is None:
                return Route("error", user, text, error=errors.NoUser(), why=why)
            return Route("local", entry.pw_name, text, why=why)
        refused = table.routable(cfg, mailer)  # unknown, unusable, or prog/*file* (aliases only)
        if refused:
            return Route("error", text, text, error=refused, why=why)
        return Route(mailer, str(addr), text, host=host.strip() or addr.domain, why=why)
    return None


def resolve(cfg: Config, table: aliases.Aliases | None, text: str, maps=None, depth: int = 0) -> list[Route]:
    """Every delivery that recipient ``text`` stands for."""
    try:
        addr = address.parse(text)
    except errors.AddressError as exc:
        return [Route("error", text, text, error=exc)]
    if addr.null:
        return [Route("error", text, text, error=errors.UsageError("User address required",
                                                                   status="5.1.3", code=553))]
    if cfg.is_msp:
        return [Route("relay", str(addr), text, host=cfg.macros["MTAHost"])]
    addr = _ours(cfg, addr)
    if any(part.startswith(("|", "/", ":", "\\")) for part in (addr.local, addr.user)):
        return [Route("error", text, text, error=errors.NoUser())]
    try:
        virtual = _virtual(cfg, maps, addr, text, table, depth)
        if virtual is not None:
            return virtual
        if not is_local(cfg, addr):
            return [_mailertable(cfg, maps, addr, text) or _remote(cfg, addr, text)]
    except errors.TempFail as exc:  # a map that cannot answer now: try again later
        return [Route("error", text, text, error=exc)]
    # the local part is looked up as the name it is (quotes and escapes removed), never re-read
    # as an address: "a@b"@here and a%b@here stay here (issue 8)
    targets = aliases.expand(table, addr.user, is_local=lambda v: _local_text(cfg, v))
    routes = []
    for t in targets:
        own = t.value == addr.user and not t.alias
        route = local_target(cfg, t, maps, addr if own else None)
        if route.mailer == "local" and not t.no_alias and depth < MAX_DEPTH:
            forwarded = _forward(cfg, table, route, maps, depth)
            if forwarded is not None:
                routes += forwarded
                continue
        routes.append(Route(route.mailer, route.user, text, route.host, route.error) if own else route)
    return routes


def run_as(route: Route, user: str) -> Route:
    """The same route, with its program or file run as user ('' leaves it as it is)."""
    if not user or route.mailer not in ("prog", "*file*"):
        return route
    return Route(**{**{n: getattr(route, n) for n in Route.__record_fields__}, "run_as": user})


def forward_file(cfg: Config, pw) -> str | None:
    """The user's .forward (first of ForwardPath), if it is safe to obey: a plain file owned by
    the user or root, in a home nobody else may write, and not group- or world-writable."""
    import os
    import stat

    for pattern in cfg["ForwardPath"].split(":"):
        path = cfg.expand(pattern.strip(), {"z": pw.pw_dir, "u": pw.pw_name})
        try:
            st = os.lstat(path)
            home = os.stat(pw.pw_dir)
        except OSError:
            continue
        if (not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, pw.pw_uid) or st.st_mode & 0o022
                or home.st_uid not in (0, pw.pw_uid) or home.st_mode & 0o022):
            return None
        return path
    return None


def _forward(cfg: Config, table, route: Route, maps, depth: int) -> list[Route] | None:
    """A local user's .forward: each line's addresses, |programs and /files (run as the user);
    \\user or the user's own name delivers to the mailbox."""
    pw = local_user(route.user)
    path = forward_file(cfg, pw) if pw else None
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            values = [v for line in fh if line.strip() and not line.lstrip().startswith("#")
                      for v in aliases.values(line.strip())]
    except OSError:
        return None
    why, out = f"forward: {path}", []
    for value in values or [f"\\{pw.pw_name}"]:
        value = value[1:-1] if value.startswith('"') and value.endswith('"') else value
        if value.lstrip("\\") == pw.pw_name:
            out.append(Route("local", pw.pw_name, route.addr, why=why))
        elif value.startswith(("|", "/")):
            mailer = "prog" if value.startswith("|") else "*file*"
            out.append(Route(mailer, value, value, alias=".forward", why=why, run_as=pw.pw_name))
        else:
            out += resolve(cfg, table, value, maps, depth + 1)
    return out
