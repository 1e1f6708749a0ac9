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
