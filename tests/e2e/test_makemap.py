"""makemap and praliases through the installed commands, against Sendmail's wording and codes."""

import subprocess

import pytest

from tests.conftest import BIN, debian_makemap, makemap

SRC = b"# comment line\nkey1\tvalue1\nkey2 value two with spaces\n\nKEY3\tMixedCase\nuser@example.org\tREJECT\n"
USAGE = (b"Usage: makemap [-C cffile] [-N] [-c cachesize] [-D commentchar]\n"
         b"               [-d] [-e] [-f] [-i type] [-l] [-o] [-r] [-s] [-t delimiter]\n"
         b"               [-u] [-v] type mapname\n")


@pytest.mark.parametrize("mtype", ["hash", "btree", "dbm", "cdb", "implicit"])
def test_round_trip_every_type(tmp_path, mtype):
    path = str(tmp_path / "x")
    assert makemap(mtype, path, stdin=SRC).returncode == 0
    r = makemap("-u", mtype, path)
    assert r.returncode == 0
    assert sorted(r.stdout.splitlines()) == sorted([b"key1\tvalue1", b"key2\tvalue two with spaces",
                                                    b"key3\tMixedCase", b"user@example.org\tREJECT"])


def test_file_names(tmp_path):
    for mtype, files in (("hash", ["h.db"]), ("btree", ["b.db"]), ("dbm", ["d.dir", "d.pag"]), ("cdb", ["c.cdb"])):
        assert makemap(mtype, str(tmp_path / files[0].split(".")[0]), stdin=SRC).returncode == 0
        assert all((tmp_path / f).exists() for f in files)


def test_usage_and_listing():
    r = makemap()
    assert (r.returncode, r.stderr) == (64, USAGE)
    r = makemap("-h")
    assert r.returncode == 64 and r.stderr == b"makemap: invalid option -- 'h'\n" + USAGE
    assert makemap("-l").stdout == b"hash\nbtree\ndbm\ncdb\nimplicit\n"


def test_sendmail_messages_and_codes(tmp_path):
    r = makemap("hash", str(tmp_path / "dup"), stdin=b"dup 1\ndup 2\n")
    assert (r.returncode, r.stderr) == (65, f"makemap: {tmp_path}/dup: line 2: key dup: duplicate key\n".encode())
    assert makemap("-u", "hash", str(tmp_path / "dup")).stdout == b"dup\t1\n"
    assert makemap("-r", "hash", str(tmp_path / "dup2"), stdin=b"dup 1\ndup 2\n").returncode == 0
    assert makemap("-u", "hash", str(tmp_path / "dup2")).stdout == b"dup\t2\n"
    r = makemap("hash", str(tmp_path / "nv"), stdin=b"onlykey\n")
    assert (r.returncode, r.stderr) == (65, f"makemap: {tmp_path}/nv: line 1: no RHS for LHS onlykey\n".encode())
    assert makemap("-e", "hash", str(tmp_path / "nv"), stdin=b"onlykey\n").returncode == 0
    r = makemap("hash", str(tmp_path / "ls"), stdin=b" leading x\n")
    assert r.returncode == 65 and b"line 1: syntax error (leading space)" in r.stderr
    r = makemap("hash", str(tmp_path / "long"), stdin=b"k " + b"v" * 2000 + b"\nok yes\n")
    assert r.returncode == 65 and b"line 1: line too long (1024 bytes max)" in r.stderr
    assert makemap("-u", "hash", str(tmp_path / "long")).stdout == b"ok\tyes\n"
    r = makemap("foo", str(tmp_path / "x"), stdin=SRC)
    assert (r.returncode, r.stderr) == (73, f"makemap: error opening type foo map {tmp_path}/x: "
                                             "Unknown database type\n".encode())
    r = makemap("-u", "hash", str(tmp_path / "does-not-exist"))
    assert (r.returncode, r.stderr) == (73, f"makemap: error opening type hash map {tmp_path}/does-not-exist: "
                                             "No such file or directory\n".encode())


