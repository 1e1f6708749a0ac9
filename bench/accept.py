"""Accepting mail, side by side: our daemon, Debian's sendmail 8.17 and Postfix, in the same run.

Every server queues on one file system made as Debian makes one (spool_fs).
Both sendmails run in one Debian 12 root (scripts/debian-root: Debian's sendmail installed, its
/etc/mail as apt left it) and read Debian's unmodified sendmail.cf, queue-only (-odq), each in
its own PID, mount, UTS and network namespaces; Postfix runs as a private instance (its smtpd,
cleanup and queue manager, delivering to discard) in a network namespace of its own.  The load
is Postfix's smtp-source: persistent connections (-d), 2000-byte messages, 1, 20 and 100
concurrent sessions.  Every server fsyncs each message before its 250.

Rounds alternate the servers (ours, Debian, Postfix, ours, ...); each figure is the median of
the rounds, with its spread.  Server CPU is the cpuacct cgroup of the server's whole process
tree, divided by the messages accepted; journal commits are the spool file system's
(/proc/fs/jbd2), divided likewise.  Also measured, in the same root: `sendmail -t` wall
and CPU time, `mailq` on 10,000 and 100,000 queued entries (time and peak memory), and the
memory of 1,000 idle SMTP connections (PSS of every server process).

Needs root, scripts/install-bench-deps (Postfix, smtp-source) and scripts/debian-root.
Environment: BENCH_ROUNDS (3), BENCH_MESSAGES (2000 per load), BENCH_QUICK=1 (c20 only, 1 round).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import postfix_private  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("SMPY_CACHE", "/var/cache/sendmail-py"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "2000"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
LOADS = (20,) if QUICK else (1, 20, 100)
CGROUP = Path("/sys/fs/cgroup/cpuacct")
NS = "smpy-bench"
HOSTNAME = "bench.example.test"


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def network_namespace(name: str = NS):
    """A fresh network namespace with its loopback up, for the with block; removed after it."""
    sh("ip", "netns", "del", name, check=False)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


# -- the Debian root ------------------------------------------------------------------------------

def debian_root() -> Path:
    """An unpacked copy of the cached Debian root, made once per tarball."""
    tar = sh("sh", str(HERE / "scripts" / "debian-root")).stdout.strip()
    root = CACHE / ("bench-" + Path(tar).stem)
    # lexists: sendmail-mta is a link to /etc/alternatives/, which exists inside the root only
    if not os.path.lexists(root / "usr" / "sbin" / "sendmail-mta"):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        sh("tar", "-xpf", tar, "-C", str(root), "--numeric-owner")
    (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME} bench\n")
    (root / "etc" / "mailname").write_text(HOSTNAME + "\n")
    (root / "opt" / "sendmail-py").mkdir(parents=True, exist_ok=True)
    return root


SPOOL_FS = CACHE / "bench-spool.ext4"  # the image
SPOOL = Path("/run/smpy-bench-spool")  # where it is mounted


def spool_fs() -> Path:
    """A file system made as Debian makes one (mkfs.ext4's defaults: a journal, data=ordered),
    loop-mounted, for every server's queue.  This VM's root file system has no journal, and an
    ext4 without one checks each free inode it might allocate for a recent deletion
    (fs/ext4/ialloc.c find_inode_bit, recently_deleted): creating a file there cost 40 to 560 us
    of CPU here depending on the block group its directory landed in, which moved from run to
    run.  On the image every server's spool is on the same, ordinary ground."""
    if not SPOOL_FS.exists():
        sh("truncate", "-s", "4G", str(SPOOL_FS))
        sh("mkfs.ext4", "-q", "-F", str(SPOOL_FS))
    SPOOL.mkdir(exist_ok=True)
    if sh("mountpoint", "-q", str(SPOOL), check=False).returncode != 0:
        sh("mount", "-o", "loop", str(SPOOL_FS), str(SPOOL))
    return SPOOL


def root_spool(root: Path) -> Path:
    """The Debian root's queue directory on the bench's file system, owned as Debian's is."""
    q = SPOOL / "mqueue"
    if not q.exists():
        q.mkdir()
        st = os.stat(root / "var" / "spool" / "mqueue")
        os.chown(q, st.st_uid, st.st_gid)
        os.chmod(q, st.st_mode & 0o7777)
    return q


def in_root(root: Path, script: str) -> list[str]:
    """argv running script (sh) chrooted in root, in fresh PID/mount/UTS namespaces in our netns,
    its /var/spool/mqueue on the bench's file system (spool_fs)."""
    setup = (f"mount --make-rprivate / && mount --rbind /dev {root}/dev && mount -t proc proc {root}/proc && "
             f"mount -t tmpfs tmpfs {root}/run && mount --bind {HERE} {root}/opt/sendmail-py && "
             f"mount --bind {root_spool(root)} {root}/var/spool/mqueue && "
             f"hostname {HOSTNAME} && exec chroot {root} /bin/sh -c '{script}'")
    return ["ip", "netns", "exec", NS, "unshare", "--pid", "--fork", "--mount", "--uts", "sh", "-c", setup]


OURS = ("mkdir -p /run/sendmail/mta && cd /opt/sendmail-py && exec env PYTHONPATH=/opt/sendmail-py "
        "python3 -c \"import sys; sys.argv[0] = \\\"sendmail\\\"; from mta.cli import sendmail; sendmail.main()\" ")
DEBIAN = "mkdir -p /run/sendmail/mta && chown smmta:smmsp /run/sendmail/mta && exec /usr/sbin/sendmail-mta "


def fresh_spool(root: Path) -> None:
    q = root_spool(root)
    for name in os.listdir(q):
        with contextlib.suppress(OSError):
            os.unlink(q / name)


# -- measuring ------------------------------------------------------------------------------------

class Server:
    """A server process tree in its own cpuacct cgroup, in the bench network namespace."""

    def __init__(self, name: str, argv: list[str], port: int = 25):
        self.name, self.port = name, port
        self.group = CGROUP / f"smpy-bench-{name}"
        self.group.mkdir(exist_ok=True)
        wrapped = ["sh", "-c", f'echo $$ > {self.group}/cgroup.procs && exec "$@"', "sh", *argv]
        self.proc = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_port(port):
            self.stop()
            sys.exit(f"{name}: nothing listens on port {port}: {self.proc.stderr.read(2000)!r}")

    def cpu_ns(self) -> int:
        return int((self.group / "cpuacct.usage").read_text())

    def pids(self) -> list[int]:
        return [int(p) for p in (self.group / "cgroup.procs").read_text().split()]

    def pss_kb(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as fh:
                total += sum(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        return total

    def stop(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for _ in range(50):
            if not self.pids():
                break
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.group.rmdir()


def wait_port(port: int, seconds: float = 30) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        r = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c",
                            f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).recv(100)"],
                           capture_output=True)
        if r.returncode == 0:
            return True
        time.sleep(0.3)
    return False


def journal_commits() -> int:
    """Commits the spool's file system's journal has made (/proc/fs/jbd2)."""
    dev = os.path.basename(sh("findmnt", "-n", "-o", "SOURCE", str(SPOOL)).stdout.strip())
    with open(f"/proc/fs/jbd2/{dev}-8/info") as fh:
        return int(fh.readline().split()[0])


def load(server: Server, sessions: int, messages: int, rcpt: str) -> tuple[float, float, float]:
    """smtp-source: messages/s accepted, server CPU ms and journal commits per message."""
    commits0, cpu0, t0 = journal_commits(), server.cpu_ns(), time.perf_counter()
    r = subprocess.run(["ip", "netns", "exec", NS, "smtp-source", "-d", "-s", str(sessions), "-m", str(messages),
                        "-l", "2000", "-f", f"sender@{HOSTNAME}", "-t", rcpt, "-M", "client.example.test",
                        f"127.0.0.1:{server.port}"], capture_output=True, text=True, timeout=600)
    elapsed, cpu = time.perf_counter() - t0, server.cpu_ns() - cpu0
    if r.returncode:
        sys.exit(f"smtp-source against {server.name}: {r.stderr.strip()[:300]}")
    return messages / elapsed, cpu / 1e6 / messages, (journal_commits() - commits0) / messages


def idle_memory(server: Server, count: int = 1000) -> float | None:
    """MiB (PSS, all server processes) with count idle connections open, greeted; None when the
    client could not open them all (a connect timed out: then there is no figure to give)."""
    code = (f"import socket, time\nss = [socket.create_connection(('127.0.0.1', {server.port}))"
            f" for _ in range({count})]\nfor s in ss[-20:]: s.settimeout(30); s.recv(200)\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
    client = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", code],
                              stdout=subprocess.PIPE, text=True)
    try:
        if client.stdout.readline() != "ready\n":
            return None
        time.sleep(2)
        return server.pss_kb() / 1024
    finally:
        client.kill()
        client.wait()


# -- the servers ----------------------------------------------------------------------------------

def start_ours(root: Path) -> Server:
    fresh_spool(root)
    return Server("ours", in_root(root, OURS + "-bD -odq"))


def start_debian(root: Path) -> Server:
    fresh_spool(root)
    return Server("debian", in_root(root, DEBIAN + "-bD -odq"))


PF = SPOOL / "postfix"


def start_postfix() -> Server:
    shutil.rmtree(PF, ignore_errors=True)
    postfix_private.layout(PF, {
        "myhostname": HOSTNAME, "mydestination": f"{HOSTNAME}, localhost", "local_recipient_maps": "",
        "local_transport": "discard", "default_transport": "discard",
        "smtpd_recipient_restrictions": "permit_mynetworks, reject", "default_process_limit": "200"})
    return Server("postfix", ["ip", "netns", "exec", NS, "postfix", "-c", f"{PF}/etc", "start-fg"])


# -- the other paths ------------------------------------------------------------------------------

def chroot_cmd(root: Path, script: str, binds: tuple[tuple[Path, str], ...] = ()) -> list[str]:
    mounts = "".join(f"mkdir -p {root}{inside} && mount --bind {outside} {root}{inside} && "
                     for outside, inside in binds)
    setup = (f"mount --make-rprivate / && mount --rbind /dev {root}/dev && mount -t proc proc {root}/proc && "
             f"mount --bind {HERE} {root}/opt/sendmail-py && {mounts}exec chroot {root} /bin/sh -c '{script}'")
    return ["unshare", "--pid", "--fork", "--mount", "sh", "-c", setup]


def fill_queue(qdir: Path, count: int) -> None:
    """count entries in Sendmail's qf/df format, written by our queue module (same bytes either way)."""
    sys.path.insert(0, str(HERE))
    from mta import qf

    qdir.mkdir(parents=True, exist_ok=True)
    have = sum(1 for n in os.listdir(qdir) if n.startswith("qf"))
    now = int(time.time())
    for i in range(have, count):
        qid = f"u{i:07d}B{i % 100000:06d}"[:14]
        entry = qf.Entry(qid=qid, sender="<sender@client.example.test>", ctime=now - i, priority=30000 + i,
                         recipients=[qf.Recipient(addr=f"<user{i % 97}@far.example.test>", flags="PN")],
                         status="Deferred: Connection refused by far.example.test.")
        (qdir / f"qf{qid}").write_text(qf.format_entry(entry))
        (qdir / f"df{qid}").write_text("x" * 2000 + "\n")


# -- the report -----------------------------------------------------------------------------------

def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: the servers run in namespaces and a Debian root")
    for tool in ("smtp-source", "postfix", "mmdebstrap"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/install-bench-deps")
    root = debian_root()
    spool_fs()
    rates: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    commits: dict[tuple[str, int], list[float]] = {}
    memory: dict[str, float | None] = {}
    starters = {"ours": lambda: start_ours(root), "debian": lambda: start_debian(root), "postfix": start_postfix}
    rcpt = {"ours": "root@localhost", "debian": "root@localhost", "postfix": f"anyone@{HOSTNAME}"}
    with network_namespace():
        for rnd in range(1 if QUICK else ROUNDS):
            order = list(starters) if rnd % 2 == 0 else list(reversed(starters))
            for name in order:
                server = starters[name]()
                try:
                    for sessions in LOADS:
                        n = MESSAGES // 4 if sessions == 1 else MESSAGES
                        rate, cpu, per = load(server, sessions, n, rcpt[name])
                        rates.setdefault((name, sessions), []).append(rate)
                        cpus.setdefault((name, sessions), []).append(cpu)
                        commits.setdefault((name, sessions), []).append(per)
                        print(f"round {rnd + 1} {name:8} c{sessions:<3} {rate:7.0f} msg/s  {cpu:.2f} ms CPU/msg"
                              f"  {per:.2f} commits/msg", flush=True)
                    if rnd == 0 and not QUICK:
                        memory[name] = idle_memory(server)
                finally:
                    server.stop()
    print("\n| measure | Debian sendmail | ours | Postfix | ours/Debian | ours/Postfix |\n|---|---|---|---|---|---|")
    for sessions in LOADS:
        m = {n: statistics.median(rates[(n, sessions)]) for n in starters}
        print(f"| accept, {sessions} clients, msg/s | {spread(rates[('debian', sessions)])} | "
              f"{spread(rates[('ours', sessions)])} | {spread(rates[('postfix', sessions)])} | "
              f"{m['ours'] / m['debian']:.2f} | {m['ours'] / m['postfix']:.2f} |")
    for sessions in LOADS:
        c = {n: statistics.median(cpus[(n, sessions)]) for n in starters}
        print(f"| server CPU per message, c{sessions} | {c['debian']:.2f} ms | {c['ours']:.2f} ms | "
              f"{c['postfix']:.2f} ms | {c['ours'] / c['debian']:.2f} | {c['ours'] / c['postfix']:.2f} |")
    for sessions in LOADS:
        j = {n: statistics.median(commits[(n, sessions)]) for n in starters}
        print(f"| journal commits per message, c{sessions} | {j['debian']:.2f} | {j['ours']:.2f} | "
              f"{j['postfix']:.2f} | | |")
    if memory:
        shown = {n: "failed" if m is None else f"{m:.0f}" for n, m in memory.items()}
        ratio = {n: "" if None in (m, memory["ours"]) else f"{memory['ours'] / m:.2f}" for n, m in memory.items()}
        print(f"| 1,000 idle connections, MiB | {shown['debian']} | {shown['ours']} | {shown['postfix']} | "
              f"{ratio['debian']} | {ratio['postfix']} |")
    if QUICK:
        return
    import submit  # bench/submit.py: sendmail -t and mailq, ours and Debian's, in this root

    print("\n".join(submit.measure(root)))


if __name__ == "__main__":
    main()
