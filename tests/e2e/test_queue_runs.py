"""Queue runs through the installed commands against a real SMTP peer on loopback: every
QueueSortOrder, MaxQueueRunSize, parallel runners, QueueLA, quarantine, delete and requeue,
queue groups with subdirectories, run summaries and the metrics file."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from mta import queue
from mta.message import Header
from mta.qf import Entry, Recipient
from tests.conftest import BIN, free_port, wait_for, wait_port
from tests.smtp_sink import Sink, serve

RUNNING = re.compile(r"^Running (\S+)/(\S+) \(sequence (\d+) of (\d+)\)$", re.M)
QTOOL = "/opt/debian-sendmail/usr/share/sendmail/qtool.pl"


@pytest.fixture
def sink(inst):
    """Everything not local goes to a sink on loopback (the smart host)."""
    box, port = Sink(), free_port()
    server = serve(port, box)
    inst.sink_port = port
    inst.write_cf(_relay(port))
    yield box
    server.shutdown()
    server.server_close()


def _relay(port: int, extra: str = "") -> str:
    return f"DS[127.0.0.1]\nMrelay, P=[IPC], F=mDFMuXa8, A=TCP $h {port}\n{extra}"


def plant(qdir, n: int = 1, *, host: str = "far.test", priority: int = 30000, ctime: int = 0,
          tries: int = 0, last_try: int = 0, subject: str = "", quarantine: str = "",
          sender: str = "<sender@test.example>") -> str:
    """A queue entry written as submit writes it (df, then qf), addressed to user@host."""
    qid = queue.new_id()
    when = ctime or int(time.time()) - 60
    entry = Entry(qid, ctime=when, priority=priority, tries=tries, last_try=last_try,
                  sender=sender, quarantine=quarantine,
                  recipients=[Recipient(f"<user{n}@{host}>", "PFD")],
                  headers=[Header("Subject", subject or f"planted {qid}"), Header("From", "sender@test.example")])
    queue.store(str(qdir), entry, f"body of {qid}\n")
    return qid


def _order(out: str) -> list[str]:
    return [m.group(2) for m in RUNNING.finditer(out)]


def _subjects(box: Sink) -> list[str]:
    return [re.search(rb"Subject: (\S+ \S+)", m.data).group(1).decode() for m in box.messages]


def test_every_queue_sort_order(inst, sink):
    specs = [  # (host, priority, age in seconds)
        ("b.test", 90000, 50), ("a.test", 30000, 10), ("c.test", 60000, 30), ("a.test", 120000, 40)]
    for order in ("priority", "host", "filename", "time", "random", "modification", "none"):
        ids = []
        for n, (host, pri, age) in enumerate(specs):
            ids.append(plant(inst.mqueue, n, host=host, priority=pri, ctime=int(time.time()) - age))
            os.utime(queue.qf_path(str(inst.mqueue), ids[-1]), (time.time() - 100 + n, time.time() - 100 + n))
        listed = [n[2:] for n in os.listdir(inst.mqueue) if n.startswith("qf")]
        r = inst.run("-q", "-v", f"-OQueueSortOrder={order}")
        assert r.returncode == 0, r.stdout
        got = _order(r.stdout.decode())
        want = {
            "priority": [ids[1], ids[2], ids[0], ids[3]],
            "host": [ids[1], ids[3], ids[0], ids[2]],  # tset.a, tset.a, tset.b, tset.c
            "filename": sorted(ids),
            "time": [ids[0], ids[3], ids[2], ids[1]],
            "modification": ids,
            "none": listed,
        }.get(order, sorted(got))
        assert (got if order != "random" else sorted(got)) == (want if order != "random" else sorted(ids)), order
        assert not inst.qfs(), order
    assert len(sink.messages) == 7 * len(specs)


def test_max_queue_run_size(inst, sink):
    ids = [plant(inst.mqueue, n, priority=30000 + n) for n in range(5)]
    r = inst.run("-q", "-v", "-OMaxQueueRunSize=2")
    assert len(_order(r.stdout.decode())) == 2 and len(sink.messages) == 2
    out = inst.run("-bp", "-OMaxQueueRunSize=2").stdout.decode()
    assert f"{inst.mqueue} (3 requests, only 2 printed)" in out and out.count("<user") == 2
    assert len(inst.qfs()) == 3 and set(inst.qfs()) < {f"qf{i}" for i in ids}
    assert "queue run: " in inst.log() and "2 delivered, 0 deferred, 0 bounced, 0 skipped" in inst.log()


def test_two_parallel_runners_never_send_one_message_twice(inst, sink):
    """A group with F=f, R=3 (three runner processes), and two such queue runs at once."""
    sink.delay = 0.03
    inst.write_cf(_relay(inst.sink_port, f"Qmqueue, P={inst.mqueue}, F=f, R=3"))
    for n in range(30):
        plant(inst.mqueue, n, subject=f"msg {n:02d}")
    runs = [subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-q"]) for _ in range(2)]
    for p in runs:
        assert p.wait(timeout=120) == 0
    counts = Counter(_subjects(sink))
    assert len(counts) == 30 and max(counts.values()) == 1, counts
    assert not inst.qfs()
    summaries = re.findall(r"queue run: \S+: (\d+) delivered", inst.log())
    assert len(summaries) == 2 and sum(map(int, summaries)) == 30
    senders = set(re.findall(r"\[(\d+)\]: \w+: to=<user", inst.log()))
    assert len(senders) >= 3, senders  # the runners were separate processes


def test_queue_la_refuses_a_run(inst, sink):
    qid = plant(inst.mqueue)
    la = ["-OQueueLA=0", "-OQueueFactor=1"]  # any load average, even 0, is then too high
    r = inst.run("-q", "-v", *la)
    assert "Skipping queue run -- load average too high" in r.stdout.decode()
    assert "runqueue: Skipping queue run -- load average too high" in inst.log()
    assert inst.qfs() == [f"qf{qid}"] and not sink.messages
    assert f"{qid}X" in inst.run("-bp", *la).stdout.decode()  # mailq marks what the LA would queue
    assert inst.run("-q").returncode == 0 and not inst.qfs() and len(sink.messages) == 1


def test_quarantined_message_is_kept_then_released(inst, sink):
    held, other = plant(inst.mqueue, 1), plant(inst.mqueue, 2)
    r = inst.run("-Qsuspicious attachment", f"-qI{held}", "-v")
    assert f'{held}: Quarantined with "suspicious attachment"' in r.stdout.decode()
    assert os.path.exists(inst.mqueue / f"hf{held}") and inst.qfs() == [f"qf{other}"]
    assert f"{held}: quarantine=suspicious attachment" in inst.log()
    inst.run("-q")
    assert len(sink.messages) == 1 and os.path.exists(inst.mqueue / f"hf{held}")  # kept, not sent
    assert held not in inst.run("-bp").stdout.decode()
    out = inst.run("-bp", "-qQ").stdout.decode()
    assert re.search(rf"^{held} +\d+ ", out, re.M) and "\n     QUARANTINE: suspicious attachment\n" in out
    assert held in inst.run("-bp", "-qQsuspicious").stdout.decode()
    assert held not in inst.run("-bp", "-qQnomatch").stdout.decode()
    r = inst.run("-qQ", "-Q", f"-qI{held}", "-v")  # a bare -Q releases
    assert f'{held}: Removed quarantine of "suspicious attachment"' in r.stdout.decode()
    assert inst.qfs() == [f"qf{held}"] and f"{held}: unquarantine" in inst.log()
    inst.run("-q")
    assert len(sink.messages) == 2 and not os.listdir(inst.mqueue)


def test_quarantine_run_delivers_held_entries(inst, sink):
    qid = plant(inst.mqueue, quarantine="held by admin")
    inst.run("-q")
    assert not sink.messages
    r = inst.run("-qQ", "-v")
    assert qid in r.stdout.decode() and len(sink.messages) == 1 and not os.listdir(inst.mqueue)


def test_quarantine_needs_a_trusted_user(inst, sink):
    qid = plant(inst.mqueue)
    r = inst.run("-Qno", f"-qI{qid}", user="mtabob")
    assert r.returncode == 64 and b"Permission denied (real uid not trusted)" in r.stdout
    assert inst.qfs() == [f"qf{qid}"]


def test_delete_and_requeue(inst, sink):
    gone = plant(inst.mqueue, 1)
    r = inst.run(f"-qI{gone}", "--delete", prog="mailq")
    assert r.returncode == 0 and f"{gone}: deleted" in r.stdout.decode()
    assert not (inst.mqueue / f"df{gone}").exists() and not inst.qfs()
    assert inst.run("--delete", prog="mailq").returncode == 64  # never the whole queue by accident
    young = plant(inst.mqueue, 2, tries=1, last_try=int(time.time()) - 60)
    inst.write_cf(_relay(inst.sink_port, "O MinQueueAge=30m"))
    assert f"{young}-" in inst.run("-bp").stdout.decode()  # too young: '-' after the ID
    inst.run("-q")
    assert not sink.messages and inst.qfs() == [f"qf{young}"]
    assert inst.run("-qf", f"-qI{young}").returncode == 0  # requeue now: a -qI run ignores MinQueueAge
    assert len(sink.messages) == 1 and not inst.qfs()


def test_locked_entry_cannot_be_deleted_or_held(inst, sink):
    qid = plant(inst.mqueue)
    with queue.lock(str(inst.mqueue), qid):
        assert "locked" in inst.run(f"-qI{qid}", "--delete", prog="mailq").stdout.decode()
        assert "Could not lock" in inst.run("-Qx", f"-qI{qid}").stdout.decode()
        assert f"{qid}*" in inst.run("-bp").stdout.decode()
    assert inst.qfs() == [f"qf{qid}"]


@pytest.mark.skipif(not (os.path.exists(QTOOL) and shutil.which("perl")),
                    reason="Debian's qtool.pl (sendmail-base) is not unpacked (scripts/install-test-deps)")
def test_debian_qtool_deletes_and_moves_our_entries(inst, sink):
    qid, moved = plant(inst.mqueue, 1), plant(inst.mqueue, 2)
    r = subprocess.run(["perl", QTOOL, "-C", str(inst.cf), "-d", str(inst.mqueue / f"qf{qid}")],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert not (inst.mqueue / f"qf{qid}").exists() and not (inst.mqueue / f"df{qid}").exists()
    other = inst.root / "omqueue"
    other.mkdir()
    r = subprocess.run(["perl", QTOOL, "-C", str(inst.cf), str(other), str(inst.mqueue / f"qf{moved}")],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (other / f"qf{moved}").exists() and (other / f"df{moved}").exists() and not inst.qfs()
    out = inst.run("-bp", f"-OQueueDirectory={other}").stdout.decode()
    assert moved in out  # what qtool moved is still one of our entries


def test_queue_groups_with_subdirectories(inst, sink):
    base = inst.mqueue
    for q in ("q1", "q2", "slow"):
        for sub in ("qf", "df", "xf"):
            (base / q / sub).mkdir(parents=True)
    inst.write_cf(_relay(inst.sink_port, f"O QueueDirectory={base}/q*\nQslow, P={base}/slow, F=f, R=2, I=1m"))
    for n in range(6):
        assert inst.run("-Am", "-odq", f"user{n}@far.test", stdin=b"Subject: grouped\n\nx\n").returncode == 0
    placed = {q: len(os.listdir(base / q / "qf")) for q in ("q1", "q2")}
    assert sum(placed.values()) == 6 and all(os.listdir(base / q / "df") or not placed[q] for q in placed)
    assert not [n for n in os.listdir(base / "q1") if n not in ("qf", "df", "xf")]  # nothing beside them
    slow = [plant(base / "slow", 10 + n) for n in range(3)]
    assert sorted(os.listdir(base / "slow" / "qf")) == sorted(f"qf{i}" for i in slow)
    out = inst.run("-bp").stdout.decode()
    for q in ("q1", "q2", "slow"):
        if q == "slow" or placed[q]:
            assert f"\t\t{base}/{q}/df (" in out  # Sendmail's qid_printqueue adds /df
    assert "\t\tTotal requests: 9\n" in out
    r = inst.run("-qGslow", "-v")
    assert sorted(_order(r.stdout.decode())) == sorted(slow) and len(sink.messages) == 3
    assert not os.listdir(base / "slow" / "qf") and not os.listdir(base / "slow" / "df")
    inst.run("-q")
    assert len(sink.messages) == 9 and all(not os.listdir(base / q / "qf") for q in ("q1", "q2"))
    assert "Queue group nosuch unknown" in inst.run("-qGnosuch").stdout.decode()


def test_summary_progress_and_metrics(inst, sink):
    metrics = inst.root / "log" / "sendmail.prom"
    sink.refuse.add("user1@far.test")
    inst.write_cf(_relay(inst.sink_port, f"O MetricsFile={metrics}"))
    for n in range(3):
        plant(inst.mqueue, n)
    held = plant(inst.mqueue, 9, quarantine="spam")
    r = inst.run("-q", "-v")
    assert re.search(r"^Queue run: 2 delivered, 0 deferred, 1 bounced, 0 skipped, [\d.]+ seconds$",
                     r.stdout.decode(), re.M), r.stdout
    assert re.search(rf"queue run: {inst.mqueue}: 2 delivered, 0 deferred, 1 bounced", inst.log())
    text = metrics.read_text()
    assert "# TYPE sendmail_messages_delivered_total counter\nsendmail_messages_delivered_total 2\n" in text
    assert "sendmail_messages_bounced_total 1\n" in text
    assert f'sendmail_queue_messages{{queue="{inst.mqueue}",state="quarantined"}} 1\n' in text
    assert 'sendmail_delivery_latency_seconds_bucket{le="+Inf"} 2\n' in text
    plant(inst.mqueue, 5)
    inst.run("-q")
    text = metrics.read_text()
    assert "sendmail_messages_delivered_total 3\n" in text and "sendmail_queue_runs_total 2\n" in text
    assert held in " ".join(os.listdir(inst.mqueue))


def test_daemon_queue_runs_log_a_summary(inst, sink):
    plant(inst.mqueue, 1)
    inst.write_cf(_relay(inst.sink_port, f"O PidFile={inst.root}/sm.pid"))
    d = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-bD", "-q2s"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: "queue run: " in inst.log() and len(sink.messages) == 1, 30), inst.log()
        assert "1 delivered, 0 deferred" in inst.log()
    finally:
        d.terminate()
        d.wait(timeout=20)


def test_queuewarn_and_queuereturn_by_precedence(inst):
    """Timeout.queuewarn.urgent warns only the urgent message; .non-urgent returns only bulk."""
    inst.write_cf(_relay(free_port()))  # nothing listens: every attempt is deferred
    urgent, normal, bulk = (plant(inst.mqueue, n, subject=f"{what} one", ctime=int(time.time()) - 30, sender="root")
                            for n, what in enumerate(("urgent", "normal", "bulk")))
    for qid, prec in ((urgent, "special-delivery"), (bulk, "bulk")):
        e = queue.read(str(inst.mqueue), qid)
        e.headers.append(Header("Precedence", prec))
        queue.store(str(inst.mqueue), e)
    assert inst.run("-q", "-OTimeout.queuewarn.urgent=10s", "-OTimeout.queuereturn.non-urgent=10s").returncode == 0
    root = inst.mbox("root").decode()
    assert root.count("Subject: Warning: could not send message for past 10 seconds") == 1
    assert root.count("Subject: Returned mail: see transcript for details") == 1
    assert "Cannot send message for 10 seconds" in root
    assert sorted(inst.qfs()) == sorted([f"qf{urgent}", f"qf{normal}"])


def test_queue_la_queues_instead_of_delivering(inst, sink):
    la = ["-OQueueLA=0", "-OQueueFactor=1"]
    r = inst.run("-Am", "-odi", *la, "someone@far.test", stdin=b"Subject: later\n\nx\n")
    assert r.returncode == 0 and len(inst.qfs()) == 1 and not sink.messages
    assert inst.run("-q").returncode == 0 and len(sink.messages) == 1 and not inst.qfs()


def test_checkpoint_interval_keeps_a_crash_from_resending(inst, users):
    """CheckpointInterval=1: killed (-9) while the third recipient runs, the run resends only it."""
    with open(inst.etc / "aliases", "a") as fh:
        fh.write(f'slow: "|/bin/sh -c \'cat >> {inst.root}/out/slow; test -e {inst.root}/out/started || '
                 f'{{ touch {inst.root}/out/started; sleep 30; }}\'"\n')
    assert inst.run("-bi").returncode == 0
    inst.write_cf("O CheckpointInterval=1")
    r = inst.run("-Am", "-odq", "mtaalice", "mtabob", "slow", stdin=b"Subject: listed\n\nx\n")
    assert r.returncode == 0 and len(inst.qfs()) == 1
    qf = inst.mqueue / inst.qfs()[0]
    run = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-q"], start_new_session=True)
    try:
        assert wait_for(lambda: (inst.root / "out" / "started").exists(), 30)
        text = qf.read_text("latin-1")
        assert "RPFD:slow\n" in text and "mtaalice" not in text and "mtabob" not in text, text
        assert f"{qf.name[2:]}*" in inst.run("-bp").stdout.decode()  # the rewritten qf is locked too
    finally:
        os.killpg(run.pid, 9)
        run.wait(timeout=10)
    assert inst.mbox("mtaalice").count(b"Subject: listed") == 1
    assert inst.run("-q", timeout=60).returncode == 0 and not inst.qfs()
    assert inst.mbox("mtaalice").count(b"Subject: listed") == 1  # not sent again
    assert inst.mbox("mtabob").count(b"Subject: listed") == 1
    assert (inst.root / "out" / "slow").read_text().count("Subject: listed") == 2  # the one in flight


def test_persistent_runner_keeps_running(inst, sink):
    """-qp1s: a runner in the background that runs, sleeps, and runs again (at least 5 s idle)."""
    plant(inst.mqueue, 1)
    assert inst.run("-qp1s").returncode == 0  # detaches at once
    pid = 0
    try:
        assert wait_for(lambda: re.search(r"\[(\d+)\]: starting daemon \([^)]*\): persistent queueing@00:00:01",
                                          inst.log()), 20), inst.log()
        pid = int(re.search(r"\[(\d+)\]: starting daemon \([^)]*\): persistent", inst.log()).group(1))
        assert wait_for(lambda: len(sink.messages) == 1, 20)
        plant(inst.mqueue, 2)
        assert wait_for(lambda: len(sink.messages) == 2 and not inst.qfs(), 20)  # the qf goes after the 250
        assert wait_for(lambda: len(re.findall(r"queue run: ", inst.log())) >= 2, 20), inst.log()
    finally:
        if pid:
            os.kill(pid, 15)


@pytest.mark.parametrize("flag", ["-q1h", "-qp1h"])
def test_a_queue_runner_daemon_writes_the_pid_file(inst, flag):
    """sendmail -q15m and -qp (no -bd) write PidFile, as Sendmail's main() does for its queue
    runner ("Write the pid to file"): Debian's init script finds a separate MTA or MSP queue
    runner by it (submit.cf's PidFile is /run/sendmail/msp/sendmail.pid)."""
    pidfile = inst.root / "runner.pid"
    inst.write_cf(f"O PidFile={pidfile}")
    assert inst.run(flag).returncode == 0  # detaches at once
    started = r"\[(\d+)\]: starting daemon \("
    assert wait_for(lambda: re.search(started, inst.log()), 20), inst.log()
    runner = int(re.search(started, inst.log()).group(1))
    try:
        assert wait_for(lambda: pidfile.exists() and len(pidfile.read_text().splitlines()) == 2, 5), inst.log()
        first, command = pidfile.read_text().splitlines()
        assert int(first) == runner
        assert command.endswith(f"-C {inst.cf} {flag}")
    finally:
        os.kill(runner, 15)


@pytest.mark.parametrize("flag", ["-q1h", "-qp1h"])
def test_sighup_reloads_a_queue_runner_daemon(inst, flag):
    """Debian's init script's reload sends SIGHUP to the queue runners it finds by pid file: the
    runner must read its config again and run, not die (SIGHUP's default)."""
    inst.write_cf(f"O PidFile={inst.root / 'runner.pid'}")
    assert inst.run(flag).returncode == 0  # detaches at once
    started = r"\[(\d+)\]: starting daemon \("
    assert wait_for(lambda: re.search(started, inst.log()) and "queue run: " in inst.log(), 20), inst.log()
    runner = int(re.search(started, inst.log()).group(1))
    try:
        runs = inst.log().count("queue run: ")
        os.kill(runner, signal.SIGHUP)
        assert wait_for(lambda: "restarting on SIGHUP: configuration re-read" in inst.log(), 10), inst.log()
        assert wait_for(lambda: inst.log().count("queue run: ") > runs, 10), inst.log()  # and runs now
        assert Path(f"/proc/{runner}").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(runner, signal.SIGTERM)


DEBIAN_SENDMAIL = "/opt/debian-sendmail/usr/libexec/sendmail/sendmail"
DEBIAN_CF = Path(__file__).resolve().parent.parent / "data" / "debian" / "sendmail.cf"


def _debian_bp(tmp: Path, qdir: Path, *args: str) -> str:
    """Debian's own sendmail -bp on qdir, with Debian's cf pointed there (in a UTS namespace with
    a qualified host name: on a host called just 'vm' it sleeps a minute at start)."""
    text = re.sub(r"(?m)^O (QueueDirectory|StatusFile|TrustedUser|PidFile)=.*$", "", DEBIAN_CF.read_text())
    text = re.sub(r"(?m)^Fw/etc/mail/local-host-names.*$", "Cwbench.example", text)
    cf = tmp / "debian.cf"
    cf.write_text(text + f"O QueueDirectory={qdir}\nO QueueLA=1000\n")
    script = f"hostname bench.example && exec {DEBIAN_SENDMAIL} -C {cf} -bp {' '.join(args)}"
    r = subprocess.run(["unshare", "--uts", "sh", "-c", script], capture_output=True, timeout=60,
                       env={**os.environ, "TZ": "UTC"})
    return r.stdout.decode()


def _debian_runs() -> bool:
    if not os.path.exists(DEBIAN_SENDMAIL) or os.geteuid() != 0:
        return False
    libs = subprocess.run(["ldd", DEBIAN_SENDMAIL], capture_output=True, text=True, timeout=30)
    return libs.returncode == 0 and "not found" not in libs.stdout  # libwrap0 (install-test-deps)


@pytest.mark.skipif(not _debian_runs(), reason="Debian's sendmail is not unpacked or cannot run (install-test-deps)")
def test_mailq_of_held_entries_and_subdirectories_is_debians(inst):
    """Our listing of quarantined entries, in a queue with qf/ df/ xf/, byte for byte as Debian's."""
    qdir = inst.root / "q2"
    for sub in ("qf", "df", "xf"):
        (qdir / sub).mkdir(parents=True)
    plant(qdir, 0, quarantine="suspicious attachment")
    plant(qdir, 1)
    held = plant(qdir, 2, quarantine="held by admin")
    e = queue.read(str(qdir), held)
    e.status, e.bodytype, e.tries, e.last_try = "Deferred: Connection refused by [127.0.0.2]", "8BITMIME", 1, 1
    e.recipients[0].status = e.status
    queue.store(str(qdir), e)
    for args in ([], ["-qQ"], ["-qQ", "-v"], ["-v"]):
        ours = inst.run("-bp", f"-OQueueDirectory={qdir}", *args).stdout.decode()
        assert ours == _debian_bp(inst.root, qdir, *args), args
        assert f"\t\t{qdir}/df (" in ours and ("QUARANTINE: held by admin" in ours) == ("-qQ" in args)


def _grouped_cf(inst, extra: str = "") -> Path:
    """The sink's relay mailer queues in group 'remote' (Q=), which holds 2 recipients an entry."""
    remote = inst.mqueue / "remote"
    remote.mkdir(exist_ok=True)
    inst.write_cf(f"DS[127.0.0.1]\nQremote, P={remote}, r=2\n"
                  f"Mrelay, P=[IPC], F=mDFMuXa8, Q=remote, A=TCP $h {inst.sink_port}\n{extra}")
    return remote


def _qfs(qdir: Path) -> list[str]:
    return sorted(n[2:] for n in os.listdir(qdir) if n.startswith("qf"))


def test_command_line_submission_is_split_by_queue_group_and_recipients(inst, sink):
    remote = _grouped_cf(inst)
    rcpts = ["mtaalice", "user1@far.test", "user2@far.test", "user3@far.test"]
    r = inst.run("-odq", *rcpts, stdin=b"Subject: split\n\nthe body\n")
    assert r.returncode == 0, r
    (home,), there = _qfs(inst.mqueue), _qfs(remote)
    assert len(there) == 2 and home not in there
    assert [r.addr for r in queue.read(str(inst.mqueue), home).recipients] == ["mtaalice"]
    assert sorted(len(queue.read(str(remote), q).recipients) for q in there) == [1, 2]
    dfs = [os.stat(queue.qf_path(str(remote), q, "d")) for q in there]
    assert {d.st_ino for d in dfs} == {os.stat(queue.qf_path(str(inst.mqueue), home, "d")).st_ino}
    log = inst.log()
    assert f"{home}: split: count=1, id={there[0]}" in log or f"{home}: split: count=1, id={there[1]}" in log
    assert re.search(r": split: maxrcpts=2, rcpts=3, count=1, id=\S+", log)
    listed = inst.run("-bp").stdout.decode()
    assert f"\t\t{inst.mqueue} (1 request)\n" in listed and f"\t\t{remote} (2 requests)\n" in listed
    assert "\t\tTotal requests: 3\n" in listed
    assert inst.run("-q").returncode == 0
    assert sorted(len(m.recipients) for m in sink.messages) == [1, 2]
    assert inst.mbox("mtaalice").count(b"Subject: split") == 1
    assert not _qfs(inst.mqueue) and not _qfs(remote) and not os.listdir(remote)
    inst.run("-q")
    assert len(sink.messages) == 2  # each entry delivered once


def test_daemon_submission_is_split_by_queue_group(inst, sink):
    import smtplib

    remote = _grouped_cf(inst, f"O PidFile={inst.root}/sm.pid\nO DeliveryMode=q")
    d = subprocess.Popen([str(BIN / "sendmail"), "-C", str(inst.cf), "-bD"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(inst.port, seconds=20)
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
            refused = s.sendmail("sender@test.example", ["mtabob@test.example", "u1@far.test", "u2@far.test",
                                                         "u3@far.test", "u4@far.test", "u5@far.test"],
                                 b"Subject: smtp split\r\n\r\nbody\r\n")
        assert refused == {}
    finally:
        d.terminate()
        d.wait(timeout=20)
    assert len(_qfs(inst.mqueue)) == 1 and len(_qfs(remote)) == 3
    assert inst.run("-q").returncode == 0
    assert sorted(len(m.recipients) for m in sink.messages) == [1, 2, 2]
    assert inst.mbox("mtabob").count(b"Subject: smtp split") == 1



def test_queuereturn_now_returns_without_trying(inst, sink):
    """op.me: "now" for Timeout.queuereturn returns entries at once during a queue run, without a
    delivery attempt (deliver.c sendall); the DSN it sends is delivered as any other."""
    qid = plant(inst.mqueue, 1, sender="root", subject="bounce me")
    assert inst.run("-q", "-OTimeout.queuereturn=now").returncode == 0
    assert not sink.messages and not inst.qfs()
    root = inst.mbox("root").decode()
    assert root.count("Subject: Returned mail: see transcript for details") == 1
    assert "Cannot send message for too long" in root and "planted" not in root.split("\n\n")[0]
    assert re.search(rf"{qid}: \S+: DSN: Cannot send message for too long", inst.log())


def test_queuereturn_by_precedence_now_and_zero(inst):
    """.non-urgent=now returns only the bulk entry, untried; =0 returns at the first deferral."""
    inst.write_cf(_relay(free_port()))  # nothing listens: every attempt is deferred
    bulk, normal = (plant(inst.mqueue, n, subject=f"{what} one", sender="root")
                    for n, what in enumerate(("bulk", "normal")))
    e = queue.read(str(inst.mqueue), bulk)
    e.headers.append(Header("Precedence", "bulk"))
    queue.store(str(inst.mqueue), e)
    assert inst.run("-q", "-OTimeout.queuereturn.non-urgent=now").returncode == 0
    assert inst.qfs() == [f"qf{normal}"] and queue.read(str(inst.mqueue), normal).tries == 1
    assert "to=<user0@far.test>" not in inst.log()  # the bulk entry was never tried
    assert inst.run("-q", "-OTimeout.queuereturn=0").returncode == 0
    assert not inst.qfs()
    root = inst.mbox("root").decode()
    assert "Cannot send message for too long" in root and "Cannot send message for zero seconds" in root


def test_lost_items_are_listed_and_run_only_with_qL(inst, sink):
    """-qL (main.c QM_LOST): runs and listings work on the Qf files a run set aside, marked '?'
    by mailq; an entry a -qL run defers stays lost (queue_letter), one it delivers is gone."""
    qid, kept = plant(inst.mqueue, 1, subject="lost one"), plant(inst.mqueue, 2, subject="normal one")
    df = Path(queue.qf_path(str(inst.mqueue), qid, "d"))
    body = df.read_bytes()
    df.unlink()
    assert inst.run("-q").returncode == 0  # a qf without its df is lost (Qf)
    assert f"Losing {inst.mqueue}/qf{qid}: data file missing" in inst.log()
    assert len(sink.messages) == 1 and os.path.exists(queue.qf_path(str(inst.mqueue), qid, "Q"))
    df.write_bytes(body)  # the admin puts the data file back
    assert f"{inst.mqueue} is empty" in inst.run("-bp").stdout.decode()
    listed = inst.run("-bp", "-qL").stdout.decode()
    assert f"\t\t{inst.mqueue} (1 request)\n" in listed and re.search(rf"^{qid}\?\s+\d+ ", listed, re.M), listed
    assert kept not in listed
    inst.write_cf(_relay(free_port()))  # nothing listens: the -qL run defers it
    assert inst.run("-qL").returncode == 0
    assert queue.read(str(inst.mqueue), qid, lost=True).qid == qid and not inst.qfs()
    inst.write_cf(_relay(inst.sink_port))
    assert inst.run("-q").returncode == 0 and len(sink.messages) == 1  # a normal run leaves it
    other = plant(inst.mqueue, 3)
    queue.lose(str(inst.mqueue), other, "test")
    r = inst.run("--delete", "-qL", f"-qI{other}", prog="mailq")
    assert f"{other}: deleted" in r.stdout.decode() and not [n for n in os.listdir(inst.mqueue) if other in n]
    assert inst.run("-qL", "-v").returncode == 0
    assert _subjects(sink)[-1] == "lost one" and len(sink.messages) == 2
    assert not [n for n in os.listdir(inst.mqueue) if qid in n]
