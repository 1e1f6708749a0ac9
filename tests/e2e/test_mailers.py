"""The cf's mailers end to end: program mailers from M lines (procmail with a ~/.procmailrc,
Debian's sensible-mda and mail.local), unknown and unusable mailers, and the mailbox formats."""

from __future__ import annotations

import grp
import mailbox
import os
import pwd
import shutil
import smtplib
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import BIN, makemap
from tests.e2e.test_smtpd import Daemon

PROCMAIL = "/usr/bin/procmail"
SENSIBLE_MDA = "/opt/debian-sendmail/usr/sbin/sensible-mda"
MAIL_LOCAL = "/opt/debian-sendmail/usr/libexec/sendmail/mail.local"


def _need(path: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not installed here (scripts/install-test-deps)")


@pytest.fixture
def procmailrc(users):
    """mtaalice's ~/.procmailrc: 'filter me' into a folder, the rest into an inbox, in ~/smpy-mail.PID."""
    pw = users["mtaalice"]
    home = Path(pw.pw_dir)
    folder = home / f"smpy-mail.{os.getpid()}"  # homes are shared by whoever runs the suite here
    rc = home / ".procmailrc"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    rc.write_text(f"MAILDIR={folder}\nDEFAULT={folder}/inbox\nLOGFILE={folder}/log\n"
                  ":0\n* ^Subject:.*filter me\nfiltered\n")
    for p in (folder, rc):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(rc, 0o644)
    yield folder
    rc.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _send_two(inst) -> None:
    for subject in ("please filter me", "just mail"):
        r = inst.run("-Am", "-odi", "-f", "sender@example.test", "mtaalice+box",
                     stdin=f"Subject: {subject}\n\nx\n".encode())
        assert r.returncode == 0, r.stdout + r.stderr


def _subjects(path: Path) -> list[str]:
    return [m["Subject"] for m in mailbox.mbox(str(path))] if path.exists() else []


def test_procmail_as_local_mailer_obeys_procmailrc(inst, procmailrc):
    _need(PROCMAIL)
    inst.write_cf(f"Mlocal, P={PROCMAIL}, F=SPfhn9, S=EnvFromL/HdrFromL, R=EnvToL/HdrToL, "
                  "T=DNS/RFC822/X-Unix, A=procmail -Y -a $h -d $u")  # FEATURE(local_procmail)
    _send_two(inst)
    assert _subjects(procmailrc / "filtered") == ["please filter me"]
    assert _subjects(procmailrc / "inbox") == ["just mail"]
    box = mailbox.mbox(str(procmailrc / "inbox"))
    assert box[0].get_from().startswith("sender@example.test ")
    assert not inst.mbox("mtaalice") and not inst.qfs()
    assert "mailer=local" in inst.log() and "stat=Sent" in inst.log()


def test_debian_sensible_mda_line(inst, procmailrc):
    """Debian's own Mlocal line, byte for byte but for the path of the unpacked binary."""
    _need(SENSIBLE_MDA)
    if not os.path.exists("/etc/mail/smrsh/procmail"):
        pytest.skip("sensible-mda runs /etc/mail/smrsh/procmail, which is missing (scripts/install-test-deps)")
    inst.write_cf(f"Mlocal,\t\tP={SENSIBLE_MDA}, F=lsDFMAw5:/|@qPn9S, S=EnvFromL/HdrFromL, R=EnvToL/HdrToL,\n"
                  "\t\tT=DNS/RFC822/X-Unix,\n\t\tA=sensible-mda $g $u $h ${client_addr}")
    _send_two(inst)
    assert _subjects(procmailrc / "filtered") == ["please filter me"]
    assert _subjects(procmailrc / "inbox") == ["just mail"]


def _with_private_spool(inst, *rcpts: str, subject: str) -> Path:
    """Send through the installed sendmail with /var/mail bound to a fresh directory of ours."""
    spool = Path(tempfile.mkdtemp(prefix="smpy-spool."))
    os.chmod(spool, 0o1777)
    script = (f"mount --bind {spool} /var/mail && {BIN}/sendmail -C {inst.cf} -Am -odi "
              f"-f sender@example.test {' '.join(rcpts)}")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       input=f"Subject: {subject}\n\nhello\n.dot\n".encode(), capture_output=True, timeout=60)
    if r.returncode != 0 and b"unshare" in r.stderr:
        shutil.rmtree(spool, ignore_errors=True)
        pytest.skip(f"no mount namespace here: {r.stderr!r}")
    assert r.returncode == 0, r.stdout + r.stderr
    return spool


