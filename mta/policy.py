"""Who may send what through us: the decisions of Sendmail's check_relay, check_mail and
check_rcpt, made from the access map, classes w and R, the routes and the client.

Each check answers None (go on) or a ``Refusal`` (reply code, enhanced status, text, and
whether the text takes the ``<addr>... `` prefix).  A map that cannot answer gives a 4xx, so
nothing is refused or accepted on a guess.
"""

from __future__ import annotations

from mta import access, address, errors, maps, router
from mta.record import record


@record(frozen=True)
class Refusal:
    code: int
    status: str
    text: str
    with_addr: bool = True  # 'reply <addr>... text'

    @property
    def temporary(self) -> bool:
        return self.code < 500


@record
class Client:
    """The peer of one SMTP session."""

    addr: str = ""  # IP address; '' for sendmail -bs
    name: str = ""  # reverse DNS name, '' when there is none
    helo: str = ""
    user: str = ""  # local user, for sendmail -bs
    auth: str = ""  # authenticated identity
    tls: str = ""  # protocol version when TLS is up
    tls_info: str = ""  # 'version=TLSv1.3 cipher=... bits=256 verify=NO' for Received:
    daemon: str = "MTA"  # DaemonPortOptions Name=
    msa: bool = False  # M=a: a submission port (authentication required)
    local_addr: str = ""  # ${if_addr}

    @property
    def relay_text(self) -> str:
        """$_: 'name [addr]', '[addr]', or 'user@localhost' for -bs."""
        if not self.addr:
            return f"{self.user}@localhost"
        return f"{self.name} [{self.addr}]" if self.name else f"[{self.addr}]"


TEMP_LOOKUP = Refusal(451, "4.3.0", "Temporary system failure. Please try again later.", with_addr=False)


def _from_decision(d: access.Decision | None, with_addr: bool = True) -> Refusal | None:
    if d is None or d.action in ("OK", "RELAY", "DISCARD", "QUARANTINE", "VALUE"):
        return None
    if d.action == "REJECT":
        return Refusal(550, "5.7.1", "Access denied", with_addr)
    return Refusal(d.code, d.status, d.text, with_addr)


