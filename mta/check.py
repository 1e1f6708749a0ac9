"""The migration report: what sendmail-py makes of a live /etc/mail, line by line.

``report(cf_path, mc_path)`` reads sendmail.mc (FEATURE, MAILER, DAEMON_OPTIONS, define) and
sendmail.cf (O options, K maps, M mailers) and gives each line one verdict: honoured, honoured
differently (and how), or not implemented.  ``unimplemented_options(cfg)`` is what the daemon
names once at start.  The tables below are the one place that says what we honour; an entry
nobody has judged is "not implemented", never silently accepted.
"""

from __future__ import annotations

import re

from mta import config, options
from mta.record import record

HONOURED, DIFFERENT, MISSING = "honoured", "honoured differently", "not implemented"
RULES_ONLY = "looked up only by rule sets, which sendmail-py does not run"

# (an m4 define is judged by the cf line it writes)
# options read from the cf that act although options.OPTIONS does not convert them
EXTRA_OPTIONS = {"DaemonPortOptions", "ProcessTitlePrefix"}
DIFFERENT_OPTIONS = {
    "SuperSafe": "every queue file is fsynced before it is acknowledged, whatever the value",
    "HelpFile": "HELP answers with a built-in text; the file is not read",
    "OperatorChars": "addresses are parsed as RFC 5322 says; " + RULES_ONLY,
    "BlankSub": "addresses are parsed as RFC 5322 says; " + RULES_ONLY,
    "DontBlameSendmail": "the file safety checks (.forward, :include:, mailboxes) are fixed; the list is not read",
    "ResolverOptions": "dnspython with /etc/resolv.conf (or NameServers); the resolver flags are not read",
    "ControlSocketName": "no control socket: the init script's status and reload use the pid file and signals",
    "AliasWait": "the alias database is read when present, else the aliases text itself",
    "UseMSP": "submission always goes through submit.cf and the MSP queue",
    "SevenBitInput": "bodies are kept byte for byte",
    "RunAsUser": "in submit.cf: root's submissions to the MSP queue are written as this user, so its "
                 "queue runs (Debian's cron-msp as smmsp) can take them; no process changes its uid to it",
    "TLSFallbacktoClear": "a failed STARTTLS handshake is always followed by a new connection in clear, "
                          "unless TLS_Srv: asks for VERIFY or ENCR there",
}

FEATURES = {
    "use_cw_file": (HONOURED, "class w from /etc/mail/local-host-names"),
    "use_ct_file": (HONOURED, "trusted users from /etc/mail/trusted-users (class t)"),
    "access_db": (HONOURED, "the access map: Connect:, From:, To:, GreetPause:, ClientRate:, ClientConn:"),
    "mailertable": (HONOURED, "the mailertable map routes domains"),
    "authinfo": (HONOURED, "AuthInfo: entries of the authinfo map give client AUTH (PLAIN, LOGIN), inside TLS"),
    "virtusertable": (HONOURED, "the virtusertable map rewrites local and virtual addresses"),
    "no_default_msa": (HONOURED, "only the DAEMON_OPTIONS listed are listened on"),
    "msp": (HONOURED, "submit.cf and the MSP queue /var/spool/mqueue-client"),
    "smrsh": (HONOURED, "/usr/libexec/sendmail/smrsh (ours) runs only programs in /etc/mail/smrsh"),
    "greet_pause": (DIFFERENT, "GreetPause: access entries (a bare 'GreetPause:' is the default); "
                               "the default written here is not read from the cf"),
    "conncontrol": (DIFFERENT, "ClientConn: access entries, checked when a client connects (421)"),
    "ratecontrol": (DIFFERENT, "ClientRate: access entries, checked when a client connects (421)"),
    "nouucp": (DIFFERENT, "no UUCP addressing at all"),
    "nocanonify": (DIFFERENT, "addresses are never canonified through DNS; " + RULES_ONLY),
    "always_add_domain": (DIFFERENT, "header addresses are qualified with $j; envelope ones as given"),
    "delay_checks": (HONOURED, "sender checks (From:, resolvable domain) at each RCPT; Spam: FRIEND skips them"),
    "accept_unresolvable_domains": (HONOURED, "senders whose domain does not resolve are accepted"),
    "accept_unqualified_senders": (HONOURED, "senders without a domain are accepted from remote clients"),
    "queuegroup": (MISSING, "the queuegroup rule set (access qgrp: entries) is not run; a recipient's "
                            "queue group is its mailer's Q= (QUEUE_GROUP lines are honoured)"),
    "loose_relay_check": (HONOURED, "u%h@domain for a class R domain is not checked again as u@h"),
}

