"""The esmtp and relay mailers: hand a message to another MTA over (E)SMTP with smtplib.

One connection carries one message for all recipients routed to the same host; each recipient
gets its own Outcome from its RCPT reply and the final DATA reply.  Hosts come from MX records
(``mta.dns``) or, for ``[host]``, straight from the name.  Envelope addresses were checked to hold
no CR, LF or NUL; every line end of the message becomes CRLF here and smtplib dot-stuffs it, so
no bare CR or LF reaches the wire.  With ``transcript`` set, the dialog is written there as sendmail -v does.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl

from mta import dns, errors
from mta.mailers import Outcome
from mta.message import to_bytes

DEFAULT_TIMEOUT = 300


class _Client(smtplib.SMTP):
    """smtplib.SMTP that copies the dialog to a transcript (-v) and a traffic log (-X)."""

    transcript = None
    traffic = None

    def _traffic(self, mark: str, text: str) -> None:
        if self.traffic is not None:
            for line in text.split("\n"):
                self.traffic.write(f"{os.getpid():05d} {mark} {line}\n")

    def putcmd(self, cmd, args=""):
        if self.transcript is not None:
            self.transcript.write(f">>> {cmd} {args}".rstrip() + "\n")
        self._traffic(">>>", f"{cmd} {args}".rstrip())
        return super().putcmd(cmd, args)

    def data(self, msg):
        self._traffic(">>>", msg.decode("latin-1").replace("\r\n", "\n").rstrip("\n"))
        return super().data(msg)

    def getreply(self):
        code, msg = super().getreply()
        lines = msg.decode("latin-1", "replace").split("\n") or [""]
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            if self.transcript is not None:
                self.transcript.write(f"{code}{sep}{line}\n")
            self._traffic("<<<", f"{code}{sep}{line}")
        return code, msg


def _connect_target(host: str, nameservers: str) -> tuple[str, str]:
    """(address to connect to, relay= text for the log)."""
    ip = dns.address(host, nameservers)
    return ip, (f"{host} [{ip}]" if host.startswith("[") else f"{host}. [{ip}]")


def _reply_outcome(code: int, msg: bytes, relay: str, default_status: str) -> Outcome:
    text = msg.decode("latin-1", "replace").replace("\n", " ")
    status = text.split(" ", 1)[0] if text[:1].isdigit() and text.count(".") >= 2 else default_status
    reply = f"{code} {text}"
    if 200 <= code < 300:
        return Outcome("2.0.0", f"Sent ({text.removeprefix(status).strip()})", relay, reply)
    if 400 <= code < 500:
        return Outcome(status if status[:1] == "4" else "4.0.0", f"Deferred: {reply}", relay, reply)
    plain = text.removeprefix(status).strip()
    return Outcome(status if status[:1] == "5" else "5.0.0", plain, relay, reply)


def deliver(*, host: str, port: int, helo: str, sender: str, recipients: list[str], text: str,
            timeout: float = DEFAULT_TIMEOUT, transcript=None, nameservers: str = "",
            dsn: tuple[list[str], list[list[str]]] | None = None, traffic=None) -> list[Outcome]:
    """Send text from sender to recipients at host ([host]: no MX lookup); one Outcome each.
    ``dsn`` is (MAIL parameters, RCPT parameters per recipient), sent when the host offers DSN."""
    try:
        hosts = dns.mail_hosts(host, nameservers)
    except errors.MTAError as exc:
        return [Outcome.from_error(exc)] * len(recipients)
    last = errors.TempFail(f"Connection refused by {host}", status="4.4.1")
    last_relay = ""
    for mx in hosts:
        try:
            target, relay = _connect_target(mx, nameservers)
            client = _Client(timeout=timeout)
            client.transcript, client.traffic = transcript, traffic
            client._host = mx.strip("[]")  # STARTTLS's server_hostname; smtplib sets it only in __init__
            client.connect(target, port)
        except errors.MTAError as exc:
            last, last_relay = exc, ""
            continue
        except (OSError, smtplib.SMTPException) as exc:
            reason = "Connection refused" if isinstance(exc, ConnectionRefusedError) else (
                "Connection timed out" if isinstance(exc, TimeoutError) else "Connection reset")
            last, last_relay = errors.TempFail(f"{reason} by {mx}", status="4.4.1"), relay
            continue
        try:
            return _transaction(client, helo, sender, recipients, text, relay, dsn)
        except (OSError, smtplib.SMTPException) as exc:
            last = errors.TempFail(f"Connection reset by {mx}: {exc}", status="4.4.2")
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
    return [Outcome.from_error(last, last_relay)] * len(recipients)


def _transaction(client: _Client, helo: str, sender: str, recipients: list[str], text: str,
                 relay: str, dsn=None) -> list[Outcome]:
    code, msg = client.ehlo(helo)
    if code != 250:
        code, msg = client.helo(helo)
        if code != 250:
            return [_reply_outcome(code, msg, relay, "5.5.0")] * len(recipients)
    if client.has_extn("starttls"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.starttls(context=context)
        client.ehlo(helo)
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", to_bytes(text))  # no bare CR or LF on the wire
    options = [f"SIZE={len(data)}"] if client.has_extn("size") else []
    with_dsn = dsn is not None and client.has_extn("dsn")
    if with_dsn:
        options += dsn[0]
    code, msg = client.mail(sender, options)
    if code != 250:
        return [_reply_outcome(code, msg, relay, "5.1.7")] * len(recipients)
    outcomes: list[Outcome | None] = []
    for i, rcpt in enumerate(recipients):
        code, msg = client.rcpt(rcpt, dsn[1][i] if with_dsn else [])
        outcomes.append(None if code in (250, 251) else _reply_outcome(code, msg, relay, "5.1.1"))
    if all(o is not None for o in outcomes):
        client.rset()
        return outcomes  # type: ignore[return-value]
    code, msg = client.data(data)
    final = _reply_outcome(code, msg, relay, "5.0.0")
    if with_dsn and final.kind == "sent":
        final = Outcome(final.status, final.text, final.relay, final.reply, dsn_passed=True)
    return [o if o is not None else final for o in outcomes]
