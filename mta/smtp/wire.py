"""Bytes in, lines out: the SMTP input buffer, with every limit and the end-of-data rules.

No I/O here.  ``Buffer.feed`` takes whatever the transport read; ``command()`` gives the next
command line (CRLF or, as Sendmail accepts, a bare LF ends it); ``data()`` consumes message
lines until ``CRLF.CRLF``.  In DATA only CRLF ends a line: a bare LF or bare CR anywhere is an
error (SMTP smuggling: no ``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n``... can end a message), and a
leading dot is removed (dot-stuffing).  Limits: a command line of at most MAX_COMMAND bytes;
message bytes beyond ``max_size`` are counted and dropped, never buffered.
"""

from __future__ import annotations

MAX_COMMAND = 2046  # Sendmail closes the connection past this ("Command too long")


class TooLong(Exception):
    """A command line longer than MAX_COMMAND."""


class BareLineEnd(Exception):
    """A bare CR or LF inside DATA; ``which`` is 'LF' or 'CR'."""

    def __init__(self, which: str):
        super().__init__(which)
        self.which = which


class Buffer:
    def __init__(self) -> None:
        self._buf = bytearray()
        self.message = bytearray()  # DATA collected so far (without dot-stuffing)
        self.size = 0  # DATA bytes seen, also past max_size
        self.nul = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        """Drop what is buffered (after STARTTLS: nothing sent in clear may be obeyed)."""
        self._buf.clear()

    @property
    def pending(self) -> bool:
        return bool(self._buf)

    def command(self) -> bytes | None:
        """The next command line without its line end, or None until one is complete."""
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > MAX_COMMAND:
                raise TooLong()
            return None
        if end > MAX_COMMAND:
            raise TooLong()
        line = bytes(self._buf[:end])
        del self._buf[:end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def start_data(self) -> None:
        self.message = bytearray()
        self.size = 0
        self.nul = False

    def data(self, max_size: int) -> bool:
        """Consume message lines; True once the terminating '.' line has been read."""
        buf, pos = self._buf, 0
        try:
            while True:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    # An unfinished line may only hold a CR as its very last byte.
                    if buf.find(b"\n", pos) >= 0:
                        raise BareLineEnd("LF")
                    cr = buf.find(b"\r", pos)
                    if 0 <= cr < len(buf) - 1:
                        raise BareLineEnd("CR")
                    return False
                line = bytes(buf[pos:end])
                pos = end + 2
                if b"\n" in line:
                    raise BareLineEnd("LF")
                if b"\r" in line:
                    raise BareLineEnd("CR")
                if line == b".":
                    return True
                if line.startswith(b"."):
                    line = line[1:]
                if b"\0" in line:
                    self.nul = True
                self.size += len(line) + 2
                if not max_size or self.size <= max_size:
                    self.message += line
                    self.message += b"\r\n"
        finally:
            del buf[:pos]
