"""Addresses and relaying through the real daemon and `sendmail -bv` (issue 8)."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.test_smtpd import Daemon, Raw


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
