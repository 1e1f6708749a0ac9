"""The daemon's processes: one parent that listens and keeps the global limits, N workers that talk SMTP.

The parent binds every DaemonPortOptions listener, accepts each connection, applies the limits
that must hold for the whole daemon (MaxDaemonChildren, ClientConn:, ClientRate:, RefuseLA) and
hands the socket to the least busy worker over a Unix socket pair (SCM_RIGHTS), together with the
listener it came in on.  Each worker runs its own asyncio loop with its own ``smtpd.Daemon`` (the
sessions, TLS, the off-loop work) and tells the parent when a connection ends, so the counts the
limits use stay exact.  One process per core, one GIL each.

Signals, as with one process: SIGHUP re-reads the config in the parent (limits) and in every
worker (sessions under way keep theirs); SIGTERM stops accepting and lets every worker finish its
transactions; SIGINT is SIGTERM.  A worker that dies is replaced at once; its clients lose their
connection, never an acknowledged message (a 250 is sent only after the queue files are on disk).
Workers that keep dying young (within STEADY seconds: one that cannot start) are replaced after
pauses of 1, 2, 4 ... up to MAX_PAUSE seconds, during which the parent goes on accepting and
answers 421 when it has no worker; it never sleeps.
The parent forks one child per -qTIME interval for the queue run, as Sendmail does.

Trusts: the workers (its own children) for the ``closed`` messages; nothing from clients reaches
the parent but the connection itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import socket
import sys
import time

from mta import errors, process, proctitle, qgroups, smtpd
from mta.context import Context
from mta.delivery import load
from mta.mailers import table
from mta.smtp.session import reply

BACKLOG = 512
RESPAWN_PAUSE = 1.0  # the first pause before replacing a worker that died young, doubled each time
MAX_PAUSE = 60.0
STEADY = 10.0  # a worker that lived this long did not die of starting
ACCEPT_PAUSE = 1.0  # not listening for this long after accept() ran out of descriptors or memory
OUT_OF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def count(cfg) -> int:
    """How many workers: DaemonWorkers (ext), else one per CPU."""
    return cfg["DaemonWorkers"] or os.cpu_count() or 1


class Worker:
    """The parent's view of one worker: its pid, its end of the socket pair, who it serves."""

    def __init__(self, pid: int, ctrl: socket.socket):
        self.pid, self.ctrl, self.started = pid, ctrl, time.monotonic()
        self.clients: dict[str, int] = {}  # ip -> open connections handed to this worker

    @property
    def busy(self) -> int:
        return sum(self.clients.values())


class Limits:
    """Connection counts and rates over the whole daemon, and the replies for going over them."""

    def __init__(self):
        self.per_ip: dict[str, int] = {}
        self.rate: dict[str, list[float]] = {}

    def refusal(self, ctx: Context, ip: str) -> bytes | None:
        from mta.policy import Client, Policy

        cfg, host = ctx.cfg, ctx.cfg.hostname
        la = load.load_average()
        if load.refuse_connections(cfg, la):  # RefuseLA
            ctx.log.line(f"rejecting connections on daemon MTA: load average: {la}")
            return reply(421, "4.3.2", f"{host} Too much load; please try again later")
        if load.delay_seconds(cfg, la):  # DelayLA: the daemon waits before it accepts more
            time.sleep(load.delay_seconds(cfg, la))
        if cfg["MaxDaemonChildren"] and sum(self.per_ip.values()) >= cfg["MaxDaemonChildren"]:
            return reply(421, "4.3.2", f"{host} Too many concurrent SMTP connections; please try again later")
        policy, client = Policy(ctx), Client(ip)
        conn = policy.client_limit(client, "ClientConn")
        if conn and self.per_ip.get(ip, 0) >= conn:
            return reply(421, "4.7.1", "Too many open connections.")
        rate = policy.client_limit(client, "ClientRate")
        if rate:
            now = time.monotonic()
            if len(self.rate) > 10000:  # forget clients quiet for a minute
                self.rate = {k: v for k, v in self.rate.items() if now - v[-1] < 60}
            window = [t for t in self.rate.get(ip, []) if now - t < 60]
            self.rate[ip] = window + [now]
            if len(window) >= rate:
                return reply(421, "4.3.2", "Connection rate limit exceeded.")
        return None

    def opened(self, ip: str) -> None:
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        left = self.per_ip.get(ip, 0) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)


