"""An administrator's day on a fresh Debian 12 root with Debian's sendmail, where our package
(make deb) replaces sendmail-bin: install, the service commands, users' mail, the queue tools,
Debian's own scripts (sendmailconfig, make -C /etc/mail, the cron MSP run) and the way back.

Each test is one step of the day and builds on the ones before (they run in file order).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from tests.system import debian_root

MISSING = debian_root.tools_missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)
DEB_INSIDE = "/root/sendmail-py.deb"
USER = "alice"


@pytest.fixture(scope="module")
def deb():
    out = subprocess.run(["sh", str(debian_root.ROOT / "scripts" / "build-deb")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def root(deb):
    r = debian_root.DebianRoot(debian_root.tarball())
    r.start()
    try:
        shutil.copy(deb, r.path(DEB_INSIDE))
        r.run(f"useradd -m -s /bin/sh {USER}", check=True)
        yield r
    finally:
        r.stop()


def wait_for(pred, seconds: float = 30) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    return bool(pred())


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def cat(root, path: str) -> str:
    """A file as seen inside the root's mount namespace (/run, /tmp and /proc are its own)."""
    return root.run(f"cat {path} 2>/dev/null").stdout.decode(errors="replace")


def daemon_pid(root) -> int:
    text = cat(root, "/run/sendmail/mta/sendmail.pid")
    return int(text.split()[0]) if text.split() else 0


def mta_daemons(root) -> list[int]:
    """The sendmail-mta processes not started by another (the daemon, not its workers)."""
    rows = [line.split() for line in root.run("ps -o pid=,ppid= -C sendmail-mta").stdout.decode().splitlines()]
    pids = {int(p) for p, _ in rows}
    return sorted(int(p) for p, pp in rows if int(pp) not in pids)


def mailbox(root, user: str = USER) -> str:
    p = root.path(f"/var/mail/{user}")
    return p.read_text(errors="replace") if p.exists() else ""


def sendmail_bin_paths(root) -> list[str]:
    """Every program path sendmail-bin installs (from its own .deb in apt's cache)."""
    listing = root.run("dpkg-deb -c /var/cache/apt/archives/sendmail-bin_*.deb", check=True).stdout.decode()
    paths = []
    for line in listing.splitlines():
        path = line.split()[5].lstrip(".").split(" -> ")[0]
        if line.startswith("d") or path.startswith(("/usr/share/doc", "/usr/share/bug", "/usr/share/lintian")):
            continue
        paths.append(path)
    return paths


def test_debian_sendmail_runs_before(root):
    assert root.run("dpkg -s sendmail-bin | grep -q 'Status: install ok installed'").returncode == 0
    r = root.run("/etc/init.d/sendmail start")
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: daemon_pid(root) > 0)


def test_install_replaces_sendmail_bin_and_starts_our_daemon(root):
    debian_pid = daemon_pid(root)
    r = root.run(f"apt-get install -y {DEB_INSIDE}")
    assert r.returncode == 0, out(r)
    assert "Removing sendmail-bin" in out(r)
    assert root.run("dpkg -s sendmail-bin 2>/dev/null | grep -q 'ok installed'").returncode != 0
    assert wait_for(lambda: daemon_pid(root) not in (0, debian_pid))
    pid = daemon_pid(root)
    assert root.run(f"test -d /proc/{debian_pid}").returncode != 0
    assert "python3" in root.run(f"readlink /proc/{pid}/exe").stdout.decode()
    lines = cat(root, "/run/sendmail/mta/sendmail.pid").splitlines()
    assert lines == [str(pid), "/usr/sbin/sendmail-mta -Am -L sm-mta -bd -q10m"]
    assert cat(root, f"/proc/{pid}/cmdline").rstrip("\0") == "sendmail: MTA: accepting connections"


def test_every_sendmail_bin_program_is_there_with_its_alternatives(root):
    missing = [p for p in sendmail_bin_paths(root) if root.run(f"test -e {p}").returncode]
    assert missing == [], missing
    for name, target in (("sendmail-mta", "/usr/libexec/sendmail/sendmail"),
                         ("sendmail-msp", "/usr/libexec/sendmail/sendmail"),
                         ("sendmail", "/usr/libexec/sendmail/sendmail"),
                         ("lib.sendmail", "/usr/libexec/sendmail/sendmail"),
                         ("runq", "/usr/share/sendmail/runq"), ("mailq", "/usr/share/sendmail/mailq"),
                         ("newaliases", "/usr/share/sendmail/newaliases")):
        assert root.run(f"readlink /etc/alternatives/{name}").stdout.decode().strip() == target, name
    assert "sendmail-py" in root.run("head -3 /usr/libexec/sendmail/sendmail").stdout.decode()
    for path in ("/usr/sbin/sendmail-mta", "/usr/sbin/sendmail-msp", "/usr/lib/sendmail", "/usr/sbin/runq",
                 "/usr/bin/mailq", "/usr/sbin/newaliases", "/lib/systemd/system/sendmail.service",
                 "/etc/cron.daily/sendmail", "/etc/init.d/sendmail"):
        assert root.run(f"test -x {path} || test -f {path}").returncode == 0, path


def test_man_pages_for_every_command(root):
    for page in ("sendmail", "sendmail-mta", "sendmail-msp", "mailq", "newaliases", "runq", "makemap", "praliases",
                 "editmap", "hoststat", "purgestat", "mailstats", "mail.local", "smrsh", "sendmail-py", "aliases",
                 "mta-verify", "mta-passwd"):
        r = root.run(f"man -w {page}")
        assert r.returncode == 0, (page, out(r))
    r = root.run("for f in $(dpkg -L sendmail-py | grep /man/ | grep -v 'stat.8.gz'); do "
                 "test -f $f || continue; man --warnings -l $f 2>&1 >/dev/null; done")
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), out(r)


def test_queue_directories_keep_debians_owners_and_modes(root):
    r = root.run("stat -c '%U:%G %a %n' /var/spool/mqueue /var/spool/mqueue-client /var/spool/mqueue-drop "
                 "/run/sendmail/mta /run/sendmail/msp", check=True)
    assert out(r).splitlines() == ["smmta:smmsp 2750 /var/spool/mqueue", "smmsp:smmsp 2770 /var/spool/mqueue-client",
                                   "smmsp:smmsp 1733 /var/spool/mqueue-drop", "smmta:smmsp 2755 /run/sendmail/mta",
                                   "smmsp:smmsp 2775 /run/sendmail/msp"]


def test_root_sends_with_mail(root):
    r = root.run(f"echo 'hello from root' | mail -s 'root says hi' {USER}")
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: "Subject: root says hi" in mailbox(root)), root.run("mailq; tail /var/log/mail.log")


def test_status_and_process_names(root):
    r = root.run("/etc/init.d/sendmail status")
    assert r.returncode == 0 and re.search(r"MTA: \d+ /usr/sbin/sendmail-mta -Am -L sm-mta -bd -q10m", out(r)), out(r)
    assert str(daemon_pid(root)) in root.run("pgrep sendmail").stdout.decode().split()
    assert mta_daemons(root) == [daemon_pid(root)]
