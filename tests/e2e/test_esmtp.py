"""The esmtp client end to end against real peers - Debian's Postfix and our own daemon - with MX
records served by Debian's nsd: pipelining, one connection for many messages, STARTTLS failing
then clear, TLS_Srv, AUTH to a smart host from an authinfo map, backup MX, FallbackMXhost, dead
hosts costing one timeout per run, mail that loops back to us."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, Instance, free_port, makemap, wait_for
from tests.e2e.test_smtpd import Daemon, certs, subjects  # noqa: F401  (certs is a fixture)
from tests.nsd import Nsd, nsd_available
from tests.postfix import Postfix, postfix_available

needs_peers = pytest.mark.skipif(not (nsd_available() and postfix_available()),
                                 reason="needs root and Debian's nsd and postfix (scripts/install-test-deps)")
DEAD = "127.0.0.9"  # nothing listens there: connection refused
SILENT = "127.0.0.7"  # accepts and never greets: a timeout


def _world(inst, records: list[str], port: int, extra: str = "", zone: str = "remote.test"):
    dns = Nsd({zone: records})
    inst.write_cf(f"O NameServers={dns.address}\nO Timeout.initial=3s\nO Timeout.connect=3s\n"
                  f"Mesmtp, P=[IPC], F=mDFMuXa, A=TCP $h {port}\n{extra}")
    return dns


def _queue(inst, rcpts: list[str], subject: str) -> None:
    r = inst.run("-odq", *rcpts, stdin=f"Subject: {subject}\n\nbody of {subject}\n.dot line\n".encode())
    assert r.returncode == 0, r.stdout + r.stderr


def _sessions(log: str) -> list[str]:
    """The sessions in Postfix's log (not wait_port's probe)."""
    return [s for s in re.findall(r"disconnect from localhost\[127\.0\.0\.1\] (.*)", log) if s != "commands=0/0"]


@pytest.fixture
def postfix():
    if not postfix_available():
        pytest.skip("needs root and Debian's postfix (scripts/install-test-deps)")
    port = free_port()
    pf = Postfix(port)
    yield pf
    pf.stop()


def _silent(port: int) -> socket.socket:
    """A host that takes the TCP connection and never says a word."""
    s = socket.socket()
    s.bind((SILENT, port))
    s.listen(50)
    return s


def _connections(silent: socket.socket) -> int:
    """How many connections reached the silent host since last asked (a connection its client
    gave up on waits in the accept queue all the same)."""
    silent.setblocking(False)
    n = 0
    while True:
        try:
            conn, _ = silent.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


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


@needs_peers
def test_one_pipelined_connection_carries_the_whole_run(inst, postfix):
    with _world(inst, ["@ MX 10 mx1", "mx1 A 127.0.0.1"], postfix.port):
        _queue(inst, ["a@remote.test", "b@remote.test"], "first")
        _queue(inst, ["c@remote.test"], "second")
        _queue(inst, ["d@remote.test"], "third")
        r = inst.run("-q", "-X", str(inst.root / "out" / "traffic"))
        assert r.returncode == 0, r.stdout + r.stderr
        got = postfix.wait_messages(4)  # one copy for each recipient
        assert sorted(m["Subject"] for m in got) == ["first", "first", "second", "third"]
        assert "\n.dot line\n" in got[0].get_payload()
        log = postfix.log()
        assert _sessions(log) == ["ehlo=1 mail=3 rcpt=4 data=3 rset=2 quit=1 commands=14"], log
        assert "improper command pipelining" not in log
        traffic = (inst.root / "out" / "traffic").read_text()
        assert traffic.count(">>> EHLO") == 1 and traffic.count(">>> RSET") == 2
        assert inst.qfs() == []
        assert inst.log().count("relay=mx1.remote.test. [127.0.0.1], dsn=2.0.0, stat=Sent") == 3  # one per message


@needs_peers
def test_pipelining_sends_mail_rcpt_data_in_one_write(inst):
    """A peer that logs each read it gets: MAIL, both RCPTs and DATA arrive as one."""
    port, reads = free_port(), []

    def peer():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(1)
            ready.set()
            c, _ = s.accept()
            with c:
                c.sendall(b"220 peer.test ESMTP\r\n")
                c.recv(1000)
                c.sendall(b"250-peer.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                time.sleep(0.3)
                reads.append(c.recv(4000))
                c.sendall(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    data += c.recv(4000)
                reads.append(data)
                c.sendall(b"250 2.0.0 queued\r\n")
                reads.append(c.recv(1000))
                c.sendall(b"221 bye\r\n")

    ready = threading.Event()
    threading.Thread(target=peer, daemon=True).start()
    ready.wait(5)
    with _world(inst, ["@ MX 10 mx1", "mx1 A 127.0.0.1"], port):
        r = inst.run("-odi", "a@remote.test", "b@remote.test", stdin=b"Subject: piped\n\nx\n", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert wait_for(lambda: len(reads) == 3, 10), reads
    assert reads[0] == (b"MAIL From:<root@test.example>\r\n"
                        b"RCPT To:<a@remote.test>\r\nRCPT To:<b@remote.test>\r\nDATA\r\n"), reads
    assert reads[2] == b"QUIT\r\n"


def _hanging_up_peer(port: int, got: list[bytes]) -> threading.Event:
    """A pipelining peer that takes one message per connection and then hangs up without a
    word, as a server whose idle timeout has passed; got: each connection's first command group."""
    ready = threading.Event()

    def serve() -> None:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(4)
            s.settimeout(20)
            ready.set()
            for _ in range(3):
                c, _ = s.accept()
                with c:
                    c.sendall(b"220 peer.test ESMTP\r\n")
                    c.recv(1000)
                    c.sendall(b"250-peer.test\r\n250 PIPELINING\r\n")
                    group = b""
                    while not group.endswith(b"DATA\r\n"):
                        group += c.recv(4000)
                    got.append(group)
                    c.sendall(b"250 ok\r\n" * (group.count(b"\r\n") - 1) + b"354 go\r\n")
                    data = b""
                    while not data.endswith(b"\r\n.\r\n"):
                        data += c.recv(4000)
                    c.sendall(b"250 2.0.0 queued\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return ready


@needs_peers
def test_a_cached_connection_the_peer_closed_costs_nothing(inst):
    """The RSET that checks a cached connection goes out with the next MAIL (one round trip,
    not two); when the peer has hung up meanwhile, the message goes over a new connection."""
    port, got = free_port(), []
    assert _hanging_up_peer(port, got).wait(5)
    with _world(inst, ["@ MX 10 mx1", "mx1 A 127.0.0.1"], port):
        for subject in ("one", "two", "three"):
            _queue(inst, [f"{subject}@remote.test"], subject)
        r = inst.run("-q", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert inst.qfs() == [], inst.run("-bp").stdout
    assert len(got) == 3 and all(g.startswith(b"MAIL From:") for g in got), got  # a new connection each
    assert inst.log().count("stat=Sent") == 3 and "Deferred" not in inst.log()


@needs_peers
def test_starttls_failure_then_clear_delivery_unless_tls_srv_requires_it(inst, certs, tmp_path):  # noqa: F811
    port = free_port()
    only_tls1 = {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": f"{certs}/cert.pem",
                 "smtpd_tls_key_file": f"{certs}/key.pem", "smtpd_tls_protocols": "TLSv1",
                 "smtpd_tls_mandatory_protocols": "TLSv1"}
    with Postfix(port, only_tls1) as pf, _world(inst, ["@ MX 10 mx1", "mx1 A 127.0.0.1"], port):
        r = inst.run("-odi", "-v", "a@remote.test", stdin=b"Subject: clear after tls\n\nx\n", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert b"STARTTLS failed (SOFTWARE); trying mx1.remote.test again without STARTTLS" in r.stdout
        assert [m["Subject"] for m in pf.wait_messages(1)] == ["clear after tls"]
        assert len(_sessions(pf.log())) == 2 and "starttls=0/1" in _sessions(pf.log())[0]
        # TLS required by the access map: the message waits instead
        (inst.etc / "access").write_text("TLS_Srv:mx1.remote.test\tVERIFY\n")
        makemap("hash", str(inst.etc / "access"), stdin=(inst.etc / "access").read_bytes())
        cf = inst.cf.read_text() + f"Kaccess hash -T<TMPF> {inst.etc}/access\n"
        inst.cf.write_text(cf)
        r = inst.run("-odi", "b@remote.test", stdin=b"Subject: tls required\n\nx\n", timeout=60)
        assert r.returncode == 0
        assert "Deferred: 454 TLS handshake failed." in inst.run("-bp").stdout.decode()
        assert len(pf.messages()) == 1


@needs_peers
def test_backup_mx_drops_itself_and_hosts_after_it(inst, postfix):
    # MX 10 is down, MX 20 is us, MX 30 would take it: a backup MX must not go further down
    records = ["@ MX 10 mx1", "@ MX 20 test.example.", "@ MX 30 mx3", f"mx1 A {DEAD}", "mx3 A 127.0.0.1"]
    with _world(inst, records, postfix.port):
        r = inst.run("-odi", "a@remote.test", stdin=b"Subject: backup\n\nx\n", timeout=60)
        assert r.returncode == 0
        assert "Deferred: Connection refused by mx1.remote.test" in inst.run("-bp").stdout.decode()
        time.sleep(0.5)
        assert postfix.messages() == [] and _sessions(postfix.log()) == []


@needs_peers
def test_mx_list_of_only_us_loops_back(inst, postfix):
    with _world(inst, ["@ MX 10 test.example.", "@ MX 20 mx2.other.test."], postfix.port):
        r = inst.run("-odi", "a@remote.test", stdin=b"Subject: only us\n\nx\n", timeout=60)
        assert r.returncode != 0
        assert b"config error: mail loops back to me (MX problem?)" in r.stdout
        assert inst.qfs() == []
        assert "Status: 5.3.5" in inst.mbox("root").decode()


@needs_peers
def test_peer_greeting_with_our_name_is_refused(inst):
    dns = _world(inst, ["@ MX 10 mx1", "mx1 A 127.0.0.1"], inst.port)
    d = Daemon(inst)
    try:
        r = inst.run("-odi", "-v", "someone@remote.test", stdin=b"Subject: to myself\n\nx\n", timeout=60)
        out = r.stdout.decode()
        assert "553 5.3.5 mx1.remote.test. config error: mail loops back to me (MX problem?)" in out, out
        box = inst.mbox("root").decode()
        assert "Status: 5.3.5" in box and "Diagnostic-Code: SMTP; 553 5.3.5 Local configuration error" in box, box
        assert "stat=Local configuration error" in inst.log()
    finally:
        d.stop()
        dns.stop()


@needs_peers
def test_fallback_mx_host_when_mx_hosts_fail_and_when_dns_is_down(inst, postfix):
    records = ["@ MX 10 mx1", f"mx1 A {DEAD}"]
    with _world(inst, records, postfix.port, "O FallbackMXhost=[127.0.0.1]") as dns:
        r = inst.run("-odi", "a@remote.test", stdin=b"Subject: fallback\n\nx\n", timeout=60)
        assert r.returncode == 0, r.stdout
        assert [m["Subject"] for m in postfix.wait_messages(1)] == ["fallback"]
        dns.stop()
        r = inst.run("-odi", "b@remote.test", stdin=b"Subject: dns down\n\nx\n", timeout=60)
        assert r.returncode == 0, r.stdout
        assert "dns down" in [m["Subject"] for m in postfix.wait_messages(2)]
    assert "relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, stat=Sent" in inst.log()


@needs_peers
def test_dead_host_costs_one_timeout_per_run(inst, postfix, tmp_path):
    records = ["@ MX 10 mx1", "@ MX 20 mx2", f"mx1 A {SILENT}", "mx2 A 127.0.0.1"]
    hoststat = tmp_path / "hoststat"
    extra = f"O HostStatusDirectory={hoststat}\nO ConnectionCacheSize=0\nO Timeout.initial=5s"
    with _world(inst, records, postfix.port, extra), \
            _silent(postfix.port) as silent:
        for n in range(3):
            _queue(inst, [f"r{n}@remote.test"], f"m{n}")
        start = time.monotonic()
        assert inst.run("-q", timeout=120).returncode == 0
        assert time.monotonic() - start >= 5  # the greeting timeout was waited
        assert len(postfix.wait_messages(3)) == 3
        assert _connections(silent) == 1  # one greeting timeout, not three
        assert len(_sessions(postfix.log())) == 3
        # the next run knows from the host status directory: not even a connection
        _queue(inst, ["r9@remote.test"], "m9")
        assert inst.run("-q", timeout=120).returncode == 0
        assert len(postfix.wait_messages(4)) == 4
        assert _connections(silent) == 0
        assert "mx1.remote.test" in inst.run("-bh").stdout.decode()


def test_dns_down_costs_one_timeout_per_run(inst):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))  # a name server that never answers
        inst.write_cf(f"O NameServers=127.0.0.1:{mute.getsockname()[1]}\nMesmtp, P=[IPC], F=mDFMuXa, A=TCP $h 25")
        for n in range(3):
            _queue(inst, [f"r{n}@remote.test"], f"m{n}")
        import mta.dns

        start = time.monotonic()
        assert inst.run("-q", timeout=120).returncode == 0
        took = time.monotonic() - start
        assert mta.dns.LIFETIME <= took < 2 * mta.dns.LIFETIME, took
        assert inst.run("-bp").stdout.decode().count("Name server timeout") == 3


def test_auth_to_a_smart_host_from_an_authinfo_map(inst, certs):  # noqa: F811
    """Our daemon is the provider (AUTH only after STARTTLS, required on its MSA port); a second
    instance relays everything there with the password from a makemap'd authinfo."""
    pw = inst.etc / "smtp-passwd"
    assert subprocess.run([str(BIN / "mta-passwd"), str(pw), "carol"], input=b"s3cret\n").returncode == 0
    msa = free_port()
    inst.write_cf(f"O ServerCertFile={certs}/cert.pem\nO ServerKeyFile={certs}/key.pem\nO AuthPasswordFile={pw}\n"
                  f"O DaemonPortOptions=Port={msa},Addr=127.0.0.1,Name=MSA,M=Ea")
    d = Daemon(inst)
    root = Path(tempfile.mkdtemp(prefix="smpy."))
    client = Instance(root, free_port(), host="client.test")
    try:
        (client.etc / "authinfo").write_text('AuthInfo:127.0.0.1 "U:carol" "P:s3cret" "M:PLAIN"\n')
        makemap("hash", str(client.etc / "authinfo"), stdin=(client.etc / "authinfo").read_bytes())
        client.write_cf(f"DS[127.0.0.1]\nKauthinfo hash {client.etc}/authinfo\n"
                        f"Mrelay, P=[IPC], F=mDFMuXa8k, A=TCP $h {msa}")
        r = client.run("-odi", "-v", "mtaalice@test.example", stdin=b"Subject: via provider\n\nx\n", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert b">>> AUTH PLAIN ...\n235 2.0.0 OK Authenticated" in r.stdout, r.stdout
        assert b"s3cret" not in r.stdout
        assert wait_for(lambda: "via provider" in subjects(inst, "mtaalice"))
        assert "with ESMTPSA id" in inst.mbox("mtaalice").decode()
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@needs_peers
def test_certificate_verification_and_tls_srv_verify(inst, certs, tmp_path):  # noqa: F811
    """A second instance sends to our daemon: verified against CACertFile, TLS_Srv VERIFY is met;
    against a CA that did not sign the certificate it is not (deferred), and without TLS_Srv
    the message goes on over TLS all the same."""
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=x",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(other)], check=True, capture_output=True)
    inst.write_cf(f"O ServerCertFile={certs}/cert.pem\nO ServerKeyFile={certs}/key.pem")
    d = Daemon(inst)
    root = Path(tempfile.mkdtemp(prefix="smpy."))
    client = Instance(root, free_port(), host="client.test")
    (client.etc / "access").write_text("TLS_Srv:mx1.test.example\tVERIFY\n")
    makemap("hash", str(client.etc / "access"), stdin=(client.etc / "access").read_bytes())
    dns = Nsd({"test.example": ["@ MX 10 mx1", "mx1 A 127.0.0.1"]})

    def configure(ca: Path, access: bool = True) -> None:
        client.write_cf(f"O NameServers={dns.address}\nO CACertFile={ca}\n"
                        f"Mesmtp, P=[IPC], F=mDFMuXa, A=TCP $h {inst.port}\n"
                        + (f"Kaccess hash -T<TMPF> {client.etc}/access\n" if access else ""))

    def send(ca: Path, subject: str, access: bool = True) -> subprocess.CompletedProcess:
        configure(ca, access)
        return client.run("-odi", "mtaalice@test.example", stdin=f"Subject: {subject}\n\nx\n".encode(), timeout=60)

    try:
        assert send(certs / "cert.pem", "verified").returncode == 0
        assert wait_for(lambda: "verified" in subjects(inst, "mtaalice"))
        assert "with ESMTPS id" in inst.mbox("mtaalice").decode()
        assert send(other, "not verified").returncode == 0
        assert "Deferred: 454 authentication failed" in client.run("-bp").stdout.decode()
        assert send(other, "unverified but encrypted", access=False).returncode == 0
        assert wait_for(lambda: "unverified but encrypted" in subjects(inst, "mtaalice"))
        assert inst.mbox("mtaalice").decode().count("with ESMTPS id") == 2
        # TLS_Rcpt: one recipient asks for a verified peer, the other does not
        (client.etc / "access").write_text("TLS_Rcpt:mtabob@test.example\tVERIFY\n")
        makemap("hash", str(client.etc / "access"), stdin=(client.etc / "access").read_bytes())
        configure(other)
        r = client.run("-odi", "mtaalice@test.example", "mtabob@test.example", stdin=b"Subject: per rcpt\n\nx\n")
        assert r.returncode == 0
        assert wait_for(lambda: "per rcpt" in subjects(inst, "mtaalice"))
        listing = client.run("-bp").stdout.decode()
        assert "mtabob@test.example" in listing and "(Deferred: 454 authentication failed)" in listing, listing
        assert "per rcpt" not in subjects(inst, "mtabob")
    finally:
        d.stop()
        dns.stop()
        shutil.rmtree(root, ignore_errors=True)


@needs_peers
def test_single_thread_delivery_leaves_a_busy_host_to_its_holder(inst, postfix, tmp_path):
    records = ["@ MX 10 mx1", "@ MX 20 mx2", f"mx1 A {SILENT}", "mx2 A 127.0.0.1"]
    extra = f"O HostStatusDirectory={tmp_path}/hoststat\nO SingleThreadDelivery=True\nO Timeout.initial=15s"
    with _world(inst, records, postfix.port, extra), _silent(postfix.port):
        env = {**os.environ, "TZ": "UTC"}
        slow = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-odi", "a@remote.test"],
                                stdin=subprocess.PIPE, env=env)
        slow.stdin.write(b"Subject: slow\n\nx\n")
        slow.stdin.close()
        time.sleep(1)  # it now holds mx1, waiting for a greeting that never comes
        r = inst.run("-odi", "b@remote.test", stdin=b"Subject: quick\n\nx\n", timeout=60)
        assert r.returncode == 0 and slow.poll() is None  # done while the other still waits on mx1
        assert slow.wait(60) == 0
        assert sorted(m["Subject"] for m in postfix.wait_messages(2)) == ["quick", "slow"]


@needs_peers
def test_a_message_over_the_peers_size_limit_is_not_offered(inst):
    port = free_port()
    with Postfix(port, {"message_size_limit": "2000"}) as pf, _world(inst, ["@ MX 10 mx1", "mx1 A 127.0.0.1"], port):
        r = inst.run("-odi", "a@remote.test", stdin=b"Subject: big\n\n" + b"x" * 3000 + b"\n", timeout=60)
        assert r.returncode != 0
        assert "Message is too large; 2000 bytes max" in inst.log()
        assert "Status: 5.2.3" in inst.mbox("root").decode()
        assert "mail=" not in "".join(_sessions(pf.log()))  # MAIL was never sent
