"""DNS: the hosts to try for a mail domain, from MX records (RFC 5321 5.1), with dnspython.

``mail_hosts(domain)`` returns host names in the order to try them: MX preference order
(ties shuffled), or the domain itself when it has no MX.  ``[1.2.3.4]`` literals skip DNS.
``address(host)`` gives the IP to connect to.  Raises ``errors.TempFail`` ('Name server
timeout') when DNS cannot answer now and ``errors.NoHost`` when the domain does not exist or
has a null MX (RFC 7505).  ``nameservers`` (the NameServers option, ext: ``ip[:port],...``)
replaces /etc/resolv.conf; without it, host addresses come from the system (/etc/hosts too).
"""

from __future__ import annotations

import random
import socket

from mta import errors

LIFETIME = 10.0


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


def _query(name: str, rtype: str, nameservers: str):
    import dns.exception
    import dns.resolver

    try:
        return _resolver(nameservers).resolve(name, rtype)
    except dns.resolver.NXDOMAIN as exc:
        raise errors.NoHost(f"Host unknown (Name server: {name}: host not found)") from exc
    except dns.resolver.NoAnswer:
        return None
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as exc:
        raise errors.TempFail(f"{name}: Name server timeout", status="4.4.3") from exc


def mail_hosts(domain: str, nameservers: str = "") -> list[str]:
    if domain.startswith("[") and domain.endswith("]"):
        return [domain]
    answer = _query(domain, "MX", nameservers)
    if answer is None:
        return [domain]
    records = sorted(answer, key=lambda r: (r.preference, random.random()))
    hosts = [r.exchange.to_text(omit_final_dot=True) for r in records]
    if hosts in ([""], ["."]):
        raise errors.NoHost(f"{domain}: No valid MX (null MX)", status="5.1.10", code=556)
    return hosts


def address(host: str, nameservers: str = "") -> str:
    """The address to connect to for host (an address literal stays as it is)."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    if nameservers:
        answer = _query(host, "A", nameservers)
        if answer is None:
            raise errors.TempFail(f"{host}: host name lookup failure", status="4.4.3")
        return answer[0].to_text()
    try:
        return socket.getaddrinfo(host, 25, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        raise errors.TempFail(f"{host}: host name lookup failure", status="4.4.3") from exc
