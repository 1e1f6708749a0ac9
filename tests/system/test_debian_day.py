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


def pid_lines(root, path: str) -> tuple[int, str]:
    """A Sendmail pid file's pid and command line, (0, "") when there is none."""
    lines = cat(root, path).splitlines()
    return (int(lines[0]), lines[1]) if len(lines) == 2 and lines[0].isdigit() else (0, "")


def daemon_pid(root) -> int:
    return pid_lines(root, "/run/sendmail/mta/sendmail.pid")[0]


def mta_daemons(root) -> list[int]:
    """The sendmail-mta processes not started by another (the daemon, not its workers)."""
    rows = [line.split() for line in root.run("ps -o pid=,ppid=,stat= -C sendmail-mta").stdout.decode().splitlines()]
    rows = [(p, pp) for p, pp, stat in rows if not stat.startswith("Z")]  # not yet reaped by our PID 1
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


PROCMAILRC = "MAILDIR=$HOME/Mail\n:0\n* ^Subject:.*\\[lists\\]\nlists\n"
SMTP_PROBE = """python3 - <<'EOF'
import smtplib
s = smtplib.SMTP('127.0.0.1', 25, timeout=30)
s.ehlo('probe.example.test')
s.mail('root@debian-test.example.test')
code, text = s.rcpt('%s')
print(code, text.decode())
s.quit()
EOF"""


def smtp_rcpt_code(root, rcpt: str) -> int:
    r = root.run(SMTP_PROBE % rcpt)
    print("probe", rcpt, out(r))
    return int(r.stdout.decode().split()[0]) if r.stdout.split() else 0


def test_procmailrc_files_a_message_into_a_folder(root):
    home = root.path(f"/home/{USER}")
    (home / ".procmailrc").write_text(PROCMAILRC)
    root.run(f"chown {USER}: /home/{USER}/.procmailrc && chmod 644 /home/{USER}/.procmailrc && "
             f"install -d -o {USER} -g {USER} -m 700 /home/{USER}/Mail", check=True)
    r = root.run(f"echo 'for the folder' | mail -s '[lists] weekly' {USER}")
    assert r.returncode == 0, out(r)
    folder = home / "Mail" / "lists"
    assert wait_for(lambda: folder.exists() and "Subject: [lists] weekly" in folder.read_text(errors="replace")), (
        root.run("mailq; ls -la /home/alice /home/alice/Mail"), mailbox(root))
    assert "[lists] weekly" not in mailbox(root)


def test_a_user_sends_with_mail(root):
    r = root.run("echo 'hello from alice' | mail -s 'alice says hi' root", user=USER)
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: "Subject: alice says hi" in mailbox(root, "root")), out(
        root.run("ls -la /var/spool/mqueue-drop"))
    box = mailbox(root, "root")
    assert f"From {USER} " in box and f"From: {USER}" in box
    assert root.run("test -r /var/spool/mqueue-client/.", user=USER).returncode != 0  # still smmsp's


def test_mailq_as_root_and_as_a_user_then_runq(root):
    r = root.run(f"echo 'Subject: held' | sendmail -Am -odq {USER}")
    assert r.returncode == 0, out(r)
    as_root = root.run("mailq")
    assert as_root.returncode == 0 and "MTA Queue status..." in out(as_root) and "Total requests: 1" in out(
        as_root), out(as_root)
    qid = re.search(r"^(\w{14})\s+\d+", out(as_root), re.M).group(1)
    as_user = root.run("mailq", user=USER)
    assert as_user.returncode == 0 and qid in out(as_user) and "Total requests: 1" in out(as_user), out(as_user)
    r = root.run("runq")
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: "Subject: held" in mailbox(root))
    assert "Total requests: 1" not in out(root.run("mailq"))


