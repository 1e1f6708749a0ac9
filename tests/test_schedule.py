"""mta.delivery.schedule, the queue-group parts of mta.config and mta.metrics, unit by unit."""

from __future__ import annotations

import os
import time

import pytest

from mta import config, errors, metrics, notify, options, qgroups, queue
from mta.delivery import load, schedule
from mta.qf import Entry, Recipient


def cfg_with(text: str = "", tmp_path=None) -> config.Config:
    cfg = config.Config(path="test.cf", macros={"j": "h.test", "w": "h"})
    return config.parse(text, cfg)


def test_should_queue_is_sendmails_formula():
    cfg = cfg_with("O QueueLA=4\nO QueueFactor=600000")
    assert not load.should_queue(cfg, 10**9, la=3)  # below QueueLA: never
    assert load.should_queue(cfg, 600001, la=4)  # 600000 / (4 - 4 + 1)
    assert not load.should_queue(cfg, 600000, la=4)
    assert load.should_queue(cfg, 200001, la=6) and not load.should_queue(cfg, 200000, la=6)
    assert load.refuse_connections(cfg_with("O RefuseLA=2"), la=2)
    assert not load.refuse_connections(cfg_with("O RefuseLA=0"), la=99)
    assert load.delay_seconds(cfg_with("O DelayLA=1"), la=1) == 1
    assert load.delay_seconds(cfg_with(""), la=50) == 0


def _e(qid, rcpts=("<a@x.test>",), sender="<s@y.test>", quarantine=""):
    return Entry(qid, sender=sender, recipients=[Recipient(r) for r in rcpts], quarantine=quarantine)


def test_selection_matches_as_gatherq():
    two = _e("6APNpwaH014792", ("<erin@[127.0.0.2]>", "<dave@example.org>"))
    one = _e("6APNjJuu009633", ("<someone@example.org>",))
    neg = schedule.Selection(recipients=(("example.org", True),))
    assert neg.matches(two) and not neg.matches(one)  # captured `mailq -q!Rexample.org`
    both = schedule.Selection(recipients=(("127", False),), senders=(("bob", False),))
    assert not both.matches(two)  # different letters and'ed
    either = schedule.Selection(ids=(("wa", False), ("Juu", False)))
    assert either.matches(two) and either.matches(one)  # one letter or'ed
    held = schedule.Selection(reasons=(("spam", False),), quarantined=True)
    assert held.matches(_e("X", quarantine="looks like spam")) and not held.matches(_e("X", quarantine="virus"))
    assert held.subset and not schedule.Selection(quarantined=True).subset


def _work(qid, pri=0, ctime=0, mtime=0.0, host="x.test", locked=False):
    e = Entry(qid, priority=pri, ctime=ctime, recipients=[Recipient(f"<u@{host}>")])
    return schedule.Work(e, "/q", mtime, locked)


def test_sort_orders():
    ws = [_work("C", 3, 10, 2.0, "b.test"), _work("A", 1, 30, 3.0, "a.test"), _work("B", 2, 20, 1.0, "a.test")]
    ids = lambda order: [w.entry.qid for w in schedule.sort(ws, order)]  # noqa: E731
    assert ids("priority") == ["A", "B", "C"] and ids("Priority") == ids("p")
    assert ids("host") == ["A", "B", "C"]
    assert ids("filename") == ["A", "B", "C"]
    assert ids("time") == ["C", "B", "A"]
    assert ids("modification") == ["B", "C", "A"]
    assert ids("none") == ["C", "A", "B"]
    assert sorted(ids("random")) == ["A", "B", "C"]
    assert ids("bogus") == ids("priority")


def test_host_order_puts_locked_hosts_last():
    ws = [_work("A1", 1, host="a.test", locked=True), _work("A2", 2, host="a.test"), _work("B", 3, host="b.test")]
    assert [w.entry.qid for w in schedule.sort(ws, "host")] == ["B", "A1", "A2"]


def test_queue_groups_from_q_lines():
    cfg = cfg_with("O QueueDirectory=/var/spool/mqueue/q*\n"
                   "Qslow, Path=/var/spool/mqueue/slow, Flags=f, Runners=3, Nice=5, Interval=1h, Jobs=50, r=10\n")
    slow = cfg.queue_groups["slow"]
    assert (slow.path, slow.flags, slow.runners, slow.nice, slow.interval, slow.jobs, slow.recipients) == (
        "/var/spool/mqueue/slow", "f", 3, 5, 3600, 50, 10)
    assert [g.name for g in qgroups.groups(cfg)] == ["mqueue", "slow"]
    with pytest.raises(errors.ConfigError):
        cfg_with("Qnopath, F=f")


