"""Queue flush: BENCH_QUEUE (10,000) queued messages delivered to Postfix's smtp-sink on loopback,
by our `sendmail -q` (one runner, and a queue group with one runner per CPU, F=f R=N), by
Debian's own sendmail (`sendmail -q` on an identical copy of the same queue files) and by Postfix
(`postsuper -H ALL; postqueue -f` on a private instance holding the same number of messages), in
the same run; printed as messages per second and ratios.

Needs root and scripts/install-bench-deps (Postfix installed, not started as the system MTA;
Debian's sendmail binary unpacked in /opt/debian-sendmail by install-test-deps).  Debian's
sendmail runs with Debian's generated sendmail.cf (tests/data/debian/sendmail.cf), pointed at
private paths and at the sink as its smart host, in its own UTS namespace with a qualified host
name (it sleeps a minute at start on a host called just "vm").
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import postfix_private  # noqa: E402

from mta import qf, queue
from mta.message import Header, to_bytes
from mta.qf import Entry, Recipient

N = int(os.environ.get("BENCH_QUEUE", "10000"))
ROOT = Path(__file__).resolve().parent.parent
DEBIAN_SENDMAIL = "/opt/debian-sendmail/usr/libexec/sendmail/sendmail"
DEBIAN_MAKEMAP = "/opt/debian-sendmail/usr/libexec/sendmail/makemap"
DEBIAN_CF = ROOT / "tests" / "data" / "debian" / "sendmail.cf"
PF_DIR = "/tmp/sendmail-py-bench-postfix"  # install-bench-deps lists it in alternate_config_directories
BODY = "x" * 1000 + "\n"


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


def build_queue(qdir: str) -> None:
    """N one-recipient entries in Sendmail's qf/df format (what both sendmails read)."""
    os.makedirs(qdir, mode=0o700)
    now = int(time.time()) - 60
    for n in range(N):
        e = Entry(queue.new_id(), ctime=now, priority=31000, sender="<bench@bench.example>",
                  macros={"r": "ESMTP", "_": "localhost [127.0.0.1]"},
                  recipients=[Recipient(f"<user{n}@far.test>", "PFD")],
                  headers=[Header("Received", f"from localhost by bench.example id {n}"),
                           Header("From", "bench@bench.example"), Header("To", f"user{n}@far.test"),
                           Header("Subject", f"flush {n}"), Header("Message-Id", f"<{n}.flush@bench.example>")])
        with open(queue.qf_path(qdir, e.qid, "d"), "wb") as fh:
            fh.write(to_bytes(BODY))
        with open(queue.qf_path(qdir, e.qid), "wb") as fh:
            fh.write(to_bytes(qf.format_entry(e)))


def queued(qdir: str) -> int:
    return sum(1 for n in os.listdir(qdir) if n.startswith("qf"))


def timed(cmd: list[str], qdir: str) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, timeout=3600)
    elapsed = time.perf_counter() - start
    left = queued(qdir)
    if r.returncode or left:
        sys.exit(f"{cmd[0]}: exit {r.returncode}, {left} left in {qdir}\n{r.stdout[-2000:]!r}\n{r.stderr[-2000:]!r}")
    return elapsed


def ours(tmp: str, master: str, sink: int, runners: int) -> float:
    qdir = f"{tmp}/ours{runners}"
    shutil.copytree(master, qdir)
    group = f"Qmqueue, P={qdir}, F=f, R={runners}\n" if runners > 1 else ""
    cf = f"{tmp}/ours{runners}.cf"
    Path(cf).write_text(f"Djbench.example\nDS[127.0.0.1]\nO QueueDirectory={qdir}\nO LogFile={tmp}/ours.log\n"
                        f"O AliasFile={tmp}/aliases\nO MailSpoolDirectory={tmp}\nO QueueLA=1000\n"
                        f"Mrelay, P=[IPC], F=mDFMuXa8, A=TCP $h {sink}\n{group}")
    Path(f"{tmp}/aliases").touch()
    return timed([f"{os.path.dirname(sys.executable)}/sendmail", "-C", cf, "-q"], qdir)


def debian_cf(tmp: str, qdir: str, sink: int) -> str:
    """Debian's generated sendmail.cf, on private paths, relaying everything to the sink."""
    text = DEBIAN_CF.read_text()
    text = re.sub(r"(?m)^DS.*$", "DSrelay:[127.0.0.1]", text)
    text = re.sub(r"(?m)^Fw/etc/mail/local-host-names.*$", "Cwbench.example", text)
    text = re.sub(r"(?m)^O (QueueDirectory|StatusFile|PidFile|TrustedUser|HostStatusDirectory)=.*$", "", text)
    text = re.sub(r"(?m)^Kaccess (.*) /etc/mail/access$", rf"Kaccess \1 {tmp}/access", text)
    text = re.sub(r"(Mrelay,.*?A=TCP \$h)", rf"\g<1> {sink}", text, count=1, flags=re.S)
    Path(f"{tmp}/hosts").write_text("127.0.0.1 far.test\n")
    Path(f"{tmp}/service.switch").write_text("hosts files\naliases files\n")
    Path(f"{tmp}/empty.cf").write_text("")
    subprocess.run([DEBIAN_MAKEMAP, "-C", f"{tmp}/empty.cf", "hash", f"{tmp}/access"], input=b"", check=True)
    text += (f"O QueueDirectory={qdir}\nO PidFile={tmp}/sm.pid\nO HostsFile={tmp}/hosts\n"
             f"O ServiceSwitchFile={tmp}/service.switch\nO QueueLA=1000\nO AliasFile={tmp}/aliases\n")
    cf = f"{tmp}/debian.cf"
    Path(cf).write_text(text)
    return cf