def test_debian_mail_local(inst, users):
    """Debian's mail.local writes /var/mail/USER: run with a private /var/mail of our own."""
    _need(MAIL_LOCAL)
    inst.write_cf(f"Mlocal, P={MAIL_LOCAL}, F=lsDFMAw5:/|@qSPfn9, S=EnvFromL/HdrFromL, R=EnvToL/HdrToL, "
                  "T=DNS/RFC822/X-Unix, A=mail.local -d $u")
    spool = _with_private_spool(inst, "mtaalice", subject="via mail.local")
    try:
        box = mailbox.mbox(str(spool / "mtaalice"))
        assert [m["Subject"] for m in box] == ["via mail.local"]
        assert box[0].get_from().startswith("sender@example.test ")
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    assert "stat=Sent" in inst.log()


def test_debian_mail_local_over_lmtp(inst, users):
    """FEATURE(local_lmtp): mail.local -l spoken to in LMTP, both recipients in one session."""
    _need(MAIL_LOCAL)
    inst.write_cf(f"Mlocal, P={MAIL_LOCAL}, F=PSXfmnz9, S=EnvFromL/HdrFromL, R=EnvToL/HdrToL, "
                  "T=DNS/RFC822/X-Unix, A=mail.local -l")
    spool = _with_private_spool(inst, "mtaalice", "mtabob", subject="via lmtp")
    try:
        for user in ("mtaalice", "mtabob"):
            box = mailbox.mbox(str(spool / user))
            assert [m["Subject"] for m in box] == ["via lmtp"], user
            assert box[0].get_payload() == "hello\n.dot\n"  # dot-stuffed on the way, unstuffed there
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    assert "to=mtaalice, " in inst.log() and "stat=Sent (mtaalice Ok)" in inst.log(), inst.log()


def _mailertable(inst, text: str, extra: str = "") -> None:
    (inst.etc / "mailertable").write_text(text)
    assert makemap("hash", str(inst.etc / "mailertable"), stdin=text.encode()).returncode == 0
    inst.write_cf(f"Kmailertable hash -o {inst.etc}/mailertable\n{extra}")


def test_mailertable_to_an_unknown_mailer_bounces_and_writes_no_file(inst, tmp_path):
    """The defect: 'far.example uucp:host' wrote ./u@far.example in the working directory."""
    _mailertable(inst, "far.example uucp:host\n")
    r = subprocess.run([str(BIN / "sendmail"), "-C", str(inst.cf), "-Am", "-odi", "u@far.example"],
                       input=b"Subject: to uucp\n\nx\n", capture_output=True, cwd=tmp_path, timeout=60)
    assert r.stdout == b"u@far.example... buildaddr: unknown mailer uucp\n", r.stdout + r.stderr
    assert r.returncode == 78
    assert os.listdir(tmp_path) == [] and not list(inst.root.rglob("u@far.example"))
    root_box = inst.mbox("root").decode()
    assert "Status: 5.3.5" in root_box and "554 5.3.5 buildaddr: unknown mailer uucp" in root_box
    verify = inst.run("-bv", "u@far.example")
    assert verify.stdout == b"u@far.example... buildaddr: unknown mailer uucp\n"


def test_unknown_mailer_is_refused_at_rcpt(inst):
    _mailertable(inst, "far.example uucp:host\n")
    d = Daemon(inst)
    try:
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
            s.ehlo("client.example.test")
            s.mail("someone@example.test")
            code, text = s.rcpt("u@far.example")
    finally:
        d.stop()
    assert (code, text) == (554, b"5.3.5 <u@far.example>... buildaddr: unknown mailer uucp")


def test_mailertable_may_not_name_prog_or_file(inst, tmp_path):
    _mailertable(inst, f"prog.example prog:/bin/touch {tmp_path}/pwned\nfile.example *file*:{tmp_path}/x\n")
    for rcpt in ("u@prog.example", "u@file.example"):
        r = inst.run("-Am", "-odi", rcpt, stdin=b"Subject: no\n\nx\n")
        assert r.returncode == 78, r.stdout
        assert b"is only for aliases, :include: and .forward" in r.stdout
    assert os.listdir(tmp_path) == []


def test_unusable_mailers_are_named_at_daemon_start_and_bounce(inst):
    _mailertable(inst, "lmtp.example lmtp:localhost\n",
                 "Mlmtp, P=[IPC], F=lmnz, A=FILE /run/lmtp\nMlpc, P=[LPC], F=lsDFM, A=x $u\n")
    d = Daemon(inst)
    try:
        log = inst.log()
        assert "mailer lmtp: P=[IPC] A=FILE /run/lmtp (not TCP) is not implemented by sendmail-py" in log
        assert "mailer lpc: P=[LPC] is not implemented by sendmail-py" in log
    finally:
        d.stop()
    r = inst.run("-Am", "-odi", "u@lmtp.example", stdin=b"Subject: lmtp\n\nx\n")
    assert r.returncode == 78 and b"not implemented by sendmail-py" in r.stdout


