"""Logging in sendmail's own line format (headers.c logsender, deliver.c logdelivery).

Lines go to syslog (facility mail) under an ident such as ``sm-mta`` or ``sm-msp-queue``, or,
with the LogFile option (ext), to a file in rsyslog's default format
``2026-11-25T23:44:10.036145+00:00 host ident[pid]: QID: text``.  Logging never raises.
"""

from __future__ import annotations

import os
import time


def pintvl(seconds: float) -> str:
    """sendmail's brief interval: HH:MM:SS, with 'D+' in front past a day."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}+{text}" if days else text


def pintvl_long(seconds: int) -> str:
    """sendmail's long interval: '4 hours', '1 second', '5 days'."""
    parts = []
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    return ", ".join(parts) or "0 seconds"


class Logger:
    def __init__(self, ident: str, logfile: str = ""):
        self.ident = ident
        self.logfile = logfile
        self._syslog = None

    def line(self, text: str, qid: str = "") -> None:
        text = text.replace("\n", " ").replace("\r", " ")
        if qid:
            text = f"{qid}: {text}"
        try:
            if self.logfile:
                self._to_file(text)
            else:
                self._to_syslog(text)
        except OSError:
            pass

    def _to_file(self, text: str) -> None:
        now = time.time()
        tm = time.localtime(now)
        off = tm.tm_gmtoff
        zone = f"{'+' if off >= 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", tm) + f".{int(now % 1 * 1e6):06d}{zone}"
        host = os.uname().nodename.split(".")[0]
        data = f"{stamp} {host} {self.ident}[{os.getpid()}]: {text}\n".encode("utf-8", "replace")
        fd = os.open(self.logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _to_syslog(self, text: str) -> None:
        import syslog

        if self._syslog is None:
            syslog.openlog(self.ident, syslog.LOG_PID, syslog.LOG_MAIL)
            self._syslog = syslog
        syslog.syslog(syslog.LOG_INFO, text)

    def fields(self, qid: str, *pairs: tuple[str, object], always: tuple[str, ...] = ()) -> None:
        """One 'name=value, ...' line; empty optional fields are left out, as Sendmail does."""
        self.line(", ".join(f"{k}={v}" for k, v in pairs if k in always or v not in ("", None)), qid)

    def sender(self, qid: str, *, sender: str, size: int, klass: int, nrcpts: int, msgid: str = "",
               bodytype: str = "", proto: str = "", daemon: str = "", relay: str = "") -> None:
        """headers.c logsender()."""
        self.fields(qid, ("from", sender or "<>"), ("size", size), ("class", klass), ("nrcpts", nrcpts),
                    ("msgid", msgid), ("bodytype", bodytype), ("proto", proto), ("daemon", daemon),
                    ("relay", relay), always=("relay",))

    def delivery(self, qid: str, *, to: str, delay: float, mailer: str, pri: int, stat: str,
                 ctladdr: str = "", xdelay: float | None = None, relay: str = "", dsn: str = "") -> None:
        """deliver.c logdelivery()."""
        self.fields(qid, ("to", to), ("ctladdr", ctladdr), ("delay", pintvl(delay)),
                    ("xdelay", None if xdelay is None else pintvl(xdelay)), ("mailer", mailer), ("pri", pri),
                    ("relay", relay), ("dsn", dsn), ("stat", stat))