def debian(tmp: str, master: str, sink: int) -> float:
    if not os.path.exists(DEBIAN_SENDMAIL):
        sys.exit("Debian's sendmail is not unpacked: run scripts/install-test-deps as root")
    qdir = f"{tmp}/debian"
    shutil.copytree(master, qdir)
    cf = debian_cf(tmp, qdir, sink)
    return timed(["unshare", "--uts", "sh", "-c",
                  f"hostname bench.example && exec {DEBIAN_SENDMAIL} -C {cf} -qf"], qdir)  # -q alone forks


def _postfix_settings(sink: int) -> dict[str, str]:
    return {"myhostname": "bench.example", "mydestination": "", "relayhost": f"[127.0.0.1]:{sink}",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject",
            "header_checks": f"regexp:{PF_DIR}/etc/hold", "smtp_tls_security_level": "none"}


def _pf_count(*queues: str) -> int:
    return sum(len(files) for q in queues for _root, _dirs, files in os.walk(f"{PF_DIR}/queue/{q}"))


def _inject(port: int) -> None:
    def client(lo: int, hi: int) -> None:
        c = smtplib.SMTP("127.0.0.1", port, timeout=120)
        for n in range(lo, hi):
            c.sendmail("bench@bench.example", [f"user{n}@far.test"],
                       f"From: bench@bench.example\r\nSubject: flush {n}\r\n\r\n{BODY}".encode())
        c.quit()
    step = -(-N // 4)
    threads = [threading.Thread(target=client, args=(i, min(i + step, N))) for i in range(0, N, step)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def postfix(sink: int) -> float:
    """N messages held in a private Postfix (header_checks HOLD), then released and flushed."""
    if not shutil.which("postfix"):
        sys.exit("Postfix is not installed: run scripts/install-bench-deps as root")
    shutil.rmtree(PF_DIR, ignore_errors=True)
    port = free_port()
    postfix_private.layout(Path(PF_DIR), _postfix_settings(sink), listen=f"127.0.0.1:{port}")
    Path(f"{PF_DIR}/etc/hold").write_text("/^Subject: flush/ HOLD\n")
    if subprocess.run(["postfix", "-c", f"{PF_DIR}/etc", "start"]).returncode:
        sys.exit(f"postfix did not start; see {PF_DIR}/maillog")
    try:
        wait_port(port)
        _inject(port)
        for _ in range(1200):
            if _pf_count("hold") >= N:
                break
            time.sleep(0.1)
        start = time.perf_counter()
        subprocess.run(["postsuper", "-c", f"{PF_DIR}/etc", "-H", "ALL"], check=True, capture_output=True)
        subprocess.run(["postqueue", "-c", f"{PF_DIR}/etc", "-f"], check=True)
        while _pf_count("hold", "deferred", "active", "incoming", "maildrop"):
            time.sleep(0.05)
            if time.perf_counter() - start > 3600:
                sys.exit("Postfix did not empty its queue within an hour")
        return time.perf_counter() - start
    finally:
        subprocess.run(["postfix", "-c", f"{PF_DIR}/etc", "stop"], capture_output=True)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (the peers are Postfix and Debian's sendmail)")
    if not shutil.which("smtp-sink"):
        sys.exit("smtp-sink (package postfix) is missing: run scripts/install-bench-deps as root")
    sink_port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "256"])
    tmp = tempfile.mkdtemp(prefix="queue-flush.")
    try:
        wait_port(sink_port)
        master = f"{tmp}/master"
        build_queue(master)
        cpus = os.cpu_count() or 2
        times = {"ours": ours(tmp, master, sink_port, 1),
                 f"ours, {cpus} runners": ours(tmp, master, sink_port, cpus),
                 "Debian sendmail": debian(tmp, master, sink_port), "Postfix": postfix(sink_port)}
    finally:
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    rates = {k: N / v for k, v in times.items()}
    print(f"queue flush, {N} messages to smtp-sink on loopback (messages/s):")
    for name, rate in rates.items():
        print(f"  {name:18} {rate:8.0f}/s  ({times[name]:.1f} s)")
    for ours_name in [k for k in rates if k.startswith("ours")]:
        print(f"  ratio {ours_name} / Debian sendmail {rates[ours_name] / rates['Debian sendmail']:.2f}, "
              f"/ Postfix {rates[ours_name] / rates['Postfix']:.2f}")


if __name__ == "__main__":
    main()
