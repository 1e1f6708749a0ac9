"""Addresses and relaying through the real daemon and `sendmail -bv` (issue 8)."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.test_smtpd import Daemon, Raw, subjects


class Outside(Raw):
    """A client from 127.0.0.2: not loopback's 127.0.0.1, not one of our addresses, may not relay."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=("127.0.0.2", 0))
        self.file = self.sock.makefile("rb")
        self.greeting = self.read()


@pytest.fixture
def daemon(inst):
    d = Daemon(inst)
    yield d
    d.stop()


def rcpt_replies(client: Raw, rcpts: list[str]) -> list[str]:
    client.cmd("EHLO client.example.test")
    client.cmd("MAIL FROM:<mtabob@test.example>")
    out = [client.cmd(f"RCPT TO:<{r}>").strip() for r in rcpts]
    client.cmd("QUIT")
    return out


def test_quoted_local_part_is_no_open_relay(inst, daemon):
    text = '"someone@elsewhere.example"@test.example'
    assert rcpt_replies(Outside(inst.port), [text]) == [f"550 5.7.1 <{text}>... Relaying denied"]
    assert rcpt_replies(Raw(inst.port), [text]) == [f"550 5.1.1 <{text}>... User unknown"]
    out = inst.run("-bv", text, '"v@elsewhere.example"')
    assert out.stdout.decode().splitlines() == [f"{text}... User unknown", '"v@elsewhere.example"... User unknown']


def test_access_discard_and_quarantine_through_the_daemon(inst):
    from tests.conftest import makemap, wait_for

    access = inst.etc / "access"
    assert makemap("hash", str(access), stdin=b"From:dropme@example.org\tDISCARD\n"
                                              b"From:holdme@example.org\tQUARANTINE:held for review\n").returncode == 0
    inst.write_cf(f"Kaccess hash -T<TMPF> -o {access}\nO DeliveryMode=background")
    d = Daemon(inst)
    try:
        for sender, subject in (("dropme@example.org", "dropped"), ("holdme@example.org", "held"),
                                ("fine@example.org", "fine")):
            c = Raw(inst.port)
            c.cmd("EHLO client.example.test")
            assert c.cmd(f"MAIL FROM:<{sender}>").startswith("250 2.1.0")
            assert c.cmd("RCPT TO:<mtaalice@test.example>").startswith("250 2.1.5")
            assert c.cmd("DATA").startswith("354")
            assert c.cmd(f"Subject: {subject}\r\n\r\nbody\r\n.").startswith("250 2.0.0 ")
            c.cmd("QUIT")
        assert wait_for(lambda: "fine" in subjects(inst, "mtaalice"))
    finally:
        d.stop()
    assert subjects(inst, "mtaalice") == ["fine"]
    log = inst.log()
    assert "ruleset=check_mail, arg1=<dropme@example.org>, relay=localhost [127.0.0.1], discard\n" in log
    assert ": discarded\n" in log
    assert "arg1=<holdme@example.org>, relay=localhost [127.0.0.1], quarantine=held for review\n" in log
    import os

    held = [n for n in os.listdir(inst.mqueue) if n.startswith("hf")]  # a quarantined qf is hf<id>
    assert b"\nqheld for review\n" in (inst.mqueue / held[0]).read_bytes()
    assert len(held) == 1 and b"Subject: held" in (inst.mqueue / held[0]).read_bytes()
