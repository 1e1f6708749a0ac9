"""The SMTP daemon (`sendmail -bd`, `-bD`): asyncio around the protocol core in mta.smtp.

Holds: listeners from every DaemonPortOptions line, TLS (ServerCertFile/ServerKeyFile),
and one worker's loop: the connections mta.workers
hands over (each an mta.connection.Connection: GreetPause, timeouts, STARTTLS), signals
(SIGHUP re-reads the config and maps, SIGTERM lets transactions in flight finish) and delivery
of accepted mail.  The parent in mta.workers
listens, keeps the connection caps (MaxDaemonChildren, ClientConn:, ClientRate:, RefuseLA) for
all workers together and runs the queue for -qTIME.
Nothing that blocks runs on the event loop: the session's requests (access maps, routing,
aliases, PBKDF2 for AUTH: mta.smtp.answer) go to one thread pool, queue files with fsync,
deliveries and queue runs to another, so a slow map, disk or mailbox never stalls the other
sessions.  A 250 is sent only after the queue files are on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
import time

from mta import VERSION, connection, errors, log, maildrop, offload, process, writeback
from mta.context import Context
from mta.delivery import fresh, schedule
from mta.policy import Client
from mta.smtp import answer
from mta.smtp.session import Action, Session

READ_SIZE = connection.READ_SIZE
RDNS_TIMEOUT = 5.0
SHUTDOWN_GRACE = 60.0
DELIVERY_GRACE = 10.0  # after the sessions have ended, for deliveries under way


def listener_options(spec: str) -> dict[str, str]:
    """'Port=2525,Addr=127.0.0.1,Name=MTA,M=Ea' -> {'Port': ..., ...}."""
    out = {}
    for part in spec.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip()] = value.strip()
    return out


def _port(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return socket.getservbyname(value or "smtp", "tcp")
    except OSError:
        return 25


def tls_context(cfg) -> ssl.SSLContext | None:
    cert, key = cfg["ServerCertFile"], cfg["ServerKeyFile"]
    if not cert or not key:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if cfg["CACertFile"]:
        ctx.load_verify_locations(cfg["CACertFile"])
    return ctx


def bind(cfg) -> list[tuple[socket.socket, dict[str, str]]]:
    """Open every DaemonPortOptions listener now, so a bind error reaches the terminal."""
    out = []
    for spec in cfg.daemon_ports or ["Port=smtp,Name=MTA"]:
        opts = listener_options(spec)
        family = socket.AF_INET6 if opts.get("Family", "inet") == "inet6" else socket.AF_INET
        host = opts.get("Addr") or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, _port(opts.get("Port", "smtp"))))  # asyncio listens, once we are ready
        except OSError:
            sock.close()
            for s, _o in out:
                s.close()
            raise
        sock.setblocking(False)
        out.append((sock, opts))
    return out


class Daemon:
    """One worker: the sessions of the connections its parent (mta.workers.Pool) hands it over ctrl."""

    def __init__(self, ctx: Context, ctrl: socket.socket, listener_opts: list[dict[str, str]], *, overrides=None):
        self.ctx = ctx
        self.ctrl = ctrl
        self.listener_opts = listener_opts
        self.overrides = overrides or []
        # the sessions' requests (checks, queue writes): many at once, so commits share their fsync
        self.work = offload.Threads(32, "mta-session")
        self.pool = offload.Threads(8, "mta-delivery")  # deliveries, ETRN runs, the maildrop
        self.sessions: set[Session] = set()
        self.connections: set[connection.Connection] = set()
        self.stopping = asyncio.Event()
        self.sslctx = None
        self.auth = False

    # -- setup ---------------------------------------------------------------------------------

    def _load_security(self) -> None:
        cfg = self.ctx.cfg
        try:
            self.sslctx = tls_context(cfg)
        except (OSError, ssl.SSLError) as exc:
            self.ctx.log.line(f"STARTTLS=server: cannot load certificate: {exc}")
            self.sslctx = None
        self.auth = bool(cfg["AuthPasswordFile"])

    def start(self) -> None:
        self._load_security()
        self.ctrl.setblocking(False)
        asyncio.get_running_loop().add_reader(self.ctrl, self._handed_over)

    def _handed_over(self) -> None:
        """A connection from the parent: the socket, and which listener it came in on."""
        try:
            msg, fds, _flags, _addr = socket.recv_fds(self.ctrl, 512, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            msg, fds = b"", []
        if not msg:  # the parent is gone: finish what is under way and stop
            asyncio.get_running_loop().remove_reader(self.ctrl)
            self.stopping.set()
            return
        index, _, ip = msg.decode().partition(" ")
        if not fds:  # no room in our descriptor table: the kernel dropped it (MSG_CTRUNC)
            self.ctx.log.line(f"SYSERR: a connection from {ip} was handed over without its socket "
                              "(too many open files?)")
            self._closed(ip)  # gone: the parent must not count it for the limits any more
        for fd in fds:
            sock = socket.socket(fileno=fd)
            asyncio.get_running_loop().create_task(self._accepted(sock, self.listener_opts[int(index)], ip))

    async def _accepted(self, sock: socket.socket, opts: dict[str, str], ip: str) -> None:
        conn = connection.Connection(self, opts, ip)
        self.connections.add(conn)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, sock)
        except OSError:
            sock.close()
            self.connection_closed(conn)

    def connection_closed(self, conn: connection.Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._closed(conn.ip)

    def _closed(self, ip: str) -> None:
        """Tell the parent, which counts connections for the limits."""
        with contextlib.suppress(OSError):
            self.ctrl.send(f"closed {ip}".encode())

    def reload(self) -> None:
        """SIGHUP: read the config (and so the maps) again; sessions under way keep theirs."""
        ctx = process.reloaded(self.ctx, self.overrides)
        if ctx is None:
            return
        self.ctx = ctx
        self._load_security()
        self.ctx.log.line("restarting on SIGHUP: configuration re-read")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()  # signal handlers first: clients may connect at once
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.set_exception_handler(self._loop_error)
        self.start()
        drop_task = asyncio.create_task(maildrop.serve(lambda: self.ctx.cfg, self.pool))  # users' mail
        await self.stopping.wait()
        drop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drop_task
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(self.ctrl)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while any(s.state in ("mail", "rcpt", "data") or s._pending for s in self.sessions):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await self._end_sessions()
        # deliveries under way get DELIVERY_GRACE more; past that, what is still out stays
        # queued for the next run, as after a crash (never waited for in a thread of asyncio's)
        self.pool.shutdown(wait=False)
        deadline = min(deadline, time.monotonic() + DELIVERY_GRACE)
        while any(t.is_alive() for t in self.pool.threads) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.work.shutdown(wait=False, cancel_futures=True)

    async def _end_sessions(self) -> None:
        """Idle sessions (and ones past the grace time) are told 421 and closed before the pools
        they use go away."""
        conns = list(self.connections)
        for conn in conns:
            conn.shut_down()
        if conns:
            await asyncio.wait([c.finished for c in conns], timeout=10)

    def _loop_error(self, loop, context: dict) -> None:
        """Whatever escapes a callback goes to the mail log, never to stderr as a traceback."""
        exc = context.get("exception")
        self.ctx.log.line(f"SYSERR: {context.get('message', 'event loop')}: "
                          f"{type(exc).__name__ + ': ' if exc else ''}{exc or ''}")

    # -- one connection ---------------------------------------------------------------------------

    async def client(self, transport, opts: dict[str, str]) -> Client:
        """Who is connecting: the address, its name by reverse DNS (in a thread, bounded)."""
        peer = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("sockname") or ("", 0)
        ip = peer[0].removeprefix("::ffff:")
        try:
            name = (await asyncio.wait_for(self.work.run(socket.gethostbyaddr, ip), RDNS_TIMEOUT))[0]
        except (TimeoutError, OSError):
            name = ""
        modifiers = opts.get("M", "")
        return Client(ip, name, daemon=opts.get("Name", "MTA"), msa="a" in modifiers, local_addr=sock[0])


def starting_line(ctx: Context, queue_interval: int) -> str:
    mode = "SMTP+queueing@" + log.pintvl(queue_interval) if queue_interval else "SMTP"
    return f"starting daemon ({VERSION}): {mode}"


def run_worker(ctx: Context, ctrl: socket.socket, listener_opts: list[dict[str, str]], *, overrides=None) -> None:
    """A worker process's life: its own loop, serving what the parent hands over, until SIGTERM."""
    writeback.enable()  # a message's df and tf made durable by one journal commit
    asyncio.run(Daemon(ctx, ctrl, listener_opts, overrides=overrides).run())


