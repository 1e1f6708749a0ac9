"""mta.smtp.sasl: AUTH PLAIN and LOGIN decoded, alone and through a Session after STARTTLS."""

from __future__ import annotations

import base64

import pytest

from mta import config
from mta.context import Context
from mta.policy import Client
from mta.smtp import sasl
from mta.smtp.session import Action, Session


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def test_plain_with_and_without_an_initial_response():
    assert sasl.start("PLAIN", b64("\0carol\0s3cret")) == sasl.Credentials("carol", "s3cret")
    assert sasl.start("PLAIN", b64("admin\0carol\0s3cret")) == sasl.Credentials("carol", "s3cret")
    for initial in ("", "="):  # "=": an empty initial response (RFC 4954)
        first = sasl.start("PLAIN", initial)
        assert first == sasl.Challenge("", ("PLAIN",))
        assert sasl.step(first.state, b64("\0carol\0pw") + " ") == sasl.Credentials("carol", "pw")


def test_login_asks_for_the_user_then_the_password():
    first = sasl.start("LOGIN", "")
    assert first == sasl.Challenge(b64("Username:"), ("LOGIN",))
    second = sasl.step(first.state, b64("carol"))
    assert second == sasl.Challenge(b64("Password:"), ("LOGIN", "carol"))
    assert sasl.step(second.state, b64("s3cret")) == sasl.Credentials("carol", "s3cret")
    assert sasl.start("LOGIN", b64("carol")) == second  # the user as an initial response


@pytest.mark.parametrize(("state", "line"), [
    (("PLAIN",), "not base64!"), (("PLAIN",), b64("carol\0pw")), (("PLAIN",), b64("a\0b\0c\0d")),
    (("PLAIN",), b64(b"\0carol\0\xff")), (("LOGIN",), "%%%"), (("LOGIN", "carol"), b64(b"\xc3")),
])
def test_what_cannot_be_decoded_is_501(state, line):
    assert sasl.step(state, line) == sasl.Failure(501, "5.5.2", "Cannot decode response")


def test_star_aborts_at_any_step():
    for state in (("PLAIN",), ("LOGIN",), ("LOGIN", "carol")):
        assert sasl.step(state, " * ") == sasl.Failure(501, "5.0.0", "AUTH aborted")


def test_a_session_runs_the_exchange_and_asks_for_the_check(tmp_path):
    cf = tmp_path / "sendmail.cf"
    cf.write_text(f"Djmx.test.example\nO LogFile={tmp_path}/log\nO QueueDirectory={tmp_path}\n")
    ctx = Context.create(config.load(str(cf)))
    s = Session(ctx, Client("192.0.2.7", "client.example", tls="TLSv1.3"), tls_available=True, auth=True)
    assert b"AUTH PLAIN LOGIN" in b"".join(s.receive(b"EHLO c.example\r\n"))
    assert s.receive(b"AUTH LOGIN\r\n") == [b"334 VXNlcm5hbWU6\r\n"]
    assert s.receive(f"{b64('carol')}\r\n".encode()) == [b"334 UGFzc3dvcmQ6\r\n"]
    asked = s.receive(f"{b64('wrong')}\r\nAUTH PLAIN\r\n".encode())
    assert asked == [Action("auth", ("carol", "wrong"))]  # the next command waits for the answer
    assert s.resume(False) == [b"535 5.7.0 authentication failed\r\n", b"334 \r\n"]
    assert s.receive(b"*\r\n") == [b"501 5.0.0 AUTH aborted\r\n"]
    assert s.receive(f"AUTH PLAIN {b64(chr(0) + 'carol' + chr(0) + 's3cret')}\r\n".encode()) == [
        Action("auth", ("carol", "s3cret"))]
    assert s.resume(True) == [b"235 2.0.0 OK Authenticated\r\n"]
    assert s.client.auth == "carol" and s.proto == "ESMTPSA"
    assert s.receive(b"AUTH LOGIN\r\n") == [b"503 5.5.0 Already Authenticated\r\n"]
    assert "AUTH failure (PLAIN/LOGIN): authentication failure, user=carol" in (tmp_path / "log").read_text()
