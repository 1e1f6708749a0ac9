"""Threads for the daemon's blocking work, handed to from its event loop as cheaply as may be.

A session's checks, queue writes and deliveries must not run on the loop (they read maps, do
DNS, fsync); but each hand-off through ``loop.run_in_executor`` costs a concurrent.futures
Future chained to an asyncio one, locks in Python code and a Condition per job - under load a
fifth of a worker's CPU went there.  ``Threads.run`` puts the job on a C ``SimpleQueue`` and the
thread answers straight into the loop's own future with ``call_soon_threadsafe``.

Also an Executor (``submit``), for the few callers that want one.  ``shutdown`` lets the jobs
already queued finish (deliveries under way), or drops those not started.
Trusts: the callables it is given; what they raise goes to whoever awaits them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
import threading


def _settle(fut: asyncio.Future, ok: bool, value) -> None:
    if not fut.cancelled():
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class Threads(concurrent.futures.Executor):
    def __init__(self, count: int, name: str):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(count)]
        for t in self.threads:
            t.start()

    def run(self, fn, *args) -> asyncio.Future:
        """fn(*args) in a thread; await the answer on the calling loop."""
        fut = asyncio.get_running_loop().create_future()
        self.run_then(functools.partial(_settle, fut), fn, *args)
        return fut

    def run_then(self, done, fn, *args) -> None:
        """fn(*args) in a thread, then done(ok, result or exception) on the calling loop: no
        future, for a caller that carries on from a callback (mta.connection)."""
        self.jobs.put((asyncio.get_running_loop(), done, fn, args))

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((None, fut, lambda: fn(*args, **kwargs), ()))
        return fut

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            loop, done, fn, args = job
            if loop is None and not done.set_running_or_notify_cancel():
                continue
            try:
                ok, value = True, fn(*args)
            except BaseException as exc:  # noqa: BLE001 - the awaiting side decides what it means
                ok, value = False, exc
            if loop is None:
                done.set_result(value) if ok else done.set_exception(value)
            else:
                try:
                    loop.call_soon_threadsafe(done, ok, value)
                except RuntimeError:  # the loop has closed: nobody waits for this answer
                    pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            while True:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None and job[0] is None:
                    job[1].cancel()
        for _ in self.threads:
            self.jobs.put(None)
        if wait:
            for t in self.threads:
                t.join()
