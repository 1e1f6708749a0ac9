"""The lab's network: one network namespace per host, all on a bridge in a switch namespace, and a
real DNS server (Debian's nsd) in its own namespace serving the lab's zones.

Nothing is created in the machine's own namespace: veth pairs are made with both ends already in
lab namespaces (``lab0`` inside a host, ``lab-NAME`` on the switch).  Each host gets
/etc/netns/NS/resolv.conf (the lab's DNS server) and /etc/netns/NS/hosts (its own name), which
``ip netns exec`` mounts over /etc/resolv.conf and /etc/hosts for whatever runs inside.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

NETNS_ETC = Path("/etc/netns")


def run(*cmd: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def namespaces() -> list[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def add_switch(ns: str) -> None:
    run("ip", "netns", "add", ns)
    run(*in_ns(ns, "ip", "link", "add", "lab-br", "type", "bridge"))
    run(*in_ns(ns, "ip", "link", "set", "lab-br", "up"))


def add_host(switch: str, ns: str, port: str, ip: str, names: list[str], dns_ip: str) -> None:
    """Namespace ns with ip/24 on its lab0, plugged into the switch as port; its resolv.conf and hosts."""
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", "lab0", "netns", ns, "type", "veth", "peer", "name", port, "netns", switch)
    run(*in_ns(switch, "ip", "link", "set", port, "master", "lab-br", "up"))
    for step in (("addr", "add", f"{ip}/24", "dev", "lab0"), ("link", "set", "lab0", "up"),
                 ("link", "set", "lo", "up")):
        run(*in_ns(ns, "ip", *step))
    etc = NETNS_ETC / ns
    etc.mkdir(parents=True)
    (etc / "resolv.conf").write_text(f"nameserver {dns_ip}\nsearch example.test\noptions timeout:2 attempts:2\n")
    (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n{ip}\t{' '.join(names)}\n")


def del_ns(ns: str) -> None:
    run("ip", "netns", "del", ns, check=False)
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


def zone_text(records: list[tuple[str, str, str]], origin: str) -> str:
    head = (f"$ORIGIN {origin}.\n$TTL 60\n@ IN SOA ns.example.test. hostmaster.example.test. "
            "1 3600 600 86400 60\n@ IN NS ns.example.test.\n")
    return head + "".join(f"{name}\tIN {rtype}\t{value}\n" for name, rtype, value in records)


def start_nsd(ns: str, directory: Path, ip: str, zones: dict[str, str]) -> int:
    """Debian's nsd in namespace ns on ip:53 serving zones {origin: zone text}; returns its pid."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = [f"server:\n  ip-address: {ip}\n  port: 53\n  username: \"\"\n  chroot: \"\"\n"
            f"  zonesdir: \"{directory}\"\n  database: \"\"\n  pidfile: \"{directory}/nsd.pid\"\n"
            f"  logfile: \"{directory}/nsd.log\"\n  xfrdfile: \"{directory}/xfrd.state\"\n"
            f"  zonelistfile: \"{directory}/zone.list\"\n  verbosity: 1\n  server-count: 1\n"
            "  hide-version: yes\nremote-control:\n  control-enable: no\n"]
    for origin, text in zones.items():
        (directory / f"{origin}.zone").write_text(text)
        conf.append(f"zone:\n  name: \"{origin}\"\n  zonefile: \"{origin}.zone\"\n")
    (directory / "nsd.conf").write_text("".join(conf))
    run("nsd-checkconf", str(directory / "nsd.conf"))
    run(*in_ns(ns, "nsd", "-c", str(directory / "nsd.conf")))
    pidfile = directory / "nsd.pid"
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            return int(pidfile.read_text().split()[0])
        time.sleep(0.1)
    raise RuntimeError(f"nsd did not start; see {directory}/nsd.log")


def wait_for(pred, seconds: float = 20) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


def stop_pid(pid: int, seconds: float = 15) -> None:
    """SIGTERM a process we started, then SIGKILL it if it is still there after seconds."""
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    end = time.time() + seconds
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


WAIT_PORT = """
import socket, sys, time
end = time.time() + float(sys.argv[3])
while time.time() < end:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
"""


def wait_port(ns: str, ip: str, port: int, seconds: float = 20) -> bool:
    """Wait until something inside namespace ns accepts TCP connections on ip:port."""
    r = run(*in_ns(ns, sys.executable, "-c", WAIT_PORT, ip, str(port), str(seconds)), check=False,
            timeout=seconds + 10)
    return r.returncode == 0
