"""A small, bounded SMTP load client for the lab (smtpload-style), run on the outside host.

usage: python scripts/lab_load.py DOMAIN RCPT COUNT CLIENTS
CLIENTS threads send COUNT messages in all to RCPT, each on a connection of its own, choosing
the host as an MTA does: DOMAIN's MX records in preference order, equal preferences shuffled,
the next one when a host refuses or drops the connection.  One line per message on stdout:
``ack N HOST`` once a host answered 250 to the message, ``unsent N`` when no host took it;
``retry N HOST REASON`` for each host that failed it on the way.
"""

from __future__ import annotations

import random
import smtplib
import sys
import threading

import dns.resolver

TIMEOUT = 15


def mx_hosts(domain: str) -> list[tuple[int, str]]:
    return [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in dns.resolver.resolve(domain, "MX")]


def order(records: list[tuple[int, str]]) -> list[str]:
    return [host for _pref, _r, host in sorted((p, random.random(), h) for p, h in records)]


def send_one(host: str, rcpt: str, n: int) -> str:
    """'' when host acknowledged message n, else why not."""
    body = (f"From: load@outside.example.test\r\nTo: {rcpt}\r\nSubject: load {n}\r\n"
            f"Message-ID: <load.{n}@outside.example.test>\r\n\r\nmessage {n} of the lab's load run\r\n")
    try:
        with smtplib.SMTP(host, 25, timeout=TIMEOUT, local_hostname="mail.outside.example.test") as c:
            c.ehlo()
            for code, text in (c.mail("load@outside.example.test"), c.rcpt(rcpt), c.data(body.encode())):
                if code != 250:
                    return f"{code} {text.decode(errors='replace')}"
        return ""
    except (OSError, smtplib.SMTPException) as exc:
        return f"{type(exc).__name__}: {exc}"


def main() -> None:
    domain, rcpt, count, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    records = mx_hosts(domain)
    numbers = iter(range(1, count + 1))
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            print(line, flush=True)

    def client() -> None:
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            for host in order(records):
                why = send_one(host, rcpt, n)
                if not why:
                    say(f"ack {n} {host}")
                    break
                say(f"retry {n} {host} {why}")
            else:
                say(f"unsent {n}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
