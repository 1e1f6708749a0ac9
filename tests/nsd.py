"""A real authoritative DNS server for tests: Debian's nsd serving given zones on an address and port.

    with Nsd({"remote.test": ["@ MX 10 mx1", "mx1 A 127.0.0.1"]}) as dns:
        cf = f"O NameServers={dns.address}"        # 127.0.0.1:PORT

Each zone is its origin and its records in zone-file syntax (names relative to the origin or
absolute); an SOA and an NS record are added.  nsd runs in the foreground (-d) as the current
user, without chroot, database or control socket, from a temporary directory; ``stop()`` ends it
by its pid.  ``nsd_available()`` says whether the package is installed (scripts/install-test-deps).
Works as root or not; in a network namespace, pass that namespace's address and run ``command``
inside it (``ip netns exec NAME ...``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NSD = "/usr/sbin/nsd"


def nsd_available() -> bool:
    return Path(NSD).exists()


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on host."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                t.bind((host, port))
            except OSError:
                continue
            return port


def zone_text(origin: str, records: list[str]) -> str:
    origin = origin.rstrip(".") + "."
    head = (f"$ORIGIN {origin}\n$TTL 60\n@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 60\n"
            f"@ IN NS ns.{origin}\nns IN A 127.0.0.1\n")
    return head + "".join(f"{r}\n" for r in records)


class Nsd:
    def __init__(self, zones: dict[str, list[str]], address: str = "127.0.0.1", port: int = 0,
                 prefix: list[str] | None = None):
        self.host, self.port = address, port or free_udp_port(address)
        self.dir = Path(tempfile.mkdtemp(prefix="smpy-nsd."))
        conf = [f"server:\n  ip-address: {self.host}@{self.port}\n  port: {self.port}\n  username: \"\"\n"
                f"  chroot: \"\"\n  database: \"\"\n  zonesdir: \"{self.dir}\"\n  pidfile: \"{self.dir}/nsd.pid\"\n"
                f"  xfrdfile: \"{self.dir}/xfrd.state\"\n  zonelistfile: \"{self.dir}/zone.list\"\n"
                f"  logfile: \"{self.dir}/nsd.log\"\n  server-count: 1\n  verbosity: 1\n  hide-version: yes\n"
                "remote-control:\n  control-enable: no\n"]
        for origin, records in zones.items():
            name = origin.rstrip(".")
            (self.dir / f"{name}.zone").write_text(zone_text(name, records))
            conf.append(f"zone:\n  name: \"{name}\"\n  zonefile: \"{name}.zone\"\n")
        (self.dir / "nsd.conf").write_text("".join(conf))
        self.proc = subprocess.Popen([*(prefix or []), NSD, "-d", "-c", str(self.dir / "nsd.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not self._answers():
            self.stop()
            raise RuntimeError(f"nsd did not start: {self.log()}")

    @property
    def address(self) -> str:
        """ip:port, as the NameServers option takes it."""
        return f"{self.host}:{self.port}"

    def _answers(self, seconds: float = 15) -> bool:
        import dns.message
        import dns.query

        end = time.time() + seconds
        origin = next(iter(p.stem for p in self.dir.glob("*.zone")), ".")
        while time.time() < end and self.proc.poll() is None:
            try:
                dns.query.udp(dns.message.make_query(origin, "SOA"), self.host, port=self.port, timeout=0.5)
                return True
            except (OSError, dns.exception.Timeout):
                time.sleep(0.1)
        return False

    def log(self) -> str:
        path = self.dir / "nsd.log"
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
        return (path.read_text() if path.exists() else "") + err

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nsd:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
