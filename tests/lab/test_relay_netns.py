"""Relaying seen from another host: a client in a network namespace (10.233.0.2) talks to the
daemon on 10.233.0.1.  Denied by default; granted by To: RELAY, Connect: RELAY, relay-domains
(class R, by domain or by client network) and by SMTP AUTH."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import BIN, makemap
from tests.e2e.test_smtpd import Daemon, certs  # noqa: F401 (fixture)
from tests.lab import veth_netns

NS, HOST_IP, NS_IP = "smpy-labr", "10.233.0.1", "10.233.0.2"


@pytest.fixture(scope="module")
def netns():
    yield from veth_netns(NS, "labrv", HOST_IP, NS_IP)


def outside(port: int, script: str) -> str:
    """Run smtplib code inside the namespace against HOST_IP:port; returns what it printed."""
    code = (f"import smtplib, ssl\nc = smtplib.SMTP({HOST_IP!r}, {port}, timeout=20)\nc.ehlo('outside.example')\n"
            + script)
    r = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    return r.stdout + r.stderr


def start(inst, access: str = "", extra: str = "") -> Daemon:
    (inst.etc / "access").write_text(access)
    assert makemap("hash", str(inst.etc / "access"), stdin=access.encode()).returncode == 0
    inst.write_cf(f"O DaemonPortOptions=Port={inst.port},Addr={HOST_IP},Name=MTA-OUT\n"
                  f"Kaccess hash -T<TMPF> -o {inst.etc}/access\nFR-o {inst.etc}/relay-domains\n{extra}")
    return Daemon(inst)


RCPT = "c.mail('x@outside.example')\nprint(c.rcpt({!r}))\n"


def test_denied_by_default_local_still_accepted(inst, netns):
    d = start(inst)
    try:
        out = outside(inst.port, RCPT.format("victim@elsewhere.example") + RCPT.format("mtaalice@test.example"))
    finally:
        d.stop()
    assert "(550, b'5.7.1 <victim@elsewhere.example>... Relaying denied')" in out
    assert "(250, b'2.1.5 <mtaalice@test.example>... Recipient ok')" in out
    assert (f"ruleset=check_rcpt, arg1=<victim@elsewhere.example>, relay=[{NS_IP}], "
            "reject=550 5.7.1 <victim@elsewhere.example>... Relaying denied") in inst.log()


@pytest.mark.parametrize("how,access,relay_domains,rcpt", [
    ("To: RELAY", "To:granted.example\tRELAY\n", "", "y@granted.example"),
    ("To: RELAY, subdomain", "To:granted.example\tRELAY\n", "", "y@mx.granted.example"),
    ("Connect: RELAY", f"Connect:{NS_IP}\tRELAY\n", "", "y@anywhere.example"),
    ("Connect: network", "Connect:10.233\tRELAY\n", "", "y@anywhere.example"),
    ("relay-domains domain", "", "granted-r.example\n", "y@granted-r.example"),
    ("relay-domains client net", "", "10.233.0\n", "y@anywhere.example"),
])
def test_each_way_of_granting_relay(inst, netns, how, access, relay_domains, rcpt):
    (inst.etc / "relay-domains").write_text(relay_domains)
    d = start(inst, access)
    try:
        out = outside(inst.port, RCPT.format(rcpt) + RCPT.format("z@not-granted.example"))
    finally:
        d.stop()
    assert f"(250, b'2.1.5 <{rcpt}>... Recipient ok')" in out, how
    if how.startswith(("To", "relay-domains domain")):
        assert "(550, b'5.7.1 <z@not-granted.example>... Relaying denied')" in out


def test_access_reject_and_error(inst, netns):
    d = start(inst, "From:spammer.example\tREJECT\nTo:closed.example\tERROR:5.7.1:550 closed for you\n"
                    "Connect:10.233.0.2\tOK\n")
    try:
        out = outside(inst.port, "print(c.mail('a@spammer.example'))\nc.rset()\n" + RCPT.format("b@closed.example"))
    finally:
        d.stop()
    assert "(550, b'5.7.1 <a@spammer.example>... Access denied')" in out
    assert "(550, b'5.7.1 <b@closed.example>... closed for you')" in out


def test_connect_reject(inst, netns):
    d = start(inst, f"Connect:{NS_IP}\tREJECT\n")
    try:
        out = outside(inst.port, "print(c.mail('a@x.example'))\nprint(c.noop())\n")
    finally:
        d.stop()
    assert "(550, b'5.7.1 Access denied')" in out and "(250, b'2.0.0 OK')" in out


def test_authenticated_client_may_relay(inst, netns, certs):  # noqa: F811
    pw = inst.etc / "smtp-passwd"
    subprocess.run([str(BIN / "mta-passwd"), str(pw), "dave"], input=b"pw\n", check=True)
    os.chmod(inst.etc, 0o755)
    d = start(inst, extra=f"O ServerCertFile={certs}/cert.pem\nO ServerKeyFile={certs}/key.pem\n"
                          f"O AuthPasswordFile={pw}")
    try:
        out = outside(inst.port, "ctx = ssl.create_default_context(); ctx.check_hostname = False\n"
                                 "ctx.verify_mode = ssl.CERT_NONE\nc.starttls(context=ctx); c.ehlo('o.example')\n"
                                 "print(c.login('dave', 'pw'))\n" + RCPT.format("y@anywhere.example"))
    finally:
        d.stop()
    assert "(235, b'2.0.0 OK Authenticated')" in out
    assert "(250, b'2.1.5 <y@anywhere.example>... Recipient ok')" in out
