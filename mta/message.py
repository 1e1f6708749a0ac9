"""Messages: reading input as sendmail's collect() does, headers, and the headers sendmail adds.

Text is held as ``str`` decoded from bytes with latin-1, so every byte survives unchanged
(``to_bytes`` gives the bytes back).  Header values keep their continuation lines ("\\n\\t...").
A header may carry a condition: ``?P?`` means "only for mailers with flag P" (op.me, H lines);
``Header.cond`` holds those letters ('' for unconditional).
"""

from __future__ import annotations

import time

from mta.record import factory, record

ENCODING = "latin-1"
MAX_HEADER_BYTES = 32768  # MaxHeadersLength default


def to_bytes(text: str) -> bytes:
    return text.encode(ENCODING)


def header_name(line: str) -> tuple[str, int]:
    """A header line's field name and where its colon is; ('', -1) when it is no header line.
    The name is printable ASCII, no space or colon ([!-9;-~]+), then spaces or tabs, then ':'."""
    colon = line.find(":")
    name = line[:colon].rstrip(" \t") if colon > 0 else ""
    if not name or not name.isascii() or not name.isprintable() or " " in name:
        return "", -1
    return name, colon


def from_bytes(data: bytes) -> str:
    return data.decode(ENCODING)


@record
class Header:
    name: str
    value: str
    cond: str = ""

    def render(self) -> str:
        return f"{self.name}: {self.value}\n"


@record
class Message:
    headers: list[Header] = factory(list)
    body: str = ""

    def get(self, name: str) -> Header | None:
        lname = name.lower()
        return next((h for h in self.headers if h.name.lower() == lname), None)

    def remove(self, name: str) -> None:
        lname = name.lower()
        self.headers = [h for h in self.headers if h.name.lower() != lname]

    def header_text(self, mailer_flags: str | None = None) -> str:
        """Headers as they go out; with mailer_flags, conditional headers are filtered."""
        return "".join(h.render() for h in self.headers
                       if not h.cond or mailer_flags is None or set(h.cond) & set(mailer_flags))

    @property
    def size(self) -> int:
        return len(self.header_text()) + 1 + len(self.body)


def collect(data: bytes, ignore_dots: bool) -> str:
    """The message text from command-line input: CRLF -> LF; without -i a line holding only
    '.' ends it and a leading '..' loses one dot (collect.c); a missing final newline is added."""
    text = from_bytes(data).replace("\r\n", "\n")
    if not ignore_dots:
        out = []
        for line in text.split("\n"):
            if line == ".":
                out.append("")
                break
            out.append(line[1:] if line.startswith("..") else line)
        text = "\n".join(out)
    if text and not text.endswith("\n"):
        text += "\n"
    return text


def parse(text: str) -> Message:
    """Split text into headers and body.  A leading Unix 'From ' line is dropped; input that
    does not start with a header is all body."""
    if text.startswith("From "):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    msg = Message()
    pos = 0
    size = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        if line == "":
            pos = end + 1
            break
        if line[:1] in (" ", "\t") and msg.headers:
            msg.headers[-1].value += "\n" + line
        else:
            name, colon = header_name(line)
            if not name or size > MAX_HEADER_BYTES:
                break
            msg.headers.append(Header(name, line[colon + 1:].lstrip(" \t")))
        size += len(line) + 1
        pos = end + 1
    msg.body = text[pos:]
    return msg


def arpadate(when: float | None = None) -> str:
    """RFC 5322 date as sendmail's arpadate(): 'Wed, 25 Nov 2026 23:52:06 GMT' or '+0100 (CET)'."""
    when = time.time() if when is None else when
    tm = time.localtime(when)
    base = time.strftime("%a, ", tm) + f"{tm.tm_mday} " + time.strftime("%b %Y %H:%M:%S", tm)
    off = tm.tm_gmtoff or 0
    if off == 0:
        return base + " GMT"
    sign = "+" if off > 0 else "-"
    off = abs(off)
    zone = f" {sign}{off // 3600:02d}{off % 3600 // 60:02d}"
    return base + zone + (f" ({tm.tm_zone})" if tm.tm_zone and tm.tm_zone[0].isalpha() else "")


def ctime(when: float) -> str:
    """C ctime() without the newline: 'Wed Nov  5 23:54:01 2026'."""
    return time.ctime(when)


def message_id(qid: str, host: str, when: float) -> str:
    """sendmail's <$t.$i@$j>: $t is YYYYMMDDHHMM."""
    return f"<{time.strftime('%Y%m%d%H%M', time.localtime(when))}.{qid}@{host}>"


def received(*, host: str, version: str, qid: str, when: float, local_user: str = "",
             helo: str = "", relay: str = "", proto: str = "", for_rcpt: str = "", tls: str = "",
             auth: str = "") -> str:
    """The Received: value (cfhead.m4 confRECEIVED_HEADER), continuation lines included."""
    if local_user:
        first = f"(from {local_user}@localhost)"
    else:
        first = f"from {helo} ({relay})" if helo else f"from {relay}"
    if auth:
        first += "\n\t(authenticated bits=0)"
    line2 = f"by {host} ({version}) " + (f"with {proto} " if proto else "") + f"id {qid}"
    if tls:
        line2 += f"\n\t({tls})"
    if for_rcpt:
        return f"{first}\n\t{line2}\n\tfor {for_rcpt}; {arpadate(when)}"
    return f"{first}\n\t{line2};\n\t{arpadate(when)}"


def from_header(sender: str, full_name: str) -> str:
    """H?F?From: $?x$x <$g>$|$g$."""
    return f"{full_name} <{sender}>" if full_name else sender
