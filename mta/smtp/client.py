"""The SMTP client's protocol core, without I/O: replies in, commands out.

``Replies`` splits what the peer sent into whole replies (lines through ``wire.Buffer``, so one
line limit for both sides).  ``Extensions`` is what an EHLO reply offers.  ``Transaction`` is one
message: MAIL, each RCPT, DATA, the text, the final reply; with PIPELINING the commands up to DATA
leave in one write and the replies are matched to them in order (RFC 2920), without it each
command waits for its reply.  ``message_bytes`` gives the text as it goes on the wire: every line
end CRLF (no bare CR or LF can reach the peer), leading dots doubled, the terminating ``.``.
The driver (``mta.mailers.esmtp``) owns the socket, TLS, the connection cache and the timeouts.
"""

from __future__ import annotations

# binascii, not base64.py: that brings re and enum, a fifth of a relayed submission's start
from binascii import a2b_base64, b2a_base64

from mta.record import factory, record
from mta.smtp import wire


class ProtocolError(Exception):
    """The peer sent something that is not an SMTP reply."""


def status_code(word: str) -> bool:
    """``class.subject.detail`` (RFC 3463): 2, 4 or 5, then two numbers of 1 to 3 digits."""
    parts = word.split(".")
    return (len(parts) == 3 and parts[0] in ("2", "4", "5")
            and all(0 < len(p) <= 3 and p.isascii() and p.isdigit() for p in parts[1:]))


