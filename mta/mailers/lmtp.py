"""LMTP (and SMTP) to a program: an M line with F=z, or with no $u in A= (Sendmail's "clever"
mailers), e.g. FEATURE(local_lmtp)'s ``Mlocal, P=/usr/libexec/sendmail/mail.local, F=...z,
A=mail.local -l``.

The program is started as ``mta.mailers.program`` starts one (argv list, fixed environment, the
uid openmailer() picks) and spoken to over its stdin and stdout, replies parsed by
``mta.smtp.client.Replies``: greeting, LHLO (EHLO, then HELO, without F=z), MAIL, one RCPT per
recipient, DATA with CRLF line ends and dot-stuffing, then one reply per accepted recipient for
LMTP (one for all with SMTP), QUIT.  Every read waits at most TIMEOUT; a program that says
nothing, dies or breaks the protocol defers all its recipients not yet answered.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time

from mta.config import Mailer
from mta.mailers import Outcome, program, smtp_session
from mta.smtp import client

TIMEOUT = 300


class _Gone(Exception):
    pass


class _Dialog:
    def __init__(self, proc: subprocess.Popen, relay: str):
        self.proc, self.relay = proc, relay
        self.replies = client.Replies()

    def send(self, line: bytes) -> None:
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except OSError as exc:
            raise _Gone(f"write: {exc.strerror}") from exc

    def reply(self) -> client.Reply:
        deadline = time.monotonic() + TIMEOUT
        fd = self.proc.stdout.fileno()
        while True:
            try:
                got = self.replies.next()
            except client.ProtocolError as exc:
                raise _Gone(str(exc)) from exc
            if got is not None:
                return got
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _Gone("timeout waiting for the mailer")
            data = os.read(fd, 65536)
            if not data:
                raise _Gone("the mailer closed its output")
            self.replies.feed(data)

    def command(self, text: str) -> client.Reply:
        self.send(text.encode("utf-8", "surrogateescape") + b"\r\n")
        return self.reply()


def _data(text: str) -> bytes:
    """The message with CRLF line ends and leading dots doubled, and the closing dot."""
    body = re.sub(r"\r\n|\r|\n", "\r\n", text)
    if not body.endswith("\r\n"):
        body += "\r\n"
    body = re.sub(r"(?m)^\.", "..", body)
    return body.encode("utf-8", "surrogateescape") + b".\r\n"


def _session(d: _Dialog, lmtp: bool, sender: str, rcpts: list[str], text: str,
             out: list[Outcome | None]) -> list[Outcome | None]:
    """The dialog, filling ``out`` as answers come (so what was answered stays answered when the
    program fails later); None stays for recipients not answered."""
    if not d.reply().ok:
        raise _Gone("no greeting")
    hello = d.command("LHLO localhost" if lmtp else "EHLO localhost")
    if not hello.ok and not lmtp:
        hello = d.command("HELO localhost")
    if not hello.ok:
        return [smtp_session.reply_outcome(hello, d.relay, "5.5.0")] * len(rcpts)
    mail = d.command(f"MAIL FROM:<{sender}>")
    if not mail.ok:
        return [smtp_session.reply_outcome(mail, d.relay, "5.1.7")] * len(rcpts)
    accepted = []
    for i, rcpt in enumerate(rcpts):
        r = d.command(f"RCPT TO:<{rcpt}>")
        if r.ok:
            accepted.append(i)
        else:
            out[i] = smtp_session.reply_outcome(r, d.relay, "5.1.1")
    if not accepted:
        return out
    go = d.command("DATA")
    if go.code != 354:
        for i in accepted:
            out[i] = smtp_session.reply_outcome(go, d.relay, "5.0.0")
        return out
    d.send(_data(text))
    for n, i in enumerate(accepted):
        final = d.reply()
        out[i] = smtp_session.reply_outcome(final, d.relay, "5.0.0")
        if not lmtp:  # SMTP: one reply for all
            for j in accepted[n + 1:]:
                out[j] = out[i]
            break
    return out


def deliver(mailer: Mailer, argv: list[str], *, sender: str, recipients: list[str], text: str,
            creds: program.Credentials, cwd: str = "/", env: dict[str, str] | None = None) -> list[Outcome]:
    """Run the mailer and speak LMTP (F=z) or SMTP to it; one Outcome per recipient."""
    try:
        proc = subprocess.Popen(argv, executable=mailer.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=dict(program.ENV, **(env or {})), cwd=cwd,
                                user=creds.uid, group=creds.gid, extra_groups=creds.groups,
                                start_new_session=True)
    except OSError:
        return [program.outcome_for(71 if "l" in mailer.flags else 69, mailer)] * len(recipients)
    d = _Dialog(proc, "localhost")
    answered: list[Outcome | None] = [None] * len(recipients)
    why = "no reply"
    try:
        answered = _session(d, "z" in mailer.flags, sender, recipients, text, answered)
        d.command("QUIT")
    except _Gone as exc:
        why = str(exc)
    finally:
        _close(proc)
    gone = Outcome("4.4.2", f"Deferred: {mailer.name} mailer ({mailer.path}): {why}", reply=f"451 4.4.2 {why}")
    return [o or gone for o in answered]


def _close(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
