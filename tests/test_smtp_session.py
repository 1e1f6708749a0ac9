"""The SMTP core without sockets: scripted conversations, whole and byte by byte."""

import pytest

from mta import config
from mta.context import Context
from mta.policy import Client
from mta.smtp import answer, wire
from mta.smtp.session import Action, Session


@pytest.fixture
def ctx(tmp_path):
    cf = tmp_path / "sendmail.cf"
    (tmp_path / "aliases").write_text("team: root\n")
    cf.write_text(f"Djmx.test.example\nCwlocalhost test.example\nO AliasFile={tmp_path}/aliases\n"
                  f"O LogFile={tmp_path}/log\nO QueueDirectory={tmp_path}\nO MaxMessageSize=2000\n"
                  "O MaxRecipientsPerMessage=2\n")
    return Context.create(config.load(str(cf)))


def settle(ctx, s: Session, pending: list) -> list[bytes]:
    """Answer the session's requests inline (as sendmail -bs does; a queue request gets a fake
    QID) until it wants more input; return the replies."""
    out = []
    while pending:
        item = pending.pop(0)
        if isinstance(item, Action):
            assert not pending  # a request is always the last output
            pending += s.resume("QID0000001" if item.kind == "queue" else answer.answer(ctx, item))
        else:
            out.append(item)
    return out


def drive(ctx, chunks: list[bytes]) -> list[str]:
    """Feed chunks; return every reply line."""
    s = Session(ctx, Client("192.0.2.7", "client.example"))
    out = []
    for chunk in chunks:
        out += settle(ctx, s, s.receive(chunk))
    return b"".join(out).decode().splitlines()


SCRIPT = (b"EHLO c.example\r\nMAIL FROM:<a@example.org> SIZE=100\r\nRCPT TO:<root@test.example> NOTIFY=SUCCESS\r\n"
          b"RCPT TO:<team>\r\nRCPT TO:<third@test.example>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\n"
          b"Subject: s\r\n\r\n..dot\r\nline\r\n.\r\nMAIL FROM:<a@example.org> SIZE=5000\r\nQUIT\r\n")


def test_whole_and_byte_by_byte_agree(ctx):
    whole = drive(ctx, [SCRIPT])
    bytewise = drive(ctx, [SCRIPT[i:i + 1] for i in range(len(SCRIPT))])
    assert whole == bytewise
    assert whole[-7:] == [
        "250 2.1.5 <team>... Recipient ok",
        "452 4.5.3 Too many recipients",
        "452 4.5.3 Too many recipients",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 QID0000001 Message accepted for delivery",
        "552 5.2.3 Message size exceeds fixed maximum message size (2000)",
        "221 2.0.0 mx.test.example closing connection",
    ]
    assert "250-SIZE 2000" in whole


def test_relay_denied_from_outside(ctx):
    lines = drive(ctx, [b"HELO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@elsewhere.example>\r\n"])
    assert lines[-1] == "550 5.7.1 <x@elsewhere.example>... Relaying denied"


def test_message_too_big(ctx):
    lines = drive(ctx, [b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<root>\r\nDATA\r\n" + b"x" * 3000 +
                        b"\r\n.\r\n"])
    assert lines[-1] == "552 5.2.3 Message exceeds maximum fixed size (2000)"


@pytest.mark.parametrize("data,error", [
    (b"a\n.\n", "LF"), (b"a\r.\r\n", "CR"), (b"a\r\n.\n", "LF"), (b"a\n.\r\n", "LF"), (b"a\rb", "CR"),
])
def test_buffer_bare_line_ends(data, error):
    buf = wire.Buffer()
    buf.start_data()
    buf.feed(data)
    with pytest.raises(wire.BareLineEnd) as exc:
        buf.data(0)
    assert exc.value.which == error


def test_buffer_unstuffs_and_ends_only_on_crlf_dot_crlf():
    buf = wire.Buffer()
    buf.start_data()
    buf.feed(b"..one\r\n.two\r\n")
    assert buf.data(0) is False
    buf.feed(b"\r")
    assert buf.data(0) is False  # a CR at the very end may still be followed by LF
    buf.feed(b"\n.\r\nNEXT\r\n")
    assert buf.data(0) is True and bytes(buf.message) == b".one\r\ntwo\r\n\r\n"
    assert buf.command() == b"NEXT"


