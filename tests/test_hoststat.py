import os

from mta import hoststat


def test_record_report_purge(tmp_path):
    root = str(tmp_path / "hs")
    hoststat.record(root, "mx.Example.com", exitstat=75, status="4.4.1",
                    reply="Deferred: Connection refused by mx.example.com.")
    hoststat.record(root, "[127.0.0.3]", exitstat=0, status="2.0.0")
    assert os.path.exists(os.path.join(root, "com.", "example.", "mx"))
    lines = hoststat.report(root).splitlines()
    assert lines[0] == " -------------- Hostname --------------- How long ago ---------Results---------"
    assert sorted(ln[:53] for ln in lines[1:]) == [" [127.0.0.3]" + " " * 33 + "00:00:00",
                                                   " mx.example.com" + " " * 30 + "00:00:00"]
    assert any(ln.endswith("Deferred: Connection refu") for ln in lines)  # cut to 25 without -v
    assert any(ln.endswith(" OK") for ln in lines)
    assert hoststat.purge(root, 3600) == 0 and hoststat.purge(root, 0) == 2
    assert hoststat.report(root) == ""


def test_hoststat_command_after_a_deferral(inst):
    hs = inst.root / "hoststat"
    inst.write_cf(f"Mesmtp, P=[IPC], F=mDFMuXa, A=TCP $h {inst.port}\nO HostStatusDirectory={hs}")
    inst.run("-Am", "-odi", "x@[127.0.0.3]", stdin=b"Subject: s\n\nx\n")
    out = inst.run(prog="hoststat").stdout.decode()
    assert "[127.0.0.3]" in out and "Deferred: Connection refu" in out
    assert inst.run("-bH", "-O", "Timeout.hoststatus=0").returncode == 0
    assert inst.run("-bh").stdout == b""


def test_single_thread_lock_is_held_by_one_holder(tmp_path):
    first = hoststat.lock(str(tmp_path), "mx.example.com")
    assert first is not None and hoststat.lock(str(tmp_path), "mx.example.com") is None
    assert hoststat.report(str(tmp_path)) == ""  # the lock file is not a status
    first.close()
    again = hoststat.lock(str(tmp_path), "mx.example.com")
    assert again is not None
    again.close()


def test_status_reads_back_what_record_wrote(tmp_path):
    hoststat.record(str(tmp_path), "mx.example.com", exitstat=75, status="4.4.1", reply="Deferred: refused")
    st = hoststat.status(str(tmp_path), "mx.example.com")
    assert (st.exitstat, st.status, st.reply) == (75, "4.4.1", "Deferred: refused") and st.when > 0
    assert hoststat.status(str(tmp_path), "other.example.com") is None
