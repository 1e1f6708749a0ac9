"""A fresh Debian 12 root with Debian's sendmail installed, run in its own PID, mount, UTS, IPC
and network namespaces, for the system test.

``DebianRoot.start()`` unpacks the cached tarball (scripts/debian-root builds it once), and
starts the root's PID 1 - a small reaper, so daemons that detach are reaped as under init -
with /proc of the new PID namespace, /dev, and tmpfs /run and /tmp.  ``run()`` enters those
namespaces and the root with nsenter.  Debian's maintainer scripts run
`start-stop-daemon --stop --name sendmail`: in here that sees only the root's own processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
HOSTNAME = "debian-test"
DOMAIN = "example.test"
REAPER = ("import os, time\n"
          "while True:\n"
          "    try:\n"
          "        os.wait()\n"
          "    except ChildProcessError:\n"
          "        time.sleep(0.5)\n")


def tools_missing() -> str:
    """Why this host cannot run the root ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter", "mmdebstrap", "dpkg-deb", "ip", "tar"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/install-test-deps)"
    return ""


def tarball() -> str:
    out = subprocess.run(["sh", str(ROOT / "scripts" / "debian-root")], capture_output=True, text=True,
                         timeout=1200)
    if out.returncode:
        raise RuntimeError(f"scripts/debian-root failed: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


class DebianRoot:
    def __init__(self, tar: str):
        self.tar = tar
        self.dir = Path(tempfile.mkdtemp(prefix="smpy-debian-", dir="/var/tmp"))
        self.holder: subprocess.Popen | None = None
        self.pid = 0

    def start(self) -> None:
        subprocess.run(["tar", "-xf", self.tar, "-C", str(self.dir)], check=True, timeout=300)
        r = self.dir
        (r / "etc" / "hostname").write_text(f"{HOSTNAME}\n")
        (r / "etc" / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}.{DOMAIN} {HOSTNAME}\n")
        # no init runs here: tell invoke-rc.d that services may start and stop, as under init
        policy = r / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 0\n")
        policy.chmod(0o755)
        setup = (f"set -e; mount --make-rprivate /; mount -t proc proc {r}/proc; "
                 f"mount --rbind /dev {r}/dev; mount -t tmpfs -o mode=755 tmpfs {r}/run; "
                 f"mount -t tmpfs -o mode=1777 tmpfs {r}/tmp; ip link set lo up; hostname {HOSTNAME}; "
                 f"exec chroot {r} /usr/bin/python3 -c '{REAPER}'")
        self.holder = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc",
                                        "sh", "-c", setup], start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline and not self.pid:
            children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children")
            try:
                pid = int(children.read_text().split()[0])
                if os.readlink(f"/proc/{pid}/root") == str(r):
                    self.pid = pid
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.1)
        if not self.pid:
            self.stop()
            raise RuntimeError("the Debian root did not start")

    def run(self, command: str, *, user: str = "", timeout: float = 300, check: bool = False,
            stdin: bytes = b"") -> subprocess.CompletedProcess:
        """Run a shell command in the root (as user, with runuser, when given)."""
        if user:
            command = f"runuser -u {user} -- sh -c {shquote(command)}"
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
               "DEBIAN_FRONTEND": "noninteractive", "TERM": "dumb"}
        out = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                              "--", "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                              "/bin/sh", "-c", f"cd /; {command}"],
                             input=stdin, capture_output=True, timeout=timeout)
        if check and out.returncode:
            raise AssertionError(f"{command}: exit {out.returncode}\n{out.stdout.decode()}\n{out.stderr.decode()}")
        return out

    def path(self, inside: str) -> Path:
        return self.dir / inside.lstrip("/")

    def stop(self) -> None:
        if self.holder is not None:
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)  # PID 1 of the namespace: all its processes go
                except ProcessLookupError:
                    pass
            try:
                self.holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.holder.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def shquote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