def test_queue_directories_glob(tmp_path):
    for d in ("q1", "q2", "qx"):
        (tmp_path / d).mkdir()
    (tmp_path / "qfile").write_text("")
    (tmp_path / "other").mkdir()
    assert config.queue_directories(f"{tmp_path}/q*") == [str(tmp_path / d) for d in ("q1", "q2", "qx")]
    assert config.queue_directories(str(tmp_path)) == [str(tmp_path)]


def test_timeouts_by_precedence():
    cfg = cfg_with("O Timeout.queuewarn=4h\nO Timeout.queuewarn.urgent=1h\nO Timeout.queuereturn.non-urgent=2d")
    assert cfg.queue_timeout("queuewarn", 100) == 3600
    assert cfg.queue_timeout("queuewarn", 0) == 4 * 3600
    assert cfg.queue_timeout("queuereturn", -60) == 2 * 86400
    assert cfg.queue_timeout("queuereturn", 0) == 5 * 86400
    assert cfg.queue_timeout("queuewarn", 0, dsn=True) == 4 * 3600
    cfg.set_option("Timeout.queuewarn", "2h")  # the plain form sets every class again
    assert cfg.queue_timeout("queuewarn", 100) == 7200
    assert cfg.precedence("bulk") == -60 and cfg.precedence(None) == 0


def test_hf_files_subdirectories_and_lock_restat(tmp_path):
    qdir = str(tmp_path)
    for sub in ("qf", "df", "xf"):
        (tmp_path / sub).mkdir()
    e = Entry(queue.new_id(), ctime=1, sender="<s@x>", recipients=[Recipient("<r@y>")])
    queue.store(qdir, e, "body\n")
    assert os.listdir(tmp_path / "qf") == [f"qf{e.qid}"] and os.listdir(tmp_path / "df") == [f"df{e.qid}"]
    assert queue.set_quarantine(qdir, e.qid, "spam") == ""
    assert os.listdir(tmp_path / "qf") == [f"hf{e.qid}"] and queue.ids(qdir) == [] and queue.ids(qdir, "h") == [e.qid]
    assert "\nqspam\n" in (tmp_path / "qf" / f"hf{e.qid}").read_text()
    assert queue.read(qdir, e.qid).quarantine == "spam"
    assert queue.set_quarantine(qdir, e.qid, "spam") is None  # unchanged
    assert queue.set_quarantine(qdir, e.qid, None) == "spam"
    assert queue.ids(qdir) == [e.qid]
    with queue.lock(qdir, e.qid), pytest.raises(queue.Locked):
        queue.delete(qdir, e.qid)
    queue.delete(qdir, e.qid)
    assert os.listdir(tmp_path / "qf") == [] and os.listdir(tmp_path / "df") == []


def test_metrics_text_format_and_counters(tmp_path):
    qdir = tmp_path / "mqueue"
    qdir.mkdir()
    e = Entry(queue.new_id(), ctime=int(time.time()) - 7200, tries=2, sender="<s@x>", recipients=[Recipient("<r@y>")])
    queue.store(str(qdir), e, "b\n")
    cfg = cfg_with(f"O QueueDirectory={qdir}\nO MetricsFile={tmp_path}/m.prom")
    metrics.after_run(cfg, [str(qdir)], schedule.Tally(delivered=2, deferred=1, latencies=[0.5, 100.0]), 1.5)
    metrics.after_run(cfg, [str(qdir)], schedule.Tally(delivered=1, latencies=[2.0]), 0.2)
    text = (tmp_path / "m.prom").read_text()
    samples = metrics.read_samples(str(tmp_path / "m.prom"))
    assert samples["sendmail_messages_delivered_total"] == 3 and samples["sendmail_queue_runs_total"] == 2
    assert samples['sendmail_delivery_latency_seconds_bucket{le="1"}'] == 1
    assert samples['sendmail_delivery_latency_seconds_bucket{le="5"}'] == 2
    assert samples["sendmail_delivery_latency_seconds_count"] == 3
    assert samples[f'sendmail_queue_messages{{queue="{qdir}",state="deferred"}}'] == 1
    assert samples[f'sendmail_queue_messages_older_than_seconds{{queue="{qdir}",age="3600"}}'] == 1
    assert "# TYPE sendmail_delivery_latency_seconds histogram\n" in text
    assert text.count("# TYPE sendmail_messages_delivered_total") == 1


