"""Scale out (scripts/lab_story.scale_out): hosts sharing scale.example.test by equal-preference MX
records take a load from outside between them; one killed mid-run loses nothing it acknowledged."""

from __future__ import annotations

import pytest

from tests.lab.conftest import lab_setup, lab_story, make_lab

N, COUNT, CLIENTS = 3, 150, 6


@pytest.fixture
def story():
    yield from make_lab(lab_setup.topology(scale=N), up=tuple(f"sc{i}" for i in range(1, N + 1)))


def test_load_spreads_and_a_killed_host_loses_nothing(story):
    r = lab_story.scale_out(story, N, COUNT, CLIENTS)
    by_host = {h: list(r["acks"].values()).count(h) for h in ("sc1", "sc2", "sc3")}
    assert r["lost"] == [], r
    assert len(r["acks"]) + r["unsent"] == COUNT and r["unsent"] == 0, r
    before_kill = list(r["acks"].values())[: r["killed_at"]]
    assert before_kill.count("sc2") >= r["killed_at"] // (3 * N), by_host  # the victim took a share while up
    assert all(by_host[h] >= COUNT // (3 * N) for h in ("sc1", "sc3")), by_host  # the others took theirs
    assert r["killed_at"] >= COUNT // 3
    assert sum(r["retries"].values()) >= 1, r  # the killed host's clients went to another MX
    assert set(r["acks"]) <= set().union(*r["delivered"].values())