class Pool:
    def __init__(self, ctx: Context, listeners, *, queue_interval: int = 0, overrides=None, argv=None):
        self.ctx, self.listeners = ctx, listeners
        self.queue_interval, self.overrides, self.argv = queue_interval, overrides or [], argv
        self.workers: dict[int, Worker] = {}
        self.limits = Limits()
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        self.signals: list[int] = []
        self.runner_pid = 0
        self.due: list[float] = []  # when each replacement of a dead worker is to start
        self.young_deaths = 0  # workers in a row that died within STEADY seconds
        self.listening = False  # the listeners are in the selector
        self.listen_again = 0.0  # when to listen again after a pause (0: none pending)

    # -- the parent's loop ----------------------------------------------------------------------

    def run(self) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._note)
        process.write_pidfile(self.ctx, self.argv or [])  # before we listen: whoever connects finds the pid
        for _ in range(count(self.ctx.cfg)):
            self._spawn()
        for sock, _opts in self.listeners:
            sock.listen(BACKLOG)
        self._listen(True)
        self.sel.register(wake_r, selectors.EVENT_READ, ("wake", 0))
        self.ctx.log.line(smtpd.starting_line(self.ctx, self.queue_interval))
        if self.ctx.cfg.ignored_rules:
            self.ctx.log.line(f"{self.ctx.cfg.path}: {self.ctx.cfg.ignored_rules} rule set lines ignored")
        for notice in table.notices(self.ctx.cfg) + qgroups.notices(self.ctx.cfg):  # 5.3.5 bounces; no Q=
            self.ctx.log.line(f"{self.ctx.cfg.path}: {notice}")
        next_run = time.monotonic()
        while not self.stopping:
            wake_at = min(self.due + ([next_run] if self.queue_interval else [])
                          + ([self.listen_again] if self.listen_again else []), default=None)
            timeout = None if wake_at is None else max(0.0, wake_at - time.monotonic())
            for key, _mask in self.sel.select(timeout):
                kind, arg = key.data
                if kind == "listen":
                    if self.listening:  # not paused by another listener's accept() just now
                        self._accept(key.fileobj, arg)
                elif kind == "ctrl":
                    self._from_worker(arg)
                else:
                    _drain(wake_r)
            self._handle_signals()
            self._replace_due()
            if self.listen_again and time.monotonic() >= self.listen_again:
                self._listen(True)
            if self.queue_interval and time.monotonic() >= next_run and not self.stopping:
                self._queue_run()
                next_run = time.monotonic() + self.queue_interval
        self._stop()
        return errors.EX_OK

    def _note(self, signum, _frame) -> None:
        self.signals.append(signum)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.stopping = True
            elif sig == signal.SIGHUP:
                self._reload()
            elif sig == signal.SIGCHLD:
                self._reap()

    def _reload(self) -> None:
        ctx = process.reloaded(self.ctx, self.overrides)
        if ctx is None:
            return
        self.ctx = ctx
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGHUP)
        self.ctx.log.line("restarting on SIGHUP: configuration re-read")

    # -- connections ----------------------------------------------------------------------------

    def _accept(self, sock: socket.socket, index: int) -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.ctx.log.line(f"accept: {exc.strerror}")
                if exc.errno in OUT_OF:  # the client still waits, so the socket stays readable:
                    self._listen(False)  # pause, as getrequests does, rather than spin on accept()
                return
            self._dispatch(conn, str(peer[0]).removeprefix("::ffff:"), index)

    def _listen(self, on: bool) -> None:
        """Watch the listeners again, or stop watching them for ACCEPT_PAUSE seconds (the
        connections wait in the kernel's queue meanwhile)."""
        if on != self.listening:
            for index, (sock, _opts) in enumerate(self.listeners):
                if on:
                    self.sel.register(sock, selectors.EVENT_READ, ("listen", index))
                else:
                    self.sel.unregister(sock)
            self.listening = on
        self.listen_again = 0.0 if on else time.monotonic() + ACCEPT_PAUSE

    def _dispatch(self, conn: socket.socket, ip: str, index: int) -> None:
        """Hand conn to the least busy worker that takes it (a stuck one's control socket may be
        full), or answer it: the limit it is over, else 421 when no worker takes it."""
        with conn:
            refusal = self.limits.refusal(self.ctx, ip)
            takers = sorted(self.workers.values(), key=lambda w: w.busy) if refusal is None else []
            for worker in takers:
                try:
                    socket.send_fds(worker.ctrl, [f"{index} {ip}".encode()], [conn.fileno()])
                except OSError as exc:
                    self.ctx.log.line(f"SYSERR: cannot hand a connection to worker {worker.pid}: {exc.strerror}")
                    continue
                worker.clients[ip] = worker.clients.get(ip, 0) + 1
                self.limits.opened(ip)
                return
            conn.setblocking(False)
            try:
                conn.send(refusal or reply(421, "4.3.2", f"{self.ctx.cfg.hostname} Service not available"))
            except OSError:
                pass

    def _from_worker(self, pid: int) -> None:
        worker = self.workers.get(pid)
        if worker is None:
            return
        while True:
            try:
                msg = worker.ctrl.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:  # the worker is gone; SIGCHLD replaces it
                self.sel.unregister(worker.ctrl)
                return
            verb, _, ip = msg.decode(errors="replace").partition(" ")
            if verb == "closed" and worker.clients.get(ip):
                worker.clients[ip] -= 1
                if not worker.clients[ip]:
                    del worker.clients[ip]
                self.limits.closed(ip)

    # -- workers and queue runs -----------------------------------------------------------------

    def _spawn(self) -> None:
        """Start a worker; when fork() fails (EAGAIN: a process limit), log it and try again
        after a pause, as after a worker that died young."""
        parent = os.getpid()
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:
            self._spawn_later(exc)
            return
        try:
            pid = os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            self._spawn_later(exc)
            return
        if pid == 0:
            ours.close()
            os._exit(self._worker_main(theirs, parent))
        theirs.close()
        ours.setblocking(False)
        self.workers[pid] = Worker(pid, ours)
        self.sel.register(ours, selectors.EVENT_READ, ("ctrl", pid))

    def _worker_main(self, ctrl: socket.socket, parent: int) -> int:
        """In the child: forget the parent's loop and signals, then serve what the parent hands over."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop has its handler: a reload must not kill us
        proctitle.die_with_parent(parent)
        self.sel.close()
        for w in self.workers.values():
            w.ctrl.close()
        opts = [o for _s, o in self.listeners]
        for sock, _o in self.listeners:
            sock.close()
        try:
            smtpd.run_worker(self.ctx, ctrl, opts, overrides=self.overrides)
        except Exception as exc:  # the edge of a worker: log it; the parent starts another
            self.ctx.log.line(f"SYSERR: worker: {type(exc).__name__}: {exc}")
            return errors.EX_SOFTWARE
        return errors.EX_OK

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.runner_pid:
                self.runner_pid = 0
                continue
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            for ip, n in worker.clients.items():
                for _ in range(n):
                    self.limits.closed(ip)
            try:
                self.sel.unregister(worker.ctrl)
            except (KeyError, ValueError):
                pass
            worker.ctrl.close()
            if not self.stopping:
                pause = self._pause(worker.started)
                self.ctx.log.line(f"worker {pid} died ({_status_text(status)}); starting another"
                                  + (f" in {pause:g} s" if pause else ""))
                self.due.append(time.monotonic() + pause)

    def _spawn_later(self, exc: OSError) -> None:
        pause = max(self._pause(time.monotonic()), RESPAWN_PAUSE)
        self.ctx.log.line(f"SYSERR: cannot start a worker: {exc.strerror}; trying again in {pause:g} s")
        self.due.append(time.monotonic() + pause)

    def _pause(self, started: float) -> float:
        """How long to wait before replacing a worker started then: nothing for one that lived
        STEADY seconds or the first of a row that did not, then RESPAWN_PAUSE doubled for each
        more (a worker that cannot start is not forked again and again)."""
        if time.monotonic() - started >= STEADY:
            self.young_deaths = 0
        self.young_deaths += 1
        return min(RESPAWN_PAUSE * 2 ** (self.young_deaths - 2), MAX_PAUSE) if self.young_deaths > 1 else 0.0

    def _replace_due(self) -> None:
        now = time.monotonic()
        for at in [at for at in self.due if at <= now]:
            self.due.remove(at)
            if not self.stopping:
                self._spawn()

    def _queue_run(self) -> None:
        """One queue run in its own process, as Sendmail forks one per interval; never two at once."""
        if self.runner_pid:
            return
        try:
            pid = os.fork()
        except OSError as exc:  # this interval's run is skipped; the next one tries again
            self.ctx.log.line(f"SYSERR: cannot fork a queue run: {exc.strerror}")
            return
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            code = errors.EX_OK
            try:
                smtpd.queue_run(self.ctx)
            except Exception as exc:
                self.ctx.log.line(f"SYSERR: queue run: {type(exc).__name__}: {exc}")
                code = errors.EX_SOFTWARE
            os._exit(code)
        self.runner_pid = pid

    def _stop(self) -> None:
        """SIGTERM to every child (workers drain their transactions, the queue run ends), then
        wait for them, never past the grace: a child still there is killed, so the daemon is
        gone in bounded time whatever a child is stuck on (its mail is still in the queue)."""
        for sock, _opts in self.listeners:
            sock.close()
        children = set(self.workers) | ({self.runner_pid} if self.runner_pid else set())
        for pid in children:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + smtpd.SHUTDOWN_GRACE + 5
        while children and time.monotonic() < deadline:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                children.discard(pid)
            else:
                time.sleep(0.05)
        for pid in children:
            _signal(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.workers.clear()
        self.ctx.log.line("stopping daemon, reason=signal")
        process.remove_pidfile(self.ctx)


def serve(ctx: Context, *, queue_interval: int, foreground: bool, overrides=None) -> int:
    """Run the daemon until SIGTERM; returns an exit code."""
    try:
        listeners = smtpd.bind(ctx.cfg)
    except OSError as exc:
        print(f"opendaemonsocket: daemon: cannot bind: {exc.strerror}", flush=True)
        ctx.log.line(f"opendaemonsocket: daemon: cannot bind: {exc.strerror}")
        return errors.EX_OSERR
    if not foreground:
        process.daemonize()
    return Pool(ctx, listeners, queue_interval=queue_interval, overrides=overrides, argv=sys.argv).run()


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"
