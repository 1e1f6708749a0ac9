"""Who may send what through us: the decisions of Sendmail's check_relay, check_mail and
check_rcpt, made from the access map, classes w and R, the routes and the client.

Each check answers a ``Verdict``: None (go on), a ``Refusal`` (reply code, enhanced status, text,
and whether the text takes the ``<addr>... `` prefix) or a ``Mark`` (accepted, but the message is
discarded or quarantined).  A map that cannot answer gives a 4xx, so nothing is refused or
accepted on a guess.  Sender checks follow proto.m4's Basic_check_mail when the cf was built
from proto.m4 (its FEATUREs read from the cf's ``$Id: name.m4`` lines); the sender domain's DNS
lookup blocks, so the daemon calls these from its worker threads (mta/smtp/answer.py).
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


@record(frozen=True)
class Mark:
    """A verdict that accepts but changes the message's fate: ``discard`` (accepted, logged,
    dropped) or ``quarantine`` (kept in the queue with ``reason``)."""

    action: str
    reason: str = ""

    def log_text(self) -> str:
        return "discard" if self.action == "discard" else f"quarantine={self.reason}"


Verdict = Refusal | Mark | None


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


def _from_decision(d: access.Decision | None, with_addr: bool = True) -> Verdict:
    """An access map answer as Sendmail's rule sets turn it into a verdict (proto.m4
    Basic_check_relay/mail/rcpt): OK and RELAY accept, REJECT is 550 5.7.1 Access denied,
    DISCARD and QUARANTINE:reason accept with a Mark, ERROR:[D.S.N:]code text refuses, and
    ERROR:text without a code is 553 5.3.0 text."""
    if d is None or d.action in ("OK", "RELAY", "VALUE"):
        return None
    if d.action == "DISCARD":
        return Mark("discard")
    if d.action == "QUARANTINE":
        return Mark("quarantine", d.text or "quarantined")
    if d.action == "REJECT":
        return Refusal(550, "5.7.1", "Access denied", with_addr)
    if d.action == "ERROR" and not d.coded:
        return Refusal(553, "5.3.0", d.text, with_addr)
    return Refusal(d.code, d.status, d.text, with_addr)


class Policy:
    def __init__(self, ctx):
        self.ctx, self.cfg = ctx, ctx.cfg

    def _get(self, key: str) -> str | None:
        return self.ctx.maps.lookup("access", key)

    def connect(self, client: Client) -> Verdict:
        """Connect: REJECT/ERROR -> every later command gets this answer; DISCARD/QUARANTINE
        mark every message of the session."""
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

    def mail(self, client: Client, sender: address.Address) -> Verdict:
        """check_mail at MAIL; with FEATURE(delay_checks) it waits for each RCPT (rcpt())."""
        if self.cfg.has_feature("delay_checks"):
            return None
        return self.sender(client, sender)

    def sender(self, client: Client, sender: address.Address) -> Verdict:
        """proto.m4 Basic_check_mail: a real domain instead of localhost, From: entries, a domain
        for remote senders (unless FEATURE(accept_unqualified_senders)), and a domain that
        resolves (unless FEATURE(accept_unresolvable_domains)).  <> is always accepted."""
        if sender.null or not client.addr:
            return None
        f = str(sender)
        if self._proto_rules and _localhost(sender.domain) and not self.cfg.is_local_host(client.name or "-"):
            return Refusal(553, "5.5.4", "Real domain name required for sender address")
        try:
            d = access.lookup_mailbox(self._get, "From", f)
        except maps.MapTempFail:
            return TEMP_LOOKUP
        if d is not None:
            return _from_decision(d)
        if not sender.domain:
            if self._proto_rules and not self.cfg.has_feature("accept_unqualified_senders"):
                return Refusal(553, "5.5.4", f"Domain name required for sender address {f}")
            return None
        return self._resolves(sender.domain, f)

    @property
    def _proto_rules(self) -> bool:
        """Was the cf built from proto.m4 (so its check_mail rules are Sendmail's own)?"""
        return self.cfg.has_feature("proto")

    def _resolves(self, domain: str, f: str) -> Refusal | None:
        """The resolve map of check_mail (``Kresolve host ...``, which proto.m4 declares unless
        FEATURE(accept_unresolvable_domains)): 553 5.1.8 when the domain does not exist, 451
        4.1.8 when DNS cannot tell now.  Our own names and address literals need no lookup."""
        if "resolve" not in self.cfg.maps or self.cfg.has_feature("accept_unresolvable_domains"):
            return None
        if domain.startswith("[") or self.is_local_domain(domain):
            return None
        from mta import dns

        try:
            dns.resolves(address.ascii_domain(domain), self.cfg["NameServers"] or "")
        except errors.TempFail:
            return Refusal(451, "4.1.8", f"Domain of sender address {f} does not resolve", with_addr=False)
        except errors.MTAError:
            return Refusal(553, "5.1.8", f"Domain of sender address {f} does not exist")
        return None

    def is_local_domain(self, domain: str) -> bool:
        return not domain or self.cfg.is_local_host(domain) or domain.lower() in self.cfg.klass("VirtHost")

    def destination(self, rcpt: address.Address) -> address.Address:
        """The address whose domain decides relaying, as Sendmail's check_rcpt reads it: the
        recipient, or, when it is local (or in class R), the address its local part names
        (``a%b@here``, ``"a@b"@here``, ``b!a@here``: Parse0 strips a local host from them; for
        class R, ParseRecipient does unless FEATURE(loose_relay_check))."""
        dest = rcpt
        for _ in range(router.MAX_DEPTH):
            if not self.is_local_domain(dest.domain) and (self.cfg.has_feature("loose_relay_check") or not
                                                          access.in_class(address.ascii_domain(dest.domain),
                                                                          self.cfg.klass("R"))):
                break
            inner = address.routed(dest)
            if inner is None:
                break
            dest = inner
        return dest

    def _relaying(self, client: Client, dest: address.Address) -> Refusal | None:
        """Relaying denied unless the destination is ours, its domain is in class R or has a
        To: RELAY entry, or the client may relay (cf/README "RELAYING", proto.m4 Rcpt_ok)."""
        if self.is_local_domain(dest.domain):
            return None
        domain = address.ascii_domain(dest.domain)
        if access.in_class(domain, self.cfg.klass("R")) or self.relay_client(client):
            return None
        d = access.lookup_domain(self._get, "To", domain)
        if d is not None and d.action == "RELAY":
            return None
        return self.relay_denied()

    def relay_denied(self) -> Refusal:
        """The cf's own text (confRELAY_MSG) when it has check_rcpt's rule, else proto.m4's default."""
        return Refusal(550, "5.7.1", self.cfg.relay_msg or "Relaying denied" + (
            ". Proper authentication required." if self.ctx.cfg["AuthMechanisms"] else ""))

    def rcpt(self, client: Client, rcpt: address.Address, text: str, sender: str | None = None) -> Verdict:
        """check_rcpt and the recipient's route, in Sendmail's order: To: entries, relaying,
        then (FEATURE(delay_checks)) the sender's checks unless the recipient is a Spam: FRIEND,
        then the route (unknown users).  ``sender`` is the envelope's, as MAIL gave it."""
        dest = self.destination(rcpt)
        try:
            verdict = _from_decision(access.lookup_mailbox(self._get, "To", str(dest))) if client.addr else None
            refusal = verdict if isinstance(verdict, Refusal) else self._relaying(client, dest)
            if refusal is None and sender is not None and self.cfg.has_feature("delay_checks") \
                    and not self._spam_friend(rcpt):
                later = self.sender(client, address.parse(sender))
                refusal, verdict = (later, verdict) if isinstance(later, Refusal) else (None, verdict or later)
        except maps.MapTempFail:
            return TEMP_LOOKUP
        if refusal is not None:
            return refusal
        if self.cfg.is_msp:
            return verdict
        routes = router.resolve(self.cfg, self.ctx.aliases, text, self.ctx.maps)
        if self.is_local_domain(dest.domain) and _escapes(routes) and not self.relay_client(client):
            return self.relay_denied()
        return _route_refusal(routes) or verdict

    def _spam_friend(self, rcpt: address.Address) -> bool:
        d = access.lookup_mailbox(self._get, "Spam", str(rcpt))
        return d is not None and d.text.upper() == "FRIEND"


def _localhost(domain: str) -> bool:
    return domain.lower() in ("localhost", "[127.0.0.1]", "[ipv6:::1]") or domain.lower().startswith("localhost.")


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