def queue_run(ctx: Context) -> None:
    """One -qTIME run (in its own process, forked by the parent)."""
    schedule.run_queue(ctx, schedule.Selection(), periodic=True)


def stdio(ctx: Context, user: str) -> int:
    """sendmail -bs: one SMTP session on standard input and output, the same core, no socket."""
    client = Client("", user=user, daemon="")
    session = Session(ctx, client)
    out = sys.stdout.buffer
    out.write(session.greeting())
    out.flush()
    outputs: list = []
    while not session.closed:
        data = os.read(0, READ_SIZE)
        if not data:
            line = session.lost()
            if line:
                session.log(line)
            break
        outputs = session.receive(data)
        while outputs:
            item = outputs.pop(0)
            if isinstance(item, bytes):
                out.write(item)
                continue
            out.flush()
            outputs.extend(session.resume(_act_inline(ctx, session, item)))
        out.flush()
    return errors.EX_OK


def _act_inline(ctx: Context, session: Session, action: Action):
    if action.kind in answer.HANDLERS:
        return answer.answer(ctx, action)
    if action.kind == "delay":
        time.sleep(action.arg)
        return None
    if action.kind == "queue":
        entries = answer.store(ctx, action.arg)
        if isinstance(entries, errors.MTAError):
            return entries
        for entry in entries:
            fresh.after_queue(ctx, entry)
        return entries[0].qid
    if action.kind == "etrn":
        schedule.run_queue(ctx, schedule.Selection(recipients=((str(action.arg), False),)))
    return None
