"""The daemon end to end: real sockets, smtplib and swaks, Sendmail's replies, policy, safety."""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from tests.conftest import BIN, makemap, wait_for, wait_port

DATE = r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d GMT"


class Daemon:
    def __init__(self, inst, *args: str):
        self.inst = inst
        self.proc = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-bD", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not wait_port(inst.port):
            self.proc.kill()
            raise RuntimeError(f"daemon did not start: {self.proc.stdout.read()!r}")

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)


@pytest.fixture
def daemon(inst):
    d = Daemon(inst)
    yield d
    d.stop()


class Raw:
    """A raw SMTP client that sends bytes as given and reads whole replies."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=20)
        self.file = self.sock.makefile("rb")
        self.greeting = self.read()

    def read(self) -> str:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                break
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                break
        return "".join(lines)

    def cmd(self, text: str | bytes) -> str:
        self.sock.sendall(text if isinstance(text, bytes) else text.encode() + b"\r\n")
        return self.read()

    def close(self) -> None:
        self.file.close()
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def subjects(inst, user: str) -> list[str]:
    path = inst.mail / user
    return [m["Subject"] for m in mailbox.mbox(str(path))] if path.exists() else []


def test_greeting_and_ehlo(inst, daemon):
    c = Raw(inst.port)
    assert re.fullmatch(rf"220 test\.example ESMTP Sendmail 8\.18\.1/8\.18\.1; {DATE}\r\n", c.greeting)
    assert c.cmd("EHLO client.example.test") == (
        "250-test.example Hello localhost [127.0.0.1], pleased to meet you\r\n250-ENHANCEDSTATUSCODES\r\n"
        "250-PIPELINING\r\n250-EXPN\r\n250-VERB\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250-ETRN\r\n"
        "250-DELIVERBY\r\n250 HELP\r\n")
    assert c.cmd("HELO client.example.test") == "250 test.example Hello localhost [127.0.0.1], pleased to meet you\r\n"
    assert c.cmd("QUIT") == "221 2.0.0 test.example closing connection\r\n"


def test_transaction_and_delivery(inst, daemon):
    c = smtplib.SMTP("127.0.0.1", inst.port, timeout=20)
    c.ehlo("client.example.test")
    assert c.mail("sender@example.test") == (250, b"2.1.0 <sender@example.test>... Sender ok")
    assert c.rcpt("mtaalice@test.example") == (250, b"2.1.5 <mtaalice@test.example>... Recipient ok")
    assert c.rcpt("nosuchuser@test.example") == (550, b"5.1.1 <nosuchuser@test.example>... User unknown")
    code, text = c.data(b"Subject: via smtp\r\n\r\nhello\r\n..leading dot\r\n")
    m = re.fullmatch(rb"2\.0\.0 ([0-9A-Za-z]{14}) Message accepted for delivery", text)
    assert code == 250 and m, text
    assert c.quit() == (221, b"2.0.0 test.example closing connection")
    assert wait_for(lambda: "via smtp" in subjects(inst, "mtaalice"))
    box = inst.mbox("mtaalice").decode()
    qid = m.group(1).decode()
    assert re.search(rf"Received: from client\.example\.test \(localhost \[127\.0\.0\.1\]\)\n\tby test\.example "
                     rf"\(8\.18\.1/8\.18\.1\) with ESMTP id {qid}\n\tfor <mtaalice@test\.example>; {DATE}\n", box)
    assert "\nhello\n..leading dot\n" in box  # smtplib stuffed it to "...", we unstuffed one
    log = inst.log()
    assert re.search(rf"{qid}: from=<sender@example\.test>, size=\d+, class=0, nrcpts=1, "
                     rf"msgid=<\d+\.{qid}@test\.example>, proto=ESMTP, daemon=MTA, relay=localhost \[127\.0\.0\.1\]",
                     log), log
    assert re.search(r": starting daemon \(8\.18\.1\): SMTP\n", log)


REPLIES = [
    ("MAIL FROM:<bob@example.test>", "250 2.1.0 <bob@example.test>... Sender ok"),
    ("MAIL FROM:<alice@example.test>", "503 5.5.0 Sender already specified"),
    ("RSET", "250 2.0.0 Reset state"),
    ("RCPT TO:<mtaalice@test.example>", "503 5.0.0 Need MAIL before RCPT"),
    ("DATA", "503 5.0.0 Need MAIL command"),
    ("MAIL FROM bob@example.test", '501 5.5.2 Syntax error in parameters scanning "FROM"'),
    ("MAIL FROM:<bob@example.test", "553 5.0.0 <bob@example.test... Unbalanced '<'"),
    ("MAIL FROM:<bob@example.test>>", "553 5.0.0 <bob@example.test>>... Unbalanced '>'"),
    ("MAIL FROM:<bob@example.test> FOO=bar", "555 5.5.4 FOO parameter unrecognized"),
    ("MAIL FROM:<bob@example.test> BODY=BINARYMIME", "501 5.5.4 Unknown BODY type BINARYMIME"),
    ("MAIL FROM:<>", "250 2.1.0 <>... Sender ok"),
    ("DATA", "503 5.0.0 Need RCPT (recipient)"),
    ("RCPT TO:", '501 5.5.2 Syntax error in parameters scanning "TO"'),
    ("RCPT TO:<mtaalice@test.example> FOO=bar", "555 5.5.4 FOO parameter unrecognized"),
    ("RCPT TO:<|/bin/sh -c true>", "550 5.1.1 <|/bin/sh -c true>... User unknown"),
    ("RCPT TO:</etc/passwd>", "550 5.1.1 </etc/passwd>... User unknown"),
    ("RCPT TO:<mtaalice>", "250 2.1.5 <mtaalice>... Recipient ok"),
    ("RSET", "250 2.0.0 Reset state"),
    ("NOOP", "250 2.0.0 OK"),
    ("VRFY mtaalice", "252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery (or try finger)"),
    ("EXPN root", "502 5.7.0 Sorry, we do not allow this operation"),
    ("FOOBAR baz", '500 5.5.1 Command unrecognized: "FOOBAR baz"'),
    ("TURN", '502 5.5.1 Command not implemented: "TURN"'),
    ("STARTTLS", "454 4.3.3 TLS not available"),
    ("AUTH PLAIN AGJvYgBwYXNz", "504 5.3.3 AUTH mechanism PLAIN not available"),
    ("ETRN", "500 5.5.2 Parameter required"),
    ("ETRN #somequeue", "459 4.5.4 Queue somequeue unknown"),
    ("ETRN example.org", "250 2.0.0 Queuing for node example.org started"),
    ("EHLO", "501 5.0.0 EHLO requires domain address"),
    ("helo", "501 5.0.0 helo requires domain address"),
    ("ehlo bad/name", "501 5.0.0 Invalid domain name"),
]


def test_replies(inst, daemon):
    inst.write_cf("O PrivacyOptions=novrfy,noexpn")
    daemon.stop()
    d = Daemon(inst)
    try:
        c = Raw(inst.port)
        c.cmd("EHLO client.example.test")
        got = [(cmd, c.cmd(cmd).rstrip("\r\n")) for cmd, _want in REPLIES]
        assert got == REPLIES
        assert c.cmd("help").startswith("214-2.0.0 This is sendmail version 8.18.1\r\n")
    finally:
        d.stop()


def test_too_many_bad_commands_and_long_line(inst, daemon):
    c = Raw(inst.port)
    replies = [c.cmd(f"BOGUS{i}") for i in range(25)]
    assert replies[-1] == '500 5.5.1 Command unrecognized: "BOGUS24"\r\n'
    assert c.read() == "421 4.7.0 test.example Too many bad commands; closing connection\r\n"
    c = Raw(inst.port)
    assert c.cmd("NOOP " + "x" * 2100) == ("421 4.7.0 test.example Command too long, possible attack "
                                           "localhost [127.0.0.1]\r\n")


def test_pipelined_burst(inst, daemon):
    c = Raw(inst.port)
    c.cmd("EHLO client.example.test")
    c.sock.sendall(b"MAIL FROM:<bob@example.test>\r\nRCPT TO:<mtabob@test.example>\r\nDATA\r\n")
    assert [c.read() for _ in range(3)] == ["250 2.1.0 <bob@example.test>... Sender ok\r\n",
                                            "250 2.1.5 <mtabob@test.example>... Recipient ok\r\n",
                                            "354 End data with <CR><LF>.<CR><LF>\r\n"]
    c.sock.sendall(b"Subject: pipe 1\r\n\r\nx\r\n.\r\nMAIL FROM:<bob@example.test>\r\n"
                   b"RCPT TO:<mtabob@test.example>\r\nDATA\r\nSubject: pipe 2\r\n\r\ny\r\n.\r\nQUIT\r\n")
    replies = [c.read() for _ in range(6)]
    assert replies[0].startswith("250 2.0.0 ") and replies[4].startswith("250 2.0.0 ")
    assert replies[5] == "221 2.0.0 test.example closing connection\r\n"
    assert wait_for(lambda: sorted(subjects(inst, "mtabob")) == ["pipe 1", "pipe 2"])


SMUGGLE = [b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r",
           b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"]


@pytest.mark.parametrize("variant", SMUGGLE, ids=[repr(v) for v in SMUGGLE])
def test_smuggling_never_ends_a_message(inst, daemon, variant):
    c = Raw(inst.port)
    c.cmd("EHLO smug.example.test")
    c.cmd("MAIL FROM:<a@example.test>")
    c.cmd("RCPT TO:<mtabob@test.example>")
    c.cmd("DATA")
    c.sock.sendall(b"Subject: carrier\r\n\r\nbody" + variant + b"MAIL FROM:<evil@example.test>\r\n"
                   b"RCPT TO:<mtabob@test.example>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\n")
    first = c.read()
    try:
        c.cmd("QUIT")
    except OSError:
        pass
    time.sleep(0.5)
    assert "SMUGGLED" not in subjects(inst, "mtabob"), first
    assert first.startswith(("421 4.5.0 Bare", "554 5.6.1 NUL", "250 2.0.0")), first
    if first.startswith("250"):  # a NUL-free variant that is legal data: one message, all of it inside
        assert wait_for(lambda: subjects(inst, "mtabob") == ["carrier"])


def test_client_drop_mid_data_queues_nothing(inst, daemon):
    c = Raw(inst.port)
    c.cmd("EHLO client.example.test")
    c.cmd("MAIL FROM:<a@example.test>")
    c.cmd("RCPT TO:<mtabob@test.example>")
    c.cmd("DATA")
    c.sock.sendall(b"Subject: dropped\r\n\r\npartial")
    c.close()
    assert wait_for(lambda: "premature EOM" in inst.log())
    assert inst.qfs() == [] and subjects(inst, "mtabob") == []


@pytest.mark.skipif(not shutil.which("swaks"), reason="needs swaks (scripts/install-test-deps)")
def test_swaks(inst, daemon):
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.port}", "--to", "mtaalice@test.example",
                        "--from", "swaks@example.test", "--header", "Subject: from swaks"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    assert "<-  250 2.1.5 <mtaalice@test.example>... Recipient ok" in r.stdout
    assert re.search(r"<-  250 2\.0\.0 \w{14} Message accepted for delivery", r.stdout)
    assert wait_for(lambda: "from swaks" in subjects(inst, "mtaalice"))
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.port}", "--to", "nosuchuser@test.example",
                        "--from", "swaks@example.test"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "<** 550 5.1.1 <nosuchuser@test.example>... User unknown" in r.stdout


def test_msp_queue_delivered_after_daemon_starts(inst, users):
    r = inst.run("mtaalice", cf=inst.submit, stdin=b"Subject: held then sent\n\nm\n")
    assert r.returncode == 0 and len(inst.qfs(client=True)) == 1
    d = Daemon(inst)
    try:
        assert inst.run("-Ac", "-q").returncode == 0
        assert wait_for(lambda: "held then sent" in subjects(inst, "mtaalice"))
        assert inst.qfs(client=True) == []
        box = inst.mbox("mtaalice").decode()
        assert "(8.18.1/8.18.1/Submit)" in box and "with ESMTP id" in box
    finally:
        d.stop()


def test_pid_file_sighup_and_sigterm(inst):
    inst.write_cf(f"O PidFile={inst.root}/sendmail.pid")
    d = Daemon(inst)
    try:
        pidfile = inst.root / "sendmail.pid"
        assert wait_for(pidfile.exists)  # written once the listeners are up, like Sendmail's
        lines = pidfile.read_text().splitlines()
        assert lines[0] == str(d.proc.pid) and "-bD" in lines[1]
        c = smtplib.SMTP("127.0.0.1", inst.port, timeout=20)
        c.ehlo("x.example")
        c.mail("a@example.test")
        assert c.rcpt("mtaalice@later.example")[0] == 250  # loopback may relay
        # SIGHUP: the config is read again for new sessions
        inst.write_cf(f"O PidFile={inst.root}/sendmail.pid\nCwlater.example")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration re-read" in inst.log())
        # SIGTERM while a transaction is open: it finishes, then the daemon exits
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        code, _ = c.data(b"Subject: finished after SIGTERM\r\n\r\nx\r\n")
        assert code == 250
        assert d.proc.wait(30) == 0
        assert not (inst.root / "sendmail.pid").exists()
    finally:
        d.stop(signal.SIGKILL)


def pipelined_burst(port: int, n: int):
    """A connection that has sent n pipelined transactions to mtabob; the replies are read from
    the file returned."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO burst.example\r\n")
    while f.readline()[3:4] == b"-":
        pass
    s.sendall(b"".join(b"MAIL FROM:<b@example.test>\r\nRCPT TO:<mtabob@test.example>\r\nDATA\r\n"
                       b"Subject: burst %d\r\n\r\nbody\r\n.\r\n" % i for i in range(n)))
    return f


