import pwd

import pytest

from mta import aliases, config, router


@pytest.fixture
def cfg(tmp_path):
    cf = tmp_path / "sendmail.cf"
    cf.write_text("Djmx.test.example\nCwlocalhost test.example\n")
    return config.load(str(cf))


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "aliases"
    p.write_text('team: root, far@remote.example, "|/bin/cat", /tmp/x\nroot: root\n')
    return aliases.Aliases(str(p))


def test_local_and_remote(cfg, table):
    assert router.resolve(cfg, table, "root")[0].describe() == "deliverable: mailer local, user root"
    assert router.resolve(cfg, table, "root@test.example")[0].mailer == "local"
    assert router.resolve(cfg, table, "root@[127.0.0.1]")[0].mailer == "local"
    r = router.resolve(cfg, table, "someone@example.org")[0]
    assert (r.mailer, r.host, r.user) == ("esmtp", "example.org", "someone@example.org")


def test_alias_targets(cfg, table):
    kinds = [(r.mailer, r.user) for r in router.resolve(cfg, table, "team")]
    assert kinds == [("local", "root"), ("esmtp", "far@remote.example"), ("prog", "|/bin/cat"),
                     ("*file*", "/tmp/x")]


@pytest.mark.parametrize("text", ["|/bin/sh -c evil", "/etc/passwd", ":include:/etc/shadow", "\\root"])
def test_outsiders_cannot_name_programs_or_files(cfg, table, text):
    routes = router.resolve(cfg, table, text)
    assert all(r.mailer == "error" for r in routes)


def test_unknown_user_and_postmaster(cfg):
    assert router.resolve(cfg, None, "nosuchuser")[0].describe() == "User unknown"
    assert router.resolve(cfg, None, "postmaster")[0].user == "root"


def test_plus_detail(cfg):
    assert router.resolve(cfg, None, "root+tag")[0].user == pwd.getpwuid(0).pw_name


def test_smart_host(cfg, table):
    cfg.macros["S"] = "[smarthost.example]"
    r = router.resolve(cfg, table, "x@example.org")[0]
    assert (r.mailer, r.host) == ("relay", "[smarthost.example]")


def test_msp_sends_everything_to_mta(tmp_path):
    cf = tmp_path / "submit.cf"
    cf.write_text("D{MTAHost}[127.0.0.1]\n")
    r = router.resolve(config.load(str(cf)), None, "anyone")[0]
    assert (r.mailer, r.host) == ("relay", "[127.0.0.1]")


def test_bad_syntax_is_an_error_route(cfg):
    r = router.resolve(cfg, None, "<<bad@@")[0]
    assert r.mailer == "error" and r.error.text == "Unbalanced '<'"


MAILERTABLE = b"""st5.example.test\tsmtp:mail.st5.example.test
.sub.example.test\tesmtp:[relay.example.test]
err.example.test\terror:5.7.0:550 go away
nouser.example.test\terror:nouser 550 No such user here
localhub.example.test\tlocal:root
samename.example.test\tlocal:
.wild.example.test\tesmtp:%1.inner.example.test
.\trelay:smarthost.example.test
"""
VIRTUSER = b"""info@test.example\troot
old+*@test.example\tnew+%2@elsewhere.example
@virt.example\t%1@elsewhere.example
joe@virt.example\terror:nouser 550 No such user here
"""


@pytest.fixture
def mapped(tmp_path):
    from tests.conftest import makemap

    for name, data in (("mailertable", MAILERTABLE), ("virtusertable", VIRTUSER)):
        assert makemap("hash", str(tmp_path / name), stdin=data).returncode == 0
    cf = tmp_path / "sendmail.cf"
    cf.write_text(f"Djmx.test.example\nCwlocalhost test.example virt.example\n"
                  f"Kmailertable hash -o {tmp_path}/mailertable\nKvirtuser hash -o {tmp_path}/virtusertable\n")
    from mta import maps

    cfg = config.load(str(cf))
    return cfg, maps.Maps(cfg)


