"""Addresses: the one parser for envelope paths (SMTP, the command line) and header addresses (-t).

Grammar (RFC 5322 3.2-3.4 and RFC 5321 4.1.2), with the readings of Sendmail's canonify and Parse0
rule sets (cf/m4/proto.m4) where they differ:

    address        = name-addr / addr-spec / "<>"             ; "<>" is the null sender
    name-addr      = [phrase] "<" [A-d-l ":"] addr-spec ">"
    A-d-l          = At-domain *( "," At-domain )             ; a source route: dropped (RFC 5321 C)
    At-domain      = "@" domain
    addr-spec      = local-part [ "@" domain ]                ; no domain: a local name (Sendmail)
    local-part     = word *( "." word )                       ; dot-atom and obs-local-part
    word           = atom / quoted-string
    atom           = 1*( atext / "\" CHAR )                   ; atext has ! # $ % & ' * + - / = ? ^ _ ` { | } ~
    quoted-string  = DQUOTE *( qtext / quoted-pair ) DQUOTE
    quoted-pair    = "\" ( VCHAR / WSP )
    domain         = label *( "." label ) [ "." ]            ; LDH and "_", IDN U-labels; final dot dropped
    domain-literal = "[" ( IPv4-address / "IPv6:" IPv6-address ) "]"
    comment        = "(" *( ctext / quoted-pair / comment ) ")" ; dropped wherever it stands
    group          = display-name ":" [address-list] ";"      ; split_list() flattens groups

Sendmail's readings (proto.m4 canonify): an unqualified ``host!user`` is ``user@host`` and an
unqualified ``user%host`` is ``user@host`` (the rightmost ``%``).  A quoted local part is ONE
local part: ``"a@b"@here`` is the local name ``a@b`` at ``here`` and ``"a@b"`` alone is the local
name ``a@b``; nothing here or later parses its content again as an address.  (``routed()`` says
what address a local part would name if it were, so the relay check can refuse it as Sendmail's
check_rcpt does.)  A quoted string whose content needs no quotes loses them (``"bob"`` is ``bob``).

``parse()`` raises ``errors.AddressError`` with Sendmail's phrase and enhanced status:
``Unbalanced '<'`` (5.0.0), ``Invalid route address`` (5.1.3), ``User address required`` (5.1.3),
``Hostname required`` (5.1.3), ``Colon illegal in host name part`` (5.1.3), ``Invalid host name``
(5.1.2), ``Invalid address`` (5.1.2), ``prescan: token too long`` (5.1.0), ``Address too long``
(5.1.1).  It never accepts CR, LF or NUL, and raises nothing else.
"""

from __future__ import annotations

from mta import errors
from mta.record import record

MAXNAME = 256  # Sendmail's MAXNAME: the longest token
MAXADDR = MAXNAME + 40 - 5  # PSBUFSIZE less prescan's reserve: the longest address
SPECIALS = "<>@,;:"
_ATEXT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-")
_LABEL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def dot_atom(text: str) -> bool:
    """RFC 5322 dot-atom-text: atext runs joined by single dots."""
    return all(part and _ATEXT.issuperset(part) for part in text.split("."))


def host_label(label: str) -> bool:
    """A host name label as Sendmail takes it: letters, digits, '_' and '-', no '-' at either end."""
    return bool(label) and _LABEL.issuperset(label) and label[0] != "-" and label[-1] != "-"


@record(frozen=True)
class Address:
    """A parsed address: ``local`` as written (quoted strings and escapes kept) and ``domain``
    ('' when unqualified; an address literal is ``[1.2.3.4]`` / ``[IPv6:...]``); ``null`` for <>."""

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

    @property
    def user(self) -> str:
        """The local part without its quotes and escapes: what a mailbox or alias is named."""
        return dequote(self.local)


def unbracket(text: str) -> str:
    """'<a@b>' -> 'a@b' (a queue file's S line or a log's from=); anything else as it is."""
    return text[1:-1] if text.startswith("<") and text.endswith(">") else text


def dequote(local: str) -> str:
    """'"a b"' -> 'a b', 'a\\@b' -> 'a@b': quotes and backslash escapes removed."""
    out, escaped = [], False
    for ch in local:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch != '"':
            out.append(ch)
    return "".join(out)


def _error(text: str, status: str) -> errors.AddressError:
    return errors.AddressError(text, status=status)


# -- tokens ---------------------------------------------------------------------------------------

