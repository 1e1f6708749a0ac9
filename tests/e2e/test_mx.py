"""Remote delivery through MX records, with a real DNS server (dnspython) and real SMTP peers."""

import pytest

from tests.conftest import free_port
from tests.dns_server import Server
from tests.smtp_sink import Sink, serve


@pytest.fixture
def world(inst):
    """remote.test: MX 10 mx1 (127.0.0.5, nothing listens), MX 20 mx2 (127.0.0.1, a sink);
    gone.test: NXDOMAIN; nullmx.test: a null MX; plain.test: no MX, an A record."""
    dns = Server({("remote.test", "MX"): ["10 mx1.remote.test.", "20 mx2.remote.test."],
                  ("mx1.remote.test", "A"): ["127.0.0.5"], ("mx2.remote.test", "A"): ["127.0.0.1"],
                  ("nullmx.test", "MX"): ["0 ."], ("plain.test", "A"): ["127.0.0.1"]})
    sink = Sink()
    port = free_port()
    server = serve(port, sink)
    inst.write_cf(f"O NameServers={dns.address}\nMesmtp, P=[IPC], F=mDFMuXa, A=TCP $h {port}")
    yield sink
    server.shutdown()
    server.server_close()
    dns.close()


def test_mx_preference_and_fallback(inst, world):
    r = inst.run("-Am", "-odi", "someone@remote.test", stdin=b"Subject: via mx\n\nx\n")
    assert r.returncode == 0, r.stdout
    assert len(world.messages) == 1 and world.messages[0].recipients == ["someone@remote.test"]
    assert "relay=mx2.remote.test. [127.0.0.1], dsn=2.0.0, stat=Sent" in inst.log()
    r = inst.run("-Am", "-odi", "x@plain.test", stdin=b"Subject: no mx\n\nx\n")
    assert r.returncode == 0 and len(world.messages) == 2  # no MX: the domain's own address


def test_host_unknown_and_null_mx_bounce(inst, world):
    r = inst.run("-Am", "-odi", "x@gone.test", stdin=b"Subject: nx\n\nx\n")
    assert r.returncode == 68 and b"Host unknown" in r.stdout
    r = inst.run("-Am", "-odi", "x@nullmx.test", stdin=b"Subject: null\n\nx\n")
    assert r.returncode != 0 and b"null MX" in r.stdout
    box = inst.mbox("root").decode()
    assert box.count("Subject: Returned mail: see transcript for details") == 2
    assert "Status: 5.1.2" in box and "Status: 5.1.10" in box and inst.qfs() == []


def test_dns_down_defers(inst, world):
    inst.write_cf("O NameServers=127.0.0.1:9\nMesmtp, P=[IPC], F=mDFMuXa, A=TCP $h 25")
    import mta.dns

    r = inst.run("-Am", "-odi", "x@remote.test", stdin=b"Subject: later\n\nx\n", timeout=mta.dns.LIFETIME + 30)
    assert r.returncode == 0
    assert "(Deferred: remote.test: Name server timeout)" in inst.run("-bp").stdout.decode()
    assert len(inst.qfs()) == 1
