"""Routing: a recipient address -> the deliveries it stands for (mailer, host, user).

Pure given the config, the aliases and the password database.  Rules, in order:
  1. An MSP config (submit.cf, ${MTAHost} set) sends everything to its relay mailer.
  2. ``|program`` and ``/file`` targets (only as alias or .forward results) go to prog / *file*.
  3. A local address (no domain, or a domain in class w) is expanded through aliases;
     what remains local must be a user in passwd (``user+detail`` tries ``user``), else
     "User unknown".  ``postmaster`` without an alias reaches root (RFC 5321 4.5.1).
  4. Anything else goes to the smart host (``DS``) over relay, or to its domain over esmtp.
An error is returned as a ``Route`` with mailer ``error`` and the error; it is never raised,
so one bad recipient does not hide the others.
"""

from __future__ import annotations

import pwd

from mta import address, aliases, errors
from mta.config import Config
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

    def describe(self) -> str:
        """sendmail -bv wording: 'deliverable: mailer local, user alice'."""
        if self.error:
            return self.error.text
        host = f", host {self.host}" if self.host else ""
        return f"deliverable: mailer {self.mailer}{host}, user {self.user}"


def local_user(name: str) -> pwd.struct_passwd | None:
    """The passwd entry for a local name: exact, lower-cased, then without +detail."""
    for candidate in (name, name.lower(), name.split("+", 1)[0], name.split("+", 1)[0].lower()):
        try:
            return pwd.getpwnam(candidate)
        except (KeyError, ValueError):
            continue
    return None


def is_local(cfg: Config, addr: address.Address) -> bool:
    return not addr.domain or cfg.is_local_host(addr.domain)


def _remote(cfg: Config, addr: address.Address, text: str) -> Route:
    smart = cfg.macros.get("S", "")
    if smart:
        return Route("relay", str(addr), text, host=smart)
    return Route("esmtp", str(addr), text, host=addr.domain)


def _local_target(cfg: Config, target: aliases.Target) -> Route:
    value = target.value
    info = dict(owner=target.owner, alias=target.alias)
    if value.startswith(("|", "/")) and not target.alias:  # only an alias or .forward may name these
        return Route("error", value, value, error=errors.NoUser(), **info)
    if value.startswith("|"):
        return Route("prog", value, value, **info)
    if value.startswith("/"):
        return Route("*file*", value, value, **info)
    try:
        addr = address.parse(value)
    except errors.AddressError as exc:
        return Route("error", value, value, error=exc, **info)
    if not is_local(cfg, addr):
        return _remote(cfg, addr, value)
    entry = local_user(addr.local)
    if entry is None and addr.local.lower() == "postmaster":
        entry = local_user("root")
    if entry is None:
        return Route("error", addr.local, value, error=errors.NoUser(), **info)
    return Route("local", entry.pw_name, value, **info)


def resolve(cfg: Config, table: aliases.Aliases | None, text: str) -> list[Route]:
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
    if addr.local.startswith(("|", "/", ":", "\\")) and not addr.domain:
        return [Route("error", text, text, error=errors.NoUser())]
    if not is_local(cfg, addr):
        return [_remote(cfg, addr, text)]
    targets = aliases.expand(table, addr.local,
                             is_local=lambda v: "@" not in v or cfg.is_local_host(v.rsplit("@", 1)[1]))
    routes = []
    for t in targets:
        route = _local_target(cfg, t)
        routes.append(route if t.value != addr.local or t.alias else
                      Route(route.mailer, route.user, text, route.host, route.error))
    return routes