MAPS = {"access": "the access map (policy)", "mailertable": "domain routing",
        "virtuser": "virtual users", "aliases": "the alias database", "authinfo": "client AUTH credentials"}
MAP_TYPES = {"hash", "btree", "dbm", "cdb", "implicit", "text"}

MC_SKIP = re.compile(r"^(define|divert|VERSIONID|OSTYPE|DOMAIN|MAILER_DEFINITIONS|undefine|LOCAL_CONFIG|"
                     r"LOCAL_RULE|LOCAL_RULESETS|SITECONFIG|include|sinclude|dnl)\b")


@record(frozen=True)
class Item:
    path: str
    lineno: int
    text: str  # the line as written, shortened
    verdict: str
    how: str = ""

    def line(self) -> str:
        how = f": {self.how}" if self.how else ""
        return f"{self.path}:{self.lineno}: {self.text}\n    {self.verdict}{how}"


def option_verdict(name: str) -> tuple[str, str]:
    if name in DIFFERENT_OPTIONS:
        return DIFFERENT, DIFFERENT_OPTIONS[name]
    if name in options.OPTIONS or name in EXTRA_OPTIONS:
        return HONOURED, ""
    if name not in options.KNOWN_OPTIONS and not name.startswith("Timeout."):
        return MISSING, "unknown option name"
    return MISSING, "read and ignored"


def unimplemented_options(cfg: config.Config) -> list[str]:
    """The cf's options that nothing acts on, each once, in the cf's order."""
    names = list(cfg.options) + (["DaemonPortOptions"] if cfg.daemon_ports else [])
    return [n for n in dict.fromkeys(names) if option_verdict(n)[0] == MISSING]


def map_verdict(decl: config.MapDecl) -> tuple[str, str]:
    if decl.name == "resolve" and decl.type == "host":
        return DIFFERENT, "check_mail's sender domain check, through DNS (dnspython) after /etc/hosts"
    if decl.name not in MAPS:
        return DIFFERENT, f"not used: {RULES_ONLY}"
    if decl.type not in MAP_TYPES:
        return MISSING, f"map type {decl.type} is not supported"
    return HONOURED, MAPS[decl.name]


def mailer_verdict(mailer: config.Mailer) -> tuple[str, str]:
    """The verdict of the delivery layer's mailer table (mta.mailers.table) on an M line."""
    from mta.mailers import table

    kind, why = table.kind_of(mailer)
    if kind == table.UNUSABLE:
        return MISSING, why
    if kind == table.SMTP:
        if "%" in mailer.flags:
            return DIFFERENT, "SMTP; F=% (hold until ETRN) is not implemented: delivered at once"
        return HONOURED, "SMTP to the host and port of A=TCP $h [port]"
    if kind == table.LOCAL:
        return HONOURED, (f"P={mailer.path} is sendmail-py's own: the built-in local agent writes "
                          "MailSpoolDirectory/USER (MailboxFormat)")
    if kind == table.LMTP:
        spoken = "LMTP" if "z" in mailer.flags else "SMTP"
        return HONOURED, f"runs {mailer.path} with A={mailer.argv} and speaks {spoken} to it"
    if mailer.name == "prog":
        return HONOURED, f"programs from aliases and .forward files run as {mailer.path} with A={mailer.argv}"
    return HONOURED, f"runs {mailer.path} with A={mailer.argv}, its F= flags, uid and exit codes"


