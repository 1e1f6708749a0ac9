import re
import time

from mta import message


def test_collect_dot_rules():
    assert message.collect(b"a\nb\n.\nlost\n", ignore_dots=False) == "a\nb\n"
    assert message.collect(b"a\n..b\n", ignore_dots=False) == "a\n.b\n"
    assert message.collect(b"a\n.\nkept\n..two\n", ignore_dots=True) == "a\n.\nkept\n..two\n"
    assert message.collect(b"a\r\nb\r\n", ignore_dots=True) == "a\nb\n"
    assert message.collect(b"no newline", ignore_dots=True) == "no newline\n"
    assert message.collect(b"", ignore_dots=False) == ""


def test_bytes_survive():
    raw = bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"")
    assert message.to_bytes(message.from_bytes(raw)) == raw


def test_parse_headers_body():
    m = message.parse("From someone Mon Jan 1\nSubject: hi\n there\nTo:  a\n\nbody\n")
    assert [(h.name, h.value) for h in m.headers] == [("Subject", "hi\n there"), ("To", "a")]
    assert m.body == "body\n"
    assert m.header_text() == "Subject: hi\n there\nTo: a\n"


def test_no_header_section_is_all_body():
    m = message.parse("no header section, first line is body\n")
    assert m.headers == [] and m.body.startswith("no header")


def test_conditional_headers():
    m = message.Message([message.Header("Return-Path", "<x>", "P"), message.Header("Subject", "s")])
    assert "Return-Path" in m.header_text("lsDFMP") and "Return-Path" not in m.header_text("mDFMuX")


def test_arpadate_shape():
    assert re.fullmatch(r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d (GMT|[+-]\d{4}( \(\w+\))?)",
                        message.arpadate())


def test_received_matches_sendmail(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    when = 1795650726  # Wed, 25 Nov 2026 23:52:06 GMT
    got = message.received(host="st5.example.test", version="8.17.1.9/8.17.1.9/Submit",
                           qid="6APNq6DA015059", when=when, local_user="alice", for_rcpt="bob")
    assert got == ("(from alice@localhost)\n\tby st5.example.test (8.17.1.9/8.17.1.9/Submit) id "
                   "6APNq6DA015059\n\tfor bob; Wed, 25 Nov 2026 23:52:06 GMT")
    got = message.received(host="h", version="v", qid="Q", when=when, local_user="bob")
    assert got == "(from bob@localhost)\n\tby h (v) id Q;\n\tWed, 25 Nov 2026 23:52:06 GMT"
    assert message.message_id("Q", "h", when) == "<202611252352.Q@h>"
