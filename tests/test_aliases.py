from mta import aliases


def write(tmp_path, text):
    p = tmp_path / "aliases"
    p.write_text(text)
    return str(p)


def test_newaliases_summary_matches_sendmail(tmp_path):
    # the file from the captures: sendmail said "7 aliases, longest 25 bytes, 123 bytes total"
    path = write(tmp_path, '# test alias file (not the system one)\npostmaster: root\nmailer-daemon: postmaster\n'
                 'team: alice, bob\nlist: :include:/tmp/st5_include\npipe: "|/bin/cat"\nbad: nosuchuser\n'
                 'cont: alice,\n  bob\n')
    assert aliases.build(path) == (7, 25, 123)
    table = aliases.Aliases(path)
    assert table.lookup("POSTMASTER") == "root"
    assert table.lookup("@") == "@"
    assert table.lookup("nosuch") is None


def test_expand(tmp_path):
    inc = tmp_path / "inc"
    inc.write_text("# c\ncarol\ndave\n")
    path = write(tmp_path, f"postmaster: root\nroot: root, team\nteam: alice, bob\nlist: :include:{inc}\n"
                 'pipe: "|/bin/cat"\nloop1: loop2\nloop2: loop1\nowner-team: root\nq: \\alice\n')
    table = aliases.Aliases(path)  # no database yet: the text is read
    val = lambda n: [t.value for t in aliases.expand(table, n)]  # noqa: E731
    assert val("postmaster") == ["root", "alice", "bob"]
    assert val("list") == ["carol", "dave"]
    assert val("pipe") == ["|/bin/cat"]
    assert val("loop1") == ["loop1"]
    assert val("nobody") == ["nobody"]
    assert val("q") == ["alice"]
    assert {t.owner for t in aliases.expand(table, "team")} == {"owner-team"}


def test_stale_database_noticed(tmp_path):
    import os
    import time

    path = write(tmp_path, "a: b\n")
    aliases.build(path)
    later = time.time() + 5
    os.utime(path, (later, later))
    assert aliases.Aliases(path).stale
