"""The lab as a whole: which hosts there are (the topology), the DNS zones made from it, and the
start and tear-down of everything, recorded in STATE/lab.json so stop and status find it again.

Hosts: ``dns`` (nsd, ns.example.test), ``outside`` (a sender on outside.example.test, our
commands but no daemon), ``st5`` (the primary, MX 10), ``st2`` (MX 20: ours or Postfix), ``st3``
(MX 30, ours: access ``To:st5.example.test RELAY``, a mailertable entry in one variant), and
``sc1``..``scN`` sharing scale.example.test by equal-preference MX records (Maildir mailboxes:
no mbox dotlock for a killed host to leave behind).  Start refuses to
clobber: an existing state directory, namespace or /etc/netns entry of the lab stops it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lab_mta
import lab_net

DEFAULT_NET = "10.251.11"
ZONE = "example.test"
MAILERTABLE = {"st5.example.test": "smtp:mail.st5.example.test", "st2.example.test": "smtp:mail.st2.example.test"}


def topology(net: str = DEFAULT_NET, st2: str = "ours", mailertable: bool = True, scale: int = 0) -> dict:
    def host(name: str, kind: str, last: int, **extra) -> dict:
        return {"name": name, "kind": kind, "ip": f"{net}.{last}", "fqdn": f"mail.{name}.{ZONE}", **extra}
    hosts = [host("dns", "dns", 53, fqdn=f"ns.{ZONE}"),
             host("outside", "client", 100, domains=[f"outside.{ZONE}"]),
             host("st5", "ours", 5, domains=[f"st5.{ZONE}"]),
             host("st2", st2, 2, domains=[f"st2.{ZONE}"], relay_for=[f"st5.{ZONE}"]),
             host("st3", "ours", 3, domains=[f"st3.{ZONE}"], relay_for=[f"st5.{ZONE}", f"st2.{ZONE}"],
                  mailertable=MAILERTABLE if mailertable else {})]
    hosts += [host(f"sc{i}", "ours", 10 + i, domains=[f"scale.{ZONE}"], mailbox_format="maildir")
              for i in range(1, scale + 1)]
    mx = {"st5": [(10, "st5"), (20, "st2"), (30, "st3")], "st2": [(10, "st2"), (20, "st3")],
          "st3": [(10, "st3")], "outside": [(10, "outside")]}
    if scale:
        mx["scale"] = [(10, f"sc{i}") for i in range(1, scale + 1)]
    return {"net": net, "hosts": hosts, "mx": mx}


def zones(topo: dict) -> dict[str, str]:
    forward: list[tuple[str, str, str]] = []
    for domain, targets in topo["mx"].items():
        forward += [(domain, "MX", f"{pref} mail.{name}") for pref, name in targets]
    forward += [(h["fqdn"].removesuffix(f".{ZONE}"), "A", h["ip"]) for h in topo["hosts"]]
    a, b, c = topo["net"].split(".")
    reverse_origin = f"{c}.{b}.{a}.in-addr.arpa"
    reverse = [(h["ip"].rsplit(".", 1)[1], "PTR", h["fqdn"] + ".") for h in topo["hosts"]]
    return {ZONE: lab_net.zone_text(forward, ZONE), reverse_origin: lab_net.zone_text(reverse, reverse_origin)}


class Lab:
    def __init__(self, state: Path, prefix: str = "smpy-lab"):
        self.state, self.prefix = Path(state).resolve(), prefix
        spec = self.state / "lab.json"
        self.topo = json.loads(spec.read_text()) if spec.exists() else {"hosts": [], "mx": {}}
        self.hosts = {h["name"]: lab_mta.Host(self.state, prefix, h) for h in self.topo["hosts"]}

    def __getitem__(self, name: str) -> lab_mta.Host:
        return self.hosts[name]

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def namespaces(self) -> list[str]:
        return [self.switch, *(h.ns for h in self.hosts.values())]

    @classmethod
    def create(cls, state: Path, topo: dict, prefix: str = "smpy-lab", up: tuple[str, ...] | None = None) -> Lab:
        """Build the lab (network, DNS, every host's files) and start the MTAs named in up (all
        when None).  Refuses when any of it is already there; undoes its own work on failure."""
        state = Path(state).resolve()
        if state.exists():
            raise SystemExit(f"lab: {state} exists (a lab is running? `scripts/lab stop` first)")
        taken = [ns for ns in lab_net.namespaces() if ns.startswith(f"{prefix}-")]
        taken += [p.name for p in lab_net.NETNS_ETC.glob(f"{prefix}-*")]
        if taken:
            raise SystemExit(f"lab: network namespaces of {prefix} exist already: {' '.join(sorted(set(taken)))}")
        state.mkdir(parents=True)
        state.chmod(0o755)
        (state / "lab.json").write_text(json.dumps({**topo, "prefix": prefix}, indent=1) + "\n")
        lab = cls(state, prefix)
        try:
            lab._build(up)
        except BaseException:
            lab.destroy()
            raise
        return lab

    def _build(self, up: tuple[str, ...] | None) -> None:
        lab_mta.ensure_users()
        dns = self.hosts["dns"]
        lab_net.add_switch(self.switch)
        for h in self.hosts.values():
            names = [h.fqdn, h.fqdn.split(".")[0]] if h.kind != "dns" else [h.fqdn]
            lab_net.add_host(self.switch, h.ns, f"lab-{h.name}", h.ip, names, dns.ip)
        lab_net.start_nsd(dns.ns, dns.root, dns.ip, zones(self.topo))
        for h in self.hosts.values():
            if h.kind != "dns":
                h.configure()
        for h in self.hosts.values():
            if up is None or h.name in up:
                h.start()

    def destroy(self) -> None:
        """Stop every MTA and nsd, remove the namespaces, their /etc/netns entries and the state."""
        for h in self.hosts.values():
            h.stop()
        nsd_pid = self.state / "dns" / "nsd.pid"
        if nsd_pid.exists() and nsd_pid.read_text().strip():
            lab_net.stop_pid(int(nsd_pid.read_text().split()[0]))
        for ns in self.namespaces():
            lab_net.del_ns(ns)
        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> str:
        lines = [f"lab {self.prefix} in {self.state}"]
        present = set(lab_net.namespaces())
        for h in self.hosts.values():
            if h.kind == "dns":
                running = "nsd" if (h.root / "nsd.pid").exists() else "nsd stopped"
            elif h.kind == "client":
                running = "sender (no daemon)"
            else:
                running = f"{h.kind} MTA pid {h.pid()}" if h.pid() else f"{h.kind} MTA stopped"
            ns = h.ns if h.ns in present else f"{h.ns} (MISSING)"
            lines.append(f"  {h.name:8} {h.ip:15} {h.fqdn:28} {ns:22} {running}")
        return "\n".join(lines)
