"""Two mail hosts: ours on this machine (a.test) and another sendmail-py in a network
namespace (b.test, 10.234.0.2), found through MX records served by a DNS server on the link.
A user's mail goes MSP -> MTA a.test -> MX lookup -> SMTP to b.test -> b's mailbox, and the
answer comes back the same way."""

from __future__ import annotations

import mailbox
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import BIN, Instance, wait_for
from tests.dns_server import Server
from tests.lab import veth_netns

NS, HOST_IP, NS_IP = "smpy-labb", "10.234.0.1", "10.234.0.2"


@pytest.fixture(scope="module")
def link():
    yield from veth_netns(NS, "labbv", HOST_IP, NS_IP)


def subjects(path: Path) -> list[str]:
    return [m["Subject"] for m in mailbox.mbox(str(path))] if path.exists() else []


def test_mail_crosses_hosts_by_mx(inst, link):
    dns = Server({("a.test", "MX"): ["10 mx.a.test."], ("mx.a.test", "A"): [HOST_IP],
                  ("b.test", "MX"): ["10 mx.b.test."], ("mx.b.test", "A"): [NS_IP]}, host=HOST_IP)
    b = Instance(Path(tempfile.mkdtemp(prefix="smpy-b.")), 25, host="b.test")
    a_daemon = b_daemon = None
    try:
        # host a: this instance, its MTA on HOST_IP:25 as well, names a.test
        inst.host = "a.test"
        inst.write_cf(f"O NameServers={dns.address}\nO DaemonPortOptions=Port=25,Addr={HOST_IP},Name=MTA-A\n"
                      "Cwa.test")
        b.write_cf(f"O NameServers={dns.address}\nO DaemonPortOptions=Port=25,Addr={NS_IP},Name=MTA-B")
        a_daemon = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-bD"])
        b_daemon = subprocess.Popen(["ip", "netns", "exec", NS, str(BIN / "sendmail"), "-C", str(b.cf), "-bD"])
        assert wait_for(lambda: "starting daemon" in b.log() and "starting daemon" in inst.log())
        # alice on a writes to bob on b, through a's MSP
        r = inst.run("-t", cf=inst.submit, stdin=b"From: mtaalice@a.test\nTo: mtabob@b.test\nSubject: hello b\n\nhi\n")
        assert r.returncode == 0, r.stdout
        assert wait_for(lambda: "hello b" in subjects(b.mail / "mtabob")), inst.log() + b.log()
        assert "relay=mx.b.test. [10.234.0.2], dsn=2.0.0, stat=Sent" in inst.log()
        assert f"proto=ESMTP, daemon=MTA-B, relay=[{HOST_IP}]" in b.log()
        # bob answers from b: b's MTA finds a by MX
        r = b.run("-Am", "-odi", "-f", "mtabob@b.test", "mtaalice@a.test", stdin=b"Subject: hello a\n\nback\n")
        assert r.returncode == 0, r.stdout
        assert wait_for(lambda: "hello a" in subjects(inst.mail / "mtaalice")), inst.log() + b.log()
        # b does not relay for a stranger: a's mail to a third domain through b is refused
        if not shutil.which("swaks"):
            return
        out = subprocess.run(["swaks", "--server", f"{NS_IP}:25", "--to", "x@c.test", "--from", "m@a.test"],
                             capture_output=True, text=True, timeout=60).stdout
        assert "<** 550 5.7.1 <x@c.test>... Relaying denied" in out
    finally:
        for proc in (a_daemon, b_daemon):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        dns.close()
        shutil.rmtree(b.root, ignore_errors=True)
