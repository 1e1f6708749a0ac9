"""The SMTP server conversation as a state machine, with Sendmail's replies.  No I/O.

``Session.receive(bytes)`` returns outputs: reply bytes to send, and last perhaps an ``Action``,
a request the transport answers before calling ``resume(result)``.  The session itself never
blocks: whatever reads maps or files, routes, resolves or hashes is a request ("check this MAIL",
"check this RCPT", "verify this AUTH", "expand this VRFY", "queue this message"), answered by
mta.smtp.answer off the event loop in the daemon and inline in ``sendmail -bs``; the transport
carries out the others itself (start TLS, run the queue for ETRN, wait before a reply).  One
request per command or transaction; while one is pending, buffered input waits (pipelining stays
in order); after STARTTLS whatever was buffered in clear is dropped.  A session holds no global
state, so sessions can be spread over threads or processes.

States and the commands each allows (one table, VERBS):
    connected   -> EHLO/HELO -> greeted
    greeted     -> MAIL -> mail -> RCPT (ok) -> rcpt -> DATA -> data -> (queued) -> greeted
    any state   -> RSET (back to greeted), NOOP, HELP, VRFY, EXPN, QUIT
STARTTLS and AUTH are only outside a transaction; a second EHLO/HELO resets.
"""

from __future__ import annotations

import re

from mta import address, errors, maps, queue
from mta.message import arpadate
from mta.policy import Client, Mark, Refusal
from mta.smtp import requests, sasl, wire
from mta.smtp.requests import NO_SPACE, Action, Check, Envelope, Queue, Recipient, reply

__all__ = ["NO_SPACE", "Action", "Check", "Envelope", "Queue", "Recipient", "Session", "reply"]

MAX_BAD_COMMANDS = 25
MAX_TIMEOUT = 240  # srvrsmtp.c MAXTIMEOUT: the longest wait before a reply
# checksmtpattack: commands that, repeated this often, slow the session down (srvrsmtp.c
# MAXHELOCOMMANDS, MAXVRFYCOMMANDS, MAXETRNCOMMANDS; NOOP's limit is MaxNOOPCommands)
ATTACK = {"HELO": ("HELO/EHLO", 3), "EHLO": ("HELO/EHLO", 3), "VRFY": ("VRFY", 6), "EXPN": ("VRFY", 6),
          "ETRN": ("ETRN", 8), "NOOP": ("NOOP", None)}
MAX_RECIPIENTS_HARD = 10000
MAX_MESSAGE_HARD = 64 * 1024 * 1024
_DOMAIN_OK = re.compile(r"^[A-Za-z0-9\[\]._:#-]+$")


