"""The migration report (mta/check.py, `sendmail-py check`) on Debian's generated /etc/mail."""

from __future__ import annotations

import subprocess

from mta import check, config, options
from tests.conftest import BIN, DATA

CF = str(DATA / "debian" / "sendmail.cf")


def _verdicts(text: str) -> dict[str, str]:
    lines = text.splitlines()
    return {lines[i].split(": ", 1)[1]: lines[i + 1].strip() for i in range(0, len(lines) - 1, 2)}


def test_each_feature_option_map_and_mailer_gets_one_verdict():
    text, missing = check.report(CF)
    v = _verdicts(text)
    assert v["FEATURE(`use_cw_file')"].startswith("honoured: class w")
    assert v["FEATURE(`delay_checks', `friend', `n')"].startswith("honoured: sender checks")
    assert v["Kresolve host -a<OKR> -T<TEMP>"].startswith("honoured differently: check_mail's sender domain")
    assert v["FEATURE(`greet_pause', `1000')"].startswith("honoured differently: GreetPause:")
    cfg = config.load(CF)
    ignored = next(n for n in cfg.options if check.option_verdict(n)[0] == check.MISSING)
    assert [k for k, verdict in v.items() if k.startswith(f"O {ignored}=")] and all(
        verdict == "not implemented: read and ignored" for k, verdict in v.items() if k.startswith(f"O {ignored}="))
    assert v["O QueueDirectory=/var/spool/mqueue"] == "honoured"
    assert v["O Timeout.ident=5s"] == check.option_verdict("Timeout.ident")[0] + (
        ": read and ignored" if "Timeout.ident" not in options.OPTIONS else "")
    assert v["Kaccess hash -T<TMPF> /etc/mail/access"] == "honoured: the access map (policy)"
    assert v["Karith arith"].startswith("honoured differently: not used")
    local = next(verdict for k, verdict in v.items() if k.startswith("Mlocal,"))
    assert local.startswith("honoured: runs /usr/sbin/sensible-mda with A=sensible-mda $g $u $h"), local
    assert any(k.startswith("Mrelay,") for k in v)
    assert missing == sum(1 for line in v.values() if line.startswith("not implemented"))
    assert text.splitlines()[-1].endswith(f", {missing} not implemented")


def test_unknown_option_name_is_named():
    assert check.option_verdict("NoSuchOption") == (check.MISSING, "unknown option name")
    assert check.option_verdict("AliasFile") == (check.HONOURED, "")


def test_unimplemented_options_are_the_missing_ones_once():
    cfg = config.load(CF)
    names = check.unimplemented_options(cfg)
    assert names and "AliasFile" not in names and len(names) == len(set(names))
    assert all(check.option_verdict(n)[0] == check.MISSING for n in names)


def test_command_exit_status_and_missing_file(tmp_path):
    r = subprocess.run([str(BIN / "sendmail-py"), "check", "-C", CF], capture_output=True, text=True)
    assert r.returncode == 1 and "sendmail.mc:" in r.stdout and "not implemented" in r.stdout
    good = tmp_path / "sendmail.cf"
    good.write_text("O QueueDirectory=/var/spool/mqueue\nMrelay, P=[IPC], F=mDFMuXa8, A=TCP $h\n")
    r = subprocess.run([str(BIN / "sendmail-py"), "check", "-C", str(good)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.endswith("2 honoured, 0 honoured differently, 0 not implemented\n")
    r = subprocess.run([str(BIN / "sendmail-py"), "check", "-C", str(tmp_path / "none.cf")],
                       capture_output=True, text=True)
    assert r.returncode == 78 and "No such file" in r.stderr


def test_queue_groups_and_mailer_queues_get_verdicts(tmp_path):
    cf = tmp_path / "sendmail.cf"
    cf.write_text("Qslow, P=/var/spool/mqueue/slow, r=10\n"
                  "Mesmtp, P=[IPC], F=mDFMuXa, Q=slow, A=TCP $h\n"
                  "Mrelay, P=[IPC], F=mDFMuXa8, Q=nosuch, A=TCP $h\n")
    (tmp_path / "sendmail.mc").write_text("FEATURE(`queuegroup')dnl\n")
    v = _verdicts(check.report(str(cf))[0])
    assert v["Qslow, P=/var/spool/mqueue/slow, r=10"].startswith("honoured: queue group")
    assert v["FEATURE(`queuegroup')"].startswith("not implemented: the queuegroup rule set")
    assert v["Mesmtp, P=[IPC], F=mDFMuXa, Q=slow, A=TCP $h"].startswith("honoured: SMTP")
    assert v["Mrelay, P=[IPC], F=mDFMuXa8, Q=nosuch, A=TCP $h"] == (
        "not implemented: Q=nosuch names no queue group (readcf: mailer relay: unknown queue nosuch); "
        "its recipients stay in the message's group")
