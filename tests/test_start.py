"""What `sendmail -t` loads at its start, and that the scanners which replaced regular
expressions on that path (re, with enum, is a quarter of the imports, and a fifth of a
relayed submission's start) find what the expressions found, on any text."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mta import address, config, message, options, qf
from mta.delivery import render
from mta.smtp import client, wire

ROOT = Path(__file__).resolve().parent.parent

HEAVY = {"re", "socket", "json", "random", "ipaddress", "subprocess", "asyncio", "selectors", "email",
         "click", "dns", "encodings.idna", "typing", "pathlib", "tempfile", "logging", "threading",
         "contextlib", "functools", "collections"}


def loaded(tmp_path, prog: str, args: list[str], stdin: bytes = b"", cf_text: str = "") -> set[str]:
    """The modules a command loaded, run as the package runs it (python3 -IS)."""
    (tmp_path / "q").mkdir(exist_ok=True)
    cf = tmp_path / "submit.cf"
    cf.write_text(f"Djhost.example.test\nO QueueDirectory={tmp_path}/q\nO LogFile={tmp_path}/log\n"
                  "D{MTAHost}[127.0.0.1]\n" + cf_text)
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}]
        sys.argv = [{prog!r}, "-C", {str(cf)!r}, *{args!r}]
        import atexit
        atexit.register(lambda: print(" ".join(sorted(sys.modules)), file=sys.stderr))
        from mta.cli import sendmail
        sendmail.main()
    """)
    r = subprocess.run([sys.executable, "-IS", "-c", script], input=stdin, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stderr.decode().split())


def test_sendmail_t_imports_nothing_heavy(tmp_path):
    got = loaded(tmp_path, "sendmail", ["-odq", "-t"], b"To: root\nSubject: s\n\nhi\n")
    assert [n for n in (tmp_path / "q").iterdir() if n.name.startswith("qf")]
    assert "mta.submit" in got and not HEAVY & got, sorted(HEAVY & got)
    stack = {"mta.delivery.attempt", "mta.notify", "mta.dsn", "mta.delivery.handoff", "mta.mailers.esmtp"}
    assert not stack & got, sorted(stack & got)  # queued only: nothing delivers, nothing bounces


def test_a_relayed_submission_imports_only_what_it_sends_with(tmp_path):
    """submit.cf's own mode: the MSP relays to its MTA at once (here: nobody listens, so it
    stays queued).  The SMTP client is all it adds: not re (a fifth of this start, with enum),
    socket.py, threading or random, nor the local mailer."""
    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    relay = f"O DeliveryMode=i\nMrelay, P=[IPC], F=mDFMuXa8k, E=\\r\\n, L=2040, T=DNS/RFC822/SMTP, A=TCP $h {port}\n"
    got = loaded(tmp_path, "sendmail", ["-t"], b"To: root\nSubject: s\n\nhi\n", relay)
    assert [n for n in (tmp_path / "q").iterdir() if n.name.startswith("qf")]
    assert "mta.mailers.esmtp" in got and "mta.mailers.local" not in got
    assert not (HEAVY | {"base64", "enum"}) & got, sorted((HEAVY | {"base64", "enum"}) & got)


def test_mailq_imports_nothing_heavy(tmp_path):
    got = loaded(tmp_path, "mailq", ["-Ac"])
    assert "mta.queuescan" in got and not {"re", "json", "random", "socket", "typing", "threading"} & got


def test_a_reader_gone_is_exit_74_without_a_traceback(tmp_path):
    """mailq's output flushed at exit, into a pipe nobody reads any more (mailq | true): the
    exit code of a broken pipe during the run, and no "Exception ignored" on stderr."""
    (tmp_path / "q").mkdir()
    cf = tmp_path / "submit.cf"
    cf.write_text(f"O QueueDirectory={tmp_path}/q\n")
    script = f"import sys; sys.path[:0] = [{str(ROOT)!r}]; from mta.cli import sendmail; sendmail.mailq_main()"
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-IS", "-c", script, "-C", str(cf)], stdout=w,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(w)
    assert (proc.returncode, proc.stderr) == (74, b"")


TEXT = st.text(alphabet="ab Z_-$?{}.,=\t\n\r\x0b\u00a0\u0663\u00b2#:Idm4smhdw019AP", max_size=60)
SETTINGS = settings(max_examples=400, deadline=None)


@SETTINGS
@given(TEXT)
@example("1h30m 90 ٣d 5w x7")
def test_numbers_and_units_are_the_findall(text):
    assert options._numbers_and_units(text) == re.findall(r"(\d+)([smhdw]?)", text)


@SETTINGS
@given(TEXT)
def test_words_are_the_split(text):
    assert options.words(text) == tuple(w.lower() for w in re.split(r"[\s,]+", text) if w)


