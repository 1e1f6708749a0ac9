"""The SMTP daemon (`sendmail -bd`, `-bD`): asyncio around the protocol core in mta.smtp.

Holds: listeners from every DaemonPortOptions line, TLS (ServerCertFile/ServerKeyFile),
GreetPause, timeouts, the PidFile in Sendmail's two-line format, and one worker's loop: the
connections mta.workers hands over, signals (SIGHUP re-reads the config and maps, SIGTERM lets
transactions in flight finish) and delivery of accepted mail.  The parent in mta.workers
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

from mta import VERSION, config, errors, log, maildrop, offload
from mta.context import Context
from mta.delivery import attempt, mode, schedule
from mta.mailers import esmtp
from mta.policy import Client
from mta.smtp import answer
from mta.smtp.session import Action, Session, reply

READ_SIZE = 65536
OFF_LOOP = frozenset(answer.HANDLERS) | {"queue"}  # what a session asks that may block: never on the loop
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
        self.tasks: set[asyncio.Task] = set()  # one per connection
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
        for fd in fds:
            sock = socket.socket(fileno=fd)
            asyncio.get_running_loop().create_task(self._accepted(sock, self.listener_opts[int(index)], ip))

    async def _accepted(self, sock: socket.socket, opts: dict[str, str], ip: str) -> None:
        async def serve(reader, writer) -> None:
            try:
                await self._connection(reader, writer, opts)
            finally:
                self._closed(ip)

        # with a connected callback the protocol is a server's: STARTTLS then handshakes as one
        protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=READ_SIZE * 2), serve)
        try:
            transport, _p = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock)
            transport.max_size = READ_SIZE  # asyncio's 256 KiB would be mapped, shrunk and unmapped per read
        except OSError:
            sock.close()
            self._closed(ip)

    def _closed(self, ip: str) -> None:
        """Tell the parent, which counts connections for the limits."""
        with contextlib.suppress(OSError):
            self.ctrl.send(f"closed {ip}".encode())

    def reload(self) -> None:
        """SIGHUP: read the config (and so the maps) again; sessions under way keep theirs."""
        ctx = reloaded(self.ctx, self.overrides)
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
        they use go away, so nothing is left for asyncio.run to cancel."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    def _loop_error(self, loop, context: dict) -> None:
        """Whatever escapes a callback goes to the mail log, never to stderr as a traceback."""
        exc = context.get("exception")
        self.ctx.log.line(f"SYSERR: {context.get('message', 'event loop')}: "
                          f"{type(exc).__name__ + ': ' if exc else ''}{exc or ''}")

    # -- one connection ---------------------------------------------------------------------------

    async def _client(self, writer, opts: dict[str, str]) -> Client:
        peer = writer.get_extra_info("peername") or ("", 0)
        sock = writer.get_extra_info("sockname") or ("", 0)
        ip = peer[0].removeprefix("::ffff:")
        try:
            name = (await asyncio.wait_for(self.work.run(socket.gethostbyaddr, ip), RDNS_TIMEOUT))[0]
        except (TimeoutError, OSError):
            name = ""
        modifiers = opts.get("M", "")
        return Client(ip, name, daemon=opts.get("Name", "MTA"), msa="a" in modifiers, local_addr=sock[0])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opts) -> None:
        peer = (writer.get_extra_info("peername") or ("?",))[0].removeprefix("::ffff:")
        if self.stopping.is_set():
            writer.write(reply(421, "4.3.2", f"{self.ctx.cfg.hostname} Service shutting down"))
            await _close(writer)
            return
        task = asyncio.current_task()
        self.tasks.add(task)
        session = None
        try:
            if self.ctx.cfg["StatusFile"]:
                from mta import stats

                await self.work.run(lambda: stats.record(
                    self.ctx.cfg["StatusFile"], cf=1))
            client = await self._client(writer, opts)
            ctx = self.ctx
            rejected, pause = await self.work.run(answer.connect, ctx,
                                                                               client)
            session = Session(ctx, client, tls_available=self.sslctx is not None, auth=self.auth,
                              rejected=rejected)
            self.sessions.add(session)
            await self._converse(ctx, session, reader, writer, pause)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # the daemon stops
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(reply(421, "4.3.2", f"{self.ctx.cfg.hostname} Service shutting down"))
            raise
        except Exception as exc:  # the edge: log it, tell the client to come back, keep serving others
            self.ctx.log.line(f"SYSERR: session with {peer}: {type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(reply(421, "4.3.0", f"{self.ctx.cfg.hostname} Internal error; try again later"))
        finally:
            if session is not None:
                self.sessions.discard(session)
                if not session.closed:
                    line = session.lost()
                    if line:
                        session.log(line)
            self.tasks.discard(task)
            await _close(writer)

    async def _converse(self, ctx, session: Session, reader, writer, pause: int) -> None:
        timeout = ctx.cfg["Timeout.command"] or 3600
        if pause:
            try:
                early = await asyncio.wait_for(reader.read(READ_SIZE), pause / 1000)
            except TimeoutError:
                early = None
            if early == b"":  # gone before the greeting
                return
            if early is not None:
                session.log(f"rejecting commands from {session.client.relay_text} due to pre-greeting "
                             f"traffic after {int(pause / 1000)} seconds")
                writer.write(session.refuse_early_talker())
                await self._outputs(ctx, session, session.receive(early), reader, writer)
        if not session.nullserver or not pause:
            writer.write(session.greeting())
        await writer.drain()
        while not session.closed:
            if self.stopping.is_set() and session.state in ("connected", "greeted"):
                writer.write(reply(421, "4.3.2", f"{ctx.cfg.hostname} Service shutting down"))
                session.closed = True
                break
            try:  # Timeout.datablock while a message comes in, Timeout.command between commands
                wait = (ctx.cfg["Timeout.datablock"] or 3600) if session.state == "data" else timeout
                async with asyncio.timeout(wait):  # no task per read, as wait_for makes
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                session.log(f"timeout waiting for input from {session.client.relay_text} during "
                             f"{'message collect' if session.state == 'data' else 'server cmd read'}")
                writer.write(reply(421, "4.4.2", f"{ctx.cfg.hostname} Timeout waiting for input"))
                session.closed = True
                break
            if not data:
                break
            await self._outputs(ctx, session, session.receive(data), reader, writer)

    async def _outputs(self, ctx, session: Session, outputs: list, reader, writer) -> None:
        while outputs:
            out = outputs.pop(0)
            if isinstance(out, bytes):
                writer.write(out)
                continue
            if out.kind == "mail" and ctx.cfg.has_feature("delay_checks"):
                # check_mail waits for each RCPT (policy.mail): all MAIL still asks is the queue's
                # free space (one statvfs), not worth a trip to a thread and back
                outputs.extend(session.resume(answer.answer(ctx, out)))
                continue
            if out.kind in OFF_LOOP:  # this request and the ones right behind it: one trip to a thread
                written, outputs = await self.work.run(self._answer_run, ctx, session, out, outputs)
                writer.write(written)
                continue
            await writer.drain()
            outputs.extend(session.resume(await self._act(ctx, session, out, reader, writer)))
        await writer.drain()

    def _answer_run(self, ctx, session: Session, action: Action, outputs: list) -> tuple[bytes, list]:
        """In a thread: answer action and the requests that follow it without waiting on the
        client, up to the end of one transaction (a pipelined MAIL, RCPTs, DATA and the message:
        one trip per message, its replies sent before the next message is worked on).  The
        session is this thread's alone meanwhile: its loop waits for this call."""
        written = bytearray()
        while True:
            outputs.extend(session.resume(self._answer(ctx, action)))
            while outputs and isinstance(outputs[0], bytes):
                written += outputs.pop(0)
            if action.kind == "queue" or not outputs or outputs[0].kind not in OFF_LOOP:
                return bytes(written), outputs
            action = outputs.pop(0)

    def _answer(self, ctx, action: Action):
        if action.kind != "queue":
            return answer.answer(ctx, action)
        entries = answer.store(ctx, action.arg)
        if isinstance(entries, errors.MTAError):
            return entries
        for entry in entries:  # one per queue group (and recipients limit) it was split into
            how = mode.plan(ctx.cfg, priority=entry.priority)  # QueueLA may queue it
            if how == mode.NOW:  # the reply to DATA waits for the delivery
                _deliver(ctx.at(entry.qdir), entry.qid)
            elif how == mode.BACKGROUND:
                self.pool.submit(_deliver, ctx.at(entry.qdir), entry.qid)
            else:
                attempt.announce_queued(ctx, entry)
        return entries[0].qid

    async def _act(self, ctx, session: Session, action: Action, reader, writer):
        if action.kind == "delay":
            await asyncio.sleep(action.arg)
            return None
        if action.kind == "etrn":
            sel = schedule.Selection(recipients=((str(action.arg), False),))
            self.pool.submit(schedule.run_queue, ctx, sel)
            return None
        if action.kind == "starttls":
            # Nothing the client sent in clear after STARTTLS may be obeyed: stop reading, then
            # drop what the stream already holds; what is still in the socket goes to the
            # handshake (and fails it).  The core has dropped its own buffer.
            writer.transport.pause_reading()
            await writer.drain()
            _discard_buffered(reader)
            try:
                await writer.start_tls(self.sslctx)
            except (ssl.SSLError, OSError) as exc:
                session.log(f"STARTTLS=server, error: accept failed={exc}, relay={session.client.relay_text}")
                return None
            obj = writer.get_extra_info("ssl_object")
            if obj is not None:
                cipher = obj.cipher() or ("", "", 0)
                session.client.tls_info = (f"version={obj.version()} cipher={cipher[0]} bits={cipher[2]} "
                                           "verify=NO")
                return obj.version()
            return "TLS"
        return None


