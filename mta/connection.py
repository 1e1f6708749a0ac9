"""One connection of the daemon: an asyncio Protocol that feeds the session core and sends its replies.

Input goes from ``data_received`` straight into the core (mta.smtp.session), its replies out in
one write: no stream reader, no task woken and no future made per read.  A request that may
block (checks, queue writes: OFF_LOOP) goes to a thread of the daemon's, with the requests right
behind it up to the end of a transaction (one trip per pipelined message); input that comes
meanwhile waits in ``inbox`` (reading pauses past READ_SIZE, and while the client does not read
our replies), so pipelining stays in order.  A 250 is sent only after the queue write returned.

Holds the connection's timer (Timeout.command between commands, Timeout.datablock in DATA; one
timer re-armed lazily, not one per read), GreetPause, STARTTLS (what was read ahead in clear is
dropped), the 421s of a stopping daemon and of an internal error, and the log line for a client
that went away.  Trusts: nothing the client sends; the daemon (mta.smtpd.Daemon) that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from mta import errors
from mta.delivery import attempt, fresh, mode, schedule
from mta.mailers import esmtp
from mta.smtp import answer
from mta.smtp.session import Action, Session, reply

READ_SIZE = 65536
OFF_LOOP = frozenset(answer.HANDLERS) | {"queue"}  # what a session asks that may block: never on the loop
COMMAND_SLICE = 1024  # commands are fed to the session this much at a time (see _drain)
SHUTTING_DOWN = "Service shutting down"
CLOSE_GRACE = 5.0  # a client that does not read its last reply is cut off after this


class Connection(asyncio.Protocol):
    def __init__(self, daemon, opts: dict[str, str], ip: str):
        self.daemon, self.opts, self.ip = daemon, opts, ip
        self.ctx = daemon.ctx  # a session keeps the configuration it started with, across SIGHUP
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.inbox = bytearray()  # input the session cannot take yet
        self.busy = True  # before the greeting, and while a request is out
        self.lost = False
        self.finished = self.loop.create_future()  # set once the connection is gone and accounted for
        self.paused = False  # reading paused: inbox full, or our replies not read
        self.blocked = False  # the transport's write buffer is full
        self.draining = False  # _drain is feeding the inbox to the session
        self.last = self.loop.time()  # when we last began to wait for input
        self.timer: asyncio.TimerHandle | None = None
        self.armed = 0.0  # the wait the timer was set for
        self.early: asyncio.Future | None = None  # GreetPause: input before the greeting
        self.delay_checks = self.ctx.cfg.has_feature("delay_checks")
        self.task: asyncio.Task | None = None  # the greeting's setup, or a request we carry out ourselves

    # -- asyncio's side ----------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.max_size = READ_SIZE  # asyncio's 256 KiB would be mapped, shrunk and unmapped per read
        self.task = self.loop.create_task(self._start())  # held: the loop keeps tasks weakly

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if not (self.busy or self.inbox or self.blocked) and (
                len(data) <= COMMAND_SLICE or self.session.state == "data"):
            return self._take(data)
        self.inbox += data
        if self.early is not None and not self.early.done():
            self.early.set_result(None)
        self._flow()
        self._drain()

    def pause_writing(self) -> None:
        self.blocked = True
        self._flow()

    def resume_writing(self) -> None:
        self.blocked = False
        self._flow()
        self._drain()

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
        if self.early is not None and not self.early.done():
            self.early.set_result(None)
        if not self.busy:
            self._finish()
        # else _start, or the request under way (which owns the session), finishes when done

    # -- the conversation --------------------------------------------------------------------------

    async def _start(self) -> None:
        """Before the greeting: the client's name, the Connect: verdict, GreetPause."""
        d = self.daemon
        try:
            if d.stopping.is_set():
                self.busy = False
                return self._end("4.3.2", SHUTTING_DOWN)
            if self.ctx.cfg["StatusFile"]:
                from mta import stats

                await d.work.run(lambda: stats.record(self.ctx.cfg["StatusFile"], cf=1))
            client = await d.client(self.transport, self.opts)
            rejected, pause = await d.work.run(answer.connect, self.ctx, client)
            self.session = Session(self.ctx, client, tls_available=d.sslctx is not None, auth=d.auth,
                                   rejected=rejected)
            d.sessions.add(self.session)
            if self.lost:  # gone already: logged as a session that did nothing
                return self._finish()
            if pause and not await self._quiet(pause / 1000):
                return
            if not self.session.nullserver or not pause:
                self._send(self.session.greeting())
            self.busy, self.last = False, self.loop.time()
            self._arm()
            self._idle()
        except Exception as exc:  # the edge: log it, tell the client to come back, keep serving others
            self._fail(exc)

    async def _quiet(self, pause: float) -> bool:
        """GreetPause: wait for the client to speak first.  False when it went away meanwhile."""
        if not self.inbox:
            self.early = self.loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.early, pause)
        if self.lost:
            self._finish()
            return False
        if self.inbox:
            self.session.log(f"rejecting commands from {self.session.client.relay_text} due to pre-greeting "
                             f"traffic after {int(pause)} seconds")
            self._send(self.session.refuse_early_talker())
        return True

    def _take(self, data: bytes) -> None:
        try:
            self._go(self.session.receive(data))
        except Exception as exc:
            self._fail(exc)

    def _go(self, outputs: list) -> None:
        """Carry out the core's outputs in order: replies written in one go, requests answered
        (the first that must wait ends this call; its answer carries on from there)."""
        out = bytearray()
        while outputs:
            item = outputs.pop(0)
            if isinstance(item, bytes):
                out += item
            elif item.kind == "mail" and self.delay_checks:
                # check_mail waits for each RCPT (policy.mail): all MAIL still asks is the queue's
                # free space (one statvfs), not worth a trip to a thread and back
                outputs.extend(self.session.resume(answer.answer(self.ctx, item)))
            else:
                self._send(bytes(out))
                self.busy = True
                if item.kind in OFF_LOOP:  # this request and the ones right behind it: one trip
                    self.daemon.work.run_then(self._answered, self._answer_run, item, outputs)
                else:
                    self.task = self.loop.create_task(self._act(item))
                return
        self._send(bytes(out))
        self._idle()

    def _answered(self, ok: bool, value) -> None:
        """Back on the loop from a thread: its replies, and the outputs still to carry out."""
        if not ok:
            return self._fail(value)
        written, outputs = value
        self._send(written)
        self._resumed(outputs)

    def _resumed(self, outputs: list) -> None:
        self.busy = False
        if self.lost:
            return self._finish()
        try:
            self._go(outputs)
        except Exception as exc:
            self._fail(exc)

    def _idle(self) -> None:
        """Nothing is out: close if the session has ended, else take what came meanwhile."""
        session = self.session
        if session.closed:
            return self._close()
        if self.daemon.stopping.is_set() and session.state in ("connected", "greeted"):
            return self._end("4.3.2", SHUTTING_DOWN)
        self.last = self.loop.time()
        if self.timer is not None and self._wait() != self.armed:  # into DATA or out of it
            self.timer.cancel()
            self._arm()
        self._drain()

    def _drain(self) -> None:
        """Feed the inbox to the session while nothing is out and our replies flow: commands a
        COMMAND_SLICE at a time, so that what one read asks for (100 bytes of HELP are 7 KB of
        replies) cannot pile up unsent; a message's text whole."""
        if self.draining:
            return  # the loop below is under way further up: it carries on
        self.draining = True
        try:
            while self.inbox and not (self.busy or self.blocked or self.lost or self.session is None
                                      or self.session.closed):
                cut = len(self.inbox) if self.session.state == "data" else COMMAND_SLICE
                data = bytes(self.inbox[:cut])
                del self.inbox[:cut]
                self._flow()
                self._take(data)
        finally:
            self.draining = False

    def _answer_run(self, action: Action, outputs: list) -> tuple[bytes, list]:
        """In a thread: answer action and the requests that follow it without waiting on the
        client, up to the end of one transaction (a pipelined MAIL, RCPTs, DATA and the message:
        one trip per message, its replies sent before the next message is worked on).  The
        session is this thread's alone meanwhile: the loop leaves it alone until the answer."""
        written = bytearray()
        while True:
            outputs.extend(self.session.resume(self._answer(action)))
            while outputs and isinstance(outputs[0], bytes):
                written += outputs.pop(0)
            if action.kind == "queue" or not outputs or outputs[0].kind not in OFF_LOOP:
                return bytes(written), outputs
            action = outputs.pop(0)

    def _answer(self, action: Action):
        ctx = self.ctx
        if action.kind != "queue":
            return answer.answer(ctx, action)
        entries = answer.store(ctx, action.arg)
        if isinstance(entries, errors.MTAError):
            return entries
        for entry in entries:  # one per queue group (and recipients limit) it was split into
            how = mode.plan(ctx.cfg, priority=entry.priority)  # QueueLA may queue it
            if how == mode.NOW:  # the reply to DATA waits for the delivery
                deliver(ctx.at(entry.qdir), entry.qid)
            elif how == mode.BACKGROUND:
                self.daemon.pool.submit(deliver, ctx.at(entry.qdir), entry.qid)
            else:
                fresh.announce_queued(ctx, entry)
        return entries[0].qid

    async def _act(self, action: Action) -> None:
        """The requests the daemon carries out itself: a wait, ETRN's queue run, STARTTLS."""
        result = None
        try:
            if action.kind == "delay":
                await asyncio.sleep(action.arg)
            elif action.kind == "etrn":
                sel = schedule.Selection(recipients=((str(action.arg), False),))
                self.daemon.pool.submit(schedule.run_queue, self.ctx, sel)
            elif action.kind == "starttls":
                result = await self._starttls()
            self._resumed(self.session.resume(result))
        except Exception as exc:
            self._fail(exc)

    async def _starttls(self) -> str | None:
        """Nothing the client sent in clear after STARTTLS may be obeyed: what was read ahead is
        dropped (the core has dropped its own buffer); what is still in the socket goes to the
        handshake, and fails it."""
        self.inbox.clear()
        session = self.session
        try:
            self.transport = await self.loop.start_tls(self.transport, self, self.daemon.sslctx,
                                                       server_side=True)
        except (ssl.SSLError, OSError) as exc:
            session.log(f"STARTTLS=server, error: accept failed={exc}, relay={session.client.relay_text}")
            return None
        self.paused = self.blocked = False  # a new transport, reading
        obj = self.transport.get_extra_info("ssl_object")
        if obj is None:
            return "TLS"
        cipher = obj.cipher() or ("", "", 0)
        session.client.tls_info = f"version={obj.version()} cipher={cipher[0]} bits={cipher[2]} verify=NO"
        return obj.version()

    # -- the edges ---------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _flow(self) -> None:
        """Read while the inbox has room and the client reads what we write."""
        stop = self.blocked or len(self.inbox) > READ_SIZE
        if stop != self.paused and not self.transport.is_closing():
            self.paused = stop
            (self.transport.pause_reading if stop else self.transport.resume_reading)()

    def _wait(self) -> float:
        """How long input may take now: Timeout.datablock in DATA, Timeout.command otherwise."""
        cfg = self.ctx.cfg
        return (cfg["Timeout.datablock"] if self.session.state == "data" else cfg["Timeout.command"]) or 3600

    def _arm(self) -> None:
        """The timer, due when input has taken too long (a wait for a thread does not count)."""
        self.armed = self._wait()
        self.timer = self.loop.call_at((self.loop.time() if self.busy else self.last) + self.armed,
                                       self._timed_out)

    def _timed_out(self) -> None:
        """Checked when due, and re-armed from the last input when some came since."""
        session = self.session
        if self.lost or session.closed:
            return
        if self.busy or self.loop.time() - self.last < self._wait():
            return self._arm()
        session.log(f"timeout waiting for input from {session.client.relay_text} during "
                    f"{'message collect' if session.state == 'data' else 'server cmd read'}")
        self._end("4.4.2", "Timeout waiting for input")

    def shut_down(self) -> None:
        """The daemon stops: 421 to a session that is not answered or finished by now."""
        if self.lost:
            return
        if self.session is not None and not self.session.closed and not self.busy:
            return self._end("4.3.2", SHUTTING_DOWN)
        self._close()

    def _fail(self, exc: BaseException) -> None:
        self.busy = False  # nothing is out any more: a thread's failure has come back
        self.ctx.log.line(f"SYSERR: session with {self.ip}: {type(exc).__name__}: {exc}")
        self._end("4.3.0", "Internal error; try again later")

    def _end(self, status: str, text: str) -> None:
        """A 421 (our host name first), the session over, the connection closed after it."""
        self._send(reply(421, status, f"{self.ctx.cfg.hostname} {text}"))
        if self.session is not None:
            self.session.closed = True
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()  # after what is buffered has been written
            self.loop.call_later(CLOSE_GRACE, self.transport.abort)
        if self.lost:
            self._finish()

    def _finish(self) -> None:
        """Once: the log line for a client that went away, and the parent told."""
        if self.finished.done():
            return
        self.finished.set_result(None)
        if self.timer is not None:
            self.timer.cancel()
        session = self.session
        if session is not None:
            self.daemon.sessions.discard(session)
            if not session.closed:
                line = session.lost()
                if line:
                    session.log(line)
        self.daemon.connection_closed(self)


def deliver(ctx, qid: str) -> None:
    """A delivery in the pool: whatever goes wrong is logged; the entry stays queued for a retry."""
    try:
        attempt.deliver(ctx, qid)
    except Exception as exc:
        ctx.log.line(f"SYSERR: delivery failed: {type(exc).__name__}: {exc}", qid)
    finally:
        esmtp.forget_hosts()  # a run of its own, as Sendmail's child: the next message tries again