def _comment(text: str, i: int) -> int:
    """The index after the comment that starts at text[i] == '('."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _error("Unbalanced '('", "5.0.0")


def _quoted(text: str, i: int) -> int:
    """The index after the quoted string that starts at text[i] == '"'."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    raise _error("Unbalanced '\"'", "5.0.0")


def _atom(text: str, i: int) -> int:
    while i < len(text) and text[i] not in SPECIALS + '"()[] \t':
        i += 2 if text[i] == "\\" else 1
    return min(i, len(text))


def tokenize(text: str) -> list[str]:
    """The tokens of text: atoms, quoted strings, [literals] and the specials; comments and
    white space dropped.  Raises AddressError for what cannot be read."""
    tokens, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch in " \t":
            i += 1
            continue
        if ch == "(":
            i = _comment(text, i)
            continue
        if ch == ")":
            raise _error("Unbalanced ')'", "5.0.0")
        if ch in SPECIALS:
            end = i + 1
        elif ch == '"':
            end = _quoted(text, i)
        elif ch == "[":
            end = text.find("]", i) + 1 or len(text)
        else:
            end = max(_atom(text, i), i + 1)
        if max(len(part) for part in text[i:end].split(".")) > MAXNAME:  # "." is a token of its own
            raise _error("prescan: token too long", "5.1.0")
        tokens.append(text[i:end])
        i = end
    return tokens


# -- the parts ------------------------------------------------------------------------------------

def _angle(tokens: list[str]) -> list[str]:
    """The tokens inside <...> if any, checking balance as Sendmail's prescan does; outside them
    stands a display name, which is dropped."""
    opens, closes = tokens.count("<"), tokens.count(">")
    if opens > closes:
        raise _error("Unbalanced '<'", "5.0.0")
    if closes > opens:
        raise _error("Unbalanced '>'", "5.0.0")
    if opens == 0:
        return _ungroup(tokens)
    if opens > 1:
        raise _error("Unbalanced '<'", "5.0.0")
    start, end = tokens.index("<"), tokens.index(">")
    if end < start:
        raise _error("Unbalanced '>'", "5.0.0")
    return tokens[start + 1:end]


def _ungroup(tokens: list[str]) -> list[str]:
    """Outside brackets, 'name: addr;' is a group: keep the address (proto.m4 canonify)."""
    if tokens[-1:] == [";"]:
        tokens = tokens[:-1]
    if ":" in tokens and tokens[:1] != ["@"] and not any(t.startswith("[") for t in tokens):
        tokens = tokens[tokens.index(":") + 1:]
    return tokens


def _unroute(tokens: list[str]) -> list[str]:
    """'@a,@b:user@c' -> 'user@c': a source route is dropped (RFC 5321 appendix C, canonify)."""
    if tokens[:1] != ["@"] or ":" not in tokens:
        return tokens
    colon = tokens.index(":")
    for i, tok in enumerate(tokens[:colon]):
        want_at = i % 3 == 0
        if (tok == "@") != want_at or (i % 3 == 2 and tok != ","):
            raise _error("Invalid route address", "5.1.3")
    return tokens[colon + 1:]


def _local(tokens: list[str]) -> str:
    if "@" in tokens or "," in tokens or ":" in tokens:  # a colon only in a route or a group
        raise _error("Invalid route address", "5.1.3")
    if any(t.startswith("[") for t in tokens) or ";" in tokens:
        raise _error("Invalid address", "5.1.2")
    local = "".join(tokens)
    if local.startswith('"') and local.endswith('"') and len(tokens) == 1 and dot_atom(local[1:-1]):
        local = local[1:-1]  # "bob" is bob
    return local


def literal(text: str) -> str | None:
    """'[1.2.3.4]' / '[IPv6:...]' in canonical form, or None when it is no address literal."""
    import ipaddress  # only for literals: not on every command's start

    body = text[1:-1]
    tag, colon, rest = body.partition(":")
    try:
        if colon and tag.lower() == "ipv6":
            return f"[IPv6:{ipaddress.IPv6Address(rest).compressed}]"
        return f"[{ipaddress.IPv4Address(body)}]" if not colon else None
    except ValueError:
        return None


def ascii_domain(domain: str) -> str:
    """The domain in lower-case ASCII (IDN U-labels as A-labels), for comparisons and DNS."""
    try:
        return domain.encode("idna").decode("ascii").lower() if not domain.isascii() else domain.lower()
    except UnicodeError as exc:
        raise _error("Invalid host name", "5.1.2") from exc


