"""mta.smtp.client: replies, extensions, the pipelined and the step-by-step transaction, TLS rules."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.smtp import client
from mta.smtp.client import Reply


def replies(data: bytes) -> list[Reply]:
    r = client.Replies()
    r.feed(data)
    out = []
    while (one := r.next()) is not None:
        out.append(one)
    return out


def test_replies_split_and_multiline():
    got = replies(b"220 hi\r\n250-mx.example Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n550 5.1.1 no")
    assert got[0] == Reply(220, ("hi",)) and got[1].lines == ("mx.example Hello", "PIPELINING", "SIZE 1000")
    assert len(got) == 2  # the last line is not complete yet
    ext = client.Extensions.parse(got[1])
    assert ext.name == "mx.example" and ext.has("pipelining") and ext.size_limit == 1000
    assert Reply(550, ("5.1.1 <a@b>... User unknown",)).status == "5.1.1"


@pytest.mark.parametrize("bad", [b"hello\r\n", b"250-a\r\n251 b\r\n", b"2" * 3000 + b"\r\n"])
def test_bad_replies_are_protocol_errors(bad):
    with pytest.raises(client.ProtocolError):
        replies(bad)


def test_message_bytes_crlf_and_dots():
    assert client.message_bytes(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"


def test_command_refuses_line_ends():
    with pytest.raises(ValueError):
        client.command("RCPT", "TO:<a@b>\r\nRSET")


def _run(t: client.Transaction, answers: list[Reply]) -> list[bytes]:
    writes = [t.start()]
    for a in answers:
        out = t.feed(a)
        if out:
            writes.append(out)
        if t.done:
            break
    return writes


OK, GO = Reply(250, ("ok",)), Reply(354, ("go",))


def test_pipelined_transaction_one_write_replies_in_order():
    ext = client.Extensions("mx", {"PIPELINING": []})
    t = client.Transaction(ext, b"MAIL FROM:<s>\r\n", [b"RCPT TO:<a>\r\n", b"RCPT TO:<b>\r\n"], b"x\r\n.\r\n")
    bad = Reply(550, ("5.1.1 no",))
    writes = _run(t, [OK, bad, OK, GO, Reply(250, ("2.0.0 queued",))])
    assert writes == [b"MAIL FROM:<s>\r\nRCPT TO:<a>\r\nRCPT TO:<b>\r\nDATA\r\n", b"x\r\n.\r\n"]
    assert t.rcpts == [bad, OK] and t.final.lines == ("2.0.0 queued",) and t.done


def test_pipelined_all_refused_ends_with_lone_dot_when_data_is_accepted():
    ext = client.Extensions("mx", {"PIPELINING": []})
    t = client.Transaction(ext, b"MAIL FROM:<s>\r\n", [b"RCPT TO:<a>\r\n"], b"x\r\n.\r\n")
    writes = _run(t, [OK, Reply(550, ("no",)), GO, Reply(554, ("no message",))])
    assert writes[-1] == b".\r\n" and t.done and not t.accepted


def test_step_by_step_without_pipelining():
    t = client.Transaction(client.Extensions(), b"MAIL FROM:<s>\r\n", [b"RCPT TO:<a>\r\n"], b"x\r\n.\r\n")
    writes = _run(t, [OK, OK, GO, OK])
    assert writes == [b"MAIL FROM:<s>\r\n", b"RCPT TO:<a>\r\n", b"DATA\r\n", b"x\r\n.\r\n"]
    t = client.Transaction(client.Extensions(), b"MAIL FROM:<s>\r\n", [b"RCPT TO:<a>\r\n"], b"")
    assert _run(t, [Reply(451, ("later",))]) == [b"MAIL FROM:<s>\r\n"] and t.done and t.final.code == 451


def test_tls_requirements_as_cf_readme():
    assert client.tls_requirement_error("VERIFY", "OK", 256) is None
    assert client.tls_requirement_error("VERIFY", "FAIL", 256) == (454, "4.7.0", "454 authentication failed")
    assert client.tls_requirement_error("PERM+VERIFY", "NONE", 0) == (
        503, "5.7.0", "503 other side does not support STARTTLS")
    assert client.tls_requirement_error("ENCR:128", "FAIL", 256) is None
    assert client.tls_requirement_error("ENCR:128", "NONE", 0)[2] == "454 encryption too weak 0 less than 128"
    assert client.tls_requirement_error("VERIFY", "SOFTWARE", 0)[2] == "454 TLS handshake failed."


def test_authinfo_values():
    info = client.AuthInfo.parse('"U:smmsp" "P:secret" "M:LOGIN PLAIN"')
    assert (info.authcid, info.authzid, info.password) == ("smmsp", "", "secret")
    assert info.mechanism({"PLAIN", "LOGIN"}) == "LOGIN" and info.mechanism({"CRAM-MD5"}) == ""
    info = client.AuthInfo.parse('"U:boss" "I:me" "P=c2VjcmV0"')
    assert (info.authcid, info.authzid, info.password) == ("me", "boss", "secret")
    assert client.auth_plain("me", "secret") == b"AUTH PLAIN AG1lAHNlY3JldA==\r\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_any_bytes_give_replies_or_a_protocol_error(chunks):
    r = client.Replies()
    try:
        for chunk in chunks:
            r.feed(chunk)
            while (one := r.next()) is not None:
                assert 100 <= one.code <= 999 and one.lines
    except client.ProtocolError:
        pass


@given(st.binary(max_size=64))
def test_message_bytes_is_the_rfc_5321_definition(text):
    """CRLF line ends (CR, LF and CRLF each end a line), every line starting with '.' gets one
    more, one CRLF at the end, then '.': as the regular expressions say it."""
    import re

    data = re.sub(rb"\r\n|\r|\n", b"\r\n", text)
    data += b"\r\n" if data and not data.endswith(b"\r\n") else b""
    assert client.message_bytes(text) == re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"
