"""sendmail -d0.1 / -d0.4: Sendmail's identity block (mta/identity.py)."""

from __future__ import annotations

import re

from mta import config, identity
from tests.conftest import DATA


def test_debug_level():
    assert identity.debug_level(["0.1"]) == 1
    assert identity.debug_level(["0"]) == 1
    assert identity.debug_level(["0.4", "8.2"]) == 4
    assert identity.debug_level(["0-9.2"]) == 2
    assert identity.debug_level(["21.12"]) == 0
    assert identity.debug_level(["x.y"]) == 0


def test_banner_layout_is_sendmails():
    cfg = config.load(str(DATA / "debian" / "sendmail.cf"))
    cfg.macros.update(j="st5.example.test", w="st5", m="example.test", k="vm")
    text = identity.banner(cfg, 1)
    assert re.match(r"Version 8\.\d+\.\d+\n Compiled with: [A-Z0-9_ =.]+\n(\t\t[A-Z0-9_ =.]+\n)*\n"
                    r"============ SYSTEM IDENTITY \(after readcf\) ============\n"
                    r"      \(short domain name\) \$w = st5\n"
                    r"  \(canonical domain name\) \$j = st5.example.test\n"
                    r"         \(subdomain name\) \$m = example.test\n"
                    r"              \(node name\) \$k = vm\n"
                    r"========================================================\n\n$", text), text
    assert all(len(line.expandtabs(8)) <= 80 for line in text.splitlines())
    deep = identity.banner(cfg, 4)
    assert "Canonical name: st5.example.test\n UUCP nodename: vm\n\ta.k.a.: st5\n\ta.k.a.: vm\n" in deep
    assert "\ta.k.a.: [127.0.0.1]\n" in deep
