"""mta-verify and PGP/MIME encryption with real gpg and keys made in the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mta import pgp

pytestmark = [pytest.mark.skipif(not shutil.which("gpg"), reason="needs gpg (Debian package gnupg)"),
              pytest.mark.usefixtures("no_gpg_agent_left")]
VERIFY = str(Path(sys.executable).parent / "mta-verify")


class Signer:
    def __init__(self, home: Path, uid: str, expire: str = "never", faked: str = ""):
        self.home, self.uid = home, uid
        home.mkdir(mode=0o700)
        self.faked = faked
        self.gpg("--quick-gen-key", uid, "rsa2048", "sign", expire)
        self.fpr = self.gpg("--with-colons", "--list-keys", uid).stdout.decode().split("fpr:::::::::")[1][:40]

    def gpg(self, *args: str) -> subprocess.CompletedProcess:
        extra = ["--faked-system-time", self.faked] if self.faked else []
        return subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *extra, *args],
                              capture_output=True, env={**os.environ, "GNUPGHOME": str(self.home)}, check=True)

    def export(self, path: Path) -> Path:
        path.write_bytes(self.gpg("--armor", "--export", self.uid).stdout)
        return path

    def sign(self, path: Path) -> Path:
        sig = Path(f"{path}.sig")
        self.gpg("--yes", "--detach-sign", "-o", str(sig), str(path))
        return sig


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return Signer(tmp_path_factory.mktemp("gpg") / "signer", "Release Key <release@example.test>")


@pytest.fixture
def release(tmp_path, signer):
    f = tmp_path / "sendmail-py-0.1.0.tar.gz"
    f.write_bytes(os.urandom(2048))
    return f, signer.sign(f), signer.export(tmp_path / "key.asc")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VERIFY, *args], capture_output=True, text=True)


def test_good_signature(release, signer):
    f, sig, key = release
    r = run(str(f), str(sig), "--key", str(key))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "good signature" in r.stdout and "Release Key <release@example.test>" in r.stdout
    assert signer.fpr in r.stdout and "signed:" in r.stdout and "explicitly given key" in r.stdout


def test_bad_signature_tampered_file(release):
    f, sig, key = release
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    r = run(str(f), str(sig), "--key", str(key))
    assert r.returncode == 1 and "BAD signature" in r.stdout


def test_unknown_key(release, tmp_path):
    f, sig, _key = release
    other = Signer(tmp_path / "other", "Other <other@example.test>")
    r = run(str(f), str(sig), "--key", str(other.export(tmp_path / "other.asc")))
    assert r.returncode == 2 and "not in the given key" in r.stdout


def test_keyring_untrusted_then_trusted(release, tmp_path, signer):
    f, sig, key = release
    ring = tmp_path / "ring"
    ring.mkdir(mode=0o700)
    subprocess.run(["gpg", "--batch", "--import", str(key)], env={**os.environ, "GNUPGHOME": str(ring)},
                   capture_output=True, check=True)
    r = run(str(f), str(sig), "--keyring", str(ring))
    assert r.returncode == 6 and "UNTRUSTED" in r.stdout
    assert run(str(f), str(sig), "--keyring", str(ring), "--trust").returncode == 0
    r = run(str(f), str(sig), "--keyring", str(ring))
    assert r.returncode == 0, r.stdout  # --trust certified the key in that keyring


def test_expired_key(tmp_path):
    old = Signer(tmp_path / "old", "Old <old@example.test>", expire="1d", faked="20200101T000000!")
    f = tmp_path / "f"
    f.write_bytes(b"payload")
    sig = old.sign(f)
    r = run(str(f), str(sig), "--key", str(old.export(tmp_path / "old.asc")))
    assert r.returncode == 3 and "EXPIRED key" in r.stdout


def test_revoked_key(tmp_path):
    s = Signer(tmp_path / "rev", "Revoked <rev@example.test>")
    f = tmp_path / "f"
    f.write_bytes(b"payload")
    sig = s.sign(f)
    cert = (s.home / "openpgp-revocs.d" / f"{s.fpr}.rev").read_text().replace(":-----BEGIN", "-----BEGIN")
    (tmp_path / "rev.asc").write_text(cert)
    s.gpg("--import", str(tmp_path / "rev.asc"))
    r = run(str(f), str(sig), "--key", str(s.export(tmp_path / "revoked.asc")))
    assert r.returncode == 4 and "REVOKED" in r.stdout


def test_usage_and_missing_files(release):
    f, sig, key = release
    assert run().returncode == 64
    assert run(str(f), str(sig)).returncode == 64
    r = run(str(f) + ".nope", str(sig), "--key", str(key))
    assert r.returncode == 66 and "Traceback" not in r.stderr
    assert run(str(f), "--key", str(key)).returncode == 0  # FILE.sig found by itself


def test_isolated_home(release, monkeypatch, tmp_path):
    home = tmp_path / "myhome"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    f, sig, key = release
    assert pgp.verify(str(f), str(sig), key_file=str(key)).outcome == "good"
    assert not (home / "pubring.kbx").exists()


def test_encrypt_message_decrypts_to_original(tmp_path):
    rcpt = Signer(tmp_path / "rcpt", "Alice <alice@example.test>")
    rcpt.gpg("--quick-add-key", rcpt.fpr, "rsa2048", "encr", "never")
    key = rcpt.export(tmp_path / "alice.asc")
    original = "Return-Path: <a@b>\nFrom: a@b\nTo: alice\nSubject: secret\nX-Private: yes\n\nline 1\nline 2\n"
    out = pgp.encrypt_message(original, str(key), "Q1")
    head, _, body = out.partition("\n\n")
    assert "Subject: secret" in head and "X-Private" not in head and "line 1" not in out
    assert 'multipart/encrypted; protocol="application/pgp-encrypted"' in head
    armored = body[body.index("-----BEGIN PGP MESSAGE-----"):body.index("-----END PGP MESSAGE-----") + 25]
    plain = subprocess.run(["gpg", "--batch", "--decrypt"], input=armored.encode(), capture_output=True,
                           env={**os.environ, "GNUPGHOME": str(rcpt.home)}, check=True).stdout
    assert plain.decode() == original


def test_throwaway_keyrings_start_no_agent(tmp_path, monkeypatch, release):
    """Encrypting at delivery and mta-verify import public keys into a keyring made for the
    occasion and never use a secret key: gpg must not start a gpg-agent for it (one process
    more for each encrypted message, left to notice its directory is gone)."""
    homes: list[Path] = []

    def kept_home(prefix: str) -> str:
        homes.append(tmp_path / f"{prefix}{len(homes)}")
        homes[-1].mkdir(mode=0o700)
        return str(homes[-1])

    monkeypatch.setattr(pgp.tempfile, "mkdtemp", kept_home)
    monkeypatch.setattr(pgp.shutil, "rmtree", lambda *a, **k: None)  # keep them, to ask each for its agent
    rcpt = Signer(tmp_path / "rcpt", "Alice <alice@example.test>")
    rcpt.gpg("--quick-add-key", rcpt.fpr, "rsa2048", "encr", "never")
    assert "BEGIN PGP MESSAGE" in pgp.encrypt_message("Subject: s\n\nx\n", str(rcpt.export(tmp_path / "a.asc")), "Q")
    f, sig, key = release
    assert pgp.verify(str(f), str(sig), key_file=str(key)).outcome == "good"
    assert len(homes) == 2
    for home in homes:
        asked = subprocess.run(["gpg-connect-agent", "--no-autostart", "GETINFO pid", "/bye"], capture_output=True,
                               text=True, env={**os.environ, "GNUPGHOME": str(home)})
        assert not asked.stdout.startswith("D "), f"gpg-agent {asked.stdout.split()[1]} runs for {home}"


def test_release_is_signed_and_verifies(tmp_path, signer):
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "GNUPGHOME": str(signer.home), "RELEASE_KEY": "release@example.test"}
    dist = root / "dist"
    r = subprocess.run([sys.executable, str(root / "scripts" / "release.py")], capture_output=True, text=True,
                       env=env, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    key = signer.export(tmp_path / "key.asc")
    signed = [p for p in dist.iterdir() if p.suffix == ".asc"]
    assert any(p.name.endswith(".whl.asc") for p in signed) and any(p.name.endswith(".tar.gz.asc") for p in signed)
    for asc in signed:
        v = run(str(asc)[:-4], str(asc), "--key", str(key))
        assert v.returncode == 0, v.stdout