def test_cron_msp_run_delivers_the_msp_queue(root):
    # an entry of the MSP queue as Debian's MSP (RunAsUser=smmsp) leaves it: smmsp's own, also
    # when root wrote it (root's cron mail while the MTA was down)
    r = root.run(f"echo 'Subject: via the MSP queue' | sendmail -Ac -odq {USER}", user="smmsp")
    assert r.returncode == 0, out(r)
    r = root.run(f"echo 'Subject: root via the MSP queue' | sendmail -Ac -odq {USER}")
    assert r.returncode == 0, out(r)
    owners = root.run("stat -c %U:%G /var/spool/mqueue-client/qf* /var/spool/mqueue-client/df*")
    assert set(out(owners).split()) == {"smmsp:smmsp"}, out(owners)
    assert root.run("ls /var/spool/mqueue-client | grep -q '^qf'").returncode == 0
    cron = root.run("grep -h 'cron-msp' /etc/cron.d/sendmail | sed 's/^[^a-z]*smmsp[[:space:]]*//'").stdout.decode()
    assert "/usr/share/sendmail/sendmail cron-msp" in cron, cron
    r = root.run(cron.strip(), user="smmsp")
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: "Subject: via the MSP queue" in mailbox(root) and "Subject: root via" in mailbox(root))
    assert root.run("ls /var/spool/mqueue-client | grep -q '^qf'").returncode != 0


def test_make_etc_mail_and_sendmailconfig_reload(root):
    r = root.run("make -C /etc/mail")
    assert r.returncode == 0, out(r)
    pid = daemon_pid(root)
    root.run("echo newname.example.test >> /etc/mail/local-host-names", check=True)
    r = root.run("yes '' | sendmailconfig", timeout=300)
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: smtp_rcpt_code(root, f"{USER}@newname.example.test") == 250, 20)
    assert daemon_pid(root) == pid  # SIGHUP re-read the config and maps in place


def test_init_script_reload_restart_stop_status(root):
    pid = daemon_pid(root)
    assert root.run("/etc/init.d/sendmail reload").returncode == 0
    assert daemon_pid(root) == pid
    r = root.run("/etc/init.d/sendmail restart")
    assert r.returncode == 0, out(r)
    new = daemon_pid(root)
    assert new and new != pid and root.run(f"test -d /proc/{pid}").returncode != 0
    assert mta_daemons(root) == [new], out(root.run("ps -ef"))
    r = root.run("/etc/init.d/sendmail stop")
    assert r.returncode == 0, out(r)
    assert root.run("pgrep -x sendmail-mta").returncode != 0
    assert not cat(root, "/run/sendmail/mta/sendmail.pid")
    assert root.run("/etc/init.d/sendmail status").returncode == 3


def alive(root, pid: int, name: str) -> bool:
    return bool(pid) and cat(root, f"/proc/{pid}/comm").strip() == name


