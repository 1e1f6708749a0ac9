"""The esmtp and relay mailers: hand a message to another MTA over (E)SMTP, on mta.smtp.client.

``deliver()`` sends one message to every recipient routed to one host: the MX hosts of the
domain (``mta.dns``), each of their addresses, then FallbackSmartHost, until one takes it.  A
session is kept after its message (ConnectionCacheSize, ConnectionCacheTimeout) and the next
message to that host goes on it after an RSET; ``close_cache()`` ends the run (QUIT to each, host
and DNS memories forgotten).  STARTTLS is used when offered; a failed handshake is followed by a
new connection in clear, unless the access map's ``TLS_Srv:`` asks for VERIFY or ENCR there.
Certificates are checked against CACertFile/CACertPath.  Client AUTH (PLAIN, LOGIN) uses the
authinfo map's ``AuthInfo:`` entries (the ``authinfo`` map when the cf declares one, else the
access map), only inside TLS.  A host that failed is not tried again within the run, nor across
runs within Timeout.hoststatus when HostStatusDirectory keeps the statuses (``mta.hoststat``).
With ``transcript`` set, the dialog is written there as sendmail -v does; ``traffic`` gets -X.
"""

from __future__ import annotations

import atexit
import os
import socket
import ssl
import time

from mta import access, dns, errors, hoststat
from mta.mailers import Outcome
from mta.message import to_bytes
from mta.record import record
from mta.smtp import client
from mta.smtp.client import Reply

DEFAULT_TIMEOUT = 300


@record
class Settings:
    """What the cf says about talking SMTP to other hosts."""

    helo: str
    loop_check: bool = True  # off with the mailer's F=k
    connect_timeout: float = DEFAULT_TIMEOUT
    initial_timeout: float = DEFAULT_TIMEOUT
    command_timeout: float = DEFAULT_TIMEOUT
    final_timeout: float = 3600
    nameservers: str = ""
    is_local: object = None  # host name -> is it one of ours ($=w)?
    fallback_mx: str = ""
    fallback_smart: str = ""
    cache_size: int = 1
    cache_timeout: float = 300
    hoststat_dir: str = ""
    hoststat_timeout: float = 1800
    single_thread: bool = False  # one process at a time talks to a host (needs hoststat_dir)
    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    lookup: object = None  # (map name, key) -> value or None
    authinfo_map: str = "access"
    transcript: object = None
    traffic: object = None


def settings(cfg, maps=None, transcript=None, traffic=None, flags: str = "") -> Settings:
    """Settings from a loaded cf (and its maps, for access and authinfo), for a mailer with flags."""
    def lookup(name: str, key: str):
        return maps.lookup(name, key) if maps is not None and name in cfg.maps else None

    connect = cfg["Timeout.connect"] or DEFAULT_TIMEOUT
    return Settings(
        helo=cfg.hostname, loop_check="k" not in flags, connect_timeout=connect, initial_timeout=cfg["Timeout.initial"],
        final_timeout=cfg["Timeout.datafinal"], nameservers=cfg["NameServers"], is_local=cfg.is_local_host,
        fallback_mx=cfg["FallbackMXhost"] or "", fallback_smart=cfg["FallbackSmartHost"] or "",
        cache_size=cfg["ConnectionCacheSize"], cache_timeout=cfg["ConnectionCacheTimeout"],
        hoststat_dir=cfg["HostStatusDirectory"], hoststat_timeout=cfg["Timeout.hoststatus"],
        single_thread=cfg["SingleThreadDelivery"] and bool(cfg["HostStatusDirectory"]),
        ca_file=cfg["CACertFile"], ca_path=cfg["CACertPath"] or "", cert_file=cfg["ClientCertFile"] or "",
        key_file=cfg["ClientKeyFile"] or "", lookup=lookup,
        authinfo_map="authinfo" if "authinfo" in cfg.maps else "access", transcript=transcript, traffic=traffic)


class Failed(Exception):
    """This host (or address) cannot take the message now; ``outcome`` says why.  ``host_down``:
    remember the host as down; ``final``: no other host may be tried (mail that loops back)."""

    def __init__(self, outcome: Outcome, host_down: bool = True, final: bool = False):
        super().__init__(outcome.text)
        self.outcome, self.host_down, self.final = outcome, host_down, final