def _domain(tokens: list[str]) -> str:
    if not tokens:
        raise _error("Hostname required", "5.1.3")
    if ":" in tokens:
        raise _error("Colon illegal in host name part", "5.1.3")
    if tokens[0].startswith("["):
        found = literal(tokens[0]) if len(tokens) == 1 and tokens[0].endswith("]") else None
        if found is None:
            raise _error("Invalid address", "5.1.2")
        return found
    if "@" in tokens:
        raise _error("Invalid route address", "5.1.2")
    domain = "".join(tokens)
    name = domain[:-1] if domain.endswith(".") else domain
    labels = ascii_domain(name).split(".")
    if not name or len(name) > 255 or not all(host_label(label) for label in labels):
        raise _error("Invalid host name", "5.1.2")
    return name


def _uucp(local: str) -> Address:
    """An unqualified local part: host!user and user%host name another host, as in canonify
    (a quoted or escaped local part, a |program, /file or :include: is left as it is)."""
    if local[:1] in "|/:" or '"' in local or "\\" in local:
        return Address(local)
    if "!" in local:
        host, _, user = local.partition("!")
    elif "%" in local:
        user, _, host = local.rpartition("%")
    else:
        return Address(local)
    try:
        return Address(user, _domain([host])) if user and host else Address(local)
    except errors.AddressError:
        return Address(local)


_PARSED: dict[str, Address] = {}  # parse()'s answers: a daemon sees the same addresses again and again
PARSED_KEPT = 1024  # at most this many (each text at most MAXADDR * 4 long), then forgotten at once


def parse(text: str) -> Address:
    """Parse one envelope or header address into an ``Address`` (kept: an Address is frozen;
    what fails to parse is parsed, and refused, again each time)."""
    addr = _PARSED.get(text)
    if addr is None:
        addr = _parse(text)
        if len(_PARSED) >= PARSED_KEPT:
            _PARSED.clear()
        _PARSED[text] = addr
    return addr


def _parse(text: str) -> Address:
    if "\r" in text or "\n" in text or "\x00" in text:
        raise _error("Invalid character in address", "5.0.0")
    if len(text) > MAXADDR * 4:
        raise _error("Address too long", "5.1.1")
    tokens = tokenize(text)
    if not tokens:
        return Address("")
    inner = _unroute(_angle(tokens))
    if len("".join(inner)) > MAXADDR:
        raise _error("Address too long", "5.1.1")
    if not inner:
        return Address("")
    if "@" not in inner:
        return _uucp(_local(inner))
    at = len(inner) - 1 - inner[::-1].index("@")
    if at == 0:
        raise _error("User address required", "5.1.3")
    return Address(_local(inner[:at]), _domain(inner[at + 1:]))


def routed(addr: Address) -> Address | None:
    """The address a local part names if it is read as one (``a%b@here``, ``"a@b"@here``,
    ``b!a@here``), as Sendmail's check_rcpt (Parse0, ParseRecipient) reads it: None when it names
    none.  One level only: the caller decides whether the domain found is one to look into."""
    user = addr.user
    if not any(c in user for c in "@%!"):
        return None
    text = user if "@" in user else _uucp_text(user)
    try:
        inner = parse(text)
    except errors.AddressError:  # still names a host, if its last part is one
        left, _, host = text.rpartition("@")
        try:
            inner = Address(left or "?", _domain([host]))
        except errors.AddressError:
            return None
    return inner if inner.domain else None


def _uucp_text(user: str) -> str:
    if "!" in user:
        host, _, rest = user.partition("!")
        return f"{rest}@{host}"
    rest, _, host = user.rpartition("%")
    return f"{rest}@{host}"


# -- lists ----------------------------------------------------------------------------------------

def split_list(text: str, groups: bool = True) -> list[str]:
    """Split an RFC 5322 address-list header value into its address texts (groups flattened
    unless ``groups`` is false, as in alias values where ':include:' is no group)."""
    items, buf, depth, quoted, angle, escaped = [], [], 0, False, 0, False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
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
        elif ch == ":" and groups and not depth and not angle and "@" not in "".join(buf):
            buf = []  # a group's display name ends here
            continue
        buf.append(ch)
    items.append("".join(buf))
    return [i.strip() for i in items if i.strip()]


def header_addresses(value: str) -> list[Address]:
    """Every address in a To/Cc/Bcc value; unreadable items raise AddressError."""
    return [a for a in (parse(item) for item in split_list(value)) if not a.null]