@pytest.mark.parametrize("addr,want", [
    ("u@st5.example.test", "deliverable: mailer smtp, host mail.st5.example.test, user u@st5.example.test "
                           "(mailertable: st5.example.test)"),
    ("u@a.b.sub.example.test", "deliverable: mailer esmtp, host [relay.example.test], user u@a.b.sub.example.test "
                               "(mailertable: .sub.example.test)"),
    ("u@err.example.test", "go away (mailertable: err.example.test)"),
    ("u@nouser.example.test", "No such user here (mailertable: nouser.example.test)"),
    ("u@localhub.example.test", "deliverable: mailer local, user root (mailertable: localhub.example.test)"),
    ("root@samename.example.test", "deliverable: mailer local, user root (mailertable: samename.example.test)"),
    ("u@x.wild.example.test", "deliverable: mailer esmtp, host x.inner.example.test, user u@x.wild.example.test "
                              "(mailertable: .wild.example.test)"),
    ("u@elsewhere.org", "deliverable: mailer relay, host smarthost.example.test, user u@elsewhere.org "
                        "(mailertable: .)"),
    ("info@test.example", "deliverable: mailer local, user root (virtusertable: info@test.example)"),
    ("old+news@test.example", "deliverable: mailer relay, host smarthost.example.test, "
                              "user new+news@elsewhere.example (mailertable: .)"),
    ("anyone@virt.example", "deliverable: mailer relay, host smarthost.example.test, "
                            "user anyone@elsewhere.example (mailertable: .)"),
    ("joe@virt.example", "No such user here (virtusertable: joe@virt.example)"),
])
def test_mailertable_and_virtusertable(mapped, addr, want):
    cfg, m = mapped
    routes = router.resolve(cfg, None, addr, m)
    assert [r.describe(explain=True) for r in routes] == [want]


def test_unreadable_map_defers(mapped, tmp_path):
    cfg, m = mapped
    (tmp_path / "mailertable.db").write_bytes(b"\0garbage" * 100)
    r = router.resolve(cfg, None, "u@st5.example.test", m)[0]
    assert r.mailer == "error" and r.error.temporary


@pytest.mark.parametrize("text", ['"someone@elsewhere.example"@test.example', '"v@elsewhere.example"',
                                  '"v@elsewhere.example"@localhost', '"v%elsewhere.example"@test.example'])
def test_quoted_local_part_stays_local(cfg, table, text):
    routes = router.resolve(cfg, table, text)
    assert [(r.mailer, r.describe()) for r in routes] == [("error", "User unknown")]


def test_a_passwd_entry_found_is_used_again_for_a_second_only(monkeypatch):
    """Routing one RCPT asks passwd for the user twice (the mailbox, then ~/.forward), and a
    daemon asks again for the next message: an entry found is kept for KNOWN_FOR seconds; a name
    not found is asked again every time (a user added now is known at once)."""
    asked = []
    real = pwd.getpwnam
    monkeypatch.setattr(pwd, "getpwnam", lambda name: asked.append(name) or real(name))
    clock = [1000.0]
    monkeypatch.setattr(router.time, "monotonic", lambda: clock[0])
    router._KNOWN.clear()
    assert router.local_user("root").pw_uid == 0
    assert router.local_user("root").pw_uid == 0
    assert asked == ["root"]
    clock[0] += router.KNOWN_FOR
    assert router.local_user("root").pw_uid == 0
    assert asked == ["root", "root"]
    assert router.local_user("no-such-user-here") is None
    assert router.local_user("no-such-user-here") is None
    assert router.local_user("No-Such+x") is None
    assert asked[-4:] == ["No-Such+x", "no-such+x", "No-Such", "no-such"]
    assert asked.count("no-such-user-here") == 2  # once each time, not once per (equal) candidate
