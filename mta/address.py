"""Addresses: RFC 5321 envelope addresses and RFC 5322 address lists, in sendmail's canonical forms.

Grammar we accept (a practical subset of RFC 5322 3.4 and RFC 5321 4.1.2):
    address   = [phrase] "<" [route ":"] addr-spec ">" / addr-spec / "<>"
    addr-spec = local-part ["@" domain]          ; an unqualified local-part is a local user
    domain    = dot-atom / "[" literal "]"
Comments ``( ... )`` are dropped.  ``parse()`` raises ``errors.AddressError`` with sendmail's
phrase (``Unbalanced '<'``, ...) for text it cannot read; it never accepts CR, LF or NUL.
"""

from __future__ import annotations

import re

from mta import errors
from mta.record import record

_FORBIDDEN = re.compile(r"[\r\n\x00]")


@record(frozen=True)
class Address:
    """A parsed address: ``local`` and ``domain`` ('' when unqualified); ``null`` for <>."""

    local: str
    domain: str = ""

    @property
    def null(self) -> bool:
        return not self.local and not self.domain

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def bracketed(self) -> str:
        return f"<{self}>"


def unbracket(text: str) -> str:
    """'<a@b>' -> 'a@b' (a queue file's S line or a log's from=); anything else as it is."""
    return text[1:-1] if text.startswith("<") and text.endswith(">") else text


def _strip_comments(text: str) -> str:
    out, depth, quoted, escaped = [], 0, False, False
    for ch in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
        elif ch == '"' and depth == 0:
            quoted = not quoted
            out.append(ch)
        elif ch == "(" and not quoted:
            depth += 1
        elif ch == ")" and not quoted:
            if depth == 0:
                raise errors.AddressError("Unbalanced ')'")
            depth -= 1
        elif depth == 0:
            out.append(ch)
    if quoted:
        raise errors.AddressError("Unbalanced '\"'")
    if depth:
        raise errors.AddressError("Unbalanced '('")
    return "".join(out)


def _angle_part(text: str) -> str:
    """The part inside <...> if any, checking balance as sendmail's prescan does."""
    opens, closes = text.count("<"), text.count(">")
    if opens > closes:
        raise errors.AddressError("Unbalanced '<'")
    if closes > opens:
        raise errors.AddressError("Unbalanced '>'")
    if opens == 0:
        return text
    if opens > 1:
        raise errors.AddressError("Unbalanced '<'")
    start, end = text.index("<"), text.index(">")
    if end < start:
        raise errors.AddressError("Unbalanced '>'")
    return text[start + 1:end]


def parse(text: str) -> Address:
    """Parse one envelope or header address into an ``Address``."""
    if _FORBIDDEN.search(text):
        raise errors.AddressError("Invalid character in address")
    inner = _angle_part(_strip_comments(text)).strip()
    if ":" in inner and inner.startswith("@"):  # source route: keep the final mailbox
        inner = inner.split(":", 1)[1]
    if not inner:
        return Address("")
    if inner == "@":
        raise errors.AddressError("User address required")
    local, at, domain = inner.rpartition("@")
    if not at:
        local, domain = inner, ""
    if not local or (at and not domain):
        raise errors.AddressError("User address required" if not local else "Domain name required")
    if "@" in local and not local.startswith('"'):
        raise errors.AddressError("Invalid route address")
    if domain and not re.fullmatch(r"\[[^\[\]\s]+\]|[A-Za-z0-9_.-]+", domain):
        raise errors.AddressError(f"Invalid host name {domain}" if " " not in domain else "Invalid address")
    if domain.startswith(".") or ".." in domain:
        raise errors.AddressError("Invalid host name")
    if re.search(r"\s", local) and not local.startswith('"'):
        local = re.sub(r"\s+", " ", local).replace(" ", "")
    return Address(local, domain)


def split_list(text: str, groups: bool = True) -> list[str]:
    """Split an RFC 5322 address-list header value into its address texts (groups flattened
    unless ``groups`` is false, as in alias values where ':include:' is no group)."""
    items, buf, depth, quoted, angle = [], [], 0, False, 0
    for ch in text:
        if quoted:
            buf.append(ch)
            if ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "<" and not depth:
            angle += 1
        elif ch == ">" and not depth and angle:
            angle -= 1
        elif ch in ",;" and not depth and not angle:
            items.append("".join(buf))
            buf = []
            continue
        elif ch == ":" and groups and not depth and not angle:  # group display-name ends here
            buf = []
            continue
        buf.append(ch)
    items.append("".join(buf))
    return [i.strip() for i in items if i.strip()]


def header_addresses(value: str) -> list[Address]:
    """Every address in a To/Cc/Bcc value; unreadable items raise AddressError."""
    return [a for a in (parse(item) for item in split_list(value)) if not a.null]
