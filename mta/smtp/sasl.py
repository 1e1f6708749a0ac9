"""AUTH's exchange for the two mechanisms the daemon offers after STARTTLS, PLAIN (RFC 4616) and
LOGIN: the client's base64 lines decoded into a user and a password, with Sendmail's replies for
what cannot be decoded.  No I/O, no checking of the password (mta.smtp.answer does that).

``start(mech, initial)`` begins an exchange and ``step(state, line)`` carries it on; each gives
a ``Challenge`` (send a 334, the client's next line continues ``state``), ``Credentials`` or a
``Failure`` (the reply's code, status and text).
"""

from __future__ import annotations

import base64

from mta.record import record

MECHANISMS = ("PLAIN", "LOGIN")


@record(frozen=True)
class Challenge:
    text: str  # the 334's text: base64 already
    state: tuple  # ("PLAIN",), ("LOGIN",), ("LOGIN", user)


@record(frozen=True)
class Credentials:
    user: str
    password: str


@record(frozen=True)
class Failure:
    code: int
    status: str
    text: str


UNDECODABLE = Failure(501, "5.5.2", "Cannot decode response")
ABORTED = Failure(501, "5.0.0", "AUTH aborted")


def start(mech: str, initial: str) -> Challenge | Credentials | Failure:
    """AUTH mech [initial-response], mech one of MECHANISMS (upper case)."""
    if mech == "PLAIN":
        return _plain(initial) if initial and initial != "=" else Challenge("", ("PLAIN",))
    return _login(("LOGIN",), initial) if initial else Challenge("VXNlcm5hbWU6", ("LOGIN",))  # Username:


def step(state: tuple, line: str) -> Challenge | Credentials | Failure:
    """The client's next line of the exchange in state."""
    line = line.strip()
    if line == "*":
        return ABORTED
    return _plain(line) if state[0] == "PLAIN" else _login(state, line)


def _plain(blob: str) -> Credentials | Failure:
    parts = _decoded(blob)
    if parts is None or len(parts := parts.split("\0")) != 3:
        return UNDECODABLE
    return Credentials(parts[1], parts[2])  # authzid NUL authcid NUL password: authcid logs in


def _login(state: tuple, line: str) -> Challenge | Credentials | Failure:
    value = _decoded(line)
    if value is None:
        return UNDECODABLE
    if len(state) == 1:
        return Challenge("UGFzc3dvcmQ6", ("LOGIN", value))  # Password:
    return Credentials(state[1], value)


def _decoded(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
