"""Queue files that are torn, garbage, alone or stale: typed errors, Qf, cleanup; the qf reader fuzzed."""

from __future__ import annotations

import fcntl
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mta import errors, qf, queue, queuesweep
from mta.message import from_bytes

GOOD = ("V8\nT1795650726\nK0\nN0\nP30059\nMDeferred: x\nFb\n$_root@localhost\n${daemon_flags}\nSroot\n"
        "ZENV\nMwhy\nC:bob\nQrfc822;bob@x\nrRFC822; bob@x\nRPFD:bob\nH?P?Return-Path: <\x81g>\n"
        "HSubject: s\n\tfolded\n.\n")
LINES = GOOD.split("\n")


def _parsed_or_typed(qid: str, data: bytes) -> None:
    try:
        entry = qf.parse_entry(qid, from_bytes(data))
    except qf.BadQueueFile:
        return
    assert isinstance(entry, qf.Entry)
    qf.parse_entry(qid, qf.format_entry(entry))  # what we read we can write back and read again


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile (make fuzz)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_an_entry_or_bad_queue_file(data):
    _parsed_or_typed("Q", data)


@st.composite
def mutated_qf(draw):
    """A real qf with lines dropped, cut, duplicated or replaced by a known letter and junk."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["drop", "cut", "dup", "junk"]))
        if how == "drop":
            del lines[i]
        elif how == "cut":
            lines[i] = lines[i][:draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif how == "dup":
            lines.insert(i, lines[i])
        else:
            letter = draw(st.sampled_from(list("VTKNPFBM$SZCQrRH.dIqAD!EL ") + ["\t", "${", "H?"]))
            lines[i] = letter + draw(st.text(max_size=30))
    text = "\n".join(lines)
    return text.encode("utf-8", "surrogateescape")[:draw(st.integers(0, 2000))]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_qf())
def test_mutated_real_qf_gives_an_entry_or_bad_queue_file(data):
    _parsed_or_typed("Q", data)


@pytest.mark.parametrize("line", ["Tsoon", "K1.5", "N-", "Pnan", "T 12", "N1_0", "T\u0663"])
def test_non_numeric_number_lines_are_bad_files(line):
    with pytest.raises(qf.BadQueueFile) as info:
        qf.parse_entry("X", f"V8\n{line}\nSroot\nRPFD:bob\n.\n")
    assert info.value.why == "bogus queue line"


def test_numbers_as_sendmail_writes_them():
    e = qf.parse_entry("X", "V8\nT17\nK\nN3\nP-1800\nSroot\nRPFD:bob\n.\n")
    assert (e.ctime, e.last_try, e.tries, e.priority) == (17, 0, 3, -1800)


# -- the files of a queue directory -------------------------------------------------------------

class Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def line(self, text: str, qid: str = "") -> None:
        self.lines.append((qid, text))


def _entry(qdir, body="body\n") -> qf.Entry:
    e = qf.Entry(queue.new_id(), ctime=int(time.time()), sender="root", recipients=[qf.Recipient("bob")])
    queue.store(str(qdir), e, body)
    return e


def _age(path, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def test_sweep_loses_bad_qf_once_and_keeps_good(tmp_path):
    good = _entry(tmp_path)
    (tmp_path / "qfBADT00000001").write_text("V8\nTsoon\nSroot\nRPFD:bob\n.\n")
    (tmp_path / "dfBADT00000001").write_text("x\n")
    (tmp_path / "qfTORN00000001").write_text("V8\nT1\nSroot\nRPF")
    (tmp_path / "dfTORN00000001").write_text("x\n")
    log = Log()
    queuesweep.sweep(str(tmp_path), log)
    queuesweep.sweep(str(tmp_path), log)
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(["QfBADT00000001", "QfTORN00000001", "dfBADT00000001", "dfTORN00000001",
                            "df" + good.qid, "qf" + good.qid])
    assert log.lines == [
        ("BADT00000001", f"Losing {tmp_path}/qfBADT00000001: bogus queue line"),
        ("TORN00000001", f"Losing {tmp_path}/qfTORN00000001: incomplete queue file read"),
    ] or sorted(log.lines) == sorted([
        ("BADT00000001", f"Losing {tmp_path}/qfBADT00000001: bogus queue line"),
        ("TORN00000001", f"Losing {tmp_path}/qfTORN00000001: incomplete queue file read"),
    ])


def test_sweep_moves_qf_without_df_aside(tmp_path):
    e = _entry(tmp_path)
    os.unlink(tmp_path / f"df{e.qid}")
    log = Log()
    queuesweep.sweep(str(tmp_path), log)
    assert os.listdir(tmp_path) == [f"Qf{e.qid}"]
    assert log.lines == [(e.qid, f"Losing {tmp_path}/qf{e.qid}: data file missing")]


def test_sweep_leaves_a_locked_bad_qf_alone(tmp_path):
    (tmp_path / "qfBUSY00000001").write_text("V8\nT1\n")
    fd = os.open(tmp_path / "qfBUSY00000001", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        queuesweep.sweep(str(tmp_path), Log())
        assert os.path.exists(tmp_path / "qfBUSY00000001")
    finally:
        os.close(fd)


def test_sweep_removes_orphans_older_than_a_day(tmp_path):
    kept = _entry(tmp_path)
    _age(tmp_path / f"df{kept.qid}", 3)  # an old df of a live qf stays
    for name, days in (("dfOLD000000001", 2), ("tfOLD000000001", 2), ("xfOLD000000001", 2),
                       ("dfNEW000000001", 0.5), ("tfNEW000000001", 0.5),
                       ("dfLOST00000001", 2), ("QfLOST00000001", 2), ("dfHELD00000001", 2), ("hfHELD00000001", 2)):
        (tmp_path / name).write_text("x\n")
        _age(tmp_path / name, days)
    (tmp_path / "qfLOST00000001").unlink(missing_ok=True)
    log = Log()
    queuesweep.sweep(str(tmp_path), log)
    assert sorted(os.listdir(tmp_path)) == sorted([
        f"df{kept.qid}", f"qf{kept.qid}", "dfNEW000000001", "tfNEW000000001",
        "dfLOST00000001", "QfLOST00000001", "dfHELD00000001", "hfHELD00000001"])
    assert sorted(t for _q, t in log.lines) == sorted(
        f"removed stale {tmp_path}/{n}" for n in ("dfOLD000000001", "tfOLD000000001", "xfOLD000000001"))


def test_sweep_removes_old_empty_qf_as_sendmail(tmp_path):
    (tmp_path / "qfZERO00000001").write_text("")
    (tmp_path / "dfZERO00000001").write_text("x")
    queuesweep.sweep(str(tmp_path), Log())
    assert sorted(os.listdir(tmp_path)) == ["dfZERO00000001", "qfZERO00000001"]  # young: being written
    queuesweep.sweep(str(tmp_path), Log(), now=time.time() + 3600)
    assert os.listdir(tmp_path) == []


def test_lock_notices_a_qf_replaced_while_waiting(tmp_path, monkeypatch):
    """A runner that opened the old qf before another rewrote it must not deliver the old text."""
    e = _entry(tmp_path)
    real = fcntl.flock

    def flock_after_rewrite(fd, op):
        e.tries += 1
        queue.store(str(tmp_path), e)  # tf renamed over the qf we opened
        monkeypatch.setattr(fcntl, "flock", real)
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_rewrite)
    with pytest.raises(queue.Locked), queue.lock(str(tmp_path), e.qid):
        pass
    with queue.lock(str(tmp_path), e.qid):
        assert queue.read(str(tmp_path), e.qid).tries == 1


def test_failed_store_leaves_no_partial_files(tmp_path, monkeypatch):
    e = qf.Entry(queue.new_id(), sender="root", recipients=[qf.Recipient("bob")])
    real = os.rename

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", full)
    with pytest.raises(errors.TempFail) as info:
        queue.store(str(tmp_path), e, "body\n")
    monkeypatch.setattr(os, "rename", real)
    assert os.listdir(tmp_path) == []
    assert (info.value.code, info.value.status) == (452, "4.3.1")
    assert str(tmp_path) not in info.value.text


def test_low_on_space(tmp_path):
    assert queue.low_on_space(str(tmp_path), 0, 0) is None
    assert queue.low_on_space(str(tmp_path), 1000, 1) is None
    huge = os.statvfs(tmp_path).f_bavail + 10
    assert queue.low_on_space(str(tmp_path), 0, huge) == os.statvfs(tmp_path).f_bavail
    assert queue.low_on_space(str(tmp_path), huge * os.statvfs(tmp_path).f_bsize, 0) is not None


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_qf())
def test_the_sweeps_quick_test_passes_only_what_the_reader_reads(data):
    """sweep() parses only files its quick test suspects: none it passes may be a bad file."""
    if queuesweep.looks_whole(data):
        qf.parse_entry("Q", from_bytes(data))
