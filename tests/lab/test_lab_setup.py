"""The lab's topology, zones and load client's host order (scripts/lab_setup.py, lab_load.py), and its
refusal to clobber; none of it needs root."""

from __future__ import annotations

import lab_load  # scripts/lab_load.py: tests/lab/conftest.py puts scripts/ on sys.path
import pytest

from tests.lab.conftest import lab_setup


def test_zone_has_the_seeds_mx_records_and_reverse_names():
    topo = lab_setup.topology(scale=3)
    zones = lab_setup.zones(topo)
    forward = zones["example.test"]
    for line in ("st5\tIN MX\t10 mail.st5", "st5\tIN MX\t20 mail.st2", "st5\tIN MX\t30 mail.st3",
                 "mail.st3\tIN A\t10.251.11.3", "scale\tIN MX\t10 mail.sc3"):
        assert line in forward
    assert "3\tIN PTR\tmail.st3.example.test." in zones["11.251.10.in-addr.arpa"]


def test_backup_relays_for_the_primary_and_routes_by_mailertable_in_one_variant():
    st3 = {h["name"]: h for h in lab_setup.topology()["hosts"]}["st3"]
    assert "st5.example.test" in st3["relay_for"]
    assert st3["mailertable"]["st5.example.test"] == "smtp:mail.st5.example.test"
    st3 = {h["name"]: h for h in lab_setup.topology(mailertable=False)["hosts"]}["st3"]
    assert st3["mailertable"] == {}


def test_load_client_orders_by_preference_and_shuffles_ties():
    records = [(20, "b"), (10, "a1"), (10, "a2"), (30, "c")]
    orders = {tuple(lab_load.order(records)) for _ in range(200)}
    assert orders == {("a1", "a2", "b", "c"), ("a2", "a1", "b", "c")}


def test_start_refuses_an_existing_state_directory(tmp_path):
    with pytest.raises(SystemExit, match="exists"):
        lab_setup.Lab.create(tmp_path, lab_setup.topology(), "smpy-labu")
