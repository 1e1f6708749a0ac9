"""DNS: the hosts to try for a mail domain, from MX records (RFC 5321 5.1), with dnspython.

``mail_hosts(domain)`` returns host names in the order to try them: MX preference order
(ties shuffled), or the domain itself when it has no MX.  ``[1.2.3.4]`` literals skip DNS.
Raises ``errors.TempFail`` ('Name server timeout') when DNS cannot answer now and
``errors.NoHost`` when the domain does not exist or has a null MX (RFC 7505).
"""

from __future__ import annotations

import random

from mta import errors

LIFETIME = 10.0


def mail_hosts(domain: str) -> list[str]:
    if domain.startswith("[") and domain.endswith("]"):
        return [domain]
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.lifetime = LIFETIME
    try:
        answer = resolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN as exc:
        raise errors.NoHost(f"Host unknown (Name server: {domain}: host not found)") from exc
    except dns.resolver.NoAnswer:
        return [domain]
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as exc:
        raise errors.TempFail(f"{domain}: Name server timeout", status="4.4.3") from exc
    records = sorted(answer, key=lambda r: (r.preference, random.random()))
    hosts = [r.exchange.to_text(omit_final_dot=True) for r in records]
    if hosts == [""] or hosts == ["."]:
        raise errors.NoHost(f"{domain}: No valid MX (null MX)", status="5.1.10", code=556)
    return hosts
