"""DNS: the hosts to try for a mail domain and their addresses, as Sendmail's getmxrr (domain.c).

``mail_hosts(domain)`` returns host names in the order to try them: MX preference order with
equal preferences shuffled, or the domain itself when it has no MX (implicit MX).  When one of
the MX hosts is us (``is_local``), it and every host of the same or a higher preference are
dropped; if none remains that is a configuration error ("mail loops back to me").  The
FallbackMXhost comes last (unless we are listed), and also stands in when the name server cannot
answer.  ``[1.2.3.4]`` literals skip DNS.  ``addresses(host)`` gives every address of a host (A
and AAAA), each to be tried.  Raises ``errors.TempFail`` ('Name server timeout') when DNS cannot
answer now and ``errors.NoHost`` when the domain does not exist or has a null MX (RFC 7505).
``nameservers`` (the NameServers option, ext: ``ip[:port],...``) replaces /etc/resolv.conf;
without it, host addresses come from the system (/etc/hosts too).  Answers and failures are
kept for the run (``forget()`` ends it), so a dead name server costs one timeout per run.
"""

from __future__ import annotations

import _socket  # not socket.py: its enums and selectors would be in every relayed submission's start
import time

from mta import errors

LIFETIME = 10.0
KEEP = 300.0  # seconds an answer or a failure is kept within a run
_memo: dict[tuple[str, str, str], tuple[float, object]] = {}


def forget() -> None:
    """The run is over: ask again next time."""
    _memo.clear()


def _resolver(nameservers: str):
    import dns.resolver

    if not nameservers:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, ports = [], {}
        for item in nameservers.split(","):
            host, _, port = item.strip().rpartition(":") if item.count(":") == 1 else (item.strip(), "", "")
            resolver.nameservers.append(host)
            if port:
                ports[host] = int(port)
        resolver.nameserver_ports = ports
    resolver.lifetime = LIFETIME
    return resolver


def _query(name: str, rtype: str, nameservers: str) -> list:
    """The records' rdata (empty when the name has none of this type); kept for the run."""
    key = (name.lower(), rtype, nameservers)
    hit = _memo.get(key)
    if hit is not None and time.monotonic() - hit[0] < KEEP:
        if isinstance(hit[1], errors.MTAError):
            raise hit[1]
        return hit[1]  # type: ignore[return-value]
    try:
        result: object = _ask(name, rtype, nameservers)
    except errors.MTAError as exc:
        result = exc
    _memo[key] = (time.monotonic(), result)
    if isinstance(result, errors.MTAError):
        raise result
    return result  # type: ignore[return-value]


def _ask(name: str, rtype: str, nameservers: str) -> list:
    import dns.exception
    import dns.resolver

    try:
        return list(_resolver(nameservers).resolve(name, rtype))
    except dns.resolver.NXDOMAIN:
        return _nxdomain(name)
    except dns.resolver.NoAnswer:
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration):
        return _timeout(name)


def _nxdomain(name: str):
    raise errors.NoHost(f"Host unknown (Name server: {name}: host not found)")


def _timeout(name: str):
    raise errors.TempFail(f"{name}: Name server timeout", status="4.4.3")


def loops_back(domain: str) -> errors.ConfigError:
    return errors.ConfigError(f"{domain}. config error: mail loops back to me (MX problem?)",
                              status="5.3.5", code=553)


def mail_hosts(domain: str, nameservers: str = "", *, is_local=None, fallback: str = "") -> list[str]:
    """The hosts to try for domain, best first (see the module's docstring)."""
    if domain.startswith("[") and domain.endswith("]"):
        return [domain]
    try:
        records = _query(domain, "MX", nameservers)
    except errors.TempFail:
        if fallback:  # "name server is hosed -- push to fallback"
            return _fallback_hosts(fallback, nameservers)
        raise
    if not records:
        return [domain] + (_fallback_hosts(fallback, nameservers) if fallback else [])
    import random  # only for MX records: not in a submission to [127.0.0.1]

    ordered = sorted(records, key=lambda r: (r.preference, random.random()))
    hosts = [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in ordered]
    if [h for _p, h in hosts] in ([""], ["."]):
        raise errors.NoHost(f"{domain}: No valid MX (null MX)", status="5.1.10", code=556)
    mine = [p for p, h in hosts if is_local is not None and is_local(h)]
    if mine:
        hosts = [(p, h) for p, h in hosts if p < min(mine)]
        if not hosts:
            raise loops_back(domain)
    names = list(dict.fromkeys(h.lower() for _p, h in hosts))  # no duplicates
    if fallback and not mine:
        names += [h for h in _fallback_hosts(fallback, nameservers) if h not in names]
    return names


def _fallback_hosts(fallback: str, nameservers: str) -> list[str]:
    """FallbackMXhost: [host] as it is, otherwise its own MX hosts (or itself)."""
    if fallback.startswith("["):
        return [fallback]
    try:
        return mail_hosts(fallback, nameservers)
    except errors.MTAError:
        return [fallback]


def addresses(host: str, nameservers: str = "") -> list[str]:
    """Every address to try for host, IPv4 first (an address literal stays as it is)."""
    if host.startswith("[") and host.endswith("]"):
        return [host[1:-1].removeprefix("IPv6:").removeprefix("ipv6:")]
    if nameservers:
        found = [r.to_text() for r in _query(host, "A", nameservers)]
        try:
            found += [r.to_text() for r in _query(host, "AAAA", nameservers)]
        except errors.MTAError:
            if not found:
                raise
    else:
        found = _system_addresses(host)
    if not found:
        raise errors.TempFail(f"{host}: host name lookup failure", status="4.4.3")
    return found


def _system_addresses(host: str) -> list[str]:
    key = (host.lower(), "system", "")
    hit = _memo.get(key)
    if hit is not None and time.monotonic() - hit[0] < KEEP:
        return hit[1]  # type: ignore[return-value]
    try:
        infos = _socket.getaddrinfo(host, 25, 0, _socket.SOCK_STREAM)
    except OSError:
        infos = []
    found = list(dict.fromkeys(info[4][0] for info in sorted(infos, key=lambda i: i[0] != _socket.AF_INET)))
    _memo[key] = (time.monotonic(), found)
    return found


def address(host: str, nameservers: str = "") -> str:
    """The first address of host."""
    return addresses(host, nameservers)[0]


def resolves(domain: str, nameservers: str = "") -> None:
    """Does domain exist for mail: a name in /etc/hosts, or one with an MX, A or AAAA record?
    (Sendmail's ``resolve`` host map in check_mail.)  Raises ``errors.NoHost`` when it does not,
    ``errors.TempFail`` when DNS cannot tell now."""
    if _in_hosts_file(domain):
        return
    for rtype in ("MX", "A", "AAAA"):
        if _query(domain, rtype, nameservers):
            return
    _nxdomain(domain)


def _in_hosts_file(name: str, path: str = "/etc/hosts") -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return any(name.lower() in (w.lower() for w in line.split("#", 1)[0].split()[1:]) for line in fh)
    except OSError:
        return False
