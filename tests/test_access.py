"""The access map's lookup order and values, on a real hash map built by our makemap."""

import pytest

from mta import access, maps
from mta.config import MapDecl

from .conftest import makemap

ACCESS = b"""# access
Connect:127.0.0.1\tRELAY
Connect:10.1\tREJECT
Connect:10.1.2.3\tOK
Connect:IPv6:2001:db8:1\tRELAY
Connect:spammer.example\tREJECT
Connect:.skipme.example\tSKIP
Connect:skipme.example\tREJECT
From:bad@example.org\tREJECT
From:postmaster@\tOK
From:spam.example\tERROR:"550 We don't accept mail from spammers"
From:tmp.example\tERROR:4.2.2:450 mailbox full
To:granted.example\tRELAY
To:deny.example\tERROR:5.7.1:550 no mail for you
To:user+x@plus.example\tDISCARD
plain.example\tREJECT
ClientRate:\t10
ClientRate:127.0.0.1\t0
GreetPause:slow.example\t5000
Spam:spam@\tFRIEND
From:q.example\tQUARANTINE:held for review
"""


@pytest.fixture(scope="module")
def get(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("acc") / "access")
    assert makemap("hash", path, stdin=ACCESS).returncode == 0
    m = maps.Map(MapDecl("access", "hash", ["-T<TMPF>", "-o"], path))
    return m.lookup


def action(d):
    return None if d is None else d.action


def test_connect_by_name_then_address(get):
    assert action(access.check_connect(get, "mx.spammer.example", "192.0.2.1")) == "REJECT"
    assert action(access.check_connect(get, "localhost", "127.0.0.1")) == "RELAY"
    assert action(access.check_connect(get, "", "10.1.2.3")) == "OK"  # the longest prefix first
    assert action(access.check_connect(get, "", "10.1.9.9")) == "REJECT"
    assert access.check_connect(get, "nobody.example", "192.0.2.9") is None


def test_ipv6_prefixes(get):
    assert access.address_keys("2001:db8:1::5")[:3] == ["IPv6:2001:db8:1::5", "IPv6:2001:db8:1:", "IPv6:2001:db8:1"]
    assert action(access.lookup_address(get, "Connect", "2001:db8:1::5")) == "RELAY"
    assert action(access.lookup_address(get, "Connect", "2001:0db8:0001:0:0:0:0:5")) == "RELAY"
    assert access.lookup_address(get, "Connect", "2001:db8:2::5") is None
    assert access.address_keys("10.1.2.3") == ["10.1.2.3", "10.1.2", "10.1", "10"]


def test_skip_stops_the_search(get):
    assert action(access.lookup_domain(get, "Connect", "skipme.example")) == "REJECT"
    assert access.lookup_domain(get, "Connect", "a.skipme.example") is not None  # parent still tried


def test_from_order_full_user_domain(get):
    assert action(access.lookup_mailbox(get, "From", "bad@example.org")) == "REJECT"
    assert action(access.lookup_mailbox(get, "From", "bad+tag@example.org")) == "REJECT"
    assert action(access.lookup_mailbox(get, "From", "postmaster@anywhere.example")) == "OK"
    d = access.lookup_mailbox(get, "From", "x@mail.spam.example")
    assert (d.action, d.code, d.status, d.text) == ("ERROR", 550, "5.0.0", "We don't accept mail from spammers")
    d = access.lookup_mailbox(get, "From", "x@tmp.example")
    assert (d.action, d.code, d.status, d.text) == ("TEMP", 450, "4.2.2", "mailbox full")
    d = access.lookup_mailbox(get, "From", "x@q.example")
    assert (d.action, d.text) == ("QUARANTINE", "held for review")


def test_to_and_untagged(get):
    assert action(access.lookup_domain(get, "To", "sub.granted.example")) == "RELAY"
    d = access.lookup_domain(get, "To", "deny.example")
    assert (d.code, d.status, d.text) == (550, "5.7.1", "no mail for you")
    assert action(access.lookup_mailbox(get, "To", "user+x@plus.example")) == "DISCARD"
    assert action(access.lookup_domain(get, "To", "www.plain.example")) == "REJECT"  # untagged fallback


def test_tag_only_entries(get):
    assert access.lookup_address(get, "ClientRate", "127.0.0.1").text == "0"
    assert access.lookup_address(get, "ClientRate", "192.0.2.1") is None
    assert get("clientrate:") == "10"  # the default entry
    assert access.lookup_domain(get, "GreetPause", "slow.example").text == "5000"
    assert access.lookup_mailbox(get, "Spam", "spam@x.example").text == "FRIEND"


@pytest.mark.parametrize("value,want", [
    ("OK", ("OK", 0, "")), ("RELAY", ("RELAY", 0, "")), ("REJECT", ("REJECT", 550, "5.7.1")),
    ("DISCARD", ("DISCARD", 0, "")), ("ERROR:550 go away", ("ERROR", 550, "5.0.0")),
    ("ERROR:5.7.1:550 go away", ("ERROR", 550, "5.7.1")), ("ERROR:4.2.2:450 full", ("TEMP", 450, "4.2.2")),
    ("550 old style", ("ERROR", 550, "5.0.0")), ('ERROR:"550 quoted"', ("ERROR", 550, "5.0.0")),
])
def test_values(value, want):
    d = access.parse_value(value)
    assert (d.action, d.code, d.status) == want


def test_relay_domains_class_includes_subdomains():
    assert access.in_class("mx.example.org", {"example.org"})
    assert not access.in_class("example.org.evil", {"example.org"})


ORDER = b"""From:a+*@plus.example\tERROR:5.7.1:550 any detail
From:b+*@\tERROR:5.7.1:550 any detail at any domain
To:[192.0.2]\tRELAY
To:[IPv6:2001:db8]\tRELAY
Connect:[198.51.100.7]\tREJECT
"""


@pytest.fixture(scope="module")
def order(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("acc") / "access")
    assert makemap("hash", path, stdin=ORDER).returncode == 0
    return maps.Map(MapDecl("access", "hash", ["-T<TMPF>", "-o"], path)).lookup


def test_detail_wildcards_as_lookupfull_and_lookupuser(order):
    # proto.m4 F (LookUpFull) and U (LookUpUser): user+detail, user+*, user - at the domain, then user@
    assert access.lookup_mailbox(order, "From", "a+news@plus.example").text == "any detail"
    assert access.lookup_mailbox(order, "From", "a@plus.example") is None
    assert access.lookup_mailbox(order, "From", "b+x@anywhere.example").text == "any detail at any domain"


def test_address_literals_and_their_prefixes(order):
    # proto.m4 D (LookUpDomain): [a.b.c.d], then [a.b.c], [a.b], [a]; IPv6 drops the last group
    assert action(access.lookup_domain(order, "To", "[192.0.2.55]")) == "RELAY"
    assert action(access.lookup_domain(order, "To", "[IPv6:2001:db8::5]")) == "RELAY"
    assert access.lookup_domain(order, "To", "[198.51.100.1]") is None
    # a client without a PTR name is looked up as [address] first (check_relay: D on ${client_name})
    assert action(access.check_connect(order, "", "198.51.100.7")) == "REJECT"
