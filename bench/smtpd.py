"""Accepted messages per second with 20 concurrent clients: our daemon against Debian's Postfix
smtpd, measured in the same run; and our daemon's memory with 1000 idle connections.

Both servers accept for a local name and queue durably (ours: DeliveryMode=queueonly, so only
acceptance is timed; Postfix: its smtpd + cleanup + queue, delivering to discard).  Needs root
and scripts/install-bench-deps (Postfix installed, not started as the system MTA).
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "20"))
PER_CLIENT = int(os.environ.get("BENCH_MESSAGES", "50"))
IDLE = int(os.environ.get("BENCH_IDLE", "1000"))
PF_DIR = "/tmp/sendmail-py-bench-postfix"
BODY = b"Subject: bench\r\n\r\n" + b"x" * 2000 + b"\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def load(port: int, rcpt: str) -> float:
    """Messages per second accepted with CLIENTS connections sending PER_CLIENT messages each."""
    errors: list[str] = []

    def client() -> None:
        try:
            c = smtplib.SMTP("127.0.0.1", port, timeout=60)
            c.ehlo("bench.client")
            for _ in range(PER_CLIENT):
                c.sendmail("sender@bench.client", [rcpt], BODY)
            c.quit()
        except (OSError, smtplib.SMTPException) as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        sys.exit(f"clients failed: {errors[:3]}")
    return CLIENTS * PER_CLIENT / elapsed


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def ours(tmp: str) -> tuple[float, int, int]:
    bindir = os.path.dirname(sys.executable)
    port = free_port()
    for sub in ("mqueue", "mail"):
        os.makedirs(f"{tmp}/{sub}")
    cf = f"{tmp}/sendmail.cf"
    with open(cf, "w") as fh:
        fh.write(f"Djbench.example\nO QueueDirectory={tmp}/mqueue\nO MailSpoolDirectory={tmp}/mail\n"
                 f"O LogFile={tmp}/maillog\nO DeliveryMode=queueonly\nO AliasFile={tmp}/aliases\n"
                 f"O DaemonPortOptions=Port={port},Addr=127.0.0.1,Name=MTA\n")
    open(f"{tmp}/aliases", "w").close()
    proc = subprocess.Popen([f"{bindir}/sendmail", "-C", cf, "-bD"])
    try:
        wait_port(port)
        rate = load(port, "root@bench.example")
        base = rss_kb(proc.pid)
        idle = []
        for _ in range(IDLE):
            s = socket.create_connection(("127.0.0.1", port))
            idle.append(s)
        for s in idle[-10:]:
            s.recv(200)
        time.sleep(1)
        loaded = rss_kb(proc.pid)
        for s in idle:
            s.close()
        return rate, base, loaded
    finally:
        proc.terminate()
        proc.wait(30)


def postfix() -> float:
    if not shutil.which("postfix"):
        sys.exit("Postfix is not installed: run scripts/install-bench-deps as root")
    shutil.rmtree(PF_DIR, ignore_errors=True)
    for sub in ("etc", "queue", "data"):
        os.makedirs(f"{PF_DIR}/{sub}")
    port = free_port()
    shutil.copy("/etc/postfix/master.cf.proto" if not os.path.exists("/etc/postfix/master.cf")
                else "/etc/postfix/master.cf", f"{PF_DIR}/etc/master.cf")
    with open(f"{PF_DIR}/etc/main.cf", "w") as fh:
        fh.write(f"""queue_directory = {PF_DIR}/queue
data_directory = {PF_DIR}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.example
mydestination = bench.example
local_recipient_maps =
local_transport = discard
default_transport = discard
smtpd_recipient_restrictions = permit_mynetworks, reject
mynetworks = 127.0.0.0/8
compatibility_level = 3.6
maillog_file = {PF_DIR}/maillog
maillog_file_prefixes = /tmp
alias_maps =
alias_database =
""")
    subprocess.run(["postconf", "-c", f"{PF_DIR}/etc", "-F", "*/*/chroot = n"], check=True)
    with open(f"{PF_DIR}/etc/master.cf", "a") as fh:
        fh.write(f"127.0.0.1:{port} inet n - n - - smtpd\n")
    subprocess.run(["postfix", "-c", f"{PF_DIR}/etc", "set-permissions"], capture_output=True)
    pw = pwd.getpwnam("postfix")
    for root, _dirs, _files in os.walk(f"{PF_DIR}/data"):
        os.chown(root, pw.pw_uid, pw.pw_gid)
    if subprocess.run(["postfix", "-c", f"{PF_DIR}/etc", "start"]).returncode:
        sys.exit("postfix did not start; see " + f"{PF_DIR}/maillog")
    try:
        wait_port(port)
        return load(port, "anyone@bench.example")
    finally:
        subprocess.run(["postfix", "-c", f"{PF_DIR}/etc", "stop"], capture_output=True)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (the peer is a Postfix instance)")
    with tempfile.TemporaryDirectory() as tmp:
        rate, base, loaded = ours(tmp)
    peer = postfix()
    print(f"accepted messages/s, {CLIENTS} clients x {PER_CLIENT} messages: ours {rate:.0f}, "
          f"Postfix {peer:.0f}, ratio {rate / peer:.2f}")
    print(f"daemon memory: {base / 1024:.1f} MiB, with {IDLE} idle connections {loaded / 1024:.1f} MiB "
          f"({(loaded - base) / IDLE:.1f} KiB per connection)")


if __name__ == "__main__":
    main()
