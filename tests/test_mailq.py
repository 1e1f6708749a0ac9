"""mta.mailq: the listing of a planted queue of odd entries is the same, byte for byte, as the
listing mailq gave before it was made fast (tests/data/mailq-planted.txt, written by the
two-pass mailq of main a1322c9, but for one count: an entry whose K line is no number is no
request, as a queue run cannot read it); what depends on directory order is checked against
os.listdir."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time

import pytest

from mta import config, mailq, message, queuescan
from mta import qf as qfile
from mta.delivery import schedule

from .conftest import DATA

ROOT = DATA.parent.parent

T0 = 1795650726  # Wed Nov 25 23:52:06 2026 UTC
FUTURE = 4000000000


def qf(sender: str = "<a@b.test>", *, t: int | None = None, k: int = T0, n: int = 1, p: int = 30000,
       status: str = "Deferred: Connection refused by [127.0.0.2]", rcpts: tuple[str, ...] = ("<c@d.test>",),
       extra: str = "", tail: str = ".\n") -> bytes:
    t = T0 + p % 1000 if t is None else t  # every key distinct: no order left to the directory
    head = f"V8\nT{t}\nK{k}\nN{n}\nP{p}\n" + (f"M{status}\n" if status else "")
    body = extra + f"S{sender}\n" + "".join(f"RPFD:{r}\n" for r in rcpts)
    hdrs = "H?P?Return-Path: <\x81g>\nH??Received: from x\n\tby y; Wed, 25 Nov 2026\nH??Subject: s\n"
    return (head + body + hdrs + tail).encode("latin-1")


def planted() -> dict[str, bytes | None]:
    """qid -> qf bytes (None: no qf); every df is 'x' * (index + 1) unless named in NO_DF."""
    many = tuple(f"<r{i}@example.test>" for i in range(5))
    big = "H??X-Big: " + "y" * 3000 + "\n\t" + "z" * 3000 + "\n"  # a qf over one 4096-byte read
    return {
        "AAplain000001": qf(p=30010),
        "AAwarned00002": qf("<warned@b.test>", p=30020, extra="Fw\n"),
        "AActl00000003": qf("alice", p=30030, extra="C:bob\n", rcpts=("bob@st5.test",)),
        "AApending0004": qf(p=30040, rcpts=()).replace(b"S<a@b.test>\n",
                                                       b"S<a@b.test>\nMUser unknown\nRPFD:<x@y.test>\n"
                                                       b"C:carol\nRPFD:<z@y.test>\n"),
        "AAquar0000005": qf(p=30050, extra="qspam score 12\n"),
        "AAbody0000006": qf(p=30060, status="", extra="B8BITMIME\n"),
        "AAlong0000007": qf("<" + "s" * 60 + "@very-long-sender.example.test>", p=30070,
                            rcpts=("<" + "r" * 80 + "@example.test>",), status="x" * 130),
        "AAodd00000008": qf("<b\\ack\tslash\x01\xe9@b.test>", p=30080, rcpts=("<t\x7fab\xa0@b.test>",)),
        "AAmany0000009": qf(p=30090, rcpts=many, extra=big),
        "AAnodf0000010": qf(p=30100),
        "AAtorn0000011": qf(p=30110, tail=""),
        "AAbadT0000012": qf(p=30120, t=T0).replace(f"T{T0}".encode(), b"Tsoon"),
        "AAbadK0000013": qf(p=30130).replace(f"K{T0}".encode(), b"K12x"),
        "AAnotV0000014": qf(p=30140)[1:],
        "AAempty000015": b"",
        "AAlocked00016": qf("<locked@b.test>", p=30160),
        "AAyoung000017": qf("<young@b.test>", p=30170, k=FUTURE, n=2),
        "AAnoT00000018": qf(p=30180, t=T0).replace(f"T{T0}\n".encode(), b""),
        "AAold00000019": qf(p=5, t=T0 - 86400 * 40),
        "AAhuge0000020": qf(p=10**12, t=T0 + 7),
        "AAtornbig0021": qf(p=30210, extra=big, tail=""),
        "AAlink0000022": None,  # a symlink to a good qf: never followed
        "AAfolded00023": qf("<folded@b.test>", p=30230, rcpts=("<f@b.test>\n\tmore", "<g@b.test>"),
                            extra="C:dave\n\tand more\nB7BIT\n\tx\n"),
        "AAdotcont0024": qf(p=30240, tail=".\n\tcontinued\n"),  # that '.' is no end: torn
        "AAdotlater025": qf(p=30250, tail=".\n\tcontinued\n.\n"),
        "AAMfolded0026": qf(p=30260, status="Deferred:\n\tfolded"),
    }


NO_DF = {"AAnodf0000010"}


@pytest.fixture
def qdir(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    q = tmp_path / "q"
    q.mkdir()
    for i, (qid, data) in enumerate(planted().items()):
        if data is None:
            os.symlink(q / "qfAAplain000001", q / f"qf{qid}")
        else:
            (q / f"qf{qid}").write_bytes(data)
        if qid not in NO_DF:
            (q / f"df{qid}").write_bytes(b"x" * (i + 1))
    (q / "hfAAheld000030").write_bytes(qf("<held@b.test>", p=30300, extra="qheld for review\n"))
    (q / "dfAAheld000030").write_bytes(b"held\n")
    (q / "xfAAplain000001").write_bytes(b"transcript\n")
    (q / "tfAAtemp000031").write_bytes(qf(p=1))
    (q / "QfAAlost000032").write_bytes(qf(p=2))
    fd = os.open(q / "qfAAlocked00016", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a delivery holds it: '*'
    yield q
    os.close(fd)
    time.tzset()


def cfg_with(text: str) -> config.Config:
    return config.parse(text, config.Config(path="test.cf", macros={"j": "h.test", "w": "h"}))


VARIANTS = {  # name -> (mailq.show keyword arguments); each is one section of the golden file
    "plain": {},
    "verbose": {"verbose": True},
    "min_age": {"min_age": 3600},
    "cf priority": {"cfg": "O QueueLA=1000"},
    "cf time": {"cfg": "O QueueLA=1000\nO QueueSortOrder=time", "verbose": True},
    "cf filename": {"cfg": "O QueueLA=1000\nO QueueSortOrder=filename"},
    "quarantined": {"selection": schedule.Selection(quarantined=True), "verbose": True},
    "lost": {"selection": schedule.Selection(lost=True)},
    "by sender": {"selection": schedule.Selection(senders=(("b.test", False),))},
    "by id": {"selection": schedule.Selection(ids=(("AAp", False),)), "verbose": True},
}


def listing_of(q, variant: dict) -> str:
    kw = dict(variant)
    if "cfg" in kw:
        kw["cfg"] = cfg_with(kw["cfg"])
    return "".join(mailq.show(str(q), **kw)).replace(str(q), "QDIR")


@pytest.fixture(params=["one process", "two processes"])
def scan(request, monkeypatch):
    """Each listing test runs twice: read by one process, and by two (taking chunks of 3 names)."""
    spawned = []
    if request.param == "two processes":
        monkeypatch.setattr(queuescan, "PARALLEL_AT", 2)
        monkeypatch.setattr(queuescan, "CHUNK", 3)
        spawn = queuescan._spawn
        monkeypatch.setattr(queuescan, "_spawn", lambda *a: spawned.append(1) or spawn(*a))
    yield request.param
    assert bool(spawned) == (request.param == "two processes")


def test_planted_queue_lists_as_before(qdir, scan):
    got = "".join(f"==== {name}\n{listing_of(qdir, v)}" for name, v in VARIANTS.items())
    want = (DATA / "mailq-planted.txt").read_text(encoding="utf-8")
    assert got == want


def order_of(text: str) -> list[str]:
    return [line[:13].strip() for line in text.splitlines() if line[:13].strip().startswith("AA")]


def test_equal_keys_keep_directory_order(tmp_path, scan):
    q = tmp_path / "q"
    q.mkdir()
    for i in range(40):
        (q / f"qfAAsame{i:06d}").write_bytes(qf(p=30000 + (i % 2)))
        (q / f"dfAAsame{i:06d}").write_bytes(b"x")
    listed = [n[2:] for n in os.listdir(q) if n.startswith("qf")]
    want = [qid for qid in listed if qid.endswith(("0", "2", "4", "6", "8"))]
    want += [qid for qid in listed if qid not in want]
    assert order_of("".join(mailq.show(str(q)))) == want
    none = cfg_with("O QueueLA=1000\nO QueueSortOrder=none")
    assert order_of("".join(mailq.show(str(q), cfg=none))) == listed


@pytest.mark.parametrize("value", ["-5", "5", "", " 5", "+5", "1_0", "5 ", "\u0663", "9" * 19, "9" * 20])
@pytest.mark.parametrize("letter", ["P", "T", "K", "N"])
def test_an_entry_is_listed_when_a_queue_run_can_read_its_numbers(tmp_path, scan, letter, value):
    q = tmp_path / "q"
    q.mkdir()
    data = re.sub(rf"(?m)^{letter}.*$".encode(), f"{letter}{value}".encode(), qf(), count=1)
    for qid, text in (("AAnumber0001", data), ("AAplain000002", qf())):
        (q / f"qf{qid}").write_bytes(text)
        (q / f"df{qid}").write_bytes(b"x")
    try:
        readable = bool(qfile.parse_entry("AAnumber0001", message.from_bytes(data)))
    except qfile.BadQueueFile:
        readable = False
    for cfg in (None, cfg_with("O QueueLA=1000\nO QueueSortOrder=time")):
        assert ("AAnumber0001" in "".join(mailq.show(str(q), cfg=cfg))) == readable


def test_a_time_past_the_c_librarys_is_null_as_printf_prints_it(tmp_path):
    """T9999999999999999999 is a number a queue run reads; ctime() has no date for it and
    returns NULL, which Sendmail's printf("%.16s") prints as "(null)"."""
    q = tmp_path / "q"
    q.mkdir()
    (q / "qfAAfuture0001").write_bytes(qf(t=10**19 - 1))
    (q / "dfAAfuture0001").write_bytes(b"x")
    assert "AAfuture0001        1 (null) <a@b.test>\n" in "".join(mailq.show(str(q)))
    assert "AAfuture0001        1      30000 (null) <a@b.test>\n" in "".join(mailq.show(str(q), verbose=True))


