"""The esmtp client end to end against real peers: our own daemon (with TLS) and Debian's Postfix."""

from __future__ import annotations

from tests.conftest import wait_for
from tests.e2e.test_smtpd import Daemon, certs, subjects  # noqa: F401  (certs is a fixture)


def test_delivers_to_a_peer_that_offers_starttls(inst, certs):  # noqa: F811
    """The MSP relays to a daemon offering STARTTLS: the client goes into TLS and delivers."""
    inst.write_cf(f"O ServerCertFile={certs}/cert.pem\nO ServerKeyFile={certs}/key.pem")
    d = Daemon(inst)
    try:
        r = inst.run("-v", "mtaalice", cf=inst.submit, stdin=b"Subject: over starttls\n\nx\n")
        assert r.returncode == 0, r.stdout + r.stderr
        assert inst.qfs(client=True) == []
        assert wait_for(lambda: "over starttls" in subjects(inst, "mtaalice"))
        box = inst.mbox("mtaalice").decode()
        assert "with ESMTPS id" in box and "verify=NO" in box, box
    finally:
        d.stop()