def _feature_items(path: str, lineno: int, text: str, call: str, args: list[str]) -> Item:
    short = text if len(text) <= 70 else text[:67] + "..."
    if call == "FEATURE":
        name = args[0] if args else ""
        verdict, how = FEATURES.get(name, (MISSING, ""))
        return Item(path, lineno, short, verdict, how)
    if call == "MAILER":
        return Item(path, lineno, short, HONOURED, "its M lines are in sendmail.cf, judged below")
    if call == "DAEMON_OPTIONS":
        return Item(path, lineno, short, HONOURED, "a listener (Port, Addr, Family, Name, M=)")
    return Item(path, lineno, short, HONOURED, "sets a cf line, judged below")


def _m4_args(body: str) -> list[str]:
    return [a.strip().strip("`'").strip() for a in body.split(",")]


def _m4_statements(text: str):
    """(lineno, call, args, text) for each top-level m4 call, dnl comments dropped."""
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"\bdnl\b.*$", "", raw).strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = n
        pending += line
        if pending.count("(") > pending.count(")"):
            continue
        m = re.match(r"([A-Za-z_]+)\s*(?:\((.*)\))?", pending)
        if m:
            yield start, m.group(1), _m4_args(m.group(2) or ""), pending
        pending = ""


def mc_items(path: str) -> list[Item]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return []
    items = []
    for lineno, call, args, line in _m4_statements(text):
        if MC_SKIP.match(call):
            continue
        items.append(_feature_items(path, lineno, line, call, args))
    return items


def cf_items(path: str) -> list[Item]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    items = []
    lines = list(config._logical_lines(text))
    groups = {"mqueue"} | {ln[1:].split(",")[0].strip() for _n, ln in lines if ln[0] == "Q"}
    for lineno, line in lines:
        kind, body = line[0], line[1:]
        short = line if len(line) <= 70 else line[:67] + "..."
        if kind == "O":
            name = (body.strip().partition("=")[0] if body.startswith(" ") else
                    options.SHORT_OPTIONS.get(body[:1], body[:1])).strip()
            items.append(Item(path, lineno, short, *option_verdict(name)))
        elif kind == "K":
            items.append(Item(path, lineno, short, *map_verdict(config._parse_map(body))))
        elif kind == "M":
            mailer = config._parse_mailer(body)
            queue = mailer.fields.get("Q")
            verdict = mailer_verdict(mailer) if queue is None or queue in groups else (
                MISSING, f"Q={queue} names no queue group (readcf: mailer {mailer.name}: unknown queue "
                         f"{queue}); its recipients stay in the message's group")
            items.append(Item(path, lineno, short, *verdict))
        elif kind == "Q":
            items.append(Item(path, lineno, short, HONOURED, "queue group: its directories, runners and "
                              "recipients limit; a recipient is queued here when its mailer says Q= "
                              "(the queuegroup rule set is not run)"))
    return items


def report(cf_path: str, mc_path: str | None = None) -> tuple[str, int]:
    """The report text and how many lines are not implemented."""
    mc_path = mc_path if mc_path is not None else cf_path[:-3] + ".mc" if cf_path.endswith(".cf") else ""
    items = (mc_items(mc_path) if mc_path else []) + cf_items(cf_path)
    counts = {v: sum(1 for i in items if i.verdict == v) for v in (HONOURED, DIFFERENT, MISSING)}
    out = [i.line() for i in items]
    out.append(f"{counts[HONOURED]} honoured, {counts[DIFFERENT]} honoured differently, "
               f"{counts[MISSING]} not implemented")
    return "\n".join(out) + "\n", counts[MISSING]