@SETTINGS
@given(TEXT)
@example("$j $?{x}a$|b$. ${unclosed $?\n $? $")
def test_macros_are_the_finditer(text):
    want = [(m.start(), m.end(), m.group(1) or "", m.group(2)) for m in re.finditer(r"\$(\?)?(\{[^}]*\}|.)", text)]
    assert list(config._macros(text)) == want


@SETTINGS
@given(TEXT)
@example("P=[IPC], F=mDFMuX, S=EnvFromSMTP/HdrFromSMTP,\tA=TCP $h, x=, =y")
def test_mailer_fields_are_the_split(text):
    assert config._mailer_fields(text) == re.split(r",\s*(?=[A-Za-z]=)", text)


@SETTINGS
@given(st.lists(st.sampled_from(["#####", " ", "\t", "\n", "$Id: ", "cfhead", "a-b_c", "٣", ".m4,", ".m4", "x",
                                 "#"]), max_size=14).map("".join))
@example("#####  $Id: cfhead.m4,v 8.1\n##### $Id: msp.m4,v\n#####\n\t$Id: proto.m4,\n")
def test_features_are_the_findall(text):
    assert config._features(text) == re.findall(r"^#####\s+\$Id: ([\w-]+)\.m4,", text, re.M)


RELAY = re.compile(r'R\$\*\s+\$#error \$@ 5\.7\.1 \$: "550 (Relaying denied[^"]*)"\s*$')


@SETTINGS
@given(st.lists(st.sampled_from(['R$*', ' ', '\t', '$#error $@ 5.7.1 $: "550 ', "Relaying denied", '"', "x",
                                 ". Proper authentication required.", "\u00a0"]), max_size=8).map("".join))
@example('R$*\t\t\t$#error $@ 5.7.1 $: "550 Relaying denied. Proper authentication required." ')
def test_relay_msg_is_the_match(line):
    m = RELAY.match(line)
    assert config._relay_msg(line) == (m.group(1) if m else None)


HEADER = re.compile(r"^([!-9;-~]+)[ \t]*:")


@SETTINGS
@given(st.text(alphabet="Sub jct:\t-!9;~\x7f\x01é", max_size=20))
@example("Subject: hi")
@example("X-A \t: b")
def test_header_name_is_the_match(line):
    m = HEADER.match(line)
    assert message.header_name(line) == ((m.group(1), m.end() - 1) if m else ("", -1))


@SETTINGS
@given(st.text(alphabet="ab.-_!#$%&'*+/=?^`{|}~@ é\"", max_size=20))
def test_dot_atom_and_label_are_the_fullmatch(text):
    atext = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
    assert address.dot_atom(text) == bool(re.fullmatch(rf"{atext}+(\.{atext}+)*", text))
    assert address.host_label(text) == bool(re.fullmatch(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?", text))


@SETTINGS
@given(st.text(alphabet="-0123456789٣ x", max_size=24))
def test_qf_number_is_the_fullmatch(text):
    assert qf.is_number(text) == bool(re.fullmatch(r"-?[0-9]{1,19}", text))


@SETTINGS
@given(st.text(alphabet="245.0193x ٣²", max_size=12))
@example("5.7.1")
@example("4.4.1234")
def test_status_code_is_the_fullmatch(word):
    assert client.status_code(word) == bool(re.fullmatch(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}", word))


@SETTINGS
@given(st.text(alphabet='"UP:= \t\u00a0ab', max_size=24))
@example('"U:smmsp" "P:secret" M:PLAIN "')
def test_authinfo_words_are_the_findall(value):
    assert client.authinfo_words(value) == [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', value)]


@SETTINGS
@given(st.binary(max_size=16).map(lambda b: b.replace(b"\x00", b"Subj: \t")))
@example(b"Subject: hi")
@example(b": x")
def test_header_line_is_the_match(line):
    assert wire.header_line(line) == bool(re.match(rb"[!-9;-~]+:", line))
    assert wire.header_line(bytearray(line)) == wire.header_line(line)


@SETTINGS
@given(st.text(alphabet="ab.+-_<>, \t\n\u00a0\"@é", max_size=30))
@example("root, Joe <joe>, bob@x, <a.b> (c), d ,e")
def test_qualify_is_the_sub(value):
    want = re.sub(r"(^|,\s*|<)([A-Za-z0-9._+-]+)(?=\s*(?:>|,|$))", lambda m: f"{m.group(1)}{m.group(2)}@h.test",
                  value)
    assert render.qualify(value, "h.test") == want


def test_the_esmtp_mailer_loads_ssl_only_for_starttls():
    """A relayed submission (submit.cf's DeliveryMode=i to [127.0.0.1]) loads the esmtp mailer;
    ssl costs a fifth of its start and is loaded only when a peer offers STARTTLS."""
    script = f"import sys; sys.path[:0] = [{str(ROOT)!r}]; import mta.mailers.esmtp; print('ssl' in sys.modules)"
    r = subprocess.run([sys.executable, "-IS", "-c", script], capture_output=True, timeout=60, text=True)
    assert r.stdout.strip() == "False", r.stdout + r.stderr
