"""mta.dns against Debian's nsd: MX order and shuffling, implicit MX, every address, null MX,
dropping hosts at or above our own preference, FallbackMXhost, one answer per run."""

import pytest

from mta import dns, errors
from tests.nsd import Nsd, nsd_available

pytestmark = pytest.mark.skipif(not nsd_available(), reason="needs Debian's nsd (scripts/install-test-deps)")


@pytest.fixture(scope="module")
def ns():
    records = ["@ MX 10 a", "@ MX 20 b", "@ MX 20 c", "@ MX 30 d", "a A 10.0.0.1", "a A 10.0.0.2",
               "a AAAA 2001:db8::1", "plain A 10.0.0.9", "plain AAAA 2001:db8::9", "nullmx MX 0 .",
               "backup MX 10 primary", "backup MX 20 me.example.", "backup MX 30 later",
               "onlyme MX 10 me.example.", "fb MX 10 fbmx"]
    with Nsd({"zone.test": records}) as server:
        yield server.address
    dns.forget()


def test_preference_order_with_equal_preferences_shuffled(ns):
    orders = set()
    for _ in range(30):
        dns.forget()
        hosts = dns.mail_hosts("zone.test", ns)
        assert hosts[0] == "a.zone.test" and hosts[3] == "d.zone.test"
        orders.add(tuple(hosts[1:3]))
    assert orders == {("b.zone.test", "c.zone.test"), ("c.zone.test", "b.zone.test")}


def test_every_address_and_implicit_mx(ns):
    found = dns.addresses("a.zone.test", ns)
    assert sorted(found[:2]) == ["10.0.0.1", "10.0.0.2"] and found[2] == "2001:db8::1"  # IPv4 first
    assert dns.mail_hosts("plain.zone.test", ns) == ["plain.zone.test"]
    assert dns.addresses("plain.zone.test", ns) == ["10.0.0.9", "2001:db8::9"]
    assert dns.mail_hosts("[192.0.2.1]", ns) == ["[192.0.2.1]"] and dns.addresses("[192.0.2.1]") == ["192.0.2.1"]


def test_null_mx_and_nxdomain(ns):
    with pytest.raises(errors.NoHost, match="null MX"):
        dns.mail_hosts("nullmx.zone.test", ns)
    with pytest.raises(errors.NoHost, match="host not found"):
        dns.mail_hosts("nothere.zone.test", ns)


def test_we_are_listed_so_we_and_later_hosts_go(ns):
    mine = {"me.example"}.__contains__
    assert dns.mail_hosts("backup.zone.test", ns, is_local=mine) == ["primary.zone.test"]
    with pytest.raises(errors.ConfigError, match=r"config error: mail loops back to me \(MX problem\?\)") as exc:
        dns.mail_hosts("onlyme.zone.test", ns, is_local=mine)
    assert exc.value.status == "5.3.5"
    # a backup MX names no fallback: it would only send the mail further away
    assert dns.mail_hosts("backup.zone.test", ns, is_local=mine, fallback="[192.0.2.7]") == ["primary.zone.test"]


def test_fallback_mx_comes_last_and_stands_in_for_a_dead_name_server(ns):
    assert dns.mail_hosts("fb.zone.test", ns, fallback="[192.0.2.7]") == ["fbmx.zone.test", "[192.0.2.7]"]
    assert dns.mail_hosts("fb.zone.test", ns, fallback="backup.zone.test") == [  # its own MX hosts
        "fbmx.zone.test", "primary.zone.test", "me.example", "later.zone.test"]
    dns.forget()
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{mute.getsockname()[1]}"
        old, dns.LIFETIME = dns.LIFETIME, 1.0
        try:
            assert dns.mail_hosts("fb.zone.test", dead, fallback="[192.0.2.7]") == ["[192.0.2.7]"]
            with pytest.raises(errors.TempFail, match="Name server timeout"):
                dns.mail_hosts("zone.test", dead)
            # the failure is remembered for the run: no second wait
            import time

            start = time.monotonic()
            with pytest.raises(errors.TempFail):
                dns.mail_hosts("zone.test", dead)
            assert time.monotonic() - start < 0.5
        finally:
            dns.LIFETIME = old
            dns.forget()
