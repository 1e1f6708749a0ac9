"""The mailer table: each M line's kind, unknown and unusable mailers, what maps may name."""

from mta import config, errors
from mta.config import Mailer
from mta.delivery import render
from mta.mailers import program, table

DEBIAN = "tests/data/debian/sendmail.cf"


def _cfg(tmp_path, lines: str) -> config.Config:
    cf = tmp_path / "sendmail.cf"
    cf.write_text("Djtest.example\n" + lines)
    return config.load(str(cf))


def test_debian_cf_kinds():
    cfg = config.load(DEBIAN)
    kinds = {name: table.agent(cfg, name).kind for name in cfg.mailers}
    assert kinds == {"local": table.PROGRAM, "prog": table.PROGRAM, "smtp": table.SMTP, "esmtp": table.SMTP,
                     "smtp8": table.SMTP, "dsmtp": table.SMTP, "relay": table.SMTP}
    assert table.notices(cfg) == []


def test_builtin_local_without_mlocal_or_with_our_path(tmp_path):
    assert table.agent(_cfg(tmp_path, ""), "local").kind == table.LOCAL
    cfg = _cfg(tmp_path, f"Mlocal, P={table.BUILTIN_LOCAL}, F=lsDFMAw5:/|@qPn9S, A=mail.local -l\n")
    assert table.agent(cfg, "local").kind == table.LOCAL
    assert table.agent(cfg, "*file*").kind == table.FILE


def test_unknown_and_unusable_mailers(tmp_path):
    cfg = _cfg(tmp_path, "Mlmtp, P=[IPC], F=lmnz, A=FILE /run/lmtp\nMlpc, P=[LPC], F=lsDFM, A=x $u\n"
                         "Mtalk, P=/usr/bin/talker, F=lsDFM, A=talker -l\n")
    unknown = table.agent(cfg, "uucp")
    assert unknown.kind == table.UNUSABLE
    err = unknown.error
    assert isinstance(err, errors.MTAError) and (err.code, err.status, err.text) == (
        554, "5.3.5", "buildaddr: unknown mailer uucp")
    assert len(table.notices(cfg)) == 2
    assert table.agent(cfg, "talk").kind == table.LMTP  # no $u: spoken to (SMTP), as Sendmail
    assert table.routable(cfg, "prog").status == "5.3.5" and table.routable(cfg, "*FILE*") is not None
    assert table.routable(cfg, "esmtp") is None


def test_exit_codes_as_giveresponse():
    m = Mailer("local", "/usr/sbin/sensible-mda", "lsDFMAw5:/|@qPn9S", "sensible-mda $g $u $h")
    assert program.outcome_for(0, m).kind == "sent"
    defer = program.outcome_for(75, m)
    assert (defer.kind, defer.status, defer.text) == (
        "deferred", "4.0.0", "Deferred: local mailer (/usr/sbin/sensible-mda) exited with EX_TEMPFAIL")
    assert program.outcome_for(71, m).kind == "deferred" and program.outcome_for(74, m).kind == "deferred"
    nouser = program.outcome_for(67, m)
    assert (nouser.kind, nouser.status, nouser.text) == ("bounced", "5.1.1", "User unknown")
    odd = program.outcome_for(1, m)
    assert (odd.kind, odd.status, odd.text) == ("bounced", "5.3.0", "unknown mailer error 1")


def test_argv_is_a_list_expanded_word_by_word(tmp_path):
    cfg = _cfg(tmp_path, "")
    m = Mailer("x", "/bin/x", "mn", "x -a $h $u", {})
    argv = render.program_argv(cfg, m, users=["A b; rm -rf /", "c"], macros={"h": "det ail", "g": "s"})
    assert argv == ["x", "-a", "det ail", "a b; rm -rf /", "c"]
    m2 = Mailer("procmail", "/usr/bin/procmail", "SPfhn9", "procmail -Y -a $h -d $u", {})
    assert render.program_argv(cfg, m2, users=["Bob"], macros={"h": "", "g": "s@x"}) == [
        "procmail", "-f", "s@x", "-Y", "-a", "", "-d", "bob"]


def test_program_input_flags(tmp_path):
    cfg = _cfg(tmp_path, "")
    text = "Subject: s\n\n.dot\nFrom x\n\xe9\n"
    m = Mailer("x", "/bin/x", "EX7", "x $u", {"E": "\\r\\n"})
    data = render.program_input(cfg, text, mailer=m, sender="s@x", when=0)
    assert data.startswith(b"From s@x ") and b"\r\n\r\n..dot\r\n>From x\r\n" in data
    assert max(data) < 0x80


def test_who_runs_a_program_as_openmailer():
    import os
    import pwd

    if os.geteuid() != 0:
        return  # only root chooses; a user's run keeps its own ids (Credentials())
    mail = pwd.getpwnam("mail")
    keep_root = Mailer("local", "/x", "lsS", "x $u", {})
    assert program.credentials(keep_root, mail, "mail:mail") == program.Credentials()
    plain = Mailer("local", "/x", "ls", "x $u", {})
    assert program.credentials(plain, mail, "nobody").uid == mail.pw_uid  # the controlling user
    assert program.credentials(plain, None, "mail:mail").uid == mail.pw_uid  # DefaultUser
    root = pwd.getpwuid(0)
    assert program.credentials(plain, root, "mail:mail").uid == mail.pw_uid  # never root without F=S
    with_u = Mailer("x", "/x", "ls", "x $u", {"U": "mail:mail"})
    assert program.credentials(with_u, None, "nobody").uid == mail.pw_uid
