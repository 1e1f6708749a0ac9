"""Shared fixtures: a throw-away instance (cf, submit.cf, spools) and the installed commands."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: a quick pass in the suite; `make fuzz` (HYPOTHESIS_PROFILE=fuzz) runs many more
# examples (docs/security.md).  FUZZ_EXAMPLES sets how many.
settings.register_profile("suite", max_examples=100)
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

DATA = Path(__file__).parent / "data"
BIN = Path(sys.executable).parent
USERS = ("mtaalice", "mtabob")


def wait_for(pred, seconds: float = 20) -> bool:
    """Poll pred until it holds or seconds pass; the last answer decides."""
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


def wait_port(port: int, host: str = "127.0.0.1", seconds: float = 15) -> bool:
    """Wait until something accepts TCP connections on host:port."""
    def accepts() -> bool:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False
    return wait_for(accepts, seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """A whole sendmail-py instance in a temp dir, configured with -C files."""

    def __init__(self, root: Path, port: int, host: str = "test.example"):
        self.root, self.port, self.host = root, port, host
        for sub in ("etc", "mqueue", "mqueue-client", "mail", "log", "out"):
            (root / sub).mkdir()
        os.chmod(root, 0o755)
        os.chmod(root / "mail", 0o1777)
        os.chmod(root / "out", 0o1777)  # prog and file targets run as DefaultUser
        self.etc = root / "etc"
        self.cf = self.etc / "sendmail.cf"
        self.submit = self.etc / "submit.cf"
        self.mail = root / "mail"
        self.mqueue = root / "mqueue"
        self.mqueue_client = root / "mqueue-client"
        self.logfile = root / "log" / "maillog"
        (self.etc / "aliases").write_text(
            "postmaster: root\nMAILER-DAEMON: postmaster\nteam: mtaalice, mtabob\n"
            f"inc: :include:{self.etc}/inc.list\npipe: \"|cat > {root}/out/piped\"\n"
            f"tofile: {root}/out/filed\nloopa: loopb\nloopb: loopa\nowner-team: root\n")
        (self.etc / "inc.list").write_text("# list\nmtaalice\nmtabob\n")
        (self.etc / "local-host-names").write_text(f"localhost\n{host}\n")
        self.write_cf()
        for sub in ("mqueue", "mqueue-client", "log"):  # so other users can submit in tests
            os.chmod(root / sub, 0o1777)

    def write_cf(self, extra: str = "", extra_submit: str = "") -> None:
        # QueueLA/RefuseLA off: on a busy test machine (load average over 8 or 12 per CPU) queue
        # runs would be skipped and connections refused; the load tests set them with -O
        r = self.root
        self.cf.write_text(f"""V10/Berkeley
Dj{self.host}
Cwlocalhost {self.host}
Fw{self.etc}/local-host-names
O QueueDirectory={r}/mqueue
O MSPQueueDirectory={r}/mqueue-client
O AliasFile={self.etc}/aliases
O MailSpoolDirectory={r}/mail
O LogFile={self.logfile}
O DaemonPortOptions=Port={self.port},Addr=127.0.0.1,Name=MTA
O QueueLA=1000
O RefuseLA=0
{extra}
""")
        self.submit.write_text(f"""V10/Berkeley
Dj{self.host}
DZ8.18.1/Submit
D{{MTAHost}}[127.0.0.1]
O QueueDirectory={r}/mqueue-client
O LogFile={self.logfile}
O DeliveryMode=i
O QueueLA=1000
Mrelay, P=[IPC], F=mDFMuXa8k, S=EnvFromSMTP/HdrFromSMTP, R=MasqSMTP, E=\\r\\n, L=2040, A=TCP $h {self.port}
{extra_submit}
""")

    def run(self, *args: str, stdin: bytes = b"", cf: Path | None = None, prog: str = "sendmail",
            env: dict | None = None, timeout: float = 60, user: str = "") -> subprocess.CompletedProcess:
        """Run an installed command against this instance (as another local user, if given)."""
        cmd = [str(BIN / prog), "-C", str(cf or self.cf), *args]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout,
                              env={**os.environ, "TZ": "UTC", **(env or {})})

    def mbox(self, user: str) -> bytes:
        path = self.mail / user
        return path.read_bytes() if path.exists() else b""

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def qfs(self, client: bool = False) -> list[str]:
        return sorted(n for n in os.listdir(self.mqueue_client if client else self.mqueue) if n.startswith("qf"))


@pytest.fixture
def users():
    if os.geteuid() != 0:
        pytest.skip("needs root to create local users")
    for u in USERS:
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", u], check=True)
    return {u: pwd.getpwnam(u) for u in USERS}


@pytest.fixture
def inst(users):
    # outside pytest's 0700 temp dir: programs run as DefaultUser, and tests run as other users
    root = Path(tempfile.mkdtemp(prefix="smpy."))
    yield Instance(root, free_port())
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def no_gpg_agent_left(tmp_path_factory):
    """After the module, stop the gpg-agent of each keyring its tests made under pytest's temporary
    directory, and only those: gpg starts one per keyring it imports into or signs with, and the
    agent lives as long as the directory does (pytest keeps the last three runs')."""
    yield
    for ring in tmp_path_factory.getbasetemp().rglob("pubring.kbx"):
        subprocess.run(["gpgconf", "--homedir", str(ring.parent), "--kill", "gpg-agent"], capture_output=True)


DEBIAN_MAKEMAP = "/opt/debian-sendmail/usr/libexec/sendmail/makemap"


def debian_makemap(*args: str, stdin: bytes = b"", cf: str = "") -> subprocess.CompletedProcess:
    """Debian's own makemap (unpacked by scripts/install-test-deps), with an empty cf."""
    if not os.path.exists(DEBIAN_MAKEMAP):
        pytest.skip("Debian's makemap is not unpacked here (scripts/install-test-deps)")
    if not cf:
        cf = os.path.join(tempfile.gettempdir(), "empty-for-makemap.cf")
        Path(cf).write_text("")
    return subprocess.run([DEBIAN_MAKEMAP, "-C", cf, *args], input=stdin, capture_output=True)


def makemap(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """Our installed makemap."""
    return subprocess.run([str(BIN / "makemap"), *args], input=stdin, capture_output=True)