@record(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def status(self) -> str:
        """The enhanced status code of the first line (RFC 3463), or ''."""
        word = self.lines[0].split(" ", 1)[0] if self.lines else ""
        return word if status_code(word) else ""

    @property
    def text(self) -> str:
        """All lines joined by spaces, as one line for a log or a DSN."""
        return " ".join(self.lines)

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()

    def wire_lines(self) -> list[str]:
        """The reply as the peer sent it, one string per line, for transcripts."""
        last = len(self.lines) - 1
        return [f"{self.code}{'-' if i < last else ' '}{line}" for i, line in enumerate(self.lines)]


class Replies:
    """Bytes from the peer in, whole replies out."""

    def __init__(self) -> None:
        self._buf = wire.Buffer()
        self._lines: list[str] = []
        self._code = 0

    def feed(self, data: bytes) -> None:
        self._buf.feed(data)

    def clear(self) -> None:
        """Forget what is buffered (after STARTTLS nothing read in clear may count)."""
        self._buf.clear()
        self._lines, self._code = [], 0

    def next(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        while True:
            try:
                raw = self._buf.command()
            except wire.TooLong as exc:
                raise ProtocolError("reply line too long") from exc
            if raw is None:
                return None
            line = raw.decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise ProtocolError(f"invalid reply line {line[:60]!r}")
            code = int(line[:3])
            if self._lines and code != self._code:
                raise ProtocolError("reply code changed inside a multi-line reply")
            self._code = code
            self._lines.append(line[4:])
            if line[3:4] != "-":
                reply = Reply(code, tuple(self._lines))
                self._lines = []
                return reply


@record
class Extensions:
    """What an EHLO reply offers: keyword (upper case) -> its parameters."""

    name: str = ""  # the first word of the reply: the peer's own host name
    keywords: dict[str, list[str]] = factory(dict)

    @classmethod
    def parse(cls, reply: Reply) -> Extensions:
        name = reply.lines[0].split(" ", 1)[0] if reply.lines else ""
        keywords = {}
        for line in reply.lines[1:]:
            words = line.split()
            if words:
                keywords[words[0].upper()] = words[1:]
        return cls(name, keywords)

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def size_limit(self) -> int:
        """SIZE's announced maximum (0: none given)."""
        words = self.keywords.get("SIZE") or ["0"]
        return int(words[0]) if words[0].isdigit() else 0

    @property
    def auth(self) -> set[str]:
        return {w.upper() for w in self.keywords.get("AUTH", [])}


def command(verb: str, arg: str = "") -> bytes:
    """One command line; a CR, LF or NUL in it is refused (an envelope was checked before)."""
    line = f"{verb} {arg}".rstrip() if arg else verb
    if any(c in line for c in "\r\n\0"):
        raise ValueError("CR, LF or NUL in an SMTP command")
    return line.encode("utf-8") + b"\r\n"


def message_bytes(text: bytes) -> bytes:
    """The DATA payload: CRLF line ends, dot-stuffed, ending with CRLF.CRLF."""
    data = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return (b"." if data.startswith(b".") else b"") + data + b".\r\n"


def auth_plain(user: str, password: str, authzid: str = "") -> bytes:
    token = b2a_base64(f"{authzid}\0{user}\0{password}".encode(), newline=False).decode()
    return command("AUTH", f"PLAIN {token}")


def auth_login_answer(challenge: Reply, user: str, password: str) -> bytes:
    """The answer to a 334 challenge of AUTH LOGIN ('Username:' or 'Password:')."""
    try:
        asked = a2b_base64(challenge.lines[0]).decode("latin-1").lower()
    except ValueError:
        asked = ""
    value = user if asked.startswith("user") else password
    return b2a_base64(value.encode(), newline=False) + b"\r\n"


class Transaction:
    """One message to one peer.  ``start()`` gives the first bytes to write; each reply goes to
    ``feed()``, which gives what to write next (b'' for nothing yet); ``done`` says when it ends.
    Afterwards: ``mail`` (MAIL's reply), ``rcpts`` (one reply per recipient, None if never sent),
    ``final`` (the reply to the text, or to DATA when it was refused)."""

    def __init__(self, ext: Extensions, mail: bytes, rcpts: list[bytes], payload: bytes, reset: bool = False):
        self.pipelining = ext.has("PIPELINING")
        self._reset = reset and self.pipelining  # a cached connection's RSET, in the same group
        self._mail_cmd, self._rcpt_cmds, self._payload = mail, rcpts, payload
        self._expect: list[str] = []
        self.mail: Reply | None = None
        self.rcpts: list[Reply | None] = [None] * len(rcpts)
        self.final: Reply | None = None
        self.done = False
        self.dsn = False  # DSN parameters were sent (the driver sets it)
        self._next_rcpt = 0

    def start(self) -> bytes:
        if self.pipelining:
            self._expect = ["RSET"] * self._reset + ["MAIL"] + ["RCPT"] * len(self._rcpt_cmds) + ["DATA"]
            return b"RSET\r\n" * self._reset + self._mail_cmd + b"".join(self._rcpt_cmds) + b"DATA\r\n"
        self._expect = ["MAIL"]
        return self._mail_cmd

    @property
    def accepted(self) -> bool:
        return self.mail is not None and self.mail.ok and any(r is not None and r.ok for r in self.rcpts)

    def feed(self, reply: Reply) -> bytes:
        if not self._expect:
            raise ProtocolError("reply to nothing")
        step = self._expect.pop(0)
        return getattr(self, f"_on_{step.lower()}")(reply)

    def _on_rset(self, reply: Reply) -> bytes:
        if not reply.ok:  # the cached connection is not usable: the caller tries a new one
            raise ProtocolError(f"RSET answered {reply.code}")
        return b""

    def _on_mail(self, reply: Reply) -> bytes:
        self.mail = reply
        if self.pipelining:
            return b""
        if not reply.ok:
            self.final, self.done = reply, True
            return b""
        return self._send_rcpt()

    def _send_rcpt(self) -> bytes:
        if self._next_rcpt < len(self._rcpt_cmds):
            self._expect.append("RCPT")
            self._next_rcpt += 1
            return self._rcpt_cmds[self._next_rcpt - 1]
        if not self.accepted:
            self.done = True
            return b""
        self._expect.append("DATA")
        return b"DATA\r\n"

    def _on_rcpt(self, reply: Reply) -> bytes:
        index = self.rcpts.index(None)
        self.rcpts[index] = reply
        return b"" if self.pipelining else self._send_rcpt()

    def _on_data(self, reply: Reply) -> bytes:
        if reply.code != 354:
            self.final = reply if self.mail is not None and self.mail.ok else self.mail
            self.done = True
            return b""
        self._expect.append("DOT")
        if not self.accepted:  # 354 although nothing was accepted: end an empty message
            self._expect[-1] = "IGNORED"
            return b".\r\n"
        return self._payload

    def _on_dot(self, reply: Reply) -> bytes:
        self.final, self.done = reply, True
        return b""

    def _on_ignored(self, reply: Reply) -> bytes:
        self.done = True
        return b""


# -- what the access map asks of a peer (TLS_Srv:, TLS_Rcpt:) and what authinfo gives -------------

def tls_requirement_error(requirement: str, verify: str, cipher_bits: int) -> tuple[int, str, str] | None:
    """Sendmail's TLS_connection rules (cf/README "STARTTLS"): None when the session is good
    enough for ``requirement`` (an access value such as VERIFY, VERIFY:128, ENCR:56, PERM+VERIFY),
    else (reply code, enhanced status, text).  ``verify`` is ${verify}: OK, FAIL, NO, NONE,
    SOFTWARE (handshake failed), CLEAR."""
    req = requirement.strip()
    code, status = 454, "4.7.0"
    if req.upper().startswith("PERM+"):
        code, status, req = 503, "5.7.0", req[5:]
    elif req.upper().startswith("TEMP+"):
        code, status, req = 403, "4.7.0", req[5:]
    word, _, bits_text = req.partition(":")
    word = word.upper()
    if word not in ("VERIFY", "ENCR"):
        return None
    if verify == "SOFTWARE":
        return code, status, f"{code} TLS handshake failed."
    if word == "VERIFY" and verify != "OK":
        why = {"FAIL": "authentication failed", "NO": "not authenticated", "NONE":
               "other side does not support STARTTLS", "CLEAR": "STARTTLS disabled locally",
               "": "authentication required"}.get(verify, f"authentication failure {verify}")
        return code, status, f"{code} {why}"
    head = bits_text.split("+")[0]
    bits = int(head) if head.isdigit() else 0
    if bits and cipher_bits < bits:
        return code, status, f"{code} encryption too weak {cipher_bits} less than {bits}"
    return None


def authinfo_words(value: str) -> list[str]:
    """The words of an authinfo value: a ``"quoted"`` one without its quotes, else a run of
    anything but white space (a quote that is never closed included)."""
    words, pos, end = [], 0, len(value)
    while pos < end:
        if value[pos] == '"' and (close := value.find('"', pos + 1)) >= 0:
            words.append(value[pos + 1:close])
            pos = close + 1
        elif value[pos].isspace():
            pos += 1
        else:
            start = pos
            while pos < end and not value[pos].isspace():
                pos += 1
            words.append(value[start:pos])
    return words


@record(frozen=True)
class AuthInfo:
    """An authinfo value: ``"U:user" "I:authid" "P:password" "R:realm" "M:PLAIN LOGIN"``."""

    authcid: str = ""  # who logs in: I:, else U:
    authzid: str = ""  # U: when I: is given too (acting for U)
    password: str = ""
    realm: str = ""
    mechanisms: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> AuthInfo:
        items: dict[str, str] = {}
        for text in authinfo_words(value):
            if len(text) >= 2 and text[1] in ":=":
                data = text[2:]
                if text[1] == "=":
                    try:
                        data = a2b_base64(data).decode()
                    except ValueError:
                        data = ""
                items[text[0].upper()] = data
        user, authid = items.get("U", ""), items.get("I", "")
        return cls(authid or user, user if authid else "", items.get("P", ""), items.get("R", ""),
                   tuple(items.get("M", "").upper().split()))

    def mechanism(self, offered: set[str]) -> str:
        """The mechanism to use: the first of ours (M:, else PLAIN LOGIN) the peer offers."""
        for mech in self.mechanisms or ("PLAIN", "LOGIN"):
            if mech in offered and mech in ("PLAIN", "LOGIN"):
                return mech
        return ""