def test_command_limit():
    buf = wire.Buffer()
    buf.feed(b"x" * (wire.MAX_COMMAND + 10))
    with pytest.raises(wire.TooLong):
        buf.command()


def test_headers_too_large(ctx):
    ctx.cfg.options["MaxMessageSize"] = 0
    big = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 60) for i in range(600))
    lines = drive(ctx, [b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<root>\r\nDATA\r\n" + big +
                        b"\r\nbody\r\n.\r\n"])
    assert lines[-1] == "552 5.6.0 Headers too large (32768 max)"


def test_big_body_without_headers_is_fine(ctx):
    ctx.cfg.options["MaxMessageSize"] = 0
    lines = drive(ctx, [b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<root>\r\nDATA\r\n" +
                        b"no header line here\r\n" + b"z" * 70000 + b"\r\n.\r\n"])
    assert lines[-1] == "250 2.0.0 QID0000001 Message accepted for delivery"


def _session_in_data(ctx) -> Session:
    s = Session(ctx, Client("192.0.2.7", "client.example"))
    for line in (b"HELO c\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<root>\r\n", b"DATA\r\n"):
        assert settle(ctx, s, s.receive(line))[-1][:3] in (b"250", b"354")
    return s


def held(s: Session) -> int:
    """Bytes the session holds for its client: input not yet consumed and the message so far."""
    return len(s.buffer._buf) + len(s.buffer.message)


def test_unterminated_data_line_is_not_buffered(ctx):
    """10 MiB without a line end, MaxMessageSize 2000: at most about 2000 bytes are kept, and the
    rest is counted and dropped as it arrives (not searched again on every read)."""
    s = _session_in_data(ctx)
    chunk = b"x" * 65536
    for _ in range(160):
        assert s.receive(chunk) == []
        assert held(s) <= 2000 + 16
    out = s.receive(b"\r\n.\r\n")
    assert out == [b"552 5.2.3 Message exceeds maximum fixed size (2000)\r\n"]
    assert held(s) == 0


@pytest.mark.parametrize("tail", [b"\r", b".", b".\r", b""])
def test_data_line_split_anywhere(ctx, tail):
    """A line end, a dot or a CR at a chunk boundary still ends, unstuffs and smuggles nothing."""
    s = _session_in_data(ctx)
    assert s.receive(b"Subject: x\r\n\r\nab" + b"\r\n" + tail) == []
    rest = {b"\r": b"\n..c\r\n.\r\n", b".": b".c\r\n.\r\n", b".\r": b"\n.\r\n", b"": b".\r\n"}[tail]
    out = s.receive(rest)
    assert isinstance(out[-1], Action) and out[-1].kind == "queue"
    body = out[-1].arg.envelope.data.split(b"\r\n\r\n", 1)[1]
    assert body == {b"\r": b"ab\r\n\r\n.c\r\n", b".": b"ab\r\n.c\r\n", b".\r": b"ab\r\n",
                    b"": b"ab\r\n"}[tail]