class TLSFailed(Exception):
    """The STARTTLS handshake failed: try again in clear (unless TLS is required)."""


# -- one session -----------------------------------------------------------------------------------

class Session:
    """A connection to one address of one host, after greeting and EHLO."""

    def __init__(self, host: str, ip: str, port: int, s: Settings):
        self.host, self.ip, self.port, self.s = host, ip, port, s
        self.relay = f"{host} [{ip}]" if host.startswith("[") else f"{host}. [{ip}]"
        self.replies = client.Replies()
        self.ext = client.Extensions()
        self.verify, self.cipher_bits, self.used = "NONE", 0, time.monotonic()
        self.lock = None  # SingleThreadDelivery: the host's lock, held while the session lives
        try:
            self.sock = socket.create_connection((ip, port), timeout=s.connect_timeout)
        except OSError as exc:
            raise Failed(self._conn_error(exc)) from exc

    def _conn_error(self, exc: OSError) -> Outcome:
        reason = ("Connection refused" if isinstance(exc, ConnectionRefusedError) else
                  "Connection timed out" if isinstance(exc, TimeoutError) else "Connection reset")
        return Outcome.from_error(errors.TempFail(f"{reason} by {self.host}", status="4.4.1"), self.relay)

    def _log(self, mark: str, lines: list[str], verbose: bool = True) -> None:
        if self.s.transcript is not None and verbose:
            self.s.transcript.write("".join(f"{mark + ' ' if mark == '>>>' else ''}{line}\n" for line in lines))
        if self.s.traffic is not None:
            self.s.traffic.write("".join(f"{os.getpid():05d} {mark} {line}\n" for line in lines))

    def write(self, data: bytes, payload: bool = False) -> None:
        if payload:
            self._log(">>>", data.decode("latin-1").split("\r\n")[:-2], verbose=False)
            self._log(">>>", ["."])
        elif data:
            self._log(">>>", [self._shown(line) for line in data.decode("utf-8", "replace").split("\r\n")[:-1]])
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Failed(Outcome.from_error(errors.TempFail(f"Connection reset by {self.host}: {exc}",
                                                            status="4.4.2"), self.relay)) from exc

    @staticmethod
    def _shown(line: str) -> str:
        return "AUTH " + line.split(" ", 2)[1] + " ..." if line.upper().startswith("AUTH ") else line

    def read(self, timeout: float | None = None) -> Reply:
        self.sock.settimeout(timeout or self.s.command_timeout)
        try:
            while True:
                reply = self.replies.next()
                if reply is not None:
                    self._log("<<<", reply.wire_lines())
                    return reply
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionResetError("connection closed")
                self.replies.feed(data)
        except (OSError, client.ProtocolError) as exc:
            why = "timeout waiting for input from" if isinstance(exc, TimeoutError) else "Connection reset by"
            raise Failed(Outcome.from_error(errors.TempFail(f"{why} {self.host}", status="4.4.2"),
                                            self.relay)) from exc

    def command(self, data: bytes, timeout: float | None = None) -> Reply:
        self.write(data)
        return self.read(timeout)

    def close(self, quit: bool = True) -> None:
        try:
            if quit:
                self.command(b"QUIT\r\n", 10)
        except Failed:
            pass
        finally:
            self.sock.close()
            if self.lock is not None:
                self.lock.close()

    # -- opening ---------------------------------------------------------------------------------

    def open(self, try_tls: bool, verify: bool | None = None) -> None:
        """Greeting, EHLO (HELO if refused), the loop check, STARTTLS, the TLS_Srv check, AUTH.
        ``verify``: check the peer's certificate (default: when CACertFile or CACertPath is set)."""
        greeting = self.read(self.s.initial_timeout)
        if greeting.code != 220:
            self.close()
            raise Failed(reply_outcome(greeting, self.relay, "4.0.0"))
        self._hello()
        if try_tls and self.ext.has("STARTTLS"):
            self._starttls(verify)
        self._check_tls_srv()
        self._auth()

    def _hello(self) -> None:
        reply = self.command(client.command("EHLO", self.s.helo))
        if reply.ok:
            self.ext = client.Extensions.parse(reply)
        else:
            reply = self.command(client.command("HELO", self.s.helo))
            if not reply.ok:
                self.close()
                raise Failed(reply_outcome(reply, self.relay, "5.5.0"))
            self.ext = client.Extensions(reply.lines[0].split(" ", 1)[0] if reply.lines else "")
        if self.s.loop_check and self.ext.name.lower().rstrip(".") == self.s.helo.lower():
            self.close()
            text = f"553 5.3.5 {self.host}. config error: mail loops back to me (MX problem?)"
            if self.s.transcript is not None:
                self.s.transcript.write(text + "\n")
            raise Failed(Outcome("5.3.5", "Local configuration error", self.relay, "553 5.3.5 system config error"),
                         host_down=False, final=True)

    def _context(self, verify: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if verify:
            ctx.load_verify_locations(cafile=self.s.ca_file or None, capath=self.s.ca_path or None)
            ctx.verify_mode = ssl.CERT_REQUIRED
        if self.s.cert_file and self.s.key_file:
            ctx.load_cert_chain(self.s.cert_file, self.s.key_file)
        return ctx

    def _starttls(self, verify: bool | None = None) -> None:
        if verify is None:
            verify = bool(self.s.ca_file or self.s.ca_path)
        reply = self.command(b"STARTTLS\r\n")
        if reply.code != 220:
            return  # refused: go on in clear (TLS_Srv decides whether that will do)
        self.replies.clear()  # nothing the peer sent before the handshake may count (CVE-2011-0411)
        name = self.host.strip("[]")
        try:
            self.sock = self._context(verify).wrap_socket(self.sock, server_hostname=name)
        except ssl.SSLCertVerificationError as exc:
            self.sock.close()
            raise TLSFailed("FAIL") from exc
        except (OSError, ssl.SSLError) as exc:
            self.sock.close()
            raise TLSFailed("SOFTWARE") from exc
        self.verify = "OK" if verify else "FAIL"
        self.cipher_bits = (self.sock.cipher() or ("", "", 0))[2]
        self._log("<<<", [f"(STARTTLS: version={self.sock.version()} verify={self.verify})"], verbose=False)
        self._hello()

    def requirement(self) -> str:
        return tls_srv(self.s, self.host, self.ip)

    def _check_tls_srv(self) -> None:
        req = self.requirement()
        problem = client.tls_requirement_error(req, self.verify, self.cipher_bits) if req else None
        if problem:
            self.close()
            code, status, text = problem
            raise Failed(Outcome(status, f"Deferred: {text}" if status[0] == "4" else text, self.relay,
                                 f"{text.split(' ', 1)[0]} {status} {text.split(' ', 1)[1]}"))

    def _auth(self) -> None:
        info = authinfo(self.s, self.host, self.ip)
        if info is None or not self.ext.has("AUTH") or self.verify == "NONE":
            return  # no password travels in clear
        mech = info.mechanism(self.ext.auth)
        if mech == "PLAIN":
            reply = self.command(client.auth_plain(info.authcid, info.password, info.authzid))
        elif mech == "LOGIN":
            reply = self.command(b"AUTH LOGIN\r\n")
            while reply.code == 334:
                reply = self.command(client.auth_login_answer(reply, info.authcid, info.password))
        else:
            return
        if not reply.ok and self.s.transcript is not None:
            self.s.transcript.write(f"AUTH={mech} failed: {reply}\n")

    # -- a message -------------------------------------------------------------------------------

    def send(self, sender: str, rcpts: list[str], payload: bytes, size: int,
             dsn: tuple[list[str], list[list[str]]] | None) -> client.Transaction:
        options = [f"SIZE={size}"] if self.ext.has("SIZE") else []
        if self.ext.has("8BITMIME") and any(b > 127 for b in payload):
            options.append("BODY=8BITMIME")
        if self.ext.has("SMTPUTF8") and not (sender + "".join(rcpts)).isascii():
            options.append("SMTPUTF8")
        with_dsn = dsn is not None and self.ext.has("DSN")
        mail = client.command("MAIL", " ".join([f"FROM:<{sender}>", *options, *(dsn[0] if with_dsn else [])]))
        cmds = [client.command("RCPT", " ".join([f"TO:<{r}>", *(dsn[1][i] if with_dsn else [])]))
                for i, r in enumerate(rcpts)]
        t = client.Transaction(self.ext, mail, cmds, payload)
        t.dsn = with_dsn
        out, sent_payload = t.start(), False
        while not t.done:
            if out:
                sent_payload = out is payload
                self.write(out, payload=sent_payload)
            out = t.feed(self.read(self.s.final_timeout if sent_payload else None))
        self.used = time.monotonic()
        return t


# -- the access and authinfo maps ----------------------------------------------------------------------

def _tagged_lookup(s: Settings, mapname: str, tag: str, host: str, ip: str) -> str | None:
    """$>D on the server's name (and its parents), then $>A on its address, then ``Tag:``."""
    if s.lookup is None:
        return None
    keys = [] if host.startswith("[") else [f"{tag}:{d}" for d in access.parents(host.lower())]
    keys += [f"{tag}:{k}" for k in access.address_keys(ip)] + [f"{tag}:"]
    for key in keys:
        value = s.lookup(mapname, key)
        if value is not None:
            return value
    return None


def tls_srv(s: Settings, host: str, ip: str) -> str:
    return _tagged_lookup(s, "access", "TLS_Srv", host, ip) or ""


def authinfo(s: Settings, host: str, ip: str) -> client.AuthInfo | None:
    value = _tagged_lookup(s, s.authinfo_map, "AuthInfo", host, ip)
    return client.AuthInfo.parse(value) if value else None


def reply_outcome(reply: Reply, relay: str, default_status: str) -> Outcome:
    status = reply.status or default_status
    text = " ".join(reply.lines)
    plain = text.removeprefix(reply.status).strip()
    full = f"{reply.code} {text}"
    if reply.ok:
        return Outcome("2.0.0", f"Sent ({plain})", relay, full)
    if 400 <= reply.code < 500:
        return Outcome(status if status[:1] == "4" else "4.0.0", f"Deferred: {full}", relay, full)
    return Outcome(status if status[:1] == "5" else "5.0.0", plain, relay, full)


# -- the connection cache and the host status ------------------------------------------------------

_cache: dict[tuple[str, int], Session] = {}
_down: dict[str, tuple[float, Outcome]] = {}


def close_cache() -> None:
    """End of a queue run (or of the process): QUIT every cached session, forget host statuses."""
    while _cache:
        _key, session = _cache.popitem()
        session.close()
    _down.clear()
    dns.forget()


atexit.register(close_cache)


def _cached(host: str, port: int, s: Settings) -> Session | None:
    session = _cache.pop((host.lower(), port), None)
    if session is None:
        return None
    if time.monotonic() - session.used > s.cache_timeout:
        session.close()
        return None
    try:
        if session.command(b"RSET\r\n").ok:
            return session
    except Failed:
        pass
    session.close(quit=False)
    return None


def _keep(session: Session, s: Settings) -> None:
    if s.cache_size <= 0:
        session.close()
        return
    _cache[(session.host.lower(), session.port)] = session
    while len(_cache) > s.cache_size:
        oldest = min(_cache, key=lambda k: _cache[k].used)
        _cache.pop(oldest).close()


def _known_down(host: str, s: Settings) -> Outcome | None:
    """A failure of this host remembered from earlier in the run, or from the status directory."""
    key = host.lower()
    if key in _down and time.monotonic() - _down[key][0] < s.hoststat_timeout:
        return _down[key][1]
    st = hoststat.status(s.hoststat_dir, host) if s.hoststat_dir else None
    if st and st.exitstat == errors.EX_TEMPFAIL and time.time() - st.when < s.hoststat_timeout:
        text = st.reply or f"Deferred: {host} was down"
        return Outcome(st.status or "4.0.0", text if text.startswith("Deferred") else f"Deferred: {text}")
    return None


def _mark(host: str, s: Settings, outcome: Outcome | None) -> None:
    if outcome is not None:
        _down[host.lower()] = (time.monotonic(), outcome)
    else:
        _down.pop(host.lower(), None)
    if s.hoststat_dir:
        hoststat.record(s.hoststat_dir, host, exitstat=errors.EX_TEMPFAIL if outcome else 0,
                        status=outcome.status if outcome else "", reply=outcome.text if outcome else "")


# -- delivering --------------------------------------------------------------------------------------

def _open(host: str, port: int, s: Settings) -> Session:
    """A ready session to host: a cached one, or a new one on the first address that answers."""
    session = _cached(host, port, s)
    if session is not None:
        return session
    lock = hoststat.lock(s.hoststat_dir, host) if s.single_thread else None
    if s.single_thread and lock is None:
        raise Failed(Outcome("4.4.0", f"Deferred: {host}: host is being delivered to by another process"),
                     host_down=False)
    failure: Failed | None = None
    try:
        for ip in dns.addresses(host, s.nameservers):
            try:
                session = _connect(host, ip, port, s)
                session.lock, lock = lock, None
                return session
            except Failed as exc:
                failure = exc
                if exc.final:
                    raise
    finally:
        if lock is not None:
            lock.close()
    assert failure is not None
    raise failure


def _connect(host: str, ip: str, port: int, s: Settings) -> Session:
    session = Session(host, ip, port, s)
    try:
        session.open(try_tls=True)
        return session
    except TLSFailed as exc:
        verify = str(exc)
    if tls_srv(s, host, ip):  # TLS required here: no clear text
        problem = client.tls_requirement_error(tls_srv(s, host, ip), verify, 0)
        if problem:
            code, status, text = problem
            raise Failed(Outcome(status, f"Deferred: {text}" if status[0] == "4" else text, session.relay))
    session = Session(host, ip, port, s)
    if verify == "FAIL":  # an unverified certificate: TLS all the same, with verify=FAIL
        session.open(try_tls=True, verify=False)
        return session
    if s.transcript is not None:
        s.transcript.write(f"STARTTLS failed ({verify}); trying {host} again without STARTTLS\n")
    session.open(try_tls=False)
    return session


def deliver(*, host: str, port: int, sender: str, recipients: list[str], text: str, s: Settings,
            dsn: tuple[list[str], list[list[str]]] | None = None) -> list[Outcome]:
    """Send text from sender to recipients at host ([host]: no MX lookup); one Outcome each.
    ``dsn`` is (MAIL parameters, RCPT parameters per recipient), sent when the host offers DSN."""
    try:
        hosts = dns.mail_hosts(host, s.nameservers, is_local=s.is_local, fallback=s.fallback_mx)
    except errors.MTAError as exc:
        if not s.fallback_smart or not exc.temporary:
            return [Outcome.from_error(exc)] * len(recipients)
        hosts, last = [], Outcome.from_error(exc)
    else:
        last = Outcome.from_error(errors.TempFail(f"Connection refused by {host}", status="4.4.1"))
    if s.fallback_smart and s.fallback_smart.lower() not in hosts:
        hosts.append(s.fallback_smart)
    payload = client.message_bytes(to_bytes(text))
    size = len(to_bytes(text))
    for mx in hosts:
        down = _known_down(mx, s)
        if down is not None:
            last = down
            continue
        try:
            session = _open(mx, port, s)
        except errors.MTAError as exc:
            last = Outcome.from_error(exc)
            continue
        except Failed as exc:
            last = exc.outcome
            if exc.final:
                return [last] * len(recipients)
            if exc.host_down:
                _mark(mx, s, last)
            continue
        _mark(mx, s, None)
        try:
            t = session.send(sender, recipients, payload, size, dsn)
        except Failed as exc:
            session.close(quit=False)
            last = exc.outcome
            continue
        outcomes = _outcomes(t, session.relay, len(recipients))
        _keep(session, s)
        return outcomes
    return [last] * len(recipients)


def _outcomes(t: client.Transaction, relay: str, count: int) -> list[Outcome]:
    if t.mail is not None and not t.mail.ok:
        return [reply_outcome(t.mail, relay, "5.1.7")] * count
    outcomes: list[Outcome | None] = [
        None if r is not None and r.code in (250, 251) else
        reply_outcome(r, relay, "5.1.1") if r is not None else
        Outcome("4.0.0", "Deferred: no reply", relay) for r in t.rcpts]
    if t.final is None:
        return [o or Outcome("4.0.0", "Deferred", relay) for o in outcomes]
    final = reply_outcome(t.final, relay, "5.0.0")
    if t.dsn and final.kind == "sent":
        final = Outcome(final.status, final.text, final.relay, final.reply, dsn_passed=True)
    return [o if o is not None else final for o in outcomes]
