"""Delivery status notifications (RFC 3464) in sendmail's words (savemail.c, envelope.c).

``build()`` gives the whole notification text (headers and MIME body) for failed or delayed
recipients of one queue entry; the caller queues it from <> like any other message.
Kinds: ``failure`` ('Returned mail: see transcript for details'), ``warning-timeout``
('Warning: could not send message for past 4 hours'), and ``postmaster-notify`` for
notifications about mail from <> (double bounces).
"""

from __future__ import annotations

from mta import log
from mta.message import arpadate, message_id
from mta.record import record

WARNING_BOX = """    **********************************************
    **      THIS IS A WARNING MESSAGE ONLY      **
    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **
    **********************************************

"""


@record(frozen=True)
class Failed:
    """One recipient in a notification."""

    addr: str  # as the sender wrote it
    final: str  # qualified, for Final-Recipient
    status: str  # enhanced status
    reply: str  # '550 5.1.1 User unknown'
    transcript: str  # the transcript line ('550 5.1.1 nosuchuser... User unknown')
    diagnostic: str = ""  # 'X-Unix; 550 5.1.1 User unknown' or 'SMTP; 550 ...'
    action: str = ""  # for receipts: 'delivered (to mailbox)' or 'relayed'
    orcpt: str = ""  # 'rfc822;addr' when the client gave ORCPT



def _qualify(addr: str, host: str) -> str:
    addr = addr.strip("<>")
    return addr if "@" in addr or not addr else f"{addr}@{host}"


def build(*, kind: str, qid: str, host: str, version: str, to: str, arrival: float, origin: str,
          failed: list[Failed], original_headers: str, original_body: str | None, now: float,
          warn_after: int = 0, return_after: int = 0, envid: str = "") -> str:
    """The notification text; ``original_body`` None returns headers only (RET=HDRS)."""
    boundary = f"{qid}.{int(now)}/{host}"
    date = arpadate(now)
    warning = kind == "warning-timeout"
    receipt = kind == "return-receipt"
    if warning:
        subject = f"Warning: could not send message for past {log.pintvl_long(warn_after)}"
    elif receipt:
        subject = "Return receipt"
    elif kind == "postmaster-notify":
        subject = "Postmaster notify: see transcript for details"
    else:
        subject = "Returned mail: see transcript for details"
    auto = {"warning-timeout": "warning-timeout", "postmaster-notify": "postmaster-notification",
            "return-receipt": "return-receipt"}
    head = (f"Received: from localhost (localhost)\n\tby {host} ({version}) id {qid};\n\t{date}\n"
            f"Date: {date}\n"
            f"From: Mail Delivery Subsystem <MAILER-DAEMON>\n"
            f"Message-Id: {message_id(qid, host, now)}\n"
            f"To: {to}\n"
            f"MIME-Version: 1.0\n"
            f"Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n"
            f"Subject: {subject}\n"
            f"Auto-Submitted: auto-generated ({auto.get(kind, 'failure')})\n")
    parts = ["This is a MIME-encapsulated message\n\n", f"--{boundary}\n\n"]
    if warning:
        parts.append(WARNING_BOX)
    parts.append(f"The original message was received at {arpadate(arrival)}\nfrom {origin}\n\n")
    if receipt:
        parts.append("   ----- The following addresses had successful delivery notifications -----\n")
        for f in failed:
            how = "successfully delivered to mailbox" if f.action.startswith("delivered") else \
                "relayed to non-DSN-aware mailer"
            parts.append(f"{f.addr}  ({how})\n")
        parts.append("\n")
    elif not warning:
        parts.append("   ----- The following addresses had permanent fatal errors -----\n")
        for f in failed:
            parts.append(f"{f.addr}\n    (reason: {f.reply})\n")
        parts.append("\n")
    parts.append("   ----- Transcript of session follows -----\n")
    for f in failed:
        parts.append(f"{f.transcript}\n")
    if warning:
        parts.append(f"Warning: message still undelivered after {log.pintvl_long(warn_after)}\n"
                     f"Will keep trying until message is {log.pintvl_long(return_after)} old\n")
    parts.append(f"\n--{boundary}\nContent-Type: message/delivery-status\n\n"
                 + (f"Original-Envelope-Id: {envid}\n" if envid else "")
                 + f"Reporting-MTA: dns; {host}\nArrival-Date: {arpadate(arrival)}\n\n")
    for f in failed:
        final = _qualify(f.final, host)
        if f.orcpt:
            parts.append(f"Original-Recipient: {f.orcpt}\n")
        action = f.action or ("delayed" if warning else "failed")
        parts.append(f"Final-Recipient: RFC822; {final}\nX-Actual-Recipient: rfc822; {final}\n"
                     f"Action: {action}\nStatus: {f.status}\n")
        if f.diagnostic and not warning:
            parts.append(f"Diagnostic-Code: {f.diagnostic}\n")
        parts.append(f"Last-Attempt-Date: {date}\n")
        if warning:
            parts.append(f"Will-Retry-Until: {arpadate(arrival + return_after)}\n")
        parts.append("\n")
    if original_body is None:
        parts.append(f"--{boundary}\nContent-Type: text/rfc822-headers\n\n{original_headers}\n")
    else:
        parts.append(f"--{boundary}\nContent-Type: message/rfc822\n\n{original_headers}\n{original_body}")
        if not original_body.endswith("\n"):
            parts.append("\n")
        parts.append("\n")
    parts.append(f"--{boundary}--\n")
    return head + "\n" + "".join(parts)
