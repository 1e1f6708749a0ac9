"""The lab's mail hosts: our daemon or Debian's Postfix, each with its own configuration, spool,
mailboxes and log under the lab's state directory, run inside the host's network namespace.

Ours: etc-mail/ rendered as scripts/render_etc.py does (every path under STATE/HOST), then made
this host's: Dj, local-host-names, the MTA listening on port 25 of every address, access
``To:DOMAIN RELAY`` for the domains it is a backup for, mailertable entries when asked; the
maps built with our makemap and newaliases; the daemon started as ``sendmail -bd -C cf``.
Postfix: a private instance (its own config directory, queue and log; chroot off), never the
system MTA, started with ``postfix -c DIR start``.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import re
import signal
import sys
import time
from pathlib import Path

import lab_net
import postfix_private
import render_etc

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
USERS = ("mtaalice", "mtabob")
OUR_COMMANDS = ("sendmail", "mailq", "newaliases", "hoststat", "purgestat", "mailstats", "praliases")


def ensure_users() -> None:
    """The lab's mailbox owners (the test suite's users), created when missing."""
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            lab_net.run("useradd", "-m", "-s", "/bin/sh", user)


class Host:
    """One machine of the lab: spec is its entry in STATE/lab.json."""

    def __init__(self, state: Path, prefix: str, spec: dict):
        self.spec = spec
        self.name, self.kind, self.ip, self.fqdn = spec["name"], spec["kind"], spec["ip"], spec["fqdn"]
        self.ns = f"{prefix}-{self.name}"
        self.root = state / self.name
        self.etc = self.root / "etc-mail"
        self.cf = self.etc / "sendmail.cf"
        self.logfile = self.root / "log" / "maillog"
        self.mail = self.root / "mail"
        self.queue = self.root / ("postfix/queue" if self.kind == "postfix" else "spool/mqueue")
        self.pf_etc = self.root / "postfix" / "etc"

    def cmd(self, *argv: str) -> list[str]:
        """argv run inside this host: its network namespace, and a UTS namespace of its own
        named after it (so log lines say which host wrote them).  Our commands get its -C."""
        if self.kind != "postfix" and argv and argv[0] in OUR_COMMANDS:
            argv = (str(BIN / argv[0]), "-C", str(self.cf), *argv[1:])
        return lab_net.in_ns(self.ns, "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"',
                             self.name, *argv)

    def sh(self, *argv: str, input: str | None = None, timeout: float = 120, check: bool = False):
        return lab_net.run(*self.cmd(*argv), input=input, timeout=timeout, check=check)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def mbox(self, user: str) -> str:
        path = self.mail / user
        return path.read_text(errors="replace") if path.exists() else ""

    # configuration

    def configure(self) -> None:
        self.root.mkdir(parents=True)
        if self.kind == "postfix":
            self._configure_postfix()
        elif self.kind in ("ours", "client"):
            self._configure_ours()

    def _configure_ours(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            render_etc.render(str(ROOT / "etc-mail"), str(self.root))
        names = [self.fqdn, *self.spec.get("domains", [])]
        cf = self.cf.read_text().replace("Port=2525,Addr=127.0.0.1,", "Port=25,Addr=0.0.0.0,")
        cf = cf.replace("MailboxFormat=mbox", f"MailboxFormat={self.spec.get('mailbox_format', 'mbox')}")
        cf = cf.replace("Port=2587,", "Port=587,")
        # as Debian's generated sendmail.cf: no persistent host status, so a queue run started by hand
        # after a peer comes back tries it at once (with it, Timeout.hoststatus=30m would hold it off)
        cf = re.sub(r"(?m)^O HostStatusDirectory=", "#O HostStatusDirectory=", cf)
        cf = cf.replace("V10/Berkeley\n", f"V10/Berkeley\nDj{self.fqdn}\n", 1)
        self.cf.write_text(cf)
        submit = self.etc / "submit.cf"
        submit.write_text(submit.read_text().replace("A=TCP $h 2525\n", "A=TCP $h 25\n")
                          .replace("V10/Berkeley\n", f"V10/Berkeley\nDj{self.fqdn}\n", 1))
        (self.etc / "local-host-names").write_text("localhost\n" + "".join(f"{n}\n" for n in names))
        access = (self.etc / "access").read_text() + "".join(
            f"To:{d}\tRELAY\n" for d in self.spec.get("relay_for", []))
        (self.etc / "access").write_text(access)
        (self.etc / "mailertable").write_text("".join(
            f"{d}\t{route}\n" for d, route in self.spec.get("mailertable", {}).items()))
        for name in ("access", "mailertable", "virtusertable"):
            src = self.etc / name
            lab_net.run(str(BIN / "makemap"), "hash", str(src), input=src.read_text())
        self.sh("newaliases", check=True)

    def _configure_postfix(self) -> None:
        for sub in ("log", "mail"):
            (self.root / sub).mkdir()
        os.chmod(self.mail, 0o1777)
        domains = ", ".join([*self.spec.get("domains", []), self.fqdn, "localhost"])
        postfix_private.layout(self.root / "postfix", {
            "inet_interfaces": "all", "myhostname": self.fqdn, "mydestination": domains,
            "relay_domains": ", ".join(self.spec.get("relay_for", [])),
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "alias_maps": f"hash:{self.pf_etc}/aliases", "alias_database": f"hash:{self.pf_etc}/aliases",
            "mail_spool_directory": str(self.mail), "maillog_file": str(self.logfile),
            "maillog_file_prefixes": str(self.root), "smtp_connect_timeout": "5s"},
            head=f"# Postfix on {self.fqdn}, a private instance of the sendmail-py lab\n")
        (self.pf_etc / "aliases").write_text("postmaster: root\nMAILER-DAEMON: postmaster\n")
        lab_net.run("postalias", "-c", str(self.pf_etc), str(self.pf_etc / "aliases"))

    # the MTA

    def pidfile(self) -> Path:
        return self.queue / "pid" / "master.pid" if self.kind == "postfix" else self.root / "run" / "sendmail.pid"

    def pid(self) -> int:
        try:
            pid = int(self.pidfile().read_text().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return 0

    def start(self) -> None:
        if self.kind == "postfix":
            before = self.log().count("daemon started")
            r = self.sh("postfix", "-c", str(self.pf_etc), "start")
            if r.returncode:
                raise RuntimeError(f"{self.name}: postfix start: exit {r.returncode}: {r.stdout}{r.stderr}{self.log()}")
            ready = self.wait_postfix(before)
        elif self.kind == "ours":
            lab_net.run(*self.cmd("sendmail", "-bd"))  # bound; the pid file comes before it listens
            ready = lab_net.wait_for(self.pid)
        else:
            return
        if not ready:
            raise RuntimeError(f"{self.name}: no MTA on {self.ip}:25; see {self.logfile}")

    def wait_postfix(self, before: int) -> bool:
        """Postfix's master logs 'daemon started' once its listeners are open."""
        return lab_net.wait_for(lambda: self.log().count("daemon started") > before)

    def stop(self, hard: bool = False) -> None:
        """Stop the MTA: SIGTERM (postfix stop), or SIGKILL at once when hard (a crash)."""
        pid = self.pid()
        if not pid:
            return
        if hard:  # the daemon's whole process group (its own session): workers and deliveries too
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        elif self.kind == "postfix":
            lab_net.run(*self.cmd("postfix", "-c", str(self.pf_etc), "stop"), check=False)
        lab_net.stop_pid(pid)
        if self.kind == "postfix":
            self._stop_postfix_children()

    def _stop_postfix_children(self) -> None:
        """Postfix's master takes its children along; wait until its pid file's owner is gone."""
        end = time.time() + 15
        while self.pid() and time.time() < end:
            time.sleep(0.1)