def _discard_buffered(reader: asyncio.StreamReader) -> None:
    """Forget the bytes a StreamReader has read ahead (it has no public call for this)."""
    reader._buffer.clear()  # noqa: SLF001


def _deliver(ctx: Context, qid: str) -> None:
    """A delivery in the pool: whatever goes wrong is logged; the entry stays queued for a retry."""
    try:
        attempt.deliver(ctx, qid)
    except Exception as exc:
        ctx.log.line(f"SYSERR: delivery failed: {type(exc).__name__}: {exc}", qid)
    finally:
        esmtp.forget_hosts()  # a run of its own, as Sendmail's child: the next message tries again


async def _close(writer) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (TimeoutError, OSError, ssl.SSLError):
        pass


def reloaded(ctx: Context, overrides) -> Context | None:
    """SIGHUP: a context on the config read again, or None (logged) when it cannot be read."""
    try:
        cfg = config.load(ctx.cfg.path, overrides)
    except errors.MTAError as exc:
        ctx.log.line(f"SIGHUP: config not reloaded: {exc.text}")
        return None
    return Context.create(cfg, ctx.log.ident)


def starting_line(ctx: Context, queue_interval: int) -> str:
    mode = "SMTP+queueing@" + log.pintvl(queue_interval) if queue_interval else "SMTP"
    return f"starting daemon ({VERSION}): {mode}"


def write_pidfile(ctx: Context, argv: list[str]) -> None:
    """Sendmail's two lines: the pid, then the command line; written before we listen."""
    path = ctx.cfg["PidFile"]
    if not path:
        return
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".tmp", "w") as fh:
            fh.write(f"{os.getpid()}\n{' '.join(argv)}\n")
        os.rename(path + ".tmp", path)
    except OSError as exc:
        ctx.log.line(f"unable to write pid to {path}: {exc.strerror}")


def remove_pidfile(ctx: Context) -> None:
    path = ctx.cfg["PidFile"]
    try:
        with open(path) as fh:
            if fh.readline().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass


def run_worker(ctx: Context, ctrl: socket.socket, listener_opts: list[dict[str, str]], *, overrides=None) -> None:
    """A worker process's life: its own loop, serving what the parent hands over, until SIGTERM."""
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
            attempt.after_queue(ctx, entry)
        return entries[0].qid
    if action.kind == "etrn":
        schedule.run_queue(ctx, schedule.Selection(recipients=((str(action.arg), False),)))
    return None