def test_max_queue_run_size_lists_the_first_found_sorted(tmp_path):
    q = tmp_path / "q"
    q.mkdir()
    for i in range(30):
        (q / f"qfAAcap{i:07d}").write_bytes(qf(p=40000 - i))
        (q / f"dfAAcap{i:07d}").write_bytes(b"x")
    (q / "qfAAcaptorn001").write_bytes(qf(p=1, tail=""))  # not counted, not listed
    listed = [n[2:] for n in os.listdir(q) if n.startswith("qf") and "torn" not in n]
    out = "".join(mailq.show(str(q), cfg=cfg_with("O QueueLA=1000\nO MaxQueueRunSize=7")))
    assert "(30 requests, only 7 printed)" in out and "Total requests: 30" in out
    assert order_of(out) == sorted(listed[:7], key=lambda qid: 40000 - int(qid[5:]))


@pytest.mark.parametrize(("text", "limit", "want"), [
    ("<plain@b.test>", 39, "<plain@b.test>"),
    ("x" * 50, 39, "x" * 39),
    ("<\xe9@b.test>", 39, "<\\351@b.test>"),  # char is signed: a byte over 0x7f is no ASCII
    ("<t\xa0@b>", 39, "<t\\240@b>"),
    ("a\\b", 39, "a\\\\b"),  # a backslash doubled, two columns
    ("a\\b", 2, "a"),  # no room left for both
    ("ab\x01", 6, "ab"),  # an escape that would end the line is left out
    ("ab\x01c", 7, "ab\\001c"),  # the escape fits, and one column is left
    ("a\0b", 39, "a"),  # a C string ends at NUL
])
def test_prtstr_is_sendmails(text, limit, want):
    """queue.c prtstr() of Sendmail 8.17.1.9 (Debian 12's): isascii() && isprint() or \\ooo,
    and the limit counts the columns printed, escapes included."""
    assert mailq.prtstr(text, limit) == want


def test_mailq_prints_the_control_files_bytes_as_they_are(tmp_path):
    """Sendmail prints a status with %.60s: an 8-bit byte goes out as it is in the qf, never
    re-encoded (it came out as UTF-8, two bytes); in an address it is \\ooo (prtstr)."""
    q = tmp_path / "q"
    q.mkdir()
    (q / "qfAA8bit000001").write_bytes(qf("<caf\xe9@b.test>", status="Deferred: r\xe9ponse 4.2.0"))
    (q / "dfAA8bit000001").write_bytes(b"x")
    cf = tmp_path / "sendmail.cf"
    cf.write_text(f"O QueueDirectory={q}\n")
    script = f"import sys; sys.path[:0] = [{str(ROOT)!r}]; from mta.cli import sendmail; sendmail.main()"
    out = subprocess.run([sys.executable, "-IS", "-c", script, "-bp", "-C", str(cf)], capture_output=True,
                         timeout=60, env={"TZ": "UTC", "PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    assert b"(Deferred: r\xe9ponse 4.2.0)\n" in out.stdout and b"<caf\\351@b.test>" in out.stdout