def test_queue_flags_parse_as_sendmails_main():
    from mta.cli import sendmail as cli

    req = cli.parse(["-q30"])
    assert req.queue_run and req.queue_interval == "30m"  # a bare number is minutes
    req = cli.parse(["-qp"])
    assert req.queue_persistent and req.queue_interval == "1s"
    req = cli.parse(["-qp5m", "-qGslow", "-qQspam", "-q!Rexample.org"])
    assert (req.queue_interval, req.queue_group, req.queue_quarantined) == ("5m", "slow", True)
    assert req.queue_select == [("Q", "spam", False), ("R", "example.org", True)]
    assert cli.parse(["-Qbad mail", "-qIabc"]).quarantining == "bad mail"
    assert cli.parse(["-Q", "-qQ"]).quarantining == ""
    assert cli.parse(["-qI1", "--delete"], prog="mailq").delete
    assert cli.parse(["-qL"]).queue_lost and cli.parse(["-qL"], prog="mailq").queue_lost
    for bad in (["-q!Gslow"], ["-qGa", "-qGb"]):
        with pytest.raises(cli.UsageError):
            cli.parse(bad)


def test_group_interval_is_kept_across_runs(tmp_path):
    group = config.QueueGroup("slow", str(tmp_path), interval=3600)
    assert schedule._due(group) and not schedule._due(group)  # ran now: not again within the hour
    old = time.time() - 7200
    os.utime(tmp_path / ".lastrun", (old, old))
    assert schedule._due(group)


def test_queue_timeouts_now_and_units_as_convtime():
    # convtime: "now" is NOW (return at once, no attempt); a bare number is days for
    # queuereturn and hours for queuewarn (readcf's settimeout units)
    cfg = cfg_with("O Timeout.queuereturn=3\nO Timeout.queuewarn=2\nO Timeout.queuereturn.non-urgent=now")
    assert cfg.queue_timeout("queuereturn", 0) == 3 * 86400
    assert cfg.queue_timeout("queuewarn", 0) == 2 * 3600
    assert cfg.queue_timeout("queuereturn", -60) == options.NOW
    cfg.set_option("Timeout.queuereturn", "NOW")
    assert all(cfg.queue_timeout("queuereturn", p) == options.NOW for p in (-60, 0, 100))
    cfg.set_option("Timeout.queuereturn.urgent", "0")
    assert cfg.queue_timeout("queuereturn", 100) == 0
    assert notify.return_text(options.NOW) == "too long" and notify.return_text(0) == "zero seconds"
    assert notify.return_text(5 * 86400) == "5 days"


def test_lost_entries_are_gathered_only_by_a_lost_selection(tmp_path):
    qdir = str(tmp_path)
    for qid in ("AAAAAAAA000001", "BBBBBBBB000002"):
        queue.store(qdir, Entry(qid, sender="<s@x>", recipients=[Recipient("<a@x>")]), "body\n")
    queue.lose(qdir, "BBBBBBBB000002", "test")
    normal, _ = schedule.gather(None, qdir, schedule.Selection(), run=False)
    lost, _ = schedule.gather(None, qdir, schedule.Selection(lost=True), run=False)
    assert [w.entry.qid for w in normal] == ["AAAAAAAA000001"]
    assert [w.entry.qid for w in lost] == ["BBBBBBBB000002"] and lost[0].entry.lost
    entry = lost[0].entry
    entry.tries = 1
    queue.store(qdir, entry)  # a lost entry rewritten stays lost (queue_letter in QM_LOST)
    assert sorted(os.listdir(qdir)) == ["QfBBBBBBBB000002", "dfAAAAAAAA000001", "dfBBBBBBBB000002",
                                        "qfAAAAAAAA000001"]
    with queue.lock(qdir, "BBBBBBBB000002", lost=True):
        assert queue.read(qdir, "BBBBBBBB000002", lost=True).tries == 1
    with pytest.raises(errors.MTAError):
        queue.delete(qdir, "BBBBBBBB000002")  # only as a lost entry
    queue.delete(qdir, "BBBBBBBB000002", lost=True)
    assert sorted(os.listdir(qdir)) == ["dfAAAAAAAA000001", "qfAAAAAAAA000001"]
