"""The esmtp and relay mailers: hand a message to another MTA over (E)SMTP.

``deliver()`` sends one message to every recipient routed to one host: the MX hosts of the
domain (``mta.dns``), each of their addresses, then FallbackSmartHost, until one takes it; the
session itself (TLS, AUTH, the loop check, pipelining) is ``mta.mailers.smtp_session``.  A
session is kept after its message (ConnectionCacheSize, ConnectionCacheTimeout) and the next
message to that host goes on it after an RSET; ``close_cache()`` ends the run (QUIT to each, host
and DNS memories forgotten).  A failed STARTTLS handshake is followed by a new connection in
clear, unless the access map's ``TLS_Srv:`` asks for VERIFY or ENCR there; ``TLS_Rcpt:``
requirements hold back the recipients they name.  A host that failed is not tried again within
the run, nor across runs within Timeout.hoststatus when HostStatusDirectory keeps the statuses
(``mta.hoststat``); SingleThreadDelivery lets one process at a time talk to a host.  "The run"
is the calling thread's: a queue run is one thread, and each delivery the daemon makes of a
message it just accepted is a run of its own (``forget_hosts``), as Sendmail's child is.
"""

from __future__ import annotations

import atexit
import time
from _thread import _local  # threading.local itself, without threading's import

from mta import dns, errors, hoststat
from mta.mailers import Outcome, smtp_session
from mta.mailers.smtp_session import Failed, Session, Settings
from mta.message import to_bytes
from mta.smtp import client


def settings(cfg, maps=None, transcript=None, traffic=None, flags: str = "") -> Settings:
    """Settings from a loaded cf (and its maps, for access and authinfo), for a mailer with flags."""
    def lookup(name: str, key: str):
        return maps.lookup(name, key) if maps is not None and name in cfg.maps else None

    connect = cfg["Timeout.connect"] or smtp_session.DEFAULT_TIMEOUT
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


# -- the connection cache and the host status ------------------------------------------------------

_cache: dict[tuple[str, int], Session] = {}
_runs = _local()  # .down: host -> (when, outcome), the failures this run remembers


def _down() -> dict[str, tuple[float, Outcome]]:
    down = getattr(_runs, "down", None)
    if down is None:
        down = _runs.down = {}
    return down


def forget_hosts() -> None:
    """End of one delivery run in this thread: the next starts without this one's host failures."""
    _down().clear()


def close_cache() -> None:
    """End of a queue run (or of the process): QUIT every cached session, forget host statuses."""
    while _cache:
        _key, session = _cache.popitem()
        session.close()
    forget_hosts()
    dns.forget()


atexit.register(close_cache)


def _cached(host: str, port: int, s: Settings) -> Session | None:
    session = _cache.pop((host.lower(), port), None)
    if session is None:
        return None
    if time.monotonic() - session.used > s.cache_timeout:
        session.close()
        return None
    session.reused = True
    if session.ext.has("PIPELINING"):
        session.probe = True  # RSET goes out with the next MAIL, not in a round trip of its own
        return session
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
    down = _down()
    if key in down and time.monotonic() - down[key][0] < s.hoststat_timeout:
        return down[key][1]
    st = hoststat.status(s.hoststat_dir, host) if s.hoststat_dir else None
    if st and st.exitstat == errors.EX_TEMPFAIL and time.time() - st.when < s.hoststat_timeout:
        text = st.reply or f"Deferred: {host} was down"
        return Outcome(st.status or "4.0.0", text if text.startswith("Deferred") else f"Deferred: {text}")
    return None


def _mark(host: str, s: Settings, outcome: Outcome | None) -> None:
    if outcome is not None:
        _down()[host.lower()] = (time.monotonic(), outcome)
    else:
        _down().pop(host.lower(), None)
    if s.hoststat_dir:
        hoststat.record(s.hoststat_dir, host, exitstat=errors.EX_TEMPFAIL if outcome else 0,
                        status=outcome.status if outcome else "", reply=outcome.text if outcome else "")


# -- delivering --------------------------------------------------------------------------------------

def _open(host: str, port: int, s: Settings, fresh: bool = False) -> Session:
    """A ready session to host: a cached one (unless fresh), or a new one on the first address
    that answers."""
    session = None if fresh else _cached(host, port, s)
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
    except smtp_session.TLSFailed as exc:
        verify = str(exc)
    if smtp_session.tls_srv(s, host, ip):  # TLS required here: no clear text
        problem = client.tls_requirement_error(smtp_session.tls_srv(s, host, ip), verify, 0)
        if problem:
            raise Failed(smtp_session.requirement_outcome(problem, session.relay))
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
    raw = to_bytes(text)
    payload, size = client.message_bytes(raw), len(raw)
    for mx in hosts:
        down = _known_down(mx, s)
        if down is not None:
            last = down
            continue
        for fresh in (False, True):
            try:
                session = _open(mx, port, s, fresh)
            except errors.MTAError as exc:
                last = Outcome.from_error(exc)
                break
            except Failed as exc:
                last = exc.outcome
                if exc.final:
                    return [last] * len(recipients)
                if exc.host_down:
                    _mark(mx, s, last)
                break
            if not session.reused:
                _mark(mx, s, None)
            try:
                outcomes = _send(session, sender, recipients, payload, size, dsn)
            except Failed as exc:
                session.close(quit=False)
                last = exc.outcome
                if session.reused and exc.unsent:
                    continue  # the cached connection had gone: once more on a new one
                break
            _keep(session, s)
            return outcomes
    return [last] * len(recipients)


def _send(session: Session, sender: str, recipients: list[str], payload: bytes, size: int,
          dsn: tuple[list[str], list[list[str]]] | None) -> list[Outcome]:
    """One transaction for the recipients whose TLS_Rcpt: requirement this session meets;
    the others get the requirement's error (and are not named to the peer)."""
    out: list[Outcome | None] = []
    for rcpt in recipients:
        req = smtp_session.tls_rcpt(session.s, rcpt)
        out.append(session.falls_short(req) if req else None)
    go = [i for i, o in enumerate(out) if o is None]
    limit = session.ext.size_limit
    if go and limit and size > limit:  # usersmtp.c: not even MAIL is sent
        too_big = Outcome("5.2.3", f"Message is too large; {limit} bytes max", session.relay,
                          f"552 5.2.3 Message is too large; {limit} bytes max")
        return [o or too_big for o in out]
    if go:
        part = (dsn[0], [dsn[1][i] for i in go]) if dsn is not None else None
        t = session.send(sender, [recipients[i] for i in go], payload, size, part)
        for i, outcome in zip(go, _outcomes(t, session.relay, len(go)), strict=True):
            out[i] = outcome
    return out  # type: ignore[return-value]


def _outcomes(t: client.Transaction, relay: str, count: int) -> list[Outcome]:
    if t.mail is not None and not t.mail.ok:
        return [smtp_session.reply_outcome(t.mail, relay, "5.1.7")] * count
    outcomes: list[Outcome | None] = [
        None if r is not None and r.code in (250, 251) else
        smtp_session.reply_outcome(r, relay, "5.1.1") if r is not None else
        Outcome("4.0.0", "Deferred: no reply", relay) for r in t.rcpts]
    if t.final is None:
        return [o or Outcome("4.0.0", "Deferred", relay) for o in outcomes]
    final = smtp_session.reply_outcome(t.final, relay, "5.0.0")
    if t.dsn and final.kind == "sent":
        final = Outcome(final.status, final.text, final.relay, final.reply, dsn_passed=True)
    return [o if o is not None else final for o in outcomes]
