"""The context every core call runs in: the loaded config, the log, the alias table, who we are.

Built once by a front (``Context.create``) and passed down; nothing below the fronts reads
argv or the environment.
"""

from __future__ import annotations

import os
import pwd
import sys

from mta import config, log
from mta.record import record


@record
class Context:
    cfg: config.Config
    log: log.Logger
    user: pwd.struct_passwd  # the real user who ran us
    verbose: object = None  # a stream for -v transcripts, or None
    interactive: bool = False  # errors are printed to the user (ErrorMode p, command line)
    traffic: object = None  # -X: a stream for the traffic to and from mailers
    _aliases: object = None
    _maps: object = None
    _qdir: str = ""  # the queue directory in use, when not the cf's one (a queue group's, q*)
    run_quarantined: bool = False  # a -qQ run: quarantined entries are delivered too
    run_lost: bool = False  # a -qL run: the entries are the lost ones (Qf files)

    @classmethod
    def create(cls, cfg: config.Config, ident: str | None = None, verbose: bool = False) -> Context:
        ident = ident or ("sm-msp-queue" if cfg.is_msp else "sm-mta")
        try:
            user = pwd.getpwuid(os.getuid())
        except KeyError:
            user = pwd.struct_passwd((f"uid{os.getuid()}", "x", os.getuid(), os.getgid(), "", "/", ""))
        return cls(cfg, log.Logger(ident, cfg["LogFile"]), user, sys.stdout if verbose else None)

    @property
    def qdir(self) -> str:
        """Where this context queues: QueueDirectory, or one of its q* directories (at random, as
        Sendmail picks one of a group's queues), or the directory a queue run is working on."""
        if not self._qdir:
            dirs = config.queue_directories(self.cfg["QueueDirectory"])
            self._qdir = dirs[0] if len(dirs) == 1 else _pick(dirs)
        return self._qdir

    def at(self, qdir: str) -> Context:
        """This context, working on another queue directory (shares log, maps and aliases)."""
        copy = Context(**{n: getattr(self, n) for n in type(self).__record_fields__})
        copy._qdir = qdir
        return copy

    @property
    def aliases(self):
        """The alias table (mta.aliases.Aliases), opened on first use."""
        if self._aliases is None:
            from mta import aliases

            self._aliases = aliases.Aliases(self.cfg["AliasFile"])
            if self._aliases.stale:
                self.log.line(f"alias database {aliases.db_path(self.cfg['AliasFile'])} out of date")
        return self._aliases

    @property
    def maps(self):
        """The K-line maps, opened on first use."""
        if self._maps is None:
            from mta import maps

            self._maps = maps.Maps(self.cfg, self.log)
        return self._maps

    def trusted(self) -> bool:
        """May the real user set the sender freely (root, daemon, uucp, TrustedUser, class t)?"""
        name = self.user.pw_name
        return (self.user.pw_uid == 0 or name in ("root", "daemon", "uucp")
                or name == self.cfg["TrustedUser"] or name in self.cfg.klass("t"))

    def tell(self, text: str) -> None:
        """A line for the user at the terminal (Sendmail's putoutmsg in non-SMTP modes): the one
        place the core writes to the user; the front decides where stdout goes."""
        print(text, flush=True)

    def say(self, text: str) -> None:
        """tell(), but only when somebody is watching (interactive delivery or -v)."""
        if self.interactive or self.verbose:
            self.tell(text)


def _pick(dirs: list[str]) -> str:
    import random  # only with several queue directories: not on every command's start

    return random.choice(dirs)
