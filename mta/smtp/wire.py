"""Bytes in, lines out: the SMTP input buffer, with every limit and the end-of-data rules.

No I/O here.  ``Buffer.feed`` takes whatever the transport read; ``command()`` gives the next
command line (CRLF or, as Sendmail accepts, a bare LF ends it); ``data()`` consumes message
lines until ``CRLF.CRLF``.  In DATA only CRLF ends a line: a bare LF or bare CR anywhere is an
error (SMTP smuggling: no ``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n``... can end a message), and a
leading dot is removed (dot-stuffing).  Limits: a command line of at most MAX_COMMAND bytes;
in DATA bytes are consumed as they arrive, also from a line not yet ended, so at most two
bytes wait in the buffer; message bytes beyond ``max_size`` are counted and dropped.
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
        self._bol = True

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
        self._bol = True  # the next byte starts a line (where '.' means stuffing or the end)

    def data(self, max_size: int) -> bool:
        """Consume message bytes; True once the terminating '.' line has been read.

        Bytes are taken as they arrive, also from an unfinished line, so nothing is searched
        twice and at most two bytes (a '.' or a CR that the next read completes) stay buffered."""
        if self._whole_lines(max_size):
            return True
        buf, pos = self._buf, 0
        try:
            while True:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    pos = self._partial(pos, max_size)
                    return False
                line = bytes(buf[pos:end])
                pos = end + 2
                if self._bol and line == b".":
                    return True
                self._take(line, max_size)
                self._take(b"\r\n", max_size)
                self._bol = True
        finally:
            del buf[:pos]

    def _whole_lines(self, max_size: int) -> bool:
        """The common case at once: the complete lines buffered, when none has a bare CR or LF
        and they fit in max_size, taken as _take takes them line by line.  True once the
        terminating '.' line was among them; anything else is left to the line-by-line path."""
        buf = self._buf
        if self._bol and buf.startswith(b".\r\n"):
            return False
        end = buf.find(b"\r\n.\r\n")
        cut = end + 2 if end >= 0 else buf.rfind(b"\r\n") + 2
        if cut < 2:
            return False
        lines = bytes(buf[:cut])
        breaks = lines.count(b"\r\n")
        if lines.count(b"\r") != breaks or lines.count(b"\n") != breaks:
            return False  # a bare line end: the line-by-line path says which, where
        if self._bol and lines.startswith(b"."):
            lines = lines[1:]
        lines = lines.replace(b"\r\n.", b"\r\n")  # unstuffed: every line after a CRLF
        if max_size and self.size + len(lines) > max_size:
            return False
        self.nul = self.nul or b"\0" in lines
        self.size += len(lines)
        self.message += lines
        self._bol = True
        del buf[:cut + 3 if end >= 0 else cut]
        return end >= 0

    def _partial(self, pos: int, max_size: int) -> int:
        """Take what is safe of an unfinished line; returns where the kept tail starts."""
        rest = bytes(self._buf[pos:])
        keep = 1 if rest.endswith(b"\r") else 0  # may be the first half of CRLF
        if self._bol and rest[:len(rest) - keep] in (b"", b"."):
            return pos  # '.', '.\r' or nothing yet: the next byte decides
        self._take(rest[:len(rest) - keep], max_size)
        self._bol = False
        return len(self._buf) - keep

    def _take(self, piece: bytes, max_size: int) -> None:
        """One piece of a line (or its CRLF): checked, unstuffed, counted, kept while in size."""
        if piece != b"\r\n":
            if b"\n" in piece:
                raise BareLineEnd("LF")
            if b"\r" in piece:
                raise BareLineEnd("CR")
            if self._bol and piece.startswith(b"."):
                piece = piece[1:]
            self._bol = self._bol and not piece
            if b"\0" in piece:
                self.nul = True
        self.size += len(piece)
        if not max_size or self.size <= max_size:
            self.message += piece


FIELD_NAME = bytes(range(33, 127))  # a header field's name: printable US-ASCII up to its colon


def header_line(line: bytes | bytearray) -> bool:
    """Whether line starts a header field: a name of FIELD_NAME bytes, then the colon."""
    colon = line.find(b":")
    return colon > 0 and not line[:colon].translate(None, FIELD_NAME)


def header_length(data: bytes | bytearray, limit: int) -> int:
    """Bytes in the header section: up to a blank line or the first line that is no header
    (as collect() decides); counting stops past limit."""
    pos = 0
    while pos < len(data) and pos <= limit:
        end = data.find(b"\r\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end]
        if not line or not (line[:1] in (b" ", b"\t") or header_line(line)):
            break
        pos = end + 2
    return pos
