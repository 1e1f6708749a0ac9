"""A small authoritative DNS server for tests (dnspython), on 127.0.0.1 and a free UDP port."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rrset


class Server:
    """records: {(name, type): [rdata text, ...]}; names not present at all are NXDOMAIN."""

    def __init__(self, records: dict[tuple[str, str], list[str]], host: str = "127.0.0.1"):
        self.records = {(n.lower().rstrip("."), t.upper()): v for (n, t), v in records.items()}
        self.names = {n for n, _t in self.records}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            q = query.question[0]
            name = q.name.to_text(omit_final_dot=True).lower()
            rtype = dns.rdatatype.to_text(q.rdtype)
            if name not in self.names:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif (name, rtype) in self.records:
                reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", rtype, *self.records[(name, rtype)]))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()
