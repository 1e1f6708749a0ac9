"""mta.qgroups: which queue group a message goes to (its mailers' Q=), the split of an envelope
across groups and by a group's recipients limit (queue.c split_by_recipient), and the store of
the pieces as whole qf/df pairs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta import config, qf, qgroups, queue
from mta.message import Header
from mta.qf import Entry, Recipient


def cfg_with(text: str) -> config.Config:
    return config.parse(text, config.Config(path="test.cf", macros={"j": "h.test", "w": "h"}))


GROUPS = ("O QueueDirectory=/q/main\n"
          "Qslow, P=/q/slow, F=f, r=2\n"
          "Qbulk, P=/q/bulk\n"
          "Mlocal, P=/bin/true, F=lsDFM, A=x\n"
          "Mesmtp, P=[IPC], F=mDFMuXa, Q=slow, A=TCP $h\n"
          "Mrelay, P=[IPC], F=mDFMuXa8, Q=bulk, A=TCP $h\n")


def _entry(*rcpts: str) -> Entry:
    return Entry(queue.new_id(), ctime=100, priority=30000, sender="<s@x.test>",
                 recipients=[Recipient(r) for r in rcpts], headers=[Header("Subject", "hi")],
                 macros={"r": "ESMTP"})


def test_groups_and_mailer_queues():
    cfg = cfg_with(GROUPS)
    assert [g.name for g in qgroups.groups(cfg)] == ["mqueue", "slow", "bulk"]
    assert qgroups.groups(cfg)[0].path == "/q/main"
    assert qgroups.mailer_groups(cfg) == {"esmtp": "slow", "relay": "bulk"}
    assert qgroups.mailer_groups(cfg_with("Mesmtp, P=[IPC], F=m, Q=nosuch, A=TCP $h\n")) == {}


def test_unknown_mailer_queue_is_noticed():
    cfg = cfg_with("Mesmtp, P=[IPC], F=m, Q=nosuch, A=TCP $h\n")
    assert "mailer esmtp: unknown queue nosuch" in qgroups.notices(cfg)


def test_one_group_is_no_split():
    cfg = cfg_with(GROUPS)
    e = _entry("<a@h>", "<b@h>", "<c@h>")
    pieces, lines = qgroups.split(cfg, e, [None, None, None])
    assert [(p.group.name, p.entry.qid) for p in pieces] == [("mqueue", e.qid)] and not lines


def test_the_first_recipient_decides_the_envelopes_group():
    # setnewqueue: the first good recipient's mailer; recipients without Q= go with the envelope
    cfg = cfg_with(GROUPS)
    e = _entry("<r@far.test>", "<a@h>")
    pieces, _ = qgroups.split(cfg, e, ["bulk", None])
    assert [(p.group.name, [r.addr for r in p.entry.recipients]) for p in pieces] == [
        ("bulk", ["<r@far.test>", "<a@h>"])]


def test_split_across_groups_gives_new_ids_and_copies_the_rest():
    cfg = cfg_with(GROUPS)
    e = _entry("<a@h>", "<r@far.test>", "<b@h>", "<s@far.test>")
    pieces, lines = qgroups.split(cfg, e, [None, "bulk", None, "bulk"])
    first, other = pieces
    assert (first.group.name, first.entry.qid) == ("mqueue", e.qid)
    assert [r.addr for r in first.entry.recipients] == ["<a@h>", "<b@h>"]
    assert other.group.name == "bulk" and other.entry.qid != e.qid and len(other.entry.qid) == 14
    assert [r.addr for r in other.entry.recipients] == ["<r@far.test>", "<s@far.test>"]
    for name in ("ctime", "priority", "sender", "macros", "headers"):
        assert getattr(other.entry, name) == getattr(e, name)
    assert lines == [(e.qid, f"split: count=1, id={other.entry.qid}")]


def test_a_groups_recipient_limit_splits_within_it():
    cfg = cfg_with(GROUPS)
    e = _entry(*(f"<u{n}@far.test>" for n in range(5)))
    pieces, lines = qgroups.split(cfg, e, ["slow"] * 5)
    assert [p.group.name for p in pieces] == ["slow"] * 3
    assert [[r.addr for r in p.entry.recipients] for p in pieces] == [
        ["<u0@far.test>", "<u1@far.test>"], ["<u2@far.test>", "<u3@far.test>"], ["<u4@far.test>"]]
    assert pieces[0].entry.qid == e.qid and len({p.entry.qid for p in pieces}) == 3
    ids = "; ".join(p.entry.qid for p in pieces[1:])
    assert lines == [(e.qid, f"split: maxrcpts=2, rcpts=5, count=2, ids={ids}")]


def test_store_writes_whole_pairs_sharing_the_data_file(tmp_path):
    (tmp_path / "main").mkdir()
    (tmp_path / "bulk").mkdir()
    cfg = cfg_with(GROUPS.replace("/q/", f"{tmp_path}/"))
    e = _entry("<a@h>", "<r@far.test>")
    pieces, _ = qgroups.split(cfg, e, [None, "bulk"])
    stored = qgroups.store(cfg, pieces, "the body\n", 0o600, current=str(tmp_path / "main"))
    assert [s.qdir for s in stored] == [str(tmp_path / "main"), str(tmp_path / "bulk")]
    for s in stored:
        back = queue.read(s.qdir, s.qid)
        assert back.recipients == s.recipients and back.body_size == len("the body\n")
        assert queue.read_body(s.qdir, s.qid) == "the body\n"
    a, b = (os.stat(queue.qf_path(s.qdir, s.qid, "d")) for s in stored)
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)  # one file system: a hard link, as dup_df


def test_store_failure_leaves_nothing(tmp_path):
    (tmp_path / "main").mkdir()
    cfg = cfg_with(GROUPS.replace("/q/", f"{tmp_path}/"))  # no bulk directory
    e = _entry("<a@h>", "<r@far.test>")
    pieces, _ = qgroups.split(cfg, e, [None, "bulk"])
    with pytest.raises(Exception):  # noqa: B017, PT011 - CantCreate, whatever the stage
        qgroups.store(cfg, pieces, "the body\n", 0o600, current=str(tmp_path / "main"))
    assert os.listdir(tmp_path / "main") == []


def test_pick_keeps_the_current_directory_of_a_group(tmp_path):
    for d in ("q1", "q2"):
        (tmp_path / d).mkdir()
    cfg = cfg_with(f"O QueueDirectory={tmp_path}/q*\nQslow, P={tmp_path}/slow\n")
    mqueue, slow = qgroups.groups(cfg)
    assert qgroups.pick_dir(cfg, mqueue, str(tmp_path / "q2")) == str(tmp_path / "q2")
    assert qgroups.pick_dir(cfg, slow, str(tmp_path / "q2")) == str(tmp_path / "slow")
    assert qgroups.pick_dir(cfg, mqueue, str(tmp_path / "slow")) in (str(tmp_path / "q1"), str(tmp_path / "q2"))
    assert qgroups.pick_dir(cfg, mqueue, "/a/test/dir") == "/a/test/dir"  # a context's own directory


def test_store_copies_the_data_file_across_file_systems(tmp_path):
    import tempfile

    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm) here")
    (tmp_path / "main").mkdir()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        cfg = cfg_with(GROUPS.replace("/q/main", f"{tmp_path}/main").replace("/q/bulk", other))
        pieces, _ = qgroups.split(cfg, _entry("<a@h>", "<r@far.test>"), [None, "bulk"])
        first, copied = qgroups.store(cfg, pieces, "the body\n", 0o640, current=str(tmp_path / "main"))
        assert copied.qdir == other and queue.read_body(other, copied.qid) == "the body\n"
        st = os.stat(queue.qf_path(other, copied.qid, "d"))
        assert st.st_nlink == 1 and st.st_mode & 0o777 == 0o640
        assert queue.read(other, copied.qid).recipients == copied.recipients


def test_a_quarantined_message_is_not_split():
    # srvrsmtp.c: split_by_recipient only when not quarantined; it stays whole in its group
    cfg = cfg_with(GROUPS)
    e = _entry("<r@far.test>", "<a@h>", "<s@far.test>", "<t@far.test>")
    e.quarantine = "held by access"
    pieces, lines = qgroups.split(cfg, e, ["slow", None, "bulk", "slow"])
    assert [(p.group.name, len(p.entry.recipients)) for p in pieces] == [("slow", 4)] and not lines


def test_every_stored_piece_is_marked_split_in_sendmails_flag_order(tmp_path):
    # queueup: F line letters w r 8 b d n s; a message that went through split_by_recipient has
    # EF_SPLIT ('s'), as Debian's own qf files show (Fs, Fbs)
    (tmp_path / "main").mkdir()
    (tmp_path / "bulk").mkdir()
    cfg = cfg_with(GROUPS.replace("/q/", f"{tmp_path}/"))
    e = _entry("<a@h>", "<r@far.test>")
    e.flags = "b"
    pieces, _ = qgroups.split(cfg, e, [None, "bulk"])
    for stored in qgroups.store(cfg, pieces, "x\n", 0o600, current=str(tmp_path / "main")):
        text = Path(queue.qf_path(stored.qdir, stored.qid)).read_text()
        assert "\nFbs\n" in text
    assert "\nFwbs\n" in qf.format_entry(Entry("X", flags="bsw"))
