"""vacation (mta/cli/vacation.py): whom it answers, once per interval."""

from __future__ import annotations

from mta.cli import vacation


def test_answers_only_personal_mail_from_people():
    assert vacation.should_answer("bob@x.example", {"to": "Alice <alice@here.example>"}, ["alice"], False)
    assert not vacation.should_answer("bob@x.example", {"to": "list@here.example"}, ["alice"], False)
    assert vacation.should_answer("bob@x.example", {"to": "list@here.example"}, ["alice"], True)
    assert not vacation.should_answer("bob@x.example", {"to": "alice", "precedence": "bulk"}, ["alice"], False)
    assert not vacation.should_answer("owner-foo@x.example", {"to": "alice"}, ["alice"], False)
    assert not vacation.should_answer("MAILER-DAEMON@x.example", {"to": "alice"}, ["alice"], False)
    assert not vacation.should_answer("bob@x.example", {"to": "alice", "auto-submitted": "auto-replied"},
                                      ["alice"], False)
    assert not vacation.should_answer("<>", {"to": "alice"}, ["alice"], False)
    assert not vacation.should_answer("bob@x.example", {"to": "malice@here.example"}, ["alice"], False)


def test_headers_and_sender():
    env, fields = vacation._headers(b"From bob@x.example Tue Dec  1 10:00:00 2026\nTo: alice\nSubject: a\n"
                                    b" b\n\nbody\nTo: not-a-header\n")
    assert env == "bob@x.example" and fields == {"to": "alice", "subject": "a b"}
    assert vacation._bare("Bob <bob@x.example>") == "bob@x.example"


def test_database_interval_and_exclusions(tmp_path):
    path = str(tmp_path / ".vacation")
    vacation._save(path, {b"bob@x.example": b"100", b"@spam.example": vacation.NEVER})
    db = vacation._db(path)
    assert db[b"bob@x.example"] == b"100"
    assert vacation._excluded("eve@spam.example", db) and not vacation._excluded("bob@x.example", db)
    assert (tmp_path / ".vacation.db").stat().st_mode & 0o777 == 0o600