def test_program_mailer_argv_flags_and_exit_codes(inst, users):
    """A mailertable route to a program mailer: argv words, F=m, the From_ line, exit codes."""
    out = inst.root / "out"
    script = inst.etc / "record.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {out}/argv.$$\ncat > {out}/input.$$\n"
                      "case \"$2\" in *defer*) exit 75;; *bad*) echo 'recorder: no such box' >&2; exit 67;;"
                      " *odd*) exit 3;; esac\nexit 0\n")
    os.chmod(script, 0o755)
    _mailertable(inst, "prg.example recorder:gateway\n",
                 f"Mrecorder, P={script}, F=mDFMnX, U=mtabob:mail, A=record $h $u\n")
    r = inst.run("-Am", "-odi", "-f", "s@example.test", "One@prg.example", "two@prg.example",
                 stdin=b"Subject: prog\n\n.leading dot\nFrom here\n")
    assert r.returncode == 0, r.stdout
    argv = [p.read_text().splitlines() for p in out.glob("argv.*")]
    assert argv == [["gateway", "one@prg.example", "two@prg.example"]]  # F=m: one run, lower case
    (data,) = [p.read_text() for p in out.glob("input.*")]
    assert not data.startswith("From ") and "\n..leading dot\nFrom here\n" in data  # F=n, F=X
    assert os.stat(next(out.glob("input.*"))).st_uid == users["mtabob"].pw_uid  # U=
    for rcpt, status, text in (("defer@prg.example", "4.0.0",
                                f"Deferred: recorder mailer ({script}) exited with EX_TEMPFAIL"),
                               ("bad@prg.example", "5.1.1", "User unknown"),
                               ("odd@prg.example", "5.3.0", "unknown mailer error 3")):
        inst.run("-Am", "-odi", rcpt, stdin=b"Subject: x\n\nx\n")
        assert f"to={rcpt}, " in inst.log() and f"dsn={status}, stat={text}\n" in inst.log(), inst.log()
    assert len(inst.qfs()) == 1  # the deferred one stays queued
    assert "recorder: no such box\n550 5.1.1 User unknown" in inst.mbox("root").decode()  # its words, in the DSN


def test_missing_include_defers_the_recipient(inst):
    """A TempFail while routing at delivery (an :include: file gone) defers; the entry is kept."""
    assert inst.run("-bi").returncode == 0
    assert inst.run("-Am", "-odq", "inc", stdin=b"Subject: to inc\n\nx\n").returncode == 0
    listing = inst.etc / "inc.list"
    saved = listing.read_text()
    listing.unlink()
    assert inst.run("-q").returncode == 0
    assert len(inst.qfs()) == 1
    assert f"stat=Deferred: Cannot open {listing}: No such file or directory" in inst.log(), inst.log()
    listing.write_text(saved)
    assert inst.run("-q").returncode == 0
    assert not inst.qfs() and b"Subject: to inc" in inst.mbox("mtaalice")


def test_new_mbox_mode_follows_the_spool_and_an_existing_mode_is_kept(inst, users):
    """In a spool like Debian's /var/mail (2775 root:mail) a new mailbox is USER:mail 0660, as
    procmail and mail.local make it; in another spool USER:USER 0600; a mode set later stays."""
    pw, mail_gid = users["mtaalice"], grp.getgrnam("mail").gr_gid
    assert inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: a\n\nx\n").returncode == 0
    st = os.stat(inst.mail / "mtaalice")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, pw.pw_gid, 0o600)
    (inst.mail / "mtaalice").unlink()
    os.chown(inst.mail, 0, mail_gid)
    os.chmod(inst.mail, 0o2775)
    assert inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: b\n\nx\n").returncode == 0
    st = os.stat(inst.mail / "mtaalice")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, mail_gid, 0o660)
    os.chmod(inst.mail / "mtaalice", 0o600)
    assert inst.run("-Am", "-odi", "mtaalice", stdin=b"Subject: c\n\nx\n").returncode == 0
    assert stat.S_IMODE(os.stat(inst.mail / "mtaalice").st_mode) == 0o600


def test_mh_folder_keeps_unseen_sequence_for_python_mailbox(inst, users):
    inst.write_cf("O MailboxFormat=mh")
    for subject in ("one", "two", "three"):
        assert inst.run("-Am", "-odi", "mtabob", stdin=f"Subject: {subject}\n\nx\n".encode()).returncode == 0
    folder = mailbox.MH(str(inst.mail / "mtabob"), create=False)
    assert folder.get_sequences() == {"unseen": [1, 2, 3]}
    assert [folder[k]["Subject"] for k in sorted(folder.keys())] == ["one", "two", "three"]
    assert (inst.mail / "mtabob" / ".mh_sequences").read_text() == "unseen: 1-3\n"
    assert os.stat(inst.mail / "mtabob" / ".mh_sequences").st_uid == pwd.getpwnam("mtabob").pw_uid
