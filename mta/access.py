"""The access map's lookup rules and values, as Sendmail's cf/README and proto.m4 define them.

Everything here is pure: ``get(key)`` is the map lookup (None when absent; it may raise
``maps.MapTempFail``, which callers turn into a 4xx).  Keys are tried in Sendmail's order:
  * domains: ``Tag:host.sub.example.com``, then the untagged key, then each parent domain
    (``Tag:sub.example.com`` ...); an address literal ``[1.2.3.4]`` is tried as itself.
  * IP addresses: ``Tag:1.2.3.4``, ``Tag:1.2.3``, ``Tag:1.2``, ``Tag:1``; IPv6 as
    ``Tag:IPv6:2001:db8::1`` and each shorter ``:``-prefix.
  * senders (From:) and recipients (To:): the full address (with ``+detail``, then without),
    then ``user@``, then the domain and its parents.
The value ``SKIP`` stops the search with no result.  Tags ClientRate, ClientConn, GreetPause
and Spam are tag-only: no untagged fallback.
"""

from __future__ import annotations

import ipaddress
import re

from mta.record import record

TAG_ONLY = {"clientrate", "clientconn", "greetpause", "spam"}


@record(frozen=True)
class Decision:
    """A parsed access value."""

    action: str  # OK RELAY REJECT DISCARD QUARANTINE ERROR TEMP or VALUE (a number, FRIEND...)
    code: int = 0
    status: str = ""
    text: str = ""
    key: str = ""  # the key that matched, for logs and explanations
    coded: bool = True  # ERROR: gave a reply code (ERROR:text alone has none)

    @property
    def accepts(self) -> bool:
        return self.action in ("OK", "RELAY")


_ERROR = re.compile(r'^(?:(?P<dsn>[245]\.\d{1,3}\.\d{1,3}):)?\s*(?P<code>[245]\d\d)(?:\s+(?P<text>.*))?$', re.S)


def parse_value(value: str, key: str = "") -> Decision:
    """OK, RELAY, REJECT, DISCARD, SKIP, QUARANTINE:reason, ERROR:[D.S.N:]code text, ### text."""
    raw = value.strip()
    word = raw.split(":", 1)[0].upper() if raw else ""
    if word in ("OK", "RELAY", "DISCARD", "SKIP") and ":" not in raw:
        return Decision(word, key=key)
    if word == "REJECT":
        return Decision("REJECT", 550, "5.7.1", "Access denied", key=key)
    if word == "QUARANTINE":
        return Decision("QUARANTINE", text=raw.split(":", 1)[1].strip(), key=key)
    body = raw.split(":", 1)[1] if word == "ERROR" and ":" in raw else raw
    body = body.strip()
    if body.startswith('"') and body.endswith('"') and len(body) >= 2:
        body = body[1:-1]
    m = _ERROR.match(body)
    if m and (word == "ERROR" or raw[:1].isdigit()):
        code = int(m.group("code"))
        status = m.group("dsn") or f"{code // 100}.0.0"
        return Decision("ERROR" if code >= 500 else "TEMP", code, status, (m.group("text") or "").strip(), key=key)
    if word == "ERROR":
        return Decision("ERROR", 550, "5.0.0", body, key=key, coded=False)
    return Decision("VALUE", text=raw, key=key)


def _tagged(get, tag: str, key: str) -> tuple[str, str] | None:
    """Try Tag:key, then (unless the tag is tag-only) the bare key."""
    for candidate in (f"{tag}:{key}",) + (() if tag.lower() in TAG_ONLY or not tag else (key,)):
        value = get(candidate.lower() if candidate[:1] != "[" else candidate)
        if value is not None:
            return candidate, value
    return None


def _decide(hit: tuple[str, str] | None) -> Decision | None:
    if hit is None:
        return None
    decision = parse_value(hit[1], hit[0])
    return None if decision.action == "SKIP" else decision


def parents(domain: str) -> list[str]:
    """host.sub.example.com -> itself, sub.example.com, example.com, com."""
    labels = domain.strip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def literal_keys(literal: str) -> list[str]:
    """[1.2.3.4] -> itself, [1.2.3], [1.2], [1]; [IPv6:2001:db8::1] -> itself, [IPv6:2001:db8], ..."""
    body, keys = literal[1:-1], [literal]
    while True:
        for sep in (".", "::", ":"):
            head, found, _tail = body.rpartition(sep)
            if found and head:
                body = head
                break
        else:
            return keys
        keys.append(f"[{body}]")


def lookup_domain(get, tag: str, domain: str) -> Decision | None:
    """proto.m4 D (LookUpDomain): the domain, then each parent; an address literal, then its
    shorter prefixes.  The first key found decides; SKIP ends the search with nothing."""
    domain = domain.lower().rstrip(".")
    for d in literal_keys(domain) if domain.startswith("[") else parents(domain):
        hit = _tagged(get, tag, d)
        if hit is not None:
            return _decide(hit)
    return None


def address_keys(ip: str) -> list[str]:
    """1.2.3.4 -> 1.2.3.4, 1.2.3, 1.2, 1; 2001:db8::1 -> IPv6:2001:db8::1, IPv6:2001:db8:, ..."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return []
    if addr.version == 4:
        parts = str(addr).split(".")
        return [".".join(parts[:n]) for n in range(4, 0, -1)]
    text = addr.compressed
    keys = [f"IPv6:{text}"]
    while ":" in text:
        text = text.rsplit(":", 1)[0]
        if text:
            keys.append(f"IPv6:{text}")
    return keys


def lookup_address(get, tag: str, ip: str) -> Decision | None:
    for key in address_keys(ip):
        hit = _tagged(get, tag, key)
        if hit is not None:
            return _decide(hit)
    return None


def check_connect(get, client_name: str, client_addr: str) -> Decision | None:
    """check_relay: Connect: by host name (and its domains; [address] when it has none), then
    by address and its prefixes."""
    name = client_name or (f"[{client_addr}]" if client_addr else "")
    if name:
        found = lookup_domain(get, "Connect", name)
        if found is not None:
            return found
    return lookup_address(get, "Connect", client_addr) if client_addr else None


def mailbox_keys(mailbox: str) -> list[str]:
    """proto.m4 F then U: user+detail@domain, user+*@domain, user@domain, then user+detail@,
    user+*@, user@ (only the U keys for an unqualified address)."""
    local, at, domain = mailbox.lower().rpartition("@")
    if not at:
        local, domain = mailbox.lower(), ""
    base, plus, _detail = local.partition("+")
    users = [local] + ([f"{base}+*", base] if plus else [])
    return ([f"{u}@{domain}" for u in users] if domain else []) + [f"{u}@" for u in users]


def lookup_mailbox(get, tag: str, mailbox: str) -> Decision | None:
    """From:/To: for an address: full (with, then without +detail), user@, then the domain chain."""
    for key in mailbox_keys(mailbox):
        hit = _tagged(get, tag, key)
        if hit is not None:
            return _decide(hit)
    domain = mailbox.lower().rpartition("@")[2] if "@" in mailbox else ""
    return lookup_domain(get, tag, domain) if domain else None


def in_class(domain: str, members: set[str]) -> bool:
    """Is domain, or a domain it lies within, in the class (relay-domains includes subdomains)?"""
    return any(d in members for d in parents(domain.lower().rstrip(".")))
