"""``sendmail -d0.N``: Sendmail's identity block (Version, Compiled with, the names it goes by
and the SYSTEM IDENTITY macros after readcf), in Sendmail's layout (main.c, -d0.1 and -d0.4)."""

from __future__ import annotations

from mta import PACKAGE_VERSION, VERSION, config

# what this build does, in Sendmail's compile-flag words; SENDMAIL_PY says who we are
COMPILED_WITH = ("CDB", "IPV6_FULL", "LOG", "MIME8TO7", "NAMED_BIND", "NDBM", "NETINET", "NETINET6",
                 "NEWDB", "PIPELINING", "STARTTLS", f"SENDMAIL_PY={PACKAGE_VERSION}")
WIDTH = 72


def debug_level(flags: list[str], category: int = 0) -> int:
    """The level -d gives ``category`` (-d0 is level 1, -d0.4 level 4, -d0-9.2 a range)."""
    level = 0
    for flag in flags:
        for part in flag.split(","):
            cats, _, lev = part.partition(".")
            low, _, high = cats.partition("-")
            try:
                lo, hi = int(low or 0), int(high or low or 0)
                value = int(lev) if lev else 1
            except ValueError:
                continue
            if lo <= category <= hi:
                level = max(level, value)
    return level


def _compiled_with() -> list[str]:
    lines, line = [], " Compiled with:"
    for word in COMPILED_WITH:
        if len(line) + 1 + len(word) > WIDTH:
            lines.append(line)
            line = "\t\t" + word
        else:
            line += " " + word
    return [*lines, line]


def _aka(cfg: config.Config) -> list[str]:
    names = [cfg.macros.get("w", ""), cfg.macros.get("k", "")]
    return [n for n in dict.fromkeys(names) if n and n != cfg.hostname] + sorted(config.local_literals())


def banner(cfg: config.Config, level: int) -> str:
    m = cfg.macros
    out = [f"Version {VERSION}", *_compiled_with()]
    if level >= 4:
        out += [f"Canonical name: {cfg.hostname}", f" UUCP nodename: {m.get('k', '')}"]
        out += [f"\ta.k.a.: {name}" for name in _aka(cfg)]
    out += ["", "============ SYSTEM IDENTITY (after readcf) ============",
            f"      (short domain name) $w = {m.get('w', '')}",
            f"  (canonical domain name) $j = {m.get('j', '')}",
            f"         (subdomain name) $m = {m.get('m', '')}",
            f"              (node name) $k = {m.get('k', '')}",
            "========================================================", "", ""]
    return "\n".join(out)