class Policy:
    def __init__(self, ctx):
        self.ctx, self.cfg = ctx, ctx.cfg

    def _get(self, key: str) -> str | None:
        return self.ctx.maps.lookup("access", key)

    def connect(self, client: Client) -> Refusal | None:
        """Connect: REJECT/ERROR -> every later command gets this answer."""
        if not client.addr:
            return None
        try:
            return _from_decision(access.check_connect(self._get, client.name, client.addr), with_addr=False)
        except maps.MapTempFail:
            return TEMP_LOOKUP

    def relay_client(self, client: Client) -> bool:
        """May this client relay anywhere (proto.m4 Relay_ok): local submission, loopback, AUTH,
        an address prefix in class R, Connect: RELAY, one of our own addresses, a name in R."""
        if not client.addr or client.auth or client.addr in ("127.0.0.1", "::1", "0"):
            return True
        try:
            d = access.check_connect(self._get, client.name, client.addr)
        except maps.MapTempFail:
            return False
        if d is not None and d.action == "RELAY":
            return True
        members = self.cfg.klass("R")
        if client.name and access.in_class(client.name, members):
            return True
        if self.cfg.is_local_host(f"[{client.addr}]"):
            return True
        return any(k.lower() in members for k in access.address_keys(client.addr))

    def greet_pause(self, client: Client) -> int:
        """GreetPause: milliseconds to wait before the greeting (0: none)."""
        try:
            d = (access.lookup_domain(self._get, "GreetPause", client.name) if client.name else None) or \
                access.lookup_address(self._get, "GreetPause", client.addr)
        except maps.MapTempFail:
            return 0
        return int(d.text) if d is not None and d.text.isdigit() else 0

    def client_limit(self, client: Client, tag: str) -> int | None:
        """ClientRate: / ClientConn: for this address, or the bare default entry; 0 = unlimited."""
        try:
            d = access.lookup_address(self._get, tag, client.addr)
            value = d.text if d is not None else self._get(f"{tag}:".lower())
        except maps.MapTempFail:
            return None
        return int(value) if value and value.strip().isdigit() else None

    def mail(self, client: Client, sender: address.Address) -> Refusal | None:
        """check_mail: From: entries for the sender."""
        if sender.null or not client.addr:
            return None
        try:
            return _from_decision(access.lookup_mailbox(self._get, "From", str(sender)))
        except maps.MapTempFail:
            return TEMP_LOOKUP

    def is_local_domain(self, domain: str) -> bool:
        return not domain or self.cfg.is_local_host(domain) or domain.lower() in self.cfg.klass("VirtHost")

    def destination(self, rcpt: address.Address) -> address.Address:
        """The address whose domain decides relaying, as Sendmail's check_rcpt reads it: the
        recipient, or, when it is local (or in class R), the address its local part names
        (``a%b@here``, ``"a@b"@here``, ``b!a@here``: Parse0 strips a local host from them; for
        class R, ParseRecipient does unless FEATURE(loose_relay_check))."""
        local = self.is_local_domain(rcpt.domain)
        if not local and (self.cfg.has_feature("loose_relay_check")
                          or not access.in_class(rcpt.domain, self.cfg.klass("R"))):
            return rcpt
        return address.routed(rcpt) or rcpt

    def _relaying(self, client: Client, dest: address.Address, d: access.Decision | None) -> Refusal | None:
        """Relaying denied unless the destination is ours, the access map says To: RELAY, its
        domain is in class R, or the client may relay (cf/README "RELAYING")."""
        if self.is_local_domain(dest.domain):
            return None
        granted = (d is not None and d.action == "RELAY") or access.in_class(
            address.ascii_domain(dest.domain), self.cfg.klass("R"))
        if granted or self.relay_client(client):
            return None
        return self.relay_denied()

    def relay_denied(self) -> Refusal:
        return Refusal(550, "5.7.1", "Relaying denied" + (
            ". Proper authentication required." if self.ctx.cfg["AuthMechanisms"] else ""))

    def rcpt(self, client: Client, rcpt: address.Address, text: str) -> Refusal | None:
        """check_rcpt and the recipient's route: relaying, To: entries, unknown users."""
        dest = self.destination(rcpt)
        try:
            d = access.lookup_mailbox(self._get, "To", str(dest)) if client.addr else None
        except maps.MapTempFail:
            return TEMP_LOOKUP
        refusal = _from_decision(d) or self._relaying(client, dest, d)
        if refusal is not None:
            return refusal
        if self.cfg.is_msp:
            return None
        routes = router.resolve(self.cfg, self.ctx.aliases, text, self.ctx.maps)
        if self.is_local_domain(dest.domain) and _escapes(routes) and not self.relay_client(client):
            return self.relay_denied()
        return _route_refusal(routes)


def _escapes(routes: list) -> bool:
    """Does a local recipient leave us other than through an alias, .forward or map entry?
    (That would be a relay nobody granted; the router never does it - this makes sure.)"""
    return any(r.mailer not in LOCAL_MAILERS and not (r.alias or r.why) for r in routes)


LOCAL_MAILERS = ("local", "prog", "*file*", "error")


def _route_refusal(routes: list) -> Refusal | None:
    """A recipient none of whose routes works is refused with its first error."""
    bad = [r for r in routes if r.error]
    if not bad or len(bad) < len(routes):
        return None
    err = bad[0].error
    if err.temporary:
        return Refusal(451, "4.3.0", "Temporary lookup failure")
    if isinstance(err, errors.AddressError):
        return Refusal(553, err.status, err.text)
    return Refusal(err.code if err.code >= 500 else 550, err.status, err.text)
