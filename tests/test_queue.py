import os
import re
import shutil
import time

import pytest

from mta import errors, qf, queue
from mta.message import Header, from_bytes

from .conftest import DATA


def test_id_shape_and_uniqueness():
    ids = {queue.new_id() for _ in range(500)}
    assert len(ids) == 500
    qid = next(iter(ids))
    assert re.fullmatch(r"[0-9A-Za-z]{8}\d{6}", qid)
    tm = time.gmtime()
    assert qid[0] == queue.QID_CHARS[(tm.tm_year - 1900) % 60]
    assert qid[8:] == f"{os.getpid() % 1000000:06d}"


def test_captured_qf_roundtrips():
    for name in sorted(os.listdir(DATA / "mqueue")):
        if not name.startswith("qf"):
            continue
        text = from_bytes((DATA / "mqueue" / name).read_bytes())
        entry = qf.parse_entry(name[2:], text)
        again = qf.parse_entry(name[2:], qf.format_entry(entry))
        assert again == entry
        assert entry.headers[0].name == "Return-Path" and entry.headers[0].cond == "P"


def test_msp_sample_fields():
    entry = qf.parse_entry("6APNq6DA015059", from_bytes((DATA / "qf-msp-sample").read_bytes()))
    assert (entry.ctime, entry.tries, entry.priority, entry.sender) == (1795650726, 1, 30059, "alice")
    assert entry.status == "Deferred: Connection refused by [127.0.0.1]"
    assert entry.macros["_"] == "alice@localhost"
    r = entry.recipients[0]
    assert (r.addr, r.flags, r.final, r.ctladdr) == ("bob", "PFD", "RFC822; bob@st5.example.test", ":bob")
    assert entry.headers[1].value.startswith("(from alice@localhost)\n\tby st5.example.test")


@pytest.mark.parametrize("text,why", [
    ("V8\nT1\nSroot\nRPFD:a\n", "incomplete"),
    ("V9\nT1\n.\n", "unsupported"),
    ("V8\nT1\n.\nRPFD:evil\n", "extra or bogus"),
    ("V8\nZ\x01\nwhat\n.\n", "bad line"),
    ("", "not a version 8"),
])
def test_bad_files_refused(text, why):
    with pytest.raises(qf.BadQueueFile, match=why):
        qf.parse_entry("X", text)


def test_newlines_cannot_forge_lines(tmp_path):
    e = qf.Entry("Q", sender="a\nRPFD:evil", recipients=[qf.Recipient("b\n.\nX")],
                    headers=[Header("Subject", "x\nRPFD:evil")])
    text = qf.format_entry(e)
    back = qf.parse_entry("Q", text)
    assert [r.addr for r in back.recipients] == ["b . X"]
    assert back.headers[0].value == "x\n\tRPFD:evil"


def test_store_read_remove_and_lock(tmp_path):
    e = qf.Entry(queue.new_id(), ctime=1, sender="root", recipients=[qf.Recipient("bob")])
    queue.store(str(tmp_path), e, "body\n")
    assert sorted(os.listdir(tmp_path)) == sorted(["df" + e.qid, "qf" + e.qid])
    got = queue.read(str(tmp_path), e.qid)
    assert got.body_size == 5 and got.recipients[0].addr == "bob"
    with queue.lock(str(tmp_path), e.qid):
        assert queue.glance(queue.qf_path(str(tmp_path), e.qid)).locked
        with pytest.raises(queue.Locked), queue.lock(str(tmp_path), e.qid):
            pass
    assert not queue.glance(queue.qf_path(str(tmp_path), e.qid)).locked
    queue.remove(str(tmp_path), e.qid)
    assert os.listdir(tmp_path) == []


def test_store_into_missing_dir_is_cantcreat(tmp_path):
    e = qf.Entry("Q", sender="root")
    with pytest.raises(errors.CantCreate):
        queue.store(str(tmp_path / "nope"), e, "x")


def test_mailq_golden(tmp_path, monkeypatch):
    from mta import mailq

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    q = tmp_path / "q"
    shutil.copytree(DATA / "mqueue", q)
    want = (DATA / "mqueue.mailq").read_text().replace("QDIR", str(q))
    assert "".join(mailq.show(str(q))) == want
    want = (DATA / "mqueue.mailq-v").read_text().replace("QDIR", str(q))
    assert "".join(mailq.show(str(q), verbose=True)) == want  # Debian's `mailq -v`, byte for byte
    msp = tmp_path / "msp"
    shutil.copytree(DATA / "mqueue-client", msp)
    want = (DATA / "mqueue-client.mailq-v").read_text().replace("QDIR", str(msp))
    assert "".join(mailq.show(str(msp), verbose=True)) == want  # with the MSP's C (controlling address) lines


def test_quarantine_reason_is_the_q_line():
    e = qf.Entry("Q", ctime=1, sender="<a@b>", quarantine="held\nRPFD:evil", recipients=[qf.Recipient("<c@d>")])
    text = qf.format_entry(e)
    assert "\nqheld RPFD:evil\n" in text and text.index("\nq") < text.index("\nS")
    assert qf.parse_entry("Q", text).quarantine == "held RPFD:evil"


def test_what_a_run_glanced_at_is_reparsed_only_when_the_file_changed(tmp_path):
    """A queue run parses each qf once, at the glance; the delivery takes that entry under the
    lock only while the qf is the very file glanced at, else it reads the new one."""
    qdir = str(tmp_path)
    e = qf.Entry(queue.new_id(), ctime=1, sender="root", recipients=[qf.Recipient("bob")])
    queue.store(qdir, e, "body\n")
    g = queue.glance(queue.qf_path(qdir, e.qid))
    assert g is not None and not g.locked and g.data.startswith(b"V")
    seen = qf.parse_entry(e.qid, from_bytes(g.data))
    with queue.lock(qdir, e.qid) as fd:
        assert queue.read(qdir, e.qid, fd=fd, known=(g.ident, seen)) is seen
        assert queue.glance(queue.qf_path(qdir, e.qid)).locked
    e.recipients = [qf.Recipient("carol")]  # another runner rewrote it (tf, rename)
    queue.store(qdir, e)
    with queue.lock(qdir, e.qid) as fd:
        got = queue.read(qdir, e.qid, fd=fd, known=(g.ident, seen))
    assert got is not seen and [r.addr for r in got.recipients] == ["carol"]
