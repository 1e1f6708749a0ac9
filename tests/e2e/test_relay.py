"""Addresses and relaying through the real daemon and `sendmail -bv` (issue 8)."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.test_smtpd import Daemon, Raw, subjects


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


def rcpt_replies(client: Raw, rcpts: list[str], bracket: bool = True) -> list[str]:
    client.cmd("EHLO client.example.test")
    client.cmd("MAIL FROM:<mtabob@test.example>")
    out = [client.cmd(f"RCPT TO:<{r}>" if bracket else f"RCPT TO:{r}").strip() for r in rcpts]
    client.cmd("QUIT")
    return out


def test_quoted_local_part_is_no_open_relay(inst, daemon):
    text = '"someone@elsewhere.example"@test.example'
    assert rcpt_replies(Outside(inst.port), [text]) == [f"550 5.7.1 <{text}>... Relaying denied"]
    assert rcpt_replies(Raw(inst.port), [text]) == [f"550 5.1.1 <{text}>... User unknown"]
    out = inst.run("-bv", text, '"v@elsewhere.example"')
    assert out.stdout.decode().splitlines() == [f"{text}... User unknown", '"v@elsewhere.example"... User unknown']


def test_access_discard_and_quarantine_through_the_daemon(inst):
    from tests.conftest import makemap, wait_for

    access = inst.etc / "access"
    assert makemap("hash", str(access), stdin=b"From:dropme@example.org\tDISCARD\n"
                                              b"From:holdme@example.org\tQUARANTINE:held for review\n"
                                              b"Connect:127.0.0.2\tDISCARD\n").returncode == 0
    inst.write_cf(f"Kaccess hash -T<TMPF> -o {access}\nO DeliveryMode=background")
    d = Daemon(inst)
    try:
        for sender, subject in (("dropme@example.org", "dropped"), ("holdme@example.org", "held"),
                                ("fine@example.org", "fine")):
            c = Raw(inst.port)
            c.cmd("EHLO client.example.test")
            assert c.cmd(f"MAIL FROM:<{sender}>").startswith("250 2.1.0")
            assert c.cmd("RCPT TO:<mtaalice@test.example>").startswith("250 2.1.5")
            assert c.cmd("DATA").startswith("354")
            assert c.cmd(f"Subject: {subject}\r\n\r\nbody\r\n.").startswith("250 2.0.0 ")
            c.cmd("QUIT")
        c = Outside(inst.port)  # Connect: DISCARD: every message of the session is dropped
        c.cmd("EHLO client.example.test")
        c.cmd("MAIL FROM:<fine@example.org>")
        assert c.cmd("RCPT TO:<mtaalice@test.example>").startswith("250 2.1.5")
        assert c.cmd("DATA").startswith("354")
        assert c.cmd("Subject: from a discarded client\r\n\r\nbody\r\n.").startswith("250 2.0.0 ")
        c.cmd("QUIT")
        assert wait_for(lambda: "fine" in subjects(inst, "mtaalice"))
    finally:
        d.stop()
    assert subjects(inst, "mtaalice") == ["fine"]
    log = inst.log()
    assert "ruleset=check_mail, arg1=<dropme@example.org>, relay=localhost [127.0.0.1], discard\n" in log
    assert log.count(": discarded\n") == 2
    assert "ruleset=check_relay, arg1=[127.0.0.2], arg2=127.0.0.2, relay=[127.0.0.2], discard\n" in log
    assert "arg1=<holdme@example.org>, relay=localhost [127.0.0.1], quarantine=held for review\n" in log
    import os

    held = [n for n in os.listdir(inst.mqueue) if n.startswith("hf")]  # a quarantined qf is hf<id>
    assert b"\nqheld for review\n" in (inst.mqueue / held[0]).read_bytes()
    assert len(held) == 1 and b"Subject: held" in (inst.mqueue / held[0]).read_bytes()


# -- the address forms table (issue 8): what each form does at RCPT and in -bv -----------------------
#
# Sendmail's documented behaviour (cf/README "RELAYING"; cf/m4/proto.m4 canonify, Parse0, Rcpt_ok;
# Debian's captured replies in shared/reference/captured/smtp_errors.txt E10b and E13b): relaying is
# denied unless the client may relay (loopback, class R, Connect: RELAY, AUTH); a recipient is local
# when its domain is in class w or one of our address literals; "u%h@here", "h!u@here" and the
# quoted "u@h"@here are checked as u@h (Parse0 strips the local host; ParseRecipient), so an outside
# client is refused "Relaying denied" for them (E13b: alice%example.org@st5, example.org!alice);
# source routes are stripped (canonify; E10b); "a@b@c", "a@@b" are "Invalid route address".
# Where we differ, on purpose (issue 8: a local domain's recipient stays local): for a client that
# may relay, Sendmail forwards "u%h@here" and "u@h"@here to h ("Recipient ok (will queue)", E10b);
# we keep them local, where no such user exists.
OK = "250 2.1.5 {}... Recipient ok"
DENIED = "550 5.7.1 {}... Relaying denied"
UNKNOWN = "550 5.1.1 {}... User unknown"
LOCAL = "deliverable: mailer local, user mtaalice"


def esmtp(host: str, user: str) -> str:
    return f"deliverable: mailer esmtp, host {host}, user {user}"


def bad(status: str, text: str) -> tuple[str, str, str]:
    return (f"553 {status} {{}}... {text}",) * 2 + (text,)


FORMS = [  # RCPT argument, reply to an outside client, reply to a client that may relay, -bv
    # plain local forms: case, trailing dot, literals, needless quotes, comments, +detail
    ("<mtaalice@test.example>", OK, OK, LOCAL),
    ("<MTAALICE@TEST.EXAMPLE>", OK, OK, LOCAL),
    ("<mtaalice@Test.Example.>", OK, OK, LOCAL),
    ("<mtaalice>", OK, OK, LOCAL),
    ("<mtaalice@localhost>", OK, OK, LOCAL),
    ("<mtaalice@[127.0.0.1]>", OK, OK, LOCAL),
    ("<mtaalice@[IPv6:::1]>", OK, OK, LOCAL),
    ("<mtaalice@[IPv6:0:0:0:0:0:0:0:1]>", OK, OK, LOCAL),
    ('<"mtaalice"@test.example>', OK, OK, LOCAL),
    ("<mtaalice@test.example (a comment)>", OK, OK, LOCAL),
    ("<(comment) mtaalice@test.example>", OK, OK, LOCAL),
    ("<mtaalice+tag@test.example>", OK, OK, LOCAL),
    ("<postmaster>", OK, OK, None),  # an alias: -bv names its target, root
    ("<Postmaster@test.example>", OK, OK, None),
    # source routes: stripped (RFC 5321 appendix C; canonify)
    ("<@test.example:mtaalice@test.example>", OK, OK, LOCAL),
    ("<@a.example,@b.example:mtaalice@test.example>", OK, OK, LOCAL),
    ("<@test.example:x@elsewhere.example>", DENIED, OK, esmtp("elsewhere.example", "x@elsewhere.example")),
    # remote domains: relayed only for a client that may relay
    ("<x@elsewhere.example>", DENIED, OK, esmtp("elsewhere.example", "x@elsewhere.example")),
    ("<x@ELSEWHERE.example.>", DENIED, OK, esmtp("ELSEWHERE.example", "x@ELSEWHERE.example")),
    ("<x@[192.0.2.1]>", DENIED, OK, esmtp("[192.0.2.1]", "x@[192.0.2.1]")),
    ("<x@[IPv6:2001:db8::1]>", DENIED, OK, esmtp("[IPv6:2001:db8::1]", "x@[IPv6:2001:db8::1]")),
    ("<x@bücher.example>", DENIED, OK, esmtp("bücher.example", "x@bücher.example")),
    ("<x@xn--bcher-kva.example>", DENIED, OK, esmtp("xn--bcher-kva.example", "x@xn--bcher-kva.example")),
    # unqualified %-hack and !-paths name another host (canonify)
    ("<elsewhere.example!x>", DENIED, OK, esmtp("elsewhere.example", "x@elsewhere.example")),
    ("<x%elsewhere.example>", DENIED, OK, esmtp("elsewhere.example", "x@elsewhere.example")),
    # a local domain's routed local parts: refused from outside as Sendmail does, and never relayed
    ('<"x@elsewhere.example"@test.example>', DENIED, UNKNOWN, "User unknown"),
    ('<"x@elsewhere.example">', DENIED, UNKNOWN, "User unknown"),
    ('<"x@elsewhere.example"@[127.0.0.1]>', DENIED, UNKNOWN, "User unknown"),
    ("<x%elsewhere.example@test.example>", DENIED, UNKNOWN, "User unknown"),
    ("<x%y%elsewhere.example@test.example>", DENIED, UNKNOWN, "User unknown"),
    ("<elsewhere.example!x@test.example>", DENIED, UNKNOWN, "User unknown"),
    ("<x\\@elsewhere.example@test.example>", DENIED, UNKNOWN, "User unknown"),
    ('<"x\\"y@elsewhere.example"@test.example>', DENIED, UNKNOWN, "User unknown"),
    ('<"x%elsewhere.example"@localhost>', DENIED, UNKNOWN, "User unknown"),
    # ... and one that names a local address again is that address (Parse0: u%here@here)
    ("<mtaalice%test.example@test.example>", OK, OK, LOCAL),
    ('<"mtaalice@localhost"@test.example>', OK, OK, LOCAL),
    # never a program, a file or an :include: from outside
    ('<"|/bin/sh -c id"@test.example>', UNKNOWN, UNKNOWN, "User unknown"),
    ("</etc/passwd@test.example>", UNKNOWN, UNKNOWN, "User unknown"),
    ("<\\mtaalice@test.example>", UNKNOWN, UNKNOWN, "User unknown"),
    ('<"mta alice"@test.example>', UNKNOWN, UNKNOWN, "User unknown"),
    # refused forms: Sendmail's Parse0 phrases and statuses
    ("<x:include:/etc/passwd@test.example>",) + bad("5.1.3", "Invalid route address"),
    ("<x@elsewhere.example@test.example>",) + bad("5.1.3", "Invalid route address"),
    ("<x@@test.example>",) + bad("5.1.3", "Invalid route address"),
    ("<a@b.example,c@test.example>",) + bad("5.1.3", "Invalid route address"),
    ("<@test.example>",) + bad("5.1.3", "User address required"),
    ("<x@>",) + bad("5.1.3", "Hostname required"),
    ("<x@test.example:25>",) + bad("5.1.3", "Colon illegal in host name part"),
    ("<x@.test.example>",) + bad("5.1.2", "Invalid host name"),
    ("<x@test..example>",) + bad("5.1.2", "Invalid host name"),
    ("<x@[999.1.1.1]>",) + bad("5.1.2", "Invalid address"),
    ("<x@[127.0.0.1]junk>",) + bad("5.1.2", "Invalid address"),
    ("<x@test.example>>",) + bad("5.0.0", "Unbalanced '>'"),
    ('<"x@test.example>',) + bad("5.0.0", "Unbalanced '\"'"),
    ("<x(@test.example>",) + bad("5.0.0", "Unbalanced '('"),
]


def test_address_forms_at_rcpt_and_in_bv(inst, daemon):
    rcpts = [f[0] for f in FORMS]
    chunks = [rcpts[i:i + 10] for i in range(0, len(rcpts), 10)]  # under the bad-command limit
    outside = [line for c in chunks for line in rcpt_replies(Outside(inst.port), c, bracket=False)]
    inside = [line for c in chunks for line in rcpt_replies(Raw(inst.port), c, bracket=False)]
    said = dict(line.split("... ", 1) for line in inst.run("-bv", *rcpts).stdout.decode("utf-8").splitlines())
    got = [(r, o, i, said.get(r)) for r, o, i in zip(rcpts, outside, inside, strict=True)]
    want = [(r, o.format(r), i.format(r), v) for r, o, i, v in FORMS]
    assert [(g, w) for g, w in zip(got, want, strict=True) if g != w] == []
    assert said["root"] == "deliverable: mailer local, user root"
    assert len(FORMS) >= 40


def test_header_recipients_use_the_same_parser(inst):
    """-t reads To:/Cc: with the one parser: a quoted local part at our domain stays local there."""
    from tests.conftest import wait_for

    msg = (b'To: "x@elsewhere.example"@test.example, Alice <mtaalice@test.example> (the real one)\n'
           b"Cc: undisclosed-recipients:;\nSubject: via -t\n\nbody\n")
    r = inst.run("-t", "-odi", stdin=msg)
    assert '"x@elsewhere.example"@test.example... User unknown' in r.stdout.decode(), r.stdout + r.stderr
    assert wait_for(lambda: "via -t" in subjects(inst, "mtaalice"))
    assert "elsewhere.example" not in inst.log().replace('"x@elsewhere.example"@test.example', "")


def test_unresolvable_sender_domain_through_the_daemon(inst):
    """Debian's cf (proto.m4, delay_checks, the resolve map): captured/smtp_errors.txt E10a."""
    from tests.dns_server import Server

    dns = Server({("exists.example", "MX"): ["10 mx.exists.example."]})
    inst.write_cf("#####  $Id: proto.m4,v 8.762 2013-11-22 20:51:13 ca Exp $  #####\n"
                  "#####  $Id: delay_checks.m4,v 8.9 2013-11-22 20:51:11 ca Exp $  #####\n"
                  f"Kresolve host -a<OKR> -T<TEMP>\nO NameServers={dns.address}")
    d = Daemon(inst)
    try:
        replies = []
        for sender in ("someone@nonexistent.invalid", "someone@exists.example", "nodomain"):
            c = Outside(inst.port)
            c.cmd("EHLO client.example.test")
            replies += [c.cmd(f"MAIL FROM:<{sender}>").strip(), c.cmd("RCPT TO:<mtaalice@test.example>").strip()]
            c.cmd("QUIT")
    finally:
        d.stop()
        dns.close()
    assert replies == [
        "250 2.1.0 <someone@nonexistent.invalid>... Sender ok",
        "553 5.1.8 <mtaalice@test.example>... Domain of sender address someone@nonexistent.invalid does not exist",
        "250 2.1.0 <someone@exists.example>... Sender ok",
        "250 2.1.5 <mtaalice@test.example>... Recipient ok",
        "250 2.1.0 <nodomain>... Sender ok",
        "553 5.5.4 <mtaalice@test.example>... Domain name required for sender address nodomain"]
    assert ("ruleset=check_rcpt, arg1=<mtaalice@test.example>, relay=[127.0.0.2], reject=553 5.1.8 "
            "<mtaalice@test.example>... Domain of sender address someone@nonexistent.invalid does not exist"
            ) in inst.log()
