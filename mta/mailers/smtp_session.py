"""One SMTP client session over a socket, on mta.smtp.client: connect, greeting, EHLO (HELO),
the loop check, STARTTLS, the access map's TLS_Srv: requirement, AUTH from the authinfo map,
then one message at a time.  ``Settings`` is what the cf says about talking to other hosts.
Everything that goes wrong with the peer is a ``Failed`` carrying the Outcome to report;
a failed TLS handshake is ``TLSFailed`` (the caller decides whether to go on in clear).
With ``transcript`` set, the dialog is written there as sendmail -v does; ``traffic`` gets -X.
"""

from __future__ import annotations

import _socket  # socket.py's enums and selectors are a tenth of a relayed submission's start
import os
import time

from mta import errors
from mta.mailers import Outcome
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


class Failed(Exception):
    """This host (or address) cannot take the message now; ``outcome`` says why.  ``host_down``:
    remember the host as down; ``final``: no other host may be tried (mail that loops back)."""

    def __init__(self, outcome: Outcome, host_down: bool = True, final: bool = False):
        super().__init__(outcome.text)
        self.outcome, self.host_down, self.final = outcome, host_down, final
        self.unsent = False  # it failed before the message text went out: it may be sent again


class TLSFailed(Exception):
    """The STARTTLS handshake failed: try again in clear (unless TLS is required)."""


# -- one session -----------------------------------------------------------------------------------