class Session:
    def __init__(self, ctx, client: Client, *, tls_available: bool = False, auth: bool = False,
                 rejected: Refusal | Mark | None = None):
        self.ctx, self.cfg, self.client = ctx, ctx.cfg, client
        self.host = self.cfg.hostname
        self.buffer = wire.Buffer()
        self.tls_available = tls_available
        self.auth = auth  # AUTH is offered (after STARTTLS)
        self.state = "connected"
        self.proto = "SMTP"
        self.envelope: Envelope | None = None
        self.bad = 0
        self.counts: dict[str, int] = {}  # per ATTACK counter
        self.bad_rcpts = 0
        self.closed = False
        self.did_mail = False
        # Connect: REJECT and friends (answer.connect) for every command; DISCARD or QUARANTINE
        # for every message
        self.mark = rejected if isinstance(rejected, Mark) else None
        self.rejected = None if self.mark else rejected
        self.nullserver = self.rejected is not None
        self._pending: Action | None = None
        self._then = None  # what resume() does with the answer to _pending
        self._auth_step: tuple | None = None
        self.max_size = self.cfg["MaxMessageSize"] or MAX_MESSAGE_HARD
        self.id = queue.new_id()  # the session's ID in log lines, as Sendmail's
        self.max_rcpts = self.cfg["MaxRecipientsPerMessage"] or MAX_RECIPIENTS_HARD
        self._marked("check_relay", f"{client.name or '[' + client.addr + ']'}, arg2={client.addr}", self.mark)

    def log(self, text: str) -> None:
        self.ctx.log.line(text, self.id)

    # -- the transport's side -------------------------------------------------------------------

    def greeting(self) -> bytes:
        text = self.cfg.expand(self.cfg["SmtpGreetingMessage"], {"b": arpadate()})
        first, _, rest = text.partition(" ")
        return reply(220, "", f"{first} ESMTP {rest}".rstrip())

    def refuse_early_talker(self) -> bytes:
        self.rejected = Refusal(554, "5.0.0", "Command rejected", with_addr=False)
        self.nullserver = True
        return reply(554, "", f"{self.host} ESMTP not accepting messages")

    def receive(self, data: bytes) -> list:
        self.buffer.feed(data)
        return [] if self._pending else self._run()

    def resume(self, result) -> list:
        then, self._then, self._pending = self._then, None, None
        out = then(result)
        return out + ([] if self._pending or self.closed else self._run())

    def _ask(self, kind: str, arg, then) -> list:
        """Emit a request; ``then(result)`` gives the replies once it is answered."""
        self._pending, self._then = Action(kind, arg), then
        return [self._pending]

    def lost(self) -> str:
        """The log line for a client that went away ('' when there is nothing to say)."""
        who, daemon = self.client.relay_text, self.client.daemon
        if self.state == "data":
            return "collect: premature EOM: unexpected close"
        if self.state in ("mail", "rcpt"):
            return f"lost input channel from {who} to {daemon} after {self.state}"
        if not self.did_mail:
            return f"{who} did not issue MAIL/EXPN/VRFY/ETRN during connection to {daemon}"
        return ""

    # -- the loop -------------------------------------------------------------------------------------

    def _run(self) -> list:
        out: list = []
        while not self.closed and not self._pending:
            if self.state == "data":
                try:
                    done = self.buffer.data(self.max_size)
                except wire.BareLineEnd as exc:
                    word = "linefeed (LF)" if exc.which == "LF" else "carriage return (CR)"
                    self.log(f"collect: relay={self.client.name or self.client.addr}, "
                                      f"from=<{self.envelope.sender}>, info=Bare {word} not allowed, "
                                      "where=body, status=tempfail")
                    out.append(reply(421, "4.5.0", f"Bare {word} not allowed"))
                    self._close()
                    break
                if not done:
                    break
                out += self._end_of_data()
                continue
            try:
                line = self.buffer.command()
            except wire.TooLong:
                out.append(reply(421, "4.7.0", f"{self.host} Command too long, possible attack "
                                               f"{self.client.relay_text}"))
                self._close()
                break
            if line is None:
                break
            out += self._command(line.decode("utf-8", "surrogateescape"))
        return out

    def _close(self) -> None:
        self.closed = True
        self.buffer.clear()

    # -- commands -------------------------------------------------------------------------------------

    def _command(self, line: str) -> list:
        if self._auth_step is not None:
            return self._auth_continue(line)
        verb, _, arg = line.strip(" ").partition(" ")
        name = verb.upper()
        handler = VERBS.get(name)
        if handler is None:
            if name in ("TURN", "SEND", "SOML", "SAML"):
                return self._bad(502, "5.5.1", f'Command not implemented: "{line}"')
            return self._bad(500, "5.5.1", f'Command unrecognized: "{line}"')
        if self.nullserver and name not in ("QUIT", "HELO", "EHLO", "NOOP", "RSET"):
            r = self.rejected
            return self._bad(r.code, r.status, r.text)
        wait = self._wait_before(name, verb)
        if wait < 0:
            return self._too_many()
        if wait:
            return self._ask("delay", wait, lambda _r: handler(self, verb, arg.strip()))
        return handler(self, verb, arg.strip())

    def _wait_before(self, name: str, verb: str) -> float:
        """Seconds to wait before obeying this command (-1: close instead): checksmtpattack's
        slowdown of repeated commands, BadRcptThrottle's for RCPTs after too many bad ones."""
        if name == "RCPT":
            throttle = self.cfg["BadRcptThrottle"]
            if not throttle or self.bad_rcpts < throttle:
                return 0
            if self.bad_rcpts == throttle:
                self.log(f"{self.client.relay_text}: Possible SMTP RCPT flood, throttling.")
                self.bad_rcpts += 1  # as Sendmail, so the line is logged once
            return self.cfg["BadRcptThrottleDelay"]
        if name not in ATTACK:
            return 0
        counter, limit = ATTACK[name]
        limit = limit or self.cfg["MaxNOOPCommands"]
        n = self.counts[counter] = self.counts.get(counter, 0) + 1
        if limit <= 0 or n < limit:
            return 0
        if n == limit:
            cname = counter if counter == "HELO/EHLO" else name  # VRFY and EXPN share one counter
            self.log(f"{self.client.relay_text}: possible SMTP attack: command={cname}, count={n}")
        if self.cfg["MaxDaemonChildren"]:
            return -1  # STOP_ATTACK
        return min(max(1 << min(n - limit, 8), n // limit), MAX_TIMEOUT)

    def _too_many(self) -> list:
        self._close()
        return [reply(421, "4.7.0", f"{self.host} Too many bad commands; closing connection")]

    def _bad(self, code: int, status: str, text: str) -> list:
        self.bad += 1
        out = [reply(code, status, text)]
        if self.bad >= MAX_BAD_COMMANDS:
            out += self._too_many()
        return out

    def _hello(self, verb: str, arg: str) -> list:
        if not arg:
            return self._bad(501, "5.0.0", f"{verb} requires domain address")
        domain = arg.split()[0]
        if not _DOMAIN_OK.match(domain) or len(domain) > 255:
            return self._bad(501, "5.0.0", "Invalid domain name")
        self.client.helo = domain
        self.envelope, self.state = None, "greeted"
        who = self.client.relay_text if self.client.addr else f"{self.client.user}@localhost"
        first = f"{self.host} Hello {who}, pleased to meet you"
        if verb.upper() == "HELO":
            self.proto = "SMTP"
            return [reply(250, "", first)]
        self.proto = "ESMTPS" if self.client.tls else "ESMTP"
        if self.nullserver:
            return [reply(250, "", f"{first}\nENHANCEDSTATUSCODES")]
        lines = [first, "ENHANCEDSTATUSCODES", "PIPELINING"]
        if "noexpn" not in self.cfg["PrivacyOptions"] and "goaway" not in self.cfg["PrivacyOptions"]:
            lines += ["EXPN", "VERB"]
        lines += ["8BITMIME", f"SIZE {self.cfg['MaxMessageSize']}" if self.cfg["MaxMessageSize"] else "SIZE", "DSN"]
        if "noetrn" not in self.cfg["PrivacyOptions"] and not self.client.msa:
            lines.append("ETRN")
        if self.auth and self.client.tls and not self.client.auth:
            lines.append("AUTH PLAIN LOGIN")
        if self.tls_available and not self.client.tls:
            lines.append("STARTTLS")
        lines += ["DELIVERBY", "HELP"]
        return [reply(250, "", "\n".join(lines))]

    def _mail(self, verb: str, arg: str) -> list:
        if self.state == "connected" and ("needmailhelo" in self.cfg["PrivacyOptions"] or self.client.tls):
            return self._bad(503, "5.0.0", "Polite people say HELO first")
        if self.envelope is not None:
            return self._bad(503, "5.5.0", "Sender already specified")
        if self.client.msa and not self.client.auth and self.client.addr:
            return self._bad(530, "5.7.0", "Authentication required")
        key, colon, rest = arg.partition(":")
        if not colon or key.strip().upper() != "FROM" or not rest.strip():
            return self._bad(501, "5.5.2", f'Syntax error in parameters scanning "{key.split()[0] if key else ""}"')
        text, params = requests.params(rest)
        try:
            sender = address.parse(text)
        except errors.AddressError as exc:
            return self._bad(553, exc.status, f"{text}... {exc.text}")
        env = Envelope(str(sender))
        for key, value in params.items():
            if key == "SIZE":
                if value.isdigit():
                    env.size = int(value)
                    if self.cfg["MaxMessageSize"] and env.size > self.cfg["MaxMessageSize"]:
                        return self._bad(552, "5.2.3", "Message size exceeds fixed maximum message size "
                                                       f"({self.cfg['MaxMessageSize']})")
            elif key == "BODY":
                if value.upper() not in ("7BIT", "8BITMIME"):
                    return self._bad(501, "5.5.4", f"Unknown BODY type {value}")
                env.body_type = value.upper()
            elif key == "RET":
                if value.upper() not in ("FULL", "HDRS"):
                    return self._bad(501, "5.5.2", f'Bad argument "{value}" to RET')
                env.ret = value.upper()
            elif key == "ENVID":
                env.envid = value
            elif key in ("AUTH", "SMTPUTF8", "BY"):
                continue
            else:
                return self._bad(555, "5.5.4", f"{key} parameter unrecognized")
        check = Check(self.client, sender, text, env.size, self.id)
        return self._ask("mail", check, lambda r: self._mail_done(env, text, r))

    def _mail_done(self, env: Envelope, text: str, refusal) -> list:
        if isinstance(refusal, errors.MTAError):
            refusal = _temporary(refusal)
        if refusal == NO_SPACE:
            return [reply(NO_SPACE.code, NO_SPACE.status, NO_SPACE.text)]
        if isinstance(refusal, Refusal):
            return self._refuse("check_mail", text, refusal)
        for mark in (self.mark, self._marked("check_mail", text, refusal)):
            _apply(env, mark)
        self.envelope, self.state, self.did_mail = env, "mail", True
        return [reply(250, "2.1.0", f"{text}... Sender ok")]

    def _marked(self, ruleset: str, text: str, verdict) -> Mark | None:
        """A DISCARD or QUARANTINE verdict, logged as Sendmail's rscheck() does."""
        if not isinstance(verdict, Mark):
            return None
        self.log(f"ruleset={ruleset}, arg1={text}, relay={self.client.relay_text}, {verdict.log_text()}")
        return verdict

    def _refuse(self, ruleset: str, text: str, r: Refusal) -> list:
        body = f"{text}... {r.text}" if r.with_addr else r.text
        self.log(f"ruleset={ruleset}, arg1={text}, relay={self.client.relay_text}, "
                          f"reject={r.code} {r.status} {body}")
        return self._bad(r.code, r.status, body)

    def _rcpt(self, verb: str, arg: str) -> list:
        if self.envelope is None:
            return self._bad(503, "5.0.0", "Need MAIL before RCPT")
        key, colon, rest = arg.partition(":")
        if not colon or key.strip().upper() != "TO" or not rest.strip():
            return self._bad(501, "5.5.2", f'Syntax error in parameters scanning "{key.split()[0] if key else ""}"')
        text, params = requests.params(rest)
        rcpt = Recipient(text)
        for k, v in params.items():
            if k == "NOTIFY":
                words = {w.upper() for w in v.split(",")}
                known = words <= {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
                if not v or not known or ("NEVER" in words and len(words) > 1):
                    return self._bad(501, "5.5.4", f'Bad argument "{v}"  to NOTIFY')
                rcpt.notify = v
            elif k == "ORCPT":
                if ";" not in v:
                    return self._bad(501, "5.5.4", "Syntax error in ORCPT parameter value")
                rcpt.orcpt = v
            else:
                return self._bad(555, "5.5.4", f"{k} parameter unrecognized")
        if len(self.envelope.recipients) >= self.max_rcpts:
            return [reply(452, "4.5.3", "Too many recipients")]
        try:
            addr = address.parse(text)
        except errors.AddressError as exc:
            return self._bad(553, exc.status, f"{text}... {exc.text}")
        if addr.null:
            return self._bad(501, "5.0.0", "Missing recipient")
        rcpt.addr = str(addr)
        check = Check(self.client, addr, text, sender=self.envelope.sender)
        return self._ask("rcpt", check, lambda r: self._rcpt_done(rcpt, text, r))

    def _rcpt_done(self, rcpt: Recipient, text: str, refusal) -> list:
        if isinstance(refusal, errors.MTAError):
            refusal = _temporary(refusal)
        mark, refusal = self._marked("check_rcpt", text, refusal), None if isinstance(refusal, Mark) else refusal
        if refusal is not None:
            self.bad_rcpts += 1
            if refusal.text == "User unknown":
                self.log(f"{text}... User unknown")
                return self._bad(refusal.code, refusal.status, f"{text}... {refusal.text}")
            return self._refuse("check_rcpt", text, refusal)
        if self.envelope is None:  # reset while the check was under way: cannot happen in order
            return [reply(503, "5.0.0", "Need MAIL before RCPT")]
        _apply(self.envelope, mark)
        self.envelope.recipients.append(rcpt)
        self.state = "rcpt"
        return [reply(250, "2.1.5", f"{text}... Recipient ok")]

    def _data(self, verb: str, arg: str) -> list:
        if self.envelope is None:
            return self._bad(503, "5.0.0", "Need MAIL command")
        if not self.envelope.recipients:
            return self._bad(503, "5.0.0", "Need RCPT (recipient)")
        self.state = "data"
        self.buffer.start_data()
        return [reply(354, "", "End data with <CR><LF>.<CR><LF>")]

    def _end_of_data(self) -> list:
        buf, env = self.buffer, self.envelope
        self.state = "greeted"
        self.envelope = None
        if buf.size > self.max_size:
            self.log(f"message size ({buf.size}) exceeds maximum ({self.max_size})")
            return [reply(552, "5.2.3", f"Message exceeds maximum fixed size ({self.max_size})")]
        if buf.nul:
            return [reply(554, "5.6.1", "NUL byte not allowed")]
        limit = self.cfg["MaxHeadersLength"]
        if limit and wire.header_length(buf.message, limit) > limit:
            self.log(f"headers too large ({limit} max) from {self.client.relay_text} during message collect")
            return [reply(552, "5.6.0", f"Headers too large ({limit} max)")]
        env.data = bytes(buf.message)
        buf.message = bytearray()
        if env.discard:  # accepted and dropped (Sendmail's EF_DISCARD)
            qid = queue.new_id()
            self.ctx.log.line("discarded", qid)
            return [reply(250, "2.0.0", f"{qid} Message accepted for delivery")]
        return self._ask("queue", Queue(self.client, env, self.proto), self._queued)

    def _queued(self, result) -> list:
        """The queue's answer: the new entry's ID, or the error that kept it out."""
        if isinstance(result, errors.MTAError):
            return [reply(result.code if result.code >= 400 else 451, result.status, result.text)]
        return [reply(250, "2.0.0", f"{result} Message accepted for delivery")]

    def _tls_started(self, result) -> list:
        """The handshake is done (result: the protocol version; None: it failed and we close)."""
        self.buffer.clear()
        if result is None:
            self._close()
            return []
        self.client.tls = str(result)
        self.state, self.envelope = "connected", None
        return []

    def _rset(self, verb: str, arg: str) -> list:
        self.envelope = None
        if self.state != "connected":
            self.state = "greeted"
        return [reply(250, "2.0.0", "Reset state")]

    def _noop(self, verb: str, arg: str) -> list:
        return [reply(250, "2.0.0", "OK")]

    def _quit(self, verb: str, arg: str) -> list:
        self._close()
        return [reply(221, "2.0.0", f"{self.host} closing connection")]

    def _vrfy(self, verb: str, arg: str) -> list:
        privacy = self.cfg["PrivacyOptions"]
        if not arg:
            return self._bad(501, "5.5.2", "Argument required")
        if verb.upper() == "EXPN":
            if "noexpn" in privacy or "goaway" in privacy or not privacy:
                return self._bad(502, "5.7.0", "Sorry, we do not allow this operation")
        elif "novrfy" in privacy or "goaway" in privacy or not privacy:
            return [reply(252, "2.5.2", "Cannot VRFY user; try RCPT to attempt delivery (or try finger)")]
        if self.state == "connected" and f"need{verb.lower()}helo" in privacy:  # needvrfyhelo, needexpnhelo
            return self._bad(503, "5.0.0", "I demand that you introduce yourself first")
        try:
            addr = address.parse(arg)
        except errors.AddressError as exc:
            return self._bad(553, "5.1.3", f"{arg}... {exc.text}")
        return self._ask("vrfy", Check(self.client, addr, arg), lambda routes: self._vrfy_done(arg, routes))

    def _vrfy_done(self, arg: str, routes) -> list:
        if isinstance(routes, errors.MTAError):
            return [reply(451, "4.3.0", f"{arg}... Temporary lookup failure")]
        good = [r for r in routes if not r.error]
        if not good:
            return self._bad(550, "5.1.1", f"{arg}... User unknown")
        lines = [f"<{r.user if '@' in r.user or r.mailer != 'local' else r.user + '@' + self.host}>" for r in good]
        return [reply(250, "2.1.5", "\n".join(lines))]

    def _help(self, verb: str, arg: str) -> list:
        from mta import VERSION

        if arg:
            return [reply(504, "5.3.0", f'HELP topic "{arg[:10]}" unknown')]
        text = (f"This is sendmail version {VERSION}\nTopics:\n\tHELO\tEHLO\tMAIL\tRCPT\tDATA\n"
                "\tRSET\tNOOP\tQUIT\tHELP\tVRFY\n\tEXPN\tVERB\tETRN\tDSN\tSTARTTLS\n"
                "For more info use \"HELP <topic>\".\nTo report bugs in the implementation see\n"
                "\thttps://www.sendmail.org/\nFor local information send email to Postmaster at your site.\n"
                "End of HELP info")
        return [reply(214, "2.0.0", text)]

    def _verb(self, verb: str, arg: str) -> list:
        if "noexpn" in self.cfg["PrivacyOptions"]:
            return self._bad(502, "5.7.0", "Verbose unavailable")
        return [reply(250, "2.0.0", "Verbose mode")]

    def _etrn(self, verb: str, arg: str) -> list:
        if "noetrn" in self.cfg["PrivacyOptions"]:
            return self._bad(502, "5.7.0", "Sorry, we do not allow this operation")
        if not arg:
            return self._bad(500, "5.5.2", "Parameter required")
        if arg.startswith("#"):
            return [reply(459, "4.5.4", f"Queue {arg[1:]} unknown")]
        self.did_mail = True
        return [reply(250, "2.0.0", f"Queuing for node {arg} started")] + self._ask(
            "etrn", arg.lstrip("@"), lambda _result: [])

    def _starttls(self, verb: str, arg: str) -> list:
        if arg:
            return self._bad(501, "5.5.2", "Syntax error (no parameters allowed)")
        if not self.tls_available or self.client.tls:
            return self._bad(454, "4.3.3", "TLS not available after start" if self.client.tls else
                             "TLS not available")
        if self.envelope is not None:
            return self._bad(503, "5.5.0", "TLS not permitted during a mail transaction")
        self.buffer.clear()  # nothing sent in clear after STARTTLS is obeyed
        return [reply(220, "2.0.0", "Ready to start TLS")] + self._ask("starttls", None, self._tls_started)

    def _auth(self, verb: str, arg: str) -> list:
        if self.client.auth:
            return self._bad(503, "5.5.0", "Already Authenticated")
        if self.envelope is not None:
            return self._bad(503, "5.5.0", "AUTH not permitted during a mail transaction")
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if not self.auth or not self.client.tls or mech not in sasl.MECHANISMS:
            return self._bad(504, "5.3.3", f"AUTH mechanism {mech[:32]} not available")
        return self._auth_next(sasl.start(mech, initial))

    def _auth_continue(self, line: str) -> list:
        state, self._auth_step = self._auth_step, None
        return self._auth_next(sasl.step(state, line))

    def _auth_next(self, got) -> list:
        """A challenge sent, the credentials checked (a request) or the exchange's failure."""
        if isinstance(got, sasl.Challenge):
            self._auth_step = got.state
            return [reply(334, "", got.text)]
        if isinstance(got, sasl.Failure):
            return self._bad(got.code, got.status, got.text)
        return self._ask("auth", (got.user, got.password), lambda ok: self._auth_done(got.user, ok))

    def _auth_done(self, user: str, ok) -> list:
        if ok is True:
            self.client.auth = user
            self.proto = "ESMTPA" if not self.client.tls else "ESMTPSA"
            return [reply(235, "2.0.0", "OK Authenticated")]
        self.log(f"AUTH failure (PLAIN/LOGIN): authentication failure, user={user}, "
                          f"relay={self.client.relay_text}")
        return self._bad(535, "5.7.0", "authentication failed")


def _apply(env: Envelope, mark: Mark | None) -> None:
    if mark is not None and mark.action == "discard":
        env.discard = True
    elif mark is not None and not env.quarantine:
        env.quarantine = mark.reason


def _temporary(exc: errors.MTAError) -> Refusal:
    """A check that failed with an error: a 4xx with the error's own reply (recipient.c's
    451 4.2.4 Cannot open ...), proto.m4's words for a map (its file names are not the client's
    business), or the error's 5xx."""
    if not exc.temporary:
        return Refusal(exc.code if exc.code >= 500 else 550, exc.status, exc.text)
    if isinstance(exc, maps.MapTempFail):
        return Refusal(451, exc.status, "Temporary system failure. Please try again later.", with_addr=False)
    return Refusal(exc.code if 400 <= exc.code < 500 else 451, exc.status, exc.text, with_addr=False)


VERBS = {
    "HELO": Session._hello, "EHLO": Session._hello, "MAIL": Session._mail, "RCPT": Session._rcpt,
    "DATA": Session._data, "RSET": Session._rset, "NOOP": Session._noop, "QUIT": Session._quit,
    "VRFY": Session._vrfy, "EXPN": Session._vrfy, "HELP": Session._help, "VERB": Session._verb,
    "ETRN": Session._etrn, "STARTTLS": Session._starttls, "AUTH": Session._auth,
}
