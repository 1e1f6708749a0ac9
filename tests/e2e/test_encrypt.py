"""Encryption at delivery: a recipient with a key in PGPKeyMap gets PGP/MIME that gpg decrypts."""

import os
import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.skipif(not shutil.which("gpg"), reason="needs gpg"),
              pytest.mark.usefixtures("no_gpg_agent_left")]


def test_encrypted_delivery(inst, tmp_path):
    home = tmp_path / "alicekeys"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}

    def gpg(*args, **kw):
        return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              capture_output=True, env=env, check=True, **kw)

    gpg("--quick-gen-key", "mtaalice <mtaalice@test.example>", "default", "default", "never")
    key = inst.root / "alice.asc"
    key.write_bytes(gpg("--armor", "--export", "mtaalice@test.example").stdout)
    keymap = inst.etc / "pgp-keys"
    keymap.write_text(f"mtaalice {key}\n")
    inst.write_cf(f"O PGPKeyMap={keymap}")
    msg = b"Subject: for your eyes only\nX-Secret: 42\n\nthe body\nFrom a line\n"
    r = inst.run("-Am", "-odi", "mtaalice", "mtabob", stdin=msg)
    assert r.returncode == 0, r.stdout
    box = inst.mbox("mtaalice").decode()
    head = box.split("\n\n", 1)[0]
    assert "Subject: for your eyes only" in head and "multipart/encrypted" in head
    assert "X-Secret" not in box and "the body" not in box
    armored = box[box.index("-----BEGIN PGP MESSAGE-----"):box.index("-----END PGP MESSAGE-----") + 25]
    plain = gpg("--decrypt", input=armored.encode()).stdout.decode()
    assert plain.startswith("Return-Path: <root>\nReceived: (from root@localhost)\n")
    assert plain.endswith("Subject: for your eyes only\nX-Secret: 42\n\nthe body\nFrom a line\n")
    assert b"X-Secret: 42" in inst.mbox("mtabob")  # no key: delivered as it is