def test_starttls_drops_pipelined_input_and_wants_ehlo_again(ctx):
    s = Session(ctx, Client("192.0.2.7", "client.example"), tls_available=True)
    s.receive(b"EHLO c\r\n")
    out = s.receive(b"STARTTLS\r\nRSET\r\nMAIL FROM:<a@example.org>\r\n")
    assert out[0] == b"220 2.0.0 Ready to start TLS\r\n" and out[1].kind == "starttls" and len(out) == 2
    assert s.resume("TLSv1.3") == []  # nothing sent in clear is answered
    assert s.receive(b"MAIL FROM:<a@example.org>\r\n") == [b"503 5.0.0 Polite people say HELO first\r\n"]
    assert settle(ctx, s, s.receive(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n"))[-1].startswith(b"250 2.1.0")


def test_tempfail_in_routing_is_451_for_that_recipient(ctx, tmp_path):
    """A missing :include: file: recipient.c's reply for that RCPT, and the session goes on."""
    (tmp_path / "aliases").write_text(f"team: root\nlist: :include:{tmp_path}/missing\n")
    ctx = Context.create(ctx.cfg)
    lines = drive(ctx, [b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<list@test.example>\r\nNOOP\r\n"
                        b"RCPT TO:<team@test.example>\r\n"])
    assert lines[-3:] == [f"451 4.2.4 Cannot open {tmp_path}/missing: No such file or directory",
                          "250 2.0.0 OK", "250 2.1.5 <team@test.example>... Recipient ok"]


def converse(ctx, data: bytes, **cf) -> tuple[list[str], list[float]]:
    """Feed data; return the reply lines and the waits the session asked for (answered at once)."""
    ctx.cfg.options.update(cf)
    s = Session(ctx, Client("192.0.2.7", "client.example"))
    out, waits, pending = [], [], s.receive(data)
    while pending:
        item = pending.pop(0)
        if isinstance(item, Action):
            if item.kind == "delay":
                waits.append(item.arg)
            pending += s.resume(None if item.kind == "delay" else answer.answer(ctx, item))
        else:
            out.append(item)
    return b"".join(out).decode().splitlines(), waits


def log_of(ctx) -> str:
    return open(ctx.cfg["LogFile"]).read()


def test_noop_flood_slows_down_as_checksmtpattack(ctx):
    """MaxNOOPCommands (20): from the 20th NOOP on each reply waits, 1 s, then 2, 4... (<= 240)."""
    lines, waits = converse(ctx, b"NOOP\r\n" * 24)
    assert lines == ["250 2.0.0 OK"] * 24
    assert waits == [1, 2, 4, 8, 16]
    assert "client.example [192.0.2.7]: possible SMTP attack: command=NOOP, count=20" in log_of(ctx)


def test_noop_flood_with_max_daemon_children_is_closed(ctx):
    lines, waits = converse(ctx, b"NOOP\r\n" * 25, MaxDaemonChildren=10)
    assert lines == ["250 2.0.0 OK"] * 19 + ["421 4.7.0 mx.test.example Too many bad commands; closing connection"]
    assert waits == []


def test_helo_vrfy_etrn_limits(ctx):
    _lines, waits = converse(ctx, b"HELO a\r\n" * 4)
    assert waits == [1, 2]  # MAXHELOCOMMANDS 3
    _lines, waits = converse(ctx, b"HELO a\r\n" + b"VRFY root\r\n" * 7)
    assert waits == [1, 2]  # MAXVRFYCOMMANDS 6
    assert "command=VRFY, count=6" in log_of(ctx)
    _lines, waits = converse(ctx, b"HELO a\r\n" + b"VRFY root\r\n" * 5 + b"EXPN root\r\n")
    assert waits == [1] and "command=EXPN, count=6" in log_of(ctx)


def test_bad_rcpt_throttle(ctx):
    """BadRcptThrottle (Debian's cf sets 3): past that many refused RCPTs, each RCPT waits
    BadRcptThrottleDelay (1 s) first, and the flood is logged once."""
    bad = b"RCPT TO:<x@elsewhere.example>\r\n"
    lines, waits = converse(ctx, b"HELO a\r\nMAIL FROM:<a@example.org>\r\n" + bad * 5 + b"RCPT TO:<root>\r\n",
                            BadRcptThrottle=3)
    assert lines[-1] == "250 2.1.5 <root>... Recipient ok"
    assert lines[2:7] == ["550 5.7.1 <x@elsewhere.example>... Relaying denied"] * 5
    assert waits == [1, 1, 1]
    assert log_of(ctx).count("client.example [192.0.2.7]: Possible SMTP RCPT flood, throttling.") == 1


# -- properties (Hypothesis): any input, whole or byte by byte, gives the same replies and requests;
# only typed errors; memory stays bounded.  Examples: the Hypothesis profile (make fuzz: many more).

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
WORDS = [b"EHLO c.example", b"HELO c", b"MAIL FROM:<a@example.org>", b"MAIL FROM:<>", b"RCPT TO:<root>",
         b"RCPT TO:<team@test.example> NOTIFY=SUCCESS", b"RCPT TO:<x@elsewhere.example>", b"DATA", b".",
         b"..x", b"RSET", b"NOOP", b"VRFY root", b"EXPN team", b"HELP", b"VERB", b"ETRN x", b"STARTTLS",
         b"AUTH PLAIN AGEAYg==", b"AUTH LOGIN", b"*", b"QUIT", b"Subject: x", b"", b"MAIL FROM:<a@b> SIZE=99999999"]
PIECE = st.one_of(st.sampled_from(WORDS).map(lambda w: w + b"\r\n"), st.binary(max_size=40),
                  st.sampled_from([b"\r", b"\n", b"\r\n", b".\r\n", b"\x00", b"x" * 3000]))
INPUT = st.lists(PIECE, max_size=40).map(b"".join)


def record_all(ctx, chunks) -> tuple[list, int]:
    """Every reply and request (requests answered inline, the queue with a fake QID); and the most
    bytes the session held for its client at any point."""
    s = Session(ctx, Client("192.0.2.7", "client.example"), tls_available=True, auth=True)
    events, most = [], 0
    for chunk in chunks:
        if s.closed:
            break
        pending = s.receive(chunk)
        while pending:
            item = pending.pop(0)
            events.append(item if isinstance(item, bytes) else item.kind)
            if isinstance(item, Action):
                result = {"queue": "QID0000001", "delay": None, "etrn": None, "starttls": None}.get(
                    item.kind) if item.kind not in answer.HANDLERS else answer.answer(ctx, item)
                pending += s.resume(result)
        most = max(most, held(s))
    return events, most


@PROPS
@given(data=INPUT)
def test_fuzz_whole_and_byte_by_byte_agree(ctx, data):
    whole, most_whole = record_all(ctx, [data])
    bytewise, most = record_all(ctx, [data[i:i + 1] for i in range(len(data))])
    assert whole == bytewise
    # fed a byte at a time, a session holds at most a command line or MaxMessageSize, never more
    assert most <= wire.MAX_COMMAND + 2000 + 16


@PROPS
@given(data=st.binary(max_size=3000))
def test_fuzz_raw_bytes_only_replies(ctx, data):
    events, _most = record_all(ctx, [b"EHLO x\r\n" + data])
    assert all(isinstance(e, bytes) and e[:3].isdigit() for e in events if isinstance(e, bytes))


@pytest.mark.parametrize("verb,flag", [("VRFY", "needvrfyhelo"), ("EXPN", "needexpnhelo")])
def test_vrfy_expn_want_helo_first_with_debians_privacy_options(ctx, verb, flag):
    """Debian's confPRIVACY_FLAGS have needvrfyhelo and needexpnhelo (srvrsmtp.c's reply)."""
    ctx.cfg.options["PrivacyOptions"] = (flag, "authwarnings")
    lines = drive(ctx, [f"{verb} root\r\nHELO c\r\n{verb} root\r\n".encode()])
    assert lines[0] == "503 5.0.0 I demand that you introduce yourself first"
    assert lines[2].startswith("250 2.1.5 <root")


class _LineByLine(wire.Buffer):
    def _whole_lines(self, max_size: int) -> bool:
        return False


def _collect(buf: wire.Buffer, chunks: list[bytes], max_size: int) -> tuple:
    buf.start_data()
    ends = []
    for chunk in chunks:
        buf.feed(chunk)
        try:
            ends.append(buf.data(max_size))
        except wire.BareLineEnd as exc:
            return ends, "bare", exc.which
        if ends[-1]:
            break
    return ends, bytes(buf.message), buf.size, buf.nul, buf.command() if ends and ends[-1] else None


@settings(PROPS, max_examples=400)
@given(text=st.lists(st.sampled_from([b"a", b".", b"..", b"\r\n", b"\r\n", b"\r", b"\n", b"\0", b"x\0y\r\n",
                                      b".dot\r\n", b"line\r\n", b"\r\n.\r\n", b"NEXT\r\n"]), max_size=40),
       cuts=st.lists(st.integers(0, 200), max_size=6), max_size=st.sampled_from([0, 5, 40, 1000]))
def test_whole_lines_at_once_take_what_line_by_line_takes(text, cuts, max_size):
    data = b"".join(text)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)] or [b""]
    assert _collect(wire.Buffer(), chunks, max_size) == _collect(_LineByLine(), chunks, max_size)
