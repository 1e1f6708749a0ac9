"""StatusFile counting in Sendmail's binary format, and mailstats output."""

import os
import subprocess

from mta import stats

from .conftest import BIN


def test_counts_only_when_the_file_exists(tmp_path):
    stats.record(str(tmp_path / "none"), cf=1)
    assert not (tmp_path / "none").exists()


def test_record_and_report(tmp_path):
    p = tmp_path / "statistics"
    p.write_bytes(b"")
    stats.record(str(p), nf={3: 1}, bf={3: 4}, cf=1)
    stats.record(str(p), nt={5: 2}, bt={5: 8}, ct=1)
    out, err, code = stats.report(str(p), {3: "local", 5: "esmtp"})
    lines = out.splitlines()
    assert code == 0 and err == "" and lines[0].startswith("Statistics from ")
    assert lines[1:] == [
        " M   msgsfr  bytes_from   msgsto    bytes_to  msgsrej msgsdis msgsqur  Mailer",
        " 3        1          4K        0          0K        0       0       0  local",
        " 5        0          0K        2          8K        0       0       0  esmtp",
        "=====================================================================",
        " T        1          4K        2          8K        0       0       0",
        " C        1                    1                    0",
    ]
    assert len(p.read_bytes()) == 1448  # struct statistics on x86-64


def test_not_a_statistics_file(tmp_path):
    p = tmp_path / "statistics"
    p.write_bytes(b"x" * 100)
    assert stats.report(str(p), {})[2] == 71


def test_mailstats_command_after_delivery(inst):
    st = inst.root / "statistics"
    st.write_bytes(b"")
    inst.write_cf(f"O StatusFile={st}")
    assert inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: s\n\nx\n").returncode == 0
    r = subprocess.run([str(BIN / "mailstats"), "-C", str(inst.cf), "-P"], capture_output=True, text=True)
    assert r.returncode == 0
    assert " 3        1          1        1          1        0       0       0  local" in r.stdout
    debian = "/opt/debian-sendmail/usr/libexec/sendmail/mailstats"
    if os.path.exists(debian):
        (inst.root / "empty.cf").write_text("")
        d = subprocess.run([debian, "-C", str(inst.root / "empty.cf"), "-f", str(st), "-P"], capture_output=True,
                           text=True)
        theirs = [ln.rstrip() for ln in d.stdout.splitlines()[1:]]  # it knows no mailer names here
        assert theirs == [ln.removesuffix("local").rstrip() for ln in r.stdout.splitlines()[1:]]
