"""End to end through the installed `sendmail`, `mailq` and `newaliases` commands."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time

from tests.smtp_sink import Sink, serve

DATE = r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d GMT"
QID = r"[0-9A-Za-z]{8}\d{6}"
CTIME = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"


def test_mta_mode_mbox_bytes_and_log(inst, users):
    msg = b"Subject: first\n\nline one\nFrom the start\n>From quoted\n.\nafter the dot\n"
    r = inst.run("-Am", "-odi", "-oi", "-f", "sender@example.test", "mtaalice", stdin=msg)
    assert r.returncode == 0, r.stdout + r.stderr
    got = inst.mbox("mtaalice").decode()
    want = (
        rf"From sender@example\.test {CTIME}\n"
        r"Return-Path: <sender@example\.test>\n"
        r"Received: \(from root@localhost\)\n"
        rf"\tby test\.example \(8\.18\.1/8\.18\.1\) id (?P<qid>{QID})\n"
        rf"\tfor mtaalice; {DATE}\n"
        rf"Date: {DATE}\n"
        r"From: sender@example\.test\n"
        r"Message-Id: <\d{12}\.(?P=qid)@test\.example>\n"
        r"Subject: first\n"
        r"\n"
        r"line one\n>From the start\n>From quoted\n\.\nafter the dot\n\n"
    )
    m = re.fullmatch(want, got)
    assert m, got
    qid = m.group("qid")
    box = os.stat(inst.mail / "mtaalice")
    assert box.st_uid == users["mtaalice"].pw_uid and stat.S_IMODE(box.st_mode) == 0o600
    log = inst.log()
    assert re.search(rf" sendmail\[\d+\]: {qid}: from=<sender@example\.test>, size=\d+, class=0, nrcpts=1, "
                     rf"msgid=<\d{{12}}\.{qid}@test\.example>, relay=root@localhost\n", log), log
    assert re.search(rf" sendmail\[\d+\]: {qid}: to=mtaalice, ctladdr=<sender@example\.test> \(0/0\), "
                     r"delay=00:00:0\d, xdelay=00:00:0\d, mailer=local, pri=30\d+, dsn=2\.0\.0, stat=Sent\n", log), log
    assert not inst.qfs()


def test_dot_ends_input_without_i(inst):
    inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: dots\n\nbefore\n.\nlost\n")
    box = inst.mbox("mtaalice")
    assert b"before\n" in box and b"lost" not in box


def test_t_with_bcc(inst):
    r = inst.run("-Am", "-odi", "-t", stdin=b"To: mtaalice\nBcc: mtabob\nSubject: bcc test\n\nx\n")
    assert r.returncode == 0, r.stdout
    for user in ("mtaalice", "mtabob"):
        box = inst.mbox(user)
        assert b"Subject: bcc test" in box and b"Bcc:" not in box and b"mtabob" not in box.split(b"\n\n")[0][-200:]


def test_no_recipients(inst):
    r = inst.run("-Am", stdin=b"Subject: x\n\nx\n")
    assert (r.returncode, r.stdout) == (64, b"Recipient names must be specified\n")
    r = inst.run("-Am", "-t", stdin=b"Subject: x\n\nx\n")
    assert r.stdout == b"No recipient addresses found in header\n"


def test_unknown_user_prints_exits_67_and_bounces(inst):
    r = inst.run("-Am", "-odi", "nosuchuser", stdin=b"Subject: nouser\n\nbody\n")
    assert (r.returncode, r.stdout) == (67, b"nosuchuser... User unknown\n")
    root_box = inst.mbox("root").decode()
    assert "Subject: Returned mail: see transcript for details" in root_box
    assert "550 5.1.1 nosuchuser... User unknown" in root_box
    assert "Final-Recipient: RFC822; nosuchuser@test.example" in root_box
    assert "Subject: nouser" in root_box
    assert re.search(r"DSN: User unknown", inst.log())


def test_aliases_include_prog_file_and_loops(inst):
    assert inst.run("-bi").returncode == 0
    for rcpt in ("team", "inc", "pipe", "tofile", "loopa"):
        r = inst.run("-Am", "-odi", rcpt, stdin=f"Subject: to {rcpt}\n\nbody\n".encode())
        assert r.returncode in (0, 67), (rcpt, r.stdout)
    assert inst.mbox("mtaalice").count(b"Subject: to ") == 2  # team, inc
    assert b"Subject: to pipe" in (inst.root / "out" / "piped").read_bytes()
    assert b"Subject: to tofile" in (inst.root / "out" / "filed").read_bytes()


def test_prog_and_file_never_from_outside(inst):
    r = inst.run("-Am", "-odi", f"|touch {inst.root}/pwned", stdin=b"x\n")
    r2 = inst.run("-Am", "-odi", f"{inst.root}/written", stdin=b"x\n")
    assert r.returncode != 0 and r2.returncode != 0
    assert not (inst.root / "pwned").exists() and not (inst.root / "written").exists()


def test_newaliases_summary(inst):
    r = inst.run(prog="newaliases")
    path = inst.etc / "aliases"
    assert r.returncode == 0
    assert re.fullmatch(rf"{re.escape(str(path))}: 9 aliases, longest \d+ bytes, \d+ bytes total\n", r.stdout.decode())


def test_verify(inst):
    inst.run("-bi")
    r = inst.run("-bv", "mtaalice", "nosuch", "someone@example.org", "pipe", "carol@[127.0.0.2]")
    assert r.returncode == 67
    assert r.stdout.decode().splitlines() == [
        "nosuch... User unknown",
        "mtaalice... deliverable: mailer local, user mtaalice",
        "someone@example.org... deliverable: mailer esmtp, host example.org, user someone@example.org",
        f"|cat > {inst.root}/out/piped... deliverable: mailer prog, user |cat > {inst.root}/out/piped",
        "carol@[127.0.0.2]... deliverable: mailer esmtp, host [127.0.0.2], user carol@[127.0.0.2]",
    ]


def test_queue_only_then_queue_run(inst):
    r = inst.run("-Am", "-odq", "mtabob", stdin=b"Subject: queued\n\nq\n")
    assert r.returncode == 0 and len(inst.qfs()) == 1
    qid = inst.qfs()[0][2:]
    out = inst.run("-bp").stdout.decode()
    assert re.fullmatch(
        rf"\t\t{re.escape(str(inst.mqueue))} \(1 request\)\n"
        r"-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n"
        rf"{qid}        2 \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d root\n"
        r"\t\t\t\t\t mtabob\n"
        r"\t\tTotal requests: 1\n", out), out
    assert inst.run("-qRnomatch").returncode == 0 and len(inst.qfs()) == 1
    assert inst.run("-qRmtabob").returncode == 0
    assert b"Subject: queued" in inst.mbox("mtabob") and not inst.qfs()
    assert inst.run("-bp").stdout.decode() == f"{inst.mqueue} is empty\n\t\tTotal requests: 0\n"


def test_msp_held_then_delivered(inst):
    port = inst.port
    r = inst.run("-t", cf=inst.submit, stdin=b"To: mtaalice\nSubject: msp held\n\nm\n")
    assert r.returncode == 0 and len(inst.qfs(client=True)) == 1, r.stdout
    qid = inst.qfs(client=True)[0][2:]
    out = inst.run(prog="mailq").stdout.decode()
    assert re.fullmatch(
        r"MSP Queue status...\n"
        rf"\t\t{re.escape(str(inst.mqueue_client))} \(1 request\)\n"
        r"-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n"
        rf"{qid}        2 \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d root\n"
        r"                 \(Deferred: Connection refused by \[127\.0\.0\.1\]\)\n"
        r"\t\t\t\t\t mtaalice\n"
        r"\t\tTotal requests: 1\n"
        r"MTA Queue status...\n"
        rf"{re.escape(str(inst.mqueue))} is empty\n"
        r"\t\tTotal requests: 0\n", out), out
    msp = out.partition("MTA Queue status...\n")[0]  # -Ac: the MSP queue in both sections, as Debian's wrapper
    assert inst.run("-Ac", prog="mailq").stdout.decode() == msp + "MTA" + msp.removeprefix("MSP")
    doc = json.loads(inst.run("--json", prog="mailq").stdout)
    assert doc[0]["queue"] == "MSP" and doc[0]["entries"][0]["id"] == qid
    assert doc[0]["entries"][0]["recipients"][0]["status"].startswith("Deferred: Connection refused")
    log = inst.log()
    assert re.search(rf"sendmail\[\d+\]: {qid}: to=mtaalice, ctladdr=root \(0/0\), delay=00:00:0\d, "
                     r"xdelay=00:00:0\d, mailer=relay, pri=30\d+, relay=\[127\.0\.0\.1\] \[127\.0\.0\.1\], "
                     r"dsn=4\.4\.1, stat=Deferred: Connection refused by \[127\.0\.0\.1\]", log), log

    sink = Sink()
    server = serve(port, sink)
    try:
        r = inst.run("-Ac", "-q")
        assert r.returncode == 0, r.stdout
    finally:
        server.shutdown()
        server.server_close()
    assert not inst.qfs(client=True)
    assert len(sink.messages) == 1
    got = sink.messages[0]
    assert got.sender == "root@test.example" and got.recipients == ["mtaalice@test.example"]
    assert b"Subject: msp held\r\n" in got.data and b"From: root <root@test.example>" in got.data
    assert b"by test.example (8.18.1/8.18.1/Submit) id " + qid.encode() in got.data
    assert b"Return-Path" not in got.data
    assert re.search(rf"{qid}: to=mtaalice, .*mailer=relay, .*dsn=2\.0\.0, "
                     r"stat=Sent \(SINKID Message accepted for delivery\)", inst.log())


def test_msp_refused_recipient_goes_to_dead_letter(inst, users):
    sink = Sink(refuse={"nosuchuser@test.example"})
    server = serve(inst.port, sink)
    dead = os.path.join(users["mtabob"].pw_dir, "dead.letter")
    if os.path.exists(dead):
        os.unlink(dead)
    try:
        r = inst.run("nosuchuser", cf=inst.submit, stdin=b"Subject: refused\n\nbody\n", user="mtabob")
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 67, r.stdout + r.stderr
    assert r.stdout.decode().splitlines()[-1] == f"{dead}... Saved message in {dead}"
    with open(dead, "rb") as fh:
        saved = fh.read()
    assert re.match(rb"From mtabob \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\nReturn-Path: <mtabob>\n", saved)
    assert b"Subject: refused\n\nbody\n\n" in saved
    assert not inst.qfs(client=True) and sink.messages == []


def test_untrusted_sender_gets_auth_warning(inst, users):
    r = inst.run("-Am", "-odi", "-f", "someone@example.org", "mtaalice", stdin=b"Subject: forged\n\nx\n",
                 user="mtabob")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (b"X-Authentication-Warning: test.example: mtabob set sender to <someone@example.org> using -f"
            in inst.mbox("mtaalice"))


def test_bad_input_never_tracebacks(inst):
    cases = [(["mtaalice"], b"Subject: nul\n\na\x00b\n"),
             (["mtaalice"], b"Subject: long\n\n" + b"x" * 2_000_000 + b"\n"),
             (["<<bad@@"], b"Subject: x\n\nx\n"),
             (["-Zq", "mtaalice"], b"x\n"),
             (["mtaalice"], b""),
             (["mtaalice"], b"Subject: only a header\n")]
    for args, data in cases:
        r = inst.run("-Am", "-odi", *args, stdin=data)
        assert b"Traceback" not in r.stdout + r.stderr, args
    r = inst.run("-Am", "-odi", "<<bad@@", stdin=b"x\n")
    assert (r.returncode, r.stdout) == (64, b"<<bad@@... Unbalanced '<'\n")
    r = inst.run("-Zq")
    assert (r.returncode, r.stderr) == (64, b"sendmail: illegal option -- Z\n")
    r = inst.run("-X")
    assert (r.returncode, r.stderr) == (64, b"sendmail: option requires an argument -- X\n")
    r = inst.run("-O", "NoSuchOption=1", "-bv", "mtaalice")
    assert (r.returncode, r.stdout) == (70, b"readcf: unknown option name NoSuchOption\n")
    r = inst.run("-Am", "mtaalice", cf=inst.root / "missing.cf", stdin=b"x\n")
    assert r.returncode == 78 and b"Traceback" not in r.stdout + r.stderr


def _dead_letter(user) -> str:
    path = os.path.join(user.pw_dir, "dead.letter")
    if os.path.exists(path):
        os.unlink(path)
    return path


def test_unwritable_queue_keeps_message_in_dead_letter(inst, users):
    inst.write_cf(f"O QueueDirectory={inst.root}/no/such/dir")
    dead = _dead_letter(users["mtabob"])
    r = inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: keep me\n\nbody\n", user="mtabob")
    assert r.returncode == 73, r.stdout
    assert r.stdout.decode().splitlines()[-1] == f"{dead}... Saved message in {dead}"
    with open(dead, "rb") as fh:
        assert b"Subject: keep me\n\nbody\n" in fh.read()


def test_full_disk_is_tempfail_and_nothing_lost(inst, users):
    full = inst.root / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)]).returncode:
        import pytest

        pytest.skip("cannot mount a small tmpfs here")
    try:
        os.chmod(full, 0o1777)
        inst.write_cf(f"O QueueDirectory={full}")
        dead = _dead_letter(users["mtabob"])
        body = b"Subject: big\n\n" + b"y" * 200_000 + b"\n"
        r = inst.run("-Am", "-odi", "mtaalice", stdin=body, user="mtabob")
        assert r.returncode == 75, r.stdout
        assert [n for n in os.listdir(full) if n.startswith(("qf", "tf"))] == []
        with open(dead, "rb") as fh:
            assert fh.read().count(b"y" * 1000) == 200
    finally:
        subprocess.run(["umount", str(full)])


def test_planted_queue_file_cannot_run_programs(inst, users):
    """An alias expansion in a qf (R flag A) runs a program only if we or root wrote the qf."""
    target = inst.root / "out" / "planted"
    qf = (f"V8\nT{int(time.time())}\nK0\nN0\nP30000\n$_mtabob@localhost\nSmtabob\n"
          f"RPFDA:|touch {target}\nH??Subject: SUBJECT\n.\n")
    for qid, owner in (("6AQplant0000001", users["mtabob"]), ("6AQplant0000002", None)):
        (inst.mqueue / f"df{qid}").write_text("x\n")
        (inst.mqueue / f"qf{qid}").write_text(qf.replace("SUBJECT", qid))
        if owner:
            os.chown(inst.mqueue / f"qf{qid}", owner.pw_uid, owner.pw_gid)
        assert inst.run("-qI" + qid).returncode == 0
        assert target.exists() == (owner is None), qid  # root's own qf: trusted; mtabob's: never
        if target.exists():
            target.unlink()


def test_forward_files(inst, users):
    bob = users["mtabob"]
    fwd = os.path.join(bob.pw_dir, ".forward")
    out = os.path.join(bob.pw_dir, "fwd-out")
    for p in (fwd, out):
        if os.path.exists(p):
            os.unlink(p)
    with open(fwd, "w") as fh:
        fh.write(f'# keep a copy, pass one on, pipe one\n\\mtabob, mtaalice\n"|cat >> {out}"\n')
    os.chown(fwd, bob.pw_uid, bob.pw_gid)
    try:
        r = inst.run("-bv", "-v", "mtabob")
        assert f"|cat >> {out}... deliverable: mailer prog, user |cat >> {out} (forward: {fwd})" in r.stdout.decode()
        assert inst.run("-Am", "-odi", "mtabob", stdin=b"Subject: forwarded\n\nx\n").returncode == 0
        assert b"Subject: forwarded" in inst.mbox("mtabob") and b"Subject: forwarded" in inst.mbox("mtaalice")
        assert os.stat(out).st_uid == bob.pw_uid  # the program ran as mtabob
        os.chmod(fwd, 0o666)  # anybody could have written it: ignored, as Sendmail does
        assert "deliverable: mailer local, user mtabob" in inst.run("-bv", "mtabob").stdout.decode()
    finally:
        for p in (fwd, out):
            if os.path.exists(p):
                os.unlink(p)


def test_deferral_warning_and_expiry(inst):
    """A message that cannot go out: kept with its reason, a delay warning, then returned."""
    port = inst.port  # nothing listens there
    inst.write_cf(f"Mesmtp, P=[IPC], F=mDFMuXa, A=TCP $h {port}")
    r = inst.run("-Am", "-odi", "far@[127.0.0.3]", stdin=b"Subject: stuck\n\nx\n")
    assert r.returncode == 0
    qid = inst.qfs()[0][2:]
    out = inst.run("-bp").stdout.decode()
    assert "(Deferred: Connection refused by [127.0.0.3])" in out and "far@[127.0.0.3]" in out
    time.sleep(1.1)
    assert inst.run("-q", "-O", "Timeout.queuewarn=1s").returncode == 0
    root = inst.mbox("root").decode()
    assert "Subject: Warning: could not send message for past 1 second" in root
    assert "**      THIS IS A WARNING MESSAGE ONLY      **" in root and "Action: delayed\nStatus: 4.4.1" in root
    assert "+" in inst.run("-bp", "-v").stdout.decode().splitlines()[2][:40]  # the warned mark
    assert inst.run("-q", "-O", "Timeout.queuewarn=1s").returncode == 0
    assert inst.mbox("root").decode().count("Warning: could not send") == 1  # warned once
    assert inst.run("-q", "-O", "Timeout.queuereturn=1s").returncode == 0
    root = inst.mbox("root").decode()
    assert "Subject: Returned mail: see transcript for details" in root
    assert "Cannot send message for 1 second" in root and "Status: 4.4.7" in root
    assert inst.qfs() == []
    assert re.search(rf"{qid}: \w+: DSN: ", inst.log())


def test_mail_loop_is_returned(inst):
    looped = b"".join(b"Received: from hop%d.example by hop%d.example; Mon, 1 Jan 2026 00:00:00 GMT\n" % (i, i)
                      for i in range(30)) + b"Subject: looping\n\nx\n"
    r = inst.run("-Am", "-odi", "mtaalice", stdin=looped)
    assert r.returncode == 69 and b"Too many hops 31 (25 max)" in r.stdout
    assert inst.mbox("mtaalice") == b""
    root = inst.mbox("root").decode()
    assert "Status: 5.4.6" in root and "Too many hops" in root


def test_good_recipients_delivered_even_when_one_is_unknown(inst):
    r = inst.run("-Am", "-odi", "nosuchuser", "mtabob", stdin=b"Subject: half good\n\nx\n")
    assert (r.returncode, r.stdout) == (67, b"nosuchuser... User unknown\n")
    assert b"Subject: half good" in inst.mbox("mtabob") and inst.qfs() == []


def test_t_without_recipients_keeps_the_message(inst, users):
    dead = _dead_letter(users["mtabob"])
    r = inst.run("-t", stdin=b"Subject: nobody\n\nkept\n", user="mtabob")
    assert (r.returncode, r.stdout) == (0, b"No recipient addresses found in header\n")
    with open(dead, "rb") as fh:
        assert b"Subject: nobody\n\nkept\n" in fh.read()


def test_list_errors_go_to_the_list_owner(inst):
    (inst.etc / "aliases").write_text("crew: mtaalice, nobody-here\nowner-crew: mtabob\n")
    assert inst.run("-bi").returncode == 0
    r = inst.run("-Am", "-odi", "-f", "sender@example.test", "crew", stdin=b"Subject: to the crew\n\nx\n")
    assert b"nobody-here... User unknown" in r.stdout
    assert b"Subject: to the crew" in inst.mbox("mtaalice")
    bob = inst.mbox("mtabob").decode()
    assert "Subject: Returned mail: see transcript for details" in bob and "nobody-here" in bob


def test_traffic_log_X(inst):
    log = inst.root / "traffic"
    sink = Sink()
    server = serve(inst.port, sink)
    try:
        r = inst.run("-X", str(log), "mtaalice", cf=inst.submit, stdin=b"Subject: traffic\n\nline\n")
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0
    text = log.read_text()
    assert re.search(r"^\d{5} >>> mail FROM:<root@test\.example>", text, re.M | re.I)
    assert re.search(r"^\d{5} <<< 250 2\.0\.0 SINKID Message accepted for delivery$", text, re.M)
    assert re.search(r"^\d{5} >>> Subject: traffic$", text, re.M)
    r = inst.run("-Am", "-odi", "-X", str(log), "mtabob", stdin=b"Subject: local traffic\n\nx\n")
    assert re.search(r"^\d{5} === DELIVER local mtabob$", log.read_text(), re.M)


def test_roots_msp_queue_files_belong_to_run_as_user(inst, users):
    """submit.cf's RunAsUser (Debian's: smmsp): what root leaves in the MSP queue is that user's,
    so the MSP's own queue run (Debian's cron-msp, as smmsp) can take it."""
    inst.write_cf(extra_submit="O RunAsUser=mtabob")
    r = inst.run("-t", cf=inst.submit, stdin=b"To: mtaalice\nSubject: run as\n\nm\n")  # the MTA is down
    assert r.returncode == 0 and len(inst.qfs(client=True)) == 1, r.stdout
    qid = inst.qfs(client=True)[0][2:]
    bob = users["mtabob"]
    for letter in "qd":
        st = os.stat(inst.mqueue_client / f"{letter}f{qid}")
        assert (st.st_uid, st.st_gid) == (bob.pw_uid, bob.pw_gid), letter
    sink = Sink()
    server = serve(inst.port, sink)
    try:
        r = inst.run("-Ac", "-q", user="mtabob")
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert not inst.qfs(client=True) and len(sink.messages) == 1