def _connect(ip: str, port: int, timeout: float) -> _socket.socket:
    """A TCP connection to an address (never a name: nothing is resolved here)."""
    sock = _socket.socket(_socket.AF_INET6 if ":" in ip else _socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Session:
    """A connection to one address of one host, after greeting and EHLO."""

    def __init__(self, host: str, ip: str, port: int, s: Settings):
        self.host, self.ip, self.port, self.s = host, ip, port, s
        self.relay = f"{host} [{ip}]" if host.startswith("[") else f"{host}. [{ip}]"
        self.replies = client.Replies()
        self.ext = client.Extensions()
        self.verify, self.cipher_bits, self.used = "NONE", 0, time.monotonic()
        self.lock = None  # SingleThreadDelivery: the host's lock, held while the session lives
        self.reused = False  # taken from the connection cache
        self.probe = False  # the next transaction starts with RSET (mci_get's smtpprobe)
        try:
            self.sock = _connect(ip, port, s.connect_timeout)
        except OSError as exc:
            raise Failed(self._conn_error(exc)) from exc

    def _conn_error(self, exc: OSError) -> Outcome:
        reason = ("Connection refused" if isinstance(exc, ConnectionRefusedError) else
                  "Connection timed out" if isinstance(exc, TimeoutError) else "Connection reset")
        return Outcome.from_error(errors.TempFail(f"{reason} by {self.host}", status="4.4.1"), self.relay)

    def _lost(self, text: str) -> Failed:
        """The connection broke (or the peer broke the protocol) during a transaction."""
        return Failed(Outcome.from_error(errors.TempFail(text, status="4.4.2"), self.relay))

    def _log(self, mark: str, lines: list[str], verbose: bool = True) -> None:
        if self.s.transcript is not None and verbose:
            self.s.transcript.write("".join(f"{mark + ' ' if mark == '>>>' else ''}{line}\n" for line in lines))
        if self.s.traffic is not None:
            self.s.traffic.write("".join(f"{os.getpid():05d} {mark} {line}\n" for line in lines))

    def write(self, data: bytes, payload: bool = False) -> None:
        if payload:
            if self.s.traffic is not None:
                self._log(">>>", data.decode("latin-1").split("\r\n")[:-2], verbose=False)
            self._log(">>>", ["."])
        elif data:
            self._log(">>>", [self._shown(line) for line in data.decode("utf-8", "replace").split("\r\n")[:-1]])
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise self._lost(f"Connection reset by {self.host}: {exc}") from exc

    @staticmethod
    def _shown(line: str) -> str:
        return "AUTH " + line.split(" ", 2)[1] + " ..." if line.upper().startswith("AUTH ") else line

    def read(self, timeout: float | None = None) -> Reply:
        timeout = timeout or self.s.command_timeout
        if timeout != self.sock.gettimeout():  # each settimeout() is a system call
            self.sock.settimeout(timeout)
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
            raise self._lost(f"{why} {self.host}") from exc

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

    def _context(self, verify: bool):  # -> ssl.SSLContext
        import ssl  # only when a peer offers STARTTLS: ssl is a fifth of a relayed submission's start

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
        import ssl

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
            raise Failed(requirement_outcome(problem, self.relay))

    def falls_short(self, requirement: str) -> Outcome | None:
        """TLS_Rcpt: why this session will not do for a recipient with this requirement."""
        problem = client.tls_requirement_error(requirement, self.verify, self.cipher_bits)
        return requirement_outcome(problem, self.relay) if problem else None

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
        if self.ext.has("8BITMIME") and not payload.isascii():
            options.append("BODY=8BITMIME")
        if self.ext.has("SMTPUTF8") and not (sender + "".join(rcpts)).isascii():
            options.append("SMTPUTF8")
        with_dsn = dsn is not None and self.ext.has("DSN")
        mail = client.command("MAIL", " ".join([f"From:<{sender}>", *options, *(dsn[0] if with_dsn else [])]))
        cmds = [client.command("RCPT", " ".join([f"To:<{r}>", *(dsn[1][i] if with_dsn else [])]))
                for i, r in enumerate(rcpts)]
        t = client.Transaction(self.ext, mail, cmds, payload, reset=self.probe)
        t.dsn, self.probe = with_dsn, False
        out, sent_payload = t.start(), False
        try:
            while not t.done:
                if out:
                    sent_payload = out is payload
                    self.write(out, payload=sent_payload)
                out = t.feed(self.read(self.s.final_timeout if sent_payload else None))
        except client.ProtocolError as exc:  # feed()'s: a reply out of place, a refused RSET
            failed = self._lost(f"{exc} by {self.host}")
            failed.unsent = not sent_payload
            raise failed from exc
        except Failed as exc:
            exc.unsent = not sent_payload
            raise
        self.used = time.monotonic()
        return t


# -- the access and authinfo maps ----------------------------------------------------------------------

def _tagged_lookup(s: Settings, mapname: str, tag: str, host: str, ip: str) -> str | None:
    """$>D on the server's name (and its parents), then $>A on its address, then ``Tag:``."""
    if s.lookup is None:
        return None
    from mta import access  # only with an access map: its re and ipaddress are not in every relayed submission

    keys = [] if host.startswith("[") else [f"{tag}:{d}" for d in access.parents(host.lower())]
    keys += [f"{tag}:{k}" for k in access.address_keys(ip)] + [f"{tag}:"]
    for key in keys:
        value = s.lookup(mapname, key)
        if value is not None:
            return value
    return None


def tls_srv(s: Settings, host: str, ip: str) -> str:
    return _tagged_lookup(s, "access", "TLS_Srv", host, ip) or ""


def tls_rcpt(s: Settings, rcpt: str) -> str:
    """TLS_Rcpt: for the full address, user@, then the domain and its parents (tag only)."""
    if s.lookup is None:
        return ""
    from mta import access

    user, at, domain = rcpt.lower().rpartition("@")
    keys = [rcpt.lower(), f"{user}@"] + access.parents(domain) if at else [f"{rcpt.lower()}@"]
    for key in keys:
        value = s.lookup("access", f"TLS_Rcpt:{key}")
        if value is not None:
            return value
    return ""


def requirement_outcome(problem: tuple[int, str, str], relay: str) -> Outcome:
    """The Outcome of an unmet TLS requirement: (code, status, '454 text') from the client core."""
    _code, status, text = problem
    reply = text.replace(" ", f" {status} ", 1)
    return Outcome(status, f"Deferred: {text}" if status[0] == "4" else text, relay, reply)


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