def test_sigkill_during_pipelined_transactions_loses_nothing(inst, users):
    inst.write_cf("O DeliveryMode=queueonly")
    d = Daemon(inst)
    acked, seen = set(), 0
    f = pipelined_burst(inst.port, 100)
    killed = False
    try:
        while True:
            line = f.readline()
            if not line:
                break
            if line.startswith(b"354"):
                seen += 1
            if line.startswith(b"250 2.0.0"):
                acked.add(line.split()[2].decode())
                if len(acked) == 40 and not killed:
                    d.proc.send_signal(signal.SIGKILL)
                    killed = True
    except OSError:
        pass
    d.proc.wait(10)
    assert 40 <= len(acked) <= 100
    queued = {n[2:] for n in os.listdir(inst.mqueue) if n.startswith("qf")}
    assert acked <= queued, acked - queued
    assert inst.run("-q").returncode == 0
    assert len(subjects(inst, "mtabob")) >= len(acked)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=test.example", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    os.chmod(d, 0o755)
    return d


def _tls_client(port: int) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, timeout=20)
    c.ehlo("tls.example")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    c.starttls(context=ctx)
    c.ehlo("tls.example")
    return c


def test_starttls_auth_and_relay(inst, certs):
    pw = inst.etc / "smtp-passwd"
    assert subprocess.run([str(BIN / "mta-passwd"), str(pw), "carol"], input=b"s3cret\n").returncode == 0
    assert "s3cret" not in pw.read_text() and pw.read_text().startswith("carol:$pbkdf2-sha256$")
    inst.write_cf(f"O ServerCertFile={certs}/cert.pem\nO ServerKeyFile={certs}/key.pem\nO AuthPasswordFile={pw}\n"
                  f"O DaemonPortOptions=Port={inst.port + 1},Addr=127.0.0.1,Name=MSA,M=Ea")
    d = Daemon(inst)
    try:
        plain = smtplib.SMTP("127.0.0.1", inst.port, timeout=20)
        plain.ehlo("x.example")
        assert plain.has_extn("starttls") and not plain.has_extn("auth")
        c = _tls_client(inst.port)
        assert c.has_extn("auth") and not c.has_extn("starttls")
        assert c.esmtp_features["auth"].strip() == "PLAIN LOGIN"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login("carol", "wrong")
        assert c.login("carol", "s3cret")[0] == 235
        c.mail("carol@example.test")
        c.rcpt("mtaalice@test.example")
        c.data(b"Subject: over tls\r\n\r\nx\r\n")
        c.quit()
        assert wait_for(lambda: "over tls" in subjects(inst, "mtaalice"))
        box = inst.mbox("mtaalice").decode()
        assert re.search(r"with ESMTPSA id \w+\n\t\(version=TLSv1\.\d cipher=\S+ bits=\d+ verify=NO\)", box), box
        # the submission port wants AUTH first
        msa = smtplib.SMTP("127.0.0.1", inst.port + 1, timeout=20)
        msa.ehlo("x.example")
        assert msa.mail("a@example.test") == (530, b"5.7.0 Authentication required")
        # STARTTLS command injection: what follows STARTTLS in the same packet is dropped
        raw = Raw(inst.port)
        raw.cmd("EHLO x.example")
        raw.sock.sendall(b"STARTTLS\r\nRSET\r\n")
        assert raw.read() == "220 2.0.0 Ready to start TLS\r\n"
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        tls = ctx.wrap_socket(raw.sock)
        tls.settimeout(2)
        with pytest.raises((socket.timeout, TimeoutError)):
            tls.recv(100)  # no reply to the injected RSET
        tls.close()
    finally:
        d.stop()


