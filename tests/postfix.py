"""Debian's Postfix as a test peer: a private instance on a loopback port, never the system MTA.

    with Postfix(port, extra={"smtpd_tls_security_level": "may", ...}) as pf:
        ... pf.messages() (what it took, one mbox for every recipient), pf.log() (its maillog)

The instance has its own config, queue and data directories under a temporary directory, accepts
mail for ``peer.test`` (and anything from 127.0.0.0/8) into one mbox through the virtual
mailbox transport, and logs to its own file.  ``postfix -c DIR start``/``stop``; nothing is
chrooted.  Installed (not configured, not started) by scripts/install-test-deps.
"""

from __future__ import annotations

import mailbox
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import wait_for, wait_port

POSTFIX = "/usr/sbin/postfix"


def postfix_available() -> bool:
    if not Path(POSTFIX).exists() or os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return False
    return True


class Postfix:
    def __init__(self, port: int, extra: dict[str, str] | None = None, hostname: str = "peer.test"):
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="smpy-postfix."))
        os.chmod(self.dir, 0o755)
        etc, self.vmail = self.dir / "etc", self.dir / "vmail"
        for sub in ("etc", "spool", "data", "vmail"):
            (self.dir / sub).mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(self.vmail, nobody.pw_uid, nobody.pw_gid)
        os.chown(self.dir / "data", pwd.getpwnam("postfix").pw_uid, -1)
        settings = {
            "compatibility_level": "3.6", "queue_directory": str(self.dir / "spool"),
            "data_directory": str(self.dir / "data"), "mail_owner": "postfix",
            "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "myhostname": hostname,
            "mydestination": "", "mynetworks": "127.0.0.0/8", "maillog_file": str(self.dir / "maillog"),
            "maillog_file_prefixes": str(self.dir),
            "virtual_mailbox_domains": f"{hostname} remote.test", "virtual_mailbox_base": str(self.vmail),
            "virtual_mailbox_maps": "static:box", "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}", "smtpd_banner": "$myhostname ESMTP Postfix",
            "alias_maps": "", "alias_database": "", "biff": "no", "smtputf8_enable": "yes",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "debug_peer_list": "", "smtpd_tls_security_level": "none", **(extra or {})}
        (etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        master = Path("/etc/postfix/master.cf").read_text()
        master = re.sub(r"(?m)^smtp(\s+)inet(\s+\S+\s+\S+\s+)\S+", rf"127.0.0.1:{port}\1inet\2n", master)
        master = re.sub(r"(?m)^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)", r"\1n\2", master)  # nothing chrooted
        (etc / "master.cf").write_text(master)
        started = self._postfix("start")
        if not wait_port(port):
            self.stop()
            raise RuntimeError(f"postfix did not start: {started.stdout!r} {started.stderr!r} {self.log()}")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([POSTFIX, "-c", str(self.dir / "etc"), *args], capture_output=True, timeout=60)

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self) -> list[mailbox.mboxMessage]:
        box = self.vmail / "box"
        return list(mailbox.mbox(str(box))) if box.exists() else []

    def wait_messages(self, count: int, seconds: float = 30) -> list[mailbox.mboxMessage]:
        wait_for(lambda: len(self.messages()) >= count, seconds)
        return self.messages()

    def stop(self) -> None:
        self._postfix("stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postfix:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
