"""OpenPGP with python-gnupg: verifying release signatures, and PGP/MIME encryption at delivery.

``verify()`` imports the given key (or uses the given keyring) in an isolated GnuPG home and
checks a detached signature.  It never touches the user's own keyring unless ``keyring`` names
it.  Each outcome has its own exit code (``VERDICTS``).
``encrypt_message()`` wraps a whole message as RFC 3156 multipart/encrypted for one recipient
key: the encrypted part is the original message, byte for byte; the headers that mail readers
need to sort and show the message stay readable outside.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from mta import errors
from mta.record import record

# outcome -> (exit code, what we say)
VERDICTS = {
    "good": (0, "good signature"),
    "bad": (1, "BAD signature: the file does not match the signature (tampered or wrong file)"),
    "no-key": (2, "cannot check: the signing key is not in the given key or keyring"),
    "expired-key": (3, "signature made by an EXPIRED key"),
    "revoked-key": (4, "signature made by a REVOKED key"),
    "expired-sig": (5, "the signature itself has EXPIRED"),
    "untrusted": (6, "good signature from an UNTRUSTED key (use --trust to accept it)"),
    "error": (7, "gpg could not read the signature"),
}

TRUSTED_LEVELS = ("TRUST_FULLY", "TRUST_ULTIMATE")


@record
class Verdict:
    outcome: str
    signer: str = ""
    key_id: str = ""
    fingerprint: str = ""
    signed_at: str = ""
    trust: str = ""

    @property
    def exitcode(self) -> int:
        return VERDICTS[self.outcome][0]

    def report(self, path: str) -> str:
        lines = [f"mta-verify: {path}: {VERDICTS[self.outcome][1]}"]
        for label, value in (("signer", self.signer), ("key ID", self.key_id),
                             ("fingerprint", self.fingerprint), ("signed", self.signed_at),
                             ("trust", self.trust)):
            if value:
                lines.append(f"  {label + ':':<12} {value}")
        return "\n".join(lines)


def _gpg(home: str):
    import gnupg

    if not shutil.which("gpg"):
        raise errors.Unavailable("gpg is not installed (Debian package gnupg)")
    # --no-autostart: no secret key is ever used here (public keys imported, signatures checked,
    # messages encrypted), so no gpg-agent is started: one per encrypted message, else
    return gnupg.GPG(gnupghome=home, options=["--no-autostart"])


def _classify(result, given_key: bool, trust: bool) -> str:
    statuses = {p.get("status") for p in result.problems} | {result.status, getattr(result, "key_status", None)}
    if "signing key was revoked" in statuses:
        return "revoked-key"
    if "signing key has expired" in statuses:
        return "expired-key"
    if "signature expired" in statuses:
        return "expired-sig"
    if "signature bad" in statuses:
        return "bad"
    if "no public key" in statuses:
        return "no-key"
    if not result.valid:
        return "error"
    if given_key or trust or result.trust_text in TRUSTED_LEVELS:
        return "good"
    return "untrusted"


def verify(path: str, sig: str, *, key_file: str | None = None, keyring: str | None = None,
           trust: bool = False) -> Verdict:
    """Check sig (detached) over path with key_file (trusted for this check) or keyring."""
    for p in (path, sig, key_file):
        if p and not os.path.isfile(p):
            raise errors.MTAError(f"{p}: no such file", exitcode=errors.EX_NOINPUT)
    home = keyring or tempfile.mkdtemp(prefix="mta-verify.")
    try:
        os.chmod(home, 0o700)
        gpg = _gpg(home)
        if key_file:
            with open(key_file, "rb") as fh:
                imported = gpg.import_keys(fh.read())
            if not imported.fingerprints:
                raise errors.DataError(f"{key_file}: no OpenPGP public key in it")
        with open(sig, "rb") as fh:
            result = gpg.verify_file(fh, data_filename=path)
        outcome = _classify(result, bool(key_file), trust)
        if outcome == "good" and trust and keyring and result.fingerprint:
            gpg.trust_keys(result.pubkey_fingerprint or result.fingerprint, "TRUST_ULTIMATE")
        when = ""
        if result.sig_timestamp or result.timestamp:
            stamp = int(result.sig_timestamp or result.timestamp)
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
        trust_text = ("explicitly given key (--key)" if key_file else
                      (result.trust_text or "none") + (" (accepted with --trust)" if trust else ""))
        return Verdict(outcome, result.username or "", result.key_id or "",
                       result.pubkey_fingerprint or result.fingerprint or "", when,
                       trust_text if outcome in ("good", "untrusted") else "")
    finally:
        if not keyring:
            shutil.rmtree(home, ignore_errors=True)


# -- encryption at delivery -------------------------------------------------------------------------

READABLE = ("return-path", "received", "date", "from", "sender", "reply-to", "to", "cc", "subject",
            "message-id", "in-reply-to", "references", "x-authentication-warning")


def key_for(map_path: str, recipient: str) -> str | None:
    """The key file for recipient in a PGPKeyMap text map (``recipient  /path/key.asc``)."""
    if not map_path:
        return None
    want = {recipient.lower(), recipient.lower().split("@")[0]}
    try:
        with open(map_path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split(None, 1)
                if len(parts) == 2 and not line.startswith("#") and parts[0].lower() in want:
                    return parts[1].strip()
    except OSError as exc:
        raise errors.TempFail(f"{map_path}: {exc.strerror}") from exc
    return None


def encrypt_message(text: str, key_file: str, boundary_seed: str) -> str:
    """The message as RFC 3156 multipart/encrypted to the key in key_file."""
    from mta.message import from_bytes, parse, to_bytes

    home = tempfile.mkdtemp(prefix="mta-pgp.")
    try:
        gpg = _gpg(home)
        with open(key_file, "rb") as fh:
            imported = gpg.import_keys(fh.read())
        if not imported.fingerprints:
            raise errors.TempFail(f"{key_file}: no OpenPGP public key in it")
        enc = gpg.encrypt(to_bytes(text), imported.fingerprints[0], always_trust=True, armor=True)
        if not enc.ok:
            raise errors.TempFail(f"encryption failed: {enc.status}")
        armored = from_bytes(enc.data)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    msg = parse(text)
    boundary = f"=_pgp_{boundary_seed}"
    outer = "".join(h.render() for h in msg.headers if h.name.lower() in READABLE)
    outer += ("MIME-Version: 1.0\n"
              f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\n\tboundary="{boundary}"\n')
    body = (f"This is an OpenPGP/MIME encrypted message (RFC 3156).\n\n--{boundary}\n"
            "Content-Type: application/pgp-encrypted\nContent-Description: PGP/MIME version identification\n\n"
            f"Version: 1\n\n--{boundary}\n"
            'Content-Type: application/octet-stream; name="encrypted.asc"\n'
            "Content-Description: OpenPGP encrypted message\n"
            'Content-Disposition: inline; filename="encrypted.asc"\n\n'
            f"{armored}\n--{boundary}--\n")
    return outer + "\n" + body