def test_fold_delimiter_nul_verbose_append(tmp_path):
    p = str(tmp_path / "m")
    assert makemap("-f", "hash", p, stdin=b"KEY3 Mixed\n").returncode == 0
    assert makemap("-u", "hash", p).stdout == b"KEY3\tMixed\n"
    assert makemap("-t", ":", "hash", p, stdin=b"a b:c d\n").returncode == 0
    assert makemap("-u", "-t", ":", "hash", p).stdout == b"a b:c d\n"
    assert makemap("-N", "hash", p, stdin=b"k v\n").returncode == 0
    assert makemap("-u", "hash", p).stdout == b"k\x00\tv\x00\n"
    assert makemap("-u", "-N", "hash", p).stdout == b"k\tv\n"
    r = makemap("-v", "hash", p, stdin=b"a b\n")
    assert r.stdout == b"key=`a', val=`b'\n"
    assert makemap("-o", "hash", p, stdin=b"c d\n").returncode == 0
    assert sorted(makemap("-u", "hash", p).stdout.splitlines()) == [b"a\tb", b"c\td"]
    r = makemap("-o", "hash", p, stdin=b"a z\n")
    assert r.returncode == 65 and b"key a: duplicate key" in r.stderr
    assert makemap("-D", ";", "hash", p, stdin=b"; comment\nx y\n").returncode == 0
    assert makemap("-d", "btree", p, stdin=b"k 1\nk 2\n").returncode == 0
    assert makemap("-u", "btree", p).stdout == b"k\t1\nk\t2\n"


def test_cf_type(tmp_path):
    cf = tmp_path / "sendmail.cf"
    cf.write_text(f"Kaccess btree -o {tmp_path}/access\n")
    assert makemap("-C", str(cf), "cf", f"{tmp_path}/access", stdin=b"a b\n").returncode == 0
    assert makemap("-u", "btree", f"{tmp_path}/access").stdout == b"a\tb\n"


def test_debian_makemap_agrees(tmp_path):
    assert debian_makemap("hash", str(tmp_path / "deb"), stdin=SRC).returncode == 0
    ours = makemap("-u", "hash", str(tmp_path / "deb"))
    assert ours.returncode == 0
    assert makemap("hash", str(tmp_path / "ours"), stdin=SRC).returncode == 0
    theirs = debian_makemap("-u", "hash", str(tmp_path / "ours"))
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines())


def test_praliases(inst):
    assert inst.run("-bi").returncode == 0
    r = subprocess.run([str(BIN / "praliases"), "-C", str(inst.cf)], capture_output=True, text=True)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert "team:mtaalice, mtabob" in lines and "@:@" in lines and "postmaster:root" in lines
    r = subprocess.run([str(BIN / "praliases"), "-f", str(inst.etc / "aliases"), "TEAM", "nosuch"],
                       capture_output=True, text=True)
    assert r.stdout == "team:mtaalice, mtabob\n" and r.stderr == "nosuch: No such key\n"
    db = inst.etc / "aliases.db"
    assert db.exists()
    if (dm := debian_makemap("-u", "-N", "hash", str(inst.etc / "aliases"))).returncode == 0:
        assert b"postmaster\troot" in dm.stdout


def test_editmap_query_update_delete(tmp_path):
    from tests.conftest import BIN

    path = tmp_path / "access"
    assert makemap("hash", str(path), stdin=b"one.example OK\ntwo.example REJECT\n").returncode == 0

    def editmap(*args):
        return subprocess.run([str(BIN / "editmap"), *args], capture_output=True)
    assert editmap("-q", "hash", str(path), "Two.Example").stdout == b"REJECT\n"
    assert editmap("-u", "hash", str(path), "three.example", "RELAY").returncode == 0
    assert editmap("-x", "hash", str(path), "one.example").returncode == 0
    r = editmap("-q", "hash", str(path), "one.example")
    assert r.returncode == 69 and b"not found" in r.stderr
    dump = sorted(makemap("-u", "hash", str(path)).stdout.splitlines())
    assert dump == [b"three.example\tRELAY", b"two.example\tREJECT"]
    assert editmap("hash", str(path), "x").returncode == 64