def test_sendmail_conf_says_which_daemons_run(root):
    """sendmail.conf as Debian's script reads it: QUEUE_PARMS other than DAEMON_PARMS split the
    queue runner off the listener (queue.pid), MSP_MODE=Daemon runs the MSP's as smmsp;
    DAEMON_MODE=None leaves the runner alone; status names each as Debian's does."""
    conf = root.path("/etc/mail/sendmail.conf")
    original = conf.read_text()
    try:
        conf.write_text(original + 'QUEUE_PARMS="-O MaxQueueRunSize=500";\nMSP_MODE="Daemon";\nMSP_INTERVAL="5m";\n')
        r = root.run("/etc/init.d/sendmail start")
        assert r.returncode == 0, out(r)
        mta, mta_cmd = pid_lines(root, "/run/sendmail/mta/sendmail.pid")
        que, que_cmd = pid_lines(root, "/run/sendmail/mta/queue.pid")
        assert wait_for(lambda: pid_lines(root, "/run/sendmail/msp/sendmail.pid")[0] > 0, 10)
        msp, msp_cmd = pid_lines(root, "/run/sendmail/msp/sendmail.pid")
        assert alive(root, mta, "sendmail-mta") and "-bd" in mta_cmd and "-q" not in mta_cmd, mta_cmd
        assert alive(root, que, "sendmail-mta") and "-L sm-que -q10m -O MaxQueueRunSize=500" in que_cmd, que_cmd
        assert alive(root, msp, "sendmail-msp") and "-Ac -L sm-msp -q5m" in msp_cmd, msp_cmd
        assert root.run(f"ps -o user= -p {msp}").stdout.decode().strip() == "smmsp"
        r = root.run("/etc/init.d/sendmail status")
        assert r.returncode == 0, out(r)
        for label, pid in (("MSP", msp), ("MTA", mta), ("QUE", que)):
            assert f"{label}: {pid} " in out(r), out(r)
        assert root.run("/etc/init.d/sendmail reload").returncode == 0
        time.sleep(1)
        assert all(alive(root, pid, name) for pid, name in ((mta, "sendmail-mta"), (que, "sendmail-mta"),
                                                             (msp, "sendmail-msp"))), out(root.run("ps -ef"))
        r = root.run(f"echo 'split daemons' | mail -s 'split daemons' {USER}")
        assert r.returncode == 0 and wait_for(lambda: "Subject: split daemons" in mailbox(root)), out(r)
        r = root.run("/etc/init.d/sendmail stop")
        assert r.returncode == 0, out(r)
        assert not any(alive(root, pid, name) for pid, name in ((mta, "sendmail-mta"), (que, "sendmail-mta"),
                                                                 (msp, "sendmail-msp")))
        assert root.run("/etc/init.d/sendmail status").returncode == 3

        conf.write_text(original + 'DAEMON_MODE="None";\nQUEUE_MODE="Daemon";\n')  # later lines win
        r = root.run("/etc/init.d/sendmail start")
        assert r.returncode == 0, out(r)
        que, que_cmd = pid_lines(root, "/run/sendmail/mta/queue.pid")
        assert alive(root, que, "sendmail-mta") and not pid_lines(root, "/run/sendmail/mta/sendmail.pid")[0]
        assert smtp_rcpt_code(root, f"{USER}@localhost") == 0  # nothing listens
        r = root.run("/etc/init.d/sendmail status")
        assert r.returncode == 0 and "MTA: is disabled" in out(r) and f"QUE: {que} " in out(r), out(r)
        assert "MSP: is run via cron (20m)" in out(r), out(r)
    finally:
        conf.write_text(original)
        root.run("/etc/init.d/sendmail stop")
    r = root.run("/etc/init.d/sendmail start")
    assert r.returncode == 0 and "QUE: Same as MTA" in out(root.run("/etc/init.d/sendmail status")), out(r)
    assert "-bd -q10m" in pid_lines(root, "/run/sendmail/mta/sendmail.pid")[1]
    assert root.run("/etc/init.d/sendmail stop").returncode == 0


def test_a_user_mails_while_the_mta_is_stopped_and_it_is_delivered_after_start(root):
    r = root.run("echo 'queued while down' | mail -s 'while stopped' root", user=USER)
    assert r.returncode == 0, out(r)
    assert root.run("ls /var/spool/mqueue-drop | grep -q '^d'").returncode == 0
    q = root.run("mailq", user=USER)  # Debian's helper script: its exit status is always 0
    assert "Permission denied" in out(q) and "Total requests: 0" not in out(q), out(q)
    q = root.run("sendmail -bp", user=USER)
    assert q.returncode == 77 and "Permission denied" in out(q), out(q)
    r = root.run("/etc/init.d/sendmail start")
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: "Subject: while stopped" in mailbox(root, "root"))
    assert root.run("ls /var/spool/mqueue-drop | grep -q '^d'").returncode != 0


