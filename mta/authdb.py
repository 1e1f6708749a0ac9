"""SMTP AUTH credentials: a text file of ``user:$pbkdf2-sha256$ROUNDS$SALT$HASH`` lines.

The hash is PBKDF2-HMAC-SHA256 (stdlib hashlib), salt and hash in unpadded base64 as passlib
writes them, so no password is stored in clear.  ``mta-passwd FILE USER`` adds or replaces a
user, reading the password from standard input.  Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys

ROUNDS = 200_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, rounds: int = ROUNDS, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return f"$pbkdf2-sha256${rounds}${_b64(salt)}${_b64(digest)}"


def verify(password: str, stored: str) -> bool:
    try:
        _, scheme, rounds, salt, digest = stored.split("$")
        if scheme != "pbkdf2-sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(rounds))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def check(path: str, user: str, password: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                name, sep, stored = line.strip().partition(":")
                if sep and name == user and not line.startswith("#"):
                    return verify(password, stored)
    except OSError:
        return False
    verify(password, hash_password("x", rounds=ROUNDS, salt=b"0" * 16))  # same time for unknown users
    return False


def main() -> None:
    if len(sys.argv) != 3:
        sys.stderr.write("usage: mta-passwd FILE USER   (the password is read from standard input)\n")
        sys.exit(64)
    path, user = sys.argv[1], sys.argv[2]
    if ":" in user or not user:
        sys.stderr.write("mta-passwd: a user name may not contain ':'\n")
        sys.exit(64)
    password = sys.stdin.readline().rstrip("\n")
    lines = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.partition(":")[0] != user]
    lines.append(f"{user}:{hash_password(password)}")
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.rename(tmp, path)
