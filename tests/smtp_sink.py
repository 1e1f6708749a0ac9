"""A minimal SMTP receiver for tests: records each message; can refuse chosen recipients."""

from __future__ import annotations

import socketserver
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class Sink:
    messages: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    delay: float = 0.0  # seconds to wait before accepting each message (overlapping runners)


def serve(port: int, sink: Sink) -> socketserver.ThreadingTCPServer:
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, text: str) -> None:
            self.wfile.write(text.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("220 sink.test ESMTP")
            sender, rcpts = "", []
            while True:
                line = self.rfile.readline(4096)
                if not line:
                    return
                cmd = line.decode("latin-1").rstrip("\r\n")
                verb = cmd[:4].upper()
                if verb == "EHLO":
                    self.wfile.write(b"250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == "HELO":
                    self.reply("250 sink.test")
                elif verb == "MAIL":
                    sender, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                    self.reply("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr = cmd[8:].split(">")[0].lstrip("<")
                    if addr in sink.refuse:
                        self.reply(f"550 5.1.1 <{addr}>... User unknown")
                    else:
                        rcpts.append(addr)
                        self.reply("250 2.1.5 ok")
                elif verb == "DATA" and not rcpts:  # RFC 2920: a pipelined DATA after no recipient
                    self.reply("554 5.5.1 No valid recipients")
                elif verb == "DATA":
                    self.reply("354 go ahead")
                    data = b""
                    while True:
                        chunk = self.rfile.readline()
                        if chunk in (b".\r\n", b""):
                            break
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    if sink.delay:
                        time.sleep(sink.delay)
                    sink.messages.append(Received(sender, rcpts, data))
                    self.reply("250 2.0.0 SINKID Message accepted for delivery")
                elif verb == "QUIT":
                    self.reply("221 2.0.0 bye")
                    return
                else:
                    self.reply("250 2.0.0 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