def unit(root) -> dict[str, str]:
    text = root.path("/lib/systemd/system/sendmail.service").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_systemd_unit_semantics(root):
    """What systemd does with the unit, step by step: ExecStartPre, ExecStart (Type=forking:
    the command returns, PIDFile names the daemon), ExecReload with $MAINPID, then SIGTERM."""
    u = unit(root)
    assert u["Type"] == "forking" and u["PIDFile"] == "/run/sendmail/mta/sendmail.pid"
    assert root.run("/etc/init.d/sendmail stop").returncode == 0
    assert root.run(u["ExecStartPre"]).returncode == 0
    conf = root.path("/etc/mail/sendmail.conf")
    original = conf.read_text()
    conf.write_text(original + 'DAEMON_MODE="None";\n')  # the unit's main process is the listener: said
    try:
        r = root.run(u["ExecStart"], timeout=30)
    finally:
        conf.write_text(original)
    assert r.returncode == 1 and "DAEMON_MODE=none in /etc/mail/sendmail.conf" in out(r), out(r)
    assert not daemon_pid(root)
    r = root.run(u["ExecStart"], timeout=30)
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: daemon_pid(root) > 0, 10)
    main = daemon_pid(root)
    assert cat(root, f"/proc/{main}/comm").strip() == "sendmail-mta"
    assert root.run(u["ExecReload"].replace("$MAINPID", str(main))).returncode == 0
    time.sleep(1)
    assert daemon_pid(root) == main and root.run(f"test -d /proc/{main}").returncode == 0
    root.run(f"kill -TERM {main}", check=True)
    # systemd waits TimeoutStopSec for the daemon to finish what it has under way
    assert wait_for(lambda: root.run(f"test -d /proc/{main}").returncode != 0, int(u["TimeoutStopSec"]))
    assert root.run("/etc/init.d/sendmail start").returncode == 0


def test_a_security_update_of_sendmail_bin_cannot_slip_in(root):
    """Conflicts: an upgrade never installs sendmail-bin; asking for it removes us, in words."""
    r = root.run("apt-get -s upgrade")
    assert r.returncode == 0 and "sendmail-bin" not in out(r)
    r = root.run("apt-get -s install sendmail-bin")
    assert "The following packages will be REMOVED:\n  sendmail-py" in out(r), out(r)


def test_reinstall_keeps_the_service(root):
    r = root.run(f"apt-get install -y --reinstall {DEB_INSIDE}")
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: daemon_pid(root) > 0)
    assert root.run("/etc/init.d/sendmail status").returncode == 0
    assert mta_daemons(root) == [daemon_pid(root)]


def test_back_to_sendmail_bin_and_forth_again(root):
    ours = daemon_pid(root)
    r = root.run("apt-get install -y sendmail-bin")
    assert r.returncode == 0, out(r)
    assert "Removing sendmail-py" in out(r) and "conffile" not in out(r).lower(), out(r)
    assert "sendmail-py" not in root.path("/etc/init.d/sendmail").read_text()
    assert root.run(f"test -d /proc/{ours}").returncode != 0
    assert wait_for(lambda: daemon_pid(root) > 0)
    exe = root.run(f"readlink /proc/{daemon_pid(root)}/exe").stdout.decode().strip()
    assert exe == "/usr/libexec/sendmail/sendmail", exe
    r = root.run(f"echo 'under Debian again' | mail -s 'debian again' {USER}")
    assert r.returncode == 0
    assert wait_for(lambda: "Subject: debian again" in mailbox(root) + (
        root.path(f"/home/{USER}/Mail/lists").read_text(errors="replace")
        if root.path(f"/home/{USER}/Mail/lists").exists() else ""), 60)
    debian = daemon_pid(root)
    r = root.run(f"apt-get install -y {DEB_INSIDE}")
    assert r.returncode == 0, out(r)
    assert wait_for(lambda: daemon_pid(root) not in (0, debian))
    assert "python3" in root.run(f"readlink /proc/{daemon_pid(root)}/exe").stdout.decode()
    r = root.run(f"echo 'ours again' | mail -s 'ours again' {USER}")
    assert r.returncode == 0 and wait_for(lambda: "Subject: ours again" in mailbox(root))


def test_check_reports_on_the_live_etc_mail(root):
    r = root.run("sendmail-py check")
    assert r.returncode in (0, 1), out(r)
    assert "/etc/mail/sendmail.mc:" in out(r) and "/etc/mail/sendmail.cf:" in out(r)
    assert re.search(r"^\d+ honoured, \d+ honoured differently, \d+ not implemented$", out(r), re.M)
    d = root.run("sendmail -d0.1 -bv root")
    assert d.returncode == 0 and "(canonical domain name) $j = debian-test.example.test" in out(d), out(d)
