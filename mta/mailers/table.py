"""The mailer table: what each mailer name a route carries stands for, from the cf's M lines.

One lookup, ``agent(cfg, name)``, used by the router (so an unknown mailer is refused where the
address is resolved, at RCPT or at submission) and by delivery (which mailer module runs):
  SMTP     P=[IPC] or P=[TCP] with A=TCP $h [port]: smtp, esmtp, smtp8, dsmtp, relay, or any
           other name the cf gives such a line; their F= flags come from that line
  PROGRAM  P=/absolute/path: run with the A= argv (mta.mailers.program), as Mprog's /bin/sh
  LMTP     P=/absolute/path with F=z (LMTP), or without $u in A= (SMTP): a program spoken to
           (mta.mailers.lmtp), as FEATURE(local_lmtp)'s mail.local -l
  LOCAL    our own mailbox writer (mta.mailers.local): used when the cf has no Mlocal line, or
           when its P= is BUILTIN_LOCAL, sendmail-py's own mail.local (set it with
           define(`LOCAL_MAILER_PATH', `/usr/libexec/sendmail-py/mail.local') in sendmail.mc)
  FILE     *file*: appending to a file named by an alias, :include: or .forward
  UNUSABLE a name no M line defines (Sendmail's ``554 5.3.5 buildaddr: unknown mailer NAME``),
           or a kind sendmail-py does not implement ([LPC], [IPC] without TCP); such
           mailers are named once at daemon start (``notices``) and their recipients bounce
Nothing falls through to FILE: only the router's alias, :include: and .forward targets are
routed to *file* (and to prog), and ``routable`` refuses both names anywhere else.
Pure: reads only the config.
"""

from __future__ import annotations

from mta import errors
from mta.config import Mailer
from mta.record import record

SMTP, PROGRAM, LMTP, LOCAL, FILE, UNUSABLE = "smtp", "program", "lmtp", "local", "file", "unusable"
BUILTIN_LOCAL = "/usr/libexec/sendmail-py/mail.local"
ALIAS_ONLY = ("prog", "*file*")  # reached only through aliases, :include: and .forward

# Sendmail's own (conf.c setupmailers) and the cf/mailer m4 defaults, for a cf without M lines
BUILTIN: dict[str, Mailer] = {
    "local": Mailer("local", BUILTIN_LOCAL, "lsDFMAw5:/|@qPn9S", "mail.local -l"),
    "prog": Mailer("prog", "/bin/sh", "lsDFMoqeu9", "sh -c $u"),
    "*file*": Mailer("*file*", "[FILE]", "lsDFMPEouq9", "FILE $u"),
    "smtp": Mailer("smtp", "[IPC]", "mDFMuX", "TCP $h"),
    "esmtp": Mailer("esmtp", "[IPC]", "mDFMuXa", "TCP $h"),
    "smtp8": Mailer("smtp8", "[IPC]", "mDFMuX8", "TCP $h"),
    "dsmtp": Mailer("dsmtp", "[IPC]", "mDFMuXa%", "TCP $h"),
    "relay": Mailer("relay", "[IPC]", "mDFMuXa8", "TCP $h"),
}


@record(frozen=True)
class Agent:
    """A mailer name resolved: its kind and its M line (ours when the cf has none)."""

    name: str
    kind: str
    mailer: Mailer
    why: str = ""  # UNUSABLE: what is wrong, as the recipient's error text

    @property
    def error(self) -> errors.MTAError | None:
        if self.kind != UNUSABLE:
            return None
        return errors.ConfigError(self.why, status="5.3.5", code=554)


def kind_of(m: Mailer) -> tuple[str, str]:
    """(kind, why it is UNUSABLE) of an M line."""
    argv = m.argv.split()
    if m.path in ("[IPC]", "[TCP]"):
        if argv[:1] == ["TCP"] or m.path == "[TCP]":
            return SMTP, ""
        return UNUSABLE, f"mailer {m.name}: P={m.path} A={m.argv} (not TCP) is not implemented by sendmail-py"
    if m.path == "[FILE]":
        return (FILE, "") if m.name == "*file*" else (
            UNUSABLE, f"mailer {m.name}: P=[FILE] is only for files named by aliases and .forward")
    if m.name == "local" and m.path in (BUILTIN_LOCAL, "mail.local"):
        return LOCAL, ""
    if not m.path.startswith("/"):
        return UNUSABLE, f"mailer {m.name}: P={m.path} is not implemented by sendmail-py"
    if "z" in m.flags or "$u" not in m.argv:
        return LMTP, ""
    return PROGRAM, ""


def agent(cfg, name: str) -> Agent:
    """What mailer ``name`` is in this config (names compare without case, as Sendmail's)."""
    m = cfg.mailers.get(name) or cfg.mailers.get(name.lower()) or BUILTIN.get(name.lower())
    if m is None:
        return Agent(name, UNUSABLE, Mailer(name, ""), f"buildaddr: unknown mailer {name}")
    kind, why = kind_of(m)
    return Agent(m.name, kind, m, why)


def routable(cfg, name: str) -> errors.MTAError | None:
    """Why a map entry (mailertable, virtusertable) may not route to mailer ``name``, or None."""
    if name.lower() in ALIAS_ONLY:
        return errors.ConfigError(f"mailer {name} is only for aliases, :include: and .forward",
                                  status="5.3.5", code=554)
    return agent(cfg, name).error


def notices(cfg) -> list[str]:
    """One line for each mailer the cf defines that sendmail-py cannot run (daemon start, check)."""
    return [a.why for a in (agent(cfg, name) for name in cfg.mailers) if a.kind == UNUSABLE]
