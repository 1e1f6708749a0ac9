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
import shutil
import subprocess
import tempfile
from pathlib import Path

from scripts import postfix_private
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
        self.vmail = self.dir / "vmail"
        self.vmail.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(self.vmail, nobody.pw_uid, nobody.pw_gid)
        postfix_private.layout(self.dir, {
            "myhostname": hostname, "mydestination": "",
            "virtual_mailbox_domains": f"{hostname} remote.test", "virtual_mailbox_base": str(self.vmail),
            "virtual_mailbox_maps": "static:box", "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}", "smtpd_banner": "$myhostname ESMTP Postfix",
            "smtputf8_enable": "yes", "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "debug_peer_list": "", "smtpd_tls_security_level": "none", **(extra or {})}, listen=f"127.0.0.1:{port}")
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
