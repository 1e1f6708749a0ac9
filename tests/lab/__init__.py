"""Tests that need root and network namespaces: other hosts on a veth link from this one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest


def _ip(*args: str) -> int:
    return subprocess.run(["ip", *args], capture_output=True).returncode


def veth_netns(ns: str, dev: str, host_ip: str, ns_ip: str) -> Iterator[str]:
    """Body of a fixture: namespace ns linked to this host by veth pair {dev}0/{dev}1, with
    host_ip/24 on our side and ns_ip/24 inside; skips where namespaces cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    here, there = f"{dev}0", f"{dev}1"
    _ip("link", "del", here)
    _ip("netns", "del", ns)
    steps = [("netns", "add", ns), ("link", "add", here, "type", "veth", "peer", "name", there),
             ("link", "set", there, "netns", ns), ("addr", "add", f"{host_ip}/24", "dev", here),
             ("link", "set", here, "up"),
             ("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", there),
             ("netns", "exec", ns, "ip", "link", "set", there, "up"),
             ("netns", "exec", ns, "ip", "link", "set", "lo", "up")]
    try:
        for step in steps:
            if _ip(*step):
                pytest.skip(f"cannot set up a network namespace here ({' '.join(step)})")
        yield ns
    finally:
        _ip("link", "del", here)
        _ip("netns", "del", ns)