def test_limits_greetpause_and_conn_caps(inst):
    (inst.etc / "access").write_text("GreetPause:127.0.0.1\t700\nClientConn:127.0.0.1\t2\n")
    assert makemap("hash", str(inst.etc / "access"), stdin=(inst.etc / "access").read_bytes()).returncode == 0
    inst.write_cf(f"Kaccess hash -T<TMPF> -o {inst.etc}/access")
    d = Daemon(inst)
    try:
        assert wait_for(lambda: "did not issue MAIL" in inst.log())  # the readiness probe has gone
        s = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
        s.sendall(b"EHLO early.example\r\n")
        assert s.recv(200).startswith(b"554 test.example ESMTP not accepting messages")
        s.close()
        held = [Raw(inst.port), Raw(inst.port)]
        assert all(h.greeting.startswith("220 ") for h in held)
        third = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
        assert third.recv(200) == b"421 4.7.1 Too many open connections.\r\n"
    finally:
        d.stop()
    assert "rejecting commands from localhost [127.0.0.1] due to pre-greeting traffic" in inst.log()


def test_bs_on_stdio(inst):
    r = inst.run("-bs", stdin=b"EHLO client.example.test\r\nMAIL FROM:<bob@example.test>\r\nRCPT TO:<mtaalice>\r\n"
                 b"DATA\r\nSubject: via -bs\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    lines = r.stdout.decode().split("\r\n")
    assert lines[0].startswith("220 test.example ESMTP Sendmail") and lines[1] == (
        "250-test.example Hello root@localhost, pleased to meet you")
    assert re.match(r"250 2\.0\.0 \w{14} Message accepted for delivery", lines[-3])
    assert lines[-2] == "221 2.0.0 test.example closing connection"
    assert wait_for(lambda: "via -bs" in subjects(inst, "mtaalice"))
    assert "Received: from client.example.test (root@localhost)" in inst.mbox("mtaalice").decode()


def test_non_root_cannot_start_daemon(inst, users):
    r = inst.run("-bd", user="mtabob")
    assert (r.returncode, r.stdout) == (64, b"550 Permission denied (real uid not trusted)\n")


def test_client_rate_and_max_children(inst):
    (inst.etc / "access").write_text("ClientRate:127.0.0.1\t2\n")
    assert makemap("hash", str(inst.etc / "access"), stdin=(inst.etc / "access").read_bytes()).returncode == 0
    inst.write_cf(f"Kaccess hash -o {inst.etc}/access\nO MaxDaemonChildren=3")
    d = Daemon(inst)  # its own readiness probe was the first connection of this minute
    try:
        first = Raw(inst.port)
        assert first.greeting.startswith("220 ")
        third = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
        assert third.recv(200) == b"421 4.3.2 Connection rate limit exceeded.\r\n"
    finally:
        d.stop()
    (inst.etc / "access").write_text("")
    assert makemap("hash", str(inst.etc / "access"), stdin=b"").returncode == 0
    inst.write_cf(f"Kaccess hash -o {inst.etc}/access\nO MaxDaemonChildren=1")
    before = inst.log().count("did not issue MAIL")
    d = Daemon(inst)
    try:
        # the readiness probe was a connection too: wait until its session has ended
        assert wait_for(lambda: inst.log().count("did not issue MAIL") > before)
        held = Raw(inst.port)
        assert held.greeting.startswith("220 ")
        extra = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
        assert extra.recv(200) == (b"421 4.3.2 test.example Too many concurrent SMTP connections; "
                                   b"please try again later\r\n")
    finally:
        d.stop()


def test_return_receipt_for_notify_success(inst, daemon):
    c = smtplib.SMTP("127.0.0.1", inst.port, timeout=20)
    c.ehlo("client.example.test")
    c.mail("mtabob@test.example")
    c.rcpt("mtaalice@test.example", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;mtaalice@test.example"])
    c.rcpt("root@test.example")
    c.data(b"Subject: receipt please\r\n\r\nx\r\n")
    c.quit()
    assert wait_for(lambda: "Return receipt" in subjects(inst, "mtabob"))
    box = inst.mbox("mtabob").decode()
    assert "<mtaalice@test.example>  (successfully delivered to mailbox)" in box
    assert "Original-Recipient: rfc822;mtaalice@test.example" in box
    assert "Action: delivered (to mailbox)\nStatus: 2.1.5" in box
    assert "Auto-Submitted: auto-generated (return-receipt)" in box
    assert box.count("Final-Recipient") == 1  # root did not ask for one
    assert re.search(r"DSN: Return receipt", inst.log())


def test_dsn_requests_travel_to_the_next_hop(inst, daemon):
    """MSP -> daemon: NOTIFY and ORCPT go on over SMTP, so the final hop answers the receipt
    (and the MSP does not send a 'relayed' one of its own)."""
    r = inst.run("-N", "success,failure", "-V", "env-42", "mtaalice", cf=inst.submit,
                 stdin=b"Subject: receipt through the msp\n\nx\n")
    assert r.returncode == 0, r.stdout
    assert wait_for(lambda: "Return receipt" in subjects(inst, "root"))
    time.sleep(0.5)
    box = inst.mbox("root").decode()
    assert box.count("Subject: Return receipt") == 1
    assert "(successfully delivered to mailbox)" in box and "relayed to non-DSN-aware" not in box
    assert "Original-Envelope-Id: env-42\nReporting-MTA: dns; test.example" in box
    qf_log = inst.log()
    assert re.search(r"from=<root@test\.example>, size=\d+, class=0, nrcpts=1, .*proto=ESMTP", qf_log)


def _recv_until(sock: socket.socket, end: bytes, limit: float = 20) -> bytes:
    got, deadline = b"", time.monotonic() + limit
    while not got.endswith(end) and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_starttls_discards_what_the_transport_buffered(inst, certs):
    """CVE-2011-0411 class: a burst sent before the greeting, ending in STARTTLS, then NOOP.  The
    daemon's first read takes exactly the bytes up to STARTTLS, so the NOOP waits in the
    transport's buffer; it must not be answered inside TLS, and the client must EHLO again."""
    inst.write_cf(f"O ServerCertFile={certs}/cert.pem\nO ServerKeyFile={certs}/key.pem")
    d = Daemon(inst)
    try:
        head = b"EHLO burst.example\r\n"
        tail = b"STARTTLS\r\n"
        room = 65536 - len(head) - len(tail)
        n = room // 6 - 1
        pad = b"RSET\r\n" * n + b"RSET" + b" " * (room - 6 * n - 6) + b"\r\n"
        burst = head + pad + tail
        assert len(burst) == 65536
        s = socket.create_connection(("127.0.0.1", inst.port), timeout=20)
        s.sendall(burst + b"NOOP\r\n")
        got = _recv_until(s, b"220 2.0.0 Ready to start TLS\r\n")
        assert got.endswith(b"220 2.0.0 Ready to start TLS\r\n"), got[-200:]
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        tls = ctx.wrap_socket(s)
        tls.settimeout(2)
        with pytest.raises((socket.timeout, TimeoutError)):
            assert tls.recv(100) == b""  # no answer to the NOOP sent in clear
        tls.sendall(b"MAIL FROM:<a@example.test>\r\n")
        assert tls.recv(200) == b"503 5.0.0 Polite people say HELO first\r\n"
        tls.sendall(b"EHLO again.example\r\n")
        assert _recv_until(tls, b"250 HELP\r\n").startswith(b"250-test.example Hello")
        tls.close()
    finally:
        d.stop()


def _noop_rtts(clients: list, rounds: int) -> list[float]:
    rtts = []
    for _ in range(rounds):
        for c in clients:
            t0 = time.monotonic()
            assert c.cmd("NOOP") == "250 2.0.0 OK\r\n"
            rtts.append(time.monotonic() - t0)
        time.sleep(0.05)
    return rtts


def _feed_fifo(path, done, limit: float = 30) -> None:
    """Be the writer a reader of this FIFO waits for, once for each open, until done()."""
    deadline = time.monotonic() + limit
    while not done() and time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader has it open yet
            time.sleep(0.01)
            continue
        try:
            os.write(fd, b"# nothing\n")
        except BrokenPipeError:  # that reader closed before we wrote: the next open serves another
            pass
        finally:
            os.close(fd)


def test_loop_never_blocks(inst, certs):
    """20 idle sessions get NOOP answered at once while 8 clients run 200,000-round PBKDF2 AUTH
    attempts and 3 RCPTs wait on a map that cannot be read (a FIFO nobody writes yet)."""
    import statistics
    import threading

    pw = inst.etc / "smtp-passwd"
    assert subprocess.run([str(BIN / "mta-passwd"), str(pw), "carol"], input=b"s3cret\n").returncode == 0
    fifo = inst.etc / "virtuser"
    os.mkfifo(fifo)
    inst.write_cf(f"O ServerCertFile={certs}/cert.pem\nO ServerKeyFile={certs}/key.pem\nO AuthPasswordFile={pw}\n"
                  f"Kvirtuser text {fifo}")
    d = Daemon(inst)
    stop, errors_seen, slow_replies = threading.Event(), [], []

    def authenticate():
        try:
            c = _tls_client(inst.port)
            while not stop.is_set():
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    c.login("carol", "wrong")
        except smtplib.SMTPServerDisconnected:
            pass  # 25 failures are too many bad commands
        except Exception as exc:  # noqa: BLE001 - reported below
            errors_seen.append(exc)

    def slow_rcpt():
        c = Raw(inst.port)
        c.cmd("EHLO slow.example")
        c.cmd("MAIL FROM:<a@example.test>")
        slow_replies.append(c.cmd("RCPT TO:<mtaalice@test.example>"))

    try:
        idle = [Raw(inst.port) for _ in range(20)]
        for c in idle:
            assert c.cmd("EHLO idle.example").startswith("250-")
        threads = [threading.Thread(target=authenticate) for _ in range(8)]
        threads += [threading.Thread(target=slow_rcpt) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        rtts = _noop_rtts(idle, 5)
        stop.set()
        feeder = threading.Thread(target=_feed_fifo, args=(fifo, lambda: len(slow_replies) == 3))
        feeder.start()  # now the map can be read: the RCPTs get their answer
        for t in threads + [feeder]:
            t.join(60)
        assert not errors_seen, errors_seen
        assert slow_replies == ["250 2.1.5 <mtaalice@test.example>... Recipient ok\r\n"] * 3
        assert statistics.median(rtts) < 0.05 and max(rtts) < 0.5, sorted(rtts)[-5:]
    finally:
        stop.set()
        d.stop()


def test_routing_tempfail_is_451_not_421(inst):
    """A missing :include: file was '421 Internal error' and the end of the session."""
    with open(inst.etc / "aliases", "a") as fh:
        fh.write(f"biglist: :include:{inst.etc}/no-such-list\n")
    assert inst.run("-bi").returncode == 0
    d = Daemon(inst)
    try:
        c = Raw(inst.port)
        c.cmd("EHLO client.example.test")
        c.cmd("MAIL FROM:<a@example.test>")
        assert c.cmd("RCPT TO:<biglist@test.example>") == (
            f"451 4.2.4 Cannot open {inst.etc}/no-such-list: No such file or directory\r\n")
        assert c.cmd("RCPT TO:<mtaalice@test.example>") == "250 2.1.5 <mtaalice@test.example>... Recipient ok\r\n"
        c.cmd("QUIT")
    finally:
        d.stop()


def test_sigterm_never_prints_a_traceback(inst):
    """Ten starts and stops, SIGTERM arriving while clients connect and talk: exit 0, nothing
    on stdout or stderr (it was a traceback in half of the shutdowns)."""
    import threading

    def connect_until_gone(proc, socks):
        while proc.poll() is None and len(socks) < 200:
            try:
                s = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
                s.sendall(b"EHLO x.example\r\nNOOP\r\n")
                socks.append(s)
            except OSError:
                time.sleep(0.001)

    for i in range(10):
        d, socks = Daemon(inst), []
        t = threading.Thread(target=connect_until_gone, args=(d.proc, socks))
        t.start()
        time.sleep(0.01 * i)
        code = d.stop()
        t.join(30)
        out = d.proc.stdout.read().decode()
        for s in socks:
            s.close()
        assert (code, out) == (0, ""), (i, out)


def test_slowdowns_and_idle_timeouts(inst):
    """The 20th NOOP waits a second (checksmtpattack) without stalling anybody else; a client
    idle in DATA past Timeout.datablock gets 421 and is closed."""
    inst.write_cf("O Timeout.datablock=1s")
    d = Daemon(inst)
    try:
        flood, other = Raw(inst.port), Raw(inst.port)
        for _ in range(19):
            assert flood.cmd("NOOP") == "250 2.0.0 OK\r\n"
        flood.sock.sendall(b"NOOP\r\n")
        t0 = time.monotonic()
        assert other.cmd("NOOP") == "250 2.0.0 OK\r\n" and time.monotonic() - t0 < 0.5
        assert flood.read() == "250 2.0.0 OK\r\n" and time.monotonic() - t0 >= 0.9
        assert "possible SMTP attack: command=NOOP, count=20" in inst.log()
        other.cmd("EHLO idle.example")
        other.cmd("MAIL FROM:<a@example.test>")
        other.cmd("RCPT TO:<mtaalice@test.example>")
        other.cmd("DATA")
        other.sock.sendall(b"Subject: slow\r\n")
        assert other.read() == "421 4.4.2 test.example Timeout waiting for input\r\n"
        assert "during message collect" in inst.log()
    finally:
        d.stop()


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def _workers(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            out += [int(p) for p in fh.read().split()]
    return out


def test_unterminated_data_line_does_not_grow_the_daemon(inst):
    """30 MiB without a line end after DATA, MaxMessageSize 2000: the worker's memory stays flat
    (it held all of it before), and the message is refused with 552."""
    inst.write_cf("O MaxMessageSize=2000\nO DaemonWorkers=1")
    d = Daemon(inst)
    try:
        c = Raw(inst.port)
        c.cmd("EHLO big.example")
        c.cmd("MAIL FROM:<a@example.test>")
        c.cmd("RCPT TO:<mtaalice@test.example>")
        assert c.cmd("DATA").startswith("354")
        [worker] = _workers(d.proc.pid)
        before = _peak_rss_kib(worker)
        chunk = b"x" * 65536
        for _ in range(480):
            c.sock.sendall(chunk)
        assert c.cmd(b"\r\n.\r\n") == "552 5.2.3 Message exceeds maximum fixed size (2000)\r\n"
        assert _peak_rss_kib(worker) - before < 8 * 1024
        c.cmd("QUIT")
    finally:
        d.stop()


def test_a_client_that_does_not_read_its_replies_is_not_buffered_for(inst):
    """100,000 pipelined HELPs (40 MB of replies) from a client that reads nothing: the worker
    stops reading it once its replies back up, so its memory stays flat, and another client is
    served meanwhile; once the client reads, every reply comes, in order."""
    inst.write_cf("O DaemonWorkers=1")
    d = Daemon(inst)
    try:
        flood = Raw(inst.port)
        [worker] = _workers(d.proc.pid)
        before = _peak_rss_kib(worker)
        count = 100_000
        sender = threading.Thread(target=flood.sock.sendall, args=(b"HELP\r\n" * count + b"NOOP\r\n",))
        sender.start()
        time.sleep(3)
        other = Raw(inst.port)
        t0 = time.monotonic()
        assert other.cmd("NOOP") == "250 2.0.0 OK\r\n" and time.monotonic() - t0 < 1
        other.close()
        assert _peak_rss_kib(worker) - before < 8 * 1024
        for _ in range(count):
            assert flood.read().startswith("214-2.0.0 This is sendmail version ")
        assert flood.read() == "250 2.0.0 OK\r\n"
        sender.join(10)
        flood.close()
    finally:
        d.stop()
